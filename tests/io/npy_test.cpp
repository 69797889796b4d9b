// .npy: files numpy wrote (tests/data/npy, made by make_npy.py) are read exactly and
// rewritten byte for byte; streaming in chunks; float16 conversions against slow
// references; every malformed or truncated file is a parse_error naming the byte.
#include <qlib/io/npy.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "io/io_test_util.hpp"

using qlib::npy_dtype;
using qlib::shape_t;

namespace {

std::string fixture(const std::string& name) { return qlib_test::data_dir("npy") + "/" + name; }

/// Reads a fixture as doubles, checks its header, and checks that the writer reproduces
/// the file from (values, shape, dtype, version).
qlib::npy_array<double> check_fixture(const std::string& name, npy_dtype dtype, const shape_t& shape, int version = 1) {
  INFO(name);
  const std::string bytes = qlib_test::read_bytes(fixture(name));
  REQUIRE(!bytes.empty());
  const auto a = qlib::read_npy_file<double>(fixture(name));
  CHECK(a.header.dtype == dtype);
  CHECK(a.header.shape == shape);
  CHECK(a.header.major == version);
  CHECK(a.header.data_offset % 64 == 0);
  CHECK(a.data.size() == shape.numel());
  CHECK(qlib::write_npy(a.data.data(), a.header.shape, dtype, version) == bytes);
  // The in-memory reader agrees with the file reader, and float output too.
  const auto m = qlib::parse_npy<float>(bytes, name);
  REQUIRE(m.data.size() == a.data.size());
  for (std::size_t i = 0; i < m.data.size(); ++i)
    if (!std::isnan(a.data[i])) CHECK(m.data[i] == static_cast<float>(a.data[i]));
  return a;
}

/// Slow reference for double -> float16: the nearest of all finite halves (ties to the
/// even bit pattern), infinity beyond 65520.
std::uint16_t reference_half(double x) {
  const std::uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double a = std::fabs(x);
  if (a >= 65520.0) return sign | 0x7c00;
  std::uint16_t best = 0;
  double best_err = std::numeric_limits<double>::infinity();
  for (std::uint16_t h = 0; h <= 0x7bff; ++h) {
    const double v = static_cast<double>(qlib::detail::npy_half_to_float(h));
    const double err = std::fabs(v - a);
    if (err < best_err || (err == best_err && (h & 1) == 0)) {
      best = h;
      best_err = err;
    }
  }
  return sign | best;
}

std::string valid_file() {
  const std::vector<float> v = {1.f, 2.f, 3.f, 4.f, 5.f, 6.f};
  return qlib::write_npy(v.data(), shape_t{2, 3});
}

/// A file from a header dict (padded like numpy's) and `data_bytes` zero bytes.
std::string craft(const std::string& dict, std::size_t data_bytes, int version = 1) {
  std::string body = dict;
  const std::size_t prefix = version == 1 ? 10 : 12;
  while ((prefix + body.size() + 1) % 64) body += ' ';
  body += '\n';
  std::string f = "\x93NUMPY";
  f += static_cast<char>(version);
  f += '\0';
  for (std::size_t j = 0; j < prefix - 8; ++j) f += static_cast<char>((body.size() >> (8 * j)) & 0xff);
  return f + body + std::string(data_bytes, '\0');
}

}  // namespace

TEST_CASE("npy: numpy's float files are read exactly and rewritten byte for byte") {
  const auto f2 = check_fixture("f2_2x3.npy", npy_dtype::f2, shape_t{2, 3});
  const double f2_expect[] = {0.0, -0.0, 1.5, 65504.0, std::ldexp(1.0, -24), -INFINITY};
  for (int i = 0; i < 6; ++i) CHECK(f2.data[static_cast<std::size_t>(i)] == f2_expect[i]);
  CHECK(std::signbit(f2.data[1]));
  const auto sp = check_fixture("f2_special.npy", npy_dtype::f2, shape_t{4});
  CHECK(std::isnan(sp.data[0]));
  CHECK(sp.data[1] == INFINITY);
  CHECK(sp.data[2] == std::ldexp(1.0, -14));
  CHECK(sp.data[3] == -std::ldexp(1.0, -15));

  const auto f4 = check_fixture("f4_2x3x4.npy", npy_dtype::f4, shape_t{2, 3, 4});
  for (int i = 0; i < 24; ++i) CHECK(f4.data[static_cast<std::size_t>(i)] == static_cast<float>(i) * 0.1f - 1.2f);
  const auto sc = check_fixture("f4_scalar.npy", npy_dtype::f4, shape_t{});
  CHECK(sc.data == std::vector<double>{3.25});
  const auto d1 = check_fixture("f4_1d.npy", npy_dtype::f4, shape_t{5});
  CHECK(d1.data == std::vector<double>{0.0, 0.5, 1.0, 1.5, 2.0});
  CHECK(check_fixture("f4_empty.npy", npy_dtype::f4, shape_t{0, 3}).data.empty());
  const auto r8 = check_fixture("f4_rank8.npy", npy_dtype::f4, shape_t{2, 1, 2, 1, 1, 2, 1, 3});
  for (int i = 0; i < 24; ++i) CHECK(r8.data[static_cast<std::size_t>(i)] == i);
  const auto f8 = check_fixture("f8_3x2.npy", npy_dtype::f8, shape_t{3, 2});
  for (int i = 0; i < 6; ++i) CHECK(f8.data[static_cast<std::size_t>(i)] == static_cast<double>(i) * 0.1 - 0.25);
}

