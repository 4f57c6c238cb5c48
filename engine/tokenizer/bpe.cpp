// BPE merging with a binary heap over (rank, position) and a doubly linked list of symbols, the reference's
// algorithm, so ties resolve identically. Words shorter than 256 bytes are cached per thread.
#include "engine/tokenizer/bpe.h"

#include <queue>

#include "core/check.h"
#include "core/json_fields.h"
#include "engine/tokenizer/unicode.h"

namespace mlabench {

std::atomic<uint64_t> BpeModel::next_cache_id_{1};

namespace {

constexpr size_t kCacheMaxWordBytes = 256;
constexpr size_t kCacheCapacity = 100000;

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

struct Symbol {
  int32_t id;
  int32_t prev, next;
  uint32_t len;  // 0 once merged into its left neighbour
};

struct Candidate {
  uint32_t rank;
  uint32_t pos;
  int32_t new_id;
  bool operator<(const Candidate& o) const {  // min-heap on (rank, pos)
    return rank != o.rank ? rank > o.rank : pos > o.pos;
  }
};

struct CacheHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using WordCache = std::unordered_map<std::string, std::vector<int32_t>, CacheHash, std::equal_to<>>;

WordCache& thread_cache(uint64_t id) {
  thread_local std::unordered_map<uint64_t, WordCache> caches;
  return caches[id];
}

}  // namespace

BpeModel::BpeModel(const nlohmann::json& model, const std::string& where) : cache_id_(next_cache_id_++) {
  JsonFields f(model, where);
  if (f.has("type")) {
    const std::string type = f.string("type");
    MLABENCH_CHECK(type == "BPE",
                   "{}: model type \"{}\" is not supported; accepted: BPE (WordPiece, Unigram and "
                   "WordLevel models are not)",
                   where, type);
  }
  if (f.has("dropout")) {
    MLABENCH_CHECK(f.number("dropout") == 0.0, "{}: BPE dropout must be null or 0 for deterministic encoding", where);
  }
  if (f.has("unk_token")) unk_token_ = f.string("unk_token");
  if (f.has("continuing_subword_prefix")) continuing_subword_prefix_ = f.string("continuing_subword_prefix");
  if (f.has("end_of_word_suffix")) end_of_word_suffix_ = f.string("end_of_word_suffix");
  fuse_unk_ = f.boolean_or("fuse_unk", false);
  byte_fallback_ = f.boolean_or("byte_fallback", false);
  ignore_merges_ = f.boolean_or("ignore_merges", false);

  const auto& vocab = f.raw("vocab");
  MLABENCH_CHECK(vocab.is_object(), "{}: 'vocab' must be an object of token -> id", where);
  vocab_.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    MLABENCH_CHECK(
        it.value().is_number_integer() && it.value().get<int64_t>() >= 0 && it.value().get<int64_t>() <= INT32_MAX,
        "{}: vocab['{}'] must be a non-negative integer id", where, it.key());
    const auto id = static_cast<int32_t>(it.value().get<int64_t>());
    vocab_[it.key()] = id;
    vocab_r_[id] = it.key();
    max_id_ = std::max(max_id_, id);
  }
  byte_ids_.assign(256, -1);
  for (int b = 0; b < 256; ++b) {
    auto it = vocab_.find(fmt::format("<0x{:02X}>", b));
    if (it != vocab_.end()) byte_ids_[static_cast<size_t>(b)] = it->second;
  }

