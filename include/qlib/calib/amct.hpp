// Ascend AMCT's calibration algorithms (shared/specs/algorithms.md section 5; the open
// code hicann/amct, amct_pytorch/.../quantize_lib/src/{arq,ifmr,hfmg}.cpp): pure functions
// of the statistics, one header each.
//
//   calib/ifmr.hpp  IFMR: percentile start, grid search of the clip ratio (exact on the
//                   values, or on a range histogram)
//   calib/hfmg.hpp  HFMG: trimmed-range candidates over a range histogram, L2 loss
//   calib/arq.hpp   ARQ: per-channel min/max of weights
//
// The scale / offset from a range is qparams_from_range with qconvention::amct
// (core/qparams.hpp), which follows AMCT's kernels: symmetric s = T / (2^(b-1) - 1 + n),
// n = 1 unless |max| > |min| and max > 0 (AMCT picks the signed value of larger magnitude,
// min on a tie, and divides by 2^(b-1) when it is not positive); affine
// s = (max(hi, 0) - min(lo, 0)) / (2^b - 1), offset = -2^(b-1) - round(lo / s) with C's
// round (half away from zero); s < FLT_EPSILON becomes 1 (offset -2^(b-1)).
//
// Known differences from AMCT's code, all on purpose and documented where they live:
// - IFMR's ratios follow numpy.arange (the specification: 61 values for [0.7, 1.3) step
//   0.01); AMCT's CPU kernel loops over 60 float ratios (ifmr_ratio_grid::amct_kernel
//   reproduces them). k = N - int(pct * N) is computed in double (AMCT: pct is a float and
//   the product float, which can move k by one for some N; AMCT's "pct == 1" test uses
//   DBL_EPSILON where the specification says FLT_EPSILON). Losses are summed in double.
// - HFMG uses signed source-bin offsets (PyTorch's _get_norm; AMCT's unsigned arithmetic
//   never trims mass off the left), losses in units of the bin width in double, fractional
//   re-binned counts; HFMG's code resets scales below DBL_EPSILON (not FLT_EPSILON) to 1.
#pragma once

#include "arq.hpp"
#include "hfmg.hpp"
#include "ifmr.hpp"
