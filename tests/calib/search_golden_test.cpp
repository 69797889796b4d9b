// Percentile and MSE observers against the torchquant predecessor's golden results
// (tests/data/golden/golden.json, written by make_golden.py from the verified Python
// package): each input's batches observed in file order, then compared.
//
// Symmetric specs use the |x| histogram, binned by the same rule in float32 as torchquant
// (core/binning.hpp), so the histogram (bin count, width) and the chosen bin must agree
// exactly and the ranges to float32 rounding; torchquant rounds each MSE candidate's scale
// to float32 where qlib searches in double, so best errors agree to 1e-6. Affine specs use
// the signed range histogram, which torchquant bins in float64 by division while qlib
// multiplies by a float32 reciprocal (shared with CUDA): a count can move across a bin
// edge, so ranges are allowed a bin and picks two candidates (today they are equal).
#include <qlib/observer/mse.hpp>
#include <qlib/observer/percentile.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "golden_data.hpp"
#include "observer/observer_contract.hpp"

using qlib_test::at;

namespace {

qlib::qspec spec_of(const std::string& name) {
  qlib::qspec s;
  if (name == "int8_sym") return s;
  if (name == "int8_sym_amct") {
    s.convention = qlib::qconvention::amct;
    return s;
  }
  s.scheme = qlib::qscheme::affine;  // torchquant's "amax" rule for affine grids is torch's
  if (name == "uint8_affine") s.is_signed = false;
  return s;
}

}  // namespace

TEST_CASE("golden: percentile and MSE observers match torchquant") {
  const qlib::json g = qlib_test::load_golden();
  const auto inputs = qlib_test::load_inputs(g);
  REQUIRE(inputs.size() >= 8);
  const auto& configs = at(g, "configs");
  std::size_t compared = 0;
  for (const auto& member : configs.members()) {
    const std::string& key = member.key;
    const std::string calibrator = at(member.value, "calibrator").get_string();
    if (calibrator != "percentile" && calibrator != "mse") continue;
    const qlib::qspec spec = spec_of(at(member.value, "spec").get_string());
    const bool symmetric = spec.scheme == qlib::qscheme::symmetric;
    const auto& o = at(member.value, "options");
    for (const auto& in : inputs) {
      INFO("config " << key << " input " << in.name);
      const auto& want = at(*in.results, key);
      const auto& detail = at(want, "detail");
      const double lo = at(want, "lo").get_number(), hi = at(want, "hi").get_number();
      qlib::hist_bins bins;
      double got_lo = 0.0, got_hi = 0.0;
      std::size_t chosen = 0;
      if (calibrator == "percentile") {
        qlib::percentile_options po;
        po.spec = spec;
        po.percentile = at(o, "percentile").get_number();
        po.bins = static_cast<std::uint32_t>(at(o, "num_bins").get_integer());
        po.interpolation = at(o, "interpolation").get_string() == "edge" ? qlib::percentile_interpolation::edge
                                                                         : qlib::percentile_interpolation::linear;
        qlib::percentile_observer<float> obs(po);
        for (const auto& b : in.batches) obs.update(qlib::view(b));
        const auto r = obs.compute();
        bins = obs.bins();
        got_lo = r.clip_min[0];
        got_hi = r.clip_max[0];
      } else {
        qlib::mse_options mo;
        mo.spec = spec;
        mo.bins = static_cast<std::uint32_t>(at(o, "num_bins").get_integer());
        mo.start_bin = static_cast<std::uint32_t>(at(o, "start_bin").get_integer());
        mo.stride = static_cast<std::uint32_t>(at(o, "stride").get_integer());
        qlib::mse_observer<float> obs(mo);
        for (const auto& b : in.batches) obs.update(qlib::view(b));
        const auto r = obs.compute();
        bins = obs.bins();
        got_lo = r.clip_min[0];
        got_hi = r.clip_max[0];
        if (bins.size > 0) {
          const auto pick = obs.choose();
          chosen = pick.index * mo.stride + std::min<std::size_t>(mo.start_bin, bins.size - 1);
          CHECK(obs.candidates().size() == static_cast<std::size_t>(at(detail, "num_candidates").get_integer()));
          const double best = at(detail, "best_error").get_number();
          if (symmetric) {
            // torchquant rounds each candidate's scale to float32; qlib searches in double.
            CHECK(pick.error == Approx(best).epsilon(1e-6).margin(1e-15));
          } else {
            CHECK(pick.error == Approx(best).epsilon(1e-4).margin(1e-15));
          }
        }
      }
      if (symmetric) {
        if (at(detail, "bins").get_integer() == 0) {  // only zeros
          CHECK(bins.size == 0);
          CHECK(got_hi == 0.0);
          CHECK(got_lo == 0.0);
        } else {
          REQUIRE(bins.size == static_cast<std::size_t>(at(detail, "bins").get_integer()));
          CHECK(bins.width == at(detail, "bin_width").get_number());
          if (calibrator == "mse") CHECK(chosen == static_cast<std::size_t>(at(detail, "chosen_bin").get_integer()));
          CHECK(got_hi == Approx(hi).epsilon(1e-6));
          CHECK(got_lo == Approx(lo).epsilon(1e-6));
        }
      } else {
        CHECK(bins.lo == at(detail, "hist_lo").get_number());
        CHECK(bins.hi == at(detail, "hist_hi").get_number());
        const double tol = 1.001 * bins.width + 1e-6;  // equal on these inputs today
        CHECK(std::fabs(got_hi - hi) <= tol);
        CHECK(std::fabs(got_lo - lo) <= tol);
        if (calibrator == "mse" && bins.size > 0 && bins.width > 0.0) {
          // Error curves are flat near their minimum: a count moved across an edge could move
          // the pick by a candidate or two (none does on these inputs today).
          const auto c = static_cast<double>(at(detail, "chosen_bin").get_integer());
          CHECK(std::fabs(static_cast<double>(chosen) - c) <= 2.0);
        }
      }
      ++compared;
    }
  }
  CHECK(compared >= 7 * 9);
}
