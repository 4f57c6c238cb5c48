# Code-execution task tests.
mlabench_add_harness_test(test_humaneval tasks code/test_humaneval.cpp code/test_plain_value.cpp)
mlabench_add_harness_test(test_livecodebench tasks code/test_livecodebench.cpp)
