// BatchNorm folding: for inference (into the weight and bias of the preceding Conv /
// Linear / ConvTranspose) and at QAT time (PyTorch's _ConvBnNd, approximate form), with the
// forward and backward pieces a user needs to train it in their own graph.
//
// Sources: Krishnamoorthi 2018, "Quantizing deep convolutional networks for efficient
// inference: A whitepaper" (arXiv:1806.08342, section 3.2); PyTorch
// torch/ao/nn/intrinsic/qat/modules/conv_fused.py (_ConvBnNd._forward_approximate) and
// torch.nn.functional.batch_norm (running statistics); shared/specs/algorithms.md 5c.
//
// Layouts, stated once for this header:
// - Weights: C-order with the output channel on `axis` (0 for Conv / Linear (C_out, ...),
//   1 for an ungrouped ConvTranspose (C_in, C_out, ...)); per-channel scaling uses the
//   (outer, channels, inner) split of core/tensor_view.hpp.
// - Activations: NCHW, i.e. shape (N, C, spatial...) of rank >= 2 with channels on axis 1
//   ((N, C) for BatchNorm1d after a Linear). Statistics run over N and all spatial positions.
// - Per-channel vectors (gamma, beta, mean, var, k, bias and their gradients): C values.
//   An absent gamma (a default-constructed or zero-length view) means 1 and an absent beta
//   0 (BatchNorm with affine = false); an absent conv bias means no bias.
// Outputs are caller-owned buffers of the documented size (like quantize()); inputs are
// checked first, so a rejected call writes nothing.
//
// QAT forward, per training step (everything per output channel c):
//   k      = qat_scale_factor(gamma, running_var, eps)       = gamma / sqrt(running_var + eps)
//   w_s    = scale_weight(w, k)                              = w * k
//   w_q    = fake_quant(w_s)                                 (the user's weight quantizer)
//   y      = conv(x, w_q)                                    (no bias)
//   z      = unscale_output(y, k, bias)                      = y / k + bias
//   out    = batch_norm_forward_train(z, ...)                (batch statistics; running
//            statistics updated) or batch_norm_forward_eval(z, ...) once BN is frozen.
// Backward, in reverse: batch_norm_backward_train / _eval -> (dz, dgamma, dbeta);
// unscale_output_backward(dz) -> (dy, dk, dbias); the user's conv backward -> (dx, dw_q);
// STE through fake_quant -> dw_s; scale_weight_backward(dw_s) -> (dw, dk);
// dgamma += scale_factor_backward(dk_total) (running_var is a buffer: no gradient).
// After training, fold_batch_norm() gives the inference weight and bias.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../core/check.hpp"
#include "../core/fixed_point.hpp"
#include "../core/tensor_view.hpp"

QLIB_NAMESPACE_BEGIN

