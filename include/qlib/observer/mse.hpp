// MSE observer: the clip range whose fake quantization has the least expected squared
// error over the observed values (per tensor).
//
// The values are summarised by a streaming histogram (symmetric specs: an abs_histogram of
// |x|; affine specs: a signed range_histogram; see percentile.hpp for the exactness of
// merges and batch splits, which is the same here). compute() runs calib/search.hpp's MSE
// search: each bin stands for its count of values at its centre (NVIDIA
// pytorch-quantization / modelopt calib/histogram.py _compute_amax_mse); every candidate
// range is fake-quantized on the spec's grid (rounding and clipping error both counted)
// and the first minimum wins.
//
// Candidates:
// - symmetric specs: T = the centre of bin i of the |x| histogram for i = start_bin,
//   start_bin + stride, ... (modelopt; start_bin is clamped to the last bin). The error is
//   measured on the grid's positive side (|x| has no sign), which is exact for narrow
//   ranges and counts the negative tail's clipping at T rather than at T * 2^(b-1) /
//   (2^(b-1) - 1) otherwise. The range is [-T, T], or [0, T] for data never seen negative
//   on an unsigned grid.
// - affine specs, affine_search::scale (default, the torchquant predecessor): [a L, a H]
//   with a = (i + 1) / bins over the same i, L = min(lo, 0), H = max(hi, 0);
//   affine_search::trim: PyTorch HistogramObserver's quantile walk (trim_step of the total
//   per move), every candidate evaluated.
#pragma once

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

/// The family of candidate ranges tried for affine specs (see the file comment).
enum class mse_affine_search : std::uint8_t { scale, trim };

/// Options of mse_observer.
struct mse_options {
  qspec spec{};
  std::uint32_t bins = 2048;  ///< histogram bins (the |x| histogram's initial count)
  histogram_growth growth = histogram_growth::append;  ///< |x| histogram growth (symmetric specs)
  std::uint32_t start_bin = 128;  ///< first candidate bin (clamped to the last bin)
  std::uint32_t stride = 1;       ///< step between candidate bins, >= 1
  mse_affine_search affine_search = mse_affine_search::scale;
  double trim_step = 1e-5;  ///< affine_search::trim: fraction of the total per move, [1e-7, 0.5]
  std::string name;         ///< appears in error messages
};

inline bool same_settings(const mse_options& a, const mse_options& b) noexcept {
  return a.spec == b.spec && a.bins == b.bins && a.growth == b.growth && a.start_bin == b.start_bin &&
         a.stride == b.stride && a.affine_search == b.affine_search && a.trim_step == b.trim_step;
}

template <class T = float>
class mse_observer {
 public:
  using value_type = T;
  static constexpr const char* kind = "mse";
  static constexpr std::uint16_t kind_version = 1;

  explicit mse_observer(mse_options options = {}) : opt_(std::move(options)), hist_(opt_.spec, opt_.bins, opt_.growth) {
    detail::throw_if(check_options(opt_));
  }

  /// Checks options; the message names the observer and the option.
  static status check_options(const mse_options& o) {
    const std::string who = who_of(o);
    status s = o.spec.validate();
    if (!s.ok()) return {s.code(), who + ": " + s.message()};
    if (o.stride < 1) return {errc::invalid_argument, who + ": option stride = 0 (must be >= 1)"};
    if (o.affine_search != mse_affine_search::scale && o.affine_search != mse_affine_search::trim)
      return {errc::invalid_argument, who + ": option affine_search = " +
                                          std::to_string(static_cast<int>(o.affine_search)) +
                                          " is not an mse_affine_search"};
    if (!(o.trim_step >= 1e-7 && o.trim_step <= 0.5))
      return {errc::invalid_argument,
              who + ": option trim_step = " + std::to_string(o.trim_step) + " is outside [1e-7, 0.5]"};
    return detail::check_histogram_options(o.bins, o.growth, who);
  }

  const mse_options& options() const noexcept { return opt_; }
  std::uint64_t batches() const noexcept { return batches_; }
  bool has_data() const noexcept { return batches_ > 0; }
  bool saw_negative() const noexcept { return saw_negative_; }
  /// The active histogram's bins (size 0 before data, or when only zeros were seen).
  hist_bins bins() const noexcept { return hist_.bins(); }

