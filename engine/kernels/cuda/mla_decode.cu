// MLA decode attention, absorbed (MQA over the paged BF16 latent cache), and the merge of split-KV partials that
// the decode kernels share. Twin: twin::mla_decode_attention (engine/kernels/twin/attention.cpp).
// mla_decode_attention hands BF16 operands on an H100/H200 to the wgmma + TMA kernel (mla_decode_hopper.cu, 80% of
// the copy bandwidth at 64 x 8K; it also reads the FP8 cache's slots); the mma.sync kernel below runs the float32
// hi/lo operands, other GPUs, and MLABENCH_MLA_DECODE=mma.
//
// Decode is memory-bound at V2-Lite's 16 heads (~30 FLOP per cache byte with BF16 operands, ~61 with the hi/lo
// split below), so the kernel is built around keeping HBM busy:
//   - a CTA takes one sequence, 16 heads (the MMA row tile) and one split of the keys; every 32-key tile of
//     576-wide slots (37 KB) is copied to shared memory once and serves all 16 heads;
//   - a 5-stage cp.async ring: 4 tiles (150 KB) are in flight while one is consumed; one CTA per SM (198 KB of
//     shared memory), and the split plan (decode_kv_splits) sizes the grid in whole waves of 132 CTAs; the
//     block-table lookup of a tile is issued a tile ahead of its copies;
//   - scores: 8 warps = 2 key halves x 4 dimension quarters; each warp keeps its quarter of q (144 dims, BF16
//     hi/lo: 72 registers) for the whole kernel and reads keys with ldmatrix; the 4 quarter partials are summed
//     by the softmax threads (one float2 per quarter);
//   - values: each warp owns 64 of the 512 output columns, P (hi/lo) and V come through ldmatrix / ldmatrix.trans;
//   - three barriers per tile (tile landed, partial scores written, P written), none around the copies. The
//     kernel is latency-bound on these phases at 8 warps (68% of the copy bandwidth at 64 x 8K); pipelining the
//     phases and bulk copies were tried and measured no better (docs/perf-notes.md, rounds 14-17).
// Operands (MlaDecodeParams::bf16_operands): the engine's BF16 precision rounds q and P to BF16, one MMA per
// product (FlashMLA's and transformers' BF16 numerics; ~272 MMAs per 37 KB tile). Without it the float32 q and P
// are split into BF16 hi + lo (decode_common.cuh), two MMAs each: float32-like accuracy at twice the MMAs, which
// holds the kernel near 61% of the copy bandwidth against 68% (docs/perf-notes.md, issue 15 round 14).
// The tensor-core kernel has one instance, DeepSeek-V2's kv_lora 512 + rope 64; other widths and the float32
// precision take attention_generic.cu.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/check.h"
#include "engine/kernels/cuda/attention_generic.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/decode_common.cuh"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/twin/checks.h"