TEST_CASE("npy: numpy's integer files and version 2.0 / 3.0 headers") {
  CHECK(check_fixture("i1_4.npy", npy_dtype::i1, shape_t{4}).data == std::vector<double>{-128, -1, 0, 127});
  CHECK(check_fixture("u1_4.npy", npy_dtype::u1, shape_t{4}).data == std::vector<double>{0, 1, 128, 255});
  CHECK(check_fixture("i2_3.npy", npy_dtype::i2, shape_t{3}).data == std::vector<double>{-32768, 0, 32767});
  CHECK(check_fixture("i4_3.npy", npy_dtype::i4, shape_t{3}).data == std::vector<double>{-2147483648.0, 0, 2147483647.0});
  CHECK(check_fixture("i8_2.npy", npy_dtype::i8, shape_t{2}).data ==
        std::vector<double>{-1099511627776.0, 1099511627777.0});
  for (int v : {2, 3}) {
    const auto a = check_fixture("f4_v" + std::to_string(v) + ".npy", npy_dtype::f4, shape_t{3, 2}, v);
    CHECK(a.data == std::vector<double>{0, 1, 2, 3, 4, 5});
  }
}

TEST_CASE("npy: big-endian files are read; Fortran order is a clear error") {
  const auto be = qlib::read_npy_file<float>(fixture("f4_be.npy"));
  CHECK(be.header.big_endian);
  CHECK(be.header.descr() == ">f4");
  CHECK(be.data == std::vector<float>{0.0f, 1.25f, 2.5f, 3.75f});
  qlib::npy_array<float> a;
  const qlib::status s = qlib::try_read_npy_file(fixture("f4_fortran.npy"), &a);
  CHECK(s.code() == qlib::errc::parse_error);
  CHECK_THAT(s.message(), Catch::Contains("f4_fortran.npy: byte ") && Catch::Contains("fortran_order is True"));
}

TEST_CASE("npy: the reader streams a big file in chunks into float or double") {
  const std::size_t n = 100003;  // several 64 KiB chunks plus a remainder
  std::vector<float> x(n);
  std::mt19937 rng(1);
  std::normal_distribution<float> g(0.0f, 3.0f);
  for (auto& v : x) v = g(rng);
  const std::string path = qlib_test::temp_path("stream.npy");
  qlib::write_npy_file(path, x.data(), shape_t{n});
  CHECK(qlib_test::read_bytes(path) == qlib::write_npy(x.data(), shape_t{n}));
  for (std::size_t chunk : {std::size_t{1}, std::size_t{777}, std::size_t{16384}, std::size_t{70000}, n + 5}) {
    qlib::npy_reader r = qlib::npy_reader::open(path);
    CHECK(r.header().shape == shape_t{n});
    CHECK(r.remaining() == n);
    std::vector<double> buf(chunk);
    std::size_t at = 0;
    while (std::size_t got = r.read(buf.data(), chunk)) {
      for (std::size_t i = 0; i < got; ++i) REQUIRE(buf[i] == static_cast<double>(x[at + i]));
      at += got;
    }
    CHECK(at == n);
    CHECK(r.remaining() == 0);
    CHECK(r.read(buf.data(), chunk) == 0);
  }
  // Narrowing writes: float -> float16 -> float matches the slow reference.
  std::vector<float> h(64);
  for (std::size_t i = 0; i < h.size(); ++i) h[i] = x[i];
  const auto back = qlib::parse_npy<float>(qlib::write_npy(h.data(), shape_t{8, 8}, npy_dtype::f2), "f16");
  for (std::size_t i = 0; i < h.size(); ++i)
    CHECK(back.data[i] == qlib::detail::npy_half_to_float(reference_half(static_cast<double>(h[i]))));
  std::remove(path.c_str());
}

