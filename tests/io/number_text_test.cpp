// detail/text.hpp: number <-> text in the styles of Python repr, C++ to_chars, printf and
// protobuf, each checked against published examples and, for exactness, against a slow
// reference (every float round-trips; the shortest digits are minimal).
#include <qlib/detail/text.hpp>

#include <catch2/catch.hpp>

#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

#include "io/number_text_cases.hpp"

namespace t = qlib::detail::text;

TEST_CASE("text: Python repr of doubles matches CPython's examples") {
  qlib_test::check_python_repr_examples();
}

TEST_CASE("text: shortest (to_chars) and protobuf float formats match published examples") {
  qlib_test::check_shortest_and_protobuf_examples();
}

TEST_CASE("text: every float written shortest reads back exactly, and no shorter text does") {
  qlib_test::check_float_round_trips(20000);
}

#if QLIB_IO_HAS_CHARCONV
#include <charconv>
TEST_CASE("text: format_shortest lays digits out exactly as std::to_chars does") {
  std::mt19937 rng(3);
  for (int i = 0; i < 20000; ++i) {
    const std::uint32_t bits = static_cast<std::uint32_t>(rng());
    float v;
    std::memcpy(&v, &bits, 4);
    if (!std::isfinite(v)) continue;
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof(buf), v);
    REQUIRE(t::format_shortest(v) == std::string(buf, r.ptr));
  }
  for (float v : {1.0f, 10.0f, 100000.0f, 1e6f, 123456.0f, 1e-4f, 0.00012f, 1.5e-5f}) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof(buf), v);
    CHECK(t::format_shortest(v) == std::string(buf, r.ptr));
  }
}
#endif

TEST_CASE("text: doubles written as Python repr read back exactly") { qlib_test::check_double_round_trips(20000); }

TEST_CASE("text: parse_real rejects what is not a finite number") { qlib_test::check_parse_real_rejects(); }

TEST_CASE("text: parse_int64 covers the whole range and rejects overflow") {
  std::int64_t v = 0;
  const std::string max = "9223372036854775807", min = "-9223372036854775808";
  CHECK(t::parse_int64(max.data(), max.data() + max.size(), &v));
  CHECK(v == INT64_MAX);
  CHECK(t::parse_int64(min.data(), min.data() + min.size(), &v));
  CHECK(v == INT64_MIN);
  for (const std::string bad : {"9223372036854775808", "-9223372036854775809", "", "-", "+", "1x", " 1", "1.0"})
    CHECK_FALSE(t::parse_int64(bad.data(), bad.data() + bad.size(), &v));
}

TEST_CASE("text: line splitter reports endings and line numbers") {
  const std::string s = "a\r\nb\n\nc";
  t::line_splitter ls(s);
  t::text_line l;
  REQUIRE(ls.next(&l));
  CHECK(s.substr(l.begin, l.end - l.begin) == "a");
  CHECK(l.ending == t::line_ending::crlf);
  REQUIRE(ls.next(&l));
  CHECK(s.substr(l.begin, l.end - l.begin) == "b");
  CHECK(l.ending == t::line_ending::lf);
  REQUIRE(ls.next(&l));
  CHECK(l.begin == l.end);
  CHECK(l.number == 3);
  REQUIRE(ls.next(&l));
  CHECK(s.substr(l.begin, l.end - l.begin) == "c");
  CHECK(l.ending == t::line_ending::none);
  CHECK_FALSE(ls.next(&l));
  const std::string empty;
  t::line_splitter none(empty);
  CHECK_FALSE(none.next(&l));
}

TEST_CASE("text: quote escapes and cuts") {
  CHECK(t::quote(std::string("a'b\n")) == "'a\\'b\\x0a'");
  CHECK(t::quote(std::string(100, 'x'), 10) == "'xxxxxxxxxx...'");
}
