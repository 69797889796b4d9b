// KL (entropy) threshold search: each variant against a slow reference loop written here
// from the published descriptions (shared/specs/algorithms.md section 2), on many histogram
// shapes; the published expansion example; modelopt's ties, infinities and NaNs; ORT's
// smoothing, and ORT's own answers (onnxruntime 1.32.0, numpy 2.4.6) on fixed histograms.
#include <qlib/calib/entropy.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "observer/observer_contract.hpp"
#include "test_data.hpp"

using qlib::entropy_options;
using qlib::entropy_search;
using qlib::entropy_search_signed;

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();
using hist_t = std::vector<double>;

// ---- references -------------------------------------------------------------------------

/// KL(P || Q) of two unnormalized histograms, term by term: NaN if Q is all zero, +inf if
/// P > 0 where Q = 0.
double ref_kl(const hist_t& P, const hist_t& Q) {
  double sp = 0.0, sq = 0.0;
  for (std::size_t j = 0; j < P.size(); ++j) {
    sp += P[j];
    sq += Q[j];
  }
  if (sq == 0.0) return std::numeric_limits<double>::quiet_NaN();
  double kl = 0.0;
  for (std::size_t j = 0; j < P.size(); ++j) {
    const double p = P[j] / sp, q = Q[j] / sq;
    if (p == 0.0) continue;
    if (q == 0.0) return inf;
    kl += p * std::log(p / q);
  }
  return kl;
}

/// Q: src merged into levels (level_of(j) for each bin), each level's count shared evenly
/// over its non-empty bins; empty bins stay empty.
hist_t expand(const hist_t& src, std::size_t levels, const std::function<std::size_t(std::size_t)>& level_of) {
  std::vector<double> mass(levels, 0.0), nonempty(levels, 0.0);
  for (std::size_t j = 0; j < src.size(); ++j) {
    mass[level_of(j)] += src[j];
    if (src[j] != 0.0) nonempty[level_of(j)] += 1.0;
  }
  hist_t q(src.size(), 0.0);
  for (std::size_t j = 0; j < src.size(); ++j)
    if (src[j] != 0.0) q[j] = mass[level_of(j)] / nonempty[level_of(j)];
  return q;
}
/// The slides: levels of size / L bins, the last level takes the remainder.
hist_t expand_published(const hist_t& src, std::size_t L) {
  const std::size_t per = src.size() / L;
  return expand(src, L, [&](std::size_t j) { return std::min(j / per, L - 1); });
}
/// MLPerf: L equal levels over [0, centre of the last bin]; a bin goes where its centre is.
hist_t expand_centre(const hist_t& src, std::size_t L) {
  const double c = static_cast<double>(src.size()) - 0.5;
  return expand(src, L, [&](std::size_t j) {
    return std::min(static_cast<std::size_t>(std::floor((static_cast<double>(j) + 0.5) * static_cast<double>(L) / c)), L - 1);
  });
}

/// The published loop: for each candidate i, P = h[0:i] with the outliers in P[i-1],
/// Q = expand(h[0:i]), KL; the first minimum, values within 1e-12 relative counting as equal
/// (the library's tie_tolerance: rounding must not break mathematical ties); n when no KL is
/// finite.
std::size_t ref_tensorrt(const hist_t& h, std::size_t start, std::size_t last, std::size_t L,
                         hist_t (*expand_fn)(const hist_t&, std::size_t)) {
  std::vector<double> kl;
  double best = inf;
  for (std::size_t i = start; i <= last; ++i) {
    hist_t P(h.begin(), h.begin() + static_cast<std::ptrdiff_t>(i));
    for (std::size_t j = i; j < h.size(); ++j) P[i - 1] += h[j];
    const hist_t Q = expand_fn(hist_t(h.begin(), h.begin() + static_cast<std::ptrdiff_t>(i)), L);
    kl.push_back(ref_kl(P, Q));
    if (kl.back() < best) best = kl.back();  // NaN never wins
  }
  if (best == inf) return h.size();
  for (std::size_t k = 0; k < kl.size(); ++k)
    if (kl[k] <= best + 1e-12 * std::fabs(best)) return start + k;
  return h.size();
}

