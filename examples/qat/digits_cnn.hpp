// The QAT demo's network and pipeline, shared by examples/qat_digits.cpp (which prints the
// table) and tests/engine_xnnpack/xnnpack_digits.cpp (which runs the converted int8 model in
// XNNPACK): the float model, every fake-quant point of prepare_qat, training with the
// backward written out, BN folding, PTQ calibration, the fake-quant simulation, convert and
// integer inference with qlib's reference kernels.
//
//   x -> [conv1 3x3 -> BN -> ReLU] = a1 -> [conv2 3x3 -> BN -> ReLU] = a2
//        add(a1, a2) = s;  cat(s, a1) = c (16 channels);  flatten -> linear -> 10 logits
//
// Layouts: activations NCHW, conv weights OIHW, linear weights (out, in), flattening in
// (C, H, W) order (examples/qat/layers.hpp). Deterministic: every random draw comes from the
// qat::rng passed in, in a fixed order (train_fp32, then train_qat_int8 / train_qat_lsq4).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <qlib/core/quantize.hpp>
#include <qlib/fakequant/fake_quant.hpp>
#include <qlib/fakequant/learnable.hpp>
#include <qlib/fuse/bn_fold.hpp>
#include <qlib/fuse/convert.hpp>
#include <qlib/fuse/int_kernels.hpp>
#include <qlib/fuse/ops.hpp>
#include <qlib/observer/arq.hpp>
#include <qlib/observer/minmax.hpp>
#include <qlib/observer/mse.hpp>
#include <string>
#include <vector>

#include "digits.hpp"
#include "layers.hpp"

namespace qat {

constexpr std::size_t kWidth = 8;  // channels of both convolutions
constexpr std::size_t kClasses = 10;
constexpr float kBnEps = 1e-5f;
constexpr float kBnMomentum = 0.1f;
constexpr std::size_t kBatch = 32;

inline qlib::tensor_view<const float> cview(const std::vector<float>& v, const char* name = nullptr) {
  return qlib::view(v, name);
}
inline qlib::tensor_view<float> mview(std::vector<float>& v, const char* name = nullptr) {
  return {v.data(), v.size(), name};
}

// ---- Grids -----------------------------------------------------------------------------

/// Activations: int8 with a zero point (PyTorch's affine rule), so a ReLU output [0, hi]
/// uses all 256 levels with z = -128; the integer kernels store every activation as int8.
inline qlib::qspec activation_spec(int bits) {
  qlib::qspec s;
  s.bits = bits;
  s.scheme = qlib::qscheme::affine;
  s.is_signed = true;
  s.convention = qlib::qconvention::torch;
  return s;
}
/// Weights: symmetric per output channel, narrow range [-(2^(b-1)-1), 2^(b-1)-1], the grid
/// qlib::convert_layer stores (TensorRT / TFLite int8 weights).
inline qlib::qspec weight_spec(int bits) {
  qlib::qspec s = qlib::qspec::tensorrt_weight_int8();
  s.bits = bits;
  return s;
}

// ---- The float model ----------------------------------------------------------------------

struct conv_bn {
  tensor w;  // (O, C, 3, 3), no conv bias: BN's beta is the bias
  std::vector<float> gamma, beta, running_mean, running_var;
  tensor dw;
  std::vector<float> dgamma, dbeta;
  adam_slot opt_w, opt_gamma, opt_beta;

  conv_bn(std::size_t in, std::size_t out, rng& r)
      : w(qlib::shape_t{out, in, 3, 3}),
        gamma(out, 1.0f),
        beta(out, 0.0f),
        running_mean(out, 0.0f),
        running_var(out, 1.0f),
        dw(w.shape),
        dgamma(out),
        dbeta(out) {
    const double std = std::sqrt(2.0 / static_cast<double>(in * 9));  // He et al. 2015
    for (float& v : w.data) v = static_cast<float>(r.normal() * std);
  }
  qlib::batch_norm_view<float> bn() const {
    return {cview(gamma, "gamma"), cview(beta, "beta"), cview(running_mean, "running_mean"),
            cview(running_var, "running_var"), kBnEps};
  }
};

struct linear_layer {
  tensor w;  // (10, 16 * 8 * 8)
  std::vector<float> b;
  tensor dw;
  std::vector<float> db;
  adam_slot opt_w, opt_b;

