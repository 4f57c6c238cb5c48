// SHA-256 of bytes and files, the glob rule of a manifest's `digest_files`, and the content digest of a
// dataset folder (docs/datasets.md, "Content digest").
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace mlabench::data {

/// \brief SHA-256 of `bytes` as 64 lowercase hex digits.
std::string sha256_hex(std::string_view bytes);

/// \brief SHA-256 of `bytes` in base64 (44 characters), the form a Content-Security-Policy hash source takes.
std::string sha256_base64(std::string_view bytes);

/// \brief SHA-256 of the bytes of `file` as 64 lowercase hex digits. Throws Error when it cannot be read.
std::string sha256_file_hex(const std::filesystem::path& file);

/// \brief Whether the relative, '/'-separated `path` matches `pattern`: `*`, `?` and `[...]` match within one
/// path segment (fnmatch), and a segment that is exactly `**` matches any number of segments, none included.
bool glob_match(std::string_view pattern, std::string_view path);

/// \brief One file a digest covers: its path relative to the root ('/'-separated) and what stat says of it.
struct SelectedFile {
  std::string path;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};

/// \brief The regular files under `root` that any of `globs` selects, sorted by path byte by byte. Names that
/// start with '.' (the verification marker, editor and system files) are never selected.
std::vector<SelectedFile> select_files(const std::filesystem::path& root, const std::vector<std::string>& globs);

/// \brief The content digest of `root`: SHA-256 over the concatenated lines "<path>\t<sha256 of the file>\n"
/// of the files select_files(root, globs) gives, in that order. Throws Error when no file is selected.
std::string content_digest(const std::filesystem::path& root, const std::vector<std::string>& globs);

}  // namespace mlabench::data
