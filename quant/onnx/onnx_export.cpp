#include "quant/onnx/onnx_export.h"

#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <stdexcept>
#include <unordered_map>
#include <utility>
#include <vector>

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include "engine/autograd.h"
#include "engine/output_files.h"
#include "engine/stopwatch.h"
#include "engine/trace.h"
#include "kernels/elementwise_math.h"
#include "quant/run.h"
#include "tools/data/dataset.h"

namespace pk {

namespace {

using onnx::TensorProto;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error("ONNX export to '" + path + "': " + what);
}

// ---- tracing ----

struct Trace {
  Tensor input, output;
  std::vector<TracedOp> ops;
};

// The net's forward pass on a batch of `batch` images, as a list of ops.
Trace trace_forward(Net& net, int64_t batch) {
  const int64_t size = net.preprocess().input_size;
  Trace trace;
  std::vector<float> pixels(static_cast<size_t>(batch * 3 * size * size));
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<float>(i % 17) / 8.0f - 1.0f;
  trace.input = Tensor::from_vector(pixels, {batch, 3, size, size});
  NoGradGuard no_grad;
  OpTrace recording;
  trace.output = net.forward(trace.input);
  trace.ops = recording.ops();
  return trace;
}

// Each dim of an op's output shape as traced at two batch sizes: a fixed
// size (factor 0) or factor x batch.
struct DimFactors {
  Shape fixed;
  std::vector<int64_t> factor;
  bool batch_dependent() const {
    for (int64_t f : factor)
      if (f) return true;
    return false;
  }
};

constexpr int64_t kBatchA = 2, kBatchB = 3;

DimFactors dim_factors(const std::string& path, const TracedOp& a, const TracedOp& b,
                       size_t index) {
  const Shape& sa = a.output.shape();
  const Shape& sb = b.output.shape();
  if (sa.size() != sb.size())
    fail(path, "op " + std::to_string(index) + " (" + a.op + ") changes rank with the batch size");
  DimFactors d{sa, std::vector<int64_t>(sa.size(), 0)};
  for (size_t i = 0; i < sa.size(); ++i) {
    if (sa[i] == sb[i]) continue;
    if (sa[i] % kBatchA != 0 || sa[i] / kBatchA * kBatchB != sb[i])
      fail(path, "op " + std::to_string(index) + " (" + a.op + "): dim " + std::to_string(i) +
                     " is not a multiple of the batch size");
    d.factor[i] = sa[i] / kBatchA;
  }
  return d;
}

// ---- building the graph ----

class GraphBuilder {
 public:
  GraphBuilder(onnx::GraphProto* graph, std::string path) : graph_(graph), path_(std::move(path)) {}

  std::string fresh(const std::string& base) { return base + "_" + std::to_string(counter_++); }

  std::string node(const std::string& op_type, const std::vector<std::string>& inputs,
                   const std::vector<onnx::AttributeProto>& attributes = {},
                   std::string output = "") {
    onnx::NodeProto* n = graph_->add_node();
    n->set_op_type(op_type);
    const std::string name = fresh(op_type);
    n->set_name(name);
    for (const std::string& in : inputs) n->add_input(in);
    if (output.empty()) output = name + "_out";
    n->add_output(output);
    for (const onnx::AttributeProto& a : attributes) *n->add_attribute() = a;
    ++nodes_;
    return output;
  }

  // Stored under `name`, or a numbered variant when `name` is taken.
  std::string initializer(std::string name, int data_type, const Shape& shape, const void* data,
                          size_t bytes) {
    if (!used_names_.insert(name).second) name = fresh(name);
    used_names_.insert(name);
    TensorProto* t = graph_->add_initializer();
    t->set_name(name);
    t->set_data_type(data_type);
    for (int64_t d : shape) t->add_dims(d);
    t->set_raw_data(data, bytes);
    return name;
  }
  std::string floats(const std::string& name, const Shape& shape, const std::vector<float>& v) {
    return initializer(name, TensorProto::FLOAT, shape, v.data(), v.size() * sizeof(float));
  }
  std::string ints(const std::string& name, const Shape& shape, const std::vector<int64_t>& v) {
    return initializer(name, TensorProto::INT64, shape, v.data(), v.size() * sizeof(int64_t));
  }
  std::string scalar(float value) { return floats(fresh("scalar"), {}, {value}); }
  std::string int_list(const std::vector<int64_t>& v) {
    return ints(fresh("ints"), {static_cast<int64_t>(v.size())}, v);
  }

