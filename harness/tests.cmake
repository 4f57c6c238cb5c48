# Metrics and the evaluator (replay and engine backends, resume, results files).
mlabench_add_harness_test(test_metrics harness metrics/test_metrics.cpp)
mlabench_add_harness_test(test_evaluator harness harness/test_evaluator.cpp harness/test_shards.cpp)
add_dependencies(test_evaluator mlabench)
