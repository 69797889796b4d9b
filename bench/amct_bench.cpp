// AMCT's IFMR and HFMG on one million values: qlib's searches against baselines written
// here with the structure of AMCT's own CPU kernels (hicann/amct .../quantize_lib/src/
// ifmr.cpp and hfmg.cpp), on the same inputs, with the same pick asserted before timing.
//
// - IFMR baseline: two copies partially sorted for the k-th largest / smallest (AMCT's
//   partial_sort), then for each of the 61 ratios a full pass over the values with clamp,
//   divide, round and square. Arithmetic made deterministic so both pick the same ratio:
//   round half to even (AMCT: round) and double sums (AMCT: float).
// - HFMG baseline: AMCT's cursor loop for the candidates, then for each candidate a pass over
//   all bins with AMCT's three-piece GetNorm (pow(delta, 3)) in data units, in double and
//   with signed offsets (AMCT's unsigned offsets would make the losses differ). Both take
//   the same 4096-bin histogram of the values. A variant with multiplications instead of pow
//   (PyTorch's _get_norm) shows how much of the baseline is pow.
#include <qlib/calib/amct.hpp>
#include <qlib/observer/hfmg.hpp>
#include <qlib/observer/ifmr.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "../tests/test_data.hpp"

namespace {

constexpr std::size_t million = 1000000;

const std::vector<float>& values() {
  static const std::vector<float> v = qlib_test::sample<float>(qlib_test::dist::gaussian, million, 42);
  return v;
}

const qlib::range_histogram<float>& histogram() {
  static const qlib::range_histogram<float> h = [] {
    qlib::range_histogram<float> r(4096);
    qlib::minmax_t<float> mm{};
    qlib::detail::throw_if(qlib::check_and_minmax(qlib::view(values().data(), values().size()), "bench", &mm));
    r.add(qlib::view(values().data(), values().size()), mm);
    return r;
  }();
  return h;
}

// ---- IFMR baseline (AMCT's structure) -------------------------------------------------------

std::size_t ifmr_amct_structure(const std::vector<float>& data, const qlib::qspec& spec) {
  const std::size_t n = data.size();
  const qlib::ifmr_params p;
  const std::size_t k_max = qlib::ifmr_rank(n, p.max_percentile), k_min = qlib::ifmr_rank(n, p.min_percentile);
  std::vector<float> in_max(data), in_min(data);
  std::partial_sort(in_max.begin(), in_max.begin() + static_cast<std::ptrdiff_t>(k_max), in_max.end(),
                    [](float a, float b) { return a > b; });
  std::partial_sort(in_min.begin(), in_min.begin() + static_cast<std::ptrdiff_t>(k_min), in_min.end());
  const float max0 = std::max(0.0f, in_max[k_max - 1]), min0 = std::min(0.0f, in_min[k_min - 1]);
  const std::vector<double> ratios = qlib::ifmr_ratios(p);
  const bool symmetric = spec.scheme == qlib::qscheme::symmetric;
  std::vector<double> noise(ratios.size());
  for (std::size_t i = 0; i < ratios.size(); ++i) {
    const float hi = static_cast<float>(ratios[i] * max0);
    const float lo = symmetric ? static_cast<float>(ratios[i] * min0) : min0;
    const float s = qlib::qparams_from_range(lo, hi, spec).scale;
    const float t = std::max(std::fabs(lo), std::fabs(hi));
    const float clo = symmetric ? -t : lo, chi = symmetric ? t : hi;
    double sum = 0.0;
    for (std::size_t j = 0; j < n; ++j) {
      float v = data[j];
      if (v < clo) {
        v = clo;
      } else if (v > chi) {
        v = chi;
      }
      const float q = std::nearbyint(v / s) * s;
      const double e = static_cast<double>(q) - static_cast<double>(data[j]);
      sum += e * e;
    }
    noise[i] = sum / static_cast<double>(n);
  }
  return static_cast<std::size_t>(std::min_element(noise.begin(), noise.end()) - noise.begin());
}

// ---- HFMG baseline (AMCT's structure) -------------------------------------------------------

double amct_norm(double begin, double end, double density) {
  return (std::pow(end, 3) - std::pow(begin, 3)) / 3 * density;  // hfmg.h GetNorm
}
double mult_norm(double begin, double end, double density) {
  return (end * end * end - begin * begin * begin) / 3 * density;  // PyTorch _get_norm
}

template <class Norm>
qlib::hfmg_candidate hfmg_amct_structure(const qlib::range_histogram<float>& h, Norm norm) {
  const std::vector<double>& counts = h.counts();
  const std::size_t bins = counts.size();
  // HfmgGetSearchRange
  double total = 0.0;
  for (double c : counts) total += c;
  const double step = std::max(std::ceil(std::round(total) / 100000.0), 1.0);
  const std::size_t min_bins = (bins + 3) / 4;
  std::size_t left = 0, right = bins - 1;
  std::vector<qlib::hfmg_candidate> range;
  while (right - left > min_bins) {
    std::size_t l = left, r = right;
    double ls = 0.0, rs = 0.0;
    while (l < r && ls < step) ls += counts[l++];
    while (l < r && rs < step) rs += counts[r--];
    if (right - r >= l - left) {
      right = r;
    } else {
      left = l;
    }
    range.push_back({static_cast<std::uint32_t>(left), static_cast<std::uint32_t>(right)});
  }
  // HfmgCalculateLoss for every candidate, over all bins, in data units.
  const double width = (h.hi() - h.lo()) / static_cast<double>(bins);
  const double dst = 256.0;
  std::vector<double> loss(range.size());
  for (std::size_t c = 0; c < range.size(); ++c) {
    const double dw = width * static_cast<double>(range[c].right - range[c].left + 1) / dst;
    double l2 = 0.0;
    for (std::size_t i = 0; i < bins; ++i) {
      const double begin = (static_cast<double>(i) - static_cast<double>(range[c].left)) * width;
      const double end = begin + width;
      const double b = std::min(dst - 1, std::max(0.0, std::floor(begin / dw)));
      const double e = std::min(dst - 1, std::max(0.0, std::floor(end / dw)));
      const double cb = b * dw + dw / 2;
      const double density = counts[i] / width;
      if (b == e) {
        l2 += norm(begin - cb, end - cb, density);
      } else {
        l2 += norm(begin - cb, dw / 2, density);
        l2 += (e - b - 1) * norm(-dw / 2, dw / 2, density);
        const double ce = e * dw + dw / 2;
        l2 += norm(-dw / 2, end - ce, density);
      }
    }
    loss[c] = l2;
  }
  return range[static_cast<std::size_t>(std::min_element(loss.begin(), loss.end()) - loss.begin())];
}

// ---- benchmarks ------------------------------------------------------------------------------

void BM_ifmr_exact_qlib(benchmark::State& state) {
  const auto& x = values();
  const qlib::qspec spec = qlib::qspec::amct_activation();
  const auto r = qlib::ifmr_search(x.data(), x.size(), qlib::ifmr_params{}, spec);
  if (r.best != ifmr_amct_structure(x, spec)) state.SkipWithError("qlib and the baseline pick different ratios");
  for (auto _ : state) benchmark::DoNotOptimize(qlib::ifmr_search(x.data(), x.size(), qlib::ifmr_params{}, spec));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * x.size()));
}

