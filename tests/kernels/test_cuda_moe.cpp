// DeepSeekMoE CUDA kernels (engine/kernels/cuda/moe.cu) against their CPU twins (engine/kernels/twin/moe.cpp):
// router (V2-Lite, V2 and small shapes, 1 to 16K tokens), the deterministic expert sort (up to ~98K pairs, run
// twice for bit-identical results), the row gather in each dtype and alignment path, the combine, and the
// per-pair pointer arrays.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/twin/twin.h"
#include "tests/kernels/gpu_test_util.h"

namespace mlabench {
namespace {

using kernels::MoeRowMode;
using kernels::RouterMethod;
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
// flip a choice, so indices must match exactly.
std::vector<float> margin_logits(int64_t T, int32_t E, std::mt19937& rng) {
  std::vector<float> l(static_cast<size_t>(T * E));
  std::vector<int32_t> perm(static_cast<size_t>(E));
  std::normal_distribution<float> offset(0.0f, 3.0f);
  for (int64_t t = 0; t < T; ++t) {
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    const float o = offset(rng);
    for (int32_t r = 0; r < E; ++r) l[static_cast<size_t>(t * E + perm[r])] = o + 4.0f - 0.05f * static_cast<float>(r);
  }
  return l;
}

TEST(CudaMoe, RouterMatchesTwin) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(21);
  for (const RouterCase& c : kRouterCases)
    for (bool norm : {false, true})
      for (int64_t T : {int64_t{1}, int64_t{3}, int64_t{64}, int64_t{1000}, int64_t{16384}}) {
        SCOPED_TRACE(std::string(c.name) + " norm=" + std::to_string(norm) + " T=" + std::to_string(T));
        const std::vector<float> logits = margin_logits(T, c.E, rng);
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
        // a few more after the renormalising sum; 2e-6 relative is ~16 ulp.
        const std::vector<float> gw = to_host<float>(d_w, n);
        for (size_t i = 0; i < n; ++i)
          ASSERT_LE(std::fabs(gw[i] - w[i]), 2e-6 * std::fabs(w[i]) + 1e-30) << "pair " << i << ": " << gw[i]
                                                                            << " vs " << w[i];
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
      Permuted runs[2];
      for (Permuted& r : runs) {
        auto d_counts = to_device(std::vector<int32_t>(static_cast<size_t>(s.E), -7));
        auto d_offsets = to_device(std::vector<int32_t>(static_cast<size_t>(s.E) + 1, -7));
        auto d_rank = to_device(std::vector<int32_t>(static_cast<size_t>(n), -7));
        kernels::MoePermuteParams p{d_idx.as<int32_t>(), T, s.k, s.E, d_counts.as<int32_t>(),
                                    d_offsets.as<int32_t>(), d_rank.as<int32_t>()};
        kernels::cuda::moe_permute(p, nullptr);
        r = {to_host<int32_t>(d_counts, static_cast<size_t>(s.E)),
             to_host<int32_t>(d_offsets, static_cast<size_t>(s.E) + 1), to_host<int32_t>(d_rank, static_cast<size_t>(n))};
      }
      EXPECT_EQ(runs[0].counts, ref.counts);
      EXPECT_EQ(runs[0].offsets, ref.offsets);
      EXPECT_EQ(runs[0].rank, ref.rank);
      EXPECT_EQ(runs[1].counts, runs[0].counts);
      EXPECT_EQ(runs[1].offsets, runs[0].offsets);
      EXPECT_EQ(runs[1].rank, runs[0].rank) << "second run differs";
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
        for (bool accumulate : {true, false}) {
          SCOPED_TRACE(mode_name(mode) + " T=" + std::to_string(T) + " hidden=" + std::to_string(rs.hidden) +
                       " accumulate=" + std::to_string(accumulate));
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
          auto d_y = to_device(y);
          auto d_w = to_device(rt.w);
          auto d_out = to_device(out);
          kernels::MoeCombineParams p{out.data(), rs.ld_out, y.data(), rs.ld_in, rt.w.data(), rs.hidden, T, rt.k,
                                      accumulate, rt.host_map(mode)};
          kernels::twin::moe_combine(p);
          p.out = d_out.as<float>();
          p.y = d_y.as<float>();
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

}  // namespace
}  // namespace mlabench
