// GpuModel: the forward pass on the GPU of every architecture, over a varlen batch of sequences whose KV lives in
// a paged cache. One layer loop (gpu_model.cpp) composes the config's attention kind (GpuAttention: MLA in
// gpu_mla.cpp, GQA/MHA/MQA in gpu_gqa.cpp) with each layer's FFN kind (dense SwiGLU, or DeepSeekMoE through the
// one MoeLayer, engine/gpu/moe_layer.h). This header holds what they share: weights on the device, the step's
// batch description, scratch arenas, paged pools.
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
#include <utility>
#include <vector>

#include "engine/gpu/blas.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/kernel_params.h"
#include "engine/model/config.h"
#include "engine/model/rope.h"
#include "engine/parallel/device_collectives.h"
#include "engine/serving/limits.h"
#include "engine/weights/model_weights.h"
#include "mlabench/engine.h"

namespace mlabench::gpu {

/// The step's integer arrays on the device (one upload per step through pinned memory). Sequences
/// [0, n_decode) have one new row each and attend through the decode kernels; the rest are prefill chunks.
struct DeviceStep {
  int32_t* tokens = nullptr;
  int32_t* positions = nullptr;
  int64_t* slots = nullptr;
  int32_t* cu_q = nullptr;
  int32_t* kv_len = nullptr;
  int32_t* block_tables = nullptr;
  int32_t* logit_rows = nullptr;
  int32_t* cu_kv = nullptr;  // [n_prefill + 1] key offsets of the prefill sequences (MLA decompression)
  // The prefill sequences' caches gathered into a scratch pool of whole blocks (serving::gathered_prefill_layout;
  // built only where GpuAttention::gathers_prefill): [n_prefill + 1] block-aligned slot offsets, [n_prefill,
  // max_blocks] block tables into the scratch, and its slots in use.
  int32_t* gathered_cu_slots = nullptr;
  int32_t* gathered_tables = nullptr;
  int32_t gathered_slots = 0;
  int32_t n_seqs = 0, n_rows = 0, n_decode = 0, max_blocks = 0, n_logit_rows = 0;
  int32_t max_q_prefill = 0, max_kv_decode = 0, max_kv_prefill = 0, prefill_keys = 0;
  bool graphed = false;  // replayed from a CUDA graph: nothing may be read back to the host
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

/// Paged KV pools, one per layer, BF16 (F32 in Precision::FLOAT32, F8_E4M3 slots under --kv-cache-dtype fp8): MLA
/// keeps [c_kv ; k_pe] per slot; GQA keeps K and V.
struct KvPools {
  int64_t n_blocks = 0, block_size = 0;
  uint64_t k_slot_bytes = 0, v_slot_bytes = 0;  // per slot per layer: GpuModel::kv_slot_bytes
  DType dtype = DType::BF16;
  std::vector<DeviceBuffer> k, v;  // [n_layers] of [n_blocks * block_size] slots
  uint64_t bytes() const {
    return static_cast<uint64_t>(n_blocks * block_size) * (k_slot_bytes + v_slot_bytes) *
           static_cast<uint64_t>(k.size());
  }
};

/// A matrix on the device: in the model dtype, or (scale non-null, --weights-dtype fp8) e4m3 codes with one float32
/// scale per 128 x 128 block, [ceil(rows / 128), fp8_weight_scale_ld(cols)] (engine/core/fp8.h). A stack of two
/// quantised parts whose first part's rows are not a multiple of 128 (a dense FFN's gate then up at I = 10,944) keeps
/// each part's own grid: split_rows is then the first part's rows, its grid's rows followed by the second part's.
struct DeviceMat {
  const void* p = nullptr;
  int64_t rows = 0, cols = 0;
  const float* scale = nullptr;
  int64_t split_rows = 0;
  bool fp8() const { return scale != nullptr; }
  /// Rows [r0, r0 + n) as a matrix of its own (r0 a multiple of 128 where the matrix is FP8).
  DeviceMat rows_from(int64_t r0, int64_t n, size_t elem_size) const;
};
struct DeviceMlp {
  DeviceMat gate_up;  // [2I, H]: gate rows then up rows, so one GEMM computes both
  DeviceMat down;     // [H, I]
};

/// One layer's weights on the device; the attention kind fills its own fields.
struct GpuLayer {
  const float* input_norm = nullptr;
  const float* post_norm = nullptr;
  DeviceMat q_proj, q_a_proj, q_b_proj, kv_a_proj, kv_b_proj;  // MLA
  const float* q_a_norm = nullptr;
  const float* kv_a_norm = nullptr;
  DeviceMat qkv;  // GQA: [(nh + 2 nkv) hd, H], q then k then v rows
  DeviceMat o_proj;
  FfnKind ffn = FfnKind::DENSE;
  DeviceMlp mlp;                   // dense
  const float* router = nullptr;   // MoE: [E, H] float32
  DeviceMat experts_gate_up;       // [E * 2I, H]
  DeviceMat experts_down;          // [E * H, I]
  DeviceMlp shared;                // shared experts (gate_up.p null when none)
};

/// Puts weights on the device: copies of the checkpoint's views (never a full host copy) or device-generated
/// random values bit-identical to random_weights(seed); in Precision::FLOAT32 each tensor is widened to F32
/// after its copy. Tracks the bytes it allocates.
class WeightUploader {
 public:
  WeightUploader(DType stored, DType dtype, uint64_t seed, cudaStream_t stream, bool fp8 = false);
  /// --weights-dtype fp8: projection and expert matrices are quantised on the device (fp8_quantize_blocks from the
  /// model dtype, the CPU engine's quantize_fp8_blocks twin); embedding, lm_head, router, norms and kv_b_proj are not.
  /// An FP8 checkpoint's matrices (F8_E4M3 with scale_inv) are uploaded as stored; its kv_b_proj is dequantised.
  bool fp8() const { return fp8_; }
  /// A projection [rows, cols] stacked from parts (each a tensor of its own in the checkpoint: gate then up, q then
  /// kv_a, q then k then v): e4m3 with each part's 128 x 128 grid where fp8(), else as mat() of the stacked rows.
  DeviceMat projection(const std::vector<std::pair<const TensorView*, std::string>>& parts,
                       const std::vector<int64_t>& part_rows, int64_t cols, const std::string& what);
  /// The same, written into codes/scale allocated by the caller (a model's experts in one allocation); in the model
  /// dtype (scale null, codes of dtype elements) where !fp8().
  void projection_into(char* codes, float* scale, const std::vector<std::pair<const TensorView*, std::string>>& parts,
                       const std::vector<int64_t>& part_rows, int64_t cols);
  /// Rows of a projection's scale grid: the sum of each part's ceil(rows / 128).
  static int64_t scale_grid_rows(const std::vector<int64_t>& part_rows);
  /// A matrix [rows, cols] from `v` (or generated under `name` when v is null), in the model dtype.
  DeviceMat mat(const TensorView* v, const std::string& name, int64_t rows, int64_t cols);
  /// A 1-D float32 norm weight (ones when generated).
  const float* norm(const std::vector<float>* v, const std::string& name, int64_t n);
  /// The tensor `v` (or `name`'s random values), n_elems of them, into dst (model dtype, already allocated).
  void put(char* dst, const TensorView* v, const std::string& name, int64_t n_elems);
  /// n_elems of elem_size bytes, owned by the uploader's buffers.
  char* alloc(int64_t n_elems, size_t elem_size, const std::string& what);
  /// A float32 copy of a [rows, cols] matrix (the router, which runs in float32).
  const float* f32_mat(const TensorView* v, const std::string& name, int64_t rows, int64_t cols);
  DType dtype() const { return dtype_; }
  size_t elem_size() const { return dtype_size(dtype_); }
  std::vector<DeviceBuffer> take_buffers() { return std::move(buffers_); }
  uint64_t bytes() const { return bytes_; }

