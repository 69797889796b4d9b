// Histograms of device data with the bin rules of core/binning.hpp, so every value lands in
// the same bin as on the CPU and the counts are identical bit for bit. nvcc only; include
// on purpose (quant.hpp never includes CUDA).
//
// Layers as in CUB's DeviceHistogram (NVIDIA/cccl cub/device/device_histogram.cuh,
// dispatch/dispatch_histogram.cuh, agent/agent_histogram.cuh): the entry point below
// (stream argument, cudaError_t result; no temporary storage: blocks add their counts to
// the output directly) -> dispatch (bin capacity, replica count, grid from the occupancy
// of the kernel) -> kernel -> per-block agent that counts into shared memory.
// The agent keeps R interleaved copies of the bins per block (word b * R + r), lane l
// counting into copy l % R: lanes of a warp that hit the same bin (zeros after a ReLU, a
// narrow peak) then mostly touch different banks and different words, which cuts the
// serialization of shared-memory atomics by up to R. R is 8, 4, 2 or 1 so that the copies
// fit 64 KB (2048 bins: 8; 4096: 4; 8192: 2; up to 16384: 1); larger histograms that fit
// the device's shared memory use R = 1, beyond that the counts go to global memory with
// atomics (correct, slower). Loads are 16-byte vectors (4 floats, 8 halves) from the first
// aligned element; the unaligned head and the tail are read singly.
//
// Counts: uint32 in shared memory, at most 2^31 + 4096 values per block per call (the
// grid has at least n / 2^31 blocks), so a per-block counter cannot overflow; the output is
// uint64 (unsigned long long), which overflows after 1.8e19 values in one bin.
//
// Bins and parameters: the host computes them with the functions the CPU observers use
// (make_abs_bins / make_range_bins below call qlib::abs_inv_width / range_inv_width), and
// the kernels evaluate qlib::abs_bin_index / range_bin_index in float (FMUL, FADD: nothing
// that FMA contraction can merge). __half data is binned as its exact float value. NaN and
// Inf land where binning.hpp puts them (|x|: last bin; range: NaN and -Inf in bin 0, +Inf
// in the last); observers reject such batches first (minmax.cuh counts them).
//
// Feeding the host observers of observer/histogram.hpp (their prepare()/accumulate() split
// exists for this): with mm from minmax.cuh (batch rejected if it holds NaN/Inf),
//   abs_histogram<float> h:   rule = h.prepare(mm);
//     rule.bins == 0 (all zeros before the width is known): h.add_pending_zeros(n);
//     else histogram(d_x, n, abs_bins{rule.inv_width, rule.bins}, d_counts, count_mode::overwrite, s);
//          copy_counts_to_host(d_counts, rule.bins, &counts, s); h.accumulate(counts.data(), counts.size());
//   range_histogram<float> h: rule = h.prepare(mm);
//     rule.constant: n values go to bin rule.bins / 2 on the host (as add() does);
//     else the same with range_bins{rule.lo, rule.inv_width, rule.bins}.
// d_counts must hold rule.bins counts (the abs histogram grows: reallocate when it does).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "../core/binning.hpp"
#include "detail/common.cuh"

