// Learnable fake quantization: gradients for the quantization parameters themselves.
//
// LSQ (Esser et al., 2020, "Learned Step Size Quantization", arXiv:1902.08153) learns the
// scale s (and, as PyTorch's _fake_quantize_learnable_per_{tensor,channel}_affine, the zero
// point z). The forward is fake_quantize (fakequant/fake_quant.hpp). With v = x / s,
// r = round(v) (the straight-through estimator takes d round(v) / dv = 1), q = r + z:
//
//                 qmin <= q <= qmax        q < qmin             q > qmax
//   dx_hat/dx     1                        0                    0
//   dx_hat/ds     r - v                    qmin - z             qmax - z
//   dx_hat/dz     0                        -s                   -s
//
// The scale row is the paper's eq. 3 (its Q_N = z - qmin, Q_P = qmax - z); the zero-point
// row is PyTorch's. Where the two differ, qlib follows PyTorch: the "inside" test is on
// the rounded value q (the paper compares v with -Q_N and Q_P), so a value within half a
// step outside the grid still counts as inside, and a model trained with qlib's gradients
// sees the same ones as with torch's learnable fake-quant. The parameter gradients are
// summed over the elements (per channel: over the channel's elements) and multiplied by
// the gradient scale g: LSQ's g = 1 / sqrt(N * qmax), N = elements per scale (paper,
// section 2.2), or N = all elements (torch.ao's _LearnableFakeQuantize passes x.numel()
// even per channel), or none, or a given value. qlib rounds x / s and then adds z, like
// ONNX QuantizeLinear and core/quantize.hpp; torch's learnable kernels round
// z + x * (1 / s), so single elements can differ on exact ties.
//
// ULQ (Ascend AMCT's retrain op for activations: hicann/amct,
// amct_pytorch/.../custom_op/ulq_retrain/ulq_retrain_impl.py, and the TBE kernels
// act_ulq / act_ulq_clamp_{max,min}_grad) learns a clip range [clip_min, clip_max]. The
// forward quantizes with the scale and offset AMCT computes from that range
// (qparams_from_range, core/qparams.hpp: the range is first widened to contain 0; AMCT's
// rule with qspec::amct_activation()). The backward is AMCT's: x itself is compared with
// the clip bounds xlo = (qmin - z) s and xhi = (qmax - z) s, and with n = qmax - qmin,
// e = u - z for u = qmin - clip_min / s (the rounding residual of the zero point),
//
//                 xlo <= x <= xhi          x < xlo              x > xhi
//   d/dx          1                        0                    0
//   d/dclip_max   (r - v) / n              e / n                1 + e / n
//   d/dclip_min   -(r - v) / n             1 - e / n            -e / n
//
// which is the exact derivative of the forward with both roundings passed straight
// through. Derivation (affine): s = (clip_max - clip_min) / n, z = round(u) with
// dz = du; above the range x_hat = (qmax - z) s, so d x_hat = -s du + (qmax - z) ds with
// du = -d clip_min / s + clip_min ds / s^2, i.e. d x_hat = d clip_min + (n + e) ds; below,
// (qmin - z) s gives d clip_min + e ds; inside, round(v) s gives (r - v) ds. The TBE
// kernel uses the same residual on both sides; AMCT's PyTorch code takes the residual of
// clip_max / s above the range, equal up to rounding error (clip_max / s - clip_min / s
// = n). Symmetric grids learn the threshold max(|clip_min|, |clip_max|) through
// s = T / divisor (the divisor of the spec's convention; AMCT's tie rule: clip_min on a
// tie). A bound that the widening to 0 clamped gets gradient 0 (AMCT restores the
// previous clip values in that case; qlib keeps the function it computed). When the range
// is so small that the scale became 1 (s < FLT_EPSILON), the clip gradients are 0.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../core/check.hpp"
#include "../core/qparams.hpp"
#include "../core/tensor_view.hpp"
#include "../detail/learnable_kernels.hpp"
#include "fake_quant.hpp"

QLIB_NAMESPACE_BEGIN

