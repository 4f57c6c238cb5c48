// RoPE tables against transformers' own numbers for the real DeepSeek-V2 config (tests/data/rope, written by
// tools/make_fixtures.py), against engine.md's worked values, and the llama3 frequency rule.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/model/rope.h"
#include "tests/test_util.h"

namespace mlabench {
namespace {

ModelConfig preset(const std::string& name) { return load_config(test::preset_dir(name)); }

TEST(Rope, YarnTableMatchesTransformersForDeepSeekV2) {
  const nlohmann::json ref = test::read_json(test::data_dir() + "/rope/yarn_deepseek_v2.json");
  const RopeTables t = rope_tables(preset("deepseek-v2"));
  const auto inv = ref["inv_freq_float32"].get<std::vector<double>>();
  ASSERT_EQ(t.inv_freq.size(), inv.size());
  for (size_t i = 0; i < inv.size(); ++i)
    EXPECT_NEAR(t.inv_freq[i], inv[i], 2.5e-7 * inv[i]) << "pair " << i << ": more than 2 float32 ulp off";
  EXPECT_DOUBLE_EQ(t.cos_sin_multiplier, ref["cos_sin_multiplier"].get<double>());
  EXPECT_NEAR(t.softmax_scale, ref["softmax_scale"].get<double>(), 1e-12);

  // cos/sin at positions 0, 1, 4095, 4096 (the original length), 30000 and 163839 (the end of the table).
  const auto positions = ref["positions"].get<std::vector<int64_t>>();
  std::vector<float> c(32), s(32);
  for (size_t p = 0; p < positions.size(); ++p) {
    rope_cos_sin(t, positions[p], c.data(), s.data());
    for (size_t i = 0; i < 32; ++i) {
      // The angle is a float32 product in both; an inv_freq ulp apart moves it by up to pos * ulp.
      const double tol = 1e-6 + static_cast<double>(positions[p]) * std::fabs(t.inv_freq[i] - inv[i]) * 1.01;
      EXPECT_NEAR(c[i], ref["cos"][p][i].get<double>(), tol) << "pos " << positions[p] << " pair " << i;
      EXPECT_NEAR(s[i], ref["sin"][p][i].get<double>(), tol) << "pos " << positions[p] << " pair " << i;
    }
  }
}

TEST(Rope, EngineMdWorkedValues) {
  const RopeTables t = rope_tables(preset("deepseek-v2"));
  EXPECT_FLOAT_EQ(t.inv_freq[0], 1.0f);
  EXPECT_NEAR(t.inv_freq[1], 0.7499, 1e-4);
  EXPECT_NEAR(t.inv_freq[10], 0.05623, 1e-5);   // last pair at the original frequency
  EXPECT_NEAR(t.inv_freq[23], 3.334e-5, 1e-8);  // first pair divided by 40
  EXPECT_NEAR(t.inv_freq[31], 3.334e-6, 1e-9);
  EXPECT_NEAR(t.inv_freq[11], std::pow(10000.0, -22.0 / 64) * (1 - 1.0 / 13 + 1.0 / 13 / 40), 1e-7);  // ramp
  EXPECT_NEAR(t.softmax_scale, 0.114721, 1e-6);  // 192^-0.5 * (0.1 * 0.707 * ln 40 + 1)^2
  EXPECT_EQ(t.cos_sin_multiplier, 1.0f);         // mscale == mscale_all_dim
  EXPECT_TRUE(t.interleaved);
  EXPECT_NEAR(yarn_get_mscale(40, 0.707), 1.26080, 1e-5);
  EXPECT_EQ(yarn_get_mscale(1, 0.707), 1.0);

  ModelConfig v3 = preset("deepseek-v2");  // V2.5/V3 use mscale = mscale_all_dim = 1.0
  v3.rope.mscale = v3.rope.mscale_all_dim = 1.0;
  EXPECT_NEAR(rope_tables(v3).softmax_scale, 0.135234, 1e-6);
  ModelConfig odd = preset("deepseek-v2");  // mscale != mscale_all_dim: cos/sin carry the ratio
  odd.rope.mscale = 1.0;
  EXPECT_NEAR(rope_tables(odd).cos_sin_multiplier, yarn_get_mscale(40, 1.0) / yarn_get_mscale(40, 0.707), 1e-6);
  ModelConfig plain = preset("deepseek-v2");
  plain.rope.type = RopeType::DEFAULT;
  EXPECT_NEAR(rope_tables(plain).softmax_scale, 1 / std::sqrt(192.0), 1e-12) << "no YaRN, no mscale";
  EXPECT_NEAR(rope_tables(plain).inv_freq[31], std::pow(10000.0, -62.0 / 64), 1e-10);
}

TEST(Rope, Llama3FrequencyRule) {
  ModelConfig c = preset("llama-3-8b");
  c.rope.type = RopeType::LLAMA3;  // Llama-3.1's scaling on Llama-3's shapes
  c.rope.factor = 8;
  c.rope.low_freq_factor = 1;
  c.rope.high_freq_factor = 4;
  c.rope.original_max_position_embeddings = 8192;
  const RopeTables t = rope_tables(c);
  for (int64_t i = 0; i < 64; ++i) {
    const double f = std::pow(500000.0, -2.0 * i / 128), wavelen = 2 * M_PI / f;
    double want = f;
    if (wavelen > 8192) {
      want = f / 8;
    } else if (wavelen >= 2048) {
      const double smooth = (8192 / wavelen - 1) / (4 - 1);
      want = (1 - smooth) * f / 8 + smooth * f;
    }
    EXPECT_NEAR(t.inv_freq[i], want, 1e-6 * want) << i;  // a few float32 roundings
  }
  EXPECT_EQ(t.cos_sin_multiplier, 1.0f);
  EXPECT_NEAR(t.softmax_scale, 1 / std::sqrt(128.0), 1e-12);
  EXPECT_FALSE(t.interleaved);
}

}  // namespace
}  // namespace mlabench
