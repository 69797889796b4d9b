// Training-time fake quantization: quantize then dequantize in floating point, with the
// straight-through estimator (STE) for the backward pass.
//
//   forward:  x_hat = (clamp(round(x / s) + z, qmin, qmax) - z) * s
//   mask:     1 where qmin <= round(x / s) + z <= qmax (the value was not clipped), else 0
//   backward: dx = mask ? dy : 0      (STE: Bengio et al. 2013; PyTorch's "cachemask" ops,
//                                      aten/src/ATen/native/quantized/FakeQuantPer*Affine.cpp)
//
// x_hat is bit-identical to dequantize(quantize(x)) of core/quantize.hpp (same division by
// s, same rounding), for float and double, per tensor and per channel, with either rounding
// mode. PyTorch's kernels round x * (1 / s) instead, which can differ on exact ties.
// Outside the grid dx is +0 (a select, not dy * 0: NaN or Inf in dy do not leak through).
// NaN in x gives NaN out and mask 0; x is not checked for NaN (use check_finite first if
// needed).
//
// Layout: tensors are contiguous C-order (core/tensor_view.hpp). Per channel, parameters
// are channel_qparams (an axis and one scale and zero point per channel), the tensor is
// viewed as (outer, channels, inner). Every output may be the input's own buffer (in place:
// out == x, dx == dy); a partial overlap, or a mask inside a float buffer, is an error.
//
// Speed: one pass over memory, vectorized by the compiler (SSE2 baseline, more with
// -march) through detail/fake_quant_kernels.hpp, at -O2 as well as -O3 (g++ 12, clang 14);
// on one x86-64 core the float forward runs at 80-90% of memcpy's bytes per second, bound
// by the divider (x / s, kept for bit identity), bench/fake_quant_bench.cpp. Not
// vectorized on SSE2: the double forward that writes a mask (g++ finds packing 64-bit
// compares into bytes unprofitable). Requires IEEE arithmetic: qlib must not be built with
// -ffast-math (core/fast_round.hpp). If the floating-point rounding mode is not
// round-to-nearest (or FLT_EVAL_METHOD != 0), the same loops run with the slower reference
// rounding, so results never change.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../core/fast_round.hpp"
#include "../core/qparams.hpp"
#include "../core/tensor_view.hpp"
#include "../detail/fake_quant_kernels.hpp"

QLIB_NAMESPACE_BEGIN

