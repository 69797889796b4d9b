// Fake quantization on the device: forward (optionally writing the straight-through mask),
// the straight-through backward (from the mask, or recomputing it from x), and the LSQ
// gradients of scale and zero point, per tensor and per channel, for float and __half
// storage (arithmetic in float). nvcc only; include on purpose.
//
// Values: y = (clamp(round(x / s) + z, qmin, qmax) - z) * s, evaluated exactly as
// qlib::fake_quantize_value<float> (core/quantize.hpp): a true IEEE division x / s
// (__fdiv_rn), rounding half to even with rintf (detail::rint_even; host_test.cu checks it
// against qlib::round_half_even) or half away from zero with roundf (= std::round), then
// __fadd_rn / __fmul_rn, so neither -prec-div=false nor FMA contraction can change a bit.
// For float the outputs equal the CPU's bit for bit (NaN in, NaN out; NaN payloads are not
// compared); __half outputs are the float result rounded to nearest even.
// Do not build with -ftz=true / --use_fast_math: flushing denormals changes results.
//
// Mask (uint8, one per element; ATen's "cachemask" form): 1 where qmin <= round(x/s) + z
// <= qmax (the value was not clipped), else 0, also for NaN. Straight-through backward:
// dx = mask ? dy : +0 (the gradient is replaced, not multiplied: an Inf/NaN dy of a
// clipped element gives 0, as masked_fill does).
//
// LSQ (Esser et al. 2020, arXiv:1902.08153, with the zero point learned as in LSQ+,
// Bhalgat et al. 2020, arXiv:2004.09576): the table of the CPU's fakequant/learnable.hpp
// (the cases of ATen's _fake_quantize_learnable_*_backward, which rounds x * (1/s) where
// qlib divides). With r = round(x / s), q = r + z:
//   inside (qmin <= q <= qmax):  dx = dy,  ds = dy * (r - x / s),  dz = 0
//   below  (q < qmin):           dx = 0,   ds = dy * (qmin - z),    dz = dy * (-s)
//   above  (q > qmax):           dx = 0,   ds = dy * (qmax - z),    dz = dy * (-s)
//   NaN x:                       dx = 0,   ds = NaN,                dz = dy * (-s)
// grad_scale[c] = grad_factor * sum over the channel of ds, grad_zero_point[c] likewise
// (written, not added; grad_factor = lsq_grad_factor(elements per scale, qmax) for the
// paper's 1/sqrt(N * qmax)). The sums run in float: per-thread sequential sums, then fixed
// trees (detail/channel_reduce.cuh), deterministic for a given shape and device; their
// error is of the order of 1e-6 of the sum of |terms| (the tests allow 1e-4).
//
// Parameters live in device memory (LSQ learns them there): device_qparams points at one
// scale / zero point (per tensor) or one per channel. They are not checked on the device:
// validate on the host (scale finite and > 0, zero point inside [qmin, qmax]). The per-tensor
// forward also takes host values (qparams<float>), which it checks.
// Every call returns cudaErrorInvalidValue for a null pointer or qmin > qmax; n == 0 does
// nothing (LSQ writes zero gradients).
#pragma once

#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "../core/qparams.hpp"
#include "detail/channel_reduce.cuh"
#include "detail/common.cuh"

