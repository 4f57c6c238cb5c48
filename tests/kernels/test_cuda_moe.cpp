// DeepSeekMoE CUDA kernels (engine/kernels/cuda/moe.cu, moe_gemm.cu) against their CPU twins
// (engine/kernels/twin/moe.cpp, moe_gemm.cpp): router (V2-Lite, V2 and small shapes, 1 to 16K tokens, softmax and
// sigmoid scores), the deterministic expert sort (up to ~98K pairs, run twice for bit-identical results), the row
// gather in each dtype and alignment path, the combine, the per-pair pointer arrays, and the grouped expert GEMM
// (tensor-core and float32 paths, tails, empty and crowded experts, poisoned rows; the Hopper kernel in both
// epilogues), the one-token expert FFN (moe_decode_ffn). Then gpu::MoeLayer against
// twin::moe_layer in every row layout (both COMPACT paths), and replayed from a CUDA graph as the routing changes.
#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engine/gpu/blas.h"
#include "engine/gpu/moe_layer.h"
#include "engine/kernels/cuda/hopper.h"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/twin/twin.h"
#include "tests/kernels/fp8_test_util.h"
#include "tests/kernels/gpu_test_util.h"

namespace mlabench {
namespace {

using kernels::MoeRowMode;
using kernels::RouterMethod;
using kernels::RouterScoring;
using test::to_device;
using test::to_host;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
const int64_t kTokenSweep[] = {1, 3, 64, 1000};

struct RouterCase {
  const char* name;
  int32_t E, k;
  RouterMethod method;
  int32_t n_group, topk_group;
  float scale;
};

const RouterCase kRouterCases[] = {
    {"V2-Lite", 64, 6, RouterMethod::GREEDY, 1, 1, 1.0f},
    {"V2", 160, 6, RouterMethod::GROUP_LIMITED_GREEDY, 8, 3, 16.0f},
    {"small", 8, 2, RouterMethod::GREEDY, 1, 1, 1.0f},
    // top_k 3 > the 2 experts of the one kept group: a masked expert (exactly 0) is chosen, lowest index first.
    {"small-grouped", 8, 3, RouterMethod::GROUP_LIMITED_GREEDY, 4, 1, 2.5f},
};

// Logits with clear margins: each token's experts get distinct logits 0.05 apart (in a random order, plus a
// random per-token offset), so probabilities differ by >= 5% between any two experts and group maxima are
// distinct. The kernel's softmax (expf, a tree sum) differs from the twin's by a few ulp, far too little to
// flip a choice, so indices must match exactly. For sigmoid scores the logits are centred on 0 (at most
// +-4 + 1.5 for 160 experts), where neighbouring sigmoids still differ by > 1e-4.
std::vector<float> margin_logits(int64_t T, int32_t E, std::mt19937& rng,
                                 RouterScoring scoring = RouterScoring::SOFTMAX) {
  std::vector<float> l(static_cast<size_t>(T * E));
  std::vector<int32_t> perm(static_cast<size_t>(E));
  const bool sigmoid = scoring == RouterScoring::SIGMOID;
  std::normal_distribution<float> offset(0.0f, sigmoid ? 0.5f : 3.0f);
  const float top = sigmoid ? 0.025f * static_cast<float>(E) : 4.0f;
  for (int64_t t = 0; t < T; ++t) {
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    const float o = offset(rng);
    for (int32_t r = 0; r < E; ++r) l[static_cast<size_t>(t * E + perm[r])] = o + top - 0.05f * static_cast<float>(r);
  }
  return l;
}

TEST(CudaMoe, RouterMatchesTwin) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(21);
  for (const RouterCase& c : kRouterCases)
    for (RouterScoring scoring : {RouterScoring::SOFTMAX, RouterScoring::SIGMOID})
      for (bool norm : {false, true})
        for (int64_t T : {int64_t{1}, int64_t{3}, int64_t{64}, int64_t{1000}, int64_t{16384}}) {
          SCOPED_TRACE(std::string(c.name) + " norm=" + std::to_string(norm) + " T=" + std::to_string(T) +
                       (scoring == RouterScoring::SIGMOID ? " sigmoid" : " softmax"));
          const std::vector<float> logits = margin_logits(T, c.E, rng, scoring);
          const size_t n = static_cast<size_t>(T * c.k);
          std::vector<int32_t> idx(n, -1);
          std::vector<float> w(n, kNaN);
          kernels::RouterParams p;
          p.n_tokens = T;
          p.n_experts = c.E;
          p.top_k = c.k;
          p.method = c.method;
          p.n_group = c.n_group;
          p.topk_group = c.topk_group;
          p.norm_topk_prob = norm;
          p.routed_scaling_factor = c.scale;
          p.scoring = scoring;
          p.logits = logits.data();
          p.topk_idx = idx.data();
          p.topk_weight = w.data();
          kernels::twin::router(p);

          auto d_logits = to_device(logits);
          auto d_idx = to_device(std::vector<int32_t>(n, -1));
          auto d_w = to_device(std::vector<float>(n, kNaN));
          kernels::RouterParams dp = p;
          dp.logits = d_logits.as<float>();
          dp.topk_idx = d_idx.as<int32_t>();
          dp.topk_weight = d_w.as<float>();
          kernels::cuda::router(dp, nullptr);
          EXPECT_EQ(to_host<int32_t>(d_idx, n), idx);
          // expf within 2 ulp and a differently ordered float sum over <= 160 experts: a few ulp per probability,
          // a few more after the renormalising sum; 2e-6 relative is ~16 ulp. (A sigmoid: expf's 2 ulp only.)
          const std::vector<float> gw = to_host<float>(d_w, n);
          for (size_t i = 0; i < n; ++i)
            ASSERT_LE(std::fabs(gw[i] - w[i]), 2e-6 * std::fabs(w[i]) + 1e-30)
                << "pair " << i << ": " << gw[i] << " vs " << w[i];
        }
}

// Expert ids drawn with weight ~ 1/(e+1)^1.5 (some experts crowded, some empty), repeats within a token allowed:
// the sort must not depend on the router's distinct-per-token ids.
std::vector<int32_t> skewed_ids(int64_t n, int32_t E, std::mt19937& rng) {
  std::vector<double> wts(static_cast<size_t>(E));
  for (int32_t e = 0; e < E; ++e) wts[e] = 1.0 / std::pow(e + 1.0, 1.5);
  std::discrete_distribution<int32_t> pick(wts.begin(), wts.end());
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& e : ids) e = pick(rng);
  std::shuffle(ids.begin(), ids.end(), rng);  // crowded experts anywhere, not just low ids in order
  return ids;
}

struct Permuted {
  std::vector<int32_t> counts, offsets, rank;
};

Permuted twin_permute(const std::vector<int32_t>& idx, int64_t T, int32_t k, int32_t E) {
  Permuted r{std::vector<int32_t>(static_cast<size_t>(E)), std::vector<int32_t>(static_cast<size_t>(E) + 1),
             std::vector<int32_t>(idx.size())};
  kernels::MoePermuteParams p{idx.data(), T, k, E, r.counts.data(), r.offsets.data(), r.rank.data()};
  kernels::twin::moe_permute(p);
  return r;
}

TEST(CudaMoe, PermuteMatchesTwinExactlyAndIsDeterministic) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(4);
  struct Shape {
    int32_t E, k;
  };
  for (Shape s : {Shape{8, 2}, Shape{64, 6}, Shape{160, 6}, Shape{512, 8}})  // 512: shared memory > 48 KB
    for (int64_t T : {int64_t{1}, int64_t{3}, int64_t{64}, int64_t{1000}, int64_t{16384}}) {
      SCOPED_TRACE("E=" + std::to_string(s.E) + " k=" + std::to_string(s.k) + " T=" + std::to_string(T));
      const int64_t n = T * s.k;
      const std::vector<int32_t> idx = skewed_ids(n, s.E, rng);
      const Permuted ref = twin_permute(idx, T, s.k, s.E);
      auto d_idx = to_device(idx);
      // Runs 0 and 1 walk the chunks in one block; 2 and 3 pass chunk_scratch (poisoned), which ranks them in
      // parallel from kMoePermuteParallelChunks chunks on (T = 1000 at k >= 6, T = 16384).
      Permuted runs[4];
      for (int i = 0; i < 4; ++i) {
        auto d_counts = to_device(std::vector<int32_t>(static_cast<size_t>(s.E), -7));
        auto d_offsets = to_device(std::vector<int32_t>(static_cast<size_t>(s.E) + 1, -7));
        auto d_rank = to_device(std::vector<int32_t>(static_cast<size_t>(n), -7));
        auto d_chunks = to_device(std::vector<int32_t>(
            static_cast<size_t>(kernels::moe_permute_scratch_ints(n, s.E)), -7));
        kernels::MoePermuteParams p{d_idx.as<int32_t>(), T, s.k, s.E, d_counts.as<int32_t>(),
                                    d_offsets.as<int32_t>(), d_rank.as<int32_t>(),
                                    i >= 2 ? d_chunks.as<int32_t>() : nullptr};
        kernels::cuda::moe_permute(p, nullptr);
        runs[i] = {to_host<int32_t>(d_counts, static_cast<size_t>(s.E)),
                   to_host<int32_t>(d_offsets, static_cast<size_t>(s.E) + 1),
                   to_host<int32_t>(d_rank, static_cast<size_t>(n))};
      }
      for (int i = 0; i < 4; ++i) {
        SCOPED_TRACE(i < 2 ? "one block" : "chunks in parallel");
        EXPECT_EQ(runs[i].counts, ref.counts);
        EXPECT_EQ(runs[i].offsets, ref.offsets);
        EXPECT_EQ(runs[i].rank, ref.rank) << "run " << i;
      }
    }
}

// A routed batch on the host: the router's ids and weights, and the sort's outputs, in host and device copies.
struct Routed {
  int64_t T;
  int32_t E, k, capacity;
  std::vector<int32_t> idx;
  std::vector<float> w;
  Permuted pm;
  gpu::DeviceBuffer d_idx, d_rank, d_offsets;

  Routed(int64_t T_, int32_t E_, int32_t k_, std::mt19937& rng) : T(T_), E(E_), k(k_) {
    const std::vector<float> logits = margin_logits(T, E, rng);
    idx.resize(static_cast<size_t>(T * k));
    w.resize(idx.size());
    kernels::RouterParams p;
    p.logits = logits.data();
    p.n_tokens = T;
    p.n_experts = E;
    p.top_k = k;
    p.norm_topk_prob = true;
    p.topk_idx = idx.data();
    p.topk_weight = w.data();
    kernels::twin::router(p);
    pm = twin_permute(idx, T, k, E);
    capacity = *std::max_element(pm.counts.begin(), pm.counts.end()) + 3;  // spare rows stay untouched
    d_idx = to_device(idx);
    d_rank = to_device(pm.rank);
    d_offsets = to_device(pm.offsets);
  }
  int64_t rows(MoeRowMode m) const {
    return m == MoeRowMode::PAIR ? T * k : m == MoeRowMode::PADDED ? int64_t{E} * capacity : pm.offsets[E];
  }
  kernels::MoeRowMap host_map(MoeRowMode m) const {
    return {m, idx.data(), pm.rank.data(), pm.offsets.data(), capacity};
  }
  kernels::MoeRowMap device_map(MoeRowMode m) const {
    return {m, d_idx.as<int32_t>(), d_rank.as<int32_t>(), d_offsets.as<int32_t>(), capacity};
  }
};