  int64_t nodes() const { return nodes_; }
  const std::string& path() const { return path_; }

 private:
  onnx::GraphProto* graph_;
  std::string path_;
  int64_t counter_ = 0;
  int64_t nodes_ = 0;
  std::set<std::string> used_names_;
};

onnx::AttributeProto attr(const std::string& name, int64_t value) {
  onnx::AttributeProto a;
  a.set_name(name);
  a.set_type(onnx::AttributeProto::INT);
  a.set_i(value);
  return a;
}
onnx::AttributeProto attr(const std::string& name, float value) {
  onnx::AttributeProto a;
  a.set_name(name);
  a.set_type(onnx::AttributeProto::FLOAT);
  a.set_f(value);
  return a;
}
onnx::AttributeProto attr(const std::string& name, const std::vector<int64_t>& values) {
  onnx::AttributeProto a;
  a.set_name(name);
  a.set_type(onnx::AttributeProto::INTS);
  for (int64_t v : values) a.add_ints(v);
  return a;
}
onnx::AttributeProto attr_string(const std::string& name, const std::string& value) {
  onnx::AttributeProto a;
  a.set_name(name);
  a.set_type(onnx::AttributeProto::STRING);
  a.set_s(value);
  return a;
}

// Scale and zero point of a quantizer as QuantizeLinear/DequantizeLinear
// take them: a scalar per tensor, one entry per channel otherwise. The
// codes are uint8 when every zero point is in 0 .. 255; a range that does
// not hold 0 has a negative zero point, and then, up to 7 bits, int8 holds
// both the codes (0 .. 2^bits - 1) and the zero point.
struct QuantParams {
  std::string scale, zero_point;
  int64_t channels = 1;
  int code_type = TensorProto::UINT8;
};

QuantParams quant_params(GraphBuilder& g, const std::string& name, const Tensor& scale,
                         const Tensor& zero_point, int bits) {
  if (bits < 1 || bits > 8)
    fail(g.path(), name + ": " + std::to_string(bits) + "-bit quantization does not fit 8 bits");
  QuantParams q;
  q.channels = scale.numel();
  const std::vector<float> z = zero_point.to_vector();
  bool unsigned_codes = true;
  for (float v : z) {
    if (v != std::nearbyint(v) || v < -128 || v > 255 || (v < 0 && bits == 8))
      fail(g.path(), name + ": zero point " + std::to_string(v) + " has no " +
                         std::to_string(bits) + "-bit code type");
    unsigned_codes = unsigned_codes && v >= 0;
  }
  q.code_type = unsigned_codes ? TensorProto::UINT8 : TensorProto::INT8;
  std::vector<uint8_t> bytes;
  for (float v : z) bytes.push_back(static_cast<uint8_t>(static_cast<int>(v)));  // two's complement
  const Shape shape = q.channels > 1 ? Shape{q.channels} : Shape{};
  q.scale = g.floats(name + "_scale", shape, scale.to_vector());
  q.zero_point = g.initializer(name + "_zero_point", q.code_type, shape, bytes.data(), bytes.size());
  return q;
}

// Tensor names of the net and of the quantizers, for readable initializers.
using NameMap = std::unordered_map<const TensorImpl*, std::string>;

class Exporter {
 public:
  Exporter(onnx::GraphProto* graph, const std::string& path, NameMap names)
      : g_(graph, path), names_(std::move(names)) {}

