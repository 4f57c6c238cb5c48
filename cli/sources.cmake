# The mlabench executable: the entry point and one file per subcommand (the library logic is in harness/ and
# reports/; bench_runner.h is the engine benchmark `bench` and `ablate` share).
target_sources(mlabench PRIVATE
  cli/main.cpp
  cli/cli_ablate.cpp
  cli/cli_bench.cpp
  cli/cli_compare.cpp
  cli/cli_fetch.cpp
  cli/cli_model.cpp
  cli/cli_report.cpp
  cli/cli_run.cpp
  cli/cli_serve.cpp
)
