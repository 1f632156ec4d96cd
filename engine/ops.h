// Differentiable ops. Each op runs its forward kernel on the inputs' device
// and records its backward (engine/autograd.h). Implementations live beside
// their backward, one file per family: ops_elementwise.cpp, ops_reduce.cpp,
// ops_matmul.cpp, ops_conv.cpp, ops_pool.cpp, ops_norm.cpp, ops_softmax.cpp,
// ops_layout.cpp, ops_loss.cpp.
//
// Shapes follow PyTorch's conventions; negative dims count from the end.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace pk {

class Generator;

// ---- element-wise with broadcasting (ops_elementwise.cpp) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& x, float s);
Tensor mul(const Tensor& x, float s);
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor pow(const Tensor& x, float exponent);
Tensor abs(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor relu6(const Tensor& x);
Tensor gelu(const Tensor& x);  // exact: x * Phi(x)
Tensor sigmoid(const Tensor& x);
Tensor clamp(const Tensor& x, float lo, float hi);  // no gradient where clamped
Tensor round_ste(const Tensor& x);  // round half to even; straight-through gradient
Tensor floor_ste(const Tensor& x);  // floor; straight-through gradient
// mask ? a : b element-wise; mask is 0/1 float of the same shape, no gradient.
Tensor where(const Tensor& mask, const Tensor& a, const Tensor& b);
// Inverted dropout: zero with probability p, scale survivors by 1/(1-p).
// Identity when !training or p == 0.
Tensor dropout(const Tensor& x, float p, bool training, Generator& gen);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& x) { return neg(x); }

// Shape of broadcasting a with b (throws with both shapes when incompatible).
Shape broadcast_shapes(const Shape& a, const Shape& b);

// ---- reductions (ops_reduce.cpp) ----
Tensor sum(const Tensor& x);  // all elements -> one-element tensor of shape []
Tensor sum(const Tensor& x, std::vector<int64_t> dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, std::vector<int64_t> dims, bool keepdim = false);
// Sum x down to `shape` (the inverse of broadcasting); used by backward passes.
Tensor sum_to(const Tensor& x, const Shape& shape);
Tensor broadcast_to(const Tensor& x, const Shape& shape);

// ---- matrix products (ops_matmul.cpp) ----
// a [..., M, K] @ b [..., K, N]; batch dims must match, or b may be 2-D.
Tensor matmul(const Tensor& a, const Tensor& b);
// x [..., in] @ w[out, in]^T + bias[out] (bias may be undefined).
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias);

// ---- convolution (ops_conv.cpp) ----
struct Conv2dOptions {
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1, groups = 1;
};
// x [N, C, H, W], w [O, C/groups, KH, KW], bias [O] or undefined.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dOptions& opt);

// ---- pooling (ops_pool.cpp) ----
Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding);
Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding,
                  bool count_include_pad = true);
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w);

// ---- normalization (ops_norm.cpp) ----
// x [N, C, H, W]. Training: normalizes with batch statistics and updates the
// running buffers in place (momentum as PyTorch, unbiased running var).
// Eval: uses the running buffers. weight/bias may be undefined.
Tensor batch_norm2d(const Tensor& x, const Tensor& weight, const Tensor& bias,
                    const Tensor& running_mean, const Tensor& running_var, bool training,
                    float momentum, float eps);
// Over the last dim; weight/bias [D] may be undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);

// ---- softmax (ops_softmax.cpp), over the last dim ----
Tensor softmax(const Tensor& x);
Tensor log_softmax(const Tensor& x);

// ---- layout (ops_layout.cpp) ----
Tensor reshape(const Tensor& x, const Shape& shape);  // one -1 allowed; shares storage
Tensor flatten(const Tensor& x, int64_t start_dim = 1);
Tensor permute(const Tensor& x, const std::vector<int>& perm);
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
Tensor contiguous(const Tensor& x);  // tensors are always contiguous: identity
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor roll(const Tensor& x, const std::vector<int64_t>& shifts, const std::vector<int64_t>& dims);
// index: int64 tensor [n]; picks slices of x along dim.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// pads[2*i], pads[2*i+1] = before/after for dim i counted from the LAST dim,
// as torch.nn.functional.pad; constant value.
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, float value = 0.0f);
// Rows [start, start+length) of dim 0 as a view sharing storage (no copy).
Tensor slice_rows(const Tensor& x, int64_t start, int64_t length);

// ---- losses (ops_loss.cpp) ----
// Squared error summed over dim 1, averaged over all other dims (docs/METHOD.md section 6).
Tensor reconstruction_mse(const Tensor& pred, const Tensor& target);
// KL(p || q) with log_q = log-probabilities (input) and p = probabilities
// (target, no gradient), summed over the last dim and averaged over rows
// (PyTorch kl_div with reduction 'batchmean').
Tensor kl_div_batchmean(const Tensor& log_q, const Tensor& p);
// Mean cross entropy of logits [B, K] against int64 labels [B].
Tensor cross_entropy(const Tensor& logits, const Tensor& labels);

}  // namespace pk
