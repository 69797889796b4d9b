// IFMR (Input Feature Map Reconstruction), Ascend AMCT's default activation calibration:
// a percentile start, then a grid search of the clip range that minimises the mean squared
// quantization error. Pure functions of the observed values (exact mode) or of a range
// histogram (histogram mode); observer/ifmr.hpp streams batches into them.
//
// Algorithm (shared/specs/algorithms.md section 5; hicann/amct
// amct_pytorch/.../quantize_lib/src/ifmr.cpp), N values:
// 1. k = N - int(pct * N) in double (k = 1 when 1 - pct < FLT_EPSILON), clamped to [1, N];
//    max0 = max(0, k-th largest) with pct = max_percentile, min0 = min(0, k-th smallest)
//    with pct = min_percentile.
// 2. For each ratio r (ifmr_ratios): the candidate range is [min0, r * max0] (affine; with
//    scale_min, the documentation's variant, [r * min0, r * max0]); symmetric grids scale
//    both sides and clip to [-t, t], t = r * max(|min0|, |max0|). The scale is
//    qparams_from_range(lo, hi, spec) (AMCT's rule with qconvention::amct), the loss
//    mean((round(clamp(x, clip_lo, clip_hi) / s) * s - x)^2).
// 3. The first candidate with the smallest loss wins (AMCT: std::min_element).
//
// Arithmetic, stated once: the candidate bounds are T(r * double(bound)); the quantized
// value of x is q = round_half_even(clamp(x, lo, hi) / s) * s in the points' type P (T for
// raw values, double for histogram bin centres); the error (double(q) - double(x))^2 is
// summed in double. AMCT's kernel rounds half away from zero and sums in float: on a tie
// both roundings are s/2 away, and float sums only reorder near-equal candidates.
//
// Speed: the element-wise loss costs O(N) per candidate (AMCT: 61 passes over the data).
// qlib computes all candidates at once. Each candidate's grid cell j (the values that
// round to level j) starts at the smallest x with round_half_even(x / s) >= j, found by
// stepping ulps from (j - 1/2) s, so cells match the element-wise rounding exactly. One
// pass over the data sums the count, sum(y) and sum(y^2) (y = x - centre) between
// consecutive cell starts of all candidates merged (about 61 * 257 starts, found per
// value through a lookup table; each interval's sums are taken about its own lower start
// and moved to a common centre once); each candidate's loss is then
// sum_j n_j Q_j^2 - 2 Q_j S1_j + S2_j over its cells (Q_j = q_j - centre), from
// double-double prefix sums, O(levels) per candidate. The candidates whose loss lies
// within 1e-9 relative (plus a rounding bound) of the minimum are re-scored element-wise,
// so the pick equals the element-wise search's. The percentiles come without a sort: for
// k <= 64 (the default percentile gives k of about N / 10^6 + 1) one pass keeps the k
// extremes, else an exact O(N) radix select on order-preserving integer keys
// (detail/select.hpp). Measured (bench/amct_bench.cpp, 10^6 Gaussian values, one thread,
// CPU time): 5.6 ms, against 178 ms for AMCT's structure (61 full passes).
//
// Exact mode vs histogram mode (observer/ifmr.hpp keeps a range_histogram of num_bins
// bins instead of the values; percentiles from the linearly interpolated CDF, the loss
// over bin centres weighted by the counts). Measured here (qlib, 2^20 values of
// tests/test_data.hpp in 8 batches, 8192 bins, int8, AMCT rule; largest relative
// difference of the scale, histogram vs exact mode, over seeds 1 to 3):
//
//     distribution   affine    symmetric
//     gaussian       3.1e-4    2.5e-4
//     relu           8.8e-5    8.8e-5
//     laplace        1.3e-4    8.4e-5
//     student_t2     6.2e-3    5.1e-2
//     bimodal        8.6e-3    1.9e-4
//     outliers       3.1e-4    3.1e-4
//     uniform        1.3e-6    1.7e-6
//
// Mostly a few 1e-4: the ratio moves by a step or keeps its place. Heavy tails (Student-t,
// 2 degrees of freedom: ranges of hundreds of units) stretch the histogram so that the
// bulk sits in a few bins and the loss from bin centres picks another ratio (5%); the
// bimodal affine case is a near tie between two ratios. Prefer the exact mode where the
// memory allows. With less data and fewer bins the gap grows (tests/observer/ifmr_test.cpp:
// a few percent at 11000 values and 2048 bins, ReLU's zeros sitting at bin 0's centre).
#pragma once

