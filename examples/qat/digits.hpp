// The digits data (examples/data/digits/README.md) and a small seeded random generator for
// the QAT demo. The generator is written out (splitmix64, Box-Muller) rather than taken from
// <random>, whose distributions differ between standard libraries: the demo prints the same
// numbers with libstdc++ and libc++.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "layers.hpp"

namespace qat {

/// Images (N, 1, 8, 8) with pixels / 16 in [0, 1], and their labels 0..9.
struct digits_set {
  tensor images;
  std::vector<int> labels;
  std::size_t size() const noexcept { return labels.size(); }
};

struct digits_split {
  digits_set train, test;
};

/// Reads digits.csv (64 pixels and a label per line) and split.csv (0 train, 1 test).
inline digits_split load_digits(const std::string& dir) {
  std::ifstream data(dir + "/digits.csv"), split(dir + "/split.csv");
  if (!data) throw std::runtime_error("cannot open " + dir + "/digits.csv");
  if (!split) throw std::runtime_error("cannot open " + dir + "/split.csv");
  std::vector<float> px[2];
  std::vector<int> lab[2];
  std::string line, flag;
  std::size_t line_no = 0;
  while (std::getline(data, line)) {
    ++line_no;
    if (!std::getline(split, flag)) throw std::runtime_error("split.csv is shorter than digits.csv");
    const int part = flag == "1" ? 1 : flag == "0" ? 0 : -1;
    if (part < 0) throw std::runtime_error("split.csv line " + std::to_string(line_no) + ": expected 0 or 1");
    std::stringstream ss(line);
    std::string cell;
    int values[65];
    int count = 0;
    while (std::getline(ss, cell, ',')) {
      if (count == 65) break;
      values[count++] = std::stoi(cell);
    }
    if (count != 65) throw std::runtime_error("digits.csv line " + std::to_string(line_no) + ": expected 65 values");
    for (int i = 0; i < 64; ++i) px[part].push_back(static_cast<float>(values[i]) / 16.0f);
    lab[part].push_back(values[64]);
  }
  digits_split out;
  digits_set* sets[2] = {&out.train, &out.test};
  for (int p = 0; p < 2; ++p) {
    sets[p]->images = tensor(qlib::shape_t{lab[p].size(), 1, 8, 8});
    sets[p]->images.data = std::move(px[p]);
    sets[p]->labels = std::move(lab[p]);
  }
  return out;
}

/// Images [first, first + count) of a set as a batch, and their labels.
inline void batch_of(const digits_set& s, const std::vector<std::size_t>& order, std::size_t first, std::size_t count,
                     tensor& x, std::vector<int>& y) {
  x = tensor(qlib::shape_t{count, 1, 8, 8});
  y.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t idx = order[first + i];
    std::copy_n(s.images.ptr() + idx * 64, 64, x.ptr() + i * 64);
    y[i] = s.labels[idx];
  }
}

/// splitmix64 (Steele, Lea, Flood 2014): a tiny generator with a fixed output everywhere.
class rng {
 public:
  explicit rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  /// Standard normal (Box-Muller; one value per call).
  double normal() {
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  /// Fisher-Yates shuffle.
  void shuffle(std::vector<std::size_t>& v) {
    for (std::size_t i = v.size(); i > 1; --i) {
      const std::size_t j = static_cast<std::size_t>(next() % i);
      std::swap(v[i - 1], v[j]);
    }
  }

 private:
  std::uint64_t state_;
};

}  // namespace qat
