// An application that embeds packptq through its C++ API: one call runs
// Pack-PTQ at W4A4 as `packptq quantize` does (FP32 and quantized top-1,
// the run's log and model files), then the saved model file is loaded again
// and must classify the validation images exactly as the run measured.
//
//   quantize_example MODEL_NAME CHECKPOINT DATASET OUTPUT_DIR
//                    [CONFIG_JSON [CALIBRATION_IMAGES [ITERATIONS]]]
//
// DATASET is an ImageFolder root with train/ and val/; CONFIG_JSON overrides
// the standard architecture (the fixtures' config.json; "" for none); the
// last two default to the reference's 1024 images and 20000 iterations per
// unit (a GPU budget: on a CPU pass a few hundred).
// Build it against an installed packptq with the CMakeLists.txt beside it.
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "quant/model_io.h"
#include "quant/run.h"
#include "tools/data/evaluate.h"

int run(int argc, char** argv) {
  if (argc < 5 || argc > 8) {
    std::fprintf(stderr,
                 "usage: %s MODEL_NAME CHECKPOINT DATASET OUTPUT_DIR [CONFIG_JSON "
                 "[CALIBRATION_IMAGES [ITERATIONS]]]\n",
                 argv[0]);
    return 2;
  }
  // Every other setting keeps the reference's default.
  pk::QuantizeConfig config;
  config.model_name = argv[1];
  config.weights = argv[2];
  config.dataset_path = argv[3];
  config.output_dir = argv[4];
  if (argc > 5) config.model_config = argv[5];
  if (argc > 6) config.calibration_samples = std::atoll(argv[6]);
  if (argc > 7) config.calibration_iterations = std::atoll(argv[7]);
  config.weight_bits = config.activation_bits = 4;
  config.weight_channel_wise = true;

  const pk::QuantizeResult result = pk::quantize(config, [](const pk::RunEvent& event) {
    if (event.kind == pk::RunEvent::Kind::TargetFinished)
      std::printf("reconstructed %s: loss %.4g\n", event.result->name.c_str(),
                  event.result->final_loss);
  });
  std::printf("packs:");
  for (const pk::PackResult& pack : result.packs)
    std::printf(" [%s..%s]", pack.units.front().c_str(), pack.units.back().c_str());
  std::printf("\nfp32 top-1 %.2f, W4A4 top-1 %.2f\n", result.fp32.top1, result.quantized.top1);

  // The file holds integer codes and scales; loaded again, it must give the
  // run's top-1 on the same images in the same batches.
  const pk::LoadedQuantModel loaded = pk::load_quantized_model(result.trained_model_path);
  const pk::data::ImageFolder val = pk::data::scan_image_folder(config.dataset_path, "val");
  const pk::data::EvalResult reloaded = pk::data::evaluate(
      *loaded.net, val.samples, pk::data::preprocess_config(loaded.net->preprocess()),
      config.batch_size, "reloaded");
  if (reloaded.top1 != result.quantized.top1) {
    std::fprintf(stderr, "the reloaded model's top-1 %.2f differs from the run's\n", reloaded.top1);
    return 1;
  }
  std::printf("saved %s; reloaded, it gives the same top-1\n", result.trained_model_path.c_str());
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "quantize_example: %s\n", e.what());
    return 1;
  }
}
