// Percentile observer: clips at a percentile of the observed values (per tensor).
//
// Symmetric specs clip at T, the percentile of |x|; affine specs at the (100 - p)-th and
// p-th percentiles of x (both tails). Two modes:
// - histogram (default): streaming, memory = the histogram's bins whatever the number of
//   batches. Symmetric specs read an abs_histogram (modelopt's |x| histogram), affine specs a
//   signed range_histogram; the search is calib/search.hpp's histogram_percentile with
//   `interpolation` (linear: within one bin of the exact percentile; edge: modelopt's
//   _compute_amax_percentile arithmetic, the left edge of the bin that reaches p %).
// - exact: holds the raw values (at most max_samples of them, an option: 2^24 by default,
//   64 MiB of float) and takes the nearest-rank percentile with std::nth_element. A batch
//   that would take the buffer past max_samples is rejected with invalid_argument (state
//   unchanged): the mode promises exact results, so it never samples or drops silently.
//
// One-sided data: the |x| search has no sign. When no negative value was seen and the grid
// is unsigned, the range is [0, T] (the grid cannot use negative values anyway); otherwise
// [-T, T] (torchquant's rule for the entropy calibrator).
//
// Exactness of merge / batch splits:
// - exact mode: the multiset of values is all that matters, so any split and any merge give
//   the same bits as one pass.
// - histogram mode, symmetric: the first non-zero batch fixes the bin width. Splits that keep
//   the same first batch, and merges of observers whose first batches had the same |x| max,
//   are exact (counts add bin for bin); otherwise counts are re-binned (approximate).
// - histogram mode, affine: batches inside the first batch's range, and merges of
//   histograms with identical ranges, are exact; widening re-bins.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../calib/search.hpp"
#include "../config.hpp"
#include "../core/check.hpp"
#include "../core/qparams.hpp"
#include "../core/tensor_view.hpp"
#include "../detail/spec_histogram.hpp"
#include "histogram.hpp"
#include "result.hpp"
#include "state.hpp"

QLIB_NAMESPACE_BEGIN

/// Where percentile_observer keeps its statistics.
enum class percentile_mode : std::uint8_t {
  histogram,  ///< streaming histogram, bounded memory, within a bin of the exact value
  exact,      ///< the raw values (bounded by max_samples), exact nearest rank
};

/// Options of percentile_observer.
struct percentile_options {
  qspec spec{};
  double percentile = 99.99;  ///< in (0, 100]; affine specs: (50, 100] (lower bound = 100 - p)
  percentile_mode mode = percentile_mode::histogram;
  std::uint32_t bins = 2048;  ///< histogram bins (the |x| histogram's initial count)
  histogram_growth growth = histogram_growth::append;  ///< |x| histogram growth (symmetric specs)
  percentile_interpolation interpolation = percentile_interpolation::linear;
  std::uint64_t max_samples = std::uint64_t{1} << 24;  ///< exact mode: values held at most
  std::string name;  ///< appears in error messages
};

inline bool same_settings(const percentile_options& a, const percentile_options& b) noexcept {
  return a.spec == b.spec && a.percentile == b.percentile && a.mode == b.mode && a.bins == b.bins &&
         a.growth == b.growth && a.interpolation == b.interpolation && a.max_samples == b.max_samples;
}

template <class T = float>
class percentile_observer {
 public:
  using value_type = T;
  static constexpr const char* kind = "percentile";
  static constexpr std::uint16_t kind_version = 1;

  explicit percentile_observer(percentile_options options = {})
      : opt_(std::move(options)), hist_(opt_.spec, opt_.bins, opt_.growth) {
    detail::throw_if(check_options(opt_));
  }

