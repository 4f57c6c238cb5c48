// Parameter checks shared by each CUDA launcher and its CPU twin (defined in engine/kernels/twin/elementwise.cpp):
// one definition of what the twin and the kernel accept.
#pragma once

#include "engine/core/dtype.h"
#include "engine/kernels/kernel_params.h"

namespace mlabench::kernels::checks {

void check_embedding(const EmbeddingParams& p);
void check_rms_norm(const RmsNormParams& p);
/// A product's own input norm (SkinnyGemmParams::norm, Fp8SkinnyGemmParams::norm): a valid rms_norm whose out is
/// the product's x (the same pointer, leading dimension, type, m rows of k values) and which, adding delta, writes
/// residual_out. `kernel` names the caller in the error.
void check_input_norm(const RmsNormParams& n, const void* x, int64_t ldx, DType x_type, int64_t m, int64_t k,
                      const char* kernel);
/// The same test without the rms_norm check and without throwing (the launchers' *_supported ask it every step).
bool is_input_norm_of(const RmsNormParams& n, const void* x, int64_t ldx, DType x_type, int64_t m, int64_t k);
/// latent_append as the four ops it fuses (the twin runs them; the kernel checks each).
struct LatentAppendParts {
  RmsNormParams norm;
  RopeParams k_rope, q_rope;  // q_rope.n_rows 0: no q heads
  CacheWriteParams write;
};
LatentAppendParts latent_append_parts(const LatentAppendParams& p);
void check_latent_append(const LatentAppendParams& p);
/// kv_append as the ops it fuses: one rope over the q and k heads (adjacent, head_dim apart), two cache writes.
struct KvAppendParts {
  RopeParams rope;
  CacheWriteParams k_write, v_write;
};
KvAppendParts kv_append_parts(const KvAppendParams& p);
void check_kv_append(const KvAppendParams& p);
/// Defined in engine/kernels/twin/skinny_gemm.cpp.
void check_skinny_gemm(const SkinnyGemmParams& p);
void check_moe_decode_ffn(const MoeDecodeFfnParams& p);
void check_rope(const RopeParams& p);
void check_silu_mul(const SiluMulParams& p);
void check_cast(const CastParams& p);
void check_cache_write(const CacheWriteParams& p);
void check_cache_gather(const CacheGatherParams& p);
/// A KV pool is BF16, or F32 in the engine's float32 precision; `kernel` names the caller in the error.
void check_cache_type(DType t, const char* kernel);

}  // namespace mlabench::kernels::checks
