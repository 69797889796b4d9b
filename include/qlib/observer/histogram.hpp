// Streaming histograms: the statistics behind the entropy (KL), percentile, MSE and HFMG
// calibrations. Counts are double (exact integers up to 2^53 values); memory is the bins,
// never the data.
//
// abs_histogram: histogram of |x| with a fixed bin width w, set by the first batch that is
//   not all zero: w = amax_first / num_bins (TensorRT, NVIDIA pytorch-quantization /
//   modelopt calib/histogram.py). Bin j covers [j*w, (j+1)*w); the last bin also holds its
//   right edge. When a later batch exceeds the range, bins of the same width are added:
//   growth::append adds just enough (n = ceil(amax / w), modelopt), growth::doubling doubles
//   the count as often as needed (NVIDIA MLPerf calibration.md: what TensorRT does). Zeros
//   seen before w is known are held in pending_zeros and land in bin 0 once w is set.
//   Exactness: with equal widths (same first batch) merge() adds counts bin for bin; any
//   split of the data into batches after the first gives the same counts, as long as no
//   later value sits on the first range's top edge (the first |x| max itself: clamped into
//   the last bin before the histogram grows, binned one bin up after).
//
// range_histogram: num_bins equal bins over [lo, hi], the smallest and largest values seen
//   (Ascend AMCT HFMG, algorithms.md section 5 step 1). A batch inside the range is added as
//   is; one that widens it moves the old counts onto the union range, each old bin's count
//   split over the new bins in proportion to the overlap (uniform density inside a bin).
//   Counts keep the fractional parts of a split (AMCT floors one part and gives the rest to
//   the next bin), so re-binning preserves the total. Constant data (lo == hi) puts its
//   count in bin num_bins / 2, as AMCT does. Exactness: batches inside the first range, and
//   merges of histograms with identical ranges, are exact; otherwise counts are re-binned
//   (merge order can change them in the last bits).
//
// Both expose the two halves of add() so a GPU can do the binning: prepare() fixes the
// range for a batch with known min/max and returns the bin rule (core/binning.hpp), and
// accumulate() adds integer counts computed with that rule by any device.
#pragma once

#include "../detail/algorithm.hpp"
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../core/binning.hpp"
#include "../core/check.hpp"
#include "../core/tensor_view.hpp"
#include "state.hpp"

QLIB_NAMESPACE_BEGIN

enum class histogram_growth : std::uint8_t { append, doubling };

/// The rule a batch is binned with (see core/binning.hpp). For abs_histogram `lo` is 0.
template <class T>
struct bin_rule {
  T lo = T(0);
  T inv_width = T(0);
  std::uint32_t bins = 0;
  bool constant = false;  ///< range_histogram with lo == hi: every value goes to bins / 2
};

/// Largest number of bins a histogram may have (also bounds the state on load).
constexpr std::uint32_t max_histogram_bins = 1u << 24;

