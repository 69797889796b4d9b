// Fused-op rules: the ReLU output range, quantized cat (union range, requantization to one
// grid) and TFLite's integer add, against exact references and against the real-valued
// computation; bad input.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <qlib/fuse/ops.hpp>
#include <string>
#include <vector>

#include "fuse/exact_requant.hpp"
#include "test_data.hpp"

using qlib::clamp_range;
using qlib::qparams;
using qlib::qspec;

namespace {

template <class F>
void expect_error(F&& f, qlib::errc code, const std::string& part) {
  try {
    f();
    FAIL("no error; expected one mentioning '" << part << "'");
  } catch (const qlib::error& e) {
    INFO(e.what());
    CHECK(e.code() == code);
    CHECK(std::string(e.what()).find(part) != std::string::npos);
  }
}

/// The real-valued requantization: clamp(round_half_away((q - z_in) s_in / s_out) + z_out).
std::int32_t real_requant(std::int32_t q, const qparams<double>& in, const qparams<double>& out, clamp_range r) {
  const double v = std::round((q - in.zero_point) * in.scale / out.scale) + out.zero_point;
  return static_cast<std::int32_t>(std::fmin(std::fmax(v, r.min), r.max));
}

/// TFLite's add, step by step, with the exact references.
std::int32_t ref_add(std::int32_t qa, std::int32_t qb, const qlib::add_params& p) {
  const std::int32_t a = (qa - p.a_zero_point) * (1 << p.left_shift);
  const std::int32_t b = (qb - p.b_zero_point) * (1 << p.left_shift);
  const std::int32_t sa = qlib_test::ref_mbqm(a, p.a_multiplier.m0, p.a_multiplier.shift);
  const std::int32_t sb = qlib_test::ref_mbqm(b, p.b_multiplier.m0, p.b_multiplier.shift);
  return qlib_test::ref_requantize(sa + sb, p.output_multiplier.m0, p.output_multiplier.shift, p.output_zero_point,
                                   p.range.min, p.range.max);
}

qspec int8_affine() {
  qspec s;
  s.scheme = qlib::qscheme::affine;
  s.convention = qlib::qconvention::torch;
  return s;
}

}  // namespace

TEST_CASE("ops: Conv/Linear + ReLU output range is non-negative") {
  auto r = qlib::relu_output_range(-3.0f, 5.0f);
  CHECK(r.min == 0.0f);
  CHECK(r.max == 5.0f);
  r = qlib::relu_output_range(1.0f, 5.0f);
  CHECK(r.min == 1.0f);
  r = qlib::relu_output_range(-3.0f, -1.0f);
  CHECK(r.min == 0.0f);
  CHECK(r.max == 0.0f);
  // Unsigned grid: every level on [0, 5].
  auto p = qlib::relu_output_qparams(-3.0, 5.0, qspec::torch_quint8());
  CHECK(p.scale == Approx(5.0 / 255));
  CHECK(p.zero_point == 0);
  // Signed affine grid: the zero point moves to qmin, still 256 levels on [0, 5].
  p = qlib::relu_output_qparams(-3.0, 5.0, int8_affine());
  CHECK(p.scale == Approx(5.0 / 255));
  CHECK(p.zero_point == -128);
  // Signed symmetric (TensorRT): 5 / 127, the negative half unused.
  p = qlib::relu_output_qparams(-3.0, 5.0, qspec::tensorrt_int8());
  CHECK(p.scale == Approx(5.0 / 127));
  // Versus observing the pre-ReLU range: the affine grid would waste 3/8 of its levels.
  const auto unfused = qlib::qparams_from_range(-3.0, 5.0, qspec::torch_quint8());
  CHECK(unfused.scale == Approx(8.0 / 255));
  // The integer ReLU: clamp at the zero point.
  const clamp_range c = qlib::fused_relu(clamp_range{-128, 127}, -5);
  CHECK(c.min == -5);
  CHECK(c.max == 127);
  CHECK(qlib::fused_relu(clamp_range{-128, 127}, -128).min == -128);
  CHECK(qlib::grid_range(qspec::torch_quint8()).max == 255);
}

