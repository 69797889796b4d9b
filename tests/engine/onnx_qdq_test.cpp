// qlib/onnx.hpp: the QDQ writer's structure and arithmetic, on tiny models built with the
// protobuf API. The numeric check in ONNX Runtime is qdq_ort_check.py (same models).
#include <qlib/onnx.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/onnx_builder.hpp"

using qlib_test::onnx_builder;

namespace {

const onnx::NodeProto* find_node(const onnx::GraphProto& g, const std::string& name) {
  for (const auto& n : g.node())
    if (n.name() == name) return &n;
  return nullptr;
}
const onnx::NodeProto* producer_of(const onnx::GraphProto& g, const std::string& tensor) {
  for (const auto& n : g.node())
    for (const auto& o : n.output())
      if (o == tensor) return &n;
  return nullptr;
}
const onnx::TensorProto* find_init(const onnx::GraphProto& g, const std::string& name) {
  for (const auto& t : g.initializer())
    if (t.name() == name) return &t;
  return nullptr;
}
std::vector<float> floats(const onnx::TensorProto& t) {
  std::vector<float> v;
  qlib::shape_t s;
  qlib::detail::onnx_qdq::read_float_tensor(t, &v, &s);
  return v;
}
int count_op(const onnx::GraphProto& g, const std::string& op) {
  int c = 0;
  for (const auto& n : g.node()) c += n.op_type() == op;
  return c;
}
std::int64_t axis_of(const onnx::NodeProto& n) {
  for (const auto& a : n.attribute())
    if (a.name() == "axis") return a.i();
  return -1;
}

// The slow, obvious reference: per-channel amax / 127 along `axis` of a C-order tensor.
std::vector<float> ref_channel_scales(const std::vector<float>& w, const std::vector<std::int64_t>& dims, int axis) {
  std::size_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= static_cast<std::size_t>(dims[static_cast<std::size_t>(i)]);
  for (std::size_t i = static_cast<std::size_t>(axis) + 1; i < dims.size(); ++i) inner *= static_cast<std::size_t>(dims[i]);
  const std::size_t ch = static_cast<std::size_t>(dims[static_cast<std::size_t>(axis)]);
  std::vector<float> out(ch, 0.0f);
  for (std::size_t idx = 0; idx < w.size(); ++idx) {
    const std::size_t c = (idx / inner) % ch;
    out[c] = std::max(out[c], std::fabs(w[idx]));
  }
  (void)outer;
  for (auto& s : out) s = s / 127.0f;
  return out;
}

/// Every node input is a graph input, an initializer, or an output of an EARLIER node.
bool topologically_sorted(const onnx::GraphProto& g) {
  std::set<std::string> known;
  for (const auto& i : g.input()) known.insert(i.name());
  for (const auto& t : g.initializer()) known.insert(t.name());
  for (const auto& n : g.node()) {
    for (const auto& i : n.input())
      if (!i.empty() && !known.count(i)) return false;
    for (const auto& o : n.output()) known.insert(o);
  }
  return true;
}

}  // namespace

