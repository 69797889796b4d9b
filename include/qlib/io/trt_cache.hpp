// TensorRT calibration cache ("calibration table"): reader and writer.
//
// Format (shared/specs/algorithms.md section 3; TensorRT IInt8Calibrator::
// readCalibrationCache / writeCalibrationCache, ONNX Runtime's TensorRT execution provider):
//
//   TRT-8601-EntropyCalibration2
//   input: 3c010a14
//   /conv1/Conv_output_0: 3d2f1a0c
//
// The first line is a header that contains "TRT-" (kept verbatim). Each following line is
// "<tensor name>: <hex>", hex being the IEEE-754 float32 bit pattern of the scale
// s = amax / 127, most significant digit first, 8 lowercase digits (Python:
// struct.pack('>f', s).hex()). TensorRT takes the dynamic range as s * 127. Tensor names are
// the ONNX graph's and may contain ':' themselves: the value follows the LAST ": ".
//
// Round trip: write(parse(text)) == text byte for byte for every text the reader accepts.
// To make that hold the reader is strict where a lenient reading would lose bytes: line
// endings are "\n" or "\r\n" (recorded; one kind per file), the final newline is recorded,
// and blank lines, trailing blanks and uppercase hex are errors naming the file and line.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_set>
#include <vector>

#include "../config.hpp"
#include "../detail/text.hpp"
#include "../observer/result.hpp"

QLIB_NAMESPACE_BEGIN

/// The header TensorRT 8.6 writes for IInt8EntropyCalibrator2.
constexpr const char* trt_cache_default_header = "TRT-8601-EntropyCalibration2";

/// One tensor: its name and float32 scale (amax / 127).
struct trt_cache_entry {
  std::string name;
  float scale = 0.0f;
  /// The dynamic range TensorRT derives from the scale: scale * 127.
  float amax() const noexcept { return scale * 127.0f; }
};

/// A whole cache, in file order.
struct trt_cache {
  std::string header = trt_cache_default_header;
  std::vector<trt_cache_entry> entries;
  bool crlf = false;           ///< lines end with "\r\n" (else "\n")
  bool final_newline = true;   ///< the last line is terminated

  /// The entry named `name`, or nullptr.
  const trt_cache_entry* find(const std::string& name) const noexcept {
    for (const auto& e : entries)
      if (e.name == name) return &e;
    return nullptr;
  }
  /// Appends a tensor from its symmetric threshold: scale = amax / 127 (float32).
  void add_amax(std::string name, float amax);
  /// Appends a per-tensor result: scale = result.amax() / 127.
  void add_result(std::string name, const calib_result<float>& result);
};

/// TensorRT's scale of a symmetric int8 range [-amax, amax]: amax / 127 in float32.
/// amax must be finite and >= 0 (invalid_argument otherwise).
inline status try_trt_scale_from_amax(float amax, float* scale) {
  if (!std::isfinite(amax) || amax < 0.0f)
    return {errc::invalid_argument, "TensorRT cache: amax must be finite and >= 0, got " + std::to_string(amax)};
  *scale = amax / 127.0f;
  return {};
}
inline float trt_scale_from_amax(float amax) {
  float s = 0.0f;
  detail::throw_if(try_trt_scale_from_amax(amax, &s));
  return s;
}

/// The 8 lowercase hex digits of a float's bit pattern, most significant first
/// (0.0078125f -> "3c000000").
inline std::string trt_scale_to_hex(float scale) {
  std::uint32_t bits = 0;
  std::memcpy(&bits, &scale, 4);
  static const char hex[] = "0123456789abcdef";
  std::string out(8, '0');
  for (int i = 7; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = hex[bits & 15u];
    bits >>= 4;
  }
  return out;
}

namespace detail {
inline int trt_hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}
/// Checks a scale for writing or after reading: finite, sign bit clear.
inline const char* trt_bad_scale(float s) noexcept {
  if (!std::isfinite(s)) return "is not finite";
  if (std::signbit(s)) return "is negative";
  return nullptr;
}
}  // namespace detail

inline void trt_cache::add_amax(std::string name, float amax) {
  float s = 0.0f;
  detail::throw_if(try_trt_scale_from_amax(amax, &s));
  entries.push_back({std::move(name), s});
}

inline void trt_cache::add_result(std::string name, const calib_result<float>& result) {
  if (result.per_channel() || result.channels() != 1)
    detail::fail(errc::invalid_argument, "TensorRT cache: tensor '" + name +
                                             "' has a per-channel result; the cache holds one scale per tensor");
  add_amax(std::move(name), result.amax());
}

