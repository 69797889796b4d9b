// Ascend AMCT's JSON quantization config (what amct.create_quant_config writes and
// amct.quantize_model reads): reader and writer.
//
// Layout (hicann/amct amct_pytorch/.../common/config/config_base.py and field.py; the
// hiascend.com AMCT documentation): global knobs at the top level, then one object per
// quantizable layer, keyed by the layer's name:
//
//   {
//       "version":1,
//       "batch_num":1,
//       "activation_offset":true,
//       "do_fusion":true,
//       "skip_fusion_layers":[],
//       "conv1":{
//           "quant_enable":true,
//           "activation_quant_params":{
//               "num_bits":8,
//               "max_percentile":0.999999,
//               "min_percentile":0.999999,
//               "search_range":[
//                   0.7,
//                   1.3
//               ],
//               "search_step":0.01,
//               "act_algo":"ifmr"
//           },
//           "weight_quant_params":{
//               "num_bits":8,
//               "wts_algo":"arq_quantize",
//               "channel_wise":true
//           }
//       }
//   }
//
// Checks, as AMCT's field.py makes them (each a parse_error naming the file, line, column
// and key path): version == 1; batch_num >= 1; activation num_bits in {4, 8, 16}; weight
// num_bits in {4, 6, 7, 8}; max/min_percentile in (0.5, 1]; search_range [a, b] with
// 0 < a < b; 0 < search_step <= b - a; num_of_bins in {1024, 2048, 4096, 8192};
// act_algo "ifmr" or "hfmg", and IFMR keys (percentiles, search_range, search_step) never
// together with HFMG's num_of_bins; wts_algo "arq_quantize" (AMCT's "ada_quantize" is not
// implemented by qlib: an error). Integers must be JSON integers, booleans true/false.
// An unknown key is an error naming the key and its line; so is a known AMCT key that
// qlib does not model (joint_quant is kept; dmq_balancer_param, fakequant_precision_mode
// and the ada_quantize knobs are refused by name).
//
// qlib extension: a top-level "skip_layers" list (AMCT's simplified .cfg config has it; its
// JSON expresses the same with "quant_enable":false). A layer the config does not list is
// quantized with AMCT's defaults, as create_quant_config would have filled them in.
//
// Writer: AMCT's own layout (json.dump(indent=4, separators=(',', ':')), keys in the order
// of AMCT's field tree, layers sorted by name; optional keys written when present). A
// config written by create_quant_config therefore round-trips byte for byte.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <unordered_set>
#include <vector>

#include "../config.hpp"
#include "../detail/json_read.hpp"
#include "../detail/text.hpp"
#include "json.hpp"

QLIB_NAMESPACE_BEGIN

enum class amct_act_algo : std::uint8_t { ifmr, hfmg };

/// activation_quant_params (defaults: AMCT's).
struct amct_activation_params {
  amct_act_algo act_algo = amct_act_algo::ifmr;
  int num_bits = 8;                        ///< 4, 8 or 16
  double max_percentile = 0.999999;        ///< IFMR, in (0.5, 1]
  double min_percentile = 0.999999;        ///< IFMR, in (0.5, 1]
  std::array<double, 2> search_range{{0.7, 1.3}};  ///< IFMR, 0 < a < b
  double search_step = 0.01;               ///< IFMR, in (0, b - a]
  int num_of_bins = 4096;                  ///< HFMG: 1024, 2048, 4096 or 8192
  bool has_asymmetric = false;             ///< "asymmetric" given for this layer
  bool asymmetric = true;                  ///< with offset (used when has_asymmetric)
};

/// weight_quant_params: ARQ.
struct amct_weight_params {
  int num_bits = 8;          ///< 4, 6, 7 or 8
  bool channel_wise = true;  ///< one scale per output channel
};

/// One layer's entry.
struct amct_layer_config {
  std::string name;
  bool quant_enable = true;
  amct_activation_params activation;
  amct_weight_params weight;
};

