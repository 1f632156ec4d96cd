// Layout ops: views (reshape, slice_rows) and copies (permute, concat,
// narrow, roll, index_select, pad), each with its backward.
#include <algorithm>
#include <string>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/ops_util.h"
#include "engine/trace.h"

namespace pk {

// A new handle on the same storage with another shape/offset; the graph edge
// carries the gradient back through `backward`.
static Tensor view_of(const Tensor& x, Shape shape, int64_t extra_offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = x.impl()->storage;
  impl->offset = x.impl()->offset + extra_offset;
  impl->shape = std::move(shape);
  impl->dtype = x.dtype();
  return Tensor(std::move(impl));
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  Shape resolved = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < resolved.size(); ++i) {
    if (resolved[i] == -1) {
      check(infer < 0, [&] { return "reshape: more than one -1 in " + shape_str(shape); });
      infer = static_cast<int64_t>(i);
    } else {
      known *= resolved[i];
    }
  }
  if (infer >= 0) {
    check(known > 0 && x.numel() % known == 0, [&] {
      return "reshape: cannot infer -1 reshaping " + x.describe() + " to " + shape_str(shape);
    });
    resolved[infer] = x.numel() / known;
  }
  check(shape_numel(resolved) == x.numel(),
        [&] { return "reshape: " + x.describe() + " cannot become " + shape_str(shape); });
  if (resolved == x.shape()) return x;
  Shape in_shape = x.shape();
  Tensor out = view_of(x, resolved, 0);
  trace_op("reshape", {x}, out);
  return record(out, "reshape", {x},
                [in_shape](const Tensor& g) -> std::vector<Tensor> {
                  return {reshape(g, in_shape)};
                });
}

Tensor flatten(const Tensor& x, int64_t start_dim) {
  start_dim = wrap_dim(start_dim, x.dim(), "flatten");
  Shape shape(x.shape().begin(), x.shape().begin() + start_dim);
  shape.push_back(-1);
  return reshape(x, shape);
}

Tensor contiguous(const Tensor& x) { return x; }

// x viewed as [outer, size of dim, inner] around dim.
static AxisGeom axis_geom(const Shape& shape, int64_t dim) {
  AxisGeom g{1, shape[dim], 1};
  for (int64_t d = 0; d < dim; ++d) g.outer *= shape[d];
  for (size_t d = dim + 1; d < shape.size(); ++d) g.inner *= shape[d];
  return g;
}

