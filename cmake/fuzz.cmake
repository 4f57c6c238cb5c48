# libFuzzer targets (issue 17): -DMLABENCH_FUZZ=ON with clang. Only the parser sources the targets reach are
# compiled (an OBJECT library, not the whole engine/harness): the build is part of the CI budget.
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "MLABENCH_FUZZ=ON needs clang (libFuzzer): configure with CC=clang CXX=clang++ "
                      "(Debian: apt-get install clang libclang-rt-14-dev); this compiler is ${CMAKE_CXX_COMPILER_ID}")
endif()
if(MLABENCH_HAS_CUDA)
  message(FATAL_ERROR "MLABENCH_FUZZ=ON needs -DMLABENCH_CUDA=OFF (the targets are host parsers)")
endif()

set(MLABENCH_FUZZ_FLAGS -O1 -g1 -fno-omit-frame-pointer -fno-sanitize-recover=all)
add_library(mlabench_fuzz_parsers OBJECT
  core/check.cpp
  core/input_file.cpp
  core/json_limits.cpp
  core/json_fields.cpp
  core/utf8.cpp
  engine/core/dtype.cpp
  engine/core/npy.cpp
  engine/model/config.cpp
  engine/weights/safetensors.cpp
  engine/tokenizer/unicode.cpp
  engine/tokenizer/regex.cpp
  engine/tokenizer/normalized_string.cpp
  engine/tokenizer/normalizers.cpp
  engine/tokenizer/pre_tokenizers.cpp
  engine/tokenizer/decoders.cpp
  engine/tokenizer/bpe.cpp
  engine/tokenizer/hf_tokenizer.cpp
  engine/tokenizer/chat_template.cpp
  engine/tokenizer/sentencepiece_tokenizer.cpp
  tasks/code/pickle_string.cpp
  harness/data/archive.cpp
  harness/data/manifest.cpp
  reports/report_inputs.cpp
  # The metric registry the report reader asks which metrics are proportions, and the scores it points to.
  metrics/metrics.cpp
  metrics/registry.cpp
  metrics/needle.cpp
  reports/compare_section.cpp  # report --compare documents, loaded by load_report_inputs
  harness/serve/openai_protocol.cpp
  harness/replay_file.cpp
  harness/task_override.cpp
)
# Fuzz targets take sources from several folders without their libraries, so they see the whole source root (the
# layering is enforced by the libraries themselves, cmake/layering.cmake).
target_include_directories(mlabench_fuzz_parsers PUBLIC ${PROJECT_SOURCE_DIR}/core/include
                           ${PROJECT_SOURCE_DIR}/engine/include ${PROJECT_SOURCE_DIR})
target_link_libraries(mlabench_fuzz_parsers PUBLIC fmt::fmt nlohmann_json::nlohmann_json PkgConfig::PCRE2
                      PkgConfig::UTF8PROC PkgConfig::LIBARCHIVE PkgConfig::SENTENCEPIECE ZLIB::ZLIB)
target_compile_options(mlabench_fuzz_parsers PRIVATE -fsanitize=fuzzer-no-link,address,undefined ${MLABENCH_FUZZ_FLAGS})

# The task spec reader and what it validates names against: the real hook registries (readers, subtask and doc
# hooks, generators, code scorers), hence NIAH, LiveCodeBench, HumanEval and the sandbox they grade in. Only
# fuzz_task_spec links these.
add_library(mlabench_fuzz_task_spec OBJECT
  tasks/spec.cpp
  tasks/template.cpp
  tasks/data_table.cpp
  tasks/hooks.cpp
  tasks/niah/niah.cpp
  engine/tokenizer/tokenizer_loader.cpp  # StreamDecoder: NIAH cuts its haystack at token boundaries
  tasks/code/scorer.cpp
  tasks/code/humaneval.cpp
  tasks/code/humaneval_outputs.cpp
  tasks/code/plain_value.cpp
  tasks/code/livecodebench.cpp
  tasks/code/livecodebench_grading.cpp
  core/digest.cpp
  sandbox/pool.cpp
  sandbox/sandbox.cpp
  sandbox/sandbox_child.cpp
  sandbox/seccomp_filter.cpp
)
target_link_libraries(mlabench_fuzz_task_spec PUBLIC mlabench_fuzz_parsers OpenSSL::Crypto PkgConfig::SECCOMP)
# libseccomp's SCMP_A0 compound literal leaves a field to zero, which clang's -Wextra reports (gcc's does not).
set_source_files_properties(sandbox/seccomp_filter.cpp PROPERTIES
  COMPILE_OPTIONS -Wno-missing-field-initializers)
target_compile_options(mlabench_fuzz_task_spec PRIVATE -fsanitize=fuzzer-no-link,address,undefined
  ${MLABENCH_FUZZ_FLAGS})

set(MLABENCH_FUZZ_TARGETS safetensors config tokenizer sentencepiece chat_template pickle_string manifest report archive
    serve_request replay task_spec)
foreach(name IN LISTS MLABENCH_FUZZ_TARGETS)
  add_executable(fuzz_${name} tests/fuzz/fuzz_${name}.cpp)
  target_link_libraries(fuzz_${name} PRIVATE mlabench_fuzz_parsers)
  target_compile_options(fuzz_${name} PRIVATE -fsanitize=fuzzer,address,undefined ${MLABENCH_FUZZ_FLAGS})
  target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer,address,undefined)
endforeach()
target_link_libraries(fuzz_task_spec PRIVATE mlabench_fuzz_task_spec)
# The include-only defaults (_*.json) a fuzzed spec may include, copied beside it.
target_compile_definitions(fuzz_task_spec PRIVATE MLABENCH_FUZZ_SPECS_DIR="${PROJECT_SOURCE_DIR}/tasks/specs")
# The paper numbers the report loader always reads (the source tree's; the real file, not a fuzzed one).
target_compile_definitions(fuzz_report PRIVATE
  MLABENCH_FUZZ_PAPER_FILE="${PROJECT_SOURCE_DIR}/reports/paper/deepseek_v2.json")
target_compile_definitions(mlabench_fuzz_parsers PRIVATE
  MLABENCH_PAPER_NUMBERS_DIR="${PROJECT_SOURCE_DIR}/reports/paper" MLABENCH_VERSION="${PROJECT_VERSION}")
