// Fixed-point requantization: every function against exact 128-bit references written from
// the rounding definitions, on edge values and random values; quantize_multiplier's round
// trip and its range; bad input.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <qlib/core/fixed_point.hpp>
#include <random>
#include <string>
#include <vector>

#include "fuse/exact_requant.hpp"

using qlib::multiply_by_quantized_multiplier;
using qlib::multiply_by_quantized_multiplier_single_rounding;
using qlib::quantize_multiplier;
using qlib::requantize_rounding;
using qlib::rounding_divide_by_pot;
using qlib::saturating_rounding_doubling_high_mul;
using qlib_test::i128;
using qlib_test::pow2;

// Usable in constant expressions (and so under nvcc with QLIB_HOST_DEVICE).
static_assert(saturating_rounding_doubling_high_mul(INT32_MIN, INT32_MIN) == INT32_MAX, "SRDHM saturates");
static_assert(rounding_divide_by_pot(-3, 1) == -2, "ties away from zero");
static_assert(multiply_by_quantized_multiplier(7, 1 << 30, 1) == 7, "M = 1 is the identity");
static_assert(qlib::requantize(1000, 1 << 30, 0, 5, -128, 127) == 127, "clamped");
static_assert(qlib::multiply_by_quantized_multiplier_single_rounding(3, 1 << 30, -1) == 1, "0.75 -> 1, one rounding");
static_assert(qlib::requantize(3, 1 << 30, -1, 0, -128, 127, qlib::requantize_rounding::single_rounding) == 1,
              "single rounding through requantize");

namespace {

std::vector<std::int32_t> edge_values() {
  return {INT32_MIN,
          INT32_MIN + 1,
          INT32_MIN / 2,
          -(1 << 30) - 1,
          -(1 << 30),
          -65536,
          -255,
          -128,
          -3,
          -2,
          -1,
          0,
          1,
          2,
          3,
          127,
          255,
          65536,
          (1 << 30) - 1,
          1 << 30,
          INT32_MAX / 2,
          INT32_MAX - 1,
          INT32_MAX};
}

struct rng32 {
  std::mt19937_64 g;
  explicit rng32(std::uint64_t seed) : g(seed) {}
  std::int32_t any() { return static_cast<std::int32_t>(static_cast<std::uint32_t>(g())); }
  /// Values of every magnitude: a random int32 shifted right by 0..31 bits, random sign.
  std::int32_t spread() {
    const int bits = static_cast<int>(g() % 32);
    const std::int64_t mag = static_cast<std::int64_t>(g() % (std::uint64_t{1} << 31)) >> bits;
    return static_cast<std::int32_t>((g() & 1) ? -mag : mag);
  }
  std::int32_t mantissa() { return static_cast<std::int32_t>((1u << 30) + g() % (1u << 30)); }
  int shift() { return static_cast<int>(g() % 62) - 31; }
};

}  // namespace

TEST_CASE("fixed_point: saturating rounding doubling high mul, published and edge values") {
  // Ties round towards +infinity (gemmlowp's nudge; ARM VQRDMULH).
  CHECK(saturating_rounding_doubling_high_mul(1 << 15, 1 << 15) == 1);      // 2^30 / 2^31 = 0.5 -> 1
  CHECK(saturating_rounding_doubling_high_mul(-(1 << 15), 1 << 15) == 0);   // -0.5 -> 0
  CHECK(saturating_rounding_doubling_high_mul(3 << 15, 1 << 15) == 2);      // 1.5 -> 2
  CHECK(saturating_rounding_doubling_high_mul(-(3 << 15), 1 << 15) == -1);  // -1.5 -> -1
  CHECK(saturating_rounding_doubling_high_mul(INT32_MAX, INT32_MAX) == 2147483646);
  CHECK(saturating_rounding_doubling_high_mul(INT32_MIN, INT32_MAX) == -2147483647);
  CHECK(saturating_rounding_doubling_high_mul(INT32_MIN, INT32_MIN) == INT32_MAX);
  CHECK(saturating_rounding_doubling_high_mul(1000, 1 << 30) == 500);  // x * 0.5
  for (std::int32_t a : edge_values())
    for (std::int32_t b : edge_values()) {
      INFO("a = " << a << ", b = " << b);
      REQUIRE(saturating_rounding_doubling_high_mul(a, b) == qlib_test::ref_srdhm(a, b));
    }
}

