// The GPU forward pass, top to bottom: embedding; per layer input RMSNorm, the attention kind (MLA or GQA, which
// appends the step's K/V to the paged cache and applies o_proj), residual + post-attention RMSNorm, the layer's
// FFN kind (dense SwiGLU, or the MoE layer on a float32 copy of the normed input for the router); final norm and
// lm_head on the logit rows only. Same semantics as the CPU twin engine/model/cpu_model.cpp.
// Shapes: T new rows in the step, H hidden, V vocab, R logit rows, I the dense FFN width, dt the weights' dtype.
#include "engine/gpu/gpu_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <numeric>
#include <optional>
#include <tuple>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/core/fp8.h"
#include "engine/gpu/fp8_linear.h"
#include "engine/gpu/moe_layer.h"
#include "engine/gpu/phase_timer.h"
#include "engine/kernels/cuda/kernels.h"

namespace mlabench::gpu {

namespace k = mlabench::kernels;

size_t Arena::reserve(size_t bytes) {
  const size_t at = size_;
  size_ += (bytes + 255) / 256 * 256;
  return at;
}

void Arena::allocate(const char* what) { buf_ = DeviceBuffer(size_, what); }

// ---- weights ---------------------------------------------------------------------------------------------------

WeightUploader::WeightUploader(DType stored, DType dtype, uint64_t seed, cudaStream_t stream, bool fp8)
    : stored_(stored), dtype_(dtype), seed_(seed), stream_(stream), fp8_(fp8) {
  MLABENCH_CHECK(!fp8 || dtype == DType::BF16 || dtype == DType::F32,
                 "--weights-dtype fp8 from {} weights: the GPU quantiser reads BF16 or F32. HINT: convert the "
                 "checkpoint to bfloat16", dtype_name(dtype));
}

DeviceMat DeviceMat::rows_from(int64_t r0, int64_t n, size_t elem_size) const {
  DeviceMat m{static_cast<const char*>(p) + static_cast<size_t>(r0 * cols) * (fp8() ? 1 : elem_size), n, cols};
  if (fp8()) {
    MLABENCH_ICHECK(r0 % kFp8Block == 0 && split_rows == 0, "rows {} of an FP8 matrix: not on its 128-row grid", r0);
    m.scale = scale + (r0 / kFp8Block) * fp8_weight_scale_ld(cols);
  }
  return m;
}

int64_t WeightUploader::scale_grid_rows(const std::vector<int64_t>& part_rows) {
  int64_t g = 0;
  for (int64_t r : part_rows) g += (r + kFp8Block - 1) / kFp8Block;
  return g;
}

// Each part into its rows of codes: in the model dtype (put), or through the staging buffer and fp8_quantize_blocks
// into e4m3 codes and the part's own rows of the scale grid. Stream-ordered: the next part's put waits for the
// quantiser's read of the staging buffer.
void WeightUploader::projection_into(char* codes, float* scale,
                                     const std::vector<std::pair<const TensorView*, std::string>>& parts,
                                     const std::vector<int64_t>& part_rows, int64_t cols) {
  const int64_t ld = fp8_weight_scale_ld(cols);
  int64_t row = 0, grid = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const int64_t n = part_rows[i] * cols;
    const TensorView* v = parts[i].first;
    if (v && v->dtype == DType::F8_E4M3) {  // an FP8 checkpoint's matrix: codes and grid as stored
      MLABENCH_CHECK(fp8_, "{}: an FP8 (F8_E4M3) matrix for a model uploaded unquantised. HINT: this is a bug; report "
                     "the command", parts[i].second);
      put_fp8(reinterpret_cast<uint8_t*>(codes) + row * cols, scale + grid * ld, ld, *v, parts[i].second,
              part_rows[i], cols);
      grid += (part_rows[i] + kFp8Block - 1) / kFp8Block;
    } else if (!fp8_) {
      put(codes + static_cast<size_t>(row * cols) * elem_size(), parts[i].first, parts[i].second, n);
    } else {
      const size_t need = static_cast<size_t>(n) * elem_size();
      if (fp8_staging_.bytes() < need) {
        MLABENCH_CUDA(cudaStreamSynchronize(stream_));  // the old staging buffer may still be read
        fp8_staging_ = DeviceBuffer(need, "weight staging (FP8 quantisation)");
      }
      put(fp8_staging_.as<char>(), parts[i].first, parts[i].second, n);
      k::cuda::fp8_quantize_blocks({.w = fp8_staging_.get(), .w_type = dtype_, .ld_w = cols,
                                    .q = reinterpret_cast<uint8_t*>(codes) + row * cols, .ld_q = cols,
                                    .scale_inv = scale + grid * ld, .scale_ld = ld, .n = part_rows[i], .k = cols},
                                   stream_);
      grid += (part_rows[i] + kFp8Block - 1) / kFp8Block;
    }
    row += part_rows[i];
  }
}

DeviceMat WeightUploader::projection(const std::vector<std::pair<const TensorView*, std::string>>& parts,
                                     const std::vector<int64_t>& part_rows, int64_t cols, const std::string& what) {
  int64_t rows = 0;
  for (int64_t r : part_rows) rows += r;
  if (!fp8_) {
    char* d = alloc(rows * cols, elem_size(), what);
    projection_into(d, nullptr, parts, part_rows, cols);
    return {d, rows, cols};
  }
  char* codes = alloc(rows * cols, 1, what + " (e4m3)");
  const int64_t grid = scale_grid_rows(part_rows) * fp8_weight_scale_ld(cols);
  auto* scale = reinterpret_cast<float*>(alloc(grid, 4, what + " (128 x 128 block scales)"));
  MLABENCH_CUDA(cudaMemsetAsync(scale, 0, static_cast<size_t>(grid) * 4, stream_));  // the rows' padding
  projection_into(codes, scale, parts, part_rows, cols);
  DeviceMat m{codes, rows, cols, scale};
  // A boundary off the 128-row grid: the parts' grids are not the stack's. Two parts run as two GEMMs (split_rows,
  // Fp8Linear); more are refused.
  int64_t boundary = 0;
  for (size_t i = 0; i + 1 < part_rows.size(); ++i) {
    boundary += part_rows[i];
    if (boundary % kFp8Block == 0) continue;
    MLABENCH_CHECK(part_rows.size() == 2, "{}: {} stacked FP8 parts with a boundary at row {}, off the 128-row grid. "
                   "HINT: FP8 stacks of more than two parts need every boundary on the grid", what, part_rows.size(),
                   boundary);
    m.split_rows = boundary;
  }
  return m;
}

