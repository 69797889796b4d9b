// Quantization rules of fused and multi-input operators: the output range of Conv/Linear +
// ReLU, quantized cat (one output grid, inputs requantized to it) and quantized add
// (TFLite's integer form). Scalar pieces here; the tensor kernels are in int_kernels.hpp.
//
// Sources: shared/specs/algorithms.md 5c; PyTorch FloatFunctional.cat / add
// (torch/ao/nn/quantized/modules/functional_modules.py) for the observed output range;
// TensorRT (equal input scales for concat); TFLite kernels/add.cc
// (PrepareGeneralSubtractOrAdd) and kernels/internal/reference/integer_ops/add.h for the
// integer add; TFLite kernels/internal/common.h (MultiplyByQuantizedMultiplier).
//
// Integers: activations are stored as int8 / uint8 (any integer type whose range holds the
// grid); zero points are integers on the grid; requantization uses core/fixed_point.hpp.
#pragma once

#include "../detail/algorithm.hpp"
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../core/check.hpp"
#include "../core/fixed_point.hpp"
#include "../core/qparams.hpp"
#include "../core/tensor_view.hpp"

QLIB_NAMESPACE_BEGIN

/// The integer interval an output is clamped to: the grid, narrowed by a fused activation.
struct clamp_range {
  std::int32_t min = -128;
  std::int32_t max = 127;
};

/// The whole grid of a spec as a clamp range.
inline clamp_range grid_range(const qspec& spec) {
  detail::throw_if(spec.validate());
  return {spec.qmin(), spec.qmax()};
}

/// A fused ReLU folded into the output clamp: real 0 sits at the zero point, so
/// clamping below at max(qmin, zero_point) is ReLU on the integer grid (TFLite's
/// CalculateActivationRangeQuantized).
inline clamp_range fused_relu(clamp_range grid, std::int32_t zero_point) {
  if (zero_point < grid.min || zero_point > grid.max)
    detail::fail(errc::invalid_argument, "fused_relu: zero point " + std::to_string(zero_point) +
                                             " is outside the grid [" + std::to_string(grid.min) + ", " +
                                             std::to_string(grid.max) + "]");
  return {std::max(grid.min, zero_point), grid.max};
}

// ---- Conv + ReLU, Linear + ReLU --------------------------------------------------------

/// The range of a fused Conv/Linear + ReLU output from the range observed before the ReLU
/// (or after: the same answer): [max(lo, 0), max(hi, 0)]. One fake-quant sits after the
/// ReLU, on this range.
template <class T>
minmax_t<T> relu_output_range(T lo, T hi) {
  detail::throw_if(check_range(lo, hi));
  return {lo > T(0) ? lo : T(0), hi > T(0) ? hi : T(0)};
}

/// Output parameters of a fused ReLU output. The range is non-negative, so an unsigned grid
/// (qspec::torch_quint8()) or an affine signed one (zero point at qmin) spends every level
/// on [0, hi]; a signed symmetric grid (TensorRT's) is accepted but leaves its negative
/// half unused (one bit lost).
template <class T>
qparams<T> relu_output_qparams(T lo, T hi, const qspec& spec) {
  const minmax_t<T> r = relu_output_range(lo, hi);
  return qparams_from_range(r.min, r.max, spec);
}

// ---- Requantization between two grids (cat) ---------------------------------------------

/// Requantization of integers from (s_in, z_in) to (s_out, z_out):
/// q_out = clamp(z_out + (q_in - z_in) * M, range) with M = s_in / s_out in fixed point,
/// rounded once (see requantize_value).
struct requant_params {
  quantized_multiplier multiplier;  ///< s_in / s_out
  std::int32_t input_zero_point = 0;
  std::int32_t output_zero_point = 0;
  clamp_range range;
};

