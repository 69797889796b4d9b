// qlib: header-only quantization. The umbrella of the CPU core: arithmetic, observers,
// calibration searches, fake-quant, fusion helpers and file formats. Standard library only;
// adapters (qlib/eigen.hpp, qlib/xtensor.hpp, qlib/mpi.hpp, qlib/torch.hpp) and CUDA
// kernels (qlib/cuda/...) are included on purpose, never from here.
#pragma once

#include "config.hpp"
#include "core/check.hpp"
#include "core/qparams.hpp"
#include "core/quantize.hpp"
#include "core/tensor_view.hpp"
#include "observer/minmax.hpp"
#include "observer/result.hpp"
#include "observer/state.hpp"
