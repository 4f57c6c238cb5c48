// A small HTTP/1.1 server for download tests: listens on 127.0.0.1 at a port the kernel picks, serves bodies
// from memory (one request per connection, then close), records each request's path and Range header, and
// fails on demand the ways real servers do: an error status, a response cut after N body bytes (once; Range
// requests that follow get 206), Range ignored (200 with the whole body), or silence for a while.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace mlabench::test {

struct HttpRoute {
  std::string body;
  int status = 200;            ///< anything but 200: sent with `body` as the error page
  int64_t cut_after = -1;      ///< >= 0: the first response to this path closes after this many body bytes
  bool honor_range = true;     ///< false: Range requests get 200 and the whole body
  double stall_seconds = 0;    ///< > 0: after reading the request, sends nothing for this long (or until shutdown)
};

struct HttpRequestRecord {
  std::string path;
  std::string range;  ///< the Range header's value, "" when absent
};

class HttpTestServer {
 public:
  HttpTestServer() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) throw std::runtime_error("socket() failed");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 16) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      throw std::runtime_error("cannot listen on 127.0.0.1");
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~HttpTestServer() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    acceptor_.join();
    for (std::thread& t : workers_) t.join();
    ::close(listen_fd_);
  }

  HttpTestServer(const HttpTestServer&) = delete;
  HttpTestServer& operator=(const HttpTestServer&) = delete;

  void route(const std::string& path, HttpRoute r) {
    std::lock_guard<std::mutex> lock(mu_);
    routes_[path] = std::move(r);
  }

  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

  std::vector<HttpRequestRecord> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

  std::vector<HttpRequestRecord> requests_for(const std::string& path) const {
    std::vector<HttpRequestRecord> out;
    for (const HttpRequestRecord& r : requests())
      if (r.path == path) out.push_back(r);
    return out;
  }

 private:
  void accept_loop() {
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_) return;
      }
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard<std::mutex> lock(mu_);
      workers_.emplace_back([this, fd] {
        handle(fd);
        ::close(fd);
      });
    }
  }

  static bool send_all(int fd, const char* data, size_t n) {
    while (n > 0) {
      const ssize_t w = ::send(fd, data, n, MSG_NOSIGNAL);
      if (w <= 0) return false;
      data += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }

  static std::string header_value(const std::string& head, const std::string& lower_name) {
    size_t start = head.find("\r\n");
    while (start != std::string::npos && start + 2 < head.size()) {
      const size_t end = head.find("\r\n", start + 2);
      const std::string line = head.substr(start + 2, end - start - 2);
      std::string lower;
      for (char c : line) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (lower.rfind(lower_name + ":", 0) == 0) {
        size_t v = lower_name.size() + 1;
        while (v < line.size() && line[v] == ' ') ++v;
        return line.substr(v);
      }
      start = end;
    }
    return "";
  }

  void handle(int fd) {
    std::string head;
    char buf[4096];
    while (head.find("\r\n\r\n") == std::string::npos) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) return;
      const ssize_t r = ::recv(fd, buf, sizeof buf, 0);
      if (r <= 0) return;
      head.append(buf, static_cast<size_t>(r));
    }
    const size_t sp1 = head.find(' '), sp2 = head.find(' ', sp1 + 1);
    const std::string path = head.substr(sp1 + 1, sp2 - sp1 - 1);
    const std::string range = header_value(head, "range");
    HttpRoute route;
    bool found = false, first = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      requests_.push_back({path, range});
      if (auto it = routes_.find(path); it != routes_.end()) {
        route = it->second;
        found = true;
        first = served_[path]++ == 0;
      }
    }
    if (route.stall_seconds > 0) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::duration<double>(route.stall_seconds), [this] { return stop_; });
      return;
    }
    if (!found) route = HttpRoute{"no such file\n", 404};
    int status = route.status;
    std::string body = route.body, extra;
    if (status == 200 && route.honor_range && range.rfind("bytes=", 0) == 0) {
      const uint64_t from = std::stoull(range.substr(6));
      if (from >= body.size()) {
        status = 416;
        extra = "Content-Range: bytes */" + std::to_string(body.size()) + "\r\n";
        body.clear();
      } else {
        status = 206;
        extra = "Content-Range: bytes " + std::to_string(from) + "-" + std::to_string(body.size() - 1) + "/" +
                std::to_string(body.size()) + "\r\n";
        body = body.substr(from);
      }
    }
    const char* reason = status == 200 ? "OK" : status == 206 ? "Partial Content" : status == 404 ? "Not Found" : "Error";
    const std::string headers = "HTTP/1.1 " + std::to_string(status) + " " + reason +
                                "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra +
                                "Accept-Ranges: bytes\r\nConnection: close\r\n\r\n";
    if (!send_all(fd, headers.data(), headers.size())) return;
    const size_t n = first && route.cut_after >= 0 ? std::min(body.size(), static_cast<size_t>(route.cut_after))
                                                   : body.size();
    send_all(fd, body.data(), n);
  }

  int listen_fd_ = -1;
  int port_ = 0;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::map<std::string, HttpRoute> routes_;
  std::map<std::string, int> served_;
  std::vector<HttpRequestRecord> requests_;
  std::thread acceptor_;
  std::vector<std::thread> workers_;
};

}  // namespace mlabench::test
