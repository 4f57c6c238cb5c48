// DeepSeek-V2 / V2-Lite forward pass on the GPU, top to bottom, over a varlen batch (engine/gpu/gpu_model.h).
// Same semantics as the CPU twin engine/model/deepseek_v2.cpp (engine.md section 2), different schedule:
//   - MLA: every new token's [RMSNorm(c_kv) ; RoPE(k_pe)] goes into the paged BF16 cache first; then decode rows
//     attend in the ABSORBED form (W_UK folded into the query, MQA over the 576-wide latent, W_UV after), and
//     prefill chunks in the DECOMPRESSED form (each prefill sequence's whole cache gathered and expanded through
//     kv_b_proj, then causal flash attention with keys [k_nope_h ; k_pe] and values v_h);
//   - MoE: float32 router GEMM + softmax/top-k kernel; routed experts through batched cuBLAS GEMMs on expert-
//     ordered rows (one GEMV per (token, expert) pair for small batches, all experts at `capacity` rows for
//     decode batches, the experts that have rows for prefill); shared experts added unweighted.
// Shapes: T new rows in the step, Td of them decode rows (one per decoding sequence), K = keys of the prefill
// sequences, nh heads, qk = nope + rope, cw = kv_lora + rope (the cache width), dt = the weights' dtype.
#include <algorithm>
#include <cstdio>
#include <string>

#include "engine/gpu/gpu_model.h"
#include "engine/kernels/cuda/kernels.h"

namespace mlabench::gpu {

namespace {

namespace k = mlabench::kernels;

constexpr float kLatentNormEps = 1e-6f;  // q_a/kv_a layernorms use the RMSNorm default in both references

class DeepseekV2Gpu final : public GpuModel {
 public:
  DeepseekV2Gpu(const ModelConfig& c, const ModelWeights* host, uint64_t seed, Precision precision, cudaStream_t s)
      : GpuModel(c, precision, s) {
    upload_weights(host, seed);
  }

  std::pair<int64_t, int64_t> kv_widths() const override {
    return {config_.kv_lora_rank + config_.qk_rope_head_dim, 0};
  }
  int64_t prefill_key_budget() const override { return key_budget_; }

  void allocate_buffers(const StepLimits& lim) override {
    allocate_common(lim);
    const ModelConfig& c = config_;
    const int64_t T = lim.max_tokens, S = lim.max_seqs, H = c.hidden_size, nh = c.n_heads;
    const int64_t qk = c.qk_head_dim(), kvl = c.kv_lora_rank, cw = kvl + c.qk_rope_head_dim, v = c.v_head_dim;
    const size_t es = dtype_size(dtype_);
    int64_t inter = c.intermediate_size;
    if (c.n_routed_experts > 0) inter = std::max(inter, c.moe_intermediate_size * std::max<int64_t>(1, c.n_shared_experts));
    auto f32 = [&](int64_t n) { return arena_.reserve(static_cast<size_t>(n) * 4); };
    auto dtb = [&](int64_t n) { return arena_.reserve(static_cast<size_t>(n) * es); };
    off_.x = f32(T * H);
    off_.delta = f32(T * H);
    off_.xn = f32(T * H);
    off_.xn_c = dtb(T * H);
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
    off_.gu = f32(T * 2 * inter);
    off_.h_c = dtb(T * inter);
    if (c.n_routed_experts > 0) {
      const int64_t E = c.n_routed_experts, K = c.experts_per_token, I = c.moe_intermediate_size;
      padded_max_ = std::min<int64_t>(S, 128);
      const int64_t rows = std::max(T * K, E * padded_max_);
      off_.router = f32(T * E);
      off_.topk_idx = arena_.reserve(static_cast<size_t>(T * K) * 4);
      off_.topk_w = f32(T * K);
      off_.counts = arena_.reserve(static_cast<size_t>(E) * 4);
      off_.offsets = arena_.reserve(static_cast<size_t>(E + 1) * 4);
      off_.rank = arena_.reserve(static_cast<size_t>(T * K) * 4);
      off_.xe = dtb(rows * H);
      off_.ge = f32(rows * 2 * I);
      off_.he_c = dtb(rows * I);
      off_.ye = f32(rows * H);
      off_.ptrs = arena_.reserve(static_cast<size_t>(6 * T * K) * sizeof(void*));
    }
    arena_.allocate("DeepSeek-V2 step buffers");
    // The decompressed keys of a prefill step, allocated now so the KV cache cannot take their memory.
    key_budget_ = std::max(2 * lim.max_tokens, lim.max_context);
    ensure_keys(key_budget_);
    if (c.n_routed_experts > 0) host_offsets_.resize(static_cast<size_t>(c.n_routed_experts + 1));
  }

