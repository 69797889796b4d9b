// qlib/torch.hpp against libtorch's own fake-quant ops on seeded random tensors (ATen's
// functions, which torch:: re-exports; only ATen is included to keep the compile short):
// fake_quantize_per_tensor_affine, fake_quantize_per_channel_affine,
// _fake_quantize_learnable_per_tensor_affine and _fake_quantize_learnable_per_channel_affine.
//
// What "equal" means here (see the header comment of qlib/torch.hpp):
// - values and x gradients: bit-identical, except elements whose x / s lies within 1e-5 of
//   a rounding tie (qlib divides by s, ATen multiplies by 1 / s): those may differ by one
//   step, and there are few of them (counted and bounded);
// - LSQ scale / zero-point gradients (reductions): |qlib - torch| <= 1e-5 * sum |terms|,
//   the float32 rounding of ATen's per-element sum (qlib sums in double); and qlib's equal a
//   brute-force double reference written here to 1e-6 of the same scale (qlib sums
//   vector lanes in float before adding them up in double).
// - ATen 1.13's learnable per-tensor backward reads a negative zero point one higher than its
//   forward (see the test); qlib's gradients are compared at ATen's backward zero point there.
#include <ATen/Parallel.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <qlib/core/quantize.hpp>
#include <qlib/torch.hpp>
#include <string>
#include <vector>

namespace {

namespace lt = qlib::libtorch;

const bool one_thread = [] {
  at::set_num_threads(1);  // 2 shared cores: keep libtorch's pool out of the way
  return true;
}();

/// Seeded normal data, scaled.
at::Tensor random_tensor(std::vector<std::int64_t> shape, double sigma, std::uint64_t seed,
                         at::ScalarType dtype = at::kFloat) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return (at::randn(shape, gen, at::TensorOptions().dtype(at::kDouble)) * sigma).to(dtype);
}

/// Elements where x / s (+ z) is within 1e-5 of a .5 tie: the two rounding recipes may
/// disagree there.
at::Tensor near_tie(const at::Tensor& x, const at::Tensor& scale_broadcast) {
  const at::Tensor v = x.to(at::kDouble) / scale_broadcast.to(at::kDouble);
  const at::Tensor frac = v - at::floor(v);
  return at::abs(frac - 0.5) < 1e-5;
}

/// Checks a == b except at `allowed` elements, and that those are few.
void check_equal_except(const at::Tensor& a, const at::Tensor& b, const at::Tensor& allowed, const std::string& what) {
  INFO(what);
  REQUIRE(a.sizes() == b.sizes());
  const at::Tensor differ = a.ne(b);
  const std::int64_t bad = (differ & allowed.logical_not()).sum().item<std::int64_t>();
  CHECK(bad == 0);
  CHECK(differ.sum().item<std::int64_t>() <= 2);
}

struct grid_case {
  double scale;
  std::int64_t zero_point, qmin, qmax;
};
const grid_case per_tensor_cases[] = {
    {0.05, 0, -128, 127},  // TensorRT activations
    {0.1, 10, 0, 255},     // quint8 with a zero point
    {0.3, 3, 0, 15},       // 4-bit unsigned
    {0.07, 0, -127, 127},  // narrow weights
    {0.02, -5, -8, 7},     // 4-bit signed, zero point inside the grid
};

}  // namespace

