// Reductions: sum/mean over dims and the sum_to/broadcast_to pair, each the
// other's backward.
#include <algorithm>
#include <string>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/ops_util.h"
#include "engine/trace.h"

namespace pk {

namespace {

// `small` padded with leading 1s to the rank of `big`.
Shape align_rank(const Shape& small, size_t rank) {
  Shape s(rank - small.size(), 1);
  s.insert(s.end(), small.begin(), small.end());
  return s;
}

}  // namespace

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  check(shape.size() <= x.shape().size() && broadcast_shapes(shape, x.shape()) == x.shape(), [&] {
    return "sum_to: cannot reduce " + shape_str(x.shape()) + " to " + shape_str(shape);
  });
  Shape aligned = align_rank(shape, x.shape().size());
  Tensor out = Tensor::empty(shape, DType::F32, x.device());
  BroadcastShape s = make_broadcast(x.shape(), aligned, aligned);
  for (int d = 0; d < s.ndim; ++d) s.a[d] = x.shape()[d];
  backend(x.device()).sum_to_shape(s, x.data(), out.data());
  trace_op("sum_to", {x}, out);
  Shape in_shape = x.shape();
  return record(out, "sum_to", {x}, [in_shape](const Tensor& g) -> std::vector<Tensor> {
    return {broadcast_to(g, in_shape)};
  });
}

Tensor broadcast_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  check(broadcast_shapes(x.shape(), shape) == shape, [&] {
    return "broadcast_to: cannot broadcast " + shape_str(x.shape()) + " to " + shape_str(shape);
  });
  Shape aligned = align_rank(x.shape(), shape.size());
  Tensor out = Tensor::empty(shape, DType::F32, x.device());
  BroadcastShape s = make_broadcast(aligned, shape, shape);
  backend(x.device()).broadcast_to(s, x.data(), out.data());
  trace_op("broadcast_to", {x}, out);
  Shape in_shape = x.shape();
  return record(out, "broadcast_to", {x}, [in_shape](const Tensor& g) -> std::vector<Tensor> {
    return {sum_to(g, in_shape)};
  });
}

Tensor sum(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  int64_t n = x.dim();
  Shape kept = x.shape();
  const std::string dims_text = shape_str(dims);
  for (size_t i = 0; i < dims.size(); ++i) {
    dims[i] = wrap_dim(dims[i], n, "sum");
    // A repeated dim would also make mean divide by its size twice.
    check(std::find(dims.begin(), dims.begin() + i, dims[i]) == dims.begin() + i,
          [&] { return "sum: dims " + dims_text + " name one dim twice"; });
    kept[dims[i]] = 1;
  }
  Tensor out = sum_to(x, kept);
  if (keepdim) return out;
  Shape squeezed;
  for (int64_t d = 0; d < n; ++d)
    if (std::find(dims.begin(), dims.end(), d) == dims.end()) squeezed.push_back(x.shape()[d]);
  return reshape(out, squeezed);
}

Tensor sum(const Tensor& x) { return reshape(sum_to(x, Shape(x.dim(), 1)), {}); }

Tensor mean(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  int64_t count = 1;
  for (int64_t d : dims) count *= x.size(d);
  return mul(sum(x, dims, keepdim), 1.0f / static_cast<float>(count));
}

Tensor mean(const Tensor& x) { return mul(sum(x), 1.0f / static_cast<float>(x.numel())); }

}  // namespace pk
