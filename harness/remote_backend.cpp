#include "harness/remote_backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <optional>

#include "core/check.h"
#include "core/json_limits.h"
#include "harness/http_client.h"

namespace mlabench::harness {

namespace {

using json = nlohmann::json;

constexpr size_t kPromptsPerRequest = 16;  // token-id prompts batched in one /completions request

// The text of the server's error: OpenAI's {"error": {"message"}}, FastAPI's {"detail"}, {"message"}, else the
// body's start.
std::string server_message(const std::string& body) {
  try {
    const json j = parse_json_bounded(body, "the error body");
    if (j.is_object()) {
      if (j.contains("error") && j["error"].is_object() && j["error"].contains("message"))
        return j["error"]["message"].is_string() ? j["error"]["message"].get<std::string>()
                                                 : j["error"]["message"].dump();
      if (j.contains("error") && j["error"].is_string()) return j["error"].get<std::string>();
      for (const char* k : {"detail", "message"})
        if (j.contains(k)) return j[k].is_string() ? j[k].get<std::string>() : j[k].dump();
    }
  } catch (const std::exception&) {
  }
  std::string s = body.substr(0, 300);
  return s.empty() ? "(empty body)" : s;
}

// The message of a request that failed for good: the endpoint, the status or transport error, the server's own
// message, what to do.
std::string failure(const HttpRequest& rq, const HttpResponse& r, const HttpClientOptions& o) {
  const std::string where = fmt::format("{} {}", rq.method, rq.url);
  if (r.timed_out)
    return fmt::format("{}: no complete answer within the request timeout of {} s (attempt {}). HINT: the server "
                       "may be hung or overloaded; check it, or raise --request-timeout",
                       where, o.timeout_seconds, r.attempts);
  if (!r.error.empty())
    return fmt::format("{}: {} (after {} attempt(s)). HINT: check that an OpenAI-compatible server runs there and "
                       "that --backend openai:URL names its /v1 base (e.g. http://127.0.0.1:8000/v1)",
                       where, r.error, r.attempts);
  std::string hint = "HINT: check the server's log";
  if (r.status == 401 || r.status == 403) hint = "HINT: set the API key in the variable --api-key-env names";
  if (r.status == 404) hint = "HINT: check the URL (the /v1 base) and --model-name (GET /v1/models lists the ids)";
  if (r.status == 429 || r.status >= 500) hint = "HINT: the server is overloaded or failing; lower --concurrency, "
                                                 "or resume the run later with --resume";
  return fmt::format("{}: HTTP {} after {} attempt(s): {}. {}", where, r.status, r.attempts, server_message(r.body),
                     hint);
}

json parse_body(const HttpRequest& rq, const HttpResponse& r) {
  json j;
  try {
    j = parse_json_bounded(r.body, rq.url);
  } catch (const std::exception& e) {
    MLABENCH_FAIL("{} {}: HTTP {} but the body is not JSON ({}): \"{}\". HINT: check that the URL is an "
                  "OpenAI-compatible server's /v1 base",
                  rq.method, rq.url, r.status, e.what(), r.body.substr(0, 200));
  }
  MLABENCH_CHECK(j.is_object(), "{} {}: the response is JSON but not an object: {}. HINT: check that the URL is an "
                 "OpenAI-compatible server's /v1 base", rq.method, rq.url, j.dump().substr(0, 200));
  return j;
}

// A choice of a completions response by its index (servers may order them differently).
const json& choice_at(const HttpRequest& rq, const json& body, size_t index, size_t expected) {
  MLABENCH_CHECK(body.contains("choices") && body["choices"].is_array() && body["choices"].size() == expected,
                 "{} {}: the response has no \"choices\" list of {} (found {}). HINT: the server does not answer as "
                 "OpenAI's completions API does",
                 rq.method, rq.url, expected,
                 body.contains("choices") ? body["choices"].dump().substr(0, 200) : "none");
  for (const json& c : body["choices"])
    if (c.is_object() && c.contains("index") && c["index"].is_number_integer() &&
        c["index"].get<int64_t>() == static_cast<int64_t>(index))
      return c;
  const json& c = body["choices"][index];
  MLABENCH_CHECK(c.is_object(), "{} {}: choices[{}] is not an object", rq.method, rq.url, index);
  return c;
}

// A choice's score as the engine gives it (ScoreResult), greedy until a token is not its position's top entry.
struct Scored : ScoreResult {
  Scored() { is_greedy = true; }
};

// log P(continuation) from one echoed choice: token_logprobs at positions [from, to), greedy when each equals its
// position's top entry. `problem` is set (and nothing scored) when the server gave no prompt log-probabilities.
Scored read_prompt_logprobs(const json& choice, size_t from, size_t to, std::string* problem) {
  Scored s;
  if (!choice.contains("logprobs") || !choice["logprobs"].is_object()) {
    *problem = "choices[].logprobs is missing";
    return s;
  }
  const json& lp = choice["logprobs"];
  if (!lp.contains("token_logprobs") || !lp["token_logprobs"].is_array()) {
    *problem = "choices[].logprobs.token_logprobs is missing";
    return s;
  }
  const json& tl = lp["token_logprobs"];
  if (tl.size() < to) {
    *problem = fmt::format("choices[].logprobs.token_logprobs holds {} entries for a {}-token prompt (only the "
                           "generated tokens' log-probabilities, not the prompt's)", tl.size(), to);
    return s;
  }
  const json* top = lp.contains("top_logprobs") && lp["top_logprobs"].is_array() ? &lp["top_logprobs"] : nullptr;
  for (size_t i = from; i < to; ++i) {
    if (!tl[i].is_number()) {
      *problem = fmt::format("choices[].logprobs.token_logprobs[{}] (a prompt token) is {}", i, tl[i].dump());
      return s;
    }
    const double v = tl[i].get<double>();
    s.logprob += v;
    double best = -std::numeric_limits<double>::infinity();
    if (top != nullptr && i < top->size() && (*top)[i].is_object())
      for (const auto& [tok, x] : (*top)[i].items())
        if (x.is_number()) best = std::max(best, x.get<double>());
    if (!std::isfinite(best)) {
      *problem = fmt::format("choices[].logprobs.top_logprobs[{}] (a prompt token's alternatives) is missing", i);
      return s;
    }
    if (v < best) s.is_greedy = false;
  }
  return s;
}

}  // namespace

std::string normalize_base_url(const std::string& url) {
  const bool http = url.starts_with("http://"), https = url.starts_with("https://");
  const size_t host_at = http ? 7 : https ? 8 : 0;
  const size_t host_end = url.find('/', host_at);
  const std::string host = url.substr(host_at, host_end == std::string::npos ? std::string::npos : host_end - host_at);
  MLABENCH_CHECK((http || https) && !host.empty() && host.front() != ':' && url.find_first_of("?# \t\n") ==
                     std::string::npos,
                 "--backend openai:{}: not an http(s) base URL with a host. HINT: e.g. --backend "
                 "openai:http://127.0.0.1:8000/v1 (the server's /v1 base, no query)",
                 url);
  std::string out = url;
  while (out.size() > host_at && out.back() == '/') out.pop_back();
  return out;
}

struct RemoteBackend::Impl {
  RemoteBackendOptions opt;
  std::string base;
  HttpClientOptions http_opt;
  std::unique_ptr<HttpClient> http;
  std::unique_ptr<Tokenizer> tok;
  std::string model;                    // what requests send
  std::vector<std::string> listed_ids;  // GET /models
  std::optional<int64_t> max_model_len;
  int64_t max_length = 0;
  // The probe: done once, before the first loglikelihood; a refusal message when the server gives no prompt
  // log-probabilities; max_tokens 0 or 1.
  bool probed = false;
  std::string probe_refusal;
  int64_t echo_max_tokens = 0;

