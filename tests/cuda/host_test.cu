// Host-side checks of the CUDA headers' helpers (no device needed, so this always runs):
// rintf() against qlib::round_half_even (the equivalence the kernels rely on), the exact
// division by invariant integers, the bin rules' parameters, and argument validation that
// happens before any CUDA call.
#define QLIB_CUDA_TEST_REQUIRES_DEVICE 0
#include <cmath>
#include <cstdlib>
#include <limits>
#include <qlib/core/binning.hpp>
#include <qlib/core/qparams.hpp>
#include <qlib/cuda/fake_quant.cuh>
#include <qlib/cuda/histogram.cuh>
#include <qlib/cuda/minmax.cuh>
#include <random>

#include "cuda/cuda_test.hpp"

namespace qc = qlib::cuda;

namespace {

float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/// rint_even(v) == round_half_even(v) as values (both NaN counts as equal). The sign of a
/// zero result may differ (rintf(-0.3) = -0, round_half_even(-0.3) = +0); the kernels add
/// the zero point next, and r + z is +0 in round-to-nearest for either sign, so outputs
/// agree bit for bit.
bool rint_agrees(float v) {
  const float a = qc::detail::rint_even(v), b = qlib::round_half_even(v);
  if (a != a || b != b) return a != a && b != b;
  return a == b;
}

}  // namespace

TEST_CASE("cuda host: rintf equals round_half_even on every tie and its neighbours") {
  // Every x.5 with |x| < 2^23 is exactly representable; above 2^23 all floats are integers.
  long long bad = 0;
  float first_bad = 0.0f;
  for (std::int32_t k = -(1 << 23); k < (1 << 23); ++k) {
    const float tie = static_cast<float>(k) + 0.5f;
    const float cand[3] = {tie, std::nextafter(tie, -INFINITY), std::nextafter(tie, INFINITY)};
    for (float v : cand)
      if (!rint_agrees(v) && bad++ == 0) first_bad = v;
  }
  INFO("first disagreement at " << first_bad);
  CHECK(bad == 0);
}

TEST_CASE("cuda host: rintf equals round_half_even on special and random values") {
  const float specials[] = {0.0f,          -0.0f,           INFINITY,    -INFINITY,    NAN,         1e-45f,
                            -1e-45f,       1.17549435e-38f, 0.49999997f, -0.49999997f, 0.5f,        -0.5f,
                            1.5f,          -2.5f,           8388607.5f,  8388608.0f,   16777217.0f, 3.4028235e38f,
                            -3.4028235e38f};
  for (float v : specials) {
    INFO("value " << v);
    CHECK(rint_agrees(v));
  }
  std::mt19937 g(12345);
  long long bad = 0;
  for (int i = 0; i < (1 << 24); ++i)
    if (!rint_agrees(from_bits(g()))) ++bad;
  CHECK(bad == 0);
}

TEST_CASE("cuda host: rintf equals round_half_even on all 2^32 floats (QLIB_EXHAUSTIVE=1)") {
  const char* env = std::getenv("QLIB_EXHAUSTIVE");
  if (!env || std::string(env) != "1") {
    std::printf("note: set QLIB_EXHAUSTIVE=1 to check all 2^32 float patterns (about 20 s)\n");
    CHECK(rint_agrees(1.5f));
    return;
  }
  long long bad = 0;
  std::uint32_t u = 0;
  do {
    if (!rint_agrees(from_bits(u))) ++bad;
  } while (++u != 0);
  CHECK(bad == 0);
}

