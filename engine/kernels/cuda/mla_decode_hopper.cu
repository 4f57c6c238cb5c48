// MLA decode attention, absorbed, on Hopper's wgmma and TMA (sm_90a): the engine's BF16 path at V2 widths (kv_lora
// 512 + rope 64). Twin: twin::mla_decode_attention (engine/kernels/twin/attention.cpp); the mma.sync kernel of
// mla_decode.cu runs everywhere else (and under MLABENCH_MLA_DECODE=mma).
//
// Why this shape (docs/perf-notes.md, issue 15 rounds 14-18): the mma.sync kernel spent a 32-key tile in three
// barrier-separated phases of 8 warps and held at 68% of the copy bandwidth, latency-bound. Here the products are
// transposed so that the 16 heads of a CTA are the MMA's N and the keys (or value columns) its M = 64:
//   S^T [64 keys x 16 heads]   = K [64 x 576] . Q^T [576 x 16]     36 wgmma m64n16k16, K-major A (the tile as TMA
//                                                                   left it), Q^T K-major B (Q in shared memory)
//   O^T [512 values x 16 heads] += V^T [512 x 64] . P^T [64 x 16]   32 wgmma m64n16k16, MN-major A (the same tile,
//                                                                   transposed by the instruction), P^T K-major B
// so a warpgroup does all the math of a 64-key tile in two asynchronous MMA groups, with two 128-thread barriers
// (the tile's column maxima across its 4 warps, and P written), and O^T stays in registers (64 a thread).
//   - Two consumer warpgroups take alternate tiles of the split, each with its own running max, sums and O^T, merged
//     through shared memory at the end: one warpgroup alone leaves the tensor pipe idle through its softmax and
//     barriers (64% of the copy bandwidth at 64 x 8K against 81% with two; round 18).
//   - A producer warp streams the cache by TMA: a tile is 9 chunks of 64 keys x 64 columns (8 KB, the wgmma sw128
//     block), each chunk one box of 64 slots where the pool's blocks hold whole tiles (block_size % 64 == 0: the
//     engine's default for MLA) or up to 4 boxes of 16 slots, into a ring of 25 chunks (200 KB), each chunk with a
//     full and an empty mbarrier. The rope chunk is released after the scores, the value chunks after P.V. The
//     block-table lookups of the next tile are issued before this tile's copies.
//   - Split-KV as the mma.sync kernel: decode_kv_splits' plan in whole 64-key tiles, partials merged by
//     launch_decode_combine (mla_decode.cu). Keys past the sequence are masked in the scores (a select, so NaN in
//     unused slots never enters) and their value rows zeroed in shared memory before P.V (0 * NaN is NaN).
// Numerics: q and P rounded to BF16, float32 accumulation (MlaDecodeParams::bf16_operands; FlashMLA's and
// transformers' BF16 numerics).
//
// F8_E4M3 pools (--kv-cache-dtype fp8: Fp8SlotLayout's 656-byte slots, 512 e4m3 codes, 4 float32 group scales,
// 64 BF16 RoPE values): the same tiles over 41 KB a tile from memory instead of 72 KB. A tile still takes 9 chunks
// of the ring, in this order (chunk_of): the 4 code groups (64 keys x 128 bytes, sw128), the RoPE values as they
// are, the scales (16 bytes a key), then 3 chunks that receive nothing (the producer arrives on them once they are
// free): the copies a tile needs come first, so the 7 chunks free while both warpgroups hold a tile carry a whole
// tile's 41 KB in flight. wgmma takes no e4m3 operand beside a 16-bit one, and its MN-major A (V^T) takes no 8-bit
// type at all, so the consuming warpgroup widens the codes once, in place, for both products: thread (key r, groups
// g and g + 2) writes values 0-63 of a group into the group's chunk and 64-127 into chunk 5 + g.
//   The F16 form (kFp8F16, MlaFp8Operands::F16; kMlaFp8OperandsDefault says which form is the default): the codes
// widen to F16 exactly (one conversion a pair) and the scales stay out of the values, so the widening is a third of
// the BF16-value form's instructions (docs/perf-notes.md, issue 20 rounds 8 and 10; that form multiplied each value
// by its scale and rounded it to BF16, 6 instructions a pair, and left the kernel issue-bound at 56-74% of the copy
// rate). With s_g(key) the key's scale of group g (128 values):
//    S^T = K_rope q_pe^T + sum_g s_g(key) (codes_g . Q_g^T) 2^-e(head)      4 chains of 8 F16 wgmma + 4 BF16 ones
//    O^T_g += codes_g^T . P'_g^T, P'_g = P s_g(key) / sigma_g in F16      per group: its own B operand
// Q's latent part is rounded to F16 after a per-head power of two (mla_f16_query_shift: its largest value in [2^14,
// 2^15), so nothing overflows and 11 bits are kept, where BF16 keeps 8). sigma_g is the warpgroup's running maximum
// of the group's scales, rounded up to a power of two, so P' <= 1 (no F16 overflow, and its 11 bits where the weight
// matters); when it grows, O's group blocks are rescaled by the (exact) ratio with alpha, and O is multiplied by
// sigma at the item's end. The 4 P'_g (2 KB each) are written by stmatrix.trans into the tile's RoPE chunk, whose
// last reader is the score product; it is released with the value chunks. Numerics: the codes exact, q's latent part
// F16 and q_pe BF16 (the twin rounds both the same way), the scales in float32, P' rounded to F16.
//   The BF16-value form (kFp8InPlace, MlaFp8Operands::BF16_VALUES): each value code x scale rounded to BF16 in
// place, then the BF16 kernel's products (FlashMLA's FP8 decode numerics). The twin follows either form's roundings;
// MLABENCH_MLA_FP8_DECODE=bf16|f16 picks the form of AUTO for benchmarks. A staging-buffer form (a ring of copies
// only, each tile widened into a buffer of its warpgroup's) measured 180.9 us against the in-place form's 151.9 at
// 16 x 32K on an H100 and was removed (issue 20 round 5).
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/check.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/decode_common.cuh"
#include "engine/kernels/cuda/fp8_device.cuh"
#include "engine/kernels/cuda/hopper.h"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/cuda/tma.cuh"
#include "engine/kernels/cuda/wgmma.h"

