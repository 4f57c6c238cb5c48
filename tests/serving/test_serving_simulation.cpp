// The serving core end to end on the CPU runner and the bundled model: a randomised simulation of thousands of
// steps (random arrivals, prompt lengths, shared prefixes, stop ids and stop callbacks, sampling, scoring, a pool
// too small for all) that checks the books after every step, and then that every request's result equals the
// same request run alone in a roomy cache (uninterrupted, never pre-empted, nothing shared). The runner uses the
// decompressed MLA form everywhere, whose arithmetic does not depend on chunking or batching, so "equal" means
// bit-identical: tokens, log-probabilities, finish reasons. MLABENCH_SERVING_SIM_REQUESTS scales the run.
#include <gtest/gtest.h>

#include <bit>
#include <functional>
#include <limits>

#include <cstdlib>
#include <random>
#include <set>

#include "engine/kernels/twin/twin.h"
#include "engine/model/config.h"
#include "engine/model/cpu_runner.h"
#include "engine/serving/scheduler.h"
#include "engine/serving/serving_engine.h"
#include "mlabench/engine.h"
#include "tests/test_util.h"

namespace mlabench::serving {
namespace {

struct SimRequest {
  Request request;
  int64_t arrival = 0;  // the step before which it arrives
  int stop_rule = 0;    // 0 none, 1 stop ids, 2 callback
};

bool callback_stops(int32_t tok) { return tok % 13 == 0; }

std::vector<SimRequest> make_requests(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto uni = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  std::vector<std::vector<int32_t>> prefixes;
  for (int i = 0; i < 4; ++i) {
    std::vector<int32_t> p(static_cast<size_t>(uni(16, 70)));
    for (auto& t : p) t = static_cast<int32_t>(uni(2, vocab - 1));
    prefixes.push_back(p);
  }
  std::vector<int32_t> stop_ids;
  for (int32_t t = 5; t < vocab; t += 17) stop_ids.push_back(t);
  std::vector<SimRequest> out;
  int64_t arrival = 0;
  for (int64_t i = 0; i < n; ++i) {
    SimRequest s;
    Request& r = s.request;
    if (uni(0, 3) > 0) r.tokens = prefixes[static_cast<size_t>(uni(0, 3))];
    const int64_t tail = uni(r.tokens.empty() ? 1 : 0, 40);
    for (int64_t k = 0; k < tail; ++k) r.tokens.push_back(static_cast<int32_t>(uni(2, vocab - 1)));
    if (uni(0, 4) == 0) {
      r.score_from = uni(1, static_cast<int64_t>(r.tokens.size()));  // a scoring request (no generation)
    } else {
      r.gen.max_new_tokens = uni(1, 48);
      if (uni(0, 2) == 0) r.gen = {.max_new_tokens = r.gen.max_new_tokens, .temperature = 0.9f, .top_p = 0.8f,
                                   .seed = static_cast<uint64_t>(uni(0, 1000))};
      s.stop_rule = static_cast<int>(uni(0, 2));
      if (s.stop_rule == 1) r.gen.stop_token_ids = stop_ids;
    }
    arrival += uni(0, 12);
    s.arrival = arrival;
    out.push_back(s);
  }
  return out;
}

int64_t env_or(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoll(v) : fallback;
}

struct SimSetup {
  ModelConfig config = load_config(test::default_model_dir());
  EngineOptions options{.model_dir = test::default_model_dir(), .mla_attention = MlaAttention::DECOMPRESSED};
  ServingLimits limits;
  std::unique_ptr<ModelRunner> runner;

