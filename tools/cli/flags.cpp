#include "tools/cli/flags.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace pk::cli {

void FlagSet::add_string(const std::string& name, const std::string& fallback,
                         const std::string& help) {
  flags_[name] = {Type::String, fallback, help};
  order_.push_back(name);
}
void FlagSet::add_int(const std::string& name, int64_t fallback, const std::string& help) {
  flags_[name] = {Type::Int, std::to_string(fallback), help};
  order_.push_back(name);
}
void FlagSet::add_float(const std::string& name, double fallback, const std::string& help) {
  flags_[name] = {Type::Float, number_text(fallback), help};
  order_.push_back(name);
}
void FlagSet::add_switch(const std::string& name, const std::string& help) {
  flags_[name] = {Type::Switch, "false", help};
  order_.push_back(name);
}

bool FlagSet::parse(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") return false;
    if (arg.rfind("--", 0) != 0) throw ConfigError("unexpected argument '" + arg + "'");
    std::string name = arg.substr(2), value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    auto it = flags_.find(name);
    if (it == flags_.end()) throw ConfigError("unknown flag --" + name + " (see --help)");
    Flag& flag = it->second;
    if (flag.type == Type::Switch) {
      if (inline_value) throw ConfigError("--" + name + " takes no value");
      flag.value = "true";
    } else {
      if (!inline_value) {
        if (i + 1 >= argc) throw ConfigError("--" + name + " needs a value");
        value = argv[++i];
      }
      // Out-of-range and non-finite values are refused here: strtoll and
      // strtod would otherwise saturate them silently.
      char* end = nullptr;
      errno = 0;
      if (flag.type == Type::Int) {
        std::strtoll(value.c_str(), &end, 10);
        if (value.empty() || *end)
          throw ConfigError("--" + name + " expects an integer, got '" + value + "'");
        if (errno == ERANGE) throw ConfigError("--" + name + " " + value + " is out of range");
      } else if (flag.type == Type::Float) {
        const double number = std::strtod(value.c_str(), &end);
        if (value.empty() || *end)
          throw ConfigError("--" + name + " expects a number, got '" + value + "'");
        if (!std::isfinite(number))
          throw ConfigError("--" + name + " expects a finite number, got '" + value + "'");
        if (errno == ERANGE) throw ConfigError("--" + name + " " + value + " is out of range");
      }
      flag.value = value;
    }
    flag.given = true;
  }
  return true;
}

const FlagSet::Flag& FlagSet::get(const std::string& name, Type type) const {
  auto it = flags_.find(name);
  if (it == flags_.end() || it->second.type != type)
    throw std::logic_error("flag --" + name + " is not declared with this type");
  return it->second;
}

const std::string& FlagSet::str(const std::string& name) const {
  return get(name, Type::String).value;
}
int64_t FlagSet::integer(const std::string& name) const {
  return std::strtoll(get(name, Type::Int).value.c_str(), nullptr, 10);
}
double FlagSet::number(const std::string& name) const {
  return std::strtod(get(name, Type::Float).value.c_str(), nullptr);
}
bool FlagSet::on(const std::string& name) const { return get(name, Type::Switch).value == "true"; }
bool FlagSet::given(const std::string& name) const { return flags_.at(name).given; }

std::string FlagSet::help() const {
  std::ostringstream os;
  os << "usage: " << program_ << " [flags]\n";
  for (const auto& name : order_) {
    const Flag& f = flags_.at(name);
    std::string head = "  --" + name + (f.type == Type::Switch ? "" : " VALUE");
    os << head << std::string(head.size() < 34 ? 34 - head.size() : 1, ' ') << f.help;
    if (f.type != Type::Switch && !f.value.empty()) os << " (default " << f.value << ")";
    os << "\n";
  }
  return os.str();
}

}  // namespace pk::cli
