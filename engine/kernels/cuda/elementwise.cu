// CUDA kernels and launchers of the elementwise ops: embedding, rms_norm (residual add fused), rope, silu_mul,
// cast, and the paged KV-cache (BF16, F32, or F8_E4M3 slots: --kv-cache-dtype fp8) write and gather. Their CPU
// twins, which define the results, are in engine/kernels/twin/elementwise.cpp, and so are the parameter checks both
// share.
//
// All of them are memory bound: each thread moves W consecutive elements per access (16 bytes where the
// pointers, leading dimensions and widths allow it, else narrower, down to scalar), rows are spread over the
// grid's y dimension (or over blocks / warps) with grid-stride loops so any row count fits the grid limits.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "core/check.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/fp8_device.cuh"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/cuda/latent_rows.cuh"
#include "engine/kernels/cuda/norm_rows.cuh"
#include "engine/kernels/cuda/pdl.cuh"
#include "engine/kernels/twin/checks.h"

namespace mlabench::kernels {

namespace cuda {

namespace {

using latent_rows::block_sum;
using latent_rows::store_fp8_slot;

// ---- storage formats and vector access -------------------------------------------------------------------

enum class Fmt { F32, BF16, F16 };

template <Fmt F>
struct Storage {
  using T = uint16_t;  // BF16 / F16 bit patterns, as the host keeps them
};
template <>
struct Storage<Fmt::F32> {
  using T = float;
};

template <Fmt F>
__device__ __forceinline__ float to_float(typename Storage<F>::T v) {
  if constexpr (F == Fmt::F32) {
    return v;
  } else if constexpr (F == Fmt::BF16) {
    return __uint_as_float(static_cast<uint32_t>(v) << 16);
  } else {
    return __half2float(__ushort_as_half(v));
  }
}

// Round to nearest even, as f32_to_bf16 / f32_to_f16 on the host (NaN stays a quiet NaN, its payload may differ).
template <Fmt F>
__device__ __forceinline__ typename Storage<F>::T from_float(float v) {
  if constexpr (F == Fmt::F32) {
    return v;
  } else if constexpr (F == Fmt::BF16) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(v));
  } else {
    return __half_as_ushort(__float2half_rn(v));
  }
}

template <class T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

// N consecutive elements in accesses of at most 16 bytes (the widest sm_90 load/store); the caller guarantees
// alignment to min(16, N * sizeof(T)) bytes.
template <class T, int N>
constexpr int pack_step() {
  return static_cast<int>(16 / sizeof(T)) < N ? static_cast<int>(16 / sizeof(T)) : N;
}

template <class T, int N>
__device__ __forceinline__ void load_vec(const T* p, T (&v)[N]) {
  constexpr int kStep = pack_step<T, N>();
#pragma unroll
  for (int k = 0; k < N; k += kStep) {
    const Pack<T, kStep> q = *reinterpret_cast<const Pack<T, kStep>*>(p + k);
#pragma unroll
    for (int j = 0; j < kStep; ++j) v[k + j] = q.v[j];
  }
}

template <class T, int N>
__device__ __forceinline__ void store_vec(T* p, const T (&v)[N]) {
  constexpr int kStep = pack_step<T, N>();
#pragma unroll
  for (int k = 0; k < N; k += kStep) {
    Pack<T, kStep> q;
#pragma unroll
    for (int j = 0; j < kStep; ++j) q.v[j] = v[k + j];
    *reinterpret_cast<Pack<T, kStep>*>(p + k) = q;
  }
}

template <Fmt F, int N>
__device__ __forceinline__ void load_floats(const void* base, int64_t i, float (&out)[N]) {
  using T = typename Storage<F>::T;
  T v[N];
  load_vec(static_cast<const T*>(base) + i, v);
#pragma unroll
  for (int j = 0; j < N; ++j) out[j] = to_float<F>(v[j]);
}

template <Fmt F, int N>
__device__ __forceinline__ void store_floats(void* base, int64_t i, const float (&in)[N]) {
  using T = typename Storage<F>::T;
  T v[N];
#pragma unroll
  for (int j = 0; j < N; ++j) v[j] = from_float<F>(in[j]);
  store_vec(static_cast<T*>(base) + i, v);
}

// ---- host-side dispatch ------------------------------------------------------------------------------------

template <class Fn>
void with_fmt(DType t, Fn&& fn) {
  switch (t) {
    case DType::F32:
      fn(std::integral_constant<Fmt, Fmt::F32>{});
      return;
    case DType::BF16:
      fn(std::integral_constant<Fmt, Fmt::BF16>{});
      return;
    case DType::F16:
      fn(std::integral_constant<Fmt, Fmt::F16>{});
      return;
    default:
      MLABENCH_FAIL("elementwise kernel: dtype {} is not one of F32, BF16, F16. HINT: convert the tensor first",
                    dtype_name(t));
  }
}

// One row-wise operand: rows start at ptr + k * ld elements of elem_bytes each.
struct Access {
  const void* ptr;
  int64_t ld;
  int elem_bytes;
};

// Runs fn(integral_constant<int, W>) with the widest W of Ws (listed widest first, ending in 1) at which `width`
// splits into W-element groups and every group of every operand is aligned for its vector access.
template <int... Ws, class Fn>
void with_width(int64_t width, std::initializer_list<Access> operands, Fn&& fn) {
  auto fits = [&](int w) {
    if (width % w != 0) return false;
    for (const Access& a : operands) {
      const int64_t align = std::min<int64_t>(16, static_cast<int64_t>(w) * a.elem_bytes);
      if (reinterpret_cast<uintptr_t>(a.ptr) % static_cast<uintptr_t>(align) != 0 || a.ld % w != 0) return false;
    }
    return true;
  };
  const bool launched = ((fits(Ws) && (fn(std::integral_constant<int, Ws>{}), true)) || ...);
  MLABENCH_ICHECK(launched, "with_width: no width fits; the list of widths must end in 1");
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

constexpr int64_t kMaxGridYZ = 65535;

// Blocks of up to 256 threads along a row's nvec vector groups (x) and one row per grid row (y, grid-stride).
struct RowsGrid {
  dim3 grid, block;
};
RowsGrid rows_grid(int64_t nvec, int64_t n_rows) {
  const int64_t threads = std::min<int64_t>(256, ceil_div(nvec, 32) * 32);
  const int64_t bx = std::min<int64_t>(ceil_div(nvec, threads), 1 << 16);
  const int64_t by = std::min<int64_t>(n_rows, kMaxGridYZ);
  return {dim3(static_cast<unsigned>(bx), static_cast<unsigned>(by)), dim3(static_cast<unsigned>(threads))};
}

// ---- kernels -------------------------------------------------------------------------------------------------

template <Fmt F, int W>
__global__ void embedding_kernel(float* __restrict__ out, const void* __restrict__ table, int64_t hidden,
                                 const int32_t* __restrict__ ids, int64_t n_rows) {
  const int64_t nvec = hidden / W;
  for (int64_t r = blockIdx.y; r < n_rows; r += gridDim.y) {
    const int64_t src = static_cast<int64_t>(ids[r]) * hidden;
    for (int64_t v = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; v < nvec;
         v += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      float x[W];
      load_floats<F, W>(table, src + v * W, x);
      store_vec(out + r * hidden + v * W, x);
    }
  }
}

// Vector groups per thread kept in registers between the sum of squares and the scaling; the launcher sizes the
// block so that rows up to 16K floats stay in registers, longer rows re-read the tail (cached in L1/L2).
constexpr int kRmsCache = 4;

// Group v of the row: x (+ d, the sum written to `to`: x itself, or residual_out's row).
template <int W>
__device__ __forceinline__ void rms_load(const float* x, const float* d, float* to, int64_t v, float (&val)[W]) {
  load_vec(x + v * W, val);
  if (d) {
    float dv[W];
    load_vec(d + v * W, dv);
#pragma unroll
    for (int j = 0; j < W; ++j) val[j] += dv[j];
    store_vec(to + v * W, val);
  }
}

template <Fmt F, int W, bool kOut2, Fmt F2>
__device__ __forceinline__ void rms_store(const RmsNormParams& p, int64_t r, int64_t v, const float (&val)[W],
                                          float inv) {
  float w[W], o[W];
  load_vec(p.weight + v * W, w);
#pragma unroll
  for (int j = 0; j < W; ++j) o[j] = __fmul_rn(__fmul_rn(val[j], inv), w[j]);  // normalise, then weight (HF order)
  store_floats<F, W>(p.out, r * p.ld_out + v * W, o);
  if constexpr (kOut2) store_floats<F2, W>(p.out2, r * p.ld_out2 + v * W, o);
}

// One block per row (grid-stride over rows). out may alias residual: each element is read, then written, by the
// same thread.
template <Fmt F, int W, bool kOut2, Fmt F2>
__global__ void __launch_bounds__(1024) rms_norm_kernel(const RmsNormParams p) {
  __shared__ float warp_sums[32];
  griddep_wait();  // a programmatic dependent launch (pdl.cuh): the inputs come from the previous kernel
  griddep_launch_dependents();
  const int64_t nvec = p.dim / W;
  const int64_t tid = threadIdx.x, nt = blockDim.x;
  for (int64_t r = blockIdx.x; r < p.n_rows; r += gridDim.x) {
    float* x = p.residual + r * p.ld_residual;
    const float* d = p.delta ? p.delta + r * p.ld_delta : nullptr;
    float* to = p.residual_out ? p.residual_out + r * p.ld_residual_out : x;  // where x + d goes
    float cache[kRmsCache][W];
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < kRmsCache; ++k) {
      const int64_t v = tid + k * nt;
      if (v < nvec) {
        rms_load<W>(x, d, to, v, cache[k]);
#pragma unroll
        for (int j = 0; j < W; ++j) ss = fmaf(cache[k][j], cache[k][j], ss);  // as norm_rows::inv_rms
      }
    }
    for (int64_t v = tid + kRmsCache * nt; v < nvec; v += nt) {
      float val[W];
      rms_load<W>(x, d, to, v, val);
#pragma unroll
      for (int j = 0; j < W; ++j) ss = fmaf(val[j], val[j], ss);
    }
    ss = block_sum(ss, warp_sums);
    const float inv = 1.0f / sqrtf(ss / static_cast<float>(p.dim) + p.eps);  // IEEE div and sqrt, as the twin
#pragma unroll
    for (int k = 0; k < kRmsCache; ++k) {
      const int64_t v = tid + k * nt;
      if (v < nvec) rms_store<F, W, kOut2, F2>(p, r, v, cache[k], inv);
    }
    for (int64_t v = tid + kRmsCache * nt; v < nvec; v += nt) {
      float val[W];
      load_vec(to + v * W, val);  // this thread wrote it (when delta) just above
      rms_store<F, W, kOut2, F2>(p, r, v, val, inv);
    }
  }
}

// One thread per (head, pair) of a row, rows over grid y. Products and sums rounded one by one (no FMA
// contraction) so the result is bit-identical to the twin's.
__global__ void rope_kernel(const RopeParams p) {
  griddep_wait();  // a programmatic dependent launch (pdl.cuh): the rows come from the previous kernel
  griddep_launch_dependents();
  const int64_t half = p.dim / 2, per_row = p.n_heads * half;
  for (int64_t r = blockIdx.y; r < p.n_rows; r += gridDim.y) {
    const int64_t pos = p.positions[r];
    const float* cs = p.cos + pos * half;
    const float* sn = p.sin + pos * half;
    for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < per_row;
         t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const int64_t h = t / half, i = t % half;
      float* x = p.x + r * p.ld + h * p.head_stride + p.offset;
      const int64_t a = p.interleaved ? 2 * i : i;
      const int64_t b = p.interleaved ? 2 * i + 1 : i + half;
      const float x0 = x[a], x1 = x[b], c = cs[i], s = sn[i];
      x[a] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
      x[b] = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
    }
  }
}

