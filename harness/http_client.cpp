#include "harness/http_client.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "core/check.h"

namespace mlabench::harness {

namespace {

using Clock = std::chrono::steady_clock;

size_t on_body(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

// One transfer in flight: the easy handle, its header list, what it has received.
struct Transfer {
  size_t index = 0;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  std::string body;
  char error[CURL_ERROR_SIZE] = {};
  ~Transfer() {
    if (easy) curl_easy_cleanup(easy);
    if (headers) curl_slist_free_all(headers);
  }
};

}  // namespace

bool http_retryable(const HttpResponse& r) {
  if (r.timed_out) return false;
  if (!r.error.empty()) return true;  // refused, reset, empty reply, DNS hiccup
  return r.status == 429 || r.status >= 500;
}

HttpClient::HttpClient(HttpClientOptions options) : opt_(std::move(options)) {
  static std::once_flag curl_init;
  std::call_once(curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  MLABENCH_CHECK(opt_.concurrency >= 1, "--concurrency {}: at least 1 request must be allowed in flight",
                 opt_.concurrency);
  MLABENCH_CHECK(opt_.timeout_seconds > 0, "--request-timeout {}: must be positive (seconds)", opt_.timeout_seconds);
  MLABENCH_CHECK(opt_.max_attempts >= 1, "an HTTP request needs at least one attempt");
}

std::vector<HttpResponse> HttpClient::run(const std::vector<HttpRequest>& requests) {
  std::vector<HttpResponse> out(requests.size());
  if (requests.empty()) return out;
  std::unique_ptr<CURLM, decltype(&curl_multi_cleanup)> multi(curl_multi_init(), &curl_multi_cleanup);
  MLABENCH_CHECK(multi != nullptr, "curl_multi_init failed");
  std::mt19937_64 rng(std::random_device{}());
  // Ready to start, and waiting for a retry's time.
  std::deque<size_t> ready;
  for (size_t i = 0; i < requests.size(); ++i) ready.push_back(i);
  std::multimap<Clock::time_point, size_t> waiting;
  std::map<CURL*, std::unique_ptr<Transfer>> active;
  size_t finished = 0;
  bool failed = false;
  std::vector<bool> done(requests.size(), false);
  size_t failed_index = 0;

  auto start = [&](size_t i) {
    const HttpRequest& rq = requests[i];
    auto t = std::make_unique<Transfer>();
    t->index = i;
    t->easy = curl_easy_init();
    MLABENCH_CHECK(t->easy != nullptr, "curl_easy_init failed");
    CURL* c = t->easy;
    curl_easy_setopt(c, CURLOPT_URL, rq.url.c_str());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "mlabench/" MLABENCH_VERSION);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(std::ceil(opt_.timeout_seconds * 1000)));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &t->body);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, t->error);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    t->headers = curl_slist_append(t->headers, "Accept: application/json");
    if (!opt_.bearer_token.empty())
      t->headers = curl_slist_append(t->headers, ("Authorization: Bearer " + opt_.bearer_token).c_str());
    if (rq.method == "POST") {
      t->headers = curl_slist_append(t->headers, "Content-Type: application/json");
      curl_easy_setopt(c, CURLOPT_POST, 1L);
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, rq.body.c_str());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(rq.body.size()));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, t->headers);
    ++out[i].attempts;
    curl_multi_add_handle(multi.get(), c);
    active[c] = std::move(t);
  };

  auto backoff = [&](int attempt) {
    const double d = std::min(opt_.backoff_max_seconds, opt_.backoff_base_seconds * std::ldexp(1.0, attempt - 1));
    return std::uniform_real_distribution<double>(d / 2, d)(rng);
  };

  while (finished < requests.size() && !failed) {
    const auto now = Clock::now();
    while (!waiting.empty() && waiting.begin()->first <= now) {
      ready.push_front(waiting.begin()->second);  // retries first
      waiting.erase(waiting.begin());
    }
    // A request waiting for its retry keeps its slot: an overloaded server gets fewer requests, not new ones.
    while (!ready.empty() && static_cast<int64_t>(active.size() + waiting.size()) < opt_.concurrency) {
      start(ready.front());
      ready.pop_front();
    }
    int running = 0;
    curl_multi_perform(multi.get(), &running);
    int left = 0;
    while (CURLMsg* m = curl_multi_info_read(multi.get(), &left)) {
      if (m->msg != CURLMSG_DONE) continue;
      auto it = active.find(m->easy_handle);
      if (it == active.end()) continue;
      Transfer& t = *it->second;
      HttpResponse& r = out[t.index];
      r.status = 0;
      r.error.clear();
      r.timed_out = m->data.result == CURLE_OPERATION_TIMEDOUT;
      if (m->data.result == CURLE_OK) {
        curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &r.status);
      } else {
        r.error = t.error[0] ? t.error : curl_easy_strerror(m->data.result);
      }
      r.body = std::move(t.body);
      const size_t index = t.index;
      curl_multi_remove_handle(multi.get(), t.easy);
      active.erase(it);
      if (r.ok()) {
        ++finished;
        done[index] = true;
      } else if (http_retryable(r) && r.attempts < opt_.max_attempts) {
        const double wait = backoff(r.attempts);
        if (opt_.log)
          opt_.log(fmt::format("retrying {} {} in {:.2f} s (attempt {} of {}): {}", requests[index].method,
                               requests[index].url, wait, r.attempts + 1, opt_.max_attempts,
                               r.error.empty() ? fmt::format("HTTP {}", r.status) : r.error));
        waiting.emplace(Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(wait)),
                        index);
      } else {
        failed = true;
        done[index] = true;
        failed_index = index;
      }
    }
    if (finished == requests.size() || failed) break;
    int timeout_ms = 100;
    if (!waiting.empty()) {
      const auto until = std::chrono::duration_cast<std::chrono::milliseconds>(waiting.begin()->first - Clock::now());
      timeout_ms = static_cast<int>(std::clamp<int64_t>(until.count(), 0, 100));
    }
    if (!active.empty()) {
      curl_multi_poll(multi.get(), nullptr, 0, timeout_ms, nullptr);
    } else if (timeout_ms > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
    }
  }
  for (auto& [easy, t] : active) curl_multi_remove_handle(multi.get(), easy);
  if (failed)
    for (size_t i = 0; i < out.size(); ++i)
      if (!done[i] && i != failed_index) {
        out[i].status = 0;
        out[i].error = "abandoned";
      }
  return out;
}

}  // namespace mlabench::harness
