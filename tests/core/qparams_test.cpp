// Grids and parameters: qspec's integer range, qparams_from_range in each convention
// against a slow reference written here (double), torchquant's golden rows, degenerate
// ranges, rounding, and bad input.
#include <qlib/core/qparams.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <string>

#include "golden_data.hpp"
#include "test_data.hpp"

using qlib::qconvention;
using qlib::qscheme;
using qlib::qspec;

namespace {

// The conventions written out literally (shared/specs/algorithms.md 1, 5), in double like
// the code under test: ties such as lo / s = -127.5 depend on the precision they are
// computed in, and the reference must see the same ties.
struct ref_params {
  double scale;
  long long zero_point;
};

double half_even(double v) {
  const double f = std::floor(v);
  const double d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return std::fmod(f, 2.0) == 0 ? f : f + 1;
}

ref_params reference(double lo, double hi, const qspec& s) {
  const long long qmin = s.is_signed ? (s.narrow_range ? -((1LL << (s.bits - 1)) - 1) : -(1LL << (s.bits - 1))) : 0;
  const long long qmax = s.is_signed ? (1LL << (s.bits - 1)) - 1 : (1LL << s.bits) - 1;
  const double eps = 1.1920928955078125e-07;
  if (s.scheme == qscheme::symmetric) {
    const double t = std::max(std::fabs(lo), std::fabs(hi));
    double div;
    if (!s.is_signed) {
      div = static_cast<double>(qmax);
    } else if (s.convention == qconvention::torch) {
      div = static_cast<double>(qmax - qmin) / 2;
    } else {
      div = static_cast<double>((1LL << (s.bits - 1)) - 1);
      // AMCT: the value of larger magnitude (lo on a tie) divides by 2^(b-1) unless positive.
      if (s.convention == qconvention::amct) {
        const double pick = std::fabs(hi) > std::fabs(lo) ? hi : lo;
        if (!(pick > 0)) div += 1;
      }
    }
    double sc = t / div;
    if (!(sc >= eps)) sc = 1;
    return {sc, 0};
  }
  const double l = std::min(lo, 0.0), h = std::max(hi, 0.0);
  double sc = (h - l) / static_cast<double>(qmax - qmin);
  if (!(sc >= eps)) return {1, s.convention == qconvention::amct ? qmin : qmin - static_cast<long long>(half_even(l))};
  double z = s.convention == qconvention::amct ? qmin - std::round(l / sc) : qmin - half_even(l / sc);
  z = std::min(std::max(z, static_cast<double>(qmin)), static_cast<double>(qmax));
  return {sc, static_cast<long long>(z)};
}

std::vector<qspec> all_specs() {
  std::vector<qspec> out;
  for (int bits : {2, 3, 4, 7, 8, 12, 16})
    for (auto scheme : {qscheme::symmetric, qscheme::affine})
      for (bool sgn : {true, false})
        for (bool narrow : {false, true})
          for (auto conv : {qconvention::tensorrt, qconvention::torch, qconvention::amct}) {
            if (narrow && !sgn) continue;
            qspec s;
            s.bits = bits;
            s.scheme = scheme;
            s.is_signed = sgn;
            s.narrow_range = narrow;
            s.convention = conv;
            out.push_back(s);
          }
  return out;
}

}  // namespace

TEST_CASE("qparams: grid ranges") {
  qspec s;
  CHECK(s.qmin() == -128);
  CHECK(s.qmax() == 127);
  s.narrow_range = true;
  CHECK(s.qmin() == -127);
  s = qspec::torch_quint8();
  CHECK(s.qmin() == 0);
  CHECK(s.qmax() == 255);
  s.bits = 16;
  CHECK(s.qmax() == 65535);
  s.is_signed = true;
  CHECK(s.qmin() == -32768);
  s.bits = 2;
  CHECK(s.qmin() == -2);
  CHECK(s.qmax() == 1);
}

TEST_CASE("qparams: every convention matches the slow reference on random and edge ranges") {
  std::mt19937_64 g(11);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<std::pair<float, float>> ranges = {{-1.0f, 2.0f}, {-2.0f, 1.0f}, {-1.0f, 1.0f}, {0.0f, 0.0f},
                                                 {0.5f, 0.5f},  {-0.5f, -0.5f}, {0.2f, 6.0f}, {-6.0f, -0.2f},
                                                 {-1e-9f, 1e-9f}, {-1e30f, 1e30f}, {-0.5f, 253.5f}};
  for (int i = 0; i < 300; ++i) {
    const float a = static_cast<float>(u(g) * std::pow(10.0, 4.0 * u(g))), b = static_cast<float>(u(g) * std::pow(10.0, 4.0 * u(g)));
    ranges.push_back({std::min(a, b), std::max(a, b)});
  }
  for (const qspec& s : all_specs())
    for (auto [lo, hi] : ranges) {
      INFO("bits " << s.bits << " " << qlib::to_string(s.scheme) << " signed " << s.is_signed << " narrow "
                   << s.narrow_range << " " << qlib::to_string(s.convention) << " range [" << lo << ", " << hi << "]");
      const auto d = qlib::qparams_from_range<double>(lo, hi, s);
      const ref_params r = reference(lo, hi, s);
      CHECK(d.scale == Approx(static_cast<double>(r.scale)).epsilon(1e-15));
      CHECK(d.zero_point == r.zero_point);
      CHECK(std::isfinite(d.scale));
      CHECK(d.scale > 0);
      CHECK(d.zero_point >= s.qmin());
      CHECK(d.zero_point <= s.qmax());
      const auto f = qlib::qparams_from_range<float>(lo, hi, s);
      CHECK(f.scale > 0.0f);
      CHECK(std::isfinite(f.scale));
    }
}

