// Entropy (KL-divergence) observer: streams batches into a histogram and computes the
// KL-optimal range with calib/entropy.hpp. Per tensor (per-channel data is flattened).
// Source: shared/specs/algorithms.md section 2.
//
// Histogram per variant:
//   - tensorrt, modelopt: qlib::abs_histogram (observer/histogram.hpp): |x| with the bin width
//     fixed by the first non-zero batch (amax / bins), grown by appending bins (modelopt) or
//     doubling the count (MLPerf's description of TensorRT). Result (-T, T); when no negative
//     value was ever seen and the spec is unsigned or affine, (0, T): an unsigned or affine
//     grid then keeps all its steps for the data (the Python predecessor's commit b927eeb,
//     "entropy: one-sided range only for data never seen negative").
//   - onnxruntime: centered_histogram below, ORT's HistogramCollector.collect_value /
//     merge_histogram (onnxruntime/python/tools/quantization/calibrate.py): n bins over
//     [-t, t], t = the first batch's max |x|; a batch within t is binned onto the same bins; a
//     wider one adds whole bins of the same stride 2t/n on both sides (t grows to
//     h * stride + t) and the old counts keep their bins. qlib::range_histogram does not fit:
//     it spans [min, max], not [-t, t], and re-bins old counts proportionally when it grows.
//     Result: ORT's (lo, hi) as get_entropy_threshold returns it, the chosen slice's edges
//     clamped to the data's min and max; qparams_from_range then applies the spec.
//   The arithmetic follows numpy >= 2 in the data's type T (float32 data: float32, as ORT
//   runs): the growth step (numpy's floor division), np.histogram's edges (linspace: k * step
//   + lo) and its bin rule (index from (x - lo) / (hi - lo) * n, corrected against the edges;
//   values outside the range are dropped, as numpy does). The compiler must not contract
//   a * b + c into an FMA (the default on x86-64; use -ffp-contract=off elsewhere).
//
// merge(): abs variants add the other histogram bin for bin (exact: the same counts as one
// observer that saw both streams) when both bin widths are equal, i.e. both first non-zero
// batches had the same max |x| (bitwise); otherwise abs_histogram::merge re-bins the finer
// histogram onto the coarser width (uniform density inside a bin: approximate). The
// onnxruntime histogram adds bin for bin when both have the same stride 2t/n (bitwise) and
// their bins line up (the wider one then holds the narrower one in its middle bins: equal
// thresholds, or histograms grown from the same first threshold); otherwise the one with
// the coarser stride grows by ORT's rule to cover the other, whose counts are spread over it
// in proportion to the overlap (approximate). Splitting data into batches differently
// changes the first batch, hence the bin width: not exact in general either.
#pragma once

#include "../detail/algorithm.hpp"
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "../calib/entropy.hpp"
#include "../config.hpp"
#include "../core/check.hpp"
#include "../core/qparams.hpp"
#include "../core/tensor_view.hpp"
#include "histogram.hpp"
#include "result.hpp"
#include "state.hpp"

QLIB_NAMESPACE_BEGIN

namespace detail {

/// numpy's floor division of floats (npy_divmod in numpy/_core/src/npymath/npy_math_internal.h.src),
/// in T: fmod, then (a - mod) / b, floored with its half-correction.
template <class T>
T numpy_floor_divide(T a, T b) {
  T mod = std::fmod(a, b);
  T div = (a - mod) / b;
  if (mod != T(0) && ((b < T(0)) != (mod < T(0)))) div -= T(1);
  if (div == T(0)) return std::copysign(T(0), a / b);
  T floordiv = std::floor(div);
  if (div - floordiv > T(0.5)) floordiv += T(1);
  return floordiv;
}

}  // namespace detail

/// ONNX Runtime's signed histogram: n bins over [-t, t], growing by whole bins on both sides.
template <class T>
class centered_histogram {
 public:
  explicit centered_histogram(std::uint32_t num_bins = 128) : num_bins_(num_bins) {
    detail::check_bins(num_bins, "centered_histogram");
  }

