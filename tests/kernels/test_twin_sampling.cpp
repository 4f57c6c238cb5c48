// The twins of log_softmax_gather, sample and random_fill (engine/kernels/twin/sampling.cpp) against the CPU
// engine: log_softmax_at / argmax of engine/sampling/sampler.h, the nucleus-truncated softmax in double (as an
// empirical distribution over many draws), and random_weights() bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <array>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "engine/kernels/twin/twin.h"
#include "engine/sampling/sampler.h"
#include "engine/weights/model_weights.h"
#include "tests/test_util.h"

namespace mlabench {
namespace {

std::vector<float> random_logits(std::mt19937& rng, int64_t rows, int64_t ld, float scale) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(rows * ld));
  for (auto& x : v) x = d(rng);
  return v;
}

// ---- log_softmax_gather -----------------------------------------------------------------------------------

TEST(TwinSampling, LogSoftmaxGatherMatchesCpuScoring) {
  std::mt19937 rng(11);
  for (int64_t vocab : {1, 2, 17, 1000, 4099}) {
    const int64_t rows = 7, ld = vocab + 5;
    std::vector<float> logits = random_logits(rng, rows, ld, 3.0f);
    // The padding past vocab must not be read: a huge value there would dominate max and sum.
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = vocab; i < ld; ++i) logits[r * ld + i] = 1e30f;
    std::vector<int32_t> targets(rows);
    for (int64_t r = 0; r < rows; ++r) targets[r] = static_cast<int32_t>(rng() % vocab);
    targets[0] = argmax(&logits[0], vocab);  // one greedy row
    if (vocab >= 17) {
      // A tie for the max: only the lower id is the greedy token.
      float* row = &logits[1 * ld];
      row[3] = row[9] = 50.0f;
      targets[1] = 9;
      logits[2 * ld + 5] = logits[2 * ld + 12] = 50.0f;
      targets[2] = 5;
    }
    std::vector<double> logprob(rows, 7.0);
    std::vector<int32_t> greedy(rows, 7);
    kernels::twin::log_softmax_gather({.logits = logits.data(),
                                       .ld = ld,
                                       .n_rows = rows,
                                       .vocab = vocab,
                                       .targets = targets.data(),
                                       .logprob = logprob.data(),
                                       .is_greedy = greedy.data()});
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = &logits[r * ld];
      // Same max, same summation order as the CPU engine's scorer: equal to the last bit.
      EXPECT_EQ(logprob[r], log_softmax_at(row, vocab, targets[r])) << "vocab " << vocab << " row " << r;
      EXPECT_EQ(greedy[r], argmax(row, vocab) == targets[r] ? 1 : 0) << "vocab " << vocab << " row " << r;
      EXPECT_LE(logprob[r], 0.0);
    }
    EXPECT_EQ(greedy[0], 1);
    if (vocab >= 17) {
      EXPECT_EQ(greedy[1], 0) << "a tie for the max belongs to the lowest id";
      EXPECT_EQ(greedy[2], 1);
      EXPECT_NEAR(logprob[2], std::log(0.5), 1e-9) << "two tied logits 50 above the rest share the mass";
    }
  }
}

TEST(TwinSampling, LogSoftmaxGatherOutOfRangeTargetIsNaN) {
  std::vector<float> logits = {1.0f, 2.0f, 3.0f, 1.0f, 2.0f, 3.0f};
  std::vector<int32_t> targets = {3, -1};
  std::vector<double> logprob(2, 0.0);
  std::vector<int32_t> greedy(2, 1);
  kernels::twin::log_softmax_gather({.logits = logits.data(),
                                     .ld = 3,
                                     .n_rows = 2,
                                     .vocab = 3,
                                     .targets = targets.data(),
                                     .logprob = logprob.data(),
                                     .is_greedy = greedy.data()});
  EXPECT_TRUE(std::isnan(logprob[0]) && std::isnan(logprob[1]));
  EXPECT_EQ(greedy[0], 0);
  EXPECT_EQ(greedy[1], 0);
}

// ---- sample -------------------------------------------------------------------------------------------------