namespace mlabench::kernels::cuda {
namespace {

using namespace decode;

constexpr int kLora = 512, kRope = 64, kWidth = kLora + kRope;
constexpr int kKeys = 64;                 // keys per tile: the MMA's M
constexpr int kHeads = kMlaDecodeHeads;   // 16: the MMA's N
constexpr int kColBlocks = kWidth / 64;   // 9 chunks a tile (8 of values, 1 of rope)
constexpr int kValueBlocks = kLora / 64;  // 8
constexpr int kGroups = kKeys / 16;       // TMA boxes of 16 slots a chunk
constexpr int kChunkBytes = kKeys * 128;  // 8 KB
constexpr int kQBytes = kColBlocks * kHeads * 128;
constexpr int kPBytes = kHeads * 128;
constexpr int kMaxWarpgroups = 2;

// The kernel's forms: the BF16 cache; FP8 slots widened to BF16 values in place in the ring (code x scale); FP8
// slots widened to F16 codes in place, the scales applied outside the values (the default; the file comment).
enum Mode { kBf16 = 0, kFp8InPlace = 1, kFp8F16 = 2 };

// Shared memory of each form (from a 1024-byte aligned base): the ring, Q, P per warpgroup, then per warpgroup the
// tile maxima [4 warps][16], the sums [4][16] and the final (m, l) [16][2]; kFp8F16's 2^-e of each head's query
// [16] and per warpgroup the tile's scale maxima [4 warps][4 groups]; the barriers last.
template <int kMode>
struct Layout {
  static constexpr bool kFp8 = kMode != kBf16;
  static constexpr int kRing = 25;                   // chunks in the ring (200 KB)
  static constexpr int kTileChunks = kColBlocks;     // ring chunks a tile takes
  static constexpr uint32_t kQOff = kRing * kChunkBytes;
  static constexpr uint32_t kPOff = kQOff + kQBytes;
  static constexpr uint32_t kRedOff = kPOff + kMaxWarpgroups * kPBytes;
  static constexpr uint32_t kSumOff = kRedOff + kMaxWarpgroups * 4 * kHeads * 4;
  static constexpr uint32_t kMlOff = kSumOff + kMaxWarpgroups * 4 * kHeads * 4;
  static constexpr uint32_t kQInvOff = kMlOff + kMaxWarpgroups * kHeads * 8;
  static constexpr uint32_t kSigOff = kQInvOff + kHeads * 4;
  static constexpr uint32_t kBarOff = kSigOff + kMaxWarpgroups * 16 * 4;
  static constexpr uint32_t kSmemBytes = kBarOff + 2 * kRing * 8 + 1024;  // + the 1024-byte alignment of the ring
  static_assert(kSmemBytes <= 227 * 1024, "fits an SM");
  static_assert(kQOff % 1024 == 0 && kPOff % 1024 == 0 && kPBytes % 1024 == 0,
                "sw128 operands start 1024-aligned");
  static_assert((kLora + 4) * kHeads * 4 <= kRing * kChunkBytes, "the merge of two warpgroups' O fits the ring");
};

struct HopperDecodeArgs {
  CUtensorMap map;  // the pool as [n_slots rows, 576 columns] BF16, boxes of 64 columns x 16 or 64 rows, sw128
                    // (FP8: [n_slots, 656] bytes, boxes of 128 bytes x 16 or 64 rows, sw128)
  CUtensorMap scale_map;  // FP8: the slots' 16 scale bytes as [n_slots, 16], boxes of 16 x 16 or 64 rows, plain
  MlaDecodeParams p;
  bool box64 = false;        // boxes of 64 rows (block_size % 64 == 0), else 16
  bool evict_first = true;   // one head group reads each latent once; several (V2's 128 heads) share it through L2
  bool q_vec4 = false;       // q_lat, q_pe and their strides allow 16-byte loads
  bool cache_early = false;  // MlaDecodeParams::cache_early, where PDL is on
  // Work items (head group, sequence, split), item w = group + groups * (sequence + n_seqs * split): CTA b takes
  // items b, b + gridDim.x, ... (one each when the grid is n_items CTAs; MlaDecodeParams::persistent_ctas).
  int groups = 0, n_splits = 0, n_items = 0;
};

// One work item's keys: split `split`'s [k_begin, k_end) of sequence seq for heads h0 .. h0 + 15, n_tiles 64-key
// tiles.
struct DecodeItem {
  int h0, seq, split, k_begin, k_end, n_tiles;
};

// Item w (HopperDecodeArgs::n_items); false for a split past its sequence's keys (the merge reads only splits
// that hold keys). The producer and the consumers call it alike, so they skip the same items.
__device__ __forceinline__ bool decode_item(const HopperDecodeArgs& a, int w, DecodeItem& it) {
  const int rest = w / a.groups;
  it.h0 = (w % a.groups) * kHeads;
  it.seq = rest % a.p.n_seqs;
  it.split = rest / a.p.n_seqs;
  const int kv_len = a.p.kv_len[it.seq];
  const int split_len = decode_split_len(kv_len, a.n_splits, kKeys, a.p.fixed_splits);
  it.k_begin = it.split * split_len;
  if (it.split > 0 && it.k_begin >= kv_len) return false;
  it.k_end = min(kv_len, it.k_begin + split_len);
  it.n_tiles = it.k_end > it.k_begin ? (it.k_end - it.k_begin + kKeys - 1) / kKeys : 0;
  return true;
}

// Byte offset of (row, 16-byte chunk) in a region of 128-byte rows with the 128-byte swizzle (what TMA writes and
// wgmma reads).
__device__ __forceinline__ uint32_t swz(int row, int chunk) {
  return static_cast<uint32_t>(row * 128 + ((chunk ^ (row & 7)) << 4));
}

// MlaDecodeParams::timeline: stamp i of this CTA's row (tl is the row, or nullptr: no stamps).
__device__ __forceinline__ void stamp(uint64_t* tl, int i) {
  if (tl != nullptr) {
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    tl[i] = t;
  }
}

// Named barriers: 1 + wg for a warpgroup's 128 threads, 3 for both warpgroups.
__device__ __forceinline__ void named_barrier(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Eight float32 values from src: two 16-byte loads where the caller knows src 16-byte aligned (vec4), else eight
// 4-byte ones.
__device__ __forceinline__ void load8(const float* src, bool vec4, float (&f)[8]) {
  if (vec4) {
    const float4 a = __ldg(reinterpret_cast<const float4*>(src)), b = __ldg(reinterpret_cast<const float4*>(src) + 1);
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
  } else {
#pragma unroll
    for (int e = 0; e < 8; ++e) f[e] = src[e];
  }
}

// Eight float32 values rounded to BF16, packed in order (16 bytes).
__device__ __forceinline__ uint4 bf16x8(const float (&f)[8]) {
  uint32_t w[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) w[e] = bf16_bits(f[2 * e]) | bf16_bits(f[2 * e + 1]) << 16;
  return make_uint4(w[0], w[1], w[2], w[3]);
}

// The 16 heads' queries [q_lat ; q_pe] rounded to BF16 into Q (9 blocks of 16 rows x 128 bytes); heads past
// n_heads are zero. Thread tid of kThreads issues all its loads (up to kPer items of 8 values) before it converts
// and stores any: the loads are then one round trip instead of kPer.
template <int kThreads>
__device__ void load_queries(const MlaDecodeParams& p, bool vec4, int seq, int h0, unsigned char* q_s, int tid) {
  constexpr int kItems = kHeads * (kWidth / 8), kPer = (kItems + kThreads - 1) / kThreads;
  float f[kPer][8];
#pragma unroll
  for (int r = 0; r < kPer; ++r) {
    const int i = tid + r * kThreads, n = i / (kWidth / 8), ch = i % (kWidth / 8), h = h0 + n, col = ch * 8;
#pragma unroll
    for (int e = 0; e < 8; ++e) f[r][e] = 0.0f;
    if (i >= kItems || h >= p.n_heads) continue;
    const float* src = col < kLora ? p.q_lat + seq * p.ld_q_lat + static_cast<int64_t>(h) * kLora + col
                                   : p.q_pe + seq * p.ld_q_pe + h * p.q_pe_head_stride + (col - kLora);
    load8(src, vec4, f[r]);
  }
#pragma unroll
  for (int r = 0; r < kPer; ++r) {
    const int i = tid + r * kThreads, n = i / (kWidth / 8), ch = i % (kWidth / 8);
    if (i >= kItems) continue;
    *reinterpret_cast<uint4*>(q_s + (ch >> 3) * (kHeads * 128) + swz(n, ch & 7)) = bf16x8(f[r]);
  }
}

// Two float32 values rounded to an F16 pair (lo in the lower half).
__device__ __forceinline__ uint32_t f16_pair(float lo, float hi) {
  uint32_t d;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(d) : "f"(hi), "f"(lo));
  return d;
}

// 2^e as a float32 (e in [-126, 127]).
__device__ __forceinline__ float pow2(int e) { return __uint_as_float(static_cast<uint32_t>(127 + e) << 23); }

// kFp8F16: the 16 heads' latent queries times 2^e (e = mla_f16_query_shift of the head's largest |value|) rounded to
// F16 into Q's blocks 0-7, q_pe rounded to BF16 into block 8, and 2^-e into q_inv[head] (heads past n_heads: zeros,
// 2^0). kThreads / 16 consecutive threads of one warp take a head, so its maximum is a few shuffles: thread sub of
// them loads the latent's 8-value pieces sub, sub + kThreads / 16, ... and the RoPE part's piece sub (sub < 8), all
// before converting any.
template <int kThreads>
__device__ void load_queries_f16(const MlaDecodeParams& p, bool vec4, int seq, int h0, unsigned char* q_s,
                                 float* q_inv, int tid) {
  constexpr int kTpH = kThreads / kHeads, kLat = (kLora / 8) / kTpH;
  static_assert(kTpH >= 8 && kTpH <= 32 && (kLora / 8) % kTpH == 0, "a head's threads share a warp and hold its "
                                                                    "RoPE pieces");
  const int n = tid / kTpH, sub = tid % kTpH, h = h0 + n;
  const bool live = h < p.n_heads;
  float f[kLat][8], r[8];
  const float* q_lat = p.q_lat + seq * p.ld_q_lat + static_cast<int64_t>(h) * kLora;
#pragma unroll
  for (int j = 0; j < kLat; ++j) {
#pragma unroll
    for (int e = 0; e < 8; ++e) f[j][e] = 0.0f;
    if (live) load8(q_lat + (sub + j * kTpH) * 8, vec4, f[j]);
  }
#pragma unroll
  for (int e = 0; e < 8; ++e) r[e] = 0.0f;
  if (live && sub < kRope / 8) load8(p.q_pe + seq * p.ld_q_pe + h * p.q_pe_head_stride + sub * 8, vec4, r);
  float amax = 0.0f;
#pragma unroll
  for (int j = 0; j < kLat; ++j)
#pragma unroll
    for (int e = 0; e < 8; ++e) amax = fmaxf(amax, fabsf(f[j][e]));
#pragma unroll
  for (int off = kTpH / 2; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
  const int shift = mla_f16_query_shift(amax);
  const float up = pow2(shift);
#pragma unroll
  for (int j = 0; j < kLat; ++j) {
    const int ch = sub + j * kTpH;
    uint32_t w[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) w[e] = f16_pair(f[j][2 * e] * up, f[j][2 * e + 1] * up);
    *reinterpret_cast<uint4*>(q_s + (ch >> 3) * (kHeads * 128) + swz(n, ch & 7)) = make_uint4(w[0], w[1], w[2], w[3]);
  }
  if (sub < kRope / 8) *reinterpret_cast<uint4*>(q_s + kValueBlocks * (kHeads * 128) + swz(n, sub)) = bf16x8(r);
  if (sub == 0) q_inv[n] = pow2(-shift);
}

// What one consumer warpgroup carries across its tiles: O^T (64 accumulator registers a thread), and for the
// thread's 4 heads (hh = j * 2 + e is head 8 j + 2 tq + e of the group) the running max (log2 units, uniform over
// the warpgroup) and the thread's partial sum of weights.
struct ConsumerState {
  float o[kValueBlocks][8];
  float m_run[4], l_part[4];
  // kFp8F16: O^T's value blocks 2 g and 2 g + 1 (scale group g) are in units of sigma[g], the largest scale of the
  // group over the warpgroup's tiles so far, rounded up to a power of two (warpgroup-uniform; FLT_MIN at the start).
  float sigma[4];
  float q_inv[4];  // kFp8F16: 2^-e of the thread's 4 heads' F16 queries (the item's, from ConsumerSmem::q_inv)
};

// The position within its tile's ring chunks of column block b (64 BF16 values of the latent, 8 the RoPE part):
// BF16 the block itself; FP8 in place (file comment) group b / 2's chunk for b even, the widened second half's
// 5 + b / 2 for b odd, 4 for the RoPE part.
template <int kMode>
__device__ __forceinline__ int chunk_of(int b) {
  if constexpr (kMode == kBf16) return b;
  return b == 8 ? 4 : (b & 1) ? 5 + (b >> 1) : b >> 1;
}

// Where the consumer warpgroup's smem lives.
struct ConsumerSmem {
  uint32_t base, q_s, p_s, full, empty;
  unsigned char* gbase;
  float* red;          // [4 warps][16 heads] this warpgroup's tile maxima
  float* sig;          // kFp8F16: [4 warps][4 groups] this warpgroup's tile scale maxima
  const float* q_inv;  // kFp8F16: [16 heads] 2^-e of each head's F16 query
};

// Shared address of column block b of the tile whose first ring chunk is c0, as wgmma reads it.
template <int kMode>
__device__ __forceinline__ uint32_t block_addr(const ConsumerSmem& sm, int c0, int b) {
  return sm.base + ((c0 + chunk_of<kMode>(b)) % Layout<kMode>::kRing) * kChunkBytes;
}

// FP8 slots: the e4m3 latent of tile t (first ring chunk c0) widened to BF16 in place (the file comment says
// how); valid = the tile's keys in the sequence. Thread wtid of the
// warpgroup, barrier id bar.
template <int kMode>
__device__ __forceinline__ void widen_fp8_tile(const ConsumerSmem& sm, int t, int c0, int valid, int wtid, int bar) {
  using L = Layout<kMode>;
  const int r = wtid & 63, g0 = wtid >> 6;
  auto chunk = [&](int pos) { return sm.gbase + ((c0 + pos) % L::kRing) * kChunkBytes; };
  const float* scales = reinterpret_cast<const float*>(chunk(5)) + r * 4;
  const float sc[2] = {scales[g0], scales[g0 + 2]};
  named_barrier(bar, 128);  // every key's scales read: chunk 5 is written below
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    const int grp = g0 + 2 * k;
    const unsigned char* src = chunk(grp);
    uint4 codes[8];  // the row's 128 codes, all read before any of its bytes are overwritten
#pragma unroll
    for (int j = 0; j < 8; ++j) codes[j] = *reinterpret_cast<const uint4*>(src + swz(r, j));
#pragma unroll
    for (int j = 0; j < 8; ++j) {  // codes 16 j .. 16 j + 15: values (16 j) % 64 .. of column block 2 grp + j / 4
      float f[16];
      fp8::decode16(codes[j], f);
      uint32_t w[8];
#pragma unroll
      for (int e = 0; e < 8; ++e)
        w[e] = r < valid ? bf16_bits(__fmul_rn(f[2 * e], sc[k])) | bf16_bits(__fmul_rn(f[2 * e + 1], sc[k])) << 16
                         : 0u;
      unsigned char* dst = chunk(j < 4 ? grp : 5 + grp);
      *reinterpret_cast<uint4*>(dst + swz(r, 2 * (j % 4))) = make_uint4(w[0], w[1], w[2], w[3]);
      *reinterpret_cast<uint4*>(dst + swz(r, 2 * (j % 4) + 1)) = make_uint4(w[4], w[5], w[6], w[7]);
    }
  }
  wgmma::fence_proxy_async();  // the generic writes, before wgmma (the async proxy) reads them
  named_barrier(bar, 128);
}

// kFp8F16: the e4m3 codes of tile t (first ring chunk c0) widened to F16 in place, exactly (one conversion a pair;
// the scales stay out of the values), zeros for keys past the sequence (valid = the tile's keys in it). Thread
// (key r, groups g and g + 2) of the warpgroup, once every thread has read its scales out of chunk 5 (bar), reads
// its row's 128 codes of group g, then writes values 0-63 into the group's chunk and 64-127 into chunk 5 + g (row r
// of both: no other thread reads or writes those bytes), then the same for group g + 2.
template <int kMode>
__device__ __forceinline__ void widen_fp8_tile_f16(const ConsumerSmem& sm, int c0, int valid, int wtid, int bar) {
  using L = Layout<kMode>;
  const int r = wtid & 63, g0 = wtid >> 6;
  auto chunk = [&](int pos) { return sm.gbase + ((c0 + pos) % L::kRing) * kChunkBytes; };
  named_barrier(bar, 128);  // every thread's scales read: chunk 5 is written below
  const bool live = r < valid;
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    const int grp = g0 + 2 * k;
    uint4 codes[8];  // the row's 128 codes of the group, all read before any of its bytes are overwritten
#pragma unroll
    for (int j = 0; j < 8; ++j) codes[j] = *reinterpret_cast<const uint4*>(chunk(grp) + swz(r, j));
#pragma unroll
    for (int j = 0; j < 8; ++j) {  // codes 16 j .. 16 j + 15: values (16 j) % 64 .. of column block 2 grp + j / 4
      const uint2 a = fp8::f16x4(codes[j].x), b = fp8::f16x4(codes[j].y), c = fp8::f16x4(codes[j].z),
                  d = fp8::f16x4(codes[j].w);
      const uint4 lo = live ? make_uint4(a.x, a.y, b.x, b.y) : make_uint4(0, 0, 0, 0);
      const uint4 hi = live ? make_uint4(c.x, c.y, d.x, d.y) : make_uint4(0, 0, 0, 0);
      unsigned char* dst = chunk(j < 4 ? grp : 5 + grp);
      *reinterpret_cast<uint4*>(dst + swz(r, 2 * (j % 4))) = lo;
      *reinterpret_cast<uint4*>(dst + swz(r, 2 * (j % 4) + 1)) = hi;
    }
  }
  wgmma::fence_proxy_async();  // the generic writes, before wgmma (the async proxy) reads them
  named_barrier(bar, 128);
}

// kFp8F16: S^T of tile c0 into s: the RoPE product (BF16) plus, for each scale group g, the key's scale times
// codes_g . (2^e q_g) (F16, each group its own accumulator), times the head's 2^-e (q_inv, ConsumerState's). sc[half][g]:
// scale g of this thread's keys 16 warp + lane / 4 + 8 half (0 past the sequence).
template <int kMode>
__device__ __forceinline__ void scores_f16(const ConsumerSmem& sm, int c0, const float (&sc)[2][4],
                                           const float (&q_inv)[4], float (&s)[8]) {
  float acc[4][8], rope[8];
  wgmma::fence();
  const uint32_t rope_blk = block_addr<kMode>(sm, c0, kValueBlocks);
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)
    wgmma::wgmma_ss_n16<0>(rope, wgmma::desc_sw128(rope_blk + kk * 32, 16, 1024),
                           wgmma::desc_sw128(sm.q_s + kValueBlocks * (kHeads * 128) + kk * 32, 16, 1024), kk != 0);
#pragma unroll
  for (int grp = 0; grp < 4; ++grp)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int b = 2 * grp + half;
      const uint32_t blk = block_addr<kMode>(sm, c0, b);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
        wgmma::wgmma_ss_n16<0, true>(acc[grp], wgmma::desc_sw128(blk + kk * 32, 16, 1024),
                                     wgmma::desc_sw128(sm.q_s + b * (kHeads * 128) + kk * 32, 16, 1024),
                                     (half | kk) != 0);
    }
  wgmma::commit();
  wgmma::wait_all();
  wgmma::fence_regs(rope);
