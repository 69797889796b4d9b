// A small JSON value, a strict parser (RFC 8259) and a writer, for AMCT's quantization
// config (io/amct_config.hpp) and qlib's result files (io/results_json.hpp).
//
// Parser: objects (members kept in file order; a duplicate key is an error), arrays,
// strings (escapes, \u surrogate pairs, UTF-8 validated), numbers, true/false/null.
// Nothing else: no comments, no trailing commas, no NaN/Infinity, no leading '+' or zeros,
// nesting at most 256 deep. Errors are parse_error "source:line:column: what" (1-based,
// columns in bytes). Every value remembers where it started, so readers built on top can
// name the line of a bad value.
//
// Numbers: an integer literal (no fraction, no exponent) is kept as an int64 (one that
// does not fit is an error); any other number is a double, correctly rounded. The writer
// prints integers as integers and doubles as Python's repr() does (shortest digits that
// read back to the same double, "1.0", "1e-05"), so parse(write(v)) == v exactly.
//
// Writer: the layout of Python's json.dump(obj, indent=4, separators=(',', ':')) by default
// (what AMCT writes), other indents, ": " and one-line scalar arrays on request; with the
// same style, write(parse(text)) == text for any text the writer produced.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../detail/text.hpp"

QLIB_NAMESPACE_BEGIN

struct json_member;

/// One JSON value. Build with the make_* functions; read with the is_* / get_* ones.
class json {
 public:
  enum class kind : std::uint8_t { null, boolean, integer, real, string, array, object };

  json() = default;
  static json make_null() { return json(); }
  static json make_bool(bool b) {
    json j(kind::boolean);
    j.b_ = b;
    return j;
  }
  static json make_integer(std::int64_t v) {
    json j(kind::integer);
    j.i_ = v;
    return j;
  }
  static json make_real(double v) {
    json j(kind::real);
    j.d_ = v;
    return j;
  }
  /// A float32 value: written with the shortest digits that read back to the same float
  /// (0.1f as "0.1", not the double's "0.10000000149011612"); read back with
  /// get_float(). It parses back as an ordinary double.
  static json make_float(float v) {
    json j(kind::real);
    j.d_ = static_cast<double>(v);
    j.single_ = true;
    return j;
  }
  static json make_string(std::string s) {
    json j(kind::string);
    j.s_ = std::move(s);
    return j;
  }
  static json make_array() { return json(kind::array); }
  static json make_object() { return json(kind::object); }

  kind type() const noexcept { return kind_; }
  bool is_null() const noexcept { return kind_ == kind::null; }
  bool is_bool() const noexcept { return kind_ == kind::boolean; }
  bool is_integer() const noexcept { return kind_ == kind::integer; }
  bool is_number() const noexcept { return kind_ == kind::integer || kind_ == kind::real; }
  bool is_string() const noexcept { return kind_ == kind::string; }
  bool is_array() const noexcept { return kind_ == kind::array; }
  bool is_object() const noexcept { return kind_ == kind::object; }

  /// Values; calling the wrong one is a programming error (invalid_argument).
  bool get_bool() const {
    check(kind_ == kind::boolean, "a boolean");
    return b_;
  }
  std::int64_t get_integer() const {
    check(kind_ == kind::integer, "an integer");
    return i_;
  }
  double get_number() const {
    check(is_number(), "a number");
    return kind_ == kind::integer ? static_cast<double>(i_) : d_;
  }
  /// The number as the float nearest to its shortest decimal (exact for values written
  /// with make_float, where a plain cast of the double could round twice).
  float get_float() const { return detail::text::narrow_to_float(get_number()); }
  /// True for values made with make_float.
  bool is_single() const noexcept { return single_; }
  const std::string& get_string() const {
    check(kind_ == kind::string, "a string");
    return s_;
  }

