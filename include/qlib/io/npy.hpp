// NumPy .npy files: a streaming reader (bounded memory for big files) and a writer whose
// output is byte-identical to numpy.save's.
//
// The format and its codecs are in io/npy_format.hpp.
//
// Reading: dtypes float16 (converted exactly), float32, float64 and the integers int8,
// uint8, int16, uint16, int32, uint32, int64, uint64, little- or big-endian, converted to
// the caller's float or double (integers above 2^24 / 2^53 round). C order only; rank <= 8
// (qlib::shape_t); headers longer than numpy's own 10000-byte limit are refused. Every
// malformed or truncated file is a parse_error "source: byte N: what", N being the byte
// offset of the problem; so are bytes after the data (numpy ignores them; qlib does not
// guess what they are). Lengths are checked against the file's size before anything is
// allocated; for a stream whose size is unknown, against the bytes actually read.
//
// Writing: version 1.0 by default (2.0 / 3.0 on request), the header laid out exactly as
// numpy >= 1.24 writes it (numpy/lib/format.py _write_array_header and _wrap_header: keys
// sorted, 21 - len(str(shape[0])) spare spaces so the first dimension can grow in place,
// numpy PR 20321; spaces and '\n' up to a 64-byte boundary, a full 64 when already
// aligned), so a file numpy wrote is reproduced byte for byte from its dtype, shape,
// version and values. (Files from older numpy, 16-byte aligned without spare spaces, read
// fine but are rewritten in the modern layout; '>' files are rewritten as '<'.)
#pragma once

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../core/tensor_view.hpp"
#include "../detail/text.hpp"
#include "npy_format.hpp"

QLIB_NAMESPACE_BEGIN

/// Streams a .npy file (or an in-memory copy of one): the header first, then the
/// elements in chunks converted to float or double, so memory stays bounded.
class npy_reader {
 public:
  npy_reader() = default;
  npy_reader(const npy_reader&) = delete;
  npy_reader& operator=(const npy_reader&) = delete;
  npy_reader(npy_reader&& o) noexcept { take(o); }
  npy_reader& operator=(npy_reader&& o) noexcept {
    if (this != &o) {
      close();
      take(o);
    }
    return *this;
  }
  ~npy_reader() { close(); }

  /// Opens a file and parses its header; errors name the path.
  static status try_open(const std::string& path, npy_reader* out) {
    npy_reader r;
    r.source_ = path;
    r.file_ = std::fopen(path.c_str(), "rb");
    if (!r.file_) return {errc::io_error, path + ": cannot open for reading: " + std::strerror(errno)};
    // The size, when the stream can tell it, bounds every length in the header.
    if (seek(r.file_, 0, SEEK_END) == 0) {
      const long long end = tell(r.file_);
      if (end >= 0) {
        r.size_ = static_cast<std::uint64_t>(end);
        r.size_known_ = true;
      }
    }
    if (seek(r.file_, 0, SEEK_SET) != 0) {
      r.size_known_ = false;
      std::clearerr(r.file_);
    }
    const status s = r.parse_header();
    if (!s.ok()) return s;
    *out = std::move(r);
    return {};
  }
  static npy_reader open(const std::string& path) {
    npy_reader r;
    detail::throw_if(try_open(path, &r));
    return r;
  }
  /// Reads from memory; `data` must outlive the reader. `source` names it in errors.
  static status try_open_buffer(const void* data, std::size_t size, const std::string& source, npy_reader* out) {
    npy_reader r;
    r.source_ = source;
    r.mem_ = static_cast<const unsigned char*>(data);
    r.size_ = size;
    r.size_known_ = true;
    const status s = r.parse_header();
    if (!s.ok()) return s;
    *out = std::move(r);
    return {};
  }
  static npy_reader open_buffer(const void* data, std::size_t size, const std::string& source) {
    npy_reader r;
    detail::throw_if(try_open_buffer(data, size, source, &r));
    return r;
  }

  const npy_header& header() const noexcept { return header_; }
  const std::string& source() const noexcept { return source_; }
  /// Elements not yet read.
  std::size_t remaining() const noexcept { return remaining_; }

