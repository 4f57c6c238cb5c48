// The F8_E4M3 KV cache slots of --kv-cache-dtype fp8 (issue 20) in the twins of cache_write, latent_append,
// kv_append and cache_gather, against the CPU reference engine's rounding (round_mla_slot_fp8, round_heads_fp8):
// what the GPU cache will hold in bytes is, read back, exactly what the CPU engine computes with.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/core/fp8.h"
#include "engine/kernels/twin/checks.h"
#include "engine/kernels/twin/twin.h"
#include "engine/model/cpu_attention.h"
#include "tests/kernels/attention_test_util.h"
#include "tests/test_util.h"

namespace mlabench::kernels {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

using test::randn;

// a and b equal bit for bit, or both NaN.
bool same_value(float a, float b) { return (std::isnan(a) && std::isnan(b)) || std::memcmp(&a, &b, 4) == 0; }

using test::error_of;

// Rows gathered back from an F8_E4M3 pool in float32, one sequence whose block table is `blocks` (block_size 4).
std::vector<float> gather_f32(const std::vector<uint8_t>& pool, const Fp8SlotLayout& l, const std::vector<int32_t>& blocks,
                              int32_t n_tokens) {
  std::vector<float> out(static_cast<size_t>(n_tokens * l.width), -1.0f);
  const int32_t cu[2] = {0, n_tokens};
  twin::cache_gather({.out = out.data(), .ld_out = l.width, .out_type = DType::F32, .cache = pool.data(),
                      .cache_type = DType::F8_E4M3, .width = l.width, .fp8_quantised = l.quantised,
                      .fp8_segment = l.segment, .block_size = 4, .block_tables = blocks.data(),
                      .max_blocks = static_cast<int32_t>(blocks.size()), .kv_len = &n_tokens, .cu_kv = cu,
                      .n_seqs = 1});
  return out;
}

}  // namespace

// The byte layout: FlashMLA's 656 B at V2's MLA shapes; a GQA pool's codes then a scale a head (two for 256-wide
// heads); regions padded to 16 bytes.
TEST(TwinFp8Cache, SlotLayoutIsFlashMlasAtV2ShapesAndPaddedTo16Bytes) {
  const Fp8SlotLayout mla{576, 512, 512};
  EXPECT_EQ(mla.groups(), 4);
  EXPECT_EQ(mla.scale_offset(), 512);
  EXPECT_EQ(mla.bf16_offset(), 528);
  EXPECT_EQ(mla.bytes(), 656);
  const Fp8SlotLayout gqa{8 * 128, 8 * 128, 128};
  EXPECT_EQ(gqa.groups(), 8);
  EXPECT_EQ(gqa.bytes(), 1024 + 32);
  const Fp8SlotLayout wide{2 * 256, 2 * 256, 256};
  EXPECT_EQ(wide.groups(), 4);
  const Fp8SlotLayout odd{96, 80, 40};  // two 40-value segments, 16 BF16 values
  EXPECT_EQ(odd.groups(), 2);
  EXPECT_EQ(odd.scale_offset(), 80);
  EXPECT_EQ(odd.bf16_offset(), 96);
  EXPECT_EQ(odd.bytes(), 128);
}

