// Chat templates against transformers' apply_chat_template (jinja2) renderings of the published templates,
// text and ids, and the detection of templates in tokenizer_config.json.
#include <gtest/gtest.h>

#include "mlabench/tokenizer.h"
#include "tests/test_util.h"

namespace mlabench {
namespace {

std::string tokenizer_dir(const std::string& name) {
  return name == "mlabench-tiny-dsv2" ? test::default_model_dir() : test::data_dir() + "/tokenizer/" + name;
}

TEST(ChatTemplate, RendersLikeTransformersTextAndIds) {
  const nlohmann::json ref = test::read_json(test::data_dir() + "/tokenizer/chat_templates.json");
  ASSERT_GE(ref["cases"].size(), 18u);
  std::map<std::string, std::unique_ptr<Tokenizer>> toks;
  for (const auto& c : ref["cases"]) {
    const std::string name = c["tokenizer"];
    if (!toks.count(name)) toks[name] = Tokenizer::load(tokenizer_dir(name)).value();
    const Tokenizer& tok = *toks[name];
    std::vector<ChatMessage> msgs;
    for (const auto& m : c["messages"]) msgs.push_back({m["role"], m["content"]});
    auto text = render_chat(tok.chat_template(), msgs, tok.bos_token(), tok.eos_token(), c["add_generation_prompt"]);
    ASSERT_TRUE(text.ok()) << text.error().what();
    EXPECT_EQ(text.value(), c["text"].get<std::string>()) << name;
    // apply_chat_template(tokenize=True) encodes the rendered text without adding special tokens again.
    EXPECT_EQ(tok.encode(text.value(), false), c["ids"].get<std::vector<int32_t>>()) << name;
  }
  EXPECT_EQ(toks["mlabench-tiny-dsv2"]->chat_template(), ChatTemplate::DEEPSEEK_V2);
  EXPECT_EQ(toks["mlabench-tiny-dsv2"]->chat_template_match(), "exact");
  EXPECT_EQ(toks["llama3-style"]->chat_template(), ChatTemplate::LLAMA3_INSTRUCT);
  EXPECT_EQ(toks["llama2-style"]->chat_template(), ChatTemplate::LLAMA2_CHAT);
}

TEST(ChatTemplate, DetectionAndNames) {
  EXPECT_EQ(detect_chat_template("{{ bos_token }}{% for m in messages %}{{ 'User: ' + message['content'] }}"
                                 "{{ 'Assistant: ' }}{% endfor %}"),
            ChatTemplate::DEEPSEEK_V2);
  EXPECT_EQ(detect_chat_template("{% for m in messages %}<|start_header_id|>{{ m.role }}<|eot_id|>{% endfor %}"),
            ChatTemplate::LLAMA3_INSTRUCT);
  EXPECT_EQ(detect_chat_template("{{ '[INST] ' }}<<SYS>>"), ChatTemplate::LLAMA2_CHAT);
  EXPECT_EQ(detect_chat_template("{% for m in messages %}<|im_start|>{% endfor %}"), ChatTemplate::RAW);
  for (auto t :
       {ChatTemplate::RAW, ChatTemplate::DEEPSEEK_V2, ChatTemplate::LLAMA2_CHAT, ChatTemplate::LLAMA3_INSTRUCT})
    EXPECT_EQ(chat_template_from_name(chat_template_name(t)), t);
  EXPECT_FALSE(chat_template_from_name("chatml").has_value());
}

TEST(ChatTemplate, Llama2RefusesNonAlternatingRoles) {
  const std::vector<ChatMessage> bad = {{"user", "a"}, {"user", "b"}};
  auto r = render_chat(ChatTemplate::LLAMA2_CHAT, bad, "<s>", "</s>", false);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.error().what()).find("alternate"), std::string::npos);
  const std::vector<ChatMessage> raw = {{"user", "a"}, {"assistant", "b"}};
  EXPECT_EQ(render_chat(ChatTemplate::RAW, raw, "<s>", "</s>", true).value(), "ab");
  // Python's strip() also removes U+001C..U+001F (and not U+200B).
  const std::vector<ChatMessage> ws = {{"user", "\x1f x \u200b"}};
  EXPECT_EQ(render_chat(ChatTemplate::LLAMA3_INSTRUCT, ws, "", "", false).value(),
            "<|start_header_id|>user<|end_header_id|>\n\nx \u200b<|eot_id|>");
}

}  // namespace
}  // namespace mlabench