TEST_CASE("ops: cat output parameters come from the union range") {
  const auto p = qlib::cat_output_qparams<double>({-1.0, 0.5, -0.2}, {2.0, 4.0, 1.0}, qspec::torch_quint8());
  const auto expect = qlib::qparams_from_range(-1.0, 4.0, qspec::torch_quint8());
  CHECK(p.scale == expect.scale);
  CHECK(p.zero_point == expect.zero_point);
  // The union range is the range of the concatenation itself (PyTorch observes the cat).
  const auto a = qlib_test::sample<double>(qlib_test::dist::gaussian, 500, 1);
  const auto b = qlib_test::sample<double>(qlib_test::dist::bimodal, 700, 2);
  const auto mm = [](const std::vector<double>& v) { return std::minmax_element(v.begin(), v.end()); };
  std::vector<double> both(a);
  both.insert(both.end(), b.begin(), b.end());
  const auto q =
      qlib::cat_output_qparams<double>({*mm(a).first, *mm(b).first}, {*mm(a).second, *mm(b).second}, int8_affine());
  const auto r = qlib::qparams_from_range(*mm(both).first, *mm(both).second, int8_affine());
  CHECK(q.scale == r.scale);
  CHECK(q.zero_point == r.zero_point);
}

TEST_CASE("ops: requantization between grids, exact and within one step of the real value") {
  const std::vector<std::pair<qparams<double>, qparams<double>>> cases = {
      {{0.02, 3}, {0.05, -10}},         // M = 0.4
      {{0.05, -10}, {0.02, 3}},         // M = 2.5 (> 1: positive shift)
      {{0.1, 0}, {0.1, 0}},             // identity
      {{0.013, -128}, {0.0131, -127}},  // M just below 1
      {{1e-6, 0}, {1.0, 0}},            // tiny M
      {{0.7, 20}, {0.003, 0}},          // M = 233: saturates the grid
  };
  for (const auto& c : cases) {
    for (const clamp_range range : {clamp_range{-128, 127}, clamp_range{std::max(-128, c.second.zero_point), 127}}) {
      const qlib::requant_params p = qlib::make_requant_params(c.first, c.second, range);
      CHECK(p.multiplier == qlib::quantize_multiplier(c.first.scale / c.second.scale));
      for (int q = -128; q <= 127; ++q) {
        const std::int32_t got = qlib::requantize_value(q, p);
        INFO("s_in = " << c.first.scale << ", s_out = " << c.second.scale << ", q = " << q);
        REQUIRE(got == qlib_test::ref_requantize(q - c.first.zero_point, p.multiplier.m0, p.multiplier.shift,
                                                 c.second.zero_point, range.min, range.max));
        REQUIRE(std::abs(got - real_requant(q, c.first, c.second, range)) <= 1);
        if (c.first.scale == c.second.scale && c.first.zero_point == c.second.zero_point && range.min == -128)
          REQUIRE(got == q);
      }
    }
  }
}

TEST_CASE("ops: TFLite integer add, exact and within one step of the real sum") {
  struct add_case {
    qparams<double> a, b, out;
  };
  const std::vector<add_case> cases = {
      {{0.02, 0}, {0.02, 0}, {0.04, 0}},       // equal scales
      {{0.05, -3}, {0.011, 17}, {0.06, -20}},  // unequal, offsets
      {{0.5, 10}, {0.001, -100}, {0.5, 0}},    // one input nearly irrelevant
      {{0.01, 0}, {0.01, 0}, {0.002, 5}},      // output scale smaller: saturates often
      {{0.003, 127}, {0.2, -128}, {0.21, 0}},  // extreme zero points
  };
  for (const auto& c : cases)
    for (bool relu : {false, true}) {
      const clamp_range range = relu ? qlib::fused_relu({-128, 127}, c.out.zero_point) : clamp_range{-128, 127};
      const qlib::add_params p = qlib::make_add_params(c.a, c.b, c.out, range);
      CHECK(p.left_shift == 20);
      CHECK(p.a_multiplier.shift <= 0);  // s_i / (2 max) <= 1/2
      CHECK(p.b_multiplier.shift <= 0);
      int off_by_one = 0;
      for (int qa = -128; qa <= 127; ++qa)
        for (int qb = -128; qb <= 127; ++qb) {
          const std::int32_t got = qlib::add_value(qa, qb, p);
          REQUIRE(got == ref_add(qa, qb, p));
          const double real = (c.a.scale * (qa - c.a.zero_point) + c.b.scale * (qb - c.b.zero_point)) / c.out.scale;
          const double expect = std::fmin(std::fmax(std::round(real) + c.out.zero_point, range.min), range.max);
          REQUIRE(std::fabs(got - expect) <= 1.0);
          // Away from ties (where TFLite's SRDHM rounds up and std::round away from zero), the
          // fixed-point add is exact: its other errors are ~2^-20 of a step.
          if (std::fabs(std::fabs(real - std::trunc(real)) - 0.5) > 1e-4 && got != static_cast<std::int32_t>(expect)) {
            INFO("qa = " << qa << ", qb = " << qb << ", real = " << real << ", got = " << got);
            CHECK(got == expect);
          }
          off_by_one += got != static_cast<std::int32_t>(expect);
          if (relu) REQUIRE(got >= c.out.zero_point);
        }
      INFO("differences (all at ties): " << off_by_one);
      CHECK(off_by_one < 256 * 256 / 4);
    }
}

