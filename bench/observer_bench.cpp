// Observers on one thread over a 64 MiB float32 buffer, with the machine's baselines in the
// same run: a plain read (sum with several accumulators, vectorizes) and memcpy. Every
// pass over the buffer reports SetBytesProcessed(buffer bytes), so the ratio of two
// bytes_per_second figures is the ratio of their speeds (memcpy also writes as much).
// The searches (percentile, MSE) run on a 2048-bin histogram and report time per call.
#include <benchmark/benchmark.h>

#include <qlib/calib/search.hpp>
#include <qlib/core/quantize.hpp>
#include <qlib/observer/histogram.hpp>
#include <qlib/observer/minmax.hpp>
#include <qlib/observer/mse.hpp>
#include <qlib/observer/percentile.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace {

constexpr std::size_t kValues = std::size_t{64} << 18;  // 64 MiB of float32
constexpr std::int64_t kBytes = static_cast<std::int64_t>(kValues * sizeof(float));

const std::vector<float>& data() {
  static const std::vector<float> v = [] {
    std::vector<float> x(kValues);
    std::mt19937 g(7);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (auto& e : x) e = n(g);
    return x;
  }();
  return v;
}

qlib::minmax_t<float> range_of(const std::vector<float>& x) {
  qlib::minmax_t<float> mm{};
  qlib::detail::throw_if(qlib::check_and_minmax(qlib::view(x), "bench", &mm));
  return mm;
}

void BM_baseline_read_sum(benchmark::State& st) {
  const auto& x = data();
  for (auto _ : st) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (std::size_t i = 0; i + 8 <= x.size(); i += 8)
      for (std::size_t k = 0; k < 8; ++k) acc[k] += x[i + k];
    float s = 0;
    for (float a : acc) s += a;
    benchmark::DoNotOptimize(s);
  }
  st.SetBytesProcessed(st.iterations() * kBytes);
}

void BM_baseline_memcpy(benchmark::State& st) {
  const auto& x = data();
  std::vector<float> y(x.size());
  for (auto _ : st) {
    std::memcpy(y.data(), x.data(), x.size() * sizeof(float));
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * kBytes);
}

void BM_minmax_update(benchmark::State& st) {
  const auto& x = data();
  qlib::minmax_observer<float> obs;
  for (auto _ : st) obs.update(qlib::view(x));
  benchmark::DoNotOptimize(obs.max());
  st.SetBytesProcessed(st.iterations() * kBytes);
}

void BM_abs_histogram_add_2048(benchmark::State& st) {
  const auto& x = data();
  const auto mm = range_of(x);
  qlib::abs_histogram<float> h(2048);
  h.add(qlib::view(x.data(), 1024), mm);  // fixes the width on the whole range
  for (auto _ : st) h.add(qlib::view(x), mm);
  benchmark::DoNotOptimize(h.counts().data());
  st.SetBytesProcessed(st.iterations() * kBytes);
}

void BM_range_histogram_add_2048(benchmark::State& st) {
  const auto& x = data();
  const auto mm = range_of(x);
  qlib::range_histogram<float> h(2048);
  for (auto _ : st) h.add(qlib::view(x), mm);
  benchmark::DoNotOptimize(h.counts().data());
  st.SetBytesProcessed(st.iterations() * kBytes);
}

// A whole observer update: the finiteness / min-max check, then the histogram.
void BM_percentile_update_2048(benchmark::State& st) {
  const auto& x = data();
  qlib::percentile_observer<float> obs;
  for (auto _ : st) obs.update(qlib::view(x));
  benchmark::DoNotOptimize(obs.batches());
  st.SetBytesProcessed(st.iterations() * kBytes);
}

// An observer that saw 2^20 values (a 2048-bin histogram with data to search).
template <class Obs, class Options>
Obs filled(const Options& o) {
  Obs obs(o);
  obs.update(qlib::view(data().data(), std::size_t{1} << 20));
  return obs;
}

void BM_percentile_compute_2048(benchmark::State& st) {
  qlib::percentile_options o;
  o.spec.scheme = st.range(0) ? qlib::qscheme::affine : qlib::qscheme::symmetric;
  const auto obs = filled<qlib::percentile_observer<float>>(o);
  for (auto _ : st) benchmark::DoNotOptimize(obs.compute());
  st.SetLabel(st.range(0) ? "affine" : "symmetric");
}

void BM_mse_compute_2048(benchmark::State& st) {
  qlib::mse_options o;
  o.spec.scheme = st.range(0) ? qlib::qscheme::affine : qlib::qscheme::symmetric;
  o.affine_search = st.range(0) == 2 ? qlib::mse_affine_search::trim : qlib::mse_affine_search::scale;
  const auto obs = filled<qlib::mse_observer<float>>(o);
  st.counters["candidates"] = static_cast<double>(obs.candidates().size());
  for (auto _ : st) benchmark::DoNotOptimize(obs.compute());
  st.SetLabel(st.range(0) == 0 ? "symmetric" : st.range(0) == 1 ? "affine scale" : "affine trim");
}

// The same symmetric search written literally (every candidate fake-quantizes every bin
// centre), for the speed-up of the prefix-moment evaluator.
void BM_mse_literal_2048(benchmark::State& st) {
  qlib::mse_options o;
  const auto obs = filled<qlib::mse_observer<float>>(o);
  const qlib::hist_bins h = obs.bins();
  const auto cands = obs.candidates();
  const qlib::qspec spec = o.spec;
  for (auto _ : st) {
    double best = INFINITY;
    for (const auto& c : cands) {
      const auto p = qlib::qparams_from_range(c.lo, c.hi, spec);
      double num = 0.0;
      for (std::size_t j = 0; j < h.size; ++j) {
        const double x = h.centre(j);
        const double e = qlib::fake_quantize_value(x, p.scale, p.zero_point, spec.qmin(), spec.qmax()) - x;
        num += h.counts[j] * e * e;
      }
      best = std::min(best, num);
    }
    benchmark::DoNotOptimize(best);
  }
}

}  // namespace

BENCHMARK(BM_baseline_read_sum)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_baseline_memcpy)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_minmax_update)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_abs_histogram_add_2048)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_range_histogram_add_2048)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_percentile_update_2048)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_percentile_compute_2048)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_mse_compute_2048)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_mse_literal_2048)->Unit(benchmark::kMillisecond);
