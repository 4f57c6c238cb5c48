// What both GPU forward passes share: weights on the device, RoPE tables, the output head, scratch arenas.
#include "engine/gpu/gpu_model.h"

#include <fmt/format.h>

#include <numeric>

#include "engine/kernels/cuda/kernels.h"

namespace mlabench::gpu {

namespace k = mlabench::kernels;

size_t Arena::reserve(size_t bytes) {
  const size_t at = size_;
  size_ += (bytes + 255) / 256 * 256;
  return at;
}

void Arena::allocate(const char* what) { buf_ = DeviceBuffer(size_, what); }

GpuModel::GpuModel(ModelConfig c, Precision precision, cudaStream_t stream)
    : config_(std::move(c)),
      precision_(precision),
      rope_(rope_tables(config_)),
      stream_(stream),
      blas_(std::make_unique<Blas>(stream)) {}

namespace {

std::string layer_name(int64_t l, const std::string& rest) { return fmt::format("model.layers.{}.{}", l, rest); }

}  // namespace

void GpuModel::upload_weights(const ModelWeights* host, uint64_t seed) {
  const ModelConfig& c = config_;
  const DType stored = host ? host->embed.dtype : c.dtype;
  MLABENCH_CHECK(stored == DType::BF16 || stored == DType::F16 || stored == DType::F32,
                 "the GPU engine runs BF16, F16 or F32 weights; {} has {}. HINT: convert the checkpoint to bfloat16",
                 c.source, dtype_name(stored));
  dtype_ = precision_ == Precision::FLOAT32 ? DType::F32 : stored;
  const size_t es = dtype_size(dtype_);
  DeviceBuffer staging;  // Precision::FLOAT32: one stored tensor on its way to F32

  auto alloc = [&](int64_t n_elems, size_t elem_size, const std::string& what) -> char* {
    weight_buffers_.emplace_back(static_cast<size_t>(n_elems) * elem_size, what.c_str());
    weight_bytes_ += weight_buffers_.back().bytes();
    return weight_buffers_.back().as<char>();
  };
  // One matrix (or a slice of a stacked one) from the checkpoint view, or generated from its hub name. Copies
  // are ordered on stream_ with the kernels that read them (the widening cast, the router conversion).
  auto put = [&](char* dst, const TensorView* v, const std::string& name, int64_t n_elems) {
    if (v)
      MLABENCH_CHECK(v->dtype == stored && v->numel() == n_elems,
                     "tensor {} is {} with {} elements; the GPU engine expects {} ({} elements) like the embedding. "
                     "HINT: checkpoints with mixed dtypes are not supported on the GPU; convert them to one dtype",
                     name, dtype_name(v->dtype), v->numel(), dtype_name(stored), n_elems);
    const size_t stored_bytes = static_cast<size_t>(n_elems) * dtype_size(stored);
    char* at = dst;
    if (stored != dtype_) {
      if (staging.bytes() < stored_bytes) {
        MLABENCH_CUDA(cudaStreamSynchronize(stream_));  // the old staging buffer may still be read
        staging = DeviceBuffer(stored_bytes, "weight staging (widening to float32)");
      }
      at = staging.as<char>();
    }
    if (v)
      MLABENCH_CUDA(cudaMemcpyAsync(at, v->data, stored_bytes, cudaMemcpyHostToDevice, stream_));
    else
      k::cuda::random_fill({.out = at, .out_type = stored, .n = n_elems, .key = random_weights_key(seed, name)},
                           stream_);
    if (at != dst)
      k::cuda::cast({.out = dst, .out_type = dtype_, .ld_out = n_elems, .in = at, .in_type = stored,
                     .ld_in = n_elems, .n_rows = 1, .n_cols = n_elems},
                    stream_);
  };
  auto mat = [&](const TensorView* v, const std::string& name, int64_t rows, int64_t cols) -> Mat {
    char* d = alloc(rows * cols, es, name);
    put(d, v, name, rows * cols);
    return {d, rows, cols};
  };
  auto norm = [&](const std::vector<float>* v, const std::string& name, int64_t n) -> const float* {
    auto* d = reinterpret_cast<float*>(alloc(n, 4, name));
    if (v) {
      MLABENCH_CHECK(static_cast<int64_t>(v->size()) == n, "norm {} has {} values, expected {}", name, v->size(), n);
      MLABENCH_CUDA(cudaMemcpyAsync(d, v->data(), static_cast<size_t>(n) * 4, cudaMemcpyHostToDevice, stream_));
    } else {
      k::cuda::random_fill({.out = d, .out_type = DType::F32, .n = n, .key = 0, .fill_ones = true}, stream_);
    }
    return d;
  };
  // gate and up stacked into one [2I, H] matrix so one GEMM computes both.
  auto mlp = [&](const MlpWeights* w, const std::string& prefix, int64_t H, int64_t I, char* gu, char* down) -> Mlp {
    if (!gu) gu = alloc(2 * I * H, es, prefix + "gate_up");
    if (!down) down = alloc(H * I, es, prefix + "down_proj");
    put(gu, w ? &w->gate : nullptr, prefix + "gate_proj.weight", I * H);
    put(gu + static_cast<size_t>(I * H) * es, w ? &w->up : nullptr, prefix + "up_proj.weight", I * H);
    put(down, w ? &w->down : nullptr, prefix + "down_proj.weight", H * I);
    return {{gu, 2 * I, H}, {down, H, I}};
  };

  const int64_t H = c.hidden_size, V = c.vocab_size;
  embed_ = mat(host ? &host->embed : nullptr, "model.embed_tokens.weight", V, H);
  lm_head_ = c.tie_word_embeddings ? embed_ : mat(host ? &host->lm_head : nullptr, "lm_head.weight", V, H);
  final_norm_ = norm(host ? &host->final_norm : nullptr, "model.norm.weight", H);
  std::vector<int32_t> iota(static_cast<size_t>(std::max<int64_t>(c.n_routed_experts, 1)));
  std::iota(iota.begin(), iota.end(), 0);
  DeviceBuffer iota_d(iota.size() * 4, "expert ids");
  MLABENCH_CUDA(cudaMemcpyAsync(iota_d.get(), iota.data(), iota.size() * 4, cudaMemcpyHostToDevice, stream_));
  DeviceBuffer router_tmp;

  layers_.resize(static_cast<size_t>(c.n_layers));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights* L = host ? &host->layers[static_cast<size_t>(l)] : nullptr;
    Layer& D = layers_[static_cast<size_t>(l)];
    D.input_norm = norm(L ? &L->input_norm : nullptr, layer_name(l, "input_layernorm.weight"), H);
    D.post_norm = norm(L ? &L->post_norm : nullptr, layer_name(l, "post_attention_layernorm.weight"), H);
    const std::string a = layer_name(l, "self_attn.");
    if (c.is_mla()) {
      const int64_t nh = c.n_heads, qk = c.qk_head_dim();
      if (c.q_lora_rank > 0) {
        D.q_a_proj = mat(L ? &L->q_a_proj : nullptr, a + "q_a_proj.weight", c.q_lora_rank, H);
        D.q_a_norm = norm(L ? &L->q_a_norm : nullptr, a + "q_a_layernorm.weight", c.q_lora_rank);
        D.q_b_proj = mat(L ? &L->q_b_proj : nullptr, a + "q_b_proj.weight", nh * qk, c.q_lora_rank);
      } else {
        D.q_proj = mat(L ? &L->q_proj : nullptr, a + "q_proj.weight", nh * qk, H);
      }
      D.kv_a_proj = mat(L ? &L->kv_a_proj : nullptr, a + "kv_a_proj_with_mqa.weight",
                        c.kv_lora_rank + c.qk_rope_head_dim, H);
      D.kv_a_norm = norm(L ? &L->kv_a_norm : nullptr, a + "kv_a_layernorm.weight", c.kv_lora_rank);
      D.kv_b_proj = mat(L ? &L->kv_b_proj : nullptr, a + "kv_b_proj.weight", nh * (c.qk_nope_head_dim + c.v_head_dim),
                        c.kv_lora_rank);
      D.o_proj = mat(L ? &L->o_proj : nullptr, a + "o_proj.weight", H, nh * c.v_head_dim);
    } else {
      const int64_t hd = c.head_dim, q_rows = c.n_heads * hd, kv_rows = c.n_kv_heads * hd;
      char* d = alloc((q_rows + 2 * kv_rows) * H, es, a + "qkv");
      put(d, L ? &L->q_proj : nullptr, a + "q_proj.weight", q_rows * H);
      put(d + static_cast<size_t>(q_rows * H) * es, L ? &L->k_proj : nullptr, a + "k_proj.weight", kv_rows * H);
      put(d + static_cast<size_t>((q_rows + kv_rows) * H) * es, L ? &L->v_proj : nullptr, a + "v_proj.weight",
          kv_rows * H);
      D.qkv = {d, q_rows + 2 * kv_rows, H};
      D.o_proj = mat(L ? &L->o_proj : nullptr, a + "o_proj.weight", H, q_rows);
    }
    const std::string m = layer_name(l, "mlp.");
    D.is_moe = c.is_moe_layer(l);
    if (!D.is_moe) {
      D.mlp = mlp(L ? &L->mlp : nullptr, m, H, c.intermediate_size, nullptr, nullptr);
      continue;
    }
    const int64_t E = c.n_routed_experts, I = c.moe_intermediate_size;
    // The router runs in float32 (the reference casts the gate weight up): convert once here.
    router_tmp = DeviceBuffer(static_cast<size_t>(E * H) * es, "router weight");
    put(router_tmp.as<char>(), L ? &L->router : nullptr, m + "gate.weight", E * H);
    auto* router = reinterpret_cast<float*>(alloc(E * H, 4, m + "gate.weight (float32)"));
    k::cuda::embedding({.out = router, .table = router_tmp.get(), .table_type = dtype_, .hidden = H,
                        .ids = iota_d.as<int32_t>(), .n_rows = E},
                       stream_);
    MLABENCH_CUDA(cudaStreamSynchronize(stream_));
    D.router = router;
    char* gu = alloc(E * 2 * I * H, es, m + "experts gate_up");
    char* dn = alloc(E * H * I, es, m + "experts down");
    for (int64_t e = 0; e < E; ++e)
      mlp(L ? &L->experts[static_cast<size_t>(e)] : nullptr, fmt::format("{}experts.{}.", m, e), H, I,
          gu + static_cast<size_t>(e * 2 * I * H) * es, dn + static_cast<size_t>(e * H * I) * es);
    D.experts_gate_up = {gu, E * 2 * I, H};
    D.experts_down = {dn, E * H, I};
    D.has_shared = c.n_shared_experts > 0;
    if (D.has_shared)
      D.shared = mlp(L ? &L->shared : nullptr, m + "shared_experts.", H, I * c.n_shared_experts, nullptr, nullptr);
  }
  MLABENCH_CUDA(cudaStreamSynchronize(stream_));
}

