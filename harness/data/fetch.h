// Datasets: manifests (datasets_manifest/<name>.json), download with libcurl into a cache, resume, verify by a
// content digest over the extracted files, extract zip / tar / gzip. A mirror (a folder laid out like
// ../shared/datasets, or a URL prefix) stands in for the network. docs/datasets.md describes the manifest format.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "harness/data/archive.h"

namespace mlabench::data {

struct FetchOptions {
  std::filesystem::path cache_dir;     ///< default: $MLABENCH_DATA_DIR, else $XDG_CACHE_HOME/mlabench/datasets, else ~/.cache/...
  std::string mirror;                  ///< a folder or an http(s)/file URL prefix; default: $MLABENCH_DATA_MIRROR
  std::filesystem::path manifests_dir;  ///< default: the source tree's datasets_manifest (MLABENCH_MANIFESTS_DIR)
  bool allow_network = true;           ///< false: only the cache and the mirror
  double timeout_seconds = 60;         ///< no byte received for this long: the transfer fails
  ArchiveLimits archive_limits;        ///< caps on what each archive may expand to (bytes, member count)
  std::function<void(const std::string&)> log;  ///< progress lines; may be empty
};

/// \brief Makes dataset `name` present and verified in the cache (downloading or copying from the mirror,
/// extracting archives) and returns its folder, whose layout the manifest defines. Already verified: returns
/// at once. Throws Error saying which file is missing and how to supply it (mirror, network) when it cannot.
std::filesystem::path ensure_dataset(const std::string& name, const FetchOptions& options = {});

/// \brief Names of the datasets that have a manifest.
std::vector<std::string> list_datasets(const FetchOptions& options = {});

/// \brief The cache folder `options` stands for: cache_dir, else the environment defaults listed there.
/// Throws Error when none is set (no HOME).
std::filesystem::path resolve_cache_dir(const FetchOptions& options = {});

/// \brief The manifests folder `options` stands for: manifests_dir, else the source tree's datasets_manifest.
std::filesystem::path resolve_manifests_dir(const FetchOptions& options = {});

/// \brief The folder of dataset `name` when it is in the cache and verified, std::nullopt otherwise. Copies and
/// downloads nothing (it may re-hash the folder when its files changed since verification).
std::optional<std::filesystem::path> find_verified_dataset(const std::string& name, const FetchOptions& options = {});

}  // namespace mlabench::data
