// A consumer of qlib: observe a batch, print the int8 scale.
#include <qlib/quant.hpp>

#include <cstdio>
#include <vector>

int main() {
  std::vector<float> x = {-0.5f, 0.25f, 1.27f};
  qlib::minmax_observer<float> obs;
  obs.update(qlib::view(x));
  const auto r = obs.compute();
  std::printf("consumer: scale %.6f zero point %d\n", static_cast<double>(r.scale[0]), r.zero_point[0]);
  return r.scale[0] > 0.0099f && r.scale[0] < 0.0101f ? 0 : 1;
}