char* WeightUploader::alloc(int64_t n_elems, size_t elem_size, const std::string& what) {
  buffers_.emplace_back(static_cast<size_t>(n_elems) * elem_size, what.c_str());
  bytes_ += buffers_.back().bytes();
  return buffers_.back().as<char>();
}

// Copies are ordered on the stream with the kernels that read them (the widening cast, the router conversion).
void WeightUploader::put(char* dst, const TensorView* v, const std::string& name, int64_t n_elems) {
  if (v)
    MLABENCH_CHECK(v->dtype == stored_ && v->numel() == n_elems,
                   "tensor {} is {} with {} elements; the GPU engine expects {} ({} elements) like the embedding. "
                   "HINT: checkpoints with mixed dtypes are not supported on the GPU; convert them to one dtype",
                   name, dtype_name(v->dtype), v->numel(), dtype_name(stored_), n_elems);
  const size_t stored_bytes = static_cast<size_t>(n_elems) * dtype_size(stored_);
  char* at = dst;
  if (stored_ != dtype_) {
    if (staging_.bytes() < stored_bytes) {
      MLABENCH_CUDA(cudaStreamSynchronize(stream_));  // the old staging buffer may still be read
      staging_ = DeviceBuffer(stored_bytes, "weight staging (widening to float32)");
    }
    at = staging_.as<char>();
  }
  if (v && v->random)  // a rank's slice of a random tensor: its elements of the whole tensor, generated here
    k::cuda::random_fill({.out = at,
                          .out_type = stored_,
                          .n = n_elems,
                          .key = v->random->key,
                          .first = v->random->first,
                          .cols = v->random->cols,
                          .ld = v->random->ld},
                         stream_);
  else if (v)
    MLABENCH_CUDA(cudaMemcpyAsync(at, v->data, stored_bytes, cudaMemcpyHostToDevice, stream_));
  else
    k::cuda::random_fill({.out = at, .out_type = stored_, .n = n_elems, .key = random_weights_key(seed_, name)},
                         stream_);
  if (at != dst)
    k::cuda::cast({.out = dst, .out_type = dtype_, .ld_out = n_elems, .in = at, .in_type = stored_,
                   .ld_in = n_elems, .n_rows = 1, .n_cols = n_elems},
                  stream_);
}

DeviceMat WeightUploader::mat(const TensorView* v, const std::string& name, int64_t rows, int64_t cols) {
  char* d = alloc(rows * cols, elem_size(), name);
  if (v && v->dtype == DType::F8_E4M3)
    put_dequantised(d, *v, name, rows, cols);
  else
    put(d, v, name, rows * cols);
  return {d, rows, cols};
}

// An FP8 checkpoint's matrix [rows, cols] (DeepSeek-V3's layout: e4m3 codes, a scale_inv grid of ceil(rows / 128)
// x ceil(cols / 128)): the codes copied as stored, the grid into rows of ld floats (the engine's padded layout). A
// rank's slice (shard_model's views: rows from scale_row0 of the whole matrix, columns from a column offset of its
// grid) keeps the whole matrix's blocks where it starts on the 128 grid.
void WeightUploader::put_fp8(uint8_t* codes, float* scale, int64_t ld, const TensorView& v, const std::string& name,
                             int64_t rows, int64_t cols) {
  const int64_t groups = (cols + kFp8Block - 1) / kFp8Block, blocks = (rows + kFp8Block - 1) / kFp8Block;
  MLABENCH_CHECK(v.numel() == rows * cols && v.row_size() == cols && v.scale_inv != nullptr &&
                     v.scale_row0 % kFp8Block == 0 && v.scale_ld >= groups && v.data != nullptr,
                 "{}: an FP8 matrix of {} elements ({} a row, scale grid from row {} at {} a row) where the GPU engine "
                 "uploads [{}, {}] with its own 128 x 128 grid. HINT: a rank's slice that starts inside a scale "
                 "block cannot keep its grid: choose --tp so that every rank's rows start on the 128 grid",
                 name, v.numel(), v.row_size(), v.scale_row0, v.scale_ld, rows, cols);
  const float* grid = v.scale_inv + (v.scale_row0 / kFp8Block) * v.scale_ld;
  MLABENCH_CUDA(cudaMemcpyAsync(codes, v.data, static_cast<size_t>(rows * cols), cudaMemcpyHostToDevice, stream_));
  MLABENCH_CUDA(cudaMemcpy2DAsync(scale, static_cast<size_t>(ld) * 4, grid, static_cast<size_t>(v.scale_ld) * 4,
                                  static_cast<size_t>(groups) * 4, static_cast<size_t>(blocks), cudaMemcpyHostToDevice,
                                  stream_));
}