template <Fmt F, int W>
__global__ void silu_mul_kernel(const SiluMulParams p) {
  const int64_t nvec = p.inter / W;
  for (int64_t r = blockIdx.y; r < p.n_rows; r += gridDim.y) {
    const float* gate = p.gate_up + r * p.ld_in;
    for (int64_t v = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; v < nvec;
         v += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      float g[W], u[W], o[W];
      load_vec(gate + v * W, g);
      load_vec(gate + p.inter + v * W, u);
#pragma unroll
      for (int j = 0; j < W; ++j) o[j] = __fmul_rn(__fdiv_rn(g[j], __fadd_rn(1.0f, expf(-g[j]))), u[j]);
      store_floats<F, W>(p.out, r * p.ld_out + v * W, o);
    }
  }
}

template <Fmt In, Fmt F, int W>
__global__ void cast_kernel(const CastParams p) {
  griddep_wait();  // a programmatic dependent launch (pdl.cuh): the inputs come from the previous kernel
  griddep_launch_dependents();
  const int64_t nvec = p.n_cols / W;
  for (int64_t r = blockIdx.y; r < p.n_rows; r += gridDim.y) {
    for (int64_t v = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; v < nvec;
         v += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      float x[W];
      load_floats<In, W>(p.in, r * p.ld_in + v * W, x);
      store_floats<F, W>(p.out, r * p.ld_out + v * W, x);
    }
  }
}

