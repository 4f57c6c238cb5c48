// CUDA attention kernels: MLA prefill (decompressed, float32 keys) and MHA/GQA (paged BF16 K/V), each with the
// twin in engine/kernels/twin/attention.cpp. MLA decode lives in mla_decode.cu; GQA batches with one new row per
// sequence go to gqa_decode.cu.
//
// Both run on tensor cores (mma.sync m16n8k16 BF16 -> float32) with online softmax in float32. BF16
// operands alone would cost ~3 significant digits; to stay at float32-like accuracy every float32 operand is
// split x = hi + lo (two BF16 values, |lo| <= 2^-9 |x|) and the products are summed: BF16 cache values are
// exact, so q.k needs 2 MMAs (q_hi k + q_lo k) and p.v needs 2; float32 keys/values (MLA prefill) need 3
// (the lo*lo term is below float32 rounding).
//
// MLA prefill and GQA share flash_kernel: a CTA takes 64 (token, head) rows of one sequence and one KV head
// (GQA: all query heads of that KV head, so decode reads K/V once per group), 16 rows per warp, and walks key
// tiles with the FlashAttention-2 register layout (scores stay in registers and become the P operand).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "core/check.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/pdl.cuh"
#include "engine/kernels/cuda/attention_generic.h"
#include "engine/kernels/cuda/decode_common.cuh"
#include "engine/kernels/cuda/flash_prefill.h"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/twin/checks.h"

