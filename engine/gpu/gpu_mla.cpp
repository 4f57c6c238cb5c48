// Multi-head latent attention on the GPU (DeepSeek-V2 / V2-Lite, with or without q_lora_rank), top to bottom. Same
// semantics as the CPU twin's MLA (engine/model/cpu_attention.cpp, engine.md §2), different schedule: every new
// token's [RMSNorm(c_kv) ; RoPE(k_pe)] goes into the paged cache first; then decode rows attend in the ABSORBED
// form (W_UK folded into the query: MQA over the 576-wide latent at V2 shapes, W_UV after), and prefill chunks in
// the DECOMPRESSED form (each prefill sequence's whole cache gathered and expanded through kv_b_proj, then causal
// flash attention with keys [k_nope_h ; k_pe] and values v_h).
// Shapes: T new rows, Td decode rows, K keys of the prefill sequences, nh heads, qk = nope + rope,
// kvl = kv_lora_rank, cw = kvl + rope (the cache width), dt = the weights' dtype.
#include <fmt/format.h>

#include <algorithm>
#include <bit>

#include "engine/core/fp8.h"
#include "engine/gpu/gpu_model.h"
#include "engine/gpu/phase_timer.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/kernels.h"

namespace mlabench::gpu {

namespace {

namespace k = mlabench::kernels;

constexpr float kLatentNormEps = 1e-6f;  // q_a/kv_a layernorms use the RMSNorm default in both references

class MlaAttention final : public GpuAttention {
 public:
  explicit MlaAttention(GpuModel& m) : GpuAttention(m) { fuse_append(); }

  std::pair<int64_t, int64_t> kv_widths() const override {
    return {m_.config().kv_lora_rank + m_.config().qk_rope_head_dim, 0};
  }

  void upload(WeightUploader& up, const LayerWeights* L, int64_t l, GpuLayer& D) const override {
    const ModelConfig& c = m_.config();
    const int64_t H = c.hidden_size, nh = c.n_heads, qk = c.qk_head_dim();
    const std::string a = fmt::format("model.layers.{}.self_attn.", l);
    // The two projections of the normed input, q_proj (or q_a_proj) and kv_a_proj, in one allocation, rows of the
    // first then of the second: decode steps of 1-2 rows stream them as one skinny_gemm (first_projections).
    const bool lora = c.q_lora_rank > 0;
    const int64_t n1 = lora ? c.q_lora_rank : nh * qk, cw = c.kv_lora_rank + c.qk_rope_head_dim;
    // FP8: one allocation too where the first's rows end on the 128-row scale grid (V2: 1,536; V2-Lite: 3,072),
    // else two matrices, each with its own grid.
    const std::pair<const TensorView*, std::string> first{L ? (lora ? &L->q_a_proj : &L->q_proj) : nullptr,
                                                          a + (lora ? "q_a_proj.weight" : "q_proj.weight")};
    const std::pair<const TensorView*, std::string> second{L ? &L->kv_a_proj : nullptr,
                                                           a + "kv_a_proj_with_mqa.weight"};
    DeviceMat& first_mat = lora ? D.q_a_proj : D.q_proj;
    if (up.fp8() && n1 % 128 != 0) {
      first_mat = up.projection({first}, {n1}, H, first.second);
      D.kv_a_proj = up.projection({second}, {cw}, H, second.second);
    } else {
      const DeviceMat both = up.projection({first, second}, {n1, cw}, H, a + "q and kv_a projections");
      first_mat = both.rows_from(0, n1, up.elem_size());
      D.kv_a_proj = both.rows_from(n1, cw, up.elem_size());
    }
    if (lora) {
      D.q_a_norm = up.norm(L ? &L->q_a_norm : nullptr, a + "q_a_layernorm.weight", c.q_lora_rank);
      D.q_b_proj = up.projection({{L ? &L->q_b_proj : nullptr, a + "q_b_proj.weight"}}, {nh * qk}, c.q_lora_rank,
                                 a + "q_b_proj");
    }
    D.kv_a_norm = up.norm(L ? &L->kv_a_norm : nullptr, a + "kv_a_layernorm.weight", c.kv_lora_rank);
    D.kv_b_proj = up.mat(L ? &L->kv_b_proj : nullptr, a + "kv_b_proj.weight", nh * (c.qk_nope_head_dim + c.v_head_dim),
                         c.kv_lora_rank);
    D.o_proj = up.projection({{L ? &L->o_proj : nullptr, a + "o_proj.weight"}}, {H}, nh * c.v_head_dim, a + "o_proj");
  }

