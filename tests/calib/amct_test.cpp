// AMCT's calibration algorithms as pure functions (calib/amct.hpp): IFMR, HFMG and ARQ
// against slow, literal references written here from shared/specs/algorithms.md section 5,
// AMCT's scale / offset rule on worked examples, numpy.arange's candidate ratios, and every
// bad input.
#include <qlib/calib/amct.hpp>
#include <qlib/core/binning.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "observer/observer_contract.hpp"  // error_message
#include "test_data.hpp"

using qlib::errc;
using qlib::qspec;
using qlib_test::error_message;

namespace {

// ---- slow references -----------------------------------------------------------------

/// numpy.arange(start, end, step) in float64, as numpy computes it.
std::vector<double> ref_arange(double start, double end, double step) {
  const auto n = static_cast<std::size_t>(std::ceil((end - start) / step));
  std::vector<double> r(n);
  const double delta = (start + step) - start;
  for (std::size_t i = 0; i < n; ++i) {
    volatile double prod = static_cast<double>(i) * delta;
    r[i] = i == 1 ? start + step : start + prod;
  }
  return r;
}

/// AMCT's int-b scale rule, written out (hicann/amct ifmr.cpp, arq.cpp, hfmg.cpp).
template <class T>
T ref_scale(T lo, T hi, bool symmetric, int bits) {
  T s;
  if (symmetric) {
    const T chosen = std::fabs(hi) > std::fabs(lo) ? hi : lo;  // lo on a tie
    const T t = std::max(std::fabs(lo), std::fabs(hi));
    s = chosen > T(0) ? t / T((1 << (bits - 1)) - 1) : t / T(1 << (bits - 1));
  } else {
    s = (std::max(hi, T(0)) - std::min(lo, T(0))) / T((1 << bits) - 1);
  }
  return s < T(FLT_EPSILON) ? T(1) : s;
}

template <class T>
struct ref_ifmr {
  std::vector<double> losses;  // sums
  std::vector<T> lo, hi;
  std::size_t best = 0;
  T min0 = T(0), max0 = T(0);
};

/// IFMR straight from the spec: sort, k-th values, then for every ratio a full pass over x
/// with clamp and rounding; the first smallest loss wins.
template <class T>
ref_ifmr<T> reference_ifmr(const std::vector<T>& x, bool symmetric, double pct_max, double pct_min, bool scale_min,
                           const std::vector<double>& ratios, int bits = 8) {
  ref_ifmr<T> r;
  std::vector<T> sorted(x);
  std::sort(sorted.begin(), sorted.end());
  const std::size_t n = x.size();
  const auto rank = [n](double pct) -> std::size_t {
    if (1.0 - pct < FLT_EPSILON) return 1;
    return std::min(std::max<std::size_t>(n - static_cast<std::size_t>(pct * static_cast<double>(n)), 1), n);
  };
  r.min0 = std::min(T(0), sorted[rank(pct_min) - 1]);
  r.max0 = std::max(T(0), sorted[n - rank(pct_max)]);
  double best = std::numeric_limits<double>::infinity();
  for (std::size_t k = 0; k < ratios.size(); ++k) {
    const T hi = static_cast<T>(ratios[k] * static_cast<double>(r.max0));
    const T lo = (symmetric || scale_min) ? static_cast<T>(ratios[k] * static_cast<double>(r.min0)) : r.min0;
    const T s = ref_scale(lo, hi, symmetric, bits);
    const T t = std::max(std::fabs(lo), std::fabs(hi));
    const T clo = symmetric ? -t : lo, chi = symmetric ? t : hi;
    double sum = 0.0;
    for (T v : x) {
      const T c = std::min(std::max(v, clo), chi);
      const T q = std::nearbyint(c / s) * s;  // round half to even
      const double e = static_cast<double>(q) - static_cast<double>(v);
      sum += e * e;
    }
    r.losses.push_back(sum);
    r.lo.push_back(lo);
    r.hi.push_back(hi);
    if (sum < best) {
      best = sum;
      r.best = k;
    }
  }
  return r;
}

/// Requires the search's pick to be the reference's, or (cells' rounding on a near-exact
/// tie) a candidate whose reference loss equals the best within 1e-12.
void require_same_pick(std::size_t got, std::size_t want, const std::vector<double>& ref_losses) {
  if (got != want) {
    INFO("picked " << got << ", reference " << want);
    REQUIRE(ref_losses[got] <= ref_losses[want] * (1.0 + 1e-12));
  }
}

/// HFMG's candidates with the literal cursor loop of the spec (integer-valued counts).
std::vector<qlib::hfmg_candidate> reference_candidates(const std::vector<double>& c) {
  const std::size_t n = c.size();
  double total = 0.0;
  for (double v : c) total += v;
  const double step = std::max(std::ceil(std::round(total) / 1e5), 1.0);
  std::size_t left = 0, right = n - 1;
  std::vector<qlib::hfmg_candidate> out;
  while (right - left > (n + 3) / 4) {
    std::size_t l = left, r = right;
    double ls = 0.0, rs = 0.0;
    while (l < r && ls < step) {
      ls += c[l];
      l += 1;
    }
    while (l < r && rs < step) {
      rs += c[r];
      r -= 1;
    }
    if (right - r >= l - left) {
      right = r;
    } else {
      left = l;
    }
    out.push_back({static_cast<std::uint32_t>(left), static_cast<std::uint32_t>(right)});
  }
  return out;
}

/// HFMG's loss of (L, R) from the spec: every source bin mapped onto 2^b destination bins,
/// density * (end^3 - begin^3) / 3 per piece, in units of the source bin width.
double reference_hfmg_loss(const std::vector<double>& c, std::size_t L, std::size_t R, int bits) {
  const double dst = std::ldexp(1.0, bits);
  const double dw = static_cast<double>(R - L + 1) / dst;
  double loss = 0.0;
  for (std::size_t i = 0; i < c.size(); ++i) {
    const double begin = static_cast<double>(i) - static_cast<double>(L), end = begin + 1.0;
    const double b = std::min(std::max(std::floor(begin / dw), 0.0), dst - 1);
    const double e = std::min(std::max(std::floor(end / dw), 0.0), dst - 1);
    const auto piece = [&](double from, double to) { return c[i] * (to * to * to - from * from * from) / 3.0; };
    const double cb = (b + 0.5) * dw, ce = (e + 0.5) * dw;
    if (b == e) {
      loss += piece(begin - cb, end - cb);
    } else {
      loss += piece(begin - cb, dw / 2);
      for (double k = b + 1; k < e; k += 1) loss += piece(-dw / 2, dw / 2);
      loss += piece(-dw / 2, end - ce);
    }
  }
  return loss;
}

/// A range histogram of x (one batch), the bin rule of observer/histogram.hpp.
std::vector<double> histogram_of(const std::vector<float>& x, std::size_t bins, double* lo, double* hi) {
  const auto mm = std::minmax_element(x.begin(), x.end());
  *lo = *mm.first;
  *hi = *mm.second;
  std::vector<double> c(bins, 0.0);
  if (*lo == *hi) {
    c[bins / 2] = static_cast<double>(x.size());
    return c;
  }
  const float inv = static_cast<float>(static_cast<double>(bins) / (*hi - *lo));
  for (float v : x) c[qlib::range_bin_index(v, static_cast<float>(*lo), inv, static_cast<std::uint32_t>(bins))] += 1.0;
  return c;
}

}  // namespace

