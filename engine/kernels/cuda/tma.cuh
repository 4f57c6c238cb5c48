// Hopper tensor-memory-accelerator copies (TMA, sm_90) and the shared-memory barriers they complete on, for the flash
// prefill kernel and the grouped expert GEMM: one thread issues a 2-D tile copy from a tensor map into shared
// memory, laid out with the map's swizzle, and the copy's bytes count down an mbarrier that the consumers wait on.
// Device code; include only from .cu files (the callers guard their use with __CUDA_ARCH_FEAT_SM90_ALL). The host
// side (tensor map encoding through the driver entry point) is hopper::tensor_map_bf16_2d (hopper.h).
#pragma once

#include <cuda.h>

#include <cstdint>

namespace mlabench::kernels::cuda::tma {

/// A barrier at shared address `bar` expecting `count` arrivals a phase.
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
/// Makes initialised barriers visible to the other threads and to the TMA unit (then a __syncthreads).
__device__ __forceinline__ void mbar_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\nfence.proxy.async.shared::cta;\n" ::: "memory");
}
/// This thread's arrival, announcing `bytes` more that copies will deliver before the phase completes.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
/// This thread's plain arrival (a consumer releasing a stage back to the producer).
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
/// Waits until the phase of parity `parity` has completed (every arrival and every expected byte).
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}
/// Copies the box at (column x, row y) of `map` to shared address `dst` (aligned as the map's swizzle needs:
/// 1024 bytes for 128-byte swizzle); its bytes complete on `bar`. `map` must live in kernel parameter space
/// (__grid_constant__) or global memory.
__device__ __forceinline__ void load_2d(uint32_t dst, const CUtensorMap* map, int x, int y, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
          dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(x), "r"(y), "r"(bar)
      : "memory");
}

/// An L2 eviction policy for data read once (createpolicy: evict_first over the whole access).
__device__ __forceinline__ uint64_t evict_first_policy() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}
/// The default L2 policy as a cache-policy operand (data several CTAs read, e.g. MLA heads in more than one group).
__device__ __forceinline__ uint64_t evict_normal_policy() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_normal.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}
/// load_2d with an L2 cache policy (evict_first_policy) on the copy's reads.
__device__ __forceinline__ void load_2d_hint(uint32_t dst, const CUtensorMap* map, int x, int y, uint32_t bar,
                                             uint64_t policy) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1, {%2, %3}], "
      "[%4], %5;\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(x), "r"(y), "r"(bar), "l"(policy)
      : "memory");
}

}  // namespace mlabench::kernels::cuda::tma
