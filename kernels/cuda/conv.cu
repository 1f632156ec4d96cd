// 2D convolution on cuDNN: forward, backward data and backward filter, with
// grouped and depthwise convolution through cuDNN's group count.
//
// The algorithm of each pass is chosen once per geometry by benchmarking
// (cudnnFind*AlgorithmEx on the call's own buffers, which the pass then
// overwrites anyway) and cached: the fastest deterministic algorithm whose
// workspace fits kWorkspaceLimit, else the fastest that fits. Math is fp32
// (FMA) unless PACKPTQ_ALLOW_TF32=1, as for GEMM.
#include <cudnn.h>

#include <array>
#include <climits>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>

#include "kernels/cuda/common.cuh"

namespace pk::cuda {

namespace {

constexpr size_t kWorkspaceLimit = size_t{256} << 20;

void check_cudnn(cudnnStatus_t status, const char* what) {
  if (status == CUDNN_STATUS_SUCCESS) return;
  throw std::runtime_error(std::string("cuDNN error in ") + what + ": " +
                           cudnnGetErrorString(status));
}

// One handle for the process, created on first use on the default stream.
cudnnHandle_t cudnn_handle() {
  static cudnnHandle_t handle = [] {
    cudnnHandle_t h = nullptr;
    check_cudnn(cudnnCreate(&h), "cudnnCreate");
    return h;
  }();
  return handle;
}

std::string describe(const ConvGeom& g) {
  auto s = [](int64_t v) { return std::to_string(v); };
  return "input [" + s(g.N) + ", " + s(g.C) + ", " + s(g.H) + ", " + s(g.W) + "], weight [" +
         s(g.O) + ", " + s(g.C / g.groups) + ", " + s(g.KH) + ", " + s(g.KW) + "], stride " +
         s(g.stride_h) + "x" + s(g.stride_w) + ", padding " + s(g.pad_h) + "x" + s(g.pad_w) +
         ", dilation " + s(g.dil_h) + "x" + s(g.dil_w) + ", groups " + s(g.groups);
}

int to_int(int64_t value, const ConvGeom& g) {
  if (value < 0 || value > INT_MAX)
    throw std::runtime_error("cuda conv2d: size " + std::to_string(value) +
                             " exceeds cuDNN's 32-bit limit (" + describe(g) +
                             "); use a smaller --batch_size");
  return static_cast<int>(value);
}

// The cuDNN descriptors of one convolution geometry.
class Descriptors {
 public:
  Descriptors(const ConvGeom& g, cudnnMathType_t math) {
    // 4-D descriptors also cap the element count of a whole tensor.
    to_int(g.N * g.C * g.H * g.W, g);
    to_int(g.N * g.O * g.OH * g.OW, g);
    check_cudnn(cudnnCreateTensorDescriptor(&x), "cudnnCreateTensorDescriptor");
    check_cudnn(cudnnCreateTensorDescriptor(&y), "cudnnCreateTensorDescriptor");
    check_cudnn(cudnnCreateFilterDescriptor(&w), "cudnnCreateFilterDescriptor");
    check_cudnn(cudnnCreateConvolutionDescriptor(&conv), "cudnnCreateConvolutionDescriptor");
    check_cudnn(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, to_int(g.N, g),
                                           to_int(g.C, g), to_int(g.H, g), to_int(g.W, g)),
                "cudnnSetTensor4dDescriptor (input)");
    check_cudnn(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, to_int(g.N, g),
                                           to_int(g.O, g), to_int(g.OH, g), to_int(g.OW, g)),
                "cudnnSetTensor4dDescriptor (output)");
    check_cudnn(
        cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, to_int(g.O, g),
                                   to_int(g.C / g.groups, g), to_int(g.KH, g), to_int(g.KW, g)),
        "cudnnSetFilter4dDescriptor");
    check_cudnn(cudnnSetConvolution2dDescriptor(conv, to_int(g.pad_h, g), to_int(g.pad_w, g),
                                                to_int(g.stride_h, g), to_int(g.stride_w, g),
                                                to_int(g.dil_h, g), to_int(g.dil_w, g),
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                "cudnnSetConvolution2dDescriptor");
    check_cudnn(cudnnSetConvolutionGroupCount(conv, to_int(g.groups, g)),
                "cudnnSetConvolutionGroupCount");
    check_cudnn(cudnnSetConvolutionMathType(conv, math), "cudnnSetConvolutionMathType");
    int n, c, h, wd;
    check_cudnn(cudnnGetConvolution2dForwardOutputDim(conv, x, w, &n, &c, &h, &wd),
                "cudnnGetConvolution2dForwardOutputDim");
    if (h != g.OH || wd != g.OW)
      throw std::runtime_error("cuda conv2d: cuDNN computes output " + std::to_string(h) + "x" +
                               std::to_string(wd) + ", the engine " + std::to_string(g.OH) + "x" +
                               std::to_string(g.OW) + " (" + describe(g) + ")");
  }
  ~Descriptors() {
    cudnnDestroyConvolutionDescriptor(conv);
    cudnnDestroyFilterDescriptor(w);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyTensorDescriptor(x);
  }
  Descriptors(const Descriptors&) = delete;
  Descriptors& operator=(const Descriptors&) = delete;

  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
};

