// Alignment bookkeeping, following tokenizers' NormalizedString::transform_range and split.
#include "engine/tokenizer/normalized_string.h"

#include <algorithm>

#include "core/check.h"
#include "engine/tokenizer/regex.h"
#include "engine/tokenizer/unicode.h"

namespace mlabench {

namespace {
void check_growth(size_t new_size, size_t limit, const char* op) {
  MLABENCH_CHECK(new_size <= limit,
                 "tokenizer normalization ({}) would grow a piece to {} bytes, past its limit of {} ({}x its original "
                 "size + {} bytes). HINT: the tokenizer.json's normalizer expands text without bound (a Replace whose "
                 "content is much longer than what it matches, or many of them in a Sequence); fix the normalizer",
                 op, new_size, limit, NormalizedString::kGrowthLimit, NormalizedString::kGrowthSlack);
}
}  // namespace

NormalizedString::NormalizedString(std::string_view s, size_t shift, bool track)
    : text(s), original_shift(shift), tracked(track), size_limit(kGrowthLimit * s.size() + kGrowthSlack) {
  if (!tracked) return;
  align.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t b = i;
    unicode::next(s, i);
    for (size_t k = b; k < i; ++k) align.emplace_back(static_cast<uint32_t>(b), static_cast<uint32_t>(i));
  }
}

void NormalizedString::transform_range(size_t b, size_t e, const std::vector<std::pair<char32_t, int>>& chars,
                                       size_t initial_offset) {
  check_growth(text.size() - (e - b) + chars.size(), size_limit, "a transform");  // >= 1 byte a character
  if (!tracked) {
    std::string out;
    out.reserve(chars.size());
    for (const auto& ch : chars) unicode::append(out, ch.first);
    text.replace(b, e - b, out);
    return;
  }
  // The characters being replaced, in order; consumed as the transformation says.
  std::vector<std::pair<size_t, size_t>> replaced;  // byte ranges within text
  for (size_t i = b; i < e;) {
    const size_t s = i;
    unicode::next(text, i);
    replaced.emplace_back(s, i);
  }
  size_t next_replaced = 0;
  size_t offset = b;
  for (; next_replaced < initial_offset && next_replaced < replaced.size(); ++next_replaced)
    offset += replaced[next_replaced].second - replaced[next_replaced].first;

  std::string out;
  std::vector<std::pair<uint32_t, uint32_t>> out_align;
  for (const auto& [c, change] : chars) {
    std::pair<uint32_t, uint32_t> a;
    if (change > 0) {
      a = offset < 1 ? std::pair<uint32_t, uint32_t>{0, 0} : align[offset - 1];  // inserted: previous alignment
    } else {
      MLABENCH_ICHECK(offset < align.size(), "transform past the end");
      a = align[offset];
    }
    if (change <= 0 && next_replaced < replaced.size()) {
      offset += replaced[next_replaced].second - replaced[next_replaced].first;
      ++next_replaced;
    }
    for (int k = 0; k < -change && next_replaced < replaced.size(); ++k, ++next_replaced)
      offset += replaced[next_replaced].second - replaced[next_replaced].first;
    const size_t before = out.size();
    unicode::append(out, c);
    for (size_t k = before; k < out.size(); ++k) out_align.push_back(a);
  }
  check_growth(text.size() - (e - b) + out.size(), size_limit, "a transform");
  text.replace(b, e - b, out);
  align.erase(align.begin() + static_cast<std::ptrdiff_t>(b), align.begin() + static_cast<std::ptrdiff_t>(e));
  align.insert(align.begin() + static_cast<std::ptrdiff_t>(b), out_align.begin(), out_align.end());
}

void NormalizedString::prepend(std::string_view s) {
  if (text.empty()) return;
  check_growth(text.size() + s.size(), size_limit, "Prepend");
  if (!tracked) {
    text.insert(0, s);
    return;
  }
  size_t i = 0;
  const char32_t first = unicode::next(text, i);
  std::vector<std::pair<char32_t, int>> t;
  size_t k = 0;
  for (size_t j = 0; j < s.size(); ++k) t.emplace_back(unicode::next(s, j), k != 0 ? 1 : 0);
  t.emplace_back(first, 1);
  transform_range(0, i, t, 0);
}

void NormalizedString::replace(const Regex& pattern, std::string_view content) {
  const auto matches = pattern.find_all(text);
  if (matches.empty()) return;
  size_t new_size = text.size();
  for (const auto& [b, e] : matches) new_size = new_size - (e - b) + content.size();
  check_growth(new_size, size_limit, "Replace");
  if (!tracked) {
    std::string out;
    out.reserve(text.size());
    size_t last = 0;
    for (const auto& [b, e] : matches) {
      out.append(text, last, b - last);
      out.append(content);
      last = e;
    }
    out.append(text, last, std::string::npos);
    text = std::move(out);
    return;
  }
  // Rebuild in one pass; a replacement inherits the alignment of the last character it replaces.
  std::string out;
  std::vector<std::pair<uint32_t, uint32_t>> out_align;
  size_t last = 0;
  for (const auto& [b, e] : matches) {
    out.append(text, last, b - last);
    out_align.insert(out_align.end(), align.begin() + static_cast<std::ptrdiff_t>(last),
                     align.begin() + static_cast<std::ptrdiff_t>(b));
    if (!content.empty()) {
      const std::pair<uint32_t, uint32_t> a = e < 1 ? std::pair<uint32_t, uint32_t>{0, 0} : align[e - 1];
      out.append(content);
      out_align.insert(out_align.end(), content.size(), a);
    }
    last = e;
  }
  out.append(text, last, std::string::npos);
  out_align.insert(out_align.end(), align.begin() + static_cast<std::ptrdiff_t>(last), align.end());
  text = std::move(out);
  align = std::move(out_align);
}

