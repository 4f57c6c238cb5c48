#define PCRE2_CODE_UNIT_WIDTH 8
#include "engine/tokenizer/regex.h"

#include <pcre2.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "core/check.h"
#include "engine/tokenizer/unicode.h"

namespace mlabench {

namespace {

constexpr const char* kOnigWord = "\\p{L}\\p{M}\\p{N}\\p{Pc}";

// Oniguruma's \p{Name}: a general category (short or long name), a binary property, or a script. PCRE2 >= 10.40
// matches a bare script name against Script_Extensions (so \p{Han} would take U+3002 "。"); Oniguruma uses
// Script, which PCRE2 spells \p{sc:Name}.
std::string translate_property(const std::string& name) {
  static const std::map<std::string, std::string> long_categories = {{"Letter", "L"},
                                                                     {"Uppercase_Letter", "Lu"},
                                                                     {"Lowercase_Letter", "Ll"},
                                                                     {"Titlecase_Letter", "Lt"},
                                                                     {"Modifier_Letter", "Lm"},
                                                                     {"Other_Letter", "Lo"},
                                                                     {"Mark", "M"},
                                                                     {"Combining_Mark", "M"},
                                                                     {"Nonspacing_Mark", "Mn"},
                                                                     {"Spacing_Mark", "Mc"},
                                                                     {"Enclosing_Mark", "Me"},
                                                                     {"Number", "N"},
                                                                     {"Decimal_Number", "Nd"},
                                                                     {"Letter_Number", "Nl"},
                                                                     {"Other_Number", "No"},
                                                                     {"Punctuation", "P"},
                                                                     {"Connector_Punctuation", "Pc"},
                                                                     {"Dash_Punctuation", "Pd"},
                                                                     {"Open_Punctuation", "Ps"},
                                                                     {"Close_Punctuation", "Pe"},
                                                                     {"Initial_Punctuation", "Pi"},
                                                                     {"Final_Punctuation", "Pf"},
                                                                     {"Other_Punctuation", "Po"},
                                                                     {"Symbol", "S"},
                                                                     {"Math_Symbol", "Sm"},
                                                                     {"Currency_Symbol", "Sc"},
                                                                     {"Modifier_Symbol", "Sk"},
                                                                     {"Other_Symbol", "So"},
                                                                     {"Separator", "Z"},
                                                                     {"Space_Separator", "Zs"},
                                                                     {"Line_Separator", "Zl"},
                                                                     {"Paragraph_Separator", "Zp"},
                                                                     {"Other", "C"},
                                                                     {"Control", "Cc"},
                                                                     {"Format", "Cf"},
                                                                     {"Surrogate", "Cs"},
                                                                     {"Private_Use", "Co"},
                                                                     {"Unassigned", "Cn"},
                                                                     {"Alpha", "Alphabetic"},
                                                                     {"Digit", "Nd"},
                                                                     {"Space", "White_Space"},
                                                                     {"Upper", "Uppercase"},
                                                                     {"Lower", "Lowercase"}};
  static const std::set<std::string> keep = {"C",
                                             "Cc",
                                             "Cf",
                                             "Cn",
                                             "Co",
                                             "Cs",
                                             "L",
                                             "Ll",
                                             "Lm",
                                             "Lo",
                                             "Lt",
                                             "Lu",
                                             "L&",
                                             "LC",
                                             "M",
                                             "Mc",
                                             "Me",
                                             "Mn",
                                             "N",
                                             "Nd",
                                             "Nl",
                                             "No",
                                             "P",
                                             "Pc",
                                             "Pd",
                                             "Pe",
                                             "Pf",
                                             "Pi",
                                             "Po",
                                             "Ps",
                                             "S",
                                             "Sc",
                                             "Sk",
                                             "Sm",
                                             "So",
                                             "Z",
                                             "Zl",
                                             "Zp",
                                             "Zs",
                                             "Any",
                                             "Alphabetic",
                                             "White_Space",
                                             "Uppercase",
                                             "Lowercase",
                                             "Join_Control",
                                             "Emoji",
                                             "Emoji_Presentation",
                                             "Extended_Pictographic",
                                             "Ideographic",
                                             "Math",
                                             "Dash",
                                             "Hex_Digit",
                                             "ASCII_Hex_Digit",
                                             "Cased",
                                             "Diacritic"};
  const bool neg = !name.empty() && name[0] == '^';
  const std::string n = neg ? name.substr(1) : name;
  std::string out;
  if (auto it = long_categories.find(n); it != long_categories.end()) {
    out = it->second;
  } else if (keep.count(n) || n.find(':') != std::string::npos || n.find('=') != std::string::npos) {
    out = n;
  } else {
    out = "sc:" + n;
  }
  return (neg ? "^" : "") + out;
}

// Per-thread match data and JIT stack: matching allocates nothing after the first call on a thread.
struct MatchScratch {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  pcre2_match_context* ctx = pcre2_match_context_create(nullptr);
  MatchScratch() { pcre2_jit_stack_assign(ctx, nullptr, stack); }
  ~MatchScratch() {
    pcre2_match_context_free(ctx);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(data);
  }
};

MatchScratch& scratch() {
  thread_local MatchScratch s;
  return s;
}

}  // namespace

struct Regex::Code {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Code() { pcre2_code_free(code); }
};

std::string translate_onig_pattern(const std::string& p) {
  std::string out;
  out.reserve(p.size() + 16);
  int class_depth = 0;  // inside [...]
  for (size_t i = 0; i < p.size(); ++i) {
    const char ch = p[i];
    if (ch == '\\' && i + 1 < p.size()) {
      const char e = p[i + 1];
      ++i;
      switch (e) {
        case 'p':
        case 'P': {
          const size_t close = p.find('}', i + 1);
          if (i + 1 < p.size() && p[i + 1] == '{' && close != std::string::npos) {
            out += std::string("\\") + e + "{" + translate_property(p.substr(i + 2, close - i - 2)) + "}";
            i = close;
          } else {
            out += std::string("\\") + e;  // \pL form: one-letter category, same in PCRE2
          }
          break;
        }
        case 's':
          out += "\\p{White_Space}";
          break;
        case 'S':
          out += "\\P{White_Space}";
          break;
        case 'w':
          out += class_depth ? std::string(kOnigWord) : "[" + std::string(kOnigWord) + "]";
          break;
        case 'W':
          MLABENCH_CHECK(class_depth == 0, "regex \"{}\": \\W inside a character class is not supported", p);
          out += "[^" + std::string(kOnigWord) + "]";
          break;
        case 'h':
          out += class_depth ? "0-9a-fA-F" : "[0-9a-fA-F]";
          break;
        case 'H':
          MLABENCH_CHECK(class_depth == 0, "regex \"{}\": \\H inside a character class is not supported", p);
          out += "[^0-9a-fA-F]";
          break;
        case 'u': {
          const bool hex4 = i + 4 < p.size() && std::all_of(p.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                                                            p.begin() + static_cast<std::ptrdiff_t>(i) + 5, [](char h) {
                                                              return std::isxdigit(static_cast<unsigned char>(h));
                                                            });
          MLABENCH_CHECK(hex4, "regex \"{}\": \\u must be followed by 4 hex digits", p);
          out += "\\x{" + p.substr(i + 1, 4) + "}";
          i += 4;
          break;
        }
        default:
          out += '\\';
          out += e;
      }
      continue;
    }
    if (ch == '[') {
      ++class_depth;
      out += ch;
      // A ']' right after '[' or '[^' is a literal member.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (ch == ']' && class_depth > 0) {
      --class_depth;
      out += ch;
      continue;
    }
    if (ch == '(' && class_depth == 0 && i + 1 < p.size() && p[i + 1] == '?') {
      // Inline options (?imx-imx) or (?imx-imx:...): Ruby's m is PCRE2's s.
      size_t j = i + 2;
      std::string opts;
      while (j < p.size() && (std::isalpha(static_cast<unsigned char>(p[j])) || p[j] == '-')) opts += p[j++];
      if (!opts.empty() && j < p.size() && (p[j] == ')' || p[j] == ':')) {
        for (char& o : opts)
          if (o == 'm') o = 's';
        out += "(?" + opts + p[j];
        i = j;
        continue;
      }
    }
    out += ch;
  }
  return out;
}

Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;
Regex::~Regex() = default;

Regex Regex::pcre2(const std::string& pattern) {
  Regex r;
  r.source_ = pattern;
  r.code_ = std::make_unique<Code>();
  int err = 0;
  PCRE2_SIZE off = 0;
  r.code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE | PCRE2_NO_UTF_CHECK, &err, &off, nullptr);
  if (r.code_->code == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    MLABENCH_FAIL("regex \"{}\" does not compile: {} at offset {}", pattern, reinterpret_cast<const char*>(msg), off);
  }
  r.code_->jit = pcre2_jit_compile(r.code_->code, PCRE2_JIT_COMPLETE) == 0;
  return r;
}