/// Which gradient scale multiplies the LSQ scale and zero-point gradients.
enum class lsq_grad_scale : std::uint8_t {
  per_scale,   ///< 1 / sqrt(N * qmax), N = elements sharing the scale (LSQ paper; the default)
  per_tensor,  ///< 1 / sqrt(N * qmax), N = all elements even per channel (torch.ao)
  none,        ///< 1
  custom,      ///< lsq_options::custom_grad_scale
};

struct lsq_options {
  rounding mode = rounding::half_to_even;
  lsq_grad_scale grad_scale = lsq_grad_scale::per_scale;
  double custom_grad_scale = 1.0;  ///< used with lsq_grad_scale::custom; finite and >= 0
};

/// LSQ's gradient scale 1 / sqrt(N * qmax) for N elements per scale (N = 0 counts as 1).
inline double lsq_grad_factor(std::size_t elements, const qspec& spec) {
  detail::fq::check_spec("lsq_grad_factor", spec);
  const double n = elements > 0 ? static_cast<double>(elements) : 1.0;
  return 1.0 / std::sqrt(n * static_cast<double>(spec.qmax()));
}

/// A learned real-valued zero point rounded onto the grid as PyTorch's learnable
/// fake-quant forward does (round half to even, then clamp to [qmin, qmax]).
template <class T>
std::int32_t lsq_zero_point(T zero_point, const qspec& spec) {
  detail::fq::check_spec("lsq_zero_point", spec);
  if (!std::isfinite(zero_point))
    detail::fail(errc::non_finite, "lsq_zero_point: zero_point = " + detail::value_str(zero_point) + " is not finite");
  T z = round_half_even(zero_point);
  z = z < static_cast<T>(spec.qmin()) ? static_cast<T>(spec.qmin()) : z;
  z = z > static_cast<T>(spec.qmax()) ? static_cast<T>(spec.qmax()) : z;
  return static_cast<std::int32_t>(z);
}

/// Per-tensor LSQ parameter gradients (already multiplied by the gradient scale).
template <class T>
struct lsq_grads {
  T scale = T(0);
  T zero_point = T(0);
};

/// Per-channel LSQ parameter gradients, one per channel.
template <class T>
struct lsq_channel_grads {
  std::vector<T> scale;
  std::vector<T> zero_point;
};

namespace detail {
namespace fq {

inline double lsq_factor(const std::string& who, const lsq_options& opt, std::size_t per_scale, std::size_t per_tensor,
                         const qspec& spec) {
  switch (opt.grad_scale) {
    case lsq_grad_scale::per_scale:
      return lsq_grad_factor(per_scale, spec);
    case lsq_grad_scale::per_tensor:
      return lsq_grad_factor(per_tensor, spec);
    case lsq_grad_scale::none:
      return 1.0;
    case lsq_grad_scale::custom:
      break;
  }
  if (!std::isfinite(opt.custom_grad_scale) || opt.custom_grad_scale < 0.0)
    fail(std::isfinite(opt.custom_grad_scale) ? errc::invalid_argument : errc::non_finite,
         who + ": option custom_grad_scale = " + value_str(opt.custom_grad_scale) + " must be finite and >= 0");
  return opt.custom_grad_scale;
}

template <class T>
void check_backward_args(const std::string& who, const tensor_view<const T>& dy, const tensor_view<const T>& x,
                         const tensor_view<T>& dx, const qspec& spec) {
  check_float_type<T>();
  check_spec(who, spec);
  check_data(who, "dy", dy);
  check_data(who, "x", x);
  check_data(who, "dx", dx);
  check_same_shape(who, "x", x, "dy", dy);
  check_same_shape(who, "dx", dx, "dy", dy);
  check_overlap(who, "dx", dx, "dy", dy, true);
  check_overlap(who, "dx", dx, "x", x, true);
}

template <class R, class T>
fq::lsq_sums lsq_any(const T* dy, const T* x, T* dx, std::size_t n, const fq::uniform<T>& g) {
  if (dx != dy && dx != x) return fq::lsq_backward<R>(dy, x, dx, n, g);
  if (dx == dy && dy != x) return fq::lsq_backward_inplace<R>(dx, x, n, g);
  return fq::lsq_backward_aliased<R>(dy, x, dx, n, g);
}

}  // namespace fq
}  // namespace detail

