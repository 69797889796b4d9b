// qlib::cuda::minmax / minmax_per_channel against plain CPU loops (and core/check.hpp's
// check_and_minmax): equal min and max, the NaN/Inf count and the first bad flat index, on
// every reduction strategy (per tensor, rows, warps, columns).
#define QLIB_CUDA_TEST_REQUIRES_DEVICE 1
#include <algorithm>
#include <cmath>
#include <qlib/core/check.hpp>
#include <qlib/core/tensor_view.hpp>
#include <qlib/cuda/minmax.cuh>

#include "cuda/cuda_test.hpp"

namespace qc = qlib::cuda;
using qlib_cuda_test::device_buffer;
using qlib_cuda_test::temp_storage;

namespace {

struct cpu_stats {
  std::vector<float> lo, hi;
  unsigned long long bad = 0, first = qc::nonfinite_stats::no_index;
};

template <class T>
cpu_stats cpu_minmax(const std::vector<T>& x, const qc::channel_shape& s) {
  cpu_stats r;
  r.lo.assign(s.channels, INFINITY);
  r.hi.assign(s.channels, -INFINITY);
  for (std::size_t o = 0; o < s.outer; ++o)
    for (std::size_t c = 0; c < s.channels; ++c)
      for (std::size_t i = 0; i < s.inner; ++i) {
        const std::size_t off = (o * s.channels + c) * s.inner + i;
        const float v = qlib_cuda_test::to_float(x[off]);
        if (std::isfinite(v)) {
          r.lo[c] = std::min(r.lo[c], v);
          r.hi[c] = std::max(r.hi[c], v);
        } else {
          ++r.bad;
          r.first = std::min<unsigned long long>(r.first, off);
        }
      }
  return r;
}

template <class T>
qc::minmax_stats gpu_minmax(const std::vector<T>& x, std::size_t skew) {
  device_buffer<T> d(x.size(), skew);
  d.upload(x);
  device_buffer<qc::minmax_stats> out(1);
  std::size_t bytes = 0;
  CUDA_REQUIRE(qc::minmax(nullptr, bytes, d.data(), x.size(), out.data()));
  REQUIRE(bytes > 0);
  temp_storage t(bytes);
  CUDA_REQUIRE(qc::minmax(t.data(), t.bytes(), d.data(), x.size(), out.data()));
  return out.download()[0];
}

template <class T>
void check_per_channel(const std::vector<T>& x, const qc::channel_shape& s, std::size_t skew) {
  device_buffer<T> d(x.size(), skew);
  d.upload(x);
  device_buffer<float> lo(s.channels), hi(s.channels);
  device_buffer<qc::nonfinite_stats> flags(1);
  std::size_t bytes = 0;
  CUDA_REQUIRE(qc::minmax_per_channel(nullptr, bytes, d.data(), s, lo.data(), hi.data(), flags.data()));
  temp_storage t(bytes);
  CUDA_REQUIRE(qc::minmax_per_channel(t.data(), t.bytes(), d.data(), s, lo.data(), hi.data(), flags.data()));
  const cpu_stats want = cpu_minmax(x, s);
  CHECK(lo.download() == want.lo);
  CHECK(hi.download() == want.hi);
  const qc::nonfinite_stats f = flags.download()[0];
  CHECK(f.count == want.bad);
  CHECK(f.first_index == want.first);
}

const qc::channel_shape shapes[] = {
    {1, 4, 100000},                                       // rows, block groups, contiguous
    qlib::layout_along(qlib::shape_t{8, 16, 64, 64}, 1),  // (8, 16, 4096): rows, block groups, narrow offsets
    {8, 16, 49},                                          // rows, warp groups, inner not a multiple of the vector width
    {100, 7, 49},   // rows, block groups, inner not a multiple of the vector width
    {64, 3, 1000},  // rows, block groups, few channels: several blocks per channel
    {1, 5000, 16},  // rows, warp groups (small channels)
    {3, 5, 7},      // rows, warp groups, tiny
    {4096, 64, 1},  // columns (channels last)
    {700, 3, 2},    // columns, few columns
    {100, 333, 5},  // columns, inner > 1
};

}  // namespace

