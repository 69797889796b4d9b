// Conversion and integer kernels: convert_layer against the formulas; conv2d and linear
// against a slow integer reference with exact 128-bit requantization (bit-exact) and
// against the real-valued computation (within one step); add and cat on tensors; a small
// CNN's timing; bad input.
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <qlib/fuse/convert.hpp>
#include <qlib/fuse/int_kernels.hpp>
#include <random>
#include <string>
#include <vector>

#include "fuse/exact_requant.hpp"
#include "test_data.hpp"
#include "test_errors.hpp"

using qlib::clamp_range;
using qlib::conv2d_geometry;
using qlib::qparams;
using qlib::shape_t;
using qlib::view;
using qlib_test::expect_error;

namespace {

std::vector<float> randn(std::size_t n, std::uint64_t seed, float scale = 1.0f) {
  auto v = qlib_test::sample<float>(qlib_test::dist::gaussian, n, seed);
  for (float& x : v) x *= scale;
  return v;
}

/// Quantizes float activations to int8 on the given grid (round half to even, as torch).
std::vector<std::int8_t> quantize_input(const std::vector<float>& x, const qparams<float>& p) {
  std::vector<std::int8_t> q(x.size());
  for (std::size_t i = 0; i < x.size(); ++i)
    q[i] = static_cast<std::int8_t>(qlib::quantize_value(x[i], p.scale, p.zero_point, -128, 127));
  return q;
}

struct conv_case {
  std::size_t n, ci, h, w, co, kh, kw;
  conv2d_geometry g;
  bool relu;
  bool with_bias;
};

/// The slowest obvious integer convolution: every tap tested against the padded bounds,
/// 128-bit accumulation, exact requantization.
std::vector<std::int8_t> slow_int_conv(const std::vector<std::int8_t>& x, const qlib::int8_layer<float>& L,
                                       const conv_case& c, const shape_t& out_shape,
                                       std::vector<std::int32_t>* acc_out = nullptr) {
  const std::size_t oh = out_shape[2], ow = out_shape[3], cin_g = c.ci / c.g.groups, cout_g = c.co / c.g.groups;
  std::vector<std::int8_t> out(out_shape.numel());
  if (acc_out) acc_out->resize(out_shape.numel());
  for (std::size_t n = 0; n < c.n; ++n)
    for (std::size_t o = 0; o < c.co; ++o)
      for (std::size_t i = 0; i < oh; ++i)
        for (std::size_t j = 0; j < ow; ++j) {
          qlib_test::i128 acc = L.bias[o];
          for (std::size_t k = 0; k < cin_g; ++k)
            for (std::size_t a = 0; a < c.kh; ++a)
              for (std::size_t b = 0; b < c.kw; ++b) {
                const long yy = static_cast<long>(i * c.g.stride_h + a * c.g.dilation_h) - static_cast<long>(c.g.pad_h);
                const long xx = static_cast<long>(j * c.g.stride_w + b * c.g.dilation_w) - static_cast<long>(c.g.pad_w);
                const std::size_t ic = (o / cout_g) * cin_g + k;
                // Padding holds the zero point (real 0): x - z = 0 there.
                const std::int32_t xv =
                    (yy < 0 || xx < 0 || yy >= static_cast<long>(c.h) || xx >= static_cast<long>(c.w))
                        ? L.input.zero_point
                        : x[((n * c.ci + ic) * c.h + static_cast<std::size_t>(yy)) * c.w +
                            static_cast<std::size_t>(xx)];
                acc += static_cast<qlib_test::i128>(L.weight[((o * cin_g + k) * c.kh + a) * c.kw + b]) *
                       (xv - L.input.zero_point);
              }
          const std::size_t idx = ((n * c.co + o) * oh + i) * ow + j;
          const std::int32_t acc32 = qlib_test::clamp32(acc);
          if (acc_out) (*acc_out)[idx] = acc32;
          out[idx] = static_cast<std::int8_t>(
              L.rounding == qlib::requantize_rounding::single_rounding
                  ? qlib_test::ref_requantize_single(acc32, L.multiplier[o].m0, L.multiplier[o].shift,
                                                     L.output.zero_point, L.output_range.min, L.output_range.max)
                  : qlib_test::ref_requantize(acc32, L.multiplier[o].m0, L.multiplier[o].shift, L.output.zero_point,
                                              L.output_range.min, L.output_range.max));
        }
  return out;
}

/// The real-valued computation: dequantize input, weight and bias, convolve in double,
/// quantize to the output grid (round half away, clamp).
std::vector<std::int8_t> real_conv(const std::vector<std::int8_t>& x, const qlib::int8_layer<float>& L,
                                   const conv_case& c, const shape_t& out_shape) {
  const std::size_t oh = out_shape[2], ow = out_shape[3], cin_g = c.ci / c.g.groups, cout_g = c.co / c.g.groups;
  std::vector<std::int8_t> out(out_shape.numel());
  const double s_in = L.input.scale, s_out = L.output.scale;
  for (std::size_t n = 0; n < c.n; ++n)
    for (std::size_t o = 0; o < c.co; ++o) {
      const double s_w = L.weight_scale[o];
      for (std::size_t i = 0; i < oh; ++i)
        for (std::size_t j = 0; j < ow; ++j) {
          double y = L.bias[o] * s_in * s_w;
          for (std::size_t k = 0; k < cin_g; ++k)
            for (std::size_t a = 0; a < c.kh; ++a)
              for (std::size_t b = 0; b < c.kw; ++b) {
                const long yy = static_cast<long>(i * c.g.stride_h + a * c.g.dilation_h) - static_cast<long>(c.g.pad_h);
                const long xx = static_cast<long>(j * c.g.stride_w + b * c.g.dilation_w) - static_cast<long>(c.g.pad_w);
                if (yy < 0 || xx < 0 || yy >= static_cast<long>(c.h) || xx >= static_cast<long>(c.w)) continue;
                const std::size_t ic = (o / cout_g) * cin_g + k;
                const double xr =
                    (x[((n * c.ci + ic) * c.h + static_cast<std::size_t>(yy)) * c.w + static_cast<std::size_t>(xx)] -
                     L.input.zero_point) *
                    s_in;
                y += xr * L.weight[((o * cin_g + k) * c.kh + a) * c.kw + b] * s_w;
              }
          const double q = std::round(y / s_out) + L.output.zero_point;
          out[((n * c.co + o) * oh + i) * ow + j] =
              static_cast<std::int8_t>(std::fmin(std::fmax(q, L.output_range.min), L.output_range.max));
        }
    }
  return out;
}

}  // namespace