// Warp-per-token kernels for the paged cache: a slot is one contiguous row of `width` BF16 (or F32) values, so
// a warp reads/writes it whole and the 8 warps of a block take 8 tokens.
constexpr int kCacheWarps = 8;

// cache_write into an F8_E4M3 pool: a warp a row, its groups one after another.
__global__ void cache_write_fp8_kernel(const CacheWriteParams p) {
  griddep_wait();  // a programmatic dependent launch (pdl.cuh): the rows come from the previous kernel
  griddep_launch_dependents();
  const Fp8SlotLayout l = p.fp8_layout();
  for (int64_t r = blockIdx.x * static_cast<int64_t>(kCacheWarps) + threadIdx.y; r < p.n_rows;
       r += static_cast<int64_t>(gridDim.x) * kCacheWarps)
    store_fp8_slot(l, p.src + r * p.ld_src, static_cast<uint8_t*>(p.cache) + p.slots[r] * l.bytes(), 0, 1,
                   static_cast<int>(threadIdx.x), static_cast<int>(threadIdx.x), 32);
}

template <Fmt F, int W>
__global__ void cache_write_kernel(const CacheWriteParams p) {
  griddep_wait();  // a programmatic dependent launch (pdl.cuh): the rows come from the previous kernel
  griddep_launch_dependents();
  const int64_t nvec = p.width / W;
  for (int64_t r = blockIdx.x * static_cast<int64_t>(kCacheWarps) + threadIdx.y; r < p.n_rows;
       r += static_cast<int64_t>(gridDim.x) * kCacheWarps) {
    const float* src = p.src + r * p.ld_src;
    const int64_t dst = p.slots[r] * p.width;
    for (int64_t v = threadIdx.x; v < nvec; v += 32) {
      float x[W];
      load_vec(src + v * W, x);
      store_floats<F, W>(p.cache, dst + v * W, x);
    }
  }
}

