// CUDA attention kernels (engine/kernels/cuda/attention.cu, mla_decode.cu, gqa_decode.cu) against their twins on
// the same host buffers: MLA decode, MLA prefill and MHA/GQA (prefill and the decode kernel) at DeepSeek-V2-Lite /
// V2 / Llama shapes, over shuffled paged BF16 pools whose every unowned slot (other blocks, the tail of each last
// block) holds NaN, with and without split-KV scratch. Output buffers start as NaN on both sides, so an unwritten
// element fails too. Decode cases also run with max_kv at twice the longest sequence, as a captured graph passes
// it (the bucket's block bound): the split plan must still cover every key.
//
// Tolerance: both sides read identical BF16 cache values and float32 queries; the kernels split every float32
// MMA operand into two BF16 parts (error ~2^-17 relative) and accumulate in float32, so they differ from the
// twin's float32 loops by summation order and exp2 vs exp: ~1e-5 of the largest output. 5e-4 leaves headroom
// and still fails a kernel that drops or repeats one key of a 1000-key row.
//
// MLA decode cases also run the Hopper kernel over the same keys as F8_E4M3 slots (unowned slots all 0xFF: NaN
// codes, scales and RoPE values) against the twin over those slots with BF16 operands, in both of the kernel's forms
// (MlaFp8Operands: values code x scale in BF16, kTolBf16P; or exact, q's latent part in F16, kTolF16P).
//
// Each case also runs the float32 path of the engine's float32 precision: the same pool widened exactly to F32
// (cache_type F32), and MLA prefill with float32_math: float32 CUDA-core kernels whose only difference from the
// twin is summation order and expf, so they get the tighter kTolF32 (a 131K-key row sums 131K float32 terms).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/twin/twin.h"
#include "tests/kernels/attention_test_util.h"
#include "tests/kernels/gpu_test_util.h"

