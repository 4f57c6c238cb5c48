// --backend openai:URL (harness/remote_backend.cpp): against `mlabench serve` in-process on a loopback port (the
// bundled tiny model, CPU) it gives the results of the in-process engine backend; against stub servers (cpp-httplib,
// in this file) it refuses loglikelihood tasks on a server without prompt log-probabilities while generation still
// runs, retries 429/500, times out a hung request, resumes after the server died mid-run re-sending nothing that was
// recorded, sends the API key as a Bearer header and records it nowhere, and names the endpoint in every error.
// Also --device cuda:N's parsing and validation (no GPU needed).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "harness/evaluator.h"
#include "harness/http_client.h"
#include "harness/remote_backend.h"
#include "harness/serve/server.h"
#include "mlabench/engine.h"
#include "tests/harness/eval_test_util.h"

#ifdef MLABENCH_HAS_HTTPLIB
#include <httplib.h>
#endif

namespace mlabench::harness {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using test::fresh_dir;
using test::mirror_fetch;

// ---- no server needed --------------------------------------------------------------------------------------------

TEST(RemoteBackendUnits, BaseUrlsAreCheckedAndNormalized) {
  EXPECT_EQ(normalize_base_url("http://127.0.0.1:8000/v1/"), "http://127.0.0.1:8000/v1");
  EXPECT_EQ(normalize_base_url("https://api.example.com/v1"), "https://api.example.com/v1");
  for (const char* bad : {"127.0.0.1:8000/v1", "http://", "ftp://host/v1", "http:///v1", "http://h/v1?x=1", ""})
    test::expect_error_with([&] { normalize_base_url(bad); }, {"not an http(s) base URL", "HINT"}, bad);
}

TEST(RemoteBackendUnits, RetryableOutcomes) {
  EXPECT_TRUE(http_retryable({.status = 429}));
  EXPECT_TRUE(http_retryable({.status = 500}));
  EXPECT_TRUE(http_retryable({.status = 503}));
  EXPECT_TRUE(http_retryable({.status = 0, .error = "Connection refused"}));
  EXPECT_FALSE(http_retryable({.status = 0, .error = "Timeout", .timed_out = true}));
  EXPECT_FALSE(http_retryable({.status = 400}));
  EXPECT_FALSE(http_retryable({.status = 404}));
}

TEST(DeviceIndex, CudaNParsesAndIsCheckedAgainstTheCount) {
  EXPECT_EQ(device_spec_from_name("cpu")->device, Device::CPU);
  EXPECT_EQ(device_spec_from_name("cuda")->device, Device::CUDA);
  EXPECT_EQ(device_spec_from_name("cuda")->index, 0);
  EXPECT_EQ(device_spec_from_name("cuda:0")->index, 0);
  EXPECT_EQ(device_spec_from_name("cuda:3")->index, 3);
  EXPECT_EQ(device_spec_from_name("cuda:12")->device, Device::CUDA);
  for (const char* bad : {"cuda:", "cuda:-1", "cuda:x", "cuda:1x", "cuda:+1", "cpu:0", "gpu", "cuda:99999999999"})
    EXPECT_FALSE(device_spec_from_name(bad).has_value()) << bad;
  check_cuda_device_index(0, 1);
  check_cuda_device_index(7, 8);
  test::expect_error_with([] { check_cuda_device_index(2, 2); }, {"cuda:2", "2 CUDA device(s)", "0 .. 1", "HINT"});
  test::expect_error_with([] { check_cuda_device_index(-1, 4); }, {"cuda:-1", "HINT"});
}

// The command line: a bad --device is refused by the parser naming the accepted forms; cuda:N on this CPU-only
// build (or a machine without that GPU) fails with what to do, not a crash.
TEST(DeviceIndex, TheCommandLineAcceptsCudaN) {
  auto run = [](const std::string& args) {
    const std::string cmd = std::string(MLABENCH_BINARY) + " " + args + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    std::string out;
    char buf[4096];
    size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    const int status = ::pclose(p);
    return std::pair{WEXITSTATUS(status), out};
  };
  auto [code, out] = run("generate --device cuda:x --prompt hi --max-new-tokens 1");
  EXPECT_NE(code, 0);
  EXPECT_NE(out.find("cuda:N"), std::string::npos) << out;
  std::tie(code, out) = run("generate --device cuda:4096 --prompt hi --max-new-tokens 1");
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("HINT"), std::string::npos) << out;
  std::tie(code, out) = run("generate --device cpu --prompt hi --max-new-tokens 1");
  EXPECT_EQ(code, 0) << out;
}

