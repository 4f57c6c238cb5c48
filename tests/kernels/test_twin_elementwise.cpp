// Twins of the elementwise kernels (engine/kernels/twin/elementwise.cpp) against the CPU reference ops
// (cpu::embedding, cpu::rms_norm, cpu::rope with rope.h tables, cpu::silu_mul), the dtype conversions of
// engine/core/dtype.h, and naive loops for the paged cache (a round trip through a pool with shuffled blocks).
// Randomised shapes from fixed seeds; every output buffer's padding is poisoned with NaN and must stay so.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "engine/kernels/cpu/ops.h"
#include "engine/kernels/twin/twin.h"
#include "engine/model/config.h"
#include "engine/model/rope.h"
#include "tests/test_util.h"

namespace mlabench::kernels {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr uint16_t kBf16NaN = 0x7fc0;

std::vector<float> randn(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

int64_t rand_in(std::mt19937& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

// 16-bit float patterns at most one representable value apart (same sign): the only difference a float32
// rounding difference upstream of the final conversion can make.
bool within_one_ulp(uint16_t a, uint16_t b) {
  if ((a & 0x8000u) != (b & 0x8000u)) return (a & 0x7fffu) == 0 && (b & 0x7fffu) == 0;
  return std::abs(static_cast<int>(a) - static_cast<int>(b)) <= 1;
}

uint16_t to_half_bits(DType t, float x) { return t == DType::BF16 ? f32_to_bf16(x) : f32_to_f16(x); }

template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// ---- embedding -------------------------------------------------------------------------------------------

TEST(TwinElementwise, EmbeddingMatchesCpuEmbedding) {
  std::mt19937 rng(11);
  for (DType t : {DType::F32, DType::BF16, DType::F16}) {
    for (int trial = 0; trial < 6; ++trial) {
      const int64_t vocab = rand_in(rng, 1, 300), hidden = trial == 0 ? 1 : rand_in(rng, 1, 200);
      const int64_t n_rows = rand_in(rng, 1, 40);
      const std::vector<float> f = randn(static_cast<size_t>(vocab * hidden), rng);
      std::vector<uint16_t> half(f.size());
      for (size_t i = 0; i < f.size(); ++i) half[i] = t == DType::F32 ? 0 : to_half_bits(t, f[i]);
      const void* data = t == DType::F32 ? static_cast<const void*>(f.data()) : half.data();
      std::vector<int32_t> ids(static_cast<size_t>(n_rows));
      for (auto& id : ids) id = static_cast<int32_t>(rand_in(rng, 0, vocab - 1));

      std::vector<float> ref(static_cast<size_t>(n_rows * hidden), kNaN), out(ref.size() + 5, kNaN);
      cpu::embedding(ref.data(), TensorView{t, {vocab, hidden}, data}, ids.data(), n_rows);
      EmbeddingParams p;
      p.out = out.data();
      p.table = data;
      p.table_type = t;
      p.hidden = hidden;
      p.ids = ids.data();
      p.n_rows = n_rows;
      twin::embedding(p);
      for (size_t i = 0; i < ref.size(); ++i) ASSERT_TRUE(same_bits(out[i], ref[i])) << dtype_name(t) << " " << i;
      for (size_t i = ref.size(); i < out.size(); ++i) EXPECT_TRUE(std::isnan(out[i])) << "wrote past the rows";
    }
  }
}

// ---- rms_norm --------------------------------------------------------------------------------------------

struct RmsCase {
  int64_t n_rows, dim, ld_res, ld_delta, ld_out;
  bool with_delta;
};

TEST(TwinElementwise, RmsNormMatchesCpuRmsNorm) {
  std::mt19937 rng(22);
  std::vector<RmsCase> cases = {{1, 1, 1, 1, 1, false}, {3, 5120, 5120, 5120, 5120, true}, {2, 512, 576, 600, 513, true}};
  for (int i = 0; i < 8; ++i) {
    const int64_t dim = rand_in(rng, 1, 700);
    cases.push_back({rand_in(rng, 1, 9), dim, dim + rand_in(rng, 0, 9), dim + rand_in(rng, 0, 9),
                     dim + rand_in(rng, 0, 9), i % 2 == 0});
  }
  for (DType t : {DType::F32, DType::BF16, DType::F16}) {
    for (const RmsCase& c : cases) {
      SCOPED_TRACE(testing::Message() << dtype_name(t) << " rows " << c.n_rows << " dim " << c.dim << " delta "
                                      << c.with_delta);
      std::vector<float> residual = randn(static_cast<size_t>(c.n_rows * c.ld_res), rng, 3.0f);
      const std::vector<float> delta = randn(static_cast<size_t>(c.n_rows * c.ld_delta), rng);
      const std::vector<float> weight = randn(static_cast<size_t>(c.dim), rng);
      const float eps = 1e-6f;

      // Reference: residual + delta by hand, then cpu::rms_norm (which sums squares in double).
      std::vector<float> summed = residual;
      if (c.with_delta)
        for (int64_t r = 0; r < c.n_rows; ++r)
          for (int64_t k = 0; k < c.dim; ++k) summed[r * c.ld_res + k] += delta[r * c.ld_delta + k];
      std::vector<float> ref(static_cast<size_t>(c.n_rows * c.dim));
      cpu::rms_norm(ref.data(), c.dim, summed.data(), c.ld_res, weight.data(), c.n_rows, c.dim, eps);

      const size_t esz = dtype_size(t);
      std::vector<float> out_f32(static_cast<size_t>(c.n_rows * c.ld_out), kNaN);
      std::vector<uint16_t> out_half(static_cast<size_t>(c.n_rows * c.ld_out), 0x7e00);
      RmsNormParams p;
      p.residual = residual.data();
      p.ld_residual = c.ld_res;
      p.delta = c.with_delta ? delta.data() : nullptr;
      p.ld_delta = c.ld_delta;
      p.out = esz == 4 ? static_cast<void*>(out_f32.data()) : out_half.data();
      p.out_type = t;
      p.ld_out = c.ld_out;
      p.weight = weight.data();
      p.n_rows = c.n_rows;
      p.dim = c.dim;
      p.eps = eps;
      twin::rms_norm(p);

      // The fused add is one float32 addition per element: exact. Padding of the rows untouched.
      for (size_t i = 0; i < summed.size(); ++i) ASSERT_TRUE(same_bits(residual[i], summed[i])) << i;
      for (int64_t r = 0; r < c.n_rows; ++r)
        for (int64_t k = 0; k < c.ld_out; ++k) {
          const size_t o = static_cast<size_t>(r * c.ld_out + k);
          if (k >= c.dim) {
            EXPECT_TRUE(t == DType::F32 ? std::isnan(out_f32[o]) : out_half[o] == 0x7e00) << "padding written";
            continue;
          }
          const float want = ref[static_cast<size_t>(r * c.dim + k)];
          if (t == DType::F32) {
            // float32 vs double sum of squares: relative error of the scale ~ sqrt(dim) * 2^-24, far below 2e-5.
            ASSERT_NEAR(out_f32[o], want, 2e-5 * std::fabs(want) + 1e-30) << r << "," << k;
          } else {
            ASSERT_TRUE(within_one_ulp(out_half[o], to_half_bits(t, want)))
                << r << "," << k << ": " << out_half[o] << " vs " << to_half_bits(t, want);
          }
        }
    }
  }
}

TEST(TwinElementwise, RmsNormInPlace) {
  std::mt19937 rng(23);
  const int64_t n_rows = 4, dim = 96, ld = 100;
  std::vector<float> x = randn(static_cast<size_t>(n_rows * ld), rng);
  const std::vector<float> delta = randn(static_cast<size_t>(n_rows * dim), rng);
  const std::vector<float> weight = randn(static_cast<size_t>(dim), rng);
  std::vector<float> x2 = x, separate(static_cast<size_t>(n_rows * ld), kNaN);
  RmsNormParams p;
  p.residual = x.data();
  p.ld_residual = ld;
  p.delta = delta.data();
  p.ld_delta = dim;
  p.out = x.data();
  p.ld_out = ld;
  p.weight = weight.data();
  p.n_rows = n_rows;
  p.dim = dim;
  twin::rms_norm(p);
  p.residual = x2.data();
  p.out = separate.data();
  twin::rms_norm(p);
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t k = 0; k < dim; ++k) ASSERT_TRUE(same_bits(x[r * ld + k], separate[r * ld + k]));
}

// residual_out: residual + delta lands there, bit for bit the in-place sum, and the residual is only read; out is
// the in-place run's. The check refuses residual_out without delta and one that aliases another operand.
TEST(TwinElementwise, RmsNormResidualOutIsTheInPlaceSumElsewhere) {
  std::mt19937 rng(25);
  const int64_t n_rows = 3, dim = 80, ld = 84, ld_res_out = 90;
  const std::vector<float> x0 = randn(static_cast<size_t>(n_rows * ld), rng);
  const std::vector<float> delta = randn(static_cast<size_t>(n_rows * dim), rng);
  const std::vector<float> weight = randn(static_cast<size_t>(dim), rng);
  std::vector<float> in_place = x0, x = x0, sum(static_cast<size_t>(n_rows * ld_res_out), kNaN);
  std::vector<float> out_in_place(static_cast<size_t>(n_rows * dim)), out(out_in_place.size());
  RmsNormParams p{.residual = in_place.data(), .ld_residual = ld, .delta = delta.data(), .ld_delta = dim,
                  .out = out_in_place.data(), .ld_out = dim, .weight = weight.data(), .n_rows = n_rows, .dim = dim};
  twin::rms_norm(p);
  p.residual = x.data();
  p.out = out.data();
  p.residual_out = sum.data();
  p.ld_residual_out = ld_res_out;
  twin::rms_norm(p);
  EXPECT_EQ(std::memcmp(x.data(), x0.data(), x.size() * 4), 0) << "the residual was written";
  for (int64_t r = 0; r < n_rows; ++r) {
    for (int64_t k = 0; k < dim; ++k) {
      ASSERT_TRUE(same_bits(sum[r * ld_res_out + k], in_place[r * ld + k])) << r << "," << k;
      ASSERT_TRUE(same_bits(out[r * dim + k], out_in_place[r * dim + k])) << r << "," << k;
    }
    for (int64_t k = dim; k < ld_res_out; ++k) ASSERT_TRUE(std::isnan(sum[r * ld_res_out + k])) << "padding written";
  }
  RmsNormParams bad = p;
  bad.delta = nullptr;
  EXPECT_THROW(twin::rms_norm(bad), Error) << "residual_out without delta";
  bad = p;
  bad.residual_out = x.data();
  EXPECT_THROW(twin::rms_norm(bad), Error) << "residual_out aliasing residual";
  bad = p;
  bad.residual_out = out.data();
  EXPECT_THROW(twin::rms_norm(bad), Error) << "residual_out aliasing out";
}

// out2: the second copy in another type is out's values rounded to that type, and out is unchanged by asking for it.
TEST(TwinElementwise, RmsNormSecondOutputIsTheFirstRounded) {
  std::mt19937 rng(24);
  const int64_t n_rows = 3, dim = 64, ld2 = 70;
  const std::vector<float> x0 = randn(static_cast<size_t>(n_rows * dim), rng);
  const std::vector<float> weight = randn(static_cast<size_t>(dim), rng);
  std::vector<float> x = x0, x_alone = x0, out(static_cast<size_t>(n_rows * dim)), alone(out.size());
  std::vector<uint16_t> out2(static_cast<size_t>(n_rows * ld2), 0xFFFF);
  RmsNormParams p{.residual = x.data(), .ld_residual = dim, .out = out.data(), .ld_out = dim, .weight = weight.data(),
                  .n_rows = n_rows, .dim = dim, .out2 = out2.data(), .out2_type = DType::BF16, .ld_out2 = ld2};
  twin::rms_norm(p);
  p.residual = x_alone.data();
  p.out = alone.data();
  p.out2 = nullptr;
  twin::rms_norm(p);
  for (int64_t r = 0; r < n_rows; ++r) {
    for (int64_t k = 0; k < dim; ++k) {
      ASSERT_TRUE(same_bits(out[r * dim + k], alone[r * dim + k])) << r << "," << k;
      ASSERT_EQ(out2[r * ld2 + k], to_half_bits(DType::BF16, out[r * dim + k])) << r << "," << k;
    }
    for (int64_t k = dim; k < ld2; ++k) ASSERT_EQ(out2[r * ld2 + k], 0xFFFF) << "padding written at " << r << "," << k;
  }
  // out2 may not alias out.
  p.out = out.data();
  p.out2 = out.data();
  EXPECT_THROW(twin::rms_norm(p), std::exception);
}

// latent_append against the CPU reference engine's ops on DeepSeek-V2-Lite's tables: the latent normalised then
// weighted, k_pe and every q head's rope columns rotated, the row in the cache at its slot (BF16), other slots and q's
// other columns untouched; n_heads 0 leaves q alone; the check refuses a row narrower than the cache's.
TEST(TwinElementwise, LatentAppendIsNormRopeAndCacheWrite) {
  std::mt19937 rng(34);
  const RopeTables tables = rope_tables(load_config(test::preset_dir("deepseek-v2-lite")));
  const int64_t kvl = 512, rd = tables.dim, half = rd / 2, cw = kvl + rd, nh = 2, qk = 128 + rd, n_rows = 3,
                n_pos = 300, n_slots = 8;
  std::vector<float> cos(static_cast<size_t>(n_pos * half)), sin(cos.size());
  for (int64_t pos = 0; pos < n_pos; ++pos) rope_cos_sin(tables, pos, cos.data() + pos * half, sin.data() + pos * half);
  const std::vector<int32_t> positions = {0, 299, 17};
  const std::vector<int64_t> slots = {5, 0, 6};
  const std::vector<float> latent0 = randn(static_cast<size_t>(n_rows * cw), rng, 3.0f);
  const std::vector<float> q0 = randn(static_cast<size_t>(n_rows * nh * qk), rng);
  const std::vector<float> weight = randn(static_cast<size_t>(kvl), rng);
  std::vector<float> latent = latent0, q = q0;
  std::vector<uint16_t> cache(static_cast<size_t>(n_slots * cw), 0xFFFF);
  LatentAppendParams p{.latent = latent.data(), .ld = cw, .kv_lora = kvl, .rope_dim = rd, .norm_weight = weight.data(),
                       .eps = 1e-6f, .q = q.data(), .ld_q = nh * qk, .n_heads = nh, .q_head_stride = qk,
                       .q_rope_offset = 128, .interleaved = tables.interleaved, .cos = cos.data(), .sin = sin.data(),
                       .positions = positions.data(), .cache = cache.data(), .slots = slots.data(), .n_rows = n_rows};
  twin::latent_append(p);
  for (int64_t r = 0; r < n_rows; ++r) {
    std::vector<float> want(static_cast<size_t>(cw));
    cpu::rms_norm(want.data(), cw, latent0.data() + r * cw, cw, weight.data(), 1, kvl, 1e-6f);
    std::copy(latent0.begin() + r * cw + kvl, latent0.begin() + (r + 1) * cw, want.begin() + kvl);
    const float* cs = cos.data() + positions[static_cast<size_t>(r)] * half;
    const float* sn = sin.data() + positions[static_cast<size_t>(r)] * half;
    cpu::rope(want.data() + kvl, rd, cs, sn, tables.interleaved);
    for (int64_t c = 0; c < cw; ++c) {
      ASSERT_NEAR(latent[static_cast<size_t>(r * cw + c)], want[static_cast<size_t>(c)],
                  2e-5 * std::fabs(want[static_cast<size_t>(c)]) + 1e-30) << r << "," << c;
      ASSERT_EQ(cache[static_cast<size_t>(slots[static_cast<size_t>(r)] * cw + c)],
                f32_to_bf16(latent[static_cast<size_t>(r * cw + c)])) << r << "," << c;
    }
    for (int64_t h = 0; h < nh; ++h) {
      std::vector<float> qh(q0.begin() + r * nh * qk + h * qk, q0.begin() + r * nh * qk + (h + 1) * qk);
      cpu::rope(qh.data() + 128, rd, cs, sn, tables.interleaved);
      for (int64_t c = 0; c < qk; ++c)
        ASSERT_TRUE(same_bits(q[static_cast<size_t>(r * nh * qk + h * qk + c)], qh[static_cast<size_t>(c)]))
            << r << "," << h << "," << c;
    }
  }
  for (int64_t slot : {1, 2, 3, 4, 7})
    for (int64_t c = 0; c < cw; ++c) ASSERT_EQ(cache[static_cast<size_t>(slot * cw + c)], 0xFFFF) << slot;
  std::vector<float> q_alone = q0;
  p.q = q_alone.data();
  p.n_heads = 0;
  latent = latent0;
  p.latent = latent.data();
  twin::latent_append(p);
  EXPECT_EQ(q_alone, q0);
  p.ld = cw - 1;
  EXPECT_THROW(twin::latent_append(p), std::exception);
}

// kv_append against the CPU reference engine's RoPE on Llama-3-8B's tables (GQA, 4 q heads and 2 kv heads here):
// every q and k head rotated in place, v untouched, the rotated k heads and the v heads in their pools at the row's
// slot (BF16), other slots untouched; the check refuses a rope wider than a head and a row narrower than q, k, v.
TEST(TwinElementwise, KvAppendIsRopeAndTwoCacheWrites) {
  std::mt19937 rng(35);
  const RopeTables tables = rope_tables(load_config(test::preset_dir("llama-3-8b")));
  const int64_t hd = tables.dim, half = hd / 2, nh = 4, nkv = 2, kvw = nkv * hd, W = (nh + 2 * nkv) * hd;
  const int64_t n_rows = 3, n_pos = 300, n_slots = 8;
  std::vector<float> cos(static_cast<size_t>(n_pos * half)), sin(cos.size());
  for (int64_t pos = 0; pos < n_pos; ++pos) rope_cos_sin(tables, pos, cos.data() + pos * half, sin.data() + pos * half);
  const std::vector<int32_t> positions = {0, 299, 17};
  const std::vector<int64_t> slots = {5, 0, 6};
  const std::vector<float> qkv0 = randn(static_cast<size_t>(n_rows * W), rng, 3.0f);
  std::vector<float> qkv = qkv0;
  std::vector<uint16_t> k_cache(static_cast<size_t>(n_slots * kvw), 0xFFFF), v_cache = k_cache;
  KvAppendParams p{.qkv = qkv.data(), .ld = W, .n_heads = nh, .n_kv_heads = nkv, .head_dim = hd, .rope_dim = hd,
                   .interleaved = tables.interleaved, .cos = cos.data(), .sin = sin.data(),
                   .positions = positions.data(), .k_cache = k_cache.data(), .v_cache = v_cache.data(),
                   .slots = slots.data(), .n_rows = n_rows};
  twin::kv_append(p);
  for (int64_t r = 0; r < n_rows; ++r) {
    std::vector<float> want(qkv0.begin() + r * W, qkv0.begin() + (r + 1) * W);
    const float* cs = cos.data() + positions[static_cast<size_t>(r)] * half;
    const float* sn = sin.data() + positions[static_cast<size_t>(r)] * half;
    for (int64_t h = 0; h < nh + nkv; ++h) cpu::rope(want.data() + h * hd, hd, cs, sn, tables.interleaved);
    for (int64_t c = 0; c < W; ++c)
      ASSERT_TRUE(same_bits(qkv[static_cast<size_t>(r * W + c)], want[static_cast<size_t>(c)])) << r << "," << c;
    const auto slot = static_cast<size_t>(slots[static_cast<size_t>(r)]);
    for (int64_t c = 0; c < kvw; ++c) {
      ASSERT_EQ(k_cache[slot * kvw + static_cast<size_t>(c)], f32_to_bf16(want[static_cast<size_t>(nh * hd + c)]))
          << r << "," << c;
      const float v = qkv0[static_cast<size_t>(r * W + (nh + nkv) * hd + c)];
      ASSERT_EQ(v_cache[slot * kvw + static_cast<size_t>(c)], f32_to_bf16(v)) << r << "," << c;
    }
  }
  for (int64_t slot : {1, 2, 3, 4, 7})
    for (int64_t c = 0; c < kvw; ++c) {
      ASSERT_EQ(k_cache[static_cast<size_t>(slot * kvw + c)], 0xFFFF) << slot;
      ASSERT_EQ(v_cache[static_cast<size_t>(slot * kvw + c)], 0xFFFF) << slot;
    }
  p.rope_dim = hd + 2;
  EXPECT_THROW(twin::kv_append(p), std::exception);
  p.rope_dim = hd;
  p.ld = W - 1;
  EXPECT_THROW(twin::kv_append(p), std::exception);
}

// ---- rope ------------------------------------------------------------------------------------------------

struct RopeCase {
  const char* preset;
  int64_t n_rows, n_heads, head_stride, offset, ld;
};

TEST(TwinElementwise, RopeMatchesCpuRopeWithModelTables) {
  std::mt19937 rng(33);
  // DeepSeek q (3 heads of nope 128 + rope 64), DeepSeek k_pe after the 512 latent values, Llama q/k heads.
  const RopeCase cases[] = {{"deepseek-v2", 5, 3, 192, 128, 3 * 192},
                            {"deepseek-v2", 7, 1, 0, 512, 576},
                            {"deepseek-v2-lite", 1, 2, 200, 3, 405},
                            {"llama-3-8b", 4, 4, 128, 0, 512},
                            {"llama-2-7b", 3, 2, 130, 1, 270}};
  for (const RopeCase& c : cases) {
    SCOPED_TRACE(c.preset);
    const RopeTables tables = rope_tables(load_config(test::preset_dir(c.preset)));
    const int64_t dim = tables.dim, half = dim / 2, n_pos = 5000;
    std::vector<float> cos(static_cast<size_t>(n_pos * half)), sin(cos.size());
    for (int64_t pos = 0; pos < n_pos; ++pos)
      rope_cos_sin(tables, pos, cos.data() + pos * half, sin.data() + pos * half);
    std::vector<int32_t> positions(static_cast<size_t>(c.n_rows));
    for (auto& pos : positions) pos = static_cast<int32_t>(rand_in(rng, 0, n_pos - 1));
    positions[0] = 0;

    std::vector<float> x = randn(static_cast<size_t>(c.n_rows * c.ld), rng);
    std::vector<float> ref = x;
    for (int64_t r = 0; r < c.n_rows; ++r)
      for (int64_t h = 0; h < c.n_heads; ++h)
        cpu::rope(ref.data() + r * c.ld + h * c.head_stride + c.offset, dim, cos.data() + positions[r] * half,
                  sin.data() + positions[r] * half, tables.interleaved);

    RopeParams p;
    p.x = x.data();
    p.ld = c.ld;
    p.n_rows = c.n_rows;
    p.n_heads = c.n_heads;
    p.head_stride = c.head_stride;
    p.offset = c.offset;
    p.dim = dim;
    p.interleaved = tables.interleaved;
    p.cos = cos.data();
    p.sin = sin.data();
    p.positions = positions.data();
    twin::rope(p);
    // Same float32 expressions in the same order: identical bits, and untouched values outside the heads' ranges.
    for (size_t i = 0; i < x.size(); ++i) ASSERT_TRUE(same_bits(x[i], ref[i])) << i;
  }
}

// ---- silu_mul, cast ----------------------------------------------------------------------------------------

TEST(TwinElementwise, SiluMulMatchesCpuSiluMul) {
  std::mt19937 rng(44);
  for (DType t : {DType::F32, DType::BF16, DType::F16}) {
    for (int trial = 0; trial < 5; ++trial) {
      const int64_t inter = trial == 0 ? 1 : rand_in(rng, 1, 400), n_rows = rand_in(rng, 1, 8);
      const int64_t ld_in = 2 * inter + rand_in(rng, 0, 5), ld_out = inter + rand_in(rng, 0, 5);
      const std::vector<float> gate_up = randn(static_cast<size_t>(n_rows * ld_in), rng, 4.0f);
      std::vector<float> out_f32(static_cast<size_t>(n_rows * ld_out), kNaN);
      std::vector<uint16_t> out_half(out_f32.size(), 0x7e00);
      SiluMulParams p;
      p.out = t == DType::F32 ? static_cast<void*>(out_f32.data()) : out_half.data();
      p.out_type = t;
      p.ld_out = ld_out;
      p.gate_up = gate_up.data();
      p.ld_in = ld_in;
      p.inter = inter;
      p.n_rows = n_rows;
      twin::silu_mul(p);
      std::vector<float> ref(static_cast<size_t>(inter));
      for (int64_t r = 0; r < n_rows; ++r) {
        cpu::silu_mul(ref.data(), gate_up.data() + r * ld_in, gate_up.data() + r * ld_in + inter, inter);
        for (int64_t k = 0; k < ld_out; ++k) {
          const size_t o = static_cast<size_t>(r * ld_out + k);
          if (k >= inter)
            EXPECT_TRUE(t == DType::F32 ? std::isnan(out_f32[o]) : out_half[o] == 0x7e00) << "padding written";
          else if (t == DType::F32)
            ASSERT_TRUE(same_bits(out_f32[o], ref[static_cast<size_t>(k)])) << r << "," << k;
          else
            ASSERT_EQ(out_half[o], to_half_bits(t, ref[static_cast<size_t>(k)])) << r << "," << k;
        }
      }
    }
  }
}

TEST(TwinElementwise, CastRoundsToNearestEven) {
  // Hand-checked values: ties, overflow, subnormals, infinities and NaN.
  const std::vector<float> in = {1.0f,
                                 1.00390625f,  // 1 + 2^-8: bf16 tie, to even 1.0
                                 1.01171875f,  // 1 + 3 * 2^-8: bf16 tie, to even 1 + 2^-6
                                 -2.5f,
                                 65519.0f,  // f16: rounds down to 65504
                                 65520.0f,  // f16: rounds up to inf
                                 std::ldexp(1.0f, -25),      // f16: tie between 0 and the smallest subnormal
                                 std::ldexp(3.0f, -25),      // f16: tie, to even 2 * 2^-24
                                 std::numeric_limits<float>::infinity(),
                                 -std::numeric_limits<float>::infinity(),
                                 kNaN,
                                 0.0f};
  const uint16_t want_bf16[] = {0x3f80, 0x3f80, 0x3f82, 0xc020, 0x4780, 0x4780, 0x3300, 0x33c0,
                                0x7f80, 0xff80, 0,      0};
  const uint16_t want_f16[] = {0x3c00, 0x3c04, 0x3c0c, 0xc100, 0x7bff, 0x7c00, 0x0000, 0x0002,
                               0x7c00, 0xfc00, 0,      0};
  const int64_t n = static_cast<int64_t>(in.size());
  for (DType t : {DType::BF16, DType::F16}) {
    std::vector<uint16_t> out(in.size());
    CastParams p;
    p.out = out.data();
    p.out_type = t;
    p.ld_out = n;
    p.in = in.data();
    p.ld_in = n;
    p.n_rows = 1;
    p.n_cols = n;
    twin::cast(p);
    for (size_t i = 0; i < in.size(); ++i) {
      if (std::isnan(in[i])) {
        EXPECT_TRUE(std::isnan(t == DType::BF16 ? bf16_to_f32(out[i]) : f16_to_f32(out[i]))) << "NaN lost";
        continue;
      }
      EXPECT_EQ(out[i], t == DType::BF16 ? want_bf16[i] : want_f16[i]) << dtype_name(t) << " of " << in[i];
    }
  }
}

TEST(TwinElementwise, CastStridedRowsMatchDtypeConversions) {
  std::mt19937 rng(55);
  for (DType t : {DType::F32, DType::BF16, DType::F16}) {
    const int64_t n_rows = rand_in(rng, 1, 9), n_cols = rand_in(rng, 1, 300);
    const int64_t ld_in = n_cols + rand_in(rng, 0, 7), ld_out = n_cols + rand_in(rng, 1, 7);
    const std::vector<float> in = randn(static_cast<size_t>(n_rows * ld_in), rng, 100.0f);
    std::vector<float> out_f32(static_cast<size_t>(n_rows * ld_out), kNaN);
    std::vector<uint16_t> out_half(out_f32.size(), 0x7e00);
    CastParams p;
    p.out = t == DType::F32 ? static_cast<void*>(out_f32.data()) : out_half.data();
    p.out_type = t;
    p.ld_out = ld_out;
    p.in = in.data();
    p.ld_in = ld_in;
    p.n_rows = n_rows;
    p.n_cols = n_cols;
    twin::cast(p);
    for (int64_t r = 0; r < n_rows; ++r)
      for (int64_t k = 0; k < ld_out; ++k) {
        const size_t o = static_cast<size_t>(r * ld_out + k);
        const bool pad = k >= n_cols;
        const float x = pad ? 0.0f : in[static_cast<size_t>(r * ld_in + k)];
        if (t == DType::F32)
          ASSERT_TRUE(pad ? std::isnan(out_f32[o]) : same_bits(out_f32[o], x)) << r << "," << k;
        else
          ASSERT_EQ(out_half[o], pad ? 0x7e00 : to_half_bits(t, x)) << dtype_name(t) << " " << r << "," << k;
      }
  }
}

// The float32 precision widens every stored weight on the device: BF16/F16 -> F32 must be exact, and a narrow
// input cast to another narrow type goes through float32 (one rounding).
TEST(TwinElementwise, CastWidensStoredTypesExactly) {
  std::mt19937 rng(56);
  std::vector<uint16_t> in(777);
  for (auto& v : in) v = static_cast<uint16_t>(rng());
  for (DType from : {DType::BF16, DType::F16}) {
    auto widen = [&](uint16_t h) { return from == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h); };
    std::vector<float> out(in.size(), kNaN);
    CastParams p;
    p.out = out.data();
    p.out_type = DType::F32;
    p.ld_out = static_cast<int64_t>(in.size());
    p.in = in.data();
    p.in_type = from;
    p.ld_in = p.ld_out;
    p.n_rows = 1;
    p.n_cols = p.ld_out;
    twin::cast(p);
    for (size_t i = 0; i < in.size(); ++i) {
      const float want = widen(in[i]);
      if (std::isnan(want))
        ASSERT_TRUE(std::isnan(out[i])) << dtype_name(from) << " NaN " << in[i] << " lost";
      else
        ASSERT_TRUE(same_bits(out[i], want)) << dtype_name(from) << " bits " << in[i];
    }
    const DType to = from == DType::BF16 ? DType::F16 : DType::BF16;
    std::vector<uint16_t> narrow(in.size());
    p.out = narrow.data();
    p.out_type = to;
    twin::cast(p);
    for (size_t i = 0; i < in.size(); ++i)
      if (!std::isnan(widen(in[i]))) {
        ASSERT_EQ(narrow[i], to_half_bits(to, widen(in[i]))) << dtype_name(from);
      }
  }
}

// ---- paged cache -----------------------------------------------------------------------------------------

// The float32 precision's F32 pool keeps every bit of what is written; slots no token owns stay untouched.
TEST(TwinElementwise, CacheWriteThenGatherF32PoolIsExact) {
  std::mt19937 rng(57);
  const int64_t width = 24, block_size = 4, n_blocks = 7;
  const std::vector<int32_t> tables{5, 2, 0, 6, 1, 3};  // 2 sequences, max_blocks 3 (block 4 never owned)
  const std::vector<int32_t> kv_len{9, 5}, cu_kv{0, 9, 14};
  std::vector<float> pool(static_cast<size_t>(n_blocks * block_size * width), kNaN);
  const std::vector<float> src = randn(static_cast<size_t>(14 * width), rng, 3.0f);
  std::vector<int64_t> slots;
  for (int32_t s = 0; s < 2; ++s)
    for (int32_t pos = 0; pos < kv_len[s]; ++pos)
      slots.push_back(int64_t{tables[s * 3 + pos / block_size]} * block_size + pos % block_size);
  CacheWriteParams w;
  w.cache = pool.data();
  w.cache_type = DType::F32;
  w.width = width;
  w.src = src.data();
  w.ld_src = width;
  w.slots = slots.data();
  w.n_rows = 14;
  twin::cache_write(w);
  for (int64_t slot = 4 * block_size; slot < 5 * block_size; ++slot)
    ASSERT_TRUE(std::isnan(pool[static_cast<size_t>(slot * width)])) << "unowned slot " << slot << " written";
  std::vector<float> out(src.size(), kNaN);
  CacheGatherParams g;
  g.out = out.data();
  g.ld_out = width;
  g.cache = pool.data();
  g.cache_type = DType::F32;
  g.width = width;
  g.block_size = block_size;
  g.block_tables = tables.data();
  g.max_blocks = 3;
  g.kv_len = kv_len.data();
  g.cu_kv = cu_kv.data();
  g.n_seqs = 2;
  twin::cache_gather(g);
  for (size_t i = 0; i < src.size(); ++i) ASSERT_TRUE(same_bits(out[i], src[i])) << i;
  w.cache_type = g.cache_type = DType::F16;  // a cache is BF16 or F32
  EXPECT_NE(error_of([&] { twin::cache_write(w); }).find("F16"), std::string::npos);
  EXPECT_NE(error_of([&] { twin::cache_gather(g); }).find("F16"), std::string::npos);
}

TEST(TwinElementwise, CacheWriteThenGatherRoundTripsThroughShuffledBlocks) {
  std::mt19937 rng(66);
  for (int trial = 0; trial < 8; ++trial) {
    const int32_t block_size = static_cast<int32_t>(std::vector<int64_t>{1, 3, 16, 64}[trial % 4]);
    const int32_t n_seqs = static_cast<int32_t>(rand_in(rng, 1, 6));
    const int64_t width = trial == 0 ? 1 : rand_in(rng, 1, 80);
    std::vector<int32_t> kv_len(static_cast<size_t>(n_seqs)), cu_kv(static_cast<size_t>(n_seqs) + 1, 0);
    int32_t max_blocks = 1, used_blocks = 0;
    for (int32_t s = 0; s < n_seqs; ++s) {
      kv_len[s] = static_cast<int32_t>(rand_in(rng, s == 0 ? 1 : 0, 90));
      cu_kv[s + 1] = cu_kv[s] + kv_len[s];
      const int32_t nb = (kv_len[s] + block_size - 1) / block_size;
      max_blocks = std::max(max_blocks, nb);
      used_blocks += nb;
    }
    // A pool with spare blocks; each sequence gets blocks from a shuffled list, and unowned table entries are -1.
    const int32_t n_blocks = used_blocks + 5;
    std::vector<int32_t> ids(static_cast<size_t>(n_blocks));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    std::vector<int32_t> tables(static_cast<size_t>(n_seqs * max_blocks), -1);
    size_t next = 0;
    for (int32_t s = 0; s < n_seqs; ++s)
      for (int32_t b = 0; b < (kv_len[s] + block_size - 1) / block_size; ++b) tables[s * max_blocks + b] = ids[next++];
    std::vector<uint16_t> cache(static_cast<size_t>(n_blocks) * block_size * width, kBf16NaN);

    // Every token's row in a shuffled order, written in two calls (a prefix, then "new tokens").
    const int64_t n_rows = cu_kv[n_seqs], ld_src = width + rand_in(rng, 0, 4);
    const std::vector<float> src = randn(static_cast<size_t>(n_rows * ld_src), rng);
    std::vector<int64_t> order(static_cast<size_t>(n_rows));
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    auto slot_of = [&](int64_t token) {  // token = cu_kv[s] + pos
      const int32_t s = static_cast<int32_t>(std::upper_bound(cu_kv.begin(), cu_kv.end(), token) - cu_kv.begin() - 1);
      const int64_t pos = token - cu_kv[s];
      return static_cast<int64_t>(tables[s * max_blocks + pos / block_size]) * block_size + pos % block_size;
    };
    std::vector<float> rows(static_cast<size_t>(n_rows * ld_src));
    std::vector<int64_t> slots(static_cast<size_t>(n_rows));
    for (int64_t i = 0; i < n_rows; ++i) {
      std::copy_n(src.begin() + order[i] * ld_src, ld_src, rows.begin() + i * ld_src);
      slots[i] = slot_of(order[i]);
    }
    const int64_t first = n_rows / 2;
    for (auto [begin, count] : {std::pair<int64_t, int64_t>{0, first}, {first, n_rows - first}}) {
      CacheWriteParams w;
      w.cache = cache.data();
      w.width = width;
      w.src = rows.data() + begin * ld_src;
      w.ld_src = ld_src;
      w.slots = slots.data() + begin;
      w.n_rows = count;
      twin::cache_write(w);
    }

    // Naive check of the pool: owned slots hold the rounded rows, every other slot is still NaN.
    std::vector<int64_t> owner(static_cast<size_t>(n_blocks) * block_size, -1);
    for (int64_t t = 0; t < n_rows; ++t) owner[slot_of(t)] = t;
    for (size_t slot = 0; slot < owner.size(); ++slot)
      for (int64_t c = 0; c < width; ++c) {
        const uint16_t got = cache[slot * width + c];
        if (owner[slot] < 0)
          ASSERT_EQ(got, kBf16NaN) << "slot " << slot << " written without an owner";
        else
          ASSERT_EQ(got, f32_to_bf16(src[owner[slot] * ld_src + c])) << "slot " << slot << " col " << c;
      }

    const int64_t ld_out = width + rand_in(rng, 0, 4);
    std::vector<float> out(static_cast<size_t>(n_rows * ld_out + 3), kNaN);
    CacheGatherParams g;
    g.out = out.data();
    g.ld_out = ld_out;
    g.cache = cache.data();
    g.width = width;
    g.block_size = block_size;
    g.block_tables = tables.data();
    g.max_blocks = max_blocks;
    g.kv_len = kv_len.data();
    g.cu_kv = cu_kv.data();
    g.n_seqs = n_seqs;
    twin::cache_gather(g);
    for (int64_t t = 0; t < n_rows; ++t)
      for (int64_t c = 0; c < ld_out; ++c) {
        const float got = out[t * ld_out + c];
        if (c >= width)
          ASSERT_TRUE(std::isnan(got)) << "padding written";
        else
          ASSERT_TRUE(same_bits(got, bf16_to_f32(f32_to_bf16(src[t * ld_src + c])))) << t << "," << c;
      }
    for (size_t i = static_cast<size_t>(n_rows * ld_out); i < out.size(); ++i) ASSERT_TRUE(std::isnan(out[i]));

    // Into BF16, the cache's own type: the stored bits, row for row; the padding keeps its poison.
    std::vector<uint16_t> raw(out.size(), kBf16NaN);
    g.out = raw.data();
    g.out_type = DType::BF16;
    twin::cache_gather(g);
    for (int64_t t = 0; t < n_rows; ++t)
      for (int64_t c = 0; c < ld_out; ++c) {
        const uint16_t got = raw[t * ld_out + c];
        ASSERT_EQ(got, c >= width ? kBf16NaN : f32_to_bf16(src[t * ld_src + c])) << t << "," << c;
      }
    g.out_type = DType::F16;  // neither float32 nor the cache's type
    EXPECT_NE(error_of([&] { twin::cache_gather(g); }).find("out_type F16"), std::string::npos);
  }
}

// ---- refusals ----------------------------------------------------------------------------------------------

TEST(TwinElementwise, RefusesOtherDtypesNamingThem) {
  std::vector<float> buf(64, 1.0f);
  std::vector<int32_t> ids(4, 0);
  EmbeddingParams e;
  e.out = buf.data();
  e.table = buf.data();
  e.table_type = DType::I32;
  e.hidden = 4;
  e.ids = ids.data();
  e.n_rows = 1;
  EXPECT_NE(error_of([&] { twin::embedding(e); }).find("I32"), std::string::npos);

  RmsNormParams r;
  r.residual = buf.data();
  r.ld_residual = 4;
  r.out = buf.data() + 16;
  r.out_type = DType::F64;
  r.ld_out = 4;
  r.weight = buf.data();
  r.n_rows = 1;
  r.dim = 4;
  EXPECT_NE(error_of([&] { twin::rms_norm(r); }).find("F64"), std::string::npos);
  r.out_type = DType::BF16;  // in place only as F32 at the same leading dimension
  r.out = buf.data();
  EXPECT_NE(error_of([&] { twin::rms_norm(r); }).find("HINT"), std::string::npos);

  SiluMulParams s;
  s.out = buf.data() + 32;
  s.out_type = DType::I8;
  s.ld_out = 4;
  s.gate_up = buf.data();
  s.ld_in = 8;
  s.inter = 4;
  s.n_rows = 1;
  EXPECT_NE(error_of([&] { twin::silu_mul(s); }).find("I8"), std::string::npos);

  CastParams c;
  c.out = buf.data() + 32;
  c.out_type = DType::F8_E4M3;
  c.ld_out = 4;
  c.in = buf.data();
  c.ld_in = 4;
  c.n_rows = 1;
  c.n_cols = 4;
  EXPECT_NE(error_of([&] { twin::cast(c); }).find(std::string(dtype_name(DType::F8_E4M3))), std::string::npos);

  RopeParams rp;
  rp.x = buf.data();
  rp.ld = 8;
  rp.n_rows = 1;
  rp.dim = 3;  // odd
  rp.cos = rp.sin = buf.data();
  rp.positions = ids.data();
  EXPECT_NE(error_of([&] { twin::rope(rp); }).find("even"), std::string::npos);
}

}  // namespace
}  // namespace mlabench::kernels
