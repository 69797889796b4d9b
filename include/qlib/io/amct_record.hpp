// Ascend AMCT quantization record file: reader and writer.
//
// The record is AMCT's ScaleOffsetRecord message in protobuf text format
// (hicann/amct, amct_pytorch/.../proto/scale_offset_record_pytorch.proto;
// shared/specs/algorithms.md section 5), one entry per quantized layer:
//
//   record {
//     key: "conv1"
//     value {
//       scale_d: 0.0392
//       offset_d: -128
//       scale_w: 0.0012
//       scale_w: 0.0009
//       offset_w: 0
//       offset_w: 0
//     }
//   }
//
// scale_d (float) / offset_d (int32) quantize the layer's input on AMCT's signed grid;
// scale_w / offset_w repeat once per output channel (offset_w is 0: ARQ is symmetric).
// An entry may carry data factors only (a layer without weights, or a record written from
// activations alone) or weight factors only (weights calibrated on their own, e.g. by
// qlib-calibrate --method arq); has_data tells which, so files round-trip exactly.
//
// Reader: the text-format subset these files use, tolerant of layout: any whitespace and
// line breaks, '#' comments, "value {" or "value: {", single or double quoted keys with C
// escapes (\n \t \" \' \\ \ooo \xhh), floats as "1.5", ".5", "1e-3", "2.5f". Strict on
// content: unknown or unsupported fields (e.g. AMCT's shift_bit, kv_cache_value), an
// empty key, scale_d without offset_d (or the reverse), an entry with neither data nor
// weight factors, a scale_w / offset_w count mismatch, scales that are not finite and > 0,
// offsets outside int32 and layers recorded twice are parse_errors "source:line: what".
//
// Writer: the fixed layout protobuf's TextFormat prints (two-space indent, fields in field
// number order, non-ASCII and control bytes in keys as octal escapes) with floats as
// protobuf prints them: "%.6g" when that reads back to the same float, else "%.9g"
// (protobuf's C++ SimpleFtoa and upb's text encoder, the default backends of the protobuf
// Python package AMCT writes records with). So write(parse(t)) == t for every record qlib
// wrote and every record written through those backends, and parse(write(r)) == r exactly
// for every record r. (Protobuf's pure-Python backend prints floats as repr(); such files
// read fine and are rewritten in the layout above.) Not supported: the "[a, b]" list form
// of repeated fields and string concatenation ("a" "b").
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

#include "../config.hpp"
#include "../detail/text.hpp"

QLIB_NAMESPACE_BEGIN

/// One quantized layer's factors.
struct amct_record_entry {
  std::string key;                     ///< the layer's name
  float scale_d = 1.0f;                ///< input data scale
  std::int32_t offset_d = 0;           ///< input data offset (AMCT's signed grid)
  std::vector<float> scale_w;          ///< weight scale, one per output channel
  std::vector<std::int32_t> offset_w;  ///< weight offset, one per output channel (0)
  bool has_data = true;                ///< scale_d / offset_d present (false: weight factors only)
};

/// A record file: its entries in file order.
struct amct_record {
  std::vector<amct_record_entry> records;
  const amct_record_entry* find(const std::string& key) const noexcept {
    for (const auto& r : records)
      if (r.key == key) return &r;
    return nullptr;
  }
};

namespace detail {

class amct_record_parser {
 public:
  amct_record_parser(const std::string& text, const std::string& source) : t_(text), src_(source) {}

  status parse(amct_record* out) {
    amct_record rec;
    std::unordered_set<std::string> seen;
    status s;
    for (;;) {
      if (!(s = next()).ok()) return s;
      if (tok_.kind == tk::end) break;
      if (tok_.kind != tk::ident || tok_.text != "record") {
        if (tok_.kind == tk::ident && tok_.text == "prune_record")
          return err("'prune_record' is not supported by qlib (only quantization records)");
        return err("expected 'record', got " + describe());
      }
      if (!(s = open_message("record")).ok()) return s;
      const std::size_t record_line = tok_.line;
      amct_record_entry e;
      bool have_key = false, have_value = false;
      for (;;) {
        if (!(s = next()).ok()) return s;
        if (tok_.kind == tk::close) break;
        if (tok_.kind == tk::end) return err("unexpected end of file inside 'record' opened on line " + std::to_string(record_line));
        if (tok_.kind != tk::ident) return err("expected a field name, got " + describe());
        if (tok_.text == "key") {
          if (have_key) return err("record has two 'key' fields");
          if (!(s = expect(tk::colon, "':' after 'key'")).ok()) return s;
          if (!(s = next()).ok()) return s;
          if (tok_.kind != tk::string) return err("key must be a quoted string, got " + describe());
          if (tok_.text.empty()) return err("empty layer key");
          e.key = tok_.text;
          have_key = true;
        } else if (tok_.text == "value") {
          if (have_value) return err("record has two 'value' fields");
          if (!(s = open_message("value")).ok()) return s;
          if (!(s = value(&e)).ok()) return s;
          have_value = true;
        } else if (tok_.text == "kv_cache_value") {
          return err("'kv_cache_value' is not supported by qlib (only layer quantization records)");
        } else {
          return err("unknown field " + text::quote(tok_.text) + " in record (expected 'key', 'value')");
        }
      }
      if (!have_key) return err("record opened on line " + std::to_string(record_line) + " has no key");
      if (!have_value) return err("record " + text::quote(e.key) + " has no value");
      if (!seen.insert(e.key).second) return err("layer " + text::quote(e.key) + " is recorded twice");
      rec.records.push_back(std::move(e));
    }
    *out = std::move(rec);
    return {};
  }

