// KL (entropy) threshold search on a 2048-bin |x| histogram of activation-like data:
// qlib's prefix-sum search per variant against the published loop written plainly here
// (per candidate: build P and Q over all kept bins, normalize, KL), which must pick the
// same threshold. The ratio naive / tensorrt is the speed-up of the default variant.
#include <qlib/calib/entropy.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <vector>

namespace {

// Activation-like data: a Laplace body (scale 0.6), a ReLU-like half of exact zeros and
// 0.05% of outliers up to 25 units; |x| binned into 2048 bins of amax / 2048.
const std::vector<double>& histogram_2048(double* width) {
  static double w = 0.0;
  static const std::vector<double> counts = [] {
    std::mt19937_64 g(20240611);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    std::vector<double> x(1 << 20);
    for (double& v : x) {
      const double r = u(g);
      if (r < 0.0005)
        v = 25.0 * u(g);
      else if (r < 0.5)
        v = 0.0;
      else
        v = -0.6 * std::log(1.0 - u(g));
    }
    double amax = 0.0;
    for (double v : x) amax = std::max(amax, v);
    w = amax / 2048;
    std::vector<double> h(2048, 0.0);
    for (double v : x) h[std::min<std::size_t>(static_cast<std::size_t>(v / w), 2047)] += 1.0;
    return h;
  }();
  *width = w;
  return counts;
}

// The published loop (GTC 2017 slides s7310), one candidate at a time over all kept bins.
std::size_t naive_published(const std::vector<double>& bins, std::size_t levels) {
  const std::size_t n = bins.size();
  std::size_t best_i = n;
  double best = std::numeric_limits<double>::infinity();
  std::vector<double> p, q;
  for (std::size_t i = levels; i < n; ++i) {
    p.assign(bins.begin(), bins.begin() + static_cast<std::ptrdiff_t>(i));
    for (std::size_t j = i; j < n; ++j) p[i - 1] += bins[j];
    const std::size_t per = i / levels;
    q.assign(i, 0.0);
    for (std::size_t g = 0; g < levels; ++g) {
      const std::size_t a = g * per, b = g + 1 == levels ? i : a + per;
      double mass = 0.0, nonempty = 0.0;
      for (std::size_t j = a; j < b; ++j) {
        mass += bins[j];
        nonempty += bins[j] != 0.0 ? 1.0 : 0.0;
      }
      for (std::size_t j = a; j < b; ++j)
        if (bins[j] != 0.0) q[j] = mass / nonempty;
    }
    double sp = 0.0, sq = 0.0;
    for (std::size_t j = 0; j < i; ++j) {
      sp += p[j];
      sq += q[j];
    }
    double kl = 0.0;
    for (std::size_t j = 0; j < i; ++j) {
      if (p[j] == 0.0) continue;
      const double pk = p[j] / sp, qk = q[j] / sq;
      kl += qk == 0.0 ? std::numeric_limits<double>::infinity() : pk * std::log(pk / qk);
    }
    if (kl < best) {
      best = kl;
      best_i = i;
    }
  }
  return best_i;
}

void check_same_choice() {
  static const bool checked = [] {
    double w = 0.0;
    const auto& h = histogram_2048(&w);
    const std::size_t naive = naive_published(h, 128);
    const auto fast = qlib::entropy_search(h, w, qlib::entropy_options::tensorrt());
    if (fast.bin != naive) {
      std::fprintf(stderr, "entropy_bench: qlib picks bin %zu, the published loop %zu\n", fast.bin, naive);
      std::abort();
    }
    return true;
  }();
  (void)checked;
}

void BM_entropy_naive_published_loop(benchmark::State& state) {
  double w = 0.0;
  const auto& h = histogram_2048(&w);
  check_same_choice();
  for (auto _ : state) benchmark::DoNotOptimize(naive_published(h, 128));
}
BENCHMARK(BM_entropy_naive_published_loop)->Unit(benchmark::kMillisecond);

void BM_entropy_search(benchmark::State& state, qlib::entropy_options opt) {
  double w = 0.0;
  const auto& h = histogram_2048(&w);
  check_same_choice();
  std::size_t rescored = 0;
  for (auto _ : state) {
    const auto c = qlib::entropy_search(h, w, opt);
    rescored = c.rescored;
    benchmark::DoNotOptimize(c.threshold);
  }
  state.counters["rescored"] = static_cast<double>(rescored);
}
BENCHMARK_CAPTURE(BM_entropy_search, tensorrt, qlib::entropy_options::tensorrt())->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_entropy_search, tensorrt_mlperf, qlib::entropy_options::tensorrt_mlperf())->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_entropy_search, modelopt, qlib::entropy_options::modelopt())->Unit(benchmark::kMicrosecond);

// ORT's search on a 2048-bin signed histogram (the |x| histogram mirrored).
void BM_entropy_search_onnxruntime(benchmark::State& state) {
  double w = 0.0;
  const auto& h = histogram_2048(&w);
  std::vector<double> s(2048, 0.0), edges(2049);
  for (std::size_t j = 0; j < 1024; ++j) {
    s[1024 + j] = h[2 * j] + h[2 * j + 1];
    s[1023 - j] = std::floor(0.5 * (h[2 * j] + h[2 * j + 1]));
  }
  for (std::size_t k = 0; k <= 2048; ++k) edges[k] = (static_cast<double>(k) - 1024.0) * 2.0 * w;
  const auto opt = qlib::entropy_options::onnxruntime();
  std::size_t rescored = 0;
  for (auto _ : state) {
    const auto c = qlib::entropy_search_signed(s, edges, opt);
    rescored = c.rescored;
    benchmark::DoNotOptimize(c.hi);
  }
  state.counters["rescored"] = static_cast<double>(rescored);
}
BENCHMARK(BM_entropy_search_onnxruntime)->Unit(benchmark::kMicrosecond);

}  // namespace
