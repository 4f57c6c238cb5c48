// Fuzzes the pickle-string reader used for LiveCodeBench's private tests (an untrusted download).
#include "mlabench/result.h"
#include "tasks/code/pickle_string.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto s = mlabench::tasks::unpickle_str(mlabench::fuzz::as_text(data, size), "fuzz.pkl");
    (void)s;
  } catch (const mlabench::Error&) {
  }
  return 0;
}
