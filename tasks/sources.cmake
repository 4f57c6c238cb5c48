# Task specs, data readers, prompt rendering, hooks (tasks/task.h). Owned by the tasks code.
target_sources(mlabench_tasks PRIVATE
  tasks/data_table.cpp
  tasks/hooks.cpp
  tasks/python_random.cpp
  tasks/spec.cpp
  tasks/task.cpp
  tasks/template.cpp
)
