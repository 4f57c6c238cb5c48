// The Scheduler's decisions (engine/serving/scheduler.h), step by step, without a model: the outputs a runner
// would return are made up here as functions of (request, position) only, as a real model's are of the tokens,
// so a correct scheduler must give the same results whatever the batching, chunking or pre-emption. The model
// itself runs through these plans in test_serving_simulation.cpp (the CPU runner on the bundled model).
#include <gtest/gtest.h>

#include <functional>
#include <numeric>

#include "engine/serving/scheduler.h"
#include "tests/test_util.h"

namespace mlabench::serving {
namespace {

constexpr int64_t kVocab = 8;

ServingLimits limits(int64_t max_seqs, int64_t step_tokens, int64_t logit_rows, int64_t block = 16,
                     bool sharing = true) {
  return {.max_seqs = max_seqs, .max_step_tokens = step_tokens, .max_logit_rows = logit_rows, .max_context = 4096,
          .block_size = block, .prefix_sharing = sharing, .vocab_size = kVocab};
}

std::vector<int32_t> iota_tokens(int64_t n, int32_t from) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), from);
  return v;
}

// A scheduler with its pool, fed made-up outputs: the token drawn for request r at generation step k is
// 1000 + 10 r + k, a scored row at position p adds -(p + 1) / 1000 and is greedy iff p is even, and a FULL row at
// position p is filled with p.
struct Driver {
  Driver(const ServingLimits& l, int64_t n_blocks, const std::vector<Request>& reqs, int64_t key_budget = 0,
         int partitions = 1)
      : pool(n_blocks, l.block_size, 1024, partitions), sched(l, key_budget, pool, reqs, stats) {}

  StepPlan step(const TokenCallback& cb = {}) {
    StepPlan p = sched.next_step();
    sched.check_consistency();
    for (const PlannedSequence& ps : p.seqs)
      for (int32_t b : ps.blocks) EXPECT_EQ(pool.partition_of(b), ps.partition) << "request " << ps.request;
    StepOutput out;
    for (const LogitRow& r : p.logits) {
      const size_t req = p.seqs[static_cast<size_t>(r.seq)].request;
      if (r.use == RowUse::SAMPLE) out.sampled.push_back(static_cast<int32_t>(1000 + 10 * req + r.sampling.step));
      if (r.use == RowUse::SCORE) {
        out.logprob.push_back(-static_cast<double>(r.position + 1) / 1000.0);
        out.is_greedy.push_back(r.position % 2 == 0);
      }
      if (r.use == RowUse::FULL) std::fill(r.dst, r.dst + kVocab, static_cast<float>(r.position));
    }
    sched.complete_step(p, out, cb, static_cast<double>(++n_steps));
    sched.check_consistency();
    return p;
  }
  std::vector<StepPlan> run(const TokenCallback& cb = {}) {
    std::vector<StepPlan> plans;
    while (!sched.done()) plans.push_back(step(cb));
    return plans;
  }

  BlockPool pool;
  Stats stats;
  Scheduler sched;
  int64_t n_steps = 0;
};

Request gen_request(std::vector<int32_t> prompt, int64_t n_new) {
  return {.tokens = std::move(prompt), .gen = {.max_new_tokens = n_new}};
}

