// Percentile observer: the shared contract (histogram and exact modes), sorted-data
// references, one-sided ranges, exact splits, the sample bound, options and state.
#include <qlib/observer/percentile.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "observer/observer_contract.hpp"

using qlib::percentile_mode;
using qlib::percentile_observer;
using qlib::percentile_options;
using qlib_test::feed;

namespace {

percentile_options opts(qlib::qspec spec, double p = 99.99, percentile_mode mode = percentile_mode::histogram) {
  percentile_options o;
  o.spec = spec;
  o.percentile = p;
  o.mode = mode;
  o.name = "t0";
  return o;
}

qlib::qspec affine() {
  qlib::qspec s;
  s.scheme = qlib::qscheme::affine;
  return s;
}

// Nearest rank of sorted values, the percentile in hundredths of a percent.
double nearest(const std::vector<double>& sorted, long long p100) {
  const long long k = std::max((p100 * static_cast<long long>(sorted.size()) + 9999) / 10000, 1LL);
  return sorted[static_cast<std::size_t>(k - 1)];
}

}  // namespace

TEST_CASE("percentile: shared observer contract, histogram mode, symmetric") {
  qlib_test::contract_options c;
  c.merge_exact = false;  // the halves' first batches differ: different bin widths
  c.split_exact = false;  // quarters: the first quarter sets a different width
  qlib_test::check_observer_contract<percentile_observer<float>>(
      [] { return percentile_observer<float>(opts(qlib::qspec{})); }, c);
}

TEST_CASE("percentile: shared observer contract, histogram mode, affine, edge") {
  qlib_test::contract_options c;
  c.merge_exact = false;  // different ranges are re-binned
  c.split_exact = false;
  qlib_test::check_observer_contract<percentile_observer<double>>(
      [] {
        auto o = opts(affine(), 99.9);
        o.interpolation = qlib::percentile_interpolation::edge;
        return percentile_observer<double>(o);
      },
      c);
}

TEST_CASE("percentile: shared observer contract, exact mode (merge and split exact)") {
  qlib_test::check_observer_contract<percentile_observer<float>>(
      [] { return percentile_observer<float>(opts(qlib::qspec{}, 99.0, percentile_mode::exact)); });
  qlib_test::check_observer_contract<percentile_observer<float>>(
      [] { return percentile_observer<float>(opts(affine(), 99.0, percentile_mode::exact)); });
}

TEST_CASE("percentile: exact mode equals the sorted data's nearest rank") {
  for (auto d : qlib_test::all_dists()) {
    const auto x = qlib_test::sample<float>(d, 10000, 3);
    std::vector<double> a, s;
    for (float v : x) {
      a.push_back(std::fabs(static_cast<double>(v)));
      s.push_back(v);
    }
    std::sort(a.begin(), a.end());
    std::sort(s.begin(), s.end());
    for (long long p100 : {9999LL, 9900LL, 7500LL, 10000LL}) {
      const double p = static_cast<double>(p100) / 100.0;
      INFO(qlib_test::dist_name(d) << " p " << p);
      percentile_observer<float> sym(opts(qlib::qspec{}, p, percentile_mode::exact));
      feed(sym, x, 999);
      auto r = sym.compute();
      CHECK(r.clip_max[0] == static_cast<float>(nearest(a, p100)));
      CHECK(r.clip_min[0] == -r.clip_max[0]);
      percentile_observer<float> aff(opts(affine(), p, percentile_mode::exact));
      feed(aff, x, 4096);
      r = aff.compute();
      CHECK(r.clip_max[0] == static_cast<float>(nearest(s, p100)));
      // The lower bound: minus the nearest rank of -x.
      std::vector<double> neg;
      for (double v : s) neg.push_back(-v);
      std::sort(neg.begin(), neg.end());
      CHECK(r.clip_min[0] == static_cast<float>(-nearest(neg, p100)));
    }
  }
}