TEST_CASE("QDQ writer: Q/DQ placement on the residual model", "[onnx]") {
  onnx_builder b = qlib_test::residual_model();
  const onnx::ModelProto before = b.model;
  const qlib::qdq_report rep = qlib::quantize_qdq(b.model, qlib_test::residual_model_amax());
  const onnx::GraphProto& g = b.model.graph();

  // Activations: x, r1 (Conv input and Add shortcut, one shared pair), r2, f, g.
  CHECK(std::set<std::string>(rep.activations.begin(), rep.activations.end()) ==
        std::set<std::string>{"x", "r1", "r2", "f", "g"});
  CHECK(std::set<std::string>(rep.weights.begin(), rep.weights.end()) ==
        std::set<std::string>{"w1", "w2", "wt", "gb", "mm"});
  CHECK(rep.skipped.empty());
  CHECK(count_op(g, "QuantizeLinear") == 10);
  CHECK(count_op(g, "DequantizeLinear") == 10);
  CHECK(topologically_sorted(g));

  // Both inputs of every Conv / ConvTranspose / Gemm / MatMul are dequantized tensors.
  for (const char* name : {"conv1", "conv2", "deconv", "gemm", "matmul"}) {
    const onnx::NodeProto* n = find_node(g, name);
    REQUIRE(n);
    for (int i = 0; i < 2; ++i) {
      const onnx::NodeProto* p = producer_of(g, n->input(i));
      INFO(name << " input " << i << " = " << n->input(i));
      REQUIRE(p);
      CHECK(p->op_type() == "DequantizeLinear");
    }
  }
  // Biases stay float initializers.
  CHECK(find_node(g, "conv1")->input(2) == "b1");
  CHECK(find_node(g, "deconv")->input(2) == "bt");
  CHECK(find_node(g, "gemm")->input(2) == "gc");
  // The residual Add: input 0 (BatchNormalization after a Conv) untouched, the shortcut r1
  // read through the same DQ as conv2.
  const onnx::NodeProto* add = find_node(g, "add");
  CHECK(add->input(0) == "bn");
  CHECK(add->input(1) == find_node(g, "conv2")->input(0));
  // The bias Add is not a residual Add.
  CHECK(find_node(g, "bias_add")->input(0) == "m");
  CHECK(find_node(g, "bias_add")->input(1) == "bias");
  // Tensor and node names kept: every original node still produces the same outputs.
  for (const auto& n0 : before.graph().node()) {
    const onnx::NodeProto* n = find_node(g, n0.name());
    REQUIRE(n);
    CHECK(n->output(0) == n0.output(0));
  }
  CHECK(g.input(0).name() == "x");
  CHECK(g.output(0).name() == "y");
}

TEST_CASE("QDQ writer: scales, zero points and axes", "[onnx]") {
  onnx_builder b = qlib_test::residual_model();
  const onnx::ModelProto before = b.model;
  const qlib::amax_map amax = qlib_test::residual_model_amax();
  qlib::quantize_qdq(b.model, amax);
  const onnx::GraphProto& g = b.model.graph();

  for (const auto& kv : amax) {
    const onnx::TensorProto* s = find_init(g, kv.first + "_scale");
    const onnx::TensorProto* z = find_init(g, kv.first + "_zero_point");
    REQUIRE(s);
    REQUIRE(z);
    CHECK(s->dims_size() == 0);  // per tensor: a scalar
    CHECK(floats(*s)[0] == kv.second / 127.0f);
    CHECK(z->data_type() == onnx::TensorProto::INT8);
    CHECK(z->raw_data() == std::string(1, '\0'));
  }
  struct wcase {
    const char* name;
    int axis;
  };
  for (wcase w : {wcase{"w1", 0}, wcase{"w2", 0}, wcase{"wt", 1}, wcase{"gb", 0}, wcase{"mm", 1}}) {
    INFO(w.name);
    const onnx::TensorProto* orig = find_init(before.graph(), w.name);
    std::vector<std::int64_t> dims(orig->dims().begin(), orig->dims().end());
    const std::vector<float> expect = ref_channel_scales(floats(*orig), dims, w.axis);
    const onnx::TensorProto* s = find_init(g, std::string(w.name) + "_scale");
    REQUIRE(s);
    REQUIRE(s->dims_size() == 1);
    CHECK(s->dims(0) == static_cast<std::int64_t>(expect.size()));
    CHECK(floats(*s) == expect);
    const onnx::TensorProto* z = find_init(g, std::string(w.name) + "_zero_point");
    CHECK(z->raw_data() == std::string(expect.size(), '\0'));
    const onnx::NodeProto* q = find_node(g, std::string(w.name) + "_QuantizeLinear");
    const onnx::NodeProto* dq = find_node(g, std::string(w.name) + "_DequantizeLinear");
    REQUIRE(q);
    REQUIRE(dq);
    CHECK(axis_of(*q) == w.axis);
    CHECK(axis_of(*dq) == w.axis);
    CHECK(q->input(0) == w.name);  // float weight kept
  }
  // Per-tensor pairs carry no axis.
  CHECK(axis_of(*find_node(g, "x_QuantizeLinear")) == -1);
}