void NormalizedString::lowercase() {
  std::vector<std::pair<char32_t, int>> t;
  std::string tmp;
  for (size_t i = 0; i < text.size();) {
    const char32_t c = unicode::next(text, i);
    tmp.clear();
    const int n = unicode::append_lowercase(tmp, c);
    size_t j = 0;
    for (int k = 0; k < n; ++k) t.emplace_back(unicode::next(tmp, j), k > 0 ? 1 : 0);
  }
  transform(t, 0);
}

void NormalizedString::strip(bool left, bool right) {
  std::vector<char32_t> cs;
  for (size_t i = 0; i < text.size();) cs.push_back(unicode::next(text, i));
  size_t lead = 0, trail = 0;
  if (left)
    while (lead < cs.size() && unicode::is_whitespace(cs[lead])) ++lead;
  if (right)
    while (trail < cs.size() - lead && unicode::is_whitespace(cs[cs.size() - 1 - trail])) ++trail;
  if (lead == 0 && trail == 0) return;
  std::vector<std::pair<char32_t, int>> t;
  for (size_t i = lead; i + trail < cs.size(); ++i)
    t.emplace_back(cs[i], i + 1 + trail == cs.size() ? -static_cast<int>(trail) : 0);
  transform(t, lead);
}

NormalizedString NormalizedString::slice(size_t b, size_t e) const {
  NormalizedString r;
  r.text = text.substr(b, e - b);
  r.tracked = tracked;
  r.size_limit = kGrowthLimit * (e - b) + kGrowthSlack;
  if (!tracked) return r;
  const uint32_t o = b < e ? align[b].first : (b < align.size() ? align[b].first : 0);
  r.align.reserve(e - b);
  for (size_t i = b; i < e; ++i) r.align.emplace_back(align[i].first - o, align[i].second - o);
  r.original_shift = original_shift + o;
  return r;
}

std::vector<NormalizedString> NormalizedString::split(
    const std::vector<std::pair<std::pair<size_t, size_t>, bool>>& matches, SplitBehavior behavior) const {
  // (range, remove)
  std::vector<std::pair<std::pair<size_t, size_t>, bool>> splits;
  switch (behavior) {
    case SplitBehavior::ISOLATED:
      for (const auto& m : matches) splits.push_back({m.first, false});
      break;
    case SplitBehavior::REMOVED:
      splits = matches;
      break;
    case SplitBehavior::CONTIGUOUS: {
      bool prev = false;
      for (const auto& [r, is_match] : matches) {
        if (is_match == prev && !splits.empty()) {
          splits.back().first.second = r.second;
        } else {
          splits.push_back({r, false});
        }
        prev = is_match;
      }
      break;
    }
    case SplitBehavior::MERGED_WITH_PREVIOUS: {
      bool prev = false;
      for (const auto& [r, is_match] : matches) {
        if (is_match && !prev && !splits.empty()) {
          splits.back().first.second = r.second;
        } else {
          splits.push_back({r, false});
        }
        prev = is_match;
      }
      break;
    }
    case SplitBehavior::MERGED_WITH_NEXT: {
      bool prev = false;
      for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
        const auto& [r, is_match] = *it;
        if (is_match && !prev && !splits.empty()) {
          splits.back().first.first = r.first;
        } else {
          splits.push_back({r, false});
        }
        prev = is_match;
      }
      std::reverse(splits.begin(), splits.end());
      break;
    }
  }
  std::vector<NormalizedString> out;
  for (const auto& [r, remove] : splits)
    if (!remove && r.second > r.first) out.push_back(slice(r.first, r.second));
  return out;
}

std::vector<std::pair<std::pair<size_t, size_t>, bool>> find_matches(const Regex& re, std::string_view s) {
  std::vector<std::pair<std::pair<size_t, size_t>, bool>> out;
  if (s.empty()) return {{{0, 0}, false}};
  size_t prev = 0;
  for (const auto& [b, e] : re.find_all(s)) {
    if (prev != b) out.push_back({{prev, b}, false});
    out.push_back({{b, e}, true});
    prev = e;
  }
  if (prev != s.size()) out.push_back({{prev, s.size()}, false});
  return out;
}

std::vector<std::pair<std::pair<size_t, size_t>, bool>> find_matches(const std::function<bool(char32_t)>& pred,
                                                                     std::string_view s) {
  std::vector<std::pair<std::pair<size_t, size_t>, bool>> out;
  if (s.empty()) return {{{0, 0}, false}};
  size_t last = 0;
  for (size_t i = 0; i < s.size();) {
    const size_t b = i;
    const char32_t c = unicode::next(s, i);
    if (pred(c)) {
      if (last < b) out.push_back({{last, b}, false});
      out.push_back({{b, i}, true});
      last = i;
    }
  }
  if (last < s.size()) out.push_back({{last, s.size()}, false});
  return out;
}

void invert(std::vector<std::pair<std::pair<size_t, size_t>, bool>>& matches) {
  for (auto& m : matches) m.second = !m.second;
}

}  // namespace mlabench
