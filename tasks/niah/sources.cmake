# Needle in a haystack: the generator and its scoring.
target_sources(mlabench_harness PRIVATE tasks/niah/niah.cpp tasks/niah/needle_metrics.cpp)