  // Translates trace `a` (batch kBatchA) with `b` (batch kBatchB) telling
  // which dims depend on the batch; returns the name of the output value.
  std::string run(const Trace& a, const Trace& b) {
    if (a.ops.size() != b.ops.size())
      fail(g_.path(), "the forward pass runs other ops at another batch size");
    values_[a.input.impl()] = "input";
    for (size_t i = 0; i < a.ops.size(); ++i) {
      const TracedOp& op = a.ops[i];
      if (op.op != b.ops[i].op)
        fail(g_.path(), "the forward pass runs other ops at another batch size");
      const DimFactors dims = dim_factors(g_.path(), op, b.ops[i], i);
      producers_[op.output.impl()] = &op;
      bool dynamic = dims.batch_dependent();
      for (const Tensor& in : op.inputs) dynamic = dynamic || is_dynamic(in);
      if (!dynamic) continue;  // a constant: stored if a dynamic op uses it
      if (op.attrs.ints != b.ops[i].attrs.ints)
        fail(g_.path(), "op " + std::to_string(i) + " (" + op.op +
                            ") has attributes that depend on the batch size");
      values_[op.output.impl()] = emit(op, dims);
    }
    if (!is_dynamic(a.output)) fail(g_.path(), "the output does not depend on the input");
    return values_.at(a.output.impl());
  }

  int64_t nodes() const { return g_.nodes(); }
  int64_t quantized_weights() const { return quantized_weights_; }
  int64_t quantized_activations() const { return quantized_activations_; }

 private:
  bool is_dynamic(const Tensor& t) const { return t.defined() && values_.count(t.impl()); }

  std::string name_of(const Tensor& t, const std::string& fallback) {
    auto it = names_.find(t.impl());
    return it != names_.end() ? it->second : g_.fresh(fallback);
  }

  // The ONNX value of an operand: the output of an emitted op, or a constant
  // stored on first use (a quantized weight as codes + DequantizeLinear).
  // transposed: the 2-D constant transposed (Linear weights for MatMul).
  std::string value(const Tensor& t, bool transposed = false) {
    if (!t.defined()) return "";
    if (auto it = values_.find(t.impl()); it != values_.end()) {
      if (!transposed) return it->second;
      return g_.node("Transpose", {it->second}, {attr("perm", std::vector<int64_t>{1, 0})});
    }
    const auto key = std::make_pair(t.impl(), transposed);
    if (auto it = constants_.find(key); it != constants_.end()) return it->second;
    std::string name;
    auto producer = producers_.find(t.impl());
    if (producer != producers_.end() && (producer->second->op == "fake_quantize" ||
                                         producer->second->op == "adaround_quantize")) {
      name = quantized_weight(*producer->second, transposed);
    } else {
      name = constant(t, transposed);
    }
    constants_[key] = name;
    return name;
  }

  std::string constant(const Tensor& t, bool transposed) {
    Tensor c = t.to(Device::CPU);
    if (transposed) {
      if (c.dim() != 2) fail(g_.path(), "a Linear weight of rank " + std::to_string(c.dim()));
      NoGradGuard no_grad;
      c = permute(c, {1, 0});
    }
    const std::string base = name_of(t, "constant") + (transposed ? "_transposed" : "");
    if (c.dtype() == DType::I64) return g_.ints(base, c.shape(), c.to_int64_vector());
    return g_.floats(base, c.shape(), c.to_vector());
  }