  std::uint32_t num_bins() const noexcept { return num_bins_; }
  const std::vector<double>& counts() const noexcept { return counts_; }
  bool empty() const noexcept { return counts_.empty(); }
  /// t: the half range (0 while only zeros were seen; the bins then span [-0.5, 0.5]).
  T threshold() const noexcept { return t_; }
  T min() const noexcept { return min_; }
  T max() const noexcept { return max_; }
  double total() const noexcept {
    double s = 0.0;
    for (double c : counts_) s += c;
    return s;
  }

  /// The bin edges numpy gives: linspace(lo, hi, n + 1) in T with lo = -t, hi = t (or
  /// -0.5, 0.5 when t == 0): k * ((hi - lo) / n) + lo, the last edge hi exactly.
  std::vector<double> edges() const { return edges_of(t_, counts_.size()); }

  /// The number of bins after a batch with min/max mm (to validate before adding).
  double bins_after(minmax_t<T> mm) const {
    const T thr = std::max(std::fabs(mm.min), std::fabs(mm.max));
    if (counts_.empty()) return num_bins_;
    const double n = static_cast<double>(counts_.size());
    if (thr <= t_ || t_ == T(0)) return n;
    const T half = grow_half(thr);
    return n + 2.0 * static_cast<double>(half);
  }

  /// Adds a checked batch (finite, not empty) with min/max mm (ORT's collect_value).
  void add(tensor_view<const T> x, minmax_t<T> mm) {
    const T thr = std::max(std::fabs(mm.min), std::fabs(mm.max));
    if (counts_.empty()) {
      counts_.assign(num_bins_, 0.0);
      bin_into(x, thr, counts_);
      t_ = thr;
      min_ = mm.min;
      max_ = mm.max;
      return;
    }
    const std::size_t n = counts_.size();
    if (thr <= t_) {
      bin_into(x, t_, counts_);
    } else if (t_ == T(0)) {
      bin_into(x, thr, counts_);  // the old bins (zeros at n / 2) line up with the new ones
      t_ = thr;
    } else {
      const T half = grow_half(thr);
      if (!(static_cast<double>(n) + 2.0 * static_cast<double>(half) <= static_cast<double>(max_histogram_bins)))
        detail::fail(errc::invalid_argument, "centered_histogram: |x| = " + detail::value_str(thr) + " needs more than " +
                                                 std::to_string(max_histogram_bins) + " bins of stride " + detail::value_str(stride()));
      const std::size_t h = static_cast<std::size_t>(half);
      std::vector<double> grown(n + 2 * h, 0.0);
      const T new_t = half * stride() + t_;
      bin_into(x, new_t, grown);
      for (std::size_t j = 0; j < n; ++j) grown[h + j] += counts_[j];
      counts_ = std::move(grown);
      t_ = new_t;
    }
    min_ = std::min(min_, mm.min);
    max_ = std::max(max_, mm.max);
  }

  /// Adds other's counts (same num_bins); see the file comment for when this is exact.
  void merge(const centered_histogram& other) {
    if (other.num_bins_ != num_bins_)
      detail::fail(errc::invalid_argument, "centered_histogram: cannot merge " + std::to_string(other.num_bins_) +
                                               " bins into " + std::to_string(num_bins_));
    if (other.counts_.empty()) return;
    if (counts_.empty()) {
      *this = other;
      return;
    }
    const T lo = std::min(min_, other.min_), hi = std::max(max_, other.max_);
    merge_counts(other);
    min_ = lo;
    max_ = hi;
  }

  void reset() noexcept {
    counts_.clear();
    t_ = min_ = max_ = T(0);
  }

  void save(state_writer& w) const {
    w.put(num_bins_);
    w.put(t_);
    w.put(min_);
    w.put(max_);
    w.put_array(counts_);
  }
  static centered_histogram load(state_reader& r) {
    const auto bins = r.get<std::uint32_t>();
    if (bins < 1 || bins > max_histogram_bins) r.fail_at("histogram bins " + std::to_string(bins) + " out of range");
    centered_histogram h(bins);
    h.t_ = r.get<T>();
    h.min_ = r.get<T>();
    h.max_ = r.get<T>();
    h.counts_ = r.get_array<double>(max_histogram_bins);
    if (!std::isfinite(h.t_) || h.t_ < T(0) || !std::isfinite(h.min_) || !std::isfinite(h.max_) || h.min_ > h.max_)
      r.fail_at("invalid histogram threshold or range");
    const std::size_t n = h.counts_.size();
    if (n == 0 ? (h.t_ != T(0) || h.min_ != T(0) || h.max_ != T(0))
               : (n < bins || (n - bins) % 2 != 0 || (h.t_ == T(0) && n != bins)))
      r.fail_at("bin count " + std::to_string(n) + " does not fit " + std::to_string(bins) + " first bins");
    for (double c : h.counts_)
      if (!(c >= 0.0) || !std::isfinite(c)) r.fail_at("a bin count is negative or not finite");
    return h;
  }

