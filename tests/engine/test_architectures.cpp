// Every attention x FFN composition (architecture_configs.h) through the CPU model with random weights: cache
// widths, tensor names, finite logits, the output head on chosen rows, decoding through the cache, both MLA
// forms, and Engine::open on one composition written to a folder.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>

#include "engine/model/cpu_model.h"
#include "engine/model/model_info.h"
#include "engine/weights/tensor_manifest.h"
#include "mlabench/engine.h"
#include "tests/engine/architecture_configs.h"
#include "tests/test_util.h"

namespace mlabench {
namespace {

using Combination = std::pair<std::string, nlohmann::json>;

// What a composition's config.json asks for, read from the JSON itself rather than from ModelConfig, so the
// parse is checked too.
struct Expected {
  bool mla = false;
  bool q_lora = false;
  int64_t kv_heads = 0, head_dim = 0;
  std::vector<bool> moe_layers;
  int64_t n_shared = 0;
};

Expected expected_of(const nlohmann::json& j) {
  Expected e;
  const std::string def = j["model_type"] == "deepseek_v2" ? "mla" : "gqa";
  e.mla = j.value("mlabench_attention", def) == "mla";
  e.q_lora = j.contains("q_lora_rank") && !j["q_lora_rank"].is_null();
  const int64_t heads = j["num_attention_heads"];
  e.kv_heads = j.value("num_key_value_heads", heads);
  e.head_dim = j.value("head_dim", j["hidden_size"].get<int64_t>() / heads);
  for (int64_t i = 0; i < j["num_hidden_layers"].get<int64_t>(); ++i)
    e.moe_layers.push_back(j.contains("n_routed_experts") && i >= j["first_k_dense_replace"].get<int64_t>() &&
                           i % j["moe_layer_freq"].get<int64_t>() == 0);
  e.n_shared = j.value("n_shared_experts", 0);
  return e;
}

std::unique_ptr<CpuModel> model_of(const nlohmann::json& j, MlaAttention mode) {
  ModelConfig c = config_from_json(j, "architecture combination");
  ModelWeights w = random_weights(c, 11);
  return make_cpu_model(std::move(c), std::move(w), mode);
}

std::vector<int32_t> some_tokens(int64_t n) {
  std::vector<int32_t> t;
  for (int64_t i = 0; i < n; ++i) t.push_back(static_cast<int32_t>((i * 389 + 17) % 2048));
  return t;
}

// Logits of every position: one forward, or `prefix` tokens and then one token at a time through the cache.
std::vector<float> run(CpuModel& m, const std::vector<int32_t>& tokens, size_t prefix) {
  const auto V = static_cast<size_t>(m.config().vocab_size);
  std::vector<float> out(tokens.size() * V);
  CpuKvCache cache = m.new_cache();
  if (prefix == 0 || prefix >= tokens.size()) {
    m.forward(tokens, cache, out.data(), false);
    return out;
  }
  m.forward(std::span(tokens.data(), prefix), cache, out.data(), false);
  for (size_t t = prefix; t < tokens.size(); ++t) m.forward(std::span(&tokens[t], 1), cache, out.data() + t * V, false);
  EXPECT_EQ(cache.n_tokens(), static_cast<int64_t>(tokens.size()));
  return out;
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}

class Architectures : public ::testing::TestWithParam<Combination> {};

TEST_P(Architectures, KindsAndKvWidthsFollowTheConfig) {
  const auto& [name, j] = GetParam();
  const Expected e = expected_of(j);
  auto m = model_of(j, MlaAttention::AUTO);
  const ModelConfig& c = m->config();
  EXPECT_EQ(c.attention, e.mla ? AttentionKind::MLA : AttentionKind::GQA) << name;
  for (int64_t i = 0; i < c.n_layers; ++i)
    EXPECT_EQ(c.ffn_kind(i), e.moe_layers[static_cast<size_t>(i)] ? FfnKind::MOE : FfnKind::DENSE) << name << " " << i;

  const CpuKvCache cache = m->new_cache();
  if (e.mla) {
    EXPECT_EQ(cache.k_width(), 48 + 16) << name;  // kv_lora_rank + qk_rope_head_dim
    EXPECT_EQ(cache.v_width(), 0) << name;
  } else {
    EXPECT_EQ(cache.k_width(), e.kv_heads * e.head_dim) << name;
    EXPECT_EQ(cache.v_width(), e.kv_heads * e.head_dim) << name;
  }
  EXPECT_EQ(kv_per_token(c).elements, c.n_layers * (cache.k_width() + cache.v_width())) << name;
}

TEST_P(Architectures, TensorNamesMatchTheKinds) {
  const auto& [name, j] = GetParam();
  const Expected e = expected_of(j);
  const ModelConfig c = config_from_json(j, name);
  std::set<std::string> names;
  for (const auto& t : tensor_manifest(c, ExpertLayout::HUB)) names.insert(t.name);
  auto has = [&](int64_t layer, const std::string& suffix) {
    return names.count("model.layers." + std::to_string(layer) + "." + suffix) == 1;
  };
  for (int64_t i = 0; i < c.n_layers; ++i) {
    SCOPED_TRACE(name + " layer " + std::to_string(i));
    EXPECT_EQ(has(i, "self_attn.kv_a_proj_with_mqa.weight"), e.mla);
    EXPECT_EQ(has(i, "self_attn.kv_b_proj.weight"), e.mla);
    EXPECT_EQ(has(i, "self_attn.q_a_proj.weight"), e.mla && e.q_lora);
    EXPECT_EQ(has(i, "self_attn.q_proj.weight"), !(e.mla && e.q_lora));
    EXPECT_EQ(has(i, "self_attn.k_proj.weight"), !e.mla);
    EXPECT_EQ(has(i, "self_attn.v_proj.weight"), !e.mla);
    EXPECT_TRUE(has(i, "self_attn.o_proj.weight"));
    const bool moe = e.moe_layers[static_cast<size_t>(i)];
    EXPECT_EQ(has(i, "mlp.gate.weight"), moe);
    EXPECT_EQ(has(i, "mlp.experts.0.gate_proj.weight"), moe);
    EXPECT_EQ(has(i, "mlp.experts.15.down_proj.weight"), moe);
    EXPECT_EQ(has(i, "mlp.shared_experts.up_proj.weight"), moe && e.n_shared > 0);
    EXPECT_EQ(has(i, "mlp.gate_proj.weight"), !moe);
  }
  EXPECT_EQ(names.count("lm_head.weight"), j["tie_word_embeddings"].get<bool>() ? 0u : 1u) << name;
}

// The output head on chosen rows gives exactly the full head's numbers on those rows.
TEST_P(Architectures, LogitsOnChosenRowsEqualTheFullForward) {
  const auto& [name, j] = GetParam();
  auto m = model_of(j, MlaAttention::AUTO);
  const std::vector<int32_t> tokens = some_tokens(9);
  const std::vector<float> full = run(*m, tokens, 0);
  for (float v : full) ASSERT_TRUE(std::isfinite(v)) << name;
  ASSERT_GT(max_abs(full), 0.0) << name;

  const int64_t V = m->config().vocab_size;
  const std::vector<int64_t> rows = {0, 4, 8};
  std::vector<float> picked(rows.size() * static_cast<size_t>(V));
  CpuKvCache cache = m->new_cache();
  m->forward(tokens, cache, rows, picked.data(), false);
  EXPECT_EQ(cache.n_tokens(), 9);
  int64_t differing = 0;
  for (size_t r = 0; r < rows.size(); ++r)
    for (int64_t i = 0; i < V; ++i) differing += picked[r * V + i] != full[rows[r] * V + i];
  EXPECT_EQ(differing, 0) << name << ": logits that differ from the full forward's";

  // The last-row form is the same head on one row.
  std::vector<float> last(static_cast<size_t>(V));
  CpuKvCache cache2 = m->new_cache();
  m->forward(tokens, cache2, last.data(), true);
  EXPECT_EQ(0, std::memcmp(last.data(), full.data() + 8 * V, last.size() * sizeof(float))) << name;
}

// Decoding token by token through the cache (AUTO: MLA absorbed for each single-token step) gives one full
// forward's logits; and the two MLA forms agree when forced.
TEST_P(Architectures, DecodingThroughTheCacheEqualsOneForward) {
  const auto& [name, j] = GetParam();
  auto m = model_of(j, MlaAttention::AUTO);
  const std::vector<int32_t> tokens = some_tokens(9);
  const std::vector<float> full = run(*m, tokens, 0);
  const double scale = max_abs(full);
  for (size_t prefix : {size_t{1}, size_t{4}}) {
    const std::vector<float> inc = run(*m, tokens, prefix);
    const double d = test::max_abs_diff(inc.data(), full.data(), full.size());
    EXPECT_LE(d, 1e-4 * scale) << name << " prefix " << prefix;
    std::printf("[ decode   ] %-16s prefix %zu  max|diff| %.3e  max|logit| %.3f  relative %.2e\n", name.c_str(), prefix,
                d, scale, d / scale);
  }
  if (!m->config().is_mla()) return;
  auto dec = model_of(j, MlaAttention::DECOMPRESSED), abs = model_of(j, MlaAttention::ABSORBED);
  const std::vector<float> a = run(*dec, tokens, 3), b = run(*abs, tokens, 3);
  const double d = test::max_abs_diff(a.data(), b.data(), a.size());
  EXPECT_LE(d, 1e-4 * scale) << name << ": absorbed vs decompressed";
  std::printf("[ mla form ] %-16s absorbed vs decompressed max|diff| %.3e  relative %.2e\n", name.c_str(), d,
              d / scale);
}

TEST_P(Architectures, RowsMustBeAscendingIndicesIntoTheTokens) {
  const auto& [name, j] = GetParam();
  auto m = model_of(j, MlaAttention::AUTO);
  const std::vector<int32_t> tokens = some_tokens(3);
  std::vector<float> out(2 * static_cast<size_t>(m->config().vocab_size));
  CpuKvCache cache = m->new_cache();
  for (const std::vector<int64_t>& bad : {std::vector<int64_t>{0, 3}, {2, 1}, {-1}}) {
    test::expect_error_with([&] { m->forward(tokens, cache, bad, out.data(), false); }, {"rows"});
    EXPECT_EQ(cache.n_tokens(), 0) << name << ": a refused call must leave the cache alone";
  }
}

std::string combination_name(const ::testing::TestParamInfo<Combination>& info) { return info.param.first; }

INSTANTIATE_TEST_SUITE_P(Combinations, Architectures, ::testing::ValuesIn(test::architecture_combinations()),
                         combination_name);

// The list covers what it promises: six attention layouts, each dense and MoE, and the routing variants.
TEST(ArchitectureCombinations, CoverEveryAttentionLayoutTimesEveryFfnKind) {
  std::set<std::pair<std::string, bool>> pairs;
  std::set<std::string> routings, overrides;
  std::set<int64_t> shared;
  for (const auto& [name, j] : test::architecture_combinations()) {
    const ModelConfig c = config_from_json(j, name);
    std::string layout = summarize(c, name, nullptr).attention;  // MLA | MHA | GQA | MQA
    if (c.is_mla()) layout += c.q_lora_rank > 0 ? "+q_lora" : "";
    if (layout == "GQA") layout += std::to_string(c.n_heads / c.n_kv_heads);
    const bool moe = c.n_moe_layers() > 0;
    EXPECT_TRUE(pairs.insert({layout, moe}).second) << name << " repeats " << layout;
    if (moe) {
      routings.insert(to_string(c.topk_method));
      shared.insert(c.n_shared_experts);
    }
    if (j.contains("mlabench_attention")) overrides.insert(c.model_type + "+" + to_string(c.attention));
  }
  for (const char* layout : {"MLA+q_lora", "MLA", "MHA", "GQA2", "GQA3", "MQA"})
    for (bool moe : {false, true}) EXPECT_EQ(pairs.count({layout, moe}), 1u) << layout << (moe ? " moe" : " dense");
  EXPECT_EQ(pairs.size(), 12u);
  EXPECT_EQ(routings, (std::set<std::string>{"greedy", "group_limited_greedy"}));
  EXPECT_TRUE(shared.count(0) && shared.count(2)) << "MoE compositions with and without shared experts";
  EXPECT_EQ(overrides, (std::set<std::string>{"deepseek_v2+gqa", "llama+mla"}));
}

// The public API on a composition no checkpoint has: a Llama shape with DeepSeekMoE layers and GQA, from a
// config.json in a folder, with random weights.
TEST(ArchitectureCombinations, EngineOpensOneWithRandomWeights) {
  nlohmann::json j;
  for (const auto& [name, cfg] : test::architecture_combinations())
    if (name == "gqa2_moe") j = cfg;
  ASSERT_FALSE(j.is_null());
  test::TempDir dir;
  std::ofstream(dir.file("config.json")) << j.dump(2);
  auto e = Engine::open({.model_dir = dir.path(), .random_weights_seed = 11});
  ASSERT_TRUE(e.ok()) << e.error().what();
  EXPECT_EQ((*e)->summary().attention, "GQA");
  EXPECT_EQ(nlohmann::json::parse((*e)->summary().json)["ffn"]["kinds"]["moe"], 2);

  const std::vector<int32_t> tokens = some_tokens(5);
  auto logits = (*e)->logits(tokens);
  ASSERT_TRUE(logits.ok()) << logits.error().what();
  auto m = model_of(j, MlaAttention::AUTO);  // the same seed through the CPU model directly
  const std::vector<float> direct = run(*m, tokens, 0);
  ASSERT_EQ(logits->data.size(), direct.size());
  EXPECT_EQ(0, std::memcmp(logits->data.data(), direct.data(), direct.size() * sizeof(float)));
}

}  // namespace
}  // namespace mlabench
