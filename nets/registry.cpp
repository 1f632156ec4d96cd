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
    {"vit_small", create_vit},           {"vit_base", create_vit},
    {"deit_tiny", create_vit},           {"deit_small", create_vit},
    {"deit_base", create_vit},           {"swin_tiny", create_swin},
    {"swin_small", create_swin},         {"swin_base", create_swin},
    {"resnet18", create_resnet},         {"resnet50", create_resnet},
    {"mobilenetv2", create_mobilenetv2}, {"regnetx_600m", create_regnetx},
    {"regnetx_3200m", create_regnetx},   {"mnasnet", create_mnasnet},
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

std::string model_names_text() {
  std::string text;
  for (const auto& name : model_names()) text += (text.empty() ? "" : ", ") + name;
  return text;
}

std::shared_ptr<Net> create_net(const std::string& model_name, const nlohmann::json& overrides) {
  for (const NetEntry& entry : kNets)
    if (model_name == entry.name) return entry.create(model_name, overrides);
  throw std::invalid_argument("unknown --model_name '" + model_name +
                              "'; known: " + model_names_text());
}

std::shared_ptr<Net> create_net(const std::string& model_name) {
  return create_net(model_name, nlohmann::json::object());
}

}  // namespace pk
