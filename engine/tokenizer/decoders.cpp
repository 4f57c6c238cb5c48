// tokenizer.json decoders and post-processors.
#include <map>

#include "core/check.h"
#include "core/json_fields.h"
#include "engine/tokenizer/pipeline.h"
#include "engine/tokenizer/unicode.h"

namespace mlabench {

namespace {

// Tokens back to bytes through the byte map (a token with any character outside it passes as its own UTF-8),
// then one lossy UTF-8 decode of the whole (ill-formed sequences become U+FFFD).
class ByteLevelDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      const size_t mark = bytes.size();
      bool mapped = true;
      for (size_t i = 0; i < t.size();) {
        const int b = char_to_byte(unicode::next(t, i));
        if (b < 0) {
          mapped = false;
          break;
        }
        bytes += static_cast<char>(b);
      }
      if (!mapped) {
        bytes.resize(mark);
        bytes += t;
      }
    }
    tokens = {unicode::sanitize(bytes)};
  }
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(char32_t replacement, bool prepend) : replacement_(replacement), prepend_(prepend) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t k = 0; k < tokens.size(); ++k) {
      std::string out;
      for (size_t i = 0; i < tokens[k].size();) {
        const char32_t c = unicode::next(tokens[k], i);
        if (c == replacement_) {
          if (!(k == 0 && prepend_)) out += ' ';
        } else {
          unicode::append(out, c);
        }
      }
      tokens[k] = std::move(out);
    }
  }

 private:
  char32_t replacement_;
  bool prepend_;
};

// Runs of <0xXX> tokens become the bytes they name; a run that is not valid UTF-8 becomes one U+FFFD per byte.
class ByteFallbackDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string run;
    auto flush = [&] {
      if (run.empty()) return;
      if (unicode::valid(run)) {
        out.push_back(run);
      } else {
        for (size_t i = 0; i < run.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
      }
      run.clear();
    };
    for (auto& t : tokens) {
      int byte = -1;
      if (t.size() == 6 && t.rfind("<0x", 0) == 0 && t[5] == '>' && std::isxdigit(static_cast<unsigned char>(t[3])) &&
          std::isxdigit(static_cast<unsigned char>(t[4])))
        byte = std::stoi(t.substr(3, 2), nullptr, 16);
      if (byte >= 0) {
        run += static_cast<char>(byte);
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }
};

class FuseDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens = {std::move(all)};
  }
};

// Removes up to `start` leading and `stop` trailing copies of `content` from each token. (The reference panics
// on an empty token when stop > 0; here the token simply stays empty.)
class StripDecoder final : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop) : content_(content), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      std::vector<char32_t> cs;
      for (size_t i = 0; i < t.size();) cs.push_back(unicode::next(t, i));
      size_t b = 0, e = cs.size();
      for (size_t i = 0; i < start_ && i < cs.size() && cs[i] == content_; ++i) b = i + 1;
      for (size_t i = 0; i < stop_ && i < cs.size() && cs[cs.size() - 1 - i] == content_; ++i) e = cs.size() - 1 - i;
      std::string out;
      for (size_t i = b; i < e; ++i) unicode::append(out, cs[i]);
      t = std::move(out);
    }
  }

 private:
  char32_t content_;
  size_t start_, stop_;
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(Regex re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      std::string out;
      size_t last = 0;
      for (const auto& [b, e] : re_.find_all(t)) {
        out.append(t, last, b - last);
        out += content_;
        last = e;
      }
      out.append(t, last, std::string::npos);
      t = std::move(out);
    }
  }

 private:
  Regex re_;
  std::string content_;
};

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> d) : d_(std::move(d)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& d : d_) d->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> d_;
};

class TemplateProcessing final : public PostProcessor {
 public:
  // single: a list of pieces, each the sequence (-1) or the ids of a special token.
  explicit TemplateProcessing(std::vector<std::vector<int32_t>> pieces, std::vector<bool> is_sequence)
      : pieces_(std::move(pieces)), is_sequence_(std::move(is_sequence)) {}
  void process(std::vector<int32_t>& ids, bool add_special_tokens) const override {
    if (!add_special_tokens) return;
    std::vector<int32_t> out;
    for (size_t i = 0; i < pieces_.size(); ++i) {
      if (is_sequence_[i]) {
        out.insert(out.end(), ids.begin(), ids.end());
      } else {
        out.insert(out.end(), pieces_[i].begin(), pieces_[i].end());
      }
    }
    ids = std::move(out);
  }

