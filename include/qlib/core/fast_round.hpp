// Rounding to an integer that compilers vectorize, bit-identical to the reference
// rounding of core/qparams.hpp (round_half_even: floor/fmod) and to std::round.
//
// The trick: adding 2^p (p = mantissa bits: 23 for float, 52 for double) to a value
// 0 <= a < 2^p puts it where the spacing of representable numbers is exactly 1, so the
// hardware's round-to-nearest-even rounds it to an integer; subtracting 2^p again is exact.
// Values with |v| >= 2^p are integers already and pass through, as do NaN and Inf. The
// selections are written as bit masks, not as branches on floating-point compares: under
// the default -ftrapping-math, g++ does not if-convert such branches and the loop would not
// vectorize.
//
// Preconditions, checked by fast_rounding_available() where they can be:
// - the floating-point environment rounds to nearest (the default; fesetround changes it);
// - arithmetic is done in the type's own precision (FLT_EVAL_METHOD == 0: every x86-64,
//   AArch64 and POWER compiler; not the x87 FPU of 32-bit x86 with -mfpmath=387);
// - no value-changing optimization: qlib must NOT be built with -ffast-math (or
//   -fassociative-math, which folds (a + 2^p) - 2^p into a). Under -ffast-math this header
//   refuses to compile unless QLIB_ALLOW_FAST_MATH is defined, which switches the fast-quant
//   kernels to the slow reference rounding (still not guaranteed: fast-math also breaks NaN
//   handling).
#pragma once

#include <cfenv>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../config.hpp"

#if defined(__FAST_MATH__) && !defined(QLIB_ALLOW_FAST_MATH)
#error \
    "qlib must not be compiled with -ffast-math: its rounding relies on IEEE arithmetic \
(define QLIB_ALLOW_FAST_MATH to use the slow reference rounding instead, at your own risk)"
#endif

QLIB_NAMESPACE_BEGIN

namespace detail {

/// Bit layout facts of the supported floating-point types.
template <class T>
struct float_traits;
template <>
struct float_traits<float> {
  using bits = std::uint32_t;
  static constexpr float two_pow_mantissa = 8388608.0f;  ///< 2^23
  static constexpr float round_magic = 12582912.0f;      ///< 1.5 * 2^23
};
template <>
struct float_traits<double> {
  using bits = std::uint64_t;
  static constexpr double two_pow_mantissa = 4503599627370496.0;  ///< 2^52
  static constexpr double round_magic = 6755399441055744.0;       ///< 1.5 * 2^52
};

template <class T>
inline typename float_traits<T>::bits to_bits(T v) noexcept {
  typename float_traits<T>::bits u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}
template <class T>
inline T from_bits(typename float_traits<T>::bits u) noexcept {
  T v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}
/// All ones when c, else zero: a lane mask for branch-free selection.
template <class T>
inline typename float_traits<T>::bits lane_mask(bool c) noexcept {
  using U = typename float_traits<T>::bits;
  return U(0) - static_cast<U>(c);
}
/// v where mask is all ones, +0 where it is zero.
template <class T>
inline T keep_if(T v, typename float_traits<T>::bits mask) noexcept {
  return from_bits<T>(to_bits(v) & mask);
}

/// Round half to even for |v| <= 2^(p-1) only (callers clamp first), with every zero
/// returned as +0. One add and one subtract: 1.5 * 2^p + v stays in [2^p, 2^(p+1)] where
/// the spacing is 1. The kernels of fakequant/ use it on values pre-clamped to the grid.
template <class T>
inline T round_half_even_small(T v) noexcept {
  return (v + float_traits<T>::round_magic) - float_traits<T>::round_magic;
}

/// Round half away from zero for |v| <= 2^(p-1) only, with every zero returned as +0.
template <class T>
inline T round_half_away_small(T v) noexcept {
  const T r = round_half_even_small(v);
  // d = v - r is exact (|d| <= 1/2, r the integer nearest v). A tie that went to the even
  // neighbour towards zero (d = +1/2 for v > 0, -1/2 for v < 0) moves one step further.
  const T d = v - r;
  return r + keep_if(d + d, lane_mask<T>(d == std::copysign(T(0.5), v)));
}

}  // namespace detail

/// True when round_half_even_fast / round_half_away_fast are exact here: the rounding mode
/// is round-to-nearest and arithmetic happens in the type's precision. One call to
/// std::fegetround(); the fake-quant kernels check it once per call and fall back to the
/// reference rounding otherwise.
inline bool fast_rounding_available() noexcept {
#if defined(__FAST_MATH__)
  return false;
#elif !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0 || !defined(FE_TONEAREST)
  return false;
#else
  return std::fegetround() == FE_TONEAREST;
#endif
}

/// Round half to even, bit-identical to round_half_even (core/qparams.hpp) for every input,
/// signed zeros, subnormals, NaN and Inf included: -0 stays -0, and values in [-1/2, 0)
/// give +0 as floor(v) + 1 does. Vectorizes (no branches). Requires round-to-nearest (see
/// fast_rounding_available()).
template <class T>
inline T round_half_even_fast(T v) noexcept {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "round_half_even_fast supports float and double");
  using U = typename detail::float_traits<T>::bits;
  const T big = detail::float_traits<T>::two_pow_mantissa;
  const T a = std::fabs(v);
  const T t = (a + big) - big;             // round(|v|), exact for |v| < 2^p
  const T r = std::copysign(t, v) + T(0);  // the sign back; -0 becomes +0
  // Keep r for 0 < |v| < 2^p (unsigned compare of the bits of |v|: 0 wraps around, NaN
  // and Inf compare above); otherwise v itself (zeros, integers, NaN, Inf).
  const U use_r = detail::lane_mask<T>(detail::to_bits(a) - U(1) < detail::to_bits(big) - U(1));
  return detail::from_bits<T>((detail::to_bits(r) & use_r) | (detail::to_bits(v) & ~use_r));
}

/// Round half away from zero, bit-identical to std::round for every input (the result has
/// the sign of v, -0 included). Vectorizes. Requires round-to-nearest.
template <class T>
inline T round_half_away_fast(T v) noexcept {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "round_half_away_fast supports float and double");
  using U = typename detail::float_traits<T>::bits;
  const T big = detail::float_traits<T>::two_pow_mantissa;
  const T a = std::fabs(v);
  T t = (a + big) - big;
  t += detail::keep_if(T(1), detail::lane_mask<T>(a - t == T(0.5)));  // ties away from zero
  const T r = std::copysign(t, v);
  const U use_r = detail::lane_mask<T>(detail::to_bits(a) < detail::to_bits(big));
  return detail::from_bits<T>((detail::to_bits(r) & use_r) | (detail::to_bits(v) & ~use_r));
}

QLIB_NAMESPACE_END
