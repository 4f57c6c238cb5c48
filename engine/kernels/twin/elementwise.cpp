// CPU twins of the elementwise kernels (embedding, rms_norm, rope, silu_mul, cast, cache_write, cache_gather; the
// F8_E4M3 cache slots of --kv-cache-dtype fp8),
// and the parameter checks the CUDA launchers share with them (engine/kernels/cuda/elementwise.cu declares the
// check_* functions), so a twin and its kernel refuse exactly the same inputs.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "engine/core/fp8.h"
#include "engine/kernels/twin/checks.h"
#include "engine/kernels/twin/twin.h"

namespace mlabench::kernels {

namespace checks {

namespace {

void check_float_type(DType t, const char* kernel, const char* field) {
  MLABENCH_CHECK(t == DType::F32 || t == DType::BF16 || t == DType::F16,
                 "{}: {} is {}, not one of F32, BF16, F16. HINT: activations and GEMM operands are F32, BF16 or F16; "
                 "convert the tensor first",
                 kernel, field, dtype_name(t));
}

void check_rows_ld(const char* kernel, int64_t n_rows, int64_t width, int64_t ld, const char* ld_name) {
  MLABENCH_CHECK(n_rows >= 0, "{}: n_rows = {} is negative. HINT: pass the number of rows to process", kernel,
                 n_rows);
  MLABENCH_CHECK(ld >= width, "{}: {} = {} is below the row width {}. HINT: leading dimensions count elements and "
                 "must cover a whole row", kernel, ld_name, ld, width);
}

}  // namespace

void check_cache_type(DType t, const char* kernel) {
  MLABENCH_CHECK(t == DType::BF16 || t == DType::F32 || t == DType::F8_E4M3,
                 "{}: cache_type is {}, not BF16, F32 or F8_E4M3. HINT: the KV cache is BF16, F32 in the engine's "
                 "float32 precision, or F8_E4M3 slots (kernel_params.h Fp8SlotLayout) under --kv-cache-dtype fp8",
                 kernel, dtype_name(t));
}

namespace {

// The pools cache_write and cache_gather take: check_cache_type's, an F8_E4M3 one with a slot layout of whole
// segments of quantised values at the slot's start (kernel_params.h Fp8SlotLayout).
void check_pool(DType t, const Fp8SlotLayout& l, const char* kernel) {
  check_cache_type(t, kernel);
  if (t != DType::F8_E4M3) return;
  MLABENCH_CHECK(l.segment > 0 && l.quantised > 0 && l.quantised % l.segment == 0 && l.quantised <= l.width,
                 "{}: an F8_E4M3 cache slot of width {} with fp8_quantised {} and fp8_segment {}. HINT: the quantised "
                 "values are whole segments at the slot's start (MLA: kv_lora, one segment; GQA: n_kv_heads x "
                 "head_dim in segments of head_dim)", kernel, l.width, l.quantised, l.segment);
}

}  // namespace


void check_embedding(const EmbeddingParams& p) {
  check_float_type(p.table_type, "embedding", "table_type");
  MLABENCH_CHECK(p.hidden > 0, "embedding: hidden = {} must be positive. HINT: pass the table's row width",
                 p.hidden);
  MLABENCH_CHECK(p.n_rows >= 0, "embedding: n_rows = {} is negative. HINT: pass the number of token ids", p.n_rows);
  MLABENCH_CHECK(p.n_rows == 0 || (p.out && p.table && p.ids),
                 "embedding: out, table and ids must be set. HINT: fill every pointer of EmbeddingParams");
}

void check_rms_norm(const RmsNormParams& p) {
  check_float_type(p.out_type, "rms_norm", "out_type");
  MLABENCH_CHECK(p.dim > 0, "rms_norm: dim = {} must be positive. HINT: pass the normalised width", p.dim);
  check_rows_ld("rms_norm", p.n_rows, p.dim, p.ld_residual, "ld_residual");
  check_rows_ld("rms_norm", p.n_rows, p.dim, p.ld_out, "ld_out");
  if (p.delta) check_rows_ld("rms_norm", p.n_rows, p.dim, p.ld_delta, "ld_delta");
  MLABENCH_CHECK(p.n_rows == 0 || (p.residual && p.out && p.weight),
                 "rms_norm: residual, out and weight must be set. HINT: delta is the only optional pointer");
  MLABENCH_CHECK(p.out != static_cast<void*>(p.residual) || (p.out_type == DType::F32 && p.ld_out == p.ld_residual),
                 "rms_norm: out aliases residual with out_type {} and ld_out {} vs ld_residual {}. HINT: in-place "
                 "normalisation needs out_type F32 and ld_out == ld_residual; else use a separate out buffer",
                 dtype_name(p.out_type), p.ld_out, p.ld_residual);
  if (p.out2 != nullptr) {
    check_float_type(p.out2_type, "rms_norm", "out2_type");
    check_rows_ld("rms_norm", p.n_rows, p.dim, p.ld_out2, "ld_out2");
    MLABENCH_CHECK(p.out2 != p.out && p.out2 != static_cast<void*>(p.residual),
                   "rms_norm: out2 aliases out or residual. HINT: out2 is a second buffer for a second copy");
  }
  if (p.residual_out != nullptr) {
    check_rows_ld("rms_norm", p.n_rows, p.dim, p.ld_residual_out, "ld_residual_out");
    MLABENCH_CHECK(p.delta != nullptr && p.residual_out != p.residual && p.residual_out != p.delta &&
                       static_cast<void*>(p.residual_out) != p.out && static_cast<void*>(p.residual_out) != p.out2,
                   "rms_norm: residual_out {}. HINT: residual_out takes residual + delta (so delta must be set) in a "
                   "buffer of its own, apart from residual, delta, out and out2",
                   p.delta == nullptr ? "without delta" : "aliases another operand");
  }
}

bool is_input_norm_of(const RmsNormParams& n, const void* x, int64_t ldx, DType x_type, int64_t m, int64_t k) {
  return x == n.out && ldx == n.ld_out && x_type == n.out_type && m == n.n_rows && k == n.dim &&
         (n.delta == nullptr || n.residual_out != nullptr);
}

void check_input_norm(const RmsNormParams& n, const void* x, int64_t ldx, DType x_type, int64_t m, int64_t k,
                      const char* kernel) {
  check_rms_norm(n);
  MLABENCH_CHECK(x == n.out && ldx == n.ld_out && x_type == n.out_type && m == n.n_rows && k == n.dim,
                 "{}: the input norm's out {} (ld {}, {}, {} rows of {}) is not x {} (ld {}, {}, {} rows of {}). "
                 "HINT: with norm set, x is the norm's out: the same pointer, leading dimension, type, rows and width",
                 kernel, n.out, n.ld_out, dtype_name(n.out_type), n.n_rows, n.dim, x, ldx, dtype_name(x_type), m, k);
  MLABENCH_CHECK(n.delta == nullptr || n.residual_out != nullptr,
                 "{}: the input norm adds delta in place. HINT: every CTA of the product reads the residual row, so "
                 "the sum goes to residual_out (the engine's second residual buffer)",
                 kernel);
}

void check_rope(const RopeParams& p) {
  MLABENCH_CHECK(p.dim > 0 && p.dim % 2 == 0, "rope: dim = {} must be positive and even. HINT: pass the rotary "
                 "width (qk_rope_head_dim for DeepSeek, head_dim for Llama)", p.dim);
  MLABENCH_CHECK(p.n_heads >= 1 && p.offset >= 0, "rope: n_heads = {}, offset = {}. HINT: n_heads >= 1, offset >= 0",
                 p.n_heads, p.offset);
  MLABENCH_CHECK(p.n_heads == 1 || p.head_stride >= p.dim, "rope: head_stride = {} is below dim {} with {} heads, "
                 "so heads overlap. HINT: head_stride is the distance between heads in elements", p.head_stride,
                 p.dim, p.n_heads);
  check_rows_ld("rope", p.n_rows, (p.n_heads - 1) * p.head_stride + p.offset + p.dim, p.ld, "ld");
  MLABENCH_CHECK(p.n_rows == 0 || (p.x && p.cos && p.sin && p.positions),
                 "rope: x, cos, sin and positions must be set. HINT: tables come from rope_cos_sin (engine/model/"
                 "rope.h), [n_positions, dim/2] float32");
}

void check_silu_mul(const SiluMulParams& p) {
  check_float_type(p.out_type, "silu_mul", "out_type");
  MLABENCH_CHECK(p.inter > 0, "silu_mul: inter = {} must be positive. HINT: pass the intermediate size", p.inter);
  check_rows_ld("silu_mul", p.n_rows, 2 * p.inter, p.ld_in, "ld_in");
  check_rows_ld("silu_mul", p.n_rows, p.inter, p.ld_out, "ld_out");
  MLABENCH_CHECK(p.n_rows == 0 || (p.out && p.gate_up), "silu_mul: out and gate_up must be set. HINT: gate_up is "
                 "the fused [gate ; up] GEMM output");
}

void check_cast(const CastParams& p) {
  check_float_type(p.out_type, "cast", "out_type");
  check_float_type(p.in_type, "cast", "in_type");
  MLABENCH_CHECK(p.n_cols > 0, "cast: n_cols = {} must be positive. HINT: pass the row width", p.n_cols);
  check_rows_ld("cast", p.n_rows, p.n_cols, p.ld_in, "ld_in");
  check_rows_ld("cast", p.n_rows, p.n_cols, p.ld_out, "ld_out");
  MLABENCH_CHECK(p.n_rows == 0 || (p.out && p.in), "cast: out and in must be set. HINT: fill CastParams");
}

void check_cache_write(const CacheWriteParams& p) {
  check_pool(p.cache_type, p.fp8_layout(), "cache_write");
  MLABENCH_CHECK(p.width > 0, "cache_write: width = {} must be positive. HINT: pass the values per cache slot",
                 p.width);
  check_rows_ld("cache_write", p.n_rows, p.width, p.ld_src, "ld_src");
  MLABENCH_CHECK(p.n_rows == 0 || (p.cache && p.src && p.slots), "cache_write: cache, src and slots must be set. "
                 "HINT: slots come from the block tables (slot = block * block_size + position % block_size)");
}

void check_cache_gather(const CacheGatherParams& p) {
  check_pool(p.cache_type, p.fp8_layout(), "cache_gather");
  MLABENCH_CHECK(p.width > 0 && p.block_size > 0 && p.max_blocks > 0 && p.n_seqs >= 0,
                 "cache_gather: width = {}, block_size = {}, max_blocks = {}, n_seqs = {}. HINT: width, block_size "
                 "and max_blocks must be positive, n_seqs non-negative", p.width, p.block_size, p.max_blocks,
                 p.n_seqs);
  const bool fp8 = p.cache_type == DType::F8_E4M3;
  MLABENCH_CHECK(p.out_type == DType::F32 || p.out_type == (fp8 ? DType::BF16 : p.cache_type),
                 "cache_gather: out_type {} with a {} cache. HINT: gather into F32 or into the cache's own type (an "
                 "F8_E4M3 cache: F32 or BF16, the values dequantised)",
                 dtype_name(p.out_type), dtype_name(p.cache_type));
  MLABENCH_CHECK(p.ld_out >= p.width, "cache_gather: ld_out = {} is below width {}. HINT: leading dimensions count "
                 "elements and must cover a whole row", p.ld_out, p.width);
  MLABENCH_CHECK(p.n_seqs == 0 || (p.out && p.cache && p.block_tables && p.kv_len && p.cu_kv),
                 "cache_gather: out, cache, block_tables, kv_len and cu_kv must be set. HINT: fill "
                 "CacheGatherParams");
}

LatentAppendParts latent_append_parts(const LatentAppendParams& p) {
  const int64_t width = p.kv_lora + p.rope_dim;
  const Fp8SlotLayout mla = Fp8SlotLayout::mla(p.kv_lora, p.rope_dim);
  return {.norm = {.residual = p.latent, .ld_residual = p.ld, .out = p.latent, .out_type = DType::F32, .ld_out = p.ld,
                   .weight = p.norm_weight, .n_rows = p.n_rows, .dim = p.kv_lora, .eps = p.eps},
          .k_rope = {.x = p.latent, .ld = p.ld, .n_rows = p.n_rows, .n_heads = 1, .head_stride = 0,
                     .offset = p.kv_lora, .dim = p.rope_dim, .interleaved = p.interleaved, .cos = p.cos, .sin = p.sin,
                     .positions = p.positions},
          .q_rope = {.x = p.q, .ld = p.ld_q, .n_rows = p.n_heads > 0 ? p.n_rows : 0,
                     .n_heads = std::max<int64_t>(p.n_heads, 1), .head_stride = p.q_head_stride,
                     .offset = p.q_rope_offset, .dim = p.rope_dim, .interleaved = p.interleaved, .cos = p.cos,
                     .sin = p.sin, .positions = p.positions},
          .write = {.cache = p.cache, .cache_type = p.cache_type, .width = width, .src = p.latent, .ld_src = p.ld,
                    .slots = p.slots, .n_rows = p.n_rows, .fp8_quantised = mla.quantised, .fp8_segment = mla.segment}};
}

void check_latent_append(const LatentAppendParams& p) {
  MLABENCH_CHECK(p.kv_lora > 0 && p.rope_dim > 0 && p.ld >= p.kv_lora + p.rope_dim && p.n_heads >= 0,
                 "latent_append: kv_lora {}, rope_dim {}, ld {}, n_heads {}. HINT: ld >= kv_lora + rope_dim (the "
                 "cache row), n_heads 0 when q is not rotated here",
                 p.kv_lora, p.rope_dim, p.ld, p.n_heads);
  MLABENCH_CHECK(p.n_heads == 0 || p.q != nullptr, "latent_append: {} q heads and q is null. HINT: pass q or n_heads 0",
                 p.n_heads);
  const LatentAppendParts parts = latent_append_parts(p);
  check_rms_norm(parts.norm);
  check_rope(parts.k_rope);
  if (parts.q_rope.n_rows > 0) check_rope(parts.q_rope);
  check_cache_write(parts.write);
}

KvAppendParts kv_append_parts(const KvAppendParams& p) {
  const int64_t kv_width = p.n_kv_heads * p.head_dim, k_col = p.n_heads * p.head_dim;
  const Fp8SlotLayout heads = Fp8SlotLayout::heads(p.n_kv_heads, p.head_dim);
  return {.rope = {.x = p.qkv, .ld = p.ld, .n_rows = p.n_rows, .n_heads = p.n_heads + p.n_kv_heads,
                   .head_stride = p.head_dim, .offset = 0, .dim = p.rope_dim, .interleaved = p.interleaved,
                   .cos = p.cos, .sin = p.sin, .positions = p.positions},
          .k_write = {.cache = p.k_cache, .cache_type = p.cache_type, .width = kv_width,
                      .src = p.qkv ? p.qkv + k_col : nullptr, .ld_src = p.ld, .slots = p.slots, .n_rows = p.n_rows,
                      .fp8_quantised = heads.quantised, .fp8_segment = heads.segment},
          .v_write = {.cache = p.v_cache, .cache_type = p.cache_type, .width = kv_width,
                      .src = p.qkv ? p.qkv + k_col + kv_width : nullptr, .ld_src = p.ld, .slots = p.slots,
                      .n_rows = p.n_rows, .fp8_quantised = heads.quantised, .fp8_segment = heads.segment}};
}

void check_kv_append(const KvAppendParams& p) {
  MLABENCH_CHECK(p.n_heads > 0 && p.n_kv_heads > 0 && p.head_dim > 0 && p.rope_dim > 0 && p.rope_dim <= p.head_dim &&
                     p.ld >= (p.n_heads + 2 * p.n_kv_heads) * p.head_dim,
                 "kv_append: n_heads {}, n_kv_heads {}, head_dim {}, rope_dim {}, ld {}. HINT: positive head counts, "
                 "0 < rope_dim <= head_dim, and ld >= (n_heads + 2 n_kv_heads) head_dim (q, k and v heads of a row)",
                 p.n_heads, p.n_kv_heads, p.head_dim, p.rope_dim, p.ld);
  const KvAppendParts parts = kv_append_parts(p);
  check_rope(parts.rope);
  check_cache_write(parts.k_write);
  check_cache_write(parts.v_write);
}

}  // namespace checks

namespace twin {

namespace {

float load_as_float(const void* base, DType t, int64_t i) {
  switch (t) {
    case DType::BF16:
      return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case DType::F16:
      return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
    default:
      return static_cast<const float*>(base)[i];
  }
}

void store_float(void* base, DType t, int64_t i, float v) {
  switch (t) {
    case DType::BF16:
      static_cast<uint16_t*>(base)[i] = f32_to_bf16(v);
      return;
    case DType::F16:
      static_cast<uint16_t*>(base)[i] = f32_to_f16(v);
      return;
    default:
      static_cast<float*>(base)[i] = v;
  }
}

}  // namespace

void embedding(const EmbeddingParams& p) {
  checks::check_embedding(p);
  for (int64_t r = 0; r < p.n_rows; ++r)
    for (int64_t c = 0; c < p.hidden; ++c)
      p.out[r * p.hidden + c] = load_as_float(p.table, p.table_type, static_cast<int64_t>(p.ids[r]) * p.hidden + c);
}

void rms_norm(const RmsNormParams& p) {
  checks::check_rms_norm(p);
  for (int64_t r = 0; r < p.n_rows; ++r) {
    float* x = p.residual + r * p.ld_residual;
    if (p.residual_out != nullptr) {  // the sum goes to a second buffer; residual is only read
      float* to = p.residual_out + r * p.ld_residual_out;
      for (int64_t c = 0; c < p.dim; ++c) to[c] = x[c];
      x = to;
    }
    float ss = 0.0f;
    for (int64_t c = 0; c < p.dim; ++c) {
      if (p.delta) x[c] += p.delta[r * p.ld_delta + c];
      ss += x[c] * x[c];
    }
    // 1/sqrt rather than an approximate rsqrt: the kernel uses the same correctly rounded pair.
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(p.dim) + p.eps);
    for (int64_t c = 0; c < p.dim; ++c) {
      const float y = (x[c] * inv) * p.weight[c];
      store_float(p.out, p.out_type, r * p.ld_out + c, y);
      if (p.out2) store_float(p.out2, p.out2_type, r * p.ld_out2 + c, y);
    }
  }
}

void rope(const RopeParams& p) {
  checks::check_rope(p);
  const int64_t half = p.dim / 2;
  for (int64_t r = 0; r < p.n_rows; ++r) {
    const float* cs = p.cos + static_cast<int64_t>(p.positions[r]) * half;
    const float* sn = p.sin + static_cast<int64_t>(p.positions[r]) * half;
    for (int64_t h = 0; h < p.n_heads; ++h) {
      float* x = p.x + r * p.ld + h * p.head_stride + p.offset;
      for (int64_t i = 0; i < half; ++i) {
        const int64_t a = p.interleaved ? 2 * i : i;
        const int64_t b = p.interleaved ? 2 * i + 1 : i + half;
        const float x0 = x[a], x1 = x[b];
        x[a] = x0 * cs[i] - x1 * sn[i];
        x[b] = x0 * sn[i] + x1 * cs[i];
      }
    }
  }
}

void silu_mul(const SiluMulParams& p) {
  checks::check_silu_mul(p);
  for (int64_t r = 0; r < p.n_rows; ++r) {
    const float* gate = p.gate_up + r * p.ld_in;
    const float* up = gate + p.inter;
    for (int64_t i = 0; i < p.inter; ++i) {
      const float g = gate[i];
      store_float(p.out, p.out_type, r * p.ld_out + i, g / (1.0f + std::exp(-g)) * up[i]);
    }
  }
}

void cast(const CastParams& p) {
  checks::check_cast(p);
  for (int64_t r = 0; r < p.n_rows; ++r)
    for (int64_t c = 0; c < p.n_cols; ++c)
      store_float(p.out, p.out_type, r * p.ld_out + c, load_as_float(p.in, p.in_type, r * p.ld_in + c));
}

void write_fp8_slot(const Fp8SlotLayout& l, const float* x, uint8_t* slot) {
  const int64_t gps = l.groups_per_segment();
  for (int64_t g = 0; g < l.groups(); ++g) {
    const int64_t seg = g / gps, c0 = seg * l.segment + (g % gps) * kFp8Block;
    const int64_t c1 = std::min(c0 + kFp8Block, (seg + 1) * l.segment);
    float amax = 0.0f;
    for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(x[c]));  // NaN left out, as the CPU engine
    const float scale = fp8_block_scale(amax);
    for (int64_t c = c0; c < c1; ++c) slot[c] = quantize_e4m3(x[c], scale);
    std::memcpy(slot + l.scale_offset() + 4 * g, &scale, 4);
  }
  for (int64_t c = l.quantised; c < l.width; ++c) {
    const uint16_t b = f32_to_bf16(x[c]);
    std::memcpy(slot + l.bf16_offset() + 2 * (c - l.quantised), &b, 2);
  }
}

