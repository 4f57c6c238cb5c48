// Programmatic dependent launch (PDL, sm_90+), for the kernels of a decode step (docs/perf-notes.md, issue 16
// round 3). A kernel launched by launch_pdl may be placed on the GPU while the kernel before it in the stream still
// runs, once every CTA of that kernel has called griddep_launch_dependents() or exited. So a launched kernel:
//   - calls griddep_wait() in every CTA before it reads or writes anything an earlier kernel of the stream reads
//     or writes (the wait returns once the previous grid has finished and its writes are visible; as every
//     PDL kernel waits before it ends, "finished" covers all earlier kernels too);
//   - may do work that touches no such memory before the wait: skinny_gemm loads its weights there, so a
//     projection's weight stream overlaps the previous kernel's tail;
//   - calls griddep_launch_dependents() where the next kernel may be placed (at its start for short kernels).
// Below sm_90, for a kernel launched without the attribute, and under MLABENCH_PDL=0 (programmatic_launch_enabled)
// both calls are no-ops and the launch is an ordinary one.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "engine/kernels/cuda/cuda_check.h"

namespace mlabench::kernels::cuda {

__device__ __forceinline__ void griddep_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void griddep_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

/// kernel<<<grid, block, smem, stream>>>(args...) as a programmatic dependent launch where enabled.
template <class... Params, class... Args>
void launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1]{};
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = gpu::programmatic_launch_enabled() ? 1 : 0;
  MLABENCH_CUDA(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace mlabench::kernels::cuda
