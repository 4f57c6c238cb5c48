#include "engine/model/cpu_runner.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/check.h"
#include "engine/kernels/twin/twin.h"
#include "engine/model/cpu_model.h"

namespace mlabench {

namespace {

namespace k = mlabench::kernels;

class CpuRunner final : public serving::ModelRunner {
 public:
  CpuRunner(ModelConfig c, ModelWeights w, const EngineOptions& o, const serving::ServingLimits& limits,
            CpuRankHooks hooks)
      : limits_(limits), weight_bytes_(w.stored_bytes), model_(std::move(c), std::move(w), o.mla_attention) {
    if (o.n_threads > 0) omp_set_num_threads(o.n_threads);
    model_.set_rank_hooks(std::move(hooks));
    model_.set_fp8_kv_cache(o.kv_cache_dtype == KvCacheDtype::FP8);
    const CpuKvCache probe = model_.new_cache();
    k_width_ = probe.k_width();
    v_width_ = probe.v_width();
    const ModelConfig& cfg = model_.config();
    slot_floats_ = k_width_ + v_width_;
    block_floats_ = static_cast<size_t>(cfg.n_layers * limits.block_size * slot_floats_);
    // Blocks are allocated on first use, so the default budget (a quarter of the machine's memory, or one
    // max_context sequence if that is more) costs nothing until sequences fill it.
    const int64_t one_seq = (limits.max_context + limits.block_size - 1) / limits.block_size;
    double budget = o.kv_cache_gib * 1073741824.0;
    if (budget <= 0)
      budget = std::max(0.25 * static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE)),
                        static_cast<double>(one_seq) * static_cast<double>(bytes_per_block()));
    const double blocks = budget / static_cast<double>(bytes_per_block());
    // Block ids are int32 (block tables); a budget past them is a typo, not a cache (blocks cost memory only on use).
    MLABENCH_CHECK(blocks < 2147483647.0,
                   "--kv-cache-gib {}: {:.3g} blocks of {} bytes, more than a block table can number (2^31 - 1). HINT: "
                   "give the cache's size in GiB, at most what the machine has", o.kv_cache_gib, blocks,
                   bytes_per_block());
    n_blocks_ = static_cast<int64_t>(blocks);
    MLABENCH_CHECK(n_blocks_ >= 2,
                   "the CPU KV cache budget of {:.3f} GiB holds {} blocks of {} tokens ({} bytes each): too few to "
                   "serve a sequence. HINT: raise --kv-cache-gib",
                   budget / 1073741824.0, n_blocks_, limits.block_size, bytes_per_block());
    blocks_.resize(static_cast<size_t>(n_blocks_));
  }

  int64_t n_blocks() const override { return n_blocks_; }
  uint64_t bytes_per_block() const override { return block_floats_ * sizeof(float); }
  uint64_t weight_bytes() const override { return weight_bytes_; }
  std::string describe_json() const override { return ""; }

  void execute(const serving::StepPlan& plan, serving::StepOutput& out) override {
    out.sampled.assign(static_cast<size_t>(plan.n_sample), 0);
    out.logprob.assign(static_cast<size_t>(plan.n_score), 0.0);
    out.is_greedy.assign(static_cast<size_t>(plan.n_score), 0);
    // Logit rows of each sequence (plan.logits is ordered by use, not by sequence).
    std::vector<std::vector<size_t>> wanted(plan.seqs.size());
    for (size_t i = 0; i < plan.logits.size(); ++i) wanted[static_cast<size_t>(plan.logits[i].seq)].push_back(i);
    int64_t row0 = 0;
    for (size_t s = 0; s < plan.seqs.size(); ++s) {
      run_sequence(plan, s, row0, wanted[s], out);
      row0 += plan.seqs[s].n_new;
    }
  }

 private:
  float* slot(int32_t block, int64_t layer, int64_t pos_in_block) {
    std::vector<float>& b = blocks_.at(static_cast<size_t>(block));
    if (b.empty()) b.assign(block_floats_, std::numeric_limits<float>::quiet_NaN());
    return b.data() + static_cast<size_t>((layer * limits_.block_size + pos_in_block) * slot_floats_);
  }

