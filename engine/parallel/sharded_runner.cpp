#include "engine/parallel/sharded_runner.h"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/check.h"
#include "core/env_setting.h"
#include "engine/gpu/gpu_runner.h"
#include "engine/model/cpu_runner.h"
#include "engine/parallel/device_collectives.h"
#include "engine/parallel/host_collectives.h"
#include "engine/parallel/shard_plan.h"
#include "engine/parallel/sharded_cpu.h"

namespace mlabench::parallel {
namespace {

ParallelConfig split_of(const EngineOptions& o) { return {.tp = o.tp, .ep = o.ep, .dp_attention = o.dp_attention}; }

// A rank's runner from its slices of the model (called on the rank's own thread).
using RankFactory = std::function<std::unique_ptr<serving::ModelRunner>(int rank, RankModel slices)>;

class ShardedRunner final : public serving::ModelRunner {
 public:
  // `collectives` (GPU ranks) must outlive the ranks' runners, whose hooks point into it: it is kept here.
  ShardedRunner(const ModelConfig& c, ModelWeights w, const EngineOptions& o, int64_t block_size,
                std::unique_ptr<HostGroup> group, std::unique_ptr<DeviceCollectives> collectives,
                std::vector<int> devices, const RankFactory& make_rank)
      : vocab_(c.vocab_size),
        block_size_(block_size),
        dp_(o.dp_attention),
        whole_(std::move(w)),
        own_group_(std::move(group)),
        group_(*own_group_),
        collectives_(std::move(collectives)),
        devices_(std::move(devices)),
        threads_(group_) {
    const ParallelConfig p = split_of(o);
    const int world = group_.size();
    std::vector<ShardPlan> plans;
    for (int r = 0; r < world; ++r) plans.push_back(plan_shards(c, p, r));
    ranks_.resize(static_cast<size_t>(world));
    outputs_.resize(static_cast<size_t>(world));
    full_rows_.resize(static_cast<size_t>(world));
    threads_.run([&](int r) {
      ranks_[static_cast<size_t>(r)] = make_rank(r, shard_model(c, whole_, plans[static_cast<size_t>(r)]));
    });
    const size_t es = dtype_size(whole_.embed.dtype);
    n_blocks_ = ranks_[0]->n_blocks();
    for (int r = 0; r < world; ++r) {
      const auto& rank = *ranks_[static_cast<size_t>(r)];
      n_blocks_ = std::min(n_blocks_, rank.n_blocks());
      // Under DP attention a block lives on the one rank that owns its sequence; otherwise on every rank.
      if (!dp_ || r == 0) bytes_per_block_ += rank.bytes_per_block();
      weight_bytes_ += collectives_ ? rank.weight_bytes()
                                    : static_cast<uint64_t>(rank_parameters(c, plans[static_cast<size_t>(r)])) * es;
    }
    // Under DP attention the scheduler's pool is every rank's cache side by side: partition r is rank r's blocks.
    rank_blocks_ = n_blocks_;
    if (dp_) n_blocks_ *= world;
    parallel_json_ = {{"tp", p.tp}, {"ep", p.ep}, {"dp_attention", p.dp_attention}, {"world", world},
                      {"collectives", collectives_ ? collectives_->kind() : "host (cpu)"}};
    if (!devices_.empty()) parallel_json_["devices"] = devices_;
  }

  int64_t n_blocks() const override { return n_blocks_; }
  int cache_partitions() const override { return dp_ ? group_.size() : 1; }
  /// Over all ranks: a block's positions are cached on every rank (its slice of the heads, or the whole latent).
  uint64_t bytes_per_block() const override { return bytes_per_block_; }
  uint64_t weight_bytes() const override { return weight_bytes_; }
  int64_t prefill_key_budget() const override {
    int64_t b = 0;
    for (const auto& r : ranks_) {
      const int64_t rb = r->prefill_key_budget();
      if (rb > 0) b = b == 0 ? rb : std::min(b, rb);
    }
    return b;
  }
  double copy_bandwidth_gbps() const override { return ranks_[0]->copy_bandwidth_gbps(); }

