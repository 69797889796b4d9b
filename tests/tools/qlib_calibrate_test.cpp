// qlib-calibrate follows its contract: every method and format, results equal to the
// library's own observers, several files per NAME as batches, exit 0 / 2 / 1 with one line
// naming the file, tensor or option.
#include <qlib/calibrator.hpp>
#include <qlib/io/amct_record.hpp>
#include <qlib/io/npy.hpp>
#include <qlib/io/results_json.hpp>
#include <qlib/io/trt_cache.hpp>

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <vector>

namespace {

struct run_result {
  int status;
  std::string out;
  std::string err;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

run_result run(const std::string& args) {
  const std::string err_path = "qlib_calibrate_test.stderr";
  const std::string cmd = std::string(QLIB_CALIBRATE_EXE) + " " + args + " 2>" + err_path;
  std::FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out, slurp(err_path)};
}

const std::string acts = std::string(QLIB_EXAMPLE_DATA) + "/activations/";

std::string batches(const std::string& tensor) {
  std::string s;
  for (int b = 0; b < 3; ++b) s += " " + tensor + "=" + acts + tensor + "." + std::to_string(b) + ".npy";
  return s;
}

// The library's own answer for a tensor's batches.
qlib::calib_result<float> library(qlib::calibrator_options o, const std::string& tensor) {
  o.name = tensor;
  qlib::calibrator c(o);
  for (int b = 0; b < 3; ++b) {
    const auto a = qlib::read_npy_file<float>(acts + tensor + "." + std::to_string(b) + ".npy");
    c.update(qlib::tensor_view<const float>(a.data.data(), a.header.shape, tensor.c_str()));
  }
  return c.compute();
}

}  // namespace

TEST_CASE("qlib-calibrate: every method equals the library, JSON round-trips") {
  for (qlib::calib_method m : qlib::all_calib_methods()) {
    if (m == qlib::calib_method::arq) continue;
    for (const char* mode : {"symmetric", "asymmetric"}) {
      DYNAMIC_SECTION(qlib::to_string(m) << " " << mode) {
        const run_result r = run(std::string("--method ") + qlib::to_string(m) + " --mode " + mode +
                                 batches("conv2_bn") + batches("conv1_relu"));
        REQUIRE(r.status == 0);
        REQUIRE(r.err.empty());
        const auto entries = qlib::parse_results_json(r.out, "stdout");
        REQUIRE(entries.size() == 2);
        CHECK(entries[0].name == "conv2_bn");
        CHECK(entries[1].name == "conv1_relu");
        qlib::calibrator_options o;
        o.method = m;
        o.scheme = std::string(mode) == "symmetric" ? qlib::qscheme::symmetric : qlib::qscheme::affine;
        for (const auto& e : entries) {
          const auto ref = library(o, e.name);
          CHECK(e.method == qlib::to_string(m));
          CHECK(e.result.scale == ref.scale);
          CHECK(e.result.zero_point == ref.zero_point);
          CHECK(e.result.clip_min == ref.clip_min);
          CHECK(e.result.clip_max == ref.clip_max);
          CHECK(e.result.spec == ref.spec);
        }
      }
    }
  }
}

TEST_CASE("qlib-calibrate: ARQ per channel, options, formats and -o") {
  const std::string w = " w=" + acts + "conv2_weight.npy";
  run_result r = run("--method arq --bits 4" + w);
  REQUIRE(r.status == 0);
  auto e = qlib::parse_results_json(r.out, "stdout");
  REQUIRE(e.size() == 1);
  CHECK(e[0].result.axis == 0);
  CHECK(e[0].result.channels() == 32);
  CHECK(e[0].result.spec.bits == 4);

  r = run("--method minmax --per-channel 1 --bits 6" + w);
  REQUIRE(r.status == 0);
  e = qlib::parse_results_json(r.out, "stdout");
  CHECK(e[0].result.axis == 1);
  CHECK(e[0].result.spec.bits == 6);

  r = run("--method percentile --percentile 99.9 --bins 1024" + batches("conv4_relu"));
  REQUIRE(r.status == 0);
  qlib::calibrator_options o;
  o.method = qlib::calib_method::percentile;
  o.percentile = 99.9;
  o.bins = 1024u;
  CHECK(qlib::parse_results_json(r.out, "stdout")[0].result.scale == library(o, "conv4_relu").scale);

  // trt-cache: scale = amax / 127 as float32 hex, names kept.
  r = run("--method kl --format trt-cache" + batches("logits") + batches("input"));
  REQUIRE(r.status == 0);
  const auto cache = qlib::parse_trt_cache(r.out, "stdout");
  REQUIRE(cache.entries.size() == 2);
  CHECK(cache.header.find("TRT-") != std::string::npos);
  o = {};
  o.method = qlib::calib_method::kl;
  CHECK(cache.find("logits")->scale == library(o, "logits").amax() / 127.0f);

  // amct-record to a file: data factors for activations, weight factors for arq.
  r = run("--method hfmg --format amct-record -o qlib_calibrate_test.record" + batches("conv2_bn"));
  REQUIRE(r.status == 0);
  CHECK(r.out.empty());
  const auto rec = qlib::parse_amct_record(slurp("qlib_calibrate_test.record"), "record");
  REQUIRE(rec.records.size() == 1);
  o = {};
  o.method = qlib::calib_method::hfmg;
  const auto ref = library(o, "conv2_bn");
  CHECK(rec.records[0].scale_d == ref.scale[0]);
  CHECK(rec.records[0].offset_d == ref.zero_point[0]);
  r = run("--method arq --format amct-record" + w);
  REQUIRE(r.status == 0);
  const auto wrec = qlib::parse_amct_record(r.out, "stdout");
  CHECK_FALSE(wrec.records[0].has_data);
  CHECK(wrec.records[0].scale_w.size() == 32);
}

