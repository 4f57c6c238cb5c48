// Engine: the public API over the serving core (engine/serving: scheduler, block pool, step plans) and one
// model runner, the GPU's or the CPU reference engine's; every call becomes serving requests on the same path.
// Internal code throws mlabench::Error; this file is the edge where those become Result values.
#include <omp.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <new>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "engine/gpu/gpu_runner.h"
#include "engine/model/cpu_runner.h"
#include "engine/model/model_info.h"
#include "engine/parallel/shard_plan.h"
#include "engine/parallel/sharded_runner.h"
#include "engine/serving/serving_engine.h"
#include "mlabench/engine.h"

namespace mlabench {

namespace {

template <class F>
auto guarded(F&& f) -> Result<decltype(f())> {
  try {
    return f();
  } catch (const Error& e) {
    return e;
  } catch (const std::bad_alloc&) {
    return Error(
        "out of memory. HINT: the model or sequence is too large for this machine's RAM; use a smaller "
        "model or shorter input");
  }
}

// The "tokenizer" block of `mlabench info`.
void add_tokenizer_summary(ModelSummary& s, const Tokenizer& t) {
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(s.json);
  j["tokenizer"] = {{"kind", t.kind()},
                    {"vocab_size", t.vocab_size()},
                    {"bos_token", t.bos_token()},
                    {"eos_token", t.eos_token()},
                    {"chat_template", std::string(chat_template_name(t.chat_template()))},
                    {"chat_template_match", t.chat_template_match()}};
  s.json = j.dump(2);
}

// Bytes of all weights and of those one decode token multiplies (active experts only), from the config alone,
// at the dtype the weights are stored in.
std::pair<uint64_t, uint64_t> weight_footprint(const ModelConfig& c, DType stored) {
  const ParamCounts p = count_params(c);
  const uint64_t es = dtype_size(stored);
  return {static_cast<uint64_t>(p.total) * es, static_cast<uint64_t>(p.active_per_token) * es};
}

GenerateResult to_generate_result(serving::Result& res) {
  GenerateResult r;
  r.tokens = std::move(res.tokens);
  r.finish_reason = res.finish_reason;
  r.prefill_seconds = res.first_token_seconds;
  r.decode_seconds = res.token_seconds.empty() ? 0.0 : res.token_seconds.back() - res.first_token_seconds;
  r.token_seconds = std::move(res.token_seconds);
  r.prefix_tokens_reused = res.prefix_tokens_reused;
  return r;
}

}  // namespace

struct Engine::Impl {
  ModelSummary summary;
  ModelConfig cfg;
  std::unique_ptr<serving::ServingEngine> serving;
  std::unique_ptr<Tokenizer> tokenizer;
  uint64_t weight_bytes = 0;
  uint64_t active_weight_bytes = 0;

  const ModelConfig& config() const { return cfg; }

  void check_tokens(std::span<const int32_t> tokens, const char* what, int64_t extra) const {
    const ModelConfig& c = config();
    MLABENCH_CHECK(!tokens.empty(), "{} is empty: at least one token id is needed", what);
    for (size_t i = 0; i < tokens.size(); ++i)
      MLABENCH_CHECK(tokens[i] >= 0 && tokens[i] < c.vocab_size,
                     "{}: token id {} at position {} is out of range: "
                     "the model's vocabulary has {} ids (0..{}). HINT: token ids must come from this model's "
                     "tokenizer",
                     what, tokens[i], i, c.vocab_size, c.vocab_size - 1);
    const int64_t total = static_cast<int64_t>(tokens.size()) + extra;
    MLABENCH_CHECK(total <= c.max_position_embeddings,
                   "{}: {} positions requested but the model supports {} "
                   "(max_position_embeddings in config.json)",
                   what, total, c.max_position_embeddings);
  }

