// qat_digits: PyTorch's eager-mode QAT workflow (fuse Conv+BN+ReLU, quantize at the graph's
// edges, quantized add and cat, prepare_qat, train, convert) written out in plain C++ with
// qlib, on the 1,797 real 8x8 digit scans of examples/data/digits/.
//
//   x -> [conv1 3x3 -> BN -> ReLU] = a1 -> [conv2 3x3 -> BN -> ReLU] = a2
//        add(a1, a2) = s;  cat(s, a1) = c (16 channels);  flatten -> linear -> 10 logits
//
// Paths, all from the same FP32 network, printed as one table:
//   FP32       trained here (Adam; backward written out in examples/qat/layers.hpp).
//   PTQ int8   BN folded (qlib::fold_batch_norm), weights per channel (qlib::arq_observer),
//              activations calibrated on training batches with each observer qlib has
//              (minmax, entropy, percentile, mse, ifmr, hfmg); fake-quant simulation.
//   QAT int8   fake-quant with the straight-through estimator: weights per channel (min/max
//              recomputed every step), activations on moving-average min/max; BN folded the
//              way PyTorch's _ConvBnNd does it (qlib::qat_scale_factor, scale_weight,
//              unscale_output); training continues from the FP32 weights.
//   QAT 4-bit  weights and inner activations on 4-bit grids with learned scales (LSQ,
//              qlib::lsq_backward); the graph's edges (input, logits) stay 8-bit.
//   integer    each QAT model converted (qlib::convert_layer: int8 weights, int32 bias,
//              fixed-point multipliers) and run with qlib's integer kernels (conv2d, add,
//              cat, linear); agreement = same class as the fake-quant simulation.
//
// Usage: qat_digits [data_dir [seed]]   (defaults: the source tree's examples/data/digits, 20240531)
// Exit status 0 when every target is met, 1 otherwise (the reason is printed).
// Deterministic: a fixed seed, a generator written out (examples/qat/digits.hpp), one thread.
// The network, training, folding, simulation and convert are in examples/qat/digits_cnn.hpp
// (shared with the XNNPACK deployment check, tests/engine_xnnpack/).
#include <chrono>
#include <cstdio>
#include <exception>
#include <qlib/observer/entropy.hpp>
#include <qlib/observer/hfmg.hpp>
#include <qlib/observer/ifmr.hpp>
#include <qlib/observer/minmax.hpp>
#include <qlib/observer/mse.hpp>
#include <qlib/observer/percentile.hpp>
#include <string>
#include <vector>

#include "qat/digits.hpp"
#include "qat/digits_cnn.hpp"

#ifndef QLIB_DIGITS_DIR
#define QLIB_DIGITS_DIR "examples/data/digits"
#endif

namespace {

// ---- The table -------------------------------------------------------------------------------

struct row {
  std::string path, detail;
  double acc;
  double agree = -1.0;  // integer rows: same class as the fake-quant simulation, %
};

}  // namespace

