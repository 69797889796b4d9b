// AMCT record file: the published example, protobuf's float formatting, byte-exact round
// trips, a tolerant reader and every malformed record named by line.
#include <qlib/io/amct.hpp>

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "io/io_test_util.hpp"

using qlib::amct_record;

namespace {
const char* const spec_example =
    "record {\n"
    "  key: \"conv1\"\n"
    "  value {\n"
    "    scale_d: 0.0392\n"
    "    offset_d: -128\n"
    "    scale_w: 0.0012\n"
    "    scale_w: 0.0009\n"
    "    offset_w: 0\n"
    "    offset_w: 0\n"
    "  }\n"
    "}\n";
}  // namespace

TEST_CASE("amct record: the specification's example reads and writes back byte for byte") {
  const amct_record r = qlib::parse_amct_record(spec_example, "r.txt");
  REQUIRE(r.records.size() == 1);
  const auto& e = r.records[0];
  CHECK(e.key == "conv1");
  CHECK(e.scale_d == 0.0392f);
  CHECK(e.offset_d == -128);
  CHECK(e.scale_w == std::vector<float>{0.0012f, 0.0009f});
  CHECK(e.offset_w == std::vector<std::int32_t>{0, 0});
  CHECK(qlib::write_amct_record(r) == spec_example);
  CHECK(r.find("conv1") == &r.records[0]);
  CHECK(r.find("conv2") == nullptr);
}

TEST_CASE("amct record: random records round-trip exactly (values and bytes)") {
  std::mt19937 rng(8);
  std::uniform_int_distribution<std::uint32_t> bits(0x00800000u, 0x7f7fffffu);  // positive normal floats
  amct_record r;
  for (int l = 0; l < 50; ++l) {
    qlib::amct_record_entry e;
    e.key = "layer" + std::to_string(l) + (l % 7 == 0 ? "/with \"quotes\"\\ and \xc3\xa9\t" : "");
    auto rnd = [&] {
      const std::uint32_t b = bits(rng);
      float f;
      std::memcpy(&f, &b, 4);
      return f;
    };
    e.scale_d = rnd();
    e.offset_d = static_cast<std::int32_t>(rng() % 256) - 128;
    for (int c = 0; c < 1 + l % 5; ++c) {
      e.scale_w.push_back(rnd());
      e.offset_w.push_back(0);
    }
    r.records.push_back(e);
  }
  r.records[3].scale_d = 1.4e-45f;  // subnormal
  const std::string text = qlib::write_amct_record(r);
  const amct_record back = qlib::parse_amct_record(text, "m");
  REQUIRE(back.records.size() == r.records.size());
  for (std::size_t i = 0; i < r.records.size(); ++i) {
    CHECK(back.records[i].key == r.records[i].key);
    CHECK(back.records[i].scale_d == r.records[i].scale_d);
    CHECK(back.records[i].offset_d == r.records[i].offset_d);
    CHECK(back.records[i].scale_w == r.records[i].scale_w);
    CHECK(back.records[i].offset_w == r.records[i].offset_w);
  }
  CHECK(qlib::write_amct_record(back) == text);
  CHECK(text.find("\\\"quotes\\\"\\\\ and \\303\\251\\t") != std::string::npos);  // protobuf's escapes
  CHECK(qlib::write_amct_record(amct_record{}).empty());
}

TEST_CASE("amct record: the reader tolerates layout, comments and text-format variants") {
  const std::string text =
      "# produced by hand\n"
      "record{key:'conv1' value:{scale_d:3.92e-2f offset_d:-128 # data\n"
      "scale_w: .0012 offset_w: 0 scale_w: 9E-4 offset_w: +0}}\n"
      "\n   record {\n key: \"a\\nb\\101\\x42\"\n value { scale_d: 1 offset_d: 0 scale_w: 2. offset_w: 0 } }";
  const amct_record r = qlib::parse_amct_record(text, "v.txt");
  REQUIRE(r.records.size() == 2);
  CHECK(r.records[0].scale_d == 0.0392f);
  CHECK(r.records[0].scale_w == std::vector<float>{0.0012f, 0.0009f});
  CHECK(r.records[1].key == "a\nbAB");
  CHECK(r.records[1].scale_w == std::vector<float>{2.0f});
  CHECK(qlib::write_amct_record(r).substr(0, std::strlen(spec_example)) == spec_example);
}

