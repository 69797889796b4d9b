// Fake quantization with the straight-through estimator (fakequant/fake_quant.hpp) and the
// fast rounding under it (core/fast_round.hpp): bit identity with quantize + dequantize,
// masks and gradients against brute force, per channel on every axis, bad input.
#include <algorithm>
#include <cfenv>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <qlib/core/fast_round.hpp>
#include <qlib/core/quantize.hpp>
#include <qlib/fakequant/fake_quant.hpp>
#include <random>
#include <vector>

#include "fakequant/fq_test_util.hpp"
#include "test_data.hpp"

using qlib::channel_qparams;
using qlib::errc;
using qlib::qparams;
using qlib::qspec;
using qlib::rounding;
using qlib::shape_t;
using qlib::tensor_view;
using qlib_test::error_message;
using qlib_test::first_bit_difference;

namespace {

// ---- rounding --------------------------------------------------------------------------

template <class T>
bool same_bits(T a, T b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

/// Values where rounding is delicate, for float or double.
template <class T>
std::vector<T> rounding_edge_values() {
  const T p = T(1) / std::numeric_limits<T>::epsilon();  // 2^23 or 2^52
  std::vector<T> v = {T(0),
                      T(0.5),
                      T(1.5),
                      T(2.5),
                      T(3.5),
                      T(0.49999997),
                      std::nextafter(T(0.5), T(0)),
                      std::nextafter(T(0.5), T(1)),
                      std::nextafter(T(1.5), T(0)),
                      std::nextafter(T(1.5), T(2)),
                      p / 2 - T(0.5),
                      p / 2 + T(0.5),
                      p / 2 + T(1.5),
                      p - T(0.5),
                      p - T(1.5),
                      p - T(1),
                      p,
                      p + T(1),
                      p + T(2),
                      2 * p,
                      std::numeric_limits<T>::max(),
                      std::numeric_limits<T>::infinity(),
                      std::numeric_limits<T>::quiet_NaN(),
                      std::numeric_limits<T>::denorm_min(),
                      std::numeric_limits<T>::min(),
                      std::numeric_limits<T>::epsilon(),
                      T(1e-30),
                      T(123456.5),
                      T(127.5),
                      T(128.5)};
  // Every tie k + 1/2 for |k| < 4096 and near the top of the exact range.
  for (int k = -4096; k < 4096; ++k) v.push_back(static_cast<T>(k) + T(0.5));
  for (int k = 0; k < 64; ++k) {
    v.push_back(p / 2 - T(k) - T(0.5));
    v.push_back(p - T(k) - T(0.5));
  }
  const std::size_t n = v.size();
  for (std::size_t i = 0; i < n; ++i) v.push_back(-v[i]);
  return v;
}

template <class T>
void check_fast_rounding(T v) {
  const T even = qlib::round_half_even(v), away = std::round(v);
  const T fe = qlib::round_half_even_fast(v), fa = qlib::round_half_away_fast(v);
  if (!same_bits(fe, even) || !same_bits(fa, away)) {
    INFO("v = " << v << " (" << std::hexfloat << v << std::defaultfloat << ") even " << even << " fast " << fe
                << " away " << away << " fast " << fa);
    CHECK(same_bits(fe, even));
    CHECK(same_bits(fa, away));
  }
}

template <class T>
void check_rounding_array(const std::vector<T>& v) {
  // The same functions over an array, in the loop shape the compiler vectorizes.
  std::vector<T> fe(v.size()), fa(v.size()), e(v.size()), a(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    fe[i] = qlib::round_half_even_fast(v[i]);
    fa[i] = qlib::round_half_away_fast(v[i]);
  }
  for (std::size_t i = 0; i < v.size(); ++i) {
    e[i] = qlib::round_half_even(v[i]);
    a[i] = std::round(v[i]);
  }
  CHECK(first_bit_difference(fe, e) == -1);
  CHECK(first_bit_difference(fa, a) == -1);
}

TEST_CASE("fast rounding: edge values and ties, float and double") {
  REQUIRE(qlib::fast_rounding_available());
  for (float v : rounding_edge_values<float>()) check_fast_rounding(v);
  for (double v : rounding_edge_values<double>()) check_fast_rounding(v);
  check_rounding_array(rounding_edge_values<float>());
  check_rounding_array(rounding_edge_values<double>());
  // -0 stays -0; values in [-1/2, 0) give +0 like floor(v) + 1; std::round keeps the sign.
  CHECK(std::signbit(qlib::round_half_even_fast(-0.0f)));
  CHECK(!std::signbit(qlib::round_half_even_fast(-0.3f)));
  CHECK(!std::signbit(qlib::round_half_even_fast(-0.5)));
  CHECK(std::signbit(qlib::round_half_away_fast(-0.3f)));
  CHECK(qlib::round_half_even_fast(2.5f) == 2.0f);
  CHECK(qlib::round_half_even_fast(-2.5f) == -2.0f);
  CHECK(qlib::round_half_away_fast(2.5f) == 3.0f);
  CHECK(qlib::round_half_away_fast(-2.5) == -3.0);
  CHECK(qlib::round_half_even_fast(4194304.5f) == 4194304.0f);  // 2^22 + 1/2
  CHECK(qlib::round_half_even_fast(4194305.5f) == 4194306.0f);
}

TEST_CASE("fast rounding: random bit patterns and dense ranges equal the reference") {
  std::mt19937_64 g(20240601);
  std::vector<float> f;
  std::vector<double> d;
  for (int i = 0; i < (1 << 21); ++i) {
    const std::uint32_t b = static_cast<std::uint32_t>(g());
    float x;
    std::memcpy(&x, &b, 4);
    f.push_back(x);
    // Values in the rounding range, where all the work happens.
    f.push_back(static_cast<float>((static_cast<double>(g() >> 11) / 9007199254740992.0 - 0.5) * 3.4e7));
  }
  for (int i = 0; i < (1 << 19); ++i) {
    const std::uint64_t b = g();
    double x;
    std::memcpy(&x, &b, 8);
    d.push_back(x);
    d.push_back((static_cast<double>(g() >> 11) / 9007199254740992.0 - 0.5) * 1.9e16);
    d.push_back((static_cast<double>(g() >> 11) / 9007199254740992.0 - 0.5) * 600.0);
  }
  check_rounding_array(f);
  check_rounding_array(d);
  // Every float in the binades [1/2, 2) and [2^22, 2^23) (where the spacing is 1/2), both
  // signs, in slices.
  for (float lo : {0.5f, 4194304.0f}) {
    const float hi = lo == 0.5f ? 2.0f : 8388608.0f;
    std::vector<float> slice;
    for (float x = lo; x < hi; x = std::nextafter(x, hi)) {
      slice.push_back(x);
      slice.push_back(-x);
      if (slice.size() == (1u << 20)) {
        check_rounding_array(slice);
        slice.clear();
      }
    }
    check_rounding_array(slice);
  }
}

TEST_CASE("fast rounding: the kernels' small-range rounding, zeros as +0") {
  std::mt19937_64 g(7);
  std::size_t bad = 0;
  for (int i = 0; i < 200000; ++i) {
    const float v = static_cast<float>((static_cast<double>(g() >> 11) / 9007199254740992.0 - 0.5) * 300000.0);
    const float h = std::floor(v) + 0.5f;  // a tie
    for (float x : {v, h, -h, v * 1e-5f}) {
      const float e = qlib::detail::round_half_even_small(x), a = qlib::detail::round_half_away_small(x);
      bad += !(e == qlib::round_half_even(x)) || !(a == std::round(x));
      bad += (e == 0.0f && std::signbit(e)) || (a == 0.0f && std::signbit(a));
    }
  }
  CHECK(bad == 0);
  // Every float in [1/2, 4) and [2^16, 2^17) (spacing 2^-7 there), both signs.
  for (float lo : {0.5f, 65536.0f}) {
    const float hi = lo == 0.5f ? 4.0f : 131072.0f;
    for (float x = lo; x < hi; x = std::nextafter(x, hi))
      for (float v : {x, -x}) {
        const float e = qlib::detail::round_half_even_small(v), a = qlib::detail::round_half_away_small(v);
        bad += !(e == qlib::round_half_even(v)) || !(a == std::round(v)) || (e == 0.0f && std::signbit(e)) ||
               (a == 0.0f && std::signbit(a));
      }
  }
  CHECK(bad == 0);
  CHECK(!std::signbit(qlib::detail::round_half_even_small(-0.0f)));
  CHECK(!std::signbit(qlib::detail::round_half_away_small(-0.2)));
  CHECK(qlib::detail::round_half_away_small(-131072.5) == -131073.0);
}

// ---- forward: bit identity with quantize + dequantize ------------------------------------

/// dequantize(quantize(x)) with core/quantize.hpp: the reference.
template <class T, class P>
std::vector<T> quantize_dequantize(const std::vector<T>& x, const shape_t& shape, const P& p, const qspec& spec,
                                   rounding mode) {
  std::vector<std::int32_t> q(x.size());
  qlib::quantize(qlib::view(x.data(), shape), p, spec, q.data(), mode);
  std::vector<T> out(x.size());
  qlib::dequantize(qlib::view(q.data(), shape), p, out.data());
  return out;
}

/// The mask by brute force: round(x / s) + z inside [qmin, qmax].
template <class T>
unsigned char brute_mask(T x, T s, std::int32_t z, const qspec& spec, rounding mode) {
  const T q = qlib::round_with(x / s, mode) + static_cast<T>(z);
  return q >= static_cast<T>(spec.qmin()) && q <= static_cast<T>(spec.qmax()) ? 1 : 0;
}

/// Per-tensor parameters for x: from its range, and a tighter scale that clips.
template <class T>
std::vector<qparams<T>> params_for(const std::vector<T>& x, const qspec& spec) {
  T lo, hi;
  qlib_test::minmax_of(x, &lo, &hi);
  const qparams<T> p = qlib::qparams_from_range(lo, hi, spec);
  qparams<T> tight = p;
  tight.scale = p.scale * T(0.55);
  return {p, tight};
}

template <class T>
void check_per_tensor(const std::vector<T>& x, const qparams<T>& p, const qspec& spec, rounding mode) {
  const shape_t shape(x.size());
  const auto expect = quantize_dequantize(x, shape, p, spec, mode);
  std::vector<T> out(x.size(), T(-7));
  qlib::fake_quantize(qlib::view(x), p, spec, tensor_view<T>(out.data(), shape), mode);
  INFO("scale " << p.scale << " zero point " << p.zero_point);
  CHECK(first_bit_difference(out, expect) == -1);

  std::vector<T> inplace = x;
  qlib::fake_quantize_inplace(tensor_view<T>(inplace.data(), shape), p, spec, mode);
  CHECK(first_bit_difference(inplace, expect) == -1);

  std::vector<T> out2(x.size());
  std::vector<std::uint8_t> mask(x.size(), 9);
  qlib::fake_quantize_cachemask(qlib::view(x), p, spec, tensor_view<T>(out2.data(), shape),
                                tensor_view<std::uint8_t>(mask.data(), shape), mode);
  CHECK(first_bit_difference(out2, expect) == -1);
  std::size_t bad = 0;
  for (std::size_t i = 0; i < x.size(); ++i) bad += mask[i] != brute_mask(x[i], p.scale, p.zero_point, spec, mode);
  CHECK(bad == 0);
}

TEST_CASE("fake_quantize: bit-identical to quantize + dequantize on every distribution") {
  for (const qspec& spec : qlib_test::test_specs()) {
    for (auto d : qlib_test::all_dists()) {
      for (rounding mode : {rounding::half_to_even, rounding::half_away_from_zero}) {
        INFO(qlib_test::spec_name(spec) << " " << qlib_test::dist_name(d) << " mode " << int(mode));
        const auto xf = qlib_test::sample<float>(d, 4099, 11);
        for (const auto& p : params_for(xf, spec)) check_per_tensor(xf, p, spec, mode);
        const auto xd = qlib_test::sample<double>(d, 1031, 12);
        for (const auto& p : params_for(xd, spec)) check_per_tensor(xd, p, spec, mode);
      }
    }
  }
}

TEST_CASE("fake_quantize: exact ties x / s = k + 1/2 round like the reference") {
  for (const qspec& spec : qlib_test::test_specs()) {
    for (rounding mode : {rounding::half_to_even, rounding::half_away_from_zero}) {
      INFO(qlib_test::spec_name(spec) << " mode " << int(mode));
      // A power-of-two scale makes x / s exact, so every x below is a tie.
      const qparams<float> pf{0.125f, spec.scheme == qlib::qscheme::affine ? spec.qmin() + 3 : 0};
      std::vector<float> x;
      for (int k = spec.qmin() - 40; k <= spec.qmax() + 40 && x.size() < 20000; ++k)
        x.push_back((static_cast<float>(k) + 0.5f) * 0.125f);
      check_per_tensor(x, pf, spec, mode);
      const qparams<double> pd{0.25, pf.zero_point};
      std::vector<double> xd;
      for (float v : x) xd.push_back(2.0 * v);
      check_per_tensor(xd, pd, spec, mode);
      // A scale that is not a power of two: near-ties on both sides.
      std::vector<float> near;
      const float s = 0.1f;
      for (int k = -300; k < 300; ++k) {
        const float t = (static_cast<float>(k) + 0.5f) * s;
        near.push_back(t);
        near.push_back(std::nextafter(t, 1e9f));
        near.push_back(std::nextafter(t, -1e9f));
      }
      check_per_tensor(near, qparams<float>{s, pf.zero_point}, spec, mode);
    }
  }
}

TEST_CASE("fake_quantize: sizes around the block length, empty tensors") {
  const qspec spec = qspec::torch_quint8();
  for (std::size_t n : {0u, 1u, 15u, 16u, 17u, 31u, 32u, 33u, 100u}) {
    const auto x = qlib_test::sample<float>(qlib_test::dist::laplace, n, 3);
    check_per_tensor(x, qparams<float>{0.02f, 100}, spec, rounding::half_to_even);
  }
}

TEST_CASE("fake_quantize: NaN and Inf, in the vector body and in the tail") {
  const qspec spec = qspec::tensorrt_int8();
  const qparams<float> p{0.1f, 0};
  std::vector<float> x(37, 0.25f);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  x[3] = nan, x[5] = inf, x[6] = -inf, x[34] = nan, x[35] = inf, x[36] = -inf;
  std::vector<float> out(x.size());
  std::vector<std::uint8_t> mask(x.size());
  qlib::fake_quantize_cachemask(qlib::view(x), p, spec, tensor_view<float>(out.data(), x.size()),
                                tensor_view<std::uint8_t>(mask.data(), x.size()));
  for (std::size_t i : {3u, 34u}) {
    CHECK(std::isnan(out[i]));
    CHECK(mask[i] == 0);
  }
  for (std::size_t i : {5u, 35u}) {
    CHECK(out[i] == 127 * 0.1f);
    CHECK(mask[i] == 0);
  }
  for (std::size_t i : {6u, 36u}) {
    CHECK(out[i] == -128 * 0.1f);
    CHECK(mask[i] == 0);
  }
  CHECK(out[0] == qlib::fake_quantize_value(0.25f, 0.1f, 0, -128, 127));
  CHECK(mask[0] == 1);
}

/// Signed zeros and values that round to zero from below: the output is +0 like
/// dequantize(quantize(x)), never -0.
std::vector<float> with_signed_zeros(std::vector<float> x, float s) {
  for (float v : {-0.0f, 0.0f, -1e-30f, 1e-30f, -0.4f * s, -0.5f * s, 0.5f * s, -1e-45f})
    for (int k = 0; k < 5; ++k) x.insert(x.begin() + 7 * k, v);
  return x;
}

TEST_CASE("fake_quantize: signed zeros give +0 like quantize + dequantize") {
  for (const qspec& spec : {qspec::tensorrt_int8(), qspec::torch_quint8()}) {
    for (rounding mode : {rounding::half_to_even, rounding::half_away_from_zero}) {
      const auto x = with_signed_zeros(qlib_test::sample<float>(qlib_test::dist::tiny, 100, 1), 0.1f);
      check_per_tensor(x, qparams<float>{0.1f, 0}, spec, mode);
    }
  }
}

TEST_CASE("fake_quantize: the reference-rounding fallback outside round-to-nearest") {
  const qspec spec = qspec::amct_activation();
  for (rounding rmode : {rounding::half_to_even, rounding::half_away_from_zero}) {
    const auto x0 = qlib_test::sample<float>(qlib_test::dist::gaussian, 1000, 5);
    const qparams<float> p = params_for(x0, spec)[1];
    const auto x = with_signed_zeros(x0, p.scale);
    for (int mode : {FE_TOWARDZERO, FE_UPWARD, FE_DOWNWARD}) {
      REQUIRE(std::fesetround(mode) == 0);
      CHECK(!qlib::fast_rounding_available());
      std::vector<float> out(x.size());
      qlib::fake_quantize(qlib::view(x), p, spec, tensor_view<float>(out.data(), x.size()), rmode);
      const auto expect = quantize_dequantize(x, shape_t(x.size()), p, spec, rmode);
      std::fesetround(FE_TONEAREST);
      CHECK(first_bit_difference(out, expect) == -1);
    }
  }
  CHECK(qlib::fast_rounding_available());
}

TEST_CASE("fake_quantize: the exact and fast kernel policies agree") {
  namespace fq = qlib::detail::fq;
  const auto x = with_signed_zeros(qlib_test::sample<float>(qlib_test::dist::student_t2, 5003, 9), 0.05f);
  const fq::uniform<float> g(fq::make_grid(0.05f, 0, -128, 127));
  std::vector<float> a(x.size()), b(x.size()), c(x.size()), d(x.size());
  fq::forward<fq::even_fast>(x.data(), a.data(), x.size(), g);
  fq::forward<fq::even_exact>(x.data(), b.data(), x.size(), g);
  fq::forward<fq::away_fast>(x.data(), c.data(), x.size(), g);
  fq::forward<fq::away_exact>(x.data(), d.data(), x.size(), g);
  CHECK(first_bit_difference(a, b) == -1);
  CHECK(first_bit_difference(c, d) == -1);
}

// ---- per channel -----------------------------------------------------------------------

template <class T>
channel_qparams<T> channel_params(const std::vector<T>& x, const shape_t& shape, int axis, const qspec& spec) {
  const qlib::channel_layout l = qlib::layout_along(shape, axis);
  std::vector<T> lo(l.channels, T(0)), hi(l.channels, T(0));
  for (std::size_t o = 0; o < l.outer; ++o)
    for (std::size_t c = 0; c < l.channels; ++c)
      for (std::size_t i = 0; i < l.inner; ++i) {
        const T v = x[(o * l.channels + c) * l.inner + i];
        lo[c] = std::min(lo[c], v);
        hi[c] = std::max(hi[c], v);
      }
  channel_qparams<T> p = qlib::qparams_from_ranges(lo, hi, spec, axis);
  for (std::size_t c = 0; c < l.channels; c += 2) p.scale[c] *= T(0.6);  // some channels clip
  return p;
}

template <class T>
void check_per_channel(const shape_t& shape, int axis, const qspec& spec, rounding mode) {
  const auto x = qlib_test::sample<T>(qlib_test::dist::bimodal, shape.numel(), 21 + axis);
  const channel_qparams<T> p = channel_params(x, shape, axis, spec);
  const auto expect = quantize_dequantize(x, shape, p, spec, mode);
  std::vector<T> out(x.size());
  qlib::fake_quantize(qlib::view(x.data(), shape), p, spec, tensor_view<T>(out.data(), shape), mode);
  CHECK(first_bit_difference(out, expect) == -1);
  std::vector<T> inplace = x;
  qlib::fake_quantize_inplace(tensor_view<T>(inplace.data(), shape), p, spec, mode);
  CHECK(first_bit_difference(inplace, expect) == -1);

  // Mask by brute force, bool this time.
  std::vector<T> out2(x.size());
  std::unique_ptr<bool[]> mask(new bool[x.size()]);
  qlib::fake_quantize_cachemask(qlib::view(x.data(), shape), p, spec, tensor_view<T>(out2.data(), shape),
                                tensor_view<bool>(mask.get(), shape), mode);
  CHECK(first_bit_difference(out2, expect) == -1);
  const qlib::channel_layout l = qlib::layout_along(shape, axis);
  std::size_t bad = 0;
  for (std::size_t o = 0; o < l.outer; ++o)
    for (std::size_t c = 0; c < l.channels; ++c)
      for (std::size_t i = 0; i < l.inner; ++i) {
        const std::size_t j = (o * l.channels + c) * l.inner + i;
        bad += (mask[j] ? 1 : 0) != brute_mask(x[j], p.scale[c], p.zero_point[c], spec, mode);
      }
  CHECK(bad == 0);

  // Recomputing backward == mask backward == brute force.
  const auto dy = qlib_test::sample<T>(qlib_test::dist::gaussian, x.size(), 77);
  std::vector<T> dx1(x.size()), dx2(x.size());
  qlib::fake_quantize_backward(qlib::view(dy.data(), shape), qlib::view(x.data(), shape), p, spec,
                               tensor_view<T>(dx1.data(), shape), mode);
  qlib::fake_quantize_backward(qlib::view(dy.data(), shape), qlib::view(mask.get(), shape),
                               tensor_view<T>(dx2.data(), shape));
  std::vector<T> brute(x.size());
  for (std::size_t j = 0; j < x.size(); ++j) brute[j] = mask[j] ? dy[j] : T(0);
  CHECK(first_bit_difference(dx1, brute) == -1);
  CHECK(first_bit_difference(dx2, brute) == -1);
}

TEST_CASE("fake_quantize: per channel along every axis, bit-identical, with masks and backward") {
  for (const qspec& spec : {qspec::tensorrt_weight_int8(), qspec::torch_quint8(), qspec::amct_activation()}) {
    for (rounding mode : {rounding::half_to_even, rounding::half_away_from_zero}) {
      INFO(qlib_test::spec_name(spec) << " mode " << int(mode));
      const shape_t s3{3, 5, 7};
      for (int axis : {0, 1, 2, -1, -3}) {
        INFO("axis " << axis);
        check_per_channel<float>(s3, axis, spec, mode);
        check_per_channel<double>(s3, axis, spec, mode);
      }
      // Channel innermost with many channels (vectorized across channels), and a large
      // inner run (vectorized along it).
      check_per_channel<float>(shape_t{9, 67}, 1, spec, mode);
      check_per_channel<float>(shape_t{2, 3, 35}, -1, spec, mode);
      check_per_channel<float>(shape_t{6, 4, 50}, 1, spec, mode);
      check_per_channel<double>(shape_t{16, 3, 3}, 0, spec, mode);
      check_per_channel<float>(shape_t{40}, 0, spec, mode);
    }
  }
}

// ---- backward --------------------------------------------------------------------------

TEST_CASE("fake_quantize_backward: dx = dy * mask, with NaN in dy outside the grid not leaking") {
  const qspec spec = qspec::tensorrt_int8();
  const auto x = qlib_test::sample<float>(qlib_test::dist::outliers, 2001, 2);
  const qparams<float> p{0.01f, 0};  // clips most outliers
  auto dy = qlib_test::sample<float>(qlib_test::dist::laplace, x.size(), 4);
  std::vector<std::uint8_t> mask(x.size());
  std::vector<float> out(x.size());
  qlib::fake_quantize_cachemask(qlib::view(x), p, spec, tensor_view<float>(out.data(), x.size()),
                                tensor_view<std::uint8_t>(mask.data(), x.size()));
  std::size_t clipped = 0;
  for (std::size_t i = 0; i < x.size(); ++i)
    if (!mask[i]) {
      dy[i] = (clipped++ % 2) ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
    }
  REQUIRE(clipped > 20);
  std::vector<float> brute(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) brute[i] = mask[i] ? dy[i] : 0.0f;

  std::vector<float> dx(x.size(), -1.0f);
  qlib::fake_quantize_backward(qlib::view(dy), qlib::view(mask), tensor_view<float>(dx.data(), dx.size()));
  CHECK(first_bit_difference(dx, brute) == -1);
  // In place: dx in dy's buffer.
  std::vector<float> g = dy;
  qlib::fake_quantize_backward(qlib::view(g), qlib::view(mask), tensor_view<float>(g.data(), g.size()));
  CHECK(first_bit_difference(g, brute) == -1);
  // Recomputed from x, out of place and with dx in dy's or x's buffer.
  std::vector<float> dx2(x.size());
  qlib::fake_quantize_backward(qlib::view(dy), qlib::view(x), p, spec, tensor_view<float>(dx2.data(), dx2.size()));
  CHECK(first_bit_difference(dx2, brute) == -1);
  std::vector<float> g2 = dy;
  qlib::fake_quantize_backward(qlib::view(g2), qlib::view(x), p, spec, tensor_view<float>(g2.data(), g2.size()));
  CHECK(first_bit_difference(g2, brute) == -1);
  std::vector<float> x2 = x;
  qlib::fake_quantize_backward(qlib::view(dy), qlib::view(x2), p, spec, tensor_view<float>(x2.data(), x2.size()));
  CHECK(first_bit_difference(x2, brute) == -1);
}

// ---- bad input -------------------------------------------------------------------------

TEST_CASE("fake_quantize: bad input is rejected with a message naming the argument") {
  const qspec spec = qspec::tensorrt_int8();
  std::vector<float> x(12, 0.5f), out(12), small(5);
  std::vector<std::uint8_t> mask(12), mask_small(3);
  const qparams<float> p{0.1f, 0};
  const shape_t s34{3, 4};
  auto xv = qlib::view(x.data(), s34, "act");
  tensor_view<float> ov(out.data(), s34, "y");

  auto msg = error_message([&] { qlib::fake_quantize(xv, p, spec, tensor_view<float>(small.data(), 5)); },
                           errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("fake_quantize") && Catch::Contains("out") && Catch::Contains("'act'"));
  msg = error_message(
      [&] {
        qlib::fake_quantize(xv, p, spec, tensor_view<float>(out.data(), shape_t{4, 3}));
      },
      errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("does not match"));

  for (float bad : {0.0f, -1.0f}) {
    msg = error_message([&] { qlib::fake_quantize(xv, qparams<float>{bad, 0}, spec, ov); }, errc::invalid_argument);
    CHECK_THAT(msg, Catch::Contains("scale"));
  }
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    msg = error_message([&] { qlib::fake_quantize(xv, qparams<float>{bad, 0}, spec, ov); }, errc::non_finite);
    CHECK_THAT(msg, Catch::Contains("scale"));
  }
  msg = error_message([&] { qlib::fake_quantize(xv, qparams<float>{0.1f, 200}, spec, ov); }, errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("zero_point = 200") && Catch::Contains("[-128, 127]"));

  for (int bits : {1, 17}) {
    qspec b = spec;
    b.bits = bits;
    msg = error_message([&] { qlib::fake_quantize(xv, p, b, ov); }, errc::invalid_argument);
    CHECK_THAT(msg, Catch::Contains("bits = " + std::to_string(bits)));
  }

  // Partial overlap; exact aliasing is fine.
  msg =
      error_message([&] { qlib::fake_quantize(qlib::view(x.data(), 8), p, spec, tensor_view<float>(x.data() + 2, 8)); },
                    errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("overlap"));
  qlib::fake_quantize(qlib::view(x.data(), 8), p, spec, tensor_view<float>(x.data(), 8));

  msg = error_message([&] { qlib::fake_quantize(qlib::view(static_cast<const float*>(nullptr), 4, "w"), p, spec, ov); },
                      errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("no data"));

  // Masks: shape, overlap with a float buffer.
  msg = error_message(
      [&] { qlib::fake_quantize_cachemask(xv, p, spec, ov, tensor_view<std::uint8_t>(mask_small.data(), 3)); },
      errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("mask"));
  msg = error_message(
      [&] {
        qlib::fake_quantize_cachemask(xv, p, spec, ov,
                                      tensor_view<std::uint8_t>(reinterpret_cast<std::uint8_t*>(out.data()), s34));
      },
      errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("mask") && Catch::Contains("out") && Catch::Contains("disjoint"));

  // Per channel: count, axis, a bad channel scale.
  channel_qparams<float> cp;
  cp.axis = 1;
  cp.scale = {0.1f, 0.1f, 0.1f};
  cp.zero_point = {0, 0, 0};
  msg = error_message([&] { qlib::fake_quantize(xv, cp, spec, ov); }, errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("3 scales") && Catch::Contains("4 channels") && Catch::Contains("'act'"));
  cp.axis = 2;
  msg = error_message([&] { qlib::fake_quantize(xv, cp, spec, ov); }, errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("axis 2"));
  cp.axis = 0;
  cp.scale[1] = -2.0f;
  msg = error_message([&] { qlib::fake_quantize(xv, cp, spec, ov); }, errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("channel 1") && Catch::Contains("scale"));
  cp.scale[1] = 0.1f;
  cp.zero_point.pop_back();
  msg = error_message([&] { qlib::fake_quantize(xv, cp, spec, ov); }, errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("2 zero points"));

  // Backward: shapes of dy, mask, dx.
  msg = error_message(
      [&] {
        qlib::fake_quantize_backward(qlib::view(x.data(), s34, "g"), qlib::view(mask.data(), 12),
                                     tensor_view<float>(out.data(), s34));
      },
      errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("fake_quantize_backward") && Catch::Contains("mask") && Catch::Contains("dy"));
  msg = error_message(
      [&] {
        qlib::fake_quantize_backward(qlib::view(x.data(), s34), qlib::view(x.data(), s34), p, spec,
                                     tensor_view<float>(small.data(), 5));
      },
      errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("dx"));
  msg = error_message(
      [&] {
        qlib::fake_quantize_backward(qlib::view(x.data(), 10), qlib::view(out.data(), 10), p, spec,
                                     tensor_view<float>(x.data() + 1, 10));
      },
      errc::invalid_argument);
  CHECK_THAT(msg, Catch::Contains("overlap"));
}

}  // namespace
