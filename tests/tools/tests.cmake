# qlib-calibrate end to end: every method, every format, exit codes and messages.
if(TARGET qlib-calibrate)
  qlib_add_test(tools.qlib_calibrate_test ${CMAKE_CURRENT_LIST_DIR}/qlib_calibrate_test.cpp)
  target_compile_definitions(tools.qlib_calibrate_test PRIVATE
    QLIB_CALIBRATE_EXE="$<TARGET_FILE:qlib-calibrate>" QLIB_TEST_DATA="${PROJECT_SOURCE_DIR}/tests/data"
    QLIB_EXAMPLE_DATA="${PROJECT_SOURCE_DIR}/examples/data")
  add_dependencies(tools.qlib_calibrate_test qlib-calibrate)
endif()