  /// Reads up to max_count elements into out (float or double); *count = how many
  /// (0 once all were read). A file that ends early is a parse_error naming the offset.
  template <class T>
  status try_read(T* out, std::size_t max_count, std::size_t* count) {
    static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value, "npy_reader reads float or double");
    *count = 0;
    const std::size_t k = npy_itemsize(header_.dtype);
    std::size_t want = max_count < remaining_ ? max_count : remaining_;
    if (want > 0 && !out) return {errc::invalid_argument, source_ + ": npy_reader::read into a null buffer"};
    while (want > 0) {
      const std::size_t chunk = mem_ ? want : (want < buffer_elems(k) ? want : buffer_elems(k));
      const unsigned char* src = nullptr;
      const status s = fetch(chunk * k, &src);
      if (!s.ok()) return s;
      detail::npy_decode(src, header_.dtype, header_.big_endian, chunk, out);
      out += chunk;
      *count += chunk;
      remaining_ -= chunk;
      want -= chunk;
    }
    return {};
  }
  template <class T>
  std::size_t read(T* out, std::size_t max_count) {
    std::size_t n = 0;
    detail::throw_if(try_read(out, max_count, &n));
    return n;
  }
  /// Appends every remaining element to *out.
  template <class T>
  status try_read_all(std::vector<T>* out) {
    const std::size_t old = out->size();
    // With a known size the header's count is already checked against it; else grow in
    // steps so that a lying header cannot make us allocate more than the stream holds.
    const std::size_t step = size_known_ ? remaining_ : std::size_t{1} << 20;
    while (remaining_ > 0) {
      const std::size_t n = remaining_ < step ? remaining_ : step;
      const std::size_t at = out->size();
      out->resize(at + n);
      std::size_t got = 0;
      const status s = try_read(out->data() + at, n, &got);
      if (!s.ok()) {
        out->resize(old);
        return s;
      }
    }
    return {};
  }

 private:
  static int seek(std::FILE* f, long long off, int whence) {
#if defined(_WIN32)
    return _fseeki64(f, off, whence);
#else
    return fseeko(f, static_cast<off_t>(off), whence);
#endif
  }
  static long long tell(std::FILE* f) {
#if defined(_WIN32)
    return _ftelli64(f);
#else
    return static_cast<long long>(ftello(f));
#endif
  }
  static std::size_t buffer_elems(std::size_t itemsize) noexcept { return (std::size_t{1} << 16) / itemsize; }

  void take(npy_reader& o) noexcept {
    header_ = o.header_;
    source_ = std::move(o.source_);
    file_ = o.file_;
    mem_ = o.mem_;
    size_ = o.size_;
    size_known_ = o.size_known_;
    pos_ = o.pos_;
    remaining_ = o.remaining_;
    buf_ = std::move(o.buf_);
    o.file_ = nullptr;
    o.mem_ = nullptr;
    o.remaining_ = 0;
  }
  void close() noexcept {
    if (file_) std::fclose(file_);
    file_ = nullptr;
  }

  /// Makes the next n bytes available at *p (file: copied into buf_; memory: in place).
  status fetch(std::size_t n, const unsigned char** p) {
    if (mem_) {
      if (n > size_ - pos_) return truncated(n);
      *p = mem_ + pos_;
      pos_ += n;
      return {};
    }
    if (buf_.size() < n) buf_.resize(n);
    const std::size_t got = n ? std::fread(buf_.data(), 1, n, file_) : 0;
    if (got != n) {
      if (std::ferror(file_)) return {errc::io_error, source_ + ": read error at byte " + std::to_string(pos_ + got)};
      return truncated(n, got);
    }
    *p = buf_.data();
    pos_ += n;
    return {};
  }
  status truncated(std::size_t n, std::size_t got = 0) const {
    const std::uint64_t left = size_known_ && size_ >= pos_ ? size_ - pos_ : got;
    return detail::text::error_at_byte(source_, pos_ + got,
                                       "file is truncated: needs " + std::to_string(n) + " more bytes, " +
                                           std::to_string(left) + " left");
  }

  status parse_header() {
    using detail::text::error_at_byte;
    const unsigned char* p = nullptr;
    if (size_known_ && size_ < 10)
      return error_at_byte(source_, 0, "not a .npy file: " + std::to_string(size_) + " bytes, shorter than the magic and version");
    status s = fetch(8, &p);
    if (s.code() == errc::io_error) return s;
    if (!s.ok()) return error_at_byte(source_, 0, "not a .npy file: shorter than the magic and version");
    if (std::memcmp(p, "\x93NUMPY", 6) != 0) return error_at_byte(source_, 0, "not a .npy file (bad magic)");
    header_.major = p[6];
    header_.minor = p[7];
    if (header_.major < 1 || header_.major > 3 || header_.minor != 0)
      return error_at_byte(source_, 6, "unsupported .npy format version " + std::to_string(header_.major) + "." +
                                           std::to_string(header_.minor) + " (qlib reads 1.0, 2.0 and 3.0)");
    const std::size_t len_bytes = header_.major == 1 ? 2 : 4;
    s = fetch(len_bytes, &p);
    if (s.code() == errc::io_error) return s;
    if (!s.ok()) return error_at_byte(source_, 8, "file is truncated inside the header length");
    std::uint64_t hlen = 0;
    for (std::size_t j = 0; j < len_bytes; ++j) hlen |= static_cast<std::uint64_t>(p[j]) << (8 * j);
    const std::uint64_t base = 8 + len_bytes;
    if (hlen > detail::npy_max_header)
      return error_at_byte(source_, 8, "header length " + std::to_string(hlen) + " exceeds numpy's limit of " +
                                           std::to_string(detail::npy_max_header) + " bytes");
    if (size_known_ && hlen > size_ - base)
      return error_at_byte(source_, 8, "header length " + std::to_string(hlen) + " runs past the end of the file (" +
                                           std::to_string(size_) + " bytes)");
    s = fetch(static_cast<std::size_t>(hlen), &p);
    if (!s.ok()) return s;
    const std::string dict(reinterpret_cast<const char*>(p), static_cast<std::size_t>(hlen));
    s = detail::npy_parse_dict(dict, base, source_, &header_);
    if (!s.ok()) return s;
    header_.data_offset = base + hlen;
    remaining_ = header_.numel();
    if (size_known_) {
      const std::uint64_t have = size_ - header_.data_offset, need = header_.data_bytes();
      if (have < need)
        return error_at_byte(source_, header_.data_offset,
                             "data is truncated: shape " + header_.shape.str() + " of " + header_.descr() + " needs " +
                                 std::to_string(need) + " bytes, the file holds " + std::to_string(have));
      if (have > need)
        return error_at_byte(source_, header_.data_offset + need,
                             std::to_string(have - need) + " trailing bytes after the data of shape " +
                                 header_.shape.str());
    }
    return {};
  }

  npy_header header_;
  std::string source_;
  std::FILE* file_ = nullptr;
  const unsigned char* mem_ = nullptr;
  std::uint64_t size_ = 0;
  bool size_known_ = false;
  std::uint64_t pos_ = 0;
  std::size_t remaining_ = 0;
  std::vector<unsigned char> buf_;
};

