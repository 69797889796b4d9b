#include <cstdio>
float odr_a();
float odr_b();
int main() {
  const float a = odr_a(), b = odr_b();
  // 2/127 and 4/127: each unit computed with its own data through the shared headers.
  if (!(a > 0.0157f && a < 0.0158f && b > 0.0314f && b < 0.0316f)) {
    std::printf("odr check: unexpected scales %g %g\n", static_cast<double>(a), static_cast<double>(b));
    return 1;
  }
  std::printf("odr check: ok\n");
  return 0;
}
