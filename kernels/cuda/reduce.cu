// Reductions between broadcast-compatible shapes on CUDA: sum_to_shape and
// its adjoint broadcast_to.
//
// sum_to_shape sees the input as kept dims (the outputs) and summed dims.
// When the innermost input dim is summed, one block per output reads the
// summed elements contiguously; otherwise one thread per output makes
// neighbouring threads read neighbouring addresses. Long reductions are cut
// into splits summed by a second pass, so that few outputs (a loss, a bias
// gradient) still spread over the whole device. Sums accumulate in double,
// as on the CPU.
#include "kernels/cuda/broadcast.cuh"
#include "kernels/cuda/common.cuh"

namespace pk::cuda {

namespace {

// The input split into kept and summed dims, size-1 dims dropped and
// neighbouring dims of one kind merged; strides are input element strides.
struct ReduceIndex {
  int n_kept = 0, n_summed = 0;
  int64_t kept_size[kMaxDims], kept_stride[kMaxDims];
  int64_t summed_size[kMaxDims], summed_stride[kMaxDims];
};

ReduceIndex make_reduce_index(const BroadcastShape& s) {
  ReduceIndex r;
  int64_t stride = 1;
  int64_t strides[kMaxDims];
  for (int d = s.ndim - 1; d >= 0; --d) {
    strides[d] = stride;
    stride *= s.a[d];
  }
  int last_kind = -1;  // 0 kept, 1 summed
  for (int d = 0; d < s.ndim; ++d) {
    if (s.a[d] == 1) continue;
    const int kind = s.out[d] == 1 ? 1 : 0;
    int& count = kind ? r.n_summed : r.n_kept;
    int64_t* sizes = kind ? r.summed_size : r.kept_size;
    int64_t* dim_strides = kind ? r.summed_stride : r.kept_stride;
    if (kind == last_kind) {  // adjacent in memory: one longer dim
      sizes[count - 1] *= s.a[d];
      dim_strides[count - 1] = strides[d];
    } else {
      sizes[count] = s.a[d];
      dim_strides[count] = strides[d];
      ++count;
    }
    last_kind = kind;
  }
  return r;
}

__device__ inline int64_t strided_offset(int64_t index, int n, const int64_t* size,
                                         const int64_t* stride) {
  int64_t offset = 0;
  for (int d = n - 1; d >= 0; --d) {
    offset += (index % size[d]) * stride[d];
    index /= size[d];
  }
  return offset;
}

// One block per (output, split); blockDim.x == kThreads.
__global__ void sum_block_per_output(ReduceIndex r, const float* x, int64_t n_out, int64_t per_out,
                                     float* out, double* partial) {
  const int64_t o = blockIdx.x, split = blockIdx.y, splits = gridDim.y;
  int64_t begin, end;
  split_span(per_out, split, splits, begin, end);
  const int64_t base = strided_offset(o, r.n_kept, r.kept_size, r.kept_stride);
  double acc = 0.0;
  for (int64_t k = begin + threadIdx.x; k < end; k += blockDim.x)
    acc += x[base + strided_offset(k, r.n_summed, r.summed_size, r.summed_stride)];
  acc = block_sum(acc);
  if (threadIdx.x != 0) return;
  if (splits == 1)
    out[o] = static_cast<float>(acc);
  else
    partial[split * n_out + o] = acc;
}

// One thread per (output, split).
__global__ void sum_thread_per_output(ReduceIndex r, const float* x, int64_t n_out, int64_t per_out,
                                      float* out, double* partial) {
  const int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (o >= n_out) return;
  const int64_t split = blockIdx.y, splits = gridDim.y;
  int64_t begin, end;
  split_span(per_out, split, splits, begin, end);
  const int64_t base = strided_offset(o, r.n_kept, r.kept_size, r.kept_stride);
  double acc = 0.0;
  for (int64_t k = begin; k < end; ++k)
    acc += x[base + strided_offset(k, r.n_summed, r.summed_size, r.summed_stride)];
  if (splits == 1)
    out[o] = static_cast<float>(acc);
  else
    partial[split * n_out + o] = acc;
}

template <typename Out>
__global__ void finish_split_sums_kernel(const double* partial, int64_t splits, int64_t n,
                                         double divisor, Out* out) {
  for (int64_t o = global_index(); o < n; o += grid_stride()) {
    double total = 0.0;
    for (int64_t s = 0; s < splits; ++s) total += partial[s * n + o];
    out[o] = static_cast<Out>(total / divisor);
  }
}

template <typename Out>
void launch_finish_split_sums(const double* partial, int64_t splits, int64_t n, double divisor,
                              Out* out) {
  if (n <= 0) return;
  finish_split_sums_kernel<<<grid_for(n), kThreads>>>(partial, splits, n, divisor, out);
  check_launch("finish_split_sums_kernel");
}

__global__ void broadcast_to_kernel(BroadcastIndex g, const float* x, float* out, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    int64_t offset, unused;
    broadcast_offsets(g, i, offset, unused);
    out[i] = x[offset];
  }
}

}  // namespace

