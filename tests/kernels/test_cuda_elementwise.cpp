// CUDA elementwise kernels (engine/kernels/cuda/elementwise.cu) against their CPU twins on the GPU machine:
// embedding, rms_norm, rope, silu_mul, cast, cache_write, latent_append, kv_append, cache_gather, over shape sweeps
// (1 row, odd widths, widths that defeat the vector paths, pointers shifted off 16-byte alignment, many rows), every
// output and table dtype, paged pools with shuffled blocks whose unowned slots hold NaN, and one CUDA-graph capture.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/twin/twin.h"
#include "tests/kernels/gpu_test_util.h"

namespace mlabench::kernels {
namespace {

using test::to_device;
using test::to_host;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr uint16_t kBf16NaN = 0x7fc0;
constexpr DType kOutTypes[] = {DType::F32, DType::BF16, DType::F16};

std::vector<float> randn(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

int64_t rand_in(std::mt19937& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

uint16_t half_bits(DType t, float x) { return t == DType::BF16 ? f32_to_bf16(x) : f32_to_f16(x); }

float half_value(DType t, uint16_t h) { return t == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h); }

// A host buffer of F32 / BF16 / F16 values, poisoned with NaN, and its device copy.
struct TypedBuf {
  DType type;
  std::vector<float> f;
  std::vector<uint16_t> h;
  gpu::DeviceBuffer dev;

  TypedBuf(DType t, size_t n) : type(t) {
    if (t == DType::F32)
      f.assign(n, kNaN);
    else
      h.assign(n, t == DType::BF16 ? kBf16NaN : uint16_t{0x7e00});
  }
  size_t size() const { return type == DType::F32 ? f.size() : h.size(); }
  void* host(size_t shift = 0) {
    return type == DType::F32 ? static_cast<void*>(f.data() + shift) : static_cast<void*>(h.data() + shift);
  }
  void upload() { dev = type == DType::F32 ? to_device(f) : to_device(h); }
  void* device(size_t shift = 0) const {
    return type == DType::F32 ? static_cast<void*>(dev.as<float>() + shift)
                              : static_cast<void*>(dev.as<uint16_t>() + shift);
  }
  // The device contents as a second host buffer.
  TypedBuf fetch() const {
    TypedBuf out(type, size());
    if (type == DType::F32)
      out.f = to_host<float>(dev, size());
    else
      out.h = to_host<uint16_t>(dev, size());
    return out;
  }
  float value(size_t i) const { return type == DType::F32 ? f[i] : half_value(type, h[i]); }
};

// Kernel vs twin, element by element. F32: within rel_tol * |twin| (0 = identical bits). BF16/F16: identical bits
// when rel_tol == 0, else at most one unit in the last place apart (a float32 difference far below a 16-bit ulp
// can still flip one rounding). NaN must meet NaN (the payload may differ: the device converts with the
// intrinsics).
void expect_matches(const TypedBuf& kernel, const TypedBuf& twin, double rel_tol, const std::string& what) {
  ASSERT_EQ(kernel.size(), twin.size());
  size_t bad = 0;
  for (size_t i = 0; i < twin.size(); ++i) {
    const float a = kernel.value(i), b = twin.value(i);
    bool ok;
    if (std::isnan(a) || std::isnan(b)) {
      ok = std::isnan(a) && std::isnan(b);
    } else if (twin.type == DType::F32) {
      ok = rel_tol == 0 ? std::memcmp(&a, &b, 4) == 0 : std::fabs(a - b) <= rel_tol * std::fabs(b) + 1e-35;
    } else {
      const uint16_t x = kernel.h[i], y = twin.h[i];
      const int d = std::abs(static_cast<int>(x) - static_cast<int>(y));
      ok = rel_tol == 0 ? x == y : ((x & 0x8000u) == (y & 0x8000u) && d <= 1) || (a == 0 && b == 0);
    }
    if (!ok && ++bad <= 5)
      ADD_FAILURE() << what << ": element " << i << " kernel " << a << " twin " << b << " ("
                    << dtype_name(twin.type) << ")";
  }
  ASSERT_EQ(bad, 0u) << what << ": " << bad << " of " << twin.size() << " elements differ";
}

// RoPE tables [n_pos, dim / 2]: cos and sin of pos * base^(-2 i / dim), rounded to float32.
struct RopeTable {
  std::vector<float> cos, sin;
};
RopeTable rope_table(int64_t n_pos, int64_t dim, double base) {
  const int64_t half = dim / 2;
  RopeTable t;
  t.cos.resize(static_cast<size_t>(n_pos * half));
  t.sin.resize(t.cos.size());
  for (int64_t pos = 0; pos < n_pos; ++pos)
    for (int64_t i = 0; i < half; ++i) {
      const double angle =
          static_cast<double>(pos) * std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(dim));
      t.cos[static_cast<size_t>(pos * half + i)] = static_cast<float>(std::cos(angle));
      t.sin[static_cast<size_t>(pos * half + i)] = static_cast<float>(std::sin(angle));
    }
  return t;
}

TypedBuf from_floats(const std::vector<float>& v) {
  TypedBuf b(DType::F32, v.size());
  b.f = v;
  return b;
}

// ---- embedding ---------------------------------------------------------------------------------------------

TEST(CudaElementwise, EmbeddingMatchesTwin) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(101);
  struct Case {
    int64_t vocab, hidden, n_rows, shift;
  };
  const Case cases[] = {{10, 1, 1, 0},     {50, 7, 3, 0},      {100, 8, 5, 1},   {300, 64, 17, 0},
                        {1000, 5120, 9, 0}, {64, 4099, 4, 0},  {32, 2048, 300, 0}, {5, 12, 70000, 0}};
  for (DType t : kOutTypes)
    for (const Case& c : cases) {
      const std::string what = fmt::format("embedding {} vocab {} hidden {} rows {} shift {}", dtype_name(t), c.vocab,
                                           c.hidden, c.n_rows, c.shift);
      TypedBuf table(t, static_cast<size_t>(c.vocab * c.hidden + c.shift));
      const std::vector<float> vals = randn(table.size(), rng);
      for (size_t i = 0; i < vals.size(); ++i) {
        if (t == DType::F32)
          table.f[i] = vals[i];
        else
          table.h[i] = half_bits(t, vals[i]);
      }
      std::vector<int32_t> ids(static_cast<size_t>(c.n_rows));
      for (auto& id : ids) id = static_cast<int32_t>(rand_in(rng, 0, c.vocab - 1));
      TypedBuf out(DType::F32, static_cast<size_t>(c.n_rows * c.hidden + 8));
      table.upload();
      out.upload();
      const gpu::DeviceBuffer d_ids = to_device(ids);

      EmbeddingParams p;
      p.table_type = t;
      p.hidden = c.hidden;
      p.n_rows = c.n_rows;
      p.out = out.f.data();
      p.table = table.host(static_cast<size_t>(c.shift));
      p.ids = ids.data();
      twin::embedding(p);
      p.out = static_cast<float*>(out.device());
      p.table = table.device(static_cast<size_t>(c.shift));
      p.ids = d_ids.as<int32_t>();
      cuda::embedding(p, nullptr);
      expect_matches(out.fetch(), out, 0, what);  // a conversion to float32 is exact
    }
}

// ---- rms_norm ----------------------------------------------------------------------------------------------

struct RmsCase {
  int64_t n_rows, dim, pad_res, pad_delta, pad_out, shift;
  bool with_delta, in_place;
};

void run_rms_case(const RmsCase& c, DType t, std::mt19937& rng) {
  const std::string what = fmt::format("rms_norm {} rows {} dim {} pads {}/{}/{} shift {} delta {} in place {}",
                                       dtype_name(t), c.n_rows, c.dim, c.pad_res, c.pad_delta, c.pad_out, c.shift,
                                       c.with_delta, c.in_place);
  const int64_t ld_res = c.dim + c.pad_res, ld_delta = c.dim + c.pad_delta;
  const int64_t ld_out = c.in_place ? ld_res : c.dim + c.pad_out;
  const size_t sh = static_cast<size_t>(c.shift);
  TypedBuf residual = from_floats(randn(static_cast<size_t>(c.n_rows * ld_res) + sh, rng, 2.0f));
  TypedBuf delta = from_floats(randn(static_cast<size_t>(c.n_rows * ld_delta) + sh, rng));
  TypedBuf weight = from_floats(randn(static_cast<size_t>(c.dim) + sh, rng));
  TypedBuf out(t, static_cast<size_t>(c.n_rows * ld_out) + sh);
  residual.upload();
  delta.upload();
  weight.upload();
  out.upload();

  RmsNormParams p;
  p.ld_residual = ld_res;
  p.ld_delta = ld_delta;
  p.out_type = t;
  p.ld_out = ld_out;
  p.n_rows = c.n_rows;
  p.dim = c.dim;
  p.eps = 1e-6f;
  p.residual = residual.f.data() + sh;
  p.delta = c.with_delta ? delta.f.data() + sh : nullptr;
  p.out = c.in_place ? p.residual : out.host(sh);
  p.weight = weight.f.data() + sh;
  twin::rms_norm(p);
  p.residual = residual.dev.as<float>() + sh;
  p.delta = c.with_delta ? delta.dev.as<float>() + sh : nullptr;
  p.out = c.in_place ? p.residual : out.device(sh);
  p.weight = weight.dev.as<float>() + sh;
  cuda::rms_norm(p, nullptr);

  if (c.in_place) {
    // Sums of squares in a different order: the scale differs by ~sqrt(dim) * 2^-24 relative at most.
    expect_matches(residual.fetch(), residual, 1e-5, what + " (in place)");
    return;
  }
  expect_matches(residual.fetch(), residual, 0, what + " (residual + delta)");  // one float add: exact
  expect_matches(out.fetch(), out, 1e-5, what);
}

TEST(CudaElementwise, RmsNormMatchesTwin) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(202);
  const RmsCase cases[] = {
      {1, 1, 0, 0, 0, 0, false, false},      {1, 5120, 0, 0, 0, 0, true, false},  // decode, one token
      {7, 5120, 0, 0, 0, 0, true, false},    {33, 2048, 0, 0, 0, 0, false, false},
      {5, 512, 64, 0, 64, 0, false, false},  // kv_a_layernorm: 512 of 576-wide rows
      {4, 1536, 0, 4, 8, 0, true, false},    {3, 513, 3, 1, 2, 0, true, false},  // odd width: scalar path
      {6, 1024, 0, 0, 0, 1, true, false},    // shifted off 16-byte alignment: scalar path
      {2, 20480, 0, 0, 0, 0, true, false},   // past the register cache: the re-read tail
      {2, 16385, 0, 0, 0, 0, true, false},   // scalar and past the register cache
      {1000, 4096, 0, 0, 0, 0, true, false}, {37, 7, 1, 2, 3, 0, true, false},
      {9, 5120, 0, 0, 0, 0, true, true},     {3, 515, 1, 0, 0, 0, false, true}};
  for (DType t : kOutTypes)
    for (const RmsCase& c : cases) {
      if (c.in_place && t != DType::F32) continue;  // in place is F32 only (the struct's rule)
      run_rms_case(c, t, rng);
    }
}

