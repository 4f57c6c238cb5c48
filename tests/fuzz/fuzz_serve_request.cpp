// Fuzzes the request parser of `mlabench serve` (harness/serve/openai_protocol.cpp): the input is a request body,
// parsed for both endpoints. ApiError is the parser's expected refusal; on acceptance the request's response
// shapes are built and serialised too (every string in them came from the input).
#include "harness/serve/openai_protocol.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace sv = mlabench::serve;
  for (const sv::Endpoint ep : {sv::Endpoint::COMPLETIONS, sv::Endpoint::CHAT}) {
    try {
      const sv::CompletionRequest r = sv::parse_request(mlabench::fuzz::as_text(data, size), ep, {});
      std::vector<sv::Choice> choices;
      for (const std::string& s : r.stop) choices.push_back({.text = s, .finish_reason = "stop"});
      for (const sv::Message& m : r.messages) choices.push_back({.text = m.content, .finish_reason = "length"});
      (void)sv::sse_event(sv::completion_response(ep, "id", 0, r.model, choices, {}));
    } catch (const sv::ApiError& e) {
      (void)e.body().dump();
    }
  }
  return 0;
}
