// skinny_gemm_fp8: the W8A8 (e4m3, DeepSeek-V3 block scales) product y[m, n] of m <= 16 quantised activation rows
// and an FP8 weight [n, k], the projections of a decode step at batch 1-16 (skinny_gemm_fp8.h has the formula).
// Twin: twin::skinny_gemm_fp8 (engine/kernels/twin/skinny_gemm_fp8.cpp).
//
// At m <= 16 rows the product reads n x k weight bytes for 2 m n k FLOPs: memory-bound, so like skinny_gemm (the
// BF16 kernel) it is built to stream the weight once at the copy bandwidth. What differs is the arithmetic: one
// weight byte is one value, so at m = 8 float32 FMAs would need 8 FMAs (plus the decode) per byte, about what an
// SM can issue while HBM delivers its share, and the kernel would be compute-bound. Here the tensor cores take it:
//   - a warp's tile is 16 weight rows x 8 rows of x: mma.m16n8k16 (F16 operands, float32 accumulators) with the
//     weight as A and x as B, rows of x past m zero. e4m3 values are all F16 values and their products are exact,
//     so converting both operands with cvt e4m3x2 -> f16x2 loses nothing (Hopper has no e4m3 mma.sync of its own:
//     ptxas would emulate one the same way, per MMA). At 9-16 rows (XT = 2 x tiles) each converted weight fragment
//     feeds two MMAs, one per 8 rows of x: the weight is still read and widened once. Lane (g, t) = (lane / 4, lane % 4) loads 16 bytes of weight
//     rows g and g + 8 and of x row g at k = 16 t (+ 64 for the second half of a group): a k permutation applied
//     to both operands alike, which a dot product does not see, and each 4 lanes read 64 contiguous bytes a row;
//   - a group of 128 k values is 8 MMAs into a zeroed float32 partial, which is then multiplied by x_scale *
//     w_scale (a 16-row tile lies in one 128-row scale block) and added to the thread's accumulators: the
//     formula's own per-group structure;
//   - a CTA of 8 warps owns RT tiles (16 RT weight rows) and splits the groups over its warps (warp w takes groups
//     w, w + 8, ...). Each warp keeps kTilesInFlight tile-groups of loads in flight (16-byte, non-coherent, no L1
//     allocation: each weight byte is read once), the first ones requested before the PDL wait (pdl.cuh); x is
//     read from L2 after the wait, its f16 fragments shared by the RT tiles;
//   - the scales of the CTA's groups are staged in shared memory once; the 8 warps' sums are added in warp order
//     (deterministic) through shared memory and one thread per output writes y.
// The launcher takes RT = 2 where that still gives two CTAs per SM, else 1 (more rows per CTA read x from L2 fewer
// times per weight byte: m / (16 RT) of the weight's traffic).
// The fused form (Fp8SkinnyGemmParams::x, kX F32 / BF16): after the PDL wait each CTA quantises x's m x k values
// into shared memory (a warp per row and group, fp8_quantize_rows' arithmetic from fp8_device.cuh: the same codes
// and scales bit for bit) and the warps read their codes from there. At m = 1, k = 2048 that is 8 values a thread
// where the two-launch form pays a kernel launch and the codes' round trip through L2 (2.8 us a projection
// under ncu, 83 a V2-Lite step).
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "core/check.h"
#include "engine/core/fp8.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/fp8_device.cuh"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/cuda/norm_rows.cuh"
#include "engine/kernels/cuda/pdl.cuh"
#include "engine/kernels/cuda/skinny_gemm_fp8.h"
#include "engine/kernels/cuda/weight_stream.cuh"
#include "engine/kernels/twin/checks.h"