  // The CPU: "" (no device). GPUs: rank 0's description, the KV cache and weights summed over the ranks (what the
  // group holds), every rank's own under "parallel".
  std::string describe_json() const override {
    const std::string first = ranks_[0]->describe_json();
    if (first.empty()) return first;
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(first), ranks = nlohmann::ordered_json::array();
    uint64_t bytes = 0;
    for (const auto& r : ranks_) {
      ranks.push_back(nlohmann::ordered_json::parse(r->describe_json()));
      bytes += ranks.back()["kv_cache"]["bytes"].get<uint64_t>();
    }
    j["weight_bytes"] = weight_bytes_;
    j["kv_cache"]["blocks"] = n_blocks_;
    j["kv_cache"]["bytes"] = bytes;
    const int64_t block_size = j["kv_cache"]["block_size"].get<int64_t>();
    j["kv_cache"]["tokens"] = n_blocks_ * block_size;
    j["kv_cache"]["bytes_per_token"] = bytes_per_block_ / static_cast<uint64_t>(block_size);
    j["parallel"] = parallel_json_;
    j["parallel"]["ranks"] = ranks;
    return j.dump();
  }

  void execute(const serving::StepPlan& plan, serving::StepOutput& out) override {
    if (dp_) {
      execute_dp(plan, out);
      return;
    }
    threads_.run([&](int r) {
      if (r == 0) {
        ranks_[0]->execute(plan, out);
        return;
      }
      serving::StepOutput& mine = outputs_[static_cast<size_t>(r)];
      if (plan.n_full == 0) {
        ranks_[static_cast<size_t>(r)]->execute(plan, mine);
        return;
      }
      // FULL rows are written through their dst: rank 0 alone writes the caller's memory, the others a scratch.
      serving::StepPlan redirected = plan;
      std::vector<float>& scratch = full_rows_[static_cast<size_t>(r)];
      scratch.resize(static_cast<size_t>(plan.n_full * vocab_));
      int64_t i = 0;
      for (serving::LogitRow& lr : redirected.logits)
        if (lr.use == serving::RowUse::FULL) lr.dst = scratch.data() + (i++) * vocab_;
      ranks_[static_cast<size_t>(r)]->execute(redirected, mine);
    });
    for (size_t r = 1; r < ranks_.size(); ++r)
      MLABENCH_ICHECK(outputs_[r].sampled == out.sampled && outputs_[r].logprob == out.logprob &&
                          outputs_[r].is_greedy == out.is_greedy,
                      "rank {} of {} sampled or scored otherwise than rank 0 in the same step: the collectives gave "
                      "the ranks different logits",
                      r, ranks_.size());
  }

