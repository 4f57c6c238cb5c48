// The F8_E4M3 KV cache slots (--kv-cache-dtype fp8, issue 20) on the GPU against their twins: cache_write,
// latent_append and kv_append write the same bytes as the twins (codes, scales, the BF16 tail) into pools whose
// other slots keep their poison, and cache_gather reads them back as the twin does, into float32 and BF16.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/twin/twin.h"
#include "tests/kernels/attention_test_util.h"
#include "tests/kernels/gpu_test_util.h"

namespace mlabench::kernels {
namespace {

using test::to_device;
using test::to_host;

using test::randn;

// n distinct slots of [0, n_slots), out of order.
std::vector<int64_t> shuffled_slots(int64_t n, int64_t n_slots, std::mt19937& rng) {
  std::vector<int64_t> slots(static_cast<size_t>(n_slots));
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), rng);
  slots.resize(static_cast<size_t>(n));
  return slots;
}

// The first byte where two pools differ, or -1.
int64_t first_difference(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return static_cast<int64_t>(i);
  return -1;
}

// Every slot of the pool gathered (one sequence of n_slots tokens over blocks of 16, in order) into float32 and BF16
// by the twin and the kernel: equal bit for bit (NaN payloads aside).
void expect_gathers_match(const std::vector<uint8_t>& pool, const gpu::DeviceBuffer& d_pool, const Fp8SlotLayout& l,
                          int64_t n_slots, const std::string& what) {
  const int32_t block = 16, n_blocks = static_cast<int32_t>(n_slots / block), len = n_blocks * block;
  std::vector<int32_t> tables(static_cast<size_t>(n_blocks));
  std::iota(tables.begin(), tables.end(), 0);
  const std::vector<int32_t> kv_len = {len}, cu = {0, len};
  const gpu::DeviceBuffer d_tables = to_device(tables), d_len = to_device(kv_len), d_cu = to_device(cu);
  for (DType out_type : {DType::F32, DType::BF16}) {
    const size_t n_out = static_cast<size_t>(len * l.width) * dtype_size(out_type);
    std::vector<uint8_t> want(n_out, 0xCD);
    CacheGatherParams g{.ld_out = l.width, .out_type = out_type, .cache_type = DType::F8_E4M3, .width = l.width,
                        .fp8_quantised = l.quantised, .fp8_segment = l.segment, .block_size = block,
                        .max_blocks = n_blocks, .n_seqs = 1};
    g.out = want.data();
    g.cache = pool.data();
    g.block_tables = tables.data();
    g.kv_len = kv_len.data();
    g.cu_kv = cu.data();
    twin::cache_gather(g);
    const gpu::DeviceBuffer d_out = to_device(std::vector<uint8_t>(n_out, 0xCD));
    g.out = d_out.get();
    g.cache = d_pool.get();
    g.block_tables = d_tables.as<int32_t>();
    g.kv_len = d_len.as<int32_t>();
    g.cu_kv = d_cu.as<int32_t>();
    cuda::cache_gather(g, nullptr);
    const std::vector<uint8_t> got = to_host<uint8_t>(d_out, n_out);
    int64_t bad = 0;
    for (int64_t i = 0; i < len * l.width; ++i) {
      float a, b;
      if (out_type == DType::F32) {
        std::memcpy(&a, got.data() + 4 * i, 4);
        std::memcpy(&b, want.data() + 4 * i, 4);
      } else {
        uint16_t x, y;
        std::memcpy(&x, got.data() + 2 * i, 2);
        std::memcpy(&y, want.data() + 2 * i, 2);
        a = bf16_to_f32(x), b = bf16_to_f32(y);
      }
      if (std::isnan(a) || std::isnan(b))  // the poisoned slots' NaN codes: NaN on both sides, payloads aside
        bad += !(std::isnan(a) && std::isnan(b));
      else
        bad += a != b || std::signbit(a) != std::signbit(b);
    }
    EXPECT_EQ(bad, 0) << what << ": cache_gather into " << dtype_name(out_type) << ", of " << len * l.width;
  }
}

}  // namespace

