// ServingEngine: the one serving path of the Engine, over either runner. It owns the runner and the block pool
// (whose prefix cache lives across runs: a later request with the same prompt prefix reuses its blocks) and
// runs each batch of requests through a Scheduler: plan a step, execute it on the runner, apply the output,
// until every request is done.
#pragma once

#include <memory>
#include <vector>

#include "engine/serving/block_pool.h"
#include "engine/serving/limits.h"
#include "engine/serving/model_runner.h"
#include "engine/serving/request.h"

namespace mlabench::serving {

class ServingEngine {
 public:
  ServingEngine(std::unique_ptr<ModelRunner> runner, const ServingLimits& limits);

  /// \brief Runs every request to completion; results in request order. on_token(request, token) sees each
  /// generated token and returns true to stop that request.
  std::vector<Result> run(const std::vector<Request>& requests, const TokenCallback& on_token = {});

  const Stats& stats() const { return stats_; }
  const ServingLimits& limits() const { return limits_; }
  const BlockPool& pool() const { return pool_; }
  ModelRunner& runner() { return *runner_; }
  const ModelRunner& runner() const { return *runner_; }

 private:
  std::unique_ptr<ModelRunner> runner_;
  ServingLimits limits_;
  BlockPool pool_;
  Stats stats_;
};

}  // namespace mlabench::serving
