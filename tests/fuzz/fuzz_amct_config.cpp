// AMCT config reader: never crashes; an accepted config writes, reads back and writes back
// byte for byte.
#include <qlib/io/amct_config.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  qlib::amct_config c;
  if (!qlib::try_parse_amct_config(fuzz_input(data, size), "fuzz.json", &c).ok()) return 0;
  std::string out;
  QLIB_FUZZ_CHECK(qlib::try_write_amct_config(c, &out).ok());
  qlib::amct_config back;
  QLIB_FUZZ_CHECK(qlib::try_parse_amct_config(out, "rewritten.json", &back).ok());
  QLIB_FUZZ_CHECK(back.layers.size() == c.layers.size() && back.batch_num == c.batch_num);
  std::string again;
  QLIB_FUZZ_CHECK(qlib::try_write_amct_config(back, &again).ok());
  QLIB_FUZZ_CHECK(again == out);
  return 0;
}
