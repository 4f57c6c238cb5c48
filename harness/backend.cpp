#include "harness/backend.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/check.h"
#include "harness/replay_file.h"

namespace mlabench::harness {

std::string render_context(const Engine* engine, const EngineBackendOptions& o, const std::string& context,
                           const std::string& system_prompt) {
  const std::string& system = system_prompt.empty() ? o.system_prompt : system_prompt;
  if (!o.apply_chat_template) return system.empty() ? context : system + "\n\n" + context;
  MLABENCH_CHECK(engine != nullptr, "--apply-chat-template needs a model with a tokenizer and a chat template. "
                 "HINT: drop the flag for the replay backend");
  std::vector<ChatMessage> messages;
  if (!system.empty()) messages.push_back({.role = "system", .content = system});
  messages.push_back({.role = "user", .content = context});
  return engine->apply_chat_template(messages, true).value();
}

std::vector<int32_t> Backend::encode_prompt(const std::string& context, const std::string& system_prompt) const {
  const Tokenizer* tok = tokenizer();
  MLABENCH_CHECK(tok != nullptr, "the {} backend has no tokenizer, so token lengths cannot be measured. HINT: give "
                 "the replay backend the model's tokenizer (--tokenizer DIR)", kind());
  return tok->encode(render_context(nullptr, {}, context, system_prompt), true);
}

namespace {

class EngineBackend final : public Backend {
 public:
  EngineBackend(std::unique_ptr<Engine> engine, const EngineBackendOptions& o, nlohmann::ordered_json description)
      : engine_(std::move(engine)), opt_(o), description_(std::move(description)) {
    MLABENCH_CHECK(engine_->tokenizer() != nullptr,
                   "the model folder {} has no tokenizer, so text tasks cannot run on it. HINT: copy the "
                   "checkpoint's tokenizer.json / tokenizer_config.json into the folder",
                   engine_->summary().model_dir);
    if (opt_.max_length <= 0) opt_.max_length = engine_->max_context();
  }

  std::string kind() const override { return "engine"; }
  nlohmann::ordered_json describe() const override { return description_; }
  nlohmann::ordered_json engine_stats() const override {
    const EngineStats st = engine_->stats();
    return {{"steps", st.steps},
            {"prefill_tokens_computed", st.prefill_tokens},
            {"prefix_tokens_reused", st.prefix_tokens_reused},
            {"decode_tokens", st.decode_tokens},
            {"preemptions", st.preemptions},
            {"max_running", st.max_running}};
  }
  const Tokenizer* tokenizer() const override { return engine_->tokenizer(); }
  int64_t max_context() const override { return opt_.max_length; }
  std::vector<int32_t> encode_prompt(const std::string& context, const std::string& system_prompt) const override {
    return engine_->encode(render_context(engine_.get(), opt_, context, system_prompt),
                           opt_.add_bos && !opt_.apply_chat_template)
        .value();
  }

  // Tokenized by Engine::encode_choices (lm-evaluation-harness's _encode_pair). A document whose context + longest
  // continuation exceeds the window loses context tokens from the left, the same number for every choice, so the
  // choices still share one context.
  std::vector<ChoiceResult> loglikelihood(std::span<const ChoiceRequest> requests) override {
    std::vector<ScoreRequest> flat;
    std::vector<int64_t> truncated;
    const bool special = opt_.add_bos && !opt_.apply_chat_template;
    for (const ChoiceRequest& r : requests) {
      const size_t first = flat.size();
      std::vector<ScoreRequest> choices =
          engine_->encode_choices(render_context(engine_.get(), opt_, r.context), r.continuations, special).value();
      for (ScoreRequest& q : choices) flat.push_back(std::move(q));
      truncated.push_back(fit_choices_to_window(std::span(flat).subspan(first), opt_.max_length, r, "--max-context"));
    }
    return gather_choice_results(requests, flat, truncated, engine_->score_batch(flat).value());
  }

