// Reference integer kernels: int8 x int8 -> int32 convolution and fully connected layers,
// per-channel requantization, and add / cat on int8 grids. Clarity first (plain loops,
// 64-bit accumulation saturated to int32, so no overflow is ever undefined), but with the
// zero point and the padding handled outside the innermost loop so small CNNs run quickly.
//
// Sources: TFLite kernels/internal/reference/integer_ops/conv.h and fully_connected.h (the
// accumulation acc += w * (x - z_in), out-of-image taps skipped, bias added, then
// MultiplyByQuantizedMultiplier per channel, + z_out, clamp); add.h; concatenation.
// shared/specs/algorithms.md 5c.
//
// Layouts (stated once): conv input NCHW (N, C_in, H, W); conv weight OIHW
// (C_out, C_in / groups, kh, kw); conv output NCHW (N, C_out, OH, OW). Linear input (..., K),
// weight (M, K), output (..., M). Bias: int32, one per output channel, scale s_in * s_w[c].
// All activations are int8; outputs are caller buffers of the documented shape
// (conv2d_output_shape, linear_output_shape, cat_output_shape).
#pragma once

#include "../detail/algorithm.hpp"
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../core/fixed_point.hpp"
#include "../core/tensor_view.hpp"
#include "convert.hpp"
#include "ops.hpp"

QLIB_NAMESPACE_BEGIN

/// Convolution hyper-parameters (PyTorch's Conv2d arguments; padding is symmetric and
/// filled with the input zero point, i.e. real 0).
struct conv2d_geometry {
  std::size_t stride_h = 1, stride_w = 1;
  std::size_t pad_h = 0, pad_w = 0;
  std::size_t dilation_h = 1, dilation_w = 1;
  std::size_t groups = 1;
};

/// The output shape (N, C_out, OH, OW) with OH = (H + 2 pad_h - dilation_h (kh - 1) - 1) /
/// stride_h + 1 (likewise OW). Fails on inconsistent shapes, naming the argument.
inline shape_t conv2d_output_shape(const shape_t& input, const shape_t& weight, const conv2d_geometry& g) {
  const std::string who = "conv2d";
  if (input.rank() != 4)
    detail::fail(errc::invalid_argument, who + ": input of shape " + input.str() + " must be NCHW (rank 4)");
  if (weight.rank() != 4)
    detail::fail(errc::invalid_argument, who + ": weight of shape " + weight.str() + " must be OIHW (rank 4)");
  if (g.stride_h == 0 || g.stride_w == 0) detail::fail(errc::invalid_argument, who + ": stride must be >= 1");
  if (g.dilation_h == 0 || g.dilation_w == 0) detail::fail(errc::invalid_argument, who + ": dilation must be >= 1");
  if (g.groups == 0) detail::fail(errc::invalid_argument, who + ": groups must be >= 1");
  const std::size_t c_in = input[1], c_out = weight[0];
  if (c_in % g.groups != 0 || c_out % g.groups != 0)
    detail::fail(errc::invalid_argument, who + ": groups = " + std::to_string(g.groups) + " must divide the " +
                                             std::to_string(c_in) + " input and " + std::to_string(c_out) +
                                             " output channels");
  if (weight[1] * g.groups != c_in)
    detail::fail(errc::invalid_argument, who + ": weight of shape " + weight.str() + " expects " +
                                             std::to_string(weight[1] * g.groups) +
                                             " input channels (groups = " + std::to_string(g.groups) +
                                             ") but input of shape " + input.str() + " has " + std::to_string(c_in));
  const std::size_t span_h = g.dilation_h * (weight[2] - 1) + 1, span_w = g.dilation_w * (weight[3] - 1) + 1;
  if (weight[2] == 0 || weight[3] == 0 || input[2] + 2 * g.pad_h < span_h || input[3] + 2 * g.pad_w < span_w)
    detail::fail(errc::invalid_argument, who + ": kernel of shape " + weight.str() + " (dilated " +
                                             std::to_string(span_h) + "x" + std::to_string(span_w) +
                                             ") does not fit the padded input of shape " + input.str());
  const std::size_t oh = (input[2] + 2 * g.pad_h - span_h) / g.stride_h + 1;
  const std::size_t ow = (input[3] + 2 * g.pad_w - span_w) / g.stride_w + 1;
  return shape_t{input[0], c_out, oh, ow};
}

