// A table of a configuration struct's fields: each setting named once with
// the kind of value it takes, its help, how it reads and writes the field as
// JSON, and its range check. The command line's flags and --help, a run's
// stored configuration and its validation all come from such a table
// (QuantizeConfig's in quant/run_config.h, EvaluateConfig's in quant/run.h).
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/errors.h"

namespace pk {

enum class SettingKind { Text, Integer, Number, Switch };

template <class Config>
struct Setting {
  std::string name;
  SettingKind kind;
  std::string help;
  std::function<nlohmann::json(const Config&)> get;
  // Throws ConfigError naming the setting for a value of the wrong type or
  // an unknown name (of a method, an init method, a device).
  std::function<void(Config&, const nlohmann::json&)> set;
  // Throws ConfigError when the value is out of its range; null: any value.
  std::function<void(const Config&)> check;
};

// How a field's type maps to a setting kind and to JSON. Enumerations
// specialize it where they are defined or used.
template <class T>
struct SettingCodec;

template <>
struct SettingCodec<std::string> {
  static constexpr SettingKind kind = SettingKind::Text;
  static nlohmann::json get(const std::string& value) { return value; }
  static std::string set(const nlohmann::json& value, const std::string&) {
    return value.get<std::string>();
  }
};
template <>
struct SettingCodec<int64_t> {
  static constexpr SettingKind kind = SettingKind::Integer;
  static nlohmann::json get(int64_t value) { return value; }
  static int64_t set(const nlohmann::json& value, const std::string&) {
    return value.get<int64_t>();
  }
};
template <>
struct SettingCodec<double> {
  static constexpr SettingKind kind = SettingKind::Number;
  static nlohmann::json get(double value) { return value; }
  static double set(const nlohmann::json& value, const std::string&) { return value.get<double>(); }
};
template <>
struct SettingCodec<bool> {
  static constexpr SettingKind kind = SettingKind::Switch;
  static nlohmann::json get(bool value) { return value; }
  static bool set(const nlohmann::json& value, const std::string&) { return value.get<bool>(); }
};

// A range check of one value, given the setting's name for its message.
template <class T>
using SettingCheck = std::function<void(const std::string& name, const T& value)>;

// The field's type comes from `member` alone, so that `check` may be a plain
// function or a lambda.
template <class T>
struct SettingNonDeduced {
  using type = T;
};

template <class Config, class T>
Setting<Config> setting_field(const std::string& name, T Config::*member, const std::string& help,
                              typename SettingNonDeduced<SettingCheck<T>>::type check = nullptr) {
  Setting<Config> setting{name, SettingCodec<T>::kind, help, nullptr, nullptr, nullptr};
  setting.get = [member](const Config& config) { return SettingCodec<T>::get(config.*member); };
  setting.set = [member, name](Config& config, const nlohmann::json& value) {
    try {
      config.*member = SettingCodec<T>::set(value, name);
    } catch (const nlohmann::json::exception& e) {
      throw ConfigError("--" + name + ": " + e.what());
    }
  };
  if (check)
    setting.check = [member, name, check](const Config& config) { check(name, config.*member); };
  return setting;
}

// Every setting by name.
template <class Config>
nlohmann::json settings_to_json(const std::vector<Setting<Config>>& settings,
                                const Config& config) {
  nlohmann::json out = nlohmann::json::object();
  for (const Setting<Config>& setting : settings) out[setting.name] = setting.get(config);
  return out;
}

// A number as the command line shows it in messages and --help ("0.01",
// "4e-05", "20").
std::string number_text(double value);

// Range checks shared by the tables; each throws ConfigError with the
// command line's message.
void check_at_least_one(const std::string& name, const int64_t& value);
void check_positive(const std::string& name, const int64_t& value);  // the same, worded so
void check_not_negative(const std::string& name, const int64_t& value);
void check_thread_count(const std::string& name, const int64_t& value);
void check_probability(const std::string& name, const double& value);
void check_not_negative_number(const std::string& name, const double& value);
void check_positive_number(const std::string& name, const double& value);
void check_not_empty(const std::string& name, const std::string& value);

}  // namespace pk