  // A weight quantized by `op`: its codes recovered from the dequantized
  // values (exact: (code - z) * D divided by D rounds back to code - z),
  // checked to give the same values bit for bit, then DequantizeLinear.
  std::string quantized_weight(const TracedOp& op, bool transposed) {
    const Tensor& w = op.inputs[0];
    const Tensor scale = op.inputs[op.op == "fake_quantize" ? 1 : 2].to(Device::CPU);
    const Tensor zero_point = op.inputs[op.op == "fake_quantize" ? 2 : 3].to(Device::CPU);
    const int bits = static_cast<int>(op.attrs.ints[op.op == "fake_quantize" ? 1 : 0]);
    if (op.op == "fake_quantize" && scale.numel() > 1 && op.attrs.ints[0] != 0)
      fail(g_.path(), "a weight quantized per channel along axis " +
                          std::to_string(op.attrs.ints[0]) + " (expected 0)");
    std::string base = name_of(w, "weight");
    const std::vector<float> values = op.output.to(Device::CPU).to_vector();
    const std::vector<float> s = scale.to_vector(), z = zero_point.to_vector();
    const int64_t out = w.size(0), per_channel = w.numel() / out;
    std::vector<uint8_t> codes(values.size());
    for (int64_t o = 0; o < out; ++o) {
      const size_t c = s.size() > 1 ? static_cast<size_t>(o) : 0;
      for (int64_t k = 0; k < per_channel; ++k) {
        const size_t i = static_cast<size_t>(o * per_channel + k);
        const float code = std::nearbyint(values[i] / s[c]) + z[c];
        if ((code - z[c]) * s[c] != values[i] || code < 0 || code > 255)
          fail(g_.path(), base + ": value " + std::to_string(values[i]) +
                              " is not a quantization level");
        codes[i] = static_cast<uint8_t>(code);
      }
    }
    Shape shape = w.shape();
    if (transposed) {  // [out, in] -> [in, out]
      std::vector<uint8_t> t(codes.size());
      for (int64_t o = 0; o < out; ++o)
        for (int64_t k = 0; k < per_channel; ++k) t[k * out + o] = codes[o * per_channel + k];
      codes.swap(t);
      shape = {shape[1], shape[0]};
    }
    const QuantParams q = quant_params(g_, base, scale, zero_point, bits);
    const std::string codes_name =
        g_.initializer(base + "_quantized", q.code_type, shape, codes.data(), codes.size());
    ++quantized_weights_;
    std::vector<onnx::AttributeProto> attributes;
    if (q.channels > 1) attributes.push_back(attr("axis", int64_t{transposed ? 1 : 0}));
    return g_.node("DequantizeLinear", {codes_name, q.scale, q.zero_point}, attributes,
                   base + "_dequantized");
  }

  // QuantizeLinear -> Clip to the engine's levels -> DequantizeLinear.
  std::string quantized_activation(const TracedOp& op) {
    const int64_t axis = op.attrs.ints[0];
    const int bits = static_cast<int>(op.attrs.ints[1]);
    const std::string base = name_of(op.inputs[1], "activation");
    const std::string name = base.size() > 6 && base.compare(base.size() - 6, 6, "_scale") == 0
                                 ? base.substr(0, base.size() - 6)
                                 : base;
    const QuantParams q = quant_params(g_, name, op.inputs[1].to(Device::CPU),
                                       op.inputs[2].to(Device::CPU), bits);
    std::vector<onnx::AttributeProto> attributes;
    if (q.channels > 1) attributes.push_back(attr("axis", axis));
    std::string codes =
        g_.node("QuantizeLinear", {value(op.inputs[0]), q.scale, q.zero_point}, attributes);
    if (bits < 8 || q.code_type == TensorProto::INT8) {
      const uint8_t levels[2] = {0, static_cast<uint8_t>((1 << bits) - 1)};
      const std::string lo = g_.initializer(g_.fresh("code_min"), q.code_type, {}, &levels[0], 1);
      const std::string hi = g_.initializer(g_.fresh("code_max"), q.code_type, {}, &levels[1], 1);
      codes = g_.node("Clip", {codes, lo, hi});
    }
    ++quantized_activations_;
    return g_.node("DequantizeLinear", {codes, q.scale, q.zero_point}, attributes);
  }

  // A shape whose batch-dependent dims are computed from the input's batch.
  std::string shape_value(const DimFactors& dims) {
    if (!dims.batch_dependent()) return g_.int_list(dims.fixed);
    if (batch_.empty()) {
      const std::string shape = g_.node("Shape", {"input"});
      batch_ = g_.node("Slice", {shape, g_.int_list({0}), g_.int_list({1})});
    }
    std::vector<std::string> parts;
    for (size_t i = 0; i < dims.fixed.size(); ++i) {
      if (dims.factor[i] == 0)
        parts.push_back(g_.int_list({dims.fixed[i]}));
      else
        parts.push_back(dims.factor[i] == 1
                            ? batch_
                            : g_.node("Mul", {batch_, g_.int_list({dims.factor[i]})}));
    }
    return g_.node("Concat", parts, {attr("axis", int64_t{0})});
  }