// The second output (out2): the same normalised rows in another type from the one pass; both match the twin, and
// out2 equals out converted (the MoE layer's router reads out in float32, its experts out2 in BF16).
TEST(CudaElementwise, RmsNormSecondOutputMatchesTwin) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(212);
  struct Case {
    int64_t n_rows, dim, pad2;
    DType out_type, out2_type;
  };
  const Case cases[] = {{1, 2048, 0, DType::F32, DType::BF16},  {64, 2048, 8, DType::F32, DType::BF16},
                        {3, 513, 1, DType::F32, DType::F16},    {5, 1024, 0, DType::BF16, DType::F32},
                        {2, 20480, 0, DType::F32, DType::BF16}};
  for (const Case& c : cases) {
    const std::string what = fmt::format("rms_norm out {} out2 {} rows {} dim {} pad {}", dtype_name(c.out_type),
                                         dtype_name(c.out2_type), c.n_rows, c.dim, c.pad2);
    const int64_t ld2 = c.dim + c.pad2;
    TypedBuf residual = from_floats(randn(static_cast<size_t>(c.n_rows * c.dim), rng, 2.0f));
    TypedBuf delta = from_floats(randn(static_cast<size_t>(c.n_rows * c.dim), rng));
    TypedBuf weight = from_floats(randn(static_cast<size_t>(c.dim), rng));
    TypedBuf out(c.out_type, static_cast<size_t>(c.n_rows * c.dim)), out2(c.out2_type, static_cast<size_t>(c.n_rows * ld2));
    for (TypedBuf* b : {&residual, &delta, &weight, &out, &out2}) b->upload();
    RmsNormParams p{.ld_residual = c.dim, .ld_delta = c.dim, .out_type = c.out_type, .ld_out = c.dim,
                    .n_rows = c.n_rows, .dim = c.dim, .eps = 1e-6f, .out2_type = c.out2_type, .ld_out2 = ld2};
    p.residual = residual.f.data();
    p.delta = delta.f.data();
    p.weight = weight.f.data();
    p.out = out.host(0);
    p.out2 = out2.host(0);
    twin::rms_norm(p);
    p.residual = residual.dev.as<float>();
    p.delta = delta.dev.as<float>();
    p.weight = weight.dev.as<float>();
    p.out = out.device(0);
    p.out2 = out2.device(0);
    cuda::rms_norm(p, nullptr);
    expect_matches(out.fetch(), out, 1e-5, what + " (out)");
    expect_matches(out2.fetch(), out2, 1e-5, what + " (out2)");
  }
}