 private:
  enum class tk : std::uint8_t { end, ident, number, string, open, close, colon };
  struct token {
    tk kind = tk::end;
    std::string text;
    std::size_t line = 1;
  };

  status err(const std::string& what) const { return text::error_at_line(src_, tok_.line, what); }
  std::string describe() const {
    switch (tok_.kind) {
      case tk::end: return "end of file";
      case tk::open: return "'{'";
      case tk::close: return "'}'";
      case tk::colon: return "':'";
      case tk::string: return "string " + text::quote(tok_.text);
      default: return text::quote(tok_.text);
    }
  }
  status expect(tk kind, const char* what) {
    const status s = next();
    if (!s.ok()) return s;
    if (tok_.kind != kind) return err(std::string("expected ") + what + ", got " + describe());
    return {};
  }
  /// "name {" or "name: {".
  status open_message(const char* name) {
    status s = next();
    if (!s.ok()) return s;
    if (tok_.kind == tk::colon && !(s = next()).ok()) return s;
    if (tok_.kind != tk::open) return err(std::string("expected '{' after '") + name + "', got " + describe());
    return {};
  }

  status value(amct_record_entry* e) {
    const std::size_t open_line = tok_.line;
    const std::string who = "layer " + text::quote(e->key);
    bool have_sd = false, have_od = false;
    status s;
    for (;;) {
      if (!(s = next()).ok()) return s;
      if (tok_.kind == tk::close) break;
      if (tok_.kind == tk::end) return err("unexpected end of file inside 'value' opened on line " + std::to_string(open_line));
      if (tok_.kind != tk::ident) return err(who + ": expected a field name, got " + describe());
      const std::string field = tok_.text;
      const bool is_sd = field == "scale_d", is_od = field == "offset_d", is_sw = field == "scale_w",
                 is_ow = field == "offset_w";
      if (!is_sd && !is_od && !is_sw && !is_ow) {
        static const char* const amct_only[] = {"shift_bit", "tensor_balance_factor", "skip_fusion", "dst_type",
                                                "act_type", "wts_type", "fakequant_precision_mode", "scale_h",
                                                "offset_h", "scale_r", "offset_r"};
        for (const char* f : amct_only)
          if (field == f) return err(who + ": AMCT field '" + field + "' is not supported by qlib");
        return err(who + ": unknown field " + text::quote(field) + " (expected scale_d, offset_d, scale_w, offset_w)");
      }
      if ((is_sd && have_sd) || (is_od && have_od)) return err(who + ": " + field + " given twice");
      if (!(s = expect(tk::colon, "':' after the field name")).ok()) return s;
      if (!(s = next()).ok()) return s;
      if (tok_.kind != tk::number && tok_.kind != tk::ident)
        return err(who + ": " + field + " needs a number, got " + describe());
      if (is_sd || is_sw) {
        float v = 0.0f;
        if (!(s = parse_scale(who + ": " + field, &v)).ok()) return s;
        if (is_sd) {
          e->scale_d = v;
          have_sd = true;
        } else {
          e->scale_w.push_back(v);
        }
      } else {
        std::int64_t v = 0;
        if (!text::parse_int64(tok_.text.data(), tok_.text.data() + tok_.text.size(), &v) || v < INT32_MIN ||
            v > INT32_MAX)
          return err(who + ": " + field + " " + text::quote(tok_.text) + " is not a decimal int32");
        if (is_od) {
          e->offset_d = static_cast<std::int32_t>(v);
          have_od = true;
        } else {
          e->offset_w.push_back(static_cast<std::int32_t>(v));
        }
      }
    }
    if (have_sd != have_od) return err(who + (have_sd ? ": scale_d without offset_d" : ": offset_d without scale_d"));
    if (!have_sd && e->scale_w.empty() && e->offset_w.empty()) return err(who + ": neither scale_d nor scale_w");
    e->has_data = have_sd;
    if (e->scale_w.size() != e->offset_w.size())
      return err(who + ": " + std::to_string(e->scale_w.size()) + " scale_w but " + std::to_string(e->offset_w.size()) +
                 " offset_w");
    return {};
  }

