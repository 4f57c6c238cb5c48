// Attention twins (engine/kernels/twin/attention.cpp) against softmax attention written out in double, on
// random varlen batches over shuffled paged BF16 pools whose unowned slots hold NaN; and absorbed MLA decode
// against decompressed MLA prefill built from the same latent cache and W_UK / W_UV (the identity MLA
// absorption rests on). An F32 pool holding the same values (the engine's float32 precision) gives the same outputs
// bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <tuple>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/kernels/twin/twin.h"
#include "tests/kernels/attention_test_util.h"
#include "mlabench/result.h"

namespace mlabench::kernels {
namespace {

using test::randn;
using Paged = test::PagedPool;
using Varlen = test::VarlenBuilder;

constexpr float kPoison = std::numeric_limits<float>::quiet_NaN();
// softmax(scale * q.k_j) weighted sum of v_j over the given keys, in double.
std::vector<double> naive(const std::vector<double>& q, const std::vector<std::vector<double>>& keys,
                          const std::vector<std::vector<double>>& values, double scale) {
  std::vector<double> s(keys.size());
  double mx = -INFINITY;
  for (size_t j = 0; j < keys.size(); ++j) {
    double dot = 0;
    for (size_t d = 0; d < q.size(); ++d) dot += q[d] * keys[j][d];
    s[j] = dot * scale;
    mx = std::max(mx, s[j]);
  }
  double sum = 0;
  for (double& x : s) sum += (x = std::exp(x - mx));
  std::vector<double> out(values.empty() ? 0 : values[0].size(), 0.0);
  for (size_t j = 0; j < keys.size(); ++j)
    for (size_t d = 0; d < out.size(); ++d) out[d] += s[j] / sum * values[j][d];
  return out;
}

// Same floats, NaNs included, bit for bit.
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void expect_close(const float* got, const std::vector<double>& want, double tol, const char* what) {
  for (size_t d = 0; d < want.size(); ++d)
    ASSERT_NEAR(got[d], want[d], tol * (1.0 + std::fabs(want[d]))) << what << " column " << d;
}

TEST(TwinAttention, MlaPrefillMatchesDoubleReference) {
  std::mt19937 rng(11);
  const int32_t nh = 3, nope = 8, rope = 4, v = 6;
  Varlen b;
  for (auto [q_len, kv] : {std::pair{1, 1}, {5, 5}, {3, 9}, {0, 4}, {7, 20}, {1, 13}}) b.add(q_len, kv);
  std::vector<int32_t> cu_kv{0};
  for (int32_t n : b.kv_len) cu_kv.push_back(cu_kv.back() + n);
  const int64_t rows = b.cu_q.back(), keys = cu_kv.back();
  const int64_t ld_q = nh * (nope + rope) + 2, ld_kv = nh * (nope + v) + 1, ld_kpe = rope + 3, ld_out = nh * v + 5;
  const auto q = randn(static_cast<size_t>(rows * ld_q), rng), kv = randn(static_cast<size_t>(keys * ld_kv), rng);
  const auto k_pe = randn(static_cast<size_t>(keys * ld_kpe), rng);
  std::vector<float> out(static_cast<size_t>(rows * ld_out), kPoison);
  MlaPrefillParams p;
  p.batch = b.view();
  p.cu_kv = cu_kv.data();
  p.q = q.data();
  p.ld_q = ld_q;
  p.kv = kv.data();
  p.ld_kv = ld_kv;
  p.k_pe = k_pe.data();
  p.ld_kpe = ld_kpe;
  p.out = out.data();
  p.ld_out = ld_out;
  p.n_heads = nh;
  p.nope = nope;
  p.rope = rope;
  p.v = v;
  p.scale = 0.37f;
  twin::mla_prefill_attention(p);

  for (size_t s = 0; s < b.kv_len.size(); ++s) {
    const int64_t q_len = b.cu_q[s + 1] - b.cu_q[s], kv_len = b.kv_len[s];
    for (int64_t i = 0; i < q_len; ++i)
      for (int32_t h = 0; h < nh; ++h) {
        const int64_t row = b.cu_q[s] + i;
        std::vector<double> qd(q.begin() + row * ld_q + h * (nope + rope),
                               q.begin() + row * ld_q + (h + 1) * (nope + rope));
        std::vector<std::vector<double>> ks, vs;
        for (int64_t j = 0; j <= kv_len - q_len + i; ++j) {  // causal
          const float* r = kv.data() + (cu_kv[s] + j) * ld_kv + h * (nope + v);
          std::vector<double> k(r, r + nope);
          for (int32_t d = 0; d < rope; ++d) k.push_back(k_pe[static_cast<size_t>((cu_kv[s] + j) * ld_kpe + d)]);
          ks.push_back(k);
          vs.emplace_back(r + nope, r + nope + v);
        }
        expect_close(out.data() + row * ld_out + h * v, naive(qd, ks, vs, p.scale), 1e-5, "mla prefill");
      }
  }
}

TEST(TwinAttention, MlaDecodeMatchesDoubleReferenceOnPagedCache) {
  std::mt19937 rng(12);
  const int32_t nh = 5, kv_lora = 16, rope = 8;
  const int64_t w = kv_lora + rope;
  for (int32_t bs : {1, 4, 16}) {
    const std::vector<int32_t> kv_len{1, 3, 16, 17, 40};
    Paged cache(kv_len, bs, w, rng);
    for (size_t s = 0; s < kv_len.size(); ++s)
      for (int32_t t = 0; t < kv_len[s]; ++t)
        for (int64_t c = 0; c < w; ++c) cache.at(s, t)[c] = f32_to_bf16(randn(1, rng)[0]);
    const int64_t n = static_cast<int64_t>(kv_len.size()), ld_q_lat = nh * kv_lora + 3, ld_q_pe = nh * 11 + 1;
    const auto q_lat = randn(static_cast<size_t>(n * ld_q_lat), rng);
    const auto q_pe = randn(static_cast<size_t>(n * ld_q_pe), rng);
    const int64_t ld_out = nh * kv_lora + 2;
    std::vector<float> out(static_cast<size_t>(n * ld_out), kPoison);
    MlaDecodeParams p;
    p.n_seqs = static_cast<int32_t>(n);
    p.kv_len = kv_len.data();
    p.max_kv = 40;
    p.paged = cache.view();
    p.cache = cache.pool.data();
    p.q_lat = q_lat.data();
    p.ld_q_lat = ld_q_lat;
    p.q_pe = q_pe.data();
    p.ld_q_pe = ld_q_pe;
    p.q_pe_head_stride = 11;  // q_pe heads interleaved with other columns, as in the q projection output
    p.out = out.data();
    p.ld_out = ld_out;
    p.n_heads = nh;
    p.kv_lora = kv_lora;
    p.rope = rope;
    p.scale = 0.21f;
    twin::mla_decode_attention(p);
    {
      const std::vector<float> wide = cache.widened();
      std::vector<float> out32(out.size(), kPoison);
      MlaDecodeParams p32 = p;
      p32.cache = wide.data();
      p32.cache_type = DType::F32;
      p32.out = out32.data();
      twin::mla_decode_attention(p32);
      EXPECT_TRUE(same_bits(out32, out)) << "F32 pool, block size " << bs;
    }
    {  // BF16 operands: exactly the float32 path on q rounded to BF16 (and ignored on an F32 pool)
      std::vector<float> q_lat_r = q_lat, q_pe_r = q_pe, out_b(out.size(), kPoison), out_r(out.size(), kPoison);
      for (float& x : q_lat_r) x = bf16_to_f32(f32_to_bf16(x));
      for (float& x : q_pe_r) x = bf16_to_f32(f32_to_bf16(x));
      MlaDecodeParams pb = p, pr = p;
      pb.bf16_operands = true;
      pb.out = out_b.data();
      twin::mla_decode_attention(pb);
      pr.q_lat = q_lat_r.data();
      pr.q_pe = q_pe_r.data();
      pr.out = out_r.data();
      twin::mla_decode_attention(pr);
      EXPECT_TRUE(same_bits(out_b, out_r)) << "BF16 operands, block size " << bs;
      EXPECT_FALSE(same_bits(out_b, out)) << "rounding q must change the result";
      const std::vector<float> wide = cache.widened();
      std::vector<float> out32(out.size(), kPoison);
      pb.cache = wide.data();
      pb.cache_type = DType::F32;
      pb.out = out32.data();
      twin::mla_decode_attention(pb);
      EXPECT_TRUE(same_bits(out32, out)) << "an F32 pool (float32 precision) keeps float32 q";
    }

    for (size_t s = 0; s < kv_len.size(); ++s)
      for (int32_t h = 0; h < nh; ++h) {
        std::vector<double> qd;
        for (int32_t d = 0; d < kv_lora; ++d) qd.push_back(q_lat[s * ld_q_lat + h * kv_lora + d]);
        for (int32_t d = 0; d < rope; ++d) qd.push_back(q_pe[s * ld_q_pe + h * 11 + d]);
        std::vector<std::vector<double>> ks, vs;
        for (int32_t t = 0; t < kv_len[s]; ++t) {
          std::vector<double> k;
          for (int64_t c = 0; c < w; ++c) k.push_back(bf16_to_f32(cache.at(s, t)[c]));
          vs.emplace_back(k.begin(), k.begin() + kv_lora);
          ks.push_back(std::move(k));
        }
        expect_close(out.data() + s * ld_out + h * kv_lora, naive(qd, ks, vs, p.scale), 1e-5, "mla decode");
      }
  }
}

TEST(TwinAttention, GqaMatchesDoubleReferenceOnPagedCache) {
  std::mt19937 rng(13);
  for (auto [nh, nkv, hd, bs] : {std::tuple{4, 2, 8, 4}, {6, 6, 4, 16}, {8, 1, 16, 1}}) {
    Varlen b;
    for (auto [q_len, kv] : {std::pair{1, 1}, {6, 6}, {1, 30}, {4, 19}, {0, 7}, {9, 9}}) b.add(q_len, kv);
    const int64_t w = int64_t{nkv} * hd;
    Paged kc(b.kv_len, bs, w, rng), vc(b.kv_len, bs, w, rng);
    vc.table = kc.table;  // one block table serves both pools
    for (size_t s = 0; s < b.kv_len.size(); ++s)
      for (int32_t t = 0; t < b.kv_len[s]; ++t)
        for (int64_t c = 0; c < w; ++c) {
          kc.at(s, t)[c] = f32_to_bf16(randn(1, rng)[0]);
          vc.at(s, t)[c] = f32_to_bf16(randn(1, rng)[0]);
        }
    const int64_t rows = b.cu_q.back(), ld_q = nh * hd + 1, ld_out = nh * hd + 3;
    const auto q = randn(static_cast<size_t>(rows * ld_q), rng);
    std::vector<float> out(static_cast<size_t>(rows * ld_out), kPoison);
    GqaAttentionParams p;
    p.batch = b.view();
    p.paged = kc.view();
    p.k_cache = kc.pool.data();
    p.v_cache = vc.pool.data();
    p.q = q.data();
    p.ld_q = ld_q;
    p.out = out.data();
    p.ld_out = ld_out;
    p.n_heads = nh;
    p.n_kv_heads = nkv;
    p.head_dim = hd;
    p.scale = 0.5f;
    twin::gqa_attention(p);
    {
      const std::vector<float> k32 = kc.widened(), v32 = vc.widened();
      std::vector<float> out32(out.size(), kPoison);
      GqaAttentionParams p32 = p;
      p32.k_cache = k32.data();
      p32.v_cache = v32.data();
      p32.cache_type = DType::F32;
      p32.out = out32.data();
      twin::gqa_attention(p32);
      EXPECT_TRUE(same_bits(out32, out)) << "F32 pools, heads " << nh << "/" << nkv;
    }

    for (size_t s = 0; s < b.kv_len.size(); ++s) {
      const int64_t q_len = b.cu_q[s + 1] - b.cu_q[s], kv_len = b.kv_len[s];
      for (int64_t i = 0; i < q_len; ++i)
        for (int32_t h = 0; h < nh; ++h) {
          const int64_t row = b.cu_q[s] + i, g = h / (nh / nkv);
          std::vector<double> qd(q.begin() + row * ld_q + h * hd, q.begin() + row * ld_q + (h + 1) * hd);
          std::vector<std::vector<double>> ks, vs;
          for (int64_t j = 0; j <= kv_len - q_len + i; ++j) {
            std::vector<double> k, v;
            for (int32_t d = 0; d < hd; ++d) {
              k.push_back(bf16_to_f32(kc.at(s, j)[g * hd + d]));
              v.push_back(bf16_to_f32(vc.at(s, j)[g * hd + d]));
            }
            ks.push_back(std::move(k));
            vs.push_back(std::move(v));
          }
          expect_close(out.data() + row * ld_out + h * hd, naive(qd, ks, vs, p.scale), 1e-5, "gqa");
        }
    }
  }
}

// Absorbed decode over the latent cache, then W_UV, equals decompressed prefill of the last token whose keys
// [W_UK c_j ; k_pe_j] and values W_UV c_j are rebuilt from the same latents: q_nope.(W_UK c) = (W_UK^T q_nope).c.
TEST(TwinAttention, MlaDecodeAbsorbedEqualsPrefillDecompressed) {
  std::mt19937 rng(14);
  const int32_t nh = 4, nope = 12, rope = 8, v = 10, kv_lora = 16;
  const int64_t w = kv_lora + rope;
  const std::vector<int32_t> kv_len{1, 7, 33};
  const int32_t n = static_cast<int32_t>(kv_len.size());
  Paged cache(kv_len, 8, w, rng);
  for (size_t s = 0; s < kv_len.size(); ++s)
    for (int32_t t = 0; t < kv_len[s]; ++t)
      for (int64_t c = 0; c < w; ++c) cache.at(s, t)[c] = f32_to_bf16(randn(1, rng)[0]);
  const auto w_uk = randn(static_cast<size_t>(nh * nope * kv_lora), rng, 0.3f);  // [nh, nope, kv_lora]
  const auto w_uv = randn(static_cast<size_t>(nh * v * kv_lora), rng, 0.3f);     // [nh, v, kv_lora]
  const auto q = randn(static_cast<size_t>(n * nh * (nope + rope)), rng);        // the last token's query

  // Decompressed prefill: one new row per sequence at its last position, keys rebuilt in double.
  std::vector<int32_t> cu_q{0}, cu_kv{0};
  for (int32_t s = 0; s < n; ++s) {
    cu_q.push_back(s + 1);
    cu_kv.push_back(cu_kv.back() + kv_len[s]);
  }
  const int64_t keys = cu_kv.back(), kvw = nope + v;
  std::vector<float> kv(static_cast<size_t>(keys * nh * kvw)), k_pe(static_cast<size_t>(keys * rope));
  for (int32_t s = 0; s < n; ++s)
    for (int32_t t = 0; t < kv_len[s]; ++t) {
      const uint16_t* c = cache.at(static_cast<size_t>(s), t);
      const int64_t key = cu_kv[s] + t;
      for (int32_t d = 0; d < rope; ++d) k_pe[static_cast<size_t>(key * rope + d)] = bf16_to_f32(c[kv_lora + d]);
      for (int32_t h = 0; h < nh; ++h)
        for (int32_t r = 0; r < kvw; ++r) {
          const float* wr = r < nope ? &w_uk[static_cast<size_t>((h * nope + r) * kv_lora)]
                                     : &w_uv[static_cast<size_t>((h * v + r - nope) * kv_lora)];
          double acc = 0;
          for (int32_t e = 0; e < kv_lora; ++e) acc += double{wr[e]} * bf16_to_f32(c[e]);
          kv[static_cast<size_t>(key * nh * kvw + h * kvw + r)] = static_cast<float>(acc);
        }
    }
  std::vector<float> out_prefill(static_cast<size_t>(n * nh * v), kPoison);
  MlaPrefillParams pp;
  pp.batch = {n, cu_q.data(), kv_len.data(), 1, 33};
  pp.cu_kv = cu_kv.data();
  pp.q = q.data();
  pp.ld_q = nh * (nope + rope);
  pp.kv = kv.data();
  pp.ld_kv = nh * kvw;
  pp.k_pe = k_pe.data();
  pp.ld_kpe = rope;
  pp.out = out_prefill.data();
  pp.ld_out = nh * v;
  pp.n_heads = nh;
  pp.nope = nope;
  pp.rope = rope;
  pp.v = v;
  pp.scale = 0.3f;
  twin::mla_prefill_attention(pp);

  // Absorbed decode: q_lat_h = W_UK_h^T q_nope_h; out_h = W_UV_h out_lat_h.
  std::vector<float> q_lat(static_cast<size_t>(n * nh * kv_lora));
  for (int32_t s = 0; s < n; ++s)
    for (int32_t h = 0; h < nh; ++h)
      for (int32_t e = 0; e < kv_lora; ++e) {
        double acc = 0;
        for (int32_t r = 0; r < nope; ++r)
          acc += double{w_uk[static_cast<size_t>((h * nope + r) * kv_lora + e)]} *
                 q[static_cast<size_t>(s * nh * (nope + rope) + h * (nope + rope) + r)];
        q_lat[static_cast<size_t>((s * nh + h) * kv_lora + e)] = static_cast<float>(acc);
      }
  std::vector<float> out_lat(static_cast<size_t>(n * nh * kv_lora), kPoison);
  MlaDecodeParams pd;
  pd.n_seqs = n;
  pd.kv_len = kv_len.data();
  pd.max_kv = 33;
  pd.paged = cache.view();
  pd.cache = cache.pool.data();
  pd.q_lat = q_lat.data();
  pd.ld_q_lat = nh * kv_lora;
  pd.q_pe = q.data() + nope;  // the rope part of each head of the same query
  pd.ld_q_pe = nh * (nope + rope);
  pd.q_pe_head_stride = nope + rope;
  pd.out = out_lat.data();
  pd.ld_out = nh * kv_lora;
  pd.n_heads = nh;
  pd.kv_lora = kv_lora;
  pd.rope = rope;
  pd.scale = pp.scale;
  twin::mla_decode_attention(pd);

  for (int32_t s = 0; s < n; ++s)
    for (int32_t h = 0; h < nh; ++h)
      for (int32_t r = 0; r < v; ++r) {
        double acc = 0;
        for (int32_t e = 0; e < kv_lora; ++e)
          acc += double{w_uv[static_cast<size_t>((h * v + r) * kv_lora + e)]} *
                 out_lat[static_cast<size_t>((s * nh + h) * kv_lora + e)];
        const double want = out_prefill[static_cast<size_t>((s * nh + h) * v + r)];
        ASSERT_NEAR(acc, want, 1e-4 * (1.0 + std::fabs(want))) << "seq " << s << " head " << h << " col " << r;
      }
}

TEST(TwinAttention, RejectsRowsBeyondTheCache) {
  Varlen b;
  b.add(3, 2);  // 3 new rows cannot sit in a cache of 2 tokens
  std::vector<int32_t> cu_kv{0, 2};
  std::vector<float> buf(64, 0.0f);
  MlaPrefillParams p;
  p.batch = b.view();
  p.cu_kv = cu_kv.data();
  p.q = p.kv = p.k_pe = buf.data();
  p.out = buf.data();
  p.n_heads = 1;
  p.nope = p.rope = p.v = 2;
  EXPECT_THROW(twin::mla_prefill_attention(p), Error);
}

}  // namespace
}  // namespace mlabench::kernels