/// int32 accumulators of the convolution: acc = bias[oc] + sum w * (x - input_zero_point),
/// taps outside the image skipped (they hold the zero point). bias may be empty.
/// acc: conv2d_output_shape(...) values.
inline void conv2d_accumulate(tensor_view<const std::int8_t> input, std::int32_t input_zero_point,
                              tensor_view<const std::int8_t> weight, tensor_view<const std::int32_t> bias,
                              const conv2d_geometry& g, std::int32_t* acc) {
  const shape_t out_shape = conv2d_output_shape(input.shape(), weight.shape(), g);
  const std::size_t n_batch = input.shape()[0], c_in = input.shape()[1], h = input.shape()[2], w = input.shape()[3];
  const std::size_t c_out = weight.shape()[0], kh = weight.shape()[2], kw = weight.shape()[3];
  const std::size_t oh = out_shape[2], ow = out_shape[3];
  if (!detail::absent_view(bias) && bias.size() != c_out)
    detail::fail(errc::invalid_argument, "conv2d: bias has " + std::to_string(bias.size()) +
                                             " values but weight of shape " + weight.shape().str() + " has " +
                                             std::to_string(c_out) + " output channels");
  const std::size_t cin_g = c_in / g.groups, cout_g = c_out / g.groups;
  std::vector<std::int64_t> plane(oh * ow);
  // Input rows / columns of each output row / column per kernel tap, or -1 outside the image.
  const auto source = [](std::size_t o, std::size_t k, std::size_t stride, std::size_t dil, std::size_t pad,
                         std::size_t extent) -> std::ptrdiff_t {
    const std::ptrdiff_t i = static_cast<std::ptrdiff_t>(o * stride + k * dil) - static_cast<std::ptrdiff_t>(pad);
    return (i < 0 || i >= static_cast<std::ptrdiff_t>(extent)) ? -1 : i;
  };
  for (std::size_t n = 0; n < n_batch; ++n)
    for (std::size_t oc = 0; oc < c_out; ++oc) {
      const std::size_t group = oc / cout_g;
      std::fill(plane.begin(), plane.end(), detail::absent_view(bias) ? 0 : static_cast<std::int64_t>(bias[oc]));
      for (std::size_t icg = 0; icg < cin_g; ++icg) {
        const std::size_t ic = group * cin_g + icg;
        const std::int8_t* x = input.data() + (n * c_in + ic) * h * w;
        const std::int8_t* wk = weight.data() + (oc * cin_g + icg) * kh * kw;
        for (std::size_t ky = 0; ky < kh; ++ky)
          for (std::size_t kx = 0; kx < kw; ++kx) {
            const std::int64_t wv = wk[ky * kw + kx];
            if (wv == 0) continue;
            for (std::size_t y = 0; y < oh; ++y) {
              const std::ptrdiff_t iy = source(y, ky, g.stride_h, g.dilation_h, g.pad_h, h);
              if (iy < 0) continue;
              const std::int8_t* row = x + static_cast<std::size_t>(iy) * w;
              std::int64_t* out_row = plane.data() + y * ow;
              for (std::size_t xo = 0; xo < ow; ++xo) {
                const std::ptrdiff_t ix = source(xo, kx, g.stride_w, g.dilation_w, g.pad_w, w);
                if (ix < 0) continue;
                out_row[xo] += wv * (static_cast<std::int64_t>(row[ix]) - input_zero_point);
              }
            }
          }
      }
      std::int32_t* dst = acc + (n * c_out + oc) * oh * ow;
      for (std::size_t i = 0; i < oh * ow; ++i) dst[i] = detail::saturate_to_int32(plane[i]);
    }
}

