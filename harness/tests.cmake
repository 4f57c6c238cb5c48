# Metrics and the evaluator (replay and engine backends, resume, results files).
mlabench_add_harness_test(test_metrics harness metrics/test_metrics.cpp metrics/test_paired_stats.cpp)
mlabench_add_harness_test(test_evaluator harness harness/test_evaluator.cpp harness/test_shards.cpp)
mlabench_label_slow(harness Evaluator.NiahReplayAndASmallGridOnTheBundledModel)
add_dependencies(test_evaluator mlabench)
# Run-health guards (harness/guards.h), each tripped and not, replay runs and --strict; the metric registry.
mlabench_add_harness_test(test_guards harness harness/test_guards.cpp metrics/test_registry.cpp)
add_dependencies(test_guards mlabench)
# `mlabench serve` (harness/serve): protocol unit tests and an in-process server on a loopback port (tiny model,
# CPU); the load test (32 clients) is labelled harness-slow: `ctest -L slow` runs it at full size, CI's
# MLABENCH_TEST_SHORT=1 at a quarter.
mlabench_add_harness_test(test_serve harness harness/test_serve.cpp)
mlabench_add_harness_test(test_serve_load harness-slow harness/test_serve_load.cpp)
# --backend openai:URL (harness/remote_backend.cpp) against an in-process `serve` on a loopback port (results equal
# the engine backend's) and against stub servers (no prompt logprobs, 429/500, hangs, kills, bad answers).
mlabench_add_harness_test(test_remote_backend harness harness/test_remote_backend.cpp)
mlabench_label_slow(harness RemoteTest.ResultsEqualTheEngineBackendOnMmluGsm8kHumanEvalNiah
                    RemoteTest.ResumeAfterTheServerDiedResendsNothingRecorded)
add_dependencies(test_remote_backend mlabench)
# The official openai npm client against a running `mlabench serve` (tests/serve_client; tools/bootstrap.sh test
# runs npm ci there). Reports SKIPPED (exit 77) where node or node_modules are missing.
if(MLABENCH_HAS_HTTPLIB)
add_test(NAME serve_openai_client
         COMMAND ${PROJECT_SOURCE_DIR}/tests/serve_client/run.sh $<TARGET_FILE:mlabench>
                 ${MLABENCH_DATA_DIR}/models/mlabench-tiny-dsv2)
set_tests_properties(serve_openai_client PROPERTIES LABELS harness SKIP_RETURN_CODE 77 TIMEOUT 120)
endif()
# `mlabench ablate`: variants on the CPU engine, KV bytes against Table 1's formulas, the paper's configs, the command.
mlabench_add_harness_test(test_ablation harness harness/test_ablation.cpp)
add_dependencies(test_ablation mlabench)
# --check-invariance: documents re-run alone against the batched run (the CPU engine: invariant; a backend that is
# not: caught).
mlabench_add_harness_test(test_invariance harness harness/test_invariance.cpp)
mlabench_label_slow(harness Invariance.RunRecordsTheCheckInResultsSummaryAndReport)
add_dependencies(test_invariance mlabench)
# `mlabench compare` on real replay runs of MMLU (gold, always A, gold again; another num_fewshot is refused).
mlabench_add_harness_test(test_compare harness harness/test_compare.cpp)
add_dependencies(test_compare mlabench)
