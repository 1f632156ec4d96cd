// Choosing the CPU kernels' instruction set at run time. The build targets
// AVX2+FMA throughout; files compiled for wider sets (gemm_avx512.cpp) are
// only called when this machine and its OS support them, so one binary runs
// on any x86-64 with AVX2.
//
// The default is the widest set the CPU and OS support: on a full-width
// AVX-512 machine its GEMM ran 1.6-1.8x faster than Eigen's AVX2 one
// (docs/PERFORMANCE.md). The two paths sum in different orders, so
// PACKPTQ_CPU_ISA (or set_cpu_isa) names one to reproduce a model made
// elsewhere.
#include "kernels/cpu/isa.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/kernels.h"

namespace pk {

namespace {

#if defined(__AVX2__) && defined(__FMA__)
constexpr const char* kBaselineName = "avx2";
#elif defined(__x86_64__)
constexpr const char* kBaselineName = "sse2";
#else
constexpr const char* kBaselineName = "portable";
#endif

bool machine_has_avx512() {
#if defined(PACKPTQ_WITH_AVX512)
  // libgcc's check includes the OS's support for the ZMM state (XGETBV).
  return __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

// What this machine and build run, narrowest first.
std::vector<cpu::Isa> available_isas() {
  std::vector<cpu::Isa> isas{cpu::Isa::Baseline};
  if (machine_has_avx512()) isas.push_back(cpu::Isa::Avx512);
  return isas;
}

const char* isa_name(cpu::Isa isa) { return isa == cpu::Isa::Avx512 ? "avx512" : kBaselineName; }

cpu::Isa parse_isa(const std::string& name, const char* source) {
  std::string names;
  for (cpu::Isa isa : available_isas()) {
    if (name == isa_name(isa)) return isa;
    names += (names.empty() ? "" : ", ") + std::string(isa_name(isa));
  }
  throw std::invalid_argument(std::string(source) + " names '" + name +
                              "', which this CPU or build does not run (it runs: " + names + ")");
}

// -1 until first asked: then the environment's choice or the default.
std::atomic<int> chosen_isa{-1};

}  // namespace

std::vector<std::string> cpu_isas() {
  std::vector<std::string> names;
  for (cpu::Isa isa : available_isas()) names.push_back(isa_name(isa));
  return names;
}

std::string cpu_isa() { return isa_name(cpu::active_isa()); }

void set_cpu_isa(const std::string& name) {
  chosen_isa = static_cast<int>(parse_isa(name, "set_cpu_isa"));
}

namespace cpu {

Isa active_isa() {
  int isa = chosen_isa.load(std::memory_order_relaxed);
  if (isa >= 0) return static_cast<Isa>(isa);
  const char* forced = std::getenv("PACKPTQ_CPU_ISA");
  // The default: the widest set available.
  const Isa picked = forced && *forced ? parse_isa(forced, "PACKPTQ_CPU_ISA") : available_isas().back();
  chosen_isa = static_cast<int>(picked);
  return picked;
}

}  // namespace cpu

}  // namespace pk
