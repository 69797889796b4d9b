// qlib::cuda::histogram against core/binning.hpp's rules in a plain CPU loop: counts must be
// identical, for every distribution, bin count, rule, storage type, alignment and tuning.
#define QLIB_CUDA_TEST_REQUIRES_DEVICE 1
#include <algorithm>
#include <cmath>
#include <qlib/core/binning.hpp>
#include <qlib/cuda/histogram.cuh>

#include "cuda/cuda_test.hpp"

#if __has_include(<qlib/observer/histogram.hpp>)
#include <qlib/observer/histogram.hpp>
#define QLIB_CUDA_TEST_HAS_HOST_HISTOGRAM 1
#endif

namespace qc = qlib::cuda;
using qlib_cuda_test::device_buffer;

namespace {

template <class T>
std::vector<std::uint64_t> cpu_counts(const std::vector<T>& x, const qc::abs_bins& r) {
  std::vector<std::uint64_t> c(r.bins, 0);
  for (const T& v : x) ++c[qlib::abs_bin_index(qlib_cuda_test::to_float(v), r.inv_width, r.bins)];
  return c;
}
template <class T>
std::vector<std::uint64_t> cpu_counts(const std::vector<T>& x, const qc::range_bins& r) {
  std::vector<std::uint64_t> c(r.bins, 0);
  for (const T& v : x) ++c[qlib::range_bin_index(qlib_cuda_test::to_float(v), r.lo, r.inv_width, r.bins)];
  return c;
}

template <class T, class Bins>
std::vector<std::uint64_t> gpu_counts(const std::vector<T>& x, std::size_t skew, const Bins& rule,
                                      const qc::detail::histogram_policy* policy = nullptr) {
  device_buffer<T> d(x.size(), skew);
  d.upload(x);
  device_buffer<unsigned long long> c(rule.bins);
  c.fill_bytes(0x5A);  // garbage: overwrite mode must clear it
  if (policy)
    CUDA_REQUIRE(qc::detail::histogram_dispatch(d.data(), x.size(), rule, c.data(), qc::count_mode::overwrite, *policy,
                                                cudaStream_t{}));
  else
    CUDA_REQUIRE(qc::histogram(d.data(), x.size(), rule, c.data()));
  std::vector<std::uint64_t> out;
  CUDA_REQUIRE(qc::copy_counts_to_host(c.data(), rule.bins, &out));
  return out;
}

float amax_of(const std::vector<float>& x) {
  float a = 0.0f;
  for (float v : x) a = std::max(a, std::fabs(v));
  return a;
}

/// The abs rule an observer would use for this data (width = amax / bins; 1 for zeros).
qc::abs_bins abs_rule_for(const std::vector<float>& x, std::uint32_t bins) {
  const double a = amax_of(x);
  return qc::make_abs_bins(a > 0 ? a / bins : 1.0, bins);
}
/// The range rule over the data's [min, max] (widened when constant).
qc::range_bins range_rule_for(const std::vector<float>& x, std::uint32_t bins) {
  double lo = *std::min_element(x.begin(), x.end()), hi = *std::max_element(x.begin(), x.end());
  if (!(hi > lo)) {
    lo -= 1.0;
    hi += 1.0;
  }
  return qc::make_range_bins(lo, hi, bins);
}

long long first_diff(const std::vector<std::uint64_t>& a, const std::vector<std::uint64_t>& b) {
  if (a.size() != b.size()) return -2;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return static_cast<long long>(i);
  return -1;
}

template <class T>
void check_all_distributions() {
  const std::size_t sizes[] = {1, 37, 100003, (1u << 20) + 5};
  const std::uint32_t bin_counts[] = {2048, 4096, 8192};
  int round = 0;
  for (auto d : qlib_test::all_dists()) {
    for (std::size_t n : sizes) {
      const auto xf = qlib_test::sample<float>(d, n, 11 + round);
      const auto x = qlib_cuda_test::convert<T>(xf);
      std::vector<float> widened(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) widened[i] = qlib_cuda_test::to_float(x[i]);
      const std::uint32_t bins = bin_counts[round % 3];
      const std::size_t skew = static_cast<std::size_t>(round % 4);
      ++round;
      INFO(qlib_cuda_test::type_name(T{})
           << " " << qlib_test::dist_name(d) << ", n = " << n << ", bins = " << bins << ", skew = " << skew);
      const qc::abs_bins a = abs_rule_for(widened, bins);
      CHECK(first_diff(gpu_counts(x, skew, a), cpu_counts(x, a)) == -1);
      const qc::range_bins r = range_rule_for(widened, bins);
      CHECK(first_diff(gpu_counts(x, skew, r), cpu_counts(x, r)) == -1);
    }
  }
}

}  // namespace

