// IFMR observer: Ascend AMCT's default activation calibration (calib/ifmr.hpp) over a
// stream of batches, in one of two modes.
//
// - exact (default): holds the values, as AMCT does, and searches on all of them. Memory is
//   bounded by max_samples (default 2^24 values): the batch that would pass it switches the
//   observer to histogram mode, replaying the held batches into the histogram in their
//   order, so the result is then exactly what a histogram-mode observer fed the same
//   batches gives. fell_back() reports the switch (qlib has no logging: check it, e.g. to
//   warn, after calibration). AMCT's own answer is to stop at batch_num batches; the
//   batch_num option does that too.
// - histogram: a range_histogram of num_bins bins (observer/histogram.hpp): bounded memory,
//   percentiles from the interpolated CDF, the loss over bin centres (its error against the
//   exact mode is measured in calib/ifmr.hpp's comment).
//
// batch_num (AMCT): 0 uses every batch; n uses the first n batches given to update() and
// ignores later ones (they are still validated). merge() combines everything both
// observers used.
//
// Exactness: exact mode keeps the batches in order, so splitting the data into batches and
// merge() of observers that saw consecutive parts (this one first) equal one pass bit for
// bit while under max_samples. Histogram mode re-bins when the range grows: not exact.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "../calib/ifmr.hpp"
#include "../config.hpp"
#include "../core/check.hpp"
#include "../core/qparams.hpp"
#include "../core/tensor_view.hpp"
#include "histogram.hpp"
#include "result.hpp"
#include "state.hpp"

QLIB_NAMESPACE_BEGIN

enum class ifmr_mode : std::uint8_t { exact, histogram };

inline const char* to_string(ifmr_mode m) noexcept { return m == ifmr_mode::exact ? "exact" : "histogram"; }

/// Options of ifmr_observer (AMCT defaults).
struct ifmr_options {
  qspec spec = qspec::amct_activation();  ///< int8 with offset (AMCT activation_offset = true)
  ifmr_params search{};                   ///< percentiles, search range and step, ratio grid
  ifmr_mode mode = ifmr_mode::exact;
  std::uint64_t batch_num = 0;              ///< 0: every batch; else only the first batch_num
  std::uint64_t max_samples = 1ull << 24;  ///< exact mode: values held before the fallback
  std::uint32_t num_bins = 8192;            ///< histogram mode bins, [16, 2^20]
  std::string name;                         ///< appears in error messages
};

