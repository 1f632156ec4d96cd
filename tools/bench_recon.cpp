// Reconstruction-step benchmark (not a test): milliseconds per iteration of
// the reconstruction loop (forward with fake-quantized activations and soft
// AdaRound weights, MSE plus rounding loss, backward, Adam on alphas and
// activation scales) on standard 224 px shapes: resnet18 layer1.0, deit_small
// blocks.0 and swin_tiny layers.0.blocks.0, W4A4 with channel-wise weights,
// random weights and images. An iteration's time is the difference of a run
// of 3N and a run of N iterations over 2N, so the input capture drops out.
// tools/bench_torch.py --recon times the same steps in PyTorch eager.
//
// Usage: bench_recon [--threads N] [--batch B] [--iterations N]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "engine/parallel.h"
#include "engine/rng.h"
#include "nets/init.h"
#include "nets/net.h"
#include "quant/reconstruct.h"

using namespace pk;

namespace {

double recon_seconds(QuantModel& model, const ReconTarget& target, const Tensor& images,
                     int64_t batch, int64_t iterations) {
  ReconOptions options;
  options.iterations = iterations;
  options.batch_size = batch;
  Generator gen(1005);
  auto start = std::chrono::steady_clock::now();
  reconstruct(model, target, images, options, gen);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void bench(const std::string& model_name, const std::string& unit, bool mix_inputs,
           int64_t batch, int64_t iterations) {
  auto net = create_net(model_name);
  init_random(*net, 7);
  net->eval();
  QuantSettings settings;
  settings.weight_bits = settings.activation_bits = 4;
  settings.weight_channel_wise = true;
  QuantModel model(net, settings, false);
  Generator gen(3);
  const Tensor images = gen.uniform_tensor({batch, 3, 224, 224}, -2.0f, 2.0f);
  model.initialize(images);
  ReconTarget target;
  target.name = unit;
  target.mix_inputs = mix_inputs;
  for (int64_t t = 0; t < net->num_units(); ++t)
    if (net->units()[t].name == unit) target.first_unit = t, target.last_unit = t + 1;
  if (target.last_unit == 0) {
    std::fprintf(stderr, "bench_recon: %s has no unit %s\n", model_name.c_str(), unit.c_str());
    std::exit(1);
  }
  // Each run re-starts AdaRound from the initialized weights.
  const double few = recon_seconds(model, target, images, batch, iterations);
  const double many = recon_seconds(model, target, images, batch, 3 * iterations);
  std::printf("  %-12s %-22s batch %3lld  %8.1f ms/iteration\n", model_name.c_str(), unit.c_str(),
              static_cast<long long>(batch), (many - few) / (2.0 * iterations) * 1e3);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 32, iterations = 10;
  for (int i = 1; i < argc; ++i) {
    auto value = [&](const char* flag) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_recon: %s needs a value\n", flag);
        std::exit(2);
      }
      return std::atoll(argv[++i]);
    };
    if (!std::strcmp(argv[i], "--threads")) {
      set_num_threads(static_cast<int>(value("--threads")));
    } else if (!std::strcmp(argv[i], "--batch")) {
      batch = value("--batch");
    } else if (!std::strcmp(argv[i], "--iterations")) {
      iterations = value("--iterations");
    } else {
      std::fprintf(stderr, "usage: bench_recon [--threads N] [--batch B] [--iterations N]\n");
      return 2;
    }
  }
  std::printf("packptq reconstruction step, W4A4, %d threads\n", num_threads());
  bench("resnet18", "layer1.0", true, batch, iterations);
  bench("deit_small", "blocks.0", true, batch, iterations);
  bench("swin_tiny", "layers.0.blocks.0", true, batch, iterations);
  return 0;
}