// ---- AMCT's scale / offset rule ---------------------------------------------------------

TEST_CASE("amct rule: symmetric scale divides by 127 or 128 as AMCT's kernels do") {
  const qspec sym = qspec::amct_weight(8);
  CHECK(qlib::qparams_from_range(-0.5f, 1.0f, sym).scale == 1.0f / 127.0f);  // max dominates
  CHECK(qlib::qparams_from_range(-1.0f, 0.5f, sym).scale == 1.0f / 128.0f);  // min dominates
  CHECK(qlib::qparams_from_range(-1.0f, 1.0f, sym).scale == 1.0f / 128.0f);  // tie: AMCT picks min
  CHECK(qlib::qparams_from_range(-2.0f, -2.0f, sym).scale == 2.0f / 128.0f);  // constant negative
  CHECK(qlib::qparams_from_range(2.0f, 2.0f, sym).scale == 2.0f / 127.0f);    // constant positive
  CHECK(qlib::qparams_from_range(0.0f, 0.0f, sym).scale == 1.0f);             // all zero: s = 1
  CHECK(qlib::qparams_from_range(-1e-6f, 1e-6f, sym).scale == 1.0f);          // below FLT_EPSILON
  CHECK(qlib::qparams_from_range(-1.0f, 1.0f, qspec::amct_weight(4)).scale == 1.0f / 8.0f);
  CHECK(qlib::qparams_from_range(-0.5f, 1.0f, qspec::amct_weight(4)).scale == 1.0f / 7.0f);
  CHECK(qlib::qparams_from_range(-0.5f, 1.0f, sym).zero_point == 0);
}

