// Short quantization runs of the shared fixtures for the tests of whole runs.
#pragma once

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
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

// W{bits}A{bits} Pack-PTQ with per-channel weights on 64 calibration images
// of fashion32, `iterations` per target, 2 threads, no error analysis.
inline QuantizeConfig fixture_run_config(const std::string& fixture, int bits, int64_t iterations,
                                         const std::filesystem::path& output_dir) {
  QuantizeConfig config;
  config.dataset_path = (fixtures_dir() / "fashion32").string();
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
