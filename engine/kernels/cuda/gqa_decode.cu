// MHA/GQA decode attention over the paged BF16 K/V pools: gqa_attention sends batches whose every sequence has
// one new row here (gqa_decode_applies, kernel_params.h). Twin: twin::gqa_attention.
//
// Decode reads each KV head's keys and values once for its `group` query heads (<= 8), ~4 FLOP per byte, so the
// kernel only has to keep enough bytes in flight:
//   - a CTA takes one sequence, one KV head and one split of the keys; its 4 warps work independently on
//     interleaved 16-key tiles (warp w: tiles w, w + 4, ...), each with its own cp.async ring (4 stages at
//     head_dim 128, 8 at 64: 24-28 KB in flight per warp), so the key loop has no block-wide barrier at all;
//   - the query's BF16 hi half sits in MMA rows 0-7 and its lo half in rows 8-15 (one row per query head of the
//     group), so one MMA gives both halves of q.k (a thread holds rows g and g + 8 and adds them); the softmax
//     weights p go the same way (hi rows 0-7, lo rows 8-15 of the A operand, straight from the score registers)
//     and the two output rows of a head are added at the end: float32-like accuracy at one MMA per tile step;
//   - K through ldmatrix, V through ldmatrix.trans; online softmax per warp in registers; the 4 warps' (max, sum,
//     output) are merged once at the end through shared memory.
// F8_E4M3 pools (--kv-cache-dtype fp8, kFp8; Fp8SlotLayout: a head's head_dim codes and one float32 scale): a key row's
// codes are copied into the back half of its BF16 row (bytes head_dim .. 2 head_dim) and its scale into the row's
// pad; each lane then widens one row in place (code c to BF16 exactly: every e4m3 value is a BF16 value; writing
// values 16 j .. 16 j + 15 never reaches codes not yet read), and the scales are folded in after the products: the
// scores times the key's K scale, the weights times its V scale before they enter P.V (the softmax sum takes them
// unscaled). Half the bytes, the same float32-like numerics as the twin's code x scale values.
#include <cuda_runtime.h>

#include <cstdint>

#include "core/check.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/decode_common.cuh"
#include "engine/kernels/cuda/fp8_device.cuh"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/cuda/pdl.cuh"

