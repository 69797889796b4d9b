// ncnn int8 calibration table: reader and writer.
//
// Format (Tencent/ncnn tools/quantize: written by ncnn2table.cpp QuantNet::save_table,
// read by ncnn2int8's read_txt_format; shared/specs/algorithms.md section 5b). One line per
// entry, fields separated by spaces:
//
//   conv1_param_0 1606.0995 1112.1768 ...     weight scales, one per output channel
//   conv1 95.0182                             the layer's input (activation) scale
//
// A key ending in "_param_<N>" is the layer's N-th weight blob (N = 0 for convolution and
// inner product; MultiHeadAttention writes _param_0 .. _param_3); any other key is the
// layer's input blob. ncnn stores the inverse of the usual scale: 127 / threshold (weights:
// 127 / absmax of the channel), symmetric only.
//
// ncnn2table writes each number with printf("%f ") and every line as "<key> <n> <n> \n"
// (a space after each field). "%f" keeps 6 decimals: small scales lose digits and a scale
// below 5e-7 prints as 0. qlib's writer therefore defaults to the shortest text that
// reads back to the same float ("254.00002", "1e-05"), and offers ncnn's "%f" as
// ncnn_number_format::fixed6, which reproduces ncnn2table's bytes exactly. The layout is
// ncnn's in both cases. The reader records which of the two a file uses (fixed6 when every
// number is exactly what "%f" prints for its value) and its line endings, so
// write(parse(t)) == t for every table qlib or ncnn2table wrote.
//
// Reader: strict where ncnn2int8 would silently misread. Errors ("source:line: what"): a
// key longer than 255 characters (ncnn truncates it), a number that is not a decimal or
// not finite and > 0 (an all-zero channel makes ncnn2table print "inf"), an entry without
// scales, a key listed twice, mixed line endings, and a blank line followed by more
// entries (ncnn2int8 stops reading at the first blank line and would drop them).
// Separators are single or repeated spaces; trailing blank lines are accepted.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

#include "../config.hpp"
#include "../detail/text.hpp"
#include "../observer/result.hpp"

QLIB_NAMESPACE_BEGIN

/// How the writer prints scales.
enum class ncnn_number_format : std::uint8_t {
  shortest,  ///< shortest text that reads back to the same float (exact)
  fixed6,    ///< printf("%f"), what ncnn2table writes (6 decimals, lossy)
};

/// One line of the table.
struct ncnn_table_entry {
  std::string layer;          ///< the layer's name
  int param = -1;             ///< -1: the layer's input blob; N >= 0: weight blob "_param_N"
  std::vector<float> scales;  ///< 127 / threshold (weights: one per output channel)

  bool is_weight() const noexcept { return param >= 0; }
  /// The key written in the file: "<layer>" or "<layer>_param_<N>".
  std::string key() const { return param < 0 ? layer : layer + "_param_" + std::to_string(param); }
};

/// ncnn's scale from a symmetric threshold: qmax / threshold (qmax 127 for int8; ncnn uses
/// 31 for the 6-bit winograd weights). A zero threshold (all-zero data) gives 1, ncnn's
/// convention for Embed and MultiHeadAttention weights; a negative or non-finite one is
/// invalid_argument.
inline float ncnn_scale_from_threshold(float threshold, float qmax = 127.0f) {
  if (!std::isfinite(threshold) || threshold < 0.0f)
    detail::fail(errc::invalid_argument, "ncnn table: threshold must be finite and >= 0, got " + std::to_string(threshold));
  if (threshold == 0.0f) return 1.0f;
  const float s = qmax / threshold;
  if (!std::isfinite(s))
    detail::fail(errc::invalid_argument, "ncnn table: threshold " + std::to_string(threshold) + " gives an infinite scale");
  return s;
}

/// A whole table, in file order.
struct ncnn_table {
  std::vector<ncnn_table_entry> entries;
  ncnn_number_format format = ncnn_number_format::shortest;
  bool crlf = false;  ///< lines end with "\r\n" (else "\n")

