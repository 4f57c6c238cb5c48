// Tokenizer pieces on hand-made inputs whose expected output follows from tokenizers' documented semantics:
// the Oniguruma translation, split behaviours, added-token flags, BPE details, decoders, the streaming
// decoder, and malformed tokenizer.json files.
#include <gtest/gtest.h>

#include "engine/tokenizer/hf_tokenizer.h"
#include "engine/tokenizer/normalized_string.h"
#include "engine/tokenizer/pipeline.h"
#include "engine/tokenizer/regex.h"
#include "engine/tokenizer/unicode.h"
#include "tests/test_util.h"

namespace mlabench {
namespace {

std::vector<std::string> texts(const std::vector<NormalizedString>& v) {
  std::vector<std::string> out;
  for (const auto& s : v) out.push_back(s.text);
  return out;
}

std::vector<std::string> matches(const Regex& re, std::string_view s) {
  std::vector<std::string> out;
  for (const auto& [b, e] : re.find_all(s)) out.emplace_back(s.substr(b, e - b));
  return out;
}

TEST(TokenizerRegex, OnigurumaClassesTranslateToWhatOnigurumaMatches) {
  // \s includes NEL (U+0085) as in Oniguruma; PCRE2's own \s would not.
  EXPECT_EQ(matches(Regex::onig("\\s+"), "a\u0085\u3000b"), std::vector<std::string>{"\u0085\u3000"});
  EXPECT_EQ(matches(Regex::onig("[^\\s]+"), "a\u0085b"), (std::vector<std::string>{"a", "b"}));
  // \w is Letter|Mark|Number|Pc: superscript two (No) and a combining acute (Mn) are word characters.
  EXPECT_EQ(matches(Regex::onig("\\w+"), "x\u00b2e\u0301_ y"), (std::vector<std::string>{"x\u00b2e\u0301_", "y"}));
  // \h is a hex digit in Oniguruma.
  EXPECT_EQ(matches(Regex::onig("\\h+"), "zz0fAg"), std::vector<std::string>{"0fA"});
  // \p{Han} is the Han script, not its extensions: the ideographic full stop is Common.
  EXPECT_EQ(matches(Regex::onig("\\p{Han}+"), "中文。"), std::vector<std::string>{"中文"});
  EXPECT_EQ(matches(Regex::onig("\\p{Letter}+"), "ab1"), std::vector<std::string>{"ab"});
  // $ is an end-of-line anchor in Ruby syntax.
  EXPECT_EQ(matches(Regex::onig("a$"), "a\na"), (std::vector<std::string>{"a", "a"}));
  EXPECT_EQ(matches(Regex::onig("\\u00e9"), "caf\u00e9"), std::vector<std::string>{"\u00e9"});
  EXPECT_EQ(translate_onig_pattern("(?m:.)"), "(?s:.)");
  // Empty matches: none right after the previous match (the onig crate's find_iter).
  EXPECT_EQ(Regex::onig("a*").find_all("baa"), (std::vector<std::pair<size_t, size_t>>{{0, 0}, {1, 3}}));
  test::expect_error_with([] { Regex::onig("(unclosed"); }, {"(unclosed", "does not compile"});
  EXPECT_EQ(matches(Regex::literal("a.b"), "a.bxa.b"), (std::vector<std::string>{"a.b", "a.b"}));
}

TEST(TokenizerSplit, BehavioursOnTheReferenceExample) {
  const NormalizedString s("The-final--countdown");
  const auto m = find_matches([](char32_t c) { return c == '-'; }, s.text);
  EXPECT_EQ(texts(s.split(m, SplitBehavior::REMOVED)), (std::vector<std::string>{"The", "final", "countdown"}));
  EXPECT_EQ(texts(s.split(m, SplitBehavior::ISOLATED)),
            (std::vector<std::string>{"The", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(texts(s.split(m, SplitBehavior::MERGED_WITH_PREVIOUS)),
            (std::vector<std::string>{"The-", "final-", "-", "countdown"}));
  EXPECT_EQ(texts(s.split(m, SplitBehavior::MERGED_WITH_NEXT)),
            (std::vector<std::string>{"The", "-final", "-", "-countdown"}));
  EXPECT_EQ(texts(s.split(m, SplitBehavior::CONTIGUOUS)),
            (std::vector<std::string>{"The", "-", "final", "--", "countdown"}));
}

TEST(TokenizerNormalizedString, AlignmentFollowsTransformations) {
  NormalizedString s("  héllo");
  s.strip(true, true);
  EXPECT_EQ(s.text, "héllo");
  EXPECT_EQ(s.slice(0, 1).original_start(), 2u) << "stripped leading spaces are not at offset 0";
  NormalizedString p("hello");
  p.prepend("▁");
  EXPECT_EQ(p.text, "▁hello");
  EXPECT_EQ(p.slice(0, 3).original_start(), 0u);
  EXPECT_EQ(p.slice(3, 8).original_start(), 0u) << "the prepended mark shares the first character's alignment";
  EXPECT_EQ(p.slice(4, 8).original_start(), 1u);
  NormalizedString l("İA");
  l.lowercase();
  EXPECT_EQ(l.text, "i\u0307a") << "U+0130 lowercases to two characters";
}

// A tokenizer.json built by hand: a 1-piece vocabulary plus merges, so expected ids follow by reasoning.
std::unique_ptr<Tokenizer> tiny(const nlohmann::json& over = {}) {
  nlohmann::json j = {
      {"model",
       {{"type", "BPE"},
        {"vocab",
         {{"[UNK]", 0},
          {"a", 1},
          {"b", 2},
          {"c", 3},
          {"ab", 4},
          {"bc", 5},
          {"abc", 6},
          {" ", 7},
          {"<0x41>", 8},
          {"<0xC3>", 9},
          {"<0xA9>", 10},
          {"h", 11},
          {"i", 12},
          {"hi", 13}}},
        {"merges", {"a b", "b c", "ab c", "h i"}},
        {"unk_token", "[UNK]"},
        {"byte_fallback", false}}},
      {"added_tokens", nlohmann::json::array()},
  };
  if (!over.is_null()) j.update(over, true);
  return parse_hf_tokenizer_json(j.dump(), "tiny tokenizer.json");
}

TEST(TokenizerBpe, MergesByRankAndUnknowns) {
  auto t = tiny();
  EXPECT_EQ(t->encode("abc", false), (std::vector<int32_t>{6}));     // a b -> ab (rank 0) then ab c -> abc
  EXPECT_EQ(t->encode("bca", false), (std::vector<int32_t>{5, 1}));  // b c (rank 1)
  EXPECT_EQ(t->encode("xxab", false), (std::vector<int32_t>{0, 0, 4})) << "unknowns not fused by default";
  auto fused = tiny({{"model", {{"fuse_unk", true}}}});
  EXPECT_EQ(fused->encode("xxab", false), (std::vector<int32_t>{0, 4}));
  auto bytes = tiny({{"model", {{"byte_fallback", true}}}});
  EXPECT_EQ(bytes->encode("é", false), (std::vector<int32_t>{9, 10})) << "é is C3 A9";
  EXPECT_EQ(bytes->encode("Z", false), (std::vector<int32_t>{0})) << "no <0x5A>: falls back to unk";
  auto no_unk = tiny({{"model", {{"unk_token", nullptr}}}});
  EXPECT_EQ(no_unk->encode("xa", false), (std::vector<int32_t>{1})) << "without unk_token unknowns vanish";
  EXPECT_EQ(t->decode(std::vector<int32_t>{6, 7, 13, 999}, false), "abc   hi") << "no decoder: joined by spaces";
}

TEST(TokenizerAddedTokens, FlagsBehaveAsInTokenizers) {
  auto t = tiny({{"added_tokens",
                  {{{"id", 20}, {"content", "<s>"}, {"special", true}, {"normalized", false}},
                   {{"id", 21}, {"content", "[L]"}, {"lstrip", true}, {"special", true}, {"normalized", false}},
                   {{"id", 22}, {"content", "[R]"}, {"rstrip", true}, {"special", true}, {"normalized", false}},
                   {{"id", 23}, {"content", "hi"}, {"single_word", true}, {"normalized", false}},
                   {{"id", 24}, {"content", "ABC"}, {"normalized", true}}}},
                 {"normalizer", {{"type", "Lowercase"}}}});
  EXPECT_EQ(t->encode("a<s>b", false), (std::vector<int32_t>{1, 14, 2})) << "ids assigned after the model's 14";
  EXPECT_EQ(t->token_to_id("<s>"), 14);
  EXPECT_EQ(t->encode("a  [L]b", false), (std::vector<int32_t>{1, 15, 2})) << "lstrip eats the spaces before";
  EXPECT_EQ(t->encode("a[R]  b", false), (std::vector<int32_t>{1, 16, 2})) << "rstrip eats the spaces after";
  EXPECT_EQ(t->encode("hi a", false), (std::vector<int32_t>{13, 7, 1})) << "content the model knows keeps its id";
  EXPECT_EQ(t->encode("chi", false), (std::vector<int32_t>{3, 13})) << "single_word: inside a word it is no match";
  // A normalized added token matches the normalized text ("abc" after Lowercase), and decodes to that form.
  EXPECT_EQ(t->encode("xABCx", false), (std::vector<int32_t>{0, 17, 0}));
  EXPECT_EQ(t->encode("xabcx", false), (std::vector<int32_t>{0, 17, 0}));
  EXPECT_EQ(t->decode(std::vector<int32_t>{17}, false), "abc");
  EXPECT_TRUE(t->is_special(14));
  EXPECT_FALSE(t->is_special(13));
  EXPECT_EQ(t->decode(std::vector<int32_t>{1, 14, 2}, true), "a b");
}

TEST(TokenizerDecoders, ByteLevelByteFallbackMetaspaceStrip) {
  // ByteLevel: tokens are byte-mapped characters; an incomplete UTF-8 tail decodes to U+FFFD.
  std::string e_acute;
  unicode::append(e_acute, byte_to_char(0xC3));
  unicode::append(e_acute, byte_to_char(0xA9));
  std::string half;
  unicode::append(half, byte_to_char(0xC3));
  auto bl = tiny(
      {{"model",
        {{"vocab", {{e_acute, 0}, {half, 1}, {"Ġ", 2}}}, {"merges", nlohmann::json::array()}, {"unk_token", nullptr}}},
       {"decoder", {{"type", "ByteLevel"}}}});
  EXPECT_EQ(bl->decode(std::vector<int32_t>{2, 0}, false), " é");
  EXPECT_EQ(bl->decode(std::vector<int32_t>{1}, false), "\uFFFD");
  EXPECT_EQ(char_to_byte(byte_to_char(0x20)), 0x20);
  EXPECT_EQ(byte_to_char(' '), U'Ġ');

  auto sp = tiny({{"decoder",
                   {{"type", "Sequence"},
                    {"decoders",
                     {{{"type", "Replace"}, {"pattern", {{"String", "a"}}}, {"content", " "}},
                      {{"type", "ByteFallback"}},
                      {{"type", "Fuse"}},
                      {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}}});
  EXPECT_EQ(sp->decode(std::vector<int32_t>{1, 11, 9, 10, 2}, false), "héb")
      << "fused, then one leading space stripped";
  EXPECT_EQ(sp->decode(std::vector<int32_t>{9, 11}, false), "\uFFFDh") << "a lone C3 byte is U+FFFD";

  auto meta = tiny({{"decoder", {{"type", "Metaspace"}, {"replacement", "b"}, {"prepend_scheme", "first"}}}});
  EXPECT_EQ(meta->decode(std::vector<int32_t>{2, 1, 2}, false), "a ") << "replacement dropped in the first token only";
}

TEST(TokenizerStream, StepsConcatenateToTheWholeDecodeWithoutHalfCharacters) {
  for (const std::string& dir :
       {test::default_model_dir(), test::data_dir() + "/tokenizer/llama2-style",
        test::data_dir() + "/tokenizer/metaspace-first", test::data_dir() + "/tokenizer/sentencepiece-bpe"}) {
    auto tok = Tokenizer::load(dir).value();
    const std::string text = "Grüße 👩‍💻 from 서울 — 1234 tokens\n\tend 你好！";
    const auto ids = tok->encode(text, true);
    StreamDecoder stream(*tok, true);
    std::string joined;
    for (int32_t id : ids) {
      const std::string piece = stream.step(id);
      EXPECT_TRUE(unicode::valid(piece)) << dir;
      EXPECT_EQ(piece.find("\uFFFD"), std::string::npos) << dir << ": emitted a replacement for a half character";
      joined += piece;
    }
    joined += stream.flush();
    EXPECT_EQ(joined, tok->decode(ids, true)) << dir;
  }
}

TEST(TokenizerLoad, MalformedFilesNameTheField) {
  test::expect_error_with([] { parse_hf_tokenizer_json("{\"added_tokens\": []}", "t.json"); },
                          {"t.json", "'model'", "missing"});
  test::expect_error_with(
      [] { parse_hf_tokenizer_json("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "t.json"); },
      {"model type \"WordPiece\"", "accepted: BPE"});
  test::expect_error_with(
      [] {
        tiny({{"pre_tokenizer", {{"type", "Frobnicate"}}}});
      },
      {"pre_tokenizer", "\"Frobnicate\"", "accepted: Split, ByteLevel"});
  test::expect_error_with([] { tiny({{"normalizer", {{"type", "NFD"}}}}); }, {"normalizer", "\"NFD\""});
  test::expect_error_with([] { tiny({{"decoder", {{"type", "WordPiece"}}}}); }, {"decoder", "\"WordPiece\""});
  test::expect_error_with(
      [] {
        tiny({{"pre_tokenizer", {{"type", "Split"}, {"pattern", {{"Regex", "[a-"}}}, {"behavior", "Isolated"}}}});
      },
      {"pre_tokenizer.pattern", "[a-", "does not compile"});
  test::expect_error_with(
      [] {
        tiny({{"pre_tokenizer", {{"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Sideways"}}}});
      },
      {"\"Sideways\"", "Isolated"});
  test::expect_error_with(
      [] {
        tiny({{"model", {{"merges", {"a q"}}}}});
      },
      {"merge 1", "\"q\"", "not in the vocabulary"});
  test::expect_error_with([] { tiny({{"model", {{"merges", {"c a"}}}}}); }, {"merge 1 makes \"ca\""});
  test::expect_error_with([] { tiny({{"model", {{"unk_token", "<unk>"}}}}); }, {"unk_token \"<unk>\""});
  test::expect_error_with([] { parse_hf_tokenizer_json("{\"model\": ", "t.json"); }, {"t.json", "not valid JSON"});
  auto missing = Tokenizer::load("/nonexistent");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.error().what()).find("no tokenizer"), std::string::npos);
}

TEST(TokenizerUtf8, InvalidInputIsReplacedNotFatal) {
  EXPECT_EQ(unicode::sanitize("a\xff"
                              "b"),
            "a\uFFFDb");
  EXPECT_EQ(unicode::sanitize("\xe2\x82"), "\uFFFD") << "a truncated 3-byte sequence is one maximal subpart";
  EXPECT_EQ(unicode::sanitize("\xed\xa0\x80"), "\uFFFD\uFFFD\uFFFD") << "surrogates are ill-formed byte by byte";
  EXPECT_EQ(unicode::sanitize("\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80");
  EXPECT_TRUE(unicode::valid("\uFFFD"));
  auto tok = Tokenizer::load(test::default_model_dir()).value();
  EXPECT_EQ(tok->encode("x\xffy", false), tok->encode("x\uFFFDy", false));
}

}  // namespace
}  // namespace mlabench
