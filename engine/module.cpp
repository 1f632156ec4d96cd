#include "engine/module.h"

#include <sstream>
#include <stdexcept>

namespace pk {

static std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

std::string LoadReport::summary() const {
  std::ostringstream os;
  auto list = [&](const char* what, const std::vector<std::string>& names) {
    if (names.empty()) return;
    os << what << " (" << names.size() << "):";
    for (const auto& n : names) os << "\n  " << n;
    os << "\n";
  };
  list("missing keys", missing);
  list("unexpected keys", unexpected);
  list("shape mismatches", mismatched);
  return os.str();
}

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  value.set_requires_grad(true);
  params_.emplace_back(name, value);
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value, bool persistent) {
  buffers_.push_back({name, value, persistent});
  return value;
}

NamedTensors Module::named_parameters(const std::string& prefix) const {
  NamedTensors out;
  for (const auto& [name, t] : params_) out.emplace_back(join(prefix, name), t);
  for (const auto& [name, child] : children_) {
    NamedTensors sub = child->named_parameters(join(prefix, name));
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

NamedTensors Module::named_buffers(const std::string& prefix, bool persistent_only) const {
  NamedTensors out;
  for (const auto& b : buffers_)
    if (b.persistent || !persistent_only) out.emplace_back(join(prefix, b.name), b.tensor);
  for (const auto& [name, child] : children_) {
    NamedTensors sub = child->named_buffers(join(prefix, name), persistent_only);
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules(const std::string& prefix) {
  std::vector<std::pair<std::string, Module*>> out{{prefix, this}};
  for (const auto& [name, child] : children_) {
    auto sub = child->named_modules(join(prefix, name));
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

TensorMap Module::state_dict() const {
  TensorMap out;
  for (auto& [name, t] : named_parameters()) out[name] = t;
  for (auto& [name, t] : named_buffers("", true)) out[name] = t;
  return out;
}

LoadReport Module::load_state_dict(const TensorMap& tensors, bool strict,
                                   const std::string& source) {
  LoadReport report;
  TensorMap own = state_dict();
  for (const auto& [name, dst] : own) {
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      report.missing.push_back(name);
      continue;
    }
    const Tensor& src = it->second;
    if (src.shape() != dst.shape() || src.dtype() != dst.dtype()) {
      auto text = [](const Tensor& t) { return dtype_name(t.dtype()) + shape_str(t.shape()); };
      report.mismatched.push_back(name + ": file " + text(src) + " vs model " + text(dst));
    }
  }
  for (const auto& [name, t] : tensors)
    if (!own.count(name)) report.unexpected.push_back(name);
  if (strict && !report.ok())
    throw std::runtime_error("cannot load " + source + ":\n" + report.summary());
  for (const auto& [name, dst] : own) {
    auto it = tensors.find(name);
    if (it == tensors.end() || it->second.shape() != dst.shape() ||
        it->second.dtype() != dst.dtype())
      continue;
    Tensor target = dst;
    target.copy_(it->second);
  }
  return report;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::to(Device device) {
  auto move = [device](Tensor& t) {
    if (!t.defined() || t.device() == device) return;
    Tensor moved = t.to(device);
    // Swap storage inside the existing handle so every holder sees the move.
    t.impl()->storage = moved.impl()->storage;
    t.impl()->offset = 0;
  };
  for (auto& [name, t] : params_) move(t);
  for (auto& b : buffers_) move(b.tensor);
  for (auto& [name, child] : children_) child->to(device);
}

void Module::zero_grad() {
  for (auto& [name, t] : named_parameters()) t.zero_grad();
}

FrozenParameters::FrozenParameters(const Module& module) : parameters_(module.parameters()) {
  for (Tensor& p : parameters_) {
    was_trainable_.push_back(p.requires_grad());
    p.set_requires_grad(false);
  }
}

FrozenParameters::~FrozenParameters() {
  for (size_t i = 0; i < parameters_.size(); ++i)
    parameters_[i].set_requires_grad(was_trainable_[i]);
}

}  // namespace pk
