// Validation of data before it reaches an observer's state: empty, NaN/Inf (naming the
// first bad index), and the one-pass min/max that the check yields for free.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>

#include "../config.hpp"
#include "tensor_view.hpp"

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

/// Checks that x is not empty and finite, and returns its min/max through `out` in the same
/// pass. The fast path is a branch-free min/max (vectorizes); only when its result is not
/// finite does a second pass look for the first bad index, so valid data is read once.
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
  std::size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    for (std::size_t k = 0; k < lanes; ++k) {
      const T v = p[i + k];
      lo[k] = v < lo[k] ? v : lo[k];
      hi[k] = v > hi[k] ? v : hi[k];
      acc[k] += v * T(0);  // NaN or Inf makes this NaN; finite values add 0
    }
  }
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

QLIB_NAMESPACE_END
