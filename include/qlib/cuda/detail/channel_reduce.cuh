// Per-channel reductions over qlib's (outer, channels, inner) layout, shared by the min/max
// observer kernels and the LSQ gradients. Layered like CUB's device algorithms
// (NVIDIA/cccl cub/device/dispatch/*): a plan (the dispatch layer: strategy and grid from
// the shape and the device), kernels, and per-group agents; an Op supplies the arithmetic.
//
// Strategies (chosen by make_reduce_plan; every one keeps the temporary storage at most
// max(8 * channels, 32 * resident blocks) accumulators, never one per element):
// - rows, block groups: a channel's outer * inner elements are split over K blocks of 256
//   threads (K from the device's resident-block count); inside a row the loads are
//   contiguous and 16-byte vectors when inner is a multiple of the vector width. Each
//   block writes one partial; a finish kernel combines a channel's K partials (K = 1
//   finishes in place). Used when inner >= 8 or outer < 64, and a channel has >= 4096
//   elements: per-tensor reductions (1, 1, n), conv weights along axis 0, NCHW activations.
// - rows, warp groups: one warp per channel, finished in place: small channels (bias-like
//   tensors, many channels of a few elements).
// - columns: inner < 8 with many outer rows (channels-last activations, axis = -1): the
//   tensor is outer rows of L = channels * inner contiguous columns; a warp reads 32
//   consecutive columns of a row, 8 warps of a block take rows in turn, R row chunks per
//   column go to partials that a finish kernel combines per channel.
// The combination order depends only on the shape and the device's multiprocessor count,
// so results are deterministic run to run (no floating-point atomics).
//
// Op concept (see minmax.cuh and fake_quant.cuh):
//   static constexpr int width;                 elements per load (1, or a 16-byte vector)
//   using acc_type; using item_type;            trivially copyable
//   acc_type identity() const;                  __device__
//   item_type load(std::size_t offset) const;   elements [offset, offset + width)
//   void consume(acc_type&, const item_type&, std::size_t offset, std::uint32_t channel) const;
//   void combine(acc_type& a, const acc_type& b) const;
//   void finish(std::size_t channel, const acc_type&) const;   writes the channel's result
// Loads of a thread's unrolled items are issued before any consume (which may store), so
// several 16-byte loads are in flight per thread.
#pragma once

#include <climits>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "common.cuh"

QLIB_NAMESPACE_BEGIN
namespace cuda {
namespace detail {

constexpr unsigned reduce_threads = 256;
constexpr int reduce_unroll = 4;

enum class reduce_strategy : std::uint8_t { rows_block, rows_warp, columns };
/// How a channel-relative index j in [0, outer * inner) becomes a flat offset.
enum class offset_map : std::uint8_t { contiguous, narrow, wide };

struct rows_geometry {
  std::size_t channels = 1, inner = 1, per_channel = 0;  // per_channel = outer * inner
  fast_divmod inner_div;
  offset_map map = offset_map::contiguous;

