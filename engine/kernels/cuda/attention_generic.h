// Shape-generic attention kernels (attention_generic.cu): what the attention launchers fall back to for head
// sizes without a tensor-core instance. Same parameter structs and semantics; split-KV scratch is ignored.
#pragma once

#include <cuda_runtime_api.h>

#include "engine/kernels/kernel_params.h"

namespace mlabench::kernels::cuda::generic {

void mla_prefill_attention(const MlaPrefillParams& p, cudaStream_t s);
void mla_decode_attention(const MlaDecodeParams& p, cudaStream_t s);
void gqa_attention(const GqaAttentionParams& p, cudaStream_t s);

}  // namespace mlabench::kernels::cuda::generic
