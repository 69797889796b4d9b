// Entropy observer: the shared contract per variant, the histograms against a binning done
// here, the one-sided range rule, exact merges, ORT's histogram growth by hand, and ORT's
// own end-to-end answers on the golden inputs (onnxruntime 1.32.0, numpy 2.4.6).
#include <qlib/observer/entropy.hpp>
#include <qlib/observer/minmax.hpp>

#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "observer/observer_contract.hpp"

using qlib::entropy_observer;
using qlib::entropy_observer_options;

namespace {

entropy_observer_options named(entropy_observer_options o) {
  o.name = "t0";
  return o;
}

qlib::qspec unsigned_spec() {
  qlib::qspec s;
  s.is_signed = false;
  return s;
}

/// The |x| histogram of batches as observer/histogram.hpp documents it: width = the first
/// non-zero batch's amax / bins, bin = min(floor(|x| * float(1 / w)), n - 1), n grown to
/// ceil(amax / w) (append) for later batches.
std::vector<double> abs_reference(const std::vector<std::vector<float>>& batches, std::uint32_t bins, double* width) {
  std::vector<double> counts;
  double w = 0.0, zeros = 0.0;
  for (const auto& b : batches) {
    double amax = 0.0;
    for (float v : b) amax = std::max(amax, static_cast<double>(std::fabs(v)));
    if (counts.empty()) {
      if (amax == 0.0) {
        zeros += static_cast<double>(b.size());
        continue;
      }
      w = amax / bins;
      counts.assign(bins, 0.0);
      counts[0] = zeros;
    }
    const std::size_t need = static_cast<std::size_t>(std::ceil(amax / w));
    if (need > counts.size()) counts.resize(need, 0.0);
    const float inv = static_cast<float>(1.0 / w);
    const std::size_t n = counts.size();
    for (float v : b) {
      const float f = std::fabs(v) * inv;
      counts[f < static_cast<float>(n - 1) ? static_cast<std::size_t>(f) : n - 1] += 1.0;
    }
  }
  *width = w;
  return counts;
}

/// A simple v1 .npy reader for 1-D little-endian float32 arrays; empty if the file is absent.
std::vector<float> read_npy_f32(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return {};
  std::vector<char> raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  REQUIRE(raw.size() > 10);
  REQUIRE(std::memcmp(raw.data(), "\x93NUMPY", 6) == 0);
  REQUIRE(raw[6] == 1);
  const std::size_t header = static_cast<unsigned char>(raw[8]) | (static_cast<std::size_t>(static_cast<unsigned char>(raw[9])) << 8);
  const std::string dict(raw.data() + 10, header);
  REQUIRE(dict.find("'descr': '<f4'") != std::string::npos);
  REQUIRE(dict.find("'fortran_order': False") != std::string::npos);
  const std::size_t off = 10 + header, n = (raw.size() - off) / 4;
  std::vector<float> v(n);
  std::memcpy(v.data(), raw.data() + off, n * 4);
  return v;
}

std::string golden_dir() {
  if (const char* root = std::getenv("QLIB_SOURCE_DIR")) return std::string(root) + "/tests/data/golden/";
  std::string here = __FILE__;  // .../tests/observer/entropy_test.cpp
  return here.substr(0, here.rfind("/observer/")) + "/data/golden/";
}

/// A minimal JSON reader for golden.json (objects, arrays, strings without escapes beyond
/// \" and \\, numbers, true / false / null): enough for the golden vectors.
struct json {
  enum kind_t { null_v, bool_v, number_v, string_v, array_v, object_v } kind = null_v;
  double number = 0.0;
  bool boolean = false;
  std::string text;
  std::vector<json> items;
  std::vector<std::pair<std::string, json>> fields;

  const json& operator[](const std::string& key) const {
    for (const auto& f : fields)
      if (f.first == key) return f.second;
    FAIL("golden.json: no field " << key);
    return *this;
  }
  bool has(const std::string& key) const {
    for (const auto& f : fields)
      if (f.first == key) return true;
    return false;
  }

