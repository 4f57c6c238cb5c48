// Id-for-id parity with Hugging Face `tokenizers` (and the sentencepiece package) over the 1.8 MB mixed
// corpus, for the DeepSeek-V2 tokenizer and every trained tokenizer style. For each document the reference
// stores the token count, a hash of the ids, hashes of decode() with and without special tokens, and whether
// decode(encode(x)) == x; the first 40 documents also carry their full ids, with and without special tokens.
#include <gtest/gtest.h>

#include "mlabench/tokenizer.h"
#include "tests/test_util.h"

namespace mlabench {
namespace {

struct Case {
  std::string name;  // reference file stem
  std::string dir;   // tokenizer folder ("" = needs the shared mirror and it is absent)
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name << " (" << (c.dir.empty() ? "not available" : c.dir) << ")"; }

std::vector<Case> cases() {
  const std::string t = test::data_dir() + "/tokenizer/";
  std::vector<Case> c = {{"mlabench-tiny-dsv2", test::default_model_dir()},
                         {"llama3-style", t + "llama3-style"},
                         {"llama2-style", t + "llama2-style"},
                         {"metaspace-first", t + "metaspace-first"},
                         {"metaspace-always", t + "metaspace-always"},
                         {"wordpiece-mix", t + "wordpiece-mix"},
                         {"bytelevel-mix", t + "bytelevel-mix"},
                         {"sentencepiece-bpe", t + "sentencepiece-bpe"}};
  const std::string shared = test::shared_dir();
  c.push_back({"deepseek-v2", shared.empty() ? "" : shared + "/tokenizers/deepseek-v2"});
  return c;
}

const std::vector<std::string>& corpus() {
  static const std::vector<std::string> docs = [] {
    std::vector<std::string> d;
    std::istringstream in(test::read_gz(test::data_dir() + "/tokenizer/corpus.jsonl.gz"));
    for (std::string line; std::getline(in, line);) d.push_back(nlohmann::json::parse(line)["text"].get<std::string>());
    return d;
  }();
  return docs;
}

std::string ids_hash(const std::vector<int32_t>& ids) {
  std::vector<uint32_t> u(ids.begin(), ids.end());  // little-endian uint32, as the reference hashes them
  return test::fnv1a64_hex(u.data(), u.size() * 4);
}

std::string show(const std::vector<int32_t>& ids, size_t n = 24) {
  std::string s;
  for (size_t i = 0; i < ids.size() && i < n; ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s + (ids.size() > n ? ",..." : "");
}

class TokenizerReference : public ::testing::TestWithParam<Case> {};

TEST_P(TokenizerReference, IdsAndDecodingMatchTheReferenceOnTheWholeCorpus) {
  const Case& c = GetParam();
  if (c.dir.empty())
    GTEST_SKIP() << "the shared data mirror (../shared) is not on this machine: " << c.name << " not checked";
  auto loaded = Tokenizer::load(c.dir);
  ASSERT_TRUE(loaded.ok()) << loaded.error().what();
  const Tokenizer& tok = *loaded.value();
  const nlohmann::json ref =
      nlohmann::json::parse(test::read_gz(test::data_dir() + "/tokenizer/ref/" + c.name + ".json.gz"));
  const auto& rows = ref["rows"];
  const auto& docs = corpus();
  ASSERT_EQ(rows.size(), docs.size());

  size_t bad_ids = 0, bad_decode = 0, bad_skip = 0, tokens = 0, roundtrips = 0;
  std::string first_bad;
  for (size_t i = 0; i < docs.size(); ++i) {
    const std::vector<int32_t> ids = tok.encode(docs[i], false);
    tokens += ids.size();
    const auto& r = rows[i];
    if (static_cast<int64_t>(ids.size()) != r[0].get<int64_t>() || ids_hash(ids) != r[1].get<std::string>()) {
      if (bad_ids++ == 0) {
        first_bad = "document " + std::to_string(i) + " " + nlohmann::json(docs[i].substr(0, 120)).dump() +
                    "\n  ours " + std::to_string(ids.size()) + " ids: " + show(ids);
        if (i < ref["full_ids"].size()) {
          const auto want = ref["full_ids"][i].get<std::vector<int32_t>>();
          size_t k = 0;
          while (k < ids.size() && k < want.size() && ids[k] == want[k]) ++k;
          const size_t from = k > 4 ? k - 4 : 0;
          auto window = [&](const std::vector<int32_t>& v) {
            std::string w;
            for (size_t j = from; j < v.size() && j < k + 8; ++j)
              w += (j > from ? " " : "") + std::to_string(v[j]) + "=" +
                   nlohmann::json(tok.id_to_token(v[j]).value_or("?")).dump();
            return w;
          };
          first_bad += "\n  first difference at id " + std::to_string(k) + "\n  ours: " + window(ids) +
                       "\n  want: " + window(want);
        }
      }
      continue;  // decoding other ids says nothing more
    }
    const std::string dec = tok.decode(ids, false), dec_skip = tok.decode(ids, true);
    bad_decode += test::fnv1a64_hex(dec.data(), dec.size()) != r[2].get<std::string>();
    bad_skip += test::fnv1a64_hex(dec_skip.data(), dec_skip.size()) != r[3].get<std::string>();
    if (r[4].get<int>() == 1) {
      EXPECT_EQ(dec, docs[i]) << c.name << " document " << i << ": the reference round-trips, we do not";
      ++roundtrips;
    }
  }
  EXPECT_EQ(bad_ids, 0u) << c.name << ": " << bad_ids << " of " << docs.size()
                         << " documents differ; first: " << first_bad;
  EXPECT_EQ(bad_decode, 0u) << c.name << ": decode() differs on " << bad_decode << " documents";
  EXPECT_EQ(bad_skip, 0u) << c.name << ": decode(skip_special_tokens) differs on " << bad_skip << " documents";
  for (size_t i = 0; i < ref["full_ids_add_special"].size(); ++i)
    EXPECT_EQ(tok.encode(docs[i], true), ref["full_ids_add_special"][i].get<std::vector<int32_t>>())
        << c.name << " document " << i << " with special tokens";
  std::printf("[ tokenizer] %-20s %8zu tokens over %zu documents identical; decode(encode(x)) == x on %zu\n",
              c.name.c_str(), tokens, docs.size(), roundtrips);
}

INSTANTIATE_TEST_SUITE_P(Corpus, TokenizerReference, ::testing::ValuesIn(cases()), [](const auto& info) {
  std::string n = info.param.name;
  for (char& ch : n)
    if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
});

}  // namespace
}  // namespace mlabench
