// `mlabench ablate` (harness/ablation.h, cli/cli_ablate.cpp): every attention x FFN variant of a shape builds and
// runs on the CPU engine, its KV cache as allocated equals the paper's formula, Table 1 for the paper's configs
// equals the paper's numbers, and the command writes the JSON the report reads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>

#include "core/check.h"
#include "engine/model/model_info.h"
#include "harness/ablation.h"
#include "mlabench/engine.h"
#include "tests/test_util.h"

namespace mlabench {
namespace {

const std::string kTiny = std::string(MLABENCH_TEST_DATA) + "/models/mlabench-tiny-dsv2";

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(f);
}

TEST(Ablation, ParsesMechanismsAndRefusesBadOnes) {
  const auto v = ablation::parse_attention_variants("mla,mha,gqa:8,mqa");
  ASSERT_EQ(v.size(), 4u);
  EXPECT_EQ(v[0].kind, AttentionKind::MLA);
  EXPECT_EQ(v[1].kind, AttentionKind::GQA);
  EXPECT_EQ(v[1].kv_heads, 0);  // MHA: as many KV heads as query heads, set from the config
  EXPECT_EQ(v[2].kv_heads, 8);
  EXPECT_EQ(v[3].kv_heads, 1);
  for (const char* bad : {"gqa", "gqa:", "gqa:0", "gqa:x", "mla,mla", "swa", ""})
    EXPECT_THROW(ablation::parse_attention_variants(bad), Error) << bad;
  EXPECT_EQ(ablation::parse_ffn_variants("moe,dense").size(), 2u);
  EXPECT_THROW(ablation::parse_ffn_variants("moe,moe"), Error);
  EXPECT_THROW(ablation::parse_ffn_variants("sparse"), Error);
}

// Each variant of the bundled model runs the CPU engine (random weights), and the cache the engine allocates per
// token is the Table 1 formula's elements in float32, the number `mlabench info` reports.
TEST(Ablation, EveryVariantRunsAndItsCacheMatchesTheFormula) {
  const nlohmann::json base = read_json(kTiny + "/config.json");
  struct Expect {
    const char* attention;
    const char* name;
    int64_t elements;  // per token over the 4 layers
  };
  // tiny: 6 heads, qk_nope 32 (d_h), kv_lora 48, rope 16, 4 layers
  const Expect expect[] = {{"mla", "MLA", (48 + 16) * 4}, {"mha", "MHA", 2 * 6 * 32 * 4},
                           {"gqa:2", "GQA", 2 * 2 * 32 * 4}, {"mqa", "MQA", 2 * 1 * 32 * 4}};
  for (const FfnKind ffn : {FfnKind::MOE, FfnKind::DENSE}) {
    for (const Expect& e : expect) {
      const auto att = ablation::parse_attention_variants(e.attention).at(0);
      const std::string label = ablation::variant_label(att, ffn);
      test::TempDir dir;
      const nlohmann::json vc = ablation::variant_config(base, att, ffn, "tiny");
      std::ofstream(dir.file("config.json")) << vc.dump();
      const ModelConfig c = load_config(dir.path());
      EXPECT_EQ(ablation::kv_elements_per_token(c), e.elements) << label;
      EXPECT_EQ(kv_per_token(c).elements, e.elements) << label;
      EXPECT_EQ(c.n_heads, 6) << label;
      EXPECT_EQ(c.hidden_size, 96) << label;
      EXPECT_EQ(c.n_layers, 4) << label;
      EXPECT_EQ(c.n_moe_layers(), ffn == FfnKind::MOE ? 3 : 0) << label;
      auto engine = Engine::open({.model_dir = dir.path(), .random_weights_seed = 7}).value();
      EXPECT_EQ(engine->summary().attention, e.name) << label;
      EXPECT_EQ(engine->kv_bytes_per_token(), static_cast<uint64_t>(e.elements) * sizeof(float)) << label;
      GenerateRequest req;
      req.prompt = {5, 17, 300, 42, 9};
      req.options.max_new_tokens = 3;
      const auto out = engine->generate_batch(std::span<const GenerateRequest>(&req, 1)).value();
      ASSERT_EQ(out.size(), 1u);
      EXPECT_EQ(out[0].tokens.size(), 3u) << label;
    }
  }
}

TEST(Ablation, VariantConfigsRefuseWhatTheShapeCannotBe) {
  const nlohmann::json tiny = read_json(kTiny + "/config.json");
  EXPECT_THROW(ablation::variant_config(tiny, ablation::parse_attention_variants("gqa:4")[0], FfnKind::MOE, "tiny"),
               Error);  // 4 KV heads do not divide 6
  const nlohmann::json llama = read_json(std::string(MLABENCH_CONFIGS_DIR) + "/llama-3-8b/config.json");
  const auto mla = ablation::parse_attention_variants("mla")[0];
  try {
    ablation::variant_config(llama, mla, FfnKind::MOE, "llama-3-8b");
    ADD_FAILURE() << "MoE of a dense base was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("n_routed_experts"), std::string::npos) << e.what();
  }
  // MLA of a Llama shape at the paper's ratios: d_c = 4 d_h, d_h^R = d_h / 2.
  const ModelConfig c = config_from_json(ablation::variant_config(llama, mla, FfnKind::DENSE, "llama-3-8b"), "v");
  EXPECT_TRUE(c.is_mla());
  EXPECT_EQ(c.kv_lora_rank, 512);
  EXPECT_EQ(c.qk_rope_head_dim, 64);
  EXPECT_EQ(ablation::kv_elements_per_token(c), (512 + 64) * 32);
}

const nlohmann::ordered_json* row_of(const nlohmann::ordered_json& table1, const std::string& model,
                                     const std::string& mechanism) {
  for (const auto& m : table1)
    if (m["model"] == model)
      for (const auto& r : m["rows"])
        if (r["mechanism"] == mechanism) return &r;
  return nullptr;
}

// Table 1 for the paper's configs: DeepSeek-V2's MLA is (512 + 64) x 60 = 34,560 = 4.5 d_h l; V2-Lite's shape gives
// Table 9's small-MoE counts (MHA 110.6K, MLA 15.6K); Figure 1(b)'s -93.3% from the configs at ~6 bits.
TEST(Ablation, Table1ForThePapersConfigsEqualsThePapersNumbers) {
  const auto doc = ablation::paper_kv_tables(MLABENCH_CONFIGS_DIR, {"deepseek-v2", "deepseek-v2-lite", "deepseek-67b"});
  const auto& t = doc["table1"];
  const auto* v2 = row_of(t, "deepseek-v2", "MLA");
  ASSERT_NE(v2, nullptr);
  EXPECT_EQ((*v2)["elements"].get<int64_t>(), 34560);
  EXPECT_EQ((*v2)["elements"].get<double>(), (*v2)["paper_elements"].get<double>());
  EXPECT_DOUBLE_EQ((*v2)["elements_over_dh_l"].get<double>(), 4.5);
  EXPECT_EQ((*row_of(t, "deepseek-v2", "MHA"))["elements"].get<int64_t>(), 2 * 128 * 128 * 60);
  EXPECT_EQ((*row_of(t, "deepseek-v2", "MQA"))["elements_over_dh_l"].get<double>(), 2.0);
  for (const char* mech : {"MLA", "MHA"}) {
    const auto* r = row_of(t, "deepseek-v2-lite", mech);
    ASSERT_NE(r, nullptr);
    // The paper prints thousands to one decimal.
    EXPECT_EQ(std::round((*r)["elements"].get<double>() / 100.0) * 100.0, (*r)["paper_elements"].get<double>()) << mech;
  }
  EXPECT_EQ((*row_of(t, "deepseek-67b", "GQA"))["elements"].get<int64_t>(), 194560);
  const auto& f = doc["figure1b_kv"];
  EXPECT_EQ(std::round(f["reduction_v2_6bit"].get<double>() * 1000.0) / 1000.0, 0.933);
  EXPECT_NEAR(f["reduction_v2_bf16"].get<double>(), 1.0 - 69120.0 / 389120.0, 1e-12);
}

// The command end to end on the CPU: two mechanisms x two FFN kinds of the bundled model, a batch sweep up to the
// largest batch a small cache holds; ablation.json has a row per variant with the measured numbers.
TEST(Ablation, CommandWritesARowPerVariant) {
  test::TempDir out;
  const std::string cmd = std::string(MLABENCH_BINARY) + " ablate --model " + kTiny +
                          " --attention mla,mha --ffn moe,dense --batch 1,max --prompt 16 --gen 3 --kv-cache-gib "
                          "0.0005 --context 64 --out " + out.path() + " > " + out.file("log") + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << test::read_file(out.file("log"));
  const nlohmann::json doc = read_json(out.file("ablation.json"));
  EXPECT_EQ(doc["tool"].get<std::string>(), "mlabench ablate");
  ASSERT_EQ(doc["rows"].size(), 4u);
  for (const auto& r : doc["rows"]) {
    const std::string label = r["label"];
    EXPECT_EQ(r["kv_bytes_per_token_allocated"].get<double>(), 4.0 * r["kv_elements_per_token"].get<double>()) << label;
    EXPECT_GT(r["max_generation_tokens_per_s"].get<double>(), 0.0) << label;
    EXPECT_GE(r["largest_batch"].get<int64_t>(), 1) << label;
    EXPECT_GT(r["prefill_tokens_per_s"].get<double>(), 0.0) << label;
    EXPECT_GE(r["decode_sweep"].size(), 2u) << label;
    EXPECT_GT(r["params_total"].get<int64_t>(), r["params_active_per_token"].get<int64_t>() / 2) << label;
  }
  // MHA caches 6 heads x 2 x 32 = 384 values a layer against MLA's 64: the ratio the table reports.
  EXPECT_DOUBLE_EQ(doc["rows"][1]["kv_bytes_vs_first"].get<double>(), 6.0);
  EXPECT_EQ(doc["figure1b"]["paper"]["max_throughput_ratio"].get<double>(), 5.76);
  EXPECT_TRUE(doc["paper_kv"].contains("table1"));
}

}  // namespace
}  // namespace mlabench