/// A whole array: its header and its elements (C order) as T.
template <class T>
struct npy_array {
  npy_header header;
  std::vector<T> data;
  tensor_view<const T> view() const noexcept { return tensor_view<const T>(data.data(), header.shape); }
};

namespace detail {
/// The rest of an opened reader as an array; *out is written only on success.
template <class T>
status npy_take_all(npy_reader& r, npy_array<T>* out) {
  npy_array<T> a;
  a.header = r.header();
  const status s = r.try_read_all(&a.data);
  if (!s.ok()) return s;
  *out = std::move(a);
  return {};
}
}  // namespace detail

/// Parses a whole .npy file held in memory.
template <class T = float>
status try_parse_npy(const std::string& bytes, const std::string& source, npy_array<T>* out) {
  npy_reader r;
  const status s = npy_reader::try_open_buffer(bytes.data(), bytes.size(), source, &r);
  return s.ok() ? detail::npy_take_all(r, out) : s;
}
template <class T = float>
npy_array<T> parse_npy(const std::string& bytes, const std::string& source) {
  npy_array<T> a;
  detail::throw_if(try_parse_npy(bytes, source, &a));
  return a;
}

/// Reads a whole .npy file (for big files stream with npy_reader instead).
template <class T = float>
status try_read_npy_file(const std::string& path, npy_array<T>* out) {
  npy_reader r;
  const status s = npy_reader::try_open(path, &r);
  return s.ok() ? detail::npy_take_all(r, out) : s;
}
template <class T = float>
npy_array<T> read_npy_file(const std::string& path) {
  npy_array<T> a;
  detail::throw_if(try_read_npy_file(path, &a));
  return a;
}

