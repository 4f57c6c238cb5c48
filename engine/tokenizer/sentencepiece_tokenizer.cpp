// SentencePiece models (tokenizer.model) through libsentencepiece, behind the Tokenizer interface. Special
// tokens are SentencePiece's control symbols; add_special_tokens prepends BOS (what Llama-style checkpoints
// without a tokenizer.json expect).
#include <sentencepiece_processor.h>

#include "engine/core/check.h"
#include "engine/core/input_file.h"
#include "engine/tokenizer/hf_tokenizer.h"
#include "engine/tokenizer/unicode.h"

namespace mlabench {

namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) {
    refuse_non_regular_file(path, "SentencePiece model");
    const auto status = sp_.Load(path);
    MLABENCH_CHECK(status.ok(), "cannot load SentencePiece model {}: {}", path, status.ToString());
    if (sp_.bos_id() >= 0) bos_token_ = sp_.IdToPiece(sp_.bos_id());
    if (sp_.eos_id() >= 0) eos_token_ = sp_.IdToPiece(sp_.eos_id());
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override {
    std::vector<int> ids;
    const auto status = sp_.Encode(unicode::sanitize(text), &ids);
    MLABENCH_ICHECK(status.ok(), "SentencePiece encode failed: {}", status.ToString());
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
    const auto status = sp_.Decode(keep, &out);
    MLABENCH_ICHECK(status.ok(), "SentencePiece decode failed: {}", status.ToString());
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
  sentencepiece::SentencePieceProcessor sp_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path) {
  return std::make_unique<SentencePieceTokenizer>(path);
}

}  // namespace mlabench
