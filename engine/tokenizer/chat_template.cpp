// Built-in chat templates, rendered natively with the semantics of the published Jinja sources (kept below as
// data, to recognise them in tokenizer_config.json). Python's str.strip() / Jinja's trim remove Unicode
// whitespace as Python defines it: White_Space plus U+001C..U+001F.
#include <array>

#include "core/check.h"
#include "engine/tokenizer/hf_tokenizer.h"
#include "engine/tokenizer/unicode.h"
#include "mlabench/tokenizer.h"

namespace mlabench {

namespace {

const char* const kDeepseekV2 =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{{ bos_token }}"
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'system' %}{{ message['content'] + '\n\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";
const char* const kLlama2Chat =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
    "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] "
    "== 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
const char* const kLlama3Instruct =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
const char* const kLlama3InstructOld =  // the first published version: the generation header unconditionally
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}";

bool py_isspace(char32_t c) { return unicode::is_whitespace(c) || (c >= 0x1C && c <= 0x1F); }

std::string py_strip(std::string_view s) {
  std::vector<std::pair<size_t, char32_t>> cs;
  for (size_t i = 0; i < s.size();) {
    const size_t b = i;
    cs.emplace_back(b, unicode::next(s, i));
  }
  size_t b = 0, e = cs.size();
  while (b < e && py_isspace(cs[b].second)) ++b;
  while (e > b && py_isspace(cs[e - 1].second)) --e;
  if (b == e) return "";
  const size_t from = cs[b].first, to = e < cs.size() ? cs[e].first : s.size();
  return std::string(s.substr(from, to - from));
}

bool contains(std::string_view s, std::string_view x) { return s.find(x) != std::string_view::npos; }

}  // namespace

std::string_view chat_template_name(ChatTemplate t) {
  switch (t) {
    case ChatTemplate::RAW:
      return "raw";
    case ChatTemplate::DEEPSEEK_V2:
      return "deepseek-v2";
    case ChatTemplate::LLAMA2_CHAT:
      return "llama-2-chat";
    case ChatTemplate::LLAMA3_INSTRUCT:
      return "llama-3-instruct";
  }
  return "raw";
}

std::optional<ChatTemplate> chat_template_from_name(std::string_view name) {
  for (ChatTemplate t :
       {ChatTemplate::RAW, ChatTemplate::DEEPSEEK_V2, ChatTemplate::LLAMA2_CHAT, ChatTemplate::LLAMA3_INSTRUCT})
    if (chat_template_name(t) == name) return t;
  return std::nullopt;
}

ChatTemplate detect_chat_template(std::string_view s) {
  if (s == kDeepseekV2) return ChatTemplate::DEEPSEEK_V2;
  if (s == kLlama2Chat) return ChatTemplate::LLAMA2_CHAT;
  if (s == kLlama3Instruct || s == kLlama3InstructOld) return ChatTemplate::LLAMA3_INSTRUCT;
  // Republished variants (whitespace, comments, a default system prompt) keep these fragments.
  if (contains(s, "'User: ' + message['content']") && contains(s, "'Assistant: '")) return ChatTemplate::DEEPSEEK_V2;
  if (contains(s, "<|start_header_id|>") && contains(s, "<|eot_id|>")) return ChatTemplate::LLAMA3_INSTRUCT;
  if (contains(s, "[INST]") && contains(s, "<<SYS>>")) return ChatTemplate::LLAMA2_CHAT;
  return ChatTemplate::RAW;
}

bool chat_template_is_exact(std::string_view s) {
  return s == kDeepseekV2 || s == kLlama2Chat || s == kLlama3Instruct || s == kLlama3InstructOld;
}

Result<std::string> render_chat(ChatTemplate t, std::span<const ChatMessage> messages, std::string_view bos,
                                std::string_view eos, bool add_generation_prompt) {
  std::string out;
  switch (t) {
    case ChatTemplate::RAW:
      for (const auto& m : messages) out += m.content;
      return out;
    case ChatTemplate::DEEPSEEK_V2:
      out += bos;
      for (const auto& m : messages) {
        if (m.role == "user") {
          out += "User: " + m.content + "\n\n";
        } else if (m.role == "assistant") {
          out += "Assistant: " + m.content + std::string(eos);
        } else if (m.role == "system") {
          out += m.content + "\n\n";
        }
      }
      if (add_generation_prompt) out += "Assistant:";
      return out;
    case ChatTemplate::LLAMA2_CHAT: {
      const bool has_system = !messages.empty() && messages[0].role == "system";
      const size_t first = has_system ? 1 : 0;
      for (size_t i = first; i < messages.size(); ++i) {
        const size_t k = i - first;
        const ChatMessage& m = messages[i];
        if ((m.role == "user") != (k % 2 == 0))
          return Error("llama-2-chat: Conversation roles must alternate user/assistant/user/assistant/... (message " +
                       std::to_string(i) + " is '" + m.role + "')");
        std::string content = m.content;
        if (k == 0 && has_system) content = "<<SYS>>\n" + messages[0].content + "\n<</SYS>>\n\n" + m.content;
        if (m.role == "user") {
          out += std::string(bos) + "[INST] " + py_strip(content) + " [/INST]";
        } else if (m.role == "assistant") {
          out += " " + py_strip(content) + " " + std::string(eos);
        }
      }
      return out;
    }
    case ChatTemplate::LLAMA3_INSTRUCT:
      for (size_t i = 0; i < messages.size(); ++i) {
        if (i == 0) out += bos;
        out += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n" + py_strip(messages[i].content) +
               "<|eot_id|>";
      }
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      return out;
  }
  return out;
}

}  // namespace mlabench
