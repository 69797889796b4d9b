// TensorRT calibration cache: the published line format, byte-exact round trips, every
// malformed input named by file and line.
#include <qlib/io/trt_cache.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "io/io_test_util.hpp"

using qlib::trt_cache;

namespace {
/// Slow reference: the big-endian float32 bytes as hex (Python struct.pack('>f', s).hex()).
std::string reference_hex(float s) {
  unsigned char b[4];
  std::uint32_t u;
  std::memcpy(&u, &s, 4);
  for (int i = 0; i < 4; ++i) b[i] = static_cast<unsigned char>(u >> (24 - 8 * i));
  char out[9];
  std::snprintf(out, sizeof(out), "%02x%02x%02x%02x", b[0], b[1], b[2], b[3]);
  return out;
}
}  // namespace

TEST_CASE("trt_cache: published examples of the value format") {
  CHECK(qlib::trt_scale_to_hex(0.0078125f) == "3c000000");  // 2^-7: amax 127/128
  CHECK(qlib::trt_scale_to_hex(1.0f) == "3f800000");
  CHECK(qlib::trt_scale_to_hex(0.0f) == "00000000");
  CHECK(qlib::trt_scale_from_amax(127.0f) == 1.0f);
  CHECK(qlib::trt_scale_to_hex(qlib::trt_scale_from_amax(1.0f)) == reference_hex(1.0f / 127.0f));
  const trt_cache c = qlib::parse_trt_cache("TRT-8601-EntropyCalibration2\ninput: 3c000000\n", "x.cache");
  REQUIRE(c.entries.size() == 1);
  CHECK(c.entries[0].name == "input");
  CHECK(c.entries[0].scale == 0.0078125f);
  CHECK(c.entries[0].amax() == 0.9921875f);
}

TEST_CASE("trt_cache: hex matches a slow reference for random scales") {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> amax(0.0f, 100.0f);
  for (int i = 0; i < 2000; ++i) {
    const float s = qlib::trt_scale_from_amax(amax(rng));
    REQUIRE(qlib::trt_scale_to_hex(s) == reference_hex(s));
  }
}

TEST_CASE("trt_cache: build, write and read back exactly") {
  trt_cache c;
  c.add_amax("input", 2.5f);
  c.add_amax("/conv1/Conv_output_0", 6.0f);
  c.add_amax("name: with colons:", 0.0f);
  c.add_result("relu", qlib::make_result(-1.0f, 3.0f, qlib::qspec::tensorrt_int8()));
  const std::string text = qlib::write_trt_cache(c);
  CHECK(text == "TRT-8601-EntropyCalibration2\ninput: " + reference_hex(2.5f / 127.0f) +
                    "\n/conv1/Conv_output_0: " + reference_hex(6.0f / 127.0f) + "\nname: with colons:: 00000000\nrelu: " +
                    reference_hex(3.0f / 127.0f) + "\n");
  const trt_cache back = qlib::parse_trt_cache(text, "mem");
  REQUIRE(back.entries.size() == 4);
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK(back.entries[i].name == c.entries[i].name);
    CHECK(back.entries[i].scale == c.entries[i].scale);
  }
  CHECK(back.find("name: with colons:") != nullptr);
  CHECK(back.find("missing") == nullptr);
  CHECK(qlib::write_trt_cache(back) == text);
}

TEST_CASE("trt_cache: byte-exact round trip of accepted variants") {
  for (const std::string& text : {
           std::string("TRT-8601-EntropyCalibration2\na: 3c000000\nb: 3d2f1a0c\n"),
           std::string("TRT-8601-EntropyCalibration2\r\na: 3c000000\r\nb: 3d2f1a0c\r\n"),  // CRLF recorded
           std::string("TRT-8601-EntropyCalibration2\na: 3c000000"),                        // no final newline
           std::string("TRT-8601-EntropyCalibration2"),                                     // header only
           std::string("TRT-8601-EntropyCalibration2\n"),
           std::string("some prefix TRT-7000-MinMaxCalibration trailer\n x : 00000001\n"),  // verbatim header, odd name
       }) {
    INFO(text);
    trt_cache c;
    REQUIRE(qlib::try_parse_trt_cache(text, "mem", &c).ok());
    CHECK(qlib::write_trt_cache(c) == text);
  }
}