/// np.sum's order: pairwise, 8 accumulators for blocks of up to 128 values.
double np_sum(const double* a, std::size_t n) {
  if (n < 8) {
    double s = -0.0;
    for (std::size_t i = 0; i < n; ++i) s += a[i];
    return s;
  }
  if (n <= 128) {
    double r[8];
    std::size_t i = 0;
    for (; i < 8; ++i) r[i] = a[i];
    for (; i + 8 <= n; i += 8)
      for (int k = 0; k < 8; ++k) r[k] += a[i + static_cast<std::size_t>(k)];
    double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) s += a[i];
    return s;
  }
  std::size_t half = n / 2;
  half -= half % 8;
  return np_sum(a, half) + np_sum(a + half, n - half);
}
float np_sum(const float* a, std::size_t n) {
  if (n < 8) {
    float s = -0.0f;
    for (std::size_t i = 0; i < n; ++i) s += a[i];
    return s;
  }
  if (n <= 128) {
    float r[8];
    std::size_t i = 0;
    for (; i < 8; ++i) r[i] = a[i];
    for (; i + 8 <= n; i += 8)
      for (int k = 0; k < 8; ++k) r[k] += a[i + static_cast<std::size_t>(k)];
    float s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) s += a[i];
    return s;
  }
  std::size_t half = n / 2;
  half -= half % 8;
  return np_sum(a, half) + np_sum(a + half, n - half);
}

/// scipy.stats.entropy(pk, qk): normalize both with np.sum, sum rel_entr with np.sum.
double scipy_entropy(const hist_t& pk, const hist_t& qk) {
  const double sp = np_sum(pk.data(), pk.size()), sq = np_sum(qk.data(), qk.size());
  hist_t v(pk.size());
  for (std::size_t j = 0; j < pk.size(); ++j) {
    const double p = pk[j] / sp, q = qk[j] / sq;
    if (std::isnan(p) || std::isnan(q))
      v[j] = std::numeric_limits<double>::quiet_NaN();
    else if (p > 0 && q > 0)
      v[j] = p * std::log(p / q);
    else if (p == 0 && q >= 0)
      v[j] = 0.0;
    else
      v[j] = inf;
  }
  return np_sum(v.data(), v.size());
}

/// modelopt's _compute_amax_entropy, step by step; returns the chosen i (amax = edges[i]).
std::size_t ref_modelopt(hist_t bins, std::size_t start, std::size_t stride, std::size_t L) {
  bins[0] = bins[1];
  const std::size_t n = bins.size();
  std::vector<double> divergences;
  for (std::size_t i = start; i <= n; i += stride) {
    std::vector<double> space(L + 1);  // np.linspace(0, i, num=L + 1)
    for (std::size_t g = 0; g <= L; ++g) space[g] = static_cast<double>(g) * (static_cast<double>(i) / static_cast<double>(L));
    space[L] = static_cast<double>(i);
    std::vector<long> digitized(i);  // np.digitize(range(i), space) - 1; empty bins get -1
    for (std::size_t j = 0; j < i; ++j) {
      const auto at = std::upper_bound(space.begin(), space.end(), static_cast<double>(j));
      digitized[j] = bins[j] == 0.0 ? -1 : static_cast<long>(at - space.begin()) - 1;
    }
    std::vector<double> counts(L, 0.0), members(L, 0.0);
    for (std::size_t j = 0; j < i; ++j)
      if (digitized[j] != -1) {
        counts[static_cast<std::size_t>(digitized[j])] += bins[j];
        members[static_cast<std::size_t>(digitized[j])] += 1.0;
      }
    hist_t q(i, 0.0), p(bins.begin(), bins.begin() + static_cast<std::ptrdiff_t>(i));
    for (std::size_t j = 0; j < i; ++j)
      if (digitized[j] != -1) q[j] = counts[static_cast<std::size_t>(digitized[j])] / members[static_cast<std::size_t>(digitized[j])];
    p[i - 1] += np_sum(bins.data() + i, n - i);
    divergences.push_back(scipy_entropy(p, q));
  }
  // last_argmin = len - 1 - np.argmin(divergences[::-1]); np.argmin returns the first NaN.
  std::size_t best = 0;
  for (std::size_t k = 0; k < divergences.size(); ++k) {
    const std::size_t r = divergences.size() - 1 - k;
    if (std::isnan(divergences[r])) {
      best = r;
      break;
    }
    if (k == 0 || divergences[r] < divergences[best]) best = r;
  }
  return start + best * stride;
}

