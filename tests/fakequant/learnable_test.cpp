// LSQ and ULQ gradients (fakequant/learnable.hpp): against brute-force references written
// here (PyTorch's learnable fake-quant backward, AMCT's ulq_retrain backward), against
// central finite differences of the forward with each rounding residual frozen (the
// straight-through estimator makes d round(u) / du = 1, so the STE gradient is the exact
// derivative of that function), the gradient scale, per channel on each axis, bad input.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <qlib/core/quantize.hpp>
#include <qlib/fakequant/learnable.hpp>
#include <random>
#include <vector>

#include "fakequant/fq_test_util.hpp"
#include "test_data.hpp"

using qlib::channel_qparams;
using qlib::errc;
using qlib::lsq_grad_scale;
using qlib::lsq_options;
using qlib::qparams;
using qlib::qspec;
using qlib::rounding;
using qlib::shape_t;
using qlib::tensor_view;
using qlib::ulq_options;
using qlib_test::error_message;
using qlib_test::first_bit_difference;

namespace {

bool close(double a, double b, double rel, double abs_tol = 0.0) {
  return std::fabs(a - b) <= abs_tol + rel * std::max(std::fabs(a), std::fabs(b));
}

// ---- LSQ references ----------------------------------------------------------------------

struct lsq_ref {
  long double scale = 0, zero_point = 0;
  long double abs_scale = 0, abs_zero_point = 0;  ///< sums of |terms|: the scale of rounding error
};

/// PyTorch's _fake_quantize_learnable_per_tensor_affine backward, element by element
/// (aten/src/ATen/native/quantized/cpu/kernels/QuantizedOpKernels.cpp), with x / s for
/// x * inv_scale and without the gradient factor.
template <class T>
lsq_ref lsq_brute(const T* dy, const T* x, T* dx, std::size_t n, std::size_t stride, T s, std::int32_t z,
                  const qspec& spec, rounding mode) {
  lsq_ref r;
  const long double qmin = spec.qmin(), qmax = spec.qmax();
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = k * stride;
    const T v = x[i] / s;
    const long double xq = static_cast<long double>(qlib::round_with(v, mode)) + z;
    long double ds = 0, dz = 0;
    if (xq < qmin || xq > qmax) {
      dx[i] = T(0);
      dz = -static_cast<long double>(dy[i]) * s;
      ds = static_cast<long double>(dy[i]) * (xq < qmin ? qmin - z : qmax - z);
    } else {
      dx[i] = dy[i];
      ds = static_cast<long double>(dy[i]) * (xq - z - static_cast<long double>(v));
    }
    r.scale += ds, r.zero_point += dz;
    r.abs_scale += std::fabs(ds), r.abs_zero_point += std::fabs(dz);
  }
  return r;
}

/// sum(dy * x_hat) with every element's class (below / inside / above) and rounding
/// residual frozen at (s0, z0): the function whose exact derivative LSQ's STE gradient is.
template <class T>
double lsq_frozen_loss(const std::vector<T>& dy, const std::vector<T>& x, T s0, std::int32_t z0, const qspec& spec,
                       double s, double z) {
  double sum = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v0 = static_cast<double>(x[i] / s0);
    const double r0 = static_cast<double>(qlib::round_half_even(x[i] / s0));
    const double q0 = r0 + z0;
    double y;
    if (q0 < spec.qmin())
      y = (spec.qmin() - z) * s;
    else if (q0 > spec.qmax())
      y = (spec.qmax() - z) * s;
    else
      y = (x[i] / s + (r0 - v0)) * s;
    sum += dy[i] * y;
  }
  return sum;
}

