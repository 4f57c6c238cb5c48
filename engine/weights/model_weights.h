// ModelWeights: the tensors of one model bound to named slots, for any attention x FFN composition. Matrices stay in
// their stored dtype (views into the mmap'd checkpoint or into owned buffers); 1-D norm weights are copied to float32
// once. Built by load_weights (a checkpoint folder) or random_weights (config.json alone).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/tensor.h"
#include "engine/model/config.h"
#include "engine/weights/checkpoint.h"
#include "engine/weights/tensor_manifest.h"

namespace mlabench {

struct MlpWeights {
  TensorView gate;  // [I, H]
  TensorView up;    // [I, H]
  TensorView down;  // [H, I]
};

struct LayerWeights {
  std::vector<float> input_norm;  // [H]
  std::vector<float> post_norm;   // [H]

  // MLA attention
  TensorView q_proj;             // [nh*(nope+rope), H]           when q_lora_rank == 0
  TensorView q_a_proj;           // [q_lora, H]                   when q_lora_rank > 0
  std::vector<float> q_a_norm;   // [q_lora]
  TensorView q_b_proj;           // [nh*(nope+rope), q_lora]
  TensorView kv_a_proj;          // [kv_lora + rope, H]: rows [0, kv_lora) latent, then k_pe
  std::vector<float> kv_a_norm;  // [kv_lora]
  TensorView kv_b_proj;          // [nh*(nope+v), kv_lora]: per head h rows [h*(nope+v), +nope) W_UK, then v rows W_UV
  // GQA attention (q_proj above is reused: [nh*hd, H])
  TensorView k_proj;  // [nkv*hd, H]
  TensorView v_proj;  // [nkv*hd, H]
  TensorView o_proj;  // [H, nh*v_head_dim] (MLA) or [H, nh*hd] (GQA)

  bool is_moe = false;              // ffn_kind(layer) == MOE
  MlpWeights mlp;                   // dense layers
  TensorView router;                // [E, H]
  std::vector<MlpWeights> experts;  // E routed experts
  // Routed experts [held_experts_begin, held_experts_end) are this model's (one rank's block under expert
  // parallelism, engine/parallel/sharded_cpu.h); the others' weights are empty and moe_ffn skips them. -1: all.
  int64_t held_experts_begin = 0, held_experts_end = -1;
  bool has_shared = false;
  MlpWeights shared;  // [n_shared*I, H] ...
};

struct ModelWeights {
  ExpertLayout layout = ExpertLayout::HUB;
  TensorView embed;    // [V, H]
  TensorView lm_head;  // [V, H]; the embedding table when tied
  std::vector<float> final_norm;
  std::vector<LayerWeights> layers;

  std::unique_ptr<Checkpoint> checkpoint;    // keeps the mmaps alive (null for random weights)
  std::vector<std::vector<uint64_t>> owned;  // buffers behind views that are not in the checkpoint
  std::string source;                        // "checkpoint DIR" or "random (seed N)"
  uint64_t stored_bytes = 0;                 // bytes of all weight tensors as stored
};

/// \brief Loads and validates the checkpoint in `dir` against `c`. Throws Error naming any missing, unexpected
/// or mis-shaped tensor with the shape expected.
ModelWeights load_weights(const ModelConfig& c, const std::string& dir);

/// \brief Random weights for `c` from a counter-based generator: every value depends only on (seed, tensor
/// name, element index), so any device can reproduce them. Matrices and embeddings: uniform on
/// [-sqrt(3)*0.02, +sqrt(3)*0.02] (standard deviation 0.02, transformers' initializer_range default); norm
/// weights: 1. Stored in the config's dtype; experts in the hub layout.
ModelWeights random_weights(const ModelConfig& c, uint64_t seed);

/// \brief random_weights(c, seed) without generating its matrices: each is a view with a RandomSource and no
/// bytes (norms, ones, are on the host). Slices of these views (rows_of, columns_of in engine/parallel) stay
/// sources, so each rank of a split model generates only its slices, on its GPU (the uploader fills them) or on
/// the host (generate_random_view); the whole model never exists in one place.
ModelWeights random_weight_sources(const ModelConfig& c, uint64_t seed);

/// \brief The elements of a RandomSource view generated into a buffer appended to `owned` (a view with bytes is
/// returned as it is): bit-identical to the same elements of random_weights().
TensorView generate_random_view(const TensorView& v, std::vector<std::vector<uint64_t>>& owned);

/// \brief --weights-dtype fp8: every projection and expert matrix of w re-held in owned buffers as e4m3 codes with a
/// float32 scale_inv per 128 x 128 block (engine/core/fp8.h); the embedding, the output head and the router stay as
/// stored, and so do kv_b_proj (fp8_on_load) and matrices an FP8 checkpoint already holds in FP8. Returns the bytes the weights now take (scales
/// included). Throws Error naming a matrix that holds an infinity or a NaN.
uint64_t quantize_weights_fp8(ModelWeights& w);
/// \brief Whether any matrix of w is F8_E4M3 (an FP8 checkpoint, or after quantize_weights_fp8).
bool holds_fp8(ModelWeights& w);
/// \brief Whether DeepSeek-V3's FP8 layout holds this checkpoint tensor in e4m3: projections and experts (2-D or 3-D),
/// not the embedding, the output head, the router or a norm.
bool fp8_eligible(const std::string& name, const std::vector<int64_t>& shape);
/// \brief Whether --weights-dtype fp8 quantises this tensor on load: fp8_eligible, less MLA's kv_b_proj, which the
/// absorbed decode multiplies in both orientations (W_UK^T q and W_UV o_lat; FP8 GEMMs take K-major operands only),
/// so it stays in the checkpoint's dtype as SGLang keeps it for its absorbed bmm (0.6% of DeepSeek-V2's weights).
bool fp8_on_load(const std::string& name, const std::vector<int64_t>& shape);

/// \brief Calls f on every matrix view of w: embedding, head, each layer's projections, router, experts, shared.
void for_each_matrix(ModelWeights& w, const std::function<void(TensorView&)>& f);

/// \brief The generator key of one tensor of random_weights(c, seed): splitmix64(seed ^ fnv1a64(tensor_name)).
/// With it a device fills the same tensor in place (kernels::RandomFillParams), bit-identical to the host.
uint64_t random_weights_key(uint64_t seed, const std::string& tensor_name);

/// \brief splitmix64's mixing function, as random_weights_key uses it (the fixture weight generator of the tests,
/// tests/engine/generated_weights.cpp, draws its elements with it too).
uint64_t splitmix64(uint64_t x);

/// \brief Fills the slots of `w` from `get(name)`, which must return a validated view for every name in
/// tensor_manifest(c, layout). Shared by load_weights and random_weights.
void bind_weights(const ModelConfig& c, ExpertLayout layout, const std::function<TensorView(const std::string&)>& get,
                  ModelWeights& w);

/// \brief Which expert layout a checkpoint uses (fused if any "mlp.experts.gate_up_proj" tensor exists).
ExpertLayout detect_expert_layout(const Checkpoint& ck);

}  // namespace mlabench