#pragma unroll
  for (int grp = 0; grp < 4; ++grp) wgmma::fence_regs(acc[grp]);
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int half = (i >> 1) & 1;
    const float lat = ((sc[half][0] * acc[0][i] + sc[half][1] * acc[1][i]) + sc[half][2] * acc[2][i]) +
                      sc[half][3] * acc[3][i];
    s[i] = fmaf(lat, q_inv[(i >> 2) * 2 + (i & 1)], rope[i]);  // head 8 (i / 4) + 2 tq + i % 2: hh of ConsumerState
  }
}

// kFp8F16: the smallest power of two >= x (x a positive normal float32), and 1 / x for x a power of two.
__device__ __forceinline__ float pow2_ceil(float x) {
  const uint32_t b = __float_as_uint(x);
  return __uint_as_float((b & 0x7FFFFFu) != 0 ? (b & 0x7F800000u) + 0x00800000u : b);
}
__device__ __forceinline__ float pow2_inv(float x) { return __uint_as_float(0x7F000000u - __float_as_uint(x)); }

// kFp8F16: each scale group's sigma grown to cover the warpgroup's tile (the 4 warps' maxima in sm.sig, written
// before the barrier that precedes this): rho = old sigma / new (O's group blocks' rescale, exact), inv_sigma = 1 / new.
__device__ __forceinline__ void grow_sigma(const ConsumerSmem& sm, ConsumerState& st, float (&rho)[4],
                                           float (&inv_sigma)[4]) {
#pragma unroll
  for (int grp = 0; grp < 4; ++grp) {
    const float tile_max = fmaxf(fmaxf(sm.sig[grp], sm.sig[4 + grp]), fmaxf(sm.sig[8 + grp], sm.sig[12 + grp]));
    const float sigma = fmaxf(st.sigma[grp], pow2_ceil(fmaxf(tile_max, 1.17549435e-38f)));  // FLT_MIN floor
    inv_sigma[grp] = pow2_inv(sigma);
    rho[grp] = st.sigma[grp] * inv_sigma[grp];  // a power of two <= 1: exact
    st.sigma[grp] = sigma;
  }
}