QLIB_NAMESPACE_BEGIN
namespace cuda {

/// The |x| histogram's rule: bin j covers [j * w, (j + 1) * w), the last bin takes
/// everything beyond. inv_width = qlib::abs_inv_width<float>(w).
struct abs_bins {
  float inv_width = 0.0f;
  std::uint32_t bins = 0;
  QLIB_HOST_DEVICE std::uint32_t operator()(float v) const noexcept { return abs_bin_index(v, inv_width, bins); }
};

/// The [lo, hi] histogram's rule: `bins` equal bins, values below lo in bin 0, values at or
/// above hi in the last. inv_width = qlib::range_inv_width<float>(lo, hi, bins).
struct range_bins {
  float lo = 0.0f;
  float inv_width = 0.0f;
  std::uint32_t bins = 0;
  QLIB_HOST_DEVICE std::uint32_t operator()(float v) const noexcept { return range_bin_index(v, lo, inv_width, bins); }
};

/// The rule for bin width `width` (> 0), rounded as the CPU histograms round it.
inline abs_bins make_abs_bins(double width, std::uint32_t bins) { return {abs_inv_width<float>(width), bins}; }
/// The rule for [lo, hi] (hi > lo), rounded as the CPU histograms round it.
inline range_bins make_range_bins(double lo, double hi, std::uint32_t bins) {
  return {static_cast<float>(lo), range_inv_width<float>(lo, hi, bins), bins};
}

/// overwrite: d_counts is zeroed first; accumulate: counts are added to what it holds
/// (several batches into one device histogram, one copy back at the end).
enum class count_mode : std::uint8_t { overwrite, accumulate };

namespace detail {

constexpr int histogram_unroll = 2;
constexpr std::size_t histogram_smem_budget = 64 * 1024;             // bytes of replicas per block
constexpr std::size_t histogram_block_limit = std::size_t{1} << 31;  // values per block per call

/// Tuning of the shared-memory kernel; the public entry point picks it from the bin count
/// (default_histogram_policy), the benchmark sweeps it.
struct histogram_policy {
  int replicas = 1;   ///< 1, 2, 4 or 8
  int threads = 512;  ///< per block
};

inline histogram_policy default_histogram_policy(std::uint32_t bins) {
  histogram_policy p;
  p.replicas = 8;
  while (p.replicas > 1 && static_cast<std::size_t>(bins) * 4 * p.replicas > histogram_smem_budget) p.replicas /= 2;
  return p;
}

/// Head (unaligned), 16-byte vectors, tail of n values at x.
template <class T>
struct aligned_split {
  std::size_t head, nvec, tail_begin;
  aligned_split(const T* x, std::size_t n) {
    constexpr std::size_t V = vec_width<T>::value;
    const std::size_t mis = reinterpret_cast<std::uintptr_t>(x) % 16;
    std::size_t h = mis == 0 ? 0 : (16 - mis) / sizeof(T);
    head = h < n ? h : n;
    nvec = (n - head) / V;
    tail_begin = head + nvec * V;
  }
};

/// Agent + kernel: counts into R shared-memory replicas, then adds them to `counts`.
template <int R, class T, class Bins>
__global__ void histogram_shared_kernel(const T* x, std::size_t n, aligned_split<T> split, Bins rule,
                                        unsigned long long* counts) {
  constexpr int V = vec_width<T>::value;
  extern __shared__ std::uint32_t bins_sm[];
  const std::uint32_t nb = rule.bins;
  for (std::uint32_t i = threadIdx.x; i < nb * R; i += blockDim.x) bins_sm[i] = 0;
  __syncthreads();
  const std::uint32_t r = threadIdx.x % R;
  const std::size_t tid = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;

  if (tid < split.head) atomicAdd(&bins_sm[rule(to_float(x[tid])) * R + r], 1u);
  if (split.tail_begin + tid < n) atomicAdd(&bins_sm[rule(to_float(x[split.tail_begin + tid])) * R + r], 1u);

  const T* xv = x + split.head;
  for (std::size_t base = tid; base < split.nvec; base += stride * histogram_unroll) {
    vec<T, V> items[histogram_unroll];
#pragma unroll
    for (int u = 0; u < histogram_unroll; ++u)
      if (base + u * stride < split.nvec) items[u] = load_vec<V>(xv + (base + u * stride) * V);
#pragma unroll
    for (int u = 0; u < histogram_unroll; ++u) {
      if (base + u * stride < split.nvec) {
#pragma unroll
        for (int k = 0; k < V; ++k) atomicAdd(&bins_sm[rule(to_float(items[u].v[k])) * R + r], 1u);
      }
    }
  }
  __syncthreads();
  // Flush: consecutive threads read consecutive words (no bank conflicts); the R copies of
  // a bin sit in R consecutive lanes and are summed with shuffles. The sum is the block's
  // count for the bin, below 2^32. Every thread runs the same number of rounds.
  const std::uint32_t words = nb * R;
  for (std::uint32_t w0 = 0; w0 < words; w0 += blockDim.x) {
    const std::uint32_t w = w0 + threadIdx.x;
    std::uint32_t v = w < words ? bins_sm[w] : 0u;
#pragma unroll
    for (int off = R / 2; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off, R);
    if (w < words && threadIdx.x % R == 0 && v != 0u) atomicAdd(&counts[w / R], static_cast<unsigned long long>(v));
  }
}

/// Fallback for histograms too large for shared memory: global 64-bit atomics.
template <class T, class Bins>
__global__ void histogram_global_kernel(const T* x, std::size_t n, Bins rule, unsigned long long* counts) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    atomicAdd(&counts[rule(to_float(x[i]))], 1ull);
}

template <int R, class T, class Bins>
cudaError_t launch_shared(const T* x, std::size_t n, const Bins& rule, unsigned long long* counts, int threads,
                          std::size_t smem, const device_limits& lim, cudaStream_t stream) {
  auto kernel = histogram_shared_kernel<R, T, Bins>;
  if (smem > 48 * 1024)
    QLIB_CUDA_RETURN_IF_ERROR(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  int per_sm = 0;
  QLIB_CUDA_RETURN_IF_ERROR(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem));
  if (per_sm < 1) per_sm = 1;
  const aligned_split<T> split(x, n);
  constexpr std::size_t V = vec_width<T>::value;
  std::size_t grid = static_cast<std::size_t>(lim.sms) * static_cast<std::size_t>(per_sm);
  const std::size_t by_work = ceil_div(split.nvec, static_cast<std::size_t>(threads) * histogram_unroll);
  grid = grid < by_work ? grid : by_work;
  const std::size_t by_overflow = ceil_div(n, histogram_block_limit);
  grid = grid > by_overflow ? grid : by_overflow;
  // The head and tail (< V values each) are read by the first threads of the grid.
  const std::size_t by_edges = ceil_div(V, static_cast<std::size_t>(threads));
  grid = grid > by_edges ? grid : by_edges;
  kernel<<<static_cast<unsigned>(grid), threads, smem, stream>>>(x, n, split, rule, counts);
  return launch_status();
}

template <class T, class Bins>
cudaError_t histogram_dispatch(const T* d_x, std::size_t n, const Bins& rule, unsigned long long* d_counts,
                               count_mode mode, histogram_policy policy, cudaStream_t stream) {
  static_assert(is_storage<T>::value, "qlib::cuda::histogram takes float or __half data");
  if (rule.bins == 0 || d_counts == nullptr || (n > 0 && d_x == nullptr)) return cudaErrorInvalidValue;
  if (policy.replicas != 1 && policy.replicas != 2 && policy.replicas != 4 && policy.replicas != 8)
    return cudaErrorInvalidValue;
  if (policy.threads < 32 || policy.threads > 1024 || policy.threads % 32 != 0) return cudaErrorInvalidValue;
  if (mode == count_mode::overwrite)
    QLIB_CUDA_RETURN_IF_ERROR(
        cudaMemsetAsync(d_counts, 0, static_cast<std::size_t>(rule.bins) * sizeof(unsigned long long), stream));
  if (n == 0) return cudaSuccess;
  device_limits lim;
  QLIB_CUDA_RETURN_IF_ERROR(current_device_limits(&lim));
  const std::size_t capacity = static_cast<std::size_t>(lim.smem_per_block_optin);
  std::size_t smem = static_cast<std::size_t>(rule.bins) * 4 * static_cast<std::size_t>(policy.replicas);
  if (smem > capacity) {
    policy.replicas = 1;
    smem = static_cast<std::size_t>(rule.bins) * 4;
  }
  if (smem > capacity) {
    const std::size_t grid = ceil_div(n, 256) < static_cast<std::size_t>(lim.sms) * 8
                                 ? ceil_div(n, 256)
                                 : static_cast<std::size_t>(lim.sms) * 8;
    histogram_global_kernel<T, Bins><<<static_cast<unsigned>(grid), 256, 0, stream>>>(d_x, n, rule, d_counts);
    return launch_status();
  }
  switch (policy.replicas) {
    case 8:
      return launch_shared<8>(d_x, n, rule, d_counts, policy.threads, smem, lim, stream);
    case 4:
      return launch_shared<4>(d_x, n, rule, d_counts, policy.threads, smem, lim, stream);
    case 2:
      return launch_shared<2>(d_x, n, rule, d_counts, policy.threads, smem, lim, stream);
    default:
      return launch_shared<1>(d_x, n, rule, d_counts, policy.threads, smem, lim, stream);
  }
}

}  // namespace detail

