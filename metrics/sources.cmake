target_sources(mlabench_harness PRIVATE
  metrics/metrics.cpp
  metrics/registry.cpp
  # The paired statistics of `mlabench compare` (McNemar, bootstrap, BH, MDD): no harness dependency.
  metrics/paired_stats.cpp
)
