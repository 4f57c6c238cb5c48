// CPU twins of the attention kernels (MLA prefill/decode, MHA/GQA over paged BF16 pools). Each query row runs
// cpu::attention_one_query, the CPU engine's own attention, over exactly the keys it may see (causal), with the
// cache slots (BF16, F32, or F8_E4M3 read back as cache_gather reads them) of its sequence converted to float32
// first. The split-KV scratch of the CUDA launchers is
// an implementation detail of the kernels: the twins ignore it.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "engine/kernels/cpu/ops.h"
#include "engine/kernels/twin/checks.h"
#include "engine/kernels/twin/twin.h"

namespace mlabench::kernels::twin {
namespace {

int64_t slot_of(const PagedCache& pc, int32_t seq, int64_t pos) {
  const int32_t block = pc.block_tables[static_cast<int64_t>(seq) * pc.max_blocks + pos / pc.block_size];
  return static_cast<int64_t>(block) * pc.block_size + pos % pc.block_size;
}

// The first n_tokens slots of sequence seq as contiguous float32 rows of `width` values (F8_E4M3 slots: laid out
// as `fp8`, each value read back as read_fp8_slot reads it).
std::vector<float> gather_tokens(const void* cache, DType type, int64_t width, const PagedCache& pc, int32_t seq,
                                 int64_t n_tokens, const Fp8SlotLayout& fp8) {
  checks::check_cache_type(type, "attention");
  std::vector<float> rows(static_cast<size_t>(n_tokens * width));
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int64_t at = slot_of(pc, seq, t) * width;
    if (type == DType::F8_E4M3) {
      const uint8_t* slot = static_cast<const uint8_t*>(cache) + slot_of(pc, seq, t) * fp8.bytes();
      for (int64_t c = 0; c < width; ++c) rows[static_cast<size_t>(t * width + c)] = read_fp8_slot(fp8, slot, c);
    } else if (type == DType::F32) {
      std::copy_n(static_cast<const float*>(cache) + at, width, rows.begin() + t * width);
    } else {
      const uint16_t* src = static_cast<const uint16_t*>(cache) + at;
      for (int64_t c = 0; c < width; ++c) rows[static_cast<size_t>(t * width + c)] = bf16_to_f32(src[c]);
    }
  }
  return rows;
}

// Rows [0, n) of `width` BF16 values at stride ld, widened to float32 at the same stride (the tail of the last row
// past width is not read).
std::vector<float> widen_rows(const uint16_t* src, int64_t n, int64_t ld, int64_t width) {
  std::vector<float> out(static_cast<size_t>(n > 0 ? (n - 1) * ld + width : 0));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < width; ++c) out[static_cast<size_t>(r * ld + c)] = bf16_to_f32(src[r * ld + c]);
  return out;
}

void check_varlen(const VarlenBatch& b, const char* what) {
  for (int32_t s = 0; s < b.n_seqs; ++s) {
    const int32_t q_len = b.cu_q[s + 1] - b.cu_q[s];
    MLABENCH_CHECK(q_len >= 0 && q_len <= b.kv_len[s],
                   "{}: sequence {} has {} new rows but kv_len {} (rows sit at the end of the cache). HINT: kv_len "
                   "counts the cached tokens after the new rows were appended",
                   what, s, q_len, b.kv_len[s]);
  }
}

}  // namespace

