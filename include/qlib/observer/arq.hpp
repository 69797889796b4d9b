// ARQ observer: Ascend AMCT's weight calibration (calib/arq.hpp): per-channel min/max of a
// weight tensor on a symmetric grid of 4, 6, 7 or 8 bits with AMCT's scale rule. Typically
// one update() with the whole weight; more updates (or merge()) take the running min/max.
//
// Exactness: min/max is associative and commutative: any split into batches (along the
// outer dimension) and merge() give the same bits as one pass.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../calib/arq.hpp"
#include "../config.hpp"
#include "../core/check.hpp"
#include "../core/qparams.hpp"
#include "../core/tensor_view.hpp"
#include "result.hpp"
#include "state.hpp"

QLIB_NAMESPACE_BEGIN

/// Options of arq_observer (AMCT defaults: int8, channel-wise along axis 0).
struct arq_options {
  qspec spec = qspec::amct_weight(8);  ///< symmetric, bits in {4, 6, 7, 8}
  bool channel_wise = true;            ///< false: one range for the whole tensor
  int axis = 0;                        ///< the output-channel axis: 0 Conv / Linear, 1 ConvTranspose
  std::string name;                    ///< appears in error messages
};

template <class T = float>
class arq_observer {
 public:
  using value_type = T;
  static constexpr const char* kind = "arq";
  static constexpr std::uint16_t kind_version = 1;

  explicit arq_observer(arq_options options = {}) : opt_(std::move(options)) {
    const status s = check_arq_spec(opt_.spec);
    if (!s.ok()) detail::fail(s.code(), who() + ": " + s.message());
  }

  const arq_options& options() const noexcept { return opt_; }
  std::uint64_t batches() const noexcept { return batches_; }
  bool has_data() const noexcept { return batches_ > 0; }
  const std::vector<T>& min() const noexcept { return lo_; }
  const std::vector<T>& max() const noexcept { return hi_; }

  /// Observes a weight tensor (or a slice of one along the outer dimensions). Empty or
  /// non-finite tensors, a bad axis, or a channel count that differs from earlier updates
  /// are rejected and leave the state unchanged.
  void update(tensor_view<const T> w) {
    std::vector<T> lo, hi;
    int axis = -1;
    if (!opt_.channel_wise) {
      minmax_t<T> mm{};
      detail::throw_if(check_and_minmax(w, who(), &mm));
      lo.assign(1, mm.min);
      hi.assign(1, mm.max);
    } else {
      if (w.empty()) detail::fail(errc::empty_input, who() + ": " + w.label() + " of shape " + w.shape().str() + " is empty");
      const status s = check_axis(opt_.axis, w.rank(), &axis);
      if (!s.ok()) detail::fail(s.code(), who() + ": " + s.message());
      detail::throw_if(check_finite(w, who()));
      const channel_layout l = layout_along(w.shape(), axis);
      if (has_data() && (lo_.size() != l.channels || axis != axis_))
        detail::fail(errc::invalid_argument, who() + ": " + w.label() + " has " + std::to_string(l.channels) +
                                                 " channels along axis " + std::to_string(axis) +
                                                 ", earlier updates had " + std::to_string(lo_.size()) +
                                                 " along axis " + std::to_string(axis_));
      channel_minmax(w.data(), l, lo, hi);
    }
    fold(lo, hi);
    axis_ = axis;
    ++batches_;
  }

  /// Adds another observer's ranges (same options): exact.
  void merge(const arq_observer& other) {
    if (!(other.opt_.spec == opt_.spec) || other.opt_.channel_wise != opt_.channel_wise || other.opt_.axis != opt_.axis)
      detail::fail(errc::invalid_argument, who() + ": cannot merge an observer with different options");
    if (!other.has_data()) return;
    if (has_data() && (other.lo_.size() != lo_.size() || other.axis_ != axis_))
      detail::fail(errc::invalid_argument, who() + ": cannot merge " + std::to_string(other.lo_.size()) +
                                               " channels into " + std::to_string(lo_.size()));
    fold(other.lo_, other.hi_);
    axis_ = other.axis_;
    batches_ += other.batches_;
  }

  /// The per-channel ranges and parameters (axis -1 per tensor). Fails before any data.
  calib_result<T> compute() const {
    if (!has_data()) detail::fail(errc::empty_input, who() + ": compute() before any data was observed");
    if (!opt_.channel_wise) return make_result(lo_[0], hi_[0], opt_.spec);
    return make_result(lo_, hi_, opt_.spec, axis_);
  }

  void reset() noexcept {
    lo_.clear();
    hi_.clear();
    batches_ = 0;
    axis_ = -1;
  }

  std::vector<std::uint8_t> save() const {
    state_writer w(kind, kind_version);
    put_qspec(w, opt_.spec);
    w.put(static_cast<std::uint8_t>(opt_.channel_wise));
    w.put(static_cast<std::int32_t>(opt_.axis));
    w.put_string(opt_.name);
    w.put(batches_);
    w.put(static_cast<std::int32_t>(axis_));
    w.put_array(lo_);
    w.put_array(hi_);
    return w.take();
  }

  /// Restores an observer from save()'s bytes; a malformed blob is a parse_error.
  static arq_observer load(const std::vector<std::uint8_t>& bytes) {
    state_reader r(bytes, kind, kind_version);
    arq_options o;
    o.spec = get_qspec(r);
    o.channel_wise = r.get_bool();
    o.axis = r.get<std::int32_t>();
    o.name = r.get_string();
    const status s = check_arq_spec(o.spec);
    if (!s.ok()) r.fail_at(s.message());
    arq_observer obs(o);
    obs.batches_ = r.get<std::uint64_t>();
    obs.axis_ = r.get<std::int32_t>();
    obs.lo_ = r.get_array<T>();
    obs.hi_ = r.get_array<T>();
    r.finish();
    const bool data = obs.batches_ > 0;
    if (obs.lo_.size() != obs.hi_.size() || data == obs.lo_.empty() || (!o.channel_wise && data && obs.lo_.size() != 1))
      r.fail_at("inconsistent array sizes for " + std::to_string(obs.batches_) + " updates");
    if ((o.channel_wise && data) ? (obs.axis_ < 0 || obs.axis_ >= shape_t::max_rank) : obs.axis_ != -1)
      r.fail_at("inconsistent channel axis " + std::to_string(obs.axis_));
    for (std::size_t c = 0; c < obs.lo_.size(); ++c)
      if (!std::isfinite(obs.lo_[c]) || !std::isfinite(obs.hi_[c]) || obs.lo_[c] > obs.hi_[c])
        r.fail_at("channel " + std::to_string(c) + " has an invalid range");
    return obs;
  }

 private:
  std::string who() const { return opt_.name.empty() ? std::string("arq observer") : "arq observer '" + opt_.name + "'"; }

  void fold(const std::vector<T>& lo, const std::vector<T>& hi) {
    if (!has_data()) {
      lo_ = lo;
      hi_ = hi;
      return;
    }
    for (std::size_t c = 0; c < lo_.size(); ++c) {
      lo_[c] = lo[c] < lo_[c] ? lo[c] : lo_[c];
      hi_[c] = hi[c] > hi_[c] ? hi[c] : hi_[c];
    }
  }

  arq_options opt_;
  std::vector<T> lo_, hi_;
  std::uint64_t batches_ = 0;
  int axis_ = -1;  // the normalized channel axis; -1 per tensor or before data
};

QLIB_NAMESPACE_END
