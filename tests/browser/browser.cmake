# Headless-Chromium check of HTML reports (tests/browser/README.md). Included from the test tree; it registers the
# checker's self-test and sets MLABENCH_BROWSER_CHECKER for the tests that check real reports with it.
# Without chromium the tests report SKIPPED (exit 77); CI installs Debian's chromium package.
find_package(Python3 COMPONENTS Interpreter REQUIRED)

set(MLABENCH_BROWSER_CHECKER ${CMAKE_CURRENT_LIST_DIR}/check_report_in_browser.py)

# Screenshots and DOM dumps of every fixture stay in the build tree as artifacts.
add_test(NAME browser_checker_selftest
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/selftest.py
                 --checker ${MLABENCH_BROWSER_CHECKER}
                 --fixtures ${PROJECT_SOURCE_DIR}/tests/data/reports/browser
                 --out ${CMAKE_BINARY_DIR}/artifacts/browser_selftest)
set_tests_properties(browser_checker_selftest PROPERTIES LABELS browser SKIP_RETURN_CODE 77 TIMEOUT 300)