namespace detail {
/// An optional vector (a bias) is absent when it has no data or no values (a
/// default-constructed tensor_view is empty: rank 1, size 0, data nullptr).
template <class T>
bool absent_view(tensor_view<const T> v) noexcept {
  return v.data() == nullptr || v.empty();
}

template <class T>
void check_scale(T scale, const std::string& who, const char* role) {
  if (!std::isfinite(scale) || !(scale > T(0)))
    fail(errc::invalid_argument, who + ": " + role + " scale = " + exact_double_str(static_cast<double>(scale)) +
                                     " must be finite and positive");
}
inline void check_zero_point(std::int32_t z, clamp_range r, const std::string& who, const char* role) {
  if (z < r.min || z > r.max)
    fail(errc::invalid_argument, who + ": " + role + " zero point " + std::to_string(z) + " is outside [" +
                                     std::to_string(r.min) + ", " + std::to_string(r.max) + "]");
}
inline void check_clamp(clamp_range r, const std::string& who) {
  if (r.min > r.max)
    fail(errc::invalid_argument,
         who + ": output clamp [" + std::to_string(r.min) + ", " + std::to_string(r.max) + "] is empty");
}
}  // namespace detail

/// Parameters to requantize from `in` to `out`, clamped to `range` (default: int8).
/// Equal parameters give the identity (M = 1 is exact: m0 = 2^30, shift = 1).
template <class T>
requant_params make_requant_params(const qparams<T>& in, const qparams<T>& out, clamp_range range = {}) {
  const std::string who = "make_requant_params";
  detail::check_scale(in.scale, who, "input");
  detail::check_scale(out.scale, who, "output");
  detail::check_clamp(range, who);
  detail::check_zero_point(out.zero_point, range, who, "output");
  requant_params p;
  p.multiplier = quantize_multiplier(static_cast<double>(in.scale) / static_cast<double>(out.scale),
                                     who + ": multiplier s_in / s_out");
  p.input_zero_point = in.zero_point;
  p.output_zero_point = out.zero_point;
  p.range = range;
  return p;
}

/// One requantized value, rounded once:
///   q_out = clamp(z_out + floor(c * m0 / 2^(31 - shift) + 1/2), range),  c = q - z_in,
/// i.e. the nearest integer to c * M_q (M_q = m0 * 2^(shift - 31), the multiplier as
/// stored, |M_q - M| <= 2^(shift - 32)), ties towards +infinity: TFLite's single-rounding
/// MultiplyByQuantizedMultiplier (core/fixed_point.hpp). c is saturated to int32.
///
/// Why not the double-rounding form that conv and linear use: there the accumulator is
/// large and SRDHM's rounding falls far below one output step; here c has at most 9 bits,
/// so SRDHM(c, m0) already rounds to a whole number and the right shift for M < 1/2 rounds a
/// second time: in the QAT demo's int8 model that put 31,761 of its 552,960 cat outputs
/// one step off the correctly rounded value (checked with exact rational arithmetic); with
/// one rounding none are. TFLite's add
/// pre-shifts by 20 bits for the same reason (add_value), and TFLite's concatenation
/// rescales in float (reference_ops::ConcatenationWithScaling). One rounding of the exact
/// 64-bit product c * m0 needs no headroom and is exact to the last bit of M_q.
QLIB_HOST_DEVICE constexpr std::int32_t requantize_value(std::int32_t q, const requant_params& p) noexcept {
  const std::int32_t centred =
      detail::saturate_to_int32(static_cast<std::int64_t>(q) - static_cast<std::int64_t>(p.input_zero_point));
  return requantize(centred, p.multiplier, p.output_zero_point, p.range.min, p.range.max,
                    requantize_rounding::single_rounding);
}

/// The output parameters of a quantized cat: one grid over the union of the inputs'
/// observed ranges [min lo_i, max hi_i] (PyTorch observes the concatenation itself, which
/// has exactly that range). lo and hi: one value per input.
template <class T>
qparams<T> cat_output_qparams(const std::vector<T>& lo, const std::vector<T>& hi, const qspec& spec) {
  if (lo.size() != hi.size())
    detail::fail(errc::invalid_argument, "cat_output_qparams: " + std::to_string(lo.size()) + " minima but " +
                                             std::to_string(hi.size()) + " maxima");
  if (lo.empty()) detail::fail(errc::empty_input, "cat_output_qparams: no input ranges");
  T l = lo[0], h = hi[0];
  for (std::size_t i = 0; i < lo.size(); ++i) {
    const status s = check_range(lo[i], hi[i]);
    if (!s.ok()) detail::fail(s.code(), "cat_output_qparams: input " + std::to_string(i) + ": " + s.message());
    l = std::min(l, lo[i]);
    h = std::max(h, hi[i]);
  }
  return qparams_from_range(l, h, spec);
}

// ---- Quantized add (TFLite) -------------------------------------------------------------

