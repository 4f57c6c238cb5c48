target_sources(mlabench_harness PRIVATE
  metrics/metrics.cpp
  metrics/registry.cpp
)