const MoeRowMode kModes[] = {MoeRowMode::PAIR, MoeRowMode::PADDED, MoeRowMode::COMPACT};

std::string mode_name(MoeRowMode m) {
  return m == MoeRowMode::PAIR ? "PAIR" : m == MoeRowMode::PADDED ? "PADDED" : "COMPACT";
}

struct RowShape {
  int64_t hidden, ld_in, ld_out;
};
// 16-byte words; then rows whose byte lengths allow only 2- or 4-byte words (halves) or 4- or 8-byte (F32).
const RowShape kRowShapes[] = {{2048, 2048, 2048}, {1001, 1003, 1005}, {1002, 1004, 1006}};

TEST(CudaMoe, GatherMatchesTwinBitForBit) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(8);
  for (int64_t T : kTokenSweep) {
    const Routed rt(T, 64, 6, rng);
    for (DType dt : {DType::BF16, DType::F16, DType::F32})
      for (const RowShape& rs : kRowShapes)
        for (MoeRowMode mode : kModes) {
          SCOPED_TRACE(mode_name(mode) + " " + std::string(dtype_name(dt)) + " T=" + std::to_string(T) +
                       " hidden=" + std::to_string(rs.hidden));
          const size_t es = dtype_size(dt);
          std::vector<uint8_t> x(static_cast<size_t>(T * rs.ld_in) * es);
          for (auto& b : x) b = static_cast<uint8_t>(rng());
          std::vector<uint8_t> out(static_cast<size_t>(rt.rows(mode) * rs.ld_out) * es, 0xAB);  // 0xAB: untouched
          auto d_x = to_device(x);
          auto d_out = to_device(out);
          kernels::MoeGatherParams p{out.data(), rs.ld_out, x.data(), rs.ld_in, dt, rs.hidden, T, rt.k,
                                     rt.host_map(mode)};
          kernels::twin::moe_gather(p);
          p.out = d_out.get();
          p.x = d_x.get();
          p.map = rt.device_map(mode);
          kernels::cuda::moe_gather(p, nullptr);
          const std::vector<uint8_t> got = to_host<uint8_t>(d_out, out.size());
          ASSERT_EQ(0, std::memcmp(got.data(), out.data(), out.size())) << "raw copies must be identical";
        }
  }
}

TEST(CudaMoe, CombineMatchesTwin) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(9);
  std::normal_distribution<float> nd;
  for (int64_t T : kTokenSweep) {
    const Routed rt(T, 64, 6, rng);
    for (const RowShape& rs : {kRowShapes[0], kRowShapes[1]})  // float4 path, scalar path
      for (MoeRowMode mode : kModes)
        for (const auto& [accumulate, bf16] :
             {std::pair{true, false}, std::pair{false, false}, std::pair{true, true}}) {
          SCOPED_TRACE(mode_name(mode) + " T=" + std::to_string(T) + " hidden=" + std::to_string(rs.hidden) +
                       " accumulate=" + std::to_string(accumulate) + (bf16 ? " BF16 rows" : ""));
          // Expert outputs: rows no pair maps to (PADDED spares) are NaN, so reading one fails the test.
          std::vector<float> y(static_cast<size_t>(rt.rows(mode) * rs.ld_in), kNaN);
          for (int64_t q = 0; q < T * rt.k; ++q) {
            const int64_t r = mode == MoeRowMode::PAIR     ? q
                              : mode == MoeRowMode::PADDED ? int64_t{rt.idx[q]} * rt.capacity + rt.pm.rank[q]
                                                           : rt.pm.offsets[rt.idx[q]] + rt.pm.rank[q];
            for (int64_t i = 0; i < rs.hidden; ++i) y[static_cast<size_t>(r * rs.ld_in + i)] = nd(rng);
          }
          std::vector<float> out(static_cast<size_t>(T * rs.ld_out), kNaN);  // padding stays NaN in both
          if (accumulate)
            for (int64_t t = 0; t < T; ++t)
              for (int64_t i = 0; i < rs.hidden; ++i) out[static_cast<size_t>(t * rs.ld_out + i)] = nd(rng);
          // BF16 rows (the Hopper down GEMM's STORE_DT): the same values rounded, NaN rows still NaN.
          std::vector<uint16_t> y_bf16(y.size());
          for (size_t i = 0; i < y.size(); ++i) y_bf16[i] = f32_to_bf16(y[i]);
          auto d_y = to_device(y);
          auto d_y_bf16 = to_device(y_bf16);
          auto d_w = to_device(rt.w);
          auto d_out = to_device(out);
          kernels::MoeCombineParams p{out.data(), rs.ld_out, y.data(), rs.ld_in, rt.w.data(), rs.hidden, T, rt.k,
                                      accumulate, rt.host_map(mode)};
          if (bf16) {
            p.y = nullptr;
            p.y_bf16 = y_bf16.data();
          }
          kernels::twin::moe_combine(p);
          p.out = d_out.as<float>();
          p.y = bf16 ? nullptr : d_y.as<float>();
          p.y_bf16 = bf16 ? d_y_bf16.as<uint16_t>() : nullptr;
          p.topk_weight = d_w.as<float>();
          p.map = rt.device_map(mode);
          kernels::cuda::moe_combine(p, nullptr);
          // The kernel rounds each product and sum separately, j ascending, as the twin: bit-identical unless the
          // host compiler fuses the twin's multiply-adds (-march=native), hence a 1e-6 tolerance.
          EXPECT_LE(test::max_rel_diff(to_host<float>(d_out, out.size()), out), 1e-6);
        }
  }
}

TEST(CudaMoe, PairPointersMatchTwin) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(10);
  gpu::DeviceBuffer weights(1 << 20), x(1 << 20), y(1 << 20);  // bases only; nothing is read or written
  for (int64_t n : {int64_t{1}, int64_t{6}, int64_t{6000}, int64_t{98304}}) {
    SCOPED_TRACE("n_pairs=" + std::to_string(n));
    const std::vector<int32_t> idx = skewed_ids(n, 160, rng);
    std::vector<const void*> a(static_cast<size_t>(n)), b(a.size());
    std::vector<void*> c(a.size());
    kernels::MoePairPointersParams p{idx.data(), n, weights.as<const char>(), int64_t{1536} * 5120 * 2,
                                     x.as<const char>(), 5120 * 2 + 64, y.as<char>(), 1536 * 4,
                                     a.data(), b.data(), c.data()};
    kernels::twin::moe_pair_pointers(p);
    auto d_idx = to_device(idx);
    auto d_a = to_device(std::vector<const void*>(a.size(), nullptr));
    auto d_b = to_device(std::vector<const void*>(a.size(), nullptr));
    auto d_c = to_device(std::vector<void*>(a.size(), nullptr));
    p.topk_idx = d_idx.as<int32_t>();
    p.a = d_a.as<const void*>();
    p.b = d_b.as<const void*>();
    p.c = d_c.as<void*>();
    kernels::cuda::moe_pair_pointers(p, nullptr);
    EXPECT_EQ(to_host<const void*>(d_a, a.size()), a);
    EXPECT_EQ(to_host<const void*>(d_b, b.size()), b);
    EXPECT_EQ(to_host<void*>(d_c, c.size()), c);
  }
}

// ---- grouped expert GEMM ------------------------------------------------------------------------------------

// n values drawn from N(0, sd) in dt (never zero in practice), as raw bytes.
std::vector<uint8_t> random_elems(int64_t n, DType dt, std::mt19937& rng, float sd = 1.0f) {
  std::normal_distribution<float> nd(0.0f, sd);
  const size_t es = dtype_size(dt);
  std::vector<uint8_t> out(static_cast<size_t>(n) * es);
  for (int64_t i = 0; i < n; ++i) {
    const float v = nd(rng);
    const uint16_t h = dt == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
    std::memcpy(&out[static_cast<size_t>(i) * es], dt == DType::F32 ? static_cast<const void*>(&v) : &h, es);
  }
  return out;
}

struct GemmCase {
  const char* name;
  std::vector<int32_t> counts;  // rows per expert; empty: route tokens (a decode batch)
  int64_t tokens;               // when routed: tokens, experts and top_k
  int32_t E, k_top;
  int64_t n, k;
  int64_t ld_x_pad, ld_y_pad, stride_pad, max_rows_extra;
};

// Decode-like batches (V2-Lite's k = 2048 and the down projection's k = 1408 at a cut n), one expert with every
// row (3 row tiles), empty experts under a slack max_rows, n and k tails on the tensor-core path (k % 64 != 0, odd
// ld_y: scalar stores), and the float32-math fallback of halves (odd k, unaligned ld_x or expert stride), the tiny
// model's shapes (k 96 and 24).
const GemmCase kGemmCases[] = {
    {"decode_k2048", {}, 64, 64, 6, 640, 2048, 0, 0, 0, 0},
    {"down_k1408", {}, 40, 16, 4, 2048, 1408, 0, 0, 0, 0},
    {"one_expert_all_rows", {0, 0, 0, 150, 0, 0, 0, 0}, 0, 0, 0, 200, 264, 0, 0, 0, 0},
    {"empty_and_slack", {5, 0, 0, 33, 0, 1, 70, 0}, 0, 0, 0, 136, 72, 0, 0, 0, 130},
    {"tails_odd_ld_y", {17, 65, 2}, 0, 0, 0, 129, 40, 8, 1, 0, 3},
    {"odd_k", {3, 9, 0, 4}, 0, 0, 0, 13, 37, 1, 3, 5, 0},
    {"unaligned_ld_x", {7, 7}, 0, 0, 0, 64, 64, 3, 0, 0, 0},
    {"unaligned_stride", {8, 8}, 0, 0, 0, 32, 64, 0, 0, 4, 0},
    {"tiny_gate_up", {}, 150, 16, 4, 48, 96, 0, 0, 0, 0},
    {"tiny_down", {}, 150, 16, 4, 96, 24, 0, 0, 0, 0},
};

class CudaMoeGroupedGemm : public ::testing::TestWithParam<DType> {};

