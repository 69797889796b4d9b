// Percentile and MSE searches over a histogram: pure functions of the statistics, no state.
//
// The histogram is seen through hist_bins: `size` equal bins, bin j covers
// [lo + j*width, lo + (j+1)*width) and stands for its count of values at its centre
// lo + (j + 0.5) * width. bins_of() describes qlib's abs_histogram (lo = 0, the |x| of the
// data) and range_histogram (signed, over [lo, hi]); width 0 is a constant histogram (every
// value equals lo). Counts are any non-negative weights with a positive sum.
//
// Percentile (NVIDIA pytorch-quantization / TensorRT Model Optimizer "modelopt"
// modelopt/torch/quantization/calib/histogram.py, _compute_amax_percentile):
//   modelopt computes cdf = cumsum(counts / total), idx = searchsorted(cdf, p / 100) (the
//   first bin whose cumulative fraction reaches p %) and returns calib_bin_edges[idx]: the
//   LEFT edge of that bin (edges has size + 1 entries; idx == size, when the float cdf ends
//   just short of p %, gives the right edge of the last bin). percentile_interpolation::edge
//   reproduces that arithmetic. percentile_interpolation::linear (default, as the torchquant
//   predecessor) assumes the values are spread evenly inside the bin where the cumulative
//   count reaches p % of the total and moves from its left edge by the fraction still needed,
//   so the result is within one bin width of the exact (sorted-data) percentile.
//   Lower percentiles (affine specs) are the same search on the mirrored histogram (-x), so
//   "edge" gives the right edge of its bin there: both bounds move inwards.
//
// Exact percentile on raw values: the nearest rank, the smallest value with at least p % of
// the data at or below it (rank k = ceil(p/100 * N), at least 1), by std::nth_element.
//
// MSE (modelopt _compute_amax_mse): for a candidate range, the expected squared error of
// fake quantization on spec's grid (scale / zero point from qparams_from_range(candidate),
// round half to even, clamped) over the bin centres weighted by the counts:
//   mse = sum_j counts_j * (fq(c_j) - c_j)^2 / sum_j counts_j.
// Candidates (each a range; the search returns the first minimum, as numpy's argmin):
//   symmetric_candidates: T = centre of bin i for i = start_bin, start_bin + stride, ... < size
//     (modelopt; the |x| histogram; range [-T, T], or [0, T] for one-sided data);
//   scale_candidates: affine, the range [a L, a H] for a = (i + 1) / size over the same i,
//     L = min(lo, 0), H = max(hi, 0) (the torchquant predecessor's "scale" search);
//   trim_candidates: affine, PyTorch HistogramObserver._non_linear_param_search's (caffe2
//     NormMinimization) walk: move the left or right bound inwards past `step` of the total
//     count, trimming the side that skips more bins (ties trim the right). Every candidate is
//     evaluated (PyTorch stops at the first increase) and the untrimmed range is one of them.
// Speed: histogram_mse_evaluator builds prefix moments of the counts once (sum w, sum w j,
// sum w j^2 over bin index j: plain doubles when the counts are integers small enough for
// every sum to be exact, else double-double, so that differences do not cancel), then a
// candidate costs O(number of grid levels that hold data) instead of O(bins): each grid
// level's cell is a run of bins whose error is W*D^2 - 2*D*K1 + K2 in bin units. Cell ends
// are found from the rounding boundary and confirmed with the same quantize_value() as the
// literal loop, so every bin is assigned to exactly the level the literal loop gives it.
#pragma once

#include "../detail/algorithm.hpp"
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../core/qparams.hpp"
#include "../core/quantize.hpp"
#include "../observer/histogram.hpp"

QLIB_NAMESPACE_BEGIN

/// A histogram of equal bins as the searches read it (see the file comment). Non-owning.
struct hist_bins {
  const double* counts = nullptr;
  std::size_t size = 0;
  double lo = 0.0;     ///< left edge of bin 0
  double width = 0.0;  ///< bin width; 0: a constant histogram (all values equal lo)
  double hi = 0.0;     ///< right edge of the last bin

