// Inputs the user names must be regular files: a FIFO would block its reader until a writer came, a directory or a
// device would fail later with a message about something else (issue 17, classes 3 and 7).
#include "core/input_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "core/json_limits.h"
#include "engine/model/config.h"
#include "mlabench/tokenizer.h"
#include "tests/test_util.h"

namespace mlabench {
namespace {

TEST(InputFile, EachKindOfPathIsNamed) {
  test::TempDir dir;
  std::ofstream(dir.file("a.txt")) << "text";
  ASSERT_EQ(::mkfifo(dir.file("pipe").c_str(), 0600), 0);
  EXPECT_EQ(describe_file_kind(dir.file("a.txt")), "a regular file");
  EXPECT_EQ(describe_file_kind(dir.path()), "a directory");
  EXPECT_EQ(describe_file_kind(dir.file("pipe")), "a FIFO (named pipe)");
  EXPECT_EQ(describe_file_kind("/dev/null"), "a character device");
  EXPECT_EQ(describe_file_kind(dir.file("missing")), "nothing (it does not exist)");

  require_regular_file(dir.file("a.txt"), "test input");
  std::ifstream in = open_input_file(dir.file("a.txt"), "test input");
  std::string word;
  in >> word;
  EXPECT_EQ(word, "text");
  for (const std::string& p : {dir.file("pipe"), dir.path(), std::string("/dev/null"), dir.file("missing")}) {
    const std::string e = test::error_of([&] { require_regular_file(p, "test input"); });
    EXPECT_NE(e.find("test input: " + p + " is "), std::string::npos) << e;
    EXPECT_NE(e.find("not a regular file. HINT:"), std::string::npos) << e;
  }
  // The lenient form leaves a missing path to its caller and refuses the rest.
  refuse_non_regular_file(dir.file("missing"), "test input");
  EXPECT_NE(test::error_of([&] { refuse_non_regular_file(dir.file("pipe"), "test input"); }).find("a FIFO"),
            std::string::npos);
}

// A model folder whose config.json is a FIFO: refused at once (it used to wait for a writer forever).
TEST(InputFile, ConfigThatIsAFifoIsRefused) {
  test::TempDir dir;
  ASSERT_EQ(::mkfifo(dir.file("config.json").c_str(), 0600), 0);
  const std::string e = test::error_of([&] { load_config(dir.path()); });
  EXPECT_NE(e.find("the model's config.json: " + dir.file("config.json") + " is a FIFO (named pipe)"),
            std::string::npos)
      << e;
}

// JSON inputs nested past kMaxJsonDepth are refused at parse time, with what was being read named; syntax errors
// stay nlohmann's parse_error for the caller's words; the bound is on depth, not size.
TEST(JsonLimits, DeepDocumentsAreRefusedAtParseTime) {
  const std::string ok = std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']');
  EXPECT_TRUE(parse_json_bounded(ok, "test").is_array());
  EXPECT_TRUE(parse_ordered_json_bounded(R"({"a": {"b": [1, 2, {"c": null}]}})", "test").is_object());
  const std::string deep = std::string(10000, '[') + std::string(10000, ']');
  const std::string e = test::error_of([&] { parse_json_bounded(deep, "tokenizer.json in DIR"); });
  EXPECT_NE(e.find("tokenizer.json in DIR: JSON nested deeper than 100 levels. HINT:"), std::string::npos) << e;
  EXPECT_NE(test::error_of([&] { parse_ordered_json_bounded("{\"a\":" + deep + "}", "spec"); }).find("spec: JSON"),
            std::string::npos);
  EXPECT_THROW(parse_json_bounded("{\"a\": ", "test"), nlohmann::json::parse_error);
  std::string wide = "[0";
  for (int i = 0; i < 100000; ++i) wide += ",[1]";
  EXPECT_EQ(parse_json_bounded(wide + "]", "test").size(), 100001u);
}

// A number beyond double's range is nlohmann's out_of_range 406, not a parse_error: it escaped the safetensors
// reader, which catches parse_error (found by tests/fuzz/fuzz_safetensors; its corpus keeps the input).
TEST(JsonLimits, NumbersOutOfRangeAreAnError) {
  const std::string e = test::error_of([] { parse_json_bounded(R"({"dtype": 1e999})", "model.safetensors (header)"); });
  EXPECT_NE(e.find("model.safetensors (header): a JSON number out of range"), std::string::npos) << e;
  EXPECT_THROW(parse_ordered_json_bounded("[-1e400]", "spec"), mlabench::Error);
  EXPECT_EQ(parse_json_bounded("[1e308]", "test")[0].get<double>(), 1e308);
}

// A tokenizer.json whose pre-tokenizer is 10,000 nested Sequences: refused while parsing (it used to overflow
// the stack in the loader's recursion).
TEST(JsonLimits, NestedTokenizerSequencesAreRefused) {
  test::TempDir dir;
  // Written from the outside in: wrapping the document 10,000 times copied it each time (quadratic, 18 s under
  // ASan).
  std::string pre;
  for (int i = 0; i < 10000; ++i) pre += R"({"type": "Sequence", "pretokenizers": [)";
  pre += R"({"type": "ByteLevel", "add_prefix_space": false})";
  for (int i = 0; i < 10000; ++i) pre += "]}";
  std::ofstream(dir.file("tokenizer.json"))
      << R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": )" << pre << "}";
  const auto loaded = Tokenizer::load(dir.path());
  ASSERT_FALSE(loaded.ok());
  const std::string e = loaded.error().what();
  EXPECT_NE(e.find("JSON nested deeper than 100 levels"), std::string::npos) << e;
}

// tokenizer_config.json values of the wrong type are refused, naming the key (a numeric bos_token used to be read
// as "no BOS", a number as chat_template as "no template").
TEST(HostileTokenizerConfig, WrongTypedTokensAndTemplatesAreRefused) {
  test::TempDir dir;
  std::ofstream(dir.file("tokenizer.json"))
      << R"({"model": {"type": "BPE", "vocab": {"a": 0, "<s>": 1}, "merges": []}, "added_tokens": []})";
  const auto load_with = [&](const std::string& config) {
    std::ofstream(dir.file("tokenizer_config.json")) << config;
    const auto r = Tokenizer::load(dir.path());
    return r.ok() ? std::string() : std::string(r.error().what());
  };
  EXPECT_EQ(load_with(R"({"bos_token": "<s>", "eos_token": null, "chat_template": null})"), "");
  EXPECT_EQ(load_with(R"({"bos_token": {"content": "<s>"}, "chat_template": [{"name": "default", "template": "x"}]})"),
            "");
  EXPECT_NE(load_with(R"({"bos_token": 1})").find("bos_token is number (1)"), std::string::npos);
  EXPECT_NE(load_with(R"({"eos_token": ["</s>"]})").find("eos_token is array"), std::string::npos);
  EXPECT_NE(load_with(R"({"chat_template": 7})").find("chat_template is number"), std::string::npos);
  EXPECT_NE(load_with(R"({"chat_template": [{"name": "default", "template": 7}]})").find("chat_template is array"),
            std::string::npos);
}

}  // namespace
}  // namespace mlabench
