// CPU twins of the CUDA kernels (engine/kernels/cuda/kernels.h): the same parameter struct, host memory laid out
// exactly as the kernel's device memory, plain loops in float32 (double where the struct says so). They define
// what each kernel computes; tests/kernels/test_cuda_*.cpp compare kernel and twin on the GPU machine, and
// tests/kernels/test_twin_*.cpp check the twins against the CPU reference engine's ops in CI.
#pragma once

#include <cstdint>

#include "engine/kernels/kernel_params.h"

namespace mlabench::kernels::twin {

void embedding(const EmbeddingParams& p);
void rms_norm(const RmsNormParams& p);
void rope(const RopeParams& p);
void silu_mul(const SiluMulParams& p);
void cast(const CastParams& p);
void cache_write(const CacheWriteParams& p);
void latent_append(const LatentAppendParams& p);
void kv_append(const KvAppendParams& p);
void cache_gather(const CacheGatherParams& p);
/// One slot of an F8_E4M3 pool (Fp8SlotLayout) from the float32 values x[0, width), and value c of one back: what
/// cache_write and cache_gather do to a slot, for the attention twins that read the pool directly.
void write_fp8_slot(const Fp8SlotLayout& l, const float* x, uint8_t* slot);
float read_fp8_slot(const Fp8SlotLayout& l, const uint8_t* slot, int64_t c);
void log_softmax_gather(const LogSoftmaxGatherParams& p);
void sample(const SampleParams& p);
void random_fill(const RandomFillParams& p);

void router(const RouterParams& p);
/// rms_norm(p.norm), the float32 router GEMM into p.logits (sums over h ascending), router on those logits.
void norm_router(const NormRouterParams& p);
void moe_permute(const MoePermuteParams& p);
void moe_gather(const MoeGatherParams& p);
void moe_combine(const MoeCombineParams& p);
void moe_pair_pointers(const MoePairPointersParams& p);
void moe_grouped_gemm(const MoeGroupedGemmParams& p);
void fp8_quantize_rows(const Fp8QuantizeRowsParams& p);
void fp8_quantize_blocks(const Fp8QuantizeBlocksParams& p);
void skinny_gemm(const SkinnyGemmParams& p);
void moe_decode_ffn(const MoeDecodeFfnParams& p);
/// The twin of gpu::MoeLayer::forward (engine/gpu/moe_layer.h): the same layer on host memory, through the twins
/// above and plain-loop GEMMs. Ignores graph_safe (the host has nothing to synchronise).
void moe_layer(const MoeLayerParams& p);

void mla_prefill_attention(const MlaPrefillParams& p);
void mla_decode_attention(const MlaDecodeParams& p);
void gqa_attention(const GqaAttentionParams& p);

}  // namespace mlabench::kernels::twin