TEST_CASE("amct rule: affine scale and offset, offset rounded half away from zero") {
  const qspec aff = qspec::amct_activation(8, true);
  auto p = qlib::qparams_from_range(-1.0f, 3.0f, aff);
  CHECK(p.scale == 4.0f / 255.0f);
  CHECK(p.zero_point == -128 - static_cast<int>(std::round(-1.0f / (4.0f / 255.0f))));  // -64
  CHECK(p.zero_point == -64);
  // lo / s = -0.5 exactly: AMCT's -round(-0.5) - 128 = -127 (half-to-even would give -128).
  p = qlib::qparams_from_range(-1.0f, 509.0f, aff);
  CHECK(p.scale == 2.0f);
  CHECK(p.zero_point == -127);
  // Ranges are widened to contain 0.
  p = qlib::qparams_from_range(1.0f, 3.0f, aff);
  CHECK(p.scale == 3.0f / 255.0f);
  CHECK(p.zero_point == -128);
  p = qlib::qparams_from_range(-3.0f, -1.0f, aff);
  CHECK(p.scale == 3.0f / 255.0f);
  CHECK(p.zero_point == 127);
  // Degenerate: s = 1, offset -2^(b-1).
  p = qlib::qparams_from_range(0.0f, 0.0f, aff);
  CHECK(p.scale == 1.0f);
  CHECK(p.zero_point == -128);
  p = qlib::qparams_from_range(-1e-6f, 0.0f, qspec::amct_activation(4, true));
  CHECK(p.scale == 1.0f);
  CHECK(p.zero_point == -8);
}

// ---- IFMR ---------------------------------------------------------------------------------

TEST_CASE("ifmr: ratios follow numpy.arange in float64, count and values") {
  const std::vector<double> r = qlib::ifmr_ratios(qlib::ifmr_params{});
  REQUIRE(r.size() == 61);  // numpy.arange(0.7, 1.3, 0.01): ceil(60.00000000000001)
  CHECK(r[0] == 0x1.6666666666666p-1);
  CHECK(r[1] == 0x1.6b851eb851eb8p-1);
  CHECK(r[2] == 0x1.70a3d70a3d70ap-1);
  CHECK(r[30] == 0x1.0000000000001p+0);
  CHECK(r[59] == 0x1.4a3d70a3d70a6p+0);
  CHECK(r[60] == 0x1.4cccccccccccfp+0);  // 1.3000000000000005
  CHECK(r == ref_arange(0.7, 1.3, 0.01));
  const auto with = [](double a, double b, double s) {
    qlib::ifmr_params p;
    p.search_start = a;
    p.search_end = b;
    p.search_step = s;
    return qlib::ifmr_ratios(p);
  };
  CHECK(with(0.5, 1.5, 0.1).size() == 10);
  CHECK(with(0.5, 1.5, 0.1).back() == 0x1.6666666666666p+0);
  CHECK(with(0.7, 1.3, 0.02).size() == 31);
  CHECK(with(0.9, 1.1, 0.05).size() == 5);
  CHECK(with(0.9, 1.1, 0.05) == ref_arange(0.9, 1.1, 0.05));
  CHECK(with(1.0, 1.05, 0.05) == std::vector<double>{1.0, 1.05});  // (1.05 - 1) / 0.05 = 1.0000000000000009
  CHECK(with(0.5, 0.75, 0.25) == std::vector<double>{0.5});
}

TEST_CASE("ifmr: the amct_kernel grid is AMCT's 60 float ratios") {
  qlib::ifmr_params p;
  p.grid = qlib::ifmr_ratio_grid::amct_kernel;
  const std::vector<double> r = qlib::ifmr_ratios(p);
  REQUIRE(r.size() == 60);  // unsigned((1.3f - 0.7f) / 0.01f + 1) = unsigned(60.999996f)
  for (std::size_t i = 0; i < r.size(); ++i) {
    volatile float prod = static_cast<float>(i) * 0.01f;
    CHECK(r[i] == static_cast<double>(0.7f + prod));
  }
  CHECK(r[0] == 0x1.666666p-1);
  CHECK(r[59] == 0x1.4a3d7p+0);
}

TEST_CASE("ifmr: percentile ranks k = N - int(pct * N), 1 when 1 - pct < FLT_EPSILON") {
  CHECK(qlib::ifmr_rank(1000000, 0.999999) == 1);
  CHECK(qlib::ifmr_rank(2000000, 0.999999) == 2);
  CHECK(qlib::ifmr_rank(1000, 0.999999) == 1);
  CHECK(qlib::ifmr_rank(8192, 0.999) == 9);
  CHECK(qlib::ifmr_rank(8191, 0.99) == 82);
  CHECK(qlib::ifmr_rank(3, 0.6) == 2);
  CHECK(qlib::ifmr_rank(10, 1.0) == 1);
  CHECK(qlib::ifmr_rank(100000000, 1.0 - 1e-7) == 1);   // 1 - pct < FLT_EPSILON
  CHECK(qlib::ifmr_rank(100000000, 1.0 - 2e-7) == 20);  // not: N - int(pct N)
  CHECK(qlib::ifmr_rank(1, 0.51) == 1);
}