  void reserve(Arena& arena, const serving::ServingLimits& lim) override {
    const ModelConfig& c = m_.config();
    // Decode rows: up to max_seqs, padded to a power of two in graphed steps.
    const int64_t T = lim.max_step_tokens, nh = c.n_heads;
    const auto S = static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(lim.max_seqs)));
    const int64_t qk = c.qk_head_dim(), kvl = c.kv_lora_rank, cw = kvl + c.qk_rope_head_dim, v = c.v_head_dim;
    const size_t es = dtype_size(m_.dtype());
    auto f32 = [&](int64_t n) { return arena.reserve(static_cast<size_t>(n) * 4); };
    auto dtb = [&](int64_t n) { return arena.reserve(static_cast<size_t>(n) * es); };
    arena_ = &arena;
    off_.q = f32(T * nh * qk);
    off_.q_c = dtb(T * nh * qk);
    off_.cq = f32(T * std::max<int64_t>(c.q_lora_rank, 1));
    off_.cq_c = dtb(T * std::max<int64_t>(c.q_lora_rank, 1));
    off_.ckv = f32(T * cw);
    off_.o = f32(T * nh * v);
    off_.o_c = dtb(T * nh * v);
    off_.q_lat = f32(S * nh * kvl);
    off_.o_lat = f32(S * nh * kvl);
    off_.o_lat_c = dtb(S * nh * kvl);
  }

  // The decompressed keys of a prefill step, allocated now so the KV cache cannot take their memory.
  void allocate(const serving::ServingLimits& lim) override {
    key_budget_ = serving::prefill_key_budget(lim);
    ensure_keys(key_budget_);
  }

  // The split-KV plans (kernel_params.h) keep splits x CTAs under 2 x kAttnTargetCtas, which bounds the scratch.
  int64_t split_scratch_bound() const override {
    return 2 * k::kAttnTargetCtas * k::kMlaDecodeHeads * (m_.config().kv_lora_rank + 2);
  }
  int64_t fixed_split_scratch_bound(int64_t seqs) const override {
    return seqs * k::kFixedMaxSplits * m_.config().n_heads * (m_.config().kv_lora_rank + 2);
  }
  int64_t prefill_key_budget() const override { return key_budget_; }