  /// The entry of a layer's weight blob `param` (or of its input blob when param < 0).
  const ncnn_table_entry* find(const std::string& layer, int param = -1) const noexcept {
    for (const auto& e : entries)
      if (e.layer == layer && (param < 0 ? e.param < 0 : e.param == param)) return &e;
    return nullptr;
  }
  /// Appends weight scales from per-channel absolute maxima: qmax / absmax[c].
  void add_weight(const std::string& layer, const std::vector<float>& absmax, int param = 0, float qmax = 127.0f) {
    ncnn_table_entry e{layer, param < 0 ? 0 : param, {}};
    for (float a : absmax) e.scales.push_back(ncnn_scale_from_threshold(a, qmax));
    entries.push_back(std::move(e));
  }
  /// Appends an input blob's scale from its threshold: qmax / threshold.
  void add_activation(const std::string& layer, float threshold, float qmax = 127.0f) {
    entries.push_back({layer, -1, {ncnn_scale_from_threshold(threshold, qmax)}});
  }
  /// From qlib results: a weight's per-channel amax, an activation's per-tensor amax.
  void add_weight_result(const std::string& layer, const calib_result<float>& r, int param = 0) {
    std::vector<float> a;
    for (std::size_t c = 0; c < r.channels(); ++c) a.push_back(r.amax(c));
    add_weight(layer, a, param, static_cast<float>(r.spec.qmax()));
  }
  void add_activation_result(const std::string& layer, const calib_result<float>& r) {
    if (r.per_channel() || r.channels() != 1)
      detail::fail(errc::invalid_argument, "ncnn table: layer '" + layer + "': activation results are per tensor");
    add_activation(layer, r.amax(), static_cast<float>(r.spec.qmax()));
  }
};

namespace detail {

/// ncnn2int8 reads keys with sscanf("%255s").
constexpr std::size_t ncnn_max_key = 255;

inline std::string ncnn_format_number(float v, ncnn_number_format f) {
  return f == ncnn_number_format::fixed6 ? text::format_fixed(static_cast<double>(v), 6) : text::format_shortest(v);
}

/// A decimal number as sscanf("%f") reads it: [+-] digits [. digits] [e [+-] digits].
inline bool ncnn_number_syntax(const std::string& t) {
  std::size_t i = 0, digits = 0;
  if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
  while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i, ++digits;
  if (i < t.size() && t[i] == '.') {
    ++i;
    while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i, ++digits;
  }
  if (digits == 0) return false;
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
    std::size_t ed = 0;
    while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i, ++ed;
    if (ed == 0) return false;
  }
  return i == t.size();
}

/// Splits a key into layer and param index ("conv1_param_0" -> ("conv1", 0)).
inline void ncnn_split_key(const std::string& key, std::string* layer, int* param) {
  *layer = key;
  *param = -1;
  const std::size_t at = key.rfind("_param_");
  if (at == std::string::npos || at == 0) return;
  const std::size_t d = at + 7;
  if (d >= key.size() || key.size() - d > 6) return;
  for (std::size_t i = d; i < key.size(); ++i)
    if (key[i] < '0' || key[i] > '9') return;
  if (key[d] == '0' && key.size() - d > 1) return;  // "_param_01" is not a param index
  *param = std::stoi(key.substr(d));
  *layer = key.substr(0, at);
}

}  // namespace detail

/// Parses a table's text; `source` names it in errors.
inline status try_parse_ncnn_table(const std::string& text, const std::string& source, ncnn_table* out) {
  using detail::text::error_at_line;
  using detail::text::quote;
  ncnn_table table;
  std::unordered_set<std::string> seen;
  detail::text::line_splitter lines(text);
  detail::text::text_line ln;
  bool first = true, fixed6 = true, any_number = false;
  std::size_t blank_line = 0;
  while (lines.next(&ln)) {
    const std::size_t n = ln.number;
    if (ln.ending != detail::text::line_ending::none) {
      const bool crlf = ln.ending == detail::text::line_ending::crlf;
      if (first) table.crlf = crlf;
      else if (crlf != table.crlf) return error_at_line(source, n, "mixed line endings (\"\\n\" and \"\\r\\n\")");
      first = false;
    }
    // Fields separated by runs of spaces (ncnn2int8 uses strtok(line, " ")).
    std::vector<std::string> fields;
    for (std::size_t i = ln.begin; i < ln.end;) {
      while (i < ln.end && text[i] == ' ') ++i;
      const std::size_t start = i;
      while (i < ln.end && text[i] != ' ') ++i;
      if (i > start) fields.push_back(text.substr(start, i - start));
    }
    if (fields.empty()) {
      if (!blank_line) blank_line = n;
      continue;
    }
    if (blank_line)
      return error_at_line(source, n, "entry after the blank line " + std::to_string(blank_line) +
                                          " (ncnn2int8 stops reading at a blank line and would ignore it)");
    const std::string& key = fields[0];
    if (key.size() > detail::ncnn_max_key)
      return error_at_line(source, n, "key " + quote(key) + " is longer than 255 characters (ncnn2int8 truncates it)");
    if (key.find_first_of("\t\r\v\f") != std::string::npos)
      return error_at_line(source, n, "key " + quote(key) + " holds a tab or carriage return (ncnn2int8 would cut it there)");
    if (fields.size() == 1) return error_at_line(source, n, "entry " + quote(key) + " has no scales");
    ncnn_table_entry e;
    detail::ncnn_split_key(key, &e.layer, &e.param);
    for (std::size_t i = 1; i < fields.size(); ++i) {
      const std::string& t = fields[i];
      float v = 0.0f;
      if (!detail::ncnn_number_syntax(t))
        return error_at_line(source, n, "entry " + quote(key) + ": scale " + std::to_string(i - 1) + " " + quote(t) +
                                            " is not a decimal number");
      if (!detail::text::parse_real(t.data(), t.data() + t.size(), &v) || !(v > 0.0f))
        return error_at_line(source, n, "entry " + quote(key) + ": scale " + std::to_string(i - 1) + " " + quote(t) +
                                            " is not finite and > 0 (an all-zero channel?)");
      if (fixed6 && detail::text::format_fixed(static_cast<double>(v), 6) != t) fixed6 = false;
      any_number = true;
      e.scales.push_back(v);
    }
    if (!seen.insert(key).second) return error_at_line(source, n, "key " + quote(key) + " is listed twice");
    table.entries.push_back(std::move(e));
  }
  table.format = (any_number && fixed6) ? ncnn_number_format::fixed6 : ncnn_number_format::shortest;
  *out = std::move(table);
  return {};
}
inline ncnn_table parse_ncnn_table(const std::string& text, const std::string& source) {
  ncnn_table t;
  detail::throw_if(try_parse_ncnn_table(text, source, &t));
  return t;
}

