// qlib: header-only quantization. The umbrella of the CPU core: arithmetic, observers,
// calibration searches, fake-quant and fusion helpers. Standard library only. The run-time
// calibrator (qlib/calibrator.hpp: any method chosen by name) is included on purpose: it
// instantiates every observer, which a translation unit that uses one observer should not
// pay for. The file formats (npy, TensorRT cache, AMCT, ncnn, JSON) have their own
// umbrella, qlib/io.hpp, so that a translation unit that only observes and quantizes does
// not parse the parsers (compile time: see scripts/compile_time.sh). Adapters (qlib/eigen.hpp, qlib/xtensor.hpp,
// qlib/mpi.hpp, qlib/torch.hpp, qlib/onnx.hpp) and CUDA kernels (qlib/cuda/...) are
// included on purpose, never from here.
#pragma once

#include "calib/amct.hpp"
#include "calib/arq.hpp"
#include "calib/entropy.hpp"
#include "calib/hfmg.hpp"
#include "calib/ifmr.hpp"
#include "calib/search.hpp"
#include "config.hpp"
#include "core/binning.hpp"
#include "core/check.hpp"
#include "core/fast_round.hpp"
#include "core/fixed_point.hpp"
#include "core/qparams.hpp"
#include "core/quantize.hpp"
#include "core/tensor_view.hpp"
#include "fakequant/fake_quant.hpp"
#include "fakequant/learnable.hpp"
#include "fuse/bn_fold.hpp"
#include "fuse/convert.hpp"
#include "fuse/int_kernels.hpp"
#include "fuse/ops.hpp"
#include "observer/arq.hpp"
#include "observer/entropy.hpp"
#include "observer/hfmg.hpp"
#include "observer/histogram.hpp"
#include "observer/ifmr.hpp"
#include "observer/minmax.hpp"
#include "observer/mse.hpp"
#include "observer/percentile.hpp"
#include "observer/result.hpp"
#include "observer/state.hpp"