/// A whole config.
struct amct_config {
  int version = 1;
  int batch_num = 1;
  bool activation_offset = true;   ///< activations asymmetric unless a layer says otherwise
  bool has_joint_quant = false;    ///< "joint_quant" present (AMCT writes it on some products)
  bool joint_quant = false;
  bool has_weight_offset = false;  ///< "weight_offset" present
  bool weight_offset = false;      ///< must be false: ARQ is symmetric
  bool do_fusion = true;
  std::vector<std::string> skip_fusion_layers;
  std::vector<std::string> skip_layers;  ///< qlib extension (see the file comment)
  std::vector<amct_layer_config> layers;

  /// The layer's entry, or nullptr when the config does not list it.
  const amct_layer_config* find(const std::string& name) const noexcept {
    for (const auto& l : layers)
      if (l.name == name) return &l;
    return nullptr;
  }
  /// Whether the layer is quantized: not in skip_layers and quant_enable (an unlisted
  /// layer is quantized with the defaults).
  bool quantized(const std::string& name) const {
    if (std::find(skip_layers.begin(), skip_layers.end(), name) != skip_layers.end()) return false;
    const amct_layer_config* l = find(name);
    return !l || l->quant_enable;
  }
  /// The layer's settings (its entry, or AMCT's defaults for an unlisted layer).
  amct_layer_config layer(const std::string& name) const {
    if (const amct_layer_config* l = find(name)) return *l;
    amct_layer_config d;
    d.name = name;
    return d;
  }
  /// Whether the layer's activations are quantized with an offset (asymmetric).
  bool activation_asymmetric(const std::string& name) const {
    const amct_layer_config l = layer(name);
    return l.activation.has_asymmetric ? l.activation.asymmetric : activation_offset;
  }
};

inline const char* to_string(amct_act_algo a) noexcept { return a == amct_act_algo::ifmr ? "ifmr" : "hfmg"; }

namespace detail {

struct amct_config_reader {
  const std::string& src;

  status unknown(const json_member& m, const std::string& where, const char* expected) const {
    return json_read::at_key(src, m, where + ": unknown key " + text::quote(m.key) + " (expected " + expected + ")");
  }
  static bool one_of(std::int64_t v, std::initializer_list<std::int64_t> set) {
    for (auto x : set)
      if (x == v) return true;
    return false;
  }
  status int_in(const json& v, const std::string& path, std::initializer_list<std::int64_t> set, const char* set_text,
                int* out) const {
    std::int64_t x = 0;
    status s = json_read::get_int(src, v, path, INT32_MIN, INT32_MAX, &x);
    if (!s.ok()) return s;
    if (!one_of(x, set)) return json_read::at(src, v, path + " = " + std::to_string(x) + " is not one of " + set_text);
    *out = static_cast<int>(x);
    return {};
  }

