#include "nets/net.h"

namespace pk {

const char* unit_kind_name(UnitKind kind) {
  switch (kind) {
    case UnitKind::Before: return "before";
    case UnitKind::Block: return "block";
    case UnitKind::Between: return "between";
    case UnitKind::After: return "after";
  }
  return "?";
}

Tensor Net::forward_range(const Tensor& input, int64_t first, int64_t last) {
  check(0 <= first && first < last && last <= num_units(), [&] {
    return "forward_range: bad unit range [" + std::to_string(first) + ", " + std::to_string(last) +
           ") for " + std::to_string(num_units()) + " units";
  });
  Tensor x = input;
  for (int64_t t = first;; ++t) {
    Tensor y = run_unit(t, x);
    if (t == last - 1) return y;
    x = glue(t, y);
  }
}

std::vector<std::pair<std::string, HookedLayer*>> Net::quantizable_layers() {
  std::vector<std::pair<std::string, HookedLayer*>> out;
  for (auto& [name, module] : named_modules())
    if (auto* layer = dynamic_cast<HookedLayer*>(module)) out.emplace_back(name, layer);
  return out;
}

void Net::add_unit(std::string name, UnitKind kind) {
  const std::string below = name + ".";
  std::vector<std::string> layers;
  for (const auto& [layer_name, layer] : quantizable_layers())
    if (layer_name == name || layer_name.compare(0, below.size(), below) == 0)
      layers.push_back(layer_name);
  units_.push_back({std::move(name), kind, std::move(layers)});
}

}  // namespace pk