/// Requantizes int32 accumulators with one multiplier per channel along `axis` (1 for
/// NCHW conv outputs, the last axis for linear outputs; a single multiplier applies to
/// every channel): out = clamp(acc * M_c + zero_point, range), acc * M_c rounded as
/// `rounding` says (core/fixed_point.hpp). out: acc.size() values.
inline void requantize_per_channel(tensor_view<const std::int32_t> acc, int axis,
                                   const std::vector<quantized_multiplier>& multiplier, std::int32_t zero_point,
                                   clamp_range range, std::int8_t* out,
                                   requantize_rounding rounding = requantize_rounding::double_rounding) {
  const std::string who = "requantize_per_channel";
  const channel_layout l = layout_along(acc.shape(), axis);
  if (multiplier.size() != 1 && multiplier.size() != l.channels)
    detail::fail(errc::invalid_argument, who + ": " + std::to_string(multiplier.size()) + " multipliers but axis " +
                                             std::to_string(axis) + " of the accumulators of shape " +
                                             acc.shape().str() + " has " + std::to_string(l.channels) + " channels");
  if (range.min > range.max || range.min < -128 || range.max > 127)
    detail::fail(errc::invalid_argument, who + ": output clamp [" + std::to_string(range.min) + ", " +
                                             std::to_string(range.max) + "] must be a non-empty part of int8");
  detail::check_zero_point(zero_point, clamp_range{-128, 127}, who, "output");
  for (std::size_t o = 0; o < l.outer; ++o)
    for (std::size_t c = 0; c < l.channels; ++c) {
      const quantized_multiplier m = multiplier.size() == 1 ? multiplier[0] : multiplier[c];
      const std::size_t base = (o * l.channels + c) * l.inner;
      for (std::size_t i = 0; i < l.inner; ++i)
        out[base + i] =
            static_cast<std::int8_t>(requantize(acc[base + i], m, zero_point, range.min, range.max, rounding));
    }
}

namespace detail {
template <class T>
void check_layer_for_kernel(const int8_layer<T>& layer, const char* who) {
  if (layer.weight_axis != 0)
    fail(errc::invalid_argument, std::string(who) + ": the layer's weight_axis is " +
                                     std::to_string(layer.weight_axis) + "; the integer kernels need axis 0");
  const std::size_t c = layer.weight_shape.rank() > 0 ? layer.weight_shape[0] : 0;
  if (layer.weight.size() != layer.weight_shape.numel() || layer.multiplier.size() != c || layer.bias.size() != c)
    fail(errc::invalid_argument, std::string(who) + ": the layer is inconsistent: weight of shape " +
                                     layer.weight_shape.str() + " with " + std::to_string(layer.weight.size()) +
                                     " values, " + std::to_string(layer.multiplier.size()) + " multipliers, " +
                                     std::to_string(layer.bias.size()) + " biases");
}
}  // namespace detail

/// The converted convolution: int8 input (the layer's input grid) to int8 output (its
/// output grid, clamped to layer.output_range), requantized with layer.rounding.
/// out: conv2d_output_shape(...) values.
template <class T>
void conv2d(tensor_view<const std::int8_t> input, const int8_layer<T>& layer, const conv2d_geometry& g,
            std::int8_t* out) {
  detail::check_layer_for_kernel(layer, "conv2d");
  const tensor_view<const std::int8_t> weight(layer.weight.data(), layer.weight_shape, "weight");
  const shape_t out_shape = conv2d_output_shape(input.shape(), weight.shape(), g);
  std::vector<std::int32_t> acc(out_shape.numel());
  conv2d_accumulate(input, layer.input.zero_point, weight, view(layer.bias, "bias"), g, acc.data());
  requantize_per_channel(tensor_view<const std::int32_t>(acc.data(), out_shape), 1, layer.multiplier,
                         layer.output.zero_point, layer.output_range, out, layer.rounding);
}

