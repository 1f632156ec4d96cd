// 2D convolution on the CPU. The general case lowers each (sample, group)
// pair to one GEMM over an im2col matrix (skipped for 1x1 stride-1 unpadded
// convolutions, where the input already is that matrix). Depthwise
// convolution (one input channel per output channel) gets a direct kernel:
// as a GEMM it would be a single-row product per channel, far below peak.
#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels/cpu/parallel_thresholds.h"
#include "kernels/kernels.h"

namespace pk::cpu {

namespace {

// Output positions o in [lo, hi) whose input position o * stride + offset
// lies inside [0, size): everything outside reads padding.
struct ValidRange {
  int64_t lo, hi;
};

ValidRange valid_range(int64_t offset, int64_t stride, int64_t size, int64_t out_size) {
  int64_t lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  int64_t last = size - 1 - offset;  // largest o * stride allowed
  int64_t hi = last < 0 ? 0 : std::min(out_size, last / stride + 1);
  lo = std::min(lo, hi);
  return {lo, hi};
}

// Scratch floats that every user overwrites before reading: no zero fill
// (a std::vector's value-initialization was a visible share of small convs).
using Scratch = std::unique_ptr<float[]>;
Scratch scratch(int64_t floats) { return Scratch(new float[static_cast<size_t>(floats)]); }

// How the (sample, group) jobs use the threads. With at least as many jobs
// as threads, the jobs themselves run in parallel and each GEMM runs
// single-threaded (the GEMM stays sequential inside an active OpenMP region):
// no GEMM synchronization, and im2col is parallel for free. With fewer jobs
// (e.g. one sample), jobs run in turn and the GEMM and im2col use all threads.
enum class Schedule { Serial, ParallelJobs, ParallelInsideJobs };

Schedule schedule_for(int64_t jobs, int64_t macs_per_job) {
  const int threads = omp_get_max_threads();
  if (threads == 1 || jobs * macs_per_job < kParallelMinMacs) return Schedule::Serial;
  return jobs >= threads ? Schedule::ParallelJobs : Schedule::ParallelInsideJobs;
}

// Per-group sizes of a convolution as a GEMM: [Og, K] x [K, P].
struct GroupGemm {
  int64_t Cg, Og, K, P, HW;
  bool pointwise;  // 1x1, stride 1, no padding: the input plane is the im2col matrix
  int64_t jobs;    // one GEMM per (sample, group)
  Schedule schedule;

  explicit GroupGemm(const ConvGeom& g)
      : Cg(g.C / g.groups),
        Og(g.O / g.groups),
        K(g.C / g.groups * g.KH * g.KW),
        P(g.OH * g.OW),
        HW(g.H * g.W),
        pointwise(g.KH == 1 && g.KW == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 &&
                  g.pad_w == 0),
        jobs(g.N * g.groups),
        schedule(schedule_for(jobs, Og * K * P)) {}
};

// Output rows shorter than this are gathered element by element.
constexpr int64_t kShortRow = 8;

// col[(c, kh, kw), (oh, ow)] = x[c, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw], 0 in the padding.
// x points at the group's first channel of one sample; rows of col are `ld`
// floats apart (P for one sample, N * P when samples sit side by side).
void im2col(const ConvGeom& g, int64_t Cg, const float* x, float* col, int64_t ld, bool parallel) {
#pragma omp parallel for if (parallel)
  for (int64_t c = 0; c < Cg; ++c) {
    const float* xc = x + c * g.H * g.W;
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        float* row = col + ((c * g.KH + kh) * g.KW + kw) * ld;
        const int64_t w_off = kw * g.dil_w - g.pad_w;
        if (g.OW < kShortRow) {  // a few pixels: plain loads beat fill/memcpy calls
          for (int64_t oh = 0; oh < g.OH; ++oh) {
            const int64_t ih = oh * g.stride_h - g.pad_h + kh * g.dil_h;
            const bool row_inside = ih >= 0 && ih < g.H;
            for (int64_t ow = 0; ow < g.OW; ++ow) {
              const int64_t iw = ow * g.stride_w + w_off;
              row[oh * g.OW + ow] = row_inside && iw >= 0 && iw < g.W ? xc[ih * g.W + iw] : 0.0f;
            }
          }
          continue;
        }
        const ValidRange ow_range = valid_range(w_off, g.stride_w, g.W, g.OW);
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          float* dst = row + oh * g.OW;
          const int64_t ih = oh * g.stride_h - g.pad_h + kh * g.dil_h;
          if (ih < 0 || ih >= g.H) {
            std::fill(dst, dst + g.OW, 0.0f);
            continue;
          }
          const float* src = xc + ih * g.W + w_off;
          std::fill(dst, dst + ow_range.lo, 0.0f);
          if (g.stride_w == 1) {
            std::memcpy(dst + ow_range.lo, src + ow_range.lo,
                        sizeof(float) * (ow_range.hi - ow_range.lo));
          } else {
            for (int64_t ow = ow_range.lo; ow < ow_range.hi; ++ow) dst[ow] = src[ow * g.stride_w];
          }
          std::fill(dst + ow_range.hi, dst + g.OW, 0.0f);
        }
      }
    }
  }
}

