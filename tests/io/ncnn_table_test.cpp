// ncnn int8 table: ncnn2table's own bytes ("%f "), qlib's exact shortest format, byte-exact
// round trips of both, and every malformed line named.
#include <qlib/io/ncnn_table.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "io/io_test_util.hpp"
#include "test_data.hpp"

using qlib::ncnn_table;

namespace {
/// Slow reference: ncnn2table's QuantNet::save_table, with printf itself.
std::string ncnn2table_reference(const ncnn_table& t) {
  std::string out;
  char buf[512];
  for (const auto& e : t.entries) {
    std::snprintf(buf, sizeof(buf), "%s ", e.key().c_str());
    out += buf;
    for (float s : e.scales) {
      std::snprintf(buf, sizeof(buf), "%f ", static_cast<double>(s));
      out += buf;
    }
    out += "\n";
  }
  return out;
}

ncnn_table random_table(std::uint64_t seed) {
  ncnn_table t;
  int k = 0;
  for (auto d : qlib_test::all_dists()) {
    const auto x = qlib_test::sample<float>(d, 64, seed + static_cast<std::uint64_t>(k));
    std::vector<float> absmax(1 + static_cast<std::size_t>(k) % 8);
    for (std::size_t c = 0; c < absmax.size(); ++c) absmax[c] = std::fabs(x[c]) * 3.0f;
    t.add_weight("conv" + std::to_string(k), absmax);
    float m = 0.0f;
    for (float v : x) m = std::fmax(m, std::fabs(v));
    t.add_activation("conv" + std::to_string(k), m);
    ++k;
  }
  return t;
}
}  // namespace

TEST_CASE("ncnn table: scales are 127 / threshold, 1 for an all-zero channel") {
  CHECK(qlib::ncnn_scale_from_threshold(2.0f) == 63.5f);
  CHECK(qlib::ncnn_scale_from_threshold(0.0f) == 1.0f);
  CHECK(qlib::ncnn_scale_from_threshold(2.0f, 31.0f) == 15.5f);
  CHECK_THROWS_AS(qlib::ncnn_scale_from_threshold(-1.0f), qlib::error);
  CHECK_THROWS_AS(qlib::ncnn_scale_from_threshold(NAN), qlib::error);
  CHECK_THROWS_AS(qlib::ncnn_scale_from_threshold(1e-45f), qlib::error);  // 127 / 1e-45 overflows
  ncnn_table t;
  t.add_weight_result("conv1", qlib::make_result(std::vector<float>{-0.5f, -2.0f}, std::vector<float>{0.25f, 1.0f},
                                                 qlib::qspec::tensorrt_weight_int8(), 0));
  t.add_activation_result("conv1", qlib::make_result(-4.0f, 2.0f, qlib::qspec::tensorrt_int8()));
  REQUIRE(t.find("conv1", 0));
  CHECK(t.find("conv1", 0)->scales == std::vector<float>{254.0f, 63.5f});
  REQUIRE(t.find("conv1"));
  CHECK(t.find("conv1")->scales == std::vector<float>{31.75f});
  CHECK(t.find("conv1", 1) == nullptr);
  CHECK(qlib::write_ncnn_table(t) == "conv1_param_0 254 63.5 \nconv1 31.75 \n");
  CHECK_THROWS_AS(t.add_activation_result("x", qlib::make_result(std::vector<float>{-1.f}, std::vector<float>{1.f},
                                                                  qlib::qspec::tensorrt_int8(), 0)),
                  qlib::error);
}

TEST_CASE("ncnn table: fixed6 reproduces ncnn2table's bytes, and they round-trip") {
  ncnn_table t = random_table(3);
  t.format = qlib::ncnn_number_format::fixed6;
  const std::string ncnn = ncnn2table_reference(t);
  CHECK(qlib::write_ncnn_table(t) == ncnn);
  const ncnn_table back = qlib::parse_ncnn_table(ncnn, "ncnn.table");
  CHECK(back.format == qlib::ncnn_number_format::fixed6);
  CHECK_FALSE(back.crlf);
  CHECK(qlib::write_ncnn_table(back) == ncnn);
  REQUIRE(back.entries.size() == t.entries.size());
  for (std::size_t i = 0; i < t.entries.size(); ++i) {
    CHECK(back.entries[i].layer == t.entries[i].layer);
    CHECK(back.entries[i].param == t.entries[i].param);
    REQUIRE(back.entries[i].scales.size() == t.entries[i].scales.size());
    for (std::size_t c = 0; c < t.entries[i].scales.size(); ++c)  // %f keeps 6 decimals only
      CHECK(std::fabs(back.entries[i].scales[c] - t.entries[i].scales[c]) <= 5e-7f + 1e-6f * t.entries[i].scales[c]);
  }
}

