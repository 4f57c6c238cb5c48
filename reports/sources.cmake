# The report library: inputs (results.json, samples, bench JSON, the paper's numbers), SVG charts, HTML, Markdown, CSV.
target_sources(mlabench_reports PRIVATE
  reports/compare_section.cpp
  reports/html_report.cpp
  reports/ablation_section.cpp
  reports/report_inputs.cpp
  reports/run_health_section.cpp
  reports/svg_chart.cpp
  reports/text_report.cpp
)