  /// Checks options; the message names the observer and the option.
  static status check_options(const percentile_options& o) {
    const std::string who = who_of(o);
    status s = o.spec.validate();
    if (!s.ok()) return {s.code(), who + ": " + s.message()};
    s = check_percentile(o.percentile, who);
    if (!s.ok()) return s;
    if (o.spec.scheme == qscheme::affine && !(o.percentile > 50.0))
      return {errc::invalid_argument, who + ": option percentile = " + std::to_string(o.percentile) +
                                          " must be above 50 for an affine spec (the lower clip is the " +
                                          "(100 - percentile)-th percentile)"};
    if (o.mode != percentile_mode::histogram && o.mode != percentile_mode::exact)
      return {errc::invalid_argument, who + ": option mode = " + std::to_string(static_cast<int>(o.mode)) +
                                          " is not a percentile_mode"};
    if (o.interpolation != percentile_interpolation::linear && o.interpolation != percentile_interpolation::edge)
      return {errc::invalid_argument, who + ": option interpolation = " +
                                          std::to_string(static_cast<int>(o.interpolation)) +
                                          " is not a percentile_interpolation"};
    if (o.max_samples < 1)
      return {errc::invalid_argument, who + ": option max_samples = 0 (exact mode needs room for one value)"};
    return detail::check_histogram_options(o.bins, o.growth, who);
  }

  const percentile_options& options() const noexcept { return opt_; }
  std::uint64_t batches() const noexcept { return batches_; }
  bool has_data() const noexcept { return batches_ > 0; }
  /// Whether any negative value was seen.
  bool saw_negative() const noexcept { return saw_negative_; }
  /// Histogram mode: the active histogram's bins (size 0 before data, or zeros only).
  hist_bins bins() const noexcept { return hist_.bins(); }
  /// Exact mode: the values held.
  const std::vector<T>& samples() const noexcept { return samples_; }

  /// Observes one batch. Empty or non-finite batches, and batches that would exceed
  /// max_samples (exact mode) or the histogram's bin limit, leave the state unchanged.
  void update(tensor_view<const T> x) {
    minmax_t<T> mm{};
    detail::throw_if(check_and_minmax(x, who(), &mm));
    if (opt_.mode == percentile_mode::exact) {
      if (x.size() > opt_.max_samples - samples_.size())
        detail::fail(errc::invalid_argument, who() + ": exact mode holds at most max_samples = " +
                                                 std::to_string(opt_.max_samples) + " values; " + x.label() + " of " +
                                                 std::to_string(x.size()) + " values after " +
                                                 std::to_string(samples_.size()) +
                                                 " would exceed it (raise max_samples or use the histogram mode)");
      samples_.insert(samples_.end(), x.data(), x.data() + x.size());
    } else {
      detail::throw_if(hist_.check_add(mm, who()));
      hist_.add(x, mm);
    }
    saw_negative_ = saw_negative_ || mm.min < T(0);
    ++batches_;
  }

  /// Adds another observer's statistics (same options but the name).
  void merge(const percentile_observer& other) {
    if (!same_settings(opt_, other.opt_))
      detail::fail(errc::invalid_argument, who() + ": cannot merge an observer with different options");
    if (opt_.mode == percentile_mode::exact) {
      if (other.samples_.size() > opt_.max_samples - samples_.size())
        detail::fail(errc::invalid_argument, who() + ": merging " + std::to_string(other.samples_.size()) +
                                                 " values into " + std::to_string(samples_.size()) +
                                                 " exceeds max_samples = " + std::to_string(opt_.max_samples));
      samples_.insert(samples_.end(), other.samples_.begin(), other.samples_.end());
    } else {
      hist_.merge(other.hist_);
    }
    saw_negative_ = saw_negative_ || other.saw_negative_;
    batches_ += other.batches_;
  }