  const Tokenizer& need_tokenizer() const {
    MLABENCH_CHECK(tokenizer != nullptr,
                   "the model folder {} has no tokenizer (tokenizer.json or tokenizer.model). HINT: copy the "
                   "checkpoint's tokenizer files into it, or pass token ids",
                   summary.model_dir);
    return *tokenizer;
  }

  // What every generation path checks before it starts: the options and the prompt's ids and length.
  void check_generation(std::span<const int32_t> prompt, const GenerateOptions& o) const {
    MLABENCH_CHECK(o.max_new_tokens >= 0, "max_new_tokens must be >= 0, got {}", o.max_new_tokens);
    MLABENCH_CHECK(std::isfinite(o.temperature) && o.temperature >= 0.0f && o.temperature <= 100.0f,
                   "temperature is {}; accepted range 0 .. 100 (0: greedy)", o.temperature);
    MLABENCH_CHECK(o.top_p > 0.0f && o.top_p <= 1.0f, "top_p must be in (0, 1], got {}", o.top_p);
    check_tokens(prompt, "prompt", o.max_new_tokens);
  }

  std::vector<serving::Result> run(const std::vector<serving::Request>& requests,
                                   const serving::TokenCallback& on_token = {}) {
    return serving->run(requests, on_token);
  }
};

namespace {

}  // namespace

Engine::Engine() : impl_(std::make_unique<Impl>()) {}
Engine::~Engine() = default;

Result<std::unique_ptr<Engine>> Engine::open(const EngineOptions& options) {
  return guarded([&]() -> std::unique_ptr<Engine> {
    if (options.n_threads > 0) omp_set_num_threads(options.n_threads);
    ModelConfig c = load_config(options.model_dir);
    std::unique_ptr<Engine> e(new Engine());
    Impl& m = *e->impl_;
    m.cfg = c;
    serving::ServingLimits limits = serving::serving_limits(options, c);
    std::unique_ptr<serving::ModelRunner> runner;
    MLABENCH_CHECK(options.tp >= 1 && options.tp <= 64 && options.ep >= 1 && options.ep <= 64,
                   "--tp {} --ep {}: each is a number of ranks, 1 to 64", options.tp, options.ep);
    const parallel::ParallelConfig split{.tp = options.tp, .ep = options.ep, .dp_attention = options.dp_attention};
    const bool fp8_weights = options.weights_dtype == WeightsDtype::FP8;
    if (split.world() > 1 || split.dp_attention) {
      // Every rank's plan first: a split that does not divide is refused before any weight is read.
      parallel::check_sharded_options(c, options);
      // Random weights as sources: each rank generates only its slices (GPU ranks on their GPU), so a model
      // larger than one GPU or the host never exists whole; a checkpoint's slices are views of its mmap.
      // FP8 on the CPU: the whole model quantised first (random weights generated whole), then sliced, so a rank
      // holds the unsharded model's codes and grids (shard_model refuses column slices off the 128 grid). On GPU
      // ranks each rank quantises its BF16 slices as it uploads them, the same codes and grids where every slice is
      // on the 128 grid (check_sharded_options refuses the others); each rank's cache holds its own FP8 slots.
      const bool cpu = options.device == Device::CPU;
      ModelWeights w = options.random_weights_seed
                           ? (cpu && fp8_weights ? random_weights(c, *options.random_weights_seed)
                                                 : random_weight_sources(c, *options.random_weights_seed))
                           : load_weights(c, options.model_dir);
      // An FP8 checkpoint on GPU ranks: each rank uploads its slices' codes as stored with the whole matrix's
      // blocks (put_fp8), where every slice is on the 128 grid (check_fp8_grid, as for --weights-dtype fp8).
      const bool fp8_checkpoint = !options.random_weights_seed && holds_fp8(w);
      m.summary = summarize(c, options.model_dir, w.checkpoint.get());
      m.active_weight_bytes = weight_footprint(c, w.embed.dtype).second;
      m.weight_bytes = cpu && fp8_weights ? quantize_weights_fp8(w) : w.stored_bytes;
      EngineOptions rank_options = options;
      if (!cpu && fp8_checkpoint) {
        parallel::check_fp8_grid(c, split);
        rank_options.weights_dtype = WeightsDtype::FP8;
        // The model's bytes in its BF16 parts' dtype, scaled below to the ranks' FP8 share as for --weights-dtype
        // fp8 (its stored bytes are already FP8's).
        m.weight_bytes = weight_footprint(c, w.embed.dtype).first;
      }
      const size_t es = dtype_size(w.embed.dtype);
      runner = options.device == Device::CUDA ? parallel::make_sharded_gpu_runner(c, std::move(w), rank_options, limits)
                                              : parallel::make_sharded_cpu_runner(c, std::move(w), options, limits);
      if (!cpu && (fp8_weights || fp8_checkpoint)) {
        // The model's bytes and the active ones at the FP8 share the ranks hold (their codes, grids, BF16 head and
        // router against their slices' unquantised bytes), as the one-GPU branch below scales them.
        double sliced = 0;
        for (int r = 0; r < split.world(); ++r)
          sliced += static_cast<double>(parallel::rank_parameters(c, parallel::plan_shards(c, split, r))) *
                    static_cast<double>(es);
        const double share = static_cast<double>(runner->weight_bytes()) / sliced;
        m.weight_bytes = static_cast<uint64_t>(static_cast<double>(m.weight_bytes) * share);
        m.active_weight_bytes = static_cast<uint64_t>(static_cast<double>(m.active_weight_bytes) * share);
      }
    } else if (options.device == Device::CUDA) {
      // Random weights are generated on the device (full-size shapes never touch host memory); a checkpoint is
      // copied straight from its mmap.
      std::optional<ModelWeights> w;
      if (!options.random_weights_seed) w = load_weights(c, options.model_dir);
      // An FP8 checkpoint's matrices go to the device as stored: the GPU model holds FP8 weights whatever
      // --weights-dtype says (auto = as stored).
      const bool fp8_checkpoint = w && holds_fp8(*w);
      EngineOptions gpu_options = options;
      if (fp8_checkpoint) gpu_options.weights_dtype = WeightsDtype::FP8;
      m.summary = summarize(c, options.model_dir, w ? w->checkpoint.get() : nullptr);
      std::tie(m.weight_bytes, m.active_weight_bytes) =
          weight_footprint(c, options.precision == Precision::FLOAT32 ? DType::F32 : w ? w->embed.dtype : c.dtype);
      runner = make_gpu_runner(c, w ? &*w : nullptr, options.random_weights_seed.value_or(0), gpu_options, limits);
      if (fp8_weights || fp8_checkpoint) {
        // Codes and grids as uploaded; the active bytes (bench's decode roofline) scaled by the same share. The head
        // and router stay BF16, so their reads are counted at the FP8 share (V2-Lite's 0.42 GB head as ~0.22 GB).
        const uint64_t stored = m.weight_bytes;
        m.weight_bytes = runner->weight_bytes();
        m.active_weight_bytes = static_cast<uint64_t>(static_cast<double>(m.active_weight_bytes) *
                                                      static_cast<double>(m.weight_bytes) / static_cast<double>(stored));
      }
    } else {
      ModelWeights w = options.random_weights_seed ? random_weights(c, *options.random_weights_seed)
                                                   : load_weights(c, options.model_dir);
      m.summary = summarize(c, options.model_dir, w.checkpoint.get());
      m.active_weight_bytes = weight_footprint(c, w.embed.dtype).second;
      m.weight_bytes = fp8_weights ? quantize_weights_fp8(w) : w.stored_bytes;
      runner = make_cpu_runner(std::move(c), std::move(w), options, limits);
    }
    m.serving = std::make_unique<serving::ServingEngine>(std::move(runner), limits);
    if (Tokenizer::exists(options.model_dir)) {
      m.tokenizer = Tokenizer::load(options.model_dir).value();
      add_tokenizer_summary(m.summary, *m.tokenizer);
    }
    return e;
  });
}

const ModelSummary& Engine::summary() const { return impl_->summary; }
uint64_t Engine::weight_bytes() const { return impl_->weight_bytes; }
uint64_t Engine::active_weight_bytes() const { return impl_->active_weight_bytes; }

Result<Logits> Engine::logits(std::span<const int32_t> tokens) {
  return guarded([&] {
    impl_->check_tokens(tokens, "tokens", 0);
    Logits out;
    out.n_tokens = static_cast<int64_t>(tokens.size());
    out.vocab_size = impl_->config().vocab_size;
    const serving::Request rq{.tokens = std::vector<int32_t>(tokens.begin(), tokens.end()), .all_logits = true};
    out.data = std::move(impl_->run({rq}).at(0).logits);
    return out;
  });
}

Result<ScoreResult> Engine::score(std::span<const int32_t> context, std::span<const int32_t> continuation) {
  return guarded([&] {
    impl_->check_tokens(context, "context", static_cast<int64_t>(continuation.size()));
    impl_->check_tokens(continuation, "continuation", static_cast<int64_t>(context.size()));
    const ScoreRequest rq{std::vector<int32_t>(context.begin(), context.end()),
                          std::vector<int32_t>(continuation.begin(), continuation.end())};
    return score_batch(std::span(&rq, 1)).value().at(0);
  });
}

Result<GenerateResult> Engine::generate(std::span<const int32_t> prompt, const GenerateOptions& o) {
  const GenerateRequest r{.prompt = std::vector<int32_t>(prompt.begin(), prompt.end()), .options = o};
  Result<std::vector<GenerateResult>> all = generate_batch(std::span(&r, 1));
  if (!all.ok()) return all.error();
  return std::move(all.value().at(0));
}

Result<std::vector<ScoreResult>> Engine::score_batch(std::span<const ScoreRequest> requests) {
  return guarded([&] {
    std::vector<serving::Request> rq;
    for (const ScoreRequest& r : requests) {
      impl_->check_tokens(r.context, "context", static_cast<int64_t>(r.continuation.size()));
      impl_->check_tokens(r.continuation, "continuation", static_cast<int64_t>(r.context.size()));
      // One sequence, context then continuation, scored from the continuation on: the choices of one question
      // share the context's blocks through the prefix cache, so it is computed once.
      serving::Request q{.tokens = r.context, .score_from = static_cast<int64_t>(r.context.size())};
      q.tokens.insert(q.tokens.end(), r.continuation.begin(), r.continuation.end());
      rq.push_back(std::move(q));
    }
    const std::vector<serving::Result> res = impl_->run(rq);
    std::vector<ScoreResult> out;
    for (size_t i = 0; i < res.size(); ++i)
      out.push_back({.logprob = res[i].logprob, .is_greedy = res[i].is_greedy,
                     .n_tokens = static_cast<int64_t>(requests[i].continuation.size())});
    return out;
  });
}

Result<std::vector<GenerateResult>> Engine::generate_batch(std::span<const GenerateRequest> requests) {
  return guarded([&] {
    std::vector<serving::Request> rq;
    for (const GenerateRequest& r : requests) {
      impl_->check_generation(r.prompt, r.options);
      rq.push_back({.tokens = r.prompt, .gen = r.options});
    }
    std::vector<serving::Result> res = impl_->run(rq);
    std::vector<GenerateResult> out;
    for (serving::Result& x : res) out.push_back(to_generate_result(x));
    return out;
  });
}

EngineStats Engine::stats() const {
  const serving::Stats& s = impl_->serving->stats();
  return {.steps = s.steps, .prefill_tokens = s.prefill_tokens, .decode_tokens = s.decode_tokens,
          .prefix_tokens_reused = s.prefix_tokens_reused, .preemptions = s.preemptions, .max_running = s.max_running};
}

int64_t Engine::kv_cache_tokens() const {
  const serving::BlockPool& pool = impl_->serving->pool();
  return pool.n_blocks() * pool.block_size();
}

int64_t Engine::kv_block_size() const { return impl_->serving->pool().block_size(); }

int Engine::kv_cache_partitions() const { return impl_->serving->pool().n_partitions(); }

uint64_t Engine::kv_bytes_per_token() const {
  return impl_->serving->runner().bytes_per_block() / static_cast<uint64_t>(impl_->serving->pool().block_size());
}

std::string Engine::device_json() const { return impl_->serving->runner().describe_json(); }

double Engine::measure_copy_bandwidth_gbps() { return impl_->serving->runner().copy_bandwidth_gbps(); }

bool Engine::set_profiling(bool on) { return impl_->serving->runner().set_profiling(on); }

std::string Engine::take_profile_json() { return impl_->serving->runner().take_profile_json(); }

const Tokenizer* Engine::tokenizer() const { return impl_->tokenizer.get(); }

Result<std::vector<int32_t>> Engine::encode(std::string_view text, bool add_special_tokens) const {
  return guarded([&] { return impl_->need_tokenizer().encode(text, add_special_tokens); });
}

Result<ScoreResult> Engine::score(std::string_view context, std::string_view continuation) {
  return guarded([&] {
    const std::string cont(continuation);
    const ScoreRequest rq = encode_choices(context, std::span(&cont, 1), true).value().at(0);
    return score_batch(std::span(&rq, 1)).value().at(0);
  });
}

std::vector<ScoreRequest> encode_choices(const Tokenizer& tok, std::string_view context,
                                         std::span<const std::string> continuations, bool add_special_tokens) {
  // lm-evaluation-harness's _encode_pair: trailing whitespace of the context moves to the continuation, which
  // is the same for every choice, so the context is encoded once.
  const size_t keep = context.find_last_not_of(" \t\n\r\f\v");
  const size_t cut = keep == std::string_view::npos ? 0 : keep + 1;
  const std::string ctx(context.substr(0, cut)), moved(context.substr(cut));
  const std::vector<int32_t> ctx_ids = tok.encode(ctx, add_special_tokens);
  std::vector<ScoreRequest> out;
  for (const std::string& c : continuations) {
    const std::vector<int32_t> whole = tok.encode(ctx + moved + c, add_special_tokens);
    MLABENCH_CHECK(whole.size() > ctx_ids.size(), "the continuation \"{}\" adds no tokens after the context. "
                   "HINT: a choice must be non-empty text",
                   c);
    out.push_back({.context = ctx_ids,
                   .continuation = std::vector<int32_t>(whole.begin() + static_cast<std::ptrdiff_t>(ctx_ids.size()),
                                                        whole.end())});
  }
  return out;
}

Result<std::vector<ScoreRequest>> Engine::encode_choices(std::string_view context,
                                                         std::span<const std::string> continuations,
                                                         bool add_special_tokens) const {
  return guarded(
      [&] { return mlabench::encode_choices(impl_->need_tokenizer(), context, continuations, add_special_tokens); });
}

namespace {

// The text side of a generation: decodes tokens as they come (no half characters) and watches for stop strings;
// the text ends before the first stop string, or holds everything when a stop id or the length ended it.
class TextStop {
 public:
  TextStop(const Tokenizer& tok, const std::vector<std::string>& stop) : stream_(tok, true), stop_(&stop) {
    for (const auto& s : stop) max_stop_ = std::max(max_stop_, s.size());
  }
  /// Returns true when the text now contains a stop string. Only the new text (and the stop string's length
  /// before it) is searched, so a long generation costs linear time.
  bool step(int32_t id) {
    const size_t before = text_.size();
    text_ += stream_.step(id);
    for (const auto& s : *stop_) {
      if (s.empty()) continue;
      const size_t from = before >= s.size() - 1 ? before - (s.size() - 1) : 0;
      const size_t at = text_.find(s, from);
      if (at != std::string::npos) stop_at_ = std::min(stop_at_, at);
    }
    return stop_at_ != std::string::npos;
  }
  /// Bytes of the text that are final: before the stop string once found; otherwise all but the last
  /// (longest stop string - 1) bytes, which could begin a stop string, backed off to a character boundary.
  size_t stable_size() const {
    if (stop_at_ != std::string::npos) return stop_at_;
    if (max_stop_ <= 1) return text_.size();
    size_t n = text_.size() >= max_stop_ - 1 ? text_.size() - (max_stop_ - 1) : 0;
    while (n > 0 && (static_cast<unsigned char>(text_[n]) & 0xC0) == 0x80) --n;
    return n;
  }
  std::string_view text() const { return text_; }
  std::string finish() {
    if (stop_at_ == std::string::npos)
      text_ += stream_.flush();  // a stop id itself is special, not text
    else
      text_.resize(stop_at_);
    return std::move(text_);
  }