 private:
  T stride() const { return T(2) * t_ / static_cast<T>(counts_.size()); }
  // ORT: int((new_t - old_t) // stride + 1), in T.
  T grow_half(T thr) const { return detail::numpy_floor_divide(thr - t_, stride()) + T(1); }

  static void outer(T t, T& lo, T& hi) {
    lo = -t;
    hi = t;
    if (lo == hi) {  // numpy expands an empty range by 0.5 on each side
      lo = lo - T(0.5);
      hi = hi + T(0.5);
    }
  }
  static std::vector<double> edges_of(T t, std::size_t n) {
    T lo, hi;
    outer(t, lo, hi);
    const T step = (hi - lo) / static_cast<T>(n);
    std::vector<double> e(n + 1);
    for (std::size_t k = 0; k < n; ++k) {
      const T scaled = static_cast<T>(k) * step;
      e[k] = static_cast<double>(scaled + lo);
    }
    e[n] = static_cast<double>(hi);
    return e;
  }
  // np.histogram(x, n, range=(-t, t)) added into counts (n = counts.size()).
  static void bin_into(tensor_view<const T> x, T t, std::vector<double>& counts) {
    const std::size_t n = counts.size();
    T lo, hi;
    outer(t, lo, hi);
    const std::vector<double> e64 = edges_of(t, n);
    std::vector<T> e(n + 1);
    for (std::size_t k = 0; k <= n; ++k) e[k] = static_cast<T>(e64[k]);
    const T denom = hi - lo, scale = static_cast<T>(n);
    std::vector<std::uint64_t> c(n, 0);
    for (const T v : x) {
      if (!(v >= lo && v <= hi)) continue;  // numpy drops values outside the range
      const T f = ((v - lo) / denom) * scale;
      std::size_t k = static_cast<std::size_t>(f);
      if (k >= n) k = n - 1;
      if (v < e[k] && k > 0) --k;
      if (k + 1 < n && v >= e[k + 1]) ++k;
      ++c[k];
    }
    for (std::size_t k = 0; k < n; ++k) counts[k] += static_cast<double>(c[k]);
  }

  // merge() without the min/max bookkeeping.
  void merge_counts(const centered_histogram& other) {
    if (other.t_ == T(0)) {  // zeros only: their mass sits at 0
      counts_[zero_bin()] += other.total();
      return;
    }
    if (t_ == T(0)) {
      const double zeros = total();
      counts_ = other.counts_;
      t_ = other.t_;
      counts_[zero_bin()] += zeros;
      return;
    }
    const std::size_t n = counts_.size(), m = other.counts_.size();
    if (stride() == other.stride() && (n % 2) == (m % 2)) {  // same bins, centred: offset add
      if (m > n) {
        std::vector<double> grown = other.counts_;
        const std::size_t off = (m - n) / 2;
        for (std::size_t j = 0; j < n; ++j) grown[off + j] += counts_[j];
        counts_ = std::move(grown);
        t_ = other.t_;
      } else {
        const std::size_t off = (n - m) / 2;
        for (std::size_t j = 0; j < m; ++j) counts_[off + j] += other.counts_[j];
      }
      return;
    }
    // Different strides: the coarser histogram is the base; it grows by ORT's rule to cover
    // the other, whose counts are spread over it in proportion to the overlap.
    centered_histogram base = stride() >= other.stride() ? *this : other;
    const centered_histogram& src = stride() >= other.stride() ? other : *this;
    if (src.t_ > base.t_) {
      const std::size_t bn = base.counts_.size();
      const std::size_t h = static_cast<std::size_t>(base.grow_half(src.t_));
      std::vector<double> grown(bn + 2 * h, 0.0);
      for (std::size_t j = 0; j < bn; ++j) grown[h + j] = base.counts_[j];
      base.t_ = static_cast<T>(h) * base.stride() + base.t_;
      base.counts_ = std::move(grown);
    }
    const std::vector<double> be = base.edges(), se = src.edges();
    const std::size_t bn = base.counts_.size();
    std::size_t k = 0;
    for (std::size_t j = 0; j < src.counts_.size(); ++j) {
      const double c = src.counts_[j];
      if (c == 0.0) continue;
      const double a = se[j], b = se[j + 1];
      while (k + 1 < bn && be[k + 1] <= a) ++k;
      // Overlaps with the base bins; a source bin that rounding leaves partly outside the
      // base range gives all its count to the bins it overlaps (or the nearest one).
      std::size_t q_end = k;
      double inside = 0.0;
      for (std::size_t q = k; q < bn; ++q) {
        inside += std::max(0.0, std::min(b, be[q + 1]) - std::max(a, be[q]));
        q_end = q + 1;
        if (be[q + 1] >= b) break;
      }
      if (!(inside > 0.0)) {
        base.counts_[std::min(k, bn - 1)] += c;
        continue;
      }
      for (std::size_t q = k; q < q_end; ++q) {
        const double overlap = std::max(0.0, std::min(b, be[q + 1]) - std::max(a, be[q]));
        base.counts_[q] += c * (overlap / inside);
      }
    }
    counts_ = std::move(base.counts_);
    t_ = base.t_;
  }
  std::size_t zero_bin() const noexcept { return counts_.size() / 2; }

