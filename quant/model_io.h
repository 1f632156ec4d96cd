// Quantized model files (docs/METHOD.md section 8): one safetensors file holding
// the integer weight codes with their scales and zero points, every
// activation quantizer, the net's other tensors in float, and a JSON
// description from which the net is rebuilt.
//
// Tensors of the file:
//   <name>                          F32/I64: every parameter and persistent
//                                   buffer of the net except the quantized
//                                   layers' weights (biases, norms, tokens, ...)
//   <layer>.weight_codes            U8: Conv/Linear weight levels, 0 .. 2^bits - 1
//   <layer>.weight_scale            F32 [1] or [out channels]
//   <layer>.weight_zero_point       F32, same shape
//   <layer>.input_scale/_zero_point           Conv/Linear input quantizer
//   <layer>.operand0_scale/_zero_point, operand1_...   MatMul operands
//   <layer>.weight                  F32, only when saved with float weights
// __metadata__: {"format": kQuantModelFormat, "packptq": <JSON>}.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "nets/net.h"
#include "quant/quant_model.h"

namespace pk {

inline constexpr const char* kQuantModelFormat = "packptq-quantized-model-v1";

// Writes `model` to `path` (atomically: a failed save leaves no file).
// `metadata` must hold "model_config": the overrides the net was built from
// (a fixture's config.json, or {} for the standard configuration); it is
// stored with "model_name" and "quant" (settings, and per layer its bits and
// rounding) filled in. with_float_weights also stores each quantized layer's
// float weight, which an initialized model needs to be reconstructed later;
// it requires nearest rounding everywhere (after reconstruction the codes are
// the weights). Every quantizer must be initialized.
void save_quantized_model(const std::string& path, QuantModel& model,
                          const nlohmann::json& metadata, bool with_float_weights);

struct LoadedQuantModel {
  std::shared_ptr<Net> net;
  std::unique_ptr<QuantModel> model;
  nlohmann::json metadata;  // as stored
  bool has_float_weights = false;
};

// Rebuilds the net with create_net(model_name, model_config), loads its float
// tensors and restores every quantizer, bit width and activation scale; the
// net is on the CPU in eval mode with every activation quantizer on. With
// float weights the weight quantizers are on with nearest rounding (as right
// after initialization); without, each quantized weight is set to its
// dequantized codes, (code - z) * D computed as the fake quantizer computes
// it, and its weight quantizer is off, so the logits equal those of the model
// that was saved bit for bit. Throws std::runtime_error naming the file.
LoadedQuantModel load_quantized_model(const std::string& path);

// "nearest", "soft" or "hard", as the files store a layer's rounding.
const char* rounding_name(Rounding rounding);
// Prefix of an activation quantizer's tensors in the files: "<layer>.input"
// for Conv/Linear, "<layer>.operand<i>" for MatMul.
std::string operand_prefix(const QuantLayer& layer, size_t index);

}  // namespace pk