/// ORT's get_entropy_threshold with smooth_distribution and its float32 entropy(), step by
/// step; returns the chosen i (the slice [z - i, min(z + i + 1, n))).
std::size_t ref_ort(const hist_t& hist, std::size_t L, double eps = 1e-4) {
  const std::size_t n = hist.size(), z = n / 2, half_q = L / 2;
  auto smooth = [eps](const hist_t& p, std::vector<float>& out) {
    double zeros = 0;
    for (double v : p) zeros += v == 0.0 ? 1 : 0;
    const double nonzeros = static_cast<double>(p.size()) - zeros;
    if (nonzeros == 0) return false;
    const double eps1 = eps * zeros / nonzeros;
    out.resize(p.size());
    for (std::size_t j = 0; j < p.size(); ++j) out[j] = static_cast<float>(p[j]) + (p[j] == 0.0 ? static_cast<float>(eps) : static_cast<float>(-eps1));
    return true;
  };
  std::vector<double> divergence;
  for (std::size_t i = half_q; i <= z; ++i) {
    const std::size_t s = z - i, e = std::min(z + i + 1, n);
    const hist_t sliced(hist.begin() + static_cast<std::ptrdiff_t>(s), hist.begin() + static_cast<std::ptrdiff_t>(e));
    hist_t p = sliced;
    for (std::size_t j = 0; j < s; ++j) p[0] += hist[j];
    for (std::size_t j = e; j < n; ++j) p.back() += hist[j];
    const std::size_t merged = sliced.size() / L;
    std::vector<double> quantized(L, 0.0);
    for (std::size_t g = 0; g < L; ++g)
      for (std::size_t j = g * merged; j < (g + 1) * merged; ++j) quantized[g] += sliced[j];
    for (std::size_t j = L * merged; j < sliced.size(); ++j) quantized[L - 1] += sliced[j];
    hist_t q(p.size(), 0.0);
    for (std::size_t g = 0; g < L; ++g) {
      double norm = 0;
      for (std::size_t j = g * merged; j < (g + 1) * merged; ++j) norm += p[j] != 0.0 ? 1 : 0;
      if (norm != 0)
        for (std::size_t j = g * merged; j < (g + 1) * merged; ++j) q[j] = std::trunc(quantized[g] / norm);  // int64 q
    }
    std::vector<float> ps, qs;
    if (!smooth(p, ps) || !smooth(q, qs)) {
      divergence.push_back(inf);
      continue;
    }
    const float sp = np_sum(ps.data(), ps.size()), sq = np_sum(qs.data(), qs.size());
    std::vector<float> v(ps.size());
    for (std::size_t j = 0; j < ps.size(); ++j) {
      const float pk = ps[j] / sp, qk = qs[j] / sq;
      v[j] = pk * std::log(pk / qk);
    }
    divergence.push_back(static_cast<double>(np_sum(v.data(), v.size())));
  }
  std::size_t best = 0;
  for (std::size_t k = 1; k < divergence.size(); ++k)
    if (divergence[k] < divergence[best]) best = k;
  return half_q + best;
}

// ---- histograms ---------------------------------------------------------------------------

/// |x| histogram of n bins of width amax / n.
hist_t abs_counts(const std::vector<double>& x, std::size_t n) {
  double amax = 0.0;
  for (double v : x) amax = std::max(amax, std::fabs(v));
  hist_t h(n, 0.0);
  for (double v : x) h[std::min(static_cast<std::size_t>(std::fabs(v) / amax * static_cast<double>(n)), n - 1)] += 1.0;
  return h;
}

/// Named histogram shapes of n bins: the seeded distributions plus hand-made ones.
std::vector<std::pair<std::string, hist_t>> shapes(std::size_t n) {
  std::vector<std::pair<std::string, hist_t>> out;
  for (auto d : qlib_test::spread_dists()) out.emplace_back(qlib_test::dist_name(d), abs_counts(qlib_test::sample<double>(d, 20000, 11), n));
  hist_t h(n);
  for (std::size_t j = 0; j < n; ++j) h[j] = std::floor(1e6 * std::pow(0.99, static_cast<double>(j)));
  out.emplace_back("geometric", h);
  for (std::size_t j = 0; j < n; ++j) h[j] *= 0.37;
  out.emplace_back("fractional", h);
  for (std::size_t j = n / 3; j < n; ++j) h[j] = 0.0;
  out.emplace_back("fractional_empty_tail", h);
  qlib_test::rng r(5);
  for (std::size_t j = 0; j < n; ++j) h[j] = r.uniform() < 0.05 ? std::floor(100 * r.uniform()) + 1 : 0.0;
  out.emplace_back("sparse", h);
  for (std::size_t j = 0; j < n; ++j) h[j] = (j % 97 == 3) ? 1000.0 + static_cast<double>(j) : 0.0;
  out.emplace_back("spikes", h);
  for (std::size_t j = 0; j < n; ++j) h[j] = std::floor(5000.0 / (1.0 + static_cast<double>(j))) + static_cast<double>(j % 3);
  out.emplace_back("power_law", h);
  for (std::size_t j = 0; j < n; ++j) h[j] = j < n / 3 ? 40.0 : (j < n / 2 ? 3.0 : (j + 1 == n ? 9.0 : 0.0));
  out.emplace_back("steps_with_outlier", h);
  return out;
}

}  // namespace

TEST_CASE("entropy: the published expansion example [1,0,2,3,5,3,1,7] -> [2,0,2,2,4,4,4,4]") {
  const hist_t src = {1, 0, 2, 3, 5, 3, 1, 7};
  const hist_t want = {2, 0, 2, 2, 4, 4, 4, 4};
  CHECK(expand_published(src, 2) == want);  // the test's reference
  std::vector<std::size_t> b;
  qlib::detail::level_bounds(qlib::entropy_levels::published, 8, 2, b);
  CHECK(b == std::vector<std::size_t>{0, 4, 8});
  qlib::detail::exact_buffers buf;
  const double kl = qlib::detail::kl_exact(src, 8, b, buf);  // no outliers: P = src
  CHECK(buf.q == want);
  CHECK(kl == Approx(ref_kl(src, want)).epsilon(1e-14));
}