float read_fp8_slot(const Fp8SlotLayout& l, const uint8_t* slot, int64_t c) {
  if (c >= l.quantised) {
    uint16_t b;
    std::memcpy(&b, slot + l.bf16_offset() + 2 * (c - l.quantised), 2);
    return bf16_to_f32(b);
  }
  const int64_t g = (c / l.segment) * l.groups_per_segment() + (c % l.segment) / kFp8Block;
  float scale;
  std::memcpy(&scale, slot + l.scale_offset() + 4 * g, 4);
  return e4m3_to_f32(slot[c]) * scale;
}

void cache_write(const CacheWriteParams& p) {
  checks::check_cache_write(p);
  if (p.cache_type == DType::F8_E4M3) {
    const Fp8SlotLayout l = p.fp8_layout();
    for (int64_t r = 0; r < p.n_rows; ++r)
      write_fp8_slot(l, p.src + r * p.ld_src, static_cast<uint8_t*>(p.cache) + p.slots[r] * l.bytes());
    return;
  }
  for (int64_t r = 0; r < p.n_rows; ++r)
    for (int64_t c = 0; c < p.width; ++c)
      store_float(p.cache, p.cache_type, p.slots[r] * p.width + c, p.src[r * p.ld_src + c]);
}

void latent_append(const LatentAppendParams& p) {
  checks::check_latent_append(p);
  const checks::LatentAppendParts parts = checks::latent_append_parts(p);
  rms_norm(parts.norm);
  rope(parts.k_rope);
  if (parts.q_rope.n_rows > 0) rope(parts.q_rope);
  cache_write(parts.write);
}