namespace mlabench::kernels::cuda {
namespace decode {
namespace {

// ---- merge of split partials --------------------------------------------------------------------------------

constexpr int kCombineThreads = 256;

// grid (dv / 4 / block x, n_heads, n_seqs), block (x, y) with x * y = 256: lane x owns 4 columns (one float4),
// lane y walks splits y, y + ny, ... A 1 x 128K merge reads 4 MB of partials (L2-resident) for only 16 (head,
// sequence) rows, so it is latency-bound: y takes up to 32 lanes (132 splits: 8 float4 columns per CTA, 256
// CTAs, every split's load in flight at once); 2 splits take y = 2 and 128 float4 columns. The weights exp2(m_i - max) / total come from one
// block-wide pass (each thread at most one split). Splits are weighted in ascending order, then lanes y summed
// in order: deterministic.
__global__ void __launch_bounds__(kCombineThreads) combine_kernel(const CombineArgs a) {
  __shared__ float weight[kAttnMaxSplits];
  __shared__ float red[kCombineThreads / 32];
  __shared__ float4 part[kCombineThreads];
  const int head = blockIdx.y, seq = blockIdx.z, x = threadIdx.x, y = threadIdx.y, nx = blockDim.x,
            ny = blockDim.y, tid = y * nx + x, warp = tid >> 5, lane = tid & 31;
  griddep_wait();  // the split kernel's partials (a no-op unless launched as a dependent)
  int64_t row = seq;
  if (a.cu_q) {
    row = a.cu_q[seq];
    if (a.cu_q[seq + 1] == row) return;  // no new row in this sequence
  }
  const int kv_len = a.kv_len[seq];
  const int split_len = decode_split_len(kv_len, a.n_splits, a.tile, a.fixed);
  const int n_valid = min(a.n_splits, (kv_len + split_len - 1) / split_len);
  const int64_t n_partials = static_cast<int64_t>(a.n_splits) * a.n_seqs * a.n_heads;
  const float* ml = a.scratch + n_partials * a.dv;
  // Weights: thread i holds split i's (m, l); block max, then block sum of exp2(m - max) * l.
  float m = neg_inf(), l = 0.0f;
  if (tid < n_valid) {
    const float2 v = __ldcg(reinterpret_cast<const float2*>(ml) + partial_index(tid, seq, head, a.n_seqs, a.n_heads));
    m = v.x;
    l = v.y;
  }
  float r = m;
  for (int off = 16; off > 0; off >>= 1) r = fmaxf(r, __shfl_xor_sync(0xffffffffu, r, off));
  if (lane == 0) red[warp] = r;
  __syncthreads();
  float m_max = red[0];
  for (int w = 1; w < kCombineThreads / 32; ++w) m_max = fmaxf(m_max, red[w]);
  const float w_i = m == neg_inf() ? 0.0f : exp2f(m - m_max);
  r = w_i * l;
  for (int off = 16; off > 0; off >>= 1) r += __shfl_xor_sync(0xffffffffu, r, off);
  __syncthreads();  // every thread has read red[] as maxima
  if (lane == 0) red[warp] = r;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < kCombineThreads / 32; ++w) total += red[w];
  if (tid < n_valid) weight[tid] = total > 0.0f ? w_i / total : 0.0f;
  __syncthreads();

  const int c4 = blockIdx.x * nx + x;  // float4 column
  const bool active = c4 * 4 < a.dv;
  float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  if (active) {
#pragma unroll 8
    for (int i = y; i < n_valid; i += ny) {
      const float4 v = __ldcg(
          reinterpret_cast<const float4*>(a.scratch + partial_index(i, seq, head, a.n_seqs, a.n_heads) * a.dv) + c4);
      const float w = weight[i];
      acc.x += w * v.x;
      acc.y += w * v.y;
      acc.z += w * v.z;
      acc.w += w * v.w;
    }
  }
  part[tid] = acc;
  __syncthreads();
  if (y != 0 || !active) return;
  for (int j = 1; j < ny; ++j) {
    const float4 v = part[j * nx + x];
    acc.x += v.x;
    acc.y += v.y;
    acc.z += v.z;
    acc.w += v.w;
  }
  float* out = a.out + row * a.ld_out + static_cast<int64_t>(head) * a.dv + c4 * 4;
  out[0] = acc.x;  // ld_out need not keep rows 16-byte aligned
  out[1] = acc.y;
  out[2] = acc.z;
  out[3] = acc.w;
}

}  // namespace

void launch_decode_combine(const CombineArgs& c, cudaStream_t stream) {
  MLABENCH_CHECK(c.n_splits > 1 && c.n_splits <= kAttnMaxSplits && c.dv % 4 == 0 && c.tile > 0,
                 "decode combine: {} splits, dv {}. HINT: the split plan of kernel_params.h keeps splits <= {}",
                 c.n_splits, c.dv, kAttnMaxSplits);
  static_assert(kAttnMaxSplits <= kCombineThreads, "one split per thread in the weight pass");
  int ny = 2;  // split lanes: enough for every split at once, up to 32 (host-known: graph-safe)
  while (ny < c.n_splits && ny < 32) ny *= 2;
  const int nx = kCombineThreads / ny;  // columns past dv idle in the second pass
  const dim3 grid(static_cast<unsigned>((c.dv / 4 + nx - 1) / nx), static_cast<unsigned>(c.n_heads),
                  static_cast<unsigned>(c.n_seqs));
  launch_pdl(combine_kernel, grid, dim3(static_cast<unsigned>(nx), static_cast<unsigned>(ny)), 0, stream, c);
}

void check_fixed_splits_scratch(bool fixed, const float* scratch, const char* who) {
  MLABENCH_CHECK(!fixed || scratch != nullptr,
                 "{}: fixed_splits without scratch. HINT: the batch-invariant plan always merges through the split "
                 "partials; size the scratch with the *_scratch_floats() function of kernel_params.h",
                 who);
}

void launch_mla_decode_combine(const MlaDecodeParams& p, int n_splits, int tile, cudaStream_t stream) {
  if (gpu::timing_skip("combine")) return;  // MLABENCH_TIMING_SKIP: a timing experiment, the output is wrong
  CombineArgs c;
  c.scratch = p.scratch;
  c.n_splits = n_splits;
  c.tile = tile;
  c.fixed = p.fixed_splits;
  c.n_seqs = p.n_seqs;
  c.n_heads = p.n_heads;
  c.dv = p.kv_lora;
  c.kv_len = p.kv_len;
  c.out = p.out;
  c.ld_out = p.ld_out;
  launch_decode_combine(c, stream);
}

}  // namespace decode

