// `mlabench info` arithmetic. Parameter counts sum the tensor manifest, so every attention x FFN composition is
// counted by the code that loads it; KV-cache elements per token follow the attention kind.
#include "engine/model/model_info.h"

#include <nlohmann/json.hpp>
#include <set>

#include "engine/kernels/kernel_params.h"
#include "engine/model/rope.h"
#include "engine/weights/model_weights.h"
#include "engine/weights/tensor_manifest.h"

namespace mlabench {

ParamCounts count_params(const ModelConfig& c) {
  ParamCounts p;
  for (const auto& t : tensor_manifest(c, ExpertLayout::FUSED)) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    p.total += n;
  }
  p.embedding = c.vocab_size * c.hidden_size;
  p.per_routed_expert = 3 * c.hidden_size * c.moe_intermediate_size;
  const int64_t idle = c.n_moe_layers() * (c.n_routed_experts - c.experts_per_token) * p.per_routed_expert;
  p.active_per_token = p.total - (c.tie_word_embeddings ? 0 : p.embedding) - idle;
  return p;
}

KvPerToken kv_per_token(const ModelConfig& c) {
  KvPerToken k;
  switch (c.attention) {
    case AttentionKind::MLA:  // the latent [c_kv ; k_pe] only
      k.elements = c.n_layers * (c.kv_lora_rank + c.qk_rope_head_dim);
      k.decompressed_elements = c.n_layers * c.n_heads * (c.qk_head_dim() + c.v_head_dim);
      break;
    case AttentionKind::GQA:  // K and V of every KV head
      k.elements = c.n_layers * 2 * c.n_kv_heads * c.head_dim;
      break;
  }
  return k;
}

namespace {

// How the paper's tables name the attention: a GQA layout with as many KV heads as query heads is MHA, with one
// KV head (and several query heads) MQA.
std::string attention_name(const ModelConfig& c) {
  switch (c.attention) {
    case AttentionKind::MLA:
      return "MLA";
    case AttentionKind::GQA:
      if (c.n_kv_heads == c.n_heads) return "MHA";
      return c.n_kv_heads == 1 ? "MQA" : "GQA";
  }
  return "?";
}

}  // namespace

