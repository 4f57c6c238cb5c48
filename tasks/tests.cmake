# Task tests: golden prompts on the real data, spec format, data errors, the Python-compatible sampler.
mlabench_add_harness_test(test_tasks tasks tasks/test_tasks.cpp tasks/test_task_specs.cpp tasks/test_python_random.cpp)