  void forward(const DeviceStep& st, KvPools& pools) override {
    const ModelConfig& c = config_;
    const int64_t T = st.n_rows, H = c.hidden_size;
    const auto eps = static_cast<float>(c.rms_norm_eps);
    float* x = buf<float>(off_.x);          // residual stream [T, H]
    float* delta = buf<float>(off_.delta);  // the last block's output [T, H]
    void* xn_c = buf<void>(off_.xn_c);      // normed input as a GEMM operand [T, H] dt

    k::cuda::embedding({.out = x, .table = embed_.p, .table_type = dtype_, .hidden = H, .ids = st.tokens,
                        .n_rows = T},
                       stream_);
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const Layer& L = layers_[static_cast<size_t>(l)];
      k::cuda::rms_norm({.residual = x, .ld_residual = H, .delta = l == 0 ? nullptr : delta, .ld_delta = H,
                         .out = xn_c, .out_type = dtype_, .ld_out = H, .weight = L.input_norm, .n_rows = T,
                         .dim = H, .eps = eps},
                        stream_);
      attention(st, L, pools.k[static_cast<size_t>(l)].get(), pools.block_size, delta);
      if (L.is_moe) {
        // The router needs the normed input in float32; the experts take it in dt.
        float* xn = buf<float>(off_.xn);
        k::cuda::rms_norm({.residual = x, .ld_residual = H, .delta = delta, .ld_delta = H, .out = xn,
                           .out_type = DType::F32, .ld_out = H, .weight = L.post_norm, .n_rows = T, .dim = H,
                           .eps = eps},
                          stream_);
        k::cuda::cast({.out = xn_c, .out_type = dtype_, .ld_out = H, .in = xn, .ld_in = H, .n_rows = T,
                       .n_cols = H},
                      stream_);
        moe(st, L, xn, xn_c, delta);
      } else {
        k::cuda::rms_norm({.residual = x, .ld_residual = H, .delta = delta, .ld_delta = H, .out = xn_c,
                           .out_type = dtype_, .ld_out = H, .weight = L.post_norm, .n_rows = T, .dim = H,
                           .eps = eps},
                          stream_);
        swiglu(L.mlp, xn_c, T, delta);
      }
    }
    output_head(st, x, delta);
  }

 private:
  template <class P>
  P* buf(size_t off) const {
    return arena_.at<P>(off);
  }
  const char* bytes(const Mat& m, int64_t elems) const {
    return static_cast<const char*>(m.p) + static_cast<size_t>(elems) * dtype_size(dtype_);
  }

