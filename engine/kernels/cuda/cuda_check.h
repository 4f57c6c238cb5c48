// CUDA error handling and device memory ownership for the GPU engine (host code; usable from .cpp and .cu).
//   MLABENCH_CUDA(call)   a failed CUDA runtime call throws mlabench::Error naming the call, the error and
//                         file:line (out of memory says how much was asked and what is free).
//   DeviceBuffer          cudaMalloc'd bytes, freed on destruction, movable.
//   opt_in_shared_memory  a kernel's dynamic shared memory past 48 KB, asked once per device.
//   device_compute_major  the current device's compute capability major, asked once per device.
#pragma once

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "core/check.h"
#include "core/env_setting.h"

namespace mlabench::gpu {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line);

/// \brief True when a CUDA device is present and usable (no exception; the reason otherwise in *why).
bool cuda_device_available(std::string* why = nullptr);

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes, const char* what = "buffer");
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

/// Opts `kernel` into `bytes` of dynamic shared memory (past the 48 KB default) once per device: the first launch
/// on a device runs eagerly (a decode step runs before it is captured), so a launch captured in a CUDA graph later
/// makes no attribute call. `opted_in` is the kernel's own flag word (bit d: device d; devices past 63 ask each time).
void opt_in_shared_memory(const void* kernel, int bytes, std::atomic<uint64_t>& opted_in);

/// The current device's compute capability major (0 when it cannot be read), asked once per device and then read
/// from a table: launchers call it every launch (a programmatic dependent launch needs 9 or more).
int device_compute_major();
/// The current device's SM count (132, an H100's, when it cannot be read), asked once per device like
/// device_compute_major: the launchers that size their grids by it call it every launch.
int device_sm_count();
/// Programmatic dependent launches are used: a compute capability 9.0+ device, and MLABENCH_PDL not 0 (env_switch).
bool programmatic_launch_enabled();
/// The A/B benchmarks' environment settings (core/env_setting.h), under the names the GPU code has always used.
using mlabench::env_choice;
using mlabench::env_level;
using mlabench::env_switch;
/// MLABENCH_TIMING_SKIP (a comma list of the stages below, unset: none): the GPU engine leaves those launches out of
/// every step, so a graphed step's time without them is measured beside the full one: what fusing a launch away can
/// save at most (docs/perf-notes.md, issue 20 round 7). Every output is wrong then: the first skip warns on stderr,
/// `mlabench bench` records the variable in its JSON ("environment") and prints it, and `mlabench run` / `serve`
/// refuse it. Stages: input_norm, latent_append, w_uk, combine, w_uv, post_norm, router_gemm, router_topk (the last
/// three are the MoE layer's unfused entry: naming one runs that entry unfused, norm_router's three launches).
/// An unknown name is refused (the list above in the message).
bool timing_skip(const char* stage);

}  // namespace mlabench::gpu

#define MLABENCH_CUDA(call)                                                                \
  do {                                                                                     \
    const cudaError_t mlabench_cuda_err_ = (call);                                         \
    if (mlabench_cuda_err_ != cudaSuccess)                                                 \
      ::mlabench::gpu::throw_cuda_error(mlabench_cuda_err_, #call, __FILE__, __LINE__);    \
  } while (0)
