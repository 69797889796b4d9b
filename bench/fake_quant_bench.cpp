// Fake quantization on one thread over 64 MiB of float32, with memcpy of the same buffer
// in the same run as the baseline. Every benchmark reports SetBytesProcessed(bytes read +
// bytes written per pass), memcpy included (64 MiB read + 64 MiB written), so the ratio of
// two bytes_per_second figures is the ratio of their memory throughput; the target is
// >= 80% of memcpy. Run: qlib_benchmarks --benchmark_filter=BM_fq_
// The rates use CPU time (Google Benchmark's default), which is what to compare on a
// shared machine; the wall-clock column includes time spent waiting for a core.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <qlib/fakequant/fake_quant.hpp>
#include <qlib/fakequant/learnable.hpp>
#include <random>
#include <vector>

namespace {

constexpr std::size_t kValues = std::size_t{16} << 20;                           // 64 MiB of float32
constexpr std::int64_t kF = static_cast<std::int64_t>(kValues * sizeof(float));  // one float buffer
constexpr std::int64_t kM = static_cast<std::int64_t>(kValues);                  // one byte mask

std::vector<float> standard_normal(std::uint32_t seed) {
  std::vector<float> x(kValues);
  std::mt19937 g(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  for (auto& e : x) e = n(g);
  return x;
}

const std::vector<float>& input() {
  static const std::vector<float> v = standard_normal(11);
  return v;
}

const std::vector<float>& grad() {
  static const std::vector<float> v = standard_normal(12);
  return v;
}

// int8, scale for a 3-sigma range: about 0.3% of the values clip.
const qlib::qspec kSpec = qlib::qspec::tensorrt_int8();
const qlib::qparams<float> kParams{3.0f / 127.0f, 0};
// The per-channel shape: 256 channels along axis 1, runs of 4096 contiguous values.
const qlib::shape_t kChannelShape{16, 256, 4096};

qlib::channel_qparams<float> channel_params(std::size_t channels, int axis) {
  qlib::channel_qparams<float> p;
  p.axis = axis;
  for (std::size_t c = 0; c < channels; ++c) {
    p.scale.push_back((2.5f + 0.001f * static_cast<float>(c % 100)) / 127.0f);
    p.zero_point.push_back(0);
  }
  return p;
}

/// Times one pass per iteration and reports `bytes` (read + written) per pass.
template <class Pass>
void run_passes(benchmark::State& st, std::int64_t bytes, Pass&& pass) {
  for (auto _ : st) {
    pass();
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * bytes);
}

/// A writable flat view of v.
template <class T>
qlib::tensor_view<T> flat(std::vector<T>& v) {
  return qlib::tensor_view<T>(v.data(), v.size());
}

void BM_fq_baseline_memcpy(benchmark::State& st) {
  const auto& x = input();
  std::vector<float> y(x.size());
  run_passes(st, 2 * kF, [&] {
    std::memcpy(y.data(), x.data(), x.size() * sizeof(float));
    benchmark::DoNotOptimize(y.data());
  });
}

/// A second baseline: a copy loop with ordinary stores (y = x + 0, which the compiler may
/// not turn into memcpy). glibc's memcpy of 64 MiB uses non-temporal stores, which skip
/// reading the destination into the cache first; every qlib kernel writes through the
/// cache like this loop (so does PyTorch), so this is the bound for a one-pass kernel.
QLIB_FQ_KERNEL void copy_loop(const float* __restrict a, float* __restrict b, std::size_t n) {
  for (std::size_t i = 0; i + 16 <= n; i += 16)
    for (std::size_t k = 0; k < 16; ++k) b[i + k] = a[i + k] + 0.0f;
}

void BM_fq_baseline_copy_loop(benchmark::State& st) {
  const auto& x = input();
  std::vector<float> y(x.size());
  run_passes(st, 2 * kF, [&] {
    copy_loop(x.data(), y.data(), x.size());
    benchmark::DoNotOptimize(y.data());
  });
}

void BM_fq_forward_per_tensor(benchmark::State& st) {
  const auto& x = input();
  std::vector<float> y(x.size());
  run_passes(st, 2 * kF, [&] { qlib::fake_quantize(qlib::view(x), kParams, kSpec, flat(y)); });
}

void BM_fq_forward_per_tensor_inplace(benchmark::State& st) {
  std::vector<float> y = input();
  // Values already on the grid stay there, so repeating in place measures the same work.
  run_passes(st, 2 * kF, [&] { qlib::fake_quantize_inplace(flat(y), kParams, kSpec); });
}

void BM_fq_forward_per_tensor_away(benchmark::State& st) {
  const auto& x = input();
  std::vector<float> y(x.size());
  run_passes(st, 2 * kF,
             [&] { qlib::fake_quantize(qlib::view(x), kParams, kSpec, flat(y), qlib::rounding::half_away_from_zero); });
}

/// Per channel along axis 1 of `shape` (256 channels). The shape is taken by value: read
/// through a reference inside the timed lambda, GCC 12 compiled the channel-last loop
/// (inlined from fake_quant.hpp) about 3x slower.
void forward_per_channel(benchmark::State& st, const qlib::shape_t shape) {
  const auto& x = input();
  std::vector<float> y(x.size());
  const auto p = channel_params(256, 1);
  run_passes(st, 2 * kF, [&] {
    qlib::fake_quantize(qlib::view(x.data(), shape), p, kSpec, qlib::tensor_view<float>(y.data(), shape));
  });
}

/// Per channel, (16, 256, 4096) along axis 1: runs of 4096 contiguous values per channel.
void BM_fq_forward_per_channel(benchmark::State& st) { forward_per_channel(st, kChannelShape); }

/// Per channel with the channel innermost, (65536, 256) along axis 1 (NHWC activations).
void BM_fq_forward_per_channel_last(benchmark::State& st) { forward_per_channel(st, qlib::shape_t{65536, 256}); }

void BM_fq_forward_cachemask_per_tensor(benchmark::State& st) {
  const auto& x = input();
  std::vector<float> y(x.size());
  std::vector<std::uint8_t> m(x.size());
  run_passes(st, 2 * kF + kM, [&] { qlib::fake_quantize_cachemask(qlib::view(x), kParams, kSpec, flat(y), flat(m)); });
}

void BM_fq_forward_cachemask_per_channel(benchmark::State& st) {
  const auto& x = input();
  std::vector<float> y(x.size());
  std::vector<std::uint8_t> m(x.size());
  const qlib::shape_t shape = kChannelShape;  // a local copy: see forward_per_channel
  const auto p = channel_params(256, 1);
  run_passes(st, 2 * kF + kM, [&] {
    qlib::fake_quantize_cachemask(qlib::view(x.data(), shape), p, kSpec, qlib::tensor_view<float>(y.data(), shape),
                                  qlib::tensor_view<std::uint8_t>(m.data(), shape));
  });
}

/// STE backward from the stored mask: read dy and the mask, write dx.
void BM_fq_backward_mask(benchmark::State& st) {
  const auto& x = input();
  const auto& dy = grad();
  std::vector<float> y(x.size()), dx(x.size());
  std::vector<std::uint8_t> m(x.size());
  qlib::fake_quantize_cachemask(qlib::view(x), kParams, kSpec, flat(y), flat(m));
  run_passes(st, 2 * kF + kM, [&] { qlib::fake_quantize_backward(qlib::view(dy), qlib::view(m), flat(dx)); });
}

/// STE backward recomputing the mask: read dy and x, write dx.
void BM_fq_backward_recompute_per_tensor(benchmark::State& st) {
  const auto& x = input();
  const auto& dy = grad();
  std::vector<float> dx(x.size());
  run_passes(st, 3 * kF,
             [&] { qlib::fake_quantize_backward(qlib::view(dy), qlib::view(x), kParams, kSpec, flat(dx)); });
}

void BM_fq_backward_recompute_per_channel(benchmark::State& st) {
  const auto& x = input();
  const auto& dy = grad();
  std::vector<float> dx(x.size());
  const qlib::shape_t shape = kChannelShape;  // a local copy: see forward_per_channel
  const auto p = channel_params(256, 1);
  run_passes(st, 3 * kF, [&] {
    qlib::fake_quantize_backward(qlib::view(dy.data(), shape), qlib::view(x.data(), shape), p, kSpec,
                                 qlib::tensor_view<float>(dx.data(), shape));
  });
}

/// LSQ backward: read dy and x, write dx, reduce the scale and zero-point gradients.
void BM_fq_lsq_backward_per_tensor(benchmark::State& st) {
  const auto& x = input();
  const auto& dy = grad();
  std::vector<float> dx(x.size());
  run_passes(st, 3 * kF, [&] {
    const auto g = qlib::lsq_backward(qlib::view(dy), qlib::view(x), kParams, kSpec, flat(dx));
    benchmark::DoNotOptimize(g);
  });
}

void BM_fq_lsq_backward_per_channel(benchmark::State& st) {
  const auto& x = input();
  const auto& dy = grad();
  std::vector<float> dx(x.size());
  const qlib::shape_t shape = kChannelShape;  // a local copy: see forward_per_channel
  const auto p = channel_params(256, 1);
  run_passes(st, 3 * kF, [&] {
    const auto g = qlib::lsq_backward(qlib::view(dy.data(), shape), qlib::view(x.data(), shape), p, kSpec,
                                      qlib::tensor_view<float>(dx.data(), shape));
    benchmark::DoNotOptimize(g.scale.data());
  });
}

void BM_fq_ulq_backward(benchmark::State& st) {
  const auto& x = input();
  const auto& dy = grad();
  std::vector<float> dx(x.size());
  const qlib::qspec spec = qlib::qspec::amct_activation();
  run_passes(st, 3 * kF, [&] {
    const auto g = qlib::ulq_backward(qlib::view(dy), qlib::view(x), -2.5f, 3.0f, spec, flat(dx));
    benchmark::DoNotOptimize(g);
  });
}

}  // namespace

BENCHMARK(BM_fq_baseline_memcpy)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fq_baseline_copy_loop)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fq_forward_per_tensor)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fq_forward_per_tensor_inplace)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fq_forward_per_tensor_away)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fq_forward_per_channel)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fq_forward_per_channel_last)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fq_forward_cachemask_per_tensor)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fq_forward_cachemask_per_channel)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fq_backward_mask)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fq_backward_recompute_per_tensor)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fq_backward_recompute_per_channel)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fq_lsq_backward_per_tensor)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fq_lsq_backward_per_channel)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fq_ulq_backward)->Unit(benchmark::kMillisecond);
