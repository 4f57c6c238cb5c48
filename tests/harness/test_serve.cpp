// `mlabench serve` in-process (harness/serve): the OpenAI protocol parser on its own, then a server on an ephemeral
// loopback port over the bundled tiny model (CPU) driven by cpp-httplib's client. Served results are compared with
// a second Engine's direct calls (generate, logits, score): same text, same tokens, logprobs within 1e-5.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "harness/serve/openai_protocol.h"
#include "harness/serve/server.h"
#include "mlabench/engine.h"
#include "tests/test_util.h"

#ifdef MLABENCH_HAS_HTTPLIB
#include <httplib.h>
#endif

namespace mlabench {
namespace {

using nlohmann::json;
using serve::ApiError;
using serve::Endpoint;

const std::string kModel = std::string(MLABENCH_TEST_DATA) + "/models/mlabench-tiny-dsv2";

// ---- the protocol alone -----------------------------------------------------------------------------------------

ApiError refusal(const std::string& body, Endpoint ep = Endpoint::COMPLETIONS) {
  try {
    serve::parse_request(body, ep, {});
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << body;
  return ApiError(0, "");
}

TEST(ServeProtocol, ParsesCompletionFields) {
  const serve::CompletionRequest r = serve::parse_request(
      R"({"model":"m","prompt":"hi","max_tokens":5,"temperature":0,"top_p":0.5,"seed":7,"n":2,"stop":["a","b"],
          "echo":true,"logprobs":3,"user":"u","frequency_penalty":0,"logit_bias":{},"stream":false})",
      Endpoint::COMPLETIONS, {});
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0].text, "hi");
  EXPECT_EQ(*r.max_tokens, 5);
  EXPECT_EQ(r.temperature, 0.0);
  EXPECT_EQ(r.top_p, 0.5);
  EXPECT_EQ(*r.seed, 7u);
  EXPECT_EQ(r.n, 2);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(r.echo);
  EXPECT_EQ(*r.logprobs, 3);
  const auto ids = serve::parse_request(R"({"prompt":[1,2,3]})", Endpoint::COMPLETIONS, {});
  ASSERT_EQ(ids.prompts.size(), 1u);
  EXPECT_TRUE(ids.prompts[0].is_tokens);
  EXPECT_EQ(ids.prompts[0].tokens, (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(serve::parse_request(R"({"prompt":[[1],[2,3]]})", Endpoint::COMPLETIONS, {}).prompts.size(), 2u);
  EXPECT_EQ(serve::parse_request(R"({"prompt":["a","b"]})", Endpoint::COMPLETIONS, {}).prompts.size(), 2u);
  const auto chat = serve::parse_request(
      R"({"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"logprobs":true,"top_logprobs":2})",
      Endpoint::CHAT, {});
  EXPECT_EQ(chat.messages.at(0).content, "x");
  EXPECT_EQ(*chat.logprobs, 2);
  EXPECT_FALSE(chat.max_tokens.has_value());
}