TEST(Scheduler, LongPromptsArePrefilledInChunksOfTheStepBudget) {
  Driver d(limits(4, 32, 64), 64, {gen_request(iota_tokens(100, 1), 3)});
  const std::vector<StepPlan> plans = d.run();
  ASSERT_EQ(plans.size(), 6u) << "chunks of 32, 32, 32 and 4 tokens, then two decode steps";
  const std::vector<int64_t> firsts = {0, 32, 64, 96, 100, 101}, sizes = {32, 32, 32, 4, 1, 1};
  for (size_t i = 0; i < plans.size(); ++i) {
    ASSERT_EQ(plans[i].seqs.size(), 1u);
    const PlannedSequence& s = plans[i].seqs[0];
    EXPECT_EQ(s.first_position, firsts[i]) << "step " << i;
    EXPECT_EQ(s.n_new, sizes[i]) << "step " << i;
    EXPECT_EQ(s.decode, i >= 4) << "step " << i;
    EXPECT_EQ(static_cast<int64_t>(s.blocks.size()), (s.first_position + s.n_new + 15) / 16) << "blocks cover the step";
    for (int64_t r = 0; r < s.n_new; ++r) {
      const int64_t pos = s.first_position + r;
      EXPECT_EQ(plans[i].positions[static_cast<size_t>(r)], pos);
      EXPECT_EQ(plans[i].slots[static_cast<size_t>(r)], s.blocks[static_cast<size_t>(pos / 16)] * 16 + pos % 16);
    }
  }
  // Only the last position of the prompt and each decode row ask for logits.
  EXPECT_TRUE(plans[0].logits.empty());
  ASSERT_EQ(plans[3].logits.size(), 1u);
  EXPECT_EQ(plans[3].logits[0].use, RowUse::SAMPLE);
  EXPECT_EQ(plans[3].logits[0].position, 99);
  EXPECT_EQ(plans[3].tokens.back(), 100);
  EXPECT_EQ(plans[4].tokens[0], 1000) << "decode feeds back the sampled token";
  const std::vector<Result> res = d.sched.take_results();
  EXPECT_EQ(res[0].tokens, (std::vector<int32_t>{1000, 1001, 1002}));
  EXPECT_EQ(res[0].finish_reason, "length");
  EXPECT_EQ(d.stats.prefill_tokens, 100);
  EXPECT_EQ(d.stats.decode_tokens, 2);
  EXPECT_EQ(d.pool.n_referenced(), 0) << "a finished request frees its blocks";
}

TEST(Scheduler, DecodeBatchesTheRunningSequencesUpToMaxSeqs) {
  std::vector<Request> reqs;
  for (int i = 0; i < 5; ++i) reqs.push_back(gen_request(iota_tokens(5 + i, 10 * i), 4 + i));
  Driver d(limits(3, 64, 64), 64, reqs);
  const std::vector<StepPlan> plans = d.run();
  EXPECT_EQ(d.stats.max_running, 3);
  for (const StepPlan& p : plans) {
    EXPECT_LE(p.n_seqs(), 3);
    EXPECT_EQ(p.n_sample, p.n_seqs()) << "every sequence here samples once per step";
    for (int32_t i = 0; i < p.n_decode; ++i) EXPECT_EQ(p.seqs[static_cast<size_t>(i)].n_new, 1);
  }
  EXPECT_EQ(plans[1].n_decode, 3) << "the three admitted requests decode together";
  const std::vector<Result> res = d.sched.take_results();
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_EQ(res[i].tokens.size(), static_cast<size_t>(4 + i));
    for (size_t k = 0; k < res[i].tokens.size(); ++k) EXPECT_EQ(res[i].tokens[k], static_cast<int32_t>(1000 + 10 * i + k));
  }
  EXPECT_EQ(d.stats.decode_tokens + d.stats.prefill_tokens,
            std::accumulate(plans.begin(), plans.end(), int64_t{0}, [](int64_t a, const StepPlan& p) { return a + p.n_rows(); }));
}

TEST(Scheduler, TheLogitRowBudgetCapsScoredChunksAndSumsEachRowOnce) {
  Request r{.tokens = iota_tokens(60, 1), .score_from = 20};
  Driver d(limits(4, 256, 8), 64, {r});
  const std::vector<StepPlan> plans = d.run();
  double want = 0;
  for (int64_t p = 19; p < 59; ++p) want -= static_cast<double>(p + 1) / 1000.0;
  for (const StepPlan& p : plans) {
    EXPECT_LE(p.n_score, 8);
    for (const LogitRow& lr : p.logits) {
      EXPECT_EQ(lr.use, RowUse::SCORE);
      EXPECT_EQ(lr.target, r.tokens[static_cast<size_t>(lr.position + 1)]);
    }
  }
  EXPECT_GE(plans.size(), 5u);
  const std::vector<Result> res = d.sched.take_results();
  EXPECT_DOUBLE_EQ(res[0].logprob, want);
  EXPECT_FALSE(res[0].is_greedy) << "odd positions are not greedy";
  EXPECT_TRUE(res[0].tokens.empty());
}

