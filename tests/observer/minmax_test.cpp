// MinMax observer: the shared contract, a slow reference, per-channel, EMA.
#include <qlib/observer/minmax.hpp>

#include "observer/observer_contract.hpp"

using qlib::minmax_observer;
using qlib::minmax_options;

TEST_CASE("minmax: shared observer contract, per tensor") {
  qlib_test::check_observer_contract<minmax_observer<float>>([] {
    minmax_options o;
    o.name = "t0";
    return minmax_observer<float>(o);
  });
}

TEST_CASE("minmax: shared observer contract, per channel, affine, double") {
  qlib_test::contract_options c;
  c.shape = {4, 16, 8};
  qlib_test::check_observer_contract<minmax_observer<double>>(
      [] {
        minmax_options o;
        o.name = "t0";
        o.axis = 1;
        o.spec.scheme = qlib::qscheme::affine;
        return minmax_observer<double>(o);
      },
      c);
}

TEST_CASE("minmax: matches a slow reference on every distribution") {
  for (auto d : qlib_test::all_dists()) {
    const auto x = qlib_test::sample<float>(d, 10000, 3);
    float lo = x[0], hi = x[0];
    for (float v : x) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    minmax_observer<float> obs;
    obs.update(qlib::view(x));
    const auto r = obs.compute();
    CHECK(r.clip_min[0] == lo);
    CHECK(r.clip_max[0] == hi);
    const float t = std::max(std::fabs(lo), std::fabs(hi));
    const float expect = t / 127.0f >= 1.1920928955078125e-07f ? t / 127.0f : 1.0f;
    CHECK(r.scale[0] == expect);
    CHECK(r.zero_point[0] == 0);
  }
}

TEST_CASE("minmax: per channel along each axis matches a slow reference") {
  const std::size_t d0 = 3, d1 = 5, d2 = 7;
  const auto x = qlib_test::sample<float>(qlib_test::dist::gaussian, d0 * d1 * d2, 4);
  for (int axis : {0, 1, 2, -1}) {
    minmax_options o;
    o.axis = axis;
    minmax_observer<float> obs(o);
    obs.update(qlib::view(x.data(), qlib::shape_t{d0, d1, d2}));
    const int a = axis < 0 ? axis + 3 : axis;
    const std::size_t dims[3] = {d0, d1, d2};
    std::vector<float> lo(dims[a], 1e30f), hi(dims[a], -1e30f);
    for (std::size_t i = 0; i < d0; ++i)
      for (std::size_t j = 0; j < d1; ++j)
        for (std::size_t k = 0; k < d2; ++k) {
          const std::size_t idx[3] = {i, j, k};
          const float v = x[(i * d1 + j) * d2 + k];
          lo[idx[a]] = std::min(lo[idx[a]], v);
          hi[idx[a]] = std::max(hi[idx[a]], v);
        }
    const auto r = obs.compute();
    CHECK(r.clip_min == lo);
    CHECK(r.clip_max == hi);
    CHECK(r.channels() == dims[a]);
  }
}

TEST_CASE("minmax: moving average follows PyTorch's rule") {
  minmax_options o;
  o.averaging_constant = 0.01;
  minmax_observer<double> obs(o);
  const std::vector<double> b1 = {-1.0, 2.0}, b2 = {-3.0, 4.0};
  obs.update(qlib::view(b1));
  obs.update(qlib::view(b2));
  const auto r = obs.compute();
  CHECK(r.clip_min[0] == Approx(-1.0 + 0.01 * (-3.0 + 1.0)));
  CHECK(r.clip_max[0] == Approx(2.0 + 0.01 * (4.0 - 2.0)));
}

TEST_CASE("minmax: bad options and shapes are named") {
  minmax_options o;
  o.spec.bits = 1;
  auto msg = qlib_test::error_message([&] { minmax_observer<float> obs(o); }, qlib::errc::invalid_argument);
  CHECK(msg.find("bits") != std::string::npos);
  o = {};
  o.axis = 3;
  minmax_observer<float> obs(o);
  const std::vector<float> x(6, 1.0f);
  msg = qlib_test::error_message([&] { obs.update(qlib::view(x.data(), qlib::shape_t{2, 3})); },
                                 qlib::errc::invalid_argument);
  CHECK(msg.find("axis 3") != std::string::npos);
  o.axis = 1;
  minmax_observer<float> pc(o);
  pc.update(qlib::view(x.data(), qlib::shape_t{2, 3}));
  msg = qlib_test::error_message([&] { pc.update(qlib::view(x.data(), qlib::shape_t{3, 2})); },
                                 qlib::errc::invalid_argument);
  CHECK(msg.find("channels") != std::string::npos);
  CHECK(pc.batches() == 1);
}

TEST_CASE("minmax: malformed state is a parse error, never a crash") {
  minmax_observer<float> obs;
  const std::vector<float> x = {1.f, -2.f};
  obs.update(qlib::view(x));
  auto bytes = obs.save();
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    std::vector<std::uint8_t> part(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut));
    qlib_test::error_message([&] { (void)minmax_observer<float>::load(part); }, qlib::errc::parse_error);
  }
  auto foreign = bytes;
  foreign[0] = 'X';
  qlib_test::error_message([&] { (void)minmax_observer<float>::load(foreign); }, qlib::errc::parse_error);
}