  static json parse(const std::string& s) {
    std::size_t i = 0;
    json v = value(s, i);
    return v;
  }

 private:
  static void space(const std::string& s, std::size_t& i) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  }
  static std::string str(const std::string& s, std::size_t& i) {
    std::string out;
    ++i;  // opening quote
    while (i < s.size() && s[i] != '"') {
      if (s[i] == '\\') ++i;
      out += s[i++];
    }
    ++i;
    return out;
  }
  static json value(const std::string& s, std::size_t& i) {
    space(s, i);
    json v;
    REQUIRE(i < s.size());
    if (s[i] == '{') {
      v.kind = object_v;
      ++i;
      space(s, i);
      while (s[i] != '}') {
        space(s, i);
        std::string key = str(s, i);
        space(s, i);
        ++i;  // ':'
        v.fields.emplace_back(key, value(s, i));
        space(s, i);
        if (s[i] == ',') ++i;
        space(s, i);
      }
      ++i;
    } else if (s[i] == '[') {
      v.kind = array_v;
      ++i;
      space(s, i);
      while (s[i] != ']') {
        v.items.push_back(value(s, i));
        space(s, i);
        if (s[i] == ',') ++i;
        space(s, i);
      }
      ++i;
    } else if (s[i] == '"') {
      v.kind = string_v;
      v.text = str(s, i);
    } else if (s.compare(i, 4, "true") == 0 || s.compare(i, 5, "false") == 0) {
      v.kind = bool_v;
      v.boolean = s[i] == 't';
      i += v.boolean ? 4 : 5;
    } else if (s.compare(i, 4, "null") == 0) {
      i += 4;
    } else {
      v.kind = number_v;
      std::size_t used = 0;
      v.number = std::stod(s.substr(i, 40), &used);
      i += used;
    }
    return v;
  }
};

float bits_to_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

TEST_CASE("entropy observer: shared contract, tensorrt (published), float") {
  qlib_test::contract_options c;
  c.merge_exact = false;  // the first batch sets the bin width; halves have different ones
  c.split_exact = false;
  qlib_test::check_observer_contract<entropy_observer<float>>([] { return entropy_observer<float>(named(entropy_observer_options::tensorrt())); }, c);
}

TEST_CASE("entropy observer: shared contract, tensorrt (MLPerf), double") {
  qlib_test::contract_options c;
  c.merge_exact = false;
  c.split_exact = false;
  qlib_test::check_observer_contract<entropy_observer<double>>(
      [] { return entropy_observer<double>(named(entropy_observer_options::tensorrt_mlperf())); }, c);
}

TEST_CASE("entropy observer: shared contract, modelopt, unsigned, float") {
  qlib_test::contract_options c;
  c.merge_exact = false;
  c.split_exact = false;
  qlib_test::check_observer_contract<entropy_observer<float>>(
      [] { return entropy_observer<float>(named(entropy_observer_options::modelopt(unsigned_spec()))); }, c);
}

TEST_CASE("entropy observer: shared contract, onnxruntime, float and double") {
  qlib_test::contract_options c;
  c.merge_exact = false;  // the first batch sets the stride; halves have different ones
  c.split_exact = false;
  c.shape = {16, 256};
  qlib_test::check_observer_contract<entropy_observer<float>>(
      [] { return entropy_observer<float>(named(entropy_observer_options::onnxruntime())); }, c);
  qlib_test::check_observer_contract<entropy_observer<double>>(
      [] { return entropy_observer<double>(named(entropy_observer_options::onnxruntime({}, 1024))); }, c);
}

