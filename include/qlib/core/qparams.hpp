// Quantization grids and parameters: the integer range of a spec, and scale / zero point
// from a real range [lo, hi] in the conventions of TensorRT, PyTorch / ONNX Runtime and
// Ascend AMCT. Pure arithmetic; includes nothing of qlib above core/.
//
// Grid: q = clamp(round(x / s) + z, qmin, qmax), x' = (q - z) * s
// (shared/specs/algorithms.md section 1). Units: s is real units per integer step, z an
// integer on the grid.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../config.hpp"

QLIB_NAMESPACE_BEGIN

/// Symmetric: z = 0 (signed) and the range is [-T, T]. Affine: z chosen so that [lo, hi]
/// (widened to contain 0) maps onto [qmin, qmax].
enum class qscheme : std::uint8_t { symmetric, affine };

/// How a scale follows from a range (the sources disagree; each is reproducible):
/// - tensorrt: symmetric s = T / (2^(b-1) - 1) (T/127 for int8, TensorRT and its cache);
///   affine as torch.
/// - torch: PyTorch observers and ONNX Runtime: symmetric s = T / ((qmax - qmin) / 2)
///   (T/127.5 for int8 [-128, 127]); affine s = (hi - lo) / (qmax - qmin),
///   z = qmin - round(lo / s) clamped to the grid.
/// - amct: Ascend AMCT (algorithms.md section 5): symmetric s = T / (2^(b-1) - 1 + n)
///   with n = 1 unless |hi| > |lo| and hi > 0 (the negative side at least as large: ties
///   divide by 2^(b-1), as AMCT's ARQ / IFMR / HFMG kernels pick lo when |hi| == |lo|);
///   affine s = (hi - lo) / (2^b - 1), z = -2^(b-1) - round(lo / s) with C's round (half
///   away from zero), the order AMCT computes it in; s < FLT_EPSILON becomes 1.
/// In every convention a scale below FLT_EPSILON (constant or all-zero data) becomes 1,
/// so parameters are always finite and positive.
enum class qconvention : std::uint8_t { tensorrt, torch, amct };

/// Rounding of x / s to the grid. half_to_even is what torch.round, ONNX QuantizeLinear
/// and TensorRT do; half_away_from_zero is std::round (TFLite's reference kernels).
enum class rounding : std::uint8_t { half_to_even, half_away_from_zero };

inline const char* to_string(qscheme s) noexcept { return s == qscheme::symmetric ? "symmetric" : "affine"; }
inline const char* to_string(qconvention c) noexcept {
  return c == qconvention::tensorrt ? "tensorrt" : c == qconvention::torch ? "torch" : "amct";
}

/// float32 machine epsilon: AMCT replaces any scale below it by 1 (degenerate range).
constexpr double flt_epsilon = 1.1920928955078125e-07;

/// A quantization grid and the rule for its parameters. Plain data; validate() checks it.
struct qspec {
  int bits = 8;                                    ///< 2..16
  qscheme scheme = qscheme::symmetric;
  bool is_signed = true;                           ///< false: [0, 2^b - 1]
  bool narrow_range = false;                       ///< signed only: drop -2^(b-1)
  qconvention convention = qconvention::tensorrt;

  std::int32_t qmin() const noexcept {
    if (!is_signed) return 0;
    const std::int32_t half = std::int32_t{1} << (bits - 1);
    return narrow_range ? -(half - 1) : -half;
  }
  std::int32_t qmax() const noexcept {
    return is_signed ? (std::int32_t{1} << (bits - 1)) - 1 : (std::int32_t{1} << bits) - 1;
  }

  status validate() const {
    if (bits < 2 || bits > 16)
      return {errc::invalid_argument, "option bits = " + std::to_string(bits) + " is out of range [2, 16]"};
    if (narrow_range && !is_signed)
      return {errc::invalid_argument, "option narrow_range applies to signed grids only"};
    return {};
  }

  // Named constructors for the common grids.
  /// TensorRT activations: int8 [-128, 127], s = amax / 127.
  static qspec tensorrt_int8() { return qspec{}; }
  /// TensorRT / ONNX QDQ weights: int8 narrow [-127, 127], s = amax / 127.
  static qspec tensorrt_weight_int8() {
    qspec s;
    s.narrow_range = true;
    return s;
  }
  /// PyTorch quint8 affine activations [0, 255].
  static qspec torch_quint8() {
    qspec s;
    s.scheme = qscheme::affine;
    s.is_signed = false;
    s.convention = qconvention::torch;
    return s;
  }
  /// AMCT activations: int8 with offset (activation_offset = true).
  static qspec amct_activation(int bits = 8, bool with_offset = true) {
    qspec s;
    s.bits = bits;
    s.scheme = with_offset ? qscheme::affine : qscheme::symmetric;
    s.convention = qconvention::amct;
    return s;
  }
  /// AMCT weights (ARQ): symmetric, offset 0.
  static qspec amct_weight(int bits = 8) { return amct_activation(bits, false); }
};

inline bool operator==(const qspec& a, const qspec& b) noexcept {
  return a.bits == b.bits && a.scheme == b.scheme && a.is_signed == b.is_signed &&
         a.narrow_range == b.narrow_range && a.convention == b.convention;
}

/// One scale and zero point.
template <class T>
struct qparams {
  T scale = T(1);
  std::int32_t zero_point = 0;
};

