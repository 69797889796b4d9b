// IFMR and HFMG observers against the torchquant predecessor's golden results
// (tests/data/golden/golden.json, written by make_golden.py from the verified Python
// package): each input's two batches observed in file order, then compared.
//
// IFMR (exact mode): the percentile start (k, min0, max0) and the chosen ratio's index must
// agree exactly. torchquant searched 60 ratios 0.7 + i * 0.01; qlib searches numpy.arange's
// 61, 0.7 + i * ((0.7 + 0.01) - 0.7), so a ratio can differ in its last bit and the clip
// bound r * max0, rounded to float, by one ulp: ranges and scales are compared within
// 2 ulps, offsets exactly.
// HFMG: torchquant bins in float64 by division, qlib multiplies by a float32 reciprocal
// (core/binning.hpp, shared with CUDA), so a value on a bin edge could land one bin over and
// move a cursor: the kept bins (L, R) are allowed 2 bins, the range 2 bin widths, the scale
// 4 bin widths over the range. On these inputs no cursor moves: all 28 searches keep the
// same bins as torchquant, which the test also requires.
// One documented difference: constant data on a symmetric AMCT grid (range [c, c] with
// c < 0) divides by 128 in qlib, as AMCT's kernels do (the signed value of larger
// magnitude, min on a tie); torchquant divided by 127.
#include <qlib/observer/hfmg.hpp>
#include <qlib/observer/ifmr.hpp>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "golden_data.hpp"
#include "observer/observer_contract.hpp"

using qlib_test::at;

namespace {

/// torchquant's int8 specs as qlib's AMCT grids (same scale and offset away from ties).
qlib::qspec spec_of(const std::string& name) {
  if (name == "int8_affine") return qlib::qspec::amct_activation(8, true);
  if (name == "int8_sym_amct") return qlib::qspec::amct_activation(8, false);
  FAIL("unexpected spec " << name);
  return {};
}

/// Distance in float ulps.
long ulps(float a, float b) {
  if (a == b) return 0;
  const auto ka = static_cast<long long>(qlib::detail::order_key(a)), kb = static_cast<long long>(qlib::detail::order_key(b));
  return static_cast<long>(ka > kb ? ka - kb : kb - ka);
}

}  // namespace

TEST_CASE("golden: IFMR (exact mode) matches torchquant") {
  const qlib::json g = qlib_test::load_golden();
  const auto inputs = qlib_test::load_inputs(g);
  std::size_t compared = 0;
  for (const auto& member : at(g, "configs").members()) {
    if (at(member.value, "calibrator").get_string() != "ifmr") continue;
    const auto& o = at(member.value, "options");
    REQUIRE(at(o, "mode").get_string() == "exact");
    qlib::ifmr_options opts;
    opts.spec = spec_of(at(member.value, "spec").get_string());
    opts.search.max_percentile = at(o, "max_percentile").get_number();
    opts.search.min_percentile = at(o, "min_percentile").get_number();
    opts.search.search_start = at(o, "search_range").elements().at(0).get_number();
    opts.search.search_end = at(o, "search_range").elements().at(1).get_number();
    opts.search.search_step = at(o, "search_step").get_number();
    opts.search.scale_min = at(o, "scale_min").get_bool();
    for (const auto& in : inputs) {
      INFO("config " << member.key << " input " << in.name);
      const auto& want = at(*in.results, member.key);
      const auto& detail = at(want, "detail");
      qlib::ifmr_observer<float> obs(opts);
      for (const auto& b : in.batches) obs.update(qlib::view(b.data(), b.size()));
      const auto s = obs.search();
      const auto r = obs.compute();
      CHECK(static_cast<double>(s.init_min) == at(detail, "min0").get_number());
      CHECK(static_cast<double>(s.init_max) == at(detail, "max0").get_number());
      CHECK(qlib::ifmr_rank(obs.count(), opts.search.min_percentile) ==
            static_cast<std::uint64_t>(at(detail, "k_min").get_integer()));
      CHECK(qlib::ifmr_rank(obs.count(), opts.search.max_percentile) ==
            static_cast<std::uint64_t>(at(detail, "k_max").get_integer()));
      CHECK(s.best == static_cast<std::size_t>(at(detail, "ratio_index").get_integer()));
      CHECK(ulps(r.clip_min[0], at(want, "lo").get_float()) <= 2);
      CHECK(ulps(r.clip_max[0], at(want, "hi").get_float()) <= 2);
      CHECK(ulps(r.scale[0], at(want, "scale").get_float()) <= 2);
      CHECK(r.zero_point[0] == at(want, "zero_point").get_integer());
      ++compared;
    }
  }
  CHECK(compared == 18);
}

