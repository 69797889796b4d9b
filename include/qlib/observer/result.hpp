// The plain-data result of every observer's compute(): the chosen clip range and the
// parameters derived from it, per tensor (one entry) or per channel (one entry per channel
// along `axis`). File writers (io/) take this struct; nothing in it refers back to the
// observer that produced it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../core/qparams.hpp"

QLIB_NAMESPACE_BEGIN

template <class T>
struct calib_result {
  std::vector<T> clip_min;               ///< chosen range, one per channel (1 per tensor)
  std::vector<T> clip_max;
  std::vector<T> scale;                  ///< parameters on spec's grid
  std::vector<std::int32_t> zero_point;
  int axis = -1;                         ///< -1: per tensor; else the channel axis
  qspec spec{};

  bool per_channel() const noexcept { return axis >= 0; }
  std::size_t channels() const noexcept { return scale.size(); }
  qparams<T> params(std::size_t c = 0) const { return {scale.at(c), zero_point.at(c)}; }
  channel_qparams<T> channel_params() const { return {scale, zero_point, axis}; }
  /// The symmetric threshold max(|clip_min|, |clip_max|) of channel c (TensorRT's amax).
  T amax(std::size_t c = 0) const {
    const T a = clip_min.at(c) < T(0) ? -clip_min[c] : clip_min[c];
    const T b = clip_max.at(c) < T(0) ? -clip_max[c] : clip_max[c];
    return a > b ? a : b;
  }
};

/// A per-tensor result from a range: parameters by spec's convention.
template <class T>
calib_result<T> make_result(T lo, T hi, const qspec& spec) {
  calib_result<T> r;
  const qparams<T> p = qparams_from_range(lo, hi, spec);
  r.clip_min = {lo};
  r.clip_max = {hi};
  r.scale = {p.scale};
  r.zero_point = {p.zero_point};
  r.axis = -1;
  r.spec = spec;
  return r;
}

/// A per-channel result from per-channel ranges.
template <class T>
calib_result<T> make_result(std::vector<T> lo, std::vector<T> hi, const qspec& spec, int axis) {
  calib_result<T> r;
  channel_qparams<T> p = qparams_from_ranges(lo, hi, spec, axis);
  r.clip_min = std::move(lo);
  r.clip_max = std::move(hi);
  r.scale = std::move(p.scale);
  r.zero_point = std::move(p.zero_point);
  r.axis = axis;
  r.spec = spec;
  return r;
}

QLIB_NAMESPACE_END
