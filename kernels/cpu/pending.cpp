// TEMPORARY during bring-up: kernels not yet implemented. Each family's
// implementation deletes its entries here. This file must be gone before
// anything is committed.
#include <stdexcept>

#include "kernels/kernels.h"

namespace pk::cpu {

#define PK_PENDING(name) throw std::logic_error(#name " not implemented yet")

// conv
void conv2d_forward(const ConvGeom&, const float*, const float*, const float*, float*) { PK_PENDING(conv2d_forward); }
void conv2d_backward_data(const ConvGeom&, const float*, const float*, float*) { PK_PENDING(conv2d_backward_data); }
void conv2d_backward_weight(const ConvGeom&, const float*, const float*, float*) { PK_PENDING(conv2d_backward_weight); }
// pool
void max_pool2d_forward(const PoolGeom&, const float*, float*) { PK_PENDING(max_pool2d_forward); }
void max_pool2d_backward(const PoolGeom&, const float*, const float*, float*) { PK_PENDING(max_pool2d_backward); }
void avg_pool2d_forward(const PoolGeom&, const float*, float*) { PK_PENDING(avg_pool2d_forward); }
void avg_pool2d_backward(const PoolGeom&, const float*, float*) { PK_PENDING(avg_pool2d_backward); }
void adaptive_avg_pool2d_forward(int64_t, int64_t, int64_t, int64_t, int64_t, const float*, float*) { PK_PENDING(adaptive_avg_pool2d_forward); }
void adaptive_avg_pool2d_backward(int64_t, int64_t, int64_t, int64_t, int64_t, const float*, float*) { PK_PENDING(adaptive_avg_pool2d_backward); }
// norm
void layer_norm_forward(int64_t, int64_t, float, const float*, const float*, const float*, float*, float*, float*) { PK_PENDING(layer_norm_forward); }
void layer_norm_backward(int64_t, int64_t, const float*, const float*, const float*, const float*, const float*, float*, float*, float*) { PK_PENDING(layer_norm_backward); }
void channel_stats(int64_t, int64_t, int64_t, const float*, float*, float*) { PK_PENDING(channel_stats); }
void batch_norm_apply(int64_t, int64_t, int64_t, const float*, const float*, const float*, const float*, const float*, float*) { PK_PENDING(batch_norm_apply); }
void batch_norm_backward(int64_t, int64_t, int64_t, bool, const float*, const float*, const float*, const float*, const float*, float*, float*, float*) { PK_PENDING(batch_norm_backward); }
// softmax
void softmax_forward(int64_t, int64_t, const float*, float*) { PK_PENDING(softmax_forward); }
void softmax_backward(int64_t, int64_t, const float*, const float*, float*) { PK_PENDING(softmax_backward); }
void log_softmax_forward(int64_t, int64_t, const float*, float*) { PK_PENDING(log_softmax_forward); }
void log_softmax_backward(int64_t, int64_t, const float*, const float*, float*) { PK_PENDING(log_softmax_backward); }
// layout
void permute(const PermuteGeom&, const float*, float*) { PK_PENDING(permute); }
void copy_axis_block(int64_t, int64_t, int64_t, const float*, int64_t, int64_t, float*, int64_t, int64_t) { PK_PENDING(copy_axis_block); }
void roll(const AxisGeom&, int64_t, const float*, float*) { PK_PENDING(roll); }
void index_select_forward(const AxisGeom&, const int64_t*, int64_t, const float*, float*) { PK_PENDING(index_select_forward); }
void index_select_backward(const AxisGeom&, const int64_t*, int64_t, const float*, float*) { PK_PENDING(index_select_backward); }

}  // namespace pk::cpu