// latent_append into an F8_E4M3 pool: each row's slot, read back, is the same row appended to an F32 pool and then
// rounded by the CPU engine's round_mla_slot_fp8, bit for bit (V2 shapes, group magnitudes from 0.03 to 30, an
// all-zero group whose scale is 1, a row the norm turns to NaN); slots of other tokens keep their bytes.
TEST(TwinFp8Cache, LatentAppendHoldsTheCpuEnginesRoundedSlot) {
  std::mt19937 rng(71);
  const int64_t kvl = 512, rd = 64, cw = kvl + rd, n_rows = 5, half = rd / 2;
  const Fp8SlotLayout l{cw, kvl, kvl};
  std::vector<float> latent0 = randn(static_cast<size_t>(n_rows * cw), rng, 1.0f);
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t c = 0; c < kvl; ++c) latent0[static_cast<size_t>(r * cw + c)] *= std::pow(10.0f, float(c / 128) - 1.5f);
  std::vector<float> weight = randn(static_cast<size_t>(kvl), rng, 1.0f);
  for (int64_t c = 256; c < 384; ++c) weight[static_cast<size_t>(c)] = 0.0f;  // every row's group 2 is zero
  std::vector<float> cos(static_cast<size_t>(64 * half)), sin(cos.size());
  for (size_t i = 0; i < cos.size(); ++i) cos[i] = std::cos(0.01f * float(i)), sin[i] = std::sin(0.01f * float(i));
  const std::vector<int32_t> positions = {3, 0, 63, 7, 12};
  const std::vector<int64_t> slots = {9, 0, 4, 2, 13};  // blocks of 4: 2, 0, 1, 0, 3 (pos 1, 0, 0, 2, 1)
  auto append = [&](void* cache, DType type, std::vector<float>& latent) {
    latent = latent0;
    twin::latent_append({.latent = latent.data(), .ld = cw, .kv_lora = kvl, .rope_dim = rd,
                         .norm_weight = weight.data(), .eps = 1e-6f, .interleaved = false, .cos = cos.data(),
                         .sin = sin.data(), .positions = positions.data(), .cache = cache, .cache_type = type,
                         .slots = slots.data(), .n_rows = n_rows});
  };
  std::vector<float> f32_pool(static_cast<size_t>(16 * cw)), latent_f32, latent_fp8;
  std::vector<uint8_t> pool(static_cast<size_t>(16 * l.bytes()), 0xAB);
  append(f32_pool.data(), DType::F32, latent_f32);
  latent0[static_cast<size_t>(1 * cw + 5)] = kNaN;  // row 1: the norm makes its latent NaN, its RoPE part stays
  std::vector<float> f32_pool_nan(f32_pool.size()), latent_nan;
  append(f32_pool_nan.data(), DType::F32, latent_nan);
  append(pool.data(), DType::F8_E4M3, latent_fp8);
  const std::vector<float> got = gather_f32(pool, l, {0, 1, 2, 3}, 16);
  int64_t checked = 0;
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t slot = slots[static_cast<size_t>(r)];
    std::vector<float> want(f32_pool_nan.begin() + slot * cw, f32_pool_nan.begin() + (slot + 1) * cw);
    cpu::round_mla_slot_fp8(want.data(), kvl, rd);
    for (int64_t c = 0; c < cw; ++c, ++checked)
      ASSERT_TRUE(same_value(got[static_cast<size_t>(slot * cw + c)], want[static_cast<size_t>(c)]))
          << "row " << r << " column " << c << ": " << got[static_cast<size_t>(slot * cw + c)] << " vs "
          << want[static_cast<size_t>(c)];
    float zero_scale;
    std::memcpy(&zero_scale, pool.data() + slot * l.bytes() + l.scale_offset() + 2 * 4, 4);
    EXPECT_EQ(zero_scale, 1.0f) << "an all-zero group's scale is 1";
  }
  EXPECT_EQ(checked, n_rows * cw);
  for (int64_t slot : {1, 3, 5, 6, 7, 8, 10, 11, 12, 14, 15})
    for (int64_t b = 0; b < l.bytes(); ++b)
      ASSERT_EQ(pool[static_cast<size_t>(slot * l.bytes() + b)], 0xAB) << "slot " << slot << " byte " << b;
  // The rounding is not the identity: some values moved (e4m3 keeps 3 mantissa bits).
  int64_t moved = 0;
  for (int64_t c = 0; c < kvl; ++c)
    moved += got[static_cast<size_t>(slots[0] * cw + c)] != f32_pool[static_cast<size_t>(slots[0] * cw + c)];
  EXPECT_GT(moved, kvl / 2);
}