  /// Edge j (j = size gives hi exactly).
  double edge(std::size_t j) const noexcept { return j >= size ? hi : lo + static_cast<double>(j) * width; }
  /// The value bin j's counts stand for.
  double centre(std::size_t j) const noexcept { return lo + (static_cast<double>(j) + 0.5) * width; }
};

/// The |x| histogram's bins (empty: size 0, when only zeros were seen).
template <class T>
hist_bins bins_of(const abs_histogram<T>& h) noexcept {
  hist_bins b;
  b.counts = h.counts().data();
  b.size = h.counts().size();
  b.lo = 0.0;
  b.width = h.bin_width();
  b.hi = static_cast<double>(b.size) * b.width;
  return b;
}

/// The signed range histogram's bins (size 0 before data; width 0 when lo == hi).
template <class T>
hist_bins bins_of(const range_histogram<T>& h) noexcept {
  hist_bins b;
  b.counts = h.counts().data();
  b.size = h.counts().size();
  b.lo = h.lo();
  b.hi = h.hi();
  b.width = b.size ? (b.hi - b.lo) / static_cast<double>(b.size) : 0.0;
  return b;
}

/// Checks a hist_bins: counts present, finite and non-negative with a positive sum; edges
/// finite, width >= 0. `who` prefixes the message.
inline status check_hist_bins(const hist_bins& h, const std::string& who) {
  if (h.size == 0 || h.counts == nullptr) return {errc::empty_input, who + ": the histogram has no bins"};
  if (!std::isfinite(h.lo) || !std::isfinite(h.hi) || !std::isfinite(h.width) || !(h.width >= 0.0) || h.hi < h.lo)
    return {errc::invalid_argument, who + ": invalid histogram range [" + std::to_string(h.lo) + ", " +
                                        std::to_string(h.hi) + "] with bin width " + std::to_string(h.width)};
  double total = 0.0;
  for (std::size_t j = 0; j < h.size; ++j) {
    const double c = h.counts[j];
    if (!(c >= 0.0) || !std::isfinite(c))
      return {errc::invalid_argument, who + ": bin " + std::to_string(j) + " has count " + std::to_string(c)};
    total += c;
  }
  if (!(total > 0.0)) return {errc::empty_input, who + ": the histogram's counts sum to 0"};
  return {};
}

// ---------------------------------------------------------------------------------------
// Percentiles
// ---------------------------------------------------------------------------------------

/// How a histogram percentile is placed inside the bin that reaches it (see file comment).
enum class percentile_interpolation : std::uint8_t { linear, edge };

inline const char* to_string(percentile_interpolation m) noexcept {
  return m == percentile_interpolation::linear ? "linear" : "edge";
}

/// Checks a percentile in (0, 100].
inline status check_percentile(double percentile, const std::string& who) {
  if (!(percentile > 0.0 && percentile <= 100.0))
    return {errc::invalid_argument,
            who + ": option percentile = " + std::to_string(percentile) + " is outside (0, 100]"};
  return {};
}

