# Integer deployment check in XNNPACK (issue 11): the QAT demo's converted int8 digits CNN
# (examples/qat/digits_cnn.hpp) runs in XNNPACK's int8 operators and is compared with qlib's
# integer reference kernels and fake-quant simulation. Opt-in: needs XNNPACK (Debian:
# libxnnpack-dev; its xnnpack.h includes pthreadpool.h from libpthreadpool-dev) and Eigen3
# (libeigen3-dev) for the demo's float training.
find_path(QLIB_XNNPACK_INCLUDE_DIR xnnpack.h)
find_path(QLIB_PTHREADPOOL_INCLUDE_DIR pthreadpool.h)
find_library(QLIB_XNNPACK_LIBRARY NAMES XNNPACK xnnpack)
find_library(QLIB_PTHREADPOOL_LIBRARY NAMES pthreadpool)
find_package(Eigen3 3.3 CONFIG QUIET)
if(QLIB_XNNPACK_INCLUDE_DIR AND QLIB_PTHREADPOOL_INCLUDE_DIR AND QLIB_XNNPACK_LIBRARY AND TARGET Eigen3::Eigen)
  add_executable(xnnpack_digits ${CMAKE_CURRENT_LIST_DIR}/xnnpack_digits.cpp)
  # Debian's libXNNPACK.so records its own needs (cpuinfo, pthreadpool); pthreadpool is
  # linked as well where its library is found, for static or older builds.
  target_link_libraries(xnnpack_digits PRIVATE qlib::qlib Eigen3::Eigen ${QLIB_XNNPACK_LIBRARY})
  if(QLIB_PTHREADPOOL_LIBRARY)
    target_link_libraries(xnnpack_digits PRIVATE ${QLIB_PTHREADPOOL_LIBRARY})
  endif()
  target_include_directories(xnnpack_digits PRIVATE ${PROJECT_SOURCE_DIR}/examples)
  target_include_directories(xnnpack_digits SYSTEM PRIVATE ${QLIB_XNNPACK_INCLUDE_DIR} ${QLIB_PTHREADPOOL_INCLUDE_DIR})
  target_compile_options(xnnpack_digits PRIVATE ${QLIB_WARNINGS})
  target_compile_definitions(xnnpack_digits PRIVATE QLIB_DIGITS_DIR="${PROJECT_SOURCE_DIR}/examples/data/digits")
  add_test(NAME engine.xnnpack_digits COMMAND xnnpack_digits ${PROJECT_SOURCE_DIR}/examples/data/digits)
  set_tests_properties(engine.xnnpack_digits PROPERTIES TIMEOUT 300)
else()
  message(STATUS "qlib: XNNPACK (libxnnpack-dev, libpthreadpool-dev) or Eigen3 not found; engine.xnnpack_digits is not built")
endif()
