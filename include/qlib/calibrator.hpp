// One calibrator for every method, chosen at run time by name: the front door for engines
// and tools that read the method from a config file or a command line. It owns one of the
// observers (observer/*.hpp) behind a small virtual interface; the observers themselves stay
// plain value types for users who pick one at compile time.
//
// Methods and their defaults (bits = 8; per tensor unless `axis` is set):
//   minmax       min/max                        symmetric, TensorRT scale amax/127
//   percentile   |x| histogram percentile       symmetric, 2048 bins, 99.99
//   mse          histogram MSE search (modelopt) symmetric, 2048 bins
//   kl           TensorRT entropy (published)   symmetric, 2048 bins, 128 levels
//   kl-modelopt  pytorch-quantization/modelopt  symmetric, 2048 bins
//   kl-ort       ONNX Runtime entropy           symmetric, 128 bins, 128 levels
//   ifmr         Ascend AMCT IFMR (exact)       affine (activation_offset), AMCT scale rules
//   hfmg         Ascend AMCT HFMG               affine, 4096 bins, AMCT scale rules
//   arq          Ascend AMCT ARQ (weights)      symmetric, per output channel (axis 0)
// Asymmetric modes use a signed grid with a zero point ([-128, 127] for int8): the
// torch/ONNX Runtime convention for the non-AMCT methods, AMCT's for ifmr / hfmg.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config.hpp"
#include "core/qparams.hpp"
#include "core/tensor_view.hpp"
#include "observer/arq.hpp"
#include "observer/entropy.hpp"
#include "observer/hfmg.hpp"
#include "observer/ifmr.hpp"
#include "observer/minmax.hpp"
#include "observer/mse.hpp"
#include "observer/percentile.hpp"
#include "observer/result.hpp"
#include "observer/state.hpp"

QLIB_NAMESPACE_BEGIN

enum class calib_method : std::uint8_t { minmax, percentile, mse, kl, kl_modelopt, kl_ort, ifmr, hfmg, arq };

/// Every method, in the order of the enum.
inline const std::vector<calib_method>& all_calib_methods() {
  static const std::vector<calib_method> all = {calib_method::minmax,      calib_method::percentile, calib_method::mse,
                                                calib_method::kl,          calib_method::kl_modelopt, calib_method::kl_ort,
                                                calib_method::ifmr,        calib_method::hfmg,        calib_method::arq};
  return all;
}

/// The method's command-line name ("kl-modelopt", ...).
inline const char* to_string(calib_method m) noexcept {
  switch (m) {
    case calib_method::minmax: return "minmax";
    case calib_method::percentile: return "percentile";
    case calib_method::mse: return "mse";
    case calib_method::kl: return "kl";
    case calib_method::kl_modelopt: return "kl-modelopt";
    case calib_method::kl_ort: return "kl-ort";
    case calib_method::ifmr: return "ifmr";
    case calib_method::hfmg: return "hfmg";
    case calib_method::arq: return "arq";
  }
  return "?";
}

/// Parses a method name; the error lists the valid ones.
inline status parse_calib_method(const std::string& name, calib_method* out) {
  std::string valid;
  for (calib_method m : all_calib_methods()) {
    if (name == to_string(m)) {
      *out = m;
      return {};
    }
    valid += valid.empty() ? "" : "|";
    valid += to_string(m);
  }
  return {errc::invalid_argument, "unknown method '" + name + "' (expected " + valid + ")"};
}

/// Run-time options shared by all methods; fields a method does not use must stay unset.
struct calibrator_options {
  calib_method method = calib_method::minmax;
  int bits = 8;
  std::optional<qscheme> scheme;      ///< default: the method's (see the file comment)
  std::optional<int> axis;            ///< per-channel axis (minmax, arq)
  std::optional<std::uint32_t> bins;  ///< histogram methods only
  std::optional<double> percentile;   ///< percentile only, in (0, 100]
  std::string name;                   ///< the tensor's name, for messages
};

