// qlib's result file: exact round trips of calib_result<float>, the published layout, and
// every malformed entry named by its path and line.
#include <qlib/io/results_json.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "io/io_test_util.hpp"
#include "test_data.hpp"

using qlib::result_entry;

namespace {
std::vector<result_entry> sample_entries() {
  std::vector<result_entry> v;
  v.push_back({"input", "entropy", qlib::make_result(-2.5f, 6.0f, qlib::qspec::tensorrt_int8())});
  v.push_back({"conv1.weight", "minmax",
               qlib::make_result(std::vector<float>{-0.5f, -0.25f, -0.1f}, std::vector<float>{0.5f, 0.3f, 0.7f},
                                 qlib::qspec::tensorrt_weight_int8(), 0)});
  v.push_back({"relu.out", "hfmg", qlib::make_result(-1.0f, 3.0f, qlib::qspec::amct_activation())});
  v.push_back({"torch.q", "minmax", qlib::make_result(0.0f, 2.0f, qlib::qspec::torch_quint8())});
  return v;
}

void check_same(const std::vector<result_entry>& a, const std::vector<result_entry>& b) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].name == b[i].name);
    CHECK(a[i].method == b[i].method);
    CHECK(a[i].result.clip_min == b[i].result.clip_min);
    CHECK(a[i].result.clip_max == b[i].result.clip_max);
    CHECK(a[i].result.scale == b[i].result.scale);
    CHECK(a[i].result.zero_point == b[i].result.zero_point);
    CHECK(a[i].result.axis == b[i].result.axis);
    CHECK(a[i].result.spec == b[i].result.spec);
  }
}
}  // namespace

TEST_CASE("results json: the layout of a per-tensor entry") {
  std::vector<result_entry> v = {{"x", "minmax", qlib::make_result(-1.0f, 1.27f, qlib::qspec::tensorrt_int8())}};
  CHECK(qlib::write_results_json(v) ==
        "{\n  \"version\": 1,\n  \"tensors\": [\n    {\n      \"name\": \"x\",\n      \"method\": \"minmax\",\n"
        "      \"bits\": 8,\n      \"mode\": \"symmetric\",\n      \"signed\": true,\n      \"narrow_range\": false,\n"
        "      \"convention\": \"tensorrt\",\n      \"axis\": -1,\n      \"clip_min\": [-1.0],\n      \"clip_max\": [1.27],\n"
        "      \"scale\": [0.01],\n      \"zero_point\": [0]\n    }\n  ]\n}\n");
}

TEST_CASE("results json: round trips are exact, on results from every distribution") {
  std::vector<result_entry> v = sample_entries();
  int k = 0;
  for (auto d : qlib_test::all_dists()) {
    const auto x = qlib_test::sample<float>(d, 257, 10 + k);
    std::vector<float> lo(4), hi(4);
    for (std::size_t c = 0; c < 4; ++c) {
      lo[c] = std::fmin(x[c], 0.0f) - 1e-3f * static_cast<float>(c);
      hi[c] = std::fmax(x[c + 4], lo[c]) + 1.0f / 3.0f;
    }
    qlib::qspec s = qlib::qspec::tensorrt_weight_int8();
    s.bits = 4 + (k % 5);
    v.push_back({"t" + std::to_string(k++), "percentile", qlib::make_result(lo, hi, s, 1)});
  }
  const std::string text = qlib::write_results_json(v);
  const auto back = qlib::parse_results_json(text, "r.json");
  check_same(v, back);
  CHECK(qlib::write_results_json(back) == text);
  // Files.
  const std::string path = qlib_test::temp_path("results.json");
  qlib::write_results_json_file(path, v);
  check_same(v, qlib::read_results_json_file(path));
  std::remove(path.c_str());
  // An empty list and a file without "version" (defaults to 1).
  CHECK(qlib::parse_results_json(qlib::write_results_json({}), "e").empty());
  CHECK(qlib::parse_results_json("{\"tensors\": []}", "e").empty());
}