  SimSetup(int64_t max_batch, int64_t step_tokens, int64_t block, double kv_gib) {
    options.n_threads = 1;  // the tiny model's steps are too small to pay for waking threads
    options.max_batch = max_batch;
    options.max_step_tokens = step_tokens;
    options.block_size = block;
    options.kv_cache_gib = kv_gib;
    limits = serving_limits(options, config);
    runner = make_cpu_runner(config, load_weights(config, test::default_model_dir()), options, limits);
  }
};

// The uninterrupted reference: each request alone, in a cache that holds it many times over, no prefix cache.
std::vector<Result> run_alone(const std::vector<SimRequest>& reqs) {
  SimSetup s(1, 4096, 16, 0.05);
  s.limits.prefix_sharing = false;
  ServingEngine engine(std::move(s.runner), s.limits);
  std::vector<Result> out;
  for (const SimRequest& r : reqs)
    out.push_back(engine.run({r.request}, [&](size_t, int32_t tok) { return r.stop_rule == 2 && callback_stops(tok); })
                      .at(0));
  EXPECT_EQ(engine.stats().preemptions, 0);
  return out;
}

// The books after a step: the scheduler's block tables against the pool, the plan's rows against its sequences.
void check_step(const Scheduler& sched, const BlockPool& pool, const StepPlan& plan) {
  sched.check_consistency();
  ASSERT_EQ(pool.available() + pool.n_referenced(), pool.n_blocks());
  ASSERT_EQ(pool.bytes_referenced(), static_cast<uint64_t>(pool.n_referenced()) * pool.bytes_per_block());
  int64_t rows = 0;
  std::set<int64_t> slots(plan.slots.begin(), plan.slots.end());
  ASSERT_EQ(slots.size(), plan.slots.size()) << "two rows of one step write the same cache slot";
  for (const PlannedSequence& s : plan.seqs) {
    for (int64_t i = 0; i < s.n_new; ++i) {
      const int64_t pos = s.first_position + i, slot = plan.slots[static_cast<size_t>(rows + i)];
      ASSERT_EQ(plan.positions[static_cast<size_t>(rows + i)], pos);
      ASSERT_EQ(slot / pool.block_size(), s.blocks.at(static_cast<size_t>(pos / pool.block_size())));
    }
    rows += s.n_new;
  }
  ASSERT_EQ(rows, plan.n_rows());
  ASSERT_EQ(plan.n_sample + plan.n_score + plan.n_full, static_cast<int64_t>(plan.logits.size()));
}

// Limits a user can type (or CLI11 can clamp an overlong number to: INT64_MAX) are refused with the field and value
// before they size anything.
TEST(ServingSimulation, LimitsOutOfRangeAreRefusedByName) {
  const ModelConfig config = load_config(test::default_model_dir());
  for (auto set : std::vector<std::function<void(EngineOptions&)>>{
           [](EngineOptions& o) { o.max_step_tokens = std::numeric_limits<int64_t>::max(); },
           [](EngineOptions& o) { o.max_batch = int64_t{1} << 40; },
           [](EngineOptions& o) { o.block_size = int64_t{1} << 20; },
           [](EngineOptions& o) { o.max_context = int64_t{1} << 40; },
           [](EngineOptions& o) { o.max_step_tokens = -1; }}) {
    EngineOptions o;
    set(o);
    try {
      serving_limits(o, config);
      ADD_FAILURE() << "limits accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("engine limits"), std::string::npos) << e.what();
    }
  }
}

// --block-size 0 (the default) resolves by device: 64-token blocks on CUDA for MLA and GQA alike (whole TMA boxes of
// the Hopper decode and flash prefill kernels), 16 on the CPU; a given size is kept; a negative one refused.
TEST(ServingSimulation, AutoBlockSizeFollowsTheDevice) {
  ModelConfig mla = load_config(test::default_model_dir());
  ASSERT_TRUE(mla.is_mla());
  ModelConfig gqa = mla;
  gqa.attention = AttentionKind::GQA;
  EngineOptions o;
  EXPECT_EQ(o.block_size, 0);
  EXPECT_EQ(serving_limits(o, mla).block_size, 16) << "CPU";
  o.device = Device::CUDA;
  EXPECT_EQ(serving_limits(o, mla).block_size, 64) << "MLA on CUDA";
  EXPECT_EQ(serving_limits(o, gqa).block_size, 64) << "GQA on CUDA";
  o.device = Device::CPU;
  EXPECT_EQ(serving_limits(o, gqa).block_size, 16) << "GQA on the CPU";
  o.block_size = 32;
  EXPECT_EQ(serving_limits(o, mla).block_size, 32) << "a given size is kept";
  o.block_size = -1;
  EXPECT_THROW(serving_limits(o, mla), Error);
}

// --max-step-tokens 0 (the default) resolves by device: 16384-token steps on CUDA, 4096 on the CPU; a given size is
// kept, raised to max_batch when below it (a full decode step fits); a negative one refused.
TEST(ServingSimulation, AutoStepTokensFollowTheDevice) {
  const ModelConfig c = load_config(test::default_model_dir());
  EngineOptions o;
  EXPECT_EQ(o.max_step_tokens, 0);
  o.max_batch = 8;
  EXPECT_EQ(serving_limits(o, c).max_step_tokens, 4096) << "CPU";
  o.device = Device::CUDA;
  EXPECT_EQ(serving_limits(o, c).max_step_tokens, 16384) << "CUDA";
  o.max_step_tokens = 100;
  EXPECT_EQ(serving_limits(o, c).max_step_tokens, 100) << "a given size is kept";
  o.max_step_tokens = 4;
  EXPECT_EQ(serving_limits(o, c).max_step_tokens, 8) << "at least max_batch";
  o.max_step_tokens = -1;
  EXPECT_THROW(serving_limits(o, c), Error);
}

// A graphed decode step of n sequences runs as decode_graph_bucket(n): powers of two to 8, then eight buckets an
// octave. Over every n to 65,536: at least n, padding under n / 8 past 8, monotone, never above the
// power of two the runner used to pad to (the buffers sized for bit_ceil(max_seqs) still hold every bucket), and a
// bucket is its own bucket (a padded batch replays the graph it was padded for).
TEST(ServingSimulation, DecodeGraphBucketsPadLessThanAnEighth) {
  const std::vector<std::pair<int64_t, int64_t>> known = {
      {0, 1},     {1, 1},     {3, 4},     {8, 8},     {9, 9},       {17, 18},     {129, 144},
      {256, 256}, {257, 288}, {694, 704}, {1388, 1408}, {2777, 2816}, {5555, 5632}};
  for (const auto& [n, want] : known) EXPECT_EQ(decode_graph_bucket(n), want) << n;
  int64_t last = 0;
  std::set<int64_t> buckets;
  for (int64_t n = 1; n <= 65536; ++n) {
    const int64_t b = decode_graph_bucket(n);
    ASSERT_GE(b, n);
    ASSERT_LE(b, static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(n)))) << n;
    if (n > 8) {
      ASSERT_LT(8 * (b - n), n) << n;
    }
    ASSERT_GE(b, last) << n;
    ASSERT_EQ(decode_graph_bucket(b), b) << n;
    last = b;
    buckets.insert(b);
  }
  EXPECT_EQ(buckets.size(), 4u + 8u * 13u) << "1, 2, 4, 8, then 8 an octave up to 2^16";
}

