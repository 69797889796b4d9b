// Internal: the element loops behind fakequant/fake_quant.hpp and fakequant/learnable.hpp.
//
// How they vectorize without intrinsics (measured with g++ 12 -O2/-O3 and clang++ 14 -O2,
// SSE2 only):
// - Loops run over blocks of `block` elements with a constant inner trip count and a
//   scalar tail. g++ 12 at -O2 vectorizes with the "very cheap" cost model, which refuses
//   loops that would need an epilogue or a runtime alias check; a constant-count inner loop
//   over __restrict pointers needs neither.
// - Clamps are written `v < lo ? lo : v`, which compilers turn into IEEE-exact min/max
//   instructions; every other selection picks a loaded value or 0 (pass_if) or is a bit
//   mask (detail::keep_if). Under the default -ftrapping-math, g++ does not if-convert a
//   branch that selects between computed floating-point values (nor `d - (c ? d : 0)`,
//   which it rewrites into a subtraction under a branch), and such a loop stays scalar.
// - Rounding is detail::round_half_even_small / round_half_away_small on x / s first
//   clamped to [lo - 1, hi + 1] (|.| <= 2^17), where lo = qmin - z, hi = qmax - z. Rounding
//   is monotone and lo, hi are integers, so clamp(round(v), lo, hi) and the "not clipped"
//   test lo <= round(v) <= hi are unchanged by that pre-clamp.
// - clamp(round(v) + z, qmin, qmax) - z == clamp(round(v), lo, hi) exactly (integers far
//   below 2^24), and in round-to-nearest the fast rounding returns +0 for zeros, so the
//   output equals dequantize(quantize(x)) of core/quantize.hpp bit for bit.
// The Round policies: *_fast use the tricks above; *_exact repeat the reference's own
// operations, for environments where fast_rounding_available() is false.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "../config.hpp"
#include "../core/fast_round.hpp"
#include "../core/qparams.hpp"

// g++ -O2 keeps a loop of one vector per iteration inside each block (measured 15-20%
// slower than -O3 on the forward); asking it to unroll the block fixes that. Not for
// clang (it interleaves on its own, and the pragma makes it unroll before vectorizing),
// nor for the loops with lane sums (learnable_kernels.hpp), which g++ would scalarize.
// nvcc's front end defines __GNUC__ but rejects GCC's pragma spelling.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define QLIB_FQ_UNROLL _Pragma("GCC unroll 16")
#else
#define QLIB_FQ_UNROLL
#endif

// The loops are kept out of line (and, for g++, from being cloned with constant
// arguments): inlined where the grid is a compile-time constant, g++ 12 folds the clamps
// into branches and the loop stays scalar (measured 5x slower). A call per loop costs
// nothing next to a pass over memory.
#ifndef QLIB_FQ_KERNEL
#if defined(__GNUC__) && !defined(__clang__)
#define QLIB_FQ_KERNEL __attribute__((noinline, noclone))
#elif defined(__clang__)
#define QLIB_FQ_KERNEL __attribute__((noinline))
#elif defined(_MSC_VER)
#define QLIB_FQ_KERNEL __declspec(noinline)
#else
#define QLIB_FQ_KERNEL
#endif
#endif