#include "../detail/algorithm.hpp"
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../core/qparams.hpp"
#include "../detail/select.hpp"

QLIB_NAMESPACE_BEGIN

/// How the candidate ratios are laid out.
enum class ifmr_ratio_grid : std::uint8_t {
  /// numpy.arange(start, end, step) in float64 (the specification): ceil((end - start) /
  /// step) values start + i * ((start + step) - start); 61 values for the defaults (the
  /// last 1.3000000000000005).
  numpy_arange,
  /// AMCT's CPU kernel (ifmr.cpp), in float: count = unsigned((end - start) / step + 1),
  /// r_i = start + i * step; 60 values for the defaults (0.7f to 1.29f).
  amct_kernel,
};

/// Largest number of candidate ratios (bounds the work of a search).
constexpr std::size_t ifmr_max_candidates = std::size_t{1} << 16;

/// IFMR's search settings (AMCT defaults).
struct ifmr_params {
  double max_percentile = 0.999999;  ///< (0.5, 1]: rank of max0 from the top
  double min_percentile = 0.999999;  ///< (0.5, 1]: rank of min0 from the bottom
  double search_start = 0.7;         ///< first ratio, > 0
  double search_end = 1.3;           ///< end of the ratios (excluded by numpy_arange)
  double search_step = 0.01;         ///< in (0, search_end - search_start]
  ifmr_ratio_grid grid = ifmr_ratio_grid::numpy_arange;
  /// Affine grids: also scale the min by r (the AMCT documentation's description); the
  /// default scales only the max (AMCT's code). Symmetric grids always scale the threshold.
  bool scale_min = false;

  /// AMCT's documented domains: percentiles in (0.5, 1], 0 < start < end,
  /// 0 < step <= end - start; all finite, at most ifmr_max_candidates ratios.
  status validate() const {
    const auto pct_ok = [](double p) { return p > 0.5 && p <= 1.0; };
    if (!pct_ok(max_percentile))
      return {errc::invalid_argument,
              "option max_percentile = " + std::to_string(max_percentile) + " is outside (0.5, 1]"};
    if (!pct_ok(min_percentile))
      return {errc::invalid_argument,
              "option min_percentile = " + std::to_string(min_percentile) + " is outside (0.5, 1]"};
    if (!std::isfinite(search_start) || !std::isfinite(search_end) || !(search_start > 0.0) ||
        !(search_end > search_start))
      return {errc::invalid_argument, "option search_range = [" + std::to_string(search_start) + ", " +
                                          std::to_string(search_end) + ") is empty or not positive"};
    if (!std::isfinite(search_step) || !(search_step > 0.0) || search_step > search_end - search_start)
      return {errc::invalid_argument, "option search_step = " + std::to_string(search_step) +
                                          " is outside (0, search_range[1] - search_range[0]]"};
    const double count = std::ceil((search_end - search_start) / search_step);
    if (!(count <= static_cast<double>(ifmr_max_candidates)))
      return {errc::invalid_argument, "options search_range and search_step give " + std::to_string(count) +
                                          " ratios, more than " + std::to_string(ifmr_max_candidates)};
    if (grid != ifmr_ratio_grid::numpy_arange && grid != ifmr_ratio_grid::amct_kernel)
      return {errc::invalid_argument, "option grid holds an unknown value"};
    return {};
  }
};

inline bool operator==(const ifmr_params& a, const ifmr_params& b) noexcept {
  return a.max_percentile == b.max_percentile && a.min_percentile == b.min_percentile &&
         a.search_start == b.search_start && a.search_end == b.search_end && a.search_step == b.search_step &&
         a.grid == b.grid && a.scale_min == b.scale_min;
}

/// Checks that spec suits IFMR: valid, and signed when symmetric (the loss clips to [-t, t]).
inline status check_ifmr_spec(const qspec& spec) {
  status s = spec.validate();
  if (!s.ok()) return s;
  if (spec.scheme == qscheme::symmetric && !spec.is_signed)
    return {errc::invalid_argument, "IFMR needs a signed grid when symmetric (AMCT clips to [-t, t])"};
  return {};
}

