// The GPU engine's scheduler: block allocation with prefix sharing, continuous batching, chunked prefill,
// pre-emption, and the per-step host <-> device traffic (one upload of the step's integers, one download of
// sampled tokens / scores / logits).
#include "engine/gpu/gpu_engine.h"

#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <map>
#include <chrono>
#include <cstring>
#include <deque>
#include <list>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "engine/gpu/gpu_model.h"
#include "engine/kernels/cuda/kernels.h"

namespace mlabench::gpu {

namespace k = mlabench::kernels;

namespace {

// Decode batches up to this size replay CUDA graphs; larger ones route MoE rows through the per-expert path,
// which reads expert counts on the host and so cannot be captured.
constexpr int64_t kGraphMaxBatch = 128;

uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  h *= 0xbf58476d1ce4e5b9ull;
  return h ^ (h >> 31);
}

// Pinned host memory (for the per-step uploads and downloads).
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes) : bytes_(bytes) { MLABENCH_CUDA(cudaMallocHost(&p_, bytes)); }
  ~PinnedBuffer() {
    if (p_) cudaFreeHost(p_);
  }
  PinnedBuffer(PinnedBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  char* get() const { return static_cast<char*>(p_); }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// Cache blocks: a free list, reference counts, and the prefix table (hash of the token prefix ending with a
// full block -> block). A cached block nobody references stays reusable until the allocator needs it (LRU).
class BlockManager {
 public:
  explicit BlockManager(int64_t n) : ref_(static_cast<size_t>(n), 0), hash_(static_cast<size_t>(n), 0) {
    for (int64_t b = n - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
  }
  int64_t available() const { return static_cast<int64_t>(free_.size() + lru_.size()); }

  // A block for new tokens; -1 when none is left.
  int32_t allocate() {
    int32_t b;
    if (!free_.empty()) {
      b = free_.back();
      free_.pop_back();
    } else if (!lru_.empty()) {
      b = lru_.front();
      lru_.pop_front();
      lru_pos_.erase(b);
      table_.erase(hash_[static_cast<size_t>(b)]);
      hash_[static_cast<size_t>(b)] = 0;
    } else {
      return -1;
    }
    ref_[static_cast<size_t>(b)] = 1;
    return b;
  }
  // The cached block holding this prefix hash, now referenced; -1 if none.
  int32_t lookup(uint64_t h) {
    auto it = table_.find(h);
    if (it == table_.end()) return -1;
    const int32_t b = it->second;
    if (ref_[static_cast<size_t>(b)]++ == 0) {
      lru_.erase(lru_pos_.at(b));
      lru_pos_.erase(b);
    }
    return b;
  }
  bool cached(uint64_t h) const { return table_.count(h) != 0; }
  // Publishes a full block's prefix hash (first writer wins).
  void publish(int32_t b, uint64_t h) {
    if (hash_[static_cast<size_t>(b)] != 0 || table_.count(h)) return;
    hash_[static_cast<size_t>(b)] = h;
    table_[h] = b;
  }
  void release(int32_t b) {
    if (--ref_[static_cast<size_t>(b)] > 0) return;
    if (hash_[static_cast<size_t>(b)] != 0) {
      lru_.push_back(b);
      lru_pos_[b] = std::prev(lru_.end());
    } else {
      free_.push_back(b);
    }
  }

 private:
  std::vector<int32_t> ref_;
  std::vector<uint64_t> hash_;
  std::vector<int32_t> free_;
  std::list<int32_t> lru_;
  std::unordered_map<int32_t, std::list<int32_t>::iterator> lru_pos_;
  std::unordered_map<uint64_t, int32_t> table_;
};

struct Seq {
  size_t req = 0;
  std::vector<int32_t> tokens;  // prompt + generated
  int64_t n_prompt = 0;
  int64_t n_cached = 0;  // tokens whose K/V is in the cache
  std::vector<int32_t> blocks;
  std::vector<uint64_t> block_hash;  // prefix hash of each full block of `tokens`
  int64_t published = 0;             // leading blocks already published
  int64_t n_generated = 0;
  uint64_t admit_order = 0;
};

struct RowUse {
  Seq* seq;
  int64_t pos;  // position of the row's token
};

// Device-to-device copy of 1 GiB, best of 5 after a warm-up: (read + write bytes) / time.
double measure_copy_gbps(cudaStream_t stream) {
  const size_t n = size_t{1} << 30;
  DeviceBuffer a(n, "bandwidth probe"), b(n, "bandwidth probe");
  cudaEvent_t e0, e1;
  MLABENCH_CUDA(cudaEventCreate(&e0));
  MLABENCH_CUDA(cudaEventCreate(&e1));
  float best = 1e30f;
  for (int i = 0; i < 6; ++i) {
    MLABENCH_CUDA(cudaEventRecord(e0, stream));
    MLABENCH_CUDA(cudaMemcpyAsync(b.get(), a.get(), n, cudaMemcpyDeviceToDevice, stream));
    MLABENCH_CUDA(cudaEventRecord(e1, stream));
    MLABENCH_CUDA(cudaEventSynchronize(e1));
    float ms = 0;
    MLABENCH_CUDA(cudaEventElapsedTime(&ms, e0, e1));
    if (i > 0) best = std::min(best, ms);  // the first copy warms up
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return 2.0 * static_cast<double>(n) / (static_cast<double>(best) * 1e-3) / 1e9;
}

}  // namespace

struct GpuEngine::Impl {
  ModelConfig config;
  GpuEngineOptions opt;
  cudaStream_t stream = nullptr;
  std::unique_ptr<GpuModel> model;
  KvPools pools;
  std::unique_ptr<BlockManager> blocks;
  GpuEngineStats stats;
  int64_t max_context = 0;
  std::string gpu_name;
  int driver = 0;
  double total_gib = 0;
  double copy_gbps = 0;  // measured at start-up, before the KV cache takes the free memory
  int64_t trash_block = 0;

  // Step staging: the same layout in pinned host memory and on the device.
  PinnedBuffer h_stage, h_out;
  DeviceBuffer d_stage, d_out;

  ~Impl() {
    for (auto& [key, g] : graphs)
      if (g.exec) cudaGraphExecDestroy(g.exec);
    model.reset();
    if (stream) cudaStreamDestroy(stream);
  }

  void init(const ModelConfig& c, const ModelWeights* host, uint64_t seed, const GpuEngineOptions& o) {
    config = c;
    opt = o;
    std::string why;
    MLABENCH_CHECK(cuda_device_available(&why),
                   "--device cuda needs a CUDA GPU: {}. HINT: run on a machine with an NVIDIA GPU, or use --device cpu",
                   why);
    cudaDeviceProp prop{};
    MLABENCH_CUDA(cudaGetDeviceProperties(&prop, 0));
    gpu_name = prop.name;
    total_gib = static_cast<double>(prop.totalGlobalMem) / 1073741824.0;
    cudaDriverGetVersion(&driver);
    MLABENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    max_context = o.max_context > 0 ? o.max_context : std::min<int64_t>(c.max_position_embeddings, 32768);
    MLABENCH_CHECK(max_context <= c.max_position_embeddings,
                   "--max-context {} exceeds the model's max_position_embeddings {}", max_context,
                   c.max_position_embeddings);
    MLABENCH_CHECK(o.block_size >= 1 && o.max_seqs >= 1 && o.max_step_tokens >= o.max_seqs && o.max_logit_rows >= 1,
                   "GPU engine limits: block_size {} max_seqs {} max_step_tokens {} max_logit_rows {}. HINT: "
                   "max_step_tokens must be >= max_seqs",
                   o.block_size, o.max_seqs, o.max_step_tokens, o.max_logit_rows);
    model = make_gpu_model(c, host, seed, o.precision, stream);
    model->allocate_buffers({.max_tokens = o.max_step_tokens, .max_seqs = o.max_seqs,
                             .max_logit_rows = o.max_logit_rows, .max_context = max_context});

    const int64_t max_blocks = (max_context + o.block_size - 1) / o.block_size;
    const size_t stage = static_cast<size_t>(o.max_step_tokens) * 16 + static_cast<size_t>(o.max_seqs) * 48 +
                         static_cast<size_t>(o.max_seqs * max_blocks) * 4 + static_cast<size_t>(o.max_logit_rows) * 40 +
                         4096;
    h_stage = PinnedBuffer(stage);
    d_stage = DeviceBuffer(stage, "step staging");
    const size_t out = static_cast<size_t>(o.max_logit_rows) * 16 + 256;
    h_out = PinnedBuffer(out);
    d_out = DeviceBuffer(out, "step results");

    copy_gbps = measure_copy_gbps(stream);
    // KV cache: what the budget allows, in whole blocks.
    const auto [kw, vw] = model->kv_widths();
    const uint64_t block_bytes = static_cast<uint64_t>(o.block_size) * static_cast<uint64_t>(kw + vw) *
                                 dtype_size(model->cache_dtype()) * static_cast<uint64_t>(c.n_layers);
    size_t free_b = 0, total_b = 0;
    MLABENCH_CUDA(cudaMemGetInfo(&free_b, &total_b));
    double budget = o.kv_cache_gib * 1073741824.0;
    if (budget <= 0) budget = static_cast<double>(free_b) - 1073741824.0;
    MLABENCH_CHECK(budget < static_cast<double>(free_b),
                   "--kv-cache-gib {:.2f} exceeds the {:.2f} GiB free on {} after the weights and buffers. HINT: "
                   "lower --kv-cache-gib, --max-batch or --max-step-tokens",
                   o.kv_cache_gib, free_b / 1073741824.0, gpu_name);
    const auto n_blocks = static_cast<int64_t>(budget / static_cast<double>(block_bytes));
    MLABENCH_CHECK(n_blocks >= max_blocks / 8 + 1 && n_blocks >= 2,
                   "the KV cache budget holds {} blocks of {} tokens ({} bytes each): too few to serve a sequence. "
                   "HINT: raise --kv-cache-gib or lower --max-context",
                   n_blocks, o.block_size, block_bytes);
    pools.n_blocks = n_blocks;
    pools.block_size = o.block_size;
    pools.k_width = kw;
    pools.v_width = vw;
    pools.dtype = model->cache_dtype();
    const size_t slots = static_cast<size_t>(n_blocks * o.block_size), es = dtype_size(pools.dtype);
    for (int64_t l = 0; l < c.n_layers; ++l) {
      pools.k.emplace_back(slots * static_cast<size_t>(kw) * es, "KV cache (K / latent)");
      if (vw > 0) pools.v.emplace_back(slots * static_cast<size_t>(vw) * es, "KV cache (V)");
    }
    if (vw == 0) pools.v.resize(static_cast<size_t>(c.n_layers));
    trash_block = n_blocks - 1;  // padding rows of graphed steps write here; never handed out
    blocks = std::make_unique<BlockManager>(n_blocks - 1);
  }

  // ---- one run ---------------------------------------------------------------------------------------------

  std::vector<SeqResult> run(const std::vector<SeqRequest>& reqs, const std::function<bool(size_t, int32_t)>& on_tok) {
    const auto t0 = std::chrono::steady_clock::now();
    auto now = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
    std::vector<SeqResult> results(reqs.size());
    std::vector<std::unique_ptr<Seq>> all;
    std::deque<Seq*> waiting;
    std::vector<Seq*> running;
    std::unordered_map<uint64_t, int64_t> pending;  // first-block hash -> running sequences computing it
    uint64_t admit_counter = 0;
    const int64_t bs = opt.block_size;

    for (size_t i = 0; i < reqs.size(); ++i) {
      const SeqRequest& r = reqs[i];
      MLABENCH_CHECK(!r.tokens.empty(), "request {} has no tokens", i);
      const int64_t total = static_cast<int64_t>(r.tokens.size()) + r.gen.max_new_tokens;
      MLABENCH_CHECK(total <= max_context,
                     "request {} needs {} positions ({} prompt + {} new) but the GPU engine was set up for {}. HINT: "
                     "raise --max-context (up to max_position_embeddings {})",
                     i, total, r.tokens.size(), r.gen.max_new_tokens, max_context, config.max_position_embeddings);
      MLABENCH_CHECK(!r.all_logits || static_cast<int64_t>(r.tokens.size()) <= opt.max_logit_rows * 64,
                     "request {} asks for {} rows of logits; the limit is {}", i, r.tokens.size(),
                     opt.max_logit_rows * 64);
      auto s = std::make_unique<Seq>();
      s->req = i;
      s->tokens = r.tokens;
      s->n_prompt = static_cast<int64_t>(r.tokens.size());
      if (r.all_logits) results[i].logits.resize(r.tokens.size() * static_cast<size_t>(config.vocab_size));
      waiting.push_back(s.get());
      all.push_back(std::move(s));
    }

    auto hash_blocks = [&](Seq& s) {
      const auto full = static_cast<int64_t>(s.tokens.size()) / bs;
      uint64_t h = s.block_hash.empty() ? 0x51ed270b27a5f4c3ull : s.block_hash.back();
      for (auto b = static_cast<int64_t>(s.block_hash.size()); b < full; ++b) {
        for (int64_t t = 0; t < bs; ++t) h = mix(h, static_cast<uint64_t>(s.tokens[static_cast<size_t>(b * bs + t)]));
        s.block_hash.push_back(h ? h : 1);
      }
    };
    auto release = [&](Seq& s) {
      for (int32_t b : s.blocks) blocks->release(b);
      s.blocks.clear();
      s.n_cached = 0;
      s.published = 0;
      if (!s.block_hash.empty()) {
        auto it = pending.find(s.block_hash[0]);
        if (it != pending.end() && --it->second == 0) pending.erase(it);
      }
    };
    auto finish = [&](Seq& s, const std::string& reason) {
      SeqResult& r = results[s.req];
      r.finish_reason = reason;
      r.done_seconds = now();
      release(s);
      running.erase(std::find(running.begin(), running.end(), &s));
    };
    auto preempt_newest = [&](const Seq* keep) -> bool {
      Seq* victim = nullptr;
      for (Seq* s : running)
        if (s != keep && (!victim || s->admit_order > victim->admit_order)) victim = s;
      if (!victim) return false;
      release(*victim);
      running.erase(std::find(running.begin(), running.end(), victim));
      waiting.push_front(victim);
      ++results[victim->req].preemptions;
      ++stats.preemptions;
      return true;
    };
    // Blocks so that positions [n_cached, n_cached + n) have slots; false if the cache is out of blocks.
    auto reserve = [&](Seq& s, int64_t n) {
      const int64_t need = (s.n_cached + n + bs - 1) / bs - static_cast<int64_t>(s.blocks.size());
      if (need > blocks->available()) return false;
      for (int64_t i = 0; i < need; ++i) s.blocks.push_back(blocks->allocate());
      return true;
    };
    // Prefix sharing at admission: reuse cached full blocks, leaving at least the tokens whose logits we need.
    // Tokens a request may take from the prefix cache: all but the rows whose logits it needs.
    auto share_limit = [&](const Seq& s) -> int64_t {
      const SeqRequest& r = reqs[s.req];
      if (!opt.prefix_sharing || r.all_logits) return 0;
      int64_t limit = static_cast<int64_t>(s.tokens.size()) - 1;
      if (r.score_from >= 1) limit = std::min(limit, r.score_from - 1);
      return limit;
    };
    auto admit = [&](Seq& s) {
      hash_blocks(s);
      const int64_t limit = share_limit(s);
      if (limit >= bs)
        for (int64_t b = 0; (b + 1) * bs <= limit; ++b) {
          const int32_t blk = blocks->lookup(s.block_hash[static_cast<size_t>(b)]);
          if (blk < 0) break;
          s.blocks.push_back(blk);
          s.n_cached += bs;
          s.published = b + 1;
        }
      if (!s.block_hash.empty()) ++pending[s.block_hash[0]];
      s.admit_order = admit_counter++;
      running.push_back(&s);
    };

    while (!waiting.empty() || !running.empty()) {
      // ---- build the step --------------------------------------------------------------------------------
      std::vector<Seq*> decode, prefill;
      std::vector<int64_t> chunk;
      int64_t budget = opt.max_step_tokens, logit_budget = opt.max_logit_rows;
      // Decode rows first (one token each); a full cache pre-empts the newest other sequence.
      std::sort(running.begin(), running.end(), [](Seq* a, Seq* b) { return a->admit_order < b->admit_order; });
      for (size_t i = 0; i < running.size(); ++i) {
        Seq* s = running[i];
        if (static_cast<int64_t>(s->tokens.size()) - s->n_cached != 1) continue;
        while (!reserve(*s, 1))
          if (!preempt_newest(s)) MLABENCH_FAIL("the KV cache cannot hold one sequence of {} tokens. HINT: raise "
                                                "--kv-cache-gib", s->tokens.size());
        decode.push_back(s);
        --budget;
        --logit_budget;
      }
      // Drop decode entries whose sequence was pre-empted after being picked.
      std::erase_if(decode, [&](Seq* s) { return std::find(running.begin(), running.end(), s) == running.end(); });
      budget = opt.max_step_tokens - static_cast<int64_t>(decode.size());
      logit_budget = opt.max_logit_rows - static_cast<int64_t>(decode.size());
      const int64_t key_budget = model->prefill_key_budget();
      int64_t keys_used = 0;
      auto plan_prefill = [&](Seq* s) -> bool {
        const SeqRequest& r = reqs[s->req];
        int64_t n = std::min<int64_t>(static_cast<int64_t>(s->tokens.size()) - s->n_cached, budget);
        if (key_budget > 0) n = std::min(n, key_budget - keys_used - s->n_cached);  // decompressed keys
        // Rows that need logits inside [n_cached, n_cached + n): cap them by the logit budget.
        auto rows_needed = [&](int64_t len) {
          int64_t lo = s->n_cached, hi = s->n_cached + len;  // positions
          int64_t need = 0;
          if (r.all_logits) need = len;
          else if (r.score_from >= 1)
            need = std::max<int64_t>(0, std::min(hi, static_cast<int64_t>(s->tokens.size()) - 1) -
                                            std::max(lo, r.score_from - 1));
          if (hi == static_cast<int64_t>(s->tokens.size()) && r.gen.max_new_tokens > s->n_generated) ++need;
          return need;
        };
        while (n > 0 && rows_needed(n) > logit_budget) n = std::max<int64_t>(0, n - std::max<int64_t>(1, n / 4));
        if (n <= 0) return false;
        while (n > 0 && !reserve(*s, n)) n = n > bs ? n - bs : 0;
        if (n <= 0) return false;
        prefill.push_back(s);
        chunk.push_back(n);
        keys_used += s->n_cached + n;
        budget -= n;
        logit_budget -= rows_needed(n);
        return true;
      };
      for (Seq* s : running)
        if (budget > 0 && static_cast<int64_t>(s->tokens.size()) - s->n_cached > 1) plan_prefill(s);
      for (auto it = waiting.begin(); it != waiting.end() && budget > 0 &&
                                      static_cast<int64_t>(running.size()) < opt.max_seqs;) {
        Seq* s = *it;
        hash_blocks(*s);
        // Another running sequence is computing the same first block: wait for it and share.
        if (share_limit(*s) >= bs && pending.count(s->block_hash[0]) && !blocks->cached(s->block_hash[0])) {
          ++it;
          continue;
        }
        // A request whose prompt came from the prefix cache but for its last token is a one-row prefill chunk.
        admit(*s);
        if (!plan_prefill(s)) {
          release(*s);
          running.pop_back();
          break;
        }
        results[s->req].prefix_tokens_reused += s->n_cached;
        stats.prefix_tokens_reused += s->n_cached;
        it = waiting.erase(it);
      }
      if (decode.empty() && prefill.empty()) {
        MLABENCH_CHECK(running.size() > 0 || waiting.empty(),
                       "the KV cache ({} blocks of {} tokens) cannot start the next request. HINT: raise --kv-cache-gib",
                       pools.n_blocks, bs);
        if (!running.empty() && !preempt_newest(nullptr)) break;
        continue;
      }
      stats.max_running = std::max<int64_t>(stats.max_running, static_cast<int64_t>(running.size()));

      // ---- lay the step out ------------------------------------------------------------------------------
      StepBatch b;
      b.n_decode = static_cast<int32_t>(decode.size());
      std::vector<int32_t> sample_rows, score_rows, full_rows;
      std::vector<int32_t> score_targets;
      std::vector<RowUse> sample_uses, score_uses, full_uses;  // logit rows in this order (what the kernels expect)
      int32_t max_blocks = 0;
      auto add_seq = [&](Seq* s, int64_t n) {
        const SeqRequest& r = reqs[s->req];
        const auto row0 = static_cast<int32_t>(b.tokens.size());
        for (int64_t i = 0; i < n; ++i) {
          const int64_t pos = s->n_cached + i;
          b.tokens.push_back(s->tokens[static_cast<size_t>(pos)]);
          b.positions.push_back(static_cast<int32_t>(pos));
          b.slots.push_back(static_cast<int64_t>(s->blocks[static_cast<size_t>(pos / bs)]) * bs + pos % bs);
          const auto row = row0 + static_cast<int32_t>(i);
          const bool last = pos + 1 == static_cast<int64_t>(s->tokens.size());
          if (r.all_logits && pos < s->n_prompt) {
            full_rows.push_back(row);
            full_uses.push_back({s, pos});
          } else if (r.score_from >= 1 && pos >= r.score_from - 1 && pos + 1 < s->n_prompt) {
            score_rows.push_back(row);
            score_targets.push_back(s->tokens[static_cast<size_t>(pos + 1)]);
            score_uses.push_back({s, pos});
          }
          if (last && r.gen.max_new_tokens > s->n_generated) {
            sample_rows.push_back(row);
            sample_uses.push_back({s, pos});
          }
        }
        b.cu_q.push_back(static_cast<int32_t>(b.tokens.size()));
        b.kv_len.push_back(static_cast<int32_t>(s->n_cached + n));
        max_blocks = std::max(max_blocks, static_cast<int32_t>(s->blocks.size()));
      };
      for (Seq* s : decode) add_seq(s, 1);
      for (size_t i = 0; i < prefill.size(); ++i) add_seq(prefill[i], chunk[i]);
      std::vector<Seq*> order(decode);
      order.insert(order.end(), prefill.begin(), prefill.end());
      // Decode-only steps replay a CUDA graph captured for their shape bucket: the batch is padded to a power
      // of two with rows that write to the reserved trash block, and the block table to a power-of-two width.
      const bool graphed = opt.cuda_graphs && prefill.empty() && score_rows.empty() && full_rows.empty() &&
                           static_cast<int64_t>(decode.size()) <= kGraphMaxBatch &&
                           static_cast<int64_t>(std::bit_ceil(decode.size())) <= std::min(opt.max_seqs, opt.max_logit_rows);
      int32_t n_pad = 0;
      if (graphed) {
        const auto n = static_cast<int32_t>(decode.size());
        n_pad = std::bit_ceil(static_cast<uint32_t>(n)) - n;
        max_blocks = static_cast<int32_t>(std::bit_ceil(static_cast<uint32_t>(max_blocks)));
        for (int32_t i = 0; i < n_pad; ++i) {
          b.tokens.push_back(0);
          b.positions.push_back(0);
          b.slots.push_back(trash_block * bs);
          b.cu_q.push_back(static_cast<int32_t>(b.tokens.size()));
          b.kv_len.push_back(1);
        }
      }
      b.max_blocks = max_blocks;
      b.block_tables.assign(b.kv_len.size() * static_cast<size_t>(max_blocks), static_cast<int32_t>(trash_block));
      for (size_t i = 0; i < order.size(); ++i)
        std::copy(order[i]->blocks.begin(), order[i]->blocks.end(),
                  b.block_tables.begin() + static_cast<std::ptrdiff_t>(i * static_cast<size_t>(max_blocks)));
      b.logit_rows = sample_rows;
      b.logit_rows.insert(b.logit_rows.end(), score_rows.begin(), score_rows.end());
      b.logit_rows.insert(b.logit_rows.end(), full_rows.begin(), full_rows.end());
      for (int32_t i = 0; i < n_pad; ++i) b.logit_rows.push_back(static_cast<int32_t>(decode.size()) + i);

      // ---- upload, forward, sample/score, download ------------------------------------------------------
      DeviceStep d = upload(b, reqs, sample_uses, score_targets);
      if (graphed) {
        d.max_kv_decode = max_blocks * static_cast<int32_t>(bs);  // baked into the graph: the bucket's bound
        replay(d);
      } else {
        model->forward(d, pools);
      }
      const auto ns = static_cast<int64_t>(sample_rows.size()), nsc = static_cast<int64_t>(score_rows.size());
      const int64_t V = config.vocab_size;
      char* dout = d_out.as<char>();
      if (ns > 0)
        k::cuda::sample({.logits = model->logits(), .ld = V, .n_rows = ns, .vocab = V, .temperature = d_temp_,
                         .top_p = d_top_p_, .seed = d_seed_, .step = d_step_,
                         .out = reinterpret_cast<int32_t*>(dout)},
                        stream);
      if (nsc > 0)
        k::cuda::log_softmax_gather({.logits = model->logits() + ns * V, .ld = V, .n_rows = nsc, .vocab = V,
                                     .targets = d_targets_, .logprob = reinterpret_cast<double*>(dout + out_lp_),
                                     .is_greedy = reinterpret_cast<int32_t*>(dout + out_greedy_)},
                                    stream);
      MLABENCH_CUDA(cudaMemcpyAsync(h_out.get(), dout, out_greedy_ + static_cast<size_t>(nsc) * 4,
                                    cudaMemcpyDeviceToHost, stream));
      for (size_t i = 0; i < full_uses.size(); ++i) {
        SeqResult& r = results[full_uses[i].seq->req];
        MLABENCH_CUDA(cudaMemcpyAsync(r.logits.data() + full_uses[i].pos * V,
                                      model->logits() + (ns + nsc + static_cast<int64_t>(i)) * V,
                                      static_cast<size_t>(V) * 4, cudaMemcpyDeviceToHost, stream));
      }
      MLABENCH_CUDA(cudaStreamSynchronize(stream));
      ++stats.steps;
      stats.decode_tokens += static_cast<int64_t>(decode.size());
      stats.prefill_tokens += static_cast<int64_t>(b.tokens.size() - decode.size());

      // ---- advance the sequences -------------------------------------------------------------------------
      for (size_t i = 0; i < order.size(); ++i) {
        Seq* s = order[i];
        s->n_cached += b.cu_q[i + 1] - b.cu_q[i];
        // Publish blocks that are now full, for later requests with the same prefix.
        hash_blocks(*s);
        const int64_t full = std::min<int64_t>(s->n_cached / bs, static_cast<int64_t>(s->block_hash.size()));
        for (; s->published < full; ++s->published)
          blocks->publish(s->blocks[static_cast<size_t>(s->published)],
                          s->block_hash[static_cast<size_t>(s->published)]);
      }
      for (int64_t i = 0; i < nsc; ++i) {
        double lp;
        int32_t greedy;
        std::memcpy(&lp, h_out.get() + out_lp_ + static_cast<size_t>(i) * 8, 8);
        std::memcpy(&greedy, h_out.get() + out_greedy_ + static_cast<size_t>(i) * 4, 4);
        SeqResult& r = results[score_uses[static_cast<size_t>(i)].seq->req];
        r.logprob += lp;
        r.is_greedy = r.is_greedy && greedy != 0;
      }
      std::vector<Seq*> done_now;
      for (int64_t i = 0; i < ns; ++i) {
        Seq* s = sample_uses[static_cast<size_t>(i)].seq;
        int32_t tok;
        std::memcpy(&tok, h_out.get() + static_cast<size_t>(i) * 4, 4);
        SeqResult& r = results[s->req];
        const SeqRequest& rq = reqs[s->req];
        r.tokens.push_back(tok);
        const double t = now();
        if (r.token_seconds.empty()) r.first_token_seconds = t;
        r.token_seconds.push_back(t);
        s->tokens.push_back(tok);
        ++s->n_generated;
        const bool stop_id =
            std::find(rq.gen.stop_token_ids.begin(), rq.gen.stop_token_ids.end(), tok) != rq.gen.stop_token_ids.end();
        if (stop_id) {
          finish(*s, "stop_token");
        } else if (on_tok && on_tok(s->req, tok)) {
          finish(*s, "stop_string");
        } else if (s->n_generated >= rq.gen.max_new_tokens) {
          finish(*s, "length");
        }
      }
      // Sequences with nothing left to generate or score are done once their prompt is in.
      for (Seq* s : order) {
        if (std::find(running.begin(), running.end(), s) == running.end()) continue;
        const SeqRequest& r = reqs[s->req];
        if (s->n_cached >= static_cast<int64_t>(s->tokens.size()) && r.gen.max_new_tokens == 0) finish(*s, "length");
      }
    }
    return results;
  }

  // Decode graphs, keyed by (batch bucket, block-table width). The first step of a shape runs eagerly (it sizes
  // every lazily grown buffer), the second captures, later ones replay.
  struct Graph {
    cudaGraphExec_t exec = nullptr;
  };
  std::map<std::pair<int32_t, int32_t>, Graph> graphs;
  int64_t graph_replays = 0;

  void replay(const DeviceStep& d) {
    const auto key = std::make_pair(d.n_seqs, d.max_blocks);
    auto it = graphs.find(key);
    if (it == graphs.end()) {
      graphs[key] = Graph{};
      model->forward(d, pools);
      return;
    }
    if (!it->second.exec) {
      cudaGraph_t g = nullptr;
      MLABENCH_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
      try {
        model->forward(d, pools);
      } catch (...) {
        cudaStreamEndCapture(stream, &g);
        if (g) cudaGraphDestroy(g);
        throw;
      }
      MLABENCH_CUDA(cudaStreamEndCapture(stream, &g));
      MLABENCH_CUDA(cudaGraphInstantiate(&it->second.exec, g, 0));
      MLABENCH_CUDA(cudaGraphDestroy(g));
    }
    MLABENCH_CUDA(cudaGraphLaunch(it->second.exec, stream));
    ++graph_replays;
  }

  // Packs the step's integers (and the sampling/scoring parameters) into pinned memory, one copy to the device.
  DeviceStep upload(const StepBatch& b, const std::vector<SeqRequest>& reqs, const std::vector<RowUse>& sample_uses,
                    const std::vector<int32_t>& targets) {
    char* h = h_stage.get();
    char* d = d_stage.as<char>();
    size_t at = 0;
    auto put = [&](const void* src, size_t bytes) {
      at = (at + 15) / 16 * 16;
      MLABENCH_ICHECK(at + bytes <= h_stage.bytes(), "step staging overflow: {} + {} > {}", at, bytes,
                      h_stage.bytes());
      std::memcpy(h + at, src, bytes);
      void* dev = d + at;
      at += bytes;
      return dev;
    };
    DeviceStep st;
    st.n_seqs = b.n_seqs();
    st.n_rows = b.n_rows();
    st.n_decode = b.n_decode;
    st.max_blocks = b.max_blocks;
    st.n_logit_rows = static_cast<int32_t>(b.logit_rows.size());
    st.tokens = static_cast<int32_t*>(put(b.tokens.data(), b.tokens.size() * 4));
    st.positions = static_cast<int32_t*>(put(b.positions.data(), b.positions.size() * 4));
    st.slots = static_cast<int64_t*>(put(b.slots.data(), b.slots.size() * 8));
    st.cu_q = static_cast<int32_t*>(put(b.cu_q.data(), b.cu_q.size() * 4));
    st.kv_len = static_cast<int32_t*>(put(b.kv_len.data(), b.kv_len.size() * 4));
    st.block_tables = static_cast<int32_t*>(put(b.block_tables.data(), b.block_tables.size() * 4));
    st.logit_rows = static_cast<int32_t*>(put(b.logit_rows.data(), b.logit_rows.size() * 4));
    std::vector<int32_t> cu_kv{0};
    for (int32_t s = b.n_decode; s < b.n_seqs(); ++s) {
      cu_kv.push_back(cu_kv.back() + b.kv_len[static_cast<size_t>(s)]);
      st.max_q_prefill = std::max(st.max_q_prefill, b.cu_q[static_cast<size_t>(s) + 1] - b.cu_q[static_cast<size_t>(s)]);
      st.max_kv_prefill = std::max(st.max_kv_prefill, b.kv_len[static_cast<size_t>(s)]);
    }
    for (int32_t s = 0; s < b.n_decode; ++s) st.max_kv_decode = std::max(st.max_kv_decode, b.kv_len[static_cast<size_t>(s)]);
    st.prefill_keys = cu_kv.back();
    st.cu_kv = static_cast<int32_t*>(put(cu_kv.data(), cu_kv.size() * 4));
    std::vector<float> temp, top_p;
    std::vector<uint64_t> seed;
    std::vector<int64_t> step;
    for (const RowUse& u : sample_uses) {
      const GenerateOptions& g = reqs[u.seq->req].gen;
      temp.push_back(g.temperature);
      top_p.push_back(g.top_p);
      seed.push_back(g.seed);
      step.push_back(u.seq->n_generated);  // the index of the token being drawn
    }
    d_temp_ = static_cast<float*>(put(temp.data(), temp.size() * 4));
    d_top_p_ = static_cast<float*>(put(top_p.data(), top_p.size() * 4));
    d_seed_ = static_cast<uint64_t*>(put(seed.data(), seed.size() * 8));
    d_step_ = static_cast<int64_t*>(put(step.data(), step.size() * 8));
    d_targets_ = static_cast<int32_t*>(put(targets.data(), targets.size() * 4));
    MLABENCH_CUDA(cudaMemcpyAsync(d, h, at, cudaMemcpyHostToDevice, stream));
    out_lp_ = (static_cast<size_t>(sample_uses.size()) * 4 + 15) / 16 * 16;
    out_greedy_ = out_lp_ + targets.size() * 8;
    return st;
  }

  float* d_temp_ = nullptr;
  float* d_top_p_ = nullptr;
  uint64_t* d_seed_ = nullptr;
  int64_t* d_step_ = nullptr;
  int32_t* d_targets_ = nullptr;
  size_t out_lp_ = 0, out_greedy_ = 0;
};

GpuEngine::GpuEngine() : impl_(std::make_unique<Impl>()) {}
GpuEngine::~GpuEngine() = default;

std::unique_ptr<GpuEngine> GpuEngine::create(const ModelConfig& c, const ModelWeights* host, uint64_t seed,
                                             const GpuEngineOptions& o) {
  std::unique_ptr<GpuEngine> e(new GpuEngine());
  e->impl_->init(c, host, seed, o);
  return e;
}

std::vector<SeqResult> GpuEngine::run(const std::vector<SeqRequest>& requests,
                                      const std::function<bool(size_t, int32_t)>& on_token) {
  return impl_->run(requests, on_token);
}

const GpuEngineStats& GpuEngine::stats() const { return impl_->stats; }
int64_t GpuEngine::kv_cache_tokens() const { return impl_->pools.n_blocks * impl_->pools.block_size; }
uint64_t GpuEngine::kv_cache_bytes() const { return impl_->pools.bytes(); }
uint64_t GpuEngine::weight_bytes() const { return impl_->model->weight_bytes(); }
int64_t GpuEngine::max_context() const { return impl_->max_context; }

double GpuEngine::copy_bandwidth_gbps() { return impl_->copy_gbps; }

std::string GpuEngine::describe_json() const {
  const Impl& m = *impl_;
  nlohmann::ordered_json j;
  j["gpu"] = m.gpu_name;
  j["gpu_memory_gib"] = m.total_gib;
  j["cuda_driver"] = m.driver;
  j["dtype"] = std::string(dtype_name(m.model->dtype()));
  j["precision"] = m.model->precision() == Precision::FLOAT32 ? "f32" : "native";
  j["kv_cache_dtype"] = std::string(dtype_name(m.pools.dtype));
  j["weight_bytes"] = m.model->weight_bytes();
  j["kv_cache"] = {{"blocks", m.pools.n_blocks},
                   {"block_size", m.pools.block_size},
                   {"tokens", m.pools.n_blocks * m.pools.block_size},
                   {"bytes", m.pools.bytes()},
                   {"bytes_per_token", m.pools.n_blocks > 0 ? m.pools.bytes() / static_cast<uint64_t>(
                                                                  m.pools.n_blocks * m.pools.block_size)
                                                            : 0}};
  j["limits"] = {{"max_seqs", m.opt.max_seqs},
                 {"max_step_tokens", m.opt.max_step_tokens},
                 {"max_logit_rows", m.opt.max_logit_rows},
                 {"max_context", m.max_context},
                 {"prefix_sharing", m.opt.prefix_sharing},
                 {"cuda_graphs", m.opt.cuda_graphs}};
  return j.dump();
}

}  // namespace mlabench::gpu