  /// A text-format float: [-] digits [. digits] [e [+-] digits] [f], or [-] . digits ...
  status parse_scale(const std::string& what, float* out) const {
    std::string t = tok_.text;
    if (!t.empty() && (t.back() == 'f' || t.back() == 'F')) t.pop_back();
    std::size_t i = 0;
    if (i < t.size() && t[i] == '-') ++i;
    std::size_t digits = 0;
    while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i, ++digits;
    if (i < t.size() && t[i] == '.') {
      ++i;
      while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i, ++digits;
    }
    bool ok = digits > 0;
    if (ok && i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
      ++i;
      if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
      std::size_t ed = 0;
      while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i, ++ed;
      ok = ed > 0;
    }
    ok = ok && i == t.size();
    float v = 0.0f;
    if (!ok) return err(what + " " + text::quote(tok_.text) + " is not a number");
    if (!text::parse_real(t.data(), t.data() + t.size(), &v))
      return err(what + " " + text::quote(tok_.text) + " does not fit in a float");
    if (!(v > 0.0f)) return err(what + " " + text::quote(tok_.text) + " is not > 0");
    *out = v;
    return {};
  }

  static bool ident_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
  static bool word_char(char c) { return ident_start(c) || (c >= '0' && c <= '9') || c == '.' || c == '+' || c == '-'; }

  status next() {
    // Skip whitespace and comments, counting lines.
    for (;;) {
      if (pos_ >= t_.size()) {
        tok_ = token{tk::end, "", line_};
        return {};
      }
      const char c = t_[pos_];
      if (c == '\n') {
        ++line_;
        ++pos_;
      } else if (c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f') {
        ++pos_;
      } else if (c == '#') {
        while (pos_ < t_.size() && t_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
    tok_.line = line_;
    tok_.text.clear();
    const char c = t_[pos_];
    if (c == '{' || c == '}' || c == ':') {
      tok_.kind = c == '{' ? tk::open : c == '}' ? tk::close : tk::colon;
      tok_.text = std::string(1, c);
      ++pos_;
      return {};
    }
    if (c == '"' || c == '\'') return string_token(c);
    if (ident_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '+') {
      const std::size_t start = pos_;
      while (pos_ < t_.size() && word_char(t_[pos_])) ++pos_;
      tok_.text = t_.substr(start, pos_ - start);
      tok_.kind = ident_start(c) ? tk::ident : tk::number;
      return {};
    }
    return err("unexpected character " + text::quote(&t_[pos_], 1));
  }

  status string_token(char q) {
    ++pos_;
    std::string s;
    for (;;) {
      if (pos_ >= t_.size() || t_[pos_] == '\n') return err("unterminated string");
      const char c = t_[pos_++];
      if (c == q) break;
      if (c != '\\') {
        s += c;
        continue;
      }
      if (pos_ >= t_.size()) return err("unterminated string");
      const char e = t_[pos_++];
      switch (e) {
        case 'n': s += '\n'; break;
        case 'r': s += '\r'; break;
        case 't': s += '\t'; break;
        case 'a': s += '\a'; break;
        case 'b': s += '\b'; break;
        case 'f': s += '\f'; break;
        case 'v': s += '\v'; break;
        case '\\': s += '\\'; break;
        case '\'': s += '\''; break;
        case '"': s += '"'; break;
        case '?': s += '?'; break;
        case 'x': {
          int v = 0, n = 0;
          for (; n < 2 && pos_ < t_.size(); ++n, ++pos_) {
            const char h = t_[pos_];
            const int d = (h >= '0' && h <= '9') ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                                                        : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
            if (d < 0) break;
            v = v * 16 + d;
          }
          if (n == 0) return err("\\x needs hex digits");
          s += static_cast<char>(v);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            int v = e - '0', n = 1;
            for (; n < 3 && pos_ < t_.size() && t_[pos_] >= '0' && t_[pos_] <= '7'; ++n) v = v * 8 + (t_[pos_++] - '0');
            if (v > 255) return err("octal escape out of range");
            s += static_cast<char>(v);
            break;
          }
          return err("invalid escape \\" + text::quote(&e, 1));
      }
    }
    tok_.kind = tk::string;
    tok_.text = std::move(s);
    return {};
  }

  const std::string& t_;
  const std::string& src_;
  std::size_t pos_ = 0;
  std::size_t line_ = 1;
  token tok_;
};

/// protobuf's CEscape of a string field (as_utf8=False): \n \r \t \" \' \\ and octal for
/// every other byte outside printable ASCII.
inline std::string amct_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '"': out += "\\\""; break;
      case '\'': out += "\\'"; break;
      case '\\': out += "\\\\"; break;
      default:
        if (c >= 0x20 && c < 0x7f) {
          out += static_cast<char>(c);
        } else {
          out += '\\';
          out += static_cast<char>('0' + (c >> 6));
          out += static_cast<char>('0' + ((c >> 3) & 7));
          out += static_cast<char>('0' + (c & 7));
        }
    }
  }
  return out;
}

inline const char* amct_bad_scale(float s) noexcept {
  if (!std::isfinite(s)) return "is not finite";
  if (!(s > 0.0f)) return "is not > 0";
  return nullptr;
}

}  // namespace detail

