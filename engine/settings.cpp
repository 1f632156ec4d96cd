#include "engine/settings.h"

#include <sstream>

namespace pk {

std::string number_text(double value) {
  std::ostringstream os;
  os << value;
  return os.str();
}

void check_at_least_one(const std::string& name, const int64_t& value) {
  if (value < 1)
    throw ConfigError("--" + name + " must be at least 1, got " + std::to_string(value));
}
void check_positive(const std::string& name, const int64_t& value) {
  if (value <= 0)
    throw ConfigError("--" + name + " must be positive, got " + std::to_string(value));
}
void check_not_negative(const std::string& name, const int64_t& value) {
  if (value < 0)
    throw ConfigError("--" + name + " must not be negative, got " + std::to_string(value));
}
void check_thread_count(const std::string& name, const int64_t& value) {
  if (value < 0)
    throw ConfigError("--" + name + " must be 0 (all cores) or more, got " + std::to_string(value));
}
void check_probability(const std::string& name, const double& value) {
  if (!(value >= 0.0 && value <= 1.0))
    throw ConfigError("--" + name + " must be in [0, 1], got " + number_text(value));
}
void check_not_negative_number(const std::string& name, const double& value) {
  if (!(value >= 0.0))
    throw ConfigError("--" + name + " must be at least 0, got " + number_text(value));
}
void check_positive_number(const std::string& name, const double& value) {
  if (!(value > 0.0))
    throw ConfigError("--" + name + " must be greater than 0, got " + number_text(value));
}

void check_not_empty(const std::string& name, const std::string& value) {
  if (value.empty()) throw ConfigError("--" + name + " must not be empty");
}

}  // namespace pk
