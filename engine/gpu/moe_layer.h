// MoeLayer: one DeepSeekMoE layer on the GPU, used by every MoE architecture (kernels::MoeLayerParams says what
// it computes; kernels::twin::moe_layer is its CPU twin). Router GEMM (float32) and top-k kernel, tokens permuted
// into expert order, routed experts through one of four GEMM strategies chosen by the row count, weighted
// combine, shared experts added:
//   - PAIR (n_tokens * top_k <= n_experts): one product per (token, expert) pair, skinny_gemm with the expert index
//     on the device and the SwiGLU epilogue (MLABENCH_SKINNY_GEMM=0: pointer arrays and a batched cuBLAS call);
//   - PADDED (up to kMoePaddedMaxTokens tokens): every expert at capacity n_tokens rows, a strided batched GEMM;
//   - COMPACT, graph_safe (decode steps in CUDA graphs): expert-contiguous rows and moe_grouped_gemm, whose row
//     counts stay on the device: no host synchronisation, so every decode batch size can be captured;
//   - COMPACT otherwise (prefill chunks): the row counts come back to the host once per layer and cuBLAS's
//     grouped GEMM (or one GEMM per expert with rows) runs over the experts that have rows;
//   - on an H100/H200 with BF16 weights both COMPACT cases run moe_grouped_gemm_hopper instead (wgmma fed by TMA,
//     counts on the device, SwiGLU fused into the gate/up GEMM's epilogue), and take the PADDED token counts too
//     (T x top_k rows computed instead of n_experts x T, only routed experts' weights read); MLABENCH_MOE_GEMM=mma
//     keeps the paths above, for benchmarks that compare them and for the tests of the PADDED layout. There the
//     shared experts run on a second stream, forked after x_c and joined before the routed experts;
//   - FP8 weights (--weights-dtype fp8, the scale grids in MoeLayerParams): COMPACT rows at every token count, the
//     expert inputs quantised to e4m3 in 1 x 128 groups and moe_grouped_gemm's FP8 kernel (W8A8, counts on the
//     device, so prefill and graph-captured decode take the same path); the shared experts through cuBLASLt's
//     block-scaled GEMM (Fp8Linear).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "engine/gpu/blas.h"
#include "engine/kernels/kernel_params.h"

namespace mlabench::gpu {

class MoeLayer {
 public:
  /// Scratch for steps of up to max_tokens rows of a model with these expert shapes (allocated here, once).
  /// fp8: the weights are e4m3 with block scales (MoeLayerParams' scale grids), scratch for their quantised inputs.
  /// local_experts: the routed experts this rank holds under expert parallelism (MoeLayerParams::held_experts; 0:
  /// all n_experts). Such a layer never takes PAIR rows or moe_decode_ffn (both index the weights by the token's
  /// experts): its pairs with another rank's experts get no row, and out its held experts' share.
  MoeLayer(Blas& blas, cudaStream_t stream, DType dtype, int64_t hidden, int64_t inter, int64_t shared_inter,
           int32_t n_experts, int32_t top_k, int64_t max_tokens, bool fp8 = false, int32_t local_experts = 0);
  ~MoeLayer();
  MoeLayer(const MoeLayer&) = delete;
  MoeLayer& operator=(const MoeLayer&) = delete;

  /// Enqueues the layer on the stream (p's pointers are device pointers, p.n_tokens <= max_tokens). With
  /// p.graph_safe nothing is read back to the host, so the call can be captured in a CUDA graph.
  /// norm: the post-attention norm that writes p.x (its out, float32) and p.x_c (its out2) from the residual
  /// stream, not yet run: the layer runs it first, at decode in one launch with the router (norm_router).
  void forward(const kernels::MoeLayerParams& p, const kernels::RmsNormParams* norm = nullptr);

  /// Bytes of device scratch this layer holds.
  uint64_t scratch_bytes() const;

  /// Forward calls that ran the shared experts on the layer's second stream, beside the router, permute and gather
  /// (BF16 COMPACT rows on the Hopper grouped GEMM; FP8 weights of a BF16 model at 2 or more tokens, beside the
  /// routed gate/up too; MLABENCH_MOE_SHARED_STREAM=0 at construction turns it off).
  int64_t shared_side_runs() const;

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace mlabench::gpu
