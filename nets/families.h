// Family builders behind create_net() (nets/registry.cpp maps each model
// name to one) and the helpers they share (nets/families.cpp). Each family's
// file holds its standard configurations, its config.json fields, its
// modules and its units.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "nets/net.h"

namespace pk {

std::shared_ptr<Net> create_resnet(const std::string& name, const nlohmann::json& cfg);
std::shared_ptr<Net> create_mobilenetv2(const std::string& name, const nlohmann::json& cfg);
std::shared_ptr<Net> create_regnetx(const std::string& name, const nlohmann::json& cfg);
std::shared_ptr<Net> create_mnasnet(const std::string& name, const nlohmann::json& cfg);
std::shared_ptr<Net> create_vit(const std::string& name, const nlohmann::json& cfg);
std::shared_ptr<Net> create_swin(const std::string& name, const nlohmann::json& cfg);

// cfg[key] if present (with a clear error naming the key on a type
// mismatch), else `fallback`.
template <class T>
T config_value(const nlohmann::json& cfg, const std::string& key, const T& fallback) {
  if (!cfg.is_object() || !cfg.contains(key) || cfg.at(key).is_null()) return fallback;
  try {
    return cfg.at(key).get<T>();
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument("model config: field '" + key + "' has the wrong type (" +
                                e.what() + ")");
  }
}

// Preprocessing fields (input_size, crop_pct, interpolation, mean, std)
// override `defaults`.
Preprocess parse_preprocess(const nlohmann::json& cfg, Preprocess defaults);

// For checkpoint names "<prefix><index>.<rest>": true with `index` and
// `rest` set when `key` has that form (index: 1 to 9 decimal digits).
bool split_indexed_name(const std::string& key, const std::string& prefix, int64_t& index,
                        std::string& rest);

}  // namespace pk