// cache_write: rows of mixed magnitudes (a NaN, an all-zero group) into MLA-, GQA- and odd-shaped slots.
TEST(CudaFp8Cache, CacheWriteAndGatherMatchTwinByteForByte) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(811);
  const Fp8SlotLayout layouts[] = {{576, 512, 512}, {1024, 1024, 128}, {512, 512, 256}, {96, 80, 40}, {128, 128, 64}};
  for (const Fp8SlotLayout& l : layouts) {
    const std::string what = fmt::format("slot {{{}, {}, {}}}", l.width, l.quantised, l.segment);
    for (const int64_t n_rows : {int64_t{1}, int64_t{37}, int64_t{300}}) {
      const int64_t n_slots = 512, ld = l.width + 3;
      std::vector<float> src = randn(static_cast<size_t>(n_rows * ld), rng, 2.0f);
      for (int64_t c = 0; c < std::min<int64_t>(l.segment, 128); ++c) src[static_cast<size_t>(c)] = 0.0f;
      if (n_rows > 1) src[static_cast<size_t>(ld + 3)] = std::numeric_limits<float>::quiet_NaN();
      const std::vector<int64_t> slots = shuffled_slots(n_rows, n_slots, rng);
      std::vector<uint8_t> pool(static_cast<size_t>(n_slots * l.bytes()), 0x7F);  // e4m3 NaN codes everywhere
      const gpu::DeviceBuffer d_pool = to_device(pool), d_src = to_device(src), d_slots = to_device(slots);
      CacheWriteParams w{.cache_type = DType::F8_E4M3, .width = l.width, .ld_src = ld, .n_rows = n_rows,
                         .fp8_quantised = l.quantised, .fp8_segment = l.segment};
      w.cache = pool.data();
      w.src = src.data();
      w.slots = slots.data();
      twin::cache_write(w);
      w.cache = d_pool.get();
      w.src = d_src.as<float>();
      w.slots = d_slots.as<int64_t>();
      cuda::cache_write(w, nullptr);
      const int64_t at = first_difference(to_host<uint8_t>(d_pool, pool.size()), pool);
      EXPECT_EQ(at, -1) << what << ", " << n_rows << " rows: first differing byte in slot " << at / l.bytes()
                        << " at " << at % l.bytes();
      expect_gathers_match(pool, d_pool, l, n_slots, what);
    }
  }
}

