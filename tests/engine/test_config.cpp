// config.json parsing: both DeepSeek-V2 styles give the same ModelConfig, presets parse, attention x FFN
// compositions through "mlabench_attention" and the DeepSeekMoE fields, and every refusal names the field, the
// value and what is accepted.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "engine/model/config.h"
#include "engine/model/rope.h"
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
  j["scoring_func"] = "sparsemax";
  expect_refused(j, {"'scoring_func'", "sparsemax", "softmax, sigmoid"});
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

// Values that used to load and then give all-NaN logits (exit 0) or overflow `info`'s counts are refused with the
// accepted range; the presets stay inside every range.
TEST(Config, RefusesValuesOutOfRangeNamingTheRange) {
  for (const auto& [field, value] :
       {std::pair<const char*, nlohmann::json>{"rope_theta", 0.0}, {"rope_theta", -10000.0}, {"rope_theta", 1.0},
        {"rms_norm_eps", -1e-6}, {"rms_norm_eps", 0.0}, {"rms_norm_eps", 2.0}}) {
    nlohmann::json j = preset("llama-3-8b");
    j[field] = value;
    expect_refused(j, {std::string("'") + field + "'", "accepted range"});
  }
  nlohmann::json j = preset("llama-3-8b");
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", -1.0}};
  expect_refused(j, {"rope_parameters", "'rope_theta'", "accepted range"});
  for (const char* field : {"hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size"}) {
    j = preset("deepseek-v2");
    j[field] = int64_t{1} << 62;
    expect_refused(j, {std::string("'") + field + "'", "accepted range 1 .. 16777216"});
  }
  for (const nlohmann::json& huge : {nlohmann::json(UINT64_MAX), nlohmann::json(1e30), nlohmann::json(-1e30)}) {
    j = preset("deepseek-v2");
    j["num_hidden_layers"] = huge;  // once wrapped to a wrong value in the message
    expect_refused(j, {"'num_hidden_layers'", "within 64-bit range"});
  }
  j = preset("deepseek-v2");
  j["num_hidden_layers"] = 1 << 20;
  j["moe_intermediate_size"] = 1 << 20;
  expect_refused(j, {"parameters", "2^50", "HINT"});
  j = preset("deepseek-v2");
  j["max_position_embeddings"] = int64_t{1} << 40;
  expect_refused(j, {"'max_position_embeddings'", "accepted range"});
  for (const char* name : {"deepseek-v2", "deepseek-v2-lite", "llama-2-7b", "llama-3-8b", "deepseek-67b"})
    EXPECT_NO_THROW(config_from_json(preset(name), name)) << name;
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
  expect_refused(j, {"'hidden_size'", "accepted range 1 .."});
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

// Every committed config parses to what it did before the attention kinds were registered by name (values
// printed by the previous parser): the kind, what RoPE rotates and how, and the softmax scale to the last bit.
TEST(Config, ExistingConfigsParseAsBefore) {
  struct Before {
    std::string dir;
    AttentionKind attention;
    int64_t n_kv_heads, head_dim, rope_dim;
    bool interleaved;
    RopeType rope_type;
    double softmax_scale;
  };
  const AttentionKind MLA = AttentionKind::MLA, GQA = AttentionKind::GQA;
  const RopeType DEF = RopeType::DEFAULT, YARN = RopeType::YARN, L3 = RopeType::LLAMA3;
  const std::vector<Before> before = {
      {test::preset_dir("deepseek-67b"), GQA, 8, 128, 128, false, DEF, 0.088388347648318433},
      {test::preset_dir("deepseek-v2"), MLA, 128, 0, 64, true, YARN, 0.11472138679292612},
      {test::preset_dir("deepseek-v2-lite"), MLA, 16, 0, 64, true, YARN, 0.11472138679292612},
      {test::preset_dir("llama-2-7b"), GQA, 32, 128, 128, false, DEF, 0.088388347648318433},
      {test::preset_dir("llama-3-8b"), GQA, 8, 128, 128, false, DEF, 0.088388347648318433},
      {test::fixture_dir("dsv2-fused-experts"), MLA, 4, 0, 8, true, YARN, 0.3244810821936116},
      {test::fixture_dir("dsv2-lite-greedy-yarn"), MLA, 4, 0, 8, true, YARN, 0.38249888831204121},
      {test::fixture_dir("dsv2-noyarn-allmoe-f16"), MLA, 4, 0, 8, true, DEF, 0.20412414523193154},
      {test::fixture_dir("dsv2-qlora-grouped-yarn"), MLA, 4, 0, 8, true, YARN, 0.3244810821936116},
      {test::fixture_dir("dsv2-tf5-saved"), MLA, 4, 0, 8, true, YARN, 0.3244810821936116},
      {test::fixture_dir("llama-gqa-llama3-tied"), GQA, 2, 16, 16, false, L3, 0.25},
      {test::fixture_dir("llama-mha"), GQA, 4, 16, 16, false, DEF, 0.25},
      {test::default_model_dir(), MLA, 6, 0, 16, true, YARN, 0.22944277358585224},
  };
  for (const Before& b : before) {
    const ModelConfig c = load_config(b.dir);
    EXPECT_EQ(c.attention, b.attention) << b.dir;
    EXPECT_EQ(c.n_kv_heads, b.n_kv_heads) << b.dir;
    EXPECT_EQ(c.head_dim, b.head_dim) << b.dir;
    EXPECT_EQ(c.rope.dim, b.rope_dim) << b.dir;
    EXPECT_EQ(c.rope.interleaved, b.interleaved) << b.dir;
    EXPECT_EQ(c.rope.type, b.rope_type) << b.dir;
    EXPECT_EQ(rope_tables(c).softmax_scale, b.softmax_scale) << b.dir;
    EXPECT_EQ(rope_tables(c).cos_sin_multiplier, 1.0f) << b.dir;
  }
  // And nothing was left out: every fixture folder is in the table.
  for (const auto& d : test::all_fixture_dirs())
    EXPECT_TRUE(std::any_of(before.begin(), before.end(), [&](const Before& b) { return b.dir == d; })) << d;
}

// A DeepSeek-V2 shape with GQA attention: GQA's fields are read, the MLA ones ignored; MoE and YaRN stay
// DeepSeek-V2's; RoPE turns to the whole head in half-split pairs, and the softmax scale to head_dim with YaRN's
// mscale^2.
TEST(Config, DeepSeekV2WithGqaAttention) {
  nlohmann::json j = test::read_json(test::default_model_dir() + "/config.json");
  j["mlabench_attention"] = "gqa";
  j["num_key_value_heads"] = 2;
  j["head_dim"] = 24;
  const ModelConfig c = config_from_json(j, "v2 gqa");
  EXPECT_EQ(c.arch, Architecture::DEEPSEEK_V2);
  EXPECT_EQ(c.attention, AttentionKind::GQA);
  EXPECT_FALSE(c.is_mla());
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 24);
  EXPECT_EQ(c.attention_qk_dim(), 24);
  EXPECT_EQ(c.rope.dim, 24);
  EXPECT_FALSE(c.rope.interleaved);
  EXPECT_EQ(c.rope.type, RopeType::YARN);
  EXPECT_EQ(c.n_routed_experts, 16);
  EXPECT_EQ(c.topk_method, TopkMethod::GROUP_LIMITED_GREEDY);
  EXPECT_EQ(c.n_moe_layers(), 3);
  const double m = yarn_get_mscale(40, 0.707);
  EXPECT_EQ(rope_tables(c).softmax_scale, 1.0 / std::sqrt(24.0) * (m * m));

  j.erase("head_dim");  // default hidden / heads = 96 / 6
  EXPECT_EQ(config_from_json(j, "v2 gqa").head_dim, 16);
  j.erase("num_key_value_heads");  // default: MHA
  EXPECT_EQ(config_from_json(j, "v2 gqa").n_kv_heads, 6);
}

