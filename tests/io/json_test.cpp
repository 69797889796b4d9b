// JSON: strict parsing with line/column errors, exact number round trips, and the
// writer's layout checked against Python's json.dump output.
#include <qlib/io/json.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>

#include "io/io_test_util.hpp"

using qlib::json;

TEST_CASE("json: parses every kind of value and keeps member order and positions") {
  const std::string text = "{\n  \"b\": [1, -2.5e3, true, false, null],\n  \"a\": {\"s\": \"x\\ty\\u00e9\\ud83d\\ude00\\/\"}\n}";
  const json v = qlib::parse_json(text, "t.json");
  REQUIRE(v.is_object());
  REQUIRE(v.members().size() == 2);
  CHECK(v.members()[0].key == "b");
  CHECK(v.members()[0].line == 2);
  CHECK(v.members()[0].column == 3);
  const json& b = *v.find("b");
  CHECK(b.line() == 2);
  CHECK(b.column() == 8);
  REQUIRE(b.elements().size() == 5);
  CHECK(b.elements()[0].is_integer());
  CHECK(b.elements()[0].get_integer() == 1);
  CHECK(b.elements()[1].get_number() == -2500.0);
  CHECK_FALSE(b.elements()[1].is_integer());
  CHECK(b.elements()[2].get_bool());
  CHECK(b.elements()[4].is_null());
  CHECK(v.find("a")->find("s")->get_string() == "x\ty\xc3\xa9\xf0\x9f\x98\x80/");
  CHECK(v.find("zz") == nullptr);
  CHECK_THROWS_AS(b.get_string(), qlib::error);
  CHECK_THROWS_AS(b.find("x"), qlib::error);
}

TEST_CASE("json: the default layout is Python's json.dump(indent=4, separators=(',', ':'))") {
  // Expected text printed by CPython 3.11:
  //   json.dumps(json.loads(src), indent=4, separators=(",", ":"))
  const std::string src = "{\"version\":1,\"a\":[0.7,1.3e-7,-0.0,1e16, 2.0],\"s\":\"h\\u00e9\\ud83d\\ude00\\u001f\\u007f\","
                          "\"o\":{},\"e\":[],\"n\":[[1],{\"k\":null}]}";
  const std::string python =
      "{\n    \"version\":1,\n    \"a\":[\n        0.7,\n        1.3e-07,\n        -0.0,\n        1e+16,\n        2.0\n"
      "    ],\n    \"s\":\"h\\u00e9\\ud83d\\ude00\\u001f\\u007f\",\n    \"o\":{},\n    \"e\":[],\n    \"n\":[\n"
      "        [\n            1\n        ],\n        {\n            \"k\":null\n        }\n    ]\n}";
  const json v = qlib::parse_json(src, "src");
  CHECK(qlib::write_json(v) == python);
  CHECK(qlib::write_json(qlib::parse_json(python, "py")) == python);
  // Other styles.
  qlib::json_style compact;
  compact.indent = -1;
  CHECK(qlib::write_json(qlib::parse_json("{\"a\": [1, 2], \"b\": {}}", "c"), compact) == "{\"a\":[1,2],\"b\":{}}");
  qlib::json_style readable;
  readable.indent = 2;
  readable.space_after_colon = true;
  readable.inline_scalar_arrays = true;
  readable.ensure_ascii = false;
  readable.final_newline = true;
  CHECK(qlib::write_json(v, readable) ==
        "{\n  \"version\": 1,\n  \"a\": [0.7, 1.3e-07, -0.0, 1e+16, 2.0],\n  \"s\": \"h\xc3\xa9\xf0\x9f\x98\x80\\u001f\x7f\",\n"
        "  \"o\": {},\n  \"e\": [],\n  \"n\": [\n    [1],\n    {\n      \"k\": null\n    }\n  ]\n}\n");
}

TEST_CASE("json: numbers round-trip exactly; integers stay integers") {
  std::mt19937_64 rng(2);
  json arr = json::make_array();
  std::vector<double> ds;
  for (int i = 0; i < 3000; ++i) {
    std::uint64_t b = rng();
    double d;
    std::memcpy(&d, &b, 8);
    if (!std::isfinite(d)) continue;
    ds.push_back(d);
    arr.push_back(json::make_real(d));
  }
  for (std::int64_t i : {std::int64_t{0}, std::int64_t{-1}, INT64_MAX, INT64_MIN}) arr.push_back(json::make_integer(i));
  const json back = qlib::parse_json(qlib::write_json(arr), "m");
  CHECK(back == arr);
  for (std::size_t i = 0; i < ds.size(); ++i) {
    const double got = back.elements()[i].get_number();
    REQUIRE(std::memcmp(&got, &ds[i], 8) == 0);
  }
  // floats written with make_float keep their shortest digits and read back exactly.
  std::mt19937 r32(4);
  for (int i = 0; i < 3000; ++i) {
    const std::uint32_t b = static_cast<std::uint32_t>(r32());
    float f;
    std::memcpy(&f, &b, 4);
    if (!std::isfinite(f)) continue;
    const std::string s = qlib::write_json(json::make_float(f));
    REQUIRE(qlib::parse_json(s, "f").get_float() == f);
  }
  CHECK(qlib::write_json(json::make_float(0.1f)) == "0.1");
  CHECK(qlib::write_json(json::make_real(0.1f)) == "0.10000000149011612");
  CHECK(qlib::write_json(qlib::parse_json("-0", "z")) == "-0.0");
  CHECK(qlib::parse_json("12345678901234567", "i").get_integer() == 12345678901234567);
}

