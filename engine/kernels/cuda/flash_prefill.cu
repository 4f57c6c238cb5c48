// BF16 flash attention for prefill chunks (MLA decompressed, and MHA/GQA over the paged pools): causal, online
// softmax in float32, no [q, kv] buffer; twin: twin::mla_prefill_attention / twin::gqa_attention on the same BF16
// operands (engine/kernels/twin/attention.cpp).
//
// Numerics are FlashAttention's (and so transformers' BF16 sdpa's): BF16 q, k, v, float32 accumulation, P rounded
// to BF16 before P.V. The float32-accurate paths (hi/lo split operands, float32 math) stay in attention.cu for the
// engine's float32 precision.
//
// Schedule (FlashAttention-2 on mma.sync, an intermediate step towards wgmma): a CTA of 8 warps takes 128
// (token, head) rows of one sequence and one head (MLA) or KV head (GQA: all its query heads, so K/V are read once
// per group), 16 rows per warp with their Q fragments in registers for the whole kernel, and walks 64-key tiles
// through a 3-stage cp.async ring in shared memory. Rows are 16-byte chunks XOR-swizzled by (row % 8), so the
// ldmatrix loads of K (B of Q.K^T) and the ldmatrix.trans loads of V (B of P.V) are conflict-free. Scores stay in
// registers and become P's A fragments. Row tiles are launched last-first: the causal diagonal makes them the
// longest, and starting them early shortens the tail.
//
// FLOPs per tile per CTA: 128 x 64 x (DK + DV) x 2 = 5.2 MFLOP at MLA's 192 / 128; shared-memory reads: each warp
// reads the whole K and V tile (40 KB) once, 320 KB per tile, which bounds an SM near half the mma.sync peak.
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "core/check.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/decode_common.cuh"
#include "engine/kernels/cuda/flash_prefill.h"
#include "engine/kernels/cuda/hopper.h"
#include "engine/kernels/cuda/tma.cuh"
#include "engine/kernels/cuda/wgmma.h"

namespace mlabench::kernels::cuda::flash {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;
constexpr int kRows = 16 * kWarps;  // (token, head) rows per CTA
constexpr int kKeys = 64;           // keys per tile
constexpr int kStages = 3;

struct Args {
  int n_seqs = 0;
  const int32_t* cu_q = nullptr;
  const int32_t* kv_len = nullptr;
  const uint16_t* q = nullptr;
  int64_t ld_q = 0;
  int q_head_stride = 0;
  int group = 1;  // query heads per blockIdx.y: row r is token r / group, head blockIdx.y * group + r % group
  // MLA: keys [k_nope of head h ; k_pe] and values v of head h at rows cu_kv[s] + key.
  const int32_t* cu_kv = nullptr;
  const uint16_t* kv = nullptr;
  int64_t ld_kv = 0;
  int kv_head_stride = 0;
  const uint16_t* k_pe = nullptr;
  int64_t ld_kpe = 0;
  int nope = 0;
  // GQA: paged pools, KV head blockIdx.y.
  const uint16_t* k_cache = nullptr;
  const uint16_t* v_cache = nullptr;
  int64_t kv_width = 0;
  PagedCache paged;
  float* out = nullptr;
  int64_t ld_out = 0;
  float scale_log2 = 0.0f;
  // The TMA-fed MLA kernel: tensor maps over kv (columns [k_nope ; v] of every head, n_keys rows) and k_pe (64
  // columns, n_keys rows), encoded per launch; rows past n_keys read as zeros. Unused by the other kernels.
  CUtensorMap map_kv, map_kpe;
};

using decode::cp_async16;
using decode::cp_async_commit;
using decode::cp_async_wait;
using decode::kLog2e;
using decode::ldmatrix_x4;
using decode::ldmatrix_x4_trans;
using decode::neg_inf;
using decode::paged_slot;

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// mma.sync on 4 consecutive accumulators of a flat score or output array (the layout of decode::mma_bf16's c).
__device__ __forceinline__ void mma(float* c, const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  decode::mma_bf16(*reinterpret_cast<float(*)[4]>(c), a, b0, b1);
}

// Byte offset of 16-byte chunk c of row r in a tile of rows of kChunks chunks, swizzled so that 8 consecutive
// rows at the same logical chunk hit 8 different bank groups.
template <int kChunks>
__device__ __forceinline__ uint32_t swz(int r, int c) {
  static_assert(kChunks % 8 == 0, "the swizzle permutes chunks within groups of 8");
  return static_cast<uint32_t>((r * kChunks + (c ^ (r & 7))) * 16);
}

template <int DK, int DV>
constexpr int stage_bytes() {
  return kKeys * (DK + DV) * 2;
}

// Byte offset of 16-byte chunk c of row r in a tile of `rows` rows laid out for wgmma's 128-byte swizzle: column
// block c / 8 (64 BF16 values of every row, 128 bytes a row), then the next; chunks XOR-swizzled by (r % 8).
__device__ __forceinline__ uint32_t sw128_off(int rows, int r, int c) {
  return static_cast<uint32_t>((c >> 3) * rows * 128 + r * 128 + (((c & 7) ^ (r & 7)) << 4));
}

// Copies keys [kt0, kt0 + BC) of this CTA's head into one stage of the mma.sync kernel, K then V, whole rows in the
// swz layout (keys at or past k_end read as zeros).
template <int DK, int DV, int BC, bool kMla>
__device__ __forceinline__ void load_tile(const Args& a, uint32_t stage, int seq, int hg, int kt0, int k_end) {
  constexpr int kCK = DK / 8, kCV = DV / 8;
  const uint32_t k_s = stage, v_s = stage + BC * DK * 2;
  for (int e = threadIdx.x; e < BC * (kCK + kCV); e += kThreads) {
    const bool is_v = e >= BC * kCK;
    const int ee = is_v ? e - BC * kCK : e;
    const int j = is_v ? ee / kCV : ee / kCK, c = is_v ? ee - j * kCV : ee - j * kCK, key = kt0 + j;
    const bool valid = key < k_end;
    const uint16_t* src = a.q;  // any readable address when !valid
    if (valid) {
      if constexpr (kMla) {
        const int64_t row = a.cu_kv[seq] + key;
        if (is_v)
          src = a.kv + row * a.ld_kv + static_cast<int64_t>(hg) * a.kv_head_stride + a.nope + c * 8;
        else if (c * 8 < a.nope)
          src = a.kv + row * a.ld_kv + static_cast<int64_t>(hg) * a.kv_head_stride + c * 8;
        else
          src = a.k_pe + row * a.ld_kpe + (c * 8 - a.nope);
      } else {
        src = (is_v ? a.v_cache : a.k_cache) + paged_slot(a.paged, seq, key) * a.kv_width + static_cast<int64_t>(hg) * DK + c * 8;
      }
    }
    cp_async16(is_v ? v_s + swz<kCV>(j, c) : k_s + swz<kCK>(j, c), src, valid);
  }
}

// The rows of one CTA: 128 (token, head) rows of one sequence from r0, positions past + token.
struct CtaRows {
  int q0 = 0, n_rows = 0, r0 = 0, past = 0, k_end = 0;
  __device__ CtaRows(const Args& a, int seq) {
    q0 = a.cu_q[seq];
    const int q_len = a.cu_q[seq + 1] - q0, kv_len = a.kv_len[seq];
    n_rows = q_len * a.group;
    r0 = static_cast<int>(gridDim.x - 1 - blockIdx.x) * kRows;  // longest (most keys) tiles first
    past = kv_len - q_len;
    k_end = min(kv_len, past + (min(n_rows, r0 + kRows) - 1) / a.group + 1);
  }
};

// 2^x on the SFU (MUFU.EX2), flushing subnormal results to zero: p in [0, 1] becomes BF16 before P.V, and BF16
// keeps float32's exponent range, so a flushed 2^-126 is below anything P.V can add to a row whose max term is 1.
__device__ __forceinline__ float exp2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// One tile of scores (kNS per thread: n8 chunks j of 4 values {(g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1)}, the
// layout of mma.sync and wgmma accumulators alike) through the online softmax: masked where the tile reaches past a
// row's position or past k_end, exponentiated against the running max in log2 units (one FFMA a score: the scale
// is positive, so max(s) * scale is the max of the scaled scores); m and the lane-partial sums l updated; alpha
// returns the factor the output accumulators take. kMask = false leaves the mask out of the code altogether (tiles
// wholly below every row's position and k_end): ptxas predicates a runtime-skipped mask rather than branching over
// it, so it would cost its compares and selects on every tile.
template <bool kMask, int kNS>
__device__ __forceinline__ void softmax_tile(float (&s)[kNS], float (&m)[2], float (&l)[2], float (&alpha)[2],
                                             int kt0, const int (&pos)[2], int k_end, bool need_mask,
                                             float scale_log2) {
  const int tig = threadIdx.x & 3;
  float m_use[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float mx = neg_inf();
#pragma unroll
    for (int j = 0; j < kNS / 4; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int key = kt0 + j * 8 + 2 * tig + e;
        float& v = s[j * 4 + 2 * half + e];
        if (kMask && need_mask && !(key <= pos[half] && key < k_end)) v = neg_inf();
        mx = fmaxf(mx, v);
      }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m[half], mx * scale_log2);
    m_use[half] = m_new == neg_inf() ? 0.0f : m_new;  // a row with no key yet keeps p = 0, alpha = 0
    alpha[half] = exp2_ftz(m[half] - m_use[half]);
    m[half] = m_new;
  }
  float psum[2] = {0.0f, 0.0f};
#pragma unroll
  for (int i = 0; i < kNS; ++i) {
    s[i] = exp2_ftz(fmaf(s[i], scale_log2, -m_use[(i >> 1) & 1]));
    psum[(i >> 1) & 1] += s[i];
  }
#pragma unroll
  for (int half = 0; half < 2; ++half) l[half] = l[half] * alpha[half] + psum[half];
}