TEST_CASE("entropy observer: |x| histogram and threshold follow the documented rules") {
  for (auto d : qlib_test::all_dists()) {
    INFO(qlib_test::dist_name(d));
    std::vector<std::vector<float>> batches = {qlib_test::sample<float>(d, 5000, 1), qlib_test::sample<float>(d, 5000, 2)};
    for (float& v : batches[1]) v *= 1.3f;  // grows the histogram
    for (auto opts : {entropy_observer_options::tensorrt(), entropy_observer_options::modelopt()}) {
      opts.bins = 512;
      entropy_observer<float> obs(opts);
      for (const auto& b : batches) obs.update(qlib::view(b));
      double w = 0.0;
      const std::vector<double> counts = abs_reference(batches, 512, &w);
      REQUIRE(obs.histogram().counts() == counts);
      const auto r = obs.compute();
      if (counts.empty()) {
        CHECK(r.clip_max[0] == 0.0f);
        CHECK(r.scale[0] == 1.0f);
        continue;
      }
      CHECK(obs.histogram().bin_width() == w);
      const auto choice = qlib::entropy_search(counts, w, obs.search_options());
      CHECK(r.clip_max[0] == static_cast<float>(choice.threshold));
      CHECK(r.clip_min[0] == -r.clip_max[0]);  // signed symmetric spec: (-T, T)
      const float s = r.clip_max[0] / 127.0f;
      CHECK(r.scale[0] == Approx(s >= 1.1920928955078125e-07f ? s : 1.0f));  // degenerate scales become 1
    }
  }
}

TEST_CASE("entropy observer: the range is one-sided only for data never seen negative") {
  const auto x = qlib_test::sample<float>(qlib_test::dist::gaussian, 8192, 3);
  std::vector<float> relu = x;
  for (float& v : relu) v = std::max(v, 0.0f);
  qlib::qspec affine;
  affine.scheme = qlib::qscheme::affine;
  for (const qlib::qspec& spec : {unsigned_spec(), affine, qlib::qspec{}}) {
    const bool can_be_one_sided = !spec.is_signed || spec.scheme == qlib::qscheme::affine;
    for (auto opts : {entropy_observer_options::tensorrt(spec), entropy_observer_options::modelopt(spec)}) {
      entropy_observer<float> pos(opts), mixed(opts);
      pos.update(qlib::view(relu));
      mixed.update(qlib::view(relu));
      mixed.update(qlib::view(x));
      const auto rp = pos.compute(), rm = mixed.compute();
      CHECK(rp.clip_max[0] > 0.0f);
      CHECK(rp.clip_min[0] == (can_be_one_sided ? 0.0f : -rp.clip_max[0]));
      CHECK(rm.clip_min[0] == -rm.clip_max[0]);
      CHECK(!pos.saw_negative());
      CHECK(mixed.saw_negative());
      // save / load keeps the sign history
      CHECK(entropy_observer<float>::load(mixed.save()).compute().clip_min[0] == rm.clip_min[0]);
      // merge ors it
      pos.merge(mixed);
      CHECK(pos.saw_negative());
    }
  }
  // ORT clamps its edges to the data: post-ReLU data gives lo = 0.
  entropy_observer<float> ort(entropy_observer_options::onnxruntime(unsigned_spec(), 512));
  ort.update(qlib::view(relu));
  const auto r = ort.compute();
  CHECK(r.clip_min[0] == 0.0f);
  CHECK(r.clip_max[0] > 0.0f);
}