void GpuModel::upload_rope(int64_t max_context) {
  const int64_t half = rope_.dim / 2;
  std::vector<float> cs(static_cast<size_t>(max_context * half)), sn(cs.size());
  for (int64_t p = 0; p < max_context; ++p)
    rope_cos_sin(rope_, p, cs.data() + p * half, sn.data() + p * half);
  rope_cos_ = DeviceBuffer(cs.size() * 4, "RoPE cos table");
  rope_sin_ = DeviceBuffer(sn.size() * 4, "RoPE sin table");
  MLABENCH_CUDA(cudaMemcpyAsync(rope_cos_.get(), cs.data(), cs.size() * 4, cudaMemcpyHostToDevice, stream_));
  MLABENCH_CUDA(cudaMemcpyAsync(rope_sin_.get(), sn.data(), sn.size() * 4, cudaMemcpyHostToDevice, stream_));
  MLABENCH_CUDA(cudaStreamSynchronize(stream_));  // cs and sn go out of scope
  rope_positions_ = max_context;
}

void GpuModel::allocate_common(const StepLimits& limits) {
  limits_ = limits;
  const int64_t H = config_.hidden_size, R = limits.max_logit_rows;
  off_head_x_ = head_arena_.reserve(static_cast<size_t>(R * H) * 4);
  off_head_c_ = head_arena_.reserve(static_cast<size_t>(R * H) * dtype_size(dtype_));
  const size_t off_logits = head_arena_.reserve(static_cast<size_t>(R * config_.vocab_size) * 4);
  head_arena_.allocate("output head buffers");
  logits_ = head_arena_.at<float>(off_logits);
  upload_rope(limits.max_context);
  // The split-KV plans (kernel_params.h) keep splits x CTAs under 2 x kAttnTargetCtas, which bounds the scratch.
  const int64_t bound = config_.is_mla()
                            ? 2 * k::kAttnTargetCtas * k::kMlaDecodeHeads * (config_.kv_lora_rank + 2)
                            : 2 * k::kAttnTargetCtas * k::kGqaRowsPerCta * (config_.head_dim + 2);
  attn_scratch_ = DeviceBuffer(static_cast<size_t>(bound) * 4, "attention split-KV scratch");
}