TEST_CASE("entropy: golden hand cases on the 8-bin example (tests/data/golden hand_cases)") {
  const hist_t src = {1, 0, 2, 3, 5, 3, 1, 7};
  auto trt = entropy_options::tensorrt(2);  // start 2, 2 levels; torchquant searched up to n
  trt.include_unclipped = true;
  CHECK(entropy_search(src, 1.0, trt).bin == 7);
  CHECK(ref_tensorrt(src, 2, 8, 2, expand_published) == 7);
  const auto mo = entropy_options::modelopt(2, 2);
  CHECK(entropy_search(src, 1.0, mo).bin == 2);
  CHECK(ref_modelopt(src, 2, 1, 2) == 2);
}

TEST_CASE("entropy: tensorrt (slides) matches the published loop on every shape") {
  for (std::size_t n : {512u, 2048u}) {
    for (const auto& [name, h] : shapes(n)) {
      if (n == 2048 && name != "gaussian" && name != "outliers" && name != "sparse") continue;  // time
      INFO(name << ", " << n << " bins");
      const auto opt = entropy_options::tensorrt();
      const auto got = entropy_search(h, 0.25, opt);
      const std::size_t want = ref_tensorrt(h, 128, n - 1, 128, expand_published);
      CHECK(got.bin == want);
      CHECK(got.candidates == n - 128);
      CHECK(got.threshold == (static_cast<double>(got.bin) + 0.5) * 0.25);
      if (got.clipped) CHECK(got.rescored >= 1);
    }
  }
}

TEST_CASE("entropy: tensorrt options: unclipped candidate, stride, levels, first bin, thresholds") {
  for (const auto& [name, h] : shapes(512)) {
    INFO(name);
    auto opt = entropy_options::tensorrt();
    opt.include_unclipped = true;  // the Python predecessor's range: 128 .. n
    CHECK(entropy_search(h, 1.0, opt).bin == ref_tensorrt(h, 128, 512, 128, expand_published));
    opt = entropy_options::tensorrt(64);  // 64 levels, candidates 64 .. n-1
    CHECK(entropy_search(h, 1.0, opt).bin == ref_tensorrt(h, 64, 511, 64, expand_published));
    opt = entropy_options::tensorrt();
    opt.first_bin = qlib::entropy_first_bin::discard;
    hist_t zeroed = h;
    zeroed[0] = 0.0;
    const auto d = entropy_search(h, 1.0, opt);
    CHECK(d.bin == ref_tensorrt(zeroed, 128, 511, 128, expand_published));
    opt.threshold_rule = qlib::entropy_threshold::last_bin_centre;
    CHECK(entropy_search(h, 2.0, opt).threshold == (static_cast<double>(d.bin) - 0.5) * 2.0);
    opt.threshold_rule = qlib::entropy_threshold::right_edge;
    CHECK(entropy_search(h, 2.0, opt).threshold == static_cast<double>(d.bin) * 2.0);
  }
  // stride: the candidates 128, 131, ... only
  const hist_t h = shapes(512)[0].second;
  auto opt = entropy_options::tensorrt();
  opt.stride = 3;
  const auto got = entropy_search(h, 1.0, opt);
  CHECK((got.bin - 128) % 3 == 0);
  CHECK(got.candidates == (511 - 128) / 3 + 1);
}

TEST_CASE("entropy: linspace level bounds equal numpy's ceil(g * (i / L)) for every i") {
  std::vector<std::size_t> b;
  for (std::size_t L : {64u, 100u, 128u, 200u, 256u}) {
    for (std::size_t i = 1; i <= 4096; ++i) {
      qlib::detail::level_bounds(qlib::entropy_levels::linspace, i, L, b);
      bool same = b.front() == 0 && b.back() == i;
      for (std::size_t g = 1; g < L; ++g)
        same = same && b[g] == std::min<std::size_t>(i, static_cast<std::size_t>(std::ceil(static_cast<double>(g) * (static_cast<double>(i) / static_cast<double>(L)))));
      if (!same) FAIL("levels " << L << ", candidate " << i);
    }
  }
  SUCCEED("all bounds agree");
}