  std::string url(const char* path) const { return base + path; }

  HttpRequest post(const char* path, const json& body) const {
    return {.method = "POST", .url = url(path), .body = body.dump(-1, ' ', false, json::error_handler_t::replace)};
  }

  // Runs requests; throws the first failure's message.
  std::vector<json> run(const std::vector<HttpRequest>& rq) {
    const std::vector<HttpResponse> res = http->run(rq);
    std::vector<json> out;
    for (size_t i = 0; i < res.size(); ++i)
      if (!res[i].ok() && res[i].error != "abandoned") throw Error(failure(rq[i], res[i], http_opt));
    for (size_t i = 0; i < res.size(); ++i) out.push_back(parse_body(rq[i], res[i]));
    return out;
  }

  void list_models() {
    const HttpRequest rq{.method = "GET", .url = url("/models"), .body = ""};
    const json body = run({rq}).at(0);
    MLABENCH_CHECK(body.contains("data") && body["data"].is_array(), "GET {}: the response has no \"data\" list of "
                   "models: {}. HINT: the URL must be an OpenAI-compatible server's /v1 base", rq.url,
                   body.dump().substr(0, 200));
    for (const json& m : body["data"]) {
      if (!m.is_object() || !m.contains("id") || !m["id"].is_string()) continue;
      listed_ids.push_back(m["id"].get<std::string>());
      if ((opt.model_name.empty() ? listed_ids.size() == 1 : listed_ids.back() == opt.model_name) &&
          m.contains("max_model_len") && m["max_model_len"].is_number_integer())
        max_model_len = m["max_model_len"].get<int64_t>();
    }
    if (opt.model_name.empty()) {
      MLABENCH_CHECK(!listed_ids.empty(), "GET {}: the server lists no model, so none can be chosen. HINT: pass "
                     "--model-name NAME", rq.url);
      model = listed_ids.front();
    } else {
      model = opt.model_name;
      if (std::find(listed_ids.begin(), listed_ids.end(), model) == listed_ids.end() && opt.log)
        opt.log(fmt::format("warning: GET {} does not list --model-name {} (it lists: {})", rq.url, model,
                            fmt::join(listed_ids, ", ")));
    }
  }

