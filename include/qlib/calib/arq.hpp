// ARQ, Ascend AMCT's weight calibration: plain min/max (no search, despite the name), per
// output channel by default, on a symmetric grid whose offset is 0 (shared/specs/
// algorithms.md section 5; hicann/amct .../quantize_lib/src/arq.cpp,
// WtsArqCalibrationCpuKernel).
//
// Per channel c of a weight tensor split along `axis` (axis 0 is AMCT's [C_out, -1]
// reshape of Conv / Linear weights; axis 1 for ConvTranspose, whose weights are
// [C_in, C_out, ...]): T = max(|min_c|, |max_c|), s = T / (2^(b-1) - 1 + n), n = 1 unless
// |max_c| > |min_c| and max_c > 0 (qparams_from_range with qconvention::amct); s below
// FLT_EPSILON becomes 1. Bits in {4, 6, 7, 8} (AMCT's wts num_bits; 6 and 7 bits for
// its Winograd-friendly Conv2d weights). Per tensor (channel_wise = false) is one range.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../core/check.hpp"
#include "../core/qparams.hpp"
#include "../core/tensor_view.hpp"

QLIB_NAMESPACE_BEGIN

/// Checks an ARQ grid: bits in {4, 6, 7, 8}, symmetric (weight offset 0), signed.
inline status check_arq_spec(const qspec& spec) {
  status s = spec.validate();
  if (!s.ok()) return s;
  if (spec.bits != 4 && spec.bits != 6 && spec.bits != 7 && spec.bits != 8)
    return {errc::invalid_argument, "option bits = " + std::to_string(spec.bits) + " is not one of ARQ's 4, 6, 7, 8"};
  if (spec.scheme != qscheme::symmetric || !spec.is_signed)
    return {errc::invalid_argument, "ARQ needs a signed symmetric grid (AMCT's weight offset is 0)"};
  return {};
}

/// ARQ's parameters from per-channel ranges (AMCT's rule; offsets 0).
template <class T>
channel_qparams<T> arq_params(const std::vector<T>& lo, const std::vector<T>& hi, const qspec& spec, int axis) {
  detail::throw_if(check_arq_spec(spec));
  return qparams_from_ranges(lo, hi, spec, axis);
}

QLIB_NAMESPACE_END
