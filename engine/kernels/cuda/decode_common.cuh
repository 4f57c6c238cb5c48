// What the attention kernels (mla_decode.cu, gqa_decode.cu, attention.cu, flash_prefill.cu) share: warp-level MMA
// and ldmatrix wrappers, cp.async, the BF16 hi/lo split of float32 operands, the per-sequence split length of the split-KV plan and the
// merge of split partials (launched from either kernel's launcher, defined in mla_decode.cu).
//
// Split partials: partial (split, seq, head) sits at index (split * n_seqs + seq) * n_heads + head; dv
// unnormalised output floats at scratch + index * dv, then (max in log2 units, sum) at scratch + n_partials * dv +
// index * 2, with n_partials = n_splits * n_seqs * n_heads (the layout of attention.cu's split-KV flash path at
// max_q = 1, so gqa_attention_scratch_floats sizes both).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/kernels/cuda/pdl.cuh"
#include "engine/kernels/kernel_params.h"

namespace mlabench::kernels::cuda::decode {

constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

__device__ __forceinline__ uint32_t bf16_bits(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }
__device__ __forceinline__ float bf16_value(uint32_t b) { return __uint_as_float(b << 16); }

// x = hi + lo to about 2^-17 relative: a float32 operand as two BF16 MMA operands (the products are exact in the
// float32 accumulator, so q.k and p.v keep float32-like accuracy at twice the MMAs; decode is memory-bound).
// Packs (x0, x1) with the lower k index in the low half, as MMA fragments hold them.
__device__ __forceinline__ void split_pack(float x0, float x1, uint32_t& hi, uint32_t& lo) {
  const uint32_t h0 = bf16_bits(x0), h1 = bf16_bits(x1);
  hi = h0 | (h1 << 16);
  lo = bf16_bits(x0 - bf16_value(h0)) | (bf16_bits(x1 - bf16_value(h1)) << 16);
}

// c[16x8] += a[16x16] * b[16x8] (BF16 in, float32 accumulate). g = lane / 4, t = lane % 4:
// a {(g, 2t..2t+1), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..)}; b {(k 2t..2t+1, n g), (k 2t+8.., n g)};
// c {(g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1)}.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Four 8x8 BF16 matrices; lane l gives the row address of matrix l / 8, row l % 8 (16 bytes each) and receives
// (row l / 4, elements 2 (l % 4), +1) of each matrix; .trans receives (rows 2 (l % 4), +1; element l / 4). The row
// as a shared-memory address (kernels that compute swizzled offsets) or as a pointer.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(row));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(row));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) { ldmatrix_x4(r, smem_addr(row)); }
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  ldmatrix_x4_trans(r, smem_addr(row));
}

// 16 bytes global -> shared bypassing L1 (the cache is streamed once), zero-filled when !valid: src is then not
// read, so keys past the range never bring in the pool's other slots (NaN there would poison 0 * v).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  cp_async16(smem_addr(dst), src, valid);
}
// 4 bytes, through L1 (cp.async.cg copies 16 only), zero-filled when !valid: a float beside a copied row (an FP8 slot's
// scale).
__device__ __forceinline__ void cp_async4(void* dst, const void* src, bool valid) {
  const int n = valid ? 4 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ int64_t paged_slot(const PagedCache& pc, int seq, int pos) {
  const int32_t block = __ldg(pc.block_tables + static_cast<int64_t>(seq) * pc.max_blocks + pos / pc.block_size);
  return static_cast<int64_t>(block) * pc.block_size + pos % pc.block_size;
}

/// Keys per split of a sequence of kv_len keys cut into n_splits chunks of whole `tile`-key tiles (at least one
/// tile, so a merge never divides by zero). From the sequence's own length, on the device: see decode_kv_splits.
/// fixed: the batch-invariant plan (fixed_kv_splits, kernel_params.h), which ignores n_splits.
__host__ __device__ constexpr int decode_split_len(int kv_len, int n_splits, int tile, bool fixed = false) {
  if (fixed) return fixed_split_len(kv_len, tile);
  const int per = (kv_len + n_splits - 1) / n_splits;
  const int len = (per + tile - 1) / tile * tile;
  return len > tile ? len : tile;
}

__device__ __forceinline__ int64_t partial_index(int split, int seq, int head, int n_seqs, int n_heads) {
  return (static_cast<int64_t>(split) * n_seqs + seq) * n_heads + head;
}

struct CombineArgs {
  const float* scratch = nullptr;
  int n_splits = 0, tile = 0;  // the kernel's split plan: decode_split_len(kv_len[seq], n_splits, tile, fixed)
  bool fixed = false;
  int n_seqs = 0, n_heads = 0, dv = 0;
  const int32_t* kv_len = nullptr;
  const int32_t* cu_q = nullptr;  // nullptr: row seq (MLA); else row cu_q[seq], skipped when the sequence has none
  float* out = nullptr;           // head h of a row at out + row * ld_out + h * dv
  int64_t ld_out = 0;
};

/// Merges the split partials into out (one launch; graph-safe). Defined in mla_decode.cu. On sm_90+ it is a
/// programmatic dependent launch (MLABENCH_PDL=0 turns it off): its CTAs are resident and waiting when the split
/// kernel's last CTA ends, instead of launching after it.
void launch_decode_combine(const CombineArgs& c, cudaStream_t stream);
/// Refuses fixed_splits without scratch (the batch-invariant plan always merges through the partials).
void check_fixed_splits_scratch(bool fixed, const float* scratch, const char* who);
/// The same for an MLA decode launch of n_splits splits of whole `tile`-key tiles (out rows are sequences).
void launch_mla_decode_combine(const MlaDecodeParams& p, int n_splits, int tile, cudaStream_t stream);

/// gqa_attention's decode path (gqa_decode.cu): batches where gqa_decode_applies(p).
void gqa_decode_attention(const GqaAttentionParams& p, cudaStream_t stream);

}  // namespace mlabench::kernels::cuda::decode