TEST_CASE("cuda host: fast_divmod is exact division below 2^31") {
  std::vector<std::uint32_t> divisors;
  for (std::uint32_t d = 1; d <= 1100; ++d) divisors.push_back(d);
  for (int k = 10; k < 31; ++k) {
    const std::uint32_t p = 1u << k;
    divisors.insert(divisors.end(), {p - 1, p, p + 1, p / 3 * 2 + 1});
  }
  divisors.push_back((1u << 31) - 1);
  std::mt19937 g(7);
  for (int i = 0; i < 200; ++i) divisors.push_back(1 + g() % ((1u << 31) - 1));
  const std::uint32_t top = (1u << 31) - 1;
  long long bad = 0;
  for (std::uint32_t d : divisors) {
    const qc::detail::fast_divmod f(d);
    std::vector<std::uint32_t> ns = {0, 1, d - 1, d, d + 1, top, top - 1, top / d * d, top / d * d - 1};
    for (int i = 0; i < 2000; ++i) ns.push_back(g() % (top + 1u));
    for (std::uint32_t n : ns) {
      if (n > top) continue;
      if (f.div(n) != n / d || f.mod(n) != n % d) {
        if (bad++ == 0) {
          INFO("n = " << n << ", d = " << d << ": got " << f.div(n) << ", want " << n / d);
          CHECK(false);
        }
      }
    }
  }
  CHECK(bad == 0);
}

TEST_CASE("cuda host: bin rules use core/binning.hpp's parameters and indices") {
  const qc::abs_bins a = qc::make_abs_bins(0.0123, 2048);
  CHECK(a.inv_width == qlib::abs_inv_width<float>(0.0123));
  CHECK(a.bins == 2048u);
  const qc::range_bins r = qc::make_range_bins(-1.5, 2.25, 4096);
  CHECK(r.lo == -1.5f);
  CHECK(r.inv_width == qlib::range_inv_width<float>(-1.5, 2.25, 4096));
  const auto x = qlib_test::sample<float>(qlib_test::dist::student_t2, 10000, 5);
  for (float v : x) {
    REQUIRE(a(v) == qlib::abs_bin_index(v, a.inv_width, a.bins));
    REQUIRE(r(v) == qlib::range_bin_index(v, r.lo, r.inv_width, r.bins));
  }
  CHECK(qc::detail::default_histogram_policy(2048).replicas == 8);
  CHECK(qc::detail::default_histogram_policy(4096).replicas == 4);
  CHECK(qc::detail::default_histogram_policy(8192).replicas == 2);
  CHECK(qc::detail::default_histogram_policy(16384).replicas == 1);
  CHECK(qc::detail::default_histogram_policy(100).replicas == 8);
}