// The GPU engine's gathered prefill pools (GQA over FP8 slots): each sequence's blocks consecutive from a
// block-aligned start, in order, no two sequences sharing a block; the row's unused entries a block of its own; the
// slots within gathered_prefill_slots' bound at the limits' worst case (every sequence one key past a block).
TEST(ServingSimulation, GatheredPrefillLayoutGivesEachSequenceItsOwnBlocks) {
  const std::vector<int32_t> kv_len = {1, 64, 65, 300, 0, 128};
  const GatheredPrefill g = gathered_prefill_layout(kv_len, 64, 8);
  EXPECT_EQ(g.cu_slots, (std::vector<int32_t>{0, 64, 128, 256, 576, 576, 704}));
  ASSERT_EQ(g.tables.size(), kv_len.size() * 8);
  std::set<int32_t> used;
  for (size_t i = 0; i < kv_len.size(); ++i) {
    const int32_t blocks = (kv_len[i] + 63) / 64, first = g.cu_slots[i] / 64;
    EXPECT_EQ(g.cu_slots[i] % 64, 0) << i;
    EXPECT_EQ(g.cu_slots[i + 1] - g.cu_slots[i], blocks * 64) << i;
    for (int32_t j = 0; j < 8; ++j) {
      const int32_t b = g.tables[i * 8 + static_cast<size_t>(j)];
      if (j < blocks) {
        EXPECT_EQ(b, first + j) << i << " " << j;
        EXPECT_TRUE(used.insert(b).second) << "block " << b << " twice";
      } else {
        EXPECT_EQ(b, first) << i << " " << j;
      }
    }
  }
  EXPECT_THROW(gathered_prefill_layout(std::vector<int32_t>{513}, 64, 8), Error) << "9 blocks in a row of 8";
  const ServingLimits lim{.max_seqs = 4, .max_step_tokens = 512, .max_logit_rows = 512, .max_context = 4096,
                          .block_size = 64};
  const std::vector<int32_t> worst = {65, 65, 65, 4096 - 195};  // 4,096 keys, three of them one past a block
  EXPECT_EQ(prefill_key_budget(lim), 4096) << "the longest context, over twice the step";
  EXPECT_LE(gathered_prefill_layout(worst, 64, 64).cu_slots.back(), gathered_prefill_slots(lim));
  EXPECT_EQ(gathered_prefill_slots(lim), 4096 + 4 * 63);
}

