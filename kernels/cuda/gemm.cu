// GEMM on cuBLAS. cuBLAS is column-major; a row-major [M, N] matrix is the
// column-major [N, M] matrix of its transpose, so row-major C = op(A) op(B)
// is computed as column-major C^T = op(B)^T op(A)^T: the operands swap
// places and keep their own transpose flags.
//
// Math is plain fp32. TF32 tensor cores (about 10 mantissa bits per
// product) are used only when PACKPTQ_ALLOW_TF32=1 is set, since
// quantization error studies need full fp32 baselines.
#include <cublas_v2.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

#include "kernels/cuda/common.cuh"

namespace pk::cuda {

namespace {

void check_cublas(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw std::runtime_error(std::string("cuBLAS error in ") + what + ": " +
                           cublasGetStatusName(status) + " (" + cublasGetStatusString(status) +
                           ")");
}

// One handle for the process, created on first use on the default stream.
cublasHandle_t cublas_handle() {
  static cublasHandle_t handle = [] {
    cublasHandle_t h = nullptr;
    check_cublas(cublasCreate(&h), "cublasCreate");
    check_cublas(
        cublasSetMathMode(h, tf32_allowed() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH),
        "cublasSetMathMode");
    return h;
  }();
  return handle;
}

int to_int(int64_t value, const char* what) {
  if (value < 0 || value > INT_MAX)
    throw std::runtime_error(std::string("cuda gemm: ") + what + " " + std::to_string(value) +
                             " exceeds cuBLAS's 32-bit limit");
  return static_cast<int>(value);
}

// C[b] = beta * C[b] for an empty inner dimension (K == 0), where cuBLAS
// would reject the zero leading dimensions.
__global__ void scale_batched_kernel(float* C, int64_t batch, int64_t mn, int64_t stride_c,
                                     float beta) {
  for (int64_t i = global_index(); i < batch * mn; i += grid_stride()) {
    float& c = C[(i / mn) * stride_c + i % mn];
    c = beta == 0.0f ? 0.0f : beta * c;  // beta 0 overwrites, even NaN
  }
}

}  // namespace

bool tf32_allowed() {
  static const bool allowed = [] {
    const char* value = std::getenv("PACKPTQ_ALLOW_TF32");
    return value && std::strcmp(value, "1") == 0;
  }();
  return allowed;
}

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          const float* B, float beta, float* C, int64_t batch, int64_t stride_a, int64_t stride_b,
          int64_t stride_c) {
  if (M == 0 || N == 0 || batch == 0) return;
  if (K == 0) {
    scale_batched_kernel<<<grid_for(batch * M * N), kThreads>>>(C, batch, M * N, stride_c, beta);
    check_launch("scale_batched_kernel");
    return;
  }
  const int m = to_int(M, "M"), n = to_int(N, "N"), k = to_int(K, "K");
  // Leading dims of the row-major buffers: their row lengths.
  const int lda = trans_a ? m : k, ldb = trans_b ? k : n, ldc = n;
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasHandle_t handle = cublas_handle();
  if (batch == 1) {
    check_cublas(cublasSgemm(handle, op_b, op_a, n, m, k, &alpha, B, ldb, A, lda, &beta, C, ldc),
                 "cublasSgemm");
    return;
  }
  check_cublas(
      cublasSgemmStridedBatched(handle, op_b, op_a, n, m, k, &alpha, B, ldb, stride_b, A, lda,
                                stride_a, &beta, C, ldc, stride_c, to_int(batch, "batch")),
      "cublasSgemmStridedBatched");
}

}  // namespace pk::cuda