namespace detail {

/// Which of core/binning.hpp's rules bin_values applies.
enum class bin_kind : std::uint8_t { abs, range };

/// Bin indices of B values: abs_bin_index / range_bin_index's arithmetic (same operations in
/// T, so the same indices), written branch-free with a fixed trip count so that compilers
/// vectorize it at -O2 (gcc's default -O2 cost model vectorizes only loops without a scalar
/// remainder). |x| by fabs instead of `x < 0 ? -x : x` (a branch in scalar code) differs
/// only in the sign of a zero, which bins the same. The int32 conversion equals the uint32
/// one of binning.hpp because indices are below 2^24.
template <std::size_t B, class T>
void block_bin_indices(const T* v, const bin_rule<T>& rule, bin_kind kind, std::uint32_t* idx) noexcept {
  const T last = static_cast<T>(rule.bins - 1);
  const T inv = rule.inv_width;
  if (kind == bin_kind::abs) {
    for (std::size_t i = 0; i < B; ++i) {
      T f = std::fabs(v[i]) * inv;
      f = f < last ? f : last;
      idx[i] = static_cast<std::uint32_t>(static_cast<std::int32_t>(f));
    }
  } else {
    const T lo = rule.lo;
    for (std::size_t i = 0; i < B; ++i) {
      T f = (v[i] - lo) * inv;
      f = f > T(0) ? f : T(0);
      f = f < last ? f : last;
      idx[i] = static_cast<std::uint32_t>(static_cast<std::int32_t>(f));
    }
  }
}

/// Counts of values[0..n) under rule into counts (size rule.bins), added. Indices are
/// computed in blocks of 256 (vectorized, above), then scattered into two interleaved
/// 32-bit sub-tables, eight increments per step. Measured on one core (AMD EPYC, 64 MiB of
/// float32, 2048 bins, -O2): the increments are the bound (about one per cycle); blocks of
/// 256 let the index computation overlap them better than 1024, and two sub-tables beat one
/// and four with gcc 12 (clang 14 is as fast with one).
template <class T>
void bin_values(const T* values, std::size_t n, const bin_rule<T>& rule, bin_kind kind,
                std::vector<std::uint64_t>& counts) {
  constexpr std::size_t block = 256;
  const std::size_t nb = rule.bins;
  std::vector<std::uint32_t> sub(2 * nb, 0);
  std::uint32_t* const t0 = sub.data();
  std::uint32_t* const t1 = t0 + nb;
  alignas(64) std::uint32_t idx[block];
  std::size_t since_flush = 0;
  auto flush = [&] {
    for (std::size_t j = 0; j < nb; ++j) {
      counts[j] += static_cast<std::uint64_t>(t0[j]) + t1[j];
      t0[j] = t1[j] = 0;
    }
    since_flush = 0;
  };
  std::size_t off = 0;
  for (; n - off >= block; off += block) {
    block_bin_indices<block>(values + off, rule, kind, idx);
    for (std::size_t i = 0; i < block; i += 8) {
      const std::uint32_t a0 = idx[i], a1 = idx[i + 1], a2 = idx[i + 2], a3 = idx[i + 3];
      const std::uint32_t a4 = idx[i + 4], a5 = idx[i + 5], a6 = idx[i + 6], a7 = idx[i + 7];
      ++t0[a0];
      ++t1[a1];
      ++t0[a2];
      ++t1[a3];
      ++t0[a4];
      ++t1[a5];
      ++t0[a6];
      ++t1[a7];
    }
    since_flush += block;
    if (since_flush > (std::size_t{1} << 31)) flush();  // uint32 sub-counters never overflow
  }
  const std::size_t rest = n - off;
  const T* v = values + off;
  for (std::size_t i = 0; i < rest; ++i)
    ++t0[kind == bin_kind::abs ? abs_bin_index(v[i], rule.inv_width, rule.bins)
                               : range_bin_index(v[i], rule.lo, rule.inv_width, rule.bins)];
  flush();
}

inline void check_bins(std::uint32_t bins, const char* who) {
  if (bins < 1 || bins > max_histogram_bins)
    fail(errc::invalid_argument, std::string(who) + ": option bins = " + std::to_string(bins) + " is outside [1, " +
                                     std::to_string(max_histogram_bins) + "]");
}

}  // namespace detail

/// Histogram of |x| with a fixed bin width that grows with the data range.
template <class T>
class abs_histogram {
 public:
  explicit abs_histogram(std::uint32_t num_bins = 2048, histogram_growth growth = histogram_growth::append)
      : num_bins_(num_bins), growth_(growth) {
    detail::check_bins(num_bins, "abs_histogram");
  }

  std::uint32_t num_bins() const noexcept { return num_bins_; }
  histogram_growth growth() const noexcept { return growth_; }
  /// Counts per bin; empty until a batch with a non-zero value arrives.
  const std::vector<double>& counts() const noexcept { return counts_; }
  /// Bin width; 0 until set.
  double bin_width() const noexcept { return width_; }
  double pending_zeros() const noexcept { return pending_zeros_; }
  double total() const noexcept {
    double t = pending_zeros_;
    for (double c : counts_) t += c;
    return t;
  }
  bool empty() const noexcept { return counts_.empty() && pending_zeros_ == 0.0; }

  /// Fixes the range for a batch whose min/max are mm and returns its bin rule; a batch of
  /// zeros before the width is known returns bins == 0 (call add_pending_zeros instead).
  bin_rule<T> prepare(minmax_t<T> mm) {
    const double amax = std::max(-static_cast<double>(mm.min), static_cast<double>(mm.max));
    bin_rule<T> rule;
    if (counts_.empty()) {
      if (amax == 0.0) return rule;
      width_ = amax / num_bins_;
      counts_.assign(num_bins_, 0.0);
      counts_[0] += pending_zeros_;
      pending_zeros_ = 0.0;
    }
    grow_to(amax, 0);
    rule.inv_width = abs_inv_width<T>(width_);
    rule.bins = static_cast<std::uint32_t>(counts_.size());
    return rule;
  }
  /// Adds integer counts binned with the rule prepare() returned.
  void accumulate(const std::uint64_t* counts, std::size_t n) {
    if (n != counts_.size())
      detail::fail(errc::invalid_argument, "abs_histogram: " + std::to_string(n) + " counts for " +
                                               std::to_string(counts_.size()) + " bins");
    for (std::size_t j = 0; j < n; ++j) counts_[j] += static_cast<double>(counts[j]);
  }
  void add_pending_zeros(double n) noexcept { pending_zeros_ += n; }

