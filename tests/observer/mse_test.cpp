// MSE observer: the shared contract, the literal per-candidate loop, the raw-data error of
// the pick, one-sided ranges, exact splits, options and state.
#include <qlib/observer/mse.hpp>

#include <qlib/core/quantize.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "observer/observer_contract.hpp"

using qlib::mse_affine_search;
using qlib::mse_observer;
using qlib::mse_options;
using qlib::qspec;
using qlib_test::feed;

namespace {

qspec affine(bool is_signed = true) {
  qspec s;
  s.scheme = qlib::qscheme::affine;
  s.is_signed = is_signed;
  return s;
}

mse_options opts(qspec spec, mse_affine_search search = mse_affine_search::scale) {
  mse_options o;
  o.spec = spec;
  o.affine_search = search;
  o.name = "t0";
  return o;
}

// A smaller search than the default keeps the literal loops fast.
mse_options small(qspec spec, mse_affine_search search = mse_affine_search::scale) {
  mse_options o = opts(spec, search);
  o.bins = 256;
  o.start_bin = 16;
  o.stride = 3;
  o.trim_step = 1e-3;
  return o;
}

// The histogram objective of one candidate, literally.
double literal_mse(const qlib::hist_bins& h, const qlib::range_candidate& c, const qspec& spec) {
  const auto p = qlib::qparams_from_range(c.lo, c.hi, spec);
  double num = 0.0, den = 0.0;
  for (std::size_t j = 0; j < h.size; ++j) {
    const double x = h.centre(j);
    const double e = qlib::fake_quantize_value(x, p.scale, p.zero_point, spec.qmin(), spec.qmax()) - x;
    num += h.counts[j] * e * e;
    den += h.counts[j];
  }
  return num / den;
}

// The MSE of the raw data fake-quantized with a range's parameters.
double raw_mse(const std::vector<float>& x, double lo, double hi, const qspec& spec) {
  const auto p = qlib::qparams_from_range(lo, hi, spec);
  double s = 0.0;
  for (float v : x) {
    const double e = qlib::fake_quantize_value(static_cast<double>(v), p.scale, p.zero_point, spec.qmin(), spec.qmax()) - v;
    s += e * e;
  }
  return s / static_cast<double>(x.size());
}

}  // namespace

TEST_CASE("mse: shared observer contract") {
  qlib_test::contract_options c;
  c.merge_exact = false;  // the halves' first batches differ: widths or ranges differ
  c.split_exact = false;
  SECTION("symmetric") {
    qlib_test::check_observer_contract<mse_observer<float>>([] { return mse_observer<float>(small(qspec{})); }, c);
  }
  SECTION("affine scale") {
    qlib_test::check_observer_contract<mse_observer<float>>([] { return mse_observer<float>(small(affine())); }, c);
  }
  SECTION("affine trim, double") {
    qlib_test::check_observer_contract<mse_observer<double>>(
        [] { return mse_observer<double>(small(affine(false), mse_affine_search::trim)); }, c);
  }
}