QLIB_NAMESPACE_BEGIN
namespace detail {
namespace fq {

/// Elements per inner loop: 64 bytes of float, a cache line.
constexpr std::size_t block = 16;

/// One quantization grid in units of x / s: clamp bounds lo = qmin - z, hi = qmax - z,
/// the pre-clamp bounds lo - 1, hi + 1, and z. All integers, exact in float.
template <class T>
struct grid {
  T scale;
  T lo, hi;
  T vlo, vhi;
  T zf;
};

template <class T>
grid<T> make_grid(T scale, std::int32_t zero_point, std::int32_t qmin, std::int32_t qmax) noexcept {
  const std::int32_t lo = qmin - zero_point, hi = qmax - zero_point;
  return {scale,
          static_cast<T>(lo),
          static_cast<T>(hi),
          static_cast<T>(lo - 1),
          static_cast<T>(hi + 1),
          static_cast<T>(zero_point)};
}

template <class T>
inline T clamped(T r, const grid<T>& g) noexcept {
  r = r < g.lo ? g.lo : r;
  return r > g.hi ? g.hi : r;
}

// Rounding policies. apply(v) rounds; level(r, g) is the dequantized level divided by s.
// The fast ones return clamp(r, lo, hi) (equal to the reference in round-to-nearest, where
// rounding gives +0 for zeros). The exact ones repeat the reference's own operations,
// clamp(r + z, qmin, qmax) - z, so that even signed zeros under other rounding modes
// (x - x is -0 when rounding downward) come out as dequantize(quantize(x)) does.
struct even_fast {
  template <class T>
  static T apply(T v) noexcept {
    return round_half_even_small(v);
  }
  template <class T>
  static T level(T r, const grid<T>& g) noexcept {
    return clamped(r, g);
  }
};
struct away_fast {
  template <class T>
  static T apply(T v) noexcept {
    return round_half_away_small(v);
  }
  template <class T>
  static T level(T r, const grid<T>& g) noexcept {
    return clamped(r, g);
  }
};
template <class T>
inline T exact_level(T r, const grid<T>& g) noexcept {
  const T qmin = g.lo + g.zf, qmax = g.hi + g.zf;
  T q = r + g.zf;
  q = q < qmin ? qmin : q;
  q = q > qmax ? qmax : q;
  return q - g.zf;
}
struct even_exact {
  template <class T>
  static T apply(T v) noexcept {
    return round_half_even(v);
  }
  template <class T>
  static T level(T r, const grid<T>& g) noexcept {
    return exact_level(r, g);
  }
};
struct away_exact {
  template <class T>
  static T apply(T v) noexcept {
    return std::round(v);
  }
  template <class T>
  static T level(T r, const grid<T>& g) noexcept {
    return exact_level(r, g);
  }
};

/// Per-channel grids stored as arrays (one entry per channel), for the layout where the
/// channel is the innermost dimension and the parameters change at every element.
template <class T>
struct grid_arrays {
  const T* scale;
  const T* lo;
  const T* hi;
  const T* vlo;
  const T* vhi;
  const T* zf;
};

/// Accessors: the same grid for every index, or the j-th grid of arrays.
/// (The uniform accessor keeps scalars, not a grid: g++ does not vectorize a loop that
/// copies a whole struct per element.)
template <class T>
struct uniform {
  T scale, lo, hi, vlo, vhi, zf;
  explicit uniform(const grid<T>& g) noexcept : scale(g.scale), lo(g.lo), hi(g.hi), vlo(g.vlo), vhi(g.vhi), zf(g.zf) {}
  grid<T> operator[](std::size_t) const noexcept { return {scale, lo, hi, vlo, vhi, zf}; }
};
template <class T>
struct by_index {
  grid_arrays<T> a;
  grid<T> operator[](std::size_t j) const noexcept {
    return {a.scale[j], a.lo[j], a.hi[j], a.vlo[j], a.vhi[j], a.zf[j]};
  }
};

/// round(x / s), x / s first clamped to [vlo, vhi].
template <class R, class T>
inline T rounded(T x, const grid<T>& g) noexcept {
  T v = x / g.scale;
  v = v < g.vlo ? g.vlo : v;
  v = v > g.vhi ? g.vhi : v;
  return R::apply(v);
}
template <class T>
inline bool inside(T r, const grid<T>& g) noexcept {
  return (r >= g.lo) & (r <= g.hi);
}
/// The straight-through gradient: g where the value was not clipped, +0 elsewhere (a
/// select of a loaded value or 0, which vectorizes for float and double alike).
template <class T>
inline T pass_if(bool not_clipped, T g) noexcept {
  return not_clipped ? g : T(0);
}

// ---- forward ---------------------------------------------------------------------------
// Each loop lives in a function whose pointer parameters are __restrict (g++ ignores
// restrict on block-scope pointers, and without it -O2 does not vectorize). Exact aliasing
// (in place) has its own function with one pointer for the shared buffer. The callers
// (fakequant/*.hpp) reject partial overlaps.

template <class R, class T, class G>
QLIB_FQ_KERNEL void forward(const T* __restrict x, T* __restrict out, std::size_t n, const G g) {
  std::size_t i = 0;
  for (; i + block <= n; i += block) {
    QLIB_FQ_UNROLL
    for (std::size_t k = 0; k < block; ++k) {
      const grid<T> p = g[i + k];
      out[i + k] = R::level(rounded<R>(x[i + k], p), p) * p.scale;
    }
  }
  for (; i < n; ++i) {
    const grid<T> p = g[i];
    out[i] = R::level(rounded<R>(x[i], p), p) * p.scale;
  }
}

template <class R, class T, class G>
QLIB_FQ_KERNEL void forward_inplace(T* x, std::size_t n, const G g) {
  std::size_t i = 0;
  for (; i + block <= n; i += block) {
    QLIB_FQ_UNROLL
    for (std::size_t k = 0; k < block; ++k) {
      const grid<T> p = g[i + k];
      x[i + k] = R::level(rounded<R>(x[i + k], p), p) * p.scale;
    }
  }
  for (; i < n; ++i) {
    const grid<T> p = g[i];
    x[i] = R::level(rounded<R>(x[i], p), p) * p.scale;
  }
}

/// Forward that also writes the mask (1: not clipped) as bytes (bool has the same one-byte
/// 0/1 representation on every supported ABI; the callers check sizeof(bool) == 1).
template <class R, class T, class G>
QLIB_FQ_KERNEL void forward_mask(const T* __restrict x, T* __restrict out, unsigned char* __restrict mask,
                                 std::size_t n, const G g) {
  std::size_t i = 0;
  for (; i + block <= n; i += block) {
    QLIB_FQ_UNROLL
    for (std::size_t k = 0; k < block; ++k) {
      const grid<T> p = g[i + k];
      const T r = rounded<R>(x[i + k], p);
      mask[i + k] = static_cast<unsigned char>(inside(r, p));
      out[i + k] = R::level(r, p) * p.scale;
    }
  }
  for (; i < n; ++i) {
    const grid<T> p = g[i];
    const T r = rounded<R>(x[i], p);
    mask[i] = static_cast<unsigned char>(inside(r, p));
    out[i] = R::level(r, p) * p.scale;
  }
}

template <class R, class T, class G>
QLIB_FQ_KERNEL void forward_mask_inplace(T* x, unsigned char* __restrict mask, std::size_t n, const G g) {
  std::size_t i = 0;
  for (; i + block <= n; i += block) {
    QLIB_FQ_UNROLL
    for (std::size_t k = 0; k < block; ++k) {
      const grid<T> p = g[i + k];
      const T r = rounded<R>(x[i + k], p);
      mask[i + k] = static_cast<unsigned char>(inside(r, p));
      x[i + k] = R::level(r, p) * p.scale;
    }
  }
  for (; i < n; ++i) {
    const grid<T> p = g[i];
    const T r = rounded<R>(x[i], p);
    mask[i] = static_cast<unsigned char>(inside(r, p));
    x[i] = R::level(r, p) * p.scale;
  }
}

// ---- straight-through backward ---------------------------------------------------------

/// dx = mask ? dy : +0.
template <class T>
QLIB_FQ_KERNEL void backward_mask(const T* __restrict dy, const unsigned char* __restrict mask, T* __restrict dx,
                                  std::size_t n) {
  std::size_t i = 0;
  for (; i + block <= n; i += block) {
    QLIB_FQ_UNROLL
    for (std::size_t k = 0; k < block; ++k) dx[i + k] = pass_if(mask[i + k] != 0, dy[i + k]);
  }
  for (; i < n; ++i) dx[i] = pass_if(mask[i] != 0, dy[i]);
}

/// The same with dx in dy's buffer.
template <class T>
QLIB_FQ_KERNEL void backward_mask_inplace(T* dy_dx, const unsigned char* __restrict mask, std::size_t n) {
  std::size_t i = 0;
  for (; i + block <= n; i += block) {
    QLIB_FQ_UNROLL
    for (std::size_t k = 0; k < block; ++k) dy_dx[i + k] = pass_if(mask[i + k] != 0, dy_dx[i + k]);
  }
  for (; i < n; ++i) dy_dx[i] = pass_if(mask[i] != 0, dy_dx[i]);
}

/// dx = (x not clipped) ? dy : +0, the mask recomputed from x.
template <class R, class T, class G>
QLIB_FQ_KERNEL void backward_recompute(const T* __restrict dy, const T* __restrict x, T* __restrict dx, std::size_t n,
                                       const G g) {
  std::size_t i = 0;
  for (; i + block <= n; i += block) {
    QLIB_FQ_UNROLL
    for (std::size_t k = 0; k < block; ++k) {
      const grid<T> p = g[i + k];
      dx[i + k] = pass_if(inside(rounded<R>(x[i + k], p), p), dy[i + k]);
    }
  }
  for (; i < n; ++i) {
    const grid<T> p = g[i];
    dx[i] = pass_if(inside(rounded<R>(x[i], p), p), dy[i]);
  }
}

/// The same with dx in dy's buffer.
template <class R, class T, class G>
QLIB_FQ_KERNEL void backward_recompute_inplace(T* dy_dx, const T* __restrict x, std::size_t n, const G g) {
  std::size_t i = 0;
  for (; i + block <= n; i += block) {
    QLIB_FQ_UNROLL
    for (std::size_t k = 0; k < block; ++k) {
      const grid<T> p = g[i + k];
      dy_dx[i + k] = pass_if(inside(rounded<R>(x[i + k], p), p), dy_dx[i + k]);
    }
  }
  for (; i < n; ++i) {
    const grid<T> p = g[i];
    dy_dx[i] = pass_if(inside(rounded<R>(x[i], p), p), dy_dx[i]);
  }
}

/// Any other exact aliasing (dx in x's buffer): a plain scalar loop, correct for any
/// pointers that are equal or disjoint.
template <class R, class T, class G>
QLIB_FQ_KERNEL void backward_recompute_aliased(const T* dy, const T* x, T* dx, std::size_t n, const G g) {
  for (std::size_t i = 0; i < n; ++i) {
    const grid<T> p = g[i];
    const T d = dy[i];
    const T r = rounded<R>(x[i], p);
    dx[i] = pass_if(inside(r, p), d);
  }
}

}  // namespace fq
}  // namespace detail
QLIB_NAMESPACE_END