namespace mlabench::kernels::cuda {
namespace {

// The helpers every attention kernel shares (decode_common.cuh), and two of the float32-operand kernels' own.
using decode::cp_async16;
using decode::cp_async_commit;
using decode::cp_async_wait;
using decode::kLog2e;
using decode::mma_bf16;
using decode::neg_inf;
using decode::paged_slot;
using decode::split_pack;

// MMA fragments hold two consecutive-k elements per register, the lower index in the low half.
__device__ __forceinline__ uint32_t pack2(uint16_t lo_half, uint16_t hi_half) {
  return static_cast<uint32_t>(lo_half) | (static_cast<uint32_t>(hi_half) << 16);
}

__device__ __forceinline__ uint32_t ld32(const uint16_t* p) { return *reinterpret_cast<const uint32_t*>(p); }

// ---- split-KV partials and their merge ---------------------------------------------------------------------
// Partial (split, seq, token, head) sits at index ((split * n_seqs + seq) * max_q + token) * n_heads + head:
// dv unnormalised output floats at scratch + index * dv, then (max in log2 units, sum) at
// scratch + n_partials * dv + index * 2.

struct CombineArgs {
  const float* scratch = nullptr;
  int64_t n_partials = 0;
  int n_splits = 0, split_len = 0;
  int n_seqs = 0, max_q = 0, n_heads = 0, dv = 0;
  const int32_t* cu_q = nullptr;  // nullptr: one row per sequence (MLA decode)
  const int32_t* kv_len = nullptr;
  float* out = nullptr;
  int64_t ld_out = 0;
};

__device__ __forceinline__ int64_t partial_index(int split, int seq, int token, int head, int n_seqs, int max_q,
                                                 int n_heads) {
  return ((static_cast<int64_t>(split) * n_seqs + seq) * max_q + token) * n_heads + head;
}

// One CTA per (head, token, sequence); splits merged in ascending order (deterministic).
__global__ void __launch_bounds__(128) attn_combine_kernel(const CombineArgs a) {
  griddep_wait();  // a programmatic dependent launch (pdl.cuh): the partial results come from the split kernel
  griddep_launch_dependents();
  const int head = blockIdx.x, token = blockIdx.y, seq = blockIdx.z;
  const int q_len = a.cu_q ? a.cu_q[seq + 1] - a.cu_q[seq] : 1;
  if (token >= q_len) return;
  const int kv_len = a.kv_len[seq];
  const int n_valid = min(a.n_splits, (kv_len + a.split_len - 1) / a.split_len);
  __shared__ float weight[kAttnMaxSplits];
  if (threadIdx.x < 32) {
    float m_max = neg_inf();
    for (int i = threadIdx.x; i < n_valid; i += 32) {
      const int64_t idx = partial_index(i, seq, token, head, a.n_seqs, a.max_q, a.n_heads);
      m_max = fmaxf(m_max, a.scratch[a.n_partials * a.dv + idx * 2]);
    }
    for (int off = 16; off > 0; off >>= 1) m_max = fmaxf(m_max, __shfl_xor_sync(0xffffffffu, m_max, off));
    float total = 0.0f;
    for (int i = threadIdx.x; i < n_valid; i += 32) {
      const int64_t idx = partial_index(i, seq, token, head, a.n_seqs, a.max_q, a.n_heads);
      const float m = a.scratch[a.n_partials * a.dv + idx * 2];
      const float w = m == neg_inf() ? 0.0f : exp2f(m - m_max);
      weight[i] = w;
      total += w * a.scratch[a.n_partials * a.dv + idx * 2 + 1];
    }
    for (int off = 16; off > 0; off >>= 1) total += __shfl_xor_sync(0xffffffffu, total, off);
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    for (int i = threadIdx.x; i < n_valid; i += 32) weight[i] *= inv;
  }
  __syncthreads();
  const int64_t row = a.cu_q ? a.cu_q[seq] + token : seq;
  float* out = a.out + row * a.ld_out + static_cast<int64_t>(head) * a.dv;
  for (int c = threadIdx.x; c < a.dv; c += blockDim.x) {
    float acc = 0.0f;
    for (int i = 0; i < n_valid; ++i)
      acc += weight[i] * a.scratch[partial_index(i, seq, token, head, a.n_seqs, a.max_q, a.n_heads) * a.dv + c];
    out[c] = acc;
  }
}

// ---- flash attention for MLA prefill and GQA ------------------------------------------------------------------

constexpr int kFlashRows = kGqaRowsPerCta;  // (token, head) rows per CTA, 16 per warp
constexpr int kFlashThreads = 128;
static_assert(kFlashRows == 16 * kFlashThreads / 32, "16 rows per warp");

struct FlashArgs {
  int n_seqs = 0, max_q = 0;
  const int32_t* cu_q = nullptr;
  const int32_t* kv_len = nullptr;
  const float* q = nullptr;
  int64_t ld_q = 0;
  int q_head_stride = 0;
  int group = 1;  // query heads per CTA head index: row r is token r / group, head blockIdx.y * group + r % group
  int n_heads = 0;
  // MLA prefill: float32 keys (k_nope of head h ; shared k_pe) and values at cu_kv rows.
  const int32_t* cu_kv = nullptr;
  const float* kv = nullptr;
  int64_t ld_kv = 0;
  const float* k_pe = nullptr;
  int64_t ld_kpe = 0;
  int nope = 0;
  // GQA: paged BF16 pools, KV head blockIdx.y.
  const uint16_t* k_cache = nullptr;
  const uint16_t* v_cache = nullptr;
  int64_t kv_width = 0;
  PagedCache paged;
  float* out = nullptr;
  int64_t ld_out = 0;
  float scale_log2 = 0.0f;
  int n_splits = 1, split_len = 0;
  float* scratch = nullptr;
};

template <int DK, int DV, int BC, bool kMla>
constexpr size_t flash_smem_bytes() {
  constexpr int parts = kMla ? 2 : 1;  // float32 keys/values are kept as hi and lo
  return size_t{2} * kFlashRows * (DK + 8) * 2 + size_t{parts} * BC * ((DK + 8) + (DV + 8)) * 2;
}

template <int DK, int DV, int BC, bool kMla>
__global__ void __launch_bounds__(kFlashThreads) flash_kernel(const FlashArgs a) {
  constexpr int kSQ = DK + 8, kSV = DV + 8;  // row strides: +8 BF16 keeps fragment loads conflict-free
  constexpr int kNT = BC / 8, kVT = DV / 8;
  static_assert(DK % 16 == 0 && DV % 8 == 0 && BC % 16 == 0, "MMA tile multiples");
  extern __shared__ __align__(16) unsigned char smem[];
  uint16_t* q_hi = reinterpret_cast<uint16_t*>(smem);
  uint16_t* q_lo = q_hi + kFlashRows * kSQ;
  uint16_t* k_hi = q_lo + kFlashRows * kSQ;
  uint16_t* k_lo = k_hi + BC * kSQ;  // kMla only
  uint16_t* v_hi = k_hi + (kMla ? 2 : 1) * BC * kSQ;
  uint16_t* v_lo = v_hi + BC * kSV;  // kMla only

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tig = lane & 3;
  const int hg = blockIdx.y, seq = blockIdx.z / a.n_splits, split = blockIdx.z % a.n_splits;
  const int q0 = a.cu_q[seq], q_len = a.cu_q[seq + 1] - q0, kv_len = a.kv_len[seq];
  const int n_rows = q_len * a.group, r0 = blockIdx.x * kFlashRows;
  if (r0 >= n_rows) return;
  const int k_begin = split * a.split_len;
  if (split > 0 && k_begin >= kv_len) return;  // the combine reads only splits that hold keys
  const int past = kv_len - q_len;             // row of token i sits at position past + i
  const int last_row = min(n_rows, r0 + kFlashRows) - 1;
  const int k_end = min(min(kv_len, k_begin + a.split_len), past + last_row / a.group + 1);

  // Queries, split hi/lo; rows past the sequence are zero (finite scores, never stored).
  for (int e = tid; e < kFlashRows * (DK / 2); e += kFlashThreads) {
    const int r = e / (DK / 2), d = (e - r * (DK / 2)) * 2, row = r0 + r;
    float x0 = 0.0f, x1 = 0.0f;
    if (row < n_rows) {
      const int token = row / a.group, head = hg * a.group + row % a.group;
      const float* src = a.q + (q0 + token) * a.ld_q + static_cast<int64_t>(head) * a.q_head_stride + d;
      x0 = src[0];
      x1 = src[1];
    }
    uint32_t hi, lo;
    split_pack(x0, x1, hi, lo);
    *reinterpret_cast<uint32_t*>(q_hi + r * kSQ + d) = hi;
    *reinterpret_cast<uint32_t*>(q_lo + r * kSQ + d) = lo;
  }

  // This thread's rows (g and g + 8 of the warp), clamped into the sequence so that padding rows stay finite.
  const int wr0 = r0 + warp * 16;
  const bool warp_active = wr0 < n_rows;
  int pos[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) pos[half] = past + min(wr0 + g + 8 * half, n_rows - 1) / a.group;
  const int warp_last_pos = past + min(wr0 + 15, n_rows - 1) / a.group;

  float o[kVT][4] = {};
  float m[2] = {neg_inf(), neg_inf()}, l[2] = {0.0f, 0.0f};

  for (int kt0 = k_begin; kt0 < k_end; kt0 += BC) {
    __syncthreads();  // the previous tile is consumed
    if constexpr (kMla) {
      const int64_t kbase = a.cu_kv[seq];
      const int kvw = a.nope + DV;
#pragma unroll 4
      for (int e = tid; e < BC * (DK / 2); e += kFlashThreads) {
        const int j = e / (DK / 2), d = (e - j * (DK / 2)) * 2, key = kt0 + j;
        float x0 = 0.0f, x1 = 0.0f;
        if (key < k_end) {
          const float* src = d < a.nope ? a.kv + (kbase + key) * a.ld_kv + static_cast<int64_t>(hg) * kvw + d
                                        : a.k_pe + (kbase + key) * a.ld_kpe + (d - a.nope);
          x0 = src[0];
          x1 = src[1];
        }
        uint32_t hi, lo;
        split_pack(x0, x1, hi, lo);
        *reinterpret_cast<uint32_t*>(k_hi + j * kSQ + d) = hi;
        *reinterpret_cast<uint32_t*>(k_lo + j * kSQ + d) = lo;
      }
#pragma unroll 4
      for (int e = tid; e < BC * (DV / 2); e += kFlashThreads) {
        const int j = e / (DV / 2), d = (e - j * (DV / 2)) * 2, key = kt0 + j;
        float x0 = 0.0f, x1 = 0.0f;
        if (key < k_end) {
          const float* src = a.kv + (kbase + key) * a.ld_kv + static_cast<int64_t>(hg) * kvw + a.nope + d;
          x0 = src[0];
          x1 = src[1];
        }
        uint32_t hi, lo;
        split_pack(x0, x1, hi, lo);
        *reinterpret_cast<uint32_t*>(v_hi + j * kSV + d) = hi;
        *reinterpret_cast<uint32_t*>(v_lo + j * kSV + d) = lo;
      }
    } else {
      static_assert(kMla || DK == DV, "GQA keys and values share head_dim");
      constexpr int kChunks = DK / 8;  // 16-byte chunks per head row
      for (int e = tid; e < 2 * BC * kChunks; e += kFlashThreads) {
        const bool is_v = e >= BC * kChunks;
        const int ee = is_v ? e - BC * kChunks : e;
        const int j = ee / kChunks, c = ee - j * kChunks, key = kt0 + j;
        const bool valid = key < k_end;  // keys past the range: zeros, never the pool's other slots
        const uint16_t* pool = is_v ? a.v_cache : a.k_cache;
        const uint16_t* src =
            valid ? pool + paged_slot(a.paged, seq, key) * a.kv_width + static_cast<int64_t>(hg) * DK + c * 8 : pool;
        cp_async16((is_v ? v_hi : k_hi) + j * (is_v ? kSV : kSQ) + c * 8, src, valid);
      }
      cp_async_commit();
      cp_async_wait<0>();
    }
    __syncthreads();
    if (!warp_active || kt0 > warp_last_pos) continue;  // causal: this warp's rows see none of the tile

    // S = Q K^T for the warp's 16 rows and BC keys.
    float s[kNT][4] = {};
#pragma unroll
    for (int kk = 0; kk < DK / 16; ++kk) {
      const int qc = kk * 16 + 2 * tig;
      const uint16_t* qr = q_hi + (warp * 16 + g) * kSQ + qc;
      const uint32_t ah[4] = {ld32(qr), ld32(qr + 8 * kSQ), ld32(qr + 8), ld32(qr + 8 * kSQ + 8)};
      const uint16_t* qrl = q_lo + (warp * 16 + g) * kSQ + qc;
      const uint32_t al[4] = {ld32(qrl), ld32(qrl + 8 * kSQ), ld32(qrl + 8), ld32(qrl + 8 * kSQ + 8)};
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt) {
        const uint16_t* kr = k_hi + (nt * 8 + g) * kSQ + qc;
        const uint32_t b0 = ld32(kr), b1 = ld32(kr + 8);
        mma_bf16(s[nt], ah, b0, b1);
        mma_bf16(s[nt], al, b0, b1);
        if constexpr (kMla) {
          const uint16_t* krl = k_lo + (nt * 8 + g) * kSQ + qc;
          mma_bf16(s[nt], ah, ld32(krl), ld32(krl + 8));
        }
      }
    }

    // Causal mask, online softmax per row (a row's 4 lanes hold its BC scores).
    float m_use[2], alpha[2], psum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float mx = neg_inf();
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int key = kt0 + nt * 8 + 2 * tig + e;
          float& v = s[nt][2 * half + e];
          v = key <= pos[half] && key < k_end ? v * a.scale_log2 : neg_inf();
          mx = fmaxf(mx, v);
        }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m[half], mx);
      m_use[half] = m_new == neg_inf() ? 0.0f : m_new;  // a row with no key yet keeps p = 0, alpha = 0
      alpha[half] = exp2f(m[half] - m_use[half]);
      m[half] = m_new;
    }
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] = exp2f(s[nt][e] - m_use[e >> 1]);
        psum[e >> 1] += s[nt][e];
      }
