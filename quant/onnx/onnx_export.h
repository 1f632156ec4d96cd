// ONNX export (docs/ONNX.md): a network, float or quantized, as a standard
// ONNX model that deployment runtimes run. Quantization is written the way
// the engine simulates it:
//   - a quantized Conv/Linear weight is stored as its integer codes (uint8;
//     int8 where a zero point is negative) followed by DequantizeLinear with its scale and zero point (per output
//     channel on axis 0 of a Conv weight and axis 1 of a Linear weight, which
//     is stored transposed for MatMul, or per tensor);
//   - a quantized activation (a layer's input, both MatMul operands) is
//     QuantizeLinear -> Clip to the engine's levels 0 .. 2^bits - 1 (for
//     fewer than 8 bits) -> DequantizeLinear with its learned scale and zero
//     point.
// The graph is the traced forward pass (engine/trace.h) at opset 17 with
// one input "input" [batch, 3, size, size] and one output "logits"
// [batch, classes]; the batch dimension is symbolic. Values that do not
// depend on the input (BatchNorm buffers, Swin's relative position bias and
// attention masks) are stored as initializers. Every export passes the ONNX
// checker and strict shape inference before it is written.
//
// This library needs Debian's libonnx-dev; the rest of packptq does not.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "nets/net.h"
#include "quant/quant_model.h"

namespace pk {

inline constexpr int kOnnxOpset = 17;

struct OnnxExportResult {
  std::string path;
  int64_t bytes = 0;
  int64_t nodes = 0;
  int64_t quantized_weights = 0, quantized_activations = 0;
  double seconds = 0;
};

// Exports the float net. `description` is stored as the JSON of the
// metadata entry "packptq" (what the file is: model, checkpoint, ...), next
// to the entries "model_name" and the evaluation preprocessing the model
// expects: "input_size", "crop_pct", "interpolation", "mean" and "std" (the
// net's own, or the reference's with reference_preprocessing, as
// tools/data/dataset.h's preprocess_config). The file is written
// atomically; throws std::runtime_error naming the path or the op that
// cannot be exported.
OnnxExportResult export_onnx(Net& net, const std::string& path, const nlohmann::json& description,
                             bool reference_preprocessing = false);

// Exports the quantized model: every quantized layer with its bits, scales
// and zero points as described above. A model loaded from a quantized model
// file (quant/model_io.h) or left by a quantization run exports as it
// computes; a model in the middle of reconstruction (soft rounding) is
// refused. The model's modes are as before when it returns.
OnnxExportResult export_onnx(QuantModel& model, const std::string& path,
                             const nlohmann::json& description,
                             bool reference_preprocessing = false);

}  // namespace pk