TEST(ServeProtocol, RefusesBadBodiesNamingTheField) {
  EXPECT_EQ(refusal("{").code(), "invalid_json");
  EXPECT_EQ(refusal("[1]").code(), "invalid_json");
  EXPECT_EQ(refusal(std::string(200, '[') + std::string(200, ']')).status(), 400);  // nested past the bound
  ApiError e = refusal(R"({"prompt":"x","bogus":1})");
  EXPECT_EQ(e.param(), "bogus");
  EXPECT_EQ(e.code(), "unknown_field");
  e = refusal(R"({"prompt":"x","max_tokens":"5"})");
  EXPECT_EQ(e.param(), "max_tokens");
  EXPECT_EQ(e.code(), "invalid_type");
  e = refusal(R"({"prompt":"x","temperature":3})");
  EXPECT_EQ(e.param(), "temperature");
  EXPECT_NE(std::string(e.what()).find("0 .. 2"), std::string::npos) << e.what();
  EXPECT_EQ(refusal(R"({"prompt":"x","n":1000})").param(), "n");
  EXPECT_EQ(refusal(R"({"prompt":"x","top_p":0})").param(), "top_p");
  EXPECT_EQ(refusal(R"({"prompt":"x","logprobs":99})").param(), "logprobs");
  EXPECT_EQ(refusal(R"({"prompt":"x","presence_penalty":0.5})").param(), "presence_penalty");
  EXPECT_EQ(refusal(R"({"prompt":"x","logit_bias":{"1":2}})").param(), "logit_bias");
  EXPECT_EQ(refusal(R"({"prompt":[1,"a"]})").param(), "prompt");
  EXPECT_EQ(refusal(R"({"prompt":[-1]})").param(), "prompt");
  EXPECT_EQ(refusal(R"({"prompt":[]})").param(), "prompt");
  EXPECT_EQ(refusal(R"({"max_tokens":1})").param(), "prompt");
  EXPECT_EQ(refusal(R"({"prompt":"x","stop":[1]})").param(), "stop");
  EXPECT_EQ(refusal(R"({"prompt":"x","stream":true,"logprobs":1})").param(), "logprobs");
  EXPECT_EQ(refusal(R"({"prompt":"x","stream_options":{"x":1}})").param(), "stream_options.x");
  EXPECT_EQ(refusal(R"({"messages":[{"role":"robot","content":"x"}]})", Endpoint::CHAT).param(), "messages[0].role");
  EXPECT_EQ(refusal(R"({"messages":[]})", Endpoint::CHAT).param(), "messages");
  EXPECT_EQ(refusal(R"({"messages":[{"role":"user","content":"x"}],"echo":true})", Endpoint::CHAT).param(), "echo");
  EXPECT_EQ(refusal(R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})", Endpoint::CHAT).param(),
            "top_logprobs");
  const json body = refusal(R"({"prompt":"x","n":0})").body();
  EXPECT_EQ(body["error"]["param"], "n");
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_TRUE(body["error"]["message"].is_string());
}

