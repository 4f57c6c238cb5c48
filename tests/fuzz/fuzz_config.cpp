// Fuzzes config.json through load_config (the bounded JSON parse, then config_from_json's field checks): the
// input is written as config.json in a scratch model folder.
#include "engine/model/config.h"
#include "mlabench/result.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fz = mlabench::fuzz;
  fz::write_file(fz::scratch_dir() / "config.json", fz::as_text(data, size));
  try {
    auto cfg = mlabench::load_config(fz::scratch_dir().string());
    (void)cfg;
  } catch (const mlabench::Error&) {
  }
  return 0;
}
