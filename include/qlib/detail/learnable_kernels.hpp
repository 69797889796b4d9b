// Internal: the element loops of the learnable fake-quant backward passes
// (fakequant/learnable.hpp). Same vectorization rules as detail/fake_quant_kernels.hpp;
// in addition the parameter gradients are sums over the elements, kept in `block`
// independent float lanes (so no reassociation is needed to vectorize them) over chunks of
// at most `chunk_blocks` blocks, then added into double totals. No full-size buffer is
// ever allocated (ATen's learnable backward fills three tensors of x's size).
#pragma once

#include <cstddef>

#include "../config.hpp"
#include "fake_quant_kernels.hpp"

QLIB_NAMESPACE_BEGIN
namespace detail {
namespace fq {

/// Blocks per chunk of lane sums: 256 * 16 = 4096 elements, 256 terms per float lane.
constexpr std::size_t chunk_blocks = 256;

/// x / s clamped to [vlo, vhi] (the value LSQ compares with its rounding).
template <class T>
inline T scaled(T x, const grid<T>& g) noexcept {
  T v = x / g.scale;
  v = v < g.vlo ? g.vlo : v;
  return v > g.vhi ? g.vhi : v;
}

// ---- LSQ -------------------------------------------------------------------------------
// Per element, with v = x / s, r = round(v), c = clamp(r, lo, hi), inside = (r == c):
//   dx       = inside ? dy : 0
//   dscale  += dy * (inside ? r - v : c)      (c is lo below the grid, hi above it)
//   outside += inside ? 0 : dy                (the zero-point gradient is -s times this)

/// Sums of one LSQ pass.
struct lsq_sums {
  double scale = 0;    ///< sum of dy * d(x_hat)/ds before the gradient scale
  double outside = 0;  ///< sum of dy over the clipped elements
};

template <class R, class T>
inline void lsq_element(T d, T xv, const grid<T>& p, T& ds, T& dout, T& dxv) noexcept {
  const T v = scaled(xv, p);
  const T r = R::apply(v);
  const bool in = inside(r, p);
  const T c = clamped(r, p);
  // Selections of dy or 0 only: g++ does not if-convert a select of a computed value here
  // (and d - din would be rewritten into a subtraction under a branch).
  const T din = pass_if(in, d), dout_e = pass_if(!in, d);
  ds += din * (c - v) + dout_e * c;  // c - v = r - v inside; outside the first term is 0
  dout += dout_e;
  dxv = din;
}

template <class R, class T>
QLIB_FQ_KERNEL lsq_sums lsq_backward(const T* __restrict dy, const T* __restrict x, T* __restrict dx, std::size_t n,
                                     const uniform<T> g) {
  lsq_sums sums;
  std::size_t i = 0;
  while (i + block <= n) {
    T ds[block] = {}, dout[block] = {};
    const std::size_t blocks = (n - i) / block;
    const std::size_t end = i + (blocks < chunk_blocks ? blocks : chunk_blocks) * block;
    for (; i < end; i += block)
      for (std::size_t k = 0; k < block; ++k) lsq_element<R>(dy[i + k], x[i + k], g[0], ds[k], dout[k], dx[i + k]);
    for (std::size_t k = 0; k < block; ++k) {
      sums.scale += ds[k];
      sums.outside += dout[k];
    }
  }
  T ds = 0, dout = 0;
  for (; i < n; ++i) lsq_element<R>(dy[i], x[i], g[0], ds, dout, dx[i]);
  sums.scale += ds;
  sums.outside += dout;
  return sums;
}

/// The same with dx in dy's buffer.
template <class R, class T>
QLIB_FQ_KERNEL lsq_sums lsq_backward_inplace(T* dy_dx, const T* __restrict x, std::size_t n, const uniform<T> g) {
  lsq_sums sums;
  std::size_t i = 0;
  while (i + block <= n) {
    T ds[block] = {}, dout[block] = {};
    const std::size_t blocks = (n - i) / block;
    const std::size_t end = i + (blocks < chunk_blocks ? blocks : chunk_blocks) * block;
    for (; i < end; i += block)
      for (std::size_t k = 0; k < block; ++k)
        lsq_element<R>(dy_dx[i + k], x[i + k], g[0], ds[k], dout[k], dy_dx[i + k]);
    for (std::size_t k = 0; k < block; ++k) {
      sums.scale += ds[k];
      sums.outside += dout[k];
    }
  }
  T ds = 0, dout = 0;
  for (; i < n; ++i) lsq_element<R>(dy_dx[i], x[i], g[0], ds, dout, dy_dx[i]);
  sums.scale += ds;
  sums.outside += dout;
  return sums;
}

/// Any other exact aliasing (dx in x's buffer): scalar, correct for equal or disjoint
/// pointers.
template <class R, class T>
QLIB_FQ_KERNEL lsq_sums lsq_backward_aliased(const T* dy, const T* x, T* dx, std::size_t n, const uniform<T> g) {
  T ds = 0, dout = 0;
  lsq_sums sums;
  for (std::size_t i = 0; i < n; ++i) {
    T out = 0;
    lsq_element<R>(dy[i], x[i], g[0], ds, dout, out);
    dx[i] = out;
    if ((i + 1) % (chunk_blocks * block) == 0) {
      sums.scale += ds;
      sums.outside += dout;
      ds = dout = 0;
    }
  }
  sums.scale += ds;
  sums.outside += dout;
  return sums;
}

/// Per channel with the channel innermost (rows of `channels` elements, one grid per
/// column): per-column float sums in `lane_s`, `lane_out` (scratch of `channels` values)
/// over chunks of rows, added into the double totals sum_s, sum_out (per column). dx may
/// not alias dy or x here (the caller routes aliasing to the scalar path).
template <class R, class T>
QLIB_FQ_KERNEL void lsq_backward_rows(const T* __restrict dy, const T* __restrict x, T* __restrict dx, std::size_t rows,
                                      std::size_t channels, const by_index<T> g, T* __restrict lane_s,
                                      T* __restrict lane_out, double* __restrict sum_s, double* __restrict sum_out) {
  const std::size_t rows_per_chunk = chunk_blocks;
  for (std::size_t r0 = 0; r0 < rows; r0 += rows_per_chunk) {
    const std::size_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    for (std::size_t c = 0; c < channels; ++c) lane_s[c] = lane_out[c] = T(0);
    for (std::size_t row = r0; row < r1; ++row) {
      const std::size_t base = row * channels;
      std::size_t c = 0;
      for (; c + block <= channels; c += block)
        for (std::size_t k = 0; k < block; ++k)
          lsq_element<R>(dy[base + c + k], x[base + c + k], g[c + k], lane_s[c + k], lane_out[c + k], dx[base + c + k]);
      for (; c < channels; ++c) lsq_element<R>(dy[base + c], x[base + c], g[c], lane_s[c], lane_out[c], dx[base + c]);
    }
    for (std::size_t c = 0; c < channels; ++c) {
      sum_s[c] += lane_s[c];
      sum_out[c] += lane_out[c];
    }
  }
}

// ---- ULQ (AMCT) ------------------------------------------------------------------------
// The clip range is [xlo, xhi] = [(qmin - z) s, (qmax - z) s], and AMCT tests x itself
// against it (not the rounded value). Per element, with v = x / s and r = round(v):
//   dx       = xlo <= x <= xhi ? dy : 0
//   inner   += inside ? dy * (r - v) : 0
//   above   += x > xhi ? dy : 0
//   below   += x < xlo ? dy : 0
// learnable.hpp turns the three sums into the clip gradients.

struct ulq_sums {
  double inner = 0;
  double above = 0;
  double below = 0;
};

/// A grid plus its clip bounds in x units.
template <class T>
struct ulq_grid {
  T scale, lo, hi, vlo, vhi, zf, xlo, xhi;
  grid<T> base() const noexcept { return {scale, lo, hi, vlo, vhi, zf}; }
};

template <class R, class T>
inline void ulq_element(T d, T xv, const ulq_grid<T>& p, T& in_s, T& above_s, T& below_s, T& dxv) noexcept {
  const grid<T> g = p.base();
  const T v = scaled(xv, g);
  const T r = R::apply(v);
  const bool below = xv < p.xlo;
  const bool above = xv > p.xhi;
  const bool in = (xv >= p.xlo) & (xv <= p.xhi);
  const T din = pass_if(in, d);
  in_s += din * (r - v);  // NaN x: din = 0 but r - v is NaN, so the sum says NaN
  above_s += pass_if(above, d);
  below_s += pass_if(below, d);
  dxv = din;
}

template <class R, class T>
QLIB_FQ_KERNEL ulq_sums ulq_backward(const T* __restrict dy, const T* __restrict x, T* __restrict dx, std::size_t n,
                                     const ulq_grid<T> p) {
  ulq_sums sums;
  std::size_t i = 0;
  while (i + block <= n) {
    T in_s[block] = {}, above_s[block] = {}, below_s[block] = {};
    const std::size_t blocks = (n - i) / block;
    const std::size_t end = i + (blocks < chunk_blocks ? blocks : chunk_blocks) * block;
    for (; i < end; i += block)
      for (std::size_t k = 0; k < block; ++k)
        ulq_element<R>(dy[i + k], x[i + k], p, in_s[k], above_s[k], below_s[k], dx[i + k]);
    for (std::size_t k = 0; k < block; ++k) {
      sums.inner += in_s[k];
      sums.above += above_s[k];
      sums.below += below_s[k];
    }
  }
  T in_s = 0, above_s = 0, below_s = 0;
  for (; i < n; ++i) ulq_element<R>(dy[i], x[i], p, in_s, above_s, below_s, dx[i]);
  sums.inner += in_s;
  sums.above += above_s;
  sums.below += below_s;
  return sums;
}

/// Any exact aliasing of dx with dy or x: scalar.
template <class R, class T>
QLIB_FQ_KERNEL ulq_sums ulq_backward_aliased(const T* dy, const T* x, T* dx, std::size_t n, const ulq_grid<T> p) {
  ulq_sums sums;
  T in_s = 0, above_s = 0, below_s = 0;
  for (std::size_t i = 0; i < n; ++i) {
    T out = 0;
    ulq_element<R>(dy[i], x[i], p, in_s, above_s, below_s, out);
    dx[i] = out;
    if ((i + 1) % (chunk_blocks * block) == 0) {
      sums.inner += in_s;
      sums.above += above_s;
      sums.below += below_s;
      in_s = above_s = below_s = 0;
    }
  }
  sums.inner += in_s;
  sums.above += above_s;
  sums.below += below_s;
  return sums;
}

}  // namespace fq
}  // namespace detail
QLIB_NAMESPACE_END
