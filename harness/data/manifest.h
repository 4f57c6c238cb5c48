// A dataset manifest (datasets_manifest/<name>.json): where each file of the dataset comes from, its SHA-256,
// how to extract it, the splits, and the content digest of the extracted folder. docs/datasets.md has the format.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "harness/data/archive.h"

namespace mlabench::data {

/// \brief One file of a dataset as the mirror and the official URLs serve it.
struct ManifestFile {
  std::string path;               ///< relative to the dataset folder, '/'-separated; the mirror has it at <name>/<path>
  std::vector<std::string> urls;  ///< official download URLs, tried in order
  std::string sha256;             ///< of the file as served (before extraction); "" = not pinned
  ArchiveKind extract = ArchiveKind::NONE;  ///< extracted in place, into the folder that holds the file
};

/// \brief A split and the files (globs, relative to the dataset folder) that hold its rows.
struct ManifestSplit {
  std::string name;
  int64_t rows = 0;
  std::vector<std::string> files;
};

struct DatasetManifest {
  std::string name;  ///< = the manifest's file stem; the dataset folder and the mirror folder are named so
  std::string version;
  std::string description;
  std::string license;
  std::string homepage;
  std::string format;
  std::vector<ManifestSplit> splits;
  std::vector<ManifestFile> files;
  std::vector<std::string> digest_files;  ///< globs selecting the files the content digest covers
  std::string content_sha256;             ///< digest.h content_digest() of the extracted folder
  std::filesystem::path manifest_path;
};

/// \brief Reads and validates `<manifests_dir>/<name>.json`. Throws Error naming the file and field.
DatasetManifest load_manifest(const std::filesystem::path& manifests_dir, const std::string& name);

/// \brief The stems of the `*.json` files in `manifests_dir`, sorted.
std::vector<std::string> manifest_names(const std::filesystem::path& manifests_dir);

}  // namespace mlabench::data