  void forward(const DeviceStep& st, const GpuLayer& L, void* cache, void*, int64_t block_size, float* out) override {
    const ModelConfig& c = m_.config();
    const int64_t T = st.n_rows, H = c.hidden_size, nh = c.n_heads, v = c.v_head_dim;
    const int64_t nope = c.qk_nope_head_dim, qk = c.qk_head_dim(), kvl = c.kv_lora_rank, cw = kvl + c.qk_rope_head_dim;
    const DType dt = m_.dtype();
    cudaStream_t s = m_.stream();
    float* q = buf<float>(off_.q);      // [T, nh * qk]
    float* ckv = buf<float>(off_.ckv);  // [T, cw]: the compressed KV of the new tokens
    const bool fused = first_projections(L, T, q, ckv);
    queries(st, L, q, fused);
    if (!fused) m_.linear(ckv, cw, m_.normed_input(), H, L.kv_a_proj, T);  // [T, cw]
    // One kernel: kv_a_layernorm on c_kv, RoPE on k_pe and on q's rope columns, the row appended to the cache. A
    // step of decode rows only runs it in W_UK's launch where it can (absorbed), else it is a launch of its own.
    const k::LatentAppendParams append{.latent = ckv, .ld = cw, .kv_lora = kvl, .rope_dim = m_.rope().dim,
                                       .norm_weight = L.kv_a_norm, .eps = kLatentNormEps, .q = q, .ld_q = nh * qk,
                                       .n_heads = nh, .q_head_stride = qk, .q_rope_offset = nope,
                                       .interleaved = m_.rope().interleaved, .cos = m_.rope_cos(),
                                       .sin = m_.rope_sin(), .positions = st.positions, .cache = cache,
                                       .cache_type = m_.cache_dtype(), .slots = st.slots, .n_rows = T};
    const bool append_pending = !timing_skip("latent_append");
    const bool append_in_uk = append_pending && T == st.n_decode && fuse_append();
    if (append_pending && !append_in_uk) k::cuda::latent_append(append, s);

    float* o = buf<float>(off_.o);  // [T, nh * v]
    void* o_c = buf<void>(off_.o_c);  // [T, nh * v] dt, o_proj's input
    // A step of decode rows only (BF16/F16): W_UV writes o_proj's input in dt directly, no cast between.
    const bool decode_to_dt = T == st.n_decode && dt != DType::F32;
    if (st.n_decode > 0) {
      phases::at(s, "attention: decode (absorbed)");
      absorbed(st, L, cache, block_size, q, decode_to_dt ? o_c : o, decode_to_dt ? dt : DType::F32,
               append_in_uk ? &append : nullptr);
    }
    if (T > st.n_decode) decompressed(st, L, cache, block_size, q, o);
    phases::at(s, "attention: o_proj");
    if (!decode_to_dt)
      k::cuda::cast({.out = o_c, .out_type = dt, .ld_out = nh * v, .in = o, .ld_in = nh * v, .n_rows = T,
                     .n_cols = nh * v},
                    s);
    m_.linear(out, H, o_c, nh * v, L.o_proj, T);  // [T, H]
  }

 private:
  template <class P>
  P* buf(size_t off) const {
    return arena_->at<P>(off);
  }
  const char* bytes(const DeviceMat& m, int64_t elems) const {
    return static_cast<const char*>(m.p) + static_cast<size_t>(elems) * dtype_size(m_.dtype());
  }

  // A step of 1-2 rows (BF16; FP8 1-16): q_proj (or q_a_proj, into cq) and kv_a_proj (into ckv) as one skinny_gemm
  // (skinny_gemm_fp8) over their adjacent weights (upload), the same sums as two calls. False where it does not run.
  bool first_projections(const GpuLayer& L, int64_t T, float* q, float* ckv) {
    const ModelConfig& c = m_.config();
    const int64_t H = c.hidden_size, ql = c.q_lora_rank, cw = c.kv_lora_rank + c.qk_rope_head_dim;
    const DeviceMat& first = ql > 0 ? L.q_a_proj : L.q_proj;
    static const bool on = gpu::env_switch("MLABENCH_FUSE_PROJECTIONS");  // 0: two launches (A/B)
    if (!on) return false;
    float* y = ql > 0 ? buf<float>(off_.cq) : q;
    if (first.fp8()) {
      // FP8 (1-16 rows): one skinny_gemm_fp8 over both where upload put them in one allocation on one scale grid.
      const auto* codes = static_cast<const char*>(first.p);
      if (!L.kv_a_proj.fp8() || first.rows % kFp8Block != 0 || first.split_rows > 0 ||
          codes + first.rows * H != L.kv_a_proj.p ||
          first.scale + (first.rows / kFp8Block) * fp8_weight_scale_ld(H) != L.kv_a_proj.scale)
        return false;  // apart (first's rows off the 128 grid)
    } else if (bytes(first, first.rows * H) != L.kv_a_proj.p) {
      return false;  // apart
    }
    // The input norm too, where the kernel takes it (GpuModel::project_input).
    const DeviceMat both{.p = first.p, .rows = first.rows + cw, .cols = H, .scale = first.scale};
    return m_.project_input(y, first.rows, ckv, cw, first.rows, both, T);
  }

