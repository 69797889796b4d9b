// Integer deployment check in XNNPACK (issue 11): the converted int8 digits CNN of the QAT
// demo (examples/qat/digits_cnn.hpp: same seed, same training, same convert) runs in
// XNNPACK's int8 operators with qlib's parameters, and is compared with qlib's integer
// reference kernels (qlib/fuse/int_kernels.hpp) and with qlib's fake-quant simulation.
//
// XNNPACK (Debian's libxnnpack-dev, git 2022-02-16) has, for this graph:
//   input      xnn_create_convert_nc_f32_qs8       float -> int8 (x * (1 / s) rounded half to even)
//   conv1/2    xnn_create_convolution2d_nhwc_qc8   int8 activations, per-channel int8 weights
//   add        xnn_create_add_nd_qs8               its own fixed-point form (one rounding, ties up)
//   cat        no concatenate operator and no int8 -> int8 convert in this version: each input
//              is requantized to the cat grid by xnn_create_add_nd_qs8 with a broadcast zero
//              operand (XNNPACK's own requantizing element-wise operator), then written into
//              its channel slice by xnn_create_copy_nc_x8 (output stride 16 channels)
//   linear     xnn_create_fully_connected_nc_qs8 takes one weight scale per tensor only, so the
//              per-channel linear layer runs as what it is on the 8x8x16 feature map: a qc8
//              convolution whose 8x8 kernel covers the whole map (output 1x1x10)
// Convolutions requantize in float (acc * s_in s_w / s_out, rounded half to even), qlib in
// fixed point (shared/specs/algorithms.md 5c), so an output may differ by one step.
//
// Layouts: qlib is NCHW (weights OIHW, linear input flattened in (C, H, W) order); XNNPACK
// is NHWC (weights OHWI): activations are transposed, the linear weight's columns are
// reordered from (C, H, W) to (H, W, C).
//
// Checks (exit status 0 when all hold, 1 otherwise, 2 on an error):
//   1. each operator, given qlib's own input for it, agrees with qlib's integer reference
//      within one quantization step on every output element;
//   2. the whole graph run in XNNPACK end to end has an accuracy within 0.2 points of qlib's
//      fake-quant simulation.
// Usage: xnnpack_digits [data_dir [seed]]   (defaults: examples/data/digits, 20240531)
#include <xnnpack.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "qat/digits.hpp"
#include "qat/digits_cnn.hpp"

#ifndef QLIB_DIGITS_DIR
#define QLIB_DIGITS_DIR "examples/data/digits"
#endif

namespace {

constexpr std::size_t kHW = 8 * 8;             // image plane
constexpr std::size_t kC = qat::kWidth;        // channels of a1, a2, s
constexpr std::size_t kCat = 2 * qat::kWidth;  // channels of the cat

void check(xnn_status s, const std::string& what) {
  if (s != xnn_status_success)
    throw std::runtime_error("XNNPACK: " + what + " failed with status " + std::to_string(static_cast<int>(s)));
}

/// An XNNPACK operator, deleted with its owner.
class xnn_op {
 public:
  xnn_op() = default;
  xnn_op(const xnn_op&) = delete;
  xnn_op& operator=(const xnn_op&) = delete;
  ~xnn_op() {
    if (op_) xnn_delete_operator(op_);
  }
  xnn_operator_t* out() { return &op_; }
  xnn_operator_t get() const { return op_; }
  void run(const std::string& what) const { check(xnn_run_operator(op_, nullptr), "running " + what); }