// Adjoint of im2col: dx = sum of col entries over every position that read
// each input element. Overwrites dx (the group's channels of one sample).
void col2im(const ConvGeom& g, int64_t Cg, const float* col, int64_t ld, float* dx,
            bool parallel) {
  // One thread per channel: the rows of a channel all write its plane.
#pragma omp parallel for if (parallel)
  for (int64_t c = 0; c < Cg; ++c) {
    float* dxc = dx + c * g.H * g.W;
    std::fill(dxc, dxc + g.H * g.W, 0.0f);
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const float* row = col + ((c * g.KH + kh) * g.KW + kw) * ld;
        const int64_t w_off = kw * g.dil_w - g.pad_w;
        const ValidRange ow_range = valid_range(w_off, g.stride_w, g.W, g.OW);
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const int64_t ih = oh * g.stride_h - g.pad_h + kh * g.dil_h;
          if (ih < 0 || ih >= g.H) continue;
          const float* src = row + oh * g.OW;
          float* dst = dxc + ih * g.W + w_off;
          for (int64_t ow = ow_range.lo; ow < ow_range.hi; ++ow) dst[ow * g.stride_w] += src[ow];
        }
      }
    }
  }
}

// Runs job(index, scratch, thread, inner_parallel) for every job, `scratch`
// being a per-thread buffer of scratch_floats.
template <class Job>
void run_jobs(Schedule schedule, int64_t jobs, int64_t scratch_floats, const Job& job) {
  if (schedule == Schedule::ParallelJobs) {
#pragma omp parallel
    {
      const Scratch buffer = scratch(scratch_floats);
      const int thread = omp_get_thread_num();
      // Static: which thread runs which job (and so the order of the per-thread
      // weight-gradient sums) depends on the thread count only, so runs repeat
      // bit for bit. The jobs are equal in size.
#pragma omp for schedule(static)
      for (int64_t j = 0; j < jobs; ++j) job(j, buffer.get(), thread, false);
    }
  } else {
    const Scratch buffer = scratch(scratch_floats);
    const bool inner_parallel = schedule == Schedule::ParallelInsideJobs;
    for (int64_t j = 0; j < jobs; ++j) job(j, buffer.get(), 0, inner_parallel);
  }
}

// ---- small output planes: all samples in one GEMM per group ----
// Late stages of a network on small images have planes of a few pixels; N
// thin [Og, K] x [K, P] products would run far below GEMM speed, so the
// samples sit side by side: [Og, K] x [K, N * P].

constexpr int64_t kBatchedMaxPlane = 64;

bool use_batched(const ConvGeom& g, const GroupGemm& s) { return s.P < kBatchedMaxPlane && g.N > 1; }

// cols[K, N * P] of group grp.
void batched_im2col(const ConvGeom& g, const GroupGemm& s, int64_t grp, const float* x,
                    float* cols) {
  const int64_t ld = g.N * s.P;
#pragma omp parallel for if (g.N * s.K * s.P >= kParallelMinMacs)
  for (int64_t n = 0; n < g.N; ++n)
    im2col(g, s.Cg, x + (n * g.C + grp * s.Cg) * s.HW, cols + n * s.P, ld, false);
}

