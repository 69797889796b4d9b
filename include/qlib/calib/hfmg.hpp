// HFMG (Histogram Feature Map Glutton), Ascend AMCT's histogram search for activations:
// pure functions of a range histogram (observer/histogram.hpp's range_histogram keeps it;
// observer/hfmg.hpp streams batches into it).
//
// Algorithm (shared/specs/algorithms.md section 5; hicann/amct
// amct_pytorch/graph_based_compression/common_cpp/quantize_lib/src/hfmg.cpp), n bins over
// [min, max], bin width w = (max - min) / n:
// 1. Candidates (hfmg_candidates): step = max(ceil(total / 1e5), 1); L = 0, R = n - 1;
//    while R - L > ceil(n / 4): a left cursor walks from L while it is below the right one
//    and has passed fewer than step counts, then a right cursor from R likewise; the side
//    whose cursor skipped more bins is trimmed (ties trim the right) and (L, R) recorded.
// 2. Loss of (L, R) (hfmg_loss_per_bin, PyTorch HistogramObserver._get_norm's form): every
//    source bin i, density counts[i] / w, is mapped onto 2^b destination bins of width
//    (R - L + 1) w / 2^b starting at L (those left of L onto the first, right of R onto the
//    last); each piece integrates density * (x - centre)^2, density * (end^3 - begin^3) / 3.
// 3. All candidates are evaluated and the first with the smallest loss wins (AMCT:
//    std::min_element; PyTorch's observer stops at the first increase instead).
// 4. clip_min = min + L * w, clip_max = min + (R + 1) * w; the spec's rule (AMCT's with
//    qconvention::amct) turns the range into scale and offset.
//
// Speed (hfmg_losses): the per-bin loss is O(n) per candidate and there are up to 3n/4
// candidates. In units of the source bin width (bin i covers [i, i+1)) the loss of (L, R)
// is sum_k of the integral of rho(x) (x - c_k)^2 over destination bin k (the first
// reaching down to 0, the last up to n), i.e. dM2 - 2 c dM1 + c^2 dM0 with M0, M1, M2 the
// cumulative moments of the piecewise-constant density; summed by parts, it is the total
// squared distance to the last centre minus 2 dw times the sum, over the 2^b - 1 inner
// destination edges, of the integral of the CDF up to the edge (one lookup per edge from
// double-double prefix sums; detail::hfmg_loss_prefix). That is O(2^b) per candidate
// (255 edge evaluations for int8) instead of O(n). The candidates within the prefix sums'
// rounding bound of the best are re-scored with the per-bin form, so the pick equals the
// per-bin search's. Wide grids (2^b >= n) use the per-bin form directly. Measured
// (bench/amct_bench.cpp, a 4096-bin histogram of 10^6 Gaussian values, 1881 candidates,
// one thread, CPU time): 1.35 ms, against 240 ms for AMCT's structure (every bin of every
// candidate, pow(x, 3) as its GetNorm) and 60 ms for the same with multiplications.
//
// Differences from AMCT's CPU code, on purpose (as torchquant's hfmg.py):
// - source bins left of L use signed offsets, as PyTorch's _get_norm; AMCT computes
//   (index - L) in unsigned arithmetic, which sends every bin left of L to the last
//   destination bin with a huge distance (so it never trims mass off the left);
// - the loss is in units of w^2 and in double; AMCT sums floats in data units and returns a
//   loss of 0 when the destination width is below FLT_EPSILON (tiny tensors then pick the
//   first candidate);
// - counts are doubles with fractional parts from re-binning (observer/histogram.hpp);
//   step uses the total rounded to an integer, as torchquant does.
// Constant data (min == max) gives the range [min, min] without a search.
#pragma once

#include "../detail/algorithm.hpp"
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../config.hpp"

QLIB_NAMESPACE_BEGIN

/// One HFMG candidate: the bins [left, right] kept.
struct hfmg_candidate {
  std::uint32_t left = 0;
  std::uint32_t right = 0;
};

inline bool operator==(const hfmg_candidate& a, const hfmg_candidate& b) noexcept {
  return a.left == b.left && a.right == b.right;
}

