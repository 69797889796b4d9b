// Conversion of a float layer (Conv / Linear weights, bias, input and output parameters)
// into what an integer engine runs: int8 weights (symmetric, per output channel, narrow
// range), an int32 bias with scale s_in * s_w[c], and per-channel fixed-point
// requantization multipliers M_c = s_in * s_w[c] / s_out (core/fixed_point.hpp).
//
// Sources: shared/specs/algorithms.md 5c; TFLite's int8 quantization spec (weights
// symmetric per channel in [-127, 127], bias int32 with scale s_in * s_w, zero point 0) and
// kernels/kernel_util.cc (PopulateConvolutionQuantizationParams: the multiplier computed in
// double from the float scales); XNNPACK qc8 weights. The bias is rounded half to even and
// clamped to int32, as torch.quantize_per_tensor(..., torch.qint32) does.
//
// Layouts: the weight has its output channels on options.weight_axis (0 for Conv OIHW and
// Linear (out, in); 1 for ConvTranspose, which this header converts but int_kernels.hpp
// does not run). Activations are int8 grids with the given zero points.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../core/check.hpp"
#include "../core/fixed_point.hpp"
#include "../core/qparams.hpp"
#include "../core/quantize.hpp"
#include "../core/tensor_view.hpp"
#include "ops.hpp"

QLIB_NAMESPACE_BEGIN

/// How to convert a layer.
struct convert_options {
  int weight_bits = 8;                ///< 2..8: weights on [-(2^(b-1) - 1), 2^(b-1) - 1], zero point 0
  int weight_axis = 0;                ///< the weight's output-channel axis
  bool relu = false;                  ///< a fused ReLU: the output clamp starts at the zero point
  clamp_range activation{-128, 127};  ///< the activations' integer grid (int8)
  /// How the integer kernels requantize this layer's accumulators (core/fixed_point.hpp):
  /// classic gemmlowp / TFLite double rounding, or TFLite's TFLITE_SINGLE_ROUNDING form.
  requantize_rounding rounding = requantize_rounding::double_rounding;
};

/// A converted layer: everything an integer kernel needs, plus the scales it came from.
template <class T>
struct int8_layer {
  shape_t weight_shape;
  int weight_axis = 0;
  std::vector<std::int8_t> weight;               ///< weight_shape, C-order
  std::vector<T> weight_scale;                   ///< per output channel
  std::vector<std::int32_t> bias;                ///< per output channel, scale input.scale * weight_scale[c]
  std::vector<quantized_multiplier> multiplier;  ///< per output channel: s_in * s_w[c] / s_out
  qparams<T> input;                              ///< the input grid (s_in, z_in)
  qparams<T> output;                             ///< the output grid (s_out, z_out)
  clamp_range output_range;                      ///< grid, or [max(qmin, z_out), qmax] with ReLU
  requantize_rounding rounding = requantize_rounding::double_rounding;  ///< how acc * M_c is rounded

  std::size_t out_channels() const noexcept { return weight_scale.size(); }
};

namespace detail {
inline void check_convert_options(const convert_options& o, const char* who) {
  if (o.weight_bits < 2 || o.weight_bits > 8)
    fail(errc::invalid_argument, std::string(who) + ": option weight_bits = " + std::to_string(o.weight_bits) +
                                     " is out of range [2, 8] (weights are stored as int8)");
  if (o.activation.min > o.activation.max || o.activation.min < -128 || o.activation.max > 127)
    fail(errc::invalid_argument, std::string(who) + ": option activation grid [" + std::to_string(o.activation.min) +
                                     ", " + std::to_string(o.activation.max) + "] must lie within int8 [-128, 127]");
}

inline qspec weight_spec(int bits) {
  qspec s;
  s.bits = bits;
  s.scheme = qscheme::symmetric;
  s.is_signed = true;
  s.narrow_range = true;
  s.convention = qconvention::tensorrt;  // s = amax / (2^(b-1) - 1)
  return s;
}
}  // namespace detail

/// Symmetric per-channel weight scales s_w[c] = max|w_c| / (2^(bits-1) - 1) (an all-zero
/// channel gets 1, as every qlib convention does for degenerate ranges). Fails on NaN / Inf.
template <class T>
std::vector<T> weight_scales(tensor_view<const T> weight, int axis, int bits = 8) {
  const char* who = "weight_scales";
  if (bits < 2 || bits > 8)
    detail::fail(errc::invalid_argument,
                 std::string(who) + ": bits = " + std::to_string(bits) + " is out of range [2, 8]");
  detail::throw_if(check_finite(weight, who));
  const channel_layout l = layout_along(weight.shape(), axis);
  std::vector<T> amax(l.channels, T(0));
  for (std::size_t o = 0; o < l.outer; ++o)
    for (std::size_t c = 0; c < l.channels; ++c) {
      const std::size_t base = (o * l.channels + c) * l.inner;
      for (std::size_t i = 0; i < l.inner; ++i) amax[c] = std::fmax(amax[c], std::fabs(weight[base + i]));
    }
  const qspec spec = detail::weight_spec(bits);
  std::vector<T> scale(l.channels);
  for (std::size_t c = 0; c < l.channels; ++c) scale[c] = qparams_from_range(-amax[c], amax[c], spec).scale;
  return scale;
}

