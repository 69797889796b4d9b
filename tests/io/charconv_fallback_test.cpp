// The printf/strtod fallback of detail/text.hpp (used where the standard library lacks
// floating-point <charconv>) gives the same text and values as the <charconv> path.
#define QLIB_IO_NO_CHARCONV 1
#include <qlib/detail/text.hpp>

#include <catch2/catch.hpp>

#include "io/number_text_cases.hpp"

static_assert(!QLIB_IO_HAS_CHARCONV, "this test must exercise the fallback");

TEST_CASE("text fallback: Python repr examples") { qlib_test::check_python_repr_examples(); }
TEST_CASE("text fallback: shortest and protobuf examples") { qlib_test::check_shortest_and_protobuf_examples(); }
TEST_CASE("text fallback: floats round-trip with the shortest digits") { qlib_test::check_float_round_trips(5000); }
TEST_CASE("text fallback: doubles round-trip") { qlib_test::check_double_round_trips(5000); }
TEST_CASE("text fallback: parse_real rejects what is not a finite number") { qlib_test::check_parse_real_rejects(); }