template <class T = float>
class ifmr_observer {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value, "IFMR takes float or double");

 public:
  using value_type = T;
  static constexpr const char* kind = "ifmr";
  static constexpr std::uint16_t kind_version = 1;

  explicit ifmr_observer(ifmr_options options = {}) : opt_(std::move(options)), hist_(valid_bins(opt_)) {
    status s = check_ifmr_spec(opt_.spec);
    if (!s.ok()) detail::fail(s.code(), who() + ": " + s.message());
    s = opt_.search.validate();
    if (!s.ok()) detail::fail(s.code(), who() + ": " + s.message());
    if (opt_.mode != ifmr_mode::exact && opt_.mode != ifmr_mode::histogram)
      detail::fail(errc::invalid_argument, who() + ": option mode holds an unknown value");
    if (opt_.max_samples < 1)
      detail::fail(errc::invalid_argument, who() + ": option max_samples = 0; at least 1 value must fit");
    mode_ = opt_.mode;
  }

  const ifmr_options& options() const noexcept { return opt_; }
  /// The mode in use: options().mode, or histogram after the exact mode's fallback.
  ifmr_mode mode() const noexcept { return mode_; }
  /// True when the exact mode passed max_samples and switched to histogram mode.
  bool fell_back() const noexcept { return opt_.mode == ifmr_mode::exact && mode_ == ifmr_mode::histogram; }
  /// Batches given to update() (used or ignored), and those used.
  std::uint64_t batches_seen() const noexcept { return seen_; }
  std::uint64_t batches_used() const noexcept { return used_; }
  /// Values used (the N of the percentile ranks).
  std::uint64_t count() const noexcept { return count_; }
  bool has_data() const noexcept { return count_ > 0; }
  /// Exact mode: the values held, in batch order.
  const std::vector<T>& values() const noexcept { return values_; }
  const range_histogram<T>& histogram() const noexcept { return hist_; }

  /// Observes one batch (any shape, flattened). Empty or non-finite batches are rejected and
  /// leave the state unchanged; batches past batch_num are validated and ignored.
  void update(tensor_view<const T> x) {
    minmax_t<T> mm{};
    detail::throw_if(check_and_minmax(x, who(), &mm));
    ++seen_;
    if (opt_.batch_num && used_ >= opt_.batch_num) return;
    const std::size_t n = x.size();
    if (mode_ == ifmr_mode::exact && count_ + n <= opt_.max_samples) {
      values_.insert(values_.end(), x.begin(), x.end());
      sizes_.push_back(n);
    } else {
      if (mode_ == ifmr_mode::exact) fall_back();
      hist_.add(x, mm);
    }
    count_ += n;
    ++used_;
  }

  /// Adds another observer's statistics (same options): exact while both are exact and the
  /// values fit in max_samples (other's batches follow this one's); otherwise both become a
  /// histogram and are merged (this one falls back if it was exact).
  void merge(const ifmr_observer& other) {
    if (!same_options(other))
      detail::fail(errc::invalid_argument, who() + ": cannot merge an observer with different options");
    if (!other.has_data()) {
      seen_ += other.seen_;
      return;
    }
    if (mode_ == ifmr_mode::exact && other.mode_ == ifmr_mode::exact && count_ + other.count_ <= opt_.max_samples) {
      values_.insert(values_.end(), other.values_.begin(), other.values_.end());
      sizes_.insert(sizes_.end(), other.sizes_.begin(), other.sizes_.end());
    } else {
      range_histogram<T> theirs = other.hist_;
      if (other.mode_ == ifmr_mode::exact) replay(other.values_, other.sizes_, theirs);
      if (mode_ == ifmr_mode::exact) fall_back();
      hist_.merge(theirs);
    }
    count_ += other.count_;
    seen_ += other.seen_;
    used_ += other.used_;
  }

  /// The full search outcome (candidates, losses, the winner). Fails before any data.
  ifmr_result<T> search() const {
    if (!has_data()) detail::fail(errc::empty_input, who() + ": compute() before any data was observed");
    if (mode_ == ifmr_mode::exact) return ifmr_search(values_.data(), values_.size(), opt_.search, opt_.spec);
    return ifmr_search_histogram<T>(hist_.counts().data(), hist_.counts().size(), hist_.lo(), hist_.hi(), count_,
                                    opt_.search, opt_.spec);
  }

  /// The chosen range and its parameters (per tensor). Fails (empty_input) before any data.
  calib_result<T> compute() const {
    const ifmr_result<T> r = search();
    return make_result(r.clip_min(), r.clip_max(), opt_.spec);
  }

  void reset() noexcept {
    mode_ = opt_.mode;
    std::vector<T>().swap(values_);
    sizes_.clear();
    hist_.reset();
    count_ = seen_ = used_ = 0;
  }

  std::vector<std::uint8_t> save() const {
    state_writer w(kind, kind_version);
    put_qspec(w, opt_.spec);
    w.put(opt_.search.max_percentile);
    w.put(opt_.search.min_percentile);
    w.put(opt_.search.search_start);
    w.put(opt_.search.search_end);
    w.put(opt_.search.search_step);
    w.put(static_cast<std::uint8_t>(opt_.search.grid));
    w.put(static_cast<std::uint8_t>(opt_.search.scale_min));
    w.put(static_cast<std::uint8_t>(opt_.mode));
    w.put(opt_.batch_num);
    w.put(opt_.max_samples);
    w.put(opt_.num_bins);
    w.put_string(opt_.name);
    w.put(static_cast<std::uint8_t>(mode_));
    w.put(count_);
    w.put(seen_);
    w.put(used_);
    w.put_array(sizes_);
    w.put_array(values_);
    hist_.save(w);
    return w.take();
  }

  /// Restores an observer from save()'s bytes; a malformed blob is a parse_error.
  static ifmr_observer load(const std::vector<std::uint8_t>& bytes) {
    state_reader r(bytes, kind, kind_version);
    ifmr_options o;
    o.spec = get_qspec(r);
    o.search.max_percentile = r.get<double>();
    o.search.min_percentile = r.get<double>();
    o.search.search_start = r.get<double>();
    o.search.search_end = r.get<double>();
    o.search.search_step = r.get<double>();
    const auto grid = r.get<std::uint8_t>();
    o.search.scale_min = r.get_bool();
    const auto mode = r.get<std::uint8_t>();
    o.batch_num = r.get<std::uint64_t>();
    o.max_samples = r.get<std::uint64_t>();
    o.num_bins = r.get<std::uint32_t>();
    o.name = r.get_string();
    if (grid > 1) r.fail_at("unknown ratio grid " + std::to_string(grid));
    if (mode > 1) r.fail_at("unknown mode " + std::to_string(mode));
    o.search.grid = static_cast<ifmr_ratio_grid>(grid);
    o.mode = static_cast<ifmr_mode>(mode);
    status s = o.search.validate();
    if (!s.ok()) r.fail_at(s.message());
    s = check_ifmr_spec(o.spec);
    if (!s.ok()) r.fail_at(s.message());
    if (o.max_samples < 1 || o.num_bins < min_bins || o.num_bins > max_bins) r.fail_at("invalid max_samples or num_bins");
    ifmr_observer obs(o);
    const auto cur = r.get<std::uint8_t>();
    if (cur > 1) r.fail_at("unknown current mode " + std::to_string(cur));
    obs.mode_ = static_cast<ifmr_mode>(cur);
    obs.count_ = r.get<std::uint64_t>();
    obs.seen_ = r.get<std::uint64_t>();
    obs.used_ = r.get<std::uint64_t>();
    obs.sizes_ = r.get_array<std::uint64_t>();
    obs.values_ = r.get_array<T>(o.max_samples);
    obs.hist_ = range_histogram<T>::load(r);
    r.finish();
    if (obs.hist_.num_bins() != o.num_bins) r.fail_at("histogram bins differ from num_bins");
    if (o.mode == ifmr_mode::histogram && obs.mode_ == ifmr_mode::exact) r.fail_at("a histogram observer in exact mode");
    std::uint64_t held = 0;
    for (std::uint64_t n : obs.sizes_) held += n;
    const bool exact = obs.mode_ == ifmr_mode::exact;
    if (held != obs.values_.size() || (exact ? (held != obs.count_ || !obs.hist_.empty()) : held != 0) ||
        obs.used_ > obs.seen_ || (obs.count_ == 0) != (obs.used_ == 0) || (!exact && obs.count_ > 0 && obs.hist_.empty()))
      r.fail_at("inconsistent counts for " + std::to_string(obs.used_) + " batches");
    for (std::size_t i = 0; i < obs.values_.size(); ++i)
      if (!std::isfinite(obs.values_[i])) r.fail_at("held value " + std::to_string(i) + " is not finite");
    return obs;
  }

  static constexpr std::uint32_t min_bins = 16;
  static constexpr std::uint32_t max_bins = 1u << 20;

 private:
  std::string who() const { return opt_.name.empty() ? std::string("ifmr observer") : "ifmr observer '" + opt_.name + "'"; }

  static std::uint32_t valid_bins(const ifmr_options& o) {
    if (o.num_bins < min_bins || o.num_bins > max_bins)
      detail::fail(errc::invalid_argument,
                   (o.name.empty() ? std::string("ifmr observer") : "ifmr observer '" + o.name + "'") +
                       ": option num_bins = " + std::to_string(o.num_bins) + " is outside [16, 2^20]");
    return o.num_bins;
  }

  bool same_options(const ifmr_observer& o) const {
    return o.opt_.spec == opt_.spec && o.opt_.search == opt_.search && o.opt_.mode == opt_.mode &&
           o.opt_.batch_num == opt_.batch_num && o.opt_.max_samples == opt_.max_samples &&
           o.opt_.num_bins == opt_.num_bins;
  }

  // Adds held batches, in order, to a histogram: the histogram mode's own sequence of adds.
  static void replay(const std::vector<T>& values, const std::vector<std::uint64_t>& sizes, range_histogram<T>& h) {
    std::size_t off = 0;
    for (std::uint64_t n : sizes) {
      const tensor_view<const T> v(values.data() + off, static_cast<std::size_t>(n));
      minmax_t<T> mm{};
      detail::throw_if(check_and_minmax(v, "ifmr observer replay", &mm));
      h.add(v, mm);
      off += static_cast<std::size_t>(n);
    }
  }

  void fall_back() {
    replay(values_, sizes_, hist_);
    std::vector<T>().swap(values_);
    sizes_.clear();
    mode_ = ifmr_mode::histogram;
  }

  ifmr_options opt_;
  ifmr_mode mode_ = ifmr_mode::exact;
  std::vector<T> values_;               // exact mode: the values, batch after batch
  std::vector<std::uint64_t> sizes_;    // exact mode: the batch sizes (for the fallback replay)
  range_histogram<T> hist_;             // histogram mode
  std::uint64_t count_ = 0, seen_ = 0, used_ = 0;
};

QLIB_NAMESPACE_END