 private:
  StreamDecoder stream_;
  const std::vector<std::string>* stop_;
  std::string text_;
  size_t stop_at_ = std::string::npos;
  size_t max_stop_ = 0;
};

GenerateOptions with_eos(const Tokenizer& tok, const TextGenerateOptions& o) {
  GenerateOptions g = o.sampling;
  if (!o.ignore_eos)
    if (auto eos = tok.eos_id()) g.stop_token_ids.push_back(*eos);
  return g;
}

}  // namespace

Result<std::vector<TextGenerateResult>> Engine::generate_batch(std::span<const TextGenerateRequest> requests) {
  return guarded([&] {
    const Tokenizer& tok = impl_->need_tokenizer();
    std::vector<TextGenerateResult> out(requests.size());
    std::vector<TextStop> stops;
    for (size_t i = 0; i < requests.size(); ++i) {
      out[i].prompt_tokens = requests[i].prompt_tokens.empty()
                                 ? tok.encode(requests[i].prompt, requests[i].options.add_special_tokens)
                                 : requests[i].prompt_tokens;
      stops.emplace_back(tok, requests[i].options.stop);
    }
std::vector<serving::Request> rq;
    for (size_t i = 0; i < requests.size(); ++i) {
      const GenerateOptions g = with_eos(tok, requests[i].options);
      impl_->check_generation(out[i].prompt_tokens, g);
      rq.push_back({.tokens = out[i].prompt_tokens, .gen = g});
    }
    std::vector<serving::Result> res = impl_->run(rq, [&](size_t i, int32_t id) { return stops[i].step(id); });
    for (size_t i = 0; i < requests.size(); ++i) {
      out[i].generation = to_generate_result(res[i]);
      out[i].text = stops[i].finish();
    }
    return out;
  });
}

Result<TextGenerateResult> Engine::generate(std::string_view prompt, const TextGenerateOptions& o) {
  const TextGenerateRequest r{.prompt = std::string(prompt), .options = o};
  Result<std::vector<TextGenerateResult>> all = generate_batch(std::span(&r, 1));
  if (!all.ok()) return all.error();
  return std::move(all.value().at(0));
}

int64_t Engine::max_context() const { return impl_->serving->limits().max_context; }
int64_t Engine::max_step_tokens() const { return impl_->serving->limits().max_step_tokens; }

Result<std::string> Engine::apply_chat_template(std::span<const ChatMessage> messages, bool add_generation_prompt,
                                                std::optional<ChatTemplate> override_template) const {
  return guarded([&] {
    const Tokenizer& tok = impl_->need_tokenizer();
    return render_chat(override_template.value_or(tok.chat_template()), messages, tok.bos_token(), tok.eos_token(),
                       add_generation_prompt)
        .value();
  });
}

// ---------------------------------------------------------------------------------------------------
// Live serving: submit() (any thread) queues under a mutex; the engine thread runs ServingEngine::run_live, which
// takes the queue at every step, so a request joins the batch one step after it arrives. The text side (TextStop,
// EOS, stop strings) is the one Engine::generate(text) uses, so a live request returns the same text.

struct LiveSession::Impl {
  struct Pending {  // queued by submit, not yet handed to the scheduler
    uint64_t id = 0;
    serving::Request request;
    LiveRequest live;
    LiveCallbacks callbacks;
    std::chrono::steady_clock::time_point t0;
  };
  struct Active {  // owned by the engine thread from hand-over to on_done
    LiveRequest live;
    LiveCallbacks callbacks;
    std::chrono::steady_clock::time_point t0;
    std::unique_ptr<TextStop> text;
    size_t emitted = 0;
    bool cancelled = false;
  };

