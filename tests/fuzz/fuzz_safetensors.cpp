// Fuzzes the safetensors reader (header length, JSON header, dtypes, shapes, offsets) through its real entry
// point, SafetensorsFile::open, on an in-memory file; then views every tensor it accepted.
#include "engine/weights/safetensors.h"
#include "mlabench/result.h"
#include "tests/fuzz/fuzz_common.h"

// Where the sums go, so the reads are not optimised away.
volatile uint64_t g_sink = 0;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mlabench::fuzz::MemFile file(data, size);
  try {
    auto st = mlabench::SafetensorsFile::open(file.path());
    // Every accepted tensor must lie inside the file: its bytes are summed, so a bad offset faults (the data is a
    // mapping, which ASan does not bound).
    uint64_t sum = 0;
    for (const auto& e : st->entries()) {
      const auto v = st->view(e);
      const auto* p = static_cast<const uint8_t*>(v.data);
      for (size_t i = 0; i < v.nbytes(); ++i) sum += p[i];
    }
    g_sink = sum;
  } catch (const mlabench::Error&) {
  }
  return 0;
}