  status activation(const json& v, const std::string& path, amct_activation_params* out) const {
    if (!v.is_object()) return json_read::wrong_type(src, v, path, "an object");
    amct_activation_params p;
    bool ifmr_keys = false, hfmg_keys = false, have_algo = false, have_step = false;
    const json* step_value = nullptr;
    status s;
    for (const auto& m : v.members()) {
      const std::string k = path + "." + m.key;
      if (m.key == "num_bits") {
        s = int_in(m.value, k, {4, 8, 16}, "{4, 8, 16}", &p.num_bits);
      } else if (m.key == "max_percentile" || m.key == "min_percentile") {
        ifmr_keys = true;
        double x = 0;
        s = json_read::get_number(src, m.value, k, &x);
        if (s.ok() && !(x > 0.5 && x <= 1.0))
          s = json_read::at(src, m.value, k + " = " + text::format_python_repr(x) + " is not in (0.5, 1]");
        (m.key == "max_percentile" ? p.max_percentile : p.min_percentile) = x;
      } else if (m.key == "search_range") {
        ifmr_keys = true;
        if (!m.value.is_array() || m.value.elements().size() != 2)
          s = json_read::wrong_type(src, m.value, k, "[start, end]");
        for (std::size_t i = 0; s.ok() && i < 2; ++i)
          s = json_read::get_number(src, m.value.elements()[i], k + "[" + std::to_string(i) + "]", &p.search_range[i]);
        if (s.ok() && !(p.search_range[0] > 0.0))
          s = json_read::at(src, m.value, k + "[0] must be > 0");
        if (s.ok() && !(p.search_range[0] < p.search_range[1]))
          s = json_read::at(src, m.value, k + "[0] must be < " + k + "[1]");
      } else if (m.key == "search_step") {
        ifmr_keys = have_step = true;
        step_value = &m.value;
        s = json_read::get_number(src, m.value, k, &p.search_step);
        if (s.ok() && !(p.search_step > 0.0)) s = json_read::at(src, m.value, k + " must be > 0");
      } else if (m.key == "act_algo") {
        have_algo = true;
        std::string a;
        s = json_read::get_string(src, m.value, k, &a);
        if (s.ok()) {
          if (a == "ifmr") p.act_algo = amct_act_algo::ifmr;
          else if (a == "hfmg") p.act_algo = amct_act_algo::hfmg;
          else s = json_read::at(src, m.value, k + " = " + text::quote(a) + " is not 'ifmr' or 'hfmg'");
        }
      } else if (m.key == "asymmetric") {
        p.has_asymmetric = true;
        s = json_read::get_bool(src, m.value, k, &p.asymmetric);
      } else if (m.key == "num_of_bins") {
        hfmg_keys = true;
        s = int_in(m.value, k, {1024, 2048, 4096, 8192}, "{1024, 2048, 4096, 8192}", &p.num_of_bins);
      } else {
        s = unknown(m, path, "num_bits, max_percentile, min_percentile, search_range, search_step, act_algo, "
                             "asymmetric, num_of_bins");
      }
      if (!s.ok()) return s;
    }
    // AMCT (ActQuantParamsField._check_params): the algorithm follows act_algo, else the
    // keys given; IFMR's and HFMG's keys never mix.
    if (!have_algo && hfmg_keys) p.act_algo = amct_act_algo::hfmg;
    if ((ifmr_keys && (hfmg_keys || p.act_algo == amct_act_algo::hfmg)) ||
        (hfmg_keys && p.act_algo == amct_act_algo::ifmr))
      return json_read::at(src, v, path + ": IFMR keys (max_percentile, min_percentile, search_range, search_step) "
                                          "and HFMG keys (num_of_bins, act_algo 'hfmg') cannot appear together");
    if (have_step && p.search_step > p.search_range[1] - p.search_range[0])
      return json_read::at(src, *step_value, path + ".search_step must be <= search_range[1] - search_range[0]");
    *out = p;
    return {};
  }

  status weight(const json& v, const std::string& path, amct_weight_params* out) const {
    if (!v.is_object()) return json_read::wrong_type(src, v, path, "an object");
    amct_weight_params p;
    status s;
    for (const auto& m : v.members()) {
      const std::string k = path + "." + m.key;
      if (m.key == "num_bits") {
        s = int_in(m.value, k, {4, 6, 7, 8}, "{4, 6, 7, 8}", &p.num_bits);
      } else if (m.key == "channel_wise") {
        s = json_read::get_bool(src, m.value, k, &p.channel_wise);
      } else if (m.key == "wts_algo") {
        std::string a;
        s = json_read::get_string(src, m.value, k, &a);
        if (s.ok() && a == "ada_quantize")
          s = json_read::at(src, m.value, k + " = 'ada_quantize' is not supported by qlib (only 'arq_quantize')");
        else if (s.ok() && a != "arq_quantize")
          s = json_read::at(src, m.value, k + " = " + text::quote(a) + " is not 'arq_quantize'");
      } else if (m.key == "num_iteration" || m.key == "reg_param" || m.key == "warm_start" || m.key == "beta_range") {
        s = json_read::at_key(src, m, k + ": ada_quantize's knob is not supported by qlib");
      } else {
        s = unknown(m, path, "num_bits, wts_algo, channel_wise");
      }
      if (!s.ok()) return s;
    }
    *out = p;
    return {};
  }