TEST_CASE("QDQ writer: int8 weight storage matches qlib's rounding", "[onnx]") {
  onnx_builder b = qlib_test::residual_model();
  const onnx::ModelProto before = b.model;
  qlib::qdq_options opt;
  opt.weights = qlib::qdq_weight_storage::int8;
  qlib::quantize_qdq(b.model, qlib_test::residual_model_amax(), opt);
  const onnx::GraphProto& g = b.model.graph();
  CHECK(count_op(g, "QuantizeLinear") == 5);  // activations only
  CHECK(count_op(g, "DequantizeLinear") == 10);
  CHECK(topologically_sorted(g));
  for (const char* name : {"w1", "w2", "wt", "gb", "mm"}) {
    INFO(name);
    CHECK_FALSE(find_init(g, name));  // the float weight is gone (nothing else reads it)
    const onnx::TensorProto* orig = find_init(before.graph(), name);
    const onnx::TensorProto* q = find_init(g, std::string(name) + "_quantized");
    REQUIRE(q);
    CHECK(q->data_type() == onnx::TensorProto::INT8);
    CHECK(std::vector<std::int64_t>(q->dims().begin(), q->dims().end()) ==
          std::vector<std::int64_t>(orig->dims().begin(), orig->dims().end()));
    const int axis = std::string(name) == "wt" || std::string(name) == "mm" ? 1 : 0;
    std::vector<std::int64_t> dims(orig->dims().begin(), orig->dims().end());
    const std::vector<float> w = floats(*orig);
    const std::vector<float> s = ref_channel_scales(w, dims, axis);
    std::size_t inner = 1;
    for (std::size_t i = static_cast<std::size_t>(axis) + 1; i < dims.size(); ++i) inner *= static_cast<std::size_t>(dims[i]);
    const std::string& raw = q->raw_data();
    REQUIRE(raw.size() == w.size());
    int mismatches = 0;
    for (std::size_t i = 0; i < w.size(); ++i) {
      const std::size_t c = (i / inner) % s.size();
      const float r = std::nearbyint(w[i] / s[c]);  // default FE mode: round half to even
      const int expect = static_cast<int>(std::max(-127.0f, std::min(127.0f, r)));
      mismatches += static_cast<int>(static_cast<signed char>(raw[i])) != expect;
    }
    CHECK(mismatches == 0);
  }
}

TEST_CASE("QDQ writer: residual Add rules", "[onnx]") {
  auto conv = [](onnx_builder& b, const std::string& name, const std::string& in, const std::string& out,
                 std::uint64_t seed) {
    b.random_init(name + "_w", {4, 4, 1, 1}, seed);
    b.node("Conv", name, {in, name + "_w"}, {out});
  };
  SECTION("both inputs conv-fed: input 1 is the shortcut") {
    onnx_builder b;
    b.input("x", {1, 4, 3, 3});
    conv(b, "ca", "x", "a", 1);
    conv(b, "cb", "x", "bb", 2);
    b.node("Add", "add", {"a", "bb"}, {"y"});
    b.output("y", {1, 4, 3, 3});
    qlib::quantize_qdq(b.model, {{"x", 1.0f}, {"bb", 2.0f}});
    const onnx::NodeProto* add = find_node(b.model.graph(), "add");
    CHECK(add->input(0) == "a");
    CHECK(add->input(1) == "bb_DequantizeLinear_Output");
  }
  SECTION("conv-fed input 1: input 0 is the shortcut") {
    onnx_builder b;
    b.input("x", {1, 4, 3, 3});
    b.node("Relu", "relu", {"x"}, {"r"});
    conv(b, "ca", "r", "a", 1);
    b.node("Add", "add", {"r", "a"}, {"y"});
    b.output("y", {1, 4, 3, 3});
    qlib::quantize_qdq(b.model, {{"r", 1.0f}});
    const onnx::NodeProto* add = find_node(b.model.graph(), "add");
    CHECK(add->input(0) == "r_DequantizeLinear_Output");
    CHECK(add->input(1) == "a");
    CHECK(find_node(b.model.graph(), "ca")->input(0) == "r_DequantizeLinear_Output");
  }
  SECTION("no conv-fed input, or a constant input: untouched") {
    onnx_builder b;
    b.input("x", {1, 4});
    b.input("z", {1, 4});
    b.init("k", {4}, {1, 2, 3, 4});
    b.node("Add", "add1", {"x", "z"}, {"s"});
    b.node("Add", "add2", {"s", "k"}, {"y"});
    b.output("y", {1, 4});
    const qlib::qdq_report rep = qlib::quantize_qdq(b.model, {});
    CHECK(rep.activations.empty());
    CHECK(b.model.graph().node_size() == 2);
  }
  SECTION("a bias computed from constants (Reshape of an initializer) is not a shortcut") {
    onnx_builder b;
    b.input("x", {1, 4, 3, 3});
    conv(b, "ca", "x", "a", 1);
    b.init("bias", {4}, {1, 2, 3, 4});
    auto* shape = b.g->add_initializer();
    shape->set_name("bias_shape");
    shape->set_data_type(onnx::TensorProto::INT64);
    shape->add_dims(4);
    for (std::int64_t d : {1, 4, 1, 1}) shape->add_int64_data(d);
    b.node("Reshape", "reshape", {"bias", "bias_shape"}, {"bias4"});
    b.node("Add", "add", {"a", "bias4"}, {"y"});
    b.output("y", {1, 4, 3, 3});
    const qlib::qdq_report rep = qlib::quantize_qdq(b.model, {{"x", 1.0f}});
    CHECK(find_node(b.model.graph(), "add")->input(1) == "bias4");
    CHECK(rep.activations == std::vector<std::string>{"x"});
  }
  SECTION("policy none leaves Adds float") {
    onnx_builder b;
    b.input("x", {1, 4, 3, 3});
    b.node("Relu", "relu", {"x"}, {"r"});
    conv(b, "ca", "r", "a", 1);
    b.node("Add", "add", {"r", "a"}, {"y"});
    b.output("y", {1, 4, 3, 3});
    qlib::qdq_options opt;
    opt.residual_add = qlib::qdq_residual_add::none;
    qlib::quantize_qdq(b.model, {{"r", 1.0f}}, opt);
    CHECK(find_node(b.model.graph(), "add")->input(0) == "r");
  }
}