namespace detail {

// The p-th percentile of the histogram, or of its mirror image (-x) when `mirrored`, in the
// mirrored coordinates. Bin k of the mirror is bin size-1-k; its edge k is -edge(size-k).
inline double percentile_search(const hist_bins& h, double percentile, percentile_interpolation mode, bool mirrored) {
  const std::size_t n = h.size;
  auto count = [&](std::size_t k) { return mirrored ? h.counts[n - 1 - k] : h.counts[k]; };
  auto edge = [&](std::size_t k) { return mirrored ? -h.edge(n - k) : h.edge(k); };
  double total = 0.0;
  for (std::size_t k = 0; k < n; ++k) total += count(k);
  if (mode == percentile_interpolation::edge) {
    // modelopt: cdf = cumsum(counts / total) (numpy's sequential cumsum, float64);
    // idx = searchsorted(cdf, p / 100, side="left"); amax = edges[idx].
    const double target = percentile / 100.0;
    double cdf = 0.0;
    std::size_t idx = n;
    for (std::size_t k = 0; k < n; ++k) {
      cdf += count(k) / total;
      if (cdf >= target) {
        idx = k;
        break;
      }
    }
    return edge(idx);
  }
  // Linear: the count to reach, e.g. 99990 of 100000 for 99.99 %. A relative slack of 1e-12
  // keeps the rounding of p / 100 from pushing an exact count into the next non-empty bin.
  const double target = std::max(total * (percentile / 100.0) - total * 1e-12, 0.0);
  double cum = 0.0, before = 0.0;
  std::size_t idx = n - 1;
  for (std::size_t k = 0; k < n; ++k) {
    before = cum;
    cum += count(k);
    if (cum >= target) {
      idx = k;
      break;
    }
  }
  const double in_bin = count(idx);
  double frac = in_bin > 0.0 ? (target - before) / in_bin : 1.0;
  frac = std::min(std::max(frac, 0.0), 1.0);
  const double left = edge(idx);
  return left + frac * (edge(idx + 1) - left);
}

}  // namespace detail

/// The percentile-th percentile (in (0, 100]) of the values a histogram describes: the
/// upper clip of an affine range, or the threshold T on an |x| histogram.
inline double histogram_percentile(const hist_bins& h, double percentile,
                                   percentile_interpolation mode = percentile_interpolation::linear) {
  detail::throw_if(check_percentile(percentile, "histogram_percentile"));
  detail::throw_if(check_hist_bins(h, "histogram_percentile"));
  return detail::percentile_search(h, percentile, mode, false);
}

/// The lower clip of an affine range: the (100 - percentile)-th percentile, found as the
/// percentile-th percentile of the mirrored data (-x) and negated.
inline double histogram_lower_percentile(const hist_bins& h, double percentile,
                                         percentile_interpolation mode = percentile_interpolation::linear) {
  detail::throw_if(check_percentile(percentile, "histogram_lower_percentile"));
  detail::throw_if(check_hist_bins(h, "histogram_lower_percentile"));
  return -detail::percentile_search(h, percentile, mode, true);
}

/// The nearest rank k in [1, n] of the percentile-th percentile of n values:
/// ceil(p/100 * n), with a relative slack of 1e-12 so that p/100's rounding does not push
/// an exact rank (99.99 % of 10000 = 9999) to the next one.
inline std::size_t nearest_rank(std::size_t n, double percentile) noexcept {
  const double x = static_cast<double>(n) * (percentile / 100.0);
  const double k = std::ceil(x - static_cast<double>(n) * 1e-12);
  if (!(k >= 1.0)) return 1;
  if (k >= static_cast<double>(n)) return n;
  return static_cast<std::size_t>(k);
}

/// The exact percentile-th percentile (nearest rank) of values[0..n); reorders values
/// (std::nth_element, O(n)). Fails on n == 0 or a percentile outside (0, 100].
template <class T>
T exact_percentile(T* values, std::size_t n, double percentile) {
  detail::throw_if(check_percentile(percentile, "exact_percentile"));
  if (n == 0) detail::fail(errc::empty_input, "exact_percentile: no values");
  const std::size_t k = nearest_rank(n, percentile);
  std::nth_element(values, values + (k - 1), values + n);
  return values[k - 1];
}

/// The lower counterpart: minus the percentile of -x, i.e. the value of 0-based rank n - k
/// in ascending order. Reorders values.
template <class T>
T exact_lower_percentile(T* values, std::size_t n, double percentile) {
  detail::throw_if(check_percentile(percentile, "exact_lower_percentile"));
  if (n == 0) detail::fail(errc::empty_input, "exact_lower_percentile: no values");
  const std::size_t k = nearest_rank(n, percentile);
  std::nth_element(values, values + (n - k), values + n);
  return values[n - k];
}

