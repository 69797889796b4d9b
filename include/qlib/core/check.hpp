// Validation of data before it reaches an observer's state: empty, NaN/Inf (naming the
// first bad index), and the one-pass min/max that the check yields for free.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "../config.hpp"
#include "tensor_view.hpp"

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#endif

QLIB_NAMESPACE_BEGIN

/// The minimum and maximum of a batch.
template <class T>
struct minmax_t {
  T min;
  T max;
};

namespace detail {
template <class T>
std::string value_str(T v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return std::to_string(v);
}
}  // namespace detail

/// Finds the first NaN or Inf in x; ok when there is none. `who` names the caller
/// (e.g. "minmax observer 'conv1'") and is put first in the message.
template <class T>
status check_finite(tensor_view<const T> x, const std::string& who) {
  const T* p = x.data();
  const std::size_t n = x.size();
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(p[i]))
      return {errc::non_finite, who + ": " + x.label() + " of shape " + x.shape().str() + " holds " +
                                    detail::value_str(p[i]) + " at flat index " + std::to_string(i)};
  }
  return {};
}

namespace detail {

// Eight lanes of running min, max and a finiteness sum: lane k takes the elements
// i = k (mod 8) of the first 8 * floor(n / 8). Returns how many elements it consumed.
// The portable version is plain C++; gcc vectorizes it at -O2 only partly and clang not at
// all (a min of floats with `<` is not an associative reduction to it), so x86-64 builds
// use SSE2 (part of the x86-64 baseline) with the same lanes, hence the same bits: minps
// and maxps select exactly as `v < lo ? v : lo` and `v > hi ? v : hi` do.
template <class T>
std::size_t minmax_lanes(const T* p, std::size_t n, T* lo, T* hi, T* acc) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (std::size_t k = 0; k < 8; ++k) {
      const T v = p[i + k];
      lo[k] = v < lo[k] ? v : lo[k];
      hi[k] = v > hi[k] ? v : hi[k];
      acc[k] += v * T(0);  // NaN or Inf makes this NaN; finite values add 0
    }
  }
  return i;
}

#if defined(__SSE2__) || defined(_M_X64)
// Element i + k goes to lane k % 8 as in the portable loop, and among equal values the
// earliest is kept (_mm_min_ps(a, b) returns b on a tie), so the result is bit-identical to
// it, signed zeros included. Two blocks are combined before they meet the accumulator
// (earlier block second), which keeps the dependency chain one min/max long per step.
// NaN is tracked apart: cmpunord(a, b) is all ones where a or b is NaN; OR-ing it into acc
// at the end makes those lanes NaN, the portable loop's signal. Inf shows in min / max.
inline std::size_t minmax_lanes(const float* p, std::size_t n, float* lo, float* hi, float* acc) {
  __m128 l0 = _mm_loadu_ps(lo), l1 = _mm_loadu_ps(lo + 4), h0 = _mm_loadu_ps(hi), h1 = _mm_loadu_ps(hi + 4);
  __m128 u0 = _mm_setzero_ps(), u1 = _mm_setzero_ps();
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128 v0 = _mm_loadu_ps(p + i), v1 = _mm_loadu_ps(p + i + 4);
    const __m128 w0 = _mm_loadu_ps(p + i + 8), w1 = _mm_loadu_ps(p + i + 12);
    l0 = _mm_min_ps(_mm_min_ps(w0, v0), l0);
    l1 = _mm_min_ps(_mm_min_ps(w1, v1), l1);
    h0 = _mm_max_ps(_mm_max_ps(w0, v0), h0);
    h1 = _mm_max_ps(_mm_max_ps(w1, v1), h1);
    u0 = _mm_or_ps(u0, _mm_cmpunord_ps(v0, w0));
    u1 = _mm_or_ps(u1, _mm_cmpunord_ps(v1, w1));
  }
  for (; i + 8 <= n; i += 8) {
    const __m128 v0 = _mm_loadu_ps(p + i), v1 = _mm_loadu_ps(p + i + 4);
    l0 = _mm_min_ps(v0, l0);  // v < lo ? v : lo
    l1 = _mm_min_ps(v1, l1);
    h0 = _mm_max_ps(v0, h0);  // v > hi ? v : hi
    h1 = _mm_max_ps(v1, h1);
    u0 = _mm_or_ps(u0, _mm_cmpunord_ps(v0, v0));
    u1 = _mm_or_ps(u1, _mm_cmpunord_ps(v1, v1));
  }
  _mm_storeu_ps(lo, l0);
  _mm_storeu_ps(lo + 4, l1);
  _mm_storeu_ps(hi, h0);
  _mm_storeu_ps(hi + 4, h1);
  _mm_storeu_ps(acc, _mm_or_ps(_mm_loadu_ps(acc), u0));
  _mm_storeu_ps(acc + 4, _mm_or_ps(_mm_loadu_ps(acc + 4), u1));
  return i;
}

