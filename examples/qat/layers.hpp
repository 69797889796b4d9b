// Float layers for the QAT demo, written out with Eigen: a tensor type, Conv2d (im2col +
// one GEMM per batch), Linear, ReLU, add / cat along channels, softmax cross-entropy and
// Adam, each with its backward. Nothing here knows about quantization: examples/qat_digits.cpp
// puts qlib's fake-quant, BN folding and observers between these pieces.
//
// Layouts: activations NCHW (C-order), conv weights OIHW, linear weights (out, in); every
// tensor is a flat std::vector<float> plus a qlib::shape_t, so it converts to qlib's
// tensor_view without a copy.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <qlib/core/tensor_view.hpp>
#include <vector>

namespace qat {

using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using matrix_map = Eigen::Map<matrix>;
using const_matrix_map = Eigen::Map<const matrix>;

/// A dense C-order float tensor.
struct tensor {
  qlib::shape_t shape{std::size_t{0}};
  std::vector<float> data;

  tensor() = default;
  explicit tensor(qlib::shape_t s, float fill = 0.0f) : shape(s), data(s.numel(), fill) {}
  std::size_t size() const noexcept { return data.size(); }
  std::size_t dim(int i) const noexcept { return shape[i]; }
  float* ptr() noexcept { return data.data(); }
  const float* ptr() const noexcept { return data.data(); }
  /// qlib views (the name shows up in qlib's error messages).
  qlib::tensor_view<const float> view(const char* name = nullptr) const { return {data.data(), shape, name}; }
  qlib::tensor_view<float> mut(const char* name = nullptr) { return {data.data(), shape, name}; }
  void zero() { std::fill(data.begin(), data.end(), 0.0f); }
};

/// out[n, c, y, x] of a 3x3-style "same" convolution's im2col matrix for the batch:
/// rows (c, ky, kx), columns (n, y, x). Taps outside the image are 0 (zero padding).
inline void im2col(const tensor& x, std::size_t k, std::size_t pad, matrix& col) {
  const std::size_t n_batch = x.dim(0), c_in = x.dim(1), h = x.dim(2), w = x.dim(3);
  const std::size_t hw = h * w;
  col.setZero(static_cast<Eigen::Index>(c_in * k * k), static_cast<Eigen::Index>(n_batch * hw));
  for (std::size_t c = 0; c < c_in; ++c)
    for (std::size_t ky = 0; ky < k; ++ky)
      for (std::size_t kx = 0; kx < k; ++kx) {
        float* row = col.data() + ((c * k + ky) * k + kx) * n_batch * hw;
        for (std::size_t n = 0; n < n_batch; ++n) {
          const float* src = x.ptr() + (n * c_in + c) * hw;
          for (std::size_t y = 0; y < h; ++y) {
            const std::ptrdiff_t iy = static_cast<std::ptrdiff_t>(y + ky) - static_cast<std::ptrdiff_t>(pad);
            if (iy < 0 || iy >= static_cast<std::ptrdiff_t>(h)) continue;
            for (std::size_t xo = 0; xo < w; ++xo) {
              const std::ptrdiff_t ix = static_cast<std::ptrdiff_t>(xo + kx) - static_cast<std::ptrdiff_t>(pad);
              if (ix < 0 || ix >= static_cast<std::ptrdiff_t>(w)) continue;
              row[n * hw + y * w + xo] = src[static_cast<std::size_t>(iy) * w + static_cast<std::size_t>(ix)];
            }
          }
        }
      }
}

/// The adjoint of im2col: accumulates the column gradients back into dx (zeroed first).
inline void col2im(const matrix& dcol, std::size_t k, std::size_t pad, tensor& dx) {
  const std::size_t n_batch = dx.dim(0), c_in = dx.dim(1), h = dx.dim(2), w = dx.dim(3);
  const std::size_t hw = h * w;
  dx.zero();
  for (std::size_t c = 0; c < c_in; ++c)
    for (std::size_t ky = 0; ky < k; ++ky)
      for (std::size_t kx = 0; kx < k; ++kx) {
        const float* row = dcol.data() + ((c * k + ky) * k + kx) * n_batch * hw;
        for (std::size_t n = 0; n < n_batch; ++n) {
          float* dst = dx.ptr() + (n * c_in + c) * hw;
          for (std::size_t y = 0; y < h; ++y) {
            const std::ptrdiff_t iy = static_cast<std::ptrdiff_t>(y + ky) - static_cast<std::ptrdiff_t>(pad);
            if (iy < 0 || iy >= static_cast<std::ptrdiff_t>(h)) continue;
            for (std::size_t xo = 0; xo < w; ++xo) {
              const std::ptrdiff_t ix = static_cast<std::ptrdiff_t>(xo + kx) - static_cast<std::ptrdiff_t>(pad);
              if (ix < 0 || ix >= static_cast<std::ptrdiff_t>(w)) continue;
              dst[static_cast<std::size_t>(iy) * w + static_cast<std::size_t>(ix)] += row[n * hw + y * w + xo];
            }
          }
        }
      }
}

/// Stride-1 convolution with symmetric zero padding: y = conv(x, w) (+ bias if given).
/// x (N, C, H, W), w (O, C, k, k); y (N, O, H + 2 pad - k + 1, ...). `col` keeps the im2col
/// matrix for the backward pass.
inline tensor conv2d_forward(const tensor& x, const tensor& w, const std::vector<float>* bias, std::size_t pad,
                             matrix& col) {
  const std::size_t n_batch = x.dim(0), k = w.dim(2), c_out = w.dim(0);
  const std::size_t oh = x.dim(2) + 2 * pad - k + 1, ow = x.dim(3) + 2 * pad - k + 1;
  im2col(x, k, pad, col);
  const const_matrix_map wm(w.ptr(), static_cast<Eigen::Index>(c_out), static_cast<Eigen::Index>(w.size() / c_out));
  const matrix out = wm * col;  // (O, N * OH * OW)
  tensor y(qlib::shape_t{n_batch, c_out, oh, ow});
  const std::size_t plane = oh * ow;
  for (std::size_t o = 0; o < c_out; ++o) {
    const float b = bias ? (*bias)[o] : 0.0f;
    for (std::size_t n = 0; n < n_batch; ++n) {
      const float* src = out.data() + o * n_batch * plane + n * plane;
      float* dst = y.ptr() + (n * c_out + o) * plane;
      for (std::size_t i = 0; i < plane; ++i) dst[i] = src[i] + b;
    }
  }
  return y;
}

/// Backward of conv2d_forward: dw (= w's shape, overwritten), dbias (O values, if given),
/// dx (x's shape) when `dx` is not null.
inline void conv2d_backward(const tensor& dy, const tensor& w, const matrix& col, std::size_t pad, tensor& dw,
                            std::vector<float>* dbias, tensor* dx) {
  const std::size_t n_batch = dy.dim(0), c_out = dy.dim(1), plane = dy.dim(2) * dy.dim(3), k = w.dim(2);
  matrix dym(static_cast<Eigen::Index>(c_out), static_cast<Eigen::Index>(n_batch * plane));
  for (std::size_t o = 0; o < c_out; ++o)
    for (std::size_t n = 0; n < n_batch; ++n)
      std::copy_n(dy.ptr() + (n * c_out + o) * plane, plane, dym.data() + o * n_batch * plane + n * plane);
  const Eigen::Index fan_in = static_cast<Eigen::Index>(w.size() / c_out);
  matrix_map dwm(dw.ptr(), static_cast<Eigen::Index>(c_out), fan_in);
  dwm.noalias() = dym * col.transpose();
  if (dbias)
    for (std::size_t o = 0; o < c_out; ++o) (*dbias)[o] = dym.row(static_cast<Eigen::Index>(o)).sum();
  if (dx) {
    const const_matrix_map wm(w.ptr(), static_cast<Eigen::Index>(c_out), fan_in);
    const matrix dcol = wm.transpose() * dym;
    col2im(dcol, k, pad, *dx);
  }
}

/// y = x W^T + b for x (N, K) (any shape whose trailing dimensions hold K values per row),
/// W (M, K); y (N, M).
inline tensor linear_forward(const tensor& x, const tensor& w, const std::vector<float>& b) {
  const std::size_t n_batch = x.dim(0), m = w.dim(0), k = w.dim(1);
  const const_matrix_map xm(x.ptr(), static_cast<Eigen::Index>(n_batch), static_cast<Eigen::Index>(k));
  const const_matrix_map wm(w.ptr(), static_cast<Eigen::Index>(m), static_cast<Eigen::Index>(k));
  tensor y(qlib::shape_t{n_batch, m});
  matrix_map ym(y.ptr(), static_cast<Eigen::Index>(n_batch), static_cast<Eigen::Index>(m));
  ym.noalias() = xm * wm.transpose();
  for (std::size_t n = 0; n < n_batch; ++n)
    for (std::size_t j = 0; j < m; ++j) y.data[n * m + j] += b[j];
  return y;
}

/// Backward of linear_forward: dw (overwritten), db (overwritten), dx (x's shape) if given.
inline void linear_backward(const tensor& dy, const tensor& x, const tensor& w, tensor& dw, std::vector<float>& db,
                            tensor* dx) {
  const std::size_t n_batch = dy.dim(0), m = w.dim(0), k = w.dim(1);
  const const_matrix_map dym(dy.ptr(), static_cast<Eigen::Index>(n_batch), static_cast<Eigen::Index>(m));
  const const_matrix_map xm(x.ptr(), static_cast<Eigen::Index>(n_batch), static_cast<Eigen::Index>(k));
  matrix_map dwm(dw.ptr(), static_cast<Eigen::Index>(m), static_cast<Eigen::Index>(k));
  dwm.noalias() = dym.transpose() * xm;
  for (std::size_t j = 0; j < m; ++j) db[j] = dym.col(static_cast<Eigen::Index>(j)).sum();
  if (dx) {
    const const_matrix_map wm(w.ptr(), static_cast<Eigen::Index>(m), static_cast<Eigen::Index>(k));
    matrix_map dxm(dx->ptr(), static_cast<Eigen::Index>(n_batch), static_cast<Eigen::Index>(k));
    dxm.noalias() = dym * wm;
  }
}

/// In-place ReLU.
inline void relu_inplace(tensor& x) {
  for (float& v : x.data) v = v > 0.0f ? v : 0.0f;
}
/// ReLU backward from its output: dx = dy where y > 0.
inline void relu_backward_inplace(const tensor& y, tensor& dy) {
  for (std::size_t i = 0; i < dy.size(); ++i)
    if (!(y.data[i] > 0.0f)) dy.data[i] = 0.0f;
}

/// Concatenation of two NCHW tensors along channels.
inline tensor cat_channels(const tensor& a, const tensor& b) {
  const std::size_t n_batch = a.dim(0), ca = a.dim(1), cb = b.dim(1), plane = a.dim(2) * a.dim(3);
  tensor y(qlib::shape_t{n_batch, ca + cb, a.dim(2), a.dim(3)});
  for (std::size_t n = 0; n < n_batch; ++n) {
    std::copy_n(a.ptr() + n * ca * plane, ca * plane, y.ptr() + n * (ca + cb) * plane);
    std::copy_n(b.ptr() + n * cb * plane, cb * plane, y.ptr() + (n * (ca + cb) + ca) * plane);
  }
  return y;
}
/// Splits the gradient of cat_channels into da and db (shapes already set).
inline void cat_channels_backward(const tensor& dy, tensor& da, tensor& db) {
  const std::size_t n_batch = da.dim(0), ca = da.dim(1), cb = db.dim(1), plane = da.dim(2) * da.dim(3);
  for (std::size_t n = 0; n < n_batch; ++n) {
    std::copy_n(dy.ptr() + n * (ca + cb) * plane, ca * plane, da.ptr() + n * ca * plane);
    std::copy_n(dy.ptr() + (n * (ca + cb) + ca) * plane, cb * plane, db.ptr() + n * cb * plane);
  }
}

/// The same data with a new shape (flatten (N, C, H, W) to (N, C*H*W) and back).
inline tensor reshaped(tensor t, qlib::shape_t s) {
  t.shape = s;
  return t;
}

/// Mean softmax cross-entropy over the batch; writes dlogits = (softmax - onehot) / N.
inline double cross_entropy(const tensor& logits, const std::vector<int>& labels, tensor& dlogits) {
  const std::size_t n_batch = logits.dim(0), m = logits.dim(1);
  dlogits = tensor(logits.shape);
  double loss = 0.0;
  for (std::size_t n = 0; n < n_batch; ++n) {
    const float* z = logits.ptr() + n * m;
    const float zmax = *std::max_element(z, z + m);
    double sum = 0.0;
    for (std::size_t j = 0; j < m; ++j) sum += std::exp(static_cast<double>(z[j] - zmax));
    const int label = labels[n];
    loss += std::log(sum) - static_cast<double>(z[label] - zmax);
    for (std::size_t j = 0; j < m; ++j) {
      const double p = std::exp(static_cast<double>(z[j] - zmax)) / sum;
      dlogits.data[n * m + j] =
          static_cast<float>((p - (static_cast<int>(j) == label ? 1.0 : 0.0)) / static_cast<double>(n_batch));
    }
  }
  return loss / static_cast<double>(n_batch);
}

/// Index of the largest value of each row (the first one on ties) of an (N, M) tensor of
/// any arithmetic type.
template <class V>
std::vector<int> argmax_rows(const V* values, std::size_t rows, std::size_t cols) {
  std::vector<int> out(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    const V* row = values + r * cols;
    out[r] = static_cast<int>(std::max_element(row, row + cols) - row);
  }
  return out;
}

/// Adam (Kingma & Ba 2015) over one parameter vector: p -= lr * m_hat / (sqrt(v_hat) + eps).
struct adam_slot {
  std::vector<float> m, v;
  void step(std::vector<float>& p, const std::vector<float>& g, float lr, long t, float beta1 = 0.9f,
            float beta2 = 0.999f, float eps = 1e-8f) {
    if (m.size() != p.size()) {
      m.assign(p.size(), 0.0f);
      v.assign(p.size(), 0.0f);
    }
    const float c1 = 1.0f - std::pow(beta1, static_cast<float>(t));
    const float c2 = 1.0f - std::pow(beta2, static_cast<float>(t));
    for (std::size_t i = 0; i < p.size(); ++i) {
      m[i] = beta1 * m[i] + (1.0f - beta1) * g[i];
      v[i] = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
      p[i] -= lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + eps);
    }
  }
  void reset() {
    m.clear();
    v.clear();
  }
};

}  // namespace qat