/// Converts with given per-channel weight scales (e.g. the QAT weight quantizer's, so the
/// integer weights are exactly the fake-quantized ones). bias may be empty (no bias).
template <class T>
int8_layer<T> convert_layer(tensor_view<const T> weight, tensor_view<const T> bias, tensor_view<const T> weight_scale,
                            const qparams<T>& input, const qparams<T>& output, const convert_options& options = {}) {
  const char* who = "convert_layer";
  detail::check_convert_options(options, who);
  const channel_layout l = layout_along(weight.shape(), options.weight_axis);
  const std::string against =
      "the weight of shape " + weight.shape().str() + " along axis " + std::to_string(options.weight_axis);
  if (!detail::absent_view(bias) && bias.size() != l.channels)
    detail::fail(errc::invalid_argument, std::string(who) + ": bias has " + std::to_string(bias.size()) +
                                             " values but " + against + " has " + std::to_string(l.channels) +
                                             " output channels");
  if (weight_scale.size() != l.channels)
    detail::fail(errc::invalid_argument, std::string(who) + ": weight_scale has " +
                                             std::to_string(weight_scale.size()) + " values but " + against + " has " +
                                             std::to_string(l.channels) + " output channels");
  detail::check_scale(input.scale, who, "input");
  detail::check_scale(output.scale, who, "output");
  detail::check_zero_point(input.zero_point, options.activation, who, "input");
  detail::check_zero_point(output.zero_point, options.activation, who, "output");
  for (std::size_t c = 0; c < l.channels; ++c)
    detail::check_scale(weight_scale[c], std::string(who) + ": channel " + std::to_string(c), "weight");
  detail::throw_if(check_finite(weight, std::string(who) + ": weight"));
  if (!detail::absent_view(bias)) detail::throw_if(check_finite(bias, std::string(who) + ": bias"));

  int8_layer<T> layer;
  layer.weight_shape = weight.shape();
  layer.weight_axis = options.weight_axis;
  layer.input = input;
  layer.output = output;
  layer.output_range = options.relu ? fused_relu(options.activation, output.zero_point) : options.activation;
  layer.rounding = options.rounding;
  layer.weight_scale.assign(weight_scale.begin(), weight_scale.end());

  // Multipliers first: a too-large one fails before any work is done.
  const double s_in = static_cast<double>(input.scale), s_out = static_cast<double>(output.scale);
  layer.multiplier.resize(l.channels);
  for (std::size_t c = 0; c < l.channels; ++c)
    layer.multiplier[c] = quantize_multiplier(
        s_in * static_cast<double>(weight_scale[c]) / s_out,
        std::string(who) + ": requantization multiplier of channel " + std::to_string(c) + " (s_in * s_w / s_out)");

  const std::int32_t wmax = (std::int32_t{1} << (options.weight_bits - 1)) - 1;
  layer.weight.resize(weight.size());
  for (std::size_t o = 0; o < l.outer; ++o)
    for (std::size_t c = 0; c < l.channels; ++c) {
      const std::size_t base = (o * l.channels + c) * l.inner;
      for (std::size_t i = 0; i < l.inner; ++i)
        layer.weight[base + i] =
            static_cast<std::int8_t>(quantize_value(weight[base + i], weight_scale[c], 0, -wmax, wmax));
    }

  layer.bias.assign(l.channels, 0);
  if (!detail::absent_view(bias))
    for (std::size_t c = 0; c < l.channels; ++c) {
      const double q = round_half_even(static_cast<double>(bias[c]) / (s_in * static_cast<double>(weight_scale[c])));
      const double clamped = std::fmin(std::fmax(q, -2147483648.0), 2147483647.0);
      layer.bias[c] = static_cast<std::int32_t>(clamped);
    }
  return layer;
}

/// Converts a float layer: per-channel symmetric weight scales from the weights
/// (weight_scales), then convert_layer with those scales.
template <class T>
int8_layer<T> convert_layer(tensor_view<const T> weight, tensor_view<const T> bias, const qparams<T>& input,
                            const qparams<T>& output, const convert_options& options = {}) {
  detail::check_convert_options(options, "convert_layer");
  const std::vector<T> scales = weight_scales(weight, options.weight_axis, options.weight_bits);
  return convert_layer(weight, bias, view(scales, "weight_scale"), input, output, options);
}

QLIB_NAMESPACE_END