namespace detail {
inline bool uses_bins(calib_method m) {
  return m == calib_method::percentile || m == calib_method::mse || m == calib_method::kl ||
         m == calib_method::kl_modelopt || m == calib_method::kl_ort || m == calib_method::hfmg;
}
inline bool amct_method(calib_method m) {
  return m == calib_method::ifmr || m == calib_method::hfmg || m == calib_method::arq;
}
}  // namespace detail

/// Checks the options without building anything (for tools that must report every error).
inline status check_calibrator_options(const calibrator_options& o) {
  const std::string m = to_string(o.method);
  if (o.bits < 2 || o.bits > 16)
    return {errc::invalid_argument, "option bits = " + std::to_string(o.bits) + " is out of range [2, 16]"};
  if (o.axis && o.method != calib_method::minmax && o.method != calib_method::arq)
    return {errc::invalid_argument, "option per-channel: method " + m + " is per tensor only (use minmax or arq)"};
  if (o.bins && !detail::uses_bins(o.method))
    return {errc::invalid_argument, "option bins does not apply to method " + m};
  if (o.percentile && o.method != calib_method::percentile)
    return {errc::invalid_argument, "option percentile does not apply to method " + m};
  if (o.method == calib_method::arq && o.scheme && *o.scheme != qscheme::symmetric)
    return {errc::invalid_argument, "option mode: arq quantizes weights symmetrically (offset 0)"};
  return {};
}

/// The qspec a method uses for the given options.
inline qspec calibrator_spec(const calibrator_options& o) {
  qspec s;
  s.bits = o.bits;
  if (detail::amct_method(o.method)) {
    s.convention = qconvention::amct;
    const qscheme dflt = o.method == calib_method::arq ? qscheme::symmetric : qscheme::affine;
    s.scheme = o.scheme.value_or(dflt);
  } else {
    s.scheme = o.scheme.value_or(qscheme::symmetric);
    s.convention = s.scheme == qscheme::affine ? qconvention::torch : qconvention::tensorrt;
  }
  return s;
}

/// Any observer, chosen at run time. A value type (copyable); data type float.
class calibrator {
 public:
  explicit calibrator(const calibrator_options& o) : method_(o.method) {
    detail::throw_if(check_calibrator_options(o));
    const qspec spec = calibrator_spec(o);
    switch (o.method) {
      case calib_method::minmax: {
        minmax_options m;
        m.spec = spec;
        m.axis = o.axis;
        m.name = o.name;
        impl_ = make(minmax_observer<float>(m));
        break;
      }
      case calib_method::percentile: {
        percentile_options m;
        m.spec = spec;
        if (o.bins) m.bins = *o.bins;
        if (o.percentile) m.percentile = *o.percentile;
        m.name = o.name;
        impl_ = make(percentile_observer<float>(m));
        break;
      }
      case calib_method::mse: {
        mse_options m;
        m.spec = spec;
        if (o.bins) m.bins = *o.bins;
        m.name = o.name;
        impl_ = make(mse_observer<float>(m));
        break;
      }
      case calib_method::kl:
      case calib_method::kl_modelopt:
      case calib_method::kl_ort: {
        entropy_observer_options m = o.method == calib_method::kl           ? entropy_observer_options::tensorrt(spec)
                                     : o.method == calib_method::kl_modelopt ? entropy_observer_options::modelopt(spec)
                                                                             : entropy_observer_options::onnxruntime(spec);
        if (o.bins) m.bins = *o.bins;
        m.name = o.name;
        impl_ = make(entropy_observer<float>(m));
        break;
      }
      case calib_method::ifmr: {
        ifmr_options m;
        m.spec = spec;
        m.name = o.name;
        impl_ = make(ifmr_observer<float>(m));
        break;
      }
      case calib_method::hfmg: {
        hfmg_options m;
        m.spec = spec;
        if (o.bins) m.num_of_bins = *o.bins;
        m.name = o.name;
        impl_ = make(hfmg_observer<float>(m));
        break;
      }
      case calib_method::arq: {
        arq_options m;
        m.spec = spec;
        m.axis = o.axis.value_or(0);
        m.name = o.name;
        impl_ = make(arq_observer<float>(m));
        break;
      }
    }
  }