TEST_CASE("spec_from_range maps torch's integer ranges to qspec grids", "[torch]") {
  const qlib::qspec u8 = lt::spec_from_range(0, 255);
  CHECK(u8.bits == 8);
  CHECK(!u8.is_signed);
  const qlib::qspec s8 = lt::spec_from_range(-128, 127);
  CHECK((s8.bits == 8 && s8.is_signed && !s8.narrow_range));
  const qlib::qspec n8 = lt::spec_from_range(-127, 127);
  CHECK((n8.narrow_range && n8.qmin() == -127 && n8.qmax() == 127));
  const qlib::qspec u4 = lt::spec_from_range(0, 15);
  CHECK((u4.bits == 4 && u4.qmin() == 0 && u4.qmax() == 15));
  CHECK(lt::spec_from_range(-32768, 32767).bits == 16);
  CHECK_THROWS_WITH(lt::spec_from_range(0, 254), Catch::Contains("[0, 254]"));
  CHECK_THROWS_WITH(lt::spec_from_range(-100, 100), Catch::Contains("not an unsigned, signed or narrow"));
  CHECK_THROWS_AS(lt::spec_from_range(0, 1), qlib::error);  // 1 bit
}

TEST_CASE("per-tensor STE: values and x gradients equal ATen's", "[torch]") {
  std::uint64_t seed = 1;
  for (const grid_case& g : per_tensor_cases) {
    const qlib::qspec spec = lt::spec_from_range(g.qmin, g.qmax);
    const at::Tensor base = random_tensor({4, 3, 50, 7}, g.scale * (g.qmax - g.qmin) * 0.4, seed++);
    const at::Tensor dy = random_tensor({4, 3, 50, 7}, 1.0, seed++);

    const at::Tensor xq = base.clone().requires_grad_(true);
    const at::Tensor yq = lt::fake_quantize_per_tensor(xq, g.scale, g.zero_point, spec);
    yq.backward(dy);

    const at::Tensor xt = base.clone().requires_grad_(true);
    const at::Tensor yt = at::fake_quantize_per_tensor_affine(xt, g.scale, g.zero_point, g.qmin, g.qmax);
    yt.backward(dy);

    const at::Tensor ties = near_tie(base, at::full({1}, g.scale, at::kDouble));
    const std::string what = "grid [" + std::to_string(g.qmin) + ", " + std::to_string(g.qmax) + "]";
    check_equal_except(yq.detach(), yt.detach(), ties, what + " values");
    check_equal_except(xq.grad(), xt.grad(), ties, what + " dx");
    // Both clip and pass: the gradient is not trivially all ones or all zeros.
    const double passed = xq.grad().ne(0).to(at::kDouble).mean().item<double>();
    CHECK(passed > 0.3);
    CHECK(passed < 0.999);
  }
}

TEST_CASE("per-tensor STE in float64 equals qlib's core quantize / dequantize", "[torch]") {
  const qlib::qspec spec = lt::spec_from_range(-128, 127);
  const at::Tensor x = random_tensor({1000}, 4.0, 77, at::kDouble).requires_grad_(true);
  const double scale = 0.031;
  const std::int64_t z = 3;
  const at::Tensor y = lt::fake_quantize_per_tensor(x, scale, z, spec);
  CHECK(y.scalar_type() == at::kDouble);
  y.sum().backward();
  const at::Tensor xd = x.detach().contiguous();
  const double* px = xd.data_ptr<double>();
  const at::Tensor yd = y.detach().contiguous();
  for (std::int64_t i = 0; i < 1000; ++i) {
    const double q = qlib::quantize_value(px[i], scale, 3, -128, 127);
    CHECK(yd.data_ptr<double>()[i] == (q - 3.0) * scale);
    const double v = qlib::round_half_even(px[i] / scale) + 3.0;
    CHECK(x.grad().data_ptr<double>()[i] == ((v >= -128.0 && v <= 127.0) ? 1.0 : 0.0));
  }
}

