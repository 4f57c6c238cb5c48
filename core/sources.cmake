# core/: what every other library builds on (README.md, "Layout"): checks and errors (check.h; Result and Error in
# include/mlabench/result.h, a public header), JSON field readers and size limits, size-capped input files, UTF-8,
# the A/B benchmarks' environment settings (env_setting.h), SHA-256 digests (OpenSSL's libcrypto) and atomic file
# writes. Nothing here knows models, tasks or runs.
target_sources(mlabench_core PRIVATE
  core/check.cpp
  core/digest.cpp
  core/env_setting.cpp
  core/file_write.cpp
  core/input_file.cpp
  core/json_fields.cpp
  core/json_limits.cpp
  core/utf8.cpp
)
target_include_directories(mlabench_core PUBLIC ${PROJECT_SOURCE_DIR}/core/include)
target_link_libraries(mlabench_core PUBLIC fmt::fmt nlohmann_json::nlohmann_json PRIVATE OpenSSL::Crypto)
