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
#include "engine/serving/limits.h"

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

  // FP8 slots at BF16 precision: the gathered BF16 pools of a prefill step, allocated now so the KV cache cannot
  // take their memory (as MLA's decompressed keys); the scheduler keeps a step's prefill keys within the budget.
  void allocate(const serving::ServingLimits& lim) override {
    if (!gathers_prefill()) return;
    key_budget_ = serving::prefill_key_budget(lim);
    gathered_slots_ = serving::gathered_prefill_slots(lim);
    const auto pool = static_cast<size_t>(gathered_slots_ * m_.config().n_kv_heads * m_.config().head_dim) * 2;
    gathered_ = DeviceBuffer(2 * pool, "GQA prefill pools gathered from FP8 slots");
  }
  int64_t prefill_key_budget() const override { return key_budget_; }
  // FP8 slots where the flash kernel serves prefill: their prefill steps gather the slots into BF16 pools (measured
  // on an H100: Llama-3-8B's 4,032-token prompt over FP8 slots prefills at 38,606 tok/s, 271 through the float32
  // generic kernel; docs/perf-notes.md, issue 20 round 11). MLABENCH_GQA_FP8_PREFILL=0 takes the generic kernel (A/B).
  bool gathers_prefill() const override {
    static const bool on = gpu::env_switch("MLABENCH_GQA_FP8_PREFILL");
    return on && bf16_flash() && m_.cache_dtype() == DType::F8_E4M3;
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
    phases::at(s, "attention: gqa kernel");
    if (st.max_q_prefill > 1 && gathers_prefill()) {  // FP8 slots, BF16 precision, a step with a prefill chunk
      gathered_prefill(st, ap, block_size);
    } else {
      // BF16 precision, a step with a prefill chunk: BF16 queries for the flash kernel (FlashAttention's numerics,
      // as transformers' BF16 sdpa); decode-only steps keep float32 queries.
      if (bf16_flash() && m_.cache_dtype() == DType::BF16 && st.max_q_prefill > 1) ap.q_bf16 = cast_queries(T);
      with_split_scratch(ap);
      k::cuda::gqa_attention(ap, s);
    }
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
  // The BF16 flash kernel serves this model's prefill chunks: BF16 precision and weights, a head size it has.
  bool bf16_flash() const {
    return m_.precision() != Precision::FLOAT32 && m_.dtype() == DType::BF16 &&
           k::gqa_prefill_bf16_supported(static_cast<int32_t>(m_.config().head_dim));
  }

  // The engine's split plan for p, with its scratch where it splits.
  void with_split_scratch(k::GqaAttentionParams& p) const {
    p.fixed_splits = m_.fixed_splits();
    p.scratch_floats = k::gqa_attention_scratch_floats(p);
    if (p.scratch_floats > 0) p.scratch = m_.attention_scratch(p.scratch_floats);
  }

  // q's columns [T, nh * hd] in BF16 at ld W (the flash kernel's queries).
  const uint16_t* cast_queries(int64_t T) {
    const ModelConfig& c = m_.config();
    const int64_t W = (c.n_heads + 2 * c.n_kv_heads) * c.head_dim;
    auto* q_c = arena_->at<uint16_t>(off_q_c_);
    k::cuda::cast({.out = q_c, .out_type = DType::BF16, .ld_out = W, .in = arena_->at<float>(off_qkv_), .ld_in = W,
                   .n_rows = T, .n_cols = c.n_heads * c.head_dim},
                  m_.stream());
    return q_c;
  }

  // A step with prefill chunks over FP8 slots (ap: the whole step over the slots). The decode rows [0, Td) read the
  // slots in the decode kernel; the prefill sequences' caches (earlier chunks included) are widened into BF16
  // pools of whole blocks by cache_gather (each value code x scale rounded to BF16, as MLA's prefill gathers its
  // latent), and the BF16 flash kernel attends over them with BF16 queries: the BF16 cache's prefill numerics on the
  // slots' values. The float32 generic kernel it replaces took minutes for one 4K prompt of DeepSeek 67B.
  void gathered_prefill(const DeviceStep& st, const k::GqaAttentionParams& ap, int64_t block_size) {
    const ModelConfig& c = m_.config();
    const int64_t kvw = c.n_kv_heads * c.head_dim, Td = st.n_decode, np = st.n_seqs - Td;
    cudaStream_t s = m_.stream();
    MLABENCH_ICHECK(st.gathered_slots <= gathered_slots_, "gathered prefill: {} slots over the {} allocated",
                    st.gathered_slots, gathered_slots_);
    if (Td > 0) {
      k::GqaAttentionParams d = ap;
      d.batch = {.n_seqs = static_cast<int32_t>(Td), .cu_q = st.cu_q, .kv_len = st.kv_len, .max_q = 1,
                 .max_kv = st.max_kv_decode};
      with_split_scratch(d);
      k::cuda::gqa_attention(d, s);
    }
    auto* gk = gathered_.as<uint16_t>();
    uint16_t* gv = gk + static_cast<size_t>(gathered_slots_ * kvw);
    const k::Fp8SlotLayout l8 = k::Fp8SlotLayout::heads(c.n_kv_heads, c.head_dim);
    k::CacheGatherParams g{.out = gk, .ld_out = kvw, .out_type = DType::BF16, .cache = ap.k_cache,
                           .cache_type = DType::F8_E4M3, .width = kvw, .fp8_quantised = l8.quantised,
                           .fp8_segment = l8.segment, .block_size = static_cast<int32_t>(block_size),
                           .block_tables = st.block_tables + Td * st.max_blocks, .max_blocks = st.max_blocks,
                           .kv_len = st.kv_len + Td, .cu_kv = st.gathered_cu_slots,
                           .n_seqs = static_cast<int32_t>(np)};
    k::cuda::cache_gather(g, s);
    g.out = gv;
    g.cache = ap.v_cache;
    k::cuda::cache_gather(g, s);
    k::GqaAttentionParams p = ap;
    p.batch = {.n_seqs = static_cast<int32_t>(np), .cu_q = st.cu_q + Td, .kv_len = st.kv_len + Td,
               .max_q = st.max_q_prefill, .max_kv = st.max_kv_prefill};
    p.paged = {.block_size = static_cast<int32_t>(block_size), .block_tables = st.gathered_tables,
               .max_blocks = st.max_blocks};
    p.k_cache = gk;
    p.v_cache = gv;
    p.n_slots = gathered_slots_;
    p.cache_type = DType::BF16;
    p.q_bf16 = cast_queries(st.n_rows);
    k::cuda::gqa_attention(p, s);  // prefill chunks do not split
  }

  Arena* arena_ = nullptr;
  size_t off_qkv_ = 0, off_o_ = 0, off_o_c_ = 0, off_q_c_ = 0;
  DeviceBuffer gathered_;  // gathered_prefill's K then V pools, BF16 [gathered_slots_, n_kv_heads * head_dim] each
  int64_t key_budget_ = 0, gathered_slots_ = 0;
};

}  // namespace

std::unique_ptr<GpuAttention> make_gqa_attention(GpuModel& m) { return std::make_unique<GqaAttention>(m); }

}  // namespace mlabench::gpu
