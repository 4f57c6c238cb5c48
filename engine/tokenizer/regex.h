// Regular expressions for tokenizer.json patterns, on PCRE2 (UTF + Unicode properties, JIT).
//
// Hugging Face tokenizers compiles Split / Replace / ByteLevel patterns with Oniguruma's Ruby syntax; the
// translation below makes PCRE2 match exactly what Oniguruma matches where the two differ:
//   \s, \S   White_Space (Oniguruma includes U+0085; PCRE2's UCP \s does not)   -> \p{White_Space}, \P{...}
//   \w, \W   Letter | Mark | Number | Connector_Punctuation (PCRE2: L, N and _)  -> explicit classes
//   \h, \H   hexadecimal digit (PCRE2: horizontal space)                           -> [0-9a-fA-F]
//   \uHHHH   code point escape                                                      -> \x{HHHH}
//   ^, $     always line anchors in Ruby syntax                                     -> PCRE2_MULTILINE
//   (?m)     dot matches newline in Ruby syntax                                     -> (?s)
// find_all() iterates matches like the onig crate's find_iter: an empty match right where the previous match
// ended is skipped by advancing one character.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mlabench {

class Regex {
 public:
  /// \brief Compiles an Oniguruma-syntax pattern. Throws Error naming the pattern and PCRE2's message.
  static Regex onig(const std::string& pattern);
  /// \brief Compiles a pattern already in PCRE2 syntax (UTF, UCP).
  static Regex pcre2(const std::string& pattern);
  /// \brief A literal string (the "String" patterns of tokenizer.json).
  static Regex literal(const std::string& text);

  /// \brief Every match as (begin, end) byte offsets, in order. `s` must be valid UTF-8.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view s) const;
  const std::string& pattern() const { return source_; }

  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  ~Regex();

 private:
  Regex() = default;
  struct Code;
  std::string source_;
  std::string literal_;  // non-empty for literal patterns (matched with find, no PCRE2)
  bool is_literal_ = false;
  std::unique_ptr<Code> code_;
};

/// \brief The Oniguruma -> PCRE2 translation (exposed for tests).
std::string translate_onig_pattern(const std::string& pattern);

}  // namespace mlabench