  // Multi-head latent attention of the step's rows; writes o_proj's output to out [T, H].
  void attention(const DeviceStep& st, const Layer& L, void* cache, int64_t block_size, float* out) {
    const ModelConfig& c = config_;
    const int64_t T = st.n_rows, Td = st.n_decode, H = c.hidden_size, nh = c.n_heads;
    const int64_t nope = c.qk_nope_head_dim, rd = c.qk_rope_head_dim, qk = nope + rd, v = c.v_head_dim;
    const int64_t kvl = c.kv_lora_rank, cw = kvl + rd, ql = c.q_lora_rank;
    void* xn_c = buf<void>(off_.xn_c);
    float* q = buf<float>(off_.q);  // [T, nh * qk]

    if (ql > 0) {
      float* cq = buf<float>(off_.cq);  // [T, q_lora]
      void* cq_c = buf<void>(off_.cq_c);
      blas_->linear(cq, ql, xn_c, H, L.q_a_proj.p, H, dtype_, T, ql, H);
      k::cuda::rms_norm({.residual = cq, .ld_residual = ql, .out = cq_c, .out_type = dtype_, .ld_out = ql,
                         .weight = L.q_a_norm, .n_rows = T, .dim = ql, .eps = kLatentNormEps},
                        stream_);
      blas_->linear(q, nh * qk, cq_c, ql, L.q_b_proj.p, ql, dtype_, T, nh * qk, ql);  // [T, nh * qk]
    } else {
      blas_->linear(q, nh * qk, xn_c, H, L.q_proj.p, H, dtype_, T, nh * qk, H);  // [T, nh * qk]
    }

    // The compressed KV of the new tokens: normalise c_kv, rotate k_pe, append to the cache.
    float* ckv = buf<float>(off_.ckv);  // [T, cw]
    blas_->linear(ckv, cw, xn_c, H, L.kv_a_proj.p, H, dtype_, T, cw, H);
    k::cuda::rms_norm({.residual = ckv, .ld_residual = cw, .out = ckv, .out_type = DType::F32, .ld_out = cw,
                       .weight = L.kv_a_norm, .n_rows = T, .dim = kvl, .eps = kLatentNormEps},
                      stream_);
    rope(ckv, cw, T, 1, 0, kvl, st.positions);
    rope(q, nh * qk, T, nh, qk, nope, st.positions);
    k::cuda::cache_write({.cache = cache, .cache_type = cache_dtype(), .width = cw, .src = ckv, .ld_src = cw, .slots = st.slots, .n_rows = T},
                         stream_);

    float* o = buf<float>(off_.o);  // [T, nh * v]
    const auto scale = static_cast<float>(rope_.softmax_scale);
    const size_t es = dtype_size(dtype_);
    if (Td > 0) {
      // Absorbed: q_lat_h = q_nope_h . W_UK_h ([nope] x [nope, kvl]) for every head in one strided GEMM.
      void* q_c = buf<void>(off_.q_c);
      k::cuda::cast({.out = q_c, .out_type = dtype_, .ld_out = nh * qk, .in = q, .ld_in = nh * qk, .n_rows = Td,
                     .n_cols = nh * qk},
                    stream_);
      float* q_lat = buf<float>(off_.q_lat);  // [Td, nh * kvl]
      blas_->matmul_strided(q_lat, nh * kvl, kvl, q_c, nh * qk, qk, L.kv_b_proj.p, kvl, (nope + v) * kvl, dtype_, Td,
                            kvl, nope, nh);
      float* o_lat = buf<float>(off_.o_lat);  // [Td, nh * kvl]
      k::MlaDecodeParams dp{.n_seqs = static_cast<int32_t>(Td), .kv_len = st.kv_len,
                                     .max_kv = st.max_kv_decode,
                                     .paged = {.block_size = static_cast<int32_t>(block_size),
                                               .block_tables = st.block_tables,
                                               .max_blocks = st.max_blocks},
                                     .cache = cache, .cache_type = cache_dtype(), .q_lat = q_lat, .ld_q_lat = nh * kvl, .q_pe = q + nope,
                                     .ld_q_pe = nh * qk, .q_pe_head_stride = qk, .out = o_lat, .ld_out = nh * kvl,
                                     .n_heads = static_cast<int32_t>(nh), .kv_lora = static_cast<int32_t>(kvl),
                                     .rope = static_cast<int32_t>(rd), .scale = scale};
      dp.scratch_floats = k::mla_decode_scratch_floats(dp);
      if (dp.scratch_floats > 0) dp.scratch = attention_scratch(dp.scratch_floats);
      k::cuda::mla_decode_attention(dp, stream_);
      void* o_lat_c = buf<void>(off_.o_lat_c);
      k::cuda::cast({.out = o_lat_c, .out_type = dtype_, .ld_out = nh * kvl, .in = o_lat, .ld_in = nh * kvl,
                     .n_rows = Td, .n_cols = nh * kvl},
                    stream_);
      // o_h = o_lat_h . W_UV_h^T ([kvl] x [v, kvl]^T).
      blas_->linear_strided(o, nh * v, v, o_lat_c, nh * kvl, kvl, bytes(L.kv_b_proj, nope * kvl), kvl,
                            (nope + v) * kvl, dtype_, Td, v, kvl, nh);
    }
    if (T > Td) {
      // Decompressed: every prefill sequence's cache (earlier chunks included) gathered and expanded.
      const int64_t K = st.prefill_keys, np = st.n_seqs - st.n_decode;
      ensure_keys(K);
      float* lat = keys_.as<float>();                                    // [K, cw]
      void* lat_c = keys_.as<char>() + static_cast<size_t>(K * cw) * 4;  // [K, kvl] dt
      float* kv = reinterpret_cast<float*>(static_cast<char*>(lat_c) + static_cast<size_t>(K * kvl) * es);
      k::cuda::cache_gather({.out = lat, .ld_out = cw, .cache = cache, .cache_type = cache_dtype(), .width = cw,
                             .block_size = static_cast<int32_t>(block_size),
                             .block_tables = st.block_tables + st.n_decode * st.max_blocks,
                             .max_blocks = st.max_blocks, .kv_len = st.kv_len + st.n_decode, .cu_kv = st.cu_kv,
                             .n_seqs = static_cast<int32_t>(np)},
                            stream_);
      k::cuda::cast({.out = lat_c, .out_type = dtype_, .ld_out = kvl, .in = lat, .ld_in = cw, .n_rows = K,
                     .n_cols = kvl},
                    stream_);
      blas_->linear(kv, nh * (nope + v), lat_c, kvl, L.kv_b_proj.p, kvl, dtype_, K, nh * (nope + v), kvl);
      k::cuda::mla_prefill_attention({.batch = {.n_seqs = static_cast<int32_t>(np), .cu_q = st.cu_q + st.n_decode,
                                                .kv_len = st.kv_len + st.n_decode, .max_q = st.max_q_prefill,
                                                .max_kv = st.max_kv_prefill},
                                      .cu_kv = st.cu_kv, .q = q, .ld_q = nh * qk, .kv = kv, .ld_kv = nh * (nope + v),
                                      .k_pe = lat + kvl, .ld_kpe = cw, .out = o, .ld_out = nh * v,
                                      .n_heads = static_cast<int32_t>(nh), .nope = static_cast<int32_t>(nope),
                                      .rope = static_cast<int32_t>(rd), .v = static_cast<int32_t>(v),
                                      .scale = scale, .float32_math = precision_ == Precision::FLOAT32},
                                     stream_);
    }
    void* o_c = buf<void>(off_.o_c);
    k::cuda::cast({.out = o_c, .out_type = dtype_, .ld_out = nh * v, .in = o, .ld_in = nh * v, .n_rows = T,
                   .n_cols = nh * v},
                  stream_);
    blas_->linear(out, H, o_c, nh * v, L.o_proj.p, nh * v, dtype_, T, H, nh * v);  // [T, H]
  }