QLIB_NAMESPACE_BEGIN
namespace cuda {

/// The integer grid and rounding of a fake-quant op.
struct quant_grid {
  std::int32_t qmin = -128;
  std::int32_t qmax = 127;
  rounding mode = rounding::half_to_even;
  /// The grid of a qspec (qspec::validate() is the caller's).
  static quant_grid of(const qspec& spec, rounding how = rounding::half_to_even) {
    return {spec.qmin(), spec.qmax(), how};
  }
};

/// Device pointers to the scale(s) (float) and zero point(s) (int32): one entry per tensor,
/// or shape.channels entries for the per-channel calls.
struct device_qparams {
  const float* scale = nullptr;
  const std::int32_t* zero_point = nullptr;
};

/// LSQ's gradient scale 1 / sqrt(N * qmax), N = elements per scale (1 when either is < 1).
inline float lsq_grad_factor(std::size_t elements_per_scale, std::int32_t qmax) {
  const double n = elements_per_scale > 0 ? static_cast<double>(elements_per_scale) : 1.0;
  const double q = qmax > 0 ? static_cast<double>(qmax) : 1.0;
  return static_cast<float>(1.0 / std::sqrt(n * q));
}

namespace detail {

constexpr unsigned elementwise_threads = 256;
constexpr int elementwise_unroll = 4;

/// One element through the grid, in the CPU's order of operations.
struct fq_math {
  float qmin, qmax;
  rounding mode;
  __device__ __forceinline__ float round_q(float v) const {
    return mode == rounding::half_to_even ? rint_even(v) : roundf(v);
  }
  /// Writes whether the value was inside the grid; returns the fake-quantized value.
  __device__ __forceinline__ float forward(float x, float s, float z, bool* inside) const {
    float q = __fadd_rn(round_q(__fdiv_rn(x, s)), z);
    *inside = q >= qmin && q <= qmax;
    q = q < qmin ? qmin : q;
    q = q > qmax ? qmax : q;
    return __fmul_rn(__fsub_rn(q, z), s);
  }
  __device__ __forceinline__ bool inside(float x, float s, float z) const {
    const float q = __fadd_rn(round_q(__fdiv_rn(x, s)), z);
    return q >= qmin && q <= qmax;
  }
};

/// Scale and zero point per channel from device memory, hoisted once per thread when the
/// op is per tensor.
template <bool PerChannel>
struct param_reader {
  const float* scale;
  const std::int32_t* zero;
  channel_of channel;
  float s0 = 1.0f, z0 = 0.0f;
  __device__ __forceinline__ void init() {
    if (!PerChannel) {
      s0 = scale[0];
      z0 = static_cast<float>(zero[0]);
    }
  }
  __device__ __forceinline__ void at(std::size_t offset, float* s, float* z) const {
    if (PerChannel) {
      const std::uint32_t c = channel(offset);
      *s = __ldg(scale + c);
      *z = static_cast<float>(__ldg(zero + c));
    } else {
      *s = s0;
      *z = z0;
    }
  }
};

/// Host values for the per-tensor forward.
struct host_param_reader {
  float s0, z0;
  __device__ __forceinline__ void init() {}
  __device__ __forceinline__ void at(std::size_t, float* s, float* z) const {
    *s = s0;
    *z = z0;
  }
};

// Elementwise functors: load(i) reads vector i (elements offset + i*V ...), store(i, item)
// computes and writes. `offset` lets the scalar instance finish the tail after the vectors.
template <class T, int V, class Params>
struct forward_fn {
  using item_type = vec<T, V>;
  const T* x;
  T* y;
  std::uint8_t* mask;
  Params params;
  fq_math math;
  std::size_t offset;
  __device__ item_type load(std::size_t i) const { return load_vec<V>(x + offset + i * V); }
  __device__ void store(std::size_t i, const item_type& it) const {
    const std::size_t e = offset + i * V;
    float s, z;
    params.at(e, &s, &z);  // vectors never straddle channels (inner % V == 0)
    vec<T, V> out;
    vec<std::uint8_t, V> m;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      bool in;
      out.v[k] = from_float<T>(math.forward(to_float(it.v[k]), s, z, &in));
      m.v[k] = in ? 1 : 0;
    }
    store_vec<V>(y + e, out);
    if (mask) store_vec<V>(mask + e, m);
  }
};

template <class T, int V>
struct masked_backward_fn {
  struct item_type {
    vec<T, V> dy;
    vec<std::uint8_t, V> m;
  };
  const T* dy;
  const std::uint8_t* mask;
  T* dx;
  std::size_t offset;
  __device__ item_type load(std::size_t i) const {
    return {load_vec<V>(dy + offset + i * V), load_vec<V>(mask + offset + i * V)};
  }
  __device__ void store(std::size_t i, const item_type& it) const {
    vec<T, V> out;
#pragma unroll
    for (int k = 0; k < V; ++k) out.v[k] = it.m.v[k] ? it.dy.v[k] : from_float<T>(0.0f);
    store_vec<V>(dx + offset + i * V, out);
  }
};

template <class T, int V, class Params>
struct backward_fn {
  struct item_type {
    vec<T, V> x, dy;
  };
  const T* x;
  const T* dy;
  T* dx;
  Params params;
  fq_math math;
  std::size_t offset;
  __device__ item_type load(std::size_t i) const {
    return {load_vec<V>(x + offset + i * V), load_vec<V>(dy + offset + i * V)};
  }
  __device__ void store(std::size_t i, const item_type& it) const {
    const std::size_t e = offset + i * V;
    float s, z;
    params.at(e, &s, &z);
    vec<T, V> out;
#pragma unroll
    for (int k = 0; k < V; ++k) out.v[k] = math.inside(to_float(it.x.v[k]), s, z) ? it.dy.v[k] : from_float<T>(0.0f);
    store_vec<V>(dx + e, out);
  }
};

/// Elementwise kernel: block b owns vectors [b * T * U, (b + 1) * T * U) (T threads,
/// U = elementwise_unroll), thread t the vectors b * T * U + u * T + t, so each thread has U
/// independent 16-byte loads in flight and each warp access is contiguous. The grid covers
/// the data once (no persistent grid: the block scheduler balances the tail); the loop only
/// runs again when the grid was capped.
template <class Fn>
__global__ void __launch_bounds__(elementwise_threads) elementwise_kernel(Fn fn, std::size_t nvec) {
  using item_t = typename Fn::item_type;
  fn.params_init();
  const std::size_t tile = static_cast<std::size_t>(blockDim.x) * elementwise_unroll;
  for (std::size_t base = static_cast<std::size_t>(blockIdx.x) * tile + threadIdx.x; base < nvec;
       base += static_cast<std::size_t>(gridDim.x) * tile) {
    item_t items[elementwise_unroll];
#pragma unroll
    for (int u = 0; u < elementwise_unroll; ++u)
      if (base + u * blockDim.x < nvec) items[u] = fn.load(base + u * blockDim.x);
#pragma unroll
    for (int u = 0; u < elementwise_unroll; ++u)
      if (base + u * blockDim.x < nvec) fn.store(base + u * blockDim.x, items[u]);
  }
}

/// Adds params_init() (a no-op for functors without parameters) so one kernel serves all.
template <class Base>
struct with_params : Base {
  __device__ void params_init() { this->params.init(); }
};
template <class Base>
struct without_params : Base {
  __device__ void params_init() {}
};

template <class Fn>
cudaError_t launch_elementwise(const Fn& fn, std::size_t nvec, cudaStream_t stream) {
  if (nvec == 0) return cudaSuccess;
  const std::size_t blocks = ceil_div(nvec, static_cast<std::size_t>(elementwise_threads) * elementwise_unroll);
  const std::size_t grid = blocks < static_cast<std::size_t>(INT_MAX) ? blocks : static_cast<std::size_t>(INT_MAX);
  elementwise_kernel<Fn><<<static_cast<unsigned>(grid), elementwise_threads, 0, stream>>>(fn, nvec);
  return launch_status();
}

/// Runs a functor over n elements: make_vec() covers n / V vectors of width V when `vec_ok`
/// (none otherwise), then make_scalar(offset) the remaining elements one by one.
template <class MakeVec, class MakeScalar>
cudaError_t run_elementwise(std::size_t n, int V, bool vec_ok, MakeVec make_vec, MakeScalar make_scalar,
                            cudaStream_t stream) {
  const std::size_t nvec = vec_ok ? n / static_cast<std::size_t>(V) : 0;
  const std::size_t done = nvec * static_cast<std::size_t>(V);
  QLIB_CUDA_RETURN_IF_ERROR(launch_elementwise(make_vec(), nvec, stream));
  return launch_elementwise(make_scalar(done), n - done, stream);
}

inline bool grid_ok(const quant_grid& g) { return g.qmin <= g.qmax; }
inline fq_math math_of(const quant_grid& g) { return {static_cast<float>(g.qmin), static_cast<float>(g.qmax), g.mode}; }

// `inner` is the per-channel layout's inner size, 0 per tensor: vectors are used when they
// cannot straddle two channels.
template <class T, class Params>
cudaError_t forward_dispatch(const T* x, T* y, std::uint8_t* mask, std::size_t n, std::size_t inner, Params params,
                             const quant_grid& g, cudaStream_t stream) {
  static_assert(is_storage<T>::value, "qlib::cuda fake-quant takes float or __half data");
  if (!grid_ok(g) || (n > 0 && (!x || !y))) return cudaErrorInvalidValue;
  constexpr int V = vec_width<T>::value;
  const bool vec_ok = inner % V == 0 && is_aligned(x, 16) && is_aligned(y, 16) && (!mask || is_aligned(mask, V));
  const fq_math math = math_of(g);
  return run_elementwise(
      n, V, vec_ok,
      [&] {
        return with_params<forward_fn<T, V, Params>>{{x, y, mask, params, math, 0}};
      },
      [&](std::size_t off) {
        return with_params<forward_fn<T, 1, Params>>{{x, y, mask, params, math, off}};
      },
      stream);
}

template <class T, class Params>
cudaError_t backward_dispatch(const T* x, const T* dy, T* dx, std::size_t n, std::size_t inner, Params params,
                              const quant_grid& g, cudaStream_t stream) {
  static_assert(is_storage<T>::value, "qlib::cuda fake-quant takes float or __half data");
  if (!grid_ok(g) || (n > 0 && (!x || !dy || !dx))) return cudaErrorInvalidValue;
  constexpr int V = vec_width<T>::value;
  const bool vec_ok = inner % V == 0 && is_aligned(x, 16) && is_aligned(dy, 16) && is_aligned(dx, 16);
  const fq_math math = math_of(g);
  return run_elementwise(
      n, V, vec_ok,
      [&] {
        return with_params<backward_fn<T, V, Params>>{{x, dy, dx, params, math, 0}};
      },
      [&](std::size_t off) {
        return with_params<backward_fn<T, 1, Params>>{{x, dy, dx, params, math, off}};
      },
      stream);
}

inline bool shape_ok(const channel_shape& s) { return s.channels > 0 && s.channels <= narrow_limit; }

template <bool PerChannel>
param_reader<PerChannel> reader_of(const device_qparams& p, const channel_shape& s) {
  param_reader<PerChannel> r{p.scale, p.zero_point, PerChannel ? channel_of(s) : channel_of()};
  return r;
}

// ---- LSQ: the Op of channel_reduce.cuh ---------------------------------------------------
struct lsq_acc {
  float ds, dz;
};

template <class T, int V>
struct lsq_op {
  static constexpr int width = V;
  using acc_type = lsq_acc;
  struct item_type {
    vec<T, V> x, dy;
  };
  const T* x;
  const T* dy;
  T* dx;
  const float* scale;
  const std::int32_t* zero;
  fq_math math;
  float grad_factor;
  float* grad_scale;
  float* grad_zero;