TEST_CASE("cuda host: bad arguments are rejected before any CUDA call") {
  float* fake = reinterpret_cast<float*>(std::uintptr_t{256});  // never dereferenced
  unsigned long long* counts = reinterpret_cast<unsigned long long*>(std::uintptr_t{256});
  std::size_t bytes = 0;
  // histogram: no bins, no output, no input
  CHECK(qc::histogram(fake, 10, qc::abs_bins{1.0f, 0}, counts) == cudaErrorInvalidValue);
  CHECK(qc::histogram(fake, 10, qc::abs_bins{1.0f, 2048}, static_cast<unsigned long long*>(nullptr)) ==
        cudaErrorInvalidValue);
  CHECK(qc::histogram(static_cast<const float*>(nullptr), 10, qc::range_bins{0.0f, 1.0f, 2048}, counts) ==
        cudaErrorInvalidValue);
  CHECK(qc::copy_counts_to_host(nullptr, 4, static_cast<std::vector<std::uint64_t>*>(nullptr)) ==
        cudaErrorInvalidValue);
  // minmax: empty tensor, no channels
  CHECK(qc::minmax(nullptr, bytes, fake, 0, nullptr) == cudaErrorInvalidValue);
  CHECK(qc::minmax_per_channel(nullptr, bytes, fake, qc::channel_shape{1, 0, 4}, fake, fake, nullptr) ==
        cudaErrorInvalidValue);
  // fake-quant: inverted grid, bad host parameters, missing pointers
  qc::quant_grid inverted{5, 4, qlib::rounding::half_to_even};
  CHECK(qc::fake_quantize(fake, fake, nullptr, 10, qlib::qparams<float>{0.1f, 0}, inverted) == cudaErrorInvalidValue);
  const qc::quant_grid g = qc::quant_grid::of(qlib::qspec::tensorrt_int8());
  CHECK(g.qmin == -128);
  CHECK(g.qmax == 127);
  CHECK(qc::fake_quantize(fake, fake, nullptr, 10, qlib::qparams<float>{0.0f, 0}, g) == cudaErrorInvalidValue);
  CHECK(qc::fake_quantize(fake, fake, nullptr, 10, qlib::qparams<float>{NAN, 0}, g) == cudaErrorInvalidValue);
  CHECK(qc::fake_quantize(fake, fake, nullptr, 10, qlib::qparams<float>{INFINITY, 0}, g) == cudaErrorInvalidValue);
  CHECK(qc::fake_quantize(fake, fake, nullptr, 10, qlib::qparams<float>{0.1f, 200}, g) == cudaErrorInvalidValue);
  CHECK(qc::fake_quantize(fake, fake, nullptr, 10, qc::device_qparams{}, g) == cudaErrorInvalidValue);
  CHECK(qc::fake_quantize(static_cast<const float*>(nullptr), fake, nullptr, 10, qlib::qparams<float>{0.1f, 0}, g) ==
        cudaErrorInvalidValue);
  CHECK(qc::fake_quantize_per_channel(fake, fake, nullptr, qc::channel_shape{2, 0, 3},
                                      qc::device_qparams{fake, nullptr}, g) == cudaErrorInvalidValue);
  CHECK(qc::fake_quantize_backward_masked(fake, nullptr, fake, 10) == cudaErrorInvalidValue);
  CHECK(qc::fake_quantize_backward(fake, fake, fake, 10, qc::device_qparams{}, g) == cudaErrorInvalidValue);
  // LSQ: no channels, inverted grid
  CHECK(qc::lsq_backward_per_channel(nullptr, bytes, fake, fake, fake, qc::channel_shape{3, 0, 2}, qc::device_qparams{},
                                     g, 1.0f, fake) == cudaErrorInvalidValue);
  CHECK(qc::lsq_backward(nullptr, bytes, fake, fake, fake, 10, qc::device_qparams{}, inverted, 1.0f, fake) ==
        cudaErrorInvalidValue);
  // n == 0 is a no-op for the elementwise ops (no device needed).
  CHECK(qc::fake_quantize(fake, fake, nullptr, 0, qlib::qparams<float>{0.1f, 0}, g) == cudaSuccess);
  CHECK(qc::fake_quantize_backward_masked(fake, nullptr, fake, 0) == cudaSuccess);
}

TEST_CASE("cuda host: channel_shape takes the core's per-channel layout") {
  const qc::channel_shape s = qlib::layout_along(qlib::shape_t{2, 3, 4, 5}, 1);
  CHECK(s.outer == 2);
  CHECK(s.channels == 3);
  CHECK(s.inner == 20);
  CHECK(s.numel() == 120);
  const qc::channel_shape last = qlib::layout_along(qlib::shape_t{2, 3, 4, 5}, -1);
  CHECK(last.outer == 24);
  CHECK(last.channels == 5);
  CHECK(last.inner == 1);
}

TEST_CASE("cuda host: helpers for the host observers") {
  CHECK(qc::lsq_grad_factor(1000, 127) == static_cast<float>(1.0 / std::sqrt(1000.0 * 127.0)));
  CHECK(qc::lsq_grad_factor(0, 0) == 1.0f);
  qc::nonfinite_stats clean{0, qc::nonfinite_stats::no_index};
  CHECK(qc::check_nonfinite(clean, "minmax observer 'a'").ok());
  qc::nonfinite_stats dirty{3, 17};
  const qlib::status s = qc::check_nonfinite(dirty, "minmax observer 'a'");
  CHECK(s.code() == qlib::errc::non_finite);
  CHECK(s.message() == "minmax observer 'a': tensor holds 3 NaN/Inf value(s); the first at flat index 17");
  qc::minmax_stats st{-1.5f, 2.0f, clean};
  const qlib::minmax_t<float> mm = qc::to_minmax(st);
  CHECK(mm.min == -1.5f);
  CHECK(mm.max == 2.0f);
}