  // The prompt keeps its last (window - max_gen_toks) tokens, as lm-evaluation-harness does.
  std::vector<GenerationResult> generate(std::span<const GenerationRequest> requests) override {
    std::vector<TextGenerateRequest> rq;
    std::vector<int64_t> truncated;
    for (const GenerationRequest& r : requests) {
      TextGenerateOptions o;
      o.sampling.max_new_tokens = r.gen.max_gen_toks;
      o.sampling.temperature = static_cast<float>(r.gen.temperature);
      o.sampling.top_p = static_cast<float>(r.gen.top_p);
      // A per-document, per-sample seed: a sampled answer does not depend on which other documents share its
      // batch; sample 0 keeps the seed a single-answer run has.
      o.sampling.seed = r.gen.seed * 1000003ULL + static_cast<uint64_t>(r.doc_id) +
                        static_cast<uint64_t>(r.sample) * 0x9E3779B97F4A7C15ULL;
      o.stop = r.gen.until;
      o.add_special_tokens = opt_.add_bos && !opt_.apply_chat_template;
      const std::string prompt = render_context(engine_.get(), opt_, r.context, r.system_prompt);
      std::vector<int32_t> ids = engine_->encode(prompt, o.add_special_tokens).value();
      const int64_t room = opt_.max_length - r.gen.max_gen_toks;
      MLABENCH_CHECK(room >= 1, "{} doc {}: max_gen_toks {} fills the {}-token window. HINT: lower max_gen_toks "
                     "(--gen-kwargs) or raise --max-context",
                     r.subtask, r.doc_id, r.gen.max_gen_toks, opt_.max_length);
      const int64_t cut = std::max<int64_t>(0, static_cast<int64_t>(ids.size()) - room);
      ids.erase(ids.begin(), ids.begin() + cut);
      truncated.push_back(cut);
      rq.push_back({.prompt = prompt, .options = std::move(o), .prompt_tokens = std::move(ids)});
    }
    const std::vector<TextGenerateResult> res = engine_->generate_batch(rq).value();
    std::vector<GenerationResult> out;
    for (size_t i = 0; i < res.size(); ++i)
      out.push_back({.text = res[i].text,
                     .context_tokens = static_cast<int64_t>(res[i].prompt_tokens.size()),
                     .generated_tokens = static_cast<int64_t>(res[i].generation.tokens.size()),
                     .truncated_tokens = truncated[i],
                     .finish_reason = res[i].generation.finish_reason});
    return out;
  }

  // Disjoint prediction windows of max_length tokens; the first is conditioned on BOS (or EOS when the tokenizer
  // has no BOS), each later one on as many preceding tokens as fit (lm-eval's rolling windows, context_len 1).
  std::vector<double> loglikelihood_rolling(std::span<const RollingRequest> requests) override {
    const Tokenizer& tok = *engine_->tokenizer();
    const std::optional<int32_t> prefix = tok.bos_id() ? tok.bos_id() : tok.eos_id();
    MLABENCH_CHECK(prefix.has_value(), "loglikelihood_rolling needs a BOS or EOS token to condition the first "
                   "token on. HINT: the tokenizer defines neither");
    std::vector<double> out;
    for (const RollingRequest& r : requests) {
      const std::vector<ScoreRequest> windows =
          rolling_windows(engine_->encode(r.text, false).value(), *prefix, static_cast<size_t>(opt_.max_length));
      const std::vector<ScoreResult> scores = engine_->score_batch(windows).value();
      double total = 0.0;
      for (const ScoreResult& s : scores) total += s.logprob;
      out.push_back(total);
    }
    return out;
  }

 private:
  std::unique_ptr<Engine> engine_;
  EngineBackendOptions opt_;
  nlohmann::ordered_json description_;
};

class ReplayBackend final : public Backend {
 public:
  ReplayBackend(const std::string& path, std::unique_ptr<Tokenizer> tokenizer)
      : path_(path), tokenizer_(std::move(tokenizer)), entries_(read_replay_file(path)) {}

  std::string kind() const override { return "replay"; }
  const Tokenizer* tokenizer() const override { return tokenizer_.get(); }
  nlohmann::ordered_json describe() const override {
    return {{"backend", "replay"}, {"file", path_}, {"lines", entries_.size()}, {"tokenized", tokenizer_ != nullptr}};
  }

  std::vector<ChoiceResult> loglikelihood(std::span<const ChoiceRequest> requests) override {
    std::vector<ChoiceResult> out;
    for (const ChoiceRequest& r : requests) {
      const Entry& e = find(r.subtask, r.doc_id);
      MLABENCH_CHECK(e.logprobs.size() == r.continuations.size(),
                     "{}:{}: {} doc_id {} has {} logprobs but the document has {} choices. HINT: one logprob per "
                     "choice, in choice order",
                     path_, e.line, r.subtask, r.doc_id, e.logprobs.size(), r.continuations.size());
      ChoiceResult c;
      c.logprobs = e.logprobs;
      c.is_greedy.assign(e.logprobs.size(), false);
      if (tokenizer_) c.context_tokens = static_cast<int64_t>(tokenizer_->encode(r.context, true).size());
      out.push_back(std::move(c));
    }
    return out;
  }