 private:
  xnn_operator_t op_ = nullptr;
};

/// xnn_initialize for the life of the object; declared before any operator, so the
/// operators are deleted first.
class xnn_library {
 public:
  xnn_library() { check(xnn_initialize(nullptr), "xnn_initialize"); }
  xnn_library(const xnn_library&) = delete;
  xnn_library& operator=(const xnn_library&) = delete;
  ~xnn_library() { xnn_deinitialize(); }
};

/// (N, C, HW) -> (N, HW, C).
std::vector<std::int8_t> to_nhwc(const std::vector<std::int8_t>& x, std::size_t c, std::size_t hw) {
  std::vector<std::int8_t> y(x.size());
  const std::size_t n = x.size() / (c * hw);
  for (std::size_t b = 0; b < n; ++b)
    for (std::size_t ch = 0; ch < c; ++ch)
      for (std::size_t p = 0; p < hw; ++p) y[(b * hw + p) * c + ch] = x[(b * c + ch) * hw + p];
  return y;
}

std::int8_t as_int8(std::int32_t v, const char* what) {
  if (v < -128 || v > 127) throw std::runtime_error(std::string(what) + " = " + std::to_string(v) + " is not int8");
  return static_cast<std::int8_t>(v);
}

/// A qc8 convolution from a converted qlib layer: OIHW weights transposed to OHWI, qlib's
/// per-channel weight scales, int32 bias and output clamp as they are.
void create_qc8_conv(const qlib::int8_layer<float>& L, std::uint32_t pad, xnn_op& op, const char* what) {
  const std::size_t co = L.weight_shape[0], ci = L.weight_shape[1], kh = L.weight_shape[2], kw = L.weight_shape[3];
  std::vector<std::int8_t> ohwi(L.weight.size());
  for (std::size_t o = 0; o < co; ++o)
    for (std::size_t i = 0; i < ci; ++i)
      for (std::size_t y = 0; y < kh; ++y)
        for (std::size_t x = 0; x < kw; ++x)
          ohwi[((o * kh + y) * kw + x) * ci + i] = L.weight[((o * ci + i) * kh + y) * kw + x];
  // XNNPACK packs the weights at creation: the buffers need not outlive this call.
  check(xnn_create_convolution2d_nhwc_qc8(
            pad, pad, pad, pad, static_cast<std::uint32_t>(kh), static_cast<std::uint32_t>(kw), 1, 1, 1, 1, 1, ci, co,
            ci, co, as_int8(L.input.zero_point, "input zero point"), L.input.scale, L.weight_scale.data(), ohwi.data(),
            L.bias.data(), as_int8(L.output.zero_point, "output zero point"), L.output.scale,
            as_int8(L.output_range.min, "output min"), as_int8(L.output_range.max, "output max"), 0, op.out()),
        std::string("creating ") + what);
}

/// The converted digits CNN in XNNPACK operators; every method works on NHWC batches.
class xnn_digits_cnn {
 public:
  explicit xnn_digits_cnn(const qat::int_model& m) {
    const qlib::clamp_range in_range = qlib::grid_range(m.in.spec);
    check(xnn_create_convert_nc_f32_qs8(1, 1, 1, m.in.p.scale, as_int8(m.in.p.zero_point, "input zero point"),
                                        as_int8(in_range.min, "input min"), as_int8(in_range.max, "input max"), 0,
                                        quantize_.out()),
          "creating the input quantization");
    create_qc8_conv(m.conv1, 1, conv1_, "conv1");
    create_qc8_conv(m.conv2, 1, conv2_, "conv2");
    const qlib::clamp_range add_range = qlib::grid_range(m.add.spec);
    check(xnn_create_add_nd_qs8(as_int8(m.a1.p.zero_point, "a1 zero point"), m.a1.p.scale,
                                as_int8(m.conv2.output.zero_point, "a2 zero point"), m.conv2.output.scale,
                                as_int8(m.add.p.zero_point, "add zero point"), m.add.p.scale,
                                as_int8(add_range.min, "add min"), as_int8(add_range.max, "add max"), 0, add_.out()),
          "creating the add");
    // Cat: requantize (s on the add grid, a1 on its grid) to the cat grid; the second
    // operand is one int8 zero on the cat grid itself, so it adds exactly nothing.
    const qlib::clamp_range cat_range = qlib::grid_range(m.cat.spec);
    const qlib::qparams<float>* cat_inputs[2] = {&m.add.p, &m.a1.p};
    for (int i = 0; i < 2; ++i) {
      check(xnn_create_add_nd_qs8(as_int8(cat_inputs[i]->zero_point, "cat input zero point"), cat_inputs[i]->scale, 0,
                                  m.cat.p.scale, as_int8(m.cat.p.zero_point, "cat zero point"), m.cat.p.scale,
                                  as_int8(cat_range.min, "cat min"), as_int8(cat_range.max, "cat max"), 0,
                                  requant_[i].out()),
            "creating the cat requantization");
      check(xnn_create_copy_nc_x8(kC, kC, kCat, 0, copy_[i].out()), "creating the cat copy");
    }
    // Linear (10, 16 * 8 * 8) with columns in (C, H, W) order -> a convolution with an 8x8
    // kernel over the NHWC map, weights (10, 8, 8, 16) = OHWI.
    qlib::int8_layer<float> fc = m.fc;
    fc.weight_shape = qlib::shape_t{m.fc.weight_shape[0], kCat, 8, 8};  // OIHW view of the same values
    create_qc8_conv(fc, 0, fc_, "linear (as an 8x8 convolution)");
  }