// An FP8 checkpoint's matrix held unquantised (kv_b_proj, which the absorbed MLA decode reads in both orientations):
// each value e4m3 x its block's scale_inv, as the CPU engine reads it, rounded once to the model dtype on the host.
void WeightUploader::put_dequantised(char* dst, const TensorView& v, const std::string& name, int64_t rows,
                                     int64_t cols) {
  MLABENCH_CHECK(v.numel() == rows * cols && v.row_size() == cols && v.scale_inv != nullptr && v.data != nullptr,
                 "{}: an FP8 matrix of {} elements where the GPU engine expects [{}, {}] with its scales. HINT: the "
                 "checkpoint does not match config.json", name, v.numel(), rows, cols);
  const auto* q = static_cast<const uint8_t*>(v.data);
  std::vector<float> f(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    const float* srow = v.scale_inv + ((v.scale_row0 + r) / kFp8Block) * v.scale_ld;  // scale_row0 counts rows
    for (int64_t c = 0; c < cols; ++c)
      f[static_cast<size_t>(r * cols + c)] = e4m3_to_f32(q[r * cols + c]) * srow[c / kFp8Block];
  }
  const size_t es = elem_size();
  std::vector<uint8_t> host(f.size() * es);
  if (dtype_ == DType::F32) {
    std::memcpy(host.data(), f.data(), host.size());
  } else {
    MLABENCH_CHECK(dtype_ == DType::BF16, "{}: an FP8 matrix for a {} model. HINT: FP8 checkpoints run in BF16 or "
                   "float32 precision", name, dtype_name(dtype_));
    for (size_t i = 0; i < f.size(); ++i) {
      const uint16_t h = f32_to_bf16(f[i]);
      std::memcpy(host.data() + 2 * i, &h, 2);
    }
  }
  // A synchronous copy: the host buffer goes out of scope here.
  MLABENCH_CUDA(cudaMemcpyAsync(dst, host.data(), host.size(), cudaMemcpyHostToDevice, stream_));
  MLABENCH_CUDA(cudaStreamSynchronize(stream_));
}

const float* WeightUploader::norm(const std::vector<float>* v, const std::string& name, int64_t n) {
  auto* d = reinterpret_cast<float*>(alloc(n, 4, name));
  if (v) {
    MLABENCH_CHECK(static_cast<int64_t>(v->size()) == n, "norm {} has {} values, expected {}", name, v->size(), n);
    MLABENCH_CUDA(cudaMemcpyAsync(d, v->data(), static_cast<size_t>(n) * 4, cudaMemcpyHostToDevice, stream_));
  } else {
    k::cuda::random_fill({.out = d, .out_type = DType::F32, .n = n, .key = 0, .fill_ones = true}, stream_);
  }
  return d;
}

// The router runs in float32 (the reference casts the gate weight up): converted once here, through the model
// dtype as the stored weight is (a row gather of every row).
const float* WeightUploader::f32_mat(const TensorView* v, const std::string& name, int64_t rows, int64_t cols) {
  DeviceBuffer tmp(static_cast<size_t>(rows * cols) * elem_size(), "router weight");
  put(tmp.as<char>(), v, name, rows * cols);
  std::vector<int32_t> iota(static_cast<size_t>(rows));
  std::iota(iota.begin(), iota.end(), 0);
  DeviceBuffer ids(iota.size() * 4, "row ids");
  MLABENCH_CUDA(cudaMemcpyAsync(ids.get(), iota.data(), iota.size() * 4, cudaMemcpyHostToDevice, stream_));
  auto* out = reinterpret_cast<float*>(alloc(rows * cols, 4, name + " (float32)"));
  k::cuda::embedding({.out = out, .table = tmp.get(), .table_type = dtype_, .hidden = cols, .ids = ids.as<int32_t>(),
                      .n_rows = rows},
                     stream_);
  MLABENCH_CUDA(cudaStreamSynchronize(stream_));  // tmp, ids and iota go out of scope
  return out;
}