TEST(Scheduler, PrefixSharingReusesFullBlocksAndWaitsForAPendingFirstBlock) {
  const std::vector<int32_t> prefix = iota_tokens(40, 3);
  std::vector<Request> reqs;
  for (int32_t tail : {7, 8}) {
    Request r{.tokens = prefix, .score_from = 40};
    r.tokens.push_back(tail);
    reqs.push_back(r);
  }
  Driver d(limits(4, 256, 64), 64, reqs);
  const StepPlan first = d.step();
  ASSERT_EQ(first.seqs.size(), 1u) << "the second request waits for the first block the first one computes";
  const StepPlan second = d.step();
  ASSERT_EQ(second.seqs.size(), 1u);
  EXPECT_EQ(second.seqs[0].request, 1u);
  EXPECT_EQ(second.seqs[0].first_position, 32) << "two full blocks of the context come from the cache";
  EXPECT_EQ(std::vector<int32_t>(second.seqs[0].blocks.begin(), second.seqs[0].blocks.begin() + 2),
            std::vector<int32_t>(first.seqs[0].blocks.begin(), first.seqs[0].blocks.begin() + 2));
  EXPECT_TRUE(d.sched.done());
  EXPECT_EQ(d.stats.prefix_tokens_reused, 32);
  const std::vector<Result> res = d.sched.take_results();
  EXPECT_EQ(res[1].prefix_tokens_reused, 32);
  EXPECT_DOUBLE_EQ(res[0].logprob, -40.0 / 1000.0);
  EXPECT_DOUBLE_EQ(res[1].logprob, res[0].logprob);
  EXPECT_EQ(d.pool.n_cached(), 2) << "the shared blocks stay cached for later runs";

  // Without sharing both compute everything in the first step.
  Driver plain(limits(4, 256, 64, 16, false), 64, reqs);
  EXPECT_EQ(plain.step().seqs.size(), 2u);
  EXPECT_EQ(plain.stats.prefix_tokens_reused, 0);
}

// The shape of a few-shot multiple-choice run: every question starts with the same header (already cached when
// its choices arrive) and then a context of its own, which its choices must compute once, not once each.
TEST(Scheduler, ChoicesWaitForTheirCommonContextPastACachedHeaderChunkByChunk) {
  const std::vector<int32_t> header = iota_tokens(16, 3);
  auto question = [&](int32_t from, int32_t choice) {
    Request r{.tokens = header, .score_from = 56};
    const std::vector<int32_t> ctx = iota_tokens(40, from);
    r.tokens.insert(r.tokens.end(), ctx.begin(), ctx.end());
    r.tokens.push_back(choice);
    return r;
  };
  // Question A (one choice) caches the header; question B's three choices share header and context.
  const std::vector<Request> reqs{question(100, 7), question(200, 7), question(200, 8), question(200, 9)};
  // A step budget that holds everything, and one that cuts the prompts into chunks of 24 tokens.
  for (const int64_t step_tokens : {256, 24}) {
    SCOPED_TRACE(step_tokens);
    Driver d(limits(8, step_tokens, 64), 64, reqs);
    const std::vector<StepPlan> plans = d.run();
    // A runs alone while its header block is pending; B's first choice then leads; the other choices follow once
    // the last full block of the context is published, computing 57 - 48 = 9 tokens each.
    ASSERT_GE(plans.size(), 2u);
    for (size_t i = 0; i + 1 < plans.size(); ++i)
      for (const PlannedSequence& s : plans[i].seqs)
        EXPECT_LE(s.request, 1u) << "step " << i << ": choice " << s.request << " ran before B's context was cached";
    EXPECT_EQ(d.stats.prefill_tokens, 57 + 57 - 16 + 9 + 9) << "B's context is computed once";
    EXPECT_EQ(d.stats.prefix_tokens_reused, 16 + 48 + 48);
    const std::vector<Result> res = d.sched.take_results();
    for (const Result& r : res) EXPECT_DOUBLE_EQ(r.logprob, -56.0 / 1000.0);
  }
}

