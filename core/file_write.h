// Whole-file writes that a reader, a kill or a full disk never sees half done: results.json, run.json, merged
// shards, compare documents and reports all go through here.
#pragma once

#include <filesystem>
#include <string>

namespace mlabench {

/// \brief Writes `text` to `path` through a temporary file and a rename, so a reader never sees half a file.
/// Throws Error when the temporary cannot be created or written (the old file stays as it was).
void write_file_atomically(const std::filesystem::path& path, const std::string& text);

}  // namespace mlabench
