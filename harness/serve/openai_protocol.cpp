// OpenAI request bodies -> CompletionRequest, results -> response objects and SSE chunks (openai_protocol.h).
// Bodies are parsed by the project's bounded parser (parse_json_bounded: depth and number range) and read through
// JsonFields (typed reads naming the field); what either refuses becomes a 400 naming the field. Fields OpenAI
// clients commonly send are accepted when they ask for nothing mlabench does differently (docs/serve.md lists
// them); any other field is refused by name rather than silently ignored.
#include "harness/serve/openai_protocol.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "core/json_fields.h"
#include "core/json_limits.h"
#include "mlabench/result.h"

namespace mlabench::serve {

namespace {

using nlohmann::json;

constexpr std::array kCompletionFields{"model", "prompt", "echo", "logprobs", "max_tokens", "stop", "temperature",
                                       "top_p", "seed", "n", "stream", "stream_options", "user", "frequency_penalty",
                                       "presence_penalty", "logit_bias", "best_of", "suffix"};
constexpr std::array kChatFields{"model", "messages", "logprobs", "top_logprobs", "max_tokens",
                                 "max_completion_tokens", "stop", "temperature", "top_p", "seed", "n", "stream",
                                 "stream_options", "user", "frequency_penalty", "presence_penalty", "logit_bias"};

// The first line of a checked failure (the rest is the check's location, which means nothing to a client).
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

[[noreturn]] void bad(const std::string& param, const std::string& message, const std::string& code = "invalid_value") {
  throw ApiError(400, message, param, code);
}

// Runs a JsonFields read; a type refusal becomes a 400 naming `key`.
template <class F>
auto typed(const std::string& key, F&& read) -> decltype(read()) {
  try {
    return read();
  } catch (const Error& e) {
    bad(key, first_line(e.what()), "invalid_type");
  }
}

int64_t int_in(const JsonFields& f, const std::string& key, int64_t fallback, int64_t lo, int64_t hi) {
  const int64_t v = typed(key, [&] { return f.integer_or(key, fallback); });
  if (v < lo || v > hi) bad(key, fmt::format("'{}' is {}; accepted range {} .. {}", key, v, lo, hi));
  return v;
}

double number_in(const JsonFields& f, const std::string& key, double fallback, double lo, double hi, bool lo_open) {
  const double v = typed(key, [&] { return f.number_or(key, fallback); });
  if (!std::isfinite(v) || v > hi || v < lo || (lo_open && v == lo))
    bad(key, fmt::format("'{}' is {}; accepted range {}{} .. {}]", key, v, lo_open ? "(" : "[", lo, hi));
  return v;
}

std::vector<int64_t> token_ids(const json& a, const std::string& param) {
  std::vector<int64_t> out;
  for (const json& t : a) {
    if (!t.is_number_integer() || (t.is_number_unsigned() && t.get<uint64_t>() > INT32_MAX) || t.get<int64_t>() < 0 ||
        t.get<int64_t>() > INT32_MAX)
      bad(param, fmt::format("'{}' holds {}, not a token id (an integer >= 0)", param, t.dump()), "invalid_type");
    out.push_back(t.get<int64_t>());
  }
  if (out.empty()) bad(param, fmt::format("'{}' holds an empty list of token ids", param));
  return out;
}

// prompt: "text" | ["text", ...] | [id, ...] | [[id, ...], ...].
std::vector<Prompt> read_prompts(const JsonFields& f, const ProtocolLimits& lim) {
  if (!f.has("prompt")) bad("prompt", "'prompt' is required: text, a list of texts, token ids or lists of token ids");
  const json& p = f.raw("prompt");
  std::vector<Prompt> out;
  if (p.is_string()) return {Prompt{.text = p.get<std::string>()}};
  if (!p.is_array() || p.empty())
    bad("prompt", fmt::format("'prompt' must be text, a list of texts, token ids or lists of token ids; found {}",
                              p.is_array() ? "an empty list" : p.type_name()),
        "invalid_type");
  if (p.front().is_number()) return {Prompt{.is_tokens = true, .tokens = token_ids(p, "prompt")}};
  if (static_cast<int64_t>(p.size()) > lim.max_prompts)
    bad("prompt", fmt::format("'prompt' holds {} prompts; at most {} per request", p.size(), lim.max_prompts));
  for (const json& e : p) {
    if (e.is_string() && p.front().is_string())
      out.push_back({.text = e.get<std::string>()});
    else if (e.is_array() && p.front().is_array())
      out.push_back({.is_tokens = true, .tokens = token_ids(e, "prompt")});
    else
      bad("prompt", "'prompt' as a list must hold only texts or only lists of token ids", "invalid_type");
  }
  return out;
}

std::vector<Message> read_messages(const JsonFields& f, const ProtocolLimits& lim) {
  if (!f.has("messages")) bad("messages", "'messages' is required: a list of {\"role\", \"content\"} objects");
  const json& m = f.raw("messages");
  if (!m.is_array() || m.empty()) bad("messages", "'messages' must be a non-empty list of {\"role\", \"content\"}");
  if (static_cast<int64_t>(m.size()) > lim.max_messages)
    bad("messages", fmt::format("'messages' holds {} messages; at most {}", m.size(), lim.max_messages));
  std::vector<Message> out;
  for (size_t i = 0; i < m.size(); ++i) {
    const std::string param = fmt::format("messages[{}]", i);
    if (!m[i].is_object()) bad(param, fmt::format("'{}' must be an object with role and content", param));
    for (const auto& [k, v] : m[i].items())
      if (k != "role" && k != "content" && k != "name")
        bad(param + "." + k, fmt::format("unknown field '{}' in {}; accepted: role, content, name", k, param),
            "unknown_field");
    const JsonFields mf(m[i], param);
    Message msg;
    msg.role = typed(param + ".role", [&] { return mf.string("role"); });
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant")
      bad(param + ".role", fmt::format("'{}.role' is \"{}\"; accepted: system, user, assistant", param, msg.role));
    const json& c = mf.has("content") ? m[i].at("content") : json();
    if (c.is_string()) {
      msg.content = c.get<std::string>();
    } else if (c.is_array()) {  // content parts: text only
      for (const json& part : c) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
          bad(param + ".content", fmt::format("'{}.content' parts must be {{\"type\": \"text\", \"text\": ...}}; "
                                              "mlabench serves text only", param));
        msg.content += part["text"].get<std::string>();
      }
    } else {
      bad(param + ".content", fmt::format("'{}.content' must be text or a list of text parts", param), "invalid_type");
    }
    out.push_back(std::move(msg));
  }
  return out;
}

std::vector<std::string> read_stop(const JsonFields& f, const ProtocolLimits& lim) {
  if (!f.has("stop")) return {};
  const json& s = f.raw("stop");
  std::vector<std::string> out;
  if (s.is_string()) {
    out.push_back(s.get<std::string>());
  } else if (s.is_array()) {
    for (const json& e : s) {
      if (!e.is_string()) bad("stop", "'stop' must be a string or a list of strings", "invalid_type");
      out.push_back(e.get<std::string>());
    }
  } else {
    bad("stop", "'stop' must be a string or a list of strings", "invalid_type");
  }
  if (static_cast<int64_t>(out.size()) > lim.max_stop)
    bad("stop", fmt::format("'stop' holds {} strings; at most {}", out.size(), lim.max_stop));
  for (const std::string& x : out)
    if (static_cast<int64_t>(x.size()) > lim.max_stop_bytes)
      bad("stop", fmt::format("a stop string is {} bytes; at most {}", x.size(), lim.max_stop_bytes));
  std::erase_if(out, [](const std::string& x) { return x.empty(); });
  return out;
}

// Fields accepted for compatibility only when they ask for the default behaviour.
void read_ignored(const JsonFields& f, const json& body, int64_t n) {
  typed("user", [&] { return f.string_or("user", ""); });
  for (const char* k : {"frequency_penalty", "presence_penalty"})
    if (number_in(f, k, 0.0, -2.0, 2.0, false) != 0.0)
      bad(k, fmt::format("'{}' must be 0: mlabench serve applies no penalties", k), "unsupported_value");
  if (f.has("logit_bias") && !(body["logit_bias"].is_object() && body["logit_bias"].empty()))
    bad("logit_bias", "'logit_bias' must be empty ({}): mlabench serve applies no biases", "unsupported_value");
  if (f.has("best_of") && int_in(f, "best_of", n, 1, 1 << 20) != n)
    bad("best_of", fmt::format("'best_of' must equal n ({}): mlabench serve returns every sample", n),
        "unsupported_value");
  if (typed("suffix", [&] { return f.string_or("suffix", ""); }) != "")
    bad("suffix", "'suffix' must be empty: mlabench serve does not insert text", "unsupported_value");
}

void read_stream_options(const JsonFields& f, const json& body, CompletionRequest& r) {
  if (!f.has("stream_options")) return;
  const json& so = body["stream_options"];
  if (!so.is_object()) bad("stream_options", "'stream_options' must be an object", "invalid_type");
  for (const auto& [k, v] : so.items())
    if (k != "include_usage")
      bad("stream_options." + k, fmt::format("unknown field 'stream_options.{}'; accepted: include_usage", k),
          "unknown_field");
  const JsonFields sf(so, "stream_options");
  r.include_usage = typed("stream_options.include_usage", [&] { return sf.boolean_or("include_usage", false); });
}

}  // namespace

