# Report tests: charts, escaping, determinism, Markdown/CSV, and the headless-browser check of a real report.
mlabench_add_harness_test(test_svg_chart reports reports/test_svg_chart.cpp)
target_link_libraries(test_svg_chart PRIVATE mlabench_reports)
mlabench_add_harness_test(test_report reports reports/test_report.cpp)
target_link_libraries(test_report PRIVATE mlabench_reports)
add_dependencies(test_report mlabench)

# The browser test: real runs (gold replay, the engine on a NIAH grid, hostile output) and three committed GPU
# bench JSON files rendered into one report, opened in headless Chromium (Debian's `chromium`; skipped with a
# message when it is not installed). The page, its screenshot and the Markdown/CSV land in artifacts/report_browser.
add_executable(write_gold_replay browser/write_gold_replay.cpp)
target_include_directories(write_gold_replay PRIVATE ${PROJECT_SOURCE_DIR})
target_link_libraries(write_gold_replay PRIVATE mlabench_harness)
include(${PROJECT_SOURCE_DIR}/tests/browser/browser.cmake)
add_test(NAME report_in_browser
  COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/tests/browser/report_browser_test.py
    --mlabench $<TARGET_FILE:mlabench> --gold-replay-tool $<TARGET_FILE:write_gold_replay>
    --checker ${MLABENCH_BROWSER_CHECKER} --source-dir ${PROJECT_SOURCE_DIR}
    --mirror ${PROJECT_SOURCE_DIR}/../shared/datasets --work ${CMAKE_BINARY_DIR}/report_browser_work
    --artifacts ${CMAKE_BINARY_DIR}/artifacts/report_browser)
# Label slow: CI's MLABENCH_TEST_SHORT=1 runs its NIAH grid at about half the lengths (report_browser_test.py).
set_tests_properties(report_in_browser PROPERTIES LABELS "browser;reports;slow" SKIP_RETURN_CODE 77 TIMEOUT 900)
# The Paired comparison section (report --compare) from a real `mlabench compare` document of MMLU replay runs.
mlabench_add_harness_test(test_compare_section reports reports/test_compare_section.cpp)
target_link_libraries(test_compare_section PRIVATE mlabench_reports)
