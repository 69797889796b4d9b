# qlib's CUDA kernels (include/qlib/cuda/*.cuh): tests, nvcc header checks and the GPU
# benchmark. Built only with -DQLIB_CUDA=ON (needs nvcc); include()d by tests/CMakeLists.txt.
#
# - cuda.host:        host-side helpers; runs everywhere.
# - cuda.histogram, cuda.minmax, cuda.fake_quant: device tests against CPU references;
#   without a CUDA device each prints "SKIPPED: no CUDA device" and exits 77, which ctest
#   reports as skipped (SKIP_RETURN_CODE).
# - cuda.gpu_bench_quick: bench/cuda/gpu_bench.cu --quick, a smoke run of every kernel path
#   (also skipped without a device). The full benchmark is the target qlib_gpu_bench.
# - qlib_cuda_header_checks: every .cuh alone, and <qlib/quant.hpp>, compiled by nvcc with
#   the host compiler's -Wall -Wextra and nvcc's -Werror all-warnings.
# The Catch2 implementation is compiled once by the host compiler (cuda_main.cpp); the test
# sources are .cu files compiled by nvcc (Catch2 2.13's header compiles under nvcc 13).
if(QLIB_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
  if(NOT CMAKE_CUDA_COMPILER)
    message(FATAL_ERROR "qlib: QLIB_CUDA is ON but no CUDA compiler was found "
                        "(set CMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc, or turn QLIB_CUDA off)")
  endif()
  # Architectures: SASS for sm_90 (H100/H200: no JIT there) and PTX for compute_75, the
  # oldest target CUDA 13 supports, which the driver compiles at load time on any other GPU
  # (Turing, Ampere, Ada, Blackwell). Two device passes per file keep the build short on
  # small machines; override with -DCMAKE_CUDA_ARCHITECTURES=... (e.g. "native").
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES "75-virtual;90-real" CACHE STRING "CUDA architectures for qlib's CUDA tests")
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)

  # The kernels promise bit-exact results: refuse flags that change float arithmetic.
  foreach(bad_flag "use_fast_math" "ftz=true" "prec-div=false" "prec_div=false")
    if(CMAKE_CUDA_FLAGS MATCHES "${bad_flag}" OR CMAKE_CUDA_FLAGS_RELEASE MATCHES "${bad_flag}")
      message(FATAL_ERROR "qlib: CMAKE_CUDA_FLAGS contain ${bad_flag}; the CUDA kernels must match the CPU bit for bit")
    endif()
  endforeach()

  # -Wpedantic cannot be used: nvcc's generated sources carry GNU line directives.
  set(QLIB_CUDA_WARNINGS -Xcompiler=-Wall,-Wextra -Werror=all-warnings)

  add_library(qlib_cuda_catch_main STATIC ${CMAKE_CURRENT_LIST_DIR}/cuda_main.cpp)
  target_link_libraries(qlib_cuda_catch_main PUBLIC Catch2::Catch2 qlib::qlib CUDA::cudart)
  target_include_directories(qlib_cuda_catch_main PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
  target_compile_options(qlib_cuda_catch_main PRIVATE ${QLIB_WARNINGS})

  function(qlib_cuda_target name)
    set_target_properties(${name} PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON CUDA_EXTENSIONS OFF
                                             CUDA_RUNTIME_LIBRARY Shared)
    target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${QLIB_CUDA_WARNINGS}>)
  endfunction()

  foreach(stem host histogram minmax fake_quant)
    set(target cuda_${stem}_test)
    add_executable(${target} ${CMAKE_CURRENT_LIST_DIR}/${stem}_test.cu)
    target_link_libraries(${target} PRIVATE qlib_cuda_catch_main)
    qlib_cuda_target(${target})
    add_test(NAME cuda.${stem} COMMAND ${target})
    set_tests_properties(cuda.${stem} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300
                                                 ENVIRONMENT "QLIB_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
  endforeach()

  # Every CUDA header on its own (twice: include guard), and the CPU umbrella under nvcc.
  file(GLOB_RECURSE qlib_cuda_headers RELATIVE ${PROJECT_SOURCE_DIR}/include CONFIGURE_DEPENDS
       ${PROJECT_SOURCE_DIR}/include/qlib/cuda/*.cuh)
  set(qlib_cuda_check_sources "")
  foreach(h ${qlib_cuda_headers} qlib/quant.hpp)
    string(MAKE_C_IDENTIFIER ${h} id)
    set(out ${CMAKE_CURRENT_BINARY_DIR}/cuda_header_checks/${id}.cu)
    file(CONFIGURE OUTPUT ${out} CONTENT "#include <${h}>\n#include <${h}>  // include guard\n")
    list(APPEND qlib_cuda_check_sources ${out})
  endforeach()
  add_library(qlib_cuda_header_checks OBJECT ${qlib_cuda_check_sources})
  target_link_libraries(qlib_cuda_header_checks PRIVATE qlib::qlib)
  qlib_cuda_target(qlib_cuda_header_checks)

  # The benchmark (bench/cuda/gpu_bench.cu): CUB ships with the toolkit, nothing else needed.
  add_executable(qlib_gpu_bench ${PROJECT_SOURCE_DIR}/bench/cuda/gpu_bench.cu)
  target_link_libraries(qlib_gpu_bench PRIVATE qlib::qlib)
  qlib_cuda_target(qlib_gpu_bench)
  add_test(NAME cuda.gpu_bench_quick COMMAND qlib_gpu_bench --quick)
  set_tests_properties(cuda.gpu_bench_quick PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120)

  # Everything above, to build a CUDA folder without the CPU suite:
  #   cmake --build build-cuda --target qlib_cuda_all && (cd build-cuda && ctest -R '^cuda\.')
  add_custom_target(qlib_cuda_all DEPENDS cuda_host_test cuda_histogram_test cuda_minmax_test cuda_fake_quant_test
                                          qlib_cuda_header_checks qlib_gpu_bench)
endif()
