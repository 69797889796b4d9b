// The .npy format itself: element types, the header (build and parse), and the
// element codecs (float16 included). io/npy.hpp builds the streaming reader and the
// writer on top; most users include that.
//
// Format (numpy/lib/format.py, NEP 1): the magic "\x93NUMPY", a version byte pair
// (1.0: u16 little-endian header length; 2.0 and 3.0: u32; 3.0 allows a UTF-8 header), then
// the header: a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// padded with spaces and a final '\n' so that the data starts on a 64-byte boundary, then
// the elements in C order.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "../config.hpp"
#include "../core/tensor_view.hpp"
#include "../detail/text.hpp"

QLIB_NAMESPACE_BEGIN
/// Element types of .npy files that qlib reads and writes.
enum class npy_dtype : std::uint8_t { f2, f4, f8, i1, u1, i2, u2, i4, u4, i8, u8 };

/// Bytes per element.
inline std::size_t npy_itemsize(npy_dtype t) noexcept {
  switch (t) {
    case npy_dtype::i1: case npy_dtype::u1: return 1;
    case npy_dtype::f2: case npy_dtype::i2: case npy_dtype::u2: return 2;
    case npy_dtype::f4: case npy_dtype::i4: case npy_dtype::u4: return 4;
    case npy_dtype::f8: case npy_dtype::i8: case npy_dtype::u8: return 8;
  }
  return 0;
}

/// NumPy's name of the type: "float32", "int8", ...
inline const char* npy_dtype_name(npy_dtype t) noexcept {
  switch (t) {
    case npy_dtype::f2: return "float16";
    case npy_dtype::f4: return "float32";
    case npy_dtype::f8: return "float64";
    case npy_dtype::i1: return "int8";
    case npy_dtype::u1: return "uint8";
    case npy_dtype::i2: return "int16";
    case npy_dtype::u2: return "uint16";
    case npy_dtype::i4: return "int32";
    case npy_dtype::u4: return "uint32";
    case npy_dtype::i8: return "int64";
    case npy_dtype::u8: return "uint64";
  }
  return "?";
}

/// The dtype numpy uses for a C++ arithmetic type (float -> f4, std::int8_t -> i1, ...).
template <class T>
constexpr npy_dtype npy_dtype_of() noexcept {
  static_assert(std::is_arithmetic<T>::value && !std::is_same<T, bool>::value, "npy elements are numbers");
  if (std::is_floating_point<T>::value) return sizeof(T) == 4 ? npy_dtype::f4 : npy_dtype::f8;
  if (sizeof(T) == 1) return std::is_signed<T>::value ? npy_dtype::i1 : npy_dtype::u1;
  if (sizeof(T) == 2) return std::is_signed<T>::value ? npy_dtype::i2 : npy_dtype::u2;
  if (sizeof(T) == 4) return std::is_signed<T>::value ? npy_dtype::i4 : npy_dtype::u4;
  return std::is_signed<T>::value ? npy_dtype::i8 : npy_dtype::u8;
}

/// What a file's header says.
struct npy_header {
  npy_dtype dtype = npy_dtype::f4;
  bool big_endian = false;        ///< '>' byte order (qlib writes '<')
  shape_t shape;
  std::uint8_t major = 1;         ///< format version 1, 2 or 3
  std::uint8_t minor = 0;
  std::uint64_t data_offset = 0;  ///< bytes before the first element

  std::size_t numel() const noexcept { return shape.numel(); }
  std::uint64_t data_bytes() const noexcept { return static_cast<std::uint64_t>(numel()) * npy_itemsize(dtype); }
  /// numpy's descr string: "<f4", "|i1", ...
  std::string descr() const {
    static const char kind[] = {'f', 'f', 'f', 'i', 'u', 'i', 'u', 'i', 'u', 'i', 'u'};
    const std::size_t size = npy_itemsize(dtype);
    std::string s(1, size == 1 ? '|' : (big_endian ? '>' : '<'));
    s += kind[static_cast<int>(dtype)];
    s += static_cast<char>('0' + size);
    return s;
  }
};

