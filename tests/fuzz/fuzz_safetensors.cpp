// libFuzzer target: safetensors files: the header (JSON, dtypes, shapes, offsets) and the tensor bytes.
#include "fuzz_input_file.h"
#include "fuzz_loaders.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pk::fuzz::try_load(pk::fuzz::load_safetensors_file, pk::fuzz::write_input_file(data, size, ".safetensors"));
  return 0;
}