template <int kNO>
__device__ __forceinline__ void rescale(float (&o)[kNO], const float (&alpha)[2]) {
#pragma unroll
  for (int i = 0; i < kNO; ++i) o[i] *= alpha[(i >> 1) & 1];
}

// P's A fragment of key step ks (16 keys): score chunks 2ks and 2ks + 1, register for register, in BF16.
template <int kNS>
__device__ __forceinline__ void p_fragment(const float (&s)[kNS], int ks, uint32_t (&pa)[4]) {
  const float* c0 = s + 8 * ks;
  pa[0] = pack_bf16(c0[0], c0[1]);
  pa[1] = pack_bf16(c0[2], c0[3]);
  pa[2] = pack_bf16(c0[4], c0[5]);
  pa[3] = pack_bf16(c0[6], c0[7]);
}

// Output rows g and g + 8 of the warp starting at row wr0: o / l, float32.
template <int DV>
__device__ __forceinline__ void store_rows(const Args& a, const CtaRows& cr, int hg, int wr0, const float (&o)[DV / 2],
                                           float (&l)[2]) {
  const int g = (threadIdx.x & 31) >> 2, tig = threadIdx.x & 3;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    l[half] += __shfl_xor_sync(0xffffffffu, l[half], 1);
    l[half] += __shfl_xor_sync(0xffffffffu, l[half], 2);
  }
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = wr0 + g + 8 * half;
    if (row >= cr.n_rows) continue;
    const int token = row / a.group, head = hg * a.group + row % a.group;
    float* dst = a.out + (cr.q0 + token) * a.ld_out + static_cast<int64_t>(head) * DV + 2 * tig;
    const float mul = l[half] > 0.0f ? 1.0f / l[half] : 0.0f;
#pragma unroll
    for (int j = 0; j < DV / 8; ++j) {
      dst[j * 8] = o[j * 4 + 2 * half] * mul;
      dst[j * 8 + 1] = o[j * 4 + 2 * half + 1] * mul;
    }
  }
}