TEST_CASE("qlib-calibrate: bad input exits 2 with one line naming the culprit") {
  struct bad {
    std::string args;
    std::string names;
  };
  const std::string good = " t=" + acts + "input.0.npy";
  const std::string data = QLIB_TEST_DATA;
  const std::vector<bad> cases = {
      {"" + good, "--method is required"},
      {"--method foo" + good, "unknown method 'foo'"},
      {"--method kl --bits 1" + good, "--bits"},
      {"--method kl --bits x" + good, "--bits"},
      {"--method kl --mode sideways" + good, "--mode"},
      {"--method minmax --bins 100" + good, "bins does not apply to method minmax"},
      {"--method hfmg --bins 100" + good, "num_of_bins"},
      {"--method kl --per-channel 0" + good, "per tensor only"},
      {"--method minmax --per-channel 5" + good, "axis 5"},
      {"--method percentile --percentile 120" + good, "percentile"},
      {"--method kl --format xml" + good, "--format"},
      {"--method kl --frobnicate" + good, "unknown option --frobnicate"},
      {"--method kl", "no NAME=FILE.npy"},
      {"--method kl t", "is not NAME=FILE.npy"},
      {"--method kl t=/nonexistent/x.npy", "/nonexistent/x.npy"},
      {"--method kl t=" + data + "/npy/" + "f4_1d.npy t=" + std::string(QLIB_TEST_DATA) + "/amct/quant_config.json",
       "quant_config.json"},
      {"--method arq --mode asymmetric" + good, "symmetric"},
      {"--method minmax --per-channel 1 --format trt-cache w=" + acts + "conv2_weight.npy", "trt-cache"},
      {"--method kl -o /nonexistent/dir/out.json" + good, "/nonexistent/dir/out.json"},
  };
  for (const bad& b : cases) {
    INFO(b.args);
    const run_result r = run(b.args);
    CHECK(r.status == 2);
    CHECK(r.out.empty());
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK_THAT(r.err, Catch::StartsWith("qlib-calibrate: ") && Catch::Contains(b.names));
  }
}

TEST_CASE("qlib-calibrate: NaN in a batch names the tensor, the index and the file") {
  std::vector<float> v(100, 0.5f);
  v[42] = std::nanf("");
  qlib::write_npy_file("qlib_calibrate_test_nan.npy", v.data(), qlib::shape_t{10, 10});
  const run_result r = run("--method kl bad=qlib_calibrate_test_nan.npy");
  CHECK(r.status == 2);
  CHECK_THAT(r.err, Catch::Contains("'bad'") && Catch::Contains("42") && Catch::Contains("qlib_calibrate_test_nan.npy"));
  // Constant and all-zero tensors give finite, positive scales.
  std::vector<float> z(64, 0.0f), c(64, -1.25f);
  qlib::write_npy_file("qlib_calibrate_test_zero.npy", z.data(), qlib::shape_t{64});
  qlib::write_npy_file("qlib_calibrate_test_const.npy", c.data(), qlib::shape_t{64});
  for (qlib::calib_method m : qlib::all_calib_methods()) {
    INFO(qlib::to_string(m));
    const run_result ok = run(std::string("--method ") + qlib::to_string(m) +
                              " z=qlib_calibrate_test_zero.npy c=qlib_calibrate_test_const.npy");
    REQUIRE(ok.status == 0);
    for (const auto& e : qlib::parse_results_json(ok.out, "stdout"))
      for (float s : e.result.scale) CHECK((std::isfinite(s) && s > 0.0f));
  }
}