template <class T>
void check_lsq_per_tensor(const std::vector<T>& x, const qparams<T>& p, const qspec& spec, rounding mode, double rel) {
  const auto dy = qlib_test::sample<T>(qlib_test::dist::gaussian, x.size(), 99);
  std::vector<T> dx(x.size()), dx_ref(x.size());
  lsq_options opt;
  opt.mode = mode;
  opt.grad_scale = lsq_grad_scale::none;
  const auto g = qlib::lsq_backward(qlib::view(dy), qlib::view(x), p, spec, tensor_view<T>(dx.data(), dx.size()), opt);
  const lsq_ref ref = lsq_brute(dy.data(), x.data(), dx_ref.data(), x.size(), 1, p.scale, p.zero_point, spec, mode);
  CHECK(first_bit_difference(dx, dx_ref) == -1);
  // Summation error is relative to the sum of |terms|, not to a sum that may cancel.
  const double tol_s = rel * static_cast<double>(ref.abs_scale) + 1e-30;
  const double tol_z = rel * static_cast<double>(ref.abs_zero_point) + 1e-30;
  CAPTURE(g.scale, static_cast<double>(ref.scale), g.zero_point, static_cast<double>(ref.zero_point));
  CHECK(std::fabs(g.scale - static_cast<double>(ref.scale)) <= tol_s);
  CHECK(std::fabs(g.zero_point - static_cast<double>(ref.zero_point)) <= tol_z);

  // The gradient scale multiplies both: per_scale = LSQ's 1/sqrt(N qmax); custom.
  opt.grad_scale = lsq_grad_scale::per_scale;
  const auto gs = qlib::lsq_backward(qlib::view(dy), qlib::view(x), p, spec, tensor_view<T>(dx.data(), dx.size()), opt);
  const double f = 1.0 / std::sqrt(static_cast<double>(std::max<std::size_t>(x.size(), 1)) * spec.qmax());
  CHECK(qlib::lsq_grad_factor(x.size(), spec) == f);
  CHECK(close(gs.scale, g.scale * f, 1e-6, 1e-30));
  CHECK(close(gs.zero_point, g.zero_point * f, 1e-6, 1e-30));
  opt.grad_scale = lsq_grad_scale::custom;
  opt.custom_grad_scale = 0.25;
  const auto gc = qlib::lsq_backward(qlib::view(dy), qlib::view(x), p, spec, tensor_view<T>(dx.data(), dx.size()), opt);
  CHECK(close(gc.scale, g.scale * 0.25, 1e-6, 1e-30));

  // In place: dx in dy's buffer, then in x's buffer.
  opt.grad_scale = lsq_grad_scale::none;
  std::vector<T> d2 = dy;
  const auto g2 = qlib::lsq_backward(qlib::view(d2), qlib::view(x), p, spec, tensor_view<T>(d2.data(), d2.size()), opt);
  CHECK(first_bit_difference(d2, dx_ref) == -1);
  CHECK(std::fabs(g2.scale - g.scale) <= 2 * tol_s);
  std::vector<T> x2 = x;
  const auto g3 =
      qlib::lsq_backward(qlib::view(dy), qlib::view(x2), p, spec, tensor_view<T>(x2.data(), x2.size()), opt);
  CHECK(first_bit_difference(x2, dx_ref) == -1);
  CHECK(std::fabs(g3.scale - g.scale) <= 2 * tol_s);
  CHECK(std::fabs(g3.zero_point - g.zero_point) <= 2 * tol_z);
}

TEST_CASE("lsq_backward: matches PyTorch's formula by brute force, every distribution") {
  for (const qspec& spec : qlib_test::test_specs()) {
    for (auto d : qlib_test::all_dists()) {
      for (rounding mode : {rounding::half_to_even, rounding::half_away_from_zero}) {
        INFO(qlib_test::spec_name(spec) << " " << qlib_test::dist_name(d) << " mode " << int(mode));
        const auto x = qlib_test::sample<float>(d, 3001, 5);
        float lo, hi;
        qlib_test::minmax_of(x, &lo, &hi);
        qparams<float> p = qlib::qparams_from_range(lo, hi, spec);
        p.scale *= 0.7f;  // some clipping on both sides
        check_lsq_per_tensor(x, p, spec, mode, 1e-5);
        const auto xd = qlib_test::sample<double>(d, 1001, 6);
        double lod, hid;
        qlib_test::minmax_of(xd, &lod, &hid);
        qparams<double> pd = qlib::qparams_from_range(lod, hid, spec);
        pd.scale *= 0.7;
        check_lsq_per_tensor(xd, pd, spec, mode, 1e-12);
      }
    }
  }
}

