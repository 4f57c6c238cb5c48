// Grouped-query attention on the GPU (MHA when kv heads = heads, GQA, MQA when one kv head: Llama-2/3, DeepSeek
// LLM 7B/67B, and any architecture composed with it), top to bottom. Same semantics as the CPU twin's GQA
// (engine/model/cpu_attention.cpp): q, k and v from one GEMM with the three weights stacked, RoPE on the whole head
// with the config's pairing and K (after RoPE) and V appended to the paged cache in one kernel (kv_append),
// attention over the cache by gqa_attention (prefill chunks and decode rows alike), o_proj.
// Shapes: T new rows, nh query heads, nkv KV heads, hd head_dim, W = (nh + 2 nkv) hd, dt = the weights' dtype.
#include <fmt/format.h>

#include <algorithm>

#include "engine/gpu/gpu_model.h"
#include "engine/gpu/phase_timer.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/twin/checks.h"

namespace mlabench::gpu {

namespace {

namespace k = mlabench::kernels;

class GqaAttention final : public GpuAttention {
 public:
  explicit GqaAttention(GpuModel& m) : GpuAttention(m) {}

  std::pair<int64_t, int64_t> kv_widths() const override {
    return {m_.config().n_kv_heads * m_.config().head_dim, m_.config().n_kv_heads * m_.config().head_dim};
  }

  void upload(WeightUploader& up, const LayerWeights* L, int64_t l, GpuLayer& D) const override {
    const ModelConfig& c = m_.config();
    const int64_t H = c.hidden_size, hd = c.head_dim, q_rows = c.n_heads * hd, kv_rows = c.n_kv_heads * hd;
    const std::string a = fmt::format("model.layers.{}.self_attn.", l);
    D.qkv = up.projection({{L ? &L->q_proj : nullptr, a + "q_proj.weight"},
                           {L ? &L->k_proj : nullptr, a + "k_proj.weight"},
                           {L ? &L->v_proj : nullptr, a + "v_proj.weight"}},
                          {q_rows, kv_rows, kv_rows}, H, a + "qkv");
    D.o_proj = up.projection({{L ? &L->o_proj : nullptr, a + "o_proj.weight"}}, {H}, q_rows, a + "o_proj");
  }

  void reserve(Arena& arena, const serving::ServingLimits& lim) override {
    const ModelConfig& c = m_.config();
    const int64_t T = lim.max_step_tokens, hd = c.head_dim, W = (c.n_heads + 2 * c.n_kv_heads) * hd;
    arena_ = &arena;
    off_qkv_ = arena.reserve(static_cast<size_t>(T * W) * 4);
    off_o_ = arena.reserve(static_cast<size_t>(T * c.n_heads * hd) * 4);
    off_o_c_ = arena.reserve(static_cast<size_t>(T * c.n_heads * hd) * dtype_size(m_.dtype()));
    off_q_c_ = arena.reserve(static_cast<size_t>(T * W) * 2);
  }

  int64_t split_scratch_bound() const override {
    return 2 * k::kAttnTargetCtas * k::kGqaRowsPerCta * (m_.config().head_dim + 2);
  }
  int64_t fixed_split_scratch_bound(int64_t seqs) const override {  // decode rows only: prefill chunks do not split
    return seqs * k::kFixedMaxSplits * m_.config().n_heads * (m_.config().head_dim + 2);
  }

