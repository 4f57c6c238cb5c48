// Fuzzes tokenizer.model (a SentencePiece ModelProto): load_sentencepiece on an in-memory file, then encode a fixed
// text, decode the ids (and out-of-range ones, which decode skips), and look tokens up. libsentencepiece itself is
// Debian's uninstrumented library: the target checks that whatever it accepts or refuses reaches us as a model or
// an Error, never a crash, an abort or a hang.
#include <span>
#include <string>
#include <vector>

#include "engine/tokenizer/hf_tokenizer.h"
#include "mlabench/result.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const mlabench::fuzz::MemFile file(data, size);
  try {
    auto tok = mlabench::load_sentencepiece(file.path());
    static const std::string kText = "Hello, world! 123 <s> caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd\n\tend \xff";
    std::vector<int32_t> ids = tok->encode(kText, /*add_special_tokens=*/true);
    ids.push_back(-1);
    ids.push_back(static_cast<int32_t>(tok->vocab_size()));
    (void)tok->decode(std::span<const int32_t>(ids), /*skip_special_tokens=*/true);
    (void)tok->decode(std::span<const int32_t>(ids), /*skip_special_tokens=*/false);
    (void)tok->token_to_id("<s>");
    (void)tok->id_to_token(0);
  } catch (const mlabench::Error&) {
  }
  return 0;
}