namespace detail {
inline void check_hfmg_counts(const double* counts, std::size_t bins, const char* who) {
  if (counts == nullptr || bins == 0) fail(errc::empty_input, std::string(who) + ": empty histogram");
  if (bins > (std::size_t{1} << 24))
    fail(errc::invalid_argument, std::string(who) + ": " + std::to_string(bins) + " bins, more than 2^24");
  double total = 0.0;
  for (std::size_t j = 0; j < bins; ++j) {
    if (!(counts[j] >= 0.0) || !std::isfinite(counts[j]))
      fail(errc::invalid_argument,
           std::string(who) + ": count of bin " + std::to_string(j) + " is " + std::to_string(counts[j]));
    total += counts[j];
  }
  if (!(total > 0.0)) fail(errc::empty_input, std::string(who) + ": the histogram holds no counts");
}
inline void check_hfmg_bits(int bits, const char* who) {
  if (bits < 2 || bits > 16)
    fail(errc::invalid_argument, std::string(who) + ": option bits = " + std::to_string(bits) + " is out of range [2, 16]");
}
}  // namespace detail

/// HFMG's candidates, in the order AMCT records them (see the file comment, step 1).
inline std::vector<hfmg_candidate> hfmg_candidates(const double* counts, std::size_t bins) {
  detail::check_hfmg_counts(counts, bins, "hfmg_candidates");
  double total = 0.0;
  for (std::size_t j = 0; j < bins; ++j) total += counts[j];
  // AMCT: HfmgDivid(totalNum, STEP_DIVISOR = 100000), at least 1; MIN_BIN_RATIO = 4.
  const double step = std::max(std::ceil(std::nearbyint(total) / 100000.0), 1.0);
  const std::size_t min_bins = (bins + 3) / 4;
  std::size_t left = 0, right = bins - 1;
  std::vector<hfmg_candidate> out;
  while (right - left > min_bins) {
    std::size_t l = left, r = right;
    double left_sum = 0.0, right_sum = 0.0;
    while (l < r && left_sum < step) left_sum += counts[l++];
    while (l < r && right_sum < step) right_sum += counts[r--];
    if (right - r >= l - left) {
      right = r;
    } else {
      left = l;
    }
    out.push_back({static_cast<std::uint32_t>(left), static_cast<std::uint32_t>(right)});
  }
  return out;
}

/// The loss of (left, right) with dst_bins destination bins, source bin by source bin, in
/// units of the squared source bin width (the form of the file comment, step 2).
inline double hfmg_loss_per_bin(const double* counts, std::size_t bins, std::size_t left, std::size_t right,
                                std::uint32_t dst_bins) {
  const double dw = static_cast<double>(right - left + 1) / static_cast<double>(dst_bins);
  const double half = dw / 2.0;
  const double last = static_cast<double>(dst_bins - 1);
  const auto norm = [](double density, double begin, double end) {
    return density * (end * end * end - begin * begin * begin) / 3.0;
  };
  double loss = 0.0;
  for (std::size_t i = 0; i < bins; ++i) {
    if (counts[i] == 0.0) continue;
    const double begin = static_cast<double>(i) - static_cast<double>(left), end = begin + 1.0;
    const double first = std::min(std::max(std::floor(begin / dw), 0.0), last);
    const double final_bin = std::min(std::max(std::floor(end / dw), 0.0), last);
    const double c_first = (first + 0.5) * dw;
    if (first == final_bin) {
      loss += norm(counts[i], begin - c_first, end - c_first);
    } else {
      const double c_final = (final_bin + 0.5) * dw;
      loss += norm(counts[i], begin - c_first, half);
      loss += (final_bin - first - 1.0) * norm(counts[i], -half, half);
      loss += norm(counts[i], -half, end - c_final);
    }
  }
  return loss;
}

