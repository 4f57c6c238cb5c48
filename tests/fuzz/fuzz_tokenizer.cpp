// Fuzzes tokenizer.json: parse_hf_tokenizer_json (model, normalizer, pre-tokenizer, decoder, added tokens), then
// encodes a fixed text and decodes the result, so the pipeline the file built is exercised too.
#include <span>
#include <string>

#include "engine/tokenizer/hf_tokenizer.h"
#include "mlabench/result.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto tok = mlabench::parse_hf_tokenizer_json(mlabench::fuzz::as_text(data, size), "fuzz/tokenizer.json");
    static const std::string kText = "Hello, world! 123 <s> caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd\n\tend ";
    auto ids = tok->encode(kText, /*add_special_tokens=*/true);
    auto back = tok->decode(std::span<const int32_t>(ids), /*skip_special_tokens=*/false);
    (void)back;
    (void)tok->id_to_token(0);
  } catch (const mlabench::Error&) {
  }
  return 0;
}
