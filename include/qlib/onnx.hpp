// Opt-in ONNX adapter: writes the QDQ model that TensorRT's explicit quantization and ONNX
// Runtime consume (shared/specs/algorithms.md section 4), from an ONNX model and one
// symmetric threshold (amax) per activation tensor, e.g. from qlib observers or a TensorRT
// calibration cache. Needs the ONNX protobuf classes and protobuf (Debian: libonnx-dev,
// libprotobuf-dev; CMake: find_package(ONNX), link onnx_proto and protobuf::libprotobuf).
//
// What the writer does (the rules TensorRT documents for explicit quantization, "Q/DQ
// layer placement recommendations", and that NVIDIA's pytorch-quantization exports):
// - Conv, ConvTranspose, Gemm, MatMul (default domain): a QuantizeLinear/DequantizeLinear
//   pair on BOTH inputs (data and weight); the bias stays float (TensorRT wants a float
//   bias and folds it).
//   * activations: per tensor, symmetric int8 [-128, 127], scale = amax / 127 (float32,
//     TensorRT's rule; a scale below FLT_EPSILON becomes 1, qlib's degenerate-range rule),
//     zero point 0 of type int8;
//   * float initializers in the weight slot: per output channel, narrow int8 [-127, 127],
//     scale_c = max|W_c| / 127 computed here with qlib's arithmetic (core/qparams.hpp).
//     Channel axis: Conv 0; ConvTranspose 1 (its weight is (C_in, C_out/group, k...));
//     Gemm 0 when transB = 1 (B is (N, K)) else 1; MatMul the last axis of B (N of a
//     (..., K, N) B; a 1-D B is per tensor). A weight slot fed by a computed tensor is an
//     activation and needs an amax.
// - Add (policy residual_add::shortcut): when both inputs are computed tensors (not
//   initializers, not Constant outputs) and exactly one of them is "conv-fed", the OTHER
//   input (the shortcut) gets a Q/DQ pair so that TensorRT can fuse the Add into the
//   convolution that produces the conv-fed input. A tensor is conv-fed when its producer
//   is a Conv or ConvTranspose, or a BatchNormalization whose data input a Conv or
//   ConvTranspose produces (TensorRT folds that BatchNormalization into the convolution).
//   When both inputs are conv-fed (a ResNet block with a projection shortcut) input 1 is
//   taken as the shortcut (the operand order of `out + identity` in torchvision's and
//   pytorch-quantization's ResNet). Adds with a constant input (bias adds; constant: an
//   initializer, a Constant node's output, or computed from constants only) and Adds with
//   no conv-fed input are left alone.
// - options.skip_nodes keeps the inputs of the named nodes float (AMCT's skip_layers; the
//   engine runs those layers in floating point).
// - Every quantized tensor gets one Q/DQ pair shared by all of its quantized consumers;
//   consumers that are not quantized keep reading the float tensor. Existing tensor and
//   node names are kept; new ones are derived from the tensor name (<t>_QuantizeLinear,
//   <t>_DequantizeLinear_Output, <t>_scale, <t>_zero_point, ...), made unique.
// - Opset: QuantizeLinear with a per-channel axis needs opset >= 13. A lower default-domain
//   opset import is raised to 13 when that keeps every node's meaning (the schema of each
//   operator used is the same at both versions, or changed only in steps ONNX's own
//   version converter treats as compatible: detail/onnx_opsets.hpp); otherwise the writer
//   fails and names the operators to convert first (onnx.version_converter). IR version is
//   raised to 7 (the IR of opset 13) when lower.
//
// Weights as float + Q/DQ (default) or int8 + DQ (qdq_weight_storage::int8): both give the
// same int8 values (round half to even of W / s; ONNX QuantizeLinear rounds the same way).
// The float form is the default because TensorRT's documented QAT flow since 8.0
// (pytorch-quantization exports it) and ONNX Runtime take it, while int8
// initializers are rejected by TensorRT 8.0-8.2 ("invalid weights type of Int8",
// megvii-research/Sparsebit#16) and accepted by later releases ("pre-quantized weights"
// need an IDequantizeLayer, TensorRT docs, Explicit Quantization) and by ONNX Runtime
// (what its quantize_static writes). The int8 form is 4x smaller.
//
// Only the main graph is rewritten (nodes inside If/Loop/Scan bodies are left float).
// Initializers listed as graph inputs too are treated as constants.
#pragma once

