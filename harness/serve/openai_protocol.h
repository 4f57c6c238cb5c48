// The OpenAI protocol of `mlabench serve` (docs/serve.md), with no HTTP and no engine: a request body (JSON text)
// becomes a validated CompletionRequest, and results become response objects or server-sent-event chunks. Every
// refusal is an ApiError carrying the HTTP status and OpenAI's error object ({"error": {"message", "type",
// "param", "code"}}), naming the field and the accepted range. Unit-tested (tests/harness/test_serve.cpp) and
// fuzzed (tests/fuzz/fuzz_serve_request.cpp) directly.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mlabench::serve {

/// \brief An OpenAI-style error: HTTP status (4xx), message, type ("invalid_request_error" | ...), the field
/// at fault (may be empty) and a short code.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = {}, std::string code = {},
           std::string type = "invalid_request_error");
  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }
  const std::string& type() const { return type_; }
  /// {"error": {"message", "type", "param", "code"}} (param and code null when empty).
  nlohmann::json body() const;

 private:
  int status_;
  std::string param_, code_, type_;
};

/// What a request may ask for (the serve flags; docs/serve.md "Limits").
struct ProtocolLimits {
  int64_t max_tokens = 4096;        ///< max_tokens accepted (also capped by the engine's context)
  int64_t max_n = 16;               ///< choices per prompt
  int64_t max_prompts = 64;         ///< prompts in one /v1/completions request
  int64_t max_top_logprobs = 20;    ///< completions `logprobs`, chat `top_logprobs`
  int64_t max_stop = 16;            ///< stop strings
  int64_t max_stop_bytes = 1024;    ///< bytes of one stop string
  int64_t max_messages = 1024;      ///< chat messages
};

enum class Endpoint { COMPLETIONS, CHAT };

/// A prompt of /v1/completions: text, or token ids (checked against the vocabulary by the server).
struct Prompt {
  bool is_tokens = false;
  std::string text{};
  std::vector<int64_t> tokens{};
};

struct Message {
  std::string role;  ///< "system" | "user" | "assistant"
  std::string content;
};

/// A validated /v1/completions or /v1/chat/completions request.
struct CompletionRequest {
  Endpoint endpoint = Endpoint::COMPLETIONS;
  std::string model;
  std::vector<Prompt> prompts;     ///< completions: one or more
  std::vector<Message> messages;   ///< chat
  bool echo = false;               ///< completions: the prompt comes back before the completion
  std::optional<int64_t> logprobs;  ///< top-k alternatives per token (completions `logprobs`; chat `top_logprobs`
                                    ///< when `logprobs` is true, 0 if not given); nullopt: no logprobs
  std::optional<int64_t> max_tokens;  ///< nullopt: completions 16, chat the room left in the context
  std::vector<std::string> stop;
  double temperature = 1.0;
  double top_p = 1.0;
  std::optional<uint64_t> seed;
  int64_t n = 1;
  bool stream = false;
  bool include_usage = false;  ///< stream_options.include_usage
};

/// \brief Parses and validates a request body for `endpoint`; throws ApiError (400) naming the field.
CompletionRequest parse_request(std::string_view body, Endpoint endpoint, const ProtocolLimits& limits);

/// Log-probabilities of a sequence of tokens, OpenAI's completions shape.
struct TokenLogprobs {
  std::vector<std::string> tokens;                 ///< each token's text
  std::vector<std::optional<double>> token_logprobs;  ///< nullopt (null) for the first prompt token
  std::vector<std::vector<std::pair<std::string, double>>> top;  ///< top-k per position (empty at the first)
  std::vector<int64_t> text_offset;                ///< characters of text before each token
};

/// One finished choice.
struct Choice {
  int64_t index = 0;
  std::string text;
  std::string finish_reason;  ///< "stop" | "length"
  std::optional<TokenLogprobs> logprobs{};
};

struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0;
};

/// \brief The response object of a non-streamed request.
nlohmann::json completion_response(Endpoint endpoint, const std::string& id, int64_t created, const std::string& model,
                                   const std::vector<Choice>& choices, const Usage& usage);
/// \brief One streamed chunk: `text` (chat: delta.content; `role` adds delta.role) and, for the last chunk of a
/// choice, its finish_reason.
nlohmann::json stream_chunk(Endpoint endpoint, const std::string& id, int64_t created, const std::string& model,
                            int64_t index, const std::string& text, const std::optional<std::string>& finish_reason,
                            bool role = false);
/// \brief The usage chunk that ends a stream when stream_options.include_usage is set (choices empty).
nlohmann::json usage_chunk(Endpoint endpoint, const std::string& id, int64_t created, const std::string& model,
                           const Usage& usage);
/// \brief "data: <json>\n\n" (and sse_done(): "data: [DONE]\n\n").
std::string sse_event(const nlohmann::json& chunk);
std::string sse_done();
/// \brief The engine's finish reason ("length" | "stop_token" | "stop_string" | ...) in OpenAI's words.
std::string openai_finish_reason(std::string_view engine_reason);
/// \brief Unicode characters of UTF-8 text (what text_offset counts, as Python's len does).
int64_t utf8_length(std::string_view text);

}  // namespace mlabench::serve