// ---- latent_append (MLA's norm, RoPE on k and q, cache write in one kernel) -----------------------------------

TEST(CudaElementwise, LatentAppendMatchesTwin) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(515);
  struct Case {
    int64_t n_rows, n_heads, pad;
    bool interleaved;
    DType cache_type;
  };
  // V2-Lite (16 heads) and V2 (128) shapes, one decode row to a prefill chunk, both pairings and cache types.
  const Case cases[] = {{1, 16, 0, true, DType::BF16},   {7, 128, 0, true, DType::BF16}, {300, 16, 8, false, DType::BF16},
                        {5, 16, 0, true, DType::F32},    {3, 0, 0, true, DType::BF16}};
  const int64_t kvl = 512, rd = 64, nope = 128, qk = nope + rd, n_pos = 4096, n_slots = 1024;
  for (const Case& c : cases) {
    const std::string what = fmt::format("latent_append rows {} heads {} pad {} interleaved {} cache {}", c.n_rows,
                                         c.n_heads, c.pad, c.interleaved, dtype_name(c.cache_type));
    const int64_t ld = kvl + rd + c.pad, ld_q = std::max<int64_t>(c.n_heads, 1) * qk;
    TypedBuf latent = from_floats(randn(static_cast<size_t>(c.n_rows * ld), rng, 2.0f));
    TypedBuf q = from_floats(randn(static_cast<size_t>(c.n_rows * ld_q), rng));
    TypedBuf weight = from_floats(randn(static_cast<size_t>(kvl), rng));
    const auto [cos, sin] = rope_table(n_pos, rd, 10000.0);
    std::vector<int32_t> positions(static_cast<size_t>(c.n_rows));
    for (auto& pos : positions) pos = static_cast<int32_t>(rand_in(rng, 0, n_pos - 1));
    std::vector<int64_t> slots(static_cast<size_t>(n_slots));
    std::iota(slots.begin(), slots.end(), 0);
    std::shuffle(slots.begin(), slots.end(), rng);
    slots.resize(static_cast<size_t>(c.n_rows));  // distinct slots, out of order; the rest of the pool stays NaN
    TypedBuf cache(c.cache_type, static_cast<size_t>(n_slots * (kvl + rd)));
    for (TypedBuf* b : {&latent, &q, &weight, &cache}) b->upload();
    const gpu::DeviceBuffer d_cos = to_device(cos), d_sin = to_device(sin), d_pos = to_device(positions),
                            d_slots = to_device(slots);
    LatentAppendParams p{.ld = ld, .kv_lora = kvl, .rope_dim = rd, .eps = 1e-6f, .ld_q = ld_q, .n_heads = c.n_heads,
                         .q_head_stride = qk, .q_rope_offset = nope, .interleaved = c.interleaved,
                         .cache_type = c.cache_type, .n_rows = c.n_rows};
    p.latent = latent.f.data();
    p.norm_weight = weight.f.data();
    p.q = q.f.data();
    p.cos = cos.data();
    p.sin = sin.data();
    p.positions = positions.data();
    p.cache = cache.host();
    p.slots = slots.data();
    twin::latent_append(p);
    p.latent = latent.dev.as<float>();
    p.norm_weight = weight.dev.as<float>();
    p.q = q.dev.as<float>();
    p.cos = d_cos.as<float>();
    p.sin = d_sin.as<float>();
    p.positions = d_pos.as<int32_t>();
    p.cache = cache.device();
    p.slots = d_slots.as<int64_t>();
    cuda::latent_append(p, nullptr);
    // The norm sums squares in another order (scale within ~sqrt(dim) 2^-24); RoPE rounds each product and sum as
    // the twin does, so q (its input untouched by the norm) matches bit for bit.
    expect_matches(latent.fetch(), latent, 1e-5, what + " (latent)");
    expect_matches(q.fetch(), q, 0, what + " (q)");
    expect_matches(cache.fetch(), cache, c.cache_type == DType::F32 ? 1e-5 : 1e-3, what + " (cache)");
  }
}

