// quantize / dequantize per tensor and per channel against a slow reference; integer
// types; shapes and layouts; bad parameters.
#include <qlib/core/quantize.hpp>
#include <qlib/core/tensor_view.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "observer/observer_contract.hpp"
#include "test_data.hpp"

namespace {
// clamp(round_half_even(x / s) + z, qmin, qmax), written directly.
long long ref_q(double x, double s, long long z, long long qmin, long long qmax) {
  const double v = x / s;
  double r = std::floor(v);
  const double d = v - r;
  if (d > 0.5 || (d == 0.5 && std::fmod(r, 2.0) != 0)) r += 1;
  const double q = r + static_cast<double>(z);
  return static_cast<long long>(std::min(std::max(q, static_cast<double>(qmin)), static_cast<double>(qmax)));
}
}  // namespace

TEST_CASE("quantize: per tensor equals the slow reference, every distribution and grid") {
  for (auto d : qlib_test::all_dists()) {
    const auto x = qlib_test::sample<double>(d, 5000, 3);
    for (int bits : {2, 4, 8}) {
      for (bool sgn : {true, false}) {
        qlib::qspec s;
        s.bits = bits;
        s.is_signed = sgn;
        s.scheme = qlib::qscheme::affine;
        const qlib::qparams<double> p{0.037, sgn ? -1 : 3};
        std::vector<std::int16_t> q(x.size());
        qlib::quantize(qlib::view(x), p, s, q.data());
        std::vector<double> back(x.size());
        qlib::dequantize(qlib::view(q.data(), q.size()), p, back.data());
        for (std::size_t i = 0; i < x.size(); ++i) {
          const long long r = ref_q(x[i], p.scale, p.zero_point, s.qmin(), s.qmax());
          REQUIRE(q[i] == r);
          REQUIRE(back[i] == (static_cast<double>(r) - p.zero_point) * p.scale);
          REQUIRE(qlib::fake_quantize_value(x[i], p.scale, p.zero_point, s.qmin(), s.qmax()) == back[i]);
        }
      }
    }
  }
}

TEST_CASE("quantize: ties round half to even, or away from zero on request") {
  const std::vector<float> x = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f};
  std::vector<std::int8_t> even(6), away(6);
  qlib::quantize(qlib::view(x), qlib::qparams<float>{1.0f, 0}, qlib::qspec{}, even.data());
  qlib::quantize(qlib::view(x), qlib::qparams<float>{1.0f, 0}, qlib::qspec{}, away.data(),
                 qlib::rounding::half_away_from_zero);
  CHECK(even == std::vector<std::int8_t>{0, 2, 2, 0, -2, -2});
  CHECK(away == std::vector<std::int8_t>{1, 2, 3, -1, -2, -3});
}

TEST_CASE("quantize: huge values clamp without overflow; int32 storage") {
  const std::vector<float> x = {3e38f, -3e38f, 1e10f};
  std::vector<std::int32_t> q(3);
  qlib::qspec s;
  s.bits = 16;
  qlib::quantize(qlib::view(x), qlib::qparams<float>{1e-6f, 0}, s, q.data());
  CHECK(q == std::vector<std::int32_t>{32767, -32768, 32767});
}

TEST_CASE("quantize: per channel along every axis equals per-tensor quantize of each slice") {
  const std::size_t d0 = 3, d1 = 4, d2 = 5;
  const auto x = qlib_test::sample<float>(qlib_test::dist::laplace, d0 * d1 * d2, 8);
  const std::size_t dims[3] = {d0, d1, d2};
  for (int axis : {0, 1, 2, -1}) {
    const int a = axis < 0 ? axis + 3 : axis;
    qlib::channel_qparams<float> p;
    p.axis = axis;
    for (std::size_t c = 0; c < dims[a]; ++c) {
      p.scale.push_back(0.01f * static_cast<float>(c + 1));
      p.zero_point.push_back(static_cast<std::int32_t>(c) - 2);
    }
    std::vector<std::int8_t> q(x.size());
    qlib::quantize(qlib::view(x.data(), qlib::shape_t{d0, d1, d2}), p, qlib::qspec{}, q.data());
    std::vector<float> back(x.size());
    qlib::dequantize(qlib::view(q.data(), qlib::shape_t{d0, d1, d2}), p, back.data());
    for (std::size_t i = 0; i < d0; ++i)
      for (std::size_t j = 0; j < d1; ++j)
        for (std::size_t k = 0; k < d2; ++k) {
          const std::size_t idx[3] = {i, j, k};
          const std::size_t flat = (i * d1 + j) * d2 + k;
          const std::size_t c = idx[a];
          REQUIRE(q[flat] == ref_q(x[flat], p.scale[c], p.zero_point[c], -128, 127));
          REQUIRE(back[flat] == (static_cast<float>(q[flat]) - static_cast<float>(p.zero_point[c])) * p.scale[c]);
        }
  }
}

TEST_CASE("quantize: bad parameters are named") {
  const std::vector<float> x(4, 1.0f);
  std::vector<std::int8_t> q(4);
  qlib::qspec s;
  auto msg = qlib_test::error_message([&] { qlib::quantize(qlib::view(x), qlib::qparams<float>{0.0f, 0}, s, q.data()); },
                                      qlib::errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("scale"));
  msg = qlib_test::error_message([&] { qlib::quantize(qlib::view(x), qlib::qparams<float>{1.0f, 200}, s, q.data()); },
                                 qlib::errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("zero point 200"));
  s.bits = 12;
  msg = qlib_test::error_message([&] { qlib::quantize(qlib::view(x), qlib::qparams<float>{1.0f, 0}, s, q.data()); },
                                 qlib::errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("does not fit"));
  qlib::channel_qparams<float> p{{1.0f, 1.0f, 1.0f}, {0, 0, 0}, 1};
  msg = qlib_test::error_message(
      [&] { qlib::quantize(qlib::view(x.data(), qlib::shape_t{2, 2}), p, qlib::qspec{}, q.data()); },
      qlib::errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("3 scales") && Catch::Contains("2 channels"));
  p.axis = 2;
  msg = qlib_test::error_message(
      [&] { qlib::quantize(qlib::view(x.data(), qlib::shape_t{2, 2}), p, qlib::qspec{}, q.data()); },
      qlib::errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("axis 2"));
}

TEST_CASE("tensor_view and layouts") {
  const qlib::shape_t s{2, 3, 4};
  CHECK(s.numel() == 24);
  CHECK(s.str() == "(2, 3, 4)");
  CHECK(qlib::shape_t(5).str() == "(5,)");
  CHECK(qlib::shape_t().numel() == 1);  // a scalar
  const qlib::tensor_view<const float> empty;
  CHECK(empty.size() == 0);
  CHECK(empty.empty());
  auto l = qlib::layout_along(s, 1);
  CHECK((l.outer == 2 && l.channels == 3 && l.inner == 4));
  l = qlib::layout_along(s, -1);
  CHECK((l.outer == 6 && l.channels == 4 && l.inner == 1));
  int a = 0;
  CHECK(qlib::check_axis(-3, 3, &a).ok());
  CHECK(a == 0);
  CHECK_FALSE(qlib::check_axis(3, 3, &a).ok());
  CHECK_FALSE(qlib::check_axis(-4, 3, &a).ok());
  CHECK_FALSE(qlib::check_axis(0, 0, &a).ok());
  CHECK_THROWS_WITH((qlib::shape_t{1, 2, 3, 4, 5, 6, 7, 8, 9}), Catch::Contains("at most 8"));
}
