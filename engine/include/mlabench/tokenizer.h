// mlabench tokenizers: the public interface.
//
// Tokenizer::load reads a model folder's tokenizer the way its checkpoint ships it:
//   tokenizer.json   Hugging Face `tokenizers` format (BPE model, normalizers, pre-tokenizers, added tokens,
//                    post-processor, decoder), with the ids `tokenizers` produces, id for id;
//   tokenizer.model  SentencePiece, through libsentencepiece (used when there is no tokenizer.json);
// plus tokenizer_config.json for BOS/EOS and the chat template.
//
// Text is UTF-8. Ill-formed UTF-8 in encode() input is replaced by U+FFFD (one per maximal ill-formed
// subsequence, the WHATWG rule) before tokenization: encoding never fails. decode() output is always
// well-formed UTF-8 (undecodable bytes come back as U+FFFD, as `tokenizers` does).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mlabench/result.h"

namespace mlabench {

/// The chat templates mlabench renders natively (no Jinja).
enum class ChatTemplate {
  RAW,              ///< no template: message contents concatenated; BOS from the tokenizer's post-processor
  DEEPSEEK_V2,      ///< <bos>[system\n\n]User: ...\n\nAssistant: ...<eos>User: ... Assistant:
  LLAMA2_CHAT,      ///< <bos>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] ... <eos>
  LLAMA3_INSTRUCT,  ///< <bos><|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
};

struct ChatMessage {
  std::string role;  ///< "system" | "user" | "assistant"
  std::string content;
};

/// \brief "raw", "deepseek-v2", "llama-2-chat", "llama-3-instruct".
std::string_view chat_template_name(ChatTemplate t);
/// \brief Parses a name accepted by --chat-template; nullopt for an unknown one.
std::optional<ChatTemplate> chat_template_from_name(std::string_view name);
/// \brief Which built-in template a tokenizer_config.json chat_template string is. Exact matches of the
/// published strings first, then a fingerprint of distinctive fragments; RAW when neither matches.
ChatTemplate detect_chat_template(std::string_view jinja_source);

/// \brief Renders a conversation exactly as the published Jinja template does (transformers
/// apply_chat_template). Errors: roles that the template refuses (Llama-2 requires user/assistant alternation).
Result<std::string> render_chat(ChatTemplate t, std::span<const ChatMessage> messages, std::string_view bos_token,
                                std::string_view eos_token, bool add_generation_prompt);

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  /// \brief Loads DIR/tokenizer.json (or DIR/tokenizer.model) and DIR/tokenizer_config.json if present.
  /// Errors name the file and field: malformed JSON, unknown component types, bad regexes, merges naming
  /// tokens outside the vocabulary.
  static Result<std::unique_ptr<Tokenizer>> load(const std::string& dir);
  /// \brief True if DIR holds a tokenizer this loader reads.
  static bool exists(const std::string& dir);

  /// \brief Token ids of `text`. add_special_tokens: apply the post-processor (e.g. prepend BOS), as
  /// `tokenizers`' encode(add_special_tokens=True) does. Added tokens in the text are always recognised.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const = 0;
  /// \brief Text of `ids`; unknown ids are skipped (as `tokenizers` does).
  virtual std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const = 0;

  /// \brief Number of ids the tokenizer can produce (model vocabulary and added tokens).
  virtual int64_t vocab_size() const = 0;
  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  virtual std::optional<std::string> id_to_token(int32_t id) const = 0;
  virtual bool is_special(int32_t id) const = 0;
  /// \brief "tokenizer.json (BPE)" or "sentencepiece (tokenizer.model)".
  virtual std::string kind() const = 0;

  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }
  std::optional<int32_t> bos_id() const { return bos_token_.empty() ? std::nullopt : token_to_id(bos_token_); }
  std::optional<int32_t> eos_id() const { return eos_token_.empty() ? std::nullopt : token_to_id(eos_token_); }
  ChatTemplate chat_template() const { return chat_template_; }
  /// \brief How chat_template() was chosen: "exact" (a published template string), "fingerprint" (a variant of
  /// one), "unrecognised" (another template: RAW is used), "none" (no template in the config).
  const std::string& chat_template_match() const { return chat_template_match_; }

 protected:
  std::string bos_token_, eos_token_;
  ChatTemplate chat_template_ = ChatTemplate::RAW;
  std::string chat_template_match_ = "none";
  friend Result<std::unique_ptr<Tokenizer>> load_tokenizer_impl(const std::string& dir);
};

/// Streaming detokenizer for generation: feed ids one at a time, get the text they complete. Text is held
/// back while it would end in an incomplete UTF-8 character (decoded as U+FFFD), so no half character is ever
/// emitted; flush() returns whatever remains. Concatenated output equals decode(all ids).
class StreamDecoder {
 public:
  StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens);
  std::string step(int32_t id);
  std::string flush();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::vector<int32_t> ids_;
  std::string prefix_;
  size_t prefix_index_ = 0;
};

}  // namespace mlabench