// mma.sync (sm_80 and later; the fallback where the wgmma kernel is not built): Q fragments in registers, K and V
// fragments by ldmatrix from the swz layout.
template <int DK, int DV, bool kMla>
__global__ void __launch_bounds__(kThreads, 1) flash_mma_kernel(const __grid_constant__ Args a) {
  constexpr int kKSteps = DK / 16, kNS = kKeys / 2, kNO = DV / 2;
  static_assert(DK % 64 == 0 && DV % 64 == 0, "rows of whole swizzle groups");
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t smem0 = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tig = lane & 3;
  const int hg = blockIdx.y, seq = blockIdx.z;
  const CtaRows cr(a, seq);
  if (cr.r0 >= cr.n_rows) return;

  // This warp's rows and their Q fragments (rows past the sequence are zeros: finite scores, never stored).
  const int wr0 = cr.r0 + warp * 16;
  const bool warp_active = wr0 < cr.n_rows;
  int pos[2];
  uint32_t qf[kKSteps][4];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = wr0 + g + 8 * half;
    pos[half] = cr.past + min(row, cr.n_rows - 1) / a.group;
    const uint16_t* src = nullptr;
    if (row < cr.n_rows) {
      const int token = row / a.group, head = hg * a.group + row % a.group;
      src = a.q + (cr.q0 + token) * a.ld_q + static_cast<int64_t>(head) * a.q_head_stride + 2 * tig;
    }
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
      qf[kk][half] = src ? *reinterpret_cast<const uint32_t*>(src + kk * 16) : 0u;
      qf[kk][2 + half] = src ? *reinterpret_cast<const uint32_t*>(src + kk * 16 + 8) : 0u;
    }
  }
  const int warp_first_pos = cr.past + min(wr0, cr.n_rows - 1) / a.group;
  const int warp_last_pos = cr.past + min(wr0 + 15, cr.n_rows - 1) / a.group;

  float o[kNO] = {};
  float m[2] = {neg_inf(), neg_inf()}, l[2] = {0.0f, 0.0f};
  const int n_tiles = (cr.k_end + kKeys - 1) / kKeys;
  constexpr uint32_t kStage = stage_bytes<DK, DV>();
#pragma unroll
  for (int st = 0; st < kStages - 1; ++st) {
    if (st < n_tiles) load_tile<DK, DV, kKeys, kMla>(a, smem0 + st * kStage, seq, hg, st * kKeys, cr.k_end);
    cp_async_commit();
  }

  // ldmatrix lane roles: matrix mi = lane / 8 supplies row (lane % 8) of an 8x8 block.
  const int mi = lane >> 3, mr = lane & 7;
  for (int t = 0; t < n_tiles; ++t) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // tile t landed for every thread; tile t - 1's stage is free to refill
    const int tn = t + kStages - 1;
    if (tn < n_tiles)
      load_tile<DK, DV, kKeys, kMla>(a, smem0 + (tn % kStages) * kStage, seq, hg, tn * kKeys, cr.k_end);
    cp_async_commit();
    const int kt0 = t * kKeys;
    if (!warp_active || kt0 > warp_last_pos) continue;  // causal: this warp's rows see none of the tile
    const uint32_t k_s = smem0 + (t % kStages) * kStage, v_s = k_s + kKeys * DK * 2;

    // S = Q K^T: matrices (n-tile 2np + mi / 2, k half mi % 2) of K rows give two n-tiles' B fragments.
    float s[kNS] = {};
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk)
#pragma unroll
      for (int np = 0; np < kNS / 8; ++np) {
        uint32_t b[4];
        ldmatrix_x4(b, k_s + swz<DK / 8>(np * 16 + (mi >> 1) * 8 + mr, kk * 2 + (mi & 1)));
        mma(s + 8 * np, qf[kk], b[0], b[1]);
        mma(s + 8 * np + 4, qf[kk], b[2], b[3]);
      }
    float alpha[2];
    const bool need_mask = kt0 + kKeys > cr.k_end || kt0 + kKeys - 1 > warp_first_pos;
    softmax_tile<true>(s, m, l, alpha, kt0, pos, cr.k_end, need_mask, a.scale_log2);
    rescale(o, alpha);

    // O += P V: matrices (keys half mi % 2, value tile 2np + mi / 2) of V rows, transposed, give two value tiles'
    // B fragments.
#pragma unroll
    for (int ks = 0; ks < kKeys / 16; ++ks) {
      uint32_t pa[4];
      p_fragment(s, ks, pa);
#pragma unroll
      for (int np = 0; np < kNO / 8; ++np) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, v_s + swz<DV / 8>(ks * 16 + (mi & 1) * 8 + mr, np * 2 + (mi >> 1)));
        mma(o + 8 * np, pa, b[0], b[1]);
        mma(o + 8 * np + 4, pa, b[2], b[3]);
      }
    }
  }
  cp_async_wait<0>();  // no copy may outlive the CTA's shared memory
  if (warp_active) store_rows<DV>(a, cr, hg, wr0, o, l);
}

// The pipelined wgmma kernel (FlashAttention-3's intra-warpgroup schedule, on cp.async): keys and values in separate
// two-slot rings, values one tile behind keys, so that one iteration issues S_t = Q K_t^T and O += P_{t-1} V_{t-1}
// back to back, then tile t's softmax, then rescales O. ptxas moves the wait for P.V above the softmax; a CTA-scope
// fence holds it below (the softmax then runs under P.V in the SASS) but measured no faster, twice (perf notes,
// rounds 8 and 10), so the kernel leaves ptxas its order. Tiles below the CTA's diagonal run a softmax with no mask
// code. Shared memory at MLA's 192 / 128: Q 48 KB + K 2 x 48 KB + V 2 x 32 KB = 208 KB, one CTA an SM.
constexpr int kPipeBC = 128;  // keys per tile; one key row per thread pair (kThreads / 2 rows a pass)
static_assert(kThreads / 2 == kPipeBC, "a thread's key row stays fixed across its copies");
template <int DK, int DV>
constexpr int pipe_smem_bytes() {
  return kRows * DK * 2 + 2 * kPipeBC * (DK + DV) * 2 + 64 + 1024;  // Q, K ring, V ring, mbarriers; alignment
}

// This thread's share of a tile copy: key row j = tid / 2, 16-byte chunks par + 2i (par = tid & 1), so a thread
// pair reads 32 contiguous bytes (a whole sector) per copy. In the sw128 layout chunk par + 2i lands in column block
// i / 4 (par never carries it into the next one) at an XOR pattern that depends on i % 4 only: four offsets,
// computed once, place every chunk.
struct PipeLane {
  int j = 0, par8 = 0;  // key row in the tile; the first column of this thread's chunks
  uint32_t sw[4] = {};
  __device__ PipeLane() {
    j = static_cast<int>(threadIdx.x >> 1);
    const int par = static_cast<int>(threadIdx.x & 1);
    par8 = 8 * par;
#pragma unroll
    for (int i = 0; i < 4; ++i) sw[i] = static_cast<uint32_t>(j * 128 + ((((2 * i) | par) ^ (j & 7)) << 4));
  }
};

