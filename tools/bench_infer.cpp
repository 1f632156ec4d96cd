// FP32 inference benchmark (not a test): images per second of the float
// forward pass (eval mode, no quantization, no autograd graph) at 224 px of
// resnet18, mobilenetv2, deit_small and swin_tiny, random weights and
// images. Each model runs one warm-up batch, then N timed batches; the line
// gives the median batch. tools/bench_torch.py --infer times torchvision's
// models of the same architectures in PyTorch.
//
// Usage: bench_infer [--threads N] [--batch B] [--repeats N] [--models a,b,...]
//   --models  a comma-separated selection of the models above (default: all)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/parallel.h"
#include "engine/rng.h"
#include "engine/stopwatch.h"
#include "nets/init.h"
#include "nets/net.h"
#include "tools/bench_flags.h"

using namespace pk;

namespace {

// The models timed, in order; tools/bench_torch.py --infer has the same list.
constexpr const char* kModels[] = {"resnet18", "mobilenetv2", "deit_small", "swin_tiny"};

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: bench_infer [--threads N] [--batch B] [--repeats N] [--models a,b,...]\n"
               "  models (default: all):");
  for (const char* m : kModels) std::fprintf(stderr, " %s", m);
  std::fprintf(stderr, "\n");
  std::exit(2);
}

// The entries of kModels named in the comma-separated `list`, in kModels order.
std::vector<std::string> select_models(const std::string& list) {
  std::vector<bool> wanted(std::size(kModels), false);
  size_t begin = 0;
  while (true) {
    const size_t end = list.find(',', begin);
    const std::string name = list.substr(begin, end == std::string::npos ? end : end - begin);
    bool found = false;
    for (size_t i = 0; i < std::size(kModels); ++i)
      if (name == kModels[i]) wanted[i] = found = true;
    if (!found) {
      std::fprintf(stderr, "bench_infer: unknown model '%s'\n", name.c_str());
      usage();
    }
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < std::size(kModels); ++i)
    if (wanted[i]) out.push_back(kModels[i]);
  return out;
}

void bench(const std::string& model_name, int64_t batch, int64_t repeats) {
  auto net = create_net(model_name);
  init_random(*net, 7);
  net->eval();
  Generator gen(3);
  const Tensor images = gen.uniform_tensor({batch, 3, 224, 224}, -2.0f, 2.0f);
  NoGradGuard no_grad;
  net->forward(images);  // warm-up: first-touch of the weights and the allocator's blocks
  std::vector<double> seconds;
  for (int64_t r = 0; r < repeats; ++r) {
    Stopwatch watch;
    net->forward(images);
    seconds.push_back(watch.seconds());
  }
  std::sort(seconds.begin(), seconds.end());
  const double median = seconds[seconds.size() / 2];
  std::printf("  %-13s batch %3lld  %6.1f img/s  (%.1f ms/batch)\n", model_name.c_str(),
              static_cast<long long>(batch), static_cast<double>(batch) / median, median * 1e3);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 32, repeats = 5;
  std::vector<std::string> models(std::begin(kModels), std::end(kModels));
  const BenchFlags flags{"bench_infer", argc, argv, usage};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads")) {
      set_num_threads(static_cast<int>(flags.number(i, "--threads", true)));
    } else if (!std::strcmp(argv[i], "--batch")) {
      batch = flags.number(i, "--batch");
    } else if (!std::strcmp(argv[i], "--repeats")) {
      repeats = flags.number(i, "--repeats");
    } else if (!std::strcmp(argv[i], "--models")) {
      models = select_models(flags.text(i, "--models"));
    } else {
      usage();
    }
  }
  std::printf("packptq FP32 inference, %d threads\n", num_threads());
  std::fflush(stdout);
  for (const std::string& m : models) bench(m, batch, repeats);
  return 0;
}