TEST_P(CudaMoeGroupedGemm, MatchesTwinAndLeavesOtherRowsAlone) {
  MLABENCH_REQUIRE_GPU();
  const DType dt = GetParam();
  std::mt19937 rng(40 + static_cast<unsigned>(dt));
  for (const GemmCase& c : kGemmCases) {
    SCOPED_TRACE(std::string(c.name) + " " + std::string(dtype_name(dt)));
    std::vector<int32_t> counts = c.counts;
    int64_t max_rows = 0;
    if (counts.empty()) {
      const Routed rt(c.tokens, c.E, c.k_top, rng);
      counts = rt.pm.counts;
      max_rows = c.tokens;  // as gpu::MoeLayer: a token picks an expert once
    } else {
      max_rows = *std::max_element(counts.begin(), counts.end()) + c.max_rows_extra;
    }
    const auto E = static_cast<int32_t>(counts.size());
    std::vector<int32_t> offsets(static_cast<size_t>(E) + 1, 0);
    for (int32_t e = 0; e < E; ++e) offsets[e + 1] = offsets[e] + counts[e];
    const int64_t R = offsets[E], ld_x = c.k + c.ld_x_pad, ld_y = c.n + c.ld_y_pad;
    const int64_t stride = c.n * c.k + c.stride_pad;
    const std::vector<uint8_t> x = random_elems((R + 1) * ld_x, dt, rng), w = random_elems(E * stride, dt, rng);
    std::vector<float> y(static_cast<size_t>((R + 3) * ld_y), kNaN);  // NaN: rows and columns not to be written
    auto d_x = to_device(x), d_w = to_device(w), d_y = to_device(y), d_off = to_device(offsets);
    kernels::MoeGroupedGemmParams p{y.data(), ld_y,           x.data(), ld_x, w.data(), stride,
                                    dt,       offsets.data(), E,        c.n,  c.k,      max_rows};
    kernels::twin::moe_grouped_gemm(p);
    p.y = d_y.as<float>();
    p.x = d_x.get();
    p.w = d_w.get();
    p.offsets = d_off.as<int32_t>();
    kernels::cuda::moe_grouped_gemm(p, nullptr);
    const std::vector<float> got = to_host<float>(d_y, y.size());
    for (int64_t r = R; r < R + 3; ++r)
      for (int64_t j = 0; j < ld_y; ++j)
        ASSERT_TRUE(std::isnan(got[static_cast<size_t>(r * ld_y + j)])) << "row " << r << " past offsets[E] written";
    // Tensor cores: exact products, float32 sums in another order (and the MMA's own accumulation); float32
    // path: FMA. Within 1e-5 of the largest output (|y| ~ sqrt(k)); NaN where the twin has NaN, nowhere else.
    EXPECT_LE(test::max_rel_diff(got, y), 1e-5);
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaMoeGroupedGemm, ::testing::Values(DType::BF16, DType::F16, DType::F32),
                         [](const auto& i) { return std::string(dtype_name(i.param)); });

// ---- grouped expert GEMM on Hopper (wgmma fed by TMA) -------------------------------------------------------

struct HopperCase {
  const char* name;
  std::vector<int32_t> counts;  // rows per expert; empty: route tokens
  int64_t tokens;
  int32_t E, k_top;
  int64_t n, k;
  int64_t rows_slack;  // rows_bound - offsets[E]: x rows there are NaN and read by the last tile, never stored
  bool no_offsets = false;  // one expert of max_rows rows, offsets null (the shared experts' call)
};

// V2-Lite's projections (gate/up n = 1408 of k = 2048, down n = 2048 of k = 1408) on a short routed batch; then
// tails: n = 200 (a SWIGLU column tile crosses from gate into up rows, STORE's second box past n), k = 200 (a
// partial k tile from TMA's zero fill), empty experts, an expert of exactly one 128-row tile, experts over
// several tiles, and slack rows of NaN; then one expert without offsets (the shared experts' call). Each case at
// 128-row tiles and at 64 (decode batches: V2-Lite's 256 tokens hold ~24 rows an expert).
const HopperCase kHopperCases[] = {
    {"v2lite_40_tokens", {}, 40, 64, 6, 1408, 2048, 0},
    {"v2lite_256_tokens", {}, 256, 64, 6, 1408, 2048, 0},
    {"tails", {0, 128, 129, 1, 300, 0, 64}, 0, 0, 0, 200, 200, 37},
    {"one_expert_no_offsets", {300}, 0, 0, 0, 264, 192, 0, true},
};

// BF16 activations: the kernel's float32 gate and up differ from the twin's by summation order, so a rounding may
// land one BF16 ulp (<= 2^-7 relative) apart.
void expect_act_near(const std::vector<uint16_t>& got, const std::vector<uint16_t>& want) {
  ASSERT_EQ(got.size(), want.size());
  double scale = 1e-30;
  for (uint16_t h : want)
    if (!std::isnan(bf16_to_f32(h))) scale = std::max(scale, std::fabs(static_cast<double>(bf16_to_f32(h))));
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = bf16_to_f32(got[i]), w = bf16_to_f32(want[i]);
    ASSERT_EQ(std::isnan(g), std::isnan(w)) << "element " << i << (std::isnan(g) ? " not written" : " written");
    if (!std::isnan(w)) {
      ASSERT_LE(std::fabs(g - w), 0x1p-7 * std::fabs(w) + 1e-4 * scale) << "element " << i;
    }
  }
}

TEST(CudaMoeGroupedGemm, HopperMatchesTwinInEveryEpilogue) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(90);
  for (const HopperCase& c : kHopperCases) {
    std::vector<int32_t> counts = c.counts;
    int64_t max_rows = 0;
    if (counts.empty()) {
      const Routed rt(c.tokens, c.E, c.k_top, rng);
      counts = rt.pm.counts;
      max_rows = c.tokens;
    } else {
      max_rows = *std::max_element(counts.begin(), counts.end());
    }
    const auto E = static_cast<int32_t>(counts.size());
    std::vector<int32_t> offsets(static_cast<size_t>(E) + 1, 0);
    for (int32_t e = 0; e < E; ++e) offsets[e + 1] = offsets[e] + counts[e];
    const int64_t R = offsets[E], bound = R + c.rows_slack;
    // The weights drawn once a case (at V2-Lite's shapes the serial draw of 369M values was most of this test's
    // time): SWIGLU's [E, 2n, k], and STORE's [E, n, k] with each expert's first n rows of it.
    const std::vector<uint8_t> w_gate_up = random_elems(E * 2 * c.n * c.k, DType::BF16, rng, 0.05f);
    std::vector<uint8_t> w_n(static_cast<size_t>(E * c.n * c.k) * 2);
    for (int32_t e = 0; e < E; ++e)
      std::memcpy(&w_n[static_cast<size_t>(e * c.n * c.k) * 2], &w_gate_up[static_cast<size_t>(e * 2 * c.n * c.k) * 2],
                  static_cast<size_t>(c.n * c.k) * 2);
    const gpu::DeviceBuffer d_w_gate_up = to_device(w_gate_up), d_w_n = to_device(w_n);
    using Epi = kernels::MoeGemmEpilogue;
    for (const auto& [epi, tile_rows] : {std::pair{Epi::SWIGLU, 0}, std::pair{Epi::STORE, 0},
                                        std::pair{Epi::STORE_DT, 0}, std::pair{Epi::SWIGLU, 64},
                                        std::pair{Epi::STORE, 64}, std::pair{Epi::STORE_DT, 64}}) {
      const bool swiglu = epi == Epi::SWIGLU, to_act = swiglu || epi == Epi::STORE_DT;
      SCOPED_TRACE(fmt::format("{} {} tile_rows {}", c.name,
                               swiglu ? "SWIGLU" : (to_act ? "STORE_DT" : "STORE"), tile_rows));
      const int64_t w_rows = swiglu ? 2 * c.n : c.n, ld_out = c.n + 2;
      std::vector<uint8_t> x = random_elems(bound * c.k, DType::BF16, rng);
      for (int64_t i = R * c.k; i < bound * c.k; ++i) {
        const uint16_t nan = 0x7FC1;
        std::memcpy(&x[static_cast<size_t>(i) * 2], &nan, 2);
      }
      const std::vector<uint8_t>& w = swiglu ? w_gate_up : w_n;
      const gpu::DeviceBuffer& d_w = swiglu ? d_w_gate_up : d_w_n;
      std::vector<float> y(static_cast<size_t>((bound + 1) * ld_out), kNaN);
      std::vector<uint16_t> act(y.size(), 0x7FC1);
      auto d_x = to_device(x), d_off = to_device(offsets);
      auto d_y = to_device(y), d_act = to_device(act);
      kernels::MoeGroupedGemmParams p{.y = to_act ? nullptr : y.data(), .ld_y = ld_out, .x = x.data(), .ld_x = c.k,
                                      .w = w.data(), .expert_stride = w_rows * c.k, .dtype = DType::BF16,
                                      .offsets = offsets.data(), .n_experts = E, .n = c.n, .k = c.k,
                                      .max_rows = max_rows, .epilogue = epi, .act = to_act ? act.data() : nullptr,
                                      .ld_act = ld_out, .rows_bound = bound, .tile_rows = tile_rows};
      if (c.no_offsets) p.offsets = nullptr;
      kernels::twin::moe_grouped_gemm(p);
      p.y = to_act ? nullptr : d_y.as<float>();
      p.act = to_act ? d_act.get() : nullptr;
      p.x = d_x.get();
      p.w = d_w.get();
      p.offsets = c.no_offsets ? nullptr : d_off.as<int32_t>();
      if (!kernels::cuda::moe_grouped_gemm_hopper_supported(p))
        GTEST_SKIP() << "moe_grouped_gemm_hopper does not run here (needs an sm_90a build and an H100/H200)";
      kernels::cuda::moe_grouped_gemm_hopper(p, nullptr);
      MLABENCH_CUDA(cudaDeviceSynchronize());
      if (to_act)  // STORE_DT: float32 sums in another order, then one rounding: within a BF16 ulp as SWIGLU
        expect_act_near(to_host<uint16_t>(d_act, act.size()), act);
      else
        EXPECT_LE(test::max_rel_diff(to_host<float>(d_y, y.size()), y), 1e-5);
    }
  }
}

TEST(CudaMoeGroupedGemm, HopperSaysWhatItDoesNotRun) {
  MLABENCH_REQUIRE_GPU();
  gpu::DeviceBuffer x(1 << 16), w(1 << 16), y(1 << 16);
  const std::vector<int32_t> offsets = {0, 16};
  auto d_off = to_device(offsets);
  kernels::MoeGroupedGemmParams p{.y = y.as<float>(), .ld_y = 64, .x = x.get(), .ld_x = 64, .w = w.get(),
                                  .expert_stride = 64 * 64, .dtype = DType::BF16, .offsets = d_off.as<int32_t>(),
                                  .n_experts = 1, .n = 64, .k = 64, .max_rows = 16, .rows_bound = 16};
  if (!kernels::cuda::moe_grouped_gemm_hopper_supported(p))
    GTEST_SKIP() << "moe_grouped_gemm_hopper does not run here (needs an sm_90a build and an H100/H200)";
  auto refused = [&](kernels::MoeGroupedGemmParams q, const char* why) {
    EXPECT_FALSE(kernels::cuda::moe_grouped_gemm_hopper_supported(q)) << why;
    EXPECT_ANY_THROW(kernels::cuda::moe_grouped_gemm_hopper(q, nullptr)) << why;
  };
  kernels::MoeGroupedGemmParams q = p;
  q.dtype = DType::F16;
  refused(q, "F16 operands");
  q = p;
  q.rows_bound = 0;
  refused(q, "no rows_bound");
  q = p;
  q.ld_x = 68;
  q.k = 60;
  refused(q, "k off the 16-byte grid");
  q = p;
  q.x = static_cast<const char*>(p.x) + 2;
  refused(q, "x not 16-byte aligned");
  q = p;
  q.tile_rows = 32;
  refused(q, "32-row tiles");
}