namespace detail {
/// T in a non-deduced context: scalars (eps, momentum) and nullable outputs take their
/// type from the tensors, so a double literal or nullptr works with float tensors.
template <class T>
struct bn_same {
  using type = T;
};
template <class T>
using bn_same_t = typename bn_same<T>::type;

/// An optional per-channel vector is absent when it has no data or no values (a
/// default-constructed tensor_view is empty: rank 1, size 0, data nullptr).
template <class T>
bool bn_absent(tensor_view<const T> v) noexcept {
  return v.data() == nullptr || v.empty();
}

inline std::string bn_num(double v) { return exact_double_str(v); }

/// Fails unless v holds `channels` values (or is empty when `may_be_empty`).
template <class T>
void check_channel_vector(tensor_view<const T> v, std::size_t channels, const char* who, const char* role,
                          const std::string& against, bool may_be_empty = false) {
  if (may_be_empty && bn_absent(v)) return;
  if (v.data() == nullptr && channels > 0)
    fail(errc::invalid_argument, std::string(who) + ": " + role + " is missing (null data) but " + against + " has " +
                                     std::to_string(channels) + " channels");
  if (v.size() != channels)
    fail(errc::invalid_argument, std::string(who) + ": " + role + " has " + std::to_string(v.size()) + " values but " +
                                     against + " has " + std::to_string(channels) + " channels");
}

/// Fails when a required vector has no data.
template <class T>
void check_present(tensor_view<const T> v, const char* who, const char* role) {
  if (v.data() == nullptr && !v.empty())
    fail(errc::invalid_argument, std::string(who) + ": " + role + " is missing (null data)");
}

/// Checks an NCHW activation and returns its (N, C, spatial) layout.
template <class T>
channel_layout check_activation(tensor_view<const T> x, const char* who, const char* role) {
  if (x.rank() < 2)
    fail(errc::invalid_argument,
         std::string(who) + ": " + role + " of shape " + x.shape().str() + " must have rank >= 2 (N, C, spatial...)");
  return layout_along(x.shape(), 1);
}

template <class T>
void check_same_shape(tensor_view<const T> a, tensor_view<const T> b, const char* who, const char* role_a,
                      const char* role_b) {
  if (a.shape() != b.shape())
    fail(errc::invalid_argument, std::string(who) + ": " + role_a + " has shape " + a.shape().str() + " but " + role_b +
                                     " has shape " + b.shape().str());
}

/// Fails on the first NaN / Inf of a per-channel vector, naming it and the channel.
template <class T>
void check_finite_vector(tensor_view<const T> v, const char* who, const char* role) {
  if (bn_absent(v)) return;
  for (std::size_t c = 0; c < v.size(); ++c)
    if (!std::isfinite(v[c]))
      fail(errc::non_finite,
           std::string(who) + ": " + role + "[" + std::to_string(c) + "] = " + value_str(v[c]) + " is not finite");
}

/// Checks var[c] + eps > 0 and finite for every channel, and gamma finite.
template <class T>
void check_bn_variance(tensor_view<const T> var, T eps, const char* who, const char* role) {
  if (!std::isfinite(eps) || eps < T(0))
    fail(errc::invalid_argument,
         std::string(who) + ": eps = " + bn_num(static_cast<double>(eps)) + " must be finite and non-negative");
  for (std::size_t c = 0; c < var.size(); ++c) {
    const T v = var[c] + eps;
    if (!std::isfinite(v) || !(v > T(0)))
      fail(std::isfinite(v) ? errc::invalid_argument : errc::non_finite,
           std::string(who) + ": " + role + "[" + std::to_string(c) + "] + eps = " + bn_num(static_cast<double>(v)) +
               " must be finite and positive");
  }
}
}  // namespace detail

/// Per-channel BN statistics and affine parameters (views of C values; gamma / beta may
/// be empty for 1 / 0).
template <class T>
struct batch_norm_view {
  tensor_view<const T> gamma;  ///< weight
  tensor_view<const T> beta;   ///< bias
  tensor_view<const T> mean;   ///< running_mean
  tensor_view<const T> var;    ///< running_var (biased variance is not required: any var + eps > 0)
  T eps = T(1e-5);
};

/// k[c] = gamma[c] / sqrt(var[c] + eps): the BN scale per channel (C values). Fails when a
/// var + eps is not positive or gamma / var have the wrong length.
template <class T>
void qat_scale_factor(tensor_view<const T> gamma, tensor_view<const T> running_var, detail::bn_same_t<T> eps,
                      detail::bn_same_t<T>* k) {
  const char* who = "qat_scale_factor";
  detail::check_present(running_var, who, "running_var");
  const std::size_t channels = running_var.size();
  detail::check_channel_vector(gamma, channels, who, "gamma", "running_var", true);
  detail::check_bn_variance(running_var, eps, who, "running_var");
  detail::check_finite_vector(gamma, who, "gamma");
  for (std::size_t c = 0; c < channels; ++c) {
    const T g = detail::bn_absent(gamma) ? T(1) : gamma[c];
    k[c] = g / std::sqrt(running_var[c] + eps);
  }
}

