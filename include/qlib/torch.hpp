// qlib/torch.hpp: opt-in libtorch adapter. Autograd functions that run qlib's fake-quant
// (fakequant/fake_quant.hpp, fakequant/learnable.hpp) inside a libtorch C++ model:
//
//   fake_quantize_per_tensor(x, scale, zero_point, spec)              STE backward
//   fake_quantize_per_channel(x, scale, zero_point, axis, spec)       STE backward
//   fake_quantize_learnable_per_tensor(x, scale, zero_point, spec)    LSQ: grads for x, s, z
//   fake_quantize_learnable_per_channel(x, scale, zero_point, axis, spec)
//
// They are drop-in counterparts of torch::fake_quantize_per_{tensor,channel}_affine and
// torch::_fake_quantize_learnable_per_{tensor,channel}_affine (tests/torch/ compares values
// and gradients); spec_from_range(quant_min, quant_max) turns torch's integer range into a
// qspec. Differences from ATen, on purpose:
// - qlib divides by the scale (x / s, as ONNX QuantizeLinear); ATen multiplies by 1 / s, so
//   an element within an ulp of a rounding tie may land one step apart.
// - qlib sums the LSQ parameter gradients in double; ATen sums per-element float terms, so
//   those reductions agree to float rounding, not bit for bit.
// - The LSQ gradient scale is qlib's lsq_options: by default LSQ's 1 / sqrt(N * qmax) with
//   N the elements per scale (the paper); torch_grad_factor(g) reproduces ATen's explicit
//   grad_factor argument (torch.ao's _LearnableFakeQuantize passes 1 / sqrt(numel * qmax)).
//
// Tensors: CPU, float32 or float64 (any strides: a contiguous copy is made when needed).
// Per-channel scale / zero point: 1-D with one value per channel of x along `axis`
// (negative counts from the end). Zero points of the STE functions are integers (any
// integer dtype, or a float dtype holding integral values); the learnable ones are real and
// rounded half to even, then clamped to the grid, in the forward (as ATen does).
// Bad arguments fail through qlib::detail::fail (qlib::error, naming the argument).
//
// Build: needs libtorch (Debian: libtorch-dev 1.13; CMake: find_package(Torch CONFIG)) and
// exceptions. Not included by qlib/quant.hpp.
#pragma once

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "config.hpp"
#include "core/qparams.hpp"
#include "core/tensor_view.hpp"
#include "fakequant/fake_quant.hpp"
#include "fakequant/learnable.hpp"