TEST_CASE("amct record: every malformed record is a parse_error naming the line") {
  struct bad {
    std::string text;
    const char* where;
    const char* what;
  };
  const std::string v = "value { scale_d: 1 offset_d: 0 scale_w: 1 offset_w: 0 }";
  const bad cases[] = {
      {"records {}", "f:1:", "expected 'record'"},
      {"prune_record {}", "f:1:", "'prune_record' is not supported"},
      {"record key: \"a\"", "f:1:", "expected '{' after 'record'"},
      {"record {\n key \"a\" " + v + "}", "f:2:", "expected ':' after 'key'"},
      {"record {\n key: a\n" + v + "}", "f:2:", "key must be a quoted string"},
      {"record {\n key: \"a\n\" }", "f:2:", "unterminated string"},
      {"record { key: \"\\q\" }", "f:1:", "invalid escape"},
      {"record { key: \"a\" key: \"b\" }", "f:1:", "two 'key' fields"},
      {"record { key: \"a\" " + v + "\n" + v + " }", "f:2:", "two 'value' fields"},
      {"record {\n" + v + "\n}", "f:3:", "has no key"},
      {"record { key: \"a\"\n}", "f:2:", "record 'a' has no value"},
      {"record { key: \"a\" colour: 1 }", "f:1:", "unknown field 'colour' in record"},
      {"record { key: \"a\" kv_cache_value { } }", "f:1:", "'kv_cache_value' is not supported"},
      {"record { key: \"a\" value {\n shift_bit: 1 } }", "f:2:", "AMCT field 'shift_bit' is not supported"},
      {"record { key: \"a\" value {\n scale_x: 1 } }", "f:2:", "unknown field 'scale_x'"},
      {"record { key: \"a\" value {\n scale_d: 1 scale_d: 2 } }", "f:2:", "scale_d given twice"},
      {"record { key: \"a\" value {\n scale_d 1 } }", "f:2:", "expected ':'"},
      {"record { key: \"a\" value {\n scale_d: } }", "f:2:", "needs a number"},
      {"record { key: \"a\" value {\n scale_d: abc } }", "f:2:", "'abc' is not a number"},
      {"record { key: \"a\" value {\n scale_d: inf } }", "f:2:", "'inf' is not a number"},
      {"record { key: \"a\" value {\n scale_d: 1e39 } }", "f:2:", "does not fit in a float"},
      {"record { key: \"a\" value {\n scale_d: 0 } }", "f:2:", "'0' is not > 0"},
      {"record { key: \"a\" value {\n scale_d: -1 } }", "f:2:", "is not > 0"},
      {"record { key: \"a\" value {\n scale_d: 1.5.5 } }", "f:2:", "is not a number"},
      {"record { key: \"a\" value {\n offset_d: 2147483648 } }", "f:2:", "is not a decimal int32"},
      {"record { key: \"a\" value {\n offset_d: 0x10 } }", "f:2:", "is not a decimal int32"},
      {"record { key: \"a\" value {\n offset_d: 1.0 } }", "f:2:", "is not a decimal int32"},
      {"record { key: \"a\" value { offset_d: 0 scale_w: 1 offset_w: 0\n} }", "f:2:", "offset_d without scale_d"},
      {"record { key: \"a\" value { scale_d: 1 scale_w: 1 offset_w: 0\n} }", "f:2:", "scale_d without offset_d"},
      {"record { key: \"a\" value {\n} }", "f:2:", "neither scale_d nor scale_w"},
      // Found by fuzz.amct_record: an empty key was read but could not be written back.
      {"record {\n key: \"\" value { scale_d: 1 offset_d: 0 } }", "f:2:", "empty layer key"},
      {"record { key: \"a\" value { scale_d: 1 offset_d: 0 scale_w: 1 scale_w: 2 offset_w: 0\n} }", "f:2:",
       "2 scale_w but 1 offset_w"},
      {"record { key: \"a\" " + v + " }\nrecord { key: \"a\" " + v + " }", "f:2:", "layer 'a' is recorded twice"},
      {"record { key: \"a\" value {\n", "f:2:", "unexpected end of file inside 'value' opened on line 1"},
      {"record {\n key: \"a\"", "f:2:", "unexpected end of file inside 'record'"},
      {"record { key: \"a\" " + v + " } }", "f:1:", "expected 'record', got '}'"},
      {"record { key: \"a\" value { scale_d: 1; } }", "f:1:", "unexpected character ';'"},
  };
  for (const auto& b : cases) {
    INFO(b.text);
    amct_record r;
    r.records.resize(2);
    const qlib::status s = qlib::try_parse_amct_record(b.text, "f", &r);
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == qlib::errc::parse_error);
    CHECK_THAT(s.message(), Catch::StartsWith(b.where) && Catch::Contains(b.what));
    CHECK(r.records.size() == 2);
  }
  CHECK(qlib::parse_amct_record("# only a comment\n\n", "f").records.empty());
}

