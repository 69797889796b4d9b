// Percentile and MSE searches against slow, obvious references written here: sorting the
// raw data, numpy-style cdf / searchsorted, the literal per-candidate MSE loop over the bin
// centres, and PyTorch's quantile walk with its restarting scans.
#include <qlib/calib/search.hpp>
#include <qlib/core/quantize.hpp>
#include <qlib/observer/histogram.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "observer/observer_contract.hpp"

using qlib::hist_bins;
using qlib::percentile_interpolation;
using qlib::qspec;
using qlib::range_candidate;

namespace {

template <class T>
qlib::minmax_t<T> minmax_of(const std::vector<T>& x) {
  auto p = std::minmax_element(x.begin(), x.end());
  return {*p.first, *p.second};
}

hist_bins bins_over(const std::vector<double>& counts, double lo, double width) {
  hist_bins h;
  h.counts = counts.data();
  h.size = counts.size();
  h.lo = lo;
  h.width = width;
  h.hi = lo + static_cast<double>(counts.size()) * width;
  return h;
}

// Nearest rank with the percentile given in hundredths of a percent (exact integers).
std::size_t rank_of(std::size_t n, long long p_hundredths) {
  const long long k = (p_hundredths * static_cast<long long>(n) + 9999) / 10000;
  return static_cast<std::size_t>(std::max(k, 1LL));
}

// modelopt's _compute_amax_percentile, written as numpy does it: an array cdf, then
// searchsorted(side="left").
double modelopt_percentile(const hist_bins& h, double p) {
  double total = 0.0;
  for (std::size_t j = 0; j < h.size; ++j) total += h.counts[j];
  std::vector<double> cdf(h.size);
  double run = 0.0;
  for (std::size_t j = 0; j < h.size; ++j) cdf[j] = run += h.counts[j] / total;
  const std::size_t idx = static_cast<std::size_t>(std::lower_bound(cdf.begin(), cdf.end(), p / 100.0) - cdf.begin());
  return h.edge(idx);
}

// The MSE objective of one candidate, literally: every bin centre fake-quantized.
double literal_mse(const hist_bins& h, double lo, double hi, const qspec& spec) {
  const auto p = qlib::qparams_from_range(lo, hi, spec);
  double num = 0.0, den = 0.0;
  for (std::size_t j = 0; j < h.size; ++j) {
    const double c = h.centre(j);
    const double e = qlib::fake_quantize_value(c, p.scale, p.zero_point, spec.qmin(), spec.qmax()) - c;
    num += h.counts[j] * e * e;
    den += h.counts[j];
  }
  return num / den;
}

// PyTorch HistogramObserver._non_linear_param_search's walk, scans restarting from the
// current bounds each step, alpha and beta as multiples of the step; all moves recorded.
std::vector<range_candidate> literal_trim(const hist_bins& h, double step) {
  const std::size_t n = h.size;
  std::vector<double> csum(n);
  double acc = 0.0;
  for (std::size_t j = 0; j < n; ++j) csum[j] = acc += h.counts[j];
  const double total = acc;
  std::vector<range_candidate> out = {{h.edge(0), h.edge(n)}};
  std::size_t start = 0, end = n - 1;
  std::uint64_t ka = 0, kb = 0;
  const auto steps = static_cast<std::uint64_t>(std::ceil(1.0 / step - 1e-9));
  while (ka + kb < steps) {
    const double next_alpha = static_cast<double>(ka + 1) * step, next_beta = 1.0 - static_cast<double>(kb + 1) * step;
    std::size_t l = start, r = end;
    while (l < end && csum[l] < next_alpha * total) ++l;
    while (r > start && csum[r] > next_beta * total) --r;
    std::size_t ns = start, ne = end;
    if (l - start > end - r) {
      ns = l;
      ++ka;
    } else {
      ne = r;
      ++kb;
    }
    if (ns == start && ne == end) continue;
    start = ns;
    end = ne;
    out.push_back({h.edge(start), h.edge(end + 1)});
  }
  return out;
}

template <class T>
qlib::abs_histogram<T> abs_hist_of(const std::vector<T>& x, std::uint32_t bins) {
  qlib::abs_histogram<T> h(bins);
  h.add(qlib::view(x), minmax_of(x));
  return h;
}

template <class T>
qlib::range_histogram<T> range_hist_of(const std::vector<T>& x, std::uint32_t bins) {
  qlib::range_histogram<T> h(bins);
  h.add(qlib::view(x), minmax_of(x));
  return h;
}

qspec make_spec(int bits, qlib::qscheme scheme, bool is_signed, bool narrow, qlib::qconvention conv) {
  qspec s;
  s.bits = bits;
  s.scheme = scheme;
  s.is_signed = is_signed;
  s.narrow_range = narrow;
  s.convention = conv;
  return s;
}

}  // namespace

