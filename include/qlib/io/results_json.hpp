// qlib's own result file: one JSON object per calibrated tensor, the plain data of
// qlib::calib_result<float> plus the tensor's name and the method that produced it.
//
//   {
//     "version": 1,
//     "tensors": [
//       {
//         "name": "conv1.weight", "method": "minmax",
//         "bits": 8, "mode": "symmetric", "signed": true, "narrow_range": true,
//         "convention": "tensorrt", "axis": 0,
//         "clip_min": [-0.5, -0.25], "clip_max": [0.5, 0.25],
//         "scale": [0.003937008, 0.001968504], "zero_point": [0, 0]
//       }
//     ]
//   }
//
// (written one key per line, two-space indent). "mode" is the qscheme ("symmetric" or
// "affine"), "convention" the qconvention, "axis" -1 for per-tensor. Floats are written as
// the shortest decimal that reads back to the same float32, so a result survives a round
// trip exactly. The reader checks everything the writer guarantees: known keys only (an
// unknown key is an error naming it and its line), matching array lengths, scales finite
// and > 0, clip_min <= clip_max, zero points on the grid, tensor names unique.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

#include "../config.hpp"
#include "../core/tensor_view.hpp"
#include "../detail/json_read.hpp"
#include "../detail/text.hpp"
#include "../observer/result.hpp"
#include "json.hpp"

QLIB_NAMESPACE_BEGIN

/// One tensor's result and where it came from.
struct result_entry {
  std::string name;    ///< the tensor (e.g. the ONNX tensor name)
  std::string method;  ///< the observer / search that produced it ("minmax", "entropy", ...)
  calib_result<float> result;
};

constexpr int results_json_version = 1;

namespace detail {
/// Checks one entry; `who` prefixes messages. Returns an empty string when valid.
inline std::string check_result_entry(const result_entry& e) {
  const calib_result<float>& r = e.result;
  const status s = r.spec.validate();
  if (!s.ok()) return s.message();
  if (e.method.empty()) return "empty method";
  if (r.axis < -1 || r.axis >= shape_t::max_rank) return "axis " + std::to_string(r.axis) + " is out of range [-1, 7]";
  const std::size_t n = r.scale.size();
  if (n == 0) return "no scale";
  if (r.zero_point.size() != n || r.clip_min.size() != n || r.clip_max.size() != n)
    return "arrays differ in length: scale " + std::to_string(n) + ", zero_point " + std::to_string(r.zero_point.size()) +
           ", clip_min " + std::to_string(r.clip_min.size()) + ", clip_max " + std::to_string(r.clip_max.size());
  if (r.axis == -1 && n != 1) return "per-tensor (axis -1) with " + std::to_string(n) + " scales";
  for (std::size_t c = 0; c < n; ++c) {
    const std::string at = "[" + std::to_string(c) + "]";
    if (!std::isfinite(r.scale[c]) || !(r.scale[c] > 0.0f)) return "scale" + at + " = " + std::to_string(r.scale[c]) + " is not finite and > 0";
    if (!std::isfinite(r.clip_min[c]) || !std::isfinite(r.clip_max[c])) return "clip range" + at + " is not finite";
    if (r.clip_min[c] > r.clip_max[c]) return "clip_min" + at + " > clip_max" + at;
    if (r.zero_point[c] < r.spec.qmin() || r.zero_point[c] > r.spec.qmax())
      return "zero_point" + at + " = " + std::to_string(r.zero_point[c]) + " is off the grid [" +
             std::to_string(r.spec.qmin()) + ", " + std::to_string(r.spec.qmax()) + "]";
  }
  return {};
}

inline json results_float_array(const std::vector<float>& v) {
  json a = json::make_array();
  for (float x : v) a.push_back(json::make_float(x));
  return a;
}
}  // namespace detail