 private:
  void put_fp8(uint8_t* codes, float* scale, int64_t ld, const TensorView& v, const std::string& name, int64_t rows,
               int64_t cols);
  void put_dequantised(char* dst, const TensorView& v, const std::string& name, int64_t rows, int64_t cols);

  DType stored_, dtype_;
  uint64_t seed_;
  cudaStream_t stream_;
  bool fp8_ = false;
  DeviceBuffer fp8_staging_;  // one part in the model dtype on its way to e4m3
  std::vector<DeviceBuffer> buffers_;
  uint64_t bytes_ = 0;
  DeviceBuffer staging_;  // Precision::FLOAT32: one stored tensor on its way to F32
};

class GpuModel;

/// One attention kind on the GPU. forward() reads the normed input xn_c [T, H] (model dtype), appends the step's
/// new K/V to the layer's pools, attends, and writes o_proj's output to out [T, H] float32.
class GpuAttention {
 public:
  explicit GpuAttention(GpuModel& m) : m_(m) {}
  virtual ~GpuAttention() = default;
  /// Values per cache slot per layer (K and V parts).
  virtual std::pair<int64_t, int64_t> kv_widths() const = 0;
  /// Fills layer l's attention weights.
  virtual void upload(WeightUploader& up, const LayerWeights* host, int64_t l, GpuLayer& D) const = 0;
  /// Reserves the kind's step scratch in `arena` (before it is allocated); allocate() runs after.
  virtual void reserve(Arena& arena, const serving::ServingLimits& lim) = 0;
  virtual void allocate(const serving::ServingLimits&) {}
  /// Floats of split-KV scratch the kind's attention launcher may ask for (kernel_params.h bounds).
  virtual int64_t split_scratch_bound() const = 0;
  /// The same under the batch-invariant plan for up to `seqs` decode sequences (kFixedMaxSplits splits each).
  virtual int64_t fixed_split_scratch_bound(int64_t seqs) const = 0;
  /// Keys of prefill sequences one step may attend (0 = no limit): MLA's decompressed keys are materialised.
  virtual int64_t prefill_key_budget() const { return 0; }
  /// Whether prefill steps read DeviceStep::gathered_* (the runner builds them only then).
  virtual bool gathers_prefill() const { return false; }
  virtual void forward(const DeviceStep& st, const GpuLayer& L, void* k_cache, void* v_cache, int64_t block_size,
                       float* out) = 0;