namespace mlabench::kernels::cuda {
namespace decode {
namespace {

constexpr int kKeys = 16;  // keys per warp tile (one k-step of P V)
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kSplitTile = kKeys * kWarps;  // split lengths are whole rounds of the 4 warps
constexpr int kMaxGroup = 8;

template <int HD>
struct Shape {
  static constexpr int kStages = HD == 64 ? 8 : 4;
  static constexpr int kStride = HD + 8;             // BF16 per smem row: rows 4 banks apart, ldmatrix conflict-free
  static constexpr int kChunks = HD / 8;             // 16-byte chunks per key row
  static constexpr int kSlot = 2 * kKeys * kStride;  // K rows, then V rows
  static constexpr size_t kRingBytes = size_t{kWarps} * kStages * kSlot * 2;
  static constexpr size_t kMergeBytes = (size_t{kWarps} * kMaxGroup * HD + 2 * kWarps * kMaxGroup) * 4;
  static constexpr size_t kSmem = kRingBytes > kMergeBytes ? kRingBytes : kMergeBytes;
  static_assert(2 * kKeys * kChunks % 32 == 0 && kSmem <= 227 * 1024, "whole chunks per lane; fits an SM");
};

// The 4 warps' (max, sum, unnormalised output) of each query head, merged into out (one split) or a partial.
template <int HD>
__device__ void merge_warps(const GqaAttentionParams& p, float* merge, int kvh, int seq, int row, int split,
                            int group) {
  const float* mo = merge;  // [warp][head][HD]
  const float* mm = merge + kWarps * kMaxGroup * HD;
  const float* ml = mm + kWarps * kMaxGroup;
  const int n_splits = static_cast<int>(gridDim.z);
  const int64_t n_partials = static_cast<int64_t>(n_splits) * p.batch.n_seqs * p.n_heads;
  for (int e = threadIdx.x; e < group * HD; e += kThreads) {
    const int h = e / HD, c = e - h * HD, head = kvh * group + h;
    float m_max = neg_inf();
#pragma unroll
    for (int w = 0; w < kWarps; ++w) m_max = fmaxf(m_max, mm[w * kMaxGroup + h]);
    float total = 0.0f, o = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float m = mm[w * kMaxGroup + h];
      const float wt = m == neg_inf() ? 0.0f : exp2f(m - m_max);  // a warp without keys adds nothing
      total += wt * ml[w * kMaxGroup + h];
      o += wt * mo[(w * kMaxGroup + h) * HD + c];
    }
    if (n_splits == 1) {
      p.out[row * p.ld_out + static_cast<int64_t>(head) * HD + c] = total > 0.0f ? o / total : 0.0f;
    } else {
      const int64_t idx = partial_index(split, seq, head, p.batch.n_seqs, p.n_heads);
      p.scratch[idx * HD + c] = o;
      if (c == 0) {
        p.scratch[n_partials * HD + idx * 2] = m_max;
        p.scratch[n_partials * HD + idx * 2 + 1] = total;
      }
    }
  }
}

// grid (n_kv_heads, n_seqs, n_splits); block 128.
template <int HD, bool kFp8>
__global__ void __launch_bounds__(kThreads, 3) gqa_decode_kernel(const GqaAttentionParams p) {
  using S = Shape<HD>;
  extern __shared__ __align__(128) unsigned char smem[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;
  // A programmatic dependent launch (pdl.cuh): queries and cache come from the kernels before; nothing is read first.
  griddep_wait();
  griddep_launch_dependents();
  const int kvh = blockIdx.x, seq = blockIdx.y, split = blockIdx.z, n_splits = gridDim.z;
  const int group = p.n_heads / p.n_kv_heads;
  const int row = p.batch.cu_q[seq];
  if (p.batch.cu_q[seq + 1] == row) return;  // no new row in this sequence
  const int kv_len = p.batch.kv_len[seq];
  const int split_len = decode_split_len(kv_len, n_splits, kSplitTile, p.fixed_splits);
  const int k_begin = split * split_len;
  if (split > 0 && k_begin >= kv_len) return;  // the merge reads only splits that hold keys
  const int k_end = min(kv_len, k_begin + split_len);
  const int n_tiles = k_end > k_begin ? (k_end - k_begin + kKeys - 1) / kKeys : 0;
  const int my_tiles = n_tiles > warp ? (n_tiles - warp + kWarps - 1) / kWarps : 0;
  uint16_t* ring = reinterpret_cast<uint16_t*>(smem) + static_cast<size_t>(warp) * S::kStages * S::kSlot;
  const int64_t width = int64_t{p.n_kv_heads} * HD;
  const uint16_t* k_pool = static_cast<const uint16_t*>(p.k_cache);
  const uint16_t* v_pool = static_cast<const uint16_t*>(p.v_cache);
  const Fp8SlotLayout l8 = p.fp8_layout();
  constexpr int kRowBytes = S::kStride * 2;

  // This warp's n-th tile; lane j < 16 looks up key j's slot once and the chunk loop borrows it by shuffle.
  auto load = [&](int n) {
    uint16_t* dst = ring + (n % S::kStages) * S::kSlot;
    const int base = k_begin + (warp + n * kWarps) * kKeys, my_pos = base + (lane & (kKeys - 1));
    if constexpr (kFp8) {  // codes into the back half of each row, the scale into its pad
      const long long my_slot = my_pos < k_end ? paged_slot(p.paged, seq, my_pos) : -1;
      unsigned char* rows = reinterpret_cast<unsigned char*>(dst);
#pragma unroll
      for (int i = 0; i < 2 * kKeys * (HD / 16) / 32; ++i) {
        const int c = lane + 32 * i;
        const bool is_v = c >= kKeys * (HD / 16);
        const int cc = is_v ? c - kKeys * (HD / 16) : c, j = cc / (HD / 16), part = cc - j * (HD / 16);
        const long long slot = __shfl_sync(0xffffffffu, my_slot, j);
        const auto* pool = static_cast<const unsigned char*>(is_v ? p.v_cache : p.k_cache);
        cp_async16(rows + ((is_v ? kKeys : 0) + j) * kRowBytes + HD + part * 16,
                   slot >= 0 ? pool + slot * l8.bytes() + kvh * HD + part * 16 : pool, slot >= 0);
      }
      const int j = lane & (kKeys - 1);
      const bool is_v = lane >= kKeys;
      const long long slot = __shfl_sync(0xffffffffu, my_slot, j);
      const auto* pool = static_cast<const unsigned char*>(is_v ? p.v_cache : p.k_cache);
      cp_async4(rows + ((is_v ? kKeys : 0) + j) * kRowBytes + 2 * HD,
                slot >= 0 ? pool + slot * l8.bytes() + l8.scale_offset() + 4 * kvh : pool, slot >= 0);
      return;
    }
    const long long my_off = my_pos < k_end ? paged_slot(p.paged, seq, my_pos) * width + kvh * HD : -1;
#pragma unroll
    for (int i = 0; i < 2 * kKeys * S::kChunks / 32; ++i) {
      const int c = lane + 32 * i;
      const bool is_v = c >= kKeys * S::kChunks;  // compile-time per i once unrolled
      const int cc = is_v ? c - kKeys * S::kChunks : c, j = cc / S::kChunks, part = cc - j * S::kChunks;
      const long long off = __shfl_sync(0xffffffffu, my_off, j);
      const uint16_t* pool = is_v ? v_pool : k_pool;
      cp_async16(dst + ((is_v ? kKeys : 0) + j) * S::kStride + part * 8, off >= 0 ? pool + off + part * 8 : pool,
                 off >= 0);
    }
  };
#pragma unroll
  for (int n = 0; n < S::kStages - 1; ++n) {
    if (n < my_tiles) load(n);
    cp_async_commit();
  }

  // Query head kvh * group + g: hi in row g, lo in row g + 8 of each k-step's A fragment.
  uint32_t q[HD / 16][4];
  {
    const float* qrow = p.q + row * p.ld_q + static_cast<int64_t>(kvh * group + g) * HD + 2 * tig;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      float x[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      if (g < group) {
        x[0] = qrow[kk * 16];
        x[1] = qrow[kk * 16 + 1];
        x[2] = qrow[kk * 16 + 8];
        x[3] = qrow[kk * 16 + 9];
      }
      split_pack(x[0], x[1], q[kk][0], q[kk][1]);
      split_pack(x[2], x[3], q[kk][2], q[kk][3]);
    }
  }

  const float scale_log2 = p.scale * kLog2e;
  const int k_row = (lane & 7) + (lane >> 4) * 8, k_col = ((lane >> 3) & 1) * 8;  // K: 2 key tiles x 2 k-halves
  const int v_row = (lane & 7) + ((lane >> 3) & 1) * 8, v_col = (lane >> 4) * 8;  // V.trans: 2 k-halves x 2 n-tiles
  float o[HD / 8][4] = {};
  float m = neg_inf(), l = 0.0f;  // head g's running max (log2 units) and this lane's share of the sum

  for (int n = 0; n < my_tiles; ++n) {
    cp_async_wait<S::kStages - 2>();
    __syncwarp();  // every lane's copies of tile n visible; tile n - 1 consumed, its slot refillable
    if (n + S::kStages - 1 < my_tiles) load(n + S::kStages - 1);
    cp_async_commit();
    const uint16_t* ks = ring + (n % S::kStages) * S::kSlot;
    const uint16_t* vs = ks + kKeys * S::kStride;
    // FP8: the scale of key r of the tile's K (V) rows, in the row's pad.
    auto k_scale = [&](int r) { return *reinterpret_cast<const float*>(reinterpret_cast<const unsigned char*>(ks) + r * kRowBytes + 2 * HD); };
    auto v_scale = [&](int r) { return *reinterpret_cast<const float*>(reinterpret_cast<const unsigned char*>(vs) + r * kRowBytes + 2 * HD); };
    if constexpr (kFp8) {  // lane r widens row r (K rows 0-15, V rows 16-31) in place
      unsigned char* row_p = reinterpret_cast<unsigned char*>(ring + (n % S::kStages) * S::kSlot) + lane * kRowBytes;
#pragma unroll
      for (int j = 0; j < HD / 16; ++j) {
        const uint4 codes = *reinterpret_cast<const uint4*>(row_p + HD + 16 * j);
        float f[16];
        fp8::decode16(codes, f);
        uint32_t w[8];
#pragma unroll
        for (int e = 0; e < 8; ++e) w[e] = bf16_bits(f[2 * e]) | bf16_bits(f[2 * e + 1]) << 16;  // exact
        *reinterpret_cast<uint4*>(row_p + 32 * j) = make_uint4(w[0], w[1], w[2], w[3]);
        *reinterpret_cast<uint4*>(row_p + 32 * j + 16) = make_uint4(w[4], w[5], w[6], w[7]);
      }
      __syncwarp();
    }

    float s[2][2][4] = {};  // [k-step parity][key tile][fragment]: two dependency chains per key tile
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      uint32_t b[4];
      ldmatrix_x4(b, ks + k_row * S::kStride + kk * 16 + k_col);
      mma_bf16(s[kk & 1][0], q[kk], b[0], b[1]);
      mma_bf16(s[kk & 1][1], q[kk], b[2], b[3]);
    }
    const int base = k_begin + (warp + n * kWarps) * kKeys;
    float sc[2][2], mx = neg_inf();
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float v = s[0][nt][e] + s[0][nt][2 + e] + s[1][nt][e] + s[1][nt][2 + e];  // hi row + lo row
        if constexpr (kFp8) v *= k_scale(nt * 8 + 2 * tig + e);
        sc[nt][e] = base + nt * 8 + 2 * tig + e < k_end ? v * scale_log2 : neg_inf();
        mx = fmaxf(mx, sc[nt][e]);
      }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m, mx);  // finite: every tile holds at least one key
    const float alpha = exp2f(m - m_new);
    m = m_new;
    float pr[2][2];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) pr[nt][e] = exp2f(sc[nt][e] - m_new);
    l = l * alpha + (pr[0][0] + pr[0][1] + pr[1][0] + pr[1][1]);
    if constexpr (kFp8)  // the values' scales, folded into the weights (keys past the range: 0 x a zero-filled 0)
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) pr[nt][e] *= v_scale(nt * 8 + 2 * tig + e);
    uint32_t a[4];
    split_pack(pr[0][0], pr[0][1], a[0], a[1]);  // keys 2t, 2t+1: hi in row g, lo in row g + 8
    split_pack(pr[1][0], pr[1][1], a[2], a[3]);  // keys 2t+8, 2t+9