namespace {

using namespace decode;

constexpr int kLora = 512, kRope = 64, kWidth = kLora + kRope;
constexpr int kKeys = 32;   // keys per shared-memory tile
constexpr int kStages = 5;  // ring depth: 4 tiles (150 KB) in flight while one is consumed
constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kRowStride = kWidth + 8;  // BF16 per tile row: 1168 B shifts rows by 4 banks (ldmatrix conflict-free)
constexpr int kDimGroups = 4;           // score warps: 2 key halves x 4 dimension quarters
constexpr int kQSteps = kWidth / 16 / kDimGroups;  // 9 k-steps of q per warp
constexpr int kChunks = kWidth / 8;                // 16-byte chunks per slot
constexpr int kSStride = kKeys + 8;                // floats per partial-score row: conflict-free float2 stores
constexpr int kPStride = kKeys + 8;                // BF16 per P row (80 B: ldmatrix conflict-free)
constexpr int kVTiles = kLora / kWarps / 8;        // 8-column output tiles per warp
static_assert(kMlaDecodeHeads == 16 && kWidth % (16 * kDimGroups) == 0 && kKeys == 32, "tile shapes (lane = key)");
static_assert(kKeys * kChunks % kThreads == 0, "whole 16-byte chunks per thread");

constexpr size_t kTileBytes = size_t{kKeys} * kRowStride * 2;
constexpr size_t kSmemBytes = kStages * kTileBytes                      // the ring
                              + size_t{kDimGroups} * 16 * kSStride * 4  // partial scores
                              + size_t{2} * 16 * kPStride * 2           // P hi, lo
                              + 3 * 16 * 4;                             // alpha, final max, final sum
static_assert(kSmemBytes <= 227 * 1024, "fits an SM");

// The 16 heads' queries [q_lat ; q_pe] of warp quarter dq as hi/lo A fragments (heads past n_heads: zero); with
// BF16 operands only qh is used (the BF16 rounding of q).
__device__ __forceinline__ void load_queries(const MlaDecodeParams& p, int seq, int h0, int dq, int lane,
                                             uint32_t (&qh)[kQSteps][4], uint32_t (&ql)[kQSteps][4]) {
  const int g = lane >> 2, tig = lane & 3;
#pragma unroll
  for (int i = 0; i < kQSteps; ++i)
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int h = h0 + g + (r & 1) * 8, col = (dq * kQSteps + i) * 16 + (r >> 1) * 8 + 2 * tig;
      float x0 = 0.0f, x1 = 0.0f;
      if (h < p.n_heads) {
        const float* src = col < kLora ? p.q_lat + seq * p.ld_q_lat + static_cast<int64_t>(h) * kLora + col
                                       : p.q_pe + seq * p.ld_q_pe + h * p.q_pe_head_stride + (col - kLora);
        x0 = src[0];
        x1 = src[1];
      }
      split_pack(x0, x1, qh[i][r], ql[i][r]);
    }
}

