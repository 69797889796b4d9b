// check_finite and check_and_minmax: the first bad index wherever it sits (vector lanes and
// the tail), min/max equal to a plain loop, empty input.
#include <qlib/core/check.hpp>

#include <catch2/catch.hpp>

#include <limits>
#include <vector>

#include "test_data.hpp"

TEST_CASE("check: min/max equals a plain loop for every length and distribution") {
  for (auto d : qlib_test::all_dists())
    for (std::size_t n : {1u, 2u, 7u, 8u, 9u, 15u, 16u, 17u, 31u, 64u, 1000u, 4099u}) {
      const auto x = qlib_test::sample<float>(d, n, n);
      float lo = x[0], hi = x[0];
      for (float v : x) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
      qlib::minmax_t<float> mm{};
      REQUIRE(qlib::check_and_minmax(qlib::view(x), "t", &mm).ok());
      CHECK(mm.min == lo);
      CHECK(mm.max == hi);
      const auto xd = qlib_test::sample<double>(d, n, n);
      qlib::minmax_t<double> md{};
      REQUIRE(qlib::check_and_minmax(qlib::view(xd), "t", &md).ok());
      CHECK(md.min == *std::min_element(xd.begin(), xd.end()));
      CHECK(md.max == *std::max_element(xd.begin(), xd.end()));
    }
}

TEST_CASE("check: NaN and Inf anywhere are found at their first index") {
  const float bad[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                       -std::numeric_limits<float>::infinity()};
  for (std::size_t n : {1u, 9u, 16u, 33u, 1000u})
    for (std::size_t at = 0; at < n; at += (n > 40 ? 37 : 1))
      for (float b : bad) {
        std::vector<float> x(n, 1.0f);
        x[at] = b;
        if (at + 3 < n) x[at + 3] = std::numeric_limits<float>::quiet_NaN();  // a later one
        qlib::minmax_t<float> mm{7.0f, 7.0f};
        const float data[1] = {0};
        (void)data;
        const qlib::status s = qlib::check_and_minmax(qlib::view(x.data(), n, "act"), "observer 'o'", &mm);
        REQUIRE(s.code() == qlib::errc::non_finite);
        CHECK_THAT(s.message(), Catch::Contains("observer 'o'") && Catch::Contains("'act'") &&
                                    Catch::Contains("flat index " + std::to_string(at)));
        CHECK(mm.min == 7.0f);  // untouched
      }
}

TEST_CASE("check: empty input") {
  const std::vector<float> none;
  const qlib::status s = qlib::check_and_minmax<float>(qlib::view(none), "observer", nullptr);
  CHECK(s.code() == qlib::errc::empty_input);
  CHECK(qlib::check_finite(qlib::view(none), "observer").ok());
}

TEST_CASE("check: the vector path keeps the portable loop's bits, signed zeros included") {
  // The portable algorithm written out: element i goes to lane i % 8 (the tail to lane 0),
  // the earliest of equal values is kept, lanes are combined in order.
  qlib_test::rng r(5);
  for (int trial = 0; trial < 2000; ++trial) {
    const std::size_t n = 1 + static_cast<std::size_t>(r.uniform() * 70);
    std::vector<float> x(n);
    for (auto& v : x) {
      const double u = r.uniform();
      v = u < 0.3 ? -0.0f : u < 0.6 ? 0.0f : u < 0.8 ? 1.0f : -1.0f;
    }
    float lo[8], hi[8];
    for (int k = 0; k < 8; ++k) lo[k] = hi[k] = x[0];
    const std::size_t body = n / 8 * 8;
    for (std::size_t i = 0; i < body; ++i) {
      float& l = lo[i % 8];
      float& h = hi[i % 8];
      l = x[i] < l ? x[i] : l;
      h = x[i] > h ? x[i] : h;
    }
    for (std::size_t i = body; i < n; ++i) {
      lo[0] = x[i] < lo[0] ? x[i] : lo[0];
      hi[0] = x[i] > hi[0] ? x[i] : hi[0];
    }
    float l = lo[0], h = hi[0];
    for (int k = 1; k < 8; ++k) {
      l = lo[k] < l ? lo[k] : l;
      h = hi[k] > h ? hi[k] : h;
    }
    qlib::minmax_t<float> mm{};
    REQUIRE(qlib::check_and_minmax(qlib::view(x), "t", &mm).ok());
    REQUIRE(std::signbit(mm.min) == std::signbit(l));
    REQUIRE(std::signbit(mm.max) == std::signbit(h));
    REQUIRE(mm.min == l);
    REQUIRE(mm.max == h);
  }
}
