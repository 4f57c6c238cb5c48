// Binding checkpoint tensors to model slots. Validation compares the checkpoint with tensor_manifest(config):
// it reports every kind of mismatch by name and shape, so a wrong config.json (layers, ranks, experts) is
// caught before any arithmetic.
#include "engine/weights/model_weights.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <set>

#include "core/check.h"
#include "engine/core/fp8.h"

namespace mlabench {

namespace {

bool ignorable(const std::string& name, const ModelConfig& c) {
  // Buffers some exporters include; and a tied lm_head written anyway (transformers ignores it too).
  return name.ends_with("rotary_emb.inv_freq") || (c.tie_word_embeddings && name == "lm_head.weight");
}

std::vector<float> to_f32(const TensorView& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  convert_to_f32(t.dtype, t.data, v.data(), v.size());
  return v;
}

// An FP8 weight as DeepSeek-V3 stores it: e4m3 values and a float32 (or BF16) `<name>_scale_inv` of one value per
// 128 x 128 block ([ceil(N/128), ceil(K/128)], or [E, ...] for a 3-D expert tensor). The embedding, the output head
// and the router must stay in a float type: the engine reads them row by row or compares their outputs as they are.
void check_fp8_tensor(const Checkpoint& ck, const std::string& dir, const ExpectedTensor& t) {
  MLABENCH_CHECK(fp8_eligible(t.name, t.shape), "checkpoint {}: tensor '{}' is F8_E4M3; only projections and experts may be (the embedding, "
                 "the output head, the router and the norms stay BF16/F16/F32, as in DeepSeek-V3's FP8 checkpoints)",
                 dir, t.name);
  const std::string sname = t.name + "_scale_inv";
  MLABENCH_CHECK(ck.has(sname), "checkpoint {}: F8_E4M3 tensor '{}' has no '{}' beside it. HINT: an FP8 checkpoint "
                 "stores one float32 scale per 128 x 128 block (DeepSeek-V3's weight_scale_inv)", dir, t.name, sname);
  const SafetensorsEntry& e = ck.entry(t.name);
  MLABENCH_CHECK(e.shape == t.shape, "checkpoint {}: tensor '{}' has shape {} but config.json implies {}", dir, t.name,
                 shape_str(e.shape), shape_str(t.shape));
  std::vector<int64_t> grid(t.shape.begin(), t.shape.end());
  const size_t d = grid.size();
  grid[d - 2] = (grid[d - 2] + kFp8Block - 1) / kFp8Block;
  grid[d - 1] = (grid[d - 1] + kFp8Block - 1) / kFp8Block;
  const SafetensorsEntry& se = ck.entry(sname);
  MLABENCH_CHECK(se.shape == grid && (se.dtype == DType::F32 || se.dtype == DType::BF16),
                 "checkpoint {}: '{}' is {} {}; the 128 x 128 blocks of '{}' {} need a float32 grid {}", dir, sname,
                 dtype_name(se.dtype), shape_str(se.shape), t.name, shape_str(t.shape), shape_str(grid));
}

}  // namespace

ExpertLayout detect_expert_layout(const Checkpoint& ck) {
  for (const auto& n : ck.names())
    if (n.ends_with("mlp.experts.gate_up_proj")) return ExpertLayout::FUSED;
  return ExpertLayout::HUB;
}

namespace {

void bind_mla(const std::string& a, int64_t q_lora_rank, const std::function<TensorView(const std::string&)>& get,
              LayerWeights& L) {
  if (q_lora_rank > 0) {
    L.q_a_proj = get(a + "q_a_proj.weight");
    L.q_a_norm = to_f32(get(a + "q_a_layernorm.weight"));
    L.q_b_proj = get(a + "q_b_proj.weight");
  } else {
    L.q_proj = get(a + "q_proj.weight");
  }
  L.kv_a_proj = get(a + "kv_a_proj_with_mqa.weight");
  L.kv_a_norm = to_f32(get(a + "kv_a_layernorm.weight"));
  L.kv_b_proj = get(a + "kv_b_proj.weight");
  L.o_proj = get(a + "o_proj.weight");
}

void bind_gqa(const std::string& a, const std::function<TensorView(const std::string&)>& get, LayerWeights& L) {
  L.q_proj = get(a + "q_proj.weight");
  L.k_proj = get(a + "k_proj.weight");
  L.v_proj = get(a + "v_proj.weight");
  L.o_proj = get(a + "o_proj.weight");
}

MlpWeights bind_mlp(const std::string& m, const std::function<TensorView(const std::string&)>& get) {
  return {get(m + "gate_proj.weight"), get(m + "up_proj.weight"), get(m + "down_proj.weight")};
}

void bind_moe(const ModelConfig& c, const std::string& m, ExpertLayout layout,
              const std::function<TensorView(const std::string&)>& get, LayerWeights& L) {
  L.router = get(m + "gate.weight");
  const int64_t I = c.moe_intermediate_size;
  L.experts.resize(static_cast<size_t>(c.n_routed_experts));
  if (layout == ExpertLayout::FUSED) {
    const TensorView gate_up = get(m + "experts.gate_up_proj");  // [E, 2I, H]: gate rows, then up rows
    const TensorView down = get(m + "experts.down_proj");        // [E, H, I]
    for (int64_t e = 0; e < c.n_routed_experts; ++e) {
      const TensorView gu = gate_up.index(e);
      L.experts[static_cast<size_t>(e)] = {gu.slice_rows(0, I), gu.slice_rows(I, I), down.index(e)};
    }
  } else {
    for (int64_t e = 0; e < c.n_routed_experts; ++e)
      L.experts[static_cast<size_t>(e)] = bind_mlp(fmt::format("{}experts.{}.", m, e), get);
  }
  L.has_shared = c.n_shared_experts > 0;
  if (L.has_shared) L.shared = bind_mlp(m + "shared_experts.", get);
}

}  // namespace

void bind_weights(const ModelConfig& c, ExpertLayout layout, const std::function<TensorView(const std::string&)>& get,
                  ModelWeights& w) {
  w.layout = layout;
  w.embed = get("model.embed_tokens.weight");
  w.lm_head = c.tie_word_embeddings ? w.embed : get("lm_head.weight");
  w.final_norm = to_f32(get("model.norm.weight"));
  w.layers.resize(static_cast<size_t>(c.n_layers));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    LayerWeights& L = w.layers[static_cast<size_t>(i)];
    const std::string p = fmt::format("model.layers.{}.", i);
    L.input_norm = to_f32(get(p + "input_layernorm.weight"));
    L.post_norm = to_f32(get(p + "post_attention_layernorm.weight"));
    switch (c.attention) {
      case AttentionKind::MLA:
        bind_mla(p + "self_attn.", c.q_lora_rank, get, L);
        break;
      case AttentionKind::GQA:
        bind_gqa(p + "self_attn.", get, L);
        break;
    }
    L.is_moe = c.ffn_kind(i) == FfnKind::MOE;
    switch (c.ffn_kind(i)) {
      case FfnKind::DENSE:
        L.mlp = bind_mlp(p + "mlp.", get);
        break;
      case FfnKind::MOE:
        bind_moe(c, p + "mlp.", layout, get, L);
        break;
    }
  }
}

