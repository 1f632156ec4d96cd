// Helpers shared by the op implementations (not part of the public API).
#pragma once

#include <string>

#include "engine/tensor.h"

namespace pk {

inline void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  check(a.device() == b.device(), [&] {
    return std::string(op) + ": tensors on different devices (" + a.describe() + ", " +
           b.describe() + ")";
  });
}

// Normalizes a possibly negative dim against rank n, with a clear error.
inline int64_t wrap_dim(int64_t dim, int64_t n, const char* op) {
  int64_t d = dim < 0 ? dim + n : dim;
  check(d >= 0 && d < n, [&] {
    return std::string(op) + ": dim " + std::to_string(dim) +
           " out of range for a tensor of rank " + std::to_string(n);
  });
  return d;
}

BroadcastShape make_broadcast(const Shape& a, const Shape& b, const Shape& out);

}  // namespace pk
