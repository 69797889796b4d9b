// Internal: order-preserving integer keys of floats and exact O(n) selection of order
// statistics (the k-th smallest / largest) without sorting, for IFMR's percentile start
// (calib/ifmr.hpp). Only the standard library.
#pragma once

#include "algorithm.hpp"
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../config.hpp"

QLIB_NAMESPACE_BEGIN

namespace detail {

template <class T>
struct float_key;
template <>
struct float_key<float> {
  using type = std::uint32_t;
  static constexpr int bits = 32;
  static constexpr int top = 11;      // sign + 8 exponent bits + 2 mantissa bits
  static constexpr unsigned edge = 4;  // top digits < edge or >= 2^top - edge: Inf or NaN
};
template <>
struct float_key<double> {
  using type = std::uint64_t;
  static constexpr int bits = 64;
  static constexpr int top = 12;  // sign + 11 exponent bits
  static constexpr unsigned edge = 1;
};

/// Maps a float to an unsigned integer with the same order (negatives flipped).
template <class T>
typename float_key<T>::type order_key(T v) noexcept {
  using K = typename float_key<T>::type;
  K u;
  std::memcpy(&u, &v, sizeof u);
  const K sign = K(1) << (float_key<T>::bits - 1);
  return (u & sign) ? static_cast<K>(~u) : static_cast<K>(u | sign);
}

template <class T>
T from_order_key(typename float_key<T>::type k) noexcept {
  using K = typename float_key<T>::type;
  const K sign = K(1) << (float_key<T>::bits - 1);
  const K u = (k & sign) ? static_cast<K>(k ^ sign) : static_cast<K>(~k);
  T v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

// The r-th smallest (1-based) key of v by most-significant-digit radix selection below the
// first `done` bits, which all keys of v share. Reorders v.
template <class K>
K select_keys(std::vector<K>& v, std::uint64_t r, int done, int bits) {
  std::vector<std::uint64_t> hist;
  while (true) {
    if (v.size() <= 64 || done >= bits) {
      std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(r - 1), v.end());
      return v[static_cast<std::size_t>(r - 1)];
    }
    const int width = std::min(11, bits - done);
    const int shift = bits - done - width;
    const K mask = static_cast<K>((K(1) << width) - 1);
    hist.assign(std::size_t{1} << width, 0);
    for (K k : v) ++hist[static_cast<std::size_t>((k >> shift) & mask)];
    std::size_t b = 0;
    while (r > hist[b]) r -= hist[b++];
    if (hist[b] != v.size()) {
      std::size_t out = 0;
      for (K k : v)
        if (static_cast<std::size_t>((k >> shift) & mask) == b) v[out++] = k;
      v.resize(out);
    }
    done += width;
  }
}

/// The ra-th and rb-th smallest (1-based, in [1, n]) of x[0..n), exactly, in O(n): one
/// pass histograms the top digit of the keys (and finds NaN / Inf, which fail naming
/// `who` and the first bad index), a second gathers the two buckets, which are refined by
/// select_keys.
template <class T>
void select_two(const T* x, std::size_t n, std::uint64_t ra, std::uint64_t rb, T* va, T* vb, const std::string& who) {
  using FK = float_key<T>;
  using K = typename FK::type;
  constexpr int shift = FK::bits - FK::top;
  constexpr std::size_t buckets = std::size_t{1} << FK::top;
  std::vector<std::uint64_t> hist(buckets, 0);
  for (std::size_t i = 0; i < n; ++i) ++hist[static_cast<std::size_t>(order_key(x[i]) >> shift)];
  std::uint64_t bad = 0;
  for (std::size_t b = 0; b < FK::edge; ++b) bad += hist[b] + hist[buckets - 1 - b];
  if (bad) {
    for (std::size_t i = 0; i < n; ++i)
      if (!std::isfinite(x[i]))
        fail(errc::non_finite, who + ": value " + (std::isnan(x[i]) ? std::string("NaN") : std::string("Inf")) +
                                   " at flat index " + std::to_string(i));
  }
  const auto locate = [&](std::uint64_t r, std::uint64_t* rest) {
    std::size_t b = 0;
    while (r > hist[b]) r -= hist[b++];
    *rest = r;
    return b;
  };
  std::uint64_t ra_in = 0, rb_in = 0;
  const std::size_t ba = locate(ra, &ra_in), bb = locate(rb, &rb_in);
  std::vector<K> ga, gb;
  ga.reserve(static_cast<std::size_t>(hist[ba]));
  if (bb != ba) gb.reserve(static_cast<std::size_t>(hist[bb]));
  for (std::size_t i = 0; i < n; ++i) {
    const K k = order_key(x[i]);
    const auto d = static_cast<std::size_t>(k >> shift);
    if (d == ba) {
      ga.push_back(k);
    } else if (d == bb) {
      gb.push_back(k);
    }
  }
  if (bb == ba) gb = ga;
  *va = from_order_key<T>(select_keys(ga, ra_in, FK::top, FK::bits));
  *vb = from_order_key<T>(select_keys(gb, rb_in, FK::top, FK::bits));
}

/// The ka-th smallest and kb-th largest (1-based, ka, kb <= 64) of x[0..n) in one pass:
/// each block of 256 values is reduced to its min / max (a loop that vectorizes; its
/// v * 0 sum turns NaN / Inf into a NaN that is then located), and only blocks that reach
/// past the current ka-th smallest or kb-th largest are scanned into two small sorted lists.
template <class T>
void extremes_small_k(const T* x, std::size_t n, std::size_t ka, std::size_t kb, T* va, T* vb,
                      const std::string& who) {
  constexpr std::size_t block = 256;
  std::vector<T> lows, highs;  // ascending: lows the ka smallest, highs the kb largest
  lows.reserve(ka + 1);
  highs.reserve(kb + 1);
  for (std::size_t off = 0; off < n; off += block) {
    const std::size_t m = std::min(block, n - off);
    const T* p = x + off;
    constexpr std::size_t lanes = 8;  // independent accumulators keep vector lanes busy
    T lo_l[lanes], hi_l[lanes], acc_l[lanes];
    for (std::size_t l = 0; l < lanes; ++l) {
      lo_l[l] = hi_l[l] = p[0];
      acc_l[l] = T(0);
    }
    std::size_t j = 0;
    for (; j + lanes <= m; j += lanes)
      for (std::size_t l = 0; l < lanes; ++l) {
        const T v = p[j + l];
        lo_l[l] = v < lo_l[l] ? v : lo_l[l];
        hi_l[l] = v > hi_l[l] ? v : hi_l[l];
        acc_l[l] += v * T(0);
      }
    for (; j < m; ++j) {
      lo_l[0] = p[j] < lo_l[0] ? p[j] : lo_l[0];
      hi_l[0] = p[j] > hi_l[0] ? p[j] : hi_l[0];
      acc_l[0] += p[j] * T(0);
    }
    T lo = lo_l[0], hi = hi_l[0], acc = acc_l[0];
    for (std::size_t l = 1; l < lanes; ++l) {
      lo = lo_l[l] < lo ? lo_l[l] : lo;
      hi = hi_l[l] > hi ? hi_l[l] : hi;
      acc += acc_l[l];
    }
    if (!(acc == T(0))) {
      for (std::size_t i = 0; i < m; ++i)
        if (!std::isfinite(p[i]))
          fail(errc::non_finite, who + ": value " + (std::isnan(p[i]) ? std::string("NaN") : std::string("Inf")) +
                                     " at flat index " + std::to_string(off + i));
    }
    if (lows.size() < ka || lo < lows.back()) {
      for (std::size_t i = 0; i < m; ++i) {
        if (lows.size() == ka && !(p[i] < lows.back())) continue;
        lows.insert(std::upper_bound(lows.begin(), lows.end(), p[i]), p[i]);
        if (lows.size() > ka) lows.pop_back();
      }
    }
    if (highs.size() < kb || hi > highs.front()) {
      for (std::size_t i = 0; i < m; ++i) {
        if (highs.size() == kb && !(p[i] > highs.front())) continue;
        highs.insert(std::lower_bound(highs.begin(), highs.end(), p[i]), p[i]);
        if (highs.size() > kb) highs.erase(highs.begin());
      }
    }
  }
  *va = lows.back();
  *vb = highs.front();
}

}  // namespace detail

QLIB_NAMESPACE_END
