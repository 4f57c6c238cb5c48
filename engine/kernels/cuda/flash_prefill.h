// The BF16 flash prefill kernel (flash_prefill.cu), reached through the public launchers in attention.cu when the
// engine passes BF16 operands (MlaPrefillParams::q_bf16, GqaAttentionParams::q_bf16).
#pragma once

#include <cuda_runtime_api.h>

#include "engine/kernels/kernel_params.h"

namespace mlabench::kernels::cuda::flash {

/// MLA prefill, decompressed keys and values in BF16 (mla_prefill_bf16_supported head sizes).
void mla_prefill_bf16(const MlaPrefillParams& p, cudaStream_t s);
/// MHA/GQA over the paged BF16 pools with BF16 queries (gqa_prefill_bf16_supported head sizes), no split.
void gqa_prefill_bf16(const GqaAttentionParams& p, cudaStream_t s);
/// Which kernel the two launchers run on this device ("pipe", "wgmma" or "mma"; MLABENCH_FLASH overrides the
/// choice), for benchmark rows and logs.
const char* kernel_name();

}  // namespace mlabench::kernels::cuda::flash