// One block per row (grid-stride), each row latent_rows::append_row (latent_rows.cuh, shared with the W_UK launch
// that runs it beside its product): four launches of a decode step's layer become one.
__global__ void __launch_bounds__(256) latent_append_kernel(const LatentAppendParams p) {
  __shared__ float warp_sums[32];
  griddep_wait();  // a programmatic dependent launch (pdl.cuh): the inputs come from the previous kernel
  griddep_launch_dependents();
  for (int64_t r = blockIdx.x; r < p.n_rows; r += gridDim.x) latent_rows::append_row(p, r, warp_sums);
}

// One block per row (grid-stride): every q and k head's rope pairs rotated in place as rope_kernel rotates them
// (products and sums rounded one by one), a k head's rotated pair also stored to the k pool from the same registers;
// then the k columns past rope_dim (partial rotary) and the v heads copied W at a time. Four launches of a decode
// step's GQA layer become one. No value is read after another thread writes it, so no barrier.
// kFp8 (F8_E4M3 pools): K and V stay in the row (float32) until a barrier, then the block's warps write both slots.
template <Fmt F, int W, bool kFp8>
__global__ void __launch_bounds__(256) kv_append_kernel(const KvAppendParams p) {
  griddep_wait();  // a programmatic dependent launch (pdl.cuh): the rows come from the previous kernel (the qkv GEMM)
  griddep_launch_dependents();
  const int64_t tid = threadIdx.x, nt = blockDim.x, half = p.rope_dim / 2, hd = p.head_dim;
  const int64_t kv_width = p.n_kv_heads * hd, k_col = p.n_heads * hd, tail = hd - p.rope_dim;
  for (int64_t r = blockIdx.x; r < p.n_rows; r += gridDim.x) {
    float* x = p.qkv + r * p.ld;
    const int64_t dst = p.slots[r] * kv_width;
    const int64_t pos = p.positions[r];
    const float* cs = p.cos + pos * half;
    const float* sn = p.sin + pos * half;
    for (int64_t t = tid; t < (p.n_heads + p.n_kv_heads) * half; t += nt) {
      const int64_t h = t / half, i = t % half;
      const int64_t a = p.interleaved ? 2 * i : i, b = p.interleaved ? 2 * i + 1 : i + half;
      float* v = x + h * hd;
      const float x0 = v[a], x1 = v[b], c = cs[i], s = sn[i];
      const float y0 = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
      const float y1 = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
      v[a] = y0;
      v[b] = y1;
      if (!kFp8 && h >= p.n_heads) {  // a k head: its rotated pair goes to the cache as well
        const int64_t k0 = dst + (h - p.n_heads) * hd;
        store_floats<F, 1>(p.k_cache, k0 + a, {y0});
        store_floats<F, 1>(p.k_cache, k0 + b, {y1});
      }
    }
    const float* vs = x + k_col + kv_width;
    if constexpr (kFp8) {
      const Fp8SlotLayout l = Fp8SlotLayout::heads(p.n_kv_heads, hd);
      const int warp = static_cast<int>(tid / 32), n_warps = static_cast<int>(nt / 32);
      const int lane = static_cast<int>(tid % 32);
      __syncthreads();  // the rotated k heads are in the row
      store_fp8_slot(l, x + k_col, static_cast<uint8_t*>(p.k_cache) + p.slots[r] * l.bytes(), warp, n_warps, lane,
                     static_cast<int>(tid), static_cast<int>(nt));
      store_fp8_slot(l, vs, static_cast<uint8_t*>(p.v_cache) + p.slots[r] * l.bytes(), warp, n_warps, lane,
                     static_cast<int>(tid), static_cast<int>(nt));
    } else {
      for (int64_t t = tid; t < p.n_kv_heads * tail; t += nt) {  // k columns RoPE leaves alone
        const int64_t h = t / tail, c = p.rope_dim + t % tail;
        store_floats<F, 1>(p.k_cache, dst + h * hd + c, {x[k_col + h * hd + c]});
      }
      for (int64_t v = tid; v < kv_width / W; v += nt) {
        float y[W];
        load_vec(vs + v * W, y);
        store_floats<F, W>(p.v_cache, dst + v * W, y);
      }
    }
  }
}