Tensor permute(const Tensor& x, const std::vector<int>& perm) {
  const int n = static_cast<int>(x.dim());
  const std::string perm_text = shape_str(Shape(perm.begin(), perm.end()));
  check(static_cast<int>(perm.size()) == n, [&] {
    return "permute: order " + perm_text + " does not have one entry per dim of " + x.describe();
  });
  check(n <= kMaxDims, "permute: tensors of more than 8 dims are not supported");
  PermuteGeom geom{};
  geom.ndim = n;
  std::vector<int> inverse(n, -1);
  Shape out_shape(n);
  bool identity = true;
  for (int i = 0; i < n; ++i) {
    int d = static_cast<int>(wrap_dim(perm[i], n, "permute"));
    check(inverse[d] < 0, [&] { return "permute: order " + perm_text + " repeats a dim"; });
    inverse[d] = i;
    geom.perm[i] = d;
    geom.in_shape[i] = x.size(i);
    out_shape[i] = x.size(d);
    identity = identity && d == i;
  }
  if (identity) return x;
  Tensor out = Tensor::empty(out_shape, DType::F32, x.device());
  backend(x.device()).permute(geom, x.data(), out.data());
  trace_op("permute", {x}, out, [&] { return TraceAttrs{Shape(perm.begin(), perm.end()), {}}; });
  return record(out, "permute", {x}, [inverse](const Tensor& g) -> std::vector<Tensor> {
    return {permute(g, inverse)};
  });
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  d0 = wrap_dim(d0, x.dim(), "transpose");
  d1 = wrap_dim(d1, x.dim(), "transpose");
  std::vector<int> perm(x.dim());
  for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int>(i);
  std::swap(perm[d0], perm[d1]);
  return permute(x, perm);
}

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  check(!xs.empty(), "concat: needs at least one tensor");
  const int64_t d = wrap_dim(dim, xs[0].dim(), "concat");
  Shape out_shape = xs[0].shape();
  out_shape[d] = 0;
  for (size_t k = 0; k < xs.size(); ++k) {
    check_same_device(xs[0], xs[k], "concat");
    Shape expect = xs[0].shape(), got = xs[k].shape();
    if (got.size() == expect.size()) expect[d] = got[d];
    check(got == expect, [&] {
      return "concat: tensor " + std::to_string(k) + " " + xs[k].describe() +
             " does not match tensor 0 " + xs[0].describe() + " outside dim " + std::to_string(d);
    });
    out_shape[d] += got[d];
  }
  Tensor out = Tensor::empty(out_shape, DType::F32, xs[0].device());
  const AxisGeom a = axis_geom(out_shape, d);
  const Backend& be = backend(out.device());
  std::vector<Shape> shapes;
  std::vector<bool> need;
  int64_t offset = 0;
  for (const Tensor& x : xs) {
    be.copy_axis_block(a.outer, a.inner, x.size(d), x.data(), x.size(d), 0, out.data(), a.dim,
                       offset);
    offset += x.size(d);
    shapes.push_back(x.shape());
    need.push_back(x.requires_grad());
  }
  trace_op("concat", xs, out, [&] { return TraceAttrs{{d}, {}}; });
  return record(out, "concat", xs, [a, d, shapes, need](const Tensor& g) -> std::vector<Tensor> {
    const Backend& be = backend(g.device());
    std::vector<Tensor> dxs(shapes.size());
    int64_t offset = 0;
    for (size_t k = 0; k < shapes.size(); ++k) {
      const int64_t len = shapes[k][d];
      if (need[k]) {
        dxs[k] = Tensor::empty(shapes[k], DType::F32, g.device());
        be.copy_axis_block(a.outer, a.inner, len, g.data(), a.dim, offset, dxs[k].data(), len, 0);
      }
      offset += len;
    }
    return dxs;
  });
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  const int64_t d = wrap_dim(dim, x.dim(), "narrow");
  check(start >= 0 && length >= 0 && start + length <= x.size(d), [&] {
    return "narrow: range [" + std::to_string(start) + ", " + std::to_string(start + length) +
           ") out of bounds for dim " + std::to_string(d) + " of " + x.describe();
  });
  if (length == x.size(d)) return x;
  const AxisGeom a = axis_geom(x.shape(), d);
  Shape out_shape = x.shape();
  out_shape[d] = length;
  Tensor out = Tensor::empty(out_shape, DType::F32, x.device());
  backend(x.device()).copy_axis_block(a.outer, a.inner, length, x.data(), a.dim, start,
                                      out.data(), length, 0);
  trace_op("narrow", {x}, out, [&] { return TraceAttrs{{d, start, length}, {}}; });
  return record(out, "narrow", {x},
                [a, start, length, in_shape = x.shape()](const Tensor& g) -> std::vector<Tensor> {
                  Tensor dx = Tensor::zeros(in_shape, g.device());
                  backend(g.device()).copy_axis_block(a.outer, a.inner, length, g.data(), length,
                                                      0, dx.data(), a.dim, start);
                  return {dx};
                });
}

