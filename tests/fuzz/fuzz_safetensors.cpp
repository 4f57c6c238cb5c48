// Fuzzes the safetensors reader (header length, JSON header, dtypes, shapes, offsets) through its real entry
// point, SafetensorsFile::open, on an in-memory file; then views every tensor it accepted.
#include "engine/weights/safetensors.h"
#include "mlabench/result.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mlabench::fuzz::MemFile file(data, size);
  try {
    auto st = mlabench::SafetensorsFile::open(file.path());
    size_t touched = 0;
    for (const auto& e : st->entries()) {
      auto v = st->view(e);
      (void)v;
      ++touched;
    }
    (void)touched;
  } catch (const mlabench::Error&) {
  }
  return 0;
}