TEST(ServeProtocol, ChunksAndResponsesHaveOpenAIShape) {
  const json c = serve::stream_chunk(Endpoint::CHAT, "id", 1, "m", 0, "hi", std::nullopt, true);
  EXPECT_EQ(c["object"], "chat.completion.chunk");
  EXPECT_EQ(c["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(c["choices"][0]["delta"]["content"], "hi");
  EXPECT_EQ(serve::sse_event(json{{"a", 1}}), "data: {\"a\":1}\n\n");
  serve::TokenLogprobs lp{.tokens = {"a", "b"}, .token_logprobs = {std::nullopt, -0.5},
                          .top = {{}, {{"b", -0.5}}}, .text_offset = {0, 1}};
  const json r = serve::completion_response(Endpoint::COMPLETIONS, "id", 1, "m",
                                            {{.index = 0, .text = "ab", .finish_reason = "length", .logprobs = lp}},
                                            {.prompt_tokens = 2, .completion_tokens = 0});
  EXPECT_TRUE(r["choices"][0]["logprobs"]["token_logprobs"][0].is_null());
  EXPECT_TRUE(r["choices"][0]["logprobs"]["top_logprobs"][0].is_null());
  EXPECT_EQ(r["choices"][0]["logprobs"]["top_logprobs"][1]["b"], -0.5);
  EXPECT_EQ(r["usage"]["total_tokens"], 2);
  EXPECT_EQ(serve::utf8_length("h\xC3\xA9"), 2);
}

#ifdef MLABENCH_HAS_HTTPLIB

// ---- the server ---------------------------------------------------------------------------------------------------

struct Reply {
  int status = 0;
  json body;
  std::string raw;
};

class ServeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    served_ = Engine::open({.model_dir = kModel, .n_threads = 1}).value().release();
    ref_ = Engine::open({.model_dir = kModel, .n_threads = 1}).value().release();
    server_ = new serve::Server(*served_, {.port = 0, .model_name = "tiny"});
    server_->start();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete served_;
    delete ref_;
  }
  static Reply call(const std::string& method, const std::string& path, const std::string& body = "",
                    serve::Server* s = nullptr, int read_timeout_s = 120) {
    httplib::Client cli("127.0.0.1", (s ? s : server_)->port());
    cli.set_read_timeout(read_timeout_s);
    httplib::Result r = method == "GET"    ? cli.Get(path)
                        : method == "PUT"  ? cli.Put(path, body, "application/json")
                                           : cli.Post(path, body, "application/json");
    Reply out;
    if (!r) {
      ADD_FAILURE() << method << " " << path << ": no response (" << httplib::to_string(r.error()) << ")";
      return out;
    }
    out.status = r->status;
    out.raw = r->body;
    if (r->get_header_value("Content-Type").find("json") != std::string::npos) out.body = json::parse(r->body);
    return out;
  }
  static Reply post(const std::string& path, const json& body) { return call("POST", path, body.dump()); }
  static std::string greedy_text(const std::string& prompt, int64_t n, std::vector<std::string> stop = {}) {
    TextGenerateOptions o;
    o.sampling.max_new_tokens = n;
    o.stop = std::move(stop);
    return ref_->generate(prompt, o).value().text;
  }
  // The data: lines of an SSE body, [DONE] last.
  static std::vector<std::string> sse_lines(const std::string& body) {
    std::vector<std::string> out;
    size_t at = 0;
    while ((at = body.find("data: ", at)) != std::string::npos) {
      const size_t end = body.find("\n\n", at);
      out.push_back(body.substr(at + 6, end - at - 6));
      at = end;
    }
    return out;
  }
  static Engine* served_;
  static Engine* ref_;
  static serve::Server* server_;
};
Engine* ServeTest::served_ = nullptr;
Engine* ServeTest::ref_ = nullptr;
serve::Server* ServeTest::server_ = nullptr;

TEST_F(ServeTest, CompletionTextEqualsGenerate) {
  const Reply r = post("/v1/completions", {{"model", "tiny"}, {"prompt", "Once upon a time"}, {"max_tokens", 12},
                                           {"temperature", 0}});
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["object"], "text_completion");
  EXPECT_EQ(r.body["model"], "tiny");
  EXPECT_EQ(r.body["choices"][0]["text"], greedy_text("Once upon a time", 12));
  const auto gen = ref_->generate("Once upon a time", {.sampling = {.max_new_tokens = 12}}).value();
  EXPECT_EQ(r.body["usage"]["completion_tokens"], gen.generation.tokens.size());
  EXPECT_EQ(r.body["usage"]["prompt_tokens"], gen.prompt_tokens.size());
  EXPECT_EQ(r.body["choices"][0]["finish_reason"], gen.generation.finish_reason == "length" ? "length" : "stop");
}

TEST_F(ServeTest, TokenIdPromptAndSeededSamplingEqualGenerate) {
  const std::vector<int32_t> ids = ref_->encode("The quick brown fox", true).value();
  TextGenerateRequest tr;
  tr.prompt_tokens = ids;
  tr.options.sampling.max_new_tokens = 10;
  tr.options.sampling.temperature = 0.9f;
  tr.options.sampling.top_p = 0.95f;
  tr.options.sampling.seed = 1234;
  const std::string want = ref_->generate_batch(std::span(&tr, 1)).value().at(0).text;
  const Reply r = post("/v1/completions", {{"prompt", ids}, {"max_tokens", 10}, {"temperature", 0.9}, {"top_p", 0.95},
                                           {"seed", 1234}});
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["choices"][0]["text"], want);
  EXPECT_EQ(r.body["usage"]["prompt_tokens"], ids.size());
  // n = 3 with a seed: choice j draws with seed + j.
  const Reply n3 = post("/v1/completions", {{"prompt", ids}, {"max_tokens", 10}, {"temperature", 0.9}, {"top_p", 0.95},
                                            {"seed", 1233}, {"n", 3}});
  ASSERT_EQ(n3.status, 200) << n3.raw;
  ASSERT_EQ(n3.body["choices"].size(), 3u);
  for (int j = 0; j < 3; ++j) EXPECT_EQ(n3.body["choices"][j]["index"], j);
  EXPECT_EQ(n3.body["choices"][1]["text"], want);
}