TEST_CASE("fixed_point: SRDHM matches the exact reference and the real product on random values") {
  rng32 r(1);
  for (int i = 0; i < 200000; ++i) {
    const std::int32_t a = i % 2 ? r.any() : r.spread(), b = i % 3 ? r.any() : r.mantissa();
    const std::int32_t got = saturating_rounding_doubling_high_mul(a, b);
    REQUIRE(got == qlib_test::ref_srdhm(a, b));
    if (!(a == INT32_MIN && b == INT32_MIN)) {  // within half a step of a * b / 2^31
      const i128 err2 = static_cast<i128>(got) * pow2(32) - static_cast<i128>(a) * b * 2;
      REQUIRE(err2 <= pow2(31));
      REQUIRE(err2 > -pow2(31));
    }
  }
}

TEST_CASE("fixed_point: rounding divide by power of two rounds half away from zero") {
  CHECK(rounding_divide_by_pot(3, 1) == 2);
  CHECK(rounding_divide_by_pot(-3, 1) == -2);
  CHECK(rounding_divide_by_pot(5, 1) == 3);
  CHECK(rounding_divide_by_pot(-5, 1) == -3);
  CHECK(rounding_divide_by_pot(1, 1) == 1);
  CHECK(rounding_divide_by_pot(-1, 1) == -1);
  CHECK(rounding_divide_by_pot(-2, 2) == -1);  // -0.5
  CHECK(rounding_divide_by_pot(5, 2) == 1);    // 1.25
  CHECK(rounding_divide_by_pot(-5, 2) == -1);
  CHECK(rounding_divide_by_pot(6, 2) == 2);  // 1.5
  CHECK(rounding_divide_by_pot(-6, 2) == -2);
  CHECK(rounding_divide_by_pot(INT32_MIN, 31) == -1);  // -1 exactly
  CHECK(rounding_divide_by_pot(INT32_MAX, 31) == 1);
  CHECK(rounding_divide_by_pot(1 << 30, 31) == 1);  // 0.5 -> 1
  CHECK(rounding_divide_by_pot(-(1 << 30), 31) == -1);
  CHECK(rounding_divide_by_pot(INT32_MIN, 0) == INT32_MIN);
  CHECK(rounding_divide_by_pot(INT32_MIN, 32) == -1);  // -0.5 -> -1 (beyond gemmlowp's range, still defined)
  CHECK(rounding_divide_by_pot(INT32_MAX, 62) == 0);
  CHECK(rounding_divide_by_pot(INT32_MAX, 1000) == 0);
  CHECK(rounding_divide_by_pot(77, -4) == 77);
  rng32 r(2);
  for (std::int32_t x : edge_values())
    for (int e = 0; e <= 40; ++e) REQUIRE(rounding_divide_by_pot(x, e) == qlib_test::ref_rdbpot(x, e));
  for (int i = 0; i < 200000; ++i) {
    const std::int32_t x = i % 2 ? r.any() : r.spread();
    const int e = static_cast<int>(r.g() % 32);
    REQUIRE(rounding_divide_by_pot(x, e) == qlib_test::ref_rdbpot(x, e));
  }
}

TEST_CASE("fixed_point: multiply_by_quantized_multiplier is exact to its definition and within one step of acc * M") {
  rng32 r(3);
  auto check_one = [](std::int32_t acc, std::int32_t m0, int shift) {
    const std::int32_t got = multiply_by_quantized_multiplier(acc, m0, shift);
    INFO("acc = " << acc << ", m0 = " << m0 << ", shift = " << shift);
    REQUIRE(got == qlib_test::ref_mbqm(acc, m0, shift));
    REQUIRE(got == multiply_by_quantized_multiplier(acc, qlib::quantized_multiplier{m0, shift}));
    const int left = shift > 0 ? shift : 0, right = shift < 0 ? -shift : 0;
    const i128 shifted = static_cast<i128>(acc) * pow2(left);
    if (shifted > INT32_MAX || shifted < INT32_MIN) return;  // saturated: covered by the reference
    if (m0 == INT32_MIN && shifted == INT32_MIN) return;
    // |got - acc * m0 / 2^(31 - shift)| <= 1/2 (one rounding) or 1/2 + 2^-(right+1) (two).
    const i128 d = pow2(31 - shift);  // 2^(31 + right) or 2^(31 - left)
    const i128 err = static_cast<i128>(got) * d - static_cast<i128>(acc) * m0;
    const i128 bound = d / 2 + (right > 0 ? pow2(30) : 0);
    REQUIRE(err <= bound);
    REQUIRE(err >= -bound);
  };
  // Multipliers near 0 (shift -31), near 1 (m0 = 2^31 - 1, shift 0; m0 = 2^30, shift 1),
  // above 1 (shift up to 30), and edge accumulators.
  const std::vector<std::int32_t> m0s = {0, 1 << 30, (1 << 30) + 1, 3 << 29, INT32_MAX - 1, INT32_MAX};
  for (std::int32_t acc : edge_values())
    for (std::int32_t m0 : m0s)
      for (int shift = -31; shift <= 30; ++shift) check_one(acc, m0, shift);
  for (int i = 0; i < 300000; ++i) {  // drawn one by one: argument order is unspecified
    const std::int32_t acc = i % 2 ? r.spread() : r.any();
    const std::int32_t m0 = r.mantissa();
    check_one(acc, m0, r.shift());
  }
  // M = 1 is the identity while acc * 2 does not saturate; above that it saturates.
  for (std::int32_t acc : {-(1 << 30), -1000, -1, 0, 1, 1000, (1 << 30) - 1})
    CHECK(multiply_by_quantized_multiplier(acc, 1 << 30, 1) == acc);
  CHECK(multiply_by_quantized_multiplier(INT32_MAX, 1 << 30, 1) ==
        INT32_MAX / 2 + 1);  // (2^31 - 1) * 2 saturated, halved
  CHECK(multiply_by_quantized_multiplier(INT32_MIN, 1 << 30, 1) == INT32_MIN / 2);
  // Out-of-range shifts are defined (clamped), never undefined behaviour.
  CHECK(multiply_by_quantized_multiplier(5, 1 << 30, 40) == INT32_MAX / 2 + 1);
  CHECK(multiply_by_quantized_multiplier(INT32_MAX, INT32_MAX, -100) == 0);
}