enum class Pass { Forward, BackwardData, BackwardFilter };

struct Algorithm {
  int algo;  // cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t
  cudnnMathType_t math;
  size_t workspace;
};

using AlgorithmKey = std::array<int64_t, 17>;

AlgorithmKey key_of(Pass pass, const ConvGeom& g) {
  return {{static_cast<int64_t>(pass), g.N, g.C, g.H, g.W, g.O, g.KH, g.KW, g.OH, g.OW, g.stride_h,
           g.stride_w, g.pad_h, g.pad_w, g.dil_h, g.dil_w, g.groups}};
}

// Math type an algorithm may run with: fp32 FMA unless TF32 is allowed.
cudnnMathType_t requested_math() { return tf32_allowed() ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH; }

// Picks from cudnnFind results (fastest first): deterministic if possible,
// and with fp32 FMA math unless TF32 is allowed.
template <typename Perf>
Algorithm pick(const Perf* results, int count, const ConvGeom& g, const char* pass) {
  const Perf* fastest = nullptr;
  for (int i = 0; i < count; ++i) {
    const Perf& r = results[i];
    if (r.status != CUDNN_STATUS_SUCCESS || r.memory > kWorkspaceLimit) continue;
    if (!tf32_allowed() && r.mathType != CUDNN_FMA_MATH) continue;
    if (r.determinism == CUDNN_DETERMINISTIC)
      return {static_cast<int>(r.algo), r.mathType, r.memory};
    if (!fastest) fastest = &r;
  }
  if (!fastest)
    throw std::runtime_error(std::string("cuda conv2d ") + pass +
                             ": cuDNN has no algorithm within the workspace limit for " +
                             describe(g));
  return {static_cast<int>(fastest->algo), fastest->mathType, fastest->memory};
}

// Everything below runs under one mutex: the algorithm cache and the
// workspace are shared by all calls.
class ConvContext {
 public:
  std::mutex mutex;

  // Device scratch of at least `bytes`, kept between calls.
  void* workspace(size_t bytes) {
    if (bytes == 0) return nullptr;
    if (bytes > workspace_bytes_) {
      release(workspace_);
      workspace_ = nullptr;  // stays consistent should the allocation throw
      workspace_bytes_ = 0;
      workspace_ = alloc(bytes);
      workspace_bytes_ = bytes;
    }
    return workspace_;
  }

