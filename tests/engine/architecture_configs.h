// Small config.json documents for every attention x FFN composition the engine accepts, with the bundled tiny
// model's shapes (tests/data/models/mlabench-tiny-dsv2: hidden 96, 4 layers, 6 heads, vocab 2048). For tests
// that run each composition on an engine (the CPU model, the GPU engine against it) with random weights.
// Self-contained: needs only nlohmann::json.
//
// The attention kinds: MLA with q_lora_rank, MLA without (plain q_proj), MHA (6 KV heads), GQA with 3 and with 2
// KV heads (2 and 3 query heads per KV head), MQA (1 KV head); each once dense and once with DeepSeekMoE layers.
// Across the MoE ones: greedy and group-limited routing, 0, 1 and 2 shared experts, first_k_dense_replace 0 and
// 1, moe_layer_freq 1 and 2, norm_topk_prob on and off, softmax and sigmoid scoring. Both architectures appear under both attention kinds
// through "mlabench_attention", and every RoPE scaling type (default, yarn, llama3) is used.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

namespace mlabench::test {

namespace architecture_configs {

/// What every composition shares: the tiny model's common fields under `model_type` ("deepseek_v2" | "llama").
inline nlohmann::json common(const std::string& model_type) {
  return {{"model_type", model_type},
          {"architectures", {model_type == "llama" ? "LlamaForCausalLM" : "DeepseekV2ForCausalLM"}},
          {"vocab_size", 2048},
          {"hidden_size", 96},
          {"intermediate_size", 192},
          {"num_hidden_layers", 4},
          {"num_attention_heads", 6},
          {"max_position_embeddings", 2560},
          {"rms_norm_eps", 1e-6},
          {"hidden_act", "silu"},
          {"tie_word_embeddings", false},
          {"rope_theta", 10000},
          {"bos_token_id", 0},
          {"eos_token_id", 1},
          {"torch_dtype", "bfloat16"}};
}

/// The tiny model's MLA: kv_lora_rank 48, q/k heads of 32 nope + 16 rope, v 32; q_lora_rank 64 or plain q_proj.
inline void add_mla(nlohmann::json& j, bool q_lora) {
  j["num_key_value_heads"] = 6;
  j["q_lora_rank"] = q_lora ? nlohmann::json(64) : nlohmann::json();
  j["kv_lora_rank"] = 48;
  j["qk_nope_head_dim"] = 32;
  j["qk_rope_head_dim"] = 16;
  j["v_head_dim"] = 32;
}

/// GQA with `kv_heads` K/V heads; head_dim given explicitly when > 0, else hidden / heads = 16.
inline void add_gqa(nlohmann::json& j, int kv_heads, int head_dim = 0) {
  j["num_key_value_heads"] = kv_heads;
  if (head_dim > 0) j["head_dim"] = head_dim;
}

/// DeepSeekMoE with the tiny model's 16 experts of width 24, 4 per token. `group_limited`: 4 groups, keep 2.
inline void add_moe(nlohmann::json& j, bool group_limited, int n_shared, int first_k_dense_replace, int moe_layer_freq,
                    bool norm_topk_prob, double routed_scaling_factor) {
  j["n_routed_experts"] = 16;
  j["moe_intermediate_size"] = 24;
  j["num_experts_per_tok"] = 4;
  j["n_shared_experts"] = n_shared;
  j["first_k_dense_replace"] = first_k_dense_replace;
  j["moe_layer_freq"] = moe_layer_freq;
  j["norm_topk_prob"] = norm_topk_prob;
  j["routed_scaling_factor"] = routed_scaling_factor;
  j["scoring_func"] = "softmax";
  j["topk_method"] = group_limited ? "group_limited_greedy" : "greedy";
  j["n_group"] = group_limited ? 4 : 1;
  j["topk_group"] = group_limited ? 2 : 1;
}

/// The tiny model's YaRN (DeepSeek-V2's factor and mscales over a 64-token original window).
/// An MLA + DeepSeekMoE model whose FFN widths lie on FP8's 128 grid at --tp 2 (hidden 256, 2 layers, 4 heads, a
/// dense first layer of 512, 8 experts of 256 and one shared one, greedy softmax routing), for the FP8 split tests.
/// Heads of qk_nope + qk_rope query values and v_head_dim values: 64 / 32 / 64 leaves q_proj's 192 rows a rank off
/// the grid (the CPU's splits keep the whole grid by scale_row0), 128 / 64 / 128 puts every slice on it (GPU ranks).
inline nlohmann::json fp8_splittable_mla_moe(int qk_nope, int qk_rope, int v_head) {
  nlohmann::json j = common("deepseek_v2");
  j.update({{"vocab_size", 512}, {"hidden_size", 256}, {"intermediate_size", 512}, {"num_hidden_layers", 2},
            {"num_attention_heads", 4}, {"max_position_embeddings", 4096}, {"num_key_value_heads", 4},
            {"q_lora_rank", nullptr}, {"kv_lora_rank", 128}, {"qk_nope_head_dim", qk_nope},
            {"qk_rope_head_dim", qk_rope}, {"v_head_dim", v_head}, {"moe_intermediate_size", 256},
            {"n_routed_experts", 8}, {"n_shared_experts", 1}, {"num_experts_per_tok", 2},
            {"first_k_dense_replace", 1}, {"moe_layer_freq", 1}, {"topk_method", "greedy"}, {"n_group", 1},
            {"topk_group", 1}, {"routed_scaling_factor", 1.0}, {"norm_topk_prob", false},
            {"scoring_func", "softmax"}});
  return j;
}

inline nlohmann::json yarn() {
  return {{"type", "yarn"},         {"factor", 40},   {"original_max_position_embeddings", 64},
          {"beta_fast", 32},        {"beta_slow", 1}, {"mscale", 0.707},
          {"mscale_all_dim", 0.707}};
}

inline nlohmann::json llama3() {
  return {{"rope_type", "llama3"},
          {"factor", 8.0},
          {"low_freq_factor", 1.0},
          {"high_freq_factor", 4.0},
          {"original_max_position_embeddings", 64}};
}

}  // namespace architecture_configs

/// \brief Every composition as (name, config.json): names are <attention>_<ffn>, e.g. "mla_qlora_moe",
/// "gqa3_dense" (3 query heads per KV head).
inline std::vector<std::pair<std::string, nlohmann::json>> architecture_combinations() {
  namespace ac = architecture_configs;
  std::vector<std::pair<std::string, nlohmann::json>> out;
  auto add = [&](const std::string& name, nlohmann::json j) { out.emplace_back(name, std::move(j)); };

  nlohmann::json j = ac::common("deepseek_v2");  // the tiny model without its experts
  ac::add_mla(j, true);
  j["rope_scaling"] = ac::yarn();
  add("mla_qlora_dense", j);
  j = ac::common("deepseek_v2");  // the tiny model itself
  ac::add_mla(j, true);
  ac::add_moe(j, true, 2, 1, 1, false, 4.0);
  j["rope_scaling"] = ac::yarn();
  add("mla_qlora_moe", j);

  j = ac::common("llama");  // a Llama shape with MLA (V2-Lite style)
  j["mlabench_attention"] = "mla";
  ac::add_mla(j, false);
  add("mla_noq_dense", j);
  j = ac::common("deepseek_v2");
  ac::add_mla(j, false);
  ac::add_moe(j, false, 1, 0, 1, true, 1.0);
  j["rope_scaling"] = ac::yarn();
  add("mla_noq_moe", j);

  j = ac::common("llama");
  ac::add_gqa(j, 6);
  add("mha_dense", j);
  j = ac::common("deepseek_v2");  // DeepSeek-V2's shape and YaRN with MHA instead of MLA
  j["mlabench_attention"] = "gqa";
  ac::add_mla(j, true);  // the MLA fields stay in the file, unread
  ac::add_gqa(j, 6);
  ac::add_moe(j, true, 2, 1, 1, false, 4.0);
  j["rope_scaling"] = ac::yarn();
  add("mha_moe", j);

  j = ac::common("llama");
  ac::add_gqa(j, 3);
  j["rope_scaling"] = ac::llama3();
  add("gqa2_dense", j);
  j = ac::common("llama");  // MoE layers 0 and 2, dense 1 and 3
  ac::add_gqa(j, 3);
  ac::add_moe(j, false, 2, 0, 2, false, 1.0);
  j["rope_scaling"] = ac::llama3();
  add("gqa2_moe", j);

  j = ac::common("deepseek_v2");
  j["mlabench_attention"] = "gqa";
  ac::add_gqa(j, 2, 24);  // head_dim 24 != hidden / heads
  add("gqa3_dense", j);
  j = ac::common("llama");
  ac::add_gqa(j, 2);
  ac::add_moe(j, true, 0, 1, 1, false, 2.5);
  j["scoring_func"] = "sigmoid";  // DeepSeek-V3's scoring, group-limited
  add("gqa3_moe", j);

  j = ac::common("llama");
  ac::add_gqa(j, 1);
  j["tie_word_embeddings"] = true;
  add("mqa_dense", j);
  j = ac::common("deepseek_v2");
  j["mlabench_attention"] = "gqa";
  ac::add_gqa(j, 1);
  ac::add_moe(j, false, 1, 1, 1, true, 1.0);
  j["rope_scaling"] = ac::yarn();
  add("mqa_moe", j);
  return out;
}

/// \brief The composition `name` with heads that split over 2, 4 and 8 ranks: 8 query heads (GQA: 4 KV heads; MHA
/// and GQA at head_dim 16). Null when there is no such composition.
inline nlohmann::json splittable_composition(const std::string& name) {
  nlohmann::json j;
  for (const auto& [n, cfg] : architecture_combinations())
    if (n == name) j = cfg;
  if (j.is_null()) return j;
  j["num_attention_heads"] = 8;
  j["num_key_value_heads"] = name.rfind("gqa", 0) == 0 ? 4 : 8;
  if (name.rfind("mla", 0) != 0) j["head_dim"] = 16;
  return j;
}

}  // namespace mlabench::test
