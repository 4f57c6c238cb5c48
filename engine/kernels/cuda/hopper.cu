// Host helpers of the Hopper kernels (hopper.h). Compiled in the sm_90a object library, where MLABENCH_HAS_SM90A
// says the build carries that code.
#include "engine/kernels/cuda/hopper.h"

#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <atomic>

#include "core/check.h"

namespace mlabench::kernels::cuda::hopper {

bool sm90a_available() {
#ifdef MLABENCH_HAS_SM90A
  // Asked once per device (launchers call this every launch): 1 + (capability == 9.0); 0 = not yet asked.
  static std::atomic<int> known[64]{};
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  if (dev >= 0 && dev < 64) {
    const int k = known[dev].load(std::memory_order_relaxed);
    if (k != 0) return k == 2;
  }
  const bool yes = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
                   cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess &&
                   major == 9 && minor == 0;
  if (dev >= 0 && dev < 64) known[dev].store(yes ? 2 : 1, std::memory_order_relaxed);
  return yes;
#else
  return false;
#endif
}

namespace {

// Rows of `elem_bytes`-byte elements in boxes of box_bytes x box_rows, with the 128-byte swizzle (box_bytes 128: one
// sw128 row) or none.
CUtensorMap tensor_map_2d(CUtensorMapDataType type, uint32_t elem_bytes, const void* base, uint64_t cols,
                          uint64_t rows, uint64_t row_bytes, uint32_t box_bytes, uint32_t box_rows, const char* what,
                          CUtensorMapL2promotion l2_promotion, CUtensorMapSwizzle swizzle) {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult status{};
    const cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault,
                                                           &status);
    MLABENCH_CHECK(e == cudaSuccess && status == cudaDriverEntryPointSuccess && fn != nullptr,
                   "TMA tensor maps: the driver has no cuTensorMapEncodeTiled (error {}, status {}). HINT: a CUDA 12+ "
                   "driver is needed for the TMA kernels (MLABENCH_FLASH=pipe-cpasync runs flash prefill without them)",
                   static_cast<int>(e), static_cast<int>(status));
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  CUtensorMap m;
  const cuuint64_t dims[2] = {cols, rows}, strides[1] = {row_bytes};
  const cuuint32_t box[2] = {box_bytes / elem_bytes, box_rows}, elem[2] = {1, 1};
  const CUresult r = encode(&m, type, 2, const_cast<void*>(base), dims, strides, box, elem,
                            CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, l2_promotion, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  MLABENCH_CHECK(r == CUDA_SUCCESS,
                 "{}: cuTensorMapEncodeTiled failed ({}) for {} x {} elements of {} bytes at {} bytes a row, boxes of "
                 "{} x {}. HINT: rows must start 16-byte aligned with a row stride that is a multiple of 16 bytes",
                 what, static_cast<int>(r), cols, rows, elem_bytes, row_bytes, box_bytes / elem_bytes, box_rows);
  return m;
}

}  // namespace

CUtensorMap tensor_map_bf16_2d(const void* base, uint64_t cols, uint64_t rows, uint64_t row_bytes, uint32_t box_rows,
                               const char* what, CUtensorMapL2promotion l2_promotion) {
  return tensor_map_2d(CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, base, cols, rows, row_bytes, 128, box_rows, what,
                       l2_promotion, CU_TENSOR_MAP_SWIZZLE_128B);
}

CUtensorMap tensor_map_bytes_2d(const void* base, uint64_t cols, uint64_t rows, uint64_t row_bytes, uint32_t box_rows,
                                const char* what, CUtensorMapL2promotion l2_promotion) {
  return tensor_map_2d(CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, base, cols, rows, row_bytes, 128, box_rows, what,
                       l2_promotion, CU_TENSOR_MAP_SWIZZLE_128B);
}

CUtensorMap tensor_map_bytes_2d_plain(const void* base, uint64_t cols, uint64_t rows, uint64_t row_bytes,
                                      uint32_t box_cols, uint32_t box_rows, const char* what) {
  return tensor_map_2d(CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, base, cols, rows, row_bytes, box_cols, box_rows, what,
                       CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_SWIZZLE_NONE);
}

}  // namespace mlabench::kernels::cuda::hopper