void BM_ifmr_exact_amct_structure(benchmark::State& state) {
  const auto& x = values();
  const qlib::qspec spec = qlib::qspec::amct_activation();
  for (auto _ : state) benchmark::DoNotOptimize(ifmr_amct_structure(x, spec));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * x.size()));
}

void BM_ifmr_observer_exact_update_compute(benchmark::State& state) {
  const auto& x = values();
  for (auto _ : state) {
    qlib::ifmr_observer<float> obs;
    obs.update(qlib::view(x.data(), x.size()));
    benchmark::DoNotOptimize(obs.compute());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * x.size()));
}

void BM_hfmg_search_qlib(benchmark::State& state) {
  const auto& h = histogram();
  const auto r = qlib::hfmg_search<float>(h.counts().data(), h.num_bins(), h.lo(), h.hi(), 8);
  const qlib::hfmg_candidate base = hfmg_amct_structure(h, amct_norm);
  if (!(r.candidates.at(r.best) == base)) state.SkipWithError("qlib and the baseline pick different ranges");
  for (auto _ : state) benchmark::DoNotOptimize(qlib::hfmg_search<float>(h.counts().data(), h.num_bins(), h.lo(), h.hi(), 8));
  state.counters["candidates"] = static_cast<double>(r.candidates.size());
}

void BM_hfmg_search_amct_structure(benchmark::State& state) {
  const auto& h = histogram();
  for (auto _ : state) benchmark::DoNotOptimize(hfmg_amct_structure(h, amct_norm));
}

void BM_hfmg_search_amct_structure_no_pow(benchmark::State& state) {
  const auto& h = histogram();
  const auto r = qlib::hfmg_search<float>(h.counts().data(), h.num_bins(), h.lo(), h.hi(), 8);
  if (!(r.candidates.at(r.best) == hfmg_amct_structure(h, mult_norm)))
    state.SkipWithError("qlib and the baseline pick different ranges");
  for (auto _ : state) benchmark::DoNotOptimize(hfmg_amct_structure(h, mult_norm));
}

void BM_hfmg_observer_update_compute(benchmark::State& state) {
  const auto& x = values();
  for (auto _ : state) {
    qlib::hfmg_observer<float> obs;
    obs.update(qlib::view(x.data(), x.size()));
    benchmark::DoNotOptimize(obs.compute());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * x.size()));
}

}  // namespace

BENCHMARK(BM_ifmr_exact_qlib)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ifmr_exact_amct_structure)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ifmr_observer_exact_update_compute)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_hfmg_search_qlib)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_hfmg_search_amct_structure)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_hfmg_search_amct_structure_no_pow)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_hfmg_observer_update_compute)->Unit(benchmark::kMillisecond);
