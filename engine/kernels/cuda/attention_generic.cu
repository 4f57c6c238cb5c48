// Shape-generic attention kernels in float32: the path of the three attention launchers (attention.cu) for the
// engine's float32 precision (F32 cache), the F8_E4M3 caches' cases no tensor-core kernel takes (--kv-cache-dtype
// fp8: MLA decode with float32 operands, GQA prefill chunks at float32 precision; each value dequantised as cache_gather does) and head
// sizes that have no tensor-core instance there (the tiny test models, unusual configs). One block per (query row,
// head), keys in chunks of kChunk with an online softmax in float32; any head size, no split-KV. Correct and
// simple, not fast: real DeepSeek-V2 / Llama shapes take the instances in attention.cu.
#include <cuda_bf16.h>

#include "engine/kernels/cuda/attention_generic.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/fp8_device.cuh"

namespace mlabench::kernels::cuda::generic {

namespace {

constexpr int kThreads = 128;
constexpr int kChunk = 128;
constexpr int kMaxDvPerThread = 4;  // head value width <= 512

// Element i of a KV pool that is BF16 or (in the engine's float32 precision) F32.
__device__ float cached(const void* pool, bool is_f32, int64_t i) {
  return is_f32 ? static_cast<const float*>(pool)[i]
                : __uint_as_float(static_cast<uint32_t>(static_cast<const uint16_t*>(pool)[i]) << 16);
}

__device__ int64_t slot_of(const PagedCache& pc, int s, int64_t pos) {
  return static_cast<int64_t>(pc.block_tables[static_cast<int64_t>(s) * pc.max_blocks + pos / pc.block_size]) *
             pc.block_size + pos % pc.block_size;
}

struct MlaPrefillAccess {
  MlaPrefillParams p;
  int dk() const { return p.nope + p.rope; }
  int dv() const { return p.v; }
  __device__ float q(int64_t r, int h, int d) const { return p.q[r * p.ld_q + h * (p.nope + p.rope) + d]; }
  __device__ float k(int s, int64_t j, int h, int d) const {
    const int64_t row = p.cu_kv[s] + j;
    return d < p.nope ? p.kv[row * p.ld_kv + h * (p.nope + p.v) + d] : p.k_pe[row * p.ld_kpe + (d - p.nope)];
  }
  __device__ float v(int s, int64_t j, int h, int d) const {
    return p.kv[(p.cu_kv[s] + j) * p.ld_kv + h * (p.nope + p.v) + p.nope + d];
  }
  __device__ float* out(int64_t r, int h) const { return p.out + r * p.ld_out + h * p.v; }
};

struct MlaDecodeAccess {
  MlaDecodeParams p;
  int dk() const { return p.kv_lora + p.rope; }
  int dv() const { return p.kv_lora; }
  __device__ float q(int64_t r, int h, int d) const {
    const float x = d < p.kv_lora ? p.q_lat[r * p.ld_q_lat + h * p.kv_lora + d]
                                  : p.q_pe[r * p.ld_q_pe + h * p.q_pe_head_stride + (d - p.kv_lora)];
    // BF16 operands: q rounded as the tensor-core kernel rounds it (P stays float32 here, within its tolerance).
    return p.bf16_operands && p.cache_type == DType::BF16 ? __bfloat162float(__float2bfloat16_rn(x)) : x;
  }
  __device__ float k(int s, int64_t j, int, int d) const {
    if (p.cache_type == DType::F8_E4M3) {
      const Fp8SlotLayout l = p.fp8_layout();
      return fp8::slot_value(l, static_cast<const uint8_t*>(p.cache) + slot_of(p.paged, s, j) * l.bytes(), d);
    }
    return cached(p.cache, p.cache_type == DType::F32, slot_of(p.paged, s, j) * (p.kv_lora + p.rope) + d);
  }
  __device__ float v(int s, int64_t j, int h, int d) const { return k(s, j, h, d); }  // the latent is the value
  __device__ float* out(int64_t r, int h) const { return p.out + r * p.ld_out + h * p.kv_lora; }
};

struct GqaAccess {
  GqaAttentionParams p;
  int dk() const { return p.head_dim; }
  int dv() const { return p.head_dim; }
  __device__ float q(int64_t r, int h, int d) const { return p.q[r * p.ld_q + h * p.head_dim + d]; }
  __device__ int64_t at(int s, int64_t j, int h, int d) const {
    const int kvh = h / (p.n_heads / p.n_kv_heads);
    return slot_of(p.paged, s, j) * (int64_t{p.n_kv_heads} * p.head_dim) + kvh * p.head_dim + d;
  }
  // F8_E4M3: value (head kvh, d) of the slot, kvh * head_dim + d in the layout's terms.
  __device__ float fp8_at(const void* pool, int s, int64_t j, int h, int d) const {
    const Fp8SlotLayout l = p.fp8_layout();
    const int kvh = h / (p.n_heads / p.n_kv_heads);
    return fp8::slot_value(l, static_cast<const uint8_t*>(pool) + slot_of(p.paged, s, j) * l.bytes(),
                           int64_t{kvh} * p.head_dim + d);
  }
  __device__ float k(int s, int64_t j, int h, int d) const {
    if (p.cache_type == DType::F8_E4M3) return fp8_at(p.k_cache, s, j, h, d);
    return cached(p.k_cache, p.cache_type == DType::F32, at(s, j, h, d));
  }
  __device__ float v(int s, int64_t j, int h, int d) const {
    if (p.cache_type == DType::F8_E4M3) return fp8_at(p.v_cache, s, j, h, d);
    return cached(p.v_cache, p.cache_type == DType::F32, at(s, j, h, d));
  }
  __device__ float* out(int64_t r, int h) const { return p.out + r * p.ld_out + h * p.head_dim; }
};

// Block (sequence s, new row i of it; head h): attends causally to the sequence's keys 0..pos.
template <class A>
__global__ void __launch_bounds__(kThreads) attention_kernel(A a, const int32_t* cu_q, const int32_t* kv_len,
                                                             int max_q, int dk, int dv, float scale) {
  const int s = static_cast<int>(blockIdx.x / max_q);
  const int64_t i = blockIdx.x % max_q;
  const int h = static_cast<int>(blockIdx.y);
  const int64_t q_len = cu_q ? cu_q[s + 1] - cu_q[s] : 1;
  if (i >= q_len) return;
  const int64_t r = cu_q ? cu_q[s] + i : s;
  __shared__ float score[kChunk];
  __shared__ float red[kThreads / 32];
  __shared__ float stat[2];
  const int64_t n_keys = kv_len[s] - q_len + i + 1;
  float acc[kMaxDvPerThread] = {0, 0, 0, 0};
  float m = -INFINITY, l = 0.0f;
  for (int64_t j0 = 0; j0 < n_keys; j0 += kChunk) {
    const int64_t j = j0 + threadIdx.x;
    float sc = -INFINITY;
    if (threadIdx.x < kChunk && j < n_keys) {
      float dot = 0.0f;
      for (int d = 0; d < dk; ++d) dot += a.q(r, h, d) * a.k(s, j, h, d);
      sc = dot * scale;
    }
    if (threadIdx.x < kChunk) score[threadIdx.x] = sc;
    // Chunk max.
    float mx = sc;
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = mx;
    __syncthreads();
    if (threadIdx.x == 0) {
      float c = red[0];
      for (int w = 1; w < kThreads / 32; ++w) c = fmaxf(c, red[w]);
      const float m_new = fmaxf(m, c);
      float sum = 0.0f;
      for (int t = 0; t < kChunk && j0 + t < n_keys; ++t) {
        score[t] = expf(score[t] - m_new);
        sum += score[t];
      }
      stat[0] = m_new;
      stat[1] = sum;
    }
    __syncthreads();
    const float m_new = stat[0];
    const float corr = m == -INFINITY ? 0.0f : expf(m - m_new);
    l = l * corr + stat[1];
    m = m_new;
    const int64_t n = n_keys - j0 < kChunk ? n_keys - j0 : kChunk;
#pragma unroll
    for (int u = 0; u < kMaxDvPerThread; ++u) {
      const int d = static_cast<int>(threadIdx.x) + u * kThreads;
      if (d >= dv) break;
      float x = acc[u] * corr;
      for (int64_t t = 0; t < n; ++t) x += score[t] * a.v(s, j0 + t, h, d);
      acc[u] = x;
    }
    __syncthreads();
  }
  float* o = a.out(r, h);
#pragma unroll
  for (int u = 0; u < kMaxDvPerThread; ++u) {
    const int d = static_cast<int>(threadIdx.x) + u * kThreads;
    if (d < dv) o[d] = l > 0.0f ? acc[u] / l : 0.0f;
  }
}

template <class A>
void launch(const A& a, int n_seqs, int max_q, int heads, const int32_t* cu_q, const int32_t* kv_len, float scale,
            cudaStream_t stream, const char* what) {
  MLABENCH_CHECK(a.dv() <= kThreads * kMaxDvPerThread,
                 "{}: value width {} exceeds the generic kernel's {}. HINT: add an instance in attention.cu", what,
                 a.dv(), kThreads * kMaxDvPerThread);
  if (n_seqs == 0 || max_q == 0) return;
  const dim3 grid(static_cast<unsigned>(int64_t{n_seqs} * max_q), static_cast<unsigned>(heads));
  attention_kernel<<<grid, kThreads, 0, stream>>>(a, cu_q, kv_len, max_q, a.dk(), a.dv(), scale);
  MLABENCH_CUDA(cudaGetLastError());
}

}  // namespace

void mla_prefill_attention(const MlaPrefillParams& p, cudaStream_t s) {
  launch(MlaPrefillAccess{p}, p.batch.n_seqs, p.batch.max_q, p.n_heads, p.batch.cu_q, p.batch.kv_len, p.scale, s,
         "mla_prefill_attention");
}

void mla_decode_attention(const MlaDecodeParams& p, cudaStream_t s) {
  launch(MlaDecodeAccess{p}, p.n_seqs, 1, p.n_heads, nullptr, p.kv_len, p.scale, s, "mla_decode_attention");
}

void gqa_attention(const GqaAttentionParams& p, cudaStream_t s) {
  launch(GqaAccess{p}, p.batch.n_seqs, p.batch.max_q, p.n_heads, p.batch.cu_q, p.batch.kv_len, p.scale, s,
         "gqa_attention");
}

}  // namespace mlabench::kernels::cuda::generic
