# Engine tests (issue 11): the ONNX QDQ writer (qlib/onnx.hpp) and its check in ONNX
# Runtime, and the OpenCV DNN calibration example on a real model. Built where the
# packages are (Debian: libonnx-dev libprotobuf-dev for the writer, libopencv-dev for the
# example). The Python steps use build/engine-venv and build/engine-data, made by
# scripts/setup_engine_data.sh; without them those tests report "skipped" (exit code 77).
set(QLIB_ENGINE_VENV "${PROJECT_BINARY_DIR}/engine-venv" CACHE PATH "Python venv with onnxruntime for the engine tests")
set(QLIB_ENGINE_DATA "${PROJECT_BINARY_DIR}/engine-data" CACHE PATH "Model and images for the engine tests")

find_package(Protobuf QUIET)
if(Protobuf_FOUND)
  find_package(ONNX CONFIG QUIET)
endif()
if(Protobuf_FOUND AND ONNX_FOUND AND TARGET onnx_proto)
  qlib_add_test(engine.onnx_qdq_test ${CMAKE_CURRENT_LIST_DIR}/onnx_qdq_test.cpp LIBS onnx_proto protobuf::libprotobuf)
  # The adapter header alone, strict warnings, with and without exceptions.
  foreach(flags "" "-fno-exceptions")
    string(MAKE_C_IDENTIFIER "onnx${flags}" id)
    set(src ${CMAKE_CURRENT_BINARY_DIR}/header_checks/engine_${id}.cpp)
    file(CONFIGURE OUTPUT ${src} CONTENT "#include <qlib/onnx.hpp>\n#include <qlib/onnx.hpp>  // include guard\n")
    add_library(qlib_header_check_${id} OBJECT ${src})
    target_link_libraries(qlib_header_check_${id} PRIVATE qlib::qlib onnx_proto protobuf::libprotobuf)
    target_compile_options(qlib_header_check_${id} PRIVATE ${QLIB_WARNINGS} ${flags})
  endforeach()
  # The QDQ models of the tiny residual model, run in ONNX Runtime against a numpy
  # simulation of the same quantization.
  add_executable(engine_qdq_fixture ${CMAKE_CURRENT_LIST_DIR}/qdq_fixture.cpp)
  target_link_libraries(engine_qdq_fixture PRIVATE qlib::qlib onnx_proto protobuf::libprotobuf)
  target_include_directories(engine_qdq_fixture PRIVATE ${CMAKE_CURRENT_LIST_DIR}/..)
  target_compile_options(engine_qdq_fixture PRIVATE ${QLIB_WARNINGS})
  add_test(NAME engine.qdq_ort_check
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/run_python_check.sh ${QLIB_ENGINE_VENV}
            ${CMAKE_CURRENT_LIST_DIR}/qdq_ort_check.py $<TARGET_FILE:engine_qdq_fixture>
            ${CMAKE_CURRENT_BINARY_DIR}/qdq_ort_check)
  set_tests_properties(engine.qdq_ort_check PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
else()
  message(STATUS "qlib: ONNX or protobuf not found; the ONNX QDQ writer tests are not built")
endif()