  std::string render(const std::string& context, const std::string& system_prompt) const {
    const std::string& system = system_prompt.empty() ? opt.system_prompt : system_prompt;
    if (!opt.apply_chat_template) return system.empty() ? context : system + "\n\n" + context;
    MLABENCH_CHECK(tok != nullptr, "--apply-chat-template with --backend openai renders prompts locally for "
                   "loglikelihood and token lengths. HINT: pass --tokenizer DIR (the model's folder)");
    std::vector<ChatMessage> messages;
    if (!system.empty()) messages.push_back({.role = "system", .content = system});
    messages.push_back({.role = "user", .content = context});
    return render_chat(tok->chat_template(), messages, tok->bos_token(), tok->eos_token(), true).value();
  }
  bool special() const { return opt.add_bos && !opt.apply_chat_template; }

  const Tokenizer& need_tokenizer(const char* what) const {
    if (tok == nullptr)
      throw BackendRefusal(fmt::format("the openai backend ({}) cannot score {} without the model's tokenizer: the "
                                       "context/continuation boundary is found in token space. HINT: pass "
                                       "--tokenizer DIR (a folder with the served model's tokenizer.json)",
                                       base, what));
    return *tok;
  }

  json echo_body(const json& prompts, int64_t max_tokens) const {
    return {{"model", model}, {"prompt", prompts}, {"echo", true}, {"logprobs", 1}, {"max_tokens", max_tokens},
            {"temperature", 0}};
  }

  // Before any loglikelihood: does the server return prompt log-probabilities? (llama.cpp's server returns only
  // the generated tokens', which makes multiple choice score at chance.) max_tokens 0 first, 1 where refused.
  void probe() {
    if (probed) return;
    const Tokenizer& t = need_tokenizer("loglikelihood requests");
    std::vector<int32_t> ids = t.encode("The capital of France is Paris.", special());
    MLABENCH_CHECK(ids.size() >= 2, "the tokenizer {} encodes the probe text to {} token(s)", opt.tokenizer_dir,
                   ids.size());
    for (int64_t max_tokens : {int64_t{0}, int64_t{1}}) {
      const HttpRequest rq = post("/completions", echo_body(json(ids), max_tokens));
      const HttpResponse r = http->perform(rq);
      if (r.status == 400 && max_tokens == 0) continue;  // a server that wants at least one generated token
      if (!r.ok()) throw Error(failure(rq, r, http_opt));
      const json body = parse_body(rq, r);
      std::string problem;
      read_prompt_logprobs(choice_at(rq, body, 0, 1), 1, ids.size(), &problem);
      echo_max_tokens = max_tokens;
      probe_refusal = problem.empty()
                          ? ""
                          : fmt::format("POST {} with echo and logprobs returned no prompt log-probabilities: {}; "
                                        "loglikelihood (multiple-choice) tasks cannot be scored on this server, and "
                                        "scoring them from generated tokens alone would give chance accuracy. HINT: "
                                        "serve the model with vLLM, SGLang or mlabench serve (llama.cpp's server "
                                        "does not echo prompt log-probabilities)",
                                        rq.url, problem);
      probed = true;
      return;
    }
  }