TEST_CASE("entropy: MLPerf levels (127 between 0 and the last bin's centre) match a reference") {
  for (const auto& [name, h] : shapes(512)) {
    INFO(name);
    const auto opt = entropy_options::tensorrt_mlperf();
    hist_t zeroed = h;
    zeroed[0] = 0.0;  // the first bin is discarded
    const auto got = entropy_search(h, 0.5, opt);
    const std::size_t want = ref_tensorrt(zeroed, 128, 511, 127, expand_centre);
    CHECK(got.bin == want);
    if (got.clipped) CHECK(got.threshold == (static_cast<double>(want) - 0.5) * 0.5);
  }
  // The integer level boundaries equal the centre rule bin by bin, also for few bins.
  std::vector<std::size_t> b;
  for (std::size_t i = 1; i <= 2100; ++i) {
    qlib::detail::level_bounds(qlib::entropy_levels::mlperf_centre, i, 127, b);
    for (std::size_t j = 0; j < i; ++j) {
      const double c = static_cast<double>(i) - 0.5;
      const std::size_t want = std::min<std::size_t>(static_cast<std::size_t>(std::floor((static_cast<double>(j) + 0.5) * 127.0 / c)), 126);
      const auto at = std::upper_bound(b.begin(), b.end() - 1, j) - b.begin() - 1;
      if (static_cast<std::size_t>(at) != want) FAIL("candidate " << i << ", bin " << j << ": level " << at << ", want " << want);
    }
  }
}

TEST_CASE("entropy: modelopt matches _compute_amax_entropy step by step") {
  for (std::size_t n : {512u, 2048u}) {
    for (const auto& [name, h] : shapes(n)) {
      if (n == 2048 && name != "gaussian" && name != "laplace") continue;  // time
      INFO(name << ", " << n << " bins");
      auto opt = entropy_options::modelopt();
      opt.threshold_rule = qlib::entropy_threshold::right_edge;
      const auto got = entropy_search(h, 0.125, opt);
      CHECK(got.bin == ref_modelopt(h, 128, 1, 128));
      CHECK(got.threshold == static_cast<double>(got.bin) * 0.125);
      CHECK(got.candidates == n - 128 + 1);
    }
  }
}

TEST_CASE("entropy: modelopt with uneven levels, strides and candidates below the level count") {
  const auto all = shapes(512);
  for (std::size_t levels : {100u, 128u, 200u, 256u}) {
    for (std::size_t stride : {1u, 7u}) {
      for (std::size_t s = 0; s < all.size(); s += 3) {
        INFO(all[s].first << ", levels " << levels << ", stride " << stride);
        const auto opt = entropy_options::modelopt(static_cast<std::uint32_t>(levels), 64, static_cast<std::uint32_t>(stride));
        CHECK(entropy_search(all[s].second, 1.0, opt).bin == ref_modelopt(all[s].second, 64, stride, levels));
      }
    }
  }
}

TEST_CASE("entropy: modelopt ties go to the last minimum, NaN (empty Q) wins, infinities lose") {
  // Equal counts in the first 20 bins only: every candidate has Q == P, KL = 0 exactly.
  hist_t h(512, 0.0);
  for (std::size_t j = 0; j < 20; ++j) h[j] = 5.0;
  auto mo = entropy_options::modelopt();
  auto got = entropy_search(h, 1.0, mo);
  CHECK(got.bin == 512);
  CHECK(got.bin == ref_modelopt(h, 128, 1, 128));
  CHECK(got.kl == 0.0);
  CHECK(entropy_search(h, 1.0, entropy_options::tensorrt()).bin == 128);  // first minimum
  CHECK(ref_tensorrt(h, 128, 511, 128, expand_published) == 128);

  // All mass in the last bin (constant data): Q is empty for every i < n (NaN), so the last
  // NaN wins in modelopt: i = n - 1, amax = edge n - 1.
  hist_t last(512, 0.0);
  last[511] = 1000.0;
  got = entropy_search(last, 1.0, mo);
  CHECK(got.bin == 511);
  CHECK(std::isnan(got.kl));
  CHECK(ref_modelopt(last, 128, 1, 128) == 511);
  // The published variant has no finite candidate: it keeps the whole range.
  got = entropy_search(last, 1.0, entropy_options::tensorrt());
  CHECK(got.bin == 512);
  CHECK(!got.clipped);
  CHECK(got.threshold == 512.5);
  auto first = entropy_options::tensorrt();
  first.unclipped_if_all_infinite = false;  // np.argmin over infinities: the first
  CHECK(entropy_search(last, 1.0, first).bin == 128);

  // Outliers folded into an empty bin i - 1 make KL infinite: such candidates never win.
  hist_t gap(512, 0.0);
  for (std::size_t j = 0; j < 300; ++j) gap[j] = (j % 2 == 0) ? 10.0 + static_cast<double>(j % 7) : 0.0;
  gap[400] = 50.0;
  got = entropy_search(gap, 1.0, mo);
  CHECK(got.bin == ref_modelopt(gap, 128, 1, 128));
  CHECK(std::isfinite(got.kl));
  CHECK((got.bin > 401 || gap[got.bin - 1] > 0.0));  // beyond bin 400 there are no outliers
  CHECK(entropy_search(gap, 1.0, entropy_options::tensorrt()).bin == ref_tensorrt(gap, 128, 511, 128, expand_published));
}

