#include "engine/serving/scheduler.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <tuple>

#include "core/check.h"

namespace mlabench::serving {

Scheduler::Scheduler(const ServingLimits& limits, int64_t prefill_key_budget, BlockPool& pool,
                     std::span<const Request> requests, Stats& stats)
    : limits_(limits), key_budget_(prefill_key_budget), pool_(pool), stats_(stats) {
  MLABENCH_CHECK(pool.block_size() == limits.block_size, "the block pool has blocks of {} tokens, the limits say {}",
                 pool.block_size(), limits.block_size);
  for (const Request& r : requests) add(r);
}

size_t Scheduler::add(const Request& r) {
  const size_t i = reqs_.size();
  MLABENCH_CHECK(!r.tokens.empty(), "request {} has no tokens", i);
  const int64_t total = static_cast<int64_t>(r.tokens.size()) + r.gen.max_new_tokens;
  MLABENCH_CHECK(total <= limits_.max_context,
                 "request {} needs {} positions ({} prompt + {} new) but the engine was set up for {}. HINT: "
                 "raise --max-context (up to the model's max_position_embeddings)",
                 i, total, r.tokens.size(), r.gen.max_new_tokens, limits_.max_context);
  const int64_t blocks = (total + limits_.block_size - 1) / limits_.block_size;
  MLABENCH_CHECK(blocks <= pool_.blocks_per_partition(),
                 "request {} needs {} KV-cache blocks of {} tokens for its {} positions but the cache holds {}{}. "
                 "HINT: raise --kv-cache-gib or shorten the request",
                 i, blocks, limits_.block_size, total, pool_.blocks_per_partition(),
                 pool_.n_partitions() > 1 ? " on each rank (a sequence's cache lives on one rank)" : "");
  MLABENCH_CHECK(!r.all_logits || static_cast<int64_t>(r.tokens.size()) <= limits_.max_logit_rows * 64,
                 "request {} asks for {} rows of logits; the limit is {}", i, r.tokens.size(),
                 limits_.max_logit_rows * 64);
  reqs_.push_back(r);
  results_.emplace_back();
  auto s = std::make_unique<Seq>();
  s->req = i;
  s->tokens = r.tokens;
  s->n_prompt = static_cast<int64_t>(r.tokens.size());
  if (r.all_logits) results_[i].logits.resize(r.tokens.size() * static_cast<size_t>(limits_.vocab_size));
  waiting_.push_back(s.get());
  seqs_.push_back(std::move(s));
  return i;
}

Scheduler::~Scheduler() {
  for (Seq* s : running_) release(*s);
}

bool Scheduler::is_running(const Seq* s) const {
  return std::find(running_.begin(), running_.end(), s) != running_.end();
}

void Scheduler::hash_blocks(Seq& s) const {
  const int64_t bs = limits_.block_size;
  const auto full = static_cast<int64_t>(s.tokens.size()) / bs;
  uint64_t h = s.block_hash.empty() ? BlockPool::root_hash(s.partition) : s.block_hash.back();
  for (auto b = static_cast<int64_t>(s.block_hash.size()); b < full; ++b) {
    h = BlockPool::chain_hash(h, std::span(s.tokens).subspan(static_cast<size_t>(b * bs), static_cast<size_t>(bs)));
    s.block_hash.push_back(h);
  }
}

// Blocks so that positions [n_cached, n_cached + n) have slots; false (nothing allocated) if the pool is short.
bool Scheduler::reserve(Seq& s, int64_t n) {
  const int64_t bs = limits_.block_size;
  const int64_t need = (s.n_cached + n + bs - 1) / bs - static_cast<int64_t>(s.blocks.size());
  if (need > pool_.available(s.partition)) return false;
  for (int64_t i = 0; i < need; ++i) s.blocks.push_back(pool_.allocate(s.partition));
  return true;
}

void Scheduler::release(Seq& s) {
  for (int32_t b : s.blocks) pool_.release(b);
  s.blocks.clear();
  s.n_cached = 0;
  unpend(s, s.published, s.pending_end);
  s.published = 0;
  s.pending_end = 0;
}

// Uncounts block_hash[from, to) of s in pending_.
void Scheduler::unpend(Seq& s, int64_t from, int64_t to) {
  for (int64_t b = from; b < to; ++b) {
    auto it = pending_.find(s.block_hash[static_cast<size_t>(b)]);
    MLABENCH_ICHECK(it != pending_.end(), "request {}: block {} is not counted as pending", s.req, b);
    if (--it->second == 0) pending_.erase(it);
  }
}

void Scheduler::finish(Seq& s, const char* reason, double now) {
  Result& r = results_[s.req];
  r.finish_reason = reason;
  r.done_seconds = now;
  release(s);
  running_.erase(std::find(running_.begin(), running_.end(), &s));
  finished_.push_back(s.req);
}

Result Scheduler::take_result(size_t i) {
  MLABENCH_ICHECK(i < seqs_.size() && !is_running(seqs_[i].get()), "take_result({}) of a request still running", i);
  Seq& s = *seqs_[i];
  s.tokens = {};
  s.block_hash = {};
  reqs_[i].tokens = {};
  return std::exchange(results_[i], Result{});
}

// Frees the newest running sequence other than `keep` (of `partition`, or of any when it is -1: only a sequence of
// the same partition frees blocks another can use) and queues it first: it is recomputed from its tokens (prompt and
// what it generated so far) when there is room again. Its score sums restart with it.
bool Scheduler::preempt_newest(const Seq* keep, int partition) {
  Seq* victim = nullptr;
  for (Seq* s : running_)
    if (s != keep && (partition < 0 || s->partition == partition) &&
        (!victim || s->admit_order > victim->admit_order))
      victim = s;
  if (!victim) return false;
  release(*victim);
  running_.erase(std::find(running_.begin(), running_.end(), victim));
  waiting_.push_front(victim);
  Result& r = results_[victim->req];
  r.logprob = 0.0;
  r.is_greedy = true;
  ++r.preemptions;
  ++stats_.preemptions;
  return true;
}

// Tokens a request may take from the prefix cache: all but the rows whose logits it needs.
int64_t Scheduler::share_limit(const Seq& s) const {
  const Request& r = reqs_[s.req];
  if (!limits_.prefix_sharing || r.all_logits) return 0;
  int64_t limit = static_cast<int64_t>(s.tokens.size()) - 1;
  if (r.score_from >= 1) limit = std::min(limit, r.score_from - 1);
  return limit;
}

// True when the first block s would compute itself (after the cached prefix it may share) is a block another
// running sequence is computing: s then waits for it to be published, and shares it.
bool Scheduler::wait_to_share(Seq& s) {
  const int64_t bs = limits_.block_size;
  hash_blocks(s);
  const int64_t limit = share_limit(s);
  int64_t b = 0;
  while ((b + 1) * bs <= limit && pool_.cached(s.block_hash[static_cast<size_t>(b)])) ++b;
  return (b + 1) * bs <= limit && pending_.count(s.block_hash[static_cast<size_t>(b)]) != 0;
}

// Leading full blocks of s's shareable prefix that `partition` has cached or is computing.
int64_t Scheduler::cached_prefix_blocks(const Seq& s, int partition) const {
  const int64_t bs = limits_.block_size;
  const int64_t limit = share_limit(s);
  uint64_t h = BlockPool::root_hash(partition);
  int64_t b = 0;
  for (; (b + 1) * bs <= limit; ++b) {
    h = BlockPool::chain_hash(h, std::span(s.tokens).subspan(static_cast<size_t>(b * bs), static_cast<size_t>(bs)));
    if (!pool_.cached(h) && pending_.count(h) == 0) break;
  }
  return b;
}

// Chooses the partition of a waiting sequence (it holds no blocks, so it may move). Among the partitions whose
// running sequences are within `slack` of the fewest (DP attention pads every rank's step to the busiest rank's),
// the one with the longest prefix it can share (cached, or being computed: it then waits for it, as the choices of a
// question do); then the fewest running; then the most available blocks; then the lowest index. Its prefix hashes
// are chained from that partition's root.
void Scheduler::place(Seq& s, const std::vector<int64_t>& load) {
  const int n = pool_.n_partitions();
  if (n == 1) return;
  const int64_t least = *std::min_element(load.begin(), load.end());
  const int64_t slack = std::max<int64_t>(1, limits_.max_seqs / (8 * n));
  int best = -1;
  int64_t best_prefix = -1;
  for (int p = 0; p < n; ++p) {
    const int64_t lp = load[static_cast<size_t>(p)];
    if (lp > least + slack) continue;
    const int64_t prefix = cached_prefix_blocks(s, p);
    if (best >= 0) {
      const int64_t lb = load[static_cast<size_t>(best)];
      const auto rank = [&](int64_t pre, int64_t l, int64_t avail) { return std::make_tuple(pre, -l, avail); };
      if (rank(prefix, lp, pool_.available(p)) <= rank(best_prefix, lb, pool_.available(best))) continue;
    }
    best = p;
    best_prefix = prefix;
  }
  if (best != s.partition) {
    s.partition = best;
    s.block_hash.clear();
  }
}

void Scheduler::admit(Seq& s) {
  const int64_t bs = limits_.block_size;
  hash_blocks(s);
  const int64_t limit = share_limit(s);
  if (limit >= bs)
    for (int64_t b = 0; (b + 1) * bs <= limit; ++b) {
      const int32_t blk = pool_.lookup(s.block_hash[static_cast<size_t>(b)]);
      if (blk < 0) break;
      MLABENCH_ICHECK(pool_.partition_of(blk) == s.partition, "request {} of partition {} found its prefix block {} in "
                      "partition {}", s.req, s.partition, blk, pool_.partition_of(blk));
      s.blocks.push_back(blk);
      s.n_cached += bs;
      s.published = b + 1;
    }
  // The full blocks it computes itself are pending until published, so that requests with the same prefix wait.
  s.pending_end = static_cast<int64_t>(s.block_hash.size());
  for (int64_t b = s.published; b < s.pending_end; ++b) ++pending_[s.block_hash[static_cast<size_t>(b)]];
  s.admit_order = admit_counter_++;
  running_.push_back(&s);
}

// Rows of positions [n_cached, n_cached + n) whose logits the request needs.
int64_t Scheduler::logit_rows_needed(const Seq& s, int64_t n) const {
  const Request& r = reqs_[s.req];
  const int64_t lo = s.n_cached, hi = s.n_cached + n, size = static_cast<int64_t>(s.tokens.size());
  int64_t need = 0;
  if (r.all_logits)
    need = n;
  else if (r.score_from >= 1)
    need = std::max<int64_t>(0, std::min(hi, size - 1) - std::max(lo, r.score_from - 1));
  if (hi == size && r.gen.max_new_tokens > s.n_generated) ++need;
  return need;
}

// The longest chunk of s's remaining tokens within the step's budgets and the free blocks (its blocks are
// reserved); 0 when none fits.
int64_t Scheduler::plan_chunk(Seq& s, const Budget& b) {
  const int64_t bs = limits_.block_size;
  int64_t n = std::min(left(s), b.tokens);
  if (key_budget_ > 0) n = std::min(n, key_budget_ - b.keys - s.n_cached);  // decompressed MLA keys
  while (n > 0 && logit_rows_needed(s, n) > b.logit_rows) n = std::max<int64_t>(0, n - std::max<int64_t>(1, n / 4));
  if (n <= 0) return 0;
  while (n > 0 && !reserve(s, n)) n = n > bs ? n - bs : 0;
  return std::max<int64_t>(n, 0);
}

// Decode rows first (one token each); a full cache pre-empts the newest other sequence.
std::vector<Scheduler::Seq*> Scheduler::plan_decode() {
  std::sort(running_.begin(), running_.end(), [](Seq* a, Seq* b) { return a->admit_order < b->admit_order; });
  std::vector<Seq*> decode;
  for (size_t i = 0; i < running_.size(); ++i) {
    Seq* s = running_[i];
    if (left(*s) != 1) continue;
    while (!reserve(*s, 1))
      if (!preempt_newest(s, s->partition))
        MLABENCH_FAIL("the KV cache ({} blocks of {} tokens{}) cannot hold one sequence of {} tokens. HINT: raise "
                      "--kv-cache-gib or lower --max-context",
                      pool_.blocks_per_partition(), limits_.block_size,
                      pool_.n_partitions() > 1 ? fmt::format(" on each of {} ranks", pool_.n_partitions()) : "",
                      s->tokens.size());
    decode.push_back(s);
  }
  // A sequence picked earlier may have been pre-empted for a later one.
  std::erase_if(decode, [&](Seq* s) { return !is_running(s); });
  return decode;
}

bool Scheduler::try_plan_step(std::vector<Seq*>& decode, std::vector<std::pair<Seq*, int64_t>>& prefill) {
  decode = plan_decode();
  prefill.clear();
  const auto nd = static_cast<int64_t>(decode.size());
  Budget b{.tokens = limits_.max_step_tokens - nd, .logit_rows = limits_.max_logit_rows - nd, .keys = 0};
  auto take = [&](Seq* s, int64_t n) {
    prefill.emplace_back(s, n);
    b.keys += s->n_cached + n;
    b.logit_rows -= logit_rows_needed(*s, n);
    b.tokens -= n;
  };
  for (Seq* s : running_)
    if (b.tokens > 0 && left(*s) > 1)
      if (const int64_t n = plan_chunk(*s, b); n > 0) take(s, n);
  std::vector<int64_t> load(static_cast<size_t>(pool_.n_partitions()), 0);  // running sequences a partition
  for (const Seq* s : running_) ++load[static_cast<size_t>(s->partition)];
  for (auto it = waiting_.begin();
       it != waiting_.end() && b.tokens > 0 && static_cast<int64_t>(running_.size()) < limits_.max_seqs;) {
    Seq* s = *it;
    place(*s, load);
    if (wait_to_share(*s)) {
      ++it;
      continue;
    }
    // A request whose prompt came from the prefix cache but for its last token is a one-row prefill chunk.
    admit(*s);
    const int64_t n = plan_chunk(*s, b);
    if (n == 0) {
      release(*s);
      running_.pop_back();
      break;
    }
    take(s, n);
    ++load[static_cast<size_t>(s->partition)];
    results_[s->req].prefix_tokens_reused += s->n_cached;
    stats_.prefix_tokens_reused += s->n_cached;
    it = waiting_.erase(it);
  }
  return !decode.empty() || !prefill.empty();
}

StepPlan Scheduler::next_step() {
  MLABENCH_ICHECK(!done(), "next_step after the run finished");
  std::vector<Seq*> decode;
  std::vector<std::pair<Seq*, int64_t>> prefill;
  while (!try_plan_step(decode, prefill)) {
    MLABENCH_CHECK(!running_.empty(),
                   "the KV cache ({} blocks of {} tokens) cannot start the next request ({} tokens). HINT: raise "
                   "--kv-cache-gib or lower --max-step-tokens",
                   pool_.n_blocks(), limits_.block_size, waiting_.empty() ? 0 : waiting_.front()->tokens.size());
    // Nothing fits beside what is running: free the newest sequence and plan again.
    MLABENCH_ICHECK(preempt_newest(nullptr, -1), "no sequence to pre-empt among {} running", running_.size());
  }
  stats_.max_running = std::max<int64_t>(stats_.max_running, static_cast<int64_t>(running_.size()));
  return lay_out(decode, prefill);
}

// Rows of n new tokens of s, and the logit rows it needs among them (rows[0] SAMPLE, rows[1] SCORE, rows[2] FULL).
void Scheduler::add_rows(StepPlan& p, std::vector<LogitRow> (&rows)[3], Seq& s, int64_t n, bool decode) {
  const Request& r = reqs_[s.req];
  const int64_t bs = limits_.block_size;
  const auto seq = static_cast<int32_t>(p.seqs.size());
  const auto row0 = static_cast<int32_t>(p.tokens.size());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t pos = s.n_cached + i;
    p.tokens.push_back(s.tokens[static_cast<size_t>(pos)]);
    p.positions.push_back(static_cast<int32_t>(pos));
    p.slots.push_back(static_cast<int64_t>(s.blocks[static_cast<size_t>(pos / bs)]) * bs + pos % bs);
    const LogitRow base{.row = row0 + static_cast<int32_t>(i), .seq = seq, .position = pos};
    if (r.all_logits && pos < s.n_prompt) {
      LogitRow f = base;
      f.use = RowUse::FULL;
      f.dst = results_[s.req].logits.data() + pos * limits_.vocab_size;
      rows[2].push_back(f);
    } else if (r.score_from >= 1 && pos >= r.score_from - 1 && pos + 1 < s.n_prompt) {
      LogitRow sc = base;
      sc.use = RowUse::SCORE;
      sc.target = s.tokens[static_cast<size_t>(pos + 1)];
      rows[1].push_back(sc);
    }
    if (pos + 1 == static_cast<int64_t>(s.tokens.size()) && r.gen.max_new_tokens > s.n_generated) {
      LogitRow sa = base;
      sa.use = RowUse::SAMPLE;
      sa.sampling = {.temperature = r.gen.temperature, .top_p = r.gen.top_p, .seed = r.gen.seed,
                     .step = s.n_generated};
      rows[0].push_back(sa);
    }
  }
  p.seqs.push_back({.request = s.req, .first_position = s.n_cached, .n_new = n, .decode = decode, .blocks = s.blocks,
                    .partition = s.partition});
}