TEST_CASE("per-channel STE: values and x gradients equal ATen's along each axis", "[torch]") {
  const qlib::qspec spec = lt::spec_from_range(-128, 127);
  std::uint64_t seed = 100;
  for (std::int64_t axis : {0, 1, 3, -1}) {
    const at::Tensor base = random_tensor({5, 6, 9, 4}, 2.0, seed++);
    const std::int64_t c = base.size(axis < 0 ? axis + 4 : axis);
    const at::Tensor scale = at::rand({c}, at::detail::createCPUGenerator(seed++)).mul(0.03).add(0.005);
    const at::Tensor zero_point =
        at::randint(-20, 20, {c}, at::detail::createCPUGenerator(seed++), at::TensorOptions().dtype(at::kInt));
    const at::Tensor dy = random_tensor({5, 6, 9, 4}, 1.0, seed++);

    const at::Tensor xq = base.clone().requires_grad_(true);
    const at::Tensor yq = lt::fake_quantize_per_channel(xq, scale, zero_point, axis, spec);
    yq.backward(dy);
    const at::Tensor xt = base.clone().requires_grad_(true);
    // ATen takes a non-negative axis only.
    const at::Tensor yt =
        at::fake_quantize_per_channel_affine(xt, scale, zero_point, axis < 0 ? axis + 4 : axis, -128, 127);
    yt.backward(dy);

    std::vector<std::int64_t> bshape(4, 1);
    bshape[static_cast<std::size_t>(axis < 0 ? axis + 4 : axis)] = c;
    const at::Tensor ties = near_tie(base, scale.reshape(bshape));
    check_equal_except(yq.detach(), yt.detach(), ties, "axis " + std::to_string(axis) + " values");
    check_equal_except(xq.grad(), xt.grad(), ties, "axis " + std::to_string(axis) + " dx");
    CHECK(xq.grad().ne(0).to(at::kDouble).mean().item<double>() < 0.999);
  }
}

TEST_CASE("STE on a non-contiguous view equals the contiguous copy", "[torch]") {
  const qlib::qspec spec = lt::spec_from_range(0, 255);
  const at::Tensor base = random_tensor({30, 40}, 3.0, 5);
  const at::Tensor t = base.t();  // strided view
  REQUIRE(!t.is_contiguous());
  const at::Tensor a = lt::fake_quantize_per_tensor(t, 0.05, 100, spec);
  const at::Tensor b = lt::fake_quantize_per_tensor(t.contiguous(), 0.05, 100, spec);
  CHECK(at::equal(a, b));
}

namespace {

/// Brute-force double LSQ gradients for one channel (the elements in `x`, `dy`), from the
/// definitions in fakequant/learnable.hpp: inside the grid dscale = dy (round(v) - v),
/// outside dscale = dy (qmin - z or qmax - z) and dz = -dy s; also the sum of |terms|.
struct lsq_ref {
  double ds = 0, dz = 0, abs_ds = 0, abs_dz = 0;
};
lsq_ref lsq_reference(const float* x, const float* dy, std::size_t n, std::size_t stride, double s, double z,
                      double qmin, double qmax, double factor) {
  lsq_ref r;
  for (std::size_t i = 0; i < n; ++i) {
    const double xv = x[i * stride], d = dy[i * stride];
    const double v = static_cast<double>(static_cast<float>(xv) / static_cast<float>(s));
    const double q = qlib::round_half_even(v) + z;
    double ts = 0, tz = 0;
    if (q < qmin) {
      ts = d * (qmin - z);
      tz = -d * s;
    } else if (q > qmax) {
      ts = d * (qmax - z);
      tz = -d * s;
    } else {
      ts = d * (qlib::round_half_even(v) - v);
    }
    r.ds += ts * factor;
    r.dz += tz * factor;
    r.abs_ds += std::fabs(ts * factor);
    r.abs_dz += std::fabs(tz * factor);
  }
  return r;
}

}  // namespace