TEST_CASE("mse: picks the argmin of the literal loop over its candidates") {
  qspec int4n;
  int4n.bits = 4;
  int4n.narrow_range = true;
  const std::vector<std::pair<qspec, mse_affine_search>> cases = {
      {qspec{}, mse_affine_search::scale}, {int4n, mse_affine_search::scale},
      {affine(), mse_affine_search::scale}, {affine(false), mse_affine_search::scale},
      {affine(), mse_affine_search::trim},  {qspec::amct_activation(), mse_affine_search::trim}};
  for (auto d : qlib_test::all_dists()) {
    for (std::size_t batches : {1u, 5u}) {
      const auto x = qlib_test::sample<float>(d, 8000, batches);
      for (const auto& c : cases) {
        mse_observer<float> obs(small(c.first, c.second));
        feed(obs, x, x.size() / batches);
        INFO(qlib_test::dist_name(d) << " batches " << batches << " bits " << c.first.bits << " "
                                     << qlib::to_string(c.first.scheme) << " search " << static_cast<int>(c.second));
        const auto cands = obs.candidates();
        const auto pick = obs.choose();
        const auto h = obs.bins();
        const auto r = obs.compute();
        REQUIRE(r.clip_min[0] == static_cast<float>(pick.range.lo));
        REQUIRE(r.clip_max[0] == static_cast<float>(pick.range.hi));
        qlib_test::require_valid(r);
        if (h.size == 0) {  // only zeros
          REQUIRE(cands.size() == 1);
          CHECK(r.scale[0] == 1.0f);
          continue;
        }
        double best = INFINITY;
        for (const auto& k : cands) best = std::min(best, literal_mse(h, k, c.first));
        REQUIRE(pick.range.lo == cands[pick.index].lo);
        REQUIRE(pick.range.hi == cands[pick.index].hi);
        REQUIRE(literal_mse(h, pick.range, c.first) <= best * (1.0 + 1e-10));
        REQUIRE(pick.error == Approx(literal_mse(h, pick.range, c.first)).epsilon(1e-10).margin(1e-300));
      }
    }
  }
}

TEST_CASE("mse: the pick is close to the best candidate for the raw data") {
  for (const auto& spec : {qspec{}, affine()}) {
    for (auto d : {qlib_test::dist::gaussian, qlib_test::dist::laplace, qlib_test::dist::relu,
                   qlib_test::dist::student_t2}) {
      const auto x = qlib_test::sample<float>(d, 20000, 7);
      mse_observer<float> obs(opts(spec));  // default search: 2048 bins from bin 128
      feed(obs, x, 5000);
      const auto cands = obs.candidates();
      double best = INFINITY;
      for (std::size_t k = 0; k < cands.size(); k += 8) best = std::min(best, raw_mse(x, cands[k].lo, cands[k].hi, spec));
      const auto pick = obs.choose();
      INFO(qlib_test::dist_name(d) << " " << qlib::to_string(spec.scheme));
      // The histogram stands each bin's values at its centre: a small excess is expected.
      CHECK(raw_mse(x, pick.range.lo, pick.range.hi, spec) <= best * 1.03);
    }
  }
}

TEST_CASE("mse: skewed data, the trim walk finds one-sided clips the scale family cannot") {
  // A long right tail and a short left one.
  auto x = qlib_test::sample<float>(qlib_test::dist::relu, 15000, 1);
  const auto neg = qlib_test::sample<float>(qlib_test::dist::relu, 5000, 2);
  for (auto& v : x) v *= 2.0f;
  for (float v : neg) x.push_back(-0.3f * v);
  mse_observer<float> scale(opts(affine())), trim(opts(affine(), mse_affine_search::trim));
  feed(scale, x, 4000);
  feed(trim, x, 4000);
  const auto ps = scale.choose(), pt = trim.choose();
  CHECK(pt.error <= ps.error * 1.05);
  CHECK(raw_mse(x, pt.range.lo, pt.range.hi, affine()) <= raw_mse(x, ps.range.lo, ps.range.hi, affine()) * 1.05);
}

TEST_CASE("mse: one-sided data keeps lo = 0 on unsigned symmetric grids") {
  const auto x = qlib_test::sample<float>(qlib_test::dist::relu, 5000, 5);
  qspec u;
  u.is_signed = false;
  mse_observer<float> unsigned_obs(opts(u)), signed_obs(opts(qspec{}));
  feed(unsigned_obs, x, 5000);
  feed(signed_obs, x, 5000);
  const auto ru = unsigned_obs.compute(), rs = signed_obs.compute();
  CHECK(ru.clip_min[0] == 0.0f);
  CHECK(rs.clip_min[0] == -rs.clip_max[0]);
  // The unsigned grid has twice the levels on the positive side: a tighter step.
  CHECK(ru.scale[0] < rs.scale[0]);
}