// Sequences over grid y; a sequence's tokens over (grid x, warp). kFp8: an F8_E4M3 pool (F unused, W 1), each value
// dequantised (fp8::slot_value).
template <Fmt F, Fmt Out, int W, bool kFp8 = false>
__global__ void cache_gather_kernel(const CacheGatherParams p) {
  const int64_t nvec = p.width / W;
  const Fp8SlotLayout l = p.fp8_layout();
  for (int32_t s = static_cast<int32_t>(blockIdx.y); s < p.n_seqs; s += static_cast<int32_t>(gridDim.y)) {
    const int32_t len = p.kv_len[s];
    const int32_t* table = p.block_tables + static_cast<int64_t>(s) * p.max_blocks;
    const int64_t out_row = static_cast<int64_t>(p.cu_kv[s]);
    for (int32_t pos = static_cast<int32_t>(blockIdx.x * kCacheWarps + threadIdx.y); pos < len;
         pos += static_cast<int32_t>(gridDim.x * kCacheWarps)) {
      const int64_t slot = static_cast<int64_t>(table[pos / p.block_size]) * p.block_size + pos % p.block_size;
      const int64_t src = slot * p.width, dst = (out_row + pos) * p.ld_out;
      for (int64_t v = threadIdx.x; v < nvec; v += 32) {
        float x[W];
        if constexpr (kFp8)
          x[0] = fp8::slot_value(l, static_cast<const uint8_t*>(p.cache) + slot * l.bytes(), v);
        else
          load_floats<F, W>(p.cache, src + v * W, x);
        store_floats<Out, W>(p.out, dst + v * W, x);  // Out = F: the same bits (BF16 widens to float exactly)
      }
    }
  }
}

}  // namespace

