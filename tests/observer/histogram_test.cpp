// abs_histogram and range_histogram against slow references written here: per-value
// binning with core/binning.hpp's rules, growth, pending zeros, merges, the proportional
// re-binning (uniform density inside a bin) and the serialized state.
#include <qlib/core/binning.hpp>
#include <qlib/observer/histogram.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "observer/observer_contract.hpp"

using qlib::abs_histogram;
using qlib::histogram_growth;
using qlib::range_histogram;

namespace {

template <class T>
qlib::minmax_t<T> minmax_of(const std::vector<T>& x) {
  auto p = std::minmax_element(x.begin(), x.end());
  return {*p.first, *p.second};
}

template <class T, class H>
void add(H& h, const std::vector<T>& x) {
  h.add(qlib::view(x), minmax_of(x));
}

// The |x| histogram written out: the width from the first non-zero batch, bins added by
// the growth rule when a batch's |x| max exceeds the top edge, each value binned with
// abs_bin_index.
template <class T>
struct abs_reference {
  std::uint32_t n0;
  histogram_growth growth;
  double width = 0.0;
  double pending = 0.0;
  std::vector<double> counts;

  void add(const std::vector<T>& x) {
    double amax = 0.0;
    for (T v : x) amax = std::max(amax, std::fabs(static_cast<double>(v)));
    if (counts.empty()) {
      if (amax == 0.0) {
        pending += static_cast<double>(x.size());
        return;
      }
      width = amax / n0;
      counts.assign(n0, 0.0);
      counts[0] += pending;
      pending = 0.0;
    }
    std::size_t n = counts.size();
    // Bins needed to cover amax: amax / width, where a ratio within a relative 1e-12 above
    // an integer counts as that integer (amax / (amax / n) can exceed n by an ulp; the top
    // edge holds its own value).
    const double ratio = amax / width;
    const auto need = static_cast<std::size_t>(std::ceil(ratio * (1.0 - 1e-12)));
    if (growth == histogram_growth::doubling)
      while (n < need) n *= 2;
    else
      n = std::max(n, need);
    counts.resize(n, 0.0);
    const T inv = qlib::abs_inv_width<T>(width);
    for (T v : x) counts[qlib::abs_bin_index(v, inv, static_cast<std::uint32_t>(n))] += 1.0;
  }
};

// Proportional split of counts over [lo + j w, lo + (j+1) w) onto bins [nlo + k nw, ...):
// each source bin's count goes to every target bin in proportion to the overlap length.
std::vector<double> split_reference(const std::vector<double>& counts, double lo, double w, std::size_t m, double nlo,
                                    double nw) {
  std::vector<double> out(m, 0.0);
  for (std::size_t j = 0; j < counts.size(); ++j) {
    const double a = lo + static_cast<double>(j) * w, b = a + w;
    for (std::size_t k = 0; k < m; ++k) {
      const double c = nlo + static_cast<double>(k) * nw, d = (k + 1 == m) ? std::max(c + nw, b) : c + nw;
      const double overlap = std::min(b, d) - std::max(a, c);
      if (overlap > 0) out[k] += counts[j] * overlap / w;
    }
  }
  return out;
}

void require_close(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  REQUIRE(got.size() == want.size());
  for (std::size_t j = 0; j < got.size(); ++j) {
    INFO("bin " << j);
    REQUIRE(got[j] == Approx(want[j]).margin(tol));
  }
}

template <class H>
std::vector<std::uint8_t> saved(const H& h) {
  qlib::state_writer w("hist", 1);
  h.save(w);
  return w.take();
}

template <class H>
H loaded(const std::vector<std::uint8_t>& bytes) {
  qlib::state_reader r(bytes, "hist", 1);
  H h = H::load(r);
  r.finish();
  return h;
}

}  // namespace