  Engine::Impl* engine = nullptr;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Pending> queue;              // under mu
  std::unordered_set<uint64_t> cancels;   // under mu
  bool stopping = false;                  // under mu
  uint64_t next_id = 1;                   // under mu
  std::atomic<int64_t> running{0}, waiting{0};
  std::unordered_map<uint64_t, Active> active;  // engine thread only
  std::thread thread;

  bool arrivals(std::vector<serving::LiveArrival>& out, bool wait);
  bool on_token(uint64_t id, int32_t token);
  void on_done(uint64_t id, serving::Result&& r);
  void on_error(uint64_t id, const Error& e);
  void emit(Active& a, size_t upto) {
    if (upto > a.emitted && a.callbacks.on_text) a.callbacks.on_text(a.text->text().substr(a.emitted, upto - a.emitted));
    a.emitted = std::max(a.emitted, upto);
  }
};

bool LiveSession::Impl::arrivals(std::vector<serving::LiveArrival>& out, bool wait) {
  std::deque<Pending> taken;
  std::unordered_set<uint64_t> cancelled;
  {
    std::unique_lock lock(mu);
    if (wait) cv.wait(lock, [&] { return stopping || !queue.empty(); });
    if (stopping) return false;  // the destructor fails what is still queued
    taken.swap(queue);
    cancelled.swap(cancels);
  }
  const Tokenizer& tok = engine->need_tokenizer();
  for (Pending& p : taken) {
    Active& a = active[p.id];  // map nodes stay put: the TextStop refers to this entry's stop strings
    a.live = std::move(p.live);
    a.callbacks = std::move(p.callbacks);
    a.t0 = p.t0;
    a.text = std::make_unique<TextStop>(tok, a.live.options.stop);
    out.push_back({.request = std::move(p.request), .tag = p.id});
  }
  for (uint64_t id : cancelled)
    if (auto it = active.find(id); it != active.end()) it->second.cancelled = true;
  return true;
}

bool LiveSession::Impl::on_token(uint64_t id, int32_t token) {
  Active& a = active.at(id);
  const bool stop = a.text->step(token);
  emit(a, a.text->stable_size());
  return stop || a.cancelled;
}

void LiveSession::Impl::on_done(uint64_t id, serving::Result&& r) {
  auto it = active.find(id);
  Active& a = it->second;
  LiveResult out;
  out.generation = to_generate_result(r);
  if (a.cancelled && out.generation.finish_reason == "stop_string") out.generation.finish_reason = "cancelled";
  if (a.live.prompt_logits) {
    out.prompt_logits.n_tokens = static_cast<int64_t>(a.live.prompt.size());
    out.prompt_logits.vocab_size = engine->config().vocab_size;
    out.prompt_logits.data = std::move(r.logits);
  }
  const std::string text = a.text->finish();
  if (text.size() > a.emitted && a.callbacks.on_text) a.callbacks.on_text(std::string_view(text).substr(a.emitted));
  out.text = text;
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - a.t0).count();
  LiveCallbacks cb = std::move(a.callbacks);
  active.erase(it);
  if (cb.on_done) cb.on_done(std::move(out));
}