/// Inference folding (Krishnamoorthi 2018, eq. 8-9): w'[c] = w[c] * k[c] and
/// b'[c] = (b[c] - mean[c]) * k[c] + beta[c] with k = gamma / sqrt(var + eps).
/// weight: output channels on `axis`; weight_out: weight.size() values; bias_out: C values.
template <class T>
void fold_batch_norm(tensor_view<const T> weight, int axis, tensor_view<const T> bias, const batch_norm_view<T>& bn,
                     T* weight_out, T* bias_out) {
  const char* who = "fold_batch_norm";
  const channel_layout l = layout_along(weight.shape(), axis);
  const std::string against = "the weight of shape " + weight.shape().str() + " along axis " + std::to_string(axis);
  detail::check_channel_vector(bias, l.channels, who, "conv bias", against, true);
  detail::check_channel_vector(bn.gamma, l.channels, who, "gamma", against, true);
  detail::check_channel_vector(bn.beta, l.channels, who, "beta", against, true);
  detail::check_channel_vector(bn.mean, l.channels, who, "running_mean", against);
  detail::check_channel_vector(bn.var, l.channels, who, "running_var", against);
  detail::check_bn_variance(bn.var, bn.eps, who, "running_var");
  detail::check_finite_vector(bn.gamma, who, "gamma");
  detail::check_finite_vector(bn.beta, who, "beta");
  detail::check_finite_vector(bn.mean, who, "running_mean");
  detail::check_finite_vector(bias, who, "conv bias");
  std::vector<T> k(l.channels);
  qat_scale_factor(bn.gamma, bn.var, bn.eps, k.data());
  for (std::size_t o = 0; o < l.outer; ++o)
    for (std::size_t c = 0; c < l.channels; ++c) {
      const std::size_t base = (o * l.channels + c) * l.inner;
      for (std::size_t i = 0; i < l.inner; ++i) weight_out[base + i] = weight[base + i] * k[c];
    }
  for (std::size_t c = 0; c < l.channels; ++c) {
    const T b = detail::bn_absent(bias) ? T(0) : bias[c];
    const T beta = detail::bn_absent(bn.beta) ? T(0) : bn.beta[c];
    bias_out[c] = (b - bn.mean[c]) * k[c] + beta;
  }
}

/// A folded weight and bias (the vector-returning form of fold_batch_norm).
template <class T>
struct folded_layer {
  std::vector<T> weight;  ///< the weight's shape
  std::vector<T> bias;    ///< C values
};

template <class T>
folded_layer<T> fold_batch_norm(tensor_view<const T> weight, int axis, tensor_view<const T> bias,
                                const batch_norm_view<T>& bn) {
  const channel_layout l = layout_along(weight.shape(), axis);
  folded_layer<T> out;
  out.weight.resize(weight.size());
  out.bias.resize(l.channels);
  fold_batch_norm(weight, axis, bias, bn, out.weight.data(), out.bias.data());
  return out;
}

/// w_s = w * k[c] per output channel on `axis` (the weight handed to fake-quant at QAT
/// time). k: C values; out: w.size() values.
template <class T>
void scale_weight(tensor_view<const T> w, int axis, tensor_view<const T> k, T* out) {
  const channel_layout l = layout_along(w.shape(), axis);
  detail::check_channel_vector(k, l.channels, "scale_weight", "k",
                               "the weight of shape " + w.shape().str() + " along axis " + std::to_string(axis));
  for (std::size_t o = 0; o < l.outer; ++o)
    for (std::size_t c = 0; c < l.channels; ++c) {
      const std::size_t base = (o * l.channels + c) * l.inner;
      for (std::size_t i = 0; i < l.inner; ++i) out[base + i] = w[base + i] * k[c];
    }
}

