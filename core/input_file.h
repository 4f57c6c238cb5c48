// Opening a file the user named: what is there must be a regular file. A FIFO would block the reader until some
// writer appeared (forever, in a batch job), a directory or device reads as an error far from its cause ("cannot
// mmap DIR/: No such device"), and a missing file deserves its own words. Every reader of a user-given input
// (model folders, tokenizers, datasets, replay files, report inputs) checks through here first.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace mlabench {

/// What `path` is, in words, for messages: "a regular file", "a directory", "a FIFO (named pipe)", "a socket",
/// "a character device", "a block device", "nothing (it does not exist)", "unreadable (...)".
std::string describe_file_kind(const std::filesystem::path& path);

/// Throws Error unless `path` (links followed) is a regular file; the message names `what` (e.g. "config.json of
/// the model"), the path and what lies there instead, with a HINT.
void require_regular_file(const std::filesystem::path& path, std::string_view what);

/// Throws Error when something exists at `path` that is not a regular file (a missing path is left to the caller,
/// whose message knows what should have been there).
void refuse_non_regular_file(const std::filesystem::path& path, std::string_view what);

/// require_regular_file, then the file opened for reading (binary); a failed open is an Error naming errno.
std::ifstream open_input_file(const std::filesystem::path& path, std::string_view what);

}  // namespace mlabench