TEST_CASE("golden: HFMG matches torchquant (within the bin-rule difference)") {
  const qlib::json g = qlib_test::load_golden();
  const auto inputs = qlib_test::load_inputs(g);
  std::size_t compared = 0, same_bins = 0;
  for (const auto& member : at(g, "configs").members()) {
    if (at(member.value, "calibrator").get_string() != "hfmg") continue;
    qlib::hfmg_options opts;
    opts.spec = spec_of(at(member.value, "spec").get_string());
    opts.num_of_bins = static_cast<std::uint32_t>(at(at(member.value, "options"), "num_of_bins").get_integer());
    for (const auto& in : inputs) {
      INFO("config " << member.key << " input " << in.name);
      const auto& want = at(*in.results, member.key);
      const auto& detail = at(want, "detail");
      qlib::hfmg_observer<float> obs(opts);
      for (const auto& b : in.batches) obs.update(qlib::view(b.data(), b.size()));
      const auto s = obs.search();
      const auto r = obs.compute();
      const auto& h = obs.histogram();
      ++compared;
      if (h.lo() == h.hi()) {  // constant and all-zero inputs: no search
        CHECK(s.candidates.empty());
        CHECK(r.clip_min[0] == at(want, "lo").get_float());
        CHECK(r.clip_max[0] == at(want, "hi").get_float());
        const float c = r.clip_min[0];
        if (opts.spec.scheme == qlib::qscheme::symmetric && c < 0.0f) {
          CHECK(r.scale[0] == -c / 128.0f);  // AMCT's tie rule
          CHECK(at(want, "scale").get_float() == -c / 127.0f);  // torchquant's
        } else {
          CHECK(r.scale[0] == at(want, "scale").get_float());
          CHECK(r.zero_point[0] == at(want, "zero_point").get_integer());
        }
        continue;
      }
      CHECK(h.lo() == at(detail, "hist_lo").get_number());
      CHECK(h.hi() == at(detail, "hist_hi").get_number());
      const auto& c = s.candidates.at(s.best);
      const long gl = static_cast<long>(at(detail, "left_bin").get_integer());
      const long gr = static_cast<long>(at(detail, "right_bin").get_integer());
      CHECK(std::labs(static_cast<long>(c.left) - gl) <= 2);
      CHECK(std::labs(static_cast<long>(c.right) - gr) <= 2);
      if (static_cast<long>(c.left) == gl && static_cast<long>(c.right) == gr) ++same_bins;
      const double w = (h.hi() - h.lo()) / opts.num_of_bins;
      CHECK(std::fabs(r.clip_min[0] - at(want, "lo").get_number()) <= 2 * w + 1e-6 * std::fabs(h.lo()));
      CHECK(std::fabs(r.clip_max[0] - at(want, "hi").get_number()) <= 2 * w + 1e-6 * std::fabs(h.hi()));
      const double scale = at(want, "scale").get_number();
      CHECK(std::fabs(r.scale[0] - scale) <= scale * 2 * w / (h.hi() - h.lo()) * 2 + 1e-7 * scale);
    }
  }
  CHECK(compared == 36);
  CHECK(same_bins == compared - 8);  // 8 constant / all-zero cases have no search
}