TEST_CASE("convert: int8 weights, int32 bias and multipliers follow the formulas") {
  const std::size_t co = 5, ci = 3, k = 3;
  auto w = randn(co * ci * k * k, 1, 0.2f);
  for (std::size_t i = 0; i < ci * k * k; ++i) w[2 * ci * k * k + i] = 0.0f;  // a dead channel
  const auto b = randn(co, 2, 0.5f);
  const qparams<float> in{0.03f, -7}, out{0.08f, 12};
  const auto L = qlib::convert_layer(view(w.data(), shape_t{co, ci, k, k}), view(b), in, out);
  REQUIRE(L.out_channels() == co);
  CHECK(L.weight_shape == shape_t{co, ci, k, k});
  CHECK(L.output_range.min == -128);
  for (std::size_t c = 0; c < co; ++c) {
    float amax = 0;
    for (std::size_t i = 0; i < ci * k * k; ++i) amax = std::fmax(amax, std::fabs(w[c * ci * k * k + i]));
    const float s = c == 2 ? 1.0f : amax / 127.0f;
    CHECK(L.weight_scale[c] == s);
    int qmax = 0;
    for (std::size_t i = 0; i < ci * k * k; ++i) {
      const int q = L.weight[c * ci * k * k + i];
      CHECK(q == static_cast<int>(qlib::round_half_even(w[c * ci * k * k + i] / s)));
      CHECK(std::abs(q) <= 127);
      qmax = std::max(qmax, std::abs(q));
    }
    CHECK(qmax == (c == 2 ? 0 : 127));
    const double bias_scale = static_cast<double>(in.scale) * static_cast<double>(s);
    CHECK(L.bias[c] == static_cast<std::int32_t>(qlib::round_half_even(static_cast<double>(b[c]) / bias_scale)));
    CHECK(L.multiplier[c] == qlib::quantize_multiplier(bias_scale / static_cast<double>(out.scale)));
  }
  // Fused ReLU: the clamp starts at the output zero point. 4-bit weights: [-7, 7].
  qlib::convert_options o;
  o.relu = true;
  o.weight_bits = 4;
  const auto L4 =
      qlib::convert_layer(view(w.data(), shape_t{co, ci * k * k}), qlib::tensor_view<const float>(), in, out, o);
  CHECK(L4.output_range.min == 12);
  CHECK(L4.output_range.max == 127);
  CHECK(L4.bias == std::vector<std::int32_t>(co, 0));
  for (std::int8_t q : L4.weight) CHECK(std::abs(q) <= 7);
  CHECK(L4.weight_scale[0] == Approx(L.weight_scale[0] * 127.0f / 7.0f));
  // Given scales (from a QAT weight quantizer) are used as they are.
  const std::vector<float> given(co, 0.01f);
  const auto Lg = qlib::convert_layer(view(w.data(), shape_t{co, ci * k * k}), view(b), view(given), in, out);
  CHECK(Lg.weight_scale == given);
  // ConvTranspose weight (C_in, C_out, kh, kw): per channel along axis 1.
  qlib::convert_options t;
  t.weight_axis = 1;
  const auto Lt = qlib::convert_layer(view(w.data(), shape_t{ci, co, k, k}), view(b), in, out, t);
  CHECK(Lt.out_channels() == co);
}

