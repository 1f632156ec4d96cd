// Module/Parameter registry. Names are dotted paths built from registration
// names ("layer1.0.conv1.weight"), so a state dict maps 1:1 to the key names
// of the BRECQ and timm checkpoints users have.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace pk {

using TensorMap = std::map<std::string, Tensor>;
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// What load_state_dict found: keys the module has but the file lacks, keys
// the file has but the module lacks, and same-name shape or dtype mismatches.
struct LoadReport {
  std::vector<std::string> missing;
  std::vector<std::string> unexpected;
  std::vector<std::string> mismatched;  // "name: file float32[3] vs model float32[4]"
  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  std::string summary() const;
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Registration returns the tensor handle the module keeps; loading writes
  // into the same storage, so handles stay valid.
  Tensor register_parameter(const std::string& name, Tensor value);
  Tensor register_buffer(const std::string& name, Tensor value, bool persistent = true);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    children_.emplace_back(name, module);
    return module;
  }

  NamedTensors named_parameters(const std::string& prefix = "") const;
  NamedTensors named_buffers(const std::string& prefix = "", bool persistent_only = false) const;
  std::vector<Tensor> parameters() const;
  // (dotted name, module) for this module ("" or prefix) and every descendant, in
  // registration order.
  std::vector<std::pair<std::string, Module*>> named_modules(const std::string& prefix = "");
  int64_t num_parameters() const;

  // Parameters and persistent buffers.
  TensorMap state_dict() const;
  // Copies every matching tensor (non-persistent buffers are derived from the
  // configuration and never read). Throws with the full report when `strict`
  // and anything is missing, unexpected or mismatched.
  LoadReport load_state_dict(const TensorMap& tensors, bool strict = true,
                             const std::string& source = "state dict");

  void train(bool on = true);
  void eval() { train(false); }
  bool training() const { return training_; }
  void to(Device device);  // moves parameters and buffers in place
  void zero_grad();

 private:
  struct Buffer {
    std::string name;
    Tensor tensor;
    bool persistent;
  };
  NamedTensors params_;
  std::vector<Buffer> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// While it lives, the module's parameters need no gradients: post-training
// quantization never trains the float parameters, so backward passes skip
// their (weight-sized) gradient kernels, and batch shards running backward
// on several threads never accumulate into the same parameter. The flags
// come back afterwards.
class FrozenParameters {
 public:
  explicit FrozenParameters(const Module& module);
  ~FrozenParameters();
  FrozenParameters(const FrozenParameters&) = delete;
  FrozenParameters& operator=(const FrozenParameters&) = delete;

 private:
  std::vector<Tensor> parameters_;
  std::vector<bool> was_trainable_;
};

}  // namespace pk
