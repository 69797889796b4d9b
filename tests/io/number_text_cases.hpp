// Checks of detail/text.hpp's number conversions, shared by number_text_test.cpp (the
// <charconv> path) and charconv_fallback_test.cpp (the printf/strtod path).
// References: CPython's repr() (values printed by python3 -c 'print(repr(x))'), numpy's
// str(np.float32(x)) for the shortest float digits, and glibc's printf / strtod.
#pragma once

#include <catch2/catch.hpp>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

#include <qlib/detail/text.hpp>

namespace qlib_test {

inline void check_python_repr_examples() {
  namespace t = qlib::detail::text;
  struct ex {
    double v;
    const char* repr;
  };
  const ex cases[] = {
      {0.0, "0.0"}, {-0.0, "-0.0"}, {1.0, "1.0"}, {-2.5, "-2.5"}, {0.1, "0.1"}, {0.7, "0.7"}, {1.3, "1.3"},
      {0.01, "0.01"}, {0.999999, "0.999999"}, {1e-4, "0.0001"}, {1e-5, "1e-05"}, {1.5e-7, "1.5e-07"},
      {123456789012345.0, "123456789012345.0"}, {1e15, "1000000000000000.0"}, {1e16, "1e+16"}, {1.5e16, "1.5e+16"},
      {12345678901234567.0, "1.2345678901234568e+16"}, {5e-324, "5e-324"},
      {1.7976931348623157e308, "1.7976931348623157e+308"}, {0.30000000000000004, "0.30000000000000004"},
      {100.0, "100.0"}, {1e22, "1e+22"}, {1e-7, "1e-07"}, {3.14159, "3.14159"},
  };
  for (const auto& c : cases) {
    INFO(c.repr);
    CHECK(t::format_python_repr(c.v) == c.repr);
  }
  // float32 values keep their own shortest digits.
  CHECK(t::format_python_repr(0.1f) == "0.1");
  CHECK(t::format_python_repr(0.007874016f) == "0.007874016");
  CHECK(t::format_python_repr(16777216.0f) == "16777216.0");
  CHECK(t::format_python_repr(1e10f) == "10000000000.0");
  CHECK(t::format_python_repr(FLT_TRUE_MIN) == "1e-45");
}

inline void check_shortest_and_protobuf_examples() {
  namespace t = qlib::detail::text;
  // Shortest float digits (numpy's str(np.float32(x)) digits) in to_chars' layout.
  CHECK(t::format_shortest(0.1f) == "0.1");
  CHECK(t::format_shortest(254.00002f) == "254.00002");
  CHECK(t::format_shortest(1e-05f) == "1e-05");
  CHECK(t::format_shortest(3.4028235e+38f) == "3.4028235e+38");
  CHECK(t::format_shortest(1e10f) == "1e+10");
  CHECK(t::format_shortest(100000.0f) == "1e+05");  // shorter than "100000"
  CHECK(t::format_shortest(123456.0f) == "123456");
  CHECK(t::format_shortest(123456.7f) == "123456.7");
  CHECK(t::format_shortest(0.0f) == "0");
  CHECK(t::format_shortest(-0.5f) == "-0.5");
  // Protobuf's text format: %.6g if it round-trips, else %.9g (values from printf).
  CHECK(t::format_protobuf_float(0.0392f) == "0.0392");
  CHECK(t::format_protobuf_float(1.0f) == "1");
  CHECK(t::format_protobuf_float(1e-05f) == "1e-05");
  CHECK(t::format_protobuf_float(254.00002f) == "254.000015");
  CHECK(t::format_protobuf_float(0.007874016f) == "0.00787401572");
  CHECK(t::format_protobuf_float(16777216.0f) == "16777216");
  CHECK(t::format_protobuf_float(FLT_TRUE_MIN) == "1.4013e-45");
  // printf %f.
  CHECK(t::format_fixed(0.007874016f, 6) == "0.007874");
  CHECK(t::format_fixed(254.00002f, 6) == "254.000015");
  CHECK(t::format_fixed(1e-7, 6) == "0.000000");
}

/// A slow reference for the shortest digits of a float: the first precision p at which
/// glibc's correctly rounded "%.{p-1}e" reads back to the same float.
inline std::string reference_shortest_scientific(float v) {
  char buf[64];
  for (int p = 1; p <= 9; ++p) {
    std::snprintf(buf, sizeof(buf), "%.*e", p - 1, static_cast<double>(v));
    if (std::strtof(buf, nullptr) == v) break;
  }
  return buf;
}

inline void check_float_round_trips(int n) {
  namespace t = qlib::detail::text;
  std::mt19937 rng(7);
  int checked = 0;
  for (int i = 0; i < n; ++i) {
    const std::uint32_t bits = static_cast<std::uint32_t>(rng());
    float v;
    std::memcpy(&v, &bits, 4);
    if (!std::isfinite(v)) continue;
    ++checked;
    for (const std::string& s : {t::format_shortest(v), t::format_python_repr(v), t::format_protobuf_float(v)}) {
      float back = 0.0f;
      INFO(s);
      REQUIRE(t::parse_real(s.data(), s.data() + s.size(), &back));
      REQUIRE(std::memcmp(&back, &v, 4) == 0);
    }
    // Same digits as the reference: shortest, and the closest among the shortest.
    const t::decimal_digits d = t::shortest_digits(v);
    const t::decimal_digits r = t::impl::digits_from_scientific(reference_shortest_scientific(v).c_str());
    REQUIRE(std::string(d.digits) == std::string(r.digits));
    REQUIRE(d.exponent == r.exponent);
    // narrow_to_float inverts "write the float's shortest digits, read them as a double".
    const std::string s = t::format_shortest(v);
    double as_double = 0.0;
    REQUIRE(t::parse_real(s.data(), s.data() + s.size(), &as_double));
    REQUIRE(t::narrow_to_float(as_double) == v);
  }
  CHECK(checked > n / 2);
}

inline void check_double_round_trips(int n) {
  namespace t = qlib::detail::text;
  std::mt19937_64 rng(11);
  for (int i = 0; i < n; ++i) {
    const std::uint64_t bits = rng();
    double v;
    std::memcpy(&v, &bits, 8);
    if (!std::isfinite(v)) continue;
    const std::string s = t::format_python_repr(v);
    double back = 0.0;
    INFO(s);
    REQUIRE(t::parse_real(s.data(), s.data() + s.size(), &back));
    REQUIRE(std::memcmp(&back, &v, 8) == 0);
    // Minimal: one digit fewer (glibc's correct rounding) does not read back.
    const t::decimal_digits d = t::shortest_digits(v);
    if (d.count > 1) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), "%.*e", d.count - 2, v);
      REQUIRE(std::strtod(buf, nullptr) != v);
    }
  }
}

inline void check_parse_real_rejects() {
  namespace t = qlib::detail::text;
  float f = 0.0f;
  double d = 0.0;
  for (const std::string bad : {"", "+", "-", "1e", "1e+", "abc", "1.5x", "1e39", "-1e39", "inf", "nan", "1,5", " 1"}) {
    INFO(bad);
    CHECK_FALSE(t::parse_real(bad.data(), bad.data() + bad.size(), &f));
  }
  for (const std::string bad : {"1e309", "-1e309", "infinity", "0x10"}) {
    INFO(bad);
    CHECK_FALSE(t::parse_real(bad.data(), bad.data() + bad.size(), &d));
  }
  const std::string ok = "+1.5e-3";
  REQUIRE(t::parse_real(ok.data(), ok.data() + ok.size(), &f));
  CHECK(f == 1.5e-3f);
  const std::string sub = "1e-45";
  REQUIRE(t::parse_real(sub.data(), sub.data() + sub.size(), &f));
  CHECK(f == FLT_TRUE_MIN);
}

}  // namespace qlib_test