  linear_layer(std::size_t in, std::size_t out, rng& r)
      : w(qlib::shape_t{out, in}), b(out, 0.0f), dw(w.shape), db(out) {
    const double std = std::sqrt(1.0 / static_cast<double>(in));
    for (float& v : w.data) v = static_cast<float>(r.normal() * std);
  }
};

struct model {
  conv_bn c1, c2;
  linear_layer fc;
  explicit model(rng& r) : c1(1, kWidth, r), c2(kWidth, kWidth, r), fc(2 * kWidth * 64, kClasses, r) {}
};

// ---- Quantizers: the fake-quant points of prepare_qat --------------------------------------

/// A weight fake-quant, per output channel (axis 0).
struct weight_quantizer {
  enum class mode { off, minmax_ste, lsq } m = mode::off;
  qlib::qspec spec;
  qlib::channel_qparams<float> p;  // the current grid (LSQ: the learned scales)
  std::vector<float> scale_grad;   // LSQ
  adam_slot opt_scale;
  std::vector<std::uint8_t> mask;  // STE: 1 where the weight was not clipped
  tensor input;                    // LSQ needs the unquantized weight

  tensor forward(const tensor& w) {
    if (m == mode::off) return w;
    tensor out(w.shape);
    if (m == mode::minmax_ste) {
      // Ranges recomputed from the weight every step (PyTorch's per-channel weight
      // fake-quant, AMCT's ARQ_RETRAIN); the grid is the one convert_layer will use.
      qlib::minmax_observer<float> obs(qlib::minmax_options{spec, 0, 0.0, "weight"});
      obs.update(w.view("weight"));
      p = obs.compute().channel_params();
      mask.resize(w.size());
      qlib::fake_quantize_cachemask(w.view("weight"), p, spec, out.mut(),
                                    qlib::tensor_view<std::uint8_t>(mask.data(), w.shape));
    } else {
      input = w;
      qlib::fake_quantize(w.view("weight"), p, spec, out.mut());
    }
    return out;
  }
  /// dW_q -> dW (straight-through inside the grid); LSQ also fills scale_grad.
  tensor backward(const tensor& dq) {
    if (m == mode::off) return dq;
    tensor dw(dq.shape);
    if (m == mode::minmax_ste) {
      qlib::fake_quantize_backward(dq.view(), qlib::tensor_view<std::uint8_t>(mask.data(), dq.shape), dw.mut());
    } else {
      const qlib::lsq_channel_grads<float> g = qlib::lsq_backward(dq.view(), input.view(), p, spec, dw.mut());
      scale_grad = g.scale;  // symmetric: the zero point stays 0
    }
    return dw;
  }
  void step(float lr, long t) {
    if (m != mode::lsq) return;
    opt_scale.step(p.scale, scale_grad, lr, t);
    for (float& s : p.scale) s = std::max(s, 1e-6f);  // scales stay positive
  }
};

/// An activation fake-quant, per tensor, in place.
struct activation_quantizer {
  enum class mode { off, observe_ste, frozen_ste, lsq } m = mode::off;
  const char* name = "";
  qlib::qspec spec;
  qlib::qparams<float> p;
  std::optional<qlib::minmax_observer<float>> observer;  // moving average, as PyTorch's QAT default
  std::vector<std::uint8_t> mask;
  tensor input;  // LSQ
  float scale_grad = 0.0f;
  std::vector<float> scale_slot{0.0f};
  adam_slot opt_scale;