/// LSQ backward per tensor: writes dx (may be dy's or x's own buffer) and returns the
/// gradients of the loss with respect to p.scale and the (real-valued) zero point.
template <class T>
lsq_grads<T> lsq_backward(tensor_view<const detail::fq::nondeduced_t<T>> dy,
                          tensor_view<const detail::fq::nondeduced_t<T>> x, const qparams<T>& p, const qspec& spec,
                          tensor_view<T> dx, const lsq_options& opt = {}) {
  const std::string who = "lsq_backward";
  detail::fq::check_backward_args(who, dy, x, dx, spec);
  detail::fq::check_scale_zero_point(who, "", p.scale, p.zero_point, spec);
  const double factor = detail::fq::lsq_factor(who, opt, x.size(), x.size(), spec);
  const detail::fq::uniform<T> g(detail::fq::make_grid(p.scale, p.zero_point, spec.qmin(), spec.qmax()));
  detail::fq::lsq_sums sums;
  detail::fq::with_rounding(
      opt.mode, [&](auto r) { sums = detail::fq::lsq_any<decltype(r)>(dy.data(), x.data(), dx.data(), dx.size(), g); });
  lsq_grads<T> out;
  out.scale = static_cast<T>(sums.scale * factor);
  out.zero_point = static_cast<T>(-static_cast<double>(p.scale) * sums.outside * factor);
  return out;
}

/// LSQ backward per channel along p.axis: dx, and one scale and zero-point gradient per
/// channel. Only O(channels) extra memory.
template <class T>
lsq_channel_grads<T> lsq_backward(tensor_view<const detail::fq::nondeduced_t<T>> dy,
                                  tensor_view<const detail::fq::nondeduced_t<T>> x, const channel_qparams<T>& p,
                                  const qspec& spec, tensor_view<T> dx, const lsq_options& opt = {}) {
  const std::string who = "lsq_backward";
  detail::fq::check_backward_args(who, dy, x, dx, spec);
  const channel_layout l = detail::fq::check_channel_qparams(who, "x", x, p, spec);
  const double factor = detail::fq::lsq_factor(who, opt, l.outer * l.inner, x.size(), spec);
  std::vector<double> sum_s(l.channels, 0.0), sum_out(l.channels, 0.0);
  if (!x.empty()) {
    const detail::fq::channel_grids<T> cg(p, spec);
    const T* pdy = dy.data();
    const T* px = x.data();
    T* pdx = dx.data();
    const bool disjoint = pdx != pdy && pdx != px;
    detail::fq::with_rounding(opt.mode, [&](auto r) {
      using R = decltype(r);
      if (l.inner == 1 && disjoint) {
        // Channel innermost: vectorize across channels, per-channel lane sums.
        std::vector<T> lane_s(l.channels), lane_out(l.channels);
        detail::fq::lsq_backward_rows<R>(pdy, px, pdx, l.outer, l.channels, cg.arrays(), lane_s.data(), lane_out.data(),
                                         sum_s.data(), sum_out.data());
        return;
      }
      for (std::size_t o = 0; o < l.outer; ++o)
        for (std::size_t c = 0; c < l.channels; ++c) {
          const std::size_t off = (o * l.channels + c) * l.inner;
          const detail::fq::lsq_sums s =
              detail::fq::lsq_any<R>(pdy + off, px + off, pdx + off, l.inner, detail::fq::uniform<T>(cg.at(c)));
          sum_s[c] += s.scale;
          sum_out[c] += s.outside;
        }
    });
  }
  lsq_channel_grads<T> out;
  out.scale.resize(l.channels);
  out.zero_point.resize(l.channels);
  for (std::size_t c = 0; c < l.channels; ++c) {
    out.scale[c] = static_cast<T>(sum_s[c] * factor);
    out.zero_point[c] = static_cast<T>(-static_cast<double>(p.scale[c]) * sum_out[c] * factor);
  }
  return out;
}

// ---- ULQ -------------------------------------------------------------------------------