TEST_CASE("fixed_point: requantize adds the zero point and clamps, exactly as the reference") {
  rng32 r(4);
  for (int i = 0; i < 200000; ++i) {
    const std::int32_t acc = r.spread(), m0 = r.mantissa();
    const int shift = r.shift();
    const std::int32_t z = static_cast<std::int32_t>(r.g() % 256) - 128;
    const std::int32_t got = qlib::requantize(acc, m0, shift, z, -128, 127);
    REQUIRE(got == qlib_test::ref_requantize(acc, m0, shift, z, -128, 127));
    REQUIRE(got >= -128);
    REQUIRE(got <= 127);
  }
  // A huge zero point never overflows: the sum is 64-bit.
  CHECK(qlib::requantize(INT32_MAX, INT32_MAX, 0, INT32_MAX, INT32_MIN, INT32_MAX) == INT32_MAX);
  CHECK(qlib::requantize(INT32_MIN, INT32_MAX, 0, INT32_MIN, INT32_MIN, INT32_MAX) == INT32_MIN);
  // ReLU clamp: qmin = zero point.
  CHECK(qlib::requantize(-1000, 1 << 30, 0, -20, -20, 127) == -20);
  CHECK(qlib::requantize(1000, qlib::quantized_multiplier{1 << 30, -3}, 3, -128, 127) == 66);  // 1000 / 16 = 62.5 -> 63
}