namespace mlabench::kernels::cuda {
namespace {

constexpr int kThreads = 256, kWarps = kThreads / 32;
constexpr int kTileRows = 16;              // weight rows of one MMA tile (the m16 side)
constexpr int kXRows = 8;                  // rows of x in one MMA tile (the n8 side); XT tiles: 8 XT rows
constexpr int kTilesInFlight = 2;          // tile-groups (2 KB of weight each) a warp has requested ahead
constexpr int kMaxTiles = 2;               // RT: 4 would leave no room for a second group in flight (128 registers)
constexpr int kMaxScaleBytes = 32 * 1024;  // dynamic shared memory for the staged scales (+ <= 16 KB static)
constexpr int kMaxFusedBytes = 48 * 1024;  // the fused form's scales and codes (opted in: + the static reduction)
// Where x comes from: fp8_quantize_rows' codes in global memory, or the fused form's F32 / BF16 rows, or (kNorm)
// the fused form's rows computed from the input norm's inputs (norm_rows.cuh).
enum XMode { kCodes = 0, kF32 = 1, kBf16 = 2, kNorm = 3 };

// Floats before the fused form's codes in dynamic shared memory: the x and weight scales, rounded up to 16 bytes.
__host__ __device__ constexpr int64_t fused_codes_offset(int64_t groups, int rt, int xt) {
  return (groups * (kXRows * xt + rt) + 3) / 4 * 4;
}
static_assert(kFp8Block == 128, "a group is two halves of 64 k values, 16 a lane");

using stream::load_stream;

// The loads of one group for one warp: per tile r, weight rows g and g + 8 at both halves ([r][2 * half + row8]),
// and per x tile xt x row 8 xt + g at both halves.
template <int RT, int XT>
struct GroupLoads {
  uint4 w[RT][4];
  uint4 x[XT][2];
};

// Two e4m3 bytes of a 32-bit word (pair 0: bytes 0-1, pair 1: bytes 2-3) as an F16 pair, exact.
__device__ __forceinline__ uint32_t e4m3x2_to_f16x2(uint32_t word, int pair) {
  const __half2_raw h =
      __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(word >> (16 * pair)), __NV_E4M3);
  return static_cast<uint32_t>(h.x) | (static_cast<uint32_t>(h.y) << 16);
}

__device__ __forceinline__ uint32_t word_of(const uint4& v, int q) {
  return q == 0 ? v.x : q == 1 ? v.y : q == 2 ? v.z : v.w;
}

// d += A (16 x 16, F16, row) . B (16 x 8, F16, col), float32 accumulators.
__device__ __forceinline__ void mma_f16_16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                              uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Requests the weights of group `grp` for the lane's rows: chunks past k (a short last group) and rows past n read
// nothing and hold zeros.
template <int RT, int XT>
__device__ __forceinline__ void load_weights(GroupLoads<RT, XT>& b, const Fp8SkinnyGemmParams& p, int64_t row0,
                                             int64_t grp, int g, int t) {
#pragma unroll
  for (int r = 0; r < RT; ++r)
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int64_t row = row0 + r * kTileRows + e * 8 + g, c = grp * kFp8Block + h * 64 + t * 16;
        b.w[r][2 * h + e] = row < p.n && c < p.k ? load_stream(reinterpret_cast<const uint4*>(p.w + row * p.ld_w + c))
                                                 : make_uint4(0u, 0u, 0u, 0u);
      }
}

// x rows g, 8 + g, ... of group `grp`, zeros past m and past k: from global memory (L2-resident: every CTA reads
// it; after the PDL wait only), or in the fused form from the CTA's codes in shared memory (xq_s, rows of k bytes).
template <int RT, int XT, int kX>
__device__ __forceinline__ void load_x(GroupLoads<RT, XT>& b, const Fp8SkinnyGemmParams& p, const uint8_t* xq_s,
                                       int64_t grp, int g, int t) {
#pragma unroll
  for (int xt = 0; xt < XT; ++xt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t c = grp * kFp8Block + h * 64 + t * 16, row = xt * kXRows + g;
      if (!(row < p.m && c < p.k))
        b.x[xt][h] = make_uint4(0u, 0u, 0u, 0u);
      else if constexpr (kX == kCodes)
        b.x[xt][h] = __ldg(reinterpret_cast<const uint4*>(p.xq + row * p.ld_x + c));
      else
        b.x[xt][h] = *reinterpret_cast<const uint4*>(xq_s + row * p.k + c);
    }
}