namespace detail {

/// What the O(2^b) loss needs of the histogram (bin i covers [i, i+1) with density c_i):
/// per bin the integral of the CDF up to the bin's left edge, G(i) = sum_{j<i} (F_j + c_j / 2)
/// as a double-double, the CDF F_i = sum_{j<i} c_j and c_i (one 32-byte entry per bin); and
/// the total moments about origin = bins / 2: t0 = sum c, t1 = sum c m, t2 = sum c (m^2 +
/// 1/12), m = i + 1/2 - origin.
struct hfmg_prefix_entry {
  double g_hi, g_lo, cdf, count;
};
struct hfmg_prefix {
  std::vector<hfmg_prefix_entry> e;
  double origin = 0.0, t0 = 0.0, t1 = 0.0, t2 = 0.0;
};

inline void two_sum_add(double* hi, double* lo, double b) noexcept {
  const double t = *hi + b;
  const double bb = t - *hi;
  *lo += (*hi - (t - bb)) + (b - bb);
  *hi = t;
}

inline hfmg_prefix make_hfmg_prefix(const double* c, std::size_t bins) {
  hfmg_prefix p;
  p.origin = static_cast<double>(bins) / 2.0;
  p.e.resize(bins);
  double g_hi = 0.0, g_lo = 0.0, f_hi = 0.0, f_lo = 0.0, t1_hi = 0.0, t1_lo = 0.0, t2_hi = 0.0, t2_lo = 0.0;
  for (std::size_t i = 0; i < bins; ++i) {
    const double cdf = f_hi + f_lo;
    p.e[i] = {g_hi, g_lo, cdf, c[i]};
    two_sum_add(&g_hi, &g_lo, cdf + 0.5 * c[i]);
    two_sum_add(&f_hi, &f_lo, c[i]);
    const double m = static_cast<double>(i) + 0.5 - p.origin;
    two_sum_add(&t1_hi, &t1_lo, c[i] * m);
    two_sum_add(&t2_hi, &t2_lo, c[i] * (m * m + 1.0 / 12.0));
  }
  p.t0 = f_hi + f_lo;
  p.t1 = t1_hi + t1_lo;
  p.t2 = t2_hi + t2_lo;
  return p;
}

/// The loss of (left, right) in O(2^b). Destination bin k spans [x_k, x_{k+1}] (x_0 = 0,
/// x_D = bins, x_k = left + k dw between) around c_k = left + (k + 1/2) dw. Summing
/// dM2 - 2 c_k dM1 + c_k^2 dF by parts (c_k - c_{k-1} = dw, c_k + c_{k-1} = 2 x_k) leaves
///   loss = sum_i c_i ((i + 1/2 - c_{D-1})^2 + 1/12) - 2 dw sum_{k=1}^{D-1} G(x_k),
/// with G(x) = integral of the CDF from 0 to x = G(i) + F_i f + c_i f^2 / 2 (x = i + f): one
/// lookup per destination edge. The two terms are large and nearly cancel: *magnitude gets
/// their size, the scale of the rounding error (double-double sums keep it at a few ulps).
inline double hfmg_loss_prefix(std::size_t bins, const hfmg_prefix& p, std::size_t left, std::size_t right,
                               std::uint32_t dst_bins, double* magnitude) {
  const double dw = static_cast<double>(right - left + 1) / static_cast<double>(dst_bins);
  const double l = static_cast<double>(left);
  const hfmg_prefix_entry* e = p.e.data();
  const std::int64_t last = static_cast<std::int64_t>(bins) - 1;
  const auto g_at = [&](std::uint32_t k) {
    const double x = l + static_cast<double>(k) * dw;
    std::int64_t i = static_cast<std::int64_t>(x);  // x >= 0
    i = i < last ? i : last;
    const hfmg_prefix_entry& b = e[i];
    const double f = x - static_cast<double>(i);
    return b.g_hi + (b.g_lo + f * (b.cdf + 0.5 * f * b.count));
  };
  // Two double-double accumulators (odd and even edges) halve the dependency chain.
  double s_hi = 0.0, s_lo = 0.0, u_hi = 0.0, u_lo = 0.0;
  std::uint32_t k = 1;
  for (; k + 1 < dst_bins; k += 2) {
    two_sum_add(&s_hi, &s_lo, g_at(k));
    two_sum_add(&u_hi, &u_lo, g_at(k + 1));
  }
  if (k < dst_bins) two_sum_add(&s_hi, &s_lo, g_at(k));
  two_sum_add(&s_hi, &s_lo, u_hi);
  const double sum_g = s_hi + (s_lo + u_lo);
  const double top = l + (static_cast<double>(dst_bins) - 0.5) * dw - p.origin;  // c_{D-1} - origin
  const double a = p.t2, b = 2.0 * top * p.t1, c = top * top * p.t0;
  *magnitude = std::fabs(a) + std::fabs(b) + std::fabs(c) + 2.0 * dw * std::fabs(sum_g);
  return ((a - b) + c) - 2.0 * dw * sum_g;
}

/// hfmg_losses with a per-candidate rounding scale (0 for the per-bin form).
inline std::vector<double> hfmg_losses_bounded(const double* counts, std::size_t bins,
                                               const std::vector<hfmg_candidate>& cands, std::uint32_t dst,
                                               std::vector<double>& magnitude) {
  std::vector<double> out(cands.size());
  magnitude.assign(cands.size(), 0.0);
  if (dst >= bins) {
    for (std::size_t k = 0; k < cands.size(); ++k)
      out[k] = hfmg_loss_per_bin(counts, bins, cands[k].left, cands[k].right, dst);
    return out;
  }
  const hfmg_prefix p = make_hfmg_prefix(counts, bins);
  for (std::size_t k = 0; k < cands.size(); ++k)
    out[k] = hfmg_loss_prefix(bins, p, cands[k].left, cands[k].right, dst, &magnitude[k]);
  return out;
}

}  // namespace detail