// ---- the decode kernels' split-KV plan (kernel_params.h), host-only ------------------------------------------

namespace mlabench::kernels {
namespace {

TEST(DecodeSplitPlan, FillsWholeWavesAndStaysUnderTheScratchBound) {
  EXPECT_EQ(decode_kv_splits(1, 131072), 132);  // 1 x 128K: one wave of 132 CTAs
  EXPECT_EQ(decode_kv_splits(1, 262144), 132);  // the same step captured in a graph (max_kv = 2x)
  EXPECT_EQ(decode_kv_splits(64, 8192), 2);     // 64 x 8K: 128 CTAs
  EXPECT_EQ(decode_kv_splits(16, 32768), 8);    // 16 x 32K: 128 CTAs
  EXPECT_EQ(decode_kv_splits(128, 4096), 1);
  EXPECT_EQ(decode_kv_splits(256, 2048), 1);
  EXPECT_EQ(decode_kv_splits(1, 100), 1);  // too short to split
  for (int64_t n = 1; n <= 700; n += 3)
    for (int64_t kv : {1, 129, 1000, 8192, 131072, 262144}) {
      const int64_t s = decode_kv_splits(n, kv);
      EXPECT_GE(s, 1);
      EXPECT_LE(s, kAttnMaxSplits);
      if (s > 1) {
        EXPECT_LE(n * s, 2 * kAttnTargetCtas) << n << " CTAs, " << kv << " keys";  // the engine's scratch bound
        EXPECT_GE((kv + s - 1) / s, kDecodeMinSplitKeys) << n << " CTAs, " << kv << " keys";
      }
    }
}

TEST(DecodeSplitPlan, GqaDecodeScratchStaysUnderTheEngineBound) {
  for (auto [nh, nkv, hd] : {std::tuple{32, 8, 128}, {64, 8, 128}, {32, 32, 128}, {16, 4, 64}, {8, 8, 64}})
    for (int32_t n : {1, 2, 7, 16, 64, 100, 256, 1000})
      for (int32_t kv : {1, 4096, 131072}) {
        GqaAttentionParams p;
        p.batch.n_seqs = n;
        p.batch.max_q = 1;
        p.batch.max_kv = kv;
        p.n_heads = nh;
        p.n_kv_heads = nkv;
        p.head_dim = hd;
        ASSERT_TRUE(gqa_decode_applies(p));
        EXPECT_LE(gqa_attention_scratch_floats(p), 2 * kAttnTargetCtas * kGqaRowsPerCta * (hd + 2))
            << nh << "/" << nkv << " heads, " << n << " seqs, " << kv << " keys";
      }
  GqaAttentionParams wide;  // 16 query heads per KV head: the flash kernel
  wide.batch.max_q = 1;
  wide.n_heads = 32;
  wide.n_kv_heads = 2;
  wide.head_dim = 128;
  EXPECT_FALSE(gqa_decode_applies(wide));
}

// The batch-invariant plan (MlaDecodeParams::fixed_splits): a sequence's split length depends on its own key count
// and the kernel's tile only, never on the batch's sequence count or longest sequence; the grid the batch's longest
// sequence sizes covers every shorter one's splits; at least 2 splits, so every sequence is merged by the combine;
// and the scratch stays within the engine's fixed-plan bound (seqs x kFixedMaxSplits x heads x (dv + 2)).
TEST(DecodeSplitPlan, FixedPlanDependsOnTheSequenceAlone) {
  EXPECT_EQ(fixed_split_len(1, 64), kFixedSplitKeys);
  EXPECT_EQ(fixed_split_len(32768, 64), kFixedSplitKeys);    // 64 splits of 512
  EXPECT_EQ(fixed_split_len(131072, 64), 2048);              // past 32K: 64 splits of kv / 64
  EXPECT_EQ(fixed_split_len(131072 + 1, 64), 2048 + 64);     // rounded up to the tile
  EXPECT_EQ(fixed_kv_splits(1), 2);
  EXPECT_EQ(fixed_kv_splits(8192), 16);
  EXPECT_EQ(fixed_kv_splits(262144), kFixedMaxSplits);
  for (int tile : {16, 32, 64})
    for (int kv = 1; kv <= 300000; kv += kv < 2000 ? 37 : 4099) {
      const int len = fixed_split_len(kv, tile);
      EXPECT_EQ(len % tile, 0);
      const int64_t needed = (kv + len - 1) / len;
      EXPECT_LE(needed, kFixedMaxSplits) << kv;
      for (int64_t max_kv : {int64_t{kv}, int64_t{kv} + 1000, 2 * int64_t{kv}})  // any longer batch-mate covers it
        EXPECT_LE(needed, fixed_kv_splits(max_kv)) << kv << " keys in a batch whose longest has " << max_kv;
    }
  for (int32_t n : {1, 3, 64, 256})
    for (int32_t kv : {1, 8192, 131072, 262144}) {
      MlaDecodeParams p;
      p.n_seqs = n;
      p.max_kv = kv;
      p.n_heads = 16;
      p.kv_lora = 512;
      p.fixed_splits = true;
      EXPECT_GE(mla_decode_splits(p), 2);
      EXPECT_LE(mla_decode_scratch_floats(p), int64_t{n} * kFixedMaxSplits * 16 * (512 + 2));
      GqaAttentionParams g;
      g.batch.n_seqs = n;
      g.batch.max_q = 1;
      g.batch.max_kv = kv;
      g.n_heads = 32;
      g.n_kv_heads = 8;
      g.head_dim = 128;
      g.fixed_splits = true;
      EXPECT_EQ(gqa_attention_splits(g), mla_decode_splits(p));
      EXPECT_LE(gqa_attention_scratch_floats(g), int64_t{n} * kFixedMaxSplits * 32 * (128 + 2));
      g.batch.max_q = 7;  // a prefill chunk: no split under the fixed plan
      EXPECT_EQ(gqa_attention_splits(g), 1);
    }
}

TEST(DecodeSplitPlan, MlaScratchStaysUnderTheEngineBound) {
  for (int32_t nh : {16, 20, 128})
    for (int32_t n : {1, 3, 64, 256, 1000})
      for (int32_t kv : {1, 8192, 131072}) {
        MlaDecodeParams p;
        p.n_seqs = n;
        p.max_kv = kv;
        p.n_heads = nh;
        p.kv_lora = 512;
        EXPECT_LE(mla_decode_scratch_floats(p), 2 * kAttnTargetCtas * kMlaDecodeHeads * (512 + 2));
      }
}

}  // namespace
}  // namespace mlabench::kernels
