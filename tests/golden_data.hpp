// The torchquant predecessor's golden vectors (tests/data/golden/: golden.json and the .npy
// batches it names, written by make_golden.py from the verified Python package), loaded
// once here for every test that compares with them. The data is part of the repository:
// a missing or malformed file fails the test, it never skips it.
//
// golden.json, as used here: "inputs" is an array of {name, batches: [file names relative
// to tests/data/golden/], results: {config name: {lo, hi, scale, zero_point, detail}}};
// "configs" maps a config name to {calibrator, spec, options}; "hand_cases" holds
// hand-written rows (make_golden.py documents every field).
#pragma once

#include <catch2/catch.hpp>

#include <qlib/io/json.hpp>
#include <qlib/io/npy.hpp>

#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace qlib_test {

/// tests/data/golden/ of the source tree the tests were configured from, with a trailing
/// '/' (QLIB_SOURCE_DIR_FOR_TESTS is set for every test by tests/CMakeLists.txt).
inline std::string golden_dir() { return std::string(QLIB_SOURCE_DIR_FOR_TESTS) + "/tests/data/golden/"; }

/// golden.json, parsed.
inline qlib::json load_golden() {
  const std::string path = golden_dir() + "golden.json";
  std::ifstream f(path, std::ios::binary);
  INFO("golden data (part of the repository): " << path);
  REQUIRE(f.good());
  std::ostringstream text;
  text << f.rdbuf();
  return qlib::parse_json(text.str(), path);
}

/// obj[key]; a missing key fails the test, naming the key.
inline const qlib::json& at(const qlib::json& obj, const std::string& key) {
  const qlib::json* v = obj.find(key);
  if (!v) FAIL("golden.json: missing key " << key);
  return *v;
}

/// One entry of golden.json's "inputs".
struct golden_input {
  std::string name;
  std::vector<std::vector<float>> batches;  ///< the .npy batches, in the file's order
  const qlib::json* results = nullptr;      ///< {config name: expected result}, inside the parsed golden.json
};

/// Every input of golden.json with its batches read; the results point into g, which must
/// outlive them.
inline std::vector<golden_input> load_inputs(const qlib::json& g) {
  std::vector<golden_input> out;
  for (const auto& in : at(g, "inputs").elements()) {
    golden_input gi;
    gi.name = at(in, "name").get_string();
    for (const auto& f : at(in, "batches").elements())
      gi.batches.push_back(qlib::read_npy_file<float>(golden_dir() + f.get_string()).data);
    gi.results = &at(in, "results");
    out.push_back(std::move(gi));
  }
  return out;
}

}  // namespace qlib_test
