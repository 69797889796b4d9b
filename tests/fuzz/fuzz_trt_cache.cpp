// TensorRT cache reader: never crashes; every accepted text is written back byte for byte.
#include <qlib/io/trt_cache.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text = fuzz_input(data, size);
  qlib::trt_cache c;
  if (!qlib::try_parse_trt_cache(text, "fuzz.cache", &c).ok()) return 0;
  std::string out;
  QLIB_FUZZ_CHECK(qlib::try_write_trt_cache(c, &out).ok());
  QLIB_FUZZ_CHECK(out == text);
  return 0;
}
