// tokenizer.json pre-tokenizers. Each splits the pieces that are not yet tokens; empty pieces are dropped,
// as PreTokenizedString::split does.
#include <algorithm>
#include <array>

#include "core/check.h"
#include "core/json_fields.h"
#include "engine/tokenizer/pipeline.h"
#include "engine/tokenizer/unicode.h"

namespace mlabench {

namespace {

template <class F>
void split_pieces(Pieces& pieces, F&& fn) {
  Pieces out;
  out.reserve(pieces.size());
  for (auto& p : pieces) {
    if (p.token >= 0) {
      out.push_back(std::move(p));
      continue;
    }
    for (auto& s : fn(std::move(p.s)))
      if (!s.empty()) out.push_back(Piece{std::move(s), -1});
  }
  pieces = std::move(out);
}

struct ByteTables {
  std::array<char32_t, 256> to_char{};
  std::array<std::string, 256> to_utf8{};
  ByteTables() {
    std::vector<int> bs;
    for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
    for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
    for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
    std::array<bool, 256> direct{};
    for (int b : bs) direct[static_cast<size_t>(b)] = true;
    int n = 0;
    for (int b = 0; b < 256; ++b)
      to_char[static_cast<size_t>(b)] =
          direct[static_cast<size_t>(b)] ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
    for (int b = 0; b < 256; ++b) unicode::append(to_utf8[static_cast<size_t>(b)], to_char[static_cast<size_t>(b)]);
  }
};
const ByteTables& byte_tables() {
  static const ByteTables t;
  return t;
}

// GPT-2's pre-tokenization regex, as ByteLevel uses it (Oniguruma syntax).
const Regex& byte_level_regex() {
  static const Regex re = Regex::onig(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)");
  return re;
}

class Split final : public PreTokenizer {
 public:
  Split(Regex re, SplitBehavior b, bool invert) : re_(std::move(re)), behavior_(b), invert_(invert) {}
  void pre_tokenize(Pieces& pieces) const override {
    split_pieces(pieces, [&](NormalizedString s) {
      auto m = find_matches(re_, s.text);
      if (invert_) invert(m);
      return s.split(m, behavior_);
    });
  }

 private:
  Regex re_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevel final : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex) : add_prefix_space_(add_prefix_space), use_regex_(use_regex) {}
  void pre_tokenize(Pieces& pieces) const override {
    split_pieces(pieces, [&](NormalizedString s) {
      if (add_prefix_space_ && s.text.rfind(' ', 0) != 0) s.prepend(" ");
      if (!use_regex_) return std::vector<NormalizedString>{std::move(s)};
      return s.split(find_matches(byte_level_regex(), s.text), SplitBehavior::ISOLATED);
    });
    const ByteTables& t = byte_tables();
    for (auto& p : pieces) {
      if (p.token >= 0) continue;
      if (!p.s.tracked) {  // the byte map without alignment: table lookups only
        std::string out;
        out.reserve(p.s.text.size() * 2);
        for (unsigned char c : p.s.text) out += t.to_utf8[c];
        p.s.text = std::move(out);
        continue;
      }
      std::vector<std::pair<char32_t, int>> chars;
      chars.reserve(p.s.text.size());
      for (size_t i = 0; i < p.s.text.size();) {
        const size_t b = i;
        unicode::next(p.s.text, i);
        for (size_t k = b; k < i; ++k) chars.emplace_back(t.to_char[static_cast<uint8_t>(p.s.text[k])], k > b ? 1 : 0);
      }
      p.s.transform(chars, 0);
    }
  }

 private:
  bool add_prefix_space_, use_regex_;
};

class Digits final : public PreTokenizer {
 public:
  explicit Digits(bool individual) : individual_(individual) {}
  void pre_tokenize(Pieces& pieces) const override {
    split_pieces(pieces, [&](NormalizedString s) {
      return s.split(find_matches(unicode::is_numeric, s.text),
                     individual_ ? SplitBehavior::ISOLATED : SplitBehavior::CONTIGUOUS);
    });
  }

 private:
  bool individual_;
};

enum class PrependScheme { FIRST, NEVER, ALWAYS };

class Metaspace final : public PreTokenizer {
 public:
  Metaspace(char32_t replacement, PrependScheme scheme, bool split)
      : replacement_(replacement), scheme_(scheme), split_(split) {
    unicode::append(rep_, replacement);
  }
  bool needs_offsets() const override { return scheme_ == PrependScheme::FIRST; }
  void pre_tokenize(Pieces& pieces) const override {
    static const Regex space = Regex::literal(" ");
    split_pieces(pieces, [&](NormalizedString s) {
      s.replace(space, rep_);
      const bool starts = s.text.rfind(rep_, 0) == 0;
      if (scheme_ == PrependScheme::ALWAYS && !starts) s.prepend(rep_);
      if (scheme_ == PrependScheme::FIRST && !starts && s.original_start() == 0) s.prepend(rep_);
      if (!split_) return std::vector<NormalizedString>{std::move(s)};
      return s.split(find_matches([this](char32_t c) { return c == replacement_; }, s.text),
                     SplitBehavior::MERGED_WITH_NEXT);
    });
  }