TEST_F(ServeTest, EchoLogprobsEqualLogitsAndScore) {
  const std::string ctx = "The capital of France is", cont = " Paris";
  const std::vector<int32_t> ids = ref_->encode(ctx + cont, true).value();
  const Reply r = post("/v1/completions", {{"prompt", ctx + cont}, {"max_tokens", 0}, {"echo", true}, {"logprobs", 3}});
  ASSERT_EQ(r.status, 200) << r.raw;
  const json& lp = r.body["choices"][0]["logprobs"];
  EXPECT_EQ(r.body["choices"][0]["text"], ctx + cont);
  ASSERT_EQ(lp["tokens"].size(), ids.size());
  ASSERT_EQ(lp["token_logprobs"].size(), ids.size());
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  const Logits lg = ref_->logits(ids).value();
  for (size_t i = 1; i < ids.size(); ++i) {
    const float* row = lg.row(static_cast<int64_t>(i) - 1);
    double mx = -INFINITY, s = 0;
    int32_t arg = 0;
    for (int64_t v = 0; v < lg.vocab_size; ++v)
      if (row[v] > mx) mx = row[v], arg = static_cast<int32_t>(v);
    for (int64_t v = 0; v < lg.vocab_size; ++v) s += std::exp(row[v] - mx);
    EXPECT_NEAR(lp["token_logprobs"][i].get<double>(), row[ids[i]] - mx - std::log(s), 1e-5) << i;
    // {token: logprob}: ids that decode to one string share a key, so up to 3 entries.
    ASSERT_GE(lp["top_logprobs"][i].size(), 1u);
    ASSERT_LE(lp["top_logprobs"][i].size(), 3u);
    double best = -INFINITY;
    for (const auto& [tok, v] : lp["top_logprobs"][i].items()) best = std::max(best, v.get<double>());
    EXPECT_NEAR(best, row[arg] - mx - std::log(s), 1e-5);
    EXPECT_GT(lp["text_offset"][i].get<int64_t>(), lp["text_offset"][i - 1].get<int64_t>() - 1);
  }
  // lm-evaluation-harness's loglikelihood: the continuation's token_logprobs summed = Engine::score.
  const std::vector<int32_t> ctx_ids = ref_->encode(ctx, true).value();
  const std::vector<int32_t> cont_ids(ids.begin() + static_cast<std::ptrdiff_t>(ctx_ids.size()), ids.end());
  const ScoreResult sc = ref_->score(ctx_ids, cont_ids).value();
  double sum = 0;
  bool greedy = true;
  for (size_t i = ctx_ids.size(); i < ids.size(); ++i) {
    sum += lp["token_logprobs"][i].get<double>();
    double best = -INFINITY;
    for (const auto& [tok, v] : lp["top_logprobs"][i].items()) best = std::max(best, v.get<double>());
    greedy = greedy && lp["token_logprobs"][i].get<double>() == best;
  }
  EXPECT_NEAR(sum, sc.logprob, 1e-5);
  EXPECT_EQ(greedy, sc.is_greedy);
  // lm-eval's request shape: token ids, echo, max_tokens 1: the prompt's positions and one generated token.
  const Reply one = post("/v1/completions", {{"prompt", json::array({ids})}, {"max_tokens", 1}, {"echo", true},
                                             {"logprobs", 1}, {"temperature", 0}});
  ASSERT_EQ(one.status, 200) << one.raw;
  const json& lp1 = one.body["choices"][0]["logprobs"]["token_logprobs"];
  ASSERT_EQ(lp1.size(), ids.size() + 1);
  for (size_t i = 1; i < ids.size(); ++i) EXPECT_NEAR(lp1[i].get<double>(), lp["token_logprobs"][i].get<double>(), 1e-9);
  // Without echo: only the generated tokens.
  const Reply gen = post("/v1/completions", {{"prompt", ctx}, {"max_tokens", 4}, {"logprobs", 2}, {"temperature", 0}});
  ASSERT_EQ(gen.status, 200) << gen.raw;
  EXPECT_EQ(gen.body["choices"][0]["logprobs"]["tokens"].size(), gen.body["usage"]["completion_tokens"].get<size_t>());
}