// ---- gpu::MoeLayer --------------------------------------------------------------------------------------------

struct LayerCase {
  const char* name;
  int32_t E, K;
  int64_t H, I, SI;
  RouterMethod method;
  int32_t n_group, topk_group;
  RouterScoring scoring;
  bool norm;
  float scale;
  int64_t t_pair, t_padded;  // a token count in PAIR and in PADDED layout
};

// V2-Lite-like (greedy softmax, 2 shared experts), group-limited sigmoid with renormalised weights at the tiny
// model's widths, and no shared experts with hidden and expert widths off the 16-byte grid (the grouped GEMM's
// float32 fallback).
const LayerCase kLayerCases[] = {
    {"lite", 64, 6, 256, 64, 128, RouterMethod::GREEDY, 1, 1, RouterScoring::SOFTMAX, false, 1.0f, 8, 64},
    {"grouped_sigmoid", 16, 4, 96, 24, 48, RouterMethod::GROUP_LIMITED_GREEDY, 4, 2, RouterScoring::SIGMOID, true, 2.5f,
     4, 100},
    {"no_shared_unaligned", 8, 2, 100, 20, 0, RouterMethod::GREEDY, 1, 1, RouterScoring::SIGMOID, false, 1.5f, 4, 33},
};

// Router inputs on a 1/16 grid in [-2, 2] (never 0) and router weights on a 1/64 grid: every product and partial
// sum is exact in float32, so cuBLAS's router GEMM and the twin's loop agree to the bit and the routing cannot
// split on rounding. The values are exact in BF16 too, so x_c = x.
std::vector<float> grid_values(int64_t n, int32_t half_range, float step, std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> pick(1, half_range);
  std::bernoulli_distribution neg(0.5);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = static_cast<float>(neg(rng) ? -pick(rng) : pick(rng)) * step;
  return v;
}

std::vector<uint8_t> as_dtype(const std::vector<float>& v, DType dt) {
  const size_t es = dtype_size(dt);
  std::vector<uint8_t> out(v.size() * es);
  for (size_t i = 0; i < v.size(); ++i) {
    const uint16_t h = dt == DType::BF16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
    std::memcpy(&out[i * es], dt == DType::F32 ? static_cast<const void*>(&v[i]) : &h, es);
  }
  return out;
}

// moe_decode_ffn against its twin at V2-Lite's and V2's shapes, a small one and one without shared experts: act
// (NaN-poisoned first) within one BF16 rounding of the twin's (the gate/up sums run in another order, so a value
// near a rounding boundary may land one ulp away), out within that ulp's effect. Run twice: bit-identical.
TEST(CudaMoe, DecodeFfnMatchesTwin) {
  MLABENCH_REQUIRE_GPU();
  struct Case {
    const char* name;
    int64_t H, I, SI;
    int32_t E, K;
  };
  // The expert count only sizes the weights the indices pick from: K + 1 or 2 keeps the host copies small.
  const Case kCases[] = {{"V2-Lite", 2048, 1408, 2816, 8, 6}, {"V2", 5120, 1536, 3072, 7, 6},
                         {"small", 64, 24, 48, 8, 3}, {"no shared", 136, 40, 0, 5, 2}};
  std::mt19937 rng(31);
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    const DType dt = DType::BF16;
    const std::vector<uint8_t> x = random_elems(c.H, dt, rng), gate_up = random_elems(c.E * 2 * c.I * c.H, dt, rng, 0.05f),
                               down = random_elems(c.E * c.H * c.I, dt, rng, 0.05f),
                               shared_gate_up = random_elems(2 * c.SI * c.H, dt, rng, 0.05f),
                               shared_down = random_elems(c.H * c.SI, dt, rng, 0.05f);
    std::vector<int32_t> idx(static_cast<size_t>(c.E));
    std::iota(idx.begin(), idx.end(), 0);
    std::shuffle(idx.begin(), idx.end(), rng);
    idx.resize(static_cast<size_t>(c.K));
    std::vector<float> weight(static_cast<size_t>(c.K));
    std::uniform_real_distribution<float> uw(0.05f, 1.0f);
    for (float& v : weight) v = uw(rng);
    const int64_t U = c.SI + c.K * c.I;
    std::vector<uint16_t> act(static_cast<size_t>(U));
    std::vector<float> out(static_cast<size_t>(c.H));
    kernels::MoeDecodeFfnParams p{.x = x.data(), .topk_idx = idx.data(), .topk_weight = weight.data(),
                                  .experts_gate_up = gate_up.data(), .experts_down = down.data(),
                                  .shared_gate_up = c.SI ? shared_gate_up.data() : nullptr,
                                  .shared_down = c.SI ? shared_down.data() : nullptr, .hidden = c.H, .inter = c.I,
                                  .shared_inter = c.SI, .n_experts = c.E, .top_k = c.K, .act = act.data(),
                                  .out = out.data()};
    kernels::twin::moe_decode_ffn(p);
    auto d_x = to_device(x), d_gu = to_device(gate_up), d_down = to_device(down), d_sgu = to_device(shared_gate_up),
         d_sd = to_device(shared_down), d_idx = to_device(idx), d_w = to_device(weight);
    std::vector<std::vector<float>> outs;
    for (int run = 0; run < 2; ++run) {
      auto d_act = to_device(std::vector<uint16_t>(act.size(), f32_to_bf16(kNaN)));
      auto d_out = to_device(std::vector<float>(out.size(), kNaN));
      kernels::MoeDecodeFfnParams g = p;
      g.x = d_x.get(), g.topk_idx = d_idx.as<int32_t>(), g.topk_weight = d_w.as<float>();
      g.experts_gate_up = d_gu.get(), g.experts_down = d_down.get();
      g.shared_gate_up = c.SI ? d_sgu.get() : nullptr, g.shared_down = c.SI ? d_sd.get() : nullptr;
      g.act = d_act.get(), g.out = d_out.as<float>();
      ASSERT_TRUE(kernels::cuda::moe_decode_ffn_supported(g));
      kernels::cuda::moe_decode_ffn(g, nullptr);
      MLABENCH_CUDA(cudaDeviceSynchronize());
      const int64_t off_by_one = test::expect_bf16_within_an_ulp(to_host<uint16_t>(d_act, act.size()), act, "act column");
      EXPECT_LE(off_by_one, U / 20) << "act columns one BF16 ulp from the twin's";
      outs.push_back(to_host<float>(d_out, out.size()));
      EXPECT_LE(test::max_rel_diff(outs.back(), out), 5e-3);
    }
    EXPECT_EQ(outs[0], outs[1]) << "two runs differ";
  }
  kernels::MoeDecodeFfnParams bad{.hidden = 64, .inter = 20, .n_experts = 4, .top_k = 2};
  EXPECT_FALSE(kernels::cuda::moe_decode_ffn_supported(bad)) << "inter 20 is not a multiple of 8";
}

