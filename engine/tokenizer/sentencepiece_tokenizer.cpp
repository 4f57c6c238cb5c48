// SentencePiece models (tokenizer.model) through libsentencepiece, behind the Tokenizer interface. Special
// tokens are SentencePiece's control symbols; add_special_tokens prepends BOS (what Llama-style checkpoints
// without a tokenizer.json expect). The library reports most bad models through its status, but some (a piece of
// zero length: its trie builder, Darts) by a C++ exception: every call into it turns one into an Error naming the
// model (found by fuzz_sentencepiece; docs/fuzzing.md).
#include <sentencepiece_processor.h>

#include "core/check.h"
#include "core/input_file.h"
#include "engine/tokenizer/hf_tokenizer.h"
#include "engine/tokenizer/unicode.h"

namespace mlabench {

namespace {

// Runs a libsentencepiece call, turning an exception it throws into an Error about the model at `path`.
template <class F>
auto guarded(const std::string& path, const char* what, F&& call) {
  try {
    return call();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    MLABENCH_FAIL("SentencePiece model {}: {} failed inside libsentencepiece ({}). HINT: the file is not a valid "
                  "tokenizer.model; use the checkpoint's own, or its tokenizer.json",
                  path, what, e.what());
  }
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : path_(path) {
    refuse_non_regular_file(path, "SentencePiece model");
    guarded(path_, "loading", [&] {
      const auto status = sp_.Load(path);
      MLABENCH_CHECK(status.ok(), "cannot load SentencePiece model {}: {}", path, status.ToString());
      if (sp_.bos_id() >= 0) bos_token_ = sp_.IdToPiece(sp_.bos_id());
      if (sp_.eos_id() >= 0) eos_token_ = sp_.IdToPiece(sp_.eos_id());
      return 0;
    });
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override {
    std::vector<int> ids;
    const auto status = guarded(path_, "encoding", [&] { return sp_.Encode(unicode::sanitize(text), &ids); });
    MLABENCH_CHECK(status.ok(), "SentencePiece model {}: encoding failed: {}", path_, status.ToString());
    std::vector<int32_t> out;
    if (add_special_tokens && sp_.bos_id() >= 0) out.push_back(sp_.bos_id());
    out.insert(out.end(), ids.begin(), ids.end());
    return out;
  }

  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const override {
    std::vector<int> keep;
    for (int32_t id : ids)
      if (id >= 0 && id < sp_.GetPieceSize() && !(skip_special_tokens && sp_.IsControl(id))) keep.push_back(id);
    std::string out;
    const auto status = guarded(path_, "decoding", [&] { return sp_.Decode(keep, &out); });
    MLABENCH_CHECK(status.ok(), "SentencePiece model {}: decoding failed: {}", path_, status.ToString());
    return unicode::sanitize(out);
  }

  int64_t vocab_size() const override { return sp_.GetPieceSize(); }
  std::optional<int32_t> token_to_id(std::string_view token) const override {
    const int id = sp_.PieceToId(token);
    if (id == sp_.unk_id() && token != sp_.IdToPiece(sp_.unk_id())) return std::nullopt;
    return id;
  }
  std::optional<std::string> id_to_token(int32_t id) const override {
    if (id < 0 || id >= sp_.GetPieceSize()) return std::nullopt;
    return sp_.IdToPiece(id);
  }
  bool is_special(int32_t id) const override { return id >= 0 && id < sp_.GetPieceSize() && sp_.IsControl(id); }
  std::string kind() const override { return "sentencepiece (tokenizer.model)"; }

 private:
  std::string path_;
  sentencepiece::SentencePieceProcessor sp_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path) {
  return std::make_unique<SentencePieceTokenizer>(path);
}

}  // namespace mlabench