TEST_CASE("fixed_point: single rounding, published and edge values") {
  // TFLite's TFLITE_SINGLE_ROUNDING form: (acc * m0 + 2^(30 - shift)) >> (31 - shift).
  CHECK(multiply_by_quantized_multiplier_single_rounding(1, 1 << 30, 0) == 1);    // 0.5 -> 1
  CHECK(multiply_by_quantized_multiplier_single_rounding(-1, 1 << 30, 0) == 0);   // -0.5 -> 0 (ties up)
  CHECK(multiply_by_quantized_multiplier_single_rounding(3, 1 << 30, 0) == 2);    // 1.5 -> 2
  CHECK(multiply_by_quantized_multiplier_single_rounding(-3, 1 << 30, 0) == -1);  // -1.5 -> -1
  CHECK(multiply_by_quantized_multiplier_single_rounding(5, 1 << 30, -1) == 1);   // 1.25 -> 1
  // Why it exists: 1 * 0.375 (m0 = 0.75, shift -1). Double rounding: SRDHM rounds
  // 1 * 0.75 to 1, the right shift rounds 1 / 2 = 0.5 to 1; the nearest integer is 0.
  CHECK(multiply_by_quantized_multiplier(1, 3 << 29, -1) == 1);
  CHECK(multiply_by_quantized_multiplier_single_rounding(1, 3 << 29, -1) == 0);
  CHECK(multiply_by_quantized_multiplier_single_rounding(1000, 1 << 30, -3) == 63);    // 62.5 -> 63
  CHECK(multiply_by_quantized_multiplier_single_rounding(-1000, 1 << 30, -3) == -62);  // -62.5 -> -62
  CHECK(multiply_by_quantized_multiplier_single_rounding(7, 1 << 30, 1) == 7);         // M = 1
  CHECK(multiply_by_quantized_multiplier_single_rounding(INT32_MAX, 1 << 30, 1) == INT32_MAX);
  CHECK(multiply_by_quantized_multiplier_single_rounding(INT32_MIN, 1 << 30, 1) == INT32_MIN);
  CHECK(multiply_by_quantized_multiplier_single_rounding(INT32_MAX, 1 << 30, 2) == INT32_MAX);  // saturates
  CHECK(multiply_by_quantized_multiplier_single_rounding(INT32_MIN, INT32_MAX, -31) == -1);     // -(1 - 2^-31)
  CHECK(multiply_by_quantized_multiplier_single_rounding(INT32_MIN, 1 << 30, -31) == 0);        // -0.5 -> 0
  // Out-of-range shifts are defined (clamped to [-31, 31]), never undefined behaviour.
  CHECK(multiply_by_quantized_multiplier_single_rounding(5, 1 << 30, 31) == INT32_MAX);  // the product, saturated
  CHECK(multiply_by_quantized_multiplier_single_rounding(5, 3, 40) == 15);
  CHECK(multiply_by_quantized_multiplier_single_rounding(INT32_MAX, INT32_MAX, -100) == 1);  // as shift -31
  CHECK(multiply_by_quantized_multiplier_single_rounding(12345, INT32_MAX, -100) == 0);
  for (std::int32_t acc : edge_values())
    for (std::int32_t m0 : {0, 1, 1 << 30, (1 << 30) + 1, 3 << 29, INT32_MAX - 1, INT32_MAX})
      for (int shift = -31; shift <= 30; ++shift) {
        INFO("acc = " << acc << ", m0 = " << m0 << ", shift = " << shift);
        REQUIRE(multiply_by_quantized_multiplier_single_rounding(acc, m0, shift) ==
                qlib_test::ref_mbqm_single(acc, m0, shift));
      }
}

TEST_CASE("fixed_point: single rounding is the nearest integer to acc * M, exactly, on random values") {
  rng32 r(6);
  int differ_from_double = 0, right_shifted = 0;
  for (int i = 0; i < 300000; ++i) {
    const std::int32_t acc = i % 2 ? r.spread() : r.any();
    const std::int32_t m0 = r.mantissa();
    const int shift = r.shift();
    const std::int32_t got = multiply_by_quantized_multiplier_single_rounding(acc, m0, shift);
    INFO("acc = " << acc << ", m0 = " << m0 << ", shift = " << shift);
    REQUIRE(got == qlib_test::ref_mbqm_single(acc, m0, shift));
    REQUIRE(got == multiply_by_quantized_multiplier(acc, qlib::quantized_multiplier{m0, shift},
                                                    requantize_rounding::single_rounding));
    // Unless saturated: |got - acc * m0 / 2^(31 - shift)| <= 1/2, with a tie only rounded up.
    const i128 d = pow2(31 - shift);
    const i128 exact2 = static_cast<i128>(acc) * m0 * 2;  // 2 * acc * m0, against 2 * got * d
    const i128 err2 = static_cast<i128>(got) * d * 2 - exact2;
    if (got != INT32_MAX && got != INT32_MIN) {
      REQUIRE(err2 <= d);
      REQUIRE(err2 > -d);
    }
    // Where the classic form has no right shift (shift >= 0) and does not saturate, both
    // forms are the same single rounding: the default path is unchanged there.
    const std::int32_t classic = multiply_by_quantized_multiplier(acc, m0, shift);
    const i128 shifted = static_cast<i128>(acc) * pow2(shift > 0 ? shift : 0);
    if (shift >= 0 && shifted <= INT32_MAX && shifted >= INT32_MIN) REQUIRE(classic == got);
    if (shift < 0) {
      ++right_shifted;
      differ_from_double += classic != got;
      REQUIRE(std::abs(static_cast<long long>(classic) - got) <= 1);
    }
  }
  INFO("classic double rounding differs from single rounding on " << differ_from_double << " of " << right_shifted
                                                                  << " right-shifted products");
  CHECK(differ_from_double > 0);  // the two options are not the same function
}