TEST(Scheduler, ScoredRowsAreNeverTakenFromTheCache) {
  const std::vector<int32_t> ctx = iota_tokens(48, 2);
  Request whole{.tokens = ctx, .score_from = 1};  // every position scored: nothing may come from the cache
  Driver d(limits(4, 256, 64), 64, {gen_request(ctx, 1), whole});
  d.run();
  const std::vector<Result> res = d.sched.take_results();
  EXPECT_EQ(res[1].prefix_tokens_reused, 0);
  double want = 0;
  for (int64_t p = 0; p < 47; ++p) want -= static_cast<double>(p + 1) / 1000.0;
  EXPECT_DOUBLE_EQ(res[1].logprob, want);
}

TEST(Scheduler, PreemptionFreesTheNewestAndChangesNoResult) {
  std::vector<Request> reqs;
  for (int i = 0; i < 4; ++i) reqs.push_back(gen_request(iota_tokens(20 + 9 * i, 50 * i), 30));
  Request scored{.tokens = iota_tokens(70, 7), .score_from = 10};
  reqs.push_back(scored);
  Driver roomy(limits(8, 16, 64, 4), 400, reqs);
  roomy.run();
  Driver tight(limits(8, 16, 64, 4), 24, reqs);  // 96 token slots for five requests of 50..77 tokens
  tight.run();
  EXPECT_GT(tight.stats.preemptions, 0);
  EXPECT_EQ(roomy.stats.preemptions, 0);
  const std::vector<Result> a = roomy.sched.take_results(), b = tight.sched.take_results();
  int64_t preempted = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(a[i].tokens, b[i].tokens) << "request " << i;
    EXPECT_DOUBLE_EQ(a[i].logprob, b[i].logprob) << "request " << i << ": a recomputed span is summed once";
    EXPECT_EQ(a[i].is_greedy, b[i].is_greedy);
    preempted += b[i].preemptions;
  }
  EXPECT_EQ(preempted, tight.stats.preemptions);
  EXPECT_EQ(tight.pool.n_referenced(), 0);
}

TEST(Scheduler, StopIdsStopStringsAndLengthsFinishRequests) {
  std::vector<Request> reqs = {gen_request({1, 2, 3}, 10), gen_request({4, 5}, 10), gen_request({6}, 4),
                               Request{.tokens = {7, 8, 9}, .score_from = 2}};
  reqs[0].gen.stop_token_ids = {1003};  // request 0 draws 1000, 1001, ...
  Driver d(limits(8, 64, 64), 64, reqs);
  d.run([](size_t req, int32_t tok) { return req == 1 && tok == 1012; });
  const std::vector<Result> res = d.sched.take_results();
  EXPECT_EQ(res[0].finish_reason, "stop_token");
  EXPECT_EQ(res[0].tokens, (std::vector<int32_t>{1000, 1001, 1002, 1003})) << "the stop id is included";
  EXPECT_EQ(res[1].finish_reason, "stop_string");
  EXPECT_EQ(res[1].tokens.size(), 3u);
  EXPECT_EQ(res[2].finish_reason, "length");
  EXPECT_EQ(res[2].tokens.size(), 4u);
  EXPECT_EQ(res[3].finish_reason, "length");
  EXPECT_TRUE(res[3].tokens.empty());
  EXPECT_DOUBLE_EQ(res[3].logprob, -2.0 / 1000.0);
  EXPECT_EQ(res[2].token_seconds.size(), 4u);
  EXPECT_LE(res[2].first_token_seconds, res[2].token_seconds.back());
}

TEST(Scheduler, FullLogitRowsLandAtTheirPositions) {
  Driver d(limits(4, 16, 6), 64, {Request{.tokens = iota_tokens(40, 1), .all_logits = true}});
  const std::vector<StepPlan> plans = d.run();
  for (const StepPlan& p : plans) EXPECT_LE(p.n_full, 6);
  const std::vector<Result> res = d.sched.take_results();
  ASSERT_EQ(res[0].logits.size(), 40u * kVocab);
  for (size_t pos = 0; pos < 40; ++pos)
    for (int64_t v = 0; v < kVocab; ++v) ASSERT_EQ(res[0].logits[pos * kVocab + v], static_cast<float>(pos));
}