TEST_CASE("ops: bad parameters are rejected naming the culprit") {
  const qparams<double> good{0.1, 0};
  expect_error(
      [&] {
        qlib::make_requant_params(qparams<double>{0.0, 0}, good);
      },
      qlib::errc::invalid_argument, "input scale = 0");
  expect_error(
      [&] {
        qlib::make_requant_params(good, qparams<double>{-1.0, 0});
      },
      qlib::errc::invalid_argument, "output scale = -1");
  expect_error(
      [&] {
        qlib::make_requant_params(good, qparams<double>{std::nan(""), 0});
      },
      qlib::errc::invalid_argument, "output scale = nan");
  expect_error(
      [&] {
        qlib::make_requant_params(good, qparams<double>{0.1, 200});
      },
      qlib::errc::invalid_argument, "output zero point 200");
  expect_error(
      [&] {
        qlib::make_requant_params(good, good, clamp_range{5, 4});
      },
      qlib::errc::invalid_argument, "output clamp [5, 4] is empty");
  expect_error(
      [&] {
        qlib::make_requant_params(qparams<double>{1e10, 0}, good);
      },
      qlib::errc::invalid_argument, "multiplier s_in / s_out");
  expect_error(
      [&] {
        qlib::make_add_params(good, qparams<double>{0.0, 0}, good);
      },
      qlib::errc::invalid_argument, "input b scale = 0");
  expect_error(
      [&] {
        qlib::make_add_params(qparams<double>{0.1, 300}, good, good);
      },
      qlib::errc::invalid_argument, "input a zero point 300");
  expect_error(
      [&] {
        qlib::make_add_params(good, good, qparams<double>{1e-16, 0});
      },
      qlib::errc::invalid_argument, "2 max(s_a, s_b) / (2^20 s_out)");
  expect_error(
      [&] {
        qlib::cat_output_qparams<double>({0.0, 1.0}, {1.0}, qspec{});
      },
      qlib::errc::invalid_argument, "2 minima but 1 maxima");
  expect_error([&] { qlib::cat_output_qparams<double>({}, {}, qspec{}); }, qlib::errc::empty_input, "no input ranges");
  expect_error(
      [&] {
        qlib::cat_output_qparams<double>({0.0, 2.0}, {1.0, 1.0}, qspec{});
      },
      qlib::errc::invalid_argument, "input 1");
  qspec bad;
  bad.bits = 17;
  expect_error([&] { qlib::cat_output_qparams<double>({0.0}, {1.0}, bad); }, qlib::errc::invalid_argument, "bits = 17");
  expect_error([&] { qlib::relu_output_qparams(0.0, 1.0, bad); }, qlib::errc::invalid_argument, "bits = 17");
  expect_error([&] { qlib::relu_output_range(2.0, 1.0); }, qlib::errc::invalid_argument, "lo > hi");
  expect_error([&] { qlib::relu_output_range(0.0, std::numeric_limits<double>::infinity()); }, qlib::errc::non_finite,
               "not finite");
  expect_error([&] { qlib::fused_relu(clamp_range{0, 255}, -3); }, qlib::errc::invalid_argument, "zero point -3");
}
