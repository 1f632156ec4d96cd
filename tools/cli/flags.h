// Command-line flags in the reference's style: `--name value`, `--name=value`
// and store-true switches. Every flag is declared with a default and a help
// line; unknown flags, missing values and malformed numbers are errors that
// name the flag.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace pk::cli {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class FlagSet {
 public:
  explicit FlagSet(std::string program) : program_(std::move(program)) {}

  void add_string(const std::string& name, const std::string& fallback, const std::string& help);
  void add_int(const std::string& name, int64_t fallback, const std::string& help);
  void add_float(const std::string& name, double fallback, const std::string& help);
  void add_switch(const std::string& name, const std::string& help);  // store-true

  // Parses argv[first..argc); throws UsageError. Returns false when --help was given.
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

}  // namespace pk::cli