// A Llama config with the DeepSeekMoE fields has MoE layers by the same rule (a Mixtral-like shape here);
// the real Llama configs have none of them and stay dense.
TEST(Config, LlamaWithMoeFields) {
  for (const char* name : {"llama-2-7b", "llama-3-8b", "deepseek-67b"}) {
    const ModelConfig c = config_from_json(preset(name), name);
    EXPECT_EQ(c.n_routed_experts, 0) << name;
    EXPECT_EQ(c.n_moe_layers(), 0) << name;
    EXPECT_EQ(c.ffn_kind(0), FfnKind::DENSE) << name;
  }
  nlohmann::json j = preset("llama-3-8b");
  j["n_routed_experts"] = 8;
  j["moe_intermediate_size"] = 14336;
  j["num_experts_per_tok"] = 2;
  j["norm_topk_prob"] = true;
  j["first_k_dense_replace"] = 2;
  j["moe_layer_freq"] = 3;
  j["scoring_func"] = "sigmoid";
  const ModelConfig c = config_from_json(j, "llama moe");
  EXPECT_EQ(c.attention, AttentionKind::GQA);
  EXPECT_EQ(c.n_routed_experts, 8);
  EXPECT_EQ(c.experts_per_token, 2);
  EXPECT_EQ(c.n_shared_experts, 0);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.scoring_func, ScoringFunc::SIGMOID);
  EXPECT_EQ(c.topk_method, TopkMethod::GREEDY);
  EXPECT_EQ(c.ffn_kind(0), FfnKind::DENSE);
  EXPECT_EQ(c.ffn_kind(1), FfnKind::DENSE);
  EXPECT_EQ(c.ffn_kind(2), FfnKind::DENSE);  // 2 % 3 != 0
  EXPECT_EQ(c.ffn_kind(3), FfnKind::MOE);
  EXPECT_EQ(c.ffn_kind(6), FfnKind::MOE);
  EXPECT_EQ(c.n_moe_layers(), 10);  // 3, 6, ..., 30
  EXPECT_EQ(c.rope.type, RopeType::DEFAULT);
  EXPECT_EQ(to_string(c.scoring_func), "sigmoid");

  nlohmann::json v2 = preset("deepseek-v2");  // sigmoid for DeepSeek-V2 too
  v2["scoring_func"] = "sigmoid";
  EXPECT_EQ(config_from_json(v2, "v2 sigmoid").scoring_func, ScoringFunc::SIGMOID);
  EXPECT_EQ(config_from_json(preset("deepseek-v2"), "v2").scoring_func, ScoringFunc::SOFTMAX);
}

