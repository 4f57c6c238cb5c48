#include "engine/parallel/sharded_cpu.h"

#include <fmt/format.h>

#include <cstring>
#include <utility>

#include "core/check.h"
#include "engine/core/fp8.h"
#include "engine/model/cpu_model.h"
#include "engine/parallel/host_collectives.h"

namespace mlabench::parallel {
namespace {

TensorView rows_of(const TensorView& t, Range r) { return r.size() == t.shape[0] ? t : t.slice_rows(r.begin, r.size()); }

// Columns [cols) of a 2-D tensor: a copy (rows of a row-major matrix are strided in its columns).
TensorView columns_of(const TensorView& t, Range cols, std::vector<std::vector<uint64_t>>& owned) {
  MLABENCH_ICHECK(t.shape.size() == 2 && cols.begin >= 0 && cols.end <= t.shape[1], "columns {}-{} of a {} tensor",
                  cols.begin, cols.end, shape_str(t.shape));
  if (cols.begin == 0 && cols.end == t.shape[1]) return t;
  // FP8: the slice keeps the whole matrix's scale blocks and the activations' 1 x 128 groups only where it starts
  // and ends on the 128 grid (its grid is then a column offset into the whole one, rows scale_ld apart).
  const bool fp8 = t.dtype == DType::F8_E4M3;
  MLABENCH_CHECK(!fp8 || (cols.begin % kFp8Block == 0 && (cols.end % kFp8Block == 0 || cols.end == t.shape[1])),
                 "a rank's columns {}-{} of an FP8 [{} x {}] matrix cut its 128 x 128 scale blocks (and the "
                 "activations' 1 x 128 groups), so the split would not compute the unsharded model. HINT: choose "
                 "--tp/--ep so that every rank's share of the expert and FFN widths and of heads x head size is a "
                 "multiple of 128 (--ep keeps routed experts whole), or run FP8 unsplit",
                 cols.begin, cols.end, t.shape[0], t.shape[1]);
  if (t.random) {  // random weights not generated yet: the block's place in the whole tensor, no copy
    TensorView v = t;
    v.shape = {t.shape[0], cols.size()};
    if (t.random->cols == 0) v.random->ld = t.shape[1];
    v.random->first += cols.begin;
    v.random->cols = cols.size();
    return v;
  }
  const size_t es = dtype_size(t.dtype), width = static_cast<size_t>(cols.size()) * es;
  const auto rows = static_cast<size_t>(t.shape[0]);
  owned.emplace_back((rows * width + 7) / 8);
  auto* dst = reinterpret_cast<char*>(owned.back().data());
  const auto* src = static_cast<const char*>(t.data);
  for (size_t r = 0; r < rows; ++r)
    std::memcpy(dst + r * width, src + (r * static_cast<size_t>(t.shape[1]) + static_cast<size_t>(cols.begin)) * es,
                width);
  TensorView v = t;
  v.shape = {t.shape[0], cols.size()};
  v.data = dst;
  if (fp8) v.scale_inv = t.scale_inv + cols.begin / kFp8Block;
  return v;
}

// gate/up by rows, down by columns: the MLP over intermediate columns [cols).
MlpWeights mlp_columns(const MlpWeights& m, Range cols, std::vector<std::vector<uint64_t>>& owned) {
  return {rows_of(m.gate, cols), rows_of(m.up, cols), columns_of(m.down, cols, owned)};
}

Range scaled(Range r, int64_t by) { return {r.begin * by, r.end * by}; }

}  // namespace

RankModel shard_model(const ModelConfig& c, const ModelWeights& w, const ShardPlan& s) {
  RankModel m;
  m.config = c;
  ModelConfig& rc = m.config;
  rc.n_heads = s.heads.size();
  rc.n_kv_heads = c.is_mla() ? rc.n_heads : s.kv_heads.size();
  if (s.dense_columns.size() > 0) rc.intermediate_size = s.dense_columns.size();
  if (c.n_routed_experts > 0) rc.moe_intermediate_size = s.expert_columns.size();
  ModelWeights& rw = m.weights;
  auto& owned = rw.owned;
  rw.layout = w.layout;
  rw.source = w.source + fmt::format(" (rank {} of {})", s.rank, s.world);
  rw.embed = w.embed;  // whole on every rank
  rw.lm_head = rows_of(w.lm_head, s.vocab);
  rw.final_norm = w.final_norm;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = w.layers[static_cast<size_t>(l)];
    LayerWeights R;
    R.input_norm = L.input_norm, R.post_norm = L.post_norm;
    if (c.is_mla()) {
      const int64_t qk = c.qk_head_dim(), nope_v = c.qk_nope_head_dim + c.v_head_dim;
      if (c.q_lora_rank > 0) {
        R.q_a_proj = L.q_a_proj, R.q_a_norm = L.q_a_norm;
        R.q_b_proj = rows_of(L.q_b_proj, scaled(s.heads, qk));  // [heads * qk, q_lora]
      } else {
        R.q_proj = rows_of(L.q_proj, scaled(s.heads, qk));  // [heads * qk, H]
      }
      R.kv_a_proj = L.kv_a_proj, R.kv_a_norm = L.kv_a_norm;        // the latent: whole
      R.kv_b_proj = rows_of(L.kv_b_proj, scaled(s.heads, nope_v));  // [heads * (nope + v), kv_lora]
      R.o_proj = columns_of(L.o_proj, scaled(s.heads, c.v_head_dim), owned);  // [H, heads * v]
    } else {
      const int64_t hd = c.head_dim;
      R.q_proj = rows_of(L.q_proj, scaled(s.heads, hd));
      R.k_proj = rows_of(L.k_proj, scaled(s.kv_heads, hd));
      R.v_proj = rows_of(L.v_proj, scaled(s.kv_heads, hd));
      R.o_proj = columns_of(L.o_proj, scaled(s.heads, hd), owned);
    }
    R.is_moe = L.is_moe;
    if (!L.is_moe) {
      R.mlp = mlp_columns(L.mlp, s.dense_columns, owned);
    } else {
      R.router = L.router;  // whole: every rank routes every token the same way
      R.experts.resize(L.experts.size());
      for (int64_t e = s.experts.begin; e < s.experts.end; ++e)
        R.experts[static_cast<size_t>(e)] = mlp_columns(L.experts[static_cast<size_t>(e)], s.expert_columns, owned);
      R.held_experts_begin = s.experts.begin, R.held_experts_end = s.experts.end;
      R.has_shared = L.has_shared;
      if (L.has_shared) R.shared = mlp_columns(L.shared, s.shared_columns, owned);
    }
    rw.layers.push_back(std::move(R));
  }
  return m;
}

