// Host helpers of the Hopper (sm_90a) kernels, flash prefill and the grouped expert GEMM: whether this build and
// device run them, and the TMA tensor maps they read through. Defined in hopper.cu, compiled with those kernels.
#pragma once

#include <cuda.h>

#include <cstdint>

namespace mlabench::kernels::cuda::hopper {

/// True where this build carries sm_90a code (a build for compute capability 9.0) and the current device is a
/// compute capability 9.0 GPU (H100, H200): the wgmma and TMA kernels can run.
bool sm90a_available();

/// A 2-D tensor map over BF16 rows (`cols` columns of `rows` rows, `row_bytes` apart) in boxes of 64 columns x
/// `box_rows` rows with the 128-byte swizzle (one box is one sw128 block of a wgmma operand); boxes past the
/// extent read as zeros. Through the driver's entry point, so the build links no libcuda. `what` names the caller
/// in errors.
/// `l2_promotion`: the L2 fill size of the box's rows (256 bytes unless the caller reads rows whose neighbours it
/// does not want).
CUtensorMap tensor_map_bf16_2d(const void* base, uint64_t cols, uint64_t rows, uint64_t row_bytes, uint32_t box_rows,
                               const char* what,
                               CUtensorMapL2promotion l2_promotion = CU_TENSOR_MAP_L2_PROMOTION_L2_256B);

/// The same over one-byte elements (e4m3 codes): boxes of 128 columns (one 128-byte swizzle row) x `box_rows`.
CUtensorMap tensor_map_bytes_2d(const void* base, uint64_t cols, uint64_t rows, uint64_t row_bytes, uint32_t box_rows,
                                const char* what,
                                CUtensorMapL2promotion l2_promotion = CU_TENSOR_MAP_L2_PROMOTION_L2_256B);

/// One-byte elements in boxes of `box_cols` (a multiple of 16) x `box_rows`, unswizzled: small side arrays of a row
/// (the FP8 KV cache's group scales) that threads read as plain shared memory.
CUtensorMap tensor_map_bytes_2d_plain(const void* base, uint64_t cols, uint64_t rows, uint64_t row_bytes,
                                      uint32_t box_cols, uint32_t box_rows, const char* what);

}  // namespace mlabench::kernels::cuda::hopper
