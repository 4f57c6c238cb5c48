// Launchers of the GPU engine's CUDA kernels. Each takes the parameter struct its CPU twin takes
// (engine/kernels/twin/twin.h) plus a stream, enqueues its work and returns: no synchronisation, no allocation,
// so every launcher can be captured in a CUDA graph. Pointers in the struct are device pointers. A launcher
// checks its parameters (MLABENCH_CHECK) and the launch (cudaGetLastError), never the kernel's completion.
// Compiled only when the build has nvcc (MLABENCH_HAS_CUDA).
#pragma once

#include <cuda_runtime_api.h>

#include "engine/kernels/kernel_params.h"

namespace mlabench::kernels::cuda {

void embedding(const EmbeddingParams& p, cudaStream_t s);
void rms_norm(const RmsNormParams& p, cudaStream_t s);
/// Whether rms_norm moves p's rows in groups of 4 floats (the pointers and leading dimensions allow 16-byte access
/// and dim % 4 == 0): the form a product's own input norm reproduces bit for bit (norm_rows.cuh), so the products
/// take a norm only where this holds.
bool rms_norm_in_groups_of_4(const RmsNormParams& p);
void rope(const RopeParams& p, cudaStream_t s);
void silu_mul(const SiluMulParams& p, cudaStream_t s);
void cast(const CastParams& p, cudaStream_t s);
void cache_write(const CacheWriteParams& p, cudaStream_t s);
void latent_append(const LatentAppendParams& p, cudaStream_t s);
void kv_append(const KvAppendParams& p, cudaStream_t s);
void cache_gather(const CacheGatherParams& p, cudaStream_t s);
void log_softmax_gather(const LogSoftmaxGatherParams& p, cudaStream_t s);
void sample(const SampleParams& p, cudaStream_t s);
void random_fill(const RandomFillParams& p, cudaStream_t s);

void router(const RouterParams& p, cudaStream_t s);
/// Where norm_router runs: 1 <= norm.n_rows <= kNormRouterMaxRows, norm.out float32, the router's limits, and a
/// normalised row beside the router's scratch in 48 KB of shared memory (hidden + 8 x n_experts floats).
bool norm_router_supported(const NormRouterParams& p);
/// One launch (a programmatic dependent launch): every CTA normalises the rows and computes its two experts'
/// logits; the last CTA to arrive runs the top-k, writes residual, out and out2, and zeroes the counter. Its
/// outputs are the next launch's to read after its wait (moe_decode_ffn's gate/up kernel does).
void norm_router(const NormRouterParams& p, cudaStream_t s);
void moe_permute(const MoePermuteParams& p, cudaStream_t s);
void moe_gather(const MoeGatherParams& p, cudaStream_t s);
void moe_combine(const MoeCombineParams& p, cudaStream_t s);
void moe_pair_pointers(const MoePairPointersParams& p, cudaStream_t s);
void moe_grouped_gemm(const MoeGroupedGemmParams& p, cudaStream_t s);
void fp8_quantize_rows(const Fp8QuantizeRowsParams& p, cudaStream_t s);
void fp8_quantize_blocks(const Fp8QuantizeBlocksParams& p, cudaStream_t s);
/// Where skinny_gemm runs (BF16, m <= kSkinnyMaxRows, k and the leading dimensions and strides multiples of 8, 16-byte
/// aligned x and w); elsewhere the caller takes cuBLAS. skinny_gemm throws where this is false.
bool skinny_gemm_supported(const SkinnyGemmParams& p);
void skinny_gemm(const SkinnyGemmParams& p, cudaStream_t s);
/// Where moe_decode_ffn runs: BF16, hidden, inter and shared_inter multiples of 8, 1 <= top_k <= kMoeDecodeMaxTopK,
/// 16-byte aligned operands (the engine's batch-1 MoE layers); elsewhere the layer takes its PAIR path.
bool moe_decode_ffn_supported(const MoeDecodeFfnParams& p);
/// One token's MoE FFN in two programmatic dependent launches (kernel_params.h). topk_idx and topk_weight must come
/// from the launch right before (the router): the gate/up kernel reads them after its wait, the down kernel before.
void moe_decode_ffn(const MoeDecodeFfnParams& p, cudaStream_t s);
/// The same GEMM on Hopper's wgmma and TMA for prefill-sized row counts (BF16, or F8_E4M3 with its block scales on
/// QGMMA; every epilogue; rows_bound required), where moe_grouped_gemm_hopper_supported says this build and device
/// run it. moe_grouped_gemm sends F8_E4M3 here where fp8_exact_sums is false.
bool moe_grouped_gemm_hopper_supported(const MoeGroupedGemmParams& p);
void moe_grouped_gemm_hopper(const MoeGroupedGemmParams& p, cudaStream_t s);

void mla_prefill_attention(const MlaPrefillParams& p, cudaStream_t s);
/// Dispatches to the Hopper kernel (mla_decode_hopper) or the mma.sync one per MlaDecodeParams::kernel.
void mla_decode_attention(const MlaDecodeParams& p, cudaStream_t s);
/// The wgmma + TMA MLA decode kernel (mla_decode_hopper.cu): BF16 or F8_E4M3 cache, BF16 operands, kv_lora 512 +
/// rope 64, a block_size that is a multiple of 16, n_slots given, on an sm_90a build and a compute capability 9.0 GPU.
bool mla_decode_hopper_supported(const MlaDecodeParams& p);
void mla_decode_hopper(const MlaDecodeParams& p, cudaStream_t s);
void gqa_attention(const GqaAttentionParams& p, cudaStream_t s);

}  // namespace mlabench::kernels::cuda