  const Algorithm* cached(const AlgorithmKey& key) const {
    auto it = algorithms_.find(key);
    return it == algorithms_.end() ? nullptr : &it->second;
  }
  const Algorithm& remember(const AlgorithmKey& key, const Algorithm& a) {
    return algorithms_[key] = a;
  }

 private:
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<AlgorithmKey, Algorithm> algorithms_;
};

ConvContext& context() {
  static ConvContext* instance = new ConvContext();  // never destroyed, like the allocator
  return *instance;
}

// cuDNN picks kernels by algorithm and math type together: an algorithm runs
// with the math type it was timed with (always FMA unless TF32 is allowed).
void apply_math(const Descriptors& d, const Algorithm& a) {
  check_cudnn(cudnnSetConvolutionMathType(d.conv, a.math), "cudnnSetConvolutionMathType");
}

// Fixes the math type of a picked algorithm on the descriptors and sizes
// its workspace for exactly that configuration.
Algorithm configured(Pass pass, cudnnHandle_t handle, const Descriptors& d, Algorithm a) {
  apply_math(d, a);
  size_t bytes = 0;
  switch (pass) {
    case Pass::Forward:
      check_cudnn(cudnnGetConvolutionForwardWorkspaceSize(
                      handle, d.x, d.w, d.conv, d.y, static_cast<cudnnConvolutionFwdAlgo_t>(a.algo),
                      &bytes),
                  "cudnnGetConvolutionForwardWorkspaceSize");
      break;
    case Pass::BackwardData:
      check_cudnn(cudnnGetConvolutionBackwardDataWorkspaceSize(
                      handle, d.w, d.y, d.conv, d.x,
                      static_cast<cudnnConvolutionBwdDataAlgo_t>(a.algo), &bytes),
                  "cudnnGetConvolutionBackwardDataWorkspaceSize");
      break;
    case Pass::BackwardFilter:
      check_cudnn(cudnnGetConvolutionBackwardFilterWorkspaceSize(
                      handle, d.x, d.y, d.conv, d.w,
                      static_cast<cudnnConvolutionBwdFilterAlgo_t>(a.algo), &bytes),
                  "cudnnGetConvolutionBackwardFilterWorkspaceSize");
      break;
  }
  a.workspace = bytes;
  return a;
}

// y += bias broadcast over [N, O, OH, OW].
void add_bias(cudnnHandle_t handle, const ConvGeom& g, const float* bias,
              cudnnTensorDescriptor_t y_desc, float* y) {
  cudnnTensorDescriptor_t bias_desc;
  check_cudnn(cudnnCreateTensorDescriptor(&bias_desc), "cudnnCreateTensorDescriptor");
  const float one = 1.0f;
  cudnnStatus_t status = cudnnSetTensor4dDescriptor(bias_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                                                    1, to_int(g.O, g), 1, 1);
  if (status == CUDNN_STATUS_SUCCESS)
    status = cudnnAddTensor(handle, &one, bias_desc, bias, &one, y_desc, y);
  cudnnDestroyTensorDescriptor(bias_desc);
  check_cudnn(status, "cudnnAddTensor (conv2d bias)");
}

}  // namespace

