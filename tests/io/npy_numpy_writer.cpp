// Writes .npy files for npy_numpy_check.py, which loads them with numpy and compares
// them byte for byte with numpy's own output for the same arrays. Usage: writer <folder>.
// Values: v(i) = (37 i mod 101) - 50 (unsigned types: 37 i mod 101), divided by 8 for
// float types (exact in float16).
#include <qlib/io/npy.hpp>

#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <folder>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const struct {
    qlib::npy_dtype t;
    const char* name;
    bool is_unsigned, is_float;
  } types[] = {
      {qlib::npy_dtype::f2, "f2", false, true}, {qlib::npy_dtype::f4, "f4", false, true},
      {qlib::npy_dtype::f8, "f8", false, true}, {qlib::npy_dtype::i1, "i1", false, false},
      {qlib::npy_dtype::u1, "u1", true, false}, {qlib::npy_dtype::i2, "i2", false, false},
      {qlib::npy_dtype::u2, "u2", true, false}, {qlib::npy_dtype::i4, "i4", false, false},
      {qlib::npy_dtype::u4, "u4", true, false}, {qlib::npy_dtype::i8, "i8", false, false},
      {qlib::npy_dtype::u8, "u8", true, false},
  };
  const struct {
    qlib::shape_t shape;
    const char* name;
  } shapes[] = {
      {qlib::shape_t{}, "scalar"}, {qlib::shape_t{0}, "empty"}, {qlib::shape_t{5}, "vec"},
      {qlib::shape_t{2, 3, 4}, "cube"}, {qlib::shape_t{1, 2, 1, 3, 1, 2, 1, 2}, "rank8"},
      {qlib::shape_t{70001}, "long"},
  };
  for (const auto& t : types) {
    for (const auto& s : shapes) {
      std::vector<double> v(s.shape.numel());
      for (std::size_t i = 0; i < v.size(); ++i) {
        const double k = static_cast<double>((37 * i) % 101);
        v[i] = t.is_unsigned ? k : k - 50.0;
        if (t.is_float) v[i] /= 8.0;
      }
      for (int version = 1; version <= 3; ++version) {
        if (version > 1 && std::string(s.name) != "cube") continue;
        const std::string path = dir + "/" + t.name + "_" + s.name + "_v" + std::to_string(version) + ".npy";
        qlib::write_npy_file(path, v.data(), s.shape, t.t, version);
      }
    }
  }
  return 0;
}
