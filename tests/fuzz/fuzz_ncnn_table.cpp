// ncnn table reader: never crashes; an accepted table writes, reads back to the same keys
// (and, in the exact shortest format, the same values) and writes back byte for byte.
#include <qlib/io/ncnn_table.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  qlib::ncnn_table t;
  if (!qlib::try_parse_ncnn_table(fuzz_input(data, size), "fuzz.table", &t).ok()) return 0;
  std::string out;
  QLIB_FUZZ_CHECK(qlib::try_write_ncnn_table(t, &out).ok());
  qlib::ncnn_table back;
  QLIB_FUZZ_CHECK(qlib::try_parse_ncnn_table(out, "rewritten.table", &back).ok());
  QLIB_FUZZ_CHECK(back.entries.size() == t.entries.size());
  for (std::size_t i = 0; i < t.entries.size(); ++i) {
    QLIB_FUZZ_CHECK(back.entries[i].key() == t.entries[i].key());
    if (t.format == qlib::ncnn_number_format::shortest) QLIB_FUZZ_CHECK(back.entries[i].scales == t.entries[i].scales);
  }
  std::string again;
  QLIB_FUZZ_CHECK(qlib::try_write_ncnn_table(back, &again).ok());
  QLIB_FUZZ_CHECK(again == out);
  return 0;
}