  __device__ __forceinline__ std::size_t offset(std::size_t c, std::size_t j) const {
    if (map == offset_map::contiguous) return c * inner + j;
    if (map == offset_map::narrow) {
      const std::size_t o = inner_div.div(static_cast<std::uint32_t>(j));
      return (o * channels + c) * inner + (j - o * inner);
    }
    const std::size_t o = j / inner;
    return (o * channels + c) * inner + (j - o * inner);
  }
};

struct reduce_plan {
  reduce_strategy strategy = reduce_strategy::rows_block;
  std::size_t blocks_per_channel = 1;  ///< K (rows_block)
  std::size_t row_chunks = 1;          ///< R (columns)
  std::size_t partials = 0;            ///< accumulators in temporary storage
  dim3 grid;
};

/// The plan for a shape; `vec` is the Op's vector width (it only bounds K), `blocks_per_sm`
/// the resident blocks of the rows kernel (occupancy). Depends on the shape and the current
/// device alone, so a temporary-storage query and the call that follows agree.
inline cudaError_t make_reduce_plan(const channel_shape& s, int vec, int blocks_per_sm, reduce_plan* plan) {
  device_limits lim;
  QLIB_CUDA_RETURN_IF_ERROR(current_device_limits(&lim));
  const std::size_t per_sm = blocks_per_sm > 0 ? static_cast<std::size_t>(blocks_per_sm) : 1;
  const std::size_t target = static_cast<std::size_t>(lim.sms > 0 ? lim.sms : 1) * per_sm;  // one full wave
  const std::size_t m = s.outer * s.inner;
  reduce_plan p;
  if (s.inner >= 8 || s.outer < 64) {
    if (m >= 4096) {
      p.strategy = reduce_strategy::rows_block;
      const std::size_t by_work = ceil_div(m, reduce_threads * static_cast<std::size_t>(vec) * reduce_unroll);
      std::size_t k = ceil_div(target, s.channels);
      k = k < by_work ? k : by_work;
      p.blocks_per_channel = k < 1 ? 1 : k;
      const std::size_t blocks = s.channels * p.blocks_per_channel;
      if (blocks > static_cast<std::size_t>(INT_MAX)) return cudaErrorInvalidValue;
      p.grid = dim3(static_cast<unsigned>(blocks));
      p.partials = p.blocks_per_channel > 1 ? blocks : 0;
    } else {
      p.strategy = reduce_strategy::rows_warp;
      const std::size_t blocks = ceil_div(s.channels, reduce_threads / 32);
      if (blocks > static_cast<std::size_t>(INT_MAX)) return cudaErrorInvalidValue;
      p.grid = dim3(static_cast<unsigned>(blocks));
    }
  } else {
    p.strategy = reduce_strategy::columns;
    const std::size_t cols = s.channels * s.inner;
    const std::size_t gx = ceil_div(cols, 32);
    std::size_t r = ceil_div(target, gx);
    const std::size_t by_rows = ceil_div(s.outer, (reduce_threads / 32) * reduce_unroll);
    r = r < by_rows ? r : by_rows;
    r = r < 65535 ? r : 65535;
    p.row_chunks = r < 1 ? 1 : r;
    if (gx > static_cast<std::size_t>(INT_MAX)) return cudaErrorInvalidValue;
    p.grid = dim3(static_cast<unsigned>(gx), static_cast<unsigned>(p.row_chunks));
    p.partials = p.row_chunks * cols;
  }
  *plan = p;
  return cudaSuccess;
}

/// Tree reduction of sm[0..blockDim.x) in independent segments of `group` threads
/// (group = 32 or blockDim.x, a power of two); every thread of the block must call it.
template <class Op>
__device__ __forceinline__ void segment_reduce(const Op& op, typename Op::acc_type* sm, unsigned group) {
  const unsigned lane = threadIdx.x & (group - 1);
  __syncthreads();
  for (unsigned s = group / 2; s > 0; s >>= 1) {
    if (lane < s) op.combine(sm[threadIdx.x], sm[threadIdx.x + s]);
    __syncthreads();
  }
}

/// Agent of the rows strategies: the group (a warp, or the whole block) walks its channel's
/// vectors j = first, first + step, ... with reduce_unroll loads in flight per thread.
template <class Op>
__global__ void __launch_bounds__(reduce_threads)
    rows_kernel(Op op, rows_geometry g, typename Op::acc_type* partials, unsigned k_per_channel, bool warp_groups) {
  using acc_t = typename Op::acc_type;
  using item_t = typename Op::item_type;
  constexpr int V = Op::width;
  __shared__ acc_t sm[reduce_threads];
  const unsigned group = warp_groups ? 32u : blockDim.x;
  const unsigned lane = threadIdx.x & (group - 1);
  std::size_t c, k, groups_per_channel;
  if (warp_groups) {
    c = static_cast<std::size_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
    k = 0;
    groups_per_channel = 1;
  } else {
    c = blockIdx.x / k_per_channel;
    k = blockIdx.x % k_per_channel;
    groups_per_channel = k_per_channel;
  }
  const bool live = c < g.channels;
  acc_t acc = op.identity();
  if (live) {
    const std::size_t nvec = g.per_channel / V;
    const std::size_t step = static_cast<std::size_t>(group) * groups_per_channel;
    for (std::size_t base = k * group + lane; base < nvec; base += step * reduce_unroll) {
      item_t items[reduce_unroll];
      std::size_t offs[reduce_unroll];
#pragma unroll
      for (int u = 0; u < reduce_unroll; ++u) {
        const std::size_t j = base + u * step;
        if (j < nvec) {
          offs[u] = g.offset(c, j * V);
          items[u] = op.load(offs[u]);
        }
      }
#pragma unroll
      for (int u = 0; u < reduce_unroll; ++u)
        if (base + u * step < nvec) op.consume(acc, items[u], offs[u], static_cast<std::uint32_t>(c));
    }
  }
  sm[threadIdx.x] = acc;
  segment_reduce(op, sm, group);
  if (live && lane == 0) {
    if (partials)
      partials[c * groups_per_channel + k] = sm[threadIdx.x];
    else
      op.finish(c, sm[threadIdx.x]);
  }
}

/// Agent of the columns strategy: thread (tx, ty) of block (bx, r) owns column
/// bx * 32 + tx and rows ty + 8 * (r + R * t); the 8 row-walkers are combined in shared
/// memory and one partial per (row chunk, column) is written.
template <class Op>
__global__ void __launch_bounds__(reduce_threads)
    columns_kernel(Op op, std::size_t outer, std::size_t cols, std::size_t inner, typename Op::acc_type* partials) {
  static_assert(Op::width == 1, "the columns strategy reads single elements");
  using acc_t = typename Op::acc_type;
  using item_t = typename Op::item_type;
  __shared__ acc_t sm[reduce_threads];
  const unsigned tx = threadIdx.x % 32, ty = threadIdx.x / 32, rows_per_block = blockDim.x / 32;
  const std::size_t col = static_cast<std::size_t>(blockIdx.x) * 32 + tx;
  const std::size_t step = static_cast<std::size_t>(gridDim.y) * rows_per_block;
  acc_t acc = op.identity();
  if (col < cols) {
    const std::uint32_t c = static_cast<std::uint32_t>(col / inner);
    for (std::size_t base = static_cast<std::size_t>(blockIdx.y) * rows_per_block + ty; base < outer;
         base += step * reduce_unroll) {
      item_t items[reduce_unroll];
#pragma unroll
      for (int u = 0; u < reduce_unroll; ++u) {
        const std::size_t o = base + u * step;
        if (o < outer) items[u] = op.load(o * cols + col);
      }
#pragma unroll
      for (int u = 0; u < reduce_unroll; ++u) {
        const std::size_t o = base + u * step;
        if (o < outer) op.consume(acc, items[u], o * cols + col, c);
      }
    }
  }
  sm[threadIdx.x] = acc;
  __syncthreads();
  for (unsigned s = rows_per_block / 2; s > 0; s >>= 1) {
    if (ty < s) op.combine(sm[threadIdx.x], sm[threadIdx.x + s * 32]);
    __syncthreads();
  }
  if (ty == 0 && col < cols) partials[static_cast<std::size_t>(blockIdx.y) * cols + col] = sm[tx];
}

/// One warp per channel combines partials[c * c_stride + a * a_stride + b * b_stride] for
/// a < na, b < nb in a fixed order and finishes the channel.
template <class Op>
__global__ void __launch_bounds__(reduce_threads)
    finish_kernel(Op op, const typename Op::acc_type* partials, std::size_t channels, std::size_t c_stride,
                  std::size_t na, std::size_t a_stride, std::size_t nb, std::size_t b_stride) {
  using acc_t = typename Op::acc_type;
  __shared__ acc_t sm[reduce_threads];
  const std::size_t c = static_cast<std::size_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const unsigned lane = threadIdx.x % 32;
  acc_t acc = op.identity();
  if (c < channels) {
    const std::size_t total = na * nb;
    for (std::size_t t = lane; t < total; t += 32) {
      const std::size_t a = t / nb, b = t - a * nb;
      op.combine(acc, partials[c * c_stride + a * a_stride + b * b_stride]);
    }
  }
  sm[threadIdx.x] = acc;
  segment_reduce(op, sm, 32);
  if (c < channels && lane == 0) op.finish(c, sm[threadIdx.x]);
}

/// Temporary storage of a plan: the partials, plus slack to align them.
template <class Acc>
std::size_t reduce_temp_bytes(const reduce_plan& p) {
  return p.partials * sizeof(Acc) + 256;
}

/// Runs a per-channel reduction. VecOp and ScalarOp are the same Op at the vector width and
/// at width 1; `vec_ok` says whether the pointers allow vectors (16-byte aligned). A null
/// d_temp is a query: temp_bytes receives the size and nothing runs.
template <class VecOp, class ScalarOp>
cudaError_t run_channel_reduce(void* d_temp, std::size_t& temp_bytes, const channel_shape& s, const VecOp& vop,
                               const ScalarOp& sop, bool vec_ok, cudaStream_t stream) {
  using acc_t = typename ScalarOp::acc_type;
  static_assert(std::is_same<typename VecOp::acc_type, acc_t>::value, "both ops share one accumulator type");
  int per_sm = 0;
  QLIB_CUDA_RETURN_IF_ERROR(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, rows_kernel<VecOp>, static_cast<int>(reduce_threads), 0));
  reduce_plan plan;
  QLIB_CUDA_RETURN_IF_ERROR(make_reduce_plan(s, VecOp::width, per_sm, &plan));
  const std::size_t need = reduce_temp_bytes<acc_t>(plan);
  if (d_temp == nullptr) {
    temp_bytes = need;
    return cudaSuccess;
  }
  if (temp_bytes < need) return cudaErrorInvalidValue;
  acc_t* partials = plan.partials ? static_cast<acc_t*>(align_up(d_temp, 256)) : nullptr;
  const dim3 block(reduce_threads);