  // q [T, nh * qk] from the normed input: q_proj, or q_a_proj -> q_a_layernorm -> q_b_proj. first_done: q_proj's
  // (q_a_proj's) product is already in q (cq), from first_projections.
  void queries(const DeviceStep& st, const GpuLayer& L, float* q, bool first_done) {
    const ModelConfig& c = m_.config();
    const int64_t T = st.n_rows, nh = c.n_heads, qk = c.qk_head_dim(), ql = c.q_lora_rank;
    const DType dt = m_.dtype();
    if (ql > 0) {
      float* cq = buf<float>(off_.cq);  // [T, q_lora]
      void* cq_c = buf<void>(off_.cq_c);
      if (!first_done) m_.project_input(cq, ql, nullptr, 0, 0, L.q_a_proj, T);  // [T, q_lora]
      k::cuda::rms_norm({.residual = cq, .ld_residual = ql, .out = cq_c, .out_type = dt, .ld_out = ql,
                         .weight = L.q_a_norm, .n_rows = T, .dim = ql, .eps = kLatentNormEps},
                        m_.stream());
      m_.linear(q, nh * qk, cq_c, ql, L.q_b_proj, T);  // [T, nh * qk]
    } else {
      if (!first_done) m_.project_input(q, nh * qk, nullptr, 0, 0, L.q_proj, T);  // [T, nh * qk]
    }
  }

  // MLABENCH_FUSE_APPEND=1 (read at construction; off by default): a decode step's latent_append in W_UK's launch.
  // Measured even on an H100 (V2-Lite batch 1 BF16: 410.7 against 410.3 tok/s; docs/perf-notes.md, issue 16 round
  // 13): the launch it saves is paid back by the MLA decode kernel's early cache stream, which it has to give up.
  static bool fuse_append() {
    static const bool on = gpu::env_switch("MLABENCH_FUSE_APPEND", false);
    return on;
  }

