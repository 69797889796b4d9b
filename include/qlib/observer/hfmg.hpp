// HFMG observer: Ascend AMCT's histogram activation calibration (calib/hfmg.hpp) over a
// stream of batches. Memory is the range_histogram's num_of_bins doubles
// (observer/histogram.hpp: equal bins over the observed [min, max], old counts re-binned
// in proportion to the overlap when a batch widens the range).
//
// batch_num (AMCT's HFMG also stops after batch_num batches): 0 uses every batch; n the
// first n given to update(); later ones are validated and ignored.
//
// Exactness: batches inside the first batch's range, and merges of observers with identical
// ranges, are exact; otherwise re-binning makes merge() and splitting approximate (the
// counts keep their total).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../calib/hfmg.hpp"
#include "../config.hpp"
#include "../core/check.hpp"
#include "../core/qparams.hpp"
#include "../core/tensor_view.hpp"
#include "histogram.hpp"
#include "result.hpp"
#include "state.hpp"

QLIB_NAMESPACE_BEGIN

/// Options of hfmg_observer (AMCT defaults).
struct hfmg_options {
  qspec spec = qspec::amct_activation();  ///< int8 with offset (AMCT activation_offset = true)
  std::uint32_t num_of_bins = 4096;       ///< one of 1024, 2048, 4096, 8192 (AMCT)
  std::uint64_t batch_num = 0;            ///< 0: every batch; else only the first batch_num
  std::string name;                       ///< appears in error messages
};

/// AMCT's allowed histogram sizes.
inline status check_hfmg_bins(std::uint32_t bins) {
  if (bins != 1024 && bins != 2048 && bins != 4096 && bins != 8192)
    return {errc::invalid_argument,
            "option num_of_bins = " + std::to_string(bins) + " is not one of 1024, 2048, 4096, 8192"};
  return {};
}

template <class T = float>
class hfmg_observer {
 public:
  using value_type = T;
  static constexpr const char* kind = "hfmg";
  static constexpr std::uint16_t kind_version = 1;

  explicit hfmg_observer(hfmg_options options = {}) : opt_(std::move(options)), hist_(checked_bins(opt_)) {
    const status s = opt_.spec.validate();
    if (!s.ok()) detail::fail(s.code(), who() + ": " + s.message());
  }

  const hfmg_options& options() const noexcept { return opt_; }
  const range_histogram<T>& histogram() const noexcept { return hist_; }
  std::uint64_t batches_seen() const noexcept { return seen_; }
  std::uint64_t batches_used() const noexcept { return used_; }
  bool has_data() const noexcept { return used_ > 0; }

  /// Observes one batch (any shape, flattened). Empty or non-finite batches are rejected and
  /// leave the state unchanged; batches past batch_num are validated and ignored.
  void update(tensor_view<const T> x) {
    minmax_t<T> mm{};
    detail::throw_if(check_and_minmax(x, who(), &mm));
    ++seen_;
    if (opt_.batch_num && used_ >= opt_.batch_num) return;
    hist_.add(x, mm);
    ++used_;
  }

  /// Adds another observer's histogram (same options): both re-binned onto the union range.
  void merge(const hfmg_observer& other) {
    if (!(other.opt_.spec == opt_.spec) || other.opt_.num_of_bins != opt_.num_of_bins ||
        other.opt_.batch_num != opt_.batch_num)
      detail::fail(errc::invalid_argument, who() + ": cannot merge an observer with different options");
    hist_.merge(other.hist_);
    seen_ += other.seen_;
    used_ += other.used_;
  }

  /// The full search outcome. Fails (empty_input) before any data.
  hfmg_result<T> search() const {
    if (!has_data()) detail::fail(errc::empty_input, who() + ": compute() before any data was observed");
    return hfmg_search<T>(hist_.counts().data(), hist_.counts().size(), hist_.lo(), hist_.hi(), opt_.spec.bits);
  }

  /// The chosen range and its parameters (per tensor). Fails (empty_input) before any data.
  calib_result<T> compute() const {
    const hfmg_result<T> r = search();
    return make_result(r.clip_min, r.clip_max, opt_.spec);
  }

  void reset() noexcept {
    hist_.reset();
    seen_ = used_ = 0;
  }

  std::vector<std::uint8_t> save() const {
    state_writer w(kind, kind_version);
    put_qspec(w, opt_.spec);
    w.put(opt_.num_of_bins);
    w.put(opt_.batch_num);
    w.put_string(opt_.name);
    w.put(seen_);
    w.put(used_);
    hist_.save(w);
    return w.take();
  }

  /// Restores an observer from save()'s bytes; a malformed blob is a parse_error.
  static hfmg_observer load(const std::vector<std::uint8_t>& bytes) {
    state_reader r(bytes, kind, kind_version);
    hfmg_options o;
    o.spec = get_qspec(r);
    o.num_of_bins = r.get<std::uint32_t>();
    o.batch_num = r.get<std::uint64_t>();
    o.name = r.get_string();
    const status s = check_hfmg_bins(o.num_of_bins);
    if (!s.ok()) r.fail_at(s.message());
    hfmg_observer obs(o);
    obs.seen_ = r.get<std::uint64_t>();
    obs.used_ = r.get<std::uint64_t>();
    obs.hist_ = range_histogram<T>::load(r);
    r.finish();
    if (obs.hist_.num_bins() != o.num_of_bins) r.fail_at("histogram bins differ from num_of_bins");
    if (obs.used_ > obs.seen_ || (obs.used_ == 0) != obs.hist_.empty() || (obs.used_ > 0 && !(obs.hist_.total() > 0.0)))
      r.fail_at("inconsistent batch counts and histogram");
    return obs;
  }

 private:
  std::string who() const { return opt_.name.empty() ? std::string("hfmg observer") : "hfmg observer '" + opt_.name + "'"; }

  static std::uint32_t checked_bins(const hfmg_options& o) {
    const status s = check_hfmg_bins(o.num_of_bins);
    if (!s.ok())
      detail::fail(s.code(), (o.name.empty() ? std::string("hfmg observer") : "hfmg observer '" + o.name + "'") +
                                 ": " + s.message());
    return o.num_of_bins;
  }

  hfmg_options opt_;
  range_histogram<T> hist_;
  std::uint64_t seen_ = 0, used_ = 0;
};

QLIB_NAMESPACE_END
