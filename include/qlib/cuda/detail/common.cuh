// Shared plumbing of qlib's CUDA kernels: error propagation, element conversion, aligned
// vector loads, exact 32-bit division by a runtime constant, the per-channel index map and
// the launch geometry read off the current device. Internal: include qlib/cuda/*.cuh.
//
// Arithmetic conventions of every qlib CUDA kernel (stated once here):
// - values are computed in float; __half storage is converted on load (exactly) and
//   rounded to nearest even on store (__float2half_rn);
// - the operations that must match the CPU bit for bit use the IEEE round-to-nearest
//   intrinsics (__fdiv_rn, __fadd_rn, __fmul_rn), which neither -prec-div=false nor FMA
//   contraction may alter. Denormals must not be flushed: do not build with -ftz=true or
//   --use_fast_math (the tests include a denormal case that fails under FTZ).
#pragma once

#if !defined(__CUDACC__)
#error "qlib/cuda/*.cuh are CUDA headers: include them from a .cu file compiled by nvcc"
#endif

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "../../config.hpp"
#include "../../core/tensor_view.hpp"

/// Returns the cudaError_t of expr from the enclosing function when it is not cudaSuccess.
#define QLIB_CUDA_RETURN_IF_ERROR(expr)                       \
  do {                                                        \
    const cudaError_t qlib_cuda_err_ = (expr);                \
    if (qlib_cuda_err_ != cudaSuccess) return qlib_cuda_err_; \
  } while (0)

QLIB_NAMESPACE_BEGIN
namespace cuda {

/// A per-channel layout on the device: element (o, c, i) sits at flat offset
/// (o * channels + c) * inner + i (core/tensor_view.hpp's convention). Converts from the
/// core's channel_layout, so qlib::layout_along(shape, axis) can be passed directly.
/// Per-tensor operations use {1, 1, n}.
struct channel_shape {
  std::size_t outer = 1;
  std::size_t channels = 1;
  std::size_t inner = 1;

  channel_shape() = default;
  channel_shape(std::size_t outer_, std::size_t channels_, std::size_t inner_) noexcept
      : outer(outer_), channels(channels_), inner(inner_) {}
  channel_shape(const channel_layout& l) noexcept  // NOLINT(google-explicit-constructor)
      : outer(l.outer), channels(l.channels), inner(l.inner) {}
  std::size_t numel() const noexcept { return outer * channels * inner; }
};

namespace detail {

// ---- element conversion -------------------------------------------------------------
__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

template <class T>
struct from_float_t;
template <>
struct from_float_t<float> {
  __device__ __forceinline__ static float apply(float v) { return v; }
};
template <>
struct from_float_t<__half> {
  __device__ __forceinline__ static __half apply(float v) { return __float2half_rn(v); }
};
template <class T>
__device__ __forceinline__ T from_float(float v) {
  return from_float_t<T>::apply(v);
}

/// Storage types the kernels accept.
template <class T>
struct is_storage {
  static constexpr bool value = false;
};
template <>
struct is_storage<float> {
  static constexpr bool value = true;
};
template <>
struct is_storage<__half> {
  static constexpr bool value = true;
};

// ---- vectors ------------------------------------------------------------------------
/// Elements per 16-byte load: 4 floats, 8 halves.
template <class T>
struct vec_width {
  static constexpr int value = static_cast<int>(16 / sizeof(T));
};

/// V values loaded or stored as one access of V * sizeof(T) bytes (LDG.128 for 16 bytes).
template <class T, int V>
struct alignas(sizeof(T) * V) vec {
  T v[V];
};

template <int V, class T>
__device__ __forceinline__ vec<T, V> load_vec(const T* p) {
  return *reinterpret_cast<const vec<T, V>*>(p);
}
template <int V, class T>
__device__ __forceinline__ void store_vec(T* p, const vec<T, V>& x) {
  *reinterpret_cast<vec<T, V>*>(p) = x;
}

inline bool is_aligned(const void* p, std::size_t bytes) noexcept {
  return reinterpret_cast<std::uintptr_t>(p) % bytes == 0;
}

// ---- rounding -----------------------------------------------------------------------
/// Round half to even. On the device rintf() rounds to nearest even (the device has no
/// dynamic rounding mode; CUDA Math API: "halfway cases rounded to nearest even"), one
/// instruction instead of core/qparams.hpp's floor + fmod. On the host rintf() follows the
/// current rounding mode, round-to-nearest-even by default. tests/cuda/host_test.cu checks
/// that this equals qlib::round_half_even on every float class (all ties up to 2^23, their
/// neighbours, random patterns; every one of the 2^32 patterns with QLIB_EXHAUSTIVE=1) and
/// the device tests compare the kernels with qlib::fake_quantize_value bit for bit.
QLIB_HOST_DEVICE __forceinline__ float rint_even(float v) { return rintf(v); }

// ---- exact division by a runtime constant ---------------------------------------------
/// floor(n / d) and n % d for 0 <= n < 2^31 and 1 <= d < 2^31 with one 64-bit multiply and
/// a shift (Granlund and Montgomery, "Division by invariant integers using multiplication",
/// PLDI 1994, theorem 4.2 with N = 31: l = ceil(log2 d), m = ceil(2^(31+l) / d), then
/// floor(n / d) = floor(m * n / 2^(31+l)); m <= 2^32 so m * n < 2^63).
struct fast_divmod {
  std::uint32_t divisor = 1;
  std::uint64_t multiplier = std::uint64_t{1} << 31;
  std::uint32_t shift = 31;