struct ulq_options {
  rounding mode = rounding::half_to_even;  ///< rounding of x / s (the zero point follows qparams_from_range)
  bool fixed_min = false;                  ///< AMCT fixed_min: clip_min is taken as 0 (ReLU inputs)
};

/// Gradients of the loss with respect to the clip bounds.
template <class T>
struct ulq_grads {
  T clip_min = T(0);
  T clip_max = T(0);
};

namespace detail {
namespace fq {

template <class T>
void check_clip_range(const std::string& who, T clip_min, T clip_max, const ulq_options& opt) {
  if (!std::isfinite(clip_min)) fail(errc::non_finite, who + ": clip_min = " + value_str(clip_min) + " is not finite");
  if (!std::isfinite(clip_max)) fail(errc::non_finite, who + ": clip_max = " + value_str(clip_max) + " is not finite");
  if (!(clip_min < clip_max))
    fail(errc::invalid_argument,
         who + ": clip_min = " + std::to_string(clip_min) + " must be below clip_max = " + std::to_string(clip_max));
  if (opt.fixed_min && !(clip_max > T(0)))
    fail(errc::invalid_argument,
         who + ": with option fixed_min, clip_max = " + std::to_string(clip_max) + " must be positive");
}

/// How the scale follows from the clip range (mirrors qparams_from_range, core/qparams.hpp).
template <class T>
struct ulq_scale_rule {
  T lo, hi;         ///< the clip range used (clip_min is 0 with fixed_min)
  T divisor;        ///< s = (max(hi, 0) - min(lo, 0)) / divisor, or threshold / divisor
  bool degenerate;  ///< the rule's scale fell below FLT_EPSILON and was replaced by 1
};

template <class T>
ulq_scale_rule<T> ulq_rule(T clip_min, T clip_max, const qspec& spec, const ulq_options& opt) {
  ulq_scale_rule<T> r{};
  r.lo = opt.fixed_min ? T(0) : clip_min;
  r.hi = clip_max;
  T raw;
  if (spec.scheme == qscheme::affine) {
    r.divisor = static_cast<T>(spec.qmax() - spec.qmin());
    const T l = std::fmin(r.lo, T(0)), h = std::fmax(r.hi, T(0));
    raw = (h - l) / r.divisor;
  } else {
    if (!spec.is_signed) {
      r.divisor = static_cast<T>(spec.qmax());
    } else if (spec.convention == qconvention::torch) {
      r.divisor = static_cast<T>(spec.qmax() - spec.qmin()) / T(2);
    } else {
      r.divisor = static_cast<T>(std::int32_t{1} << (spec.bits - 1)) - T(1);
      if (spec.convention == qconvention::amct && !(std::fabs(r.hi) > std::fabs(r.lo)) && r.lo < T(0))
        r.divisor += T(1);
    }
    raw = std::fmax(std::fabs(r.lo), std::fabs(r.hi)) / r.divisor;
  }
  r.degenerate = !(raw >= static_cast<T>(flt_epsilon));
  return r;
}

template <class T>
T sign_of(T v) {
  return v > T(0) ? T(1) : v < T(0) ? T(-1) : T(0);
}

}  // namespace fq
}  // namespace detail

/// Scale and zero point of a ULQ clip range: qparams_from_range over [clip_min, clip_max]
/// ([0, clip_max] with fixed_min), with spec's convention (qspec::amct_activation() for
/// AMCT's rule).
template <class T>
qparams<T> ulq_qparams(T clip_min, T clip_max, const qspec& spec, const ulq_options& opt = {}) {
  detail::fq::check_float_type<T>();
  const std::string who = "ulq_qparams";
  detail::fq::check_spec(who, spec);
  detail::fq::check_clip_range(who, clip_min, clip_max, opt);
  return qparams_from_range(opt.fixed_min ? T(0) : clip_min, clip_max, spec);
}