TEST_F(ServeTest, ChatUsesTheChatTemplate) {
  const std::vector<ChatMessage> msgs{{"system", "Be brief."}, {"user", "Hello!"}};
  const std::string prompt = ref_->apply_chat_template(msgs, true).value();
  TextGenerateOptions o{.sampling = {.max_new_tokens = 10}, .add_special_tokens = false};
  const TextGenerateResult want = ref_->generate(prompt, o).value();
  const Reply r = post("/v1/chat/completions",
                       {{"model", "tiny"},
                        {"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hello!"}}}},
                        {"max_tokens", 10},
                        {"temperature", 0},
                        {"logprobs", true},
                        {"top_logprobs", 2}});
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["object"], "chat.completion");
  EXPECT_EQ(r.body["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(r.body["choices"][0]["message"]["content"], want.text);
  EXPECT_EQ(r.body["usage"]["prompt_tokens"], want.prompt_tokens.size());
  EXPECT_EQ(r.body["choices"][0]["logprobs"]["content"].size(), want.generation.tokens.size());
  EXPECT_EQ(r.body["choices"][0]["logprobs"]["content"][0]["top_logprobs"].size(), 2u);
}

TEST_F(ServeTest, StreamsConcatenateToTheText) {
  for (const bool chat : {false, true}) {
    json body = {{"max_tokens", 16}, {"temperature", 0}, {"stream", true}, {"stream_options", {{"include_usage", true}}}};
    if (chat)
      body["messages"] = {{{"role", "user"}, {"content", "Tell me a story"}}};
    else
      body["prompt"] = "Tell me a story";
    const std::string path = chat ? "/v1/chat/completions" : "/v1/completions";
    json plain = body;
    plain.erase("stream");
    plain.erase("stream_options");
    const Reply whole = post(path, plain);
    ASSERT_EQ(whole.status, 200) << whole.raw;
    const Reply s = post(path, body);
    ASSERT_EQ(s.status, 200) << s.raw;
    const std::vector<std::string> lines = sse_lines(s.raw);
    ASSERT_GE(lines.size(), 3u) << s.raw;
    EXPECT_EQ(lines.back(), "[DONE]");
    std::string text, finish;
    int64_t usage = -1;
    for (size_t i = 0; i + 1 < lines.size(); ++i) {
      const json c = json::parse(lines[i]);
      EXPECT_EQ(c["object"], chat ? "chat.completion.chunk" : "text_completion");
      if (c.contains("usage")) {
        usage = c["usage"]["completion_tokens"];
        continue;
      }
      const json& ch = c["choices"][0];
      text += chat ? ch["delta"].value("content", "") : ch["text"].get<std::string>();
      if (!ch["finish_reason"].is_null()) finish = ch["finish_reason"];
    }
    const json& w = whole.body["choices"][0];
    EXPECT_EQ(text, (chat ? w["message"]["content"] : w["text"]).get<std::string>()) << "chat=" << chat;
    EXPECT_EQ(finish, w["finish_reason"].get<std::string>());
    EXPECT_EQ(usage, whole.body["usage"]["completion_tokens"]);
  }
}

TEST_F(ServeTest, StopStringsCutTheText) {
  const std::string full = greedy_text("In the beginning", 24);
  ASSERT_GE(full.size(), 8u);
  const std::string stop = full.substr(full.size() / 2, 2);
  const std::string want = greedy_text("In the beginning", 24, {stop});
  ASSERT_LT(want.size(), full.size());
  for (const bool stream : {false, true}) {
    const Reply r = post("/v1/completions", {{"prompt", "In the beginning"}, {"max_tokens", 24}, {"temperature", 0},
                                             {"stop", stop}, {"stream", stream}});
    ASSERT_EQ(r.status, 200) << r.raw;
    std::string text;
    if (stream) {
      for (const std::string& l : sse_lines(r.raw))
        if (l != "[DONE]") text += json::parse(l)["choices"][0]["text"].get<std::string>();
    } else {
      text = r.body["choices"][0]["text"];
      EXPECT_EQ(r.body["choices"][0]["finish_reason"], "stop");
    }
    EXPECT_EQ(text, want) << "stream=" << stream;
    EXPECT_EQ(text.find(stop), std::string::npos);
  }
}

TEST_F(ServeTest, ModelsHealthMetrics) {
  const Reply m = call("GET", "/v1/models");
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(m.body["data"][0]["id"], "tiny");
  EXPECT_EQ(m.body["data"][0]["max_model_len"], served_->max_context());
  const Reply h = call("GET", "/health");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body["status"], "ok");
  ASSERT_EQ(post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 2}}).status, 200);
  ASSERT_EQ(post("/v1/completions", {{"prompt", "x"}, {"max_tokens", -1}}).status, 400);
  const std::vector<std::string> wants = {
      "mlabench_requests_total{endpoint=\"/v1/completions\",status=\"200\"}",
      "mlabench_requests_total{endpoint=\"/v1/completions\",status=\"400\"}",
      "mlabench_prompt_tokens_total ", "mlabench_generation_tokens_total ", "mlabench_requests_running ",
      "mlabench_requests_waiting ", "mlabench_request_duration_seconds_bucket{le=\"+Inf\"}",
      "mlabench_request_duration_seconds_count "};
  // A request is counted once its answer has been written (httplib's logger), which can come after this client
  // has read it: poll for up to 10 s before judging.
  Reply mt;
  for (int i = 0; i < 200; ++i) {
    mt = call("GET", "/metrics");
    ASSERT_EQ(mt.status, 200);
    if (std::all_of(wants.begin(), wants.end(), [&](const std::string& w) { return mt.raw.find(w) != std::string::npos; }))
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (const std::string& want : wants) EXPECT_NE(mt.raw.find(want), std::string::npos) << want << "\n" << mt.raw;
}

