// A minimal stand-in for the part of Catch2 the CUDA tests use (TEST_CASE, CHECK, REQUIRE,
// INFO), so scripts/gpu_check.sh can build them with nvcc alone on a machine without
// Catch2. Under CMake the same test files use Catch2 itself (tests/cuda/cuda_test.hpp).
// Semantics kept from Catch2: CHECK records a failure and goes on, REQUIRE ends the test
// case, INFO messages are scoped to their block and printed with a failure.
#pragma once

#include <cstdio>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

namespace mini_check {

struct test_case {
  const char* name;
  void (*fn)();
};

inline std::vector<test_case>& registry() {
  static std::vector<test_case> r;
  return r;
}

struct registrar {
  registrar(void (*fn)(), const char* name, const char* /*tags*/ = "") { registry().push_back({name, fn}); }
};

struct require_failed {};

struct state {
  int failed_checks = 0;
  std::vector<std::string> info;
};
inline state& current() {
  static state s;
  return s;
}

struct scoped_info {
  explicit scoped_info(std::string m) { current().info.push_back(std::move(m)); }
  ~scoped_info() { current().info.pop_back(); }
  scoped_info(const scoped_info&) = delete;
  scoped_info& operator=(const scoped_info&) = delete;
};

inline void fail(const char* file, int line, const char* expr, bool fatal) {
  ++current().failed_checks;
  std::printf("%s:%d: FAILED: %s( %s )\n", file, line, fatal ? "REQUIRE" : "CHECK", expr);
  for (const std::string& m : current().info) std::printf("  with: %s\n", m.c_str());
  if (fatal) throw require_failed{};
}

/// Runs every registered test case; 0 when all passed.
inline int run_all() {
  int passed = 0, failed = 0;
  for (const test_case& t : registry()) {
    current().failed_checks = 0;
    current().info.clear();
    try {
      t.fn();
    } catch (const require_failed&) {
    } catch (const std::exception& e) {
      std::printf("test case '%s' threw: %s\n", t.name, e.what());
      ++current().failed_checks;
    }
    if (current().failed_checks == 0) {
      ++passed;
    } else {
      ++failed;
      std::printf("FAILED test case: %s\n", t.name);
    }
  }
  std::printf("%s: %d test case(s), %d passed, %d failed\n", failed ? "FAILED" : "All tests passed", passed + failed,
              passed, failed);
  return failed ? 1 : 0;
}

}  // namespace mini_check

#define MINI_CHECK_CAT2(a, b) a##b
#define MINI_CHECK_CAT(a, b) MINI_CHECK_CAT2(a, b)
#define MINI_CHECK_TEST(fn, ...)                                                        \
  static void fn();                                                                     \
  static const ::mini_check::registrar MINI_CHECK_CAT(fn, _registrar)(fn, __VA_ARGS__); \
  static void fn()
#define TEST_CASE(...) MINI_CHECK_TEST(MINI_CHECK_CAT(mini_check_test_, __COUNTER__), __VA_ARGS__)
#define CHECK(...)                                                                   \
  do {                                                                               \
    if (!(__VA_ARGS__)) ::mini_check::fail(__FILE__, __LINE__, #__VA_ARGS__, false); \
  } while (0)
#define REQUIRE(...)                                                                \
  do {                                                                              \
    if (!(__VA_ARGS__)) ::mini_check::fail(__FILE__, __LINE__, #__VA_ARGS__, true); \
  } while (0)
#define INFO(msg)                                                               \
  ::mini_check::scoped_info MINI_CHECK_CAT(mini_check_info_, __COUNTER__)([&] { \
    std::ostringstream mini_check_os_;                                          \
    mini_check_os_ << msg;                                                      \
    return mini_check_os_.str();                                                \
  }())