namespace {

std::string layer_name(int64_t l, const std::string& rest) { return fmt::format("model.layers.{}.{}", l, rest); }

using Parts = std::vector<std::pair<const TensorView*, std::string>>;

Parts gate_up_parts(const MlpWeights* w, const std::string& prefix) {
  return {{w ? &w->gate : nullptr, prefix + "gate_proj.weight"}, {w ? &w->up : nullptr, prefix + "up_proj.weight"}};
}
Parts down_part(const MlpWeights* w, const std::string& prefix) {
  return {{w ? &w->down : nullptr, prefix + "down_proj.weight"}};
}

// gate and up stacked into one [2I, H] matrix, down [H, I].
DeviceMlp upload_mlp(WeightUploader& up, const MlpWeights* w, const std::string& prefix, int64_t H, int64_t I) {
  return {up.projection(gate_up_parts(w, prefix), {I, I}, H, prefix + "gate_up"),
          up.projection(down_part(w, prefix), {H}, I, prefix + "down_proj")};
}

// Every held expert's gate_up [2I, H] and down [H, I] in one allocation each (held expert e at e x its size; all E
// of them, or under expert parallelism the block [e0, e0 + E) this rank holds); FP8: each expert's scale grids in
// one allocation too (the grouped GEMM's w_scale_expert_stride). The router's weights cover every expert.
void upload_moe(WeightUploader& up, const ModelConfig& c, const LayerWeights* L, int64_t l, int64_t e0, int64_t E,
                GpuLayer& D) {
  const std::string m = layer_name(l, "mlp.");
  const int64_t H = c.hidden_size, I = c.moe_intermediate_size;
  const bool f8 = up.fp8();
  MLABENCH_CHECK(!f8 || I % kFp8Block == 0,
                 "--weights-dtype fp8: moe_intermediate_size {} is not a multiple of 128, so an expert's up rows would "
                 "start inside a 128 x 128 scale block of its stacked gate/up. HINT: run this model in BF16 on the GPU "
                 "(--device cpu runs its FP8 numerics)", I);
  const size_t es = f8 ? 1 : up.elem_size();
  const int64_t g_gu = f8 ? WeightUploader::scale_grid_rows({I, I}) * fp8_weight_scale_ld(H) : 0;  // floats an expert
  const int64_t g_dn = f8 ? WeightUploader::scale_grid_rows({H}) * fp8_weight_scale_ld(I) : 0;
  D.router = up.f32_mat(L ? &L->router : nullptr, m + "gate.weight", c.n_routed_experts, H);
  char* gu = up.alloc(E * 2 * I * H, es, m + "experts gate_up");
  char* dn = up.alloc(E * H * I, es, m + "experts down");
  float* gus = f8 ? reinterpret_cast<float*>(up.alloc(E * g_gu, 4, m + "experts gate_up scales")) : nullptr;
  float* dns = f8 ? reinterpret_cast<float*>(up.alloc(E * g_dn, 4, m + "experts down scales")) : nullptr;
  for (int64_t e = 0; e < E; ++e) {
    const MlpWeights* w = L ? &L->experts[static_cast<size_t>(e0 + e)] : nullptr;
    const std::string prefix = fmt::format("{}experts.{}.", m, e0 + e);
    up.projection_into(gu + static_cast<size_t>(e * 2 * I * H) * es, f8 ? gus + e * g_gu : nullptr,
                       gate_up_parts(w, prefix), {I, I}, H);
    up.projection_into(dn + static_cast<size_t>(e * H * I) * es, f8 ? dns + e * g_dn : nullptr, down_part(w, prefix),
                       {H}, I);
  }
  D.experts_gate_up = {gu, E * 2 * I, H, gus};
  D.experts_down = {dn, E * H, I, dns};
  if (c.n_shared_experts > 0)
    D.shared = upload_mlp(up, L ? &L->shared : nullptr, m + "shared_experts.", H, I * c.n_shared_experts);
}

// The routed experts host's MoE layers hold, {begin, count}: {0, 0} for all of them, else an expert-parallel rank's
// block (engine/parallel/sharded_cpu.cpp's shard_model), the same in every MoE layer.
std::pair<int32_t, int32_t> held_experts_of(const ModelConfig& c, const ModelWeights* host) {
  if (host == nullptr) return {0, 0};
  std::optional<std::pair<int64_t, int64_t>> held;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    if (c.ffn_kind(l) != FfnKind::MOE) continue;
    const LayerWeights& L = host->layers[static_cast<size_t>(l)];
    const std::pair<int64_t, int64_t> r{L.held_experts_begin,
                                        L.held_experts_end < 0 ? c.n_routed_experts : L.held_experts_end};
    MLABENCH_CHECK(!held || *held == r, "{}: layer {} holds routed experts [{}, {}), an earlier MoE layer [{}, {}). "
                   "HINT: an expert-parallel rank holds the same block in every layer", c.source, l, r.first,
                   r.second, held->first, held->second);
    MLABENCH_CHECK(r.first >= 0 && r.first < r.second && r.second <= c.n_routed_experts,
                   "{}: layer {} holds routed experts [{}, {}) of {}. HINT: a non-empty block of the model's experts",
                   c.source, l, r.first, r.second, c.n_routed_experts);
    held = r;
  }
  if (!held || held->second - held->first == c.n_routed_experts) return {0, 0};
  return {static_cast<int32_t>(held->first), static_cast<int32_t>(held->second - held->first)};
}

}  // namespace

GpuModel::GpuModel(const ModelConfig& c, const ModelWeights* host, uint64_t seed, Precision precision,
                   cudaStream_t stream, bool fixed_splits, bool fp8_weights)
    : config_(c), precision_(precision), fixed_splits_(fixed_splits), fp8_weights_(fp8_weights),
      rope_(rope_tables(config_)), stream_(stream),
      blas_(std::make_unique<Blas>(stream)) {
  timing_skip("input_norm");  // MLABENCH_TIMING_SKIP read now: a bad stage list is refused at load, not mid-step
  Blas::norm_fusion_rows();  // MLABENCH_FUSE_NORM likewise
  switch (config_.attention) {  // the config's attention kind (engine/model/config.h registers them by name)
    case AttentionKind::MLA:
      attention_ = make_mla_attention(*this);
      break;
    case AttentionKind::GQA:
      attention_ = make_gqa_attention(*this);
      break;
  }
  upload_weights(host, seed);
}

GpuModel::~GpuModel() = default;

std::pair<uint64_t, uint64_t> GpuModel::kv_slot_bytes() const {
  const auto [kw, vw] = kv_widths();
  if (cache_dtype() != DType::F8_E4M3) {
    const uint64_t es = dtype_size(cache_dtype());
    return {static_cast<uint64_t>(kw) * es, static_cast<uint64_t>(vw) * es};
  }
  if (config_.attention == AttentionKind::MLA)
    return {static_cast<uint64_t>(kernels::Fp8SlotLayout::mla(config_.kv_lora_rank, config_.qk_rope_head_dim).bytes()),
            0};
  const auto bytes =
      static_cast<uint64_t>(kernels::Fp8SlotLayout::heads(config_.n_kv_heads, config_.head_dim).bytes());
  return {bytes, vw > 0 ? bytes : 0};
}