  // Reshape's target: -1 for the one dim that holds the batch.
  std::string reshape_target(const DimFactors& dims) {
    int batch_dims = 0;
    Shape target = dims.fixed;
    for (size_t i = 0; i < target.size(); ++i)
      if (dims.factor[i]) {
        ++batch_dims;
        target[i] = -1;
      }
    if (batch_dims <= 1) return g_.int_list(target);
    return shape_value(dims);
  }

  std::string slice(const std::string& x, int64_t dim, int64_t start, int64_t end) {
    return g_.node("Slice", {x, g_.int_list({start}), g_.int_list({end}), g_.int_list({dim})});
  }

  std::string unary(const char* op_type, const TracedOp& op) {
    return g_.node(op_type, {value(op.inputs[0])});
  }

  std::string clip(const TracedOp& op, float lo, float hi) {
    return g_.node("Clip", {value(op.inputs[0]), g_.scalar(lo), g_.scalar(hi)});
  }

  std::string emit(const TracedOp& op, const DimFactors& dims) {
    const std::string& k = op.op;
    const std::vector<int64_t>& ints = op.attrs.ints;
    const std::vector<float>& floats = op.attrs.floats;
    static const std::map<std::string, const char*> kBinary = {
        {"add", "Add"}, {"sub", "Sub"}, {"mul", "Mul"}, {"div", "Div"}};
    static const std::map<std::string, const char*> kUnary = {
        {"neg", "Neg"},       {"exp", "Exp"},         {"log", "Log"},
        {"sqrt", "Sqrt"},     {"abs", "Abs"},         {"relu", "Relu"},
        {"sigmoid", "Sigmoid"}, {"round_ste", "Round"}, {"floor_ste", "Floor"},
        {"softmax", "Softmax"}, {"log_softmax", "LogSoftmax"}};
    if (auto it = kBinary.find(k); it != kBinary.end())
      return g_.node(it->second, {value(op.inputs[0]), value(op.inputs[1])});
    if (auto it = kUnary.find(k); it != kUnary.end()) return unary(it->second, op);
    if (k == "add_scalar") return g_.node("Add", {value(op.inputs[0]), g_.scalar(floats[0])});
    if (k == "mul_scalar") return g_.node("Mul", {value(op.inputs[0]), g_.scalar(floats[0])});
    if (k == "pow") return g_.node("Pow", {value(op.inputs[0]), g_.scalar(floats[0])});
    if (k == "relu6") return clip(op, 0.0f, 6.0f);
    if (k == "clamp") return clip(op, floats[0], floats[1]);
    if (k == "gelu") {  // 0.5 x (1 + erf(x / sqrt(2))), as the engine's kernel
      const std::string x = value(op.inputs[0]);
      const std::string erf =
          g_.node("Erf", {g_.node("Mul", {x, g_.scalar(kSqrtHalf)})});
      const std::string half_x = g_.node("Mul", {x, g_.scalar(0.5f)});
      return g_.node("Mul", {half_x, g_.node("Add", {erf, g_.scalar(1.0f)})});
    }
    if (k == "where") {
      const std::string mask =
          g_.node("Cast", {value(op.inputs[0])}, {attr("to", int64_t{TensorProto::BOOL})});
      return g_.node("Where", {mask, value(op.inputs[1]), value(op.inputs[2])});
    }
    if (k == "matmul") return g_.node("MatMul", {value(op.inputs[0]), value(op.inputs[1])});
    if (k == "linear") {
      const std::string y =
          g_.node("MatMul", {value(op.inputs[0]), value(op.inputs[1], /*transposed=*/true)});
      return op.inputs[2].defined() ? g_.node("Add", {y, value(op.inputs[2])}) : y;
    }
    if (k == "conv2d") {
      std::vector<std::string> inputs = {value(op.inputs[0]), value(op.inputs[1])};
      if (op.inputs[2].defined()) inputs.push_back(value(op.inputs[2]));
      const Tensor& w = op.inputs[1];
      return g_.node("Conv", inputs,
                     {attr("kernel_shape", std::vector<int64_t>{w.size(2), w.size(3)}),
                      attr("strides", std::vector<int64_t>{ints[0], ints[1]}),
                      attr("pads", std::vector<int64_t>{ints[2], ints[3], ints[2], ints[3]}),
                      attr("dilations", std::vector<int64_t>{ints[4], ints[5]}),
                      attr("group", ints[6])});
    }
    if (k == "max_pool2d" || k == "avg_pool2d") {
      std::vector<onnx::AttributeProto> attributes = {
          attr("kernel_shape", std::vector<int64_t>{ints[0], ints[0]}),
          attr("strides", std::vector<int64_t>{ints[1], ints[1]}),
          attr("pads", std::vector<int64_t>{ints[2], ints[2], ints[2], ints[2]})};
      if (k == "avg_pool2d") attributes.push_back(attr("count_include_pad", ints[3]));
      return g_.node(k == "max_pool2d" ? "MaxPool" : "AveragePool", {value(op.inputs[0])},
                     attributes);
    }
    if (k == "adaptive_avg_pool2d") {
      const Tensor& x = op.inputs[0];
      if (ints[0] == 1 && ints[1] == 1) return g_.node("GlobalAveragePool", {value(x)});
      if (x.size(2) % ints[0] || x.size(3) % ints[1])
        fail(g_.path(), "adaptive average pooling of " + shape_str(x.shape()) + " to " +
                            std::to_string(ints[0]) + "x" + std::to_string(ints[1]) +
                            " has uneven windows");
      const int64_t kh = x.size(2) / ints[0], kw = x.size(3) / ints[1];
      return g_.node("AveragePool", {value(x)},
                     {attr("kernel_shape", std::vector<int64_t>{kh, kw}),
                      attr("strides", std::vector<int64_t>{kh, kw})});
    }
    if (k == "batch_norm2d") {
      if (ints[0]) fail(g_.path(), "BatchNorm in training mode");
      const int64_t channels = op.inputs[0].size(1);
      return g_.node("BatchNormalization",
                     {value(op.inputs[0]), weight_or(op.inputs[1], 1.0f, channels),
                      weight_or(op.inputs[2], 0.0f, channels), value(op.inputs[3]),
                      value(op.inputs[4])},
                     {attr("epsilon", floats[0])});
    }
    if (k == "layer_norm") {
      const int64_t d = op.inputs[0].size(-1);
      return g_.node("LayerNormalization",
                     {value(op.inputs[0]), weight_or(op.inputs[1], 1.0f, d),
                      weight_or(op.inputs[2], 0.0f, d)},
                     {attr("axis", int64_t{-1}), attr("epsilon", floats[0])});
    }
    if (k == "reshape") return g_.node("Reshape", {value(op.inputs[0]), reshape_target(dims)});
    if (k == "broadcast_to") return g_.node("Expand", {value(op.inputs[0]), shape_value(dims)});
    if (k == "permute") return g_.node("Transpose", {value(op.inputs[0])}, {attr("perm", ints)});
    if (k == "concat") {
      std::vector<std::string> inputs;
      for (const Tensor& t : op.inputs) inputs.push_back(value(t));
      return g_.node("Concat", inputs, {attr("axis", ints[0])});
    }
    if (k == "narrow" || k == "slice_rows") {
      if (dims.factor[static_cast<size_t>(ints[0])])
        fail(g_.path(), k + " along the batch dimension");
      return slice(value(op.inputs[0]), ints[0], ints[1], ints[1] + ints[2]);
    }
    if (k == "roll") {  // out[i] = x[i - shift]: the last `shift` entries move to the front
      std::string y = value(op.inputs[0]);
      for (size_t i = 0; i + 1 < ints.size(); i += 2) {
        const int64_t dim = ints[i + 1], n = op.inputs[0].size(dim);
        if (dims.factor[static_cast<size_t>(dim)]) fail(g_.path(), "roll along the batch dimension");
        const int64_t shift = ((ints[i] % n) + n) % n;
        y = g_.node("Concat", {slice(y, dim, n - shift, n), slice(y, dim, 0, n - shift)},
                    {attr("axis", dim)});
      }
      return y;
    }
    if (k == "index_select")
      return g_.node("Gather", {value(op.inputs[0]), value(op.inputs[1])}, {attr("axis", ints[0])});
    if (k == "pad") {
      const int64_t rank = op.inputs[0].dim();
      std::vector<int64_t> pads(static_cast<size_t>(2 * rank), 0);
      for (size_t i = 0; i < ints.size() / 2; ++i) {
        const int64_t d = rank - 1 - static_cast<int64_t>(i);
        pads[static_cast<size_t>(d)] = ints[2 * i];
        pads[static_cast<size_t>(rank + d)] = ints[2 * i + 1];
      }
      return g_.node("Pad", {value(op.inputs[0]), g_.int_list(pads), g_.scalar(floats[0])},
                     {attr_string("mode", "constant")});
    }
    if (k == "sum_to") {  // sum over the dims that become 1, then drop leading ones
      const Shape& in = op.inputs[0].shape();
      const Shape& out = op.output.shape();
      const size_t lead = in.size() - out.size();
      std::vector<int64_t> axes;
      for (size_t d = 0; d < in.size(); ++d)
        if (d < lead || (out[d - lead] == 1 && in[d] != 1)) axes.push_back(static_cast<int64_t>(d));
      std::string y = g_.node("ReduceSum", {value(op.inputs[0]), g_.int_list(axes)},
                              {attr("keepdims", int64_t{1})});
      return lead ? g_.node("Reshape", {y, reshape_target(dims)}) : y;
    }
    if (k == "fake_quantize") return quantized_activation(op);
    fail(g_.path(), "the op '" + k + "' has no ONNX translation");
  }