TEST_CASE("entropy: modelopt's float32 bin edges (torch.linspace / torch.arange on CPU)") {
  for (float amax : {1.0f, 3.14159f, 0.0123f, 250.7f, 6.0e-5f}) {
    for (std::size_t nb : {2048u, 1000u, 512u}) {
      const double w = static_cast<double>(amax) / static_cast<double>(nb);
      CHECK(qlib::detail::modelopt_edge(nb, w, nb, nb) == static_cast<double>(amax));  // the last edge is x_max
      CHECK(qlib::detail::modelopt_edge(0, w, nb, nb) == 0.0);
      double prev = -1.0;
      for (std::size_t k = 0; k <= nb; ++k) {
        const double e = qlib::detail::modelopt_edge(k, w, nb, nb);
        const float exact = static_cast<float>(static_cast<double>(k) * w);
        // within one float32 ulp of k * w, increasing
        CHECK(std::fabs(e - static_cast<double>(exact)) <= std::nextafter(exact, 1e30f) - exact);
        CHECK(e > prev);
        prev = e;
      }
      // After growth: float(double(step) * k), step = float32(x_max / nb).
      const float step = amax / static_cast<float>(nb);
      CHECK(qlib::detail::modelopt_edge(nb + 10, w, nb, nb + 20) ==
            static_cast<double>(static_cast<float>(static_cast<double>(step) * static_cast<double>(nb + 10))));
    }
  }
  // The modelopt preset reports the float32 edge of the chosen bin.
  const hist_t h = shapes(512)[0].second;
  const double w = 3.7 / 512;
  const auto got = entropy_search(h, w, entropy_options::modelopt());
  CHECK(got.threshold == qlib::detail::modelopt_edge(got.bin, w, 512, 512));
  CHECK(static_cast<double>(static_cast<float>(got.threshold)) == got.threshold);
}

TEST_CASE("entropy: onnxruntime matches get_entropy_threshold step by step") {
  for (std::size_t n : {128u, 129u, 130u, 257u, 512u, 1000u, 2048u}) {
    for (const auto& [name, hh] : shapes(n)) {
      if (n == 2048 && name != "gaussian" && name != "sparse") continue;  // time
      // A signed histogram: mirror the |x| shape around the centre, slightly asymmetric.
      hist_t h(n, 0.0);
      for (std::size_t j = 0; j < n; ++j) {
        const std::size_t d = j >= n / 2 ? j - n / 2 : n / 2 - j - 1;
        h[j] = std::floor(hh[std::min(2 * d, n - 1)] * (j >= n / 2 ? 1.0 : 0.7));
      }
      std::vector<double> edges(n + 1);
      for (std::size_t k = 0; k <= n; ++k) edges[k] = -1.0 + 2.0 * static_cast<double>(k) / static_cast<double>(n);
      for (std::uint32_t L : {128u, 100u, 64u}) {
        if (n / 2 < L / 2) continue;
        INFO(name << ", " << n << " bins, " << L << " levels");
        const auto got = entropy_search_signed(h, edges, entropy_options::onnxruntime(L));
        const std::size_t want = ref_ort(h, L);
        CHECK(got.half == want);
        CHECK(got.start == n / 2 - got.half);
        CHECK(got.end == std::min(n / 2 + got.half + 1, n));
        CHECK(got.lo == edges[got.start]);
        CHECK(got.hi == edges[got.end]);
      }
    }
  }
}

TEST_CASE("entropy: onnxruntime's defaults leave a single candidate (issues 9597, 17235)") {
  hist_t h = shapes(128)[0].second;
  std::vector<double> edges(129);
  for (std::size_t k = 0; k <= 128; ++k) edges[k] = static_cast<double>(k) - 64.0;
  const auto got = entropy_search_signed(h, edges, entropy_options::onnxruntime());
  CHECK(got.candidates == 1);
  CHECK(got.start == 0);
  CHECK(got.end == 128);
  CHECK(got.lo == -64.0);
  CHECK(got.hi == 64.0);
}

