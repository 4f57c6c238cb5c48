# The evaluator: backends (engine, replay), the run loop with resumable samples files, results.json.
target_sources(mlabench_harness PRIVATE
  harness/backend.cpp
  harness/evaluator.cpp
  harness/oracle.cpp
  harness/shards.cpp
)