TEST_CASE("entropy observer: merge is exact when both histograms share the bin width") {
  const auto first = qlib_test::sample<float>(qlib_test::dist::student_t2, 4096, 7);
  auto b1 = qlib_test::sample<float>(qlib_test::dist::laplace, 4096, 8), b2 = qlib_test::sample<float>(qlib_test::dist::gaussian, 4096, 9);
  float amax = 0;
  for (float v : first) amax = std::max(amax, std::fabs(v));
  for (auto* b : {&b1, &b2})
    for (float& v : *b) v = std::max(-amax, std::min(amax, v));  // inside the first batch's range
  for (auto opts : {entropy_observer_options::tensorrt(), entropy_observer_options::tensorrt_mlperf(), entropy_observer_options::modelopt(),
                    entropy_observer_options::onnxruntime({}, 512)}) {
    entropy_observer<float> one(opts), left(opts), right(opts);
    for (const std::vector<float>* b : std::initializer_list<const std::vector<float>*>{&first, &b1, &first, &b2}) one.update(qlib::view(*b));
    left.update(qlib::view(first));
    left.update(qlib::view(b1));
    right.update(qlib::view(first));
    right.update(qlib::view(b2));
    left.merge(right);
    qlib_test::require_same(left.compute(), one.compute());
    CHECK(left.batches() == 4);
    CHECK(left.save().size() == one.save().size());
  }
  // Different widths: re-binned, still a valid result with every count kept.
  for (auto opts : {entropy_observer_options::tensorrt(), entropy_observer_options::onnxruntime({}, 512)}) {
    entropy_observer<float> left(opts), right(opts);
    left.update(qlib::view(b1));
    auto wide = b2;
    for (float& v : wide) v *= 2.5f;
    right.update(qlib::view(wide));
    right.merge(left);
    left.merge(entropy_observer<float>(opts));  // merging an empty observer changes nothing
    qlib_test::require_valid(right.compute());
    const double total = opts.search.variant == qlib::entropy_variant::onnxruntime ? right.signed_histogram().total() : right.histogram().total();
    CHECK(total == Approx(8192.0).epsilon(1e-12));
  }
}

TEST_CASE("entropy observer: ORT's histogram grows by whole bins on both sides") {
  entropy_observer<float> obs(entropy_observer_options::onnxruntime({}, 4, 4));
  const std::vector<float> a = {-1.0f, 0.2f, 0.7f, 1.0f};
  obs.update(qlib::view(a));
  const auto& h = obs.signed_histogram();
  CHECK(h.threshold() == 1.0f);
  CHECK(h.counts() == std::vector<double>{1, 0, 1, 2});
  CHECK(h.edges() == std::vector<double>{-1.0, -0.5, 0.0, 0.5, 1.0});
  // 1.6 > t: stride 0.5, half = floor(0.6 / 0.5) + 1 = 2 bins each side, t = 2 * 0.5 + 1.
  const std::vector<float> b = {1.6f};
  obs.update(qlib::view(b));
  CHECK(h.threshold() == 2.0f);
  CHECK(h.counts() == std::vector<double>{0, 0, 1, 0, 1, 2, 0, 1});
  CHECK(h.edges().front() == -2.0);
  CHECK(h.edges()[1] == -1.5);
  CHECK(h.min() == -1.0f);
  CHECK(h.max() == 1.6f);
  // A batch inside t uses the same bins.
  const std::vector<float> c = {-1.9f, 0.0f};
  obs.update(qlib::view(c));
  CHECK(h.counts() == std::vector<double>{1, 0, 1, 0, 2, 2, 0, 1});

  // Zeros first: numpy spans [-0.5, 0.5] and puts them in bin n / 2; a later range keeps them there.
  entropy_observer<float> z(entropy_observer_options::onnxruntime({}, 4, 4));
  const std::vector<float> zeros = {0.0f, 0.0f}, d = {0.5f, -0.25f};
  z.update(qlib::view(zeros));
  CHECK(z.signed_histogram().counts() == std::vector<double>{0, 0, 2, 0});
  CHECK(z.signed_histogram().edges() == std::vector<double>{-0.5, -0.25, 0.0, 0.25, 0.5});
  CHECK(z.compute().clip_max[0] == 0.0f);  // ORT's clamp to the data: (0, 0), scale 1
  CHECK(z.compute().scale[0] == 1.0f);
  z.update(qlib::view(d));
  CHECK(z.signed_histogram().counts() == std::vector<double>{0, 1, 2, 1});
  CHECK(z.signed_histogram().threshold() == 0.5f);
}

