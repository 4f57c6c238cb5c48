// Needle in a haystack through the prefix cache: prompts of one grid share the haystack up to the shallower
// needle (same template, same haystack, same cut), so the engine should compute every shared block once. The
// expected count comes from the prompts themselves: each prompt, in submission order, reuses the full blocks of
// its longest common token prefix with an earlier prompt, never its last token (whose logits it needs).
//   EngineComputesWhatThePromptPrefixesImply: the bundled model through the evaluator and the engine backend,
//     a small grid with and without prefix sharing, and in the other depth order.
//   GridSavingFromTokenCounts: the DeepSeek-V2 tokenizer on a grid of the default depths; a short one by
//     default, the paper's 12 x 12 grid to 128K with MLABENCH_NIAH_FULL_GRID=1 (tokenizer only, no model).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>

#include "harness/backend.h"
#include "harness/evaluator.h"
#include "tests/harness/eval_test_util.h"

namespace mlabench::harness {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using Prompts = std::vector<std::vector<int32_t>>;

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  const auto [ia, ib] = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
  return static_cast<size_t>(ia - a.begin());
}

// Prompt tokens a prefix cache of `block`-token blocks that never evicts computes for `prompts` in this order.
int64_t computed_with_prefix_cache(const Prompts& prompts, int64_t block) {
  int64_t computed = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    size_t best = 0;
    for (size_t j = 0; j < i; ++j) best = std::max(best, common_prefix(prompts[i], prompts[j]));
    const auto len = static_cast<int64_t>(prompts[i].size());
    computed += len - std::min(static_cast<int64_t>(best) / block, (len - 1) / block) * block;
  }
  return computed;
}

int64_t total_tokens(const Prompts& prompts) {
  int64_t n = 0;
  for (const auto& p : prompts) n += static_cast<int64_t>(p.size());
  return n;
}

// The grid's documents as the evaluator builds them, with each prompt as the backend encodes it.
struct Grid {
  std::vector<const tasks::TaskDoc*> docs;
  Prompts prompts;
  tasks::Task task;
};

Grid load_grid(const json& overrides, const Tokenizer& tok, const Backend* backend, int64_t max_context,
               int64_t max_gen_toks) {
  Grid g;
  tasks::TaskLoadOptions lo;
  lo.dataset_dir = data::ensure_dataset("niah_haystack", test::mirror_fetch());
  lo.overrides = overrides;
  lo.tokenizer = &tok;
  if (backend)
    lo.encode_prompt = [backend](const std::string& c, const std::string& s) { return backend->encode_prompt(c, s); };
  lo.max_context = max_context;
  lo.max_gen_toks = max_gen_toks;
  g.task = tasks::load_task("niah", lo);
  for (const tasks::TaskDoc& d : g.task.subtasks.at(0).docs) {
    g.docs.push_back(&d);
    g.prompts.push_back(backend ? backend->encode_prompt(d.context, d.system_prompt) : tok.encode(d.context, true));
  }
  return g;
}

// Within one context length the prompts of two depths share at least the tokens before the shallower needle
// (the last one may merge with what follows it: ".\n" against ". "), and so the cache can share them.
void expect_shared_up_to_the_needle(const Grid& g, const Tokenizer& tok) {
  for (size_t i = 0; i + 1 < g.docs.size(); ++i) {
    const json& a = g.docs[i]->doc;
    const json& b = g.docs[i + 1]->doc;
    if (a["context_length"] != b["context_length"]) continue;
    const auto before = tok.encode(g.docs[i]->context.substr(0, a["needle_offset"].get<size_t>()), true).size();
    EXPECT_GE(common_prefix(g.prompts[i], g.prompts[i + 1]) + 2, before)
        << a["cell"] << " and " << b["cell"] << " part before the shallower needle";
  }
}

bool have_haystack() { return fs::exists(test::dataset_mirror() + "/niah_haystack"); }

Prompts deepest_first_within_length(const Grid& g) {
  std::vector<size_t> order(g.docs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) {
    const json &a = g.docs[x]->doc, &b = g.docs[y]->doc;
    return a["context_length"] != b["context_length"] ? a["context_length"] < b["context_length"]
                                                      : a["depth_percent"] > b["depth_percent"];
  });
  Prompts out;
  for (size_t i : order) out.push_back(g.prompts[i]);
  return out;
}