// ---------------------------------------------------------------------------------------
// MSE
// ---------------------------------------------------------------------------------------

/// A candidate clip range [lo, hi] (lo <= hi).
struct range_candidate {
  double lo = 0.0;
  double hi = 0.0;
};

namespace detail {

// Double-double arithmetic (Dekker / Knuth error-free transformations): enough precision
// that prefix-moment differences keep every digit of a cell's moments.
struct dd {
  double hi = 0.0;
  double lo = 0.0;
};
inline dd dd_exact_sum(double a, double b) noexcept {
  const double s = a + b;
  const double bb = s - a;
  return {s, (a - (s - bb)) + (b - bb)};
}
inline dd dd_add(dd a, dd b) noexcept {
  const dd s = dd_exact_sum(a.hi, b.hi);
  return dd_exact_sum(s.hi, s.lo + a.lo + b.lo);
}
inline dd dd_sub(dd a, dd b) noexcept { return dd_add(a, dd{-b.hi, -b.lo}); }
inline dd dd_exact_product(double a, double b) noexcept {
  const double p = a * b;
  return {p, std::fma(a, b, -p)};
}
inline dd dd_mul(dd a, double b) noexcept {
  dd p = dd_exact_product(a.hi, b);
  return dd_exact_sum(p.hi, p.lo + a.lo * b);
}

inline std::size_t clamp_index(double g, std::size_t lo, std::size_t hi) noexcept {
  if (!(g > static_cast<double>(lo))) return lo;  // also NaN
  if (g >= static_cast<double>(hi)) return hi;
  return static_cast<std::size_t>(g);
}

}  // namespace detail

/// Evaluates the histogram MSE of many candidate ranges fast (see the file comment).
/// Holds prefix moments of the counts (3 arrays of size + 1, double or double-double) and
/// refers to the counts: the histogram must outlive it.
class histogram_mse_evaluator {
 public:
  explicit histogram_mse_evaluator(const hist_bins& h) : h_(h) {
    detail::throw_if(check_hist_bins(h, "histogram MSE"));
    const std::size_t n = h.size;
    inv_width_ = h.width > 0.0 ? 1.0 / h.width : 0.0;
    // Integer counts (a histogram that was never re-binned) with total * size^2 < 2^52:
    // plain double prefix moments are exact integers, and so is every difference below.
    double total = 0.0;
    exact_ = true;
    for (std::size_t j = 0; j < n; ++j) {
      total += h.counts[j];
      exact_ = exact_ && std::floor(h.counts[j]) == h.counts[j];
    }
    const double nd = static_cast<double>(n);
    exact_ = exact_ && total * nd * nd < 4503599627370496.0;  // 2^52
    if (exact_) {
      q0_.assign(n + 1, 0.0);
      q1_.assign(n + 1, 0.0);
      q2_.assign(n + 1, 0.0);
      for (std::size_t j = 0; j < n; ++j) {
        const double w = h.counts[j], jd = static_cast<double>(j);
        q0_[j + 1] = q0_[j] + w;
        q1_[j + 1] = q1_[j] + w * jd;
        q2_[j + 1] = q2_[j] + w * (jd * jd);
      }
      total_ = q0_[n];
      return;
    }
    p0_.assign(n + 1, detail::dd{});
    p1_.assign(n + 1, detail::dd{});
    p2_.assign(n + 1, detail::dd{});
    for (std::size_t j = 0; j < n; ++j) {
      const double w = h.counts[j];
      const double jd = static_cast<double>(j);
      p0_[j + 1] = detail::dd_add(p0_[j], detail::dd{w, 0.0});
      p1_[j + 1] = detail::dd_add(p1_[j], detail::dd_exact_product(w, jd));
      p2_[j + 1] = detail::dd_add(p2_[j], detail::dd_exact_product(w, jd * jd));  // j*j exact: j < 2^26
    }
    total_ = p0_[n].hi + p0_[n].lo;
  }

