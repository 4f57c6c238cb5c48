// Stands in for the CUDA kernel tests in a build without nvcc, so the suite says what did not run.
#include <gtest/gtest.h>

TEST(CudaKernels, SkippedWithoutCuda) {
  GTEST_SKIP() << "SKIPPED (built without CUDA): no nvcc was found at configure time; the CUDA kernels and their "
                  "tests build with the CUDA toolkit (tools/gpu/check.sh on the GPU machine)";
}
