// AMCT record reader: never crashes; an accepted record writes to a text that reads back to
// the same values and writes back byte for byte.
#include <qlib/io/amct_record.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  qlib::amct_record r;
  if (!qlib::try_parse_amct_record(fuzz_input(data, size), "fuzz.txt", &r).ok()) return 0;
  std::string out;
  QLIB_FUZZ_CHECK(qlib::try_write_amct_record(r, &out).ok());
  qlib::amct_record back;
  QLIB_FUZZ_CHECK(qlib::try_parse_amct_record(out, "rewritten.txt", &back).ok());
  QLIB_FUZZ_CHECK(back.records.size() == r.records.size());
  for (std::size_t i = 0; i < r.records.size(); ++i) {
    QLIB_FUZZ_CHECK(back.records[i].key == r.records[i].key);
    QLIB_FUZZ_CHECK(back.records[i].scale_d == r.records[i].scale_d);
    QLIB_FUZZ_CHECK(back.records[i].offset_d == r.records[i].offset_d);
    QLIB_FUZZ_CHECK(back.records[i].scale_w == r.records[i].scale_w);
    QLIB_FUZZ_CHECK(back.records[i].offset_w == r.records[i].offset_w);
  }
  std::string again;
  QLIB_FUZZ_CHECK(qlib::try_write_amct_record(back, &again).ok());
  QLIB_FUZZ_CHECK(again == out);
  return 0;
}
