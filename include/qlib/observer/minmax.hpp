// MinMax observer: running minimum and maximum, per tensor or per channel, optionally as
// an exponential moving average of each batch's min/max (PyTorch's
// MovingAverageMinMaxObserver: m <- m + c * (batch_m - m), the first batch sets m).
//
// Exactness: plain min/max is associative and commutative, so any split of the data into
// batches, and merge() of observers that saw disjoint parts, give the same bits as one
// pass. The moving average depends on batch order by definition; merge() of two EMA
// observers averages their states weighted by their batch counts, which equals no single
// pass (documented, tested as such).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../core/check.hpp"
#include "../core/qparams.hpp"
#include "../core/tensor_view.hpp"
#include "result.hpp"
#include "state.hpp"

QLIB_NAMESPACE_BEGIN

/// Options of minmax_observer.
struct minmax_options {
  qspec spec{};
  std::optional<int> axis;           ///< empty: per tensor; else the channel axis (negative: from the end)
  double averaging_constant = 0.0;   ///< 0: plain min/max; (0, 1]: moving average
  std::string name;                  ///< appears in error messages
};

template <class T = float>
class minmax_observer {
 public:
  using value_type = T;
  static constexpr const char* kind = "minmax";
  static constexpr std::uint16_t kind_version = 1;

  explicit minmax_observer(minmax_options options = {}) : opt_(std::move(options)) {
    detail::throw_if(opt_.spec.validate());
    if (!(opt_.averaging_constant >= 0.0 && opt_.averaging_constant <= 1.0))
      detail::fail(errc::invalid_argument,
                   who() + ": option averaging_constant = " + std::to_string(opt_.averaging_constant) +
                       " is outside [0, 1]");
  }

  const minmax_options& options() const noexcept { return opt_; }
  /// Batches accepted so far.
  std::uint64_t batches() const noexcept { return batches_; }
  bool has_data() const noexcept { return batches_ > 0; }
  const std::vector<T>& min() const noexcept { return lo_; }
  const std::vector<T>& max() const noexcept { return hi_; }

  /// Observes one batch. Empty or non-finite batches, or a channel count that differs from
  /// earlier batches, are rejected and leave the state unchanged.
  void update(tensor_view<const T> x) {
    std::vector<T> lo, hi;
    int axis = -1;
    if (!opt_.axis) {
      minmax_t<T> mm{};
      detail::throw_if(check_and_minmax(x, who(), &mm));
      lo.assign(1, mm.min);
      hi.assign(1, mm.max);
    } else {
      if (x.empty()) detail::fail(errc::empty_input, who() + ": " + x.label() + " of shape " + x.shape().str() + " is empty");
      status s = check_axis(*opt_.axis, x.rank(), &axis);
      if (!s.ok()) detail::fail(s.code(), who() + ": " + s.message());
      detail::throw_if(check_finite(x, who()));
      const channel_layout l = layout_along(x.shape(), axis);
      if (!lo_.empty() && lo_.size() != l.channels)
        detail::fail(errc::invalid_argument, who() + ": " + x.label() + " has " + std::to_string(l.channels) +
                                                 " channels along axis " + std::to_string(axis) +
                                                 ", earlier batches had " + std::to_string(lo_.size()));
      channel_minmax(x.data(), l, lo, hi);
    }
    fold(lo, hi);
    axis_ = axis;
  }

  /// Adds another observer's statistics (same options). Exact for plain min/max.
  void merge(const minmax_observer& other) {
    if (!(other.opt_.spec == opt_.spec) || other.opt_.axis != opt_.axis || (other.has_data() && has_data() && other.axis_ != axis_) ||
        other.opt_.averaging_constant != opt_.averaging_constant)
      detail::fail(errc::invalid_argument, who() + ": cannot merge an observer with different options");
    if (!other.has_data()) return;
    if (!has_data()) {
      lo_ = other.lo_;
      hi_ = other.hi_;
      batches_ = other.batches_;
      axis_ = other.axis_;
      return;
    }
    if (other.lo_.size() != lo_.size())
      detail::fail(errc::invalid_argument, who() + ": cannot merge " + std::to_string(other.lo_.size()) +
                                               " channels into " + std::to_string(lo_.size()));
    if (opt_.averaging_constant > 0.0) {
      const T wa = static_cast<T>(batches_), wb = static_cast<T>(other.batches_);
      for (std::size_t c = 0; c < lo_.size(); ++c) {
        lo_[c] = (lo_[c] * wa + other.lo_[c] * wb) / (wa + wb);
        hi_[c] = (hi_[c] * wa + other.hi_[c] * wb) / (wa + wb);
      }
    } else {
      for (std::size_t c = 0; c < lo_.size(); ++c) {
        lo_[c] = other.lo_[c] < lo_[c] ? other.lo_[c] : lo_[c];
        hi_[c] = other.hi_[c] > hi_[c] ? other.hi_[c] : hi_[c];
      }
    }
    batches_ += other.batches_;
  }

