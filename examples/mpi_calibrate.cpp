// Calibration on many processes: each rank observes its share of the batches, then
// qlib::mpi::allreduce merges the observers' states so every rank holds the same result.
//
//   mpirun -np 2 ./mpi_calibrate [--check] DATA_DIR
//
// DATA_DIR holds <tensor>.<batch>.npy files (examples/data/activations/); rank r takes the
// batches b with b % size == r. With --check, every rank also observes all batches itself
// and compares: exact methods (minmax, arq) must give the same bits as one process; the
// histogram methods, whose ranges grow differently on each rank, must stay within the bound
// stated in qlib/mpi.hpp. Exit 0 when every check holds, 1 otherwise.
#include <qlib/calibrator.hpp>
#include <qlib/io/npy.hpp>
#include <qlib/mpi.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <map>
#include <string>
#include <vector>

namespace {

// tensor name -> its batch files, in batch order.
std::map<std::string, std::vector<std::string>> list_batches(const std::string& dir) {
  std::map<std::string, std::map<int, std::string>> found;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string f = e->d_name;
      const std::size_t dot2 = f.rfind(".npy"), dot1 = f.rfind('.', dot2 == std::string::npos ? 0 : dot2 - 1);
      if (dot2 == std::string::npos || dot2 + 4 != f.size() || dot1 == std::string::npos || dot1 == 0) continue;
      const std::string idx = f.substr(dot1 + 1, dot2 - dot1 - 1);
      if (idx.empty() || idx.find_first_not_of("0123456789") != std::string::npos) continue;
      found[f.substr(0, dot1)][std::stoi(idx)] = dir + "/" + f;
    }
    closedir(d);
  }
  std::map<std::string, std::vector<std::string>> out;
  for (auto& [name, files] : found)
    for (auto& [b, path] : files) out[name].push_back(path);
  return out;
}

qlib::calibrator make(qlib::calib_method m, const std::string& name) {
  qlib::calibrator_options o;
  o.method = m;
  o.name = name;
  return qlib::calibrator(o);
}

void observe(qlib::calibrator& c, const std::string& path, const std::string& name) {
  const qlib::npy_array<float> a = qlib::read_npy_file<float>(path);
  c.update(qlib::tensor_view<const float>(a.data.data(), a.header.shape, name.c_str()));
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  bool check = false;
  std::string dir;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--check") == 0)
      check = true;
    else
      dir = argv[i];
  }
  const auto tensors = list_batches(dir);
  if (tensors.empty()) {
    if (rank == 0) std::fprintf(stderr, "mpi_calibrate: no <tensor>.<batch>.npy files in '%s'\n", dir.c_str());
    MPI_Finalize();
    return 2;
  }
  // Relative scale difference allowed against one pass for the methods whose merge re-bins
  // (qlib/mpi.hpp); exact methods get 0.
  const std::vector<std::pair<qlib::calib_method, double>> methods = {
      {qlib::calib_method::minmax, 0.0},    {qlib::calib_method::percentile, 0.05}, {qlib::calib_method::mse, 0.05},
      {qlib::calib_method::kl, 0.25},       {qlib::calib_method::hfmg, 0.05}};
  int failures = 0, checks = 0;
  if (rank == 0) std::printf("%-12s %-12s %14s %14s %10s\n", "tensor", "method", "scale (ranks)", "one process", "rel diff");
  for (const auto& [name, files] : tensors) {
    for (const auto& [method, bound] : methods) {
      qlib::calibrator mine = make(method, name);
      for (std::size_t b = 0; b < files.size(); ++b)
        if (static_cast<int>(b % static_cast<std::size_t>(size)) == rank) observe(mine, files[b], name);
      qlib::mpi::allreduce(mine, MPI_COMM_WORLD);  // every rank now holds the same state
      const auto got = mine.compute();
      if (!check) {
        if (rank == 0) std::printf("%-12s %-12s %14.7g\n", name.c_str(), qlib::to_string(method), static_cast<double>(got.scale[0]));
        continue;
      }
      qlib::calibrator whole = make(method, name);
      for (const auto& f : files) observe(whole, f, name);
      const auto ref = whole.compute();
      const double rel = std::fabs(static_cast<double>(got.scale[0]) - ref.scale[0]) / ref.scale[0];
      const bool ok = bound == 0.0 ? (got.scale == ref.scale && got.zero_point == ref.zero_point &&
                                      got.clip_min == ref.clip_min && got.clip_max == ref.clip_max)
                                   : rel <= bound;
      ++checks;
      if (!ok) ++failures;
      if (rank == 0)
        std::printf("%-12s %-12s %14.7g %14.7g %10.2e%s\n", name.c_str(), qlib::to_string(method),
                    static_cast<double>(got.scale[0]), static_cast<double>(ref.scale[0]), rel,
                    ok ? (bound == 0.0 ? "  exact" : "") : "  FAILED");
    }
  }
  int total = 0;
  MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0 && check) std::printf("mpi_calibrate (%d ranks): %d passed, %d failed\n", size, checks - failures, failures);
  MPI_Finalize();
  return total == 0 ? 0 : 1;
}
