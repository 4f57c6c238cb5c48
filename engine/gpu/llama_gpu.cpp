// Llama-architecture forward pass on the GPU (MHA and GQA), top to bottom, over a varlen batch. Same semantics
// as the CPU twin engine/model/llama.cpp: pre-norm blocks, RoPE on the whole head with pairs (i, i + hd/2),
// K (after RoPE) and V appended to the paged BF16 cache, attention over the cache by gqa_attention (prefill
// chunks and decode rows alike), SwiGLU MLP. q, k and v come from one GEMM with the three weights stacked.
// Shapes: T new rows, nh query heads, nkv KV heads, hd head_dim, W = (nh + 2 nkv) hd, dt = the weights' dtype.
#include "engine/gpu/gpu_model.h"
#include "engine/kernels/cuda/kernels.h"

namespace mlabench::gpu {

namespace {

namespace k = mlabench::kernels;

class LlamaGpu final : public GpuModel {
 public:
  LlamaGpu(const ModelConfig& c, const ModelWeights* host, uint64_t seed, Precision precision, cudaStream_t s)
      : GpuModel(c, precision, s) {
    upload_weights(host, seed);
  }

  std::pair<int64_t, int64_t> kv_widths() const override {
    return {config_.n_kv_heads * config_.head_dim, config_.n_kv_heads * config_.head_dim};
  }

  void allocate_buffers(const StepLimits& lim) override {
    allocate_common(lim);
    const ModelConfig& c = config_;
    const int64_t T = lim.max_tokens, H = c.hidden_size, hd = c.head_dim;
    const int64_t W = (c.n_heads + 2 * c.n_kv_heads) * hd, I = c.intermediate_size;
    const size_t es = dtype_size(dtype_);
    off_x_ = arena_.reserve(static_cast<size_t>(T * H) * 4);
    off_delta_ = arena_.reserve(static_cast<size_t>(T * H) * 4);
    off_xn_c_ = arena_.reserve(static_cast<size_t>(T * H) * es);
    off_qkv_ = arena_.reserve(static_cast<size_t>(T * W) * 4);
    off_o_ = arena_.reserve(static_cast<size_t>(T * c.n_heads * hd) * 4);
    off_o_c_ = arena_.reserve(static_cast<size_t>(T * c.n_heads * hd) * es);
    off_gu_ = arena_.reserve(static_cast<size_t>(T * 2 * I) * 4);
    off_h_c_ = arena_.reserve(static_cast<size_t>(T * I) * es);
    arena_.allocate("Llama step buffers");
  }

