// Bin index rules shared by the CPU histograms and the CUDA kernels, so both assign every
// value to the same bin (counts identical bit for bit). Arithmetic in the data's type T.
//
// Absolute-value histogram (TensorRT / modelopt entropy): bin j covers [j*w, (j+1)*w);
//   index = min(floor(|x| * inv_w), n - 1), inv_w = T(1 / w).
// Range histogram (HFMG, percentile, MSE): n equal bins over [lo, hi];
//   index = clamp(floor((x - lo) * inv_w), 0, n - 1), inv_w = T(n / (hi - lo)); x == hi
//   lands in the last bin (AMCT's rule).
// Multiplying by a rounded reciprocal (not dividing by w) is what a GPU does anyway; the
// CPU uses the same rule so both agree.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "../config.hpp"

QLIB_NAMESPACE_BEGIN

template <class T>
QLIB_HOST_DEVICE inline std::uint32_t abs_bin_index(T x, T inv_width, std::uint32_t nbins) noexcept {
  const T a = x < T(0) ? -x : x;
  const T f = a * inv_width;  // >= 0, so truncation is the floor
  const T last = static_cast<T>(nbins - 1);
  return static_cast<std::uint32_t>(f < last ? f : last);
}

template <class T>
QLIB_HOST_DEVICE inline std::uint32_t range_bin_index(T x, T lo, T inv_width, std::uint32_t nbins) noexcept {
  T f = (x - lo) * inv_width;
  const T last = static_cast<T>(nbins - 1);
  f = f > T(0) ? f : T(0);
  return static_cast<std::uint32_t>(f < last ? f : last);
}

/// T(1 / width) for the absolute-value histogram, computed in double then rounded to T.
/// A range so small that 1 / width overflows T (float data with |x| below ~1e-35) gets
/// the largest finite T instead: bins stay in order, the widths are then approximate.
template <class T>
inline T abs_inv_width(double width) noexcept {
  const double inv = 1.0 / width;
  return inv < static_cast<double>(std::numeric_limits<T>::max()) ? static_cast<T>(inv) : std::numeric_limits<T>::max();
}

/// T(n / (hi - lo)) for the range histogram (hi > lo), computed in double then rounded to T.
template <class T>
inline T range_inv_width(double lo, double hi, std::uint32_t nbins) noexcept {
  const double inv = static_cast<double>(nbins) / (hi - lo);
  return inv < static_cast<double>(std::numeric_limits<T>::max()) ? static_cast<T>(inv) : std::numeric_limits<T>::max();
}

QLIB_NAMESPACE_END