// Moves group grp's outputs between [N, O, P] (tensor) and [Og, N * P] (GEMM) order.
void gather_outputs(const ConvGeom& g, const GroupGemm& s, int64_t grp, const float* t, float* m) {
  for (int64_t o = 0; o < s.Og; ++o)
    for (int64_t n = 0; n < g.N; ++n)
      std::memcpy(m + o * g.N * s.P + n * s.P, t + (n * g.O + grp * s.Og + o) * s.P,
                  sizeof(float) * s.P);
}

void batched_forward(const ConvGeom& g, const GroupGemm& s, const float* x, const float* w,
                     const float* bias, float* y) {
  const int64_t NP = g.N * s.P;
  const Scratch cols = scratch(s.K * NP), out = scratch(s.Og * NP);
  for (int64_t grp = 0; grp < g.groups; ++grp) {
    batched_im2col(g, s, grp, x, cols.get());
    gemm(false, false, s.Og, NP, s.K, 1.0f, w + grp * s.Og * s.K, cols.get(), 0.0f, out.get(), 1,
         0, 0, 0);
    for (int64_t o = 0; o < s.Og; ++o) {
      const float b = bias ? bias[grp * s.Og + o] : 0.0f;
      for (int64_t n = 0; n < g.N; ++n) {
        const float* src = out.get() + o * NP + n * s.P;
        float* dst = y + (n * g.O + grp * s.Og + o) * s.P;
        for (int64_t p = 0; p < s.P; ++p) dst[p] = src[p] + b;
      }
    }
  }
}

void batched_backward_data(const ConvGeom& g, const GroupGemm& s, const float* dy,
                           const float* w, float* dx) {
  const int64_t NP = g.N * s.P;
  const Scratch dys = scratch(s.Og * NP), dcols = scratch(s.K * NP);
  for (int64_t grp = 0; grp < g.groups; ++grp) {
    gather_outputs(g, s, grp, dy, dys.get());
    gemm(true, false, s.K, NP, s.Og, 1.0f, w + grp * s.Og * s.K, dys.get(), 0.0f, dcols.get(), 1,
         0, 0, 0);
#pragma omp parallel for if (g.N * s.K * s.P >= kParallelMinMacs)
    for (int64_t n = 0; n < g.N; ++n)
      col2im(g, s.Cg, dcols.get() + n * s.P, NP, dx + (n * g.C + grp * s.Cg) * s.HW, false);
  }
}

void batched_backward_weight(const ConvGeom& g, const GroupGemm& s, const float* x,
                             const float* dy, float* dw) {
  const int64_t NP = g.N * s.P;
  const Scratch dys = scratch(s.Og * NP), cols = scratch(s.K * NP);
  for (int64_t grp = 0; grp < g.groups; ++grp) {
    batched_im2col(g, s, grp, x, cols.get());
    gather_outputs(g, s, grp, dy, dys.get());
    gemm(false, true, s.Og, s.K, NP, 1.0f, dys.get(), cols.get(), 0.0f, dw + grp * s.Og * s.K, 1,
         0, 0, 0);
  }
}

bool is_depthwise(const ConvGeom& g) { return g.groups > 1 && g.groups == g.C && g.groups == g.O; }

// ---- depthwise: one filter per channel, planes processed independently ----

void depthwise_forward(const ConvGeom& g, const float* x, const float* w, const float* bias,
                       float* y) {
  const int64_t HW = g.H * g.W, P = g.OH * g.OW, sw = g.stride_w;
#pragma omp parallel for schedule(static) if (g.N * g.C * P * g.KH * g.KW >= kParallelMinMacs)
  for (int64_t plane = 0; plane < g.N * g.C; ++plane) {
    const int64_t c = plane % g.C;
    const float* xp = x + plane * HW;
    const float* wc = w + c * g.KH * g.KW;
    float* yp = y + plane * P;
    std::fill(yp, yp + P, bias ? bias[c] : 0.0f);
    // Output row outermost so that it stays in L1 while every tap adds into it.
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      float* dst = yp + oh * g.OW;
      for (int64_t kh = 0; kh < g.KH; ++kh) {
        const int64_t ih = oh * g.stride_h - g.pad_h + kh * g.dil_h;
        if (ih < 0 || ih >= g.H) continue;
        for (int64_t kw = 0; kw < g.KW; ++kw) {
          const float wv = wc[kh * g.KW + kw];
          const int64_t w_off = kw * g.dil_w - g.pad_w;
          const ValidRange r = valid_range(w_off, sw, g.W, g.OW);
          const float* src = xp + ih * g.W + w_off;
          if (sw == 1) {  // contiguous: vectorizes
            for (int64_t ow = r.lo; ow < r.hi; ++ow) dst[ow] += wv * src[ow];
          } else {
            for (int64_t ow = r.lo; ow < r.hi; ++ow) dst[ow] += wv * src[ow * sw];
          }
        }
      }
    }
  }
}

