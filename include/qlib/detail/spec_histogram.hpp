// Internal: the histogram state shared by the percentile and MSE observers.
//
// Which histogram (the lesson of the torchquant predecessor, calib/_hist_base.py):
// symmetric specs clip at a threshold T on |x|, read from an abs_histogram (fixed bin width
// from the first non-zero batch, grows by adding bins: TensorRT / modelopt); affine specs
// need both tails, read from a signed range_histogram (re-bins when the range widens).
// The state is one of them, chosen by the spec when the observer is built.
#pragma once

#include "algorithm.hpp"
#include <cstddef>
#include <cstdint>
#include <string>

#include "../config.hpp"
#include "../core/check.hpp"
#include "../core/qparams.hpp"
#include "../core/tensor_view.hpp"
#include "../calib/search.hpp"
#include "../observer/histogram.hpp"
#include "../observer/state.hpp"

QLIB_NAMESPACE_BEGIN
namespace detail {

/// Checks the histogram options of an observer; `who` names it.
inline status check_histogram_options(std::uint32_t bins, histogram_growth growth, const std::string& who) {
  if (bins < 1 || bins > max_histogram_bins)
    return {errc::invalid_argument, who + ": option bins = " + std::to_string(bins) + " is outside [1, " +
                                        std::to_string(max_histogram_bins) + "]"};
  if (growth != histogram_growth::append && growth != histogram_growth::doubling)
    return {errc::invalid_argument, who + ": option growth = " + std::to_string(static_cast<int>(growth)) +
                                        " is not a histogram_growth"};
  return {};
}

template <class T>
class spec_histogram {
 public:
  /// The histogram for `spec` (|x| for symmetric specs, signed range otherwise). It is
  /// built before the observer checks its options: a bin count outside [1,
  /// max_histogram_bins] is replaced by 1 here, so that the observer's check, which names
  /// it, is the one that reports bad bins.
  spec_histogram(const qspec& spec, std::uint32_t bins, histogram_growth growth)
      : symmetric_(spec.scheme == qscheme::symmetric), abs_(usable_bins(bins), growth), range_(usable_bins(bins)) {}

  bool symmetric() const noexcept { return symmetric_; }
  const abs_histogram<T>& abs() const noexcept { return abs_; }
  const range_histogram<T>& range() const noexcept { return range_; }
  bool empty() const noexcept { return symmetric_ ? abs_.empty() : range_.empty(); }
  /// The active histogram's bins; size 0 when an |x| histogram has only seen zeros.
  hist_bins bins() const noexcept { return symmetric_ ? bins_of(abs_) : bins_of(range_); }

  /// Fails, naming `who`, if adding a batch with min/max mm would need more bins than
  /// allowed (the |x| histogram's width is fixed by its first batch). Mutates nothing.
  status check_add(minmax_t<T> mm, const std::string& who) const {
    if (!symmetric_ || abs_.counts().empty()) return {};
    const double amax = std::max(-static_cast<double>(mm.min), static_cast<double>(mm.max));
    if (amax / abs_.bin_width() > static_cast<double>(max_histogram_bins))
      return {errc::invalid_argument, who + ": a value of " + std::to_string(amax) + " needs more than " +
                                          std::to_string(max_histogram_bins) + " bins of width " +
                                          std::to_string(abs_.bin_width()) +
                                          " (the first non-zero batch set the width; give a representative first batch)"};
    return {};
  }

  /// Adds a batch already checked (finite, not empty, check_add ok) with min/max mm.
  void add(tensor_view<const T> x, minmax_t<T> mm) {
    if (symmetric_)
      abs_.add(x, mm);
    else
      range_.add(x, mm);
  }

  void merge(const spec_histogram& other) {
    if (symmetric_)
      abs_.merge(other.abs_);
    else
      range_.merge(other.range_);
  }

  void reset() noexcept {
    abs_.reset();
    range_.reset();
  }

  void save(state_writer& w) const {
    if (symmetric_)
      abs_.save(w);
    else
      range_.save(w);
  }

  /// Reads the active histogram and checks that it matches the options.
  void load(state_reader& r) {
    if (symmetric_) {
      abs_histogram<T> h = abs_histogram<T>::load(r);
      if (h.num_bins() != abs_.num_bins() || h.growth() != abs_.growth())
        r.fail_at("histogram options differ from the observer's");
      abs_ = std::move(h);
    } else {
      range_histogram<T> h = range_histogram<T>::load(r);
      if (h.num_bins() != range_.num_bins()) r.fail_at("histogram bins differ from the observer's");
      range_ = std::move(h);
    }
  }

 private:
  static std::uint32_t usable_bins(std::uint32_t bins) noexcept {
    return bins >= 1 && bins <= max_histogram_bins ? bins : 1;
  }

  bool symmetric_;
  abs_histogram<T> abs_;
  range_histogram<T> range_;
};

}  // namespace detail
QLIB_NAMESPACE_END