/// Parses a record file's text; `source` names it in errors.
inline status try_parse_amct_record(const std::string& text, const std::string& source, amct_record* out) {
  return detail::amct_record_parser(text, source).parse(out);
}
inline amct_record parse_amct_record(const std::string& text, const std::string& source) {
  amct_record r;
  detail::throw_if(try_parse_amct_record(text, source, &r));
  return r;
}

/// Writes a record file in protobuf's layout. invalid_argument (naming the layer) for an
/// empty key, a key listed twice, neither data nor weight factors, a scale_w / offset_w count mismatch, or a
/// scale that is not finite and > 0.
inline status try_write_amct_record(const amct_record& record, std::string* out) {
  std::string t;
  std::unordered_set<std::string> seen;
  for (const auto& e : record.records) {
    const std::string who = "AMCT record: layer " + detail::text::quote(e.key) + ": ";
    if (e.key.empty()) return {errc::invalid_argument, "AMCT record: empty layer key"};
    if (!seen.insert(e.key).second) return {errc::invalid_argument, who + "recorded twice"};
    if (!e.has_data && e.scale_w.empty()) return {errc::invalid_argument, who + "neither data nor weight factors"};
    if (e.scale_w.size() != e.offset_w.size())
      return {errc::invalid_argument, who + std::to_string(e.scale_w.size()) + " scale_w but " +
                                          std::to_string(e.offset_w.size()) + " offset_w"};
    if (const char* why = e.has_data ? detail::amct_bad_scale(e.scale_d) : nullptr)
      return {errc::invalid_argument, who + "scale_d " + std::to_string(e.scale_d) + " " + why};
    for (std::size_t c = 0; c < e.scale_w.size(); ++c)
      if (const char* why = detail::amct_bad_scale(e.scale_w[c]))
        return {errc::invalid_argument, who + "scale_w[" + std::to_string(c) + "] " + std::to_string(e.scale_w[c]) + " " + why};
    t += "record {\n  key: \"" + detail::amct_escape(e.key) + "\"\n  value {\n";
    if (e.has_data) {
      t += "    scale_d: " + detail::text::format_protobuf_float(e.scale_d) + "\n";
      t += "    offset_d: " + std::to_string(e.offset_d) + "\n";
    }
    for (float s : e.scale_w) t += "    scale_w: " + detail::text::format_protobuf_float(s) + "\n";
    for (std::int32_t o : e.offset_w) t += "    offset_w: " + std::to_string(o) + "\n";
    t += "  }\n}\n";
  }
  *out = std::move(t);
  return {};
}
inline std::string write_amct_record(const amct_record& record) {
  std::string s;
  detail::throw_if(try_write_amct_record(record, &s));
  return s;
}

inline status try_read_amct_record_file(const std::string& path, amct_record* out) {
  std::string text;
  const status s = detail::text::read_file(path, &text);
  if (!s.ok()) return s;
  return try_parse_amct_record(text, path, out);
}
inline amct_record read_amct_record_file(const std::string& path) {
  amct_record r;
  detail::throw_if(try_read_amct_record_file(path, &r));
  return r;
}
inline status try_write_amct_record_file(const std::string& path, const amct_record& record) {
  std::string text;
  const status s = try_write_amct_record(record, &text);
  if (!s.ok()) return s;
  return detail::text::write_file(path, text);
}
inline void write_amct_record_file(const std::string& path, const amct_record& record) {
  detail::throw_if(try_write_amct_record_file(path, record));
}

QLIB_NAMESPACE_END