  __device__ acc_type identity() const { return {0.0f, 0.0f}; }
  __device__ item_type load(std::size_t off) const { return {load_vec<V>(x + off), load_vec<V>(dy + off)}; }
  __device__ void consume(acc_type& a, const item_type& it, std::size_t off, std::uint32_t c) const {
    const float s = __ldg(scale + c), z = static_cast<float>(__ldg(zero + c));
    const float low = __fsub_rn(math.qmin, z), high = __fsub_rn(math.qmax, z);
    vec<T, V> out;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float xv = to_float(it.x.v[k]), g = to_float(it.dy.v[k]);
      const float xs = __fdiv_rn(xv, s);
      const float r = math.round_q(xs);
      const float q = __fadd_rn(r, z);
      if (q >= math.qmin && q <= math.qmax) {
        out.v[k] = it.dy.v[k];
        a.ds += g * (r - xs);
      } else {  // below, above, or NaN (whose scale gradient stays NaN, as on the CPU)
        out.v[k] = from_float<T>(0.0f);
        a.ds += g * (q < math.qmin ? low : q > math.qmax ? high : q);
        a.dz -= g * s;
      }
    }
    store_vec<V>(dx + off, out);
  }
  __device__ void combine(acc_type& a, const acc_type& b) const {
    a.ds += b.ds;
    a.dz += b.dz;
  }
  __device__ void finish(std::size_t c, const acc_type& a) const {
    grad_scale[c] = grad_factor * a.ds;
    if (grad_zero) grad_zero[c] = grad_factor * a.dz;
  }
};

