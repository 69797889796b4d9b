// qlib result files (and the JSON parser under them): never crash; accepted results write,
// read back to the same values and write back byte for byte.
#include <qlib/io/results_json.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text = fuzz_input(data, size);
  // The generic JSON layer: any accepted value writes and reads back equal.
  qlib::json v;
  if (qlib::try_parse_json(text, "fuzz.json", &v).ok()) {
    std::string out;
    if (qlib::try_write_json(v, &out).ok()) {  // fails only for strings that are not UTF-8: impossible here
      qlib::json w;
      QLIB_FUZZ_CHECK(qlib::try_parse_json(out, "rewritten.json", &w).ok());
      QLIB_FUZZ_CHECK(w == v);
    } else {
      QLIB_FUZZ_CHECK(false);
    }
  }
  std::vector<qlib::result_entry> r;
  if (!qlib::try_parse_results_json(text, "fuzz.json", &r).ok()) return 0;
  std::string out;
  QLIB_FUZZ_CHECK(qlib::try_write_results_json(r, &out).ok());
  std::vector<qlib::result_entry> back;
  QLIB_FUZZ_CHECK(qlib::try_parse_results_json(out, "rewritten.json", &back).ok());
  QLIB_FUZZ_CHECK(back.size() == r.size());
  for (std::size_t i = 0; i < r.size(); ++i) {
    QLIB_FUZZ_CHECK(back[i].name == r[i].name && back[i].method == r[i].method);
    QLIB_FUZZ_CHECK(back[i].result.scale == r[i].result.scale && back[i].result.zero_point == r[i].result.zero_point);
    QLIB_FUZZ_CHECK(back[i].result.clip_min == r[i].result.clip_min && back[i].result.clip_max == r[i].result.clip_max);
    QLIB_FUZZ_CHECK(back[i].result.spec == r[i].result.spec && back[i].result.axis == r[i].result.axis);
  }
  std::string again;
  QLIB_FUZZ_CHECK(qlib::try_write_results_json(back, &again).ok());
  QLIB_FUZZ_CHECK(again == out);
  return 0;
}
