// GpuModel: one architecture's forward pass on the GPU over a varlen batch of sequences whose KV lives in a
// paged cache (engine/gpu/paged_cache.h). deepseek_v2_gpu.cpp and llama_gpu.cpp each implement it top to bottom;
// this header holds what they share: weights on the device, the step's batch description, scratch buffers and
// the output head.
//
// Numerics (the contract the kernels document in engine/kernels/kernel_params.h): the residual stream and every
// activation between kernels are float32; the router GEMM and softmax run in float32. Precision::NATIVE: GEMM
// operands in the checkpoint's dtype (BF16, F16 or F32) with float32 accumulation, a BF16 KV cache, tensor-core
// attention. Precision::FLOAT32: the weights widened to F32 on upload, so every GEMM is float32, an F32 KV cache
// and the float32 attention kernels: the CPU engine's arithmetic in another summation order.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/gpu/blas.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/model/config.h"
#include "engine/model/rope.h"
#include "engine/weights/model_weights.h"
#include "mlabench/engine.h"

namespace mlabench::gpu {

/// Sizes the step buffers are allocated for.
struct StepLimits {
  int64_t max_tokens = 4096;     ///< new tokens in one step (prefill chunk budget plus decode rows)
  int64_t max_seqs = 256;        ///< sequences in one step
  int64_t max_logit_rows = 512;  ///< rows whose logits one step returns
  int64_t max_context = 4096;    ///< positions the RoPE table covers (the longest sequence served)
};

/// One forward step, host side. Sequences [0, n_decode) have exactly one new row each and attend through the
/// decode kernels (absorbed MLA); the rest are prefill chunks. Row order follows sequence order.
struct StepBatch {
  std::vector<int32_t> tokens;        // [T]
  std::vector<int32_t> positions;     // [T]
  std::vector<int64_t> slots;         // [T] cache slot each new token is written to
  std::vector<int32_t> cu_q{0};       // [n + 1]
  std::vector<int32_t> kv_len;        // [n] cached tokens after this step
  std::vector<int32_t> block_tables;  // [n, max_blocks]
  int32_t max_blocks = 0;
  int32_t n_decode = 0;
  std::vector<int32_t> logit_rows;  // rows whose logits come back, in this order

  int32_t n_seqs() const { return static_cast<int32_t>(kv_len.size()); }
  int32_t n_rows() const { return static_cast<int32_t>(tokens.size()); }
};

/// The step's integer arrays on the device (one upload per step through pinned memory).
struct DeviceStep {
  int32_t* tokens = nullptr;
  int32_t* positions = nullptr;
  int64_t* slots = nullptr;
  int32_t* cu_q = nullptr;
  int32_t* kv_len = nullptr;
  int32_t* block_tables = nullptr;
  int32_t* logit_rows = nullptr;
  int32_t* cu_kv = nullptr;  // [n_prefill + 1] key offsets of the prefill sequences (MLA decompression)
  int32_t n_seqs = 0, n_rows = 0, n_decode = 0, max_blocks = 0, n_logit_rows = 0;
  int32_t max_q_prefill = 0, max_kv_decode = 0, max_kv_prefill = 0, prefill_keys = 0;
};

/// A bump allocator over one device allocation, for scratch buffers whose sizes are known up front.
class Arena {
 public:
  /// Reserves bytes (256-byte aligned); returns the offset. Call before allocate().
  size_t reserve(size_t bytes);
  void allocate(const char* what);
  template <class T>
  T* at(size_t offset) const {
    return reinterpret_cast<T*>(static_cast<char*>(buf_.get()) + offset);
  }
  size_t bytes() const { return size_; }