  /// Arrays.
  std::size_t size() const noexcept { return kind_ == kind::array ? a_.size() : kind_ == kind::object ? members_size() : 0; }
  const std::vector<json>& elements() const {
    check(kind_ == kind::array, "an array");
    return a_;
  }
  void push_back(json v) {
    check(kind_ == kind::array, "an array");
    a_.push_back(std::move(v));
  }

  /// Objects (members in insertion / file order).
  const std::vector<json_member>& members() const;
  const json* find(const std::string& key) const;
  /// Sets a member: replaces the value of an existing key, else appends.
  void set(const std::string& key, json v);

  /// Where the value starts in the parsed text (1-based); 0 for values built in code.
  std::size_t line() const noexcept { return line_; }
  std::size_t column() const noexcept { return column_; }

  const char* type_name() const noexcept { return kind_name(kind_); }
  static const char* kind_name(kind k) noexcept {
    switch (k) {
      case kind::null: return "null";
      case kind::boolean: return "a boolean";
      case kind::integer: return "an integer";
      case kind::real: return "a number";
      case kind::string: return "a string";
      case kind::array: return "an array";
      case kind::object: return "an object";
    }
    return "?";
  }

  friend bool operator==(const json& a, const json& b);
  friend bool operator!=(const json& a, const json& b) { return !(a == b); }

 private:
  friend class json_parser;
  explicit json(kind k) : kind_(k) {}
  void check(bool ok, const char* what) const {
    if (!ok) detail::fail(errc::invalid_argument, std::string("json value is ") + type_name() + ", not " + what);
  }
  std::size_t members_size() const noexcept;

  kind kind_ = kind::null;
  bool b_ = false;
  bool single_ = false;
  std::int64_t i_ = 0;
  double d_ = 0.0;
  std::string s_;
  std::vector<json> a_;
  std::vector<json_member> o_;  // vector of an incomplete type: allowed since C++17
  std::size_t line_ = 0, column_ = 0;
};

/// A member of an object: its key, the key's position and the value.
struct json_member {
  std::string key;
  json value;
  std::size_t line = 0, column = 0;
};

inline std::size_t json::members_size() const noexcept { return o_.size(); }
inline const std::vector<json_member>& json::members() const {
  check(kind_ == kind::object, "an object");
  return o_;
}
inline const json* json::find(const std::string& key) const {
  check(kind_ == kind::object, "an object");
  for (const auto& m : o_)
    if (m.key == key) return &m.value;
  return nullptr;
}
inline void json::set(const std::string& key, json v) {
  check(kind_ == kind::object, "an object");
  for (auto& m : o_)
    if (m.key == key) {
      m.value = std::move(v);
      return;
    }
  o_.push_back({key, std::move(v), 0, 0});
}
inline bool operator==(const json& a, const json& b) {
  if (a.kind_ != b.kind_) return false;
  switch (a.kind_) {
    case json::kind::null: return true;
    case json::kind::boolean: return a.b_ == b.b_;
    case json::kind::integer: return a.i_ == b.i_;
    case json::kind::real: {
      // Bitwise for doubles, so that -0.0 != 0.0 (the writer keeps the sign).
      return a.d_ == b.d_ && std::signbit(a.d_) == std::signbit(b.d_);
    }
    case json::kind::string: return a.s_ == b.s_;
    case json::kind::array: return a.a_ == b.a_;
    case json::kind::object:
      if (a.o_.size() != b.o_.size()) return false;
      for (std::size_t i = 0; i < a.o_.size(); ++i)
        if (a.o_[i].key != b.o_[i].key || a.o_[i].value != b.o_[i].value) return false;
      return true;
  }
  return false;
}

/// The strict parser (use try_parse_json / parse_json).
class json_parser {
 public:
  static constexpr int max_depth = 256;

  json_parser(const std::string& text, const std::string& source) : t_(text), src_(source) {}

  status parse(json* out) {
    json v;
    skip_ws();
    status s = value(&v, 0);
    if (!s.ok()) return s;
    skip_ws();
    if (pos_ != t_.size()) return err("unexpected text after the JSON value: " + detail::text::quote(t_.substr(pos_), 20));
    *out = std::move(v);
    return {};
  }