// The fused form: x's rows quantised into xq_s [m][k] and xs [groups][8 XT] as fp8_quantize_rows would (one warp a
// (row, group) item, lane l holding values 4 l .. 4 l + 3; a group past k's end pads with zeros, which leave the
// amax as it is; fmaxf skips a NaN as the quantiser's does). k % 16 == 0, so a lane's 4 values are all in or all out.
// kNorm: the values rms_norm would write to norm.out (inv: each row's 1 / rms), in out's type.
template <int XT, int kX>
__device__ __forceinline__ void quantise_x(uint8_t* xq_s, float* xs, const Fp8SkinnyGemmParams& p, int64_t groups,
                                           int warp, int lane, const float* inv) {
  for (int64_t item = warp; item < p.m * groups; item += kWarps) {
    const int64_t r = item / groups, grp = item % groups, c = grp * kFp8Block + 4 * lane;
    float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    float amax = 0.0f;
    if (c < p.k) {
      if constexpr (kX == kNorm) norm_rows::values(p.norm, r, c / 4, inv[r], v);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if constexpr (kX == kNorm)
          v[j] = norm_rows::rounded(v[j], p.norm.out_type);
        else if constexpr (kX == kBf16)
          v[j] = __uint_as_float(static_cast<uint32_t>(static_cast<const uint16_t*>(p.x)[r * p.ld_x + c + j]) << 16);
        else
          v[j] = static_cast<const float*>(p.x)[r * p.ld_x + c + j];
        amax = fmaxf(amax, fabsf(v[j]));
      }
    }
    const float s = fp8::block_scale(fp8::warp_amax(amax));
    if (lane == 0) xs[grp * kXRows * XT + r] = s;
    if (c < p.k) {
      uint32_t word = 0;
#pragma unroll
      for (int j = 0; j < 4; ++j) word |= static_cast<uint32_t>(fp8::quantize(v[j], s)) << (8 * j);
      *reinterpret_cast<uint32_t*>(xq_s + r * p.k + c) = word;
    }
  }
}

// One group: per tile and x tile, 8 MMAs into a zeroed partial, then acc += partial * (x_scale * w_scale) with the
// product and the sum rounded separately, as the twin does. Each weight fragment is widened once and feeds the XT
// x tiles' MMAs. xs: the group's 8 XT x scales; ws: [RT][groups] weight scales.
template <int RT, int XT>
__device__ __forceinline__ void fold_group(const GroupLoads<RT, XT>& b, const float* xs, const float* ws,
                                           int64_t groups, int64_t grp, int t, float (&acc)[RT][XT][4]) {
  float d[RT][XT][4];
#pragma unroll
  for (int r = 0; r < RT; ++r)
#pragma unroll
    for (int xt = 0; xt < XT; ++xt)
#pragma unroll
      for (int q = 0; q < 4; ++q) d[r][xt][q] = 0.0f;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    uint32_t xf[XT][8];  // x's F16 pairs of this half: [x tile][2 q + pair] for word q
#pragma unroll
    for (int xt = 0; xt < XT; ++xt)
#pragma unroll
      for (int q = 0; q < 4; ++q)
#pragma unroll
        for (int pr = 0; pr < 2; ++pr) xf[xt][2 * q + pr] = e4m3x2_to_f16x2(word_of(b.x[xt][h], q), pr);
#pragma unroll
    for (int r = 0; r < RT; ++r)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        // A: a0 (row g, k pair 0), a1 (row g + 8, pair 0), a2 (row g, pair 1), a3 (row g + 8, pair 1); B alike.
        const uint32_t lo = word_of(b.w[r][2 * h], q), hi = word_of(b.w[r][2 * h + 1], q);
        const uint32_t a0 = e4m3x2_to_f16x2(lo, 0), a1 = e4m3x2_to_f16x2(hi, 0), a2 = e4m3x2_to_f16x2(lo, 1),
                       a3 = e4m3x2_to_f16x2(hi, 1);
#pragma unroll
        for (int xt = 0; xt < XT; ++xt) mma_f16_16816(d[r][xt], a0, a1, a2, a3, xf[xt][2 * q], xf[xt][2 * q + 1]);
      }
  }
  // d[r][xt]: (row g, x rows 8 xt + 2t, + 1), (row g + 8, the same x rows).
