// CPU reference kernels: plain loops in float32 over weights in their stored dtype (BF16, F16 or F32, converted
// per row as they are read). These are the twins the CUDA kernels are tested against, so they favour clarity
// and well-defined rounding over speed; OpenMP spreads rows over cores.
#pragma once

#include <cstdint>

#include "engine/core/tensor.h"

namespace mlabench::cpu {

/// \brief y[r, :N] = x[r, :K] . w^T for r < n_rows; w is [N, K] (a PyTorch Linear weight). Row strides in
/// elements. Accumulates in float32.
void linear(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t n_rows, const TensorView& w);

/// \brief y[r, :K] = x[r, :N] . w for r < n_rows; w is [N, K]. (Applies W_UK^T in absorbed MLA.)
void linear_transposed(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t n_rows, const TensorView& w);

/// \brief y[r] = table[ids[r]] as float32; table is [V, H].
void embedding(float* y, const TensorView& table, const int32_t* ids, int64_t n_rows);

/// \brief RMSNorm over rows of `dim`: y = x * rsqrt(mean(x^2) + eps) * w, in float32. y may alias x.
void rms_norm(float* y, int64_t ldy, const float* x, int64_t ldx, const float* w, int64_t n_rows, int64_t dim,
              float eps);

/// \brief out[i] = silu(gate[i]) * up[i]. out may alias gate.
void silu_mul(float* out, const float* gate, const float* up, int64_t n);

/// \brief Rotates one vector of `dim` values in place. interleaved: pairs (2i, 2i+1) (DeepSeek, GPT-J style);
/// otherwise pairs (i, i + dim/2) (NeoX style, HF Llama weights). cos/sin are [dim/2].
void rope(float* x, int64_t dim, const float* cos, const float* sin, bool interleaved);

/// \brief Keys split in two parts so one routine serves MHA/GQA (part 2 empty), decompressed MLA
/// (k_nope | shared k_pe) and absorbed MLA (latent c | k_pe, values = the same latent c).
struct AttentionKeys {
  const float* k1 = nullptr;  // key part 1 of key j at k1 + j*k1_stride, d1 values
  int64_t k1_stride = 0;
  int64_t d1 = 0;
  const float* k2 = nullptr;  // key part 2, d2 values (may be 0)
  int64_t k2_stride = 0;
  int64_t d2 = 0;
  const float* v = nullptr;  // value j at v + j*v_stride, dv values
  int64_t v_stride = 0;
  int64_t dv = 0;
};

/// \brief out[:dv] = sum_j softmax_j(scale * (q1.k1_j + q2.k2_j)) v_j over keys j < n_keys. Softmax in float32
/// with the running max subtracted. `scores` is scratch of n_keys floats.
void attention_one_query(float* out, const float* q1, const float* q2, const AttentionKeys& keys, int64_t n_keys,
                         float scale, float* scores);

}  // namespace mlabench::cpu
