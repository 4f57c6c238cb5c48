// The sharded engine of issue 22 end to end on the CPU: `Engine::open` with --tp / --ep runs every step plan of the
// serving core (continuous batching, chunked prefill, prefix sharing) on each rank's slices of the model, joined by
// the CPU twin of the collectives (engine/parallel/sharded_runner.h). Its logits, scores and greedy tokens must equal
// the unsharded engine's (float32, within 1e-5 of max |logit|), on MLA and GQA compositions with MoE and dense
// layers. Also the persistent rank threads and the integer gather those runs rely on.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/check.h"
#include "engine/parallel/host_collectives.h"
#include "mlabench/engine.h"
#include "tests/engine/architecture_configs.h"
#include "tests/engine/fp8_checkpoint.h"
#include "tests/test_util.h"

namespace mlabench {
namespace {

const std::string kTiny = std::string(MLABENCH_TEST_DATA) + "/models/mlabench-tiny-dsv2";

std::unique_ptr<Engine> open(EngineOptions o) {
  auto e = Engine::open(o);
  if (!e.ok()) ADD_FAILURE() << e.error().what();
  return e.ok() ? std::move(e.value()) : nullptr;
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}

// Prompts of different lengths (one longer than a step's token budget, so it is prefilled in chunks), two sharing a
// prefix (the prefix cache serves the second), generated together.
std::vector<GenerateRequest> batch(int64_t vocab) {
  std::vector<GenerateRequest> rq;
  for (int64_t len : {1, 7, 40, 19}) {
    GenerateRequest r;
    for (int64_t i = 0; i < len; ++i) r.prompt.push_back(static_cast<int32_t>((i * 37 + len * 11 + 3) % vocab));
    r.options.max_new_tokens = 6;
    rq.push_back(r);
  }
  rq.push_back(rq[2]);
  rq.back().prompt.push_back(5);
  return rq;
}

// Every observable of the sharded engine against the unsharded one on the same options.
void expect_sharded_equals_unsharded(EngineOptions base, int tp, int ep, const std::string& what, bool dp = false) {
  base.max_batch = 4;
  base.max_step_tokens = 16;  // prompts of 19 and 40 tokens take several chunks
  base.kv_cache_gib = 0.25;
  EngineOptions split = base;
  split.tp = tp;
  split.ep = ep;
  split.dp_attention = dp;
  auto whole = open(base), sharded = open(split);
  ASSERT_TRUE(whole && sharded) << what;
  const int64_t V = whole->summary().vocab_size;
  const std::string label =
      what + " --tp " + std::to_string(tp) + " --ep " + std::to_string(ep) + (dp ? " --dp-attention" : "");

  std::vector<int32_t> tokens;
  for (int i = 0; i < 23; ++i) tokens.push_back(static_cast<int32_t>((i * 101 + 7) % V));
  const Logits a = whole->logits(tokens).value(), b = sharded->logits(tokens).value();
  ASSERT_EQ(a.data.size(), b.data.size()) << label;
  double err = 0;
  for (size_t i = 0; i < a.data.size(); ++i) err = std::max(err, std::fabs(double(a.data[i]) - b.data[i]));
  EXPECT_LE(err, 1e-5 * max_abs(a.data)) << label;
  EXPECT_GT(max_abs(a.data), 0.0) << label;

  const std::vector<int32_t> context(tokens.begin(), tokens.begin() + 15), cont(tokens.begin() + 15, tokens.end());
  const ScoreResult sa = whole->score(context, cont).value(), sb = sharded->score(context, cont).value();
  EXPECT_NEAR(sa.logprob, sb.logprob, 1e-5 * std::max(1.0, std::fabs(sa.logprob))) << label;
  EXPECT_EQ(sa.is_greedy, sb.is_greedy) << label;

  const std::vector<GenerateRequest> rq = batch(V);
  const auto ga = whole->generate_batch(rq).value(), gb = sharded->generate_batch(rq).value();
  ASSERT_EQ(ga.size(), gb.size()) << label;
  for (size_t i = 0; i < ga.size(); ++i) {
    EXPECT_EQ(ga[i].tokens, gb[i].tokens) << label << ", request " << i;
    EXPECT_EQ(ga[i].tokens.size(), 6u) << label << ", request " << i;
  }
  // The split holds the same weights once over all its ranks, plus what each rank keeps whole (norms, the
  // embedding, the router, MLA's latent projections).
  EXPECT_GE(sharded->weight_bytes(), whole->weight_bytes()) << label;
  // DP attention: a cache a rank, each holding every head of its own sequences, so the group holds world times the
  // tokens of one unsharded cache of the same --kv-cache-gib; the prefix cache works within each rank.
  const int world = std::max(tp, ep);
  EXPECT_EQ(sharded->kv_cache_partitions(), dp ? world : 1) << label;
  if (dp) {
    EXPECT_EQ(sharded->kv_cache_tokens(), world * whole->kv_cache_tokens()) << label;
    EXPECT_GT(sharded->stats().prefix_tokens_reused, 0) << label;
  }
}

TEST(ShardedEngine, TheTinyCheckpointAtTp2Tp3AndEp2EqualsTheUnshardedEngine) {
  const EngineOptions o{.model_dir = kTiny};
  expect_sharded_equals_unsharded(o, 2, 1, "tiny");
  expect_sharded_equals_unsharded(o, 3, 1, "tiny");  // 6 heads: uneven splits elsewhere are refused by the plan
  expect_sharded_equals_unsharded(o, 2, 2, "tiny");
}

TEST(ShardedEngine, MlaAndGqaCompositionsWithRandomWeightsEqualTheUnshardedEngine) {
  for (const char* name : {"mla_qlora_moe", "gqa2_moe", "mha_dense"}) {
    const nlohmann::json j = test::splittable_composition(name);
    ASSERT_FALSE(j.is_null()) << name;
    test::TempDir dir;
    std::ofstream(dir.file("config.json")) << j.dump(2);
    const EngineOptions o{.model_dir = dir.path(), .random_weights_seed = 5};
    expect_sharded_equals_unsharded(o, 2, 1, name);
    expect_sharded_equals_unsharded(o, 4, 1, name);
    if (j.value("n_routed_experts", 0) > 0) expect_sharded_equals_unsharded(o, 2, 2, name);
  }
}

// DP attention: each request's sequence on one rank (its own cache, every head), the FFN and the head over every
// rank's rows. A single sequence leaves the other ranks running empty forward calls that still join the gathers; a
// batch of five spreads 3 and 2 (or 2, 1, 1, 1) over the ranks, with chunked prefills and decode steps mixed.
TEST(ShardedEngine, DpAttentionEqualsTheUnshardedEngine) {
  const EngineOptions tiny{.model_dir = kTiny};
  expect_sharded_equals_unsharded(tiny, 2, 1, "tiny", true);
  expect_sharded_equals_unsharded(tiny, 1, 2, "tiny", true);
  for (const char* name : {"mla_qlora_moe", "gqa2_moe"}) {
    const nlohmann::json j = test::splittable_composition(name);
    ASSERT_FALSE(j.is_null()) << name;
    test::TempDir dir;
    std::ofstream(dir.file("config.json")) << j.dump(2);
    const EngineOptions o{.model_dir = dir.path(), .random_weights_seed = 5};
    expect_sharded_equals_unsharded(o, 1, 4, name, true);
    expect_sharded_equals_unsharded(o, 2, 1, name, true);
  }
}

// DP attention under memory pressure: each rank's cache holds 3 blocks of 16 tokens and runs two sequences of 14 + 6
// tokens, which both cross into a second block while decoding: a rank runs out and pre-empts one of its own, then
// re-admits it; the greedy tokens are still the unsharded engine's.
TEST(ShardedEngine, DpAttentionUnderATightCachePreemptsWithinARank) {
  EngineOptions o{.model_dir = kTiny, .kv_cache_gib = 3.0 * 16 * 64 * 4 * 4 / 1073741824.0, .max_batch = 4,
                  .max_step_tokens = 64, .block_size = 16};
  auto whole = open(o);
  o.ep = 2;
  o.dp_attention = true;
  auto dp = open(o);
  ASSERT_TRUE(whole && dp);
  EXPECT_EQ(dp->kv_cache_tokens(), 2 * 3 * 16) << "two ranks of three blocks";
  const int64_t V = whole->summary().vocab_size;
  std::vector<GenerateRequest> rq(4);
  for (size_t r = 0; r < rq.size(); ++r) {
    for (int64_t i = 0; i < 14; ++i)
      rq[r].prompt.push_back(static_cast<int32_t>((i * 31 + static_cast<int64_t>(r) * 97 + 5) % V));
    rq[r].options.max_new_tokens = 6;
  }
  const auto ga = whole->generate_batch(rq).value(), gb = dp->generate_batch(rq).value();
  for (size_t i = 0; i < ga.size(); ++i) EXPECT_EQ(ga[i].tokens, gb[i].tokens) << "request " << i;
  EXPECT_GT(dp->stats().preemptions, 0) << "the cache is tight enough to pre-empt";
}

// FP8 weights split on the CPU (issue 20 for issue 22's FP8 runs): an FP8 checkpoint (as --weights-dtype fp8 quantises
// the whole model before slicing) sliced, so a rank holds the unsharded model's codes and scale grids, and a
// row-parallel layer quantises its slice of the activations in the same 1 x 128 groups. The logits then equal the unsharded FP8 model's up to the all-reduce's summation order,
// except where that order moves an activation across an e4m3 rounding boundary (a flip: that row carries another
// draw of FP8's rounding error, docs/engine.md). A split whose columns cut the 128 grid is refused by name.
TEST(ShardedEngine, Fp8WeightsSplitOnTheGridComputeTheUnshardedFp8Model) {
  // Widths on the 128 grid at --tp 2: o_proj's 4 heads x 64, dense 512, experts 256, one shared expert of 256.
  const nlohmann::json j = test::architecture_configs::fp8_splittable_mla_moe(64, 32, 64);
  test::TempDir dir;
  std::ofstream(dir.file("config.json")) << j.dump(2);
  // An FP8 checkpoint whose 128 x 128 blocks have magnitudes of their own (random weights give every block the same
  // scale, which would hide a slice reading its neighbour's grid): each block of a random tensor times 2^(-2..2).
  ASSERT_GT(test::write_fp8_checkpoint(dir.path(), 5, [](int64_t br, int64_t bc) {
    return std::ldexp(1.0f, static_cast<int>((br + 2 * bc) % 5) - 2);
  }), 10);
  const EngineOptions base{.model_dir = dir.path(), .kv_cache_gib = 0.25};
  auto whole = open(base);
  ASSERT_TRUE(whole);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 23; ++i) tokens.push_back(static_cast<int32_t>((i * 101 + 7) % 512));
  const Logits a = whole->logits(tokens).value();
  for (const auto& [tp, ep] : {std::pair{2, 1}, std::pair{2, 2}}) {
    EngineOptions o = base;
    o.tp = tp;
    o.ep = ep;
    auto sharded = open(o);
    ASSERT_TRUE(sharded);
    const Logits b = sharded->logits(tokens).value();
    ASSERT_EQ(a.data.size(), b.data.size());
    const auto [exact, rows, worst] = test::row_agreement(a.data, b.data, a.vocab_size, 1e-5);
    std::printf("[ sharded fp8 ] --tp %d --ep %d: %d of %d rows within 1e-5 of max |logit|, worst %.2e\n", tp, ep,
                exact, rows, worst);
    EXPECT_GE(4 * exact, 3 * rows) << "--tp " << tp << " --ep " << ep << ": most rows see no e4m3 flip";
    EXPECT_LT(worst, 0.1) << "at most a flip's worth";
    EXPECT_EQ(sharded->weight_bytes() >= whole->weight_bytes(), true);
  }
  // --weights-dtype fp8 on random weights quantises the whole model, then slices: it opens and runs split.
  auto quantised = open({.model_dir = dir.path(), .random_weights_seed = 5, .kv_cache_gib = 0.25,
                         .weights_dtype = WeightsDtype::FP8, .tp = 2});
  ASSERT_TRUE(quantised);
  EXPECT_EQ(quantised->logits(tokens).value().data.size(), a.data.size());
  // Off the grid: the bundled model's dense FFN (192 wide) halves to 96 columns a rank.
  auto off = Engine::open({.model_dir = kTiny, .weights_dtype = WeightsDtype::FP8, .tp = 2});
  ASSERT_FALSE(off.ok());
  EXPECT_NE(std::string(off.error().what()).find("cut its 128 x 128 scale blocks"), std::string::npos)
      << off.error().what();
}

TEST(ShardedEngine, RefusesWhatItCannotRunBeforeLoadingWeights) {
  const auto message = [](EngineOptions o) {
    auto e = Engine::open(o);
    return e.ok() ? std::string() : std::string(e.error().what());
  };
  const std::string zero = message({.model_dir = kTiny, .tp = 0});
  EXPECT_NE(zero.find("1 to 64"), std::string::npos) << zero;
  const std::string uneven = message({.model_dir = kTiny, .tp = 4});
  EXPECT_NE(uneven.find("num_attention_heads = 6 does not divide over 4 ranks"), std::string::npos) << uneven;
  const std::string ep_alone = message({.model_dir = kTiny, .ep = 2});
  EXPECT_NE(ep_alone.find("HINT"), std::string::npos) << ep_alone;
  EXPECT_FALSE(ep_alone.empty());
}

}  // namespace