TEST_CASE("qparams: the published conventions by example") {
  // TensorRT: amax / 127; torch symmetric: amax / 127.5; AMCT: the negative side divides by 128.
  CHECK(qlib::qparams_from_range(-1.0f, 2.0f, qspec{}).scale == 2.0f / 127.0f);
  qspec torch;
  torch.convention = qconvention::torch;
  CHECK(qlib::qparams_from_range(-1.0, 2.0, torch).scale == 2.0 / 127.5);
  const qspec amct = qspec::amct_weight(8);
  CHECK(qlib::qparams_from_range(-2.0, 1.0, amct).scale == 2.0 / 128.0);
  CHECK(qlib::qparams_from_range(-1.0, 2.0, amct).scale == 2.0 / 127.0);
  CHECK(qlib::qparams_from_range(-1.0, 1.0, amct).scale == 1.0 / 128.0);  // tie: AMCT picks lo
  // AMCT offset: -128 - round(mn / s), half away from zero: [-1, 509] -> s = 2, offset -127.
  const auto p = qlib::qparams_from_range(-1.0, 509.0, qspec::amct_activation());
  CHECK(p.scale == 2.0);
  CHECK(p.zero_point == -127);
  // Degenerate ranges: scale 1 (AMCT's FLT_EPSILON rule), finite everywhere.
  CHECK(qlib::qparams_from_range(0.0f, 0.0f, qspec{}).scale == 1.0f);
  CHECK(qlib::qparams_from_range(0.0f, 0.0f, qspec::amct_activation()).zero_point == -128);
  CHECK(qlib::qparams_from_range(-1e-9f, 1e-9f, qspec::torch_quint8()).scale == 1.0f);
}

TEST_CASE("qparams: torchquant's golden rows (tests/data/golden, hand case qparams_from_range)") {
  using qlib_test::at;
  const qlib::json g = qlib_test::load_golden();
  const qlib::json* hand = nullptr;
  for (const auto& c : at(g, "hand_cases").elements())
    if (at(c, "name").get_string() == "qparams_from_range") hand = &c;
  REQUIRE(hand);
  const qlib::json& specs = at(*hand, "specs");
  int compared = 0;
  for (const auto& row : at(*hand, "rows").elements()) {
    const qlib::json& sp = at(specs, at(row, "spec").get_string());
    qspec s;
    s.bits = static_cast<int>(at(sp, "bits").get_integer());
    s.is_signed = at(sp, "signed").get_bool();
    s.scheme = at(sp, "symmetric").get_bool() ? qscheme::symmetric : qscheme::affine;
    s.narrow_range = at(sp, "narrow_range").get_bool();
    const bool amct = at(sp, "scale_rule").get_string() == "amct";
    // torchquant's "amax" rule is TensorRT's symmetric and torch's affine formula; its "amct"
    // rule changed only the symmetric divisor.
    s.convention = amct ? qconvention::amct : qconvention::tensorrt;
    const float lo = at(row, "lo").get_float(), hi = at(row, "hi").get_float();
    INFO(at(row, "spec").get_string() << " [" << lo << ", " << hi << "]");
    // torchquant divided an AMCT tie (|lo| == |hi|) by 127; AMCT's kernels (and qlib) pick lo.
    if (amct && std::fabs(lo) == std::fabs(hi) && lo != hi) continue;
    const auto p = qlib::qparams_from_range(lo, hi, s);
    CHECK(p.scale == at(row, "scale").get_float());
    CHECK(p.zero_point == at(row, "zero_point").get_integer());
    ++compared;
  }
  CHECK(compared >= 50);
}

TEST_CASE("qparams: rounding half to even, exactly on ties") {
  for (double k = -50; k <= 50; k += 1) {
    const double tie = k + 0.5;
    const double expect = std::fmod(k, 2.0) == 0 ? k : k + 1;
    CHECK(qlib::round_half_even(tie) == expect);
    CHECK(qlib::round_half_even(static_cast<float>(tie)) == static_cast<float>(expect));
    CHECK(qlib::round_with(tie, qlib::rounding::half_away_from_zero) == std::round(tie));
  }
  CHECK(qlib::round_half_even(2.4999999) == 2.0);
  CHECK(qlib::round_half_even(-2.5000001) == -3.0);
  CHECK(qlib::round_half_even(8388609.0f) == 8388609.0f);
}

TEST_CASE("qparams: bad input is named") {
  qspec s;
  s.bits = 17;
  auto st = s.validate();
  CHECK(st.code() == qlib::errc::invalid_argument);
  CHECK_THAT(st.message(), Catch::Contains("bits = 17"));
  s = qspec::torch_quint8();
  s.narrow_range = true;
  CHECK_THAT(s.validate().message(), Catch::Contains("narrow_range"));
  CHECK_THROWS_WITH(qlib::qparams_from_range(1.0f, -1.0f, qspec{}), Catch::Contains("lo > hi"));
  CHECK_THROWS_WITH(qlib::qparams_from_range(std::nanf(""), 1.0f, qspec{}), Catch::Contains("not finite"));
  try {
    (void)qlib::qparams_from_range(-INFINITY, 1.0f, qspec{});
    FAIL("expected an error");
  } catch (const qlib::error& e) {
    CHECK(e.code() == qlib::errc::non_finite);
  }
  CHECK_THROWS_WITH(qlib::qparams_from_ranges<float>({0.0f}, {1.0f, 2.0f}, qspec{}, 0), Catch::Contains("differ in length"));
}
