// Fuzzes dataset manifests (datasets_manifest/*.json): load_manifest reads <dir>/<name>.json and validates it.
#include "harness/data/manifest.h"
#include "mlabench/result.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fz = mlabench::fuzz;
  fz::write_file(fz::scratch_dir() / "fuzz.json", fz::as_text(data, size));
  try {
    auto m = mlabench::data::load_manifest(fz::scratch_dir(), "fuzz");
    (void)m;
  } catch (const mlabench::Error&) {
  }
  return 0;
}
