// DeepSeekMoE twins (engine/kernels/twin/moe.cpp, moe_gemm.cpp) against the CPU reference: the router against
// cpu::moe_route on random and heavily tied logits (softmax and sigmoid scoring), the expert sort against
// std::stable_sort, gather -> per-expert function -> combine against the CPU engine's expert-by-expert loop
// (engine/model/cpu_ffn.cpp) for every row mode, the pair pointers by reading through them, and the grouped expert
// GEMM against a double-precision loop (empty experts, one expert with every row, odd shapes, poisoned rows).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/core/fp8.h"
#include "engine/kernels/cpu/moe_router.h"
#include "engine/kernels/twin/twin.h"

namespace mlabench {
namespace {

using kernels::MoeRowMode;
using kernels::RouterMethod;
using kernels::RouterScoring;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct RouterCase {
  int32_t E, k;
  RouterMethod method;
  int32_t n_group, topk_group;
  float scale;
};

// V2-Lite, V2, a small greedy one, and small grouped ones where top_k exceeds the kept experts (masked zeros
// get chosen, ties to the lower index) or top_k is 1 (no renormalisation even with norm_topk_prob).
const RouterCase kRouterCases[] = {
    {64, 6, RouterMethod::GREEDY, 1, 1, 1.0f},
    {160, 6, RouterMethod::GROUP_LIMITED_GREEDY, 8, 3, 16.0f},
    {8, 2, RouterMethod::GREEDY, 1, 1, 1.0f},
    {8, 3, RouterMethod::GROUP_LIMITED_GREEDY, 4, 1, 2.5f},
    {12, 4, RouterMethod::GROUP_LIMITED_GREEDY, 3, 2, 1.0f},
    {16, 1, RouterMethod::GREEDY, 1, 1, 3.0f},
};

kernels::RouterParams router_params(const RouterCase& c, bool norm) {
  kernels::RouterParams p;
  p.n_experts = c.E;
  p.top_k = c.k;
  p.method = c.method;
  p.n_group = c.n_group;
  p.topk_group = c.topk_group;
  p.norm_topk_prob = norm;
  p.routed_scaling_factor = c.scale;
  return p;
}

cpu::RouterParams cpu_params(const kernels::RouterParams& p) {
  cpu::RouterParams c;
  c.n_experts = p.n_experts;
  c.top_k = p.top_k;
  c.method = p.method == RouterMethod::GREEDY ? TopkMethod::GREEDY : TopkMethod::GROUP_LIMITED_GREEDY;
  c.n_group = p.n_group;
  c.topk_group = p.topk_group;
  c.norm_topk_prob = p.norm_topk_prob;
  c.routed_scaling_factor = p.routed_scaling_factor;
  c.scoring = p.scoring == RouterScoring::SIGMOID ? ScoringFunc::SIGMOID : ScoringFunc::SOFTMAX;
  return c;
}

TEST(TwinMoe, RouterMatchesCpuMoeRoute) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::uniform_int_distribution<int> small(0, 3);
  for (const RouterCase& c : kRouterCases)
    for (RouterScoring scoring : {RouterScoring::SOFTMAX, RouterScoring::SIGMOID})
      for (bool norm : {false, true})
        for (bool tied : {false, true}) {  // tied: logits from {0, .., 3}, so ties decide most choices
          const int64_t T = 37;
          std::vector<float> logits(static_cast<size_t>(T * c.E));
          for (float& l : logits) l = tied ? static_cast<float>(small(rng)) : nd(rng);
          kernels::RouterParams p = router_params(c, norm);
          p.scoring = scoring;
          p.logits = logits.data();
          p.n_tokens = T;
          std::vector<int32_t> idx(static_cast<size_t>(T * c.k), -1), ref_idx(idx.size(), -2);
          std::vector<float> w(idx.size(), kNaN), ref_w(idx.size(), kNaN);
          p.topk_idx = idx.data();
          p.topk_weight = w.data();
          kernels::twin::router(p);
          cpu::moe_route(logits.data(), T, cpu_params(p), ref_idx.data(), ref_w.data());
          SCOPED_TRACE("E=" + std::to_string(c.E) + " k=" + std::to_string(c.k) + " norm=" + std::to_string(norm) +
                       " tied=" + std::to_string(tied) +
                       " sigmoid=" + std::to_string(scoring == RouterScoring::SIGMOID));
          EXPECT_EQ(idx, ref_idx);
          // The same float operations in the same order (softmax sum over e ascending, weight sum over k
          // ascending; each sigmoid on its own): equal to the bit.
          for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(w[i], ref_w[i]) << "pair " << i;
        }
}

TEST(TwinMoe, RouterRefusesBadShapes) {
  kernels::RouterParams p = router_params({10, 2, RouterMethod::GROUP_LIMITED_GREEDY, 4, 1, 1.0f}, false);
  EXPECT_ANY_THROW(kernels::twin::router(p)) << "4 groups do not divide 10 experts";
  p = router_params({8, 9, RouterMethod::GREEDY, 1, 1, 1.0f}, false);
  EXPECT_ANY_THROW(kernels::twin::router(p)) << "top_k > n_experts";
}

// Expert ids of n_pairs pairs, skewed (expert e drawn with weight ~ 1/(e+1)^2) so some experts get many pairs
// and some none; distinct within a token, as the router's.
std::vector<int32_t> skewed_topk(int64_t n_tokens, int32_t k, int32_t E, std::mt19937& rng) {
  std::vector<double> wts(static_cast<size_t>(E));
  for (int32_t e = 0; e < E; ++e) wts[e] = 1.0 / ((e + 1.0) * (e + 1.0));
  std::discrete_distribution<int32_t> pick(wts.begin(), wts.end());
  std::vector<int32_t> idx;
  for (int64_t t = 0; t < n_tokens; ++t) {
    std::vector<int32_t> mine;
    while (static_cast<int32_t>(mine.size()) < k) {
      const int32_t e = pick(rng);
      if (std::find(mine.begin(), mine.end(), e) == mine.end()) mine.push_back(e);
    }
    idx.insert(idx.end(), mine.begin(), mine.end());
  }
  return idx;
}

struct Permuted {
  std::vector<int32_t> counts, offsets, rank;
};

Permuted permute(const std::vector<int32_t>& idx, int64_t n_tokens, int32_t k, int32_t E) {
  Permuted r{std::vector<int32_t>(static_cast<size_t>(E), -7), std::vector<int32_t>(static_cast<size_t>(E) + 1, -7),
             std::vector<int32_t>(idx.size(), -7)};
  kernels::MoePermuteParams p;
  p.topk_idx = idx.data();
  p.n_tokens = n_tokens;
  p.top_k = k;
  p.n_experts = E;
  p.counts = r.counts.data();
  p.offsets = r.offsets.data();
  p.rank = r.rank.data();
  kernels::twin::moe_permute(p);
  return r;
}

TEST(TwinMoe, PermuteIsAStableSortByExpert) {
  std::mt19937 rng(5);
  for (auto [T, k, E] : {std::tuple{1, 6, 64}, {3, 2, 8}, {64, 6, 160}, {333, 6, 64}, {0, 6, 64}}) {
    const std::vector<int32_t> idx = skewed_topk(T, k, E, rng);
    const Permuted r = permute(idx, T, k, E);
    std::vector<int32_t> sorted(idx.size());
    std::iota(sorted.begin(), sorted.end(), 0);
    std::stable_sort(sorted.begin(), sorted.end(), [&](int32_t a, int32_t b) { return idx[a] < idx[b]; });
    EXPECT_EQ(r.offsets[0], 0);
    for (int32_t e = 0; e < E; ++e) {
      EXPECT_EQ(r.counts[e], std::count(idx.begin(), idx.end(), e)) << "expert " << e;
      EXPECT_EQ(r.offsets[e + 1], r.offsets[e] + r.counts[e]) << "expert " << e;
    }
    for (size_t q = 0; q < idx.size(); ++q)
      ASSERT_EQ(sorted[static_cast<size_t>(r.offsets[idx[q]] + r.rank[q])], static_cast<int32_t>(q)) << "pair " << q;
  }
  const std::vector<int32_t> bad = {0, 8};
  EXPECT_ANY_THROW(permute(bad, 1, 2, 8)) << "expert 8 of 8";
}

// Row r of the expert-ordered buffer belongs to this expert (-1: no pair maps there).
int32_t row_expert(MoeRowMode mode, int64_t r, const std::vector<int32_t>& idx, const Permuted& pm, int32_t cap) {
  if (mode == MoeRowMode::PAIR) return idx[static_cast<size_t>(r)];
  if (mode == MoeRowMode::PADDED) {
    const auto e = static_cast<int32_t>(r / cap);
    return r % cap < pm.counts[e] ? e : -1;
  }
  return static_cast<int32_t>(std::upper_bound(pm.offsets.begin(), pm.offsets.end(), r) - pm.offsets.begin()) - 1;
}

// The test's expert: a different affine map per expert, so a row combined from the wrong expert shows.
float expert_fn(int32_t e, float v) { return v * (0.5f + 0.25f * static_cast<float>(e)) + 0.01f * static_cast<float>(e); }

float load(DType t, const uint8_t* p) {
  uint16_t h;
  float f;
  if (t == DType::F32) return std::memcpy(&f, p, 4), f;
  std::memcpy(&h, p, 2);
  return t == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

void store(DType t, uint8_t* p, float v) {
  const uint16_t h = t == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
  if (t == DType::F32)
    std::memcpy(p, &v, 4);
  else
    std::memcpy(p, &h, 2);
}

std::string mode_name(MoeRowMode m) {
  return m == MoeRowMode::PAIR ? "PAIR" : m == MoeRowMode::PADDED ? "PADDED" : "COMPACT";
}

class TwinMoeRoundTrip : public ::testing::TestWithParam<std::tuple<MoeRowMode, DType>> {};

TEST_P(TwinMoeRoundTrip, GatherExpertsCombineMatchesPerExpertLoop) {
  const auto [mode, dt] = GetParam();
  std::mt19937 rng(static_cast<unsigned>(mode) * 7 + static_cast<unsigned>(dt));
  std::normal_distribution<float> nd;
  const size_t es = dtype_size(dt);
  for (auto [T, H, E, k] : {std::tuple{1, 8, 8, 2}, {3, 33, 16, 4}, {64, 40, 64, 6}, {150, 17, 160, 6}}) {
    SCOPED_TRACE("T=" + std::to_string(T) + " H=" + std::to_string(H) + " E=" + std::to_string(E));
    const int64_t ld_x = H + 3, ld_g = H + 5, ld_y = H + 1, ld_out = H + 2, n_pairs = int64_t{T} * k;
    std::vector<uint8_t> x(static_cast<size_t>(T * ld_x) * es);
    for (int64_t i = 0; i < T * ld_x; ++i) store(dt, &x[static_cast<size_t>(i) * es], nd(rng));

    // Route with the twin (renormalised weights) on random logits.
    std::vector<float> logits(static_cast<size_t>(T * E));
    for (float& l : logits) l = nd(rng);
    RouterCase rc{E, k, RouterMethod::GREEDY, 1, 1, 1.0f};
    kernels::RouterParams rp = router_params(rc, true);
    std::vector<int32_t> idx(static_cast<size_t>(n_pairs));
    std::vector<float> w(idx.size());
    rp.logits = logits.data();
    rp.n_tokens = T;
    rp.topk_idx = idx.data();
    rp.topk_weight = w.data();
    kernels::twin::router(rp);
    const Permuted pm = permute(idx, T, k, E);
    const int32_t cap = *std::max_element(pm.counts.begin(), pm.counts.end()) + 1;  // one spare row each
    const int64_t rows = mode == MoeRowMode::PAIR ? n_pairs : mode == MoeRowMode::PADDED ? int64_t{E} * cap
                                                                                         : pm.offsets[E];
    kernels::MoeRowMap map{mode, idx.data(), pm.rank.data(), pm.offsets.data(), cap};

    // Gather: each pair's row is the token's row, bit for bit; rows no pair maps to keep their 0xAB bytes.
    std::vector<uint8_t> g(static_cast<size_t>(rows * ld_g) * es, 0xAB);
    kernels::MoeGatherParams gp{g.data(), ld_g, x.data(), ld_x, dt, H, T, k, map};
    kernels::twin::moe_gather(gp);
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* row = &g[static_cast<size_t>(r * ld_g) * es];
      const bool mapped = row_expert(mode, r, idx, pm, cap) >= 0;
      for (int64_t i = mapped ? H : 0; i < ld_g; ++i)
        for (size_t b = 0; b < es; ++b) ASSERT_EQ(row[static_cast<size_t>(i) * es + b], 0xAB) << "row " << r;
    }
    for (int64_t q = 0; q < n_pairs; ++q) {
      const int64_t r = mode == MoeRowMode::PAIR     ? q
                        : mode == MoeRowMode::PADDED ? int64_t{idx[q]} * cap + pm.rank[q]
                                                     : pm.offsets[idx[q]] + pm.rank[q];
      ASSERT_EQ(0, std::memcmp(&g[static_cast<size_t>(r * ld_g) * es], &x[static_cast<size_t>(q / k * ld_x) * es],
                               static_cast<size_t>(H) * es)) << "pair " << q;
    }

    // Experts: y = f_e(gathered row) in float32; unmapped rows NaN, so combining one of them fails.
    std::vector<float> y(static_cast<size_t>(rows * ld_y), kNaN);
    for (int64_t r = 0; r < rows; ++r) {
      const int32_t e = row_expert(mode, r, idx, pm, cap);
      if (e >= 0)
        for (int64_t i = 0; i < H; ++i)
          y[static_cast<size_t>(r * ld_y + i)] = expert_fn(e, load(dt, &g[static_cast<size_t>(r * ld_g + i) * es]));
    }

    // Reference: the CPU engine's loop, expert by expert, onto the shared experts' output (or zeros).
    std::vector<float> shared(static_cast<size_t>(T * ld_out));
    for (float& v : shared) v = nd(rng);
    for (bool accumulate : {true, false}) {
      std::vector<double> ref(static_cast<size_t>(T * H), 0.0), mag(ref.size(), 0.0);  // mag: sum of |terms|
      for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < H; ++i)
          if (accumulate) {
            ref[static_cast<size_t>(t * H + i)] = shared[static_cast<size_t>(t * ld_out + i)];
            mag[static_cast<size_t>(t * H + i)] = std::fabs(shared[static_cast<size_t>(t * ld_out + i)]);
          }
      for (int32_t e = 0; e < E; ++e)
        for (int64_t q = 0; q < n_pairs; ++q)
          if (idx[q] == e)
            for (int64_t i = 0; i < H; ++i) {
              const double term =
                  double{w[q]} * expert_fn(e, load(dt, &x[static_cast<size_t>(q / k * ld_x + i) * es]));
              ref[static_cast<size_t>(q / k * H + i)] += term;
              mag[static_cast<size_t>(q / k * H + i)] += std::fabs(term);
            }

      std::vector<float> out = accumulate ? shared : std::vector<float>(shared.size(), kNaN);
      kernels::MoeCombineParams cp{out.data(), ld_out, y.data(), ld_y, w.data(), H, T, k, accumulate, map};
      kernels::twin::moe_combine(cp);
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t i = 0; i < H; ++i) {
          const size_t o = static_cast<size_t>(t * H + i);
          // The twin sums j ascending in float32, the reference expert by expert in double: <= 7 roundings of
          // partial sums bounded by the sum of |terms|, each <= 2^-24 of it.
          ASSERT_NEAR(out[static_cast<size_t>(t * ld_out + i)], ref[o], 1e-6 * mag[o] + 1e-30)
              << "token " << t << " col " << i << " accumulate " << accumulate;
        }
        for (int64_t i = H; i < ld_out; ++i) {  // padding between rows untouched
          const size_t o = static_cast<size_t>(t * ld_out + i);
          if (accumulate) {
            ASSERT_EQ(out[o], shared[o]);
          } else {
            ASSERT_TRUE(std::isnan(out[o]));
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    ModesDtypes, TwinMoeRoundTrip,
    ::testing::Combine(::testing::Values(MoeRowMode::PAIR, MoeRowMode::PADDED, MoeRowMode::COMPACT),
                       ::testing::Values(DType::BF16, DType::F16, DType::F32)),
    [](const auto& i) { return mode_name(std::get<0>(i.param)) + "_" + std::string(dtype_name(std::get<1>(i.param))); });

// moe_gather's FP8 form is the copy form followed by fp8_quantize_rows over the gathered rows (rows-major scales):
// the same codes and scales bit for bit, at every row layout, BF16 and F32 rows, a width off the 128 grid (the last
// group shorter) and a NaN value; rows no pair maps to keep their poison, and a call with both outputs is refused.
TEST(TwinMoe, Fp8GatherIsGatherThenQuantise) {
  std::mt19937 rng(17);
  std::normal_distribution<float> nd;
  for (const MoeRowMode mode : {MoeRowMode::PAIR, MoeRowMode::PADDED, MoeRowMode::COMPACT})
    for (const DType dt : {DType::BF16, DType::F32})
      for (auto [T, H, E, k] : {std::tuple{1, 256, 8, 2}, {5, 200, 16, 4}, {40, 384, 64, 6}}) {
        SCOPED_TRACE(mode_name(mode) + " " + std::string(dtype_name(dt)) + " T=" + std::to_string(T) +
                     " H=" + std::to_string(H));
        const size_t es = dtype_size(dt);
        const int64_t ld_x = H + 8, ld_q = H + 16, groups = (H + kFp8Block - 1) / kFp8Block;
        std::vector<uint8_t> x(static_cast<size_t>(T * ld_x) * es);
        for (int64_t i = 0; i < T * ld_x; ++i) store(dt, &x[static_cast<size_t>(i) * es], 3.0f * nd(rng));
        store(dt, &x[static_cast<size_t>((T - 1) * ld_x + H / 2) * es], kNaN);  // a NaN group in the last token
        const std::vector<int32_t> idx = skewed_topk(T, k, E, rng);
        const Permuted pm = permute(idx, T, k, E);
        const int32_t cap = *std::max_element(pm.counts.begin(), pm.counts.end()) + 1;
        const int64_t rows = mode == MoeRowMode::PAIR     ? int64_t{T} * k
                             : mode == MoeRowMode::PADDED ? int64_t{E} * cap
                                                          : pm.offsets[E];
        const kernels::MoeRowMap map{mode, idx.data(), pm.rank.data(), pm.offsets.data(), cap};

        // Reference: gathered rows (the copy form), then the quantiser's twin over every row.
        std::vector<uint8_t> g(static_cast<size_t>(rows * H) * es);
        for (int64_t i = 0; i < rows * H; ++i) store(dt, &g[static_cast<size_t>(i) * es], 0.0f);
        kernels::twin::moe_gather({g.data(), H, x.data(), ld_x, dt, H, T, k, map});
        std::vector<uint8_t> want_q(static_cast<size_t>(rows * H));
        std::vector<float> want_s(static_cast<size_t>(rows * groups));
        kernels::twin::fp8_quantize_rows({.x = g.data(), .x_type = dt, .ld_x = H, .q = want_q.data(), .ld_q = H,
                                          .scale = want_s.data(), .scale_row_stride = groups,
                                          .scale_group_stride = 1, .rows = rows, .k = H});

        std::vector<uint8_t> q(static_cast<size_t>(rows * ld_q), 0xAB);
        std::vector<float> sc(static_cast<size_t>(rows * groups), kNaN);
        kernels::MoeGatherParams gp{nullptr, ld_q, x.data(), ld_x, dt, H, T, k, map};
        gp.out_q = q.data();
        gp.out_scale = sc.data();
        kernels::twin::moe_gather(gp);
        for (int64_t r = 0; r < rows; ++r) {
          const bool mapped = row_expert(mode, r, idx, pm, cap) >= 0;
          for (int64_t c = 0; c < ld_q; ++c) {
            const uint8_t got = q[static_cast<size_t>(r * ld_q + c)];
            if (mapped && c < H)
              ASSERT_EQ(got, want_q[static_cast<size_t>(r * H + c)]) << "row " << r << " col " << c;
            else
              ASSERT_EQ(got, 0xAB) << "row " << r << " col " << c << " must stay untouched";
          }
          for (int64_t j = 0; j < groups; ++j) {
            const float got = sc[static_cast<size_t>(r * groups + j)];
            if (mapped)
              ASSERT_EQ(std::bit_cast<uint32_t>(got),
                        std::bit_cast<uint32_t>(want_s[static_cast<size_t>(r * groups + j)]))
                  << "row " << r << " group " << j;
            else
              ASSERT_TRUE(std::isnan(got)) << "row " << r << " group " << j << " must stay untouched";
          }
        }
        gp.out = g.data();
        EXPECT_ANY_THROW(kernels::twin::moe_gather(gp)) << "out and out_q both set";
        gp.out = nullptr;
        gp.out_scale = nullptr;
        EXPECT_ANY_THROW(kernels::twin::moe_gather(gp)) << "out_q without out_scale";
      }
}

TEST(TwinMoe, PaddedRefusesRowsPastCapacity) {
  const std::vector<int32_t> idx = {3, 1, 3, 0};  // expert 3 gets 2 rows
  const Permuted pm = permute(idx, 2, 2, 4);
  std::vector<float> x(2 * 4, 1.0f), g(4 * 1 * 4, 0.0f);
  kernels::MoeRowMap map{MoeRowMode::PADDED, idx.data(), pm.rank.data(), pm.offsets.data(), 1};
  kernels::MoeGatherParams gp{g.data(), 4, x.data(), 4, DType::F32, 4, 2, 2, map};
  EXPECT_ANY_THROW(kernels::twin::moe_gather(gp)) << "capacity 1 < 2 rows of expert 3";
  g.assign(4 * 2 * 4, 0.0f);
  gp.out = g.data();
  gp.map.capacity = 2;
  EXPECT_NO_THROW(kernels::twin::moe_gather(gp));
}

TEST(TwinMoe, PairPointersAddressEachPairsExpertAndRows) {
  const int32_t E = 5, N = 3, K = 4;
  const int64_t n_pairs = 7, ld_x = 6, ld_y = 9;
  std::vector<float> weights(static_cast<size_t>(E * N * K));
  for (size_t i = 0; i < weights.size(); ++i) weights[i] = static_cast<float>(i / (N * K));  // = the expert id
  std::vector<float> x(static_cast<size_t>(n_pairs * ld_x)), y(static_cast<size_t>(n_pairs * ld_y), 0.0f);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i);
  const std::vector<int32_t> idx = {4, 0, 2, 2, 1, 3, 0};
  std::vector<const void*> a(n_pairs), b(n_pairs);
  std::vector<void*> c(n_pairs);
  kernels::MoePairPointersParams p{idx.data(), n_pairs, reinterpret_cast<const char*>(weights.data()),
                                   int64_t{N} * K * 4, reinterpret_cast<const char*>(x.data()), ld_x * 4,
                                   reinterpret_cast<char*>(y.data()), ld_y * 4, a.data(), b.data(), c.data()};
  kernels::twin::moe_pair_pointers(p);
  for (int64_t q = 0; q < n_pairs; ++q) {
    const auto* aq = static_cast<const float*>(a[q]);
    EXPECT_EQ(aq[0], static_cast<float>(idx[q])) << "first weight of expert " << idx[q];
    EXPECT_EQ(aq[N * K - 1], static_cast<float>(idx[q])) << "last weight of expert " << idx[q];
    EXPECT_EQ(static_cast<const float*>(b[q])[1], x[static_cast<size_t>(q * ld_x + 1)]);
    static_cast<float*>(c[q])[2] = static_cast<float>(q + 1);
  }
  for (int64_t q = 0; q < n_pairs; ++q) EXPECT_EQ(y[static_cast<size_t>(q * ld_y + 2)], static_cast<float>(q + 1));
}

// ---- grouped expert GEMM ------------------------------------------------------------------------------------

struct GemmCase {
  const char* name;
  std::vector<int32_t> counts;  // rows per expert
  int64_t n, k;
  int64_t ld_x_pad, ld_y_pad, stride_pad, max_rows_extra;
};

// Empty experts, one expert with every row, max_rows above every count, odd n and k with padded rows and expert
// strides, k = 1, and no rows at all.
const GemmCase kGemmCases[] = {
    {"mixed", {3, 0, 5, 1, 0, 2}, 24, 96, 0, 0, 0, 0},
    {"one_expert_all_rows", {0, 0, 17, 0}, 40, 24, 3, 5, 0, 9},
    {"odd", {2, 7, 1}, 13, 37, 1, 2, 3, 4},
    {"k_one", {4, 1}, 5, 1, 0, 1, 0, 0},
    {"all_empty", {0, 0, 0}, 8, 16, 0, 0, 0, 5},
};

class TwinMoeGroupedGemm : public ::testing::TestWithParam<DType> {};

TEST_P(TwinMoeGroupedGemm, MatchesDoubleLoopAndLeavesOtherRowsAlone) {
  const DType dt = GetParam();
  const size_t es = dtype_size(dt);
  std::mt19937 rng(31 + static_cast<unsigned>(dt));
  std::normal_distribution<float> nd;
  for (const GemmCase& c : kGemmCases) {
    SCOPED_TRACE(c.name);
    const auto E = static_cast<int32_t>(c.counts.size());
    std::vector<int32_t> offsets(static_cast<size_t>(E) + 1, 0);
    for (int32_t e = 0; e < E; ++e) offsets[e + 1] = offsets[e] + c.counts[e];
    const int64_t R = offsets[E], ld_x = c.k + c.ld_x_pad, ld_y = c.n + c.ld_y_pad;
    const int64_t stride = c.n * c.k + c.stride_pad;
    const int64_t max_rows = *std::max_element(c.counts.begin(), c.counts.end()) + c.max_rows_extra;
    std::vector<uint8_t> x(static_cast<size_t>((R + 2) * ld_x) * es), w(static_cast<size_t>(E * stride) * es);
    for (size_t i = 0; i < x.size() / es; ++i) store(dt, &x[i * es], nd(rng));
    for (size_t i = 0; i < w.size() / es; ++i) store(dt, &w[i * es], nd(rng));
    std::vector<float> y(static_cast<size_t>((R + 3) * ld_y), kNaN);  // 3 rows past offsets[E]
    kernels::MoeGroupedGemmParams p{y.data(), ld_y,           x.data(), ld_x, w.data(), stride,
                                    dt,       offsets.data(), E,        c.n,  c.k,      max_rows};
    kernels::twin::moe_grouped_gemm(p);
    for (int32_t e = 0; e < E; ++e)
      for (int64_t r = offsets[e]; r < offsets[e + 1]; ++r)
        for (int64_t j = 0; j < c.n; ++j) {
          double ref = 0, mag = 0;
          for (int64_t i = 0; i < c.k; ++i) {
            const double t = double{load(dt, &x[static_cast<size_t>(r * ld_x + i) * es])} *
                             load(dt, &w[static_cast<size_t>(e * stride + j * c.k + i) * es]);
            ref += t;
            mag += std::fabs(t);
          }
          // A float32 sum of k terms, products of halves exact (of F32 values rounded once): within
          // (k + 1) * 2^-24 of the sum of |terms|.
          ASSERT_NEAR(y[static_cast<size_t>(r * ld_y + j)], ref, static_cast<double>(c.k + 1) * 0x1p-24 * mag)
              << "expert " << e << " row " << r << " col " << j;
        }
    for (int64_t r = 0; r < R + 3; ++r)
      for (int64_t j = r < R ? c.n : 0; j < ld_y; ++j)
        ASSERT_TRUE(std::isnan(y[static_cast<size_t>(r * ld_y + j)])) << "row " << r << " col " << j << " written";
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, TwinMoeGroupedGemm, ::testing::Values(DType::BF16, DType::F16, DType::F32),
                         [](const auto& i) { return std::string(dtype_name(i.param)); });

TEST(TwinMoe, GroupedGemmRefusesCountsPastMaxRowsAndShortRows) {
  const std::vector<int32_t> offsets = {0, 2, 5};  // expert 1 has 3 rows
  std::vector<float> x(5 * 4, 1.0f), w(2 * 3 * 4, 1.0f), y(5 * 3, 0.0f);
  kernels::MoeGroupedGemmParams p{y.data(), 3, x.data(), 4, w.data(), 12, DType::F32, offsets.data(), 2, 3, 4, 2};
  EXPECT_ANY_THROW(kernels::twin::moe_grouped_gemm(p)) << "3 rows > max_rows 2";
  p.max_rows = 3;
  EXPECT_NO_THROW(kernels::twin::moe_grouped_gemm(p));
  EXPECT_EQ(y[3 * 3 + 1], 4.0f) << "a row of four 1 x 1 products";
  p.ld_x = 3;
  EXPECT_ANY_THROW(kernels::twin::moe_grouped_gemm(p)) << "ld_x 3 < k 4";
  p.ld_x = 4;
  p.dtype = DType::I32;
  EXPECT_ANY_THROW(kernels::twin::moe_grouped_gemm(p)) << "integer operands";
}

// The STORE_DT epilogue is the STORE GEMM's float32 rows rounded to dt (nearest even), bit for bit, into act; rows
// past offsets[E] and columns past n are left alone, F32 operands are refused. The combine over those BF16 rows
// (y_bf16) equals the combine over the same values widened to float32, and refuses both or neither of y, y_bf16.
TEST(TwinMoe, GroupedGemmStoreDtIsStoreRoundedAndCombineReadsIt) {
  std::mt19937 rng(78);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const DType dt = DType::BF16;
  const std::vector<int32_t> offsets = {0, 2, 2, 5};  // expert 1 empty
  const int32_t E = 3;
  const int64_t n = 6, k = 10, R = offsets[E], ld_act = n + 2;
  std::vector<uint8_t> x(static_cast<size_t>(R * k) * 2), w(static_cast<size_t>(E * n * k) * 2);
  for (size_t i = 0; i < x.size() / 2; ++i) store(dt, &x[i * 2], nd(rng));
  for (size_t i = 0; i < w.size() / 2; ++i) store(dt, &w[i * 2], nd(rng));
  const uint16_t poison = 0x7FC1;
  std::vector<uint16_t> rows(static_cast<size_t>((R + 1) * ld_act), poison);
  kernels::MoeGroupedGemmParams p{.x = x.data(), .ld_x = k, .w = w.data(), .expert_stride = n * k, .dtype = dt,
                                  .offsets = offsets.data(), .n_experts = E, .n = n, .k = k, .max_rows = 3,
                                  .epilogue = kernels::MoeGemmEpilogue::STORE_DT, .act = rows.data(),
                                  .ld_act = ld_act, .rows_bound = R};
  kernels::twin::moe_grouped_gemm(p);
  std::vector<float> y(static_cast<size_t>(R * n), kNaN);
  kernels::MoeGroupedGemmParams ps = p;
  ps.epilogue = kernels::MoeGemmEpilogue::STORE;
  ps.act = nullptr;
  ps.y = y.data();
  ps.ld_y = n;
  kernels::twin::moe_grouped_gemm(ps);
  for (int64_t r = 0; r < R + 1; ++r)
    for (int64_t j = 0; j < ld_act; ++j) {
      const uint16_t got = rows[static_cast<size_t>(r * ld_act + j)];
      if (r < R && j < n)
        ASSERT_EQ(got, f32_to_bf16(y[static_cast<size_t>(r * n + j)])) << "row " << r << " col " << j;
      else
        ASSERT_EQ(got, poison) << "row " << r << " col " << j << " written";
    }
  // The combine: tokens of top_k 1 over these rows (COMPACT map: token t's row is t).
  std::vector<float> widened(static_cast<size_t>(R * ld_act));
  for (size_t i = 0; i < widened.size(); ++i) widened[i] = bf16_to_f32(rows[i]);
  const std::vector<float> weight = {0.5f, -1.25f, 2.0f, 0.75f, 1.0f};
  const std::vector<int32_t> idx = {0, 0, 2, 2, 2}, rank = {0, 1, 0, 1, 2};
  const kernels::MoeRowMap map{.mode = MoeRowMode::COMPACT, .topk_idx = idx.data(), .rank = rank.data(),
                               .offsets = offsets.data()};
  std::vector<float> out_bf16(static_cast<size_t>(R * n), kNaN), out_f32 = out_bf16;
  kernels::MoeCombineParams cp{.out = out_f32.data(), .ld_out = n, .y = widened.data(), .ld_y = ld_act,
                               .topk_weight = weight.data(), .hidden = n, .n_tokens = R, .top_k = 1,
                               .accumulate = false, .map = map};
  kernels::twin::moe_combine(cp);
  cp.out = out_bf16.data();
  cp.y = nullptr;
  cp.y_bf16 = rows.data();
  kernels::twin::moe_combine(cp);
  for (size_t i = 0; i < out_f32.size(); ++i) ASSERT_EQ(out_bf16[i], out_f32[i]) << i;
  cp.y = widened.data();
  EXPECT_ANY_THROW(kernels::twin::moe_combine(cp)) << "y and y_bf16 both set";
  std::vector<float> xf(4, 1.0f), wf(4, 1.0f), act(4);
  kernels::MoeGroupedGemmParams f{.x = xf.data(), .ld_x = 2, .w = wf.data(), .expert_stride = 4, .dtype = DType::F32,
                                  .offsets = offsets.data(), .n_experts = 1, .n = 2, .k = 2, .max_rows = 2,
                                  .epilogue = kernels::MoeGemmEpilogue::STORE_DT, .act = act.data(), .ld_act = 2};
  EXPECT_ANY_THROW(kernels::twin::moe_grouped_gemm(f)) << "F32 operands have no rounded store";
}

// The SWIGLU epilogue is the STORE GEMM over the 2n gate and up rows followed by silu_mul's twin, bit for bit: the
// fused kernels round their activations exactly as the unfused path does. Rows past offsets[E], columns past n and
// the y of a SWIGLU call are left alone; a short expert stride and F32 operands are refused.
TEST(TwinMoe, GroupedGemmSwigluIsStoreThenSiluMul) {
  for (const DType dt : {DType::BF16, DType::F16}) {
    SCOPED_TRACE(std::string(dtype_name(dt)));
    std::mt19937 rng(77);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const std::vector<int32_t> offsets = {0, 3, 3, 8, 9};  // expert 1 empty
    const int32_t E = 4;
    const int64_t n = 6, k = 10, R = offsets[E], ld_act = n + 2, stride = 2 * n * k + 4;
    const size_t es = dtype_size(dt);
    std::vector<uint8_t> x(static_cast<size_t>(R * k) * es), w(static_cast<size_t>(E * stride) * es);
    for (size_t i = 0; i < x.size() / es; ++i) store(dt, &x[i * es], nd(rng));
    for (size_t i = 0; i < w.size() / es; ++i) store(dt, &w[i * es], nd(rng));
    const uint16_t poison = 0x7FC1;  // a NaN in BF16 and F16
    std::vector<uint16_t> act(static_cast<size_t>((R + 2) * ld_act), poison);
    kernels::MoeGroupedGemmParams p{.x = x.data(), .ld_x = k, .w = w.data(), .expert_stride = stride, .dtype = dt,
                                    .offsets = offsets.data(), .n_experts = E, .n = n, .k = k, .max_rows = 5,
                                    .epilogue = kernels::MoeGemmEpilogue::SWIGLU, .act = act.data(),
                                    .ld_act = ld_act, .rows_bound = R};
    kernels::twin::moe_grouped_gemm(p);
    // Unfused: gate_up [R, 2n] in float32, then silu_mul into dt.
    std::vector<float> gu(static_cast<size_t>(R * 2 * n), kNaN);
    kernels::MoeGroupedGemmParams ps{.y = gu.data(), .ld_y = 2 * n, .x = x.data(), .ld_x = k, .w = w.data(),
                                     .expert_stride = stride, .dtype = dt, .offsets = offsets.data(),
                                     .n_experts = E, .n = 2 * n, .k = k, .max_rows = 5};
    kernels::twin::moe_grouped_gemm(ps);
    std::vector<uint16_t> want(static_cast<size_t>(R * n));
    kernels::twin::silu_mul({.out = want.data(), .out_type = dt, .ld_out = n, .gate_up = gu.data(), .ld_in = 2 * n,
                             .inter = n, .n_rows = R});
    for (int64_t r = 0; r < R + 2; ++r)
      for (int64_t j = 0; j < ld_act; ++j) {
        const uint16_t got = act[static_cast<size_t>(r * ld_act + j)];
        if (r < R && j < n)
          ASSERT_EQ(got, want[static_cast<size_t>(r * n + j)]) << "row " << r << " col " << j;
        else
          ASSERT_EQ(got, poison) << "row " << r << " col " << j << " written";
      }
    p.expert_stride = 2 * n * k - 1;
    EXPECT_ANY_THROW(kernels::twin::moe_grouped_gemm(p)) << "stride short of the 2n gate and up rows";
    p.expert_stride = stride;
    p.rows_bound = R - 1;
    EXPECT_ANY_THROW(kernels::twin::moe_grouped_gemm(p)) << "rows past rows_bound";
  }
  std::vector<float> x(4, 1.0f), w(2 * 2 * 2, 1.0f), act(4);
  const std::vector<int32_t> offsets = {0, 2};
  kernels::MoeGroupedGemmParams p{.x = x.data(), .ld_x = 2, .w = w.data(), .expert_stride = 8, .dtype = DType::F32,
                                  .offsets = offsets.data(), .n_experts = 1, .n = 2, .k = 2, .max_rows = 2,
                                  .epilogue = kernels::MoeGemmEpilogue::SWIGLU, .act = act.data(), .ld_act = 2};
  EXPECT_ANY_THROW(kernels::twin::moe_grouped_gemm(p)) << "F32 operands have no fused activation";
  // Without offsets a single expert owns rows [0, max_rows) (the shared experts' call): the same as offsets {0, R}.
  std::vector<float> y1(6, kNaN), y2(6, kNaN);
  const std::vector<float> xs = {1, 2, 3, 4, 5, 6}, ws = {1, -1, 0.5f, 2};
  kernels::MoeGroupedGemmParams q{.y = y1.data(), .ld_y = 2, .x = xs.data(), .ld_x = 2, .w = ws.data(),
                                  .expert_stride = 4, .dtype = DType::F32, .offsets = nullptr, .n_experts = 1,
                                  .n = 2, .k = 2, .max_rows = 3};
  kernels::twin::moe_grouped_gemm(q);
  const std::vector<int32_t> whole = {0, 3};
  q.y = y2.data();
  q.offsets = whole.data();
  kernels::twin::moe_grouped_gemm(q);
  EXPECT_EQ(y1, y2);
  EXPECT_EQ(y1[4], 5.0f * 1 + 6.0f * -1) << "row 2, column 0";
  q.offsets = nullptr;
  q.n_experts = 2;
  q.expert_stride = 4;
  EXPECT_ANY_THROW(kernels::twin::moe_grouped_gemm(q)) << "offsets left out with two experts";
}


// ---- FP8 (e4m3 W8A8, block scales) ---------------------------------------------------------------------------

// The F8_E4M3 twin against a double-precision loop over the dequantised operands (x code * x_scale[r, c / 128],
// w code * w_scale[j / 128, c / 128]) in STORE and SWIGLU: three experts (one empty), k = 272 (three groups, the
// last one 16 long), weight rows over two 128-row blocks (SWIGLU's up rows cross from block 0 into block 1). The
// scales vary by powers of two from group to group and block to block, so reading a wrong one moves the result far
// past the tolerance: the same comparison against a reference with a mutated scale index (the next k group; the
// other weight block, or for SWIGLU the up rows' block counted from the gate/up boundary instead of the stacked
// matrix) must fail. Then the FP8 checks the twin shares with the kernel's launcher.
struct Fp8TwinCase {
  std::vector<uint8_t> x, w;
  std::vector<float> xs, ws;
  int64_t ld_xs = 0, ld_ws = 0, ws_stride = 0;
};

Fp8TwinCase fp8_twin_case(int64_t rows, int32_t n_experts, int64_t w_rows, int64_t k, std::mt19937& rng) {
  const int64_t groups = (k + 127) / 128, blocks = (w_rows + 127) / 128;
  std::normal_distribution<float> nd;
  std::uniform_int_distribution<int> mag(-3, 3);
  Fp8TwinCase c;
  c.ld_xs = groups;
  c.ld_ws = fp8_weight_scale_ld(k);
  c.ws_stride = blocks * c.ld_ws;
  c.x.resize(static_cast<size_t>(rows * k));
  c.xs.resize(static_cast<size_t>(rows * groups));
  for (int64_t r = 0; r < rows; ++r)  // a row's groups quantised as fp8_quantize_rows does
    for (int64_t g = 0; g < groups; ++g) {
      const float m = std::ldexp(1.0f, mag(rng));
      std::vector<float> v(static_cast<size_t>(std::min<int64_t>(128, k - g * 128)));
      float amax = 0.0f;
      for (float& e : v) amax = std::max(amax, std::fabs(e = m * nd(rng)));
      const float s = fp8_block_scale(amax);
      c.xs[static_cast<size_t>(r * groups + g)] = s;
      for (size_t i = 0; i < v.size(); ++i) c.x[static_cast<size_t>(r * k + g * 128) + i] = f32_to_e4m3(v[i] / s);
    }
  c.w.resize(static_cast<size_t>(n_experts * w_rows * k));
  c.ws.assign(static_cast<size_t>(n_experts * c.ws_stride), std::numeric_limits<float>::quiet_NaN());
  std::vector<float> wf(static_cast<size_t>(w_rows * k)), sc(static_cast<size_t>(blocks * groups)), bm(sc.size());
  for (int32_t e = 0; e < n_experts; ++e) {
    for (float& m : bm) m = std::ldexp(1.0f, mag(rng));
    for (int64_t j = 0; j < w_rows; ++j)
      for (int64_t i = 0; i < k; ++i)
        wf[static_cast<size_t>(j * k + i)] = bm[static_cast<size_t>((j / 128) * groups + i / 128)] * nd(rng);
    quantize_fp8_blocks(wf, w_rows, k, std::span(c.w).subspan(static_cast<size_t>(e * w_rows * k), wf.size()), sc,
                        "fp8 twin test");
    for (int64_t b = 0; b < blocks; ++b)
      for (int64_t g = 0; g < groups; ++g)
        c.ws[static_cast<size_t>(e * c.ws_stride + b * c.ld_ws + g)] = sc[static_cast<size_t>(b * groups + g)];
  }
  return c;
}

// out[r, j] in double over the dequantised operands, with the scales' indices given by x_group(c) and
// w_block(j) (the right ones: c / 128 and j / 128), and sum |term| in mag.
template <class XGroup, class WBlock>
void fp8_reference(const Fp8TwinCase& c, const std::vector<int32_t>& offsets, int64_t w_rows, int64_t k,
                   XGroup x_group, WBlock w_block, std::vector<double>& out, std::vector<double>& mag) {
  out.assign(static_cast<size_t>(offsets.back() * w_rows), 0.0);
  mag = out;
  for (size_t e = 0; e + 1 < offsets.size(); ++e)
    for (int64_t r = offsets[e]; r < offsets[e + 1]; ++r)
      for (int64_t j = 0; j < w_rows; ++j) {
        double acc = 0, m = 0;
        for (int64_t i = 0; i < k; ++i) {
          const double t =
              double{e4m3_to_f32(c.x[static_cast<size_t>(r * k + i)])} * c.xs[static_cast<size_t>(r * c.ld_xs + x_group(i))] *
              e4m3_to_f32(c.w[static_cast<size_t>((static_cast<int64_t>(e) * w_rows + j) * k + i)]) *
              c.ws[static_cast<size_t>(static_cast<int64_t>(e) * c.ws_stride + w_block(j) * c.ld_ws + i / 128)];
          acc += t;
          m += std::fabs(t);
        }
        out[static_cast<size_t>(r * w_rows + j)] = acc;
        mag[static_cast<size_t>(r * w_rows + j)] = m;
      }
}

TEST(TwinMoe, GroupedGemmFp8MatchesDequantisedLoop) {
  std::mt19937 rng(2020);
  const std::vector<int32_t> offsets = {0, 3, 3, 8};  // expert 1 empty
  const int32_t E = 3;
  const int64_t R = offsets[E], k = 272, groups = 3;
  const auto next_group = [&](int64_t i) { return (i / 128 + 1) % groups; };
  const auto right_group = [](int64_t i) { return i / 128; };
  for (const auto epi : {kernels::MoeGemmEpilogue::STORE, kernels::MoeGemmEpilogue::SWIGLU}) {
    const bool swiglu = epi == kernels::MoeGemmEpilogue::SWIGLU;
    SCOPED_TRACE(swiglu ? "SWIGLU" : "STORE");
    const int64_t n = swiglu ? 72 : 136, w_rows = swiglu ? 2 * n : n, ld_out = n + 1;
    const Fp8TwinCase c = fp8_twin_case(R, E, w_rows, k, rng);
    std::vector<float> y(static_cast<size_t>((R + 1) * ld_out), kNaN);
    std::vector<uint16_t> act(y.size(), 0x7FC1);
    kernels::MoeGroupedGemmParams p{.y = swiglu ? nullptr : y.data(), .ld_y = ld_out, .x = c.x.data(), .ld_x = k,
                                    .w = c.w.data(), .expert_stride = w_rows * k, .dtype = DType::F8_E4M3,
                                    .offsets = offsets.data(), .n_experts = E, .n = n, .k = k, .max_rows = 5,
                                    .epilogue = epi, .act = swiglu ? act.data() : nullptr, .ld_act = ld_out,
                                    .x_scale = c.xs.data(), .x_scale_ld = c.ld_xs, .w_scale = c.ws.data(),
                                    .w_scale_ld = c.ld_ws, .w_scale_expert_stride = c.ws_stride};
    kernels::twin::moe_grouped_gemm(p);
    // The value each output stands for, from a reference sum per (row, weight row); false where `got` is further
    // from it than float32 sums over k (and the rounding to BF16 of SWIGLU) allow. Everything else stays poisoned.
    auto matches = [&](const std::vector<double>& ref, const std::vector<double>& mag) {
      for (int64_t r = 0; r < R + 1; ++r)
        for (int64_t j = 0; j < ld_out; ++j) {
          const size_t o = static_cast<size_t>(r * ld_out + j);
          const double got = swiglu ? double{bf16_to_f32(act[o])} : double{y[o]};
          if (r >= R || j >= n) {
            EXPECT_TRUE(std::isnan(got)) << "row " << r << " col " << j << " written";
            continue;
          }
          // A float32 sum of k exact products scaled in 3 groups: within (k + 8) * 2^-24 of the sum of |terms|.
          const size_t g = static_cast<size_t>(r * w_rows + j), u = g + static_cast<size_t>(n);
          const double eps_g = static_cast<double>(k + 8) * 0x1p-24 * mag[g];
          double want = ref[g], tol = eps_g;
          if (swiglu) {
            // silu(g) * u: |silu'| <= 1.1 and |silu(g)| <= max(1, |g|) carry the sums' errors; then the float
            // silu (a few ulp) and the rounding to BF16 (half an ulp, 2^-8 relative).
            const double eps_u = static_cast<double>(k + 8) * 0x1p-24 * mag[u];
            want = ref[g] / (1.0 + std::exp(-ref[g])) * ref[u];
            tol = (0x1p-8 + 1e-6) * std::fabs(want) + 1.1 * eps_g * std::fabs(ref[u]) +
                  std::max(1.0, std::fabs(ref[g])) * eps_u;
          }
          if (!(std::fabs(got - want) <= tol)) return false;
        }
      return true;
    };
    std::vector<double> ref, mag;
    fp8_reference(c, offsets, w_rows, k, right_group, right_group, ref, mag);
    EXPECT_TRUE(matches(ref, mag)) << "the twin vs the dequantised loop";
    fp8_reference(c, offsets, w_rows, k, next_group, right_group, ref, mag);
    EXPECT_FALSE(matches(ref, mag)) << "x scales of the next group: the comparison must catch it";
    // SWIGLU: the up rows' block counted from the gate/up boundary; STORE: the other block.
    const auto wrong_block = [&](int64_t j) { return swiglu ? (j < n ? j : j - n) / 128 : (j / 128 + 1) % 2; };
    fp8_reference(c, offsets, w_rows, k, right_group, wrong_block, ref, mag);
    EXPECT_FALSE(matches(ref, mag)) << "weight scales of the wrong block: the comparison must catch it";
  }
  // The FP8 operands' grid and scales are checked (shared with the kernel's launcher).
  std::vector<uint8_t> x(16 * 64, 0x38), w(2 * 16 * 64, 0x38);  // 0x38 = 1.0
  std::vector<float> xs(16, 0.5f), ws(4, 2.0f), y(16 * 16, kNaN);
  const std::vector<int32_t> off = {0, 16};
  kernels::MoeGroupedGemmParams p{.y = y.data(), .ld_y = 16, .x = x.data(), .ld_x = 64, .w = w.data(),
                                  .expert_stride = 16 * 64, .dtype = DType::F8_E4M3, .offsets = off.data(),
                                  .n_experts = 1, .n = 16, .k = 64, .max_rows = 16, .x_scale = xs.data(),
                                  .x_scale_ld = 1, .w_scale = ws.data(), .w_scale_ld = 4};
  kernels::twin::moe_grouped_gemm(p);
  EXPECT_EQ(y[17], 64.0f * 0.5f * 2.0f) << "row 1, column 1: 64 products of 1 x 1, scaled by 0.5 * 2";
  kernels::MoeGroupedGemmParams q = p;
  q.k = q.ld_x = 56;
  EXPECT_ANY_THROW(kernels::twin::moe_grouped_gemm(q)) << "k off the 16-byte grid";
  q = p;
  q.x_scale = nullptr;
  EXPECT_ANY_THROW(kernels::twin::moe_grouped_gemm(q)) << "no x scales";
  q = p;
  q.w_scale_ld = 0;
  EXPECT_ANY_THROW(kernels::twin::moe_grouped_gemm(q)) << "w_scale_ld < ceil(k / 128)";
}

// norm_router's twin (the reference the GPU kernel is tested against) against a double-precision chain: residual +
// delta exact, the normed rows within 1e-6 and the logits within 1e-5 of their maxima, the top-k the double chain's
// (the seed's logits have margins far above float32's error); and its check refuses a non-float32 out and a missing
// router weight or logits scratch.
TEST(TwinMoe, NormRouterIsNormThenRouterGemmThenRouter) {
  const int64_t T = 3, H = 256, E = 16;
  const int32_t K = 4;
  std::mt19937 rng(31);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(T * H), d(T * H), wn(H), rw(E * H);
  for (auto* v : {&x, &d, &rw})
    for (float& f : *v) f = nd(rng);
  for (float& f : wn) f = 1.0f + 0.1f * nd(rng);
  std::vector<float> x0 = x, out(T * H, kNaN), logits(T * E, kNaN), w(T * K, kNaN);
  std::vector<uint16_t> out2(T * H);
  std::vector<int32_t> idx(T * K, -1);
  kernels::NormRouterParams p{
      .norm = {.residual = x.data(), .ld_residual = H, .delta = d.data(), .ld_delta = H, .out = out.data(),
               .out_type = DType::F32, .ld_out = H, .weight = wn.data(), .n_rows = T, .dim = H, .eps = 1e-6f,
               .out2 = out2.data(), .out2_type = DType::BF16, .ld_out2 = H},
      .router_w = rw.data(), .logits = logits.data(),
      .router = {.n_experts = static_cast<int32_t>(E), .top_k = K, .topk_idx = idx.data(), .topk_weight = w.data()}};
  kernels::twin::norm_router(p);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> h(H), o(H), l(E);
    double ss = 0;
    for (int64_t i = 0; i < H; ++i) {
      h[i] = static_cast<double>(x0[t * H + i] + d[t * H + i]);  // one float add, as every engine does
      ss += h[i] * h[i];
      EXPECT_EQ(x[t * H + i], static_cast<float>(h[i])) << "residual " << t << "," << i;
    }
    const double inv = 1.0 / std::sqrt(ss / H + 1e-6);
    double max_o = 0, max_l = 0;
    for (int64_t i = 0; i < H; ++i) max_o = std::max(max_o, std::fabs(o[i] = h[i] * inv * wn[i]));
    for (int64_t i = 0; i < H; ++i) {
      ASSERT_NEAR(out[t * H + i], o[i], 1e-6 * max_o) << t << "," << i;
      ASSERT_EQ(out2[t * H + i], f32_to_bf16(out[t * H + i])) << "out2 is out in BF16";
    }
    for (int64_t e = 0; e < E; ++e) {
      l[e] = 0;
      for (int64_t i = 0; i < H; ++i) l[e] += o[i] * rw[e * H + i];
      max_l = std::max(max_l, std::fabs(l[e]));
    }
    for (int64_t e = 0; e < E; ++e) ASSERT_NEAR(logits[t * E + e], l[e], 1e-5 * max_l) << t << "," << e;
    std::vector<int32_t> order(E);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
    for (int32_t k = 0; k < K; ++k) EXPECT_EQ(idx[t * K + k], order[k]) << "token " << t << " pick " << k;
  }
  kernels::NormRouterParams bad = p;
  bad.norm.out_type = DType::BF16;
  EXPECT_ANY_THROW(kernels::twin::norm_router(bad)) << "out must be float32 (the router reads it)";
  bad = p;
  bad.router_w = nullptr;
  EXPECT_ANY_THROW(kernels::twin::norm_router(bad)) << "no router weight";
  bad = p;
  bad.logits = nullptr;
  EXPECT_ANY_THROW(kernels::twin::norm_router(bad)) << "no logits scratch";
}

}  // namespace
}  // namespace mlabench