// ---- kv_append (GQA's RoPE on q and k heads and both cache writes in one kernel) -----------------------------

TEST(CudaElementwise, KvAppendMatchesTwinBitForBit) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(616);
  struct Case {
    int64_t n_rows, n_heads, n_kv_heads, head_dim, rope_dim, pad;
    bool interleaved;
    DType cache_type;
  };
  // Llama-3-8B (GQA 32/8), Llama-2-7B (MHA 32/32), MQA, a partial rotary width, a padded row whose v heads are not
  // 16-byte aligned (the scalar copy), one decode row to a prefill chunk, both pairings and cache types.
  const Case cases[] = {{1, 32, 8, 128, 128, 0, false, DType::BF16},  {2, 32, 32, 128, 128, 0, false, DType::BF16},
                        {300, 32, 8, 128, 128, 0, true, DType::BF16}, {5, 8, 1, 64, 64, 0, false, DType::F32},
                        {9, 4, 2, 64, 32, 0, true, DType::BF16},      {7, 4, 2, 66, 66, 2, false, DType::BF16}};
  const int64_t n_pos = 4096, n_slots = 1024;
  for (const Case& c : cases) {
    const std::string what = fmt::format("kv_append rows {} heads {}/{} head_dim {} rope {} pad {} interleaved {} "
                                         "cache {}",
                                         c.n_rows, c.n_heads, c.n_kv_heads, c.head_dim, c.rope_dim, c.pad,
                                         c.interleaved, dtype_name(c.cache_type));
    const int64_t hd = c.head_dim, kvw = c.n_kv_heads * hd;
    const int64_t ld = (c.n_heads + 2 * c.n_kv_heads) * hd + c.pad;
    TypedBuf qkv = from_floats(randn(static_cast<size_t>(c.n_rows * ld), rng, 2.0f));
    const auto [cos, sin] = rope_table(n_pos, c.rope_dim, 500000.0);
    std::vector<int32_t> positions(static_cast<size_t>(c.n_rows));
    for (auto& pos : positions) pos = static_cast<int32_t>(rand_in(rng, 0, n_pos - 1));
    std::vector<int64_t> slots(static_cast<size_t>(n_slots));
    std::iota(slots.begin(), slots.end(), 0);
    std::shuffle(slots.begin(), slots.end(), rng);
    slots.resize(static_cast<size_t>(c.n_rows));  // distinct slots, out of order; the rest of both pools stays NaN
    TypedBuf k_cache(c.cache_type, static_cast<size_t>(n_slots * kvw)), v_cache(c.cache_type, k_cache.size());
    for (TypedBuf* b : {&qkv, &k_cache, &v_cache}) b->upload();
    const gpu::DeviceBuffer d_cos = to_device(cos), d_sin = to_device(sin), d_pos = to_device(positions),
                            d_slots = to_device(slots);
    KvAppendParams p{.ld = ld, .n_heads = c.n_heads, .n_kv_heads = c.n_kv_heads, .head_dim = hd,
                     .rope_dim = c.rope_dim, .interleaved = c.interleaved, .cache_type = c.cache_type,
                     .n_rows = c.n_rows};
    p.qkv = qkv.f.data();
    p.cos = cos.data();
    p.sin = sin.data();
    p.positions = positions.data();
    p.k_cache = k_cache.host();
    p.v_cache = v_cache.host();
    p.slots = slots.data();
    twin::kv_append(p);
    p.qkv = qkv.dev.as<float>();
    p.cos = d_cos.as<float>();
    p.sin = d_sin.as<float>();
    p.positions = d_pos.as<int32_t>();
    p.k_cache = k_cache.device();
    p.v_cache = v_cache.device();
    p.slots = d_slots.as<int64_t>();
    cuda::kv_append(p, nullptr);
    // RoPE rounds each product and sum as the twin does; the cache rows are those floats stored: all bit for bit.
    expect_matches(qkv.fetch(), qkv, 0, what + " (qkv)");
    expect_matches(k_cache.fetch(), k_cache, 0, what + " (k cache)");
    expect_matches(v_cache.fetch(), v_cache, 0, what + " (v cache)");
  }
}

