// Op tracing: while an OpTrace lives on a thread, every forward op run on
// that thread appends what it computed (its name, all its operands, its
// output and the attributes that are not in the operands' shapes). The list
// is the network's forward pass as a graph, which exporters translate into
// other formats (quant/onnx_export.h) without the nets knowing about them.
//
// Attributes per op (ints / floats; every other op has none):
//   conv2d             ints: stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups
//   permute            ints: the order
//   concat             ints: dim
//   narrow, slice_rows ints: dim, start, length (slice_rows: dim 0)
//   roll               ints: shift0, dim0, shift1, dim1, ...
//   index_select       ints: dim (operands: x, the int64 index)
//   pad                ints: the pads as pad() takes them; floats: value
//   max_pool2d         ints: kernel, stride, padding
//   avg_pool2d         ints: kernel, stride, padding, count_include_pad
//   adaptive_avg_pool2d ints: out_h, out_w
//   batch_norm2d       ints: training; floats: eps
//   layer_norm         floats: eps
//   element-wise unary floats: p0, p1 (add_scalar, mul_scalar, pow: p0 is
//                      the scalar; clamp: lo, hi; unused otherwise)
//   fake_quantize      ints: axis, bits
//   adaround_quantize  ints: bits, hard
// Operands are those of the op's signature in engine/ops.h, all of them
// (where: mask, a, b; batch_norm2d: x, weight, bias, running mean and
// variance). Shapes (the targets of reshape, broadcast_to and sum_to) are
// the output's shape; sum and mean are sum_to, reshape and mul_scalar.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace pk {

struct TraceAttrs {
  std::vector<int64_t> ints;
  std::vector<float> floats;
};

struct TracedOp {
  std::string op;
  std::vector<Tensor> inputs;  // undefined where an optional operand is absent
  Tensor output;
  TraceAttrs attrs;
};

class OpTrace {
 public:
  OpTrace();   // starts tracing on the calling thread
  ~OpTrace();  // stops (restores a trace it interrupted)
  OpTrace(const OpTrace&) = delete;
  OpTrace& operator=(const OpTrace&) = delete;

  const std::vector<TracedOp>& ops() const { return ops_; }
  void add(TracedOp op) { ops_.push_back(std::move(op)); }

 private:
  std::vector<TracedOp> ops_;
  OpTrace* previous_;
};

// The trace recording on this thread, or null.
OpTrace* active_trace();

// Appends an op to the active trace, if any; `attrs` builds the attributes
// only then, so that untraced calls (training loops) pay one branch.
template <typename MakeAttrs>
void trace_op(const char* op, std::initializer_list<Tensor> inputs, const Tensor& output,
              MakeAttrs&& attrs) {
  if (OpTrace* trace = active_trace()) trace->add({op, std::vector<Tensor>(inputs), output, attrs()});
}
inline void trace_op(const char* op, std::initializer_list<Tensor> inputs, const Tensor& output) {
  if (OpTrace* trace = active_trace()) trace->add({op, std::vector<Tensor>(inputs), output, {}});
}
template <typename MakeAttrs>
void trace_op(const char* op, const std::vector<Tensor>& inputs, const Tensor& output,
              MakeAttrs&& attrs) {
  if (OpTrace* trace = active_trace()) trace->add({op, inputs, output, attrs()});
}

}  // namespace pk