TEST_CASE("QDQ writer: Gemm transB = 0, MatMul with a 1-D or activation B", "[onnx]") {
  onnx_builder b;
  b.input("x", {2, 3});
  b.input("v", {5, 2});
  b.random_init("B", {3, 5}, 3);  // (K, N): per channel along axis 1
  b.random_init("u", {5}, 4);     // 1-D: per tensor
  b.node("Gemm", "gemm", {"x", "B"}, {"g"});
  b.node("MatMul", "mv", {"g", "u"}, {"p"});
  b.node("MatMul", "mm", {"g", "v"}, {"q"});  // both inputs are activations
  b.output("p", {2});
  b.output("q", {2, 2});
  const qlib::qdq_report rep = qlib::quantize_qdq(b.model, {{"x", 1.0f}, {"g", 2.0f}, {"v", 3.0f}});
  const onnx::GraphProto& g = b.model.graph();
  CHECK(axis_of(*find_node(g, "B_QuantizeLinear")) == 1);
  CHECK(find_init(g, "B_scale")->dims(0) == 5);
  CHECK(axis_of(*find_node(g, "u_QuantizeLinear")) == -1);
  CHECK(find_init(g, "u_scale")->dims_size() == 0);
  CHECK(find_node(g, "mm")->input(1) == "v_DequantizeLinear_Output");
  CHECK(find_node(g, "mm")->input(0) == find_node(g, "mv")->input(0));  // one pair for g
  CHECK(rep.activations.size() == 3);
}

TEST_CASE("QDQ writer: degenerate weights and float_data storage", "[onnx]") {
  onnx_builder b;
  b.input("x", {1, 2, 2, 2});
  b.init("w", {2, 2, 1, 1}, {0.0f, 0.0f, 0.5f, -1.27f}, /*raw=*/false);  // channel 0 all zero
  b.node("Conv", "conv", {"x", "w"}, {"y"});
  b.output("y", {1, 2, 2, 2});
  qlib::quantize_qdq(b.model, {{"x", 0.0f}});  // amax 0: scale 1, never NaN
  const onnx::GraphProto& g = b.model.graph();
  CHECK(floats(*find_init(g, "w_scale")) == std::vector<float>{1.0f, 1.27f / 127.0f});
  CHECK(floats(*find_init(g, "x_scale"))[0] == 1.0f);
}

