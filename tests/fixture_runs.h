// Short quantization runs of the shared fixtures for the tests of whole runs.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "quant/run_config.h"
#include "tests/testing.h"

namespace pk::testing {

inline std::filesystem::path fixture_model_dir(const std::string& fixture) {
  return fixtures_dir() / "models" / fixture;
}

// The architecture name in the fixture's config.json ("resnet18", "deit_tiny", ...).
inline std::string fixture_model_name(const std::string& fixture) {
  std::ifstream in(fixture_model_dir(fixture) / "config.json");
  return nlohmann::json::parse(in).at("model_name").get<std::string>();
}

// Evaluations take most of a short fixture run. When the environment sets
// PACKPTQ_TEST_VAL_PER_CLASS=N (the sanitizer builds of tools/sanitize.sh
// do), the whole-run tests evaluate on at most N val images per class;
// calibration, and with it every quantized model, stays the same.
inline size_t whole_run_val_per_class(size_t usual) {
  const char* text = std::getenv("PACKPTQ_TEST_VAL_PER_CLASS");
  if (!text || !*text) return usual;
  const int count = std::atoi(text);
  if (count < 1)
    throw std::invalid_argument(std::string("PACKPTQ_TEST_VAL_PER_CLASS must be at least 1, got ") +
                                text);
  return std::min(usual, static_cast<size_t>(count));
}

// fashion32, or all of its train/ with whole_run_val_per_class() images of
// each class of val/.
inline std::filesystem::path whole_run_dataset() {
  const std::filesystem::path full = fixtures_dir() / "fashion32";
  const size_t all = SIZE_MAX;
  const size_t per_class = whole_run_val_per_class(all);
  if (per_class == all) return full;
  static TempDir subset;
  static bool linked = false;
  if (!linked) {
    std::filesystem::create_directory_symlink(full / "train", subset.path / "train");
    link_image_subset(full, subset.path, "val", per_class);
    linked = true;
  }
  return subset.path;
}

// W{bits}A{bits} Pack-PTQ with per-channel weights on 64 calibration images
// of whole_run_dataset(), `iterations` per target, 2 threads, no error analysis.
inline QuantizeConfig fixture_run_config(const std::string& fixture, int bits, int64_t iterations,
                                         const std::filesystem::path& output_dir) {
  QuantizeConfig config;
  config.dataset_path = whole_run_dataset().string();
  config.model_name = fixture_model_name(fixture);
  config.model_config = (fixture_model_dir(fixture) / "config.json").string();
  config.weights = (fixture_model_dir(fixture) / "model.safetensors").string();
  config.weight_bits = config.activation_bits = bits;
  config.weight_channel_wise = true;
  config.calibration_samples = 64;
  config.calibration_iterations = iterations;
  config.analysis_images = 0;
  config.threads = 2;
  config.output_dir = output_dir.string();
  return config;
}

}  // namespace pk::testing