TEST_CASE("entropy observer: ORT end to end on the golden inputs, bit for bit") {
  // HistogramCollector("entropy", num_bins, num_quantized_bins=128).collect(batch 0), then
  // collect(batch 1 * 1.5) (which grows the histogram), then compute_collection_result():
  // (lo, hi) as float32 bits, the final bin count.
  struct expected {
    const char* input;
    std::uint32_t bins;
    std::uint32_t lo, hi;
    std::size_t final_bins;
  };
  const expected table[] = {
      {"gaussian", 128, 0xc08141e6, 0x408346ec, 210},          {"gaussian", 2048, 0xc0aaa901, 0x40aac950, 3350},
      {"laplace", 128, 0xc1259571, 0x41282bc6, 240},           {"laplace", 2048, 0xc13e003a, 0x413e299e, 3824},
      {"relu_gaussian", 128, 0x00000000, 0x406b8bb2, 224},     {"relu_gaussian", 2048, 0x00000000, 0x406825fc, 3580},
      {"student_t2", 128, 0xc369dbd8, 0x43710de0, 140},        {"student_t2", 2048, 0xc2322ba8, 0x42330b38, 2226},
      {"bimodal", 128, 0xc0c50d76, 0x40c821ac, 200},           {"bimodal", 2048, 0xc0c910c5, 0x410f446a, 3190},
      {"gaussian_outliers", 128, 0xc2791ffe, 0x427cbc4a, 196}, {"gaussian_outliers", 2048, 0xc1acda60, 0x41ad4dec, 3118},
      {"uniform", 128, 0xbfbff87c, 0x4001ff1e, 192},           {"uniform", 2048, 0xbfbff87c, 0x403ffea0, 3072},
  };
  std::size_t checked = 0;
  for (const auto& t : table) {
    const auto b0 = read_npy_f32(golden_dir() + t.input + ".0.npy");
    auto b1 = read_npy_f32(golden_dir() + t.input + ".1.npy");
    if (b0.size() != 50000 || b1.size() != 50000) continue;
    for (float& v : b1) v *= 1.5f;
    INFO(t.input << ", " << t.bins << " bins");
    entropy_observer<float> obs(entropy_observer_options::onnxruntime({}, t.bins));
    obs.update(qlib::view(b0));
    obs.update(qlib::view(b1));
    CHECK(obs.signed_histogram().counts().size() == t.final_bins);
    CHECK(obs.signed_histogram().total() == 100000.0);
    const auto r = obs.compute();
    CHECK(r.clip_min[0] == bits_to_float(t.lo));
    CHECK(r.clip_max[0] == bits_to_float(t.hi));
    ++checked;
  }
  if (checked == 0) WARN("tests/data/golden/*.npy not found: ORT end-to-end check skipped");
  CHECK(checked <= 14);
}