namespace detail {
namespace fq {

template <class T>
struct nondeduced {
  using type = T;
};
/// A parameter type that takes no part in template argument deduction, so that
/// tensor_view<float> converts to tensor_view<const float> implicitly.
template <class T>
using nondeduced_t = typename nondeduced<T>::type;

/// "x (tensor 'conv1', shape (2, 3))": an argument named in an error message.
template <class V>
std::string arg_label(const char* arg, const V& v) {
  std::string s = std::string(arg) + " (";
  if (v.name()) s += std::string("tensor '") + v.name() + "', ";
  return s + "shape " + v.shape().str() + ")";
}

template <class V>
void check_data(const std::string& who, const char* arg, const V& v) {
  if (v.size() > 0 && v.data() == nullptr)
    fail(errc::invalid_argument, who + ": " + arg_label(arg, v) + " has no data");
}

template <class A, class B>
void check_same_shape(const std::string& who, const char* arg_a, const A& a, const char* arg_b, const B& b) {
  if (a.shape() != b.shape())
    fail(errc::invalid_argument, who + ": " + arg_label(arg_a, a) + " does not match " + arg_label(arg_b, b));
}

/// Two buffers must be the same (when `may_alias`) or disjoint; anything else is an error.
template <class A, class B>
void check_overlap(const std::string& who, const char* arg_a, const A& a, const char* arg_b, const B& b,
                   bool may_alias) {
  const std::size_t na = a.size() * sizeof(*a.data()), nb = b.size() * sizeof(*b.data());
  if (na == 0 || nb == 0) return;
  // Addresses as integers: a total order on flat-memory targets, without <functional>.
  const std::uintptr_t pa = reinterpret_cast<std::uintptr_t>(a.data());
  const std::uintptr_t pb = reinterpret_cast<std::uintptr_t>(b.data());
  if (may_alias && pa == pb && na == nb) return;
  const bool disjoint = pa + na <= pb || pb + nb <= pa;
  if (!disjoint)
    fail(errc::invalid_argument, who + ": " + arg_a + " and " + arg_b + " overlap" +
                                     (may_alias ? " partially; pass the same buffer (in place) or disjoint buffers"
                                                : "; they must be disjoint buffers"));
}

inline void check_spec(const std::string& who, const qspec& spec) {
  const status s = spec.validate();
  if (!s.ok()) fail(s.code(), who + ": " + s.message());
}

template <class T>
void check_scale_zero_point(const std::string& who, const std::string& where, T scale, std::int32_t zero_point,
                            const qspec& spec) {
  if (!(scale > T(0)) || !std::isfinite(scale))
    fail(std::isfinite(scale) ? errc::invalid_argument : errc::non_finite,
         who + ": " + where + "scale = " + std::to_string(scale) + " must be finite and positive");
  if (zero_point < spec.qmin() || zero_point > spec.qmax())
    fail(errc::invalid_argument, who + ": " + where + "zero_point = " + std::to_string(zero_point) +
                                     " is outside the grid [" + std::to_string(spec.qmin()) + ", " +
                                     std::to_string(spec.qmax()) + "]");
}

/// The per-channel layout of `v` along p.axis, after checking the axis, the parameter
/// counts and every channel's scale and zero point.
template <class T, class V>
channel_layout check_channel_qparams(const std::string& who, const char* arg, const V& v, const channel_qparams<T>& p,
                                     const qspec& spec) {
  int axis = 0;
  const status s = check_axis(p.axis, v.rank(), &axis);
  if (!s.ok()) fail(s.code(), who + ": " + s.message() + " (" + arg_label(arg, v) + ")");
  const channel_layout l = layout_along(v.shape(), axis);
  if (p.scale.size() != l.channels || p.zero_point.size() != l.channels)
    fail(errc::invalid_argument, who + ": channel_qparams have " + std::to_string(p.scale.size()) + " scales and " +
                                     std::to_string(p.zero_point.size()) + " zero points, but axis " +
                                     std::to_string(p.axis) + " of " + arg_label(arg, v) + " has " +
                                     std::to_string(l.channels) + " channels");
  for (std::size_t c = 0; c < l.channels; ++c)
    check_scale_zero_point(who, "channel " + std::to_string(c) + ": ", p.scale[c], p.zero_point[c], spec);
  return l;
}

/// Calls f with the rounding policy for `mode`: the vectorizing one where it is exact here,
/// else the reference rounding (see fast_rounding_available()).
template <class F>
void with_rounding(rounding mode, F&& f) {
  const bool fast = fast_rounding_available();
  if (mode == rounding::half_to_even) {
    if (fast)
      f(fq::even_fast{});
    else
      f(fq::even_exact{});
  } else {
    if (fast)
      f(fq::away_fast{});
    else
      f(fq::away_exact{});
  }
}

/// Per-channel grids as arrays (structure of arrays), for the channel-innermost layout.
template <class T>
struct channel_grids {
  std::vector<T> scale, lo, hi, vlo, vhi, zf;
  channel_grids(const channel_qparams<T>& p, const qspec& spec) {
    const std::size_t n = p.scale.size();
    scale.resize(n), lo.resize(n), hi.resize(n), vlo.resize(n), vhi.resize(n), zf.resize(n);
    for (std::size_t c = 0; c < n; ++c) {
      const fq::grid<T> g = fq::make_grid(p.scale[c], p.zero_point[c], spec.qmin(), spec.qmax());
      scale[c] = g.scale, lo[c] = g.lo, hi[c] = g.hi, vlo[c] = g.vlo, vhi[c] = g.vhi, zf[c] = g.zf;
    }
  }
  fq::grid<T> at(std::size_t c) const { return {scale[c], lo[c], hi[c], vlo[c], vhi[c], zf[c]}; }
  fq::by_index<T> arrays() const { return {{scale.data(), lo.data(), hi.data(), vlo.data(), vhi.data(), zf.data()}}; }
};

/// Picks the forward loop for the aliasing at hand (mask may be null).
template <class R, class T, class G>
void forward_any(const T* x, T* out, unsigned char* mask, std::size_t n, const G& g) {
  if (!mask) {
    if (x == out)
      fq::forward_inplace<R>(out, n, g);
    else
      fq::forward<R>(x, out, n, g);
  } else {
    if (x == out)
      fq::forward_mask_inplace<R>(out, mask, n, g);
    else
      fq::forward_mask<R>(x, out, mask, n, g);
  }
}

template <class R, class T, class G>
void backward_recompute_any(const T* dy, const T* x, T* dx, std::size_t n, const G& g) {
  if (dx != dy && dx != x)
    fq::backward_recompute<R>(dy, x, dx, n, g);
  else if (dx == dy && dy != x)
    fq::backward_recompute_inplace<R>(dx, x, n, g);
  else
    fq::backward_recompute_aliased<R>(dy, x, dx, n, g);
}

/// Runs `op(offset, count, grid accessor)` over a per-channel layout: one call per row of
/// channels when the channel is innermost (inner == 1, parameters change at every element),
/// else one call per (outer, channel) slice of `inner` contiguous elements.
template <class T, class Op>
void for_channel_runs(const channel_layout& l, const channel_grids<T>& cg, Op&& op) {
  if (l.inner == 1) {
    const fq::by_index<T> g = cg.arrays();
    for (std::size_t o = 0; o < l.outer; ++o) op(o * l.channels, l.channels, g);
    return;
  }
  for (std::size_t o = 0; o < l.outer; ++o)
    for (std::size_t c = 0; c < l.channels; ++c) op((o * l.channels + c) * l.inner, l.inner, fq::uniform<T>(cg.at(c)));
}

template <class M>
unsigned char* mask_bytes(M* m) {
  static_assert(std::is_same<M, std::uint8_t>::value || std::is_same<M, bool>::value,
                "the mask is std::uint8_t or bool");
  static_assert(sizeof(bool) == 1, "qlib writes bool masks as bytes");
  return reinterpret_cast<unsigned char*>(m);
}
template <class M>
const unsigned char* mask_bytes(const M* m) {
  static_assert(std::is_same<M, std::uint8_t>::value || std::is_same<M, bool>::value,
                "the mask is std::uint8_t or bool");
  static_assert(sizeof(bool) == 1, "qlib reads bool masks as bytes");
  return reinterpret_cast<const unsigned char*>(m);
}

template <class T>
void check_float_type() {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "fake quantization supports float and double");
}

/// The checks shared by the forward entry points.
template <class T>
void check_forward_args(const std::string& who, const tensor_view<const T>& x, const tensor_view<T>& out,
                        const qspec& spec) {
  check_spec(who, spec);
  check_data(who, "x", x);
  check_data(who, "out", out);
  check_same_shape(who, "out", out, "x", x);
  check_overlap(who, "out", out, "x", x, true);
}
template <class T, class M>
void check_mask_arg(const std::string& who, const tensor_view<M>& mask, const tensor_view<const T>& x,
                    const tensor_view<T>& out) {
  check_data(who, "mask", mask);
  check_same_shape(who, "mask", mask, "x", x);
  check_overlap(who, "mask", mask, "x", x, false);
  check_overlap(who, "mask", mask, "out", out, false);
}

template <class T>
void forward_per_tensor(const std::string& who, tensor_view<const T> x, const qparams<T>& p, const qspec& spec,
                        tensor_view<T> out, unsigned char* mask, rounding mode) {
  check_scale_zero_point(who, "", p.scale, p.zero_point, spec);
  const fq::uniform<T> g(fq::make_grid(p.scale, p.zero_point, spec.qmin(), spec.qmax()));
  with_rounding(mode, [&](auto r) { forward_any<decltype(r)>(x.data(), out.data(), mask, x.size(), g); });
}

template <class T>
void forward_per_channel(const std::string& who, tensor_view<const T> x, const channel_qparams<T>& p, const qspec& spec,
                         tensor_view<T> out, unsigned char* mask, rounding mode) {
  const channel_layout l = check_channel_qparams(who, "x", x, p, spec);
  if (x.empty()) return;
  const channel_grids<T> cg(p, spec);
  with_rounding(mode, [&](auto r) {
    for_channel_runs(l, cg, [&](std::size_t off, std::size_t n, const auto& g) {
      forward_any<decltype(r)>(x.data() + off, out.data() + off, mask ? mask + off : nullptr, n, g);
    });
  });
}

}  // namespace fq
}  // namespace detail