 private:
  status err(const std::string& what) const { return detail::text::error_at_column(src_, line_, col(), what); }
  status err_at(std::size_t line, std::size_t column, const std::string& what) const {
    return detail::text::error_at_column(src_, line, column, what);
  }
  std::size_t col() const noexcept { return pos_ - line_start_ + 1; }
  bool at_end() const noexcept { return pos_ >= t_.size(); }
  char peek() const noexcept { return at_end() ? '\0' : t_[pos_]; }

  void skip_ws() noexcept {
    while (pos_ < t_.size()) {
      const char c = t_[pos_];
      if (c == '\n') {
        ++pos_;
        ++line_;
        line_start_ = pos_;
      } else if (c == ' ' || c == '\t' || c == '\r') {
        ++pos_;
      } else {
        break;
      }
    }
  }

  status value(json* out, int depth) {
    if (depth > max_depth) return err("nesting deeper than " + std::to_string(max_depth) + " levels");
    const std::size_t line = line_, column = col();
    status s;
    if (at_end()) return err("unexpected end of input (expected a value)");
    const char c = peek();
    if (c == '{') {
      s = object(out, depth);
    } else if (c == '[') {
      s = array(out, depth);
    } else if (c == '"') {
      std::string str;
      s = string(&str);
      if (s.ok()) *out = json::make_string(std::move(str));
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      s = number(out);
    } else if (t_.compare(pos_, 4, "true") == 0) {
      pos_ += 4;
      *out = json::make_bool(true);
    } else if (t_.compare(pos_, 5, "false") == 0) {
      pos_ += 5;
      *out = json::make_bool(false);
    } else if (t_.compare(pos_, 4, "null") == 0) {
      pos_ += 4;
      *out = json();
    } else if (c == '\xef' && t_.compare(pos_, 3, "\xef\xbb\xbf") == 0) {
      return err("byte order mark (JSON text must not start with one)");
    } else {
      return err("unexpected character " + detail::text::quote(&t_[pos_], 1) + " (expected a value)");
    }
    if (!s.ok()) return s;
    out->line_ = line;
    out->column_ = column;
    return {};
  }

