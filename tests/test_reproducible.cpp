// The same flags, seed and thread count give the same quantized model on
// every machine that runs the same kernel path (kernel_path(): instruction
// set and GEMM blocking). The hashes below were recorded from these runs;
// a machine that sums in another order, or a change that alters any
// result, fails here. A deliberate change of results updates them (the
// failure message prints the new hash).
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/safetensors.h"
#include "kernels/kernels.h"
#include "quant/run.h"
#include "quant/run_checkpoint.h"
#include "tests/fixture_runs.h"
#include "tests/testing.h"

using namespace pk;
using pk::testing::TempDir;
namespace fs = std::filesystem;

namespace {

std::string hex(uint64_t h) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h));
  return text;
}

QuantizeResult fixture_run(const std::string& fixture, const fs::path& output_dir) {
  return quantize(testing::fixture_run_config(fixture, 4, 20, output_dir));
}

}  // namespace

// Each instruction set's path sums in its own order, so each has its hashes.
TEST_CASE("a fixture run gives the recorded model hash on every machine (same kernel path)") {
  struct Case {
    const char* isa;
    const char* fixture;
    const char* hash;
  };
  const std::string in_use = cpu_isa();
  const std::vector<std::string> isas = cpu_isas();
  for (const Case& c : {Case{"avx2", "resnet18_w16", "282d924050326105"},
                        Case{"avx2", "deit_t32", "c7b8582d93f16bc0"},
                        Case{"avx512", "resnet18_w16", "b499fc11d88d3850"},
                        Case{"avx512", "deit_t32", "7392b6d2dfc4497b"}}) {
    CAPTURE(c.isa);
    CAPTURE(c.fixture);
    if (std::find(isas.begin(), isas.end(), c.isa) == isas.end()) {
      std::printf("skipped: this CPU does not run %s\n", c.isa);
      continue;
    }
    set_cpu_isa(c.isa);
    TempDir dir;
    const QuantizeResult result = fixture_run(c.fixture, dir.path);
    const std::string hash = hex(tensors_fingerprint(load_safetensors(result.trained_model_path)));
#if defined(PACKPTQ_SANITIZER_BUILD)
    // The hashes are those of the release flags (-O3); a sanitizer build
    // (-O2, instrumented) fuses other multiply-adds, so here a second run
    // must give the first one's hash.
    TempDir again;
    CHECK(hex(tensors_fingerprint(load_safetensors(fixture_run(c.fixture, again.path).trained_model_path))) ==
          hash);
#else
    CHECK_MESSAGE(hash == c.hash, c.fixture << ": model hash " << hash << " (top-1 "
                                            << result.quantized.top1 << ") on the kernel path "
                                            << kernel_path(Device::CPU));
#endif
  }
  set_cpu_isa(in_use);
}

TEST_CASE("PACKPTQ_CPU_ISA: packptq --version names the sets, one the CPU lacks is refused") {
  TempDir dir;
  const std::string out = dir.file("out.txt");
  const auto run = [&](const std::string& env) {
    const int status = std::system((env + " " + PACKPTQ_BINARY + " --version > " + out + " 2>&1").c_str());
    std::ifstream in(out);
    return std::make_pair(WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                          std::string(std::istreambuf_iterator<char>(in), {}));
  };
  for (const std::string& isa : cpu_isas()) {
    const auto [code, text] = run("PACKPTQ_CPU_ISA=" + isa);
    CHECK(code == 0);
    CHECK_MESSAGE(text.find("(in use: " + isa + ")") != std::string::npos, text);
  }
  const auto [code, text] = run("PACKPTQ_CPU_ISA=avx9000");
  CHECK(code == 2);
  CHECK_MESSAGE(text.find("PACKPTQ_CPU_ISA names 'avx9000'") != std::string::npos, text);
}