ModelSummary summarize(const ModelConfig& c, const std::string& model_dir, const Checkpoint* ck) {
  ModelSummary s;
  s.model_dir = model_dir;
  s.architecture = c.architecture;
  s.model_type = c.model_type;
  s.attention = attention_name(c);
  s.vocab_size = c.vocab_size;
  s.n_layers = c.n_layers;
  s.max_position_embeddings = c.max_position_embeddings;
  const ParamCounts p = count_params(c);
  s.params_total = p.total;
  s.params_active_per_token = p.active_per_token;
  const KvPerToken kv = kv_per_token(c);
  s.kv_elements_per_token = kv.elements;
  s.kv_bytes_per_token_bf16 = 2 * kv.elements;
  s.kv_bytes_per_token_fp8 = kv.elements;
  // --kv-cache-dtype fp8 as the GPU engine holds it (kernel_params.h Fp8SlotLayout): the codes plus a float32 scale
  // per 128 of them (a head's at most), and MLA's RoPE part in BF16, each region padded to 16 bytes (FlashMLA's layout:
  // 656 B a layer at V2 shapes, where the paper's 34,560 B for V2 counts one byte an element).
  s.kv_bytes_per_token_fp8_scaled =
      c.n_layers * (c.attention == AttentionKind::MLA
                        ? kernels::Fp8SlotLayout::mla(c.kv_lora_rank, c.qk_rope_head_dim).bytes()
                        : 2 * kernels::Fp8SlotLayout::heads(c.n_kv_heads, c.head_dim).bytes());

  nlohmann::ordered_json j;
  j["model_dir"] = model_dir;
  j["architecture"] = s.architecture;
  j["model_type"] = s.model_type;
  j["attention"] = s.attention;
  j["layers"] = c.n_layers;
  j["hidden_size"] = c.hidden_size;
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["dtype"] = std::string(dtype_torch_name(c.dtype));
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.attention == AttentionKind::MLA) {
    j["mla"] = {{"heads", c.n_heads},
                {"q_lora_rank", c.q_lora_rank > 0 ? nlohmann::json(c.q_lora_rank) : nlohmann::json()},
                {"kv_lora_rank", c.kv_lora_rank},
                {"qk_nope_head_dim", c.qk_nope_head_dim},
                {"qk_rope_head_dim", c.qk_rope_head_dim},
                {"v_head_dim", c.v_head_dim}};
  } else {
    j["gqa"] = {{"heads", c.n_heads}, {"kv_heads", c.n_kv_heads}, {"head_dim", c.head_dim}};
  }
  const int64_t n_moe = c.n_moe_layers();
  j["ffn"] = {{"kinds", {{to_string(FfnKind::DENSE), c.n_layers - n_moe}, {to_string(FfnKind::MOE), n_moe}}}};
  if (n_moe < c.n_layers) j["ffn"]["dense_intermediate_size"] = c.intermediate_size;
  if (c.n_routed_experts > 0) {
    j["moe"] = {{"routed_experts", c.n_routed_experts},
                {"shared_experts", c.n_shared_experts},
                {"experts_per_token", c.experts_per_token},
                {"moe_intermediate_size", c.moe_intermediate_size},
                {"moe_layers", c.n_moe_layers()},
                {"dense_layers", c.n_layers - c.n_moe_layers()},
                {"topk_method", to_string(c.topk_method)},
                {"n_group", c.n_group},
                {"topk_group", c.topk_group},
                {"routed_scaling_factor", c.routed_scaling_factor},
                {"norm_topk_prob", c.norm_topk_prob}};
  }
  const RopeTables rt = rope_tables(c);
  nlohmann::ordered_json rope = {{"type", to_string(c.rope.type)},
                                 {"theta", c.rope.theta},
                                 {"dims", c.rope.dim},
                                 {"pairs", c.rope.interleaved ? "interleaved" : "half-split"}};
  if (c.rope.type == RopeType::YARN) {
    rope["factor"] = c.rope.factor;
    rope["original_max_position_embeddings"] = c.rope.original_max_position_embeddings;
    rope["beta_fast"] = c.rope.beta_fast;
    rope["beta_slow"] = c.rope.beta_slow;
    rope["mscale"] = c.rope.mscale;
    rope["mscale_all_dim"] = c.rope.mscale_all_dim;
  } else if (c.rope.type == RopeType::LLAMA3) {
    rope["factor"] = c.rope.factor;
    rope["low_freq_factor"] = c.rope.low_freq_factor;
    rope["high_freq_factor"] = c.rope.high_freq_factor;
    rope["original_max_position_embeddings"] = c.rope.original_max_position_embeddings;
  }
  rope["cos_sin_multiplier"] = rt.cos_sin_multiplier;
  rope["softmax_scale"] = rt.softmax_scale;
  j["rope"] = rope;
  j["parameters"] = {{"total", p.total},
                     {"active_per_token", p.active_per_token},
                     {"embedding", p.embedding},
                     {"active_definition",
                      "total minus the input embedding table (a lookup; kept when tied to the "
                      "output head) minus the routed experts a token does not use"}};
  // --weights-dtype fp8 as the engine holds it: each eligible matrix (per expert, as the hub layout stores them) one
  // byte an element plus a float32 scale per 128 x 128 block, the rest (embedding, head, router, norms) in BF16.
  for (const auto& t : tensor_manifest(c, ExpertLayout::HUB)) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    if (!fp8_on_load(t.name, t.shape)) {
      s.weight_bytes_fp8 += 2 * n;
      continue;
    }
    const size_t d = t.shape.size();
    const int64_t grid = n / (t.shape[d - 2] * t.shape[d - 1]) * ((t.shape[d - 2] + 127) / 128) *
                         ((t.shape[d - 1] + 127) / 128);
    s.weight_bytes_fp8 += n + 4 * grid;
  }
  j["weight_bytes"] = {{"bf16", 2 * p.total},
                       {"fp8", s.weight_bytes_fp8},
                       {"fp8_layout", "--weights-dtype fp8: projections and experts in e4m3 with a float32 scale per "
                                      "128 x 128 block; embedding, head, router, norms and kv_b_proj in BF16"}};
  nlohmann::ordered_json kvj = {
      {"elements", kv.elements}, {"bytes_bf16", s.kv_bytes_per_token_bf16}, {"bytes_fp8", s.kv_bytes_per_token_fp8},
      {"bytes_fp8_scaled", s.kv_bytes_per_token_fp8_scaled},
      {"bytes_fp8_scaled_layout", c.attention == AttentionKind::MLA
                                      ? "--kv-cache-dtype fp8: the latent in e4m3 with a float32 scale per 128 values, "
                                        "the RoPE part in BF16 (FlashMLA's layout), each part padded to 16 bytes"
                                      : "--kv-cache-dtype fp8: K and V in e4m3 with a float32 scale per head (per 128 "
                                        "values of a wider head), codes and scales each padded to 16 bytes"}};
  if (c.attention == AttentionKind::MLA) {
    kvj["layout"] = "latent: kv_lora_rank + qk_rope_head_dim per layer";
    kvj["decompressed_bytes_bf16"] = 2 * kv.decompressed_elements;
  } else {
    kvj["layout"] = "K and V: 2 x kv_heads x head_dim per layer";
  }
  j["kv_cache_per_token"] = kvj;

  if (ck != nullptr) {
    std::set<std::string> dtypes;
    for (const auto& n : ck->names()) dtypes.insert(std::string(dtype_name(ck->entry(n).dtype)));
    j["checkpoint"] = {{"files", ck->files().size()},
                       {"bytes", ck->total_bytes()},
                       {"tensors", ck->names().size()},
                       {"dtypes", dtypes},
                       {"expert_layout", c.n_routed_experts > 0 ? to_string(detect_expert_layout(*ck)) : "n/a"}};
  } else {
    j["checkpoint"] = nullptr;
  }
  s.json = j.dump(2);
  return s;
}

}  // namespace mlabench