StepPlan Scheduler::lay_out(const std::vector<Seq*>& decode, const std::vector<std::pair<Seq*, int64_t>>& prefill) {
  StepPlan p;
  p.n_decode = static_cast<int32_t>(decode.size());
  std::vector<LogitRow> rows[3];
  for (Seq* s : decode) add_rows(p, rows, *s, 1, true);
  for (const auto& [s, n] : prefill) add_rows(p, rows, *s, n, false);
  p.n_sample = static_cast<int64_t>(rows[0].size());
  p.n_score = static_cast<int64_t>(rows[1].size());
  p.n_full = static_cast<int64_t>(rows[2].size());
  for (auto& r : rows) p.logits.insert(p.logits.end(), r.begin(), r.end());
  return p;
}

void Scheduler::complete_step(const StepPlan& plan, const StepOutput& out, const TokenCallback& on_token,
                              double now) {
  MLABENCH_ICHECK(static_cast<int64_t>(out.sampled.size()) == plan.n_sample &&
                      static_cast<int64_t>(out.logprob.size()) == plan.n_score &&
                      static_cast<int64_t>(out.is_greedy.size()) == plan.n_score,
                  "step output holds {} tokens and {} scores for a plan of {} and {}", out.sampled.size(),
                  out.logprob.size(), plan.n_sample, plan.n_score);
  ++stats_.steps;
  stats_.decode_tokens += plan.n_decode;
  stats_.prefill_tokens += plan.n_rows() - plan.n_decode;
  const int64_t bs = limits_.block_size;
  // Advance the sequences; publish blocks that are now full, for later requests with the same prefix.
  for (const PlannedSequence& ps : plan.seqs) {
    Seq& s = *seqs_[ps.request];
    MLABENCH_ICHECK(s.n_cached == ps.first_position && is_running(&s), "request {}: step planned from position {} "
                    "but the sequence holds {}", ps.request, ps.first_position, s.n_cached);
    s.n_cached += ps.n_new;
    hash_blocks(s);
    const int64_t full = std::min<int64_t>(s.n_cached / bs, static_cast<int64_t>(s.block_hash.size()));
    for (; s.published < full; ++s.published) {
      pool_.publish(s.blocks[static_cast<size_t>(s.published)], s.block_hash[static_cast<size_t>(s.published)]);
      if (s.published < s.pending_end) unpend(s, s.published, s.published + 1);
    }
  }
  for (int64_t k = 0; k < plan.n_score; ++k) {
    Result& r = results_[plan.seqs[static_cast<size_t>(plan.logits[static_cast<size_t>(plan.n_sample + k)].seq)].request];
    r.logprob += out.logprob[static_cast<size_t>(k)];
    r.is_greedy = r.is_greedy && out.is_greedy[static_cast<size_t>(k)] != 0;
  }
  for (int64_t k = 0; k < plan.n_sample; ++k) {
    const size_t req = plan.seqs[static_cast<size_t>(plan.logits[static_cast<size_t>(k)].seq)].request;
    Seq& s = *seqs_[req];
    const GenerateOptions& g = reqs_[req].gen;
    const int32_t tok = out.sampled[static_cast<size_t>(k)];
    Result& r = results_[req];
    r.tokens.push_back(tok);
    if (r.token_seconds.empty()) r.first_token_seconds = now;
    r.token_seconds.push_back(now);
    s.tokens.push_back(tok);
    ++s.n_generated;
    if (std::find(g.stop_token_ids.begin(), g.stop_token_ids.end(), tok) != g.stop_token_ids.end())
      finish(s, "stop_token", now);
    else if (on_token && on_token(req, tok))
      finish(s, "stop_string", now);
    else if (s.n_generated >= g.max_new_tokens)
      finish(s, "length", now);
  }
  // Requests with nothing to generate are done once their prompt is in.
  for (const PlannedSequence& ps : plan.seqs) {
    Seq& s = *seqs_[ps.request];
    if (is_running(&s) && s.n_cached >= static_cast<int64_t>(s.tokens.size()) && reqs_[ps.request].gen.max_new_tokens == 0)
      finish(s, "length", now);
  }
}