 private:
  std::vector<std::vector<int32_t>> pieces_;
  std::vector<bool> is_sequence_;
};

class NoopProcessor final : public PostProcessor {
 public:
  void process(std::vector<int32_t>&, bool) const override {}
};

class SequenceProcessor final : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> p) : p_(std::move(p)) {}
  void process(std::vector<int32_t>& ids, bool add) const override {
    for (const auto& p : p_) p->process(ids, add);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> p_;
};

}  // namespace

std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  JsonFields f(j, where);
  const std::string type = f.string("type");
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") {
    const std::string scheme = f.string_or("prepend_scheme", "always");
    const bool prepend = scheme != "never" && f.boolean_or("add_prefix_space", true);
    return std::make_unique<MetaspaceDecoder>(single_char(f.string("replacement"), where + ".replacement"), prepend);
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    const int64_t start = f.integer_or("start", 0), stop = f.integer_or("stop", 0);
    MLABENCH_CHECK(start >= 0 && stop >= 0, "{}: start and stop must be >= 0", where);
    return std::make_unique<StripDecoder>(single_char(f.string("content"), where + ".content"),
                                          static_cast<size_t>(start), static_cast<size_t>(stop));
  }
  if (type == "Replace")
    return std::make_unique<ReplaceDecoder>(make_pattern(f.raw("pattern"), where + ".pattern"), f.string("content"));
  if (type == "Sequence") return std::make_unique<SequenceDecoder>(make_list<Decoder>(f, "decoders", make_decoder));
  MLABENCH_FAIL(
      "{}: decoder type \"{}\" is not supported; accepted: ByteLevel, Metaspace, ByteFallback, Fuse, "
      "Strip, Replace, Sequence",
      where, type);
}

std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  JsonFields f(j, where);
  const std::string type = f.string("type");
  if (type == "ByteLevel") return std::make_unique<NoopProcessor>();  // offsets only
  if (type == "TemplateProcessing") {
    // special_tokens: name -> {id, ids, tokens}
    std::map<std::string, std::vector<int32_t>> specials;
    if (f.has("special_tokens")) {
      const auto& st = f.raw("special_tokens");
      MLABENCH_CHECK(st.is_object(), "{}: special_tokens must be an object", where);
      for (auto it = st.begin(); it != st.end(); ++it) {
        const std::string entry = fmt::format("{}: special_tokens['{}']", where, it.key());
        MLABENCH_CHECK(it.value().is_object() && it.value().contains("ids") && it.value()["ids"].is_array(),
                       "{} needs an 'ids' list. HINT: each special token is {{\"id\": ..., \"ids\": [int, ...]}}",
                       entry);
        std::vector<int32_t> ids;
        for (int64_t id : JsonFields(it.value(), entry).integers_or_empty("ids")) {
          MLABENCH_CHECK(id >= 0 && id <= INT32_MAX, "{}: token id {} is out of range. HINT: ids are 0..2^31-1",
                         entry, id);
          ids.push_back(static_cast<int32_t>(id));
        }
        specials[it.key()] = std::move(ids);
      }
    }
    const auto& single = f.raw("single");
    MLABENCH_CHECK(single.is_array(), "{}: 'single' must be a list of pieces", where);
    std::vector<std::vector<int32_t>> pieces;
    std::vector<bool> is_seq;
    for (const auto& p : single) {
      if (p.is_object() && p.contains("Sequence")) {
        pieces.emplace_back();
        is_seq.push_back(true);
      } else if (p.is_object() && p.contains("SpecialToken")) {
        MLABENCH_CHECK(p["SpecialToken"].is_object(), "{}: template piece {} needs a SpecialToken object", where,
                       p.dump());
        const std::string id = JsonFields(p["SpecialToken"], where + ": a SpecialToken piece").string_or("id", "");
        MLABENCH_CHECK(specials.count(id), "{}: template names special token \"{}\" that special_tokens lacks", where,
                       id);
        pieces.push_back(specials[id]);
        is_seq.push_back(false);
      } else {
        MLABENCH_FAIL("{}: template piece {} is neither Sequence nor SpecialToken", where, p.dump());
      }
    }
    return std::make_unique<TemplateProcessing>(std::move(pieces), std::move(is_seq));
  }
  if (type == "Sequence")
    return std::make_unique<SequenceProcessor>(make_list<PostProcessor>(f, "processors", make_post_processor));
  MLABENCH_FAIL("{}: post_processor type \"{}\" is not supported; accepted: TemplateProcessing, ByteLevel, Sequence",
                where, type);
}

}  // namespace mlabench
