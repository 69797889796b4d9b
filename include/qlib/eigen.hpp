// Opt-in Eigen adapter: every observer and the arithmetic functions take Eigen dense
// expressions (Array, Matrix, Map, blocks, expressions). Include on purpose; needs Eigen 3.
//
// Shape convention: an Eigen object with R rows and C columns is the tensor of logical
// shape (R, C) (a vector with C == 1 or R == 1 is rank 1), whatever its storage order;
// per-channel axis 0 means one parameter per row, axis 1 one per column. Row-major storage
// (and vectors) is viewed without a copy; column-major storage and expressions without
// direct access are evaluated once into a row-major buffer.
#pragma once

#include <Eigen/Core>

#include <cstdint>
#include <type_traits>

#include "config.hpp"
#include "core/qparams.hpp"
#include "core/quantize.hpp"
#include "core/tensor_view.hpp"
#include "fakequant/fake_quant.hpp"

QLIB_NAMESPACE_BEGIN
namespace eigen {

template <class Scalar>
using row_major_array = Eigen::Array<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

namespace detail {
template <class Derived>
constexpr bool viewable_without_copy() {
  using D = Derived;
  constexpr bool direct = (static_cast<int>(Eigen::internal::traits<D>::Flags) & Eigen::DirectAccessBit) != 0;
  constexpr bool row_major_or_vector = D::IsRowMajor || D::IsVectorAtCompileTime;
  return direct && row_major_or_vector;
}

template <class Derived>
shape_t logical_shape(const Eigen::DenseBase<Derived>& x) {
  if (Derived::IsVectorAtCompileTime) return shape_t(static_cast<std::size_t>(x.size()));
  return shape_t{static_cast<std::size_t>(x.rows()), static_cast<std::size_t>(x.cols())};
}

// Contiguity of an object with direct access: inner stride 1 and rows packed.
template <class Derived>
bool contiguous(const Eigen::DenseBase<Derived>& x) {
  const auto& d = x.derived();
  if (d.innerStride() != 1) return false;
  if (Derived::IsVectorAtCompileTime) return true;
  const Eigen::Index inner = Derived::IsRowMajor ? x.cols() : x.rows();
  return d.outerStride() == inner || x.size() == 0;
}
}  // namespace detail

/// Calls f(tensor_view<const Scalar>) on x with its logical shape, copying only when x's
/// memory is not contiguous row-major.
template <class Derived, class F>
decltype(auto) with_view(const Eigen::DenseBase<Derived>& x, const char* name, F&& f) {
  using Scalar = typename Derived::Scalar;
  if constexpr (detail::viewable_without_copy<Derived>()) {
    if (detail::contiguous(x)) return f(tensor_view<const Scalar>(x.derived().data(), detail::logical_shape(x), name));
  }
  const row_major_array<Scalar> tmp = x.derived();
  return f(tensor_view<const Scalar>(tmp.data(), detail::logical_shape(x), name));
}

/// Feeds x to any qlib observer as one batch.
template <class Observer, class Derived>
void update(Observer& obs, const Eigen::DenseBase<Derived>& x, const char* name = nullptr) {
  with_view(x, name, [&](tensor_view<const typename Derived::Scalar> v) { obs.update(v); });
}

/// quantize() of x, as an integer array of the same (rows, cols).
template <class Q, class Derived, class P>
row_major_array<Q> quantize(const Eigen::DenseBase<Derived>& x, const P& params, const qspec& spec,
                            rounding mode = rounding::half_to_even) {
  row_major_array<Q> out(x.rows(), x.cols());
  with_view(x, nullptr, [&](tensor_view<const typename Derived::Scalar> v) {
    qlib::quantize(v, params, spec, out.data(), mode);
  });
  return out;
}

/// dequantize() of an integer array, as a real array of the same (rows, cols).
template <class T, class Derived, class P>
row_major_array<T> dequantize(const Eigen::DenseBase<Derived>& q, const P& params) {
  row_major_array<T> out(q.rows(), q.cols());
  with_view(q, nullptr, [&](tensor_view<const typename Derived::Scalar> v) { qlib::dequantize(v, params, out.data()); });
  return out;
}

/// Fake-quant (quantize then dequantize) of x, per tensor or per channel (P is qparams<T>
/// or channel_qparams<T>; axis 0 = rows, 1 = columns), as fakequant/fake_quant.hpp.
template <class Derived, class P>
row_major_array<typename Derived::Scalar> fake_quantize(const Eigen::DenseBase<Derived>& x, const P& params,
                                                        const qspec& spec, rounding mode = rounding::half_to_even) {
  using T = typename Derived::Scalar;
  row_major_array<T> out(x.rows(), x.cols());
  with_view(x, nullptr, [&](tensor_view<const T> v) { qlib::fake_quantize<T>(v, params, spec, tensor_view<T>(out.data(), v.shape()), mode); });
  return out;
}

}  // namespace eigen
QLIB_NAMESPACE_END
