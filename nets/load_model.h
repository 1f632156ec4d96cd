// A float network from the files users have: a model name, optionally a
// config.json with the settings that differ from its standard configuration,
// and a checkpoint (torch.save zip or legacy, or safetensors).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "nets/net.h"

namespace pk {

// The config.json at `path` as a JSON object. Throws std::runtime_error
// naming the file when it is missing, not JSON, not an object, or describes
// another model_name than `model_name`.
nlohmann::json read_model_config(const std::string& path, const std::string& model_name);

// Builds `model_name` (configured by the config.json at `model_config_path`
// when not empty), loads `weights_path` strictly, its names adapted by
// Net::adapt_checkpoint, and switches the net to eval mode. Of the state
// dicts a training checkpoint holds (open_checkpoint()), it loads the first
// whose names fit the net, preferring the plain weights to an EMA copy
// unless `ema` asks for the copy. Throws ConfigError for an unknown model
// name or an empty weights path, and std::runtime_error naming the file for
// a bad config, an `ema` request the file cannot meet, or a checkpoint that
// does not fit the model (its state dicts with their tensor counts, and a
// few of the closest one's mismatched keys, and how many more).
std::shared_ptr<Net> load_model(const std::string& model_name, const std::string& model_config_path,
                                const std::string& weights_path, bool ema = false);

}  // namespace pk