#if !defined(ONNX_ML) && defined(__has_include)
#if !__has_include(<onnx/onnx.pb.h>)
// Debian's libonnx-dev ships only the ONNX-ML protos; onnx_pb.h picks them by this macro
// (the onnx_proto CMake target defines it for its users).
#define ONNX_ML 1
#endif
#endif
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "config.hpp"
#include "core/check.hpp"
#include "core/qparams.hpp"
#include "core/quantize.hpp"
#include "core/tensor_view.hpp"
#include "detail/onnx_opsets.hpp"
#include "io/trt_cache.hpp"
#include "observer/result.hpp"

QLIB_NAMESPACE_BEGIN

/// Symmetric activation thresholds by ONNX tensor name: the tensor is quantized on
/// [-amax, amax] (scale amax / 127). Values must be finite and >= 0.
using amax_map = std::map<std::string, float>;

/// The thresholds of a TensorRT calibration cache: amax = scale * 127 (what TensorRT and
/// ONNX Runtime's TensorRT provider take as the dynamic range).
inline amax_map amax_from_trt_cache(const trt_cache& cache) {
  amax_map out;
  for (const auto& e : cache.entries) out[e.name] = e.amax();
  return out;
}

/// Adds a per-tensor observer result: amax = max(|clip_min|, |clip_max|).
template <class T>
void set_amax(amax_map& map, const std::string& tensor, const calib_result<T>& result) {
  if (result.per_channel() || result.channels() != 1)
    detail::fail(errc::invalid_argument, "ONNX QDQ: tensor '" + tensor +
                                             "' has a per-channel result; activations take one amax per tensor");
  const T a = result.amax();
  if (!std::isfinite(static_cast<double>(a)))
    detail::fail(errc::non_finite, "ONNX QDQ: tensor '" + tensor + "' has a non-finite amax");
  map[tensor] = static_cast<float>(a);
}

/// How quantized weights are stored.
enum class qdq_weight_storage : std::uint8_t {
  float_qdq,  ///< the float initializer -> QuantizeLinear -> DequantizeLinear (TensorRT 8.0+, ORT)
  int8,       ///< an int8 initializer -> DequantizeLinear (4x smaller; recent TensorRT, ORT)
};

/// Which Add inputs get a Q/DQ pair.
enum class qdq_residual_add : std::uint8_t {
  shortcut,  ///< the shortcut input of a residual Add (see the file comment)
  none,      ///< Adds stay float
};

struct qdq_options {
  qdq_weight_storage weights = qdq_weight_storage::float_qdq;
  qdq_residual_add residual_add = qdq_residual_add::shortcut;
  /// false: an activation without an amax is an error naming it. true: that input stays
  /// float and is listed in qdq_report::skipped.
  bool skip_missing_ranges = false;
  /// Nodes (by name) whose inputs stay float, like AMCT's skip_layers: the engine then runs
  /// them in floating point (TensorRT: FP16 / FP32). A name not in the graph is an error.
  std::vector<std::string> skip_nodes;
};

/// What the writer did.
struct qdq_report {
  std::int64_t opset_before = 0;  ///< default-domain opset import before (0: none)
  std::int64_t opset_after = 0;
  std::vector<std::string> activations;  ///< tensors given a per-tensor Q/DQ pair
  std::vector<std::string> weights;      ///< initializers quantized per channel (or per tensor)
  std::vector<std::string> skipped;      ///< "tensor (input i of Op 'node'): reason" or "Op 'node': reason"
};

