// The HTTP side of `mlabench serve` (server.h). Each HTTP thread validates its request (openai_protocol.cpp),
// tokenizes the prompt, submits one live request per choice to the engine thread (mlabench::LiveSession) and waits
// for the results, or streams their text as server-sent events. Logprobs come from a second live request over
// prompt + generated tokens that returns every position's logits; the log-softmax and top-k are computed here,
// on the HTTP thread, not on the engine thread.
#include "harness/serve/server.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>

#include <sys/socket.h>

#include "core/check.h"

#ifdef MLABENCH_HAS_HTTPLIB
#include <httplib.h>
#endif

namespace mlabench::serve {

#ifndef MLABENCH_HAS_HTTPLIB

bool server_available() { return false; }
struct Server::Impl {};
Server::Server(Engine&, const ServerOptions&) {
  MLABENCH_FAIL("this mlabench was built without cpp-httplib, so it has no HTTP server. HINT: install "
                "libcpp-httplib-dev (tools/bootstrap.sh lists it) and configure the build again");
}
Server::~Server() = default;
int Server::port() const { return 0; }
void Server::start() {}
void Server::stop() {}
void Server::wait() {}

#else

bool server_available() { return true; }

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// ---- /metrics -------------------------------------------------------------------------------------------------
class Metrics {
 public:
  void count(const std::string& endpoint, int status) {
    std::lock_guard lock(mu_);
    ++requests_[{endpoint, status}];
  }
  void observe(double seconds) {
    std::lock_guard lock(mu_);
    const auto b = std::lower_bound(kBounds.begin(), kBounds.end(), seconds) - kBounds.begin();
    ++buckets_[static_cast<size_t>(b)];
    sum_ += seconds;
    ++n_;
  }
  std::atomic<int64_t> prompt_tokens{0}, generation_tokens{0}, in_flight{0};

  std::string render(int64_t running, int64_t waiting) {
    std::lock_guard lock(mu_);
    std::string o = "# HELP mlabench_requests_total HTTP requests by endpoint and status.\n"
                    "# TYPE mlabench_requests_total counter\n";
    for (const auto& [k, v] : requests_)
      o += fmt::format("mlabench_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", k.first, k.second, v);
    o += fmt::format("# HELP mlabench_prompt_tokens_total Prompt tokens of accepted requests.\n"
                     "# TYPE mlabench_prompt_tokens_total counter\nmlabench_prompt_tokens_total {}\n"
                     "# HELP mlabench_generation_tokens_total Tokens generated.\n"
                     "# TYPE mlabench_generation_tokens_total counter\nmlabench_generation_tokens_total {}\n"
                     "# HELP mlabench_requests_running Sequences in the engine's running batch.\n"
                     "# TYPE mlabench_requests_running gauge\nmlabench_requests_running {}\n"
                     "# HELP mlabench_requests_waiting Engine requests queued or waiting for room.\n"
                     "# TYPE mlabench_requests_waiting gauge\nmlabench_requests_waiting {}\n"
                     "# HELP mlabench_http_requests_in_flight Completion requests being served.\n"
                     "# TYPE mlabench_http_requests_in_flight gauge\nmlabench_http_requests_in_flight {}\n",
                     prompt_tokens.load(), generation_tokens.load(), running, waiting, in_flight.load());
    o += "# HELP mlabench_request_duration_seconds Time from request to last byte, completion endpoints.\n"
         "# TYPE mlabench_request_duration_seconds histogram\n";
    int64_t cum = 0;
    for (size_t i = 0; i <= kBounds.size(); ++i) {
      cum += buckets_[i];
      const std::string le = i < kBounds.size() ? fmt::format("{}", kBounds[i]) : "+Inf";
      o += fmt::format("mlabench_request_duration_seconds_bucket{{le=\"{}\"}} {}\n", le, cum);
    }
    o += fmt::format("mlabench_request_duration_seconds_sum {}\nmlabench_request_duration_seconds_count {}\n", sum_,
                     n_);
    return o;
  }

