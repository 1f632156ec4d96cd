// Top-1/top-5 accuracy of a network on labelled images of an ImageFolder.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nets/net.h"
#include "tools/data/dataset.h"

namespace pk::data {

struct EvalResult {
  double top1 = 0;  // percent
  double top5 = 0;  // percent; 100 when the model has fewer than 5 classes
  int64_t images = 0;
  double seconds = 0;
  double images_per_second() const { return seconds > 0 ? images / seconds : 0.0; }
};

// Top-1/top-5 accuracy of `net` on `samples`, decoded `batch_size` at a time
// on the net's device, without autograd, with a progress line named `label`.
// A sample's label counts as top-k when fewer than k logits rank above it;
// ties rank the lower class index first and NaN above every number, as
// torch.topk orders them.
EvalResult evaluate(Net& net, const std::vector<Sample>& samples, const PreprocessConfig& config,
                    int64_t batch_size, const std::string& label);

// Labels are class-folder indices: throws std::runtime_error naming the
// folder unless it has one class folder per output of `net`.
void check_class_count(const ImageFolder& folder, const Net& net);

}  // namespace pk::data