TEST_CASE("lsq_backward: long tensors sum accurately (chunked lanes, no full-size buffers)") {
  const qspec spec = qspec::tensorrt_int8();
  const auto x = qlib_test::sample<float>(qlib_test::dist::laplace, (1u << 20) + 7, 8);
  check_lsq_per_tensor(x, qparams<float>{0.02f, 0}, spec, rounding::half_to_even, 1e-5);
}

TEST_CASE("lsq_backward: central finite differences of the frozen-residual forward") {
  for (const qspec& spec : {qspec::tensorrt_int8(), qspec::torch_quint8(), qspec::amct_activation()}) {
    INFO(qlib_test::spec_name(spec));
    const auto x = qlib_test::sample<double>(qlib_test::dist::student_t2, 2000, 13);
    const auto dy = qlib_test::sample<double>(qlib_test::dist::gaussian, x.size(), 14);
    double lo, hi;
    qlib_test::minmax_of(x, &lo, &hi);
    qparams<double> p = qlib::qparams_from_range(lo * 0.1, hi * 0.1, spec);
    std::vector<double> dx(x.size());
    lsq_options opt;
    opt.grad_scale = lsq_grad_scale::none;
    const auto g =
        qlib::lsq_backward(qlib::view(dy), qlib::view(x), p, spec, tensor_view<double>(dx.data(), dx.size()), opt);
    const double hs = 1e-6 * p.scale, hz = 1e-3;
    const double z = p.zero_point;
    const double fd_s = (lsq_frozen_loss(dy, x, p.scale, p.zero_point, spec, p.scale + hs, z) -
                         lsq_frozen_loss(dy, x, p.scale, p.zero_point, spec, p.scale - hs, z)) /
                        (2 * hs);
    const double fd_z = (lsq_frozen_loss(dy, x, p.scale, p.zero_point, spec, p.scale, z + hz) -
                         lsq_frozen_loss(dy, x, p.scale, p.zero_point, spec, p.scale, z - hz)) /
                        (2 * hz);
    CHECK(close(g.scale, fd_s, 1e-6, 1e-6));
    CHECK(close(g.zero_point, fd_z, 1e-6, 1e-6));
    // Clipping happened on both sides, so both rows of the table were exercised.
    std::size_t below = 0, above = 0;
    for (double v : x) {
      const double q = qlib::round_half_even(v / p.scale) + p.zero_point;
      below += q < spec.qmin();
      above += q > spec.qmax();
    }
    CHECK(above > 0);
    if (spec.is_signed) CHECK(below > 0);
  }
}

