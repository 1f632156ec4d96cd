// Sums of float data accumulated in double, as eight interleaved partial
// sums: a single running sum is a chain of dependent additions that cannot
// vectorize (the compiler may not reorder floating-point additions); eight
// independent ones can.
#pragma once

#include <cstdint>

namespace pk::cpu {

constexpr int kDoubleSumLanes = 8;

// sum over i of term(values[i]), each term computed in double.
template <typename Term>
double sum_in_double(const float* values, int64_t n, Term term) {
  double partial[kDoubleSumLanes] = {};
  int64_t i = 0;
  for (; i + kDoubleSumLanes <= n; i += kDoubleSumLanes)
    for (int k = 0; k < kDoubleSumLanes; ++k) partial[k] += term(values[i + k]);
  double total = 0.0;
  for (; i < n; ++i) total += term(values[i]);
  for (double p : partial) total += p;
  return total;
}

inline double sum_in_double(const float* values, int64_t n) {
  return sum_in_double(values, n, [](float v) { return static_cast<double>(v); });
}

}  // namespace pk::cpu
