// The CUDA kernels log_softmax_gather, sample and random_fill (engine/kernels/cuda/sampling.cu) against their
// twins (engine/kernels/twin/sampling.cpp) at the vocabularies that matter (DeepSeek's 102400, 2048) and odd
// ones, with row strides that break 16-byte alignment.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/twin/twin.h"
#include "tests/kernels/gpu_test_util.h"

namespace mlabench {
namespace {

using test::to_device;
using test::to_host;

// Logits like a language model's: a normal bulk, a few strong candidates, some exact ties, optionally -inf
// (masked) entries. Padding past vocab holds 1e30 so a kernel reading it would change every result.
std::vector<float> make_logits(std::mt19937& rng, int64_t rows, int64_t vocab, int64_t ld, bool masked) {
  std::normal_distribution<float> bulk(0.0f, 2.5f);
  std::vector<float> v(static_cast<size_t>(rows * ld), 1e30f);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = &v[r * ld];
    for (int64_t i = 0; i < vocab; ++i) row[i] = bulk(rng);
    for (int k = 0; k < 4 && vocab > 8; ++k) row[rng() % vocab] = 9.0f + static_cast<float>(k) * 0.7f;
    if (r % 3 == 1 && vocab > 2) row[rng() % vocab] = row[rng() % vocab] = 14.0f;  // a tie for the max
    if (masked && r % 4 == 2)
      for (int64_t i = 0; i < vocab; i += 3) row[i] = -INFINITY;
  }
  return v;
}

// ---- log_softmax_gather -----------------------------------------------------------------------------------

TEST(CudaSampling, LogSoftmaxGatherMatchesTwin) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(17);
  for (int64_t vocab : {102400, 2048, 1, 33, 4099}) {
    for (int64_t pad : {0, 3}) {  // pad 3: rows start off 16-byte boundaries (head and tail paths)
      for (int64_t rows : {1, 7, 40}) {
        const int64_t ld = vocab + pad;
        const auto logits = make_logits(rng, rows, vocab, ld, true);
        std::vector<int32_t> targets(rows);
        for (int64_t r = 0; r < rows; ++r) {
          const float* row = &logits[r * ld];
          targets[r] = static_cast<int32_t>(r % 2 ? std::max_element(row, row + vocab) - row : rng() % vocab);
        }
        if (rows > 5) targets[5] = static_cast<int32_t>(vocab);  // out of range: NaN, not greedy
        std::vector<double> lp(rows);
        std::vector<int32_t> greedy(rows);
        kernels::LogSoftmaxGatherParams p{.logits = logits.data(),
                                          .ld = ld,
                                          .n_rows = rows,
                                          .vocab = vocab,
                                          .targets = targets.data(),
                                          .logprob = lp.data(),
                                          .is_greedy = greedy.data()};
        kernels::twin::log_softmax_gather(p);
        auto d_logits = to_device(logits);
        auto d_targets = to_device(targets);
        gpu::DeviceBuffer d_lp(rows * sizeof(double)), d_greedy(rows * sizeof(int32_t));
        p.logits = d_logits.as<float>();
        p.targets = d_targets.as<int32_t>();
        p.logprob = d_lp.as<double>();
        p.is_greedy = d_greedy.as<int32_t>();
        kernels::cuda::log_softmax_gather(p, nullptr);
        const auto got_lp = to_host<double>(d_lp, rows);
        const auto got_greedy = to_host<int32_t>(d_greedy, rows);
        for (int64_t r = 0; r < rows; ++r) {
          // Both sum exp in double, in different orders: ~1e-15 relative; 1e-9 leaves room and still catches
          // a float32 sum (~1e-7) or a missed element. Relative to max(1, |ref|), as log-probs near 0 are
          // differences of larger terms.
          if (std::isnan(lp[r]) || std::isinf(lp[r])) {  // an all -inf row, a bad target; a -inf target logit
            EXPECT_TRUE(std::isnan(lp[r]) ? std::isnan(got_lp[r]) : got_lp[r] == lp[r])
                << "vocab " << vocab << " row " << r << ": " << got_lp[r] << " vs " << lp[r];
          } else {
            EXPECT_LE(std::fabs(got_lp[r] - lp[r]), 1e-9 * std::max(1.0, std::fabs(lp[r])))
                << "vocab " << vocab << " ld " << ld << " row " << r << ": " << got_lp[r] << " vs " << lp[r];
          }
          EXPECT_EQ(got_greedy[r], greedy[r]) << "vocab " << vocab << " ld " << ld << " row " << r;
        }
      }
    }
  }
}