  void quantize_input(const float* x, std::size_t n, std::int8_t* xq) {
    check(xnn_setup_convert_nc_f32_qs8(quantize_.get(), n * kHW, x, xq, nullptr), "setting up the input quantization");
    quantize_.run("the input quantization");
  }
  void conv1(const std::int8_t* x, std::size_t n, std::int8_t* a1) { conv(conv1_, x, n, 8, a1, "conv1"); }
  void conv2(const std::int8_t* a1, std::size_t n, std::int8_t* a2) { conv(conv2_, a1, n, 8, a2, "conv2"); }
  void add(const std::int8_t* a1, const std::int8_t* a2, std::size_t n, std::int8_t* s) {
    const std::size_t shape[2] = {n * kHW, kC};
    check(xnn_setup_add_nd_qs8(add_.get(), 2, shape, 2, shape, a1, a2, s, nullptr), "setting up the add");
    add_.run("the add");
  }
  void cat(const std::int8_t* s, const std::int8_t* a1, std::size_t n, std::int8_t* c) {
    const std::int8_t* inputs[2] = {s, a1};
    const std::int8_t zero = 0;
    std::vector<std::int8_t> requantized(n * kHW * kC);
    for (int i = 0; i < 2; ++i) {
      const std::size_t shape[2] = {n * kHW, kC}, scalar[1] = {1};
      check(xnn_setup_add_nd_qs8(requant_[i].get(), 2, shape, 1, scalar, inputs[i], &zero, requantized.data(), nullptr),
            "setting up the cat requantization");
      requant_[i].run("the cat requantization");
      check(xnn_setup_copy_nc_x8(copy_[i].get(), n * kHW, requantized.data(), c + static_cast<std::size_t>(i) * kC,
                                 nullptr),
            "setting up the cat copy");
      copy_[i].run("the cat copy");
    }
  }
  void linear(const std::int8_t* c, std::size_t n, std::int8_t* logits) { conv(fc_, c, n, 8, logits, "linear"); }

 private:
  static void conv(xnn_op& op, const std::int8_t* x, std::size_t n, std::size_t hw, std::int8_t* y, const char* what) {
    check(xnn_setup_convolution2d_nhwc_qc8(op.get(), n, hw, hw, x, y, nullptr), std::string("setting up ") + what);
    op.run(what);
  }