/// The candidate ratios (see ifmr_ratio_grid). Fails on invalid params.
inline std::vector<double> ifmr_ratios(const ifmr_params& p) {
  detail::throw_if(p.validate());
  std::vector<double> r;
  if (p.grid == ifmr_ratio_grid::numpy_arange) {
    // numpy (multiarray/ctors.c PyArray_Arange, arraytypes DOUBLE_fill): the length is
    // ceil((stop - start) / step); a[0] = start, a[1] = start + step, then
    // a[i] = start + i * (a[1] - a[0]). volatile keeps the product unfused (no FMA).
    const auto n = static_cast<std::size_t>(std::ceil((p.search_end - p.search_start) / p.search_step));
    r.resize(n);
    r[0] = p.search_start;
    if (n > 1) r[1] = p.search_start + p.search_step;
    const double delta = n > 1 ? r[1] - r[0] : 0.0;
    for (std::size_t i = 2; i < n; ++i) {
      volatile double prod = static_cast<double>(i) * delta;
      r[i] = p.search_start + prod;
    }
    return r;
  }
  // AMCT ifmr.cpp: float startRatio, endRatio, step; maxSize = (end - start) / step + 1
  // truncated; candidate i is (startRatio + i * step) in float.
  const float start = static_cast<float>(p.search_start), end = static_cast<float>(p.search_end),
              step = static_cast<float>(p.search_step);
  volatile float diff = end - start;
  volatile float quot = diff / step;
  volatile float count = quot + 1.0f;
  const auto n = static_cast<std::size_t>(static_cast<unsigned int>(count));
  r.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    volatile float prod = static_cast<float>(i) * step;
    const float ri = start + prod;
    r[i] = static_cast<double>(ri);
  }
  return r;
}

/// IFMR's rank k (1 = the extreme value) of the percentile bound among n >= 1 values.
inline std::uint64_t ifmr_rank(std::uint64_t n, double pct) noexcept {
  if (1.0 - pct < flt_epsilon || n == 0) return 1;
  const double below = pct * static_cast<double>(n);
  std::uint64_t k = n - static_cast<std::uint64_t>(below);  // int(): pct * n is in [0, n]
  if (k < 1) k = 1;
  if (k > n) k = n;
  return k;
}

/// One candidate of the search.
template <class T>
struct ifmr_candidate {
  double ratio = 1.0;
  T lo = T(0), hi = T(0);            ///< the candidate range; the result reports it
  T scale = T(1);                    ///< qparams_from_range(lo, hi, spec).scale
  T clip_lo = T(0), clip_hi = T(0);  ///< where the loss clamps: [lo, hi], or [-t, t] symmetric
};

/// The candidates for the initial range [min0, max0] (min0 <= 0 <= max0, finite).
template <class T>
std::vector<ifmr_candidate<T>> ifmr_candidates(T min0, T max0, const ifmr_params& p, const qspec& spec) {
  detail::throw_if(check_ifmr_spec(spec));
  if (!std::isfinite(min0) || !std::isfinite(max0) || min0 > T(0) || max0 < T(0))
    detail::fail(errc::invalid_argument, "ifmr_candidates: the initial range [" + std::to_string(min0) + ", " +
                                             std::to_string(max0) + "] must be finite and contain 0");
  const std::vector<double> ratios = ifmr_ratios(p);
  const bool symmetric = spec.scheme == qscheme::symmetric;
  std::vector<ifmr_candidate<T>> out(ratios.size());
  for (std::size_t i = 0; i < ratios.size(); ++i) {
    ifmr_candidate<T>& c = out[i];
    c.ratio = ratios[i];
    c.hi = static_cast<T>(ratios[i] * static_cast<double>(max0));
    c.lo = (symmetric || p.scale_min) ? static_cast<T>(ratios[i] * static_cast<double>(min0)) : min0;
    c.scale = qparams_from_range(c.lo, c.hi, spec).scale;
    if (symmetric) {
      const T t = std::max(std::fabs(c.lo), std::fabs(c.hi));
      c.clip_lo = -t;
      c.clip_hi = t;
    } else {
      c.clip_lo = c.lo;
      c.clip_hi = c.hi;
    }
  }
  return out;
}

