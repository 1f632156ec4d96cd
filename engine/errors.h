// Errors of a run's settings (a flag, a field of QuantizeConfig, a model name,
// a path that cannot be written): the caller asked for something invalid, as
// opposed to a file or a computation failing. The command line maps them to
// exit code 2 and everything else to 1.
#pragma once

#include <stdexcept>

namespace pk {

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace pk