/// (..., M) for an input (..., K) and a weight (M, K).
inline shape_t linear_output_shape(const shape_t& input, const shape_t& weight) {
  if (weight.rank() != 2)
    detail::fail(errc::invalid_argument, "linear: weight of shape " + weight.str() + " must be (out, in)");
  if (input.rank() < 1 || input[input.rank() - 1] != weight[1])
    detail::fail(errc::invalid_argument, "linear: input of shape " + input.str() + " must end in the weight's " +
                                             std::to_string(weight[1]) + " input features (weight " + weight.str() +
                                             ")");
  std::vector<std::size_t> dims(input.begin(), input.end());
  dims.back() = weight[0];
  return shape_t::from_range(dims.begin(), dims.end());
}

/// int32 accumulators of a fully connected layer: acc[r, m] = bias[m] +
/// sum_k w[m, k] * (x[r, k] - input_zero_point). bias may be empty. acc: rows * M values.
inline void linear_accumulate(tensor_view<const std::int8_t> input, std::int32_t input_zero_point,
                              tensor_view<const std::int8_t> weight, tensor_view<const std::int32_t> bias,
                              std::int32_t* acc) {
  const shape_t out_shape = linear_output_shape(input.shape(), weight.shape());
  const std::size_t m_out = weight.shape()[0], k_in = weight.shape()[1];
  if (!detail::absent_view(bias) && bias.size() != m_out)
    detail::fail(errc::invalid_argument, "linear: bias has " + std::to_string(bias.size()) +
                                             " values but weight of shape " + weight.shape().str() + " has " +
                                             std::to_string(m_out) + " outputs");
  std::size_t rows = 1;  // every dimension of the input but the last
  for (int d = 0; d + 1 < input.rank(); ++d) rows *= input.shape()[d];
  (void)out_shape;
  for (std::size_t r = 0; r < rows; ++r) {
    const std::int8_t* x = input.data() + r * k_in;
    for (std::size_t m = 0; m < m_out; ++m) {
      const std::int8_t* wr = weight.data() + m * k_in;
      std::int64_t sum = detail::absent_view(bias) ? 0 : bias[m];
      for (std::size_t k = 0; k < k_in; ++k)
        sum += static_cast<std::int64_t>(wr[k]) * (static_cast<std::int64_t>(x[k]) - input_zero_point);
      acc[r * m_out + m] = detail::saturate_to_int32(sum);
    }
  }
}

/// The converted fully connected layer, requantized with layer.rounding.
/// out: linear_output_shape(...) values.
template <class T>
void linear(tensor_view<const std::int8_t> input, const int8_layer<T>& layer, std::int8_t* out) {
  detail::check_layer_for_kernel(layer, "linear");
  const tensor_view<const std::int8_t> weight(layer.weight.data(), layer.weight_shape, "weight");
  const shape_t out_shape = linear_output_shape(input.shape(), weight.shape());
  std::vector<std::int32_t> acc(out_shape.numel());
  linear_accumulate(input, layer.input.zero_point, weight, view(layer.bias, "bias"), acc.data());
  requantize_per_channel(tensor_view<const std::int32_t>(acc.data(), out_shape), out_shape.rank() - 1, layer.multiplier,
                         layer.output.zero_point, layer.output_range, out, layer.rounding);
}

/// Element-wise quantized add (same shapes; no broadcasting), rounded as p.rounding says.
/// out: a.size() values.
inline void add(tensor_view<const std::int8_t> a, tensor_view<const std::int8_t> b, const add_params& p,
                std::int8_t* out) {
  if (a.shape() != b.shape())
    detail::fail(errc::invalid_argument, "add: " + a.label() + " of shape " + a.shape().str() + " and " + b.label() +
                                             " of shape " + b.shape().str() + " differ (no broadcasting)");
  if (p.range.min < -128 || p.range.max > 127 || p.range.min > p.range.max)
    detail::fail(errc::invalid_argument, "add: output clamp [" + std::to_string(p.range.min) + ", " +
                                             std::to_string(p.range.max) + "] must be a non-empty part of int8");
  for (std::size_t i = 0; i < a.size(); ++i) out[i] = static_cast<std::int8_t>(add_value(a[i], b[i], p));
}

