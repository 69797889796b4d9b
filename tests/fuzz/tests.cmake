# libFuzzer targets for every qlib parser (included from tests/CMakeLists.txt).
#
#   cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DQLIB_FUZZ=ON [-DQLIB_FUZZ_SECONDS=30]
#   cmake --build build-fuzz --target fuzz_npy && ctest --test-dir build-fuzz -R '^fuzz\.'
#
# Each target is built with -fsanitize=fuzzer,address,undefined and registered as the
# ctest fuzz.<name>, which runs it for QLIB_FUZZ_SECONDS seconds from the seed corpus in
# tests/fuzz/corpus/<name>/ (read only; new inputs go to the build folder). A crash, a
# sanitizer report or a broken round-trip property fails the test and leaves the input
# as crash-* in the build folder's fuzz/<name>/ folder: turn it into a regression test in tests/io/.
option(QLIB_FUZZ "Build the libFuzzer targets and register bounded fuzz runs as tests (Clang only)" OFF)
set(QLIB_FUZZ_SECONDS 30 CACHE STRING "Seconds each fuzz.<name> test runs")

if(NOT QLIB_FUZZ)
  return()
endif()
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(WARNING "QLIB_FUZZ needs Clang's libFuzzer; ${CMAKE_CXX_COMPILER_ID} builds no fuzz targets")
  return()
endif()

set(QLIB_FUZZ_TARGETS npy trt_cache amct_record amct_config ncnn_table results_json observer_state)
foreach(name ${QLIB_FUZZ_TARGETS})
  add_executable(fuzz_${name} ${CMAKE_CURRENT_LIST_DIR}/fuzz_${name}.cpp)
  target_link_libraries(fuzz_${name} PRIVATE qlib::qlib)
  target_compile_options(fuzz_${name} PRIVATE ${QLIB_WARNINGS} -g -O1 -fno-omit-frame-pointer
                         -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
  target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  set(work ${CMAKE_CURRENT_BINARY_DIR}/fuzz/${name})
  file(MAKE_DIRECTORY ${work}/corpus)
  add_test(NAME fuzz.${name}
    COMMAND fuzz_${name} -seed=1 -max_total_time=${QLIB_FUZZ_SECONDS} -timeout=10 -rss_limit_mb=2048
            -max_len=65536 -print_final_stats=1 -artifact_prefix=${work}/
            ${work}/corpus ${CMAKE_CURRENT_LIST_DIR}/corpus/${name}
    WORKING_DIRECTORY ${work})
  math(EXPR fuzz_timeout "${QLIB_FUZZ_SECONDS} + 120")
  set_tests_properties(fuzz.${name} PROPERTIES TIMEOUT ${fuzz_timeout} LABELS fuzz)
endforeach()