struct SampleBatch {
  std::vector<float> logits, temperature, top_p;
  std::vector<uint64_t> seed;
  std::vector<int64_t> step;
  int64_t vocab = 0, ld = 0;

  std::vector<int32_t> run() const {
    std::vector<int32_t> out(temperature.size(), -1);
    kernels::twin::sample({.logits = logits.data(),
                           .ld = ld,
                           .n_rows = static_cast<int64_t>(temperature.size()),
                           .vocab = vocab,
                           .temperature = temperature.data(),
                           .top_p = top_p.data(),
                           .seed = seed.data(),
                           .step = step.data(),
                           .out = out.data()});
    return out;
  }
};

// n rows of one logit vector, drawn with seeds 0.. and steps 0.. interleaved so both feed the draw.
SampleBatch repeated_rows(const std::vector<float>& row, float temp, float top_p, int64_t n) {
  SampleBatch b;
  b.vocab = b.ld = static_cast<int64_t>(row.size());
  for (int64_t r = 0; r < n; ++r) {
    b.logits.insert(b.logits.end(), row.begin(), row.end());
    b.temperature.push_back(temp);
    b.top_p.push_back(top_p);
    b.seed.push_back(static_cast<uint64_t>(r / 4) * 0x9e3779b97f4a7c15ull + 12345);
    b.step.push_back(r % 4);
  }
  return b;
}

// softmax(row / temp) in double, cut to the smallest highest-probability set reaching top_p (ties at the cut
// kept), renormalised; 0 outside the set. Also the margin of the cut: how far the mass of the strictly higher
// tokens and the mass with the cut group lie from top_p (so a test can insist the cut is unambiguous).
std::vector<double> nucleus(const std::vector<float>& row, float temp, float top_p, double* margin) {
  const size_t n = row.size();
  const double mx = *std::max_element(row.begin(), row.end());
  std::vector<double> p(n);
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += (p[i] = std::exp((row[i] - mx) / temp));
  for (auto& x : p) x /= sum;
  *margin = 1.0;
  if (top_p >= 1.0f) return p;
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return row[a] > row[b]; });
  double acc = 0, cut_logit = -INFINITY;
  for (size_t j = 0; j < n;) {
    const float l = row[order[j]];
    const double before = acc;
    for (; j < n && row[order[j]] == l; ++j) acc += p[order[j]];
    if (acc >= top_p || j == n) {
      cut_logit = l;
      *margin = std::min(top_p - before, acc - top_p);
      break;
    }
  }
  double kept = 0;
  for (size_t i = 0; i < n; ++i) kept += row[i] >= cut_logit ? p[i] : 0.0;
  for (size_t i = 0; i < n; ++i) p[i] = row[i] >= cut_logit ? p[i] / kept : 0.0;
  return p;
}

// Pearson's statistic of the draws against `expect` over the tokens it allows; a draw of a token it gives
// probability 0 fails the test at once.
double chi_square(const std::vector<int32_t>& draws, const std::vector<double>& expect, int* dof) {
  std::vector<int64_t> count(expect.size(), 0);
  for (int32_t t : draws) {
    EXPECT_TRUE(t >= 0 && t < static_cast<int32_t>(expect.size())) << "token " << t;
    if (t >= 0 && t < static_cast<int32_t>(expect.size())) ++count[t];
  }
  double chi = 0;
  *dof = -1;
  const double n = static_cast<double>(draws.size());
  for (size_t i = 0; i < expect.size(); ++i) {
    if (expect[i] == 0.0) {
      EXPECT_EQ(count[i], 0) << "token " << i << " lies outside the nucleus but was drawn";
      continue;
    }
    const double e = expect[i] * n;
    chi += (count[i] - e) * (count[i] - e) / e;
    ++*dof;
  }
  return chi;
}