// latent_append (V2 shapes, one decode row to a prefill chunk) and kv_append (128-, 256- and 64-wide heads) into
// F8_E4M3 pools. kv_append's bytes equal the twin's. latent_append's norm sums squares in another order than the
// twin, so its slots are compared part by part: codes equal or a step apart where a value sits at a rounding
// boundary (counted, bounded), group scales within 1e-6, the RoPE part and every untouched slot byte for byte.
TEST(CudaFp8Cache, LatentAndKvAppendMatchTwin) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(812);
  const int64_t kvl = 512, rd = 64, cw = kvl + rd, n_slots = 1024, n_pos = 4096;
  const Fp8SlotLayout mla{cw, kvl, kvl};
  std::vector<float> cos(static_cast<size_t>(n_pos * 64)), sin(cos.size());
  for (size_t i = 0; i < cos.size(); ++i) cos[i] = std::cos(1e-3f * float(i)), sin[i] = std::sin(1e-3f * float(i));
  const gpu::DeviceBuffer d_cos = to_device(cos), d_sin = to_device(sin);
  for (const int64_t n_rows : {int64_t{1}, int64_t{9}, int64_t{300}}) {
    std::vector<float> latent = randn(static_cast<size_t>(n_rows * cw), rng, 2.0f);
    const std::vector<float> weight = randn(static_cast<size_t>(kvl), rng, 1.0f);
    std::vector<int32_t> positions(static_cast<size_t>(n_rows));
    for (auto& p : positions) p = static_cast<int32_t>(rng() % n_pos);
    const std::vector<int64_t> slots = shuffled_slots(n_rows, n_slots, rng);
    std::vector<uint8_t> pool(static_cast<size_t>(n_slots * mla.bytes()), 0x7F);
    const gpu::DeviceBuffer d_pool = to_device(pool), d_latent = to_device(latent), d_weight = to_device(weight),
                            d_pos = to_device(positions), d_slots = to_device(slots);
    LatentAppendParams p{.ld = cw, .kv_lora = kvl, .rope_dim = rd, .eps = 1e-6f, .interleaved = true,
                         .cache_type = DType::F8_E4M3, .n_rows = n_rows};
    p.latent = latent.data(), p.norm_weight = weight.data(), p.cos = cos.data(), p.sin = sin.data();
    p.positions = positions.data(), p.cache = pool.data(), p.slots = slots.data();
    twin::latent_append(p);
    p.latent = d_latent.as<float>(), p.norm_weight = d_weight.as<float>(), p.cos = d_cos.as<float>();
    p.sin = d_sin.as<float>(), p.positions = d_pos.as<int32_t>(), p.cache = d_pool.get();
    p.slots = d_slots.as<int64_t>();
    cuda::latent_append(p, nullptr);
    const std::vector<uint8_t> got = to_host<uint8_t>(d_pool, pool.size());
    std::vector<bool> written(static_cast<size_t>(n_slots));
    for (int64_t slot : slots) written[static_cast<size_t>(slot)] = true;
    int64_t codes_off = 0, bad = 0;
    double worst_scale = 0.0;
    for (int64_t slot = 0; slot < n_slots; ++slot) {
      const uint8_t* g = got.data() + slot * mla.bytes();
      const uint8_t* w = pool.data() + slot * mla.bytes();
      if (!written[static_cast<size_t>(slot)]) {  // untouched: the poison
        bad += std::memcmp(g, w, static_cast<size_t>(mla.bytes())) != 0;
        continue;
      }
      for (int64_t c = 0; c < kvl; ++c) {  // a code equal, or one step away (same sign) at a rounding boundary
        if (g[c] == w[c]) continue;
        const bool step = (g[c] & 0x80) == (w[c] & 0x80) && std::abs((g[c] & 0x7F) - (w[c] & 0x7F)) == 1;
        ++(step ? codes_off : bad);
      }
      for (int64_t k = 0; k < mla.groups(); ++k) {
        float a, b;
        std::memcpy(&a, g + mla.scale_offset() + 4 * k, 4);
        std::memcpy(&b, w + mla.scale_offset() + 4 * k, 4);
        worst_scale = std::max(worst_scale, std::fabs(double(a) - b) / std::fabs(double(b)));
      }
      bad += std::memcmp(g + mla.bf16_offset(), w + mla.bf16_offset(), 2 * rd) != 0;  // RoPE rounds as the twin
    }
    EXPECT_EQ(bad, 0) << "latent_append rows " << n_rows << ": bytes that differ beyond a code step";
    EXPECT_LE(codes_off, n_rows * kvl / 100) << "latent_append rows " << n_rows;
    EXPECT_LE(worst_scale, 1e-6) << "latent_append rows " << n_rows << ": the norm's order moves amax by ulps only";
  }
  for (const int64_t hd : {int64_t{128}, int64_t{256}, int64_t{64}}) {
    const int64_t nh = 8, nkv = 2, kvw = nkv * hd, W = (nh + 2 * nkv) * hd, n_rows = 33;
    const Fp8SlotLayout l{kvw, kvw, hd};
    const std::vector<float> qkv = randn(static_cast<size_t>(n_rows * W), rng, 3.0f);
    std::vector<int32_t> positions(static_cast<size_t>(n_rows));
    for (auto& p : positions) p = static_cast<int32_t>(rng() % n_pos);
    const std::vector<int64_t> slots = shuffled_slots(n_rows, n_slots, rng);
    std::vector<uint8_t> k_pool(static_cast<size_t>(n_slots * l.bytes()), 0x7F), v_pool = k_pool;
    std::vector<float> qkv_host = qkv;
    const gpu::DeviceBuffer d_k = to_device(k_pool), d_v = to_device(v_pool), d_qkv = to_device(qkv),
                            d_pos = to_device(positions), d_slots = to_device(slots);
    KvAppendParams p{.ld = W, .n_heads = nh, .n_kv_heads = nkv, .head_dim = hd, .rope_dim = std::min<int64_t>(hd, 64),
                     .interleaved = false, .cache_type = DType::F8_E4M3, .n_rows = n_rows};
    p.qkv = qkv_host.data(), p.cos = cos.data(), p.sin = sin.data(), p.positions = positions.data();
    p.k_cache = k_pool.data(), p.v_cache = v_pool.data(), p.slots = slots.data();
    twin::kv_append(p);
    p.qkv = d_qkv.as<float>(), p.cos = d_cos.as<float>(), p.sin = d_sin.as<float>();
    p.positions = d_pos.as<int32_t>(), p.k_cache = d_k.get(), p.v_cache = d_v.get(), p.slots = d_slots.as<int64_t>();
    cuda::kv_append(p, nullptr);
    // RoPE rounds each product and sum as the twin does: the bytes are equal.
    EXPECT_EQ(first_difference(to_host<uint8_t>(d_k, k_pool.size()), k_pool), -1) << "kv_append K, head_dim " << hd;
    EXPECT_EQ(first_difference(to_host<uint8_t>(d_v, v_pool.size()), v_pool), -1) << "kv_append V, head_dim " << hd;
  }
}

