// The stages of a Hugging Face tokenizer.json pipeline, each built from its JSON object:
//   normalizer      NFC, NFKC, Lowercase, Prepend, Replace, Strip, Sequence
//   pre_tokenizer   Split (String or Regex; every behavior; invert), ByteLevel, Digits, Metaspace, Whitespace,
//                   WhitespaceSplit, Sequence
//   decoder         ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence
//   post_processor  TemplateProcessing, ByteLevel (no change to ids), Sequence
// Semantics follow huggingface/tokenizers (Rust); a type outside these lists is refused by name.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/json_fields.h"
#include "engine/tokenizer/normalized_string.h"
#include "engine/tokenizer/regex.h"

namespace mlabench {

/// A piece of input on its way to the model; token >= 0 marks an added token already resolved to its id.
struct Piece {
  NormalizedString s;
  int32_t token = -1;
};
using Pieces = std::vector<Piece>;

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(NormalizedString& s) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void pre_tokenize(Pieces& pieces) const = 0;
  /// True if it reads original offsets (Metaspace with prepend_scheme "first"): only then are alignments kept.
  virtual bool needs_offsets() const { return false; }
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  /// Transforms the token strings; the final text is the concatenation of the result.
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  /// Adds special tokens around `ids` (only when add_special_tokens).
  virtual void process(std::vector<int32_t>& ids, bool add_special_tokens) const = 0;
};

/// \brief Builders; `where` names the JSON location in error messages. Null JSON gives nullptr.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& where);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& where);
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const std::string& where);
std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& j, const std::string& where);

/// \brief A {"String": ...} (literal) or {"Regex": ...} (Oniguruma syntax) pattern object.
Regex make_pattern(const nlohmann::json& j, const std::string& where);
/// \brief Parses a "behavior" value ("Isolated", "MergedWithPrevious", ...).
SplitBehavior parse_split_behavior(const std::string& s, const std::string& where);

/// \brief The components listed under `key` (a Sequence's members), each built by `make`; null members skipped.
template <class T, class Make>
std::vector<std::unique_ptr<T>> make_list(const JsonFields& f, const std::string& key, Make&& make) {
  const auto& list = f.raw(key);
  MLABENCH_CHECK(list.is_array(), "{}: '{}' must be a list", f.where(), key);
  std::vector<std::unique_ptr<T>> out;
  for (size_t i = 0; i < list.size(); ++i)
    if (auto x = make(list[i], fmt::format("{}.{}[{}]", f.where(), key, i))) out.push_back(std::move(x));
  return out;
}

/// \brief The one character of `s` (Metaspace's replacement, Strip's content); Error otherwise.
char32_t single_char(const std::string& s, const std::string& where);

/// \brief GPT-2's byte <-> printable character map used by ByteLevel.
char32_t byte_to_char(uint8_t b);
/// \brief -1 if c is not one of the 256 ByteLevel characters.
int char_to_byte(char32_t c);

}  // namespace mlabench