TEST_CASE("ifmr: exact search equals the literal reference on every distribution") {
  const std::vector<double> ratios = ref_arange(0.7, 1.3, 0.01);
  for (auto d : qlib_test::all_dists()) {
    const std::vector<float> x = qlib_test::sample<float>(d, 30000, 11);
    for (bool symmetric : {false, true}) {
      for (auto method : {qlib::ifmr_loss_method::cells, qlib::ifmr_loss_method::elementwise}) {
        DYNAMIC_SECTION(qlib_test::dist_name(d) << (symmetric ? " symmetric" : " affine")
                                                << (method == qlib::ifmr_loss_method::cells ? " cells" : " elementwise")) {
          const qspec spec = qspec::amct_activation(8, !symmetric);
          const auto ref = reference_ifmr(x, symmetric, 0.999999, 0.999999, false, ratios);
          const auto got = qlib::ifmr_search(x.data(), x.size(), qlib::ifmr_params{}, spec, method);
          // The cells' rounding is relative to the squares of the values, not to the loss.
          double mean_sq = 0.0;
          for (float v : x) mean_sq += static_cast<double>(v) * v / static_cast<double>(x.size());
          CHECK(got.init_min == ref.min0);
          CHECK(got.init_max == ref.max0);
          REQUIRE(got.candidates.size() == ratios.size());
          for (std::size_t k = 0; k < ratios.size(); ++k) {
            CHECK(got.candidates[k].lo == ref.lo[k]);
            CHECK(got.candidates[k].hi == ref.hi[k]);
            const double want = ref.losses[k] / static_cast<double>(x.size());
            if (method == qlib::ifmr_loss_method::elementwise) {
              CHECK(got.losses[k] == want);
            } else {
              CHECK(got.losses[k] == Approx(want).epsilon(1e-9).margin(1e-13 * mean_sq));
            }
          }
          require_same_pick(got.best, ref.best, ref.losses);
          CHECK(got.clip_min() == ref.lo[got.best]);
          CHECK(got.clip_max() == ref.hi[got.best]);
        }
      }
    }
  }
}

TEST_CASE("ifmr: automatic method, other percentiles (radix select), scale_min, 4 bits, double") {
  const std::vector<double> ratios = ref_arange(0.7, 1.3, 0.01);
  for (auto d : {qlib_test::dist::laplace, qlib_test::dist::relu, qlib_test::dist::outliers}) {
    const std::vector<float> x = qlib_test::sample<float>(d, 20011, 5);
    for (double pct : {0.999999, 0.999, 0.9, 0.51}) {
      for (bool scale_min : {false, true}) {
        for (bool symmetric : {false, true}) {
          qlib::ifmr_params p;
          p.max_percentile = pct;
          p.min_percentile = pct == 0.9 ? 0.99 : pct;
          p.scale_min = scale_min;
          const auto ref = reference_ifmr(x, symmetric, p.max_percentile, p.min_percentile, scale_min, ratios);
          const auto got = qlib::ifmr_search(x.data(), x.size(), p, qspec::amct_activation(8, !symmetric));
          CHECK(got.init_min == ref.min0);
          CHECK(got.init_max == ref.max0);
          require_same_pick(got.best, ref.best, ref.losses);
        }
      }
    }
  }
  const std::vector<float> x = qlib_test::sample<float>(qlib_test::dist::gaussian, 20000, 6);
  for (bool symmetric : {false, true}) {
    const auto ref = reference_ifmr(x, symmetric, 0.999999, 0.999999, false, ratios, 4);
    const auto got = qlib::ifmr_search(x.data(), x.size(), qlib::ifmr_params{}, qspec::amct_activation(4, !symmetric));
    require_same_pick(got.best, ref.best, ref.losses);
  }
  const std::vector<double> xd = qlib_test::sample<double>(qlib_test::dist::bimodal, 20000, 7);
  for (bool symmetric : {false, true}) {
    const auto ref = reference_ifmr(xd, symmetric, 0.999, 0.999, false, ratios);
    qlib::ifmr_params p;
    p.max_percentile = p.min_percentile = 0.999;
    const auto got = qlib::ifmr_search(xd.data(), xd.size(), p, qspec::amct_activation(8, !symmetric));
    CHECK(got.init_min == ref.min0);
    CHECK(got.init_max == ref.max0);
    require_same_pick(got.best, ref.best, ref.losses);
  }
}

