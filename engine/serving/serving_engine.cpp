#include "engine/serving/serving_engine.h"

#include <chrono>

#include "core/check.h"
#include "engine/serving/scheduler.h"

namespace mlabench::serving {

ServingEngine::ServingEngine(std::unique_ptr<ModelRunner> runner, const ServingLimits& limits)
    : runner_(std::move(runner)),
      limits_(limits),
      pool_(runner_->n_blocks(), limits.block_size, runner_->bytes_per_block(), runner_->cache_partitions()) {}

std::vector<Result> ServingEngine::run(const std::vector<Request>& requests, const TokenCallback& on_token) {
  const auto t0 = std::chrono::steady_clock::now();
  Scheduler scheduler(limits_, runner_->prefill_key_budget(), pool_, requests, stats_);
  StepOutput out;
  while (!scheduler.done()) {
    const StepPlan plan = scheduler.next_step();
    runner_->execute(plan, out);
    const double now = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    scheduler.complete_step(plan, out, on_token, now);
  }
  return scheduler.take_results();
}

void ServingEngine::run_live(const LiveHooks& h) {
  std::vector<LiveArrival> in;
  bool open = true;
  while (open && h.arrivals(in, true)) {
    Scheduler scheduler(limits_, runner_->prefill_key_budget(), pool_, {}, stats_);
    std::vector<uint64_t> tags;     // scheduler index -> tag
    std::vector<uint8_t> answered;  // on_done or on_error was called
    auto admit = [&] {
      for (LiveArrival& a : in) try {
          scheduler.add(a.request);  // checks before it queues: a refused request takes no index
          tags.push_back(a.tag);
          answered.push_back(0);
        } catch (const Error& e) {
          h.on_error(a.tag, e);
        }
      in.clear();
    };
    admit();
    const auto t0 = std::chrono::steady_clock::now();
    StepOutput out;
    try {
      while (!scheduler.done()) {
        const StepPlan plan = scheduler.next_step();
        runner_->execute(plan, out);
        const double now = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        scheduler.complete_step(plan, out, [&](size_t i, int32_t t) { return h.on_token(tags[i], t); }, now);
        for (size_t i : scheduler.take_finished()) {
          answered[i] = 1;
          h.on_done(tags[i], scheduler.take_result(i));
        }
        if (!h.arrivals(in, false)) {
          open = false;
          break;
        }
        admit();
        if (h.on_step) h.on_step(scheduler.n_running(), scheduler.n_waiting());
      }
    } catch (const std::exception& e) {
      const Error err(fmt::format("the serving step failed: {}", e.what()));
      for (size_t i = 0; i < tags.size(); ++i)
        if (!answered[i]) answered[i] = 1, h.on_error(tags[i], err);
    }
    const Error stopped("the live session stopped before the request finished. HINT: resubmit it");
    for (size_t i = 0; i < tags.size(); ++i)
      if (!answered[i]) h.on_error(tags[i], stopped);
    if (h.on_step) h.on_step(0, 0);
  }
}

}  // namespace mlabench::serving