// ---- launchers -----------------------------------------------------------------------------------------------

void embedding(const EmbeddingParams& p, cudaStream_t s) {
  checks::check_embedding(p);
  if (p.n_rows == 0) return;
  const int esz = static_cast<int>(dtype_size(p.table_type));
  with_fmt(p.table_type, [&](auto fmt) {
    with_width<8, 4, 1>(p.hidden, {{p.table, p.hidden, esz}, {p.out, p.hidden, 4}}, [&](auto w) {
      const int64_t nvec = p.hidden / decltype(w)::value;
      const RowsGrid g = rows_grid(nvec, p.n_rows);
      embedding_kernel<decltype(fmt)::value, decltype(w)::value>
          <<<g.grid, g.block, 0, s>>>(p.out, p.table, p.hidden, p.ids, p.n_rows);
    });
  });
  MLABENCH_CUDA(cudaGetLastError());
}

namespace {

// rms_norm's operands as with_width sees them (absent ones repeat a present one).
template <class Fn>
void with_rms_norm_width(const RmsNormParams& p, Fn&& fn) {
  const int osz = static_cast<int>(dtype_size(p.out_type));
  const int o2sz = p.out2 ? static_cast<int>(dtype_size(p.out2_type)) : 4;
  with_width<4, 1>(p.dim,
                   {{p.residual, p.ld_residual, 4},
                    {p.delta ? static_cast<const void*>(p.delta) : p.residual, p.delta ? p.ld_delta : 0, 4},
                    {p.residual_out ? static_cast<const void*>(p.residual_out) : p.residual,
                     p.residual_out ? p.ld_residual_out : p.ld_residual, 4},
                    {p.out, p.ld_out, osz},
                    {p.out2 ? p.out2 : p.out, p.out2 ? p.ld_out2 : p.ld_out, p.out2 ? o2sz : osz},
                    {p.weight, 0, 4}},
                   fn);
}

}  // namespace

bool rms_norm_in_groups_of_4(const RmsNormParams& p) {
  bool four = false;
  with_rms_norm_width(p, [&](auto w) { four = decltype(w)::value == 4; });
  return four;
}