// Full size: 160 requests, ~1,200 steps (12 s in Release, 3 min under ASan); the short mode (CI) runs 48, ~440
// steps, through the same pre-emptions, prefix sharing and stop rules.
TEST(ServingSimulation, ManyStepsUnderATinyPoolChangeNoResult) {
  const bool short_run = test::short_mode();
  const int64_t n = env_or("MLABENCH_SERVING_SIM_REQUESTS", short_run ? 48 : 160);
  // Blocks of 8 tokens, 4 layers x 64 floats per token: 8 KiB a block; 24 blocks hold 192 tokens, less than two
  // of the longest requests (110 prompt + 48 new), so the pool runs dry and pre-empts.
  SimSetup sim(5, 40, 8, 24.0 * 8 * 4 * 64 * 4 / 1073741824.0);
  const std::vector<SimRequest> reqs = make_requests(n, sim.config.vocab_size, 2026);
  BlockPool pool(sim.runner->n_blocks(), sim.limits.block_size, sim.runner->bytes_per_block());
  ASSERT_EQ(pool.n_blocks(), 24);
  Stats stats;
  Scheduler sched(sim.limits, sim.runner->prefill_key_budget(), pool, {}, stats);
  std::vector<int> rule;  // by request index, in arrival order
  auto on_token = [&](size_t req, int32_t tok) { return rule[req] == 2 && callback_stops(tok); };
  size_t arrived = 0;
  int64_t step = 0, rows = 0;
  StepOutput out;
  while (arrived < reqs.size() || !sched.done()) {
    for (; arrived < reqs.size() && (reqs[arrived].arrival <= step || sched.done()); ++arrived) {
      ASSERT_EQ(sched.add(reqs[arrived].request), arrived);
      rule.push_back(reqs[arrived].stop_rule);
    }
    const StepPlan plan = sched.next_step();
    check_step(sched, pool, plan);
    sim.runner->execute(plan, out);
    sched.complete_step(plan, out, on_token, static_cast<double>(step));
    check_step(sched, pool, StepPlan{});
    rows += plan.n_rows();
    ASSERT_EQ(stats.prefill_tokens + stats.decode_tokens, rows) << "step " << step;
    ++step;
  }
  EXPECT_EQ(pool.n_referenced(), 0) << "every finished request freed its blocks";
  std::printf("[ simulation ] %lld requests, %lld steps, %lld rows, %lld pre-emptions, %lld prefix tokens reused\n",
              static_cast<long long>(n), static_cast<long long>(step), static_cast<long long>(rows),
              static_cast<long long>(stats.preemptions), static_cast<long long>(stats.prefix_tokens_reused));
  EXPECT_GE(step, short_run ? 400 : 1000) << "the simulation should run hundreds (short mode) or thousands of steps";
  EXPECT_GT(stats.preemptions, 10) << "the pool is meant to run dry";
  EXPECT_GT(stats.prefix_tokens_reused, 0) << "shared prefixes are meant to be shared";

  const std::vector<Result> got = sched.take_results(), want = run_alone(reqs);
  ASSERT_EQ(got.size(), want.size());
  int64_t preempted = 0, sampled = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const Request& r = reqs[i].request;
    EXPECT_EQ(got[i].tokens, want[i].tokens) << "request " << i << " (pre-empted " << got[i].preemptions << "x)";
    EXPECT_EQ(got[i].finish_reason, want[i].finish_reason) << "request " << i;
    EXPECT_EQ(got[i].logprob, want[i].logprob) << "request " << i;
    EXPECT_EQ(got[i].is_greedy, want[i].is_greedy) << "request " << i;
    EXPECT_LE(static_cast<int64_t>(got[i].tokens.size()), r.gen.max_new_tokens);
    if (got[i].finish_reason == "length") {
      EXPECT_EQ(static_cast<int64_t>(got[i].tokens.size()), r.gen.max_new_tokens);
    }
    if (r.score_from >= 1) {
      EXPECT_LT(got[i].logprob, 0.0) << "request " << i << " scored nothing";
    }
    preempted += got[i].preemptions > 0 ? 1 : 0;
    sampled += r.gen.temperature > 0 ? 1 : 0;
  }
  EXPECT_GT(preempted, 3);
  EXPECT_GT(sampled, 10);
}