/// Backward of scale_weight: dw = dw_s * k[c] (w.size() values) and
/// dk[c] = sum over channel c of dw_s * w (C values, overwritten).
template <class T>
void scale_weight_backward(tensor_view<const T> dw_scaled, tensor_view<const T> w, int axis, tensor_view<const T> k,
                           T* dw, T* dk) {
  const char* who = "scale_weight_backward";
  detail::check_same_shape(dw_scaled, w, who, "dw_scaled", "w");
  const channel_layout l = layout_along(w.shape(), axis);
  detail::check_channel_vector(k, l.channels, who, "k",
                               "the weight of shape " + w.shape().str() + " along axis " + std::to_string(axis));
  std::vector<double> acc(l.channels, 0.0);
  for (std::size_t o = 0; o < l.outer; ++o)
    for (std::size_t c = 0; c < l.channels; ++c) {
      const std::size_t base = (o * l.channels + c) * l.inner;
      for (std::size_t i = 0; i < l.inner; ++i) {
        dw[base + i] = dw_scaled[base + i] * k[c];
        acc[c] += static_cast<double>(dw_scaled[base + i]) * static_cast<double>(w[base + i]);
      }
    }
  for (std::size_t c = 0; c < l.channels; ++c) dk[c] = static_cast<T>(acc[c]);
}

/// z = y / k[c] + bias[c] on an NCHW activation (PyTorch's conv_orig); bias may be empty.
/// Fails on a zero or non-finite k (gamma = 0 makes the approximate form divide by zero;
/// PyTorch's slow path exists for that case). out: y.size() values.
template <class T>
void unscale_output(tensor_view<const T> y, tensor_view<const T> k, tensor_view<const T> bias, T* out) {
  const char* who = "unscale_output";
  const channel_layout l = detail::check_activation(y, who, "y");
  const std::string against = "y of shape " + y.shape().str();
  detail::check_channel_vector(k, l.channels, who, "k", against);
  detail::check_channel_vector(bias, l.channels, who, "conv bias", against, true);
  for (std::size_t c = 0; c < l.channels; ++c)
    if (!std::isfinite(k[c]) || k[c] == T(0))
      detail::fail(errc::invalid_argument, std::string(who) + ": k[" + std::to_string(c) +
                                               "] = " + detail::bn_num(static_cast<double>(k[c])) +
                                               " (gamma / sqrt(var + eps)) must be finite and non-zero");
  for (std::size_t n = 0; n < l.outer; ++n)
    for (std::size_t c = 0; c < l.channels; ++c) {
      const std::size_t base = (n * l.channels + c) * l.inner;
      const T b = detail::bn_absent(bias) ? T(0) : bias[c];
      for (std::size_t i = 0; i < l.inner; ++i) out[base + i] = y[base + i] / k[c] + b;
    }
}

/// Backward of unscale_output: dy = dz / k[c] (y.size() values);
/// dk[c] = -sum(dz * y) / k[c]^2 (C values); dbias[c] = sum(dz) (C values; may be null).
template <class T>
void unscale_output_backward(tensor_view<const T> dz, tensor_view<const T> y, tensor_view<const T> k, T* dy, T* dk,
                             detail::bn_same_t<T>* dbias) {
  const char* who = "unscale_output_backward";
  detail::check_same_shape(dz, y, who, "dz", "y");
  const channel_layout l = detail::check_activation(y, who, "y");
  detail::check_channel_vector(k, l.channels, who, "k", "y of shape " + y.shape().str());
  for (std::size_t c = 0; c < l.channels; ++c)
    if (!std::isfinite(k[c]) || k[c] == T(0))
      detail::fail(errc::invalid_argument, std::string(who) + ": k[" + std::to_string(c) +
                                               "] = " + detail::bn_num(static_cast<double>(k[c])) +
                                               " must be finite and non-zero");
  std::vector<double> sum_dz_y(l.channels, 0.0), sum_dz(l.channels, 0.0);
  for (std::size_t n = 0; n < l.outer; ++n)
    for (std::size_t c = 0; c < l.channels; ++c) {
      const std::size_t base = (n * l.channels + c) * l.inner;
      for (std::size_t i = 0; i < l.inner; ++i) {
        dy[base + i] = dz[base + i] / k[c];
        sum_dz_y[c] += static_cast<double>(dz[base + i]) * static_cast<double>(y[base + i]);
        sum_dz[c] += static_cast<double>(dz[base + i]);
      }
    }
  for (std::size_t c = 0; c < l.channels; ++c) {
    const double kc = static_cast<double>(k[c]);
    dk[c] = static_cast<T>(-sum_dz_y[c] / (kc * kc));
    if (dbias) dbias[c] = static_cast<T>(sum_dz[c]);
  }
}