void LiveSession::Impl::on_error(uint64_t id, const Error& e) {
  auto it = active.find(id);
  if (it == active.end()) return;
  LiveCallbacks cb = std::move(it->second.callbacks);
  active.erase(it);
  if (cb.on_done) cb.on_done(e);
}

LiveSession::LiveSession() : impl_(std::make_unique<Impl>()) {}

LiveSession::~LiveSession() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
  const Error stopped("the live session stopped before the request started. HINT: resubmit it");
  for (Impl::Pending& p : impl_->queue)
    if (p.callbacks.on_done) p.callbacks.on_done(stopped);
}

Result<uint64_t> LiveSession::submit(LiveRequest request, LiveCallbacks callbacks) {
  return guarded([&]() -> uint64_t {
    Engine::Impl& e = *impl_->engine;
    const GenerateOptions g = with_eos(e.need_tokenizer(), request.options);
    e.check_generation(request.prompt, g);
    const serving::ServingLimits& lim = e.serving->limits();
    const int64_t total = static_cast<int64_t>(request.prompt.size()) + g.max_new_tokens;
    MLABENCH_CHECK(total <= lim.max_context,
                   "the request needs {} positions ({} prompt + {} new tokens) but the engine serves at most {}. "
                   "HINT: shorten the prompt or lower max_tokens (or restart with a larger --max-context)",
                   total, request.prompt.size(), g.max_new_tokens, lim.max_context);
    serving::Request rq{.tokens = request.prompt, .gen = g, .all_logits = request.prompt_logits};
    std::lock_guard lock(impl_->mu);
    MLABENCH_CHECK(!impl_->stopping, "the live session is stopping. HINT: resubmit to a running server");
    const uint64_t id = impl_->next_id++;
    impl_->queue.push_back({.id = id, .request = std::move(rq), .live = std::move(request),
                            .callbacks = std::move(callbacks), .t0 = std::chrono::steady_clock::now()});
    impl_->waiting.fetch_add(1);
    impl_->cv.notify_one();
    return id;
  });
}