TEST_CASE("results json: malformed files name the tensor, key and line") {
  const std::string good = qlib::write_results_json({sample_entries()[1]});
  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string t = good;
    const auto at = t.find(from);
    REQUIRE(at != std::string::npos);
    return t.replace(at, from.size(), to);
  };
  struct bad {
    std::string text;
    const char* what;
  };
  const bad cases[] = {
      {"[]", "r.json:1:1: results: expected an object"},
      {"{\"tensors\": {}}", "r.json:1:13: tensors: expected an array"},
      {"{}", "missing key 'tensors'"},
      {"{\"version\": 2, \"tensors\": []}", "r.json:1:13: version = 2 is out of range [1, 1]"},
      {"{\"tensors\": [], \"extra\": 1}", "r.json:1:17: unknown key 'extra'"},
      {replaced("\"method\": \"minmax\",", "\"method\": \"minmax\", \"colour\": 1,"), "r.json:6:27: tensors[0]: unknown key 'colour'"},
      {replaced("\"name\": \"conv1.weight\",\n", ""), "tensors[0]: missing key 'name'"},
      {replaced("\"bits\": 8", "\"bits\": 8.0"), "r.json:7:15: tensors[0] ('conv1.weight').bits: expected an integer"},
      {replaced("\"bits\": 8", "\"bits\": 17"), "bits = 17 is out of range [2, 16]"},
      {replaced("\"mode\": \"symmetric\"", "\"mode\": \"sym\""), "mode 'sym' is not 'symmetric' or 'affine'"},
      {replaced("\"convention\": \"tensorrt\"", "\"convention\": \"onnx\""), "convention 'onnx' is not"},
      {replaced("\"signed\": true", "\"signed\": 1"), "signed: expected true or false"},
      {replaced("\"axis\": 0", "\"axis\": 8"), "axis = 8 is out of range"},
      {replaced("\"axis\": 0", "\"axis\": -1"), "per-tensor (axis -1) with 3 scales"},
      {replaced("\"zero_point\": [0, 0, 0]", "\"zero_point\": [0, 0]"), "arrays differ in length"},
      {replaced("\"zero_point\": [0, 0, 0]", "\"zero_point\": [0, 0, 200]"), "zero_point[2] = 200 is off the grid [-127, 127]"},
      {replaced("\"zero_point\": [0, 0, 0]", "\"zero_point\": [0, 0, 4294967296]"), "zero_point[2] = 4294967296 is out of range"},
      {replaced("\"zero_point\": [0, 0, 0]", "\"zero_point\": [0, 0, \"0\"]"), "zero_point[2]: expected an integer"},
      {replaced("\"scale\": [", "\"scale\": [-"), "scale[0] = -0.003937 is not finite and > 0"},
      {replaced("\"scale\": [", "\"scale\": [1e39, "), "scale[0] does not fit in a float"},
      {replaced("\"clip_min\": [-0.5", "\"clip_min\": [0.9"), "clip_min[0] > clip_max[0]"},
      {replaced("\"clip_max\": [", "\"clip_max\": [\"a\", "), "clip_max[0]: expected a number"},
      {replaced("\"scale\": [", "\"scale\": 3, \"x\": ["), "unknown key 'x'"},
      {replaced("\"method\": \"minmax\"", "\"method\": \"\""), "empty method"},
      {replaced("\"name\": \"conv1.weight\"", "\"name\": \"\""), "empty name"},
      {"{\"tensors\": [1]}", "r.json:1:14: tensors[0]: expected an object"},
      {"{\"tensors\": [", "r.json:1:14: unexpected end of input"},
  };
  for (const auto& b : cases) {
    INFO(b.text);
    std::vector<result_entry> out = sample_entries();
    const qlib::status s = qlib::try_parse_results_json(b.text, "r.json", &out);
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == qlib::errc::parse_error);
    CHECK_THAT(s.message(), Catch::StartsWith("r.json:") && Catch::Contains(b.what));
    CHECK(out.size() == 4);
  }
  // A name listed twice.
  const auto dup = qlib::write_results_json({sample_entries()[0]});
  std::string two = dup;
  const std::string obj_start = "    {\n";
  const auto a = two.find(obj_start), e = two.rfind("    }");
  two.insert(e + 5, ",\n" + two.substr(a, e + 5 - a));
  std::vector<result_entry> out;
  const qlib::status s = qlib::try_parse_results_json(two, "r.json", &out);
  CHECK_THAT(s.message(), Catch::Contains("tensor listed twice"));
}

TEST_CASE("results json: the writer refuses invalid entries, naming the tensor") {
  auto rejects = [](std::vector<result_entry> v, const char* what) {
    std::string out;
    const qlib::status s = qlib::try_write_results_json(v, &out);
    CHECK(s.code() == qlib::errc::invalid_argument);
    CHECK_THAT(s.message(), Catch::Contains(what));
  };
  auto e = sample_entries();
  rejects({e[0], e[0]}, "listed twice");
  auto x = e[0];
  x.name = "";
  rejects({x}, "empty name");
  x = e[0];
  x.result.scale[0] = NAN;
  rejects({x}, "'input': scale[0]");
  x = e[0];
  x.result.clip_min[0] = INFINITY;
  rejects({x}, "clip range[0] is not finite");
  x = e[1];
  x.result.zero_point.pop_back();
  rejects({x}, "arrays differ");
  x = e[0];
  x.result.spec.bits = 1;
  rejects({x}, "bits");
  x = e[0];
  x.method.clear();
  rejects({x}, "empty method");
  x = e[0];
  x.result.axis = 9;
  rejects({x}, "axis 9");
  CHECK_THROWS_AS(qlib::write_results_json({e[0], e[0]}), qlib::error);
}