  std::uint32_t num_bins_;
  std::vector<double> counts_;
  T t_ = T(0), min_ = T(0), max_ = T(0);
};

/// Options of entropy_observer. Zero levels or start_bin mean "from the variant and spec":
/// levels = 2^(b-1) for a signed spec, 2^b unsigned (modelopt's 1 << (bits - 1 + unsigned);
/// one less for mlperf_centre; 128 for onnxruntime); start_bin = levels for published levels,
/// else 128.
struct entropy_observer_options {
  qspec spec{};
  entropy_options search = entropy_options::tensorrt(0);
  std::uint32_t bins = 2048;  ///< histogram bins of the first batch (ORT: num_bins)
  histogram_growth growth = histogram_growth::append;
  std::string name;  ///< appears in error messages

  /// TensorRT as published: 2048 bins, appended growth.
  static entropy_observer_options tensorrt(qspec spec = {}) {
    entropy_observer_options o;
    o.spec = spec;
    return o;
  }
  /// TensorRT as NVIDIA's MLPerf calibration.md describes it: 1024 first bins, doubling.
  static entropy_observer_options tensorrt_mlperf(qspec spec = {}) {
    entropy_observer_options o;
    o.spec = spec;
    o.search = entropy_options::tensorrt_mlperf(0);
    o.search.start_bin = 0;
    o.bins = 1024;
    o.growth = histogram_growth::doubling;
    return o;
  }
  /// NVIDIA pytorch-quantization / Model Optimizer HistogramCalibrator("entropy").
  static entropy_observer_options modelopt(qspec spec = {}) {
    entropy_observer_options o;
    o.spec = spec;
    o.search = entropy_options::modelopt(0, 0);
    return o;
  }
  /// ONNX Runtime's EntropyCalibrater (defaults num_bins = 128, num_quantized_bins = 128).
  static entropy_observer_options onnxruntime(qspec spec = {}, std::uint32_t num_bins = 128,
                                              std::uint32_t num_quantized_bins = 128) {
    entropy_observer_options o;
    o.spec = spec;
    o.search = entropy_options::onnxruntime(num_quantized_bins);
    o.bins = num_bins;
    return o;
  }
};

inline bool operator==(const entropy_options& a, const entropy_options& b) noexcept {
  return a.variant == b.variant && a.levels == b.levels && a.start_bin == b.start_bin && a.stride == b.stride &&
         a.include_unclipped == b.include_unclipped && a.level_rule == b.level_rule && a.threshold_rule == b.threshold_rule &&
         a.first_bin == b.first_bin && a.ties == b.ties && a.empty_q_wins == b.empty_q_wins &&
         a.unclipped_if_all_infinite == b.unclipped_if_all_infinite && a.tie_tolerance == b.tie_tolerance &&
         a.smoothing_eps == b.smoothing_eps &&
         a.first_bins == b.first_bins;
}