Tensor roll(const Tensor& x, const std::vector<int64_t>& shifts,
            const std::vector<int64_t>& dims) {
  if (dims.empty()) {  // as torch.roll: roll the flattened tensor
    check(shifts.size() == 1, [&] {
      return "roll: without dims exactly one shift is needed, got " + std::to_string(shifts.size());
    });
    return reshape(roll(reshape(x, {-1}), shifts, {0}), x.shape());
  }
  check(shifts.size() == dims.size(), [&] {
    return "roll: " + std::to_string(shifts.size()) + " shifts for " + std::to_string(dims.size()) +
           " dims";
  });
  // One net shift per dim; a dim named twice rolls by the sum.
  std::vector<int64_t> net(x.dim(), 0);
  for (size_t i = 0; i < dims.size(); ++i) net[wrap_dim(dims[i], x.dim(), "roll")] += shifts[i];
  std::vector<int64_t> rolled_dims, back_shifts;
  Tensor out = x;
  for (int64_t d = 0; d < x.dim(); ++d) {
    const int64_t size = x.size(d);
    if (size == 0 || net[d] % size == 0) continue;
    Tensor next = Tensor::empty(x.shape(), DType::F32, x.device());
    backend(x.device()).roll(axis_geom(x.shape(), d), net[d], out.data(), next.data());
    out = next;
    rolled_dims.push_back(d);
    back_shifts.push_back(-(net[d] % size));
  }
  if (rolled_dims.empty()) return x;
  trace_op("roll", {x}, out, [&] {
    TraceAttrs attrs;
    for (int64_t d : rolled_dims) attrs.ints.insert(attrs.ints.end(), {net[d], d});
    return attrs;
  });
  return record(out, "roll", {x},
                [rolled_dims, back_shifts](const Tensor& g) -> std::vector<Tensor> {
                  return {roll(g, back_shifts, rolled_dims)};
                });
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  const int64_t d = wrap_dim(dim, x.dim(), "index_select");
  check(index.dtype() == DType::I64 && index.dim() == 1,
        [&] { return "index_select: index must be a 1-D int64 tensor, got " + index.describe(); });
  check_same_device(x, index, "index_select");
  const int64_t size = x.size(d);
  for (int64_t i : index.to_int64_vector())
    check(i >= 0 && i < size, [&] {
      return "index_select: index " + std::to_string(i) + " out of range for dim " +
             std::to_string(d) + " of " + x.describe();
    });
  const AxisGeom a = axis_geom(x.shape(), d);
  const int64_t n = index.numel();
  Shape out_shape = x.shape();
  out_shape[d] = n;
  Tensor out = Tensor::empty(out_shape, DType::F32, x.device());
  backend(x.device()).index_select_forward(a, index.data_i64(), n, x.data(), out.data());
  trace_op("index_select", {x, index}, out, [&] { return TraceAttrs{{d}, {}}; });
  return record(out, "index_select", {x},
                [a, n, index, in_shape = x.shape()](const Tensor& g) -> std::vector<Tensor> {
                  Tensor dx = Tensor::empty(in_shape, DType::F32, g.device());
                  backend(g.device()).index_select_backward(a, index.data_i64(), n, g.data(),
                                                            dx.data());
                  return {dx};
                });
}

Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, float value) {
  const std::string pads_text = shape_str(pads);
  check(pads.size() % 2 == 0 && static_cast<int64_t>(pads.size()) <= 2 * x.dim(), [&] {
    return "pad: pads " + pads_text + " must be before/after pairs, at most one per dim of " +
           x.describe();
  });
  for (int64_t p : pads)
    check(p >= 0, [&] { return "pad: negative padding " + pads_text + " is not supported"; });
  // One dim at a time: fill with the value, then copy the input block inside.
  std::vector<int64_t> padded_dims, befores;
  Tensor out = x;
  for (size_t i = 0; i < pads.size() / 2; ++i) {
    const int64_t d = x.dim() - 1 - static_cast<int64_t>(i);
    const int64_t before = pads[2 * i], after = pads[2 * i + 1];
    if (before == 0 && after == 0) continue;
    Shape shape = out.shape();
    shape[d] += before + after;
    Tensor next = Tensor::full(shape, value, x.device());
    const AxisGeom a = axis_geom(shape, d);
    backend(x.device()).copy_axis_block(a.outer, a.inner, out.size(d), out.data(), out.size(d), 0,
                                        next.data(), a.dim, before);
    out = next;
    padded_dims.push_back(d);
    befores.push_back(before);
  }
  if (padded_dims.empty()) return x;
  trace_op("pad", {x}, out, [&] { return TraceAttrs{pads, {value}}; });
  return record(out, "pad", {x},
                [padded_dims, befores, in_shape = x.shape()](const Tensor& g)
                    -> std::vector<Tensor> {
                  Tensor dx = g;
                  for (size_t i = 0; i < padded_dims.size(); ++i)
                    dx = narrow(dx, padded_dims[i], befores[i], in_shape[padded_dims[i]]);
                  return {dx};
                });
}

Tensor slice_rows(const Tensor& x, int64_t start, int64_t length) {
  check(x.dim() >= 1 && start >= 0 && length >= 0 && start + length <= x.size(0), [&] {
    return "slice_rows: rows [" + std::to_string(start) + ", " + std::to_string(start + length) +
           ") out of range for " + x.describe();
  });
  int64_t row = x.dim() ? x.numel() / std::max<int64_t>(x.size(0), 1) : 1;
  Shape shape = x.shape();
  shape[0] = length;
  Tensor out = view_of(x, shape, start * row);
  trace_op("slice_rows", {x}, out, [&] { return TraceAttrs{{0, start, length}, {}}; });
  return record(out, "slice_rows", {x},
                [full = x.shape(), start, length, dev = x.device()](const Tensor& g)
                    -> std::vector<Tensor> {
                  Tensor dx = Tensor::zeros(full, dev);
                  view_of(dx, g.shape(), start * (length ? g.numel() / length : 0)).copy_(g);
                  return {dx};
                });
}

}  // namespace pk
