// A network as an ordered list of units (docs/METHOD.md section 3).
//
// Unit t maps its input to its output; fixed float "glue" (BatchNorm after a
// stem conv, pooling, token embedding, final norm, ...) maps unit t's output
// to unit t+1's input. Keeping the glue out of the units makes a unit's
// output exactly the output of its layers, which is what reconstruction and
// Hessian scoring compare.
//
//   image = input(0) -> unit 0 -> output(0) -> glue(0) -> input(1) -> ...
//                    -> unit n-1 -> output(n-1) = logits   (glue(n-1) = identity)
//
// Running a pack, capturing a unit's input or output, and running the rest of
// the model from a unit are then plain calls to run_unit/glue/forward_range.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "engine/module.h"
#include "nets/layers.h"

namespace pk {

enum class UnitKind { Before, Block, Between, After };
const char* unit_kind_name(UnitKind kind);

struct Unit {
  std::string name;                 // checkpoint prefix: "layer1.0", "blocks.3", "conv1"
  UnitKind kind;
  std::vector<std::string> layers;  // dotted names of its quantizable layers, in order
};

// Per-model preprocessing for evaluation (timm's eval transform; docs/METHOD.md section 7).
struct Preprocess {
  int64_t input_size = 224;
  double crop_pct = 0.875;
  std::string interpolation = "bilinear";  // or "bicubic"
  float mean[3] = {0.485f, 0.456f, 0.406f};
  float std[3] = {0.229f, 0.224f, 0.225f};
};

class Net : public Module {
 public:
  // Units in network order; names index into named_modules().
  const std::vector<Unit>& units() const { return units_; }
  int64_t num_units() const { return static_cast<int64_t>(units_.size()); }

  virtual Tensor run_unit(int64_t t, const Tensor& input) = 0;
  // Output of unit t -> input of unit t+1 (identity after the last unit).
  virtual Tensor glue(int64_t t, const Tensor& output) = 0;

  // Runs units [first, last) starting from the input of unit `first` and
  // returns the output of unit last-1 (logits when last == num_units()).
  Tensor forward_range(const Tensor& input, int64_t first, int64_t last);
  Tensor forward(const Tensor& image) { return forward_range(image, 0, num_units()); }

  // Every quantizable layer by dotted name, in network order.
  std::vector<std::pair<std::string, HookedLayer*>> quantizable_layers();

  // A checkpoint's tensors under this net's names, for load_state_dict.
  // Other releases of an architecture name some tensors differently or store
  // derived buffers; the default takes the names as they are. It decides on
  // names alone: load_model also passes tensors without data, to choose
  // among a checkpoint's state dicts.
  virtual TensorMap adapt_checkpoint(TensorMap tensors) const { return tensors; }

  const std::string& model_name() const { return model_name_; }
  const Preprocess& preprocess() const { return preprocess_; }
  int64_t num_classes() const { return num_classes_; }

 protected:
  // Appends the next unit. Its layers are the quantizable layers registered
  // so far at or below the dotted prefix `name`, in network order, so a
  // family registers a unit's modules before adding the unit.
  void add_unit(std::string name, UnitKind kind);
  std::string model_name_;
  Preprocess preprocess_;
  int64_t num_classes_ = 1000;

 private:
  std::vector<Unit> units_;
};

// The 14 reference model names, in the order of the table in nets/registry.cpp.
const std::vector<std::string>& model_names();
// The same as one line: "vit_small, vit_base, ...".
std::string model_names_text();

// Builds `model_name` with its standard configuration, overridden by any
// fields of `overrides` (the fixtures' config.json format; its model_name is
// ignored here). Throws for unknown names with the list of known ones.
std::shared_ptr<Net> create_net(const std::string& model_name, const nlohmann::json& overrides);
std::shared_ptr<Net> create_net(const std::string& model_name);

}  // namespace pk