  // Decode rows [0, Td): q_lat_h = q_nope_h . W_UK_h, MQA over the latent cache, o_h = o_lat_h . W_UV_h^T.
  // o [Td, nh * v] in o_type (float32, or dt when it feeds o_proj directly). append (a step of decode rows only):
  // the step's latent_append, still to run: in W_UK's launch (SkinnyGemmParams::append, issue 16 round 13: one
  // launch fewer a layer) where that kernel runs, else as its own launch first.
  void absorbed(const DeviceStep& st, const GpuLayer& L, const void* cache, int64_t block_size, const float* q,
                void* o, DType o_type, const k::LatentAppendParams* append) {
    const ModelConfig& c = m_.config();
    const int64_t Td = st.n_decode, nh = c.n_heads, nope = c.qk_nope_head_dim, qk = c.qk_head_dim();
    const int64_t kvl = c.kv_lora_rank, v = c.v_head_dim;
    const DType dt = m_.dtype();
    cudaStream_t s = m_.stream();
    // Batch 1-2 in BF16: skinny_gemm reads q and the attention output in float32 and rounds them to BF16 as it reads
    // (x_f32: the same products as the casts below, without their two launches). Elsewhere: cast, then cuBLAS.
    const bool direct = dt == DType::BF16 && Td <= k::kSkinnyEngineRows && Blas::skinny_enabled();
    // q_lat_h = q_nope_h . W_UK_h ([nope] x [nope, kvl]) for every head in one strided GEMM.
    float* q_lat = buf<float>(off_.q_lat);  // [Td, nh * kvl]
    k::SkinnyGemmParams uk{.y = q_lat, .ldy = nh * kvl, .stride_y = kvl, .x = q, .ldx = nh * qk, .stride_x = qk,
                           .w = L.kv_b_proj.p, .ldw = kvl, .stride_w = (nope + v) * kvl, .dtype = dt, .m = Td,
                           .n = kvl, .k = nope, .batch = nh, .w_kn = true, .x_f32 = true};
    if (append != nullptr) {
      uk.append = *append;
      if (timing_skip("w_uk") || !direct || !k::cuda::skinny_gemm_supported(uk)) {
        uk.append = {};
        k::cuda::latent_append(*append, s);
      }
    }
    if (timing_skip("w_uk")) {
    } else if (direct && k::cuda::skinny_gemm_supported(uk)) {
      k::cuda::skinny_gemm(uk, s);
    } else {
      void* q_c = buf<void>(off_.q_c);
      k::cuda::cast({.out = q_c, .out_type = dt, .ld_out = nh * qk, .in = q, .ld_in = nh * qk, .n_rows = Td,
                     .n_cols = nh * qk},
                    s);
      m_.blas().matmul_strided(q_lat, nh * kvl, kvl, q_c, nh * qk, qk, L.kv_b_proj.p, kvl, (nope + v) * kvl, dt, Td,
                               kvl, nope, nh);
    }
    float* o_lat = buf<float>(off_.o_lat);  // [Td, nh * kvl]
    k::MlaDecodeParams dp{.n_seqs = static_cast<int32_t>(Td), .kv_len = st.kv_len, .max_kv = st.max_kv_decode,
                          .paged = {.block_size = static_cast<int32_t>(block_size), .block_tables = st.block_tables,
                                    .max_blocks = st.max_blocks},
                          .cache = cache, .cache_type = m_.cache_dtype(), .q_lat = q_lat, .ld_q_lat = nh * kvl,
                          .q_pe = q + nope, .ld_q_pe = nh * qk, .q_pe_head_stride = qk, .out = o_lat,
                          .ld_out = nh * kvl, .n_heads = static_cast<int32_t>(nh),
                          .kv_lora = static_cast<int32_t>(kvl), .rope = static_cast<int32_t>(c.qk_rope_head_dim),
                          .scale = static_cast<float>(m_.rope().softmax_scale),
                          .bf16_operands = dt == DType::BF16};  // as transformers' BF16 attention
    dp.n_slots = m_.cache_slots();
    // latent_append wrote the rows and q_pe, then W_UK ran: only q_lat is the last launch's, and the cache stream may
    // start before the wait. Not where the append ran in W_UK's launch: then the new rows are the last launch's too.
    dp.cache_early = uk.append.latent == nullptr;
    dp.fixed_splits = m_.fixed_splits();
    dp.scratch_floats = k::mla_decode_scratch_floats(dp);
    if (dp.scratch_floats > 0) dp.scratch = m_.attention_scratch(dp.scratch_floats);
    k::cuda::mla_decode_attention(dp, s);
    // o_h = o_lat_h . W_UV_h^T ([kvl] x [v, kvl]^T).
    k::SkinnyGemmParams uv{.x = o_lat, .ldx = nh * kvl, .stride_x = kvl, .w = bytes(L.kv_b_proj, nope * kvl),
                           .ldw = kvl, .stride_w = (nope + v) * kvl, .dtype = dt, .m = Td, .n = v, .k = kvl,
                           .batch = nh, .x_f32 = true};
    if (o_type == DType::F32) {
      uv.y = static_cast<float*>(o), uv.ldy = nh * v, uv.stride_y = v;
    } else {
      uv.act = o, uv.ld_act = nh * v, uv.stride_act = v;
    }
    if (timing_skip("w_uv")) return;
    if (direct && k::cuda::skinny_gemm_supported(uv)) {
      k::cuda::skinny_gemm(uv, s);
      return;
    }
    void* o_lat_c = buf<void>(off_.o_lat_c);
    k::cuda::cast({.out = o_lat_c, .out_type = dt, .ld_out = nh * kvl, .in = o_lat, .ld_in = nh * kvl, .n_rows = Td,
                   .n_cols = nh * kvl},
                  s);
    m_.blas().linear_strided(o, nh * v, v, o_lat_c, nh * kvl, kvl, bytes(L.kv_b_proj, nope * kvl), kvl,
                             (nope + v) * kvl, dt, Td, v, kvl, nh, o_type);
  }

