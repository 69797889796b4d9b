// One short use of each qlib observer: stream batches, compute the range and parameters.
// Copy the part you need. Build: part of qlib's examples (make build), or
//   g++ -std=c++17 -O2 -Iinclude examples/observers.cpp -o observers
#include <qlib/calibrator.hpp>  // the run-time facade, opted in
#include <qlib/quant.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace {
// Two batches of 4096 activations (a ReLU'd Gaussian with a few outliers), NCHW (4, 16, 8, 8).
std::vector<std::vector<float>> batches() {
  std::mt19937 gen(7);
  std::normal_distribution<float> normal(0.3f, 1.0f);
  std::vector<std::vector<float>> out(2, std::vector<float>(4 * 16 * 8 * 8));
  for (auto& b : out)
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = i % 997 == 0 ? 25.0f : std::fmax(0.0f, normal(gen));
  return out;
}

void print(const char* what, const qlib::calib_result<float>& r) {
  std::printf("%-34s range [%8.4f, %8.4f]  scale %.6g  zero point %d\n", what, static_cast<double>(r.clip_min[0]),
              static_cast<double>(r.clip_max[0]), static_cast<double>(r.scale[0]), r.zero_point[0]);
}

template <class Observer>
qlib::calib_result<float> run(Observer obs) {
  for (const auto& b : batches()) obs.update(qlib::view(b.data(), qlib::shape_t{4, 16, 8, 8}, "conv1.out"));
  return obs.compute();
}
}  // namespace

int main() {
  // MinMax, per tensor, TensorRT's symmetric int8 grid (scale = amax / 127).
  print("minmax (TensorRT int8)", run(qlib::minmax_observer<float>()));

  // MinMax per channel along axis 1 (C of NCHW), affine uint8 as PyTorch's quint8.
  qlib::minmax_options mm;
  mm.axis = 1;
  mm.spec = qlib::qspec::torch_quint8();
  const auto pc = run(qlib::minmax_observer<float>(mm));
  std::printf("%-34s %zu channels, channel 0 scale %.6g\n", "minmax per channel (quint8)", pc.channels(),
              static_cast<double>(pc.scale[0]));

  // Moving-average MinMax (PyTorch MovingAverageMinMaxObserver, c = 0.01).
  mm = {};
  mm.averaging_constant = 0.01;
  print("moving-average minmax", run(qlib::minmax_observer<float>(mm)));

  // Percentile of |x| on a 2048-bin histogram (modelopt's rule), 99.99%.
  qlib::percentile_options pct;
  pct.percentile = 99.99;
  print("percentile 99.99", run(qlib::percentile_observer<float>(pct)));

  // MSE search over the histogram (modelopt's _compute_amax_mse).
  print("mse", run(qlib::mse_observer<float>()));

  // KL / entropy: TensorRT as published (2048 bins, 128 levels), modelopt, ONNX Runtime.
  print("kl (TensorRT)", run(qlib::entropy_observer<float>(qlib::entropy_observer_options::tensorrt())));
  print("kl (modelopt)", run(qlib::entropy_observer<float>(qlib::entropy_observer_options::modelopt())));
  print("kl (ONNX Runtime)", run(qlib::entropy_observer<float>(qlib::entropy_observer_options::onnxruntime())));

  // Ascend AMCT: IFMR (exact, with offset) and HFMG (4096 bins, with offset).
  print("ifmr (AMCT, offset)", run(qlib::ifmr_observer<float>()));
  print("hfmg (AMCT, offset)", run(qlib::hfmg_observer<float>()));

  // ARQ for weights: per output channel (axis 0 of OIHW), symmetric int8, AMCT's rule.
  std::vector<float> w(16 * 8 * 3 * 3);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = 0.01f * static_cast<float>(static_cast<int>(i % 37) - 18);
  qlib::arq_observer<float> arq;
  arq.update(qlib::view(w.data(), qlib::shape_t{16, 8, 3, 3}, "conv1.weight"));
  std::printf("%-34s %zu channels, channel 0 scale %.6g\n", "arq (AMCT weights)", arq.compute().channels(),
              static_cast<double>(arq.compute().scale[0]));

  // Any observer by name at run time, with merge and serialized state (e.g. across processes).
  qlib::calibrator_options co;
  co.method = qlib::calib_method::kl;
  co.name = "conv1.out";
  qlib::calibrator a(co), b(co);
  const auto bs = batches();
  a.update(qlib::view(bs[0].data(), bs[0].size(), "conv1.out"));
  b.update(qlib::view(bs[1].data(), bs[1].size(), "conv1.out"));
  qlib::calibrator restored = qlib::calibrator::load(b.save());
  a.merge(restored);
  print("calibrator \"kl\", merged", a.compute());
  return 0;
}
