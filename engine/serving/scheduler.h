// Scheduler: one run of requests through the KV cache, step by step (continuous batching, vLLM v1's scheduler).
// Each step it decides what the runner computes, as a StepPlan:
//   1. decode: every running sequence with exactly one token left to compute gets one row; if the pool has no
//      block for it, the newest other running sequence is pre-empted (its blocks freed, itself re-queued at the
//      front, to be recomputed later: pre-emption never corrupts a result);
//   2. prefill: running sequences with more than one token left, then waiting requests in arrival order, get
//      chunks within the step's token budget (max_step_tokens), its logit-row budget (max_logit_rows), the
//      runner's decompressed-key budget, and the free blocks; at admission a request takes the cached full blocks
//      of its prompt's prefix (prefix sharing), up to the rows whose logits it needs; a request whose next
//      uncached block another running sequence is computing waits until that block is published and shares it
//      (the choices of one question compute their common context once, chunk after chunk); where the pool is
//      partitioned (DP attention: a cache per rank), a request is placed at admission on a partition (the longest
//      prefix it can share among those within a slack of the fewest running sequences, place()), takes all its
//      blocks there, and pre-empts only sequences of its own partition;
// and after the step it applies the runner's output (StepOutput): sampled tokens, stop ids, the token callback
// (stop strings), max_new_tokens; score sums; newly full blocks published to the prefix cache; finished
// requests free their blocks. Deterministic: the same requests, pool state and outputs give the same plans.
// No CUDA here: tested in CI (tests/serving).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/serving/block_pool.h"
#include "engine/serving/limits.h"
#include "engine/serving/request.h"
#include "engine/serving/step_plan.h"

namespace mlabench::serving {

class Scheduler {
 public:
  /// Queues `requests` (see add). `prefill_key_budget`: the runner's (ModelRunner::prefill_key_budget). The
  /// pool and stats outlive the run.
  Scheduler(const ServingLimits& limits, int64_t prefill_key_budget, BlockPool& pool,
            std::span<const Request> requests, Stats& stats);
  /// Releases the blocks of sequences still running (a run that ends by an exception leaks nothing).
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  /// \brief Queues one more request (an arrival during the run) after checking it against the limits (throws
  /// Error naming it); returns its index, the index of its result.
  size_t add(const Request& r);
  /// \brief Every request finished.
  bool done() const { return waiting_.empty() && running_.empty(); }
  /// \brief The next step (never empty while !done()). Throws Error when the cache cannot hold what must run.
  StepPlan next_step();
  /// \brief Applies the runner's output of `plan` (the last plan next_step returned). now: seconds since the
  /// run started, stamped on the results.
  void complete_step(const StepPlan& plan, const StepOutput& out, const TokenCallback& on_token, double now);
  /// \brief The results, in request order (call once done()).
  std::vector<Result> take_results() { return std::move(results_); }
  /// \brief Live serving: the requests finished since the last call, in the order they finished.
  std::vector<size_t> take_finished() { return std::exchange(finished_, {}); }
  /// \brief Live serving: moves out the result of finished request `i` and frees its tokens (a long session
  /// keeps only a few bytes per finished request).
  Result take_result(size_t i);

  int64_t n_running() const { return static_cast<int64_t>(running_.size()); }
  int64_t n_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  /// \brief Cross-checks the sequences' block tables against the pool: each block a sequence holds is referenced
  /// at least as many times as sequences hold it, no sequence holds a block twice, and every held block covers
  /// a position the sequence computed or will compute this step; throws Error otherwise. For tests.
  void check_consistency() const;

 private:
  struct Seq {
    size_t req = 0;
    std::vector<int32_t> tokens;  // prompt + generated
    int64_t n_prompt = 0;
    int64_t n_cached = 0;  // tokens whose K/V is in the cache
    std::vector<int32_t> blocks;
    std::vector<uint64_t> block_hash;  // prefix hash of each full block of `tokens`
    int64_t published = 0;             // leading blocks already published
    int64_t n_generated = 0;
    uint64_t admit_order = 0;
    int64_t pending_end = 0;  // block_hash[published, pending_end) is counted in pending_ while running
    int partition = 0;        // the pool partition its blocks come from (chosen at admission)
  };
  struct Budget {
    int64_t tokens = 0, logit_rows = 0, keys = 0;
  };

  int64_t left(const Seq& s) const { return static_cast<int64_t>(s.tokens.size()) - s.n_cached; }
  bool is_running(const Seq* s) const;
  void hash_blocks(Seq& s) const;
  bool reserve(Seq& s, int64_t n);
  void release(Seq& s);
  void finish(Seq& s, const char* reason, double now);
  bool preempt_newest(const Seq* keep, int partition);
  int64_t cached_prefix_blocks(const Seq& s, int partition) const;
  void place(Seq& s, const std::vector<int64_t>& load);
  int64_t share_limit(const Seq& s) const;
  bool wait_to_share(Seq& s);
  void unpend(Seq& s, int64_t from, int64_t to);
  void admit(Seq& s);
  int64_t logit_rows_needed(const Seq& s, int64_t n) const;
  int64_t plan_chunk(Seq& s, const Budget& b);
  std::vector<Seq*> plan_decode();
  bool try_plan_step(std::vector<Seq*>& decode, std::vector<std::pair<Seq*, int64_t>>& prefill);
  StepPlan lay_out(const std::vector<Seq*>& decode, const std::vector<std::pair<Seq*, int64_t>>& prefill);
  void add_rows(StepPlan& p, std::vector<LogitRow> (&rows)[3], Seq& s, int64_t n, bool decode);

  ServingLimits limits_;
  int64_t key_budget_;
  BlockPool& pool_;
  std::deque<Request> reqs_;  // a copy: arrivals append, references stay valid
  Stats& stats_;
  std::vector<Result> results_;
  std::vector<std::unique_ptr<Seq>> seqs_;  // one per request
  std::deque<Seq*> waiting_;
  std::vector<Seq*> running_;
  std::unordered_map<uint64_t, int64_t> pending_;  // block hash -> running sequences yet to publish it
  uint64_t admit_counter_ = 0;
  std::vector<size_t> finished_;  // requests finished since take_finished
};

}  // namespace mlabench::serving