// The route form of moe_decode_ffn (MoeDecodeFfnParams::route: the router's top-k inside the two launches) against
// the router kernel followed by the plain form, on the GPU: the same experts and weights (published by the gate/up
// launch), act and out bit for bit. Real
// expert counts and router kinds (V2-Lite's 64 softmax greedy, DeepSeek-V2's 160 group-limited with scaling 16,
// 256 sigmoid group-limited renormalised, without shared experts so the first CTA is a routed one too; logits on a
// coarse grid, so ties are broken by index as the router breaks them), small hidden sizes; BF16 and FP8 weights.
// The twin's route form picks the same experts, its weights within the router test's bound of the GPU's.
TEST(CudaMoe, DecodeFfnRouteFormIsTheRouterThenTheFfn) {
  MLABENCH_REQUIRE_GPU();
  struct Case {
    const char* name;
    int64_t H, I, SI;
    int32_t E, K;
    RouterMethod method;
    int32_t n_group, topk_group;
    RouterScoring scoring;
    bool norm_topk_prob;
    float scaling;
    bool fp8;
  };
  const Case kCases[] = {
      {"V2-Lite router", 256, 64, 128, 64, 6, RouterMethod::GREEDY, 1, 1, RouterScoring::SOFTMAX, false, 1.0f, false},
      {"V2 router", 128, 32, 64, 160, 6, RouterMethod::GROUP_LIMITED_GREEDY, 8, 3, RouterScoring::SOFTMAX, false, 16.0f,
       false},
      {"sigmoid, no shared", 128, 32, 0, 256, 8, RouterMethod::GROUP_LIMITED_GREEDY, 8, 4, RouterScoring::SIGMOID, true,
       2.5f, false},
      {"V2-Lite router, FP8", 256, 128, 256, 64, 6, RouterMethod::GREEDY, 1, 1, RouterScoring::SOFTMAX, false, 1.0f,
       true}};
  std::mt19937 rng(57);
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    const DType dt = DType::BF16;
    const int64_t U = c.SI + c.K * c.I, si = std::max<int64_t>(c.SI, 128);
    const std::vector<float> logits = grid_values(c.E, 4, 1.0f / 8, rng);  // 9 values: many ties
    const std::vector<uint8_t> x = random_elems(c.H, dt, rng);
    // BF16 weights, or e4m3 codes with their 128 x 128 scales.
    std::vector<uint8_t> gu, dn, sgu, sd;
    std::vector<float> gus, dns, sgus, sds;
    if (c.fp8) {
      test::Fp8Experts a = test::quantized_experts(c.E, 2 * c.I, c.H, 0, rng), b = test::quantized_experts(c.E, c.H, c.I, 0, rng),
                       e = test::quantized_experts(1, 2 * si, c.H, 0, rng), f = test::quantized_experts(1, c.H, si, 0, rng);
      gu = a.codes, gus = a.scale, dn = b.codes, dns = b.scale, sgu = e.codes, sgus = e.scale, sd = f.codes, sds = f.scale;
    } else {
      gu = random_elems(c.E * 2 * c.I * c.H, dt, rng, 0.05f), dn = random_elems(c.E * c.H * c.I, dt, rng, 0.05f);
      sgu = random_elems(2 * si * c.H, dt, rng, 0.05f), sd = random_elems(c.H * si, dt, rng, 0.05f);
    }
    const kernels::RouterParams rp{.n_tokens = 1, .n_experts = c.E, .top_k = c.K, .method = c.method,
                                   .n_group = c.n_group, .topk_group = c.topk_group,
                                   .norm_topk_prob = c.norm_topk_prob, .routed_scaling_factor = c.scaling,
                                   .scoring = c.scoring};
    auto d_logits = to_device(logits), d_x = to_device(x), d_gu = to_device(gu), d_dn = to_device(dn),
         d_sgu = to_device(sgu), d_sd = to_device(sd), d_gus = to_device(gus), d_dns = to_device(dns),
         d_sgus = to_device(sgus), d_sds = to_device(sds);
    auto d_arrivals = to_device(std::vector<uint32_t>(static_cast<size_t>(U / 128 + 1), 0u));
    const bool sh = c.SI > 0;
    struct Run {
      std::vector<int32_t> idx;
      std::vector<float> weight, out;
      std::vector<uint16_t> act;
    };
    // route_inside: the route form; else the router kernel, then the plain form over its outputs.
    auto run = [&](bool route_inside) {
      auto d_idx = to_device(std::vector<int32_t>(static_cast<size_t>(c.K), -1));
      auto d_w = to_device(std::vector<float>(static_cast<size_t>(c.K), kNaN));
      auto d_act = to_device(std::vector<uint16_t>(static_cast<size_t>(U), f32_to_bf16(kNaN)));
      auto d_out = to_device(std::vector<float>(static_cast<size_t>(c.H), kNaN));
      auto d_aq = to_device(std::vector<uint8_t>(static_cast<size_t>(U), 0x7f));
      auto d_as = to_device(std::vector<float>(static_cast<size_t>(U / 128 + 1), kNaN));
      kernels::RouterParams r = rp;
      r.logits = d_logits.as<float>(), r.topk_idx = d_idx.as<int32_t>(), r.topk_weight = d_w.as<float>();
      kernels::MoeDecodeFfnParams g{.x = d_x.get(), .experts_gate_up = d_gu.get(), .experts_down = d_dn.get(),
                                    .shared_gate_up = sh ? d_sgu.get() : nullptr, .shared_down = sh ? d_sd.get() : nullptr,
                                    .hidden = c.H, .inter = c.I, .shared_inter = c.SI, .n_experts = c.E, .top_k = c.K,
                                    .act = d_act.get(), .out = d_out.as<float>()};
      if (c.fp8) {
        g.experts_gate_up_scale = d_gus.as<float>(), g.experts_down_scale = d_dns.as<float>();
        g.shared_gate_up_scale = sh ? d_sgus.as<float>() : nullptr, g.shared_down_scale = sh ? d_sds.as<float>() : nullptr;
        g.act_q = d_aq.as<uint8_t>(), g.act_scale = d_as.as<float>(), g.act_arrivals = d_arrivals.as<uint32_t>();
      }
      if (route_inside) {
        g.route = r;
      } else {
        kernels::cuda::router(r, nullptr);
        g.topk_idx = r.topk_idx, g.topk_weight = r.topk_weight;
      }
      EXPECT_TRUE(kernels::cuda::moe_decode_ffn_supported(g));
      kernels::cuda::moe_decode_ffn(g, nullptr);
      MLABENCH_CUDA(cudaDeviceSynchronize());
      return Run{to_host<int32_t>(d_idx, static_cast<size_t>(c.K)), to_host<float>(d_w, static_cast<size_t>(c.K)),
                 to_host<float>(d_out, static_cast<size_t>(c.H)), to_host<uint16_t>(d_act, static_cast<size_t>(U))};
    };
    const Run plain = run(false), inside = run(true);
    EXPECT_EQ(inside.idx, plain.idx) << "experts";
    EXPECT_EQ(0, std::memcmp(inside.weight.data(), plain.weight.data(), plain.weight.size() * sizeof(float))) << "weights";
    EXPECT_EQ(0, std::memcmp(inside.act.data(), plain.act.data(), plain.act.size() * 2)) << "act";
    EXPECT_EQ(0, std::memcmp(inside.out.data(), plain.out.data(), plain.out.size() * sizeof(float))) << "out";
    EXPECT_FALSE(std::isnan(inside.out[0])) << "out written";
    // The twin's route form: its router's experts and weights, the GPU's bit for bit.
    std::vector<int32_t> idx(static_cast<size_t>(c.K), -1);
    std::vector<float> weight(static_cast<size_t>(c.K), kNaN), out(static_cast<size_t>(c.H), kNaN);
    std::vector<uint16_t> act(static_cast<size_t>(U));
    std::vector<uint8_t> act_q(static_cast<size_t>(U));
    std::vector<float> act_scale(static_cast<size_t>(U / 128 + 1));
    std::vector<uint32_t> arrivals(act_scale.size(), 0u);
    kernels::RouterParams hr = rp;
    hr.logits = logits.data(), hr.topk_idx = idx.data(), hr.topk_weight = weight.data();
    kernels::MoeDecodeFfnParams h{.x = x.data(), .experts_gate_up = gu.data(), .experts_down = dn.data(),
                                  .shared_gate_up = sh ? sgu.data() : nullptr, .shared_down = sh ? sd.data() : nullptr,
                                  .hidden = c.H, .inter = c.I, .shared_inter = c.SI, .n_experts = c.E, .top_k = c.K,
                                  .act = act.data(), .out = out.data(), .route = hr};
    if (c.fp8) {
      h.experts_gate_up_scale = gus.data(), h.experts_down_scale = dns.data();
      h.shared_gate_up_scale = sh ? sgus.data() : nullptr, h.shared_down_scale = sh ? sds.data() : nullptr;
      h.act_q = act_q.data(), h.act_scale = act_scale.data(), h.act_arrivals = arrivals.data();
    }
    kernels::twin::moe_decode_ffn(h);
    // The twin's router: the same experts, and weights within the router test's bound (expf within 2 ulp of the
    // host's exp, the sums in another order: 2e-6 relative, CudaMoe.RouterMatchesTwin).
    EXPECT_EQ(idx, inside.idx) << "the twin's experts";
    for (size_t i = 0; i < weight.size(); ++i)
      EXPECT_LE(std::fabs(inside.weight[i] - weight[i]), 2e-6 * std::fabs(weight[i]) + 1e-30) << "weight " << i;
    EXPECT_LE(test::max_rel_diff(inside.out, out), c.fp8 ? 2e-2 : 5e-3) << "out against the twin";
  }
  // Refused: more experts than the route form holds, a router of another top_k, a router of two tokens.
  kernels::MoeDecodeFfnParams bad{.hidden = 64, .inter = 24, .n_experts = 300, .top_k = 6};
  int32_t idx_out[8];
  float w_out[8];
  const float logit = 0.0f;
  bad.route = {.logits = &logit, .n_tokens = 1, .n_experts = 300, .top_k = 6, .topk_idx = idx_out, .topk_weight = w_out};
  EXPECT_FALSE(kernels::cuda::moe_decode_ffn_supported(bad)) << "300 experts";
  bad.n_experts = bad.route.n_experts = 64;
  bad.route.top_k = 5;
  EXPECT_FALSE(kernels::cuda::moe_decode_ffn_supported(bad)) << "route.top_k 5 against top_k 6";
  bad.route.top_k = 6;
  bad.route.n_tokens = 2;
  EXPECT_FALSE(kernels::cuda::moe_decode_ffn_supported(bad)) << "two tokens";
}

// One layer's weights, on the host and the device, and the params that point at either copy.
struct LayerWeightsHD {
  LayerCase c;
  DType dt;
  std::vector<float> router;
  std::vector<uint8_t> gate_up, down, shared_gate_up, shared_down;
  gpu::DeviceBuffer d_router, d_gate_up, d_down, d_shared_gate_up, d_shared_down;

  LayerWeightsHD(const LayerCase& c_, DType dt_, std::mt19937& rng) : c(c_), dt(dt_) {
    router = grid_values(c.E * c.H, 8, 1.0f / 64, rng);
    gate_up = random_elems(c.E * 2 * c.I * c.H, dt, rng, 0.05f);
    down = random_elems(c.E * c.H * c.I, dt, rng, 0.05f);
    shared_gate_up = random_elems(2 * c.SI * c.H, dt, rng, 0.05f);
    shared_down = random_elems(c.H * c.SI, dt, rng, 0.05f);
    d_router = to_device(router);
    d_gate_up = to_device(gate_up);
    d_down = to_device(down);
    d_shared_gate_up = to_device(shared_gate_up);
    d_shared_down = to_device(shared_down);
  }

  kernels::MoeLayerParams params(int64_t T, bool device) const {
    kernels::MoeLayerParams p;
    p.n_tokens = T;
    p.dtype = dt;
    p.hidden = c.H;
    p.inter = c.I;
    p.shared_inter = c.SI;
    p.n_experts = c.E;
    p.top_k = c.K;
    p.method = c.method;
    p.n_group = c.n_group;
    p.topk_group = c.topk_group;
    p.norm_topk_prob = c.norm;
    p.routed_scaling_factor = c.scale;
    p.scoring = c.scoring;
    p.router_w = device ? d_router.as<float>() : router.data();
    p.experts_gate_up = device ? d_gate_up.get() : gate_up.data();
    p.experts_down = device ? d_down.get() : down.data();
    p.shared_gate_up = c.SI == 0 ? nullptr : device ? d_shared_gate_up.get() : shared_gate_up.data();
    p.shared_down = c.SI == 0 ? nullptr : device ? d_shared_down.get() : shared_down.data();
    return p;
  }

  // The twin's output for router input x (x_c = x in dt, exactly). adjust (optional): the params as a test varies
  // them (an expert-parallel rank's block).
  std::vector<float> twin(const std::vector<float>& x, int64_t T,
                          const std::function<kernels::MoeLayerParams(kernels::MoeLayerParams)>& adjust = {}) const {
    const std::vector<uint8_t> x_c = as_dtype(x, dt);
    std::vector<float> out(x.size(), kNaN);
    kernels::MoeLayerParams p = adjust ? adjust(params(T, false)) : params(T, false);
    p.x = x.data();
    p.x_c = x_c.data();
    p.out = out.data();
    kernels::twin::moe_layer(p);
    return out;
  }

  // The twin's routing of x (the experts each token picks), to tell batches apart.
  std::vector<int32_t> routing(const std::vector<float>& x, int64_t T) const {
    std::vector<float> logits(static_cast<size_t>(T * c.E));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t e = 0; e < c.E; ++e) {
        float acc = 0.0f;
        for (int64_t i = 0; i < c.H; ++i)
          acc += x[static_cast<size_t>(t * c.H + i)] * router[static_cast<size_t>(e * c.H + i)];
        logits[static_cast<size_t>(t * c.E + e)] = acc;
      }
    std::vector<int32_t> idx(static_cast<size_t>(T * c.K));
    std::vector<float> w(idx.size());
    kernels::RouterParams rp = {.logits = logits.data(), .n_tokens = T, .n_experts = c.E, .top_k = c.K,
                                .method = c.method, .n_group = c.n_group, .topk_group = c.topk_group,
                                .norm_topk_prob = c.norm, .routed_scaling_factor = c.scale, .topk_idx = idx.data(),
                                .topk_weight = w.data(), .scoring = c.scoring};
    kernels::twin::router(rp);
    return idx;
  }
};

