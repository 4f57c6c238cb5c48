// The manifest is built layer by layer from the two kinds a layer is made of: the config's attention kind gives
// the self_attn tensors, the layer's FFN kind the mlp ones. Names and shapes are the hub checkpoints'.
#include "engine/weights/tensor_manifest.h"

#include <fmt/format.h>

namespace mlabench {

namespace {

void add_mlp(std::vector<ExpectedTensor>& out, const std::string& prefix, int64_t hidden, int64_t inter) {
  out.push_back({prefix + "gate_proj.weight", {inter, hidden}});
  out.push_back({prefix + "up_proj.weight", {inter, hidden}});
  out.push_back({prefix + "down_proj.weight", {hidden, inter}});
}

// DeepSeek-V2's MLA projections (engine.md §2.6): q through q_proj, or q_a_proj -> q_a_layernorm -> q_b_proj when
// q_lora_rank > 0; the latent and the shared k_pe from kv_a_proj_with_mqa; per-head k_nope and v from kv_b_proj.
void add_mla(std::vector<ExpectedTensor>& out, const ModelConfig& c, const std::string& a) {
  const int64_t H = c.hidden_size, nh = c.n_heads;
  if (c.q_lora_rank > 0) {
    out.push_back({a + "q_a_proj.weight", {c.q_lora_rank, H}});
    out.push_back({a + "q_a_layernorm.weight", {c.q_lora_rank}});
    out.push_back({a + "q_b_proj.weight", {nh * c.qk_head_dim(), c.q_lora_rank}});
  } else {
    out.push_back({a + "q_proj.weight", {nh * c.qk_head_dim(), H}});
  }
  out.push_back({a + "kv_a_proj_with_mqa.weight", {c.kv_lora_rank + c.qk_rope_head_dim, H}});
  out.push_back({a + "kv_a_layernorm.weight", {c.kv_lora_rank}});
  out.push_back({a + "kv_b_proj.weight", {nh * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank}});
  out.push_back({a + "o_proj.weight", {H, nh * c.v_head_dim}});
}

void add_gqa(std::vector<ExpectedTensor>& out, const ModelConfig& c, const std::string& a) {
  const int64_t H = c.hidden_size;
  out.push_back({a + "q_proj.weight", {c.n_heads * c.head_dim, H}});
  out.push_back({a + "k_proj.weight", {c.n_kv_heads * c.head_dim, H}});
  out.push_back({a + "v_proj.weight", {c.n_kv_heads * c.head_dim, H}});
  out.push_back({a + "o_proj.weight", {H, c.n_heads * c.head_dim}});
}

// DeepSeekMoE: the router, the routed experts in either layout, the shared experts fused into one MLP.
void add_moe(std::vector<ExpectedTensor>& out, const ModelConfig& c, const std::string& m, ExpertLayout layout) {
  const int64_t H = c.hidden_size, E = c.n_routed_experts, I = c.moe_intermediate_size;
  out.push_back({m + "gate.weight", {E, H}});
  if (layout == ExpertLayout::FUSED) {
    out.push_back({m + "experts.gate_up_proj", {E, 2 * I, H}});
    out.push_back({m + "experts.down_proj", {E, H, I}});
  } else {
    for (int64_t e = 0; e < E; ++e) add_mlp(out, fmt::format("{}experts.{}.", m, e), H, I);
  }
  if (c.n_shared_experts > 0) add_mlp(out, m + "shared_experts.", H, I * c.n_shared_experts);
}

}  // namespace

std::vector<ExpectedTensor> tensor_manifest(const ModelConfig& c, ExpertLayout layout) {
  const int64_t H = c.hidden_size;
  std::vector<ExpectedTensor> out;
  out.push_back({"model.embed_tokens.weight", {c.vocab_size, H}});
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    out.push_back({p + "input_layernorm.weight", {H}});
    out.push_back({p + "post_attention_layernorm.weight", {H}});
    switch (c.attention) {
      case AttentionKind::MLA:
        add_mla(out, c, p + "self_attn.");
        break;
      case AttentionKind::GQA:
        add_gqa(out, c, p + "self_attn.");
        break;
    }
    switch (c.ffn_kind(i)) {
      case FfnKind::DENSE:
        add_mlp(out, p + "mlp.", H, c.intermediate_size);
        break;
      case FfnKind::MOE:
        add_moe(out, c, p + "mlp.", layout);
        break;
    }
  }
  out.push_back({"model.norm.weight", {H}});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, H}});
  return out;
}

std::string to_string(ExpertLayout l) { return l == ExpertLayout::HUB ? "hub (one tensor per expert)" : "fused"; }

}  // namespace mlabench