/// The gamma gradient through k = gamma / sqrt(running_var + eps):
/// dgamma[c] = dk[c] / sqrt(running_var[c] + eps) (C values, overwritten; add it to the BN's
/// own dgamma). running_var is a buffer and gets no gradient.
template <class T>
void scale_factor_backward(tensor_view<const T> dk, tensor_view<const T> running_var, detail::bn_same_t<T> eps,
                           T* dgamma) {
  const char* who = "scale_factor_backward";
  detail::check_present(running_var, who, "running_var");
  detail::check_channel_vector(dk, running_var.size(), who, "dk", "running_var");
  detail::check_bn_variance(running_var, eps, who, "running_var");
  for (std::size_t c = 0; c < dk.size(); ++c) dgamma[c] = dk[c] / std::sqrt(running_var[c] + eps);
}

/// BatchNorm in training mode, as torch.nn.functional.batch_norm(training=True):
/// y = (x - mean_B) / sqrt(var_B + eps) * gamma + beta with the biased batch variance var_B;
/// running_mean <- (1 - momentum) running_mean + momentum mean_B and
/// running_var <- (1 - momentum) running_var + momentum var_B * M / (M - 1) (unbiased;
/// M = N * spatial values per channel). momentum in [0, 1] (torch's momentum = None, a
/// cumulative average, is momentum = 1 / num_batches_tracked, the caller's counter);
/// eps > 0. y: x.size() values (may alias x);
/// saved_mean, saved_invstd (C values each, may be null): mean_B and 1 / sqrt(var_B + eps),
/// what batch_norm_backward_train needs. Fails when a channel has a single value (torch:
/// "Expected more than 1 value per channel when training").
template <class T>
void batch_norm_forward_train(tensor_view<const T> x, tensor_view<const T> gamma, tensor_view<const T> beta,
                              tensor_view<T> running_mean, tensor_view<T> running_var, detail::bn_same_t<T> eps,
                              detail::bn_same_t<T> momentum, T* y, detail::bn_same_t<T>* saved_mean,
                              detail::bn_same_t<T>* saved_invstd) {
  const char* who = "batch_norm_forward_train";
  const channel_layout l = detail::check_activation(x, who, "x");
  const std::string against = "x of shape " + x.shape().str();
  detail::check_channel_vector(gamma, l.channels, who, "gamma", against, true);
  detail::check_channel_vector(beta, l.channels, who, "beta", against, true);
  detail::check_channel_vector(tensor_view<const T>(running_mean), l.channels, who, "running_mean", against);
  detail::check_channel_vector(tensor_view<const T>(running_var), l.channels, who, "running_var", against);
  if (!std::isfinite(eps) || !(eps > T(0)))
    detail::fail(errc::invalid_argument,
                 std::string(who) + ": eps = " + detail::bn_num(static_cast<double>(eps)) + " must be positive");
  if (!(momentum >= T(0) && momentum <= T(1)))
    detail::fail(errc::invalid_argument, std::string(who) + ": momentum = " +
                                             detail::bn_num(static_cast<double>(momentum)) + " must be in [0, 1]");
  const std::size_t count = l.outer * l.inner;
  if (count < 2)
    detail::fail(errc::invalid_argument, std::string(who) + ": " + against +
                                             " has a single value per channel; batch statistics need at least 2");
  // NaN / Inf in the batch would poison the running statistics: reject before touching them.
  detail::throw_if(check_finite(x, who));
  for (std::size_t c = 0; c < l.channels; ++c) {
    // Two passes in double: the mean, then the centred sum of squares (stable for large means).
    double sum = 0.0;
    for (std::size_t n = 0; n < l.outer; ++n) {
      const T* p = x.data() + (n * l.channels + c) * l.inner;
      for (std::size_t i = 0; i < l.inner; ++i) sum += static_cast<double>(p[i]);
    }
    const double mean = sum / static_cast<double>(count);
    double ss = 0.0;
    for (std::size_t n = 0; n < l.outer; ++n) {
      const T* p = x.data() + (n * l.channels + c) * l.inner;
      for (std::size_t i = 0; i < l.inner; ++i) {
        const double d = static_cast<double>(p[i]) - mean;
        ss += d * d;
      }
    }
    const double var = ss / static_cast<double>(count);
    const double invstd = 1.0 / std::sqrt(var + static_cast<double>(eps));
    const double g = detail::bn_absent(gamma) ? 1.0 : static_cast<double>(gamma[c]);
    const double b = detail::bn_absent(beta) ? 0.0 : static_cast<double>(beta[c]);
    for (std::size_t n = 0; n < l.outer; ++n) {
      const std::size_t base = (n * l.channels + c) * l.inner;
      for (std::size_t i = 0; i < l.inner; ++i)
        y[base + i] = static_cast<T>((static_cast<double>(x[base + i]) - mean) * invstd * g + b);
    }
    const double mom = static_cast<double>(momentum);
    const double unbiased = ss / static_cast<double>(count - 1);
    running_mean[c] = static_cast<T>((1.0 - mom) * static_cast<double>(running_mean[c]) + mom * mean);
    running_var[c] = static_cast<T>((1.0 - mom) * static_cast<double>(running_var[c]) + mom * unbiased);
    if (saved_mean) saved_mean[c] = static_cast<T>(mean);
    if (saved_invstd) saved_invstd[c] = static_cast<T>(invstd);
  }
}

