#include "quant/model_io.h"

#include <cmath>
#include <limits>
#include <set>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/safetensors.h"
#include "nets/fold_bn.h"

namespace pk {

namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error("quantized model '" + path + "': " + what);
}

const char* kind_name(LayerKind kind) {
  switch (kind) {
    case LayerKind::Conv: return "conv";
    case LayerKind::Linear: return "linear";
    case LayerKind::MatMul: return "matmul";
  }
  return "?";
}

int64_t max_level(int bits) { return (int64_t{1} << bits) - 1; }

// Checked on save and on load: anything else turns every output of the layer
// into NaN. (Not "positive": learned activation scales are not bounded below.)
void check_scales(const std::string& path, const std::string& name, const Tensor& scale) {
  for (float v : scale.to_vector())
    if (!(std::isfinite(v) && v != 0.0f))
      fail(path, name + " holds " + std::to_string(v) + ": scales must be finite and non-zero");
}

// The weight quantizer's integer levels, checked to be integers in range.
Tensor weight_codes(const std::string& path, const QuantLayer& layer) {
  const WeightQuantizer& wq = *layer.hook->weight_quantizer;
  const std::vector<float> levels = wq.codes(layer.hook->layer_weight).to_vector();
  const int64_t qmax = max_level(wq.bits);
  std::vector<int64_t> codes(levels.size());
  for (size_t i = 0; i < levels.size(); ++i) {
    const float v = levels[i];
    if (!(v >= 0.0f && v <= static_cast<float>(qmax) && v == std::nearbyint(v)))
      fail(path, "layer " + layer.name + ": weight code " + std::to_string(v) + " of element " +
                     std::to_string(i) + " is not an integer in [0, " + std::to_string(qmax) +
                     "]");
    codes[i] = static_cast<int64_t>(v);
  }
  return Tensor::from_int64(codes, layer.hook->layer_weight.shape());
}

// Overwrites `weight` with (code - z) * D per output channel (axis 0), the
// same float expression as the fake quantizer's output (level - z) * d.
void set_dequantized_weight(Tensor& weight, const Tensor& codes, const Tensor& scale,
                            const Tensor& zero_point) {
  const std::vector<int64_t> c = codes.to_int64_vector();
  const std::vector<float> d = scale.to_vector(), z = zero_point.to_vector();
  const size_t channels = d.size(), inner = c.size() / channels;
  std::vector<float> w(c.size());
  for (size_t ch = 0; ch < channels; ++ch)
    for (size_t i = ch * inner; i < (ch + 1) * inner; ++i)
      w[i] = (static_cast<float>(c[i]) - z[ch]) * d[ch];
  weight.copy_(Tensor::from_vector(w, weight.shape(), weight.device()));
}

// object[key] as an int. get<int>() casts a float unchecked, undefined
// behaviour out of int's range, so only JSON integers are taken.
int int_field(const json& object, const char* key) {
  const json& value = object.at(key);
  if (!value.is_number_integer() || value.get<int64_t>() < std::numeric_limits<int>::min() ||
      value.get<int64_t>() > std::numeric_limits<int>::max())
    throw std::invalid_argument(std::string("'") + key + "' is " + value.dump() +
                                ", not an integer");
  return static_cast<int>(value.get<int64_t>());
}

QuantSettings settings_from(const json& quant) {
  QuantSettings s;
  s.weight_bits = int_field(quant, "weight_bits");
  s.activation_bits = int_field(quant, "activation_bits");
  s.weight_channel_wise = quant.at("weight_channel_wise").get<bool>();
  s.activation_channel_wise = quant.at("activation_channel_wise").get<bool>();
  s.weight_init = parse_init_method(quant.at("weight_init_method").get<std::string>());
  s.activation_init = parse_init_method(quant.at("activation_init_method").get<std::string>());
  return s;
}

}  // namespace

const char* rounding_name(Rounding rounding) {
  switch (rounding) {
    case Rounding::Nearest: return "nearest";
    case Rounding::Soft: return "soft";
    case Rounding::Hard: return "hard";
  }
  return "?";
}

std::string operand_prefix(const QuantLayer& layer, size_t index) {
  if (layer.layer->kind() == LayerKind::MatMul) return layer.name + ".operand" + std::to_string(index);
  return layer.name + ".input";
}

