// BatchNorm folding: inference folding against the unfused conv then BN; the QAT-time
// pieces (PyTorch _ConvBnNd, approximate form) against the unfused conv + BN in training
// and frozen mode; every backward piece and the whole chain against finite differences;
// bad input.
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <qlib/fuse/bn_fold.hpp>
#include <string>
#include <vector>

#include "test_data.hpp"
#include "test_errors.hpp"

using qlib::shape_t;
using qlib::view;
using qlib_test::expect_error;

namespace {

using vec = std::vector<double>;

vec randn(std::size_t n, std::uint64_t seed, double scale = 1.0, double shift = 0.0) {
  auto v = qlib_test::sample<double>(qlib_test::dist::gaussian, n, seed);
  for (double& x : v) x = x * scale + shift;
  return v;
}

vec rand_positive(std::size_t n, std::uint64_t seed, double lo, double hi) {
  auto v = qlib_test::sample<double>(qlib_test::dist::uniform, n, seed);  // [-1, 3)
  for (double& x : v) x = lo + (x + 1.0) / 4.0 * (hi - lo);
  return v;
}

/// Slow direct convolution: x (N, Ci, H, W), w (Co, Ci, kh, kw), stride 1, padding p, + bias.
struct conv_shape {
  std::size_t n, ci, h, w, co, kh, kw, pad;
  std::size_t oh() const { return h + 2 * pad - kh + 1; }
  std::size_t ow() const { return w + 2 * pad - kw + 1; }
  shape_t out() const { return shape_t{n, co, oh(), ow()}; }
  shape_t weight() const { return shape_t{co, ci, kh, kw}; }
  shape_t input() const { return shape_t{n, ci, h, w}; }
};

vec conv_ref(const vec& x, const vec& w, const vec& bias, const conv_shape& s) {
  vec y(s.n * s.co * s.oh() * s.ow(), 0.0);
  for (std::size_t n = 0; n < s.n; ++n)
    for (std::size_t o = 0; o < s.co; ++o)
      for (std::size_t i = 0; i < s.oh(); ++i)
        for (std::size_t j = 0; j < s.ow(); ++j) {
          double acc = bias.empty() ? 0.0 : bias[o];
          for (std::size_t c = 0; c < s.ci; ++c)
            for (std::size_t a = 0; a < s.kh; ++a)
              for (std::size_t b = 0; b < s.kw; ++b) {
                const long yy = static_cast<long>(i + a) - static_cast<long>(s.pad);
                const long xx = static_cast<long>(j + b) - static_cast<long>(s.pad);
                if (yy < 0 || xx < 0 || yy >= static_cast<long>(s.h) || xx >= static_cast<long>(s.w)) continue;
                acc += w[((o * s.ci + c) * s.kh + a) * s.kw + b] *
                       x[((n * s.ci + c) * s.h + static_cast<std::size_t>(yy)) * s.w + static_cast<std::size_t>(xx)];
              }
          y[((n * s.co + o) * s.oh() + i) * s.ow() + j] = acc;
        }
  return y;
}

/// dL/dw and dL/dx of conv_ref for an upstream gradient dy.
void conv_ref_backward(const vec& x, const vec& w, const vec& dy, const conv_shape& s, vec* dw, vec* dx) {
  dw->assign(w.size(), 0.0);
  dx->assign(x.size(), 0.0);
  for (std::size_t n = 0; n < s.n; ++n)
    for (std::size_t o = 0; o < s.co; ++o)
      for (std::size_t i = 0; i < s.oh(); ++i)
        for (std::size_t j = 0; j < s.ow(); ++j) {
          const double g = dy[((n * s.co + o) * s.oh() + i) * s.ow() + j];
          for (std::size_t c = 0; c < s.ci; ++c)
            for (std::size_t a = 0; a < s.kh; ++a)
              for (std::size_t b = 0; b < s.kw; ++b) {
                const long yy = static_cast<long>(i + a) - static_cast<long>(s.pad);
                const long xx = static_cast<long>(j + b) - static_cast<long>(s.pad);
                if (yy < 0 || xx < 0 || yy >= static_cast<long>(s.h) || xx >= static_cast<long>(s.w)) continue;
                const std::size_t wi = ((o * s.ci + c) * s.kh + a) * s.kw + b;
                const std::size_t xi =
                    ((n * s.ci + c) * s.h + static_cast<std::size_t>(yy)) * s.w + static_cast<std::size_t>(xx);
                (*dw)[wi] += g * x[xi];
                (*dx)[xi] += g * w[wi];
              }
        }
}

/// Slow BatchNorm: statistics over (N, spatial) per channel of an (N, C, inner) array.
struct bn_ref_out {
  vec y, mean, var_biased, var_unbiased;
};
bn_ref_out bn_ref(const vec& x, std::size_t n, std::size_t c, std::size_t inner, const vec& gamma, const vec& beta,
                  double eps, const vec* use_mean = nullptr, const vec* use_var = nullptr) {
  bn_ref_out r;
  r.y.resize(x.size());
  r.mean.assign(c, 0.0);
  r.var_biased.assign(c, 0.0);
  r.var_unbiased.assign(c, 0.0);
  const double m = static_cast<double>(n * inner);
  for (std::size_t ch = 0; ch < c; ++ch) {
    double s = 0;
    for (std::size_t b = 0; b < n; ++b)
      for (std::size_t i = 0; i < inner; ++i) s += x[(b * c + ch) * inner + i];
    r.mean[ch] = s / m;
    double ss = 0;
    for (std::size_t b = 0; b < n; ++b)
      for (std::size_t i = 0; i < inner; ++i) ss += std::pow(x[(b * c + ch) * inner + i] - r.mean[ch], 2);
    r.var_biased[ch] = ss / m;
    r.var_unbiased[ch] = ss / (m - 1);
    const double mu = use_mean ? (*use_mean)[ch] : r.mean[ch];
    const double var = use_var ? (*use_var)[ch] : r.var_biased[ch];
    for (std::size_t b = 0; b < n; ++b)
      for (std::size_t i = 0; i < inner; ++i) {
        const std::size_t k = (b * c + ch) * inner + i;
        r.y[k] = (x[k] - mu) / std::sqrt(var + eps) * gamma[ch] + beta[ch];
      }
  }
  return r;
}

double max_abs_diff(const vec& a, const vec& b) {
  REQUIRE(a.size() == b.size());
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::fmax(d, std::fabs(a[i] - b[i]));
  return d;
}

/// Central finite differences of a scalar function of v, at every index.
vec numeric_grad(vec& v, const std::function<double()>& f, double h = 1e-6) {
  vec g(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double keep = v[i];
    v[i] = keep + h;
    const double up = f();
    v[i] = keep - h;
    const double down = f();
    v[i] = keep;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

double dot(const vec& a, const vec& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

const conv_shape small{3, 3, 5, 6, 4, 3, 3, 1};

}  // namespace

TEST_CASE("bn_fold: folded conv equals conv then BatchNorm (eval)") {
  const conv_shape s = small;
  const vec x = randn(s.input().numel(), 1), w = randn(s.weight().numel(), 2, 0.3), b = randn(s.co, 3);
  const vec gamma = randn(s.co, 4, 0.5, 1.0), beta = randn(s.co, 5), mean = randn(s.co, 6, 0.5);
  const vec var = rand_positive(s.co, 7, 0.1, 3.0);
  const double eps = 1e-5;
  qlib::batch_norm_view<double> bn{view(gamma), view(beta), view(mean), view(var), eps};
  const auto folded = qlib::fold_batch_norm(view(w.data(), s.weight()), 0, view(b), bn);
  // The explicit formula, per channel.
  for (std::size_t c = 0; c < s.co; ++c) {
    const double k = gamma[c] / std::sqrt(var[c] + eps);
    CHECK(folded.bias[c] == Approx((b[c] - mean[c]) * k + beta[c]).epsilon(1e-14));
    for (std::size_t i = 0; i < s.ci * s.kh * s.kw; ++i)
      CHECK(folded.weight[c * s.ci * s.kh * s.kw + i] == Approx(w[c * s.ci * s.kh * s.kw + i] * k).epsilon(1e-14));
  }
  const vec unfused = bn_ref(conv_ref(x, w, b, s), s.n, s.co, s.oh() * s.ow(), gamma, beta, eps, &mean, &var).y;
  const vec fused = conv_ref(x, folded.weight, folded.bias, s);
  CHECK(max_abs_diff(unfused, fused) < 1e-12);
  // The library's own eval BN agrees with the slow one.
  vec y_eval(unfused.size());
  const vec conv_out = conv_ref(x, w, b, s);
  qlib::batch_norm_forward_eval(view(conv_out.data(), s.out()), bn, y_eval.data());
  CHECK(max_abs_diff(unfused, y_eval) < 1e-12);
}

TEST_CASE("bn_fold: Linear (BatchNorm1d), no conv bias, affine = false") {
  const std::size_t n = 7, in = 5, out = 3;
  const vec x = randn(n * in, 11), w = randn(out * in, 12);
  const vec mean = randn(out, 13), var = rand_positive(out, 14, 0.5, 2.0);
  const double eps = 1e-3;
  qlib::batch_norm_view<double> bn{{}, {}, view(mean), view(var), eps};
  vec wf(w.size()), bf(out);
  qlib::fold_batch_norm(view(w.data(), shape_t{out, in}), 0, qlib::tensor_view<const double>(), bn, wf.data(),
                        bf.data());
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t o = 0; o < out; ++o) {
      double y = 0, yf = bf[o];
      for (std::size_t i = 0; i < in; ++i) {
        y += w[o * in + i] * x[r * in + i];
        yf += wf[o * in + i] * x[r * in + i];
      }
      CHECK(yf == Approx((y - mean[o]) / std::sqrt(var[o] + eps)).margin(1e-12));
    }
}

TEST_CASE("bn_fold: ConvTranspose weight folds along axis 1") {
  // ConvTranspose2d, stride 1, no padding: y[n, o, i + a, j + b] += x[n, c, i, j] * w[c, o, a, b].
  const std::size_t n = 2, ci = 3, co = 4, h = 3, wd = 4, k = 2, oh = h + k - 1, ow = wd + k - 1;
  const vec x = randn(n * ci * h * wd, 21), w = randn(ci * co * k * k, 22), b = randn(co, 23);
  const vec gamma = randn(co, 24, 0.5, 1.0), beta = randn(co, 25), mean = randn(co, 26),
            var = rand_positive(co, 27, 0.2, 2.0);
  const auto convt = [&](const vec& wt, const vec& bias) {
    vec y(n * co * oh * ow, 0.0);
    for (std::size_t bn = 0; bn < n; ++bn)
      for (std::size_t o = 0; o < co; ++o)
        for (std::size_t i = 0; i < oh * ow; ++i) y[(bn * co + o) * oh * ow + i] = bias[o];
    for (std::size_t bn = 0; bn < n; ++bn)
      for (std::size_t c = 0; c < ci; ++c)
        for (std::size_t o = 0; o < co; ++o)
          for (std::size_t i = 0; i < h; ++i)
            for (std::size_t j = 0; j < wd; ++j)
              for (std::size_t a = 0; a < k; ++a)
                for (std::size_t bb = 0; bb < k; ++bb)
                  y[((bn * co + o) * oh + i + a) * ow + j + bb] +=
                      x[((bn * ci + c) * h + i) * wd + j] * wt[((c * co + o) * k + a) * k + bb];
    return y;
  };
  qlib::batch_norm_view<double> bn{view(gamma), view(beta), view(mean), view(var), 1e-5};
  const auto folded = qlib::fold_batch_norm(view(w.data(), shape_t{ci, co, k, k}), 1, view(b), bn);
  const vec unfused = bn_ref(convt(w, b), n, co, oh * ow, gamma, beta, 1e-5, &mean, &var).y;
  CHECK(max_abs_diff(unfused, convt(folded.weight, folded.bias)) < 1e-12);
}

TEST_CASE("bn_fold: training-mode BatchNorm follows torch (batch statistics, unbiased running variance)") {
  // x = (1, 2, 3, 4) as (N = 4, C = 1): mean 2.5, biased var 1.25, unbiased 5/3.
  const vec x = {1, 2, 3, 4};
  vec rm = {0.0}, rv = {1.0}, y(4), sm(1), si(1);
  qlib::batch_norm_forward_train(view(x.data(), shape_t{4, 1}), qlib::tensor_view<const double>(),
                                 qlib::tensor_view<const double>(), qlib::tensor_view<double>(rm.data(), 1),
                                 qlib::tensor_view<double>(rv.data(), 1), 1e-5, 0.1, y.data(), sm.data(), si.data());
  CHECK(rm[0] == Approx(0.25));
  CHECK(rv[0] == Approx(0.9 + 0.1 * 5.0 / 3.0));
  CHECK(sm[0] == Approx(2.5));
  CHECK(si[0] == Approx(1.0 / std::sqrt(1.25 + 1e-5)));
  for (int i = 0; i < 4; ++i)
    CHECK(y[static_cast<std::size_t>(i)] == Approx((x[static_cast<std::size_t>(i)] - 2.5) / std::sqrt(1.25 + 1e-5)));
  // Against the slow reference on NCHW data with a large mean (two-pass statistics).
  const conv_shape s = small;
  const vec z = randn(s.out().numel(), 31, 2.0, 1000.0);
  const vec gamma = randn(s.co, 32, 0.5, 1.0), beta = randn(s.co, 33);
  vec rmean = randn(s.co, 34), rvar = rand_positive(s.co, 35, 0.5, 2.0), out(z.size()), smean(s.co), sinv(s.co);
  const vec rmean0 = rmean, rvar0 = rvar;
  qlib::batch_norm_forward_train(
      view(z.data(), s.out()), view(gamma), view(beta), qlib::tensor_view<double>(rmean.data(), s.co),
      qlib::tensor_view<double>(rvar.data(), s.co), 1e-5, 0.3, out.data(), smean.data(), sinv.data());
  const auto ref = bn_ref(z, s.n, s.co, s.oh() * s.ow(), gamma, beta, 1e-5);
  CHECK(max_abs_diff(out, ref.y) < 1e-9);
  for (std::size_t c = 0; c < s.co; ++c) {
    CHECK(rmean[c] == Approx(0.7 * rmean0[c] + 0.3 * ref.mean[c]).epsilon(1e-12));
    CHECK(rvar[c] == Approx(0.7 * rvar0[c] + 0.3 * ref.var_unbiased[c]).epsilon(1e-12));
  }
}

TEST_CASE("bn_fold: QAT forward (approximate form) equals the unfused conv + BN, training and frozen") {
  const conv_shape s = small;
  const vec x = randn(s.input().numel(), 41), w = randn(s.weight().numel(), 42, 0.3), bias = randn(s.co, 43);
  const vec gamma = randn(s.co, 44, 0.3, 1.0), beta = randn(s.co, 45);
  const vec rmean0 = randn(s.co, 46), rvar0 = rand_positive(s.co, 47, 0.2, 2.0);
  const double eps = 1e-5, momentum = 0.1;
  vec rm_q = rmean0, rv_q = rvar0, rm_u = rmean0, rv_u = rvar0;
  for (int step = 0; step < 3; ++step) {  // a few steps: running statistics evolve identically
    // QAT path with the identity as fake-quant.
    vec k(s.co), ws(w.size()), z(s.out().numel()), out_q(z.size());
    qlib::qat_scale_factor(view(gamma), view(rv_q), eps, k.data());
    qlib::scale_weight(view(w.data(), s.weight()), 0, view(k), ws.data());
    const vec y = conv_ref(x, ws, {}, s);
    qlib::unscale_output(view(y.data(), s.out()), view(k), view(bias), z.data());
    qlib::batch_norm_forward_train(
        view(z.data(), s.out()), view(gamma), view(beta), qlib::tensor_view<double>(rm_q.data(), s.co),
        qlib::tensor_view<double>(rv_q.data(), s.co), eps, momentum, out_q.data(), nullptr, nullptr);
    // Unfused: conv with bias, then BN.
    const vec zu = conv_ref(x, w, bias, s);
    vec out_u(zu.size());
    qlib::batch_norm_forward_train(
        view(zu.data(), s.out()), view(gamma), view(beta), qlib::tensor_view<double>(rm_u.data(), s.co),
        qlib::tensor_view<double>(rv_u.data(), s.co), eps, momentum, out_u.data(), nullptr, nullptr);
    CHECK(max_abs_diff(out_q, out_u) < 1e-10);
    CHECK(max_abs_diff(rm_q, rm_u) < 1e-12);
    CHECK(max_abs_diff(rv_q, rv_u) < 1e-12);
  }
  // Frozen: running statistics; the QAT graph equals the inference-folded conv.
  vec k(s.co), ws(w.size()), z(s.out().numel()), out_q(z.size());
  qlib::qat_scale_factor(view(gamma), view(rv_q), eps, k.data());
  qlib::scale_weight(view(w.data(), s.weight()), 0, view(k), ws.data());
  const vec y = conv_ref(x, ws, {}, s);
  qlib::unscale_output(view(y.data(), s.out()), view(k), view(bias), z.data());
  qlib::batch_norm_view<double> bn{view(gamma), view(beta), view(rm_q), view(rv_q), eps};
  qlib::batch_norm_forward_eval(view(z.data(), s.out()), bn, out_q.data());
  const auto folded = qlib::fold_batch_norm(view(w.data(), s.weight()), 0, view(bias), bn);
  CHECK(max_abs_diff(out_q, conv_ref(x, folded.weight, folded.bias, s)) < 1e-10);
}

TEST_CASE("bn_fold: every backward piece matches finite differences") {
  const conv_shape s{2, 2, 3, 4, 3, 2, 2, 0};
  const shape_t ys = s.out();
  vec y = randn(ys.numel(), 51), k = randn(s.co, 52, 0.3, 1.2), bias = randn(s.co, 53), r = randn(ys.numel(), 54);
  SECTION("unscale_output") {
    const auto loss = [&] {
      vec z(y.size());
      qlib::unscale_output(view(y.data(), ys), view(k), view(bias), z.data());
      return dot(z, r);
    };
    vec dy(y.size()), dk(s.co), db(s.co);
    qlib::unscale_output_backward(view(r.data(), ys), view(y.data(), ys), view(k), dy.data(), dk.data(), db.data());
    CHECK(max_abs_diff(dy, numeric_grad(y, loss)) < 1e-7);
    CHECK(max_abs_diff(dk, numeric_grad(k, loss)) < 1e-7);
    CHECK(max_abs_diff(db, numeric_grad(bias, loss)) < 1e-7);
  }
  SECTION("scale_weight, along axis 0 and 1") {
    vec w = randn(s.weight().numel(), 55), rw = randn(w.size(), 56);
    for (int axis : {0, 1}) {
      const shape_t wshape = axis == 0 ? s.weight() : shape_t{s.ci, s.co, s.kh, s.kw};
      const auto loss = [&] {
        vec ws(w.size());
        qlib::scale_weight(view(w.data(), wshape), axis, view(k), ws.data());
        return dot(ws, rw);
      };
      vec dw(w.size()), dk(s.co);
      qlib::scale_weight_backward(view(rw.data(), wshape), view(w.data(), wshape), axis, view(k), dw.data(), dk.data());
      CHECK(max_abs_diff(dw, numeric_grad(w, loss)) < 1e-7);
      CHECK(max_abs_diff(dk, numeric_grad(k, loss)) < 1e-7);
    }
  }
  SECTION("scale factor (gamma)") {
    vec gamma = randn(s.co, 57, 0.3, 1.0), rv = rand_positive(s.co, 58, 0.2, 2.0), rk = randn(s.co, 59);
    const auto loss = [&] {
      vec kk(s.co);
      qlib::qat_scale_factor(view(gamma), view(rv), 1e-5, kk.data());
      return dot(kk, rk);
    };
    vec dg(s.co);
    qlib::scale_factor_backward(view(rk), view(rv), 1e-5, dg.data());
    CHECK(max_abs_diff(dg, numeric_grad(gamma, loss)) < 1e-7);
  }
  SECTION("batch norm, training and eval") {
    vec gamma = randn(s.co, 60, 0.3, 1.0), beta = randn(s.co, 61), mean = randn(s.co, 62);
    const vec var = rand_positive(s.co, 63, 0.2, 2.0);
    const auto loss_train = [&] {
      vec rm(s.co, 0.0), rv(s.co, 1.0), out(y.size());
      qlib::batch_norm_forward_train(
          view(y.data(), ys), view(gamma), view(beta), qlib::tensor_view<double>(rm.data(), s.co),
          qlib::tensor_view<double>(rv.data(), s.co), 1e-5, 0.1, out.data(), nullptr, nullptr);
      return dot(out, r);
    };
    vec rm(s.co, 0.0), rv(s.co, 1.0), out(y.size()), sm(s.co), si(s.co), dx(y.size()), dg(s.co), db(s.co);
    qlib::batch_norm_forward_train(
        view(y.data(), ys), view(gamma), view(beta), qlib::tensor_view<double>(rm.data(), s.co),
        qlib::tensor_view<double>(rv.data(), s.co), 1e-5, 0.1, out.data(), sm.data(), si.data());
    qlib::batch_norm_backward_train(view(r.data(), ys), view(y.data(), ys), view(gamma), view(sm), view(si), dx.data(),
                                    dg.data(), db.data());
    CHECK(max_abs_diff(dx, numeric_grad(y, loss_train)) < 1e-6);
    CHECK(max_abs_diff(dg, numeric_grad(gamma, loss_train)) < 1e-6);
    CHECK(max_abs_diff(db, numeric_grad(beta, loss_train)) < 1e-6);

    const auto loss_eval = [&] {
      vec o(y.size());
      qlib::batch_norm_forward_eval(view(y.data(), ys),
                                    qlib::batch_norm_view<double>{view(gamma), view(beta), view(mean), view(var), 1e-5},
                                    o.data());
      return dot(o, r);
    };
    qlib::batch_norm_backward_eval(view(r.data(), ys), view(y.data(), ys),
                                   qlib::batch_norm_view<double>{view(gamma), view(beta), view(mean), view(var), 1e-5},
                                   dx.data(), dg.data(), db.data());
    CHECK(max_abs_diff(dx, numeric_grad(y, loss_eval)) < 1e-6);
    CHECK(max_abs_diff(dg, numeric_grad(gamma, loss_eval)) < 1e-6);
    CHECK(max_abs_diff(db, numeric_grad(beta, loss_eval)) < 1e-6);
  }
}

TEST_CASE("bn_fold: the whole QAT Conv+BN chain's gradients match finite differences") {
  // A smooth stand-in for fake-quant, f(v) = v + 0.1 v^3 (STE would make it the identity,
  // where the two k paths cancel exactly); with it, gamma's gradient flows through k too.
  const conv_shape s{2, 2, 4, 4, 3, 3, 3, 1};
  vec x = randn(s.input().numel(), 71), w = randn(s.weight().numel(), 72, 0.4), bias = randn(s.co, 73);
  vec gamma = randn(s.co, 74, 0.3, 1.0), beta = randn(s.co, 75);
  const vec rvar = rand_positive(s.co, 76, 0.3, 2.0), r = randn(s.out().numel(), 77);
  const double eps = 1e-5;
  for (bool frozen : {false, true}) {
    const vec rmean = randn(s.co, 78);
    struct fwd_state {
      vec k, ws, wq, y, z, out, sm, si;
    };
    const auto forward = [&](fwd_state* st) {
      st->k.assign(s.co, 0);
      qlib::qat_scale_factor(view(gamma), view(rvar), eps, st->k.data());
      st->ws.assign(w.size(), 0);
      qlib::scale_weight(view(w.data(), s.weight()), 0, view(st->k), st->ws.data());
      st->wq = st->ws;
      for (double& v : st->wq) v = v + 0.1 * v * v * v;
      st->y = conv_ref(x, st->wq, {}, s);
      st->z.assign(st->y.size(), 0);
      qlib::unscale_output(view(st->y.data(), s.out()), view(st->k), view(bias), st->z.data());
      st->out.assign(st->z.size(), 0);
      st->sm.assign(s.co, 0);
      st->si.assign(s.co, 0);
      if (frozen) {
        qlib::batch_norm_forward_eval(
            view(st->z.data(), s.out()),
            qlib::batch_norm_view<double>{view(gamma), view(beta), view(rmean), view(rvar), eps}, st->out.data());
      } else {
        vec rm = rmean, rv = rvar;
        qlib::batch_norm_forward_train(
            view(st->z.data(), s.out()), view(gamma), view(beta), qlib::tensor_view<double>(rm.data(), s.co),
            qlib::tensor_view<double>(rv.data(), s.co), eps, 0.1, st->out.data(), st->sm.data(), st->si.data());
      }
      return dot(st->out, r);
    };
    const auto loss = [&] {
      fwd_state st;
      return forward(&st);
    };
    fwd_state st;
    forward(&st);
    // Backward, in the order the header's comment gives.
    vec dz(st.z.size()), dgamma(s.co), dbeta(s.co), dy(st.y.size()), dk1(s.co), dbias(s.co);
    if (frozen)
      qlib::batch_norm_backward_eval(
          view(r.data(), s.out()), view(st.z.data(), s.out()),
          qlib::batch_norm_view<double>{view(gamma), view(beta), view(rmean), view(rvar), eps}, dz.data(),
          dgamma.data(), dbeta.data());
    else
      qlib::batch_norm_backward_train(view(r.data(), s.out()), view(st.z.data(), s.out()), view(gamma), view(st.sm),
                                      view(st.si), dz.data(), dgamma.data(), dbeta.data());
    qlib::unscale_output_backward(view(dz.data(), s.out()), view(st.y.data(), s.out()), view(st.k), dy.data(),
                                  dk1.data(), dbias.data());
    vec dwq, dx;
    conv_ref_backward(x, st.wq, dy, s, &dwq, &dx);
    vec dws(w.size());
    for (std::size_t i = 0; i < w.size(); ++i) dws[i] = dwq[i] * (1.0 + 0.3 * st.ws[i] * st.ws[i]);
    vec dw(w.size()), dk2(s.co), dgamma_k(s.co), dk(s.co);
    qlib::scale_weight_backward(view(dws.data(), s.weight()), view(w.data(), s.weight()), 0, view(st.k), dw.data(),
                                dk2.data());
    for (std::size_t c = 0; c < s.co; ++c) dk[c] = dk1[c] + dk2[c];
    qlib::scale_factor_backward(view(dk), view(rvar), eps, dgamma_k.data());
    for (std::size_t c = 0; c < s.co; ++c) dgamma[c] += dgamma_k[c];
    INFO("frozen = " << frozen);
    CHECK(max_abs_diff(dx, numeric_grad(x, loss)) < 1e-6);
    CHECK(max_abs_diff(dw, numeric_grad(w, loss)) < 1e-6);
    CHECK(max_abs_diff(dbias, numeric_grad(bias, loss)) < 1e-6);
    CHECK(max_abs_diff(dgamma, numeric_grad(gamma, loss)) < 1e-6);
    CHECK(max_abs_diff(dbeta, numeric_grad(beta, loss)) < 1e-6);
    // In training mode the conv bias is cancelled by the batch mean: its gradient is ~0.
    if (!frozen) CHECK(max_abs_diff(dbias, vec(s.co, 0.0)) < 1e-9);
  }
}

TEST_CASE("bn_fold: float32 works and stays close to the double computation") {
  const conv_shape s = small;
  const vec w = randn(s.weight().numel(), 81, 0.3), gamma = randn(s.co, 82, 0.3, 1.0), beta = randn(s.co, 83),
            mean = randn(s.co, 84), var = rand_positive(s.co, 85, 0.1, 2.0), b = randn(s.co, 86);
  const std::vector<float> wf(w.begin(), w.end()), gf(gamma.begin(), gamma.end()), bf(beta.begin(), beta.end()),
      mf(mean.begin(), mean.end()), vf(var.begin(), var.end()), cbf(b.begin(), b.end());
  const auto fd =
      qlib::fold_batch_norm(view(w.data(), s.weight()), 0, view(b),
                            qlib::batch_norm_view<double>{view(gamma), view(beta), view(mean), view(var), 1e-5});
  const auto ff = qlib::fold_batch_norm(view(wf.data(), s.weight()), 0, view(cbf),
                                        qlib::batch_norm_view<float>{view(gf), view(bf), view(mf), view(vf), 1e-5f});
  for (std::size_t i = 0; i < fd.weight.size(); ++i)
    CHECK(ff.weight[i] == Approx(fd.weight[i]).epsilon(1e-5).margin(1e-6));
  for (std::size_t i = 0; i < fd.bias.size(); ++i) CHECK(ff.bias[i] == Approx(fd.bias[i]).epsilon(1e-5).margin(1e-6));
}

TEST_CASE("bn_fold: bad input is rejected naming the argument, before anything is written") {
  const conv_shape s = small;
  const vec w = randn(s.weight().numel(), 91), b = randn(s.co, 92), gamma(s.co, 1.0), beta(s.co, 0.0), mean(s.co, 0.0);
  vec var(s.co, 1.0);
  vec wout(w.size(), -7.0), bout(s.co, -7.0);
  const auto fold = [&](const qlib::batch_norm_view<double>& bn, qlib::tensor_view<const double> bias, int axis = 0) {
    qlib::fold_batch_norm(view(w.data(), s.weight()), axis, bias, bn, wout.data(), bout.data());
  };
  var[1] = -1.0;
  expect_error(
      [&] {
        fold({view(gamma), view(beta), view(mean), view(var), 1e-5}, view(b));
      },
      qlib::errc::invalid_argument, "running_var[1] + eps");
  CHECK(wout[0] == -7.0);  // untouched
  var[1] = -1e-5;          // var + eps == 0
  expect_error(
      [&] {
        fold({view(gamma), view(beta), view(mean), view(var), 1e-5}, view(b));
      },
      qlib::errc::invalid_argument, "running_var[1]");
  var[1] = std::nan("");
  expect_error(
      [&] {
        fold({view(gamma), view(beta), view(mean), view(var), 1e-5}, view(b));
      },
      qlib::errc::non_finite, "running_var[1]");
  var[1] = 1.0;
  const vec short_gamma(s.co - 1, 1.0);
  expect_error(
      [&] {
        fold({view(short_gamma), view(beta), view(mean), view(var), 1e-5}, view(b));
      },
      qlib::errc::invalid_argument, "gamma has 3 values");
  expect_error(
      [&] {
        fold({view(gamma), view(beta), view(mean), view(var), 1e-5}, view(b), 1);
      },
      qlib::errc::invalid_argument, "along axis 1");
  expect_error(
      [&] {
        fold({view(gamma), view(beta), view(mean), view(var), 1e-5}, view(short_gamma));
      },
      qlib::errc::invalid_argument, "conv bias has 3 values");
  expect_error(
      [&] {
        fold({view(gamma), view(beta), view(mean), view(var), -1.0}, view(b));
      },
      qlib::errc::invalid_argument, "eps");
  expect_error(
      [&] {
        fold({view(gamma), view(beta), view(mean), view(var), 1e-5}, view(b), 4);
      },
      qlib::errc::invalid_argument, "axis 4");
  vec bad_mean = mean;
  bad_mean[2] = INFINITY;
  expect_error(
      [&] {
        fold({view(gamma), view(beta), view(bad_mean), view(var), 1e-5}, view(b));
      },
      qlib::errc::non_finite, "running_mean[2]");

  // unscale_output: gamma = 0 gives k = 0.
  vec k(s.co, 1.0), y(s.out().numel(), 1.0), z(y.size());
  k[3] = 0.0;
  expect_error([&] { qlib::unscale_output(view(y.data(), s.out()), view(k), view(b), z.data()); },
               qlib::errc::invalid_argument, "k[3]");
  k[3] = 1.0;
  expect_error([&] { qlib::unscale_output(view(y.data(), shape_t{y.size()}), view(k), view(b), z.data()); },
               qlib::errc::invalid_argument, "rank >= 2");
  expect_error(
      [&] {
        qlib::unscale_output(view(y.data(), shape_t{s.n, s.co + 1, 1, 1}), view(k), view(b), z.data());
      },
      qlib::errc::invalid_argument, "k has 4 values");

  // Training BN: momentum, a single value per channel, NaN in the batch (running stats untouched).
  vec rm(s.co, 0.5), rv(s.co, 2.0), out(y.size());
  const auto train = [&](const vec& xx, shape_t shape, double momentum) {
    qlib::batch_norm_forward_train(
        view(xx.data(), shape), view(gamma), view(beta), qlib::tensor_view<double>(rm.data(), s.co),
        qlib::tensor_view<double>(rv.data(), s.co), 1e-5, momentum, out.data(), nullptr, nullptr);
  };
  expect_error([&] { train(y, s.out(), 1.5); }, qlib::errc::invalid_argument, "momentum");
  expect_error([&] { train(y, shape_t{1, s.co}, 0.1); }, qlib::errc::invalid_argument, "single value per channel");
  vec ynan = y;
  ynan[17] = std::nan("");
  expect_error([&] { train(ynan, s.out(), 0.1); }, qlib::errc::non_finite, "flat index 17");
  CHECK(rm == vec(s.co, 0.5));
  CHECK(rv == vec(s.co, 2.0));
  vec rm_short(s.co - 1);
  expect_error(
      [&] {
        qlib::batch_norm_forward_train(view(y.data(), s.out()), view(gamma), view(beta),
                                       qlib::tensor_view<double>(rm_short.data(), rm_short.size()),
                                       qlib::tensor_view<double>(rv.data(), s.co), 1e-5, 0.1, out.data(), nullptr,
                                       nullptr);
      },
      qlib::errc::invalid_argument, "running_mean has 3 values");
  // Backward shape mismatches.
  vec dx(y.size()), dg(s.co), db(s.co);
  expect_error(
      [&] {
        qlib::batch_norm_backward_train(view(y.data(), shape_t{s.n, s.co, s.oh() * s.ow()}), view(y.data(), s.out()),
                                        view(gamma), view(mean), view(var), dx.data(), dg.data(), db.data());
      },
      qlib::errc::invalid_argument, "dy has shape");
  vec w2(w.size());
  expect_error(
      [&] {
        qlib::scale_weight_backward(view(w.data(), shape_t{w.size()}), view(w.data(), s.weight()), 0, view(k),
                                    w2.data(), dg.data());
      },
      qlib::errc::invalid_argument, "dw_scaled has shape");
  expect_error([&] { qlib::qat_scale_factor(view(short_gamma), view(var), 1e-5, dg.data()); },
               qlib::errc::invalid_argument, "gamma has 3 values");
}
