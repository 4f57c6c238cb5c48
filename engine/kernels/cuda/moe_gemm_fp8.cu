// FP8 grouped expert GEMM (e4m3 W8A8 with DeepSeek-V3's block scales; twin: engine/kernels/twin/moe_gemm.cpp):
// for each expert e and each row r of its rows [offsets[e], offsets[e + 1]) (counts read on the device, so a
// captured decode step needs no host read-back), and each weight row j,
//   y[r, j] = sum_g x_scale[r, g] * w_scale_e[j / 128, g] * sum_{c in group g} e4m3(x[r, c]) * e4m3(w_e[j, c]).
// The BF16 kernel's shape (moe_gemm.cu) with byte-sized elements:
//   - grid (row tiles of 64 up to max_rows, column tiles, experts), row tiles fastest so one expert's weight
//     slice is read from HBM once; a CTA past its expert's count exits at once;
//   - a k tile is 128 e4m3 = 128 bytes a shared-memory row = exactly one scale group, so each tile's MMAs sum
//     into a zeroed float32 partial that is then folded into the accumulator times x_scale[row] * w_scale[column's
//     block]. Both scales of a k tile are staged in shared memory by the same cp.async group as its operands, so
//     the fold never waits on global memory;
//   - Hopper runs mma.sync's e4m3 shape (m16n8k32) only by emulation: ptxas converts both operands to F16 in front
//     of every MMA, so each A fragment would be converted once per n8 tile. Here the fragments are converted once
//     (cvt e4m3x2 -> f16x2, exact: every e4m3 value is an F16 value) and fed to m16n8k16 F16 MMAs with float32
//     accumulation, the products exact. The e4m3 fragment of a k32 step holds bytes k = 4t..4t+3 (and 16 + 4t..)
//     where the F16 fragment holds k = 2t, 2t+1 (and 8 + 2t, ..): converting A and B the same way permutes k
//     identically in both operands, which a dot product does not see;
//   - 64 x 128 x 128 tile, 4 warps, ldmatrix from the XOR-swizzled 128-byte rows, a 4-stage cp.async pipeline of
//     16-byte copies (~96 KB of operands in flight per CTA; decode is memory-bound); only the m16 tiles that hold
//     rows load and multiply. Tails: k (a multiple of 16: the last group shorter) and n zero-filled, stores masked;
//   - epilogues: STORE (float32 y), STORE_DT (y rounded to BF16 into act), SWIGLU (a CTA takes 64 gate rows j and
//     the matching 64 up rows n + j of the stacked weight; each thread holds gate and up of the same (row, j) and
//     writes silu(gate) * up in BF16).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/decode_common.cuh"
#include "engine/kernels/cuda/moe_gemm_fp8.h"
#include "engine/kernels/twin/moe_checks.h"

namespace mlabench::kernels::cuda {
namespace {

constexpr int kBM = 64, kBN = 128, kBK = 128, kStages = 4, kThreads = 128;
constexpr int kChunks = kBK / 16;                        // 16-byte chunks per shared-memory row
constexpr int kAStage = kBM * kBK, kBStage = kBN * kBK;  // bytes
constexpr int kOperandBytes = kStages * (kAStage + kBStage);
constexpr int kSmemBytes = kOperandBytes + kStages * (kBM + kBN) * 4;  // + each stage's row and column scales
static_assert(kThreads == kBN, "one thread stages each weight row's scale");
static_assert(kBK == 128, "a k tile must be one 128-value scale group");

// ---- PTX wrappers ----------------------------------------------------------------------------------------------

using decode::cp_async16;
using decode::cp_async_commit;
using decode::cp_async_wait;
using decode::ldmatrix_x4;
using decode::smem_addr;
// 4 bytes global -> shared (a scale); with valid false nothing is read and the bytes are zeroed.
__device__ __forceinline__ void cp_async4(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 4 : 0));
}
// Four e4m3 bytes (k, k+1, k+2, k+3 from the low byte up) as two F16 pairs: lo = (k, k+1), hi = (k+2, k+3).
__device__ __forceinline__ void e4m3x4_to_f16(uint32_t v, uint32_t& lo, uint32_t& hi) {
  asm("{\n .reg .b16 l, h;\n mov.b32 {l, h}, %2;\n cvt.rn.f16x2.e4m3x2 %0, l;\n cvt.rn.f16x2.e4m3x2 %1, h;\n}\n"
      : "=r"(lo), "=r"(hi)
      : "r"(v));
}
__device__ __forceinline__ void mma_f16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Byte offset of 16-byte chunk c of shared-memory row r: the chunk index XOR (r & 7), so the 8 rows one ldmatrix
// phase reads at one chunk column (and the 8 chunks one cp.async phase writes) hit 8 different bank groups.
__device__ __forceinline__ int swizzle(int r, int c) { return r * kBK + ((c ^ (r & 7)) << 4); }