// kFp8F16: P'_g = P x scale_g(key) / sigma_g rounded to F16 for the 4 scale groups g, each [16 heads][64 keys]
// (sw128, as P) at p_base + 2048 g: one stmatrix.trans a group writes the warp's 16 keys x 16 heads (the
// accumulator layout's pairs are keys x adjacent heads; transposed, each row is a head's 8 keys).
__device__ __forceinline__ void write_p_f16(uint32_t p_base, const float (&pv)[8], const float (&sc)[2][4],
                                            const float (&inv_sigma)[4], int warp, int lane) {
  const int mat = lane >> 3;  // the lane's row address is of matrix mat: heads 8 (mat / 2) + .., keys + 8 (mat % 2)
  const uint32_t row = p_base + swz(8 * (mat >> 1) + (lane & 7), 2 * warp + (mat & 1));
#pragma unroll
  for (int grp = 0; grp < 4; ++grp) {
    const float f[2] = {sc[0][grp] * inv_sigma[grp], sc[1][grp] * inv_sigma[grp]};
    uint32_t r[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) r[j] = f16_pair(pv[2 * j] * f[j & 1], pv[2 * j + 1] * f[j & 1]);
    asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(row + grp * 2048),
                 "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3])
                 : "memory");
  }
}

// The ring chunk where tile `tile` (counted over all the CTA's items) starts.
template <int kMode>
__device__ __forceinline__ int tile_chunk(int tile) {
  return tile * Layout<kMode>::kTileChunks;
}

// Tile t's value chunks (kFp8F16: and its RoPE chunk) handed back to the producer (lane 0 of each of the warpgroup's 4 warps arrives).
template <int kMode>
__device__ __forceinline__ void release_values(const ConsumerSmem& sm, int c0, int lane) {
  if (lane == 0)  // kFp8F16: the RoPE chunk too (it held P')
    for (int mb = 0; mb < (kMode == kFp8F16 ? kColBlocks : kValueBlocks); ++mb)
      tma::mbar_arrive(sm.empty + 8 * ((c0 + chunk_of<kMode>(mb)) % Layout<kMode>::kRing));
}

// FP8 slots, before tile t's scores (first ring chunk c0; valid = the tile's keys in the sequence): wait for its
// chunks, then widen its codes in place, kFp8F16 exactly to F16 after reading the scales of this thread's keys
// 16 warp + lane / 4 + 8 half into sc (0 past the sequence), kFp8InPlace as code x scale rounded to BF16.
template <int kMode>
__device__ __forceinline__ void fp8_tile_prologue(const ConsumerSmem& sm, int t, int c0, int valid, int wtid, int bar,
                                                  float (&sc)[2][4], uint64_t* tl) {
  using L = Layout<kMode>;
  for (int b = 0; b < L::kTileChunks; ++b) {
    const int c = c0 + b;
    tma::mbar_wait(sm.full + 8 * (c % L::kRing), (c / L::kRing) & 1);
  }
  stamp(tl, 4);
  if constexpr (kMode == kFp8F16) {
    const float* scales = reinterpret_cast<const float*>(sm.gbase + ((c0 + 5) % L::kRing) * kChunkBytes);
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int key = 16 * (wtid >> 5) + ((wtid & 31) >> 2) + 8 * half;
      const float4 v = *reinterpret_cast<const float4*>(scales + key * 4);
      const bool live = key < valid;
      sc[half][0] = live ? v.x : 0.0f, sc[half][1] = live ? v.y : 0.0f;
      sc[half][2] = live ? v.z : 0.0f, sc[half][3] = live ? v.w : 0.0f;
    }
    widen_fp8_tile_f16<kMode>(sm, c0, valid, wtid, bar);
  } else {
    widen_fp8_tile<kMode>(sm, t, c0, valid, wtid, bar);
  }
}

