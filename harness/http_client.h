// A small HTTP client over libcurl's multi interface for the remote (OpenAI-compatible) backend: many requests in
// flight at once (bounded), each with a deadline, retried with exponential backoff and jitter where a retry can
// help (429, 5xx, connection errors), and stopped at the first request that cannot succeed so the caller can name
// it. Headers (the API key among them) are never logged or put in an error message.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mlabench::harness {

struct HttpRequest {
  std::string method = "POST";  ///< "GET" or "POST"
  std::string url;
  std::string body;             ///< POST: JSON text
};

struct HttpResponse {
  long status = 0;        ///< the HTTP status of the last attempt; 0 when none came (error says why)
  std::string body{};
  std::string error{};    ///< transport failure of the last attempt ("" when a response came)
  bool timed_out = false; ///< the last attempt ran past the per-request timeout
  int attempts = 0;
  bool ok() const { return error.empty() && status >= 200 && status < 300; }
};

struct HttpClientOptions {
  int64_t concurrency = 64;          ///< requests in flight at most
  double timeout_seconds = 600;      ///< per attempt, connection to last byte
  int max_attempts = 7;              ///< the first try and up to 6 retries
  double backoff_base_seconds = 1;   ///< retry k waits a uniform draw in [d/2, d], d = min(max, base * 2^(k-1))
  double backoff_max_seconds = 60;
  std::string bearer_token;          ///< sent as "Authorization: Bearer ..." when non-empty; never logged
  std::function<void(const std::string&)> log;  ///< retries are reported here (no headers, no bodies)
};

/// \brief Whether an attempt's outcome is worth retrying: 429, 5xx, or a connection failure (refused, reset, an
/// empty reply). A timeout is not retried (a hung server would hold the run for retries x timeout).
bool http_retryable(const HttpResponse& r);

class HttpClient {
 public:
  explicit HttpClient(HttpClientOptions options);
  /// \brief Performs every request, at most `concurrency` at once; returns their responses in order. When one
  /// request fails for good (not 2xx after its retries, or not retryable), the requests not finished yet are
  /// abandoned (their responses have status 0 and error "abandoned") and run returns at once: the caller reports
  /// the first failure. Never throws for HTTP or transport errors.
  std::vector<HttpResponse> run(const std::vector<HttpRequest>& requests);
  /// \brief One request (with retries).
  HttpResponse perform(const HttpRequest& request) { return run({request}).at(0); }
  const HttpClientOptions& options() const { return opt_; }

 private:
  HttpClientOptions opt_;
};

}  // namespace mlabench::harness