namespace detail {
namespace onnx_qdq {

using ::onnx::GraphProto;
using ::onnx::ModelProto;
using ::onnx::NodeProto;
using ::onnx::TensorProto;

inline bool default_domain(const std::string& d) { return d.empty() || d == "ai.onnx"; }

inline std::string node_label(const NodeProto& n, int index) {
  return n.op_type() + " '" + (n.name().empty() ? "#" + std::to_string(index) : n.name()) + "'";
}

inline const ::onnx::AttributeProto* find_attribute(const NodeProto& n, const char* name) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}

inline std::int64_t int_attribute(const NodeProto& n, const char* name, std::int64_t fallback) {
  const auto* a = find_attribute(n, name);
  return a ? a->i() : fallback;
}

// Little-endian byte access that does not depend on the host's byte order.
inline float float_from_le(const char* p) noexcept {
  std::uint32_t u = 0;
  for (int i = 3; i >= 0; --i) u = (u << 8) | static_cast<unsigned char>(p[i]);
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline void float_to_le(float f, std::string* out) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((u >> (8 * i)) & 0xffu));
}

/// The float32 values and shape of an initializer; fails with a message naming it.
inline void read_float_tensor(const TensorProto& t, std::vector<float>* values, shape_t* shape) {
  const std::string who = "ONNX QDQ: initializer '" + t.name() + "'";
  if (t.data_type() != TensorProto::FLOAT)
    fail(errc::invalid_argument, who + " has data type " + std::to_string(t.data_type()) +
                                     "; only float32 weights are quantized (convert the model to float32 first)");
  if (t.data_location() == TensorProto::EXTERNAL)
    fail(errc::invalid_argument, who + " keeps its data in an external file; load the external data first");
  if (t.dims_size() > shape_t::max_rank)
    fail(errc::invalid_argument, who + " has " + std::to_string(t.dims_size()) + " dimensions; qlib supports 8");
  std::size_t n = 1;
  std::vector<std::size_t> dims;
  for (std::int64_t d : t.dims()) {
    if (d < 0) fail(errc::invalid_argument, who + " has a negative dimension " + std::to_string(d));
    dims.push_back(static_cast<std::size_t>(d));
    n *= static_cast<std::size_t>(d);
  }
  *shape = shape_t::from_range(dims.begin(), dims.end());
  values->clear();
  if (t.has_raw_data()) {
    const std::string& raw = t.raw_data();
    if (raw.size() != n * 4)
      fail(errc::parse_error, who + " holds " + std::to_string(raw.size()) + " bytes of raw data; its shape " +
                                  shape->str() + " needs " + std::to_string(n * 4));
    values->resize(n);
    for (std::size_t i = 0; i < n; ++i) (*values)[i] = float_from_le(raw.data() + 4 * i);
  } else {
    if (static_cast<std::size_t>(t.float_data_size()) != n)
      fail(errc::parse_error, who + " holds " + std::to_string(t.float_data_size()) + " values; its shape " +
                                  shape->str() + " needs " + std::to_string(n));
    values->assign(t.float_data().begin(), t.float_data().end());
  }
}

/// The default-domain opset import (nullptr when the model has none).
inline ::onnx::OperatorSetIdProto* default_opset(ModelProto& m) {
  for (auto& o : *m.mutable_opset_import())
    if (default_domain(o.domain())) return &o;
  return nullptr;
}

/// Collects default-domain op types of a graph and of its subgraphs.
inline void collect_ops(const GraphProto& g, std::set<std::string>* ops) {
  for (const auto& n : g.node()) {
    if (default_domain(n.domain())) ops->insert(n.op_type());
    for (const auto& a : n.attribute()) {
      if (a.has_g()) collect_ops(a.g(), ops);
      for (const auto& sg : a.graphs()) collect_ops(sg, ops);
    }
  }
}

