// tokenizer.json normalizers.
#include "core/check.h"
#include "core/json_fields.h"
#include "engine/tokenizer/pipeline.h"
#include "engine/tokenizer/regex.h"
#include "engine/tokenizer/unicode.h"

namespace mlabench {

namespace {

// NFC / NFKC through utf8proc. Alignment: output character j takes the alignment of input character j (the
// last one absorbing any shortening); exact for the common case where normalization changes nothing.
class UnicodeNormalizer final : public Normalizer {
 public:
  explicit UnicodeNormalizer(bool compat) : compat_(compat) {}
  void normalize(NormalizedString& s) const override {
    const std::string n = compat_ ? unicode::nfkc(s.text) : unicode::nfc(s.text);
    if (n == s.text) return;
    const size_t n_in = unicode::length(s.text);
    std::vector<char32_t> out;
    for (size_t i = 0; i < n.size();) out.push_back(unicode::next(n, i));
    std::vector<std::pair<char32_t, int>> t;
    for (size_t j = 0; j < out.size(); ++j) {
      int change = j < n_in ? 0 : 1;
      if (j + 1 == out.size() && out.size() < n_in) change = -static_cast<int>(n_in - out.size());
      t.emplace_back(out[j], change);
    }
    s.transform(t, 0);
  }

 private:
  bool compat_;
};

class Lowercase final : public Normalizer {
 public:
  void normalize(NormalizedString& s) const override { s.lowercase(); }
};

class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string p) : p_(std::move(p)) {}
  void normalize(NormalizedString& s) const override {
    if (!s.empty()) s.prepend(p_);
  }

 private:
  std::string p_;
};

class Strip final : public Normalizer {
 public:
  Strip(bool l, bool r) : l_(l), r_(r) {}
  void normalize(NormalizedString& s) const override { s.strip(l_, r_); }

 private:
  bool l_, r_;
};

class Replace final : public Normalizer {
 public:
  Replace(Regex re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
  void normalize(NormalizedString& s) const override { s.replace(re_, content_); }

 private:
  Regex re_;
  std::string content_;
};

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> n) : n_(std::move(n)) {}
  void normalize(NormalizedString& s) const override {
    for (const auto& n : n_) n->normalize(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> n_;
};

}  // namespace

/// A {"String": ...} or {"Regex": ...} pattern object.
Regex make_pattern(const nlohmann::json& j, const std::string& where) {
  MLABENCH_CHECK(j.is_object() && j.size() == 1 && (j.contains("String") || j.contains("Regex")),
                 "{}: pattern must be {{\"String\": ...}} or {{\"Regex\": ...}}, found {}", where, j.dump());
  if (j.contains("String")) {
    MLABENCH_CHECK(j["String"].is_string(), "{}: String pattern must be a string", where);
    return Regex::literal(j["String"].get<std::string>());
  }
  MLABENCH_CHECK(j["Regex"].is_string(), "{}: Regex pattern must be a string", where);
  try {
    return Regex::onig(j["Regex"].get<std::string>());
  } catch (const Error& e) {
    MLABENCH_FAIL("{}: {}", where, e.what());
  }
}

std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  JsonFields f(j, where);
  const std::string type = f.string("type");
  if (type == "NFC") return std::make_unique<UnicodeNormalizer>(false);
  if (type == "NFKC") return std::make_unique<UnicodeNormalizer>(true);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "Prepend") return std::make_unique<Prepend>(f.string("prepend"));
  if (type == "Strip")
    return std::make_unique<Strip>(f.boolean_or("strip_left", true), f.boolean_or("strip_right", true));
  if (type == "Replace")
    return std::make_unique<Replace>(make_pattern(f.raw("pattern"), where + ".pattern"), f.string("content"));
  if (type == "Sequence")
    return std::make_unique<SequenceNormalizer>(make_list<Normalizer>(f, "normalizers", make_normalizer));
  MLABENCH_FAIL(
      "{}: normalizer type \"{}\" is not supported; accepted: NFC, NFKC, Lowercase, Prepend, Replace, "
      "Strip, Sequence",
      where, type);
}

}  // namespace mlabench
