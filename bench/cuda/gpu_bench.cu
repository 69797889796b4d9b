// qlib's CUDA kernels against the machine's own ceilings, measured in the same run:
// device-to-device cudaMemcpy (copy bandwidth, bytes read + written), a plain float4 sum
// kernel (read bandwidth), CUB's DeviceHistogram::HistogramEven with the same bins, then
// qlib's histogram, min/max and fake-quant, each printed as GB/s and as a ratio to its
// baseline, with the targets of the CUDA task:
//   histogram, 2048 bins, float32: >= 2000 GB/s of read and faster than CUB;
//   min/max per tensor: >= 80% of the read bandwidth;
//   per-channel fake-quant forward: >= 80% of the copy bandwidth.
//
// A self-timing program (cudaEvent around each launch, the median of `reps` after
// warm-ups) rather than Google Benchmark: the GPU machine this runs on may not have
// libbenchmark, GPU time has to be read off events anyway, and one run prints every ratio.
// GB = 1e9 bytes. Data: 1 GiB of float32 (2^28 values, far beyond the 60 MB L2) by default.
//
//   gpu_bench [--quick] [--mib N] [--reps N] [--strict]
// --quick: 4 MiB, 3 reps (a smoke test of every path; ctest runs this). --strict: exit 1
// when a target is missed (default: report only; exit 1 only on a CUDA error or a failed
// sanity check). Exit 77 without a CUDA device.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cub/device/device_histogram.cuh>
#include <functional>
#include <qlib/cuda/fake_quant.cuh>
#include <qlib/cuda/histogram.cuh>
#include <qlib/cuda/minmax.cuh>
#include <string>
#include <vector>

namespace qc = qlib::cuda;

