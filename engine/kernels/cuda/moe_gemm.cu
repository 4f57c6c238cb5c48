// Grouped expert GEMM with the row counts on the device (twin: engine/kernels/twin/moe_gemm.cpp): for each
// expert e, y[r, :n] = x[r, :k] . w_e^T over rows [offsets[e], offsets[e + 1]), so a graph-captured decode step
// runs the COMPACT MoE layout without reading the counts back to the host.
//   - grid (row tiles up to max_rows, n tiles, experts); a CTA whose row tile lies past its expert's count exits
//     at once. Row tiles vary fastest, so the CTAs that share one expert's weight slice run together and the
//     slice comes from HBM once (the others hit L2);
//   - BF16/F16: mma.sync m16n8k16 (float32 accumulate) on a 64 x 128 x 64 tile, 4 warps of 64 x 32, ldmatrix
//     from XOR-swizzled shared memory, a 4-stage cp.async pipeline of 16-byte copies (decode is memory-bound:
//     ~96 KB of weights in flight per SM). Only the 16-row MMA tiles that hold rows run, so an expert with 12
//     rows costs one m16 tile, not four. Tails: k and n zero-filled by cp.async, stores masked;
//   - F32 (never TF32), and halves whose rows are not 16-byte aligned (k, ld_x or the stride not a multiple of
//     8): a shared-memory tiled float32 FMA kernel.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/cuda/moe_gemm_fp8.h"
#include "engine/kernels/twin/moe_checks.h"

namespace mlabench::kernels::cuda {
namespace {

// ---- shared by both kernels ----------------------------------------------------------------------------------

// This CTA's expert rows: first row and count (at most max_rows: the grid covers no more), or false when its
// row tile is empty.
struct ExpertRows {
  int64_t first = 0;  // offsets[e] + the tile's first row
  int rows = 0;       // rows of this tile, 1..tile
};

__device__ __forceinline__ bool tile_rows(const MoeGroupedGemmParams& p, int tile_m, ExpertRows& out) {
  const int e = static_cast<int>(blockIdx.z);
  const int64_t r0 = p.offsets[e];
  int64_t count = p.offsets[e + 1] - r0;
  count = count < p.max_rows ? count : p.max_rows;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * tile_m;
  if (m0 >= count) return false;
  out.first = r0 + m0;
  out.rows = static_cast<int>(count - m0 < tile_m ? count - m0 : tile_m);
  return true;
}

__device__ __forceinline__ float half_to_float(uint16_t h, bool bf16) {
  return bf16 ? __uint_as_float(static_cast<uint32_t>(h) << 16) : __half2float(__ushort_as_half(h));
}

// ---- tensor-core kernel (BF16, F16) --------------------------------------------------------------------------

constexpr int kBM = 64, kBN = 128, kBK = 64, kStages = 4, kThreads = 128;
constexpr int kChunks = kBK / 8;  // 16-byte chunks per shared-memory row
constexpr int kAStage = kBM * kBK, kBStage = kBN * kBK;  // elements
constexpr int kMmaSmemBytes = kStages * (kAStage + kBStage) * 2;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, bypassing L1; with valid false nothing is read and the 16 bytes are zeroed.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

template <bool kBf16>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  if constexpr (kBf16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

// Element offset of 16-byte chunk c of shared-memory row r: the chunk index XOR (r & 7), so the 8 rows one
// ldmatrix phase reads at the same chunk column (and the 8 chunks one cp.async phase writes) hit 8 different
// bank groups.
__device__ __forceinline__ int swizzle(int r, int c) { return r * kBK + ((c ^ (r & 7)) << 3); }

// Stage `stage` <- k tile kt: the tile's A rows (only the m16 tiles that hold rows; rows past the count and k
// past the end zero-filled) and its kBN weight rows (n and k tails zero-filled).
__device__ __forceinline__ void load_stage(const MoeGroupedGemmParams& p, const uint16_t* x, const uint16_t* w,
                                           int rows, int a_rows, int64_t n_left, uint16_t* sa, uint16_t* sb,
                                           int stage, int64_t kt) {
  const int64_t k0 = kt * kBK;
  uint16_t* da = sa + stage * kAStage;
  for (int c = threadIdx.x; c < a_rows * kChunks; c += kThreads) {
    const int r = c / kChunks, ch = c % kChunks;
    const int64_t kk = k0 + ch * 8;
    const bool ok = r < rows && kk < p.k;
    cp_async16(smem_addr(da + swizzle(r, ch)), ok ? x + r * p.ld_x + kk : x, ok);
  }
  uint16_t* db = sb + stage * kBStage;
#pragma unroll
  for (int i = 0; i < kBN * kChunks / kThreads; ++i) {
    const int c = static_cast<int>(threadIdx.x) + i * kThreads;
    const int r = c / kChunks, ch = c % kChunks;
    const int64_t kk = k0 + ch * 8;
    const bool ok = r < n_left && kk < p.k;
    cp_async16(smem_addr(db + swizzle(r, ch)), ok ? w + r * p.k + kk : w, ok);
  }
}

// grid: (row tiles of kBM, n tiles of kBN, experts); warp w computes the tile's rows x columns [32w, 32w + 32).
template <bool kBf16>
__global__ void __launch_bounds__(kThreads) moe_gemm_mma_kernel(const MoeGroupedGemmParams p) {
  ExpertRows er;
  if (!tile_rows(p, kBM, er)) return;
  extern __shared__ __align__(128) uint16_t moe_gemm_smem[];
  uint16_t* sa = moe_gemm_smem;              // [kStages][kBM][kBK]
  uint16_t* sb = sa + kStages * kAStage;     // [kStages][kBN][kBK]
  const int m_tiles = (er.rows + 15) >> 4;   // m16 tiles holding rows: the others neither load nor multiply
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * kBN;
  const auto* x = static_cast<const uint16_t*>(p.x) + er.first * p.ld_x;
  const auto* w = static_cast<const uint16_t*>(p.w) + blockIdx.z * p.expert_stride + n0 * p.k;
  const int64_t k_tiles = (p.k + kBK - 1) / kBK;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_tiles) load_stage(p, x, w, er.rows, m_tiles * 16, p.n - n0, sa, sb, s, s);
    cp_async_commit();  // empty groups too: the wait below counts groups
  }