template <class T>
cudaError_t lsq_dispatch(void* d_temp, std::size_t& temp_bytes, const T* x, const T* dy, T* dx, const channel_shape& s,
                         const device_qparams& p, const quant_grid& g, float grad_factor, float* grad_scale,
                         float* grad_zero, cudaStream_t stream) {
  static_assert(is_storage<T>::value, "qlib::cuda LSQ takes float or __half data");
  if (!shape_ok(s) || !grid_ok(g)) return cudaErrorInvalidValue;
  if (d_temp != nullptr && (!p.scale || !p.zero_point || !grad_scale || (s.numel() > 0 && (!x || !dy || !dx))))
    return cudaErrorInvalidValue;
  constexpr int V = vec_width<T>::value;
  const fq_math math = math_of(g);
  const lsq_op<T, V> vop{x, dy, dx, p.scale, p.zero_point, math, grad_factor, grad_scale, grad_zero};
  const lsq_op<T, 1> sop{x, dy, dx, p.scale, p.zero_point, math, grad_factor, grad_scale, grad_zero};
  const bool vec_ok = is_aligned(x, 16) && is_aligned(dy, 16) && is_aligned(dx, 16);
  return run_channel_reduce(d_temp, temp_bytes, s, vop, sop, vec_ok, stream);
}

}  // namespace detail