void save_quantized_model(const std::string& path, QuantModel& model, const json& metadata,
                          bool with_float_weights) {
  NoGradGuard no_grad;
  if (!metadata.is_object() || !metadata.contains("model_config") ||
      !metadata["model_config"].is_object())
    fail(path, "metadata needs \"model_config\": the config the net was built from ({} for the "
               "standard configuration)");
  TensorMap tensors = model.net().state_dict();
  std::set<std::string> code_names;
  json layers = json::array();
  for (const QuantLayer& layer : model.layers()) {
    const QuantHook& hook = *layer.hook;
    json entry = {{"name", layer.name},
                  {"kind", kind_name(layer.layer->kind())},
                  {"weight_bits", hook.weight_bits},
                  {"activation_bits", hook.activation_bits}};
    if (const WeightQuantizer* wq = hook.weight_quantizer.get()) {
      if (!wq->initialized()) fail(path, "layer " + layer.name + ": weight quantizer not initialized");
      if (wq->rounding == Rounding::Soft)
        fail(path, "layer " + layer.name + " is being reconstructed (soft rounding)");
      if (with_float_weights && wq->rounding != Rounding::Nearest)
        fail(path, "layer " + layer.name + " has reconstructed (hard) rounding: float weights are "
                   "saved only for initialized models, whose rounding is nearest");
      if (!with_float_weights) tensors.erase(layer.name + ".weight");
      tensors[layer.name + ".weight_codes"] = weight_codes(path, layer);
      code_names.insert(layer.name + ".weight_codes");
      check_scales(path, layer.name + ".weight_scale", wq->scale);
      tensors[layer.name + ".weight_scale"] = wq->scale.detach();
      tensors[layer.name + ".weight_zero_point"] = wq->zero_point.detach();
      entry["rounding"] = rounding_name(wq->rounding);
    }
    for (size_t i = 0; i < hook.operand_quantizers.size(); ++i) {
      const UniformQuantizer* q = hook.operand_quantizers[i].get();
      if (!q) continue;  // the network's first conv: the image is not quantized
      if (!q->initialized())
        fail(path, "layer " + layer.name + ": activation quantizer not initialized");
      check_scales(path, operand_prefix(layer, i) + "_scale", q->scale);
      tensors[operand_prefix(layer, i) + "_scale"] = q->scale.detach();
      tensors[operand_prefix(layer, i) + "_zero_point"] = q->zero_point.detach();
    }
    layers.push_back(std::move(entry));
  }
  const QuantSettings& s = model.settings();
  json description = metadata;
  description["model_name"] = model.net().model_name();
  description["quant"] = {{"weight_bits", s.weight_bits},
                          {"activation_bits", s.activation_bits},
                          {"weight_channel_wise", s.weight_channel_wise},
                          {"activation_channel_wise", s.activation_channel_wise},
                          {"weight_init_method", init_method_name(s.weight_init)},
                          {"activation_init_method", init_method_name(s.activation_init)},
                          {"float_weights", with_float_weights},
                          {"layers", std::move(layers)}};
  save_safetensors(path, tensors, {{"format", kQuantModelFormat}, {"packptq", description.dump()}},
                   code_names);
}

