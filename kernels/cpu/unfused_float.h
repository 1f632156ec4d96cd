// Quantization arithmetic that must round every float operation as the
// reference's separate float32 (and Python float) operations round it. Its
// .cpp is the one source built with -ffp-contract=off (kernels/CMakeLists.txt):
// a fused multiply-add skips rounding a product, which moves a scale or a
// quantization error by an ulp, and the MSE range search ranks candidates
// whose scores differ by 1e-7. Callers leave this arithmetic here rather
// than inline, where their own flags may fuse it.
#pragma once

#include <cstdint>

namespace pk::cpu {

// The shrink factor of the MSE search's candidate k: 1 - 0.01 k in double,
// rounded to float, as Python forms it.
float range_shrink(int64_t k);

// The range [lo, hi] scaled by `factor`, each end rounded to float: its lower
// end, and the step that cuts it into `qmax` intervals, (max - min) / qmax.
struct ScaledRange {
  float min, step;
};
ScaledRange scaled_range(float lo, float hi, float factor, float qmax);

// Sum over x[0, n) of |x - q(x)|^p, where q quantizes to the levels
// 0 .. qmax of `step` and `zero_point` and rounds (level - z) * step to float,
// as the fake quantizer outputs it. err^p is exp(p log err), a zero error
// taken as the smallest normal Real, in Real: float (fast, Eigen vectorizes
// it; on the AVX-512 path vector_avx512.cpp's version) or double (about 7x
// slower: Eigen's double log is scalar). Defined for float and double.
template <typename Real>
double quant_error_power_sum(const float* x, int64_t n, float step, float zero_point, float qmax,
                             float p);

}  // namespace pk::cpu
