// Built with -ffp-contract=off: every product below is rounded to float
// before it is added or subtracted (see the header).
#include "kernels/cpu/unfused_float.h"

#include <Eigen/Core>
#include <limits>
#include <type_traits>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/quant_views.h"
#include "kernels/cpu/vector_avx512.h"

namespace pk::cpu {

using namespace quant_views;

float range_shrink(int64_t k) { return static_cast<float>(1.0 - 0.01 * static_cast<double>(k)); }

ScaledRange scaled_range(float lo, float hi, float factor, float qmax) {
  const float min = lo * factor, max = hi * factor;
  return {min, (max - min) / qmax};
}

template <typename Real>
double quant_error_power_sum(const float* x, int64_t n, float step, float zero_point, float qmax,
                             float p) {
#if defined(PACKPTQ_WITH_AVX512)
  if (std::is_same_v<Real, float> && active_isa() == Isa::Avx512)
    return quant_error_power_sum_avx512(x, n, step, zero_point, qmax, p);
#endif
  constexpr Real kTiny = std::numeric_limits<Real>::min();  // 0^p through the clamp
  double s = 0.0;
  in_chunks(0, n, [&](int64_t i, int64_t len) {
    const ConstArrayMap v(x + i, len);
    const ArrayChunk level = ((v / step).rint() + zero_point).max(0.0f).min(qmax);
    const ArrayChunk err = (v - (level - zero_point) * step).abs();
    s += static_cast<double>(
        (static_cast<Real>(p) * err.template cast<Real>().max(kTiny).log()).exp().sum());
  });
  return s;
}

template double quant_error_power_sum<float>(const float*, int64_t, float, float, float, float);
template double quant_error_power_sum<double>(const float*, int64_t, float, float, float, float);

}  // namespace pk::cpu
