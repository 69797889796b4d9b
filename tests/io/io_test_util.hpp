// Helpers of the io tests: temporary paths, whole-file bytes, the fixture folder.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>

namespace qlib_test {

/// A path in the system's temporary folder, unique per process.
inline std::string temp_path(const std::string& name) {
  static const std::string prefix = [] {
    const auto dir = std::filesystem::temp_directory_path() / ("qlib_io_" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(dir);
    return dir.string();
  }();
  return prefix + "/" + name;
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// tests/data/<sub>: from $QLIB_SOURCE_DIR (set by ctest), else next to this file.
inline std::string data_dir(const std::string& sub) {
  if (const char* root = std::getenv("QLIB_SOURCE_DIR")) return std::string(root) + "/tests/data/" + sub;
  const std::filesystem::path here(__FILE__);
  return (here.parent_path().parent_path() / "data" / sub).string();
}

}  // namespace qlib_test
