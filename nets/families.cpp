#include "nets/families.h"

#include <cmath>
#include <string>
#include <vector>

namespace pk {

Preprocess parse_preprocess(const nlohmann::json& cfg, Preprocess p) {
  p.input_size = config_value<int64_t>(cfg, "input_size", p.input_size);
  p.crop_pct = config_value<double>(cfg, "crop_pct", p.crop_pct);
  p.interpolation = config_value<std::string>(cfg, "interpolation", p.interpolation);
  check(p.interpolation == "bilinear" || p.interpolation == "bicubic", [&] {
    return "model config: interpolation must be bilinear or bicubic, got '" + p.interpolation + "'";
  });
  check(p.crop_pct > 0.0 && p.crop_pct <= 1.0, "model config: crop_pct must be in (0, 1]");
  auto triple = [&](const char* key, float* out) {
    std::vector<float> v = config_value<std::vector<float>>(cfg, key, {out[0], out[1], out[2]});
    check(v.size() == 3, [&] { return std::string("model config: '") + key + "' needs 3 values"; });
    for (int i = 0; i < 3; ++i) out[i] = v[i];
  };
  triple("mean", p.mean);
  triple("std", p.std);
  for (int i = 0; i < 3; ++i) {
    check(std::isfinite(p.mean[i]), "model config: 'mean' values must be finite numbers");
    // Normalization divides by std.
    check(std::isfinite(p.std[i]) && p.std[i] > 0.0f,
          "model config: 'std' values must be positive");
  }
  check(p.input_size > 0, [&] {
    return "model config: input_size must be positive, got " + std::to_string(p.input_size);
  });
  return p;
}

bool split_indexed_name(const std::string& key, const std::string& prefix, int64_t& index,
                        std::string& rest) {
  if (key.compare(0, prefix.size(), prefix) != 0) return false;
  const size_t digits = key.find_first_not_of("0123456789", prefix.size());
  if (digits == std::string::npos || key[digits] != '.' || digits == prefix.size() ||
      digits - prefix.size() > 9)
    return false;
  index = std::stoll(key.substr(prefix.size(), digits - prefix.size()));
  rest = key.substr(digits + 1);
  return true;
}

}  // namespace pk