TEST_CASE("entropy observer: torchquant's golden vectors (tests/data/golden/golden.json)") {
  std::ifstream f(golden_dir() + "golden.json");
  if (!f) {
    WARN("tests/data/golden/golden.json not found: golden check skipped");
    return;
  }
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const json g = json::parse(text);
  REQUIRE(g["schema_version"].number == 1);
  // torchquant's options as qlib options: its tensorrt candidates ran up to n inclusive.
  auto options_for = [](const std::string& config) {
    entropy_observer_options o;
    if (config == "entropy_modelopt") return entropy_observer_options::modelopt(qlib::qspec::tensorrt_int8());
    if (config == "entropy_tensorrt_mlperf") {
      o.bins = 1024;
      o.growth = qlib::histogram_growth::doubling;
      o.search.first_bin = qlib::entropy_first_bin::discard;  // with published levels and T = (i + 0.5) w
    }
    if (config == "entropy_tensorrt_uint8_affine") o.spec = qlib::qspec::torch_quint8();
    o.search.include_unclipped = true;
    return o;
  };
  std::size_t checked = 0;
  for (const json& input : g["inputs"].items) {
    std::vector<std::vector<float>> batches;
    for (const json& file : input["batches"].items) batches.push_back(read_npy_f32(golden_dir() + file.text));
    for (const auto& [config, want] : input["results"].fields) {
      if (config.rfind("entropy", 0) != 0) continue;
      INFO(input["name"].text << ", " << config);
      entropy_observer<float> obs(options_for(config));
      REQUIRE(obs.search_options().levels == (config == "entropy_tensorrt_uint8_affine" ? 256u : 128u));
      for (const auto& b : batches) obs.update(qlib::view(b));
      const json& d = want["detail"];
      const auto r = obs.compute();
      CHECK(r.clip_min[0] == static_cast<float>(want["lo"].number));
      CHECK(r.zero_point[0] == static_cast<int>(want["zero_point"].number));
      if (d["chosen_bin"].kind == json::null_v) {
        CHECK(obs.histogram().counts().empty());
        CHECK(r.clip_max[0] == 0.0f);
        CHECK(r.scale[0] == 1.0f);
        ++checked;
        continue;
      }
      CHECK(obs.histogram().counts().size() == static_cast<std::size_t>(d["bins"].number));
      CHECK(obs.histogram().bin_width() == d["bin_width"].number);
      CHECK(obs.histogram().total() == d["total"].number);
      CHECK(obs.saw_negative() == d["saw_negative"].boolean);
      const auto choice = obs.search();
      CHECK(choice.bin == static_cast<std::size_t>(d["chosen_bin"].number));
      const float hi = static_cast<float>(want["hi"].number), scale = static_cast<float>(want["scale"].number);
      if (config == "entropy_modelopt") {
        // torchquant wrote float32(i * w); qlib gives modelopt's float32 linspace edge i.
        CHECK(std::fabs(r.clip_max[0] - hi) <= std::nextafter(hi, 1e30f) - hi);
        CHECK(r.scale[0] == Approx(scale).epsilon(2e-7));
      } else {
        CHECK(r.clip_max[0] == hi);
        CHECK(r.scale[0] == scale);
      }
      ++checked;
    }
  }
  CHECK(checked >= 4);
  INFO("golden entropy results checked: " << checked);
}

TEST_CASE("entropy observer: presets, automatic levels and MLPerf's doubling") {
  entropy_observer<float> trt(entropy_observer_options::tensorrt());
  CHECK(trt.search_options().levels == 128);
  CHECK(trt.search_options().start_bin == 128);
  CHECK(entropy_observer<float>(entropy_observer_options::tensorrt(unsigned_spec())).search_options().levels == 256);
  qlib::qspec four;
  four.bits = 4;
  entropy_observer_options o4 = entropy_observer_options::tensorrt(four);
  o4.bins = 256;
  CHECK(entropy_observer<float>(o4).search_options().levels == 8);
  CHECK(entropy_observer<float>(o4).search_options().start_bin == 8);
  CHECK(entropy_observer<float>(entropy_observer_options::tensorrt_mlperf()).search_options().levels == 127);
  CHECK(entropy_observer<float>(entropy_observer_options::modelopt()).search_options().first_bins == 2048);
  CHECK(entropy_observer<float>(entropy_observer_options::onnxruntime()).search_options().levels == 128);

  entropy_observer<float> mlperf(entropy_observer_options::tensorrt_mlperf());
  const auto x = qlib_test::sample<float>(qlib_test::dist::relu, 20000, 4);
  auto y = x;
  for (float& v : y) v *= 1.7f;
  mlperf.update(qlib::view(x));
  CHECK(mlperf.histogram().counts().size() == 1024);
  mlperf.update(qlib::view(y));
  CHECK(mlperf.histogram().counts().size() == 2048);
  const auto choice = mlperf.search();
  CHECK(choice.threshold == (static_cast<double>(choice.bin) - 0.5) * mlperf.histogram().bin_width());

  // modelopt's amax is the float32 linspace edge of the chosen bin.
  entropy_observer<float> mo(entropy_observer_options::modelopt());
  mo.update(qlib::view(x));
  const auto c = mo.search();
  CHECK(mo.compute().clip_max[0] == static_cast<float>(qlib::detail::modelopt_edge(c.bin, mo.histogram().bin_width(), 2048, 2048)));
}