  /// Adds a batch the caller has checked (finite, not empty) and whose min/max are mm.
  void add(tensor_view<const T> x, minmax_t<T> mm) {
    const bin_rule<T> rule = prepare(mm);
    if (rule.bins == 0) {
      pending_zeros_ += static_cast<double>(x.size());
      return;
    }
    std::vector<std::uint64_t> c(rule.bins, 0);
    detail::bin_values(x.data(), x.size(), rule, detail::bin_kind::abs, c);
    accumulate(c.data(), c.size());
  }

  /// Adds other's counts. Exact when both widths are equal; otherwise the finer histogram is
  /// re-binned onto the coarser width (uniform density inside a bin).
  void merge(const abs_histogram& other) {
    if (other.num_bins_ != num_bins_ || other.growth_ != growth_)
      detail::fail(errc::invalid_argument, "abs_histogram: cannot merge histograms with different options");
    if (other.counts_.empty()) {
      pending_zeros_ += other.pending_zeros_;
      flush_pending();
      return;
    }
    if (counts_.empty()) {
      counts_ = other.counts_;
      width_ = other.width_;
      pending_zeros_ += other.pending_zeros_;
      flush_pending();
      return;
    }
    // Everything is computed aside first, so a failure leaves this histogram unchanged.
    std::vector<double> theirs = other.counts_;
    std::vector<double> mine = counts_;
    double width = width_;
    if (other.width_ > width_) {
      mine = rebin(mine, width_, other.width_);
      width = other.width_;
    } else if (other.width_ < width_) {
      theirs = rebin(theirs, other.width_, width_);
    }
    const std::size_t need = bins_needed(mine.size(), width, static_cast<double>(theirs.size()) * width, theirs.size());
    if (need > mine.size()) mine.resize(need, 0.0);
    for (std::size_t j = 0; j < theirs.size(); ++j) mine[j] += theirs[j];
    counts_ = std::move(mine);
    width_ = width;
    pending_zeros_ += other.pending_zeros_;
    flush_pending();
  }

  void reset() noexcept {
    counts_.clear();
    width_ = 0.0;
    pending_zeros_ = 0.0;
  }

  void save(state_writer& w) const {
    w.put(num_bins_);
    w.put(static_cast<std::uint8_t>(growth_));
    w.put(width_);
    w.put(pending_zeros_);
    w.put_array(counts_);
  }
  static abs_histogram load(state_reader& r) {
    const auto bins = r.get<std::uint32_t>();
    const auto growth = r.get<std::uint8_t>();
    if (bins < 1 || bins > max_histogram_bins) r.fail_at("histogram bins " + std::to_string(bins) + " out of range");
    if (growth > 1) r.fail_at("unknown histogram growth " + std::to_string(growth));
    abs_histogram h(bins, static_cast<histogram_growth>(growth));
    h.width_ = r.get<double>();
    h.pending_zeros_ = r.get<double>();
    h.counts_ = r.get_array<double>(max_histogram_bins);
    const bool started = !h.counts_.empty();
    if (!(h.pending_zeros_ >= 0.0) || !std::isfinite(h.pending_zeros_) || (started && h.pending_zeros_ != 0.0))
      r.fail_at("invalid pending zero count");
    if (started ? !(h.width_ > 0.0 && std::isfinite(h.width_)) || h.counts_.size() < bins : h.width_ != 0.0)
      r.fail_at("bin width and counts disagree");
    for (double c : h.counts_)
      if (!(c >= 0.0) || !std::isfinite(c)) r.fail_at("a bin count is negative or not finite");
    return h;
  }

