// The shared contract every observer is run through: the same checks, one template.
//
//   qlib_test::check_observer_contract<Obs>(make, opts);
// where make() returns a fresh observer with the options under test. Checks:
// compute() before data fails with empty_input; empty and NaN/Inf batches are rejected with
// a message naming the observer and the first bad index, and the state is unchanged
// (save() bytes equal before and after); constant and all-zero data give finite positive
// scales; save()/load() round-trips byte for byte and computes the same result; reset()
// returns to the empty state; merge() of observers that saw the two halves equals one pass
// bit for bit when opts.merge_exact (else: merge works and gives finite parameters);
// splitting the data into batches gives the same bits when opts.split_exact.
// Also the helpers the observer tests share: require_same, require_valid, feed, and (from
// test_errors.hpp) error_message.
#pragma once

#include <catch2/catch.hpp>

#include <qlib/config.hpp>
#include <qlib/core/tensor_view.hpp>
#include <qlib/observer/result.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "test_data.hpp"
#include "test_errors.hpp"

namespace qlib_test {

struct contract_options {
  bool merge_exact = true;   ///< merge of halves == one pass, bit for bit
  bool split_exact = true;   ///< many batches == one batch, bit for bit
  std::vector<std::size_t> shape{};  ///< batch shape; empty: flat batches of 4096
  std::string name = "t0";   ///< the observer's name, expected in messages
};

template <class T>
void require_same(const qlib::calib_result<T>& a, const qlib::calib_result<T>& b) {
  REQUIRE(a.axis == b.axis);
  REQUIRE(a.clip_min == b.clip_min);
  REQUIRE(a.clip_max == b.clip_max);
  REQUIRE(a.scale == b.scale);
  REQUIRE(a.zero_point == b.zero_point);
}

template <class T>
void require_valid(const qlib::calib_result<T>& r) {
  REQUIRE(!r.scale.empty());
  REQUIRE(r.scale.size() == r.zero_point.size());
  for (std::size_t c = 0; c < r.scale.size(); ++c) {
    REQUIRE(std::isfinite(r.scale[c]));
    REQUIRE(r.scale[c] > T(0));
    REQUIRE(r.zero_point[c] >= r.spec.qmin());
    REQUIRE(r.zero_point[c] <= r.spec.qmax());
  }
}

/// Feeds x to obs as flat batches of `batch` values (the last one shorter).
template <class Obs>
void feed(Obs& obs, const std::vector<float>& x, std::size_t batch) {
  for (std::size_t off = 0; off < x.size(); off += batch)
    obs.update(qlib::view(x.data() + off, std::min(batch, x.size() - off)));
}

template <class Obs, class Make>
void check_observer_contract(Make make, const contract_options& opts = {}) {
  using T = typename Obs::value_type;
  std::size_t per_batch = 4096;
  if (!opts.shape.empty()) {
    per_batch = 1;
    for (auto d : opts.shape) per_batch *= d;
  }
  auto shape = [&]() {
    if (opts.shape.empty()) return qlib::shape_t(per_batch);
    return qlib::shape_t::from_range(opts.shape.begin(), opts.shape.end());
  };
  const char* name = opts.name.c_str();
  auto tv = [&](const std::vector<T>& v) { return qlib::tensor_view<const T>(v.data(), shape(), name); };

  SECTION("compute before data fails") {
    Obs obs = make();
    error_message([&] { (void)obs.compute(); }, qlib::errc::empty_input);
  }

  for (dist d : all_dists()) {
    DYNAMIC_SECTION("distribution " << dist_name(d)) {
      const std::vector<T> a = sample<T>(d, per_batch, 1), b = sample<T>(d, per_batch, 2);
      Obs one = make();
      one.update(tv(a));
      one.update(tv(b));
      const auto ref = one.compute();
      require_valid(ref);

      // save / load: byte for byte, same result.
      const std::vector<std::uint8_t> bytes = one.save();
      Obs back = Obs::load(bytes);
      REQUIRE(back.save() == bytes);
      require_same(back.compute(), ref);

      // Rejected batches keep the state; messages name the observer and the index.
      std::vector<T> bad = a;
      const std::size_t at = bad.size() / 2 + 1;
      bad[at] = std::numeric_limits<T>::quiet_NaN();
      const std::string msg = error_message([&] { one.update(tv(bad)); }, qlib::errc::non_finite);
      CHECK(msg.find(std::to_string(at)) != std::string::npos);
      CHECK(msg.find(opts.name) != std::string::npos);
      bad[at] = a[at];
      bad[0] = -std::numeric_limits<T>::infinity();
      error_message([&] { one.update(tv(bad)); }, qlib::errc::non_finite);
      error_message([&] { one.update(qlib::tensor_view<const T>(a.data(), qlib::shape_t{0}, name)); },
                    qlib::errc::empty_input);
      REQUIRE(one.save() == bytes);

      // Merge of two observers that saw a and b.
      Obs left = make(), right = make();
      left.update(tv(a));
      right.update(tv(b));
      left.merge(right);
      if (opts.merge_exact) {
        require_same(left.compute(), ref);
      } else {
        require_valid(left.compute());
      }

      // The two batches split into quarters (flat observers only).
      if (opts.split_exact && opts.shape.empty()) {
        Obs split = make();
        const std::size_t k = per_batch / 4;
        for (const std::vector<T>* v : {&a, &b})
          for (std::size_t off = 0; off < per_batch; off += k)
            split.update(qlib::tensor_view<const T>(v->data() + off, qlib::shape_t(k), name));
        require_same(split.compute(), ref);
      }

      // Reset returns to the empty state.
      one.reset();
      error_message([&] { (void)one.compute(); }, qlib::errc::empty_input);
      REQUIRE(one.save() == make().save());
    }
  }
}

}  // namespace qlib_test