TEST_CASE("learnable per tensor (LSQ): values and gradients against ATen", "[torch]") {
  std::uint64_t seed = 300;
  for (const grid_case& g : per_tensor_cases) {
    const qlib::qspec spec = lt::spec_from_range(g.qmin, g.qmax);
    const std::int64_t n = 4000;
    const at::Tensor base = random_tensor({40, 100}, g.scale * (g.qmax - g.qmin) * 0.4, seed++);
    const at::Tensor dy = random_tensor({40, 100}, 1.0, seed++);
    const double grad_factor = 1.0 / std::sqrt(static_cast<double>(n) * static_cast<double>(g.qmax));
    // A real-valued zero point, rounded in the forward.
    const float z_real = static_cast<float>(g.zero_point) + 0.3f;

    const at::Tensor xq = base.clone().requires_grad_(true);
    const at::Tensor sq = at::full({1}, g.scale, at::kFloat).requires_grad_(true);
    const at::Tensor zq = at::full({1}, z_real, at::kFloat).requires_grad_(true);
    const at::Tensor yq = lt::fake_quantize_learnable_per_tensor(xq, sq, zq, spec, lt::torch_grad_factor(grad_factor));
    yq.backward(dy);

    const at::Tensor xt = base.clone().requires_grad_(true);
    const at::Tensor st = at::full({1}, g.scale, at::kFloat).requires_grad_(true);
    const at::Tensor zt = at::full({1}, z_real, at::kFloat).requires_grad_(true);
    const at::Tensor yt = at::_fake_quantize_learnable_per_tensor_affine(xt, st, zt, g.qmin, g.qmax, grad_factor);
    yt.backward(dy);

    const std::string what = "grid [" + std::to_string(g.qmin) + ", " + std::to_string(g.qmax) + "]";
    INFO(what);
    const at::Tensor ties =
        near_tie(base, at::full({1}, static_cast<double>(static_cast<float>(g.scale)), at::kDouble));
    check_equal_except(yq.detach(), yt.detach(), ties, what + " values");

    // ATen 1.13's backward reads the zero point as (int64)clamp(z + 0.5), which truncates
    // towards zero, while its forward rounds with nearbyint (FakeQuantPerTensorAffine.cpp,
    // _get_zero_point_from_tensor): for a negative zero point its backward uses one more than
    // its forward. qlib uses the forward's zero point in both. Where ATen's two disagree, its
    // gradients are compared with qlib's lsq_backward at ATen's backward zero point.
    const double qmin = static_cast<double>(g.qmin), qmax = static_cast<double>(g.qmax);
    const double z_forward = std::fmin(std::fmax(std::nearbyint(static_cast<double>(z_real)), qmin), qmax);
    const double z_aten_backward = static_cast<double>(static_cast<std::int64_t>(
        std::fmin(std::fmax(z_real + 0.5f, static_cast<float>(qmin)), static_cast<float>(qmax))));
    CHECK(z_forward == static_cast<double>(g.zero_point));
    at::Tensor dx_q = xq.grad();
    double ds_q = sq.grad().item<double>(), dz_q = zq.grad().item<double>();
    if (z_aten_backward != z_forward) {
      CHECK(g.zero_point < 0);
      dx_q = at::empty_like(base);
      const qlib::qparams<float> p{static_cast<float>(g.scale), static_cast<std::int32_t>(z_aten_backward)};
      const qlib::lsq_grads<float> gr = qlib::lsq_backward(
          qlib::view(dy.data_ptr<float>(), qlib::shape_t{40, 100}),
          qlib::view(base.data_ptr<float>(), qlib::shape_t{40, 100}), p, spec,
          qlib::tensor_view<float>(dx_q.data_ptr<float>(), qlib::shape_t{40, 100}), lt::torch_grad_factor(grad_factor));
      ds_q = gr.scale;
      dz_q = gr.zero_point;
    }
    check_equal_except(dx_q, xt.grad(), ties, what + " dx");
    const double z_ref = z_aten_backward;
    const lsq_ref ref = lsq_reference(base.data_ptr<float>(), dy.data_ptr<float>(), static_cast<std::size_t>(n), 1,
                                      static_cast<float>(g.scale), z_ref, qmin, qmax, grad_factor);
    const double ds_t = st.grad().item<double>(), dz_t = zt.grad().item<double>();
    CHECK(std::fabs(ds_q - ds_t) <= 1e-5 * ref.abs_ds);
    CHECK(std::fabs(dz_q - dz_t) <= 1e-5 * ref.abs_dz + 1e-12);
    CHECK(std::fabs(ds_q - ref.ds) <= 1e-6 * ref.abs_ds + 1e-12);
    CHECK(std::fabs(dz_q - ref.dz) <= 1e-6 * ref.abs_dz + 1e-12);
    CHECK(ref.abs_ds > 0.0);
  }
}