  // log P(continuation | context) of token-id pairs, `groups` of them sharing nothing in particular; one request
  // per at most kPromptsPerRequest pairs, run concurrently.
  std::vector<Scored> score(const std::vector<ScoreRequest>& pairs) {
    probe();
    if (!probe_refusal.empty()) throw BackendRefusal(probe_refusal);
    std::vector<HttpRequest> rq;
    for (size_t at = 0; at < pairs.size(); at += kPromptsPerRequest) {
      json prompts = json::array();
      for (size_t i = at; i < std::min(pairs.size(), at + kPromptsPerRequest); ++i) {
        MLABENCH_CHECK(!pairs[i].context.empty(), "a loglikelihood request with an empty context cannot be scored "
                       "by echo (the first token has no log-probability). HINT: keep the BOS token (drop --no-bos)");
        std::vector<int32_t> ids = pairs[i].context;
        ids.insert(ids.end(), pairs[i].continuation.begin(), pairs[i].continuation.end());
        prompts.push_back(std::move(ids));
      }
      rq.push_back(post("/completions", echo_body(prompts, echo_max_tokens)));
    }
    const std::vector<json> bodies = run(rq);
    std::vector<Scored> out;
    for (size_t k = 0; k < bodies.size(); ++k) {
      const size_t n = std::min(kPromptsPerRequest, pairs.size() - k * kPromptsPerRequest);
      for (size_t i = 0; i < n; ++i) {
        const ScoreRequest& p = pairs[k * kPromptsPerRequest + i];
        std::string problem;
        const Scored s = read_prompt_logprobs(choice_at(rq[k], bodies[k], i, n), p.context.size(),
                                              p.context.size() + p.continuation.size(), &problem);
        MLABENCH_CHECK(problem.empty(), "POST {}: {}. HINT: the server stopped returning prompt log-probabilities "
                       "it returned to the start-up probe; check its version and options", rq[k].url, problem);
        out.push_back(s);
      }
    }
    return out;
  }

  // The body of one generation request and the context tokens it carries (0 when counted by the server).
  std::pair<HttpRequest, int64_t> generation_request(const GenerationRequest& r, int64_t* truncated) const {
    json body = {{"model", model}, {"max_tokens", r.gen.max_gen_toks}, {"temperature", r.gen.temperature},
                 {"top_p", r.gen.top_p}, {"n", 1}};
    // The engine backend's per-document, per-sample seed, sent as the int64 with the same bits (servers take a
    // signed 64-bit seed; mlabench serve reads it back as the same uint64).
    const uint64_t seed = r.gen.seed * 1000003ULL + static_cast<uint64_t>(r.doc_id) +
                          static_cast<uint64_t>(r.sample) * 0x9E3779B97F4A7C15ULL;
    body["seed"] = static_cast<int64_t>(seed);
    json stop = json::array();
    for (const std::string& s : r.gen.until)
      if (!s.empty()) stop.push_back(s);
    if (!stop.empty()) body["stop"] = stop;
    *truncated = 0;
    std::vector<int32_t> ids;
    if (tok != nullptr) {
      ids = tok->encode(render(r.context, r.system_prompt), special());
      if (max_length > 0) {
        const int64_t room = max_length - r.gen.max_gen_toks;
        MLABENCH_CHECK(room >= 1, "{} doc {}: max_gen_toks {} fills the {}-token window. HINT: lower max_gen_toks "
                       "(--gen-kwargs) or raise --max-length", r.subtask, r.doc_id, r.gen.max_gen_toks, max_length);
        *truncated = std::max<int64_t>(0, static_cast<int64_t>(ids.size()) - room);
        ids.erase(ids.begin(), ids.begin() + *truncated);
      }
    }
    if (opt.apply_chat_template && *truncated == 0) {
      const std::string& system = r.system_prompt.empty() ? opt.system_prompt : r.system_prompt;
      json messages = json::array();
      if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
      messages.push_back({{"role", "user"}, {"content", r.context}});
      body["messages"] = messages;
      return {post("/chat/completions", body), static_cast<int64_t>(ids.size())};
    }
    // Token ids when the tokenizer is here (a truncated chat prompt too: its rendered template's last tokens),
    // else the text.
    if (tok != nullptr)
      body["prompt"] = ids;
    else
      body["prompt"] = render(r.context, r.system_prompt);
    return {post("/completions", body), static_cast<int64_t>(ids.size())};
  }
};

RemoteBackend::RemoteBackend(const RemoteBackendOptions& options) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.opt = options;
  m.base = normalize_base_url(options.base_url);
  m.http_opt = {.concurrency = options.concurrency,
                .timeout_seconds = options.request_timeout_seconds,
                .max_attempts = options.max_attempts,
                .backoff_base_seconds = options.backoff_base_seconds,
                .backoff_max_seconds = options.backoff_max_seconds,
                .bearer_token = {},
                .log = options.log};
  if (!options.api_key_env.empty())
    if (const char* key = std::getenv(options.api_key_env.c_str())) m.http_opt.bearer_token = key;
  m.http = std::make_unique<HttpClient>(m.http_opt);
  if (!options.tokenizer_dir.empty()) {
    MLABENCH_CHECK(Tokenizer::exists(options.tokenizer_dir), "--tokenizer {}: no tokenizer.json or tokenizer.model "
                   "there. HINT: pass the served model's folder (or a copy of its tokenizer files)",
                   options.tokenizer_dir);
    m.tok = Tokenizer::load(options.tokenizer_dir).value();
  }
  m.list_models();
  m.max_length = options.max_length > 0 ? options.max_length : m.max_model_len.value_or(0);
}