TEST_CASE("npy: float16 conversions are exact both ways") {
  // Every half, read as float and as double and written back, gives the same bytes
  // (signaling NaN payloads included).
  // The uint16 values 0..65535 are every float16 bit pattern: write them as u2, then give
  // the file float16's header (same length).
  std::vector<float> all(65536);
  for (std::uint32_t h = 0; h <= 0xffff; ++h) all[h] = static_cast<float>(h);
  std::string file = qlib::write_npy(all.data(), shape_t{65536}, npy_dtype::u2);
  const std::size_t data_at = file.size() - 2 * 65536;
  file.replace(0, data_at, qlib::write_npy(all.data(), shape_t{65536}, npy_dtype::f2).substr(0, data_at));
  const auto as_float = qlib::parse_npy<float>(file, "all.npy");
  const auto as_double = qlib::parse_npy<double>(file, "all.npy");
  CHECK(qlib::write_npy(as_float.data.data(), shape_t{65536}, npy_dtype::f2) == file);
  CHECK(qlib::write_npy(as_double.data.data(), shape_t{65536}, npy_dtype::f2) == file);
  for (std::uint32_t h = 0; h <= 0xffff; ++h) {
    const float f = as_float.data[h];
    if (!std::isnan(f)) REQUIRE(static_cast<double>(f) == as_double.data[h]);
  }
  // Rounding of doubles against the brute-force nearest half, including ties and the
  // subnormal / overflow edges.
  std::mt19937_64 rng(9);
  std::uniform_real_distribution<double> u(-70000.0, 70000.0);
  std::vector<double> xs = {0.0, -0.0, 65504.0, 65519.99, 65520.0, 1e-9, std::ldexp(1.0, -25), std::ldexp(3.0, -26),
                            std::ldexp(1.0, -14) - std::ldexp(1.0, -26), 1.0 + std::ldexp(1.0, -11),
                            1.0 + 3 * std::ldexp(1.0, -11), 2049.0, 2051.0};
  for (int i = 0; i < 300; ++i) xs.push_back(u(rng));
  for (int i = 0; i < 300; ++i) xs.push_back(std::ldexp(u(rng) / 70000.0, -14));
  for (double x : xs) {
    INFO(x);
    CHECK(qlib::detail::npy_half_from_double(x) == reference_half(x));
  }
}

TEST_CASE("npy: the writer converts exactly or names the element it cannot store") {
  const std::vector<double> ok = {-128, 0, 127};
  CHECK(qlib::parse_npy<double>(qlib::write_npy(ok.data(), shape_t{3}, npy_dtype::i1), "m").data == ok);
  const std::vector<std::int32_t> ints = {-5, 7, 255};
  CHECK(qlib::parse_npy<double>(qlib::write_npy(ints.data(), shape_t{3}, npy_dtype::i2), "m").data ==
        std::vector<double>{-5, 7, 255});
  CHECK(qlib::write_npy(ints.data(), shape_t{3}).substr(0, 64).find("'<i4'") != std::string::npos);
  struct bad {
    std::vector<double> v;
    npy_dtype t;
    const char* what;
  };
  const bad cases[] = {
      {{1.0, 128.0}, npy_dtype::i1, "element 1 (128.000000) is not representable as int8"},
      {{-1.0}, npy_dtype::u1, "element 0"},
      {{0.5}, npy_dtype::i4, "element 0"},
      {{std::nan("")}, npy_dtype::i2, "element 0"},
      {{INFINITY}, npy_dtype::u8, "element 0"},
      {{9223372036854775808.0}, npy_dtype::i8, "element 0"},
  };
  for (const auto& b : cases) {
    std::string out;
    const qlib::status s = qlib::try_write_npy(b.v.data(), shape_t{b.v.size()}, b.t, &out);
    CHECK(s.code() == qlib::errc::invalid_argument);
    CHECK_THAT(s.message(), Catch::Contains(b.what));
  }
  const std::vector<std::int64_t> big = {std::int64_t{1} << 40};
  std::string out;
  CHECK_FALSE(qlib::try_write_npy(big.data(), shape_t{1}, npy_dtype::i4, &out).ok());
  const std::vector<std::uint64_t> ubig = {std::uint64_t{1} << 63};
  CHECK_FALSE(qlib::try_write_npy(ubig.data(), shape_t{1}, npy_dtype::i8, &out).ok());
  CHECK(qlib::try_write_npy(ubig.data(), shape_t{1}, npy_dtype::u8, &out).ok());
  CHECK_FALSE(qlib::try_write_npy<float>(nullptr, shape_t{2}, npy_dtype::f4, &out).ok());
  CHECK(qlib::try_write_npy<float>(nullptr, shape_t{0, 2}, npy_dtype::f4, &out).ok());
  CHECK(qlib::try_write_npy(ok.data(), shape_t{3}, npy_dtype::f4, &out, 4).code() == qlib::errc::invalid_argument);
  const std::size_t huge = std::size_t{1} << 40;
  CHECK(qlib::try_write_npy(ok.data(), shape_t{huge, huge, huge}, npy_dtype::f4, &out).code() ==
        qlib::errc::invalid_argument);
  CHECK_THROWS_AS(qlib::write_npy_file(qlib_test::temp_path("no/such/dir.npy"), ok.data(), shape_t{3}), qlib::error);
}