TEST_CASE("ifmr: values far from zero relative to their spread keep the cells exact") {
  std::vector<float> x = qlib_test::sample<float>(qlib_test::dist::laplace, 40000, 8);
  for (float& v : x) v += 100.0f;
  const std::vector<double> ratios = ref_arange(0.7, 1.3, 0.01);
  for (bool symmetric : {false, true}) {
    const auto ref = reference_ifmr(x, symmetric, 0.999999, 0.999999, false, ratios);
    const auto got = qlib::ifmr_search(x.data(), x.size(), qlib::ifmr_params{}, qspec::amct_activation(8, !symmetric),
                                       qlib::ifmr_loss_method::cells);
    require_same_pick(got.best, ref.best, ref.losses);
  }
}

TEST_CASE("ifmr: the amct_kernel grid searches AMCT's float ratios") {
  const std::vector<float> x = qlib_test::sample<float>(qlib_test::dist::gaussian, 20000, 9);
  qlib::ifmr_params p;
  p.grid = qlib::ifmr_ratio_grid::amct_kernel;
  const auto ratios = qlib::ifmr_ratios(p);
  const auto ref = reference_ifmr(x, false, 0.999999, 0.999999, false, ratios);
  const auto got = qlib::ifmr_search(x.data(), x.size(), p, qspec::amct_activation());
  REQUIRE(got.candidates.size() == 60);
  // AMCT's candidate max is (0.7f + i * 0.01f) * max0 in float: the same value.
  for (std::size_t k = 0; k < 60; ++k) {
    volatile float prod = static_cast<float>(k) * 0.01f;
    CHECK(got.candidates[k].hi == (0.7f + prod) * ref.max0);
  }
  require_same_pick(got.best, ref.best, ref.losses);
}

TEST_CASE("ifmr: histogram search equals a literal reference over bin centres") {
  const std::vector<double> ratios = ref_arange(0.7, 1.3, 0.01);
  for (auto d : {qlib_test::dist::gaussian, qlib_test::dist::relu, qlib_test::dist::student_t2,
                 qlib_test::dist::constant, qlib_test::dist::zeros}) {
    const std::vector<float> x = qlib_test::sample<float>(d, 50000, 3);
    for (std::size_t bins : {std::size_t{1024}, std::size_t{8192}}) {
      double lo = 0, hi = 0;
      const std::vector<double> c = histogram_of(x, bins, &lo, &hi);
      for (double pct : {0.999999, 0.999}) {
        for (bool symmetric : {false, true}) {
          // Reference: the (k)-th smallest / largest where the interpolated CDF passes k - 1.
          const double n = static_cast<double>(x.size());
          const double k = 1.0 - pct < FLT_EPSILON ? 1.0 : n - std::floor(pct * n);
          const double w = (hi - lo) / static_cast<double>(bins);
          const auto edge = [&](std::size_t j) { return j == bins ? hi : lo + static_cast<double>(j) * w; };
          double small = hi, large = lo, below = 0, above = 0;
          for (std::size_t j = 0; j < bins; ++j)
            if (below + c[j] > k - 1) {
              small = edge(j) + (k - 1 - below) / c[j] * (edge(j + 1) - edge(j));
              break;
            } else {
              below += c[j];
            }
          for (std::size_t j = bins; j-- > 0;)
            if (above + c[j] > k - 1) {
              large = edge(j + 1) - (k - 1 - above) / c[j] * (edge(j + 1) - edge(j));
              break;
            } else {
              above += c[j];
            }
          const float min0 = std::min(0.0f, static_cast<float>(small)), max0 = std::max(0.0f, static_cast<float>(large));
          std::vector<double> losses;
          for (double r : ratios) {
            const float chi = static_cast<float>(r * max0);
            const float clo = symmetric ? static_cast<float>(r * min0) : min0;
            const float s = ref_scale(clo, chi, symmetric, 8);
            const double t = std::max(std::fabs(clo), std::fabs(chi));
            const double a = symmetric ? -t : clo, b = symmetric ? t : chi;
            double sum = 0;
            for (std::size_t j = 0; j < bins; ++j) {
              const double centre = (edge(j) + edge(j + 1)) / 2;
              const double q = std::nearbyint(std::min(std::max(centre, a), b) / s) * s;
              sum += c[j] * ((q - centre) * (q - centre));
            }
            losses.push_back(sum);
          }
          const auto ref_best = static_cast<std::size_t>(std::min_element(losses.begin(), losses.end()) - losses.begin());
          qlib::ifmr_params p;
          p.max_percentile = p.min_percentile = pct;
          for (auto method : {qlib::ifmr_loss_method::cells, qlib::ifmr_loss_method::elementwise}) {
            INFO(qlib_test::dist_name(d) << " bins " << bins << " pct " << pct << " symmetric " << symmetric);
            const auto got = qlib::ifmr_search_histogram<float>(c.data(), bins, lo, hi, x.size(), p,
                                                                qspec::amct_activation(8, !symmetric), method);
            CHECK(got.init_min == Approx(min0).margin(1e-6));
            CHECK(got.init_max == Approx(max0).margin(1e-6));
            require_same_pick(got.best, ref_best, losses);
          }
        }
      }
    }
  }
}