/// ULQ forward: fake_quantize with ulq_qparams(clip_min, clip_max). out may be x's buffer.
template <class T>
void ulq_forward(tensor_view<const detail::fq::nondeduced_t<T>> x, T clip_min, T clip_max, const qspec& spec,
                 tensor_view<T> out, const ulq_options& opt = {}) {
  const std::string who = "ulq_forward";
  detail::fq::check_float_type<T>();
  detail::fq::check_forward_args(who, x, out, spec);
  detail::fq::check_clip_range(who, clip_min, clip_max, opt);
  const qparams<T> p = qparams_from_range(opt.fixed_min ? T(0) : clip_min, clip_max, spec);
  detail::fq::forward_per_tensor(who, x, p, spec, out, nullptr, opt.mode);
}

/// ULQ backward (AMCT): writes dx (may be dy's or x's own buffer) and returns the
/// gradients with respect to clip_min and clip_max.
template <class T>
ulq_grads<T> ulq_backward(tensor_view<const detail::fq::nondeduced_t<T>> dy,
                          tensor_view<const detail::fq::nondeduced_t<T>> x, T clip_min, T clip_max, const qspec& spec,
                          tensor_view<T> dx, const ulq_options& opt = {}) {
  const std::string who = "ulq_backward";
  detail::fq::check_backward_args(who, dy, x, dx, spec);
  detail::fq::check_clip_range(who, clip_min, clip_max, opt);
  const detail::fq::ulq_scale_rule<T> rule = detail::fq::ulq_rule(clip_min, clip_max, spec, opt);
  const qparams<T> p = qparams_from_range(rule.lo, rule.hi, spec);
  const detail::fq::grid<T> g = detail::fq::make_grid(p.scale, p.zero_point, spec.qmin(), spec.qmax());
  const detail::fq::ulq_grid<T> ug{g.scale, g.lo, g.hi, g.vlo, g.vhi, g.zf, p.scale * g.lo, p.scale * g.hi};
  detail::fq::ulq_sums sums;
  detail::fq::with_rounding(opt.mode, [&](auto r) {
    using R = decltype(r);
    if (dx.data() != dy.data() && dx.data() != x.data())
      sums = detail::fq::ulq_backward<R>(dy.data(), x.data(), dx.data(), dx.size(), ug);
    else
      sums = detail::fq::ulq_backward_aliased<R>(dy.data(), x.data(), dx.data(), dx.size(), ug);
  });
  ulq_grads<T> out;
  if (rule.degenerate) return out;  // s = 1 does not depend on the clip range
  const double n = rule.divisor;
  if (spec.scheme == qscheme::affine) {
    // The zero point is z = round(u) (or qmin - round(lo / s) under AMCT's rule), with
    // u = qmin - lo / s; its rounding passes straight through, leaving the residual
    // e = u - z, taken from the z actually computed so that it follows either rule.
    const T l = std::fmin(rule.lo, T(0));
    const T u = static_cast<T>(spec.qmin()) - l / p.scale;
    const double e = static_cast<double>(u) - static_cast<double>(p.zero_point);
    const double common = (sums.inner + e * (sums.above + sums.below)) / n;
    const double d_hi = common + sums.above;
    const double d_lo = -common + sums.below;
    // The range is widened to contain 0: a bound on the wrong side of 0 does not move it.
    out.clip_max = rule.hi >= T(0) ? static_cast<T>(d_hi) : T(0);
    out.clip_min = (!opt.fixed_min && rule.lo <= T(0)) ? static_cast<T>(d_lo) : T(0);
    return out;
  }
  // Symmetric: s = max(|lo|, |hi|) / divisor with z fixed; the threshold comes from
  // clip_max when |clip_max| > |clip_min|, else from clip_min (AMCT's tie rule).
  const double d_s = sums.inner + static_cast<double>(g.lo) * sums.below + static_cast<double>(g.hi) * sums.above;
  if (std::fabs(rule.hi) > std::fabs(rule.lo))
    out.clip_max = static_cast<T>(d_s * static_cast<double>(detail::fq::sign_of(rule.hi)) / n);
  else if (!opt.fixed_min)
    out.clip_min = static_cast<T>(d_s * static_cast<double>(detail::fq::sign_of(rule.lo)) / n);
  return out;
}

QLIB_NAMESPACE_END
