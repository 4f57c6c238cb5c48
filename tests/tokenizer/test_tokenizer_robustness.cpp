// Randomised robustness (run under AddressSanitizer and UBSan in CI): random and corrupted text through every
// tokenizer, and corrupted tokenizer.json files through the loader. Encoding never fails and always gives ids
// in range; decoding always gives well-formed UTF-8; loading either succeeds or says why.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <unistd.h>

#include "engine/tokenizer/hf_tokenizer.h"
#include "engine/tokenizer/normalized_string.h"
#include "engine/tokenizer/regex.h"
#include "engine/tokenizer/unicode.h"
#include "tests/test_util.h"

namespace mlabench {
namespace {

std::string random_text(std::mt19937& rng) {
  static const std::vector<std::string> atoms = {
      "a",          "Z",  " ",     "  ", "\n", "\r\n",        "\t",     "é",
      "e\u0301",    "中", "한",    "ж",  "😀",  "👩‍💻", "\u200b", "\u3000",
      "\u0085",     "1",  "23",    "'s", "-",  ".",           "<s>",    "<｜begin▁of▁sentence｜>",
      "<|eot_id|>", "▁",  "\uFFFD"};
  std::string s;
  const int n = static_cast<int>(rng() % 60);
  for (int i = 0; i < n; ++i) {
    const unsigned r = rng() % 10;
    if (r < 7) {
      s += atoms[rng() % atoms.size()];
    } else if (r < 9) {
      unicode::append(s, static_cast<char32_t>(rng() % 0x30000));  // may be unassigned or a surrogate value
    } else {
      s += static_cast<char>(rng() % 256);  // raw bytes: often ill-formed UTF-8
    }
  }
  return s;
}

TEST(TokenizerRobustness, RandomTextThroughEveryTokenizer) {
  std::vector<std::string> dirs = {test::default_model_dir()};
  for (const char* n : {"llama3-style", "llama2-style", "metaspace-first", "metaspace-always", "wordpiece-mix",
                        "bytelevel-mix", "sentencepiece-bpe"})
    dirs.push_back(test::data_dir() + "/tokenizer/" + n);
  std::mt19937 rng(99);
  for (const auto& dir : dirs) {
    auto tok = Tokenizer::load(dir).value();
    for (int i = 0; i < 300; ++i) {
      const std::string text = random_text(rng);
      const auto ids = tok->encode(text, i % 2 == 0);
      for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok->vocab_size()) << dir << ": id " << id;
      const std::string dec = tok->decode(ids, i % 3 == 0);
      ASSERT_TRUE(unicode::valid(dec)) << dir;
      // Arbitrary ids, in range or not, decode without failing.
      std::vector<int32_t> junk;
      for (int k = 0; k < 20; ++k) junk.push_back(static_cast<int32_t>(rng() % (tok->vocab_size() + 50)) - 10);
      ASSERT_TRUE(unicode::valid(tok->decode(junk, false))) << dir;
    }
  }
}

TEST(TokenizerRobustness, CorruptedTokenizerJsonIsRefusedOrLoads) {
  std::ifstream in(test::data_dir() + "/tokenizer/wordpiece-mix/tokenizer.json");
  const std::string good((std::istreambuf_iterator<char>(in)), {});
  // Mutate the pipeline part of the file (before the vocabulary), where the structure is.
  const size_t head = std::min(good.find("\"vocab\""), good.size());
  std::mt19937 rng(5);
  int loaded = 0, refused = 0;
  for (int trial = 0; trial < 150; ++trial) {
    std::string bad = good;
    for (int k = 0; k < 3; ++k) bad[rng() % head] = "{}[]\":,0aZ\\ "[rng() % 13];
    try {
      auto t = parse_hf_tokenizer_json(bad, "mutated tokenizer.json");
      t->encode("Hello, world! 123 中文", true);
      ++loaded;
    } catch (const Error&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
  EXPECT_EQ(loaded + refused, 150);
}

// A normalizer that grows text without bound (issue 17, class 3: a Replace 10,000x, or doublings in a Sequence) is
// refused when it would pass 64x the piece + 4 KiB, naming the normalizer step; a real expansion (NFKC's 11x, a
// Replace of a space by a 3-byte mark) stays well inside and encodes.
TEST(TokenizerRobustness, NormalizersThatExpandWithoutBoundAreRefused) {
  auto with_normalizer = [](const nlohmann::json& normalizer) {
    const nlohmann::json j = {
        {"model", {{"type", "BPE"}, {"vocab", {{"[UNK]", 0}, {"a", 1}}}, {"merges", nlohmann::json::array()},
                   {"unk_token", "[UNK]"}}},
        {"added_tokens", nlohmann::json::array()},
        {"normalizer", normalizer}};
    return parse_hf_tokenizer_json(j.dump(), "expanding tokenizer.json");
  };
  const nlohmann::json replace_10000 = {
      {"type", "Replace"}, {"pattern", {{"String", "a"}}}, {"content", std::string(10000, 'a')}};
  nlohmann::json doublings = {{"type", "Sequence"}, {"normalizers", nlohmann::json::array()}};
  for (int i = 0; i < 40; ++i)
    doublings["normalizers"].push_back({{"type", "Replace"}, {"pattern", {{"String", "a"}}}, {"content", "aa"}});
  for (const auto& [name, normalizer] : {std::pair{"Replace 10,000x", replace_10000}, {"40 doublings", doublings}}) {
    auto t = with_normalizer(normalizer);
    test::expect_error_with([&] { (void)t->encode(std::string(1000, 'a'), false); },
                            {"tokenizer normalization (Replace)", "limit", "64x", "HINT"}, name);
  }
  // The same bound on the offset-tracking path (pre-tokenizers that ask for offsets), and on Prepend.
  NormalizedString tracked(std::string(1000, 'a'));
  const Regex a_re = Regex::literal("a");
  test::expect_error_with([&] { tracked.replace(a_re, std::string(100, 'b')); }, {"Replace", "limit"}, "tracked");
  EXPECT_EQ(tracked.text, std::string(1000, 'a')) << "a refused step leaves the text as it was";
  NormalizedString small("a");
  test::expect_error_with([&] { small.prepend(std::string(5000, 'p')); }, {"Prepend", "limit"}, "prepend");
  const nlohmann::json realistic = {
      {"type", "Sequence"},
      {"normalizers",
       {{{"type", "NFKC"}}, {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}}}};
  auto t = with_normalizer(realistic);
  std::string text;
  for (int i = 0; i < 200; ++i) text += "\uFDFA a ";  // NFKC expands U+FDFA to 18 characters (33 bytes from 3)
  EXPECT_FALSE(t->encode(text, false).empty());
}

// Found by fuzz_tokenizer (tests/fuzz/corpus/tokenizer/regress-special-token-not-object.json): a TemplateProcessing
// piece whose SpecialToken is a number, or ids that are not integers, threw nlohmann's own exception past the
// loader (an abort in the fuzz target). Each such shape is now refused with what was wrong.
TEST(TokenizerRobustness, TemplateProcessingOfWrongShapesIsRefused) {
  auto with_post = [](const nlohmann::json& post) {
    const nlohmann::json j = {
        {"model", {{"type", "BPE"}, {"vocab", {{"[UNK]", 0}, {"a", 1}, {"[CLS]", 2}}}, {"merges", nlohmann::json::array()},
                   {"unk_token", "[UNK]"}}},
        {"added_tokens", nlohmann::json::array()},
        {"post_processor", post}};
    return parse_hf_tokenizer_json(j.dump(), "template tokenizer.json");
  };
  auto templ = [](const nlohmann::json& specials, const nlohmann::json& single) {
    return nlohmann::json{{"type", "TemplateProcessing"}, {"special_tokens", specials}, {"single", single}};
  };
  const nlohmann::json good_specials = {{"[CLS]", {{"id", "[CLS]"}, {"ids", {2}}, {"tokens", {"[CLS]"}}}}};
  const nlohmann::json good_single = {{{"SpecialToken", {{"id", "[CLS]"}, {"type_id", 0}}}},
                                      {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}};
  auto ok = with_post(templ(good_specials, good_single));
  EXPECT_EQ(ok->encode("a", true), (std::vector<int32_t>{2, 1})) << "the well-formed template adds [CLS]";

  test::expect_error_with([&] { (void)with_post(templ(good_specials, {{{"SpecialToken", 7}}})); },
                          {"template tokenizer.json", "SpecialToken object"}, "SpecialToken is a number");
  test::expect_error_with(
      [&] { (void)with_post(templ({{"[CLS]", {{"id", "[CLS]"}, {"ids", {"two"}}}}}, good_single)); },
      {"special_tokens['[CLS]']", "ids"}, "ids are strings");
  test::expect_error_with([&] { (void)with_post(templ({{"[CLS]", 3}}, good_single)); },
                          {"special_tokens['[CLS]']", "needs an 'ids' list", "HINT"}, "entry is a number");
  test::expect_error_with(
      [&] { (void)with_post(templ({{"[CLS]", {{"id", "[CLS]"}, {"ids", {-4}}}}}, good_single)); },
      {"special_tokens['[CLS]']", "out of range"}, "negative id");
  test::expect_error_with([&] { (void)with_post(templ(good_specials, {"Sequence"})); },
                          {"neither Sequence nor SpecialToken"}, "piece is a string");
  test::expect_error_with(
      [&] { (void)with_post(templ(good_specials, {{{"SpecialToken", {{"id", 5}}}}})); },
      {"SpecialToken piece", "id"}, "SpecialToken id is a number");
}

// Found by fuzz_sentencepiece (tests/fuzz/corpus/sentencepiece/regress-zero-length-piece.model): a ModelProto with a
// piece of zero length makes libsentencepiece's trie builder throw its own exception out of Load, which ended the
// process. Now an Error naming the model; a well-formed small model still loads and round-trips.
TEST(TokenizerRobustness, SentencePieceModelsTheLibraryThrowsOnAreAnError) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("mlabench-spm-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string bad("\x0a\x0e\x0a\x05\x3c\x75\x6e\x6b\xf6\x15\x00\x00\x00\x00\x18\x02\x0a\x0e\x0a\x05\x00\xfe\x28\x28\x28\xa0\xa0\x28\x28\x28\xa0\x0a", 32);
  std::ofstream(dir / "bad.model", std::ios::binary) << bad;
  test::expect_error_with([&] { (void)load_sentencepiece((dir / "bad.model").string()); },
                          {"SentencePiece model", "bad.model", "HINT"});
  std::ofstream(dir / "junk.model", std::ios::binary) << "not a protobuf at all";
  test::expect_error_with([&] { (void)load_sentencepiece((dir / "junk.model").string()); }, {"junk.model"});
  auto good = load_sentencepiece(std::string(MLABENCH_CONFIGS_DIR) +
                                 "/../tests/fuzz/corpus/sentencepiece/bpe-300-pieces.model");
  const auto ids = good->encode("hello world", false);
  EXPECT_FALSE(ids.empty());
  EXPECT_NE(good->decode(ids, true).find("hello world"), std::string::npos)  // 300 pieces: "▁" may come by bytes
      << good->decode(ids, true);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace mlabench