namespace detail {

/// IEEE binary16 -> float, exact (subnormals, infinities, NaN payloads kept).
inline float npy_half_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h >> 15) << 31;
  const std::uint32_t exp = (h >> 10) & 31u, mant = h & 1023u;
  std::uint32_t bits;
  if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp == 0) {
    const float v = std::ldexp(static_cast<float>(mant), -24);  // exact: mant < 2^10
    std::memcpy(&bits, &v, 4);
    bits |= sign;
  } else {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

/// double -> IEEE binary16, rounded to nearest even (what numpy's astype does); overflow
/// gives infinity, NaN keeps the top payload bits.
inline std::uint16_t npy_half_from_double(double x) noexcept {
  std::uint64_t b;
  std::memcpy(&b, &x, 8);
  const auto sign = static_cast<std::uint16_t>((b >> 48) & 0x8000u);
  if (std::isnan(x)) {
    std::uint16_t m = static_cast<std::uint16_t>((b >> 42) & 1023u);
    return static_cast<std::uint16_t>(sign | 0x7c00u | (m ? m : 0x200u));
  }
  const double a = std::fabs(x);
  if (a >= 65520.0) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds past 65504
  auto rne = [](double v) {  // v >= 0, round half to even
    const double f = std::floor(v), d = v - f;
    return (d > 0.5 || (d == 0.5 && std::fmod(f, 2.0) != 0.0)) ? f + 1.0 : f;
  };
  if (a < 6.103515625e-05) {  // below 2^-14: subnormal, in units of 2^-24
    return static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(rne(a * 16777216.0)));
  }
  int e = 0;
  const double m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  int exp = e - 1;
  double mant = rne((m * 2.0 - 1.0) * 1024.0);
  if (mant >= 1024.0) {
    mant = 0.0;
    ++exp;
  }
  if (exp + 15 >= 31) return static_cast<std::uint16_t>(sign | 0x7c00u);
  return static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>((exp + 15) << 10) | static_cast<std::uint16_t>(mant));
}

/// A float16 as T. NaNs are built from their bits, not converted, so that a signaling
/// NaN's payload survives (a float -> double conversion would quiet it).
template <class T>
T npy_half_to(std::uint16_t h) noexcept {
  if ((h & 0x7c00u) != 0x7c00u || (h & 1023u) == 0) return static_cast<T>(npy_half_to_float(h));
  T v;
  if (sizeof(T) == 4) {
    const std::uint32_t b = (static_cast<std::uint32_t>(h & 0x8000u) << 16) | 0x7f800000u | ((h & 1023u) << 13);
    std::memcpy(&v, &b, 4);
  } else {
    const std::uint64_t b = (static_cast<std::uint64_t>(h & 0x8000u) << 48) | 0x7ff0000000000000ull |
                            (static_cast<std::uint64_t>(h & 1023u) << 42);
    std::memcpy(&v, &b, 8);
  }
  return v;
}

/// A value as float16 (round to nearest even); NaN payloads taken from T's own bits.
template <class T>
std::uint16_t npy_half_from(T v) noexcept {
  if (std::is_floating_point<T>::value && std::isnan(static_cast<double>(v))) {
    std::uint64_t mant;
    std::uint16_t sign;
    if (sizeof(T) == 4) {
      std::uint32_t b;
      std::memcpy(&b, &v, 4);
      mant = (b >> 13) & 1023u;
      sign = static_cast<std::uint16_t>((b >> 16) & 0x8000u);
    } else {
      std::uint64_t b;
      std::memcpy(&b, &v, sizeof(b) <= sizeof(T) ? sizeof(b) : sizeof(T));
      mant = (b >> 42) & 1023u;
      sign = static_cast<std::uint16_t>((b >> 48) & 0x8000u);
    }
    return static_cast<std::uint16_t>(sign | 0x7c00u | (mant ? mant : 0x200u));
  }
  return npy_half_from_double(static_cast<double>(v));
}

