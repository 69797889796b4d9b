// Ascend AMCT's files: the quantization record (protobuf text format) and the JSON
// quantization config. One include for both; each lives in its own header.
#pragma once

#include "amct_config.hpp"
#include "amct_record.hpp"