#pragma unroll
  for (int xt = 0; xt < XT; ++xt) {
    const float xs0 = xs[xt * kXRows + 2 * t], xs1 = xs[xt * kXRows + 2 * t + 1];
#pragma unroll
    for (int r = 0; r < RT; ++r) {
      const float w_s = ws[r * groups + grp], s0 = __fmul_rn(xs0, w_s), s1 = __fmul_rn(xs1, w_s);
      acc[r][xt][0] = __fadd_rn(acc[r][xt][0], __fmul_rn(d[r][xt][0], s0));
      acc[r][xt][1] = __fadd_rn(acc[r][xt][1], __fmul_rn(d[r][xt][1], s1));
      acc[r][xt][2] = __fadd_rn(acc[r][xt][2], __fmul_rn(d[r][xt][2], s0));
      acc[r][xt][3] = __fadd_rn(acc[r][xt][3], __fmul_rn(d[r][xt][3], s1));
    }
  }
}

// Shared memory (dynamic): x scales [groups][8 XT] (rows past m zero), then weight scales [RT][groups] (tiles past
// n zero: their block may lie past the grid). Only the ceil(k / 128) real groups are read: a padded grid's padding
// is never touched. After the PDL wait (x_scale is the previous kernel's output).
template <int RT, int XT, int kX>
__device__ __forceinline__ void stage_scales(float* xs, float* ws, const Fp8SkinnyGemmParams& p, int64_t row0,
                                             int64_t groups) {
  constexpr int kRows = kXRows * XT;
  for (int64_t e = threadIdx.x; e < groups * kRows; e += kThreads) {
    const int64_t grp = e / kRows, r = e % kRows;
    if (r >= p.m)
      xs[e] = 0.0f;
    else if constexpr (kX == kCodes)  // (the fused form's rows below m: quantise_x writes them)
      xs[e] = p.x_scale[grp * p.x_scale_group_stride + r];
  }
  for (int64_t e = threadIdx.x; e < RT * groups; e += kThreads) {
    const int64_t tile_row = row0 + (e / groups) * kTileRows;
    ws[e] = tile_row < p.n ? p.w_scale[(tile_row / kFp8Block) * p.w_scale_ld + e % groups] : 0.0f;
  }
}