TEST_CASE("cuda minmax: per tensor equals the CPU on every distribution, float and half") {
  const std::size_t sizes[] = {1, 2, 5, 4097, (1u << 20) + 3};
  int round = 0;
  for (auto d : qlib_test::all_dists()) {
    for (std::size_t n : sizes) {
      const auto x = qlib_test::sample<float>(d, n, 40 + round);
      const std::size_t skew = static_cast<std::size_t>(round++ % 3);
      INFO(qlib_test::dist_name(d) << ", n = " << n << ", skew = " << skew);
      qlib::minmax_t<float> want{};
      REQUIRE(qlib::check_and_minmax(qlib::view(x), "test", &want).ok());
      const qc::minmax_stats got = gpu_minmax(x, skew);
      CHECK(got.min == want.min);
      CHECK(got.max == want.max);
      CHECK(got.nonfinite.count == 0);
      CHECK(got.nonfinite.first_index == qc::nonfinite_stats::no_index);
      CHECK(qc::check_nonfinite(got.nonfinite, "test").ok());

      const auto h = qlib_cuda_test::convert<__half>(x);
      const cpu_stats hw = cpu_minmax(h, qc::channel_shape{1, 1, n});
      const qc::minmax_stats hg = gpu_minmax(h, skew);
      CHECK(hg.min == hw.lo[0]);
      CHECK(hg.max == hw.hi[0]);
      CHECK(hg.nonfinite.count == 0);
    }
  }
}

TEST_CASE("cuda minmax: NaN and Inf are counted, the first flat index named, and left out of min/max") {
  for (std::size_t n : {std::size_t{9}, std::size_t{1} << 20}) {
    auto x = qlib_test::sample<float>(qlib_test::dist::gaussian, n, 3);
    const std::size_t i1 = n / 3, i2 = n / 2, i3 = n - 1;
    x[i2] = NAN;
    x[i3] = INFINITY;
    x[i1] = -INFINITY;
    const cpu_stats want = cpu_minmax(x, qc::channel_shape{1, 1, n});
    for (std::size_t skew : {0, 1}) {
      INFO("n = " << n << ", skew = " << skew);
      const qc::minmax_stats got = gpu_minmax(x, skew);
      CHECK(got.nonfinite.count == 3);
      CHECK(got.nonfinite.first_index == i1);
      CHECK(got.min == want.lo[0]);
      CHECK(got.max == want.hi[0]);
      const qlib::status s = qc::check_nonfinite(got.nonfinite, "minmax observer 'x'");
      CHECK(s.code() == qlib::errc::non_finite);
    }
  }
  const std::vector<float> all_bad = {NAN, INFINITY, -INFINITY};
  const qc::minmax_stats got = gpu_minmax(all_bad, 0);
  CHECK(got.nonfinite.count == 3);
  CHECK(got.nonfinite.first_index == 0);
  CHECK(got.min == INFINITY);
  CHECK(got.max == -INFINITY);
}

TEST_CASE("cuda minmax: per channel equals the CPU on every strategy, float and half") {
  int round = 0;
  for (const qc::channel_shape& s : shapes) {
    for (auto d : {qlib_test::dist::gaussian, qlib_test::dist::outliers, qlib_test::dist::relu}) {
      const auto x = qlib_test::sample<float>(d, s.numel(), 60 + round);
      const std::size_t skew = static_cast<std::size_t>(round++ % 2);
      INFO("shape (" << s.outer << ", " << s.channels << ", " << s.inner << "), " << qlib_test::dist_name(d)
                     << ", skew = " << skew);
      check_per_channel(x, s, skew);
      check_per_channel(qlib_cuda_test::convert<__half>(x), s, skew);
    }
  }
}

TEST_CASE("cuda minmax: per channel reports NaN/Inf with flat indices") {
  for (const qc::channel_shape& s : shapes) {
    auto x = qlib_test::sample<float>(qlib_test::dist::laplace, s.numel(), 7);
    x[s.numel() - 1] = NAN;
    x[s.numel() / 2] = INFINITY;
    INFO("shape (" << s.outer << ", " << s.channels << ", " << s.inner << ")");
    check_per_channel(x, s, 0);
  }
}

TEST_CASE("cuda minmax: temporary storage too small is rejected") {
  const auto x = qlib_test::sample<float>(qlib_test::dist::uniform, 1 << 20, 1);
  device_buffer<float> d(x.size());
  d.upload(x);
  device_buffer<qc::minmax_stats> out(1);
  std::size_t bytes = 0;
  CUDA_REQUIRE(qc::minmax(nullptr, bytes, d.data(), x.size(), out.data()));
  temp_storage t(bytes);
  std::size_t short_by_one = bytes - 1;
  CHECK(qc::minmax(t.data(), short_by_one, d.data(), x.size(), out.data()) == cudaErrorInvalidValue);
  CHECK(qc::minmax(t.data(), bytes, d.data(), x.size(), static_cast<qc::minmax_stats*>(nullptr)) ==
        cudaErrorInvalidValue);
}
