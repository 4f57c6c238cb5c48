// Byte-pair-encoding model of tokenizer.json ("type": "BPE"), with the reference's semantics: a word starts as
// its characters (continuing_subword_prefix on all but the first, end_of_word_suffix on the last); a character
// missing from the vocabulary becomes its <0xXX> byte tokens (byte_fallback) or unk_token (fused if
// fuse_unk), or is dropped when neither applies; merges apply lowest rank first, leftmost among equals;
// ignore_merges returns a word that is itself in the vocabulary as one token.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mlabench {

class BpeModel {
 public:
  /// \brief Builds from the "model" object. Throws Error on a malformed vocabulary or merge list.
  BpeModel(const nlohmann::json& model, const std::string& where);

  /// \brief Appends the ids of one pre-tokenized word.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  const std::string* id_to_token(int32_t id) const;  ///< nullptr if unknown
  size_t vocab_size() const { return vocab_.size(); }
  int32_t max_id() const { return max_id_; }

 private:
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;

  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> vocab_;
  std::unordered_map<int32_t, std::string> vocab_r_;
  std::unordered_map<uint64_t, std::pair<uint32_t, int32_t>> merges_;  // (left, right) -> (rank, merged id)
  std::optional<std::string> unk_token_;
  std::optional<std::string> continuing_subword_prefix_, end_of_word_suffix_;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
  std::vector<int32_t> byte_ids_;  // <0xXX> ids, -1 where absent
  int32_t max_id_ = -1;
  uint64_t cache_id_;  // key of this model's per-thread word cache
  static std::atomic<uint64_t> next_cache_id_;
};

}  // namespace mlabench