  const hist_bins& bins() const noexcept { return h_; }
  double total() const noexcept { return total_; }

  /// Mean squared error (data units squared) of fake-quantizing the bin centres on spec's
  /// grid with the parameters qparams_from_range(lo, hi, spec), weighted by the counts.
  double error(double lo, double hi, const qspec& spec) const {
    const qparams<double> p = qparams_from_range(lo, hi, spec);
    const double s = p.scale, z = static_cast<double>(p.zero_point);
    const std::int32_t qmin = spec.qmin(), qmax = spec.qmax();
    const double top = static_cast<double>(qmax);
    if (h_.width == 0.0) {  // constant histogram: one point mass at lo
      const double c = h_.lo;
      const double e = fake_quantize_value(c, s, p.zero_point, qmin, qmax) - c;
      return e * e;
    }
    auto level = [&](std::size_t j) { return quantize_value(h_.centre(j), s, p.zero_point, qmin, qmax); };
    // The same level without a division where the answer is certain: u = c * (1 / s) is
    // within |u| * 2^-52 of c / s, so when |u| < 2^30 and u's fraction is more than 1e-6 from
    // one half, rounding u gives what rounding c / s gives (ties and near-ties take the
    // literal path).
    const double inv_s = 1.0 / s, lo_q = static_cast<double>(qmin);
    auto fast_level = [&](std::size_t j) {
      const double u = h_.centre(j) * inv_s;
      const double f = std::floor(u), d = u - f;
      if (!(std::fabs(u) < 1073741824.0) || std::fabs(d - 0.5) <= 1e-6) return level(j);
      const double r = (d > 0.5 ? f + 1.0 : f) + z;
      return r < lo_q ? lo_q : (r > top ? top : r);
    };
    const std::size_t n = h_.size;
    const double inv_w = 1.0 / h_.width;
    double sum = 0.0;
    const double q_first = fast_level(0), q_last = fast_level(n - 1);
    if (q_last - q_first < static_cast<double>(n)) {
      // Level by level: the bins of level q end where centres reach the rounding boundary
      // (q - z + 0.5) * s (ties to even may keep some). Each boundary is guessed from that
      // value alone, so successive levels do not wait on each other, then confirmed with
      // the level function, which is monotone in j. An empty level gives an empty cell.
      std::size_t b = 0;
      for (double q = q_first; q < q_last; q += 1.0) {
        const double x = (q - z + 0.5) * s;
        std::size_t e = detail::clamp_index(std::ceil((x - h_.lo) * inv_w - 0.5), b, n);
        while (e > b && fast_level(e - 1) > q) --e;
        while (e < n && fast_level(e) <= q) ++e;
        if (e > b) sum += cell_error(b, e, (q - z) * s);
        b = e;
      }
      sum += cell_error(b, n, (q_last - z) * s);
      return sum / total_;
    }
    // More levels than bins (a fine grid over a coarse histogram): walk the bins instead,
    // one cell per level that holds data.
    std::size_t b = 0;
    double q = q_first;
    while (b < n) {
      std::size_t e = n;
      double next = top;
      if (q < top) {
        const double x = (q - z + 0.5) * s;
        e = detail::clamp_index(std::ceil((x - h_.lo) * inv_w - 0.5), b + 1, n);
        while (e > b + 1 && fast_level(e - 1) > q) --e;
        while (e < n && (next = fast_level(e)) <= q) ++e;
      }
      sum += cell_error(b, e, (q - z) * s);
      b = e;
      q = next;
    }
    return sum / total_;
  }