  void forward(const DeviceStep& st, const GpuLayer& L, void* kc, void* vc, int64_t block_size, float* out) override {
    const ModelConfig& c = m_.config();
    const int64_t T = st.n_rows, H = c.hidden_size, nh = c.n_heads, nkv = c.n_kv_heads, hd = c.head_dim;
    const int64_t W = (nh + 2 * nkv) * hd;
    const DType dt = m_.dtype();
    cudaStream_t s = m_.stream();
    auto* qkv = arena_->at<float>(off_qkv_);  // [T, W]: q heads, k heads, v heads
    auto* o = arena_->at<float>(off_o_);      // [T, nh * hd]
    void* o_c = arena_->at<void>(off_o_c_);
    m_.project_input(qkv, W, nullptr, 0, 0, L.qkv, T);  // [T, W], the input norm too where the kernel takes it
    // One kernel: RoPE on the q and k heads, then k and v appended to their pools. MLABENCH_FUSE_GQA=0 runs the four
    // launches it fuses (and the cast before o_proj below), for benchmarks that compare the two.
    static const bool fuse = gpu::env_switch("MLABENCH_FUSE_GQA");
    const k::KvAppendParams append{.qkv = qkv, .ld = W, .n_heads = nh, .n_kv_heads = nkv, .head_dim = hd,
                                   .rope_dim = m_.rope().dim, .interleaved = m_.rope().interleaved,
                                   .cos = m_.rope_cos(), .sin = m_.rope_sin(), .positions = st.positions,
                                   .k_cache = kc, .v_cache = vc, .cache_type = m_.cache_dtype(), .slots = st.slots,
                                   .n_rows = T};
    if (fuse) {
      k::cuda::kv_append(append, s);
    } else {
      const k::checks::KvAppendParts parts = k::checks::kv_append_parts(append);
      k::cuda::rope(parts.rope, s);
      k::cuda::cache_write(parts.k_write, s);
      k::cuda::cache_write(parts.v_write, s);
    }
    k::GqaAttentionParams ap{.batch = {.n_seqs = st.n_seqs, .cu_q = st.cu_q, .kv_len = st.kv_len,
                                       .max_q = std::max(st.max_q_prefill, 1),
                                       .max_kv = std::max(st.max_kv_prefill, st.max_kv_decode)},
                             .paged = {.block_size = static_cast<int32_t>(block_size),
                                       .block_tables = st.block_tables, .max_blocks = st.max_blocks},
                             .k_cache = kc, .v_cache = vc, .n_slots = m_.cache_slots(),
                             .cache_type = m_.cache_dtype(), .q = qkv, .ld_q = W,
                             .out = o, .ld_out = nh * hd, .n_heads = static_cast<int32_t>(nh),
                             .n_kv_heads = static_cast<int32_t>(nkv), .head_dim = static_cast<int32_t>(hd),
                             .scale = static_cast<float>(m_.rope().softmax_scale)};
    // BF16 precision, a step with a prefill chunk: BF16 queries for the flash kernel (FlashAttention's numerics,
    // as transformers' BF16 sdpa); decode-only steps keep float32 queries.
    if (m_.precision() != Precision::FLOAT32 && dt == DType::BF16 && m_.cache_dtype() == DType::BF16 &&
        st.max_q_prefill > 1 && k::gqa_prefill_bf16_supported(static_cast<int32_t>(hd))) {
      auto* q_c = arena_->at<uint16_t>(off_q_c_);  // [T, W], the q columns filled
      k::cuda::cast({.out = q_c, .out_type = DType::BF16, .ld_out = W, .in = qkv, .ld_in = W, .n_rows = T,
                     .n_cols = nh * hd},
                    s);
      ap.q_bf16 = q_c;
    }
    ap.fixed_splits = m_.fixed_splits();
    ap.scratch_floats = k::gqa_attention_scratch_floats(ap);
    if (ap.scratch_floats > 0) ap.scratch = m_.attention_scratch(ap.scratch_floats);
    phases::at(s, "attention: gqa kernel");
    k::cuda::gqa_attention(ap, s);
    phases::at(s, "attention: o_proj");
    // 1-2 rows in BF16: skinny_gemm rounds the float32 attention output to BF16 as it reads it (x_f32), the same
    // products as the cast below without its launch.
    if (fuse && dt == DType::BF16 && !L.o_proj.fp8() && m_.blas().try_skinny({.y = out, .ldy = H, .x = o, .ldx = nh * hd, .w = L.o_proj.p,
                                                   .ldw = nh * hd, .dtype = dt, .m = T, .n = H, .k = nh * hd,
                                                   .x_f32 = true}))
      return;
    k::cuda::cast({.out = o_c, .out_type = dt, .ld_out = nh * hd, .in = o, .ld_in = nh * hd, .n_rows = T,
                   .n_cols = nh * hd},
                  s);
    m_.linear(out, H, o_c, nh * hd, L.o_proj, T);  // [T, H]
  }

 private:
  Arena* arena_ = nullptr;
  size_t off_qkv_ = 0, off_o_ = 0, off_o_c_ = 0, off_q_c_ = 0;
};

}  // namespace

std::unique_ptr<GpuAttention> make_gqa_attention(GpuModel& m) { return std::make_unique<GqaAttention>(m); }

}  // namespace mlabench::gpu