#ifdef MLABENCH_HAS_HTTPLIB

const std::string kModel = test::default_model_dir();

// A stub OpenAI server on a loopback ephemeral port: handlers per route; every request's Authorization header is
// recorded. stop() makes the port refuse connections, like a killed server.
class Stub {
 public:
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
  explicit Stub(std::map<std::string, Handler> post, Handler models = {}) {
    if (!models) models = [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"object":"list","data":[{"id":"stub-model","object":"model","max_model_len":2560}]})",
                      "application/json");
    };
    svr_.Get("/v1/models", [this, models](const httplib::Request& req, httplib::Response& res) {
      record(req);
      models(req, res);
    });
    for (auto& [path, h] : post)
      svr_.Post(path, [this, h](const httplib::Request& req, httplib::Response& res) {
        record(req);
        h(req, res);
      });
    port_ = svr_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
    while (!svr_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));  // stop() needs it
  }
  ~Stub() { stop(); }
  void stop() {
    svr_.stop();
    if (thread_.joinable()) thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  std::vector<std::string> authorizations() const {
    std::lock_guard<std::mutex> lock(mu_);
    return auth_;
  }
  int64_t requests(const std::string& path) const {
    std::lock_guard<std::mutex> lock(mu_);
    return count_.contains(path) ? count_.at(path) : 0;
  }

 private:
  void record(const httplib::Request& req) {
    std::lock_guard<std::mutex> lock(mu_);
    auth_.push_back(req.get_header_value("Authorization"));
    ++count_[req.path];
  }
  httplib::Server svr_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<std::string> auth_;
  std::map<std::string, int64_t> count_;
};

// `serve` over the tiny model, shared by the tests; a second engine feeds the engine backend.
class RemoteTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    served_ = Engine::open({.model_dir = kModel}).value().release();
    server_ = new serve::Server(*served_, {.port = 0, .model_name = "tiny", .max_logprob_tokens = 4096});
    server_->start();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete served_;
  }
  static std::string serve_url() { return "http://127.0.0.1:" + std::to_string(server_->port()) + "/v1"; }
  static RemoteBackendOptions remote(const std::string& url) {
    return {.base_url = url, .tokenizer_dir = kModel, .concurrency = 8, .request_timeout_seconds = 120,
            .max_attempts = 4, .backoff_base_seconds = 0.01, .backoff_max_seconds = 0.05, .max_length = 0,
            .apply_chat_template = false, .system_prompt = "", .add_bos = true,
            .log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); }};
  }
  // Forwards a request to serve as it came.
  static void forward(const httplib::Request& req, httplib::Response& res) {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(300);
    httplib::Result r = req.method == "GET" ? c.Get(req.path) : c.Post(req.path, req.body, "application/json");
    ASSERT_TRUE(r) << "forwarding to serve failed";
    res.status = r->status;
    res.set_content(r->body, "application/json");
  }
  static Engine* served_;
  static serve::Server* server_;
};
Engine* RemoteTest::served_ = nullptr;
serve::Server* RemoteTest::server_ = nullptr;