// The CPU runner samples with the twin of the GPU's sampling kernel: token k of a request is
// twin::sample(logits after prompt + tokens[0..k), seed, step k), whatever the batch (so `--device cpu` and
// `--device cuda` draw the same tokens from the same logits; test_gpu_engine checks the two devices agree).
TEST(ServingSimulation, TheCpuEngineSamplesWithTheKernelTwin) {
  // The decompressed form everywhere, so the decode steps' logits equal logits()'s bit for bit.
  auto engine =
      Engine::open({.model_dir = test::default_model_dir(), .mla_attention = MlaAttention::DECOMPRESSED}).value();
  const int64_t V = engine->summary().vocab_size;
  for (uint64_t seed : {1u, 7u, 42u}) {
    const std::vector<int32_t> prompt = {0, 17, 912, 4, 1500};
    const GenerateOptions o{.max_new_tokens = 16, .temperature = 0.8f, .top_p = 0.9f, .seed = seed};
    const GenerateResult g = engine->generate(prompt, o).value();
    ASSERT_EQ(g.tokens.size(), 16u);
    std::vector<int32_t> seq = prompt;
    for (size_t k = 0; k < g.tokens.size(); ++k) {
      const Logits l = engine->logits(seq).value();
      int32_t tok = -1;
      const auto step = static_cast<int64_t>(k);
      kernels::twin::sample({.logits = l.row(l.n_tokens - 1), .ld = V, .n_rows = 1, .vocab = V,
                             .temperature = &o.temperature, .top_p = &o.top_p, .seed = &o.seed, .step = &step,
                             .out = &tok});
      ASSERT_EQ(g.tokens[k], tok) << "seed " << seed << ", token " << k;
      seq.push_back(tok);
    }
    // In a batch with other requests the draws do not change.
    std::vector<GenerateRequest> batch = {{prompt, o}, {{3, 4, 5}, o}, {prompt, {.max_new_tokens = 16}}};
    EXPECT_EQ(engine->generate_batch(batch).value().at(0).tokens, g.tokens);
  }
}

}  // namespace
}  // namespace mlabench::serving
