// AMCT JSON quant config: AMCT's layout round-trips byte for byte, every knob is read
// and checked as AMCT's field.py checks it, unknown keys are named with their line.
#include <qlib/io/amct.hpp>

#include <catch2/catch.hpp>

#include <cstdio>
#include <string>

#include "io/io_test_util.hpp"

using qlib::amct_config;

namespace {
// tests/data/amct/quant_config.json was written by CPython's
// json.dumps(config, indent=4, separators=(',', ':')), as amct.create_quant_config does.
std::string fixture() { return qlib_test::read_bytes(qlib_test::data_dir("amct") + "/quant_config.json"); }
}  // namespace

TEST_CASE("amct config: AMCT's layout is read and written back byte for byte") {
  const std::string text = fixture();
  REQUIRE(!text.empty());
  const amct_config c = qlib::parse_amct_config(text, "quant_config.json");
  CHECK(c.version == 1);
  CHECK(c.batch_num == 2);
  CHECK(c.activation_offset);
  CHECK(c.do_fusion);
  CHECK_FALSE(c.has_weight_offset);
  CHECK(c.skip_fusion_layers == std::vector<std::string>{"bn2"});
  REQUIRE(c.layers.size() == 3);
  const auto* conv1 = c.find("conv1");
  REQUIRE(conv1);
  CHECK(conv1->quant_enable);
  CHECK(conv1->activation.act_algo == qlib::amct_act_algo::ifmr);
  CHECK(conv1->activation.num_bits == 8);
  CHECK(conv1->activation.max_percentile == 0.999999);
  CHECK(conv1->activation.search_range[0] == 0.7);
  CHECK(conv1->activation.search_range[1] == 1.3);
  CHECK(conv1->activation.search_step == 0.01);
  CHECK(conv1->activation.has_asymmetric);
  CHECK(conv1->weight.num_bits == 8);
  CHECK(conv1->weight.channel_wise);
  const auto* fc = c.find("fc");
  REQUIRE(fc);
  CHECK_FALSE(fc->quant_enable);
  CHECK(fc->activation.act_algo == qlib::amct_act_algo::hfmg);
  CHECK(fc->activation.num_of_bins == 2048);
  CHECK(fc->activation.num_bits == 16);
  CHECK(fc->weight.num_bits == 4);
  CHECK_FALSE(fc->weight.channel_wise);
  CHECK(qlib::write_amct_config(c) == text);
  // Queries.
  CHECK(c.quantized("conv1"));
  CHECK_FALSE(c.quantized("fc"));
  CHECK(c.quantized("unlisted"));
  CHECK(c.layer("unlisted").activation.num_bits == 8);
  CHECK(c.activation_asymmetric("conv1"));
  CHECK_FALSE(c.activation_asymmetric("fc"));
  CHECK(c.activation_asymmetric("layer1.0.conv2"));  // follows activation_offset
}

TEST_CASE("amct config: defaults, optional keys and the skip_layers extension") {
  const amct_config c = qlib::parse_amct_config(
      "{\"batch_num\": 4, \"activation_offset\": false, \"weight_offset\": false, \"joint_quant\": true,"
      " \"skip_layers\": [\"head\"], \"conv\": {\"activation_quant_params\": {\"num_of_bins\": 8192}}}",
      "c.json");
  CHECK(c.batch_num == 4);
  CHECK(c.has_weight_offset);
  CHECK(c.has_joint_quant);
  CHECK(c.joint_quant);
  CHECK_FALSE(c.quantized("head"));
  const auto* conv = c.find("conv");
  REQUIRE(conv);
  CHECK(conv->activation.act_algo == qlib::amct_act_algo::hfmg);  // inferred from num_of_bins
  CHECK(conv->activation.num_of_bins == 8192);
  CHECK(conv->weight.num_bits == 8);
  CHECK_FALSE(c.activation_asymmetric("conv"));
  const std::string text = qlib::write_amct_config(c);
  const amct_config back = qlib::parse_amct_config(text, "w.json");
  CHECK(qlib::write_amct_config(back) == text);
  CHECK(back.skip_layers == c.skip_layers);
  CHECK(text.find("\"joint_quant\":true,\n    \"weight_offset\":false") != std::string::npos);
  // An empty config is valid: every layer quantized with the defaults.
  const amct_config empty = qlib::parse_amct_config("{}", "e.json");
  CHECK(empty.layers.empty());
  CHECK(empty.quantized("x"));
}

