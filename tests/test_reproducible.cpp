// The same flags, seed and thread count give the same quantized model on
// every machine that runs the same kernel path (kernel_path(): instruction
// set and GEMM blocking). The hashes below were recorded from these runs;
// a machine that sums in another order, or a change that alters any
// result, fails here. A deliberate change of results updates them (the
// failure message prints the new hash).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/safetensors.h"
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

TEST_CASE("a fixture run gives the recorded model hash on every machine (same kernel path)") {
  struct Case {
    const char* fixture;
    const char* hash;
  };
  for (const Case& c : {Case{"resnet18_w16", "282d924050326105"}, Case{"deit_t32", "c7b8582d93f16bc0"}}) {
    CAPTURE(c.fixture);
    TempDir dir;
    const QuantizeResult result = fixture_run(c.fixture, dir.path);
    const std::string hash = hex(tensors_fingerprint(load_safetensors(result.trained_model_path)));
    CHECK_MESSAGE(hash == c.hash, c.fixture << ": model hash " << hash << " (top-1 "
                                            << result.quantized.top1 << ") on the kernel path "
                                            << kernel_path(Device::CPU));
  }
}
