// Writing a run's result files so that readers never see a partial file, and
// checking up front that they can be written.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

namespace pk {

// Writes `text` to `path` through a temporary file in the same folder and a
// rename. Throws std::runtime_error naming the path.
void write_text_atomic(const std::string& path, const std::string& text);
// The same with `value` as indented JSON.
void write_json_atomic(const std::string& path, const nlohmann::json& value);

// Throws ConfigError unless the folder that will hold `path` exists and `path`
// is not a folder, so that a long run does not fail only when it writes its
// results. `setting` names the flag or field in the message.
void check_output_folder(const std::string& path, const std::string& setting);

}  // namespace pk
