// The architecture ablation (`mlabench ablate`, docs/ablation.md): one model shape built with each attention
// mechanism (MLA, MHA, GQA with n groups, MQA) and FFN kind (DeepSeekMoE, dense), and the DeepSeek-V2 paper's
// KV-cache arithmetic (Table 1, Table 9, Figure 1(b)) computed from configs. No engine here: the variants are
// config.json documents the engine loads like any other, so every number below is testable without a GPU.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "engine/model/config.h"

namespace mlabench::ablation {

/// One attention mechanism of the sweep. kv_heads: GQA's key/value heads (0 for MLA, the query heads for MHA, 1 for
/// MQA).
struct AttentionVariant {
  std::string name;  ///< "mla", "mha", "gqa:8", "mqa": as given on the command line
  AttentionKind kind = AttentionKind::MLA;
  int64_t kv_heads = 0;
};

/// \brief "mla,mha,gqa:8,mqa" -> variants, in order. Throws Error naming the item and the accepted forms.
std::vector<AttentionVariant> parse_attention_variants(const std::string& list);
/// \brief "moe,dense" -> FFN kinds, in order. Throws Error.
std::vector<FfnKind> parse_ffn_variants(const std::string& list);

/// \brief The config.json of `base` (a DeepSeek-V2 or Llama config document) with its attention and FFN swapped,
/// hidden size, layers, query heads, vocabulary and RoPE unchanged:
///  - GQA/MHA/MQA from an MLA config: head_dim = qk_nope_head_dim (the paper's d_h), kv_heads as the variant says;
///  - MLA from a GQA config: the paper's ratios, kv_lora_rank = 4 d_h, qk_rope_head_dim = d_h / 2,
///    qk_nope_head_dim = v_head_dim = d_h (d_h = head_dim), no query compression (q_lora_rank 0, as V2-Lite);
///  - dense FFN: every layer a SwiGLU MLP of intermediate_size (the MoE fields removed);
///  - MoE FFN: the base's DeepSeekMoE fields (a base without them is refused).
/// The result carries "mlabench_ablation": {"attention", "ffn", "base"} so a variant folder says what it is.
/// Throws Error (kv_heads not dividing the heads, MoE asked of a dense base, ...).
nlohmann::json variant_config(const nlohmann::json& base, const AttentionVariant& attention, FfnKind ffn,
                              const std::string& where);

/// \brief "mla+moe", "gqa:8+dense": the variant's label in tables and JSON.
std::string variant_label(const AttentionVariant& attention, FfnKind ffn);

/// One row of the paper's Table 1 computed for a config: the KV elements per token a mechanism caches.
struct KvRow {
  std::string mechanism;  ///< "MHA", "GQA", "MQA", "MLA"
  std::string formula;    ///< the paper's: "2 n_h d_h l", "(d_c + d_h^R) l"
  std::string terms;      ///< the formula with this config's numbers: "2 x 128 x 128 x 60"
  int64_t elements = 0;   ///< per token, summed over layers
  double in_dh_l = 0;     ///< elements / (d_h l): the paper's "capability" column is 2 n_h, 2 n_g, 2, 4.5
};

/// The shape a mechanism row is computed from: query heads n_h, head width d_h, layers l, groups n_g, and MLA's
/// d_c and d_h^R.
struct KvShape {
  std::string model;
  int64_t n_h = 0, d_h = 0, l = 0, n_g = 0, d_c = 0, d_rope = 0;
};

/// \brief The shape of `c` for Table 1: MLA configs give d_c and d_h^R from their own fields and d_h =
/// qk_nope_head_dim; GQA configs give n_g = their KV heads and MLA at the paper's ratios (d_c = 4 d_h, d_h^R = d_h/2).
KvShape kv_shape(const ModelConfig& c, const std::string& model);
/// \brief Table 1 for one shape: MHA, GQA (n_g groups), MQA and MLA rows.
std::vector<KvRow> table1_rows(const KvShape& s);
/// \brief The analytic KV elements per token of a config's own mechanism (the formula of its Table 1 row).
int64_t kv_elements_per_token(const ModelConfig& c);

/// \brief Table 1 as data and as output: for each config of `configs_dir` named in `models` (folder names), its
/// rows beside the paper's published values where the paper gives one (Table 1's MLA ~ 4.5 d_h l; Table 9's small
/// and large MoE MHA/MLA element counts; DeepSeek-V2's 34,560 elements), and Figure 1(b)'s KV-cache reduction of
/// DeepSeek-V2 against DeepSeek 67B in BF16, FP8 and the paper's ~6-bit cache. JSON.
nlohmann::ordered_json paper_kv_tables(const std::string& configs_dir, const std::vector<std::string>& models);

}  // namespace mlabench::ablation
