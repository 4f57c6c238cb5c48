// HTTP(S) download of one file with libcurl: into `<dest>.part`, resumed with a Range request when that exists,
// renamed to `<dest>` once complete.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

namespace mlabench::data {

struct DownloadOptions {
  double timeout_seconds = 60;  ///< connecting, or receiving no byte, for this long fails the transfer
  int max_attempts = 5;         ///< transfers cut short after some progress are resumed up to this many times
  std::function<void(const std::string&)> log;  ///< may be empty
};

enum class DownloadStatus {
  OK,         ///< `dest` holds the complete body
  NOT_FOUND,  ///< HTTP 404 or 410: the URL does not have the file
  FAILED,     ///< anything else; `message` says what (HTTP status, curl error, timeout)
};

struct DownloadResult {
  DownloadStatus status = DownloadStatus::FAILED;
  std::string message;  ///< names the URL; empty when OK
};

/// \brief Downloads `url` to `dest`, following redirects. A `<dest>.part` left by an interrupted transfer (this
/// call's or an earlier process's) is continued with `Range: bytes=<size>-`; a server that answers 200 instead
/// of 206 is read from the start. The `.part` file stays after a failure so that the next call resumes it.
DownloadResult download_file(const std::string& url, const std::filesystem::path& dest, const DownloadOptions& options);

}  // namespace mlabench::data