  // Prefill rows [Td, T): every prefill sequence's cache (earlier chunks included) gathered and expanded.
  void decompressed(const DeviceStep& st, const GpuLayer& L, const void* cache, int64_t block_size, const float* q,
                    float* o) {
    const ModelConfig& c = m_.config();
    const int64_t nh = c.n_heads, nope = c.qk_nope_head_dim, rd = c.qk_rope_head_dim, qk = nope + rd;
    const int64_t kvl = c.kv_lora_rank, cw = kvl + rd, v = c.v_head_dim, Td = st.n_decode;
    const int64_t K = st.prefill_keys, np = st.n_seqs - st.n_decode;
    const DType dt = m_.dtype();
    const size_t es = dtype_size(dt);
    cudaStream_t s = m_.stream();
    ensure_keys(K);
    phases::at(s, "attention: prefill keys (kv_b)");
    // BF16 precision with a flash-kernel instance: BF16 q, keys and values, as transformers' BF16 sdpa multiplies
    // them (k_pe rounded with the latent, kv_b_proj's output rounded once). Otherwise float32 operands.
    const bool bf16 = bf16_flash();
    const k::Fp8SlotLayout l8 = k::Fp8SlotLayout::mla(kvl, rd);
    k::CacheGatherParams gather{.cache = cache, .cache_type = m_.cache_dtype(), .width = cw,
                                .fp8_quantised = l8.quantised, .fp8_segment = l8.segment, .block_size = static_cast<int32_t>(block_size),
                                .block_tables = st.block_tables + Td * st.max_blocks, .max_blocks = st.max_blocks,
                                .kv_len = st.kv_len + Td, .cu_kv = st.cu_kv, .n_seqs = static_cast<int32_t>(np)};
    k::MlaPrefillParams ap{.batch = {.n_seqs = static_cast<int32_t>(np), .cu_q = st.cu_q + Td,
                                     .kv_len = st.kv_len + Td, .max_q = st.max_q_prefill,
                                     .max_kv = st.max_kv_prefill},
                           .cu_kv = st.cu_kv, .q = q, .ld_q = nh * qk, .ld_kv = nh * (nope + v), .ld_kpe = cw,
                           .out = o, .ld_out = nh * v, .n_heads = static_cast<int32_t>(nh),
                           .nope = static_cast<int32_t>(nope), .rope = static_cast<int32_t>(rd),
                           .v = static_cast<int32_t>(v), .scale = static_cast<float>(m_.rope().softmax_scale),
                           .float32_math = m_.precision() == Precision::FLOAT32};
    if (bf16) {
      // The BF16 cache gathered as stored (the latent and k_pe are kv_b_proj's and the kernel's BF16 operands),
      // then kv_b_proj's output written in BF16: [K, cw] + [K, nh * (nope + v)], both BF16.
      auto* lat_c = keys_.as<uint16_t>();
      auto* kv_c = reinterpret_cast<uint16_t*>(keys_.as<char>() + kv_offset_bf16(K));  // 16-byte aligned rows
      gather.out = lat_c;
      gather.ld_out = cw;
      gather.out_type = DType::BF16;
      k::cuda::cache_gather(gather, s);
      m_.blas().linear_to(kv_c, DType::BF16, nh * (nope + v), lat_c, cw, L.kv_b_proj.p, kvl, dt, K, nh * (nope + v),
                          kvl);
      auto* q_c = buf<uint16_t>(off_.q_c);  // rows [Td, T) of q in BF16 (decode rows use [0, Td))
      k::cuda::cast({.out = q_c + Td * nh * qk, .out_type = dt, .ld_out = nh * qk, .in = q + Td * nh * qk,
                     .ld_in = nh * qk, .n_rows = st.n_rows - Td, .n_cols = nh * qk},
                    s);
      ap.q_bf16 = q_c;
      ap.kv_bf16 = kv_c;
      ap.k_pe_bf16 = lat_c + kvl;
      ap.n_keys = K;
    } else {
      // Float32 operands: the latent gathered in float32 [K, cw], its c_kv part cast to the weights' type for
      // kv_b_proj [K, kvl], whose float32 output [K, nh * (nope + v)] the kernel reads with k_pe.
      float* lat = keys_.as<float>();
      void* lat_c = keys_.as<char>() + static_cast<size_t>(K * cw) * 4;
      float* kv = reinterpret_cast<float*>(static_cast<char*>(lat_c) + static_cast<size_t>(K * cw) * es);
      gather.out = lat;
      gather.ld_out = cw;
      k::cuda::cache_gather(gather, s);
      k::cuda::cast({.out = lat_c, .out_type = dt, .ld_out = cw, .in = lat, .ld_in = cw, .n_rows = K, .n_cols = kvl},
                    s);
      m_.blas().linear(kv, nh * (nope + v), lat_c, cw, L.kv_b_proj.p, kvl, dt, K, nh * (nope + v), kvl);
      ap.kv = kv;
      ap.k_pe = lat + kvl;
    }
    phases::at(s, "attention: prefill flash");
    k::cuda::mla_prefill_attention(ap, s);
  }

