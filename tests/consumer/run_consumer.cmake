# Builds tests/consumer against qlib, as a user would: MODE=find_package installs qlib to
# a temporary prefix first; MODE=add_subdirectory points the consumer at the source tree.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(consumer_src ${QLIB_SOURCE_DIR}/tests/consumer)
function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGV}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()
if(MODE STREQUAL "find_package")
  run(${CMAKE_COMMAND} -S ${QLIB_SOURCE_DIR} -B ${WORK_DIR}/qlib-build -DCMAKE_CXX_COMPILER=${CXX}
      -DQLIB_BUILD_TESTS=OFF -DQLIB_BUILD_EXAMPLES=OFF -DQLIB_BUILD_TOOLS=OFF -DQLIB_BUILD_BENCH=OFF
      -DQLIB_MPI=OFF -DQLIB_INSTALL=ON -DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix)
  run(${CMAKE_COMMAND} --install ${WORK_DIR}/qlib-build)
  run(${CMAKE_COMMAND} -S ${consumer_src} -B ${WORK_DIR}/build -DCMAKE_CXX_COMPILER=${CXX}
      -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DQLIB_CONSUMER_MODE=find_package)
else()
  run(${CMAKE_COMMAND} -S ${consumer_src} -B ${WORK_DIR}/build -DCMAKE_CXX_COMPILER=${CXX}
      -DQLIB_CONSUMER_MODE=add_subdirectory -DQLIB_DIR_FOR_SUBDIRECTORY=${QLIB_SOURCE_DIR})
endif()
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer)
