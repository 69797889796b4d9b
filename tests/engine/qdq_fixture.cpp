// Writes the tiny residual model (engine/onnx_builder.hpp), its thresholds and its two QDQ
// forms into a folder, for qdq_ort_check.py to run in ONNX Runtime:
//   fp32.onnx, qdq_float.onnx (float weights + Q/DQ), qdq_int8.onnx (int8 weights + DQ),
//   amax.txt ("<tensor> <amax>" per line).
#include <qlib/onnx.hpp>

#include <cstdio>
#include <string>

#include "engine/onnx_builder.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const qlib::amax_map amax = qlib_test::residual_model_amax();
  qlib_test::onnx_builder fp32 = qlib_test::residual_model();
  qlib::write_onnx_file(dir + "/fp32.onnx", fp32.model);
  for (int storage = 0; storage < 2; ++storage) {
    qlib_test::onnx_builder b = qlib_test::residual_model();
    qlib::qdq_options opt;
    opt.weights = storage ? qlib::qdq_weight_storage::int8 : qlib::qdq_weight_storage::float_qdq;
    qlib::quantize_qdq(b.model, amax, opt);
    qlib::write_onnx_file(dir + (storage ? "/qdq_int8.onnx" : "/qdq_float.onnx"), b.model);
  }
  std::FILE* f = std::fopen((dir + "/amax.txt").c_str(), "w");
  if (!f) return 1;
  for (const auto& kv : amax) std::fprintf(f, "%s %.9g\n", kv.first.c_str(), static_cast<double>(kv.second));
  std::fclose(f);
  return 0;
}
