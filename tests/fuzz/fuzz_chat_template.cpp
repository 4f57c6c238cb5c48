// Fuzzes the chat templates: detect_chat_template on a tokenizer_config.json "chat_template" string, and
// render_chat of every built-in template on a fuzzed conversation. Input layout: the Jinja source, then
// messages, each "role\x1fcontent", separated by \x1e (so the corpus stays readable text).
#include <string>
#include <string_view>
#include <vector>

#include "mlabench/result.h"
#include "mlabench/tokenizer.h"
#include "tests/fuzz/fuzz_common.h"

namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (size_t start = 0;;) {
    size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) return out;
    start = end + 1;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = split(mlabench::fuzz::as_text(data, size), '\x1e');
  auto detected = mlabench::detect_chat_template(parts[0]);
  std::vector<mlabench::ChatMessage> messages;
  for (size_t i = 1; i < parts.size(); ++i) {
    size_t us = parts[i].find('\x1f');
    if (us == std::string_view::npos) {
      messages.push_back({"user", std::string(parts[i])});
    } else {
      messages.push_back({std::string(parts[i].substr(0, us)), std::string(parts[i].substr(us + 1))});
    }
  }
  for (auto t : {detected, mlabench::ChatTemplate::RAW, mlabench::ChatTemplate::DEEPSEEK_V2,
                 mlabench::ChatTemplate::LLAMA2_CHAT, mlabench::ChatTemplate::LLAMA3_INSTRUCT}) {
    for (bool gen : {false, true}) {
      try {
        auto r = mlabench::render_chat(t, messages, "<s>", "</s>", gen);
        (void)r.ok();
      } catch (const mlabench::Error&) {
      }
    }
  }
  return 0;
}
