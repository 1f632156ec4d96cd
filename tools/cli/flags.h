// Command-line flags in the reference's style: `--name value`, `--name=value`
// and store-true switches. Every flag is declared with a default and a help
// line; unknown flags, missing values and malformed numbers are errors that
// name the flag.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/errors.h"
#include "engine/settings.h"

namespace pk::cli {

class FlagSet {
 public:
  explicit FlagSet(std::string program) : program_(std::move(program)) {}

  void add_string(const std::string& name, const std::string& fallback, const std::string& help);
  void add_int(const std::string& name, int64_t fallback, const std::string& help);
  void add_float(const std::string& name, double fallback, const std::string& help);
  void add_switch(const std::string& name, const std::string& help);  // store-true

  // Parses argv[first..argc); throws ConfigError (exit code 2). Returns false when --help was
  // given.
  bool parse(int argc, char** argv, int first);

  const std::string& str(const std::string& name) const;
  int64_t integer(const std::string& name) const;
  double number(const std::string& name) const;
  bool on(const std::string& name) const;
  bool given(const std::string& name) const;
  std::string help() const;

 private:
  enum class Type { String, Int, Float, Switch };
  struct Flag {
    Type type;
    std::string value, help;
    bool given = false;
  };
  const Flag& get(const std::string& name, Type type) const;
  std::string program_;
  std::map<std::string, Flag> flags_;
  std::vector<std::string> order_;
};

// A flag per setting of a table (engine/settings.h), with `defaults`' values
// as the flags' defaults.
template <class Config>
void declare_settings(FlagSet& flags, const std::vector<Setting<Config>>& settings,
                      const Config& defaults) {
  for (const Setting<Config>& s : settings) {
    const nlohmann::json value = s.get(defaults);
    switch (s.kind) {
      case SettingKind::Text:
        flags.add_string(s.name, value.get<std::string>(), s.help);
        break;
      case SettingKind::Integer:
        flags.add_int(s.name, value.get<int64_t>(), s.help);
        break;
      case SettingKind::Number:
        flags.add_float(s.name, value.get<double>(), s.help);
        break;
      case SettingKind::Switch:
        flags.add_switch(s.name, s.help);
        break;
    }
  }
}

// Writes the flags given on the command line into `config` and names them
// in config.given.
template <class Config>
void apply_settings(const FlagSet& flags, const std::vector<Setting<Config>>& settings,
                    Config& config) {
  for (const Setting<Config>& s : settings) {
    if (!flags.given(s.name)) continue;
    switch (s.kind) {
      case SettingKind::Text:
        s.set(config, flags.str(s.name));
        break;
      case SettingKind::Integer:
        s.set(config, flags.integer(s.name));
        break;
      case SettingKind::Number:
        s.set(config, flags.number(s.name));
        break;
      case SettingKind::Switch:
        s.set(config, flags.on(s.name));
        break;
    }
    config.given.insert(s.name);
  }
}

}  // namespace pk::cli