  /// The observed range and its parameters. Fails (empty_input) before any data.
  calib_result<T> compute() const {
    if (!has_data()) detail::fail(errc::empty_input, who() + ": compute() before any data was observed");
    if (!opt_.axis) return make_result(lo_[0], hi_[0], opt_.spec);
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
    w.put(static_cast<std::uint8_t>(opt_.axis.has_value()));
    w.put(static_cast<std::int32_t>(opt_.axis.value_or(0)));
    w.put(opt_.averaging_constant);
    w.put_string(opt_.name);
    w.put(batches_);
    w.put(static_cast<std::int32_t>(axis_));
    w.put_array(lo_);
    w.put_array(hi_);
    return w.take();
  }

  /// Restores an observer from save()'s bytes; a malformed blob is a parse_error.
  static minmax_observer load(const std::vector<std::uint8_t>& bytes) {
    state_reader r(bytes, kind, kind_version);
    minmax_options o;
    o.spec = get_qspec(r);
    const bool has_axis = r.get_bool();
    const auto axis = r.get<std::int32_t>();
    if (has_axis) o.axis = axis;
    o.averaging_constant = r.get<double>();
    o.name = r.get_string();
    if (!(o.averaging_constant >= 0.0 && o.averaging_constant <= 1.0)) r.fail_at("averaging_constant out of range");
    minmax_observer obs(o);
    obs.batches_ = r.get<std::uint64_t>();
    obs.axis_ = r.get<std::int32_t>();
    obs.lo_ = r.get_array<T>();
    obs.hi_ = r.get_array<T>();
    r.finish();
    const std::size_t expect = obs.batches_ == 0 ? 0 : (!o.axis ? 1 : obs.lo_.size());
    if (obs.lo_.size() != obs.hi_.size() || obs.lo_.size() != expect || (obs.batches_ > 0 && expect == 0))
      r.fail_at("inconsistent array sizes for " + std::to_string(obs.batches_) + " batches");
    if ((o.axis && obs.batches_ > 0) ? (obs.axis_ < 0 || obs.axis_ >= shape_t::max_rank) : obs.axis_ != -1)
      r.fail_at("inconsistent channel axis " + std::to_string(obs.axis_));
    for (std::size_t c = 0; c < obs.lo_.size(); ++c)
      if (!std::isfinite(obs.lo_[c]) || !std::isfinite(obs.hi_[c]) || obs.lo_[c] > obs.hi_[c])
        r.fail_at("channel " + std::to_string(c) + " has an invalid range");
    return obs;
  }

 private:
  std::string who() const { return opt_.name.empty() ? std::string("minmax observer") : "minmax observer '" + opt_.name + "'"; }

  void fold(const std::vector<T>& lo, const std::vector<T>& hi) {
    if (!has_data()) {
      lo_ = lo;
      hi_ = hi;
    } else if (opt_.averaging_constant > 0.0) {
      const T k = static_cast<T>(opt_.averaging_constant);
      for (std::size_t c = 0; c < lo_.size(); ++c) {
        lo_[c] = lo_[c] + k * (lo[c] - lo_[c]);
        hi_[c] = hi_[c] + k * (hi[c] - hi_[c]);
      }
    } else {
      for (std::size_t c = 0; c < lo_.size(); ++c) {
        lo_[c] = lo[c] < lo_[c] ? lo[c] : lo_[c];
        hi_[c] = hi[c] > hi_[c] ? hi[c] : hi_[c];
      }
    }
    ++batches_;
  }

  minmax_options opt_;
  std::vector<T> lo_, hi_;
  std::uint64_t batches_ = 0;
  int axis_ = -1;  // the normalized channel axis seen by update(); -1 per tensor or before data
};

QLIB_NAMESPACE_END