Regex Regex::onig(const std::string& pattern) {
  MLABENCH_CHECK(unicode::valid(pattern), "regex pattern is not valid UTF-8");
  Regex r = pcre2(translate_onig_pattern(pattern));
  r.source_ = pattern;
  return r;
}

Regex Regex::literal(const std::string& text) {
  Regex r;
  r.source_ = text;
  r.literal_ = text;
  r.is_literal_ = true;
  return r;
}

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view s) const {
  std::vector<std::pair<size_t, size_t>> out;
  if (is_literal_) {
    if (literal_.empty()) return out;
    for (size_t pos = s.find(literal_); pos != std::string_view::npos; pos = s.find(literal_, pos + literal_.size()))
      out.emplace_back(pos, pos + literal_.size());
    return out;
  }
  MatchScratch& m = scratch();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t last_end = 0;
  bool have_last = false;
  size_t last_match_end = 0;
  while (last_end <= s.size()) {
    const int rc = code_->jit
                       ? pcre2_jit_match(code_->code, subject, s.size(), last_end, 0, m.data, m.ctx)
                       : pcre2_match(code_->code, subject, s.size(), last_end, PCRE2_NO_UTF_CHECK, m.data, m.ctx);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    MLABENCH_CHECK(rc >= 0, "regex \"{}\" failed on a {}-byte input (PCRE2 error {})", source_, s.size(), rc);
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(m.data);
    const size_t b = ov[0], e = ov[1];
    if (b == e && have_last && last_match_end == e) {
      // The onig crate's rule: no empty match right after the previous match; step one character.
      if (last_end >= s.size()) break;
      last_end += unicode::seq_len(static_cast<unsigned char>(s[last_end]));
      continue;
    }
    out.emplace_back(b, e);
    last_end = e;
    have_last = true;
    last_match_end = e;
  }
  return out;
}

}  // namespace mlabench