TEST_CASE("QDQ writer: opset import", "[onnx]") {
  SECTION("opset 11 with compatible operators is raised to 13") {
    onnx_builder b = qlib_test::residual_model(11);
    b.model.set_ir_version(6);
    const qlib::qdq_report rep = qlib::quantize_qdq(b.model, qlib_test::residual_model_amax());
    CHECK(rep.opset_before == 11);
    CHECK(rep.opset_after == 13);
    CHECK(b.model.opset_import(0).version() == 13);
    CHECK(b.model.ir_version() == 7);
  }
  SECTION("opset 15 is kept") {
    onnx_builder b = qlib_test::residual_model(15);
    const qlib::qdq_report rep = qlib::quantize_qdq(b.model, qlib_test::residual_model_amax());
    CHECK(rep.opset_after == 15);
    CHECK(b.model.opset_import(0).version() == 15);
  }
  SECTION("an operator whose meaning changes is an error naming it; the model is unchanged") {
    onnx_builder b = qlib_test::residual_model(11);
    b.node("Softmax", "softmax", {"y"}, {"prob"});
    const std::string bytes = b.model.SerializeAsString();
    try {
      qlib::quantize_qdq(b.model, qlib_test::residual_model_amax());
      FAIL("no error");
    } catch (const qlib::error& e) {
      CHECK(e.code() == qlib::errc::invalid_argument);
      CHECK_THAT(e.what(), Catch::Contains("Softmax (its schema changes at opset 13)"));
      CHECK_THAT(e.what(), Catch::Contains("opset 11"));
    }
    CHECK(b.model.SerializeAsString() == bytes);
  }
  SECTION("an unknown operator below opset 13 is an error") {
    onnx_builder b(9);
    b.input("x", {1});
    b.node("NoSuchOp", "n", {"x"}, {"y"});
    CHECK_THROWS_WITH(qlib::quantize_qdq(b.model, {}), Catch::Contains("NoSuchOp (not an operator of opsets <= 13)"));
  }
  SECTION("no default-domain import: one is added") {
    onnx_builder b;
    b.model.clear_opset_import();
    b.input("x", {1});
    b.output("x", {1});
    const qlib::qdq_report rep = qlib::quantize_qdq(b.model, {});
    CHECK(rep.opset_before == 0);
    REQUIRE(b.model.opset_import_size() == 1);
    CHECK(b.model.opset_import(0).version() == 13);
  }
}