namespace detail {
/// round_half_even(v) without a branch or a library call: adding and removing 2^(digits-1)
/// (with v's sign) leaves v rounded to an integer by the hardware's round-to-nearest-even;
/// |v| >= 2^(digits-1) is an integer already. Same value as round_half_even for every finite
/// v. (-ffast-math would fold the addition away, so it then falls back.)
template <class P>
inline P round_half_even_fast(P v) noexcept {
#if defined(__FAST_MATH__)
  return round_half_even(v);
#else
  constexpr P big = static_cast<P>(std::uint64_t{1} << (std::numeric_limits<P>::digits - 1));
  const P c = std::copysign(big, v);
  const P r = (v + c) - c;
  return std::fabs(v) < big ? r : v;
#endif
}
}  // namespace detail

/// Sum over i of w_i * (round_half_even(clamp(x_i, clip_lo, clip_hi) / s) * s - x_i)^2
/// (w == nullptr: weights 1), in the order given: the element-wise form every faster path
/// is checked against.
template <class P>
double ifmr_loss_elementwise(const P* x, const double* w, std::size_t n, P clip_lo, P clip_hi, P s) {
  double sum = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const P v = x[i];
    P c = v < clip_lo ? clip_lo : v;
    c = c > clip_hi ? clip_hi : c;
    const P q = detail::round_half_even_fast(c / s) * s;
    const double e = static_cast<double>(q) - static_cast<double>(v);
    sum += w ? w[i] * (e * e) : e * e;
  }
  return sum;
}

/// Largest number of grid levels, summed over the candidates, that the cells method takes
/// on (its memory is about 40 bytes per level: 40 MiB here).
constexpr double ifmr_max_cell_levels = 1048576.0;

/// How a search evaluates the candidates' losses.
enum class ifmr_loss_method : std::uint8_t {
  /// cells when the levels (summed over the candidates) number less than a tenth of
  /// candidates * points and at most ifmr_max_cell_levels, else element-wise
  automatic,
  cells,        ///< one pass for all candidates, per-cell moments (see the file comment)
  elementwise,  ///< ifmr_loss_elementwise per candidate: O(points) each
};

/// The outcome of a search: the initial range, every candidate with its loss, the winner.
template <class T>
struct ifmr_result {
  T init_min = T(0), init_max = T(0);  ///< min0 and max0 (before symmetrisation)
  std::vector<ifmr_candidate<T>> candidates;
  std::vector<double> losses;  ///< mean squared error per candidate
  std::size_t best = 0;        ///< index of the winner
  std::size_t rescored = 0;    ///< candidates re-scored element-wise (cells method)
  T clip_min() const { return candidates.at(best).lo; }
  T clip_max() const { return candidates.at(best).hi; }
};