 protected:
  GpuModel& m_;
};

std::unique_ptr<GpuAttention> make_mla_attention(GpuModel& m);
std::unique_ptr<GpuAttention> make_gqa_attention(GpuModel& m);

class MoeLayer;
class Fp8Linear;

class GpuModel {
 public:
  /// Uploads the weights (from `host`, or generated on the device from `seed` when host is null).
  /// fixed_splits: the batch-invariant split plan for decode attention (EngineOptions::batch_invariant_attention).
  /// fp8_weights (--weights-dtype fp8): projections and experts held as e4m3 with 128 x 128 block scales, their
  /// GEMMs in FP8 (W8A8 with 1 x 128 activation groups, as the CPU engine computes them).
  GpuModel(const ModelConfig& c, const ModelWeights* host, uint64_t seed, Precision precision, cudaStream_t stream,
           bool fixed_splits = false, bool fp8_weights = false);
  ~GpuModel();
  GpuModel(const GpuModel&) = delete;
  GpuModel& operator=(const GpuModel&) = delete;

  const ModelConfig& config() const { return config_; }
  /// The GEMM operand dtype on the device: the checkpoint's, or F32 in Precision::FLOAT32.
  DType dtype() const { return dtype_; }
  Precision precision() const { return precision_; }
  /// The KV cache's dtype: BF16, F32 in Precision::FLOAT32, or F8_E4M3 slots under --kv-cache-dtype fp8
  /// (kernel_params.h Fp8SlotLayout; which attention kernels read them: docs/engine.md, "FP8 weights and cache").
  DType cache_dtype() const {
    return fp8_kv_ ? DType::F8_E4M3 : precision_ == Precision::FLOAT32 ? DType::F32 : DType::BF16;
  }
  /// --kv-cache-dtype fp8: set before the pools are allocated.
  void set_fp8_kv_cache(bool on) { fp8_kv_ = on; }
  /// Bytes of one slot of a layer's K (MLA: latent) and V pools in cache_dtype(): width x element size, or the
  /// F8_E4M3 slot layout (MLA: the latent's codes and scales and the BF16 RoPE part; GQA: a scale a head).
  std::pair<uint64_t, uint64_t> kv_slot_bytes() const;
  std::pair<int64_t, int64_t> kv_widths() const { return attention_->kv_widths(); }
  uint64_t weight_bytes() const { return weight_bytes_; }
  int64_t prefill_key_budget() const { return attention_->prefill_key_budget(); }
  bool gathers_prefill() const { return attention_->gathers_prefill(); }
  /// One rank of a sharded model (engine/parallel/sharded_runner.h): this model holds the rank's slices (heads, FFN
  /// columns, vocabulary rows); the hooks join its partial outputs with the other ranks'. Set before forward.
  void set_rank_hooks(parallel::DeviceRankHooks hooks) { hooks_ = std::move(hooks); }
  /// Allocates the step buffers for `limits` (call once, before forward).
  void allocate_buffers(const serving::ServingLimits& limits);
  /// Runs the step: appends its tokens' K/V to `pools` and writes logits [n_logit_rows, vocab] to logits().
  void forward(const DeviceStep& step, KvPools& pools);
  float* logits() const { return logits_; }