// kv_append into F8_E4M3 pools: K (after RoPE) and V slots read back as round_heads_fp8 of the F32 pools' slots, bit
// for bit, at 128-wide heads (a scale a head) and 256-wide heads (two a head); gathered into BF16, the same values
// rounded to BF16.
TEST(TwinFp8Cache, KvAppendHoldsRoundHeadsFp8) {
  for (const int64_t hd : {128, 256, 64}) {
    SCOPED_TRACE("head_dim " + std::to_string(hd));
    std::mt19937 rng(72 + static_cast<unsigned>(hd));
    const int64_t nh = 4, nkv = 2, kvw = nkv * hd, W = (nh + 2 * nkv) * hd, n_rows = 3, half = hd / 2;
    const Fp8SlotLayout l{kvw, kvw, hd};
    const std::vector<float> qkv0 = randn(static_cast<size_t>(n_rows * W), rng, 3.0f);
    std::vector<float> cos(static_cast<size_t>(8 * half)), sin(cos.size());
    for (size_t i = 0; i < cos.size(); ++i) cos[i] = std::cos(0.02f * float(i)), sin[i] = std::sin(0.02f * float(i));
    const std::vector<int32_t> positions = {1, 7, 4};
    const std::vector<int64_t> slots = {6, 1, 3};
    auto append = [&](void* k, void* v, DType type) {
      std::vector<float> qkv = qkv0;
      twin::kv_append({.qkv = qkv.data(), .ld = W, .n_heads = nh, .n_kv_heads = nkv, .head_dim = hd, .rope_dim = hd,
                       .interleaved = true, .cos = cos.data(), .sin = sin.data(), .positions = positions.data(),
                       .k_cache = k, .v_cache = v, .cache_type = type, .slots = slots.data(), .n_rows = n_rows});
    };
    std::vector<float> k32(static_cast<size_t>(8 * kvw)), v32 = k32;
    std::vector<uint8_t> k8(static_cast<size_t>(8 * l.bytes())), v8 = k8;
    append(k32.data(), v32.data(), DType::F32);
    append(k8.data(), v8.data(), DType::F8_E4M3);
    for (const auto& [pool8, pool32] : {std::pair{&k8, &k32}, std::pair{&v8, &v32}}) {
      const std::vector<float> got = gather_f32(*pool8, l, {0, 1}, 8);
      std::vector<uint16_t> got_bf16(static_cast<size_t>(8 * kvw));
      const int32_t n_tokens = 8, cu[2] = {0, 8}, blocks[2] = {0, 1};
      twin::cache_gather({.out = got_bf16.data(), .ld_out = kvw, .out_type = DType::BF16, .cache = pool8->data(),
                          .cache_type = DType::F8_E4M3, .width = kvw, .fp8_quantised = kvw, .fp8_segment = hd,
                          .block_size = 4, .block_tables = blocks, .max_blocks = 2, .kv_len = &n_tokens, .cu_kv = cu,
                          .n_seqs = 1});
      for (int64_t slot : slots) {
        std::vector<float> want(pool32->begin() + slot * kvw, pool32->begin() + (slot + 1) * kvw);
        cpu::round_heads_fp8(want.data(), nkv, hd);
        for (int64_t c = 0; c < kvw; ++c) {
          ASSERT_TRUE(same_value(got[static_cast<size_t>(slot * kvw + c)], want[static_cast<size_t>(c)]))
              << "slot " << slot << " column " << c;
          ASSERT_EQ(got_bf16[static_cast<size_t>(slot * kvw + c)], f32_to_bf16(want[static_cast<size_t>(c)]));
        }
      }
    }
  }
}

// cache_write's F8_E4M3 slot byte by byte on a hand-made row: codes e4m3(x / scale), scale amax / 448 per group,
// the tail in BF16; a group with a NaN keeps the NaN's code and scales by the other values' amax.
TEST(TwinFp8Cache, CacheWriteBytesAreCodesScalesAndBf16Tail) {
  const Fp8SlotLayout l{96, 80, 40};
  std::vector<float> row(96);
  for (int64_t c = 0; c < 96; ++c) row[static_cast<size_t>(c)] = 0.37f * float(c - 30);
  row[45] = kNaN;
  std::vector<uint8_t> slot(static_cast<size_t>(2 * l.bytes()), 0);
  const int64_t slots[1] = {1};
  twin::cache_write({.cache = slot.data(), .cache_type = DType::F8_E4M3, .width = 96, .src = row.data(), .ld_src = 96,
                     .slots = slots, .n_rows = 1, .fp8_quantised = 80, .fp8_segment = 40});
  const uint8_t* s = slot.data() + l.bytes();
  const float scales_want[2] = {0.37f * 30.0f / 448.0f, 0.37f * 49.0f / 448.0f};  // |x| max: c = 0 and c = 79
  for (int g = 0; g < 2; ++g) {
    float scale;
    std::memcpy(&scale, s + l.scale_offset() + 4 * g, 4);
    EXPECT_EQ(scale, fp8_block_scale(scales_want[g] * 448.0f)) << g;
    for (int64_t c = 40 * g; c < 40 * g + 40; ++c)
      EXPECT_EQ(s[c], quantize_e4m3(row[static_cast<size_t>(c)], scale)) << c;
  }
  EXPECT_TRUE(std::isnan(e4m3_to_f32(s[45])));
  for (int64_t c = 80; c < 96; ++c) {
    uint16_t b;
    std::memcpy(&b, s + l.bf16_offset() + 2 * (c - 80), 2);
    EXPECT_EQ(b, f32_to_bf16(row[static_cast<size_t>(c)])) << c;
  }
  for (int64_t b = 0; b < l.bytes(); ++b) ASSERT_EQ(slot[static_cast<size_t>(b)], 0) << "slot 0 byte " << b;
}