EvalOptions eval_options(const std::string& task_list, const fs::path& out, int64_t limit) {
  EvalOptions o;
  o.tasks = task_list;
  o.limit = limit;
  o.output_dir = out;
  o.fetch = mirror_fetch();
  o.progress = false;
  o.gen.max_gen_toks = 12;
  o.batch_docs = 16;
  add_task_override(o.task_overrides, "niah.generator.context_lengths=[300,900]");
  add_task_override(o.task_overrides, "niah.generator.depth_percents=[0,100]");
  std::erase_if(o.task_overrides, [&](const auto& kv) { return task_list.find(kv.first) == std::string::npos; });
  return o;
}

std::vector<json> samples_of(const fs::path& file) {
  std::vector<json> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

std::string file_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// The acceptance test: MMLU, GSM8K CoT, HumanEval (graded in the sandbox) and NIAH through serve give the in-process
// engine backend's results: every metric and breakdown equal, every generated text equal, logprobs within 1e-5.
TEST_F(RemoteTest, ResultsEqualTheEngineBackendOnMmluGsm8kHumanEvalNiah) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("remote-equal");
  // Small: two MMLU subjects, two documents of each task (the CI build runs under ASan on 2 cores). Most of the time
  // is the few-shot prompts (MMLU 5 shots, GSM8K 8, 600 to 1,200 tokens), MMLU's above all: through serve every
  // choice is sent whole with echo, and scored prompt rows are never taken from the prefix cache, so each prompt is
  // computed 4 times over. The short mode (label slow) compares the same documents with one shot each.
  const std::string task_list = "mmlu_anatomy,mmlu_astronomy,gsm8k_cot,humaneval,niah";
  auto engine = make_engine_backend(std::move(Engine::open({.model_dir = kModel}).value()), {}, {{"model", "tiny"}});
  EvalOptions eo = eval_options(task_list, dir / "engine", 2);
  if (test::short_mode())
    for (const char* task : {"mmlu_anatomy", "mmlu_astronomy", "gsm8k_cot"})
      add_task_override(eo.task_overrides, fmt::format("{}.num_fewshot=1", task));
  const EvalOutcome want = evaluate(*engine, eo);
  RemoteBackend backend(remote(serve_url()));
  EXPECT_EQ(backend.max_context(), 2560) << "max_model_len from GET /v1/models";
  eo.output_dir = dir / "remote";
  const EvalOutcome got = evaluate(backend, eo);
  ASSERT_TRUE(got.errors.empty()) << got.errors.front();
  for (const char* key : {"results", "groups", "group_subtasks", "n-samples", "breakdowns", "code_grading"})
    EXPECT_EQ(got.results[key].dump(), want.results[key].dump()) << key;  // dumps: NaN stderr of one document
  EXPECT_EQ(got.results["backend"]["backend"], "openai");
  EXPECT_EQ(got.results["backend"]["model"], "tiny");
  for (const char* task : {"mmlu_anatomy", "mmlu_astronomy", "gsm8k_cot", "humaneval", "niah"}) {
    const std::vector<json> a = samples_of(dir / "engine" / fmt::format("samples_{}.jsonl", task));
    const std::vector<json> b = samples_of(dir / "remote" / fmt::format("samples_{}.jsonl", task));
    ASSERT_EQ(a.size(), b.size()) << task;
    ASSERT_GT(a.size(), 0u) << task;
    std::map<std::pair<std::string, int64_t>, const json*> by_doc;
    for (const json& l : a) by_doc[{l["subtask"], l["doc_id"]}] = &l;
    for (const json& l : b) {
      const json& e = *by_doc.at({l["subtask"], l["doc_id"]});
      EXPECT_EQ(l["metrics"], e["metrics"]) << task << " " << l["doc_id"];
      EXPECT_EQ(l.value("context_tokens", json()), e.value("context_tokens", json())) << task << " " << l["doc_id"];
      if (e.contains("response")) {
        EXPECT_EQ(l["response"], e["response"]) << task;
      }
      if (e.contains("responses")) {
        EXPECT_EQ(l["responses"], e["responses"]) << task;
      }
      if (e.contains("logprobs")) {
        EXPECT_EQ(l["is_greedy"], e["is_greedy"]) << task << " " << l["doc_id"];
        for (size_t i = 0; i < e["logprobs"].size(); ++i)
          EXPECT_NEAR(l["logprobs"][i].get<double>(), e["logprobs"][i].get<double>(), 1e-5) << task;
      }
    }
  }
  // Sampled generations: each repeat its own seed, as the engine backend derives it.
  auto engine2 = make_engine_backend(std::move(Engine::open({.model_dir = kModel}).value()), {}, {});
  std::vector<GenerationRequest> rq;
  for (int64_t k = 0; k < 3; ++k)
    rq.push_back(
        {.subtask = "t", .doc_id = 5, .context = "def add(a, b):", .gen = {}, .sample = k, .system_prompt = ""});
  for (GenerationRequest& r : rq) {
    r.gen.temperature = 0.8;
    r.gen.top_p = 0.95;
    r.gen.max_gen_toks = 16;
    r.gen.seed = 1234;
    r.gen.until = {"\n\n"};
  }
  const auto sampled_engine = engine2->generate(rq);
  const auto sampled_remote = backend.generate(rq);
  for (size_t k = 0; k < rq.size(); ++k) EXPECT_EQ(sampled_remote[k].text, sampled_engine[k].text) << k;
  // Rolling loglikelihood over windows, as the engine backend windows.
  const std::vector<RollingRequest> roll = {{.subtask = "t", .doc_id = 0, .text = std::string(400, 'a') + " b c"}};
  EXPECT_NEAR(backend.loglikelihood_rolling(roll).at(0), engine2->loglikelihood_rolling(roll).at(0), 1e-4);
}

