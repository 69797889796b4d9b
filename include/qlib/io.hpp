// qlib's file formats, all of them: .npy (streaming reader, writer), the TensorRT
// calibration cache, the AMCT record and quantization config, the ncnn int8 table, JSON and
// qlib's results JSON. Standard library only; includes qlib/quant.hpp's types it needs.
#pragma once

#include "io/amct.hpp"
#include "io/amct_config.hpp"
#include "io/amct_record.hpp"
#include "io/json.hpp"
#include "io/ncnn_table.hpp"
#include "io/npy.hpp"
#include "io/npy_format.hpp"
#include "io/results_json.hpp"
#include "io/trt_cache.hpp"