TEST_CASE("amct config: every bad key or value is a parse_error naming it and its line") {
  struct bad {
    std::string text;
    const char* what;
  };
  auto layer = [](const std::string& act, const std::string& wts = "{}") {
    return "{\n\"conv1\": {\n\"activation_quant_params\": " + act + ",\n\"weight_quant_params\": " + wts + "}}";
  };
  const bad cases[] = {
      {"[]", "c.json:1:1: AMCT config: expected an object"},
      {"{\"version\": 2}", "c.json:1:13: version = 2 is out of range [1, 1]"},
      {"{\"batch_num\": 0}", "batch_num = 0 is out of range"},
      {"{\"batch_num\": 1.0}", "batch_num: expected an integer"},
      {"{\"activation_offset\": 1}", "activation_offset: expected true or false"},
      {"{\"weight_offset\": true}", "weight_offset must be false"},
      {"{\"skip_fusion_layers\": [\"a\", 1]}", "skip_fusion_layers[1]: expected a string"},
      {"{\"skip_layers\": [\"a\", \"a\"]}", "skip_layers lists 'a' twice"},
      {"{\"skip_layers\": \"a\"}", "skip_layers: expected an array of strings"},
      {"{\n\"bath_num\": 1}", "c.json:2:1: AMCT config: unknown key 'bath_num'"},
      {"{\"fakequant_precision_mode\": \"DEFAULT\"}", "fakequant_precision_mode is not supported"},
      {"{\"conv1\": {\"quant_enable\": \"yes\"}}", "conv1.quant_enable: expected true or false"},
      {"{\"conv1\": {\n\"quant\": true}}", "c.json:2:1: conv1: unknown key 'quant'"},
      {"{\"conv1\": {\"dmq_balancer_param\": 0.5}}", "DMQ balancer is not supported"},
      {"{\"conv1\": {\"activation_quant_params\": []}}", "conv1.activation_quant_params: expected an object"},
      {layer("{\"num_bits\": 6}"), "c.json:3:41: conv1.activation_quant_params.num_bits = 6 is not one of {4, 8, 16}"},
      {layer("{\"max_percentile\": 0.5}"), "max_percentile = 0.5 is not in (0.5, 1]"},
      {layer("{\"min_percentile\": 1.01}"), "min_percentile = 1.01 is not in (0.5, 1]"},
      {layer("{\"search_range\": [0.7]}"), "search_range: expected [start, end]"},
      {layer("{\"search_range\": [0, 1]}"), "search_range[0] must be > 0"},
      {layer("{\"search_range\": [1.3, 0.7]}"), "search_range[0] must be <"},
      {layer("{\"search_range\": [0.7, \"x\"]}"), "search_range[1]: expected a number"},
      {layer("{\"search_step\": 0}"), "search_step must be > 0"},
      {layer("{\"search_step\": 0.7}"), "search_step must be <= search_range[1] - search_range[0]"},
      {layer("{\"act_algo\": \"kl\"}"), "act_algo = 'kl' is not 'ifmr' or 'hfmg'"},
      {layer("{\"num_of_bins\": 1000}"), "num_of_bins = 1000 is not one of {1024, 2048, 4096, 8192}"},
      {layer("{\"num_of_bins\": 1024, \"search_step\": 0.01}"), "cannot appear together"},
      {layer("{\"act_algo\": \"hfmg\", \"max_percentile\": 0.9}"), "cannot appear together"},
      {layer("{\"act_algo\": \"ifmr\", \"num_of_bins\": 1024}"), "cannot appear together"},
      {layer("{\"asymmetric\": 0}"), "asymmetric: expected true or false"},
      {layer("{\"colour\": 1}"), "conv1.activation_quant_params: unknown key 'colour'"},
      {layer("{}", "{\"num_bits\": 5}"), "weight_quant_params.num_bits = 5 is not one of {4, 6, 7, 8}"},
      {layer("{}", "{\"wts_algo\": \"ada_quantize\"}"), "'ada_quantize' is not supported by qlib"},
      {layer("{}", "{\"wts_algo\": \"other\"}"), "wts_algo = 'other' is not 'arq_quantize'"},
      {layer("{}", "{\"num_iteration\": 10}"), "ada_quantize's knob is not supported"},
      {layer("{}", "{\"channel_wise\": null}"), "channel_wise: expected true or false"},
      {layer("{}", "{\"x\": 1}"), "conv1.weight_quant_params: unknown key 'x'"},
      {"{\"a\": 1,}", "c.json:1:9: trailing comma"},
  };
  for (const auto& b : cases) {
    INFO(b.text);
    amct_config c;
    c.batch_num = 99;
    const qlib::status s = qlib::try_parse_amct_config(b.text, "c.json", &c);
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == qlib::errc::parse_error);
    CHECK_THAT(s.message(), Catch::StartsWith("c.json:") && Catch::Contains(b.what));
    CHECK(c.batch_num == 99);
  }
}

TEST_CASE("amct config: the writer refuses values the reader would reject") {
  auto rejects = [](const amct_config& c, const char* what) {
    std::string out;
    const qlib::status s = qlib::try_write_amct_config(c, &out);
    CHECK(s.code() == qlib::errc::invalid_argument);
    CHECK_THAT(s.message(), Catch::StartsWith("AMCT config: ") && Catch::Contains(what));
  };
  amct_config c;
  qlib::amct_layer_config l;
  l.name = "conv";
  c.layers = {l};
  l.activation.num_bits = 5;
  c.layers.push_back(l);
  c.layers[1].name = "conv2";
  rejects(c, "conv2.activation_quant_params.num_bits = 5");
  c.layers.pop_back();
  c.layers.push_back(c.layers[0]);
  rejects(c, "'conv' listed twice");
  c.layers.pop_back();
  c.layers[0].name = "batch_num";
  rejects(c, "collides with a global key");
  c.layers[0].name = "conv";
  c.layers[0].activation.search_step = 0.9;
  rejects(c, "search_step must be <=");
  c.layers[0].activation.search_step = 0.01;
  c.batch_num = 0;
  rejects(c, "batch_num = 0");
  c.batch_num = 1;
  c.has_weight_offset = true;
  c.weight_offset = true;
  rejects(c, "weight_offset must be false");
  c.weight_offset = false;
  c.skip_fusion_layers = {"a", "a"};
  rejects(c, "twice");
  c.skip_fusion_layers.clear();
  std::string out;
  CHECK(qlib::try_write_amct_config(c, &out).ok());
  // Files.
  const std::string path = qlib_test::temp_path("cfg.json");
  qlib::write_amct_config_file(path, c);
  CHECK(qlib::read_amct_config_file(path).layers.size() == 1);
  qlib_test::write_bytes(path, "{\n\"version\": 3}");
  CHECK_THAT(qlib::try_read_amct_config_file(path, &c).message(), Catch::StartsWith(path + ":2:12:"));
  std::remove(path.c_str());
  CHECK(qlib::try_read_amct_config_file(path, &c).code() == qlib::errc::io_error);
}