TEST_CASE("cuda histogram: float counts equal the CPU rule on every distribution") { check_all_distributions<float>(); }

TEST_CASE("cuda histogram: half counts equal the CPU rule on the widened values") { check_all_distributions<__half>(); }

TEST_CASE("cuda histogram: any bin count, including shared-memory and global fallbacks") {
  const auto x = qlib_test::sample<float>(qlib_test::dist::laplace, 300001, 4);
  for (std::uint32_t bins : {1u, 7u, 100u, 2048u, 3000u, 16384u, 20000u, 100000u}) {
    INFO("bins = " << bins);
    const qc::abs_bins a = abs_rule_for(x, bins);
    CHECK(first_diff(gpu_counts(x, 1, a), cpu_counts(x, a)) == -1);
    const qc::range_bins r = range_rule_for(x, bins);
    CHECK(first_diff(gpu_counts(x, 0, r), cpu_counts(x, r)) == -1);
  }
}

TEST_CASE("cuda histogram: every replica count and block size gives the same counts") {
  const auto x = qlib_test::sample<float>(qlib_test::dist::relu, 500000, 9);  // many zeros: contention
  for (std::uint32_t bins : {2048u, 8192u}) {
    const qc::abs_bins a = abs_rule_for(x, bins);
    const qc::range_bins r = range_rule_for(x, bins);
    const auto want_a = cpu_counts(x, a), want_r = cpu_counts(x, r);
    for (int replicas : {1, 2, 4, 8}) {
      for (int threads : {128, 256, 512, 1024}) {
        INFO("bins = " << bins << ", replicas = " << replicas << ", threads = " << threads);
        const qc::detail::histogram_policy p{replicas, threads};
        CHECK(first_diff(gpu_counts(x, 2, a, &p), want_a) == -1);
        CHECK(first_diff(gpu_counts(x, 0, r, &p), want_r) == -1);
      }
    }
  }
}

TEST_CASE("cuda histogram: edges, out-of-range values, NaN and Inf land where binning.hpp puts them") {
  const std::uint32_t bins = 2048;
  const qc::range_bins r = qc::make_range_bins(-2.0, 3.0, bins);
  const qc::abs_bins a = qc::make_abs_bins(3.0 / bins, bins);
  std::vector<float> x = {-2.0f, 3.0f, -5.0f, 7.0f, 0.0f, -0.0f, NAN, INFINITY, -INFINITY, 1e-40f, -1e-40f};
  for (std::uint32_t j = 0; j <= bins; ++j) {  // every bin edge, and its neighbours
    const float e = static_cast<float>(-2.0 + 5.0 * j / bins);
    x.insert(x.end(), {e, std::nextafter(e, -INFINITY), std::nextafter(e, INFINITY)});
  }
  CHECK(first_diff(gpu_counts(x, 0, r), cpu_counts(x, r)) == -1);
  CHECK(first_diff(gpu_counts(x, 3, a), cpu_counts(x, a)) == -1);
}