  // Copies positions [from, to) between the paged pool and a contiguous cache, either way.
  void copy_slots(const serving::PlannedSequence& ps, CpuKvCache& cache, int64_t from, int64_t to, bool to_cache) {
    const int64_t bs = limits_.block_size;
    for (int64_t l = 0; l < model_.config().n_layers; ++l)
      for (int64_t p = from; p < to; ++p) {
        float* s = slot(ps.blocks.at(static_cast<size_t>(p / bs)), l, p % bs);
        if (to_cache) {
          std::memcpy(cache.k(l, p), s, static_cast<size_t>(k_width_) * 4);
          if (v_width_ > 0) std::memcpy(cache.v(l, p), s + k_width_, static_cast<size_t>(v_width_) * 4);
        } else {
          std::memcpy(s, cache.k(l, p), static_cast<size_t>(k_width_) * 4);
          if (v_width_ > 0) std::memcpy(s + k_width_, cache.v(l, p), static_cast<size_t>(v_width_) * 4);
        }
      }
  }

  void run_sequence(const serving::StepPlan& plan, size_t s, int64_t row0, const std::vector<size_t>& wanted,
                    serving::StepOutput& out) {
    const serving::PlannedSequence& ps = plan.seqs[s];
    const int64_t V = model_.config().vocab_size, first = ps.first_position;
    CpuKvCache cache = model_.new_cache();
    cache.grow(first);
    copy_slots(ps, cache, 0, first, true);
    // The distinct local rows whose logits some use needs, ascending.
    std::vector<int64_t> rows;
    for (size_t i : wanted) rows.push_back(plan.logits[i].row - row0);
    std::sort(rows.begin(), rows.end());
    rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
    std::vector<float> logits(rows.size() * static_cast<size_t>(V));
    model_.forward(std::span(plan.tokens).subspan(static_cast<size_t>(row0), static_cast<size_t>(ps.n_new)), cache,
                   rows, logits.data(), ps.decode);
    copy_slots(ps, cache, first, first + ps.n_new, false);
    for (size_t i : wanted) {
      const serving::LogitRow& lr = plan.logits[i];
      const auto at = std::lower_bound(rows.begin(), rows.end(), lr.row - row0) - rows.begin();
      const float* row = logits.data() + at * V;
      if (lr.use == serving::RowUse::FULL) {
        std::memcpy(lr.dst, row, static_cast<size_t>(V) * 4);
      } else if (lr.use == serving::RowUse::SCORE) {
        const size_t k = i - static_cast<size_t>(plan.n_sample);
        int32_t greedy = 0;
        k::twin::log_softmax_gather({.logits = row, .ld = V, .n_rows = 1, .vocab = V, .targets = &lr.target,
                                     .logprob = &out.logprob[k], .is_greedy = &greedy});
        out.is_greedy[k] = static_cast<uint8_t>(greedy);
      } else {
        const serving::RowSampling& g = lr.sampling;
        k::twin::sample({.logits = row, .ld = V, .n_rows = 1, .vocab = V, .temperature = &g.temperature,
                         .top_p = &g.top_p, .seed = &g.seed, .step = &g.step, .out = &out.sampled[i]});
      }
    }
  }

  serving::ServingLimits limits_;
  uint64_t weight_bytes_;
  CpuModel model_;
  int64_t k_width_ = 0, v_width_ = 0, slot_floats_ = 0;
  size_t block_floats_ = 0;
  int64_t n_blocks_ = 0;
  std::vector<std::vector<float>> blocks_;  // [n_blocks] of [layer][slot][k ; v], allocated on first use
};

}  // namespace

std::unique_ptr<serving::ModelRunner> make_cpu_runner(ModelConfig c, ModelWeights w, const EngineOptions& o,
                                                      const serving::ServingLimits& limits, CpuRankHooks hooks) {
  return std::make_unique<CpuRunner>(std::move(c), std::move(w), o, limits, std::move(hooks));
}

}  // namespace mlabench
