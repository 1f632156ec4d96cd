#include "nets/net.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "nets/families.h"

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

void Net::add_unit(std::string name, UnitKind kind, std::vector<std::string> layers) {
  units_.push_back({std::move(name), kind, std::move(layers)});
}

const std::vector<std::string>& model_names() {
  static const std::vector<std::string> names = {
      "vit_small",  "vit_base",  "deit_tiny",   "deit_small",   "deit_base",
      "swin_tiny",  "swin_small", "swin_base",  "resnet18",     "resnet50",
      "mobilenetv2", "regnetx_600m", "regnetx_3200m", "mnasnet"};
  return names;
}

std::shared_ptr<Net> create_net(const std::string& model_name, const nlohmann::json& overrides) {
  std::shared_ptr<Net> net;
  if (model_name == "resnet18" || model_name == "resnet50") {
    net = create_resnet(model_name, overrides);
  } else if (model_name == "mobilenetv2") {
    net = create_mobilenetv2(model_name, overrides);
  } else if (model_name == "regnetx_600m" || model_name == "regnetx_3200m") {
    net = create_regnetx(model_name, overrides);
  } else if (model_name == "mnasnet") {
    net = create_mnasnet(model_name, overrides);
  } else if (model_name.rfind("vit_", 0) == 0 || model_name.rfind("deit_", 0) == 0) {
    net = create_vit(model_name, overrides);
  } else if (model_name.rfind("swin_", 0) == 0) {
    net = create_swin(model_name, overrides);
  }
  bool known = false;
  for (const auto& n : model_names()) known = known || n == model_name;
  if (!net || !known) {
    std::string list;
    for (const auto& n : model_names()) list += (list.empty() ? "" : ", ") + n;
    throw std::invalid_argument("unknown --model_name '" + model_name + "'; known: " + list);
  }
  return net;
}

std::shared_ptr<Net> create_net(const std::string& model_name) {
  return create_net(model_name, nlohmann::json::object());
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
