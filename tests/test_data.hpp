// Seeded sample distributions shared by the tests (the "varied distributions" every
// algorithm is checked on). Deterministic: std::mt19937_64 with explicit seeds and
// distributions written out here (std:: distributions differ between standard libraries).
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace qlib_test {

enum class dist { gaussian, relu, laplace, student_t2, bimodal, outliers, uniform, constant, tiny, zeros };

inline const char* dist_name(dist d) {
  switch (d) {
    case dist::gaussian: return "gaussian";
    case dist::relu: return "relu";
    case dist::laplace: return "laplace";
    case dist::student_t2: return "student_t2";
    case dist::bimodal: return "bimodal";
    case dist::outliers: return "outliers";
    case dist::uniform: return "uniform";
    case dist::constant: return "constant";
    case dist::tiny: return "tiny";
    case dist::zeros: return "zeros";
  }
  return "?";
}

inline const std::vector<dist>& all_dists() {
  static const std::vector<dist> v = {dist::gaussian, dist::relu,    dist::laplace,  dist::student_t2, dist::bimodal,
                                      dist::outliers, dist::uniform, dist::constant, dist::tiny,       dist::zeros};
  return v;
}

/// The distributions with spread (no constant / zero / tiny data).
inline const std::vector<dist>& spread_dists() {
  static const std::vector<dist> v = {dist::gaussian, dist::relu,    dist::laplace, dist::student_t2,
                                      dist::bimodal,  dist::outliers, dist::uniform};
  return v;
}

class rng {
 public:
  explicit rng(std::uint64_t seed) : g_(seed) {}
  double uniform() { return (static_cast<double>(g_() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }  // (0, 1)
  double normal() {  // Box-Muller, one value per call
    const double u1 = uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  std::mt19937_64 g_;
};

/// n float samples of distribution d with the given seed.
template <class T = float>
std::vector<T> sample(dist d, std::size_t n, std::uint64_t seed = 0) {
  rng r(seed * 7919 + static_cast<std::uint64_t>(d) + 1);
  std::vector<T> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    double x = 0;
    switch (d) {
      case dist::gaussian: x = r.normal(); break;
      case dist::relu: x = std::fmax(0.0, r.normal() * 2.0 + 0.3); break;
      case dist::laplace: {
        const double u = r.uniform() - 0.5;
        x = (u < 0 ? 1.0 : -1.0) * std::log(1.0 - 2.0 * std::fabs(u));
        break;
      }
      case dist::student_t2: {  // t with 2 degrees of freedom: z / sqrt(chi2_2 / 2)
        const double z = r.normal();
        const double chi2 = -2.0 * std::log(r.uniform());
        x = z / std::sqrt(chi2 / 2.0);
        break;
      }
      case dist::bimodal: x = (r.uniform() < 0.5 ? -3.0 : 2.0) + 0.5 * r.normal(); break;
      case dist::outliers: x = r.uniform() < 0.001 ? 40.0 * (r.uniform() - 0.3) : r.normal(); break;
      case dist::uniform: x = 4.0 * r.uniform() - 1.0; break;
      case dist::constant: x = 0.75; break;
      case dist::tiny: x = 1e-9 * r.normal(); break;
      case dist::zeros: x = 0.0; break;
    }
    v[i] = static_cast<T>(x);
  }
  return v;
}

}  // namespace qlib_test
