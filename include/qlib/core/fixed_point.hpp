// Fixed-point requantization of int32 accumulators: the gemmlowp / TFLite convention.
//
// A real multiplier M >= 0 (e.g. s_in * s_w / s_out) is stored as a Q0.31 integer m0 and
// a power-of-two exponent `shift`:
//
//     M = m0 * 2^(shift - 31),   m0 in [2^30, 2^31) (M0 = m0 / 2^31 in [0.5, 1)), or m0 = 0.
//
// Sources (read for their arithmetic; the code here is written from the definitions):
// gemmlowp fixedpoint/fixedpoint.h (SaturatingRoundingDoublingHighMul, RoundingDivideByPOT),
// TFLite kernels/internal/quantization_util.cc (QuantizeMultiplier) and common.h
// (MultiplyByQuantizedMultiplier, double-rounding form). shared/specs/algorithms.md 5c.
//
// Rounding, stated exactly (every function is bit-exact to these definitions):
// - saturating_rounding_doubling_high_mul(a, b) = floor((a * b + 2^30) / 2^31): the high
//   word of 2ab rounded to nearest with ties towards +infinity (gemmlowp's nudge and
//   truncating division give exactly this; so does ARM's VQRDMULH); the one overflow,
//   a = b = INT32_MIN, saturates to INT32_MAX.
// - rounding_divide_by_pot(x, e) = x / 2^e rounded to nearest, ties away from zero.
// - multiply_by_quantized_multiplier(acc, m0, shift): acc * 2^max(shift, 0) (saturated to
//   int32: TFLite leaves that overflow undefined), then SRDHM by m0, then
//   rounding_divide_by_pot by max(-shift, 0). Two roundings, so the result is within one
//   step of acc * M (not always the nearest integer). This is requantize_rounding::
//   double_rounding, the default: gemmlowp's and classic TFLite's bit-exact form.
// - multiply_by_quantized_multiplier_single_rounding(acc, m0, shift) =
//   floor((acc * m0 + 2^(30 - shift)) / 2^(31 - shift)), saturated to int32: acc * M rounded
//   once, to the nearest integer, ties towards +infinity. This is
//   requantize_rounding::single_rounding: TFLite's MultiplyByQuantizedMultiplier when built
//   with TFLITE_SINGLE_ROUNDING (kernels/internal/common.cc), and what its int8 kernels use
//   on targets that define it.
//
// Range of multipliers: quantize_multiplier accepts finite M in [0, 2^30) (in practice
// M < 2^30 - 2^-3, the largest value whose rounded m0 keeps shift <= 30); shift then lies
// in [-31, 30]. M below 2^-32 is flushed to m0 = 0, shift = 0 (TFLite's rule: every
// product would round to 0 or +-1 anyway). Negative, NaN and infinite M are errors.
//
// No undefined behaviour anywhere: products in 64 bits, no shift of a negative value, no
// signed overflow (left shifts are multiplications by a power of two in int64; the
// division by 2^e uses floor division written with / and %).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

#include "../config.hpp"

QLIB_NAMESPACE_BEGIN

/// A non-negative real multiplier M = m0 * 2^(shift - 31) in TFLite's form.
struct quantized_multiplier {
  std::int32_t m0 = 0;  ///< Q0.31 mantissa in [2^30, 2^31), or 0 for M = 0
  int shift = 0;        ///< exponent in [-31, 30]; > 0 means M >= 1 (a left shift first)

  /// The real value m0 * 2^(shift - 31) (exact in double).
  double value() const noexcept { return std::ldexp(static_cast<double>(m0), shift - 31); }
};

inline bool operator==(const quantized_multiplier& a, const quantized_multiplier& b) noexcept {
  return a.m0 == b.m0 && a.shift == b.shift;
}
inline bool operator!=(const quantized_multiplier& a, const quantized_multiplier& b) noexcept { return !(a == b); }

/// Smallest and largest exponent quantize_multiplier produces for a non-zero m0.
constexpr int min_multiplier_shift = -31;
constexpr int max_multiplier_shift = 30;

namespace detail {
constexpr std::int64_t int32_lowest = -2147483647LL - 1;
constexpr std::int64_t int32_highest = 2147483647LL;

QLIB_HOST_DEVICE constexpr std::int32_t saturate_to_int32(std::int64_t v) noexcept {
  return static_cast<std::int32_t>(v < int32_lowest ? int32_lowest : v > int32_highest ? int32_highest : v);
}

/// "%.17g" of a double: messages must show tiny and huge multipliers faithfully.
inline std::string exact_double_str(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}
}  // namespace detail