TEST(TwinSampling, ZeroTemperatureIsArgmaxWithTiesToLowestId) {
  std::mt19937 rng(3);
  SampleBatch b;
  b.vocab = 300;
  b.ld = 301;
  const int64_t rows = 6;
  b.logits = random_logits(rng, rows, b.ld, 2.0f);
  b.logits[1 * b.ld + 40] = b.logits[1 * b.ld + 7] = b.logits[1 * b.ld + 250] = 20.0f;  // tie: id 7 wins
  b.logits[2 * b.ld + 299] = 30.0f;                                                     // the last id
  b.logits[3 * b.ld + 300] = 99.0f;                                                     // padding, not vocab
  for (int64_t r = 0; r < rows; ++r) {
    b.temperature.push_back(r == 4 ? -1.0f : 0.0f);  // a negative temperature is greedy as well
    b.top_p.push_back(r == 5 ? 0.5f : 1.0f);
    b.seed.push_back(static_cast<uint64_t>(r));
    b.step.push_back(r);
  }
  const auto out = b.run();
  for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(out[r], argmax(&b.logits[r * b.ld], b.vocab)) << "row " << r;
  EXPECT_EQ(out[1], 7);
  EXPECT_EQ(out[2], 299);
}

const std::vector<float> kRow = {0.3f, 2.0f, -1.0f, 1.6f, 1.0f, 2.4f, 0.2f, 1.3f, -3.0f, 0.9f, -0.5f, 1.9f};

// A top_p halfway between the mass of the k most probable tokens of kRow and that of the k + 1 most probable:
// the cut keeps k + 1 tokens, far from ambiguous, and a cut one token off moves thousands of draws.
float top_p_keeping(float temp, size_t k) {
  std::vector<double> p(kRow.size());
  for (size_t i = 0; i < kRow.size(); ++i) p[i] = std::exp(kRow[i] / temp);
  std::sort(p.rbegin(), p.rend());
  const double sum = std::accumulate(p.begin(), p.end(), 0.0);
  const double below = std::accumulate(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(k), 0.0) / sum;
  return static_cast<float>(below + 0.5 * p[k] / sum);
}

TEST(TwinSampling, TemperatureAndTopPMatchTheTruncatedSoftmax) {
  for (float temp : {0.8f, 1.0f, 1.7f}) {
    for (size_t keep : {1, 3, 6, 12}) {
      const float top_p = keep == kRow.size() ? 1.0f : top_p_keeping(temp, keep - 1);
      double margin = 0;
      const std::vector<double> expect = nucleus(kRow, temp, top_p, &margin);
      ASSERT_GT(margin, 0.01) << "test logits too close to a cut at top_p " << top_p << " T " << temp;
      const auto draws = repeated_rows(kRow, temp, top_p, 60000).run();
      int dof = 0;
      const double chi = chi_square(draws, expect, &dof);
      // About 5 standard deviations of chi-square(dof) above its mean; a wrong cut or temperature gives
      // hundreds to thousands.
      EXPECT_LT(chi, dof + 5.0 * std::sqrt(2.0 * dof) + 5.0) << "top_p " << top_p << " T " << temp << " dof " << dof;
      EXPECT_EQ(dof + 1, static_cast<int>(keep)) << "top_p " << top_p << " T " << temp;
    }
  }
}

TEST(TwinSampling, TiesAtTheCutAreAllKept) {
  // Three tokens share the top logit; top_p 0.05 reaches the cut inside that group, so all three are kept,
  // with equal shares, and nothing else is drawn.
  std::vector<float> row = {1.0f, 3.0f, 0.5f, 3.0f, 2.9f, 3.0f, -1.0f};
  const auto draws = repeated_rows(row, 1.0f, 0.05f, 30000).run();
  std::vector<double> expect(row.size(), 0.0);
  expect[1] = expect[3] = expect[5] = 1.0 / 3.0;
  int dof = 0;
  EXPECT_LT(chi_square(draws, expect, &dof), 2 + 5.0 * 2.0 + 5.0);
  EXPECT_EQ(dof, 2);
}

