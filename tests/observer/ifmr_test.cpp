// IFMR observer: the shared contract in both modes, results equal to the pure search on
// the same statistics, the exact mode's bounded memory (fallback to histogram mode),
// batch_num, merge, state, and bad options.
#include <qlib/observer/ifmr.hpp>

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "observer/observer_contract.hpp"

using qlib::errc;
using qlib::ifmr_mode;
using qlib::ifmr_observer;
using qlib::ifmr_options;
using qlib_test::error_message;

namespace {
ifmr_options named(ifmr_mode mode, bool with_offset = true) {
  ifmr_options o;
  o.name = "t0";
  o.mode = mode;
  o.spec = qlib::qspec::amct_activation(8, with_offset);
  o.num_bins = 2048;
  return o;
}
qlib::tensor_view<const float> tv(const std::vector<float>& v) { return qlib::view(v.data(), v.size()); }
}  // namespace

TEST_CASE("ifmr observer: shared contract, exact mode (merge and split exact)") {
  qlib_test::check_observer_contract<ifmr_observer<float>>([] { return ifmr_observer<float>(named(ifmr_mode::exact)); });
}

TEST_CASE("ifmr observer: shared contract, exact mode, symmetric, double, 2-D batches") {
  qlib_test::contract_options c;
  c.shape = {64, 32};
  qlib_test::check_observer_contract<ifmr_observer<double>>(
      [] { return ifmr_observer<double>(named(ifmr_mode::exact, false)); }, c);
}

TEST_CASE("ifmr observer: shared contract, histogram mode (re-binning: not exact)") {
  qlib_test::contract_options c;
  c.merge_exact = false;
  c.split_exact = false;
  qlib_test::check_observer_contract<ifmr_observer<float>>(
      [] { return ifmr_observer<float>(named(ifmr_mode::histogram)); }, c);
}

TEST_CASE("ifmr observer: compute equals the pure search on what it holds") {
  for (auto d : qlib_test::spread_dists()) {
    const auto a = qlib_test::sample<float>(d, 6000, 1), b = qlib_test::sample<float>(d, 5000, 2);
    for (bool with_offset : {true, false}) {
      ifmr_observer<float> exact(named(ifmr_mode::exact, with_offset)), hist(named(ifmr_mode::histogram, with_offset));
      for (auto* o : {&exact, &hist}) {
        o->update(tv(a));
        o->update(tv(b));
      }
      std::vector<float> all(a);
      all.insert(all.end(), b.begin(), b.end());
      REQUIRE(exact.values() == all);
      const auto pure = qlib::ifmr_search(all.data(), all.size(), qlib::ifmr_params{}, exact.options().spec);
      const auto r = exact.compute();
      CHECK(r.clip_min[0] == pure.clip_min());
      CHECK(r.clip_max[0] == pure.clip_max());
      const auto p = qlib::qparams_from_range(pure.clip_min(), pure.clip_max(), exact.options().spec);
      CHECK(r.scale[0] == p.scale);
      CHECK(r.zero_point[0] == p.zero_point);
      const auto& h = hist.histogram();
      const auto ph = qlib::ifmr_search_histogram<float>(h.counts().data(), h.num_bins(), h.lo(), h.hi(), 11000,
                                                         qlib::ifmr_params{}, hist.options().spec);
      CHECK(hist.compute().clip_max[0] == ph.clip_max());
      CHECK(hist.compute().clip_min[0] == ph.clip_min());
      // The histogram mode stays within a few percent of the exact mode on light tails with
      // this little data (11000 values, 2048 bins; ReLU's zeros sit at bin 0's centre).
      INFO(qlib_test::dist_name(d) << (with_offset ? " affine" : " symmetric"));
      if (d != qlib_test::dist::student_t2 && d != qlib_test::dist::outliers)
        CHECK(hist.compute().scale[0] == Approx(r.scale[0]).epsilon(0.05));
    }
  }
}