// ---- sample -------------------------------------------------------------------------------------------------

// How far the twin's draw is from flipping, judged in double: the distance of u (as a fraction of the kept
// mass) from the cumulative mass before and after the chosen token, and of top_p from the cut's two sides.
// The kernel computes the same integer masses as the twin, so even near rows should agree; the comparison is
// required only away from them.
double draw_margin(const float* row, int64_t vocab, float temp, float top_p, double u, int32_t chosen) {
  const float mx = *std::max_element(row, row + vocab);
  std::vector<double> p(static_cast<size_t>(vocab));
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += (p[i] = std::exp((static_cast<double>(row[i]) - mx) / temp));
  double margin = 1.0;
  float cut = -INFINITY;
  if (top_p < 1.0f) {
    std::vector<int64_t> order(static_cast<size_t>(vocab));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return row[a] > row[b]; });
    double acc = 0;
    for (size_t j = 0; j < order.size();) {
      const float l = row[order[j]];
      const double before = acc;
      for (; j < order.size() && row[order[j]] == l; ++j) acc += p[order[j]] / sum;
      if (acc >= top_p || j == order.size()) {
        cut = l;
        margin = std::min(top_p - before, acc - top_p);
        break;
      }
    }
  }
  double kept = 0, upto = 0, before = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    if (row[i] < cut) continue;
    kept += p[i];
    if (i < chosen) before += p[i];
    if (i <= chosen) upto += p[i];
  }
  return std::min({margin, std::fabs(u - before / kept), std::fabs(upto / kept - u)});
}

struct SampleCase {
  int64_t vocab, pad, rows;
};

TEST(CudaSampling, SampleMatchesTwin) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(23);
  const float temps[] = {0.0f, 0.6f, 1.0f, 1.3f, 0.0f, 2.0f};
  const float top_ps[] = {1.0f, 0.9f, 0.5f, 0.05f, 1e-6f, 0.97f, 1.0f};
  int64_t compared = 0, near = 0, near_mismatch = 0;
  for (const SampleCase& c :
       {SampleCase{102400, 0, 48}, SampleCase{102400, 3, 13}, SampleCase{2048, 0, 64}, SampleCase{2048, 1, 21},
        SampleCase{5, 0, 9}, SampleCase{4099, 2, 30}, SampleCase{1, 0, 3}}) {
    const int64_t ld = c.vocab + c.pad;
    const auto logits = make_logits(rng, c.rows, c.vocab, ld, true);
    std::vector<float> temp(c.rows), top_p(c.rows);
    std::vector<uint64_t> seed(c.rows);
    std::vector<int64_t> step(c.rows);
    for (int64_t r = 0; r < c.rows; ++r) {
      temp[r] = temps[r % 6];
      top_p[r] = top_ps[r % 7];
      seed[r] = rng();
      step[r] = static_cast<int64_t>(rng() % 5000);
    }
    std::vector<int32_t> want(c.rows, -1);
    kernels::SampleParams p{.logits = logits.data(),
                            .ld = ld,
                            .n_rows = c.rows,
                            .vocab = c.vocab,
                            .temperature = temp.data(),
                            .top_p = top_p.data(),
                            .seed = seed.data(),
                            .step = step.data(),
                            .out = want.data()};
    kernels::twin::sample(p);
    auto d_logits = to_device(logits);
    auto d_temp = to_device(temp);
    auto d_top_p = to_device(top_p);
    auto d_seed = to_device(seed);
    auto d_step = to_device(step);
    gpu::DeviceBuffer d_out(c.rows * sizeof(int32_t));
    p.logits = d_logits.as<float>();
    p.temperature = d_temp.as<float>();
    p.top_p = d_top_p.as<float>();
    p.seed = d_seed.as<uint64_t>();
    p.step = d_step.as<int64_t>();
    p.out = d_out.as<int32_t>();
    kernels::cuda::sample(p, nullptr);
    const auto got = to_host<int32_t>(d_out, c.rows);
    kernels::cuda::sample(p, nullptr);
    EXPECT_EQ(to_host<int32_t>(d_out, c.rows), got) << "vocab " << c.vocab << ": a second run drew differently";
    for (int64_t r = 0; r < c.rows; ++r) {
      const float* row = &logits[r * ld];
      if (!(temp[r] > 0.0f)) {
        EXPECT_EQ(got[r], want[r]) << "greedy row " << r << " vocab " << c.vocab << " ld " << ld;
        ++compared;
        continue;
      }
      const double u = kernels::sampling_uniform(seed[r], step[r]);
      if (draw_margin(row, c.vocab, temp[r], top_p[r], u, want[r]) <= 1e-4) {
        ++near;
        near_mismatch += got[r] != want[r];
        continue;
      }
      ++compared;
      EXPECT_EQ(got[r], want[r]) << "row " << r << " vocab " << c.vocab << " ld " << ld << " T " << temp[r] << " top_p "
                                 << top_p[r];
    }
  }
  std::printf("[ sample   ] %lld rows compared exactly, %lld near a flip skipped (%lld of them differ)\n",
              static_cast<long long>(compared), static_cast<long long>(near), static_cast<long long>(near_mismatch));
  EXPECT_GT(compared, 100);
}