  calibrator(const calibrator& other) : method_(other.method_), impl_(other.impl_->clone()) {}
  calibrator& operator=(const calibrator& other) {
    if (this != &other) {
      method_ = other.method_;
      impl_ = other.impl_->clone();
    }
    return *this;
  }
  calibrator(calibrator&&) noexcept = default;
  calibrator& operator=(calibrator&&) noexcept = default;

  calib_method method() const noexcept { return method_; }
  void update(tensor_view<const float> x) { impl_->update(x); }
  /// Merges another calibrator of the same method and options.
  void merge(const calibrator& other) {
    if (other.method_ != method_)
      detail::fail(errc::invalid_argument, std::string("calibrator: cannot merge method ") + to_string(other.method_) +
                                               " into " + to_string(method_));
    impl_->merge(*other.impl_);
  }
  calib_result<float> compute() const { return impl_->compute(); }
  void reset() { impl_->reset(); }
  /// The observer's own state bytes, prefixed by one byte naming the method.
  std::vector<std::uint8_t> save() const {
    std::vector<std::uint8_t> out = impl_->save();
    out.insert(out.begin(), static_cast<std::uint8_t>(method_));
    return out;
  }
  static calibrator load(const std::vector<std::uint8_t>& bytes) {
    if (bytes.empty() || bytes[0] > static_cast<std::uint8_t>(calib_method::arq))
      detail::fail(errc::parse_error, "calibrator state: missing or unknown method byte");
    const auto m = static_cast<calib_method>(bytes[0]);
    const std::vector<std::uint8_t> rest(bytes.begin() + 1, bytes.end());
    calibrator c;
    c.method_ = m;
    switch (m) {
      case calib_method::minmax: c.impl_ = make(minmax_observer<float>::load(rest)); break;
      case calib_method::percentile: c.impl_ = make(percentile_observer<float>::load(rest)); break;
      case calib_method::mse: c.impl_ = make(mse_observer<float>::load(rest)); break;
      case calib_method::kl:
      case calib_method::kl_modelopt:
      case calib_method::kl_ort: c.impl_ = make(entropy_observer<float>::load(rest)); break;
      case calib_method::ifmr: c.impl_ = make(ifmr_observer<float>::load(rest)); break;
      case calib_method::hfmg: c.impl_ = make(hfmg_observer<float>::load(rest)); break;
      case calib_method::arq: c.impl_ = make(arq_observer<float>::load(rest)); break;
    }
    return c;
  }

 private:
  struct base {
    virtual ~base() = default;
    virtual void update(tensor_view<const float>) = 0;
    virtual void merge(const base&) = 0;
    virtual calib_result<float> compute() const = 0;
    virtual void reset() = 0;
    virtual std::vector<std::uint8_t> save() const = 0;
    virtual std::unique_ptr<base> clone() const = 0;
    virtual const char* kind() const = 0;
  };
  template <class Obs>
  struct model final : base {
    explicit model(Obs o) : obs(std::move(o)) {}
    void update(tensor_view<const float> x) override { obs.update(x); }
    void merge(const base& other) override {
      // Same method implies the same observer type; the kind check guards misuse without RTTI.
      if (std::string(other.kind()) != Obs::kind) detail::fail(errc::invalid_argument, "calibrator: observer kinds differ");
      obs.merge(static_cast<const model&>(other).obs);
    }
    calib_result<float> compute() const override { return obs.compute(); }
    void reset() override { obs.reset(); }
    std::vector<std::uint8_t> save() const override { return obs.save(); }
    std::unique_ptr<base> clone() const override { return std::unique_ptr<base>(new model(obs)); }
    const char* kind() const override { return Obs::kind; }
    Obs obs;
  };
  template <class Obs>
  static std::unique_ptr<base> make(Obs o) {
    return std::unique_ptr<base>(new model<Obs>(std::move(o)));
  }
  calibrator() = default;

  calib_method method_ = calib_method::minmax;
  std::unique_ptr<base> impl_;
};

QLIB_NAMESPACE_END
