// Opt-in xtensor adapter: every observer and the arithmetic functions take xtensor
// expressions (xarray, xtensor, views, lazy expressions). Include on purpose; needs
// xtensor (Debian's xtensor-dev, 0.24).
//
// Shape convention: an expression's xtensor shape is its logical C-order shape. Containers
// with row-major layout and contiguous data are viewed without a copy; anything else (views
// with strides, column-major containers, lazy expressions) is evaluated once into a
// row-major xarray. Outputs are row-major xarrays of the input's shape.
#pragma once

#include <xtensor/xarray.hpp>
#include <xtensor/xexpression.hpp>
#include <xtensor/xutils.hpp>

#include <cstdint>
#include <type_traits>

#include "config.hpp"
#include "core/qparams.hpp"
#include "core/quantize.hpp"
#include "core/tensor_view.hpp"

QLIB_NAMESPACE_BEGIN
namespace xtensor {

template <class T>
using row_major_xarray = xt::xarray<T, xt::layout_type::row_major>;

namespace detail {
template <class E>
shape_t shape_of(const E& e) {
  return shape_t::from_range(e.shape().begin(), e.shape().end());
}
}  // namespace detail

/// Calls f(tensor_view<const value_type>) on the expression with its shape, copying only
/// when the expression is not a contiguous row-major container.
template <class E, class F>
decltype(auto) with_view(const xt::xexpression<E>& expr, const char* name, F&& f) {
  const E& e = expr.derived_cast();
  using T = std::remove_const_t<typename E::value_type>;
  if constexpr (xt::has_data_interface<E>::value) {
    if (e.layout() == xt::layout_type::row_major && e.is_contiguous())
      return f(tensor_view<const T>(e.data() + e.data_offset(), detail::shape_of(e), name));
  }
  const row_major_xarray<T> tmp = e;
  return f(tensor_view<const T>(tmp.data(), detail::shape_of(tmp), name));
}

/// Feeds an expression to any qlib observer as one batch.
template <class Observer, class E>
void update(Observer& obs, const xt::xexpression<E>& expr, const char* name = nullptr) {
  with_view(expr, name, [&](auto v) { obs.update(v); });
}

/// quantize() of an expression, as an integer xarray of the same shape.
template <class Q, class E, class P>
row_major_xarray<Q> quantize(const xt::xexpression<E>& expr, const P& params, const qspec& spec,
                             rounding mode = rounding::half_to_even) {
  const auto& shape = expr.derived_cast().shape();
  row_major_xarray<Q> out(std::vector<std::size_t>(shape.begin(), shape.end()));
  with_view(expr, nullptr, [&](auto v) { qlib::quantize(v, params, spec, out.data(), mode); });
  return out;
}

/// dequantize() of an integer expression, as a real xarray of the same shape.
template <class T, class E, class P>
row_major_xarray<T> dequantize(const xt::xexpression<E>& expr, const P& params) {
  const auto& shape = expr.derived_cast().shape();
  row_major_xarray<T> out(std::vector<std::size_t>(shape.begin(), shape.end()));
  with_view(expr, nullptr, [&](auto v) { qlib::dequantize(v, params, out.data()); });
  return out;
}

}  // namespace xtensor
QLIB_NAMESPACE_END