// grid ceil(n / (16 RT)), block kThreads, dynamic shared memory groups * (8 XT + RT) floats (fused: then m x k
// codes).
template <int RT, int XT, int kX>
__global__ void __launch_bounds__(kThreads, 2) skinny_gemm_fp8_kernel(const Fp8SkinnyGemmParams p) {
  constexpr int kDepth = kTilesInFlight / RT;  // groups a warp has in flight
  constexpr int kRows = kXRows * XT;
  extern __shared__ float scales[];
  __shared__ float red[kWarps][RT][XT][4][32];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * RT * kTileRows;
  const int64_t groups = (p.k + kFp8Block - 1) / kFp8Block;
  GroupLoads<RT, XT> buf[kDepth];
  // The weights depend on no earlier kernel: their stream starts before the wait and overlaps its tail.
#pragma unroll
  for (int s = 0; s < kDepth; ++s)
    if (warp + s * kWarps < groups) load_weights(buf[s], p, row0, warp + s * kWarps, g, t);
  griddep_wait();
  griddep_launch_dependents();
  float* xs = scales;
  float* ws = scales + groups * kRows;
  uint8_t* xq_s = reinterpret_cast<uint8_t*>(scales + fused_codes_offset(groups, RT, XT));
  stage_scales<RT, XT, kX>(xs, ws, p, row0, groups);
  __shared__ float inv[kRows];  // kNorm: each row's 1 / rms
  if constexpr (kX == kNorm) {
    __shared__ float sums[kRows][32];
    float row_inv[kRows];
    norm_rows::inv_rms<kThreads, kRows>(p.norm, static_cast<int>(p.m), sums, row_inv);
#pragma unroll
    for (int i = 0; i < kRows; ++i)
      if (i < p.m) {
        if (threadIdx.x == 0) inv[i] = row_inv[i];
        norm_rows::write_outputs<kThreads>(p.norm, i, row_inv[i], blockIdx.x, gridDim.x);
      }
    __syncthreads();
  }
  if constexpr (kX != kCodes) {
    quantise_x<XT, kX>(xq_s, xs, p, groups, warp, lane, inv);
    __syncthreads();  // every warp's codes, before any warp reads another's
  }
#pragma unroll
  for (int s = 0; s < kDepth; ++s)
    if (warp + s * kWarps < groups) load_x<RT, XT, kX>(buf[s], p, xq_s, warp + s * kWarps, g, t);
  __syncthreads();

  float acc[RT][XT][4];
#pragma unroll
  for (int r = 0; r < RT; ++r)
#pragma unroll
    for (int xt = 0; xt < XT; ++xt)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[r][xt][q] = 0.0f;
  // buf[s] holds group base + s * kWarps; once folded it is refilled with the group kDepth * kWarps further on.
  for (int64_t base = warp; base < groups; base += kDepth * kWarps) {
#pragma unroll
    for (int s = 0; s < kDepth; ++s) {
      const int64_t grp = base + s * kWarps;
      if (grp >= groups) break;
      fold_group<RT, XT>(buf[s], xs + grp * kRows, ws, groups, grp, t, acc);
      const int64_t next = grp + kDepth * kWarps;
      if (next < groups) {
        load_weights(buf[s], p, row0, next, g, t);
        load_x<RT, XT, kX>(buf[s], p, xq_s, next, g, t);
      }
    }
  }

#pragma unroll
  for (int r = 0; r < RT; ++r)
#pragma unroll
    for (int xt = 0; xt < XT; ++xt)
#pragma unroll
      for (int q = 0; q < 4; ++q) red[warp][r][xt][q][lane] = acc[r][xt][q];
  __syncthreads();
  // Output (i, row0 + jr), ii = i % 8: accumulator q = 2 (jr % 16 >= 8) + ii % 2 of lane 4 (jr % 8) + ii / 2 of
  // tile jr / 16 and x tile i / 8. Consecutive threads take consecutive weight rows: coalesced stores of y's rows.
  for (int o = threadIdx.x; o < kRows * RT * kTileRows; o += kThreads) {
    const int i = o / (RT * kTileRows), jr = o % (RT * kTileRows);
    const int64_t j = row0 + jr;
    if (i >= p.m || j >= p.n) continue;
    const int r = jr / kTileRows, jt = jr % kTileRows, xt = i / kXRows, ii = i % kXRows;
    const int q = 2 * (jt >> 3) + (ii & 1), src = 4 * (jt & 7) + (ii >> 1);
    float sum = 0.0f;
#pragma unroll
    for (int v = 0; v < kWarps; ++v) sum = __fadd_rn(sum, red[v][r][xt][q][src]);
    if (p.y2 != nullptr && j >= p.n_y)
      p.y2[i * p.ldy2 + (j - p.n_y)] = sum;
    else
      p.y[i * p.ldy + j] = sum;
  }
}

// x tiles of 8 rows a launch takes: 1 up to 8 rows, 2 up to 16.
int x_tiles(int64_t m) { return m > kXRows ? 2 : 1; }

int64_t scale_bytes(int64_t k, int rt, int xt) { return (k + kFp8Block - 1) / kFp8Block * (kXRows * xt + rt) * 4; }

