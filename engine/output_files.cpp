#include "engine/output_files.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "engine/errors.h"

namespace pk {

namespace fs = std::filesystem;

void write_json_atomic(const std::string& path, const nlohmann::json& value) {
  write_text_atomic(path, value.dump(2) + "\n");
}

void write_text_atomic(const std::string& path, const std::string& text) {
  const fs::path target(path);
  fs::path temporary = target;
  temporary += ".tmp" + std::to_string(getpid());
  std::error_code ignored;
  {
    std::ofstream out(temporary, std::ios::trunc | std::ios::binary);
    if (out) out << text;
    out.close();
    if (!out) {
      fs::remove(temporary, ignored);
      throw std::runtime_error("cannot write '" + path + "': " + std::strerror(errno));
    }
  }
  std::error_code error;
  fs::rename(temporary, target, error);
  if (error) {
    fs::remove(temporary, ignored);
    throw std::runtime_error("cannot write '" + path + "': " + error.message());
  }
}

void check_output_folder(const std::string& path, const std::string& setting) {
  const fs::path target(path);
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  if (!fs::is_directory(folder))
    throw ConfigError("--" + setting + " " + path + ": folder '" + folder.string() +
                      "' does not exist");
  if (fs::is_directory(target)) throw ConfigError("--" + setting + " " + path + " is a folder");
}

}  // namespace pk