// Shared-memory layout of the kernel: the ring, partial scores, P (hi, lo) and alpha per tile parity, final m, l.
struct DecodeSmem {
  uint16_t* tiles;
  float* s_part;  // [kDimGroups][16][kSStride]
  uint16_t* pp;   // [hi, lo][16][kPStride]
  float* f;       // alpha [16], final max [16], final sum [16]
  __device__ explicit DecodeSmem(unsigned char* smem)
      : tiles(reinterpret_cast<uint16_t*>(smem)),
        s_part(reinterpret_cast<float*>(smem + kStages * kTileBytes)),
        pp(reinterpret_cast<uint16_t*>(s_part + kDimGroups * 16 * kSStride)),
        f(reinterpret_cast<float*>(pp + 2 * 16 * kPStride)) {}
  __device__ const uint16_t* tile(int t) const { return tiles + static_cast<size_t>(t % kStages) * kKeys * kRowStride; }
  __device__ uint16_t* p(int lo) const { return pp + lo * 16 * kPStride; }
  __device__ float* alpha() const { return f; }
  __device__ float* m() const { return f + 16; }
  __device__ float* l() const { return f + 32; }
};

// Partial scores of this warp's 144 dims for 16 heads x its 16 keys of `tile`, into s_part. Four independent MMA
// chains: hi and lo (kHiLo) or even and odd k-steps (BF16 operands).
template <bool kHiLo>
__device__ __forceinline__ void score_partials(const uint16_t* tile, float* s_part, const uint32_t (&qh)[kQSteps][4],
                                               const uint32_t (&ql)[kQSteps][4], int dq, int kh, int lane) {
  const int g = lane >> 2, tig = lane & 3;
  const int k_row = kh * 16 + (lane & 7) + (lane >> 4) * 8, k_col = ((lane >> 3) & 1) * 8;  // K: 2 key tiles
  float sh[2][4] = {}, sl[2][4] = {};
  const uint16_t* krow = tile + k_row * kRowStride + dq * kQSteps * 16 + k_col;
#pragma unroll
  for (int i = 0; i < kQSteps; ++i) {
    uint32_t b[4];
    ldmatrix_x4(b, krow + i * 16);
    if constexpr (kHiLo) {
      mma_bf16(sh[0], qh[i], b[0], b[1]);
      mma_bf16(sh[1], qh[i], b[2], b[3]);
      mma_bf16(sl[0], ql[i], b[0], b[1]);
      mma_bf16(sl[1], ql[i], b[2], b[3]);
    } else {
      float(&c)[2][4] = i % 2 == 0 ? sh : sl;
      mma_bf16(c[0], qh[i], b[0], b[1]);
      mma_bf16(c[1], qh[i], b[2], b[3]);
    }
  }
  float* sp = s_part + dq * 16 * kSStride;
#pragma unroll
  for (int nt = 0; nt < 2; ++nt) {
    const int col = kh * 16 + nt * 8 + 2 * tig;
    *reinterpret_cast<float2*>(sp + g * kSStride + col) = make_float2(sh[nt][0] + sl[nt][0], sh[nt][1] + sl[nt][1]);
    *reinterpret_cast<float2*>(sp + (g + 8) * kSStride + col) =
        make_float2(sh[nt][2] + sl[nt][2], sh[nt][3] + sl[nt][3]);
  }
}