TEST_CASE("trt_cache: every malformed input is a parse_error naming the file and line") {
  struct bad {
    std::string text;
    const char* where;
    const char* what;
  };
  const bad cases[] = {
      {"", "f.cache:1:", "empty file"},
      {"TensorRT cache\na: 3c000000\n", "f.cache:1:", "does not contain 'TRT-'"},
      {"TRT-1\na 3c000000\n", "f.cache:2:", "expected '<tensor name>: <8 hex digits>'"},
      {"TRT-1\n: 3c000000\n", "f.cache:2:", "expected '<tensor name>"},
      {"TRT-1\na: 3c00000\n", "f.cache:2:", "is not 8 lowercase hex digits"},
      {"TRT-1\na: 3c0000000\n", "f.cache:2:", "is not 8 lowercase hex digits"},
      {"TRT-1\na: 3C000000\n", "f.cache:2:", "is not 8 lowercase hex digits"},
      {"TRT-1\na: 3c00000g\n", "f.cache:2:", "is not 8 lowercase hex digits"},
      {"TRT-1\na: 3c000000 \n", "f.cache:2:", "is not 8 lowercase hex digits"},
      {"TRT-1\na: 7f800000\n", "f.cache:2:", "is not finite"},
      {"TRT-1\na: 7fc00000\n", "f.cache:2:", "is not finite"},
      {"TRT-1\na: bc000000\n", "f.cache:2:", "is negative"},
      {"TRT-1\na: 80000000\n", "f.cache:2:", "is negative"},
      {"TRT-1\na: 3c000000\nb: 3c000000\na: 3c000000\n", "f.cache:4:", "listed twice"},
      {"TRT-1\na: 3c000000\n\nb: 3c000000\n", "f.cache:3:", "blank line"},
      {"TRT-1\na: 3c000000\r\n", "f.cache:2:", "mixed line endings"},
      {"TRT-1\r\na: 3c000000\n", "f.cache:2:", "mixed line endings"},
      {"TRT-1\r\r\n", "f.cache:1:", "carriage return"},
      {"TRT-1\na\r: 3c000000\n", "f.cache:2:", "carriage return"},
  };
  for (const auto& b : cases) {
    INFO(b.text);
    trt_cache c;
    c.header = "unchanged";
    const qlib::status s = qlib::try_parse_trt_cache(b.text, "f.cache", &c);
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == qlib::errc::parse_error);
    CHECK_THAT(s.message(), Catch::StartsWith(b.where) && Catch::Contains(b.what));
    CHECK(c.header == "unchanged");  // untouched on failure
    CHECK_THROWS_AS(qlib::parse_trt_cache(b.text, "f.cache"), qlib::error);
  }
}

TEST_CASE("trt_cache: the writer refuses what the reader would reject") {
  auto rejects = [](const trt_cache& c, const char* what) {
    std::string out;
    const qlib::status s = qlib::try_write_trt_cache(c, &out);
    CHECK(s.code() == qlib::errc::invalid_argument);
    CHECK_THAT(s.message(), Catch::Contains(what));
  };
  trt_cache c;
  c.header = "no marker";
  rejects(c, "TRT-");
  c.header = "TRT-1\nx";
  rejects(c, "TRT-");
  c.header = "TRT-1";
  c.entries = {{"", 1.0f}};
  rejects(c, "cannot be written");
  c.entries = {{"a\nb", 1.0f}};
  rejects(c, "cannot be written");
  c.entries = {{"a", -1.0f}};
  rejects(c, "negative");
  c.entries = {{"a", std::nanf("")}};
  rejects(c, "not finite");
  c.entries = {{"a", 1.0f}, {"a", 2.0f}};
  rejects(c, "listed twice");
  CHECK_THROWS_AS(qlib::trt_scale_from_amax(-1.0f), qlib::error);
  CHECK_THROWS_AS(qlib::trt_scale_from_amax(INFINITY), qlib::error);
  trt_cache d;
  CHECK_THROWS_AS(d.add_result("w", qlib::make_result(std::vector<float>{-1.f, -2.f}, std::vector<float>{1.f, 2.f},
                                                      qlib::qspec::tensorrt_weight_int8(), 0)),
                  qlib::error);
}

TEST_CASE("trt_cache: files round-trip and missing files are io_errors") {
  const std::string path = qlib_test::temp_path("trt_cache_test.cache");
  trt_cache c;
  c.add_amax("x", 1.5f);
  qlib::write_trt_cache_file(path, c);
  const trt_cache back = qlib::read_trt_cache_file(path);
  REQUIRE(back.entries.size() == 1);
  CHECK(back.entries[0].scale == c.entries[0].scale);
  CHECK(qlib_test::read_bytes(path) == qlib::write_trt_cache(c));
  std::remove(path.c_str());
  trt_cache none;
  const qlib::status s = qlib::try_read_trt_cache_file(path, &none);
  CHECK(s.code() == qlib::errc::io_error);
  CHECK_THAT(s.message(), Catch::Contains(path));
  // A malformed file names its path.
  qlib_test::write_bytes(path, "TRT-1\nbad line\n");
  const qlib::status p = qlib::try_read_trt_cache_file(path, &none);
  CHECK_THAT(p.message(), Catch::StartsWith(path + ":2:"));
  std::remove(path.c_str());
}
