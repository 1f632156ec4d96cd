// An application that embeds packptq through its C++ API: it quantizes a
// checkpoint with Pack-PTQ at W4A4, measures top-1 before and after, saves
// the quantized model (integer codes plus scales) and checks that the file,
// loaded again, gives the same logits as the model in memory.
//
//   quantize_example MODEL_NAME CHECKPOINT DATASET OUTPUT
//                    [CONFIG_JSON [CALIBRATION_IMAGES [ITERATIONS]]]
//
// DATASET is an ImageFolder root with train/ and val/; CONFIG_JSON overrides
// the standard architecture (the fixtures' config.json; "" for none); the
// last two default to 1024 images and 20000 iterations per unit, the
// reference's defaults (a GPU budget: on a CPU pass a few hundred).
// Build it against an installed packptq with the CMakeLists.txt beside it.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/autograd.h"
#include "engine/checkpoint.h"
#include "engine/rng.h"
#include "nets/net.h"
#include "quant/model_io.h"
#include "quant/pipeline.h"
#include "tools/data/dataset.h"

namespace {

// Share of `samples` whose largest logit is their label's.
double top1(pk::Net& net, const std::vector<pk::data::Sample>& samples,
            const pk::data::PreprocessConfig& preprocess) {
  pk::NoGradGuard no_grad;  // inference only: no autograd graph
  constexpr size_t kBatch = 64;
  int64_t correct = 0;
  for (size_t begin = 0; begin < samples.size(); begin += kBatch) {
    const size_t end = std::min(samples.size(), begin + kBatch);
    const pk::data::Batch batch = pk::data::load_batch(samples, begin, end, preprocess);
    const std::vector<float> logits = net.forward(batch.images).to_vector();
    const std::vector<int64_t> labels = batch.labels.to_int64_vector();
    const size_t classes = logits.size() / labels.size();
    for (size_t i = 0; i < labels.size(); ++i) {
      const float* row = logits.data() + i * classes;
      correct += std::max_element(row, row + classes) - row == labels[i];
    }
  }
  return 100.0 * correct / samples.size();
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  return nlohmann::json::parse(in);
}

int run(int argc, char** argv) {
  if (argc < 5 || argc > 8) {
    std::fprintf(stderr,
                 "usage: %s MODEL_NAME CHECKPOINT DATASET OUTPUT [CONFIG_JSON "
                 "[CALIBRATION_IMAGES [ITERATIONS]]]\n",
                 argv[0]);
    return 2;
  }
  const std::string model_name = argv[1], checkpoint = argv[2], dataset = argv[3],
                    output = argv[4];
  const bool has_config = argc > 5 && argv[5][0] != '\0';
  const nlohmann::json config = has_config ? read_json(argv[5]) : nlohmann::json::object();
  const int64_t calibration_images = argc > 6 ? std::atoll(argv[6]) : 1024;
  const int64_t iterations = argc > 7 ? std::atoll(argv[7]) : 20000;
  if (calibration_images <= 0 || iterations <= 0) {
    std::fprintf(stderr, "calibration images and iterations must be positive integers\n");
    return 2;
  }

  // The float network from a torch.save or safetensors checkpoint, its names
  // adapted to the net's (older timm Swin layouts); strict: throws on any mismatch.
  std::shared_ptr<pk::Net> net = pk::create_net(model_name, config);
  net->load_state_dict(net->adapt_checkpoint(pk::load_checkpoint(checkpoint)));
  net->eval();

  // Calibration images drawn from train/ with a seed, in the model's preprocessing.
  const pk::data::PreprocessConfig preprocess = pk::data::preprocess_config(net->preprocess());
  const pk::data::ImageFolder train = pk::data::scan_image_folder(dataset, "train");
  const pk::data::ImageFolder val = pk::data::scan_image_folder(dataset, "val");
  const uint64_t seed = 1005;
  const std::vector<pk::data::Sample> calibration_samples =
      pk::data::sample_calibration(train.samples, calibration_images, seed);
  const pk::Tensor calibration =
      pk::data::load_batch(calibration_samples, 0, calibration_samples.size(), preprocess).images;

  const double fp32_top1 = top1(*net, val.samples, preprocess);

  // Pack-PTQ at W4A4 with channel-wise weights; every other setting is the
  // reference's default.
  pk::QuantSettings settings;
  settings.weight_bits = settings.activation_bits = 4;
  settings.weight_channel_wise = true;
  pk::QuantModel model(net, settings, /*first_last_8bit=*/false);
  pk::PipelineOptions options;
  options.recon.iterations = iterations;
  pk::Generator gen(seed);
  const pk::PipelineReport report =
      pk::run_pipeline(model, calibration, options, gen, /*resumed=*/false, nullptr);
  const double quant_top1 = top1(*net, val.samples, preprocess);  // the net is now quantized

  std::printf("packs:");
  for (const pk::Pack& pack : report.packs)
    std::printf(" [%s..%s]", net->units()[pack.first].name.c_str(),
                net->units()[pack.last - 1].name.c_str());
  std::printf("\nfp32 top-1 %.2f, W4A4 top-1 %.2f\n", fp32_top1, quant_top1);

  // Save integer codes and scales; the reloaded model must classify as this one.
  pk::save_quantized_model(output, model, {{"model_config", config}}, /*with_float_weights=*/false);
  pk::LoadedQuantModel loaded = pk::load_quantized_model(output);
  const pk::data::Batch first = pk::data::load_batch(val.samples, 0, 16, preprocess);
  pk::NoGradGuard no_grad;
  if (net->forward(first.images).to_vector() != loaded.net->forward(first.images).to_vector()) {
    std::fprintf(stderr, "the reloaded model's logits differ from the model's\n");
    return 1;
  }
  std::printf("saved %s; reloaded, it gives the same logits\n", output.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "quantize_example: %s\n", e.what());
    return 1;
  }
}