void rms_norm(const RmsNormParams& p, cudaStream_t s) {
  checks::check_rms_norm(p);
  if (p.n_rows == 0) return;
  // out2 absent: the launch below reads it as F32 at out's place and never stores it (kOut2 false).
  const DType type2 = p.out2 ? p.out2_type : DType::F32;
  with_fmt(p.out_type, [&](auto fmt) {
    with_fmt(type2, [&](auto fmt2) {
      with_rms_norm_width(p,
                       [&](auto w) {
                         // About two vector groups per thread: enough threads to keep loads in flight, few enough
                         // that the sum's reduction stays cheap; rows up to kRmsCache groups per thread stay in
                         // registers. The products that normalise their own input (norm_rows.cuh) follow this.
                         const int64_t nvec = p.dim / decltype(w)::value;
                         const int64_t threads = norm_rows::rms_norm_threads(nvec);
                         const auto grid = static_cast<unsigned>(std::min<int64_t>(p.n_rows, INT32_MAX));
                         constexpr Fmt F = decltype(fmt)::value, F2 = decltype(fmt2)::value;
                         constexpr int W = decltype(w)::value;
                         if (p.out2 == nullptr) {
                           if constexpr (F2 == Fmt::F32)
                             launch_pdl(rms_norm_kernel<F, W, false, Fmt::F32>, dim3(grid), dim3(static_cast<unsigned>(threads)), 0, s, p);
                         } else {
                           launch_pdl(rms_norm_kernel<F, W, true, F2>, dim3(grid), dim3(static_cast<unsigned>(threads)), 0, s, p);
                         }
                       });
    });
  });
  MLABENCH_CUDA(cudaGetLastError());
}

void rope(const RopeParams& p, cudaStream_t s) {
  checks::check_rope(p);
  if (p.n_rows == 0) return;
  const RowsGrid g = rows_grid(p.n_heads * (p.dim / 2), p.n_rows);
  launch_pdl(rope_kernel, g.grid, g.block, 0, s, p);
  MLABENCH_CUDA(cudaGetLastError());
}

void silu_mul(const SiluMulParams& p, cudaStream_t s) {
  checks::check_silu_mul(p);
  if (p.n_rows == 0) return;
  const int osz = static_cast<int>(dtype_size(p.out_type));
  with_fmt(p.out_type, [&](auto fmt) {
    with_width<4, 1>(p.inter, {{p.gate_up, p.ld_in, 4}, {p.out, p.ld_out, osz}}, [&](auto w) {
      const RowsGrid g = rows_grid(p.inter / decltype(w)::value, p.n_rows);
      silu_mul_kernel<decltype(fmt)::value, decltype(w)::value><<<g.grid, g.block, 0, s>>>(p);
    });
  });
  MLABENCH_CUDA(cudaGetLastError());
}

void cast(const CastParams& p, cudaStream_t s) {
  checks::check_cast(p);
  if (p.n_rows == 0) return;
  const int osz = static_cast<int>(dtype_size(p.out_type)), isz = static_cast<int>(dtype_size(p.in_type));
  with_fmt(p.in_type, [&](auto in_fmt) {
    with_fmt(p.out_type, [&](auto fmt) {
      with_width<4, 1>(p.n_cols, {{p.in, p.ld_in, isz}, {p.out, p.ld_out, osz}}, [&](auto w) {
        const RowsGrid g = rows_grid(p.n_cols / decltype(w)::value, p.n_rows);
        launch_pdl(cast_kernel<decltype(in_fmt)::value, decltype(fmt)::value, decltype(w)::value>, g.grid, g.block, 0, s,
                   p);
      });
    });
  });
  MLABENCH_CUDA(cudaGetLastError());
}

void cache_write(const CacheWriteParams& p, cudaStream_t s) {
  checks::check_cache_write(p);
  if (p.n_rows == 0) return;
  if (p.cache_type == DType::F8_E4M3) {
    const int64_t blocks = std::min<int64_t>(ceil_div(p.n_rows, kCacheWarps), INT32_MAX);
    launch_pdl(cache_write_fp8_kernel, dim3(static_cast<unsigned>(blocks)), dim3(32, kCacheWarps), 0, s, p);
    MLABENCH_CUDA(cudaGetLastError());
    return;
  }
  const int csz = static_cast<int>(dtype_size(p.cache_type));
  with_fmt(p.cache_type, [&](auto fmt) {
    with_width<8, 4, 1>(p.width, {{p.src, p.ld_src, 4}, {p.cache, p.width, csz}}, [&](auto w) {
      const int64_t blocks = std::min<int64_t>(ceil_div(p.n_rows, kCacheWarps), INT32_MAX);
      launch_pdl(cache_write_kernel<decltype(fmt)::value, decltype(w)::value>, dim3(static_cast<unsigned>(blocks)),
                 dim3(32, kCacheWarps), 0, s, p);
    });
  });
  MLABENCH_CUDA(cudaGetLastError());
}

