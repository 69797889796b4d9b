// Versioned byte serialization shared by every observer's save() / load().
//
// Layout (all integers little-endian, floats as their IEEE-754 bit patterns):
//   magic "QLIBSTAT" (8 bytes) | format version u16 | kind tag (u16 length + bytes)
//   | kind version u16 | fields written by the observer, in order.
// Arrays are a u64 element count followed by the elements; the reader checks every count
// against the bytes left before it allocates, so a truncated or foreign blob is a clear
// parse_error naming the observer kind and the byte offset, never an out-of-bounds read.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "../config.hpp"
#include "../core/qparams.hpp"

QLIB_NAMESPACE_BEGIN

constexpr std::uint16_t state_format_version = 1;

/// Appends fields to a byte buffer.
class state_writer {
 public:
  state_writer(const std::string& kind, std::uint16_t kind_version) {
    // push_back, not insert: g++ 12 reports a false stringop-overflow on vector::insert.
    bytes_.reserve(64);
    for (const char* m = magic(); *m; ++m) bytes_.push_back(static_cast<std::uint8_t>(*m));
    put(state_format_version);
    put_string(kind);
    put(kind_version);
  }

  /// Integers, floats, doubles and bools (as u8), little-endian.
  template <class T>
  void put(T v) {
    static_assert(std::is_arithmetic<T>::value, "state fields are arithmetic");
    using U = std::conditional_t<sizeof(T) == 1, std::uint8_t,
                                 std::conditional_t<sizeof(T) == 2, std::uint16_t,
                                                    std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>>;
    static_assert(sizeof(U) == sizeof(T), "unsupported field size");
    U u;
    std::memcpy(&u, &v, sizeof(T));
    for (std::size_t i = 0; i < sizeof(T); ++i) bytes_.push_back(static_cast<std::uint8_t>(u >> (8 * i)));
  }
  void put_string(const std::string& s) {
    put(static_cast<std::uint16_t>(s.size()));
    for (char c : s) bytes_.push_back(static_cast<std::uint8_t>(c));
  }
  template <class T>
  void put_array(const std::vector<T>& v) {
    put(static_cast<std::uint64_t>(v.size()));
    for (const T& x : v) put(x);
  }
  std::vector<std::uint8_t> take() { return std::move(bytes_); }

  static const char* magic() noexcept { return "QLIBSTAT"; }

 private:
  std::vector<std::uint8_t> bytes_;
};

/// Reads fields back, checking sizes; every failure is errc::parse_error.
class state_reader {
 public:
  /// Checks the header: magic, format version, kind and kind version (<= max_kind_version).
  state_reader(const std::uint8_t* data, std::size_t size, const std::string& kind, std::uint16_t max_kind_version)
      : p_(data), n_(size), kind_(kind) {
    if (n_ < 8 || std::memcmp(p_, state_writer::magic(), 8) != 0)
      fail_at("not a qlib observer state (bad magic; " + std::to_string(n_) + " bytes)");
    pos_ = 8;
    const auto fmt = get<std::uint16_t>();
    if (fmt != state_format_version)
      fail_at("state format version " + std::to_string(fmt) + " is not supported (this qlib reads " +
              std::to_string(state_format_version) + ")");
    const std::string found = get_string();
    if (found != kind) fail_at("state is of a '" + found + "' observer, not '" + kind + "'");
    version_ = get<std::uint16_t>();
    if (version_ == 0 || version_ > max_kind_version)
      fail_at("state version " + std::to_string(version_) + " is newer than this qlib reads (" +
              std::to_string(max_kind_version) + ")");
  }
  state_reader(const std::vector<std::uint8_t>& bytes, const std::string& kind, std::uint16_t max_kind_version)
      : state_reader(bytes.data(), bytes.size(), kind, max_kind_version) {}

  std::uint16_t kind_version() const noexcept { return version_; }

  template <class T>
  T get() {
    static_assert(std::is_arithmetic<T>::value, "state fields are arithmetic");
    need(sizeof(T));
    std::uint64_t u = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) u |= static_cast<std::uint64_t>(p_[pos_ + i]) << (8 * i);
    pos_ += sizeof(T);
    T v;
    if (sizeof(T) == 1) {
      const std::uint8_t b = static_cast<std::uint8_t>(u);
      std::memcpy(&v, &b, 1);
    } else if (sizeof(T) == 2) {
      const std::uint16_t b = static_cast<std::uint16_t>(u);
      std::memcpy(&v, &b, 2);
    } else if (sizeof(T) == 4) {
      const std::uint32_t b = static_cast<std::uint32_t>(u);
      std::memcpy(&v, &b, 4);
    } else {
      std::memcpy(&v, &u, 8);
    }
    return v;
  }
  bool get_bool() {
    const auto b = get<std::uint8_t>();
    if (b > 1) fail_at("a boolean field holds " + std::to_string(b));
    return b == 1;
  }
  std::string get_string() {
    const auto len = get<std::uint16_t>();
    need(len);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len;
    return s;
  }
  /// An array of at most max_count elements (the observer's own bound, e.g. its bins).
  template <class T>
  std::vector<T> get_array(std::uint64_t max_count = std::numeric_limits<std::uint64_t>::max()) {
    const auto count = get<std::uint64_t>();
    if (count > max_count)
      fail_at("array of " + std::to_string(count) + " elements exceeds its bound " + std::to_string(max_count));
    if (count > (n_ - pos_) / sizeof(T))
      fail_at("array of " + std::to_string(count) + " elements runs past the end of the state");
    std::vector<T> v(static_cast<std::size_t>(count));
    for (auto& x : v) x = get<T>();
    return v;
  }
  /// Fails unless every byte was consumed.
  void finish() {
    if (pos_ != n_) fail_at(std::to_string(n_ - pos_) + " trailing bytes after the state");
  }
  /// A parse_error naming the kind and the offset.
  [[noreturn]] void fail_at(const std::string& what) const {
    detail::fail(errc::parse_error, kind_ + " observer state, byte " + std::to_string(pos_) + ": " + what);
  }

 private:
  void need(std::size_t k) {
    if (k > n_ - pos_)
      fail_at("truncated: needs " + std::to_string(k) + " more bytes, " + std::to_string(n_ - pos_) + " left");
  }
  const std::uint8_t* p_;
  std::size_t n_;
  std::size_t pos_ = 0;
  std::string kind_;
  std::uint16_t version_ = 0;
};

/// Writes a qspec (shared by every observer's save()).
inline void put_qspec(state_writer& w, const qspec& s) {
  w.put(static_cast<std::int32_t>(s.bits));
  w.put(static_cast<std::uint8_t>(s.scheme));
  w.put(static_cast<std::uint8_t>(s.is_signed));
  w.put(static_cast<std::uint8_t>(s.narrow_range));
  w.put(static_cast<std::uint8_t>(s.convention));
}

/// Reads and validates a qspec written by put_qspec.
inline qspec get_qspec(state_reader& r) {
  qspec s;
  s.bits = r.get<std::int32_t>();
  const auto scheme = r.get<std::uint8_t>();
  s.is_signed = r.get_bool();
  s.narrow_range = r.get_bool();
  const auto conv = r.get<std::uint8_t>();
  if (scheme > 1) r.fail_at("unknown scheme " + std::to_string(scheme));
  if (conv > 2) r.fail_at("unknown convention " + std::to_string(conv));
  s.scheme = static_cast<qscheme>(scheme);
  s.convention = static_cast<qconvention>(conv);
  const status st = s.validate();
  if (!st.ok()) r.fail_at(st.message());
  return s;
}

QLIB_NAMESPACE_END
