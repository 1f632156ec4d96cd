// Kernel throughput benchmark (not a test): the machine's peak (a loop of
// independent fused multiply-adds), then GEMM and conv2d forward/backward
// GFLOP/s of the CPU backend on ResNet-18-like shapes with their share of
// that peak, and the element-wise passes of reconstruction (AdaRound, fake
// quantization, Adam, the MSE range search) in nanoseconds per element,
// from the median wall time over a few repetitions after one warm-up run. The kernels run once per
// instruction set this CPU runs (cpu_isas()), each figure with its share of that set's peak.
//
// Usage: bench_kernels [--threads N] [--quick] [--isa NAME]
//   --threads N  OpenMP thread count; default: OpenMP's.
//   --quick      batch 4 instead of 16 and fewer repetitions.
//   --isa NAME   only this instruction set (avx2, avx512).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <random>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "kernels/kernels.h"

namespace {

// Peak float32 FLOP/s with the widest registers of an instruction set: every
// thread runs independent FMA chains, more than two FMA ports times a
// 4-cycle latency keep busy, and few enough to stay in registers (16 ymm,
// 32 zmm), nothing else.
constexpr int kChainsAvx2 = 12, kChainsAvx512 = 24;
constexpr int64_t kPeakIterations = 50'000'000;

// The sum of the chains' lanes, so that no chain is dead code.
float lane_sum(const void* chains, size_t bytes) {
  std::vector<float> lanes(bytes / sizeof(float));
  std::memcpy(lanes.data(), chains, bytes);
  float sum = 0.0f;
  for (float v : lanes) sum += v;
  return sum;
}

#if defined(__x86_64__)
// One function per instruction set: intrinsics need the target attribute.
__attribute__((target("avx512f"))) float fma_chains_avx512(int64_t iterations, float seed) {
  __m512 acc[kChainsAvx512], a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(seed * 1e-7f);
  for (__m512& x : acc) x = _mm512_set1_ps(seed);
  for (int64_t i = 0; i < iterations; ++i)
#pragma GCC unroll 32
    for (__m512& x : acc) x = _mm512_fmadd_ps(x, a, b);
  return lane_sum(acc, sizeof acc);
}

__attribute__((target("avx2,fma"))) float fma_chains_avx2(int64_t iterations, float seed) {
  __m256 acc[kChainsAvx2], a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(seed * 1e-7f);
  for (__m256& x : acc) x = _mm256_set1_ps(seed);
  for (int64_t i = 0; i < iterations; ++i)
#pragma GCC unroll 32
    for (__m256& x : acc) x = _mm256_fmadd_ps(x, a, b);
  return lane_sum(acc, sizeof acc);
}
#endif

volatile float g_sink;  // keeps the loops' results alive

// GFLOP/s of the FMA loop with vectors of `width` floats on all threads.
double peak_gflops(int width) {
#if defined(__x86_64__)
  const auto start = std::chrono::steady_clock::now();
  int threads = 1;
#pragma omp parallel
  {
#pragma omp single
    threads = omp_get_num_threads();
    const float seed = 1.0f + omp_get_thread_num();
    g_sink = width == 16 ? fma_chains_avx512(kPeakIterations, seed) : fma_chains_avx2(kPeakIterations, seed);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int chains = width == 16 ? kChainsAvx512 : kChainsAvx2;
  return 2.0 * width * chains * kPeakIterations * threads / seconds * 1e-9;
#else
  (void)width;
  return 0.0;
#endif
}

double g_peak = 0.0;  // of the instruction set being measured

std::string share_of_peak(double gflops) {
  if (g_peak <= 0.0) return "";
  char text[32];
  std::snprintf(text, sizeof text, " (%3.0f%%)", 100.0 * gflops / g_peak);
  return text;
}

std::vector<float> random_buffer(int64_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// Median wall time in seconds of `reps` runs of f, after one warm-up run.
double median_seconds(int reps, const std::function<void()>& f) {
  f();
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    auto start = std::chrono::steady_clock::now();
    f();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void bench_gemm(const char* label, int64_t M, int64_t N, int64_t K, int reps, std::mt19937& rng) {
  std::vector<float> a = random_buffer(M * K, rng), b = random_buffer(K * N, rng), c(M * N);
  double s = median_seconds(reps, [&] {
    pk::cpu::gemm(false, false, M, N, K, 1.0f, a.data(), b.data(), 0.0f, c.data(), 1, 0, 0, 0);
  });
  const double gflops = 2.0 * M * N * K / s * 1e-9;
  std::printf("  %-34s %5ldx%5ldx%5ld  %8.2f ms  %7.1f GFLOP/s%s\n", label, static_cast<long>(M),
              static_cast<long>(N), static_cast<long>(K), s * 1e3, gflops, share_of_peak(gflops).c_str());
}

void bench_conv(const char* label, int64_t N, int64_t C, int64_t HW, int64_t O, int64_t k,
                int64_t stride, int64_t groups, int reps, std::mt19937& rng) {
  pk::ConvGeom g{};
  g.N = N, g.C = C, g.H = g.W = HW, g.O = O, g.KH = g.KW = k;
  g.stride_h = g.stride_w = stride, g.pad_h = g.pad_w = k / 2, g.dil_h = g.dil_w = 1;
  g.groups = groups;
  g.OH = g.OW = (HW + 2 * (k / 2) - k) / stride + 1;
  std::vector<float> x = random_buffer(N * C * HW * HW, rng);
  std::vector<float> w = random_buffer(O * (C / groups) * k * k, rng);
  std::vector<float> bias = random_buffer(O, rng);
  std::vector<float> dy = random_buffer(N * O * g.OH * g.OW, rng);
  std::vector<float> y(dy.size()), dx(x.size()), dw(w.size());
  // Each of the three passes is one multiply-add per (output, tap) pair.
  const double gflop = 2.0 * N * O * g.OH * g.OW * (C / groups) * k * k * 1e-9;
  double fwd = median_seconds(reps, [&] { pk::cpu::conv2d_forward(g, x.data(), w.data(), bias.data(), y.data()); });
  double bwd_data = median_seconds(reps, [&] { pk::cpu::conv2d_backward_data(g, dy.data(), w.data(), dx.data()); });
  double bwd_weight = median_seconds(reps, [&] { pk::cpu::conv2d_backward_weight(g, x.data(), dy.data(), dw.data()); });
  std::printf("  %-34s %8.2f ms %6.1f%s | %8.2f ms %6.1f%s | %8.2f ms %6.1f%s\n", label,
              fwd * 1e3, gflop / fwd, share_of_peak(gflop / fwd).c_str(), bwd_data * 1e3,
              gflop / bwd_data, share_of_peak(gflop / bwd_data).c_str(), bwd_weight * 1e3,
              gflop / bwd_weight, share_of_peak(gflop / bwd_weight).c_str());
}

// The per-weight and per-activation passes of one reconstruction step on a
// weight of resnet18 layer4 (512 x 512 x 3 x 3, channel-wise) and on an
// activation of its layer1 at batch 16 (per tensor), and the MSE search of
// an activation quantizer's range (100 candidates): ns per element.
void bench_elementwise(int reps, std::mt19937& rng) {
  const pk::AxisGeom weight_geom{1, 512, 512 * 9}, act_geom{1, 1, 16 * 64 * 56 * 56};
  const int64_t nw = 512 * 512 * 9, na = act_geom.inner;
  std::vector<float> w = random_buffer(nw, rng), alpha = random_buffer(nw, rng),
                     dy = random_buffer(nw, rng);
  std::vector<float> scale(512, 0.02f), zero(512, 8.0f), y(nw), dalpha(nw), m(nw), v(nw);
  std::vector<float> x = random_buffer(na, rng), dya = random_buffer(na, rng), ya(na), dxa(na);
  const float act_scale = 0.1f, act_zero = 8.0f;
  float value = 0.0f, dscale = 0.0f;
  auto line = [&](const char* label, int64_t n, const std::function<void()>& f) {
    std::printf("  %-34s %8.3f ns/element\n", label, median_seconds(reps, f) / n * 1e9);
  };
  line("adaround soft forward", nw, [&] {
    pk::cpu::adaround_forward(weight_geom, w.data(), alpha.data(), scale.data(), zero.data(), 15.0f,
                              false, y.data());
  });
  line("adaround backward", nw, [&] {
    pk::cpu::adaround_backward(weight_geom, w.data(), alpha.data(), scale.data(), zero.data(),
                               15.0f, dy.data(), dalpha.data());
  });
  line("rounding regularizer and gradient", nw, [&] {
    pk::cpu::adaround_regularizer(nw, alpha.data(), 12.0f, 0.01f, &value, dalpha.data());
  });
  line("adam update", nw, [&] {
    pk::cpu::adam_update(nw, alpha.data(), dalpha.data(), m.data(), v.data(), 1e-7f, 0.9f, 0.999f,
                         1e-8f, 0.0f, 3);
  });
  line("fake quant forward (activation)", na, [&] {
    pk::cpu::fake_quant_forward(act_geom, x.data(), &act_scale, &act_zero, 15.0f, ya.data());
  });
  line("fake quant backward (activation)", na, [&] {
    pk::cpu::fake_quant_backward(act_geom, x.data(), &act_scale, &act_zero, 15.0f, dya.data(),
                                 dxa.data(), &dscale);
  });
  const float lo = -1.0f, hi = 1.0f;
  std::vector<double> scores(100);
  line("MSE range search, per candidate", na * 100, [&] {
    pk::cpu::quant_range_scores(act_geom, x.data(), &lo, &hi, 100, 15.0f, 2.4f, scores.data());
  });
}

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s [--threads N] [--quick] [--isa NAME]\n", argv0);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::vector<std::string> isas = pk::cpu_isas();
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--isa") == 0 && i + 1 < argc) {
      isas = {argv[++i]};
    } else if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      int threads = std::atoi(argv[++i]);
      if (threads < 1) usage(argv[0]);
      omp_set_num_threads(threads);
    } else {
      usage(argv[0]);
    }
  }
  const int reps = quick ? 3 : 7;
  const int64_t batch = quick ? 4 : 16;
  std::mt19937 rng(1);
  std::printf("threads %d, %d repetitions (median)\n", omp_get_max_threads(), reps);
  double peak_avx2 = 0.0, peak_avx512 = 0.0;
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    peak_avx2 = peak_gflops(8);
    std::printf("peak (FMA loop, AVX2): %.1f GFLOP/s\n", peak_avx2);
  }
  if (__builtin_cpu_supports("avx512f")) {
    peak_avx512 = peak_gflops(16);
    std::printf("peak (FMA loop, AVX-512): %.1f GFLOP/s\n", peak_avx512);
  }