namespace detail {

// ---- grid cells -----------------------------------------------------------------------

template <class P>
P ifmr_level(P x, P s) noexcept {
  return round_half_even_fast(x / s);
}

/// The next representable value up (+1) or down (-1), through the order keys.
template <class P>
P step_ulp(P v, int dir) noexcept {
  const auto k = order_key(v);
  return from_order_key<P>(dir > 0 ? k + 1 : k - 1);
}

/// The smallest P value x with ifmr_level(x, s) >= j: a guess at (j - 1/2) s corrected by
/// ulp steps (two or three in practice), bisection over the order keys as a safety net.
template <class P>
P ifmr_cell_start(P j, P s) {
  P g = static_cast<P>((static_cast<double>(j) - 0.5) * static_cast<double>(s));
  int steps = 0;
  while (!(ifmr_level(g, s) >= j) && steps < 64) {
    g = step_ulp(g, +1);
    ++steps;
  }
  while (steps < 64) {
    const P d = step_ulp(g, -1);
    if (!(ifmr_level(d, s) >= j)) return g;
    g = d;
    ++steps;
  }
  // Safety net: bisection between the most negative and the most positive finite value.
  using K = typename float_key<P>::type;
  K lo = order_key(std::numeric_limits<P>::lowest()), hi = order_key(std::numeric_limits<P>::max());
  while (lo < hi) {
    const K mid = lo + (hi - lo) / 2;
    if (ifmr_level(from_order_key<P>(mid), s) >= j) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return from_order_key<P>(lo);
}

/// Sums of the points between consecutive cell starts: interval i holds the points with
/// exactly i starts <= x. The sums are of y = x - origin with the interval's own origin
/// (its lower start; the first start for interval 0), so that long runs of equal values far
/// from the centre (ReLU zeros) add no rounding error that the loss would not cancel.
struct ifmr_moments {
  double n = 0.0, s1 = 0.0, s2 = 0.0;
  double origin = 0.0;
};

/// The origin of each interval (see ifmr_moments).
template <class P>
std::vector<ifmr_moments> interval_origins(const std::vector<P>& starts, double fallback) {
  std::vector<ifmr_moments> acc(starts.size() + 1);
  acc[0].origin = starts.empty() ? fallback : static_cast<double>(starts[0]);
  for (std::size_t i = 0; i < starts.size(); ++i) acc[i + 1].origin = static_cast<double>(starts[i]);
  return acc;
}

/// Interval sums of unsorted points (weight 1) against the sorted, distinct starts.
/// A lookup table over the starts' span gives each point the first start whose slot is
/// not below the point's slot (slots are monotone in x, so this never skips a start
/// <= x); a short scan finishes. Blocks of indices first, then the sums: two simple loops
/// run faster than one.
template <class P>
std::vector<ifmr_moments> interval_moments(const P* x, std::size_t n, const std::vector<P>& starts, double centre) {
  const std::size_t m = starts.size();
  std::vector<ifmr_moments> acc = interval_origins(starts, centre);
  std::vector<P> ext(starts);
  ext.push_back(std::numeric_limits<P>::infinity());  // sentinel: no finite x reaches it
  std::size_t slots = 1024;
  while (slots < 4 * m && slots < (std::size_t{1} << 18)) slots *= 2;
  const P a = m ? starts.front() : P(0);
  const double span = m ? static_cast<double>(starts.back()) - static_cast<double>(a) : 0.0;
  const P inv = span > 0.0 ? static_cast<P>(static_cast<double>(slots) / span) : P(0);
  const P last = static_cast<P>(slots - 1);
  const auto slot = [a, inv, last](P v) -> std::uint32_t {
    P f = (v - a) * inv;
    f = f > P(0) ? f : P(0);
    f = f < last ? f : last;
    return static_cast<std::uint32_t>(static_cast<std::int32_t>(f));
  };
  std::vector<std::uint32_t> table(slots + 1, 0);
  for (std::size_t e = 0; e < m; ++e) ++table[slot(starts[e]) + 1];
  for (std::size_t s = 1; s <= slots; ++s) table[s] += table[s - 1];
  const P* e = ext.data();
  const std::uint32_t* t = table.data();
  ifmr_moments* out = acc.data();
  constexpr std::size_t block = 1024;
  std::uint32_t idx[block];
  for (std::size_t off = 0; off < n; off += block) {
    const std::size_t len = std::min(block, n - off);
    const P* v = x + off;
    for (std::size_t i = 0; i < len; ++i) {
      std::uint32_t k = t[slot(v[i])];
      k += e[k] <= v[i];  // the slots hold few starts: two steps without branches,
      k += e[k] <= v[i];  // a loop for the rest
      while (e[k] <= v[i]) ++k;
      idx[i] = k;
    }
    for (std::size_t i = 0; i < len; ++i) {
      ifmr_moments& o = out[idx[i]];
      const double y = static_cast<double>(v[i]) - o.origin;
      o.n += 1.0;
      o.s1 += y;
      o.s2 += y * y;
    }
  }
  return acc;
}

/// Interval sums of sorted weighted points (histogram bin centres) by a merge walk.
template <class P>
std::vector<ifmr_moments> interval_moments_sorted(const P* x, const double* w, std::size_t n,
                                                  const std::vector<P>& starts, double centre) {
  std::vector<ifmr_moments> acc = interval_origins(starts, centre);
  std::size_t k = 0;
  for (std::size_t i = 0; i < n; ++i) {
    while (k < starts.size() && starts[k] <= x[i]) ++k;
    const double y = static_cast<double>(x[i]) - acc[k].origin;
    acc[k].n += w[i];
    acc[k].s1 += w[i] * y;
    acc[k].s2 += w[i] * (y * y);
  }
  return acc;
}

/// Error-free sum: a + b = s + e exactly (Knuth's TwoSum).
inline void two_sum(double a, double b, double* s, double* e) noexcept {
  const double t = a + b;
  const double bb = t - a;
  *e = (a - (t - bb)) + (b - bb);
  *s = t;
}

/// One candidate's grid: its lowest level and cell starts (levels j_lo + 1 .. j_hi).
template <class P>
struct ifmr_cells {
  P first = P(0);
  std::vector<P> starts;
};

template <class P>
ifmr_cells<P> cells_of(P clip_lo, P clip_hi, P s) {
  ifmr_cells<P> c;
  c.first = ifmr_level(clip_lo, s);
  const P top = ifmr_level(clip_hi, s);
  for (P j = c.first + P(1); j <= top; j += P(1)) c.starts.push_back(ifmr_cell_start(j, s));
  return c;
}

/// Number of levels of a candidate (cells), without building them.
template <class P>
double level_count(P clip_lo, P clip_hi, P s) {
  return static_cast<double>(ifmr_level(clip_hi, s)) - static_cast<double>(ifmr_level(clip_lo, s)) + 1.0;
}

/// The losses (sums, not means) of every candidate, by cells, and a per-candidate bound on
/// their rounding error. `moments(starts)` returns the interval sums for the merged starts.
template <class P, class Moments>
void cell_losses(const std::vector<P>& clip_lo, const std::vector<P>& clip_hi, const std::vector<P>& scale,
                 double centre, Moments moments, std::vector<double>& loss, std::vector<double>& bound) {
  const std::size_t kc = scale.size();
  std::vector<ifmr_cells<P>> cells(kc);
  std::vector<P> all;
  for (std::size_t k = 0; k < kc; ++k) {
    cells[k] = cells_of(clip_lo[k], clip_hi[k], scale[k]);
    all.insert(all.end(), cells[k].starts.begin(), cells[k].starts.end());
  }
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  const std::vector<ifmr_moments> acc = moments(all);
  // Double-double inclusive prefixes: pre[e] = sums of intervals 0..e-1, so the points
  // below all[e] are pre[e + 1].
  const std::size_t m = acc.size();
  std::vector<double> h0(m + 1, 0.0), l0(m + 1, 0.0), h1(m + 1, 0.0), l1(m + 1, 0.0), h2(m + 1, 0.0),
      l2(m + 1, 0.0);
  for (std::size_t i = 0; i < m; ++i) {
    // The interval's sums moved from its origin to the common centre: one rounding each.
    const double d = acc[i].origin - centre;
    const double s1 = acc[i].s1 + acc[i].n * d;
    const double s2 = acc[i].s2 + (2.0 * d * acc[i].s1 + acc[i].n * d * d);
    double e = 0.0;
    two_sum(h0[i], acc[i].n, &h0[i + 1], &e);
    l0[i + 1] = l0[i] + e;
    two_sum(h1[i], s1, &h1[i + 1], &e);
    l1[i + 1] = l1[i] + e;
    two_sum(h2[i], s2, &h2[i + 1], &e);
    l2[i + 1] = l2[i] + e;
  }
  loss.assign(kc, 0.0);
  bound.assign(kc, 0.0);
  std::vector<std::size_t> at;
  for (std::size_t k = 0; k < kc; ++k) {
    const ifmr_cells<P>& c = cells[k];
    at.resize(c.starts.size() + 2);
    at[0] = 0;  // below everything: the empty prefix
    for (std::size_t e = 0; e < c.starts.size(); ++e)
      at[e + 1] = static_cast<std::size_t>(std::lower_bound(all.begin(), all.end(), c.starts[e]) - all.begin()) + 1;
    at.back() = m;
    double sum = 0.0, mag = 0.0;
    P j = c.first;
    for (std::size_t cell = 0; cell + 1 < at.size(); ++cell, j += P(1)) {
      const std::size_t a = at[cell], b = at[cell + 1];
      const double n = (h0[b] - h0[a]) + (l0[b] - l0[a]);
      if (n == 0.0) continue;
      const double s1 = (h1[b] - h1[a]) + (l1[b] - l1[a]);
      const double s2 = (h2[b] - h2[a]) + (l2[b] - l2[a]);
      const P q = j * scale[k];
      const double qc = static_cast<double>(q) - centre;
      sum += n * qc * qc - 2.0 * qc * s1 + s2;
      mag += n * qc * qc + s2;
    }
    loss[k] = sum;
    bound[k] = mag;
  }
}

}  // namespace detail

namespace detail {

/// The search over points (x, optional weights w) given the initial range; `mom` builds the
/// interval sums for the cells method.
template <class T, class P, class Moments>
ifmr_result<T> ifmr_search_points(const P* x, const double* w, std::size_t points, double count, T min0, T max0,
                                  const ifmr_params& p, const qspec& spec, ifmr_loss_method method, Moments mom) {
  ifmr_result<T> r;
  r.init_min = min0;
  r.init_max = max0;
  r.candidates = ifmr_candidates(min0, max0, p, spec);
  const std::size_t kc = r.candidates.size();
  std::vector<P> lo(kc), hi(kc), s(kc);
  double levels = 0.0;
  for (std::size_t k = 0; k < kc; ++k) {
    lo[k] = static_cast<P>(r.candidates[k].clip_lo);
    hi[k] = static_cast<P>(r.candidates[k].clip_hi);
    s[k] = static_cast<P>(r.candidates[k].scale);
    levels += level_count(lo[k], hi[k], s[k]);
  }
  if (method == ifmr_loss_method::automatic)
    method = levels * 10.0 < static_cast<double>(kc) * static_cast<double>(points) && levels <= ifmr_max_cell_levels
                 ? ifmr_loss_method::cells
                 : ifmr_loss_method::elementwise;
  std::vector<double> sums(kc, 0.0);
  if (method == ifmr_loss_method::elementwise) {
    for (std::size_t k = 0; k < kc; ++k) sums[k] = ifmr_loss_elementwise(x, w, points, lo[k], hi[k], s[k]);
    r.best = static_cast<std::size_t>(std::min_element(sums.begin(), sums.end()) - sums.begin());
  } else {
    if (!(levels <= ifmr_max_cell_levels))
      fail(errc::invalid_argument, "ifmr search: " + std::to_string(levels) +
                                       " grid levels over all candidates are too many for the cells method");
    // Centre the sums on the middle of the initial range (limits cancellation).
    const double centre = 0.5 * (static_cast<double>(min0) + static_cast<double>(max0));
    std::vector<double> bound;
    cell_losses(lo, hi, s, centre, [&](const std::vector<P>& starts) { return mom(starts, centre); }, sums, bound);
    const double best = *std::min_element(sums.begin(), sums.end());
    std::vector<std::size_t> near;
    for (std::size_t k = 0; k < kc; ++k)
      if (sums[k] - best <= 1e-9 * std::fabs(best) + 1e-13 * (bound[k] + std::fabs(best))) near.push_back(k);
    r.best = near.front();
    if (near.size() > 1) {
      // Re-score the near-best element by element: the pick then equals the element-wise
      // search's, whatever the cells' rounding.
      for (std::size_t k : near) sums[k] = ifmr_loss_elementwise(x, w, points, lo[k], hi[k], s[k]);
      for (std::size_t k : near)
        if (sums[k] < sums[r.best]) r.best = k;
      r.rescored = near.size();
    }
  }
  r.losses.resize(kc);
  for (std::size_t k = 0; k < kc; ++k) r.losses[k] = sums[k] / count;
  return r;
}

inline void check_ifmr_inputs(const ifmr_params& p, const qspec& spec, const char* who) {
  status s = p.validate();
  if (!s.ok()) fail(s.code(), std::string(who) + ": " + s.message());
  s = check_ifmr_spec(spec);
  if (!s.ok()) fail(s.code(), std::string(who) + ": " + s.message());
}

}  // namespace detail

/// IFMR on raw values (exact mode): x[0..n), n >= 1, finite (NaN / Inf fail naming the
/// index). O(n) passes for the percentiles and the cells; see the file comment.
template <class T>
ifmr_result<T> ifmr_search(const T* x, std::size_t n, const ifmr_params& p, const qspec& spec,
                           ifmr_loss_method method = ifmr_loss_method::automatic) {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value, "IFMR takes float or double");
  detail::check_ifmr_inputs(p, spec, "ifmr_search");
  if (n == 0 || x == nullptr) detail::fail(errc::empty_input, "ifmr_search: no values");
  const std::uint64_t k_min = ifmr_rank(n, p.min_percentile), k_max = ifmr_rank(n, p.max_percentile);
  T small = T(0), large = T(0);
  if (k_min <= 64 && k_max <= 64 && k_min <= n && k_max <= n) {
    detail::extremes_small_k(x, n, static_cast<std::size_t>(k_min), static_cast<std::size_t>(k_max), &small, &large,
                             "ifmr_search");
  } else {
    detail::select_two(x, n, k_min, static_cast<std::uint64_t>(n) - k_max + 1, &small, &large, "ifmr_search");
  }
  const T min0 = std::min(T(0), small), max0 = std::max(T(0), large);
  return detail::ifmr_search_points<T, T>(
      x, nullptr, n, static_cast<double>(n), min0, max0, p, spec, method,
      [x, n](const std::vector<T>& starts, double centre) { return detail::interval_moments(x, n, starts, centre); });
}