  std::vector<GenerationResult> generate(std::span<const GenerationRequest> requests) override {
    std::vector<GenerationResult> out;
    for (const GenerationRequest& r : requests) {
      const Entry& e = find(r.subtask, r.doc_id);
      MLABENCH_CHECK(!e.responses.empty(), "{}:{}: {} doc_id {} is a generation task but the line has no "
                     "\"responses\"", path_, e.line, r.subtask, r.doc_id);
      MLABENCH_CHECK(r.sample < static_cast<int64_t>(e.responses.size()), "{}:{}: {} doc_id {} needs {} responses "
                     "(sample {} asked for) but the line has {}. HINT: record one response per sample "
                     "(generation_kwargs.repeats)", path_, e.line, r.subtask, r.doc_id, r.gen.repeats, r.sample,
                     e.responses.size());
      out.push_back({.text = e.responses[static_cast<size_t>(r.sample)],
                     .context_tokens = tokenizer_ ? static_cast<int64_t>(encode_prompt(r.context, r.system_prompt).size())
                                                  : 0,
                     .generated_tokens = 0});
    }
    return out;
  }

  std::vector<double> loglikelihood_rolling(std::span<const RollingRequest> requests) override {
    std::vector<double> out;
    for (const RollingRequest& r : requests) {
      const Entry& e = find(r.subtask, r.doc_id);
      MLABENCH_CHECK(e.logprobs.size() == 1, "{}:{}: a rolling-loglikelihood line holds one logprob", path_, e.line);
      out.push_back(e.logprobs[0]);
    }
    return out;
  }

 private:
  using Entry = ReplayEntry;
  const Entry& find(const std::string& task, int64_t doc_id) const {
    auto it = entries_.find({task, doc_id});
    MLABENCH_CHECK(it != entries_.end(), "{} has no line for task {} doc_id {}. HINT: the replay file needs one line "
                   "per evaluated document: {{\"task\": \"{}\", \"doc_id\": {}, ...}}",
                   path_, task, doc_id, task, doc_id);
    return it->second;
  }

  std::string path_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::map<ReplayKey, ReplayEntry> entries_;
};

}  // namespace

int64_t fit_choices_to_window(std::span<ScoreRequest> choices, int64_t window, const ChoiceRequest& request,
                              const char* window_flag) {
  if (choices.empty() || window <= 0) return 0;
  size_t longest = 0;
  for (const ScoreRequest& q : choices) longest = std::max(longest, q.continuation.size());
  const int64_t room = window - static_cast<int64_t>(longest);
  MLABENCH_CHECK(room >= 1, "{} doc {}: a continuation of {} tokens leaves no room for context in the {}-token "
                 "window. HINT: raise {}",
                 request.subtask, request.doc_id, longest, window, window_flag);
  const int64_t cut = std::max<int64_t>(0, static_cast<int64_t>(choices[0].context.size()) - room);
  for (ScoreRequest& q : choices) q.context.erase(q.context.begin(), q.context.begin() + cut);
  return cut;
}

std::vector<ChoiceResult> gather_choice_results(std::span<const ChoiceRequest> requests,
                                                const std::vector<ScoreRequest>& flat,
                                                const std::vector<int64_t>& truncated,
                                                const std::vector<ScoreResult>& scores) {
  std::vector<ChoiceResult> out;
  size_t at = 0;
  for (const ChoiceRequest& r : requests) {
    ChoiceResult c;
    c.context_tokens = at < flat.size() ? static_cast<int64_t>(flat[at].context.size()) : 0;
    c.truncated_tokens = truncated[out.size()];
    for (size_t i = 0; i < r.continuations.size(); ++i, ++at) {
      c.logprobs.push_back(scores[at].logprob);
      c.is_greedy.push_back(scores[at].is_greedy);
    }
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<ScoreRequest> rolling_windows(const std::vector<int32_t>& ids, int32_t prefix, size_t window) {
  std::vector<ScoreRequest> windows;
  const size_t L = std::max<size_t>(window, 2);
  for (size_t begin = 0; begin < ids.size(); begin += L - 1) {
    const size_t end = std::min(ids.size(), begin + L - 1);
    ScoreRequest w;
    if (begin == 0) {
      w.context = {prefix};
    } else {
      const size_t ctx_begin = end >= L ? end - L : 0;
      w.context.assign(ids.begin() + static_cast<std::ptrdiff_t>(ctx_begin),
                       ids.begin() + static_cast<std::ptrdiff_t>(begin));
    }
    w.continuation.assign(ids.begin() + static_cast<std::ptrdiff_t>(begin),
                          ids.begin() + static_cast<std::ptrdiff_t>(end));
    windows.push_back(std::move(w));
  }
  return windows;
}

std::unique_ptr<Backend> make_engine_backend(std::unique_ptr<Engine> engine, const EngineBackendOptions& options,
                                             nlohmann::ordered_json description) {
  return std::make_unique<EngineBackend>(std::move(engine), options, std::move(description));
}

std::unique_ptr<Backend> make_replay_backend(const std::string& path, std::unique_ptr<Tokenizer> tokenizer) {
  return std::make_unique<ReplayBackend>(path, std::move(tokenizer));
}

}  // namespace mlabench::harness