template <class T = float>
class entropy_observer {
 public:
  using value_type = T;
  static constexpr const char* kind = "entropy";
  static constexpr std::uint16_t kind_version = 1;

  explicit entropy_observer(entropy_observer_options options = {})
      : opt_(std::move(options)), abs_(valid_bins(opt_), opt_.growth), signed_(valid_bins(opt_)) {
    detail::throw_if(opt_.spec.validate());
    resolved_ = resolve();
  }

  const entropy_observer_options& options() const noexcept { return opt_; }
  /// The search options with the automatic fields filled in.
  const entropy_options& search_options() const noexcept { return resolved_; }
  std::uint64_t batches() const noexcept { return batches_; }
  bool has_data() const noexcept { return batches_ > 0; }
  bool saw_negative() const noexcept { return saw_negative_; }
  bool is_signed_histogram() const noexcept { return opt_.search.variant == entropy_variant::onnxruntime; }
  const abs_histogram<T>& histogram() const noexcept { return abs_; }
  const centered_histogram<T>& signed_histogram() const noexcept { return signed_; }

  /// Observes one batch; an empty or non-finite batch, or one whose range would need more
  /// than max_histogram_bins bins, is rejected and leaves the state unchanged.
  void update(tensor_view<const T> x) {
    minmax_t<T> mm{};
    detail::throw_if(check_and_minmax(x, who(), &mm));
    if (is_signed_histogram()) {
      const double need = signed_.bins_after(mm);
      if (!(need <= static_cast<double>(max_histogram_bins)))
        detail::fail(errc::invalid_argument, who() + ": " + x.label() + " reaches |x| = " + detail::value_str(std::max(-mm.min, mm.max)) +
                                                 ", which needs " + detail::value_str(need) + " bins of the first batch's stride (at most " +
                                                 std::to_string(max_histogram_bins) + ")");
      signed_.add(x, mm);
    } else {
      check_abs_growth(x, mm);
      abs_.add(x, mm);
    }
    saw_negative_ = saw_negative_ || mm.min < T(0);
    ++batches_;
  }

  /// Adds another observer's statistics (same options except the name); see the file comment.
  void merge(const entropy_observer& other) {
    if (!(other.opt_.spec == opt_.spec) || !(other.opt_.search == opt_.search) || other.opt_.bins != opt_.bins ||
        other.opt_.growth != opt_.growth)
      detail::fail(errc::invalid_argument, who() + ": cannot merge an observer with different options");
    if (!other.has_data()) return;
    if (is_signed_histogram()) {
      signed_.merge(other.signed_);
    } else {
      abs_.merge(other.abs_);
    }
    saw_negative_ = saw_negative_ || other.saw_negative_;
    batches_ += other.batches_;
  }

  /// The KL search on the |x| histogram (tensorrt, modelopt). Fails before non-zero data.
  entropy_choice search() const {
    if (is_signed_histogram()) detail::fail(errc::invalid_argument, who() + ": search() is for |x| histograms; use search_signed()");
    if (abs_.counts().empty()) detail::fail(errc::empty_input, who() + ": no non-zero value observed yet");
    return entropy_search(abs_.counts(), abs_.bin_width(), resolved_);
  }
  /// ORT's search on the signed histogram (before the clamp to the data's min / max).
  signed_entropy_choice search_signed() const {
    if (!is_signed_histogram()) detail::fail(errc::invalid_argument, who() + ": search_signed() is for the onnxruntime variant");
    if (signed_.empty()) detail::fail(errc::empty_input, who() + ": compute() before any data was observed");
    return entropy_search_signed(signed_.counts(), signed_.edges(), resolved_);
  }

