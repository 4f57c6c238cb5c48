#include "engine/kernels/cuda/cuda_check.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace mlabench::gpu {

void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  std::string hint = "HINT: run compute-sanitizer on the failing command, or report it with the log.";
  if (err == cudaErrorMemoryAllocation) {
    size_t free_b = 0, total_b = 0;
    cudaGetLastError();
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
      hint = fmt::format("{:.2f} GiB of {:.2f} GiB free. HINT: lower --kv-cache-gib or --max-batch, or use a "
                         "smaller model.", free_b / 1073741824.0, total_b / 1073741824.0);
  } else if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver) {
    hint = "HINT: run on a machine with an NVIDIA GPU and driver, or use --device cpu.";
  }
  MLABENCH_FAIL("CUDA call {} failed at {}:{}: {} ({}). {}", call, file, line, cudaGetErrorName(err),
                cudaGetErrorString(err), hint);
}

bool cuda_device_available(std::string* why) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess || n == 0) {
    if (why) *why = err != cudaSuccess ? std::string(cudaGetErrorString(err)) : std::string("no CUDA device");
    cudaGetLastError();
    return false;
  }
  return true;
}

DeviceBuffer::DeviceBuffer(size_t bytes, const char* what) : bytes_(bytes) {
  if (bytes == 0) return;
  const cudaError_t err = cudaMalloc(&ptr_, bytes);
  if (err != cudaSuccess) {
    ptr_ = nullptr;
    size_t free_b = 0, total_b = 0;
    cudaGetLastError();
    cudaMemGetInfo(&free_b, &total_b);
    MLABENCH_FAIL("cudaMalloc of {:.3f} GiB for {} failed: {} ({:.2f} GiB of {:.2f} GiB free). HINT: lower "
                  "--kv-cache-gib or --max-batch, or use a smaller model.",
                  bytes / 1073741824.0, what, cudaGetErrorString(err), free_b / 1073741824.0,
                  total_b / 1073741824.0);
  }
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);
}

void opt_in_shared_memory(const void* kernel, int bytes, std::atomic<uint64_t>& opted_in) {
  int device = 0;
  MLABENCH_CUDA(cudaGetDevice(&device));
  const uint64_t bit = device < 64 ? uint64_t{1} << device : 0;
  if (bit != 0 && (opted_in.load(std::memory_order_acquire) & bit) != 0) return;
  MLABENCH_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  opted_in.fetch_or(bit, std::memory_order_release);
}

int device_compute_major() {
  static std::atomic<int> known[64]{};  // major + 1 once asked; 0 = not yet
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return 0;
  if (device >= 0 && device < 64) {
    const int k = known[device].load(std::memory_order_relaxed);
    if (k != 0) return k - 1;
  }
  int major = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) major = 0;
  if (device >= 0 && device < 64) known[device].store(major + 1, std::memory_order_relaxed);
  return major;
}

int device_sm_count() {
  static std::atomic<int> known[64]{};  // the count once asked; 0 = not yet
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return 132;
  if (device >= 0 && device < 64) {
    const int k = known[device].load(std::memory_order_relaxed);
    if (k != 0) return k;
  }
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || sms <= 0) sms = 132;
  if (device >= 0 && device < 64) known[device].store(sms, std::memory_order_relaxed);
  return sms;
}

bool timing_skip(const char* stage) {
  static constexpr std::array<std::string_view, 8> kStages{"input_norm",  "latent_append", "w_uk",        "combine",
                                                           "w_uv",        "post_norm",     "router_gemm", "router_topk"};
  static const std::vector<std::string> skipped = [] {
    std::vector<std::string> names;
    const char* env = std::getenv("MLABENCH_TIMING_SKIP");
    std::string_view rest = env ? env : "";
    while (!rest.empty()) {
      const size_t comma = rest.find(',');
      const std::string_view name = rest.substr(0, comma);
      MLABENCH_CHECK(std::find(kStages.begin(), kStages.end(), name) != kStages.end(),
                     "MLABENCH_TIMING_SKIP: '{}' is not a stage. HINT: a comma list of {} (a timing experiment: "
                     "outputs are wrong)",
                     name, fmt::join(kStages, ", "));
      names.emplace_back(name);
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    }
    if (!names.empty())
      std::fprintf(stderr, "warning: MLABENCH_TIMING_SKIP=%s: those launches are left out of every step; every output "
                           "of this run is wrong (a timing experiment)\n", env);
    return names;
  }();
  return std::find(skipped.begin(), skipped.end(), stage) != skipped.end();
}

bool programmatic_launch_enabled() {
  static const bool allowed = env_switch("MLABENCH_PDL");
  return allowed && device_compute_major() >= 9;
}

}  // namespace mlabench::gpu
