// torch_qat: quantization-aware training of a small libtorch model with qlib's fake-quant
// (qlib/torch.hpp) on the digits data (examples/data/digits/).
//
//   x (64 pixels) -> int8 fake-quant (STE) -> Linear 64->32 with 4-bit per-channel weights
//   (LSQ: learned scales) -> ReLU -> 4-bit activation fake-quant (LSQ: learned scale and
//   zero point) -> Linear 32->10 with int8 per-channel weights (STE, grid from qlib's
//   min/max observer every step) -> logits
//
// Prints the training loss as it decreases and the test accuracy; exits 1 if the loss did
// not decrease. Usage: torch_qat [data_dir]
#include <torch/torch.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <qlib/observer/minmax.hpp>
#include <qlib/torch.hpp>
#include <sstream>
#include <string>
#include <vector>

#ifndef QLIB_DIGITS_DIR
#define QLIB_DIGITS_DIR "examples/data/digits"
#endif

namespace {

namespace lt = qlib::libtorch;

struct split_data {
  torch::Tensor x_train, y_train, x_test, y_test;
};

/// digits.csv (64 pixels 0..16 and a label per line) split by split.csv (0 train, 1 test).
split_data load(const std::string& dir) {
  std::ifstream data(dir + "/digits.csv"), split(dir + "/split.csv");
  if (!data || !split) throw std::runtime_error("cannot read " + dir + "/digits.csv and split.csv");
  std::vector<float> px[2];
  std::vector<std::int64_t> lab[2];
  std::string line, flag;
  while (std::getline(data, line) && std::getline(split, flag)) {
    const int part = flag == "1" ? 1 : 0;
    std::stringstream ss(line);
    std::string cell;
    std::vector<int> v;
    while (std::getline(ss, cell, ',')) v.push_back(std::stoi(cell));
    if (v.size() != 65) throw std::runtime_error("digits.csv: a line without 65 values");
    for (int i = 0; i < 64; ++i) px[part].push_back(static_cast<float>(v[static_cast<std::size_t>(i)]) / 16.0f);
    lab[part].push_back(v[64]);
  }
  const auto to_x = [](std::vector<float>& p) {
    return torch::from_blob(p.data(), {static_cast<std::int64_t>(p.size() / 64), 64}).clone();
  };
  const auto to_y = [](std::vector<std::int64_t>& l) {
    return torch::from_blob(l.data(), {static_cast<std::int64_t>(l.size())}, torch::kLong).clone();
  };
  return {to_x(px[0]), to_y(lab[0]), to_x(px[1]), to_y(lab[1])};
}

struct qat_mlp : torch::nn::Module {
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  torch::Tensor w1_scale, act_scale, act_zero_point;  // LSQ parameters
  torch::Tensor w1_zero;                              // symmetric weights: zero points stay 0
  const qlib::qspec input_spec = lt::spec_from_range(-128, 127);
  const qlib::qspec w4_spec = lt::spec_from_range(-7, 7);  // 4-bit narrow, per channel
  const qlib::qspec a4_spec = lt::spec_from_range(0, 15);  // 4-bit unsigned activations
  const qlib::qspec w8_spec = qlib::qspec::tensorrt_weight_int8();

  qat_mlp() {
    fc1 = register_module("fc1", torch::nn::Linear(64, 32));
    fc2 = register_module("fc2", torch::nn::Linear(32, 10));
    // LSQ's initial step size: 2 mean|w| / sqrt(qmax) (Esser et al. 2020, section 2.1).
    const torch::Tensor w = fc1->weight.detach();
    w1_scale = register_parameter("w1_scale", 2.0 * w.abs().mean(1) / std::sqrt(7.0));
    w1_zero = torch::zeros({32});
    act_scale = register_parameter("act_scale", torch::full({1}, 0.1f));
    act_zero_point = register_parameter("act_zero_point", torch::zeros({1}));
  }

  torch::Tensor forward(torch::Tensor x) {
    {
      // Keep learned scales positive, as torch.ao's _LearnableFakeQuantize does (clamp to eps).
      torch::NoGradGuard no_grad;
      w1_scale.clamp_min_(1e-4);
      act_scale.clamp_min_(1e-4);
    }
    x = lt::fake_quantize_per_tensor(x, 1.0 / 255.0, -128, input_spec);  // QuantStub: [0, 1] on int8
    const torch::Tensor w1 = lt::fake_quantize_learnable_per_channel(fc1->weight, w1_scale, w1_zero, 0, w4_spec);
    torch::Tensor h = torch::relu(torch::nn::functional::linear(x, w1, fc1->bias));
    h = lt::fake_quantize_learnable_per_tensor(h, act_scale, act_zero_point, a4_spec);
    // int8 weights with the grid from qlib's per-channel min/max observer, recomputed each step.
    const torch::Tensor w2d = fc2->weight.detach().contiguous();
    qlib::minmax_observer<float> obs(qlib::minmax_options{w8_spec, 0, 0.0, "fc2.weight"});
    obs.update(qlib::view(w2d.data_ptr<float>(), qlib::shape_t{10, 32}, "fc2.weight"));
    const torch::Tensor w2 = lt::fake_quantize_per_channel(fc2->weight, obs.compute().channel_params(), w8_spec);
    return torch::nn::functional::linear(h, w2, fc2->bias);
  }
};

}  // namespace

int main(int argc, char** argv) {
  torch::manual_seed(0);
  at::set_num_threads(1);
  const split_data d = load(argc > 1 ? argv[1] : QLIB_DIGITS_DIR);
  qat_mlp model;
  torch::optim::Adam opt(model.parameters(), torch::optim::AdamOptions(1e-2));
  double first = 0.0, last = 0.0;
  const int steps = 200;
  for (int step = 0; step <= steps; ++step) {
    opt.zero_grad();
    const torch::Tensor loss = torch::nn::functional::cross_entropy(model.forward(d.x_train), d.y_train);
    loss.backward();
    opt.step();
    const double l = loss.item<double>();
    if (step == 0) first = l;
    last = l;
    if (step % 25 == 0) std::printf("step %3d  loss %.4f\n", step, l);
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor pred = model.forward(d.x_test).argmax(1);
  const double acc = pred.eq(d.y_test).to(torch::kDouble).mean().item<double>() * 100.0;
  std::printf("test accuracy %.2f%% (4-bit weights and activations in the hidden layer, int8 elsewhere)\n", acc);
  const float z = model.act_zero_point.item<float>();
  std::printf("learned activation grid: scale %.4f, zero point %.2f (on the grid: %d)\n",
              model.act_scale.item<double>(), static_cast<double>(z), qlib::lsq_zero_point(z, model.a4_spec));
  if (!(last < 0.5 * first)) {
    std::printf("torch_qat: the loss did not decrease (%.4f -> %.4f)\n", first, last);
    return 1;
  }
  return 0;
}