  // An optional norm parameter, or a constant of `fill`.
  std::string weight_or(const Tensor& t, float fill, int64_t size) {
    if (t.defined()) return value(t);
    return g_.floats(g_.fresh(fill == 0.0f ? "zeros" : "ones"), {size},
                     std::vector<float>(static_cast<size_t>(size), fill));
  }

  GraphBuilder g_;
  NameMap names_;
  std::unordered_map<const TensorImpl*, std::string> values_;
  std::unordered_map<const TensorImpl*, const TracedOp*> producers_;
  std::map<std::pair<const TensorImpl*, bool>, std::string> constants_;
  std::string batch_;
  int64_t quantized_weights_ = 0, quantized_activations_ = 0;
};

void set_type(onnx::ValueInfoProto* info, const std::string& name,
              const std::vector<std::pair<std::string, int64_t>>& dims) {
  info->set_name(name);
  onnx::TypeProto_Tensor* t = info->mutable_type()->mutable_tensor_type();
  t->set_elem_type(TensorProto::FLOAT);
  for (const auto& [param, size] : dims) {
    onnx::TensorShapeProto_Dimension* d = t->mutable_shape()->add_dim();
    if (param.empty())
      d->set_dim_value(size);
    else
      d->set_dim_param(param);
  }
}

void add_metadata(onnx::ModelProto& model, const std::string& key, const std::string& value) {
  onnx::StringStringEntryProto* entry = model.add_metadata_props();
  entry->set_key(key);
  entry->set_value(value);
}

NameMap net_names(Net& net) {
  NameMap names;
  for (const auto& [name, t] : net.named_parameters()) names[t.impl()] = name;
  for (const auto& [name, t] : net.named_buffers()) names[t.impl()] = name;
  return names;
}

OnnxExportResult export_traced(Net& net, const std::string& path, const nlohmann::json& description,
                               bool reference_preprocessing, NameMap names) {
  Stopwatch clock;
  const bool was_training = net.training();
  net.eval();
  Trace a, b;
  try {
    a = trace_forward(net, kBatchA);
    b = trace_forward(net, kBatchB);
  } catch (...) {
    net.train(was_training);
    throw;
  }
  net.train(was_training);

  onnx::ModelProto model;
  model.set_ir_version(onnx::IR_VERSION);
  model.set_producer_name("packptq");
  model.set_producer_version(packptq_version());
  model.set_model_version(1);
  model.set_doc_string(net.model_name() + " exported by packptq");
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOnnxOpset);

  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name(net.model_name());
  Exporter exporter(graph, path, std::move(names));
  const std::string logits = exporter.run(a, b);
  onnx::NodeProto* out = graph->add_node();
  out->set_op_type("Identity");
  out->set_name("logits");
  out->add_input(logits);
  out->add_output("logits");
  const int64_t size = net.preprocess().input_size;
  set_type(graph->add_input(), "input", {{"batch", 0}, {"", 3}, {"", size}, {"", size}});
  set_type(graph->add_output(), "logits", {{"batch", 0}, {"", a.output.size(1)}});