  const auto& merges = f.raw("merges");
  MLABENCH_CHECK(merges.is_array(), "{}: 'merges' must be a list", where);
  const size_t prefix_len = continuing_subword_prefix_ ? continuing_subword_prefix_->size() : 0;
  uint32_t rank = 0;
  merges_.reserve(merges.size());
  for (const auto& m : merges) {
    std::string a, b;
    if (m.is_string()) {  // "a b"
      const std::string s = m.get<std::string>();
      if (s.rfind("#version", 0) == 0) continue;
      const size_t sp = s.find(' ');
      MLABENCH_CHECK(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos,
                     "{}: merge {} \"{}\" must be two tokens separated by one space", where, rank + 1, s);
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else {
      MLABENCH_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(),
                     "{}: merge {} must be \"a b\" or [\"a\", \"b\"], found {}", where, rank + 1, m.dump());
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    }
    auto ia = vocab_.find(a), ib = vocab_.find(b);
    MLABENCH_CHECK(ia != vocab_.end() && ib != vocab_.end(), "{}: merge {} uses \"{}\" which is not in the vocabulary",
                   where, rank + 1, ia == vocab_.end() ? a : b);
    const std::string merged = a + (b.size() >= prefix_len ? b.substr(prefix_len) : b);
    auto im = vocab_.find(merged);
    MLABENCH_CHECK(im != vocab_.end(), "{}: merge {} makes \"{}\" which is not in the vocabulary", where, rank + 1,
                   merged);
    merges_[pair_key(ia->second, ib->second)] = {rank, im->second};  // a later duplicate wins, as in the reference
    ++rank;
  }
  if (unk_token_) {
    MLABENCH_CHECK(vocab_.count(*unk_token_), "{}: unk_token \"{}\" is not in the vocabulary", where, *unk_token_);
  }
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  auto it = vocab_r_.find(id);
  return it == vocab_r_.end() ? nullptr : &it->second;
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto it = vocab_.find(word); it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (word.size() >= kCacheMaxWordBytes) {
    merge_word(word, out);
    return;
  }
  WordCache& cache = thread_cache(cache_id_);
  if (auto it = cache.find(word); it != cache.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  std::vector<int32_t> ids;
  merge_word(word, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cache.size() < kCacheCapacity) cache.emplace(std::string(word), std::move(ids));
}

void BpeModel::merge_word(std::string_view w, std::vector<int32_t>& out) const {
  std::vector<Symbol> sym;
  sym.reserve(w.size());
  auto add = [&](int32_t id, uint32_t len) {
    const auto n = static_cast<int32_t>(sym.size());
    sym.push_back({id, n - 1, -1, len});
    if (n > 0) sym[static_cast<size_t>(n - 1)].next = n;
  };
  bool unk = false;  // a pending unknown token: (unk_id, unk_len)
  int32_t unk_id = -1;
  uint32_t unk_len = 0;
  std::string s;
  for (size_t i = 0; i < w.size();) {
    const size_t b = i;
    unicode::next(w, i);
    const bool first = b == 0, last = i == w.size();
    s.assign(w.substr(b, i - b));
    const auto byte_len = static_cast<uint32_t>(i - b);
    if (!first && continuing_subword_prefix_) s = *continuing_subword_prefix_ + s;
    if (last && end_of_word_suffix_) s += *end_of_word_suffix_;
    if (auto it = vocab_.find(s); it != vocab_.end()) {
      if (unk) {
        add(unk_id, unk_len);
        unk = false;
      }
      add(it->second, byte_len);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char c : s) all = all && byte_ids_[c] >= 0;
      if (all) {
        for (unsigned char c : s) add(byte_ids_[c], 1);
        continue;
      }
    }
    if (unk_token_) {
      if (unk && fuse_unk_) {
        unk_len += byte_len;
      } else {
        if (unk) add(unk_id, unk_len);
        unk = true;
        unk_id = vocab_.find(*unk_token_)->second;
        unk_len = byte_len;
      }
    }
  }
  if (unk) add(unk_id, unk_len);

  std::priority_queue<Candidate> queue;
  for (size_t p = 0; p + 1 < sym.size(); ++p) {
    auto it = merges_.find(pair_key(sym[p].id, sym[p + 1].id));
    if (it != merges_.end()) queue.push({it->second.first, static_cast<uint32_t>(p), it->second.second});
  }
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = sym[top.pos];
    if (left.len == 0 || left.next < 0) continue;
    const auto right_pos = static_cast<size_t>(left.next);
    const Symbol right = sym[right_pos];
    auto it = merges_.find(pair_key(left.id, right.id));
    if (it == merges_.end() || it->second.second != top.new_id) continue;  // stale entry
    left.id = top.new_id;
    left.len += right.len;
    left.next = right.next;
    sym[right_pos].len = 0;
    if (right.next >= 0) sym[static_cast<size_t>(right.next)].prev = static_cast<int32_t>(top.pos);
    if (left.prev >= 0) {
      auto m = merges_.find(pair_key(sym[static_cast<size_t>(left.prev)].id, left.id));
      if (m != merges_.end()) queue.push({m->second.first, static_cast<uint32_t>(left.prev), m->second.second});
    }
    if (left.next >= 0) {
      auto m = merges_.find(pair_key(left.id, sym[static_cast<size_t>(left.next)].id));
      if (m != merges_.end()) queue.push({m->second.first, top.pos, m->second.second});
    }
  }
  for (const Symbol& x : sym)
    if (x.len > 0) out.push_back(x.id);
}

}  // namespace mlabench