TEST_CASE("cuda histogram: accumulate adds batches, overwrite starts again, n = 0 only applies the mode") {
  const auto x1 = qlib_test::sample<float>(qlib_test::dist::gaussian, 70001, 1);
  const auto x2 = qlib_test::sample<float>(qlib_test::dist::bimodal, 50003, 2);
  const qc::abs_bins a = abs_rule_for(x2, 4096);
  device_buffer<float> d1(x1.size()), d2(x2.size());
  d1.upload(x1);
  d2.upload(x2);
  device_buffer<unsigned long long> c(a.bins);
  CUDA_REQUIRE(qc::histogram(d1.data(), x1.size(), a, c.data(), qc::count_mode::overwrite));
  CUDA_REQUIRE(qc::histogram(d2.data(), x2.size(), a, c.data(), qc::count_mode::accumulate));
  CUDA_REQUIRE(qc::histogram(d2.data(), 0, a, c.data(), qc::count_mode::accumulate));
  std::vector<std::uint64_t> got;
  CUDA_REQUIRE(qc::copy_counts_to_host(c.data(), a.bins, &got));
  auto want = cpu_counts(x1, a);
  const auto w2 = cpu_counts(x2, a);
  for (std::size_t i = 0; i < want.size(); ++i) want[i] += w2[i];
  CHECK(first_diff(got, want) == -1);
  std::vector<double> as_double;
  CUDA_REQUIRE(qc::copy_counts_to_host(c.data(), a.bins, &as_double));
  CHECK(as_double.size() == want.size());
  CHECK(as_double[0] == static_cast<double>(want[0]));
  CUDA_REQUIRE(qc::histogram(d2.data(), 0, a, c.data(), qc::count_mode::overwrite));
  CUDA_REQUIRE(qc::copy_counts_to_host(c.data(), a.bins, &got));
  CHECK(std::all_of(got.begin(), got.end(), [](std::uint64_t v) { return v == 0; }));
}

#ifdef QLIB_CUDA_TEST_HAS_HOST_HISTOGRAM
// The wiring documented in histogram.cuh: prepare() on the host, counts on the device,
// accumulate() on the host, equal to the CPU observers' own add().
TEST_CASE("cuda histogram: device counts feed the host observers exactly") {
  qlib::abs_histogram<float> cpu_abs(2048), gpu_abs(2048);
  qlib::range_histogram<float> cpu_rng(2048), gpu_rng(2048);
  device_buffer<unsigned long long> counts(1 << 16);
  std::uint64_t seed = 30;
  for (auto d : {qlib_test::dist::zeros, qlib_test::dist::gaussian, qlib_test::dist::outliers, qlib_test::dist::relu}) {
    const auto x = qlib_test::sample<float>(d, 100000, seed++);
    const qlib::minmax_t<float> mm{*std::min_element(x.begin(), x.end()), *std::max_element(x.begin(), x.end())};
    device_buffer<float> dx(x.size());
    dx.upload(x);
    cpu_abs.add(qlib::view(x), mm);
    cpu_rng.add(qlib::view(x), mm);
    const qlib::bin_rule<float> ra = gpu_abs.prepare(mm);
    if (ra.bins == 0) {
      gpu_abs.add_pending_zeros(static_cast<double>(x.size()));
    } else {
      REQUIRE(ra.bins <= (1u << 16));
      CUDA_REQUIRE(qc::histogram(dx.data(), x.size(), qc::abs_bins{ra.inv_width, ra.bins}, counts.data()));
      std::vector<std::uint64_t> h;
      CUDA_REQUIRE(qc::copy_counts_to_host(counts.data(), ra.bins, &h));
      gpu_abs.accumulate(h.data(), h.size());
    }
    const qlib::bin_rule<float> rr = gpu_rng.prepare(mm);
    if (rr.constant) {
      std::vector<std::uint64_t> h(rr.bins, 0);
      h[rr.bins / 2] = x.size();
      gpu_rng.accumulate(h.data(), h.size());
    } else {
      CUDA_REQUIRE(qc::histogram(dx.data(), x.size(), qc::range_bins{rr.lo, rr.inv_width, rr.bins}, counts.data()));
      std::vector<std::uint64_t> h;
      CUDA_REQUIRE(qc::copy_counts_to_host(counts.data(), rr.bins, &h));
      gpu_rng.accumulate(h.data(), h.size());
    }
    INFO("after " << qlib_test::dist_name(d));
    CHECK(gpu_abs.counts() == cpu_abs.counts());
    CHECK(gpu_abs.pending_zeros() == cpu_abs.pending_zeros());
    CHECK(gpu_rng.counts() == cpu_rng.counts());
  }
}
#endif