// One key row of a tile into a ring slot: columns [0, kSplit) from row0, [kSplit, D) from row1 (MLA keys: k_nope,
// then k_pe), both already at this thread's first column. valid = false fills zeros (keys at or past k_end).
template <int D, int kSplit>
__device__ __forceinline__ void copy_key_row(uint32_t slot, const PipeLane& ln, const uint16_t* row0,
                                             const uint16_t* row1, bool valid) {
  static_assert(kSplit % 16 == 0, "a thread pair's 32 bytes never straddle the split");
#pragma unroll
  for (int i = 0; i < D / 16; ++i)
    cp_async16(slot + ln.sw[i & 3] + (i >> 2) * (kPipeBC * 128), (16 * i < kSplit ? row0 : row1) + 16 * i, valid);
}

// Named barriers of the ping-pong schedule (barrier 0 is __syncthreads').
__device__ __forceinline__ void named_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
// Two consumer warpgroups and a producer warpgroup (one thread of which copies): registers are allocated by
// warpgroup, so a lone producer warp would cost the consumers as much as a whole one; with setmaxnreg the producer
// gives its registers to the consumers (40 and 232 a thread, as the grouped expert GEMM).
constexpr int kPingThreads = kThreads + 128;

// kPing (MLABENCH_FLASH=pingpong, TMA copies only): FlashAttention-3's ping-pong. A producer (thread 256) issues
// every copy, gated by per-slot empty barriers the consumers' warps arrive on once their MMAs have read a slot, so
// no block-wide barrier remains in the loop; and the two consumer warpgroups take turns issuing their MMAs (named
// barriers 1 and 2), so one warpgroup's softmax runs while the other's S and P.V occupy the tensor cores, instead
// of both softmaxes at once with the tensor cores idle.
template <int DK, int DV, bool kMla, bool kTma, bool kPing = false>
__global__ void __launch_bounds__(kPing ? kPingThreads : kThreads, 1)
    flash_wgmma_pipe_kernel(const __grid_constant__ Args a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int BC = kPipeBC, kKSteps = DK / 16, kNS = BC / 2, kNO = DV / 2;
  constexpr int kNope = 128;  // MLA: the k_nope head size of the only instance (192 = 128 + 64)
  static_assert(DK % 64 == 0 && (DV == 64 || DV == 128), "instances");
  static_assert(!kMla || (DK == 192 && DV == 128), "MLA's instance is V2's 192 / 128");
  static_assert(kTma || !kPing, "the ping-pong schedule's producer issues TMA copies");
  extern __shared__ __align__(1024) unsigned char smem_pipe[];
  const uint32_t base = (static_cast<uint32_t>(__cvta_generic_to_shared(smem_pipe)) + 1023u) & ~1023u;
  const uint32_t q_s = base, k_ring = base + kRows * DK * 2, v_ring = k_ring + 2 * BC * DK * 2;
  // kTma: stage s's barrier at bars + 8 s. kPing: K's full barriers at bars + 8 s, V's at + 16 + 8 s, then K's
  // and V's empty barriers at + 32 + 8 s and + 48 + 8 s.
  const uint32_t bars = v_ring + 2 * BC * DV * 2;
  const uint32_t full_v = bars + 16, empty_k = bars + 32, empty_v = bars + 48;
  const int tid = threadIdx.x, lane = tid & 31, g = lane >> 2;
  // The warp index through a shuffle, so that ptxas sees the producer/consumer branch warp-uniform (a divergent
  // path before a wgmma serializes them all).
  const int warp = kPing ? __shfl_sync(0xffffffffu, tid >> 5, 0) : tid >> 5;
  const int wg = warp >> 2, hg = blockIdx.y, seq = blockIdx.z;
  const CtaRows cr(a, seq);
  if (cr.r0 >= cr.n_rows) return;

  for (int e = tid; e < kRows * (DK / 8) && tid < kThreads; e += kThreads) {  // Q of the CTA's rows, zeros past
    const int r = e / (DK / 8), c = e - r * (DK / 8), row = cr.r0 + r;
    const uint16_t* src = a.q;
    if (row < cr.n_rows) {
      const int token = row / a.group, head = hg * a.group + row % a.group;
      src = a.q + (cr.q0 + token) * a.ld_q + static_cast<int64_t>(head) * a.q_head_stride + c * 8;
    }
    cp_async16(q_s + (r >> 6) * (64 * DK * 2) + sw128_off(64, r & 63, c), src, row < cr.n_rows);
  }

  // Copies. A key's source row (MLA: its row in kv and k_pe; GQA: its paged slot, whose block-table load is issued
  // a tile before the copy that needs it) or -1 past k_end. K_{t+1} and V_t go out together each iteration, and V_t
  // reuses the row K_t was copied from.
  const PipeLane ln;
  const int kv0 = kMla ? a.cu_kv[seq] : 0;
  auto key_row = [&](int t) -> int64_t {
    const int key = t * BC + ln.j;
    if (key >= cr.k_end) return -1;
    if constexpr (kMla)
      return kv0 + key;
    else
      return paged_slot(a.paged, seq, key);
  };
  auto copy_k = [&](int t, int64_t row) {
    const uint32_t slot = k_ring + (t & 1) * (BC * DK * 2);
    if constexpr (kMla) {
      const uint16_t* r0 = row < 0 ? a.q : a.kv + row * a.ld_kv + static_cast<int64_t>(hg) * a.kv_head_stride + ln.par8;
      const uint16_t* r1 = row < 0 ? a.q : a.k_pe + row * a.ld_kpe - kNope + ln.par8;
      copy_key_row<DK, kNope>(slot, ln, r0, r1, row >= 0);
    } else {
      const uint16_t* r0 = row < 0 ? a.q : a.k_cache + row * a.kv_width + static_cast<int64_t>(hg) * DK + ln.par8;
      copy_key_row<DK, DK>(slot, ln, r0, r0, row >= 0);
    }
  };
  auto copy_v = [&](int t, int64_t row) {
    const uint32_t slot = v_ring + (t & 1) * (BC * DV * 2);
    const uint16_t* r0 = a.q;
    if (row >= 0) {
      if constexpr (kMla)
        r0 = a.kv + row * a.ld_kv + static_cast<int64_t>(hg) * a.kv_head_stride + kNope + ln.par8;
      else
        r0 = a.v_cache + row * a.kv_width + static_cast<int64_t>(hg) * DV + ln.par8;
    }
    copy_key_row<DV, DV>(slot, ln, r0, r0, row >= 0);
  };
  const int n_tiles = (cr.k_end + BC - 1) / BC;
  int64_t row_cur = -1, row_next = -1;  // cp.async: the rows of tiles t and t + 1
  if constexpr (!kTma) {
    row_cur = key_row(0);
    row_next = key_row(1);
    if (n_tiles > 0) copy_k(0, row_cur);
  }
  cp_async_commit();  // Q (and K_0)
  // TMA (one thread): K_t is k_nope's two 64-column blocks of head hg and k_pe's one, V_t v's two; stage s of the
  // rings completes on barrier s. The rows past this sequence's keys are other sequences' or zeros: masked out of
  // the scores, and the last V tile's are zeroed before P.V (0 x NaN would poison O).
  // GQA by TMA (paged pools whose blocks hold whole 64-key halves of a tile, block_size % 64 == 0): map_kv is the K
  // pool and map_kpe the V pool; a half is one box of 64 slots per 64 columns of KV head hg, at the slot its block
  // holds it. Thread 0 keeps the halves' first slots of tile t (V_t) and t + 1 (K_{t+1}) and reads later tiles'
  // from the block table two iterations ahead of their use; -1: the half starts at or past k_end and is not copied
  // (its rows, left from two tiles back, are masked out of the scores, and the last V tile's rows past k_end zeroed).
  constexpr uint32_t kKBytes = BC * DK * 2, kVBytes = BC * DV * 2;
  constexpr uint32_t kHalfK = kKBytes / 2, kHalfV = kVBytes / 2;  // GQA: one 64-key half of a tile
  int32_t slot_v[2] = {-1, -1}, slot_k[2] = {-1, -1}, slot_n[2] = {-1, -1};
  auto tile_slots = [&](int t, int32_t(&out)[2]) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int key = t * BC + 64 * h;
      out[h] = key < cr.k_end ? static_cast<int32_t>(paged_slot(a.paged, seq, key)) : -1;
    }
  };
  auto halves = [](const int32_t(&sl)[2]) { return static_cast<uint32_t>((sl[0] >= 0) + (sl[1] >= 0)); };
  auto shift_slots = [&](int t_lookup) {  // tile t + 1's slots serve V next, t + 2's K; t_lookup's are read now
    slot_v[0] = slot_k[0], slot_v[1] = slot_k[1];
    slot_k[0] = slot_n[0], slot_k[1] = slot_n[1];
    tile_slots(t_lookup, slot_n);
  };
  auto tma_paged = [&](uint32_t slot, const CUtensorMap* map, int d, const int32_t(&sl)[2], uint32_t bar) {
#pragma unroll
    for (int h = 0; h < 2; ++h)
      if (sl[h] >= 0)
#pragma unroll
        for (int cb = 0; cb < d / 64; ++cb)
          tma::load_2d(slot + cb * (BC * 128) + h * (64 * 128), map, hg * d + cb * 64, sl[h], bar);
  };
  auto tma_k = [&](int t, uint32_t bar) {
    const uint32_t slot = k_ring + (t & 1) * kKBytes;
    if constexpr (kMla) {
      const int y = kv0 + t * BC, x = hg * a.kv_head_stride;
      tma::load_2d(slot, &a.map_kv, x, y, bar);
      tma::load_2d(slot + BC * 128, &a.map_kv, x + 64, y, bar);
      tma::load_2d(slot + 2 * BC * 128, &a.map_kpe, 0, y, bar);
    } else {
      tma_paged(slot, &a.map_kv, DK, slot_k, bar);
    }
  };
  auto tma_v = [&](int t, uint32_t bar) {
    const uint32_t slot = v_ring + (t & 1) * kVBytes;
    if constexpr (kMla) {
      const int y = kv0 + t * BC, x = hg * a.kv_head_stride + kNope;
      tma::load_2d(slot, &a.map_kv, x, y, bar);
      tma::load_2d(slot + BC * 128, &a.map_kv, x + 64, y, bar);
    } else {
      tma_paged(slot, &a.map_kpe, DV, slot_v, bar);
    }
  };
  if constexpr (kPing) {
    if (tid == 0) {
      for (int i = 0; i < 4; ++i) tma::mbar_init(bars + 8 * i, 1);             // full: the producer's expect_tx
      for (int i = 4; i < 8; ++i) tma::mbar_init(bars + 8 * i, kWarps);  // empty: the 8 consumer warps' lane 0
      tma::mbar_init_fence();
    }
    __syncthreads();
    if (wg == 2) {  // the producer: K_0, then K_{t+1} and V_t as the consumers free their slots
      asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
      if (tid == kThreads && n_tiles > 0) {
        if constexpr (!kMla) tile_slots(0, slot_k);
        tma::mbar_arrive_expect_tx(bars, kMla ? kKBytes : halves(slot_k) * kHalfK);
        tma_k(0, bars);
        if constexpr (!kMla) {
          slot_v[0] = slot_k[0], slot_v[1] = slot_k[1];
          tile_slots(1, slot_n);
        }
        for (int t = 0; t < n_tiles; ++t) {
          if (t + 1 < n_tiles) {
            const int sk = (t + 1) & 1;
            if (t + 1 >= 2) tma::mbar_wait(empty_k + 8 * sk, (((t + 1) >> 1) - 1) & 1);
            if constexpr (!kMla) {
              slot_k[0] = slot_n[0], slot_k[1] = slot_n[1];
              tile_slots(t + 2, slot_n);
            }
            tma::mbar_arrive_expect_tx(bars + 8 * sk, kMla ? kKBytes : halves(slot_k) * kHalfK);
            tma_k(t + 1, bars + 8 * sk);
          }
          const int sv = t & 1;
          if (t >= 2) tma::mbar_wait(empty_v + 8 * sv, ((t >> 1) - 1) & 1);
          tma::mbar_arrive_expect_tx(full_v + 8 * sv, kMla ? kVBytes : halves(slot_v) * kHalfV);
          tma_v(t, full_v + 8 * sv);
          if constexpr (!kMla) slot_v[0] = slot_k[0], slot_v[1] = slot_k[1];  // tile t + 1's
        }
      }
      return;
    }
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
  } else if constexpr (kTma) {
    if (tid == 0) {
      tma::mbar_init(bars, 1);
      tma::mbar_init(bars + 8, 1);
      tma::mbar_init_fence();
    }
    __syncthreads();
    if (tid == 0 && n_tiles > 0) {
      if constexpr (!kMla) {  // K_0 now (slot_k holds tile 0's slots while it is copied), tile 1's read ahead
        tile_slots(0, slot_k);
        tile_slots(1, slot_n);
      }
      tma::mbar_arrive_expect_tx(bars, kMla ? kKBytes : halves(slot_k) * kHalfK);
      tma_k(0, bars);
      if constexpr (!kMla) shift_slots(2);  // V_0 and K_1 go out in the first iteration
    }
  }
  // K_{t+1} and V_t into the slots the last iteration freed. TMA: stage (t + 1) & 1, issued before the MMAs (one
  // thread: a branch that must not sit between an MMA and its wait); cp.async: after them, by every thread.
  auto copy_next_tma = [&](int t) {
    if (kTma && !kPing && tid == 0) {
      const uint32_t bar = bars + ((t + 1) & 1) * 8;
      const bool k_next = t + 1 < n_tiles;
      if constexpr (kMla)
        tma::mbar_arrive_expect_tx(bar, (k_next ? kKBytes : 0) + kVBytes);
      else
        tma::mbar_arrive_expect_tx(bar, (k_next ? halves(slot_k) * kHalfK : 0) + halves(slot_v) * kHalfV);
      if (k_next) tma_k(t + 1, bar);
      tma_v(t, bar);
      if constexpr (!kMla) shift_slots(t + 3);
    }
  };
  auto copy_next = [&](int t) {
    if constexpr (!kTma) {
      if (t + 1 < n_tiles) copy_k(t + 1, row_next);
      copy_v(t, row_cur);
      cp_async_commit();
      row_cur = row_next;
      row_next = key_row(t + 2);
    }
  };

  const int wr0 = cr.r0 + warp * 16;
  int pos[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) pos[half] = cr.past + min(wr0 + g + 8 * half, cr.n_rows - 1) / a.group;
  const uint32_t q_wg = q_s + wg * (64 * DK * 2);
  // Tiles [0, n_unmasked) lie below every row's position and k_end: their softmax has no mask in its code. The
  // bound is the CTA's (its first row has the smallest position), so it is the same for both warpgroups.
  const int cta_first_pos = cr.past + min(cr.r0, cr.n_rows - 1) / a.group;
  const int n_unmasked = min(cr.k_end, cta_first_pos + 1) / BC;

  // Both warpgroups take every tile, with no branch around an MMA or a wait: ptxas serializes wgmma it cannot
  // prove warpgroup-uniform. A tile past a warpgroup's rows (GQA groups, the last rows of a sequence) is masked
  // whole: p = 0, alpha = 1.
  float s[kNS];
  float o[kNO] = {};
  uint32_t pa[BC / 16][4];
  float m[2] = {neg_inf(), neg_inf()}, l[2] = {0.0f, 0.0f};
  auto issue_qk = [&](int t) {  // s = Q K_t^T
    const uint32_t k_s = k_ring + (t & 1) * (BC * DK * 2);
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
      const uint64_t da = wgmma::desc_sw128(q_wg + (kk >> 2) * (64 * 128) + (kk & 3) * 32, 16, 1024);
      const uint64_t db = wgmma::desc_sw128(k_s + (kk >> 2) * (BC * 128) + (kk & 3) * 32, 16, 1024);
      wgmma::wgmma_ss_n128(s, da, db, kk > 0);
    }
    wgmma::commit();
  };
  auto issue_pv = [&](int t) {  // o += P_t V_t
    const uint32_t v_s = v_ring + (t & 1) * (BC * DV * 2);
#pragma unroll
    for (int ks = 0; ks < BC / 16; ++ks) {
      const uint64_t db = wgmma::desc_sw128(v_s + ks * 16 * 128, BC * 128, 1024);
      if constexpr (DV == 64)
        wgmma::wgmma_rs_n64(o, pa[ks], db);
      else
        wgmma::wgmma_rs_n128(o, pa[ks], db);
    }
    wgmma::commit();
  };
  // The w-th wait (tile 0, then iteration t = w, then the last P.V at w = n_tiles): K_w and V_{w-1} landed, and
  // after the barrier every thread is done with K_{w-1} and V_{w-2}, whose slots are free. TMA: stage w & 1, its
  // (w / 2)-th phase.
  auto tile_landed = [&](int w) {
    if (!kTma || w == 0) {
      cp_async_wait<0>();          // this thread's copies (TMA: Q only)
      wgmma::fence_proxy_async();  // visible to wgmma's reads
    }
    if constexpr (kPing) {  // K_w and V_{w-1} landed; Q (w == 0) copied by both warpgroups' threads
      if (w == 0) named_sync(3, kThreads);
      if (w < n_tiles) tma::mbar_wait(bars + (w & 1) * 8, (w >> 1) & 1);
      if (w > 0) tma::mbar_wait(full_v + ((w - 1) & 1) * 8, ((w - 1) >> 1) & 1);
      return;
    }
    if constexpr (kTma) tma::mbar_wait(bars + (w & 1) * 8, (w >> 1) & 1);
    __syncthreads();
  };
  // kPing: this warpgroup's turn on the tensor cores (barrier 1 + wg, which the other warpgroup arrives on once it
  // has issued its MMAs), and the other's turn once this one has issued. Warpgroup 1 lets warpgroup 0 go first.
  auto turn_begin = [&] {
    if constexpr (kPing) named_sync(1 + wg, kThreads);
  };
  auto turn_end = [&] {
    if constexpr (kPing) named_arrive(2 - wg, kThreads);
  };
  auto release = [&](uint32_t empty, int t) {  // kPing: this warp's MMAs are done with tile t's slot
    if (kPing && lane == 0) tma::mbar_arrive(empty + (t & 1) * 8);
  };
  if constexpr (kPing)
    if (wg == 1) named_arrive(1, kThreads);
  auto softmax = [&](int t, float(&alpha)[2], auto masked) {
    softmax_tile<decltype(masked)::value>(s, m, l, alpha, t * BC, pos, cr.k_end, true, a.scale_log2);
  };
  auto to_p = [&] {
#pragma unroll
    for (int ks = 0; ks < BC / 16; ++ks) p_fragment(s, ks, pa[ks]);
  };

  // Tile 0: S_0 and its softmax alone.
  tile_landed(0);
  copy_next_tma(0);
  turn_begin();
  wgmma::fence();
  issue_qk(0);
  turn_end();
  copy_next(0);
  float alpha[2];
  wgmma::wait_all();
  wgmma::fence_regs(s);
  release(empty_k, 0);
  if (n_unmasked > 0)
    softmax(0, alpha, std::false_type{});
  else
    softmax(0, alpha, std::true_type{});
  to_p();
  // Tiles 1 ..: S_t and P_{t-1} V_{t-1} issued together; tile t's softmax runs while P.V is on the tensor cores.
  auto iteration = [&](int t, auto masked) {
    tile_landed(t);
    copy_next_tma(t);
    turn_begin();
    wgmma::fence();
    issue_qk(t);
    issue_pv(t - 1);
    turn_end();
    copy_next(t);
    wgmma::wait_one();
    wgmma::fence_regs(s);
    release(empty_k, t);
    softmax(t, alpha, masked);
    wgmma::wait_all();
    wgmma::fence_regs(o);
    wgmma::fence_regs(pa);
    release(empty_v, t - 1);
    // Past the first tiles a row's max seldom moves (alpha is then exactly 1): the warp skips the 64 multiplies
    // when none of its rows' did.
    if (__any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f)) rescale(o, alpha);
    to_p();
  };
  int t = 1;
  for (; t < n_unmasked; ++t) iteration(t, std::false_type{});
  for (; t < n_tiles; ++t) iteration(t, std::true_type{});
  // The last P.V.
  tile_landed(n_tiles);
  if constexpr (kTma) {  // the last V tile's rows past k_end to zeros (TMA copied whatever lies there)
    const int valid = cr.k_end - (n_tiles - 1) * BC;
    const uint32_t v_s = v_ring + ((n_tiles - 1) & 1) * kVBytes;
    constexpr int kChunksV = DV / 8;  // 16-byte chunks a value row: 16 at DV 128, 8 at 64 (one column block)
    // kPing: each warpgroup zeroes them before its own P.V (the other may be ahead or behind; both write zeros).
    constexpr int kZeroers = kPing ? kThreads / 2 : kThreads;
    for (int e = valid * kChunksV + (kPing ? tid & 127 : tid); e < BC * kChunksV; e += kZeroers) {
      const int r = e / kChunksV, c = e % kChunksV;
      asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(v_s + (c >> 3) * (BC * 128) + r * 128 +
                                                                        (c & 7) * 16),
                   "r"(0u)
                   : "memory");
    }
    wgmma::fence_proxy_async();
    if constexpr (kPing)
      named_sync(4 + wg, kThreads / 2);
    else
      __syncthreads();
  }
  wgmma::fence();
  issue_pv(n_tiles - 1);
  wgmma::wait_all();
  wgmma::fence_regs(o);
  if (wr0 < cr.n_rows) store_rows<DV>(a, cr, hg, wr0, o, l);