 private:
  static constexpr std::array<double, 12> kBounds{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  std::mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  std::array<int64_t, kBounds.size() + 1> buckets_{};
  double sum_ = 0;
  int64_t n_ = 0;
};

// ---- waiting for live requests --------------------------------------------------------------------------------
// The results of one HTTP request's live requests, filled on the engine thread, read on the HTTP thread.
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::optional<Result<LiveResult>>> results;
  std::deque<std::pair<size_t, std::string>> texts;  // streamed pieces: (slot, text)
  size_t n_done = 0;

  explicit Collector(size_t n) : results(n) {}
  void done(size_t k, Result<LiveResult> r) {
    {
      std::lock_guard lock(mu);
      results[k] = std::move(r);
      ++n_done;
    }
    cv.notify_all();
  }
  void wait_all() {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return n_done == results.size(); });
  }
};

// Submits every request; a refused one is answered at once with its Error. Returns the ids (0: refused).
std::vector<uint64_t> submit_all(LiveSession& live, std::vector<LiveRequest> reqs, const std::shared_ptr<Collector>& c,
                                 bool stream) {
  std::vector<uint64_t> ids(reqs.size(), 0);
  for (size_t k = 0; k < reqs.size(); ++k) {
    LiveCallbacks cb;
    cb.on_done = [c, k](Result<LiveResult> r) { c->done(k, std::move(r)); };
    if (stream)
      cb.on_text = [c, k](std::string_view t) {
        {
          std::lock_guard lock(c->mu);
          c->texts.emplace_back(k, std::string(t));
        }
        c->cv.notify_all();
      };
    Result<uint64_t> id = live.submit(std::move(reqs[k]), std::move(cb));
    if (id.ok())
      ids[k] = id.value();
    else
      c->done(k, id.error());
  }
  return ids;
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// ---- logprobs from logits -------------------------------------------------------------------------------------
// Positions [from, tokens.size()) of `tokens`: position 0 has no logprob (null, as OpenAI and vLLM give); position i
// is log_softmax(row i-1)[tokens[i]], with the k most likely tokens of that row (ties: the lower id first).
TokenLogprobs logprobs_of(const Tokenizer& tok, const Logits& lg, const std::vector<int32_t>& tokens, size_t from,
                          int64_t k) {
  TokenLogprobs out;
  const auto V = static_cast<size_t>(lg.vocab_size);
  std::vector<double> lp(V);
  std::vector<int32_t> order(V);
  int64_t offset = 0;
  for (size_t i = from; i < tokens.size(); ++i) {
    const std::string piece = tok.decode(std::span(&tokens[i], 1), false);
    out.tokens.push_back(piece);
    out.text_offset.push_back(offset);
    offset += utf8_length(tok.is_special(tokens[i]) ? std::string() : piece);  // specials are not in the text
    if (i == 0) {
      out.token_logprobs.emplace_back(std::nullopt);
      out.top.emplace_back();
      continue;
    }
    const float* row = lg.row(static_cast<int64_t>(i) - 1);
    double mx = -INFINITY;
    for (size_t v = 0; v < V; ++v) mx = std::max(mx, static_cast<double>(row[v]));
    double sum = 0;
    for (size_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
    const double lse = mx + std::log(sum);
    for (size_t v = 0; v < V; ++v) lp[v] = static_cast<double>(row[v]) - lse;
    out.token_logprobs.emplace_back(lp[static_cast<size_t>(tokens[i])]);
    std::iota(order.begin(), order.end(), 0);
    const auto kk = static_cast<std::ptrdiff_t>(std::min<size_t>(static_cast<size_t>(k), V));
    std::partial_sort(order.begin(), order.begin() + kk, order.end(), [&](int32_t a, int32_t b) {
      return lp[static_cast<size_t>(a)] > lp[static_cast<size_t>(b)] ||
             (lp[static_cast<size_t>(a)] == lp[static_cast<size_t>(b)] && a < b);
    });
    std::vector<std::pair<std::string, double>> top;
    for (std::ptrdiff_t j = 0; j < kk; ++j) {
      const int32_t id = order[static_cast<size_t>(j)];
      top.emplace_back(tok.decode(std::span(&id, 1), false), lp[static_cast<size_t>(id)]);
    }
    out.top.push_back(std::move(top));
  }
  return out;
}

// ---- one completion request -----------------------------------------------------------------------------------
struct Job {
  CompletionRequest req;
  std::vector<std::vector<int32_t>> prompts;  // token ids, one per prompt
  std::vector<std::string> echo_texts;        // what echo puts before the completion, per prompt
  int64_t max_tokens = 0;
  std::string id;
  int64_t created = 0;
  size_t n_slots() const { return prompts.size() * static_cast<size_t>(req.n); }
};

std::string random_hex() {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 rng(std::random_device{}());
  return fmt::format("{:016x}{:04x}", rng(), counter++ & 0xffff);
}

}  // namespace

struct Server::Impl {
  Engine& engine;
  ServerOptions opt;
  std::unique_ptr<LiveSession> live;
  httplib::Server http;
  Metrics metrics;
  int port = 0;
  std::thread thread;

  Impl(Engine& e, const ServerOptions& o) : engine(e), opt(o) {}

  Job prepare(const std::string& body, Endpoint ep);
  void tokenize(Job& job);
  std::vector<LiveRequest> generation_requests(const Job& job);
  void complete(const Job& job, httplib::Response& res);
  void stream(std::shared_ptr<Job> job, httplib::Response& res, std::shared_ptr<void> guard);
  std::vector<Choice> choices_of(const Job& job, std::vector<std::optional<Result<LiveResult>>>& gen);
  void handle_completion(const httplib::Request& req, httplib::Response& res, Endpoint ep);
  void routes();
};

Job Server::Impl::prepare(const std::string& body, Endpoint ep) {
  Job job;
  job.req = parse_request(body, ep, opt.protocol);
  if (!job.req.model.empty() && job.req.model != opt.model_name)
    throw ApiError(404, fmt::format("the model \"{}\" is not served here; this server serves \"{}\". HINT: GET "
                                    "/v1/models lists it",
                                    job.req.model, opt.model_name),
                   "model", "model_not_found");
  tokenize(job);
  const int64_t ctx = engine.max_context();
  size_t longest = 0;
  for (const auto& p : job.prompts) longest = std::max(longest, p.size());
  const auto plen = static_cast<int64_t>(longest);
  const char* what = ep == Endpoint::CHAT ? "messages" : "prompt";
  if (plen >= ctx)
    throw ApiError(400, fmt::format("the {} is {} tokens; the engine serves {} tokens in all (prompt + max_tokens). "
                                    "HINT: shorten it",
                                    what, plen, ctx),
                   what, "context_length_exceeded");
  job.max_tokens = job.req.max_tokens ? *job.req.max_tokens : std::min(ctx - plen, opt.protocol.max_tokens);
  if (plen + job.max_tokens > ctx)
    throw ApiError(400, fmt::format("the {} ({} tokens) plus max_tokens ({}) is {} tokens; the engine serves at most {}. "
                                    "HINT: lower max_tokens to {} or less",
                                    what, plen, job.max_tokens, plen + job.max_tokens, ctx, ctx - plen),
                   "max_tokens", "context_length_exceeded");
  if (job.req.logprobs && plen + job.max_tokens > opt.max_logprob_tokens)
    throw ApiError(400, fmt::format("logprobs were asked for {} tokens ({} prompt + max_tokens {}); the limit is {} "
                                    "(each needs a row of vocabulary logits). HINT: score shorter texts, or restart "
                                    "the server with a larger --max-logprob-tokens",
                                    plen + job.max_tokens, plen, job.max_tokens, opt.max_logprob_tokens),
                   "logprobs", "logprobs_too_long");
  job.id = (ep == Endpoint::CHAT ? "chatcmpl-" : "cmpl-") + random_hex();
  job.created = static_cast<int64_t>(std::time(nullptr));
  return job;
}

void Server::Impl::tokenize(Job& job) {
  const Tokenizer* tok = engine.tokenizer();
  if (job.req.endpoint == Endpoint::CHAT) {
    std::vector<ChatMessage> msgs;
    for (const Message& m : job.req.messages) msgs.push_back({m.role, m.content});
    Result<std::string> text = engine.apply_chat_template(msgs, true);
    if (!text.ok()) throw ApiError(400, first_line(text.error().what()), "messages", "invalid_value");
    job.prompts.push_back(engine.encode(text.value(), false).value());
    job.echo_texts.emplace_back();
  }
  const int64_t vocab = engine.summary().vocab_size;
  for (const Prompt& p : job.req.prompts) {
    if (p.is_tokens) {
      std::vector<int32_t> ids;
      for (int64_t t : p.tokens) {
        if (t >= vocab)
          throw ApiError(400, fmt::format("'prompt' holds token id {}; this model's ids are 0 .. {}", t, vocab - 1),
                         "prompt", "invalid_value");
        ids.push_back(static_cast<int32_t>(t));
      }
      job.echo_texts.push_back(tok->decode(ids, false));
      job.prompts.push_back(std::move(ids));
    } else {
      job.prompts.push_back(engine.encode(p.text, true).value());
      job.echo_texts.push_back(p.text);
    }
    if (job.prompts.back().empty())
      throw ApiError(400, "the prompt encodes to no tokens. HINT: send some text", "prompt", "invalid_value");
  }
}

std::vector<LiveRequest> Server::Impl::generation_requests(const Job& job) {
  std::vector<LiveRequest> out;
  for (const auto& prompt : job.prompts)
    for (int64_t j = 0; j < job.req.n; ++j) {
      LiveRequest r{.prompt = prompt};
      GenerateOptions& g = r.options.sampling;
      g.max_new_tokens = job.max_tokens;
      g.temperature = static_cast<float>(job.req.temperature);
      g.top_p = static_cast<float>(job.req.top_p);
      // A given seed makes choice j draw with seed + j (reproducible); without one, each choice draws its own.
      g.seed = job.req.seed ? *job.req.seed + static_cast<uint64_t>(j) : std::random_device{}() * 0x9E3779B97F4A7C15ull;
      r.options.stop = job.req.stop;
      out.push_back(std::move(r));
    }
  return out;
}

// The choices of a finished (non-streamed) job; adds logprobs by scoring prompt + generated tokens.
std::vector<Choice> Server::Impl::choices_of(const Job& job, std::vector<std::optional<Result<LiveResult>>>& gen) {
  const size_t n = job.n_slots();
  for (auto& g : gen)
    if (!g->ok()) throw ApiError(500, first_line(g->error().what()), "", "engine_error", "server_error");
  std::vector<Choice> choices(n);
  std::vector<std::vector<int32_t>> full(n);
  for (size_t k = 0; k < n; ++k) {
    const size_t p = k / static_cast<size_t>(job.req.n);
    const LiveResult& r = gen[k]->value();
    choices[k] = {.index = static_cast<int64_t>(k),
                  .text = (job.req.echo ? job.echo_texts[p] : std::string()) + r.text,
                  .finish_reason = openai_finish_reason(r.generation.finish_reason)};
    full[k] = job.prompts[p];
    full[k].insert(full[k].end(), r.generation.tokens.begin(), r.generation.tokens.end());
  }
  if (!job.req.logprobs) return choices;
  std::vector<LiveRequest> score;
  for (size_t k = 0; k < n; ++k) score.push_back({.prompt = full[k], .prompt_logits = true});
  for (LiveRequest& s : score) s.options.sampling.max_new_tokens = 0;
  auto c = std::make_shared<Collector>(n);
  submit_all(*live, std::move(score), c, false);
  c->wait_all();
  for (size_t k = 0; k < n; ++k) {
    Result<LiveResult>& r = *c->results[k];
    if (!r.ok()) throw ApiError(500, first_line(r.error().what()), "", "engine_error", "server_error");
    const size_t from = job.req.echo ? 0 : job.prompts[k / static_cast<size_t>(job.req.n)].size();
    choices[k].logprobs = logprobs_of(*engine.tokenizer(), r.value().prompt_logits, full[k], from, *job.req.logprobs);
  }
  return choices;
}

void Server::Impl::complete(const Job& job, httplib::Response& res) {
  const size_t n = job.n_slots();
  std::vector<std::optional<Result<LiveResult>>> gen(n);
  if (job.max_tokens > 0) {
    auto c = std::make_shared<Collector>(n);
    submit_all(*live, generation_requests(job), c, false);
    c->wait_all();
    gen = std::move(c->results);
  } else {
    for (auto& g : gen) {
      LiveResult none;
      none.generation.finish_reason = "length";
      g = std::move(none);
    }
  }
  const std::vector<Choice> choices = choices_of(job, gen);
  Usage u;
  for (const auto& p : job.prompts) u.prompt_tokens += static_cast<int64_t>(p.size());
  for (auto& g : gen) u.completion_tokens += static_cast<int64_t>(g->value().generation.tokens.size());
  metrics.prompt_tokens += u.prompt_tokens;
  metrics.generation_tokens += u.completion_tokens;
  const json body = completion_response(job.req.endpoint, job.id, job.created, opt.model_name, choices, u);
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

// Streams the choices' text as it comes: one chunk per piece, then each choice's finish chunk, the usage chunk
// when asked for, and [DONE]. A client that goes away cancels the requests.
void Server::Impl::stream(std::shared_ptr<Job> job, httplib::Response& res, std::shared_ptr<void> guard) {
  const size_t n = job->n_slots();
  auto c = std::make_shared<Collector>(n);
  auto ids = std::make_shared<std::vector<uint64_t>>(submit_all(*live, generation_requests(*job), c, true));
  auto sent_finish = std::make_shared<std::vector<uint8_t>>(n, 0);
  auto t0 = Clock::now();
  const Endpoint ep = job->req.endpoint;
  std::string head;
  if (ep == Endpoint::CHAT)
    for (size_t k = 0; k < n; ++k)
      head += sse_event(stream_chunk(ep, job->id, job->created, opt.model_name, static_cast<int64_t>(k), "",
                                     std::nullopt, true));
  auto pending_head = std::make_shared<std::string>(std::move(head));
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, job, c, ids, sent_finish, pending_head, guard, t0, n, ep](size_t, httplib::DataSink& sink) {
        std::string out = std::move(*pending_head);
        pending_head->clear();
        std::vector<std::pair<size_t, std::string>> texts;
        bool all_done = false;
        {
          std::unique_lock lock(c->mu);
          c->cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return !c->texts.empty() || c->n_done == n; });
          texts.assign(c->texts.begin(), c->texts.end());
          c->texts.clear();
          all_done = c->n_done == n;
        }
        for (const auto& [k, t] : texts)
          out += sse_event(stream_chunk(ep, job->id, job->created, opt.model_name, static_cast<int64_t>(k), t,
                                        std::nullopt));
        if (all_done) {
          Usage u;
          for (const auto& p : job->prompts) u.prompt_tokens += static_cast<int64_t>(p.size());
          for (size_t k = 0; k < n; ++k) {
            const Result<LiveResult>& r = *c->results[k];
            if (!r.ok()) {
              out += sse_event(ApiError(500, first_line(r.error().what()), "", "engine_error", "server_error").body());
              continue;
            }
            u.completion_tokens += static_cast<int64_t>(r.value().generation.tokens.size());
            out += sse_event(stream_chunk(ep, job->id, job->created, opt.model_name, static_cast<int64_t>(k), "",
                                          openai_finish_reason(r.value().generation.finish_reason)));
          }
          if (job->req.include_usage) out += sse_event(usage_chunk(ep, job->id, job->created, opt.model_name, u));
          out += sse_done();
          metrics.prompt_tokens += u.prompt_tokens;
          metrics.generation_tokens += u.completion_tokens;
        }
        if (!out.empty() && !sink.write(out.data(), out.size())) {
          for (uint64_t id : *ids) live->cancel(id);
          c->wait_all();  // the callbacks hold the collector; nothing of this request outlives it unanswered
          return false;
        }
        if (all_done) {
          metrics.observe(std::chrono::duration<double>(Clock::now() - t0).count());
          sink.done();
        }
        return true;
      },
      [this, ids](bool success) {  // the connection ended before the stream did: stop generating for it
        if (!success)
          for (uint64_t id : *ids) live->cancel(id);
      });
}

