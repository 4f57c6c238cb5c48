# Needle-in-a-haystack tests.
mlabench_add_harness_test(test_niah tasks niah/test_niah.cpp)
# The grid through the prefix cache: the bundled model via the evaluator, and the paper's grid from token counts
# (short by default; MLABENCH_NIAH_FULL_GRID=1 tokenizes the 12 x 12 grid to 128K).
mlabench_add_harness_test(test_niah_prefix_sharing tasks niah/test_niah_prefix_sharing.cpp)
mlabench_label_slow(tasks NiahPrefixSharing.EngineComputesWhatThePromptPrefixesImply)