#else
  __trap();  // built only for sm_90a; the launcher picks flash_mma_kernel elsewhere
#endif
}

// Which kernel runs: the pipelined wgmma kernel with the ping-pong schedule (the default since 2026-12-05: the same
// bytes as pipe, 1 x 32K MLA 758 against 659 TFLOP/s, GQA 630 against 506, H200) where this build has sm_90a code and
// the device is a Hopper (compute capability 9.0), else mma.sync. MLABENCH_FLASH=mma | pipe | pipe-cpasync | pingpong overrides it (benchmarks
// compare them in one run). pipe feeds the tiles by TMA where it can (MLA with MlaPrefillParams::n_keys, GQA with
// 64-slot blocks and GqaAttentionParams::n_slots), else by cp.async; pipe-cpasync always by cp.async; pingpong is
// pipe with the ping-pong schedule where the tiles come by TMA (pipe elsewhere).
enum class Variant { MMA, PIPE, PIPE_CPASYNC, PINGPONG };

Variant pick_variant() {
  static const Variant v = [] {
    const Variant best = hopper::sm90a_available() ? Variant::PINGPONG : Variant::MMA;
    const char* env = std::getenv("MLABENCH_FLASH");
    if (env == nullptr) return best;
    const std::string e(env);
    MLABENCH_CHECK(e == "mma" || e == "pipe" || e == "pipe-cpasync" || e == "pingpong",
                   "MLABENCH_FLASH={}: not a flash prefill kernel. HINT: use mma, pipe, pipe-cpasync or pingpong, or "
                   "unset it",
                   e);
    MLABENCH_CHECK(e == "mma" || best != Variant::MMA,
                   "MLABENCH_FLASH={}: the wgmma kernel needs sm_90a code (a build for compute capability 9.0) and a "
                   "Hopper GPU. HINT: use MLABENCH_FLASH=mma here",
                   e);
    return e == "mma"    ? Variant::MMA
           : e == "pipe" ? Variant::PIPE
           : e == "pipe-cpasync" ? Variant::PIPE_CPASYNC
                                 : Variant::PINGPONG;
  }();
  return v;
}