  status object(json* out, int depth) {
    ++pos_;  // '{'
    json obj = json::make_object();
    skip_ws();
    if (peek() == '}') {
      ++pos_;
      *out = std::move(obj);
      return {};
    }
    for (;;) {
      skip_ws();
      if (peek() != '"') return err(at_end() ? "unexpected end of input in an object" : "expected a quoted key");
      const std::size_t kline = line_, kcol = col();
      std::string key;
      status s = string(&key);
      if (!s.ok()) return s;
      for (const auto& m : obj.o_)
        if (m.key == key) return err_at(kline, kcol, "duplicate key " + detail::text::quote(key));
      skip_ws();
      if (peek() != ':') return err("expected ':' after key " + detail::text::quote(key));
      ++pos_;
      skip_ws();
      json v;
      s = value(&v, depth + 1);
      if (!s.ok()) return s;
      obj.o_.push_back({std::move(key), std::move(v), kline, kcol});
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        skip_ws();
        if (peek() == '}') return err("trailing comma before '}'");
        continue;
      }
      if (peek() == '}') {
        ++pos_;
        *out = std::move(obj);
        return {};
      }
      return err(at_end() ? "unexpected end of input in an object" : "expected ',' or '}'");
    }
  }

  status array(json* out, int depth) {
    ++pos_;  // '['
    json arr = json::make_array();
    skip_ws();
    if (peek() == ']') {
      ++pos_;
      *out = std::move(arr);
      return {};
    }
    for (;;) {
      skip_ws();
      json v;
      status s = value(&v, depth + 1);
      if (!s.ok()) return s;
      arr.a_.push_back(std::move(v));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        skip_ws();
        if (peek() == ']') return err("trailing comma before ']'");
        continue;
      }
      if (peek() == ']') {
        ++pos_;
        *out = std::move(arr);
        return {};
      }
      return err(at_end() ? "unexpected end of input in an array" : "expected ',' or ']'");
    }
  }

  static void put_utf8(std::string* s, std::uint32_t cp) {
    if (cp < 0x80) {
      *s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      *s += static_cast<char>(0xc0 | (cp >> 6));
      *s += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      *s += static_cast<char>(0xe0 | (cp >> 12));
      *s += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      *s += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      *s += static_cast<char>(0xf0 | (cp >> 18));
      *s += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      *s += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      *s += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }
  bool hex4(std::uint32_t* v) {
    if (t_.size() - pos_ < 4) return false;
    std::uint32_t r = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = t_[pos_ + static_cast<std::size_t>(k)];
      r <<= 4;
      if (c >= '0' && c <= '9') r |= static_cast<std::uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') r |= static_cast<std::uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') r |= static_cast<std::uint32_t>(c - 'A' + 10);
      else return false;
    }
    pos_ += 4;
    *v = r;
    return true;
  }

  status string(std::string* out) {
    ++pos_;  // '"'
    std::string s;
    for (;;) {
      if (at_end()) return err("unterminated string");
      const auto c = static_cast<unsigned char>(t_[pos_]);
      if (c == '"') {
        ++pos_;
        *out = std::move(s);
        return {};
      }
      if (c < 0x20) return err("control character " + detail::text::quote(&t_[pos_], 1) + " in a string (escape it)");
      if (c == '\\') {
        ++pos_;
        if (at_end()) return err("unterminated string");
        const char e = t_[pos_++];
        switch (e) {
          case '"': s += '"'; break;
          case '\\': s += '\\'; break;
          case '/': s += '/'; break;
          case 'b': s += '\b'; break;
          case 'f': s += '\f'; break;
          case 'n': s += '\n'; break;
          case 'r': s += '\r'; break;
          case 't': s += '\t'; break;
          case 'u': {
            std::uint32_t cp = 0;
            if (!hex4(&cp)) return err("\\u must be followed by 4 hex digits");
            if (cp >= 0xdc00 && cp <= 0xdfff) return err("lone low surrogate \\u" + detail::text::quote(t_.substr(pos_ - 4, 4)));
            if (cp >= 0xd800 && cp <= 0xdbff) {
              std::uint32_t lo = 0;
              if (t_.compare(pos_, 2, "\\u") != 0) return err("high surrogate not followed by a \\u low surrogate");
              pos_ += 2;
              if (!hex4(&lo) || lo < 0xdc00 || lo > 0xdfff) return err("high surrogate not followed by a low surrogate");
              cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            put_utf8(&s, cp);
            break;
          }
          default:
            --pos_;
            return err("invalid escape \\" + detail::text::quote(&t_[pos_], 1));
        }
        continue;
      }
      if (c < 0x80) {
        s += static_cast<char>(c);
        ++pos_;
        continue;
      }
      // UTF-8: well-formed sequences only (no overlongs, surrogates or > U+10FFFF).
      std::size_t len = 0;
      std::uint32_t cp = 0, min = 0;
      if ((c & 0xe0) == 0xc0) { len = 2; cp = c & 0x1fu; min = 0x80; }
      else if ((c & 0xf0) == 0xe0) { len = 3; cp = c & 0x0fu; min = 0x800; }
      else if ((c & 0xf8) == 0xf0) { len = 4; cp = c & 0x07u; min = 0x10000; }
      else return err("invalid UTF-8 byte " + detail::text::quote(&t_[pos_], 1));
      if (t_.size() - pos_ < len) return err("truncated UTF-8 sequence");
      for (std::size_t k = 1; k < len; ++k) {
        const auto cc = static_cast<unsigned char>(t_[pos_ + k]);
        if ((cc & 0xc0) != 0x80) return err("invalid UTF-8 sequence");
        cp = (cp << 6) | (cc & 0x3fu);
      }
      if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return err("invalid UTF-8 sequence");
      s.append(t_, pos_, len);
      pos_ += len;
    }
  }

  status number(json* out) {
    const std::size_t start = pos_;
    auto digit = [&] { return !at_end() && t_[pos_] >= '0' && t_[pos_] <= '9'; };
    if (peek() == '-') ++pos_;
    if (!digit()) return err("expected a digit");
    if (t_[pos_] == '0') {
      ++pos_;
      if (digit()) return err("number with a leading zero");
    } else {
      while (digit()) ++pos_;
    }
    bool integer = true;
    if (peek() == '.') {
      integer = false;
      ++pos_;
      if (!digit()) return err("expected a digit after '.'");
      while (digit()) ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      integer = false;
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!digit()) return err("expected a digit in the exponent");
      while (digit()) ++pos_;
    }
    const char* b = t_.data() + start;
    const char* e = t_.data() + pos_;
    const bool negative_zero = integer && pos_ - start == 2 && b[0] == '-' && b[1] == '0';
    if (integer && !negative_zero) {
      std::int64_t v = 0;
      if (!detail::text::parse_int64(b, e, &v)) {
        pos_ = start;
        return err("integer " + std::string(b, e) + " does not fit in 64 bits");
      }
      *out = json::make_integer(v);
      return {};
    }
    double d = 0.0;
    if (!detail::text::parse_real(b, e, &d)) {
      pos_ = start;
      return err("number " + detail::text::quote(std::string(b, e)) + " is out of the range of a double");
    }
    *out = json::make_real(d);
    return {};
  }

  const std::string& t_;
  const std::string& src_;
  std::size_t pos_ = 0;
  std::size_t line_ = 1;
  std::size_t line_start_ = 0;
};