// ---- random_fill -------------------------------------------------------------------------------------------

TEST(CudaSampling, RandomFillBitIdenticalToTwin) {
  MLABENCH_REQUIRE_GPU();
  for (DType t : {DType::BF16, DType::F16, DType::F32}) {
    const size_t es = dtype_size(t);
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{4097 * 3 + 5}, int64_t{1000003}}) {
      for (size_t offset : {size_t{0}, es}) {  // es: the tensor starts off a 16-byte boundary (scalar path)
        for (bool ones : {false, true}) {
          const uint64_t key = 0x1234567890abcdefull ^ static_cast<uint64_t>(n);
          // Sentinel bytes around the tensor catch writes outside [0, n).
          std::vector<uint8_t> want(offset + n * es + 64, 0xab);
          kernels::RandomFillParams p{
              .out = want.data() + offset, .out_type = t, .n = n, .key = key, .fill_ones = ones};
          kernels::twin::random_fill(p);
          std::vector<uint8_t> init(want.size(), 0xab);
          auto d = to_device(init);
          p.out = d.as<uint8_t>() + offset;
          kernels::cuda::random_fill(p, nullptr);
          const auto got = to_host<uint8_t>(d, want.size());
          EXPECT_TRUE(got == want) << dtype_name(t) << " n " << n << " offset " << offset << " ones " << ones;
        }
      }
    }
  }
}

// A rank's block of a whole tensor (rows and columns of it, issue 22): the same bits as the twin's block.
TEST(CudaSampling, RandomFillOfABlockBitIdenticalToTwin) {
  MLABENCH_REQUIRE_GPU();
  struct Block {
    int64_t first, rows, cols, ld;
  };
  for (DType t : {DType::BF16, DType::F32})
    for (const Block b : {Block{0, 3, 5, 11}, Block{6, 64, 128, 384}, Block{1000 * 7168 + 512, 257, 96, 7168},
                          Block{5, 1, 1, 1}}) {
      const int64_t n = b.rows * b.cols;
      const size_t es = dtype_size(t);
      std::vector<uint8_t> want(n * es + 64, 0xab);
      kernels::RandomFillParams p{.out = want.data(), .out_type = t, .n = n, .key = 77, .first = b.first,
                                  .cols = b.cols, .ld = b.ld};
      kernels::twin::random_fill(p);
      auto d = to_device(std::vector<uint8_t>(want.size(), 0xab));
      p.out = d.get();
      kernels::cuda::random_fill(p, nullptr);
      EXPECT_TRUE(to_host<uint8_t>(d, want.size()) == want)
          << dtype_name(t) << " block first " << b.first << " " << b.rows << " x " << b.cols << " ld " << b.ld;
    }
}

}  // namespace
}  // namespace mlabench