TEST_CASE("QDQ writer: bad input is rejected before the model changes", "[onnx]") {
  auto expect_error = [](onnx_builder& b, const qlib::amax_map& amax, qlib::errc code, const std::string& text) {
    const std::string bytes = b.model.SerializeAsString();
    try {
      qlib::quantize_qdq(b.model, amax);
      FAIL("no error");
    } catch (const qlib::error& e) {
      CHECK(e.code() == code);
      CHECK_THAT(e.what(), Catch::Contains(text));
    }
    CHECK(b.model.SerializeAsString() == bytes);
  };
  SECTION("missing amax names the tensor and the node") {
    onnx_builder b = qlib_test::residual_model();
    qlib::amax_map amax = qlib_test::residual_model_amax();
    amax.erase("f");
    expect_error(b, amax, qlib::errc::invalid_argument, "no amax for tensor 'f' (input 0 of Gemm 'gemm')");
  }
  SECTION("negative or NaN amax") {
    onnx_builder b = qlib_test::residual_model();
    qlib::amax_map amax = qlib_test::residual_model_amax();
    amax["g"] = -1.0f;
    expect_error(b, amax, qlib::errc::invalid_argument, "amax of tensor 'g'");
    amax["g"] = std::nanf("");
    expect_error(b, amax, qlib::errc::invalid_argument, "must be finite and >= 0");
  }
  SECTION("NaN in a weight names the weight and the index") {
    onnx_builder b = qlib_test::residual_model();
    b.init("w_nan", {2, 8, 1, 1}, std::vector<float>(16, 1.0f));
    auto* t = b.g->mutable_initializer(b.g->initializer_size() - 1);
    std::string raw = t->raw_data();
    const float nan = std::nanf("");
    std::memcpy(&raw[4 * 5], &nan, 4);
    t->set_raw_data(raw);
    b.node("Conv", "conv3", {"r2", "w_nan"}, {"c3"});
    expect_error(b, qlib_test::residual_model_amax(), qlib::errc::non_finite, "tensor 'w_nan' of shape (2, 8, 1, 1) holds NaN at flat index 5");
  }
  SECTION("non-float weight, external data, bad raw size") {
    onnx_builder b = qlib_test::residual_model();
    b.g->mutable_initializer(0)->set_data_type(onnx::TensorProto::DOUBLE);
    expect_error(b, qlib_test::residual_model_amax(), qlib::errc::invalid_argument, "initializer 'w1' has data type 11");
    onnx_builder e = qlib_test::residual_model();
    e.g->mutable_initializer(0)->set_data_location(onnx::TensorProto::EXTERNAL);
    expect_error(e, qlib_test::residual_model_amax(), qlib::errc::invalid_argument, "external file");
    onnx_builder r = qlib_test::residual_model();
    r.g->mutable_initializer(0)->mutable_raw_data()->resize(7);
    expect_error(r, qlib_test::residual_model_amax(), qlib::errc::parse_error, "holds 7 bytes of raw data");
  }
  SECTION("an already quantized model") {
    onnx_builder b = qlib_test::residual_model();
    qlib::quantize_qdq(b.model, qlib_test::residual_model_amax());
    expect_error(b, qlib_test::residual_model_amax(), qlib::errc::invalid_argument, "already quantized");
  }
  SECTION("a weight without a channel axis") {
    onnx_builder b;
    b.input("x", {1, 2});
    b.random_init("w", {2}, 1);
    b.node("ConvTranspose", "ct", {"x", "w"}, {"y"});
    expect_error(b, {{"x", 1.0f}}, qlib::errc::invalid_argument, "weight 'w' of shape (2,) has no channel axis 1");
  }
  SECTION("a graph without a graph") {
    onnx::ModelProto m;
    CHECK_THROWS_WITH(qlib::quantize_qdq(m, {}), Catch::Contains("no graph"));
  }
}

TEST_CASE("QDQ writer: skip_missing_ranges leaves inputs float and reports them", "[onnx]") {
  onnx_builder b = qlib_test::residual_model();
  qlib::amax_map amax = qlib_test::residual_model_amax();
  amax.erase("x");
  qlib::qdq_options opt;
  opt.skip_missing_ranges = true;
  const qlib::qdq_report rep = qlib::quantize_qdq(b.model, amax, opt);
  REQUIRE(rep.skipped.size() == 1);
  CHECK_THAT(rep.skipped[0], Catch::Contains("tensor 'x' (input 0 of Conv 'conv1'): no amax"));
  CHECK(find_node(b.model.graph(), "conv1")->input(0) == "x");
  CHECK(rep.activations.size() == 4);
}

TEST_CASE("QDQ writer: skip_nodes keeps chosen layers float", "[onnx]") {
  onnx_builder b = qlib_test::residual_model();
  qlib::amax_map amax = qlib_test::residual_model_amax();
  amax.erase("x");  // conv1 is skipped: its input needs no amax
  qlib::qdq_options opt;
  opt.skip_nodes = {"conv1", "add"};
  const qlib::qdq_report rep = qlib::quantize_qdq(b.model, amax, opt);
  const onnx::GraphProto& g = b.model.graph();
  CHECK(find_node(g, "conv1")->input(0) == "x");
  CHECK(find_node(g, "conv1")->input(1) == "w1");
  CHECK(find_node(g, "add")->input(1) == "r1");
  CHECK(find_node(g, "conv2")->input(0) == "r1_DequantizeLinear_Output");  // still quantized
  CHECK(rep.skipped == std::vector<std::string>{"Conv 'conv1': in skip_nodes", "Add 'add': in skip_nodes"});
  CHECK(std::set<std::string>(rep.weights.begin(), rep.weights.end()) ==
        std::set<std::string>{"w2", "wt", "gb", "mm"});

  onnx_builder c = qlib_test::residual_model();
  opt.skip_nodes = {"conv_one"};
  CHECK_THROWS_WITH(qlib::quantize_qdq(c.model, qlib_test::residual_model_amax(), opt),
                    Catch::Contains("skip_nodes names 'conv_one', which is not a node of the graph"));
}

