// The sharding math of issue 22 without GPUs: the shard plan (engine/parallel/shard_plan.h) on the real configs,
// the CPU twin of the collectives (host_collectives.h), and a tensor-parallel MLP and an expert-parallel MoE layer
// run over simulated ranks, each equal to the unsharded computation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/check.h"
#include "engine/model/config.h"
#include "engine/model/model_info.h"
#include "engine/parallel/host_collectives.h"
#include "engine/parallel/shard_plan.h"
#include "engine/parallel/sharded_cpu.h"
#include "engine/weights/model_weights.h"
#include "tests/engine/architecture_configs.h"

namespace mlabench::parallel {
namespace {

ModelConfig config(const std::string& name) { return load_config(std::string(MLABENCH_CONFIGS_DIR) + "/" + name); }
ModelConfig tiny() { return load_config(std::string(MLABENCH_TEST_DATA) + "/models/mlabench-tiny-dsv2"); }

std::vector<float> randn(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}

// Every rank's ranges of one dimension, in rank order, tile [0, n) exactly.
void expect_partition(const std::vector<Range>& parts, int64_t n, const char* what) {
  int64_t at = 0;
  for (const Range& r : parts) {
    EXPECT_EQ(r.begin, at) << what;
    at = r.end;
  }
  EXPECT_EQ(at, n) << what;
}

TEST(ShardPlan, SplitRangeTilesUnevenCounts) {
  for (int parts : {1, 2, 3, 7, 8})
    for (int64_t n : {0, 1, 5, 8, 102400, 102401}) {
      std::vector<Range> r;
      for (int i = 0; i < parts; ++i) r.push_back(split_range(n, parts, i));
      expect_partition(r, n, "split_range");
      for (const Range& x : r) EXPECT_LE(r.front().size() - x.size(), 1) << n << " over " << parts;
    }
}

// Each config at TP and EP 2, 4 and 8 wherever its dimensions divide: the ranks' heads, columns, experts and
// vocabulary rows partition the model's, and the per-tensor parameter count of an unsharded plan is the one `info`
// computes.
TEST(ShardPlan, RanksPartitionEveryShardedDimensionOfTheRealConfigs) {
  for (const char* name : {"deepseek-v2", "deepseek-v2-lite", "deepseek-67b", "llama-3-8b"}) {
    const ModelConfig c = config(name);
    EXPECT_EQ(model_parameters(c), count_params(c).total) << name;
    const bool moe = c.n_routed_experts > 0;
    for (int w : {2, 4, 8})
      for (ParallelConfig p : {ParallelConfig{w, 1, false}, ParallelConfig{w, w, false}, ParallelConfig{1, w, true}}) {
        if (!moe && p.ep > 1) continue;
        SCOPED_TRACE(testing::Message() << name << " --tp " << p.tp << " --ep " << p.ep << (p.dp_attention ? " dp" : ""));
        std::vector<Range> heads, kv, dense, shared, experts, columns, vocab;
        for (int r = 0; r < w; ++r) {
          const ShardPlan s = plan_shards(c, p, r);
          EXPECT_FALSE(describe(s).empty());
          heads.push_back(s.heads), kv.push_back(s.kv_heads), dense.push_back(s.dense_columns);
          shared.push_back(s.shared_columns), experts.push_back(s.experts), columns.push_back(s.expert_columns);
          vocab.push_back(s.vocab);
          EXPECT_EQ(s.sequences_sharded, p.dp_attention);
          EXPECT_EQ(s.latent_replicated, c.is_mla() && !p.dp_attention);
          // A rank's KV cache per token: MLA's whole latent; GQA its KV heads only.
          EXPECT_EQ(rank_kv_values_per_token(c, s) * (c.is_mla() || p.dp_attention ? 1 : w),
                    kv_per_token(c).elements);
        }
        if (!p.dp_attention) {
          expect_partition(heads, c.n_heads, "heads");
          if (!c.is_mla()) expect_partition(kv, c.n_kv_heads, "kv heads");
        }
        if (c.n_layers > c.n_moe_layers()) expect_partition(dense, c.intermediate_size, "dense columns");
        if (moe) {
          expect_partition(shared, c.n_shared_experts * c.moe_intermediate_size, "shared columns");
          if (p.ep > 1) expect_partition(experts, c.n_routed_experts, "experts");
          else expect_partition(columns, c.moe_intermediate_size, "expert columns");
        }
        expect_partition(vocab, c.vocab_size, "vocab");
      }
  }
}

// The sizing: DeepSeek-V2 in BF16 (472 GB) fits 4 x H200 (141 GB each, 10% kept for the cache and
// activations) under --tp 4 --ep 4, and not 2. Its 8 expert groups align with 2, 4 and 8 ranks (device-limited
// routing keeps its bound on the ranks a token reaches) and straddle 16, which the plan says.
TEST(ShardPlan, DeepSeekV2FitsFourH200InBf16) {
  const ModelConfig c = config("deepseek-v2");
  const double h200 = 141e9;
  for (int w : {2, 4, 8}) {
    const ShardPlan s = plan_shards(c, {w, w, false}, 0);
    const double bytes = 2.0 * static_cast<double>(rank_parameters(c, s));
    EXPECT_EQ(bytes < 0.9 * h200, w >= 4) << w << " ranks: " << bytes / 1e9 << " GB of weights a rank";
    EXPECT_TRUE(s.routing_groups_align) << w;
  }
  EXPECT_FALSE(plan_shards(c, {16, 16, false}, 0).routing_groups_align);
}

// --weights-dtype fp8 on GPU ranks (each quantises its own slices): every rank's slice must start on the 128 grid
// and end on it or at the matrix's end. DeepSeek-V2's experts (1,536 wide) split into 768 and 384 columns, not 192;
// DeepSeek 67B's FFN (22,016) into 11,008 and 5,504, not 2,752; V2-Lite's dense FFN (10,944) and experts (1,408) not
// even in two.
TEST(ShardPlan, Fp8GridRefusesSlicesThatCutAScaleBlock) {
  auto refusal = [](const ModelConfig& c, int tp) -> std::string {
    try {
      check_fp8_grid(c, {tp, 1, false});
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  const ModelConfig v2 = config("deepseek-v2"), d67 = config("deepseek-67b"), lite = config("deepseek-v2-lite");
  EXPECT_EQ(refusal(v2, 2), "");
  EXPECT_EQ(refusal(v2, 4), "");
  EXPECT_NE(refusal(v2, 8).find("each routed expert's columns 0-192 of 1536"), std::string::npos) << refusal(v2, 8);
  EXPECT_EQ(refusal(d67, 2), "");
  EXPECT_EQ(refusal(d67, 4), "");
  EXPECT_NE(refusal(d67, 8).find("the dense FFN's columns 0-2752 of 22016"), std::string::npos) << refusal(d67, 8);
  const std::string lite2 = refusal(lite, 2);
  EXPECT_NE(lite2.find("rank 0 of 2 holds the dense FFN's columns 0-5472 of 10944"), std::string::npos) << lite2;
  EXPECT_NE(lite2.find("HINT: choose --tp"), std::string::npos) << lite2;
  EXPECT_EQ(refusal(lite, 1), "") << "one rank cuts nothing";
  // The bundled tiny model: its 6 heads x 48 query values halve to 144 rows a rank.
  EXPECT_NE(refusal(tiny(), 2).find("q_b_proj rows 0-144 of 288, which cut its 128 x 128 scale blocks"),
            std::string::npos)
      << refusal(tiny(), 2);
}

TEST(ShardPlan, RefusesWhatDoesNotDivideAndCombinationsThatWasteWork) {
  const ModelConfig lite = config("deepseek-v2-lite");
  auto message = [&](ParallelConfig p) -> std::string {
    try {
      plan_shards(lite, p, 0);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message({3, 1, false}).find("num_attention_heads = 16 does not divide over 3"), std::string::npos);
  EXPECT_NE(message({1, 4, false}).find("HINT: add --tp 4"), std::string::npos);
  EXPECT_NE(message({2, 4, false}).find("each is 1 or the group's size"), std::string::npos);
  EXPECT_NE(message({1, 3, true}).find("n_shared_experts * moe_intermediate_size = 2816 does not divide over 3"),
            std::string::npos);
  EXPECT_NE(message({1, 3, true}).find("HINT: pick a rank count"), std::string::npos);
  EXPECT_EQ(message({3, 1, true}).find("heads"), std::string::npos) << "DP attention keeps every head";
  EXPECT_THROW(plan_shards(lite, {2, 1, false}, 2), Error);
}

TEST(HostGroup, AllReduceGivesEveryRankTheRankOrderSumBitForBit) {
  for (int n : {1, 2, 3, 8}) {
    HostGroup g(n);
    std::mt19937 rng(static_cast<unsigned>(n));
    std::vector<std::vector<float>> in(static_cast<size_t>(n)), out(static_cast<size_t>(n));
    for (auto& v : in) v = randn(1000, rng);
    std::vector<float> want(1000, 0.0f);
    for (const auto& v : in)
      for (size_t i = 0; i < v.size(); ++i) want[i] += v[i];
    run_ranks(g, [&](int r) {
      out[static_cast<size_t>(r)] = in[static_cast<size_t>(r)];
      g.all_reduce_sum(r, out[static_cast<size_t>(r)].data(), out[static_cast<size_t>(r)].data(), 1000);  // in place
    });
    for (const auto& o : out) EXPECT_EQ(0, std::memcmp(o.data(), want.data(), want.size() * sizeof(float)));
  }
}

TEST(HostGroup, AllGatherAndAllToAllRoundTrip) {
  const int n = 4, width = 3;
  HostGroup g(n);
  const std::vector<int64_t> counts = {2, 0, 3, 1};
  std::vector<std::vector<float>> gathered(n, std::vector<float>(6));
  std::vector<std::vector<float>> back(n);
  std::vector<std::vector<float>> sent(n);
  run_ranks(g, [&](int r) {
    std::vector<float> mine(static_cast<size_t>(counts[static_cast<size_t>(r)]), static_cast<float>(r));
    g.all_gather(r, mine.data(), counts, gathered[static_cast<size_t>(r)].data());
    // Rank r sends (r + d) % 3 rows to rank d, each row (r, d, i); the receivers send them straight back.
    std::vector<int64_t> send_counts(n), recv_counts, back_counts;
    std::vector<float>& s = sent[static_cast<size_t>(r)];
    for (int d = 0; d < n; ++d) {
      send_counts[static_cast<size_t>(d)] = (r + d) % 3;
      for (int i = 0; i < (r + d) % 3; ++i) s.insert(s.end(), {float(r), float(d), float(i)});
    }
    std::vector<float> recv(64 * width);
    g.all_to_all(r, s.data(), send_counts, width, recv.data(), recv_counts);
    int64_t at = 0;
    for (int src = 0; src < n; ++src)
      for (int64_t i = 0; i < recv_counts[static_cast<size_t>(src)]; ++i, ++at) {
        EXPECT_EQ(recv[static_cast<size_t>(at * width)], float(src));
        EXPECT_EQ(recv[static_cast<size_t>(at * width + 1)], float(r));
      }
    back[static_cast<size_t>(r)].resize(64 * width);
    g.all_to_all(r, recv.data(), recv_counts, width, back[static_cast<size_t>(r)].data(), back_counts);
    back[static_cast<size_t>(r)].resize(s.size());
  });
  const std::vector<float> want_gather = {0, 0, 2, 2, 2, 3};
  for (const auto& v : gathered) EXPECT_EQ(v, want_gather);
  for (int r = 0; r < n; ++r) EXPECT_EQ(back[static_cast<size_t>(r)], sent[static_cast<size_t>(r)]) << "rank " << r;
}

TEST(HostGroup, ARankThatThrowsEndsTheGroupInsteadOfHangingIt) {
  HostGroup g(4);
  std::vector<float> v(8, 1.0f);
  EXPECT_THROW(run_ranks(g,
                         [&](int r) {
                           if (r == 2) throw std::runtime_error("rank 2 failed");
                           std::vector<float> mine = v;
                           for (int i = 0; i < 3; ++i) g.all_reduce_sum(r, mine.data(), mine.data(), 8);
                         }),
               std::runtime_error);
}

float silu(float x) { return x / (1.0f + std::exp(-x)); }

// y[T, H] = down(silu(x gate^T) * (x up^T)) over intermediate columns [c0, c1) of gate, up [I, H] and down [H, I].
std::vector<float> mlp(const std::vector<float>& x, int64_t T, int64_t H, int64_t I, const float* gate,
                       const float* up, const float* down, Range cols) {
  std::vector<float> y(static_cast<size_t>(T * H), 0.0f);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = cols.begin; j < cols.end; ++j) {
      float g = 0, u = 0;
      for (int64_t k = 0; k < H; ++k) {
        g += x[static_cast<size_t>(t * H + k)] * gate[j * H + k];
        u += x[static_cast<size_t>(t * H + k)] * up[j * H + k];
      }
      const float a = silu(g) * u;
      for (int64_t h = 0; h < H; ++h) y[static_cast<size_t>(t * H + h)] += a * down[h * I + j];
    }
  return y;
}

// The dense MLP under --tp N: each rank's column slice of gate/up and row slice of down, then the all-reduce, equals
// the whole MLP (float32, within 1e-5 of max |y|), at the tiny fixture's shapes and TP 2, 4 and 8.
TEST(ShardedMath, TensorParallelMlpEqualsTheUnshardedOne) {
  const ModelConfig c = tiny();
  const int64_t T = 5, H = c.hidden_size, I = c.intermediate_size;
  std::mt19937 rng(7);
  const auto x = randn(static_cast<size_t>(T * H), rng), gate = randn(static_cast<size_t>(I * H), rng),
             up = randn(static_cast<size_t>(I * H), rng), down = randn(static_cast<size_t>(H * I), rng);
  const auto want = mlp(x, T, H, I, gate.data(), up.data(), down.data(), {0, I});
  for (int w : {2, 4, 8}) {
    HostGroup g(w);
    std::vector<std::vector<float>> got(static_cast<size_t>(w));
    run_ranks(g, [&](int r) {
      const ShardPlan s = plan_shards(c, {w, 1, true}, r);  // the fixture's 6 heads: DP attention at 4 and 8
      auto& y = got[static_cast<size_t>(r)];
      y = mlp(x, T, H, I, gate.data(), up.data(), down.data(), s.dense_columns);
      g.all_reduce_sum(r, y.data(), y.data(), T * H);
    });
    for (const auto& y : got) {
      double err = 0;
      for (size_t i = 0; i < y.size(); ++i) err = std::max(err, std::fabs(double(y[i]) - want[i]));
      EXPECT_LE(err, 1e-5 * max_abs(want)) << "TP " << w;
    }
  }
}

// The routed experts under --ep N: tokens split over ranks (DP attention), each (token, expert) row sent to the
// rank holding that expert by all-to-all, computed there and scaled by its routing weight, sent back, and summed in
// the token's top-k order: equal to the unsharded MoE sum at EP 2, 4 and 8.
TEST(ShardedMath, ExpertParallelDispatchAndCombineEqualTheUnshardedMoe) {
  const ModelConfig c = tiny();
  const int64_t T = 24, H = c.hidden_size, I = c.moe_intermediate_size, E = c.n_routed_experts,
                K = c.experts_per_token;
  std::mt19937 rng(11);
  const auto x = randn(static_cast<size_t>(T * H), rng);
  std::vector<std::vector<float>> gate(E), up(E), down(E);
  for (int64_t e = 0; e < E; ++e) {
    gate[e] = randn(static_cast<size_t>(I * H), rng), up[e] = randn(static_cast<size_t>(I * H), rng);
    down[e] = randn(static_cast<size_t>(H * I), rng);
  }
  // A routing: K distinct experts a token, weights in (0, 1).
  std::vector<int64_t> ids(static_cast<size_t>(T * K));
  std::vector<float> wts(static_cast<size_t>(T * K));
  std::uniform_real_distribution<float> u01(0.05f, 1.0f);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<int64_t> all(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) all[static_cast<size_t>(e)] = e;
    std::shuffle(all.begin(), all.end(), rng);
    for (int64_t k = 0; k < K; ++k) ids[t * K + k] = all[k], wts[t * K + k] = u01(rng);
  }
  auto expert_row = [&](int64_t e, const float* xr) {
    const std::vector<float> v(xr, xr + H);
    return mlp(v, 1, H, I, gate[e].data(), up[e].data(), down[e].data(), {0, I});
  };
  std::vector<float> want(static_cast<size_t>(T * H), 0.0f);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < K; ++k) {
      const auto y = expert_row(ids[t * K + k], x.data() + t * H);
      for (int64_t h = 0; h < H; ++h) want[t * H + h] += wts[t * K + k] * y[h];
    }
  for (int w : {2, 4, 8}) {
    HostGroup g(w);
    std::vector<float> got(static_cast<size_t>(T * H), 0.0f);
    run_ranks(g, [&](int r) {
      const ShardPlan s = plan_shards(c, {1, w, true}, r);
      const Range mine = split_range(T, w, r);  // this rank's tokens (its sequences under DP attention)
      std::vector<Range> owner(static_cast<size_t>(w));
      for (int d = 0; d < w; ++d) owner[static_cast<size_t>(d)] = plan_shards(c, {1, w, true}, d).experts;
      auto owner_of = [&](int64_t e) {
        for (int d = 0; d < w; ++d)
          if (e >= owner[d].begin && e < owner[d].end) return d;
        return -1;
      };
      // Dispatch rows [token, k, expert, x...] grouped by destination rank.
      const int64_t width = H + 3;
      std::vector<int64_t> send_counts(static_cast<size_t>(w), 0);
      std::vector<float> send;
      for (int d = 0; d < w; ++d)
        for (int64_t t = mine.begin; t < mine.end; ++t)
          for (int64_t k = 0; k < K; ++k)
            if (owner_of(ids[t * K + k]) == d) {
              send.insert(send.end(), {float(t), float(k), float(ids[t * K + k])});
              send.insert(send.end(), x.begin() + t * H, x.begin() + (t + 1) * H);
              ++send_counts[static_cast<size_t>(d)];
            }
      std::vector<float> recv(static_cast<size_t>(T * K * width));
      std::vector<int64_t> recv_counts, back_counts;
      g.all_to_all(r, send.data(), send_counts, width, recv.data(), recv_counts);
      int64_t rows = 0;
      for (int64_t n : recv_counts) rows += n;
      for (int64_t i = 0; i < rows; ++i) {  // the experts this rank holds, weighted where they ran
        float* row = recv.data() + i * width;
        const int64_t t = static_cast<int64_t>(row[0]), k = static_cast<int64_t>(row[1]), e = static_cast<int64_t>(row[2]);
        if (e < s.experts.begin || e >= s.experts.end) throw std::runtime_error("a row reached a rank without its expert");
        const auto y = expert_row(e, row + 3);
        for (int64_t h = 0; h < H; ++h) row[3 + h] = wts[t * K + k] * y[h];
      }
      std::vector<float> back(static_cast<size_t>(T * K * width));
      g.all_to_all(r, recv.data(), recv_counts, width, back.data(), back_counts);
      // Combine in top-k order, as the unsharded sum.
      std::vector<const float*> by_k(static_cast<size_t>(T * K), nullptr);
      for (int64_t i = 0; i < static_cast<int64_t>(send.size()) / width; ++i) {
        const float* row = back.data() + i * width;
        by_k[static_cast<size_t>(row[0]) * K + static_cast<size_t>(row[1])] = row + 3;
      }
      for (int64_t t = mine.begin; t < mine.end; ++t)
        for (int64_t k = 0; k < K; ++k) {
          const float* y = by_k[static_cast<size_t>(t * K + k)];
          if (y == nullptr) throw std::runtime_error("a dispatched row did not come back");
          for (int64_t h = 0; h < H; ++h) got[t * H + h] += y[h];  // this rank's tokens only: no race
        }
    });
    double err = 0;
    for (size_t i = 0; i < got.size(); ++i) err = std::max(err, std::fabs(double(got[i]) - want[i]));
    EXPECT_LE(err, 1e-5 * max_abs(want)) << "EP " << w;
  }
}

// The CI check: the sharded CPU forward (every rank its slices, all-reduce after attention and FFN,
// all-gather of the output head) gives the unsharded model's logits within 1e-5 of max |logit| in float32, over a
// prefill and three decode steps (MLA decompressed, then absorbed), at TP 2, 4, 8 and TP = EP 2, 4, 8. The
// compositions are the fixtures' (tests/engine/architecture_configs.h) at 8 heads (16 query heads over 8 KV heads
// for GQA) so that 8 ranks divide them, on random weights; and the bundled model's real weights at 2 ranks (its 6
// heads).
void expect_sharded_equals_unsharded(const ModelConfig& c, const ModelWeights& w, const std::vector<int>& worlds) {
  const std::vector<int32_t> prompt = {5, 17, 250, 3, 99, 1024, 7, 7, 42, 1800, 64, 12}, cont = {300, 8, 2000};
  const auto want = unsharded_cpu_logits(c, w, prompt, cont, MlaAttention::AUTO);
  const double scale = max_abs(want);
  for (int world : worlds)
    for (int ep : {1, world}) {
      if (ep > 1 && c.n_routed_experts == 0) continue;
      const auto got = sharded_cpu_logits(c, w, {world, ep, false}, prompt, cont, MlaAttention::AUTO);
      double err = 0;
      for (size_t i = 0; i < got.size(); ++i) err = std::max(err, std::fabs(double(got[i]) - want[i]));
      EXPECT_LE(err, 1e-5 * scale) << c.source << " --tp " << world << " --ep " << ep << " (max |logit| " << scale << ")";
      EXPECT_GT(err, 0.0) << "bit-identical sharded logits: is the sharded forward running unsharded?";
    }
}

// DP attention: rank r attends over its own sequence with every head and its own cache (MLA's latent not
// replicated); the FFN and the output head run each rank's slices over every rank's rows, gathered before and summed
// after. Each sequence's logits equal the unsharded model's on that sequence alone within 1e-5 of max |logit|, over a
// prefill and two decode steps, sequences of different lengths, at --ep N --dp-attention (MoE models) and
// --tp N --dp-attention.
void expect_dp_equals_unsharded(const ModelConfig& c, const ModelWeights& w, const std::vector<int>& worlds) {
  const int64_t V = c.vocab_size;
  for (int world : worlds)
    for (bool ep : {false, true}) {
      if (ep && c.n_routed_experts == 0) continue;
      std::vector<std::vector<int32_t>> prompts, conts;
      for (int r = 0; r < world; ++r) {
        std::vector<int32_t> prompt;
        for (int i = 0; i < 3 + 2 * r; ++i) prompt.push_back(static_cast<int32_t>((17 * r + 31 * i + 5) % V));
        prompts.push_back(prompt);
        conts.push_back({static_cast<int32_t>((7 * r + 300) % V), static_cast<int32_t>((11 * r + 8) % V)});
      }
      const ParallelConfig p{ep ? 1 : world, ep ? world : 1, true};
      const auto got = sharded_cpu_logits_dp(c, w, p, prompts, conts, MlaAttention::AUTO);
      ASSERT_EQ(got.size(), prompts.size());
      for (int r = 0; r < world; ++r) {
        const auto want = unsharded_cpu_logits(c, w, prompts[static_cast<size_t>(r)], conts[static_cast<size_t>(r)],
                                               MlaAttention::AUTO);
        const auto& mine = got[static_cast<size_t>(r)];
        ASSERT_EQ(mine.size(), want.size()) << "rank " << r;
        double err = 0;
        for (size_t i = 0; i < mine.size(); ++i) err = std::max(err, std::fabs(double(mine[i]) - want[i]));
        EXPECT_LE(err, 1e-5 * max_abs(want))
            << c.source << (ep ? " --ep " : " --tp ") << world << " --dp-attention, rank " << r;
      }
    }
}

TEST(ShardedCpuForward, DpAttentionEqualsTheUnshardedModelPerSequence) {
  for (const char* name : {"mla_qlora_moe", "mla_noq_dense", "mha_moe", "gqa2_moe"}) {
    for (auto [n, j] : test::architecture_combinations()) {
      if (n != name) continue;
      const ModelConfig c = config_from_json(j, n);  // DP keeps every head: the fixtures' own head counts
      expect_dp_equals_unsharded(c, random_weights(c, 4), {2, 4, 8});
    }
  }
  const ModelConfig c = tiny();
  expect_dp_equals_unsharded(c, load_weights(c, std::string(MLABENCH_TEST_DATA) + "/models/mlabench-tiny-dsv2"), {2});
}

TEST(ShardedCpuForward, EqualsTheUnshardedModelAtTpAndEp248) {
  for (const char* name : {"mla_qlora_moe", "mla_noq_dense", "mha_moe", "gqa2_moe"}) {
    for (auto [n, j] : test::architecture_combinations()) {
      if (n != name) continue;
      j["num_attention_heads"] = j.value("mlabench_attention", std::string()) == "gqa" || n.rfind("gqa", 0) == 0 ? 16 : 8;
      j["num_key_value_heads"] = 8;
      if (n.rfind("gqa", 0) == 0 || n.rfind("mha", 0) == 0) j["head_dim"] = 16;
      const ModelConfig c = config_from_json(j, n);
      expect_sharded_equals_unsharded(c, random_weights(c, 3), {2, 4, 8});
    }
  }
  const ModelConfig c = tiny();
  expect_sharded_equals_unsharded(c, load_weights(c, std::string(MLABENCH_TEST_DATA) + "/models/mlabench-tiny-dsv2"),
                                  {2});
}

// --random-weights under a split: each rank generates its own slices from the sources (rows by offset, a column block
// by offset + row stride), and they are bit for bit the slices cut from the whole random model, in every matrix, at
// TP 2 and 4, TP = EP 2 and DP attention over EP 4 (tied and untied heads, MLA with and without q_lora, GQA).
TEST(ShardedWeights, RandomSourcesGenerateEachRanksSlicesOfTheWholeModel) {
  int checked = 0;
  for (const char* name : {"mla_qlora_moe", "mla_noq_dense", "gqa2_moe"}) {
    for (auto [n, j] : test::architecture_combinations()) {
      if (n != name) continue;
      j["num_attention_heads"] = n.rfind("gqa", 0) == 0 ? 16 : 8;
      j["num_key_value_heads"] = 8;
      if (n.rfind("gqa", 0) == 0) j["head_dim"] = 16;
      j["tie_word_embeddings"] = n == "mla_noq_dense";
      const ModelConfig c = config_from_json(j, n);
      const ModelWeights whole = random_weights(c, 11), sources = random_weight_sources(c, 11);
      EXPECT_EQ(sources.stored_bytes, whole.stored_bytes) << n;
      EXPECT_LT(sources.owned.size(), whole.owned.size()) << n << ": sources hold only the norms";
      for (const ParallelConfig p : {ParallelConfig{2, 1, false}, ParallelConfig{4, 1, false},
                                     ParallelConfig{2, 2, false}, ParallelConfig{1, 4, true}}) {
        if (c.n_routed_experts == 0 && p.ep > 1) continue;
        for (int r = 0; r < p.world(); ++r) {
          const ShardPlan plan = plan_shards(c, p, r);
          RankModel want = shard_model(c, whole, plan), got = shard_model(c, sources, plan);
          std::vector<TensorView> a, b;
          for_each_matrix(want.weights, [&](TensorView& v) { a.push_back(v); });
          for_each_matrix(got.weights, [&](TensorView& v) {
            EXPECT_EQ(v.data, nullptr) << n << ": a rank's matrix was generated before the rank asked for it";
            v = generate_random_view(v, got.weights.owned);
            b.push_back(v);
          });
          ASSERT_EQ(a.size(), b.size());
          for (size_t i = 0; i < a.size(); ++i) {
            ASSERT_EQ(a[i].shape, b[i].shape) << n << " rank " << r << " matrix " << i;
            if (a[i].shape.empty() || a[i].numel() == 0) continue;  // a slot this architecture or rank lacks
            ASSERT_EQ(0, std::memcmp(a[i].data, b[i].data, a[i].nbytes()))
                << n << " tp " << p.tp << " ep " << p.ep << " rank " << r << " matrix " << i << " "
                << shape_str(a[i].shape);
            ++checked;
          }
          EXPECT_EQ(got.weights.final_norm, want.weights.final_norm);
        }
      }
    }
  }
  EXPECT_GT(checked, 1000);
}

// One sequence cannot be split over ranks; DP attention takes one a rank, each with the same number of steps.
TEST(ShardedCpuForward, RefusesDpAttentionOverOneSequenceAndUnevenSteps) {
  const ModelConfig c = tiny();
  const ModelWeights w = random_weights(c, 1);
  const std::vector<int32_t> prompt = {1, 2, 3};
  EXPECT_THROW(sharded_cpu_logits(c, w, {1, 2, true}, prompt, {}, MlaAttention::AUTO), Error);
  const std::vector<std::vector<int32_t>> prompts = {{1, 2}, {3}}, uneven = {{4}, {5, 6}}, even = {{4}, {5}};
  EXPECT_THROW(sharded_cpu_logits_dp(c, w, {1, 2, true}, prompts, uneven, MlaAttention::AUTO), Error);
  EXPECT_THROW(sharded_cpu_logits_dp(c, w, {1, 2, false}, prompts, even, MlaAttention::AUTO), Error);
  EXPECT_THROW(sharded_cpu_logits_dp(c, w, {1, 2, true}, std::vector<std::vector<int32_t>>{{1}}, even,
                                     MlaAttention::AUTO),
               Error);
}

}  // namespace
}  // namespace mlabench::parallel