/// Parses a JSON text; `source` names it in errors (e.g. the path).
inline status try_parse_json(const std::string& text, const std::string& source, json* out) {
  return json_parser(text, source).parse(out);
}
inline json parse_json(const std::string& text, const std::string& source) {
  json v;
  detail::throw_if(try_parse_json(text, source, &v));
  return v;
}

/// Layout of the writer. The default is Python's json.dump(v, indent=4,
/// separators=(',', ':')) with ensure_ascii=True, AMCT's own layout.
struct json_style {
  int indent = 4;                     ///< spaces per level; < 0: everything on one line
  bool space_after_colon = false;     ///< "key": value instead of "key":value
  bool inline_scalar_arrays = false;  ///< arrays of numbers/strings/bools on one line: [1, 2]
  bool ensure_ascii = true;           ///< non-ASCII as \uXXXX (Python's default)
  bool final_newline = false;         ///< end the text with '\n'
};

namespace detail {
inline status json_escape(const std::string& s, bool ensure_ascii, std::string* out) {
  static const char hex[] = "0123456789abcdef";
  auto u4 = [&](std::uint32_t v) {
    *out += "\\u";
    for (int k = 3; k >= 0; --k) *out += hex[(v >> (4 * k)) & 15u];
  };
  *out += '"';
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"': *out += "\\\""; break;
        case '\\': *out += "\\\\"; break;
        case '\n': *out += "\\n"; break;
        case '\r': *out += "\\r"; break;
        case '\t': *out += "\\t"; break;
        case '\b': *out += "\\b"; break;
        case '\f': *out += "\\f"; break;
        default:
          if (c < 0x20 || (c == 0x7f && ensure_ascii)) u4(c);
          else *out += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    std::size_t len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    std::uint32_t cp = len == 2 ? (c & 0x1fu) : len == 3 ? (c & 0x0fu) : (c & 0x07u);
    bool ok = len != 0 && s.size() - i >= len;
    for (std::size_t k = 1; ok && k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      ok = (cc & 0xc0) == 0x80;
      cp = (cp << 6) | (cc & 0x3fu);
    }
    const std::uint32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    if (!ok || cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return {errc::invalid_argument, "json writer: string " + text::quote(s) + " is not valid UTF-8"};
    if (!ensure_ascii) {
      out->append(s, i, len);
    } else if (cp < 0x10000) {
      u4(cp);
    } else {
      u4(0xd800 + ((cp - 0x10000) >> 10));
      u4(0xdc00 + ((cp - 0x10000) & 0x3ff));
    }
    i += len;
  }
  *out += '"';
  return {};
}

inline status json_write(const json& v, const json_style& st, int level, std::string* out) {
  auto newline = [&](int lvl) {
    if (st.indent < 0) return;
    *out += '\n';
    out->append(static_cast<std::size_t>(st.indent) * static_cast<std::size_t>(lvl), ' ');
  };
  switch (v.type()) {
    case json::kind::null: *out += "null"; return {};
    case json::kind::boolean: *out += v.get_bool() ? "true" : "false"; return {};
    case json::kind::integer: *out += std::to_string(v.get_integer()); return {};
    case json::kind::real: {
      const double d = v.get_number();
      if (!std::isfinite(d)) return {errc::invalid_argument, "json writer: number " + std::to_string(d) + " is not finite"};
      *out += v.is_single() ? text::format_python_repr(static_cast<float>(d)) : text::format_python_repr(d);
      return {};
    }
    case json::kind::string: return json_escape(v.get_string(), st.ensure_ascii, out);
    case json::kind::array: {
      const auto& el = v.elements();
      if (el.empty()) {
        *out += "[]";
        return {};
      }
      bool scalars = st.inline_scalar_arrays;
      for (const auto& e : el)
        if (e.is_array() || e.is_object()) scalars = false;
      *out += '[';
      for (std::size_t i = 0; i < el.size(); ++i) {
        if (i) *out += scalars ? ", " : ",";
        if (!scalars) newline(level + 1);
        const status s = json_write(el[i], st, level + 1, out);
        if (!s.ok()) return s;
      }
      if (!scalars) newline(level);
      *out += ']';
      return {};
    }
    case json::kind::object: {
      const auto& m = v.members();
      if (m.empty()) {
        *out += "{}";
        return {};
      }
      *out += '{';
      for (std::size_t i = 0; i < m.size(); ++i) {
        if (i) *out += ',';
        newline(level + 1);
        status s = json_escape(m[i].key, st.ensure_ascii, out);
        if (!s.ok()) return s;
        *out += st.space_after_colon ? ": " : ":";
        s = json_write(m[i].value, st, level + 1, out);
        if (!s.ok()) return s;
      }
      newline(level);
      *out += '}';
      return {};
    }
  }
  return {};
}
}  // namespace detail