LoadedQuantModel load_quantized_model(const std::string& path) {
  const std::map<std::string, std::string> file_metadata = load_safetensors_metadata(path);
  auto format = file_metadata.find("format");
  auto text = file_metadata.find("packptq");
  if (format == file_metadata.end() || format->second != kQuantModelFormat ||
      text == file_metadata.end())
    fail(path, std::string("not a packptq quantized model (its safetensors metadata lacks "
                           "format '") + kQuantModelFormat + "')");

  LoadedQuantModel out;
  json layers;
  try {
    out.metadata = json::parse(text->second);
    const std::string model_name = out.metadata.at("model_name").get<std::string>();
    const json& config = out.metadata.at("model_config");
    const json& quant = out.metadata.at("quant");
    layers = quant.at("layers");
    out.has_float_weights = quant.at("float_weights").get<bool>();
    out.net = create_net(model_name, config);
    // Folded nets have conv biases (the folded ones, loaded below) and
    // pass-through BatchNorms.
    if (out.metadata.value("fold_bn", false)) fold_batch_norms(*out.net);
    out.model = std::make_unique<QuantModel>(out.net, settings_from(quant), false);
  } catch (const json::exception& e) {
    fail(path, std::string("malformed packptq metadata: ") + e.what());
  } catch (const std::exception& e) {
    fail(path, std::string("cannot rebuild the model: ") + e.what());
  }

  // Read by `packptq eval` to batch as the quantization run did.
  if (out.metadata.contains("eval_batch_size")) {
    const json& batch_size = out.metadata["eval_batch_size"];
    if (!batch_size.is_number_integer() || batch_size.get<int64_t>() < 1)
      fail(path, "eval_batch_size " + batch_size.dump() + " is not a positive integer");
  }

  std::vector<QuantLayer>& model_layers = out.model->layers();
  if (!layers.is_array() || layers.size() != model_layers.size())
    fail(path, "describes " + std::to_string(layers.size()) + " quantized layers but " +
                   out.net->model_name() + " has " + std::to_string(model_layers.size()));

  TensorMap tensors = load_safetensors(path);
  // Quantizer tensors are taken out of the map; what remains is the net's.
  auto take = [&](const std::string& name, DType dtype) {
    auto it = tensors.find(name);
    if (it == tensors.end()) fail(path, "tensor '" + name + "' is missing");
    if (it->second.dtype() != dtype)
      fail(path, "tensor '" + name + "' is " + it->second.describe() + ", expected " +
                     dtype_name(dtype));
    Tensor t = it->second;
    tensors.erase(it);
    return t;
  };
  // Scale and zero point of one quantizer: equal shapes, one entry or `channels`.
  auto take_params = [&](const std::string& prefix, UniformQuantizer& q, int64_t channels) {
    Tensor scale = take(prefix + "_scale", DType::F32);
    Tensor zero_point = take(prefix + "_zero_point", DType::F32);
    const int64_t n = scale.numel();
    if (scale.dim() != 1 || zero_point.shape() != scale.shape() ||
        !(n == 1 || (q.per_channel && (channels < 0 || n == channels))))
      fail(path, prefix + ": scale " + scale.describe() + " and zero point " +
                     zero_point.describe() + " do not fit a " +
                     (q.per_channel ? "per-channel" : "per-tensor") + " quantizer");
    check_scales(path, prefix + "_scale", scale);
    for (float v : zero_point.to_vector())
      if (!(std::isfinite(v) && v == std::nearbyint(v)))
        fail(path,
             prefix + "_zero_point holds " + std::to_string(v) + ": zero points are integers");
    q.scale = scale;
    q.zero_point = zero_point;
  };

  struct Dequantized {
    Tensor weight, codes, scale, zero_point;
  };
  std::vector<Dequantized> dequantized;
  std::set<std::string> weights_from_codes;
  for (size_t i = 0; i < model_layers.size(); ++i) {
    QuantLayer& layer = model_layers[i];
    QuantHook& hook = *layer.hook;
    const json& entry = layers[i];
    int weight_bits = 0, activation_bits = 0;
    try {
      if (entry.at("name").get<std::string>() != layer.name)
        fail(path, "quantized layer " + std::to_string(i) + " is '" +
                       entry.at("name").get<std::string>() + "' in the file but '" + layer.name +
                       "' in " + out.net->model_name());
      weight_bits = int_field(entry, "weight_bits");
      activation_bits = int_field(entry, "activation_bits");
      const std::string kind = entry.at("kind").get<std::string>();
      if (kind != kind_name(layer.layer->kind()))
        fail(path, "layer " + layer.name + " is a " + kind + " layer in the file but a " +
                       kind_name(layer.layer->kind()) + " layer in " + out.net->model_name());
      const std::string rounding =
          entry.value("rounding", std::string(rounding_name(Rounding::Nearest)));
      if (rounding != rounding_name(Rounding::Nearest) && rounding != rounding_name(Rounding::Hard))
        fail(path, "layer " + layer.name + ": rounding '" + rounding +
                       "' (a saved model's rounding is nearest or hard)");
    } catch (const json::exception& e) {
      fail(path, "malformed metadata of layer " + layer.name + ": " + e.what());
    } catch (const std::invalid_argument& e) {
      fail(path, "malformed metadata of layer " + layer.name + ": " + e.what());
    }
    if (weight_bits < 2 || weight_bits > 8 || activation_bits < 2 || activation_bits > 8)
      fail(path, "layer " + layer.name + ": bits must be 2..8, got W" +
                     std::to_string(weight_bits) + "A" + std::to_string(activation_bits));
    hook.set_bits(weight_bits, activation_bits);
    if (WeightQuantizer* wq = hook.weight_quantizer.get()) {
      const Shape& shape = hook.layer_weight.shape();
      Tensor codes = take(layer.name + ".weight_codes", DType::I64);
      if (codes.shape() != shape)
        fail(path, layer.name + ".weight_codes is " + codes.describe() + " but the weight is " +
                       shape_str(shape));
      for (int64_t c : codes.to_int64_vector())
        if (c < 0 || c > max_level(weight_bits))
          fail(path, layer.name + ".weight_codes holds " + std::to_string(c) + ", outside [0, " +
                         std::to_string(max_level(weight_bits)) + "]");
      take_params(layer.name + ".weight", *wq, shape[0]);
      wq->rounding = Rounding::Nearest;
      if (!out.has_float_weights) {
        dequantized.push_back({hook.layer_weight, codes, wq->scale, wq->zero_point});
        weights_from_codes.insert(layer.name + ".weight");
      }
    }
    for (size_t k = 0; k < hook.operand_quantizers.size(); ++k)
      if (UniformQuantizer* q = hook.operand_quantizers[k].get())
        take_params(operand_prefix(layer, k), *q, /*channels unknown before a forward=*/-1);
    // Float weights stay behind the weight quantizer; without them the
    // weight is the dequantized codes.
    hook.set_quant(/*weights=*/hook.weight_quantizer && out.has_float_weights,
                   /*activations=*/true);
  }

  const LoadReport report = out.net->load_state_dict(tensors, /*strict=*/false, path);
  std::vector<std::string> missing;
  for (const std::string& name : report.missing)
    if (!weights_from_codes.count(name)) missing.push_back(name);
  if (!missing.empty() || !report.unexpected.empty() || !report.mismatched.empty()) {
    LoadReport problems = report;
    problems.missing = missing;
    fail(path, "its tensors do not fit " + out.net->model_name() + ": " + problems.summary());
  }
  for (Dequantized& d : dequantized) set_dequantized_weight(d.weight, d.codes, d.scale, d.zero_point);
  out.net->eval();
  return out;
}

}  // namespace pk
