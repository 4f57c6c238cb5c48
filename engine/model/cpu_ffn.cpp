// Feed-forward kinds of the CPU reference engine: dense SwiGLU and DeepSeekMoE.
#include "engine/model/cpu_ffn.h"

#include <algorithm>
#include <vector>

#include "engine/kernels/cpu/moe_router.h"
#include "engine/kernels/cpu/ops.h"

namespace mlabench::cpu {

void swiglu_mlp(const MlpWeights& w, int64_t hidden, const float* x, int64_t n, float* out) {
  const int64_t H = hidden, I = w.gate.shape[0];
  std::vector<float> g(static_cast<size_t>(n * I)), u(g.size());  // [n, I]
  linear(g.data(), I, x, H, n, w.gate);
  linear(u.data(), I, x, H, n, w.up);
  silu_mul(g.data(), g.data(), u.data(), n * I);
  linear(out, H, g.data(), I, n, w.down);  // [n, H]
}

void moe_ffn(const ModelConfig& c, const LayerWeights& L, const float* x, int64_t T, float* out) {
  const int64_t H = c.hidden_size, E = c.n_routed_experts, k = c.experts_per_token;
  std::vector<float> router_logits(static_cast<size_t>(T * E));  // [T, E], float32 GEMM
  linear(router_logits.data(), E, x, H, T, L.router);
  std::vector<int32_t> idx(static_cast<size_t>(T * k));
  std::vector<float> w(static_cast<size_t>(T * k));
  moe_route(router_logits.data(), T, RouterParams::from_config(c), idx.data(), w.data());

  std::fill(out, out + T * H, 0.0f);
  std::vector<float> xe, he;
  const int64_t e_begin = L.held_experts_begin, e_end = L.held_experts_end < 0 ? E : L.held_experts_end;
  for (int64_t e = e_begin; e < e_end; ++e) {  // expert by expert, as the reference accumulates
    std::vector<int64_t> rows;
    std::vector<float> gains;
    for (int64_t i = 0; i < T * k; ++i)
      if (idx[i] == e) {
        rows.push_back(i / k);
        gains.push_back(w[i]);
      }
    if (rows.empty()) continue;
    const auto n = static_cast<int64_t>(rows.size());
    xe.resize(static_cast<size_t>(n * H));
    he.resize(xe.size());
    for (int64_t r = 0; r < n; ++r) std::copy_n(x + rows[r] * H, H, xe.data() + r * H);
    swiglu_mlp(L.experts[static_cast<size_t>(e)], H, xe.data(), n, he.data());
    for (int64_t r = 0; r < n; ++r)
      for (int64_t i = 0; i < H; ++i) out[rows[r] * H + i] += gains[r] * he[r * H + i];
  }
  if (L.has_shared) {
    std::vector<float> shared(static_cast<size_t>(T * H));
    swiglu_mlp(L.shared, H, x, T, shared.data());
    for (int64_t i = 0; i < T * H; ++i) out[i] += shared[i];
  }
}

}  // namespace mlabench::cpu