/// Why raising the opset import from `from` to 13 would change `op`, or "" when it keeps
/// the op's meaning (detail/onnx_opsets.hpp).
inline std::string opset_upgrade_problem(const std::string& op, std::int64_t from) {
  int count = 0;
  const onnx_schema_change* rows = onnx_schema_changes(&count);
  bool known = false;
  for (int i = 0; i < count; ++i) {
    if (op != rows[i].op) continue;
    known = true;
    if (rows[i].since_version > from && rows[i].since_version <= onnx_opset_table_target && !rows[i].compatible)
      return op + " (its schema changes at opset " + std::to_string(rows[i].since_version) + ")";
  }
  if (!known) return op + " (not an operator of opsets <= 13)";
  return {};
}

/// One quantized tensor and the node inputs to rewire to its dequantized copy.
struct request {
  std::string tensor;
  bool weight = false;  // an initializer quantized from its own values
  int axis = -1;        // weights: channel axis (-1 per tensor)
  std::vector<std::pair<int, int>> uses;  // (node index, input index)
};

/// A name not used yet in the graph (tensor, node or initializer names share the pool).
struct name_pool {
  std::unordered_set<std::string> used;
  std::string make(const std::string& base) {
    std::string name = base;
    for (int k = 1; used.count(name); ++k) name = base + "_" + std::to_string(k);
    used.insert(name);
    return name;
  }
};

inline void add_float_initializer(GraphProto* g, const std::string& name, const std::vector<float>& v,
                                  const std::vector<std::int64_t>& dims) {
  TensorProto* t = g->add_initializer();
  t->set_name(name);
  t->set_data_type(TensorProto::FLOAT);
  for (std::int64_t d : dims) t->add_dims(d);
  std::string raw;
  raw.reserve(v.size() * 4);
  for (float f : v) float_to_le(f, &raw);
  t->set_raw_data(raw);
}

inline void add_int8_initializer(GraphProto* g, const std::string& name, const std::vector<std::int8_t>& v,
                                 const std::vector<std::int64_t>& dims) {
  TensorProto* t = g->add_initializer();
  t->set_name(name);
  t->set_data_type(TensorProto::INT8);
  for (std::int64_t d : dims) t->add_dims(d);
  t->set_raw_data(std::string(reinterpret_cast<const char*>(v.data()), v.size()));
}

inline NodeProto make_node(const std::string& op, const std::string& name, std::vector<std::string> inputs,
                           const std::string& output, int axis) {
  NodeProto n;
  n.set_op_type(op);
  n.set_name(name);
  for (auto& i : inputs) n.add_input(std::move(i));
  n.add_output(output);
  if (axis >= 0) {
    auto* a = n.add_attribute();
    a->set_name("axis");
    a->set_type(::onnx::AttributeProto::INT);
    a->set_i(axis);
  }
  return n;
}

}  // namespace onnx_qdq
}  // namespace detail

/// Per-channel weight parameters as qlib computes them for the QDQ model: symmetric
/// narrow int8, scale_c = max|w_c| / 127 along `axis` (-1: one scale for the tensor).
inline channel_qparams<float> qdq_weight_params(tensor_view<const float> w, int axis) {
  const std::string who = "ONNX QDQ: weight " + w.label();
  detail::throw_if(check_finite(w, who));
  const qspec spec = qspec::tensorrt_weight_int8();
  channel_layout l;
  if (axis < 0) {
    l.channels = 1;
    l.inner = w.size();
  } else {
    l = layout_along(w.shape(), axis);
  }
  std::vector<float> amax(l.channels, 0.0f);
  for (std::size_t o = 0; o < l.outer; ++o)
    for (std::size_t c = 0; c < l.channels; ++c) {
      const float* row = w.data() + (o * l.channels + c) * l.inner;
      float a = amax[c];
      for (std::size_t i = 0; i < l.inner; ++i) a = std::fabs(row[i]) > a ? std::fabs(row[i]) : a;
      amax[c] = a;
    }
  std::vector<float> lo(amax.size());
  for (std::size_t c = 0; c < amax.size(); ++c) lo[c] = -amax[c];
  return qparams_from_ranges(lo, amax, spec, axis < 0 ? 0 : axis);
}