// acc = alpha * acc + P V over this warp's 64 value columns (the latent's first kv_lora values) of `tile`.
template <bool kHiLo>
__device__ __forceinline__ void accumulate_pv(float (&acc)[kVTiles][4], const uint16_t* tile, const uint16_t* p_hi,
                                              const uint16_t* p_lo, const float* s_alpha, int warp, int lane) {
  const int g = lane >> 2;
  const int a_row = (lane & 7) + ((lane >> 3) & 1) * 8, a_col = (lane >> 4) * 8;  // P (A) and V.trans
  const float al0 = s_alpha[g], al1 = s_alpha[g + 8];
#pragma unroll
  for (int i = 0; i < kVTiles; ++i) {
    acc[i][0] *= al0;
    acc[i][1] *= al0;
    acc[i][2] *= al1;
    acc[i][3] *= al1;
  }
#pragma unroll
  for (int ks = 0; ks < kKeys / 16; ++ks) {
    uint32_t ah[4], al[4];
    ldmatrix_x4(ah, p_hi + a_row * kPStride + ks * 16 + a_col);
    if constexpr (kHiLo) ldmatrix_x4(al, p_lo + a_row * kPStride + ks * 16 + a_col);
    const uint16_t* vrow = tile + (ks * 16 + a_row) * kRowStride + warp * (kLora / kWarps) + a_col;
#pragma unroll
    for (int pair = 0; pair < kVTiles / 2; ++pair) {
      uint32_t b[4];
      ldmatrix_x4_trans(b, vrow + pair * 16);
      mma_bf16(acc[2 * pair], ah, b[0], b[1]);
      mma_bf16(acc[2 * pair + 1], ah, b[2], b[3]);
      if constexpr (kHiLo) {
        mma_bf16(acc[2 * pair], al, b[0], b[1]);
        mma_bf16(acc[2 * pair + 1], al, b[2], b[3]);
      }
    }
  }
}

// grid (head groups of 16, n_seqs, n_splits); block 256. kHiLo: float32 q and P as hi + lo BF16 pairs.
// Per tile: B1 (tile t landed, tile t - 1 consumed by all, so its slot takes tile t + kStages - 1), scores,
// B2 (partial scores written), softmax, B3 (P written), P.V.
template <bool kHiLo>
__global__ void __launch_bounds__(kThreads, 1) mla_decode_kernel(const MlaDecodeParams p) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const DecodeSmem sm(smem_raw);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tig = lane & 3;
  const int dq = warp & 3, kh = warp >> 2;  // score role: dimension quarter, key half
  griddep_wait();  // q, kv_len and the step's new cache rows come from earlier kernels (pdl.cuh)
  const int h0 = blockIdx.x * 16, seq = blockIdx.y, split = blockIdx.z, n_splits = gridDim.z;
  const int kv_len = p.kv_len[seq];
  const int split_len = decode_split_len(kv_len, n_splits, kKeys, p.fixed_splits);
  const int k_begin = split * split_len;
  if (split > 0 && k_begin >= kv_len) return;  // the merge reads only splits that hold keys
  const int k_end = min(kv_len, k_begin + split_len);
  const int n_tiles = k_end > k_begin ? (k_end - k_begin + kKeys - 1) / kKeys : 0;
  const uint16_t* cache = static_cast<const uint16_t*>(p.cache);  // BF16: the launcher sends F32 elsewhere

  // Lane j of the copying warp(s) looks up key j's slot; the lookup is a dependent global load, so the loop
  // issues it a tile ahead (slot_of) and its latency hides behind a tile's math.
  auto slot_of = [&](int t) -> long long {
    const int pos = k_begin + t * kKeys + lane;
    return t < n_tiles && pos < k_end ? paged_slot(p.paged, seq, pos) * kWidth : -1;
  };
  // Every thread copies 16-byte chunks (cp.async, zero-filled past the end), one commit group a tile. (One bulk
  // copy per key slot from a single warp measured slower, 52% of the copy bandwidth against 68%: the other warps
  // idled at the barriers while it fed 32 small copies a tile; docs/perf-notes.md, round 16.)
  auto load_tile = [&](int t, long long my_off) {
    uint16_t* dst = sm.tiles + static_cast<size_t>(t % kStages) * kKeys * kRowStride;
#pragma unroll
    for (int i = 0; i < kKeys * kChunks / kThreads; ++i) {
      const int c = tid + i * kThreads, j = c / kChunks, part = c - j * kChunks;
      const long long off = __shfl_sync(0xffffffffu, my_off, j);
      cp_async16(dst + j * kRowStride + part * 8, off >= 0 ? cache + off + part * 8 : cache, off >= 0);
    }
  };
  // wait_group<kStages - 2> at iteration t means "tile t landed".