// A server that echoes no prompt log-probabilities (llama.cpp's): the MMLU task gets an error naming the endpoint
// and the field; GSM8K in the same run still completes.
TEST_F(RemoteTest, ProbeRefusesLoglikelihoodWithoutPromptLogprobsAndGenerationStillRuns) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("remote-probe");
  Stub stub({{"/v1/completions", [](const httplib::Request& req, httplib::Response& res) {
                const auto body = nlohmann::json::parse(req.body);
                nlohmann::json choice = {{"index", 0}, {"text", " The answer is 7."}, {"finish_reason", "stop"}};
                if (body.value("echo", false))  // only the generated token's logprob, as llama.cpp's server
                  choice["logprobs"] = {
                      {"tokens", {"x"}}, {"token_logprobs", {-0.5}}, {"top_logprobs", {{{"x", -0.5}}}}};
                res.set_content(nlohmann::json{{"choices", {choice}}}.dump(), "application/json");
              }}});
  RemoteBackend backend(remote(stub.url()));
  const EvalOutcome out = evaluate(backend, eval_options("mmlu,gsm8k_cot", dir / "run", 1));
  ASSERT_EQ(out.errors.size(), 1u);
  const std::string err = out.results["errors"]["mmlu"].get<std::string>();
  for (const std::string& part : {stub.url() + "/completions", std::string("token_logprobs"), std::string("HINT")})
    EXPECT_NE(err.find(part), std::string::npos) << err << "\n  missing: " << part;
  EXPECT_FALSE(out.results["results"].contains("mmlu")) << "a refused task has no score, not a zero";
  ASSERT_TRUE(out.results["results"].contains("gsm8k_cot"));
  EXPECT_EQ(samples_of(dir / "run" / "samples_gsm8k_cot.jsonl").size(), 1u);
  EXPECT_EQ(samples_of(dir / "run" / "samples_gsm8k_cot.jsonl")[0]["response"], " The answer is 7.");
  EXPECT_TRUE(samples_of(dir / "run" / "samples_mmlu.jsonl").empty());

  // Without --tokenizer, loglikelihood is refused with the hint.
  RemoteBackendOptions o = remote(stub.url());
  o.tokenizer_dir.clear();
  RemoteBackend untokenized(o);
  const std::vector<ChoiceRequest> rq = {{.subtask = "s", .doc_id = 0, .context = "Q", .continuations = {" a"}}};
  test::expect_error_with([&] { untokenized.loglikelihood(rq); }, {"--tokenizer", "HINT"});
}