inline std::size_t minmax_lanes(const double* p, std::size_t n, double* lo, double* hi, double* acc) {
  __m128d l0 = _mm_loadu_pd(lo), l1 = _mm_loadu_pd(lo + 2), l2 = _mm_loadu_pd(lo + 4), l3 = _mm_loadu_pd(lo + 6);
  __m128d h0 = _mm_loadu_pd(hi), h1 = _mm_loadu_pd(hi + 2), h2 = _mm_loadu_pd(hi + 4), h3 = _mm_loadu_pd(hi + 6);
  __m128d a0 = _mm_loadu_pd(acc), a1 = _mm_loadu_pd(acc + 2), a2 = _mm_loadu_pd(acc + 4), a3 = _mm_loadu_pd(acc + 6);
  const __m128d zero = _mm_setzero_pd();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128d v0 = _mm_loadu_pd(p + i), v1 = _mm_loadu_pd(p + i + 2);
    const __m128d v2 = _mm_loadu_pd(p + i + 4), v3 = _mm_loadu_pd(p + i + 6);
    l0 = _mm_min_pd(v0, l0);
    l1 = _mm_min_pd(v1, l1);
    l2 = _mm_min_pd(v2, l2);
    l3 = _mm_min_pd(v3, l3);
    h0 = _mm_max_pd(v0, h0);
    h1 = _mm_max_pd(v1, h1);
    h2 = _mm_max_pd(v2, h2);
    h3 = _mm_max_pd(v3, h3);
    a0 = _mm_add_pd(a0, _mm_mul_pd(v0, zero));
    a1 = _mm_add_pd(a1, _mm_mul_pd(v1, zero));
    a2 = _mm_add_pd(a2, _mm_mul_pd(v2, zero));
    a3 = _mm_add_pd(a3, _mm_mul_pd(v3, zero));
  }
  _mm_storeu_pd(lo, l0);
  _mm_storeu_pd(lo + 2, l1);
  _mm_storeu_pd(lo + 4, l2);
  _mm_storeu_pd(lo + 6, l3);
  _mm_storeu_pd(hi, h0);
  _mm_storeu_pd(hi + 2, h1);
  _mm_storeu_pd(hi + 4, h2);
  _mm_storeu_pd(hi + 6, h3);
  _mm_storeu_pd(acc, a0);
  _mm_storeu_pd(acc + 2, a1);
  _mm_storeu_pd(acc + 4, a2);
  _mm_storeu_pd(acc + 6, a3);
  return i;
}
#endif

}  // namespace detail

/// Checks that x is not empty and finite, and returns its min/max through `out` in the same
/// pass. The fast path is a branch-free min/max over eight lanes (vectorized); only when its
/// result is not finite does a second pass look for the first bad index, so valid data is
/// read once.
template <class T>
status check_and_minmax(tensor_view<const T> x, const std::string& who, minmax_t<T>* out) {
  const std::size_t n = x.size();
  if (n == 0) return {errc::empty_input, who + ": " + x.label() + " of shape " + x.shape().str() + " is empty"};
  const T* p = x.data();
  // Several independent accumulators so the compiler can keep vector lanes busy; NaN
  // poisons the sum, which is the finiteness test (Inf shows in min/max too).
  constexpr std::size_t lanes = 8;
  T lo[lanes], hi[lanes], acc[lanes];
  for (std::size_t k = 0; k < lanes; ++k) {
    lo[k] = p[0];
    hi[k] = p[0];
    acc[k] = T(0);
  }
  std::size_t i = detail::minmax_lanes(p, n, lo, hi, acc);
  for (; i < n; ++i) {
    const T v = p[i];
    lo[0] = v < lo[0] ? v : lo[0];
    hi[0] = v > hi[0] ? v : hi[0];
    acc[0] += v * T(0);
  }
  T l = lo[0], h = hi[0], a = acc[0];
  for (std::size_t k = 1; k < lanes; ++k) {
    l = lo[k] < l ? lo[k] : l;
    h = hi[k] > h ? hi[k] : h;
    a += acc[k];
  }
  if (!(a == T(0)) || !std::isfinite(l) || !std::isfinite(h)) {
    status s = check_finite(x, who);
    if (!s.ok()) return s;
    return {errc::internal, who + ": finiteness check disagrees with itself"};
  }
  if (out) *out = {l, h};
  return {};
}

/// Per-channel minimum and maximum of x (finite, non-empty) along the channels of `layout`
/// (outer, channels, inner; core/tensor_view.hpp): lo / hi get one entry per channel. The
/// earliest of equal values is kept, as check_and_minmax does.
template <class T>
void channel_minmax(const T* x, const channel_layout& layout, std::vector<T>& lo, std::vector<T>& hi) {
  lo.assign(layout.channels, T(0));
  hi.assign(layout.channels, T(0));
  for (std::size_t c = 0; c < layout.channels; ++c) lo[c] = hi[c] = x[c * layout.inner];
  for (std::size_t o = 0; o < layout.outer; ++o)
    for (std::size_t c = 0; c < layout.channels; ++c) {
      const T* row = x + (o * layout.channels + c) * layout.inner;
      T a = lo[c], b = hi[c];
      for (std::size_t i = 0; i < layout.inner; ++i) {
        a = row[i] < a ? row[i] : a;
        b = row[i] > b ? row[i] : b;
      }
      lo[c] = a;
      hi[c] = b;
    }
}

QLIB_NAMESPACE_END