/// floor((a * b + 2^30) / 2^31), saturated: gemmlowp's SaturatingRoundingDoublingHighMul.
/// The only product that overflows, INT32_MIN * INT32_MIN (= 2^62, doubled 2^63), gives
/// INT32_MAX.
QLIB_HOST_DEVICE constexpr std::int32_t saturating_rounding_doubling_high_mul(std::int32_t a, std::int32_t b) noexcept {
  if (a == b && a == detail::int32_lowest) return static_cast<std::int32_t>(detail::int32_highest);
  const std::int64_t ab = static_cast<std::int64_t>(a) * static_cast<std::int64_t>(b);
  // gemmlowp adds 2^30 (or 1 - 2^30 for a negative product) and truncates towards zero:
  // for either sign that is floor((ab + 2^30) / 2^31), i.e. ties round towards +infinity.
  const std::int64_t nudge = ab >= 0 ? (std::int64_t{1} << 30) : (1 - (std::int64_t{1} << 30));
  return static_cast<std::int32_t>((ab + nudge) / (std::int64_t{1} << 31));
}

/// x / 2^exponent rounded to nearest, ties away from zero (gemmlowp's RoundingDivideByPOT).
/// exponent is meant to be in [0, 31] (as in gemmlowp); any value is defined: negative
/// counts as 0 and values above 62 as 62 (the result is then 0 for every int32 x).
QLIB_HOST_DEVICE constexpr std::int32_t rounding_divide_by_pot(std::int32_t x, int exponent) noexcept {
  if (exponent <= 0) return x;
  const int e = exponent > 62 ? 62 : exponent;
  const std::int64_t divisor = std::int64_t{1} << e;
  // Floor division with a non-negative remainder, written without shifting a negative value.
  std::int64_t quotient = static_cast<std::int64_t>(x) / divisor;
  std::int64_t remainder = static_cast<std::int64_t>(x) % divisor;
  if (remainder < 0) {
    quotient -= 1;
    remainder += divisor;
  }
  // Round up when the remainder is above half, or exactly half for a non-negative x
  // (gemmlowp: remainder > (mask >> 1) + (x < 0)); this is half away from zero.
  const std::int64_t half = divisor / 2;
  const std::int64_t threshold = x < 0 ? half : half - 1;
  return static_cast<std::int32_t>(quotient + (remainder > threshold ? 1 : 0));
}

/// How an int32 accumulator is multiplied by a quantized multiplier (see the top of this
/// header for the exact definitions). double_rounding is gemmlowp's and classic TFLite's
/// form (SRDHM, then a rounding right shift): bit-exact with those engines, within one step
/// of the real product. single_rounding is TFLite's TFLITE_SINGLE_ROUNDING form: the
/// nearest integer to acc * m0 * 2^(shift - 31), ties towards +infinity.
enum class requantize_rounding {
  double_rounding,  ///< gemmlowp / TFLite classic (the default everywhere in qlib)
  single_rounding   ///< TFLite with TFLITE_SINGLE_ROUNDING
};

/// acc * M in TFLite's double-rounding form: rounding_divide_by_pot(
/// saturating_rounding_doubling_high_mul(acc * 2^max(shift, 0), m0), max(-shift, 0)).
/// acc * 2^shift is saturated to int32 where TFLite would overflow. shift is meant to be in
/// [-31, 30]; others are defined (clamped to [-62, 31]).
QLIB_HOST_DEVICE constexpr std::int32_t multiply_by_quantized_multiplier(std::int32_t acc, std::int32_t m0,
                                                                         int shift) noexcept {
  const int left = shift > 0 ? (shift > 31 ? 31 : shift) : 0;
  const int right = shift < 0 ? -shift : 0;
  const std::int32_t shifted = detail::saturate_to_int32(static_cast<std::int64_t>(acc) * (std::int64_t{1} << left));
  return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, m0), right);
}

/// acc * M rounded once: floor((acc * m0 + 2^(30 - shift)) / 2^(31 - shift)) saturated to
/// int32, i.e. the nearest integer to acc * m0 * 2^(shift - 31) with ties towards +infinity
/// (TFLite's MultiplyByQuantizedMultiplier under TFLITE_SINGLE_ROUNDING, which computes
/// (acc * m0 + round) >> (31 - shift) in 64 bits). |acc * m0| <= 2^62, so the 64-bit sum
/// never overflows. shift is meant to be in [-31, 30]; others are defined (clamped to
/// [-31, 31]; 31 means the product itself, saturated).
QLIB_HOST_DEVICE constexpr std::int32_t multiply_by_quantized_multiplier_single_rounding(std::int32_t acc,
                                                                                         std::int32_t m0,
                                                                                         int shift) noexcept {
  const int total = 31 - (shift < -31 ? -31 : shift > 31 ? 31 : shift);  // in [0, 62]
  const std::int64_t product = static_cast<std::int64_t>(acc) * static_cast<std::int64_t>(m0);
  if (total == 0) return detail::saturate_to_int32(product);
  const std::int64_t divisor = std::int64_t{1} << total;
  // floor((product + divisor / 2) / divisor) with floor division written out (no shift of a
  // negative value): |product| + 2^61 < 2^63.
  const std::int64_t biased = product + divisor / 2;
  std::int64_t quotient = biased / divisor;
  if (biased % divisor < 0) quotient -= 1;
  return detail::saturate_to_int32(quotient);
}

