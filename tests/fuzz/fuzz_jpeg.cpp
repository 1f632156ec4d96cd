// libFuzzer target: ImageFolder images: JPEG decoding and both transforms.
//
// Inputs that declare more than 4 megapixels are skipped: decoding a legal
// 65000 x 500 image takes seconds under the sanitizers, which the fuzzer
// would report as a timeout although nothing is wrong. The decoder's own
// limit (PIL's decompression-bomb bound, far above this) is covered by the
// unit tests of tools/data.
#include <turbojpeg.h>

#include "fuzz_input_file.h"
#include "fuzz_loaders.h"

namespace {

bool declares_few_pixels(const uint8_t* data, size_t size) {
  tjhandle tj = tjInitDecompress();
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  const bool header = tjDecompressHeader3(tj, data, static_cast<unsigned long>(size), &width,
                                          &height, &subsampling, &colorspace) == 0;
  tjDestroy(tj);
  // A file without a readable header goes to the loader, which must refuse it.
  return !header || static_cast<int64_t>(width) * height <= int64_t{4} << 20;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (!declares_few_pixels(data, size)) return -1;  // not added to the corpus
  pk::fuzz::try_load(pk::fuzz::load_jpeg_file, pk::fuzz::write_input_file(data, size, ".jpg"));
  return 0;
}
