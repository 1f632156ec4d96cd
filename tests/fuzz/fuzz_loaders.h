// What each fuzz target does with its input, as one function per loader, so
// that tests/test_fuzz_regressions.cpp feeds every saved input to exactly
// the code that failed on it. A std::exception is a correct answer to a bad
// file (the loaders throw clear errors); a crash, a sanitizer report, a hang
// or unbounded memory is a bug.
#pragma once

#include <algorithm>
#include <cmath>
#include <exception>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "engine/rng.h"
#include "engine/safetensors.h"
#include "engine/torch_checkpoint.h"
#include "nets/load_model.h"
#include "nets/net.h"
#include "quant/model_io.h"
#include "tools/data/dataset.h"
#include "tools/data/image.h"

namespace pk::fuzz {

inline void load_safetensors_file(const std::string& path) {
  // The metadata reader runs first when a quantized model is loaded.
  try {
    load_safetensors_metadata(path);
  } catch (const std::exception&) {
  }
  load_safetensors(path);
}

// Lists the state dicts, then materializes each of them.
inline void load_torch_file(const std::unique_ptr<Checkpoint>& checkpoint) {
  for (size_t i = 0; i < checkpoint->state_dicts().size(); ++i) checkpoint->load(i);
}
inline void load_torch_zip_file(const std::string& path) {
  load_torch_file(open_torch_checkpoint(path));
}
inline void load_torch_legacy_file(const std::string& path) {
  load_torch_file(open_legacy_torch_checkpoint(path));
}

// Whether a config asks for a net small enough to build in a fuzz run. Its
// sizes are the author's request (a config of 10^12 weights fails for want
// of memory, as it should), so nets are built only when every number is at
// most 128 in magnitude or beyond int64 (which the reader must refuse) and
// every list holds at most 8 values.
inline bool small_net_config(const nlohmann::json& value) {
  if (value.is_number()) {
    const double v = std::fabs(value.get<double>());
    return v <= 128 || v >= 9.3e18;
  }
  if (value.is_array() && value.size() > 8) return false;
  if (value.is_structured())
    for (const nlohmann::json& item : value)
      if (!small_net_config(item)) return false;
  return true;
}

// read_model_config, then the net built from it as load_model builds it:
// the settings reach every layer's shape. The model is the file's own
// model_name when that is a known one, so that every family's settings are
// read, else resnet18.
inline void load_model_config_file(const std::string& path) {
  std::string model_name = "resnet18";
  std::ifstream in(path);
  const nlohmann::json peek = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (peek.is_object() && peek.contains("model_name") && peek["model_name"].is_string()) {
    const std::vector<std::string>& known = model_names();
    if (std::find(known.begin(), known.end(), peek["model_name"]) != known.end())
      model_name = peek["model_name"];
  }
  const nlohmann::json config = read_model_config(path, model_name);
  if (small_net_config(config)) create_net(model_name, config);
}

// The net's config is stored in the file: the same limit on its size.
inline void load_quant_model_file(const std::string& path) {
  try {
    const auto metadata = load_safetensors_metadata(path);
    const auto description = metadata.find("packptq");
    if (description != metadata.end()) {
      const nlohmann::json parsed = nlohmann::json::parse(description->second, nullptr, false);
      if (parsed.is_object() && parsed.contains("model_config") &&
          !small_net_config(parsed["model_config"]))
        return;
    }
  } catch (const std::exception&) {
  }
  load_quantized_model(path);
}

// An ImageFolder image as load_batch reads it: decoded, then through the
// evaluation transform and the calibration augmentation.
inline void load_jpeg_file(const std::string& path) {
  const data::Image image = data::read_jpeg(path);
  const data::PreprocessConfig config = data::reference_preprocess_config(32);
  std::vector<float> out(3 * 32 * 32);
  data::preprocess(image, config, out.data());
  Generator gen(0);
  data::preprocess_augmented(image, config, gen, out.data());
}

// The loaders by target name without its "fuzz_" prefix.
inline const std::map<std::string, void (*)(const std::string&)>& loaders() {
  static const std::map<std::string, void (*)(const std::string&)> by_name = {
      {"safetensors", load_safetensors_file},   {"torch_zip", load_torch_zip_file},
      {"torch_legacy", load_torch_legacy_file}, {"model_config", load_model_config_file},
      {"quant_model", load_quant_model_file},   {"jpeg", load_jpeg_file}};
  return by_name;
}

// Runs a loader on a file; returns the error it gave, "" when the file loaded.
inline std::string try_load(void (*loader)(const std::string&), const std::string& path) {
  try {
    loader(path);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace pk::fuzz