void conv2d_forward(const ConvGeom& g, const float* x, const float* w, const float* bias,
                    float* y) {
  if (g.N == 0 || g.O == 0 || g.OH == 0 || g.OW == 0) return;
  ConvContext& ctx = context();
  std::lock_guard<std::mutex> lock(ctx.mutex);
  cudnnHandle_t handle = cudnn_handle();
  Descriptors d(g, requested_math());
  const AlgorithmKey key = key_of(Pass::Forward, g);
  const Algorithm* a = ctx.cached(key);
  if (!a) {
    cudnnConvolutionFwdAlgoPerf_t results[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int count = 0;
    check_cudnn(cudnnFindConvolutionForwardAlgorithmEx(
                    handle, d.x, x, d.w, w, d.conv, d.y, y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                    &count, results, ctx.workspace(kWorkspaceLimit), kWorkspaceLimit),
                "cudnnFindConvolutionForwardAlgorithmEx");
    a = &ctx.remember(key,
                      configured(Pass::Forward, handle, d, pick(results, count, g, "forward")));
  }
  apply_math(d, *a);
  const float one = 1.0f, zero = 0.0f;
  check_cudnn(cudnnConvolutionForward(handle, &one, d.x, x, d.w, w, d.conv,
                                      static_cast<cudnnConvolutionFwdAlgo_t>(a->algo),
                                      ctx.workspace(a->workspace), a->workspace, &zero, d.y, y),
              "cudnnConvolutionForward");
  if (bias) add_bias(handle, g, bias, d.y, y);
}

void conv2d_backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  if (g.N == 0 || g.C == 0 || g.H == 0 || g.W == 0) return;
  ConvContext& ctx = context();
  std::lock_guard<std::mutex> lock(ctx.mutex);
  cudnnHandle_t handle = cudnn_handle();
  Descriptors d(g, requested_math());
  const AlgorithmKey key = key_of(Pass::BackwardData, g);
  const Algorithm* a = ctx.cached(key);
  if (!a) {
    cudnnConvolutionBwdDataAlgoPerf_t results[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int count = 0;
    check_cudnn(cudnnFindConvolutionBackwardDataAlgorithmEx(
                    handle, d.w, w, d.y, dy, d.conv, d.x, dx, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                    &count, results, ctx.workspace(kWorkspaceLimit), kWorkspaceLimit),
                "cudnnFindConvolutionBackwardDataAlgorithmEx");
    a = &ctx.remember(
        key, configured(Pass::BackwardData, handle, d, pick(results, count, g, "backward data")));
  }
  apply_math(d, *a);
  const float one = 1.0f, zero = 0.0f;
  check_cudnn(
      cudnnConvolutionBackwardData(handle, &one, d.w, w, d.y, dy, d.conv,
                                   static_cast<cudnnConvolutionBwdDataAlgo_t>(a->algo),
                                   ctx.workspace(a->workspace), a->workspace, &zero, d.x, dx),
      "cudnnConvolutionBackwardData");
}

void conv2d_backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  const int64_t weight_size = g.O * (g.C / g.groups) * g.KH * g.KW;
  if (weight_size == 0) return;
  if (g.N == 0 || g.OH == 0 || g.OW == 0) {  // no products: the gradient is zero
    return fill(dw, weight_size, 0.0f);
  }
  ConvContext& ctx = context();
  std::lock_guard<std::mutex> lock(ctx.mutex);
  cudnnHandle_t handle = cudnn_handle();
  Descriptors d(g, requested_math());
  const AlgorithmKey key = key_of(Pass::BackwardFilter, g);
  const Algorithm* a = ctx.cached(key);
  if (!a) {
    cudnnConvolutionBwdFilterAlgoPerf_t results[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int count = 0;
    check_cudnn(
        cudnnFindConvolutionBackwardFilterAlgorithmEx(
            handle, d.x, x, d.y, dy, d.conv, d.w, dw, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
            &count, results, ctx.workspace(kWorkspaceLimit), kWorkspaceLimit),
        "cudnnFindConvolutionBackwardFilterAlgorithmEx");
    a = &ctx.remember(key, configured(Pass::BackwardFilter, handle, d,
                                      pick(results, count, g, "backward filter")));
  }
  apply_math(d, *a);
  const float one = 1.0f, zero = 0.0f;
  check_cudnn(
      cudnnConvolutionBackwardFilter(handle, &one, d.x, x, d.y, dy, d.conv,
                                     static_cast<cudnnConvolutionBwdFilterAlgo_t>(a->algo),
                                     ctx.workspace(a->workspace), a->workspace, &zero, d.w, dw),
      "cudnnConvolutionBackwardFilter");
}

}  // namespace pk::cuda
