// `mlabench info` arithmetic against engine.md §1 (parameter counts) and §3 (KV-cache bytes per token).
#include <gtest/gtest.h>

#include "engine/model/model_info.h"
#include "tests/test_util.h"

namespace mlabench {
namespace {

ModelSummary info(const std::string& preset) {
  const std::string dir = test::preset_dir(preset);
  return summarize(load_config(dir), dir, nullptr);
}

TEST(ModelInfo, KvCacheBytesPerTokenMatchThePaperTable) {
  EXPECT_EQ(info("deepseek-v2").kv_bytes_per_token_bf16, 69120);  // (512 + 64) x 60 x 2
  EXPECT_EQ(info("deepseek-v2").kv_bytes_per_token_fp8, 34560);
  EXPECT_EQ(info("deepseek-v2-lite").kv_bytes_per_token_bf16, 31104);  // (512 + 64) x 27 x 2
  EXPECT_EQ(info("deepseek-v2-lite").kv_bytes_per_token_fp8, 15552);
  EXPECT_EQ(info("deepseek-67b").kv_bytes_per_token_bf16, 389120);  // 2 x 8 x 128 x 95 x 2
  EXPECT_EQ(info("deepseek-67b").kv_bytes_per_token_fp8, 194560);
  EXPECT_EQ(info("llama-2-7b").kv_bytes_per_token_bf16, 524288);  // 2 x 32 x 128 x 32 x 2
  EXPECT_EQ(info("llama-3-8b").kv_bytes_per_token_bf16, 131072);  // 2 x 8 x 128 x 32 x 2
  // The paper's "93.3% less KV cache": 6-bit V2 cache vs BF16 67B.
  EXPECT_NEAR(1.0 - 34560.0 * 6 / 8 / 389120.0, 0.9334, 1e-4);
  const auto j = nlohmann::json::parse(info("deepseek-v2").json);
  EXPECT_EQ(j["kv_cache_per_token"]["decompressed_bytes_bf16"], 4915200);  // 60 x 128 x (192 + 128) x 2
  EXPECT_EQ(nlohmann::json::parse(info("deepseek-v2-lite").json)["kv_cache_per_token"]["decompressed_bytes_bf16"],
            276480);
}

TEST(ModelInfo, ParameterCountsMatchThePaper) {
  const ModelSummary v2 = info("deepseek-v2"), lite = info("deepseek-v2-lite");
  EXPECT_NEAR(v2.params_total / 1e9, 235.74, 0.005);  // paper: 236B total, 21B active
  EXPECT_NEAR(v2.params_active_per_token / 1e9, 20.85, 0.005);
  EXPECT_NEAR(lite.params_total / 1e9, 15.706, 0.0005);  // paper: 15.7B / 2.4B
  EXPECT_NEAR(lite.params_active_per_token / 1e9, 2.451, 0.0005);
  EXPECT_NEAR(info("llama-2-7b").params_total / 1e9, 6.738, 0.001);
  EXPECT_NEAR(info("llama-3-8b").params_total / 1e9, 8.030, 0.001);
  EXPECT_NEAR(info("deepseek-67b").params_total / 1e9, 67.4, 0.05);
  EXPECT_EQ(v2.attention, "MLA");
  EXPECT_EQ(info("llama-2-7b").attention, "MHA");
  EXPECT_EQ(info("llama-3-8b").attention, "GQA");
}

TEST(ModelInfo, JsonDocumentCarriesTheFields) {
  const auto j = nlohmann::json::parse(info("deepseek-v2").json);
  EXPECT_EQ(j["architecture"], "DeepseekV2ForCausalLM");
  EXPECT_EQ(j["layers"], 60);
  EXPECT_EQ(j["dtype"], "bfloat16");
  EXPECT_NEAR(j["rope"]["softmax_scale"].get<double>(), 0.114721, 1e-6);
  EXPECT_EQ(j["moe"]["topk_method"], "group_limited_greedy");
  EXPECT_TRUE(j["checkpoint"].is_null()) << "presets hold no weights";
  // A folder with weights describes them.
  const auto d = nlohmann::json::parse(summarize_model(test::default_model_dir()).value().json);
  EXPECT_EQ(d["checkpoint"]["files"], 1);
  EXPECT_EQ(d["checkpoint"]["dtypes"][0], "BF16");
}

TEST(ModelInfo, TiedEmbeddingsCountOnceAndStayActive) {
  ModelConfig c = load_config(test::fixture_dir("llama-gqa-llama3-tied"));
  const ParamCounts p = count_params(c);
  c.tie_word_embeddings = false;
  const ParamCounts u = count_params(c);
  EXPECT_EQ(u.total - p.total, p.embedding);
  EXPECT_EQ(p.active_per_token, p.total);
  EXPECT_EQ(u.active_per_token, u.total - u.embedding);
}

}  // namespace
}  // namespace mlabench