#pragma unroll
    for (int nt = 0; nt < HD / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[nt][e] *= alpha;
#pragma unroll
    for (int pair = 0; pair < HD / 16; ++pair) {
      uint32_t b[4];
      ldmatrix_x4_trans(b, vs + v_row * S::kStride + pair * 16 + v_col);
      mma_bf16(o[2 * pair], a, b[0], b[1]);
      mma_bf16(o[2 * pair + 1], a, b[2], b[3]);
    }
  }
  cp_async_wait<0>();
  l += __shfl_xor_sync(0xffffffffu, l, 1);
  l += __shfl_xor_sync(0xffffffffu, l, 2);

  __syncthreads();  // every warp is done with its ring: the merge reuses the memory
  float* merge = reinterpret_cast<float*>(smem);
  if (g < group) {
    float* mo = merge + (warp * kMaxGroup + g) * HD;
#pragma unroll
    for (int nt = 0; nt < HD / 8; ++nt) {
      mo[nt * 8 + 2 * tig] = o[nt][0] + o[nt][2];
      mo[nt * 8 + 2 * tig + 1] = o[nt][1] + o[nt][3];
    }
    if (tig == 0) {
      merge[kWarps * kMaxGroup * HD + warp * kMaxGroup + g] = m;
      merge[kWarps * kMaxGroup * HD + kWarps * kMaxGroup + warp * kMaxGroup + g] = l;
    }
  }
  __syncthreads();
  merge_warps<HD>(p, merge, kvh, seq, row, split, group);
}