namespace {
// Messages and params quote the client's input (field names, paths), which may not be UTF-8: invalid bytes become
// U+FFFD so the error body always serialises (found by tests/fuzz/fuzz_serve_request).
std::string valid_utf8(const std::string& s) {
  return json::parse(json(s).dump(-1, ' ', false, json::error_handler_t::replace)).get<std::string>();
}
}  // namespace

ApiError::ApiError(int status, std::string message, std::string param, std::string code, std::string type)
    : std::runtime_error(valid_utf8(message)),
      status_(status),
      param_(valid_utf8(param)),
      code_(std::move(code)),
      type_(std::move(type)) {}

json ApiError::body() const {
  return {{"error",
           {{"message", what()},
            {"type", type_},
            {"param", param_.empty() ? json() : json(param_)},
            {"code", code_.empty() ? json() : json(code_)}}}};
}

CompletionRequest parse_request(std::string_view body, Endpoint endpoint, const ProtocolLimits& lim) {
  json j;
  try {
    j = parse_json_bounded(body, "the request body");
  } catch (const json::exception& e) {
    throw ApiError(400, fmt::format("the request body is not valid JSON ({}). HINT: send a JSON object", e.what()), "",
                   "invalid_json");
  } catch (const Error& e) {
    throw ApiError(400, first_line(e.what()), "", "invalid_json");
  }
  if (!j.is_object())
    throw ApiError(400, fmt::format("the request body must be a JSON object, found {}", j.type_name()), "",
                   "invalid_json");
  const bool chat = endpoint == Endpoint::CHAT;
  for (const auto& [k, v] : j.items()) {
    const auto& known = chat ? std::vector<std::string>(kChatFields.begin(), kChatFields.end())
                             : std::vector<std::string>(kCompletionFields.begin(), kCompletionFields.end());
    if (std::find(known.begin(), known.end(), k) == known.end())
      bad(k, fmt::format("unknown field '{}' for {}. HINT: docs/serve.md lists the accepted fields", k,
                         chat ? "/v1/chat/completions" : "/v1/completions"),
          "unknown_field");
  }
  const JsonFields f(j, "the request body");
  CompletionRequest r;
  r.endpoint = endpoint;
  r.model = typed("model", [&] { return f.string_or("model", ""); });
  r.n = int_in(f, "n", 1, 1, lim.max_n);
  if (chat) {
    r.messages = read_messages(f, lim);
    if (typed("logprobs", [&] { return f.boolean_or("logprobs", false); }))
      r.logprobs = int_in(f, "top_logprobs", 0, 0, lim.max_top_logprobs);
    else if (f.has("top_logprobs"))
      bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    const char* key = f.has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (f.has(key)) r.max_tokens = int_in(f, key, 0, 1, lim.max_tokens);
  } else {
    r.prompts = read_prompts(f, lim);
    r.echo = typed("echo", [&] { return f.boolean_or("echo", false); });
    if (f.has("logprobs")) r.logprobs = int_in(f, "logprobs", 0, 0, lim.max_top_logprobs);
    r.max_tokens = int_in(f, "max_tokens", 16, 0, lim.max_tokens);
  }
  r.stop = read_stop(f, lim);
  r.temperature = number_in(f, "temperature", 1.0, 0.0, 2.0, false);
  r.top_p = number_in(f, "top_p", 1.0, 0.0, 1.0, true);
  if (f.has("seed")) r.seed = static_cast<uint64_t>(typed("seed", [&] { return f.integer("seed"); }));
  r.stream = typed("stream", [&] { return f.boolean_or("stream", false); });
  read_stream_options(f, j, r);
  read_ignored(f, j, r.n);
  if (r.stream && r.logprobs)
    bad("logprobs", "logprobs are not streamed by mlabench serve. HINT: send the request with \"stream\": false");
  if (r.stream && r.echo)
    bad("echo", "echo is not streamed by mlabench serve. HINT: send the request with \"stream\": false");
  return r;
}

