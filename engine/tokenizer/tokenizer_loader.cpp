// Tokenizer::load: picks tokenizer.json or tokenizer.model and reads tokenizer_config.json (BOS, EOS, chat
// template; chat_template.jinja beside it also counts, as transformers >= 4.43 writes it).
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/input_file.h"
#include "core/json_limits.h"
#include "engine/tokenizer/hf_tokenizer.h"

namespace fs = std::filesystem;

namespace mlabench {

namespace {

// bos_token / eos_token: a string, an AddedToken object ({"content": ...}) or null (none). Anything else (a
// number, a list) is refused: taking it as "no token" would silently drop BOS from every prompt.
std::string token_string(const nlohmann::json& v, const std::string& key, const fs::path& cfg) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  MLABENCH_FAIL("{}: {} is {} ({}); it must be the token's text, an object with a \"content\" string, or null. "
                "HINT: write the token itself, e.g. \"{}\": \"<s>\"",
                cfg.string(), key, v.type_name(), v.dump().substr(0, 80), key);
}

std::string read_file(const fs::path& p) {
  refuse_non_regular_file(p, "tokenizer file");
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

bool Tokenizer::exists(const std::string& dir) {
  return fs::exists(fs::path(dir) / "tokenizer.json") || fs::exists(fs::path(dir) / "tokenizer.model");
}

Result<std::unique_ptr<Tokenizer>> load_tokenizer_impl(const std::string& dir) {
  try {
    const fs::path root(dir);
    std::unique_ptr<Tokenizer> t;
    if (fs::exists(root / "tokenizer.json")) {
      t = load_hf_tokenizer_json((root / "tokenizer.json").string());
    } else if (fs::exists(root / "tokenizer.model")) {
      t = load_sentencepiece((root / "tokenizer.model").string());
    } else {
      MLABENCH_FAIL(
          "no tokenizer in {}: neither tokenizer.json nor tokenizer.model. HINT: copy the tokenizer files "
          "of the checkpoint into the folder, or pass token ids instead of text",
          dir);
    }
    std::string jinja;
    const fs::path cfg = root / "tokenizer_config.json";
    if (fs::exists(cfg)) {
      nlohmann::json c;
      try {
        c = parse_json_bounded(read_file(cfg), cfg.string());
      } catch (const nlohmann::json::exception& e) {
        MLABENCH_FAIL("{} is not valid JSON: {}", cfg.string(), e.what());
      }
      MLABENCH_CHECK(c.is_object(), "{}: expected a JSON object", cfg.string());
      if (c.contains("bos_token")) t->bos_token_ = token_string(c["bos_token"], "bos_token", cfg);
      if (c.contains("eos_token")) t->eos_token_ = token_string(c["eos_token"], "eos_token", cfg);
      if (c.contains("chat_template") && !c["chat_template"].is_null()) {
        const auto& ct = c["chat_template"];
        const auto bad = [&] {
          MLABENCH_FAIL("{}: chat_template is {}; it must be a Jinja string or a list of {{\"name\", \"template\"}} "
                        "objects with string values. HINT: fix the file, or remove the key to use raw prompts",
                        cfg.string(), ct.type_name());
        };
        if (ct.is_string()) {
          jinja = ct.get<std::string>();
        } else if (ct.is_array()) {  // [{"name": "default", "template": ...}, ...]
          for (const auto& e : ct) {
            if (!e.is_object() || !e.contains("name") || !e["name"].is_string() || !e.contains("template") ||
                !e["template"].is_string())
              bad();
            if (e["name"] == "default") jinja = e["template"].get<std::string>();
          }
        } else {
          bad();
        }
      }
    }
    if (jinja.empty() && fs::exists(root / "chat_template.jinja")) jinja = read_file(root / "chat_template.jinja");
    if (!jinja.empty()) {
      t->chat_template_ = detect_chat_template(jinja);
      t->chat_template_match_ = chat_template_is_exact(jinja)            ? "exact"
                                : t->chat_template_ != ChatTemplate::RAW ? "fingerprint"
                                                                         : "unrecognised";
    }
    return t;
  } catch (const Error& e) {
    return e;
  }
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::load(const std::string& dir) { return load_tokenizer_impl(dir); }

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tok_(tokenizer), skip_special_(skip_special_tokens) {}

// tokenizers' DecodeStream::step: decode a window of recent ids and emit what it adds to the window's prefix,
// unless the text ends in U+FFFD (an incomplete character).
std::string StreamDecoder::step(int32_t id) {
  if (prefix_.empty() && !ids_.empty()) {
    std::string p = tok_.decode(ids_, skip_special_);
    if (!p.ends_with("\xEF\xBF\xBD")) {
      prefix_ = std::move(p);
      prefix_index_ = ids_.size();
    }
  }
  ids_.push_back(id);
  std::string s = tok_.decode(ids_, skip_special_);
  if (s.size() <= prefix_.size() || s.ends_with("\xEF\xBF\xBD") || s.compare(0, prefix_.size(), prefix_) != 0)
    return "";
  std::string fresh = s.substr(prefix_.size());
  const size_t new_prefix_index = ids_.size() - prefix_index_;
  ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(prefix_index_));
  prefix_ = tok_.decode(ids_, skip_special_);
  prefix_index_ = new_prefix_index;
  return fresh;
}

std::string StreamDecoder::flush() {
  const std::string s = tok_.decode(ids_, skip_special_);
  std::string rest =
      s.size() > prefix_.size() && s.compare(0, prefix_.size(), prefix_) == 0 ? s.substr(prefix_.size()) : "";
  ids_.clear();
  prefix_.clear();
  prefix_index_ = 0;
  return rest;
}

}  // namespace mlabench