TEST(TwinSampling, DrawDependsOnlyOnSeedAndStep) {
  std::mt19937 rng(5);
  SampleBatch b;
  b.vocab = b.ld = 1000;
  const int64_t rows = 9;
  b.logits = random_logits(rng, rows, b.ld, 1.5f);
  for (int64_t r = 0; r < rows; ++r) {
    b.temperature.push_back(0.5f + 0.2f * static_cast<float>(r));
    b.top_p.push_back(r % 3 == 0 ? 1.0f : 0.6f + 0.1f * static_cast<float>(r % 3));
    b.seed.push_back(1000 + static_cast<uint64_t>(r));
    b.step.push_back(r * 7);
  }
  const auto out = b.run();
  // The same rows in reverse order, one batch: each row draws the same token.
  SampleBatch rev = b;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t s = rows - 1 - r;
    std::copy_n(&b.logits[s * b.ld], b.ld, &rev.logits[r * b.ld]);
    rev.temperature[r] = b.temperature[s];
    rev.top_p[r] = b.top_p[s];
    rev.seed[r] = b.seed[s];
    rev.step[r] = b.step[s];
  }
  const auto out_rev = rev.run();
  for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(out_rev[rows - 1 - r], out[r]) << "row " << r;
  // Another step changes the draws (with 1000 tokens at these temperatures, not all nine can repeat).
  SampleBatch later = b;
  for (auto& s : later.step) s += 1;
  EXPECT_NE(later.run(), out);
}

// ---- random_fill -------------------------------------------------------------------------------------------

// The generator random_weights() used before it called the twin, written out again: the refactor must not
// change a bit.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::vector<uint8_t> original_fill(uint64_t seed, const std::string& name, int64_t n, DType t, bool norm) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : name) h = (h ^ ch) * 0x100000001b3ull;
  const uint64_t key = mix(seed ^ h);
  const double half_width = std::sqrt(3.0) * 0.02;
  std::vector<uint8_t> out(static_cast<size_t>(n) * dtype_size(t));
  for (int64_t i = 0; i < n; ++i) {
    float x = 1.0f;
    if (!norm) x = static_cast<float>((2.0 * (static_cast<double>(mix(key + i) >> 11) * 0x1.0p-53) - 1.0) * half_width);
    if (t == DType::F32) {
      std::memcpy(&out[i * 4], &x, 4);
    } else {
      const uint16_t b = t == DType::BF16 ? f32_to_bf16(x) : f32_to_f16(x);
      std::memcpy(&out[i * 2], &b, 2);
    }
  }
  return out;
}

std::vector<uint8_t> twin_fill(uint64_t seed, const std::string& name, int64_t n, DType t, bool norm) {
  std::vector<uint8_t> out(static_cast<size_t>(n) * dtype_size(t) + 8, 0xab);
  kernels::twin::random_fill(
      {.out = out.data(), .out_type = t, .n = n, .key = random_weights_key(seed, name), .fill_ones = norm});
  EXPECT_EQ(out.back(), 0xab) << "random_fill wrote past n";
  out.resize(out.size() - 8);
  return out;
}

std::vector<uint8_t> bytes_of(const TensorView& v) {
  const auto* p = static_cast<const uint8_t*>(v.data);
  return std::vector<uint8_t>(p, p + v.nbytes());
}

TEST(TwinSampling, RandomFillIsTheRandomWeightsGenerator) {
  ModelConfig c = load_config(test::default_model_dir());
  ASSERT_TRUE(c.is_mla() && c.n_routed_experts > 0);
  const uint64_t seed = 42;
  for (DType t : {DType::BF16, DType::F16, DType::F32}) {
    c.dtype = t;
    const ModelWeights w = random_weights(c, seed);
    const int64_t l_last = static_cast<int64_t>(w.layers.size()) - 1;
    int64_t l_moe = 0;
    while (!c.is_moe_layer(l_moe)) ++l_moe;
    const std::string kv = "model.layers.0.self_attn.kv_a_proj_with_mqa.weight";
    const std::string o = "model.layers." + std::to_string(l_last) + ".self_attn.o_proj.weight";
    const std::string ex = "model.layers." + std::to_string(l_moe) + ".mlp.experts.3.down_proj.weight";
    const std::vector<std::pair<std::string, const TensorView*>> cases = {{"model.embed_tokens.weight", &w.embed},
                                                                          {kv, &w.layers[0].kv_a_proj},
                                                                          {o, &w.layers[l_last].o_proj},
                                                                          {ex, &w.layers[l_moe].experts[3].down}};
    for (const auto& [name, view] : cases) {
      ASSERT_EQ(view->dtype, t) << name;
      const auto got = bytes_of(*view);
      EXPECT_EQ(got, twin_fill(seed, name, view->numel(), t, false)) << name << " " << dtype_name(t);
      EXPECT_EQ(got, original_fill(seed, name, view->numel(), t, false)) << name << " " << dtype_name(t);
    }
    EXPECT_NE(bytes_of(w.embed), twin_fill(seed + 1, "model.embed_tokens.weight", w.embed.numel(), t, false));
    // Norms: ones, whatever the key.
    EXPECT_EQ(w.final_norm, std::vector<float>(static_cast<size_t>(c.hidden_size), 1.0f));
    const auto ones = twin_fill(seed, "model.norm.weight", c.hidden_size, t, true);
    EXPECT_EQ(ones, original_fill(seed, "model.norm.weight", c.hidden_size, t, true));
  }
}