TEST_CASE("learnable per channel (LSQ): values and gradients against ATen", "[torch]") {
  const qlib::qspec spec = lt::spec_from_range(-8, 7);
  std::uint64_t seed = 500;
  for (std::int64_t axis : {0, 1}) {
    const at::Tensor base = random_tensor({6, 8, 25}, 0.5, seed++);
    const at::Tensor dy = random_tensor({6, 8, 25}, 1.0, seed++);
    const std::int64_t c = base.size(axis);
    const at::Tensor scale0 = at::rand({c}, at::detail::createCPUGenerator(seed++)).mul(0.1).add(0.05);
    const at::Tensor zero0 = at::rand({c}, at::detail::createCPUGenerator(seed++)).mul(6.0).sub(3.0);
    const double grad_factor = 1.0 / std::sqrt(static_cast<double>(base.numel()) * 7.0);

    const at::Tensor xq = base.clone().requires_grad_(true);
    const at::Tensor sq = scale0.clone().requires_grad_(true), zq = zero0.clone().requires_grad_(true);
    lt::fake_quantize_learnable_per_channel(xq, sq, zq, axis, spec, lt::torch_grad_factor(grad_factor)).backward(dy);

    const at::Tensor xt = base.clone().requires_grad_(true);
    const at::Tensor st = scale0.clone().requires_grad_(true), zt = zero0.clone().requires_grad_(true);
    const at::Tensor yt = at::_fake_quantize_learnable_per_channel_affine(xt, st, zt, axis, -8, 7, grad_factor);
    yt.backward(dy);
    const at::Tensor yq =
        lt::fake_quantize_learnable_per_channel(base, scale0, zero0, axis, spec, lt::torch_grad_factor(grad_factor));

    std::vector<std::int64_t> bshape(3, 1);
    bshape[static_cast<std::size_t>(axis)] = c;
    const at::Tensor ties = near_tie(base, scale0.reshape(bshape));
    check_equal_except(yq, yt.detach(), ties, "axis " + std::to_string(axis) + " values");
    check_equal_except(xq.grad(), xt.grad(), ties, "axis " + std::to_string(axis) + " dx");

    // Per-channel reference: move the channel axis first.
    const at::Tensor xc = base.movedim(axis, 0).contiguous(), dc = dy.movedim(axis, 0).contiguous();
    const std::size_t per = static_cast<std::size_t>(base.numel() / c);
    for (std::int64_t ch = 0; ch < c; ++ch) {
      INFO("axis " << axis << " channel " << ch);
      const double s = scale0[ch].item<double>();
      const double z = std::fmin(std::fmax(qlib::round_half_even(zero0[ch].item<double>()), -8.0), 7.0);
      const lsq_ref ref = lsq_reference(xc.data_ptr<float>() + ch * static_cast<std::int64_t>(per),
                                        dc.data_ptr<float>() + ch * static_cast<std::int64_t>(per), per, 1, s, z, -8.0,
                                        7.0, grad_factor);
      const double ds_q = sq.grad()[ch].item<double>(), ds_t = st.grad()[ch].item<double>();
      const double dz_q = zq.grad()[ch].item<double>(), dz_t = zt.grad()[ch].item<double>();
      CHECK(std::fabs(ds_q - ds_t) <= 1e-5 * ref.abs_ds + 1e-12);
      CHECK(std::fabs(dz_q - dz_t) <= 1e-5 * ref.abs_dz + 1e-12);
      CHECK(std::fabs(ds_q - ref.ds) <= 1e-6 * ref.abs_ds + 1e-12);
      CHECK(std::fabs(dz_q - ref.dz) <= 1e-6 * ref.abs_dz + 1e-12);
    }
  }
}