  void rope(float* x, int64_t ld, int64_t rows, int64_t heads, int64_t head_stride, int64_t offset,
            const int32_t* positions) {
    k::cuda::rope({.x = x, .ld = ld, .n_rows = rows, .n_heads = heads, .head_stride = head_stride,
                   .offset = offset, .dim = rope_.dim, .interleaved = true, .cos = rope_cos_.as<float>(),
                   .sin = rope_sin_.as<float>(), .positions = positions},
                  stream_);
  }

  // down(silu(gate(x)) * up(x)) for x [n, H] in dt -> out [n, H] float32 (dense layers, shared experts).
  void swiglu(const Mlp& w, const void* x, int64_t n, float* out) {
    const int64_t H = config_.hidden_size, I = w.down.cols;
    float* gu = buf<float>(off_.gu);  // [n, 2I]
    void* h_c = buf<void>(off_.h_c);  // [n, I]
    blas_->linear(gu, 2 * I, x, H, w.gate_up.p, H, dtype_, n, 2 * I, H);
    k::cuda::silu_mul({.out = h_c, .out_type = dtype_, .ld_out = I, .gate_up = gu, .ld_in = 2 * I, .inter = I,
                       .n_rows = n},
                      stream_);
    blas_->linear(out, H, h_c, I, w.down.p, I, dtype_, n, H, I);
  }