void depthwise_backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  const int64_t HW = g.H * g.W, P = g.OH * g.OW, sw = g.stride_w;
#pragma omp parallel for schedule(static) if (g.N * g.C * P * g.KH * g.KW >= kParallelMinMacs)
  for (int64_t plane = 0; plane < g.N * g.C; ++plane) {
    const int64_t c = plane % g.C;
    const float* dyp = dy + plane * P;
    const float* wc = w + c * g.KH * g.KW;
    float* dxp = dx + plane * HW;
    std::fill(dxp, dxp + HW, 0.0f);
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      const float* src = dyp + oh * g.OW;
      for (int64_t kh = 0; kh < g.KH; ++kh) {
        const int64_t ih = oh * g.stride_h - g.pad_h + kh * g.dil_h;
        if (ih < 0 || ih >= g.H) continue;
        for (int64_t kw = 0; kw < g.KW; ++kw) {
          const float wv = wc[kh * g.KW + kw];
          const int64_t w_off = kw * g.dil_w - g.pad_w;
          const ValidRange r = valid_range(w_off, sw, g.W, g.OW);
          float* dst = dxp + ih * g.W + w_off;
          if (sw == 1) {
            for (int64_t ow = r.lo; ow < r.hi; ++ow) dst[ow] += wv * src[ow];
          } else {
            for (int64_t ow = r.lo; ow < r.hi; ++ow) dst[ow * sw] += wv * src[ow];
          }
        }
      }
    }
  }
}

void depthwise_backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  const int64_t HW = g.H * g.W, P = g.OH * g.OW, sw = g.stride_w, taps = g.KH * g.KW;
#pragma omp parallel if (g.N * g.C * P * taps >= kParallelMinMacs)
  {
    // Per tap, products summed per output column: element-wise adds that
    // vectorize, where a running dot product would not (no reassociation).
    std::vector<float> tap_cols(taps * g.OW);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < g.C; ++c) {
      std::fill(tap_cols.begin(), tap_cols.end(), 0.0f);
      for (int64_t n = 0; n < g.N; ++n) {
        const float* xp = x + (n * g.C + c) * HW;
        const float* dyp = dy + (n * g.C + c) * P;
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const float* grad_row = dyp + oh * g.OW;
          for (int64_t kh = 0; kh < g.KH; ++kh) {
            const int64_t ih = oh * g.stride_h - g.pad_h + kh * g.dil_h;
            if (ih < 0 || ih >= g.H) continue;
            for (int64_t kw = 0; kw < g.KW; ++kw) {
              const int64_t w_off = kw * g.dil_w - g.pad_w;
              const ValidRange r = valid_range(w_off, sw, g.W, g.OW);
              const float* src = xp + ih * g.W + w_off;
              float* acc = tap_cols.data() + (kh * g.KW + kw) * g.OW;
              if (sw == 1) {
                for (int64_t ow = r.lo; ow < r.hi; ++ow) acc[ow] += grad_row[ow] * src[ow];
              } else {
                for (int64_t ow = r.lo; ow < r.hi; ++ow) acc[ow] += grad_row[ow] * src[ow * sw];
              }
            }
          }
        }
      }
      for (int64_t t = 0; t < taps; ++t) {
        double total = 0.0;
        for (int64_t ow = 0; ow < g.OW; ++ow) total += tap_cols[t * g.OW + ow];
        dw[c * taps + t] = static_cast<float>(total);
      }
    }
  }
}

}  // namespace