template <class Kernel>
void launch_kernel(Kernel* kernel, int smem, const Args& a, int max_q, int n_head_groups, cudaStream_t stream,
                   int threads = kThreads) {
  MLABENCH_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const int64_t row_tiles = (int64_t{max_q} * a.group + kRows - 1) / kRows;
  const dim3 grid(static_cast<unsigned>(row_tiles), static_cast<unsigned>(n_head_groups),
                  static_cast<unsigned>(a.n_seqs));
  kernel<<<grid, threads, smem, stream>>>(a);
  MLABENCH_CUDA(cudaGetLastError());
}

// wgmma reads Q with 16-byte copies: rows and heads must start on 16 bytes.
bool q_aligned16(const Args& a) {
  return reinterpret_cast<uintptr_t>(a.q) % 16 == 0 && a.ld_q % 8 == 0 && a.q_head_stride % 8 == 0;
}

// with_tma: a's tensor maps are encoded (MLA, the pipe variant).
template <int DK, int DV, bool kMla>
void launch(const Args& a, bool with_tma, int max_q, int n_head_groups, cudaStream_t stream) {
  const Variant v = q_aligned16(a) ? pick_variant() : Variant::MMA;
  static_assert(pipe_smem_bytes<DK, DV>() <= 227 * 1024, "fits an SM");
  if (v == Variant::PINGPONG && with_tma)
    return launch_kernel(flash_wgmma_pipe_kernel<DK, DV, kMla, true, true>, pipe_smem_bytes<DK, DV>(), a, max_q,
                         n_head_groups, stream, kPingThreads);
  if ((v == Variant::PIPE || v == Variant::PINGPONG) && with_tma)
    return launch_kernel(flash_wgmma_pipe_kernel<DK, DV, kMla, true>, pipe_smem_bytes<DK, DV>(), a, max_q,
                         n_head_groups, stream);
  if (v != Variant::MMA)
    return launch_kernel(flash_wgmma_pipe_kernel<DK, DV, kMla, false>, pipe_smem_bytes<DK, DV>(), a, max_q,
                         n_head_groups, stream);
  constexpr int smem = kStages * stage_bytes<DK, DV>();
  static_assert(smem <= 227 * 1024, "fits an SM");
  launch_kernel(flash_mma_kernel<DK, DV, kMla>, smem, a, max_q, n_head_groups, stream);
}