// One 64-key tile t of the item (tile_base + t of the CTA's ring order): S^T = K Q^T, online softmax, O^T = alpha
// O^T + V^T P^T. Thread wtid of the warpgroup (warp = wtid / 32); barrier id bar. hold: the value chunks stay the
// warpgroup's after P.V (the merge of the two warpgroups passes its output through them; release_values after).
// kFp8F16: S^T by scores_f16, P'_g per scale group into the tile's RoPE chunk (free once the scores are done), O^T's
// group blocks rescaled by sigma's growth with alpha, V^T P'^T on the F16 codes.
template <int kMode>
__device__ __forceinline__ void consume_tile(const ConsumerSmem& sm, ConsumerState& st, int t, int tile_base,
                                             int k_begin, int k_end, float scale_log2, int wtid, int bar, bool hold,
                                             uint64_t* tl) {
  using L = Layout<kMode>;
  constexpr bool kF16 = kMode == kFp8F16;
  const int warp = wtid >> 5, lane = wtid & 31, g = lane >> 2, tq = lane & 3;
  const int key0 = k_begin + t * kKeys, c0 = tile_chunk<kMode>(tile_base + t);
  float sc[2][4] = {};  // kFp8F16: the scales of this thread's keys 16 warp + g + 8 half (0 past the sequence)
  if constexpr (L::kFp8) fp8_tile_prologue<kMode>(sm, t, c0, k_end - key0, wtid, bar, sc, tl);
  float s[8];
  if constexpr (kF16) {
    scores_f16<kMode>(sm, c0, sc, st.q_inv, s);
  } else {
    wgmma::fence();
    for (int b = 0; b < kColBlocks; ++b) {
      if constexpr (!L::kFp8) {
        const int c = c0 + b;
        tma::mbar_wait(sm.full + 8 * (c % L::kRing), (c / L::kRing) & 1);
        if (b == 0) stamp(tl, 4);
      }
      const uint32_t k_blk = block_addr<kMode>(sm, c0, b);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
        wgmma::wgmma_ss_n16<0>(s, wgmma::desc_sw128(k_blk + kk * 32, 16, 1024),
                               wgmma::desc_sw128(sm.q_s + b * (kHeads * 128) + kk * 32, 16, 1024), (b | kk) != 0);
    }
    wgmma::commit();
    wgmma::wait_all();
    wgmma::fence_regs(s);
  }
  stamp(tl, 5);
  if (!kF16 && lane == 0) tma::mbar_arrive(sm.empty + 8 * ((c0 + chunk_of<kMode>(8)) % L::kRing));  // rope done

  // Online softmax per head (column): the warp's 16 keys by shuffles, the warpgroup's 4 warps through red[].
  const int key_lo = key0 + 16 * warp + g;
  float x[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) x[i] = key_lo + ((i >> 1) & 1) * 8 < k_end ? s[i] * scale_log2 : neg_inf();
#pragma unroll
  for (int hh = 0; hh < 4; ++hh) {
    const int j = hh >> 1, e = hh & 1;
    float mx = fmaxf(x[j * 4 + e], x[j * 4 + 2 + e]);
#pragma unroll
    for (int off = 4; off < 32; off <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    if (g == 0) sm.red[warp * kHeads + 8 * j + 2 * tq + e] = mx;
  }
  if constexpr (kF16) {  // the warp's scale maxima a group (positive floats order as their bits)
#pragma unroll
    for (int grp = 0; grp < 4; ++grp) {
      const uint32_t m = __reduce_max_sync(0xffffffffu, __float_as_uint(fmaxf(sc[0][grp], sc[1][grp])));
      if (lane == 0) sm.sig[warp * 4 + grp] = __uint_as_float(m);
    }
  }
  named_barrier(bar, 128);  // the 4 warps' tile maxima written
  float alpha[4];
#pragma unroll
  for (int hh = 0; hh < 4; ++hh) {
    const int head = 8 * (hh >> 1) + 2 * tq + (hh & 1);
    const float tmax = fmaxf(fmaxf(sm.red[head], sm.red[kHeads + head]),
                             fmaxf(sm.red[2 * kHeads + head], sm.red[3 * kHeads + head]));
    const float m_new = fmaxf(st.m_run[hh], tmax);  // finite: every tile holds at least one key
    alpha[hh] = exp2f(st.m_run[hh] - m_new);
    st.m_run[hh] = m_new;
    st.l_part[hh] *= alpha[hh];
  }
  float rho[4] = {1.0f, 1.0f, 1.0f, 1.0f}, inv_sigma[4];  // kFp8F16: O's group rescale, 1 / sigma
  if constexpr (kF16) grow_sigma(sm, st, rho, inv_sigma);
  float pv[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int hh = (i >> 2) * 2 + (i & 1);
    pv[i] = exp2f(x[i] - st.m_run[hh]);
    st.l_part[hh] += pv[i];  // l sums the unrounded weights, P.V takes them rounded (as the mma.sync kernel)
  }
  const uint32_t p_base = kF16 ? block_addr<kMode>(sm, c0, kValueBlocks) : sm.p_s;  // P (kFp8F16: P'_g, the RoPE chunk)
  if constexpr (kF16) {
    write_p_f16(p_base, pv, sc, inv_sigma, warp, lane);
  } else {
    unsigned char* pg = sm.gbase + (sm.p_s - sm.base);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int head = 8 * (i >> 2) + 2 * tq + (i & 1), key = 16 * warp + g + ((i >> 1) & 1) * 8;  // in the tile
      *reinterpret_cast<uint16_t*>(pg + swz(head, key >> 3) + (key & 7) * 2) = static_cast<uint16_t>(bf16_bits(pv[i]));
    }
  }
#pragma unroll
  for (int mb = 0; mb < kValueBlocks; ++mb) {
#pragma unroll
    for (int i = 0; i < 8; ++i) st.o[mb][i] *= alpha[(i >> 2) * 2 + (i & 1)] * rho[mb >> 1];
    wgmma::fence_regs(st.o[mb]);  // rescaled here, before wgmma::fence (ptxas injects an arrive a block otherwise)
  }
  const int valid = k_end - key0;
  if (!L::kFp8 && valid < kKeys) {  // the sequence's last tile: zero the value rows of keys past its end (FP8: widened)
    for (int i = wtid; i < (kKeys - valid) * kValueBlocks * 8; i += 128) {
      const int row = valid + i / (kValueBlocks * 8), blk = (i / 8) % kValueBlocks, ch = i % 8;
      *reinterpret_cast<uint4*>(sm.gbase + ((c0 + blk) % L::kRing) * kChunkBytes + row * 128 + ch * 16) =
          make_uint4(0, 0, 0, 0);
    }
  }
  wgmma::fence_proxy_async();
  named_barrier(bar, 128);  // P (and zeroed rows) written
  stamp(tl, 6);

  wgmma::fence();
#pragma unroll
  for (int mb = 0; mb < kValueBlocks; ++mb) {
    const uint32_t v = block_addr<kMode>(sm, c0, mb);
    const uint32_t p_blk = kF16 ? p_base + (mb >> 1) * 2048 : p_base;
#pragma unroll
    for (int ks = 0; ks < kKeys / 16; ++ks)
      wgmma::wgmma_ss_n16<1, kF16>(st.o[mb], wgmma::desc_sw128(v + ks * 2048, kChunkBytes, 1024),
                                   wgmma::desc_sw128(p_blk + ks * 32, 16, 1024), true);
  }
  wgmma::commit();
  wgmma::wait_all();
#pragma unroll
  for (int mb = 0; mb < kValueBlocks; ++mb) wgmma::fence_regs(st.o[mb]);
  stamp(tl, 7);
  if (!hold) release_values<kMode>(sm, c0, lane);
}