TEST_CASE("fixed_point: requantize takes the rounding option; double rounding stays the default") {
  rng32 r(7);
  for (int i = 0; i < 200000; ++i) {
    const std::int32_t acc = r.spread(), m0 = r.mantissa();
    const int shift = r.shift();
    const std::int32_t z = static_cast<std::int32_t>(r.g() % 256) - 128;
    const qlib::quantized_multiplier m{m0, shift};
    REQUIRE(qlib::requantize(acc, m, z, -128, 127) == qlib_test::ref_requantize(acc, m0, shift, z, -128, 127));
    REQUIRE(qlib::requantize(acc, m, z, -128, 127, requantize_rounding::double_rounding) ==
            qlib_test::ref_requantize(acc, m0, shift, z, -128, 127));
    REQUIRE(qlib::requantize(acc, m, z, -128, 127, requantize_rounding::single_rounding) ==
            qlib_test::ref_requantize_single(acc, m0, shift, z, -128, 127));
    REQUIRE(multiply_by_quantized_multiplier(acc, m, requantize_rounding::double_rounding) ==
            multiply_by_quantized_multiplier(acc, m0, shift));
  }
  CHECK(std::string(qlib::to_string(requantize_rounding::single_rounding)) == "single_rounding");
  CHECK(std::string(qlib::to_string(requantize_rounding::double_rounding)) == "double_rounding");
}

TEST_CASE("fixed_point: quantize_multiplier round trip over the whole range") {
  CHECK(quantize_multiplier(0.0) == qlib::quantized_multiplier{0, 0});
  CHECK(quantize_multiplier(1.0) == qlib::quantized_multiplier{1 << 30, 1});
  CHECK(quantize_multiplier(0.5) == qlib::quantized_multiplier{1 << 30, 0});
  CHECK(quantize_multiplier(0.75) == qlib::quantized_multiplier{3 << 29, 0});
  CHECK(quantize_multiplier(3.0) == qlib::quantized_multiplier{3 << 29, 2});
  CHECK(quantize_multiplier(1.0 - std::ldexp(1.0, -40)) == qlib::quantized_multiplier{1 << 30, 1});  // rounds to 1
  CHECK(quantize_multiplier(std::ldexp(1.0, -32)) == qlib::quantized_multiplier{1 << 30, -31});
  CHECK(quantize_multiplier(std::ldexp(1.0, -33)) == qlib::quantized_multiplier{0, 0});  // flushed as TFLite
  CHECK(quantize_multiplier(std::ldexp(1.0, 29)) == qlib::quantized_multiplier{1 << 30, 30});
  CHECK(quantize_multiplier(std::ldexp(1.0, 30) - 1.0).shift == 30);
  CHECK(quantize_multiplier(1.0).value() == 1.0);
  std::mt19937_64 g(5);
  for (int i = 0; i < 100000; ++i) {
    const double u = 0.5 + static_cast<double>(g() >> 11) * std::ldexp(1.0, -54);  // [0.5, 1)
    const int e = static_cast<int>(g() % 75) - 45;                                 // 2^-46 .. 2^29
    const double m = std::ldexp(u, e);
    const auto q = quantize_multiplier(m);
    INFO("m = " << m);
    REQUIRE(((q.m0 >= (1 << 30)) || (q.m0 == 0 && q.shift == 0)));
    REQUIRE(q.shift >= qlib::min_multiplier_shift);
    REQUIRE(q.shift <= qlib::max_multiplier_shift);
    REQUIRE(std::fabs(m - q.value()) <= std::ldexp(1.0, q.shift - 32));
    if (q.m0 == 0) REQUIRE(m < std::ldexp(1.0, -32));
  }
}

TEST_CASE("fixed_point: bad multipliers are rejected with the culprit named") {
  const double inf = std::numeric_limits<double>::infinity();
  const auto code_of = [](double m) {
    qlib::quantized_multiplier q{123, 4};
    const qlib::status s = qlib::try_quantize_multiplier(m, &q, "multiplier of channel 3");
    if (!s.ok()) {
      CHECK(q == qlib::quantized_multiplier{123, 4});  // untouched
      CHECK(s.message().find("multiplier of channel 3") != std::string::npos);
    }
    return s.code();
  };
  CHECK(code_of(-0.5) == qlib::errc::invalid_argument);
  CHECK(code_of(std::nan("")) == qlib::errc::non_finite);
  CHECK(code_of(inf) == qlib::errc::non_finite);
  CHECK(code_of(std::ldexp(1.0, 30)) == qlib::errc::invalid_argument);
  CHECK(code_of(std::ldexp(1.0, 30) - 0.0625) == qlib::errc::invalid_argument);  // rounds up to shift 31
  CHECK(code_of(1e300) == qlib::errc::invalid_argument);
  CHECK(code_of(0.25) == qlib::errc::ok);
  CHECK_THROWS_WITH(quantize_multiplier(-1.0, "s_in / s_out"), Catch::Contains("s_in / s_out = -1 is negative"));
  CHECK_THROWS_AS(quantize_multiplier(std::ldexp(1.0, 31)), qlib::error);
}