  // DeepSeekMoE over the step's rows: out [T, H] = shared(x) + sum_j w_j expert_j(x).
  void moe(const DeviceStep& st, const Layer& L, const float* xn, const void* xn_c, float* out) {
    const ModelConfig& c = config_;
    const int64_t T = st.n_rows, H = c.hidden_size, E = c.n_routed_experts, K = c.experts_per_token;
    const int64_t I = c.moe_intermediate_size;
    const size_t es = dtype_size(dtype_);
    float* logits = buf<float>(off_.router);  // [T, E] float32
    blas_->linear_f32(logits, E, xn, H, L.router, H, T, E, H);
    auto* idx = buf<int32_t>(off_.topk_idx);
    auto* w = buf<float>(off_.topk_w);
    k::cuda::router({.logits = logits, .n_tokens = T, .n_experts = static_cast<int32_t>(E),
                     .top_k = static_cast<int32_t>(K),
                     .method = c.topk_method == TopkMethod::GREEDY ? k::RouterMethod::GREEDY
                                                                   : k::RouterMethod::GROUP_LIMITED_GREEDY,
                     .n_group = static_cast<int32_t>(c.n_group), .topk_group = static_cast<int32_t>(c.topk_group),
                     .norm_topk_prob = c.norm_topk_prob,
                     .routed_scaling_factor = static_cast<float>(c.routed_scaling_factor), .topk_idx = idx,
                     .topk_weight = w},
                    stream_);
    if (L.has_shared) {
      swiglu(L.shared, xn_c, T, out);
    }
    auto* counts = buf<int32_t>(off_.counts);
    auto* offsets = buf<int32_t>(off_.offsets);
    auto* rank = buf<int32_t>(off_.rank);
    k::cuda::moe_permute({.topk_idx = idx, .n_tokens = T, .top_k = static_cast<int32_t>(K),
                          .n_experts = static_cast<int32_t>(E), .counts = counts, .offsets = offsets, .rank = rank},
                         stream_);
    k::MoeRowMap map{.mode = k::MoeRowMode::COMPACT, .topk_idx = idx, .rank = rank, .offsets = offsets};
    if (T * K <= E) {
      map.mode = k::MoeRowMode::PAIR;
    } else if (T <= padded_max_) {
      map.mode = k::MoeRowMode::PADDED;
      map.capacity = static_cast<int32_t>(T);
    }
    void* xe = buf<void>(off_.xe);      // expert-ordered inputs, dt
    float* ge = buf<float>(off_.ge);    // [rows, 2I]
    void* he_c = buf<void>(off_.he_c);  // [rows, I] dt
    float* ye = buf<float>(off_.ye);    // [rows, H]
    k::cuda::moe_gather({.out = xe, .ld_out = H, .x = xn_c, .ld_x = H, .elem_type = dtype_, .hidden = H,
                         .n_tokens = T, .top_k = static_cast<int32_t>(K), .map = map},
                        stream_);
    const int64_t gu_stride = 2 * I * H, dn_stride = H * I;  // elements per expert
    if (map.mode == k::MoeRowMode::PAIR) {
      const int64_t P = T * K;
      auto** ptr = buf<const void*>(off_.ptrs);
      k::cuda::moe_pair_pointers({.topk_idx = idx, .n_pairs = P,
                                  .weights = static_cast<const char*>(L.experts_gate_up.p),
                                  .expert_stride_bytes = gu_stride * static_cast<int64_t>(es),
                                  .x = static_cast<const char*>(xe), .ld_x_bytes = H * static_cast<int64_t>(es),
                                  .y = reinterpret_cast<char*>(ge), .ld_y_bytes = 2 * I * 4, .a = ptr,
                                  .b = ptr + P, .c = const_cast<void**>(ptr + 2 * P)},
                                 stream_);
      k::cuda::moe_pair_pointers({.topk_idx = idx, .n_pairs = P,
                                  .weights = static_cast<const char*>(L.experts_down.p),
                                  .expert_stride_bytes = dn_stride * static_cast<int64_t>(es),
                                  .x = static_cast<const char*>(he_c), .ld_x_bytes = I * static_cast<int64_t>(es),
                                  .y = reinterpret_cast<char*>(ye), .ld_y_bytes = H * 4, .a = ptr + 3 * P,
                                  .b = ptr + 4 * P, .c = const_cast<void**>(ptr + 5 * P)},
                                 stream_);
      blas_->linear_batched(const_cast<void* const*>(ptr + 2 * P), 2 * I, ptr + P, H, ptr, H, dtype_, 1, 2 * I, H, P);
      silu_rows(ge, he_c, P, I);
      blas_->linear_batched(const_cast<void* const*>(ptr + 5 * P), H, ptr + 4 * P, I, ptr + 3 * P, I, dtype_, 1, H,
                            I, P);
    } else if (map.mode == k::MoeRowMode::PADDED) {
      const int64_t C = map.capacity;
      blas_->linear_strided(ge, 2 * I, C * 2 * I, xe, H, C * H, L.experts_gate_up.p, H, gu_stride, dtype_, C, 2 * I,
                            H, E);
      silu_rows(ge, he_c, E * C, I);
      blas_->linear_strided(ye, H, C * H, he_c, I, C * I, L.experts_down.p, I, dn_stride, dtype_, C, H, I, E);
    } else {
      // Prefill: the per-expert row counts come back to the host once per layer; then one grouped GEMM per
      // projection over the experts that have rows (or, where cuBLAS lacks grouped GEMM for these types, one
      // GEMM per such expert, still without further synchronisation).
      MLABENCH_CUDA(cudaMemcpyAsync(host_offsets_.data(), offsets, static_cast<size_t>(E + 1) * 4,
                                    cudaMemcpyDeviceToHost, stream_));
      MLABENCH_CUDA(cudaStreamSynchronize(stream_));
      std::vector<int> rows;
      std::vector<const void*> p(6 * static_cast<size_t>(E));
      size_t g = 0;
      for (int64_t e = 0; e < E; ++e) {
        const int64_t r0 = host_offsets_[static_cast<size_t>(e)], n = host_offsets_[static_cast<size_t>(e) + 1] - r0;
        if (n == 0) continue;
        rows.push_back(static_cast<int>(n));
        p[g] = bytes(L.experts_gate_up, e * gu_stride);                                        // A, gate_up
        p[E + g] = static_cast<const char*>(xe) + static_cast<size_t>(r0 * H) * es;              // B
        p[2 * E + g] = ge + r0 * 2 * I;                                                        // C
        p[3 * E + g] = bytes(L.experts_down, e * dn_stride);                                   // A, down
        p[4 * E + g] = static_cast<const char*>(he_c) + static_cast<size_t>(r0 * I) * es;        // B
        p[5 * E + g] = ye + r0 * H;                                                            // C
        ++g;
      }
      auto** dp = buf<const void*>(off_.ptrs);
      void* const* yv = const_cast<void* const*>(reinterpret_cast<const void* const*>(dp));
      if (grouped_ok_)  // the pointer arrays go to the device only for the grouped call
        MLABENCH_CUDA(cudaMemcpyAsync(dp, p.data(), p.size() * sizeof(void*), cudaMemcpyHostToDevice, stream_));
      const bool grouped = grouped_ok_ &&
                           blas_->linear_grouped(yv + 2 * E, 2 * I, dp + E, H, dp, H, dtype_, rows, 2 * I, H);
      if (grouped_ok_ && !grouped)
        std::fprintf(stderr, "note: cuBLAS has no grouped GEMM for %s operands with float32 output; the prefill MoE "
                             "issues one GEMM per expert instead\n", std::string(dtype_name(dtype_)).c_str());
      grouped_ok_ = grouped;
      if (!grouped)
        for (size_t i = 0; i < g; ++i)
          blas_->linear(static_cast<float*>(const_cast<void*>(p[2 * E + i])), 2 * I, p[E + i], H, p[i], H, dtype_,
                        rows[i], 2 * I, H);
      silu_rows(ge, he_c, T * K, I);
      if (grouped) {
        blas_->linear_grouped(yv + 5 * E, H, dp + 4 * E, I, dp + 3 * E, I, dtype_, rows, H, I);
      } else {
        for (size_t i = 0; i < g; ++i)
          blas_->linear(static_cast<float*>(const_cast<void*>(p[5 * E + i])), H, p[4 * E + i], I, p[3 * E + i], I,
                        dtype_, rows[i], H, I);
      }
    }
    k::cuda::moe_combine({.out = out, .ld_out = H, .y = ye, .ld_y = H, .topk_weight = w, .hidden = H, .n_tokens = T,
                          .top_k = static_cast<int32_t>(K), .accumulate = L.has_shared, .map = map},
                         stream_);
  }