  status layer(const json_member& lm, amct_layer_config* out) const {
    amct_layer_config l;
    l.name = lm.key;
    const std::string path = lm.key;
    status s;
    for (const auto& m : lm.value.members()) {
      const std::string k = path + "." + m.key;
      if (m.key == "quant_enable") s = json_read::get_bool(src, m.value, k, &l.quant_enable);
      else if (m.key == "activation_quant_params") s = activation(m.value, k, &l.activation);
      else if (m.key == "weight_quant_params") s = weight(m.value, k, &l.weight);
      else if (m.key == "dmq_balancer_param") s = json_read::at_key(src, m, k + ": AMCT's DMQ balancer is not supported by qlib");
      else s = unknown(m, path, "quant_enable, activation_quant_params, weight_quant_params");
      if (!s.ok()) return s;
    }
    *out = std::move(l);
    return {};
  }

  status config(const json& root, amct_config* out) const {
    if (!root.is_object()) return json_read::wrong_type(src, root, "AMCT config", "an object");
    amct_config c;
    status s;
    for (const auto& m : root.members()) {
      const std::string& k = m.key;
      std::int64_t x = 0;
      if (k == "version") {
        s = json_read::get_int(src, m.value, k, 1, 1, &x);
        c.version = 1;
      } else if (k == "batch_num") {
        s = json_read::get_int(src, m.value, k, 1, INT32_MAX, &x);
        c.batch_num = static_cast<int>(x);
      } else if (k == "activation_offset") {
        s = json_read::get_bool(src, m.value, k, &c.activation_offset);
      } else if (k == "weight_offset") {
        c.has_weight_offset = true;
        s = json_read::get_bool(src, m.value, k, &c.weight_offset);
        if (s.ok() && c.weight_offset)
          s = json_read::at(src, m.value, "weight_offset must be false: ARQ quantizes weights symmetrically");
      } else if (k == "joint_quant") {
        c.has_joint_quant = true;
        s = json_read::get_bool(src, m.value, k, &c.joint_quant);
      } else if (k == "do_fusion") {
        s = json_read::get_bool(src, m.value, k, &c.do_fusion);
      } else if (k == "skip_fusion_layers" || k == "skip_layers") {
        std::vector<std::string> names;
        s = json_read::get_string_array(src, m.value, k, &names);
        std::unordered_set<std::string> seen;
        for (std::size_t i = 0; s.ok() && i < names.size(); ++i)
          if (!seen.insert(names[i]).second)
            s = json_read::at(src, m.value.elements()[i], k + " lists " + text::quote(names[i]) + " twice");
        (k == "skip_layers" ? c.skip_layers : c.skip_fusion_layers) = std::move(names);
      } else if (k == "fakequant_precision_mode") {
        s = json_read::at_key(src, m, "fakequant_precision_mode is not supported by qlib");
      } else if (m.value.is_object()) {
        amct_layer_config l;
        s = layer(m, &l);
        c.layers.push_back(std::move(l));
      } else {
        s = unknown(m, "AMCT config",
                    "version, batch_num, activation_offset, weight_offset, joint_quant, do_fusion, "
                    "skip_fusion_layers, skip_layers, or a layer name mapped to an object");
      }
      if (!s.ok()) return s;
    }
    *out = std::move(c);
    return {};
  }
};

inline json amct_number_array(const double* v, std::size_t n) {
  json a = json::make_array();
  for (std::size_t i = 0; i < n; ++i) a.push_back(json::make_real(v[i]));
  return a;
}
inline json amct_string_array(const std::vector<std::string>& v) {
  json a = json::make_array();
  for (const auto& s : v) a.push_back(json::make_string(s));
  return a;
}

}  // namespace detail

/// Parses a config's JSON text; `source` names it in errors.
inline status try_parse_amct_config(const std::string& text, const std::string& source, amct_config* out) {
  json root;
  const status s = try_parse_json(text, source, &root);
  if (!s.ok()) return s;
  return detail::amct_config_reader{source}.config(root, out);
}
inline amct_config parse_amct_config(const std::string& text, const std::string& source) {
  amct_config c;
  detail::throw_if(try_parse_amct_config(text, source, &c));
  return c;
}

