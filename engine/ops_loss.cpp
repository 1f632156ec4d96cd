// Losses, composed from differentiable ops so that their gradients come from
// the ops' own backward passes on any device.
#include <cfloat>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/ops_util.h"

namespace pk {

Tensor reconstruction_mse(const Tensor& pred, const Tensor& target) {
  check(pred.shape() == target.shape(), [&] {
    return "reconstruction_mse: pred " + pred.describe() + " and target " + target.describe() +
           " must have one shape";
  });
  check(pred.dim() >= 2 && pred.numel() > 0, [&] {
    return "reconstruction_mse: needs a non-empty tensor of rank >= 2, got " + pred.describe();
  });
  check_same_device(pred, target, "reconstruction_mse");
  // Summing over dim 1 and then averaging over every other dim is the total
  // sum divided by the number of positions outside dim 1.
  const float positions = static_cast<float>(pred.numel() / pred.size(1));
  Tensor diff = sub(pred, target);
  return mul(sum(mul(diff, diff)), 1.0f / positions);
}

Tensor kl_div_batchmean(const Tensor& log_q, const Tensor& p) {
  check(log_q.shape() == p.shape(), [&] {
    return "kl_div_batchmean: log_q " + log_q.describe() + " and p " + p.describe() +
           " must have one shape";
  });
  check(log_q.dim() >= 1 && log_q.numel() > 0,
        [&] { return "kl_div_batchmean: needs a non-empty tensor, got " + log_q.describe(); });
  check_same_device(log_q, p, "kl_div_batchmean");
  const float rows = static_cast<float>(log_q.numel() / log_q.size(-1));
  Tensor target = p.detach();  // the target gets no gradient
  Tensor p_log_p;
  {
    // 0 * log 0 = 0: log of p clamped to the smallest normal float is finite,
    // and the factor p = 0 then zeroes the term.
    NoGradGuard no_grad;
    p_log_p = mul(target, log(clamp(target, FLT_MIN, FLT_MAX)));
  }
  return mul(sum(sub(p_log_p, mul(target, log_q))), 1.0f / rows);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& labels) {
  check(logits.dim() == 2 && logits.size(0) > 0 && logits.size(1) > 0,
        [&] { return "cross_entropy: expects logits [B, K], got " + logits.describe(); });
  const int64_t B = logits.size(0), K = logits.size(1);
  check(labels.dtype() == DType::I64 && labels.shape() == Shape{B}, [&] {
    return "cross_entropy: expects int64 labels [" + std::to_string(B) + "] for logits " +
           logits.describe() + ", got " + labels.describe();
  });
  // The labels as a one-hot mask: picking log-probabilities becomes a product.
  std::vector<int64_t> label = labels.to_int64_vector();
  std::vector<float> one_hot(static_cast<size_t>(B * K), 0.0f);
  for (int64_t b = 0; b < B; ++b) {
    check(label[b] >= 0 && label[b] < K, [&] {
      return "cross_entropy: label " + std::to_string(label[b]) + " of sample " +
             std::to_string(b) + " is outside [0, " + std::to_string(K) + ")";
    });
    one_hot[b * K + label[b]] = 1.0f;
  }
  Tensor pick = Tensor::from_vector(one_hot, {B, K}, logits.device());
  return mul(sum(mul(log_softmax(logits), pick)), -1.0f / static_cast<float>(B));
}

}  // namespace pk
