// qlib: version, the versioned inline namespace, portability macros and the error policy.
//
// Error policy. Every fallible public function reports a bad argument, bad data or a
// malformed file through qlib::detail::fail(), which
//   - throws qlib::error (code + message naming the culprit) when exceptions are enabled;
//   - otherwise calls the handler installed with qlib::set_error_handler() and then
//     std::abort()s if the handler returns (the default handler prints the message to
//     stderr first). Engines built with -fno-exceptions that must survive bad input
//     validate first with the status-returning check_* functions (core/check.hpp) and
//     parse files with the try_* readers, which return qlib::status instead of failing.
// Observers validate a whole batch before they touch their state, so a rejected batch
// leaves the observer exactly as it was (in both modes).
//
// The inline namespace's name carries the version and the exception setting, so
// translation units built with different settings fail to link instead of mixing silently
// (the idea of nlohmann/json's ABI tags).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#define QLIB_VERSION_MAJOR 0
#define QLIB_VERSION_MINOR 1
#define QLIB_VERSION_PATCH 0
#define QLIB_VERSION (QLIB_VERSION_MAJOR * 10000 + QLIB_VERSION_MINOR * 100 + QLIB_VERSION_PATCH)

// QLIB_NO_EXCEPTIONS: if the user defined it, obey; else detect.
#ifndef QLIB_NO_EXCEPTIONS
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#define QLIB_NO_EXCEPTIONS 0
#else
#define QLIB_NO_EXCEPTIONS 1
#endif
#endif

#if QLIB_NO_EXCEPTIONS
#define QLIB_ABI_TAG v0_1_noexc
#else
#define QLIB_ABI_TAG v0_1
#endif

#define QLIB_NAMESPACE_BEGIN \
  namespace qlib {           \
  inline namespace QLIB_ABI_TAG {
#define QLIB_NAMESPACE_END \
  }                        \
  }

// Same code for host and device under nvcc (Eigen's EIGEN_DEVICE_FUNC idea).
#ifndef QLIB_HOST_DEVICE
#if defined(__CUDACC__)
#define QLIB_HOST_DEVICE __host__ __device__
#else
#define QLIB_HOST_DEVICE
#endif
#endif

#if !QLIB_NO_EXCEPTIONS
#include <stdexcept>
#endif

QLIB_NAMESPACE_BEGIN

/// What kind of failure: lets callers branch without parsing messages.
enum class errc : std::uint8_t {
  ok = 0,
  invalid_argument,  ///< an option or argument out of its domain (bits, bins, axis, shape)
  non_finite,        ///< NaN or Inf in data or a range
  empty_input,       ///< an empty batch, or compute() before any data
  parse_error,       ///< a malformed file or serialized state
  io_error,          ///< a file that cannot be opened, read or written
  internal,          ///< a broken invariant: a bug in qlib
};

inline const char* errc_name(errc c) noexcept {
  switch (c) {
    case errc::ok: return "ok";
    case errc::invalid_argument: return "invalid argument";
    case errc::non_finite: return "non-finite value";
    case errc::empty_input: return "empty input";
    case errc::parse_error: return "parse error";
    case errc::io_error: return "I/O error";
    case errc::internal: return "internal error";
  }
  return "unknown";
}

/// The outcome of a check or a try_* call: a code and a message that names the culprit.
class status {
 public:
  status() = default;
  status(errc code, std::string message) : code_(code), message_(std::move(message)) {}
  bool ok() const noexcept { return code_ == errc::ok; }
  explicit operator bool() const noexcept { return ok(); }
  errc code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }

 private:
  errc code_ = errc::ok;
  std::string message_;
};

#if !QLIB_NO_EXCEPTIONS
/// Thrown by every fallible qlib function when exceptions are enabled.
class error : public std::runtime_error {
 public:
  error(errc code, const std::string& message) : std::runtime_error(message), code_(code) {}
  errc code() const noexcept { return code_; }

 private:
  errc code_;
};
#endif

/// Called on failure when exceptions are disabled; std::abort() follows if it returns.
using error_handler = void (*)(errc code, const char* message);

namespace detail {
inline void default_error_handler(errc code, const char* message) {
  std::fprintf(stderr, "qlib: %s: %s\n", errc_name(code), message);
}
inline error_handler& current_error_handler() noexcept {
  static error_handler handler = &default_error_handler;
  return handler;
}
}  // namespace detail

/// Installs the handler used without exceptions; returns the previous one.
inline error_handler set_error_handler(error_handler handler) noexcept {
  error_handler previous = detail::current_error_handler();
  detail::current_error_handler() = handler ? handler : &detail::default_error_handler;
  return previous;
}

namespace detail {
[[noreturn]] inline void fail(errc code, const std::string& message) {
#if QLIB_NO_EXCEPTIONS
  current_error_handler()(code, message.c_str());
  std::abort();
#else
  throw error(code, message);
#endif
}
/// Fails with the status's code and message (which must not be ok).
[[noreturn]] inline void fail(const status& s) { fail(s.code(), s.message()); }
/// Fails if the status is not ok.
inline void throw_if(const status& s) {
  if (!s.ok()) fail(s);
}
}  // namespace detail

QLIB_NAMESPACE_END
