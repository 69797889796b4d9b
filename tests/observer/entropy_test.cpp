// Entropy observer: the shared contract per variant, the histograms against a binning done
// here, the one-sided range rule, exact merges, ORT's histogram growth by hand, and ORT's
// own end-to-end answers on the golden inputs (onnxruntime 1.32.0, numpy 2.4.6).
#include <qlib/observer/entropy.hpp>
#include <qlib/observer/minmax.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "golden_data.hpp"
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
    const auto b0 = qlib::read_npy_file<float>(qlib_test::golden_dir() + t.input + ".0.npy").data;
    auto b1 = qlib::read_npy_file<float>(qlib_test::golden_dir() + t.input + ".1.npy").data;
    REQUIRE(b0.size() == 50000);
    REQUIRE(b1.size() == 50000);
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
  CHECK(checked == 14);
}

TEST_CASE("entropy observer: torchquant's golden vectors (tests/data/golden/golden.json)") {
  using qlib_test::at;
  const qlib::json g = qlib_test::load_golden();
  REQUIRE(at(g, "schema_version").get_number() == 1);
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
  for (const auto& input : qlib_test::load_inputs(g)) {
    for (const auto& member : input.results->members()) {
      const std::string& config = member.key;
      const qlib::json& want = member.value;
      if (config.rfind("entropy", 0) != 0) continue;
      INFO(input.name << ", " << config);
      entropy_observer<float> obs(options_for(config));
      REQUIRE(obs.search_options().levels == (config == "entropy_tensorrt_uint8_affine" ? 256u : 128u));
      for (const auto& b : input.batches) obs.update(qlib::view(b));
      const qlib::json& d = at(want, "detail");
      const auto r = obs.compute();
      CHECK(r.clip_min[0] == static_cast<float>(at(want, "lo").get_number()));
      CHECK(r.zero_point[0] == static_cast<int>(at(want, "zero_point").get_number()));
      if (at(d, "chosen_bin").is_null()) {
        CHECK(obs.histogram().counts().empty());
        CHECK(r.clip_max[0] == 0.0f);
        CHECK(r.scale[0] == 1.0f);
        ++checked;
        continue;
      }
      CHECK(obs.histogram().counts().size() == static_cast<std::size_t>(at(d, "bins").get_number()));
      CHECK(obs.histogram().bin_width() == at(d, "bin_width").get_number());
      CHECK(obs.histogram().total() == at(d, "total").get_number());
      CHECK(obs.saw_negative() == at(d, "saw_negative").get_bool());
      const auto choice = obs.search();
      CHECK(choice.bin == static_cast<std::size_t>(at(d, "chosen_bin").get_number()));
      const float hi = static_cast<float>(at(want, "hi").get_number()),
                  scale = static_cast<float>(at(want, "scale").get_number());
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
