// The CPU reference engine's feed-forward kinds, shared by every architecture (engine/model/cpu_model.h): the
// dense SwiGLU MLP (also each routed and the shared experts) and DeepSeekMoE. Float32 math on the stored weights.
#pragma once

#include <cstdint>

#include "engine/model/config.h"
#include "engine/weights/model_weights.h"

namespace mlabench::cpu {

/// \brief down(silu(gate(x)) * up(x)) for x [n, hidden] -> out [n, hidden].
void swiglu_mlp(const MlpWeights& w, int64_t hidden, const float* x, int64_t n, float* out);

/// \brief DeepSeekMoE of layer L: out [T, H] = sum_j w_j expert_j(x) + shared(x), with the float32 router GEMM,
/// scoring and top-k of moe_route (engine/kernels/cpu/moe_router.h). Routed experts are applied expert by
/// expert in ascending order, as the reference accumulates.
void moe_ffn(const ModelConfig& c, const LayerWeights& L, const float* x, int64_t T, float* out);

}  // namespace mlabench::cpu
