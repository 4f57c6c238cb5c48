// What the weight-streaming kernels (skinny_gemm.cu, moe_decode.cu) share: the 16-byte streaming load, a chunk's
// unpacking to float32, and the SwiGLU product as silu_mul computes it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace mlabench::kernels::cuda::stream {

/// 16 bytes read once: non-coherent, no L1 allocation (every weight is read once per launch).
__device__ __forceinline__ uint4 load_stream(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

/// One 16-byte chunk as float32 values: 8 BF16 or 4 float32 (kF32).
template <bool kF32>
__device__ __forceinline__ void unpack_chunk(const uint4& v, float (&f)[kF32 ? 4 : 8]) {
  const uint32_t u[4] = {v.x, v.y, v.z, v.w};
  if constexpr (kF32) {
#pragma unroll
    for (int j = 0; j < 4; ++j) f[j] = __uint_as_float(u[j]);
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      f[2 * j] = __uint_as_float(u[j] << 16);
      f[2 * j + 1] = __uint_as_float(u[j] & 0xffff0000u);
    }
  }
}

/// silu(g) * u exactly as silu_mul's kernel and twin compute it.
__device__ __forceinline__ float silu_times(float g, float u) {
  return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
}

}  // namespace mlabench::kernels::cuda::stream
