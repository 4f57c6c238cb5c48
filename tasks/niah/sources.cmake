# Needle in a haystack: the generator (its scores are metrics/needle.cpp).
target_sources(mlabench_tasks PRIVATE tasks/niah/niah.cpp)
