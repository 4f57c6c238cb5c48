// config.json parsing: both DeepSeek-V2 styles give the same ModelConfig, presets parse, and every refusal names
// the field, the value and what is accepted.
#include <gtest/gtest.h>

#include "engine/core/check.h"
#include "engine/model/config.h"
#include "tests/test_util.h"

namespace mlabench {
namespace {

nlohmann::json preset(const std::string& name) { return test::read_json(test::preset_dir(name) + "/config.json"); }

void expect_refused(const nlohmann::json& j, std::initializer_list<std::string> parts) {
  test::expect_error_with([&] { config_from_json(j, "config.json in test"); }, parts, j.dump());
}

TEST(Config, DeepSeekV2Preset) {
  const ModelConfig c = config_from_json(preset("deepseek-v2"), "v2");
  EXPECT_TRUE(c.is_mla());
  EXPECT_EQ(c.n_layers, 60);
  EXPECT_EQ(c.q_lora_rank, 1536);
  EXPECT_EQ(c.qk_head_dim(), 192);
  EXPECT_EQ(c.topk_method, TopkMethod::GROUP_LIMITED_GREEDY);
  EXPECT_EQ(c.n_group, 8);
  EXPECT_EQ(c.topk_group, 3);
  EXPECT_EQ(c.routed_scaling_factor, 16.0);
  EXPECT_EQ(c.rope.type, RopeType::YARN);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 4096);
  EXPECT_EQ(c.rope.mscale_all_dim, 0.707);
  EXPECT_TRUE(c.rope.interleaved);
  EXPECT_EQ(c.rope.dim, 64);
  EXPECT_FALSE(c.is_moe_layer(0));
  EXPECT_TRUE(c.is_moe_layer(1));
  EXPECT_EQ(c.n_moe_layers(), 59);
  EXPECT_EQ(c.dtype, DType::BF16);
}

TEST(Config, LitePresetHasPlainQProjAndGreedyRouting) {
  const ModelConfig c = config_from_json(preset("deepseek-v2-lite"), "lite");
  EXPECT_EQ(c.q_lora_rank, 0);
  EXPECT_EQ(c.topk_method, TopkMethod::GREEDY);
  EXPECT_EQ(c.n_routed_experts, 64);
  EXPECT_EQ(c.n_moe_layers(), 26);
}

TEST(Config, LlamaPresets) {
  const ModelConfig l2 = config_from_json(preset("llama-2-7b"), "l2");
  EXPECT_EQ(l2.arch, Architecture::LLAMA);
  EXPECT_EQ(l2.n_kv_heads, 32);
  EXPECT_EQ(l2.head_dim, 128);
  EXPECT_FALSE(l2.rope.interleaved);
  EXPECT_EQ(l2.rms_norm_eps, 1e-5);
  EXPECT_EQ(l2.dtype, DType::F16);
  const ModelConfig l3 = config_from_json(preset("llama-3-8b"), "l3");
  EXPECT_EQ(l3.n_kv_heads, 8);
  EXPECT_EQ(l3.rope.theta, 500000.0);
  const ModelConfig d67 = config_from_json(preset("deepseek-67b"), "67b");
  EXPECT_EQ(d67.n_layers, 95);
  EXPECT_EQ(d67.n_kv_heads, 8);
}

// The same model in the hub style and as transformers 5 writes it (rope_parameters, dtype, head_dim).
TEST(Config, HubAndTransformers5StylesAgree) {
  nlohmann::json tf5 = test::read_json(test::fixture_dir("dsv2-tf5-saved") + "/config.json");
  ASSERT_TRUE(tf5.contains("rope_parameters")) << "fixture is no longer in the transformers-5 style";
  nlohmann::json hub = tf5;
  hub.erase("rope_parameters");
  hub.erase("dtype");
  hub.erase("head_dim");
  hub["torch_dtype"] = "bfloat16";
  hub["rope_theta"] = 10000;
  hub["rope_scaling"] = {{"type", "yarn"},         {"factor", 40},   {"original_max_position_embeddings", 16},
                         {"beta_fast", 32},        {"beta_slow", 1}, {"mscale", 0.707},
                         {"mscale_all_dim", 0.707}};
  const ModelConfig a = config_from_json(tf5, "tf5"), b = config_from_json(hub, "hub");
  EXPECT_EQ(a.rope.type, RopeType::YARN);
  EXPECT_EQ(a.rope.type, b.rope.type);
  EXPECT_EQ(a.rope.theta, b.rope.theta);
  EXPECT_EQ(a.rope.factor, b.rope.factor);
  EXPECT_EQ(a.rope.original_max_position_embeddings, b.rope.original_max_position_embeddings);
  EXPECT_EQ(a.rope.mscale, b.rope.mscale);
  EXPECT_EQ(a.rope.mscale_all_dim, b.rope.mscale_all_dim);
  EXPECT_EQ(a.dtype, b.dtype);
  EXPECT_EQ(a.n_group, b.n_group);
  EXPECT_EQ(a.qk_rope_head_dim, 8);

  // transformers-5 style with rope_type "default" is plain RoPE; llama3 through rope_parameters too.
  nlohmann::json plain = tf5;
  plain["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 5000.0}};
  EXPECT_EQ(config_from_json(plain, "p").rope.type, RopeType::DEFAULT);
  EXPECT_EQ(config_from_json(plain, "p").rope.theta, 5000.0);
  nlohmann::json l3 = preset("llama-3-8b");
  l3.erase("rope_scaling");
  l3["rope_parameters"] = {{"rope_type", "llama3"},   {"rope_theta", 500000.0},
                           {"factor", 8.0},           {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  const ModelConfig c3 = config_from_json(l3, "l3");
  EXPECT_EQ(c3.rope.type, RopeType::LLAMA3);
  EXPECT_EQ(c3.rope.original_max_position_embeddings, 8192);
}

TEST(Config, RefusesUnknownArchitectures) {
  nlohmann::json j = preset("deepseek-v2");
  j["model_type"] = "deepseek_v3";
  expect_refused(j, {"'model_type'", "deepseek_v3", "accepted values: deepseek_v2, llama"});
  j.erase("model_type");
  expect_refused(j, {"'model_type'", "(missing)"});
  j = preset("llama-2-7b");
  j["architectures"] = {"MistralForCausalLM"};
  expect_refused(j, {"'architectures'", "MistralForCausalLM", "LlamaForCausalLM"});
}

TEST(Config, RefusesUnsupportedValuesNamingFieldAndAcceptedValues) {
  nlohmann::json j = preset("deepseek-v2");
  j["topk_method"] = "noaux_tc";
  expect_refused(j, {"'topk_method'", "noaux_tc", "greedy, group_limited_greedy"});
  j = preset("deepseek-v2");
  j["scoring_func"] = "sigmoid";
  expect_refused(j, {"'scoring_func'", "sigmoid", "softmax"});
  j = preset("deepseek-v2");
  j["rope_scaling"]["type"] = "dynamic";
  expect_refused(j, {"dynamic", "yarn"});
  j = preset("llama-3-8b");
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  expect_refused(j, {"yarn", "llama3"});
  j = preset("llama-2-7b");
  j["hidden_act"] = "gelu";
  expect_refused(j, {"'hidden_act'", "gelu", "silu"});
  j = preset("llama-2-7b");
  j["attention_bias"] = true;
  expect_refused(j, {"'attention_bias'", "false"});
  j = preset("deepseek-v2");
  j["torch_dtype"] = "float8";
  expect_refused(j, {"'torch_dtype'", "float8", "bfloat16, float16, float32"});
}

TEST(Config, RefusesInconsistentConfigs) {
  nlohmann::json j = preset("deepseek-v2");
  j["n_group"] = 7;
  expect_refused(j, {"'n_group'", "7", "160"});
  j = preset("deepseek-v2");
  j["topk_group"] = 9;
  expect_refused(j, {"'topk_group'", "9"});
  j = preset("deepseek-v2");
  j["topk_group"] = 1;  // 6 experts from one group of 20 is fine; from groups of 4 it is not
  j["n_group"] = 40;
  expect_refused(j, {"'num_experts_per_tok'"});
  j = preset("deepseek-v2");
  j["num_key_value_heads"] = 8;
  expect_refused(j, {"'num_key_value_heads'", "MLA"});
  j = preset("deepseek-v2");
  j["qk_rope_head_dim"] = 63;
  expect_refused(j, {"'qk_rope_head_dim'", "even"});
  j = preset("llama-3-8b");
  j["num_key_value_heads"] = 7;
  expect_refused(j, {"'num_key_value_heads'", "7", "32"});
  j = preset("llama-2-7b");
  j["hidden_size"] = -4096;
  expect_refused(j, {"'hidden_size'", "positive"});
  j = preset("llama-2-7b");
  j["num_hidden_layers"] = "32";
  expect_refused(j, {"'num_hidden_layers'", "integer", "\"32\""});
  j = preset("deepseek-v2");
  j["rope_scaling"].erase("original_max_position_embeddings");
  expect_refused(j, {"'original_max_position_embeddings'", "missing"});
}

TEST(Config, MoeLayerFrequency) {
  nlohmann::json j = preset("deepseek-v2-lite");
  j["moe_layer_freq"] = 2;
  j["first_k_dense_replace"] = 1;
  const ModelConfig c = config_from_json(j, "freq");
  EXPECT_FALSE(c.is_moe_layer(0));
  EXPECT_FALSE(c.is_moe_layer(1));
  EXPECT_TRUE(c.is_moe_layer(2));
  EXPECT_FALSE(c.is_moe_layer(3));
  EXPECT_EQ(c.n_moe_layers(), 13);
  j["n_routed_experts"] = nullptr;  // a dense DeepSeek-V2-architecture model
  EXPECT_EQ(config_from_json(j, "dense").n_moe_layers(), 0);
}

TEST(Config, MissingOrBrokenFile) {
  test::TempDir dir;
  EXPECT_THROW(load_config(dir.path()), Error);
  { std::ofstream(dir.file("config.json")) << "{\"model_type\": \"llama\","; }
  test::expect_error_with([&] { load_config(dir.path()); }, {"not valid JSON"});
}

}  // namespace
}  // namespace mlabench