  const data::PreprocessConfig p = data::preprocess_config(net.preprocess(), reference_preprocessing);
  add_metadata(model, "model_name", net.model_name());
  add_metadata(model, "input_size", std::to_string(p.input_size));
  add_metadata(model, "crop_pct", nlohmann::json(p.crop_pct).dump());
  add_metadata(model, "interpolation", data::interpolation_name(p.interpolation));
  add_metadata(model, "mean", nlohmann::json(p.mean).dump());
  add_metadata(model, "std", nlohmann::json(p.stddev).dump());
  add_metadata(model, "packptq", description.dump());

  try {
    onnx::checker::check_model(model);
    onnx::shape_inference::InferShapes(model, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(true, 1, false));
  } catch (const std::exception& e) {
    fail(path, std::string("the ONNX checker refused the model: ") + e.what());
  }
  std::string bytes;
  if (!model.SerializeToString(&bytes)) fail(path, "the model does not serialize (over 2 GB?)");
  write_text_atomic(path, bytes);

  OnnxExportResult result;
  result.path = path;
  result.bytes = static_cast<int64_t>(bytes.size());
  result.nodes = exporter.nodes() + 1;
  result.quantized_weights = exporter.quantized_weights();
  result.quantized_activations = exporter.quantized_activations();
  result.seconds = clock.seconds();
  return result;
}

}  // namespace