namespace {

int failures = 0;

#define BENCH_CHECK_CUDA(expr)                                                                                \
  do {                                                                                                        \
    const cudaError_t bench_err_ = (expr);                                                                    \
    if (bench_err_ != cudaSuccess) {                                                                          \
      std::printf("CUDA error %s at %s:%d: %s\n", cudaGetErrorString(bench_err_), __FILE__, __LINE__, #expr); \
      std::exit(1);                                                                                           \
    }                                                                                                         \
  } while (0)

struct options {
  std::size_t mib = 1024;
  int reps = 20;
  bool quick = false;
  bool strict = false;
};

/// Median milliseconds of `reps` timed calls after two warm-ups.
double time_ms(int reps, const std::function<void()>& fn) {
  cudaEvent_t a, b;
  BENCH_CHECK_CUDA(cudaEventCreate(&a));
  BENCH_CHECK_CUDA(cudaEventCreate(&b));
  for (int i = 0; i < 2; ++i) fn();
  BENCH_CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<float> t;
  for (int i = 0; i < reps; ++i) {
    BENCH_CHECK_CUDA(cudaEventRecord(a));
    fn();
    BENCH_CHECK_CUDA(cudaEventRecord(b));
    BENCH_CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    BENCH_CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  BENCH_CHECK_CUDA(cudaGetLastError());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

double gbps(double bytes, double ms) { return bytes / (ms * 1e-3) / 1e9; }

void row(const char* name, double ms, double bytes, double baseline_gbps, const char* baseline) {
  const double g = gbps(bytes, ms);
  if (baseline_gbps > 0)
    std::printf("  %-48s %9.3f ms %8.0f GB/s  %6.1f%% of %s\n", name, ms, g, 100.0 * g / baseline_gbps, baseline);
  else
    std::printf("  %-48s %9.3f ms %8.0f GB/s\n", name, ms, g);
}

struct target_result {
  std::string what;
  bool met;
};
std::vector<target_result> targets;

void target(const std::string& what, bool met) { targets.push_back({what, met}); }

// ---- baselines and data -----------------------------------------------------------------

__global__ void read_sum_kernel(const float4* x, std::size_t n4, float* partial) {
  float acc = 0.0f;
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t base = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; base < n4;
       base += 4 * stride) {
    float4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u)
      if (base + u * stride < n4) v[u] = x[base + u * stride];
#pragma unroll
    for (int u = 0; u < 4; ++u)
      if (base + u * stride < n4) acc += (v[u].x + v[u].y) + (v[u].z + v[u].w);
  }
  __shared__ float sm[256];
  sm[threadIdx.x] = acc;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sm[threadIdx.x] += sm[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = sm[0];
}

__device__ std::uint64_t mix(std::uint64_t z) {  // splitmix64's finalizer
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/// Gaussian values (Box-Muller over a counter hash); relu = max(0, 2 g + 0.3).
__global__ void fill_kernel(float* x, std::size_t n, std::uint64_t seed, bool relu) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const std::uint64_t h = mix(seed * 0x9e3779b97f4a7c15ull + i);
    const float u1 = (static_cast<float>(h >> 40) + 0.5f) * (1.0f / 16777216.0f);
    const float u2 = static_cast<float>((h >> 16) & 0xFFFFFF) * (1.0f / 16777216.0f);
    const float g = sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
    x[i] = relu ? fmaxf(0.0f, 2.0f * g + 0.3f) : g;
  }
}

template <class T>
T* device_alloc(std::size_t n) {
  T* p = nullptr;
  BENCH_CHECK_CUDA(cudaMalloc(&p, n * sizeof(T) + 256));
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      opt.quick = true;
      opt.mib = 4;
      opt.reps = 3;
    } else if (a == "--strict") {
      opt.strict = true;
    } else if (a == "--mib" && i + 1 < argc) {
      opt.mib = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--reps" && i + 1 < argc) {
      opt.reps = std::atoi(argv[++i]);
    } else {
      std::printf("usage: gpu_bench [--quick] [--mib N] [--reps N] [--strict]\n");
      return 2;
    }
  }
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess || devices == 0) {
    std::printf("SKIPPED: no CUDA device (%s)\n", e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    return 77;
  }
  cudaDeviceProp prop;
  BENCH_CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("gpu_bench: %s, compute capability %d.%d, %d SMs, %.1f GiB, L2 %.0f MB\n", prop.name, prop.major,
              prop.minor, prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0, prop.l2CacheSize / 1e6);
  const std::size_t n = (opt.mib << 20) / sizeof(float);
  const double fbytes = static_cast<double>(n) * sizeof(float);
  std::printf("data: %zu float32 values (%.0f MiB), median of %d runs after 2 warm-ups; GB = 1e9 bytes\n\n", n,
              fbytes / 1048576.0, opt.reps);

  float* x = device_alloc<float>(n);
  float* y = device_alloc<float>(n);
  float* dy = device_alloc<float>(n);
  float* relu = device_alloc<float>(n);
  std::uint8_t* mask = device_alloc<std::uint8_t>(n);
  float* partial = device_alloc<float>(1 << 16);
  fill_kernel<<<1024, 256>>>(x, n, 1, false);
  fill_kernel<<<1024, 256>>>(dy, n, 2, false);
  fill_kernel<<<1024, 256>>>(relu, n, 3, true);
  BENCH_CHECK_CUDA(cudaDeviceSynchronize());

  // ---- ceilings -------------------------------------------------------------------------
  std::printf("baselines\n");
  const double copy_ms =
      time_ms(opt.reps, [&] { BENCH_CHECK_CUDA(cudaMemcpyAsync(y, x, n * sizeof(float), cudaMemcpyDeviceToDevice)); });
  const double copy_gbps = gbps(2 * fbytes, copy_ms);
  row("cudaMemcpy device to device (read + write)", copy_ms, 2 * fbytes, 0, "");
  const unsigned read_grid = static_cast<unsigned>(prop.multiProcessorCount * 8);
  const double read_ms = time_ms(
      opt.reps, [&] { read_sum_kernel<<<read_grid, 256>>>(reinterpret_cast<const float4*>(x), n / 4, partial); });
  const double read_gbps = gbps(fbytes, read_ms);
  row("read: float4 sum kernel", read_ms, fbytes, 0, "");

  // ---- histograms -----------------------------------------------------------------------
  std::printf("\nhistograms (GB/s of float32 read)\n");
  qc::minmax_stats* stats = device_alloc<qc::minmax_stats>(1);
  std::size_t mm_bytes = 0;
  BENCH_CHECK_CUDA(qc::minmax(nullptr, mm_bytes, x, n, stats));
  void* mm_temp = device_alloc<char>(mm_bytes);
  BENCH_CHECK_CUDA(qc::minmax(mm_temp, mm_bytes, x, n, stats));
  qc::minmax_stats h{};
  BENCH_CHECK_CUDA(cudaMemcpy(&h, stats, sizeof h, cudaMemcpyDeviceToHost));
  const float lo = h.min, hi = std::nextafter(h.max, INFINITY);  // CUB's range is [lo, hi)
  const float amax = std::max(-h.min, h.max);

  unsigned long long* counts = device_alloc<unsigned long long>(1 << 16);
  int* cub_counts = device_alloc<int>(1 << 16);
  std::size_t cub_bytes = 0;
  BENCH_CHECK_CUDA(
      cub::DeviceHistogram::HistogramEven(nullptr, cub_bytes, x, cub_counts, 2049, lo, hi, static_cast<int>(n)));
  void* cub_temp = device_alloc<char>(cub_bytes);
  double cub_ms = 0, qlib_ms = 0;
  for (std::uint32_t bins : {2048u, 8192u}) {
    std::size_t need = 0;
    BENCH_CHECK_CUDA(cub::DeviceHistogram::HistogramEven(nullptr, need, x, cub_counts, static_cast<int>(bins + 1), lo,
                                                         hi, static_cast<int>(n)));
    if (need > cub_bytes) {
      cudaFree(cub_temp);
      cub_temp = device_alloc<char>(need);
      cub_bytes = need;
    }
    const double c_ms = time_ms(opt.reps, [&] {
      std::size_t b = cub_bytes;
      BENCH_CHECK_CUDA(cub::DeviceHistogram::HistogramEven(cub_temp, b, x, cub_counts, static_cast<int>(bins + 1), lo,
                                                           hi, static_cast<int>(n)));
    });
    const qc::range_bins rr = qc::make_range_bins(lo, hi, bins);
    const double q_ms = time_ms(opt.reps, [&] { BENCH_CHECK_CUDA(qc::histogram(x, n, rr, counts)); });
    const qc::abs_bins ab = qc::make_abs_bins(amax / bins, bins);
    const double a_ms = time_ms(opt.reps, [&] { BENCH_CHECK_CUDA(qc::histogram(x, n, ab, counts)); });
    const double c_gbps = gbps(fbytes, c_ms);
    char name[96];
    std::snprintf(name, sizeof name, "CUB HistogramEven, %u bins, gaussian", bins);
    row(name, c_ms, fbytes, 0, "");
    std::snprintf(name, sizeof name, "qlib range histogram, %u bins, gaussian", bins);
    row(name, q_ms, fbytes, c_gbps, "CUB");
    std::snprintf(name, sizeof name, "qlib |x| histogram, %u bins, gaussian", bins);
    row(name, a_ms, fbytes, c_gbps, "CUB");
    if (bins == 2048) {
      cub_ms = c_ms;
      qlib_ms = q_ms;
    }
    // Sanity: every value counted once by both.
    std::vector<std::uint64_t> ours;
    BENCH_CHECK_CUDA(qc::histogram(x, n, rr, counts));
    BENCH_CHECK_CUDA(qc::copy_counts_to_host(counts, bins, &ours));
    std::vector<int> theirs(bins);
    BENCH_CHECK_CUDA(cudaMemcpy(theirs.data(), cub_counts, bins * sizeof(int), cudaMemcpyDeviceToHost));
    unsigned long long sum_ours = 0, sum_theirs = 0, max_diff = 0;
    for (std::uint32_t j = 0; j < bins; ++j) {
      sum_ours += ours[j];
      sum_theirs += static_cast<unsigned long long>(theirs[j]);
      const long long d = static_cast<long long>(ours[j]) - theirs[j];
      max_diff = std::max<unsigned long long>(max_diff, static_cast<unsigned long long>(d < 0 ? -d : d));
    }
    std::printf(
        "  sanity: qlib counts %llu, CUB counts %llu of %zu values; largest per-bin difference %llu "
        "(edge rounding)\n",
        sum_ours, sum_theirs, n, max_diff);
    if (sum_ours != n || sum_theirs != n) {
      std::printf("  FAILED: a histogram lost values\n");
      ++failures;
    }
  }
  // Contention: ReLU data (about 44% zeros) and the replica / block-size sweep at 2048 bins.
  {
    const qc::abs_bins ab = qc::make_abs_bins(8.0 / 2048, 2048);
    std::printf("  replica sweep, |x| histogram, 2048 bins (R copies per block x threads): GB/s gaussian / relu\n");
    for (int r : {1, 2, 4, 8}) {
      std::printf("   R=%d:", r);
      for (int t : {256, 512, 1024}) {
        const qc::detail::histogram_policy p{r, t};
        const double g_ms = time_ms(opt.reps, [&] {
          BENCH_CHECK_CUDA(
              qc::detail::histogram_dispatch(x, n, ab, counts, qc::count_mode::overwrite, p, cudaStream_t{}));
        });
        const double r_ms = time_ms(opt.reps, [&] {
          BENCH_CHECK_CUDA(
              qc::detail::histogram_dispatch(relu, n, ab, counts, qc::count_mode::overwrite, p, cudaStream_t{}));
        });
        std::printf("  %4d thr %6.0f / %6.0f", t, gbps(fbytes, g_ms), gbps(fbytes, r_ms));
      }
      std::printf("\n");
    }
    const double d_ms = time_ms(opt.reps, [&] { BENCH_CHECK_CUDA(qc::histogram(relu, n, ab, counts)); });
    row("qlib |x| histogram, 2048 bins, relu (default policy)", d_ms, fbytes, gbps(fbytes, cub_ms), "CUB (gaussian)");
  }
  const double hist_gbps = gbps(fbytes, qlib_ms);
  target("histogram 2048 bins >= 2000 GB/s (" + std::to_string(static_cast<int>(hist_gbps)) + ")", hist_gbps >= 2000);
  target("histogram 2048 bins faster than CUB (" + std::to_string(cub_ms / qlib_ms).substr(0, 4) + "x)",
         qlib_ms < cub_ms);

  // ---- min/max ------------------------------------------------------------------------
  std::printf("\nmin/max (GB/s of read)\n");
  const double mm_ms = time_ms(opt.reps, [&] { BENCH_CHECK_CUDA(qc::minmax(mm_temp, mm_bytes, x, n, stats)); });
  row("qlib minmax, per tensor", mm_ms, fbytes, read_gbps, "read");
  target("min/max >= 80% of read (" + std::to_string(static_cast<int>(100 * gbps(fbytes, mm_ms) / read_gbps)) + "%)",
         gbps(fbytes, mm_ms) >= 0.8 * read_gbps);
  const std::size_t C = 256;
  const std::size_t inner = std::min<std::size_t>(16384, n / C);
  const qc::channel_shape nchw{n / (C * inner), C, inner};  // NCHW activations along axis 1
  const qc::channel_shape nhwc{n / C, C, 1};                // channels last (axis -1)
  float* cmin = device_alloc<float>(C);
  float* cmax = device_alloc<float>(C);
  qc::nonfinite_stats* flags = device_alloc<qc::nonfinite_stats>(1);
  for (const qc::channel_shape& s : {nchw, nhwc}) {
    std::size_t b = 0;
    BENCH_CHECK_CUDA(qc::minmax_per_channel(nullptr, b, x, s, cmin, cmax, flags));
    void* t = device_alloc<char>(b);
    const double ms =
        time_ms(opt.reps, [&] { BENCH_CHECK_CUDA(qc::minmax_per_channel(t, b, x, s, cmin, cmax, flags)); });
    char name[96];
    std::snprintf(name, sizeof name, "qlib minmax per channel (%zu, %zu, %zu)", s.outer, s.channels, s.inner);
    row(name, ms, static_cast<double>(s.numel()) * 4, read_gbps, "read");
    cudaFree(t);
  }

  // ---- fake-quant -----------------------------------------------------------------------
  std::printf("\nfake-quant (GB/s of read + write)\n");
  const qc::quant_grid grid = qc::quant_grid::of(qlib::qspec::tensorrt_int8());
  std::vector<float> hs(C);
  std::vector<std::int32_t> hz(C, 0);
  for (std::size_t c = 0; c < C; ++c) hs[c] = 0.01f + 0.0001f * static_cast<float>(c);
  float* scale = device_alloc<float>(C);
  std::int32_t* zero = device_alloc<std::int32_t>(C);
  BENCH_CHECK_CUDA(cudaMemcpy(scale, hs.data(), C * sizeof(float), cudaMemcpyHostToDevice));
  BENCH_CHECK_CUDA(cudaMemcpy(zero, hz.data(), C * sizeof(std::int32_t), cudaMemcpyHostToDevice));
  const qc::device_qparams dp{scale, zero};
  const double fq_ms = time_ms(opt.reps, [&] { BENCH_CHECK_CUDA(qc::fake_quantize(x, y, nullptr, n, dp, grid)); });
  row("per tensor forward", fq_ms, 2 * fbytes, copy_gbps, "copy");
  const double fqm_ms = time_ms(opt.reps, [&] { BENCH_CHECK_CUDA(qc::fake_quantize(x, y, mask, n, dp, grid)); });
  row("per tensor forward + mask", fqm_ms, 2 * fbytes + n, copy_gbps, "copy");
  double worst_pc = 1e9;
  for (const qc::channel_shape& s : {nchw, nhwc}) {
    const double ms =
        time_ms(opt.reps, [&] { BENCH_CHECK_CUDA(qc::fake_quantize_per_channel(x, y, nullptr, s, dp, grid)); });
    char name[96];
    std::snprintf(name, sizeof name, "per channel forward (%zu, %zu, %zu)", s.outer, s.channels, s.inner);
    row(name, ms, 2.0 * s.numel() * 4, copy_gbps, "copy");
    worst_pc = std::min(worst_pc, 100.0 * gbps(2.0 * s.numel() * 4, ms) / copy_gbps);
  }
  target("per-channel fake-quant forward >= 80% of copy (worst layout " + std::to_string(static_cast<int>(worst_pc)) +
             "%)",
         worst_pc >= 80.0);
  const double bm_ms = time_ms(opt.reps, [&] { BENCH_CHECK_CUDA(qc::fake_quantize_backward_masked(dy, mask, y, n)); });
  row("backward from mask (dy, mask -> dx)", bm_ms, 2 * fbytes + n, copy_gbps, "copy");
  const double br_ms = time_ms(opt.reps, [&] { BENCH_CHECK_CUDA(qc::fake_quantize_backward(x, dy, y, n, dp, grid)); });
  row("backward recomputing the mask (x, dy -> dx)", br_ms, 3 * fbytes, copy_gbps, "copy");
  float* gs = device_alloc<float>(C);
  float* gz = device_alloc<float>(C);
  for (int per_channel = 0; per_channel < 2; ++per_channel) {
    std::size_t b = 0;
    auto run = [&](void* t) {
      if (per_channel) return qc::lsq_backward_per_channel(t, b, x, dy, y, nchw, dp, grid, 1e-3f, gs, gz);
      return qc::lsq_backward(t, b, x, dy, y, n, dp, grid, 1e-3f, gs, gz);
    };
    BENCH_CHECK_CUDA(run(nullptr));
    void* t = device_alloc<char>(b);
    const double ms = time_ms(opt.reps, [&] { BENCH_CHECK_CUDA(run(t)); });
    row(per_channel ? "LSQ backward per channel (x, dy -> dx, ds, dz)"
                    : "LSQ backward per tensor (x, dy -> dx, ds, dz)",
        ms, 3 * fbytes, copy_gbps, "copy");
    cudaFree(t);
  }

  // ---- summary ---------------------------------------------------------------------------
  std::printf("\ntargets%s\n", opt.quick ? " (quick run: sizes too small for the figures to mean anything)" : "");
  int missed = 0;
  for (const target_result& t : targets) {
    std::printf("  %-7s %s\n", t.met ? "MET" : "MISSED", t.what.c_str());
    missed += t.met ? 0 : 1;
  }
  BENCH_CHECK_CUDA(cudaDeviceSynchronize());
  for (void* p : {static_cast<void*>(x), static_cast<void*>(y), static_cast<void*>(dy), static_cast<void*>(relu),
                  static_cast<void*>(mask), static_cast<void*>(partial), static_cast<void*>(stats), mm_temp,
                  static_cast<void*>(counts), static_cast<void*>(cub_counts), cub_temp, static_cast<void*>(cmin),
                  static_cast<void*>(cmax), static_cast<void*>(flags), static_cast<void*>(scale),
                  static_cast<void*>(zero), static_cast<void*>(gs), static_cast<void*>(gz)})
    cudaFree(p);
  if (failures) return 1;
  if (opt.strict && missed && !opt.quick) return 1;
  return 0;
}