// ---- the CTA's operands --------------------------------------------------------------------------------------

struct Tile {
  const uint8_t* x = nullptr;  // the tile's first x row
  const float* xs = nullptr;   // its x_scale row
  const uint8_t* w = nullptr;  // the expert's stacked weight rows
  const float* ws = nullptr;   // the expert's block-scale grid
  int64_t first = 0;           // the tile's first row (of x, y, act)
  int rows = 0, a_rows = 0;    // rows of this tile (1..kBM); rows loaded (the m16 tiles holding rows)
  int64_t col0 = 0;            // first output column (SWIGLU: first j)
};

// This CTA's rows, or false when its row tile lies past its expert's count (capped at max_rows: the grid covers
// no more). Without offsets the single expert owns rows [0, max_rows).
__device__ __forceinline__ bool tile_rows(const MoeGroupedGemmParams& p, int64_t& first, int& rows) {
  int64_t r0 = 0, count = p.max_rows;
  if (p.offsets != nullptr) {
    r0 = p.offsets[blockIdx.z];
    count = p.offsets[blockIdx.z + 1] - r0;
    count = count < p.max_rows ? count : p.max_rows;
  }
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * kBM;
  if (m0 >= count) return false;
  first = r0 + m0;
  rows = static_cast<int>(count - m0 < kBM ? count - m0 : kBM);
  return true;
}

// The stacked weight row that B-tile row r holds, or -1 past n (zero-filled). SWIGLU: rows [0, 64) are gate rows
// j, rows [64, 128) the up rows n + j of the same j.
template <bool kSwiglu>
__device__ __forceinline__ int64_t weight_row(const MoeGroupedGemmParams& p, int64_t col0, int r) {
  if constexpr (kSwiglu) {
    const int64_t j = col0 + (r & 63);
    return j < p.n ? (r >> 6) * p.n + j : -1;
  } else {
    return col0 + r < p.n ? col0 + r : -1;
  }
}

// The B-tile row of n8 tile nt of warp `warp`. STORE: warp w owns columns [32w, 32w + 32). SWIGLU: tiles 0, 1
// are gate rows 16w + [0, 16), tiles 2, 3 the up rows of the same j, so gate and up meet in one thread.
template <bool kSwiglu>
__device__ __forceinline__ int b_row0(int warp, int nt) {
  return kSwiglu ? (nt >> 1) * 64 + warp * 16 + (nt & 1) * 8 : warp * 32 + nt * 8;
}

__device__ __forceinline__ float* stage_xs(uint8_t* smem, int stage) {
  return reinterpret_cast<float*>(smem + kOperandBytes) + stage * kBM;
}
__device__ __forceinline__ float* stage_ws(uint8_t* smem, int stage) {
  return reinterpret_cast<float*>(smem + kOperandBytes) + kStages * kBM + stage * kBN;
}

