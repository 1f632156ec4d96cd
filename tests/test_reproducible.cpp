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
#include "tests/fixture_runs.h"
#include "tests/testing.h"

using namespace pk;
using pk::testing::TempDir;
namespace fs = std::filesystem;

namespace {

// FNV-1a over every tensor of the file in name order: name, shape, values.
uint64_t model_hash(const std::string& path) {
  uint64_t h = 1469598103934665603ull;
  auto add = [&](const void* data, size_t bytes) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  };
  for (const auto& [name, tensor] : load_safetensors(path)) {  // std::map: sorted
    add(name.data(), name.size());
    add(tensor.shape().data(), tensor.shape().size() * sizeof(int64_t));
    if (tensor.dtype() == DType::I64) {
      const std::vector<int64_t> v = tensor.to_int64_vector();
      add(v.data(), v.size() * sizeof(int64_t));
    } else {
      const std::vector<float> v = tensor.to_vector();
      add(v.data(), v.size() * sizeof(float));
    }
  }
  return h;
}

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
    const std::string hash = hex(model_hash(result.trained_model_path));
    CHECK_MESSAGE(hash == c.hash, c.fixture << ": model hash " << hash << " (top-1 "
                                            << result.quantized.top1 << ") on the kernel path "
                                            << kernel_path(Device::CPU));
  }
}
