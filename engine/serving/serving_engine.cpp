#include "engine/serving/serving_engine.h"

#include <chrono>

#include "engine/core/check.h"
#include "engine/serving/scheduler.h"

namespace mlabench::serving {

ServingEngine::ServingEngine(std::unique_ptr<ModelRunner> runner, const ServingLimits& limits)
    : runner_(std::move(runner)),
      limits_(limits),
      pool_(runner_->n_blocks(), limits.block_size, runner_->bytes_per_block()) {}

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

}  // namespace mlabench::serving