TEST_CASE("abs_histogram: counts match a per-value reference on every distribution") {
  for (auto growth : {histogram_growth::append, histogram_growth::doubling}) {
    for (auto d : qlib_test::all_dists()) {
      DYNAMIC_SECTION(qlib_test::dist_name(d) << (growth == histogram_growth::append ? " append" : " doubling")) {
        abs_histogram<float> h(1000, growth);  // not a power of two: widths are not exact
        abs_reference<float> ref{1000, growth, 0.0, 0.0, {}};
        for (std::uint64_t seed : {1, 2, 3}) {
          auto x = qlib_test::sample<float>(d, 5000, seed);
          for (auto& v : x) v *= static_cast<float>(seed);  // later batches reach further
          add(h, x);
          ref.add(x);
        }
        REQUIRE(h.counts() == ref.counts);
        REQUIRE(h.pending_zeros() == ref.pending);
        REQUIRE(h.bin_width() == ref.width);
        REQUIRE(h.total() == 15000.0);
      }
    }
  }
}

TEST_CASE("abs_histogram: growth appends just enough bins or doubles") {
  const std::vector<float> first = {1.0f, -0.5f, 0.25f, 0.0f};  // width 1/8 with 8 bins
  const std::vector<float> far = {-2.6f, 0.1f};                  // needs ceil(2.6 * 8) = 21 bins
  abs_histogram<float> app(8, histogram_growth::append), dbl(8, histogram_growth::doubling);
  for (auto* h : {&app, &dbl}) {
    add(*h, first);
    REQUIRE(h->counts().size() == 8);
    add(*h, far);
    REQUIRE(h->bin_width() == 0.125);
    REQUIRE(h->total() == 6.0);
  }
  REQUIRE(app.counts().size() == 21);
  REQUIRE(dbl.counts().size() == 32);
  // Bins: 0.0 -> 0, 0.1 -> 0, 0.25 -> 2, 0.5 -> 4, 1.0 -> 7 (the top edge of the first
  // batch: last bin then), 2.6 -> 20.
  std::vector<double> want(21, 0.0);
  want[0] = 2;
  want[2] = 1;
  want[4] = 1;
  want[7] = 1;
  want[20] = 1;
  REQUIRE(app.counts() == want);
  want.resize(32, 0.0);
  REQUIRE(dbl.counts() == want);
}

TEST_CASE("abs_histogram: a batch with the same maximum adds no bins") {
  // amax / (amax / n) is not always n in floating point; the top edge must still hold amax.
  // 159.690109f with 1000 bins is such a case (found by the reference test below).
  auto amaxes = qlib_test::sample<float>(qlib_test::dist::uniform, 200, 3);
  for (float& a : amaxes) a = std::fabs(a) * 37.0f + 0.001f;
  amaxes.push_back(159.690109f);
  for (std::uint32_t n : {1000u, 333u, 2047u, 3000u}) {
    for (auto growth : {histogram_growth::append, histogram_growth::doubling}) {
      for (float amax : amaxes) {
        abs_histogram<float> h(n, growth);
        const std::vector<float> x = {amax, -amax / 3, 0.0f};
        add(h, x);
        INFO("n " << n << " amax " << amax);
        REQUIRE(h.counts().size() == n);
        REQUIRE(h.counts()[n - 1] == 1.0);
        add(h, x);
        REQUIRE(h.counts().size() == n);
        REQUIRE(h.counts()[n - 1] == 2.0);
        REQUIRE(h.total() == 6.0);
      }
    }
  }
}

TEST_CASE("abs_histogram: zeros before the width is known land in bin 0") {
  abs_histogram<float> h(16);
  const std::vector<float> zeros(10, 0.0f);
  add(h, zeros);
  REQUIRE(h.counts().empty());
  REQUIRE(h.pending_zeros() == 10.0);
  REQUIRE(h.total() == 10.0);
  REQUIRE(!h.empty());
  const std::vector<float> x = {0.0f, 1.0f, 0.5f};
  add(h, x);
  REQUIRE(h.pending_zeros() == 0.0);
  REQUIRE(h.counts()[0] == 11.0);
  REQUIRE(h.counts()[8] == 1.0);
  REQUIRE(h.counts()[15] == 1.0);
  REQUIRE(h.total() == 13.0);

  // Merging a zeros-only histogram into a started one, and the reverse.
  abs_histogram<float> z(16);
  add(z, zeros);
  abs_histogram<float> a = h;
  a.merge(z);
  REQUIRE(a.counts()[0] == 21.0);
  REQUIRE(a.pending_zeros() == 0.0);
  z.merge(h);
  REQUIRE(z.counts()[0] == 21.0);
  REQUIRE(z.bin_width() == h.bin_width());
  REQUIRE(z.pending_zeros() == 0.0);
  abs_histogram<float> zz(16);
  add(zz, zeros);
  zz.merge(zz);
  REQUIRE(zz.pending_zeros() == 20.0);
}