int main(int argc, char** argv) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string dir = argc > 1 ? argv[1] : QLIB_DIGITS_DIR;
  qat::digits_split data;
  try {
    data = qat::load_digits(dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qat_digits: %s\n", e.what());
    return 2;
  }
  const std::vector<int>& labels = data.test.labels;
  std::printf("qat_digits: %zu training and %zu test images from %s\n", data.train.size(), data.test.size(),
              dir.c_str());
  std::vector<row> rows;
  qat::rng r(argc > 2 ? std::stoull(argv[2]) : 20240531ull);

  // 1. FP32 training.
  const qat::model fp32 = qat::train_fp32(data.train, r);
  const double fp32_acc = qat::accuracy(qat::predict_float(fp32, data.test.images), labels);
  rows.push_back({"FP32", "float, BN in eval mode", fp32_acc});

  // 2. PTQ int8: fold BN, calibrate with each observer, simulate.
  const qat::folded_model folded = qat::fold(fp32);
  double best_ptq = -1.0;
  std::string best_ptq_name;
  const auto ptq_row = [&](const char* name, const char* detail, const qat::sim_params& s) {
    const double acc = qat::accuracy(qat::predict_sim(folded, s, data.test.images), labels);
    rows.push_back({std::string("PTQ int8 ") + name, detail, acc});
    if (acc > best_ptq) best_ptq = acc, best_ptq_name = name;
  };
  ptq_row("minmax", "affine",
          qat::calibrate<qlib::minmax_observer<float>>(folded, data.train, [](const char* name, bool) {
            return qlib::minmax_options{qat::activation_spec(8), std::nullopt, 0.0, name};
          }));
  ptq_row("entropy", "TensorRT KL, symmetric",
          qat::calibrate<qlib::entropy_observer<float>>(folded, data.train, [](const char* name, bool nn) {
            qlib::entropy_observer_options o = qlib::entropy_observer_options::tensorrt(qat::symmetric_spec(nn));
            o.name = name;
            return o;
          }));
  ptq_row("percentile", "99.99%, symmetric",
          qat::calibrate<qlib::percentile_observer<float>>(folded, data.train, [](const char* name, bool nn) {
            qlib::percentile_options o;
            o.spec = qat::symmetric_spec(nn);
            o.percentile = 99.99;
            o.name = name;
            return o;
          }));
  ptq_row("mse", "symmetric",
          qat::calibrate<qlib::mse_observer<float>>(folded, data.train, [](const char* name, bool nn) {
            qlib::mse_options o;
            o.spec = qat::symmetric_spec(nn);
            o.name = name;
            return o;
          }));
  ptq_row("ifmr", "AMCT, with offset",
          qat::calibrate<qlib::ifmr_observer<float>>(folded, data.train, [](const char* name, bool) {
            qlib::ifmr_options o;
            o.name = name;
            return o;
          }));
  ptq_row("hfmg", "AMCT, with offset",
          qat::calibrate<qlib::hfmg_observer<float>>(folded, data.train, [](const char* name, bool) {
            qlib::hfmg_options o;
            o.name = name;
            return o;
          }));

  // 3. QAT int8 with the straight-through estimator, from the FP32 weights.
  const qat::qat_result q8 = qat::train_qat_int8(fp32, data.train, r);
  const std::vector<int> sim8 = qat::predict_sim(q8.folded, q8.grids, data.test.images);
  const std::vector<int> int8 = qat::predict_int(q8.converted, data.test.images);
  rows.push_back({"QAT int8", "STE, BN folded; fake-quant", qat::accuracy(sim8, labels)});
  const double agree8 = qat::agreement(int8, sim8);
  rows.push_back({"QAT int8 integer", "convert + int kernels", qat::accuracy(int8, labels), agree8});

  // 4. QAT 4-bit weights and activations with LSQ (edges at 8 bits), from the FP32 weights.
  const qat::qat_result q4 = qat::train_qat_lsq4(fp32, folded, data.train, r);
  const std::vector<int> sim4 = qat::predict_sim(q4.folded, q4.grids, data.test.images);
  const std::vector<int> int4 = qat::predict_int(q4.converted, data.test.images);
  const double qat4_acc = qat::accuracy(sim4, labels);
  rows.push_back({"QAT 4-bit W+A", "LSQ, edges int8; fake-quant", qat4_acc});
  const double agree4 = qat::agreement(int4, sim4);
  rows.push_back({"QAT 4-bit integer", "convert + int kernels", qat::accuracy(int4, labels), agree4});

  // 5. The table and the targets.
  std::printf("\n| %-20s | %-29s | %8s | %8s | %16s |\n", "path", "how", "test acc", "vs FP32", "int = fake-quant");
  std::printf("|%s|%s|%s|%s|%s|\n", std::string(22, '-').c_str(), std::string(31, '-').c_str(),
              std::string(10, '-').c_str(), std::string(10, '-').c_str(), std::string(18, '-').c_str());
  for (const row& rw : rows) {
    char agree[32] = "";
    if (rw.agree >= 0.0) std::snprintf(agree, sizeof agree, "%.2f%%", rw.agree);
    std::printf("| %-20s | %-29s | %7.2f%% | %+8.2f | %16s |\n", rw.path.c_str(), rw.detail.c_str(), rw.acc,
                rw.acc - fp32_acc, agree);
  }
  std::printf(
      "\nPTQ weights: ARQ, int8 per channel; QAT weights: per channel (int8: min/max, 4-bit: LSQ).\n"
      "int = fake-quant: same class from integer inference and from the fake-quant simulation.\n"
      "%zu test images: one image is %.3f points.\n",
      labels.size(), 100.0 / static_cast<double>(labels.size()));

  bool ok = true;
  const auto target = [&](bool met, const std::string& what) {
    std::printf("target %-62s %s\n", what.c_str(), met ? "met" : "MISSED");
    ok = ok && met;
  };
  char buf[160];
  std::snprintf(buf, sizeof buf, "PTQ int8, best observer (%s) <= 0.5 points below FP32:", best_ptq_name.c_str());
  target(best_ptq >= fp32_acc - 0.5, buf);
  target(qat4_acc >= fp32_acc - 1.5, "QAT 4-bit W+A <= 1.5 points below FP32:");
  target(agree8 >= 99.5, "int8 integer inference = fake-quant on >= 99.5% of images:");
  target(agree4 >= 99.5, "4-bit integer inference = fake-quant on >= 99.5% of images:");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "qat_digits: %.1f s\n", seconds);  // stderr: stdout stays identical run to run
  if (!ok) std::printf("qat_digits: a target was missed (see above)\n");
  return ok ? 0 : 1;
}
