# Sandbox tests: isolation and limits against hostile programs.
mlabench_add_harness_test(test_sandbox sandbox sandbox/test_sandbox.cpp)