// ---- forward --------------------------------------------------------------------------

/// y = fake_quantize(x) over n values with one scale / zero point in device memory;
/// mask (nullable) receives the straight-through mask. y may alias x.
template <class T>
cudaError_t fake_quantize(const T* d_x, T* d_y, std::uint8_t* d_mask, std::size_t n, device_qparams p, quant_grid g,
                          cudaStream_t stream = 0) {
  if (n > 0 && (!p.scale || !p.zero_point)) return cudaErrorInvalidValue;
  detail::param_reader<false> r{p.scale, p.zero_point, detail::channel_of()};
  return detail::forward_dispatch(d_x, d_y, d_mask, n, 0, r, g, stream);
}

/// The same with host values (checked: scale finite and > 0, zero point in the grid).
template <class T>
cudaError_t fake_quantize(const T* d_x, T* d_y, std::uint8_t* d_mask, std::size_t n, qparams<float> p, quant_grid g,
                          cudaStream_t stream = 0) {
  if (!(p.scale > 0.0f) || !std::isfinite(p.scale) || p.zero_point < g.qmin || p.zero_point > g.qmax)
    return cudaErrorInvalidValue;
  return detail::forward_dispatch(d_x, d_y, d_mask, n, 0,
                                  detail::host_param_reader{p.scale, static_cast<float>(p.zero_point)}, g, stream);
}

/// Per-channel forward over `shape` (outer, channels, inner); p holds shape.channels entries.
template <class T>
cudaError_t fake_quantize_per_channel(const T* d_x, T* d_y, std::uint8_t* d_mask, channel_shape shape, device_qparams p,
                                      quant_grid g, cudaStream_t stream = 0) {
  if (!detail::shape_ok(shape)) return cudaErrorInvalidValue;
  if (shape.numel() > 0 && (!p.scale || !p.zero_point)) return cudaErrorInvalidValue;
  return detail::forward_dispatch(d_x, d_y, d_mask, shape.numel(), shape.inner, detail::reader_of<true>(p, shape), g,
                                  stream);
}