void Server::Impl::handle_completion(const httplib::Request& req, httplib::Response& res, Endpoint ep) {
  const auto t0 = Clock::now();
  auto finish = [&](int) { metrics.observe(std::chrono::duration<double>(Clock::now() - t0).count()); };
  if (metrics.in_flight.fetch_add(1) >= opt.max_concurrent) {
    metrics.in_flight.fetch_sub(1);
    const ApiError e(429, fmt::format("{} requests are in flight, the limit. HINT: retry later, or restart the server "
                                      "with a larger --max-concurrent",
                                      opt.max_concurrent),
                     "", "too_many_requests", "rate_limit_error");
    res.status = 429;
    res.set_content(e.body().dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
    return finish(429);
  }
  std::shared_ptr<void> guard(nullptr, [this](void*) { metrics.in_flight.fetch_sub(1); });
  try {
    auto job = std::make_shared<Job>(prepare(req.body, ep));
    if (job->req.stream) {
      res.status = 200;
      return stream(job, res, guard);
    }
    complete(*job, res);
    finish(200);
  } catch (const ApiError& e) {
    res.status = e.status();
    res.set_content(e.body().dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
    finish(e.status());
  } catch (const Error& e) {  // a check of the engine's refused the request (token ids, lengths)
    const ApiError a(400, first_line(e.what()), ep == Endpoint::CHAT ? "messages" : "prompt", "invalid_value");
    res.status = 400;
    res.set_content(a.body().dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
    finish(400);
  }
}

void Server::Impl::routes() {
  auto json_reply = [](httplib::Response& res, int status, const json& j) {
    res.status = status;
    res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
  };
  http.Post("/v1/completions", [this](const httplib::Request& q, httplib::Response& r) {
    handle_completion(q, r, Endpoint::COMPLETIONS);
  });
  http.Post("/v1/chat/completions", [this](const httplib::Request& q, httplib::Response& r) {
    handle_completion(q, r, Endpoint::CHAT);
  });
  http.Get("/v1/models", [this, json_reply](const httplib::Request&, httplib::Response& r) {
    json_reply(r, 200, {{"object", "list"},
                        {"data", json::array({{{"id", opt.model_name}, {"object", "model"}, {"created", 0},
                                               {"owned_by", "mlabench"}, {"max_model_len", engine.max_context()}}})}});
  });
  http.Get("/health", [json_reply](const httplib::Request&, httplib::Response& r) {
    json_reply(r, 200, {{"status", "ok"}});
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& r) {
    r.set_content(metrics.render(live->n_running(), live->n_waiting()), "text/plain; version=0.0.4");
  });
  // A known path with another method: 405 naming the one it takes.
  auto not_allowed = [json_reply](const char* allow) {
    return [json_reply, allow](const httplib::Request& q, httplib::Response& r) {
      r.set_header("Allow", allow);
      json_reply(r, 405, ApiError(405, fmt::format("{} {} is not served; this path takes {}", q.method, q.path, allow),
                                  "", "method_not_allowed")
                             .body());
    };
  };
  for (const char* p : {"/v1/completions", "/v1/chat/completions"}) {
    http.Get(p, not_allowed("POST"));
    http.Put(p, not_allowed("POST"));
    http.Delete(p, not_allowed("POST"));
    http.Patch(p, not_allowed("POST"));
  }
  for (const char* p : {"/v1/models", "/health", "/metrics"}) {
    http.Post(p, not_allowed("GET"));
    http.Put(p, not_allowed("GET"));
    http.Delete(p, not_allowed("GET"));
    http.Patch(p, not_allowed("GET"));
  }
  // Whatever httplib answers itself (no route, body too large, a malformed request) gets an OpenAI error body.
  http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& q, httplib::Response& r) {
    if (!r.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string msg;
    if (r.status == 404)
      msg = fmt::format("no route {} {}. HINT: the endpoints are POST /v1/completions, POST /v1/chat/completions, "
                        "GET /v1/models, GET /health, GET /metrics",
                        q.method, q.path);
    else if (r.status == 413)
      msg = fmt::format("the request body is larger than {} bytes, the limit. HINT: send less, or restart the server "
                        "with a larger --max-body-bytes",
                        opt.max_body_bytes);
    else
      msg = fmt::format("the HTTP request was refused with status {}", r.status);
    const char* code = r.status == 404 ? "not_found" : r.status == 413 ? "body_too_large" : "bad_request";
    r.set_content(ApiError(r.status, msg, "", code).body().dump(-1, ' ', false, json::error_handler_t::replace),
                  "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));
  // Every request is counted once it is answered (a stream: once it ended); unknown paths as "other".
  http.set_logger([this](const httplib::Request& q, const httplib::Response& r) {
    static const std::array<std::string, 5> known{"/v1/completions", "/v1/chat/completions", "/v1/models", "/health",
                                                  "/metrics"};
    const bool k = std::find(known.begin(), known.end(), q.path) != known.end();
    metrics.count(k ? q.path : "other", r.status);
  });
  http.set_exception_handler([json_reply](const httplib::Request&, httplib::Response& r, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = first_line(e.what());
    } catch (...) {
    }
    json_reply(r, 500, ApiError(500, what, "", "internal_error", "server_error").body());
  });
}

Server::Server(Engine& engine, const ServerOptions& options) : impl_(std::make_unique<Impl>(engine, options)) {
  Impl& m = *impl_;
  if (m.opt.model_name.empty())
    m.opt.model_name = std::filesystem::path(engine.summary().model_dir).filename().string();
  if (m.opt.model_name.empty()) m.opt.model_name = "mlabench";
  MLABENCH_CHECK(m.opt.max_concurrent >= 1, "--max-concurrent is {}; it must be >= 1", m.opt.max_concurrent);
  m.live = engine.start_live().value();
  const int threads = m.opt.http_threads > 0 ? m.opt.http_threads : static_cast<int>(m.opt.max_concurrent) + 8;
  m.http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  m.http.set_payload_max_length(m.opt.max_body_bytes);
  m.http.set_keep_alive_max_count(1000);
  m.routes();
  // cpp-httplib listens with a backlog of 5 (compiled into Debian's library): a burst of connections then waits
  // for SYN retransmits or fails. Its socket hook gives the listening socket; listen() again raises the backlog.
  int listen_fd = -1;
  m.http.set_socket_options([&listen_fd](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    listen_fd = sock;
  });
  m.port = m.opt.port == 0 ? m.http.bind_to_any_port(m.opt.host) : (m.http.bind_to_port(m.opt.host, m.opt.port) ? m.opt.port : -1);
  MLABENCH_CHECK(m.port > 0, "could not listen on {}:{}. HINT: the port may be in use (pick another with --port, or "
                 "--port 0 for any free one) or the host is not an address of this machine",
                 m.opt.host, m.opt.port);
  if (listen_fd >= 0) ::listen(listen_fd, SOMAXCONN);
}

Server::~Server() {
  stop();
  wait();
  impl_->live.reset();
}

int Server::port() const { return impl_->port; }

void Server::start() {
  impl_->thread = std::thread([m = impl_.get()] { m->http.listen_after_bind(); });
}

void Server::stop() {
  // stop() only acts on a listening server: wait for start()'s thread to reach listen.
  for (int i = 0; impl_->thread.joinable() && !impl_->http.is_running() && i < 2000; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  impl_->http.stop();
}

void Server::wait() {
  if (impl_->thread.joinable()) impl_->thread.join();
}

#endif  // MLABENCH_HAS_HTTPLIB

}  // namespace mlabench::serve