 private:
  void flush_pending() {
    if (!counts_.empty()) {
      counts_[0] += pending_zeros_;
      pending_zeros_ = 0.0;
    }
  }
  // Adds bins of the same width until the range covers amax and holds at least `bins` bins.
  void grow_to(double amax, std::size_t bins) {
    const std::size_t need = bins_needed(counts_.size(), width_, amax, bins);
    if (need > counts_.size()) counts_.resize(need, 0.0);
  }
  // The bin count that covers amax and holds at least `bins` bins, grown from n by this
  // histogram's rule; fails (before anything changes) past max_histogram_bins.
  std::size_t bins_needed(std::size_t n, double width, double amax, std::size_t bins) const {
    std::size_t need = std::max(bins, n);
    // amax / width can exceed a whole number of bins by an ulp (amax / (amax / n) is not
    // always n in floating point): a ratio within a relative 1e-12 above an integer counts
    // as that integer, so the batch that set the width, or one with the same maximum, adds
    // no bin (its top value lands in the last bin, which holds its right edge).
    const double cover = std::ceil(amax / width * (1.0 - 1e-12));
    if (cover > static_cast<double>(max_histogram_bins))
      detail::fail(errc::invalid_argument, "abs_histogram: a value of " + std::to_string(amax) + " needs more than " +
                                               std::to_string(max_histogram_bins) + " bins of width " +
                                               std::to_string(width) + " (the first batch set the width)");
    need = std::max(need, static_cast<std::size_t>(cover));
    if (growth_ == histogram_growth::doubling) {
      std::size_t m = n;
      while (m < need) m *= 2;
      need = m;
    }
    if (need > max_histogram_bins)
      detail::fail(errc::invalid_argument, "abs_histogram: growing to " + std::to_string(need) + " bins exceeds " +
                                               std::to_string(max_histogram_bins) + " bins");
    return need;
  }
  // Re-bins counts of width w onto the coarser width w2: the cumulative count, linear inside
  // each source bin, sampled at the new edges.
  static std::vector<double> rebin(const std::vector<double>& counts, double w, double w2) {
    const std::size_t n = counts.size();
    const std::size_t m = static_cast<std::size_t>(std::ceil(static_cast<double>(n) * w / w2));
    std::vector<double> cum(n + 1, 0.0);
    for (std::size_t j = 0; j < n; ++j) cum[j + 1] = cum[j] + counts[j];
    std::vector<double> out(m, 0.0);
    double prev = 0.0;
    for (std::size_t k = 1; k <= m; ++k) {
      double pos = std::min(static_cast<double>(k) * (w2 / w), static_cast<double>(n));
      std::size_t j = std::min(static_cast<std::size_t>(pos), n - 1);
      const double at = cum[j] + (pos - static_cast<double>(j)) * counts[j];
      out[k - 1] = at - prev;
      prev = at;
    }
    return out;
  }

  std::uint32_t num_bins_;
  histogram_growth growth_;
  std::vector<double> counts_;
  double width_ = 0.0;
  double pending_zeros_ = 0.0;
};

/// Histogram of num_bins equal bins over the observed [lo, hi].
template <class T>
class range_histogram {
 public:
  explicit range_histogram(std::uint32_t num_bins = 4096) : num_bins_(num_bins) {
    detail::check_bins(num_bins, "range_histogram");
  }

  std::uint32_t num_bins() const noexcept { return num_bins_; }
  const std::vector<double>& counts() const noexcept { return counts_; }
  bool empty() const noexcept { return counts_.empty(); }
  /// The range (valid when !empty()).
  double lo() const noexcept { return lo_; }
  double hi() const noexcept { return hi_; }
  double bin_width() const noexcept { return (hi_ - lo_) / num_bins_; }
  double total() const noexcept {
    double t = 0.0;
    for (double c : counts_) t += c;
    return t;
  }
  /// Left edge of bin j (j = num_bins gives hi exactly).
  double edge(std::size_t j) const noexcept {
    return j >= num_bins_ ? hi_ : lo_ + static_cast<double>(j) * ((hi_ - lo_) / num_bins_);
  }

  /// Moves the histogram onto the union of its range and [mm.min, mm.max]; returns the rule.
  bin_rule<T> prepare(minmax_t<T> mm) {
    const double l = static_cast<double>(mm.min), h = static_cast<double>(mm.max);
    if (counts_.empty()) {
      counts_.assign(num_bins_, 0.0);
      lo_ = l;
      hi_ = h;
    } else if (l < lo_ || h > hi_) {
      const double nl = std::min(lo_, l), nh = std::max(hi_, h);
      counts_ = moved(counts_, lo_, hi_, nl, nh);
      lo_ = nl;
      hi_ = nh;
    }
    bin_rule<T> rule;
    rule.bins = num_bins_;
    rule.lo = static_cast<T>(lo_);
    rule.constant = lo_ == hi_;
    rule.inv_width = rule.constant ? T(0) : range_inv_width<T>(lo_, hi_, num_bins_);
    return rule;
  }
  void accumulate(const std::uint64_t* counts, std::size_t n) {
    if (n != counts_.size())
      detail::fail(errc::invalid_argument, "range_histogram: " + std::to_string(n) + " counts for " +
                                               std::to_string(counts_.size()) + " bins");
    for (std::size_t j = 0; j < n; ++j) counts_[j] += static_cast<double>(counts[j]);
  }