  // For the attention kinds.
  cudaStream_t stream() const { return stream_; }
  Blas& blas() { return *blas_; }
  const RopeTables& rope() const { return rope_; }
  const float* rope_cos() const { return rope_cos_.as<float>(); }
  const float* rope_sin() const { return rope_sin_.as<float>(); }
  /// Split-KV scratch of the attention launchers, allocated once at its bound (graphs keep the pointer).
  float* attention_scratch(int64_t floats);
  /// Whether decode attention takes the batch-invariant split plan (MlaDecodeParams::fixed_splits).
  bool fixed_splits() const { return fixed_splits_; }
  /// Slots in each layer's KV pool of the step forward() runs (bounds the Hopper decode kernel's tensor map).
  int64_t cache_slots() const { return cache_slots_; }
  /// Normed layer input [T, H] in the model dtype, the attention's input. The layer's input norm is issued lazily:
  /// the first call of a layer launches it, unless a projection took it into its own kernel (project_input).
  const void* normed_input();
  /// y[m, w.rows] (float32, ldy) = normed input . w^T; with y2 set, columns [n_y, w.rows) into y2 (ldy2) instead, in
  /// one launch (MLA's q_proj / q_a_proj and kv_a_proj over adjacent weights), or nothing enqueued and false where
  /// no kernel takes that split. At one decode row (up to Blas::norm_fusion_rows()) the product computes the
  /// layer's input norm itself where its kernel can (skinny_gemm's or skinny_gemm_fp8's norm form), so the norm needs
  /// no launch.
  bool project_input(float* y, int64_t ldy, float* y2, int64_t ldy2, int64_t n_y, const DeviceMat& w, int64_t m);
  /// Whether projections and experts are FP8 (--weights-dtype fp8).
  bool fp8_weights() const { return fp8_weights_; }
  /// y[m, w.rows] (float32, ldy) = x[m, w.cols] (model dtype, ldx) . w^T: cuBLAS in the model dtype, or for an FP8
  /// matrix the activation rows quantised to e4m3 (1 x 128 groups) and cuBLASLt's block-scaled GEMM.
  void linear(float* y, int64_t ldy, const void* x, int64_t ldx, const DeviceMat& w, int64_t m);