namespace parallel {
namespace {

TEST(RankThreads, RunOnTheSameThreadEveryStepAndStopAtTheFirstFailure) {
  HostGroup g(3);
  RankThreads threads(g);
  std::vector<std::thread::id> first(3), second(3);
  threads.run([&](int r) { first[static_cast<size_t>(r)] = std::this_thread::get_id(); });
  std::vector<float> sums(3);
  threads.run([&](int r) {
    second[static_cast<size_t>(r)] = std::this_thread::get_id();
    float v = static_cast<float>(r + 1);
    g.all_reduce_sum(r, &v, &v, 1);
    sums[static_cast<size_t>(r)] = v;
  });
  EXPECT_EQ(first, second);
  EXPECT_EQ(sums, (std::vector<float>{6, 6, 6}));
  for (int r = 0; r < 3; ++r)
    for (int q = r + 1; q < 3; ++q) EXPECT_NE(first[static_cast<size_t>(r)], first[static_cast<size_t>(q)]);

  std::atomic<int> ran{0};
  const auto failing = [&](int r) {
    ++ran;
    if (r == 1) throw std::runtime_error("rank 1 failed");
    float v = 1;
    g.all_reduce_sum(r, &v, &v, 1);  // waits for rank 1, which left: an Error, not a hang
  };
  try {
    threads.run(failing);
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "rank 1 failed");  // the first failure, not the others' consequence of it
  }
  EXPECT_EQ(ran.load(), 3);
  EXPECT_THROW(threads.run([&](int) { ++ran; }), std::runtime_error);  // broken: refused at once
  EXPECT_EQ(ran.load(), 3);
}

TEST(HostGroup, CountsAreGatheredAsExactIntegers) {
  HostGroup g(4);
  std::vector<std::vector<int64_t>> got(4);
  const int64_t big = (int64_t{1} << 40) + 1;  // a float would round it
  run_ranks(g, [&](int r) { got[static_cast<size_t>(r)] = g.all_gather_counts(r, big + r); });
  for (const auto& v : got) EXPECT_EQ(v, (std::vector<int64_t>{big, big + 1, big + 2, big + 3}));
}

}  // namespace
}  // namespace parallel
}  // namespace mlabench
