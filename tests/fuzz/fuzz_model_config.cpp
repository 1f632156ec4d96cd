// libFuzzer target: a model's config.json and the net it configures.
#include "fuzz_input_file.h"
#include "fuzz_loaders.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pk::fuzz::try_load(pk::fuzz::load_model_config_file, pk::fuzz::write_input_file(data, size, ".json"));
  return 0;
}