TEST_CASE("mse: heavy tails keep the outliers; constant data is exact") {
  // Student-t with 2 degrees of freedom: clipping a few outliers costs more squared error
  // than the coarser grid, so the range stays near the maximum.
  const auto x = qlib_test::sample<float>(qlib_test::dist::student_t2, 20000, 2);
  mse_observer<float> obs(opts(qspec{}));
  obs.update(qlib::view(x));
  float amax = 0.0f;
  for (float v : x) amax = std::max(amax, std::fabs(v));
  CHECK(obs.compute().clip_max[0] > 0.5f * amax);
  const std::vector<float> c(100, 0.75f);
  mse_observer<float> k(opts(affine()));
  k.update(qlib::view(c));
  const auto r = k.compute();
  CHECK(r.clip_max[0] == 0.75f);
  CHECK(k.choose().error < 1e-12);
}

TEST_CASE("mse: splits after the same first batch are exact") {
  for (auto d : qlib_test::spread_dists()) {
    auto first = qlib_test::sample<float>(d, 4000, 6);
    const auto rest = qlib_test::sample<float>(d, 12000, 7);
    auto mm = std::minmax_element(rest.begin(), rest.end());
    first[0] = *mm.first - 0.5f;
    first[1] = *mm.second + 0.5f;
    for (const auto& spec : {qspec{}, affine()}) {
      mse_observer<float> one(small(spec)), split(small(spec));
      one.update(qlib::view(first));
      one.update(qlib::view(rest));
      split.update(qlib::view(first));
      feed(split, rest, 1111);
      INFO(qlib_test::dist_name(d));
      qlib_test::require_same(split.compute(), one.compute());
    }
  }
}

TEST_CASE("mse: bad options name the option and the observer") {
  auto bad = [](mse_options o, const char* what) {
    o.name = "fc";
    const auto msg = qlib_test::error_message([&] { mse_observer<float> obs(o); }, qlib::errc::invalid_argument);
    CHECK(msg.find(what) != std::string::npos);
    CHECK(msg.find("fc") != std::string::npos);
  };
  mse_options o;
  o.stride = 0;
  bad(o, "stride");
  o = {};
  o.trim_step = 0.0;
  bad(o, "trim_step");
  o.trim_step = 0.7;
  bad(o, "trim_step");
  o = {};
  o.bins = 0;
  bad(o, "bins");
  o = {};
  o.affine_search = static_cast<mse_affine_search>(5);
  bad(o, "affine_search");
  o = {};
  o.spec.bits = 17;
  bad(o, "bits");
  mse_observer<float> a(opts(qspec{})), b(opts(affine()));
  qlib_test::error_message([&] { a.merge(b); }, qlib::errc::invalid_argument);
  qlib_test::error_message([&] { (void)a.candidates(); }, qlib::errc::empty_input);
}

TEST_CASE("mse: a value needing too many bins is rejected, state unchanged") {
  mse_observer<float> obs(opts(qspec{}));
  const std::vector<float> x = {1e-6f, -1e-6f};
  obs.update(qlib::view(x));
  const auto before = obs.save();
  const std::vector<float> far = {1e6f};
  const auto msg = qlib_test::error_message([&] { obs.update(qlib::view(far)); }, qlib::errc::invalid_argument);
  CHECK(msg.find("t0") != std::string::npos);
  CHECK(msg.find("bins") != std::string::npos);
  CHECK(obs.save() == before);
}

TEST_CASE("mse: malformed state is a parse error, never a crash") {
  for (const auto& spec : {qspec{}, affine()}) {
    mse_observer<float> obs(small(spec));
    const std::vector<float> x = {1.f, -2.f, 0.5f};
    obs.update(qlib::view(x));
    const auto bytes = obs.save();
    for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
      std::vector<std::uint8_t> part(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut));
      qlib_test::error_message([&] { (void)mse_observer<float>::load(part); }, qlib::errc::parse_error);
    }
    auto foreign = bytes;
    foreign[10] = 'x';  // the kind tag
    qlib_test::error_message([&] { (void)mse_observer<float>::load(foreign); }, qlib::errc::parse_error);
  }
}