// ---- rope --------------------------------------------------------------------------------------------------

TEST(CudaElementwise, RopeMatchesTwinBitForBit) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(303);
  struct Case {
    int64_t n_rows, n_heads, head_stride, offset, dim, ld;
    bool interleaved;
  };
  const Case cases[] = {
      {1, 128, 192, 128, 64, 128 * 192, true},  // DeepSeek-V2 q, one token
      {37, 16, 192, 128, 64, 16 * 192, true},   {300, 1, 0, 512, 64, 576, true},  // k_pe after the latent
      {5, 32, 128, 0, 128, 4096, false},        {70, 8, 128, 0, 128, 1024 + 3, false},  // Llama q / k
      {3, 3, 5, 1, 2, 20, true},                {3, 3, 7, 2, 6, 25, false},  // tiny, odd strides
      {2, 200, 64, 0, 64, 200 * 64, false},     // more pairs than one block
  };
  const int64_t n_pos = 4097;
  for (const Case& c : cases) {
    const std::string what = fmt::format("rope rows {} heads {} stride {} offset {} dim {} ld {} interleaved {}",
                                         c.n_rows, c.n_heads, c.head_stride, c.offset, c.dim, c.ld, c.interleaved);
    const auto [cos, sin] = rope_table(n_pos, c.dim, 10000.0);
    std::vector<int32_t> positions(static_cast<size_t>(c.n_rows));
    for (auto& pos : positions) pos = static_cast<int32_t>(rand_in(rng, 0, n_pos - 1));
    positions.back() = static_cast<int32_t>(n_pos - 1);
    TypedBuf x = from_floats(randn(static_cast<size_t>(c.n_rows * c.ld), rng));
    x.upload();
    const gpu::DeviceBuffer d_cos = to_device(cos), d_sin = to_device(sin), d_pos = to_device(positions);

    RopeParams p;
    p.ld = c.ld;
    p.n_rows = c.n_rows;
    p.n_heads = c.n_heads;
    p.head_stride = c.head_stride;
    p.offset = c.offset;
    p.dim = c.dim;
    p.interleaved = c.interleaved;
    p.x = x.f.data();
    p.cos = cos.data();
    p.sin = sin.data();
    p.positions = positions.data();
    twin::rope(p);
    p.x = x.dev.as<float>();
    p.cos = d_cos.as<float>();
    p.sin = d_sin.as<float>();
    p.positions = d_pos.as<int32_t>();
    cuda::rope(p, nullptr);
    // The kernel rounds each product and sum as the twin does (no FMA contraction): identical bits, and the
    // values outside the rotated ranges untouched.
    expect_matches(x.fetch(), x, 0, what);
  }
}

// ---- silu_mul, cast ----------------------------------------------------------------------------------------

TEST(CudaElementwise, SiluMulMatchesTwin) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(404);
  struct Case {
    int64_t n_rows, inter, pad_in, pad_out, shift;
  };
  const Case cases[] = {{1, 1, 0, 0, 0},       {1, 1536, 0, 0, 0},   {5, 1408, 0, 0, 0},  {257, 12288, 0, 0, 0},
                        {3, 10945, 0, 0, 0},   {4, 100, 3, 1, 0},    {6, 64, 0, 0, 1},    {70000, 8, 0, 0, 0},
                        {2, 3, 1, 1, 0}};
  for (DType t : kOutTypes)
    for (const Case& c : cases) {
      const std::string what = fmt::format("silu_mul {} rows {} inter {} pads {}/{} shift {}", dtype_name(t),
                                           c.n_rows, c.inter, c.pad_in, c.pad_out, c.shift);
      const int64_t ld_in = 2 * c.inter + c.pad_in, ld_out = c.inter + c.pad_out;
      const size_t sh = static_cast<size_t>(c.shift);
      TypedBuf gate_up = from_floats(randn(static_cast<size_t>(c.n_rows * ld_in) + sh, rng, 4.0f));
      TypedBuf out(t, static_cast<size_t>(c.n_rows * ld_out) + sh);
      gate_up.upload();
      out.upload();
      SiluMulParams p;
      p.out_type = t;
      p.ld_out = ld_out;
      p.ld_in = ld_in;
      p.inter = c.inter;
      p.n_rows = c.n_rows;
      p.out = out.host(sh);
      p.gate_up = gate_up.f.data() + sh;
      twin::silu_mul(p);
      p.out = out.device(sh);
      p.gate_up = gate_up.dev.as<float>() + sh;
      cuda::silu_mul(p, nullptr);
      // Device expf is within 2 ulp of the host's; with the division and product about 4 ulp: 1e-6 relative.
      expect_matches(out.fetch(), out, 1e-6, what);
    }
}

