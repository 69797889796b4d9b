// Slow, exact references for the fixed-point arithmetic (core/fixed_point.hpp), written from
// the rounding definitions with 128-bit integers rather than from gemmlowp's bit tricks:
// used by tests/core/fixed_point_test.cpp and the fuse tests.
#pragma once

#include <cmath>
#include <cstdint>

namespace qlib_test {

__extension__ typedef __int128 i128;

constexpr i128 pow2(int e) { return static_cast<i128>(1) << e; }

/// floor(a / b) for b > 0.
inline i128 floor_div(i128 a, i128 b) {
  i128 q = a / b;
  if (a % b != 0 && a < 0) --q;
  return q;
}

inline std::int32_t clamp32(i128 v) {
  return static_cast<std::int32_t>(v < INT32_MIN   ? static_cast<i128>(INT32_MIN)
                                   : v > INT32_MAX ? static_cast<i128>(INT32_MAX)
                                                   : v);
}

/// round(a * b / 2^31) with ties towards +infinity; INT32_MIN^2 saturates.
inline std::int32_t ref_srdhm(std::int32_t a, std::int32_t b) {
  if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
  return static_cast<std::int32_t>(floor_div(static_cast<i128>(a) * b + pow2(30), pow2(31)));
}

/// x / 2^e rounded to nearest, ties away from zero.
inline std::int32_t ref_rdbpot(std::int32_t x, int e) {
  if (e <= 0) return x;
  const i128 ax = x < 0 ? -static_cast<i128>(x) : static_cast<i128>(x);
  const i128 r = (ax + pow2(e - 1)) / pow2(e);
  return static_cast<std::int32_t>(x < 0 ? -r : r);
}

/// TFLite's MultiplyByQuantizedMultiplier with the left shift saturated.
inline std::int32_t ref_mbqm(std::int32_t acc, std::int32_t m0, int shift) {
  const int left = shift > 0 ? shift : 0, right = shift < 0 ? -shift : 0;
  return ref_rdbpot(ref_srdhm(clamp32(static_cast<i128>(acc) * pow2(left)), m0), right);
}

inline std::int32_t ref_requantize(std::int32_t acc, std::int32_t m0, int shift, std::int32_t z, std::int32_t qmin,
                                   std::int32_t qmax) {
  const i128 v = static_cast<i128>(ref_mbqm(acc, m0, shift)) + z;
  return static_cast<std::int32_t>(v < qmin ? qmin : v > qmax ? qmax : v);
}

/// TFLite's single-rounding MultiplyByQuantizedMultiplier, from its definition:
/// floor(acc * m0 / 2^(31 - shift) + 1/2) (nearest, ties towards +infinity), saturated.
/// shift in [-31, 30].
inline std::int32_t ref_mbqm_single(std::int32_t acc, std::int32_t m0, int shift) {
  const i128 d = pow2(31 - shift);
  return clamp32(floor_div(2 * static_cast<i128>(acc) * m0 + d, 2 * d));
}

inline std::int32_t ref_requantize_single(std::int32_t acc, std::int32_t m0, int shift, std::int32_t z,
                                          std::int32_t qmin, std::int32_t qmax) {
  const i128 v = static_cast<i128>(ref_mbqm_single(acc, m0, shift)) + z;
  return static_cast<std::int32_t>(v < qmin ? qmin : v > qmax ? qmax : v);
}

/// floor(c * s_in / s_out + 1/2) computed exactly: both scales are doubles, i.e. exact
/// rationals A 2^ea and B 2^eb with 53-bit integers A and B. Needs |c| < 2^20 and
/// 2^-60 < s_in / s_out < 2^40.
inline i128 exact_scaled_half_up(std::int64_t c, double s_in, double s_out) {
  int ea = 0, eb = 0;
  const double fa = std::frexp(s_in, &ea), fb = std::frexp(s_out, &eb);
  const i128 a = static_cast<i128>(std::ldexp(fa, 53)), b = static_cast<i128>(std::ldexp(fb, 53));
  const int d = ea - eb;
  i128 num = static_cast<i128>(c) * a, den = b;
  if (d >= 0)
    num *= pow2(d);
  else
    den *= pow2(-d);
  return floor_div(2 * num + den, 2 * den);
}

}  // namespace qlib_test