void latent_append(const LatentAppendParams& p, cudaStream_t s) {
  checks::check_latent_append(p);
  if (p.n_rows == 0) return;
  const auto blocks = static_cast<unsigned>(std::min<int64_t>(p.n_rows, INT32_MAX));
  launch_pdl(latent_append_kernel, dim3(blocks), dim3(256), 0, s, p);
  MLABENCH_CUDA(cudaGetLastError());
}

void kv_append(const KvAppendParams& p, cudaStream_t s) {
  checks::check_kv_append(p);
  if (p.n_rows == 0) return;
  const auto blocks = static_cast<unsigned>(std::min<int64_t>(p.n_rows, INT32_MAX));
  const int csz = static_cast<int>(dtype_size(p.cache_type));
  const int64_t kv_width = p.n_kv_heads * p.head_dim;
  if (p.cache_type == DType::F8_E4M3) {
    launch_pdl(kv_append_kernel<Fmt::F32, 1, true>, dim3(blocks), dim3(256), 0, s, p);
    MLABENCH_CUDA(cudaGetLastError());
    return;
  }
  with_fmt(p.cache_type, [&](auto fmt) {
    with_width<4, 1>(kv_width, {{p.qkv + (p.n_heads + p.n_kv_heads) * p.head_dim, p.ld, 4}, {p.v_cache, kv_width, csz}},
                     [&](auto w) {
                       launch_pdl(kv_append_kernel<decltype(fmt)::value, decltype(w)::value, false>, dim3(blocks),
                                  dim3(256), 0, s, p);
                     });
  });
  MLABENCH_CUDA(cudaGetLastError());
}

void cache_gather(const CacheGatherParams& p, cudaStream_t s) {
  checks::check_cache_gather(p);
  if (p.n_seqs == 0) return;
  // Token counts live on the device, so size the grid from the machine instead: about 4 blocks per SM over
  // all sequences; each block strides through its sequence's tokens.
  const int64_t by = std::min<int64_t>(p.n_seqs, kMaxGridYZ);
  const int64_t bx = std::clamp<int64_t>(ceil_div(4 * static_cast<int64_t>(gpu::device_sm_count()), by), 1, 1 << 16);
  const int csz = static_cast<int>(dtype_size(p.cache_type)), osz = static_cast<int>(dtype_size(p.out_type));
  const dim3 grid(static_cast<unsigned>(bx), static_cast<unsigned>(by)), block(32, kCacheWarps);
  if (p.cache_type == DType::F8_E4M3) {
    if (p.out_type == DType::F32)
      cache_gather_kernel<Fmt::F32, Fmt::F32, 1, true><<<grid, block, 0, s>>>(p);
    else
      cache_gather_kernel<Fmt::F32, Fmt::BF16, 1, true><<<grid, block, 0, s>>>(p);
    MLABENCH_CUDA(cudaGetLastError());
    return;
  }
  with_fmt(p.cache_type, [&](auto fmt) {
    with_width<8, 4, 1>(p.width, {{p.out, p.ld_out, osz}, {p.cache, p.width, csz}}, [&](auto w) {
      constexpr Fmt F = decltype(fmt)::value;
      constexpr int W = decltype(w)::value;
      if (p.out_type == DType::F32)
        cache_gather_kernel<F, Fmt::F32, W><<<grid, block, 0, s>>>(p);
      else
        cache_gather_kernel<F, F, W><<<grid, block, 0, s>>>(p);
    });
  });
  MLABENCH_CUDA(cudaGetLastError());
}

}  // namespace cuda

}  // namespace mlabench::kernels