  fast_divmod() = default;
  explicit fast_divmod(std::uint32_t d) : divisor(d) {
    std::uint32_t l = 0;
    while ((std::uint64_t{1} << l) < d) ++l;
    shift = 31 + l;
    const std::uint64_t p = std::uint64_t{1} << shift;
    multiplier = (p + d - 1) / d;
  }
  QLIB_HOST_DEVICE __forceinline__ std::uint32_t div(std::uint32_t n) const {
    return static_cast<std::uint32_t>((static_cast<std::uint64_t>(n) * multiplier) >> shift);
  }
  QLIB_HOST_DEVICE __forceinline__ std::uint32_t mod(std::uint32_t n) const { return n - div(n) * divisor; }
};

/// Largest index the 32-bit fast paths take.
constexpr std::size_t narrow_limit = (std::size_t{1} << 31) - 1;

/// The channel of a flat offset: (offset / inner) % channels, with fast_divmod when the
/// tensor has fewer than 2^31 elements and plain 64-bit division otherwise.
struct channel_of {
  fast_divmod inner_div, channels_div;
  std::size_t inner = 1, channels = 1;
  bool narrow = true;

  channel_of() = default;
  explicit channel_of(const channel_shape& s)
      : inner(s.inner), channels(s.channels), narrow(s.numel() <= narrow_limit) {
    if (narrow) {
      inner_div = fast_divmod(static_cast<std::uint32_t>(s.inner));
      channels_div = fast_divmod(static_cast<std::uint32_t>(s.channels));
    }
  }
  __device__ __forceinline__ std::uint32_t operator()(std::size_t offset) const {
    if (narrow) return channels_div.mod(inner_div.div(static_cast<std::uint32_t>(offset)));
    return static_cast<std::uint32_t>((offset / inner) % channels);
  }
};

// ---- launch geometry ----------------------------------------------------------------
/// What the kernels size their grids from: read off the current device.
struct device_limits {
  int sms = 0;                   ///< multiprocessors
  int smem_per_block_optin = 0;  ///< shared memory a block may opt into, bytes
};

inline cudaError_t current_device_limits(device_limits* out) {
  int dev = 0;
  QLIB_CUDA_RETURN_IF_ERROR(cudaGetDevice(&dev));
  QLIB_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&out->sms, cudaDevAttrMultiProcessorCount, dev));
  QLIB_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&out->smem_per_block_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  return cudaSuccess;
}

inline std::size_t ceil_div(std::size_t a, std::size_t b) noexcept { return (a + b - 1) / b; }

/// Rounds p up to a multiple of `align` (a power of two).
inline void* align_up(void* p, std::size_t align) noexcept {
  const std::uintptr_t v = reinterpret_cast<std::uintptr_t>(p);
  return reinterpret_cast<void*>((v + align - 1) & ~static_cast<std::uintptr_t>(align - 1));
}

/// The launch's own error (a bad configuration), without waiting for the kernel.
inline cudaError_t launch_status() { return cudaGetLastError(); }

}  // namespace detail
}  // namespace cuda
QLIB_NAMESPACE_END