// 429 and 500 answers are retried (with backoff) and the run gives serve's results; a hung request ends with the
// request-timeout error naming the endpoint.
TEST_F(RemoteTest, RetriesOverloadAndServerErrorsAndTimesOutAHungRequest) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("remote-faults");
  std::atomic<int> calls{0};
  Stub flaky({{"/v1/completions", [&](const httplib::Request& req, httplib::Response& res) {
                 const int k = calls++;
                 if (k % 3 == 0) {
                   res.status = 429;
                   res.set_content(R"({"error":{"message":"too many requests","type":"rate_limit_error"}})",
                                   "application/json");
                 } else if (k % 3 == 1) {
                   res.status = 500;
                   res.set_content(R"({"error":{"message":"boom"}})", "application/json");
                 } else {
                   forward(req, res);
                 }
               }}},
             forward);
  RemoteBackendOptions fo = remote(flaky.url());
  fo.concurrency = 1;  // one document at a time: each sees a 429, a 500, then the answer
  RemoteBackend through_flaky(fo);
  const EvalOutcome got = evaluate(through_flaky, eval_options("gsm8k_cot", dir / "flaky", 3));
  RemoteBackend direct(remote(serve_url()));
  const EvalOutcome want = evaluate(direct, eval_options("gsm8k_cot", dir / "direct", 3));
  EXPECT_EQ(got.results["results"], want.results["results"]);
  EXPECT_EQ(samples_of(dir / "flaky" / "samples_gsm8k_cot.jsonl").size(), 3u);
  EXPECT_EQ(calls.load(), 9) << "each of 3 documents: a 429, a 500, then the answer";

  // Failing for good: the endpoint, the status and the server's message.
  Stub broken({{"/v1/completions", [](const httplib::Request&, httplib::Response& res) {
                  res.status = 503;
                  res.set_content(R"({"error":{"message":"model is loading"}})", "application/json");
                }}});
  RemoteBackend b(remote(broken.url()));
  const std::vector<GenerationRequest> one = {
      {.subtask = "t", .doc_id = 0, .context = "x", .gen = {}, .sample = 0, .system_prompt = ""}};
  test::expect_error_with([&] { b.generate(one); },
                          {broken.url() + "/completions", "HTTP 503", "4 attempt(s)", "model is loading", "HINT"});

  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  Stub hung({{"/v1/completions", [&](const httplib::Request&, httplib::Response& res) {
                std::unique_lock<std::mutex> lock(mu);
                cv.wait_for(lock, std::chrono::seconds(20), [&] { return release; });
                res.set_content("{}", "application/json");
              }}});
  RemoteBackendOptions ho = remote(hung.url());
  ho.request_timeout_seconds = 0.5;
  RemoteBackend h(ho);
  const auto t0 = std::chrono::steady_clock::now();
  test::expect_error_with([&] { h.generate(one); }, {hung.url() + "/completions", "request timeout of 0.5 s", "HINT"});
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
}