TEST_CASE("ncnn table: the shortest format round-trips values and bytes exactly") {
  ncnn_table t = random_table(5);
  std::mt19937 rng(6);
  std::uniform_int_distribution<std::uint32_t> bits(0x00000001u, 0x7f7fffffu);
  qlib::ncnn_table_entry e{"mha", 3, {}};
  for (int i = 0; i < 500; ++i) {
    const std::uint32_t b = bits(rng);
    float f;
    std::memcpy(&f, &b, 4);
    e.scales.push_back(f);
  }
  t.entries.push_back(e);
  const std::string text = qlib::write_ncnn_table(t);
  const ncnn_table back = qlib::parse_ncnn_table(text, "t");
  CHECK(back.format == qlib::ncnn_number_format::shortest);
  REQUIRE(back.entries.size() == t.entries.size());
  for (std::size_t i = 0; i < t.entries.size(); ++i) {
    CHECK(back.entries[i].key() == t.entries[i].key());
    CHECK(back.entries[i].scales == t.entries[i].scales);
  }
  CHECK(back.find("mha", 3) != nullptr);
  CHECK(qlib::write_ncnn_table(back) == text);
  // CRLF is recorded, an empty table is empty text.
  ncnn_table crlf = qlib::parse_ncnn_table("a_param_0 1.5 2 \r\na 3 \r\n", "c");
  CHECK(crlf.crlf);
  CHECK(qlib::write_ncnn_table(crlf) == "a_param_0 1.5 2 \r\na 3 \r\n");
  CHECK(qlib::write_ncnn_table(ncnn_table{}).empty());
  CHECK(qlib::parse_ncnn_table("", "e").entries.empty());
}

TEST_CASE("ncnn table: the reader tolerates spacing and trailing blank lines; keys split at _param_N") {
  const ncnn_table t = qlib::parse_ncnn_table("  conv_param_12   1 2\nfc_param_x 4\nx_param_01 5\n_param_0 6\n\n \n", "s");
  REQUIRE(t.entries.size() == 4);
  CHECK(t.entries[0].layer == "conv");
  CHECK(t.entries[0].param == 12);
  CHECK(t.entries[1].layer == "fc_param_x");
  CHECK_FALSE(t.entries[1].is_weight());
  CHECK(t.entries[2].layer == "x_param_01");
  CHECK(t.entries[3].layer == "_param_0");
  CHECK(t.entries[3].param == -1);
}

TEST_CASE("ncnn table: every malformed line is a parse_error naming the line") {
  struct bad {
    std::string text;
    const char* where;
    const char* what;
  };
  const bad cases[] = {
      {"conv1_param_0 1 2\nconv1\n", "t:2:", "entry 'conv1' has no scales"},
      {"conv1 abc\n", "t:1:", "scale 0 'abc' is not a decimal number"},
      {"conv1 1 2e\n", "t:1:", "scale 1 '2e' is not a decimal number"},
      {"conv1 inf\n", "t:1:", "'inf' is not a decimal number"},
      {"conv1 0x10\n", "t:1:", "is not a decimal number"},
      {"conv1 1e39\n", "t:1:", "'1e39' is not finite and > 0"},
      {"conv1 0.000000\n", "t:1:", "is not finite and > 0"},
      {"conv1 -1\n", "t:1:", "is not finite and > 0"},
      {"conv1\t1\n", "t:1:", "holds a tab"},
      {"a 1\na 2\n", "t:2:", "key 'a' is listed twice"},
      {"a 1\n\nb 2\n", "t:3:", "blank line 2"},
      {"a 1\r\nb 2\n", "t:2:", "mixed line endings"},
      {std::string(256, 'k') + " 1\n", "t:1:", "longer than 255 characters"},
  };
  for (const auto& b : cases) {
    INFO(b.text);
    ncnn_table t;
    t.crlf = true;
    const qlib::status s = qlib::try_parse_ncnn_table(b.text, "t", &t);
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == qlib::errc::parse_error);
    CHECK_THAT(s.message(), Catch::StartsWith(b.where) && Catch::Contains(b.what));
    CHECK(t.crlf);
  }
}

TEST_CASE("ncnn table: the writer refuses what would not read back") {
  auto rejects = [](const ncnn_table& t, const char* what) {
    std::string out;
    const qlib::status s = qlib::try_write_ncnn_table(t, &out);
    CHECK(s.code() == qlib::errc::invalid_argument);
    CHECK_THAT(s.message(), Catch::Contains(what));
  };
  ncnn_table t;
  t.entries = {{"", -1, {1.0f}}};
  rejects(t, "empty or holds white space");
  t.entries = {{"a b", -1, {1.0f}}};
  rejects(t, "white space");
  t.entries = {{"a", -1, {}}};
  rejects(t, "no scales");
  t.entries = {{"a", -1, {1.0f}}, {"a", -1, {2.0f}}};
  rejects(t, "listed twice");
  t.entries = {{"a", -1, {0.0f}}};
  rejects(t, "is not finite and > 0");
  t.entries = {{"a", 0, {NAN}}};
  rejects(t, "is not finite and > 0");
  t.entries = {{"x_param_1", -1, {1.0f}}};
  rejects(t, "does not read back");
  t.entries = {{std::string(250, 'k'), 0, {1.0f}}};
  rejects(t, "longer than 255");
  t.entries = {{"a", -1, {1e-7f}}};
  t.format = qlib::ncnn_number_format::fixed6;
  rejects(t, "prints as 0 with %f");
  t.format = qlib::ncnn_number_format::shortest;
  std::string out;
  CHECK(qlib::try_write_ncnn_table(t, &out).ok());
  CHECK(out == "a 1e-07 \n");
  // Files.
  const std::string path = qlib_test::temp_path("t.table");
  qlib::write_ncnn_table_file(path, t);
  CHECK(qlib::read_ncnn_table_file(path).entries.size() == 1);
  qlib_test::write_bytes(path, "a 1\nb\n");
  CHECK_THAT(qlib::try_read_ncnn_table_file(path, &t).message(), Catch::StartsWith(path + ":2:"));
  std::remove(path.c_str());
  CHECK(qlib::try_read_ncnn_table_file(path, &t).code() == qlib::errc::io_error);
}