// A Llama config with MLA: the MLA fields are read, RoPE rotates the rope dims in interleaved pairs, and the
// architecture's own scaling types still apply (llama3 here; yarn stays DeepSeek-V2's).
TEST(Config, LlamaWithMlaAttention) {
  nlohmann::json j = test::read_json(test::fixture_dir("llama-gqa-llama3-tied") + "/config.json");
  j["mlabench_attention"] = "mla";
  j["num_key_value_heads"] = j["num_attention_heads"];
  j["kv_lora_rank"] = 32;
  j["qk_nope_head_dim"] = 16;
  j["qk_rope_head_dim"] = 8;
  j["v_head_dim"] = 16;
  const ModelConfig c = config_from_json(j, "llama mla");
  EXPECT_EQ(c.arch, Architecture::LLAMA);
  EXPECT_TRUE(c.is_mla());
  EXPECT_EQ(c.q_lora_rank, 0);
  EXPECT_EQ(c.kv_lora_rank, 32);
  EXPECT_EQ(c.attention_qk_dim(), 24);
  EXPECT_EQ(c.rope.dim, 8);
  EXPECT_TRUE(c.rope.interleaved);
  EXPECT_EQ(c.rope.type, RopeType::LLAMA3);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(rope_tables(c).softmax_scale, 1.0 / std::sqrt(24.0));
  EXPECT_EQ(to_string(c.attention), "mla");

  nlohmann::json y = j;
  y["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 64}};
  expect_refused(y, {"yarn", "model_type llama", "default, llama3"});
  nlohmann::json g = j;  // MLA keeps one K/V head per query head
  g["num_key_value_heads"] = 2;
  expect_refused(g, {"'num_key_value_heads'", "MLA", "\"mlabench_attention\": \"gqa\""});
  nlohmann::json m = j;
  m.erase("kv_lora_rank");
  expect_refused(m, {"'kv_lora_rank'", "missing"});
}

TEST(Config, RefusesBadCompositions) {
  nlohmann::json j = preset("llama-2-7b");
  j["mlabench_attention"] = "mha";
  expect_refused(j, {"'mlabench_attention'", "\"mha\"", "accepted values: mla, gqa"});
  j["mlabench_attention"] = 1;
  expect_refused(j, {"'mlabench_attention'", "string"});

  j = test::read_json(test::default_model_dir() + "/config.json");  // 6 heads
  j["mlabench_attention"] = "gqa";
  j["num_key_value_heads"] = 4;
  expect_refused(j, {"'num_key_value_heads'", "(4)", "divide num_attention_heads (6)"});
  j["num_key_value_heads"] = 0;
  expect_refused(j, {"'num_key_value_heads'", "(0)"});
  j["num_key_value_heads"] = 3;
  j["head_dim"] = 15;
  expect_refused(j, {"'head_dim'", "even", "15"});

  j = preset("llama-3-8b");  // MoE layers need their widths and k
  j["n_routed_experts"] = 8;
  j["num_experts_per_tok"] = 2;
  expect_refused(j, {"'moe_intermediate_size'", "missing", "n_routed_experts (8)", "HINT"});
  j["moe_intermediate_size"] = 1024;
  j.erase("num_experts_per_tok");
  expect_refused(j, {"'num_experts_per_tok'", "missing"});
  j["num_experts_per_tok"] = 2;
  j["n_routed_experts"] = -1;
  expect_refused(j, {"'n_routed_experts'", "-1"});
  j["n_routed_experts"] = 8;
  j["topk_method"] = "noaux_tc";
  expect_refused(j, {"'topk_method'", "noaux_tc", "greedy, group_limited_greedy"});
  j["topk_method"] = "group_limited_greedy";
  j["n_group"] = 3;
  j["topk_group"] = 1;
  expect_refused(j, {"'n_group'", "(3)", "n_routed_experts (8)"});
}

TEST(Config, MissingOrBrokenFile) {
  test::TempDir dir;
  EXPECT_THROW(load_config(dir.path()), Error);
  { std::ofstream(dir.file("config.json")) << "{\"model_type\": \"llama\","; }
  test::expect_error_with([&] { load_config(dir.path()); }, {"not valid JSON"});
}

}  // namespace
}  // namespace mlabench