TEST_CASE("QDQ writer: a weight computed from constants needs folding or an amax", "[onnx]") {
  onnx_builder b;
  b.input("x", {2, 3});
  b.random_init("wt", {4, 3}, 5);
  b.node("Transpose", "transpose", {"wt"}, {"w"});
  b.node("MatMul", "mm", {"x", "w"}, {"y"});
  b.output("y", {2, 4});
  CHECK_THROWS_WITH(qlib::quantize_qdq(b.model, {{"x", 1.0f}}),
                    Catch::Contains("no amax for tensor 'w' (input 1 of MatMul 'mm'); it is computed from constants only"));
  qlib::quantize_qdq(b.model, {{"x", 1.0f}, {"w", 2.0f}});  // with an amax: per tensor
  CHECK(find_node(b.model.graph(), "mm")->input(1) == "w_DequantizeLinear_Output");
}

TEST_CASE("QDQ writer: new names never collide with existing ones", "[onnx]") {
  onnx_builder b;
  b.input("x", {1, 2, 2, 2});
  b.random_init("w", {2, 2, 1, 1}, 1);
  b.init("x_scale", {1}, {3.0f});  // a user tensor with the name the writer would pick
  b.node("Conv", "conv", {"x", "w"}, {"y"});
  b.node("Mul", "x_QuantizeLinear", {"y", "x_scale"}, {"x_DequantizeLinear_Output"});
  b.output("x_DequantizeLinear_Output", {1, 2, 2, 2});
  qlib::quantize_qdq(b.model, {{"x", 1.0f}});
  const onnx::GraphProto& g = b.model.graph();
  std::set<std::string> outputs, nodes, inits;
  for (const auto& n : g.node()) {
    CHECK(nodes.insert(n.name()).second);
    for (const auto& o : n.output()) CHECK(outputs.insert(o).second);
  }
  for (const auto& t : g.initializer()) CHECK(inits.insert(t.name()).second);
  CHECK(floats(*find_init(g, "x_scale"))[0] == 3.0f);  // the user's tensor is untouched
  CHECK(find_node(g, "conv")->input(0) == "x_DequantizeLinear_Output_1");
}

TEST_CASE("QDQ writer: ranges from observers and from a TensorRT cache", "[onnx]") {
  qlib::trt_cache cache;
  cache.add_amax("x", 2.54f);
  cache.add_amax("r1", 0.0f);
  const qlib::amax_map a = qlib::amax_from_trt_cache(cache);
  CHECK(a.at("x") == (2.54f / 127.0f) * 127.0f);
  CHECK(a.at("r1") == 0.0f);
  qlib::amax_map m;
  qlib::set_amax(m, "t", qlib::make_result(-3.0f, 2.0f, qlib::qspec::tensorrt_int8()));
  CHECK(m.at("t") == 3.0f);
  const auto per_channel = qlib::make_result(std::vector<float>{-1, -2}, std::vector<float>{1, 2},
                                             qlib::qspec::tensorrt_weight_int8(), 0);
  CHECK_THROWS_WITH(qlib::set_amax(m, "w", per_channel), Catch::Contains("tensor 'w' has a per-channel result"));
}

TEST_CASE("QDQ writer: ONNX files round trip and errors name the file", "[onnx]") {
  onnx_builder b = qlib_test::residual_model();
  qlib::quantize_qdq(b.model, qlib_test::residual_model_amax());
  const std::string path = "qlib_onnx_qdq_test_roundtrip.onnx";
  qlib::write_onnx_file(path, b.model);
  const onnx::ModelProto back = qlib::read_onnx_file(path);
  CHECK(back.SerializeAsString() == b.model.SerializeAsString());
  std::remove(path.c_str());
  CHECK_THROWS_WITH(qlib::read_onnx_file("no/such/model.onnx"), Catch::Contains("no/such/model.onnx"));
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    std::fputs("\x08\xff\xff garbage", f);
    std::fclose(f);
  }
  CHECK_THROWS_WITH(qlib::read_onnx_file(path), Catch::Contains("is not a valid ONNX model"));
  std::remove(path.c_str());
  CHECK_THROWS_WITH(qlib::write_onnx_file("no/such/dir/m.onnx", b.model), Catch::Contains("no/such/dir/m.onnx"));
}
