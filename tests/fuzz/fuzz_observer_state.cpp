// Observer state: minmax_observer<float>::load never crashes on foreign bytes (a
// qlib::error is the expected outcome); an accepted state saves to a state that loads.
#include <qlib/observer/minmax.hpp>

#include <vector>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<std::uint8_t> bytes(data, data + size);
  try {
    const auto obs = qlib::minmax_observer<float>::load(bytes);
    const std::vector<std::uint8_t> saved = obs.save();
    const auto again = qlib::minmax_observer<float>::load(saved);
    QLIB_FUZZ_CHECK(again.save() == saved);
    if (obs.batches() > 0) {
      const auto r = obs.compute();
      QLIB_FUZZ_CHECK(r.scale.size() == r.zero_point.size());
    }
  } catch (const qlib::error& e) {
    QLIB_FUZZ_CHECK(e.code() != qlib::errc::internal);
  }
  return 0;
}
