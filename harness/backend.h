// Backends answer the evaluator's requests. A task never sees one; a backend never sees a task beyond the
// (subtask, doc_id) key that names a request in logs and replay files.
//   EngineBackend  the embedded engine (--device cpu|cuda): text -> tokens as lm-evaluation-harness does, shared
//                  contexts scored once, generation with stop strings.
//   ReplayBackend  answers from recorded outputs (replay:FILE.jsonl), so saved generations can be rescored and
//                  scorers tested: {"task": T, "doc_id": N, "logprobs": [...]} or {"task": T, "doc_id": N,
//                  "responses": ["...", ...]}; T is the subtask name, N the document's 0-based row in its split;
//                  responses[i] answers sample i of a task with repeats.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "mlabench/engine.h"
#include "mlabench/tokenizer.h"
#include "tasks/task.h"

namespace mlabench::harness {

/// All choices of one multiple-choice document: log P(continuation_i | context) for each.
struct ChoiceRequest {
  std::string subtask;
  int64_t doc_id = 0;
  std::string context;
  std::vector<std::string> continuations;
};

struct ChoiceResult {
  std::vector<double> logprobs;
  std::vector<bool> is_greedy;
  int64_t context_tokens = 0;    ///< 0 when the backend does not tokenize
  int64_t truncated_tokens = 0;  ///< context tokens dropped from the left to fit the model's window
};

struct GenerationRequest {
  std::string subtask;
  int64_t doc_id = 0;
  std::string context;
  tasks::GenerationKwargs gen;
  int64_t sample = 0;         ///< which of the document's gen.repeats samples (its own seed)
  std::string system_prompt;  ///< the task's system turn for this document; "" = the run's (--system-prompt)
};

struct GenerationResult {
  std::string text;
  int64_t context_tokens = 0;
  int64_t generated_tokens = 0;
  int64_t truncated_tokens = 0;  ///< context tokens dropped from the left to leave room for max_gen_toks
  /// Why generation stopped: the engine's "length" | "stop_token" | "stop_string", an OpenAI server's "stop" |
  /// "length"; "" where the backend does not say (a replay). The run-health guards count "length".
  std::string finish_reason{};
};

/// The whole text's loglikelihood (loglikelihood_rolling): every token scored given as much of what precedes
/// it as the model's window holds.
struct RollingRequest {
  std::string subtask;
  int64_t doc_id = 0;
  std::string text;
};

/// \brief A backend that cannot answer one kind of request at all (a remote server without prompt
/// log-probabilities asked for loglikelihoods): the evaluator records it as that task's error in results.json and
/// goes on with the other tasks; the run then ends with an error.
class BackendRefusal : public Error {
 public:
  explicit BackendRefusal(const std::string& message) : Error(message) {}
};

class Backend {
 public:
  virtual ~Backend() = default;
  /// "engine", "replay" or "openai"; and what results.json records about it (model, device, dtype, file, ...).
  virtual std::string kind() const = 0;
  virtual nlohmann::ordered_json describe() const = 0;
  virtual std::vector<ChoiceResult> loglikelihood(std::span<const ChoiceRequest> requests) = 0;
  virtual std::vector<GenerationResult> generate(std::span<const GenerationRequest> requests) = 0;
  virtual std::vector<double> loglikelihood_rolling(std::span<const RollingRequest> requests) = 0;
  /// The model's tokenizer and window, for tasks whose documents are measured in tokens (niah); nullptr / 0
  /// when the backend has none.
  virtual const Tokenizer* tokenizer() const { return nullptr; }
  /// What the backend's engine did so far (steps, prompt tokens computed and taken from the prefix cache, decode
  /// tokens, pre-emptions); null for a backend without one. Recorded in results.json's provenance, never in the
  /// run's identity (it changes as the run goes).
  virtual nlohmann::ordered_json engine_stats() const { return nullptr; }
  virtual int64_t max_context() const { return 0; }
  /// \brief The token ids the model is given for a generation request's context (template, system prompt and
  /// special tokens applied, before any truncation). Throws Error when the backend has no tokenizer.
  virtual std::vector<int32_t> encode_prompt(const std::string& context, const std::string& system_prompt) const;
};

struct EngineBackendOptions {
  bool apply_chat_template = false;  ///< context = one user turn of the model's chat template
  std::string system_prompt{};       ///< a system turn with the template; without it, prepended + "\n\n"
  bool add_bos = true;  ///< encode contexts with the tokenizer's special tokens (lm-eval's HF default is false)
  /// The model's window: longer contexts lose tokens from the left, as lm-evaluation-harness truncates them;
  /// 0 = Engine::max_context().
  int64_t max_length = 0;
};

/// \brief The embedded engine as a backend; the engine must have a tokenizer.
std::unique_ptr<Backend> make_engine_backend(std::unique_ptr<Engine> engine, const EngineBackendOptions& options,
                                             nlohmann::ordered_json description);
/// \brief Recorded outputs; throws Error naming file and line for a malformed line. With a tokenizer, each
/// context is also encoded (with special tokens) and its length recorded, as the engine backend would see it.
std::unique_ptr<Backend> make_replay_backend(const std::string& path, std::unique_ptr<Tokenizer> tokenizer = nullptr);

/// \brief Cuts the shared context of one document's choices (the ScoreRequests of its continuations) from the left
/// so that it and the longest continuation fit `window` tokens, as lm-evaluation-harness truncates; returns the
/// tokens cut. Throws Error (naming `request` and `window_flag`, the option that sets the window) when a
/// continuation alone leaves no room.
int64_t fit_choices_to_window(std::span<ScoreRequest> choices, int64_t window, const ChoiceRequest& request,
                              const char* window_flag);
/// \brief The ChoiceResults of `requests` from their flattened choices (in order), each document's cut and the
/// scores of the flattened choices.
std::vector<ChoiceResult> gather_choice_results(std::span<const ChoiceRequest> requests,
                                                const std::vector<ScoreRequest>& flat,
                                                const std::vector<int64_t>& truncated,
                                                const std::vector<ScoreResult>& scores);
/// \brief lm-evaluation-harness's rolling windows over `ids`: disjoint prediction windows of up to `window` tokens,
/// the first conditioned on `prefix` (BOS, or EOS), each later one on as many preceding tokens as fit.
std::vector<ScoreRequest> rolling_windows(const std::vector<int32_t>& ids, int32_t prefix, size_t window);

/// \brief The context as the engine backend renders it before encoding (chat template, system prompt); used by
/// samples_<task>.jsonl so a sample shows exactly what the model saw.
/// A non-empty `system_prompt` (the task's) replaces options.system_prompt.
std::string render_context(const Engine* engine, const EngineBackendOptions& options, const std::string& context,
                           const std::string& system_prompt = {});

}  // namespace mlabench::harness
