// Small helpers that build ONNX models with the protobuf API, for the QDQ writer's tests.
#pragma once

#include <qlib/onnx.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "test_data.hpp"

namespace qlib_test {

struct onnx_builder {
  onnx::ModelProto model;
  onnx::GraphProto* g;

  explicit onnx_builder(std::int64_t opset = 13, std::int64_t ir = 7) {
    model.set_ir_version(ir);
    model.set_producer_name("qlib_test");
    auto* o = model.add_opset_import();
    o->set_domain("");
    o->set_version(opset);
    g = model.mutable_graph();
    g->set_name("tiny");
  }

  static void set_type(onnx::ValueInfoProto* v, const std::string& name, const std::vector<std::int64_t>& shape,
                       int elem = onnx::TensorProto::FLOAT) {
    v->set_name(name);
    auto* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(elem);
    for (auto d : shape) t->mutable_shape()->add_dim()->set_dim_value(d);
  }
  void input(const std::string& name, const std::vector<std::int64_t>& shape) { set_type(g->add_input(), name, shape); }
  void output(const std::string& name, const std::vector<std::int64_t>& shape) { set_type(g->add_output(), name, shape); }

  /// A float initializer stored as float_data (raw = false) or raw little-endian bytes.
  void init(const std::string& name, const std::vector<std::int64_t>& dims, const std::vector<float>& v,
            bool raw = true) {
    auto* t = g->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (auto d : dims) t->add_dims(d);
    if (raw) {
      std::string bytes;
      for (float f : v) qlib::detail::onnx_qdq::float_to_le(f, &bytes);
      t->set_raw_data(bytes);
    } else {
      for (float f : v) t->add_float_data(f);
    }
  }
  /// A seeded gaussian initializer scaled by `scale`.
  std::vector<float> random_init(const std::string& name, const std::vector<std::int64_t>& dims, std::uint64_t seed,
                                 float scale = 0.5f, bool raw = true) {
    std::size_t n = 1;
    for (auto d : dims) n *= static_cast<std::size_t>(d);
    std::vector<float> v = sample<float>(dist::gaussian, n, seed);
    for (auto& x : v) x *= scale;
    init(name, dims, v, raw);
    return v;
  }

  onnx::NodeProto* node(const std::string& op, const std::string& name, std::vector<std::string> in,
                        std::vector<std::string> out) {
    auto* n = g->add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (auto& i : in) n->add_input(i);
    for (auto& o : out) n->add_output(o);
    return n;
  }
  static void attr(onnx::NodeProto* n, const std::string& name, std::int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void attr(onnx::NodeProto* n, const std::string& name, const std::vector<std::int64_t>& v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (auto x : v) a->add_ints(x);
  }
  static void attr(onnx::NodeProto* n, const std::string& name, float v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(v);
  }
};

/// The model the ORT check uses (and the structure test): a residual block, a
/// ConvTranspose, Gemm and MatMul heads, and a bias Add.
///   x[2,3,8,8] -> Conv(w1, b1, pad 1) -> Relu (r1)
///   r1 -> Conv(w2, pad 1) -> BatchNormalization (bn) ; Add(bn, r1) (add) -> Relu (r2)
///   r2 -> ConvTranspose(wt, bt, stride 2) -> Relu (r3) -> GlobalAveragePool (gap)
///   -> Flatten (f) -> Gemm(gb, gc, transB=1) (g) -> MatMul(mm) (m) -> Add(m, bias) (y)
inline onnx_builder residual_model(std::int64_t opset = 13, bool raw = true) {
  onnx_builder b(opset);
  b.input("x", {2, 3, 8, 8});
  b.random_init("w1", {8, 3, 3, 3}, 11, 0.4f, raw);
  b.random_init("b1", {8}, 12, 0.1f, raw);
  b.random_init("w2", {8, 8, 3, 3}, 13, 0.2f, raw);
  b.random_init("bn_scale", {8}, 14, 0.3f, raw);
  b.random_init("bn_bias", {8}, 15, 0.1f, raw);
  b.random_init("bn_mean", {8}, 16, 0.1f, raw);
  std::vector<float> var(8);
  for (std::size_t i = 0; i < 8; ++i) var[i] = 0.5f + 0.1f * static_cast<float>(i);
  b.init("bn_var", {8}, var, raw);
  b.random_init("wt", {8, 4, 2, 2}, 17, 0.3f, raw);
  b.random_init("bt", {4}, 18, 0.1f, raw);
  b.random_init("gb", {6, 4}, 19, 0.5f, raw);
  b.random_init("gc", {6}, 20, 0.1f, raw);
  b.random_init("mm", {6, 5}, 21, 0.5f, raw);
  b.random_init("bias", {5}, 22, 0.1f, raw);
  auto* c1 = b.node("Conv", "conv1", {"x", "w1", "b1"}, {"c1"});
  onnx_builder::attr(c1, "pads", std::vector<std::int64_t>{1, 1, 1, 1});
  onnx_builder::attr(c1, "kernel_shape", std::vector<std::int64_t>{3, 3});
  b.node("Relu", "relu1", {"c1"}, {"r1"});
  auto* c2 = b.node("Conv", "conv2", {"r1", "w2"}, {"c2"});
  onnx_builder::attr(c2, "pads", std::vector<std::int64_t>{1, 1, 1, 1});
  auto* bn = b.node("BatchNormalization", "bn2", {"c2", "bn_scale", "bn_bias", "bn_mean", "bn_var"}, {"bn"});
  onnx_builder::attr(bn, "epsilon", 1e-5f);
  b.node("Add", "add", {"bn", "r1"}, {"add"});
  b.node("Relu", "relu2", {"add"}, {"r2"});
  auto* ct = b.node("ConvTranspose", "deconv", {"r2", "wt", "bt"}, {"ct"});
  onnx_builder::attr(ct, "strides", std::vector<std::int64_t>{2, 2});
  b.node("Relu", "relu3", {"ct"}, {"r3"});
  b.node("GlobalAveragePool", "gap", {"r3"}, {"gap"});
  b.node("Flatten", "flatten", {"gap"}, {"f"});
  auto* gm = b.node("Gemm", "gemm", {"f", "gb", "gc"}, {"g"});
  onnx_builder::attr(gm, "transB", std::int64_t{1});
  b.node("MatMul", "matmul", {"g", "mm"}, {"m"});
  b.node("Add", "bias_add", {"m", "bias"}, {"y"});
  b.output("y", {2, 5});
  return b;
}

/// Thresholds for every activation of residual_model.
inline qlib::amax_map residual_model_amax() {
  return {{"x", 2.5f}, {"r1", 3.0f}, {"r2", 4.0f}, {"f", 1.5f}, {"g", 2.0f}};
}

}  // namespace qlib_test
