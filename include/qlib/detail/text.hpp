// Internal helpers shared by the io/ readers and writers: exact number <-> text conversion
// in the styles the foreign formats use, line splitting, error messages that name the
// file and line (or byte), and whole-file reads and writes with <cstdio>.
//
// Numbers. Every float written by qlib reads back to the same value. The conversions use
// <charconv> (std::to_chars / std::from_chars: locale-independent and exact; libstdc++ 11+,
// MSVC 19.24+). Where the standard library lacks floating-point <charconv>
// (__cpp_lib_to_chars undefined, e.g. libc++ before 17) a printf/strtod fallback is used,
// which is exact too but assumes the "C" locale (a program that calls setlocale() with a
// comma decimal point must not use the fallback). Define QLIB_IO_NO_CHARCONV to force it.
#pragma once

#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "../config.hpp"

#if !defined(QLIB_IO_NO_CHARCONV) && defined(__has_include)
#if __has_include(<charconv>)
#include <charconv>
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
#define QLIB_IO_HAS_CHARCONV 1
#endif
#endif
#endif
#ifndef QLIB_IO_HAS_CHARCONV
#define QLIB_IO_HAS_CHARCONV 0
#include <cstdlib>
#endif

QLIB_NAMESPACE_BEGIN
namespace detail {
namespace text {

// ---------------------------------------------------------------------------------------
// Errors

/// "source:line: what" (text formats, 1-based line).
inline status error_at_line(const std::string& source, std::size_t line, const std::string& what) {
  return {errc::parse_error, source + ":" + std::to_string(line) + ": " + what};
}
/// "source:line:column: what" (JSON, both 1-based).
inline status error_at_column(const std::string& source, std::size_t line, std::size_t column,
                              const std::string& what) {
  return {errc::parse_error, source + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + what};
}
/// "source: byte offset: what" (binary formats, 0-based offset).
inline status error_at_byte(const std::string& source, std::uint64_t offset, const std::string& what) {
  return {errc::parse_error, source + ": byte " + std::to_string(offset) + ": " + what};
}

/// 'text' for a message: quotes, non-printable bytes as \xNN, long text cut to `limit`.
inline std::string quote(const char* p, std::size_t n, std::size_t limit = 60) {
  static const char hex[] = "0123456789abcdef";
  std::string out = "'";
  const std::size_t m = n < limit ? n : limit;
  for (std::size_t i = 0; i < m; ++i) {
    const unsigned char c = static_cast<unsigned char>(p[i]);
    if (c == '\\' || c == '\'') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (m < n) out += "...";
  return out + "'";
}
inline std::string quote(const std::string& s, std::size_t limit = 60) { return quote(s.data(), s.size(), limit); }

// ---------------------------------------------------------------------------------------
// Lines

enum class line_ending : std::uint8_t { none, lf, crlf };

/// One line of a text: [begin, end) excludes the terminator; number is 1-based.
struct text_line {
  std::size_t number = 0;
  std::size_t begin = 0;
  std::size_t end = 0;
  line_ending ending = line_ending::none;
};

/// Splits a text at "\n" (a "\r" right before it is part of the terminator). A final
/// line without terminator is returned (ending none); an empty text has no lines.
class line_splitter {
 public:
  explicit line_splitter(const std::string& text) noexcept : t_(text) {}
  bool next(text_line* out) noexcept {
    if (pos_ >= t_.size()) return false;
    out->number = ++number_;
    out->begin = pos_;
    const std::size_t nl = t_.find('\n', pos_);
    if (nl == std::string::npos) {
      out->end = t_.size();
      out->ending = line_ending::none;
      pos_ = t_.size();
    } else if (nl > pos_ && t_[nl - 1] == '\r') {
      out->end = nl - 1;
      out->ending = line_ending::crlf;
      pos_ = nl + 1;
    } else {
      out->end = nl;
      out->ending = line_ending::lf;
      pos_ = nl + 1;
    }
    return true;
  }

 private:
  const std::string& t_;
  std::size_t pos_ = 0;
  std::size_t number_ = 0;
};

// ---------------------------------------------------------------------------------------
// Numbers: shortest round-trip digits

/// A finite number as sign, significant digits d1 d2 ... dn and the decimal exponent of
/// d1: value = d1.d2...dn x 10^exponent. Zero is the single digit "0", exponent 0.
struct decimal_digits {
  bool negative = false;
  char digits[24] = {};
  int count = 0;
  int exponent = 0;
};

namespace impl {
/// Reads printf/to_chars scientific text "-d.ddde+XX" (any decimal point character).
inline decimal_digits digits_from_scientific(const char* s) {
  decimal_digits d;
  if (*s == '-') {
    d.negative = true;
    ++s;
  }
  for (; *s && *s != 'e' && *s != 'E'; ++s)
    if (*s >= '0' && *s <= '9' && d.count < 23) d.digits[d.count++] = *s;
  // Trailing zeros of the significand carry no information (printf %.*e pads them).
  while (d.count > 1 && d.digits[d.count - 1] == '0') --d.count;
  d.digits[d.count] = '\0';
  if (*s) {
    ++s;
    int sign = 1;
    if (*s == '+' || *s == '-') sign = (*s++ == '-') ? -1 : 1;
    int e = 0;
    for (; *s >= '0' && *s <= '9'; ++s) e = e * 10 + (*s - '0');
    d.exponent = sign * e;
  }
  if (d.count == 1 && d.digits[0] == '0') d.exponent = 0;
  return d;
}
}  // namespace impl

/// Parses [first, last) entirely as a T (float or double), correctly rounded. The caller
/// checks the grammar of its format first: this accepts what from_chars accepts plus a
/// leading '+'. Returns false for text that is not a number or does not fit a finite T.
template <class T>
bool parse_real(const char* first, const char* last, T* out) {
  static_assert(std::is_floating_point<T>::value, "parse_real reads float or double");
  if (first != last && *first == '+') ++first;
  if (first == last) return false;
#if QLIB_IO_HAS_CHARCONV
  T v{};
  const auto r = std::from_chars(first, last, v);
  if (r.ec != std::errc() || r.ptr != last || !std::isfinite(v)) return false;
  *out = v;
  return true;
#else
  const std::string s(first, last);
  for (char c : s)
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')) return false;
  char* end = nullptr;
  errno = 0;
  T v;
  if (std::is_same<T, float>::value)
    v = static_cast<T>(std::strtof(s.c_str(), &end));
  else
    v = static_cast<T>(std::strtod(s.c_str(), &end));
  if (end != s.c_str() + s.size() || !std::isfinite(v)) return false;
  if (errno == ERANGE && v == T(0)) return false;  // underflow to zero
  *out = v;
  return true;
#endif
}

/// The shortest digits that read back (as a T) to exactly v. v must be finite.
template <class T>
decimal_digits shortest_digits(T v) {
  static_assert(std::is_floating_point<T>::value, "shortest_digits of float or double");
  char buf[64];
#if QLIB_IO_HAS_CHARCONV
  const auto r = std::to_chars(buf, buf + sizeof(buf) - 1, v, std::chars_format::scientific);
  *r.ptr = '\0';
  return impl::digits_from_scientific(buf);
#else
  // The correctly rounded p-digit value is the closest p-digit decimal, so the first p
  // that round-trips gives the same digits as the shortest algorithm.
  const int max_digits = std::numeric_limits<T>::max_digits10;
  for (int p = 1; p <= max_digits; ++p) {
    std::snprintf(buf, sizeof(buf), "%.*e", p - 1, static_cast<double>(v));
    char* end = nullptr;
    const T back = std::is_same<T, float>::value ? static_cast<T>(std::strtof(buf, &end))
                                                 : static_cast<T>(std::strtod(buf, &end));
    if (back == v) break;
  }
  return impl::digits_from_scientific(buf);
#endif
}

/// Python's repr() of a float (also json.dumps): the shortest digits, fixed notation for
/// decimal exponents -4 <= e < 16 with at least one digit after the point ("1.0",
/// "0.0001"), else scientific with a signed two-digit-minimum exponent ("1e-05", "1.5e+16").
inline std::string format_python_repr(const decimal_digits& d) {
  std::string out = d.negative ? "-" : "";
  const std::string digits(d.digits, static_cast<std::size_t>(d.count));
  const int e = d.exponent;
  if (e < -4 || e >= 16) {
    out += digits[0];
    if (d.count > 1) out += "." + digits.substr(1);
    out += e < 0 ? "e-" : "e+";
    const int a = e < 0 ? -e : e;
    if (a < 10) out += '0';
    return out + std::to_string(a);
  }
  const int point = e + 1;  // digits before the decimal point
  if (point <= 0) return out + "0." + std::string(static_cast<std::size_t>(-point), '0') + digits;
  if (point >= d.count) return out + digits + std::string(static_cast<std::size_t>(point - d.count), '0') + ".0";
  return out + digits.substr(0, static_cast<std::size_t>(point)) + "." + digits.substr(static_cast<std::size_t>(point));
}
template <class T>
std::string format_python_repr(T v) {
  return format_python_repr(shortest_digits(v));
}

/// C++'s std::to_chars(v) without a format (printf's %f or %e, whichever is shorter,
/// %f on a tie): "254.00002", "1e-05", "100000".
inline std::string format_shortest(const decimal_digits& d) {
  const std::string sign = d.negative ? "-" : "";
  const std::string digits(d.digits, static_cast<std::size_t>(d.count));
  const int e = d.exponent;
  std::string sci = digits.substr(0, 1);
  if (d.count > 1) sci += "." + digits.substr(1);
  sci += e < 0 ? "e-" : "e+";
  const int a = e < 0 ? -e : e;
  if (a < 10) sci += '0';
  sci += std::to_string(a);
  std::string fixed;
  const int point = e + 1;
  if (point <= 0)
    fixed = "0." + std::string(static_cast<std::size_t>(-point), '0') + digits;
  else if (point >= d.count)
    fixed = digits + std::string(static_cast<std::size_t>(point - d.count), '0');
  else
    fixed = digits.substr(0, static_cast<std::size_t>(point)) + "." + digits.substr(static_cast<std::size_t>(point));
  return sign + (fixed.size() <= sci.size() ? fixed : sci);
}


/// printf("%.*g", precision, v) in the "C" locale.
inline std::string format_general(double v, int precision) {
  char buf[64];
#if QLIB_IO_HAS_CHARCONV
  const auto r = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::general, precision);
  return std::string(buf, r.ptr);
#else
  std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
  return buf;
#endif
}

/// printf("%.*f", precision, v) in the "C" locale.
inline std::string format_fixed(double v, int precision) {
  char buf[400];  // |v| <= DBL_MAX has at most 309 integer digits
#if QLIB_IO_HAS_CHARCONV
  const auto r = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed, precision);
  if (r.ec != std::errc()) return std::string();
  return std::string(buf, r.ptr);
#else
  std::snprintf(buf, sizeof(buf), "%.*f", precision, v);
  return buf;
#endif
}

template <class T>
std::string format_shortest(T v) {
  const decimal_digits d = shortest_digits(v);
  std::string s = format_shortest(d);
  // A fixed layout padded with zeros ("996776600") has as many characters as the exact
  // integer value ("996776576"), which std::to_chars prefers (smallest difference).
  if (d.exponent + 1 > d.count && s.find('e') == std::string::npos) s = format_fixed(static_cast<double>(v), 0);
  return s;
}

/// A float as protobuf's text format writes it (C++ SimpleFtoa and upb's
/// _upb_EncodeRoundTripFloat, protocolbuffers/protobuf): "%.6g" (FLT_DIG digits) when that
/// reads back to the same float, else "%.9g", which always does.
inline std::string format_protobuf_float(float v) {
  std::string s = format_general(static_cast<double>(v), 6);
  float back = 0.0f;
  if (parse_real(s.data(), s.data() + s.size(), &back) && back == v) return s;
  return format_general(static_cast<double>(v), 9);
}

/// The float nearest to the shortest decimal of v: the exact inverse of writing a float
/// as shortest digits, reading them as a double and narrowing (a plain cast could round
/// twice; a float's shortest decimal has <= 9 digits, so it is also the double's).
inline float narrow_to_float(double v) {
  if (!std::isfinite(v)) return static_cast<float>(v);
  const decimal_digits d = shortest_digits(v);
  const std::string s = format_shortest(d);
  float f = 0.0f;
  if (!parse_real(s.data(), s.data() + s.size(), &f)) return static_cast<float>(v);
  return f;
}

// ---------------------------------------------------------------------------------------
// Integers

/// Parses an optionally signed decimal integer filling [first, last) into int64.
inline bool parse_int64(const char* first, const char* last, std::int64_t* out) {
  if (first == last) return false;
  bool neg = false;
  if (*first == '-' || *first == '+') {
    neg = *first == '-';
    ++first;
  }
  if (first == last) return false;
  std::uint64_t v = 0;
  const std::uint64_t limit = neg ? std::uint64_t{1} << 63 : (std::uint64_t{1} << 63) - 1;
  for (; first != last; ++first) {
    if (*first < '0' || *first > '9') return false;
    const auto digit = static_cast<std::uint64_t>(*first - '0');
    if (v > (limit - digit) / 10) return false;
    v = v * 10 + digit;
  }
  if (neg)
    *out = v == (std::uint64_t{1} << 63) ? std::numeric_limits<std::int64_t>::min() : -static_cast<std::int64_t>(v);
  else
    *out = static_cast<std::int64_t>(v);
  return true;
}

// ---------------------------------------------------------------------------------------
// Files

/// Reads a whole file as bytes (binary mode: no newline translation).
inline status read_file(const std::string& path, std::string* out) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return {errc::io_error, path + ": cannot open for reading: " + std::strerror(errno)};
  std::string data;
  char buf[65536];
  for (;;) {
    const std::size_t n = std::fread(buf, 1, sizeof(buf), f);
    data.append(buf, n);
    if (n < sizeof(buf)) break;
  }
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return {errc::io_error, path + ": read error"};
  *out = std::move(data);
  return {};
}

/// Writes bytes to a file, replacing it (binary mode).
inline status write_file(const std::string& path, const std::string& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return {errc::io_error, path + ": cannot open for writing: " + std::strerror(errno)};
  const std::size_t n = bytes.empty() ? 0 : std::fwrite(bytes.data(), 1, bytes.size(), f);
  const bool closed = std::fclose(f) == 0;
  if (n != bytes.size() || !closed) return {errc::io_error, path + ": write error"};
  return {};
}

}  // namespace text
}  // namespace detail
QLIB_NAMESPACE_END