TEST(NiahPrefixSharing, EngineComputesWhatThePromptPrefixesImply) {
  if (!have_haystack()) GTEST_SKIP() << "SKIPPED: no niah_haystack in the dataset mirror " << test::dataset_mirror();
  // Small: the float32 CPU engine computes these prompts three times (with, without sharing, other order); the short
  // mode (label slow) at two thirds of the lengths, still several shared 16-token blocks before each needle.
  const json grid = json::parse(test::short_mode()
      ? R"({"generator": {"context_lengths": [160, 320], "depth_percents": [0, 50, 100]}})"
      : R"({"generator": {"context_lengths": [240, 480], "depth_percents": [0, 50, 100]}})");
  constexpr int64_t kBlock = 16;
  struct Run {
    EngineStats stats;
    Grid grid;
  };
  auto run = [&](bool sharing) {
    auto engine = Engine::open({.model_dir = test::default_model_dir(), .block_size = kBlock,
                                .prefix_sharing = sharing}).value();
    Engine* e = engine.get();  // the backend owns it; its counters are read after the run
    auto backend = make_engine_backend(std::move(engine), {}, {{"model", "tiny"}});
    EvalOptions o;
    o.tasks = "niah";
    o.output_dir = test::fresh_dir(sharing ? "niah-prefix-shared" : "niah-prefix-plain");
    o.fetch = test::mirror_fetch();
    o.progress = false;
    o.task_overrides = {{"niah", grid}};
    o.gen.max_gen_toks = 1;  // the prompt's blocks are all the cache holds: no generated token is ever computed
    evaluate(*backend, o);
    return Run{e->stats(), load_grid(grid, *backend->tokenizer(), backend.get(), backend->max_context(), 1)};
  };
  const Run shared = run(true), plain = run(false);
  const Prompts& prompts = shared.grid.prompts;
  ASSERT_EQ(prompts.size(), 6u);
  ASSERT_EQ(prompts, plain.grid.prompts);
  expect_shared_up_to_the_needle(shared.grid, *Tokenizer::load(test::default_model_dir()).value());

  const int64_t all = total_tokens(prompts), expected = computed_with_prefix_cache(prompts, kBlock);
  EXPECT_EQ(plain.stats.prefill_tokens, all);
  EXPECT_EQ(plain.stats.prefix_tokens_reused, 0);
  EXPECT_EQ(shared.stats.preemptions, 0);
  EXPECT_EQ(shared.stats.prefill_tokens, expected) << "the scheduler should compute every shared block once";
  EXPECT_EQ(shared.stats.prefix_tokens_reused, all - expected);
  EXPECT_LT(expected, all) << "the depths of one length share the haystack before the shallower needle";
  std::printf("[ niah prefix ] %zu prompts, %lld tokens; with prefix sharing %lld computed (%.2fx fewer)\n",
              prompts.size(), static_cast<long long>(all), static_cast<long long>(expected),
              static_cast<double>(all) / static_cast<double>(expected));

  // Deepest needle first within each length: the engine again computes what the prefixes imply.
  const Prompts deep = deepest_first_within_length(shared.grid);
  auto engine = Engine::open({.model_dir = test::default_model_dir(), .block_size = kBlock}).value();
  std::vector<GenerateRequest> reqs;
  for (const auto& p : deep) reqs.push_back({.prompt = p, .options = {.max_new_tokens = 1}});
  const std::vector<GenerateResult> res = engine->generate_batch(reqs).value();
  int64_t reused = 0;
  for (const GenerateResult& r : res) reused += r.prefix_tokens_reused;
  EXPECT_EQ(engine->stats().prefill_tokens, computed_with_prefix_cache(deep, kBlock));
  EXPECT_EQ(reused, engine->stats().prefix_tokens_reused);
}

// The saving of a grid on the real tokenizer, from token counts alone, in three submission orders: the grid's
// (lengths ascending, depths ascending), deepest needle first within a length, and each length on its own cache.
TEST(NiahPrefixSharing, GridSavingFromTokenCounts) {
  if (!have_haystack() || test::shared_dir().empty()) GTEST_SKIP() << "SKIPPED: no shared data mirror";
  const std::string tok_dir = test::shared_dir() + "/tokenizers/deepseek-v2";
  if (!fs::exists(tok_dir)) GTEST_SKIP() << "SKIPPED: no DeepSeek-V2 tokenizer at " << tok_dir;
  const auto tok = Tokenizer::load(tok_dir).value();
  const bool full = std::getenv("MLABENCH_NIAH_FULL_GRID") != nullptr;
  // The paper's grid (the spec's default), or three short lengths at the same 12 depths.
  const json grid = full ? json::parse(R"({"generator": {}})")
                         : json::parse(R"({"generator": {"context_lengths": [1000, 2000, 4000]}})");
  constexpr int64_t kBlock = 16;
  const Grid g = load_grid(grid, *tok, nullptr, 0, 64);
  ASSERT_EQ(g.prompts.size(), full ? 144u : 36u);
  expect_shared_up_to_the_needle(g, *tok);
  for (size_t i = 0; i < g.docs.size(); ++i)
    ASSERT_EQ(static_cast<int64_t>(g.prompts[i].size()), g.docs[i]->doc["context_length"].get<int64_t>());

  const int64_t all = total_tokens(g.prompts);
  const int64_t in_order = computed_with_prefix_cache(g.prompts, kBlock);
  const int64_t deep_first = computed_with_prefix_cache(deepest_first_within_length(g), kBlock);
  int64_t per_length = 0;
  std::map<int64_t, Prompts> by_length;
  for (size_t i = 0; i < g.docs.size(); ++i)
    by_length[g.docs[i]->doc["context_length"].get<int64_t>()].push_back(g.prompts[i]);
  for (const auto& [_, ps] : by_length) per_length += computed_with_prefix_cache(ps, kBlock);
  // Every order builds the same set of distinct blocks; only the last-token rule can move a block.
  EXPECT_NEAR(static_cast<double>(deep_first), static_cast<double>(in_order), 16.0 * static_cast<double>(g.prompts.size()));
  EXPECT_LE(in_order, per_length);
  EXPECT_LT(in_order * 10, all * 6) << "12 depths should save more than 40% of the prefill";
  std::printf("[ niah prefix ] %s grid, %zu prompts, %lld prompt tokens; computed with prefix sharing: grid order "
              "%lld (%.3fx fewer), deepest first %lld (%.3fx), one cache per length %lld (%.3fx)\n",
              full ? "12 x 12 (to 128K)" : "3 x 12 (short; MLABENCH_NIAH_FULL_GRID=1 for the full)", g.prompts.size(),
              static_cast<long long>(all), static_cast<long long>(in_order),
              static_cast<double>(all) / static_cast<double>(in_order), static_cast<long long>(deep_first),
              static_cast<double>(all) / static_cast<double>(deep_first), static_cast<long long>(per_length),
              static_cast<double>(all) / static_cast<double>(per_length));
}

}  // namespace
}  // namespace mlabench::harness