/// Requantizes an int8 tensor to another grid (one rounding per value: requantize_value).
/// out: in.size() values (may alias in).
inline void requantize_tensor(tensor_view<const std::int8_t> in, const requant_params& p, std::int8_t* out) {
  if (p.range.min < -128 || p.range.max > 127 || p.range.min > p.range.max)
    detail::fail(errc::invalid_argument, "requantize_tensor: output clamp [" + std::to_string(p.range.min) + ", " +
                                             std::to_string(p.range.max) + "] must be a non-empty part of int8");
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = static_cast<std::int8_t>(requantize_value(in[i], p));
}

/// The shape of the concatenation along `axis` (negative counts from the end): every other
/// dimension must agree.
inline shape_t cat_output_shape(const std::vector<tensor_view<const std::int8_t>>& inputs, int axis) {
  if (inputs.empty()) detail::fail(errc::empty_input, "cat: no inputs");
  const shape_t& first = inputs[0].shape();
  int a = 0;
  detail::throw_if(check_axis(axis, first.rank(), &a));
  std::vector<std::size_t> dims(first.begin(), first.end());
  dims[static_cast<std::size_t>(a)] = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const shape_t& s = inputs[i].shape();
    bool same = s.rank() == first.rank();
    for (int d = 0; same && d < s.rank(); ++d) same = d == a || s[d] == first[d];
    if (!same)
      detail::fail(errc::invalid_argument, "cat: input " + std::to_string(i) + " of shape " + s.str() +
                                               " does not match input 0 of shape " + first.str() + " outside axis " +
                                               std::to_string(axis));
    dims[static_cast<std::size_t>(a)] += s[a];
  }
  return shape_t::from_range(dims.begin(), dims.end());
}

/// Quantized cat: every input requantized from its grid to the output grid (one scale and
/// zero point, e.g. cat_output_qparams), clamped to `range`, each value rounded once
/// (requantize_value). out: cat_output_shape values.
template <class T>
void cat(const std::vector<tensor_view<const std::int8_t>>& inputs, const std::vector<qparams<T>>& input_qparams,
         int axis, const qparams<T>& output, clamp_range range, std::int8_t* out) {
  const shape_t out_shape = cat_output_shape(inputs, axis);
  if (input_qparams.size() != inputs.size())
    detail::fail(errc::invalid_argument, "cat: " + std::to_string(inputs.size()) + " inputs but " +
                                             std::to_string(input_qparams.size()) + " input qparams");
  if (range.min < -128 || range.max > 127 || range.min > range.max)
    detail::fail(errc::invalid_argument, "cat: output clamp [" + std::to_string(range.min) + ", " +
                                             std::to_string(range.max) + "] must be a non-empty part of int8");
  std::vector<requant_params> params;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const std::string who = "cat: input " + std::to_string(i);
    detail::check_zero_point(input_qparams[i].zero_point, clamp_range{-128, 127}, who, "input");
    detail::check_scale(input_qparams[i].scale, who, "input");
    params.push_back(make_requant_params(input_qparams[i], output, range));
  }
  int a = 0;
  detail::throw_if(check_axis(axis, out_shape.rank(), &a));
  const channel_layout lo = layout_along(out_shape, a);
  std::size_t offset = 0;  // along the axis
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const channel_layout li = layout_along(inputs[i].shape(), a);
    for (std::size_t o = 0; o < li.outer; ++o)
      for (std::size_t c = 0; c < li.channels; ++c) {
        const std::int8_t* src = inputs[i].data() + (o * li.channels + c) * li.inner;
        std::int8_t* dst = out + (o * lo.channels + offset + c) * lo.inner;
        for (std::size_t k = 0; k < li.inner; ++k)
          dst[k] = static_cast<std::int8_t>(requantize_value(src[k], params[i]));
      }
    offset += li.channels;
  }
}

QLIB_NAMESPACE_END
