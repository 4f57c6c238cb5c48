// Internal constructors of the two tokenizer implementations behind mlabench::Tokenizer.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "mlabench/tokenizer.h"

namespace mlabench {

/// \brief tokenizer.json from a file / from text. Throw Error naming the field at fault.
std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::string& path);
std::unique_ptr<Tokenizer> parse_hf_tokenizer_json(std::string_view json_text, const std::string& where);
/// \brief True if `jinja` is one of the published template strings detect_chat_template knows exactly.
bool chat_template_is_exact(std::string_view jinja);
/// \brief A SentencePiece .model file. Throws Error.
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path);

}  // namespace mlabench