// The attention launchers on F8_E4M3 pools: MLA decode at V2 shapes with float32 operands (the generic float32
// kernel, each value as cache_gather reads it), GQA decode rows (the decode kernel: codes widened exactly, the scales
// folded into scores and weights) and a prefill chunk (generic), against the twins over the same pools (float32
// math in another order: within the float32 kernels' tolerance of test_cuda_attention.cpp).
TEST(CudaFp8Cache, AttentionOverFp8SlotsMatchesTwin) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(813);
  const int32_t bs = 16, n_seqs = 3, max_blocks = 40;
  std::vector<int32_t> tables(static_cast<size_t>(n_seqs * max_blocks));
  std::iota(tables.begin(), tables.end(), 0);
  std::shuffle(tables.begin(), tables.end(), rng);
  const std::vector<int32_t> kv_len = {1, 333, 611};
  const int64_t n_slots = int64_t{n_seqs} * max_blocks * bs;
  const gpu::DeviceBuffer d_tables = to_device(tables), d_len = to_device(kv_len);
  auto pool_of = [&](const Fp8SlotLayout& l) {  // every slot written; returns host bytes
    const std::vector<float> rows = randn(static_cast<size_t>(n_slots * l.width), rng, 1.0f);
    std::vector<int64_t> slots(static_cast<size_t>(n_slots));
    std::iota(slots.begin(), slots.end(), 0);
    std::vector<uint8_t> pool(static_cast<size_t>(n_slots * l.bytes()));
    twin::cache_write({.cache = pool.data(), .cache_type = DType::F8_E4M3, .width = l.width, .src = rows.data(),
                       .ld_src = l.width, .slots = slots.data(), .n_rows = n_slots, .fp8_quantised = l.quantised,
                       .fp8_segment = l.segment});
    return pool;
  };
  {  // MLA decode, V2-Lite's 16 heads
    const int32_t nh = 16, kvl = 512, rope = 64;
    const std::vector<uint8_t> pool = pool_of({kvl + rope, kvl, kvl});
    const std::vector<float> q_lat = randn(static_cast<size_t>(n_seqs * nh * kvl), rng, 0.05f);
    const std::vector<float> q_pe = randn(static_cast<size_t>(n_seqs * nh * rope), rng, 0.05f);
    std::vector<float> want(static_cast<size_t>(n_seqs * nh * kvl));
    MlaDecodeParams p{.n_seqs = n_seqs, .kv_len = kv_len.data(), .max_kv = 611,
                      .paged = {.block_size = bs, .block_tables = tables.data(), .max_blocks = max_blocks},
                      .cache = pool.data(), .cache_type = DType::F8_E4M3, .q_lat = q_lat.data(), .ld_q_lat = nh * kvl,
                      .q_pe = q_pe.data(), .ld_q_pe = nh * rope, .q_pe_head_stride = rope, .out = want.data(),
                      .ld_out = nh * kvl, .n_heads = nh, .kv_lora = kvl, .rope = rope, .scale = 0.1f};
    twin::mla_decode_attention(p);
    const gpu::DeviceBuffer d_pool = to_device(pool), d_ql = to_device(q_lat), d_qp = to_device(q_pe),
                            d_out = to_device(std::vector<float>(want.size(), std::nanf("")));
    p.kv_len = d_len.as<int32_t>(), p.paged.block_tables = d_tables.as<int32_t>(), p.cache = d_pool.get();
    p.q_lat = d_ql.as<float>(), p.q_pe = d_qp.as<float>(), p.out = d_out.as<float>();
    cuda::mla_decode_attention(p, nullptr);
    EXPECT_LE(test::max_rel_diff(to_host<float>(d_out, want.size()), want), 1e-4) << "MLA decode over FP8 slots";
  }
  for (const int32_t hd : {64, 128}) {  // GQA 32/8
    const int32_t nh = 32, nkv = 8;
    const Fp8SlotLayout l{nkv * hd, nkv * hd, hd};
    const std::vector<uint8_t> k = pool_of(l), v = pool_of(l);
    const gpu::DeviceBuffer d_k = to_device(k), d_v = to_device(v);
    for (const std::vector<int32_t>& cu_q : {std::vector<int32_t>{0, 1, 2, 3}, std::vector<int32_t>{0, 1, 41, 60}}) {
      const int32_t rows = cu_q.back(), max_q = rows == 3 ? 1 : 40;
      const std::vector<float> q = randn(static_cast<size_t>(rows * nh * hd), rng, 0.1f);
      std::vector<float> want(static_cast<size_t>(rows * nh * hd));
      GqaAttentionParams p{.batch = {.n_seqs = n_seqs, .cu_q = cu_q.data(), .kv_len = kv_len.data(), .max_q = max_q,
                                     .max_kv = 611},
                           .paged = {.block_size = bs, .block_tables = tables.data(), .max_blocks = max_blocks},
                           .k_cache = k.data(), .v_cache = v.data(), .cache_type = DType::F8_E4M3, .q = q.data(),
                           .ld_q = nh * hd, .out = want.data(), .ld_out = nh * hd, .n_heads = nh, .n_kv_heads = nkv,
                           .head_dim = hd, .scale = 0.088f};
      twin::gqa_attention(p);
      const gpu::DeviceBuffer d_cu = to_device(cu_q), d_q = to_device(q),
                              d_out = to_device(std::vector<float>(want.size(), std::nanf("")));
      p.batch.cu_q = d_cu.as<int32_t>(), p.batch.kv_len = d_len.as<int32_t>();
      p.paged.block_tables = d_tables.as<int32_t>(), p.k_cache = d_k.get(), p.v_cache = d_v.get();
      p.q = d_q.as<float>(), p.out = d_out.as<float>();
      cuda::gqa_attention(p, nullptr);
      EXPECT_LE(test::max_rel_diff(to_host<float>(d_out, want.size()), want), 1e-4)
          << "GQA over FP8 slots, head_dim " << hd << ", rows " << rows;
    }
  }
}

}  // namespace mlabench::kernels