void kv_append(const KvAppendParams& p) {
  checks::check_kv_append(p);
  const checks::KvAppendParts parts = checks::kv_append_parts(p);
  rope(parts.rope);
  cache_write(parts.k_write);
  cache_write(parts.v_write);
}

void cache_gather(const CacheGatherParams& p) {
  checks::check_cache_gather(p);
  for (int32_t s = 0; s < p.n_seqs; ++s) {
    const int32_t* table = p.block_tables + static_cast<int64_t>(s) * p.max_blocks;
    for (int32_t pos = 0; pos < p.kv_len[s]; ++pos) {
      const int64_t slot = static_cast<int64_t>(table[pos / p.block_size]) * p.block_size + pos % p.block_size;
      const int64_t out = (static_cast<int64_t>(p.cu_kv[s]) + pos) * p.ld_out;
      if (p.cache_type == DType::F8_E4M3) {
        const Fp8SlotLayout l = p.fp8_layout();
        const uint8_t* bytes = static_cast<const uint8_t*>(p.cache) + slot * l.bytes();
        for (int64_t c = 0; c < p.width; ++c) store_float(p.out, p.out_type, out + c, read_fp8_slot(l, bytes, c));
        continue;
      }
      for (int64_t c = 0; c < p.width; ++c)
        store_float(p.out, p.out_type, out + c, load_as_float(p.cache, p.cache_type, slot * p.width + c));
    }
  }
}

}  // namespace twin

}  // namespace mlabench::kernels
