# io tests that need more than Catch2 (included from tests/CMakeLists.txt; the *_test.cpp
# files of this folder are registered there).
#
# io.npy_numpy_check: numpy loads the .npy files qlib writes and writes the same bytes for
# the same arrays. Registered when a Python 3 with numpy is found at configure time
# (-DPython3_EXECUTABLE=... picks one); skipped silently otherwise.
find_package(Python3 COMPONENTS Interpreter QUIET)
if(Python3_Interpreter_FOUND)
  execute_process(COMMAND ${Python3_EXECUTABLE} -c "import numpy"
                  RESULT_VARIABLE qlib_numpy_missing OUTPUT_QUIET ERROR_QUIET)
  if(qlib_numpy_missing EQUAL 0)
    add_executable(io_npy_numpy_writer ${CMAKE_CURRENT_LIST_DIR}/npy_numpy_writer.cpp)
    target_link_libraries(io_npy_numpy_writer PRIVATE qlib::qlib)
    target_compile_options(io_npy_numpy_writer PRIVATE ${QLIB_WARNINGS})
    add_test(NAME io.npy_numpy_check
             COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/npy_numpy_check.py
                     $<TARGET_FILE:io_npy_numpy_writer> ${CMAKE_CURRENT_BINARY_DIR}/npy_numpy_check)
  else()
    message(STATUS "qlib: numpy not importable by ${Python3_EXECUTABLE}; io.npy_numpy_check skipped")
  endif()
endif()