#pragma unroll
    for (int half = 0; half < 2; ++half) l[half] = l[half] * alpha[half] + psum[half];  // lane-partial sums
#pragma unroll
    for (int nt = 0; nt < kVT; ++nt) {
      o[nt][0] *= alpha[0];
      o[nt][1] *= alpha[0];
      o[nt][2] *= alpha[1];
      o[nt][3] *= alpha[1];
    }

    // O += P V: score tiles 2ks and 2ks+1 are, register for register, the A fragment of k-step ks.
#pragma unroll
    for (int ks = 0; ks < BC / 16; ++ks) {
      uint32_t ph[4], pl[4];
      split_pack(s[2 * ks][0], s[2 * ks][1], ph[0], pl[0]);
      split_pack(s[2 * ks][2], s[2 * ks][3], ph[1], pl[1]);
      split_pack(s[2 * ks + 1][0], s[2 * ks + 1][1], ph[2], pl[2]);
      split_pack(s[2 * ks + 1][2], s[2 * ks + 1][3], ph[3], pl[3]);
      const int kr = ks * 16 + 2 * tig;
#pragma unroll
      for (int nt = 0; nt < kVT; ++nt) {
        const uint16_t* vc = v_hi + kr * kSV + nt * 8 + g;
        const uint32_t b0 = pack2(vc[0], vc[kSV]), b1 = pack2(vc[8 * kSV], vc[9 * kSV]);
        mma_bf16(o[nt], ph, b0, b1);
        mma_bf16(o[nt], pl, b0, b1);
        if constexpr (kMla) {
          const uint16_t* vl = v_lo + kr * kSV + nt * 8 + g;
          mma_bf16(o[nt], ph, pack2(vl[0], vl[kSV]), pack2(vl[8 * kSV], vl[9 * kSV]));
        }
      }
    }
  }

  if (!warp_active) return;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    l[half] += __shfl_xor_sync(0xffffffffu, l[half], 1);
    l[half] += __shfl_xor_sync(0xffffffffu, l[half], 2);
  }
  const int64_t n_partials = static_cast<int64_t>(a.n_splits) * a.n_seqs * a.max_q * a.n_heads;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = wr0 + g + 8 * half;
    if (row >= n_rows) continue;
    const int token = row / a.group, head = hg * a.group + row % a.group;
    float* dst;
    float mul = 1.0f;
    if (a.n_splits == 1) {
      dst = a.out + (q0 + token) * a.ld_out + static_cast<int64_t>(head) * DV;
      mul = l[half] > 0.0f ? 1.0f / l[half] : 0.0f;
    } else {
      const int64_t idx = partial_index(split, seq, token, head, a.n_seqs, a.max_q, a.n_heads);
      dst = a.scratch + idx * DV;
      if (tig == 0) {
        a.scratch[n_partials * DV + idx * 2] = m[half];
        a.scratch[n_partials * DV + idx * 2 + 1] = l[half];
      }
    }