 private:
  // sum_{j in [b, e)} counts_j * (a - centre_j)^2. With k = j - b and centre_j =
  // centre_b + k w: w^2 * sum counts (D - k)^2, D = (a - centre_b) / w
  //   = w^2 * (D^2 W - 2 D K1 + K2), W = sum counts, K1 = sum counts k, K2 = sum counts k^2,
  // K1 and K2 shifted from the prefix moments: exactly (integer path) or in double-double.
  double cell_error(std::size_t b, std::size_t e, double a) const {
    const double bd = static_cast<double>(b);
    const double D = (a - h_.centre(b)) * inv_width_;
    double cell;
    if (exact_) {
      const double W = q0_[e] - q0_[b];
      if (W == 0.0) return 0.0;
      const double M1 = q1_[e] - q1_[b], M2 = q2_[e] - q2_[b];
      const double K1 = M1 - bd * W;
      const double K2 = (M2 - 2.0 * bd * M1) + bd * bd * W;
      cell = (W * D - 2.0 * K1) * D + K2;
    } else {
      const detail::dd W = detail::dd_sub(p0_[e], p0_[b]);
      if (W.hi == 0.0 && W.lo == 0.0) return 0.0;
      const detail::dd M1 = detail::dd_sub(p1_[e], p1_[b]);
      const detail::dd M2 = detail::dd_sub(p2_[e], p2_[b]);
      const detail::dd K1 = detail::dd_sub(M1, detail::dd_mul(W, bd));
      const detail::dd K2 =
          detail::dd_add(detail::dd_sub(M2, detail::dd_mul(M1, 2.0 * bd)), detail::dd_mul(detail::dd_mul(W, bd), bd));
      const detail::dd v =
          detail::dd_add(detail::dd_sub(detail::dd_mul(detail::dd_mul(W, D), D), detail::dd_mul(K1, 2.0 * D)), K2);
      cell = v.hi + v.lo;
    }
    return cell > 0.0 ? cell * h_.width * h_.width : 0.0;
  }

  hist_bins h_;
  double inv_width_ = 0.0;
  bool exact_ = false;
  std::vector<double> q0_, q1_, q2_;        // exact path
  std::vector<detail::dd> p0_, p1_, p2_;    // double-double path
  double total_ = 0.0;
};

/// The histogram MSE of one candidate range (builds an evaluator: O(bins)).
inline double histogram_mse(const hist_bins& h, double lo, double hi, const qspec& spec) {
  return histogram_mse_evaluator(h).error(lo, hi, spec);
}

namespace detail {
// Calls f(i) for i = min(start, n - 1), then every stride-th bin below n.
template <class F>
void for_candidate_bins(std::size_t n, std::size_t start, std::size_t stride, F f) {
  if (n == 0) return;
  if (stride == 0) fail(errc::invalid_argument, "MSE search: option stride = 0 (must be >= 1)");
  for (std::size_t i = std::min(start, n - 1);;) {
    f(i);
    if (n - i <= stride) break;
    i += stride;
  }
}
}  // namespace detail

/// modelopt's candidates on an |x| histogram: T = centre of bin i, i = min(start_bin,
/// size - 1), then every stride-th bin; the range is [-T, T], or [0, T] when one_sided.
inline std::vector<range_candidate> symmetric_candidates(const hist_bins& h, std::size_t start_bin, std::size_t stride,
                                                         bool one_sided) {
  std::vector<range_candidate> out;
  detail::for_candidate_bins(h.size, start_bin, stride, [&](std::size_t i) {
    const double t = h.centre(i);
    out.push_back({one_sided ? 0.0 : -t, t});
  });
  return out;
}

/// Affine "scale" candidates: [a L, a H], a = (i + 1) / size over the same bins i,
/// L = min(lo, 0), H = max(hi, 0); the last one (i = size - 1) is the full range.
inline std::vector<range_candidate> scale_candidates(const hist_bins& h, std::size_t start_bin, std::size_t stride) {
  std::vector<range_candidate> out;
  const double L = std::min(h.lo, 0.0), H = std::max(h.hi, 0.0);
  const double n = static_cast<double>(h.size);
  detail::for_candidate_bins(h.size, start_bin, stride, [&](std::size_t i) {
    const double a = (static_cast<double>(i) + 1.0) / n;
    out.push_back({a * L, a * H});
  });
  return out;
}

