// Reconstruction-step benchmark (not a test): milliseconds per iteration of
// the reconstruction loop (forward with fake-quantized activations and soft
// AdaRound weights, MSE plus rounding loss, backward, Adam on alphas and
// activation scales) on standard 224 px shapes, W4A4 with channel-wise
// weights, random weights and images. The units, in this order (the images
// run through the net's earlier units to give each its input):
//   resnet18 layer1.0            BasicBlock 64 -> 64, input 56x56
//   resnet18 layer4.0            BasicBlock 256 -> 512, stride 2, 1x1
//                                downsample conv, input 14x14
//   mobilenetv2 features.2       inverted residual 16 -> 96 -> 24, depthwise
//                                3x3 stride 2, no residual, input 112x112
//   regnetx_600m s1.b1           bottleneck 32 -> 48, 3x3 with group width 24
//                                and stride 2, 1x1 shortcut conv, input 112x112
//   deit_small blocks.0          197 tokens of 384, 6 heads
//   swin_tiny layers.0.blocks.0  7x7 windows on 56x56 of 96, 3 heads
//   swin_tiny layers.0.blocks.1  the same, shifted by 3 with the window mask
// An iteration's time is the difference of a run of 3N and a run of N
// iterations over 2N, so the input capture drops out.
// tools/bench_torch.py --recon times the same steps in PyTorch eager.
//
// Usage: bench_recon [--threads N] [--batch B] [--iterations N] [--units MODEL:UNIT,...]
//   --units  a comma-separated selection of the units above, such as
//            resnet18:layer4.0,swin_tiny:layers.0.blocks.1 (default: all)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

#include "engine/parallel.h"
#include "engine/rng.h"
#include "nets/init.h"
#include "nets/net.h"
#include "quant/reconstruct.h"
#include "tools/bench_flags.h"

using namespace pk;

namespace {

struct BenchUnit {
  const char* model;
  const char* unit;
};

// The units timed, in order; tools/bench_torch.py --recon has the same list.
constexpr BenchUnit kUnits[] = {
    {"resnet18", "layer1.0"},           {"resnet18", "layer4.0"},
    {"mobilenetv2", "features.2"},      {"regnetx_600m", "s1.b1"},
    {"deit_small", "blocks.0"},         {"swin_tiny", "layers.0.blocks.0"},
    {"swin_tiny", "layers.0.blocks.1"},
};

std::string unit_label(const BenchUnit& u) { return std::string(u.model) + ":" + u.unit; }

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: bench_recon [--threads N] [--batch B] [--iterations N] "
               "[--units MODEL:UNIT,...]\n  units (default: all):");
  for (const BenchUnit& u : kUnits) std::fprintf(stderr, " %s", unit_label(u).c_str());
  std::fprintf(stderr, "\n");
  std::exit(2);
}

// The entries of kUnits named in the comma-separated `list`, in kUnits order.
std::vector<BenchUnit> select_units(const std::string& list) {
  std::vector<bool> wanted(std::size(kUnits), false);
  size_t begin = 0;
  while (true) {
    const size_t end = list.find(',', begin);
    const std::string name = list.substr(begin, end == std::string::npos ? end : end - begin);
    bool found = false;
    for (size_t i = 0; i < std::size(kUnits); ++i)
      if (name == unit_label(kUnits[i])) wanted[i] = found = true;
    if (!found) {
      std::fprintf(stderr, "bench_recon: unknown unit '%s'\n", name.c_str());
      usage();
    }
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  std::vector<BenchUnit> out;
  for (size_t i = 0; i < std::size(kUnits); ++i)
    if (wanted[i]) out.push_back(kUnits[i]);
  return out;
}

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
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 32, iterations = 10;
  std::vector<BenchUnit> units(std::begin(kUnits), std::end(kUnits));
  const BenchFlags flags{"bench_recon", argc, argv, usage};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads")) {
      set_num_threads(static_cast<int>(flags.number(i, "--threads", true)));
    } else if (!std::strcmp(argv[i], "--batch")) {
      batch = flags.number(i, "--batch");
    } else if (!std::strcmp(argv[i], "--iterations")) {
      iterations = flags.number(i, "--iterations");
    } else if (!std::strcmp(argv[i], "--units")) {
      units = select_units(flags.text(i, "--units"));
    } else {
      usage();
    }
  }
  std::printf("packptq reconstruction step, W4A4, %d threads\n", num_threads());
  for (const BenchUnit& u : units) bench(u.model, u.unit, true, batch, iterations);
  return 0;
}
