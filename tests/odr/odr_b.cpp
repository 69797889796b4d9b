// Two translation units include the whole core; linking them together fails on any
// non-inline definition in a header.
#include <qlib/quant.hpp>
float odr_b() {
  const float x[3] = {-1.f, 0.5f, 4.f};
  qlib::minmax_observer<float> obs;
  obs.update(qlib::view(x, 3));
  return obs.compute().scale[0];
}