RemoteBackend::~RemoteBackend() = default;

nlohmann::ordered_json RemoteBackend::describe() const {
  const Impl& m = *impl_;
  return {{"backend", "openai"},
          {"model", m.model},
          {"tokenizer", m.opt.tokenizer_dir.empty() ? nlohmann::ordered_json(nullptr)
                                                    : nlohmann::ordered_json(m.opt.tokenizer_dir)},
          {"max_length", m.max_length},
          {"apply_chat_template", m.opt.apply_chat_template},
          {"system_prompt", m.opt.system_prompt},
          {"add_bos", m.opt.add_bos}};
}

nlohmann::ordered_json RemoteBackend::server_info() const {
  const Impl& m = *impl_;
  return {{"url", m.base},
          {"model", m.model},
          {"server_model_ids", m.listed_ids},
          {"max_model_len",
           m.max_model_len ? nlohmann::ordered_json(*m.max_model_len) : nlohmann::ordered_json(nullptr)},
          {"api_key_env", m.opt.api_key_env},
          {"api_key_sent", !m.http_opt.bearer_token.empty()},
          {"echo_max_tokens", m.probed ? nlohmann::ordered_json(m.echo_max_tokens) : nlohmann::ordered_json(nullptr)},
          {"concurrency", m.opt.concurrency},
          {"request_timeout_seconds", m.opt.request_timeout_seconds}};
}

const Tokenizer* RemoteBackend::tokenizer() const { return impl_->tok.get(); }
int64_t RemoteBackend::max_context() const { return impl_->max_length; }

std::vector<int32_t> RemoteBackend::encode_prompt(const std::string& context, const std::string& system_prompt) const {
  const Impl& m = *impl_;
  MLABENCH_CHECK(m.tok != nullptr, "the openai backend has no tokenizer, so token lengths cannot be measured. HINT: "
                 "pass --tokenizer DIR (the served model's folder)");
  return m.tok->encode(m.render(context, system_prompt), m.special());
}