void conv2d_forward(const ConvGeom& g, const float* x, const float* w, const float* bias,
                    float* y) {
  if (g.N == 0 || g.O == 0 || g.OH == 0 || g.OW == 0) return;
  if (is_depthwise(g)) return depthwise_forward(g, x, w, bias, y);
  const GroupGemm s(g);
  if (use_batched(g, s)) return batched_forward(g, s, x, w, bias, y);
  run_jobs(s.schedule, s.jobs, s.pointwise ? 0 : s.K * s.P,
           [&](int64_t job, float* col, int, bool inner_parallel) {
             const int64_t n = job / g.groups, grp = job % g.groups;
             const float* xg = x + (n * g.C + grp * s.Cg) * s.HW;
             if (!s.pointwise) im2col(g, s.Cg, xg, col, s.P, inner_parallel);
             float* yg = y + (n * g.O + grp * s.Og) * s.P;
             if (bias)
               for (int64_t o = 0; o < s.Og; ++o)
                 std::fill(yg + o * s.P, yg + (o + 1) * s.P, bias[grp * s.Og + o]);
             gemm(false, false, s.Og, s.P, s.K, 1.0f, w + grp * s.Og * s.K,
                  s.pointwise ? xg : col, bias ? 1.0f : 0.0f, yg, 1, 0, 0, 0);
           });
}

void conv2d_backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  if (g.N == 0 || g.C == 0 || g.H == 0 || g.W == 0) return;
  if (is_depthwise(g)) return depthwise_backward_data(g, dy, w, dx);
  const GroupGemm s(g);
  if (use_batched(g, s)) return batched_backward_data(g, s, dy, w, dx);
  run_jobs(s.schedule, s.jobs, s.pointwise ? 0 : s.K * s.P,
           [&](int64_t job, float* col, int, bool inner_parallel) {
             const int64_t n = job / g.groups, grp = job % g.groups;
             float* dxg = dx + (n * g.C + grp * s.Cg) * s.HW;
             // 1x1: the input gradient is the column gradient itself.
             gemm(true, false, s.K, s.P, s.Og, 1.0f, w + grp * s.Og * s.K,
                  dy + (n * g.O + grp * s.Og) * s.P, 0.0f, s.pointwise ? dxg : col, 1, 0, 0, 0);
             if (!s.pointwise) col2im(g, s.Cg, col, s.P, dxg, inner_parallel);
           });
}

void conv2d_backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  const GroupGemm s(g);
  const int64_t weight_size = g.O * s.K;
  std::fill(dw, dw + weight_size, 0.0f);
  if (g.N == 0 || g.OH == 0 || g.OW == 0) return;
  if (is_depthwise(g)) return depthwise_backward_weight(g, x, dy, dw);
  if (use_batched(g, s)) return batched_backward_weight(g, s, x, dy, dw);
  // Samples are summed into dw. Parallel jobs each accumulate into their
  // thread's copy (thread 0 into dw itself), added up at the end.
  const int64_t copies = s.schedule == Schedule::ParallelJobs ? omp_get_max_threads() - 1 : 0;
  std::vector<float> partial(static_cast<size_t>(copies * weight_size), 0.0f);
  run_jobs(s.schedule, s.jobs, s.pointwise ? 0 : s.K * s.P,
           [&](int64_t job, float* col, int thread, bool inner_parallel) {
             const int64_t n = job / g.groups, grp = job % g.groups;
             const float* xg = x + (n * g.C + grp * s.Cg) * s.HW;
             if (!s.pointwise) im2col(g, s.Cg, xg, col, s.P, inner_parallel);
             float* acc = thread == 0 ? dw : partial.data() + (thread - 1) * weight_size;
             gemm(false, true, s.Og, s.K, s.P, 1.0f, dy + (n * g.O + grp * s.Og) * s.P,
                  s.pointwise ? xg : col, 1.0f, acc + grp * s.Og * s.K, 1, 0, 0, 0);
           });
  Eigen::Map<Eigen::VectorXf> total(dw, weight_size);
  for (int64_t t = 0; t < copies; ++t)
    total += Eigen::Map<const Eigen::VectorXf>(partial.data() + t * weight_size, weight_size);
}

}  // namespace pk::cpu