TEST_CASE("ifmr: degenerate data gives finite positive scales") {
  for (auto d : {qlib_test::dist::constant, qlib_test::dist::zeros, qlib_test::dist::tiny}) {
    const std::vector<float> x = qlib_test::sample<float>(d, 5000, 1);
    for (bool symmetric : {false, true}) {
      const qspec spec = qspec::amct_activation(8, !symmetric);
      const auto r = qlib::ifmr_search(x.data(), x.size(), qlib::ifmr_params{}, spec);
      const auto p = qlib::qparams_from_range(r.clip_min(), r.clip_max(), spec);
      CHECK(std::isfinite(p.scale));
      CHECK(p.scale > 0.0f);
    }
  }
  const float one = -3.5f;
  const auto r = qlib::ifmr_search(&one, 1, qlib::ifmr_params{}, qspec::amct_activation());
  CHECK(r.init_min == -3.5f);
  CHECK(r.init_max == 0.0f);
  CHECK(r.clip_min() == -3.5f);
}

TEST_CASE("ifmr: bad inputs fail with a message naming the culprit") {
  const auto bad = [](auto edit, const char* needle) {
    qlib::ifmr_params p;
    edit(p);
    const std::string msg = error_message([&] { (void)qlib::ifmr_ratios(p); }, errc::invalid_argument);
    CHECK(msg.find(needle) != std::string::npos);
  };
  bad([](qlib::ifmr_params& p) { p.max_percentile = 0.5; }, "max_percentile");
  bad([](qlib::ifmr_params& p) { p.max_percentile = 1.0001; }, "max_percentile");
  bad([](qlib::ifmr_params& p) { p.min_percentile = std::nan(""); }, "min_percentile");
  bad([](qlib::ifmr_params& p) { p.min_percentile = 0.0; }, "min_percentile");
  bad([](qlib::ifmr_params& p) { p.search_end = p.search_start; }, "search_range");
  bad([](qlib::ifmr_params& p) { p.search_end = 0.5; }, "search_range");
  bad([](qlib::ifmr_params& p) { p.search_start = 0.0; }, "search_range");
  bad([](qlib::ifmr_params& p) { p.search_end = std::numeric_limits<double>::infinity(); }, "search_range");
  bad([](qlib::ifmr_params& p) { p.search_step = 0.0; }, "search_step");
  bad([](qlib::ifmr_params& p) { p.search_step = -0.01; }, "search_step");
  bad([](qlib::ifmr_params& p) { p.search_step = 0.61; }, "search_step");
  bad([](qlib::ifmr_params& p) { p.search_step = 1e-9; }, "ratios");
  std::vector<float> x = qlib_test::sample<float>(qlib_test::dist::gaussian, 1000, 2);
  error_message([&] { (void)qlib::ifmr_search(x.data(), 0, qlib::ifmr_params{}, qspec::amct_activation()); },
                errc::empty_input);
  x[517] = std::numeric_limits<float>::quiet_NaN();
  CHECK(error_message([&] { (void)qlib::ifmr_search(x.data(), x.size(), qlib::ifmr_params{}, qspec::amct_activation()); },
                      errc::non_finite)
            .find("517") != std::string::npos);
  qlib::ifmr_params p99;
  p99.max_percentile = 0.9;  // the radix-select path finds it too
  x[517] = -std::numeric_limits<float>::infinity();
  CHECK(error_message([&] { (void)qlib::ifmr_search(x.data(), x.size(), p99, qspec::amct_activation()); },
                      errc::non_finite)
            .find("517") != std::string::npos);
  x[517] = 0.0f;
  qspec unsigned_sym = qspec::amct_weight();
  unsigned_sym.is_signed = false;
  error_message([&] { (void)qlib::ifmr_search(x.data(), x.size(), qlib::ifmr_params{}, unsigned_sym); },
                errc::invalid_argument);
  qspec bits1 = qspec::amct_activation();
  bits1.bits = 1;
  error_message([&] { (void)qlib::ifmr_search(x.data(), x.size(), qlib::ifmr_params{}, bits1); },
                errc::invalid_argument);
  std::vector<double> c(64, 1.0);
  c[9] = -1.0;
  CHECK(error_message([&] { (void)qlib::ifmr_search_histogram<float>(c.data(), c.size(), 0.0, 1.0, 64, qlib::ifmr_params{},
                                                                     qspec::amct_activation()); },
                      errc::invalid_argument)
            .find("bin 9") != std::string::npos);
  c[9] = 1.0;
  error_message([&] { (void)qlib::ifmr_search_histogram<float>(c.data(), c.size(), 1.0, 0.0, 64, qlib::ifmr_params{},
                                                               qspec::amct_activation()); },
                errc::invalid_argument);
  error_message([&] { (void)qlib::ifmr_search_histogram<float>(c.data(), c.size(), 0.0, 1.0, 0, qlib::ifmr_params{},
                                                               qspec::amct_activation()); },
                errc::empty_input);
  error_message([&] { (void)qlib::ifmr_candidates(0.5f, 1.0f, qlib::ifmr_params{}, qspec::amct_activation()); },
                errc::invalid_argument);
}

