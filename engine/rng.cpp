#include "engine/rng.h"

#include <cmath>
#include <vector>

namespace pk {

// Box-Muller on doubles built from 53 random bits.
float Generator::normal(float mean, float stddev) {
  if (has_spare_) {
    has_spare_ = false;
    return mean + stddev * static_cast<float>(spare_);
  }
  double u1, u2;
  do {
    u1 = static_cast<double>(engine_() >> 11) * (1.0 / 9007199254740992.0);
  } while (u1 <= 0.0);
  u2 = static_cast<double>(engine_() >> 11) * (1.0 / 9007199254740992.0);
  double r = std::sqrt(-2.0 * std::log(u1));
  spare_ = r * std::sin(2.0 * M_PI * u2);
  has_spare_ = true;
  return mean + stddev * static_cast<float>(r * std::cos(2.0 * M_PI * u2));
}

Tensor Generator::uniform_tensor(const Shape& shape, float lo, float hi, Device device) {
  std::vector<float> v(shape_numel(shape));
  for (float& x : v) x = uniform(lo, hi);
  return Tensor::from_vector(v, shape, device);
}

Tensor Generator::normal_tensor(const Shape& shape, float mean, float stddev, Device device) {
  std::vector<float> v(shape_numel(shape));
  for (float& x : v) x = normal(mean, stddev);
  return Tensor::from_vector(v, shape, device);
}

}  // namespace pk