TEST_CASE("percentile: a hand-made histogram, modelopt's edge and the linear rule") {
  const std::vector<double> counts = {5.0, 0.0, 3.0, 2.0};
  const hist_bins h = bins_over(counts, 0.0, 1.0);
  // modelopt: cdf = [0.5, 0.5, 0.8, 1.0]; searchsorted(0.5) = 0 -> edges[0].
  CHECK(qlib::histogram_percentile(h, 50.0, percentile_interpolation::edge) == 0.0);
  CHECK(qlib::histogram_percentile(h, 60.0, percentile_interpolation::edge) == 2.0);
  CHECK(qlib::histogram_percentile(h, 100.0, percentile_interpolation::edge) == 3.0);
  // Linear: 6 of 10 is a third of the way into bin 2's 3 counts.
  CHECK(qlib::histogram_percentile(h, 60.0) == Approx(2.0 + 1.0 / 3.0));
  CHECK(qlib::histogram_percentile(h, 50.0) == Approx(1.0));
  CHECK(qlib::histogram_percentile(h, 100.0) == Approx(4.0));
  // Lower (mirrored): the 40 % of the mass from the bottom sits 4/5 into bin 0.
  CHECK(qlib::histogram_lower_percentile(h, 60.0) == Approx(0.8));
  // Mirrored edge: the mirror's cdf from the top is [0.2, 0.5, 0.5, 1.0]; 60 % -> mirrored
  // bin 3 = bin 0, whose mirrored left edge is bin 0's right edge.
  CHECK(qlib::histogram_lower_percentile(h, 60.0, percentile_interpolation::edge) == 1.0);
  CHECK(qlib::histogram_lower_percentile(h, 100.0, percentile_interpolation::edge) == 1.0);
}

TEST_CASE("percentile: edge mode is modelopt's arithmetic on every distribution") {
  for (auto d : qlib_test::spread_dists()) {
    const auto x = qlib_test::sample<float>(d, 20000, 5);
    const auto ah = abs_hist_of(x, 2048);
    const hist_bins h = qlib::bins_of(ah);
    for (double p : {99.99, 99.9, 99.0, 90.0, 50.0, 100.0, 99.999}) {
      INFO(qlib_test::dist_name(d) << " p " << p);
      CHECK(qlib::histogram_percentile(h, p, percentile_interpolation::edge) == modelopt_percentile(h, p));
    }
  }
}

TEST_CASE("percentile: histogram results are within one bin of the sorted data") {
  for (auto d : qlib_test::all_dists()) {
    const auto x = qlib_test::sample<float>(d, 20000, 6);
    std::vector<double> a(x.size()), s(x.begin(), x.end());
    for (std::size_t i = 0; i < x.size(); ++i) a[i] = std::fabs(static_cast<double>(x[i]));
    std::sort(a.begin(), a.end());
    std::sort(s.begin(), s.end());
    const auto ah = abs_hist_of(x, 2048);
    const auto rh = range_hist_of(x, 2048);
    for (long long p100 : {9999LL, 9990LL, 9900LL, 9000LL, 5001LL, 10000LL}) {
      const double p = static_cast<double>(p100) / 100.0;
      const std::size_t k = rank_of(x.size(), p100);
      INFO(qlib_test::dist_name(d) << " p " << p);
      if (!ah.counts().empty()) {
        const hist_bins h = qlib::bins_of(ah);
        CHECK(std::fabs(qlib::histogram_percentile(h, p) - a[k - 1]) <= h.width * 1.0001);
      }
      const hist_bins r = qlib::bins_of(rh);
      const double tol = r.width * 1.0001 + 1e-300;
      CHECK(std::fabs(qlib::histogram_percentile(r, p) - s[k - 1]) <= tol);
      CHECK(std::fabs(qlib::histogram_lower_percentile(r, p) - s[x.size() - k]) <= tol);
      CHECK(qlib::histogram_lower_percentile(r, p) <= qlib::histogram_percentile(r, p));
    }
  }
}