TEST(TwinSampling, RandomFillOddSizesAllTypes) {
  for (DType t : {DType::BF16, DType::F16, DType::F32})
    for (int64_t n : {1, 7, 1001}) {
      const auto got = twin_fill(9, "x", n, t, false);
      EXPECT_EQ(got, original_fill(9, "x", n, t, false)) << dtype_name(t) << " n " << n;
      // Uniform on +-sqrt(3) * 0.02: inside the bound and not constant.
      std::vector<float> v(static_cast<size_t>(n));
      convert_to_f32(t, got.data(), v.data(), v.size());
      for (float x : v) EXPECT_LE(std::fabs(x), std::sqrt(3.0f) * 0.02f * 1.01f);
      if (n > 1) {
        EXPECT_NE(v.front(), v.back());
      }
    }
}

// A block of a whole tensor (a rank's rows and columns, issue 22) holds exactly the whole tensor's elements there:
// contiguous rows by `first` alone, a column range by first + cols + ld; a bad block is refused.
TEST(TwinSampling, RandomFillOfABlockIsThatBlockOfTheWholeTensor) {
  const int64_t R = 37, C = 53;
  for (DType t : {DType::BF16, DType::F32}) {
    const size_t es = dtype_size(t);
    const auto whole = twin_fill(3, "w", R * C, t, false);
    for (const auto& [r0, r1, c0, c1] : std::vector<std::array<int64_t, 4>>{
             {0, R, 0, C}, {5, 19, 0, C}, {0, R, 10, 11}, {7, 30, 20, 53}, {36, 37, 0, 1}}) {
      const int64_t rows = r1 - r0, cols = c1 - c0;
      std::vector<uint8_t> block(static_cast<size_t>(rows * cols) * es + 8, 0xab);
      kernels::RandomFillParams p{.out = block.data(), .out_type = t, .n = rows * cols,
                                  .key = random_weights_key(3, "w"), .first = r0 * C + c0};
      if (cols != C) p.cols = cols, p.ld = C;
      kernels::twin::random_fill(p);
      EXPECT_EQ(block.back(), 0xab) << "random_fill wrote past its block";
      for (int64_t r = 0; r < rows; ++r)
        ASSERT_EQ(0, std::memcmp(block.data() + r * cols * es, whole.data() + ((r0 + r) * C + c0) * es, cols * es))
            << dtype_name(t) << " rows " << r0 << "-" << r1 << " columns " << c0 << "-" << c1 << " row " << r;
    }
  }
  std::vector<float> out(4);
  const auto refused = [&](int64_t first, int64_t cols, int64_t ld) {
    try {
      kernels::twin::random_fill(
          {.out = out.data(), .out_type = DType::F32, .n = 4, .key = 1, .first = first, .cols = cols, .ld = ld});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(refused(0, 4, 3).find("ld >= cols"), std::string::npos);
  EXPECT_NE(refused(-1, 0, 0).find("first -1"), std::string::npos);
  EXPECT_EQ(refused(0, 2, 2), "");
}

}  // namespace
}  // namespace mlabench
