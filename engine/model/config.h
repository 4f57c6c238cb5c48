// ModelConfig: everything the engine needs from a checkpoint's config.json, parsed and checked once.
// Accepts DeepSeek-V2 configs in the hub style (rope_theta + rope_scaling {type: yarn, ...}) and in the
// transformers-5 style (rope_parameters {rope_type, rope_theta, ...}), and Llama configs (MHA or GQA through
// num_key_value_heads, rope_scaling of type llama3, tie_word_embeddings). Anything else is refused with an
// error naming the field and the values accepted.
//
// A model is an attention kind (the same for every layer) and an FFN kind per layer, each registered by name
// (config.cpp): the architecture (model_type) gives the defaults, DeepSeek-V2 = MLA + MoE past
// first_k_dense_replace, Llama = GQA + dense. Two mlabench keys in config.json compose other pairs for the
// ablations: "mlabench_attention": "mla" | "gqa" (GQA reads num_key_value_heads and head_dim, MLA the
// kv_lora_rank / q_lora_rank / qk_*_head_dim / v_head_dim fields), and the DeepSeekMoE fields (n_routed_experts,
// moe_intermediate_size, num_experts_per_tok, ...) in a Llama config give it MoE layers by the same rule.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/dtype.h"

namespace mlabench {

enum class Architecture { DEEPSEEK_V2, LLAMA };
/// How a layer attends. MLA: multi-head latent attention (DeepSeek-V2, with or without q_lora_rank), caching the
/// latent. GQA: grouped-query attention caching K and V per KV head; MHA when num_key_value_heads equals
/// num_attention_heads, MQA when it is 1.
enum class AttentionKind { MLA, GQA };
/// A layer's feed-forward block: a dense SwiGLU MLP, or DeepSeekMoE (router, routed experts, shared experts).
enum class FfnKind { DENSE, MOE };
enum class RopeType { DEFAULT, YARN, LLAMA3 };
enum class TopkMethod { GREEDY, GROUP_LIMITED_GREEDY };
/// The router's per-expert score: softmax over the experts (DeepSeek-V2, Mixtral) or each logit's sigmoid
/// (DeepSeek-V3 style). Selection and weighting rules are the same for both.
enum class ScoringFunc { SOFTMAX, SIGMOID };

struct RopeConfig {
  RopeType type = RopeType::DEFAULT;
  double theta = 10000.0;
  int64_t dim = 0;           // rotated dimensions per head: qk_rope_head_dim (MLA) or head_dim (GQA)
  bool interleaved = false;  // MLA: pairs (2i, 2i+1). GQA (HF Llama weights): pairs (i, i + dim/2)
  // yarn (DeepSeek remote-code semantics; defaults are that code's; model_type deepseek_v2 only)
  double factor = 1.0;
  int64_t original_max_position_embeddings = 0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;
  // llama3 (model_type llama only)
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
};

struct ModelConfig {
  std::string source;  // where config.json came from, for messages
  Architecture arch = Architecture::LLAMA;
  std::string model_type;    // "deepseek_v2" | "llama"
  std::string architecture;  // "DeepseekV2ForCausalLM" | "LlamaForCausalLM"
  AttentionKind attention = AttentionKind::GQA;  // the architecture's default or "mlabench_attention"

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;         // GQA: K/V heads; MLA: equals n_heads
  int64_t head_dim = 0;           // GQA only: query, key and value head width
  int64_t intermediate_size = 0;  // dense MLP width
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  DType dtype = DType::BF16;  // torch_dtype / dtype: what --random-weights builds
  std::vector<int64_t> bos_token_ids;
  std::vector<int64_t> eos_token_ids;

  // MLA (DeepSeek-V2)
  int64_t q_lora_rank = 0;  // 0: plain q_proj (V2-Lite)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;

  // DeepSeekMoE
  int64_t n_routed_experts = 0;  // 0: no MoE layers
  int64_t n_shared_experts = 0;
  int64_t moe_intermediate_size = 0;
  int64_t experts_per_token = 0;
  int64_t first_k_dense_replace = 0;
  int64_t moe_layer_freq = 1;
  TopkMethod topk_method = TopkMethod::GREEDY;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  double routed_scaling_factor = 1.0;
  bool norm_topk_prob = false;
  ScoringFunc scoring_func = ScoringFunc::SOFTMAX;

  RopeConfig rope;  // MLA: the qk_rope_head_dim values, interleaved pairs; GQA: the whole head, pairs (i, i + d/2)

  bool is_mla() const { return attention == AttentionKind::MLA; }
  /// The FFN kind of layer i: MoE by is_moe_layer's rule, else dense.
  FfnKind ffn_kind(int64_t i) const { return is_moe_layer(i) ? FfnKind::MOE : FfnKind::DENSE; }
  /// Width of one attention head's query-key dot product (the softmax scale's denominator): MLA nope + rope,
  /// GQA head_dim.
  int64_t attention_qk_dim() const { return is_mla() ? qk_head_dim() : head_dim; }
  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  /// HF remote-code rule: MoE iff experts exist, i >= first_k_dense_replace and i % moe_layer_freq == 0.
  bool is_moe_layer(int64_t i) const {
    return n_routed_experts > 0 && i >= first_k_dense_replace && i % moe_layer_freq == 0;
  }
  int64_t n_moe_layers() const;
};

/// \brief Parses and validates a config.json document. `where` names it in errors. Throws Error.
ModelConfig config_from_json(const nlohmann::json& j, const std::string& where);
/// \brief Reads DIR/config.json. Throws Error (missing file, bad JSON, bad or unsupported fields).
ModelConfig load_config(const std::string& model_dir);

std::string to_string(TopkMethod m);
std::string to_string(RopeType t);
std::string to_string(ScoringFunc f);
/// "mla" | "gqa", and "dense" | "moe": the names config.json and the CLI use.
std::string to_string(AttentionKind k);
std::string to_string(FfnKind k);

}  // namespace mlabench