  bool bf16_flash() const {
    const ModelConfig& c = m_.config();
    // FP8 slots too: cache_gather widens them to BF16 (code x scale rounded, as the decode kernel reads them).
    return m_.precision() != Precision::FLOAT32 && m_.dtype() == DType::BF16 &&
           (m_.cache_dtype() == DType::BF16 || m_.cache_dtype() == DType::F8_E4M3) &&
           k::mla_prefill_bf16_supported(static_cast<int32_t>(c.qk_nope_head_dim),
                                         static_cast<int32_t>(c.qk_rope_head_dim), static_cast<int32_t>(c.v_head_dim));
  }

  // Where the BF16 keys and values start in keys_: after the [K, cw] latent, rounded up to 256 bytes.
  size_t kv_offset_bf16(int64_t K) const {
    const ModelConfig& c = m_.config();
    const auto lat = static_cast<size_t>(K * (c.kv_lora_rank + c.qk_rope_head_dim)) * 2;
    return (lat + 255) / 256 * 256;
  }

  // Scratch for the decompressed keys of a prefill step, per key: BF16 [cw] + BF16 [nh (nope + v)] for the BF16
  // flash kernel (V2-Lite: 9.3 KB); float32 [cw] + dt [cw] + float32 [nh (nope + v)] otherwise (19.7 KB).
  void ensure_keys(int64_t K) {
    const ModelConfig& c = m_.config();
    const auto cw = static_cast<size_t>(c.kv_lora_rank + c.qk_rope_head_dim);
    const auto kv = static_cast<size_t>(c.n_heads * (c.qk_nope_head_dim + c.v_head_dim));
    const size_t need = bf16_flash() ? kv_offset_bf16(K) + static_cast<size_t>(K) * kv * 2
                                     : static_cast<size_t>(K) * (cw * 4 + cw * dtype_size(m_.dtype()) + kv * 4);
    if (keys_.bytes() >= need) return;
    MLABENCH_ICHECK(keys_.bytes() == 0, "prefill step with {} keys over the budget of {}", K, key_budget_);
    keys_ = DeviceBuffer(need, "MLA prefill keys");
  }

  struct Offsets {
    size_t q, q_c, cq, cq_c, ckv, o, o_c, q_lat, o_lat, o_lat_c;
  } off_{};
  Arena* arena_ = nullptr;
  DeviceBuffer keys_;
  int64_t key_budget_ = 0;
};

}  // namespace

std::unique_ptr<GpuAttention> make_mla_attention(GpuModel& m) { return std::make_unique<MlaAttention>(m); }

}  // namespace mlabench::gpu