// BF16: the hidden rows are rounded to BF16 after differently ordered sums, so an element may land one BF16 ulp
// apart (2^-8) and move an output by ~1e-3 of its scale; F32: float32 rounding.
double layer_tolerance(DType dt) { return dt == DType::F32 ? 1e-5 : 5e-3; }

// Runs the layer eagerly on device copies of x and returns out (poisoned with NaN first); adjust as in twin().
std::vector<float> run_layer(gpu::MoeLayer& layer, const LayerWeightsHD& lw, const std::vector<float>& x, int64_t T,
                             bool graph_safe, cudaStream_t stream,
                             const std::function<kernels::MoeLayerParams(kernels::MoeLayerParams)>& adjust = {}) {
  auto d_x = to_device(x), d_xc = to_device(as_dtype(x, lw.dt));
  auto d_out = to_device(std::vector<float>(x.size(), kNaN));
  kernels::MoeLayerParams p = adjust ? adjust(lw.params(T, true)) : lw.params(T, true);
  p.x = d_x.as<float>();
  p.x_c = d_xc.get();
  p.out = d_out.as<float>();
  p.graph_safe = graph_safe;
  layer.forward(p);
  MLABENCH_CUDA(cudaStreamSynchronize(stream));
  return to_host<float>(d_out, x.size());
}

class CudaMoeLayer : public ::testing::TestWithParam<DType> {};

TEST_P(CudaMoeLayer, MatchesTwinInEveryRowLayout) {
  MLABENCH_REQUIRE_GPU();
  const DType dt = GetParam();
  std::mt19937 rng(50 + static_cast<unsigned>(dt));
  cudaStream_t stream;
  MLABENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  {
    gpu::Blas blas(stream);
    for (const LayerCase& c : kLayerCases) {
      const LayerWeightsHD lw(c, dt, rng);
      gpu::MoeLayer layer(blas, stream, dt, c.H, c.I, c.SI, c.E, c.K, 300);
      EXPECT_GT(layer.scratch_bytes(), 0u);
      struct Run {
        int64_t T;
        MoeRowMode mode;
        bool graph_safe;
      };
      // T = 1 is moe_decode_ffn's case in BF16 where the shapes allow it (the PAIR path otherwise).
      for (const Run& r : {Run{1, MoeRowMode::PAIR, false}, Run{1, MoeRowMode::PAIR, true},
                           Run{c.t_pair, MoeRowMode::PAIR, false}, Run{c.t_padded, MoeRowMode::PADDED, false},
                           Run{200, MoeRowMode::COMPACT, false}, Run{200, MoeRowMode::COMPACT, true},
                           Run{300, MoeRowMode::COMPACT, true}}) {
        SCOPED_TRACE(std::string(c.name) + " " + std::string(dtype_name(dt)) + " T=" + std::to_string(r.T) + " " +
                     mode_name(r.mode) + (r.graph_safe ? " graph_safe" : ""));
        ASSERT_EQ(kernels::moe_row_mode(r.T, c.K, c.E), r.mode);
        const std::vector<float> x = grid_values(r.T * c.H, 32, 1.0f / 16, rng);
        const std::vector<float> got = run_layer(layer, lw, x, r.T, r.graph_safe, stream);
        EXPECT_LE(test::max_rel_diff(got, lw.twin(x, r.T)), layer_tolerance(dt));
      }
    }
  }
  MLABENCH_CUDA(cudaStreamDestroy(stream));
}

// A decode step past kMoePaddedMaxTokens, captured once with graph_safe and replayed on new inputs: the routing
// (and so every expert's row count) changes between replays, and each replay must match the twin on its input.
TEST_P(CudaMoeLayer, GraphReplayFollowsNewRouting) {
  MLABENCH_REQUIRE_GPU();
  const DType dt = GetParam();
  std::mt19937 rng(60 + static_cast<unsigned>(dt));
  const LayerCase& c = kLayerCases[0];
  const int64_t T = 200;
  ASSERT_EQ(kernels::moe_row_mode(T, c.K, c.E), MoeRowMode::COMPACT);
  cudaStream_t stream;
  MLABENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  {
    gpu::Blas blas(stream);
    const LayerWeightsHD lw(c, dt, rng);
    gpu::MoeLayer layer(blas, stream, dt, c.H, c.I, c.SI, c.E, c.K, 256);
    gpu::DeviceBuffer d_x(static_cast<size_t>(T * c.H) * 4), d_xc(static_cast<size_t>(T * c.H) * dtype_size(dt));
    gpu::DeviceBuffer d_out(static_cast<size_t>(T * c.H) * 4);
    kernels::MoeLayerParams p = lw.params(T, true);
    p.x = d_x.as<float>();
    p.x_c = d_xc.get();
    p.out = d_out.as<float>();
    p.graph_safe = true;
    auto upload = [&](const std::vector<float>& x) {
      const std::vector<uint8_t> xc = as_dtype(x, dt);
      const std::vector<float> nan(x.size(), kNaN);
      MLABENCH_CUDA(cudaMemcpy(d_x.get(), x.data(), x.size() * 4, cudaMemcpyHostToDevice));
      MLABENCH_CUDA(cudaMemcpy(d_xc.get(), xc.data(), xc.size(), cudaMemcpyHostToDevice));
      MLABENCH_CUDA(cudaMemcpy(d_out.get(), nan.data(), nan.size() * 4, cudaMemcpyHostToDevice));
    };

    std::vector<float> x = grid_values(T * c.H, 32, 1.0f / 16, rng);
    upload(x);
    layer.forward(p);  // eager first, as the engine does before it captures a shape
    MLABENCH_CUDA(cudaStreamSynchronize(stream));
    EXPECT_LE(test::max_rel_diff(to_host<float>(d_out, x.size()), lw.twin(x, T)), layer_tolerance(dt));

    cudaGraph_t graph;
    MLABENCH_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    layer.forward(p);  // a host synchronisation or read-back here would end the capture with an error
    MLABENCH_CUDA(cudaStreamEndCapture(stream, &graph));
    cudaGraphExec_t exec;
    MLABENCH_CUDA(cudaGraphInstantiate(&exec, graph, 0));
    std::vector<int32_t> previous = lw.routing(x, T);
    for (int replay = 0; replay < 3; ++replay) {
      SCOPED_TRACE("replay " + std::to_string(replay));
      x = grid_values(T * c.H, 32, 1.0f / 16, rng);
      const std::vector<int32_t> routing = lw.routing(x, T);
      EXPECT_NE(routing, previous) << "the new input must route differently";
      previous = routing;
      upload(x);
      MLABENCH_CUDA(cudaGraphLaunch(exec, stream));
      MLABENCH_CUDA(cudaStreamSynchronize(stream));
      EXPECT_LE(test::max_rel_diff(to_host<float>(d_out, x.size()), lw.twin(x, T)), layer_tolerance(dt));
    }
    MLABENCH_CUDA(cudaGraphExecDestroy(exec));
    MLABENCH_CUDA(cudaGraphDestroy(graph));
  }
  MLABENCH_CUDA(cudaStreamDestroy(stream));
}

// Expert parallelism (issue 22, --tp N --ep N): a layer built for a block of the experts (local_experts), its
// weights only those experts, against the twin of the same block (MoeLayerParams::held_begin / held_experts), in
// every row layout such a rank takes (PADDED where a whole layer would run PAIR, at one token too: moe_decode_ffn
// and PAIR index the weights by the token's experts; COMPACT eager and graph-safe). The shared experts on rank 0
// only. Over 2 ranks, with out poisoned: a rank writes every token's row (zero where it holds none of its experts).
TEST_P(CudaMoeLayer, ExpertParallelRankMatchesTwin) {
  MLABENCH_REQUIRE_GPU();
  const DType dt = GetParam();
  std::mt19937 rng(70 + static_cast<unsigned>(dt));
  const size_t es = dtype_size(dt);
  cudaStream_t stream;
  MLABENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  {
    gpu::Blas blas(stream);
    for (const LayerCase& c : kLayerCases) {
      const LayerWeightsHD lw(c, dt, rng);
      for (int r = 0; r < 2; ++r) {
        const int32_t b = c.E * r / 2, n = c.E * (r + 1) / 2 - b;
        const int64_t SI = r == 0 ? c.SI : 0;
        gpu::MoeLayer layer(blas, stream, dt, c.H, c.I, SI, c.E, c.K, 300, false, n);
        const auto held = [&](kernels::MoeLayerParams p) {
          p.held_begin = b;
          p.held_experts = n;
          p.experts_gate_up =
              static_cast<const char*>(p.experts_gate_up) + static_cast<size_t>(b * 2 * c.I * c.H) * es;
          p.experts_down = static_cast<const char*>(p.experts_down) + static_cast<size_t>(b * c.H * c.I) * es;
          if (SI == 0) p.shared_inter = 0, p.shared_gate_up = p.shared_down = nullptr;
          return p;
        };
        for (const auto& [T, graph_safe] : {std::pair<int64_t, bool>{1, false}, {1, true}, {c.t_pair, false},
                                            {c.t_padded, false}, {200, false}, {200, true}}) {
          SCOPED_TRACE(std::string(c.name) + " " + std::string(dtype_name(dt)) + " rank " + std::to_string(r) +
                       " T=" + std::to_string(T) + (graph_safe ? " graph_safe" : ""));
          EXPECT_NE(kernels::moe_row_mode(T, c.K, n, true), MoeRowMode::PAIR);
          const std::vector<float> x = grid_values(T * c.H, 32, 1.0f / 16, rng);
          const std::vector<float> got = run_layer(layer, lw, x, T, graph_safe, stream, held);
          const std::vector<float> want = lw.twin(x, T, held);
          EXPECT_EQ(std::count_if(got.begin(), got.end(), [](float v) { return std::isnan(v); }), 0) << "rows left";
          EXPECT_LE(test::max_rel_diff(got, want), layer_tolerance(dt));
        }
      }
    }
  }
  MLABENCH_CUDA(cudaStreamDestroy(stream));
}

