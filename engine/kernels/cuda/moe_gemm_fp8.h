// The FP8 (e4m3, W8A8, DeepSeek-V3 block scales) grouped expert GEMM: moe_grouped_gemm's kernel for
// dtype F8_E4M3 (moe_gemm_fp8.cu; twin: engine/kernels/twin/moe_gemm.cpp). Launcher conventions as kernels.h: no
// synchronisation, no allocation, graph-capturable.
#pragma once

#include <cuda_runtime_api.h>

#include "engine/kernels/kernel_params.h"

namespace mlabench::kernels::cuda {

/// y (STORE, float32) or act (SWIGLU, STORE_DT: BF16) of MoeGroupedGemmParams with dtype F8_E4M3: per 128-value k
/// group the e4m3 products summed in float32, times x_scale[r, g] * w_scale[j / 128, g], summed over the groups.
/// Row counts come from the device-side offsets (null with one expert: rows [0, max_rows)). Besides
/// check_moe_grouped_gemm, x and w must be 16-byte aligned. moe_grouped_gemm calls it for F8_E4M3.
void moe_grouped_gemm_fp8(const MoeGroupedGemmParams& p, cudaStream_t s);

}  // namespace mlabench::kernels::cuda