TEST_CASE("lsq_backward: per channel along each axis equals per tensor on each channel") {
  const qspec spec = qspec::amct_activation();
  struct layout_case {
    shape_t shape;
    int axis;
  };
  const std::vector<layout_case> cases = {{shape_t{3, 5, 7}, 0},  {shape_t{3, 5, 7}, 1}, {shape_t{3, 5, 7}, 2},
                                          {shape_t{3, 5, 7}, -1}, {shape_t{300, 37}, 1}, {shape_t{2, 4, 64}, 1},
                                          {shape_t{600, 20}, -1}, {shape_t{5}, 0}};
  for (const auto& lc : cases) {
    for (lsq_grad_scale gs : {lsq_grad_scale::per_scale, lsq_grad_scale::per_tensor}) {
      INFO("shape " << lc.shape.str() << " axis " << lc.axis << " scale mode " << int(gs));
      const auto x = qlib_test::sample<float>(qlib_test::dist::bimodal, lc.shape.numel(), 31);
      const auto dy = qlib_test::sample<float>(qlib_test::dist::gaussian, x.size(), 32);
      const qlib::channel_layout l = qlib::layout_along(lc.shape, lc.axis);
      channel_qparams<float> p;
      p.axis = lc.axis;
      for (std::size_t c = 0; c < l.channels; ++c) {
        p.scale.push_back(0.01f + 0.004f * static_cast<float>(c % 7));
        p.zero_point.push_back(static_cast<std::int32_t>(c % 9) * 11 - 40);
      }
      std::vector<float> dx(x.size()), dx_ref(x.size());
      lsq_options opt;
      opt.grad_scale = gs;
      const auto g = qlib::lsq_backward(qlib::view(dy.data(), lc.shape), qlib::view(x.data(), lc.shape), p, spec,
                                        tensor_view<float>(dx.data(), lc.shape), opt);
      REQUIRE(g.scale.size() == l.channels);
      const double f = qlib::lsq_grad_factor(gs == lsq_grad_scale::per_scale ? l.outer * l.inner : x.size(), spec);
      for (std::size_t c = 0; c < l.channels; ++c) {
        lsq_ref sum;
        for (std::size_t o = 0; o < l.outer; ++o) {
          const std::size_t base = (o * l.channels + c) * l.inner;
          const lsq_ref r = lsq_brute(dy.data() + base, x.data() + base, dx_ref.data() + base, l.inner, 1, p.scale[c],
                                      p.zero_point[c], spec, rounding::half_to_even);
          sum.scale += r.scale;
          sum.zero_point += r.zero_point;
          sum.abs_scale += r.abs_scale;
          sum.abs_zero_point += r.abs_zero_point;
        }
        CHECK(std::fabs(g.scale[c] - static_cast<double>(sum.scale) * f) <=
              1e-5 * static_cast<double>(sum.abs_scale) * f + 1e-30);
        CHECK(std::fabs(g.zero_point[c] - static_cast<double>(sum.zero_point) * f) <=
              1e-5 * static_cast<double>(sum.abs_zero_point) * f + 1e-30);
      }
      CHECK(first_bit_difference(dx, dx_ref) == -1);
      // dx in dy's buffer.
      std::vector<float> d2 = dy;
      const auto g2 = qlib::lsq_backward(qlib::view(d2.data(), lc.shape), qlib::view(x.data(), lc.shape), p, spec,
                                         tensor_view<float>(d2.data(), lc.shape), opt);
      CHECK(first_bit_difference(d2, dx_ref) == -1);
      for (std::size_t c = 0; c < l.channels; ++c) CHECK(close(g2.scale[c], g.scale[c], 1e-5, 1e-6));
    }
  }
}

TEST_CASE("lsq_zero_point: PyTorch's rounding of a learned zero point") {
  const qspec u8 = qspec::torch_quint8();
  CHECK(qlib::lsq_zero_point(2.5f, u8) == 2);
  CHECK(qlib::lsq_zero_point(3.5f, u8) == 4);
  CHECK(qlib::lsq_zero_point(-3.2f, u8) == 0);
  CHECK(qlib::lsq_zero_point(300.0, u8) == 255);
  CHECK(qlib::lsq_zero_point(-128.4f, qspec::tensorrt_int8()) == -128);
  const auto msg =
      error_message([&] { qlib::lsq_zero_point(std::numeric_limits<float>::quiet_NaN(), u8); }, errc::non_finite);
  CHECK_THAT(msg, Catch::Contains("zero_point"));
}

// ---- ULQ references ----------------------------------------------------------------------

struct ulq_ref {
  long double clip_min = 0, clip_max = 0;
};

