// Softmax and log-softmax over the last dim. Both backward kernels work from
// the forward output, so that is what the closures keep.
#include <string>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/trace.h"

namespace pk {

namespace {

using RowForward = void (*)(int64_t R, int64_t D, const float* x, float* y);
using RowBackward = void (*)(int64_t R, int64_t D, const float* y, const float* dy, float* dx);

Tensor over_last_dim(const Tensor& x, const char* name, RowForward Backend::*forward,
                     RowBackward Backend::*backward) {
  check(x.dim() >= 1 && x.size(-1) > 0,
        [&] { return std::string(name) + ": needs a non-empty last dim, got " + x.describe(); });
  const int64_t D = x.size(-1), R = x.numel() / D;
  Tensor y = Tensor::empty(x.shape(), DType::F32, x.device());
  (backend(x.device()).*forward)(R, D, x.data(), y.data());
  Tensor sy = y.detach();
  trace_op(name, {x}, y);
  return record(y, name, {x}, [sy, R, D, backward](const Tensor& g) -> std::vector<Tensor> {
    Tensor dx = Tensor::empty(sy.shape(), DType::F32, g.device());
    (backend(g.device()).*backward)(R, D, sy.data(), g.data(), dx.data());
    return {dx};
  });
}

}  // namespace

Tensor softmax(const Tensor& x) {
  return over_last_dim(x, "softmax", &Backend::softmax_forward, &Backend::softmax_backward);
}

Tensor log_softmax(const Tensor& x) {
  return over_last_dim(x, "log_softmax", &Backend::log_softmax_forward,
                       &Backend::log_softmax_backward);
}

}  // namespace pk
