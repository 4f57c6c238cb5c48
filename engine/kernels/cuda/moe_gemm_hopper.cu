// Grouped expert GEMM for prefill-sized row counts on Hopper (sm_90a; twin: engine/kernels/twin/moe_gemm.cpp):
// for each expert e, rows [offsets[e], offsets[e + 1]) of x times w_e^T, the counts read on the device (no host
// synchronisation), with three epilogues: STORE writes y in float32 (the down projection), STORE_DT the same rows
// rounded to BF16 (the engine's BF16 down projection: half the bytes written here and read by the combine), SWIGLU
// computes the gate and up projections of the same rows in one tile and writes silu(gate) * up in BF16 (the first
// half of the expert FFN; its float32 [rows, 2n] never goes to memory, and the silu_mul pass over it is gone).
//
// Why this shape (floors for V2-Lite's 16K-token prefill chunk: 98,304 expert rows, ~1,536 an expert, 1.7 TFLOP
// for both projections, 2.4 ms at the GEMM rate):
//   - a CTA computes a 128-row x 256-column tile: two consumer warpgroups of 64 x 256 (m64n256k16 wgmma, 128
//     float32 accumulators a thread), fed by a producer warpgroup whose one thread issues TMA copies (x's 128 x 64
//     box, two 128 x 64 boxes of weight rows, the 128-byte swizzle the wgmma descriptors read) into a 4-stage ring
//     of 48 KB stages with full / empty mbarriers: the tensor cores never wait on address arithmetic;
//   - CTAs are numbered row tile major, column tile minor, and row tiles expert by expert: the ~132 CTAs resident at
//     once cover one expert's rows and all of its columns, so its weights (11.5 MB for gate/up) come from HBM once
//     and x's rows once; a CTA finds its expert by a warp-wide scan of the offsets;
//   - rows of a tile past its expert's count belong to the next expert (or read as zeros past rows_bound): they are
//     multiplied and never stored;
//   - at decode batches an expert holds a few dozen rows, so a 128-row tile is mostly such padding (12-24 rows an
//     expert at batch 128-256 of V2-Lite): tile_rows = 64 halves the MMAs a tile computes for the same weight bytes,
//     the two consumer warpgroups then splitting the tile's weight rows instead of its x rows.
// F8_E4M3 operands (issue 20; twin: the same file's FP8 path) take moe_gemm_hopper_fp8_kernel, below: the same
// grid and producer on e4m3 codes, one 128-value scale group a k tile, each group's QGMMA sum folded into a float32
// accumulator with its x and w scales.
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <type_traits>

#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/hopper.h"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/cuda/tma.cuh"
#include "engine/kernels/cuda/wgmma.h"
#include "engine/kernels/twin/moe_checks.h"