TEST_CASE("int_kernels: conv2d is bit-exact to the slow reference and within one step of the real computation") {
  const std::vector<conv_case> cases = {
      {2, 3, 8, 8, 4, 3, 3, conv2d_geometry{}, false, true},
      {2, 3, 8, 8, 6, 3, 3, conv2d_geometry{1, 1, 1, 1, 1, 1, 1}, true, true},    // same padding, ReLU
      {1, 4, 9, 7, 4, 3, 2, conv2d_geometry{2, 1, 1, 0, 1, 1, 1}, false, false},  // stride 2, rect kernel, no bias
      {2, 4, 8, 8, 6, 3, 3, conv2d_geometry{1, 2, 2, 2, 2, 2, 2}, false, true},   // dilation 2, groups 2
      {1, 6, 6, 6, 6, 3, 3, conv2d_geometry{1, 1, 1, 1, 1, 1, 6}, true, true},    // depthwise
      {3, 2, 5, 5, 3, 1, 1, conv2d_geometry{}, false, true},                      // 1x1
  };
  std::uint64_t seed = 10;
  for (const qlib::requantize_rounding rounding :
       {qlib::requantize_rounding::double_rounding, qlib::requantize_rounding::single_rounding})
    for (const conv_case& c : cases) {
      const auto xf = qlib_test::sample<float>(qlib_test::dist::laplace, c.n * c.ci * c.h * c.w, seed++);
      const auto wf = randn(c.co * (c.ci / c.g.groups) * c.kh * c.kw, seed++, 0.3f);
      const auto bf = randn(c.co, seed++, 0.2f);
      const qparams<float> in{0.04f, 5}, out{c.relu ? 0.03f : 0.06f, c.relu ? -128 : -3};
      qlib::convert_options o;
      o.relu = c.relu;
      o.rounding = rounding;
      INFO("rounding: " << qlib::to_string(rounding));
      const auto L = qlib::convert_layer(view(wf.data(), shape_t{c.co, c.ci / c.g.groups, c.kh, c.kw}),
                                         c.with_bias ? view(bf) : qlib::tensor_view<const float>(), in, out, o);
      CHECK(L.rounding == rounding);
      const auto xq = quantize_input(xf, in);
      const shape_t in_shape{c.n, c.ci, c.h, c.w};
      const shape_t out_shape = qlib::conv2d_output_shape(in_shape, L.weight_shape, c.g);
      std::vector<std::int8_t> got(out_shape.numel());
      qlib::conv2d(view(xq.data(), in_shape), L, c.g, got.data());
      std::vector<std::int32_t> acc(out_shape.numel()), acc_ref;
      qlib::conv2d_accumulate(view(xq.data(), in_shape), L.input.zero_point, view(L.weight.data(), L.weight_shape),
                              view(L.bias), c.g, acc.data());
      const auto slow = slow_int_conv(xq, L, c, out_shape, &acc_ref);
      const auto real = real_conv(xq, L, c, out_shape);
      CHECK(acc == acc_ref);
      CHECK(got == slow);
      int diff = 0, distinct = 0;
      for (std::size_t i = 0; i < got.size(); ++i) {
        REQUIRE(std::abs(got[i] - real[i]) <= 1);
        diff += got[i] != real[i];
        distinct += got[i] != got[0];
      }
      INFO("output " << out_shape.str() << ": " << diff << " of " << got.size() << " differ by one step");
      CHECK(diff * 50 < static_cast<int>(got.size()));
      CHECK(distinct > 0);  // not a degenerate (all-clamped) output
      if (c.relu)
        for (std::int8_t v : got) CHECK(v >= L.output.zero_point);
    }
}