// Tokenized as Engine::encode_choices does (whitespace at the context's end moves to the continuation; a
// continuation's tokens are what encode(context + continuation) adds), truncated from the left as the engine
// backend truncates.
std::vector<ChoiceResult> RemoteBackend::loglikelihood(std::span<const ChoiceRequest> requests) {
  Impl& m = *impl_;
  const Tokenizer& tok = m.need_tokenizer("loglikelihood requests");
  std::vector<ScoreRequest> flat;
  std::vector<int64_t> truncated;
  for (const ChoiceRequest& r : requests) {
    const size_t first = flat.size();
    for (ScoreRequest& q : encode_choices(tok, m.render(r.context, ""), r.continuations, m.special()))
      flat.push_back(std::move(q));
    // One position less than the engine backend: servers take prompt + max_tokens (1, or 0 where allowed) within
    // max_model_len, and refuse a prompt of the whole window even with max_tokens 0.
    truncated.push_back(fit_choices_to_window(std::span(flat).subspan(first), m.max_length > 0 ? m.max_length - 1 : 0,
                                              r, "--max-length"));
  }
  const std::vector<Scored> scored = m.score(flat);
  return gather_choice_results(requests, flat, truncated, std::vector<ScoreResult>(scored.begin(), scored.end()));
}

std::vector<GenerationResult> RemoteBackend::generate(std::span<const GenerationRequest> requests) {
  Impl& m = *impl_;
  std::vector<HttpRequest> rq;
  std::vector<int64_t> truncated(requests.size()), context_tokens(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    auto [req, n] = m.generation_request(requests[i], &truncated[i]);
    rq.push_back(std::move(req));
    context_tokens[i] = n;
  }
  const std::vector<json> bodies = m.run(rq);
  std::vector<GenerationResult> out;
  for (size_t i = 0; i < bodies.size(); ++i) {
    const bool chat = rq[i].url.ends_with("/chat/completions");
    const json& c = choice_at(rq[i], bodies[i], 0, 1);
    const json* text = nullptr;
    if (chat && c.contains("message") && c["message"].is_object() && c["message"].contains("content"))
      text = &c["message"]["content"];
    else if (!chat && c.contains("text"))
      text = &c["text"];
    MLABENCH_CHECK(text != nullptr && (text->is_string() || text->is_null()), "POST {}: choices[0] has no {}: {}. "
                   "HINT: the server does not answer as OpenAI's API does",
                   rq[i].url, chat ? "message.content" : "text", c.dump().substr(0, 200));
    GenerationResult g;
    g.text = text->is_string() ? text->get<std::string>() : "";
    g.truncated_tokens = truncated[i];
    g.context_tokens = context_tokens[i];
    if (c.contains("finish_reason") && c["finish_reason"].is_string()) g.finish_reason = c["finish_reason"];
    if (const json& u = bodies[i].contains("usage") ? bodies[i]["usage"] : json(); u.is_object()) {
      if (g.context_tokens == 0 && u.contains("prompt_tokens") && u["prompt_tokens"].is_number_integer())
        g.context_tokens = u["prompt_tokens"].get<int64_t>();
      if (u.contains("completion_tokens") && u["completion_tokens"].is_number_integer())
        g.generated_tokens = u["completion_tokens"].get<int64_t>();
    }
    out.push_back(std::move(g));
  }
  return out;
}

// The engine backend's windows: disjoint prediction windows of max_length tokens, the first conditioned on BOS
// (or EOS), each later one on as many preceding tokens as fit; one window per text when the window is unknown.
std::vector<double> RemoteBackend::loglikelihood_rolling(std::span<const RollingRequest> requests) {
  Impl& m = *impl_;
  const Tokenizer& tok = m.need_tokenizer("loglikelihood_rolling requests");
  const std::optional<int32_t> prefix = tok.bos_id() ? tok.bos_id() : tok.eos_id();
  MLABENCH_CHECK(prefix.has_value(), "loglikelihood_rolling needs a BOS or EOS token to condition the first token "
                 "on. HINT: the tokenizer defines neither");
  std::vector<ScoreRequest> windows;
  std::vector<size_t> owner;
  for (size_t k = 0; k < requests.size(); ++k) {
    const std::vector<int32_t> ids = tok.encode(requests[k].text, false);
    const size_t L = m.max_length > 2 ? static_cast<size_t>(m.max_length - 1) : ids.size() + 1;  // as above
    for (ScoreRequest& w : rolling_windows(ids, *prefix, L)) {
      windows.push_back(std::move(w));
      owner.push_back(k);
    }
  }
  const std::vector<Scored> scores = m.score(windows);
  std::vector<double> out(requests.size(), 0.0);
  for (size_t i = 0; i < scores.size(); ++i) out[owner[i]] += scores[i].logprob;
  return out;
}

}  // namespace mlabench::harness