  xnn_op quantize_, conv1_, conv2_, add_, requant_[2], copy_[2], fc_;
};

/// How far two int8 tensors of the same layout are apart.
struct agreement_stats {
  std::size_t count = 0, equal = 0;
  int max_steps = 0;
  double equal_percent() const { return count ? 100.0 * static_cast<double>(equal) / static_cast<double>(count) : 0; }
};

agreement_stats compare(const std::vector<std::int8_t>& a, const std::vector<std::int8_t>& b) {
  if (a.size() != b.size()) throw std::runtime_error("compare: sizes differ");
  agreement_stats s;
  s.count = a.size();
  for (std::size_t i = 0; i < a.size(); ++i) {
    const int d = std::abs(static_cast<int>(a[i]) - static_cast<int>(b[i]));
    s.equal += d == 0;
    s.max_steps = std::max(s.max_steps, d);
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : QLIB_DIGITS_DIR;
  try {
    const qat::digits_split data = qat::load_digits(dir);
    const qat::tensor& images = data.test.images;
    const std::size_t n = data.test.size();
    const std::vector<int>& labels = data.test.labels;
    std::printf("xnnpack_digits: %zu training and %zu test images from %s\n", data.train.size(), n, dir.c_str());

    // The QAT demo's int8 model: the same generator, the same draws, the same convert.
    qat::rng r(argc > 2 ? std::stoull(argv[2]) : 20240531ull);
    const qat::model fp32 = qat::train_fp32(data.train, r);
    const qat::qat_result q8 = qat::train_qat_int8(fp32, data.train, r);
    const qat::int_model& m = q8.converted;

    // qlib: fake-quant simulation and integer reference (NCHW).
    const std::vector<int> sim = qat::predict_sim(q8.folded, q8.grids, images);
    const qat::int_activations ref = qat::int_forward(m, images);
    const std::vector<int> ref_class = qat::argmax_rows(ref.logits.data(), n, qat::kClasses);
    const std::vector<std::int8_t> ref_x = ref.x;  // C = 1: NCHW = NHWC
    const std::vector<std::int8_t> ref_a1 = to_nhwc(ref.a1, kC, kHW), ref_a2 = to_nhwc(ref.a2, kC, kHW);
    const std::vector<std::int8_t> ref_s = to_nhwc(ref.s, kC, kHW), ref_c = to_nhwc(ref.c, kCat, kHW);

    const xnn_library library;
    xnn_digits_cnn net(m);

    // 1. Operator by operator, each fed qlib's own input for it.
    std::vector<std::int8_t> x(n * kHW), a1(n * kHW * kC), a2(a1.size()), s(a1.size()), c(n * kHW * kCat),
        logits(n * qat::kClasses);
    net.quantize_input(images.ptr(), n, x.data());
    net.conv1(ref_x.data(), n, a1.data());
    net.conv2(ref_a1.data(), n, a2.data());
    net.add(ref_a1.data(), ref_a2.data(), n, s.data());
    net.cat(ref_s.data(), ref_a1.data(), n, c.data());
    net.linear(ref_c.data(), n, logits.data());
    // For information: the same layers in qlib with TFLite's single rounding
    // (qlib::requantize_rounding::single_rounding); the cat rounds once either way.
    qat::int_model single = m;
    for (qlib::int8_layer<float>* L : {&single.conv1, &single.conv2, &single.fc})
      L->rounding = qlib::requantize_rounding::single_rounding;
    single.add_p.rounding = qlib::requantize_rounding::single_rounding;
    const qlib::conv2d_geometry same{1, 1, 1, 1, 1, 1, 1};
    const qlib::shape_t act_shape{n, kC, 8, 8};
    std::vector<std::int8_t> s_a1(a1.size()), s_a2(a1.size()), s_s(a1.size()), s_logits(logits.size());
    qlib::conv2d(qlib::view(ref.x.data(), images.shape), single.conv1, same, s_a1.data());
    qlib::conv2d(qlib::view(ref.a1.data(), act_shape), single.conv2, same, s_a2.data());
    qlib::add(qlib::view(ref.a1.data(), act_shape), qlib::view(ref.a2.data(), act_shape), single.add_p, s_s.data());
    qlib::linear(qlib::view(ref.c.data(), qlib::shape_t{n, kCat * kHW}), single.fc, s_logits.data());

    struct layer {
      const char* name;
      agreement_stats stats, single_rounding;
    };
    const layer layers[] = {
        {"input quantize (convert f32->qs8)", compare(x, ref_x), compare(x, ref_x)},
        {"conv1 + ReLU (qc8 convolution)", compare(a1, ref_a1), compare(a1, to_nhwc(s_a1, kC, kHW))},
        {"conv2 + ReLU (qc8 convolution)", compare(a2, ref_a2), compare(a2, to_nhwc(s_a2, kC, kHW))},
        {"add (qs8 add)", compare(s, ref_s), compare(s, to_nhwc(s_s, kC, kHW))},
        {"cat (qs8 add requant + x8 copy)", compare(c, ref_c), compare(c, ref_c)},
        {"linear (qc8 8x8 convolution)", compare(logits, ref.logits), compare(logits, s_logits)},
    };
    std::printf("\nXNNPACK operator vs qlib's integer reference, same inputs (%zu test images):\n", n);
    std::printf("| %-34s | %9s | %9s | %10s | %15s |\n", "operator", "outputs", "equal", "max steps", "equal (single)");
    std::printf("|%s|%s|%s|%s|%s|\n", std::string(36, '-').c_str(), std::string(11, '-').c_str(),
                std::string(11, '-').c_str(), std::string(12, '-').c_str(), std::string(17, '-').c_str());
    bool per_layer_ok = true;
    for (const layer& l : layers) {
      std::printf("| %-34s | %9zu | %8.3f%% | %10d | %14.3f%% |\n", l.name, l.stats.count, l.stats.equal_percent(),
                  l.stats.max_steps, l.single_rounding.equal_percent());
      per_layer_ok = per_layer_ok && l.stats.max_steps <= 1;
    }
    std::printf("equal: qlib's default (double rounding); equal (single): qlib with single_rounding.\n");

    // 2. The whole graph in XNNPACK, from the float images.
    std::vector<std::int8_t> e_x(x.size()), e_a1(a1.size()), e_a2(a1.size()), e_s(a1.size()), e_c(c.size()),
        e_logits(logits.size());
    net.quantize_input(images.ptr(), n, e_x.data());
    net.conv1(e_x.data(), n, e_a1.data());
    net.conv2(e_a1.data(), n, e_a2.data());
    net.add(e_a1.data(), e_a2.data(), n, e_s.data());
    net.cat(e_s.data(), e_a1.data(), n, e_c.data());
    net.linear(e_c.data(), n, e_logits.data());
    const std::vector<int> xnn_class = qat::argmax_rows(e_logits.data(), n, qat::kClasses);
    const agreement_stats end_to_end = compare(e_logits, ref.logits);
    const agreement_stats end_to_end_single = compare(e_logits, qat::int_forward(single, images).logits);
    const double acc_xnn = qat::accuracy(xnn_class, labels), acc_int = qat::accuracy(ref_class, labels);
    const double acc_sim = qat::accuracy(sim, labels);
    std::printf(
        "\nEnd to end (XNNPACK's own activations): logits max %d steps from qlib's integer reference, "
        "%.2f%% equal\n",
        end_to_end.max_steps, end_to_end.equal_percent());
    std::printf("(qlib with single_rounding: max %d steps, %.2f%% equal)\n", end_to_end_single.max_steps,
                end_to_end_single.equal_percent());
    std::printf("| %-36s | %8s | %15s |\n", "path", "test acc", "same class as");
    std::printf("|%s|%s|%s|\n", std::string(38, '-').c_str(), std::string(10, '-').c_str(),
                std::string(17, '-').c_str());
    std::printf("| %-36s | %7.2f%% | %15s |\n", "qlib fake-quant simulation", acc_sim, "");
    std::printf("| %-36s | %7.2f%% | sim %10.2f%% |\n", "qlib integer reference kernels", acc_int,
                qat::agreement(ref_class, sim));
    std::printf("| %-36s | %7.2f%% | qlib int %5.2f%% |\n", "XNNPACK int8 operators", acc_xnn,
                qat::agreement(xnn_class, ref_class));
    std::printf("%zu test images: one image is %.3f points.\n", n, 100.0 / static_cast<double>(n));

    const bool acc_ok = std::fabs(acc_xnn - acc_sim) <= 0.2 + 1e-9;
    std::printf("target %-62s %s\n",
                "every operator within 1 step of qlib's integer reference:", per_layer_ok ? "met" : "MISSED");
    std::printf("target %-62s %s\n",
                "XNNPACK accuracy within 0.2 points of qlib's simulation:", acc_ok ? "met" : "MISSED");
    return per_layer_ok && acc_ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "xnnpack_digits: %s\n", e.what());
    return 2;
  }
}