namespace detail {

/// The (target + 1)-th smallest value estimated from the linearly interpolated CDF of a range
/// histogram (from_top: the (target + 1)-th largest), as torchquant's _value_after.
inline double histogram_value(const double* c, std::size_t bins, double lo, double hi, double target, bool from_top) {
  const double w = (hi - lo) / static_cast<double>(bins);
  const auto edge = [&](std::size_t j) { return j >= bins ? hi : lo + static_cast<double>(j) * w; };
  // The first bin (from the chosen end) whose running count passes target; past the end,
  // the last bin with the running count at the total (searchsorted clamped).
  double cum = 0.0;
  std::size_t i = 0;
  for (; i < bins; ++i) {
    cum += c[from_top ? bins - 1 - i : i];
    if (cum > target) break;
  }
  if (i == bins) i = bins - 1;
  const std::size_t idx = from_top ? bins - 1 - i : i;
  const double ci = c[idx];
  const double before = cum - ci;
  const double frac = ci <= 0.0 ? 0.0 : std::min(std::max((target - before) / ci, 0.0), 1.0);
  if (!from_top) return edge(idx) + frac * (edge(idx + 1) - edge(idx));
  // Mirrored as torchquant computes it: on the negated, reversed edges.
  const double a = -edge(idx + 1), b = -edge(idx);
  return -(a + frac * (b - a));
}

}  // namespace detail