template <int HD>
void launch(const GqaAttentionParams& p, int n_splits, cudaStream_t s) {
  auto* kernel = p.cache_type == DType::F8_E4M3 ? gqa_decode_kernel<HD, true> : gqa_decode_kernel<HD, false>;
  MLABENCH_CUDA(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(Shape<HD>::kSmem)));
  const dim3 grid(static_cast<unsigned>(p.n_kv_heads), static_cast<unsigned>(p.batch.n_seqs),
                  static_cast<unsigned>(n_splits));
  launch_pdl(kernel, grid, dim3(kThreads), Shape<HD>::kSmem, s, p);
  MLABENCH_CUDA(cudaGetLastError());
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

void gqa_decode_attention(const GqaAttentionParams& p, cudaStream_t s) {
  MLABENCH_CHECK(gqa_decode_applies(p),
                 "gqa decode: batch or shapes outside gqa_decode_applies. HINT: call "
                 "gqa_attention, which dispatches");
  MLABENCH_CHECK(aligned16(p.k_cache) && aligned16(p.v_cache),
                 "gqa_attention: K/V pools are not 16-byte aligned. HINT: layer pools must start on a 16-byte "
                 "boundary (tiles are copied in 16-byte chunks)");
  MLABENCH_CHECK(p.paged.block_size > 0 && p.paged.block_tables != nullptr && p.paged.max_blocks > 0,
                 "gqa_attention: paged cache has block_size {}, max_blocks {}. HINT: fill PagedCache from the "
                 "cache manager of this batch",
                 p.paged.block_size, p.paged.max_blocks);
  int n_splits = gqa_attention_splits(p);
  check_fixed_splits_scratch(p.fixed_splits, p.scratch, "gqa_attention (decode)");
  if (n_splits > 1 && p.scratch == nullptr) n_splits = 1;
  if (n_splits > 1)
    MLABENCH_CHECK(p.scratch_floats >= gqa_attention_scratch_floats(p) && aligned16(p.scratch),
                   "gqa_attention: scratch holds {} floats, the split-KV plan needs {} (16-byte aligned). HINT: "
                   "size it with gqa_attention_scratch_floats() (kernel_params.h) or pass scratch = nullptr",
                   p.scratch_floats, gqa_attention_scratch_floats(p));
  if (p.head_dim == 128)
    launch<128>(p, n_splits, s);
  else
    launch<64>(p, n_splits, s);
  if (n_splits > 1) {
    CombineArgs c;
    c.scratch = p.scratch;
    c.n_splits = n_splits;
    c.tile = kSplitTile;
    c.fixed = p.fixed_splits;
    c.n_seqs = p.batch.n_seqs;
    c.n_heads = p.n_heads;
    c.dv = p.head_dim;
    c.kv_len = p.batch.kv_len;
    c.cu_q = p.batch.cu_q;
    c.out = p.out;
    c.ld_out = p.ld_out;
    launch_decode_combine(c, s);
  }
}

}  // namespace decode
}  // namespace mlabench::kernels::cuda