/// AMCT's ulq_retrain_backward_pytorch, element by element (hicann/amct,
/// amct_pytorch/.../custom_op/ulq_retrain/ulq_retrain_impl.py): x compared with the clip
/// bounds of the computed scale and offset; the residual of clip_max / s above the range
/// and of clip_min / s below it.
template <class T>
ulq_ref ulq_brute(const std::vector<T>& dy, const std::vector<T>& x, std::vector<T>& dx, T clip_min, T clip_max,
                  const qspec& spec) {
  const qparams<T> p = qlib::qparams_from_range(clip_min, clip_max, spec);
  const long double n = spec.qmax() - spec.qmin();
  const T upper = p.scale * static_cast<T>(spec.qmax() - p.zero_point);
  const T lower = p.scale * static_cast<T>(spec.qmin() - p.zero_point);
  ulq_ref r;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const bool up = x[i] > upper, low = x[i] < lower;
    const T not_round = (up ? clip_max : low ? clip_min : x[i]) / p.scale;
    const long double err = (static_cast<long double>(qlib::round_half_even(not_round)) - not_round) / n;
    r.clip_max += (err + (up ? 1 : 0)) * dy[i];
    r.clip_min += ((low ? 1 : 0) - err) * dy[i];
    dx[i] = (up || low) ? T(0) : dy[i];
  }
  return r;
}

/// sum(dy * x_hat) as a function of the clip range with every rounding residual (of x / s
/// and of the zero point) and every element's class frozen at the base range.
double ulq_frozen_loss(const std::vector<double>& dy, const std::vector<double>& x, double cmin0, double cmax0,
                       const qspec& spec, double cmin, double cmax) {
  const qparams<double> p0 = qlib::qparams_from_range(cmin0, cmax0, spec);
  const double n = spec.qmax() - spec.qmin();
  double s, z, dz = 0;
  if (spec.scheme == qlib::qscheme::affine) {
    const double l0 = std::min(cmin0, 0.0);
    const double u0 = spec.qmin() - l0 / p0.scale;
    dz = p0.zero_point - u0;  // the zero point's rounding residual, whichever rule made it
    s = (std::max(cmax, 0.0) - std::min(cmin, 0.0)) / n;
    z = spec.qmin() - std::min(cmin, 0.0) / s + dz;
  } else {
    s = std::max(std::fabs(cmin), std::fabs(cmax)) /
        (p0.scale > 0 ? std::max(std::fabs(cmin0), std::fabs(cmax0)) / p0.scale : 1);
    z = 0;
  }
  const double upper0 = p0.scale * (spec.qmax() - p0.zero_point), lower0 = p0.scale * (spec.qmin() - p0.zero_point);
  double sum = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    double y;
    if (x[i] > upper0)
      y = (spec.qmax() - z) * s;
    else if (x[i] < lower0)
      y = (spec.qmin() - z) * s;
    else {
      const double v0 = x[i] / p0.scale;
      y = (x[i] / s + (qlib::round_half_even(v0) - v0)) * s;
    }
    sum += dy[i] * y;
  }
  return sum;
}

TEST_CASE("ulq: qparams and forward follow AMCT's scale and offset rule") {
  const qspec spec = qspec::amct_activation();
  const auto p = qlib::ulq_qparams(-1.0f, 3.0f, spec);
  CHECK(p.scale == 4.0f / 255.0f);
  CHECK(p.zero_point == -64);  // round(-128 + 1 / (4/255)) = round(-64.25)
  const auto q = qlib::qparams_from_range(-1.0f, 3.0f, spec);
  CHECK(p.scale == q.scale);
  CHECK(p.zero_point == q.zero_point);
  // fixed_min: clip_min is taken as 0.
  ulq_options fixed;
  fixed.fixed_min = true;
  const auto pf = qlib::ulq_qparams(-1.0f, 3.0f, spec, fixed);
  CHECK(pf.scale == 3.0f / 255.0f);
  CHECK(pf.zero_point == -128);

  const auto x = qlib_test::sample<float>(qlib_test::dist::gaussian, 2003, 41);
  std::vector<float> out(x.size()), expect(x.size());
  qlib::ulq_forward(qlib::view(x), -1.0f, 3.0f, spec, tensor_view<float>(out.data(), out.size()));
  qlib::fake_quantize(qlib::view(x), p, spec, tensor_view<float>(expect.data(), expect.size()));
  CHECK(first_bit_difference(out, expect) == -1);
  std::vector<std::int32_t> qi(x.size());
  qlib::quantize(qlib::view(x), p, spec, qi.data());
  std::vector<float> dq(x.size());
  qlib::dequantize(qlib::view(qi), p, dq.data());
  CHECK(first_bit_difference(out, dq) == -1);
}

