// Catch2 main of the CUDA test executables (compiled once by the host compiler: Catch2's
// implementation never goes through nvcc). Without a CUDA device, an executable whose
// tests need one prints "SKIPPED: no CUDA device" and exits 77, which ctest reports as
// skipped (SKIP_RETURN_CODE in tests/cuda/tests.cmake).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "cuda/device_gate.hpp"

/// Defined by each test executable (tests/cuda/cuda_test.hpp).
bool qlib_cuda_test_requires_device();

int main(int argc, char** argv) {
  const int gate = qlib_cuda_test::gate(qlib_cuda_test_requires_device());
  if (gate >= 0) return gate;
  return Catch::Session().run(argc, argv);
}