void Scheduler::check_consistency() const {
  const int64_t bs = limits_.block_size;
  std::map<int32_t, int32_t> holders;
  for (const Seq* s : running_) {
    const auto n_blocks = static_cast<int64_t>(s->blocks.size());
    MLABENCH_CHECK(n_blocks >= (s->n_cached + bs - 1) / bs &&
                       n_blocks <= (static_cast<int64_t>(s->tokens.size()) + bs - 1) / bs,
                   "request {} holds {} blocks for {} cached of {} tokens", s->req, n_blocks, s->n_cached,
                   s->tokens.size());
    for (size_t i = 0; i < s->blocks.size(); ++i) {
      MLABENCH_CHECK(std::find(s->blocks.begin() + static_cast<std::ptrdiff_t>(i) + 1, s->blocks.end(),
                               s->blocks[i]) == s->blocks.end(),
                     "request {} holds block {} twice", s->req, s->blocks[i]);
      MLABENCH_CHECK(pool_.partition_of(s->blocks[i]) == s->partition, "request {} of partition {} holds block {} "
                     "of partition {}", s->req, s->partition, s->blocks[i], pool_.partition_of(s->blocks[i]));
      ++holders[s->blocks[i]];
    }
  }
  for (const Seq* s : waiting_)
    MLABENCH_CHECK(s->blocks.empty() && s->n_cached == 0, "waiting request {} holds {} blocks", s->req,
                   s->blocks.size());
  for (int32_t b = 0; b < pool_.n_blocks(); ++b) {
    auto it = holders.find(b);
    const int32_t held = it == holders.end() ? 0 : it->second;
    MLABENCH_CHECK(pool_.ref_count(b) == held, "block {} has {} references but {} running sequences hold it", b,
                   pool_.ref_count(b), held);
  }
  pool_.check_consistency();
}

}  // namespace mlabench::serving