TEST_CASE("int_kernels: linear is bit-exact to the slow reference and within one step of the real computation") {
  const std::size_t rows = 6, k_in = 37, m_out = 9;
  const auto xf = qlib_test::sample<float>(qlib_test::dist::relu, rows * k_in, 40);
  const auto wf = randn(m_out * k_in, 41, 0.2f), bf = randn(m_out, 42, 0.3f);
  const qparams<float> in{0.03f, -128}, out{0.05f, 7};
  for (const qlib::requantize_rounding rounding :
       {qlib::requantize_rounding::double_rounding, qlib::requantize_rounding::single_rounding})
    for (bool relu : {false, true}) {
      qlib::convert_options o;
      o.relu = relu;
      o.rounding = rounding;
      const auto L = qlib::convert_layer(view(wf.data(), shape_t{m_out, k_in}), view(bf), in, out, o);
      const bool single = rounding == qlib::requantize_rounding::single_rounding;
      const auto xq = quantize_input(xf, in);
      const shape_t in_shape{2, 3, k_in};
      REQUIRE(qlib::linear_output_shape(in_shape, L.weight_shape) == (shape_t{2, 3, m_out}));
      std::vector<std::int8_t> got(rows * m_out);
      qlib::linear(view(xq.data(), in_shape), L, got.data());
      int diff = 0;
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t m = 0; m < m_out; ++m) {
          qlib_test::i128 acc = L.bias[m];
          double y = L.bias[m] * static_cast<double>(in.scale) * L.weight_scale[m];
          for (std::size_t k = 0; k < k_in; ++k) {
            acc += static_cast<qlib_test::i128>(L.weight[m * k_in + k]) * (xq[r * k_in + k] - in.zero_point);
            y += (xq[r * k_in + k] - in.zero_point) * static_cast<double>(in.scale) * L.weight[m * k_in + k] *
                 L.weight_scale[m];
          }
          const std::int32_t slow =
              single
                  ? qlib_test::ref_requantize_single(qlib_test::clamp32(acc), L.multiplier[m].m0, L.multiplier[m].shift,
                                                     out.zero_point, L.output_range.min, L.output_range.max)
                  : qlib_test::ref_requantize(qlib_test::clamp32(acc), L.multiplier[m].m0, L.multiplier[m].shift,
                                              out.zero_point, L.output_range.min, L.output_range.max);
          const double real =
              std::fmin(std::fmax(std::round(y / out.scale) + out.zero_point, L.output_range.min), L.output_range.max);
          CHECK(got[r * m_out + m] == slow);
          CHECK(std::fabs(got[r * m_out + m] - real) <= 1.0);
          diff += got[r * m_out + m] != static_cast<std::int8_t>(real);
        }
      CHECK(diff <= 2);
    }
}