TEST_CASE("entropy: onnxruntime smoothing, and the Taylor shortcut against direct sums") {
  // Fractional counts below the smoothing's eps1 make the shortcut fall back to direct sums
  // and ORT's float32 smoothing non-positive (ORT would assert; the candidate never wins).
  for (double scale : {1.0, 1e-3, 1e-7}) {
    hist_t h = shapes(600)[2].second;  // laplace
    for (double& v : h) v = std::floor(v) * scale;
    hist_t signed_h(1200, 0.0);
    for (std::size_t j = 0; j < 600; ++j) {
      signed_h[600 + j] = h[j];
      signed_h[599 - j] = h[j];
    }
    std::vector<double> edges(1201);
    for (std::size_t k = 0; k <= 1200; ++k) edges[k] = static_cast<double>(k);
    INFO("scale " << scale);
    const auto got = entropy_search_signed(signed_h, edges, entropy_options::onnxruntime());
    if (scale == 1.0) CHECK(got.half == ref_ort(signed_h, 128));
    CHECK(got.half >= 64);
    CHECK(got.half <= 600);
  }
  // smooth_distribution: zeros get eps, non-zeros lose eps * zeros / non-zeros.
  qlib::detail::exact_buffers buf;
  const double kl = qlib::detail::ort_kl_exact({4, 0, 0, 6}, {5, 0, 5, 0}, 1e-4, buf);
  const float e1 = static_cast<float>(-1e-4 * 2 / 2);
  CHECK(buf.pf == std::vector<float>{4.0f + e1, 1e-4f, 1e-4f, 6.0f + e1});
  CHECK(buf.qf == std::vector<float>{5.0f + e1, 1e-4f, 5.0f + e1, 1e-4f});
  CHECK(std::isfinite(kl));
  CHECK(kl > 0.0);
  CHECK(qlib::detail::ort_kl_exact({0, 0}, {1, 1}, 1e-4, buf) == inf);  // smooth returns None
}

TEST_CASE("entropy: onnxruntime's own answers on fixed histograms (onnxruntime 1.32.0)") {
  // Histograms from formulas; the expected i is what HistogramCollector.get_entropy_threshold
  // returned for them (num_quantized_bins as given).
  struct expected {
    int kind;
    std::size_t n, levels, half;
  };
  const expected table[] = {
      {0, 2048, 128, 577}, {0, 512, 128, 193}, {0, 1000, 100, 300}, {0, 128, 128, 64}, {1, 2048, 128, 514},
      {1, 512, 128, 131},  {1, 1000, 100, 250}, {1, 128, 128, 64},  {2, 2048, 128, 1024}, {2, 512, 128, 256},
      {2, 1000, 100, 500}, {3, 2048, 128, 1024}, {3, 1000, 100, 500},
  };
  for (const auto& t : table) {
    hist_t h(t.n);
    const double c = static_cast<double>(t.n) / 2, nd = static_cast<double>(t.n);
    for (std::size_t k = 0; k < t.n; ++k) {
      const double j = static_cast<double>(k);
      switch (t.kind) {
        case 0: h[k] = std::floor(1e5 * std::exp(-0.5 * std::pow((j - c) / (nd / 16), 2))) + (k % 7 == 0 ? 3 : 0); break;
        case 1: h[k] = std::floor(2e4 * std::exp(-std::fabs(j - c) / (nd / 40))) + (k % 5 == 0 ? 1 : 0); break;
        case 2: h[k] = std::floor(5e4 / (1 + std::pow((j - c) / (nd / 50), 2))); break;
        default: h[k] = (j < c ? 0.0 : std::floor(3e4 * std::exp(-(j - c) / (nd / 12)))) + (j == c ? 1e4 : 0.0); break;
      }
    }
    std::vector<double> edges(t.n + 1);
    for (std::size_t k = 0; k <= t.n; ++k) edges[k] = static_cast<double>(k);
    INFO("kind " << t.kind << ", " << t.n << " bins");
    CHECK(entropy_search_signed(h, edges, entropy_options::onnxruntime(static_cast<std::uint32_t>(t.levels))).half == t.half);
    CHECK(ref_ort(h, t.levels) == t.half);
  }
}

TEST_CASE("entropy: random histograms against every reference (hidden: run with [.stress])", "[.stress]") {
  qlib_test::rng r(99);
  for (int t = 0; t < 300; ++t) {
    const std::size_t n = 200 + static_cast<std::size_t>(r.uniform() * 700);
    hist_t h(n);
    const double decay = 0.9 + 0.1 * r.uniform(), fill = r.uniform();
    for (std::size_t j = 0; j < n; ++j)
      h[j] = r.uniform() < fill ? std::floor(1e4 * std::pow(decay, static_cast<double>(j)) * r.uniform()) : 0.0;
    if (t % 3 == 0) h[n - 1] += 5.0;
    INFO("trial " << t << ", " << n << " bins");
    CHECK(entropy_search(h, 1.0, entropy_options::tensorrt()).bin == ref_tensorrt(h, 128, n - 1, 128, expand_published));
    hist_t z = h;
    z[0] = 0.0;
    CHECK(entropy_search(h, 1.0, entropy_options::tensorrt_mlperf()).bin == ref_tensorrt(z, 128, n - 1, 127, expand_centre));
    const std::size_t L = t % 2 ? 128 : 100;
    CHECK(entropy_search(h, 1.0, entropy_options::modelopt(static_cast<std::uint32_t>(L), 64)).bin == ref_modelopt(h, 64, 1, L));
    hist_t sym(2 * n, 0.0);
    for (std::size_t j = 0; j < n; ++j) {
      sym[n + j] = h[j];
      sym[n - 1 - j] = std::floor(h[j] * r.uniform());
    }
    std::vector<double> edges(2 * n + 1);
    for (std::size_t k = 0; k <= 2 * n; ++k) edges[k] = static_cast<double>(k);
    CHECK(entropy_search_signed(sym, edges, entropy_options::onnxruntime(static_cast<std::uint32_t>(L))).half == ref_ort(sym, L));
  }
}