#pragma unroll
    for (int nt = 0; nt < kVT; ++nt) {
      dst[nt * 8 + 2 * tig] = o[nt][2 * half] * mul;
      dst[nt * 8 + 2 * tig + 1] = o[nt][2 * half + 1] * mul;
    }
  }
}

template <int DK, int DV, int BC, bool kMla>
void launch_flash(const FlashArgs& a, int n_head_groups, cudaStream_t stream) {
  constexpr size_t smem = flash_smem_bytes<DK, DV, BC, kMla>();
  static_assert(smem <= 227 * 1024, "fits an SM");
  auto* kernel = flash_kernel<DK, DV, BC, kMla>;
  MLABENCH_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const int row_tiles = static_cast<int>((int64_t{a.max_q} * a.group + kFlashRows - 1) / kFlashRows);
  const dim3 grid(static_cast<unsigned>(row_tiles), static_cast<unsigned>(n_head_groups),
                  static_cast<unsigned>(a.n_seqs * a.n_splits));
  kernel<<<grid, kFlashThreads, smem, stream>>>(a);
  MLABENCH_CUDA(cudaGetLastError());
}

void launch_combine(const CombineArgs& c, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(c.n_heads), static_cast<unsigned>(c.max_q), static_cast<unsigned>(c.n_seqs));
  launch_pdl(attn_combine_kernel, grid, dim3(128), 0, stream, c);
  MLABENCH_CUDA(cudaGetLastError());
}