TEST_CASE("int_kernels: add and cat on tensors") {
  const auto af = randn(60, 50), bf = randn(60, 51, 3.0f);
  const qparams<float> qa{0.02f, 3}, qb{0.05f, -9}, qo{0.06f, 1};
  const auto a = quantize_input(af, qa), b = quantize_input(bf, qb);
  const shape_t s{3, 4, 5};
  const auto p = qlib::make_add_params(qa, qb, qo);
  std::vector<std::int8_t> sum(a.size());
  qlib::add(view(a.data(), s, "a"), view(b.data(), s, "b"), p, sum.data());
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(sum[i] == qlib::add_value(a[i], b[i], p));
    const double real = (qa.scale * (a[i] - qa.zero_point) + qb.scale * (b[i] - qb.zero_point)) / qo.scale;
    CHECK(std::fabs(sum[i] - std::fmin(std::fmax(std::round(real) + qo.zero_point, -128.0), 127.0)) <= 1.0);
  }
  // Cat along axis 1 of (3, 4, 5) and (3, 2, 5) with different grids, to the union grid.
  const auto cf = randn(30, 52, 0.5f);
  const qparams<float> qc{0.01f, -20};
  const auto cq = quantize_input(cf, qc);
  const shape_t sc{3, 2, 5};
  const auto qout = qlib::cat_output_qparams<float>({-2.0f, -1.0f}, {6.0f, 1.5f}, qlib::qspec{});
  std::vector<std::int8_t> cat(3 * 6 * 5);
  qlib::cat<float>({view(a.data(), s), view(cq.data(), sc)}, {qa, qc}, 1, qout, clamp_range{}, cat.data());
  const auto ra = qlib::make_requant_params(qa, qout), rc = qlib::make_requant_params(qc, qout);
  for (std::size_t n = 0; n < 3; ++n)
    for (std::size_t c = 0; c < 6; ++c)
      for (std::size_t i = 0; i < 5; ++i) {
        const std::int32_t expect = c < 4 ? qlib::requantize_value(a[(n * 4 + c) * 5 + i], ra)
                                          : qlib::requantize_value(cq[(n * 2 + c - 4) * 5 + i], rc);
        CHECK(cat[(n * 6 + c) * 5 + i] == expect);
      }
  // Each cat output is the correctly rounded requantization (one rounding; ties up),
  // against exact rational arithmetic on the float scales.
  const auto exact = [&](std::int32_t q, const qparams<float>& in) {
    const qlib_test::i128 v =
        qlib_test::exact_scaled_half_up(q - in.zero_point, in.scale, qout.scale) + qout.zero_point;
    return static_cast<std::int32_t>(v < -128 ? -128 : v > 127 ? 127 : v);
  };
  for (std::size_t n = 0; n < 3; ++n)
    for (std::size_t c = 0; c < 6; ++c)
      for (std::size_t i = 0; i < 5; ++i)
        CHECK(cat[(n * 6 + c) * 5 + i] ==
              (c < 4 ? exact(a[(n * 4 + c) * 5 + i], qa) : exact(cq[(n * 2 + c - 4) * 5 + i], qc)));
  std::vector<std::int8_t> rq(a.size());
  qlib::requantize_tensor(view(a.data(), s), ra, rq.data());
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(rq[i] == qlib::requantize_value(a[i], ra));
  // The add with TFLite's single rounding, element by element.
  const auto p1 = qlib::make_add_params(qa, qb, qo, clamp_range{}, qlib::requantize_rounding::single_rounding);
  qlib::add(view(a.data(), s, "a"), view(b.data(), s, "b"), p1, sum.data());
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(sum[i] == qlib::add_value(a[i], b[i], p1));
  CHECK(qlib::cat_output_shape({view(a.data(), s), view(cq.data(), sc)}, -2) == (shape_t{3, 6, 5}));
}

