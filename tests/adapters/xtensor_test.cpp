// The xtensor adapter: containers without a copy, views and lazy expressions evaluated,
// the same results as the raw functions.
#include <qlib/quant.hpp>
#include <qlib/xtensor.hpp>

#include <catch2/catch.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include "test_data.hpp"

namespace {
xt::xarray<float> sample_array() {
  const auto v = qlib_test::sample<float>(qlib_test::dist::bimodal, 4 * 6 * 5, 9);
  xt::xarray<float> a = xt::zeros<float>({4, 6, 5});
  std::copy(v.begin(), v.end(), a.begin());
  return a;
}
}  // namespace

TEST_CASE("xtensor: containers, views and expressions feed observers with their shape") {
  const xt::xarray<float> a = sample_array();
  for (int axis : {0, 1, 2}) {
    qlib::minmax_options o;
    o.axis = axis;
    qlib::minmax_observer<float> raw(o), viaarr(o), viatensor(o), viaexpr(o), viacol(o);
    raw.update(qlib::view(a.data(), qlib::shape_t{4, 6, 5}));
    qlib::xtensor::update(viaarr, a);
    const xt::xtensor<float, 3> t = a;
    qlib::xtensor::update(viatensor, t);
    qlib::xtensor::update(viaexpr, a * 1.0f);
    const xt::xarray<float, xt::layout_type::column_major> col = a;
    qlib::xtensor::update(viacol, col);
    for (auto* obs : {&viaarr, &viatensor, &viaexpr, &viacol}) {
      CHECK(obs->compute().clip_min == raw.compute().clip_min);
      CHECK(obs->compute().clip_max == raw.compute().clip_max);
    }
  }
  // A strided view: every other element along the last axis.
  auto v = xt::view(a, xt::all(), xt::all(), xt::range(0, 5, 2));
  qlib::minmax_observer<float> viaview, ref;
  qlib::xtensor::update(viaview, v);
  std::vector<float> raw;
  for (std::size_t i = 0; i < 4; ++i)
    for (std::size_t j = 0; j < 6; ++j)
      for (std::size_t k = 0; k < 5; k += 2) raw.push_back(a(i, j, k));
  ref.update(qlib::view(raw));
  CHECK(viaview.compute().scale == ref.compute().scale);
}

TEST_CASE("xtensor: quantize / dequantize keep the shape") {
  const xt::xarray<float> a = sample_array();
  const qlib::qspec spec = qlib::qspec::torch_quint8();
  const auto p = qlib::qparams_from_range(-4.0f, 3.0f, spec);
  const auto q = qlib::xtensor::quantize<std::uint8_t>(a, p, spec);
  REQUIRE(q.shape() == a.shape());
  std::vector<std::uint8_t> raw(a.size());
  qlib::quantize(qlib::view(a.data(), a.size()), p, spec, raw.data());
  CHECK(std::equal(raw.begin(), raw.end(), q.begin()));
  const auto back = qlib::xtensor::dequantize<float>(q, p);
  REQUIRE(back.shape() == a.shape());
  CHECK(back(1, 2, 3) == (static_cast<float>(q(1, 2, 3)) - static_cast<float>(p.zero_point)) * p.scale);
}
