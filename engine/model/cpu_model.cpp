// Pieces both CPU forward passes share: the SwiGLU MLP and the output head.
#include "engine/model/cpu_model.h"

#include <vector>

#include "engine/kernels/cpu/ops.h"

namespace mlabench {

void CpuModel::swiglu_mlp(const MlpWeights& w, const float* x, int64_t n, float* out) const {
  const int64_t H = config_.hidden_size, I = w.gate.shape[0];
  std::vector<float> g(static_cast<size_t>(n * I)), u(g.size());  // [n, I]
  cpu::linear(g.data(), I, x, H, n, w.gate);
  cpu::linear(u.data(), I, x, H, n, w.up);
  cpu::silu_mul(g.data(), g.data(), u.data(), n * I);
  cpu::linear(out, H, g.data(), I, n, w.down);  // [n, H]
}

void CpuModel::lm_head(const float* hidden, int64_t n, float* logits, bool last_only) const {
  const int64_t H = config_.hidden_size;
  const int64_t first = last_only ? n - 1 : 0, rows = n - first;
  std::vector<float> h(static_cast<size_t>(rows * H));
  cpu::rms_norm(h.data(), H, hidden + first * H, H, weights_.final_norm.data(), rows, H,
                static_cast<float>(config_.rms_norm_eps));
  cpu::linear(logits, config_.vocab_size, h.data(), H, rows, weights_.lm_head);  // [rows, V]
}

std::unique_ptr<CpuModel> make_cpu_model(ModelConfig c, ModelWeights w, MlaAttention mode) {
  if (c.is_mla()) return make_deepseek_v2_cpu(std::move(c), std::move(w), mode);
  return make_llama_cpu(std::move(c), std::move(w));
}

}  // namespace mlabench
