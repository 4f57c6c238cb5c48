// A bounded load test of `mlabench serve` (harness/serve): 32 client threads x 20 requests (CI's short mode,
// MLABENCH_TEST_SHORT=1: x 5) on loopback against the bundled tiny model on the CPU. Every request must succeed
// within the time bound; greedy results must equal the same prompt's sequential result; p50/p99 latency printed.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "harness/serve/server.h"
#include "mlabench/engine.h"
#include "tests/test_util.h"

#ifdef MLABENCH_HAS_HTTPLIB
#include <httplib.h>
#endif

namespace mlabench {
namespace {

#ifdef MLABENCH_HAS_HTTPLIB

TEST(ServeLoad, ThirtyTwoClientsAllSucceed) {
  const std::string model = std::string(MLABENCH_TEST_DATA) + "/models/mlabench-tiny-dsv2";
  std::unique_ptr<Engine> engine = Engine::open({.model_dir = model, .n_threads = 1}).value();
  serve::Server server(*engine, {.port = 0, .model_name = "tiny"});
  server.start();
  const int n_clients = 32, per_client = test::short_mode() ? 5 : 20;
  const int n_prompts = 4;
  // The expected greedy text of each prompt, from the server itself, one request at a time.
  std::vector<std::string> want(n_prompts);
  httplib::Client seq("127.0.0.1", server.port());
  auto body = [](int p) {
    return nlohmann::json{{"prompt", "load test prompt " + std::to_string(p)}, {"max_tokens", 8}, {"temperature", 0}}
        .dump();
  };
  for (int p = 0; p < n_prompts; ++p) {
    auto r = seq.Post("/v1/completions", body(p), "application/json");
    ASSERT_TRUE(r && r->status == 200);
    want[static_cast<size_t>(p)] = nlohmann::json::parse(r->body)["choices"][0]["text"];
  }
  std::vector<std::vector<double>> latency(n_clients);
  std::vector<int> failures(n_clients, 0);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < n_clients; ++c)
    threads.emplace_back([&, c] {
      httplib::Client cli("127.0.0.1", server.port());
      cli.set_read_timeout(60);
      for (int i = 0; i < per_client; ++i) {
        const int p = (c + i) % n_prompts;
        const auto s = std::chrono::steady_clock::now();
        auto r = cli.Post("/v1/completions", body(p), "application/json");
        latency[static_cast<size_t>(c)].push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - s).count());
        if (!r || r->status != 200 ||
            nlohmann::json::parse(r->body)["choices"][0]["text"] != want[static_cast<size_t>(p)]) {
          ++failures[static_cast<size_t>(c)];
          std::fprintf(stderr, "client %d request %d: %s\n", c, i,
                       !r ? httplib::to_string(r.error()).c_str() : (std::to_string(r->status) + " " + r->body).c_str());
        }
      }
    });
  for (auto& t : threads) t.join();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<double> all;
  for (const auto& l : latency) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  const int failed = std::accumulate(failures.begin(), failures.end(), 0);
  std::printf("serve load: %zu requests from %d clients in %.2f s (%.1f req/s); latency p50 %.1f ms, p99 %.1f ms; "
              "%d failed\n",
              all.size(), n_clients, wall, static_cast<double>(all.size()) / wall, 1e3 * all[all.size() / 2],
              1e3 * all[std::min(all.size() - 1, all.size() * 99 / 100)], failed);
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(all.size(), static_cast<size_t>(n_clients * per_client));
  EXPECT_LT(wall, 60.0);
}

#else

TEST(ServeLoad, ThirtyTwoClientsAllSucceed) { GTEST_SKIP() << "built without cpp-httplib"; }

#endif

}  // namespace
}  // namespace mlabench
