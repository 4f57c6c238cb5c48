// The tokenizer.json pipeline: added tokens are cut out of the raw text (non-normalized ones), the rest is
// normalized piece by piece and normalized added tokens cut out of it, then pre-tokenized, then each word
// goes through the BPE model; the post-processor adds special tokens. Mirrors tokenizers' AddedVocabulary
// (leftmost-longest matching; lstrip, rstrip, single_word; normalized forms) and TokenizerImpl::encode.
#include <fstream>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "core/check.h"
#include "core/input_file.h"
#include "core/json_limits.h"
#include "core/json_fields.h"
#include "engine/tokenizer/bpe.h"
#include "engine/tokenizer/hf_tokenizer.h"
#include "engine/tokenizer/pipeline.h"
#include "engine/tokenizer/unicode.h"

namespace mlabench {

namespace {

struct AddedToken {
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
};

// Byte trie over the added tokens' strings; longest match at a position.
class TokenTrie {
 public:
  void add(const std::string& s, int32_t id) {
    uint32_t node = 0;
    for (unsigned char c : s) {
      const uint64_t key = (static_cast<uint64_t>(node) << 8) | c;
      auto it = edges_.find(key);
      if (it == edges_.end()) {
        it = edges_.emplace(key, static_cast<uint32_t>(terminal_.size())).first;
        terminal_.push_back(-1);
      }
      node = it->second;
    }
    terminal_[node] = id;
    first_byte_[static_cast<unsigned char>(s[0])] = true;
  }
  bool empty() const { return terminal_.size() == 1; }
  /// Longest token starting at s[i]: (id, length), or (-1, 0).
  std::pair<int32_t, size_t> longest(std::string_view s, size_t i) const {
    if (!first_byte_[static_cast<unsigned char>(s[i])]) return {-1, 0};
    uint32_t node = 0;
    std::pair<int32_t, size_t> best{-1, 0};
    for (size_t k = i; k < s.size(); ++k) {
      auto it = edges_.find((static_cast<uint64_t>(node) << 8) | static_cast<unsigned char>(s[k]));
      if (it == edges_.end()) break;
      node = it->second;
      if (terminal_[node] >= 0) best = {terminal_[node], k + 1 - i};
    }
    return best;
  }

 private:
  std::unordered_map<uint64_t, uint32_t> edges_;
  std::vector<int32_t> terminal_{-1};
  bool first_byte_[256] = {};
};

// Rust regex \w for the single_word checks.
bool is_word_char_at_end(std::string_view s) {
  if (s.empty()) return false;
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return unicode::is_word(unicode::next(s, i));
}
bool is_word_char_at_start(std::string_view s) {
  if (s.empty()) return false;
  size_t i = 0;
  return unicode::is_word(unicode::next(s, i));
}

class HfTokenizer final : public Tokenizer {
 public:
  HfTokenizer(const nlohmann::json& j, const std::string& where) {
    JsonFields f(j, where);
    MLABENCH_CHECK(f.has("model"), "{}: required field 'model' is missing", where);
    model_ = std::make_unique<BpeModel>(f.raw("model"), where + " model");
    normalizer_ = make_normalizer(j.value("normalizer", nlohmann::json()), where + " normalizer");
    pre_tokenizer_ = make_pre_tokenizer(j.value("pre_tokenizer", nlohmann::json()), where + " pre_tokenizer");
    post_processor_ = make_post_processor(j.value("post_processor", nlohmann::json()), where + " post_processor");
    decoder_ = make_decoder(j.value("decoder", nlohmann::json()), where + " decoder");
    if (f.has("added_tokens")) load_added_tokens(f.raw("added_tokens"), where + " added_tokens");
    track_offsets_ = pre_tokenizer_ && pre_tokenizer_->needs_offsets();
    max_id_ = model_->max_id();
    for (const auto& [id, t] : added_) max_id_ = std::max(max_id_, id);
  }

  std::vector<int32_t> encode(std::string_view raw, bool add_special_tokens) const override {
    const std::string text = unicode::sanitize(raw);
    Pieces pieces = extract_and_normalize(text);
    if (pre_tokenizer_) pre_tokenizer_->pre_tokenize(pieces);
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    for (const Piece& p : pieces) {
      if (p.token >= 0) {
        ids.push_back(p.token);
      } else {
        model_->encode_word(p.s.text, ids);
      }
    }
    if (post_processor_) post_processor_->process(ids, add_special_tokens);
    return ids;
  }

  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (int32_t id : ids) {
      const std::string* t = nullptr;
      if (auto it = added_.find(id); it != added_.end()) {
        auto n = normalized_form_.find(id);
        t = n != normalized_form_.end() ? &n->second : &it->second.content;
      } else {
        t = model_->id_to_token(id);
      }
      if (t == nullptr) continue;
      if (skip_special_tokens && special_contents_.count(*t)) continue;
      tokens.push_back(*t);
    }
    if (!decoder_) {
      std::string out;
      for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
      return out;
    }
    decoder_->decode_chain(tokens);
    std::string out;
    for (const auto& t : tokens) out += t;
    return out;
  }

  int64_t vocab_size() const override { return static_cast<int64_t>(max_id_) + 1; }
  std::optional<int32_t> token_to_id(std::string_view token) const override {
    if (auto it = added_ids_.find(std::string(token)); it != added_ids_.end()) return it->second;
    return model_->token_to_id(token);
  }
  std::optional<std::string> id_to_token(int32_t id) const override {
    if (auto it = added_.find(id); it != added_.end()) return it->second.content;
    if (const std::string* t = model_->id_to_token(id)) return *t;
    return std::nullopt;
  }
  bool is_special(int32_t id) const override {
    auto t = id_to_token(id);
    return t && special_contents_.count(*t);
  }
  std::string kind() const override { return "tokenizer.json (BPE)"; }