  if (plan.strategy == reduce_strategy::columns) {
    columns_kernel<ScalarOp><<<plan.grid, block, 0, stream>>>(sop, s.outer, s.channels * s.inner, s.inner, partials);
    QLIB_CUDA_RETURN_IF_ERROR(launch_status());
    const std::size_t blocks = ceil_div(s.channels, reduce_threads / 32);
    finish_kernel<ScalarOp><<<static_cast<unsigned>(blocks), block, 0, stream>>>(
        sop, partials, s.channels, s.inner, plan.row_chunks, s.channels * s.inner, s.inner, 1);
    return launch_status();
  }

  rows_geometry g;
  g.channels = s.channels;
  g.inner = s.inner;
  g.per_channel = s.outer * s.inner;
  if (s.outer == 1) {
    g.map = offset_map::contiguous;
  } else if (g.per_channel <= narrow_limit) {
    g.map = offset_map::narrow;
    g.inner_div = fast_divmod(static_cast<std::uint32_t>(s.inner));
  } else {
    g.map = offset_map::wide;
  }
  const bool warp_groups = plan.strategy == reduce_strategy::rows_warp;
  const unsigned k = static_cast<unsigned>(plan.blocks_per_channel);
  if (vec_ok && s.inner % VecOp::width == 0)
    rows_kernel<VecOp><<<plan.grid, block, 0, stream>>>(vop, g, partials, k, warp_groups);
  else
    rows_kernel<ScalarOp><<<plan.grid, block, 0, stream>>>(sop, g, partials, k, warp_groups);
  QLIB_CUDA_RETURN_IF_ERROR(launch_status());
  if (!partials) return cudaSuccess;
  const std::size_t blocks = ceil_div(s.channels, reduce_threads / 32);
  finish_kernel<ScalarOp><<<static_cast<unsigned>(blocks), block, 0, stream>>>(
      sop, partials, s.channels, plan.blocks_per_channel, plan.blocks_per_channel, 1, 1, 0);
  return launch_status();
}

}  // namespace detail
}  // namespace cuda
QLIB_NAMESPACE_END