// The FP8 form (codes and rows-major scales of each gathered row, fp8_quantize_rows' arithmetic) against the twin,
// bit for bit: BF16 and F32 rows, widths on and off the 128 grid, a NaN in the last token, every row layout; rows
// no pair maps to keep their poison (0xAB codes, NaN scales).
TEST(CudaMoe, Fp8GatherMatchesTwinBitForBit) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(18);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (int64_t T : kTokenSweep) {
    const Routed rt(T, 64, 6, rng);
    for (DType dt : {DType::BF16, DType::F32})
      for (const int64_t H : {int64_t{2048}, int64_t{1000}})
        for (MoeRowMode mode : kModes) {
          SCOPED_TRACE(mode_name(mode) + " " + std::string(dtype_name(dt)) + " T=" + std::to_string(T) +
                       " hidden=" + std::to_string(H));
          const int64_t ld_x = H + 8, ld_q = H + 16, groups = (H + kFp8Block - 1) / kFp8Block;
          std::vector<float> xf(static_cast<size_t>(T * ld_x));
          for (float& v : xf) v = nd(rng);
          xf[static_cast<size_t>((T - 1) * ld_x + H / 3)] = kNaN;
          const std::vector<uint8_t> x = as_dtype(xf, dt);
          std::vector<uint8_t> q(static_cast<size_t>(rt.rows(mode) * ld_q), 0xAB);
          std::vector<float> sc(static_cast<size_t>(rt.rows(mode) * groups), kNaN);
          auto d_x = to_device(x);
          auto d_q = to_device(q);
          auto d_sc = to_device(sc);
          kernels::MoeGatherParams p{nullptr, ld_q, x.data(), ld_x, dt, H, T, rt.k, rt.host_map(mode)};
          p.out_q = q.data();
          p.out_scale = sc.data();
          kernels::twin::moe_gather(p);
          p.x = d_x.get();
          p.out_q = d_q.as<uint8_t>();
          p.out_scale = d_sc.as<float>();
          p.map = rt.device_map(mode);
          kernels::cuda::moe_gather(p, nullptr);
          const std::vector<uint8_t> got_q = to_host<uint8_t>(d_q, q.size());
          const std::vector<float> got_sc = to_host<float>(d_sc, sc.size());
          ASSERT_EQ(0, std::memcmp(got_q.data(), q.data(), q.size())) << "codes";
          ASSERT_EQ(0, std::memcmp(got_sc.data(), sc.data(), sc.size() * 4)) << "scales (NaN poison included)";
        }
  }
}

// The shared experts on the layer's second stream (MLABENCH_MOE_SHARED_STREAM, read when a layer is built) give the
// bits of the one-stream order, eager and replayed from a CUDA graph (the fork and join captured), where the Hopper
// grouped GEMM runs (T = 64 takes its COMPACT rows in place of PADDED); the side path must have run there.
TEST(CudaMoeLayerSharedStream, SameBitsAsOneStreamEagerAndGraphed) {
  MLABENCH_REQUIRE_GPU();
  const LayerCase& c = kLayerCases[0];
  std::mt19937 rng(70);
  cudaStream_t stream;
  MLABENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  {
    gpu::Blas blas(stream);
    const LayerWeightsHD lw(c, DType::BF16, rng);
    auto build = [&](const char* on) {
      setenv("MLABENCH_MOE_SHARED_STREAM", on, 1);
      auto layer = std::make_unique<gpu::MoeLayer>(blas, stream, DType::BF16, c.H, c.I, c.SI, c.E, c.K, 300);
      unsetenv("MLABENCH_MOE_SHARED_STREAM");
      return layer;
    };
    const auto one = build("0"), two = build("1");
    const char* gemm = std::getenv("MLABENCH_MOE_GEMM");
    const bool hopper = kernels::cuda::hopper::sm90a_available() && (gemm == nullptr || std::string(gemm) == "hopper");
    if (!hopper) std::printf("[ note ] no sm_90a Hopper path here: the side stream stays unused, bits compared only\n");
    for (const int64_t T : {int64_t{64}, int64_t{200}, int64_t{300}}) {
      SCOPED_TRACE("T=" + std::to_string(T));
      const std::vector<float> x = grid_values(T * c.H, 32, 1.0f / 16, rng);
      const int64_t before = two->shared_side_runs();
      const std::vector<float> a = run_layer(*one, lw, x, T, true, stream), b = run_layer(*two, lw, x, T, true, stream);
      EXPECT_EQ(one->shared_side_runs(), 0);
      EXPECT_EQ(two->shared_side_runs() - before, hopper ? 1 : 0);
      ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << "eager";
      EXPECT_LE(test::max_rel_diff(b, lw.twin(x, T)), layer_tolerance(DType::BF16));

      // The same step captured with the fork and join, replayed over an output poisoned with NaN.
      gpu::DeviceBuffer d_x = to_device(x), d_xc = to_device(as_dtype(x, DType::BF16));
      gpu::DeviceBuffer d_out = to_device(std::vector<float>(x.size(), kNaN));
      kernels::MoeLayerParams p = lw.params(T, true);
      p.x = d_x.as<float>();
      p.x_c = d_xc.get();
      p.out = d_out.as<float>();
      p.graph_safe = true;
      test::run_captured(stream, [&](cudaStream_t) { two->forward(p); });  // the fork and join captured with it
      EXPECT_EQ(std::memcmp(a.data(), to_host<float>(d_out, x.size()).data(), a.size() * 4), 0) << "graphed";
    }
  }
  MLABENCH_CUDA(cudaStreamDestroy(stream));
}

// Experts' e4m3 codes times their block scales: [E, rows, k] float32, the weights an FP8 layer computes with.
std::vector<float> dequantised(const test::Fp8Experts& q, int32_t E, int64_t rows, int64_t k) {
  std::vector<float> w(static_cast<size_t>(E * rows * k));
  for (int64_t e = 0; e < E; ++e)
    for (int64_t j = 0; j < rows; ++j)
      for (int64_t c = 0; c < k; ++c)
        w[static_cast<size_t>((e * rows + j) * k + c)] =
            e4m3_to_f32(q.codes[static_cast<size_t>(e * q.stride + j * k + c)]) *
            q.scale[static_cast<size_t>(e * q.scale_stride + (j / kFp8Block) * q.scale_ld + c / kFp8Block)];
  return w;
}

// FP8 weights of a BF16 model: the shared experts on the second stream (forked after x_c, joined before the routed
// down GEMM) give the bits of the one-stream order at decode batches and a prefill-sized step, eager and replayed
// from a CUDA graph over a NaN-poisoned output, and the side path runs at every token count of 2 or more. Both
// orders are anchored to the twin in float32 on the dequantised weights (the activations' e4m3 rounding apart).
TEST(CudaMoeLayerSharedStream, Fp8SameBitsAsOneStreamEagerAndGraphed) {
  MLABENCH_REQUIRE_GPU();
  const LayerCase c{"fp8", 16, 4, 256, 128, 256, RouterMethod::GREEDY, 1, 1, RouterScoring::SOFTMAX, false, 1.0f, 0, 0};
  std::mt19937 rng(71);
  const test::Fp8Experts gate_up = test::quantized_experts(c.E, 2 * c.I, c.H, 0, rng);
  const test::Fp8Experts down = test::quantized_experts(c.E, c.H, c.I, 0, rng);
  const test::Fp8Experts shared_gate_up = test::quantized_experts(1, 2 * c.SI, c.H, 0, rng);
  const test::Fp8Experts shared_down = test::quantized_experts(1, c.H, c.SI, 0, rng);
  const gpu::DeviceBuffer d_gu = to_device(gate_up.codes), d_gus = to_device(gate_up.scale);
  const gpu::DeviceBuffer d_dn = to_device(down.codes), d_dns = to_device(down.scale);
  const gpu::DeviceBuffer d_sgu = to_device(shared_gate_up.codes), d_sgus = to_device(shared_gate_up.scale);
  const gpu::DeviceBuffer d_sdn = to_device(shared_down.codes), d_sdns = to_device(shared_down.scale);
  const std::vector<float> w_gu = dequantised(gate_up, c.E, 2 * c.I, c.H), w_dn = dequantised(down, c.E, c.H, c.I);
  const std::vector<float> w_sgu = dequantised(shared_gate_up, 1, 2 * c.SI, c.H);
  const std::vector<float> w_sdn = dequantised(shared_down, 1, c.H, c.SI);
  cudaStream_t stream;
  MLABENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  {
    gpu::Blas blas(stream);
    const LayerWeightsHD lw(c, DType::BF16, rng);  // the router's weights (its expert weights unused here)
    auto build = [&](const char* on) {
      setenv("MLABENCH_MOE_SHARED_STREAM", on, 1);
      auto layer = std::make_unique<gpu::MoeLayer>(blas, stream, DType::BF16, c.H, c.I, c.SI, c.E, c.K, 128, true);
      unsetenv("MLABENCH_MOE_SHARED_STREAM");
      return layer;
    };
    const auto one = build("0"), two = build("1");
    for (const int64_t T : {int64_t{2}, int64_t{8}, int64_t{16}, int64_t{100}}) {
      SCOPED_TRACE("T=" + std::to_string(T));
      const std::vector<float> x = grid_values(T * c.H, 32, 1.0f / 16, rng);
      gpu::DeviceBuffer d_x = to_device(x), d_xc = to_device(as_dtype(x, DType::BF16));
      gpu::DeviceBuffer d_out = to_device(std::vector<float>(x.size(), kNaN));
      kernels::MoeLayerParams p = lw.params(T, true);
      p.x = d_x.as<float>();
      p.x_c = d_xc.get();
      p.out = d_out.as<float>();
      p.graph_safe = true;
      p.experts_gate_up = d_gu.get(), p.experts_gate_up_scale = d_gus.as<float>();
      p.experts_down = d_dn.get(), p.experts_down_scale = d_dns.as<float>();
      p.shared_gate_up = d_sgu.get(), p.shared_gate_up_scale = d_sgus.as<float>();
      p.shared_down = d_sdn.get(), p.shared_down_scale = d_sdns.as<float>();
      auto run = [&](gpu::MoeLayer& layer) {
        MLABENCH_CUDA(cudaMemcpy(d_out.get(), std::vector<float>(x.size(), kNaN).data(), x.size() * 4,
                                 cudaMemcpyHostToDevice));
        layer.forward(p);
        MLABENCH_CUDA(cudaStreamSynchronize(stream));
        return to_host<float>(d_out, x.size());
      };
      const int64_t before = two->shared_side_runs();
      const std::vector<float> a = run(*one), b = run(*two);
      EXPECT_EQ(one->shared_side_runs(), 0);
      EXPECT_EQ(two->shared_side_runs() - before, 1);
      ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << "eager";

      // The anchor: the float32 twin on the dequantised weights (routing on the same float32 logits).
      kernels::MoeLayerParams t = lw.params(T, false);
      std::vector<float> ref(x.size(), kNaN);
      t.dtype = DType::F32;
      t.x = x.data();
      t.x_c = x.data();
      t.out = ref.data();
      t.experts_gate_up = w_gu.data(), t.experts_down = w_dn.data();
      t.shared_gate_up = w_sgu.data(), t.shared_down = w_sdn.data();
      kernels::twin::moe_layer(t);
      EXPECT_LE(test::max_rel_diff(b, ref), 0.1) << "FP8 activations against float32 ones, same weights";

      // The same step captured with the fork and join, replayed over an output poisoned with NaN.
      MLABENCH_CUDA(cudaMemcpy(d_out.get(), std::vector<float>(x.size(), kNaN).data(), x.size() * 4,
                               cudaMemcpyHostToDevice));
      test::run_captured(stream, [&](cudaStream_t) { two->forward(p); });  // the fork and join captured with it
      EXPECT_EQ(std::memcmp(a.data(), to_host<float>(d_out, x.size()).data(), a.size() * 4), 0) << "graphed";
    }
  }
  MLABENCH_CUDA(cudaStreamDestroy(stream));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaMoeLayer, ::testing::Values(DType::BF16, DType::F32),
                         [](const auto& i) { return std::string(dtype_name(i.param)); });