/// The loss of every candidate (units of w^2): O(2^b) each from prefix moments, or the
/// per-bin form when 2^b >= bins.
inline std::vector<double> hfmg_losses(const double* counts, std::size_t bins, const std::vector<hfmg_candidate>& cands,
                                       int bits) {
  detail::check_hfmg_counts(counts, bins, "hfmg_losses");
  detail::check_hfmg_bits(bits, "hfmg_losses");
  const std::uint32_t dst = std::uint32_t{1} << bits;
  for (const hfmg_candidate& c : cands)
    if (c.left > c.right || c.right >= bins)
      detail::fail(errc::invalid_argument, "hfmg_losses: candidate [" + std::to_string(c.left) + ", " +
                                               std::to_string(c.right) + "] is outside " + std::to_string(bins) +
                                               " bins");
  std::vector<double> magnitude;
  return detail::hfmg_losses_bounded(counts, bins, cands, dst, magnitude);
}

/// The outcome of an HFMG search.
template <class T>
struct hfmg_result {
  std::vector<hfmg_candidate> candidates;  ///< empty for constant data
  std::vector<double> losses;              ///< per candidate, units of w^2
  std::size_t best = 0;
  std::size_t rescored = 0;  ///< candidates re-scored with the per-bin form
  T clip_min = T(0), clip_max = T(0);
};

/// HFMG on counts[0..bins) over [lo, hi] for a b-bit grid. Fails on an empty histogram,
/// negative or non-finite counts, an invalid range or bits outside [2, 16].
template <class T>
hfmg_result<T> hfmg_search(const double* counts, std::size_t bins, double lo, double hi, int bits) {
  detail::check_hfmg_counts(counts, bins, "hfmg_search");
  detail::check_hfmg_bits(bits, "hfmg_search");
  if (!std::isfinite(lo) || !std::isfinite(hi) || lo > hi)
    detail::fail(errc::invalid_argument,
                 "hfmg_search: invalid range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  hfmg_result<T> r;
  if (lo == hi) {
    r.clip_min = r.clip_max = static_cast<T>(lo);
    return r;
  }
  r.candidates = hfmg_candidates(counts, bins);
  const double w = (hi - lo) / static_cast<double>(bins);
  if (r.candidates.empty()) {  // too few bins to trim (bins <= 2)
    r.clip_min = static_cast<T>(lo);
    r.clip_max = static_cast<T>(hi);
    return r;
  }
  const std::uint32_t dst = std::uint32_t{1} << bits;
  std::vector<double> magnitude;
  r.losses = detail::hfmg_losses_bounded(counts, bins, r.candidates, dst, magnitude);
  // Near the best: within 1e-9 relative, or within a generous bound on the prefix sums'
  // rounding (64 ulps of the terms' magnitude).
  const double best = *std::min_element(r.losses.begin(), r.losses.end());
  std::vector<std::size_t> near;
  for (std::size_t k = 0; k < r.losses.size(); ++k)
    if (r.losses[k] - best <= 1e-9 * std::fabs(best) + 1.5e-14 * magnitude[k]) near.push_back(k);
  r.best = near.front();
  if (near.size() > 1 && dst < bins) {
    for (std::size_t k : near)
      r.losses[k] = hfmg_loss_per_bin(counts, bins, r.candidates[k].left, r.candidates[k].right, dst);
    for (std::size_t k : near)
      if (r.losses[k] < r.losses[r.best]) r.best = k;
    r.rescored = near.size();
  }
  const hfmg_candidate& c = r.candidates[r.best];
  r.clip_min = static_cast<T>(lo + static_cast<double>(c.left) * w);
  r.clip_max = static_cast<T>(lo + static_cast<double>(c.right + 1) * w);
  return r;
}

QLIB_NAMESPACE_END