 private:
  void load_added_tokens(const nlohmann::json& list, const std::string& where) {
    MLABENCH_CHECK(list.is_array(), "{}: must be a list", where);
    // Ids as tokenizers assigns them on load: the model's id for a string it knows, otherwise the next free id.
    auto next_id = static_cast<int32_t>(model_->vocab_size());
    for (size_t i = 0; i < list.size(); ++i) {
      JsonFields f(list[i], fmt::format("{}[{}]", where, i));
      AddedToken t;
      t.content = f.string("content");
      t.single_word = f.boolean_or("single_word", false);
      t.lstrip = f.boolean_or("lstrip", false);
      t.rstrip = f.boolean_or("rstrip", false);
      t.special = f.boolean_or("special", false);
      t.normalized = f.boolean_or("normalized", !t.special);
      if (t.content.empty()) continue;
      int32_t id;
      if (auto it = added_ids_.find(t.content); it != added_ids_.end()) {
        id = it->second;
      } else if (auto m = model_->token_to_id(t.content)) {
        id = *m;
      } else {
        id = next_id++;
      }
      if (t.normalized && normalizer_) {
        NormalizedString s(t.content);
        normalizer_->normalize(s);
        if (s.text != t.content) {
          normalized_form_[id] = s.text;
        } else {
          normalized_form_.erase(id);
        }
      }
      added_ids_[t.content] = id;
      if (t.special) special_contents_.insert(t.content);
      added_[id] = t;
    }
    for (const auto& [id, t] : added_) {
      if (t.normalized) {
        auto n = normalized_form_.find(id);
        const std::string& pattern = n != normalized_form_.end() ? n->second : t.content;
        if (!pattern.empty()) normalized_trie_.add(pattern, id);
      } else {
        raw_trie_.add(t.content, id);
      }
    }
  }

  // AddedVocabulary::find_matches + split_with_indices for one piece.
  void split_added(NormalizedString s, const TokenTrie& trie, Pieces& out) const {
    const std::string_view text = s.text;
    if (trie.empty() || text.empty()) {
      if (!text.empty()) out.push_back(Piece{std::move(s), -1});
      return;
    }
    size_t start_offset = 0;
    auto emit = [&](size_t b, size_t e, int32_t token) {
      if (e > b) out.push_back(Piece{s.slice(b, e), token});
    };
    for (size_t i = 0; i < text.size();) {
      const auto [id, len] = trie.longest(text, i);
      if (id < 0) {
        i += unicode::seq_len(static_cast<unsigned char>(text[i]));
        continue;
      }
      size_t start = i, stop = i + len;
      i = stop;  // leftmost-longest, non-overlapping, whether or not the match is used
      const AddedToken& t = added_.at(id);
      if (t.single_word) {
        const bool start_space = start == 0 || !is_word_char_at_end(text.substr(0, start));
        const bool stop_space = stop == text.size() || !is_word_char_at_start(text.substr(stop));
        if (!start_space || !stop_space) continue;
      }
      if (t.lstrip) {
        size_t b = start;  // start of the whitespace run that ends at `start`
        while (b > 0) {
          size_t k = b - 1;
          while (k > 0 && (static_cast<unsigned char>(text[k]) & 0xC0) == 0x80) --k;
          size_t kk = k;
          if (!unicode::is_whitespace(unicode::next(text, kk))) break;
          b = k;
        }
        start = std::max(b, start_offset);
      }
      if (t.rstrip) {
        size_t e = stop;
        while (e < text.size()) {
          size_t k = e;
          if (!unicode::is_whitespace(unicode::next(text, k))) break;
          e = k;
        }
        stop = e;
      }
      if (start_offset < start) emit(start_offset, start, -1);
      emit(start, stop, id);
      start_offset = stop;
    }
    if (start_offset < text.size()) emit(start_offset, text.size(), -1);
  }

  Pieces extract_and_normalize(const std::string& text) const {
    Pieces first;
    split_added(NormalizedString(text, 0, track_offsets_), raw_trie_, first);
    Pieces out;
    out.reserve(first.size());
    for (auto& p : first) {
      if (p.token >= 0) {
        out.push_back(std::move(p));
        continue;
      }
      if (normalizer_) normalizer_->normalize(p.s);
      split_added(std::move(p.s), normalized_trie_, out);
    }
    return out;
  }

  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<PostProcessor> post_processor_;
  std::unique_ptr<Decoder> decoder_;
  std::unordered_map<int32_t, AddedToken> added_;
  std::unordered_map<std::string, int32_t> added_ids_;
  std::unordered_map<int32_t, std::string> normalized_form_;
  std::unordered_set<std::string> special_contents_;
  TokenTrie raw_trie_, normalized_trie_;
  int32_t max_id_ = -1;
  bool track_offsets_ = true;
};

}  // namespace

std::unique_ptr<Tokenizer> parse_hf_tokenizer_json(std::string_view json_text, const std::string& where) {
  nlohmann::json j;
  try {
    j = parse_json_bounded(json_text, where);
  } catch (const nlohmann::json::exception& e) {
    MLABENCH_FAIL("{} is not valid JSON: {}", where, e.what());
  }
  return std::make_unique<HfTokenizer>(j, where);
}

std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::string& path) {
  refuse_non_regular_file(path, "tokenizer.json");
  std::ifstream in(path, std::ios::binary);
  MLABENCH_CHECK(in.good(), "cannot read {}", path);
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  return parse_hf_tokenizer_json(text, path);
}

}  // namespace mlabench
