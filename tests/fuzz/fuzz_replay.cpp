// Fuzzes replay files (`--backend replay:FILE.jsonl`) through read_replay_file, the reader ReplayBackend uses: the
// input is written as a scratch .jsonl file, read line by line, each line parsed and checked, duplicates refused.
#include "harness/replay_file.h"
#include "mlabench/result.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fz = mlabench::fuzz;
  const std::string file = (fz::scratch_dir() / "replay.jsonl").string();
  fz::write_file(file, fz::as_text(data, size));
  try {
    auto entries = mlabench::harness::read_replay_file(file);
    // What ReplayBackend reads of each entry.
    size_t total = 0;
    for (const auto& [key, e] : entries) total += key.first.size() + e.logprobs.size() + e.responses.size();
    (void)total;
  } catch (const mlabench::Error&) {
  }
  return 0;
}