/// IFMR on a range histogram (histogram mode): counts[0..bins) over [lo, hi] (bin j covers
/// [lo + j w, lo + (j+1) w), w = (hi - lo) / bins), `values` the number of values observed
/// (the N of the ranks and the mean). Percentiles from the linearly interpolated CDF; the
/// loss over bin centres weighted by the counts, in double.
template <class T>
ifmr_result<T> ifmr_search_histogram(const double* counts, std::size_t bins, double lo, double hi,
                                     std::uint64_t values, const ifmr_params& p, const qspec& spec,
                                     ifmr_loss_method method = ifmr_loss_method::automatic) {
  detail::check_ifmr_inputs(p, spec, "ifmr_search_histogram");
  if (bins == 0 || counts == nullptr || values == 0)
    detail::fail(errc::empty_input, "ifmr_search_histogram: empty histogram");
  if (!std::isfinite(lo) || !std::isfinite(hi) || lo > hi)
    detail::fail(errc::invalid_argument, "ifmr_search_histogram: invalid range [" + std::to_string(lo) + ", " +
                                             std::to_string(hi) + "]");
  for (std::size_t j = 0; j < bins; ++j)
    if (!(counts[j] >= 0.0) || !std::isfinite(counts[j]))
      detail::fail(errc::invalid_argument, "ifmr_search_histogram: count of bin " + std::to_string(j) + " is " +
                                               std::to_string(counts[j]));
  const std::uint64_t k_min = ifmr_rank(values, p.min_percentile), k_max = ifmr_rank(values, p.max_percentile);
  const double small = detail::histogram_value(counts, bins, lo, hi, static_cast<double>(k_min - 1), false);
  const double large = detail::histogram_value(counts, bins, lo, hi, static_cast<double>(k_max - 1), true);
  const T min0 = std::min(T(0), static_cast<T>(small)), max0 = std::max(T(0), static_cast<T>(large));
  const double w = (hi - lo) / static_cast<double>(bins);
  std::vector<double> centres(bins);
  for (std::size_t j = 0; j < bins; ++j) {
    const double a = lo + static_cast<double>(j) * w, b = j + 1 >= bins ? hi : lo + static_cast<double>(j + 1) * w;
    centres[j] = (a + b) / 2.0;
  }
  const double* xs = centres.data();
  return detail::ifmr_search_points<T, double>(
      xs, counts, bins, static_cast<double>(values), min0, max0, p, spec, method,
      [xs, counts, bins](const std::vector<double>& starts, double centre) {
        return detail::interval_moments_sorted(xs, counts, bins, starts, centre);
      });
}

QLIB_NAMESPACE_END
