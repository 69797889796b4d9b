// The Eigen adapter gives observers and arithmetic the same data, in the logical (rows,
// cols) shape, for every storage order and expression kind.
#include <qlib/eigen.hpp>
#include <qlib/quant.hpp>

#include <catch2/catch.hpp>

#include "test_data.hpp"

namespace {
using RowMajor = Eigen::Array<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ColMajor = Eigen::Array<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;

RowMajor sample_matrix(Eigen::Index r, Eigen::Index c) {
  const auto v = qlib_test::sample<float>(qlib_test::dist::laplace, static_cast<std::size_t>(r * c), 5);
  RowMajor m(r, c);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = v[static_cast<std::size_t>(i)];
  return m;
}

qlib::calib_result<float> per_channel_raw(const RowMajor& m, int axis) {
  qlib::minmax_options o;
  o.axis = axis;
  qlib::minmax_observer<float> obs(o);
  obs.update(qlib::view(m.data(), qlib::shape_t{static_cast<std::size_t>(m.rows()), static_cast<std::size_t>(m.cols())}));
  return obs.compute();
}
}  // namespace

TEST_CASE("eigen: observers see the logical shape for every storage order") {
  const RowMajor m = sample_matrix(6, 9);
  const ColMajor cm = m;
  for (int axis : {0, 1}) {
    const auto ref = per_channel_raw(m, axis);
    qlib::minmax_options o;
    o.axis = axis;
    qlib::minmax_observer<float> a(o), b(o), c(o), d(o);
    qlib::eigen::update(a, m);
    qlib::eigen::update(b, cm);                        // column-major: copied
    qlib::eigen::update(c, Eigen::Map<const RowMajor>(m.data(), 6, 9));
    qlib::eigen::update(d, (cm * 1.0f));               // an expression
    for (auto* obs : {&a, &b, &c, &d}) {
      const auto r = obs->compute();
      CHECK(r.clip_min == ref.clip_min);
      CHECK(r.clip_max == ref.clip_max);
      CHECK(r.scale == ref.scale);
    }
  }
}

TEST_CASE("eigen: blocks and vectors") {
  const RowMajor m = sample_matrix(8, 8);
  qlib::minmax_observer<float> blk, ref;
  qlib::eigen::update(blk, m.block(2, 3, 4, 4));  // strided: evaluated
  std::vector<float> raw;
  for (int i = 2; i < 6; ++i)
    for (int j = 3; j < 7; ++j) raw.push_back(m(i, j));
  ref.update(qlib::view(raw));
  CHECK(blk.compute().scale == ref.compute().scale);

  Eigen::VectorXf v = Eigen::VectorXf::LinSpaced(11, -1.0f, 4.0f);
  qlib::minmax_observer<float> vo;
  qlib::eigen::update(vo, v, "v");
  CHECK(vo.compute().clip_max[0] == 4.0f);
  CHECK(vo.compute().clip_min[0] == -1.0f);
}

TEST_CASE("eigen: quantize and dequantize keep the shape and match the raw functions") {
  const RowMajor m = sample_matrix(5, 7);
  const ColMajor cm = m;
  const qlib::qspec spec;
  const qlib::qparams<float> p{0.02f, 0};
  const auto q = qlib::eigen::quantize<std::int8_t>(cm, p, spec);
  REQUIRE(q.rows() == 5);
  REQUIRE(q.cols() == 7);
  std::vector<std::int8_t> raw(35);
  qlib::quantize(qlib::view(m.data(), 35), p, spec, raw.data());
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 7; ++j) CHECK(q(i, j) == raw[static_cast<std::size_t>(i * 7 + j)]);
  const auto back = qlib::eigen::dequantize<float>(q, p);
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 7; ++j) CHECK(back(i, j) == static_cast<float>(q(i, j)) * 0.02f);
  const auto fq = qlib::eigen::fake_quantize(cm, p, spec);
  CHECK(((fq - back).abs() == 0.0f).all());

  qlib::channel_qparams<float> pc{std::vector<float>(7, 0.03f), std::vector<std::int32_t>(7, 0), 1};
  pc.scale[3] = 0.5f;
  const auto qc = qlib::eigen::quantize<std::int8_t>(m, pc, spec);
  CHECK(qc(0, 3) == static_cast<std::int8_t>(qlib::quantize_value(m(0, 3), 0.5f, 0, -128, 127)));
}