TEST_CASE("int_kernels: requantize_per_channel with either rounding, exact to the references") {
  // Accumulators of conv-like magnitudes on (2, 4, 30): 4 channels, multipliers from tiny to
  // above 1; the default stays double rounding.
  std::mt19937_64 g(80);
  const shape_t shape{2, 4, 30};
  std::vector<std::int32_t> acc(shape.numel());
  for (std::size_t i = 0; i < acc.size(); ++i)
    acc[i] = static_cast<std::int32_t>(static_cast<std::int64_t>(g() % 2000001) - 1000000) >> (g() % 12);
  const std::vector<qlib::quantized_multiplier> m = {qlib::quantize_multiplier(3.1e-4),
                                                     qlib::quantize_multiplier(0.0137), qlib::quantize_multiplier(0.37),
                                                     qlib::quantize_multiplier(1.7)};
  std::vector<std::int8_t> by_default(acc.size()), dbl(acc.size()), sgl(acc.size());
  qlib::requantize_per_channel(view(acc.data(), shape), 1, m, -3, clamp_range{-128, 127}, by_default.data());
  qlib::requantize_per_channel(view(acc.data(), shape), 1, m, -3, clamp_range{-128, 127}, dbl.data(),
                               qlib::requantize_rounding::double_rounding);
  qlib::requantize_per_channel(view(acc.data(), shape), 1, m, -3, clamp_range{-128, 127}, sgl.data(),
                               qlib::requantize_rounding::single_rounding);
  CHECK(by_default == dbl);
  int differ = 0;
  for (std::size_t i = 0; i < acc.size(); ++i) {
    const qlib::quantized_multiplier mc = m[(i / 30) % 4];
    REQUIRE(dbl[i] == qlib_test::ref_requantize(acc[i], mc.m0, mc.shift, -3, -128, 127));
    REQUIRE(sgl[i] == qlib_test::ref_requantize_single(acc[i], mc.m0, mc.shift, -3, -128, 127));
    differ += dbl[i] != sgl[i];
  }
  INFO(differ << " of " << acc.size() << " outputs differ between the roundings");
  CHECK(differ * 20 < static_cast<int>(acc.size()));
}

TEST_CASE("int_kernels: a small CNN on 8x8 images runs quickly") {
  // 64 images 3x8x8 -> conv 3x3 (16, ReLU) -> conv 3x3 stride 2 (32, ReLU) -> linear (10).
  const std::size_t n = 64;
  const auto x = quantize_input(qlib_test::sample<float>(qlib_test::dist::uniform, n * 3 * 64, 60), {0.02f, -128});
  const auto w1 = randn(16 * 3 * 9, 61, 0.2f), w2 = randn(32 * 16 * 9, 62, 0.1f), w3 = randn(10 * 32 * 16, 63, 0.05f);
  qlib::convert_options relu;
  relu.relu = true;
  const auto l1 = qlib::convert_layer(view(w1.data(), shape_t{16, 3, 3, 3}), {}, qparams<float>{0.02f, -128},
                                      qparams<float>{0.05f, -128}, relu);
  const auto l2 = qlib::convert_layer(view(w2.data(), shape_t{32, 16, 3, 3}), {}, qparams<float>{0.05f, -128},
                                      qparams<float>{0.05f, -128}, relu);
  const auto l3 = qlib::convert_layer(view(w3.data(), shape_t{10, 32 * 16}), {}, qparams<float>{0.05f, -128},
                                      qparams<float>{0.1f, 0});
  const conv2d_geometry same{1, 1, 1, 1, 1, 1, 1}, down{2, 2, 1, 1, 1, 1, 1};
  std::vector<std::int8_t> h1(n * 16 * 64), h2(n * 32 * 16), logits(n * 10);
  const auto t0 = std::chrono::steady_clock::now();
  qlib::conv2d(view(x.data(), shape_t{n, 3, 8, 8}), l1, same, h1.data());
  qlib::conv2d(view(h1.data(), shape_t{n, 16, 8, 8}), l2, down, h2.data());
  qlib::linear(view(h2.data(), shape_t{n, 32 * 16}), l3, logits.data());
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  INFO("small CNN, 64 images of 3x8x8: " << ms << " ms");
  CHECK(ms < 2000.0);
  int distinct = 0;
  for (std::int8_t v : logits) distinct += v != logits[0];
  CHECK(distinct > 0);
}