  explicit activation_quantizer(const char* point) : name(point) {}
  void observe_with_moving_average(float averaging_constant) {
    observer.emplace(qlib::minmax_options{spec, std::nullopt, averaging_constant, name});
    m = mode::observe_ste;
  }
  void forward(tensor& x) {
    if (m == mode::off) return;
    if (m == mode::observe_ste) {
      observer->update(x.view(name));
      p = observer->compute().params();
    }
    if (m == mode::lsq) {
      input = x;
      qlib::fake_quantize_inplace(x.mut(name), p, spec);
      return;
    }
    mask.resize(x.size());
    qlib::fake_quantize_cachemask(x.view(name), p, spec, x.mut(name),
                                  qlib::tensor_view<std::uint8_t>(mask.data(), x.shape));
  }
  void backward(tensor& dx) {
    if (m == mode::off) return;
    if (m == mode::lsq) {
      // LSQ (Esser et al. 2020): the learned scale's gradient; the zero point stays at
      // qmin (the grid starts at real 0 for these non-negative tensors).
      scale_grad = qlib::lsq_backward(dx.view(), input.view(), p, spec, dx.mut()).scale;
      return;
    }
    qlib::fake_quantize_backward(dx.view(), qlib::tensor_view<std::uint8_t>(mask.data(), dx.shape), dx.mut());
  }
  void step(float lr, long t) {
    if (m != mode::lsq) return;
    scale_slot[0] = p.scale;
    opt_scale.step(scale_slot, std::vector<float>{scale_grad}, lr, t);
    p.scale = std::max(scale_slot[0], 1e-6f);  // the scale stays positive
  }
};

/// Every fake-quant point of the graph.
struct quantizers {
  weight_quantizer w1, w2, wfc;
  activation_quantizer in{"input"}, a1{"a1"}, a2{"a2"}, add{"add"}, cat{"cat"}, logits{"logits"};
  std::vector<activation_quantizer*> all_acts() { return {&in, &a1, &a2, &add, &cat, &logits}; }
};

// ---- Training graph: forward and backward written out ---------------------------------------

struct block_trace {
  matrix col;                       // im2col of the input
  tensor w_used;                    // the weight the convolution saw (fake-quantized at QAT time)
  tensor w_scaled;                  // QAT: w * k
  std::vector<float> k, var_for_k;  // QAT: gamma / sqrt(running_var + eps), and that running_var
  tensor y, z, a;                   // conv output, BN input, ReLU output
  std::vector<float> saved_mean, saved_invstd;
};

/// Conv -> BN -> ReLU. Without a weight quantizer it is the plain float block; with one it
/// is PyTorch's QAT ConvBnReLU2d (approximate form, torch/ao/nn/intrinsic/qat/modules/
/// conv_fused.py): y = conv(x, fq(w * k)); z = y / k; BN with batch statistics (or running
/// statistics once frozen).
inline tensor block_forward(conv_bn& L, weight_quantizer& wq, const tensor& x, bool bn_frozen, block_trace& t) {
  const std::size_t c = L.gamma.size();
  if (wq.m == weight_quantizer::mode::off) {
    t.w_used = L.w;
    t.y = conv2d_forward(x, L.w, nullptr, 1, t.col);
    t.z = t.y;
  } else {
    t.k.resize(c);
    t.var_for_k = L.running_var;  // BN updates running_var below; the backward needs this one
    qlib::qat_scale_factor(cview(L.gamma), cview(t.var_for_k), kBnEps, t.k.data());
    t.w_scaled = tensor(L.w.shape);
    qlib::scale_weight(L.w.view("weight"), 0, cview(t.k, "k"), t.w_scaled.ptr());
    t.w_used = wq.forward(t.w_scaled);
    t.y = conv2d_forward(x, t.w_used, nullptr, 1, t.col);
    t.z = tensor(t.y.shape);
    qlib::unscale_output(t.y.view("y"), cview(t.k, "k"), {}, t.z.ptr());
  }
  tensor out(t.z.shape);
  if (bn_frozen) {
    qlib::batch_norm_forward_eval(t.z.view("z"), L.bn(), out.ptr());
  } else {
    t.saved_mean.resize(c);
    t.saved_invstd.resize(c);
    qlib::batch_norm_forward_train(t.z.view("z"), cview(L.gamma), cview(L.beta), mview(L.running_mean),
                                   mview(L.running_var), kBnEps, kBnMomentum, out.ptr(), t.saved_mean.data(),
                                   t.saved_invstd.data());
  }
  relu_inplace(out);
  t.a = out;
  return out;
}

/// Backward of block_forward from the gradient of its ReLU output; fills the layer's
/// gradients, returns dx when wanted.
inline void block_backward(conv_bn& L, weight_quantizer& wq, tensor da, bool bn_frozen, block_trace& t, tensor* dx) {
  relu_backward_inplace(t.a, da);
  tensor dz(t.z.shape);
  if (bn_frozen)
    qlib::batch_norm_backward_eval(da.view(), t.z.view(), L.bn(), dz.ptr(), L.dgamma.data(), L.dbeta.data());
  else
    qlib::batch_norm_backward_train(da.view(), t.z.view(), cview(L.gamma), cview(t.saved_mean), cview(t.saved_invstd),
                                    dz.ptr(), L.dgamma.data(), L.dbeta.data());
  if (wq.m == weight_quantizer::mode::off) {
    conv2d_backward(dz, t.w_used, t.col, 1, L.dw, nullptr, dx);
    return;
  }
  const std::size_t c = L.gamma.size();
  tensor dy(t.y.shape), dwq(L.w.shape);
  std::vector<float> dk_out(c), dk_w(c), dgamma_k(c);
  qlib::unscale_output_backward(dz.view(), t.y.view(), cview(t.k), dy.ptr(), dk_out.data(), nullptr);
  conv2d_backward(dy, t.w_used, t.col, 1, dwq, nullptr, dx);
  const tensor dws = wq.backward(dwq);  // straight-through estimator (or LSQ)
  qlib::scale_weight_backward(dws.view(), L.w.view(), 0, cview(t.k), L.dw.ptr(), dk_w.data());
  for (std::size_t i = 0; i < c; ++i) dk_out[i] += dk_w[i];
  qlib::scale_factor_backward(cview(dk_out), cview(t.var_for_k), kBnEps, dgamma_k.data());
  for (std::size_t i = 0; i < c; ++i) L.dgamma[i] += dgamma_k[i];
}

struct graph_trace {
  block_trace b1, b2;
  tensor a1, a2, s, flat, wfc_used;
};

/// The whole network; every fake-quant point sits where prepare_qat puts it.
inline tensor graph_forward(model& m, quantizers& q, tensor x, bool bn_frozen, graph_trace& t) {
  q.in.forward(x);  // QuantStub
  t.a1 = block_forward(m.c1, q.w1, x, bn_frozen, t.b1);
  q.a1.forward(t.a1);
  t.a2 = block_forward(m.c2, q.w2, t.a1, bn_frozen, t.b2);
  q.a2.forward(t.a2);
  t.s = t.a1;  // FloatFunctional.add
  for (std::size_t i = 0; i < t.s.size(); ++i) t.s.data[i] += t.a2.data[i];
  q.add.forward(t.s);
  tensor c = cat_channels(t.s, t.a1);  // FloatFunctional.cat: one grid for the result
  q.cat.forward(c);
  t.flat = reshaped(std::move(c), qlib::shape_t{x.dim(0), 2 * kWidth * 64});
  t.wfc_used = q.wfc.forward(m.fc.w);
  tensor logits = linear_forward(t.flat, t.wfc_used, m.fc.b);
  q.logits.forward(logits);  // the last quantized output, before DeQuantStub
  return logits;
}

inline void graph_backward(model& m, quantizers& q, tensor dlogits, bool bn_frozen, graph_trace& t) {
  q.logits.backward(dlogits);
  tensor dflat(t.flat.shape), dwfc(m.fc.w.shape);
  linear_backward(dlogits, t.flat, t.wfc_used, dwfc, m.fc.db, &dflat);
  m.fc.dw = q.wfc.backward(dwfc);
  tensor dc = reshaped(std::move(dflat), qlib::shape_t{t.s.dim(0), 2 * kWidth, 8, 8});
  q.cat.backward(dc);
  tensor ds(t.s.shape), da1(t.a1.shape);
  cat_channels_backward(dc, ds, da1);
  q.add.backward(ds);
  tensor da2 = ds;
  for (std::size_t i = 0; i < da1.size(); ++i) da1.data[i] += ds.data[i];
  q.a2.backward(da2);
  tensor dx2(t.a1.shape);
  block_backward(m.c2, q.w2, da2, bn_frozen, t.b2, &dx2);
  for (std::size_t i = 0; i < da1.size(); ++i) da1.data[i] += dx2.data[i];
  q.a1.backward(da1);
  block_backward(m.c1, q.w1, da1, bn_frozen, t.b1, nullptr);
}

struct schedule {
  int epochs;
  float lr;                   // Adam, cosine decay to 0
  float scale_lr;             // LSQ scales
  int freeze_bn_epoch;        // from this epoch on, BN uses running statistics (freeze_bn)
  int freeze_observer_epoch;  // from this epoch on, activation grids stop moving (disable_observer)
};

inline void train(model& m, quantizers& q, const digits_set& data, const schedule& s, rng& r, const char* what) {
  std::vector<std::size_t> order(data.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  const std::size_t steps_per_epoch = data.size() / kBatch;
  const long total = static_cast<long>(steps_per_epoch) * s.epochs;
  long t = 0;
  double loss = 0.0;
  for (int epoch = 0; epoch < s.epochs; ++epoch) {
    const bool frozen = epoch >= s.freeze_bn_epoch;
    if (epoch == s.freeze_observer_epoch)
      for (activation_quantizer* a : q.all_acts())
        if (a->m == activation_quantizer::mode::observe_ste) a->m = activation_quantizer::mode::frozen_ste;
    r.shuffle(order);
    loss = 0.0;
    for (std::size_t b = 0; b < steps_per_epoch; ++b) {
      tensor x, dlogits;
      std::vector<int> y;
      batch_of(data, order, b * kBatch, kBatch, x, y);
      graph_trace tr;
      const tensor logits = graph_forward(m, q, x, frozen, tr);
      loss += cross_entropy(logits, y, dlogits);
      graph_backward(m, q, dlogits, frozen, tr);
      ++t;
      const float decay = 0.5f * (1.0f + std::cos(3.14159265f * static_cast<float>(t - 1) / static_cast<float>(total)));
      const float lr = s.lr * decay, slr = s.scale_lr * decay;
      for (conv_bn* L : {&m.c1, &m.c2}) {
        L->opt_w.step(L->w.data, L->dw.data, lr, t);
        L->opt_gamma.step(L->gamma, L->dgamma, lr, t);
        L->opt_beta.step(L->beta, L->dbeta, lr, t);
      }
      m.fc.opt_w.step(m.fc.w.data, m.fc.dw.data, lr, t);
      m.fc.opt_b.step(m.fc.b, m.fc.db, lr, t);
      for (weight_quantizer* w : {&q.w1, &q.w2, &q.wfc}) w->step(slr, t);
      for (activation_quantizer* a : q.all_acts()) a->step(slr, t);
    }
  }
  std::printf("  %-28s %2d epochs, last epoch's mean loss %.4f\n", what, s.epochs,
              loss / static_cast<double>(steps_per_epoch));
}

/// Accuracy of the float model in eval mode (BN with running statistics, no quantizers).
inline std::vector<int> predict_float(model m, const tensor& x) {
  quantizers none;
  graph_trace tr;
  const tensor logits = graph_forward(m, none, x, true, tr);
  return argmax_rows(logits.ptr(), logits.dim(0), kClasses);
}

// ---- The converted graph in float: BN folded, with or without fake-quant -------------------

struct folded_model {
  tensor w1, w2, wfc;
  std::vector<float> b1, b2, bfc;
};

/// Inference folding (qlib::fold_batch_norm: w' = w k, b' = beta - mean k).
inline folded_model fold(const model& m) {
  folded_model f;
  const conv_bn* blocks[2] = {&m.c1, &m.c2};
  tensor* ws[2] = {&f.w1, &f.w2};
  std::vector<float>* bs[2] = {&f.b1, &f.b2};
  for (int i = 0; i < 2; ++i) {
    qlib::folded_layer<float> fl = qlib::fold_batch_norm(blocks[i]->w.view("conv.weight"), 0, {}, blocks[i]->bn());
    *ws[i] = tensor(blocks[i]->w.shape);
    ws[i]->data = std::move(fl.weight);
    *bs[i] = std::move(fl.bias);
  }
  f.wfc = m.fc.w;
  f.bfc = m.fc.b;
  return f;
}

struct act_grid {
  qlib::qspec spec;
  qlib::qparams<float> p;
};

/// Everything the fake-quant simulation (and convert) needs: weight grids per channel and
/// one grid per activation.
struct sim_params {
  qlib::qspec wspec;
  qlib::channel_qparams<float> w1, w2, wfc;
  act_grid in, a1, a2, add, cat, logits;
};

enum point { p_in, p_a1, p_a2, p_add, p_cat, p_logits, n_points };
inline const char* const point_names[n_points] = {"input", "a1", "a2", "add", "cat", "logits"};

/// The folded network, in float (s == nullptr) or with every fake-quant of the converted
/// graph; `observe(point, tensor)` sees each activation (after its fake-quant, if any).
template <class Observe>
tensor run_folded(const folded_model& f, const sim_params* s, tensor x, Observe&& observe) {
  tensor w1 = f.w1, w2 = f.w2, wfc = f.wfc;
  const act_grid* grids[n_points] = {nullptr};
  if (s) {
    qlib::fake_quantize_inplace(w1.mut("conv1.weight"), s->w1, s->wspec);
    qlib::fake_quantize_inplace(w2.mut("conv2.weight"), s->w2, s->wspec);
    qlib::fake_quantize_inplace(wfc.mut("fc.weight"), s->wfc, s->wspec);
    const act_grid* g[n_points] = {&s->in, &s->a1, &s->a2, &s->add, &s->cat, &s->logits};
    std::copy(g, g + n_points, grids);
  }
  const auto fq = [&](point i, tensor& t) {
    if (grids[i]) qlib::fake_quantize_inplace(t.mut(point_names[i]), grids[i]->p, grids[i]->spec);
    observe(i, t);
  };
  matrix col;
  fq(p_in, x);
  tensor a1 = conv2d_forward(x, w1, &f.b1, 1, col);
  relu_inplace(a1);
  fq(p_a1, a1);
  tensor a2 = conv2d_forward(a1, w2, &f.b2, 1, col);
  relu_inplace(a2);
  fq(p_a2, a2);
  tensor sum = a1;
  for (std::size_t i = 0; i < sum.size(); ++i) sum.data[i] += a2.data[i];
  fq(p_add, sum);
  tensor c = cat_channels(sum, a1);
  fq(p_cat, c);
  tensor logits = linear_forward(reshaped(std::move(c), qlib::shape_t{x.dim(0), 2 * kWidth * 64}), wfc, f.bfc);
  fq(p_logits, logits);
  return logits;
}

inline std::vector<int> predict_sim(const folded_model& f, const sim_params& s, const tensor& x) {
  const tensor logits = run_folded(f, &s, x, [](point, const tensor&) {});
  return argmax_rows(logits.ptr(), logits.dim(0), kClasses);
}

inline double accuracy(const std::vector<int>& pred, const std::vector<int>& labels) {
  std::size_t ok = 0;
  for (std::size_t i = 0; i < pred.size(); ++i) ok += pred[i] == labels[i];
  return 100.0 * static_cast<double>(ok) / static_cast<double>(pred.size());
}
inline double agreement(const std::vector<int>& a, const std::vector<int>& b) { return accuracy(a, b); }

// ---- PTQ: calibrate every activation with one observer kind ----------------------------------

constexpr std::size_t kCalibBatches = 8, kCalibBatch = 64;  // 512 training images

/// Runs the float folded model on the calibration batches; observers[point] sees each
/// activation (qlib observers stream: update() per batch, compute() at the end).
template <class Observer>
void observe_float_activations(const folded_model& f, const digits_set& train, std::vector<Observer>& observers) {
  std::vector<std::size_t> order(train.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (std::size_t b = 0; b < kCalibBatches; ++b) {
    tensor x;
    std::vector<int> y;
    batch_of(train, order, b * kCalibBatch, kCalibBatch, x, y);
    run_folded(f, nullptr, x, [&](point i, const tensor& t) {
      observers[static_cast<std::size_t>(i)].update(t.view(point_names[i]));
    });
  }
}

/// Observes every activation of the float folded model on training batches with observers
/// made by make(point_name, non_negative), then reads their grids; weights per channel
/// with ARQ (AMCT's weight calibration: symmetric per-channel min/max, int8).
template <class Observer, class Make>
sim_params calibrate(const folded_model& f, const digits_set& train, Make&& make) {
  std::vector<Observer> obs;
  for (int i = 0; i < n_points; ++i) obs.push_back(Observer(make(point_names[i], i != p_logits)));
  observe_float_activations(f, train, obs);
  sim_params s;
  act_grid* grids[n_points] = {&s.in, &s.a1, &s.a2, &s.add, &s.cat, &s.logits};
  for (int i = 0; i < n_points; ++i) {
    const qlib::calib_result<float> r = obs[static_cast<std::size_t>(i)].compute();
    *grids[i] = {r.spec, r.params()};
  }
  qlib::arq_options wo;  // qspec::amct_weight(8), channel_wise, axis 0
  s.wspec = wo.spec;
  const tensor* ws[3] = {&f.w1, &f.w2, &f.wfc};
  qlib::channel_qparams<float>* wp[3] = {&s.w1, &s.w2, &s.wfc};
  for (int i = 0; i < 3; ++i) {
    qlib::arq_observer<float> arq(wo);
    arq.update(ws[i]->view("weight"));
    *wp[i] = arq.compute().channel_params();
  }
  return s;
}

/// Symmetric grids for the symmetric observers: unsigned [0, 255] for the non-negative
/// activations (ReLU outputs, their sum and concatenation, the input), signed for logits.
inline qlib::qspec symmetric_spec(bool non_negative) {
  qlib::qspec s;
  s.is_signed = !non_negative;
  return s;
}

// ---- prepare_qat: where each fake-quant goes and how it starts ------------------------------

/// int8 QAT: weights per channel with min/max recomputed each step, activations on
/// moving-average min/max (PyTorch's default QAT qconfig), all with the STE.
inline quantizers prepare_qat_int8() {
  quantizers q;
  for (weight_quantizer* w : {&q.w1, &q.w2, &q.wfc}) {
    w->m = weight_quantizer::mode::minmax_ste;
    w->spec = weight_spec(8);
  }
  for (activation_quantizer* a : q.all_acts()) {
    a->spec = activation_spec(8);
    a->observe_with_moving_average(0.01f);
  }
  return q;
}

/// 4-bit QAT with LSQ: learned per-channel weight scales (started from min/max of w * k on
/// the 4-bit grid) and learned activation scales (started from the MSE-optimal 4-bit grid
/// of the FP32 activations); the graph's edges (input, logits) stay int8 (LSQ paper, 2.1).
inline quantizers prepare_qat_lsq4(const model& m, const folded_model& folded, const digits_set& train) {
  quantizers q;
  const conv_bn* blocks[2] = {&m.c1, &m.c2};
  weight_quantizer* wqs[3] = {&q.w1, &q.w2, &q.wfc};
  for (int i = 0; i < 3; ++i) {
    tensor w = i < 2 ? blocks[i]->w : m.fc.w;
    if (i < 2) {  // the weight fake-quant sees w * k (QAT BN folding)
      std::vector<float> k(blocks[i]->gamma.size());
      qlib::qat_scale_factor(cview(blocks[i]->gamma), cview(blocks[i]->running_var), kBnEps, k.data());
      qlib::scale_weight(blocks[i]->w.view(), 0, cview(k), w.ptr());
    }
    wqs[i]->m = weight_quantizer::mode::lsq;
    wqs[i]->spec = weight_spec(4);
    qlib::minmax_observer<float> obs(qlib::minmax_options{wqs[i]->spec, 0, 0.0, "weight"});
    obs.update(w.view("weight"));
    wqs[i]->p = obs.compute().channel_params();
  }
  std::vector<qlib::mse_observer<float>> obs;
  for (int i = 0; i < n_points; ++i) {
    qlib::mse_options o;
    o.spec = activation_spec(4);
    o.name = point_names[i];
    obs.emplace_back(o);
  }
  observe_float_activations(folded, train, obs);
  activation_quantizer* acts[n_points] = {&q.in, &q.a1, &q.a2, &q.add, &q.cat, &q.logits};
  for (int i = 0; i < n_points; ++i) {
    if (i == p_in || i == p_logits) {  // the edges: int8, moving-average min/max, STE
      acts[i]->spec = activation_spec(8);
      acts[i]->observe_with_moving_average(0.01f);
      continue;
    }
    acts[i]->spec = activation_spec(4);
    acts[i]->p = obs[static_cast<std::size_t>(i)].compute().params();
    acts[i]->m = activation_quantizer::mode::lsq;
  }
  return q;
}

// ---- QAT: grids of the trained model ---------------------------------------------------------

/// The fake-quant simulation of a QAT model after convert: BN folded with the final
/// running statistics, weights on their QAT grid, activations on the learned / observed ones.
inline sim_params qat_grids(const folded_model& f, const quantizers& q, int weight_bits) {
  sim_params s;
  s.wspec = weight_spec(weight_bits);
  if (q.w1.m == weight_quantizer::mode::lsq) {
    s.w1 = q.w1.p, s.w2 = q.w2.p, s.wfc = q.wfc.p;
  } else {
    const tensor* ws[3] = {&f.w1, &f.w2, &f.wfc};
    qlib::channel_qparams<float>* wp[3] = {&s.w1, &s.w2, &s.wfc};
    for (int i = 0; i < 3; ++i) {
      qlib::minmax_observer<float> obs(qlib::minmax_options{s.wspec, 0, 0.0, "weight"});
      obs.update(ws[i]->view("weight"));
      *wp[i] = obs.compute().channel_params();
    }
  }
  s.in = {q.in.spec, q.in.p};
  s.a1 = {q.a1.spec, q.a1.p};
  s.a2 = {q.a2.spec, q.a2.p};
  s.add = {q.add.spec, q.add.p};
  s.cat = {q.cat.spec, q.cat.p};
  s.logits = {q.logits.spec, q.logits.p};
  return s;
}

// ---- Convert and integer inference -------------------------------------------------------

struct int_model {
  act_grid in, a1, add, cat;
  qlib::int8_layer<float> conv1, conv2, fc;
  qlib::add_params add_p;
};

inline int_model convert(const folded_model& f, const sim_params& s, int weight_bits) {
  int_model m;
  m.in = s.in, m.a1 = s.a1, m.add = s.add, m.cat = s.cat;
  qlib::convert_options o;
  o.weight_bits = weight_bits;
  o.relu = true;
  m.conv1 =
      qlib::convert_layer(f.w1.view("conv1.weight"), cview(f.b1, "conv1.bias"), cview(s.w1.scale), s.in.p, s.a1.p, o);
  m.conv2 =
      qlib::convert_layer(f.w2.view("conv2.weight"), cview(f.b2, "conv2.bias"), cview(s.w2.scale), s.a1.p, s.a2.p, o);
  // The output clamp is the output's own grid (4-bit grids live inside int8 storage).
  m.conv1.output_range = qlib::fused_relu(qlib::grid_range(s.a1.spec), s.a1.p.zero_point);
  m.conv2.output_range = qlib::fused_relu(qlib::grid_range(s.a2.spec), s.a2.p.zero_point);
  m.add_p = qlib::make_add_params(s.a1.p, s.a2.p, s.add.p, qlib::grid_range(s.add.spec));
  o.relu = false;
  m.fc =
      qlib::convert_layer(f.wfc.view("fc.weight"), cview(f.bfc, "fc.bias"), cview(s.wfc.scale), s.cat.p, s.logits.p, o);
  m.fc.output_range = qlib::grid_range(s.logits.spec);
  return m;
}

/// Every int8 tensor of one integer forward pass (NCHW, the grids of int_model).
struct int_activations {
  qlib::shape_t act_shape{std::size_t{0}}, cat_shape{std::size_t{0}};
  std::vector<std::int8_t> x, a1, a2, s, c, logits;  // input, conv1, conv2, add, cat, linear
};

/// int8 in, int8 out: nothing but integers between the input's quantize and the argmax.
inline int_activations int_forward(const int_model& m, const tensor& x) {
  const std::size_t n = x.dim(0);
  const qlib::conv2d_geometry same{1, 1, 1, 1, 1, 1, 1};  // stride 1, padding 1
  int_activations t;
  t.act_shape = qlib::shape_t{n, kWidth, 8, 8};
  t.cat_shape = qlib::shape_t{n, 2 * kWidth, 8, 8};
  const qlib::shape_t& act_shape = t.act_shape;
  t.x.resize(x.size());
  t.a1.resize(act_shape.numel());
  t.a2.resize(act_shape.numel());
  t.s.resize(act_shape.numel());
  t.c.resize(t.cat_shape.numel());
  t.logits.resize(n * kClasses);
  qlib::quantize(x.view("input"), m.in.p, m.in.spec, t.x.data());
  qlib::conv2d(qlib::view(t.x.data(), x.shape, "input"), m.conv1, same, t.a1.data());
  qlib::conv2d(qlib::view(t.a1.data(), act_shape, "a1"), m.conv2, same, t.a2.data());
  qlib::add(qlib::view(t.a1.data(), act_shape, "a1"), qlib::view(t.a2.data(), act_shape, "a2"), m.add_p, t.s.data());
  qlib::cat<float>({qlib::view(t.s.data(), act_shape, "add"), qlib::view(t.a1.data(), act_shape, "a1")},
                   {m.add.p, m.a1.p}, 1, m.cat.p, qlib::grid_range(m.cat.spec), t.c.data());
  qlib::linear(qlib::view(t.c.data(), qlib::shape_t{n, 2 * kWidth * 64}, "cat"), m.fc, t.logits.data());
  return t;
}

inline std::vector<int> predict_int(const int_model& m, const tensor& x) {
  const int_activations t = int_forward(m, x);
  return argmax_rows(t.logits.data(), x.dim(0), kClasses);
}

// ---- The demo's training runs, in the order they draw from the generator ------------------------

constexpr schedule fp32_schedule{40, 3e-3f, 0.0f, 1000, 1000};
constexpr schedule qat_int8_schedule{8, 5e-4f, 0.0f, 5, 6};
constexpr schedule qat_lsq4_schedule{30, 1e-3f, 1e-3f, 20, 24};

/// 1. FP32 training from a fresh model (draws its initial weights and batches from r).
inline model train_fp32(const digits_set& train_set, rng& r) {
  model fp32(r);
  quantizers none;
  train(fp32, none, train_set, fp32_schedule, r, "FP32 training:");
  return fp32;
}

/// A QAT model after training: the folded float weights, the grids of the fake-quant
/// simulation and the converted integer model.
struct qat_result {
  model trained;
  folded_model folded;
  sim_params grids;
  int_model converted;
};

/// 3. QAT int8 with the straight-through estimator, continuing from the FP32 weights, then
/// fold, read the grids and convert (weights int8 per channel, activations int8).
inline qat_result train_qat_int8(const model& fp32, const digits_set& train_set, rng& r) {
  qat_result out{fp32, {}, {}, {}};
  quantizers q8 = prepare_qat_int8();
  train(out.trained, q8, train_set, qat_int8_schedule, r, "QAT int8 (STE):");
  out.folded = fold(out.trained);
  out.grids = qat_grids(out.folded, q8, 8);
  out.converted = convert(out.folded, out.grids, 8);
  return out;
}

/// 4. QAT with 4-bit weights and activations (LSQ; the edges stay int8), from the FP32
/// weights; `folded_fp32` is fold(fp32), used to start the activation scales.
inline qat_result train_qat_lsq4(const model& fp32, const folded_model& folded_fp32, const digits_set& train_set,
                                 rng& r) {
  qat_result out{fp32, {}, {}, {}};
  quantizers q4 = prepare_qat_lsq4(out.trained, folded_fp32, train_set);
  train(out.trained, q4, train_set, qat_lsq4_schedule, r, "QAT 4-bit (LSQ):");
  out.folded = fold(out.trained);
  out.grids = qat_grids(out.folded, q4, 4);
  out.converted = convert(out.folded, out.grids, 4);
  return out;
}

}  // namespace qat