/// The result file's JSON value.
inline status try_results_to_json(const std::vector<result_entry>& entries, json* out) {
  json tensors = json::make_array();
  std::unordered_set<std::string> seen;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const result_entry& e = entries[i];
    const std::string who = "results json: tensor " + std::to_string(i) + " " + detail::text::quote(e.name) + ": ";
    if (e.name.empty()) return {errc::invalid_argument, who + "empty name"};
    if (!seen.insert(e.name).second) return {errc::invalid_argument, who + "listed twice"};
    const std::string bad = detail::check_result_entry(e);
    if (!bad.empty()) return {errc::invalid_argument, who + bad};
    const calib_result<float>& r = e.result;
    json t = json::make_object();
    t.set("name", json::make_string(e.name));
    t.set("method", json::make_string(e.method));
    t.set("bits", json::make_integer(r.spec.bits));
    t.set("mode", json::make_string(to_string(r.spec.scheme)));
    t.set("signed", json::make_bool(r.spec.is_signed));
    t.set("narrow_range", json::make_bool(r.spec.narrow_range));
    t.set("convention", json::make_string(to_string(r.spec.convention)));
    t.set("axis", json::make_integer(r.axis));
    t.set("clip_min", detail::results_float_array(r.clip_min));
    t.set("clip_max", detail::results_float_array(r.clip_max));
    t.set("scale", detail::results_float_array(r.scale));
    json zp = json::make_array();
    for (std::int32_t z : r.zero_point) zp.push_back(json::make_integer(z));
    t.set("zero_point", std::move(zp));
    tensors.push_back(std::move(t));
  }
  json root = json::make_object();
  root.set("version", json::make_integer(results_json_version));
  root.set("tensors", std::move(tensors));
  *out = std::move(root);
  return {};
}

/// The layout of result files: two-space indent, "key": value, numbers arrays on one line.
inline json_style results_json_style() {
  json_style s;
  s.indent = 2;
  s.space_after_colon = true;
  s.inline_scalar_arrays = true;
  s.ensure_ascii = false;
  s.final_newline = true;
  return s;
}

/// Writes entries as a result file; invalid_argument (naming the tensor) for an entry that
/// violates the checks listed at the top of this file.
inline status try_write_results_json(const std::vector<result_entry>& entries, std::string* out) {
  json root;
  const status s = try_results_to_json(entries, &root);
  if (!s.ok()) return s;
  return try_write_json(root, out, results_json_style());
}
inline std::string write_results_json(const std::vector<result_entry>& entries) {
  std::string s;
  detail::throw_if(try_write_results_json(entries, &s));
  return s;
}