TEST_CASE("ulq: the scale rule behind the gradients is qparams_from_range's") {
  // learnable.hpp differentiates s(clip_min, clip_max) by a copy of the rule of
  // core/qparams.hpp; this keeps the two in step for every scheme and convention.
  std::mt19937_64 g(3);
  std::vector<qspec> specs = qlib_test::test_specs();
  for (auto c : {qlib::qconvention::tensorrt, qlib::qconvention::torch, qlib::qconvention::amct})
    for (auto sc : {qlib::qscheme::symmetric, qlib::qscheme::affine}) {
      qspec s;
      s.convention = c;
      s.scheme = sc;
      specs.push_back(s);
    }
  std::size_t bad = 0;
  for (const qspec& spec : specs)
    for (int i = 0; i < 2000; ++i) {
      const double a = (static_cast<double>(g() >> 11) / 9007199254740992.0 - 0.5) * 8;
      const double b = (static_cast<double>(g() >> 11) / 9007199254740992.0 - 0.5) * 8;
      const float lo = static_cast<float>(std::min(a, b)), hi = static_cast<float>(std::max(a, b));
      if (!(lo < hi)) continue;
      for (float l : {lo, -hi, -1e-9f}) {  // ties |lo| == |hi| and degenerate ranges too
        if (!(l < hi)) continue;
        const auto rule = qlib::detail::fq::ulq_rule(l, hi, spec, ulq_options{});
        const auto p = qlib::qparams_from_range(l, hi, spec);
        const float raw = spec.scheme == qlib::qscheme::affine ? (std::max(hi, 0.0f) - std::min(l, 0.0f)) / rule.divisor
                                                               : std::max(std::fabs(l), std::fabs(hi)) / rule.divisor;
        bad += rule.degenerate ? p.scale != 1.0f : p.scale != raw;
      }
    }
  CHECK(bad == 0);
}

TEST_CASE("ulq_backward: matches AMCT's backward by brute force") {
  for (auto d : qlib_test::spread_dists()) {
    INFO(qlib_test::dist_name(d));
    const qspec spec = qspec::amct_activation();
    const auto x = qlib_test::sample<float>(d, 4001, 51);
    const auto dy = qlib_test::sample<float>(qlib_test::dist::laplace, x.size(), 52);
    float lo, hi;
    qlib_test::minmax_of(x, &lo, &hi);
    const float cmin = std::min(lo * 0.6f, -0.05f), cmax = std::max(hi * 0.5f, 0.05f);
    std::vector<float> dx(x.size()), dx_ref(x.size());
    const auto g =
        qlib::ulq_backward(qlib::view(dy), qlib::view(x), cmin, cmax, spec, tensor_view<float>(dx.data(), dx.size()));
    const ulq_ref ref = ulq_brute(dy, x, dx_ref, cmin, cmax, spec);
    CHECK(first_bit_difference(dx, dx_ref) == -1);
    CHECK(close(g.clip_max, static_cast<double>(ref.clip_max), 1e-4, 1e-3));
    CHECK(close(g.clip_min, static_cast<double>(ref.clip_min), 1e-4, 1e-3));
    // dx in dy's buffer and in x's buffer give the same.
    std::vector<float> d2 = dy, x2 = x;
    const auto g2 =
        qlib::ulq_backward(qlib::view(d2), qlib::view(x), cmin, cmax, spec, tensor_view<float>(d2.data(), d2.size()));
    const auto g3 =
        qlib::ulq_backward(qlib::view(dy), qlib::view(x2), cmin, cmax, spec, tensor_view<float>(x2.data(), x2.size()));
    CHECK(first_bit_difference(d2, dx_ref) == -1);
    CHECK(first_bit_difference(x2, dx_ref) == -1);
    CHECK(close(g2.clip_max, g.clip_max, 1e-5, 1e-5));
    CHECK(close(g3.clip_min, g.clip_min, 1e-5, 1e-5));
  }
}