void mla_prefill_attention(const MlaPrefillParams& p) {
  const VarlenBatch& b = p.batch;
  check_varlen(b, "mla_prefill_attention");
  const int64_t qk = p.nope + p.rope, kvw = p.nope + p.v;
  if (p.q_bf16 != nullptr) {
    // BF16 operands: the same attention over their exact float32 values (the kernel rounds P to BF16 besides).
    const int64_t rows = b.cu_q[b.n_seqs], keys = p.cu_kv[b.n_seqs];
    const std::vector<float> q = widen_rows(p.q_bf16, rows, p.ld_q, p.n_heads * qk);
    const std::vector<float> kv = widen_rows(p.kv_bf16, keys, p.ld_kv, p.n_heads * kvw);
    const std::vector<float> k_pe = widen_rows(p.k_pe_bf16, keys, p.ld_kpe, p.rope);
    MlaPrefillParams f = p;
    f.q_bf16 = f.kv_bf16 = f.k_pe_bf16 = nullptr;
    f.q = q.data();
    f.kv = kv.data();
    f.k_pe = k_pe.data();
    return mla_prefill_attention(f);
  }
  for (int32_t s = 0; s < b.n_seqs; ++s) {
    MLABENCH_CHECK(p.cu_kv[s + 1] - p.cu_kv[s] == b.kv_len[s],
                   "mla_prefill_attention: sequence {} has cu_kv span {} but kv_len {}. HINT: cu_kv is the prefix "
                   "sum of kv_len",
                   s, p.cu_kv[s + 1] - p.cu_kv[s], b.kv_len[s]);
    const int64_t q0 = b.cu_q[s], q_len = b.cu_q[s + 1] - q0, kv_len = b.kv_len[s], k0 = p.cu_kv[s];
#pragma omp parallel if (q_len * p.n_heads * kv_len * qk >= (int64_t{1} << 20))
    {
      std::vector<float> scores(static_cast<size_t>(kv_len));
#pragma omp for collapse(2) schedule(static)
      for (int64_t i = 0; i < q_len; ++i)
        for (int64_t h = 0; h < p.n_heads; ++h) {
          const cpu::AttentionKeys keys{.k1 = p.kv + k0 * p.ld_kv + h * kvw,
                                        .k1_stride = p.ld_kv,
                                        .d1 = p.nope,
                                        .k2 = p.k_pe + k0 * p.ld_kpe,
                                        .k2_stride = p.ld_kpe,
                                        .d2 = p.rope,
                                        .v = p.kv + k0 * p.ld_kv + h * kvw + p.nope,
                                        .v_stride = p.ld_kv,
                                        .dv = p.v};
          const float* qh = p.q + (q0 + i) * p.ld_q + h * qk;
          cpu::attention_one_query(p.out + (q0 + i) * p.ld_out + h * p.v, qh, qh + p.nope, keys, kv_len - q_len + i + 1,
                                   p.scale, scores.data());
        }
    }
  }
}

void mla_decode_attention(const MlaDecodeParams& p) {
  const int64_t width = int64_t{p.kv_lora} + p.rope;
  for (int32_t s = 0; s < p.n_seqs; ++s) {
    const int64_t kv_len = p.kv_len[s];
    MLABENCH_CHECK(kv_len >= 1,
                   "mla_decode_attention: sequence {} has kv_len {}. HINT: decode appends the new "
                   "token to the cache before attention, so kv_len >= 1",
                   s, kv_len);
    std::vector<float> latent = gather_tokens(p.cache, p.cache_type, width, p.paged, s, kv_len, p.fp8_layout());
    // BF16 operands: the kernels' q, rounded to BF16 (their P rounding is not reproduced: it follows the running
    // max of their tiles, so tests bound it by tolerance). Over FP8 slots, the Hopper kernel's form
    // (MlaFp8Operands): BF16_VALUES each value code x scale rounded to BF16 as well (the RoPE part is BF16
    // already); F16 the values exact (code x scale, as read), q's latent part rounded to F16 at its shift.
    const bool round_q = p.bf16_operands && (p.cache_type == DType::BF16 || p.cache_type == DType::F8_E4M3);
    const MlaFp8Operands form =
        p.fp8_operands == MlaFp8Operands::AUTO ? kMlaFp8OperandsDefault : p.fp8_operands;
    const bool fp8 = round_q && p.cache_type == DType::F8_E4M3, f16_q_lat = fp8 && form == MlaFp8Operands::F16;
    if (fp8 && form == MlaFp8Operands::BF16_VALUES)
      for (int64_t t = 0; t < kv_len; ++t)
        for (int64_t c = 0; c < p.kv_lora; ++c) {
          float& x = latent[static_cast<size_t>(t * width + c)];
          x = bf16_to_f32(f32_to_bf16(x));
        }
#pragma omp parallel if (p.n_heads * kv_len * width >= (int64_t{1} << 20))
    {
      std::vector<float> scores(static_cast<size_t>(kv_len)), q_lat, q_pe;
#pragma omp for schedule(static)
      for (int64_t h = 0; h < p.n_heads; ++h) {
        const cpu::AttentionKeys keys{.k1 = latent.data(),
                                      .k1_stride = width,
                                      .d1 = p.kv_lora,  // c_kv
                                      .k2 = latent.data() + p.kv_lora,
                                      .k2_stride = width,
                                      .d2 = p.rope,  // k_pe
                                      .v = latent.data(),
                                      .v_stride = width,
                                      .dv = p.kv_lora};  // values: c_kv again
        const float* ql = p.q_lat + s * p.ld_q_lat + h * p.kv_lora;
        const float* qp = p.q_pe + s * p.ld_q_pe + h * p.q_pe_head_stride;
        if (round_q) {
          q_lat.assign(ql, ql + p.kv_lora);
          q_pe.assign(qp, qp + p.rope);
          if (f16_q_lat) {
            float amax = 0.0f;
            for (const float x : q_lat) amax = std::max(amax, std::fabs(x));
            const int32_t e = mla_f16_query_shift(amax);
            for (float& x : q_lat) x = std::ldexp(f16_to_f32(f32_to_f16(std::ldexp(x, e))), -e);
          } else {
            for (float& x : q_lat) x = bf16_to_f32(f32_to_bf16(x));
          }
          for (float& x : q_pe) x = bf16_to_f32(f32_to_bf16(x));
          ql = q_lat.data();
          qp = q_pe.data();
        }
        cpu::attention_one_query(p.out + s * p.ld_out + h * p.kv_lora, ql, qp, keys, kv_len, p.scale, scores.data());
      }
    }
  }
}

