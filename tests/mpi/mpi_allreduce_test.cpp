// qlib::mpi::allreduce on 2+ ranks: every rank ends with the same bits, and for the exact
// observers those bits equal one process over all the data. Run under mpirun (ctest does).
// Plain checks rather than Catch2: every rank must take part in every collective call.
#include <qlib/mpi.hpp>
#include <qlib/quant.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "test_data.hpp"

namespace {

int failures = 0, passes = 0;

void check(bool ok, const std::string& what, int rank) {
  if (ok) {
    ++passes;
  } else {
    ++failures;
    std::printf("rank %d: FAILED: %s\n", rank, what.c_str());
  }
}

template <class T>
bool same(const qlib::calib_result<T>& a, const qlib::calib_result<T>& b) {
  return a.clip_min == b.clip_min && a.clip_max == b.clip_max && a.scale == b.scale && a.zero_point == b.zero_point;
}

// The batches of the whole data set; rank r takes batches r, r + size, ...
std::vector<std::vector<float>> all_batches() {
  std::vector<std::vector<float>> out;
  std::uint64_t seed = 10;
  for (auto d : qlib_test::spread_dists())
    for (int k = 0; k < 3; ++k) out.push_back(qlib_test::sample<float>(d, 3000, seed++));
  return out;
}

// Runs one observer type through allreduce and compares with one pass on every rank.
template <class Obs, class Make>
void run(const char* label, Make make, qlib::shape_t shape, bool exact, int rank, int size, MPI_Comm comm) {
  const auto batches = all_batches();
  Obs mine = make(), whole = make();
  for (std::size_t b = 0; b < batches.size(); ++b) {
    const auto v = qlib::view(batches[b].data(), shape, "batch");
    whole.update(v);
    if (static_cast<int>(b % static_cast<std::size_t>(size)) == rank) mine.update(v);
  }
  qlib::mpi::allreduce(mine, comm);
  const auto got = mine.compute(), ref = whole.compute();
  // Every rank must hold the same bytes: compare with rank 0's state.
  std::vector<std::uint8_t> state = mine.save();
  unsigned long long n = state.size();
  MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, 0, comm);
  std::vector<std::uint8_t> root(static_cast<std::size_t>(n));
  if (rank == 0) root = state;
  MPI_Bcast(root.data(), static_cast<int>(n), MPI_BYTE, 0, comm);
  check(root == state, std::string(label) + ": state identical on every rank", rank);
  if (exact) check(same(got, ref), std::string(label) + ": allreduce equals one pass bit for bit", rank);
  if (rank == 0)
    std::printf("%-28s ranks %d: scale %.9g (one pass %.9g)%s\n", label, size, static_cast<double>(got.scale[0]),
                static_cast<double>(ref.scale[0]), exact ? " exact" : "");
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const MPI_Comm comm = MPI_COMM_WORLD;

  run<qlib::minmax_observer<float>>(
      "minmax per tensor", [] { return qlib::minmax_observer<float>(); }, qlib::shape_t(3000), true, rank, size, comm);
  run<qlib::minmax_observer<float>>(
      "minmax per channel (axis 1)",
      [] {
        qlib::minmax_options o;
        o.axis = 1;
        o.spec.scheme = qlib::qscheme::affine;
        return qlib::minmax_observer<float>(o);
      },
      qlib::shape_t{10, 30, 10}, true, rank, size, comm);

  int local = failures, total = 0;
  MPI_Allreduce(&local, &total, 1, MPI_INT, MPI_SUM, comm);
  int local_pass = passes, total_pass = 0;
  MPI_Allreduce(&local_pass, &total_pass, 1, MPI_INT, MPI_SUM, comm);
  if (rank == 0) std::printf("mpi: %d passed, %d failed\n", total_pass, total);
  MPI_Finalize();
  return total == 0 ? 0 : 1;
}