TEST(CudaElementwise, CastMatchesTwin) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(505);
  struct Case {
    int64_t n_rows, n_cols, pad_in, pad_out, shift;
  };
  const Case cases[] = {{1, 1, 0, 0, 0},  {1, 5120, 0, 0, 0}, {9, 4099, 0, 0, 0}, {300, 576, 4, 8, 0},
                        {5, 64, 1, 3, 0}, {7, 256, 0, 0, 1},  {70000, 4, 0, 0, 0}};
  const float specials[] = {0.0f,          -0.0f,         65519.0f,       65520.0f,     -65536.0f,
                            1.00390625f,   1.01171875f,   std::ldexp(1.0f, -25),        std::ldexp(3.0f, -25),
                            std::ldexp(1.0f, -140),       3.0e38f,        std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),      kNaN};
  for (DType t : kOutTypes)
    for (const Case& c : cases) {
      const std::string what = fmt::format("cast {} rows {} cols {} pads {}/{} shift {}", dtype_name(t), c.n_rows,
                                           c.n_cols, c.pad_in, c.pad_out, c.shift);
      const int64_t ld_in = c.n_cols + c.pad_in, ld_out = c.n_cols + c.pad_out;
      const size_t sh = static_cast<size_t>(c.shift);
      std::vector<float> in = randn(static_cast<size_t>(c.n_rows * ld_in) + sh, rng, 50.0f);
      for (size_t i = 0; i < std::size(specials) && sh + i < in.size(); ++i) in[sh + i] = specials[i];
      TypedBuf src = from_floats(in);
      TypedBuf out(t, static_cast<size_t>(c.n_rows * ld_out) + sh);
      src.upload();
      out.upload();
      CastParams p;
      p.out_type = t;
      p.ld_out = ld_out;
      p.ld_in = ld_in;
      p.n_rows = c.n_rows;
      p.n_cols = c.n_cols;
      p.out = out.host(sh);
      p.in = src.f.data() + sh;
      twin::cast(p);
      p.out = out.device(sh);
      p.in = src.dev.as<float>() + sh;
      cuda::cast(p, nullptr);
      expect_matches(out.fetch(), out, 0, what);  // round to nearest even on both sides: identical bits
    }
}

// The float32 precision widens stored weights on the device: every BF16/F16 bit pattern (NaN, inf, subnormals
// included) to F32, and narrow to narrow through float32; identical to the twin.
TEST(CudaElementwise, CastFromStoredTypesMatchesTwin) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(506);
  for (DType from : {DType::BF16, DType::F16})
    for (DType to : kOutTypes)
      for (auto [n_rows, n_cols] : {std::pair<int64_t, int64_t>{1, 65536 * 3 + 5}, {3, 1000}, {1, 1}}) {
        const std::string what = fmt::format("cast {} -> {} rows {} cols {}", dtype_name(from), dtype_name(to),
                                             n_rows, n_cols);
        TypedBuf src(from, static_cast<size_t>(n_rows * n_cols));
        for (size_t i = 0; i < src.h.size(); ++i)
          src.h[i] = static_cast<uint16_t>(i < 65536 ? i : rng());  // every bit pattern in the long row
        TypedBuf out(to, src.size());
        src.upload();
        out.upload();
        CastParams p;
        p.out_type = to;
        p.ld_out = n_cols;
        p.in_type = from;
        p.ld_in = n_cols;
        p.n_rows = n_rows;
        p.n_cols = n_cols;
        p.out = out.host();
        p.in = src.host();
        twin::cast(p);
        p.out = out.device();
        p.in = src.device();
        cuda::cast(p, nullptr);
        expect_matches(out.fetch(), out, 0, what);
      }
}

// ---- paged cache -------------------------------------------------------------------------------------------

// A pool with shuffled blocks: sequence s owns blocks tables[s, :ceil(kv_len[s] / block_size)], drawn from a
// shuffled list with spare blocks left over; unowned table entries are -1 and every slot starts as NaN.
struct Pool {
  int32_t block_size = 0, max_blocks = 1, n_blocks = 0;
  int64_t width = 0;
  std::vector<int32_t> kv_len, cu_kv, tables;
  std::vector<uint16_t> cache;

  Pool(std::vector<int32_t> lens, int32_t bs, int64_t w, std::mt19937& rng)
      : block_size(bs), width(w), kv_len(std::move(lens)) {
    const auto n_seqs = static_cast<int32_t>(kv_len.size());
    cu_kv.assign(kv_len.size() + 1, 0);
    int32_t used = 0;
    for (int32_t s = 0; s < n_seqs; ++s) {
      cu_kv[s + 1] = cu_kv[s] + kv_len[s];
      max_blocks = std::max(max_blocks, blocks_of(s));
      used += blocks_of(s);
    }
    n_blocks = used + 7;
    std::vector<int32_t> ids(static_cast<size_t>(n_blocks));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    tables.assign(static_cast<size_t>(n_seqs) * max_blocks, -1);
    size_t next = 0;
    for (int32_t s = 0; s < n_seqs; ++s)
      for (int32_t b = 0; b < blocks_of(s); ++b) tables[s * max_blocks + b] = ids[next++];
    cache.assign(static_cast<size_t>(n_blocks) * block_size * width, kBf16NaN);
  }
  int32_t blocks_of(int32_t s) const { return (kv_len[s] + block_size - 1) / block_size; }
  int64_t slot(int32_t s, int64_t pos) const {
    return static_cast<int64_t>(tables[s * max_blocks + pos / block_size]) * block_size + pos % block_size;
  }
};