OnnxExportResult export_onnx(Net& net, const std::string& path, const nlohmann::json& description,
                             bool reference_preprocessing) {
  return export_traced(net, path, description, reference_preprocessing, net_names(net));
}

OnnxExportResult export_onnx(QuantModel& model, const std::string& path,
                             const nlohmann::json& description, bool reference_preprocessing) {
  NameMap names = net_names(model.net());
  std::vector<QuantMode> modes;
  for (QuantLayer& layer : model.layers()) {
    QuantHook& hook = *layer.hook;
    modes.push_back(hook.mode());
    if (hook.weight_quantizer) {
      if (!hook.weight_quantizer->initialized())
        fail(path, "layer " + layer.name + " is not initialized");
      if (hook.weight_quantizer->rounding == Rounding::Soft)
        fail(path, "layer " + layer.name + " is being reconstructed (soft rounding)");
    }
    for (size_t i = 0; i < hook.operand_quantizers.size(); ++i) {
      const UniformQuantizer* q = hook.operand_quantizers[i].get();
      if (!q) continue;
      if (!q->initialized()) fail(path, "layer " + layer.name + " is not initialized");
      const std::string operand = layer.layer->kind() == LayerKind::MatMul
                                      ? ".operand" + std::to_string(i)
                                      : std::string(".input");
      names[q->scale.impl()] = layer.name + operand + "_scale";
    }
  }
  // A loaded model holds its weights dequantized with the weight quantizers
  // off; quantizing them again with nearest rounding gives the same values
  // and lets the export see the codes.
  model.set_quant(true, true);
  auto restore = [&] {
    for (size_t i = 0; i < model.layers().size(); ++i) {
      QuantHook& hook = *model.layers()[i].hook;
      hook.set_quant(modes[i] == QuantMode::Weights || modes[i] == QuantMode::Quantized,
                     modes[i] == QuantMode::Activations || modes[i] == QuantMode::Quantized);
    }
  };
  try {
    OnnxExportResult result = export_traced(model.net(), path, description,
                                            reference_preprocessing, std::move(names));
    restore();
    return result;
  } catch (...) {
    restore();
    throw;
  }
}

}  // namespace pk
