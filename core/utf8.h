// UTF-8 decoding, encoding and validation: what every layer that handles model output, dataset text or command
// lines needs (the tokenizer, the code tasks' graders, the CLI's argument check). The Unicode character properties
// the tokenizer pipeline needs are the engine's (engine/tokenizer/unicode.h), in the same namespace.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mlabench::unicode {

constexpr char32_t kReplacement = 0xFFFD;

/// \brief Decodes the code point at s[i] and advances i. Invalid or truncated sequences yield U+FFFD and
/// advance past the maximal invalid subpart (the W3C / WHATWG rule Rust's from_utf8_lossy also follows).
char32_t next(std::string_view s, size_t& i);
/// \brief Appends the UTF-8 encoding of c.
void append(std::string& out, char32_t c);
/// \brief Byte length of the UTF-8 sequence that starts with lead byte b (1 for continuation/invalid bytes).
inline size_t seq_len(unsigned char b) {
  return b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 1;
}
/// \brief True if s is well-formed UTF-8.
bool valid(std::string_view s);
/// \brief Byte offset of the first ill-formed sequence of s; s.size() when s is well-formed.
size_t first_invalid(std::string_view s);
/// \brief s with every ill-formed sequence replaced by U+FFFD (s itself when already valid).
std::string sanitize(std::string_view s);
/// \brief Number of code points.
size_t length(std::string_view s);

}  // namespace mlabench::unicode