 private:
  size_t size_ = 0;
  DeviceBuffer buf_;
};

/// Paged KV pools, one per layer, BF16 (F32 in Precision::FLOAT32): MLA keeps [c_kv ; k_pe] per slot; MHA/GQA
/// keep K and V.
struct KvPools {
  int64_t n_blocks = 0, block_size = 0;
  int64_t k_width = 0, v_width = 0;  // values per slot per layer
  DType dtype = DType::BF16;
  std::vector<DeviceBuffer> k, v;  // [n_layers] of [n_blocks * block_size, width]
  uint64_t bytes() const {
    return static_cast<uint64_t>(n_blocks * block_size) * static_cast<uint64_t>(k_width + v_width) *
           dtype_size(dtype) * static_cast<uint64_t>(k.size());
  }
};

class GpuModel {
 public:
  virtual ~GpuModel() = default;
  const ModelConfig& config() const { return config_; }
  /// The GEMM operand dtype on the device: the checkpoint's, or F32 in Precision::FLOAT32.
  DType dtype() const { return dtype_; }
  Precision precision() const { return precision_; }
  /// The KV cache's dtype: BF16, or F32 in Precision::FLOAT32.
  DType cache_dtype() const { return precision_ == Precision::FLOAT32 ? DType::F32 : DType::BF16; }
  /// Values per cache slot per layer (K and V parts) for this architecture.
  virtual std::pair<int64_t, int64_t> kv_widths() const = 0;
  /// Bytes the weights take on the device.
  uint64_t weight_bytes() const { return weight_bytes_; }
  /// Allocates the step buffers for `limits` (call once, before forward).
  virtual void allocate_buffers(const StepLimits& limits) = 0;
  /// Runs the step: appends its tokens' K/V to `pools` and writes logits [n_logit_rows, vocab] to logits().
  virtual void forward(const DeviceStep& step, KvPools& pools) = 0;
  float* logits() const { return logits_; }
  /// Most keys (cached tokens of the prefill sequences) one step may attend through the decompressed MLA path;
  /// 0 = no limit. The scheduler keeps each step under it.
  virtual int64_t prefill_key_budget() const { return 0; }
  cudaStream_t stream() const { return stream_; }
  Blas& blas() { return *blas_; }

 protected:
  GpuModel(ModelConfig c, Precision precision, cudaStream_t stream);
  /// Device weights for every slot of the architecture, copied from `host` (views into the mmap'd checkpoint:
  /// no full host copy) or, when host is null, generated on the device bit-identical to random_weights(seed);
  /// in Precision::FLOAT32 each tensor is widened to F32 on the device after its copy.
  void upload_weights(const ModelWeights* host, uint64_t seed);
  /// RoPE cos/sin tables [max_context, dim/2] on the device, from the CPU engine's rope_cos_sin.
  void upload_rope(int64_t max_context);
  /// Final norm and lm_head of the step's logit rows: x [rows, H] float32 residual -> logits_.
  void output_head(const DeviceStep& step, float* x, float* delta);
  void allocate_common(const StepLimits& limits);
  /// Split-KV scratch of the attention launchers (kernel_params.h), allocated once at its bound.
  float* attention_scratch(int64_t floats);

  struct Mat {  // a matrix on the device in the model dtype
    const void* p = nullptr;
    int64_t rows = 0, cols = 0;
  };
  struct Mlp {
    Mat gate_up;  // [2I, H]: gate rows then up rows
    Mat down;     // [H, I]
  };
  struct Layer {
    const float* input_norm = nullptr;
    const float* post_norm = nullptr;
    Mat q_proj, q_a_proj, q_b_proj, kv_a_proj, kv_b_proj, o_proj;  // MLA
    const float* q_a_norm = nullptr;
    const float* kv_a_norm = nullptr;
    Mat qkv;  // Llama: [(nh + 2 nkv) hd, H]
    bool is_moe = false;
    Mlp mlp;                         // dense
    const float* router = nullptr;   // [E, H] float32
    Mat experts_gate_up;             // [E * 2I, H]
    Mat experts_down;                // [E * H, I]
    bool has_shared = false;
    Mlp shared;
  };

  ModelConfig config_;
  Precision precision_ = Precision::NATIVE;
  DType dtype_ = DType::BF16;
  RopeTables rope_;
  cudaStream_t stream_;
  std::unique_ptr<Blas> blas_;
  std::vector<DeviceBuffer> weight_buffers_;
  uint64_t weight_bytes_ = 0;
  Mat embed_, lm_head_;
  const float* final_norm_ = nullptr;
  std::vector<Layer> layers_;
  DeviceBuffer rope_cos_, rope_sin_;
  int64_t rope_positions_ = 0;
  DeviceBuffer attn_scratch_;
  StepLimits limits_;

  // Output-head scratch.
  Arena head_arena_;
  size_t off_head_x_ = 0, off_head_c_ = 0;
  float* logits_ = nullptr;
};

/// The GPU model for c.arch with weights from `host` (a loaded checkpoint) or, if host is null, random weights
/// generated on the device from `seed`.
std::unique_ptr<GpuModel> make_gpu_model(const ModelConfig& c, const ModelWeights* host, uint64_t seed,
                                         Precision precision, cudaStream_t stream);

}  // namespace mlabench::gpu