TEST_F(ServeTest, BadRequestsGetClearErrorsAndTheServerStaysUp) {
  struct Case {
    std::string method, path, body;
    int status;
    std::string in_message, param;
  };
  const std::string ids_too_long = json{{"prompt", std::vector<int32_t>(3000, 5)}}.dump();
  const std::vector<Case> cases{
      {"POST", "/v1/completions", "{not json", 400, "not valid JSON", ""},
      {"POST", "/v1/completions", R"({"prompt":"x","foo":1})", 400, "unknown field 'foo'", "foo"},
      {"POST", "/v1/completions", R"({"prompt":"x","max_tokens":"a"})", 400, "max_tokens", "max_tokens"},
      {"POST", "/v1/completions", R"({"prompt":"x","temperature":9})", 400, "accepted range", "temperature"},
      {"POST", "/v1/completions", R"({"prompt":"x","n":99})", 400, "accepted range", "n"},
      {"POST", "/v1/completions", R"({"prompt":"x","max_tokens":4000})", 400, "max_tokens", "max_tokens"},
      {"POST", "/v1/completions", ids_too_long, 400, "tokens", "prompt"},
      {"POST", "/v1/completions", R"({"prompt":[999999]})", 400, "token id 999999", "prompt"},
      {"POST", "/v1/completions", R"({"prompt":"x","model":"gpt-4"})", 404, "not served here", "model"},
      {"POST", "/v1/completions",
       json{{"prompt", std::vector<int32_t>(2100, 5)}, {"echo", true}, {"logprobs", 1}, {"max_tokens", 0}}.dump(), 400,
       "--max-logprob-tokens", "logprobs"},
      {"POST", "/v1/chat/completions", R"({"messages":"hi"})", 400, "messages", "messages"},
      {"GET", "/v1/completions", "", 405, "takes POST", ""},
      {"PUT", "/health", "", 405, "takes GET", ""},
      {"GET", "/v2/nothing", "", 404, "no route", ""},
      {"POST", "/v1/completions", json{{"prompt", std::string(2 << 20, 'a')}}.dump(), 413, "larger than", ""},
  };
  for (const Case& c : cases) {
    const Reply r = call(c.method, c.path, c.body);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.path << " " << c.body.substr(0, 80) << "\n" << r.raw;
    ASSERT_TRUE(r.body.contains("error")) << r.raw;
    const std::string msg = r.body["error"]["message"];
    EXPECT_NE(msg.find(c.in_message), std::string::npos) << msg;
    if (!c.param.empty()) {
      EXPECT_EQ(r.body["error"]["param"], c.param) << msg;
    }
    EXPECT_EQ(call("GET", "/health").status, 200) << "after " << c.body.substr(0, 80);
  }
  EXPECT_EQ(post("/v1/completions", {{"prompt", "still here"}, {"max_tokens", 3}}).status, 200);
}

