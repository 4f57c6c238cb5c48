// libcurl transfer of one URL into `<dest>.part`. The response status is looked at when the first body byte
// arrives, because that is when it is known which of three things the body is: the rest of the file (206 with a
// Content-Range that starts where the .part ends), the whole file (200: the server ignored Range, so the .part
// is truncated), or an error page (discarded, so it never lands in the .part). The timeout is a low-speed limit
// (fewer than 1 byte/s for N seconds) rather than a total time, so a large file on a slow link still completes.
#include "harness/data/download.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string_view>

namespace mlabench::data {

namespace fs = std::filesystem;

namespace {

struct CurlFree {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};

struct Transfer {
  CURL* curl = nullptr;
  FILE* out = nullptr;
  int64_t resume_from = 0;
  int64_t received = 0;
  bool status_seen = false;
  bool discard = false;
  std::string content_range;  // of the latest response (redirects send several)
  std::string error;          // set when the write callback aborts the transfer
  std::string url;
  const std::function<void(const std::string&)>* log = nullptr;
};

bool starts_with_ignore_case(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  return true;
}

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * count);
  if (line.starts_with("HTTP/")) {
    t->content_range.clear();
  } else if (starts_with_ignore_case(line, "content-range:")) {
    line.remove_prefix(14);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n' || line.back() == ' ')) line.remove_suffix(1);
    t->content_range = std::string(line);
  }
  return size * count;
}

// The first byte position of "bytes START-END/TOTAL", or -1.
int64_t content_range_start(const std::string& value) {
  if (!value.starts_with("bytes ")) return -1;
  int64_t v = 0;
  size_t i = 6;
  for (; i < value.size() && value[i] >= '0' && value[i] <= '9'; ++i) v = v * 10 + (value[i] - '0');
  return i > 6 && i < value.size() && value[i] == '-' ? v : -1;
}

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t bytes = size * count;
  if (!t->status_seen) {
    t->status_seen = true;
    long status = 0;
    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200 && status != 206) {
      t->discard = true;
    } else if (t->resume_from > 0 && status == 206) {
      const int64_t start = content_range_start(t->content_range);
      if (start != t->resume_from) {
        t->error = fmt::format("asked {} to resume at byte {}, it answered Content-Range \"{}\"", t->url,
                               t->resume_from, t->content_range);
        return 0;  // aborts the transfer
      }
    } else if (t->resume_from > 0) {
      if (*t->log)
        (*t->log)(fmt::format("{} ignored the Range request (HTTP {}); downloading from the start", t->url, status));
      std::fflush(t->out);
      if (ftruncate(fileno(t->out), 0) != 0) {
        t->error = "cannot truncate the partial download";
        return 0;
      }
      t->resume_from = 0;
    }
  }
  if (t->discard) return bytes;
  if (std::fwrite(data, 1, bytes, t->out) != bytes) {
    t->error = "cannot write the partial download (disk full?)";
    return 0;
  }
  t->received += static_cast<int64_t>(bytes);
  return bytes;
}

// The attempts of download_file; a failure may leave an empty .part behind, which the caller removes.
DownloadResult download_attempts(const std::string& url, const fs::path& dest, const fs::path& part,
                                 const DownloadOptions& options) {
  static std::once_flag curl_init;
  std::call_once(curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  std::error_code ec;
  fs::create_directories(dest.parent_path(), ec);
  const long low_speed_seconds = std::max(1L, static_cast<long>(std::ceil(options.timeout_seconds)));
  std::string last_error = fmt::format("no attempt was made to download {}", url);
  for (int attempt = 1; attempt <= options.max_attempts; ++attempt) {
    const int64_t have = fs::exists(part, ec) ? static_cast<int64_t>(fs::file_size(part, ec)) : 0;
    std::unique_ptr<FILE, int (*)(FILE*)> out(std::fopen(part.c_str(), "ab"), &std::fclose);
    if (!out) return {DownloadStatus::FAILED, fmt::format("cannot create {} to download {} into", part.string(), url)};
    std::unique_ptr<CURL, CurlFree> curl(curl_easy_init());
    if (!curl) return {DownloadStatus::FAILED, "curl_easy_init failed"};
    Transfer t;
    t.curl = curl.get();
    t.out = out.get();
    t.resume_from = have;
    t.url = url;
    t.log = &options.log;
    char curl_error[CURL_ERROR_SIZE] = {};
    const std::string range = fmt::format("{}-", have);
    CURL* c = curl.get();
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "mlabench/" MLABENCH_VERSION);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options.timeout_seconds * 1000));
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, low_speed_seconds);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_error);
    if (have > 0) curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());
    const CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    const bool closed = std::fclose(out.release()) == 0;
    if (!t.error.empty()) {
      // A server that resumed at the wrong byte: start over rather than splice mismatched pieces.
      fs::remove(part, ec);
      last_error = t.error;
      continue;
    }
    if (status == 416 && have > 0) {  // the .part is not a prefix the server can continue
      fs::remove(part, ec);
      last_error = fmt::format("HTTP 416 (range not satisfiable) from {} for bytes {}-", url, have);
      continue;
    }
    if (status == 404 || status == 410) return {DownloadStatus::NOT_FOUND, fmt::format("HTTP {} from {}", status, url)};
    if (status >= 300 || (rc == CURLE_OK && status != 200 && status != 206))
      return {DownloadStatus::FAILED, fmt::format("HTTP {} from {}", status, url)};
    if (rc == CURLE_OK) {
      if (!closed) return {DownloadStatus::FAILED, fmt::format("cannot write {} (disk full?)", part.string())};
      fs::rename(part, dest, ec);
      if (ec) return {DownloadStatus::FAILED, fmt::format("cannot rename {}: {}", part.string(), ec.message())};
      return {DownloadStatus::OK, ""};
    }
    const std::string reason = curl_error[0] ? curl_error : curl_easy_strerror(rc);
    last_error = rc == CURLE_OPERATION_TIMEDOUT
                     ? fmt::format("{}: timed out, no data for {} s ({})", url, low_speed_seconds, reason)
                     : fmt::format("{}: {} (curl error {})", url, reason, static_cast<int>(rc));
    if (t.received == 0) break;  // no progress: another attempt would fail the same way
    if (options.log)
      options.log(fmt::format("{}: transfer cut after {} bytes ({}); resuming", url, have + t.received, reason));
  }
  return {DownloadStatus::FAILED, last_error};
}

}  // namespace

DownloadResult download_file(const std::string& url, const fs::path& dest, const DownloadOptions& options) {
  const fs::path part = dest.string() + ".part";
  DownloadResult result = download_attempts(url, dest, part, options);
  std::error_code ec;
  if (result.status != DownloadStatus::OK && fs::exists(part, ec) && fs::file_size(part, ec) == 0) fs::remove(part, ec);
  return result;
}

}  // namespace mlabench::data