#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) {
    if (t < n_tiles) load_tile(t, slot_of(t));
    cp_async_commit();
  }
  long long next_slot = slot_of(kStages - 1);  // tile t + kStages - 1's, read in iteration t

  uint32_t qh[kQSteps][4], ql[kQSteps][4];
  load_queries(p, seq, h0, dq, lane, qh, ql);

  const float scale_log2 = p.scale * kLog2e;
  const int sr = tid >> 4, sj = (tid & 15) * 2;  // softmax role: head sr, keys sj, sj + 1
  float m_run = neg_inf(), l_run = 0.0f;
  float acc[kVTiles][4] = {};

  for (int t = 0; t < n_tiles; ++t) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // B1
    if (t + kStages - 1 < n_tiles) load_tile(t + kStages - 1, next_slot);
    cp_async_commit();
    next_slot = slot_of(t + kStages);
    score_partials<kHiLo>(sm.tile(t), sm.s_part, qh, ql, dq, kh, lane);
    __syncthreads();  // B2

    // Online softmax: 16 threads per head, two keys each.
    const int base = k_begin + t * kKeys;
    float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
    for (int d = 0; d < kDimGroups; ++d) {
      const float2 v = *reinterpret_cast<const float2*>(sm.s_part + (d * 16 + sr) * kSStride + sj);
      s0 += v.x;
      s1 += v.y;
    }
    s0 = base + sj < k_end ? s0 * scale_log2 : neg_inf();
    s1 = base + sj + 1 < k_end ? s1 * scale_log2 : neg_inf();
    float mt = fmaxf(s0, s1);
#pragma unroll
    for (int off = 8; off > 0; off >>= 1) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, off));
    const float m_new = fmaxf(m_run, mt);  // finite: every tile holds at least one key
    const float alpha = exp2f(m_run - m_new);
    const float p0 = exp2f(s0 - m_new), p1 = exp2f(s1 - m_new);
    float ps = p0 + p1;
#pragma unroll
    for (int off = 8; off > 0; off >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, off);
    l_run = l_run * alpha + ps;
    m_run = m_new;
    uint32_t ph, pl;
    split_pack(p0, p1, ph, pl);
    *reinterpret_cast<uint32_t*>(sm.p(0) + sr * kPStride + sj) = ph;
    if constexpr (kHiLo) *reinterpret_cast<uint32_t*>(sm.p(1) + sr * kPStride + sj) = pl;
    if ((tid & 15) == 0) sm.alpha()[sr] = alpha;
    __syncthreads();  // B3
    accumulate_pv<kHiLo>(acc, sm.tile(t), sm.p(0), sm.p(1), sm.alpha(), warp, lane);
  }
  cp_async_wait<0>();  // no copy may land after the CTA exits
  griddep_launch_dependents();  // keys done: the combine's CTAs may be placed as this grid's CTAs end

  if ((tid & 15) == 0) {
    sm.m()[sr] = m_run;
    sm.l()[sr] = l_run;
  }
  __syncthreads();
  const int64_t n_partials = static_cast<int64_t>(n_splits) * p.n_seqs * p.n_heads;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = g + half * 8, h = h0 + row;
    if (h >= p.n_heads) continue;
    float* dst;
    float mul = 1.0f;
    if (n_splits == 1) {
      dst = p.out + seq * p.ld_out + static_cast<int64_t>(h) * kLora;
      mul = sm.l()[row] > 0.0f ? 1.0f / sm.l()[row] : 0.0f;
    } else {
      const int64_t idx = partial_index(split, seq, h, p.n_seqs, p.n_heads);
      dst = p.scratch + idx * kLora;
      if (warp == 0 && tig == 0) {
        p.scratch[n_partials * kLora + idx * 2] = sm.m()[row];
        p.scratch[n_partials * kLora + idx * 2 + 1] = sm.l()[row];
      }
    }