// Stage `stage` <- k tile kt: the A rows (rows past the count and k past the end zero-filled), the kBN weight rows
// (n and k tails zero-filled), and the group's scales: x_scale[row, kt] per A row and w_scale[wrow / 128, kt] per
// weight row (0 for rows not loaded: their partial sums are 0 anyway).
template <bool kSwiglu>
__device__ __forceinline__ void load_stage(const MoeGroupedGemmParams& p, const Tile& t, uint8_t* smem, int stage,
                                           int kt) {
  const int64_t k0 = static_cast<int64_t>(kt) * kBK;
  const int tid = static_cast<int>(threadIdx.x);
  uint8_t* da = smem + stage * kAStage;
  for (int c = tid; c < t.a_rows * kChunks; c += kThreads) {
    const int r = c / kChunks, ch = c % kChunks;
    const int64_t kk = k0 + ch * 16;
    const bool ok = r < t.rows && kk < p.k;
    cp_async16(smem_addr(da + swizzle(r, ch)), ok ? t.x + r * p.ld_x + kk : t.x, ok);
  }
  uint8_t* db = smem + kStages * kAStage + stage * kBStage;
#pragma unroll
  for (int i = 0; i < kBN * kChunks / kThreads; ++i) {
    const int c = tid + i * kThreads;
    const int r = c / kChunks, ch = c % kChunks;
    const int64_t wr = weight_row<kSwiglu>(p, t.col0, r), kk = k0 + ch * 16;
    const bool ok = wr >= 0 && kk < p.k;
    cp_async16(smem_addr(db + swizzle(r, ch)), ok ? t.w + wr * p.k + kk : t.w, ok);
  }
  if (tid < t.a_rows) {
    const bool ok = tid < t.rows;
    cp_async4(smem_addr(stage_xs(smem, stage) + tid), ok ? t.xs + tid * p.x_scale_ld + kt : t.xs, ok);
  }
  const int64_t wr = weight_row<kSwiglu>(p, t.col0, tid);
  cp_async4(smem_addr(stage_ws(smem, stage) + tid), wr >= 0 ? t.ws + (wr / kBK) * p.w_scale_ld + kt : t.ws,
            wr >= 0);
}

// part += this k tile's products (one scale group). Per k32 step: each warp's four n8 B fragments converted to
// F16 once, then per m16 tile its A fragment converted once and used by 4 n8 tiles x 2 k16 MMAs.
template <bool kSwiglu>
__device__ __forceinline__ void mma_group(const uint8_t* ta, const uint8_t* tb, int m_tiles,
                                          float (&part)[4][4][4]) {
  const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
#pragma unroll
  for (int ks = 0; ks < kBK / 32; ++ks) {
    uint32_t b[4][4];  // [n8 tile][k 0-15 as two F16 pairs, k 16-31 as two]
#pragma unroll
    for (int j = 0; j < 2; ++j) {  // one x4 = n8 tiles 2j, 2j + 1 x (k bytes 0-15, 16-31)
      uint32_t r[4];
      const int nr = b_row0<kSwiglu>(warp, 2 * j) + (lane & 7) + ((lane >> 4) << 3);
      ldmatrix_x4(r, smem_addr(tb + swizzle(nr, ks * 2 + ((lane >> 3) & 1))));
      e4m3x4_to_f16(r[0], b[2 * j][0], b[2 * j][1]);
      e4m3x4_to_f16(r[1], b[2 * j][2], b[2 * j][3]);
      e4m3x4_to_f16(r[2], b[2 * j + 1][0], b[2 * j + 1][1]);
      e4m3x4_to_f16(r[3], b[2 * j + 1][2], b[2 * j + 1][3]);
    }
#pragma unroll
    for (int mt = 0; mt < 4; ++mt) {
      if (mt >= m_tiles) break;  // uniform over the CTA
      uint32_t a8[4];            // rows g, g + 8 at k bytes 4t.. (a8[0], a8[1]) and 16 + 4t.. (a8[2], a8[3])
      ldmatrix_x4(a8, smem_addr(ta + swizzle(mt * 16 + (lane & 15), ks * 2 + (lane >> 4))));
      uint32_t lo[4], hi[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) e4m3x4_to_f16(a8[i], lo[i], hi[i]);
      const uint32_t a_lo[4] = {lo[0], lo[1], hi[0], hi[1]}, a_hi[4] = {lo[2], lo[3], hi[2], hi[3]};
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        mma_f16(part[mt][nt], a_lo, b[nt][0], b[nt][1]);
        mma_f16(part[mt][nt], a_hi, b[nt][2], b[nt][3]);
      }
    }
  }
}

// acc += part * (x_scale[row] * w_scale[column's block]) for the fragments this thread holds: (g, q) = (lane / 4,
// lane % 4) holds rows g and g + 8 of each m16 tile, columns 2q and 2q + 1 of each n8 tile.
template <bool kSwiglu>
__device__ __forceinline__ void fold_group(const float (&part)[4][4][4], float (&acc)[4][4][4], const float* xs,
                                           const float* ws, int m_tiles) {
  const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
  const int g = lane >> 2, q = lane & 3;
  float wsc[4][2];
#pragma unroll
  for (int nt = 0; nt < 4; ++nt) {
    const float2 v = *reinterpret_cast<const float2*>(ws + b_row0<kSwiglu>(warp, nt) + 2 * q);
    wsc[nt][0] = v.x, wsc[nt][1] = v.y;
  }
#pragma unroll
  for (int mt = 0; mt < 4; ++mt) {
    if (mt >= m_tiles) break;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float x_scale = xs[mt * 16 + g + 8 * h];
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int c = 0; c < 2; ++c)
          acc[mt][nt][2 * h + c] = fmaf(part[mt][nt][2 * h + c], x_scale * wsc[nt][c], acc[mt][nt][2 * h + c]);
    }
  }
}