namespace mlabench::kernels::cuda {
namespace {

constexpr int kBN = 256, kBK = 64;
constexpr int kThreads = 384;  // warpgroup 0 copies; warpgroups 1 and 2 multiply
constexpr uint32_t kBBytes = kBN * kBK * 2;
// A tile of BM rows (128, or 64 where experts hold few rows: decode batches): x's BM x 64 box and 256 weight rows a
// stage; 64-row stages are smaller, so the ring holds one more.
template <int BM>
struct TileShape {
  static constexpr int kStages = BM == 128 ? 4 : 5;
  static constexpr uint32_t kABytes = BM * kBK * 2, kStageBytes = kABytes + kBBytes;
  static constexpr int kSmemBytes = kStages * kStageBytes + 1024 + 16 * kStages;  // + alignment + barriers
  static_assert(BM == 64 || BM == 128, "64- or 128-row tiles");
  static_assert(kSmemBytes <= 227 * 1024, "fits an SM");
};

struct HopperArgs {
  CUtensorMap map_x;  // x: [rows_bound, k], boxes of 64 x BM
  CUtensorMap map_w;  // every expert's weight rows: [n_experts * w_rows, k], boxes of 64 x 128
  float* y;           // STORE
  int64_t ld_y;
  uint16_t* act;  // SWIGLU, BF16
  int64_t ld_act;
  const int32_t* offsets;
  int32_t n_experts, n_tiles, k_tiles;
  int32_t n_ctas;     // row tiles (an upper bound) x column tiles: the FP8 kernel's persistent CTAs walk them
  int32_t n, w_rows;  // output columns; weight rows an expert holds (expert_stride / k)
  int64_t max_rows;
  // F8_E4M3 (moe_gemm_hopper_fp8_kernel): x's 1 x 128 group scales (rows major) and each expert's 128 x 128 grid.
  const float* x_scale;
  const float* w_scale;
  int64_t x_scale_ld, w_scale_ld, w_scale_expert_stride;
};

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Row tile m_tile of the concatenated experts (each expert's rows in tiles of BM, experts in order): its expert,
// first row and row count, in every lane, or expert -1 past the last tile. One warp: lanes take 32 experts at a
// time and scan their tile counts. `offsets`: a.offsets or a shared-memory copy of them.
template <int BM>
__device__ int3 find_row_tile(const HopperArgs& a, const int32_t* offsets, int m_tile) {
  const int lane = threadIdx.x & 31;
  int before = 0;  // tiles of the experts already scanned
  for (int e0 = 0; e0 < a.n_experts; e0 += 32) {
    const int e = e0 + lane;
    int64_t r0 = 0, count = 0;
    if (e < a.n_experts) {
      r0 = offsets ? offsets[e] : 0;
      count = offsets ? offsets[e + 1] - r0 : a.max_rows;  // no offsets: one expert of max_rows rows
      count = count < a.max_rows ? count : a.max_rows;
    }
    const int tiles = static_cast<int>((count + BM - 1) / BM);
    int incl = tiles;
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
      const int v = __shfl_up_sync(0xffffffffu, incl, d);
      if (lane >= d) incl += v;
    }
    const int first = before + incl - tiles;
    const unsigned hit = __ballot_sync(0xffffffffu, m_tile >= first && m_tile < before + incl);
    if (hit != 0) {
      const int src = __ffs(hit) - 1;
      const int64_t m0 = static_cast<int64_t>(m_tile - first) * BM;
      const int row = static_cast<int>(r0 + m0), rows = static_cast<int>(count - m0 < BM ? count - m0 : BM);
      return make_int3(e0 + src, __shfl_sync(0xffffffffu, row, src), __shfl_sync(0xffffffffu, rows, src));
    }
    before += __shfl_sync(0xffffffffu, incl, 31);
  }
  return make_int3(-1, 0, 0);
}

// The ring's full (one producer arrival a stage) and empty (the 8 consumer warps) barriers, by thread 0; the caller
// synchronises the CTA before anyone waits on them.
template <int kStages>
__device__ __forceinline__ void init_ring(uint32_t full, uint32_t empty) {
  for (int s = 0; s < kStages; ++s) {
    tma::mbar_init(full + 8 * s, 1);
    tma::mbar_init(empty + 8 * s, 8);
  }
  tma::mbar_init_fence();
}

// The BF16 kernel's start: warp 0 finds the CTA's row tile and initialises the ring; then the CTA synchronises.
template <int BM, int kStages>
__device__ __forceinline__ void start_tile(const HopperArgs& a, int m_tile, int (&tile)[3], uint32_t full,
                                           uint32_t empty) {
  if (threadIdx.x < 32) {
    const int3 t = find_row_tile<BM>(a, a.offsets, m_tile);
    if (threadIdx.x == 0) {
      tile[0] = t.x, tile[1] = t.y, tile[2] = t.z;
      init_ring<kStages>(full, empty);
    }
  }
  __syncthreads();
}

// silu(g) * u exactly as silu_mul's kernel and twin compute it.
__device__ __forceinline__ float silu_times(float g, float u) {
  return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
}

// The consumers' k loop: wait for a stage, issue its MMAs (mma(stage address)), hand the previous stage back.
template <int BM, class Mma>
__device__ __forceinline__ void consume_stages(const HopperArgs& a, uint32_t ring, uint32_t full, uint32_t empty,
                                               int lane, Mma&& mma) {
  using S = TileShape<BM>;
  for (int kt = 0; kt < a.k_tiles; ++kt) {
    const int s = kt % S::kStages;
    tma::mbar_wait(full + 8 * s, (kt / S::kStages) & 1);
    wgmma::fence();
    mma(ring + s * S::kStageBytes);
    wgmma::commit();
    wgmma::wait_one();  // tile kt - 1's MMAs are done: its stage goes back to the producer
    if (kt > 0 && lane == 0) tma::mbar_arrive(empty + 8 * ((kt - 1) % S::kStages));
  }
  wgmma::wait_all();
}

// Accumulator fragment of a 64 x N wgmma: n8 block j holds (row g, columns 8j + 2q, + 1) in acc[4j], acc[4j + 1] and
// row g + 8 in acc[4j + 2], acc[4j + 3], with (g, q) = (lane / 4, lane % 4) and the warp's 16 rows at 16 (warp % 4).
// SWIGLU: gate block j pairs with up block j + n_blocks; its columns start at col0.
template <int kBlocks>
__device__ __forceinline__ void store_swiglu(const HopperArgs& a, const float* gate, const float* up, int r_warp,
                                             int rows, int64_t row0, int col0, int q) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = r_warp + 8 * h;
    if (r >= rows) continue;
    uint16_t* out = a.act + (row0 + r) * a.ld_act;
#pragma unroll
    for (int j = 0; j < kBlocks; ++j) {
      const int col = col0 + 8 * j + 2 * q;
      if (col >= a.n) continue;
      const float o0 = silu_times(gate[4 * j + 2 * h], up[4 * j + 2 * h]);
      const float o1 = silu_times(gate[4 * j + 2 * h + 1], up[4 * j + 2 * h + 1]);
      *reinterpret_cast<__nv_bfloat162*>(out + col) = __floats2bfloat162_rn(o0, o1);
    }
  }
}