TEST_CASE("percentile: exact mode is the nearest rank of the sorted data") {
  for (auto d : qlib_test::all_dists()) {
    for (std::size_t n : {1u, 2u, 7u, 10000u, 12345u}) {
      const auto x = qlib_test::sample<double>(d, n, 7);
      std::vector<double> s = x;
      std::sort(s.begin(), s.end());
      for (long long p100 : {1LL, 1250LL, 5000LL, 9900LL, 9999LL, 10000LL}) {
        const double p = static_cast<double>(p100) / 100.0;
        const std::size_t k = rank_of(n, p100);
        INFO(qlib_test::dist_name(d) << " n " << n << " p " << p);
        REQUIRE(qlib::nearest_rank(n, p) == k);
        std::vector<double> v = x;
        CHECK(qlib::exact_percentile(v.data(), n, p) == s[k - 1]);
        v = x;
        CHECK(qlib::exact_lower_percentile(v.data(), n, p) == s[n - k]);
      }
    }
  }
}

TEST_CASE("mse: the literal loop by hand") {
  // 2-bit signed grid [-2, 1], tensorrt rule s = T / 1. Centres 0.5, 1.5, 2.5 weighted 1, 1, 2.
  const std::vector<double> counts = {1.0, 1.0, 2.0};
  const hist_bins h = bins_over(counts, 0.0, 1.0);
  qspec spec;
  spec.bits = 2;
  // T = 2: s = 2; 0.5 -> 0, 1.5 -> 2, 2.5 -> 2: every error 0.5^2.
  CHECK(qlib::histogram_mse(h, -2.0, 2.0, spec) == 0.25);
  // T = 1: s = 1; 0.5 -> 0 (tie to even), 1.5 -> 2 clamped to 1, 2.5 -> 1.
  CHECK(qlib::histogram_mse(h, -1.0, 1.0, spec) == Approx((0.25 + 0.25 + 2 * 2.25) / 4));
  CHECK(qlib::histogram_mse(h, -2.0, 2.0, spec) == literal_mse(h, -2.0, 2.0, spec));
  // A constant histogram: one point mass.
  const std::vector<double> one = {0.0, 3.0, 0.0};
  hist_bins c = bins_over(one, 0.7, 0.0);
  c.hi = 0.7;
  const auto p = qlib::qparams_from_range(0.0, 0.9, qspec::torch_quint8());
  const double fq = qlib::fake_quantize_value(0.7, p.scale, p.zero_point, 0, 255);
  CHECK(qlib::histogram_mse(c, 0.0, 0.9, qspec::torch_quint8()) == (fq - 0.7) * (fq - 0.7));
}