// Two adjacent BF16 outputs (the second only where `both`): one 4-byte store where aligned.
__device__ __forceinline__ void store_bf16_pair(uint16_t* dst, float v0, float v1, bool both) {
  if (both && reinterpret_cast<uintptr_t>(dst) % 4 == 0) {
    *reinterpret_cast<uint32_t*>(dst) = decode::bf16_bits(v0) | (static_cast<uint32_t>(decode::bf16_bits(v1)) << 16);
  } else {
    dst[0] = static_cast<uint16_t>(decode::bf16_bits(v0));
    if (both) dst[1] = static_cast<uint16_t>(decode::bf16_bits(v1));
  }
}

// silu(g) * u exactly as silu_mul's kernel and twin compute it (and moe_gemm_hopper.cu).
__device__ __forceinline__ float silu_times(float g, float u) {
  return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
}

// Writes the tile: STORE float32 y, STORE_DT BF16 act, SWIGLU silu(gate) * up in BF16 act (gate in n8 tiles 0, 1,
// up in 2, 3). Rows past the tile's count and columns past n are not written.
template <MoeGemmEpilogue kEpi>
__device__ __forceinline__ void store_tile(const MoeGroupedGemmParams& p, const Tile& t, const float (&acc)[4][4][4],
                                           int m_tiles) {
  constexpr bool kSwiglu = kEpi == MoeGemmEpilogue::SWIGLU;
  const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
  const int g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int mt = 0; mt < 4; ++mt) {
    if (mt >= m_tiles) break;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = mt * 16 + g + h * 8;
      if (row >= t.rows) continue;
      const int64_t r = t.first + row;
#pragma unroll
      for (int nt = 0; nt < (kSwiglu ? 2 : 4); ++nt) {
        const int64_t col = t.col0 + b_row0<kSwiglu>(warp, nt) + 2 * q;
        if (col >= p.n) continue;
        const bool both = col + 1 < p.n;
        const float v0 = acc[mt][nt][2 * h], v1 = acc[mt][nt][2 * h + 1];
        if constexpr (kEpi == MoeGemmEpilogue::STORE) {
          float* dst = p.y + r * p.ld_y + col;
          if (both && reinterpret_cast<uintptr_t>(dst) % 8 == 0) {
            *reinterpret_cast<float2*>(dst) = make_float2(v0, v1);
          } else {
            dst[0] = v0;
            if (both) dst[1] = v1;
          }
        } else if constexpr (kSwiglu) {
          const float u0 = acc[mt][nt + 2][2 * h], u1 = acc[mt][nt + 2][2 * h + 1];
          store_bf16_pair(static_cast<uint16_t*>(p.act) + r * p.ld_act + col, silu_times(v0, u0),
                          silu_times(v1, u1), both);
        } else {
          store_bf16_pair(static_cast<uint16_t*>(p.act) + r * p.ld_act + col, v0, v1, both);
        }
      }
    }
  }
}