/// BatchNorm with running statistics (eval, or training with BN frozen):
/// y = (x - mean) / sqrt(var + eps) * gamma + beta. y: x.size() values.
template <class T>
void batch_norm_forward_eval(tensor_view<const T> x, const batch_norm_view<T>& bn, T* y) {
  const char* who = "batch_norm_forward_eval";
  const channel_layout l = detail::check_activation(x, who, "x");
  const std::string against = "x of shape " + x.shape().str();
  detail::check_channel_vector(bn.gamma, l.channels, who, "gamma", against, true);
  detail::check_channel_vector(bn.beta, l.channels, who, "beta", against, true);
  detail::check_channel_vector(bn.mean, l.channels, who, "running_mean", against);
  detail::check_channel_vector(bn.var, l.channels, who, "running_var", against);
  detail::check_bn_variance(bn.var, bn.eps, who, "running_var");
  for (std::size_t c = 0; c < l.channels; ++c) {
    const T invstd = T(1) / std::sqrt(bn.var[c] + bn.eps);
    const T g = detail::bn_absent(bn.gamma) ? T(1) : bn.gamma[c];
    const T b = detail::bn_absent(bn.beta) ? T(0) : bn.beta[c];
    for (std::size_t n = 0; n < l.outer; ++n) {
      const std::size_t base = (n * l.channels + c) * l.inner;
      for (std::size_t i = 0; i < l.inner; ++i) y[base + i] = (x[base + i] - bn.mean[c]) * invstd * g + b;
    }
  }
}