/// Parses a cache's text; `source` names it in errors (e.g. the path). On failure `out`
/// is left untouched and the status is a parse_error "source:line: what".
inline status try_parse_trt_cache(const std::string& text, const std::string& source, trt_cache* out) {
  using detail::text::error_at_line;
  using detail::text::quote;
  trt_cache cache;
  detail::text::line_splitter lines(text);
  detail::text::text_line ln;
  if (!lines.next(&ln)) return error_at_line(source, 1, "empty file: expected a header line containing 'TRT-'");
  const std::string header = text.substr(ln.begin, ln.end - ln.begin);
  if (header.find("TRT-") == std::string::npos)
    return error_at_line(source, 1, "header " + quote(header) + " does not contain 'TRT-'");
  if (header.find('\r') != std::string::npos)
    return error_at_line(source, 1, "stray carriage return in the header");
  cache.header = header;
  cache.crlf = ln.ending == detail::text::line_ending::crlf;
  cache.final_newline = ln.ending != detail::text::line_ending::none;
  std::unordered_set<std::string> seen;
  while (lines.next(&ln)) {
    const std::size_t n = ln.number;
    if (ln.ending != detail::text::line_ending::none &&
        (ln.ending == detail::text::line_ending::crlf) != cache.crlf)
      return error_at_line(source, n, std::string("line ends with ") + (cache.crlf ? "\"\\n\"" : "\"\\r\\n\"") +
                                          " but the header line with " + (cache.crlf ? "\"\\r\\n\"" : "\"\\n\"") +
                                          " (mixed line endings)");
    cache.final_newline = ln.ending != detail::text::line_ending::none;
    const std::string line = text.substr(ln.begin, ln.end - ln.begin);
    if (line.empty()) return error_at_line(source, n, "blank line (expected '<tensor name>: <8 hex digits>')");
    const std::size_t sep = line.rfind(": ");
    if (sep == std::string::npos || sep == 0)
      return error_at_line(source, n, "expected '<tensor name>: <8 hex digits>', got " + quote(line));
    std::string name = line.substr(0, sep);
    const std::string hex = line.substr(sep + 2);
    if (name.find('\r') != std::string::npos)
      return error_at_line(source, n, "stray carriage return in tensor name " + quote(name));
    if (hex.size() != 8)
      return error_at_line(source, n, "tensor " + quote(name) + ": value " + quote(hex) +
                                          " is not 8 lowercase hex digits");
    std::uint32_t bits = 0;
    for (char c : hex) {
      const int d = detail::trt_hex_digit(c);
      if (d < 0)
        return error_at_line(source, n, "tensor " + quote(name) + ": value " + quote(hex) +
                                            " is not 8 lowercase hex digits");
      bits = (bits << 4) | static_cast<std::uint32_t>(d);
    }
    float scale = 0.0f;
    std::memcpy(&scale, &bits, 4);
    if (const char* why = detail::trt_bad_scale(scale))
      return error_at_line(source, n, "tensor " + quote(name) + ": scale " + hex + " " + why);
    if (!seen.insert(name).second) return error_at_line(source, n, "tensor " + quote(name) + " is listed twice");
    cache.entries.push_back({std::move(name), scale});
  }
  *out = std::move(cache);
  return {};
}

inline trt_cache parse_trt_cache(const std::string& text, const std::string& source) {
  trt_cache c;
  detail::throw_if(try_parse_trt_cache(text, source, &c));
  return c;
}

/// Writes a cache's text. Fails (invalid_argument, naming the tensor) on a header without
/// "TRT-" or with a line break, an empty name, a name with a line break, a non-finite or
/// negative scale, or a name listed twice.
inline status try_write_trt_cache(const trt_cache& cache, std::string* out) {
  if (cache.header.find("TRT-") == std::string::npos || cache.header.find_first_of("\r\n") != std::string::npos)
    return {errc::invalid_argument,
            "TensorRT cache: header must be one line containing 'TRT-', got " + detail::text::quote(cache.header)};
  const char* nl = cache.crlf ? "\r\n" : "\n";
  std::string text = cache.header;
  std::unordered_set<std::string> seen;
  for (const auto& e : cache.entries) {
    if (e.name.empty() || e.name.find_first_of("\r\n") != std::string::npos)
      return {errc::invalid_argument,
              "TensorRT cache: tensor name " + detail::text::quote(e.name) + " cannot be written (empty or a line break)"};
    if (const char* why = detail::trt_bad_scale(e.scale))
      return {errc::invalid_argument, "TensorRT cache: tensor " + detail::text::quote(e.name) + ": scale " +
                                          std::to_string(e.scale) + " " + why};
    if (!seen.insert(e.name).second)
      return {errc::invalid_argument, "TensorRT cache: tensor " + detail::text::quote(e.name) + " is listed twice"};
    text += nl;
    text += e.name;
    text += ": ";
    text += trt_scale_to_hex(e.scale);
  }
  if (cache.final_newline) text += nl;
  *out = std::move(text);
  return {};
}

inline std::string write_trt_cache(const trt_cache& cache) {
  std::string s;
  detail::throw_if(try_write_trt_cache(cache, &s));
  return s;
}

/// Reads a cache file; errors name the path.
inline status try_read_trt_cache_file(const std::string& path, trt_cache* out) {
  std::string text;
  const status s = detail::text::read_file(path, &text);
  if (!s.ok()) return s;
  return try_parse_trt_cache(text, path, out);
}
inline trt_cache read_trt_cache_file(const std::string& path) {
  trt_cache c;
  detail::throw_if(try_read_trt_cache_file(path, &c));
  return c;
}

inline status try_write_trt_cache_file(const std::string& path, const trt_cache& cache) {
  std::string text;
  const status s = try_write_trt_cache(cache, &text);
  if (!s.ok()) return s;
  return detail::text::write_file(path, text);
}
inline void write_trt_cache_file(const std::string& path, const trt_cache& cache) {
  detail::throw_if(try_write_trt_cache_file(path, cache));
}

QLIB_NAMESPACE_END