 private:
  /// Two projections of x whose FP8 weights are adjacent rows of w (one scale grid, no split_rows) in one product:
  /// columns [0, n_y) into y, [n_y, w.rows) into y2, where the skinny FP8 GEMM takes the rows (decode); false (nothing
  /// enqueued) otherwise, and for BF16 weights (project_input's BF16 branch calls skinny_gemm for those).
  bool linear_split_fp8(float* y, int64_t ldy, float* y2, int64_t ldy2, int64_t n_y, const void* x, int64_t ldx,
                        const DeviceMat& w, int64_t m);
  void upload_weights(const ModelWeights* host, uint64_t seed);
  void upload_rope(int64_t max_context);
  // The residual stream in two buffers: a norm that adds a block's output reads `now` and writes the sum to `next`
  // (RmsNormParams::residual_out), then they swap. A kernel that normalises its own input rows in every CTA (the
  // norm forms of the skinny GEMMs) must not write the row its other CTAs read.
  struct Residual {
    float* now;
    float* next;
    void advance() { std::swap(now, next); }
  };
  void ffn(const DeviceStep& st, const GpuLayer& L, Residual& x, float* delta);
  kernels::MoeLayerParams moe_params(const GpuLayer& L, const float* x, const void* x_c, float* out, int64_t T,
                                     bool graphed) const;
  void ffn_dp(const GpuLayer& L, Residual& x, float* delta, int64_t T);
  void swiglu(const DeviceMlp& w, const void* x, int64_t n, float* out, const kernels::RmsNormParams* norm = nullptr);
  void output_head(const DeviceStep& step, float* x, float* delta);
  // The input norm not yet issued (normed_input launches it, project_input may fuse it); none outside forward().
  std::optional<kernels::RmsNormParams> pending_norm_;

  ModelConfig config_;
  Precision precision_ = Precision::NATIVE;
  bool fixed_splits_ = false;
  bool fp8_weights_ = false;
  bool fp8_kv_ = false;
  // Expert parallelism (a rank of --tp N --ep N): the routed experts [held_begin_, held_begin_ + held_experts_)
  // this model holds (LayerWeights::held_experts_*, the same in every layer); held_experts_ 0: all of them.
  int32_t held_begin_ = 0, held_experts_ = 0;
  std::unique_ptr<Fp8Linear> fp8_linear_;  // allocate_buffers: the activation codes of the FP8 GEMMs
  DType dtype_ = DType::BF16;
  int64_t cache_slots_ = 0;
  RopeTables rope_;
  cudaStream_t stream_;
  std::unique_ptr<Blas> blas_;
  std::unique_ptr<GpuAttention> attention_;
  std::unique_ptr<MoeLayer> moe_;
  std::vector<DeviceBuffer> weight_buffers_;
  uint64_t weight_bytes_ = 0;
  DeviceMat embed_, lm_head_;  // lm_head_.rows < vocab: this rank's vocabulary rows (a sharded model)
  parallel::DeviceRankHooks hooks_;
  const float* final_norm_ = nullptr;
  std::vector<GpuLayer> layers_;
  DeviceBuffer rope_cos_, rope_sin_;
  DeviceBuffer attn_scratch_;
  serving::ServingLimits limits_;

  Arena arena_;  // the layer loop's buffers and the output head's
  size_t off_x_ = 0, off_x_next_ = 0, off_delta_ = 0, off_xn_ = 0, off_xn_c_ = 0, off_gu_ = 0, off_h_c_ = 0;
  size_t off_head_x_ = 0, off_head_c_ = 0, off_local_logits_ = 0;
  size_t off_dp_mine_ = 0, off_dp_all_ = 0, off_dp_all_c_ = 0, off_dp_out_ = 0, off_dp_head_ = 0;  // DP attention
  float* logits_ = nullptr;
};

}  // namespace mlabench::gpu