TEST_CASE("abs_histogram: merge with equal widths adds counts bin for bin") {
  for (auto d : qlib_test::spread_dists()) {
    for (auto growth : {histogram_growth::append, histogram_growth::doubling}) {
      INFO(qlib_test::dist_name(d));
      const auto first = qlib_test::sample<float>(d, 4000, 11);
      auto b1 = qlib_test::sample<float>(d, 3000, 12), b2 = qlib_test::sample<float>(d, 3000, 13);
      for (auto& v : b2) v *= 2.5f;  // forces growth on one side only
      abs_histogram<float> left(2048, growth), right(2048, growth);
      add(left, first);
      add(left, b1);
      add(right, first);
      add(right, b2);
      abs_histogram<float> merged = left;
      merged.merge(right);
      REQUIRE(merged.bin_width() == left.bin_width());
      REQUIRE(merged.counts().size() == std::max(left.counts().size(), right.counts().size()));
      std::vector<double> want = right.counts();
      for (std::size_t j = 0; j < left.counts().size(); ++j) want[j] += left.counts()[j];
      REQUIRE(merged.counts() == want);

      // Later batches inside the first range: merge of halves == one pass, bit for bit.
      const auto mf = minmax_of(first);
      const float top = std::max(-mf.min, mf.max);
      auto c1 = b1, c2 = b2;
      for (auto* c : {&c1, &c2})
        for (auto& v : *c) v = std::min(std::max(v, -top), top);
      abs_histogram<float> l2(2048, growth), r2(2048, growth), one(2048, growth);
      add(l2, first);
      add(l2, c1);
      add(r2, first);
      add(r2, c2);
      add(one, first);
      add(one, c1);
      add(one, first);
      add(one, c2);
      l2.merge(r2);
      REQUIRE(l2.counts() == one.counts());
    }
  }
}

TEST_CASE("abs_histogram: any split of the batches after the same first batch is exact") {
  // Exact as long as no later value sits on the first range's top edge (the first batch's
  // |x| max itself): that value is clamped into the last bin before growth and lands in the
  // next bin after it. Continuous data repeats no maximum.
  for (auto d : qlib_test::spread_dists()) {
    for (auto growth : {histogram_growth::append, histogram_growth::doubling}) {
      INFO(qlib_test::dist_name(d));
      const auto first = qlib_test::sample<float>(d, 4000, 11);
      auto b1 = qlib_test::sample<float>(d, 3000, 12), b2 = qlib_test::sample<float>(d, 3000, 13);
      for (auto& v : b2) v *= 2.5f;
      abs_histogram<float> one(2048, growth), split(2048, growth);
      add(one, first);
      add(one, b1);
      add(one, b2);
      add(split, first);
      for (const auto* b : {&b1, &b2})
        for (std::size_t off = 0; off < b->size(); off += 700) {
          std::vector<float> part(b->begin() + static_cast<std::ptrdiff_t>(off),
                                  b->begin() + static_cast<std::ptrdiff_t>(std::min(off + 700, b->size())));
          add(split, part);
        }
      REQUIRE(split.counts() == one.counts());
    }
  }
}

TEST_CASE("abs_histogram: merge with different widths re-bins proportionally, total kept") {
  for (auto d : qlib_test::spread_dists()) {
    const auto a = qlib_test::sample<float>(d, 6000, 21);
    auto b = qlib_test::sample<float>(d, 6000, 22);
    for (auto& v : b) v *= 3.3f;  // a coarser width
    abs_histogram<float> fine(512), coarse(512);
    add(fine, a);
    add(coarse, b);
    const double w = fine.bin_width(), w2 = coarse.bin_width();
    REQUIRE(w2 > w);
    abs_histogram<float> m1 = fine;
    m1.merge(coarse);
    abs_histogram<float> m2 = coarse;
    m2.merge(fine);
    INFO(qlib_test::dist_name(d));
    // Reference: the fine counts split over coarse bins, plus the coarse counts.
    const std::size_t m = std::max(coarse.counts().size(),
                                   static_cast<std::size_t>(std::ceil(fine.counts().size() * w / w2)));
    std::vector<double> want = split_reference(fine.counts(), 0.0, w, m, 0.0, w2);
    for (std::size_t k = 0; k < coarse.counts().size(); ++k) want[k] += coarse.counts()[k];
    REQUIRE(m1.bin_width() == w2);
    require_close(m1.counts(), want, 1e-9);
    require_close(m2.counts(), want, 1e-9);
    REQUIRE(m1.total() == Approx(12000.0).epsilon(1e-12));
  }
}

