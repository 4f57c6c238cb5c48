# CLI subcommands that use the harness library.
target_sources(mlabench PRIVATE
  harness/cli_compare.cpp
  harness/cli_fetch.cpp
  harness/cli_report.cpp
  harness/cli_run.cpp
  harness/cli_serve.cpp
)