// The server dies after 3 answers: the run fails naming the endpoint with 3 documents recorded; --resume against a
// working server sends only the documents not recorded and ends with the uninterrupted run's results. Every document
// is computed twice (the uninterrupted run, then the interrupted and resumed one), most of it the 8-shot prompt
// (about 1,150 tokens); the short mode (label slow) sends the same documents with one shot.
TEST_F(RemoteTest, ResumeAfterTheServerDiedResendsNothingRecorded) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("remote-resume");
  RemoteBackend direct(remote(serve_url()));
  EvalOptions whole = eval_options("gsm8k_cot", dir / "whole", 6);
  if (test::short_mode()) add_task_override(whole.task_overrides, "gsm8k_cot.num_fewshot=1");
  const EvalOutcome want = evaluate(direct, whole);

  std::atomic<int> served{0};
  std::mutex mu;
  std::condition_variable cv;
  Stub dying({{"/v1/completions", [&](const httplib::Request& req, httplib::Response& res) {
                 forward(req, res);
                 {
                   std::lock_guard<std::mutex> lock(mu);
                   ++served;
                 }
                 cv.notify_all();
               }}},
             forward);
  RemoteBackendOptions o = remote(dying.url());
  o.concurrency = 1;
  o.max_attempts = 2;
  RemoteBackend first(o);
  std::thread killer([&] {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::seconds(120), [&] { return served.load() >= 3; });
    dying.stop();
  });
  EvalOptions part = whole;
  part.output_dir = dir / "run";
  part.batch_docs = 1;  // a durable samples write after each document
  test::expect_error_with([&] { evaluate(first, part); }, {dying.url() + "/completions", "HINT"});
  killer.join();
  const size_t recorded = samples_of(dir / "run" / "samples_gsm8k_cot.jsonl").size();
  EXPECT_GE(recorded, 2u);
  EXPECT_LE(recorded, 3u);

  Stub counting({{"/v1/completions", forward}}, forward);
  RemoteBackend second(remote(counting.url()));
  part.resume = true;
  const EvalOutcome got = evaluate(second, part);
  EXPECT_EQ(got.docs_resumed, static_cast<int64_t>(recorded));
  EXPECT_EQ(counting.requests("/v1/completions"), 6 - static_cast<int64_t>(recorded));
  EXPECT_EQ(got.results["results"], want.results["results"]);
  EXPECT_EQ(samples_of(dir / "run" / "samples_gsm8k_cot.jsonl").size(), 6u);
}

// The key goes out as "Authorization: Bearer KEY" and is written nowhere.
TEST_F(RemoteTest, ApiKeyIsSentAsBearerAndRecordedNowhere) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("remote-key");
  ::setenv("MLABENCH_TEST_API_KEY", "sk-test-0123456789secret", 1);
  Stub stub({{"/v1/completions", forward}}, forward);
  RemoteBackendOptions o = remote(stub.url());
  o.api_key_env = "MLABENCH_TEST_API_KEY";
  RemoteBackend backend(o);
  EvalOptions eo = eval_options("gsm8k_cot", dir / "run", 1);
  eo.config = {{"backend", "openai"}};
  eo.provenance = {{"openai", backend.server_info()}};
  const EvalOutcome out = evaluate(backend, eo);
  ASSERT_TRUE(out.errors.empty());
  const auto auth = stub.authorizations();
  ASSERT_GE(auth.size(), 2u) << "models, one document";
  for (const std::string& a : auth) EXPECT_EQ(a, "Bearer sk-test-0123456789secret");
  EXPECT_EQ(out.results["provenance"]["openai"]["api_key_env"], "MLABENCH_TEST_API_KEY");
  EXPECT_EQ(out.results["provenance"]["openai"]["api_key_sent"], true);
  for (const auto& e : fs::directory_iterator(dir / "run"))
    EXPECT_EQ(file_text(e.path()).find("sk-test-0123456789secret"), std::string::npos) << e.path();
  ::unsetenv("MLABENCH_TEST_API_KEY");
}