QLIB_HOST_DEVICE constexpr std::int32_t multiply_by_quantized_multiplier(std::int32_t acc,
                                                                         quantized_multiplier m) noexcept {
  return multiply_by_quantized_multiplier(acc, m.m0, m.shift);
}

/// acc * M with the chosen rounding.
QLIB_HOST_DEVICE constexpr std::int32_t multiply_by_quantized_multiplier(std::int32_t acc, quantized_multiplier m,
                                                                         requantize_rounding rounding) noexcept {
  return rounding == requantize_rounding::single_rounding
             ? multiply_by_quantized_multiplier_single_rounding(acc, m.m0, m.shift)
             : multiply_by_quantized_multiplier(acc, m.m0, m.shift);
}

/// The requantized output of an int32 accumulator: clamp(acc * M + zero_point, qmin, qmax)
/// with acc * M as multiply_by_quantized_multiplier (double_rounding, the default) or
/// multiply_by_quantized_multiplier_single_rounding; the zero point is added in 64 bits, so
/// it never overflows.
QLIB_HOST_DEVICE constexpr std::int32_t requantize(
    std::int32_t acc, std::int32_t m0, int shift, std::int32_t zero_point, std::int32_t qmin, std::int32_t qmax,
    requantize_rounding rounding = requantize_rounding::double_rounding) noexcept {
  const std::int32_t scaled = rounding == requantize_rounding::single_rounding
                                  ? multiply_by_quantized_multiplier_single_rounding(acc, m0, shift)
                                  : multiply_by_quantized_multiplier(acc, m0, shift);
  const std::int64_t v = static_cast<std::int64_t>(scaled) + zero_point;
  return static_cast<std::int32_t>(v < qmin ? qmin : v > qmax ? qmax : v);
}

QLIB_HOST_DEVICE constexpr std::int32_t requantize(
    std::int32_t acc, quantized_multiplier m, std::int32_t zero_point, std::int32_t qmin, std::int32_t qmax,
    requantize_rounding rounding = requantize_rounding::double_rounding) noexcept {
  return requantize(acc, m.m0, m.shift, zero_point, qmin, qmax, rounding);
}

/// The option's name, for messages and printed tables.
constexpr const char* to_string(requantize_rounding r) noexcept {
  return r == requantize_rounding::single_rounding ? "single_rounding" : "double_rounding";
}

/// TFLite's QuantizeMultiplier with errors instead of silent saturation: writes m0 and shift
/// such that |m - m0 * 2^(shift - 31)| <= 2^(shift - 32). `what` names the multiplier in
/// messages (e.g. "requantization multiplier of channel 3").
inline status try_quantize_multiplier(double m, quantized_multiplier* out, const std::string& what = "multiplier") {
  if (!std::isfinite(m)) return {errc::non_finite, what + " = " + detail::exact_double_str(m) + " is not finite"};
  if (m < 0.0) return {errc::invalid_argument, what + " = " + detail::exact_double_str(m) + " is negative"};
  quantized_multiplier q;
  if (m > 0.0) {
    int exponent = 0;
    const double mantissa = std::frexp(m, &exponent);  // m = mantissa * 2^exponent, mantissa in [0.5, 1)
    // mantissa * 2^31 is exact (a power-of-two scaling); std::round is TFLite's TfLiteRound.
    std::int64_t fixed = static_cast<std::int64_t>(std::round(std::ldexp(mantissa, 31)));
    if (fixed == (std::int64_t{1} << 31)) {  // rounded up to 1.0: renormalize
      fixed /= 2;
      ++exponent;
    }
    if (exponent > max_multiplier_shift)
      return {errc::invalid_argument, what + " = " + detail::exact_double_str(m) +
                                          " is too large for a Q0.31 multiplier with shift <= 30 (must be below 2^30)"};
    if (exponent >= min_multiplier_shift) {  // smaller ones flush to 0, as in TFLite
      q.m0 = static_cast<std::int32_t>(fixed);
      q.shift = exponent;
    }
  }
  if (out) *out = q;
  return {};
}

/// quantize_multiplier that fails (detail::fail) on a negative, non-finite or too large m.
inline quantized_multiplier quantize_multiplier(double m, const std::string& what = "multiplier") {
  quantized_multiplier q;
  detail::throw_if(try_quantize_multiplier(m, &q, what));
  return q;
}

QLIB_NAMESPACE_END
