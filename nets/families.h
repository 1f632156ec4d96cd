// Family builders behind create_net() (nets/registry.cpp maps each model
// name to one) and the helpers they share (nets/families.cpp). Each family's
// file holds its standard configurations, its config.json fields, its
// modules and its units.
#pragma once

#include <cmath>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "nets/net.h"

namespace pk {

std::shared_ptr<Net> create_resnet(const std::string& name, const nlohmann::json& cfg);
std::shared_ptr<Net> create_mobilenetv2(const std::string& name, const nlohmann::json& cfg);
std::shared_ptr<Net> create_regnetx(const std::string& name, const nlohmann::json& cfg);
std::shared_ptr<Net> create_mnasnet(const std::string& name, const nlohmann::json& cfg);
std::shared_ptr<Net> create_vit(const std::string& name, const nlohmann::json& cfg);
std::shared_ptr<Net> create_swin(const std::string& name, const nlohmann::json& cfg);

template <class T>
struct is_std_vector : std::false_type {};
template <class T>
struct is_std_vector<std::vector<T>> : std::true_type {};

// Whether `value` converts to T without leaving T's range: nlohmann converts
// a float to an integer with a plain cast, undefined behaviour out of range,
// so an integer field (or list of them) takes a float only when it holds an
// integer value that fits.
template <class T>
bool integers_fit(const nlohmann::json& value) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    if (!value.is_number_float()) return true;
    const double v = value.get<double>();
    return std::trunc(v) == v && v > static_cast<double>(std::numeric_limits<T>::min()) - 1.0 &&
           v < static_cast<double>(std::numeric_limits<T>::max()) + 1.0;
  } else if constexpr (is_std_vector<T>::value) {
    if (!value.is_array()) return true;  // get<T>() gives the type error
    for (const nlohmann::json& item : value)
      if (!integers_fit<typename T::value_type>(item)) return false;
    return true;
  } else {
    return true;
  }
}

// cfg[key] if present (with a clear error naming the key on a type
// mismatch), else `fallback`.
template <class T>
T config_value(const nlohmann::json& cfg, const std::string& key, const T& fallback) {
  if (!cfg.is_object() || !cfg.contains(key) || cfg.at(key).is_null()) return fallback;
  if (!integers_fit<T>(cfg.at(key)))
    throw std::invalid_argument("model config: field '" + key + "' holds " + cfg.at(key).dump() +
                                ", not an integer in range");
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
