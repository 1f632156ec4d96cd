// The networks create_net() builds: one entry per model name, naming the
// family that builds it. The family's file holds the model's standard
// configuration.
#include <stdexcept>

#include "nets/families.h"

namespace pk {

namespace {

using NetFactory = std::shared_ptr<Net> (*)(const std::string& name, const nlohmann::json& cfg);

struct NetEntry {
  const char* name;
  NetFactory create;
};

constexpr NetEntry kNets[] = {
    {"vit_small", create_vit},          {"vit_base", create_vit},
    {"deit_tiny", create_vit},          {"deit_small", create_vit},
    {"deit_base", create_vit},          {"swin_tiny", create_swin},
    {"swin_small", create_swin},        {"swin_base", create_swin},
    {"resnet18", create_resnet},        {"resnet50", create_resnet},
    {"mobilenetv2", create_mobilenetv2}, {"regnetx_600m", create_regnetx},
    {"regnetx_3200m", create_regnetx},  {"mnasnet", create_mnasnet},
};

}  // namespace

const std::vector<std::string>& model_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const NetEntry& entry : kNets) out.push_back(entry.name);
    return out;
  }();
  return names;
}

std::shared_ptr<Net> create_net(const std::string& model_name, const nlohmann::json& overrides) {
  for (const NetEntry& entry : kNets)
    if (model_name == entry.name) return entry.create(model_name, overrides);
  std::string list;
  for (const auto& n : model_names()) list += (list.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown --model_name '" + model_name + "'; known: " + list);
}

std::shared_ptr<Net> create_net(const std::string& model_name) {
  return create_net(model_name, nlohmann::json::object());
}

}  // namespace pk
