#include "engine/parallel/shard_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/check.h"
#include "engine/core/fp8.h"

namespace mlabench::parallel {

Range split_range(int64_t n, int parts, int rank) {
  MLABENCH_CHECK(parts > 0 && rank >= 0 && rank < parts && n >= 0, "split_range: rank {} of {} parts of {}", rank,
                 parts, n);
  const int64_t base = n / parts, extra = n % parts;
  const int64_t begin = rank * base + (rank < extra ? rank : extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

namespace {

// n split into `parts` equal pieces, refused where it does not divide: heads and FFN columns must, since every rank
// runs the same kernels at the same shapes (and NCCL's reduce-scatter takes equal counts).
Range split_exact(int64_t n, int parts, int rank, const char* what, const ModelConfig& c, const ParallelConfig& p) {
  MLABENCH_CHECK(n % parts == 0,
                 "parallel plan for {}: {} = {} does not divide over {} ranks (--tp {} --ep {}{}). HINT: pick a rank "
                 "count that divides it ({})",
                 c.source, what, n, parts, p.tp, p.ep, p.dp_attention ? " --dp-attention" : "", what);
  return split_range(n, parts, rank);
}

void check_config(const ParallelConfig& p, int rank) {
  const int w = p.world();
  MLABENCH_CHECK(p.tp >= 1 && p.ep >= 1 && w <= 64, "parallel plan: --tp {} --ep {}: each must be 1 to 64", p.tp,
                 p.ep);
  MLABENCH_CHECK((p.tp == 1 || p.tp == w) && (p.ep == 1 || p.ep == w),
                 "parallel plan: --tp {} --ep {}: TP and EP share one group of ranks, so each is 1 or the group's "
                 "size. HINT: --tp {} --ep {}",
                 p.tp, p.ep, w, w);
  MLABENCH_CHECK(!(p.ep > 1 && p.tp == 1 && !p.dp_attention),
                 "parallel plan: --ep {} alone would make every rank compute all of attention for every sequence. "
                 "HINT: add --tp {} (heads split) or --dp-attention (sequences split)",
                 p.ep, p.ep);
  MLABENCH_CHECK(rank >= 0 && rank < w, "parallel plan: rank {} of a group of {}", rank, w);
}

}  // namespace

ShardPlan plan_shards(const ModelConfig& c, const ParallelConfig& p, int rank) {
  check_config(p, rank);
  ShardPlan s;
  s.config = p;
  s.rank = rank;
  s.world = p.world();
  const int w = s.world;
  // Attention: TP splits heads, DP attention keeps them all and splits sequences instead.
  if (p.dp_attention || p.tp == 1) {
    s.heads = {0, c.n_heads};
    s.kv_heads = {0, c.n_kv_heads};
    s.sequences_sharded = p.dp_attention && w > 1;
  } else {
    s.heads = split_exact(c.n_heads, w, rank, "num_attention_heads", c, p);
    // GQA: each rank's query heads must read only its own KV heads.
    s.kv_heads = c.is_mla() ? Range{0, c.n_kv_heads} : split_exact(c.n_kv_heads, w, rank, "num_key_value_heads", c, p);
    s.latent_replicated = c.is_mla() && w > 1;
  }
  // The dense MLP, the shared experts and (without EP) the routed experts: TP by intermediate columns. Under
  // --ep --dp-attention without --tp they are TP-split over the same ranks all the same (nothing else would
  // spread them).
  const int ffn_parts = w;
  if (c.n_layers > c.n_moe_layers())
    s.dense_columns = split_exact(c.intermediate_size, ffn_parts, rank, "intermediate_size", c, p);
  if (c.n_routed_experts > 0) {
    s.shared_columns = c.n_shared_experts > 0 ? split_exact(c.n_shared_experts * c.moe_intermediate_size, ffn_parts,
                                                            rank, "n_shared_experts * moe_intermediate_size", c, p)
                                              : Range{};
    if (p.ep > 1) {
      s.experts = split_exact(c.n_routed_experts, w, rank, "n_routed_experts", c, p);
      s.expert_columns = {0, c.moe_intermediate_size};
      s.experts_whole = true;
      s.routing_groups_align = c.n_group <= 1 || c.n_group % w == 0;
    } else {
      s.experts = {0, c.n_routed_experts};
      s.expert_columns = split_exact(c.moe_intermediate_size, ffn_parts, rank, "moe_intermediate_size", c, p);
    }
  }
  // The output head by vocabulary rows (uneven is fine: the all-gather takes each rank's count).
  s.vocab = split_range(c.vocab_size, w, rank);
  return s;
}

int64_t rank_parameters(const ModelConfig& c, const ShardPlan& s) {
  const int64_t H = c.hidden_size, nh = s.heads.size();
  int64_t n = c.vocab_size * H + H;  // embedding (whole on every rank) + final norm
  if (!c.tie_word_embeddings) n += s.vocab.size() * H;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    n += 2 * H;  // the two RMSNorms
    if (c.is_mla()) {
      const int64_t qk = c.qk_head_dim(), kvl = c.kv_lora_rank;
      n += c.q_lora_rank > 0 ? c.q_lora_rank * H + c.q_lora_rank + nh * qk * c.q_lora_rank : nh * qk * H;
      n += (kvl + c.qk_rope_head_dim) * H + kvl;               // kv_a_proj_with_mqa, kv_a_layernorm: whole
      n += nh * (c.qk_nope_head_dim + c.v_head_dim) * kvl;    // kv_b_proj: this rank's heads
      n += H * nh * c.v_head_dim;                             // o_proj: this rank's heads' columns
    } else {
      const int64_t hd = c.head_dim;
      n += nh * hd * H + 2 * s.kv_heads.size() * hd * H + H * nh * hd;
    }
    if (c.is_moe_layer(l)) {
      n += c.n_routed_experts * H;  // the router: whole on every rank (every rank routes the tokens it holds)
      n += 3 * s.shared_columns.size() * H;
      n += s.experts.size() * 3 * s.expert_columns.size() * H;
    } else {
      n += 3 * s.dense_columns.size() * H;
    }
  }
  return n;
}

int64_t model_parameters(const ModelConfig& c) { return rank_parameters(c, plan_shards(c, ParallelConfig{}, 0)); }

int64_t rank_kv_values_per_token(const ModelConfig& c, const ShardPlan& s) {
  const int64_t per_layer =
      c.is_mla() ? c.kv_lora_rank + c.qk_rope_head_dim : 2 * s.kv_heads.size() * c.head_dim;
  return per_layer * c.n_layers;
}

std::string describe(const ShardPlan& s) {
  std::string out = fmt::format("rank {}/{}: heads {}-{}", s.rank, s.world, s.heads.begin, s.heads.end);
  if (s.sequences_sharded) out += " (all heads, this rank's sequences)";
  if (s.latent_replicated) out += ", whole latent cache";
  if (s.dense_columns.size() > 0) out += fmt::format(", dense columns {}-{}", s.dense_columns.begin, s.dense_columns.end);
  if (s.experts.size() > 0)
    out += s.experts_whole ? fmt::format(", experts {}-{} whole", s.experts.begin, s.experts.end)
                           : fmt::format(", every expert's columns {}-{}", s.expert_columns.begin, s.expert_columns.end);
  if (s.shared_columns.size() > 0)
    out += fmt::format(", shared columns {}-{}", s.shared_columns.begin, s.shared_columns.end);
  if (!s.routing_groups_align) out += ", expert groups straddle ranks";
  return out + fmt::format(", vocab {}-{}", s.vocab.begin, s.vocab.end);
}

std::string plan_json(const ModelConfig& c, const ParallelConfig& p) {
  nlohmann::ordered_json ranks = nlohmann::ordered_json::array();
  int64_t largest = 0;
  for (int r = 0; r < p.world(); ++r) {
    const ShardPlan s = plan_shards(c, p, r);
    const int64_t params = rank_parameters(c, s);
    largest = std::max(largest, params);
    ranks.push_back({{"rank", r},
                     {"holds", describe(s)},
                     {"parameters", params},
                     {"weight_bytes_bf16", 2 * params},
                     {"weight_bytes_fp8", params},
                     {"kv_bytes_per_token_bf16", 2 * rank_kv_values_per_token(c, s)},
                     {"sequences_sharded", s.sequences_sharded},
                     {"latent_replicated", s.latent_replicated},
                     {"experts_whole", s.experts_whole},
                     {"routing_groups_align", s.routing_groups_align}});
  }
  // Whether --weights-dtype fp8 runs this split on GPU ranks (which take --tp alone; check_fp8_grid).
  std::string fp8_gpu = "ok";
  if (p.ep > 1 || p.dp_attention) {
    fp8_gpu = "no: GPU ranks take --tp alone (--ep and --dp-attention run on the CPU)";
  } else {
    try {
      check_fp8_grid(c, p);
    } catch (const Error& e) {
      const std::string why = e.what();
      fp8_gpu = "no: " + why.substr(0, why.find('\n'));  // the message and its HINT, not the checked expression
    }
  }
  const int64_t whole = model_parameters(c);
  nlohmann::ordered_json j = {
      {"tp", p.tp},
      {"ep", p.ep},
      {"dp_attention", p.dp_attention},
      {"world", p.world()},
      {"model_parameters", whole},
      {"largest_rank_parameters", largest},
      {"largest_rank_weight_gib_bf16", 2.0 * static_cast<double>(largest) / (1024.0 * 1024.0 * 1024.0)},
      {"fp8_weights_on_gpu_ranks", fp8_gpu},
      {"note", "KV bytes per token count the sequences a rank holds: every sequence under TP, its own under DP "
               "attention"},
      {"ranks", ranks}};
  return j.dump();
}

namespace {

void check_rank_fp8_grid(const ModelConfig& c, const ShardPlan& s) {
  // (what, the slice in the matrix's sliced dimension, that dimension's whole size)
  struct Cut {
    const char* what;
    Range r;
    int64_t whole;
  };
  const auto by = [](Range r, int64_t f) { return Range{r.begin * f, r.end * f}; };
  std::vector<Cut> cuts;
  if (c.is_mla()) {
    const int64_t qk = c.qk_head_dim(), nope_v = c.qk_nope_head_dim + c.v_head_dim;
    cuts.push_back({c.q_lora_rank > 0 ? "q_b_proj rows" : "q_proj rows", by(s.heads, qk), c.n_heads * qk});
    cuts.push_back({"kv_b_proj rows", by(s.heads, nope_v), c.n_heads * nope_v});
    cuts.push_back({"o_proj columns", by(s.heads, c.v_head_dim), c.n_heads * c.v_head_dim});
  } else {
    cuts.push_back({"q_proj rows", by(s.heads, c.head_dim), c.n_heads * c.head_dim});
    cuts.push_back({"k_proj / v_proj rows", by(s.kv_heads, c.head_dim), c.n_kv_heads * c.head_dim});
    cuts.push_back({"o_proj columns", by(s.heads, c.head_dim), c.n_heads * c.head_dim});
  }
  if (s.dense_columns.size() > 0) cuts.push_back({"the dense FFN's columns", s.dense_columns, c.intermediate_size});
  if (c.n_routed_experts > 0) {
    cuts.push_back({"each routed expert's columns", s.expert_columns, c.moe_intermediate_size});
    if (c.n_shared_experts > 0)
      cuts.push_back({"the shared experts' columns", s.shared_columns, c.n_shared_experts * c.moe_intermediate_size});
  }
  for (const Cut& cut : cuts) {
    if (cut.r.size() == 0 || cut.r.size() == cut.whole) continue;  // not split
    MLABENCH_CHECK(cut.r.begin % kFp8Block == 0 && (cut.r.end % kFp8Block == 0 || cut.r.end == cut.whole),
                   "FP8 weights on GPU ranks (--weights-dtype fp8 or an FP8 checkpoint): rank {} of {} holds {} "
                   "{}-{} of {}, which cut its 128 x 128 scale blocks, so the rank's weights would not be the "
                   "unsharded model's. HINT: choose --tp "
                   "so that every rank's share of heads x head size and of the FFN and expert widths is a multiple "
                   "of 128, or run FP8 on one GPU",
                   s.rank, s.world, cut.what, cut.r.begin, cut.r.end, cut.whole);
  }
}

}  // namespace

void check_fp8_grid(const ModelConfig& c, const ParallelConfig& p) {
  for (int r = 0; r < p.world(); ++r) check_rank_fp8_grid(c, plan_shards(c, p, r));
}

}  // namespace mlabench::parallel
