# The evaluator: backends (engine, replay), the run loop with resumable samples files, results.json.
target_sources(mlabench_harness PRIVATE
  harness/backend.cpp
  # `mlabench compare`: paired statistics of runs (reads run folders; metrics/paired_stats).
  harness/compare.cpp
  harness/evaluator.cpp
  # --backend openai:URL: an OpenAI-compatible server as a backend, over libcurl multi.
  harness/http_client.cpp
  harness/remote_backend.cpp
  harness/oracle.cpp
  # Light parsers with no engine dependency (also built into the fuzz targets, cmake/fuzz.cmake).
  harness/replay_file.cpp
  harness/task_override.cpp
  harness/shards.cpp
  # `mlabench serve`: the OpenAI protocol (no HTTP, no engine) and the HTTP server over a live session.
  harness/serve/openai_protocol.cpp
  harness/serve/server.cpp
)
