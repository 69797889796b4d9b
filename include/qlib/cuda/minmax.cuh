// Min/max of device data, per tensor and per channel, with the finiteness check the CPU
// observers do (core/check.hpp): the count of NaN/Inf values and the first one's flat
// index, so a host observer can reject a batch exactly as check_and_minmax would.
// nvcc only; include on purpose (quant.hpp never includes CUDA).
//
//   std::size_t bytes = 0;
//   qlib::cuda::minmax(nullptr, bytes, d_x, n, d_stats, stream);     // query
//   cudaMalloc(&d_temp, bytes);
//   qlib::cuda::minmax(d_temp, bytes, d_x, n, d_stats, stream);      // run
//   minmax_stats h; cudaMemcpy(&h, d_stats, sizeof h, cudaMemcpyDeviceToHost);
//   qlib::detail::throw_if(qlib::cuda::check_nonfinite(h.nonfinite, "minmax observer 'conv1'"));
//   qlib::minmax_t<float> mm = qlib::cuda::to_minmax(h);            // feeds prepare() etc.
//
// Semantics: min and max are over the finite values only (both are exact: float input, or
// __half widened exactly to float); if every value is NaN/Inf they are +Inf and -Inf.
// -0.0 and +0.0 compare equal, and either may be reported where both occur. Every call
// returns cudaErrorInvalidValue for an empty tensor (the CPU's empty_input), a null
// pointer, or temporary storage smaller than the query said. Runs asynchronously on
// `stream`; the results are ready when the stream is.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "../core/check.hpp"
#include "detail/channel_reduce.cuh"
#include "detail/common.cuh"

QLIB_NAMESPACE_BEGIN
namespace cuda {

/// NaN/Inf found in a tensor: how many, and the smallest flat index of one
/// (no_index when count == 0).
struct nonfinite_stats {
  static constexpr unsigned long long no_index = ~0ull;
  unsigned long long count;
  unsigned long long first_index;
};

/// Per-tensor result, written to device memory.
struct minmax_stats {
  float min;
  float max;
  nonfinite_stats nonfinite;
};

/// The CPU path's error for a batch with NaN/Inf: errc::non_finite naming `who` and the
/// first bad flat index; ok when count == 0.
inline status check_nonfinite(const nonfinite_stats& s, const std::string& who) {
  if (s.count == 0) return {};
  return {errc::non_finite, who + ": tensor holds " + std::to_string(s.count) +
                                " NaN/Inf value(s); the first at flat index " + std::to_string(s.first_index)};
}

inline minmax_t<float> to_minmax(const minmax_stats& s) noexcept { return {s.min, s.max}; }

namespace detail {

struct minmax_acc {
  float lo, hi;
  unsigned long long bad, first;
};

/// The Op of channel_reduce.cuh for min/max and the finiteness count.
template <class T, int V>
struct minmax_op {
  static constexpr int width = V;
  using acc_type = minmax_acc;
  using item_type = vec<T, V>;

  const T* x;
  float* out_min;
  float* out_max;
  nonfinite_stats* flags;

  __device__ acc_type identity() const { return {INFINITY, -INFINITY, 0ull, nonfinite_stats::no_index}; }
  __device__ item_type load(std::size_t off) const { return load_vec<V>(x + off); }
  __device__ void consume(acc_type& a, const item_type& it, std::size_t off, std::uint32_t) const {
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float v = to_float(it.v[k]);
      if (fabsf(v) <= FLT_MAX) {  // false for NaN and +-Inf
        a.lo = fminf(a.lo, v);
        a.hi = fmaxf(a.hi, v);
      } else {
        ++a.bad;
        const unsigned long long i = off + static_cast<unsigned long long>(k);
        a.first = i < a.first ? i : a.first;
      }
    }
  }
  __device__ void combine(acc_type& a, const acc_type& b) const {
    a.lo = fminf(a.lo, b.lo);
    a.hi = fmaxf(a.hi, b.hi);
    a.bad += b.bad;
    a.first = b.first < a.first ? b.first : a.first;
  }
  __device__ void finish(std::size_t c, const acc_type& a) const {
    out_min[c] = a.lo;
    out_max[c] = a.hi;
    if (a.bad) {
      atomicAdd(&flags->count, a.bad);
      atomicMin(&flags->first_index, a.first);
    }
  }
};

template <class T>
cudaError_t minmax_dispatch(void* d_temp, std::size_t& temp_bytes, const T* d_x, const channel_shape& s, float* d_min,
                            float* d_max, nonfinite_stats* d_flags, cudaStream_t stream) {
  static_assert(is_storage<T>::value, "qlib::cuda::minmax takes float or __half data");
  if (s.numel() == 0 || s.channels == 0) return cudaErrorInvalidValue;
  if (d_temp != nullptr && (!d_x || !d_min || !d_max || !d_flags)) return cudaErrorInvalidValue;
  constexpr int V = vec_width<T>::value;
  const minmax_op<T, V> vop{d_x, d_min, d_max, d_flags};
  const minmax_op<T, 1> sop{d_x, d_min, d_max, d_flags};
  if (d_temp != nullptr) {
    // The finish step adds into the flags; start them empty (first_index = all ones).
    QLIB_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(&d_flags->count, 0, sizeof(d_flags->count), stream));
    QLIB_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(&d_flags->first_index, 0xFF, sizeof(d_flags->first_index), stream));
  }
  return run_channel_reduce(d_temp, temp_bytes, s, vop, sop, is_aligned(d_x, 16), stream);
}

}  // namespace detail

/// Min, max and non-finite count of d_x[0..n) into *d_out (device memory).
/// A null d_temp is a query: temp_bytes receives the size and nothing runs.
template <class T>
cudaError_t minmax(void* d_temp, std::size_t& temp_bytes, const T* d_x, std::size_t n, minmax_stats* d_out,
                   cudaStream_t stream = 0) {
  if (d_temp != nullptr && d_out == nullptr) return cudaErrorInvalidValue;
  channel_shape s;
  s.inner = n;
  return detail::minmax_dispatch(d_temp, temp_bytes, d_x, s, d_out ? &d_out->min : nullptr,
                                 d_out ? &d_out->max : nullptr, d_out ? &d_out->nonfinite : nullptr, stream);
}

/// Per-channel min and max of d_x laid out as `shape` (outer, channels, inner) into
/// d_min[c], d_max[c] (device arrays of shape.channels floats), and the non-finite count of
/// the whole tensor (flat indices) into *d_nonfinite.
template <class T>
cudaError_t minmax_per_channel(void* d_temp, std::size_t& temp_bytes, const T* d_x, channel_shape shape, float* d_min,
                               float* d_max, nonfinite_stats* d_nonfinite, cudaStream_t stream = 0) {
  return detail::minmax_dispatch(d_temp, temp_bytes, d_x, shape, d_min, d_max, d_nonfinite, stream);
}

}  // namespace cuda
QLIB_NAMESPACE_END