TEST_CASE("entropy observer: bad options and oversized ranges are named and rejected") {
  using qlib::errc;
  auto bad = [](entropy_observer_options o, const char* what) {
    o.name = "conv7";
    const std::string msg = qlib_test::error_message([&] { entropy_observer<float> obs(o); }, errc::invalid_argument);
    CHECK(msg.find("conv7") != std::string::npos);
    CHECK(msg.find(what) != std::string::npos);
  };
  auto o = entropy_observer_options::tensorrt();
  o.bins = 1;
  bad(o, "bins");
  o = entropy_observer_options::tensorrt();
  o.bins = 100;  // below start_bin 128
  bad(o, "start_bin");
  o = entropy_observer_options::modelopt();
  o.growth = qlib::histogram_growth::doubling;
  bad(o, "growth");
  o = entropy_observer_options::onnxruntime();
  o.growth = qlib::histogram_growth::doubling;
  bad(o, "growth");
  o = entropy_observer_options::onnxruntime({}, 64);
  bad(o, "num_quantized_bins");
  o = entropy_observer_options::tensorrt();
  o.search.stride = 0;
  bad(o, "stride");
  o = entropy_observer_options::tensorrt();
  o.spec.bits = 12;  // 2048 automatic levels: no candidate in 2048 bins
  bad(o, "start_bin");
  o = entropy_observer_options::tensorrt();
  o.spec.bits = 1;
  qlib_test::error_message([&] { entropy_observer<float> obs(o); }, errc::invalid_argument);

  for (auto opts : {entropy_observer_options::tensorrt(), entropy_observer_options::onnxruntime()}) {
    opts.name = "act3";
    entropy_observer<float> obs(opts);
    const std::vector<float> small = {1e-3f, -2e-3f}, huge = {1e6f};
    obs.update(qlib::view(small));
    const auto before = obs.save();
    const std::string msg = qlib_test::error_message([&] { obs.update(qlib::view(huge)); }, errc::invalid_argument);
    CHECK(msg.find("act3") != std::string::npos);
    CHECK(msg.find("bins") != std::string::npos);
    CHECK(obs.save() == before);
  }
  entropy_observer<float> trt, ort(entropy_observer_options::onnxruntime());
  CHECK(qlib_test::error_message([&] { (void)trt.search(); }, errc::empty_input).find("entropy observer") != std::string::npos);
  qlib_test::error_message([&] { (void)trt.search_signed(); }, errc::invalid_argument);
  qlib_test::error_message([&] { (void)ort.search(); }, errc::invalid_argument);
  qlib_test::error_message([&] { trt.merge(ort); }, errc::invalid_argument);
}

TEST_CASE("entropy observer: malformed state is a parse error, never a crash") {
  for (auto opts : {entropy_observer_options::tensorrt(), entropy_observer_options::onnxruntime()}) {
    opts.bins = 256;
    entropy_observer<float> obs(opts);
    const auto x = qlib_test::sample<float>(qlib_test::dist::laplace, 1000, 2);
    obs.update(qlib::view(x));
    const auto bytes = obs.save();
    for (std::size_t cut = 0; cut < bytes.size(); cut += (cut < 200 ? 1 : 97)) {
      std::vector<std::uint8_t> part(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut));
      qlib_test::error_message([&] { (void)entropy_observer<float>::load(part); }, qlib::errc::parse_error);
    }
    auto longer = bytes;
    longer.push_back(0);
    qlib_test::error_message([&] { (void)entropy_observer<float>::load(longer); }, qlib::errc::parse_error);
    auto wrong = bytes;
    wrong[8 + 2 + 2 + 7 + 2 + 8] = 9;  // the variant byte, after magic, versions, kind and qspec
    qlib_test::error_message([&] { (void)entropy_observer<float>::load(wrong); }, qlib::errc::parse_error);
    const auto other = qlib::minmax_observer<float>().save();
    qlib_test::error_message([&] { (void)entropy_observer<float>::load(other); }, qlib::errc::parse_error);
  }
}