/// Round half to even without depending on the floating-point environment's mode:
/// the exact tie test keeps it identical on every platform and under nvcc.
template <class T>
QLIB_HOST_DEVICE inline T round_half_even(T v) noexcept {
  T r = std::floor(v);
  const T diff = v - r;
  if (diff > T(0.5) || (diff == T(0.5) && std::fmod(r, T(2)) != T(0))) r += T(1);
  return r;
}

template <class T>
QLIB_HOST_DEVICE inline T round_with(T v, rounding mode) noexcept {
  return mode == rounding::half_to_even ? round_half_even(v) : std::round(v);
}

/// Checks a range for parameters: finite, lo <= hi.
template <class T>
status check_range(T lo, T hi) {
  if (!std::isfinite(lo) || !std::isfinite(hi))
    return {errc::non_finite, "range [" + std::to_string(lo) + ", " + std::to_string(hi) + "] is not finite"};
  if (lo > hi)
    return {errc::invalid_argument,
            "range has lo > hi: [" + std::to_string(lo) + ", " + std::to_string(hi) + "]"};
  return {};
}

/// Scale and zero point that map [lo, hi] onto spec's grid (see qconvention for the rules).
/// Symmetric grids use T = max(|lo|, |hi|); unsigned symmetric grids have z = 0 and cover
/// [0, T] (for ranges known to be non-negative, e.g. after ReLU).
template <class T>
qparams<T> qparams_from_range(T lo, T hi, const qspec& spec) {
  detail::throw_if(spec.validate());
  detail::throw_if(check_range(lo, hi));
  const T eps = static_cast<T>(flt_epsilon);
  const std::int32_t qmin = spec.qmin(), qmax = spec.qmax();
  const T half = static_cast<T>(std::int32_t{1} << (spec.bits - 1));
  qparams<T> p;
  if (spec.scheme == qscheme::symmetric) {
    const T t = std::fmax(std::fabs(lo), std::fabs(hi));
    T divisor;
    if (!spec.is_signed) {
      divisor = static_cast<T>(qmax);
    } else if (spec.convention == qconvention::torch) {
      divisor = static_cast<T>(qmax - qmin) / T(2);
    } else {
      divisor = half - T(1);
      // AMCT (hicann/amct quantize_lib arq.cpp, ifmr.cpp, hfmg.cpp): the signed value of
      // larger magnitude, lo on a tie, divides by 2^(b-1) - 1 when positive, else 2^(b-1).
      if (spec.convention == qconvention::amct && !(std::fabs(hi) > std::fabs(lo)) && lo < T(0)) divisor += T(1);
    }
    p.scale = t / divisor;
    if (!(p.scale >= eps)) p.scale = T(1);
    p.zero_point = 0;
    return p;
  }
  // Affine: the range must contain 0 so that 0 is exactly representable.
  const T l = std::fmin(lo, T(0)), h = std::fmax(hi, T(0));
  if (spec.convention == qconvention::amct) {
    // AMCT: s = (mx - mn) / (2^b - 1), offset = -2^(b-1) - round(mn / s) with C's round
    // (half away from zero; ifmr.cpp, hfmg.cpp, arq.cpp); for an unsigned grid the offset
    // moves up by 2^(b-1).
    p.scale = (h - l) / static_cast<T>(qmax - qmin);
    if (!(p.scale >= eps)) {
      p.scale = T(1);
      p.zero_point = qmin;
      return p;
    }
    const T z = static_cast<T>(qmin) - std::round(l / p.scale);
    p.zero_point = static_cast<std::int32_t>(std::fmin(std::fmax(z, T(qmin)), T(qmax)));
    return p;
  }
  p.scale = (h - l) / static_cast<T>(qmax - qmin);
  if (!(p.scale >= eps)) p.scale = T(1);
  // PyTorch's form, qmin - round(lo / s): rounding lo / s first differs from rounding
  // qmin - lo / s on exact ties when qmin is odd (narrow-range grids).
  const T z = static_cast<T>(qmin) - round_half_even(l / p.scale);
  p.zero_point = static_cast<std::int32_t>(std::fmin(std::fmax(z, T(qmin)), T(qmax)));
  return p;
}

/// Per-channel parameters: an axis and one scale / zero point per channel.
template <class T>
struct channel_qparams {
  std::vector<T> scale;
  std::vector<std::int32_t> zero_point;
  int axis = 0;
  std::size_t channels() const noexcept { return scale.size(); }
};

/// Per-channel parameters from per-channel ranges (lo.size() == hi.size()).
template <class T>
channel_qparams<T> qparams_from_ranges(const std::vector<T>& lo, const std::vector<T>& hi, const qspec& spec,
                                       int axis) {
  if (lo.size() != hi.size())
    detail::fail(errc::invalid_argument, "per-channel ranges differ in length: " + std::to_string(lo.size()) +
                                             " minima vs " + std::to_string(hi.size()) + " maxima");
  channel_qparams<T> out;
  out.axis = axis;
  out.scale.resize(lo.size());
  out.zero_point.resize(lo.size());
  for (std::size_t c = 0; c < lo.size(); ++c) {
    const qparams<T> p = qparams_from_range(lo[c], hi[c], spec);
    out.scale[c] = p.scale;
    out.zero_point[c] = p.zero_point;
  }
  return out;
}

QLIB_NAMESPACE_END