void GpuModel::upload_weights(const ModelWeights* host, uint64_t seed) {
  const ModelConfig& c = config_;
  const DType stored = host ? host->embed.dtype : c.dtype;
  MLABENCH_CHECK(stored == DType::BF16 || stored == DType::F16 || stored == DType::F32,
                 "the GPU engine runs BF16, F16 or F32 weights; {} has {}. HINT: convert the checkpoint to bfloat16",
                 c.source, dtype_name(stored));
  dtype_ = precision_ == Precision::FLOAT32 ? DType::F32 : stored;
  WeightUploader up(stored, dtype_, seed, stream_, fp8_weights_);
  const int64_t H = c.hidden_size, V = c.vocab_size;
  embed_ = up.mat(host ? &host->embed : nullptr, "model.embed_tokens.weight", V, H);
  // A rank of a sharded model holds its vocabulary rows of the head only (tied or not).
  const int64_t head_rows = host && !host->lm_head.shape.empty() ? host->lm_head.shape[0] : V;
  lm_head_ = c.tie_word_embeddings && head_rows == V ? embed_
                                                     : up.mat(host ? &host->lm_head : nullptr, "lm_head.weight", head_rows, H);
  final_norm_ = up.norm(host ? &host->final_norm : nullptr, "model.norm.weight", H);
  layers_.resize(static_cast<size_t>(c.n_layers));
  std::tie(held_begin_, held_experts_) = held_experts_of(c, host);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights* L = host ? &host->layers[static_cast<size_t>(l)] : nullptr;
    GpuLayer& D = layers_[static_cast<size_t>(l)];
    D.input_norm = up.norm(L ? &L->input_norm : nullptr, layer_name(l, "input_layernorm.weight"), H);
    D.post_norm = up.norm(L ? &L->post_norm : nullptr, layer_name(l, "post_attention_layernorm.weight"), H);
    attention_->upload(up, L, l, D);
    D.ffn = c.ffn_kind(l);
    if (D.ffn == FfnKind::MOE)
      upload_moe(up, c, L, l, held_begin_, held_experts_ > 0 ? held_experts_ : c.n_routed_experts, D);
    else
      D.mlp = upload_mlp(up, L ? &L->mlp : nullptr, layer_name(l, "mlp."), H, c.intermediate_size);
  }
  MLABENCH_CUDA(cudaStreamSynchronize(stream_));
  weight_bytes_ = up.bytes();
  weight_buffers_ = up.take_buffers();
}

void GpuModel::upload_rope(int64_t max_context) {
  const int64_t half = rope_.dim / 2;
  std::vector<float> cs(static_cast<size_t>(max_context * half)), sn(cs.size());
  for (int64_t p = 0; p < max_context; ++p) rope_cos_sin(rope_, p, cs.data() + p * half, sn.data() + p * half);
  rope_cos_ = DeviceBuffer(cs.size() * 4, "RoPE cos table");
  rope_sin_ = DeviceBuffer(sn.size() * 4, "RoPE sin table");
  MLABENCH_CUDA(cudaMemcpyAsync(rope_cos_.get(), cs.data(), cs.size() * 4, cudaMemcpyHostToDevice, stream_));
  MLABENCH_CUDA(cudaMemcpyAsync(rope_sin_.get(), sn.data(), sn.size() * 4, cudaMemcpyHostToDevice, stream_));
  MLABENCH_CUDA(cudaStreamSynchronize(stream_));  // cs and sn go out of scope
}

// ---- step buffers -----------------------------------------------------------------------------------------------

void GpuModel::allocate_buffers(const serving::ServingLimits& lim) {
  limits_ = lim;
  const ModelConfig& c = config_;
  const int64_t T = lim.max_step_tokens, R = lim.max_logit_rows, H = c.hidden_size, I = c.intermediate_size;
  const size_t es = dtype_size(dtype_);
  const bool any_moe = c.n_moe_layers() > 0, any_dense = c.n_moe_layers() < c.n_layers;
  off_x_ = arena_.reserve(static_cast<size_t>(T * H) * 4);       // residual stream
  off_x_next_ = arena_.reserve(static_cast<size_t>(T * H) * 4);  // and its second buffer (Residual)
  off_delta_ = arena_.reserve(static_cast<size_t>(T * H) * 4);   // the last block's output
  off_xn_c_ = arena_.reserve(static_cast<size_t>(T * H) * es);   // normed input, a GEMM operand
  if (any_moe) off_xn_ = arena_.reserve(static_cast<size_t>(T * H) * 4);  // the router's float32 input
  if (any_dense) {
    off_gu_ = arena_.reserve(static_cast<size_t>(T * 2 * I) * 4);
    off_h_c_ = arena_.reserve(static_cast<size_t>(T * I) * es);
  }
  off_head_x_ = arena_.reserve(static_cast<size_t>(R * H) * 4);
  off_head_c_ = arena_.reserve(static_cast<size_t>(R * H) * es);
  const size_t off_logits = arena_.reserve(static_cast<size_t>(R * c.vocab_size) * 4);
  if (lm_head_.rows < c.vocab_size) off_local_logits_ = arena_.reserve(static_cast<size_t>(R * lm_head_.rows) * 4);
  if (hooks_.dp_attention()) {  // DP attention: every rank's rows of a step (within T tokens and R logit rows)
    off_dp_mine_ = arena_.reserve(static_cast<size_t>(T * H) * 4);
    off_dp_all_ = arena_.reserve(static_cast<size_t>(T * H) * 4);
    off_dp_all_c_ = arena_.reserve(static_cast<size_t>(T * H) * es);
    off_dp_out_ = arena_.reserve(static_cast<size_t>(T * H) * 4);
    off_dp_head_ = arena_.reserve(static_cast<size_t>(R * H) * 4);
  }
  attention_->reserve(arena_, lim);
  arena_.allocate("step buffers");
  if (fp8_weights_) {  // the widest input of an FP8 projection (the dense FFN's down, o_proj, ...)
    const int64_t max_k = std::max({H, c.q_lora_rank, c.n_heads * c.v_head_dim, c.n_heads * c.head_dim, I,
                                    c.moe_intermediate_size * c.n_shared_experts});
    fp8_linear_ = std::make_unique<Fp8Linear>(T, max_k);
  }
  logits_ = arena_.at<float>(off_logits);
  attention_->allocate(lim);
  upload_rope(lim.max_context);
  // Graph-captured decode steps run a bucket of up to bit_ceil(max_seqs) sequences.
  const int64_t bound = fixed_splits_ ? attention_->fixed_split_scratch_bound(static_cast<int64_t>(
                                            std::bit_ceil(static_cast<uint64_t>(lim.max_seqs))))
                                      : attention_->split_scratch_bound();
  attn_scratch_ = DeviceBuffer(static_cast<size_t>(bound) * 4, "attention split-KV scratch");
  if (any_moe)
    moe_ = std::make_unique<MoeLayer>(*blas_, stream_, dtype_, H, c.moe_intermediate_size,
                                      c.moe_intermediate_size * c.n_shared_experts,
                                      static_cast<int32_t>(c.n_routed_experts),
                                      static_cast<int32_t>(c.experts_per_token), T, fp8_weights_, held_experts_);
}