// Refused by name: a segment that does not divide the quantised values, quantised values past the slot, an F16
// gather from an F8_E4M3 pool, and an F16 pool (the hint lists F8_E4M3 among the pools there are).
TEST(TwinFp8Cache, RefusesLayoutsThatDoNotFitNamingThem) {
  std::vector<float> row(96, 1.0f);
  std::vector<uint8_t> slot(256);
  const int64_t slots[1] = {0};
  CacheWriteParams w{.cache = slot.data(), .cache_type = DType::F8_E4M3, .width = 96, .src = row.data(), .ld_src = 96,
                     .slots = slots, .n_rows = 1, .fp8_quantised = 80, .fp8_segment = 30};
  EXPECT_NE(error_of([&] { twin::cache_write(w); }).find("fp8_segment 30"), std::string::npos);
  w.fp8_segment = 40;
  w.fp8_quantised = 120;
  EXPECT_NE(error_of([&] { twin::cache_write(w); }).find("fp8_quantised 120"), std::string::npos);
  std::vector<uint16_t> out(96);
  const int32_t n = 1, cu[2] = {0, 1}, blocks[1] = {0};
  CacheGatherParams g{.out = out.data(), .ld_out = 96, .out_type = DType::F16, .cache = slot.data(),
                      .cache_type = DType::F8_E4M3, .width = 96, .fp8_quantised = 80, .fp8_segment = 40,
                      .block_size = 4, .block_tables = blocks, .max_blocks = 1, .kv_len = &n, .cu_kv = cu, .n_seqs = 1};
  EXPECT_NE(error_of([&] { twin::cache_gather(g); }).find("out_type F16"), std::string::npos);
  g.out_type = DType::F32;
  g.cache_type = DType::F16;
  EXPECT_NE(error_of([&] { twin::cache_gather(g); }).find("F8_E4M3"), std::string::npos);  // the hint names it
}