TEST_CASE("ifmr observer: past max_samples the exact mode falls back to histogram mode") {
  std::vector<std::vector<float>> batches;
  for (std::uint64_t s = 0; s < 4; ++s) batches.push_back(qlib_test::sample<float>(qlib_test::dist::laplace, 600, s));
  ifmr_options capped_opts = named(ifmr_mode::exact);
  capped_opts.max_samples = 1300;
  ifmr_observer<float> capped(capped_opts), hist(named(ifmr_mode::histogram));
  capped.update(tv(batches[0]));
  capped.update(tv(batches[1]));
  CHECK(capped.mode() == ifmr_mode::exact);
  CHECK_FALSE(capped.fell_back());
  CHECK(capped.values().size() == 1200);
  capped.update(tv(batches[2]));  // 1800 > 1300: replay the held batches into the histogram
  CHECK(capped.mode() == ifmr_mode::histogram);
  CHECK(capped.fell_back());
  CHECK(capped.values().empty());
  capped.update(tv(batches[3]));
  for (const auto& b : batches) hist.update(tv(b));
  CHECK(capped.count() == 2400);
  CHECK(capped.histogram().counts() == hist.histogram().counts());
  qlib_test::require_same(capped.compute(), hist.compute());
  // State round trip keeps the fallback; reset returns to the exact mode.
  const auto back = ifmr_observer<float>::load(capped.save());
  CHECK(back.fell_back());
  qlib_test::require_same(back.compute(), capped.compute());
  capped.reset();
  CHECK(capped.mode() == ifmr_mode::exact);
  CHECK_FALSE(capped.fell_back());
  CHECK(capped.save() == ifmr_observer<float>(capped_opts).save());
}

TEST_CASE("ifmr observer: merge falls back when the values do not fit or the other is a histogram") {
  const auto a = qlib_test::sample<float>(qlib_test::dist::gaussian, 700, 3);
  const auto b = qlib_test::sample<float>(qlib_test::dist::gaussian, 700, 4);
  ifmr_options capped_opts = named(ifmr_mode::exact);
  capped_opts.max_samples = 1000;
  ifmr_observer<float> left(capped_opts), right(capped_opts);
  left.update(tv(a));
  right.update(tv(b));
  left.merge(right);
  CHECK(left.fell_back());
  ifmr_observer<float> single(named(ifmr_mode::histogram));
  single.update(tv(a));
  // left's histogram holds a; right's b was replayed into its own histogram, then merged.
  ifmr_observer<float> hb(named(ifmr_mode::histogram));
  hb.update(tv(b));
  single.merge(hb);
  CHECK(left.histogram().counts() == single.histogram().counts());
  CHECK(left.count() == 1400);
  // Exact merged with a histogram observer (different modes) is refused: options differ.
  ifmr_observer<float> exact(named(ifmr_mode::exact));
  exact.update(tv(a));
  error_message([&] { exact.merge(hb); }, errc::invalid_argument);
}

TEST_CASE("ifmr observer: batch_num uses the first batches only (AMCT)") {
  std::vector<std::vector<float>> batches;
  for (std::uint64_t s = 0; s < 4; ++s) {
    batches.push_back(qlib_test::sample<float>(qlib_test::dist::gaussian, 500, s));
    for (float& v : batches.back()) v *= static_cast<float>(1 + s);
  }
  ifmr_options o = named(ifmr_mode::exact);
  o.batch_num = 2;
  ifmr_observer<float> limited(o), first_two(named(ifmr_mode::exact));
  for (const auto& b : batches) limited.update(tv(b));
  for (std::size_t i = 0; i < 2; ++i) first_two.update(tv(batches[i]));
  CHECK(limited.batches_seen() == 4);
  CHECK(limited.batches_used() == 2);
  CHECK(limited.count() == 1000);
  qlib_test::require_same(limited.compute(), first_two.compute());
  // Ignored batches are still validated.
  std::vector<float> bad = batches[0];
  bad[3] = std::numeric_limits<float>::quiet_NaN();
  error_message([&] { limited.update(tv(bad)); }, errc::non_finite);
  CHECK(limited.batches_seen() == 4);
}