// Keys per split: a multiple of the key tile; recomputes how many splits that makes.
void plan_splits(int max_kv, int tile, int& n_splits, int& split_len) {
  if (n_splits <= 1) {
    n_splits = 1;
    split_len = (1 << 30);  // one split covers any kv_len
    return;
  }
  split_len = (max_kv + n_splits - 1) / n_splits;
  split_len = (split_len + tile - 1) / tile * tile;
  n_splits = (max_kv + split_len - 1) / split_len;
  if (n_splits <= 1) {
    n_splits = 1;
    split_len = (1 << 30);
  }
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

void check_paged(const PagedCache& pc, const char* what) {
  MLABENCH_CHECK(pc.block_size > 0 && pc.block_tables != nullptr && pc.max_blocks > 0,
                 "{}: paged cache has block_size {}, max_blocks {}{}. HINT: fill PagedCache from the cache "
                 "manager of this batch",
                 what, pc.block_size, pc.max_blocks, pc.block_tables ? "" : " and no block_tables");
}

}  // namespace

void mla_prefill_attention(const MlaPrefillParams& p, cudaStream_t s) {
  const VarlenBatch& b = p.batch;
  if (b.n_seqs == 0 || b.max_q == 0) return;
  const bool bf16 = p.q_bf16 != nullptr;
  MLABENCH_CHECK(b.n_seqs > 0 && p.n_heads > 0 && b.cu_q && b.kv_len && p.cu_kv && p.out &&
                     (bf16 ? p.kv_bf16 && p.k_pe_bf16 : p.q && p.kv && p.k_pe),
                 "mla_prefill_attention: n_seqs {} n_heads {} or a null pointer. HINT: fill every MlaPrefillParams "
                 "field (q, kv, k_pe, or all three BF16 ones)",
                 b.n_seqs, p.n_heads);
  if (bf16) return flash::mla_prefill_bf16(p, s);
  if (p.float32_math || !(p.nope + p.rope == 192 && p.v == 128 && p.nope % 2 == 0))
    return generic::mla_prefill_attention(p, s);  // float32 precision, or head sizes without a tensor-core instance
  FlashArgs a;
  a.n_seqs = b.n_seqs;
  a.max_q = b.max_q;
  a.cu_q = b.cu_q;
  a.kv_len = b.kv_len;
  a.q = p.q;
  a.ld_q = p.ld_q;
  a.q_head_stride = p.nope + p.rope;
  a.group = 1;
  a.n_heads = p.n_heads;
  a.cu_kv = p.cu_kv;
  a.kv = p.kv;
  a.ld_kv = p.ld_kv;
  a.k_pe = p.k_pe;
  a.ld_kpe = p.ld_kpe;
  a.nope = p.nope;
  a.out = p.out;
  a.ld_out = p.ld_out;
  a.scale_log2 = p.scale * kLog2e;
  a.n_splits = 1;
  a.split_len = 1 << 30;
  launch_flash<192, 128, 32, true>(a, p.n_heads, s);
}

