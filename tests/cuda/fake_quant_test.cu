// qlib::cuda fake-quant against the CPU: forward values bit identical to
// qlib::fake_quantize_value<float> (core/quantize.hpp), masks, straight-through backward
// exactly, LSQ dx exactly and the scale / zero-point gradients against a double-precision
// reference within 1e-4 of the sum of |terms| (float sums on the device).
#define QLIB_CUDA_TEST_REQUIRES_DEVICE 1
#include <algorithm>
#include <cmath>
#include <qlib/core/quantize.hpp>
#include <qlib/cuda/fake_quant.cuh>
#include <random>

#include "cuda/cuda_test.hpp"

namespace qc = qlib::cuda;
using qlib_cuda_test::device_buffer;
using qlib_cuda_test::first_mismatch;
using qlib_cuda_test::temp_storage;

namespace {

/// Per-channel parameters (per tensor: one channel) and the grid.
struct params {
  std::vector<float> scale;
  std::vector<std::int32_t> zero;
  qc::quant_grid grid;
};

params params_for(const std::vector<float>& x, const qc::channel_shape& s, const qlib::qspec& spec,
                  qlib::rounding mode) {
  params p;
  p.grid = qc::quant_grid::of(spec, mode);
  for (std::size_t c = 0; c < s.channels; ++c) {
    float lo = INFINITY, hi = -INFINITY;
    for (std::size_t o = 0; o < s.outer; ++o)
      for (std::size_t i = 0; i < s.inner; ++i) {
        const float v = x[(o * s.channels + c) * s.inner + i];
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    // Clip a little inside the range so that both clamps are exercised.
    const qlib::qparams<float> q = qlib::qparams_from_range(0.8f * lo, 0.8f * hi, spec);
    p.scale.push_back(q.scale);
    p.zero.push_back(q.zero_point);
  }
  return p;
}

std::size_t channel_at(const qc::channel_shape& s, std::size_t off) { return (off / s.inner) % s.channels; }

template <class T>
T fq_cpu(T x, float s, std::int32_t z, const qc::quant_grid& g, std::uint8_t* mask) {
  const float v = qlib_cuda_test::to_float(x);
  const float q = qlib::round_with(v / s, g.mode) + static_cast<float>(z);
  *mask = (q >= static_cast<float>(g.qmin) && q <= static_cast<float>(g.qmax)) ? 1 : 0;
  const float y = qlib::fake_quantize_value(v, s, z, g.qmin, g.qmax, g.mode);
  return qlib_cuda_test::to_storage<T>(y);
}

/// Device parameter arrays.
struct device_params {
  device_buffer<float> scale;
  device_buffer<std::int32_t> zero;
  explicit device_params(const params& p) : scale(p.scale.size()), zero(p.zero.size()) {
    scale.upload(p.scale);
    zero.upload(p.zero);
  }
  qc::device_qparams ref() const { return {scale.data(), zero.data()}; }
};

/// Forward on the device (per tensor when s.channels == 1 and per_channel is false).
template <class T>
void check_forward(const std::vector<T>& x, const qc::channel_shape& s, const params& p, bool per_channel,
                   std::size_t skew) {
  std::vector<T> want(x.size());
  std::vector<std::uint8_t> want_mask(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::size_t c = per_channel ? channel_at(s, i) : 0;
    want[i] = fq_cpu(x[i], p.scale[c], p.zero[c], p.grid, &want_mask[i]);
  }
  device_buffer<T> dx(x.size(), skew), dy(x.size(), skew);
  device_buffer<std::uint8_t> dm(x.size(), skew);
  dx.upload(x);
  device_params dp(p);
  if (per_channel)
    CUDA_REQUIRE(qc::fake_quantize_per_channel(dx.data(), dy.data(), dm.data(), s, dp.ref(), p.grid));
  else
    CUDA_REQUIRE(qc::fake_quantize(dx.data(), dy.data(), dm.data(), x.size(), dp.ref(), p.grid));
  const std::vector<T> got = dy.download();
  const long long bad = first_mismatch(got, want);
  INFO("first mismatch at " << bad);
  if (bad >= 0) {
    INFO("x = " << qlib_cuda_test::to_float(x[bad]) << ", gpu " << qlib_cuda_test::to_float(got[bad]) << ", cpu "
                << qlib_cuda_test::to_float(want[bad]));
    CHECK(bad == -1);
  }
  CHECK(dm.download() == want_mask);
  if (!per_channel) {  // host-value overload, in place (y aliases x)
    CUDA_REQUIRE(qc::fake_quantize(dx.data(), dx.data(), static_cast<std::uint8_t*>(nullptr), x.size(),
                                   qlib::qparams<float>{p.scale[0], p.zero[0]}, p.grid));
    CHECK(first_mismatch(dx.download(), want) == -1);
  }
}

const qc::channel_shape shapes[] = {
    {1, 4, 100000}, {8, 16, 4096}, {8, 16, 49},   {100, 7, 49}, {64, 3, 1000},
    {1, 5000, 16},  {3, 5, 7},     {4096, 64, 1}, {700, 3, 2},  {100, 333, 5},
};

std::vector<qlib::qspec> specs() {
  qlib::qspec four = qlib::qspec::tensorrt_int8();
  four.bits = 4;
  return {qlib::qspec::tensorrt_int8(), qlib::qspec::tensorrt_weight_int8(), qlib::qspec::torch_quint8(),
          qlib::qspec::amct_activation(), four};
}

}  // namespace

TEST_CASE("cuda fake-quant: per tensor forward is bit identical to fake_quantize_value") {
  int round = 0;
  for (auto d : qlib_test::all_dists()) {
    for (const qlib::qspec& spec : specs()) {
      for (auto mode : {qlib::rounding::half_to_even, qlib::rounding::half_away_from_zero}) {
        const std::size_t n = round % 2 ? 100003 : 4099;
        const auto x = qlib_test::sample<float>(d, n, 80 + round);
        const qc::channel_shape s{1, 1, n};
        const params p = params_for(x, s, spec, mode);
        const std::size_t skew = static_cast<std::size_t>(round++ % 3);
        INFO(qlib_test::dist_name(d) << ", bits " << spec.bits << ", " << qlib::to_string(spec.scheme) << ", mode "
                                     << static_cast<int>(mode) << ", skew " << skew);
        check_forward(x, s, p, false, skew);
        check_forward(qlib_cuda_test::convert<__half>(x), s, p, false, skew);
      }
    }
  }
}

TEST_CASE("cuda fake-quant: exact ties, denormals, NaN and Inf match the CPU") {
  std::vector<float> x;
  for (int k = -300; k <= 300; ++k) x.push_back((static_cast<float>(k) + 0.5f) * 0.25f);  // x / s = k + 0.5 exactly
  x.insert(x.end(), {0.0f, -0.0f, NAN, INFINITY, -INFINITY, 1e-45f, -1e-45f, 3e-39f, -3e-39f, 1e38f, -1e38f});
  for (auto mode : {qlib::rounding::half_to_even, qlib::rounding::half_away_from_zero}) {
    for (float scale : {0.25f, 0.1f, 1e-39f /* denormal scale: fails under -ftz=true */}) {
      for (std::int32_t zero : {0, 3, -7}) {
        params p;
        p.scale = {scale};
        p.zero = {zero};
        p.grid = qc::quant_grid{-128, 127, mode};
        INFO("scale " << scale << ", zero " << zero << ", mode " << static_cast<int>(mode));
        check_forward(x, qc::channel_shape{1, 1, x.size()}, p, false, 0);
      }
    }
  }
}

TEST_CASE("cuda fake-quant: per channel forward is bit identical on every layout, float and half") {
  int round = 0;
  for (const qc::channel_shape& s : shapes) {
    for (const qlib::qspec& spec : {qlib::qspec::tensorrt_weight_int8(), qlib::qspec::torch_quint8()}) {
      const auto x = qlib_test::sample<float>(round % 2 ? qlib_test::dist::laplace : qlib_test::dist::bimodal,
                                              s.numel(), 90 + round);
      const params p = params_for(x, s, spec, qlib::rounding::half_to_even);
      const std::size_t skew = static_cast<std::size_t>(round++ % 2);
      INFO("shape (" << s.outer << ", " << s.channels << ", " << s.inner << "), " << qlib::to_string(spec.scheme)
                     << ", skew " << skew);
      check_forward(x, s, p, true, skew);
      check_forward(qlib_cuda_test::convert<__half>(x), s, p, true, skew);
    }
  }
}

TEST_CASE("cuda fake-quant: straight-through backward from the mask and recomputed from x") {
  for (const qc::channel_shape& s : {qc::channel_shape{1, 1, 100003}, qc::channel_shape{8, 16, 4096},
                                     qc::channel_shape{4096, 64, 1}, qc::channel_shape{3, 5, 7}}) {
    const bool per_channel = s.channels > 1;
    auto x = qlib_test::sample<float>(qlib_test::dist::outliers, s.numel(), 5);
    auto g = qlib_test::sample<float>(qlib_test::dist::gaussian, s.numel(), 6);
    g[0] = INFINITY;  // a clipped Inf gradient becomes 0 (replaced, not multiplied)
    x[0] = 1e30f;
    const params p = params_for(x, s, qlib::qspec::tensorrt_int8(), qlib::rounding::half_to_even);
    std::vector<float> want(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      const std::size_t c = per_channel ? channel_at(s, i) : 0;
      std::uint8_t m = 0;
      fq_cpu(x[i], p.scale[c], p.zero[c], p.grid, &m);
      want[i] = m ? g[i] : 0.0f;
    }
    device_buffer<float> dx(x.size()), dg(x.size()), dgrad(x.size()), dout(x.size());
    device_buffer<std::uint8_t> dm(x.size());
    dx.upload(x);
    dg.upload(g);
    device_params dp(p);
    INFO("shape (" << s.outer << ", " << s.channels << ", " << s.inner << ")");
    if (per_channel) {
      CUDA_REQUIRE(qc::fake_quantize_per_channel(dx.data(), dout.data(), dm.data(), s, dp.ref(), p.grid));
      CUDA_REQUIRE(qc::fake_quantize_backward_per_channel(dx.data(), dg.data(), dgrad.data(), s, dp.ref(), p.grid));
    } else {
      CUDA_REQUIRE(qc::fake_quantize(dx.data(), dout.data(), dm.data(), x.size(), dp.ref(), p.grid));
      CUDA_REQUIRE(qc::fake_quantize_backward(dx.data(), dg.data(), dgrad.data(), x.size(), dp.ref(), p.grid));
    }
    CHECK(first_mismatch(dgrad.download(), want) == -1);
    CUDA_REQUIRE(qc::fake_quantize_backward_masked(dg.data(), dm.data(), dgrad.data(), x.size()));
    CHECK(first_mismatch(dgrad.download(), want) == -1);
    // half storage, in place (dx aliases dy)
    const auto gh = qlib_cuda_test::convert<__half>(g);
    device_buffer<__half> dgh(gh.size());
    dgh.upload(gh);
    CUDA_REQUIRE(qc::fake_quantize_backward_masked(dgh.data(), dm.data(), dgh.data(), gh.size()));
    CHECK(first_mismatch(dgh.download(), qlib_cuda_test::convert<__half>(want)) == -1);
  }
}

namespace {

struct lsq_ref {
  std::vector<float> dx;
  std::vector<double> ds, dz, abs_ds, abs_dz;
};

template <class T>
lsq_ref lsq_cpu(const std::vector<T>& x, const std::vector<T>& dy, const qc::channel_shape& s, const params& p) {
  lsq_ref r;
  r.dx.resize(x.size());
  r.ds.assign(s.channels, 0.0);
  r.dz.assign(s.channels, 0.0);
  r.abs_ds.assign(s.channels, 0.0);
  r.abs_dz.assign(s.channels, 0.0);
  const float qmin = static_cast<float>(p.grid.qmin), qmax = static_cast<float>(p.grid.qmax);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::size_t c = channel_at(s, i);
    const float sc = p.scale[c], z = static_cast<float>(p.zero[c]);
    const float xv = qlib_cuda_test::to_float(x[i]), g = qlib_cuda_test::to_float(dy[i]);
    const float xs = xv / sc;
    const float rr = qlib::round_with(xs, p.grid.mode);
    const float q = rr + z;
    double ds = 0, dz = 0;
    if (q >= qmin && q <= qmax) {
      r.dx[i] = g;
      ds = static_cast<double>(g) * static_cast<double>(rr - xs);
    } else {
      r.dx[i] = 0.0f;
      ds = static_cast<double>(g) * static_cast<double>(q < qmin ? qmin - z : qmax - z);
      dz = -static_cast<double>(g) * sc;
    }
    r.ds[c] += ds;
    r.dz[c] += dz;
    r.abs_ds[c] += std::fabs(ds);
    r.abs_dz[c] += std::fabs(dz);
  }
  return r;
}

template <class T>
void check_lsq(const qc::channel_shape& s, bool per_channel, std::uint64_t seed, std::size_t skew) {
  const auto xf = qlib_test::sample<float>(qlib_test::dist::student_t2, s.numel(), seed);
  const auto gf = qlib_test::sample<float>(qlib_test::dist::gaussian, s.numel(), seed + 1);
  const auto x = qlib_cuda_test::convert<T>(xf), g = qlib_cuda_test::convert<T>(gf);
  const params p = params_for(xf, s, qlib::qspec::torch_quint8(), qlib::rounding::half_to_even);
  const lsq_ref want = lsq_cpu(x, g, s, p);
  const float factor = qc::lsq_grad_factor(s.outer * s.inner, p.grid.qmax);

  device_buffer<T> dx(x.size(), skew), dg(x.size(), skew), dgrad(x.size(), skew);
  dx.upload(x);
  dg.upload(g);
  device_params dp(p);
  device_buffer<float> gs(s.channels), gz(s.channels);
  std::size_t bytes = 0;
  if (per_channel)
    CUDA_REQUIRE(qc::lsq_backward_per_channel(nullptr, bytes, dx.data(), dg.data(), dgrad.data(), s, dp.ref(), p.grid,
                                              factor, gs.data(), gz.data()));
  else
    CUDA_REQUIRE(qc::lsq_backward(nullptr, bytes, dx.data(), dg.data(), dgrad.data(), x.size(), dp.ref(), p.grid,
                                  factor, gs.data(), gz.data()));
  temp_storage t(bytes);
  if (per_channel)
    CUDA_REQUIRE(qc::lsq_backward_per_channel(t.data(), t.bytes(), dx.data(), dg.data(), dgrad.data(), s, dp.ref(),
                                              p.grid, factor, gs.data(), gz.data()));
  else
    CUDA_REQUIRE(qc::lsq_backward(t.data(), t.bytes(), dx.data(), dg.data(), dgrad.data(), x.size(), dp.ref(), p.grid,
                                  factor, gs.data(), gz.data()));
  CHECK(first_mismatch(dgrad.download(), qlib_cuda_test::convert<T>(want.dx)) == -1);
  const std::vector<float> got_s = gs.download(), got_z = gz.download();
  for (std::size_t c = 0; c < s.channels; ++c) {
    const double tol_s = 1e-4 * factor * want.abs_ds[c] + 1e-30, tol_z = 1e-4 * factor * want.abs_dz[c] + 1e-30;
    INFO("channel " << c << ": grad_scale " << got_s[c] << " vs " << factor * want.ds[c] << ", grad_zero " << got_z[c]
                    << " vs " << factor * want.dz[c]);
    CHECK(std::fabs(got_s[c] - factor * want.ds[c]) <= tol_s);
    CHECK(std::fabs(got_z[c] - factor * want.dz[c]) <= tol_z);
  }
  // Without the zero-point gradient.
  if (!per_channel) {
    CUDA_REQUIRE(qc::lsq_backward(t.data(), t.bytes(), dx.data(), dg.data(), dgrad.data(), x.size(), dp.ref(), p.grid,
                                  factor, gs.data()));
    CHECK(gs.download() == got_s);  // deterministic
  }
}

}  // namespace

