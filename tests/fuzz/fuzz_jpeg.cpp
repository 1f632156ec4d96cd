// libFuzzer target: ImageFolder images: JPEG decoding and both transforms.
#include "fuzz_input_file.h"
#include "fuzz_loaders.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pk::fuzz::try_load(pk::fuzz::load_jpeg_file, pk::fuzz::write_input_file(data, size, ".jpg"));
  return 0;
}