TEST_CASE("percentile: histogram mode is within a bin of the exact percentile and uses the search") {
  for (auto d : qlib_test::all_dists()) {
    for (std::size_t batch : {20000u, 3000u}) {
      const auto x = qlib_test::sample<float>(d, 20000, 4);
      percentile_observer<float> sym(opts(qlib::qspec{}, 99.9)), aff(opts(affine(), 99.9));
      percentile_observer<float> esym(opts(qlib::qspec{}, 99.9, percentile_mode::exact)),
          eaff(opts(affine(), 99.9, percentile_mode::exact));
      for (auto* o : {&sym, &aff, &esym, &eaff}) feed(*o, x, batch);
      INFO(qlib_test::dist_name(d) << " batch " << batch);
      const auto hs = sym.bins();
      const auto ha = aff.bins();
      const auto rs = sym.compute(), ra = aff.compute(), es = esym.compute(), ea = eaff.compute();
      if (hs.size > 0) {
        CHECK(rs.clip_max[0] == static_cast<float>(qlib::histogram_percentile(hs, 99.9)));
        CHECK(std::fabs(rs.clip_max[0] - es.clip_max[0]) <= hs.width * 1.001 + 1e-6 * es.clip_max[0]);
      } else {
        CHECK(rs.clip_max[0] == 0.0f);
      }
      CHECK(ra.clip_max[0] == static_cast<float>(qlib::histogram_percentile(ha, 99.9)));
      CHECK(ra.clip_min[0] == static_cast<float>(qlib::histogram_lower_percentile(ha, 99.9)));
      // Widening re-bins old counts (moving mass by up to one old bin): two bins then.
      const double tol = ha.width * (batch == x.size() ? 1.001 : 2.001) + 1e-6;
      CHECK(std::fabs(ra.clip_max[0] - ea.clip_max[0]) <= tol);
      CHECK(std::fabs(ra.clip_min[0] - ea.clip_min[0]) <= tol);
      qlib_test::require_valid(ra);
      qlib_test::require_valid(rs);
    }
  }
}

TEST_CASE("percentile: one-sided data keeps lo = 0 on unsigned grids only") {
  const auto x = qlib_test::sample<float>(qlib_test::dist::relu, 5000, 5);
  qlib::qspec u;
  u.is_signed = false;
  for (auto mode : {percentile_mode::histogram, percentile_mode::exact}) {
    percentile_observer<float> unsigned_obs(opts(u, 99.0, mode)), signed_obs(opts(qlib::qspec{}, 99.0, mode));
    feed(unsigned_obs, x, 5000);
    feed(signed_obs, x, 5000);
    const auto ru = unsigned_obs.compute(), rs = signed_obs.compute();
    CHECK(ru.clip_min[0] == 0.0f);
    CHECK(rs.clip_min[0] == -rs.clip_max[0]);
    CHECK(ru.scale[0] == ru.clip_max[0] / 255.0f);
    // One negative value: the range is symmetric again.
    const std::vector<float> neg = {-0.1f};
    unsigned_obs.update(qlib::view(neg));
    CHECK(unsigned_obs.compute().clip_min[0] == -unsigned_obs.compute().clip_max[0]);
  }
}

TEST_CASE("percentile: splits after the same first batch are exact in histogram mode") {
  for (auto d : qlib_test::spread_dists()) {
    auto first = qlib_test::sample<float>(d, 4000, 6);
    const auto rest = qlib_test::sample<float>(d, 12000, 7);
    // The first batch holds the extremes (affine: nothing widens later) ...
    auto mm = std::minmax_element(rest.begin(), rest.end());
    first[0] = *mm.first - 0.5f;
    first[1] = *mm.second + 0.5f;
    for (const auto& spec : {qlib::qspec{}, affine()}) {
      percentile_observer<float> one(opts(spec, 99.5)), split(opts(spec, 99.5)), left(opts(spec, 99.5)),
          right(opts(spec, 99.5));
      one.update(qlib::view(first));
      one.update(qlib::view(rest));
      split.update(qlib::view(first));
      feed(split, rest, 1111);
      INFO(qlib_test::dist_name(d) << " " << qlib::to_string(spec.scheme));
      qlib_test::require_same(split.compute(), one.compute());
      // ... and merging observers that began with the same first batch adds the counts.
      left.update(qlib::view(first));
      right.update(qlib::view(first));
      left.update(qlib::view(rest.data(), 6000));
      right.update(qlib::view(rest.data() + 6000, 6000));
      left.merge(right);
      one.update(qlib::view(first));
      qlib_test::require_same(left.compute(), one.compute());
    }
  }
}

