// The Unicode character properties the tokenizer pipeline needs, with the definitions Hugging Face tokenizers
// (Rust std and the regex crate) use: White_Space, Rust's char::is_numeric (Nd|Nl|No), Rust regex's \w
// (Alphabetic|M|Nd|Pc|Join_Control), char::to_lowercase, NFC/NFKC. Category data from utf8proc. The UTF-8 codec
// they build on is core's (core/utf8.h), included here so the tokenizer sees one namespace.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/utf8.h"

namespace mlabench::unicode {

bool is_whitespace(char32_t c);  // Unicode White_Space (Rust char::is_whitespace, regex \s)
bool is_numeric(char32_t c);     // general category N* (Rust char::is_numeric)
bool is_word(char32_t c);        // Rust regex \w: Alphabetic, marks, Nd, Pc, Join_Control
/// \brief Full lowercase mapping (Rust char::to_lowercase), appended as UTF-8; returns the number of chars.
int append_lowercase(std::string& out, char32_t c);

/// \brief NFC / NFKC of a valid UTF-8 string.
std::string nfc(std::string_view s);
std::string nfkc(std::string_view s);

}  // namespace mlabench::unicode
