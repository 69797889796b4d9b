// HFMG observer: the shared contract (re-binning merges are not exact), results equal to
// the pure search on its histogram, batch_num, allowed bin counts, state checks.
#include <qlib/observer/hfmg.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "observer/observer_contract.hpp"

using qlib::errc;
using qlib::hfmg_observer;
using qlib::hfmg_options;
using qlib_test::error_message;

namespace {
hfmg_options named(std::uint32_t bins = 4096, bool with_offset = true) {
  hfmg_options o;
  o.name = "t0";
  o.num_of_bins = bins;
  o.spec = qlib::qspec::amct_activation(8, with_offset);
  return o;
}
qlib::tensor_view<const float> tv(const std::vector<float>& v) { return qlib::view(v.data(), v.size()); }
}  // namespace

TEST_CASE("hfmg observer: shared contract, affine") {
  qlib_test::contract_options c;
  c.merge_exact = false;
  c.split_exact = false;
  qlib_test::check_observer_contract<hfmg_observer<float>>([] { return hfmg_observer<float>(named()); }, c);
}

TEST_CASE("hfmg observer: shared contract, symmetric, double, 1024 bins") {
  qlib_test::contract_options c;
  c.merge_exact = false;
  c.split_exact = false;
  qlib_test::check_observer_contract<hfmg_observer<double>>([] { return hfmg_observer<double>(named(1024, false)); }, c);
}

TEST_CASE("hfmg observer: compute equals the pure search on its histogram") {
  for (auto d : qlib_test::all_dists()) {
    const auto a = qlib_test::sample<float>(d, 20000, 1), b = qlib_test::sample<float>(d, 20000, 2);
    for (std::uint32_t bins : {1024u, 2048u, 4096u, 8192u}) {
      for (bool with_offset : {true, false}) {
        hfmg_observer<float> obs(named(bins, with_offset));
        obs.update(tv(a));
        obs.update(tv(b));
        const auto& h = obs.histogram();
        const auto pure = qlib::hfmg_search<float>(h.counts().data(), bins, h.lo(), h.hi(), 8);
        const auto r = obs.compute();
        INFO(qlib_test::dist_name(d) << " bins " << bins);
        CHECK(r.clip_min[0] == pure.clip_min);
        CHECK(r.clip_max[0] == pure.clip_max);
        const auto p = qlib::qparams_from_range(pure.clip_min, pure.clip_max, obs.options().spec);
        CHECK(r.scale[0] == p.scale);
        CHECK(r.zero_point[0] == p.zero_point);
        // The clip range lies inside the observed range.
        CHECK(r.clip_min[0] >= static_cast<float>(h.lo()));
        CHECK(r.clip_max[0] <= static_cast<float>(h.hi()) * (1 + 1e-6f) + 1e-30f);
      }
    }
  }
}

TEST_CASE("hfmg observer: batches inside the first range, and equal-range merges, are exact") {
  const auto a = qlib_test::sample<float>(qlib_test::dist::gaussian, 8000, 3);
  std::vector<float> b = qlib_test::sample<float>(qlib_test::dist::gaussian, 8000, 4);
  const auto mm = std::minmax_element(a.begin(), a.end());
  for (float& v : b) v = std::min(std::max(v, *mm.first), *mm.second);  // inside a's range
  hfmg_observer<float> one(named()), left(named()), right(named());
  one.update(tv(a));
  one.update(tv(b));
  left.update(tv(a));
  right.update(tv(a));  // the same range: merged without re-binning
  hfmg_observer<float> split(named());
  split.update(tv(a));
  split.update(qlib::view(b.data(), 4000));
  split.update(qlib::view(b.data() + 4000, 4000));
  qlib_test::require_same(split.compute(), one.compute());
  left.merge(right);
  hfmg_observer<float> twice(named());
  twice.update(tv(a));
  twice.update(tv(a));
  qlib_test::require_same(left.compute(), twice.compute());
}

TEST_CASE("hfmg observer: batch_num uses the first batches only") {
  hfmg_options o = named();
  o.batch_num = 1;
  hfmg_observer<float> limited(o), first(named());
  const auto a = qlib_test::sample<float>(qlib_test::dist::laplace, 3000, 5);
  auto b = qlib_test::sample<float>(qlib_test::dist::laplace, 3000, 6);
  for (float& v : b) v *= 10.0f;
  limited.update(tv(a));
  limited.update(tv(b));
  first.update(tv(a));
  CHECK(limited.batches_seen() == 2);
  CHECK(limited.batches_used() == 1);
  qlib_test::require_same(limited.compute(), first.compute());
}

TEST_CASE("hfmg observer: bins outside 1024, 2048, 4096, 8192 and bad states are rejected") {
  for (std::uint32_t bins : {0u, 1u, 512u, 1000u, 3000u, 16384u}) {
    const std::string msg = error_message([&] { hfmg_observer<float> obs(named(bins)); }, errc::invalid_argument);
    CHECK(msg.find("hfmg observer 't0'") != std::string::npos);
    CHECK(msg.find("num_of_bins = " + std::to_string(bins)) != std::string::npos);
  }
  hfmg_options o = named();
  o.spec.bits = 1;
  CHECK(error_message([&] { hfmg_observer<float> obs(o); }, errc::invalid_argument).find("bits") != std::string::npos);
  hfmg_observer<float> obs(named(1024));
  obs.update(tv(qlib_test::sample<float>(qlib_test::dist::gaussian, 500, 1)));
  auto bytes = obs.save();
  std::vector<std::uint8_t> cut(bytes.begin(), bytes.end() - 3);
  error_message([&] { (void)hfmg_observer<float>::load(cut); }, errc::parse_error);
  // A negative count.
  auto neg = bytes;
  const double minus = -1.0;
  std::uint64_t bits = 0;
  std::memcpy(&bits, &minus, 8);
  for (int i = 0; i < 8; ++i) neg[neg.size() - 8 + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(bits >> (8 * i));
  error_message([&] { (void)hfmg_observer<float>::load(neg); }, errc::parse_error);
  hfmg_observer<float> other(named(2048));
  error_message([&] { obs.merge(other); }, errc::invalid_argument);
}