ModelWeights load_weights(const ModelConfig& c, const std::string& dir) {
  ModelWeights w;
  w.checkpoint = Checkpoint::open(dir);
  const Checkpoint& ck = *w.checkpoint;
  const ExpertLayout layout = detect_expert_layout(ck);
  const std::vector<ExpectedTensor> manifest = tensor_manifest(c, layout);

  std::set<std::string> expected;
  for (const auto& t : manifest) {
    expected.insert(t.name);
    if (ck.has(t.name) && ck.entry(t.name).dtype == DType::F8_E4M3) {
      check_fp8_tensor(ck, dir, t);
      expected.insert(t.name + "_scale_inv");
      continue;
    }
    MLABENCH_CHECK(ck.has(t.name),
                   "checkpoint {} has no tensor '{}' (expected shape {}, from {}; expert layout: {}). "
                   "HINT: config.json and the weights disagree (num_hidden_layers, q_lora_rank, experts?)",
                   dir, t.name, shape_str(t.shape), c.source, to_string(layout));
    const SafetensorsEntry& e = ck.entry(t.name);
    MLABENCH_CHECK(e.shape == t.shape,
                   "checkpoint {}: tensor '{}' has shape {} but config.json implies {}. HINT: "
                   "check hidden_size, head dims and ranks in {}",
                   dir, t.name, shape_str(e.shape), shape_str(t.shape), c.source);
    MLABENCH_CHECK(e.dtype == DType::BF16 || e.dtype == DType::F16 || e.dtype == DType::F32,
                   "checkpoint {}: tensor '{}' is {}; weights must be BF16, F16 or F32 (or F8_E4M3 with a "
                   "'_scale_inv' beside it, DeepSeek-V3's FP8 layout)", dir, t.name, dtype_name(e.dtype));
  }
  std::vector<std::string> unexpected;
  for (const auto& n : ck.names())
    if (!expected.count(n) && !ignorable(n, c)) unexpected.push_back(n);
  MLABENCH_CHECK(unexpected.empty(),
                 "checkpoint {} has {} tensor(s) that config.json does not account for; first: "
                 "'{}' with shape {}. HINT: config.json and the weights disagree (num_hidden_layers, "
                 "first_k_dense_replace, n_shared_experts, tie_word_embeddings?)",
                 dir, unexpected.size(), unexpected.empty() ? "" : unexpected[0],
                 unexpected.empty() ? "" : shape_str(ck.entry(unexpected[0]).shape));

  auto get = [&](const std::string& name) {
    TensorView v = ck.get(name);
    w.stored_bytes += v.nbytes();
    // safetensors does not promise alignment; copy a misaligned tensor so every element load is aligned.
    if (reinterpret_cast<uintptr_t>(v.data) % dtype_size(v.dtype) != 0) {
      w.owned.emplace_back((v.nbytes() + 7) / 8);
      std::memcpy(w.owned.back().data(), v.data, v.nbytes());
      v.data = w.owned.back().data();
    }
    if (v.dtype == DType::F8_E4M3) {  // its block scales, as float32 in an aligned buffer of their own
      const TensorView sv = ck.get(name + "_scale_inv");
      w.stored_bytes += sv.nbytes();
      w.owned.emplace_back((static_cast<size_t>(sv.numel()) * 4 + 7) / 8);
      auto* scales = reinterpret_cast<float*>(w.owned.back().data());
      std::vector<uint16_t> aligned((sv.nbytes() + 1) / 2);  // the mmap's bytes may sit at any address
      std::memcpy(aligned.data(), sv.data, sv.nbytes());
      convert_to_f32(sv.dtype, aligned.data(), scales, static_cast<size_t>(sv.numel()));
      for (int64_t i = 0; i < sv.numel(); ++i)  // a NaN, infinite or negative scale would corrupt logits silently
        MLABENCH_CHECK(std::isfinite(scales[i]) && scales[i] >= 0.0f,
                       "checkpoint {}: '{}_scale_inv' element {} is {}; block scales must be finite and non-negative. "
                       "HINT: the FP8 checkpoint is broken; re-export it",
                       dir, name, i, scales[i]);
      v.scale_inv = scales;
      v.scale_ld = sv.shape.back();
    }
    return v;
  };
  bind_weights(c, layout, get, w);
  w.source = "checkpoint " + dir;
  return w;
}

}  // namespace mlabench