namespace {

json completion_logprobs(const TokenLogprobs& lp) {
  json top = json::array(), tlp = json::array();
  for (size_t i = 0; i < lp.tokens.size(); ++i) {
    tlp.push_back(lp.token_logprobs[i] ? json(*lp.token_logprobs[i]) : json());
    if (!lp.token_logprobs[i]) {
      top.push_back(nullptr);
      continue;
    }
    json o = json::object();
    // Two ids may decode to one string (byte pieces of a character): the first, most likely, keeps the key.
    for (const auto& [tok, v] : lp.top[i])
      if (!o.contains(tok)) o[tok] = v;
    top.push_back(std::move(o));
  }
  return {{"tokens", lp.tokens}, {"token_logprobs", tlp}, {"top_logprobs", top}, {"text_offset", lp.text_offset}};
}

json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

json chat_logprobs(const TokenLogprobs& lp) {
  json content = json::array();
  for (size_t i = 0; i < lp.tokens.size(); ++i) {
    json top = json::array();
    for (const auto& [tok, v] : lp.top[i]) top.push_back({{"token", tok}, {"logprob", v}, {"bytes", bytes_of(tok)}});
    content.push_back({{"token", lp.tokens[i]},
                       {"logprob", lp.token_logprobs[i].value_or(0.0)},
                       {"bytes", bytes_of(lp.tokens[i])},
                       {"top_logprobs", top}});
  }
  return {{"content", content}};
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

}  // namespace

json completion_response(Endpoint endpoint, const std::string& id, int64_t created, const std::string& model,
                         const std::vector<Choice>& choices, const Usage& usage) {
  const bool chat = endpoint == Endpoint::CHAT;
  json cs = json::array();
  for (const Choice& c : choices) {
    json o = {{"index", c.index}};
    if (chat)
      o["message"] = {{"role", "assistant"}, {"content", c.text}};
    else
      o["text"] = c.text;
    o["logprobs"] = !c.logprobs ? json() : chat ? chat_logprobs(*c.logprobs) : completion_logprobs(*c.logprobs);
    o["finish_reason"] = c.finish_reason;
    cs.push_back(std::move(o));
  }
  return {{"id", id},
          {"object", chat ? "chat.completion" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", cs},
          {"usage", usage_json(usage)}};
}

json stream_chunk(Endpoint endpoint, const std::string& id, int64_t created, const std::string& model, int64_t index,
                  const std::string& text, const std::optional<std::string>& finish_reason, bool role) {
  const bool chat = endpoint == Endpoint::CHAT;
  json c = {{"index", index}};
  if (chat) {
    c["delta"] = json::object();
    if (role) c["delta"]["role"] = "assistant";
    if (!text.empty() || !finish_reason) c["delta"]["content"] = text;
  } else {
    c["text"] = text;
  }
  c["logprobs"] = nullptr;
  c["finish_reason"] = finish_reason ? json(*finish_reason) : json();
  return {{"id", id},
          {"object", chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array({c})}};
}

json usage_chunk(Endpoint endpoint, const std::string& id, int64_t created, const std::string& model,
                 const Usage& usage) {
  return {{"id", id},
          {"object", endpoint == Endpoint::CHAT ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array()},
          {"usage", usage_json(usage)}};
}

std::string sse_event(const json& chunk) {
  return "data: " + chunk.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

std::string sse_done() { return "data: [DONE]\n\n"; }

std::string openai_finish_reason(std::string_view r) { return r == "length" ? "length" : "stop"; }

int64_t utf8_length(std::string_view text) {
  return static_cast<int64_t>(
      std::count_if(text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

}  // namespace mlabench::serve