TEST_F(ServeTest, TooManyRequestsGet429) {
  serve::Server small(*ref_, {.port = 0, .model_name = "tiny", .max_concurrent = 1});
  small.start();
  // One long request holds the only slot; the next is refused while it runs. 400 tokens take ~1 s in a Release
  // build and about a minute under ASan on a loaded 2-core CI machine: the window is wide either way, and the busy
  // client waits long enough that its request ends normally (a client that gives up leaves the server generating,
  // holding the slot, and the last request below would be refused too).
  std::thread busy([&] {
    const Reply r = call("POST", "/v1/completions",
                         json{{"prompt", "x"}, {"max_tokens", 400}, {"temperature", 0}, {"stop", "\x01"}}.dump(), &small,
                         900);
    EXPECT_EQ(r.status, 200) << r.raw;
  });
  Reply refused;
  for (int i = 0; i < 2000; ++i) {
    const Reply m = call("GET", "/metrics", "", &small);
    if (m.raw.find("mlabench_http_requests_in_flight 1") != std::string::npos) {
      refused = call("POST", "/v1/completions", R"({"prompt":"y","max_tokens":1})", &small);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  busy.join();
  EXPECT_EQ(refused.status, 429) << refused.raw;
  EXPECT_EQ(refused.body["error"]["type"], "rate_limit_error");
  EXPECT_EQ(call("POST", "/v1/completions", R"({"prompt":"y","max_tokens":1})", &small).status, 200);
}

TEST_F(ServeTest, ConcurrentRequestsEqualSequentialOnes) {
  std::vector<std::string> prompts;
  for (int i = 0; i < 8; ++i) prompts.push_back("Request number " + std::to_string(i) + " says");
  std::vector<std::string> want;
  for (const std::string& p : prompts) want.push_back(greedy_text(p, 12));
  std::vector<Reply> got(prompts.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < prompts.size(); ++i)
    threads.emplace_back([&, i] {
      got[i] = post("/v1/completions", {{"prompt", prompts[i]}, {"max_tokens", 12}, {"temperature", 0}});
    });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_EQ(got[i].status, 200) << got[i].raw;
    EXPECT_EQ(got[i].body["choices"][0]["text"], want[i]) << i;
  }
}

#endif  // MLABENCH_HAS_HTTPLIB

}  // namespace
}  // namespace mlabench
