# Datasets: manifests, download, verification, extraction (harness/data/fetch.h). Owned by the datasets code.
target_sources(mlabench_harness PRIVATE
  harness/data/archive.cpp
  harness/data/download.cpp
  harness/data/fetch.cpp
  harness/data/manifest.cpp
)