// ---- forward ---------------------------------------------------------------------------

/// out = fake_quant(x) per tensor. out may be x's own buffer (in place).
template <class T>
void fake_quantize(tensor_view<const detail::fq::nondeduced_t<T>> x, const qparams<T>& p, const qspec& spec,
                   tensor_view<T> out, rounding mode = rounding::half_to_even) {
  detail::fq::check_float_type<T>();
  detail::fq::check_forward_args("fake_quantize", x, out, spec);
  detail::fq::forward_per_tensor("fake_quantize", x, p, spec, out, nullptr, mode);
}

/// out = fake_quant(x) per channel along p.axis. out may be x's own buffer.
template <class T>
void fake_quantize(tensor_view<const detail::fq::nondeduced_t<T>> x, const channel_qparams<T>& p, const qspec& spec,
                   tensor_view<T> out, rounding mode = rounding::half_to_even) {
  detail::fq::check_float_type<T>();
  detail::fq::check_forward_args("fake_quantize", x, out, spec);
  detail::fq::forward_per_channel("fake_quantize", x, p, spec, out, nullptr, mode);
}

/// x = fake_quant(x) per tensor, in place.
template <class T>
void fake_quantize_inplace(tensor_view<T> x, const qparams<T>& p, const qspec& spec,
                           rounding mode = rounding::half_to_even) {
  fake_quantize<T>(x, p, spec, x, mode);
}