  float acc[4][4][4] = {};  // [m16 tile][n8 tile][fragment]
  for (int64_t kt = 0; kt < k_tiles; ++kt) {
    cp_async_wait<kStages - 2>();  // k tile kt has landed
    __syncthreads();               // ... for every thread, and tile kt - 1's stage is free to overwrite
    const int64_t next = kt + kStages - 1;
    if (next < k_tiles) load_stage(p, x, w, er.rows, m_tiles * 16, p.n - n0, sa, sb, next % kStages, next);
    cp_async_commit();
    const uint16_t* ta = sa + (kt % kStages) * kAStage;
    const uint16_t* tb = sb + (kt % kStages) * kBStage;
#pragma unroll
    for (int ks = 0; ks < kBK / 16; ++ks) {
      uint32_t b[4][2];
#pragma unroll
      for (int j = 0; j < 2; ++j) {  // one x4 = two n8 tiles x (k 0-7, k 8-15)
        uint32_t r[4];
        const int nr = warp * 32 + j * 16 + (lane & 7) + ((lane >> 4) << 3);
        ldmatrix_x4(r, smem_addr(tb + swizzle(nr, ks * 2 + ((lane >> 3) & 1))));
        b[2 * j][0] = r[0], b[2 * j][1] = r[1], b[2 * j + 1][0] = r[2], b[2 * j + 1][1] = r[3];
      }
#pragma unroll
      for (int mt = 0; mt < 4; ++mt) {
        if (mt >= m_tiles) break;  // uniform over the CTA
        uint32_t a[4];
        ldmatrix_x4(a, smem_addr(ta + swizzle(mt * 16 + (lane & 15), ks * 2 + (lane >> 4))));
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) mma16816<kBf16>(acc[mt][nt], a, b[nt]);
      }
    }
  }
  cp_async_wait<0>();

