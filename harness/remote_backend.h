// The OpenAI-compatible remote backend (`--backend openai:URL`): the evaluator's requests as HTTP requests to any
// server that speaks OpenAI's completions API with echo + logprobs (vLLM, SGLang, `mlabench serve`).
//   loglikelihood          POST /completions, the prompt as token ids (context + continuation, tokenized locally
//                          with --tokenizer exactly as the engine backend does), echo, logprobs 1, max_tokens 0
//                          (1 where the server refuses 0); the sum of the continuation positions' token_logprobs,
//                          greedy when each equals its position's top entry.
//   loglikelihood_rolling  the same, over the engine backend's token windows.
//   generate               POST /completions (token ids, truncated from the left as the engine backend does) or
//                          POST /chat/completions with --apply-chat-template; the engine backend's per-sample seed.
// A start-up probe checks that the server returns prompt log-probabilities before any loglikelihood task is
// scored; a server that does not (llama.cpp's) gets those tasks refused (BackendRefusal), generation still runs.
// docs/scale-out.md describes the flags.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "harness/backend.h"

namespace mlabench::harness {

struct RemoteBackendOptions {
  std::string base_url{};                  ///< e.g. http://127.0.0.1:8000/v1
  std::string model_name{};                ///< the server's model id; "" = the first of GET /models
  std::string api_key_env = "OPENAI_API_KEY";  ///< the variable holding the key (sent as a Bearer token)
  std::string tokenizer_dir{};             ///< a model folder with tokenizer.json; "" = none (no loglikelihood)
  int64_t concurrency = 64;                ///< requests in flight
  double request_timeout_seconds = 600;    ///< per attempt
  int max_attempts = 7;                    ///< the first try and 6 retries (429, 5xx, connection errors)
  double backoff_base_seconds = 1;
  double backoff_max_seconds = 60;
  int64_t max_length = 0;                  ///< the model's window; 0 = the server's max_model_len, if it says
  bool apply_chat_template = false;        ///< generation through /chat/completions; contexts rendered locally
  std::string system_prompt{};
  bool add_bos = true;
  std::function<void(const std::string&)> log{};  ///< retries and notes (stderr in the CLI)
};

class RemoteBackend final : public Backend {
 public:
  /// \brief Checks the URL, asks GET /models for the model and its window, loads the tokenizer; throws Error
  /// naming the endpoint when the server cannot be reached or answers something else.
  explicit RemoteBackend(const RemoteBackendOptions& options);
  ~RemoteBackend() override;

  std::string kind() const override { return "openai"; }
  /// What identifies the run (the model, the server's model id, tokenization); not the URL (a resumed run may
  /// reach the same model elsewhere) and never the key.
  nlohmann::ordered_json describe() const override;
  std::vector<ChoiceResult> loglikelihood(std::span<const ChoiceRequest> requests) override;
  std::vector<GenerationResult> generate(std::span<const GenerationRequest> requests) override;
  std::vector<double> loglikelihood_rolling(std::span<const RollingRequest> requests) override;
  const Tokenizer* tokenizer() const override;
  int64_t max_context() const override;
  std::vector<int32_t> encode_prompt(const std::string& context, const std::string& system_prompt) const override;
  /// \brief What results.json's provenance records about the server: URL, model, the ids GET /models listed,
  /// max_model_len, whether max_tokens 0 was accepted (no key).
  nlohmann::ordered_json server_info() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// \brief Checks a base URL (http or https, a host, no query); returns it without a trailing '/'. Throws Error.
std::string normalize_base_url(const std::string& url);

}  // namespace mlabench::harness