  /// Observes one batch; rejected batches leave the state unchanged.
  void update(tensor_view<const T> x) {
    minmax_t<T> mm{};
    detail::throw_if(check_and_minmax(x, who(), &mm));
    detail::throw_if(hist_.check_add(mm, who()));
    hist_.add(x, mm);
    saw_negative_ = saw_negative_ || mm.min < T(0);
    ++batches_;
  }

  /// Adds another observer's statistics (same options but the name).
  void merge(const mse_observer& other) {
    if (!same_settings(opt_, other.opt_))
      detail::fail(errc::invalid_argument, who() + ": cannot merge an observer with different options");
    hist_.merge(other.hist_);
    saw_negative_ = saw_negative_ || other.saw_negative_;
    batches_ += other.batches_;
  }

  /// The candidate ranges compute() searches, in order (one [0, 0] when only zeros were
  /// seen). Fails (empty_input) before any data.
  std::vector<range_candidate> candidates() const {
    if (!has_data()) detail::fail(errc::empty_input, who() + ": no data was observed");
    const hist_bins b = hist_.bins();
    if (b.size == 0) return {range_candidate{}};
    if (opt_.spec.scheme == qscheme::symmetric)
      return symmetric_candidates(b, opt_.start_bin, opt_.stride, !saw_negative_ && !opt_.spec.is_signed);
    if (opt_.affine_search == mse_affine_search::scale) return scale_candidates(b, opt_.start_bin, opt_.stride);
    return trim_candidates(b, opt_.trim_step);
  }

  /// The search's outcome: the chosen range, its error and its index in candidates().
  mse_choice choose() const {
    const std::vector<range_candidate> c = candidates();
    const hist_bins b = hist_.bins();
    if (b.size == 0) return mse_choice{c[0], 0.0, 0};
    return search_mse(histogram_mse_evaluator(b), c, opt_.spec);
  }

  /// The chosen range and its parameters. Fails (empty_input) before any data.
  calib_result<T> compute() const {
    if (!has_data()) detail::fail(errc::empty_input, who() + ": compute() before any data was observed");
    const mse_choice m = choose();
    return make_result(static_cast<T>(m.range.lo), static_cast<T>(m.range.hi), opt_.spec);
  }

  void reset() noexcept {
    hist_.reset();
    saw_negative_ = false;
    batches_ = 0;
  }

  std::vector<std::uint8_t> save() const {
    state_writer w(kind, kind_version);
    put_qspec(w, opt_.spec);
    w.put(opt_.bins);
    w.put(static_cast<std::uint8_t>(opt_.growth));
    w.put(opt_.start_bin);
    w.put(opt_.stride);
    w.put(static_cast<std::uint8_t>(opt_.affine_search));
    w.put(opt_.trim_step);
    w.put_string(opt_.name);
    w.put(batches_);
    w.put(static_cast<std::uint8_t>(saw_negative_));
    hist_.save(w);
    return w.take();
  }

  /// Restores an observer from save()'s bytes; a malformed blob is a parse_error.
  static mse_observer load(const std::vector<std::uint8_t>& bytes) {
    state_reader r(bytes, kind, kind_version);
    mse_options o;
    o.spec = get_qspec(r);
    o.bins = r.get<std::uint32_t>();
    o.growth = static_cast<histogram_growth>(r.get<std::uint8_t>());
    o.start_bin = r.get<std::uint32_t>();
    o.stride = r.get<std::uint32_t>();
    o.affine_search = static_cast<mse_affine_search>(r.get<std::uint8_t>());
    o.trim_step = r.get<double>();
    o.name = r.get_string();
    const status s = check_options(o);
    if (!s.ok()) r.fail_at(s.message());
    mse_observer obs(o);
    obs.batches_ = r.get<std::uint64_t>();
    obs.saw_negative_ = r.get_bool();
    obs.hist_.load(r);
    if ((obs.batches_ == 0) != obs.hist_.empty()) r.fail_at("batch count and histogram disagree");
    if (obs.batches_ == 0 && obs.saw_negative_) r.fail_at("the sign flag is set before any data");
    r.finish();
    return obs;
  }

 private:
  static std::string who_of(const mse_options& o) {
    return o.name.empty() ? std::string("mse observer") : "mse observer '" + o.name + "'";
  }
  std::string who() const { return who_of(opt_); }

  mse_options opt_;
  detail::spec_histogram<T> hist_;
  bool saw_negative_ = false;
  std::uint64_t batches_ = 0;
};

QLIB_NAMESPACE_END