/// Writes a table in ncnn2table's layout with the table's number format. invalid_argument
/// (naming the key) for an empty layer name, a name with a space or line break, a key
/// longer than 255 characters or listed twice, no scales, a scale that is not finite and
/// > 0, or (fixed6) a scale that "%f" would print as 0.
inline status try_write_ncnn_table(const ncnn_table& table, std::string* out) {
  const char* nl = table.crlf ? "\r\n" : "\n";
  std::string t;
  std::unordered_set<std::string> seen;
  for (const auto& e : table.entries) {
    const std::string key = e.key();
    const std::string who = "ncnn table: entry " + detail::text::quote(key) + ": ";
    if (e.layer.empty() || e.layer.find_first_of(" \t\r\n\v\f") != std::string::npos)
      return {errc::invalid_argument, who + "layer name is empty or holds white space"};
    if (key.size() > detail::ncnn_max_key) return {errc::invalid_argument, who + "key is longer than 255 characters"};
    if (!seen.insert(key).second) return {errc::invalid_argument, who + "listed twice"};
    if (e.scales.empty()) return {errc::invalid_argument, who + "no scales"};
    // An activation key that looks like a weight key would read back as a weight.
    std::string layer;
    int param = -1;
    detail::ncnn_split_key(key, &layer, &param);
    if (param != e.param || layer != e.layer)
      return {errc::invalid_argument, who + "the key does not read back as layer " + detail::text::quote(e.layer) +
                                          " and param " + std::to_string(e.param) +
                                          " (an input-blob layer name ending in _param_N, or a param index < -1 or > 999999)"};
    t += key;
    t += ' ';
    for (std::size_t c = 0; c < e.scales.size(); ++c) {
      const float s = e.scales[c];
      const std::string num = detail::ncnn_format_number(s, table.format);
      float back = 0.0f;
      if (!std::isfinite(s) || !(s > 0.0f) || !detail::text::parse_real(num.data(), num.data() + num.size(), &back) ||
          !(back > 0.0f))
        return {errc::invalid_argument, who + "scale " + std::to_string(c) + " = " + std::to_string(s) +
                                            (std::isfinite(s) && s > 0.0f ? " prints as 0 with %f" : " is not finite and > 0")};
      t += num;
      t += ' ';
    }
    t += nl;
  }
  *out = std::move(t);
  return {};
}
inline std::string write_ncnn_table(const ncnn_table& table) {
  std::string s;
  detail::throw_if(try_write_ncnn_table(table, &s));
  return s;
}

inline status try_read_ncnn_table_file(const std::string& path, ncnn_table* out) {
  std::string text;
  const status s = detail::text::read_file(path, &text);
  if (!s.ok()) return s;
  return try_parse_ncnn_table(text, path, out);
}
inline ncnn_table read_ncnn_table_file(const std::string& path) {
  ncnn_table t;
  detail::throw_if(try_read_ncnn_table_file(path, &t));
  return t;
}
inline status try_write_ncnn_table_file(const std::string& path, const ncnn_table& table) {
  std::string text;
  const status s = try_write_ncnn_table(table, &text);
  if (!s.ok()) return s;
  return detail::text::write_file(path, text);
}
inline void write_ncnn_table_file(const std::string& path, const ncnn_table& table) {
  detail::throw_if(try_write_ncnn_table_file(path, table));
}

QLIB_NAMESPACE_END