/// Decodes `count` elements of `src` into T (float or double).
template <class T>
void npy_decode(const unsigned char* src, npy_dtype dt, bool big_endian, std::size_t count, T* dst) noexcept {
  const std::size_t k = npy_itemsize(dt);
  for (std::size_t i = 0; i < count; ++i, src += k) {
    std::uint64_t u = 0;
    for (std::size_t j = 0; j < k; ++j) {
      const std::size_t shift = big_endian ? (k - 1 - j) : j;
      u |= static_cast<std::uint64_t>(src[j]) << (8 * shift);
    }
    switch (dt) {
      case npy_dtype::f2: dst[i] = npy_half_to<T>(static_cast<std::uint16_t>(u)); break;
      case npy_dtype::f4: {
        const auto b = static_cast<std::uint32_t>(u);
        float f;
        std::memcpy(&f, &b, 4);
        dst[i] = static_cast<T>(f);
        break;
      }
      case npy_dtype::f8: {
        double d;
        std::memcpy(&d, &u, 8);
        dst[i] = static_cast<T>(d);
        break;
      }
      case npy_dtype::i1: dst[i] = static_cast<T>(static_cast<std::int8_t>(static_cast<std::uint8_t>(u))); break;
      case npy_dtype::u1: dst[i] = static_cast<T>(static_cast<std::uint8_t>(u)); break;
      case npy_dtype::i2: dst[i] = static_cast<T>(static_cast<std::int16_t>(static_cast<std::uint16_t>(u))); break;
      case npy_dtype::u2: dst[i] = static_cast<T>(static_cast<std::uint16_t>(u)); break;
      case npy_dtype::i4: dst[i] = static_cast<T>(static_cast<std::int32_t>(static_cast<std::uint32_t>(u))); break;
      case npy_dtype::u4: dst[i] = static_cast<T>(static_cast<std::uint32_t>(u)); break;
      case npy_dtype::i8: dst[i] = static_cast<T>(static_cast<std::int64_t>(u)); break;
      case npy_dtype::u8: dst[i] = static_cast<T>(u); break;
    }
  }
}

/// Encodes one value as dtype `dt` (little-endian) into `dst`; false when an integer
/// dtype cannot hold it exactly (non-integral, out of range, NaN).
template <class T>
bool npy_encode(T v, npy_dtype dt, unsigned char* dst) noexcept {
  std::uint64_t u = 0;
  const std::size_t k = npy_itemsize(dt);
  if (dt == npy_dtype::f2) {
    u = npy_half_from(v);
  } else if (dt == npy_dtype::f4) {
    const float f = static_cast<float>(v);
    std::uint32_t b;
    std::memcpy(&b, &f, 4);
    u = b;
  } else if (dt == npy_dtype::f8) {
    const double d = static_cast<double>(v);
    std::memcpy(&u, &d, 8);
  } else {
    const bool is_signed = dt == npy_dtype::i1 || dt == npy_dtype::i2 || dt == npy_dtype::i4 || dt == npy_dtype::i8;
    const int bits = static_cast<int>(8 * k);
    if (std::is_floating_point<T>::value) {
      const double d = static_cast<double>(v);
      if (!(d == std::trunc(d))) return false;  // NaN, Inf-safe: trunc(inf) == inf handled below
      const double lo = is_signed ? -std::ldexp(1.0, bits - 1) : 0.0;
      const double hi = is_signed ? std::ldexp(1.0, bits - 1) : std::ldexp(1.0, bits);  // exclusive
      if (!(d >= lo && d < hi)) return false;
      u = is_signed ? static_cast<std::uint64_t>(static_cast<std::int64_t>(d)) : static_cast<std::uint64_t>(d);
    } else if (std::is_signed<T>::value) {
      const auto s = static_cast<std::int64_t>(v);
      if (is_signed) {
        if (bits < 64 && (s < -(std::int64_t{1} << (bits - 1)) || s >= (std::int64_t{1} << (bits - 1)))) return false;
      } else {
        if (s < 0 || (bits < 64 && static_cast<std::uint64_t>(s) >= (std::uint64_t{1} << bits))) return false;
      }
      u = static_cast<std::uint64_t>(s);
    } else {
      const auto s = static_cast<std::uint64_t>(v);
      const std::uint64_t limit = is_signed ? (std::uint64_t{1} << (bits - 1)) : (bits < 64 ? std::uint64_t{1} << bits : 0);
      if (limit != 0 && s >= limit) return false;
      u = s;
    }
  }
  for (std::size_t j = 0; j < k; ++j) dst[j] = static_cast<unsigned char>(u >> (8 * j));
  return true;
}

/// numpy's header dict for a C-order array (with its spare spaces, before padding).
inline std::string npy_header_dict(const std::string& descr, const shape_t& shape) {
  std::string shape_repr = "(";
  for (int i = 0; i < shape.rank(); ++i) {
    if (i) shape_repr += ", ";
    shape_repr += std::to_string(shape[i]);
  }
  if (shape.rank() == 1) shape_repr += ",";
  shape_repr += ")";
  std::string d = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape_repr + ", }";
  if (shape.rank() > 0) {
    const std::size_t digits = std::to_string(shape[0]).size();
    if (digits < 21) d.append(21 - digits, ' ');
  }
  return d;
}

