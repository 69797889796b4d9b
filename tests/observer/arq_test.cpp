// ARQ observer: the shared contract (min/max: merge and split exact), per-channel ranges
// and AMCT scales against a reference along axis 0 and 1, bits, state checks.
#include <qlib/observer/arq.hpp>

#include <algorithm>
#include <cfloat>
#include <limits>
#include <string>
#include <vector>

#include "observer/observer_contract.hpp"

using qlib::arq_observer;
using qlib::arq_options;
using qlib::errc;
using qlib_test::error_message;

namespace {
arq_options named(int bits = 8, bool channel_wise = true, int axis = 0) {
  arq_options o;
  o.name = "t0";
  o.spec = qlib::qspec::amct_weight(bits);
  o.channel_wise = channel_wise;
  o.axis = axis;
  return o;
}
// AMCT's ARQ scale (arq.cpp): the signed value of larger magnitude (min on a tie) divided by
// 2^(b-1) - 1 when positive, by -2^(b-1) otherwise; below FLT_EPSILON: 1.
float ref_scale(float lo, float hi, int bits) {
  const float t = std::fabs(hi) > std::fabs(lo) ? hi : lo;
  const float s = t > 0 ? t / static_cast<float>((1 << (bits - 1)) - 1) : t / -static_cast<float>(1 << (bits - 1));
  return s < FLT_EPSILON ? 1.0f : s;
}
}  // namespace

TEST_CASE("arq observer: shared contract, per tensor") {
  qlib_test::check_observer_contract<arq_observer<float>>([] { return arq_observer<float>(named(8, false)); });
}

TEST_CASE("arq observer: shared contract, per channel (Conv weights [16, 8, 4, 4])") {
  qlib_test::contract_options c;
  c.shape = {16, 8, 4, 4};
  qlib_test::check_observer_contract<arq_observer<float>>([] { return arq_observer<float>(named(8)); }, c);
}

TEST_CASE("arq observer: shared contract, ConvTranspose axis 1, 4 bits, double") {
  qlib_test::contract_options c;
  c.shape = {8, 12, 3, 3};
  qlib_test::check_observer_contract<arq_observer<double>>([] { return arq_observer<double>(named(4, true, 1)); }, c);
}

TEST_CASE("arq observer: per-channel ranges and scales equal a reference") {
  const std::size_t d0 = 6, d1 = 5, d2 = 7;
  for (auto dist : qlib_test::all_dists()) {
    std::vector<float> w = qlib_test::sample<float>(dist, d0 * d1 * d2, 9);
    for (int axis : {0, 1}) {
      for (int bits : {4, 6, 7, 8}) {
        arq_observer<float> obs(named(bits, true, axis));
        obs.update(qlib::view(w.data(), qlib::shape_t{d0, d1, d2}, "conv.weight"));
        const auto r = obs.compute();
        const std::size_t channels = axis == 0 ? d0 : d1;
        REQUIRE(r.channels() == channels);
        CHECK(r.axis == axis);
        for (std::size_t c = 0; c < channels; ++c) {
          float lo = std::numeric_limits<float>::max(), hi = -lo;
          for (std::size_t i = 0; i < d0; ++i)
            for (std::size_t j = 0; j < d1; ++j)
              for (std::size_t k = 0; k < d2; ++k)
                if ((axis == 0 ? i : j) == c) {
                  lo = std::min(lo, w[(i * d1 + j) * d2 + k]);
                  hi = std::max(hi, w[(i * d1 + j) * d2 + k]);
                }
          CHECK(r.clip_min[c] == lo);
          CHECK(r.clip_max[c] == hi);
          CHECK(r.scale[c] == ref_scale(lo, hi, bits));
          CHECK(r.zero_point[c] == 0);
        }
      }
    }
  }
}

TEST_CASE("arq observer: per tensor, and split along the outer dimension, are exact") {
  const auto w = qlib_test::sample<float>(qlib_test::dist::student_t2, 32 * 9, 2);
  arq_observer<float> whole(named()), parts(named());
  whole.update(qlib::view(w.data(), qlib::shape_t{4, 8, 9}));
  parts.update(qlib::view(w.data(), qlib::shape_t{2, 8, 9}));
  parts.update(qlib::view(w.data() + 2 * 8 * 9, qlib::shape_t{2, 8, 9}));
  CHECK(parts.batches() == 2);
  // axis 0 differs in length (2 vs 4): a different channel count is refused.
  arq_observer<float> t(named());
  t.update(qlib::view(w.data(), qlib::shape_t{4, 8, 9}));
  error_message([&] { t.update(qlib::view(w.data(), qlib::shape_t{2, 8, 9})); }, errc::invalid_argument);
  arq_observer<float> axis1(named(8, true, 1)), axis1_parts(named(8, true, 1));
  axis1.update(qlib::view(w.data(), qlib::shape_t{4, 8, 9}));
  axis1_parts.update(qlib::view(w.data(), qlib::shape_t{2, 8, 9}));
  axis1_parts.update(qlib::view(w.data() + 2 * 8 * 9, qlib::shape_t{2, 8, 9}));
  qlib_test::require_same(axis1.compute(), axis1_parts.compute());
  arq_observer<float> flat(named(8, false));
  flat.update(qlib::view(w.data(), w.size()));
  const auto r = flat.compute();
  const auto mm = std::minmax_element(w.begin(), w.end());
  CHECK(r.clip_min[0] == *mm.first);
  CHECK(r.clip_max[0] == *mm.second);
  CHECK(r.scale[0] == ref_scale(*mm.first, *mm.second, 8));
  CHECK(r.axis == -1);
}

TEST_CASE("arq observer: bad bits, grids, axes and states are rejected") {
  for (int bits : {2, 3, 5, 9, 16}) {
    const std::string msg = error_message([&] { arq_observer<float> obs(named(bits)); }, errc::invalid_argument);
    CHECK(msg.find("arq observer 't0'") != std::string::npos);
    CHECK(msg.find("bits = " + std::to_string(bits)) != std::string::npos);
  }
  arq_options affine = named();
  affine.spec = qlib::qspec::amct_activation(8, true);
  error_message([&] { arq_observer<float> obs(affine); }, errc::invalid_argument);
  arq_observer<float> obs(named(8, true, 3));
  std::vector<float> w(24, 1.0f);
  CHECK(error_message([&] { obs.update(qlib::view(w.data(), qlib::shape_t{2, 3, 4})); }, errc::invalid_argument)
            .find("axis 3") != std::string::npos);
  arq_observer<float> ok(named());
  ok.update(qlib::view(w.data(), qlib::shape_t{2, 3, 4}));
  auto bytes = ok.save();
  bytes.pop_back();
  error_message([&] { (void)arq_observer<float>::load(bytes); }, errc::parse_error);
  arq_observer<float> other(named(4));
  error_message([&] { ok.merge(other); }, errc::invalid_argument);
}
