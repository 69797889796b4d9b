// Thread-level calibration, the documented contract: each thread owns an observer (none is
// shared), and the observers are merged in a fixed order afterwards. The result does not
// depend on scheduling, and for the exact observers it equals one pass bit for bit.
#include <qlib/calibrator.hpp>

#include <catch2/catch.hpp>

#include <thread>
#include <vector>

#include "observer/observer_contract.hpp"
#include "test_data.hpp"

namespace {
std::vector<std::vector<float>> shards() {
  std::vector<std::vector<float>> out;
  for (std::uint64_t s = 0; s < 8; ++s) out.push_back(qlib_test::sample<float>(qlib_test::dist::laplace, 20000, s));
  return out;
}

// Threads observe shard t, t + threads, ...; then merge in thread order.
qlib::calib_result<float> threaded(const qlib::calibrator_options& o, int threads) {
  const auto data = shards();
  std::vector<qlib::calibrator> obs(static_cast<std::size_t>(threads), qlib::calibrator(o));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (std::size_t s = static_cast<std::size_t>(t); s < data.size(); s += static_cast<std::size_t>(threads))
        obs[static_cast<std::size_t>(t)].update(qlib::view(data[s]));
    });
  for (auto& th : pool) th.join();
  for (std::size_t t = 1; t < obs.size(); ++t) obs[0].merge(obs[t]);
  return obs[0].compute();
}
}  // namespace

TEST_CASE("threads: exact observers merged from threads equal one pass") {
  for (auto m : {qlib::calib_method::minmax, qlib::calib_method::ifmr}) {
    INFO(qlib::to_string(m));
    qlib::calibrator_options o;
    o.method = m;
    qlib::calibrator one(o);
    for (const auto& s : shards()) one.update(qlib::view(s));
    const auto ref = one.compute();
    for (int threads : {1, 2, 4}) qlib_test::require_same(threaded(o, threads), ref);
  }
}

TEST_CASE("threads: every method gives the same bits on every run for a given thread count") {
  for (auto m : qlib::all_calib_methods()) {
    if (m == qlib::calib_method::arq) continue;
    INFO(qlib::to_string(m));
    qlib::calibrator_options o;
    o.method = m;
    const auto a = threaded(o, 4), b = threaded(o, 4);
    qlib_test::require_same(a, b);
    qlib_test::require_valid(a);
  }
}
