# The evaluator: backends (engine, replay), the run loop with resumable samples files, results.json.
target_sources(mlabench_harness PRIVATE
  harness/backend.cpp
  # `mlabench compare`: paired statistics of runs (reads run folders; metrics/paired_stats).
  harness/compare.cpp
  # The evaluator, one file per job: the run loop (evaluator.cpp), --gen-kwargs, the run folder and samples
  # journal, progress, the scoring step, aggregation, results assembly, the printed summary.
  harness/evaluator.cpp
  harness/gen_kwargs.cpp
  harness/run_folder.cpp
  harness/progress.cpp
  harness/scoring.cpp
  harness/aggregation.cpp
  harness/results_assembly.cpp
  harness/guards.cpp
  harness/summary_table.cpp
  # --backend openai:URL: an OpenAI-compatible server as a backend, over libcurl multi.
  harness/http_client.cpp
  harness/remote_backend.cpp
  harness/oracle.cpp
  # Light parsers with no engine dependency (also built into the fuzz targets, cmake/fuzz.cmake).
  harness/replay_file.cpp
  harness/task_override.cpp
  harness/shards.cpp
  # `mlabench ablate`'s variant configs and the paper's KV-cache tables (no engine).
  harness/ablation.cpp
  # --check-invariance: documents re-run one at a time against the batched run.
  harness/invariance.cpp
  # `mlabench serve`: the OpenAI protocol (no HTTP, no engine) and the HTTP server over a live session.
  harness/serve/openai_protocol.cpp
  harness/serve/server.cpp
)