/// Counts d_x[0..n) (float or __half, device memory) into d_counts[0..rule.bins) (device
/// memory) under `rule` (abs_bins or range_bins). Asynchronous on `stream`. Returns
/// cudaErrorInvalidValue for rule.bins == 0 or a null pointer; n == 0 only applies `mode`.
template <class T, class Bins>
cudaError_t histogram(const T* d_x, std::size_t n, const Bins& rule, unsigned long long* d_counts,
                      count_mode mode = count_mode::overwrite, cudaStream_t stream = 0) {
  return detail::histogram_dispatch(d_x, n, rule, d_counts, mode, detail::default_histogram_policy(rule.bins), stream);
}

/// Copies `bins` device counts into *out (resized) and waits for `stream`: the plain
/// counts that abs_histogram / range_histogram::accumulate() take.
inline cudaError_t copy_counts_to_host(const unsigned long long* d_counts, std::uint32_t bins,
                                       std::vector<std::uint64_t>* out, cudaStream_t stream = 0) {
  static_assert(sizeof(std::uint64_t) == sizeof(unsigned long long), "64-bit counts");
  if (d_counts == nullptr || out == nullptr) return cudaErrorInvalidValue;
  out->assign(bins, 0);
  QLIB_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
      out->data(), d_counts, static_cast<std::size_t>(bins) * sizeof(std::uint64_t), cudaMemcpyDeviceToHost, stream));
  return cudaStreamSynchronize(stream);
}

/// The same as doubles (exact below 2^53 per bin), for code that keeps double counts.
inline cudaError_t copy_counts_to_host(const unsigned long long* d_counts, std::uint32_t bins, std::vector<double>* out,
                                       cudaStream_t stream = 0) {
  if (out == nullptr) return cudaErrorInvalidValue;
  std::vector<std::uint64_t> tmp;
  QLIB_CUDA_RETURN_IF_ERROR(copy_counts_to_host(d_counts, bins, &tmp, stream));
  out->assign(tmp.begin(), tmp.end());
  return cudaSuccess;
}

}  // namespace cuda
QLIB_NAMESPACE_END