  /// The chosen range and its parameters. Fails (empty_input) before any data.
  calib_result<T> compute() const {
    if (!has_data()) detail::fail(errc::empty_input, who() + ": compute() before any data was observed");
    if (is_signed_histogram()) {
      const signed_entropy_choice c = search_signed();
      T lo = static_cast<T>(c.lo), hi = static_cast<T>(c.hi);
      if (lo < signed_.min()) lo = signed_.min();  // ORT's clamp to the data
      if (hi > signed_.max()) hi = signed_.max();
      return make_result(lo, hi, opt_.spec);
    }
    if (abs_.counts().empty()) return make_result(T(0), T(0), opt_.spec);  // only zeros seen
    const T t = static_cast<T>(search().threshold);
    const bool one_sided = !saw_negative_ && (!opt_.spec.is_signed || opt_.spec.scheme == qscheme::affine);
    return make_result(one_sided ? T(0) : -t, t, opt_.spec);
  }

  void reset() noexcept {
    abs_.reset();
    signed_.reset();
    batches_ = 0;
    saw_negative_ = false;
  }

  std::vector<std::uint8_t> save() const {
    state_writer w(kind, kind_version);
    put_qspec(w, opt_.spec);
    const entropy_options& s = opt_.search;
    w.put(static_cast<std::uint8_t>(s.variant));
    w.put(s.levels);
    w.put(s.start_bin);
    w.put(s.stride);
    w.put(static_cast<std::uint8_t>(s.include_unclipped));
    w.put(static_cast<std::uint8_t>(s.level_rule));
    w.put(static_cast<std::uint8_t>(s.threshold_rule));
    w.put(static_cast<std::uint8_t>(s.first_bin));
    w.put(static_cast<std::uint8_t>(s.ties));
    w.put(static_cast<std::uint8_t>(s.empty_q_wins));
    w.put(static_cast<std::uint8_t>(s.unclipped_if_all_infinite));
    w.put(s.tie_tolerance);
    w.put(s.smoothing_eps);
    w.put(s.first_bins);
    w.put(opt_.bins);
    w.put(static_cast<std::uint8_t>(opt_.growth));
    w.put_string(opt_.name);
    w.put(batches_);
    w.put(static_cast<std::uint8_t>(saw_negative_));
    if (is_signed_histogram()) {
      signed_.save(w);
    } else {
      abs_.save(w);
    }
    return w.take();
  }

  /// Restores an observer from save()'s bytes; a malformed blob is a parse_error.
  static entropy_observer load(const std::vector<std::uint8_t>& bytes) {
    state_reader r(bytes, kind, kind_version);
    entropy_observer_options o;
    o.spec = get_qspec(r);
    entropy_options& s = o.search;
    auto enum_at_most = [&r](unsigned most, const char* what) {
      const auto v = r.get<std::uint8_t>();
      if (v > most) r.fail_at(std::string("unknown ") + what + " " + std::to_string(v));
      return v;
    };
    s.variant = static_cast<entropy_variant>(enum_at_most(2, "variant"));
    s.levels = r.get<std::uint32_t>();
    s.start_bin = r.get<std::uint32_t>();
    s.stride = r.get<std::uint32_t>();
    s.include_unclipped = r.get_bool();
    s.level_rule = static_cast<entropy_levels>(enum_at_most(2, "level rule"));
    s.threshold_rule = static_cast<entropy_threshold>(enum_at_most(3, "threshold rule"));
    s.first_bin = static_cast<entropy_first_bin>(enum_at_most(2, "first-bin rule"));
    s.ties = static_cast<entropy_ties>(enum_at_most(1, "tie rule"));
    s.empty_q_wins = r.get_bool();
    s.unclipped_if_all_infinite = r.get_bool();
    s.tie_tolerance = r.get<double>();
    s.smoothing_eps = r.get<double>();
    s.first_bins = r.get<std::uint32_t>();
    o.bins = r.get<std::uint32_t>();
    o.growth = static_cast<histogram_growth>(enum_at_most(1, "histogram growth"));
    o.name = r.get_string();
    const std::uint64_t batches = r.get<std::uint64_t>();
    const bool saw_negative = r.get_bool();
    const status valid = check_options(o);
    if (!valid.ok()) r.fail_at(valid.message());
    entropy_observer obs(o);
    obs.batches_ = batches;
    obs.saw_negative_ = saw_negative;
    if (obs.is_signed_histogram()) {
      obs.signed_ = centered_histogram<T>::load(r);
      if (obs.signed_.num_bins() != o.bins) r.fail_at("histogram bins differ from the options");
      if ((batches == 0) != obs.signed_.empty()) r.fail_at("batch count and histogram disagree");
    } else {
      obs.abs_ = abs_histogram<T>::load(r);
      if (obs.abs_.num_bins() != o.bins || obs.abs_.growth() != o.growth) r.fail_at("histogram options differ from the observer's");
      if ((batches == 0) != obs.abs_.empty()) r.fail_at("batch count and histogram disagree");
    }
    r.finish();
    return obs;
  }