TEST_CASE("mse: the fast evaluator equals the literal loop for every candidate") {
  using qlib::qconvention;
  using qlib::qscheme;
  const std::vector<qspec> sym_specs = {
      qspec::tensorrt_int8(), make_spec(4, qscheme::symmetric, true, true, qconvention::tensorrt),
      make_spec(8, qscheme::symmetric, true, false, qconvention::torch),
      make_spec(8, qscheme::symmetric, false, false, qconvention::tensorrt),
      make_spec(16, qscheme::symmetric, true, false, qconvention::amct),
      make_spec(2, qscheme::symmetric, true, false, qconvention::tensorrt)};
  const std::vector<qspec> affine_specs = {qspec::torch_quint8(), qspec::amct_activation(),
                                           make_spec(4, qscheme::affine, true, false, qconvention::torch),
                                           make_spec(12, qscheme::affine, false, false, qconvention::torch)};
  for (auto d : qlib_test::all_dists()) {
    const auto x = qlib_test::sample<float>(d, 20000, 8);
    auto y = qlib_test::sample<float>(d, 20000, 9);
    for (auto& v : y) v = v * 1.3f + 0.2f;
    const auto ah = abs_hist_of(x, 512);
    auto rh = range_hist_of(x, 512);
    rh.add(qlib::view(y), minmax_of(y));  // re-binned: fractional counts
    const bool one_sided = minmax_of(x).min >= 0.0f;
    std::vector<std::pair<hist_bins, std::vector<range_candidate>>> cases;
    std::vector<const std::vector<qspec>*> specs;
    if (!ah.counts().empty()) {
      const hist_bins h = qlib::bins_of(ah);
      cases.push_back({h, qlib::symmetric_candidates(h, 32, 3, one_sided)});
      specs.push_back(&sym_specs);
    }
    const hist_bins r = qlib::bins_of(rh);
    cases.push_back({r, qlib::scale_candidates(r, 32, 3)});
    specs.push_back(&affine_specs);
    cases.push_back({r, qlib::trim_candidates(r, 1e-3)});
    specs.push_back(&affine_specs);
    for (std::size_t c = 0; c < cases.size(); ++c) {
      const hist_bins& h = cases[c].first;
      const auto& cands = cases[c].second;
      const qlib::histogram_mse_evaluator eval(h);
      for (const qspec& spec : *specs[c]) {
        INFO(qlib_test::dist_name(d) << " case " << c << " bits " << spec.bits << " "
                                     << qlib::to_string(spec.scheme) << " " << qlib::to_string(spec.convention));
        std::vector<double> lit(cands.size());
        for (std::size_t k = 0; k < cands.size(); ++k) {
          lit[k] = literal_mse(h, cands[k].lo, cands[k].hi, spec);
          const double fast = eval.error(cands[k].lo, cands[k].hi, spec);
          REQUIRE(fast == Approx(lit[k]).epsilon(1e-10).margin(1e-300));
        }
        const auto pick = qlib::search_mse(eval, cands, spec);
        const double best = *std::min_element(lit.begin(), lit.end());
        REQUIRE(pick.index < cands.size());
        REQUIRE(lit[pick.index] <= best * (1.0 + 1e-10));
        REQUIRE(pick.range.lo == cands[pick.index].lo);
        REQUIRE(pick.range.hi == cands[pick.index].hi);
      }
    }
  }
}

TEST_CASE("mse: default-size search (2048 bins, modelopt's candidates) picks the literal argmin") {
  for (auto d : {qlib_test::dist::gaussian, qlib_test::dist::laplace, qlib_test::dist::outliers}) {
    const auto x = qlib_test::sample<float>(d, 50000, 10);
    const auto ah = abs_hist_of(x, 2048);
    const hist_bins h = qlib::bins_of(ah);
    const auto cands = qlib::symmetric_candidates(h, 128, 1, false);
    REQUIRE(cands.size() == 2048 - 128);
    REQUIRE(cands.front().hi == h.centre(128));
    REQUIRE(cands.back().hi == h.centre(2047));
    std::size_t best = 0;
    std::vector<double> lit(cands.size());
    for (std::size_t k = 0; k < cands.size(); k += 1) {
      lit[k] = literal_mse(h, cands[k].lo, cands[k].hi, qspec{});
      if (lit[k] < lit[best]) best = k;
    }
    const auto pick = qlib::search_mse(h, cands, qspec{});
    INFO(qlib_test::dist_name(d) << " pick " << pick.index << " literal " << best);
    CHECK(lit[pick.index] <= lit[best] * (1.0 + 1e-12));
  }
}

TEST_CASE("mse: 4-bit clipping lands near the analytic optimum (Banner et al. 2019, ACIQ)") {
  // The MSE-optimal 4-bit clip is 2.55 sigma (Gaussian) and 5.03 b (Laplace, b = 1) for 16
  // levels; the signed grid has 15 usable levels on |x| (T / 7 steps): allow 10 %.
  qspec s4;
  s4.bits = 4;
  for (auto [d, alpha] : {std::pair<qlib_test::dist, double>{qlib_test::dist::gaussian, 2.55},
                          std::pair<qlib_test::dist, double>{qlib_test::dist::laplace, 5.03}}) {
    const auto x = qlib_test::sample<float>(d, 100000, 11);
    const auto ah = abs_hist_of(x, 2048);
    const hist_bins h = qlib::bins_of(ah);
    const auto pick = qlib::search_mse(h, qlib::symmetric_candidates(h, 128, 1, false), s4);
    CHECK(pick.range.hi == Approx(alpha).epsilon(0.1));
  }
}