TEST_CASE("json: every malformed text is a parse_error naming line and column") {
  struct bad {
    std::string text;
    const char* where;
    const char* what;
  };
  const bad cases[] = {
      {"", "j:1:1:", "unexpected end of input"},
      {"   \n  ", "j:2:3:", "unexpected end of input"},
      {"{\"a\":1,}", "j:1:8:", "trailing comma"},
      {"[1,\n 2,]", "j:2:4:", "trailing comma"},
      {"{\"a\":1 \"b\":2}", "j:1:8:", "expected ',' or '}'"},
      {"{\"a\" 1}", "j:1:6:", "expected ':'"},
      {"{1:2}", "j:1:2:", "expected a quoted key"},
      {"{\"a\":1,\n\"a\":2}", "j:2:1:", "duplicate key 'a'"},
      {"[1 2]", "j:1:4:", "expected ',' or ']'"},
      {"[1,", "j:1:4:", "unexpected end of input"},
      {"{\"a\":", "j:1:6:", "unexpected end of input"},
      {"{", "j:1:2:", "unexpected end of input in an object"},
      {"01", "j:1:2:", "leading zero"},
      {"+1", "j:1:1:", "unexpected character"},
      {"1.", "j:1:3:", "expected a digit after '.'"},
      {".5", "j:1:1:", "unexpected character"},
      {"1e", "j:1:3:", "digit in the exponent"},
      {"-", "j:1:2:", "expected a digit"},
      {"1e999", "j:1:1:", "out of the range of a double"},
      {"99999999999999999999", "j:1:1:", "does not fit in 64 bits"},
      {"NaN", "j:1:1:", "unexpected character"},
      {"Infinity", "j:1:1:", "unexpected character"},
      {"tru", "j:1:1:", "unexpected character"},
      {"\"abc", "j:1:5:", "unterminated string"},
      {"\"a\nb\"", "j:1:3:", "control character"},
      {"\"\\x41\"", "j:1:3:", "invalid escape"},
      {"\"\\u12\"", "j:1:4:", "4 hex digits"},
      {"\"\\udc00\"", "j:1:8:", "lone low surrogate"},
      {"\"\\ud800x\"", "j:1:8:", "high surrogate"},
      {"\"\\ud800\\u0041\"", "j:1:14:", "low surrogate"},
      {"\"\xff\"", "j:1:2:", "invalid UTF-8"},
      {"\"\xc0\x80\"", "j:1:2:", "invalid UTF-8"},          // overlong
      {"\"\xed\xa0\x80\"", "j:1:2:", "invalid UTF-8"},      // surrogate
      {"\"\xf4\x90\x80\x80\"", "j:1:2:", "invalid UTF-8"},  // > U+10FFFF
      {"\"\xe2\x82\"", "j:1:2:", "invalid UTF-8"},
      {"\xef\xbb\xbf{}", "j:1:1:", "byte order mark"},
      {"{} {}", "j:1:4:", "unexpected text after"},
      {"// c\n{}", "j:1:1:", "unexpected character"},
      {std::string(300, '[') + std::string(300, ']'), "j:1:258:", "nesting deeper than 256"},
  };
  for (const auto& b : cases) {
    INFO(b.text.substr(0, 40));
    json v = json::make_integer(7);
    const qlib::status s = qlib::try_parse_json(b.text, "j", &v);
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == qlib::errc::parse_error);
    CHECK_THAT(s.message(), Catch::StartsWith(b.where) && Catch::Contains(b.what));
    CHECK(v == json::make_integer(7));
  }
  // Deep but allowed nesting parses.
  CHECK(qlib::parse_json(std::string(256, '[') + std::string(256, ']'), "d").is_array());
}

TEST_CASE("json: the writer refuses non-finite numbers and invalid UTF-8") {
  std::string out;
  CHECK(qlib::try_write_json(json::make_real(INFINITY), &out).code() == qlib::errc::invalid_argument);
  CHECK(qlib::try_write_json(json::make_real(std::nan("")), &out).code() == qlib::errc::invalid_argument);
  CHECK(qlib::try_write_json(json::make_string("\xff"), &out).code() == qlib::errc::invalid_argument);
  json o = json::make_object();
  o.set("\xc0\x80", json());
  CHECK(qlib::try_write_json(o, &out).code() == qlib::errc::invalid_argument);
  o = json::make_object();
  o.set("k", json::make_integer(1));
  o.set("k", json::make_integer(2));  // set replaces
  CHECK(qlib::write_json(o) == "{\n    \"k\":2\n}");
}

TEST_CASE("json: files") {
  const std::string path = qlib_test::temp_path("j.json");
  json o = json::make_object();
  o.set("x", json::make_real(0.25));
  qlib::write_json_file(path, o);
  CHECK(qlib::read_json_file(path) == o);
  qlib_test::write_bytes(path, "{\n\"x\": }");
  json v;
  CHECK_THAT(qlib::try_read_json_file(path, &v).message(), Catch::StartsWith(path + ":2:6:"));
  std::remove(path.c_str());
  CHECK(qlib::try_read_json_file(path, &v).code() == qlib::errc::io_error);
}
