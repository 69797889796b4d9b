// .npy reader: never crashes; an accepted file rewrites to a file that reads back to the
// same header and the same element bits, and rewriting that is a fixed point.
#include <cstring>
#include <qlib/io/npy.hpp>

#include "fuzz_common.hpp"

namespace {
// An accepted file's rewrite reads back to the same header and element bits, and rewriting
// that is a fixed point.
void rewrite_checks(const qlib::npy_array<double>& a, const std::string& out) {
  qlib::npy_array<double> b;
  QLIB_FUZZ_CHECK(qlib::try_parse_npy(out, "rewritten.npy", &b).ok());
  QLIB_FUZZ_CHECK(b.header.shape == a.header.shape && b.header.dtype == a.header.dtype && !b.header.big_endian);
  QLIB_FUZZ_CHECK(b.data.size() == a.data.size());
  QLIB_FUZZ_CHECK(a.data.empty() || std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(double)) == 0);
  std::string again;
  QLIB_FUZZ_CHECK(qlib::try_write_npy(b.data.data(), b.header.shape, b.header.dtype, &again, b.header.major).ok());
  QLIB_FUZZ_CHECK(again == out);
}

// The streaming reader agrees with the whole-file one, in small chunks. Into double: the
// same conversion as the whole-file read. (Into float, an int64 above 2^24 rounds once,
// directly, where float(double(v)) would round twice: found by this target, kept as the
// corpus file regression-int64-double-rounding.)
void stream_checks(const qlib::npy_array<double>& a, const std::string& bytes) {
  std::size_t got = 0;
  qlib::npy_reader r;
  QLIB_FUZZ_CHECK(qlib::npy_reader::try_open_buffer(bytes.data(), bytes.size(), "fuzz.npy", &r).ok());
  double chunk[7];
  std::size_t at = 0;
  while (r.try_read(chunk, 7, &got).ok() && got > 0) {
    for (std::size_t i = 0; i < got; ++i) {
      const double expect = a.data[at + i];
      QLIB_FUZZ_CHECK(std::memcmp(&chunk[i], &expect, sizeof(double)) == 0 ||
                      (chunk[i] != chunk[i] && expect != expect));
    }
    at += got;
  }
  QLIB_FUZZ_CHECK(at == a.data.size());
  // Into float, every element is the nearest float to the stored value (checked for the
  // float dtypes, whose double value is exact).
  if (a.header.dtype == qlib::npy_dtype::f2 || a.header.dtype == qlib::npy_dtype::f4 ||
      a.header.dtype == qlib::npy_dtype::f8) {
    qlib::npy_reader rf;
    QLIB_FUZZ_CHECK(qlib::npy_reader::try_open_buffer(bytes.data(), bytes.size(), "fuzz.npy", &rf).ok());
    float fchunk[5];
    at = 0;
    while (rf.try_read(fchunk, 5, &got).ok() && got > 0) {
      for (std::size_t i = 0; i < got; ++i) {
        const float expect = static_cast<float>(a.data[at + i]);
        QLIB_FUZZ_CHECK(fchunk[i] == expect || (fchunk[i] != fchunk[i] && expect != expect));
      }
      at += got;
    }
    QLIB_FUZZ_CHECK(at == a.data.size());
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes = fuzz_input(data, size);
  qlib::npy_array<double> a;
  if (!qlib::try_parse_npy(bytes, "fuzz.npy", &a).ok()) return 0;
  std::string out;
  const qlib::status written = qlib::try_write_npy(a.data.data(), a.header.shape, a.header.dtype, &out, a.header.major);
  // 64-bit integers above 2^53 do not survive the trip through double (e.g. a uint64 near
  // 2^64 rounds to 2^64, which the writer rightly refuses: found by this target, kept as
  // the corpus file regression-u8-above-2p53). Every other accepted file rewrites.
  const bool wide_int = a.header.dtype == qlib::npy_dtype::i8 || a.header.dtype == qlib::npy_dtype::u8;
  QLIB_FUZZ_CHECK(written.ok() || (wide_int && written.code() == qlib::errc::invalid_argument));
  if (written.ok()) rewrite_checks(a, out);
  stream_checks(a, bytes);
  return 0;
}