void gqa_attention(const GqaAttentionParams& p) {
  const VarlenBatch& b = p.batch;
  check_varlen(b, "gqa_attention");
  MLABENCH_CHECK(p.n_kv_heads > 0 && p.n_heads % p.n_kv_heads == 0,
                 "gqa_attention: n_heads {} is not a multiple of n_kv_heads {}. HINT: check the model config",
                 p.n_heads, p.n_kv_heads);
  const int64_t group = p.n_heads / p.n_kv_heads, hd = p.head_dim, width = int64_t{p.n_kv_heads} * hd;
  if (p.q_bf16 != nullptr && b.max_q > 1) {
    // BF16 queries (the kernel's prefill path): their exact float32 values, P rounded to BF16 on the GPU besides.
    const std::vector<float> q = widen_rows(p.q_bf16, b.cu_q[b.n_seqs], p.ld_q, int64_t{p.n_heads} * hd);
    GqaAttentionParams f = p;
    f.q_bf16 = nullptr;
    f.q = q.data();
    return gqa_attention(f);
  }
  for (int32_t s = 0; s < b.n_seqs; ++s) {
    const int64_t q0 = b.cu_q[s], q_len = b.cu_q[s + 1] - q0, kv_len = b.kv_len[s];
    if (q_len == 0) continue;
    const std::vector<float> k = gather_tokens(p.k_cache, p.cache_type, width, p.paged, s, kv_len, p.fp8_layout());
    const std::vector<float> v = gather_tokens(p.v_cache, p.cache_type, width, p.paged, s, kv_len, p.fp8_layout());
#pragma omp parallel if (q_len * p.n_heads * kv_len * hd >= (int64_t{1} << 20))
    {
      std::vector<float> scores(static_cast<size_t>(kv_len));
#pragma omp for collapse(2) schedule(static)
      for (int64_t i = 0; i < q_len; ++i)
        for (int64_t h = 0; h < p.n_heads; ++h) {
          const int64_t g = h / group;
          const cpu::AttentionKeys keys{.k1 = k.data() + g * hd,
                                        .k1_stride = width,
                                        .d1 = hd,
                                        .v = v.data() + g * hd,
                                        .v_stride = width,
                                        .dv = hd};
          cpu::attention_one_query(p.out + (q0 + i) * p.ld_out + h * hd, p.q + (q0 + i) * p.ld_q + h * hd, nullptr,
                                   keys, kv_len - q_len + i + 1, p.scale, scores.data());
        }
    }
  }
}

}  // namespace mlabench::kernels::twin