 private:
  std::string who() const { return opt_.name.empty() ? std::string("entropy observer") : "entropy observer '" + opt_.name + "'"; }

  // Everything about the options that can be checked without data; the message names the option.
  static status check_options(const entropy_observer_options& o) {
    const std::string who = o.name.empty() ? std::string("entropy observer") : "entropy observer '" + o.name + "'";
    auto bad = [&](const std::string& m) { return status(errc::invalid_argument, who + ": " + m); };
    status s = o.spec.validate();
    if (!s.ok()) return bad(s.message());
    if (o.bins < 2 || o.bins > max_histogram_bins)
      return bad("option bins = " + std::to_string(o.bins) + " is outside [2, " + std::to_string(max_histogram_bins) + "]");
    if (static_cast<unsigned>(o.growth) > 1) return bad("option growth holds an unknown enumerator");
    if (o.search.variant != entropy_variant::tensorrt && o.growth != histogram_growth::append)
      return bad(std::string("option growth = doubling does not apply to the ") + to_string(o.search.variant) + " variant");
    entropy_options r = resolve(o);
    s = r.validate();
    if (!s.ok()) return bad(s.message());
    if (o.search.variant == entropy_variant::onnxruntime) {
      if (o.bins / 2 < r.levels / 2)
        return bad("option bins = " + std::to_string(o.bins) + " is below levels (num_quantized_bins) = " + std::to_string(r.levels));
    } else if (r.start_bin > (r.include_unclipped ? o.bins : o.bins - 1)) {
      return bad("option start_bin = " + std::to_string(r.start_bin) + " leaves no candidate in " + std::to_string(o.bins) + " bins");
    }
    return {};
  }
  static std::uint32_t valid_bins(const entropy_observer_options& o) {
    detail::throw_if(check_options(o));
    return o.bins;
  }
  static entropy_options resolve(const entropy_observer_options& o) {
    entropy_options r = o.search;
    const int b = o.spec.bits;
    if (r.levels == 0) {
      if (r.variant == entropy_variant::onnxruntime) {
        r.levels = 128;
      } else {
        r.levels = 1u << (b - 1 + (o.spec.is_signed ? 0 : 1));
        if (r.level_rule == entropy_levels::mlperf_centre) r.levels -= 1;
      }
    }
    if (r.start_bin == 0 && r.variant != entropy_variant::onnxruntime)
      r.start_bin = r.level_rule == entropy_levels::published ? r.levels : 128;
    if (r.first_bins == 0 && r.variant != entropy_variant::onnxruntime) r.first_bins = o.bins;
    return r;
  }
  entropy_options resolve() const { return resolve(opt_); }

  void check_abs_growth(tensor_view<const T> x, minmax_t<T> mm) const {
    if (abs_.counts().empty()) return;
    const double amax = std::max(-static_cast<double>(mm.min), static_cast<double>(mm.max));
    double need = std::max(std::ceil(amax / abs_.bin_width()), static_cast<double>(abs_.counts().size()));
    if (opt_.growth == histogram_growth::doubling) {
      double m = static_cast<double>(abs_.counts().size());
      while (m < need) m *= 2.0;
      need = m;
    }
    if (!(need <= static_cast<double>(max_histogram_bins)))
      detail::fail(errc::invalid_argument, who() + ": " + x.label() + " reaches |x| = " + detail::value_str(amax) + ", which needs " +
                                               detail::value_str(need) + " bins of width " + detail::value_str(abs_.bin_width()) +
                                               " (at most " + std::to_string(max_histogram_bins) + "; the first batch set the width)");
  }

  entropy_observer_options opt_;
  entropy_options resolved_;
  abs_histogram<T> abs_;
  centered_histogram<T> signed_;
  std::uint64_t batches_ = 0;
  bool saw_negative_ = false;
};

QLIB_NAMESPACE_END
