// Shared by the libFuzzer targets: a property that must hold traps, so the fuzzer reports
// it as a crash with the input that broke it. Parsers are called through their try_
// forms; the throwing forms may throw qlib::error (expected) and nothing else.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#define QLIB_FUZZ_CHECK(cond) \
  do {                        \
    if (!(cond)) __builtin_trap(); \
  } while (0)

inline std::string fuzz_input(const std::uint8_t* data, std::size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}
