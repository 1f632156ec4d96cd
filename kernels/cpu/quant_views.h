// Shared by the CPU quantization kernels: a tensor viewed as [outer, C, inner]
// around the quantization axis, walked in spans that each lie in one
// channel, and short stack chunks for Eigen array expressions.
#pragma once

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>

#include "kernels/kernels.h"

namespace pk::cpu::quant_views {

constexpr int64_t kBlock = 16384;

// Calls f(c, begin, end) over contiguous element spans that each lie in one
// channel c, splitting the tensor into blocks shared out among threads.
template <typename F>
void for_channel_spans(const AxisGeom& g, F f) {
  const int64_t total = g.outer * g.dim * g.inner;
  const int64_t blocks = (total + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    int64_t i = b * kBlock, end = std::min(total, i + kBlock);
    while (i < end) {
      int64_t row = i / g.inner;
      int64_t row_end = std::min(end, (row + 1) * g.inner);
      f(row % g.dim, i, row_end);
      i = row_end;
    }
  }
}

// AdaRound's element-wise math runs on short stack chunks as Eigen array
// expressions, whose exp and log are vectorized (the scalar libm calls were
// most of a reconstruction step on late, weight-heavy layers).
constexpr int64_t kChunk = 256;
using ArrayChunk = Eigen::Array<float, Eigen::Dynamic, 1, 0, kChunk, 1>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXf>;
using ArrayMap = Eigen::Map<Eigen::ArrayXf>;

// f(offset, length) over [begin, end) in chunks of at most kChunk.
template <typename F>
void in_chunks(int64_t begin, int64_t end, F f) {
  for (int64_t i = begin; i < end; i += kChunk) f(i, std::min(kChunk, end - i));
}

}  // namespace pk::cpu::quant_views
