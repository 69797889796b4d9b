// Error capture shared by the tests: run a call that must fail with a qlib::error, check its
// code (and a part of its message), and hand the message back for further checks.
#pragma once

#include <catch2/catch.hpp>

#include <qlib/config.hpp>

#include <string>
#include <utility>

namespace qlib_test {

/// Runs f, requires a qlib::error with the expected code, returns its message.
template <class F>
std::string error_message(F&& f, qlib::errc expected) {
  try {
    f();
  } catch (const qlib::error& e) {
    INFO(e.what());
    CHECK(e.code() == expected);
    return e.what();
  }
  FAIL("expected a qlib::error");
  return {};
}

/// Runs f, requires a qlib::error with the expected code whose message contains `part`.
template <class F>
void expect_error(F&& f, qlib::errc expected, const std::string& part) {
  INFO("expected an error mentioning '" << part << "'");
  const std::string msg = error_message(std::forward<F>(f), expected);
  INFO(msg);
  CHECK(msg.find(part) != std::string::npos);
}

}  // namespace qlib_test