TEST_CASE("cuda fake-quant: LSQ per tensor, dx exact and gradients within 1e-4 of the sum of |terms|") {
  int k = 0;
  for (std::size_t n : {std::size_t{1}, std::size_t{1000}, std::size_t{1} << 20}) {
    INFO("n = " << n);
    check_lsq<float>(qc::channel_shape{1, 1, n}, false, 100 + k, static_cast<std::size_t>(k % 2));
    check_lsq<__half>(qc::channel_shape{1, 1, n}, false, 100 + k, 0);
    ++k;
  }
}

TEST_CASE("cuda fake-quant: LSQ per channel on every layout") {
  int k = 0;
  for (const qc::channel_shape& s : shapes) {
    INFO("shape (" << s.outer << ", " << s.channels << ", " << s.inner << ")");
    check_lsq<float>(s, true, 200 + k, static_cast<std::size_t>(k % 2));
    check_lsq<__half>(s, true, 200 + k, 0);
    ++k;
  }
}

TEST_CASE("cuda fake-quant: LSQ with a NaN input: dx 0, scale gradient NaN, zero-point gradient finite") {
  std::vector<float> x = {0.5f, NAN, 100.0f, -100.0f}, g = {1.0f, 2.0f, 3.0f, 4.0f};
  device_buffer<float> dx(4), dg(4), dgrad(4), gs(1), gz(1), sc(1);
  device_buffer<std::int32_t> zp(1);
  dx.upload(x);
  dg.upload(g);
  sc.upload({0.25f});
  zp.upload({0});
  const qc::device_qparams p{sc.data(), zp.data()};
  const qc::quant_grid grid;
  std::size_t bytes = 0;
  CUDA_REQUIRE(
      qc::lsq_backward(nullptr, bytes, dx.data(), dg.data(), dgrad.data(), 4, p, grid, 1.0f, gs.data(), gz.data()));
  temp_storage t(bytes);
  CUDA_REQUIRE(qc::lsq_backward(t.data(), t.bytes(), dx.data(), dg.data(), dgrad.data(), 4, p, grid, 1.0f, gs.data(),
                                gz.data()));
  CHECK(dgrad.download() == std::vector<float>({1.0f, 0.0f, 0.0f, 0.0f}));
  CHECK(std::isnan(gs.download()[0]));
  CHECK(gz.download()[0] == -(2.0f + 3.0f + 4.0f) * 0.25f);
}

TEST_CASE("cuda fake-quant: LSQ with no elements writes zero gradients") {
  device_buffer<float> gs(1), gz(1), sc(1);
  device_buffer<std::int32_t> zp(1);
  sc.upload({0.5f});
  zp.upload({0});
  gs.upload({7.0f});
  gz.upload({7.0f});
  std::size_t bytes = 0;
  const qc::device_qparams p{sc.data(), zp.data()};
  const qc::quant_grid g;
  const float* none = nullptr;
  CUDA_REQUIRE(
      qc::lsq_backward(nullptr, bytes, none, none, static_cast<float*>(nullptr), 0, p, g, 1.0f, gs.data(), gz.data()));
  temp_storage t(bytes);
  CUDA_REQUIRE(qc::lsq_backward(t.data(), t.bytes(), none, none, static_cast<float*>(nullptr), 0, p, g, 1.0f, gs.data(),
                                gz.data()));
  CHECK(gs.download()[0] == 0.0f);
  CHECK(gz.download()[0] == 0.0f);
}
