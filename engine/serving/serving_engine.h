// ServingEngine: the one serving path of the Engine, over either runner. It owns the runner and the block pool
// (whose prefix cache lives across runs: a later request with the same prompt prefix reuses its blocks) and
// runs each batch of requests through a Scheduler: plan a step, execute it on the runner, apply the output,
// until every request is done.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "engine/serving/block_pool.h"
#include "engine/serving/limits.h"
#include "engine/serving/model_runner.h"
#include "engine/serving/request.h"

namespace mlabench::serving {

/// Live serving (ServingEngine::run_live): how requests arrive and where their tokens and results go. Requests
/// carry a caller's tag, which every callback names.
struct LiveArrival {
  Request request;
  uint64_t tag = 0;
};
struct LiveHooks {
  /// Appends new requests to `out`; with `wait` (nothing is running) blocks until one comes. Returns false to
  /// end the session.
  std::function<bool(std::vector<LiveArrival>& out, bool wait)> arrivals;
  std::function<bool(uint64_t tag, int32_t token)> on_token;  ///< true stops that request
  std::function<void(uint64_t tag, Result&& result)> on_done;
  std::function<void(uint64_t tag, const Error& error)> on_error;  ///< a request refused or lost
  std::function<void(int64_t running, int64_t waiting)> on_step;   ///< after each step
};

class ServingEngine {
 public:
  ServingEngine(std::unique_ptr<ModelRunner> runner, const ServingLimits& limits);

  /// \brief Runs every request to completion; results in request order. on_token(request, token) sees each
  /// generated token and returns true to stop that request.
  std::vector<Result> run(const std::vector<Request>& requests, const TokenCallback& on_token = {});
  /// \brief Live serving until hooks.arrivals returns false: requests join the running batch at the next step;
  /// each gets on_done or on_error exactly once. A failed step (the cache cannot hold what must run) fails the
  /// requests of that batch through on_error and serving goes on with the next ones.
  void run_live(const LiveHooks& hooks);

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