TEST_CASE("ulq_backward: central finite differences of the frozen-residual forward") {
  struct fd_case {
    qspec spec;
    double cmin, cmax;
  };
  qspec sym = qspec::amct_weight();
  qspec sym_trt = qspec::tensorrt_int8();
  const std::vector<fd_case> cases = {{qspec::amct_activation(), -1.3, 2.1},
                                      {qspec::torch_quint8(), -0.7, 3.3},
                                      {sym, -2.4, 1.5},
                                      {sym, -1.2, 2.6},
                                      {sym_trt, -0.9, 1.7}};
  for (const auto& fc : cases) {
    INFO(qlib_test::spec_name(fc.spec) << " [" << fc.cmin << ", " << fc.cmax << "]");
    const auto x = qlib_test::sample<double>(qlib_test::dist::student_t2, 3000, 61);
    const auto dy = qlib_test::sample<double>(qlib_test::dist::gaussian, x.size(), 62);
    std::vector<double> dx(x.size());
    const auto g = qlib::ulq_backward(qlib::view(dy), qlib::view(x), fc.cmin, fc.cmax, fc.spec,
                                      tensor_view<double>(dx.data(), dx.size()));
    const double h = 1e-7;
    const double fd_max = (ulq_frozen_loss(dy, x, fc.cmin, fc.cmax, fc.spec, fc.cmin, fc.cmax + h) -
                           ulq_frozen_loss(dy, x, fc.cmin, fc.cmax, fc.spec, fc.cmin, fc.cmax - h)) /
                          (2 * h);
    const double fd_min = (ulq_frozen_loss(dy, x, fc.cmin, fc.cmax, fc.spec, fc.cmin + h, fc.cmax) -
                           ulq_frozen_loss(dy, x, fc.cmin, fc.cmax, fc.spec, fc.cmin - h, fc.cmax)) /
                          (2 * h);
    CHECK(close(g.clip_max, fd_max, 1e-5, 1e-5));
    CHECK(close(g.clip_min, fd_min, 1e-5, 1e-5));
    // The symmetric threshold comes from one bound only.
    if (fc.spec.scheme == qlib::qscheme::symmetric) CHECK((g.clip_min == 0.0 || g.clip_max == 0.0));
  }
}

TEST_CASE("ulq_backward: clamped bounds, fixed_min and degenerate ranges give zero gradients") {
  const qspec spec = qspec::amct_activation();
  const auto x = qlib_test::sample<float>(qlib_test::dist::gaussian, 1000, 71);
  const auto dy = qlib_test::sample<float>(qlib_test::dist::gaussian, x.size(), 72);
  std::vector<float> dx(x.size());
  tensor_view<float> dxv(dx.data(), dx.size());
  // clip_min > 0 is widened to 0 by the scale rule: it does not move the output.
  auto g = qlib::ulq_backward(qlib::view(dy), qlib::view(x), 0.5f, 3.0f, spec, dxv);
  CHECK(g.clip_min == 0.0f);
  CHECK(g.clip_max != 0.0f);
  // clip_max < 0 likewise.
  g = qlib::ulq_backward(qlib::view(dy), qlib::view(x), -3.0f, -0.5f, spec, dxv);
  CHECK(g.clip_max == 0.0f);
  CHECK(g.clip_min != 0.0f);
  ulq_options fixed;
  fixed.fixed_min = true;
  g = qlib::ulq_backward(qlib::view(dy), qlib::view(x), -1.0f, 3.0f, spec, dxv, fixed);
  CHECK(g.clip_min == 0.0f);
  const auto g0 = qlib::ulq_backward(qlib::view(dy), qlib::view(x), 0.0f, 3.0f, spec, dxv);
  CHECK(g.clip_max == g0.clip_max);
  // A range so small that the scale became 1.
  g = qlib::ulq_backward(qlib::view(dy), qlib::view(x), -1e-8f, 1e-8f, spec, dxv);
  CHECK(g.clip_min == 0.0f);
  CHECK(g.clip_max == 0.0f);
}

