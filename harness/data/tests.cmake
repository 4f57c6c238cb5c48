# Dataset tests: manifests, archives, the cache, a mirror folder (the real ../shared/datasets when present), and
# downloads from an HTTP server the test runs on 127.0.0.1.
mlabench_add_harness_test(test_fetch harness harness/test_fetch.cpp)
mlabench_add_harness_test(test_archive harness harness/test_archive.cpp)