TEST_CASE("amct record: the writer refuses what the reader would reject") {
  auto rejects = [](const qlib::amct_record_entry& e, const char* what) {
    amct_record r;
    r.records = {e};
    std::string out;
    const qlib::status s = qlib::try_write_amct_record(r, &out);
    CHECK(s.code() == qlib::errc::invalid_argument);
    CHECK_THAT(s.message(), Catch::Contains(what));
  };
  qlib::amct_record_entry e{"conv", 0.5f, 0, {1.0f}, {0}};
  auto x = e;
  x.key = "";
  rejects(x, "empty layer key");
  x = e;
  x.scale_w.clear();
  x.offset_w.clear();
  x.has_data = false;
  rejects(x, "neither data nor weight factors");
  x = e;
  x.offset_w.push_back(0);
  rejects(x, "1 scale_w but 2 offset_w");
  x = e;
  x.scale_d = 0.0f;
  rejects(x, "scale_d");
  x = e;
  x.scale_w[0] = INFINITY;
  rejects(x, "scale_w[0]");
  amct_record two;
  two.records = {e, e};
  std::string out;
  CHECK_THAT(qlib::try_write_amct_record(two, &out).message(), Catch::Contains("recorded twice"));
  // Files.
  const std::string path = qlib_test::temp_path("r.txt");
  amct_record one;
  one.records = {e};
  qlib::write_amct_record_file(path, one);
  CHECK(qlib::read_amct_record_file(path).records.size() == 1);
  qlib_test::write_bytes(path, "record {\n oops");
  CHECK_THAT(qlib::try_read_amct_record_file(path, &one).message(), Catch::StartsWith(path + ":2:"));
  std::remove(path.c_str());
  CHECK(qlib::try_read_amct_record_file(path, &one).code() == qlib::errc::io_error);
}

TEST_CASE("amct record: data-only and weight-only entries round-trip") {
  const std::string text =
      "record {\n  key: \"pool\"\n  value {\n    scale_d: 0.5\n    offset_d: -3\n  }\n}\n"
      "record {\n  key: \"fc\"\n  value {\n    scale_w: 0.25\n    offset_w: 0\n  }\n}\n";
  const amct_record r = qlib::parse_amct_record(text, "f");
  REQUIRE(r.records.size() == 2);
  CHECK(r.records[0].has_data);
  CHECK(r.records[0].scale_w.empty());
  CHECK_FALSE(r.records[1].has_data);
  CHECK(r.records[1].scale_w == std::vector<float>{0.25f});
  CHECK(qlib::write_amct_record(r) == text);
}
