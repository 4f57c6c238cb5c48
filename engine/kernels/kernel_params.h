// Parameter structs of the GPU engine's kernels, shared by the CUDA launchers (engine/kernels/cuda/kernels.h)
// and their plain CPU twins (engine/kernels/twin/twin.h). Each kernel takes exactly one of these: the twin reads
// and writes host memory laid out as the kernel's device memory, so a test fills host buffers, runs the twin,
// copies the same buffers to the device, runs the kernel and compares.
//
// Conventions (the GPU engine's numerics):
//   - activations are float32 between kernels; GEMM operands are in the weights' stored dtype (BF16, F16 or
//     F32), so kernels that feed a GEMM write `out_type`;
//   - the KV cache is BF16 (uint16_t bit patterns) or, in the engine's float32 precision, F32 (`cache_type`);
//     it is paged: a pool of n_blocks * block_size token slots per layer, `width` values per slot; a sequence's token at position p lives in slot
//     block_table[seq * max_blocks + p / block_size] * block_size + p % block_size;
//   - a batch is "varlen": n_seqs sequences, sequence s owns new-token rows [cu_q[s], cu_q[s+1]) and has
//     kv_len[s] tokens in the cache after those rows are appended, so new row i of sequence s sits at position
//     kv_len[s] - (cu_q[s+1] - cu_q[s]) + i and attends causally to positions <= that;
//   - leading dimensions (ld*) count elements, not bytes.
#pragma once

#include <cmath>
#include <cstdint>

#include "engine/core/dtype.h"

// Members both the host and the kernels call (kernel_params.h is plain C++ outside nvcc).
#if defined(__CUDACC__)
#define MLABENCH_HD __host__ __device__
#else
#define MLABENCH_HD
#endif

