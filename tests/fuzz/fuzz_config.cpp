// Fuzzes config.json: nlohmann's parser (with the project's limits), then config_from_json's field checks.
#include <nlohmann/json.hpp>

#include "engine/model/config.h"
#include "mlabench/result.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto j = nlohmann::json::parse(mlabench::fuzz::as_text(data, size), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;  // not JSON: the loader refuses it before config_from_json
  try {
    auto cfg = mlabench::config_from_json(j, "fuzz/config.json");
    (void)cfg;
  } catch (const mlabench::Error&) {
  }
  return 0;
}