/// x = fake_quant(x) per channel, in place.
template <class T>
void fake_quantize_inplace(tensor_view<T> x, const channel_qparams<T>& p, const qspec& spec,
                           rounding mode = rounding::half_to_even) {
  fake_quantize<T>(x, p, spec, x, mode);
}

/// The "cachemask" forward: out = fake_quant(x) and mask = 1 where x was not clipped
/// (std::uint8_t or bool, one per element), for fake_quantize_backward(dy, mask, dx).
/// out may be x's own buffer; the mask must not overlap either.
template <class T, class M>
void fake_quantize_cachemask(tensor_view<const detail::fq::nondeduced_t<T>> x, const qparams<T>& p, const qspec& spec,
                             tensor_view<T> out, tensor_view<M> mask, rounding mode = rounding::half_to_even) {
  detail::fq::check_float_type<T>();
  const std::string who = "fake_quantize_cachemask";
  detail::fq::check_forward_args(who, x, out, spec);
  detail::fq::check_mask_arg(who, mask, x, out);
  detail::fq::forward_per_tensor(who, x, p, spec, out, detail::fq::mask_bytes(mask.data()), mode);
}

/// The cachemask forward per channel along p.axis.
template <class T, class M>
void fake_quantize_cachemask(tensor_view<const detail::fq::nondeduced_t<T>> x, const channel_qparams<T>& p,
                             const qspec& spec, tensor_view<T> out, tensor_view<M> mask,
                             rounding mode = rounding::half_to_even) {
  detail::fq::check_float_type<T>();
  const std::string who = "fake_quantize_cachemask";
  detail::fq::check_forward_args(who, x, out, spec);
  detail::fq::check_mask_arg(who, mask, x, out);
  detail::fq::forward_per_channel(who, x, p, spec, out, detail::fq::mask_bytes(mask.data()), mode);
}

// ---- backward --------------------------------------------------------------------------