namespace {

// Prefill of every row of `prompt`, then a decode step a token of `continuation`: logits [rows, vocab].
void run_model(CpuModel& model, std::span<const int32_t> prompt, std::span<const int32_t> continuation, float* out) {
  const int64_t V = model.config().vocab_size;
  CpuKvCache cache = model.new_cache();
  model.forward(prompt, cache, out, false);
  for (size_t i = 0; i < continuation.size(); ++i)
    model.forward(continuation.subspan(i, 1), cache, out + (static_cast<int64_t>(prompt.size() + i)) * V, true);
}

}  // namespace

std::vector<float> unsharded_cpu_logits(const ModelConfig& c, const ModelWeights& w, std::span<const int32_t> prompt,
                                        std::span<const int32_t> continuation, MlaAttention mode) {
  RankModel whole = shard_model(c, w, plan_shards(c, ParallelConfig{}, 0));  // views of w
  CpuModel model(std::move(whole.config), std::move(whole.weights), mode);
  std::vector<float> out((prompt.size() + continuation.size()) * static_cast<size_t>(c.vocab_size));
  run_model(model, prompt, continuation, out.data());
  return out;
}

namespace {

// The output head's all-gather: every rank's [rows, its vocabulary rows] into [rows, vocab].
CpuRankHooks head_hooks(HostGroup& group, int rank, int64_t V) {
  const int world = group.size();
  std::vector<Range> vocab(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) vocab[static_cast<size_t>(r)] = split_range(V, world, r);
  CpuRankHooks h;
  h.gather_logits = [&group, rank, V, vocab](const float* local, int64_t rows, int64_t local_vocab, float* logits) {
    const int world = group.size();
    std::vector<int64_t> counts(static_cast<size_t>(world));
    for (int r = 0; r < world; ++r) counts[static_cast<size_t>(r)] = rows * vocab[static_cast<size_t>(r)].size();
    MLABENCH_ICHECK(local_vocab == vocab[static_cast<size_t>(rank)].size(), "rank {}: {} vocabulary rows", rank,
                    local_vocab);
    std::vector<float> all(static_cast<size_t>(rows * V));
    group.all_gather(rank, local, counts, all.data());
    // [rank 0: rows x V0 | rank 1: rows x V1 | ...] -> [rows, V]
    const float* from = all.data();
    for (int r = 0; r < world; ++r) {
      const Range vr = vocab[static_cast<size_t>(r)];
      for (int64_t i = 0; i < rows; ++i)
        std::memcpy(logits + i * V + vr.begin, from + i * vr.size(), static_cast<size_t>(vr.size()) * sizeof(float));
      from += rows * vr.size();
    }
  };
  return h;
}

}  // namespace