 private:
  // DP attention: each sequence runs on the rank whose cache partition holds its blocks (the scheduler places it
  // at admission and keeps it there while it runs), with its block ids and slots made local to that rank's cache;
  // every rank gets a plan of its own sequences padded with empty ones to the most any rank has, so the ranks'
  // forward calls pair up for the FFN's and the head's gathers. Results go back to the caller's order.
  void execute_dp(const serving::StepPlan& plan, serving::StepOutput& out) {
    const auto world = static_cast<size_t>(group_.size());
    std::vector<serving::StepPlan> sub(world);
    std::vector<std::vector<size_t>> global_logit(world);  // each rank's logit rows: their index in plan.logits
    std::vector<int64_t> row0(plan.seqs.size()), local_row0(plan.seqs.size());
    std::vector<int32_t> local_seq(plan.seqs.size());
    std::vector<size_t> owner(plan.seqs.size());
    int64_t at = 0;
    for (size_t s = 0; s < plan.seqs.size(); ++s) {
      const serving::PlannedSequence& ps = plan.seqs[s];
      const auto r = static_cast<size_t>(ps.partition);
      MLABENCH_ICHECK(r < world, "sequence of request {} planned on cache partition {} of {}", ps.request, r, world);
      const int32_t first = static_cast<int32_t>(static_cast<int64_t>(r) * rank_blocks_);  // rank r's first block id
      serving::StepPlan& q = sub[r];
      owner[s] = r;
      row0[s] = at;
      local_row0[s] = q.n_rows();
      local_seq[s] = static_cast<int32_t>(q.seqs.size());
      q.seqs.push_back(ps);
      for (int32_t& blk : q.seqs.back().blocks) {
        MLABENCH_ICHECK(blk >= first && blk - first < rank_blocks_, "request {} on rank {} holds block {}, outside its "
                        "cache [{}, {})", ps.request, r, blk, first, first + rank_blocks_);
        blk -= first;
      }
      if (static_cast<int32_t>(s) < plan.n_decode) ++q.n_decode;  // decode sequences come first in both
      const auto b = static_cast<std::ptrdiff_t>(at), e = static_cast<std::ptrdiff_t>(at + ps.n_new);
      q.tokens.insert(q.tokens.end(), plan.tokens.begin() + b, plan.tokens.begin() + e);
      q.positions.insert(q.positions.end(), plan.positions.begin() + b, plan.positions.begin() + e);
      const int64_t slot0 = static_cast<int64_t>(first) * block_size_;
      for (auto i = b; i < e; ++i) q.slots.push_back(plan.slots[static_cast<size_t>(i)] - slot0);
      at += ps.n_new;
    }
    for (size_t i = 0; i < plan.logits.size(); ++i) {  // SAMPLE, SCORE, FULL order kept within each rank
      serving::LogitRow lr = plan.logits[i];
      const auto s = static_cast<size_t>(lr.seq);
      serving::StepPlan& q = sub[owner[s]];
      lr.row = static_cast<int32_t>(local_row0[s] + (lr.row - row0[s]));
      lr.seq = local_seq[s];
      q.logits.push_back(lr);
      global_logit[owner[s]].push_back(i);
      (lr.use == serving::RowUse::SAMPLE ? q.n_sample : lr.use == serving::RowUse::SCORE ? q.n_score : q.n_full)++;
    }
    // CPU ranks run a forward call a sequence: empty sequences (no rows, no cache) pair the ranks' calls up, each
    // joining the gathers. A GPU rank runs one forward a step over all its rows, zero included, joining each
    // layer's gathers once: its plan keeps only its own sequences.
    size_t most = 0;
    for (const auto& q : sub) most = std::max(most, q.seqs.size());
    if (!collectives_)
      for (auto& q : sub) q.seqs.resize(most, serving::PlannedSequence{});  // n_new 0
    threads_.run([&](int r) { ranks_[static_cast<size_t>(r)]->execute(sub[static_cast<size_t>(r)],
                                                                      outputs_[static_cast<size_t>(r)]); });
    out.sampled.assign(static_cast<size_t>(plan.n_sample), 0);
    out.logprob.assign(static_cast<size_t>(plan.n_score), 0.0);
    out.is_greedy.assign(static_cast<size_t>(plan.n_score), 0);
    for (size_t r = 0; r < world; ++r) {
      const serving::StepOutput& o = outputs_[r];
      size_t sample = 0, score = 0;
      for (size_t i : global_logit[r]) {
        const serving::RowUse use = plan.logits[i].use;
        if (use == serving::RowUse::SAMPLE) {
          out.sampled[i] = o.sampled.at(sample++);
        } else if (use == serving::RowUse::SCORE) {
          const size_t k = i - static_cast<size_t>(plan.n_sample);
          out.logprob[k] = o.logprob.at(score);
          out.is_greedy[k] = o.is_greedy.at(score++);
        }
      }
    }
  }