float* GpuModel::attention_scratch(int64_t floats) {
  // Allocated once at its bound: captured decode graphs keep the pointer, so it must never move.
  MLABENCH_ICHECK(static_cast<size_t>(floats) * 4 <= attn_scratch_.bytes(),
                  "split-KV plan needs {} floats, above the bound of {}", floats, attn_scratch_.bytes() / 4);
  return attn_scratch_.as<float>();
}

const void* GpuModel::normed_input() {
  if (pending_norm_) {
    k::cuda::rms_norm(*pending_norm_, stream_);
    pending_norm_.reset();
  }
  return arena_.at<void>(off_xn_c_);
}

bool GpuModel::project_input(float* y, int64_t ldy, float* y2, int64_t ldy2, int64_t n_y, const DeviceMat& w,
                             int64_t m) {
  const int64_t H = config_.hidden_size;
  const bool fuse = pending_norm_ && m <= Blas::norm_fusion_rows();
  if (w.fp8()) {
    if (fuse && fp8_linear_->run_normed(*blas_, y, ldy, y2, ldy2, n_y, *pending_norm_, w, m)) {
      pending_norm_.reset();
      return true;
    }
    if (y2 != nullptr) return linear_split_fp8(y, ldy, y2, ldy2, n_y, normed_input(), H, w, m);
    linear(y, ldy, normed_input(), H, w, m);
    return true;
  }
  k::SkinnyGemmParams g{.y = y, .ldy = ldy, .x = arena_.at<void>(off_xn_c_), .ldx = H, .w = w.p, .ldw = H,
                        .dtype = dtype_, .m = m, .n = w.rows, .k = H, .y2 = y2, .ldy2 = ldy2, .n_y = n_y};
  if (fuse && Blas::skinny_enabled()) {
    g.norm = *pending_norm_;
    if (k::cuda::skinny_gemm_supported(g)) {
      k::cuda::skinny_gemm(g, stream_);
      pending_norm_.reset();
      return true;
    }
    g.norm = {};
  }
  g.x = normed_input();
  if (y2 != nullptr) return blas_->try_skinny(g);
  linear(y, ldy, g.x, H, w, m);
  return true;
}

void GpuModel::linear(float* y, int64_t ldy, const void* x, int64_t ldx, const DeviceMat& w, int64_t m) {
  if (w.fp8())
    fp8_linear_->run(*blas_, y, ldy, x, dtype_, ldx, w, m);
  else
    blas_->linear(y, ldy, x, ldx, w.p, w.cols, dtype_, m, w.rows, w.cols);
}

bool GpuModel::linear_split_fp8(float* y, int64_t ldy, float* y2, int64_t ldy2, int64_t n_y, const void* x,
                                int64_t ldx, const DeviceMat& w, int64_t m) {
  return w.fp8() && fp8_linear_->run_split(*blas_, y, ldy, y2, ldy2, n_y, x, dtype_, ldx, w, m);
}

// ---- forward ----------------------------------------------------------------------------------------------------

// Under DP attention (hooks_.dp_attention(): --ep N or --tp N with --dp-attention) this rank embeds and attends over
// its own sequences with every head and its own cache, and may have no rows this step; each FFN and the output head
// then run its slices over every rank's rows (ffn_dp, output_head), joining the other ranks even with none.
void GpuModel::forward(const DeviceStep& st, KvPools& pools) {
  const bool dp = hooks_.dp_attention();
  const ModelConfig& c = config_;
  const int64_t T = st.n_rows, H = c.hidden_size;
  const auto eps = static_cast<float>(c.rms_norm_eps);
  Residual x{arena_.at<float>(off_x_), arena_.at<float>(off_x_next_)};  // the residual stream [T, H]
  auto* delta = arena_.at<float>(off_delta_);                             // the last block's output [T, H]
  void* xn_c = arena_.at<void>(off_xn_c_);                                // the normed input [T, H] dt
  cache_slots_ = pools.n_blocks * pools.block_size;

  phases::at(stream_, "embedding");
  if (T > 0)
    k::cuda::embedding({.out = x.now, .table = embed_.p, .table_type = dtype_, .hidden = H, .ids = st.tokens,
                        .n_rows = T},
                       stream_);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const GpuLayer& L = layers_[static_cast<size_t>(l)];
    if (T == 0) {  // a DP rank without sequences this step: it only joins the FFN's gathers
      ffn_dp(L, x, delta, T);
      continue;
    }
    phases::at(stream_, "attention: norm, q, kv_a, rope");
    // The input norm (x + the last FFN's output into x.next), issued by the attention's first read of the normed
    // input or taken into its first projection (project_input).
    const bool skip_norm = timing_skip("input_norm"), adds = l > 0 && !skip_norm;
    if (!skip_norm)
      pending_norm_ = k::RmsNormParams{.residual = x.now, .ld_residual = H, .delta = adds ? delta : nullptr,
                                       .ld_delta = H, .out = xn_c, .out_type = dtype_, .ld_out = H,
                                       .weight = L.input_norm, .n_rows = T, .dim = H, .eps = eps,
                                       .residual_out = adds ? x.next : nullptr, .ld_residual_out = H};
    void* vc = pools.v.empty() ? nullptr : pools.v[static_cast<size_t>(l)].get();
    attention_->forward(st, L, pools.k[static_cast<size_t>(l)].get(), vc, pools.block_size, delta);  // [T, H]
    normed_input();  // issued by now (an attention kind that never read its input would leave the residual behind)
    if (adds) x.advance();
    if (dp) {  // every head here: no join after the attention; the FFN over every rank's rows
      ffn_dp(L, x, delta, T);
      continue;
    }
    if (!hooks_.empty()) hooks_.all_reduce(delta, T * H, stream_);  // a rank's heads: a partial sum
    ffn(st, L, x, delta);
    if (!hooks_.empty()) hooks_.all_reduce(delta, T * H, stream_);  // a rank's FFN columns: a partial sum
  }
  phases::at(stream_, "final norm, lm_head");
  output_head(st, x.now, delta);
}