  /// Adds a batch the caller has checked (finite, not empty) and whose min/max are mm.
  void add(tensor_view<const T> x, minmax_t<T> mm) {
    const bin_rule<T> rule = prepare(mm);
    if (rule.constant) {
      counts_[num_bins_ / 2] += static_cast<double>(x.size());
      return;
    }
    std::vector<std::uint64_t> c(rule.bins, 0);
    detail::bin_values(x.data(), x.size(), rule, detail::bin_kind::range, c);
    accumulate(c.data(), c.size());
  }

  /// Folds other in: both re-binned onto the union range and added.
  void merge(const range_histogram& other) {
    if (other.num_bins_ != num_bins_)
      detail::fail(errc::invalid_argument, "range_histogram: cannot merge " + std::to_string(other.num_bins_) +
                                               " bins into " + std::to_string(num_bins_));
    if (other.counts_.empty()) return;
    if (counts_.empty()) {
      *this = other;
      return;
    }
    const double nl = std::min(lo_, other.lo_), nh = std::max(hi_, other.hi_);
    std::vector<double> mine = moved(counts_, lo_, hi_, nl, nh);
    const std::vector<double> theirs = moved(other.counts_, other.lo_, other.hi_, nl, nh);
    for (std::size_t j = 0; j < mine.size(); ++j) mine[j] += theirs[j];
    counts_ = std::move(mine);
    lo_ = nl;
    hi_ = nh;
  }

  void reset() noexcept {
    counts_.clear();
    lo_ = hi_ = 0.0;
  }

  void save(state_writer& w) const {
    w.put(num_bins_);
    w.put(lo_);
    w.put(hi_);
    w.put_array(counts_);
  }
  static range_histogram load(state_reader& r) {
    const auto bins = r.get<std::uint32_t>();
    if (bins < 1 || bins > max_histogram_bins) r.fail_at("histogram bins " + std::to_string(bins) + " out of range");
    range_histogram h(bins);
    h.lo_ = r.get<double>();
    h.hi_ = r.get<double>();
    h.counts_ = r.get_array<double>(max_histogram_bins);
    if (!h.counts_.empty() && h.counts_.size() != bins) r.fail_at("counts and bins disagree");
    if (!std::isfinite(h.lo_) || !std::isfinite(h.hi_) || h.lo_ > h.hi_ || (h.counts_.empty() && (h.lo_ != 0.0 || h.hi_ != 0.0)))
      r.fail_at("invalid histogram range");
    for (double c : h.counts_)
      if (!(c >= 0.0) || !std::isfinite(c)) r.fail_at("a bin count is negative or not finite");
    return h;
  }

 private:
  // counts over [lo, hi] re-binned onto [nl, nh] (a superset): the cumulative count, linear
  // inside each old bin, evaluated at the new edges and differenced.
  std::vector<double> moved(const std::vector<double>& counts, double lo, double hi, double nl, double nh) const {
    const std::size_t n = num_bins_;
    if (lo == nl && hi == nh) return counts;
    std::vector<double> out(n, 0.0);
    const double nw = (nh - nl) / static_cast<double>(n);
    if (lo == hi) {  // a point mass at lo lands in the one new bin that contains it
      double total = 0.0;
      for (double c : counts) total += c;
      const std::size_t at = std::min(static_cast<std::size_t>((lo - nl) / nw), n - 1);
      out[at] = total;
      return out;
    }
    std::vector<double> cum(n + 1, 0.0);
    for (std::size_t j = 0; j < n; ++j) cum[j + 1] = cum[j] + counts[j];
    const double per_old = static_cast<double>(n) / (hi - lo);
    double prev = 0.0;
    for (std::size_t k = 0; k <= n; ++k) {
      const double e = k == n ? nh : nl + static_cast<double>(k) * nw;
      double pos = std::min(std::max((e - lo) * per_old, 0.0), static_cast<double>(n));
      const std::size_t j = std::min(static_cast<std::size_t>(pos), n - 1);
      const double at = cum[j] + (pos - static_cast<double>(j)) * counts[j];
      if (k > 0) out[k - 1] = std::max(at - prev, 0.0);
      prev = at;
    }
    return out;
  }

  std::uint32_t num_bins_;
  std::vector<double> counts_;
  double lo_ = 0.0, hi_ = 0.0;
};

QLIB_NAMESPACE_END