namespace mlabench::kernels {

// ---- elementwise ---------------------------------------------------------------------------------------

/// out[r, :] = float(table[ids[r], :]); table [vocab, hidden] in table_type.
struct EmbeddingParams {
  float* out = nullptr;  // [n_rows, hidden]
  const void* table = nullptr;
  DType table_type = DType::BF16;
  int64_t hidden = 0;
  const int32_t* ids = nullptr;  // [n_rows]
  int64_t n_rows = 0;
};

/// if delta: residual += delta (written back, or to residual_out); then out = residual * rsqrt(mean(residual^2) +
/// eps) * weight, in float32, stored as out_type. out may alias residual when out_type is F32 and ld_out ==
/// ld_residual.
struct RmsNormParams {
  float* residual = nullptr;  // [n_rows, dim] at ld_residual
  int64_t ld_residual = 0;
  const float* delta = nullptr;  // optional [n_rows, dim] at ld_delta
  int64_t ld_delta = 0;
  void* out = nullptr;
  DType out_type = DType::F32;
  int64_t ld_out = 0;
  const float* weight = nullptr;  // [dim]
  int64_t n_rows = 0;
  int64_t dim = 0;
  float eps = 1e-6f;
  // Optional second copy of the normalised rows in another type, from the same pass (the MoE layer's router reads
  // float32, its experts BF16: one kernel instead of a norm and a cast). Must not alias residual or out.
  void* out2 = nullptr;
  DType out2_type = DType::BF16;
  int64_t ld_out2 = 0;
  // Optional: with delta, residual + delta is written here (at ld_residual_out) and residual is only read. The
  // engine keeps its residual stream in two buffers so that a projection that normalises its own input rows in
  // every CTA (SkinnyGemmParams::norm) never writes the row the other CTAs read. Must not alias residual or delta.
  float* residual_out = nullptr;
  int64_t ld_residual_out = 0;
};

/// Rotates `dim` values of each head in place: x[r, h*head_stride + offset + ...] for h < n_heads, with the
/// angle table of position positions[r]. interleaved: pairs (2i, 2i+1) (DeepSeek); else (i, i + dim/2) (Llama).
struct RopeParams {
  float* x = nullptr;
  int64_t ld = 0;
  int64_t n_rows = 0;
  int64_t n_heads = 1;
  int64_t head_stride = 0;
  int64_t offset = 0;
  int64_t dim = 0;
  bool interleaved = true;
  const float* cos = nullptr;  // [n_positions, dim/2], multiplier already applied (engine/model/rope.h)
  const float* sin = nullptr;  // [n_positions, dim/2]
  const int32_t* positions = nullptr;  // [n_rows]
};

/// out[r, i] = silu(gate_up[r, i]) * gate_up[r, inter + i] for i < inter (gate and up from one fused GEMM).
struct SiluMulParams {
  void* out = nullptr;
  DType out_type = DType::F32;
  int64_t ld_out = 0;
  const float* gate_up = nullptr;  // [n_rows, 2*inter] at ld_in
  int64_t ld_in = 0;
  int64_t inter = 0;
  int64_t n_rows = 0;
};

/// out[r, c] = in[r, c] converted from in_type to out_type (round to nearest even).
struct CastParams {
  void* out = nullptr;
  DType out_type = DType::BF16;
  int64_t ld_out = 0;
  const void* in = nullptr;
  DType in_type = DType::F32;
  int64_t ld_in = 0;
  int64_t n_rows = 0;
  int64_t n_cols = 0;
};

/// One slot of an F8_E4M3 KV pool (--kv-cache-dtype fp8, issue 20): of a slot's `width` values the first
/// `quantised` go through e4m3 in groups of 128 inside segments of `segment` values (MLA: the kv_lora latent, one
/// segment; GQA/MHA: each head, so a group never spans two heads), each group with a float32 scale
/// fp8_block_scale(amax) (engine/core/fp8.h: code = e4m3(x / scale), value = code x scale, as fake_quantize_fp8_row);
/// the rest (MLA's RoPE part) in BF16. Bytes: the codes, then the scales, then the BF16 values, each region padded
/// to 16 bytes (MLA at V2 shapes: 512 + 4 x 4 + 64 x 2 = 656, FlashMLA's layout; GQA 8 x 128: 1,024 + 32 a pool).
struct Fp8SlotLayout {
  int64_t width = 0, quantised = 0, segment = 0;
  /// The two layouts the engine's pools use: MLA's latent (kv_lora quantised as one segment, the RoPE part in BF16)
  /// and a GQA/MHA pool's heads (each head a segment).
  MLABENCH_HD static constexpr Fp8SlotLayout mla(int64_t kv_lora, int64_t rope) {
    return {kv_lora + rope, kv_lora, kv_lora};
  }
  MLABENCH_HD static constexpr Fp8SlotLayout heads(int64_t n_kv_heads, int64_t head_dim) {
    return {n_kv_heads * head_dim, n_kv_heads * head_dim, head_dim};
  }
  MLABENCH_HD static constexpr int64_t pad16(int64_t b) { return (b + 15) / 16 * 16; }
  MLABENCH_HD constexpr int64_t groups_per_segment() const { return (segment + 127) / 128; }
  MLABENCH_HD constexpr int64_t groups() const { return segment > 0 ? quantised / segment * groups_per_segment() : 0; }
  MLABENCH_HD constexpr int64_t scale_offset() const { return pad16(quantised); }
  MLABENCH_HD constexpr int64_t bf16_offset() const { return scale_offset() + pad16(4 * groups()); }
  MLABENCH_HD constexpr int64_t bytes() const { return bf16_offset() + pad16(2 * (width - quantised)); }
};

/// cache[slots[r] * width + c] = cache_type(src[r * ld_src + c]) for c < width: appends new tokens to a paged pool.
/// F8_E4M3 pools: slot slots[r] is the Fp8SlotLayout {width, fp8_quantised, fp8_segment} of the row's values, slots
/// bytes() apart.
struct CacheWriteParams {
  void* cache = nullptr;  // one layer's pool [n_slots, width]
  DType cache_type = DType::BF16;  // BF16, F32 or F8_E4M3
  int64_t width = 0;
  const float* src = nullptr;  // [n_rows, width] at ld_src
  int64_t ld_src = 0;
  const int64_t* slots = nullptr;  // [n_rows]
  int64_t n_rows = 0;
  int64_t fp8_quantised = 0, fp8_segment = 0;  // F8_E4M3 only
  MLABENCH_HD Fp8SlotLayout fp8_layout() const { return {width, fp8_quantised, fp8_segment}; }
};

/// MLA's new latent rows in one pass (the chain rms_norm -> rope -> rope -> cache_write of a layer, fused): for each
/// row r, latent[r, :kv_lora] = rms_norm(latent[r, :kv_lora]) * norm_weight (in place, float32), latent[r, kv_lora:
/// kv_lora + rope_dim] rotated at positions[r], q's rope columns of n_heads heads rotated in place (n_heads 0: none),
/// then latent[r, :kv_lora + rope_dim] appended to the paged cache at slots[r]. Twin: those four twins in order.
struct LatentAppendParams {
  float* latent = nullptr;  // [n_rows, >= kv_lora + rope_dim] at ld
  int64_t ld = 0;
  int64_t kv_lora = 0, rope_dim = 0;
  const float* norm_weight = nullptr;  // [kv_lora]
  float eps = 1e-6f;
  float* q = nullptr;  // [n_rows, ...] at ld_q: head h's rope columns start at h * q_head_stride + q_rope_offset
  int64_t ld_q = 0, n_heads = 0, q_head_stride = 0, q_rope_offset = 0;
  bool interleaved = true;
  const float* cos = nullptr;  // [n_positions, rope_dim / 2]
  const float* sin = nullptr;
  const int32_t* positions = nullptr;  // [n_rows]
  void* cache = nullptr;  // one layer's pool [n_slots, kv_lora + rope_dim]
  DType cache_type = DType::BF16;  // F8_E4M3: Fp8SlotLayout::mla(kv_lora, rope_dim)
  const int64_t* slots = nullptr;  // [n_rows]
  int64_t n_rows = 0;
};

/// Grouped-query attention's new rows in one pass (the chain rope(q heads) -> rope(k heads) -> cache_write(k) ->
/// cache_write(v) of a layer, fused): qkv[r] = [n_heads q heads | n_kv_heads k heads | n_kv_heads v heads], each
/// head_dim wide; columns [0, rope_dim) of every q and k head rotated in place at positions[r] (RopeParams' pairing
/// and rounding), then row r's k heads (rotated) and v heads written to their pools at slots[r]. Twin: those four
/// ops in order (checks::kv_append_parts).
struct KvAppendParams {
  float* qkv = nullptr;  // [n_rows, >= (n_heads + 2 n_kv_heads) head_dim] at ld
  int64_t ld = 0;
  int64_t n_heads = 0, n_kv_heads = 0, head_dim = 0, rope_dim = 0;
  bool interleaved = true;
  const float* cos = nullptr;  // [n_positions, rope_dim / 2]
  const float* sin = nullptr;
  const int32_t* positions = nullptr;  // [n_rows]
  void* k_cache = nullptr;  // one layer's pools [n_slots, n_kv_heads * head_dim]
  void* v_cache = nullptr;
  DType cache_type = DType::BF16;  // F8_E4M3: each pool Fp8SlotLayout::heads(n_kv_heads, head_dim)
  const int64_t* slots = nullptr;  // [n_rows]
  int64_t n_rows = 0;
};

/// Copies every cached token of each sequence out of a paged pool into contiguous rows of out_type (float32, or the
/// cache's own type as stored): out[cu_kv[s] + p, :] = cache[slot(s, p), :] for p < kv_len[s]. (MLA prefill
/// decompresses these.)
struct CacheGatherParams {
  void* out = nullptr;  // [cu_kv[n_seqs], width] at ld_out, of out_type
  int64_t ld_out = 0;
  // F32, or the cache's own type (a plain copy: the BF16 flash prefill reads the BF16 latent as stored).
  DType out_type = DType::F32;
  const void* cache = nullptr;
  DType cache_type = DType::BF16;  // BF16, F32, or F8_E4M3 (out_type F32 or BF16: each value code x scale, rounded)
  int64_t width = 0;
  int64_t fp8_quantised = 0, fp8_segment = 0;  // F8_E4M3: the slot layout, as CacheWriteParams
  MLABENCH_HD Fp8SlotLayout fp8_layout() const { return {width, fp8_quantised, fp8_segment}; }
  int32_t block_size = 0;
  const int32_t* block_tables = nullptr;  // [n_seqs, max_blocks]
  int32_t max_blocks = 0;
  const int32_t* kv_len = nullptr;  // [n_seqs]
  const int32_t* cu_kv = nullptr;   // [n_seqs + 1] output row offsets (prefix sums of kv_len)
  int32_t n_seqs = 0;
};

/// logprob[r] = log_softmax(logits[r, :])[targets[r]] (computed in double); is_greedy[r] = 1 iff targets[r] is
/// the argmax of the row (ties to the lowest id, as the CPU engine).
struct LogSoftmaxGatherParams {
  const float* logits = nullptr;  // [n_rows, vocab] at ld
  int64_t ld = 0;
  int64_t n_rows = 0;
  int64_t vocab = 0;
  const int32_t* targets = nullptr;  // [n_rows]
  double* logprob = nullptr;         // [n_rows]
  int32_t* is_greedy = nullptr;      // [n_rows]
};

/// One token per row. temperature[r] <= 0: argmax (ties to the lowest id). Otherwise softmax(logits / T) cut to
/// the smallest set of highest-logit tokens whose mass reaches top_p[r] (ties at the cut kept, all of them),
/// renormalised, sampled with u = sampling_uniform(seed[r], step[r]) by walking token ids in ascending order.
/// So that kernel and twin agree bit for bit, each weight exp((l - max) / T) comes from a polynomial built of
/// correctly rounded float operations (about 2e-7 relative), is truncated to an integer multiple of 2^-40 of the
/// top token's weight, and the weights are summed as integers: tokens under 2^-40 of the top one are never drawn.
/// The draw depends only on (seed, step): a request samples the same tokens in any batch.
struct SampleParams {
  const float* logits = nullptr;  // [n_rows, vocab] at ld
  int64_t ld = 0;
  int64_t n_rows = 0;
  int64_t vocab = 0;
  const float* temperature = nullptr;  // [n_rows]
  const float* top_p = nullptr;        // [n_rows]
  const uint64_t* seed = nullptr;      // [n_rows]
  const int64_t* step = nullptr;       // [n_rows] index of the token being drawn within its request
  int32_t* out = nullptr;              // [n_rows]
};

/// The uniform draw in [0, 1) of SampleParams: splitmix64(seed ^ splitmix64(step)) >> 11 scaled by 2^-53.
/// Defined here so both twins compute it the same way.
inline double sampling_uniform(uint64_t seed, int64_t step) {
  auto mix = [](uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  };
  return static_cast<double>(mix(seed ^ mix(static_cast<uint64_t>(step))) >> 11) * 0x1.0p-53;
}

/// Random weights on the device, bit-identical to random_weights() on the host (engine/weights/
/// random_weights.cpp): element i of a matrix is uniform on [-sqrt(3)*0.02, +sqrt(3)*0.02] from
/// splitmix64(key + i) with key = splitmix64(seed ^ fnv1a64(tensor name)), stored as out_type; norm (1-D)
/// tensors are all ones (fill_ones). A block of a larger tensor (a rank's slice of rows and columns, issue 22) is
/// generated in place with the whole tensor's element numbering: element i of out is whole-tensor element
/// `first + i` when cols == 0, else `first + (i / cols) * ld + i % cols` (out holds rows of `cols` elements of a
/// whole tensor whose rows are `ld` elements apart).
struct RandomFillParams {
  void* out = nullptr;
  DType out_type = DType::BF16;
  int64_t n = 0;
  uint64_t key = 0;
  bool fill_ones = false;
  int64_t first = 0;  // whole-tensor index of out's first element
  int64_t cols = 0;   // 0: out is contiguous in the whole tensor; else the width of out's rows
  int64_t ld = 0;     // with cols: the whole tensor's row stride (>= cols)
};

/// Whole-tensor element index of element i of a RandomFillParams block (host and device share this definition).
MLABENCH_HD inline int64_t random_fill_index(int64_t first, int64_t cols, int64_t ld, int64_t i) {
  return cols == 0 ? first + i : first + (i / cols) * ld + i % cols;
}

// ---- DeepSeekMoE -----------------------------------------------------------------------------------------

enum class RouterMethod : int32_t { GREEDY = 0, GROUP_LIMITED_GREEDY = 1 };
/// The per-expert score: softmax over the experts, or the sigmoid of each logit (config ScoringFunc).
enum class RouterScoring : int32_t { SOFTMAX = 0, SIGMOID = 1 };

/// As cpu::moe_route (engine/kernels/cpu/moe_router.h): scores (softmax or sigmoid) of float32 router logits,
/// top-k greedy or group-limited (group score = max expert score), weights = score * scaling, or renormalised
/// when norm_topk_prob.
struct RouterParams {
  const float* logits = nullptr;  // [n_tokens, n_experts]
  int64_t n_tokens = 0;
  int32_t n_experts = 0;
  int32_t top_k = 0;
  RouterMethod method = RouterMethod::GREEDY;
  int32_t n_group = 1;
  int32_t topk_group = 1;
  bool norm_topk_prob = false;
  float routed_scaling_factor = 1.0f;
  int32_t* topk_idx = nullptr;   // [n_tokens, top_k], descending score, ties to the lower index
  float* topk_weight = nullptr;  // [n_tokens, top_k]
  RouterScoring scoring = RouterScoring::SOFTMAX;
  /// Expert parallelism (--ep): this rank holds experts [held_begin, held_begin + held_count), and topk_idx gets
  /// their local ids (expert - held_begin) or kExpertElsewhere for an expert another rank holds (its weight written
  /// all the same: the choice and the weights are every rank's). held_count 0: every expert here, ids as chosen.
  int32_t held_begin = 0;
  int32_t held_count = 0;
};
/// topk_idx of a (token, expert) pair whose expert another rank holds (RouterParams::held_count): moe_permute gives
/// it no row (rank -1), the gather and the combine skip it.
inline constexpr int32_t kExpertElsewhere = -1;

/// A MoE layer's entry at decode in one launch (issue 20 round 7): what rms_norm (norm: residual += delta, then the
/// post-attention RMSNorm into out, float32, and out2, the experts' dtype), the router's float32 GEMM
/// (logits[t, e] = sum_h out[t, h] * router_w[e, h]) and router (top-k into router.topk_idx / topk_weight) do in
/// three launches, value for value the same arithmetic (the sums of squares and of products in another order).
/// router.logits and router.n_tokens are ignored (logits and norm.n_rows rule).
struct NormRouterParams {
  RmsNormParams norm;                // out: float32, dim = hidden; out2 optional (BF16, F16 or F32)
  const float* router_w = nullptr;   // [router.n_experts, norm.dim] float32
  float* logits = nullptr;           // [norm.n_rows, router.n_experts] float32, written
  RouterParams router;               // experts, top-k, method, scoring and the outputs
  uint32_t* arrivals = nullptr;      // one counter: zero before each launch, left zero (the GPU kernel's last CTA)
};
/// Rows up to which norm_router runs (every CTA normalises every row; decode batches).
inline constexpr int64_t kNormRouterMaxRows = 16;

/// Sorts the n_tokens * top_k (token, expert) pairs by expert, stably (pair p = t * top_k + j, ascending p
/// within an expert): counts[e], offsets[e] (exclusive prefix sum, offsets[n_experts] = total) and rank[p] (the
/// pair's index among its expert's pairs). Deterministic.
struct MoePermuteParams {
  const int32_t* topk_idx = nullptr;  // [n_tokens * top_k]
  int64_t n_tokens = 0;
  int32_t top_k = 0;
  int32_t n_experts = 0;
  int32_t* counts = nullptr;   // [n_experts]
  int32_t* offsets = nullptr;  // [n_experts + 1]
  int32_t* rank = nullptr;     // [n_tokens * top_k]
  // Optional scratch of moe_permute_scratch_ints(n_tokens * top_k, n_experts) ints: with it, a call of at least
  // kMoePermuteParallelChunks chunks of kMoePermuteChunk pairs ranks the chunks in parallel (three launches)
  // instead of walking them in one block. Same outputs either way.
  int32_t* chunk_scratch = nullptr;
};
inline constexpr int64_t kMoePermuteChunk = 1024;
inline constexpr int64_t kMoePermuteParallelChunks = 4;
inline constexpr int64_t moe_permute_scratch_ints(int64_t n_pairs, int32_t n_experts) {
  return (n_pairs + kMoePermuteChunk - 1) / kMoePermuteChunk * n_experts;
}

/// Where pair p's row lives in the expert-ordered buffers:
///   PAIR:    row p (one GEMV per pair; the small-batch decode path);
///   PADDED:  expert * capacity + rank[p] (a strided batched GEMM over all experts, capacity rows each);
///   COMPACT: offsets[expert] + rank[p] (grouped GEMM over the experts that have rows).
enum class MoeRowMode : int32_t { PAIR = 0, PADDED = 1, COMPACT = 2 };

struct MoeRowMap {
  MoeRowMode mode = MoeRowMode::COMPACT;
  const int32_t* topk_idx = nullptr;  // [n_tokens * top_k]
  const int32_t* rank = nullptr;      // [n_tokens * top_k]
  const int32_t* offsets = nullptr;   // [n_experts + 1]
  int32_t capacity = 0;               // PADDED only
};

/// out[row(p), :] = x[p / top_k, :] for every pair p: token rows copied into expert order (elem_type values,
/// the GEMM dtype). Rows of `out` that no pair maps to are left untouched.
/// The FP8 form (out_q set, out null; elem_type BF16 or F32): each gathered row quantised as fp8_quantize_rows does
/// (1 x 128 groups), its codes to out_q[row(p), :] at ld_out and its scales rows major to out_scale[row(p) *
/// ceil(hidden / 128) + g]: what the FP8 grouped expert GEMM reads, in one launch instead of a gather and a quantiser
/// (and without the gathered rows' BF16 round trip).
struct MoeGatherParams {
  void* out = nullptr;
  int64_t ld_out = 0;
  const void* x = nullptr;  // [n_tokens, hidden] at ld_x
  int64_t ld_x = 0;
  DType elem_type = DType::BF16;
  int64_t hidden = 0;
  int64_t n_tokens = 0;
  int32_t top_k = 0;
  MoeRowMap map;
  uint8_t* out_q = nullptr;      // the FP8 form's codes [rows, hidden] at ld_out
  float* out_scale = nullptr;    // the FP8 form's scales [rows, ceil(hidden / 128)]
};

/// out[t, :] (+)= sum_j topk_weight[t, j] * y[row(t * top_k + j), :], j ascending, in float32. accumulate:
/// add to out (the shared experts' output already there); else overwrite. y_bf16 in place of y: the expert rows in
/// BF16 (moe_grouped_gemm's STORE_DT), widened exactly.
struct MoeCombineParams {
  float* out = nullptr;  // [n_tokens, hidden] at ld_out
  int64_t ld_out = 0;
  const float* y = nullptr;  // expert outputs in expert order, at ld_y
  int64_t ld_y = 0;
  const float* topk_weight = nullptr;  // [n_tokens, top_k]
  int64_t hidden = 0;
  int64_t n_tokens = 0;
  int32_t top_k = 0;
  bool accumulate = true;
  MoeRowMap map;
  const uint16_t* y_bf16 = nullptr;  // in place of y: the expert rows in BF16, at ld_y
};

/// Few-row GEMM, weight-streaming (decode at small batches): for b < batch,
///   y_b[m, n] = beta * y_b + x_b[m, k] . w_b[n, k]^T,
/// x_b = x + b * stride_x, y_b = y + b * stride_y, w_b = w + (w_index ? w_index[b] : b) * stride_w (elements;
/// w_index on the device: a MoE layer's expert per (token, expert) pair). Every weight is read once, 16 bytes a
/// load, with all m rows of x applied to it, so the kernel runs at the copy bandwidth while m is small. beta is 0
/// (overwrite) or 1 (accumulate). Twin: a float32 loop (engine/kernels/twin/skinny_gemm.cpp).
struct SkinnyGemmParams {
  float* y = nullptr;
  int64_t ldy = 0, stride_y = 0;
  const void* x = nullptr;  // in dtype
  int64_t ldx = 0, stride_x = 0;
  const void* w = nullptr;  // in dtype
  int64_t ldw = 0, stride_w = 0;
  const int32_t* w_index = nullptr;  // optional [batch]
  DType dtype = DType::BF16;
  int64_t m = 0, n = 0, k = 0, batch = 1;
  float beta = 0.0f;
  /// SwiGLU epilogue: w_b holds 2n rows (gate rows [0, n), then the matching up rows), and instead of y the kernel
  /// writes act_b[m, n] = silu(x . gate^T) * (x . up^T) in dtype (act_b = act + b * stride_act), as silu_mul
  /// computes it from the float32 products; y and beta are unused.
  bool swiglu = false;
  /// Without swiglu, a non-null act takes the product itself rounded to dtype (BF16/F16) instead of y (beta 0).
  void* act = nullptr;
  int64_t ld_act = 0, stride_act = 0;
  /// w_b is [k, n] row-major (ldw >= n): y_b = x_b . w_b, no transpose (MLA's W_UK applied to the query). Its
  /// kernel takes at most kSkinnyKnMaxRows rows, BF16, no w_index, no swiglu.
  bool w_kn = false;
  /// x is float32 (BF16 weights only), rounded to BF16 as it is read: the product equals that of x cast to BF16
  /// first (MLA's query and attention output feed W_UK and W_UV without a cast kernel between).
  bool x_f32 = false;
  /// The caller's promise that w_index was written two or more launches before this one (every launch between a
  /// programmatic dependent launch that releases its dependents only after its own wait, pdl.cuh): the kernel then
  /// reads it, and starts its weight stream, before the PDL wait (a MoE layer's routed pairs: the router ran before
  /// the gather, the gate/up GEMV before the down GEMV).
  bool w_index_early = false;
  /// Two products of one input in one launch (batch 1, float32 y, no act / swiglu / w_kn): with y2 set, weight rows
  /// [0, n_y) write y as usual and rows [n_y, n) write y2[i, j - n_y] at ldy2 (MLA's q_proj and kv_a_proj, stored
  /// as one [n, k] block: a decode layer's first two GEMVs as one weight stream). The sums are those of two calls.
  float* y2 = nullptr;
  int64_t ldy2 = 0, n_y = 0;
  /// The input's RMSNorm in the product's own launch (norm.weight set; a decode step's input_layernorm before its
  /// first projections, post_attention_layernorm before the router): x is norm.out (ldx = norm.ld_out, dtype =
  /// norm.out_type, m = norm.n_rows, k = norm.dim, batch 1, no w_kn / x_f32; the SwiGLU epilogue too: a dense MLP's
  /// gate/up after post_attention_layernorm), and instead of reading it
  /// the kernel computes its values from the norm's inputs in every CTA, exactly as rms_norm computes them (bit for
  /// bit on the GPU: rms_norm's order of the sum of squares); the CTAs also write the norm's outputs (out, out2,
  /// residual_out), so the result is rms_norm's followed by the product's, one launch fewer. A norm with delta must
  /// write residual_out (no CTA may change the residual row the others read).
  RmsNormParams norm{};
  /// MLA's latent_append beside the product in the same launch (append.latent set; the w_kn form only: a decode
  /// step's W_UK, issue 16 round 13): extra CTAs (one more grid row) run latent_append(append) while the others
  /// compute the product, one launch fewer. The two must be independent: the product neither reads nor writes what
  /// the append writes (W_UK reads q's nope columns; the append rotates q's rope columns, normalises the latent row
  /// and writes the cache). The result is latent_append's followed by the product's.
  LatentAppendParams append{};
};

/// Rows up to which skinny_gemm runs (the kernel keeps m x rows-per-CTA sums in registers).
inline constexpr int64_t kSkinnyMaxRows = 8;
/// Rows up to which skinny_gemm takes an input norm (SkinnyGemmParams::norm): the engine's decode rows at 1-2.
inline constexpr int64_t kSkinnyNormMaxRows = 2;
/// Rows up to which the w_kn form runs (its k groups' sums are reduced in shared memory, m x 128 floats each).
inline constexpr int64_t kSkinnyKnMaxRows = 2;
/// Rows up to which the engine sends a product to skinny_gemm rather than cuBLAS: on an H200 it streams the weights
/// faster than cuBLAS at 1 and 2 rows (V2-Lite q_proj: 6.2 us against 12.7 at one row) and slower from 4 rows,
/// where its sums leave one CTA a SM and too few loads in flight (bench_skinny_gemm, docs/perf-notes.md).
inline constexpr int64_t kSkinnyEngineRows = 2;

/// One token's routed and shared experts (a batch-1 decode step's MoE FFN) in two launches instead of six (shared
/// gate/up, gather, routed gate/up, shared down, routed down, combine): act = [shared SI | routed pair 0 I | ... |
/// pair K-1 I] with act[u] = silu(x . gate_u) * (x . up_u) rounded to BF16, then
///   out[j] = sum_u s(u) * act[u] * down_u[j]   (float32; s = 1 on the shared columns, topk_weight[k] on pair k's),
/// where gate_u, up_u, down_u are the shared experts' rows / column for u < SI and expert topk_idx[k]'s otherwise.
/// out is written, not accumulated. The same layer as MoeLayerParams's PAIR path at one token; the sums are in
/// another order (each output one float32 sum over the concatenated columns), so the two agree to float32 rounding.
struct MoeDecodeFfnParams {
  const void* x = nullptr;  // [hidden] BF16: the token's expert input (x_c)
  const int32_t* topk_idx = nullptr;     // [top_k]
  const float* topk_weight = nullptr;    // [top_k]
  const void* experts_gate_up = nullptr;  // [n_experts, 2 inter, hidden] BF16: gate rows, then up rows
  const void* experts_down = nullptr;     // [n_experts, hidden, inter] BF16
  const void* shared_gate_up = nullptr;   // [2 shared_inter, hidden] BF16 (unused when shared_inter is 0)
  const void* shared_down = nullptr;      // [hidden, shared_inter] BF16
  int64_t hidden = 0, inter = 0, shared_inter = 0;
  int32_t n_experts = 0, top_k = 0;
  void* act = nullptr;   // [shared_inter + top_k * inter] BF16 scratch
  float* out = nullptr;  // [hidden]
  /// FP8 weights (issue 20), where experts_gate_up_scale is set: all four matrices e4m3 with 128 x 128 block
  /// scales, a scale row fp8_weight_scale_ld(columns) floats, an expert's grid right after the previous one's
  /// (gate/up 2 inter / 128 block rows, down hidden / 128). x and the act columns are quantised in 1 x 128 groups
  /// inside the kernels (fp8_quantize_rows' codes and scales; act over the concatenated columns [shared | pair 0 |
  /// ...], whose groups do not straddle two matrices) and each group's e4m3 products summed in float32 times
  /// x_scale * w_scale: the FP8 MoE layer's W8A8. hidden, inter and shared_inter must be multiples of 128.
  const float* experts_gate_up_scale = nullptr;
  const float* experts_down_scale = nullptr;
  const float* shared_gate_up_scale = nullptr;
  const float* shared_down_scale = nullptr;
  /// FP8 scratch, required with FP8 weights: act's e4m3 codes [U] and group scales [U / 128] (U = shared_inter +
  /// top_k inter; fp8_quantize_rows' codes and scales of act), and one arrival counter a group [U / 128], zero before
  /// the first launch and left zero by every launch. The last gate/up CTA of a group to finish quantises it, so the
  /// down kernel reads codes instead of quantising act again in each of its hidden / 4 CTAs. The twin writes the
  /// codes and scales too.
  uint8_t* act_q = nullptr;
  float* act_scale = nullptr;
  uint32_t* act_arrivals = nullptr;
  /// The router's top-k inside the two launches (the route form, where route.logits is set; issue 16: no router
  /// launch at batch 1): route.logits holds the token's float32 router logits [n_experts] (route.n_tokens 1,
  /// route.n_experts and route.top_k as above), and each launch picks the experts itself with the router's arithmetic
  /// (one warp, the router kernel's code: the same experts and weights bit for bit); the gate/up launch writes them to
  /// route.topk_idx / route.topk_weight for later readers, and topk_idx / topk_weight above are not read. The logits
  /// must be written before the gate/up launch by an earlier one (the down launch reads them before its PDL wait).
  RouterParams route{};
  bool fp8() const { return experts_gate_up_scale != nullptr; }
  bool routes() const { return route.logits != nullptr; }
};
/// Largest top_k moe_decode_ffn takes (the down kernel keeps a token's expert indices and weights in shared memory).
inline constexpr int32_t kMoeDecodeMaxTopK = 16;
/// Most experts moe_decode_ffn's route form takes (a CTA holds the scores in shared memory; DeepSeek-V3 has 256).
inline constexpr int32_t kMoeDecodeRouteMaxExperts = 256;

/// Pointer arrays for a batched GEMM with one problem per pair (MoeRowMode::PAIR):
/// a[p] = weights + topk_idx[p] * expert_stride_bytes, b[p] = x + p * ld_x_bytes, c[p] = y + p * ld_y_bytes.
struct MoePairPointersParams {
  const int32_t* topk_idx = nullptr;  // [n_pairs]
  int64_t n_pairs = 0;
  const char* weights = nullptr;  // experts stacked [n_experts, N, K] in the GEMM dtype
  int64_t expert_stride_bytes = 0;
  const char* x = nullptr;
  int64_t ld_x_bytes = 0;
  char* y = nullptr;
  int64_t ld_y_bytes = 0;
  const void** a = nullptr;  // [n_pairs] each
  const void** b = nullptr;
  void** c = nullptr;
};

/// Grouped GEMM over the experts with the row counts on the device (the masked layout of graph-captured decode,
/// MoeRowMode::COMPACT): rows [offsets[e], offsets[e + 1]) of x belong to expert e, and for each of them
/// y[r, :n] = x[r, :k] . w_e[n, k]^T with w_e = w + e * expert_stride (elements). x and w are in dtype (BF16 and
/// F16 on the tensor cores with float32 accumulation; F32 in float32 FMA), y is float32. max_rows bounds every
/// expert's row count and sizes the launch grid (a host-known bound such as n_tokens); rows of y outside
/// [0, offsets[n_experts]) are not touched. Any n, k and leading dimensions: halves whose rows are off the 16-byte
/// grid (k, ld_x or expert_stride not a multiple of 8) take a float32-math path instead of the tensor cores.
/// With epilogue SWIGLU, w_e holds 2n rows (the gate's [n, k], then the up projection's) and the GEMM writes
/// act[r, :n] = silu(x[r] . gate^T) * (x[r] . up^T) in dtype instead of y: the expert FFN's first half, whose
/// float32 gate and up values never leave the kernel (moe_grouped_gemm_hopper only). With epilogue STORE_DT the
/// GEMM writes y's rows rounded to dtype into act[r, :n] instead of y (moe_grouped_gemm_hopper only): the routed
/// experts' output rows in BF16, as transformers' BF16 experts produce them, at half of y's bytes.
enum class MoeGemmEpilogue : uint8_t { STORE, SWIGLU, STORE_DT };
struct MoeGroupedGemmParams {
  float* y = nullptr;  // STORE: [rows, n] float32, ld_y
  int64_t ld_y = 0;
  const void* x = nullptr;
  int64_t ld_x = 0;
  const void* w = nullptr;  // [n_experts, n, k] in dtype ([n_experts, 2n, k] for SWIGLU)
  int64_t expert_stride = 0;
  DType dtype = DType::BF16;
  const int32_t* offsets = nullptr;  // [n_experts + 1], device side; null with one expert: rows [0, max_rows)
  int32_t n_experts = 0;
  int64_t n = 0, k = 0;
  int64_t max_rows = 0;
  MoeGemmEpilogue epilogue = MoeGemmEpilogue::STORE;
  void* act = nullptr;  // SWIGLU, STORE_DT: [rows, n] in dtype, ld_act
  int64_t ld_act = 0;
  /// Where > 0: offsets[n_experts] <= rows_bound and x holds rows_bound rows (the Hopper kernel sizes its grid and
  /// its tensor map with it; n_tokens * top_k in a MoE layer).
  int64_t rows_bound = 0;
  /// The Hopper kernel's rows a tile: 128 (0 means 128), or 64 where experts hold few rows (decode batches). The
  /// result does not depend on it; the other GEMMs ignore it.
  int32_t tile_rows = 0;
  /// dtype F8_E4M3 (issue 20; moe_grouped_gemm's FP8 kernel, W8A8 as DeepSeek-V3 computes it): x holds e4m3 rows
  /// with one scale per 1 x 128 group, x_scale[r * x_scale_ld + g] (Fp8QuantizeRowsParams, rows major); w holds
  /// e4m3 weights with one scale per 128 x 128 block, expert e's at w_scale + e * w_scale_expert_stride,
  /// [ceil(w_rows / 128), w_scale_ld] (w_rows = n, or 2n stacked gate then up for SWIGLU: the block row of weight
  /// row j is j / 128 of the stacked matrix). For each group g of 128 k values the kernel sums the e4m3 products in
  /// float32 and adds that sum times x_scale[r, g] * w_scale[j / 128, g] to the row's accumulator:
  ///   y[r, j] = sum_g x_scale[r, g] * w_scale[j / 128, g] * sum_{c in g} e4m3(x[r, c]) * e4m3(w[j, c]).
  /// k must be a multiple of 16 (e4m3 rows on the 16-byte grid), ld_x and expert_stride too. Epilogues STORE
  /// (float32 y) and SWIGLU / STORE_DT (act in BF16).
  const float* x_scale = nullptr;
  int64_t x_scale_ld = 0;
  const float* w_scale = nullptr;
  int64_t w_scale_ld = 0, w_scale_expert_stride = 0;
  /// F8_E4M3: true (the default) sums each group's e4m3 products in float32 (the mma.sync FP8 kernel on exact F16
  /// fragments: the twin's arithmetic up to summation order, what --precision f32 needs). False lets an sm_90a
  /// device take the wgmma (QGMMA) kernel (moe_grouped_gemm_hopper) where it runs the shape: the products stay exact
  /// but Hopper's FP8 MMA keeps about 14 bits of a group's running sum, a few 1e-4 of the group's magnitude;
  /// several times the mma.sync kernel's rate at prefill sizes (docs/perf-notes.md, issue 20).
  bool fp8_exact_sums = true;
};

/// Tokens up to which a MoE layer runs its routed experts as one strided batched GEMM at `capacity` = n_tokens rows
/// per expert (MoeRowMode::PADDED); past it, expert-compact rows and a grouped GEMM.
inline constexpr int64_t kMoePaddedMaxTokens = 128;

/// The row layout a MoE layer uses for n_tokens rows (host-known, so the GPU layer and its twin agree): one GEMV
/// per (token, expert) pair while n_tokens * top_k <= n_experts, PADDED up to kMoePaddedMaxTokens, else COMPACT.
/// experts_elsewhere (expert parallelism: n_experts are this rank's, some pairs name kExpertElsewhere): never PAIR,
/// whose rows are the pairs themselves and whose GEMVs index the weights by the pair's expert.
inline MoeRowMode moe_row_mode(int64_t n_tokens, int64_t top_k, int64_t n_experts, bool experts_elsewhere = false) {
  if (n_tokens * top_k <= n_experts && !experts_elsewhere) return MoeRowMode::PAIR;
  if (n_tokens <= kMoePaddedMaxTokens) return MoeRowMode::PADDED;
  return MoeRowMode::COMPACT;
}

/// One DeepSeekMoE layer end to end (the GPU engine's gpu::MoeLayer, and its twin twin::moe_layer, used by every
/// MoE architecture): router GEMM on x (float32), scores and top-k (RouterParams), tokens permuted into expert
/// order, expert SwiGLU through grouped GEMMs (gate and up stacked), weighted combine, plus the shared experts'
/// SwiGLU added unweighted:  out[t] = shared(x_c[t]) + sum_j weight[t, j] * expert_{idx[t, j]}(x_c[t]).
/// Expert inputs and GEMM operands are in dtype, activations float32 between steps (kernel conventions above).
struct MoeLayerParams {
  const float* x = nullptr;   // [n_tokens, hidden] float32: the router's input
  const void* x_c = nullptr;  // [n_tokens, hidden] in dtype: the experts' input (x rounded to dtype)
  float* out = nullptr;       // [n_tokens, hidden]
  int64_t n_tokens = 0;
  DType dtype = DType::BF16;
  int64_t hidden = 0;
  int64_t inter = 0;         // one routed expert's width
  int64_t shared_inter = 0;  // the shared experts' fused width (n_shared_experts * inter); 0: none
  int32_t n_experts = 0;
  int32_t top_k = 0;
  RouterMethod method = RouterMethod::GREEDY;
  int32_t n_group = 1;
  int32_t topk_group = 1;
  bool norm_topk_prob = false;
  float routed_scaling_factor = 1.0f;
  RouterScoring scoring = RouterScoring::SOFTMAX;
  const float* router_w = nullptr;        // [n_experts, hidden] float32
  const void* experts_gate_up = nullptr;  // [n_experts, 2 * inter, hidden]: each expert's gate rows, then up rows
  const void* experts_down = nullptr;     // [n_experts, hidden, inter]
  const void* shared_gate_up = nullptr;   // [2 * shared_inter, hidden]
  const void* shared_down = nullptr;      // [hidden, shared_inter]
  // GPU: the layer runs inside a captured CUDA graph (a decode step), so it must not read anything back to the
  // host: COMPACT rows then go through moe_grouped_gemm (device-side counts) instead of cuBLAS's grouped GEMM.
  bool graph_safe = false;
  /// FP8 weights (issue 20, --weights-dtype fp8; the GPU layer only): the four weight pointers above hold e4m3 codes
  /// with these 128 x 128 block-scale grids (rows of fp8_weight_scale_ld(k), an expert's grids one after another).
  /// Null: the weights are in dtype. The routed experts then run as COMPACT rows through moe_grouped_gemm's FP8
  /// kernel at every token count, their inputs quantised in 1 x 128 groups, as the CPU engine's W8A8 does.
  const float* experts_gate_up_scale = nullptr;
  const float* experts_down_scale = nullptr;
  const float* shared_gate_up_scale = nullptr;
  const float* shared_down_scale = nullptr;
  /// Expert parallelism (--tp N --ep N): this rank holds routed experts [held_begin, held_begin + held_experts) of
  /// the router's n_experts, and experts_gate_up / experts_down (and their scale grids) hold only those, local expert
  /// e at e's place. out then gets the shared experts (a TP slice of them) plus the held experts' share of each
  /// token: the all-reduce after the layer adds the other ranks'. held_experts 0: every expert (no EP).
  int32_t held_begin = 0;
  int32_t held_experts = 0;
  int32_t local_experts() const { return held_experts > 0 ? held_experts : n_experts; }
};

// ---- attention ---------------------------------------------------------------------------------------------

struct VarlenBatch {
  int32_t n_seqs = 0;
  const int32_t* cu_q = nullptr;    // [n_seqs + 1] new-token row offsets
  const int32_t* kv_len = nullptr;  // [n_seqs] cached tokens after appending the new ones
  int32_t max_q = 0;                // max over s of new rows (launch bounds)
  int32_t max_kv = 0;               // max over s of kv_len
};

struct PagedCache {
  int32_t block_size = 0;
  const int32_t* block_tables = nullptr;  // [n_seqs, max_blocks]
  int32_t max_blocks = 0;
};

/// MLA prefill, decompressed (per-head keys [k_nope_h ; k_pe] and values v_h rebuilt with kv_b_proj), causal,
/// flash-style online softmax (no [q, kv] buffer). Keys of sequence s are rows [cu_kv[s], cu_kv[s+1]) of kv and
/// k_pe (its whole cache, oldest first); kv_len[s] = cu_kv[s+1] - cu_kv[s].
struct MlaPrefillParams {
  VarlenBatch batch;
  const int32_t* cu_kv = nullptr;  // [n_seqs + 1]
  const float* q = nullptr;        // [rows, n_heads * (nope + rope)] at ld_q, RoPE applied
  int64_t ld_q = 0;
  const float* kv = nullptr;  // [keys, n_heads * (nope + v)] at ld_kv: head h = [k_nope (nope) ; v (v)]
  int64_t ld_kv = 0;
  const float* k_pe = nullptr;  // [keys, rope] at ld_kpe, shared by all heads, RoPE applied
  int64_t ld_kpe = 0;
  float* out = nullptr;  // [rows, n_heads * v] at ld_out
  int64_t ld_out = 0;
  int32_t n_heads = 0, nope = 0, rope = 0, v = 0;
  float scale = 1.0f;  // softmax scale (YaRN mscale^2 included)
  // true: float32 math throughout (the generic CUDA-core kernel), as the engine's float32 precision needs;
  // false: BF16 tensor cores with float32 accumulation where the head sizes have an instance.
  bool float32_math = false;
  // BF16 operands (the engine's BF16 precision): when q_bf16 is set, q_bf16 / kv_bf16 / k_pe_bf16 replace q / kv
  // / k_pe (same layouts and leading dimensions, in elements; rows 16-byte aligned) and the flash kernel
  // multiplies BF16 x BF16 with float32 accumulation and P rounded to BF16, FlashAttention's numerics (those of
  // transformers' BF16 sdpa). Head sizes without an instance (mla_prefill_bf16_supported) are refused.
  const uint16_t* q_bf16 = nullptr;
  const uint16_t* kv_bf16 = nullptr;
  const uint16_t* k_pe_bf16 = nullptr;
  // Rows of kv and k_pe, all sequences' keys (the last row any sequence reads is cu_kv[n_seqs] - 1; rows past it may
  // exist and hold anything). The Hopper flash kernel bounds its TMA copies with it; 0 = not given (it copies with
  // cp.async instead). Unread by the float32 paths and the twin.
  int64_t n_keys = 0;
};

/// The BF16 flash prefill kernel's MLA instance: qk = 192 (nope 128 + rope 64), v = 128 (V2 and V2-Lite).
inline bool mla_prefill_bf16_supported(int32_t nope, int32_t rope, int32_t v) {
  return nope == 128 && rope == 64 && v == 128;
}
/// The BF16 flash prefill kernel's GQA instances: head_dim 64 or 128.
inline bool gqa_prefill_bf16_supported(int32_t head_dim) { return head_dim == 64 || head_dim == 128; }

enum class MlaDecodeKernel { AUTO, MMA, WGMMA };

/// How MLA decode over F8_E4M3 slots with BF16 operands (the Hopper kernel) feeds its products:
///   BF16_VALUES  each latent value code x scale rounded to BF16, q and P in BF16 (FlashMLA's FP8 decode numerics);
///   F16          the codes exact in F16, the group scales applied in float32 to the scores and, per group, to the
///                weights (P x scale rounded to F16), q's latent part in F16 at mla_f16_query_shift, q_pe in BF16
///                (finer, and fewer instructions: docs/perf-notes.md, issue 20 round 10);
///   AUTO         kMlaFp8OperandsDefault (the kernel's launcher: unless MLABENCH_MLA_FP8_DECODE=bf16|f16 says
///                otherwise, for benchmarks).
/// The twin follows the form it is given (AUTO: the default).
enum class MlaFp8Operands { AUTO, BF16_VALUES, F16 };
// F16 (docs/perf-notes.md, issue 20 round 10, H100: the kernel 7-15% faster than BF16_VALUES, its tests passing).
inline constexpr MlaFp8Operands kMlaFp8OperandsDefault = MlaFp8Operands::F16;

/// MLA decode, absorbed: ONE new token per sequence (row s), MQA over the paged latent cache whose slots are
/// [c_kv (kv_lora) ; k_pe (rope)] (576 at V2 shapes); score = scale * (q_lat_h . c_j + q_pe_h . k_pe_j), value
/// c_j, so out is the latent-space output (W_UV is applied afterwards by a GEMM).
struct MlaDecodeParams {
  int32_t n_seqs = 0;
  const int32_t* kv_len = nullptr;  // [n_seqs]
  int32_t max_kv = 0;
  PagedCache paged;
  const void* cache = nullptr;  // this layer's pool [n_slots, kv_lora + rope]
  // BF16 runs on tensor cores where the head sizes have an instance; F32 (the engine's float32 precision) runs in
  // float32 on CUDA cores (the generic kernel). F8_E4M3 (--kv-cache-dtype fp8, fp8_layout()): with bf16_operands
  // on the Hopper kernel at V2 widths (in the form fp8_operands names), else the generic kernel.
  DType cache_type = DType::BF16;
  const float* q_lat = nullptr;     // [n_seqs, n_heads * kv_lora] at ld_q_lat
  int64_t ld_q_lat = 0;
  const float* q_pe = nullptr;  // head h of row s at q_pe + s * ld_q_pe + h * q_pe_head_stride, rope values
  int64_t ld_q_pe = 0;
  int64_t q_pe_head_stride = 0;
  float* out = nullptr;  // [n_seqs, n_heads * kv_lora] at ld_out
  int64_t ld_out = 0;
  int32_t n_heads = 0, kv_lora = 0, rope = 0;
  float scale = 1.0f;
  // BF16 caches: q and the softmax weights P enter the products rounded to BF16 (the engine's BF16 precision;
  // FlashMLA's and transformers' BF16 numerics: one MMA per product). F8_E4M3 caches: fp8_operands' form (one MMA
  // per product as well). false: float32 q and P, split into BF16 hi + lo pairs on the tensor cores (float32-like
  // accuracy, twice the MMAs). The twin rounds q (and FP8 values) the same way; P's rounding depends on the
  // kernel's running max and tiles, so tests bound it by tolerance.
  bool bf16_operands = false;
  MlaFp8Operands fp8_operands = MlaFp8Operands::AUTO;  // F8_E4M3 with bf16_operands: MlaFp8Operands
  // Optional split-KV scratch (flash-decoding), device memory of at least mla_decode_scratch_floats(*this)
  // floats: the launcher may then cut long key ranges over several CTAs and merge them in a second kernel.
  // nullptr keeps one CTA per (sequence, head group): correct, slower for few long sequences. A non-null
  // scratch with fewer floats is refused.
  float* scratch = nullptr;
  int64_t scratch_floats = 0;
  // F8_E4M3 (--kv-cache-dtype fp8): the pool's slots hold the latent in e4m3 and the RoPE part in BF16.
  MLABENCH_HD Fp8SlotLayout fp8_layout() const { return Fp8SlotLayout::mla(kv_lora, rope); }
  // Slots in this layer's pool (rows of `cache`): bounds the TMA tensor map of the Hopper kernel; 0 = not given
  // (the mma.sync kernel runs). Unread by the twin.
  int64_t n_slots = 0;
  // Which tensor-core kernel runs a BF16 cache at V2 widths: AUTO takes the Hopper (wgmma + TMA) kernel where
  // mla_decode_hopper_supported says it runs (unless MLABENCH_MLA_DECODE=mma), else the mma.sync one; MMA and
  // WGMMA force one (WGMMA where it cannot run is refused). Tests and benchmarks compare them.
  MlaDecodeKernel kernel = MlaDecodeKernel::AUTO;
  // The caller's promise that the cache rows, kv_len, the block tables and q_pe were written two or more launches
  // before this one (every launch between a programmatic dependent launch that releases its dependents only after
  // its own wait, pdl.cuh): the Hopper kernel then starts its cache stream before the PDL wait, and only q_lat
  // (the launch right before: W_UK) is read after it. The absorbed MLA layer: latent_append, W_UK, this.
  bool cache_early = false;
  // The batch-invariant split plan (EngineOptions::batch_invariant_attention, fixed_kv_splits below): each
  // sequence's keys are cut by its own length alone and always merged by the combine kernel, so its output has
  // the same bits in any batch. Needs scratch.
  bool fixed_splits = false;
  // Benchmarks only (bench_decode_attention --splits): this many splits instead of the plan's, clamped to
  // [1, kAttnMaxSplits] (scratch must then hold mla_decode_scratch_floats of these params); 0 = the plan.
  int32_t force_splits = 0;
  // Diagnostics only (bench_decode_attention --timeline): the Hopper kernel writes kMlaTimelineStamps %globaltimer
  // nanosecond stamps of its phases per CTA (its block index) here; nullptr = none.
  uint64_t* timeline = nullptr;
  // The Hopper kernel's work items (head group, sequence, split): 0 = the launcher's choice (one CTA an item; past
  // one wave of SMs over a BF16 pool, one CTA an SM that takes items SM-count apart, its copies of the next item
  // streaming while it finishes the last: MLABENCH_MLA_DECODE_PERSISTENT, mla_decode_hopper.cu); -1 = one CTA an
  // item; N > 0 = N CTAs (tests: many items a CTA at any shape). An item's output has the same bits whichever CTA
  // computes it.
  int32_t persistent_ctas = 0;
};
/// MLA decode over F8_E4M3 slots with BF16 operands (MlaDecodeParams::bf16_operands): head h's absorbed query
/// q_lat enters the F16 products as q_lat * 2^e rounded to F16, e = mla_f16_query_shift(max |q_lat of h|), its
/// scores times 2^-e in float32. 2^e puts the largest value in [2^14, 2^15): no value can overflow F16 (65504) and
/// every value down to 2^-29 of the largest keeps F16's 11 bits (BF16 keeps 8). e is clamped to [-120, 120] (2^e
/// and 2^-e stay normal floats); 0 for a zero, infinite or NaN maximum. The kernel and the twin both call this.
MLABENCH_HD inline int32_t mla_f16_query_shift(float amax) {
  if (!(amax > 0.0f && amax <= 3.4028235e38f)) return 0;
  int e = 0;
  (void)frexpf(amax, &e);  // amax = m 2^e, m in [0.5, 1): amax 2^(15 - e) in [2^14, 2^15)
  const int32_t shift = 15 - e;
  return shift < -120 ? -120 : shift > 120 ? 120 : shift;
}

/// The Hopper MLA decode kernel's timeline stamps a CTA: entry, barriers ready, producer's first tile issued,
/// queries in shared memory, first chunk landed, first tile's scores, P written, first tile's P.V, every tile
/// done, output or partial written.
inline constexpr int kMlaTimelineStamps = 10;

/// MHA/GQA attention over the paged K/V pools (prefill chunks and decode alike): query head h reads KV head
/// h / (n_heads / n_kv_heads). Causal per the varlen convention.
struct GqaAttentionParams {
  VarlenBatch batch;
  PagedCache paged;
  const void* k_cache = nullptr;  // this layer's pools [n_slots, n_kv_heads * head_dim]
  const void* v_cache = nullptr;
  // Rows of each pool, for the flash prefill kernel's TMA copies (with block_size % 64 == 0); 0 = not given: that
  // kernel then copies by cp.async. Nothing else reads it.
  int64_t n_slots = 0;
  // As MlaDecodeParams: F32 takes the float32 generic kernel; F8_E4M3 the decode kernel (gqa_decode_applies: each
  // value widened exactly, the scales folded into the scores and weights) and the generic kernel for prefill chunks
  // (the engine's float32 precision; at BF16 precision the engine gathers the slots into BF16 pools for the flash
  // kernel instead: gpu_gqa.cpp).
  DType cache_type = DType::BF16;
  // F8_E4M3: each pool's slots hold its heads in e4m3 with a scale a head (two for 256-wide heads).
  MLABENCH_HD Fp8SlotLayout fp8_layout() const { return Fp8SlotLayout::heads(n_kv_heads, head_dim); }
  const float* q = nullptr;  // [rows, n_heads * head_dim] at ld_q, RoPE applied
  int64_t ld_q = 0;
  float* out = nullptr;  // [rows, n_heads * head_dim] at ld_out
  int64_t ld_out = 0;
  int32_t n_heads = 0, n_kv_heads = 0, head_dim = 0;
  float scale = 1.0f;
  // Optional BF16 copy of q (same layout and ld_q; the engine's BF16 precision): batches with a prefill chunk
  // (max_q > 1) then run the BF16 flash kernel (MlaPrefillParams::q_bf16 says its numerics).
  const uint16_t* q_bf16 = nullptr;
  // Optional split-KV scratch, as MlaDecodeParams: gqa_attention_scratch_floats(*this) floats.
  float* scratch = nullptr;
  int64_t scratch_floats = 0;
  // As MlaDecodeParams::fixed_splits: decode rows take the batch-invariant split plan, prefill chunks no split.
  bool fixed_splits = false;
};

// ---- split-KV plan of the attention launchers ---------------------------------------------------------------
// When a batch gives fewer CTAs than kAttnTargetCtas (2 per SM of an H100), each sequence's keys are cut into
// `splits` chunks of at least kAttnMinSplitKeys keys; each chunk writes its partial (max, sum, unnormalised
// output) per (row, head) to scratch and a second kernel merges them. The plan depends only on host-known
// sizes, so the engine can size scratch when it builds a batch, or once for all batches: splits * ctas <
// 2 * kAttnTargetCtas, so mla_decode needs at most 2 * kAttnTargetCtas * kMlaDecodeHeads * (kv_lora + 2) floats
// (17 MB at kv_lora 512) and gqa at most 2 * kAttnTargetCtas * kGqaRowsPerCta * (head_dim + 2). kv_len[s] must
// not exceed max_kv when a launch splits (keys past splits * split length would be dropped).
inline constexpr int64_t kAttnTargetCtas = 264;
inline constexpr int64_t kAttnMinSplitKeys = 256;
inline constexpr int64_t kAttnMaxSplits = 256;
inline constexpr int32_t kMlaDecodeHeads = 16;  // heads per CTA of mla_decode_attention (one MMA row tile)
inline constexpr int32_t kGqaRowsPerCta = 64;   // (token, head) rows per CTA of gqa_attention

inline int32_t attention_kv_splits(int64_t n_ctas, int64_t max_kv) {
  if (n_ctas <= 0 || n_ctas >= kAttnTargetCtas || max_kv <= kAttnMinSplitKeys) return 1;
  const int64_t by_ctas = (kAttnTargetCtas + n_ctas - 1) / n_ctas;
  const int64_t by_keys = (max_kv + kAttnMinSplitKeys - 1) / kAttnMinSplitKeys;
  int64_t s = by_ctas < by_keys ? by_ctas : by_keys;
  s = s < kAttnMaxSplits ? s : kAttnMaxSplits;
  return static_cast<int32_t>(s < 1 ? 1 : s);
}

// The decode kernels (mla_decode_attention; gqa_attention when every sequence has one new row) run one CTA per SM
// (large shared-memory rings), so their plan counts whole waves of kDecodeWaveCtas CTAs instead: it picks the split
// count s that minimises waves(n_ctas * s) * (keys per split + kDecodeSplitCostKeys), the per-CTA fixed cost (query
// load, pipeline fill, partial write and merge) in key-equivalents, under the scratch bound above (n_ctas * s <=
// 2 * kAttnTargetCtas). 1 x 128K at V2-Lite's 16 heads: 132 splits of ~1K keys, one wave; 64 x 8K: 2 splits.
// The kernels cut each sequence into s chunks of its own kv_len (decode_split_len in cuda/decode_common.cuh), not
// of max_kv: a graph captured for a bucket bakes max_kv = the bucket's block bound (up to 2x the real length),
// and chunks of max_kv / s would leave half the CTAs without keys.
inline constexpr int64_t kDecodeWaveCtas = 132;  // SMs of an H100/H200 SXM
inline constexpr int64_t kDecodeMinSplitKeys = 128;
inline constexpr int64_t kDecodeSplitCostKeys = 128;

inline int32_t decode_kv_splits(int64_t n_ctas, int64_t max_kv) {
  if (n_ctas <= 0 || max_kv <= kDecodeMinSplitKeys) return 1;
  int64_t best = 1, best_cost = -1;
  for (int64_t s = 1; s <= kAttnMaxSplits && n_ctas * s <= 2 * kAttnTargetCtas; ++s) {
    const int64_t keys = (max_kv + s - 1) / s;
    if (s > 1 && keys < kDecodeMinSplitKeys) break;
    const int64_t waves = (n_ctas * s + kDecodeWaveCtas - 1) / kDecodeWaveCtas;
    const int64_t cost = waves * (keys + kDecodeSplitCostKeys);
    if (best_cost < 0 || cost < best_cost) {
      best = s;
      best_cost = cost;
    }
  }
  return static_cast<int32_t>(best);
}

// The batch-invariant plan (MlaDecodeParams::fixed_splits): a sequence of kv_len keys is cut into splits of
// kFixedSplitKeys keys, or of ceil(kv_len / kFixedMaxSplits) keys rounded up to the kernel's tile past
// kFixedSplitKeys x kFixedMaxSplits keys (decode_split_len in cuda/decode_common.cuh): its own length alone
// decides, not the batch. The grid takes the longest sequence's count, and at least 2, so every sequence goes
// through the same partials and combine whether it has one split or many. The cost (docs/engine.md, "Batch
// invariance"): up to 64 splits of 512 keys leave a long sequence alone on at most 64 CTAs, and a large batch of
// short ones with more partials than the throughput plan's whole waves.
inline constexpr int64_t kFixedSplitKeys = 512;
inline constexpr int64_t kFixedMaxSplits = 64;
/// Keys per split of a kv_len-key sequence under that plan, for a kernel of `tile`-key tiles (kFixedSplitKeys is a
/// multiple of every decode kernel's tile). constexpr: the kernels call it too (decode_split_len).
constexpr int fixed_split_len(int kv_len, int tile) {
  const int64_t per = ((int64_t{kv_len} + kFixedMaxSplits - 1) / kFixedMaxSplits + tile - 1) / tile * tile;
  return static_cast<int>(per > kFixedSplitKeys ? per : kFixedSplitKeys);
}
inline int32_t fixed_kv_splits(int64_t max_kv) {
  const int64_t s = (max_kv + kFixedSplitKeys - 1) / kFixedSplitKeys;
  return static_cast<int32_t>(s < 2 ? 2 : s > kFixedMaxSplits ? kFixedMaxSplits : s);
}

inline int32_t mla_decode_splits(const MlaDecodeParams& p) {
  if (p.fixed_splits) return fixed_kv_splits(p.max_kv);
  if (p.force_splits > 0) return p.force_splits < kAttnMaxSplits ? p.force_splits : static_cast<int32_t>(kAttnMaxSplits);
  return decode_kv_splits(int64_t{p.n_seqs} * ((p.n_heads + kMlaDecodeHeads - 1) / kMlaDecodeHeads), p.max_kv);
}
/// Floats of scratch that let mla_decode_attention split (0 when it would not): splits * n_seqs * n_heads *
/// (kv_lora + 2).
inline int64_t mla_decode_scratch_floats(const MlaDecodeParams& p) {
  const int64_t s = mla_decode_splits(p);
  return s > 1 ? s * p.n_seqs * p.n_heads * (int64_t{p.kv_lora} + 2) : 0;
}

/// gqa_attention runs the decode kernel (cuda/gqa_decode.cu) when every sequence has one new row, the cache is
/// BF16 or F8_E4M3 slots, head_dim is 64 or 128 and a KV head serves at most 8 query heads (its hi and lo query halves then share
/// one 16-row MMA tile); other batches take the flash kernel.
inline bool gqa_decode_applies(const GqaAttentionParams& p) {
  return p.batch.max_q == 1 && (p.cache_type == DType::BF16 || p.cache_type == DType::F8_E4M3) &&
         (p.head_dim == 64 || p.head_dim == 128) &&
         p.n_kv_heads > 0 && p.n_heads % p.n_kv_heads == 0 && p.n_heads / p.n_kv_heads <= 8;
}

/// The decode kernel plans as mla_decode (one CTA per sequence and KV head); the flash kernel splits only batches
/// whose every sequence fits one row tile (max_q * heads per KV head <= kGqaRowsPerCta: short chunks). Both keep
/// splits * n_seqs * max_q * n_heads <= 2 * kAttnTargetCtas * kGqaRowsPerCta (the engine's scratch bound).
inline int32_t gqa_attention_splits(const GqaAttentionParams& p) {
  if (p.fixed_splits) return gqa_decode_applies(p) ? fixed_kv_splits(p.batch.max_kv) : 1;
  if (gqa_decode_applies(p)) {
    const int64_t rows = int64_t{p.batch.n_seqs} * p.n_heads, cap = 2 * kAttnTargetCtas * kGqaRowsPerCta;
    int64_t s = decode_kv_splits(int64_t{p.batch.n_seqs} * p.n_kv_heads, p.batch.max_kv);
    if (rows > 0 && s * rows > cap) s = cap / rows > 1 ? cap / rows : 1;
    return static_cast<int32_t>(s);
  }
  if (p.n_kv_heads <= 0 || int64_t{p.batch.max_q} * (p.n_heads / p.n_kv_heads) > kGqaRowsPerCta) return 1;
  return attention_kv_splits(int64_t{p.batch.n_seqs} * p.n_kv_heads, p.batch.max_kv);
}
/// Floats of scratch that let gqa_attention split: splits * n_seqs * max_q * n_heads * (head_dim + 2).
inline int64_t gqa_attention_scratch_floats(const GqaAttentionParams& p) {
  const int64_t s = gqa_attention_splits(p);
  return s > 1 ? s * p.batch.n_seqs * p.batch.max_q * p.n_heads * (int64_t{p.head_dim} + 2) : 0;
}

// ---- FP8 (issue 20): the quantisers the FP8 GEMMs read (definitions in engine/core/fp8.h) ----------------------

/// Activation rows quantised to e4m3 in 1 x 128 groups (DeepSeek-V3's act_quant): for row r < rows and group
/// g < ceil(k / 128), s = fp8_block_scale(amax of |x[r, 128 g ...]| over the group's values, the last group shorter),
/// q[r, c] = f32_to_e4m3(x[r, c] / s) (IEEE division), and scale[r * scale_row_stride + g * scale_group_stride] = s,
/// so e4m3_to_f32(q) * s is fake_quantize_fp8_row's value. Rows major (scale_group_stride 1) is the grouped expert
/// GEMM's layout; groups major (scale_row_stride 1, scale_group_stride >= rows) cuBLASLt's VEC128_32F layout.
/// The amax skips a NaN (as fake_quantize_fp8_row's std::max does): the NaN's code is the NaN code, so the GEMM's
/// output row is NaN, as the CPU engine's. A NaN quotient (x NaN, or x infinite over an infinite scale) is coded
/// 0x7f with x's sign: the sign of a NaN quotient is the platform's, so kernel and twin fix it this way.
struct Fp8QuantizeRowsParams {
  const void* x = nullptr;  // [rows, k] at ld_x, F32 or BF16
  DType x_type = DType::BF16;
  int64_t ld_x = 0;
  uint8_t* q = nullptr;  // [rows, k] e4m3 at ld_q
  int64_t ld_q = 0;
  float* scale = nullptr;
  int64_t scale_row_stride = 0, scale_group_stride = 0;
  int64_t rows = 0, k = 0;
};

/// A weight w [n, k] (F32 or BF16, row-major, ld_w) quantised in 128 x 128 blocks as quantize_fp8_blocks does:
/// q [n, k] e4m3 (ld_q), scale_inv[bn * scale_ld + bk] = fp8_block_scale(amax of block (bn, bk)), scale_ld >=
/// ceil(k / 128) (the engine pads it to a multiple of 4: cuBLASLt's 16-byte-aligned 128 x 128 scale layout; the
/// padding is left untouched). Used on the device for weights generated there (random weights); the kernel does
/// not check for inf/NaN (its twin throws as quantize_fp8_blocks does).
struct Fp8QuantizeBlocksParams {
  const void* w = nullptr;
  DType w_type = DType::BF16;
  int64_t ld_w = 0;
  uint8_t* q = nullptr;
  int64_t ld_q = 0;
  float* scale_inv = nullptr;
  int64_t scale_ld = 0;
  int64_t n = 0, k = 0;
};

}  // namespace mlabench::kernels