CpuRankHooks tensor_parallel_hooks(HostGroup& group, int rank, int64_t vocab) {
  CpuRankHooks hooks = head_hooks(group, rank, vocab);
  hooks.all_reduce = [&group, rank](float* delta, int64_t n) { group.all_reduce_sum(rank, delta, delta, n); };
  return hooks;
}

CpuRankHooks dp_attention_hooks(HostGroup& group, int rank, int64_t vocab) {
  CpuRankHooks hooks = head_hooks(group, rank, vocab);
  // Every rank's row count first, then the rows.
  hooks.gather_rows = [&group, rank](const float* mine, int64_t rows, int64_t width, std::vector<float>& all) {
    const std::vector<int64_t> ns = group.all_gather_counts(rank, rows);
    std::vector<int64_t> counts(ns.size());
    int64_t first = 0, total = 0;
    for (int r = 0; r < group.size(); ++r) {
      const int64_t rr = ns[static_cast<size_t>(r)];
      counts[static_cast<size_t>(r)] = rr * width;
      if (r < rank) first += rr;
      total += rr;
    }
    all.resize(static_cast<size_t>(total * width));
    group.all_gather(rank, mine, counts, all.data());
    return first;
  };
  hooks.reduce_rows = [&group, rank](float* all, int64_t all_rows, int64_t width, int64_t first, int64_t rows,
                                     float* mine) {
    group.all_reduce_sum(rank, all, all, all_rows * width);
    if (rows > 0) std::memcpy(mine, all + first * width, static_cast<size_t>(rows * width) * sizeof(float));
  };
  return hooks;
}

std::vector<float> sharded_cpu_logits(const ModelConfig& c, const ModelWeights& w, const ParallelConfig& p,
                                      std::span<const int32_t> prompt, std::span<const int32_t> continuation,
                                      MlaAttention mode) {
  MLABENCH_CHECK(!p.dp_attention,
                 "sharded CPU forward: --dp-attention splits sequences over ranks, and this forward runs one "
                 "sequence. HINT: compare --tp N (with or without --ep N) here, and DP attention with "
                 "sharded_cpu_logits_dp (a sequence a rank)");
  const int world = p.world();
  const int64_t V = c.vocab_size;
  std::vector<float> out((prompt.size() + continuation.size()) * static_cast<size_t>(V));
  HostGroup group(world);
  run_ranks(group, [&](int rank) {
    RankModel rm = shard_model(c, w, plan_shards(c, p, rank));
    CpuModel model(std::move(rm.config), std::move(rm.weights), mode);
    model.set_rank_hooks(tensor_parallel_hooks(group, rank, V));
    // Every rank computes the same logits; rank 0's are kept.
    std::vector<float> mine(out.size());
    run_model(model, prompt, continuation, rank == 0 ? out.data() : mine.data());
  });
  return out;
}

std::vector<std::vector<float>> sharded_cpu_logits_dp(const ModelConfig& c, const ModelWeights& w,
                                                      const ParallelConfig& p,
                                                      std::span<const std::vector<int32_t>> prompts,
                                                      std::span<const std::vector<int32_t>> continuations,
                                                      MlaAttention mode) {
  const int world = p.world();
  MLABENCH_CHECK(p.dp_attention && prompts.size() == static_cast<size_t>(world) &&
                     continuations.size() == prompts.size(),
                 "sharded CPU forward with DP attention: {} prompts and {} continuations over {} ranks{}. HINT: one "
                 "sequence a rank, and --dp-attention set",
                 prompts.size(), continuations.size(), world, p.dp_attention ? "" : " without --dp-attention");
  for (size_t r = 0; r < prompts.size(); ++r)
    MLABENCH_CHECK(!prompts[r].empty() && continuations[r].size() == continuations[0].size(),
                   "sharded CPU forward with DP attention: rank {} has {} prompt and {} continuation tokens (rank 0: "
                   "{}). HINT: every rank takes the same number of steps (a prefill, then one decode step a "
                   "continuation token), so give non-empty prompts and continuations of one length",
                   r, prompts[r].size(), continuations[r].size(), continuations[0].size());
  const int64_t V = c.vocab_size;
  std::vector<std::vector<float>> out(prompts.size());
  HostGroup group(world);
  run_ranks(group, [&](int rank) {
    RankModel rm = shard_model(c, w, plan_shards(c, p, rank));
    CpuModel model(std::move(rm.config), std::move(rm.weights), mode);
    model.set_rank_hooks(dp_attention_hooks(group, rank, V));
    const auto& prompt = prompts[static_cast<size_t>(rank)];
    const auto& cont = continuations[static_cast<size_t>(rank)];
    auto& mine = out[static_cast<size_t>(rank)];
    mine.resize((prompt.size() + cont.size()) * static_cast<size_t>(V));
    run_model(model, prompt, cont, mine.data());
  });
  return out;
}

}  // namespace mlabench::parallel
