// Seeded random numbers with results that do not depend on the standard
// library (std::normal_distribution differs between implementations), so a
// run is reproducible from --seed everywhere.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "engine/tensor.h"

namespace pk {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : engine_(seed) {}
  void seed(uint64_t s) { engine_.seed(s); has_spare_ = false; }
  uint64_t next_u64() { return engine_(); }
  // Uniform in [0, 1) with 24 random bits (exact in float32).
  float uniform() { return static_cast<float>(engine_() >> 40) * (1.0f / 16777216.0f); }
  float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }
  // out[i] = uniform() < p ? hit : miss for n draws in a row: the same values
  // and the same generator state afterwards as n calls of uniform(), several
  // times faster on large masks.
  void fill_bernoulli(float* out, int64_t n, double p, float hit = 1.0f, float miss = 0.0f);
  // Uniform integer in [0, n).
  int64_t randint(int64_t n) { return static_cast<int64_t>(engine_() % static_cast<uint64_t>(n)); }
  float normal(float mean = 0.0f, float stddev = 1.0f);

  // The whole state as text, and back: a generator set to the state of
  // another draws what that one would draw next (resumed runs).
  std::string state() const;
  void set_state(const std::string& state);  // throws std::invalid_argument

  Tensor uniform_tensor(const Shape& shape, float lo, float hi, Device device = Device::CPU);
  Tensor normal_tensor(const Shape& shape, float mean, float stddev, Device device = Device::CPU);

 private:
  std::mt19937_64 engine_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace pk