// ---- straight-through backward ------------------------------------------------------------

/// dx = mask ? dy : 0 over n values (any layout). dx may alias dy.
template <class T>
cudaError_t fake_quantize_backward_masked(const T* d_dy, const std::uint8_t* d_mask, T* d_dx, std::size_t n,
                                          cudaStream_t stream = 0) {
  static_assert(detail::is_storage<T>::value, "qlib::cuda fake-quant takes float or __half data");
  if (n > 0 && (!d_dy || !d_mask || !d_dx)) return cudaErrorInvalidValue;
  constexpr int V = detail::vec_width<T>::value;
  const bool vec_ok = detail::is_aligned(d_dy, 16) && detail::is_aligned(d_dx, 16) && detail::is_aligned(d_mask, V);
  using vec_fn = detail::without_params<detail::masked_backward_fn<T, V>>;
  using one_fn = detail::without_params<detail::masked_backward_fn<T, 1>>;
  return detail::run_elementwise(
      n, V, vec_ok,
      [&] {
        return vec_fn{{d_dy, d_mask, d_dx, 0}};
      },
      [&](std::size_t off) {
        return one_fn{{d_dy, d_mask, d_dx, off}};
      },
      stream);
}

/// dx = dy where x was inside the grid, else 0 (the mask recomputed from x), per tensor.
template <class T>
cudaError_t fake_quantize_backward(const T* d_x, const T* d_dy, T* d_dx, std::size_t n, device_qparams p, quant_grid g,
                                   cudaStream_t stream = 0) {
  if (n > 0 && (!p.scale || !p.zero_point)) return cudaErrorInvalidValue;
  detail::param_reader<false> r{p.scale, p.zero_point, detail::channel_of()};
  return detail::backward_dispatch(d_x, d_dy, d_dx, n, 0, r, g, stream);
}

/// The same per channel over `shape`.
template <class T>
cudaError_t fake_quantize_backward_per_channel(const T* d_x, const T* d_dy, T* d_dx, channel_shape shape,
                                               device_qparams p, quant_grid g, cudaStream_t stream = 0) {
  if (!detail::shape_ok(shape)) return cudaErrorInvalidValue;
  if (shape.numel() > 0 && (!p.scale || !p.zero_point)) return cudaErrorInvalidValue;
  return detail::backward_dispatch(d_x, d_dy, d_dx, shape.numel(), shape.inner, detail::reader_of<true>(p, shape), g,
                                   stream);
}

// ---- LSQ ------------------------------------------------------------------------------

/// LSQ backward per tensor: dx, and grad_scale[0] / grad_zero_point[0] (nullable) in device
/// memory. One pass over x and dy; temporary storage holds per-block partial sums (a null
/// d_temp is a query).
template <class T>
cudaError_t lsq_backward(void* d_temp, std::size_t& temp_bytes, const T* d_x, const T* d_dy, T* d_dx, std::size_t n,
                         device_qparams p, quant_grid g, float grad_factor, float* d_grad_scale,
                         float* d_grad_zero_point = nullptr, cudaStream_t stream = 0) {
  channel_shape s;
  s.inner = n;
  return detail::lsq_dispatch(d_temp, temp_bytes, d_x, d_dy, d_dx, s, p, g, grad_factor, d_grad_scale,
                              d_grad_zero_point, stream);
}

/// LSQ backward per channel over `shape`: grad_scale[c] / grad_zero_point[c] (nullable).
template <class T>
cudaError_t lsq_backward_per_channel(void* d_temp, std::size_t& temp_bytes, const T* d_x, const T* d_dy, T* d_dx,
                                     channel_shape shape, device_qparams p, quant_grid g, float grad_factor,
                                     float* d_grad_scale, float* d_grad_zero_point = nullptr, cudaStream_t stream = 0) {
  return detail::lsq_dispatch(d_temp, temp_bytes, d_x, d_dy, d_dx, shape, p, g, grad_factor, d_grad_scale,
                              d_grad_zero_point, stream);
}

}  // namespace cuda
QLIB_NAMESPACE_END