  int64_t vocab_;
  int64_t block_size_;
  bool dp_ = false;
  ModelWeights whole_;  // the ranks' weights view it where rows are split
  std::unique_ptr<HostGroup> own_group_;  // the CPU collectives (and the host-staged GPU ones)
  HostGroup& group_;
  std::unique_ptr<DeviceCollectives> collectives_;
  std::vector<int> devices_;
  RankThreads threads_;
  std::vector<std::unique_ptr<serving::ModelRunner>> ranks_;  // destroyed before the collectives and the threads
  std::vector<serving::StepOutput> outputs_;                  // ranks 1..: what each computed, checked against rank 0's
  std::vector<std::vector<float>> full_rows_;                 // ranks 1..: where their FULL rows go
  int64_t n_blocks_ = 0;     // the scheduler's ids: under DP every rank's cache side by side
  int64_t rank_blocks_ = 0;  // blocks of one rank's cache (the fewest any rank has)
  uint64_t bytes_per_block_ = 0, weight_bytes_ = 0;
  nlohmann::ordered_json parallel_json_;
};

}  // namespace

void check_sharded_options(const ModelConfig& c, const EngineOptions& o) {
  const ParallelConfig p = split_of(o);
  for (int r = 0; r < p.world(); ++r) (void)plan_shards(c, p, r);
  if (o.device != Device::CUDA) return;
  // FP8 weights: each GPU rank quantises its slices itself (the CPU quantises the whole model, then slices).
  if (o.weights_dtype == WeightsDtype::FP8) check_fp8_grid(c, p);
  // The GPUs exist and a shared one has a cache budget for each of its ranks.
  const std::vector<int> devices = place_ranks(p.world(), o.device_index);
  const bool shared = std::set<int>(devices.begin(), devices.end()).size() < devices.size();
  MLABENCH_CHECK(!shared || o.kv_cache_gib > 0,
                 "--tp {}: {} ranks share the machine's GPUs, and each rank's KV cache would take all the memory left "
                 "on its GPU. HINT: pass --kv-cache-gib (per rank) small enough for every rank of a GPU",
                 p.tp, p.world());
}

std::unique_ptr<serving::ModelRunner> make_sharded_cpu_runner(const ModelConfig& c, ModelWeights w,
                                                              const EngineOptions& o,
                                                              const serving::ServingLimits& limits) {
  check_sharded_options(c, o);  // Error before any rank starts
  const ParallelConfig p = split_of(o);
  auto group = std::make_unique<HostGroup>(p.world());
  HostGroup* g = group.get();
  const int cores = o.n_threads > 0 ? o.n_threads : omp_get_num_procs();
  const int per_rank = std::max(1, cores / p.world());
  EngineOptions rank_options = o;
  rank_options.n_threads = per_rank;
  const int64_t V = c.vocab_size;
  return std::make_unique<ShardedRunner>(
      c, std::move(w), o, limits.block_size, std::move(group), nullptr, std::vector<int>{},
      [&, g, per_rank, V](int r, RankModel m) {
        omp_set_num_threads(per_rank);  // this rank's thread: its own OpenMP pool, a share of the cores
        // Random weights arrive as sources: each rank generates only its slices, into its own buffers.
        for_each_matrix(m.weights, [&m](TensorView& v) { v = generate_random_view(v, m.weights.owned); });
        return make_cpu_runner(std::move(m.config), std::move(m.weights), rank_options, limits,
                               o.dp_attention ? dp_attention_hooks(*g, r, V) : tensor_parallel_hooks(*g, r, V));
      });
}

std::unique_ptr<serving::ModelRunner> make_sharded_gpu_runner(const ModelConfig& c, ModelWeights w,
                                                              const EngineOptions& o,
                                                              const serving::ServingLimits& limits) {
  check_sharded_options(c, o);
  const ParallelConfig p = split_of(o);
  const std::vector<int> devices = place_ranks(p.world(), o.device_index);
  const bool shared = std::set<int>(devices.begin(), devices.end()).size() < devices.size();
  // MLABENCH_COLLECTIVES: nccl (unset: NCCL between distinct GPUs) or host; a typo is refused, not run as NCCL.
  const bool prefer_host = shared || env_choice("MLABENCH_COLLECTIVES", {"nccl", "host"}) == 1;
  auto group = std::make_unique<HostGroup>(p.world());
  HostGroup* g = group.get();
  std::unique_ptr<DeviceCollectives> coll =
      make_device_collectives(*g, devices, c.vocab_size, limits.max_logit_rows, prefer_host, p.dp_attention);
  DeviceCollectives* cp = coll.get();
  return std::make_unique<ShardedRunner>(
      c, std::move(w), o, limits.block_size, std::move(group), std::move(coll), devices,
      [&, cp, devices](int r, RankModel m) {
        EngineOptions ro = o;
        ro.device_index = devices[static_cast<size_t>(r)];
        ro.tp = ro.ep = 1;
        return make_gpu_runner(m.config, &m.weights, 0, ro, limits, cp->hooks(r));
      });
}

}  // namespace mlabench::parallel
