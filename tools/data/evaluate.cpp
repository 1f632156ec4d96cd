#include "tools/data/evaluate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/log.h"

namespace pk::data {

namespace {

Device module_device(const Module& module) {
  std::vector<Tensor> params = module.parameters();
  return params.empty() ? Device::CPU : params.front().device();
}

// torch.topk's order: larger first, NaN above every number, ties by index.
bool ranks_above(float a, int64_t a_index, float b, int64_t b_index) {
  const bool a_nan = std::isnan(a), b_nan = std::isnan(b);
  if (a_nan || b_nan) return a_nan && b_nan ? a_index < b_index : a_nan;
  return a > b || (a == b && a_index < b_index);
}

int64_t rank_of_label(const float* logits, int64_t classes, int64_t label) {
  int64_t rank = 0;
  for (int64_t c = 0; c < classes; ++c) rank += ranks_above(logits[c], c, logits[label], label);
  return rank;
}

std::string percent(double value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", value);
  return buf;
}

}  // namespace

EvalResult evaluate(Net& net, const std::vector<Sample>& samples, const PreprocessConfig& config,
                    int64_t batch_size, const std::string& label) {
  check(batch_size > 0, "evaluate: batch size must be positive, got " + std::to_string(batch_size));
  check(!samples.empty(), "evaluate: no images to evaluate");
  NoGradGuard no_grad;
  const Device device = module_device(net);
  const size_t total = samples.size();
  int64_t top1 = 0, top5 = 0;
  Progress progress(label, static_cast<int64_t>(total), "img");
  for (size_t begin = 0; begin < total; begin += static_cast<size_t>(batch_size)) {
    const size_t end = std::min(total, begin + static_cast<size_t>(batch_size));
    const Batch batch = load_batch(samples, begin, end, config);
    const Tensor logits = net.forward(batch.images.to(device));
    const int64_t count = static_cast<int64_t>(end - begin);
    check(logits.dim() == 2 && logits.size(0) == count, "evaluate: expected logits [" +
                                                            std::to_string(count) +
                                                            ", classes], got " + logits.describe());
    const int64_t classes = logits.size(1);
    const std::vector<float> host = logits.to_vector();
    const std::vector<int64_t> labels = batch.labels.to_int64_vector();
    for (int64_t i = 0; i < count; ++i) {
      check(labels[i] >= 0 && labels[i] < classes,
            "evaluate: label " + std::to_string(labels[i]) + " of " + samples[begin + i].path +
                " is outside the model's " + std::to_string(classes) + " classes");
      const int64_t rank = rank_of_label(host.data() + i * classes, classes, labels[i]);
      top1 += rank < 1;
      top5 += rank < 5;
    }
    // The last batch is reported by finish() below.
    if (end < total)
      progress.update(static_cast<int64_t>(end), "top-1 " + percent(100.0 * top1 / end));
  }
  EvalResult result;
  result.images = static_cast<int64_t>(total);
  result.top1 = 100.0 * top1 / total;
  result.top5 = 100.0 * top5 / total;
  result.seconds = progress.elapsed_seconds();
  progress.finish("top-1 " + percent(result.top1) + " top-5 " + percent(result.top5));
  return result;
}

void check_class_count(const ImageFolder& folder, const Net& net) {
  if (static_cast<int64_t>(folder.classes.size()) != net.num_classes())
    throw std::runtime_error(folder.directory + " has " + std::to_string(folder.classes.size()) +
                             " class folders but the model has " +
                             std::to_string(net.num_classes()) + " classes");
}

}  // namespace pk::data