  /// The clip range and its parameters. Fails (empty_input) before any data.
  calib_result<T> compute() const {
    if (!has_data()) detail::fail(errc::empty_input, who() + ": compute() before any data was observed");
    const bool symmetric = opt_.spec.scheme == qscheme::symmetric;
    const double p = opt_.percentile;
    double lo = 0.0, hi = 0.0;
    if (opt_.mode == percentile_mode::exact) {
      std::vector<T> v = samples_;
      if (symmetric) {
        for (T& a : v) a = a < T(0) ? -a : a;
        hi = static_cast<double>(exact_percentile(v.data(), v.size(), p));
      } else {
        hi = static_cast<double>(exact_percentile(v.data(), v.size(), p));
        lo = static_cast<double>(exact_lower_percentile(v.data(), v.size(), p));
      }
    } else {
      const hist_bins b = hist_.bins();
      if (b.size > 0) {  // else only zeros were seen: the range is [0, 0]
        hi = histogram_percentile(b, p, opt_.interpolation);
        if (!symmetric) lo = histogram_lower_percentile(b, p, opt_.interpolation);
      }
    }
    if (symmetric) {
      const bool one_sided = !saw_negative_ && !opt_.spec.is_signed;
      lo = one_sided ? 0.0 : -hi;
    } else if (lo > hi) {  // p just above 50: the two bounds can cross within rounding
      lo = hi = lo + (hi - lo) / 2;
    }
    return make_result(static_cast<T>(lo), static_cast<T>(hi), opt_.spec);
  }

  void reset() noexcept {
    hist_.reset();
    samples_.clear();
    saw_negative_ = false;
    batches_ = 0;
  }

  std::vector<std::uint8_t> save() const {
    state_writer w(kind, kind_version);
    put_qspec(w, opt_.spec);
    w.put(opt_.percentile);
    w.put(static_cast<std::uint8_t>(opt_.mode));
    w.put(opt_.bins);
    w.put(static_cast<std::uint8_t>(opt_.growth));
    w.put(static_cast<std::uint8_t>(opt_.interpolation));
    w.put(opt_.max_samples);
    w.put_string(opt_.name);
    w.put(batches_);
    w.put(static_cast<std::uint8_t>(saw_negative_));
    if (opt_.mode == percentile_mode::exact)
      w.put_array(samples_);
    else
      hist_.save(w);
    return w.take();
  }

  /// Restores an observer from save()'s bytes; a malformed blob is a parse_error.
  static percentile_observer load(const std::vector<std::uint8_t>& bytes) {
    state_reader r(bytes, kind, kind_version);
    percentile_options o;
    o.spec = get_qspec(r);
    o.percentile = r.get<double>();
    o.mode = static_cast<percentile_mode>(r.get<std::uint8_t>());
    o.bins = r.get<std::uint32_t>();
    o.growth = static_cast<histogram_growth>(r.get<std::uint8_t>());
    o.interpolation = static_cast<percentile_interpolation>(r.get<std::uint8_t>());
    o.max_samples = r.get<std::uint64_t>();
    o.name = r.get_string();
    const status s = check_options(o);
    if (!s.ok()) r.fail_at(s.message());
    percentile_observer obs(o);
    obs.batches_ = r.get<std::uint64_t>();
    obs.saw_negative_ = r.get_bool();
    if (o.mode == percentile_mode::exact) {
      obs.samples_ = r.get_array<T>(o.max_samples);
      bool negative = false;
      for (T v : obs.samples_) {
        if (!std::isfinite(v)) r.fail_at("a held value is not finite");
        negative = negative || v < T(0);
      }
      if (negative != obs.saw_negative_) r.fail_at("the sign flag disagrees with the held values");
      if ((obs.batches_ == 0) != obs.samples_.empty()) r.fail_at("batch count and held values disagree");
    } else {
      obs.hist_.load(r);
      if ((obs.batches_ == 0) != obs.hist_.empty()) r.fail_at("batch count and histogram disagree");
    }
    if (obs.batches_ == 0 && obs.saw_negative_) r.fail_at("the sign flag is set before any data");
    r.finish();
    return obs;
  }

 private:
  static std::string who_of(const percentile_options& o) {
    return o.name.empty() ? std::string("percentile observer") : "percentile observer '" + o.name + "'";
  }
  std::string who() const { return who_of(opt_); }

  percentile_options opt_;
  detail::spec_histogram<T> hist_;
  std::vector<T> samples_;
  bool saw_negative_ = false;
  std::uint64_t batches_ = 0;
};

QLIB_NAMESPACE_END