/// The whole header (magic to '\n') as numpy's _wrap_header builds it.
inline status npy_build_header(const std::string& descr, const shape_t& shape, int major, std::string* out) {
  if (major < 1 || major > 3)
    return {errc::invalid_argument, ".npy writer: format version " + std::to_string(major) + " is not 1, 2 or 3"};
  const std::string dict = npy_header_dict(descr, shape);
  const std::size_t prefix = major == 1 ? 10 : 12;
  const std::size_t hlen = dict.size() + 1;
  const std::size_t pad = 64 - (prefix + hlen) % 64;
  const std::size_t total = hlen + pad;
  if (major == 1 && total > 65535)
    return {errc::invalid_argument, ".npy writer: header too long for format 1.0"};
  std::string h = "\x93NUMPY";
  h += static_cast<char>(major);
  h += '\0';
  for (std::size_t j = 0; j < prefix - 8; ++j) h += static_cast<char>((total >> (8 * j)) & 0xffu);
  h += dict;
  h.append(pad, ' ');
  h += '\n';
  *out = std::move(h);
  return {};
}

/// numpy's own limit on the header (numpy.lib.format._MAX_HEADER_SIZE).
constexpr std::size_t npy_max_header = 10000;

/// Parses the header dict `h` (header bytes after the length field, which start at file
/// offset `base`) into dtype, byte order and shape.
inline status npy_parse_dict(const std::string& h, std::uint64_t base, const std::string& source, npy_header* out) {
  using text::error_at_byte;
  using text::quote;
  std::size_t i = 0;
  auto at = [&](std::size_t pos, const std::string& what) { return error_at_byte(source, base + pos, "header " + what); };
  auto skip_ws = [&] {
    while (i < h.size() && (h[i] == ' ' || h[i] == '\t' || h[i] == '\n' || h[i] == '\r')) ++i;
  };
  auto parse_string = [&](std::string* s) -> bool {
    if (i >= h.size() || (h[i] != '\'' && h[i] != '"')) return false;
    const char q = h[i++];
    const std::size_t start = i;
    while (i < h.size() && h[i] != q && h[i] != '\\' && h[i] != '\n') ++i;
    if (i >= h.size() || h[i] != q) return false;
    *s = h.substr(start, i - start);
    ++i;
    return true;
  };
  skip_ws();
  if (i >= h.size() || h[i] != '{') return at(i, "is not a Python dict: expected '{'");
  ++i;
  bool have_descr = false, have_order = false, have_shape = false;
  std::string descr;
  std::size_t descr_pos = 0;
  std::uint64_t dims[shape_t::max_rank] = {};
  int rank = 0;
  for (;;) {
    skip_ws();
    if (i < h.size() && h[i] == '}') break;
    const std::size_t key_pos = i;
    std::string key;
    if (!parse_string(&key)) return at(i, "dict: expected a quoted key or '}'");
    skip_ws();
    if (i >= h.size() || h[i] != ':') return at(i, "dict: expected ':' after key " + quote(key));
    ++i;
    skip_ws();
    const std::size_t value_pos = i;
    if (key == "descr") {
      if (have_descr) return at(key_pos, "dict: key 'descr' given twice");
      have_descr = true;
      if (i < h.size() && h[i] == '[')
        return at(value_pos, "descr is a structured dtype; qlib reads plain numeric arrays");
      descr_pos = value_pos;
      if (!parse_string(&descr)) return at(value_pos, "descr: expected a quoted dtype string");
      // Decoded below, once the whole dict is known to be well formed.
    } else if (key == "fortran_order") {
      if (have_order) return at(key_pos, "dict: key 'fortran_order' given twice");
      have_order = true;
      if (h.compare(i, 5, "False") == 0) {
        i += 5;
      } else if (h.compare(i, 4, "True") == 0) {
        return at(value_pos, "fortran_order is True: qlib reads C-order arrays only "
                             "(save np.ascontiguousarray(a) instead)");
      } else {
        return at(value_pos, "fortran_order: expected True or False");
      }
    } else if (key == "shape") {
      if (have_shape) return at(key_pos, "dict: key 'shape' given twice");
      have_shape = true;
      if (i >= h.size() || h[i] != '(') return at(i, "shape: expected a tuple '('");
      ++i;
      bool trailing_comma = false;
      for (;;) {
        skip_ws();
        if (i < h.size() && h[i] == ')') break;
        if (rank > 0 && !trailing_comma) return at(i, "shape: expected ',' or ')'");
        const std::size_t num_pos = i;
        if (i >= h.size() || h[i] < '0' || h[i] > '9') return at(i, "shape: expected a non-negative integer");
        if (h[i] == '0' && i + 1 < h.size() && h[i + 1] >= '0' && h[i + 1] <= '9')
          return at(i, "shape: integer with a leading zero");
        std::uint64_t v = 0;
        for (; i < h.size() && h[i] >= '0' && h[i] <= '9'; ++i) {
          const auto digit = static_cast<std::uint64_t>(h[i] - '0');
          if (v > (std::numeric_limits<std::uint64_t>::max() - digit) / 10)
            return at(num_pos, "shape: dimension does not fit in 64 bits");
          v = v * 10 + digit;
        }
        if (i < h.size() && (h[i] == 'L' || h[i] == 'l')) ++i;  // Python 2 long
        if (v > std::numeric_limits<std::size_t>::max()) return at(num_pos, "shape: dimension does not fit in size_t");
        if (rank == shape_t::max_rank)
          return at(num_pos, "shape has more than 8 dimensions (qlib::shape_t's limit)");
        dims[rank++] = v;
        skip_ws();
        trailing_comma = i < h.size() && h[i] == ',';
        if (trailing_comma) ++i;
      }
      if (rank == 1 && !trailing_comma) return at(i, "shape: '(n)' is not a tuple; expected '(n,)'");
      ++i;  // ')'
    } else {
      return at(key_pos, "dict: unexpected key " + quote(key) + " (expected 'descr', 'fortran_order', 'shape')");
    }
    skip_ws();
    if (i < h.size() && h[i] == ',') {
      ++i;
      continue;
    }
    skip_ws();
    if (i < h.size() && h[i] == '}') break;
    return at(i, "dict: expected ',' or '}'");
  }
  ++i;  // '}'
  while (i < h.size() && (h[i] == ' ' || h[i] == '\t' || h[i] == '\n' || h[i] == '\r')) ++i;
  if (i != h.size()) return at(i, "has text after the dict: " + quote(h.substr(i), 20));
  if (!have_descr || !have_order || !have_shape)
    return error_at_byte(source, base, std::string("header dict lacks key '") +
                                           (!have_descr ? "descr" : !have_order ? "fortran_order" : "shape") + "'");
  // dtype: byte order, kind, size.
  static const char* const supported = "<f2 <f4 <f8 |i1 |u1 <i2 <u2 <i4 <u4 <i8 <u8 (or '>' byte order)";
  if (descr.size() != 3) return at(descr_pos, "descr " + quote(descr) + " is not a supported dtype: " + supported);
  const char order = descr[0], kind = descr[1], size = descr[2];
  npy_dtype dt = npy_dtype::f4;
  bool found = false;
  for (int t = 0; t <= static_cast<int>(npy_dtype::u8); ++t) {
    npy_header probe;
    probe.dtype = static_cast<npy_dtype>(t);
    const std::string d = probe.descr();
    if (d[1] == kind && d[2] == size) {
      dt = probe.dtype;
      found = true;
    }
  }
  const bool one_byte = size == '1';
  const bool order_ok = order == '<' || order == '>' || order == '=' || order == '|';
  if (!found || !order_ok || (!one_byte && order == '|'))
    return at(descr_pos, "descr " + quote(descr) + " is not a supported dtype: " + supported);
  out->dtype = dt;
  out->big_endian = !one_byte && order == '>';
  if (order == '=') {  // native order
    const std::uint16_t probe = 1;
    unsigned char first;
    std::memcpy(&first, &probe, 1);
    out->big_endian = !one_byte && first == 0;
  }
  out->shape = shape_t::from_range(dims, dims + rank);
  // Overflow of the element count or the byte count. A zero dimension makes the array
  // empty whatever the other dimensions (numpy accepts such shapes; so does the writer).
  bool zero = false;
  for (int d = 0; d < rank; ++d) zero = zero || dims[d] == 0;
  std::uint64_t n = zero ? 0 : 1;
  for (int d = 0; d < rank && !zero; ++d) {
    if (n > std::numeric_limits<std::uint64_t>::max() / dims[d])
      return error_at_byte(source, base, "header shape " + out->shape.str() + " overflows the element count");
    n *= dims[d];
  }
  if (n > std::numeric_limits<std::size_t>::max() ||
      (n != 0 && npy_itemsize(dt) > std::numeric_limits<std::uint64_t>::max() / n))
    return error_at_byte(source, base, "header shape " + out->shape.str() + " overflows the byte count");
  return {};
}

}  // namespace detail

QLIB_NAMESPACE_END