// ---- HFMG ---------------------------------------------------------------------------------

TEST_CASE("hfmg: candidates follow the literal cursor loop; ties trim the right") {
  for (auto d : qlib_test::spread_dists()) {
    const std::vector<float> x = qlib_test::sample<float>(d, 200000, 4);
    for (std::size_t bins : {std::size_t{1024}, std::size_t{2048}, std::size_t{4096}, std::size_t{8192}}) {
      double lo, hi;
      const std::vector<double> c = histogram_of(x, bins, &lo, &hi);
      INFO(qlib_test::dist_name(d) << " bins " << bins);
      CHECK(qlib::hfmg_candidates(c.data(), bins) == reference_candidates(c));
    }
  }
  // Uniform counts, step 1: both cursors skip one bin, a tie: the right side goes first.
  const std::vector<double> flat(16, 1.0);
  const auto cands = qlib::hfmg_candidates(flat.data(), flat.size());
  REQUIRE(cands.size() >= 2);
  CHECK(cands[0] == qlib::hfmg_candidate{0, 14});
  CHECK(cands[1] == qlib::hfmg_candidate{0, 13});
  // Empty left bins: the left cursor skips more bins, so the left side is trimmed.
  std::vector<double> tail(16, 0.0);
  for (std::size_t i = 7; i < 16; ++i) tail[i] = 1.0;
  const auto t = qlib::hfmg_candidates(tail.data(), tail.size());
  REQUIRE(t.size() >= 2);
  CHECK(t[0] == qlib::hfmg_candidate{8, 15});
  CHECK(t[1] == qlib::hfmg_candidate{8, 14});
  CHECK(t == reference_candidates(tail));
}

TEST_CASE("hfmg: losses equal the per-bin reference; the search takes the first argmin") {
  for (auto d : qlib_test::all_dists()) {
    const std::vector<float> x = qlib_test::sample<float>(d, 60000, 5);
    for (std::size_t bins : {std::size_t{1024}, std::size_t{2048}}) {
      double lo, hi;
      const std::vector<double> c = histogram_of(x, bins, &lo, &hi);
      for (int bits : {8, 4, 11}) {
        // 11 bits: 2^b > bins takes the per-bin form, 2^b < bins the prefix sums with
        // destination bins narrower than a source bin (three distributions suffice).
        if (bits == 11 && d != qlib_test::dist::relu && d != qlib_test::dist::outliers && d != qlib_test::dist::tiny)
          continue;
        INFO(qlib_test::dist_name(d) << " bins " << bins << " bits " << bits);
        const auto r = qlib::hfmg_search<float>(c.data(), bins, lo, hi, bits);
        if (lo == hi) {
          CHECK(r.candidates.empty());
          CHECK(r.clip_min == static_cast<float>(lo));
          CHECK(r.clip_max == static_cast<float>(lo));
          continue;
        }
        REQUIRE(r.candidates == reference_candidates(c));
        std::vector<double> ref(r.candidates.size());
        for (std::size_t k = 0; k < ref.size(); ++k) {
          ref[k] = reference_hfmg_loss(c, r.candidates[k].left, r.candidates[k].right, bits);
          // Prefix moments lose digits to cancellation as destination bins narrow.
          CHECK(r.losses[k] == Approx(ref[k]).epsilon(bits <= 8 ? 1e-9 : 1e-7));
          if (k % 7 == 0)
            CHECK(qlib::hfmg_loss_per_bin(c.data(), bins, r.candidates[k].left, r.candidates[k].right, 1u << bits) ==
                  Approx(ref[k]).epsilon(1e-12));
        }
        const auto ref_best = static_cast<std::size_t>(std::min_element(ref.begin(), ref.end()) - ref.begin());
        require_same_pick(r.best, ref_best, ref);
        const double w = (hi - lo) / static_cast<double>(bins);
        CHECK(r.clip_min == static_cast<float>(lo + r.candidates[r.best].left * w));
        CHECK(r.clip_max == static_cast<float>(lo + (r.candidates[r.best].right + 1.0) * w));
      }
    }
  }
}