struct CacheCase {
  std::vector<int32_t> kv_len;
  int32_t block_size;
  int64_t width, pad_src, pad_out;
  DType cache_type = DType::BF16;  // F32: the float32 precision's pool
};

void run_cache_case(const CacheCase& c, std::mt19937& rng) {
  const std::string what = fmt::format("paged {} cache seqs {} block {} width {} pads {}/{}",
                                       dtype_name(c.cache_type), c.kv_len.size(), c.block_size, c.width, c.pad_src,
                                       c.pad_out);
  Pool pool(c.kv_len, c.block_size, c.width, rng);
  const auto n_seqs = static_cast<int32_t>(c.kv_len.size());
  // Old tokens already cached (random values); the last q_len[s] tokens of each sequence are new.
  std::vector<int64_t> slots;
  for (int32_t s = 0; s < n_seqs; ++s) {
    const int32_t q_len = static_cast<int32_t>(rand_in(rng, 0, c.kv_len[s]));
    for (int32_t pos = 0; pos < c.kv_len[s]; ++pos) {
      if (pos >= c.kv_len[s] - q_len) {
        slots.push_back(pool.slot(s, pos));
        continue;
      }
      for (int64_t k = 0; k < c.width; ++k)
        pool.cache[pool.slot(s, pos) * c.width + k] = f32_to_bf16(std::normal_distribution<float>()(rng));
    }
  }
  std::shuffle(slots.begin(), slots.end(), rng);  // rows of a batch need not come in slot order
  const auto n_rows = static_cast<int64_t>(slots.size());
  const int64_t ld_src = c.width + c.pad_src, ld_out = c.width + c.pad_out;
  std::vector<float> src = randn(static_cast<size_t>(std::max<int64_t>(n_rows, 1) * ld_src), rng, 3.0f);
  if (!src.empty()) src[0] = kNaN;  // stays a NaN in BF16
  const gpu::DeviceBuffer d_src = to_device(src), d_slots = to_device(slots.empty() ? std::vector<int64_t>{0} : slots);
  const gpu::DeviceBuffer d_tables = to_device(pool.tables), d_len = to_device(pool.kv_len), d_cu = to_device(pool.cu_kv);
  TypedBuf cache(c.cache_type, pool.cache.size());
  if (c.cache_type == DType::BF16)
    cache.h = pool.cache;
  else
    std::transform(pool.cache.begin(), pool.cache.end(), cache.f.begin(), bf16_to_f32);
  cache.upload();

  CacheWriteParams w;
  w.cache_type = c.cache_type;
  w.width = c.width;
  w.ld_src = ld_src;
  w.n_rows = n_rows;
  w.cache = cache.host();
  w.src = src.data();
  w.slots = slots.data();
  twin::cache_write(w);
  w.cache = cache.device();
  w.src = d_src.as<float>();
  w.slots = d_slots.as<int64_t>();
  cuda::cache_write(w, nullptr);
  // Whole pool, bit for bit apart from NaN payloads: written slots round the same way, the rest keep their NaN.
  expect_matches(cache.fetch(), cache, 0, what + " (cache_write)");

  // Gathered into float32, and into the cache's own type (a plain copy, as the BF16 flash prefill reads it).
  for (DType out_type : {DType::F32, c.cache_type}) {
    TypedBuf out(out_type, static_cast<size_t>(pool.cu_kv.back() * ld_out + 5));
    out.upload();
    CacheGatherParams g;
    g.out_type = out_type;
    g.cache_type = c.cache_type;
    g.ld_out = ld_out;
    g.width = c.width;
    g.block_size = c.block_size;
    g.max_blocks = pool.max_blocks;
    g.n_seqs = n_seqs;
    g.out = out.host();
    g.cache = cache.host();
    g.block_tables = pool.tables.data();
    g.kv_len = pool.kv_len.data();
    g.cu_kv = pool.cu_kv.data();
    twin::cache_gather(g);
    g.out = out.device();
    g.cache = cache.device();
    g.block_tables = d_tables.as<int32_t>();
    g.kv_len = d_len.as<int32_t>();
    g.cu_kv = d_cu.as<int32_t>();
    cuda::cache_gather(g, nullptr);
    // Exact; a read of an unowned slot would bring a NaN into a row the twin filled with numbers, and the padding
    // between rows keeps the NaN it was poisoned with.
    expect_matches(out.fetch(), out, 0, fmt::format("{} (cache_gather into {})", what, dtype_name(out_type)));
  }
}

TEST(CudaElementwise, CacheWriteAndGatherMatchTwinOnShuffledBlocks) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(606);
  std::vector<CacheCase> cases = {
      {{1}, 1, 1, 0, 0},                   // one token, one value
      {{17}, 16, 576, 0, 0},               // MLA latent + rope slot, decode-sized
      {{5, 0, 33, 64, 1}, 16, 576, 0, 8},  // an empty sequence, ragged lengths
      {{300, 7, 129}, 64, 1024, 4, 0},     // GQA K/V widths
      {{40, 41, 42}, 3, 7, 1, 3},          // odd block size and width: scalar path
      {{100}, 1, 12, 2, 0},                // block size 1: every token in its own block
      {{4096}, 64, 576, 0, 0},             // a long prefill
  };
  std::vector<int32_t> many(60);
  for (auto& len : many) len = static_cast<int32_t>(rand_in(rng, 0, 200));
  cases.push_back({many, 16, 576, 0, 0});
  for (CacheCase c : cases) {
    run_cache_case(c, rng);
    c.cache_type = DType::F32;
    run_cache_case(c, rng);
  }
}