// x += delta (into x.next, then x advances), post-attention RMSNorm, then the layer's FFN kind into delta [T, H].
void GpuModel::ffn(const DeviceStep& st, const GpuLayer& L, Residual& x, float* delta) {
  const ModelConfig& c = config_;
  const int64_t T = st.n_rows, H = c.hidden_size;
  const auto eps = static_cast<float>(c.rms_norm_eps);
  void* xn_c = arena_.at<void>(off_xn_c_);
  phases::at(stream_, L.ffn == FfnKind::DENSE ? "dense mlp" : "moe: norm, router, shared");
  if (L.ffn == FfnKind::DENSE) {
    const k::RmsNormParams norm{.residual = x.now, .ld_residual = H, .delta = delta, .ld_delta = H, .out = xn_c,
                                .out_type = dtype_, .ld_out = H, .weight = L.post_norm, .n_rows = T, .dim = H,
                                .eps = eps, .residual_out = x.next, .ld_residual_out = H};
    x.advance();
    swiglu(L.mlp, xn_c, T, delta, &norm);
    return;
  }
  // The router needs the normed input in float32, the experts in dt: the MoE layer runs the norm (out and out2 of
  // one pass), at decode in the router GEMM's launch (MoeLayer::forward). A timing experiment that leaves the norm
  // out leaves the residual where it is.
  const bool adds = !timing_skip("post_norm");
  auto* xn = arena_.at<float>(off_xn_);
  const k::RmsNormParams norm{.residual = x.now, .ld_residual = H, .delta = delta, .ld_delta = H, .out = xn,
                              .out_type = DType::F32, .ld_out = H, .weight = L.post_norm, .n_rows = T, .dim = H,
                              .eps = eps, .out2 = xn_c, .out2_type = dtype_, .ld_out2 = H,
                              .residual_out = x.next, .ld_residual_out = H};
  if (adds) x.advance();
  moe_->forward(moe_params(L, xn, xn_c, delta, T, st.graphed), &norm);
}

// The MoE layer's call for rows x (float32, the router's input) and x_c (dt, the experts') into out, T rows.
k::MoeLayerParams GpuModel::moe_params(const GpuLayer& L, const float* x, const void* x_c, float* out, int64_t T,
                                       bool graphed) const {
  const ModelConfig& c = config_;
  return {.x = x, .x_c = x_c, .out = out, .n_tokens = T, .dtype = dtype_, .hidden = c.hidden_size,
          .inter = c.moe_intermediate_size,
          .shared_inter = L.shared.gate_up.p ? c.moe_intermediate_size * c.n_shared_experts : 0,
          .n_experts = static_cast<int32_t>(c.n_routed_experts), .top_k = static_cast<int32_t>(c.experts_per_token),
          .method = c.topk_method == TopkMethod::GREEDY ? k::RouterMethod::GREEDY
                                                        : k::RouterMethod::GROUP_LIMITED_GREEDY,
          .n_group = static_cast<int32_t>(c.n_group), .topk_group = static_cast<int32_t>(c.topk_group),
          .norm_topk_prob = c.norm_topk_prob, .routed_scaling_factor = static_cast<float>(c.routed_scaling_factor),
          .scoring = c.scoring_func == ScoringFunc::SOFTMAX ? k::RouterScoring::SOFTMAX : k::RouterScoring::SIGMOID,
          .router_w = L.router, .experts_gate_up = L.experts_gate_up.p, .experts_down = L.experts_down.p,
          .shared_gate_up = L.shared.gate_up.p, .shared_down = L.shared.down.p, .graph_safe = graphed,
          .experts_gate_up_scale = L.experts_gate_up.scale, .experts_down_scale = L.experts_down.scale,
          .shared_gate_up_scale = L.shared.gate_up.scale, .shared_down_scale = L.shared.down.scale,
          .held_begin = held_begin_, .held_experts = held_experts_};
}

// down(silu(gate(x)) * up(x)) for x [n, H] in dt -> out [n, H] float32. norm (x is its out): the norm that makes x,
// run here, in the gate/up launch where skinny_gemm's norm form takes it (decode rows).
void GpuModel::swiglu(const DeviceMlp& w, const void* x, int64_t n, float* out, const k::RmsNormParams* norm) {
  const int64_t H = config_.hidden_size, I = w.down.cols;
  auto* gu = arena_.at<float>(off_gu_);  // [n, 2I]
  void* h_c = arena_.at<void>(off_h_c_);  // [n, I] dt
  // A few rows (decode): gate/up and SwiGLU in one weight-streaming kernel (gate rows, then up rows, of gate_up).
  k::SkinnyGemmParams fused{.x = x, .ldx = H, .w = w.gate_up.p, .ldw = H, .dtype = dtype_, .m = n, .n = I, .k = H,
                            .swiglu = true, .act = h_c, .ld_act = I};
  bool skinny = !w.gate_up.fp8() && n <= k::kSkinnyEngineRows && Blas::skinny_enabled();
  if (norm != nullptr && skinny && n <= Blas::norm_fusion_rows()) {
    fused.norm = *norm;
    if (k::cuda::skinny_gemm_supported(fused))
      norm = nullptr;  // the gate/up launch below runs it
    else
      fused.norm = {};
  }
  if (norm != nullptr) k::cuda::rms_norm(*norm, stream_);
  skinny = skinny && (fused.norm.weight != nullptr || k::cuda::skinny_gemm_supported(fused));
  if (skinny) {
    k::cuda::skinny_gemm(fused, stream_);
  } else {
    linear(gu, 2 * I, x, H, w.gate_up, n);  // [n, 2I]
    k::cuda::silu_mul({.out = h_c, .out_type = dtype_, .ld_out = I, .gate_up = gu, .ld_in = 2 * I, .inter = I,
                       .n_rows = n},
                      stream_);
  }
  linear(out, H, h_c, I, w.down, n);  // [n, H]
}

