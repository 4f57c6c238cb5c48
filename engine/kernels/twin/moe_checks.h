// Parameter checks shared by the MoE CUDA launchers (and gpu::MoeLayer) and their CPU twins: one definition of
// what the twin and the kernel accept.
#pragma once

#include "engine/kernels/kernel_params.h"

namespace mlabench::kernels::checks {

/// Shapes, dtype and pointers of a grouped expert GEMM (the values behind `offsets` are the twin's to check:
/// the kernel cannot read them on the host).
void check_moe_grouped_gemm(const MoeGroupedGemmParams& p);

/// Shapes, dtype and pointers of one MoE layer (defined in engine/kernels/twin/moe_layer.cpp); the router's
/// method and groups are checked by the router itself.
void check_moe_layer(const MoeLayerParams& p);

/// The fused norm + router of a decode step (defined in engine/kernels/twin/moe.cpp): the norm's check
/// (check_rms_norm), out float32, router_w and logits set, at least one row; the router's method and groups are the
/// router's to check.
void check_norm_router(const NormRouterParams& p);

/// moe_gather's FP8 form (out_q set; defined in engine/kernels/twin/moe.cpp): out null, out_scale set, elem_type
/// BF16 or F32. Nothing where out_q is null (the copy form).
void check_moe_gather_fp8(const MoeGatherParams& p, const char* who);

}  // namespace mlabench::kernels::checks