TEST_CASE("hfmg: bad inputs fail") {
  std::vector<double> c(1024, 1.0);
  error_message([&] { (void)qlib::hfmg_search<float>(c.data(), c.size(), 0.0, 1.0, 1); }, errc::invalid_argument);
  error_message([&] { (void)qlib::hfmg_search<float>(c.data(), c.size(), 0.0, 1.0, 17); }, errc::invalid_argument);
  error_message([&] { (void)qlib::hfmg_search<float>(c.data(), c.size(), 1.0, 0.0, 8); }, errc::invalid_argument);
  error_message([&] { (void)qlib::hfmg_search<float>(c.data(), c.size(), 0.0, std::nan(""), 8); },
                errc::invalid_argument);
  error_message([&] { (void)qlib::hfmg_search<float>(c.data(), 0, 0.0, 1.0, 8); }, errc::empty_input);
  c[77] = std::numeric_limits<double>::infinity();
  CHECK(error_message([&] { (void)qlib::hfmg_candidates(c.data(), c.size()); }, errc::invalid_argument).find("bin 77") !=
        std::string::npos);
  std::fill(c.begin(), c.end(), 0.0);
  error_message([&] { (void)qlib::hfmg_search<float>(c.data(), c.size(), 0.0, 1.0, 8); }, errc::empty_input);
  std::fill(c.begin(), c.end(), 1.0);
  error_message([&] { (void)qlib::hfmg_losses(c.data(), c.size(), {{5, 2000}}, 8); }, errc::invalid_argument);
  error_message([&] { (void)qlib::hfmg_losses(c.data(), c.size(), {{9, 5}}, 8); }, errc::invalid_argument);
}

// ---- ARQ ----------------------------------------------------------------------------------

TEST_CASE("arq: per-channel ranges and AMCT scales against a reference") {
  const std::size_t co = 6, ci = 3, kh = 3, kw = 3;
  std::vector<float> w = qlib_test::sample<float>(qlib_test::dist::laplace, co * ci * kh * kw, 3);
  for (std::size_t i = 0; i < ci * kh * kw; ++i) w[3 * ci * kh * kw + i] = 0.0f;  // an all-zero channel
  for (std::size_t i = 0; i < ci * kh * kw; ++i) w[4 * ci * kh * kw + i] = -0.25f;
  for (int bits : {4, 6, 7, 8}) {
    const qlib::shape_t shape{co, ci, kh, kw};
    std::vector<float> lo, hi;
    qlib::channel_minmax(w.data(), qlib::layout_along(shape, 0), lo, hi);
    const auto p = qlib::arq_params(lo, hi, qspec::amct_weight(bits), 0);
    REQUIRE(p.channels() == co);
    for (std::size_t c = 0; c < co; ++c) {
      float a = w[c * ci * kh * kw], b = a;
      for (std::size_t i = 0; i < ci * kh * kw; ++i) {
        a = std::min(a, w[c * ci * kh * kw + i]);
        b = std::max(b, w[c * ci * kh * kw + i]);
      }
      CHECK(lo[c] == a);
      CHECK(hi[c] == b);
      CHECK(p.scale[c] == ref_scale(a, b, true, bits));
      CHECK(p.zero_point[c] == 0);
    }
    CHECK(p.scale[3] == 1.0f);
    CHECK(p.scale[4] == 0.25f / static_cast<float>(1 << (bits - 1)));
  }
}

TEST_CASE("arq: bits outside {4, 6, 7, 8} and affine grids are rejected") {
  for (int bits : {2, 3, 5, 9, 16}) {
    const std::string msg =
        error_message([&] { (void)qlib::arq_params<float>({-1.0f}, {1.0f}, qspec::amct_weight(bits), 0); },
                      errc::invalid_argument);
    CHECK(msg.find("bits = " + std::to_string(bits)) != std::string::npos);
  }
  error_message([&] { (void)qlib::arq_params<float>({-1.0f}, {1.0f}, qspec::amct_activation(8, true), 0); },
                errc::invalid_argument);
  error_message([&] { (void)qlib::arq_params<float>({-1.0f, 0.0f}, {1.0f}, qspec::amct_weight(8), 0); },
                errc::invalid_argument);
}