namespace detail {
/// Writes header + data through `sink(const char*, size_t) -> bool`, in chunks.
template <class T, class Sink>
status npy_write(const T* data, const shape_t& shape, npy_dtype dtype, int major, const std::string& who, Sink&& sink) {
  static_assert(std::is_arithmetic<T>::value && !std::is_same<T, bool>::value, "npy elements are numbers");
  npy_header h;
  h.dtype = dtype;
  std::string head;
  status s = npy_build_header(h.descr(), shape, major, &head);
  if (!s.ok()) return s;
  // The byte count must not overflow (a shape_t's numel() wraps silently). A shape with a
  // zero dimension holds nothing, whatever its other dimensions (as the reader and numpy
  // accept it).
  bool zero = false;
  for (int d = 0; d < shape.rank(); ++d) zero = zero || shape[d] == 0;
  std::uint64_t n = zero ? 0 : 1;
  for (int d = 0; d < shape.rank() && !zero; ++d) {
    if (n > std::numeric_limits<std::uint64_t>::max() / npy_itemsize(dtype) / shape[d])
      return {errc::invalid_argument, who + ": shape " + shape.str() + " overflows the byte count"};
    n *= shape[d];
  }
  if (n > 0 && !data) return {errc::invalid_argument, who + ": null data for shape " + shape.str()};
  if (!sink(head.data(), head.size())) return {errc::io_error, who + ": write error"};
  const std::size_t k = npy_itemsize(dtype);
  std::vector<unsigned char> buf;
  const std::size_t chunk = (std::size_t{1} << 16) / k;
  for (std::size_t i = 0; i < n; i += chunk) {
    const std::size_t m = n - i < chunk ? static_cast<std::size_t>(n - i) : chunk;
    buf.resize(m * k);
    for (std::size_t j = 0; j < m; ++j)
      if (!npy_encode(data[i + j], dtype, buf.data() + j * k))
        return {errc::invalid_argument, who + ": element " + std::to_string(i + j) + " (" +
                                            std::to_string(static_cast<double>(data[i + j])) +
                                            ") is not representable as " + npy_dtype_name(dtype)};
    if (!sink(reinterpret_cast<const char*>(buf.data()), buf.size())) return {errc::io_error, who + ": write error"};
  }
  return {};
}
}  // namespace detail

/// Writes a C-order array as .npy bytes with element type `dtype` (floats are rounded to
/// nearest even when narrowed; integer dtypes need integral values in range, else
/// invalid_argument naming the element). major_version: 1 (numpy's default), 2 or 3.
template <class T>
status try_write_npy(const T* data, const shape_t& shape, npy_dtype dtype, std::string* out, int major_version = 1) {
  std::string bytes;
  const status s = detail::npy_write(data, shape, dtype, major_version, "npy writer", [&](const char* p, std::size_t n) {
    bytes.append(p, n);
    return true;
  });
  if (!s.ok()) return s;
  *out = std::move(bytes);
  return {};
}
template <class T>
std::string write_npy(const T* data, const shape_t& shape, npy_dtype dtype = npy_dtype_of<T>(), int major_version = 1) {
  std::string s;
  detail::throw_if(try_write_npy(data, shape, dtype, &s, major_version));
  return s;
}
template <class T>
std::string write_npy(tensor_view<const T> x, npy_dtype dtype = npy_dtype_of<T>(), int major_version = 1) {
  return write_npy(x.data(), x.shape(), dtype, major_version);
}

/// Writes a .npy file, streaming the data in chunks.
template <class T>
status try_write_npy_file(const std::string& path, const T* data, const shape_t& shape,
                          npy_dtype dtype = npy_dtype_of<T>(), int major_version = 1) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return {errc::io_error, path + ": cannot open for writing: " + std::strerror(errno)};
  const status s = detail::npy_write(data, shape, dtype, major_version, path,
                                     [&](const char* p, std::size_t n) { return std::fwrite(p, 1, n, f) == n; });
  const bool closed = std::fclose(f) == 0;
  if (!s.ok()) {
    std::remove(path.c_str());
    return s;
  }
  if (!closed) return {errc::io_error, path + ": write error"};
  return {};
}
template <class T>
void write_npy_file(const std::string& path, const T* data, const shape_t& shape, npy_dtype dtype = npy_dtype_of<T>(),
                    int major_version = 1) {
  detail::throw_if(try_write_npy_file(path, data, shape, dtype, major_version));
}

QLIB_NAMESPACE_END