TEST_CASE("the default LSQ gradient scale is 1 / sqrt(N * qmax)", "[torch]") {
  const qlib::qspec spec = lt::spec_from_range(0, 15);
  const at::Tensor x = random_tensor({500}, 1.0, 9).abs();
  const at::Tensor s1 = at::full({1}, 0.1f).requires_grad_(true), z1 = at::zeros({1}).requires_grad_(true);
  lt::fake_quantize_learnable_per_tensor(x, s1, z1, spec).sum().backward();
  const at::Tensor s2 = at::full({1}, 0.1f).requires_grad_(true), z2 = at::zeros({1}).requires_grad_(true);
  qlib::lsq_options none;
  none.grad_scale = qlib::lsq_grad_scale::none;
  lt::fake_quantize_learnable_per_tensor(x, s2, z2, spec, none).sum().backward();
  const double factor = 1.0 / std::sqrt(500.0 * 15.0);
  CHECK(s1.grad().item<double>() == Approx(s2.grad().item<double>() * factor).epsilon(1e-6));
}

TEST_CASE("bad arguments fail with a message naming them", "[torch]") {
  const qlib::qspec spec = lt::spec_from_range(-128, 127);
  const at::Tensor x = at::zeros({4, 3});
  CHECK_THROWS_WITH(lt::fake_quantize_per_tensor(at::zeros({4}, at::kInt), 0.1, 0, spec),
                    Catch::Contains("x has dtype Int"));
  CHECK_THROWS_WITH(lt::fake_quantize_per_tensor(x, 0.0, 0, spec), Catch::Contains("scale"));
  CHECK_THROWS_WITH(lt::fake_quantize_per_tensor(x, -1.0, 0, spec), Catch::Contains("scale"));
  CHECK_THROWS_WITH(lt::fake_quantize_per_tensor(x, 0.1, 200, spec), Catch::Contains("zero_point = 200"));
  CHECK_THROWS_WITH(lt::fake_quantize_per_tensor(at::Tensor(), 0.1, 0, spec), Catch::Contains("undefined"));
  qlib::qspec bad = spec;
  bad.bits = 1;
  CHECK_THROWS_WITH(lt::fake_quantize_per_tensor(x, 0.1, 0, bad), Catch::Contains("bits"));
  CHECK_THROWS_WITH(lt::fake_quantize_per_channel(x, at::ones({4}), at::zeros({4}, at::kInt), 1, spec),
                    Catch::Contains("scale has shape (4,)"));
  CHECK_THROWS_WITH(lt::fake_quantize_per_channel(x, at::ones({3}), at::zeros({3}, at::kInt), 2, spec),
                    Catch::Contains("axis 2"));
  CHECK_THROWS_WITH(lt::fake_quantize_per_channel(x, at::ones({3}), at::full({3}, 0.5), 1, spec),
                    Catch::Contains("zero_point[0] = 0.5"));
  CHECK_THROWS_WITH(lt::fake_quantize_per_channel(x, at::full({3}, -0.1), at::zeros({3}, at::kInt), 1, spec),
                    Catch::Contains("channel 0"));
  CHECK_THROWS_WITH(lt::fake_quantize_learnable_per_tensor(x, at::ones({2}), at::zeros({1}), spec),
                    Catch::Contains("scale has shape (2,)"));
  CHECK_THROWS_WITH(lt::fake_quantize_learnable_per_tensor(x, at::full({1}, std::nanf("")), at::zeros({1}), spec),
                    Catch::Contains("scale"));
}