void GpuModel::output_head(const DeviceStep& step, float* x, float* delta) {
  const int64_t H = config_.hidden_size, T = step.n_rows, R = step.n_logit_rows;
  const bool dp = hooks_.dp_attention();
  if (R == 0 && !dp) return;  // under DP attention every rank joins the head's gathers, with or without rows
  const auto eps = static_cast<float>(config_.rms_norm_eps);
  // Final residual add and norm, in place (float32), then only the wanted rows go through lm_head.
  if (T > 0)
    k::cuda::rms_norm({.residual = x, .ld_residual = H, .delta = delta, .ld_delta = H, .out = x,
                       .out_type = DType::F32, .ld_out = H, .weight = final_norm_, .n_rows = T, .dim = H, .eps = eps},
                      stream_);
  auto* hx = arena_.at<float>(off_head_x_);  // [R, H]
  if (R > 0)
    k::cuda::embedding({.out = hx, .table = x, .table_type = DType::F32, .hidden = H, .ids = step.logit_rows,
                        .n_rows = R},
                       stream_);  // a row gather: the "table" is the normed hidden state
  // DP attention: this rank's vocabulary rows over every rank's logit rows (gathered), its own moved to the front.
  int64_t rows = R, first = 0;
  const float* head_in = hx;
  if (dp) {
    auto* all = arena_.at<float>(off_dp_head_);  // [all logit rows, H]
    first = hooks_.gather_rows(hx, R, H, all, rows, stream_);
    MLABENCH_ICHECK(rows <= limits_.max_logit_rows && first + R <= rows,
                    "DP attention: {} logit rows gathered (this rank's from {}), above the step's {}", rows, first,
                    limits_.max_logit_rows);
    if (rows == 0) return;  // no rank has logit rows: every rank sees the same count
    head_in = all;
  }
  void* hc = arena_.at<void>(off_head_c_);
  k::cuda::cast({.out = hc, .out_type = dtype_, .ld_out = H, .in = head_in, .ld_in = H, .n_rows = rows, .n_cols = H},
                stream_);
  const int64_t V = config_.vocab_size, Vr = lm_head_.rows;
  if (Vr == V) {
    blas_->linear(logits_, V, hc, H, lm_head_.p, H, dtype_, rows, V, H);  // [rows, V]
  } else {
    auto* local = arena_.at<float>(off_local_logits_);  // [rows, Vr]: this rank's vocabulary rows
    blas_->linear(local, Vr, hc, H, lm_head_.p, H, dtype_, rows, Vr, H);
    hooks_.gather_logits(local, rows, Vr, logits_, stream_);  // [rows, V] on every rank
  }
  // This rank's rows [first, first + R) to the front: one copy where the two ranges are apart, else row first + i
  // to row i, ascending (row first + i is read before any later copy writes it).
  if (first >= R) {
    if (R > 0)
      MLABENCH_CUDA(cudaMemcpyAsync(logits_, logits_ + first * V, static_cast<size_t>(R * V) * 4,
                                    cudaMemcpyDeviceToDevice, stream_));
  } else if (first > 0) {
    for (int64_t i = 0; i < R; ++i)
      MLABENCH_CUDA(cudaMemcpyAsync(logits_ + i * V, logits_ + (first + i) * V, static_cast<size_t>(V) * 4,
                                    cudaMemcpyDeviceToDevice, stream_));
  }
}


// ---- DP attention -----------------------------------------------------------------------------------------------

// x += delta and the post-attention norm on this rank's T rows (float32), every rank's normed rows gathered, this
// rank's slice of the FFN over all of them, the sums reduced and this rank's rows into delta.
void GpuModel::ffn_dp(const GpuLayer& L, Residual& x, float* delta, int64_t T) {
  const int64_t H = config_.hidden_size;
  auto* mine = arena_.at<float>(off_dp_mine_);  // [T, H] float32
  auto* all = arena_.at<float>(off_dp_all_);    // [all rows, H] float32: the router's input
  auto* out = arena_.at<float>(off_dp_out_);    // [all rows, H] float32: this rank's partial sums
  if (T > 0) {
    k::cuda::rms_norm({.residual = x.now, .ld_residual = H, .delta = delta, .ld_delta = H, .out = mine,
                       .out_type = DType::F32, .ld_out = H, .weight = L.post_norm, .n_rows = T, .dim = H,
                       .eps = static_cast<float>(config_.rms_norm_eps), .residual_out = x.next,
                       .ld_residual_out = H},
                      stream_);
    x.advance();
  }
  int64_t rows = 0;
  const int64_t first = hooks_.gather_rows(mine, T, H, all, rows, stream_);
  MLABENCH_ICHECK(rows <= limits_.max_step_tokens && first + T <= rows,
                  "DP attention: {} rows gathered (this rank's from {}), above the step's {} tokens", rows, first,
                  limits_.max_step_tokens);
  if (rows == 0) return;  // no rank has rows: every rank sees the same count
  // The experts' and the dense FFN's operand in dt: the rounding the norm's second output would give.
  const void* all_c = all;
  if (dtype_ != DType::F32) {
    all_c = arena_.at<void>(off_dp_all_c_);
    k::cuda::cast({.out = const_cast<void*>(all_c), .out_type = dtype_, .ld_out = H, .in = all, .ld_in = H,
                   .n_rows = rows, .n_cols = H},
                  stream_);
  }
  if (L.ffn == FfnKind::DENSE)
    swiglu(L.mlp, all_c, rows, out);
  else
    moe_->forward(moe_params(L, all, all_c, out, rows, false));
  hooks_.reduce_rows(out, rows, H, first, T, delta, stream_);
}

}  // namespace mlabench::gpu