// ---- bad input -------------------------------------------------------------------------

TEST_CASE("learnable: bad input is rejected with a message naming the argument") {
  const qspec spec = qspec::amct_activation();
  std::vector<float> x(8, 0.1f), dy(8, 1.0f), dx(8), small(3);
  tensor_view<float> dxv(dx.data(), dx.size());
  const float nan = std::numeric_limits<float>::quiet_NaN();

  auto msg = error_message([&] { qlib::ulq_backward(qlib::view(dy), qlib::view(x), 1.0f, 1.0f, spec, dxv); },
                           errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("ulq_backward") && Catch::Contains("clip_min") && Catch::Contains("clip_max"));
  msg = error_message([&] { qlib::ulq_forward(qlib::view(x), 2.0f, 1.0f, spec, dxv); }, errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("ulq_forward") && Catch::Contains("below"));
  msg = error_message([&] { qlib::ulq_qparams(nan, 1.0f, spec); }, errc::non_finite);
  CHECK_THAT(msg, Catch::Contains("clip_min"));
  msg =
      error_message([&] { qlib::ulq_qparams(-1.0f, std::numeric_limits<float>::infinity(), spec); }, errc::non_finite);
  CHECK_THAT(msg, Catch::Contains("clip_max"));
  ulq_options fixed;
  fixed.fixed_min = true;
  msg = error_message([&] { qlib::ulq_qparams(-2.0f, -1.0f, spec, fixed); }, errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("fixed_min"));
  msg = error_message(
      [&] {
        qlib::ulq_backward(qlib::view(dy), qlib::view(x), -1.0f, 1.0f, spec, tensor_view<float>(small.data(), 3));
      },
      errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("dx"));
  qspec bad_bits = spec;
  bad_bits.bits = 20;
  msg = error_message([&] { qlib::ulq_backward(qlib::view(dy), qlib::view(x), -1.0f, 1.0f, bad_bits, dxv); },
                      errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("bits = 20"));

  const qparams<float> p{0.1f, 0};
  msg = error_message([&] { qlib::lsq_backward(qlib::view(dy), qlib::view(small), p, spec, dxv); },
                      errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("lsq_backward") && Catch::Contains("x"));
  msg = error_message(
      [&] {
        qlib::lsq_backward(qlib::view(dy), qlib::view(x), qparams<float>{-0.1f, 0}, spec, dxv);
      },
      errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("scale"));
  msg = error_message(
      [&] {
        qlib::lsq_backward(qlib::view(dy), qlib::view(x), qparams<float>{nan, 0}, spec, dxv);
      },
      errc::non_finite);
  CHECK_THAT(msg, Catch::Contains("scale"));
  lsq_options opt;
  opt.grad_scale = lsq_grad_scale::custom;
  for (double bad : {-1.0, static_cast<double>(nan)}) {
    opt.custom_grad_scale = bad;
    msg = error_message([&] { qlib::lsq_backward(qlib::view(dy), qlib::view(x), p, spec, dxv, opt); },
                        std::isnan(bad) ? errc::non_finite : errc::invalid_argument);
    CHECK_THAT(msg, Catch::Contains("custom_grad_scale"));
  }
  channel_qparams<float> cp;
  cp.axis = 0;
  cp.scale = {0.1f, 0.2f};
  cp.zero_point = {0, 0};
  msg =
      error_message([&] { qlib::lsq_backward(qlib::view(dy), qlib::view(x), cp, spec, dxv); }, errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("2 scales") && Catch::Contains("8 channels"));
  msg = error_message(
      [&] {
        qlib::lsq_backward(qlib::view(dy.data(), 6), qlib::view(x.data() + 1, 6), p, spec,
                           tensor_view<float>(x.data(), 6));
      },
      errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("overlap"));
}

}  // namespace