/// STE backward from a stored mask: dx = mask ? dy : 0. dx may be dy's own buffer.
template <class T, class M>
void fake_quantize_backward(tensor_view<const detail::fq::nondeduced_t<T>> dy, tensor_view<M> mask, tensor_view<T> dx) {
  detail::fq::check_float_type<T>();
  const std::string who = "fake_quantize_backward";
  detail::fq::check_data(who, "dy", dy);
  detail::fq::check_data(who, "mask", mask);
  detail::fq::check_data(who, "dx", dx);
  detail::fq::check_same_shape(who, "mask", mask, "dy", dy);
  detail::fq::check_same_shape(who, "dx", dx, "dy", dy);
  detail::fq::check_overlap(who, "dx", dx, "dy", dy, true);
  detail::fq::check_overlap(who, "mask", mask, "dx", dx, false);
  const unsigned char* m = detail::fq::mask_bytes(mask.data());
  if (dx.data() == dy.data())
    detail::fq::backward_mask_inplace(dx.data(), m, dx.size());
  else
    detail::fq::backward_mask(dy.data(), m, dx.data(), dx.size());
}

/// STE backward without a stored mask: the mask is recomputed from x (one more read of x
/// instead of a stored byte per element). dx may be dy's or x's own buffer.
template <class T>
void fake_quantize_backward(tensor_view<const detail::fq::nondeduced_t<T>> dy,
                            tensor_view<const detail::fq::nondeduced_t<T>> x, const qparams<T>& p, const qspec& spec,
                            tensor_view<T> dx, rounding mode = rounding::half_to_even) {
  detail::fq::check_float_type<T>();
  const std::string who = "fake_quantize_backward";
  detail::fq::check_spec(who, spec);
  detail::fq::check_data(who, "dy", dy);
  detail::fq::check_data(who, "x", x);
  detail::fq::check_data(who, "dx", dx);
  detail::fq::check_same_shape(who, "x", x, "dy", dy);
  detail::fq::check_same_shape(who, "dx", dx, "dy", dy);
  detail::fq::check_overlap(who, "dx", dx, "dy", dy, true);
  detail::fq::check_overlap(who, "dx", dx, "x", x, true);
  detail::fq::check_scale_zero_point(who, "", p.scale, p.zero_point, spec);
  const detail::fq::uniform<T> g(detail::fq::make_grid(p.scale, p.zero_point, spec.qmin(), spec.qmax()));
  detail::fq::with_rounding(mode, [&](auto r) {
    detail::fq::backward_recompute_any<decltype(r)>(dy.data(), x.data(), dx.data(), dx.size(), g);
  });
}

/// The recomputing STE backward per channel along p.axis.
template <class T>
void fake_quantize_backward(tensor_view<const detail::fq::nondeduced_t<T>> dy,
                            tensor_view<const detail::fq::nondeduced_t<T>> x, const channel_qparams<T>& p,
                            const qspec& spec, tensor_view<T> dx, rounding mode = rounding::half_to_even) {
  detail::fq::check_float_type<T>();
  const std::string who = "fake_quantize_backward";
  detail::fq::check_spec(who, spec);
  detail::fq::check_data(who, "dy", dy);
  detail::fq::check_data(who, "x", x);
  detail::fq::check_data(who, "dx", dx);
  detail::fq::check_same_shape(who, "x", x, "dy", dy);
  detail::fq::check_same_shape(who, "dx", dx, "dy", dy);
  detail::fq::check_overlap(who, "dx", dx, "dy", dy, true);
  detail::fq::check_overlap(who, "dx", dx, "x", x, true);
  const channel_layout l = detail::fq::check_channel_qparams(who, "x", x, p, spec);
  if (x.empty()) return;
  const detail::fq::channel_grids<T> cg(p, spec);
  detail::fq::with_rounding(mode, [&](auto r) {
    detail::fq::for_channel_runs(l, cg, [&](std::size_t off, std::size_t n, const auto& g) {
      detail::fq::backward_recompute_any<decltype(r)>(dy.data() + off, x.data() + off, dx.data() + off, n, g);
    });
  });
}

QLIB_NAMESPACE_END