namespace {

// A pool of n_slots F8_E4M3 slots written from random rows (group magnitudes apart), and the same slots read back
// into a float32 pool: attention over either must give the same bits.
struct Fp8Pools {
  std::vector<uint8_t> fp8;
  std::vector<float> f32;
};
Fp8Pools fp8_pools(const Fp8SlotLayout& l, int64_t n_slots, std::mt19937& rng) {
  std::vector<float> rows = randn(static_cast<size_t>(n_slots * l.width), rng, 1.0f);
  for (int64_t i = 0; i < n_slots * l.width; ++i) rows[static_cast<size_t>(i)] *= float(1 + (i / 64) % 5);
  std::vector<int64_t> slots(static_cast<size_t>(n_slots));
  for (int64_t i = 0; i < n_slots; ++i) slots[static_cast<size_t>(i)] = i;
  Fp8Pools p{std::vector<uint8_t>(static_cast<size_t>(n_slots * l.bytes())), std::vector<float>(rows.size())};
  twin::cache_write({.cache = p.fp8.data(), .cache_type = DType::F8_E4M3, .width = l.width, .src = rows.data(),
                     .ld_src = l.width, .slots = slots.data(), .n_rows = n_slots, .fp8_quantised = l.quantised,
                     .fp8_segment = l.segment});
  for (int64_t s = 0; s < n_slots; ++s)
    for (int64_t c = 0; c < l.width; ++c)
      p.f32[static_cast<size_t>(s * l.width + c)] = twin::read_fp8_slot(l, p.fp8.data() + s * l.bytes(), c);
  return p;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

// What the MLA decode forms' tests read: 3 heads at V2's 512 + 64 widths over F8_E4M3 slots, two sequences of 13
// and 29 keys over out-of-order blocks of 4; q drawn after the pools (rng order fixed).
struct MlaFp8Case {
  static constexpr int32_t kBs = 4, kSeqs = 2, kMaxBlocks = 8, kHeads = 3, kLora = 512, kRope = 64;
  std::vector<int32_t> tables = {7, 2, 5, 0, 1, 3, 4, 6, 9, 8, 10, 11, 12, 13, 14, 15};
  std::vector<int32_t> kv_len = {13, 29};
  Fp8Pools pools;
  std::vector<float> q_lat, q_pe;
  explicit MlaFp8Case(std::mt19937& rng)
      : pools(fp8_pools(Fp8SlotLayout{kLora + kRope, kLora, kLora}, 64, rng)),
        q_lat(randn(static_cast<size_t>(kSeqs * kHeads * kLora), rng, 0.1f)),
        q_pe(randn(static_cast<size_t>(kSeqs * kHeads * kRope), rng, 0.1f)) {}
  std::vector<float> out() const { return std::vector<float>(static_cast<size_t>(kSeqs * kHeads * kLora)); }
  // BF16 operands over the FP8 slots in the given form, into out.
  MlaDecodeParams params(std::vector<float>& out, MlaFp8Operands form) const {
    return {.n_seqs = kSeqs, .kv_len = kv_len.data(), .max_kv = 29,
            .paged = {.block_size = kBs, .block_tables = tables.data(), .max_blocks = kMaxBlocks},
            .cache = pools.fp8.data(), .cache_type = DType::F8_E4M3, .q_lat = q_lat.data(),
            .ld_q_lat = kHeads * kLora, .q_pe = q_pe.data(), .ld_q_pe = kHeads * kRope, .q_pe_head_stride = kRope,
            .out = out.data(), .ld_out = kHeads * kLora, .n_heads = kHeads, .kv_lora = kLora, .rope = kRope,
            .scale = 0.3f, .bf16_operands = true, .fp8_operands = form};
  }
};

}  // namespace

// MLA decode and GQA attention (decode rows and a prefill chunk) read an F8_E4M3 pool as cache_gather reads it: the
// output over it is, bit for bit, the output over a float32 pool holding the dequantised values (block tables out of
// order, two sequences of lengths off the block size).
TEST(TwinFp8Cache, AttentionReadsTheSlotsAsGatherReadsThem) {
  std::mt19937 rng(73);
  const int32_t bs = 4, n_seqs = 2, max_blocks = 8;
  const std::vector<int32_t> tables = {7, 2, 5, 0, 1, 3, 4, 6, 9, 8, 10, 11, 12, 13, 14, 15};  // 16 blocks of 4
  const std::vector<int32_t> kv_len = {13, 29};
  const PagedCache paged{.block_size = bs, .block_tables = tables.data(), .max_blocks = max_blocks};
  {
    const int32_t nh = 3, kvl = 256, rope = 64;
    const Fp8SlotLayout l{kvl + rope, kvl, kvl};
    const Fp8Pools pools = fp8_pools(l, 64, rng);
    const std::vector<float> q_lat = randn(static_cast<size_t>(n_seqs * nh * kvl), rng, 0.1f);
    const std::vector<float> q_pe = randn(static_cast<size_t>(n_seqs * nh * rope), rng, 0.1f);
    std::vector<float> out8(static_cast<size_t>(n_seqs * nh * kvl)), out32 = out8;
    MlaDecodeParams p{.n_seqs = n_seqs, .kv_len = kv_len.data(), .max_kv = 29, .paged = paged, .cache = pools.fp8.data(),
                      .cache_type = DType::F8_E4M3, .q_lat = q_lat.data(), .ld_q_lat = nh * kvl, .q_pe = q_pe.data(),
                      .ld_q_pe = nh * rope, .q_pe_head_stride = rope, .out = out8.data(), .ld_out = nh * kvl,
                      .n_heads = nh, .kv_lora = kvl, .rope = rope, .scale = 0.3f};
    twin::mla_decode_attention(p);
    p.cache = pools.f32.data(), p.cache_type = DType::F32, p.out = out32.data();
    twin::mla_decode_attention(p);
    EXPECT_TRUE(same_bits(out8, out32)) << "MLA decode";
  }
  for (const int32_t hd : {64, 128}) {
    const int32_t nh = 4, nkv = 2;
    const Fp8SlotLayout l{nkv * hd, nkv * hd, hd};
    const Fp8Pools k = fp8_pools(l, 64, rng), v = fp8_pools(l, 64, rng);
    for (const std::vector<int32_t>& cu_q : {std::vector<int32_t>{0, 1, 2}, std::vector<int32_t>{0, 5, 12}}) {
      const int32_t rows = cu_q.back();
      const std::vector<float> q = randn(static_cast<size_t>(rows * nh * hd), rng, 0.2f);
      std::vector<float> out8(static_cast<size_t>(rows * nh * hd)), out32 = out8;
      GqaAttentionParams p{.batch = {.n_seqs = n_seqs, .cu_q = cu_q.data(), .kv_len = kv_len.data(),
                                     .max_q = rows == 2 ? 1 : 7, .max_kv = 29},
                           .paged = paged, .k_cache = k.fp8.data(), .v_cache = v.fp8.data(),
                           .cache_type = DType::F8_E4M3, .q = q.data(), .ld_q = nh * hd, .out = out8.data(),
                           .ld_out = nh * hd, .n_heads = nh, .n_kv_heads = nkv, .head_dim = hd, .scale = 0.125f};
      twin::gqa_attention(p);
      p.k_cache = k.f32.data(), p.v_cache = v.f32.data(), p.cache_type = DType::F32, p.out = out32.data();
      twin::gqa_attention(p);
      EXPECT_TRUE(same_bits(out8, out32)) << "GQA head_dim " << hd << ", rows " << rows;
    }
  }
}

// MLA decode with BF16 operands over F8_E4M3 slots in the BF16-value form (MlaFp8Operands::BF16_VALUES; the Hopper
// kernel widens each code x scale to BF16 in shared memory): bit for bit the output over a BF16 pool holding
// BF16(code x scale) and the slots' BF16 RoPE part, with the same BF16 operands; not the float32 read of the same
// slots (the rounding is there to be seen); and AUTO is the form kMlaFp8OperandsDefault names.
TEST(TwinFp8Cache, Bf16ValuesFormReadsEachSlotValueRoundedToBf16) {
  std::mt19937 rng(74);
  const MlaFp8Case c(rng);
  std::vector<uint16_t> bf16(c.pools.f32.size());
  for (size_t i = 0; i < bf16.size(); ++i) bf16[i] = f32_to_bf16(c.pools.f32[i]);  // the RoPE part: exact
  std::vector<float> out8 = c.out(), out16 = out8, out32 = out8, out_auto = out8;
  const MlaDecodeParams p = c.params(out8, MlaFp8Operands::BF16_VALUES);
  twin::mla_decode_attention(p);
  MlaDecodeParams b = p;
  b.cache = bf16.data(), b.cache_type = DType::BF16, b.out = out16.data();
  twin::mla_decode_attention(b);
  EXPECT_TRUE(same_bits(out8, out16)) << "FP8 slots with BF16 operands against the BF16 pool of their values";
  MlaDecodeParams f = p;
  f.bf16_operands = false, f.out = out32.data();
  twin::mla_decode_attention(f);
  EXPECT_FALSE(same_bits(out8, out32)) << "BF16 operands left the float32 read unchanged: the test cannot tell";
  MlaDecodeParams a = p;
  a.fp8_operands = MlaFp8Operands::AUTO, a.out = out_auto.data();
  twin::mla_decode_attention(a);
  EXPECT_EQ(same_bits(out_auto, out8), kMlaFp8OperandsDefault == MlaFp8Operands::BF16_VALUES)
      << "AUTO is not the default form";
}

// The F16 form (MlaFp8Operands::F16: codes exact, scales in float32, q's latent part in F16 at
// mla_f16_query_shift, q_pe in BF16): bit for bit the float32 read of the same slots with q so rounded beforehand;
// and not the float32 read with q as it is (the rounding is there to be seen). The heads' queries differ in
// magnitude by 2^20, so a shared F16 scale would flush the small ones: each head's own shift keeps them.
TEST(TwinFp8Cache, F16FormTakesExactValuesAndF16Queries) {
  std::mt19937 rng(74);
  MlaFp8Case c(rng);
  const int32_t kvl = MlaFp8Case::kLora, nh = MlaFp8Case::kHeads;
  for (size_t i = 0; i < c.q_lat.size(); ++i)
    c.q_lat[i] = std::ldexp(c.q_lat[i], 10 * static_cast<int>((i / kvl) % nh) - 10);
  const std::vector<float>& q_lat = c.q_lat;
  const std::vector<float>& q_pe = c.q_pe;
  std::vector<float> q_lat16 = q_lat, q_pe16 = q_pe;
  for (size_t h = 0; h < q_lat.size() / kvl; ++h) {  // each head's latent query in F16 at its shift
    float amax = 0.0f;
    for (int32_t col = 0; col < kvl; ++col) amax = std::max(amax, std::fabs(q_lat[h * kvl + col]));
    const int32_t e = mla_f16_query_shift(amax);
    for (int32_t col = 0; col < kvl; ++col) {
      float& x = q_lat16[h * kvl + col];
      x = std::ldexp(f16_to_f32(f32_to_f16(std::ldexp(x, e))), -e);
    }
  }
  for (float& x : q_pe16) x = bf16_to_f32(f32_to_bf16(x));
  std::vector<float> out8 = c.out(), out_rounded = out8, out32 = out8;
  const MlaDecodeParams p = c.params(out8, MlaFp8Operands::F16);
  twin::mla_decode_attention(p);
  MlaDecodeParams f = p;  // the float32 read of the slots, q rounded by the test
  f.cache = c.pools.f32.data(), f.cache_type = DType::F32, f.bf16_operands = false;
  f.q_lat = q_lat16.data(), f.q_pe = q_pe16.data(), f.out = out_rounded.data();
  twin::mla_decode_attention(f);
  EXPECT_TRUE(same_bits(out8, out_rounded)) << "FP8 slots with BF16 operands against the float32 read, q rounded";
  f.q_lat = q_lat.data(), f.q_pe = q_pe.data(), f.out = out32.data();
  twin::mla_decode_attention(f);
  EXPECT_FALSE(same_bits(out8, out32)) << "BF16 operands left the float32 read unchanged: the test cannot tell";
  for (size_t i = 0; i < out8.size(); ++i) ASSERT_TRUE(std::isfinite(out8[i])) << "output " << i;
}

// mla_f16_query_shift: the largest value times 2^e lands in [2^14, 2^15) over float32's normal range and its
// subnormals down to where the clamp holds; 0 for 0, infinity and NaN.
TEST(TwinFp8Cache, F16QueryShiftPutsTheLargestValueBelowF16sMaximum) {
  for (int k = -100; k <= 100; ++k)
    for (const float m : {1.0f, 1.25f, 1.5f, 1.9999999f}) {
      const float amax = std::ldexp(m, k);
      const float scaled = std::ldexp(amax, mla_f16_query_shift(amax));
      EXPECT_GE(scaled, 16384.0f) << "amax " << amax;
      EXPECT_LT(scaled, 32768.0f) << "amax " << amax;
    }
  EXPECT_EQ(mla_f16_query_shift(1.0f), 14);
  EXPECT_EQ(mla_f16_query_shift(65504.0f), -1);
  EXPECT_EQ(mla_f16_query_shift(std::ldexp(1.0f, -140)), 120);  // clamped: 2^120 stays a normal float
  EXPECT_EQ(mla_f16_query_shift(3.0e38f), -113);
  EXPECT_EQ(mla_f16_query_shift(0.0f), 0);
  EXPECT_EQ(mla_f16_query_shift(std::numeric_limits<float>::infinity()), 0);
  EXPECT_EQ(mla_f16_query_shift(std::nanf("")), 0);
}

}  // namespace mlabench::kernels
