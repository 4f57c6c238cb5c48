# Per-document metrics, filters, aggregation and the metric registry (metrics/README.md); PCRE2 for the filters.
target_sources(mlabench_metrics PRIVATE
  metrics/metrics.cpp
  metrics/registry.cpp
  # needle_recall and needle_score (the NIAH generator is tasks/niah).
  metrics/needle.cpp
  # The paired statistics of `mlabench compare` (McNemar, bootstrap, BH, MDD): no harness dependency.
  metrics/paired_stats.cpp
)
target_link_libraries(mlabench_metrics PRIVATE PkgConfig::PCRE2)