/// Backward of batch_norm_forward_train (batch statistics), with x_hat = (x - mean) invstd
/// and M values per channel: dbeta = sum(dy), dgamma = sum(dy * x_hat),
/// dx = gamma * invstd / M * (M dy - dbeta - x_hat dgamma). dx: x.size() values; dgamma,
/// dbeta: C values (may be null).
template <class T>
void batch_norm_backward_train(tensor_view<const T> dy, tensor_view<const T> x, tensor_view<const T> gamma,
                               tensor_view<const T> saved_mean, tensor_view<const T> saved_invstd, T* dx,
                               detail::bn_same_t<T>* dgamma, detail::bn_same_t<T>* dbeta) {
  const char* who = "batch_norm_backward_train";
  detail::check_same_shape(dy, x, who, "dy", "x");
  const channel_layout l = detail::check_activation(x, who, "x");
  const std::string against = "x of shape " + x.shape().str();
  detail::check_channel_vector(gamma, l.channels, who, "gamma", against, true);
  detail::check_channel_vector(saved_mean, l.channels, who, "saved_mean", against);
  detail::check_channel_vector(saved_invstd, l.channels, who, "saved_invstd", against);
  const double m = static_cast<double>(l.outer * l.inner);
  for (std::size_t c = 0; c < l.channels; ++c) {
    const double mean = static_cast<double>(saved_mean[c]), invstd = static_cast<double>(saved_invstd[c]);
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (std::size_t n = 0; n < l.outer; ++n) {
      const std::size_t base = (n * l.channels + c) * l.inner;
      for (std::size_t i = 0; i < l.inner; ++i) {
        const double d = static_cast<double>(dy[base + i]);
        sum_dy += d;
        sum_dy_xhat += d * (static_cast<double>(x[base + i]) - mean) * invstd;
      }
    }
    const double g = detail::bn_absent(gamma) ? 1.0 : static_cast<double>(gamma[c]);
    const double a = g * invstd / m;
    for (std::size_t n = 0; n < l.outer; ++n) {
      const std::size_t base = (n * l.channels + c) * l.inner;
      for (std::size_t i = 0; i < l.inner; ++i) {
        const double xhat = (static_cast<double>(x[base + i]) - mean) * invstd;
        dx[base + i] = static_cast<T>(a * (m * static_cast<double>(dy[base + i]) - sum_dy - xhat * sum_dy_xhat));
      }
    }
    if (dgamma) dgamma[c] = static_cast<T>(sum_dy_xhat);
    if (dbeta) dbeta[c] = static_cast<T>(sum_dy);
  }
}

/// Backward of batch_norm_forward_eval (running statistics are constants):
/// dx = dy * gamma / sqrt(var + eps), dgamma = sum(dy * x_hat), dbeta = sum(dy).
template <class T>
void batch_norm_backward_eval(tensor_view<const T> dy, tensor_view<const T> x, const batch_norm_view<T>& bn, T* dx,
                              detail::bn_same_t<T>* dgamma, detail::bn_same_t<T>* dbeta) {
  const char* who = "batch_norm_backward_eval";
  detail::check_same_shape(dy, x, who, "dy", "x");
  const channel_layout l = detail::check_activation(x, who, "x");
  const std::string against = "x of shape " + x.shape().str();
  detail::check_channel_vector(bn.gamma, l.channels, who, "gamma", against, true);
  detail::check_channel_vector(bn.mean, l.channels, who, "running_mean", against);
  detail::check_channel_vector(bn.var, l.channels, who, "running_var", against);
  detail::check_bn_variance(bn.var, bn.eps, who, "running_var");
  for (std::size_t c = 0; c < l.channels; ++c) {
    const double invstd = 1.0 / std::sqrt(static_cast<double>(bn.var[c]) + static_cast<double>(bn.eps));
    const double g = detail::bn_absent(bn.gamma) ? 1.0 : static_cast<double>(bn.gamma[c]);
    const double mean = static_cast<double>(bn.mean[c]);
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (std::size_t n = 0; n < l.outer; ++n) {
      const std::size_t base = (n * l.channels + c) * l.inner;
      for (std::size_t i = 0; i < l.inner; ++i) {
        const double d = static_cast<double>(dy[base + i]);
        sum_dy += d;
        sum_dy_xhat += d * (static_cast<double>(x[base + i]) - mean) * invstd;
        dx[base + i] = static_cast<T>(d * g * invstd);
      }
    }
    if (dgamma) dgamma[c] = static_cast<T>(sum_dy_xhat);
    if (dbeta) dbeta[c] = static_cast<T>(sum_dy);
  }
}

QLIB_NAMESPACE_END
