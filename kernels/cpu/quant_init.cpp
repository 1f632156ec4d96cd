// Statistics for quantizer initialization: per-channel ranges and the scores
// of the MSE range search. The arithmetic that must round as the reference
// rounds, each candidate's range and its quantization errors, is in
// unfused_float.cpp.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/quant_views.h"
#include "kernels/cpu/unfused_float.h"
#include "kernels/kernels.h"

namespace pk::cpu {

using namespace quant_views;

void channel_minmax(const AxisGeom& g, const float* x, float* mn, float* mx) {
  const int nt = omp_get_max_threads();
  std::vector<float> lo(static_cast<size_t>(nt) * g.dim, INFINITY), hi(lo.size(), -INFINITY);
  for_channel_spans(g, [&](int64_t c, int64_t begin, int64_t end) {
    size_t k = static_cast<size_t>(omp_get_thread_num()) * g.dim + c;
    for (int64_t i = begin; i < end; ++i) {
      lo[k] = std::min(lo[k], x[i]);
      hi[k] = std::max(hi[k], x[i]);
    }
  });
  for (int64_t c = 0; c < g.dim; ++c) {
    mn[c] = INFINITY;
    mx[c] = -INFINITY;
    for (int t = 0; t < nt; ++t) {
      mn[c] = std::min(mn[c], lo[static_cast<size_t>(t) * g.dim + c]);
      mx[c] = std::max(mx[c], hi[static_cast<size_t>(t) * g.dim + c]);
    }
  }
}

namespace {

// Sum over [begin, end) of |x - q(x)|^p for the candidate that shrinks the
// range [lo, hi] by (1 - 0.01 k); 0 for a constant channel.
template <typename Real>
double range_error_sum(const float* x, int64_t begin, int64_t end, float lo, float hi, int64_t k,
                       float qmax, float p) {
  const ScaledRange range = scaled_range(lo, hi, range_shrink(k), qmax);
  if (!(range.step > 0.0f)) return 0.0;  // constant channel: every candidate scores the same
  const float z = std::nearbyint(-range.min / range.step);
  return quant_error_power_sum<Real>(x + begin, end - begin, range.step, z, qmax, p);
}

}  // namespace

// scores[c * K + k] = mean over channel c of |x - q_k(x)|^p where candidate k
// shrinks the range [lo, hi] by (1 - 0.01 k), as the reference's MSE search.
// Neighbouring candidates can score the same to 1e-7 relative, below the
// rounding error of float powers (up to ~3e-5 relative with the float chunk
// sums), so a float pass ranks all candidates and those within 1e-4 of each
// channel's best are scored again in double: the argmin is the exact one.
void quant_range_scores(const AxisGeom& g, const float* x, const float* lo, const float* hi,
                        int64_t n_candidates, float qmax, float p, double* scores) {
  constexpr double kRecheck = 1e-4;
  const int nt = omp_get_max_threads();
  const int64_t K = n_candidates;
  const double count = static_cast<double>(g.outer * g.inner);
  std::vector<double> partial(static_cast<size_t>(nt) * g.dim * K);
  // Scores the candidates where pick(c, k) holds, with powers in Real:
  // per-thread partial sums, then their means into scores.
  auto score = [&](auto real, auto pick) {
    using Real = decltype(real);
    std::fill(partial.begin(), partial.end(), 0.0);
    for_channel_spans(g, [&](int64_t c, int64_t begin, int64_t end) {
      double* acc = partial.data() + (static_cast<size_t>(omp_get_thread_num()) * g.dim + c) * K;
      for (int64_t k = 0; k < K; ++k)
        if (pick(c, k)) acc[k] += range_error_sum<Real>(x, begin, end, lo[c], hi[c], k, qmax, p);
    });
    for (int64_t c = 0; c < g.dim; ++c)
      for (int64_t k = 0; k < K; ++k) {
        if (!pick(c, k)) continue;
        double s = 0.0;
        for (int t = 0; t < nt; ++t) s += partial[(static_cast<size_t>(t) * g.dim + c) * K + k];
        scores[c * K + k] = s / count;
      }
  };
  score(float{}, [](int64_t, int64_t) { return true; });
  std::vector<char> recheck(static_cast<size_t>(g.dim * K), 0);
  for (int64_t c = 0; c < g.dim; ++c) {
    const double* row = scores + c * K;
    const double best = *std::min_element(row, row + K);
    for (int64_t k = 0; k < K; ++k) recheck[c * K + k] = row[k] <= best * (1.0 + kRecheck);
  }
  score(double{}, [&](int64_t c, int64_t k) { return recheck[c * K + k] != 0; });
}

}  // namespace pk::cpu