// The fields both instances fill alike: the batch, the queries, the output and the scale.
Args common_args(const VarlenBatch& b, const uint16_t* q, int64_t ld_q, int q_head_stride, int group, float* out,
                 int64_t ld_out, float scale) {
  Args a;
  a.n_seqs = b.n_seqs;
  a.cu_q = b.cu_q;
  a.kv_len = b.kv_len;
  a.q = q;
  a.ld_q = ld_q;
  a.q_head_stride = q_head_stride;
  a.group = group;
  a.out = out;
  a.ld_out = ld_out;
  a.scale_log2 = scale * kLog2e;
  return a;
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

CUtensorMap make_tensor_map_2d(const void* base, uint64_t cols, uint64_t rows, uint64_t row_bytes) {
  return hopper::tensor_map_bf16_2d(base, cols, rows, row_bytes, kPipeBC, "flash prefill");
}

}  // namespace

const char* kernel_name() {
  const Variant v = pick_variant();
  return v == Variant::PIPE           ? "pipe"
         : v == Variant::PIPE_CPASYNC ? "pipe-cpasync"
         : v == Variant::PINGPONG     ? "pingpong"
                                      : "mma";
}

void mla_prefill_bf16(const MlaPrefillParams& p, cudaStream_t s) {
  MLABENCH_CHECK(mla_prefill_bf16_supported(p.nope, p.rope, p.v),
                 "mla_prefill_attention: BF16 operands with head sizes nope {} rope {} v {}, which the flash kernel "
                 "has no instance for. HINT: pass float32 operands (q, kv, k_pe) for these sizes",
                 p.nope, p.rope, p.v);
  MLABENCH_CHECK(p.kv_bf16 && p.k_pe_bf16 && aligned16(p.kv_bf16) && aligned16(p.k_pe_bf16) && p.ld_kv % 8 == 0 &&
                     p.ld_kpe % 8 == 0 && p.ld_q % 2 == 0,
                 "mla_prefill_attention: BF16 keys must be 16-byte aligned rows (ld_kv {}, ld_kpe {}) and ld_q {} "
                 "even. HINT: lay the decompressed keys out as the engine does ([keys, heads * (nope + v)])",
                 p.ld_kv, p.ld_kpe, p.ld_q);
  Args a = common_args(p.batch, p.q_bf16, p.ld_q, p.nope + p.rope, 1, p.out, p.ld_out, p.scale);
  a.cu_kv = p.cu_kv;
  a.kv = p.kv_bf16;
  a.ld_kv = p.ld_kv;
  a.kv_head_stride = p.nope + p.v;
  a.k_pe = p.k_pe_bf16;
  a.ld_kpe = p.ld_kpe;
  a.nope = p.nope;
  // The TMA kernel's coordinates are int32 rows; keys past n_keys read as zeros.
  const bool with_tma = p.n_keys > 0 && p.n_keys < (int64_t{1} << 31) && q_aligned16(a) &&
                        (pick_variant() == Variant::PIPE || pick_variant() == Variant::PINGPONG);
  if (with_tma) {
    a.map_kv = make_tensor_map_2d(a.kv, static_cast<uint64_t>(p.n_heads) * a.kv_head_stride,
                                  static_cast<uint64_t>(p.n_keys), static_cast<uint64_t>(a.ld_kv) * 2);
    a.map_kpe = make_tensor_map_2d(a.k_pe, static_cast<uint64_t>(p.rope), static_cast<uint64_t>(p.n_keys),
                                   static_cast<uint64_t>(a.ld_kpe) * 2);
  }
  launch<192, 128, true>(a, with_tma, p.batch.max_q, p.n_heads, s);
}