TEST_CASE("percentile: the exact mode's sample bound is a clear error") {
  auto o = opts(qlib::qspec{}, 99.0, percentile_mode::exact);
  o.max_samples = 10;
  percentile_observer<float> obs(o);
  const std::vector<float> six(6, 1.0f);
  obs.update(qlib::view(six));
  const auto before = obs.save();
  const auto msg = qlib_test::error_message([&] { obs.update(qlib::view(six)); }, qlib::errc::invalid_argument);
  CHECK(msg.find("max_samples") != std::string::npos);
  CHECK(msg.find("t0") != std::string::npos);
  CHECK(obs.save() == before);
  percentile_observer<float> other(o);
  other.update(qlib::view(six));
  qlib_test::error_message([&] { obs.merge(other); }, qlib::errc::invalid_argument);
  CHECK(obs.save() == before);
  obs.update(qlib::view(six.data(), 4));  // exactly at the bound
  CHECK(obs.samples().size() == 10);
}

TEST_CASE("percentile: zeros first, then data; a single value") {
  for (const auto& spec : {qlib::qspec{}, affine()}) {
    percentile_observer<float> obs(opts(spec, 99.0));
    const std::vector<float> zeros(100, 0.0f);
    obs.update(qlib::view(zeros));
    auto r = obs.compute();
    CHECK(r.clip_max[0] == 0.0f);
    CHECK(r.scale[0] == 1.0f);
    const auto x = qlib_test::sample<float>(qlib_test::dist::gaussian, 1000, 8);
    obs.update(qlib::view(x));
    qlib_test::require_valid(obs.compute());
    percentile_observer<float> one(opts(spec, 99.99));
    const std::vector<float> v = {-0.6f};
    one.update(qlib::view(v));
    r = one.compute();
    if (spec.scheme == qlib::qscheme::symmetric) {
      CHECK(r.clip_max[0] == Approx(0.6f).epsilon(1e-5));
    } else {
      CHECK(r.clip_min[0] == -0.6f);
      CHECK(r.clip_max[0] == -0.6f);
    }
  }
}

TEST_CASE("percentile: bad options name the option and the observer") {
  auto bad = [](percentile_options o, const char* what) {
    o.name = "conv1";
    const auto msg = qlib_test::error_message([&] { percentile_observer<float> obs(o); }, qlib::errc::invalid_argument);
    CHECK(msg.find(what) != std::string::npos);
    CHECK(msg.find("conv1") != std::string::npos);
  };
  percentile_options o;
  o.percentile = 0.0;
  bad(o, "percentile");
  o.percentile = 100.5;
  bad(o, "percentile");
  o.percentile = std::nan("");
  bad(o, "percentile");
  o = opts(affine(), 50.0);
  bad(o, "percentile");
  o = {};
  o.bins = 0;
  bad(o, "bins");
  o.bins = qlib::max_histogram_bins + 1;
  bad(o, "bins");
  o = {};
  o.max_samples = 0;
  bad(o, "max_samples");
  o = {};
  o.mode = static_cast<percentile_mode>(9);
  bad(o, "mode");
  o = {};
  o.interpolation = static_cast<qlib::percentile_interpolation>(9);
  bad(o, "interpolation");
  o = {};
  o.growth = static_cast<qlib::histogram_growth>(9);
  bad(o, "growth");
  o = {};
  o.spec.bits = 1;
  bad(o, "bits");
  // Merging different options.
  percentile_observer<float> a(opts(qlib::qspec{}, 99.0)), b(opts(qlib::qspec{}, 99.9));
  qlib_test::error_message([&] { a.merge(b); }, qlib::errc::invalid_argument);
}

TEST_CASE("percentile: malformed state is a parse error, never a crash") {
  for (auto mode : {percentile_mode::histogram, percentile_mode::exact}) {
    for (const auto& spec : {qlib::qspec{}, affine()}) {
      auto o = opts(spec, 99.0, mode);
      o.bins = 16;
      percentile_observer<float> obs(o);
      const std::vector<float> x = {1.f, -2.f, 0.5f};
      obs.update(qlib::view(x));
      const auto bytes = obs.save();
      for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
        std::vector<std::uint8_t> part(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut));
        qlib_test::error_message([&] { (void)percentile_observer<float>::load(part); }, qlib::errc::parse_error);
      }
      auto longer = bytes;
      longer.push_back(0);
      qlib_test::error_message([&] { (void)percentile_observer<float>::load(longer); }, qlib::errc::parse_error);
      // Every single-byte corruption either loads to a valid observer or is a parse error.
      for (std::size_t at = 0; at < bytes.size(); ++at) {
        auto corrupt = bytes;
        corrupt[at] ^= 0xA5;
        try {
          const auto back = percentile_observer<float>::load(corrupt);
          (void)back.save();
        } catch (const qlib::error& e) {
          CHECK(e.code() == qlib::errc::parse_error);
        }
      }
    }
  }
}