// The producer thread: every tile's 9 chunks in order, a chunk once the consumers released the one kRing earlier.
// A chunk is one box of 64 slots where the pool's blocks hold whole 64-key tiles (block_size % 64 == 0), else up
// to 4 boxes of 16 slots. The block-table lookups of tile t + 1 are issued before tile t's copies, so their latency
// hides behind the waits. FP8 in place: chunks 0-3 the code groups, 4 the RoPE part, 5 the scales, and the
// consumers' own chunks 6-8 handed over empty (a plain arrival).
template <int kMode>
__device__ __forceinline__ void produce_tiles(const HopperDecodeArgs& a, uint32_t base, uint32_t full, uint32_t empty,
                                              int seq, int k_begin, int k_end, int n_tiles, int tile_base,
                                              uint64_t* tl) {
  const MlaDecodeParams& p = a.p;
  const int bs = p.paged.block_size;
  const int32_t* table = p.paged.block_tables + static_cast<int64_t>(seq) * p.paged.max_blocks;
  const uint64_t policy = a.evict_first ? tma::evict_first_policy() : tma::evict_normal_policy();
  auto lookup = [&](int t, int (&rows)[kGroups]) {
    const int key0 = k_begin + t * kKeys;
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
      const int pos = key0 + g * 16;
      rows[g] = t < n_tiles && pos < k_end && (g == 0 || !a.box64) ? __ldg(table + pos / bs) * bs + pos % bs : 0;
    }
  };
  int next[kGroups];
  lookup(0, next);
  for (int t = 0; t < n_tiles; ++t) {
    int rows[kGroups];
#pragma unroll
    for (int g = 0; g < kGroups; ++g) rows[g] = next[g];
    lookup(t + 1, next);
    const int key0 = k_begin + t * kKeys;
    const int n_boxes = a.box64 ? 1 : min(kGroups, (k_end - key0 + 15) / 16);
    const int box_rows = a.box64 ? kKeys : 16;
    using L = Layout<kMode>;
    constexpr bool kFp8 = L::kFp8;
    for (int b = 0; b < L::kTileChunks; ++b) {
      const int c = tile_chunk<kMode>(tile_base + t) + b, slot = c % L::kRing;
      if (c >= L::kRing) tma::mbar_wait(empty + 8 * slot, ((c / L::kRing) - 1) & 1);
      if (kFp8 && b >= 6) {  // written by the consumers only
        tma::mbar_arrive(full + 8 * slot);
        continue;
      }
      const bool scales = kFp8 && b == 5;
      // Bytes a box row: 128 (64 BF16 columns, or 128 codes, or the 64 BF16 RoPE values), 16 (the scales).
      const int row_bytes = scales ? 16 : 128;
      // FP8 columns are bytes: group b's codes at 128 b, the RoPE part after the codes and scales (528).
      const int col = !kFp8 ? b * 64 : b == 4 ? kLora + 16 : b * 128;
      tma::mbar_arrive_expect_tx(full + 8 * slot, static_cast<uint32_t>(n_boxes * box_rows * row_bytes));
#pragma unroll
      for (int g = 0; g < kGroups; ++g) {
        if (g >= n_boxes) continue;
        const uint32_t dst = base + slot * kChunkBytes + g * 16 * row_bytes;
        // read once: evict first
        tma::load_2d_hint(dst, scales ? &a.scale_map : &a.map, scales ? 0 : col, rows[g], full + 8 * slot, policy);
      }
    }
    if (t == 0) stamp(tl, 2);
  }
}

// The end of an item in the consumers: the warpgroups' sums, then their merge (each writes half of the output,
// value blocks [4 wg, 4 wg + 4), and hands the other its weighted O^T of the other half through its last tile's
// value chunks, held since P.V), then the output row (one split) or the partial and its (m, l). own_c0 / other_c0:
// the first ring chunk of this warpgroup's last tile and of the other's (merge only). Every thread of both warpgroups calls it: its barriers
// (id 3) are uniform, merge is (n_tiles > 1 for both).
template <int kWGs, int kMode>
__device__ __forceinline__ void finish_item(const HopperDecodeArgs& a, const ConsumerSmem& sm, const ConsumerState& st,
                                            const DecodeItem& it, bool merge, int own_c0, int other_c0, int tid) {
  using L = Layout<kMode>;
  const MlaDecodeParams& p = a.p;
  const int warp = tid >> 5, lane = tid & 31, wg = warp >> 2, g = lane >> 2, tq = lane & 3, wwarp = warp & 3,
            wtid = tid & 127;
  // l: the thread's partial sums, then the warp's 8 row lanes, then the 4 warps (fixed order); (m, l) per
  // warpgroup to ml[wg][head].
  float* lsum = reinterpret_cast<float*>(sm.gbase + L::kSumOff) + wg * 4 * kHeads;
  float* ml = reinterpret_cast<float*>(sm.gbase + L::kMlOff);
#pragma unroll
  for (int hh = 0; hh < 4; ++hh) {
    float l = st.l_part[hh];
#pragma unroll
    for (int off = 4; off < 32; off <<= 1) l += __shfl_xor_sync(0xffffffffu, l, off);
    if (g == 0) lsum[wwarp * kHeads + 8 * (hh >> 1) + 2 * tq + (hh & 1)] = l;
  }
  named_barrier(1 + wg, 128);
  if (wtid < kHeads)
    ml[(wg * kHeads + wtid) * 2 + 1] =
        ((lsum[wtid] + lsum[kHeads + wtid]) + lsum[2 * kHeads + wtid]) + lsum[3 * kHeads + wtid];
  if (wwarp == 0 && g == 0)
#pragma unroll
    for (int hh = 0; hh < 4; ++hh) ml[(wg * kHeads + 8 * (hh >> 1) + 2 * tq + (hh & 1)) * 2] = st.m_run[hh];
  named_barrier(3, kWGs * 128);  // every warpgroup's (m, l) written

  // Weights f_w = exp2(m_w - max_w m_w) (0 for a warpgroup without keys).
  float f[4], m_tot[4], l_tot[4];
#pragma unroll
  for (int hh = 0; hh < 4; ++hh) {
    const int n = 8 * (hh >> 1) + 2 * tq + (hh & 1);
    m_tot[hh] = ml[n * 2];
    for (int w = 1; w < kWGs; ++w) m_tot[hh] = fmaxf(m_tot[hh], ml[(w * kHeads + n) * 2]);
    l_tot[hh] = 0.0f;
    for (int w = 0; w < kWGs; ++w) {
      const float mw = ml[(w * kHeads + n) * 2];
      const float fw = mw == neg_inf() ? 0.0f : exp2f(mw - m_tot[hh]);
      l_tot[hh] += fw * ml[(w * kHeads + n) * 2 + 1];
      if (w == wg) f[hh] = fw;
    }
  }
  // A block handed over: [16 heads][kXferLd values] in the chunk of value block mb of the writer's last tile; the
  // row pad puts a warp's 4 heads (tq) and 8 values (g) in 32 distinct banks.
  constexpr int kXferLd = 64 + 4;
  static_assert(kHeads * kXferLd * 4 <= kChunkBytes, "a handed-over block fits its chunk");
  auto xfer = [&](int c0, int mb) {
    return reinterpret_cast<float*>(sm.gbase + ((c0 + chunk_of<kMode>(mb)) % L::kRing) * kChunkBytes);
  };
  if (merge) {
#pragma unroll
    for (int mb = 0; mb < kValueBlocks; ++mb) {
      if ((mb >> 2) == wg) continue;  // a block this warpgroup writes itself
      float* x = xfer(own_c0, mb);
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int v = 16 * wwarp + g + ((i >> 1) & 1) * 8, n = 8 * (i >> 2) + 2 * tq + (i & 1);
        x[n * kXferLd + v] = st.o[mb][i] * f[(i >> 2) * 2 + (i & 1)];
      }
    }
    named_barrier(3, kWGs * 128);
  }
  const bool writes = merge || wg == 0;  // a split of one tile leaves warpgroup 1 without keys: 0 writes alone
  const int64_t n_partials = static_cast<int64_t>(a.n_splits) * p.n_seqs * p.n_heads;
#pragma unroll
  for (int hh = 0; hh < 4; ++hh) {
    const int n = 8 * (hh >> 1) + 2 * tq + (hh & 1), h = it.h0 + n;
    if (!writes || h >= p.n_heads) continue;
    float* dst;
    float mul = f[hh];
    if (a.n_splits == 1) {
      dst = p.out + it.seq * p.ld_out + static_cast<int64_t>(h) * kLora;
      mul = l_tot[hh] > 0.0f ? f[hh] / l_tot[hh] : 0.0f;
    } else {
      const int64_t idx = partial_index(it.split, it.seq, h, p.n_seqs, p.n_heads);
      dst = p.scratch + idx * kLora;
      if (wg == 0 && wwarp == 0 && g == 0) {
        p.scratch[n_partials * kLora + idx * 2] = m_tot[hh];
        p.scratch[n_partials * kLora + idx * 2 + 1] = l_tot[hh];
      }
    }
    const float add_mul = a.n_splits == 1 ? (l_tot[hh] > 0.0f ? 1.0f / l_tot[hh] : 0.0f) : 1.0f;
#pragma unroll
    for (int mb = 0; mb < kValueBlocks; ++mb) {
      if (merge && (mb >> 2) != wg) continue;  // the other warpgroup's half
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int v = 16 * wwarp + g + 8 * half;
        float val = st.o[mb][(hh >> 1) * 4 + half * 2 + (hh & 1)] * mul;
        if (merge) val += xfer(other_c0, mb)[n * kXferLd + v] * add_mul;
        dst[64 * mb + v] = val;
      }
    }
  }
  if (merge) {  // both warpgroups have read what the other handed over: the held chunks go back to the producer
    wgmma::fence_proxy_async();  // these generic accesses before the producer's next copies into the chunks
    named_barrier(3, kWGs * 128);
    release_values<kMode>(sm, own_c0, lane);
  }
}