TEST_CASE("ifmr observer: options follow the search (percentiles, scale_min, grid)") {
  const auto x = qlib_test::sample<float>(qlib_test::dist::laplace, 9000, 5);
  ifmr_options o = named(ifmr_mode::exact);
  o.search.max_percentile = 0.999;
  o.search.min_percentile = 0.99;
  o.search.scale_min = true;
  o.search.grid = qlib::ifmr_ratio_grid::amct_kernel;
  ifmr_observer<float> obs(o);
  obs.update(tv(x));
  const auto pure = qlib::ifmr_search(x.data(), x.size(), o.search, o.spec);
  CHECK(pure.candidates.size() == 60);
  CHECK(obs.compute().clip_max[0] == pure.clip_max());
  CHECK(obs.compute().clip_min[0] == pure.clip_min());
  CHECK(obs.search().best == pure.best);
  const auto back = ifmr_observer<float>::load(obs.save());
  CHECK(back.options().search == o.search);
  CHECK(back.save() == obs.save());
}

TEST_CASE("ifmr observer: bad options and corrupt states are rejected") {
  const auto bad = [](auto edit, errc code, const char* needle) {
    ifmr_options o = named(ifmr_mode::exact);
    edit(o);
    const std::string msg = error_message([&] { ifmr_observer<float> obs(o); }, code);
    CHECK(msg.find("ifmr observer 't0'") != std::string::npos);
    CHECK(msg.find(needle) != std::string::npos);
  };
  bad([](ifmr_options& o) { o.search.max_percentile = 0.3; }, errc::invalid_argument, "max_percentile");
  bad([](ifmr_options& o) { o.search.min_percentile = 1.5; }, errc::invalid_argument, "min_percentile");
  bad([](ifmr_options& o) { o.search.search_start = 1.3; }, errc::invalid_argument, "search_range");
  bad([](ifmr_options& o) { o.search.search_step = 0.0; }, errc::invalid_argument, "search_step");
  bad([](ifmr_options& o) { o.num_bins = 8; }, errc::invalid_argument, "num_bins");
  bad([](ifmr_options& o) { o.max_samples = 0; }, errc::invalid_argument, "max_samples");
  bad([](ifmr_options& o) { o.spec.bits = 17; }, errc::invalid_argument, "bits");
  bad([](ifmr_options& o) { o.spec = qlib::qspec::amct_weight(); o.spec.is_signed = false; }, errc::invalid_argument,
      "signed");

  ifmr_observer<float> obs(named(ifmr_mode::exact));
  obs.update(tv(qlib_test::sample<float>(qlib_test::dist::gaussian, 100, 1)));
  std::vector<std::uint8_t> bytes = obs.save();
  std::vector<std::uint8_t> cut(bytes.begin(), bytes.end() - 5);
  error_message([&] { (void)ifmr_observer<float>::load(cut); }, errc::parse_error);
  bytes.push_back(0);
  error_message([&] { (void)ifmr_observer<float>::load(bytes); }, errc::parse_error);
  // A held value turned into NaN: the bytes of the last float before the histogram.
  std::vector<std::uint8_t> nan_state = obs.save();
  const float q = std::numeric_limits<float>::quiet_NaN();
  std::uint32_t bits = 0;
  std::memcpy(&bits, &q, 4);
  const std::size_t hist_bytes = 4 + 8 + 8 + 8;  // empty histogram: bins, lo, hi, count 0
  const std::size_t at = nan_state.size() - hist_bytes - 4;
  for (int i = 0; i < 4; ++i) nan_state[at + i] = static_cast<std::uint8_t>(bits >> (8 * i));
  CHECK(error_message([&] { (void)ifmr_observer<float>::load(nan_state); }, errc::parse_error).find("not finite") !=
        std::string::npos);
  qlib::state_writer other_kind("hfmg", 1);
  error_message([&] { (void)ifmr_observer<float>::load(other_kind.take()); }, errc::parse_error);
}
