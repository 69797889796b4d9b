// Shared by the CUDA tests (tests/cuda/*_test.cu): the test framework (Catch2 under CMake;
// mini_check.hpp when scripts/gpu_check.sh builds them with nvcc alone, with
// -DQLIB_CUDA_TEST_STANDALONE), the "no device: skip" gate, device buffers and bit
// comparisons. Include it from exactly one .cu per executable, after
// QLIB_CUDA_TEST_REQUIRES_DEVICE(...) is decided:
//   #define QLIB_CUDA_TEST_REQUIRES_DEVICE 1   // 0 for tests that run on the host only
//   #include "cuda/cuda_test.hpp"
#pragma once

#ifndef QLIB_CUDA_TEST_REQUIRES_DEVICE
#error "define QLIB_CUDA_TEST_REQUIRES_DEVICE (0 or 1) before including cuda/cuda_test.hpp"
#endif

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#ifdef QLIB_CUDA_TEST_STANDALONE
#include "cuda/mini_check.hpp"
#else
#include <catch2/catch.hpp>
#endif

#include "cuda/device_gate.hpp"
#include "test_data.hpp"

/// What the main() of this executable asks of the machine (see device_gate.hpp).
bool qlib_cuda_test_requires_device() { return QLIB_CUDA_TEST_REQUIRES_DEVICE != 0; }

#ifdef QLIB_CUDA_TEST_STANDALONE
int main() {
  const int gate = qlib_cuda_test::gate(qlib_cuda_test_requires_device());
  if (gate >= 0) return gate;
  return mini_check::run_all();
}
#endif

/// REQUIRE that a CUDA call succeeded, naming the error.
#define CUDA_REQUIRE(...)                                                                   \
  do {                                                                                      \
    const cudaError_t cuda_require_err_ = (__VA_ARGS__);                                    \
    INFO("CUDA error: " << cudaGetErrorString(cuda_require_err_) << " from " #__VA_ARGS__); \
    REQUIRE(cuda_require_err_ == cudaSuccess);                                              \
  } while (0)

namespace qlib_cuda_test {

/// Device memory for n values of T, optionally starting `skew` elements past a 256-byte
/// boundary (to exercise the unaligned paths).
template <class T>
class device_buffer {
 public:
  explicit device_buffer(std::size_t n, std::size_t skew = 0) : n_(n), skew_(skew) {
    CUDA_REQUIRE(cudaMalloc(&base_, (n + skew + 1) * sizeof(T)));
  }
  ~device_buffer() { cudaFree(base_); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;

  T* data() const { return base_ + skew_; }
  std::size_t size() const { return n_; }
  void upload(const std::vector<T>& v) {
    REQUIRE(v.size() == n_);
    CUDA_REQUIRE(cudaMemcpy(data(), v.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> v(n_);
    CUDA_REQUIRE(cudaMemcpy(v.data(), data(), n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
  void fill_bytes(int byte) { CUDA_REQUIRE(cudaMemset(base_, byte, (n_ + skew_ + 1) * sizeof(T))); }

 private:
  T* base_ = nullptr;
  std::size_t n_, skew_;
};

/// Temporary storage sized by a query.
class temp_storage {
 public:
  explicit temp_storage(std::size_t bytes) : bytes_(bytes) { CUDA_REQUIRE(cudaMalloc(&p_, bytes ? bytes : 1)); }
  ~temp_storage() { cudaFree(p_); }
  temp_storage(const temp_storage&) = delete;
  temp_storage& operator=(const temp_storage&) = delete;
  void* data() const { return p_; }
  std::size_t& bytes() { return bytes_; }

 private:
  void* p_ = nullptr;
  std::size_t bytes_;
};

inline std::uint32_t bits(float v) {
  std::uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}
inline std::uint16_t bits(__half v) {
  std::uint16_t u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}
inline float to_float(float v) { return v; }
inline float to_float(__half v) { return __half2float(v); }

/// Same bits, or both NaN (device arithmetic returns the canonical NaN, the CPU keeps the
/// input's payload).
template <class T>
bool same_value(T a, T b) {
  const float fa = to_float(a), fb = to_float(b);
  if (fa != fa && fb != fb) return true;
  return bits(a) == bits(b);
}

/// Index of the first element where same_value fails, or -1.
template <class T>
long long first_mismatch(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!same_value(a[i], b[i])) return static_cast<long long>(i);
  return -1;
}

/// A float stored as T (round to nearest even for __half).
template <class T>
T to_storage(float v);
template <>
inline float to_storage<float>(float v) {
  return v;
}
template <>
inline __half to_storage<__half>(float v) {
  return __float2half_rn(v);
}

template <class T>
std::vector<T> convert(const std::vector<float>& v);
template <>
inline std::vector<float> convert<float>(const std::vector<float>& v) {
  return v;
}
template <>
inline std::vector<__half> convert<__half>(const std::vector<float>& v) {
  std::vector<__half> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = __float2half_rn(v[i]);
  return out;
}

inline const char* type_name(float) { return "float"; }
inline const char* type_name(__half) { return "half"; }

}  // namespace qlib_cuda_test
