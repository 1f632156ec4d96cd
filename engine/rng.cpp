#include "engine/rng.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace pk {

std::string Generator::state() const {
  std::ostringstream out;
  uint64_t spare_bits = 0;
  std::memcpy(&spare_bits, &spare_, sizeof spare_bits);
  out << engine_ << ' ' << has_spare_ << ' ' << spare_bits;
  return out.str();
}

void Generator::set_state(const std::string& state) {
  std::istringstream in(state);
  std::mt19937_64 engine;
  bool has_spare = false;
  uint64_t spare_bits = 0;
  if (!(in >> engine >> has_spare >> spare_bits))
    throw std::invalid_argument("not a random generator state");
  engine_ = engine;
  has_spare_ = has_spare;
  std::memcpy(&spare_, &spare_bits, sizeof spare_);
}

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

void Generator::fill_bernoulli(float* out, int64_t n, double p, float hit, float miss) {
  // uniform() is k / 2^24 for the draw's top 24 bits k, so uniform() < p
  // holds exactly when k < ceil(p * 2^24). Integer compares vectorize; the
  // per-draw conversion to float of uniform() does not.
  constexpr double kLevels = 16777216.0;
  const double bound = p * kLevels;
  const int64_t threshold = !(bound > 0.0)     ? 0  // also NaN: uniform() < NaN never holds
                            : bound >= kLevels ? static_cast<int64_t>(kLevels)
                                               : static_cast<int64_t>(std::ceil(bound));
  constexpr int64_t kChunk = 1024;
  uint64_t bits[kChunk];
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t count = std::min(kChunk, n - start);
    for (int64_t i = 0; i < count; ++i) bits[i] = engine_();
    float* chunk = out + start;
    for (int64_t i = 0; i < count; ++i)
      chunk[i] = static_cast<int64_t>(bits[i] >> 40) < threshold ? hit : miss;
  }
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
