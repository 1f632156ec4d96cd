// Layout ops: views (reshape, slice_rows) and copies (permute, concat,
// narrow, roll, index_select, pad), each with its backward.
#include <algorithm>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/ops_util.h"

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
      check(infer < 0, "reshape: more than one -1 in " + shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      known *= resolved[i];
    }
  }
  if (infer >= 0) {
    check(known > 0 && x.numel() % known == 0,
          "reshape: cannot infer -1 reshaping " + x.describe() + " to " + shape_str(shape));
    resolved[infer] = x.numel() / known;
  }
  check(shape_numel(resolved) == x.numel(),
        "reshape: " + x.describe() + " cannot become " + shape_str(shape));
  if (resolved == x.shape()) return x;
  Shape in_shape = x.shape();
  return record(view_of(x, resolved, 0), "reshape", {x},
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

Tensor slice_rows(const Tensor& x, int64_t start, int64_t length) {
  check(x.dim() >= 1 && start >= 0 && length >= 0 && start + length <= x.size(0),
        "slice_rows: rows [" + std::to_string(start) + ", " + std::to_string(start + length) +
            ") out of range for " + x.describe());
  int64_t row = x.dim() ? x.numel() / std::max<int64_t>(x.size(0), 1) : 1;
  Shape shape = x.shape();
  shape[0] = length;
  return record(view_of(x, shape, start * row), "slice_rows", {x},
                [full = x.shape(), start, length, dev = x.device()](const Tensor& g)
                    -> std::vector<Tensor> {
                  Tensor dx = Tensor::zeros(full, dev);
                  view_of(dx, g.shape(), start * (length ? g.numel() / length : 0)).copy_(g);
                  return {dx};
                });
}

}  // namespace pk