// norm_router (the MoE layer's decode entry in one launch) against the twin's chain rms_norm -> float32 router GEMM
// -> router, stage by stage: the residual bit for bit (one add), out within 1e-5 of max |out| (rms_norm's own test's
// bound: the twin adds 2,048-5,120 squares one after another in float32, the kernel in a tree) and out2 within a
// rounding of its type more, the logits within 1e-5 of max
// |logit|, and the top-k exactly the twin router's on the kernel's own logits (so a near tie cannot flip the test).
// V2-Lite (64 experts, greedy softmax, BF16 out2), DeepSeek-V2 (160 experts, group-limited, scaled, F16 out2) and a
// small sigmoid model without delta (F32 out2) at 1-16 rows; padding past each row and the logits scratch start NaN.
// Run twice: the same bits, and the arrival counter left zero for the next launch (a graph replays it).
TEST(CudaMoe, NormRouterMatchesTwinChain) {
  MLABENCH_REQUIRE_GPU();
  struct Case {
    const char* name;
    int64_t H;
    int32_t E, k;
    RouterMethod method;
    int32_t n_group, topk_group;
    float scale;
    RouterScoring scoring;
    DType out2;
    bool delta;
  };
  const Case cases[] = {
      {"V2-Lite", 2048, 64, 6, RouterMethod::GREEDY, 1, 1, 1.0f, RouterScoring::SOFTMAX, DType::BF16, true},
      {"V2", 5120, 160, 6, RouterMethod::GROUP_LIMITED_GREEDY, 8, 3, 16.0f, RouterScoring::SOFTMAX, DType::F16, true},
      {"small", 256, 8, 2, RouterMethod::GREEDY, 1, 1, 1.0f, RouterScoring::SIGMOID, DType::F32, false}};
  std::mt19937 rng(77);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  int ran = 0;
  for (const Case& c : cases)
    for (int64_t T : {int64_t{1}, int64_t{3}, int64_t{16}}) {
      SCOPED_TRACE(std::string(c.name) + " T=" + std::to_string(T));
      const int64_t H = c.H, ld = H + 8, E = c.E;
      std::vector<float> x(static_cast<size_t>(T * ld), kNaN), d(x.size(), kNaN), wn(static_cast<size_t>(H));
      std::vector<float> rw(static_cast<size_t>(E * H));
      for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < H; ++i) {
          x[static_cast<size_t>(t * ld + i)] = nd(rng) * 2.0f;
          d[static_cast<size_t>(t * ld + i)] = nd(rng);
        }
      for (auto& v : wn) v = 1.0f + 0.1f * nd(rng);
      for (auto& v : rw) v = 0.05f * nd(rng);
      const size_t es2 = dtype_size(c.out2), n_out = static_cast<size_t>(T * ld), pairs = static_cast<size_t>(T * c.k);
      // The twin's chain on host copies.
      std::vector<float> hx = x, hout(n_out, kNaN), hlogits(static_cast<size_t>(T * E), kNaN);
      std::vector<uint8_t> hout2(n_out * es2, 0xff);
      std::vector<int32_t> hidx(pairs, -1);
      std::vector<float> hw(pairs, kNaN);
      kernels::NormRouterParams hp{
          .norm = {.residual = hx.data(), .ld_residual = ld, .delta = c.delta ? d.data() : nullptr, .ld_delta = ld,
                   .out = hout.data(), .out_type = DType::F32, .ld_out = ld, .weight = wn.data(), .n_rows = T,
                   .dim = H, .eps = 1e-6f, .out2 = hout2.data(), .out2_type = c.out2, .ld_out2 = ld},
          .router_w = rw.data(), .logits = hlogits.data(),
          .router = {.n_experts = c.E, .top_k = c.k, .method = c.method, .n_group = c.n_group,
                     .topk_group = c.topk_group, .norm_topk_prob = false, .routed_scaling_factor = c.scale,
                     .topk_idx = hidx.data(), .topk_weight = hw.data(), .scoring = c.scoring}};
      kernels::twin::norm_router(hp);

      auto d_d = to_device(d), d_wn = to_device(wn), d_rw = to_device(rw);
      auto d_arr = to_device(std::vector<uint32_t>(1, 0u));
      std::vector<float> first_out;
      for (int run = 0; run < 2; ++run) {
        auto d_x = to_device(x), d_out = to_device(std::vector<float>(n_out, kNaN));
        auto d_out2 = to_device(std::vector<uint8_t>(n_out * es2, 0xff));
        auto d_logits = to_device(std::vector<float>(static_cast<size_t>(T * E), kNaN));
        auto d_idx = to_device(std::vector<int32_t>(pairs, -1));
        auto d_w = to_device(std::vector<float>(pairs, kNaN));
        kernels::NormRouterParams dp = hp;
        dp.norm.residual = d_x.as<float>();
        dp.norm.delta = c.delta ? d_d.as<float>() : nullptr;
        dp.norm.out = d_out.get();
        dp.norm.out2 = d_out2.get();
        dp.norm.weight = d_wn.as<float>();
        dp.router_w = d_rw.as<float>();
        dp.logits = d_logits.as<float>();
        dp.router.topk_idx = d_idx.as<int32_t>();
        dp.router.topk_weight = d_w.as<float>();
        dp.arrivals = d_arr.as<uint32_t>();
        ASSERT_TRUE(kernels::cuda::norm_router_supported(dp));
        kernels::cuda::norm_router(dp, nullptr);
        const std::vector<float> gx = to_host<float>(d_x, n_out), gout = to_host<float>(d_out, n_out);
        const std::vector<uint8_t> gout2 = to_host<uint8_t>(d_out2, n_out * es2);
        const std::vector<float> glogits = to_host<float>(d_logits, static_cast<size_t>(T * E));
        const std::vector<int32_t> gidx = to_host<int32_t>(d_idx, pairs);
        const std::vector<float> gw = to_host<float>(d_w, pairs);
        EXPECT_EQ(to_host<uint32_t>(d_arr, 1)[0], 0u) << "the counter is left zero";
        ASSERT_EQ(0, std::memcmp(gx.data(), hx.data(), n_out * 4)) << "residual (and its NaN padding)";
        float max_out = 0, max_logit = 0;
        for (float v : hout) max_out = std::isnan(v) ? max_out : std::max(max_out, std::fabs(v));
        for (float v : hlogits) max_logit = std::max(max_logit, std::fabs(v));
        for (int64_t t = 0; t < T; ++t)
          for (int64_t i = 0; i < ld; ++i) {
            const size_t o = static_cast<size_t>(t * ld + i);
            if (i >= H) {
              ASSERT_TRUE(std::isnan(gout[o])) << "out padding, row " << t;
              ASSERT_TRUE(gout2[o * es2] == 0xff) << "out2 padding, row " << t;
              continue;
            }
            ASSERT_LE(std::fabs(gout[o] - hout[o]), 1e-5f * max_out) << "out " << t << "," << i;
            auto as_float = [&](const std::vector<uint8_t>& b) {
              uint32_t f32 = 0;
              uint16_t h16 = 0;
              if (c.out2 == DType::F32) return std::memcpy(&f32, &b[o * 4], 4), std::bit_cast<float>(f32);
              std::memcpy(&h16, &b[o * 2], 2);
              return c.out2 == DType::BF16 ? bf16_to_f32(h16) : f16_to_f32(h16);
            };
            const float g2 = as_float(gout2), h2 = as_float(hout2);
            const float ulp = c.out2 == DType::BF16 ? 0x1p-7f : c.out2 == DType::F16 ? 0x1p-10f : 1e-6f;
            ASSERT_LE(std::fabs(g2 - h2), ulp * std::fabs(h2) + 1e-5f * max_out) << "out2 " << t << "," << i;
          }
        for (size_t i = 0; i < glogits.size(); ++i)
          ASSERT_LE(std::fabs(glogits[i] - hlogits[i]), 1e-5f * max_logit) << "logit " << i;
        // The top-k: the twin router on the kernel's own logits, exactly (indices) and within 2e-6 (weights).
        std::vector<int32_t> ridx(pairs, -1);
        std::vector<float> rwt(pairs, kNaN);
        kernels::RouterParams rp = hp.router;
        rp.logits = glogits.data();
        rp.n_tokens = T;
        rp.topk_idx = ridx.data();
        rp.topk_weight = rwt.data();
        kernels::twin::router(rp);
        EXPECT_EQ(gidx, ridx);
        for (size_t i = 0; i < pairs; ++i) ASSERT_LE(std::fabs(gw[i] - rwt[i]), 2e-6f * std::fabs(rwt[i])) << i;
        if (run == 0) first_out = gout;
        if (run == 1) {
          EXPECT_EQ(0, std::memcmp(first_out.data(), gout.data(), n_out * 4)) << "deterministic";
        }
      }
      ++ran;
    }
  EXPECT_EQ(ran, 9);
}

TEST(CudaMoe, LayerRefusesStepsItWasNotBuiltFor) {
  MLABENCH_REQUIRE_GPU();
  cudaStream_t stream;
  MLABENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  {
    gpu::Blas blas(stream);
    std::mt19937 rng(70);
    const LayerWeightsHD lw(kLayerCases[1], DType::BF16, rng);
    gpu::MoeLayer layer(blas, stream, DType::BF16, 96, 24, 48, 16, 4, 16);
    gpu::DeviceBuffer buf(64 * 96 * 4);
    kernels::MoeLayerParams p = lw.params(17, true);
    p.x = buf.as<float>();
    p.x_c = buf.get();
    p.out = buf.as<float>();
    EXPECT_ANY_THROW(layer.forward(p)) << "17 tokens > max_tokens 16";
    p.n_tokens = 16;
    p.inter = 32;
    EXPECT_ANY_THROW(layer.forward(p)) << "inter 32, built for 24";
    EXPECT_ANY_THROW(gpu::MoeLayer(blas, nullptr, DType::BF16, 96, 24, 48, 16, 4, 16)) << "another stream";
  }
  MLABENCH_CUDA(cudaStreamDestroy(stream));
}

}  // namespace
}  // namespace mlabench