/// Affine "trim" candidates (PyTorch HistogramObserver's walk, see the file comment):
/// bin ranges [start, end] from the full range inwards, step = fraction of the total count
/// per move, in [1e-7, 0.5]. The range of [start, end] is [edge(start), edge(end + 1)].
inline std::vector<range_candidate> trim_candidates(const hist_bins& h, double step) {
  if (!(step >= 1e-7 && step <= 0.5))
    detail::fail(errc::invalid_argument, "MSE trim search: option trim_step = " + std::to_string(step) +
                                             " is outside [1e-7, 0.5]");
  detail::throw_if(check_hist_bins(h, "MSE trim search"));
  const std::size_t n = h.size;
  std::vector<double> cum(n);
  double acc = 0.0;
  for (std::size_t j = 0; j < n; ++j) cum[j] = acc += h.counts[j];
  const double total = acc;
  std::vector<range_candidate> out;
  out.push_back({h.edge(0), h.edge(n)});
  if (h.width == 0.0) return out;  // constant: every trim is the same point
  std::size_t start = 0, end = n - 1;
  // Cursors: lc = first index with cum >= alpha' total (non-decreasing, as alpha' and start
  // only grow), rc = last index with cum <= beta' total (non-increasing); kept across steps.
  std::size_t lc = 0;
  std::ptrdiff_t rc = static_cast<std::ptrdiff_t>(n) - 1;
  const auto steps = static_cast<std::uint64_t>(std::ceil(1.0 / step - 1e-9));
  std::uint64_t ka = 0, kb = 0;  // alpha = ka * step, beta = 1 - kb * step
  while (ka + kb < steps) {
    const double next_alpha = static_cast<double>(ka + 1) * step;
    const double next_beta = 1.0 - static_cast<double>(kb + 1) * step;
    lc = std::max(lc, start);
    while (lc < n && cum[lc] < next_alpha * total) ++lc;
    rc = std::min(rc, static_cast<std::ptrdiff_t>(end));
    while (rc >= 0 && cum[static_cast<std::size_t>(rc)] > next_beta * total) --rc;
    const std::size_t l = std::min(lc, end);
    const std::size_t r = rc < static_cast<std::ptrdiff_t>(start) ? start : static_cast<std::size_t>(rc);
    const bool moved = (l - start) > (end - r) ? (l != start) : (r != end);
    if ((l - start) > (end - r)) {
      start = l;
      ++ka;
    } else {
      end = r;
      ++kb;
    }
    if (moved) out.push_back({h.edge(start), h.edge(end + 1)});
  }
  return out;
}

/// The outcome of an MSE search.
struct mse_choice {
  range_candidate range;
  double error = 0.0;      ///< its histogram MSE
  std::size_t index = 0;   ///< its position in the candidate list
};

/// Evaluates every candidate and returns the first one with the least error.
inline mse_choice search_mse(const histogram_mse_evaluator& eval, const std::vector<range_candidate>& candidates,
                             const qspec& spec) {
  if (candidates.empty()) detail::fail(errc::invalid_argument, "MSE search: no candidate ranges");
  mse_choice best;
  for (std::size_t k = 0; k < candidates.size(); ++k) {
    const double e = eval.error(candidates[k].lo, candidates[k].hi, spec);
    if (k == 0 || e < best.error) {
      best.range = candidates[k];
      best.error = e;
      best.index = k;
    }
  }
  return best;
}

inline mse_choice search_mse(const hist_bins& h, const std::vector<range_candidate>& candidates, const qspec& spec) {
  return search_mse(histogram_mse_evaluator(h), candidates, spec);
}

QLIB_NAMESPACE_END