 private:
  char32_t replacement_;
  std::string rep_;
  PrependScheme scheme_;
  bool split_;
};

// \w+|[^\w\s]+ with the Rust regex crate's \w (Alphabetic, marks, Nd, Pc, Join_Control); whitespace removed.
class Whitespace final : public PreTokenizer {
 public:
  void pre_tokenize(Pieces& pieces) const override {
    static const Regex re = Regex::pcre2(
        "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]+|"
        "[^\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}\\p{White_Space}]+");
    split_pieces(pieces, [&](NormalizedString s) {
      auto m = find_matches(re, s.text);
      invert(m);
      return s.split(m, SplitBehavior::REMOVED);
    });
  }
};

class WhitespaceSplit final : public PreTokenizer {
 public:
  void pre_tokenize(Pieces& pieces) const override {
    split_pieces(pieces, [&](NormalizedString s) {
      return s.split(find_matches(unicode::is_whitespace, s.text), SplitBehavior::REMOVED);
    });
  }
};

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> p) : p_(std::move(p)) {}
  bool needs_offsets() const override {
    return std::any_of(p_.begin(), p_.end(), [](const auto& p) { return p->needs_offsets(); });
  }
  void pre_tokenize(Pieces& pieces) const override {
    for (const auto& p : p_) p->pre_tokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> p_;
};

PrependScheme parse_scheme(const JsonFields& f) {
  const std::string s = f.string_or("prepend_scheme", "always");
  if (s == "first") return PrependScheme::FIRST;
  if (s == "never") return PrependScheme::NEVER;
  MLABENCH_CHECK(s == "always", "{}: prepend_scheme \"{}\"; accepted: always, first, never", f.where(), s);
  // Old files say add_prefix_space: false instead.
  if (f.has("add_prefix_space") && !f.boolean_or("add_prefix_space", true)) return PrependScheme::NEVER;
  return PrependScheme::ALWAYS;
}

}  // namespace

char32_t single_char(const std::string& s, const std::string& where) {
  size_t i = 0;
  MLABENCH_CHECK(!s.empty(), "{}: must be one character", where);
  const char32_t c = unicode::next(s, i);
  MLABENCH_CHECK(i == s.size(), "{}: \"{}\" must be one character", where, s);
  return c;
}

char32_t byte_to_char(uint8_t b) { return byte_tables().to_char[b]; }

int char_to_byte(char32_t c) {
  static const std::array<int, 324> inverse = [] {
    std::array<int, 324> inv{};
    inv.fill(-1);
    for (int b = 0; b < 256; ++b) inv[byte_tables().to_char[static_cast<size_t>(b)]] = b;
    return inv;
  }();
  return c < inverse.size() ? inverse[c] : -1;
}

SplitBehavior parse_split_behavior(const std::string& s, const std::string& where) {
  if (s == "Removed") return SplitBehavior::REMOVED;
  if (s == "Isolated") return SplitBehavior::ISOLATED;
  if (s == "MergedWithPrevious") return SplitBehavior::MERGED_WITH_PREVIOUS;
  if (s == "MergedWithNext") return SplitBehavior::MERGED_WITH_NEXT;
  if (s == "Contiguous") return SplitBehavior::CONTIGUOUS;
  MLABENCH_FAIL("{}: behavior \"{}\"; accepted: Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous",
                where, s);
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  JsonFields f(j, where);
  const std::string type = f.string("type");
  if (type == "Split")
    return std::make_unique<Split>(make_pattern(f.raw("pattern"), where + ".pattern"),
                                   parse_split_behavior(f.string("behavior"), where), f.boolean_or("invert", false));
  if (type == "ByteLevel")
    return std::make_unique<ByteLevel>(f.boolean_or("add_prefix_space", true), f.boolean_or("use_regex", true));
  if (type == "Digits") return std::make_unique<Digits>(f.boolean_or("individual_digits", false));
  if (type == "Metaspace")
    return std::make_unique<Metaspace>(single_char(f.string("replacement"), where + ".replacement"), parse_scheme(f),
                                       f.boolean_or("split", true));
  if (type == "Whitespace") return std::make_unique<Whitespace>();
  if (type == "WhitespaceSplit") return std::make_unique<WhitespaceSplit>();
  if (type == "Sequence")
    return std::make_unique<SequencePreTokenizer>(make_list<PreTokenizer>(f, "pretokenizers", make_pre_tokenizer));
  MLABENCH_FAIL(
      "{}: pre_tokenizer type \"{}\" is not supported; accepted: Split, ByteLevel, Digits, Metaspace, "
      "Whitespace, WhitespaceSplit, Sequence",
      where, type);
}

}  // namespace mlabench