void LiveSession::cancel(uint64_t id) {
  std::lock_guard lock(impl_->mu);
  impl_->cancels.insert(id);
}

int64_t LiveSession::n_running() const { return impl_->running.load(); }
int64_t LiveSession::n_waiting() const { return impl_->waiting.load(); }

Result<std::unique_ptr<LiveSession>> Engine::start_live() {
  return guarded([&] {
    impl_->need_tokenizer();
    std::unique_ptr<LiveSession> s(new LiveSession());
    LiveSession::Impl* m = s->impl_.get();
    m->engine = impl_.get();
    m->thread = std::thread([m] {
      serving::LiveHooks h;
      h.arrivals = [m](std::vector<serving::LiveArrival>& out, bool wait) { return m->arrivals(out, wait); };
      h.on_token = [m](uint64_t id, int32_t t) { return m->on_token(id, t); };
      h.on_done = [m](uint64_t id, serving::Result&& r) { m->on_done(id, std::move(r)); };
      h.on_error = [m](uint64_t id, const Error& e) { m->on_error(id, e); };
      h.on_step = [m](int64_t running, int64_t waiting) {
        std::lock_guard lock(m->mu);
        m->running = running;
        m->waiting = waiting + static_cast<int64_t>(m->queue.size());
      };
      m->engine->serving->run_live(h);  // answers every request it was handed, also when it stops
    });
    return s;
  });
}

ModelSummary summarize_model_dir(const ModelConfig& c, const std::string& model_dir) {
  std::unique_ptr<Checkpoint> ck = Checkpoint::exists(model_dir) ? Checkpoint::open(model_dir) : nullptr;
  ModelSummary s = summarize(c, model_dir, ck.get());
  if (Tokenizer::exists(model_dir)) add_tokenizer_summary(s, *Tokenizer::load(model_dir).value());
  return s;
}

Result<ModelSummary> summarize_model(const std::string& model_dir) {
  return guarded([&] { return summarize_model_dir(load_config(model_dir), model_dir); });
}

}  // namespace mlabench
