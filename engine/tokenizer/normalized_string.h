// NormalizedString: text being normalized and split, with the alignment of every normalized byte to the
// original text, as Hugging Face tokenizers keeps it. Ids never depend on offsets except in one place
// (Metaspace's prepend_scheme "first" asks whether a piece starts at original offset 0), but that place must
// be right, so normalizers transform through the same alignment rules as the reference.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mlabench {

class Regex;

/// How the pieces around a delimiter are kept when splitting (tokenizer.json "behavior").
enum class SplitBehavior { REMOVED, ISOLATED, MERGED_WITH_PREVIOUS, MERGED_WITH_NEXT, CONTIGUOUS };

struct NormalizedString {
  std::string text;                                  // normalized UTF-8
  std::vector<std::pair<uint32_t, uint32_t>> align;  // per byte of text: original [start, end), piece-relative
  size_t original_shift = 0;                         // this piece's original start, absolute
  bool tracked = true;  // false: no alignment kept (the pipeline never asks for offsets; much faster)
  // The most bytes normalization may grow this text to: kGrowthLimit x the original piece plus kGrowthSlack. Real
  // normalizers stay far below (NFKC's longest expansion is 11x, Metaspace's 3x); a tokenizer.json whose Replace
  // or Prepend expands without bound is refused here, before it exhausts memory. A slice is limited by its own size.
  static constexpr size_t kGrowthLimit = 64, kGrowthSlack = 4096;
  size_t size_limit = kGrowthSlack;

  NormalizedString() = default;
  explicit NormalizedString(std::string_view s, size_t shift = 0, bool track = true);

  bool empty() const { return text.empty(); }
  /// \brief Original start offset of this piece (HF offsets_original().0).
  size_t original_start() const { return original_shift; }

  /// \brief Replaces normalized bytes [b, e) by `chars`, each with a change: 0 replaces the next original
  /// character, +1 inserts, -n replaces and removes n more. `initial_offset` characters are removed first.
  void transform_range(size_t b, size_t e, const std::vector<std::pair<char32_t, int>>& chars, size_t initial_offset);
  void transform(const std::vector<std::pair<char32_t, int>>& chars, size_t initial_offset = 0) {
    transform_range(0, text.size(), chars, initial_offset);
  }
  void prepend(std::string_view s);
  /// \brief Replaces every match of `pattern` by `content`.
  void replace(const Regex& pattern, std::string_view content);
  void lowercase();
  void strip(bool left, bool right);
  /// \brief Bytes [b, e) as a piece of their own.
  NormalizedString slice(size_t b, size_t e) const;

  /// \brief Splits on matches, given as ((begin, end), is_match) covering the text in order.
  std::vector<NormalizedString> split(const std::vector<std::pair<std::pair<size_t, size_t>, bool>>& matches,
                                      SplitBehavior behavior) const;
};

/// \brief HF Pattern::find_matches for a regex: gaps and matches covering s, in order; [((0,0), false)] for "".
std::vector<std::pair<std::pair<size_t, size_t>, bool>> find_matches(const Regex& re, std::string_view s);
/// \brief The same for a character predicate: every matching character is a match of its own.
std::vector<std::pair<std::pair<size_t, size_t>, bool>> find_matches(const std::function<bool(char32_t)>& pred,
                                                                     std::string_view s);
/// \brief Flips every is_match (HF Invert).
void invert(std::vector<std::pair<std::pair<size_t, size_t>, bool>>& matches);

}  // namespace mlabench