// grid: CTA b takes work items b, b + gridDim.x, ... (HopperDecodeArgs: head group, sequence, split; one item a
// CTA unless MlaDecodeParams::persistent_ctas makes fewer CTAs); block kWGs * 128 + 32: warpgroup w computes tiles
// w, w + kWGs, ... of an item (its own running max, sums and O^T, merged at the item's end), the last warp copies.
// The ring runs on across the CTA's items: the producer streams the next item's tiles while the consumers finish
// the last one.
template <int kWGs, int kMode>
__global__ void __launch_bounds__(kWGs * 128 + 32, 1) mla_decode_hopper_kernel(const __grid_constant__ HopperDecodeArgs a) {
  using L = Layout<kMode>;
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) unsigned char mla_hopper_smem[];
  const MlaDecodeParams& p = a.p;
  const uint32_t raw = smem_addr(mla_hopper_smem), base = (raw + 1023u) & ~1023u;
  unsigned char* gbase = mla_hopper_smem + (base - raw);  // the same bytes, generic pointer
  const uint32_t full = base + L::kBarOff, empty = full + 8 * L::kRing;
  // warp from lane 0 by a shuffle: the compiler then knows it is warp-uniform, so the role branches below are not
  // divergent paths (where ptxas would serialize the wgmma instructions, C7520).
  const int tid = threadIdx.x, warp = __shfl_sync(0xffffffffu, tid >> 5, 0), lane = tid & 31;
  uint64_t* tl = p.timeline == nullptr ? nullptr : p.timeline + kMlaTimelineStamps * blockIdx.x;
  if (tid == 0) stamp(tl, 0);
  if (tid == 0) {  // shared memory only: before the PDL wait
    for (int i = 0; i < L::kRing; ++i) {
      tma::mbar_init(full + 8 * i, 1);
      tma::mbar_init(empty + 8 * i, 4);  // lane 0 of each warp of the consuming warpgroup
    }
    tma::mbar_init_fence();
  }
  __syncthreads();
  if (tid == 0) stamp(tl, 1);
  // q (and, unless cache_early, kv_len and the step's new cache rows) come from earlier kernels (pdl.cuh). With
  // cache_early only the consumers wait (for q_lat): the producer's stream overlaps the previous kernel's tail.
  if (!a.cache_early) griddep_wait();
  const int first = blockIdx.x, stride = gridDim.x;

  if (warp == 4 * kWGs) {
    if (lane == 0) {
      int tile_base = 0;  // tiles of this CTA's earlier items: where the next one starts in the ring
      for (int w = first; w < a.n_items; w += stride) {
        DecodeItem it;
        if (!decode_item(a, w, it)) continue;
        produce_tiles<kMode>(a, base, full, empty, it.seq, it.k_begin, it.k_end, it.n_tiles, tile_base,
                             w == first ? tl : nullptr);
        tile_base += it.n_tiles;
      }
    }
    return;
  }
  if (a.cache_early) griddep_wait();

  // ---- consumers ----
  const int wg = warp >> 2, wtid = tid & 127;
  const ConsumerSmem sm{base, base + L::kQOff, base + L::kPOff + wg * kPBytes, full, empty, gbase,
                        reinterpret_cast<float*>(gbase + L::kRedOff) + wg * 4 * kHeads,
                        reinterpret_cast<float*>(gbase + L::kSigOff) + wg * 16,
                        reinterpret_cast<const float*>(gbase + L::kQInvOff)};
  const float scale_log2 = p.scale * kLog2e;
  int tile_base = 0;
  ConsumerState st;
  for (int w = first; w < a.n_items; w += stride) {
    DecodeItem it;
    if (!decode_item(a, w, it)) continue;
    const bool last = w + stride >= a.n_items;
    uint64_t* tl_item = w == first ? tl : nullptr;
    // Q is shared by both warpgroups: the previous item's products are done (finish_item ended on barrier 3, or
    // wrote without one: this one orders its reads of Q before the overwrite).
    if (w != first) named_barrier(3, kWGs * 128);
    if constexpr (kMode == kFp8F16)
      load_queries_f16<kWGs * 128>(p, a.q_vec4, it.seq, it.h0, gbase + L::kQOff,
                                   reinterpret_cast<float*>(gbase + L::kQInvOff), tid);
    else
      load_queries<kWGs * 128>(p, a.q_vec4, it.seq, it.h0, gbase + L::kQOff, tid);
    wgmma::fence_proxy_async();
    named_barrier(3, kWGs * 128);
    if (tid == 0) stamp(tl_item, 3);
    if constexpr (kMode == kFp8F16) {
#pragma unroll
      for (int hh = 0; hh < 4; ++hh) st.q_inv[hh] = sm.q_inv[8 * (hh >> 1) + 2 * (tid & 3) + (hh & 1)];
    }
#pragma unroll
    for (int hh = 0; hh < 4; ++hh) {
      st.m_run[hh] = neg_inf();
      st.l_part[hh] = 0.0f;
      st.sigma[hh] = 1.17549435e-38f;  // FLT_MIN: below any tile's sigma
    }
#pragma unroll
    for (int mb = 0; mb < kValueBlocks; ++mb)
#pragma unroll
      for (int i = 0; i < 8; ++i) st.o[mb][i] = 0.0f;
    // Both warpgroups hold a tile at the end (merge) where the item has two or more; each one's last tile.
    const bool merge = kWGs == 2 && it.n_tiles > 1;
    auto last_c0 = [&](int w2) {  // the first ring chunk of warpgroup w2's last tile
      return tile_chunk<kMode>(tile_base + it.n_tiles - 1 - ((it.n_tiles - 1 - w2) % kWGs));
    };
    for (int t = wg; t < it.n_tiles; t += kWGs)
      consume_tile<kMode>(sm, st, t, tile_base, it.k_begin, it.k_end, scale_log2, wtid, 1 + wg,
                          merge && t + kWGs >= it.n_tiles, tid == 0 && t == 0 ? tl_item : nullptr);
    if constexpr (kMode == kFp8F16) {  // O^T's group blocks out of sigma's units
#pragma unroll
      for (int mb = 0; mb < kValueBlocks; ++mb)
#pragma unroll
        for (int i = 0; i < 8; ++i) st.o[mb][i] *= st.sigma[mb >> 1];
    }
    if (last) {
      if (tid == 0) stamp(tl, 8);
      // Keys done: the combine's CTAs may be placed as this grid's CTAs end (placed at the start, they measured
      // 2 us slower at 1 x 128K: waiting CTAs beside the working ones).
      griddep_launch_dependents();
    }
    finish_item<kWGs, kMode>(a, sm, st, it, merge, merge ? last_c0(wg) : 0, merge ? last_c0(kWGs - 1 - wg) : 0, tid);
    if (last && tid == 0) stamp(tl, 9);
    tile_base += it.n_tiles;
  }
#else
  __trap();  // built only for sm_90a; mla_decode_hopper_supported is false elsewhere
#endif
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

// The FP8 slot at V2 widths (Fp8SlotLayout {576, 512, 512}): codes, scales at 512, the RoPE part at 528.
constexpr Fp8SlotLayout kFp8Slot = Fp8SlotLayout::mla(kLora, kRope);
static_assert(kFp8Slot.scale_offset() == kLora && kFp8Slot.bf16_offset() == kLora + 16 && kFp8Slot.bytes() == 656,
              "the producer's FP8 columns");

