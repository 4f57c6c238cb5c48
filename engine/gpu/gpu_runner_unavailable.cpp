// A CPU-only build's stand-in for engine/gpu/gpu_runner.cpp: --device cuda is refused with what to do.
#include "core/check.h"
#include "engine/gpu/gpu_runner.h"

namespace mlabench {

std::unique_ptr<serving::ModelRunner> make_gpu_runner(const ModelConfig&, const ModelWeights*, uint64_t,
                                                      const EngineOptions&, const serving::ServingLimits&,
                                                      parallel::DeviceRankHooks) {
  MLABENCH_FAIL("this mlabench was built without CUDA, so --device cuda is unavailable. HINT: rebuild on a machine "
                "with the CUDA toolkit (nvcc at /usr/local/cuda/bin), or use --device cpu");
}

}  // namespace mlabench

namespace mlabench::parallel {

std::vector<int> place_ranks(int, int) {
  MLABENCH_FAIL("this mlabench was built without CUDA, so --device cuda is unavailable. HINT: rebuild on a machine "
                "with the CUDA toolkit (nvcc at /usr/local/cuda/bin), or use --device cpu");
}

std::unique_ptr<DeviceCollectives> make_device_collectives(HostGroup&, const std::vector<int>&, int64_t, int64_t,
                                                           bool, bool) {
  MLABENCH_FAIL("this mlabench was built without CUDA: no GPU collectives. HINT: use --device cpu");
}

}  // namespace mlabench::parallel