void finish_split_sums(const double* partial, int64_t splits, int64_t n, double divisor,
                       float* out) {
  launch_finish_split_sums(partial, splits, n, divisor, out);
}

void finish_split_sums(const double* partial, int64_t splits, int64_t n, double divisor,
                       double* out) {
  launch_finish_split_sums(partial, splits, n, divisor, out);
}

// s.a: input shape; s.out: target shape of the same rank with 1 on summed dims.
void sum_to_shape(const BroadcastShape& s, const float* x, float* out) {
  int64_t n_in = 1, n_out = 1;
  for (int d = 0; d < s.ndim; ++d) {
    n_in *= s.a[d];
    n_out *= s.out[d];
  }
  if (n_out == 0) return;
  if (n_in == 0) return fill(out, n_out, 0.0f);
  const ReduceIndex r = make_reduce_index(s);
  const int64_t per_out = n_in / n_out;
  constexpr int64_t kTargetBlocks = 1024;
  // A block per output pays off once the summed run fills a block.
  const bool block_per_output =
      r.n_summed > 0 && r.summed_stride[r.n_summed - 1] == 1 && per_out >= kThreads;
  if (block_per_output) {
    const int64_t splits = reduction_splits(n_out, per_out, kTargetBlocks, 8 * kThreads);
    Scratch partial(splits > 1 ? static_cast<size_t>(splits * n_out) * sizeof(double) : 0);
    sum_block_per_output<<<dim3(static_cast<unsigned>(n_out), static_cast<unsigned>(splits)),
                           kThreads>>>(r, x, n_out, per_out, out, partial.as<double>());
    check_launch("sum_block_per_output");
    if (splits > 1) finish_split_sums(partial.as<double>(), splits, n_out, 1.0, out);
    return;
  }
  const int64_t blocks = (n_out + kThreads - 1) / kThreads;
  const int64_t splits = reduction_splits(blocks, per_out, kTargetBlocks, 64);
  Scratch partial(splits > 1 ? static_cast<size_t>(splits * n_out) * sizeof(double) : 0);
  sum_thread_per_output<<<dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(splits)),
                          kThreads>>>(r, x, n_out, per_out, out, partial.as<double>());
  check_launch("sum_thread_per_output");
  if (splits > 1) finish_split_sums(partial.as<double>(), splits, n_out, 1.0, out);
}

// s.a: input shape (1 on broadcast dims); s.out: output shape.
void broadcast_to(const BroadcastShape& s, const float* x, float* out) {
  int64_t n = 1;
  for (int d = 0; d < s.ndim; ++d) n *= s.out[d];
  if (n <= 0) return;
  BroadcastShape input_only = s;
  for (int d = 0; d < s.ndim; ++d) input_only.b[d] = s.a[d];
  broadcast_to_kernel<<<grid_for(n), kThreads>>>(make_broadcast_index(input_only), x, out, n);
  check_launch("broadcast_to_kernel");
}

}  // namespace pk::cuda