  // Fragment (g, q) = (lane / 4, lane % 4) holds rows g and g + 8, columns 2q and 2q + 1 of each n8 tile.
  const int g = lane >> 2, q = lane & 3;
  float* y = p.y + er.first * p.ld_y;
#pragma unroll
  for (int mt = 0; mt < 4; ++mt) {
    if (mt >= m_tiles) break;
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      const int64_t col = n0 + warp * 32 + nt * 8 + q * 2;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = mt * 16 + g + h * 8;
        if (row >= er.rows || col >= p.n) continue;
        float* dst = y + row * p.ld_y + col;
        const float v0 = acc[mt][nt][2 * h], v1 = acc[mt][nt][2 * h + 1];
        if (col + 1 < p.n && reinterpret_cast<uintptr_t>(dst) % 8 == 0) {
          *reinterpret_cast<float2*>(dst) = make_float2(v0, v1);
        } else {
          dst[0] = v0;
          if (col + 1 < p.n) dst[1] = v1;
        }
      }
    }
  }
}

// ---- float32-math kernel (F32, and unaligned halves) ---------------------------------------------------------

constexpr int kSBM = 32, kSBN = 64, kSBK = 32, kSThreads = 256;

// grid: (row tiles of kSBM, n tiles of kSBN, experts); 16 x 16 threads, thread (tx, ty) computes rows 2ty and
// 2ty + 1 at columns tx + 16j (j < 4). Elem: float, or uint16_t holding BF16 (kBf16) or F16 bits.
template <class Elem, bool kBf16>
__global__ void __launch_bounds__(kSThreads) moe_gemm_simple_kernel(const MoeGroupedGemmParams p) {
  ExpertRows er;
  if (!tile_rows(p, kSBM, er)) return;
  __shared__ float sx[kSBM][kSBK + 1];  // +1: the column reads of sw fall in distinct banks
  __shared__ float sw[kSBN][kSBK + 1];
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * kSBN;
  const auto* x = static_cast<const Elem*>(p.x) + er.first * p.ld_x;
  const auto* w = static_cast<const Elem*>(p.w) + blockIdx.z * p.expert_stride + n0 * p.k;
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  auto to_float = [](const Elem* base, int64_t i) {
    if constexpr (sizeof(Elem) == 4) {
      return static_cast<float>(base[i]);
    } else {
      return half_to_float(base[i], kBf16);
    }
  };
  float acc[2][4] = {};
  for (int64_t k0 = 0; k0 < p.k; k0 += kSBK) {
    for (int i = tid; i < kSBM * kSBK; i += kSThreads) {  // consecutive threads: consecutive k
      const int r = i / kSBK, c = i % kSBK;
      sx[r][c] = r < er.rows && k0 + c < p.k ? to_float(x, r * p.ld_x + k0 + c) : 0.0f;
    }
    for (int i = tid; i < kSBN * kSBK; i += kSThreads) {
      const int r = i / kSBK, c = i % kSBK;
      sw[r][c] = n0 + r < p.n && k0 + c < p.k ? to_float(w, r * p.k + k0 + c) : 0.0f;
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < kSBK; ++kk) {
      const float a0 = sx[2 * ty][kk], a1 = sx[2 * ty + 1][kk];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float b = sw[tx + 16 * j][kk];
        acc[0][j] = fmaf(a0, b, acc[0][j]);  // float32 FMA: the engine's float32 precision, never TF32
        acc[1][j] = fmaf(a1, b, acc[1][j]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int row = 2 * ty + i;
    if (row >= er.rows) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t col = n0 + tx + 16 * j;
      if (col < p.n) p.y[(er.first + row) * p.ld_y + col] = acc[i][j];
    }
  }
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

dim3 grid_for(const MoeGroupedGemmParams& p, int tile_m, int tile_n) {
  const int64_t m_tiles = (p.max_rows + tile_m - 1) / tile_m, n_tiles = (p.n + tile_n - 1) / tile_n;
  MLABENCH_CHECK(m_tiles <= INT32_MAX && n_tiles <= 65535 && p.n_experts <= 65535,
                 "moe_grouped_gemm: max_rows {}, n {}, n_experts {} exceed the launch grid (row tiles of {} <= 2^31 "
                 "- 1, column tiles of {} <= 65535, experts <= 65535). HINT: split the call", p.max_rows, p.n,
                 p.n_experts, tile_m, tile_n);
  return dim3(static_cast<unsigned>(m_tiles), static_cast<unsigned>(n_tiles), static_cast<unsigned>(p.n_experts));
}

template <bool kBf16>
void launch_mma(const MoeGroupedGemmParams& p, cudaStream_t s) {
  static std::atomic<uint64_t> opted_in{0};
  gpu::opt_in_shared_memory(reinterpret_cast<const void*>(moe_gemm_mma_kernel<kBf16>), kMmaSmemBytes, opted_in);
  moe_gemm_mma_kernel<kBf16><<<grid_for(p, kBM, kBN), kThreads, kMmaSmemBytes, s>>>(p);
}

template <class Elem, bool kBf16>
void launch_simple(const MoeGroupedGemmParams& p, cudaStream_t s) {
  moe_gemm_simple_kernel<Elem, kBf16><<<grid_for(p, kSBM, kSBN), kSThreads, 0, s>>>(p);
}

}  // namespace

void moe_grouped_gemm(const MoeGroupedGemmParams& p, cudaStream_t s) {
  // FP8 (e4m3 W8A8, block scales): the wgmma (QGMMA) kernel where the caller allows its group sums
  // (fp8_exact_sums false) and it runs the shape, else the mma.sync FP8 kernel; both run the SWIGLU and STORE_DT
  // epilogues and a single expert without offsets.
  if (p.dtype == DType::F8_E4M3) {
    if (!p.fp8_exact_sums && moe_grouped_gemm_hopper_supported(p)) return moe_grouped_gemm_hopper(p, s);
    return moe_grouped_gemm_fp8(p, s);
  }
  checks::check_moe_grouped_gemm(p);
  MLABENCH_CHECK(p.offsets != nullptr, "moe_grouped_gemm: offsets is null. HINT: pass moe_permute's row offsets "
                 "(moe_grouped_gemm_hopper takes a single expert without them)");
  MLABENCH_CHECK(p.epilogue == MoeGemmEpilogue::STORE,
                 "moe_grouped_gemm: the SWIGLU and STORE_DT epilogues are moe_grouped_gemm_hopper's. HINT: store y "
                 "here (and run silu_mul), or call moe_grouped_gemm_hopper where moe_grouped_gemm_hopper_supported "
                 "says it runs");
  if (p.max_rows == 0) return;
  const bool bf16 = p.dtype == DType::BF16;
  // The tensor-core path copies 16-byte chunks: every row start (x rows, weight rows, expert bases) must be one.
  const bool mma = p.dtype != DType::F32 && p.k % 8 == 0 && p.ld_x % 8 == 0 && p.expert_stride % 8 == 0 &&
                   aligned16(p.x) && aligned16(p.w);
  if (mma) {
    if (bf16)
      launch_mma<true>(p, s);
    else
      launch_mma<false>(p, s);
  } else if (p.dtype == DType::F32) {
    launch_simple<float, false>(p, s);
  } else if (bf16) {
    launch_simple<uint16_t, true>(p, s);
  } else {
    launch_simple<uint16_t, false>(p, s);
  }
  MLABENCH_CUDA(cudaGetLastError());
}

}  // namespace mlabench::kernels::cuda
