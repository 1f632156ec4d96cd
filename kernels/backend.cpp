// Device -> kernel table dispatch.
#include "kernels/kernels.h"

#include <stdexcept>

#include "kernels/cpu/isa.h"

namespace pk {

#define PK_CPU_ENTRY(name, ...) &cpu::name,
static const Backend kCpuBackend = {PK_KERNELS(PK_CPU_ENTRY)};
#undef PK_CPU_ENTRY

#ifdef PACKPTQ_WITH_CUDA
// Defined in kernels/cuda/backend.cu: the CUDA table, or null when no GPU is
// present at run time.
const Backend* cuda_backend_if_available();
#endif

const char* device_name(Device device) { return device == Device::CPU ? "cpu" : "cuda"; }

bool device_available(Device device) {
  if (device == Device::CPU) return true;
#ifdef PACKPTQ_WITH_CUDA
  return cuda_backend_if_available() != nullptr;
#else
  return false;
#endif
}

bool cuda_backend_built() {
#ifdef PACKPTQ_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::string kernel_path(Device device) {
  if (device == Device::CUDA) return "cuda";
#if defined(__AVX2__) && defined(__FMA__)
  const char* baseline = "x86-64 AVX2+FMA";
#elif defined(__x86_64__)
  const char* baseline = "x86-64 SSE2";
#else
  const char* baseline = "portable";
#endif
  const std::string isa = cpu::active_isa() == cpu::Isa::Avx512 ? "x86-64 AVX-512" : baseline;
  return isa + ", " + cpu::gemm_summation_order();
}

const Backend& backend(Device device) {
  if (device == Device::CPU) return kCpuBackend;
#ifdef PACKPTQ_WITH_CUDA
  if (const Backend* b = cuda_backend_if_available()) return *b;
  throw std::runtime_error("device cuda requested but no CUDA device is available");
#else
  throw std::runtime_error("device cuda requested but packptq was built without the CUDA backend");
#endif
}

}  // namespace pk
