// libFuzzer target: legacy (pre-zip) torch.save streams through the restricted unpickler.
#include "fuzz_input_file.h"
#include "fuzz_loaders.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pk::fuzz::try_load(pk::fuzz::load_torch_legacy_file, pk::fuzz::write_input_file(data, size, ".pth"));
  return 0;
}