/// The config as JSON, in AMCT's key order. invalid_argument for values the reader
/// would reject (naming the layer and key).
inline status try_amct_config_to_json(const amct_config& c, json* out) {
  // Validate through the reader's own checks: build, then re-read.
  auto bad = [](const std::string& what) { return status(errc::invalid_argument, "AMCT config: " + what); };
  json root = json::make_object();
  root.set("version", json::make_integer(c.version));
  root.set("batch_num", json::make_integer(c.batch_num));
  root.set("activation_offset", json::make_bool(c.activation_offset));
  if (c.has_joint_quant) root.set("joint_quant", json::make_bool(c.joint_quant));
  if (c.has_weight_offset) root.set("weight_offset", json::make_bool(c.weight_offset));
  root.set("do_fusion", json::make_bool(c.do_fusion));
  root.set("skip_fusion_layers", detail::amct_string_array(c.skip_fusion_layers));
  if (!c.skip_layers.empty()) root.set("skip_layers", detail::amct_string_array(c.skip_layers));
  std::vector<const amct_layer_config*> layers;
  for (const auto& l : c.layers) layers.push_back(&l);
  std::sort(layers.begin(), layers.end(), [](const amct_layer_config* a, const amct_layer_config* b) { return a->name < b->name; });
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const amct_layer_config& l = *layers[i];
    if (i > 0 && layers[i - 1]->name == l.name) return bad("layer " + detail::text::quote(l.name) + " listed twice");
    if (root.find(l.name)) return bad("layer name " + detail::text::quote(l.name) + " collides with a global key");
    const amct_activation_params& a = l.activation;
    json act = json::make_object();
    act.set("num_bits", json::make_integer(a.num_bits));
    if (a.act_algo == amct_act_algo::ifmr) {
      act.set("max_percentile", json::make_real(a.max_percentile));
      act.set("min_percentile", json::make_real(a.min_percentile));
      act.set("search_range", detail::amct_number_array(a.search_range.data(), 2));
      act.set("search_step", json::make_real(a.search_step));
    }
    act.set("act_algo", json::make_string(to_string(a.act_algo)));
    if (a.has_asymmetric) act.set("asymmetric", json::make_bool(a.asymmetric));
    if (a.act_algo == amct_act_algo::hfmg) act.set("num_of_bins", json::make_integer(a.num_of_bins));
    json wts = json::make_object();
    wts.set("num_bits", json::make_integer(l.weight.num_bits));
    wts.set("wts_algo", json::make_string("arq_quantize"));
    wts.set("channel_wise", json::make_bool(l.weight.channel_wise));
    json entry = json::make_object();
    entry.set("quant_enable", json::make_bool(l.quant_enable));
    entry.set("activation_quant_params", std::move(act));
    entry.set("weight_quant_params", std::move(wts));
    root.set(l.name, std::move(entry));
  }
  // Every value must pass the reader's checks (ranges, sets, duplicates).
  amct_config check;
  const status s = detail::amct_config_reader{"AMCT config"}.config(root, &check);
  if (!s.ok()) {
    // The reader's message names a position that does not exist for built values; keep the path.
    std::string m = s.message();
    const std::string prefix = "AMCT config:0:0: ";
    if (m.compare(0, prefix.size(), prefix) == 0) m = m.substr(prefix.size());
    return bad(m);
  }
  *out = std::move(root);
  return {};
}

inline status try_write_amct_config(const amct_config& c, std::string* out) {
  json root;
  const status s = try_amct_config_to_json(c, &root);
  if (!s.ok()) return s;
  return try_write_json(root, out);
}
inline std::string write_amct_config(const amct_config& c) {
  std::string s;
  detail::throw_if(try_write_amct_config(c, &s));
  return s;
}

inline status try_read_amct_config_file(const std::string& path, amct_config* out) {
  std::string text;
  const status s = detail::text::read_file(path, &text);
  if (!s.ok()) return s;
  return try_parse_amct_config(text, path, out);
}
inline amct_config read_amct_config_file(const std::string& path) {
  amct_config c;
  detail::throw_if(try_read_amct_config_file(path, &c));
  return c;
}
inline status try_write_amct_config_file(const std::string& path, const amct_config& c) {
  std::string text;
  const status s = try_write_amct_config(c, &text);
  if (!s.ok()) return s;
  return detail::text::write_file(path, text);
}
inline void write_amct_config_file(const std::string& path, const amct_config& c) {
  detail::throw_if(try_write_amct_config_file(path, c));
}

QLIB_NAMESPACE_END