/// TFLite's integer add: with S = 2 max(s_a, s_b),
///   a' = MBQM((q_a - z_a) * 2^left_shift, s_a / S), b' likewise,
///   q  = clamp(MBQM(a' + b', S / (2^left_shift s_out)) + z_out, range).
/// left_shift = 20 for 8-bit inputs: (2^8 - 1) * 2^20 * 2 stays below 2^31, and the inputs'
/// multipliers (<= 1/2) lose nothing that matters at 8 bits. MBQM is
/// multiply_by_quantized_multiplier with `rounding` (double_rounding: classic TFLite,
/// bit-exact; single_rounding: TFLite built with TFLITE_SINGLE_ROUNDING).
struct add_params {
  std::int32_t a_zero_point = 0;
  std::int32_t b_zero_point = 0;
  std::int32_t output_zero_point = 0;
  int left_shift = 20;
  quantized_multiplier a_multiplier;       ///< s_a / S
  quantized_multiplier b_multiplier;       ///< s_b / S
  quantized_multiplier output_multiplier;  ///< S / (2^left_shift s_out)
  clamp_range range;
  requantize_rounding rounding = requantize_rounding::double_rounding;
};

/// Parameters of out = a + b on the given grids; `range` is the output clamp (the grid, or
/// fused_relu(grid, out.zero_point) for Add + ReLU). Multipliers are computed in double
/// from the scales as given, as TFLite does.
template <class T>
add_params make_add_params(const qparams<T>& a, const qparams<T>& b, const qparams<T>& out, clamp_range range = {},
                           requantize_rounding rounding = requantize_rounding::double_rounding) {
  const std::string who = "make_add_params";
  detail::check_scale(a.scale, who, "input a");
  detail::check_scale(b.scale, who, "input b");
  detail::check_scale(out.scale, who, "output");
  detail::check_clamp(range, who);
  detail::check_zero_point(out.zero_point, range, who, "output");
  // 8-bit inputs (int8 or uint8 grids): the 20-bit shift leaves room for |q - z| <= 255.
  const clamp_range eight_bit{-128, 255};
  detail::check_zero_point(a.zero_point, eight_bit, who, "input a");
  detail::check_zero_point(b.zero_point, eight_bit, who, "input b");
  add_params p;
  p.a_zero_point = a.zero_point;
  p.b_zero_point = b.zero_point;
  p.output_zero_point = out.zero_point;
  p.range = range;
  p.rounding = rounding;
  const double sa = static_cast<double>(a.scale), sb = static_cast<double>(b.scale);
  const double twice_max = 2.0 * std::max(sa, sb);
  p.a_multiplier = quantize_multiplier(sa / twice_max, who + ": multiplier s_a / (2 max(s_a, s_b))");
  p.b_multiplier = quantize_multiplier(sb / twice_max, who + ": multiplier s_b / (2 max(s_a, s_b))");
  p.output_multiplier =
      quantize_multiplier(twice_max / (std::ldexp(1.0, p.left_shift) * static_cast<double>(out.scale)),
                          who + ": multiplier 2 max(s_a, s_b) / (2^20 s_out)");
  return p;
}

/// One output of the integer add. Inputs are grid values of up to 8 bits; wider values are
/// defined (intermediates saturate to int32) but lose the headroom the shift assumes.
QLIB_HOST_DEVICE constexpr std::int32_t add_value(std::int32_t qa, std::int32_t qb, const add_params& p) noexcept {
  const std::int64_t scale = std::int64_t{1} << (p.left_shift < 0 ? 0 : p.left_shift > 30 ? 30 : p.left_shift);
  const std::int32_t a = detail::saturate_to_int32((static_cast<std::int64_t>(qa) - p.a_zero_point) * scale);
  const std::int32_t b = detail::saturate_to_int32((static_cast<std::int64_t>(qb) - p.b_zero_point) * scale);
  const std::int64_t sum = static_cast<std::int64_t>(multiply_by_quantized_multiplier(a, p.a_multiplier, p.rounding)) +
                           static_cast<std::int64_t>(multiply_by_quantized_multiplier(b, p.b_multiplier, p.rounding));
  return requantize(detail::saturate_to_int32(sum), p.output_multiplier, p.output_zero_point, p.range.min, p.range.max,
                    p.rounding);
}

QLIB_NAMESPACE_END