/// Writes a value; fails (invalid_argument) on a non-finite number or a string that is
/// not valid UTF-8.
inline status try_write_json(const json& v, std::string* out, const json_style& style = {}) {
  std::string s;
  const status st = detail::json_write(v, style, 0, &s);
  if (!st.ok()) return st;
  if (style.final_newline) s += '\n';
  *out = std::move(s);
  return {};
}
inline std::string write_json(const json& v, const json_style& style = {}) {
  std::string s;
  detail::throw_if(try_write_json(v, &s, style));
  return s;
}

inline status try_read_json_file(const std::string& path, json* out) {
  std::string text;
  const status s = detail::text::read_file(path, &text);
  if (!s.ok()) return s;
  return try_parse_json(text, path, out);
}
inline json read_json_file(const std::string& path) {
  json v;
  detail::throw_if(try_read_json_file(path, &v));
  return v;
}
inline status try_write_json_file(const std::string& path, const json& v, const json_style& style = {}) {
  std::string text;
  const status s = try_write_json(v, &text, style);
  if (!s.ok()) return s;
  return detail::text::write_file(path, text);
}
inline void write_json_file(const std::string& path, const json& v, const json_style& style = {}) {
  detail::throw_if(try_write_json_file(path, v, style));
}

QLIB_NAMESPACE_END