void gqa_prefill_bf16(const GqaAttentionParams& p, cudaStream_t s) {
  MLABENCH_CHECK(gqa_prefill_bf16_supported(p.head_dim) && p.ld_q % 2 == 0,
                 "gqa_attention: BF16 queries with head_dim {} (ld_q {}): the flash kernel has instances for 64 and "
                 "128 and needs an even ld_q. HINT: pass q_bf16 = nullptr for these sizes",
                 p.head_dim, p.ld_q);
  Args a = common_args(p.batch, p.q_bf16, p.ld_q, p.head_dim, p.n_heads / p.n_kv_heads, p.out, p.ld_out, p.scale);
  a.k_cache = static_cast<const uint16_t*>(p.k_cache);
  a.v_cache = static_cast<const uint16_t*>(p.v_cache);
  a.kv_width = int64_t{p.n_kv_heads} * p.head_dim;
  a.paged = p.paged;
  // TMA where the pools' rows are known and a block holds whole 64-key halves of a tile (the engine's auto block
  // size on CUDA); else cp.async, a 16-byte copy per thread and chunk.
  const bool with_tma = p.n_slots > 0 && p.n_slots < (int64_t{1} << 31) && p.paged.block_size % 64 == 0 &&
                        aligned16(a.k_cache) && aligned16(a.v_cache) && a.kv_width % 8 == 0 && q_aligned16(a) &&
                        (pick_variant() == Variant::PIPE || pick_variant() == Variant::PINGPONG);
  if (with_tma) {
    const auto cols = static_cast<uint64_t>(a.kv_width), rows = static_cast<uint64_t>(p.n_slots);
    a.map_kv = hopper::tensor_map_bf16_2d(a.k_cache, cols, rows, cols * 2, 64, "flash prefill (GQA K pool)");
    a.map_kpe = hopper::tensor_map_bf16_2d(a.v_cache, cols, rows, cols * 2, 64, "flash prefill (GQA V pool)");
  }
  if (p.head_dim == 128)
    launch<128, 128, false>(a, with_tma, p.batch.max_q, p.n_kv_heads, s);
  else
    launch<64, 64, false>(a, with_tma, p.batch.max_q, p.n_kv_heads, s);
}

}  // namespace mlabench::kernels::cuda::flash
