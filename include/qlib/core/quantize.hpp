// Quantize, dequantize and fake-quantize (quantize then dequantize) per tensor and per
// channel. q = clamp(round(x / s) + z, qmin, qmax), x' = (q - z) * s
// (shared/specs/algorithms.md section 1). Division by s, not multiplication by 1/s, so
// results match ONNX QuantizeLinear and PyTorch bit for bit.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "../config.hpp"
#include "qparams.hpp"
#include "tensor_view.hpp"

QLIB_NAMESPACE_BEGIN

/// The grid value of one real value, as a real (already clamped to [qmin, qmax]).
/// Clamping happens in the float domain so a huge x / s never overflows an integer cast.
template <class T>
QLIB_HOST_DEVICE inline T quantize_value(T x, T scale, std::int32_t zero_point, std::int32_t qmin, std::int32_t qmax,
                                         rounding mode = rounding::half_to_even) noexcept {
  T q = round_with(x / scale, mode) + static_cast<T>(zero_point);
  q = q < static_cast<T>(qmin) ? static_cast<T>(qmin) : q;
  q = q > static_cast<T>(qmax) ? static_cast<T>(qmax) : q;
  return q;
}

/// Fake-quant of one value: dequantize(quantize(x)).
template <class T>
QLIB_HOST_DEVICE inline T fake_quantize_value(T x, T scale, std::int32_t zero_point, std::int32_t qmin,
                                              std::int32_t qmax, rounding mode = rounding::half_to_even) noexcept {
  return (quantize_value(x, scale, zero_point, qmin, qmax, mode) - static_cast<T>(zero_point)) * scale;
}

namespace detail {
template <class Q>
status check_integer_type(const qspec& spec) {
  static_assert(std::is_integral<Q>::value, "quantized storage must be an integer type");
  if (static_cast<long long>(spec.qmin()) < static_cast<long long>(std::numeric_limits<Q>::min()) ||
      static_cast<long long>(spec.qmax()) > static_cast<long long>(std::numeric_limits<Q>::max()))
    return {errc::invalid_argument, "the grid [" + std::to_string(spec.qmin()) + ", " + std::to_string(spec.qmax()) +
                                        "] does not fit the output integer type"};
  return {};
}
template <class T>
status check_qparams(const qparams<T>& p, const qspec& spec) {
  if (!(p.scale > T(0)) || !std::isfinite(p.scale))
    return {errc::invalid_argument, "scale must be finite and positive, got " + std::to_string(p.scale)};
  if (p.zero_point < spec.qmin() || p.zero_point > spec.qmax())
    return {errc::invalid_argument, "zero point " + std::to_string(p.zero_point) + " is outside the grid [" +
                                        std::to_string(spec.qmin()) + ", " + std::to_string(spec.qmax()) + "]"};
  return {};
}
}  // namespace detail

/// Quantizes x (n values) into out (n integers of type Q: int8_t, uint8_t, int16_t, int32_t).
/// Data is not checked for NaN (NaN maps to an unspecified grid value); check_finite first
/// when the data is untrusted.
template <class T, class Q>
void quantize(tensor_view<const T> x, const qparams<T>& p, const qspec& spec, Q* out,
              rounding mode = rounding::half_to_even) {
  detail::throw_if(spec.validate());
  detail::throw_if(detail::check_integer_type<Q>(spec));
  detail::throw_if(detail::check_qparams(p, spec));
  const std::int32_t qmin = spec.qmin(), qmax = spec.qmax();
  const std::size_t n = x.size();
  const T* in = x.data();
  for (std::size_t i = 0; i < n; ++i)
    out[i] = static_cast<Q>(quantize_value(in[i], p.scale, p.zero_point, qmin, qmax, mode));
}

/// Dequantizes n integers into out: (q - z) * s.
template <class Q, class T>
void dequantize(tensor_view<const Q> q, const qparams<T>& p, T* out) {
  const std::size_t n = q.size();
  const Q* in = q.data();
  for (std::size_t i = 0; i < n; ++i)
    out[i] = (static_cast<T>(in[i]) - static_cast<T>(p.zero_point)) * p.scale;
}

namespace detail {
template <class T>
void check_channel_params(const channel_qparams<T>& p, const shape_t& shape, const qspec& spec, channel_layout* l) {
  *l = layout_along(shape, p.axis);
  if (p.scale.size() != l->channels || p.zero_point.size() != l->channels)
    fail(errc::invalid_argument, "per-channel parameters have " + std::to_string(p.scale.size()) + " scales and " +
                                     std::to_string(p.zero_point.size()) + " zero points, but axis " +
                                     std::to_string(p.axis) + " of shape " + shape.str() + " has " +
                                     std::to_string(l->channels) + " channels");
  for (std::size_t c = 0; c < l->channels; ++c) {
    status s = check_qparams(qparams<T>{p.scale[c], p.zero_point[c]}, spec);
    if (!s.ok()) fail(s.code(), "channel " + std::to_string(c) + ": " + s.message());
  }
}
}  // namespace detail

/// Per-channel quantize along p.axis of x's shape.
template <class T, class Q>
void quantize(tensor_view<const T> x, const channel_qparams<T>& p, const qspec& spec, Q* out,
              rounding mode = rounding::half_to_even) {
  detail::throw_if(spec.validate());
  detail::throw_if(detail::check_integer_type<Q>(spec));
  channel_layout l;
  detail::check_channel_params(p, x.shape(), spec, &l);
  const std::int32_t qmin = spec.qmin(), qmax = spec.qmax();
  const T* in = x.data();
  for (std::size_t o = 0; o < l.outer; ++o)
    for (std::size_t c = 0; c < l.channels; ++c) {
      const std::size_t base = (o * l.channels + c) * l.inner;
      const T s = p.scale[c];
      const std::int32_t z = p.zero_point[c];
      for (std::size_t i = 0; i < l.inner; ++i)
        out[base + i] = static_cast<Q>(quantize_value(in[base + i], s, z, qmin, qmax, mode));
    }
}

/// Per-channel dequantize along p.axis of q's shape.
template <class Q, class T>
void dequantize(tensor_view<const Q> q, const channel_qparams<T>& p, T* out) {
  const channel_layout l = layout_along(q.shape(), p.axis);
  if (p.scale.size() != l.channels || p.zero_point.size() != l.channels)
    detail::fail(errc::invalid_argument, "per-channel parameters do not match " + std::to_string(l.channels) +
                                             " channels of shape " + q.shape().str());
  const Q* in = q.data();
  for (std::size_t o = 0; o < l.outer; ++o)
    for (std::size_t c = 0; c < l.channels; ++c) {
      const std::size_t base = (o * l.channels + c) * l.inner;
      for (std::size_t i = 0; i < l.inner; ++i)
        out[base + i] = (static_cast<T>(in[base + i]) - static_cast<T>(p.zero_point[c])) * p.scale[c];
    }
}

QLIB_NAMESPACE_END