TEST(Scheduler, TheSameInputsGiveTheSamePlans) {
  std::vector<Request> reqs;
  for (int i = 0; i < 12; ++i) reqs.push_back(gen_request(iota_tokens(5 + 17 * i % 60, i % 3), 3 + i % 7));
  auto trace = [&] {
    Driver d(limits(4, 32, 16, 8), 40, reqs);
    std::vector<std::vector<int64_t>> t;
    for (const StepPlan& p : d.run()) {
      std::vector<int64_t> row;
      for (const PlannedSequence& s : p.seqs) row.insert(row.end(), {static_cast<int64_t>(s.request), s.first_position, s.n_new});
      row.insert(row.end(), p.slots.begin(), p.slots.end());
      t.push_back(row);
    }
    return t;
  };
  EXPECT_EQ(trace(), trace());
}

// DP attention's pool: a cache a rank. Sequences spread over the ranks, take every block from their own, pre-empt
// only their own rank's sequences, and share a prefix only within a rank; the results are those of one cache.
TEST(Scheduler, PartitionedPoolsPlaceEachSequenceOnOneRank) {
  std::vector<Request> reqs;
  for (int i = 0; i < 8; ++i) reqs.push_back(gen_request(iota_tokens(10 + 2 * i, 40 * i), 8));  // 5 to 8 blocks
  Driver one(limits(8, 256, 64, 4), 512, reqs);
  one.run();
  Driver four(limits(8, 256, 64, 4), 512, reqs, 0, 4);
  const StepPlan first = four.step();
  ASSERT_EQ(first.seqs.size(), 8u);
  std::vector<int> per(4, 0);
  for (const PlannedSequence& ps : first.seqs) ++per[static_cast<size_t>(ps.partition)];
  EXPECT_EQ(per, (std::vector<int>{2, 2, 2, 2})) << "eight sequences, two a rank";
  four.run();
  // Tight: 4 ranks of 10 blocks of 4 tokens; each sequence needs up to 8 blocks, so a rank runs one at a time
  // and pre-empts within itself (the same total cache, 40 blocks, would run several at once unpartitioned).
  Driver tight(limits(8, 256, 64, 4), 40, reqs, 0, 4);
  tight.run();
  EXPECT_GT(tight.stats.preemptions, 0);
  const std::vector<Result> a = one.sched.take_results(), b = four.sched.take_results(), c = tight.sched.take_results();
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(a[i].tokens, b[i].tokens) << "request " << i;
    EXPECT_EQ(a[i].tokens, c[i].tokens) << "request " << i;
  }
  EXPECT_EQ(tight.pool.n_referenced(), 0);
  // Pre-emption frees a sequence of the rank that is short, never a newer one of another rank (whose blocks could
  // not help): ranks of 6 blocks of 4 tokens; requests 0 and 2 (rank 0) grow to 4 blocks each, 1 and 3 (rank 1) to
  // 3 each, and 3, the newest, is still running when rank 0 runs out.
  const std::vector<Request> grow{gen_request(iota_tokens(4, 10), 12), gen_request(iota_tokens(1, 20), 11),
                                  gen_request(iota_tokens(4, 30), 12), gen_request(iota_tokens(1, 40), 11)};
  Driver ranks(limits(8, 256, 64, 4), 12, grow, 0, 2);
  const StepPlan start = ranks.step();
  ASSERT_EQ(start.seqs.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(start.seqs[i].partition, static_cast<int32_t>(i % 2)) << "request " << i;
  ranks.run();
  const std::vector<Result> g = ranks.sched.take_results();
  EXPECT_GE(g[2].preemptions, 1) << "rank 0's newest gives way";
  EXPECT_EQ(g[1].preemptions + g[3].preemptions, 0) << "rank 1 had room: none of its sequences is pre-empted";
  // A request longer than one rank's cache is refused even though all ranks together could hold it.
  BlockPool pool(16, 4, 8, 2);
  Stats stats;
  test::expect_error_with(
      [&] { Scheduler s(limits(4, 256, 64, 4), 0, pool, std::vector<Request>{gen_request(iota_tokens(30, 0), 4)}, stats); },
      {"needs 9 KV-cache blocks", "the cache holds 8 on each rank"});
}

