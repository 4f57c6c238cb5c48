# Code-execution tasks: the scorer registry, HumanEval, LiveCodeBench.
target_sources(mlabench_tasks PRIVATE
  tasks/code/humaneval.cpp
  tasks/code/humaneval_outputs.cpp
  tasks/code/plain_value.cpp
  tasks/code/scorer.cpp
)
target_sources(mlabench_tasks PRIVATE
  tasks/code/livecodebench.cpp
  tasks/code/livecodebench_grading.cpp
  tasks/code/pickle_string.cpp
)
