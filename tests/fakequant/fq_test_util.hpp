// Helpers shared by the fake-quant tests: bitwise comparison, the grids and parameters the
// tests sweep over, and (from test_errors.hpp) error capture.
#pragma once

#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <qlib/config.hpp>
#include <qlib/core/qparams.hpp>
#include <qlib/core/tensor_view.hpp>
#include <string>
#include <vector>

#include "test_errors.hpp"

namespace qlib_test {

/// Index of the first element whose bits differ (NaNs compare equal to NaNs), or -1.
template <class T>
long first_bit_difference(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) return static_cast<long>(i);
  }
  return -1;
}

/// The grids the tests sweep over: signed/unsigned, symmetric/affine, narrow, 4 to 16 bits.
inline std::vector<qlib::qspec> test_specs() {
  std::vector<qlib::qspec> v;
  v.push_back(qlib::qspec::tensorrt_int8());
  v.push_back(qlib::qspec::tensorrt_weight_int8());
  v.push_back(qlib::qspec::torch_quint8());
  v.push_back(qlib::qspec::amct_activation());
  qlib::qspec s4;
  s4.bits = 4;
  s4.scheme = qlib::qscheme::affine;
  s4.convention = qlib::qconvention::torch;
  v.push_back(s4);
  qlib::qspec s16;
  s16.bits = 16;
  v.push_back(s16);
  qlib::qspec u2;
  u2.bits = 2;
  u2.is_signed = false;
  v.push_back(u2);
  return v;
}

inline std::string spec_name(const qlib::qspec& s) {
  return std::to_string(s.bits) + (s.is_signed ? "s" : "u") + (s.narrow_range ? "n" : "") + "-" +
         qlib::to_string(s.scheme) + "-" + qlib::to_string(s.convention);
}

template <class T>
void minmax_of(const std::vector<T>& x, T* lo, T* hi) {
  *lo = x.empty() ? T(0) : x[0];
  *hi = *lo;
  for (T v : x) {
    *lo = v < *lo ? v : *lo;
    *hi = v > *hi ? v : *hi;
  }
}

}  // namespace qlib_test