// Dynamic shared memory of a launch: the scales, then (fused) the m x k codes, 16-byte aligned.
int64_t smem_bytes(const Fp8SkinnyGemmParams& p, int rt) {
  const int64_t groups = (p.k + kFp8Block - 1) / kFp8Block;
  const int xt = x_tiles(p.m);
  return p.x == nullptr ? scale_bytes(p.k, rt, xt) : 4 * fused_codes_offset(groups, rt, xt) + p.m * p.k;
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

// The shapes and layouts the kernel takes; what check_skinny_gemm_fp8 refuses is an error, not "unsupported" (a
// caller asks this every decode step, so it throws nothing).
bool skinny_gemm_fp8_supported(const Fp8SkinnyGemmParams& p) {
  if (!(p.m >= 1 && p.m <= kSkinnyFp8MaxRows && p.k > 0 && p.k % 16 == 0 && p.ld_w % 16 == 0 && aligned16(p.w)))
    return false;
  if (p.norm.weight != nullptr) {  // fused, x from the input norm's inputs in norm_rows.cuh's 4-wide groups
    if (p.x == nullptr || !checks::is_input_norm_of(p.norm, p.x, p.ld_x, p.x_type, p.m, p.k) ||
        !rms_norm_in_groups_of_4(p.norm))
      return false;
  }
  if (p.x != nullptr)  // fused: x read a value at a time, any ld_x and alignment
    return p.xq == nullptr && (p.x_type == DType::F32 || p.x_type == DType::BF16) && p.ld_x >= p.k &&
           smem_bytes(p, kMaxTiles) <= kMaxFusedBytes;
  return p.ld_x % 16 == 0 && aligned16(p.xq) && scale_bytes(p.k, kMaxTiles, x_tiles(p.m)) <= kMaxScaleBytes;
}

void skinny_gemm_fp8(const Fp8SkinnyGemmParams& p, cudaStream_t s) {
  checks::check_skinny_gemm_fp8(p);
  if (p.m == 0) return;
  const int xt = x_tiles(p.m);
  MLABENCH_CHECK(skinny_gemm_fp8_supported(p),
                 "skinny_gemm_fp8: m {}, k {}, ld_x {}, ld_w {}, or xq / w not 16-byte aligned. HINT: ask "
                 "skinny_gemm_fp8_supported first and take Blas::linear_fp8 where it says no (ld_x and ld_w "
                 "multiples of 16, k <= {} at {} rows)",
                 p.m, p.k, p.ld_x, p.ld_w, kMaxScaleBytes / (4 * (kXRows * xt + kMaxTiles)) * kFp8Block, p.m);
  // The most rows per CTA that still gives two CTAs per SM: fewer reads of x per weight byte, same loads in flight.
  int rt = kMaxTiles;
  while (rt > 1 && (p.n + rt * kTileRows - 1) / (rt * kTileRows) < 2 * gpu::device_sm_count()) rt /= 2;
  const dim3 grid(static_cast<unsigned>((p.n + rt * kTileRows - 1) / (rt * kTileRows))), block(kThreads);
  const size_t smem = static_cast<size_t>(smem_bytes(p, rt));
  const int x = p.x == nullptr                ? kCodes
                : p.norm.weight != nullptr     ? kNorm
                : p.x_type == DType::BF16      ? kBf16
                                               : kF32;
  using Kernel = void (*)(Fp8SkinnyGemmParams);
  static constexpr Kernel kKernels[2][2][4] = {
      {{skinny_gemm_fp8_kernel<1, 1, kCodes>, skinny_gemm_fp8_kernel<1, 1, kF32>, skinny_gemm_fp8_kernel<1, 1, kBf16>,
        skinny_gemm_fp8_kernel<1, 1, kNorm>},
       {skinny_gemm_fp8_kernel<2, 1, kCodes>, skinny_gemm_fp8_kernel<2, 1, kF32>, skinny_gemm_fp8_kernel<2, 1, kBf16>,
        skinny_gemm_fp8_kernel<2, 1, kNorm>}},
      {{skinny_gemm_fp8_kernel<1, 2, kCodes>, skinny_gemm_fp8_kernel<1, 2, kF32>, skinny_gemm_fp8_kernel<1, 2, kBf16>,
        skinny_gemm_fp8_kernel<1, 2, kNorm>},
       {skinny_gemm_fp8_kernel<2, 2, kCodes>, skinny_gemm_fp8_kernel<2, 2, kF32>, skinny_gemm_fp8_kernel<2, 2, kBf16>,
        skinny_gemm_fp8_kernel<2, 2, kNorm>}}};
  // Dynamic shared memory up to kMaxFusedBytes (the fused form's codes) beside up to 16 KB of static reduction
  // buffer: past the default 48 KB, so each kernel opts in once a device.
  static std::atomic<uint64_t> opted_in[2][2][4]{};
  const Kernel kernel = kKernels[xt - 1][rt - 1][x];
  gpu::opt_in_shared_memory(reinterpret_cast<const void*>(kernel), kMaxFusedBytes, opted_in[xt - 1][rt - 1][x]);
  launch_pdl(kernel, grid, block, smem, s, p);
  MLABENCH_CUDA(cudaGetLastError());
}

}  // namespace mlabench::kernels::cuda
