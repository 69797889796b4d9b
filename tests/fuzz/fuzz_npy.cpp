// .npy reader: never crashes; an accepted file rewrites to a file that reads back to the
// same header and the same element bits, and rewriting that is a fixed point.
#include <qlib/io/npy.hpp>

#include <cstring>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes = fuzz_input(data, size);
  qlib::npy_array<double> a;
  if (!qlib::try_parse_npy(bytes, "fuzz.npy", &a).ok()) return 0;
  std::string out;
  QLIB_FUZZ_CHECK(qlib::try_write_npy(a.data.data(), a.header.shape, a.header.dtype, &out, a.header.major).ok());
  qlib::npy_array<double> b;
  QLIB_FUZZ_CHECK(qlib::try_parse_npy(out, "rewritten.npy", &b).ok());
  QLIB_FUZZ_CHECK(b.header.shape == a.header.shape && b.header.dtype == a.header.dtype && !b.header.big_endian);
  QLIB_FUZZ_CHECK(b.data.size() == a.data.size());
  QLIB_FUZZ_CHECK(a.data.empty() || std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(double)) == 0);
  std::string again;
  QLIB_FUZZ_CHECK(qlib::try_write_npy(b.data.data(), b.header.shape, b.header.dtype, &again, b.header.major).ok());
  QLIB_FUZZ_CHECK(again == out);
  // The streaming reader agrees with the whole-file one, in small chunks into float.
  qlib::npy_reader r;
  QLIB_FUZZ_CHECK(qlib::npy_reader::try_open_buffer(bytes.data(), bytes.size(), "fuzz.npy", &r).ok());
  float chunk[7];
  std::size_t at = 0, got = 0;
  while (r.try_read(chunk, 7, &got).ok() && got > 0) {
    for (std::size_t i = 0; i < got; ++i) {
      const float expect = static_cast<float>(a.data[at + i]);
      QLIB_FUZZ_CHECK(chunk[i] == expect || (chunk[i] != chunk[i] && expect != expect));
    }
    at += got;
  }
  QLIB_FUZZ_CHECK(at == a.data.size());
  return 0;
}