#endif

  for (const std::string& isa : isas) {
    try {
      pk::set_cpu_isa(isa);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_kernels: %s\n", e.what());
      return 2;
    }
    g_peak = isa == "avx512" ? peak_avx512 : isa == "avx2" ? peak_avx2 : 0.0;
    std::printf("\nkernels: %s (shares of the %s peak)\n", pk::kernel_path(pk::Device::CPU).c_str(),
                isa.c_str());
    std::printf("GEMM (row-major C = A B)               M x    N x    K\n");
    bench_gemm("square 512", 512, 512, 512, reps, rng);
    bench_gemm("square 1024", 1024, 1024, 1024, reps, rng);
    bench_gemm("resnet18 layer1 conv as GEMM", 64, 3136, 576, reps, rng);

    std::printf("conv2d, batch %ld                      forward GFLOP/s | backward data  | backward weight\n",
                static_cast<long>(batch));
    bench_conv("64->64 3x3 at 56x56", batch, 64, 56, 64, 3, 1, 1, reps, rng);
    bench_conv("128->128 3x3 at 28x28", batch, 128, 28, 128, 3, 1, 1, reps, rng);
    bench_conv("depthwise 32ch 3x3 at 112x112", batch, 32, 112, 32, 3, 1, 32, reps, rng);
    std::printf("element-wise passes of reconstruction\n");
    bench_elementwise(reps, rng);
  }
  return 0;
}