void gqa_attention(const GqaAttentionParams& p, cudaStream_t s) {
  const VarlenBatch& b = p.batch;
  if (b.n_seqs == 0 || b.max_q == 0) return;
  MLABENCH_CHECK(b.n_seqs > 0 && b.cu_q && b.kv_len && p.k_cache && p.v_cache && (p.q || p.q_bf16) && p.out,
                 "gqa_attention: n_seqs {} or a null pointer. HINT: fill every GqaAttentionParams field", b.n_seqs);
  MLABENCH_CHECK(p.n_kv_heads > 0 && p.n_heads > 0 && p.n_heads % p.n_kv_heads == 0,
                 "gqa_attention: n_heads {} is not a multiple of n_kv_heads {}. HINT: check the model config",
                 p.n_heads, p.n_kv_heads);
  checks::check_cache_type(p.cache_type, "gqa_attention");
  const bool bf16_prefill = p.q_bf16 != nullptr && b.max_q > 1 && p.cache_type == DType::BF16 &&
                            gqa_prefill_bf16_supported(p.head_dim);
  MLABENCH_CHECK(bf16_prefill || p.q != nullptr,
                 "gqa_attention: a batch of max_q {} with only BF16 queries. HINT: the BF16 flash kernel serves "
                 "prefill chunks of head_dim 64 or 128 over BF16 pools; pass float32 q otherwise",
                 b.max_q);
  if (gqa_decode_applies(p)) return decode::gqa_decode_attention(p, s);  // one new row per sequence (BF16, FP8)
  if (p.cache_type != DType::BF16) return generic::gqa_attention(p, s);  // float32 precision; FP8 prefill chunks
  if (p.head_dim != 64 && p.head_dim != 128) return generic::gqa_attention(p, s);  // no tensor-core instance
  MLABENCH_CHECK(aligned16(p.k_cache) && aligned16(p.v_cache),
                 "gqa_attention: K/V pools are not 16-byte aligned. HINT: layer pools must start on a 16-byte "
                 "boundary (tiles are copied in 16-byte chunks)");
  check_paged(p.paged, "gqa_attention");
  if (bf16_prefill) return flash::gqa_prefill_bf16(p, s);  // a step with a prefill chunk, BF16 precision

  constexpr int kTile = 64;
  int n_splits = gqa_attention_splits(p), split_len = 0;
  if (n_splits > 1 && p.scratch == nullptr) n_splits = 1;
  if (n_splits > 1)
    MLABENCH_CHECK(p.scratch_floats >= gqa_attention_scratch_floats(p),
                   "gqa_attention: scratch holds {} floats, the split-KV plan needs {}. HINT: size it with "
                   "gqa_attention_scratch_floats() (kernel_params.h) or pass scratch = nullptr",
                   p.scratch_floats, gqa_attention_scratch_floats(p));
  plan_splits(b.max_kv, kTile, n_splits, split_len);

  FlashArgs a;
  a.n_seqs = b.n_seqs;
  a.max_q = b.max_q;
  a.cu_q = b.cu_q;
  a.kv_len = b.kv_len;
  a.q = p.q;
  a.ld_q = p.ld_q;
  a.q_head_stride = p.head_dim;
  a.group = p.n_heads / p.n_kv_heads;
  a.n_heads = p.n_heads;
  a.k_cache = static_cast<const uint16_t*>(p.k_cache);
  a.v_cache = static_cast<const uint16_t*>(p.v_cache);
  a.kv_width = int64_t{p.n_kv_heads} * p.head_dim;
  a.paged = p.paged;
  a.out = p.out;
  a.ld_out = p.ld_out;
  a.scale_log2 = p.scale * kLog2e;
  a.n_splits = n_splits;
  a.split_len = split_len;
  a.scratch = p.scratch;
  if (p.head_dim == 128)
    launch_flash<128, 128, kTile, false>(a, p.n_kv_heads, s);
  else
    launch_flash<64, 64, kTile, false>(a, p.n_kv_heads, s);
  if (n_splits > 1) {
    CombineArgs c;
    c.scratch = p.scratch;
    c.n_partials = int64_t{n_splits} * b.n_seqs * b.max_q * p.n_heads;
    c.n_splits = n_splits;
    c.split_len = split_len;
    c.n_seqs = b.n_seqs;
    c.max_q = b.max_q;
    c.n_heads = p.n_heads;
    c.dv = p.head_dim;
    c.cu_q = b.cu_q;
    c.kv_len = b.kv_len;
    c.out = p.out;
    c.ld_out = p.ld_out;
    launch_combine(c, s);
  }
}

}  // namespace mlabench::kernels::cuda
