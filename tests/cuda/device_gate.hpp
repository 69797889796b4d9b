// The "no CUDA device: skip" rule of the CUDA tests, shared by the Catch2 main
// (tests/cuda/cuda_main.cpp, compiled by the host compiler) and the standalone main
// (tests/cuda/cuda_test.hpp). ctest reads exit code 77 as "Skipped" (SKIP_RETURN_CODE).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdio>

namespace qlib_cuda_test {

constexpr int skip_return_code = 77;

/// -1 when the tests should run; otherwise the exit code (77: skipped). Prints why.
inline int gate(bool requires_device) {
  if (!requires_device) return -1;
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    std::printf("SKIPPED: no CUDA device (%s)\n", e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    return skip_return_code;
  }
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
    std::printf("CUDA device 0: %s, compute capability %d.%d, %d multiprocessors\n", prop.name, prop.major, prop.minor,
                prop.multiProcessorCount);
  return -1;
}

}  // namespace qlib_cuda_test