TEST(Scheduler, PartitionedPoolsSharePrefixesWithinARankAndStayBalanced) {
  const std::vector<int32_t> prefix = iota_tokens(40, 3);
  std::vector<Request> reqs;
  for (int32_t tail : {7, 8}) {
    Request r{.tokens = prefix, .score_from = 40};
    r.tokens.push_back(tail);
    reqs.push_back(r);
  }
  reqs.push_back(gen_request(iota_tokens(30, 500), 2));  // another prefix: goes to the idle rank
  Driver d(limits(4, 256, 64), 64, reqs, 0, 2);
  const StepPlan first = d.step();
  ASSERT_EQ(first.seqs.size(), 2u) << "the second request waits for the first one's block on its rank";
  EXPECT_EQ(first.seqs[0].request, 0u);
  EXPECT_EQ(first.seqs[1].request, 2u);
  EXPECT_NE(first.seqs[0].partition, first.seqs[1].partition);
  d.run();
  EXPECT_EQ(d.stats.prefix_tokens_reused, 32) << "two full blocks of the shared context, on request 0's rank";
  const std::vector<Result> res = d.sched.take_results();
  EXPECT_EQ(res[1].prefix_tokens_reused, 32);
  EXPECT_DOUBLE_EQ(res[1].logprob, res[0].logprob);
  // A hundred requests with one common header (a few-shot prompt) still spread over the ranks: the prefix only
  // wins among ranks within the slack of the least loaded.
  std::vector<Request> shots;
  for (int i = 0; i < 100; ++i) {
    Request r = gen_request(prefix, 3);
    r.tokens.push_back(1000 + i);
    shots.push_back(r);
  }
  Driver many(limits(16, 4096, 64), 512, shots, 0, 4);
  std::vector<int64_t> most(4, 0);
  while (!many.sched.done()) {
    const StepPlan p = many.step();
    std::vector<int64_t> per(4, 0);
    for (const PlannedSequence& ps : p.seqs) ++per[static_cast<size_t>(ps.partition)];
    for (size_t r = 0; r < 4; ++r) most[r] = std::max(most[r], per[r]);
  }
  for (size_t r = 0; r < 4; ++r) EXPECT_GE(most[r], 3) << "rank " << r << " stayed nearly idle";
  EXPECT_GE(many.stats.prefix_tokens_reused, 96 * 32) << "every rank computes the header once";
}

TEST(Scheduler, RequestsThatCannotRunAreRefusedWithTheReason) {
  BlockPool pool(4, 16, 8);
  Stats stats;
  test::expect_error_with([&] { Scheduler s(limits(4, 64, 64), 0, pool, std::vector<Request>{Request{}}, stats); },
                          {"request 0 has no tokens"});
  test::expect_error_with(
      [&] { Scheduler s(limits(4, 64, 64), 0, pool, std::vector<Request>{gen_request(iota_tokens(4090, 0), 10)}, stats); },
      {"4100 positions", "--max-context"});
  // Four blocks of 16 tokens cannot hold a 100-token prompt.
  test::expect_error_with(
      [&] { Scheduler s(limits(4, 256, 64), 0, pool, std::vector<Request>{gen_request(iota_tokens(100, 0), 1)}, stats); },
      {"needs 7 KV-cache blocks", "the cache holds 4", "--kv-cache-gib"});
  // The MLA key budget keeps a long prompt's chunks under it (decompressed keys = cached + new tokens).
  BlockPool big(64, 16, 8);
  Scheduler k(limits(4, 256, 64), 100, big, std::vector<Request>{gen_request(iota_tokens(150, 0), 1)}, stats);
  const StepPlan p = k.next_step();
  EXPECT_EQ(p.seqs[0].n_new, 100);
}

}  // namespace
}  // namespace mlabench::serving
