// The versioned byte serialization every observer uses: round trip of each field type, and
// a clear parse_error for foreign, truncated, newer or inconsistent blobs.
#include <qlib/observer/state.hpp>

#include <catch2/catch.hpp>

#include <limits>
#include <vector>

#include "observer/observer_contract.hpp"

namespace {
std::vector<std::uint8_t> sample_blob() {
  qlib::state_writer w("demo", 2);
  w.put(std::int32_t{-7});
  w.put(3.5);
  w.put(1.25f);
  w.put(std::uint8_t{1});
  w.put_string("conv1");
  w.put_array(std::vector<double>{1.0, -2.0, std::numeric_limits<double>::denorm_min()});
  qlib::put_qspec(w, qlib::qspec::amct_activation(6));
  return w.take();
}

/// Reads sample_blob()'s fields from bytes, in order, and requires the end.
void read_sample(const std::vector<std::uint8_t>& bytes) {
  qlib::state_reader r(bytes, "demo", 2);
  (void)r.get<std::int32_t>();
  (void)r.get<double>();
  (void)r.get<float>();
  (void)r.get_bool();
  (void)r.get_string();
  (void)r.get_array<double>();
  (void)qlib::get_qspec(r);
  r.finish();
}
}  // namespace

TEST_CASE("state: fields round-trip") {
  const auto b = sample_blob();
  qlib::state_reader r(b, "demo", 2);
  CHECK(r.kind_version() == 2);
  CHECK(r.get<std::int32_t>() == -7);
  CHECK(r.get<double>() == 3.5);
  CHECK(r.get<float>() == 1.25f);
  CHECK(r.get_bool());
  CHECK(r.get_string() == "conv1");
  CHECK(r.get_array<double>() == std::vector<double>{1.0, -2.0, std::numeric_limits<double>::denorm_min()});
  CHECK(qlib::get_qspec(r) == qlib::qspec::amct_activation(6));
  r.finish();
}

TEST_CASE("state: malformed blobs are parse errors naming the kind and the offset") {
  const auto b = sample_blob();
  for (std::size_t cut = 0; cut < b.size(); ++cut) {
    const std::vector<std::uint8_t> part(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(cut));
    const std::string msg = qlib_test::error_message([&] { read_sample(part); }, qlib::errc::parse_error);
    CHECK_THAT(msg, Catch::Contains("demo observer state, byte"));
  }
  CHECK_THAT(qlib_test::error_message([&] { qlib::state_reader r(b, "other", 2); }, qlib::errc::parse_error),
             Catch::Contains("'demo' observer, not 'other'"));
  CHECK_THAT(qlib_test::error_message([&] { qlib::state_reader r(b, "demo", 1); }, qlib::errc::parse_error),
             Catch::Contains("newer"));
  auto bad_bool = b;
  // byte layout: magic 8, format 2, kind (2 + 4), version 2, int32 4, double 8, float 4, bool
  bad_bool[8 + 2 + 6 + 2 + 4 + 8 + 4] = 7;
  CHECK_THAT(qlib_test::error_message([&] { read_sample(bad_bool); }, qlib::errc::parse_error),
             Catch::Contains("boolean"));
  // An array count far beyond the bytes left is refused before any allocation.
  qlib::state_writer w("demo", 1);
  w.put(std::uint64_t{1} << 60);
  const auto huge = w.take();
  CHECK_THAT(qlib_test::error_message(
                 [&] {
                   qlib::state_reader r(huge, "demo", 1);
                   (void)r.get_array<double>();
                 },
                 qlib::errc::parse_error),
             Catch::Contains("runs past the end"));
  auto trailing = b;
  trailing.push_back(0);
  CHECK_THAT(qlib_test::error_message([&] { read_sample(trailing); }, qlib::errc::parse_error),
             Catch::Contains("trailing"));
}
