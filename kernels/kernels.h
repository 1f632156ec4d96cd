// The kernel interface: every compute primitive the engine needs, as plain
// functions over raw device pointers and sizes. Kernels know nothing of
// tensors or autograd; the engine pairs each forward kernel with its backward
// kernel in one op (engine/ops_*.cpp).
//
// Conventions (llm.c style): `d` prefix = gradient; backward kernels
// *overwrite* their outputs (the engine accumulates); all buffers are
// contiguous row-major float32 unless stated. Dimension letters: N batch,
// C/I/O channels, H/W spatial, M/K/N for GEMM.
//
// Adding a kernel: add one X(...) line to PK_KERNELS below and define the
// function in every backend namespace (pk::cpu, pk::cuda). A backend missing
// a definition fails to link, so the table can never be incomplete.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

namespace pk {

enum class Device : uint8_t { CPU = 0, CUDA = 1 };

// Element-wise unary operations. p0/p1 are the op's scalar parameters.
enum class UnaryOp : uint8_t {
  Neg, Exp, Log, Sqrt,
  Pow,        // x^p0
  AddScalar,  // x + p0
  MulScalar,  // x * p0
  Relu, Relu6,
  Gelu,       // exact erf form
  Sigmoid,
  Clamp,      // clamp(x, p0, p1); no gradient where saturated
  RoundSTE,   // round half to even forward, identity gradient
  FloorSTE,   // floor forward, identity gradient
  Abs,
};

enum class BinaryOp : uint8_t { Add, Sub, Mul, Div };

// Broadcast geometry: both operands and the output are expanded to the same
// rank (leading 1s); a dimension of size 1 in an operand broadcasts.
constexpr int kMaxDims = 8;
struct BroadcastShape {
  int ndim;
  int64_t a[kMaxDims];
  int64_t b[kMaxDims];
  int64_t out[kMaxDims];
};

// Geometry of a 2D convolution, NCHW input, OIHW weight (I = C / groups).
struct ConvGeom {
  int64_t N, C, H, W;      // input
  int64_t O, KH, KW;       // output channels, kernel size
  int64_t OH, OW;          // output spatial size
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
};

// Geometry of 2D pooling over NCHW.
struct PoolGeom {
  int64_t N, C, H, W, OH, OW;
  int64_t KH, KW, stride_h, stride_w, pad_h, pad_w;
  bool count_include_pad;  // average pooling divisor
};

// Permute: output dim i is input dim perm[i].
struct PermuteGeom {
  int ndim;
  int64_t in_shape[kMaxDims];
  int perm[kMaxDims];
};

// A tensor viewed as [outer, dim, inner] around one axis.
struct AxisGeom {
  int64_t outer, dim, inner;
};

// clang-format off
#define PK_KERNELS(X)                                                                           \
  /* memory */                                                                                  \
  X(alloc,  void*(size_t bytes))                                                                \
  X(release, void(void* ptr))                                                                   \
  X(copy_from_host, void(void* dst, const void* src, size_t bytes))                             \
  X(copy_to_host,   void(void* dst, const void* src, size_t bytes))                             \
  X(copy_on_device, void(void* dst, const void* src, size_t bytes))                             \
  X(fill, void(float* out, int64_t n, float value))                                             \
  /* elementwise (kernels/<backend>/elementwise) */                                             \
  X(unary_forward,  void(UnaryOp op, const float* x, float* y, int64_t n, float p0, float p1))  \
  X(unary_backward, void(UnaryOp op, const float* x, const float* dy, float* dx, int64_t n,     \
                         float p0, float p1))                                                   \
  X(binary_forward, void(BinaryOp op, const BroadcastShape& s, const float* a, const float* b,  \
                         float* out))                                                           \
  /* da/db have the operands' own shapes (already reduced over broadcast dims); may be null */  \
  X(binary_backward, void(BinaryOp op, const BroadcastShape& s, const float* a, const float* b, \
                          const float* dout, float* da, float* db))                             \
  X(select_forward, void(const float* mask, const float* a, const float* b, float* out,         \
                         int64_t n))                                                            \
  X(select_backward, void(const float* mask, const float* dout, float* da, float* db,           \
                          int64_t n))                                                           \
  /* reductions (reduce): `s.a` is the input shape, `s.out` the reduced shape (1 where summed) */\
  X(sum_to_shape, void(const BroadcastShape& s, const float* x, float* out))                    \
  X(broadcast_to, void(const BroadcastShape& s, const float* x, float* out))                    \
  /* GEMM (gemm): row-major C = alpha * op(A) op(B) + beta * C, batched with strides */        \
  X(gemm, void(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,        \
               const float* A, const float* B, float beta, float* C, int64_t batch,             \
               int64_t stride_a, int64_t stride_b, int64_t stride_c))                           \
  /* convolution (conv) */                                                                      \
  X(conv2d_forward, void(const ConvGeom& g, const float* x, const float* w, const float* bias,  \
                         float* y))                                                             \
  X(conv2d_backward_data,   void(const ConvGeom& g, const float* dy, const float* w, float* dx))\
  X(conv2d_backward_weight, void(const ConvGeom& g, const float* x, const float* dy, float* dw))\
  /* pooling (pool) */                                                                          \
  X(max_pool2d_forward,  void(const PoolGeom& g, const float* x, float* y))                     \
  X(max_pool2d_backward, void(const PoolGeom& g, const float* x, const float* dy, float* dx))   \
  X(avg_pool2d_forward,  void(const PoolGeom& g, const float* x, float* y))                     \
  X(avg_pool2d_backward, void(const PoolGeom& g, const float* dy, float* dx))                   \
  X(adaptive_avg_pool2d_forward,  void(int64_t NC, int64_t H, int64_t W, int64_t OH,            \
                                       int64_t OW, const float* x, float* y))                   \
  X(adaptive_avg_pool2d_backward, void(int64_t NC, int64_t H, int64_t W, int64_t OH,            \
                                       int64_t OW, const float* dy, float* dx))                 \
  /* normalization (norm). Layer norm over the last dim D of R rows; saves mean and rstd. */    \
  X(layer_norm_forward, void(int64_t R, int64_t D, float eps, const float* x, const float* w,   \
                             const float* b, float* y, float* mean, float* rstd))               \
  X(layer_norm_backward, void(int64_t R, int64_t D, const float* x, const float* w,             \
                              const float* mean, const float* rstd, const float* dy, float* dx, \
                              float* dw, float* db))                                            \
  /* batch statistics per channel over N*HW: biased mean and var */                             \
  X(channel_stats, void(int64_t N, int64_t C, int64_t HW, const float* x, float* mean,         \
                        float* var))                                                            \
  /* y = (x - mean) * rstd * w + b per channel (w, b may be null) */                            \
  X(batch_norm_apply, void(int64_t N, int64_t C, int64_t HW, const float* x, const float* mean, \
                           const float* rstd, const float* w, const float* b, float* y))        \
  /* backward of batch_norm_apply; if batch_stats, mean/rstd are functions of x too */          \
  X(batch_norm_backward, void(int64_t N, int64_t C, int64_t HW, bool batch_stats,               \
                              const float* x, const float* mean, const float* rstd,             \
                              const float* w, const float* dy, float* dx, float* dw, float* db))\
  /* softmax (softmax) over the last dim D of R rows; backward uses the forward output y */     \
  X(softmax_forward,  void(int64_t R, int64_t D, const float* x, float* y))                     \
  X(softmax_backward, void(int64_t R, int64_t D, const float* y, const float* dy, float* dx))   \
  X(log_softmax_forward,  void(int64_t R, int64_t D, const float* x, float* y))                 \
  X(log_softmax_backward, void(int64_t R, int64_t D, const float* y, const float* dy,           \
                               float* dx))                                                      \
  /* layout (layout) */                                                                         \
  X(permute, void(const PermuteGeom& g, const float* x, float* y))                              \
  /* copy a [outer, len, inner] block between two tensors viewed around the same axis */       \
  X(copy_axis_block, void(int64_t outer, int64_t inner, int64_t len, const float* src,          \
                          int64_t src_dim, int64_t src_start, float* dst, int64_t dst_dim,      \
                          int64_t dst_start))                                                   \
  /* cyclic shift: out[(i + shift) mod dim] = x[i] along one axis */                            \
  X(roll, void(const AxisGeom& g, int64_t shift, const float* x, float* y))                     \
  /* y[o, j, i] = x[o, idx[j], i]; backward scatters with accumulation */                       \
  X(index_select_forward, void(const AxisGeom& g, const int64_t* idx, int64_t n_idx,            \
                               const float* x, float* y))                                       \
  X(index_select_backward, void(const AxisGeom& g, const int64_t* idx, int64_t n_idx,           \
                                const float* dy, float* dx))                                    \
  /* quantization (quant): tensors viewed as [outer, C, inner] around the quantization axis, */ \
  /* channel c using scale[c] and zero_point[c]; levels 0..qmax */                              \
  X(fake_quant_forward, void(const AxisGeom& g, const float* x, const float* scale,             \
                             const float* zero_point, float qmax, float* y))                    \
  /* dx and dscale ([C], summed) may be null */                                                 \
  X(fake_quant_backward, void(const AxisGeom& g, const float* x, const float* scale,            \
                              const float* zero_point, float qmax, const float* dy, float* dx,  \
                              float* dscale))                                                   \
  X(adaround_forward, void(const AxisGeom& g, const float* w, const float* alpha,               \
                           const float* scale, const float* zero_point, float qmax, bool hard,  \
                           float* y))                                                           \
  X(adaround_backward, void(const AxisGeom& g, const float* w, const float* alpha,              \
                            const float* scale, const float* zero_point, float qmax,            \
                            const float* dy, float* dalpha))                                    \
  /* value[0] = weight * sum(1 - |2h(alpha) - 1|^beta); dalpha (nullable) its gradient */      \
  X(adaround_regularizer, void(int64_t n, const float* alpha, float beta, float weight,         \
                               float* value, float* dalpha))                                    \
  X(channel_minmax, void(const AxisGeom& g, const float* x, float* mn, float* mx))              \
  /* scores[c * K + k]: mean |x - q(x)|^p with the range of channel c shrunk by 1 - 0.01k, */  \
  /* in double, exact near each channel's best: neighbouring candidates can differ by 1e-7 */   \
  X(quant_range_scores, void(const AxisGeom& g, const float* x, const float* lo,                \
                             const float* hi, int64_t n_candidates, float qmax, float p,        \
                             double* scores))                                                   \
  /* optimizers (optim) */                                                                      \
  X(adam_update, void(int64_t n, float* param, const float* grad, float* m, float* v, float lr, \
                      float beta1, float beta2, float eps, float weight_decay, int64_t step))   \
  X(sgd_update, void(int64_t n, float* param, const float* grad, float* momentum_buf, float lr, \
                     float momentum, float weight_decay, bool first_step))
// clang-format on

// A backend: one function pointer per kernel.
struct Backend {
#define PK_BACKEND_MEMBER(name, ...) std::add_pointer_t<__VA_ARGS__> name;
  PK_KERNELS(PK_BACKEND_MEMBER)
#undef PK_BACKEND_MEMBER
};

// Declares every kernel of PK_KERNELS inside a backend namespace.
#define PK_DECLARE_KERNEL(name, ...) \
  using name##_fn = __VA_ARGS__;     \
  name##_fn name;

namespace cpu {
PK_KERNELS(PK_DECLARE_KERNEL)
// What fixes the order of the GEMM's sums on the path in use, as text: the
// cache sizes Eigen's blocking is computed from, or the AVX-512 tiles.
std::string gemm_summation_order();
}

// The backend for a device; throws if that backend was not built or has no
// device at run time.
const Backend& backend(Device device);
bool device_available(Device device);
const char* device_name(Device device);
// Whether this build has the CUDA backend (a GPU may still be missing).
bool cuda_backend_built();
// The code path a device's kernels take, as runs record it: for the CPU the
// instruction set in use and how its GEMM fixes the order of sums
// ("x86-64 AVX2+FMA, GEMM blocking for ..." or "x86-64 AVX-512, GEMM tiles
// of 32 columns summed in depth blocks of 256"); "cuda" for the GPU. The same path,
// thread count and flags give the same model on any machine.
std::string kernel_path(Device device);

// The CPU kernels' instruction sets: those this machine and build run
// ("avx2", and "avx512" where the CPU and OS support it), the one in use
// (chosen at the first kernel call: the environment's PACKPTQ_CPU_ISA, else
// the widest this CPU supports), and a way to force one. A name this
// machine does not run throws std::invalid_argument.
std::vector<std::string> cpu_isas();
std::string cpu_isa();
void set_cpu_isa(const std::string& name);

}  // namespace pk