// grid: (row tiles of kBM, column tiles of kBN (SWIGLU: kBN / 2 j's), experts).
template <MoeGemmEpilogue kEpi>
__global__ void __launch_bounds__(kThreads) moe_gemm_fp8_kernel(const MoeGroupedGemmParams p) {
  constexpr bool kSwiglu = kEpi == MoeGemmEpilogue::SWIGLU;
  Tile t;
  if (!tile_rows(p, t.first, t.rows)) return;
  extern __shared__ __align__(128) uint8_t fp8_gemm_smem[];
  uint8_t* smem = fp8_gemm_smem;
  const int m_tiles = (t.rows + 15) >> 4;  // m16 tiles holding rows: the others neither load nor multiply
  t.a_rows = m_tiles * 16;
  t.col0 = static_cast<int64_t>(blockIdx.y) * (kSwiglu ? kBN / 2 : kBN);
  t.x = static_cast<const uint8_t*>(p.x) + t.first * p.ld_x;
  t.xs = p.x_scale + t.first * p.x_scale_ld;
  t.w = static_cast<const uint8_t*>(p.w) + blockIdx.z * p.expert_stride;
  t.ws = p.w_scale + blockIdx.z * p.w_scale_expert_stride;
  const int k_tiles = static_cast<int>((p.k + kBK - 1) / kBK);

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_tiles) load_stage<kSwiglu>(p, t, smem, s, s);
    cp_async_commit();  // empty groups too: the wait below counts groups
  }
  float acc[4][4][4] = {};  // [m16 tile][n8 tile][fragment]
  for (int kt = 0; kt < k_tiles; ++kt) {
    cp_async_wait<kStages - 2>();  // k tile kt has landed
    __syncthreads();               // ... for every thread, and tile kt - 1's stage is free to overwrite
    const int next = kt + kStages - 1;
    if (next < k_tiles) load_stage<kSwiglu>(p, t, smem, next % kStages, next);
    cp_async_commit();
    const int stage = kt % kStages;
    float part[4][4][4] = {};  // this scale group's float32 sums
    mma_group<kSwiglu>(smem + stage * kAStage, smem + kStages * kAStage + stage * kBStage, m_tiles, part);
    fold_group<kSwiglu>(part, acc, stage_xs(smem, stage), stage_ws(smem, stage), m_tiles);
  }
  cp_async_wait<0>();
  store_tile<kEpi>(p, t, acc, m_tiles);
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

template <MoeGemmEpilogue kEpi>
void launch(const MoeGroupedGemmParams& p, cudaStream_t s) {
  const int tile_n = kEpi == MoeGemmEpilogue::SWIGLU ? kBN / 2 : kBN;
  const int64_t m_tiles = (p.max_rows + kBM - 1) / kBM, n_tiles = (p.n + tile_n - 1) / tile_n;
  MLABENCH_CHECK(m_tiles <= INT32_MAX && n_tiles <= 65535 && p.n_experts <= 65535,
                 "moe_grouped_gemm (FP8): max_rows {}, n {}, n_experts {} exceed the launch grid (row tiles of {} <= "
                 "2^31 - 1, column tiles of {} <= 65535, experts <= 65535). HINT: split the call", p.max_rows, p.n,
                 p.n_experts, kBM, tile_n);
  static std::atomic<uint64_t> opted_in{0};
  gpu::opt_in_shared_memory(reinterpret_cast<const void*>(moe_gemm_fp8_kernel<kEpi>), kSmemBytes, opted_in);
  const dim3 grid(static_cast<unsigned>(m_tiles), static_cast<unsigned>(n_tiles),
                  static_cast<unsigned>(p.n_experts));
  moe_gemm_fp8_kernel<kEpi><<<grid, kThreads, kSmemBytes, s>>>(p);
}

}  // namespace

void moe_grouped_gemm_fp8(const MoeGroupedGemmParams& p, cudaStream_t s) {
  checks::check_moe_grouped_gemm(p);
  MLABENCH_CHECK(p.dtype == DType::F8_E4M3,
                 "moe_grouped_gemm_fp8: dtype {}. HINT: this kernel takes F8_E4M3 operands; moe_grouped_gemm runs "
                 "the others", dtype_name(p.dtype));
  MLABENCH_CHECK(p.max_rows == 0 || (aligned16(p.x) && aligned16(p.w)),
                 "moe_grouped_gemm_fp8: x or w is not 16-byte aligned. HINT: the kernel copies 16-byte chunks; pass "
                 "row starts on the 16-byte grid (device allocations are)");
  if (p.max_rows == 0) return;
  switch (p.epilogue) {
    case MoeGemmEpilogue::STORE: launch<MoeGemmEpilogue::STORE>(p, s); break;
    case MoeGemmEpilogue::SWIGLU: launch<MoeGemmEpilogue::SWIGLU>(p, s); break;
    case MoeGemmEpilogue::STORE_DT: launch<MoeGemmEpilogue::STORE_DT>(p, s); break;
  }
  MLABENCH_CUDA(cudaGetLastError());
}

}  // namespace mlabench::kernels::cuda