namespace mlabench::kernels {
namespace {

constexpr double kTol = 5e-4;
constexpr double kTolF32 = 1e-4;
// MLA decode with BF16 operands (the engine's BF16 precision): the twin rounds q as the kernel does; the kernel
// also rounds each P to BF16 (2^-9 relative, scaled by its tile's running max), which the twin cannot follow.
// Those roundings are independent and average out over the keys: 2e-3 bounds them with headroom at every length
// here while still failing a kernel that mixes up heads, values or tiles (errors of order 1).
constexpr double kTolBf16P = 2e-3;
// MLA decode over F8_E4M3 slots (the F16 form): the twin takes the kernel's F16 queries and exact values; the kernel
// rounds each weight times its key's scale to F16 (2^-11 relative, 8 times finer than BF16's P), which the twin does
// not: half of kTolBf16P, still far below an error of order 1.
constexpr double kTolF16P = 1e-3;
constexpr float kPoison = std::numeric_limits<float>::quiet_NaN();
// Cache lengths around tile edges (16/32/64 keys), plus long ones.
const std::vector<int32_t> kLengths{1, 2, 15, 16, 17, 63, 64, 65, 300, 1000, 4097};
// Decode lengths around the decode kernels' tiles (MLA: 32 keys; GQA: 16 keys per warp, 64 per split unit).
const std::vector<int32_t> kDecodeLengths{1, 3, 31, 32, 33, 47, 95, 96, 97, 127, 129, 255, 1023, 1025, 3001, 8191};

// n decode sequences with random lengths in [1, max_len] (seeded), the first one exactly max_len.
std::vector<int32_t> random_lengths(int n, int32_t max_len, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> len(1, max_len);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = len(rng);
  v[0] = max_len;
  return v;
}

// A pool with random values in every owned slot.
struct Paged : test::PagedPool {
  Paged(const std::vector<int32_t>& kv_len, int32_t bs, int64_t w, std::mt19937& rng) : PagedPool(kv_len, bs, w, rng) {
    refill(kv_len, rng);
  }
};
using test::randn;
using Varlen = test::VarlenBuilder;

// n sequences cycling through kLengths; prefill rows: a full prompt or a chunk continuing a cached prefix.
Varlen mixed_batch(int n, bool decode) {
  Varlen b;
  for (int i = 0; i < n; ++i) {
    const int32_t kv = kLengths[static_cast<size_t>(i) % kLengths.size()];
    int32_t q = 1;
    if (!decode) q = kv <= 300 && i % 2 == 0 ? kv : std::min(kv, i % 3 == 0 ? 64 : 17 + i % 5);
    b.add(q, kv);
  }
  return b;
}

// ---- MLA decode ---------------------------------------------------------------------------------------------

// The pool's slots as F8_E4M3 slots of layout l (--kv-cache-dtype fp8): each owned slot's values quantised as
// cache_write writes them; every unowned one 0xFF bytes: NaN codes, NaN scales and a NaN RoPE part.
std::vector<uint8_t> fp8_slots(const test::PagedPool& cache, const Fp8SlotLayout& l) {
  const int64_t n_slots = static_cast<int64_t>(cache.pool.size()) / cache.width;
  std::vector<uint8_t> out(static_cast<size_t>(n_slots * l.bytes()), 0xFF);
  std::vector<float> row(static_cast<size_t>(cache.width));
  for (int64_t s = 0; s < n_slots; ++s) {
    const uint16_t* x = cache.pool.data() + s * cache.width;
    if (std::isnan(bf16_to_f32(x[0]))) continue;  // unowned (owned slots hold random values)
    std::transform(x, x + cache.width, row.begin(), bf16_to_f32);
    twin::write_fp8_slot(l, row.data(), out.data() + s * l.bytes());
  }
  return out;
}

// max_kv_factor 2: max_kv twice the longest sequence, as a captured decode graph passes it. magnitude_ramp: each
// latent value times 2^k, k in [-3, 3] by its 64-key tile, 128-value group and key parity (exact in BF16), so the
// FP8 pool's scales rise and fall from tile to tile and group to group (the F16 form's sigma and its rescale of O).
void check_mla_decode(int32_t n_heads, int32_t bs, const std::vector<int32_t>& kv_len, unsigned seed,
                      int32_t max_kv_factor = 1, bool magnitude_ramp = false) {
  SCOPED_TRACE(testing::Message() << "mla_decode heads " << n_heads << " block " << bs << " seqs " << kv_len.size()
                                  << " max_kv " << *std::max_element(kv_len.begin(), kv_len.end()) << " x "
                                  << max_kv_factor);
  std::mt19937 rng(seed);
  const int32_t kv_lora = 512, rope = 64, nope = 128, n = static_cast<int32_t>(kv_len.size());
  Paged cache(kv_len, bs, kv_lora + rope, rng);
  if (magnitude_ramp)
    for (size_t s = 0; s < kv_len.size(); ++s)
      for (int32_t pos = 0; pos < kv_len[s]; ++pos)
        for (int32_t c = 0; c < kv_lora; ++c) {
          uint16_t* x = cache.at(s, pos) + c;
          *x = f32_to_bf16(std::ldexp(bf16_to_f32(*x), ((pos / 64) * 5 + (c / 128) * 3 + pos % 2) % 7 - 3));
        }
  const int64_t ld_q_lat = int64_t{n_heads} * kv_lora + 4, ld_q = int64_t{n_heads} * (nope + rope);
  const int64_t ld_out = int64_t{n_heads} * kv_lora + 3;
  const auto q_lat = randn(static_cast<size_t>(n * ld_q_lat), rng);
  const auto q = randn(static_cast<size_t>(n * ld_q), rng);  // q_pe: the rope part of each head's query
  std::vector<float> out(static_cast<size_t>(n * ld_out), kPoison);

  MlaDecodeParams p;
  p.n_seqs = n;
  p.kv_len = kv_len.data();
  p.max_kv = *std::max_element(kv_len.begin(), kv_len.end()) * max_kv_factor;
  p.paged = cache.view(cache.table.data());
  p.cache = cache.pool.data();
  p.q_lat = q_lat.data();
  p.ld_q_lat = ld_q_lat;
  p.q_pe = q.data() + nope;
  p.ld_q_pe = ld_q;
  p.q_pe_head_stride = nope + rope;
  p.out = out.data();
  p.ld_out = ld_out;
  p.n_heads = n_heads;
  p.kv_lora = kv_lora;
  p.rope = rope;
  p.scale = 0.06f;  // scores spread over a few units: neither uniform nor one-hot
  p.n_slots = static_cast<int64_t>(cache.pool.size()) / (kv_lora + rope);
  std::vector<float> want = out, want_bf16 = out;
  p.out = want.data();
  twin::mla_decode_attention(p);
  MlaDecodeParams pb = p;  // the engine's BF16 precision: q (and, in the kernel, P) rounded to BF16
  pb.bf16_operands = true;
  pb.out = want_bf16.data();
  twin::mla_decode_attention(pb);
  // The same keys in an F8_E4M3 pool (--kv-cache-dtype fp8) with BF16 operands, in each form of the Hopper kernel
  // (MlaFp8Operands: the values rounded to BF16, or exact with F16 queries).
  const std::vector<uint8_t> pool_fp8 = fp8_slots(cache, p.fp8_layout());
  std::map<MlaFp8Operands, std::vector<float>> want_fp8;
  for (const MlaFp8Operands form : {MlaFp8Operands::BF16_VALUES, MlaFp8Operands::F16}) {
    want_fp8[form] = out;
    MlaDecodeParams p8 = pb;
    p8.cache = pool_fp8.data(), p8.cache_type = DType::F8_E4M3, p8.out = want_fp8[form].data();
    p8.fp8_operands = form;
    twin::mla_decode_attention(p8);
  }

  const auto d_len = test::to_device(kv_len);
  const auto d_table = test::to_device(cache.table);
  const auto d_cache = test::to_device(cache.pool), d_cache_f32 = test::to_device(cache.widened()),
             d_cache_fp8 = test::to_device(pool_fp8);
  const auto d_q_lat = test::to_device(q_lat);
  const auto d_q = test::to_device(q);
  struct Mode {
    bool split, f32, bf16_operands;
    MlaDecodeKernel kernel;
    bool cache_early = false;  // the Hopper kernel's cache stream before its PDL wait: the same bits as without
    int32_t force_splits = 0;  // MlaDecodeParams::force_splits (0: the plan)
    bool fp8 = false;          // the F8_E4M3 pool (the Hopper kernel widens its codes)
    int32_t persistent = 0;    // MlaDecodeParams::persistent_ctas (3: a CTA takes many items, their ring runs on)
  };
  // BF16 operands run on both tensor-core kernels: the Hopper one (wgmma + TMA) where this GPU and build have it.
  std::vector<Mode> modes = {{false, false, false, MlaDecodeKernel::MMA},
                             {true, false, false, MlaDecodeKernel::MMA},
                             {true, true, false, MlaDecodeKernel::MMA},
                             {false, false, true, MlaDecodeKernel::MMA},
                             {true, false, true, MlaDecodeKernel::MMA}};
  MlaDecodeParams probe = p;
  probe.bf16_operands = true;
  probe.cache = d_cache.get();
  if (cuda::mla_decode_hopper_supported(probe)) {
    modes.push_back({false, false, true, MlaDecodeKernel::WGMMA});
    modes.push_back({true, false, true, MlaDecodeKernel::WGMMA});
    modes.push_back({true, false, true, MlaDecodeKernel::WGMMA, true});
    // One 64-key tile a split (the Hopper kernel's second warpgroup then has no keys), and one split of every tile.
    const int32_t longest = *std::max_element(kv_len.begin(), kv_len.end());
    modes.push_back({true, false, true, MlaDecodeKernel::WGMMA, false, std::min(256, (longest + 63) / 64)});
    modes.push_back({true, false, true, MlaDecodeKernel::WGMMA, false, 1});
    // The FP8 pool on the same kernel: one split, the plan, cache_early, one tile a split.
    modes.push_back({false, false, true, MlaDecodeKernel::WGMMA, false, 0, true});
    modes.push_back({true, false, true, MlaDecodeKernel::WGMMA, false, 0, true});
    modes.push_back({true, false, true, MlaDecodeKernel::WGMMA, true, 0, true});
    modes.push_back({true, false, true, MlaDecodeKernel::WGMMA, false, std::min(256, (longest + 63) / 64), true});
    // Items (head group, sequence, split) a CTA: one each, and three CTAs for all of them (the ring running on
    // from item to item, the merge through held chunks), BF16 and FP8 pools, with and without split scratch.
    for (bool fp8_pool : {false, true}) {
      modes.push_back({true, false, true, MlaDecodeKernel::WGMMA, false, 0, fp8_pool, -1});
      modes.push_back({true, false, true, MlaDecodeKernel::WGMMA, false, 0, fp8_pool, 3});
      modes.push_back({true, false, true, MlaDecodeKernel::WGMMA, true, 0, fp8_pool, 3});
      modes.push_back({false, false, true, MlaDecodeKernel::WGMMA, false, 0, fp8_pool, -1});
      modes.push_back({false, false, true, MlaDecodeKernel::WGMMA, false, 0, fp8_pool, 3});
    }
  }
  // The first Hopper result of each (split scratch, pool, FP8 form) without forced splits; the others must equal it
  // bit for bit (cache_early and the items' CTAs change where and when, never what, a value is computed). Each FP8
  // mode runs in both forms.
  std::map<std::pair<bool, MlaFp8Operands>, std::vector<float>> wgmma_first;
  std::vector<std::pair<Mode, MlaFp8Operands>> runs;
  for (const Mode& m : modes)
    for (const MlaFp8Operands form : {MlaFp8Operands::BF16_VALUES, MlaFp8Operands::F16, MlaFp8Operands::AUTO})
      if (m.fp8 != (form == MlaFp8Operands::AUTO)) runs.emplace_back(m, form);
  for (const auto& [mode, form] : runs) {
    const auto [split, f32, bf16_ops, kernel, cache_early, force_splits, fp8, persistent] = mode;
    const auto d_out = test::to_device(out);
    MlaDecodeParams d = p;
    d.fp8_operands = form;
    d.force_splits = force_splits;
    d.bf16_operands = bf16_ops;
    d.kernel = kernel;
    d.cache_early = cache_early;
    d.persistent_ctas = persistent;
    d.kv_len = d_len.as<int32_t>();
    d.paged.block_tables = d_table.as<int32_t>();
    d.cache = f32 ? d_cache_f32.get() : fp8 ? d_cache_fp8.get() : d_cache.get();
    d.cache_type = f32 ? DType::F32 : fp8 ? DType::F8_E4M3 : DType::BF16;
    d.q_lat = d_q_lat.as<float>();
    d.q_pe = d_q.as<float>() + nope;
    d.out = d_out.as<float>();
    gpu::DeviceBuffer scratch;
    if (split && mla_decode_scratch_floats(d) > 0) {
      // NaN: a partial the merge reads but no split wrote shows.
      scratch = test::to_device(std::vector<float>(static_cast<size_t>(mla_decode_scratch_floats(d)), kPoison));
      d.scratch = scratch.as<float>();
      d.scratch_floats = mla_decode_scratch_floats(d);
    }
    cuda::mla_decode_attention(d, nullptr);
    const std::vector<float> got = test::to_host<float>(d_out, out.size());
    if (kernel == MlaDecodeKernel::WGMMA && force_splits == 0) {
      const auto key = std::make_pair(split, form);
      if (const auto it = wgmma_first.find(key); it != wgmma_first.end())
        EXPECT_TRUE(got.size() == it->second.size() &&
                    std::memcmp(got.data(), it->second.data(), got.size() * sizeof(float)) == 0)
            << "the wgmma kernel's result changed with cache_early " << cache_early << ", persistent_ctas "
            << persistent << (split ? ", split scratch" : ", no scratch") << (fp8 ? ", FP8 cache" : "")
            << " (compared bit for bit, NaN padding included)";
      else
        wgmma_first.emplace(key, got);
    }
    const bool f16_form = form == MlaFp8Operands::F16;
    const double diff = test::max_rel_diff(got, fp8 ? want_fp8[form] : bf16_ops ? want_bf16 : want);
    EXPECT_LE(diff, f32 ? kTolF32 : f16_form ? kTolF16P : bf16_ops ? kTolBf16P : kTol)
        << (kernel == MlaDecodeKernel::WGMMA ? "wgmma kernel, " : "mma.sync kernel, ")
        << (f32 ? "F32 cache, " : fp8 ? (f16_form ? "F8_E4M3 cache (F16 form), " : "F8_E4M3 cache (BF16 values), ")
                                      : "BF16 cache, ")
        << (bf16_ops ? "BF16 operands, " : "")
        << (split ? "with" : "without") << " split-KV scratch, splits " << mla_decode_splits(d);
    if (bf16_ops && split && kv_len.size() == 1)
      std::printf("[ mla decode bf16 operands, %s%s ] kv %d: %.2e\n",
                  kernel == MlaDecodeKernel::WGMMA ? "wgmma" : "mma.sync",
                  !fp8 ? "" : f16_form ? ", fp8 cache (f16 form)" : ", fp8 cache (bf16 values)", kv_len[0], diff);
  }
}

// Key magnitudes that change by up to 2^6 between tiles, groups and neighbouring keys (magnitude_ramp).
TEST(CudaAttention, MlaDecodeKeyMagnitudesVaryAcrossTilesAndGroups) {
  MLABENCH_REQUIRE_GPU();
  check_mla_decode(16, 64, {1000, 4097, 65}, 16, 1, true);
  check_mla_decode(128, 16, {300, 2000}, 17, 1, true);
}

TEST(CudaAttention, MlaDecodeOneToken) {
  MLABENCH_REQUIRE_GPU();
  check_mla_decode(16, 16, {1}, 1);
}

TEST(CudaAttention, MlaDecodeManySequences) {
  MLABENCH_REQUIRE_GPU();
  const Varlen b = mixed_batch(37, true);
  for (int32_t bs : {16, 64}) {
    check_mla_decode(16, bs, b.kv_len, 2);   // V2-Lite: 37 CTAs, so split-KV
    check_mla_decode(128, bs, b.kv_len, 3);  // V2: 8 head groups per sequence
  }
  check_mla_decode(128, 64, {4097, 1000, 65}, 4);  // V2, few sequences: split-KV across head groups
  check_mla_decode(20, 16, {17, 300}, 5);          // heads not a multiple of the 16-head tile
}

TEST(CudaAttention, MlaDecodeLongContext) {
  MLABENCH_REQUIRE_GPU();
  check_mla_decode(16, 64, {131072}, 6);  // NIAH length: one wave of 132 splits
  check_mla_decode(16, 16, {70001, 3}, 7);
  check_mla_decode(16, 64, {131071}, 8, 2);  // graphed: max_kv 262142, each split still ~1K keys
}

TEST(CudaAttention, MlaDecodeTileEdges) {
  MLABENCH_REQUIRE_GPU();
  for (int32_t n : kDecodeLengths) check_mla_decode(16, 64, {n}, 100 + static_cast<unsigned>(n));  // one sequence
  check_mla_decode(16, 16, kDecodeLengths, 9);                                                    // all at once
  check_mla_decode(16, 32, kDecodeLengths, 10, 2);
  check_mla_decode(128, 64, kDecodeLengths, 11, 2);
}

TEST(CudaAttention, MlaDecodeLargeBatches) {
  MLABENCH_REQUIRE_GPU();
  check_mla_decode(16, 64, random_lengths(64, 9000, 12), 12);     // 64 CTAs: 2 splits
  check_mla_decode(16, 16, random_lengths(200, 2000, 13), 13, 2);  // 200 CTAs: 2 splits, 2 waves
  check_mla_decode(16, 64, random_lengths(600, 300, 14), 14);      // 600 CTAs: no split
  check_mla_decode(128, 64, random_lengths(9, 5000, 15), 15);      // V2: 72 CTAs
}

// The batch-invariant split plan (fixed_splits, EngineOptions::batch_invariant_attention): each sequence of a batch
// (one past 32K keys, where the split length grows) gives the same bits as that sequence decoded alone, with the
// batch's max_kv and with a captured graph's doubled one; the throughput plan does not (the option's reason); and
// the two plans' values stay within the kernel's tolerance of each other.
std::vector<uint32_t> bits(const std::vector<float>& v, size_t from, size_t n) {
  std::vector<uint32_t> b(n);
  std::memcpy(b.data(), v.data() + from, n * sizeof(float));
  return b;
}

// run(fixed, first, count, max_kv) decodes sequences [first, first + count) of kv_len and returns their output
// rows (width floats each). Under the fixed plan every row of the whole batch must equal that sequence's row alone,
// at its own max_kv and at twice it; under the throughput plan at least one must not; the two plans' values agree
// within tol.
template <class Run>
void expect_fixed_splits_batch_invariant(const Run& run, const std::vector<int32_t>& kv_len, size_t width,
                                         double tol) {
  const int n = static_cast<int>(kv_len.size());
  const int32_t max_kv = *std::max_element(kv_len.begin(), kv_len.end());
  const std::vector<float> batch = run(true, 0, n, max_kv), throughput = run(false, 0, n, max_kv);
  int differs = 0;
  for (int i = 0; i < n; ++i) {
    const int32_t len = kv_len[static_cast<size_t>(i)];
    for (int32_t factor : {1, 2})
      EXPECT_EQ(bits(batch, i * width, width), bits(run(true, i, 1, len * factor), 0, width))
          << "sequence " << i << " (" << len << " keys), alone with max_kv x " << factor;
    differs += bits(throughput, i * width, width) != bits(run(false, i, 1, len), 0, width);
  }
  EXPECT_GT(differs, 0) << "the throughput plan gave every sequence its batch-1 bits: the test cannot tell";
  EXPECT_LE(test::max_rel_diff(batch, throughput), tol) << "the fixed plan's values";
}

TEST(CudaAttention, MlaDecodeFixedSplitsAreBatchInvariant) {
  MLABENCH_REQUIRE_GPU();
  const std::vector<int32_t> kv_len{40001, 5, 700, 3000};
  const int32_t n_heads = 16, kv_lora = 512, rope = 64, n = 4, bs = 64;
  std::mt19937 rng(61);
  Paged cache(kv_len, bs, kv_lora + rope, rng);
  const int64_t ld_q_lat = int64_t{n_heads} * kv_lora, ld_q = int64_t{n_heads} * rope, ld_out = ld_q_lat;
  const auto q_lat = randn(static_cast<size_t>(n * ld_q_lat), rng), q_pe = randn(static_cast<size_t>(n * ld_q), rng);
  const auto d_len = test::to_device(kv_len), d_table = test::to_device(cache.table), d_cache = test::to_device(cache.pool);
  const auto d_q_lat = test::to_device(q_lat), d_q_pe = test::to_device(q_pe);
  // Sequences [first, first + count) with max_kv = kv_len max x factor; out rows as a host vector.
  auto run = [&](MlaDecodeKernel kernel, bool fixed, int first, int count, int32_t max_kv) {
    MlaDecodeParams d;
    d.n_seqs = count;
    d.kv_len = d_len.as<int32_t>() + first;
    d.max_kv = max_kv;
    d.paged = cache.view(d_table.as<int32_t>() + static_cast<size_t>(first) * cache.max_blocks);
    d.cache = d_cache.get();
    d.n_slots = static_cast<int64_t>(cache.pool.size()) / (kv_lora + rope);
    d.q_lat = d_q_lat.as<float>() + first * ld_q_lat, d.ld_q_lat = ld_q_lat;
    d.q_pe = d_q_pe.as<float>() + first * ld_q, d.ld_q_pe = ld_q, d.q_pe_head_stride = rope;
    d.n_heads = n_heads, d.kv_lora = kv_lora, d.rope = rope, d.scale = 0.06f, d.bf16_operands = true;
    d.kernel = kernel;
    d.fixed_splits = fixed;
    const auto d_out = test::to_device(std::vector<float>(static_cast<size_t>(count * ld_out), kPoison));
    d.out = d_out.as<float>(), d.ld_out = ld_out;
    d.scratch_floats = mla_decode_scratch_floats(d);
    gpu::DeviceBuffer scratch(static_cast<size_t>(std::max<int64_t>(d.scratch_floats, 4)) * 4, "scratch");
    d.scratch = scratch.as<float>();
    cuda::mla_decode_attention(d, nullptr);
    return test::to_host<float>(d_out, static_cast<size_t>(count * ld_out));
  };
  std::vector<MlaDecodeKernel> kernels{MlaDecodeKernel::MMA};
  MlaDecodeParams probe;
  probe.cache_type = DType::BF16, probe.bf16_operands = true, probe.kv_lora = kv_lora, probe.rope = rope;
  probe.paged.block_size = bs, probe.n_slots = 1, probe.cache = d_cache.get();
  if (cuda::mla_decode_hopper_supported(probe)) kernels.push_back(MlaDecodeKernel::WGMMA);
  for (MlaDecodeKernel kernel : kernels) {
    SCOPED_TRACE(kernel == MlaDecodeKernel::WGMMA ? "wgmma kernel" : "mma.sync kernel");
    expect_fixed_splits_batch_invariant(
        [&](bool fixed, int first, int count, int32_t max_kv) { return run(kernel, fixed, first, count, max_kv); },
        kv_len, static_cast<size_t>(ld_out), kTolBf16P);
  }
}

// ---- MLA prefill ----------------------------------------------------------------------------------------------

void check_mla_prefill(int32_t n_heads, const Varlen& b, unsigned seed) {
  SCOPED_TRACE(testing::Message() << "mla_prefill heads " << n_heads << " seqs " << b.n() << " rows " << b.rows());
  std::mt19937 rng(seed);
  const int32_t nope = 128, rope = 64, v = 128;
  std::vector<int32_t> cu_kv{0};
  for (int32_t n : b.kv_len) cu_kv.push_back(cu_kv.back() + n);
  const int64_t rows = b.rows(), keys = cu_kv.back();
  const int64_t ld_q = int64_t{n_heads} * (nope + rope) + 2, ld_kv = int64_t{n_heads} * (nope + v);
  const int64_t ld_kpe = nope + rope + 64, ld_out = int64_t{n_heads} * v + 1;  // k_pe inside a wider row
  const auto q = randn(static_cast<size_t>(rows * ld_q), rng);
  const auto kv = randn(static_cast<size_t>(keys * ld_kv), rng);
  const auto kpe_rows = randn(static_cast<size_t>(keys * ld_kpe), rng);
  std::vector<float> out(static_cast<size_t>(rows * ld_out), kPoison);

  MlaPrefillParams p;
  p.batch = {b.n(), b.cu_q.data(), b.kv_len.data(), b.max_q, b.max_kv};
  p.cu_kv = cu_kv.data();
  p.q = q.data();
  p.ld_q = ld_q;
  p.kv = kv.data();
  p.ld_kv = ld_kv;
  p.k_pe = kpe_rows.data() + 3;
  p.ld_kpe = ld_kpe;
  p.ld_out = ld_out;
  p.n_heads = n_heads;
  p.nope = nope;
  p.rope = rope;
  p.v = v;
  p.scale = 0.1f;
  std::vector<float> want = out;
  p.out = want.data();
  twin::mla_prefill_attention(p);

  const auto d_cu_q = test::to_device(b.cu_q), d_len = test::to_device(b.kv_len), d_cu_kv = test::to_device(cu_kv);
  const auto d_q = test::to_device(q), d_kv = test::to_device(kv), d_kpe = test::to_device(kpe_rows);
  for (bool f32 : {false, true}) {
    const auto d_out = test::to_device(out);
    MlaPrefillParams d = p;
    d.batch.cu_q = d_cu_q.as<int32_t>();
    d.batch.kv_len = d_len.as<int32_t>();
    d.cu_kv = d_cu_kv.as<int32_t>();
    d.q = d_q.as<float>();
    d.kv = d_kv.as<float>();
    d.k_pe = d_kpe.as<float>() + 3;
    d.out = d_out.as<float>();
    d.float32_math = f32;
    cuda::mla_prefill_attention(d, nullptr);
    EXPECT_LE(test::max_rel_diff(test::to_host<float>(d_out, out.size()), want), f32 ? kTolF32 : kTol)
        << (f32 ? "float32 math" : "tensor cores");
  }
}

TEST(CudaAttention, MlaPrefillOneToken) {
  MLABENCH_REQUIRE_GPU();
  Varlen b;
  b.add(1, 1);
  check_mla_prefill(16, b, 11);
}

TEST(CudaAttention, MlaPrefillMixedBatch) {
  MLABENCH_REQUIRE_GPU();
  check_mla_prefill(16, mixed_batch(37, false), 12);  // V2-Lite
  Varlen b;                                           // V2, a smaller batch (keys are 128 KB per token)
  for (auto [q, kv] : {std::pair{1, 1}, {65, 65}, {17, 300}, {64, 1000}, {1, 63}}) b.add(q, kv);
  check_mla_prefill(128, b, 13);
}

// ---- the BF16 flash prefill kernel (engine BF16 precision) --------------------------------------------------------
// BF16 q, k, v as the engine passes them, against the twin on the same values. The kernel also rounds P to BF16
// (FlashAttention's numerics), so random queries are held to kTolBf16 (~2^-9 of the values, with headroom); with
// zero queries every score is 0 and P = 1 exactly, so the kernel is exact but for float32 summation order and is
// held to kTolF32: that pins every key, value, mask and tile edge, which the looser bound could not.
constexpr double kTolBf16 = 1e-2;

std::vector<uint16_t> bf16_rows(int64_t n, int64_t ld, int64_t width, std::mt19937& rng, bool zero) {
  std::vector<uint16_t> v(static_cast<size_t>(n * ld), test::kBf16NaN);  // the padding of every row is NaN
  std::normal_distribution<float> nd;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < width; ++c) v[static_cast<size_t>(r * ld + c)] = zero ? uint16_t{0} : f32_to_bf16(nd(rng));
  return v;
}

void check_mla_prefill_bf16(int32_t n_heads, const Varlen& b, unsigned seed, bool zero_q) {
  SCOPED_TRACE(testing::Message() << "mla_prefill BF16 heads " << n_heads << " seqs " << b.n() << " rows " << b.rows()
                                  << (zero_q ? " zero queries" : " random queries"));
  std::mt19937 rng(seed);
  const int32_t nope = 128, rope = 64, v = 128;
  std::vector<int32_t> cu_kv{0};
  for (int32_t n : b.kv_len) cu_kv.push_back(cu_kv.back() + n);
  const int64_t rows = b.rows(), keys = cu_kv.back();
  const int64_t ld_q = int64_t{n_heads} * (nope + rope) + 8, ld_kv = int64_t{n_heads} * (nope + v);
  const int64_t ld_kpe = 576, ld_out = int64_t{n_heads} * v + 1;  // k_pe at column 512 of a latent row
  const auto q = bf16_rows(rows, ld_q, n_heads * (nope + rope), rng, zero_q);
  // kPadKeys rows of NaN past the last key, inside n_keys: the TMA kernel copies whole 128-key tiles and must keep
  // what lies past a sequence's keys out of its output (scores masked, the last V tile's rows zeroed).
  constexpr int64_t kPadKeys = 131;
  auto kv = bf16_rows(keys + kPadKeys, ld_kv, ld_kv, rng, false);
  auto latent = bf16_rows(keys + kPadKeys, ld_kpe, ld_kpe, rng, false);
  std::fill(kv.begin() + keys * ld_kv, kv.end(), test::kBf16NaN);
  std::fill(latent.begin() + keys * ld_kpe, latent.end(), test::kBf16NaN);
  for (int64_t r = 0; r < keys; ++r) std::fill_n(latent.begin() + r * ld_kpe, 512, test::kBf16NaN);  // unread
  std::vector<float> out(static_cast<size_t>(rows * ld_out), kPoison);

  MlaPrefillParams p;
  p.batch = {b.n(), b.cu_q.data(), b.kv_len.data(), b.max_q, b.max_kv};
  p.cu_kv = cu_kv.data();
  p.q_bf16 = q.data();
  p.ld_q = ld_q;
  p.kv_bf16 = kv.data();
  p.ld_kv = ld_kv;
  p.k_pe_bf16 = latent.data() + 512;
  p.ld_kpe = ld_kpe;
  p.ld_out = ld_out;
  p.n_heads = n_heads;
  p.nope = nope;
  p.rope = rope;
  p.v = v;
  p.scale = 0.1f;
  std::vector<float> want = out;
  p.out = want.data();
  twin::mla_prefill_attention(p);

  const auto d_cu_q = test::to_device(b.cu_q), d_len = test::to_device(b.kv_len), d_cu_kv = test::to_device(cu_kv);
  const auto d_q = test::to_device(q), d_kv = test::to_device(kv), d_lat = test::to_device(latent);
  MlaPrefillParams d = p;
  d.batch.cu_q = d_cu_q.as<int32_t>();
  d.batch.kv_len = d_len.as<int32_t>();
  d.cu_kv = d_cu_kv.as<int32_t>();
  d.q_bf16 = d_q.as<uint16_t>();
  d.kv_bf16 = d_kv.as<uint16_t>();
  d.k_pe_bf16 = d_lat.as<uint16_t>() + 512;
  for (int64_t n_keys : {int64_t{0}, keys + kPadKeys}) {  // 0: the cp.async copies; else TMA's on Hopper
    SCOPED_TRACE(testing::Message() << "n_keys " << n_keys);
    const auto d_out = test::to_device(out);
    d.out = d_out.as<float>();
    d.n_keys = n_keys;
    cuda::mla_prefill_attention(d, nullptr);
    EXPECT_LE(test::max_rel_diff(test::to_host<float>(d_out, out.size()), want), zero_q ? kTolF32 : kTolBf16);
  }
}

void check_gqa_prefill_bf16(int32_t n_heads, int32_t n_kv, int32_t hd, int32_t bs, const Varlen& b, unsigned seed,
                            bool zero_q) {
  SCOPED_TRACE(testing::Message() << "gqa BF16 heads " << n_heads << "/" << n_kv << " head_dim " << hd << " block "
                                  << bs << " seqs " << b.n() << " max_q " << b.max_q
                                  << (zero_q ? " zero queries" : " random queries"));
  std::mt19937 rng(seed);
  const int64_t w = int64_t{n_kv} * hd;
  Paged kc(b.kv_len, bs, w, rng);
  Paged vc = kc;
  vc.refill(b.kv_len, rng);
  const int64_t ld_q = int64_t{n_heads} * hd + 8, ld_out = int64_t{n_heads} * hd + 1;
  const auto q = bf16_rows(b.rows(), ld_q, int64_t{n_heads} * hd, rng, zero_q);
  std::vector<float> out(static_cast<size_t>(b.rows() * ld_out), kPoison);
  GqaAttentionParams p;
  p.batch = {b.n(), b.cu_q.data(), b.kv_len.data(), b.max_q, b.max_kv};
  p.paged = kc.view(kc.table.data());
  p.k_cache = kc.pool.data();
  p.v_cache = vc.pool.data();
  p.q_bf16 = q.data();
  p.ld_q = ld_q;
  p.ld_out = ld_out;
  p.n_heads = n_heads;
  p.n_kv_heads = n_kv;
  p.head_dim = hd;
  p.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<float> want = out;
  p.out = want.data();
  twin::gqa_attention(p);

  const auto d_cu_q = test::to_device(b.cu_q), d_len = test::to_device(b.kv_len);
  const auto d_table = test::to_device(kc.table);
  const auto d_k = test::to_device(kc.pool), d_v = test::to_device(vc.pool), d_q = test::to_device(q);
  GqaAttentionParams d = p;
  d.batch.cu_q = d_cu_q.as<int32_t>();
  d.batch.kv_len = d_len.as<int32_t>();
  d.paged.block_tables = d_table.as<int32_t>();
  d.k_cache = d_k.get();
  d.v_cache = d_v.get();
  d.q_bf16 = d_q.as<uint16_t>();
  // n_slots 0: the cp.async copies; the pools' rows: TMA's on Hopper where block_size % 64 == 0 (the unused slots
  // of every block and the two never-owned blocks are NaN: a half copied past a sequence's keys reads them).
  for (int64_t n_slots : {int64_t{0}, static_cast<int64_t>(kc.pool.size()) / w}) {
    SCOPED_TRACE(testing::Message() << "n_slots " << n_slots);
    const auto d_out = test::to_device(out);
    d.out = d_out.as<float>();
    d.n_slots = n_slots;
    cuda::gqa_attention(d, nullptr);
    EXPECT_LE(test::max_rel_diff(test::to_host<float>(d_out, out.size()), want), zero_q ? kTolF32 : kTolBf16);
  }
}

TEST(CudaAttention, FlashBf16MlaPrefill) {
  MLABENCH_REQUIRE_GPU();
  for (bool zero_q : {true, false}) {
    Varlen one;
    one.add(1, 1);
    check_mla_prefill_bf16(16, one, 41, zero_q);
    check_mla_prefill_bf16(16, mixed_batch(37, false), 42, zero_q);  // V2-Lite
    Varlen v2;  // V2's 128 heads; rows around the 128-row and 64-key tiles, a chunk behind a cached prefix
    for (auto [q, kv] : {std::pair{1, 1}, {129, 129}, {127, 300}, {64, 1000}, {200, 2113}}) v2.add(q, kv);
    check_mla_prefill_bf16(128, v2, 43, zero_q);
    Varlen longer;  // a chunk deep into a long prompt, and a whole prompt of 4,100 tokens
    for (auto [q, kv] : {std::pair{300, 16411}, {4100, 4100}}) longer.add(q, kv);
    check_mla_prefill_bf16(16, longer, 44, zero_q);
  }
}

TEST(CudaAttention, FlashBf16GqaPrefill) {
  MLABENCH_REQUIRE_GPU();
  for (bool zero_q : {true, false}) {
    const Varlen b = mixed_batch(37, false);
    check_gqa_prefill_bf16(32, 8, 128, 16, b, 51, zero_q);   // Llama-3 8B
    check_gqa_prefill_bf16(32, 8, 128, 64, b, 54, zero_q);   // the engine's CUDA block size (TMA)
    check_gqa_prefill_bf16(32, 32, 128, 64, b, 52, zero_q);  // MHA
    check_gqa_prefill_bf16(16, 4, 64, 16, b, 53, zero_q);    // head_dim 64
    check_gqa_prefill_bf16(16, 4, 64, 128, b, 55, zero_q);   // head_dim 64, two halves a block
    Varlen longer;  // a chunk deep into a long prompt, and a whole prompt of 4,100 tokens (not whole tiles)
    for (auto [q, kv] : {std::pair{300, 16411}, {4100, 4100}, {1, 129}, {65, 65}}) longer.add(q, kv);
    check_gqa_prefill_bf16(32, 8, 128, 64, longer, 56, zero_q);
  }
}

// ---- GQA ------------------------------------------------------------------------------------------------------

void check_gqa(int32_t n_heads, int32_t n_kv, int32_t hd, int32_t bs, const Varlen& b, unsigned seed,
               int32_t max_kv_factor = 1) {
  SCOPED_TRACE(testing::Message() << "gqa heads " << n_heads << "/" << n_kv << " head_dim " << hd << " block " << bs
                                  << " seqs " << b.n() << " max_q " << b.max_q << " max_kv " << b.max_kv << " x "
                                  << max_kv_factor);
  std::mt19937 rng(seed);
  const int64_t w = int64_t{n_kv} * hd;
  Paged kc(b.kv_len, bs, w, rng);
  Paged vc = kc;  // one block table serves both pools
  vc.refill(b.kv_len, rng);
  const int64_t ld_q = int64_t{n_heads} * hd + 3, ld_out = int64_t{n_heads} * hd + 2;
  const auto q = randn(static_cast<size_t>(b.rows() * ld_q), rng);
  std::vector<float> out(static_cast<size_t>(b.rows() * ld_out), kPoison);

  GqaAttentionParams p;
  p.batch = {b.n(), b.cu_q.data(), b.kv_len.data(), b.max_q, b.max_kv * max_kv_factor};
  p.paged = kc.view(kc.table.data());
  p.k_cache = kc.pool.data();
  p.v_cache = vc.pool.data();
  p.q = q.data();
  p.ld_q = ld_q;
  p.ld_out = ld_out;
  p.n_heads = n_heads;
  p.n_kv_heads = n_kv;
  p.head_dim = hd;
  p.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<float> want = out;
  p.out = want.data();
  twin::gqa_attention(p);
  // The same keys and values in F8_E4M3 pools (--kv-cache-dtype fp8; unowned slots all 0xFF: NaN codes and scales):
  // decode rows on the decode kernel (codes widened exactly, scales folded in), prefill chunks on the generic one.
  const std::vector<uint8_t> k8 = fp8_slots(kc, p.fp8_layout()), v8 = fp8_slots(vc, p.fp8_layout());
  std::vector<float> want8 = out;
  GqaAttentionParams p8 = p;
  p8.k_cache = k8.data(), p8.v_cache = v8.data(), p8.cache_type = DType::F8_E4M3, p8.out = want8.data();
  twin::gqa_attention(p8);

  const auto d_cu_q = test::to_device(b.cu_q), d_len = test::to_device(b.kv_len);
  const auto d_table = test::to_device(kc.table);
  const auto d_k = test::to_device(kc.pool), d_v = test::to_device(vc.pool), d_q = test::to_device(q);
  const auto d_k32 = test::to_device(kc.widened()), d_v32 = test::to_device(vc.widened());
  const auto d_k8 = test::to_device(k8), d_v8 = test::to_device(v8);
  struct Mode {
    bool split;
    DType cache;
  };
  for (auto [split, cache] : {Mode{false, DType::BF16}, {true, DType::BF16}, {true, DType::F32},
                              {false, DType::F8_E4M3}, {true, DType::F8_E4M3}}) {
    const bool f32 = cache == DType::F32, fp8 = cache == DType::F8_E4M3;
    const auto d_out = test::to_device(out);
    GqaAttentionParams d = p;
    d.batch.cu_q = d_cu_q.as<int32_t>();
    d.batch.kv_len = d_len.as<int32_t>();
    d.paged.block_tables = d_table.as<int32_t>();
    d.k_cache = f32 ? d_k32.get() : fp8 ? d_k8.get() : d_k.get();
    d.v_cache = f32 ? d_v32.get() : fp8 ? d_v8.get() : d_v.get();
    d.cache_type = cache;
    d.q = d_q.as<float>();
    d.out = d_out.as<float>();
    gpu::DeviceBuffer scratch;
    if (split && gqa_attention_scratch_floats(p) > 0) {
      scratch = gpu::DeviceBuffer(static_cast<size_t>(gqa_attention_scratch_floats(p)) * sizeof(float), "scratch");
      d.scratch = scratch.as<float>();
      d.scratch_floats = gqa_attention_scratch_floats(p);
    }
    cuda::gqa_attention(d, nullptr);
    const double diff = test::max_rel_diff(test::to_host<float>(d_out, out.size()), fp8 ? want8 : want);
    EXPECT_LE(diff, f32 ? kTolF32 : kTol) << dtype_name(cache) << " cache, " << (split ? "with" : "without")
                                          << " split-KV scratch, splits " << gqa_attention_splits(p)
                                          << (gqa_decode_applies(d) ? ", decode kernel" : "");
  }
}

TEST(CudaAttention, GqaDecodeFixedSplitsAreBatchInvariant) {
  MLABENCH_REQUIRE_GPU();
  const std::vector<int32_t> kv_len{40001, 5, 700, 3000};
  const int32_t nh = 32, nkv = 8, hd = 128, n = 4, bs = 16;
  std::mt19937 rng(62);
  Paged kc(kv_len, bs, int64_t{nkv} * hd, rng);
  Paged vc = kc;
  vc.refill(kv_len, rng);
  const int64_t ld = int64_t{nh} * hd;
  const auto q = randn(static_cast<size_t>(n * ld), rng);
  std::vector<int32_t> cu_q(n + 1);
  std::iota(cu_q.begin(), cu_q.end(), 0);
  const auto d_cu = test::to_device(cu_q), d_len = test::to_device(kv_len), d_table = test::to_device(kc.table);
  const auto d_k = test::to_device(kc.pool), d_v = test::to_device(vc.pool), d_q = test::to_device(q);
  auto run = [&](bool fixed, int first, int count, int32_t max_kv) {
    GqaAttentionParams d;
    d.batch = {count, d_cu.as<int32_t>(), d_len.as<int32_t>() + first, 1, max_kv};  // cu_q 0, 1, ...: row = seq
    d.paged = kc.view(d_table.as<int32_t>() + static_cast<size_t>(first) * kc.max_blocks);
    d.k_cache = d_k.get(), d.v_cache = d_v.get();
    d.q = d_q.as<float>() + first * ld, d.ld_q = ld;
    d.n_heads = nh, d.n_kv_heads = nkv, d.head_dim = hd, d.scale = 1.0f / std::sqrt(float{hd});
    d.fixed_splits = fixed;
    const auto d_out = test::to_device(std::vector<float>(static_cast<size_t>(count * ld), kPoison));
    d.out = d_out.as<float>(), d.ld_out = ld;
    d.scratch_floats = gqa_attention_scratch_floats(d);
    gpu::DeviceBuffer scratch(static_cast<size_t>(std::max<int64_t>(d.scratch_floats, 4)) * 4, "scratch");
    d.scratch = scratch.as<float>();
    EXPECT_TRUE(gqa_decode_applies(d));
    cuda::gqa_attention(d, nullptr);
    return test::to_host<float>(d_out, static_cast<size_t>(count * ld));
  };
  expect_fixed_splits_batch_invariant(run, kv_len, static_cast<size_t>(ld), kTol);
}

TEST(CudaAttention, GqaOneToken) {
  MLABENCH_REQUIRE_GPU();
  Varlen b;
  b.add(1, 1);
  check_gqa(32, 8, 128, 16, b, 21);
}

TEST(CudaAttention, GqaDecodeManySequences) {
  MLABENCH_REQUIRE_GPU();
  const Varlen b = mixed_batch(37, true);
  for (int32_t bs : {16, 64}) {
    check_gqa(32, 8, 128, bs, b, 22);   // Llama-3 8B: 4 query heads per KV head
    check_gqa(32, 32, 128, bs, b, 23);  // MHA
    check_gqa(16, 4, 64, bs, b, 24);    // head_dim 64
  }
}

TEST(CudaAttention, GqaPrefillMixedBatch) {
  MLABENCH_REQUIRE_GPU();
  const Varlen b = mixed_batch(37, false);
  check_gqa(32, 8, 128, 16, b, 31);
  check_gqa(32, 32, 128, 64, b, 32);
  check_gqa(16, 4, 64, 16, b, 33);
  Varlen chunks;  // short chunks on few sequences: small enough for split-KV
  for (auto [q, kv] : {std::pair{3, 4097}, {16, 1000}, {1, 65}}) chunks.add(q, kv);
  check_gqa(32, 8, 128, 64, chunks, 34);
}

Varlen decode_batch(const std::vector<int32_t>& lengths) {
  Varlen b;
  for (int32_t n : lengths) b.add(1, n);
  return b;
}

TEST(CudaAttention, GqaDecodeTileEdges) {
  MLABENCH_REQUIRE_GPU();
  for (int32_t n : kDecodeLengths) check_gqa(32, 8, 128, 16, decode_batch({n}), 200 + static_cast<unsigned>(n));
  check_gqa(32, 8, 128, 64, decode_batch(kDecodeLengths), 43, 2);
  check_gqa(16, 4, 64, 16, decode_batch(kDecodeLengths), 44, 2);
  check_gqa(64, 8, 128, 16, decode_batch(kDecodeLengths), 45);  // group 8: the decode kernel's widest
  check_gqa(32, 2, 128, 16, decode_batch(kDecodeLengths), 46);  // group 16: the flash kernel
  check_gqa(8, 8, 64, 32, decode_batch(kDecodeLengths), 47);    // MHA, head_dim 64
}

TEST(CudaAttention, GqaDecodeRowsSkipSequences) {
  MLABENCH_REQUIRE_GPU();
  Varlen b;  // max_q 1, but some sequences have no new row: rows are cu_q[s], not s
  for (auto [q, kv] : {std::pair{0, 40}, {1, 1}, {0, 7}, {1, 3000}, {1, 65}, {0, 1}, {1, 9}}) b.add(q, kv);
  check_gqa(32, 8, 128, 16, b, 48);
  check_gqa(32, 8, 128, 16, b, 49, 2);
}

TEST(CudaAttention, GqaDecodeLargeBatches) {
  MLABENCH_REQUIRE_GPU();
  check_gqa(32, 8, 128, 64, decode_batch(random_lengths(64, 9000, 50)), 50);
  check_gqa(32, 8, 128, 16, decode_batch(random_lengths(16, 33000, 51)), 51, 2);
  check_gqa(32, 8, 128, 64, decode_batch(random_lengths(100, 500, 52)), 52);
}

TEST(CudaAttention, GqaLongContext) {
  MLABENCH_REQUIRE_GPU();
  Varlen b;
  b.add(1, 32768);
  check_gqa(32, 8, 128, 64, b, 41);
  Varlen two;
  two.add(1, 20000);
  two.add(1, 5);
  check_gqa(16, 4, 64, 16, two, 42);
  check_gqa(32, 8, 128, 64, decode_batch({131072}), 53);     // Llama-3-8B at 128K
  check_gqa(32, 8, 128, 64, decode_batch({131071}), 54, 2);  // graphed max_kv
}

}  // namespace
}  // namespace mlabench::kernels