QLIB_NAMESPACE_BEGIN
namespace libtorch {

/// The qspec of ATen's integer range [quant_min, quant_max]: [0, 2^b - 1] (unsigned),
/// [-2^(b-1), 2^(b-1) - 1] (signed) or [-(2^(b-1) - 1), 2^(b-1) - 1] (signed, narrow), for
/// b in [2, 16]. The convention only matters to qparams_from_range; torch's is used. Any
/// other range fails, naming it.
inline qspec spec_from_range(std::int64_t quant_min, std::int64_t quant_max) {
  qspec s;
  s.convention = qconvention::torch;
  s.scheme = qscheme::affine;
  for (int b = 2; b <= 16; ++b) {
    const std::int64_t half = std::int64_t{1} << (b - 1), full = std::int64_t{1} << b;
    s.bits = b;
    if (quant_min == 0 && quant_max == full - 1) {
      s.is_signed = false;
      return s;
    }
    if (quant_max == half - 1 && (quant_min == -half || quant_min == -(half - 1))) {
      s.is_signed = true;
      s.narrow_range = quant_min == -(half - 1);
      return s;
    }
  }
  detail::fail(errc::invalid_argument, "spec_from_range: [quant_min, quant_max] = [" + std::to_string(quant_min) +
                                           ", " + std::to_string(quant_max) +
                                           "] is not an unsigned, signed or narrow signed grid of 2..16 bits");
}

/// lsq_options that reproduce ATen's explicit grad_factor argument.
inline lsq_options torch_grad_factor(double grad_factor) {
  lsq_options o;
  o.grad_scale = lsq_grad_scale::custom;
  o.custom_grad_scale = grad_factor;
  return o;
}

namespace detail {

using qlib::detail::fail;

inline void check_input(const at::Tensor& t, const char* who, const char* arg) {
  if (!t.defined()) fail(errc::invalid_argument, std::string(who) + ": " + arg + " is an undefined tensor");
  if (!t.device().is_cpu())
    fail(errc::invalid_argument,
         std::string(who) + ": " + arg + " is on " + t.device().str() + "; qlib's libtorch adapter runs on the CPU");
  const at::ScalarType d = t.scalar_type();
  if (d != at::kFloat && d != at::kDouble)
    fail(errc::invalid_argument,
         std::string(who) + ": " + arg + " has dtype " + c10::toString(d) + "; float32 or float64 expected");
  if (t.dim() > shape_t::max_rank)
    fail(errc::invalid_argument,
         std::string(who) + ": " + arg + " has " + std::to_string(t.dim()) + " dimensions; qlib supports at most 8");
}

/// Autograd reads its inputs' metadata before forward runs: check them first.
inline const at::Tensor& defined(const at::Tensor& t, const char* who, const char* arg) {
  if (!t.defined()) fail(errc::invalid_argument, std::string(who) + ": " + arg + " is an undefined tensor");
  return t;
}

inline shape_t shape_of(const at::Tensor& t) { return shape_t::from_range(t.sizes().begin(), t.sizes().end()); }

/// A read-only qlib view of a contiguous tensor (the caller keeps the tensor alive).
template <class T>
tensor_view<const T> cview(const at::Tensor& t, const char* name) {
  return tensor_view<const T>(t.data_ptr<T>(), shape_of(t), name);
}
template <class T>
tensor_view<T> mview(at::Tensor& t, const char* name) {
  return tensor_view<T>(t.data_ptr<T>(), shape_of(t), name);
}

/// Runs f(T{}) with T the C++ type of a float32 / float64 tensor.
template <class F>
void with_float_type(const at::Tensor& t, F&& f) {
  if (t.scalar_type() == at::kDouble)
    f(double{});
  else
    f(float{});
}

inline int normalize_axis(std::int64_t axis, const at::Tensor& x, const char* who) {
  const std::int64_t rank = x.dim();
  const std::int64_t a = axis < 0 ? axis + rank : axis;
  if (rank == 0 || a < 0 || a >= rank)
    fail(errc::invalid_argument, std::string(who) + ": axis " + std::to_string(axis) +
                                     " is out of range for x of rank " + std::to_string(rank));
  return static_cast<int>(a);
}

/// One value per channel, read as double (CPU, 1-D, `channels` values).
inline std::vector<double> channel_values(const at::Tensor& v, std::size_t channels, const char* who, const char* arg) {
  if (!v.defined()) fail(errc::invalid_argument, std::string(who) + ": " + arg + " is an undefined tensor");
  if (!v.device().is_cpu()) fail(errc::invalid_argument, std::string(who) + ": " + arg + " must be on the CPU");
  if (v.dim() > 1 || static_cast<std::size_t>(v.numel()) != channels)
    fail(errc::invalid_argument, std::string(who) + ": " + arg + " has shape " + shape_of(v).str() + " but " +
                                     std::to_string(channels) + " values (one per channel) are expected");
  const at::Tensor d = v.detach().to(at::kDouble).contiguous();
  const double* p = d.data_ptr<double>();
  return std::vector<double>(p, p + channels);
}

/// Integer zero points from any integer dtype, or a float dtype with integral values.
inline std::vector<std::int32_t> integer_zero_points(const at::Tensor& z, std::size_t channels, const char* who) {
  const std::vector<double> v = channel_values(z, channels, who, "zero_point");
  std::vector<std::int32_t> out(channels);
  for (std::size_t c = 0; c < channels; ++c) {
    if (!(std::fabs(v[c]) < 2147483648.0) || v[c] != std::floor(v[c]))
      fail(errc::invalid_argument, std::string(who) + ": zero_point[" + std::to_string(c) +
                                       "] = " + std::to_string(v[c]) + " is not an int32 integer");
    out[c] = static_cast<std::int32_t>(v[c]);
  }
  return out;
}

/// qspec <-> saved_data (AutogradContext keeps IValues).
inline std::vector<std::int64_t> pack(const qspec& s) {
  return {s.bits, static_cast<std::int64_t>(s.scheme), s.is_signed, s.narrow_range,
          static_cast<std::int64_t>(s.convention)};
}
inline qspec unpack_spec(const std::vector<std::int64_t>& v) {
  qspec s;
  s.bits = static_cast<int>(v.at(0));
  s.scheme = static_cast<qscheme>(v.at(1));
  s.is_signed = v.at(2) != 0;
  s.narrow_range = v.at(3) != 0;
  s.convention = static_cast<qconvention>(v.at(4));
  return s;
}
inline std::vector<double> pack(const lsq_options& o) {
  return {static_cast<double>(o.mode), static_cast<double>(o.grad_scale), o.custom_grad_scale};
}
inline lsq_options unpack_lsq(const std::vector<double>& v) {
  lsq_options o;
  o.mode = static_cast<rounding>(static_cast<int>(v.at(0)));
  o.grad_scale = static_cast<lsq_grad_scale>(static_cast<int>(v.at(1)));
  o.custom_grad_scale = v.at(2);
  return o;
}

inline void check_spec(const qspec& spec, const char* who) {
  const status s = spec.validate();
  if (!s.ok()) fail(s.code(), std::string(who) + ": " + s.message());
}

/// Per-channel parameters of type T from double scales and integer zero points.
template <class T>
channel_qparams<T> make_channel_qparams(const std::vector<double>& scale, const std::vector<std::int32_t>& zero_point,
                                        int axis) {
  channel_qparams<T> p;
  p.axis = axis;
  p.scale.assign(scale.begin(), scale.end());
  p.zero_point = zero_point;
  return p;
}

}  // namespace detail

// ---- Straight-through estimator ----------------------------------------------------------

namespace detail {
/// dx = dy * mask, the mask saved by a cachemask forward (the straight-through estimator).
inline at::Tensor ste_backward(torch::autograd::AutogradContext* ctx, const torch::autograd::variable_list& grads) {
    const at::Tensor mask = ctx->get_saved_variables()[0];
    const at::Tensor dy = grads[0].contiguous();
    at::Tensor dx = at::empty_like(dy);
    detail::with_float_type(dy, [&](auto t) {
      using T = decltype(t);
      fake_quantize_backward(detail::cview<T>(dy, "dy"),
                             tensor_view<const std::uint8_t>(mask.data_ptr<std::uint8_t>(), detail::shape_of(mask)),
                             detail::mview<T>(dx, "dx"));
    });
    return dx;
}
}  // namespace detail

/// out = fake_quant(x) with one (scale, zero_point); backward dx = dy inside the grid, 0
/// outside (qlib's cachemask form: a byte mask is saved, not x).
struct fake_quantize_per_tensor_function : torch::autograd::Function<fake_quantize_per_tensor_function> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, double scale,
                            std::int64_t zero_point, const qspec& spec) {
    const char* who = "qlib::libtorch::fake_quantize_per_tensor";
    detail::check_input(x, who, "x");
    detail::check_spec(spec, who);
    if (zero_point < spec.qmin() || zero_point > spec.qmax())
      detail::fail(errc::invalid_argument, std::string(who) + ": zero_point = " + std::to_string(zero_point) +
                                               " is outside the grid [" + std::to_string(spec.qmin()) + ", " +
                                               std::to_string(spec.qmax()) + "]");
    const at::Tensor xc = x.contiguous();
    at::Tensor out = at::empty_like(xc);
    at::Tensor mask = at::empty(xc.sizes(), xc.options().dtype(at::kByte));
    detail::with_float_type(xc, [&](auto t) {
      using T = decltype(t);
      const qparams<T> p{static_cast<T>(scale), static_cast<std::int32_t>(zero_point)};
      fake_quantize_cachemask(detail::cview<T>(xc, "x"), p, spec, detail::mview<T>(out, "out"),
                              tensor_view<std::uint8_t>(mask.data_ptr<std::uint8_t>(), detail::shape_of(mask)));
    });
    ctx->save_for_backward({mask});
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    return {detail::ste_backward(ctx, grad_outputs), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

/// Per-channel STE along `axis`: scale (C values, positive) and zero_point (C integers).
struct fake_quantize_per_channel_function : torch::autograd::Function<fake_quantize_per_channel_function> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& scale,
                            const at::Tensor& zero_point, std::int64_t axis, const qspec& spec) {
    const char* who = "qlib::libtorch::fake_quantize_per_channel";
    detail::check_input(x, who, "x");
    detail::check_spec(spec, who);
    const int a = detail::normalize_axis(axis, x, who);
    const std::size_t channels = static_cast<std::size_t>(x.size(a));
    const std::vector<double> s = detail::channel_values(scale, channels, who, "scale");
    const std::vector<std::int32_t> z = detail::integer_zero_points(zero_point, channels, who);
    const at::Tensor xc = x.contiguous();
    at::Tensor out = at::empty_like(xc);
    at::Tensor mask = at::empty(xc.sizes(), xc.options().dtype(at::kByte));
    detail::with_float_type(xc, [&](auto t) {
      using T = decltype(t);
      fake_quantize_cachemask(detail::cview<T>(xc, "x"), detail::make_channel_qparams<T>(s, z, a), spec,
                              detail::mview<T>(out, "out"),
                              tensor_view<std::uint8_t>(mask.data_ptr<std::uint8_t>(), detail::shape_of(mask)));
    });
    ctx->save_for_backward({mask});
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    return {detail::ste_backward(ctx, grad_outputs), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// ---- LSQ: learnable scale and zero point ---------------------------------------------------

/// Learnable per-tensor fake-quant (Esser et al. 2020): scale and zero_point are 1-value
/// float tensors (typically parameters); the backward gives dx (STE), dscale and
/// dzero_point (fakequant/learnable.hpp, scaled by opt's gradient scale).
struct fake_quantize_learnable_per_tensor_function
    : torch::autograd::Function<fake_quantize_learnable_per_tensor_function> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& scale,
                            const at::Tensor& zero_point, const qspec& spec, const lsq_options& opt) {
    const char* who = "qlib::libtorch::fake_quantize_learnable_per_tensor";
    detail::check_input(x, who, "x");
    detail::check_spec(spec, who);
    const double s = detail::channel_values(scale, 1, who, "scale")[0];
    const double zr = detail::channel_values(zero_point, 1, who, "zero_point")[0];
    const at::Tensor xc = x.contiguous();
    at::Tensor out = at::empty_like(xc);
    detail::with_float_type(xc, [&](auto t) {
      using T = decltype(t);
      const qparams<T> p{static_cast<T>(s), lsq_zero_point(static_cast<T>(zr), spec)};
      fake_quantize(detail::cview<T>(xc, "x"), p, spec, detail::mview<T>(out, "out"), opt.mode);
    });
    ctx->save_for_backward({xc, scale, zero_point});
    ctx->saved_data["spec"] = detail::pack(spec);
    ctx->saved_data["lsq"] = detail::pack(opt);
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& xc = saved[0];
    const at::Tensor& scale = saved[1];
    const at::Tensor& zero_point = saved[2];
    const qspec spec = detail::unpack_spec(ctx->saved_data["spec"].toIntVector());
    const lsq_options opt = detail::unpack_lsq(ctx->saved_data["lsq"].toDoubleVector());
    const at::Tensor dy = grad_outputs[0].to(xc.scalar_type()).contiguous();
    at::Tensor dx = at::empty_like(xc);
    double ds = 0.0, dz = 0.0;
    detail::with_float_type(xc, [&](auto t) {
      using T = decltype(t);
      const T s = static_cast<T>(scale.detach().to(at::kDouble).item<double>());
      const T zr = static_cast<T>(zero_point.detach().to(at::kDouble).item<double>());
      const qparams<T> p{s, lsq_zero_point(zr, spec)};
      const lsq_grads<T> g =
          lsq_backward(detail::cview<T>(dy, "dy"), detail::cview<T>(xc, "x"), p, spec, detail::mview<T>(dx, "dx"), opt);
      ds = static_cast<double>(g.scale);
      dz = static_cast<double>(g.zero_point);
    });
    return {dx, at::full_like(scale, ds), at::full_like(zero_point, dz), at::Tensor(), at::Tensor()};
  }
};

/// Learnable per-channel fake-quant along `axis`: scale and zero_point hold one float per
/// channel; their gradients have the same shapes.
struct fake_quantize_learnable_per_channel_function
    : torch::autograd::Function<fake_quantize_learnable_per_channel_function> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& scale,
                            const at::Tensor& zero_point, std::int64_t axis, const qspec& spec,
                            const lsq_options& opt) {
    const char* who = "qlib::libtorch::fake_quantize_learnable_per_channel";
    detail::check_input(x, who, "x");
    detail::check_spec(spec, who);
    const int a = detail::normalize_axis(axis, x, who);
    const std::size_t channels = static_cast<std::size_t>(x.size(a));
    const std::vector<double> s = detail::channel_values(scale, channels, who, "scale");
    const std::vector<double> zr = detail::channel_values(zero_point, channels, who, "zero_point");
    const at::Tensor xc = x.contiguous();
    at::Tensor out = at::empty_like(xc);
    detail::with_float_type(xc, [&](auto t) {
      using T = decltype(t);
      std::vector<std::int32_t> z(channels);
      for (std::size_t c = 0; c < channels; ++c) z[c] = lsq_zero_point(static_cast<T>(zr[c]), spec);
      fake_quantize(detail::cview<T>(xc, "x"), detail::make_channel_qparams<T>(s, z, a), spec,
                    detail::mview<T>(out, "out"), opt.mode);
    });
    ctx->save_for_backward({xc, scale, zero_point});
    ctx->saved_data["axis"] = static_cast<std::int64_t>(a);
    ctx->saved_data["spec"] = detail::pack(spec);
    ctx->saved_data["lsq"] = detail::pack(opt);
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& xc = saved[0];
    const at::Tensor& scale = saved[1];
    const at::Tensor& zero_point = saved[2];
    const int a = static_cast<int>(ctx->saved_data["axis"].toInt());
    const qspec spec = detail::unpack_spec(ctx->saved_data["spec"].toIntVector());
    const lsq_options opt = detail::unpack_lsq(ctx->saved_data["lsq"].toDoubleVector());
    const char* who = "qlib::libtorch::fake_quantize_learnable_per_channel (backward)";
    const std::size_t channels = static_cast<std::size_t>(xc.size(a));
    const std::vector<double> s = detail::channel_values(scale, channels, who, "scale");
    const std::vector<double> zr = detail::channel_values(zero_point, channels, who, "zero_point");
    const at::Tensor dy = grad_outputs[0].to(xc.scalar_type()).contiguous();
    at::Tensor dx = at::empty_like(xc);
    std::vector<double> ds(channels), dz(channels);
    detail::with_float_type(xc, [&](auto t) {
      using T = decltype(t);
      std::vector<std::int32_t> z(channels);
      for (std::size_t c = 0; c < channels; ++c) z[c] = lsq_zero_point(static_cast<T>(zr[c]), spec);
      const lsq_channel_grads<T> g =
          lsq_backward(detail::cview<T>(dy, "dy"), detail::cview<T>(xc, "x"), detail::make_channel_qparams<T>(s, z, a),
                       spec, detail::mview<T>(dx, "dx"), opt);
      for (std::size_t c = 0; c < channels; ++c) {
        ds[c] = static_cast<double>(g.scale[c]);
        dz[c] = static_cast<double>(g.zero_point[c]);
      }
    });
    const auto as_like = [](const std::vector<double>& v, const at::Tensor& like) {
      return at::tensor(v, at::TensorOptions().dtype(at::kDouble)).to(like.scalar_type()).reshape(like.sizes());
    };
    return {dx, as_like(ds, scale), as_like(dz, zero_point), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// ---- The functions a model calls ------------------------------------------------------------

/// torch::fake_quantize_per_tensor_affine(x, scale, zero_point, qmin, qmax) with qlib's
/// kernels: fake_quantize_per_tensor(x, scale, zero_point, spec_from_range(qmin, qmax)).
inline at::Tensor fake_quantize_per_tensor(const at::Tensor& x, double scale, std::int64_t zero_point,
                                           const qspec& spec) {
  return fake_quantize_per_tensor_function::apply(detail::defined(x, "qlib::libtorch::fake_quantize_per_tensor", "x"),
                                                  scale, zero_point, spec);
}
/// The overload for qparams (e.g. an observer's calib_result::params()).
template <class T>
at::Tensor fake_quantize_per_tensor(const at::Tensor& x, const qparams<T>& p, const qspec& spec) {
  return fake_quantize_per_tensor(x, static_cast<double>(p.scale), static_cast<std::int64_t>(p.zero_point), spec);
}

/// torch::fake_quantize_per_channel_affine with qlib's kernels.
inline at::Tensor fake_quantize_per_channel(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
                                            std::int64_t axis, const qspec& spec) {
  const char* who = "qlib::libtorch::fake_quantize_per_channel";
  return fake_quantize_per_channel_function::apply(detail::defined(x, who, "x"), detail::defined(scale, who, "scale"),
                                                   detail::defined(zero_point, who, "zero_point"), axis, spec);
}
/// The overload for channel_qparams (its axis is used).
template <class T>
at::Tensor fake_quantize_per_channel(const at::Tensor& x, const channel_qparams<T>& p, const qspec& spec) {
  const std::vector<double> s(p.scale.begin(), p.scale.end());
  const std::vector<std::int64_t> z(p.zero_point.begin(), p.zero_point.end());
  return fake_quantize_per_channel(x, at::tensor(s), at::tensor(z), static_cast<std::int64_t>(p.axis), spec);
}

/// torch::_fake_quantize_learnable_per_tensor_affine with qlib's LSQ gradients (pass
/// torch_grad_factor(g) for ATen's grad_factor).
inline at::Tensor fake_quantize_learnable_per_tensor(const at::Tensor& x, const at::Tensor& scale,
                                                     const at::Tensor& zero_point, const qspec& spec,
                                                     const lsq_options& opt = {}) {
  const char* who = "qlib::libtorch::fake_quantize_learnable_per_tensor";
  return fake_quantize_learnable_per_tensor_function::apply(detail::defined(x, who, "x"),
                                                            detail::defined(scale, who, "scale"),
                                                            detail::defined(zero_point, who, "zero_point"), spec, opt);
}

/// torch::_fake_quantize_learnable_per_channel_affine with qlib's LSQ gradients.
inline at::Tensor fake_quantize_learnable_per_channel(const at::Tensor& x, const at::Tensor& scale,
                                                      const at::Tensor& zero_point, std::int64_t axis,
                                                      const qspec& spec, const lsq_options& opt = {}) {
  const char* who = "qlib::libtorch::fake_quantize_learnable_per_channel";
  return fake_quantize_learnable_per_channel_function::apply(
      detail::defined(x, who, "x"), detail::defined(scale, who, "scale"),
      detail::defined(zero_point, who, "zero_point"), axis, spec, opt);
}

}  // namespace libtorch
QLIB_NAMESPACE_END