/// Rewrites `model` in place into its QDQ form (see the file comment); returns what was
/// quantized. Everything is checked before the model is touched: on failure (missing
/// amax, opset that cannot be raised, unreadable weight, an already quantized model) the
/// model is unchanged.
inline qdq_report quantize_qdq(::onnx::ModelProto& model, const amax_map& amax, const qdq_options& options = {}) {
  using namespace detail::onnx_qdq;
  using detail::fail;
  qdq_report report;
  if (!model.has_graph()) fail(errc::invalid_argument, "ONNX QDQ: the model has no graph");
  GraphProto& g = *model.mutable_graph();

  // --- opset ---------------------------------------------------------------------------
  ::onnx::OperatorSetIdProto* opset = default_opset(model);
  report.opset_before = opset ? opset->version() : 0;
  report.opset_after = std::max<std::int64_t>(report.opset_before, 13);
  if (opset && opset->version() < 13) {
    std::set<std::string> ops;
    collect_ops(g, &ops);
    std::string problems;
    for (const auto& op : ops) {
      const std::string p = opset_upgrade_problem(op, opset->version());
      if (!p.empty()) problems += (problems.empty() ? "" : ", ") + p;
    }
    if (!problems.empty())
      fail(errc::invalid_argument, "ONNX QDQ: the model imports opset " + std::to_string(opset->version()) +
                                       "; QDQ needs opset 13, and raising it would change " + problems +
                                       ". Convert the model first (onnx.version_converter.convert_version(model, 13))");
  }

  // --- index the graph -----------------------------------------------------------------
  std::unordered_map<std::string, int> initializer;  // name -> index
  for (int i = 0; i < g.initializer_size(); ++i) initializer[g.initializer(i).name()] = i;
  std::unordered_map<std::string, int> producer;  // tensor -> node index
  std::unordered_set<std::string> constant;       // initializers and Constant outputs
  for (const auto& kv : initializer) constant.insert(kv.first);
  name_pool names;
  for (const auto& i : g.input()) names.used.insert(i.name());
  for (const auto& i : g.output()) names.used.insert(i.name());
  for (const auto& i : g.value_info()) names.used.insert(i.name());
  for (const auto& kv : initializer) names.used.insert(kv.first);
  std::unordered_set<std::string> node_names;
  for (int k = 0; k < g.node_size(); ++k) {
    const NodeProto& n = g.node(k);
    if (default_domain(n.domain()) && (n.op_type() == "QuantizeLinear" || n.op_type() == "DequantizeLinear"))
      fail(errc::invalid_argument, "ONNX QDQ: the model is already quantized (" + node_label(n, k) + ")");
    if (!n.name().empty()) {
      names.used.insert(n.name());
      node_names.insert(n.name());
    }
    // Constant folding's notion of a constant: a Constant node's output, or the output of a
    // node whose inputs are all constant (e.g. a bias Reshape(initializer)). Nodes are in
    // topological order (an ONNX requirement), so one pass suffices.
    bool all_constant = default_domain(n.domain()) && n.op_type() == "Constant";
    if (!all_constant && n.input_size() > 0) {
      all_constant = true;
      for (const auto& i : n.input()) all_constant = all_constant && (i.empty() || constant.count(i) > 0);
    }
    for (const auto& o : n.output()) {
      if (o.empty()) continue;
      producer[o] = k;
      names.used.insert(o);
      if (all_constant) constant.insert(o);
    }
  }
  const std::unordered_set<std::string> skip(options.skip_nodes.begin(), options.skip_nodes.end());
  for (const auto& name : skip)
    if (!node_names.count(name))
      fail(errc::invalid_argument, "ONNX QDQ: option skip_nodes names '" + name + "', which is not a node of the graph");
  auto op_of = [&](const std::string& tensor) -> std::string {
    auto it = producer.find(tensor);
    if (it == producer.end()) return {};
    const NodeProto& n = g.node(it->second);
    return default_domain(n.domain()) ? n.op_type() : std::string();
  };
  auto conv_fed = [&](const std::string& tensor) {
    const std::string op = op_of(tensor);
    if (op == "Conv" || op == "ConvTranspose") return true;
    if (op == "BatchNormalization") {
      const NodeProto& bn = g.node(producer.at(tensor));
      const std::string up = bn.input_size() > 0 ? op_of(bn.input(0)) : std::string();
      return up == "Conv" || up == "ConvTranspose";
    }
    return false;
  };

  // --- plan: which inputs of which nodes get a Q/DQ pair ---------------------------------
  std::vector<request> requests;
  std::unordered_map<std::string, std::size_t> request_of;
  auto use = [&](const std::string& tensor, bool weight, int axis, int node, int input) {
    auto it = request_of.find(tensor);
    if (it == request_of.end()) {
      request_of[tensor] = requests.size();
      requests.push_back({tensor, weight, axis, {{node, input}}});
      return;
    }
    request& r = requests[it->second];
    if (r.weight != weight || r.axis != axis)
      fail(errc::invalid_argument, "ONNX QDQ: tensor '" + tensor + "' feeds " + node_label(g.node(node), node) +
                                       " and another quantized node with a different role or channel axis");
    r.uses.push_back({node, input});
  };
  for (int k = 0; k < g.node_size(); ++k) {
    const NodeProto& n = g.node(k);
    if (!default_domain(n.domain())) continue;
    const std::string& op = n.op_type();
    if (!n.name().empty() && skip.count(n.name())) {
      if (op == "Conv" || op == "ConvTranspose" || op == "Gemm" || op == "MatMul" || op == "Add")
        report.skipped.push_back(node_label(n, k) + ": in skip_nodes");
      continue;
    }
    int weight_axis = -2;  // -2: not a weighted op
    if (op == "Conv") weight_axis = 0;
    if (op == "ConvTranspose") weight_axis = 1;
    if (op == "Gemm") weight_axis = int_attribute(n, "transB", 0) != 0 ? 0 : 1;  // B is (N, K) or (K, N)
    if (op == "MatMul") weight_axis = -1;                                        // from B's rank below
    if (weight_axis != -2) {
      if (n.input_size() < 2)
        fail(errc::invalid_argument, "ONNX QDQ: " + node_label(n, k) + " has fewer than 2 inputs");
      for (int i = 0; i < 2; ++i) {
        const std::string& t = n.input(i);
        auto init = initializer.find(t);
        if (init == initializer.end()) {
          use(t, false, -1, k, i);  // computed (or a Constant node's output): needs an amax
          continue;
        }
        // An initializer is quantized from its own values: per channel in the weight slot,
        // per tensor in the data slot (rare).
        int axis = i == 1 ? weight_axis : -1;
        if (i == 1 && op == "MatMul") {  // B is (..., K, N): N is the last axis; 1-D B per tensor
          const int rank = g.initializer(init->second).dims_size();
          axis = rank >= 2 ? rank - 1 : -1;
        }
        use(t, true, axis, k, i);
      }
    } else if (op == "Add" && options.residual_add == qdq_residual_add::shortcut && n.input_size() == 2) {
      const std::string& a = n.input(0);
      const std::string& b = n.input(1);
      if (constant.count(a) || constant.count(b)) continue;  // a bias add
      const bool fa = conv_fed(a), fb = conv_fed(b);
      if (!fa && !fb) continue;
      const int shortcut = (fa && !fb) ? 1 : (fb && !fa) ? 0 : 1;
      use(n.input(shortcut), false, -1, k, shortcut);
    }
  }

  // --- validate: amax for each activation, readable weights -------------------------------
  struct weight_data {
    std::vector<float> values;
    shape_t shape;
    channel_qparams<float> params;
    std::vector<std::int8_t> q8;  // int8 storage only
  };
  std::vector<weight_data> wdata(requests.size());
  std::vector<bool> keep(requests.size(), true);
  for (std::size_t r = 0; r < requests.size(); ++r) {
    const request& q = requests[r];
    if (q.weight) {
      read_float_tensor(g.initializer(initializer.at(q.tensor)), &wdata[r].values, &wdata[r].shape);
      weight_data& w = wdata[r];
      if (q.axis >= w.shape.rank())
        fail(errc::invalid_argument, "ONNX QDQ: weight '" + q.tensor + "' of shape " + w.shape.str() +
                                         " has no channel axis " + std::to_string(q.axis));
      w.params = qdq_weight_params(view(w.values.data(), w.shape, q.tensor.c_str()), q.axis);
      if (options.weights == qdq_weight_storage::int8) {
        w.q8.resize(w.values.size());
        const qspec spec = qspec::tensorrt_weight_int8();
        if (q.axis >= 0)
          quantize(view(w.values.data(), w.shape), w.params, spec, w.q8.data());
        else
          quantize(view(w.values.data(), w.shape), qparams<float>{w.params.scale[0], 0}, spec, w.q8.data());
      }
      continue;
    }
    auto it = amax.find(q.tensor);
    const NodeProto& first = g.node(q.uses[0].first);
    const std::string where = "tensor '" + q.tensor + "' (input " + std::to_string(q.uses[0].second) + " of " +
                              node_label(first, q.uses[0].first) + ")";
    if (it == amax.end()) {
      if (!options.skip_missing_ranges)
        fail(errc::invalid_argument,
             "ONNX QDQ: no amax for " + where +
                 (constant.count(q.tensor) ? "; it is computed from constants only: fold constants first (e.g. "
                                             "onnxruntime's optimizer) so that it becomes an initializer"
                                           : ""));
      report.skipped.push_back(where + ": no amax");
      keep[r] = false;
      continue;
    }
    if (!std::isfinite(it->second) || it->second < 0.0f)
      fail(errc::invalid_argument, "ONNX QDQ: amax of " + where + " must be finite and >= 0, got " +
                                       std::to_string(it->second));
  }

  // --- apply -------------------------------------------------------------------------------
  // Q/DQ nodes go right after the producer of their tensor (before the first node for graph
  // inputs and initializers), which keeps the node list topologically sorted.
  std::vector<std::vector<NodeProto>> after(static_cast<std::size_t>(g.node_size()) + 1);  // [0]: before node 0
  std::vector<std::pair<std::pair<int, int>, std::string>> rewires;
  for (std::size_t r = 0; r < requests.size(); ++r) {
    if (!keep[r]) continue;
    const request& q = requests[r];
    const std::string& t = q.tensor;
    std::vector<float> scale;
    std::vector<std::int64_t> scale_dims;
    int axis = -1;
    if (q.weight) {
      scale = wdata[r].params.scale;
      if (q.axis >= 0) {
        axis = q.axis;
        scale_dims.push_back(static_cast<std::int64_t>(scale.size()));
      }
      report.weights.push_back(t);
    } else {
      scale.push_back(qparams_from_range(-amax.at(t), amax.at(t), qspec::tensorrt_int8()).scale);
      report.activations.push_back(t);
    }
    const std::string scale_name = names.make(t + "_scale");
    const std::string zp_name = names.make(t + "_zero_point");
    add_float_initializer(&g, scale_name, scale, scale_dims);
    add_int8_initializer(&g, zp_name, std::vector<std::int8_t>(scale.size(), 0), scale_dims);
    auto pit = producer.find(t);
    std::vector<NodeProto>& slot = after[pit == producer.end() ? 0 : static_cast<std::size_t>(pit->second) + 1];
    std::string dq_input;
    if (q.weight && options.weights == qdq_weight_storage::int8) {
      dq_input = names.make(t + "_quantized");
      std::vector<std::int64_t> dims(g.initializer(initializer.at(t)).dims().begin(),
                                     g.initializer(initializer.at(t)).dims().end());
      add_int8_initializer(&g, dq_input, wdata[r].q8, dims);
    } else {
      dq_input = names.make(t + "_QuantizeLinear_Output");
      slot.push_back(make_node("QuantizeLinear", names.make(t + "_QuantizeLinear"), {t, scale_name, zp_name},
                               dq_input, axis));
    }
    const std::string dq_output = names.make(t + "_DequantizeLinear_Output");
    slot.push_back(make_node("DequantizeLinear", names.make(t + "_DequantizeLinear"), {dq_input, scale_name, zp_name},
                             dq_output, axis));
    for (const auto& u : q.uses) rewires.push_back({u, dq_output});
  }
  for (const auto& rw : rewires) g.mutable_node(rw.first.first)->set_input(rw.first.second, rw.second);

  // int8 storage: drop float weights that nothing reads any more.
  if (options.weights == qdq_weight_storage::int8) {
    std::unordered_set<std::string> read;
    for (const auto& n : g.node())
      for (const auto& i : n.input()) read.insert(i);
    for (const auto& b : after)
      for (const auto& n : b)
        for (const auto& i : n.input()) read.insert(i);
    for (const auto& o : g.output()) read.insert(o.name());
    std::unordered_set<std::string> graph_inputs;
    for (const auto& i : g.input()) graph_inputs.insert(i.name());
    auto* inits = g.mutable_initializer();
    for (int i = inits->size() - 1; i >= 0; --i) {
      const std::string& name = inits->Get(i).name();
      if (!read.count(name) && !graph_inputs.count(name) && std::find(report.weights.begin(), report.weights.end(), name) != report.weights.end())
        inits->DeleteSubrange(i, 1);
    }
  }

  google::protobuf::RepeatedPtrField<NodeProto> nodes;
  for (auto& n : after[0]) *nodes.Add() = std::move(n);
  for (int k = 0; k < g.node_size(); ++k) {
    *nodes.Add() = std::move(*g.mutable_node(k));
    for (auto& n : after[static_cast<std::size_t>(k) + 1]) *nodes.Add() = std::move(n);
  }
  g.mutable_node()->Swap(&nodes);

  if (opset) {
    if (opset->version() < 13) opset->set_version(13);
  } else {
    auto* o = model.add_opset_import();
    o->set_domain("");
    o->set_version(13);
  }
  if (model.ir_version() < 7) model.set_ir_version(7);
  return report;
}

/// Reads a binary .onnx file; io_error / parse_error name the file.
inline ::onnx::ModelProto read_onnx_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) detail::fail(errc::io_error, "cannot open ONNX model '" + path + "'");
  ::onnx::ModelProto m;
  if (!m.ParseFromIstream(&in)) detail::fail(errc::parse_error, "'" + path + "' is not a valid ONNX model");
  return m;
}

/// Writes a model as a binary .onnx file.
inline void write_onnx_file(const std::string& path, const ::onnx::ModelProto& model) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) detail::fail(errc::io_error, "cannot create '" + path + "'");
  if (!model.SerializeToOstream(&out)) detail::fail(errc::io_error, "cannot write the ONNX model to '" + path + "'");
  out.close();
  if (!out) detail::fail(errc::io_error, "cannot write the ONNX model to '" + path + "'");
}

QLIB_NAMESPACE_END