TEST_CASE("range_histogram: counts match a per-value reference; widening re-bins proportionally") {
  for (auto d : qlib_test::all_dists()) {
    DYNAMIC_SECTION(qlib_test::dist_name(d)) {
      const std::uint32_t n = 300;
      range_histogram<float> h(n);
      auto x = qlib_test::sample<float>(d, 5000, 31);
      add(h, x);
      const auto mm = minmax_of(x);
      std::vector<double> want(n, 0.0);
      if (mm.min == mm.max) {
        want[n / 2] = 5000.0;  // constant data: the middle bin (AMCT)
      } else {
        const float inv = qlib::range_inv_width<float>(mm.min, mm.max, n);
        for (float v : x) want[qlib::range_bin_index(v, mm.min, inv, n)] += 1.0;
      }
      REQUIRE(h.counts() == want);
      REQUIRE(h.lo() == mm.min);
      REQUIRE(h.hi() == mm.max);

      // A batch inside the range adds counts as they are.
      const std::vector<float> inside = {mm.min, mm.max};
      range_histogram<float> g = h;
      add(g, inside);
      REQUIRE(g.lo() == h.lo());
      REQUIRE(g.hi() == h.hi());
      REQUIRE(g.total() == 5002.0);

      // A wider batch: old counts split by overlap onto the union range, new counts binned.
      auto y = qlib_test::sample<float>(d, 3000, 32);
      for (auto& v : y) v = v * 1.7f + 0.4f;
      const auto my = minmax_of(y);
      const double nl = std::min<double>(mm.min, my.min), nh = std::max<double>(mm.max, my.max);
      add(h, y);
      REQUIRE(h.lo() == nl);
      REQUIRE(h.hi() == nh);
      std::vector<double> moved;
      if (mm.min == mm.max) {
        moved.assign(n, 0.0);
        if (nl == nh)
          moved[n / 2] = 5000.0;
        else
          moved[std::min<std::size_t>(static_cast<std::size_t>((mm.min - nl) / ((nh - nl) / n)), n - 1)] = 5000.0;
      } else {
        moved = split_reference(want, mm.min, (static_cast<double>(mm.max) - mm.min) / n, n, nl, (nh - nl) / n);
      }
      if (nl == nh) {
        moved[n / 2] += 3000.0;
      } else {
        const float inv = qlib::range_inv_width<float>(nl, nh, n);
        for (float v : y) moved[qlib::range_bin_index(v, static_cast<float>(nl), inv, n)] += 1.0;
      }
      require_close(h.counts(), moved, 1e-9);
      REQUIRE(h.total() == Approx(8000.0).epsilon(1e-12));
    }
  }
}

TEST_CASE("range_histogram: constant data sits in bin n/2 and moves as a point mass") {
  range_histogram<double> h(10);
  const std::vector<double> c(7, 2.0);
  add(h, c);
  REQUIRE(h.lo() == 2.0);
  REQUIRE(h.hi() == 2.0);
  REQUIRE(h.counts()[5] == 7.0);
  REQUIRE(h.total() == 7.0);
  const std::vector<double> wider = {0.0, 4.0};  // union [0, 4]: width 0.4, 2.0 -> bin 5
  add(h, wider);
  REQUIRE(h.counts()[5] == 7.0);
  REQUIRE(h.counts()[0] == 1.0);
  REQUIRE(h.counts()[9] == 1.0);
  REQUIRE(h.total() == 9.0);
}