// The pool's tensor maps (HopperDecodeArgs::map, scale_map), encoded once per (pool, slots, box, dtype) on this
// thread: the engine launches with the same pool every layer and step, and an encode is host work on every eager
// launch.
void set_pool_maps(HopperDecodeArgs& a, const void* cache, int64_t n_slots, bool box64, bool fp8) {
  struct Entry {
    const void* cache = nullptr;
    int64_t n_slots = 0;
    bool box64 = false, fp8 = false;
    CUtensorMap map{}, scale_map{};
  };
  thread_local Entry last;
  if (last.cache != cache || last.n_slots != n_slots || last.box64 != box64 || last.fp8 != fp8) {
    const auto rows = static_cast<uint64_t>(n_slots);
    const uint32_t box_rows = box64 ? 64 : 16;
    // No L2 promotion: the rows are 128-byte pieces of 1152- (656-) byte slots (a 256-byte fill measured 2 points
    // slower).
    if (fp8) {
      last.map = hopper::tensor_map_bytes_2d(cache, kFp8Slot.bytes(), rows, kFp8Slot.bytes(), box_rows,
                                             "mla_decode_hopper (FP8 slots)", CU_TENSOR_MAP_L2_PROMOTION_NONE);
      last.scale_map = hopper::tensor_map_bytes_2d_plain(static_cast<const unsigned char*>(cache) + kLora, 16, rows,
                                                         kFp8Slot.bytes(), 16, box_rows, "mla_decode_hopper (scales)");
    } else {
      last.map = hopper::tensor_map_bf16_2d(cache, kWidth, rows, kWidth * 2, box_rows, "mla_decode_hopper",
                                            CU_TENSOR_MAP_L2_PROMOTION_NONE);
    }
    last.cache = cache;
    last.n_slots = n_slots;
    last.box64 = box64;
    last.fp8 = fp8;
  }
  a.map = last.map;
  a.scale_map = last.scale_map;
}

// The grid for n_items work items (MlaDecodeParams::persistent_ctas) over a BF16 (fp8 false) or FP8 pool.
int64_t hopper_ctas(int32_t persistent_ctas, int64_t n_items, bool fp8) {
  // Past one wave of one-CTA-an-SM items, a CTA an SM for BF16 pools: each CTA's ring then streams its next item's
  // tiles while it merges and writes the last, where a new CTA would start cold (its barriers, queries and first
  // copies) after the old one's tail. Measured (docs/perf-notes.md, issue 16 round 14, H100): BF16 256 x 576 -2.4%,
  // 512 x 576 -4.3%, 2,048 x 640 +0.5%; FP8 pools, whose tile time is the consumers' widening, not the copies,
  // lost (2,048 x 640 +5.6%: items dealt round robin end less evenly than CTAs placed as SMs free up), so they keep
  // one CTA an item. MLABENCH_MLA_DECODE_PERSISTENT: 0 one CTA an item, 1 SM-many CTAs for both pools, 2 (unset)
  // SM-many for BF16 pools only.
  static const int level = gpu::env_level("MLABENCH_MLA_DECODE_PERSISTENT", 2, 2);
  if (persistent_ctas > 0) return std::min<int64_t>(persistent_ctas, n_items);
  const bool persistent = level == 2 ? !fp8 : level == 1;
  if (persistent_ctas < 0 || !persistent) return n_items;
  return std::min<int64_t>(gpu::device_sm_count(), n_items);
}

}  // namespace

bool mla_decode_hopper_supported(const MlaDecodeParams& p) {
  return (p.cache_type == DType::BF16 || p.cache_type == DType::F8_E4M3) && p.bf16_operands && p.kv_lora == kLora &&
         p.rope == kRope &&
         p.paged.block_size > 0 && p.paged.block_size % 16 == 0 && p.n_slots > 0 && p.n_slots < (int64_t{1} << 31) &&
         p.cache != nullptr && aligned16(p.cache) && hopper::sm90a_available();
}

void mla_decode_hopper(const MlaDecodeParams& p, cudaStream_t s) {
  MLABENCH_CHECK(mla_decode_hopper_supported(p),
                 "mla_decode_hopper: cache {}, bf16_operands {}, kv_lora {}, rope {}, block_size {}, n_slots {}: not "
                 "what this kernel takes (BF16 or F8_E4M3 cache, BF16 operands, 512 + 64, block_size a multiple of "
                 "16, n_slots given, an sm_90a build on a compute capability 9.0 GPU). HINT: leave MlaDecodeParams::kernel at AUTO",
                 dtype_name(p.cache_type), p.bf16_operands, p.kv_lora, p.rope, p.paged.block_size, p.n_slots);
  int n_splits = mla_decode_splits(p);
  check_fixed_splits_scratch(p.fixed_splits, p.scratch, "mla_decode_hopper");
  if (n_splits > 1 && p.scratch == nullptr) n_splits = 1;
  HopperDecodeArgs a{};
  a.p = p;
  // Measured choices (docs/perf-notes.md, issue 15 round 18): one 64-row box a chunk where the blocks hold whole
  // tiles (16-row boxes: 60% of the copy bandwidth at 64 x 8K against 81%), evict-first reads, no L2 promotion
  // (the rows are 128-byte pieces of 1152-byte slots; a 256-byte fill measured 2 points slower).
  a.box64 = p.paged.block_size % 64 == 0;
  const bool fp8 = p.cache_type == DType::F8_E4M3;
  set_pool_maps(a, p.cache, p.n_slots, a.box64, fp8);
  // V2's 128 heads are 8 CTAs a sequence reading the same latent at about the same time: evict-first would send
  // each of them to HBM (the 16-head kernel's 10-12% of the copy bandwidth at 128 heads, round 18).
  a.evict_first = p.n_heads <= kHeads;
  a.cache_early = p.cache_early && gpu::programmatic_launch_enabled();
  a.q_vec4 = aligned16(p.q_lat) && aligned16(p.q_pe) && p.ld_q_lat % 4 == 0 && p.ld_q_pe % 4 == 0 &&
             p.q_pe_head_stride % 4 == 0;
  // Consumer warpgroups a CTA: 2 (two tiles in flight at once) unless MLABENCH_MLA_DECODE_WARPGROUPS=1.
  static const int wgs = gpu::env_choice("MLABENCH_MLA_DECODE_WARPGROUPS", {"1", "2"}) == 0 ? 1 : 2;
  // FP8 pools: MlaDecodeParams::fp8_operands; AUTO the default form unless MLABENCH_MLA_FP8_DECODE=bf16|f16 says
  // otherwise (benchmarks compare the forms).
  static const MlaFp8Operands env_form = [] {
    const int form = gpu::env_choice("MLABENCH_MLA_FP8_DECODE", {"bf16", "f16"});
    return form == 0 ? MlaFp8Operands::BF16_VALUES : form == 1 ? MlaFp8Operands::F16 : kMlaFp8OperandsDefault;
  }();
  const MlaFp8Operands form = p.fp8_operands == MlaFp8Operands::AUTO ? env_form : p.fp8_operands;
  const int mode = !fp8 ? kBf16 : form == MlaFp8Operands::F16 ? kFp8F16 : kFp8InPlace;
  using Kernel = void (*)(HopperDecodeArgs);
  static constexpr Kernel kKernels[2][3] = {
      {mla_decode_hopper_kernel<1, kBf16>, mla_decode_hopper_kernel<1, kFp8InPlace>,
       mla_decode_hopper_kernel<1, kFp8F16>},
      {mla_decode_hopper_kernel<2, kBf16>, mla_decode_hopper_kernel<2, kFp8InPlace>,
       mla_decode_hopper_kernel<2, kFp8F16>}};
  static constexpr uint32_t kSmem[3] = {Layout<kBf16>::kSmemBytes, Layout<kFp8InPlace>::kSmemBytes,
                                        Layout<kFp8F16>::kSmemBytes};
  static std::atomic<uint64_t> opted_in[2][3]{};
  const Kernel kernel = kKernels[wgs - 1][mode];
  const uint32_t smem = kSmem[mode];
  gpu::opt_in_shared_memory(reinterpret_cast<const void*>(kernel), static_cast<int>(smem), opted_in[wgs - 1][mode]);
  a.groups = (p.n_heads + kHeads - 1) / kHeads;
  a.n_splits = n_splits;
  const int64_t n_items = int64_t{a.groups} * p.n_seqs * n_splits;
  MLABENCH_CHECK(n_items < (int64_t{1} << 31), "mla_decode_hopper: {} work items. HINT: fewer sequences a launch",
                 n_items);
  a.n_items = static_cast<int>(n_items);
  launch_pdl(kernel, dim3(static_cast<unsigned>(hopper_ctas(p.persistent_ctas, n_items, fp8))),
             dim3(wgs * 128 + 32), smem, s, a);
  if (n_splits > 1) launch_mla_decode_combine(p, n_splits, kKeys, s);
}

}  // namespace mlabench::kernels::cuda
