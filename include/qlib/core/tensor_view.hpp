// Non-owning views of contiguous, C-order (row-major) data, and the per-channel layout.
//
// Layout convention, stated once for the whole library: a tensor is a contiguous C-order
// array with a shape of at most 8 dimensions. "Per-channel along axis a" views it as
// (outer, channels, inner) with outer = prod(shape[0:a]), channels = shape[a],
// inner = prod(shape[a+1:]); element (o, c, i) sits at offset (o * channels + c) * inner + i.
// Weights of Conv/Linear use axis 0 (C_out first), ConvTranspose axis 1 (ONNX layouts).
// Per-channel parameters are 1-D vectors of length `channels`.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>

#include "../config.hpp"

QLIB_NAMESPACE_BEGIN

/// The shape of a C-order tensor, up to max_rank dimensions. A rank-0 shape is a scalar.
class shape_t {
 public:
  static constexpr int max_rank = 8;

  shape_t() = default;
  /// Rank-1 shape {n}.
  explicit shape_t(std::size_t n) : rank_(1) { dims_[0] = n; }
  shape_t(std::initializer_list<std::size_t> dims) {
    if (dims.size() > static_cast<std::size_t>(max_rank))
      detail::fail(errc::invalid_argument,
                   "shape has " + std::to_string(dims.size()) + " dimensions; qlib supports at most 8");
    for (std::size_t d : dims) dims_[static_cast<std::size_t>(rank_++)] = d;
  }
  template <class It>
  static shape_t from_range(It first, It last) {
    shape_t s;
    for (; first != last; ++first) {
      if (s.rank_ == max_rank)
        detail::fail(errc::invalid_argument, "shape has more than 8 dimensions");
      s.dims_[static_cast<std::size_t>(s.rank_++)] = static_cast<std::size_t>(*first);
    }
    return s;
  }

  int rank() const noexcept { return rank_; }
  std::size_t operator[](int i) const noexcept { return dims_[static_cast<std::size_t>(i)]; }
  std::size_t numel() const noexcept {
    std::size_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<std::size_t>(i)];
    return n;
  }
  const std::size_t* begin() const noexcept { return dims_.data(); }
  const std::size_t* end() const noexcept { return dims_.data() + rank_; }

  friend bool operator==(const shape_t& a, const shape_t& b) noexcept {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.dims_[static_cast<std::size_t>(i)] != b.dims_[static_cast<std::size_t>(i)]) return false;
    return true;
  }
  friend bool operator!=(const shape_t& a, const shape_t& b) noexcept { return !(a == b); }

  /// "(2, 3, 4)": for error messages.
  std::string str() const {
    std::string out = "(";
    for (int i = 0; i < rank_; ++i) {
      if (i) out += ", ";
      out += std::to_string(dims_[static_cast<std::size_t>(i)]);
    }
    if (rank_ == 1) out += ",";
    return out + ")";
  }

 private:
  std::array<std::size_t, max_rank> dims_{};
  int rank_ = 0;
};

/// (outer, channels, inner) of a shape split at an axis; see the file comment.
struct channel_layout {
  std::size_t outer = 1;
  std::size_t channels = 1;
  std::size_t inner = 1;
};

/// Normalizes a possibly negative axis (Python style) and checks it against the rank.
inline status check_axis(int axis, int rank, int* normalized) {
  const int a = axis < 0 ? axis + rank : axis;
  if (rank == 0 || a < 0 || a >= rank)
    return {errc::invalid_argument, "axis " + std::to_string(axis) + " is out of range for a tensor of rank " +
                                        std::to_string(rank)};
  if (normalized) *normalized = a;
  return {};
}

/// The per-channel layout of `shape` along `axis` (negative counts from the end).
inline channel_layout layout_along(const shape_t& shape, int axis) {
  int a = 0;
  detail::throw_if(check_axis(axis, shape.rank(), &a));
  channel_layout l;
  for (int i = 0; i < a; ++i) l.outer *= shape[i];
  l.channels = shape[a];
  for (int i = a + 1; i < shape.rank(); ++i) l.inner *= shape[i];
  return l;
}

/// A non-owning view of contiguous C-order data with a shape and an optional name (the
/// name appears in error messages; it must outlive the view, e.g. a string literal).
template <class T>
class tensor_view {
 public:
  using value_type = std::remove_const_t<T>;

  tensor_view() = default;
  tensor_view(T* data, shape_t shape, const char* name = nullptr) noexcept
      : data_(data), shape_(shape), name_(name) {}
  /// A flat view of n values.
  tensor_view(T* data, std::size_t n, const char* name = nullptr) noexcept
      : data_(data), shape_(n), name_(name) {}
  /// Mutable view converts to const view.
  template <class U, class = std::enable_if_t<std::is_same<const U, T>::value>>
  tensor_view(const tensor_view<U>& other) noexcept  // NOLINT(google-explicit-constructor)
      : data_(other.data()), shape_(other.shape()), name_(other.name()) {}

  T* data() const noexcept { return data_; }
  const shape_t& shape() const noexcept { return shape_; }
  std::size_t size() const noexcept { return shape_.numel(); }
  bool empty() const noexcept { return size() == 0; }
  int rank() const noexcept { return shape_.rank(); }
  const char* name() const noexcept { return name_; }
  /// "tensor 'conv1'" or "tensor": for error messages.
  std::string label() const { return name_ ? std::string("tensor '") + name_ + "'" : std::string("tensor"); }
  T* begin() const noexcept { return data_; }
  T* end() const noexcept { return data_ + size(); }
  T& operator[](std::size_t i) const noexcept { return data_[i]; }

 private:
  T* data_ = nullptr;
  shape_t shape_{std::size_t{0}};  // a default view is empty (rank 1, size 0), not a scalar
  const char* name_ = nullptr;
};

/// A read-only view of n values.
template <class T>
tensor_view<const T> view(const T* data, std::size_t n, const char* name = nullptr) noexcept {
  return tensor_view<const T>(data, n, name);
}
/// A read-only view with a shape.
template <class T>
tensor_view<const T> view(const T* data, shape_t shape, const char* name = nullptr) noexcept {
  return tensor_view<const T>(data, shape, name);
}
/// A read-only flat view of a contiguous container (std::vector, std::array, ...).
template <class C, class T = std::remove_cv_t<std::remove_reference_t<decltype(*std::declval<const C&>().data())>>>
tensor_view<const T> view(const C& c, const char* name = nullptr) noexcept {
  return tensor_view<const T>(c.data(), c.size(), name);
}

QLIB_NAMESPACE_END
