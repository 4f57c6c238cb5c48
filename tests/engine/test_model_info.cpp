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
  // --kv-cache-dtype fp8 as held: FlashMLA's 656 B a layer (512 codes + 4 scales x 4 B + 64 RoPE values x 2 B) for
  // MLA, 2 x heads x (128 codes + a 4-byte scale) for GQA.
  EXPECT_EQ(info("deepseek-v2").kv_bytes_per_token_fp8_scaled, 656 * 60);
  EXPECT_EQ(info("deepseek-v2-lite").kv_bytes_per_token_fp8_scaled, 656 * 27);
  EXPECT_EQ(info("llama-3-8b").kv_bytes_per_token_fp8_scaled, 2 * 8 * (128 + 4) * 32);
  // --weights-dtype fp8: DeepSeek 67B's weights take 69.1 GB (one byte a parameter but the BF16 embedding and head,
  // plus the block scales), so they fit one 141 GB H200 with room for a cache.
  EXPECT_GT(info("deepseek-67b").weight_bytes_fp8, 67425001472);
  EXPECT_LT(info("deepseek-67b").weight_bytes_fp8, 70000000000);
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

ModelSummary info_of(const nlohmann::json& j) { return summarize(config_from_json(j, "composition"), "-", nullptr); }

// Compositions no checkpoint has, against hand arithmetic: KV bytes follow the attention kind, parameters the
// tensors of both kinds.
TEST(ModelInfo, CompositionsKvBytesPerToken) {
  nlohmann::json v2 = test::read_json(test::preset_dir("deepseek-v2") + "/config.json");
  v2["mlabench_attention"] = "gqa";
  v2["num_key_value_heads"] = 8;
  v2["head_dim"] = 128;
  const ModelSummary gqa = info_of(v2);
  EXPECT_EQ(gqa.attention, "GQA");
  EXPECT_EQ(gqa.kv_bytes_per_token_bf16, 245760);  // 2 x 8 x 128 x 60 x 2
  v2["num_key_value_heads"] = 1;
  const ModelSummary mqa = info_of(v2);
  EXPECT_EQ(mqa.attention, "MQA");
  EXPECT_EQ(mqa.kv_bytes_per_token_bf16, 30720);  // 2 x 1 x 128 x 60 x 2
  EXPECT_EQ(mqa.kv_bytes_per_token_fp8, 15360);
  v2["num_key_value_heads"] = 128;
  EXPECT_EQ(info_of(v2).attention, "MHA");
  EXPECT_EQ(info_of(v2).kv_bytes_per_token_bf16, 3932160);  // 2 x 128 x 128 x 60 x 2

  nlohmann::json l3 = test::read_json(test::preset_dir("llama-3-8b") + "/config.json");
  l3["mlabench_attention"] = "mla";  // V2-Lite's MLA on Llama-3-8B
  l3["num_key_value_heads"] = 32;
  l3["kv_lora_rank"] = 512;
  l3["qk_nope_head_dim"] = 128;
  l3["qk_rope_head_dim"] = 64;
  l3["v_head_dim"] = 128;
  const ModelSummary mla = info_of(l3);
  EXPECT_EQ(mla.attention, "MLA");
  EXPECT_EQ(mla.kv_bytes_per_token_bf16, 36864);  // (512 + 64) x 32 x 2
  const auto j = nlohmann::json::parse(mla.json);
  EXPECT_EQ(j["kv_cache_per_token"]["decompressed_bytes_bf16"], 655360);  // 32 x 32 x (192 + 128) x 2
  EXPECT_EQ(j["ffn"]["kinds"]["dense"], 32);
  EXPECT_EQ(j["ffn"]["kinds"]["moe"], 0);
}

TEST(ModelInfo, CompositionsParameterCounts) {
  // Llama-3-8B with V2-Lite's MLA: per layer q_proj 32*192*4096 + kv_a 576*4096 + kv_a_norm 512 +
  // kv_b 32*256*512 + o_proj 4096*4096 = 48,497,152; MLP 3*4096*14336 = 176,160,768; norms 2*4096.
  // 32 layers + embedding and lm_head 2*128256*4096 + final norm 4096.
  nlohmann::json l3 = test::read_json(test::preset_dir("llama-3-8b") + "/config.json");
  l3["mlabench_attention"] = "mla";
  l3["num_key_value_heads"] = 32;
  l3["kv_lora_rank"] = 512;
  l3["qk_nope_head_dim"] = 128;
  l3["qk_rope_head_dim"] = 64;
  l3["v_head_dim"] = 128;
  EXPECT_EQ(info_of(l3).params_total, 8239992832);
  EXPECT_EQ(info_of(l3).params_active_per_token, 8239992832 - 525336576);  // less the input embedding

  // Mixtral-8x7B's shape as a Llama config with DeepSeekMoE fields (8 experts of 14336, top-2, every layer MoE):
  // per layer attention 2*4096*4096 + 2*1024*4096 = 41,943,040, router 8*4096, experts 8*3*4096*14336,
  // norms 2*4096; 32 layers + 2*32000*4096 + 4096 = 46,702,792,704 (Mixtral's published 46.7B). Active: less
  // the embedding 32000*4096 and 32*6 idle experts of 3*4096*14336 = 12,748,853,248.
  nlohmann::json mixtral = test::read_json(test::preset_dir("llama-3-8b") + "/config.json");
  mixtral["vocab_size"] = 32000;
  mixtral["n_routed_experts"] = 8;
  mixtral["moe_intermediate_size"] = 14336;
  mixtral["num_experts_per_tok"] = 2;
  const ModelSummary m = info_of(mixtral);
  EXPECT_EQ(m.params_total, 46702792704);
  EXPECT_EQ(m.params_active_per_token, 12748853248);
  EXPECT_EQ(m.kv_bytes_per_token_bf16, 131072);  // unchanged by the FFN: 2 x 8 x 128 x 32 x 2
  EXPECT_EQ(nlohmann::json::parse(m.json)["ffn"]["kinds"]["moe"], 32);
  EXPECT_FALSE(nlohmann::json::parse(m.json)["ffn"].contains("dense_intermediate_size"));

  // DeepSeek-V2-Lite with GQA (4 KV heads of 128): per layer q 2048*2048 + k, v 2*512*2048 + o 2048*2048 =
  // 10,485,760 instead of MLA's 13,763,072, over 27 layers: 15,706,484,224 - 27*3,277,312 = 15,617,996,800.
  nlohmann::json lite = test::read_json(test::preset_dir("deepseek-v2-lite") + "/config.json");
  EXPECT_EQ(info_of(lite).params_total, 15706484224);
  lite["mlabench_attention"] = "gqa";
  lite["num_key_value_heads"] = 4;
  lite["head_dim"] = 128;
  const ModelSummary g = info_of(lite);
  EXPECT_EQ(g.params_total, 15617996800);
  EXPECT_EQ(g.params_active_per_token, 2362947584);  // less 102400*2048 and 26*58 idle experts of 3*2048*1408
  EXPECT_EQ(g.kv_bytes_per_token_bf16, 55296);       // 2 x 4 x 128 x 27 x 2
  const auto j = nlohmann::json::parse(g.json);
  EXPECT_EQ(j["ffn"]["kinds"]["dense"], 1);
  EXPECT_EQ(j["ffn"]["kinds"]["moe"], 26);
  EXPECT_EQ(j["ffn"]["dense_intermediate_size"], 10944);
  EXPECT_EQ(j["gqa"]["kv_heads"], 4);
  EXPECT_FALSE(j.contains("mla"));
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