TEST_CASE("trim candidates follow PyTorch's walk") {
  for (auto d : qlib_test::spread_dists()) {
    const auto x = qlib_test::sample<float>(d, 30000, 12);
    const auto rh = range_hist_of(x, 256);
    const hist_bins r = qlib::bins_of(rh);
    for (double step : {1e-3, 1e-2, 0.05}) {
      INFO(qlib_test::dist_name(d) << " step " << step);
      const auto fast = qlib::trim_candidates(r, step);
      const auto lit = literal_trim(r, step);
      REQUIRE(fast.size() == lit.size());
      for (std::size_t k = 0; k < fast.size(); ++k) {
        REQUIRE(fast[k].lo == lit[k].lo);
        REQUIRE(fast[k].hi == lit[k].hi);
      }
      REQUIRE(fast.size() > 1);
    }
  }
}

TEST_CASE("candidate lists: start_bin clamped, stride, full range last") {
  const std::vector<double> counts(10, 1.0);
  const hist_bins h = bins_over(counts, -1.0, 0.5);  // [-1, 4]
  auto s = qlib::symmetric_candidates(h, 100, 1, false);
  REQUIRE(s.size() == 1);
  CHECK(s[0].hi == h.centre(9));
  s = qlib::symmetric_candidates(h, 2, 3, true);
  REQUIRE(s.size() == 3);  // bins 2, 5, 8
  CHECK(s[1].hi == h.centre(5));
  CHECK(s[1].lo == 0.0);
  s = qlib::symmetric_candidates(h, 0, std::numeric_limits<std::size_t>::max(), false);
  REQUIRE(s.size() == 1);
  const auto a = qlib::scale_candidates(h, 0, 1);
  REQUIRE(a.size() == 10);
  CHECK(a.back().lo == -1.0);
  CHECK(a.back().hi == 4.0);
  CHECK(a[4].hi == Approx(2.0));
  CHECK(a[4].lo == Approx(-0.5));
}

TEST_CASE("search: bad inputs are named") {
  const std::vector<double> counts = {1.0, 2.0};
  const hist_bins h = bins_over(counts, 0.0, 1.0);
  auto msg = qlib_test::error_message([&] { (void)qlib::histogram_percentile(h, 0.0); }, qlib::errc::invalid_argument);
  CHECK(msg.find("percentile") != std::string::npos);
  qlib_test::error_message([&] { (void)qlib::histogram_percentile(h, 100.5); }, qlib::errc::invalid_argument);
  qlib_test::error_message([&] { (void)qlib::histogram_percentile(h, std::nan("")); }, qlib::errc::invalid_argument);
  qlib_test::error_message([&] { (void)qlib::histogram_lower_percentile(h, -3.0); }, qlib::errc::invalid_argument);
  std::vector<double> v = {1.0};
  qlib_test::error_message([&] { (void)qlib::exact_percentile(v.data(), 0, 50.0); }, qlib::errc::empty_input);
  qlib_test::error_message([&] { (void)qlib::exact_percentile(v.data(), 1, 101.0); }, qlib::errc::invalid_argument);
  const std::vector<double> zeros = {0.0, 0.0};
  qlib_test::error_message([&] { (void)qlib::histogram_percentile(bins_over(zeros, 0.0, 1.0), 50.0); },
                           qlib::errc::empty_input);
  const std::vector<double> negative = {1.0, -1.0};
  msg = qlib_test::error_message([&] { (void)qlib::histogram_mse(bins_over(negative, 0.0, 1.0), -1, 1, qspec{}); },
                                 qlib::errc::invalid_argument);
  CHECK(msg.find("bin 1") != std::string::npos);
  qlib_test::error_message([&] { (void)qlib::histogram_percentile(hist_bins{}, 50.0); }, qlib::errc::empty_input);
  msg = qlib_test::error_message([&] { (void)qlib::symmetric_candidates(h, 0, 0, false); },
                                 qlib::errc::invalid_argument);
  CHECK(msg.find("stride") != std::string::npos);
  msg = qlib_test::error_message([&] { (void)qlib::trim_candidates(h, 0.0); }, qlib::errc::invalid_argument);
  CHECK(msg.find("trim_step") != std::string::npos);
  qlib_test::error_message([&] { (void)qlib::search_mse(h, {}, qspec{}); }, qlib::errc::invalid_argument);
  hist_bins bad = h;
  bad.width = std::numeric_limits<double>::infinity();
  qlib_test::error_message([&] { (void)qlib::histogram_percentile(bad, 50.0); }, qlib::errc::invalid_argument);
}