float* GpuModel::attention_scratch(int64_t floats) {
  // Allocated once at its bound: captured decode graphs keep the pointer, so it must never move.
  MLABENCH_ICHECK(static_cast<size_t>(floats) * 4 <= attn_scratch_.bytes(),
                  "split-KV plan needs {} floats, above the bound of {}", floats, attn_scratch_.bytes() / 4);
  return attn_scratch_.as<float>();
}

void GpuModel::output_head(const DeviceStep& step, float* x, float* delta) {
  const int64_t H = config_.hidden_size, T = step.n_rows, R = step.n_logit_rows;
  if (R == 0) return;
  const auto eps = static_cast<float>(config_.rms_norm_eps);
  // Final residual add and norm, in place (float32), then only the wanted rows go through lm_head.
  k::cuda::rms_norm({.residual = x, .ld_residual = H, .delta = delta, .ld_delta = H, .out = x,
                     .out_type = DType::F32, .ld_out = H, .weight = final_norm_, .n_rows = T, .dim = H, .eps = eps},
                    stream_);
  auto* hx = head_arena_.at<float>(off_head_x_);  // [R, H]
  k::cuda::embedding({.out = hx, .table = x, .table_type = DType::F32, .hidden = H, .ids = step.logit_rows,
                      .n_rows = R},
                     stream_);  // a row gather: the "table" is the normed hidden state
  void* hc = head_arena_.at<void>(off_head_c_);
  k::cuda::cast({.out = hc, .out_type = dtype_, .ld_out = H, .in = hx, .ld_in = H, .n_rows = R, .n_cols = H},
                stream_);
  blas_->linear(logits_, config_.vocab_size, hc, H, lm_head_.p, H, dtype_, R, config_.vocab_size, H);  // [R, V]
}

std::unique_ptr<GpuModel> make_deepseek_v2_gpu(const ModelConfig& c, const ModelWeights* host, uint64_t seed,
                                               Precision precision, cudaStream_t stream);
std::unique_ptr<GpuModel> make_llama_gpu(const ModelConfig& c, const ModelWeights* host, uint64_t seed,
                                         Precision precision, cudaStream_t stream);

std::unique_ptr<GpuModel> make_gpu_model(const ModelConfig& c, const ModelWeights* host, uint64_t seed,
                                         Precision precision, cudaStream_t stream) {
  if (c.is_mla()) return make_deepseek_v2_gpu(c, host, seed, precision, stream);
  return make_llama_gpu(c, host, seed, precision, stream);
}

}  // namespace mlabench::gpu