  void forward(const DeviceStep& st, KvPools& pools) override {
    const ModelConfig& c = config_;
    const int64_t T = st.n_rows, H = c.hidden_size, nh = c.n_heads, nkv = c.n_kv_heads, hd = c.head_dim;
    const int64_t W = (nh + 2 * nkv) * hd, I = c.intermediate_size;
    const auto eps = static_cast<float>(c.rms_norm_eps);
    auto* x = arena_.at<float>(off_x_);          // residual stream [T, H]
    auto* delta = arena_.at<float>(off_delta_);  // block output [T, H]
    void* xn_c = arena_.at<void>(off_xn_c_);     // [T, H] dt
    auto* qkv = arena_.at<float>(off_qkv_);      // [T, W]: q heads, k heads, v heads
    auto* o = arena_.at<float>(off_o_);          // [T, nh * hd]
    void* o_c = arena_.at<void>(off_o_c_);
    auto* gu = arena_.at<float>(off_gu_);  // [T, 2I]
    void* h_c = arena_.at<void>(off_h_c_);  // [T, I] dt

    k::cuda::embedding({.out = x, .table = embed_.p, .table_type = dtype_, .hidden = H, .ids = st.tokens,
                        .n_rows = T},
                       stream_);
    st_positions_ = st.positions;
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const Layer& L = layers_[static_cast<size_t>(l)];
      k::cuda::rms_norm({.residual = x, .ld_residual = H, .delta = l == 0 ? nullptr : delta, .ld_delta = H,
                         .out = xn_c, .out_type = dtype_, .ld_out = H, .weight = L.input_norm, .n_rows = T,
                         .dim = H, .eps = eps},
                        stream_);
      blas_->linear(qkv, W, xn_c, H, L.qkv.p, H, dtype_, T, W, H);  // [T, W]
      rope(qkv, W, T, nh);                                         // q heads
      rope(qkv + nh * hd, W, T, nkv);                              // k heads
      void* kc = pools.k[static_cast<size_t>(l)].get();
      void* vc = pools.v[static_cast<size_t>(l)].get();
      k::cuda::cache_write({.cache = kc, .cache_type = cache_dtype(), .width = nkv * hd, .src = qkv + nh * hd, .ld_src = W, .slots = st.slots,
                            .n_rows = T},
                           stream_);
      k::cuda::cache_write({.cache = vc, .cache_type = cache_dtype(), .width = nkv * hd, .src = qkv + (nh + nkv) * hd, .ld_src = W,
                            .slots = st.slots, .n_rows = T},
                           stream_);
      k::GqaAttentionParams ap{.batch = {.n_seqs = st.n_seqs, .cu_q = st.cu_q, .kv_len = st.kv_len,
                                        .max_q = std::max(st.max_q_prefill, 1),
                                        .max_kv = std::max(st.max_kv_prefill, st.max_kv_decode)},
                              .paged = {.block_size = static_cast<int32_t>(pools.block_size),
                                        .block_tables = st.block_tables, .max_blocks = st.max_blocks},
                              .k_cache = kc, .v_cache = vc, .cache_type = cache_dtype(), .q = qkv, .ld_q = W, .out = o, .ld_out = nh * hd,
                              .n_heads = static_cast<int32_t>(nh), .n_kv_heads = static_cast<int32_t>(nkv),
                              .head_dim = static_cast<int32_t>(hd),
                              .scale = static_cast<float>(rope_.softmax_scale)};
      ap.scratch_floats = k::gqa_attention_scratch_floats(ap);
      if (ap.scratch_floats > 0) ap.scratch = attention_scratch(ap.scratch_floats);
      k::cuda::gqa_attention(ap, stream_);
      k::cuda::cast({.out = o_c, .out_type = dtype_, .ld_out = nh * hd, .in = o, .ld_in = nh * hd, .n_rows = T,
                     .n_cols = nh * hd},
                    stream_);
      blas_->linear(delta, H, o_c, nh * hd, L.o_proj.p, nh * hd, dtype_, T, H, nh * hd);  // [T, H]
      k::cuda::rms_norm({.residual = x, .ld_residual = H, .delta = delta, .ld_delta = H, .out = xn_c,
                         .out_type = dtype_, .ld_out = H, .weight = L.post_norm, .n_rows = T, .dim = H, .eps = eps},
                        stream_);
      blas_->linear(gu, 2 * I, xn_c, H, L.mlp.gate_up.p, H, dtype_, T, 2 * I, H);  // [T, 2I]
      k::cuda::silu_mul({.out = h_c, .out_type = dtype_, .ld_out = I, .gate_up = gu, .ld_in = 2 * I, .inter = I,
                         .n_rows = T},
                        stream_);
      blas_->linear(delta, H, h_c, I, L.mlp.down.p, I, dtype_, T, H, I);  // [T, H]
    }
    output_head(st, x, delta);
  }

 private:
  void rope(float* x, int64_t ld, int64_t rows, int64_t heads) {
    k::cuda::rope({.x = x, .ld = ld, .n_rows = rows, .n_heads = heads, .head_stride = config_.head_dim,
                   .offset = 0, .dim = rope_.dim, .interleaved = false, .cos = rope_cos_.as<float>(),
                   .sin = rope_sin_.as<float>(), .positions = st_positions_},
                  stream_);
  }

  Arena arena_;
  size_t off_x_ = 0, off_delta_ = 0, off_xn_c_ = 0, off_qkv_ = 0, off_o_ = 0, off_o_c_ = 0, off_gu_ = 0, off_h_c_ = 0;
  const int32_t* st_positions_ = nullptr;
};

}  // namespace

std::unique_ptr<GpuModel> make_llama_gpu(const ModelConfig& c, const ModelWeights* host, uint64_t seed,
                                         Precision precision, cudaStream_t stream) {
  return std::make_unique<LlamaGpu>(c, host, seed, precision, stream);
}

}  // namespace mlabench::gpu