/// Reads the entries of a parsed result file; `source` names the file in errors.
inline status try_results_from_json(const json& root, const std::string& source, std::vector<result_entry>* out) {
  namespace jr = detail::json_read;
  if (!root.is_object()) return jr::wrong_type(source, root, "results", "an object");
  const json* tensors = nullptr;
  for (const auto& m : root.members()) {
    if (m.key == "version") {
      std::int64_t v = 0;
      status s = jr::get_int(source, m.value, "version", results_json_version, results_json_version, &v);
      if (!s.ok()) return s;
    } else if (m.key == "tensors") {
      tensors = &m.value;
    } else {
      return jr::at_key(source, m, "unknown key " + detail::text::quote(m.key) + " (expected 'version', 'tensors')");
    }
  }
  if (!tensors) return jr::at(source, root, "results: missing key 'tensors'");
  if (!tensors->is_array()) return jr::wrong_type(source, *tensors, "tensors", "an array");
  std::vector<result_entry> entries;
  std::unordered_set<std::string> seen;
  for (std::size_t i = 0; i < tensors->elements().size(); ++i) {
    const json& t = tensors->elements()[i];
    std::string path = "tensors[" + std::to_string(i) + "]";
    if (!t.is_object()) return jr::wrong_type(source, t, path, "an object");
    result_entry e;
    calib_result<float>& r = e.result;
    static const char* const keys[] = {"name", "method", "bits", "mode", "signed", "narrow_range", "convention",
                                       "axis", "clip_min", "clip_max", "scale", "zero_point"};
    const json* field[12] = {};
    for (const auto& m : t.members()) {
      int k = -1;
      for (int j = 0; j < 12; ++j)
        if (m.key == keys[j]) k = j;
      if (k < 0)
        return jr::at_key(source, m, path + ": unknown key " + detail::text::quote(m.key) +
                                         " (expected name, method, bits, mode, signed, narrow_range, convention, "
                                         "axis, clip_min, clip_max, scale, zero_point)");
      field[k] = &m.value;
    }
    for (int j = 0; j < 12; ++j)
      if (!field[j]) return jr::at(source, t, path + ": missing key '" + keys[j] + "'");
    status s = jr::get_string(source, *field[0], path + ".name", &e.name);
    if (!s.ok()) return s;
    path += " (" + detail::text::quote(e.name) + ")";
    std::int64_t bits = 0, axis = 0;
    std::string mode, conv;
    if (!(s = jr::get_string(source, *field[1], path + ".method", &e.method)).ok()) return s;
    if (!(s = jr::get_int(source, *field[2], path + ".bits", 2, 16, &bits)).ok()) return s;
    if (!(s = jr::get_string(source, *field[3], path + ".mode", &mode)).ok()) return s;
    if (!(s = jr::get_bool(source, *field[4], path + ".signed", &r.spec.is_signed)).ok()) return s;
    if (!(s = jr::get_bool(source, *field[5], path + ".narrow_range", &r.spec.narrow_range)).ok()) return s;
    if (!(s = jr::get_string(source, *field[6], path + ".convention", &conv)).ok()) return s;
    if (!(s = jr::get_int(source, *field[7], path + ".axis", -1, shape_t::max_rank - 1, &axis)).ok()) return s;
    if (!(s = jr::get_float_array(source, *field[8], path + ".clip_min", &r.clip_min)).ok()) return s;
    if (!(s = jr::get_float_array(source, *field[9], path + ".clip_max", &r.clip_max)).ok()) return s;
    if (!(s = jr::get_float_array(source, *field[10], path + ".scale", &r.scale)).ok()) return s;
    if (!(s = jr::get_int32_array(source, *field[11], path + ".zero_point", &r.zero_point)).ok()) return s;
    r.spec.bits = static_cast<int>(bits);
    r.axis = static_cast<int>(axis);
    if (mode == "symmetric") r.spec.scheme = qscheme::symmetric;
    else if (mode == "affine") r.spec.scheme = qscheme::affine;
    else return jr::at(source, *field[3], path + ".mode " + detail::text::quote(mode) + " is not 'symmetric' or 'affine'");
    if (conv == "tensorrt") r.spec.convention = qconvention::tensorrt;
    else if (conv == "torch") r.spec.convention = qconvention::torch;
    else if (conv == "amct") r.spec.convention = qconvention::amct;
    else return jr::at(source, *field[6], path + ".convention " + detail::text::quote(conv) + " is not 'tensorrt', 'torch' or 'amct'");
    if (e.name.empty()) return jr::at(source, *field[0], path + ": empty name");
    const std::string bad = detail::check_result_entry(e);
    if (!bad.empty()) return jr::at(source, t, path + ": " + bad);
    if (!seen.insert(e.name).second) return jr::at(source, *field[0], path + ": tensor listed twice");
    entries.push_back(std::move(e));
  }
  *out = std::move(entries);
  return {};
}

/// Parses a result file's text.
inline status try_parse_results_json(const std::string& text, const std::string& source, std::vector<result_entry>* out) {
  json root;
  const status s = try_parse_json(text, source, &root);
  if (!s.ok()) return s;
  return try_results_from_json(root, source, out);
}
inline std::vector<result_entry> parse_results_json(const std::string& text, const std::string& source) {
  std::vector<result_entry> v;
  detail::throw_if(try_parse_results_json(text, source, &v));
  return v;
}

inline status try_read_results_json_file(const std::string& path, std::vector<result_entry>* out) {
  std::string text;
  const status s = detail::text::read_file(path, &text);
  if (!s.ok()) return s;
  return try_parse_results_json(text, path, out);
}
inline std::vector<result_entry> read_results_json_file(const std::string& path) {
  std::vector<result_entry> v;
  detail::throw_if(try_read_results_json_file(path, &v));
  return v;
}
inline status try_write_results_json_file(const std::string& path, const std::vector<result_entry>& entries) {
  std::string text;
  const status s = try_write_results_json(entries, &text);
  if (!s.ok()) return s;
  return detail::text::write_file(path, text);
}
inline void write_results_json_file(const std::string& path, const std::vector<result_entry>& entries) {
  detail::throw_if(try_write_results_json_file(path, entries));
}

QLIB_NAMESPACE_END
