// --weights-dtype fp8 (issue 20): a loaded model's projections and experts re-held as e4m3 with 128 x 128 block
// scales (engine/core/fp8.h). The embedding, the output head and the router stay as stored, as in DeepSeek-V3's FP8
// checkpoints: a lookup reads one row, the head's and the router's logits are what sampling and routing compare.
#include <vector>

#include "core/check.h"
#include "engine/core/fp8.h"
#include "engine/weights/model_weights.h"

namespace mlabench {

namespace {

// One matrix into owned buffers: its codes, then its grid of scales.
void quantize_view(TensorView& v, std::vector<std::vector<uint64_t>>& owned, const std::string& what) {
  MLABENCH_CHECK(v.data != nullptr, "--weights-dtype fp8: {} has no values to quantise (a random tensor not generated "
                 "yet). HINT: this is a bug; report the command", what);
  const int64_t n = v.shape[0], k = v.shape[1];
  const int64_t grid = ((n + kFp8Block - 1) / kFp8Block) * ((k + kFp8Block - 1) / kFp8Block);
  std::vector<float> values(static_cast<size_t>(n * k));
  convert_to_f32(v.dtype, v.data, values.data(), values.size());
  owned.emplace_back((static_cast<size_t>(n * k) + 7) / 8);
  auto* codes = reinterpret_cast<uint8_t*>(owned.back().data());
  owned.emplace_back((static_cast<size_t>(grid) * 4 + 7) / 8);
  auto* scales = reinterpret_cast<float*>(owned.back().data());
  quantize_fp8_blocks(values, n, k, {codes, static_cast<size_t>(n * k)}, {scales, static_cast<size_t>(grid)},
                      what.c_str());
  v.dtype = DType::F8_E4M3;
  v.data = codes;
  v.scale_inv = scales;
  v.scale_ld = (k + kFp8Block - 1) / kFp8Block;
  v.scale_row0 = 0;
}

}  // namespace

bool fp8_eligible(const std::string& name, const std::vector<int64_t>& shape) {
  return shape.size() >= 2 && !name.ends_with("embed_tokens.weight") && name != "lm_head.weight" &&
         !name.ends_with("mlp.gate.weight");
}

bool fp8_on_load(const std::string& name, const std::vector<int64_t>& shape) {
  return fp8_eligible(name, shape) && !name.ends_with("kv_b_proj.weight");
}

bool holds_fp8(ModelWeights& w) {
  bool any = false;
  for_each_matrix(w, [&](TensorView& v) { any = any || v.dtype == DType::F8_E4M3; });
  return any;
}

uint64_t quantize_weights_fp8(ModelWeights& w) {
  uint64_t bytes = w.stored_bytes;  // less each matrix as stored, plus its codes and scales
  auto one = [&](TensorView& v, const std::string& what) {
    if (v.shape.size() != 2 || v.numel() == 0 || v.dtype == DType::F8_E4M3) return;  // FP8 checkpoints: as stored
    bytes -= v.nbytes();
    quantize_view(v, w.owned, what);
    bytes += v.nbytes() + static_cast<uint64_t>(((v.shape[0] + kFp8Block - 1) / kFp8Block) * v.scale_ld) * 4;
  };
  auto mlp = [&](MlpWeights& m, const std::string& what) {
    one(m.gate, what + ".gate"), one(m.up, what + ".up"), one(m.down, what + ".down");
  };
  for (size_t l = 0; l < w.layers.size(); ++l) {
    LayerWeights& L = w.layers[l];
    const std::string at = "layer " + std::to_string(l);
    for (auto [v, name] : {std::pair{&L.q_proj, "q_proj"}, {&L.q_a_proj, "q_a_proj"}, {&L.q_b_proj, "q_b_proj"},
                           {&L.kv_a_proj, "kv_a_proj"}, {&L.k_proj, "k_proj"},
                           {&L.v_proj, "v_proj"}, {&L.o_proj, "o_proj"}})
      one(*v, at + " " + name);
    mlp(L.mlp, at + " mlp");
    for (size_t e = 0; e < L.experts.size(); ++e) mlp(L.experts[e], at + " expert " + std::to_string(e));
    mlp(L.shared, at + " shared experts");
  }
  return bytes;
}

}  // namespace mlabench