// ---- launch conditions ---------------------------------------------------------------------------------------

TEST(CudaElementwise, LaunchersCaptureIntoACudaGraph) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(707);
  const int64_t n_rows = 6, dim = 5120;
  TypedBuf residual = from_floats(randn(static_cast<size_t>(n_rows * dim), rng));
  TypedBuf delta = from_floats(randn(residual.size(), rng));
  TypedBuf weight = from_floats(randn(static_cast<size_t>(dim), rng));
  TypedBuf out(DType::BF16, residual.size());
  Pool pool({9, 30}, 16, 576, rng);
  for (auto& v : pool.cache) v = f32_to_bf16(std::normal_distribution<float>()(rng));
  TypedBuf gathered(DType::F32, static_cast<size_t>(pool.cu_kv.back() * pool.width));
  for (TypedBuf* b : {&residual, &delta, &weight, &out, &gathered}) b->upload();
  const gpu::DeviceBuffer d_cache = to_device(pool.cache), d_tables = to_device(pool.tables);
  const gpu::DeviceBuffer d_len = to_device(pool.kv_len), d_cu = to_device(pool.cu_kv);

  RmsNormParams r;
  r.ld_residual = r.ld_delta = r.ld_out = dim;
  r.out_type = DType::BF16;
  r.n_rows = n_rows;
  r.dim = dim;
  CacheGatherParams g;
  g.ld_out = pool.width;
  g.width = pool.width;
  g.block_size = pool.block_size;
  g.max_blocks = pool.max_blocks;
  g.n_seqs = static_cast<int32_t>(pool.kv_len.size());

  cudaStream_t stream;
  MLABENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  r.residual = residual.dev.as<float>();
  r.delta = delta.dev.as<float>();
  r.out = out.device();
  r.weight = weight.dev.as<float>();
  g.out = gathered.dev.as<float>();
  g.cache = d_cache.as<uint16_t>();
  g.block_tables = d_tables.as<int32_t>();
  g.kv_len = d_len.as<int32_t>();
  g.cu_kv = d_cu.as<int32_t>();
  test::run_captured(stream, [&](cudaStream_t) {
    cuda::rms_norm(r, stream);  // a launcher that synchronised or allocated would break the capture
    cuda::cache_gather(g, stream);
  });
  MLABENCH_CUDA(cudaStreamDestroy(stream));

  r.residual = residual.f.data();
  r.delta = delta.f.data();
  r.out = out.host();
  r.weight = weight.f.data();
  twin::rms_norm(r);
  g.out = gathered.f.data();
  g.cache = pool.cache.data();
  g.block_tables = pool.tables.data();
  g.kv_len = pool.kv_len.data();
  g.cu_kv = pool.cu_kv.data();
  twin::cache_gather(g);
  expect_matches(residual.fetch(), residual, 0, "graph rms_norm residual");
  expect_matches(out.fetch(), out, 1e-5, "graph rms_norm out");
  expect_matches(gathered.fetch(), gathered, 0, "graph cache_gather");
}

TEST(CudaElementwise, LaunchersRefuseOtherDtypesNamingThem) {
  MLABENCH_REQUIRE_GPU();
  auto message = [](auto&& fn) -> std::string {
    try {
      fn();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  gpu::DeviceBuffer buf(4096, "test buffer");
  float* f = buf.as<float>();
  CastParams c;
  c.out = f + 256;
  c.out_type = DType::F64;
  c.ld_out = c.ld_in = c.n_cols = 4;
  c.in = f;
  c.n_rows = 1;
  EXPECT_NE(message([&] { cuda::cast(c, nullptr); }).find("F64"), std::string::npos);
  SiluMulParams s;
  s.out = f + 256;
  s.out_type = DType::I32;
  s.ld_out = s.inter = 4;
  s.ld_in = 8;
  s.gate_up = f;
  s.n_rows = 1;
  EXPECT_NE(message([&] { cuda::silu_mul(s, nullptr); }).find("I32"), std::string::npos);
  RmsNormParams r;
  r.residual = f;
  r.out = f + 256;
  r.out_type = DType::F8_E5M2;
  r.ld_residual = r.ld_out = r.dim = 4;
  r.weight = f;
  r.n_rows = 1;
  EXPECT_NE(message([&] { cuda::rms_norm(r, nullptr); }).find(std::string(dtype_name(DType::F8_E5M2))),
            std::string::npos);
  EmbeddingParams e;
  e.out = f;
  e.table = f;
  e.table_type = DType::U8;
  e.hidden = 4;
  e.ids = reinterpret_cast<const int32_t*>(f + 512);
  e.n_rows = 1;
  EXPECT_NE(message([&] { cuda::embedding(e, nullptr); }).find("U8"), std::string::npos);
  MLABENCH_CUDA(cudaDeviceSynchronize());  // nothing was launched, nothing failed
}

}  // namespace
}  // namespace mlabench::kernels