// The command line: `mlabench run --backend openai:URL` against serve records backend "openai", the URL and the
// model in results.json, and the key nowhere.
TEST_F(RemoteTest, TheRunCommandRecordsTheServerAndNotTheKey) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("remote-cli");
  const std::string cmd = fmt::format(
      "MLABENCH_TEST_CLI_KEY=sk-cli-0123456789secret {} run --backend openai:{} --tokenizer {} --tasks gsm8k_cot "
      "--limit 1 --gen-kwargs max_gen_toks=4 --output {} --mirror {} --data-dir {} --offline --no-progress "
      "--no-report --api-key-env MLABENCH_TEST_CLI_KEY --concurrency 4 2>&1",
      MLABENCH_BINARY, serve_url(), kModel, (dir / "run").string(), test::dataset_mirror(),
      mirror_fetch().cache_dir.string());
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  for (size_t n = 0; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  ASSERT_EQ(WEXITSTATUS(::pclose(p)), 0) << out;
  const json r = json::parse(file_text(dir / "run" / "results.json"));
  EXPECT_EQ(r["config"]["backend"], "openai");
  EXPECT_EQ(r["config"]["model"], "tiny");
  EXPECT_EQ(r["provenance"]["openai"]["url"], serve_url());
  EXPECT_EQ(r["provenance"]["openai"]["server_model_ids"], json::array({"tiny"}));
  EXPECT_EQ(r["provenance"]["openai"]["api_key_sent"], true);
  EXPECT_TRUE(r["results"].contains("gsm8k_cot"));
  for (const auto& e : fs::directory_iterator(dir / "run"))
    EXPECT_EQ(file_text(e.path()).find("sk-cli-0123456789secret"), std::string::npos) << e.path();
}

// Bad answers: not JSON, missing fields, nothing listening: errors naming the endpoint, never an abort.
TEST_F(RemoteTest, BadAnswersGiveErrorsNamingTheEndpoint) {
  Stub html({}, [](const httplib::Request&, httplib::Response& res) {
    res.set_content("<html>hi</html>", "text/html");
  });
  test::expect_error_with([&] { RemoteBackend b(remote(html.url())); },
                          {"GET " + html.url() + "/models", "not JSON", "HINT"});
  Stub no_data({}, [](const httplib::Request&, httplib::Response& res) { res.set_content("{}", "application/json"); });
  test::expect_error_with([&] { RemoteBackend b(remote(no_data.url())); },
                          {"GET " + no_data.url() + "/models", "\"data\"", "HINT"});
  Stub odd({{"/v1/completions", [](const httplib::Request&, httplib::Response& res) {
               res.set_content(R"({"choices":[{"index":0}]})", "application/json");
             }},
            {"/v1/chat/completions", [](const httplib::Request&, httplib::Response& res) {
               res.set_content(R"({"id":"x"})", "application/json");
             }}});
  RemoteBackendOptions o = remote(odd.url());
  RemoteBackend b(o);
  EXPECT_EQ(b.describe()["model"], "stub-model") << "the first of GET /v1/models";
  const std::vector<GenerationRequest> one = {
      {.subtask = "t", .doc_id = 0, .context = "x", .gen = {}, .sample = 0, .system_prompt = ""}};
  test::expect_error_with([&] { b.generate(one); }, {"POST " + odd.url() + "/completions", "no text", "HINT"});
  const std::vector<ChoiceRequest> mc = {{.subtask = "s", .doc_id = 0, .context = "Q:", .continuations = {" a"}}};
  try {
    b.loglikelihood(mc);
    ADD_FAILURE() << "no refusal";
  } catch (const BackendRefusal& e) {  // the probe's answer has no logprobs
    EXPECT_NE(std::string(e.what()).find("choices[].logprobs is missing"), std::string::npos) << e.what();
  }
  o.apply_chat_template = true;
  RemoteBackend chat(o);
  test::expect_error_with([&] { chat.generate(one); }, {"POST " + odd.url() + "/chat/completions", "choices"});
  // Nothing listening: the connection error after the retries.
  int port = 0;
  {
    Stub gone({});
    port = std::stoi(gone.url().substr(17));
  }
  RemoteBackendOptions g = remote("http://127.0.0.1:" + std::to_string(port) + "/v1");
  g.max_attempts = 2;
  test::expect_error_with([&] { RemoteBackend x(g); }, {"GET http://127.0.0.1:" + std::to_string(port) + "/v1/models",
                                                        "2 attempt(s)", "HINT"});
  test::expect_error_with([&] { RemoteBackend x(remote("localhost:8000")); }, {"not an http(s) base URL"});
}

#endif  // MLABENCH_HAS_HTTPLIB

}  // namespace
}  // namespace mlabench::harness