  void silu_rows(const float* gu, void* h, int64_t rows, int64_t I) {
    k::cuda::silu_mul({.out = h, .out_type = dtype_, .ld_out = I, .gate_up = gu, .ld_in = 2 * I, .inter = I,
                       .n_rows = rows},
                      stream_);
  }

  // Scratch for the decompressed keys of a prefill step: [K, cw] float32 + [K, kvl] dt + [K, nh (nope + v)].
  void ensure_keys(int64_t K) {
    const ModelConfig& c = config_;
    const int64_t cw = c.kv_lora_rank + c.qk_rope_head_dim;
    const size_t need = static_cast<size_t>(K) * (static_cast<size_t>(cw) * 4 +
                                                  static_cast<size_t>(c.kv_lora_rank) * dtype_size(dtype_) +
                                                  static_cast<size_t>(c.n_heads * (c.qk_nope_head_dim + c.v_head_dim)) * 4);
    if (keys_.bytes() >= need) return;
    MLABENCH_ICHECK(keys_.bytes() == 0, "prefill step with {} keys over the budget of {}", K, key_budget_);
    keys_ = DeviceBuffer(need, "MLA prefill keys");
  }

  struct Offsets {
    size_t x, delta, xn, xn_c, q, q_c, cq, cq_c, ckv, o, o_c, q_lat, o_lat, o_lat_c, gu, h_c;
    size_t router, topk_idx, topk_w, counts, offsets, rank, xe, ge, he_c, ye, ptrs;
  } off_{};
  Arena arena_;
  DeviceBuffer keys_;
  int64_t padded_max_ = 0;
  int64_t key_budget_ = 0;
  bool grouped_ok_ = true;  // cleared once if cuBLAS has no grouped GEMM for these operand types
  std::vector<int32_t> host_offsets_;
};

}  // namespace

std::unique_ptr<GpuModel> make_deepseek_v2_gpu(const ModelConfig& c, const ModelWeights* host, uint64_t seed,
                                               Precision precision, cudaStream_t stream) {
  return std::make_unique<DeepseekV2Gpu>(c, host, seed, precision, stream);
}

}  // namespace mlabench::gpu