TEST_CASE("npy: every malformed header is a parse_error naming the byte") {
  const std::string good = valid_file();
  struct bad {
    std::string bytes;
    const char* what;
  };
  std::string wrong_magic = good;
  wrong_magic[1] = 'M';
  std::string v4 = good;
  v4[6] = 4;
  std::string minor = good;
  minor[7] = 1;
  std::string long_header = good;
  long_header[8] = '\xff';
  long_header[9] = '\x00';  // 255 bytes: past the end of this 152-byte file
  std::string huge_header = good;
  huge_header[8] = '\xff';
  huge_header[9] = '\x7f';
  const std::vector<bad> cases = {
      {"", "byte 0: not a .npy file"},
      {"\x93NUM", "byte 0: not a .npy file"},
      {wrong_magic, "byte 0: not a .npy file (bad magic)"},
      {v4, "byte 6: unsupported .npy format version 4.0"},
      {minor, "byte 6: unsupported .npy format version 1.1"},
      {long_header, "byte 8: header length 255 runs past the end"},
      {huge_header, "byte 8: header length 32767 exceeds numpy's limit"},
      {craft("[1, 2]", 0), "byte 10: header is not a Python dict"},
      {craft("{'descr': '<f4', 'fortran_order': False}", 0), "lacks key 'shape'"},
      {craft("{'descr': '<f4', 'shape': (1,), }", 4), "lacks key 'fortran_order'"},
      {craft("{'fortran_order': False, 'shape': (1,), }", 4), "lacks key 'descr'"},
      {craft("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 4), "given twice"},
      {craft("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", 4), "unexpected key 'x'"},
      {craft("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", 8), "descr '<c8' is not a supported dtype"},
      {craft("{'descr': '|f4', 'fortran_order': False, 'shape': (1,), }", 4), "not a supported dtype"},
      {craft("{'descr': '<U3', 'fortran_order': False, 'shape': (1,), }", 12), "not a supported dtype"},
      {craft("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", 4), "structured dtype"},
      {craft("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24), "fortran_order is True"},
      {craft("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }", 4), "expected True or False"},
      {craft("{'descr': '<f4', 'fortran_order': False, 'shape': (3), }", 12), "'(n)' is not a tuple"},
      {craft("{'descr': '<f4', 'fortran_order': False, 'shape': [3], }", 12), "expected a tuple"},
      {craft("{'descr': '<f4', 'fortran_order': False, 'shape': (-3,), }", 12), "non-negative integer"},
      {craft("{'descr': '<f4', 'fortran_order': False, 'shape': (03,), }", 12), "leading zero"},
      {craft("{'descr': '<f4', 'fortran_order': False, 'shape': (1 2), }", 8), "expected ',' or ')'"},
      {craft("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", 4), "more than 8 dimensions"},
      {craft("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 4), "64 bits"},
      {craft("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 2), }", 4),
       "overflows the element count"},
      {craft("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 1073741824), }", 4),
       "overflows the byte count"},
      {craft("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20), "data is truncated: shape (2, 3) of <f4 needs 24 bytes, the file holds 20"},
      {craft("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 25), "1 trailing bytes"},
      {craft("{'descr': '<f4', 'fortran_order': False, 'shape': (1,) } junk", 4), "text after the dict"},
      {craft("{'descr': '<f4' 'fortran_order': False, 'shape': (1,) }", 4), "expected ',' or '}'"},
      {craft("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), ", 4), "expected a quoted key"},
      {craft("{'descr: '<f4', 'fortran_order': False, 'shape': (1,) }", 4), "expected ':'"},
      {craft("{descr: '<f4'}", 4), "expected a quoted key"},
  };
  for (const auto& b : cases) {
    INFO(b.what);
    qlib::npy_array<float> a;
    a.data = {42.0f};
    const qlib::status s = qlib::try_parse_npy(b.bytes, "in.npy", &a);
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == qlib::errc::parse_error);
    CHECK_THAT(s.message(), Catch::StartsWith("in.npy: byte ") && Catch::Contains(b.what));
    CHECK(a.data == std::vector<float>{42.0f});  // untouched
  }
  // Python 2's long suffix and other whitespace are accepted, as numpy does.
  const auto py2 = qlib::parse_npy<float>(craft("{'descr':'<f4','fortran_order':False,'shape':(2L,),}", 8), "py2");
  CHECK(py2.header.shape == shape_t{2});
  const auto native = qlib::parse_npy<float>(craft("{\"descr\": \"=f4\", \"fortran_order\": False, \"shape\": ()}", 4), "n");
  CHECK(native.data.size() == 1);
}

TEST_CASE("npy: truncation at every byte offset is a parse_error, never a crash") {
  for (const std::string name : {"f2_2x3.npy", "f4_scalar.npy", "f4_v2.npy", "f8_3x2.npy", "i1_4.npy", "f4_empty.npy"}) {
    const std::string bytes = qlib_test::read_bytes(fixture(name));
    REQUIRE(!bytes.empty());
    for (std::size_t len = 0; len < bytes.size(); ++len) {
      INFO(name << " cut at " << len);
      qlib::npy_array<double> a;
      const qlib::status s = qlib::try_parse_npy(bytes.substr(0, len), name, &a);
      REQUIRE(s.code() == qlib::errc::parse_error);
      REQUIRE_THAT(s.message(), Catch::StartsWith(name + ": byte "));
    }
    // The same through the file reader.
    const std::string path = qlib_test::temp_path("cut.npy");
    for (std::size_t len : {std::size_t{0}, std::size_t{9}, bytes.size() / 2, bytes.size() - 1}) {
      qlib_test::write_bytes(path, bytes.substr(0, len));
      qlib::npy_array<double> a;
      CHECK(qlib::try_read_npy_file(path, &a).code() == qlib::errc::parse_error);
    }
    std::remove(path.c_str());
  }
  qlib::npy_array<float> a;
  const qlib::status s = qlib::try_read_npy_file(qlib_test::temp_path("missing.npy"), &a);
  CHECK(s.code() == qlib::errc::io_error);
  CHECK_THAT(s.message(), Catch::Contains("missing.npy"));
}

TEST_CASE("npy: reader moves, reads into null buffers only when empty, and reports its source") {
  const std::string bytes = valid_file();
  qlib::npy_reader r = qlib::npy_reader::open_buffer(bytes.data(), bytes.size(), "buf");
  qlib::npy_reader moved = std::move(r);
  CHECK(moved.source() == "buf");
  CHECK(moved.remaining() == 6);
  std::size_t got = 1;
  CHECK(moved.try_read<float>(nullptr, 0, &got).ok());
  CHECK(got == 0);
  CHECK(moved.try_read<float>(nullptr, 3, &got).code() == qlib::errc::invalid_argument);
  float out[6];
  CHECK(moved.read(out, 6) == 6);
  CHECK(out[5] == 6.0f);
  CHECK(qlib::npy_dtype_of<float>() == npy_dtype::f4);
  CHECK(qlib::npy_dtype_of<std::uint8_t>() == npy_dtype::u1);
  CHECK(qlib::npy_dtype_of<std::int64_t>() == npy_dtype::i8);
  CHECK(std::string(qlib::npy_dtype_name(npy_dtype::f2)) == "float16");
}

TEST_CASE("npy: a zero dimension empties any shape, for reader and writer alike") {
  // Found by fuzz.npy: the reader accepted (7777737777737777, 7, 3, 77, 0, 4), the writer
  // refused it as an overflow. numpy accepts such shapes (size 0).
  const qlib::shape_t shape{7777737777737777u, 7, 3, 77, 0, 4};
  const std::string bytes = qlib::write_npy(static_cast<const double*>(nullptr), shape);
  const auto back = qlib::parse_npy<double>(bytes, "zero.npy");
  CHECK(back.header.shape == shape);
  CHECK(back.data.empty());
  CHECK(qlib::write_npy(back.data.data(), back.header.shape) == bytes);
  // Without the zero, the same shape overflows the byte count, on both sides.
  const qlib::shape_t huge{7777737777737777u, 7, 3, 77, 4};
  std::string out;
  CHECK(qlib::try_write_npy(static_cast<const double*>(nullptr), huge, qlib::npy_dtype::f8, &out).code() ==
        qlib::errc::invalid_argument);
}