TEST_CASE("int_kernels: bad input is rejected naming the argument") {
  const auto w = randn(4 * 3 * 9, 70, 0.2f), b = randn(4, 71);
  const qparams<float> in{0.02f, 0}, out{0.05f, 0};
  const shape_t ws{4, 3, 3, 3};
  // Conversion options and parameters.
  qlib::convert_options o;
  o.weight_bits = 9;
  expect_error([&] { qlib::convert_layer(view(w.data(), ws), view(b), in, out, o); }, qlib::errc::invalid_argument,
               "weight_bits = 9");
  o.weight_bits = 1;
  expect_error([&] { qlib::convert_layer(view(w.data(), ws), view(b), in, out, o); }, qlib::errc::invalid_argument,
               "weight_bits = 1");
  expect_error([&] { qlib::weight_scales(view(w.data(), ws), 0, 12); }, qlib::errc::invalid_argument, "bits = 12");
  expect_error(
      [&] {
        qlib::convert_layer(view(w.data(), ws), view(b), qparams<float>{0.0f, 0}, out);
      },
      qlib::errc::invalid_argument, "input scale = 0");
  expect_error(
      [&] {
        qlib::convert_layer(view(w.data(), ws), view(b), in, qparams<float>{-0.5f, 0});
      },
      qlib::errc::invalid_argument, "output scale = -0.5");
  expect_error(
      [&] {
        qlib::convert_layer(view(w.data(), ws), view(b), qparams<float>{0.1f, 128}, out);
      },
      qlib::errc::invalid_argument, "input zero point 128");
  expect_error([&] { qlib::convert_layer(view(w.data(), ws), view(b.data(), 3), in, out); },
               qlib::errc::invalid_argument, "bias has 3 values");
  const std::vector<float> bad_scales = {0.1f, 0.1f, 0.0f, 0.1f};
  expect_error([&] { qlib::convert_layer(view(w.data(), ws), view(b), view(bad_scales), in, out); },
               qlib::errc::invalid_argument, "channel 2: weight scale = 0");
  expect_error([&] { qlib::convert_layer(view(w.data(), ws), view(b), view(bad_scales.data(), 3), in, out); },
               qlib::errc::invalid_argument, "weight_scale has 3 values");
  std::vector<float> wnan = w;
  wnan[5] = std::nan("");
  expect_error([&] { qlib::convert_layer(view(wnan.data(), ws), view(b), in, out); }, qlib::errc::non_finite,
               "flat index 5");
  expect_error(
      [&] {
        qlib::convert_layer(view(w.data(), ws), view(b), in, qparams<float>{1e-15f, 0});
      },
      qlib::errc::invalid_argument, "requantization multiplier of channel");

  // Kernel shapes.
  const auto L = qlib::convert_layer(view(w.data(), ws), view(b), in, out);
  std::vector<std::int8_t> x(2 * 5 * 8 * 8), y(4096);
  expect_error(
      [&] {
        qlib::conv2d(view(x.data(), shape_t{2, 5, 8, 8}), L, {}, y.data());
      },
      qlib::errc::invalid_argument, "expects 3 input channels");
  expect_error(
      [&] {
        qlib::conv2d(view(x.data(), shape_t{2, 3, 64}), L, {}, y.data());
      },
      qlib::errc::invalid_argument, "must be NCHW");
  expect_error(
      [&] {
        qlib::conv2d(view(x.data(), shape_t{2, 3, 2, 2}), L, {}, y.data());
      },
      qlib::errc::invalid_argument, "does not fit the padded input");
  conv2d_geometry g;
  g.groups = 2;
  expect_error(
      [&] {
        qlib::conv2d(view(x.data(), shape_t{2, 3, 8, 8}), L, g, y.data());
      },
      qlib::errc::invalid_argument, "groups = 2 must divide");
  g = {};
  g.stride_h = 0;
  expect_error(
      [&] {
        qlib::conv2d(view(x.data(), shape_t{2, 3, 8, 8}), L, g, y.data());
      },
      qlib::errc::invalid_argument, "stride");
  expect_error(
      [&] {
        qlib::linear(view(x.data(), shape_t{2, 26}), L, y.data());
      },
      qlib::errc::invalid_argument, "must be (out, in)");
  const auto Lin = qlib::convert_layer(view(w.data(), shape_t{4, 27}), view(b), in, out);
  expect_error(
      [&] {
        qlib::linear(view(x.data(), shape_t{2, 26}), Lin, y.data());
      },
      qlib::errc::invalid_argument, "input features");
  const std::vector<std::int32_t> short_bias(3);
  std::vector<std::int32_t> acc(4096);
  expect_error(
      [&] {
        qlib::conv2d_accumulate(view(x.data(), shape_t{2, 3, 8, 8}), 0, view(L.weight.data(), ws), view(short_bias), {},
                                acc.data());
      },
      qlib::errc::invalid_argument, "bias has 3 values");
  qlib::convert_options t;
  t.weight_axis = 1;
  const auto Lt = qlib::convert_layer(view(w.data(), ws), qlib::tensor_view<const float>(), in, out, t);
  expect_error(
      [&] {
        qlib::conv2d(view(x.data(), shape_t{2, 3, 8, 8}), Lt, {}, y.data());
      },
      qlib::errc::invalid_argument, "weight_axis is 1");
  // Add and cat.
  const auto p = qlib::make_add_params(in, out, out);
  expect_error(
      [&] {
        qlib::add(view(x.data(), shape_t{2, 3}, "a"), view(x.data(), shape_t{3, 2}, "b"), p, y.data());
      },
      qlib::errc::invalid_argument, "tensor 'a' of shape (2, 3) and tensor 'b' of shape (3, 2) differ");
  expect_error(
      [&] {
        qlib::cat<float>({view(x.data(), shape_t{2, 3, 4}), view(x.data(), shape_t{2, 3, 5})}, {in, in}, 1, out, {},
                         y.data());
      },
      qlib::errc::invalid_argument, "input 1 of shape (2, 3, 5) does not match");
  expect_error(
      [&] {
        qlib::cat<float>({view(x.data(), shape_t{2, 3})}, {in, in}, 0, out, {}, y.data());
      },
      qlib::errc::invalid_argument, "1 inputs but 2 input qparams");
  expect_error(
      [&] {
        qlib::cat<float>({view(x.data(), shape_t{2, 3})}, {qparams<float>{0.0f, 0}}, 0, out, {}, y.data());
      },
      qlib::errc::invalid_argument, "cat: input 0: input scale = 0");
  expect_error(
      [&] {
        qlib::cat<float>({view(x.data(), shape_t{2, 3})}, {in}, 2, out, {}, y.data());
      },
      qlib::errc::invalid_argument, "axis 2 is out of range");
  expect_error([&] { qlib::cat<float>({}, {}, 0, out, {}, y.data()); }, qlib::errc::empty_input, "no inputs");
  expect_error(
      [&] {
        qlib::requantize_per_channel(view(acc.data(), shape_t{2, 4, 3}), 1, L.multiplier, 0, clamp_range{0, 255},
                                     y.data());
      },
      qlib::errc::invalid_argument, "part of int8");
  expect_error(
      [&] {
        qlib::requantize_per_channel(view(acc.data(), shape_t{2, 5, 3}), 1, L.multiplier, 0, {}, y.data());
      },
      qlib::errc::invalid_argument, "4 multipliers but axis 1");
}