TEST_CASE("entropy: the search is deterministic") {
  const hist_t h = shapes(2048)[0].second;
  const auto a = entropy_search(h, 0.01, entropy_options::tensorrt());
  const auto b = entropy_search(h, 0.01, entropy_options::tensorrt());
  CHECK(a.bin == b.bin);
  CHECK(std::memcmp(&a.kl, &b.kl, sizeof(double)) == 0);
  CHECK(std::memcmp(&a.threshold, &b.threshold, sizeof(double)) == 0);
}

TEST_CASE("entropy: bad inputs are rejected and named") {
  using qlib::errc;
  const hist_t h = shapes(512)[0].second;
  const auto trt = entropy_options::tensorrt();
  auto msg = [](auto&& f) { return qlib_test::error_message(f, errc::invalid_argument); };
  CHECK(msg([&] { entropy_search(hist_t{1.0}, 1.0, trt); }).find("bins") != std::string::npos);
  CHECK(msg([&] { entropy_search(h, 0.0, trt); }).find("width") != std::string::npos);
  CHECK(msg([&] { entropy_search(h, std::nan(""), trt); }).find("width") != std::string::npos);
  hist_t bad = h;
  bad[17] = -1.0;
  CHECK(msg([&] { entropy_search(bad, 1.0, trt); }).find("bin 17") != std::string::npos);
  bad[17] = std::nan("");
  CHECK(msg([&] { entropy_search(bad, 1.0, trt); }).find("bin 17") != std::string::npos);
  CHECK(msg([&] { entropy_search(hist_t(128, 1.0), 1.0, trt); }).find("start_bin") != std::string::npos);
  auto o = trt;
  o.levels = 0;
  CHECK(msg([&] { entropy_search(h, 1.0, o); }).find("levels") != std::string::npos);
  o = trt;
  o.start_bin = 64;  // below 128 published levels
  CHECK(msg([&] { entropy_search(h, 1.0, o); }).find("start_bin") != std::string::npos);
  o = trt;
  o.stride = 0;
  CHECK(msg([&] { entropy_search(h, 1.0, o); }).find("stride") != std::string::npos);
  o = trt;
  o.smoothing_eps = 1e-4;
  CHECK(msg([&] { entropy_search(h, 1.0, o); }).find("smoothing_eps") != std::string::npos);
  o = entropy_options::modelopt();
  o.first_bins = 4096;
  CHECK(msg([&] { entropy_search(h, 1.0, o); }).find("first_bins") != std::string::npos);
  o = trt;
  o.ties = static_cast<qlib::entropy_ties>(7);
  msg([&] { entropy_search(h, 1.0, o); });  // an invalid_argument; the message is not checked
  CHECK(msg([&] { entropy_search(h, 1.0, entropy_options::onnxruntime()); }).find("entropy_search_signed") != std::string::npos);

  std::vector<double> edges(513);
  for (std::size_t k = 0; k <= 512; ++k) edges[k] = static_cast<double>(k);
  const auto ort = entropy_options::onnxruntime();
  CHECK(msg([&] { entropy_search_signed(h, edges, trt); }).find("entropy_search") != std::string::npos);
  CHECK(msg([&] { entropy_search_signed(h, std::vector<double>(512, 0.0), ort); }).find("edges") != std::string::npos);
  auto flat = edges;
  flat[300] = flat[299];
  CHECK(msg([&] { entropy_search_signed(h, flat, ort); }).find("edge 300") != std::string::npos);
  CHECK(msg([&] { entropy_search_signed(hist_t(100, 1.0), std::vector<double>(101, 0.0), ort); }).find("no candidate") !=
        std::string::npos);
  o = ort;
  o.smoothing_eps = 0.0;
  CHECK(msg([&] { entropy_search_signed(h, edges, o); }).find("smoothing_eps") != std::string::npos);
  o = ort;
  o.levels = 1;
  CHECK(msg([&] { entropy_search_signed(h, edges, o); }).find("levels") != std::string::npos);
  bad = h;
  bad[3] = inf;
  CHECK(msg([&] { entropy_search_signed(bad, edges, ort); }).find("bin 3") != std::string::npos);
}