#pragma unroll
    for (int i = 0; i < kVTiles; ++i) {
      const int col = (warp * kVTiles + i) * 8 + 2 * tig;
      dst[col] = acc[i][2 * half] * mul;
      dst[col + 1] = acc[i][2 * half + 1] * mul;
    }
  }
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

// AUTO: the Hopper kernel where it runs, unless MLABENCH_MLA_DECODE=mma (read once); WGMMA where it cannot run is
// refused by mla_decode_hopper itself.
bool use_hopper(const MlaDecodeParams& p) {
  if (p.kernel == MlaDecodeKernel::MMA) return false;
  if (p.kernel == MlaDecodeKernel::WGMMA) return true;
  static const bool forced_mma = gpu::env_choice("MLABENCH_MLA_DECODE", {"mma", "wgmma"}) == 0;
  return !forced_mma && mla_decode_hopper_supported(p);
}

}  // namespace

void mla_decode_attention(const MlaDecodeParams& p, cudaStream_t s) {
  if (p.n_seqs == 0) return;
  MLABENCH_CHECK(p.n_seqs > 0 && p.n_heads > 0 && p.kv_len && p.cache && p.q_lat && p.q_pe && p.out,
                 "mla_decode_attention: n_seqs {} n_heads {} or a null pointer. HINT: fill every MlaDecodeParams "
                 "field",
                 p.n_seqs, p.n_heads);
  checks::check_cache_type(p.cache_type, "mla_decode_attention");
  // FP8 slots with BF16 operands (the engine's BF16 precision) run on the Hopper kernel where it runs; float32
  // operands, and GPUs without it, take the generic float32 kernel.
  const bool fp8_bf16 = p.cache_type == DType::F8_E4M3 && p.bf16_operands;
  if (p.cache_type != DType::BF16 && !fp8_bf16) return generic::mla_decode_attention(p, s);  // float32; FP8 slots
  if (p.kv_lora != kLora || p.rope != kRope) return generic::mla_decode_attention(p, s);     // no tensor-core instance
  MLABENCH_CHECK(aligned16(p.cache),
                 "mla_decode_attention: cache pointer is not 16-byte aligned. HINT: layer pools must start on a "
                 "16-byte boundary (cp.async copies 16 bytes)");
  MLABENCH_CHECK(p.paged.block_size > 0 && p.paged.block_tables != nullptr && p.paged.max_blocks > 0,
                 "mla_decode_attention: paged cache has block_size {}, max_blocks {}. HINT: fill PagedCache from "
                 "the cache manager of this batch",
                 p.paged.block_size, p.paged.max_blocks);

  if (use_hopper(p)) return mla_decode_hopper(p, s);
  if (fp8_bf16) return generic::mla_decode_attention(p, s);  // the mma.sync kernel reads no e4m3 slots

  int n_splits = mla_decode_splits(p);
  check_fixed_splits_scratch(p.fixed_splits, p.scratch, "mla_decode_attention");
  if (n_splits > 1 && p.scratch == nullptr) n_splits = 1;
  if (n_splits > 1)
    MLABENCH_CHECK(p.scratch_floats >= mla_decode_scratch_floats(p) && aligned16(p.scratch),
                   "mla_decode_attention: scratch holds {} floats, the split-KV plan needs {} (16-byte aligned). "
                   "HINT: size it with mla_decode_scratch_floats() (kernel_params.h) or pass scratch = nullptr",
                   p.scratch_floats, mla_decode_scratch_floats(p));

  auto* kernel = p.bf16_operands ? mla_decode_kernel<false> : mla_decode_kernel<true>;
  MLABENCH_CUDA(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kSmemBytes)));
  const int groups = (p.n_heads + kMlaDecodeHeads - 1) / kMlaDecodeHeads;
  const dim3 grid(static_cast<unsigned>(groups), static_cast<unsigned>(p.n_seqs), static_cast<unsigned>(n_splits));
  launch_pdl(kernel, grid, dim3(kThreads), kSmemBytes, s, p);
  MLABENCH_CUDA(cudaGetLastError());
  if (n_splits > 1) launch_mla_decode_combine(p, n_splits, kKeys, s);
}

}  // namespace mlabench::kernels::cuda