// STORE: float32 rows of y; kToBf16 (STORE_DT): the same values rounded to BF16 (nearest even) in act.
template <int kBlocks, bool kToBf16>
__device__ __forceinline__ void store_rows(const HopperArgs& a, const float* acc, int r_warp, int rows, int64_t row0,
                                           int col0, int q) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = r_warp + 8 * h;
    if (r >= rows) continue;
#pragma unroll
    for (int j = 0; j < kBlocks; ++j) {
      const int col = col0 + 8 * j + 2 * q;
      if (col >= a.n) continue;
      if constexpr (kToBf16)
        *reinterpret_cast<__nv_bfloat162*>(a.act + (row0 + r) * a.ld_act + col) =
            __floats2bfloat162_rn(acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1]);
      else
        *reinterpret_cast<float2*>(a.y + (row0 + r) * a.ld_y + col) =
            make_float2(acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1]);
    }
  }
}

// grid: row tiles (an upper bound) x column tiles, column tile fastest; 384 threads. A stage holds x's BM rows, then
// 256 weight rows (SWIGLU: this column tile's 128 gate rows, then its 128 up rows).
//   BM 128: consumer warpgroup cw multiplies rows [64 cw, 64 cw + 64) by all 256 (m64n256k16).
//   BM 64: both multiply the 64 rows, each by half of the weight rows: STORE columns [128 cw, + 128) (m64n128k16);
//   SWIGLU gate columns [64 cw, + 64) and their up columns (two m64n64k16), so gate and up stay in one thread.
template <MoeGemmEpilogue kEpi, int BM>
__global__ void __launch_bounds__(kThreads, 1) moe_gemm_hopper_kernel(const __grid_constant__ HopperArgs a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using S = TileShape<BM>;
  constexpr bool kSwiglu = kEpi == MoeGemmEpilogue::SWIGLU, kToBf16 = kEpi == MoeGemmEpilogue::STORE_DT;
  extern __shared__ __align__(1024) unsigned char moe_hopper_smem[];
  __shared__ int tile[3];  // expert, first row, rows
  const uint32_t ring = (smem_u32(moe_hopper_smem) + 1023u) & ~1023u;
  const uint32_t full = ring + S::kStages * S::kStageBytes, empty = full + 8 * S::kStages;  // stage s: + 8 s
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int m_tile = static_cast<int>(blockIdx.x) / a.n_tiles, n_tile = static_cast<int>(blockIdx.x) % a.n_tiles;
  start_tile<BM, S::kStages>(a, m_tile, tile, full, empty);
  const int expert = tile[0];
  if (expert < 0) return;  // past the last row tile: uniform over the CTA
  const int row0 = tile[1], rows = tile[2];
  // The warpgroup index through a shuffle, so ptxas sees it warp-uniform and keeps the wgmma unserialized.
  const int wg = __shfl_sync(0xffffffffu, tid / 128, 0);

  if (wg == 0) {  // producer
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
    if (tid == 0) {
      // SWIGLU: the gate's 128 rows of this column tile, then the up projection's; STORE: 256 rows in two boxes.
      const int w0 = expert * a.w_rows + n_tile * (kSwiglu ? kBN / 2 : kBN);
      const int w1 = kSwiglu ? w0 + a.n : w0 + kBN / 2;
      for (int kt = 0; kt < a.k_tiles; ++kt) {
        const int s = kt % S::kStages;
        if (kt >= S::kStages) tma::mbar_wait(empty + 8 * s, ((kt / S::kStages) - 1) & 1);
        const uint32_t st = ring + s * S::kStageBytes, bar = full + 8 * s;
        tma::mbar_arrive_expect_tx(bar, S::kStageBytes);
        tma::load_2d(st, &a.map_x, kt * kBK, row0, bar);
        tma::load_2d(st + S::kABytes, &a.map_w, kt * kBK, w0, bar);
        tma::load_2d(st + S::kABytes + kBBytes / 2, &a.map_w, kt * kBK, w1, bar);
      }
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
  const int cw = wg - 1;
  const int g = lane >> 2, q = lane & 3;
  auto desc = [](uint32_t addr) { return wgmma::desc_sw128(addr, 16, 1024); };
  if constexpr (BM == 128) {
    float acc[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) acc[i] = 0.0f;
    consume_stages<BM>(a, ring, full, empty, lane, [&](uint32_t st) {
#pragma unroll
      for (int kk = 0; kk < kBK / 16; ++kk)
        wgmma::wgmma_ss_n256(acc, desc(st + cw * (64 * 128) + kk * 32), desc(st + S::kABytes + kk * 32), true);
    });
    wgmma::fence_regs(acc);
    const int r_warp = cw * 64 + (warp & 3) * 16 + g;
    if constexpr (kSwiglu)
      store_swiglu<kBN / 16>(a, acc, acc + 4 * (kBN / 16), r_warp, rows, row0, n_tile * (kBN / 2), q);
    else
      store_rows<kBN / 8, kToBf16>(a, acc, r_warp, rows, row0, n_tile * kBN, q);
  } else if constexpr (kSwiglu) {
    float gate[32], up[32];
#pragma unroll
    for (int i = 0; i < 32; ++i) gate[i] = up[i] = 0.0f;
    const uint32_t gate_rows = S::kABytes + cw * (64 * 128), up_rows = gate_rows + kBBytes / 2;
    consume_stages<BM>(a, ring, full, empty, lane, [&](uint32_t st) {
#pragma unroll
      for (int kk = 0; kk < kBK / 16; ++kk) {
        wgmma::wgmma_ss_n64(gate, desc(st + kk * 32), desc(st + gate_rows + kk * 32), true);
        wgmma::wgmma_ss_n64(up, desc(st + kk * 32), desc(st + up_rows + kk * 32), true);
      }
    });
    wgmma::fence_regs(gate);
    wgmma::fence_regs(up);
    store_swiglu<8>(a, gate, up, (warp & 3) * 16 + g, rows, row0, n_tile * (kBN / 2) + cw * 64, q);
  } else {
    float acc[64];
#pragma unroll
    for (int i = 0; i < 64; ++i) acc[i] = 0.0f;
    const uint32_t w_rows = S::kABytes + cw * (128 * 128);
    consume_stages<BM>(a, ring, full, empty, lane, [&](uint32_t st) {
#pragma unroll
      for (int kk = 0; kk < kBK / 16; ++kk)
        wgmma::wgmma_ss_n128(acc, desc(st + kk * 32), desc(st + w_rows + kk * 32), true);
    });
    wgmma::fence_regs(acc);
    store_rows<16, kToBf16>(a, acc, (warp & 3) * 16 + g, rows, row0, n_tile * kBN + cw * 128, q);
  }
#else
  __trap();  // built only for sm_90a; moe_grouped_gemm_hopper_supported is false elsewhere
#endif
}

// ---- FP8 (e4m3 W8A8 with DeepSeek-V3's block scales; issue 20) ------------------------------------------------
// The same grid, tile search, producer and epilogues as the BF16 kernel, on e4m3 codes: a k tile is 128 bytes, one
// sw128 row and exactly one scale group. Each consumer warpgroup multiplies its 64 x rows by 128 weight rows
// (four m64n128k32 QGMMA a tile) into a fresh float32 partial (two alternate, so the next tile's MMAs run during
// this fold), waits for it, hands the stage back, and adds it to its accumulator times x_scale[row, g] *
// w_scale[block, g]. Summing one group at a time is DeepSeek-V3's promotion:
// Hopper's FP8 MMA keeps about 14 bits of a running sum, so no sum spans more than 128 products. (Where float32
// group sums are wanted, --precision f32, moe_grouped_gemm takes the mma.sync FP8 kernel: fp8_exact_sums.)
//   BM 128: warpgroup cw takes x rows [64 cw, + 64) and the tile's 128 weight rows (STORE: 128 columns; SWIGLU: 64
//   gate rows then the matching 64 up rows, so one m64n128 holds gate in columns 0-63 and up in 64-127);
//   BM 64: both take the 64 x rows, warpgroup cw the weight rows [128 cw, + 128) of the tile's 256 (STORE: 256
//   columns; SWIGLU: 128 gate j's, warpgroup cw's 64 gate rows then their 64 up rows).
// A warpgroup's 128 weight rows lie in one 128-row scale block (STORE: they start on a multiple of 128 of the
// expert's rows) or in two, gate and up (SWIGLU: 64-row halves starting on multiples of 64, n % 64 == 0).
template <int BM>
struct Fp8TileShape {
  static constexpr int kWRows = BM == 128 ? 128 : 256;  // weight rows a stage (both warpgroups')
  static constexpr int kStages = BM == 128 ? 6 : 5;
  static constexpr uint32_t kABytes = BM * 128, kStageBytes = kABytes + kWRows * 128;
  static constexpr int kSmemBytes = kStages * kStageBytes + 1024 + 16 * kStages;
  static_assert(kSmemBytes + 4 * 512 <= 227 * 1024, "fits an SM beside the offsets' copy");
};
constexpr int kCachedOffsets = 512;  // experts + 1 the FP8 kernel keeps in shared memory (DeepSeek-V2: 161)

// The producer warp of the FP8 kernel: the CTA's tiles in turn (the consumers walk the same ones), each k tile's
// x box (BM x 128) and weight rows in boxes of 64 into the ring; `it` counts k tiles over all of them, so the ring's
// stages and phases run on across tiles and the next tile's operands arrive while the consumers store this one.
template <MoeGemmEpilogue kEpi, int BM>
__device__ __forceinline__ void produce_fp8(const HopperArgs& a, const int32_t* offsets, uint32_t ring,
                                            uint32_t full, uint32_t empty) {
  using S = Fp8TileShape<BM>;
  constexpr bool kSwiglu = kEpi == MoeGemmEpilogue::SWIGLU;
  constexpr int kTileCols = kSwiglu ? S::kWRows / 2 : S::kWRows;
  uint32_t it = 0;
  for (int t = static_cast<int>(blockIdx.x); t < a.n_ctas; t += static_cast<int>(gridDim.x), it += a.k_tiles) {
    const int3 tile = find_row_tile<BM>(a, offsets, t / a.n_tiles);
    if (tile.x < 0) return;  // tiles are in order: every later one lies past the last expert too
    if ((threadIdx.x & 31) != 0) continue;
    const int e0 = tile.x * a.w_rows, col_tile0 = (t % a.n_tiles) * kTileCols;
    for (int kt = 0; kt < a.k_tiles; ++kt) {
      const uint32_t i = it + kt, s = i % S::kStages;
      if (i >= S::kStages) tma::mbar_wait(empty + 8 * s, ((i / S::kStages) - 1) & 1);
      const uint32_t st = ring + s * S::kStageBytes, bar = full + 8 * s;
      tma::mbar_arrive_expect_tx(bar, S::kStageBytes);
      tma::load_2d(st, &a.map_x, kt * 128, tile.y, bar);
#pragma unroll
      for (int b = 0; b < S::kWRows / 64; ++b) {
        // STORE: rows col_tile0 + 64 b; SWIGLU: 128-row chunk b / 2 holds gate rows col_tile0 + 64 (b / 2), then
        // the same j's up rows at n + j.
        const int w = kSwiglu ? col_tile0 + 64 * (b / 2) + (b % 2) * a.n : col_tile0 + 64 * b;
        tma::load_2d(st + S::kABytes + b * 64 * 128, &a.map_w, kt * 128, e0 + w, bar);
      }
    }
  }
}

// One tile of the FP8 kernel's consumers (warpgroup cw of 2): its k tiles from ring position it0, then its stores.
template <MoeGemmEpilogue kEpi, int BM>
__device__ __forceinline__ void consume_fp8_tile(const HopperArgs& a, int3 tile, int n_tile, uint32_t it0,
                                                 uint32_t ring, uint32_t full, uint32_t empty, int cw) {
  using S = Fp8TileShape<BM>;
  constexpr bool kSwiglu = kEpi == MoeGemmEpilogue::SWIGLU, kToBf16 = kEpi == MoeGemmEpilogue::STORE_DT;
  const int expert = tile.x, row0 = tile.y, rows = tile.z;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
  const int r_warp = (BM == 128 ? cw * 64 : 0) + (warp & 3) * 16 + g;  // this thread's rows: r_warp, r_warp + 8
  const uint32_t a_off = BM == 128 ? cw * (64 * 128) : 0, b_off = S::kABytes + (BM == 128 ? 0 : cw * (128 * 128));
  // This warpgroup's first output column (SWIGLU: gate j) and the scale block rows of its weight rows.
  const int col0 = n_tile * (kSwiglu ? S::kWRows / 2 : S::kWRows) + (BM == 128 ? 0 : cw * (kSwiglu ? 64 : 128));
  const bool cols_live = col0 < a.n;  // BM 64 STORE: the second warpgroup's columns may lie past n
  const float* ws = a.w_scale + expert * a.w_scale_expert_stride;
  const float* ws_lo = ws + (col0 / 128) * a.w_scale_ld;
  const float* ws_hi = kSwiglu ? ws + ((a.n + col0) / 128) * a.w_scale_ld : ws_lo;
  const float* xs0 = r_warp < rows ? a.x_scale + (row0 + r_warp) * a.x_scale_ld : nullptr;
  const float* xs1 = r_warp + 8 < rows ? a.x_scale + (row0 + r_warp + 8) * a.x_scale_ld : nullptr;
  auto desc = [](uint32_t addr) { return wgmma::desc_sw128(addr, 16, 1024); };
  // Two partials: k tile kt + 1's QGMMA run while kt's partial is folded (one group in flight behind the fold), so
  // the tensor cores do not wait for the fold. A group's scales are read when its MMAs are issued.
  float acc[64], part0[64], part1[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = 0.0f;
  float scales[2][4];  // [buffer][sx0 sw_lo, sx1 sw_lo, sx0 sw_hi, sx1 sw_hi]
  auto issue = [&](int kt, float (&part)[64], float (&sc)[4]) {
    const uint32_t i = it0 + kt, s = i % S::kStages;
    // Rows past the tile's count and columns past n scale by 0.
    const float sx0 = xs0 ? __ldg(xs0 + kt) : 0.0f, sx1 = xs1 ? __ldg(xs1 + kt) : 0.0f;
    const float sw_lo = cols_live ? __ldg(ws_lo + kt) : 0.0f, sw_hi = cols_live ? __ldg(ws_hi + kt) : 0.0f;
    sc[0] = sx0 * sw_lo, sc[1] = sx1 * sw_lo, sc[2] = sx0 * sw_hi, sc[3] = sx1 * sw_hi;
    tma::mbar_wait(full + 8 * s, (i / S::kStages) & 1);
    const uint32_t st = ring + s * S::kStageBytes;
    wgmma::fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
      wgmma::wgmma_ss_n128_e4m3(part, desc(st + a_off + kk * 32), desc(st + b_off + kk * 32), kk > 0);
    wgmma::commit();
  };
  auto fold = [&](int kt, float (&part)[64], const float (&sc)[4]) {
    wgmma::fence_regs(part);
    if (lane == 0) tma::mbar_arrive(empty + 8 * ((it0 + kt) % S::kStages));  // operands read: back to the producer
#pragma unroll
    for (int j = 0; j < 16; ++j)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float f = kSwiglu && j >= 8 ? sc[2 + h] : sc[h];
        acc[4 * j + 2 * h] = fmaf(part[4 * j + 2 * h], f, acc[4 * j + 2 * h]);
        acc[4 * j + 2 * h + 1] = fmaf(part[4 * j + 2 * h + 1], f, acc[4 * j + 2 * h + 1]);
      }
  };
  // Straight-line pairs of tiles (no branch between an issue and its wait: ptxas would otherwise move in-flight
  // accumulators at the join and serialize the MMAs), then the one or two tiles left.
  issue(0, part0, scales[0]);
  int kt = 0;
  for (; kt + 2 < a.k_tiles; kt += 2) {
    issue(kt + 1, part1, scales[1]);
    wgmma::wait_one();  // kt's group is done; kt + 1's runs on during the fold
    fold(kt, part0, scales[0]);
    issue(kt + 2, part0, scales[0]);
    wgmma::wait_one();
    fold(kt + 1, part1, scales[1]);
  }
  if (kt + 1 < a.k_tiles) {
    issue(kt + 1, part1, scales[1]);
    wgmma::wait_one();
    fold(kt, part0, scales[0]);
    wgmma::wait_all();
    fold(kt + 1, part1, scales[1]);
  } else {
    wgmma::wait_all();
    fold(kt, part0, scales[0]);
  }
  if constexpr (kSwiglu)
    store_swiglu<8>(a, acc, acc + 32, r_warp, rows, row0, col0, q);
  else
    store_rows<16, kToBf16>(a, acc, r_warp, rows, row0, col0, q);
}

// Persistent: a CTA an SM (the launcher's grid), each walking tiles blockIdx.x, + gridDim.x, ... of the BF16
// kernel's order (row tile major, column tile minor; the CTAs resident at once still share one expert's weights).
// A tile's main loop is short (2 MFLOP a k tile, 11-16 k tiles at V2-Lite's shapes), so one CTA a tile paid its
// start, the ring's first fill and its stores on every tile; here the producer runs ahead into the next tile.
// The offsets are copied to shared memory once: every warp scans them once a tile.
template <MoeGemmEpilogue kEpi, int BM>
__global__ void __launch_bounds__(kThreads, 1) moe_gemm_hopper_fp8_kernel(const __grid_constant__ HopperArgs a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using S = Fp8TileShape<BM>;
  extern __shared__ __align__(1024) unsigned char moe_hopper_smem[];
  __shared__ int32_t offsets_smem[kCachedOffsets];
  const uint32_t ring = (smem_u32(moe_hopper_smem) + 1023u) & ~1023u;
  const uint32_t full = ring + S::kStages * S::kStageBytes, empty = full + 8 * S::kStages;  // stage s: + 8 s
  const int tid = threadIdx.x;
  const int32_t* offsets = a.offsets;
  if (offsets != nullptr && a.n_experts < kCachedOffsets) {
    for (int i = tid; i <= a.n_experts; i += kThreads) offsets_smem[i] = a.offsets[i];
    offsets = offsets_smem;
  }
  if (tid == 0) init_ring<S::kStages>(full, empty);
  __syncthreads();
  const int wg = __shfl_sync(0xffffffffu, tid / 128, 0);
  if (wg == 0) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
    if (tid < 32) produce_fp8<kEpi, BM>(a, offsets, ring, full, empty);
    return;
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
  uint32_t it = 0;  // k tiles of earlier tiles: the ring position
  for (int t = static_cast<int>(blockIdx.x); t < a.n_ctas; t += static_cast<int>(gridDim.x), it += a.k_tiles) {
    const int3 tile = find_row_tile<BM>(a, offsets, t / a.n_tiles);  // each warp its own copy: uniform
    if (tile.x < 0) break;
    consume_fp8_tile<kEpi, BM>(a, tile, t % a.n_tiles, it, ring, full, empty, wg - 1);
  }
#else
  __trap();  // built only for sm_90a; moe_grouped_gemm_hopper_supported is false elsewhere
#endif
}

bool aligned(const void* ptr, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(ptr) % bytes == 0; }

}  // namespace

bool moe_grouped_gemm_hopper_supported(const MoeGroupedGemmParams& p) {
  const bool swiglu = p.epilogue == MoeGemmEpilogue::SWIGLU, fp8 = p.dtype == DType::F8_E4M3;
  if ((p.dtype != DType::BF16 && !fp8) || p.rows_bound <= 0 || p.k <= 0 || p.n <= 0 || p.n_experts <= 0) return false;
  if (p.tile_rows != 0 && p.tile_rows != 64 && p.tile_rows != 128) return false;
  const int64_t w_rows = p.expert_stride / p.k, elem = fp8 ? 1 : 2;
  // TMA: 16-byte aligned rows a multiple of 16 bytes apart, int32 coordinates; the epilogue's paired stores. FP8:
  // SWIGLU's gate and up halves of a warpgroup (64 rows each) must each lie in one 128-row scale block, and the
  // scales must be there.
  const bool shapes = (p.k * elem) % 16 == 0 && (p.ld_x * elem) % 16 == 0 && p.n % 8 == 0 &&
                      p.expert_stride % p.k == 0 && p.rows_bound < (int64_t{1} << 31) &&
                      int64_t{p.n_experts} * w_rows < (int64_t{1} << 31) && aligned(p.x, 16) && aligned(p.w, 16);
  const bool scales = !fp8 || (p.x_scale != nullptr && p.w_scale != nullptr && (!swiglu || p.n % 64 == 0));
  const bool to_act = swiglu || p.epilogue == MoeGemmEpilogue::STORE_DT;
  const bool out = to_act ? p.act != nullptr && p.ld_act % 2 == 0 && aligned(p.act, 4)
                          : p.y != nullptr && p.ld_y % 2 == 0 && aligned(p.y, 8);
  return shapes && scales && out && hopper::sm90a_available();
}

void moe_grouped_gemm_hopper(const MoeGroupedGemmParams& p, cudaStream_t s) {
  checks::check_moe_grouped_gemm(p);
  MLABENCH_CHECK(moe_grouped_gemm_hopper_supported(p),
                 "moe_grouped_gemm_hopper: dtype {}, k {}, n {}, ld_x {}, expert_stride {}, rows_bound {}: not a "
                 "shape, alignment or device this kernel takes (BF16 or F8_E4M3 with its scales on an sm_90a build "
                 "and a compute capability 9.0 GPU, 16-byte rows, n % 8 == 0 (FP8 SWIGLU: n % 64 == 0), rows_bound > "
                 "0). HINT: ask moe_grouped_gemm_hopper_supported first and run moe_grouped_gemm otherwise",
                 dtype_name(p.dtype), p.k, p.n, p.ld_x, p.expert_stride, p.rows_bound);
  if (p.max_rows == 0) return;
  const bool swiglu = p.epilogue == MoeGemmEpilogue::SWIGLU, fp8 = p.dtype == DType::F8_E4M3;
  const int bm = p.tile_rows == 64 ? 64 : 128;
  // Output columns a CTA computes (SWIGLU: gate j's); FP8 tiles are 128 wide at 128 rows, 256 at 64.
  const int tile_n = (fp8 ? (bm == 128 ? 128 : 256) : kBN) / (swiglu ? 2 : 1);
  HopperArgs a{};
  a.w_rows = static_cast<int32_t>(p.expert_stride / p.k);
  const auto w_total = static_cast<uint64_t>(p.n_experts) * static_cast<uint64_t>(a.w_rows);
  if (fp8) {
    a.map_x = hopper::tensor_map_bytes_2d(p.x, static_cast<uint64_t>(p.k), static_cast<uint64_t>(p.rows_bound),
                                          static_cast<uint64_t>(p.ld_x), bm, "moe_grouped_gemm_hopper (FP8 x)");
    a.map_w = hopper::tensor_map_bytes_2d(p.w, static_cast<uint64_t>(p.k), w_total, static_cast<uint64_t>(p.k), 64,
                                          "moe_grouped_gemm_hopper (FP8 w)");
    a.x_scale = p.x_scale;
    a.x_scale_ld = p.x_scale_ld;
    a.w_scale = p.w_scale;
    a.w_scale_ld = p.w_scale_ld;
    a.w_scale_expert_stride = p.w_scale_expert_stride;
  } else {
    a.map_x = hopper::tensor_map_bf16_2d(p.x, static_cast<uint64_t>(p.k), static_cast<uint64_t>(p.rows_bound),
                                         static_cast<uint64_t>(p.ld_x) * 2, bm, "moe_grouped_gemm_hopper");
    a.map_w = hopper::tensor_map_bf16_2d(p.w, static_cast<uint64_t>(p.k), w_total, static_cast<uint64_t>(p.k) * 2,
                                         kBN / 2, "moe_grouped_gemm_hopper");
  }
  a.y = p.y;
  a.ld_y = p.ld_y;
  a.act = static_cast<uint16_t*>(p.act);
  a.ld_act = p.ld_act;
  a.offsets = p.offsets;
  a.n_experts = p.n_experts;
  a.n = static_cast<int32_t>(p.n);
  a.max_rows = p.max_rows;
  a.k_tiles = static_cast<int32_t>((p.k + (fp8 ? 127 : kBK - 1)) / (fp8 ? 128 : kBK));
  a.n_tiles = static_cast<int32_t>((p.n + tile_n - 1) / tile_n);
  // Every expert's rows end in at most one partial tile: ceil(rows_bound / bm) + n_experts bounds the row tiles.
  const int64_t m_tiles = (p.rows_bound + bm - 1) / bm + p.n_experts, ctas = m_tiles * a.n_tiles;
  MLABENCH_CHECK(ctas <= INT32_MAX, "moe_grouped_gemm_hopper: {} CTAs exceed the grid. HINT: split the rows", ctas);
  a.n_ctas = static_cast<int32_t>(ctas);
  static std::atomic<uint64_t> opted_in[12]{};
  using E = MoeGemmEpilogue;
  auto launch = [&](auto epi) {
    constexpr E kEpi = decltype(epi)::value;
    // The FP8 kernel is persistent: a CTA an SM at most, each walking n_ctas / grid tiles.
    const int64_t grid = fp8 ? std::min<int64_t>(ctas, gpu::device_sm_count()) : ctas;
    auto run = [&](auto kernel, int smem, int which) {
      gpu::opt_in_shared_memory(reinterpret_cast<const void*>(kernel), smem, opted_in[which]);
      kernel<<<static_cast<unsigned>(grid), kThreads, smem, s>>>(a);
    };
    const int which = 4 * static_cast<int>(kEpi) + (fp8 ? 2 : 0) + (bm == 64 ? 0 : 1);
    if (fp8 && bm == 64)
      run(moe_gemm_hopper_fp8_kernel<kEpi, 64>, Fp8TileShape<64>::kSmemBytes, which);
    else if (fp8)
      run(moe_gemm_hopper_fp8_kernel<kEpi, 128>, Fp8TileShape<128>::kSmemBytes, which);
    else if (bm == 64)
      run(moe_gemm_hopper_kernel<kEpi, 64>, TileShape<64>::kSmemBytes, which);
    else
      run(moe_gemm_hopper_kernel<kEpi, 128>, TileShape<128>::kSmemBytes, which);
  };
  switch (p.epilogue) {
    case E::STORE: launch(std::integral_constant<E, E::STORE>{}); break;
    case E::SWIGLU: launch(std::integral_constant<E, E::SWIGLU>{}); break;
    case E::STORE_DT: launch(std::integral_constant<E, E::STORE_DT>{}); break;
  }
  MLABENCH_CUDA(cudaGetLastError());
}

}  // namespace mlabench::kernels::cuda
