// Internal: typed reads of JSON values for the schema readers (io/results_json.hpp,
// io/amct_config.hpp). Each failure is a parse_error "source:line:column: path: what",
// the position being the value's (or the key's) in the parsed text.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../io/json.hpp"
#include "text.hpp"

QLIB_NAMESPACE_BEGIN
namespace detail {
namespace json_read {

inline status at(const std::string& source, const json& v, const std::string& what) {
  return text::error_at_column(source, v.line(), v.column(), what);
}
inline status at_key(const std::string& source, const json_member& m, const std::string& what) {
  return text::error_at_column(source, m.line, m.column, what);
}
inline status wrong_type(const std::string& source, const json& v, const std::string& path, const char* expected) {
  return at(source, v, path + ": expected " + expected + ", got " + v.type_name());
}

inline status get_bool(const std::string& source, const json& v, const std::string& path, bool* out) {
  if (!v.is_bool()) return wrong_type(source, v, path, "true or false");
  *out = v.get_bool();
  return {};
}

/// An integer literal in [lo, hi].
inline status get_int(const std::string& source, const json& v, const std::string& path, std::int64_t lo,
                      std::int64_t hi, std::int64_t* out) {
  if (!v.is_integer()) return wrong_type(source, v, path, "an integer");
  const std::int64_t i = v.get_integer();
  if (i < lo || i > hi)
    return at(source, v, path + " = " + std::to_string(i) + " is out of range [" + std::to_string(lo) + ", " +
                             std::to_string(hi) + "]");
  *out = i;
  return {};
}

/// Any number (integer or real) as a double.
inline status get_number(const std::string& source, const json& v, const std::string& path, double* out) {
  if (!v.is_number()) return wrong_type(source, v, path, "a number");
  *out = v.get_number();
  return {};
}

inline status get_string(const std::string& source, const json& v, const std::string& path, std::string* out) {
  if (!v.is_string()) return wrong_type(source, v, path, "a string");
  *out = v.get_string();
  return {};
}

inline status get_string_array(const std::string& source, const json& v, const std::string& path,
                               std::vector<std::string>* out) {
  if (!v.is_array()) return wrong_type(source, v, path, "an array of strings");
  std::vector<std::string> r;
  for (std::size_t i = 0; i < v.elements().size(); ++i) {
    const json& e = v.elements()[i];
    if (!e.is_string()) return wrong_type(source, e, path + "[" + std::to_string(i) + "]", "a string");
    r.push_back(e.get_string());
  }
  *out = std::move(r);
  return {};
}

/// An array of numbers as floats (each the float nearest to its decimal text).
inline status get_float_array(const std::string& source, const json& v, const std::string& path,
                              std::vector<float>* out) {
  if (!v.is_array()) return wrong_type(source, v, path, "an array of numbers");
  std::vector<float> r;
  r.reserve(v.elements().size());
  for (std::size_t i = 0; i < v.elements().size(); ++i) {
    const json& e = v.elements()[i];
    if (!e.is_number()) return wrong_type(source, e, path + "[" + std::to_string(i) + "]", "a number");
    const float f = e.get_float();
    if (!std::isfinite(f))
      return at(source, e, path + "[" + std::to_string(i) + "] does not fit in a float");
    r.push_back(f);
  }
  *out = std::move(r);
  return {};
}

inline status get_int32_array(const std::string& source, const json& v, const std::string& path,
                              std::vector<std::int32_t>* out) {
  if (!v.is_array()) return wrong_type(source, v, path, "an array of integers");
  std::vector<std::int32_t> r;
  r.reserve(v.elements().size());
  for (std::size_t i = 0; i < v.elements().size(); ++i) {
    std::int64_t x = 0;
    const status s = get_int(source, v.elements()[i], path + "[" + std::to_string(i) + "]", INT32_MIN, INT32_MAX, &x);
    if (!s.ok()) return s;
    r.push_back(static_cast<std::int32_t>(x));
  }
  *out = std::move(r);
  return {};
}

}  // namespace json_read
}  // namespace detail
QLIB_NAMESPACE_END