TEST_CASE("range_histogram: merge with equal ranges is exact; otherwise totals are kept") {
  for (auto d : qlib_test::spread_dists()) {
    auto a = qlib_test::sample<float>(d, 4000, 41), b = qlib_test::sample<float>(d, 4000, 42);
    // Same first range on both sides: the later batches stay inside it.
    const auto ma = minmax_of(a);
    for (auto& v : b) v = std::min(std::max(v, ma.min), ma.max);
    range_histogram<float> left(256), right(256), one(256);
    add(left, a);
    add(right, a);
    add(right, b);
    add(one, a);
    add(one, a);
    add(one, b);
    left.merge(right);
    INFO(qlib_test::dist_name(d));
    REQUIRE(left.counts() == one.counts());

    // Different ranges: both moved onto the union, matching the proportional split.
    auto c = qlib_test::sample<float>(d, 4000, 43);
    for (auto& v : c) v = v * 2.0f - 1.0f;
    range_histogram<float> hc(256);
    add(hc, c);
    range_histogram<float> m = one;
    m.merge(hc);
    const double nl = std::min(one.lo(), hc.lo()), nh = std::max(one.hi(), hc.hi());
    auto want = split_reference(one.counts(), one.lo(), one.bin_width(), 256, nl, (nh - nl) / 256);
    const auto theirs = split_reference(hc.counts(), hc.lo(), hc.bin_width(), 256, nl, (nh - nl) / 256);
    for (std::size_t k = 0; k < 256; ++k) want[k] += theirs[k];
    require_close(m.counts(), want, 1e-8);
    REQUIRE(m.total() == Approx(16000.0).epsilon(1e-12));
  }
}

TEST_CASE("histograms: state round-trips byte for byte; truncation is a parse error") {
  abs_histogram<float> a(64, histogram_growth::doubling);
  range_histogram<float> r(64);
  abs_histogram<float> empty_abs(64);
  range_histogram<float> empty_range(64);
  abs_histogram<float> zeros_only(64);
  add(zeros_only, std::vector<float>(5, 0.0f));
  const auto x = qlib_test::sample<float>(qlib_test::dist::laplace, 1000, 51);
  add(a, x);
  add(r, x);
  auto y = x;
  for (auto& v : y) v *= 3.0f;
  add(a, y);
  add(r, y);

  auto check = [](const auto& h) {
    using H = std::decay_t<decltype(h)>;
    const auto bytes = saved(h);
    const H back = loaded<H>(bytes);
    REQUIRE(saved(back) == bytes);
    REQUIRE(back.counts() == h.counts());
    for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
      const std::vector<std::uint8_t> part(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut));
      qlib_test::error_message([&] { (void)loaded<H>(part); }, qlib::errc::parse_error);
    }
  };
  check(a);
  check(r);
  check(empty_abs);
  check(empty_range);
  check(zeros_only);

  // Corrupt fields: a negative count, an unknown growth, bins out of range.
  auto bytes = saved(r);
  const std::size_t first_count = bytes.size() - 64 * 8;
  const double neg = -1.0;
  std::memcpy(&bytes[first_count], &neg, 8);
  qlib_test::error_message([&] { (void)loaded<range_histogram<float>>(bytes); }, qlib::errc::parse_error);
  bytes = saved(a);
  const std::size_t growth_at = bytes.size() - (8 + 8 + 8 + a.counts().size() * 8) - 1;
  bytes[growth_at] = 7;
  qlib_test::error_message([&] { (void)loaded<abs_histogram<float>>(bytes); }, qlib::errc::parse_error);
}

TEST_CASE("histograms: bad options and mismatched merges are named") {
  auto msg = qlib_test::error_message([] { abs_histogram<float> h(0); }, qlib::errc::invalid_argument);
  CHECK(msg.find("bins") != std::string::npos);
  msg = qlib_test::error_message([] { range_histogram<float> h(qlib::max_histogram_bins + 1); },
                                 qlib::errc::invalid_argument);
  CHECK(msg.find("bins") != std::string::npos);
  abs_histogram<float> a(8), b(16);
  qlib_test::error_message([&] { a.merge(b); }, qlib::errc::invalid_argument);
  range_histogram<float> c(8), e(16);
  qlib_test::error_message([&] { c.merge(e); }, qlib::errc::invalid_argument);
  std::vector<std::uint64_t> counts(3, 1);
  add(a, std::vector<float>{1.0f});
  qlib_test::error_message([&] { a.accumulate(counts.data(), counts.size()); }, qlib::errc::invalid_argument);
}
