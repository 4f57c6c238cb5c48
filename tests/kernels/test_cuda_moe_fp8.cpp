// The FP8 grouped expert GEMM (engine/kernels/cuda/moe_gemm_fp8.cu, through moe_grouped_gemm) against its twin
// (engine/kernels/twin/moe_gemm.cpp) and against a double-precision dequantised product dq(x) . dq(w)^T: V2-Lite's
// shapes (k = 2048 of 16 groups, k = 1408 of 11 groups, n = 1408) and tails (k = 272: a short last group; n = 200:
// a column tile past n, and SWIGLU's up rows crossing a 128-row scale block), empty experts, an expert over
// several row tiles, a slack max_rows, padded ld_x / ld_y / expert stride / scale grids (the padding poisoned with
// NaN so a wrong scale read shows), a single expert without offsets, in all three epilogues (STORE, SWIGLU,
// STORE_DT). Outputs outside the experts' rows and past n are poisoned and must stay so. The same cases through the
// QGMMA kernel (moe_grouped_gemm_hopper's FP8 path) at 64- and 128-row tiles. Then the launcher's refusals.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "engine/core/dtype.h"
#include "engine/core/fp8.h"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/cuda/moe_gemm_fp8.h"
#include "engine/kernels/twin/twin.h"
#include "tests/kernels/fp8_test_util.h"
#include "tests/kernels/gpu_test_util.h"

namespace mlabench {
namespace {

using kernels::MoeGemmEpilogue;
using test::to_device;
using test::to_host;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr uint16_t kBf16Poison = 0x7FC1;  // a BF16 NaN

using test::Fp8Experts;
using test::groups_of;
using test::quantized_experts;

// Activations [rows, k] quantised per 1 x 128 group as fp8_quantize_rows does (s = fp8_block_scale(amax),
// code = e4m3(x / s)), each group's values drawn at its own magnitude (2^-4 .. 2^4) so the scales matter.
// Codes at ld, scales [rows, scale_ld]; padding codes are NaN (0x7f), padding scales NaN.
struct Fp8Rows {
  std::vector<uint8_t> codes;
  std::vector<float> scale;
};

Fp8Rows quantized_rows(int64_t rows, int64_t k, int64_t ld, int64_t scale_ld, std::mt19937& rng) {
  std::normal_distribution<float> nd;
  std::uniform_int_distribution<int> mag(-4, 4);
  Fp8Rows q{std::vector<uint8_t>(static_cast<size_t>(rows * ld), 0x7f),
            std::vector<float>(static_cast<size_t>(rows * scale_ld), kNaN)};
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c0 = 0, g = 0; c0 < k; c0 += kFp8Block, ++g) {
      const int64_t c1 = std::min(k, c0 + kFp8Block);
      const float m = std::ldexp(1.0f, mag(rng));
      std::vector<float> v(static_cast<size_t>(c1 - c0));
      float amax = 0.0f;
      for (float& x : v) amax = std::max(amax, std::fabs(x = m * nd(rng)));
      const float s = fp8_block_scale(amax);
      q.scale[static_cast<size_t>(r * scale_ld + g)] = s;
      for (int64_t c = c0; c < c1; ++c) q.codes[static_cast<size_t>(r * ld + c)] = f32_to_e4m3(v[c - c0] / s);
    }
  return q;
}

struct Fp8Case {
  const char* name;
  std::vector<int32_t> counts;  // rows per expert
  int64_t n, k;
  MoeGemmEpilogue epi;
  int64_t ld_x_pad = 0, ld_out_pad = 0, stride_pad = 0, max_rows_extra = 0;
  bool no_offsets = false;  // one expert of max_rows rows, offsets null (the shared experts' call)
};

using E = MoeGemmEpilogue;
const Fp8Case kCases[] = {
    {"v2lite_gate_up_store", {5, 0, 70, 1, 0, 17}, 1408, 2048, E::STORE},
    {"v2lite_down_store", {3, 130, 0, 9}, 2048, 1408, E::STORE, 16, 3, 32, 7},
    {"short_group_n_tail", {0, 65, 2, 0, 31}, 200, 272, E::STORE, 0, 1, 0, 0},
    {"v2lite_swiglu", {4, 0, 67, 12}, 1408, 2048, E::SWIGLU, 0, 2, 0, 0},
    {"swiglu_tails", {0, 65, 2, 0, 31}, 200, 272, E::SWIGLU, 16, 1, 16, 3},
    {"v2lite_down_store_dt", {3, 130, 0, 9}, 2048, 1408, E::STORE_DT, 0, 2, 0, 0},
    {"store_dt_tails", {17, 0, 66}, 200, 272, E::STORE_DT, 0, 1, 0, 0},
    {"one_expert_no_offsets", {40}, 256, 512, E::SWIGLU, 0, 0, 0, 0, true},
    // Tails the QGMMA kernel takes too (even output rows for its paired stores; SWIGLU n % 64 == 0 with up rows
    // starting mid-block: n = 192).
    {"store_tails_even_ld", {0, 65, 2, 0, 31}, 200, 272, E::STORE, 0, 2, 0, 0},
    {"store_dt_tails_even_ld", {17, 0, 66}, 200, 272, E::STORE_DT, 16, 2, 0, 3},
    {"swiglu_n192", {3, 70, 0, 12}, 192, 384, E::SWIGLU, 0, 0, 0, 0},
};

// The product in double from the dequantised operands: out[r, j] for the stacked weight rows j < w_rows. Weight
// rows, then an expert's rows, are independent: the threads share them, each with its own dequantised x row.
std::vector<double> dequantised_product(const Fp8Rows& x, int64_t ld_x, int64_t x_scale_ld, const Fp8Experts& w,
                                        const std::vector<int32_t>& offsets, int64_t w_rows, int64_t k) {
  const auto n_experts = static_cast<int32_t>(offsets.size() - 1);
  std::vector<double> out(static_cast<size_t>(offsets.back() * w_rows));
  std::vector<double> we(static_cast<size_t>(w_rows * k));
  for (int32_t e = 0; e < n_experts; ++e) {
    if (offsets[e] == offsets[e + 1]) continue;
#pragma omp parallel
    {
#pragma omp for schedule(static)
      for (int64_t j = 0; j < w_rows; ++j)
        for (int64_t c = 0; c < k; ++c)
          we[static_cast<size_t>(j * k + c)] =
              double{e4m3_to_f32(w.codes[static_cast<size_t>(e * w.stride + j * k + c)])} *
              w.scale[static_cast<size_t>(e * w.scale_stride + (j / 128) * w.scale_ld + c / 128)];
      std::vector<double> xr(static_cast<size_t>(k));
#pragma omp for schedule(static)
      for (int64_t r = offsets[e]; r < offsets[e + 1]; ++r) {
        for (int64_t c = 0; c < k; ++c)
          xr[static_cast<size_t>(c)] = double{e4m3_to_f32(x.codes[static_cast<size_t>(r * ld_x + c)])} *
                                       x.scale[static_cast<size_t>(r * x_scale_ld + c / 128)];
        for (int64_t j = 0; j < w_rows; ++j) {
          const double* wj = &we[static_cast<size_t>(j * k)];
          double acc = 0;
          for (int64_t c = 0; c < k; ++c) acc += xr[static_cast<size_t>(c)] * wj[c];
          out[static_cast<size_t>(r * w_rows + j)] = acc;
        }
      }
    }
  }
  return out;
}

// BF16 outputs: within a rounding of the value they stand for, (half an ulp <= 2^-8 relative) plus `abs`; poisoned
// where `want` is poisoned, written elsewhere.
void expect_bf16_near(const std::vector<uint16_t>& got, const std::vector<uint16_t>& poison_map,
                      const std::vector<double>& want, double rel, double abs, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const bool untouched = poison_map[i] == kBf16Poison;
    ASSERT_EQ(got[i] == kBf16Poison, untouched) << what << ": element " << i << (untouched ? " written" : " not written");
    if (!untouched) {
      ASSERT_LE(std::fabs(double{bf16_to_f32(got[i])} - want[i]), rel * std::fabs(want[i]) + abs)
          << what << ": element " << i << " is " << bf16_to_f32(got[i]) << ", want " << want[i];
    }
  }
}

double silu_times(double g, double u) { return g / (1.0 + std::exp(-g)) * u; }

// Which kernel a case runs: the mma.sync FP8 kernel (fp8_exact_sums, float32 group sums) or the QGMMA one
// (moe_grouped_gemm_hopper's FP8 path) at 64- or 128-row tiles.
struct Fp8Kernel {
  const char* name;
  bool qgmma;
  int32_t tile_rows;
};

// QGMMA keeps about 14 bits of a group's running sum (DeepSeek-V3, section 3.3.2): its outputs may differ from
// float32 group sums by a few 1e-4 of a group's magnitude. This bound (of the outputs' max |y|) sits far below an
// e4m3 rounding (2^-4) and above what a 14-bit sum of 128 products can lose; a wrong scale or a dropped group moves
// outputs by a whole group's share (>= 1/16 at k <= 2048).
constexpr double kQgmmaBound = 4e-3;

// One case through one kernel against the twin and the dequantised product; the worst |error| / max |y| against
// the product goes into worst. False where the kernel does not take the case's shape (the QGMMA kernel: padded
// expert strides, SWIGLU with n % 64 != 0, a device other than sm_90a).
bool run_fp8_case(const Fp8Case& c, const Fp8Kernel& kern, std::mt19937& rng, double& worst) {
  const auto n_experts = static_cast<int32_t>(c.counts.size());
  std::vector<int32_t> offsets(static_cast<size_t>(n_experts) + 1, 0);
  for (int32_t e = 0; e < n_experts; ++e) offsets[e + 1] = offsets[e] + c.counts[e];
  const int64_t R = offsets.back(), ld_x = c.k + c.ld_x_pad, ld_out = c.n + c.ld_out_pad;
  const int64_t x_scale_ld = groups_of(c.k) + 1;  // one padding scale a row, NaN
  const bool swiglu = c.epi == E::SWIGLU, to_act = c.epi != E::STORE;
  const int64_t w_rows = swiglu ? 2 * c.n : c.n;
  const Fp8Rows x = quantized_rows(R + 1, c.k, ld_x, x_scale_ld, rng);  // + a row of NaN no expert owns
  const Fp8Experts w = quantized_experts(n_experts, w_rows, c.k, c.stride_pad, rng);
  std::vector<float> y(static_cast<size_t>((R + 2) * ld_out), kNaN);
  std::vector<uint16_t> act(y.size(), kBf16Poison);
  kernels::MoeGroupedGemmParams p{
      .y = to_act ? nullptr : y.data(), .ld_y = ld_out, .x = x.codes.data(), .ld_x = ld_x, .w = w.codes.data(),
      .expert_stride = w.stride, .dtype = DType::F8_E4M3, .offsets = c.no_offsets ? nullptr : offsets.data(),
      .n_experts = n_experts, .n = c.n, .k = c.k,
      .max_rows = *std::max_element(c.counts.begin(), c.counts.end()) + c.max_rows_extra, .epilogue = c.epi,
      .act = to_act ? act.data() : nullptr, .ld_act = ld_out, .x_scale = x.scale.data(), .x_scale_ld = x_scale_ld,
      .w_scale = w.scale.data(), .w_scale_ld = w.scale_ld, .w_scale_expert_stride = w.scale_stride};
  kernels::twin::moe_grouped_gemm(p);

  auto d_x = to_device(x.codes), d_xs = to_device(x.scale), d_w = to_device(w.codes), d_ws = to_device(w.scale);
  auto d_off = to_device(offsets), d_y = to_device(std::vector<float>(y.size(), kNaN));
  auto d_act = to_device(std::vector<uint16_t>(act.size(), kBf16Poison));
  kernels::MoeGroupedGemmParams dp = p;
  dp.y = to_act ? nullptr : d_y.as<float>();
  dp.act = to_act ? d_act.get() : nullptr;
  dp.x = d_x.get();
  dp.w = d_w.get();
  dp.x_scale = d_xs.as<float>();
  dp.w_scale = d_ws.as<float>();
  dp.offsets = c.no_offsets ? nullptr : d_off.as<int32_t>();
  if (kern.qgmma) {
    dp.fp8_exact_sums = false;
    dp.rows_bound = R + 1;  // the NaN row too: a tile's rows past its expert's must not leak into the outputs
    dp.tile_rows = kern.tile_rows;
    if (!kernels::cuda::moe_grouped_gemm_hopper_supported(dp)) return false;
  }
  kernels::cuda::moe_grouped_gemm(dp, nullptr);
  MLABENCH_CUDA(cudaDeviceSynchronize());

  const std::vector<double> ref = dequantised_product(x, ld_x, x_scale_ld, w, offsets, w_rows, c.k);
  double ref_max = 1e-30;  // the outputs' scale
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < c.n; ++j) {
      const double g = ref[static_cast<size_t>(r * w_rows + j)];
      ref_max = std::max(ref_max, std::fabs(swiglu ? silu_times(g, ref[static_cast<size_t>(r * w_rows + c.n + j)])
                                                   : g));
    }
  // e4m3 products are exact in float32: with float32 group sums the kernel and the twin differ only in summation
  // order (and an FMA in the fold), both within float32 rounding of the exact product; QGMMA within kQgmmaBound.
  const double bound = kern.qgmma ? kQgmmaBound : 1e-5;
  if (!to_act) {
    const std::vector<float> got = to_host<float>(d_y, y.size());
    EXPECT_LE(test::max_rel_diff(got, y), bound) << "kernel vs twin";
    for (size_t i = 0; i < got.size(); ++i) {
      const int64_t r = static_cast<int64_t>(i) / ld_out, j = static_cast<int64_t>(i) % ld_out;
      if (r >= R || j >= c.n) {
        EXPECT_TRUE(std::isnan(got[i])) << "row " << r << " col " << j << " written";
        if (!std::isnan(got[i])) return true;
        continue;
      }
      const double err = std::fabs(got[i] - ref[static_cast<size_t>(r * w_rows + j)]);
      worst = std::max(worst, err / ref_max);
      EXPECT_LE(err, bound * ref_max) << "row " << r << " col " << j << " vs the dequantised product";
      if (err > bound * ref_max) return true;
    }
    return true;
  }
  // BF16 outputs: the kernel's float32 value and the twin's differ by `bound` of the scale, so their roundings lie
  // within an ulp (2^-7 relative) plus that of each other; against the exact value, half an ulp (2^-8) plus that.
  const std::vector<uint16_t> got = to_host<uint16_t>(d_act, act.size());
  std::vector<double> twin_value(act.size()), exact(act.size(), 0.0);
  for (size_t i = 0; i < act.size(); ++i) {
    twin_value[i] = bf16_to_f32(act[i]);
    const int64_t r = static_cast<int64_t>(i) / ld_out, j = static_cast<int64_t>(i) % ld_out;
    if (r < R && j < c.n) {
      const double g = ref[static_cast<size_t>(r * w_rows + j)];
      exact[i] = swiglu ? silu_times(g, ref[static_cast<size_t>(r * w_rows + c.n + j)]) : g;
      if (got[i] != kBf16Poison)
        worst = std::max(worst, std::fabs(double{bf16_to_f32(got[i])} - exact[i]) / ref_max);
    }
  }
  expect_bf16_near(got, act, twin_value, 0x1p-7, bound * ref_max, "kernel vs twin");
  expect_bf16_near(got, act, exact, 0x1p-8, bound * ref_max, "kernel vs the dequantised product");
  return true;
}

TEST(CudaMoeFp8, GroupedGemmMatchesTwinAndDequantisedProduct) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(2020);
  const Fp8Kernel mma{"mma.sync", false, 0};
  for (const Fp8Case& c : kCases) {
    SCOPED_TRACE(c.name);
    double worst = 0;
    ASSERT_TRUE(run_fp8_case(c, mma, rng, worst));
  }
}

// The QGMMA kernel (fp8_exact_sums false) on every case it takes, at both tile heights; on an sm_90a device it must
// take the V2-Lite shapes and the single expert. Prints its worst error against the dequantised product per case.
TEST(CudaMoeFp8, QgmmaGroupedGemmMatchesTwinAndDequantisedProduct) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(2021);
  int ran = 0;
  for (const Fp8Kernel& kern : {Fp8Kernel{"qgmma128", true, 128}, Fp8Kernel{"qgmma64", true, 64}})
    for (const Fp8Case& c : kCases) {
      SCOPED_TRACE(fmt::format("{} {}", kern.name, c.name));
      double worst = 0;
      if (!run_fp8_case(c, kern, rng, worst)) {
        fmt::print("[ qgmma ] {:<8} {:<24} not taken (shape or device)\n", kern.name, c.name);
        continue;
      }
      ++ran;
      fmt::print("[ qgmma ] {:<8} {:<24} max |err| / max |y| vs the dequantised product = {:.2e}\n", kern.name,
                 c.name, worst);
    }
  if (ran == 0) GTEST_SKIP() << "SKIPPED: no sm_90a device (the QGMMA kernel runs on H100/H200 only)";
  EXPECT_GE(ran, 14) << "the QGMMA kernel must take the V2-Lite shapes, the tails and the single expert at both tiles";
}

// moe_decode_ffn with FP8 weights (one token's experts in two launches, x and act quantised inside) against its
// twin, the FP8 layer's arithmetic (TwinMoeDecodeFfn.Fp8IsTheFp8LayerArithmeticAtOneToken): V2-Lite's shapes, a small
// one and one without shared experts. act (NaN-poisoned first) within one BF16 rounding of the twin's (the kernel
// scales each 16-value chunk's sum where the twin scales a 128-value group's: float32 rounding apart); out then
// differs where such an ulp moves an act group's amax or an e4m3 rounding: bounded and printed. Twice: same bits.
// The act codes and scales the gate/up kernel's last CTA of each group writes are fp8_quantize_rows of the kernel's
// own act bit for bit (the twin of the quantiser on the GPU's act), and every arrival counter is back at zero.
TEST(CudaMoeFp8, DecodeFfnMatchesTwin) {
  MLABENCH_REQUIRE_GPU();
  struct Case {
    const char* name;
    int64_t H, I, SI;
    int32_t E, K;
  };
  const Case kDecodeCases[] = {{"V2-Lite", 2048, 1408, 2816, 8, 6}, {"small", 256, 128, 256, 5, 3},
                               {"no shared", 384, 256, 0, 4, 2}};
  std::mt19937 rng(41);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const Case& c : kDecodeCases) {
    SCOPED_TRACE(c.name);
    std::vector<uint16_t> x(static_cast<size_t>(c.H));
    for (auto& v : x) v = f32_to_bf16(nd(rng));
    const Fp8Experts gate_up = quantized_experts(c.E, 2 * c.I, c.H, 0, rng), down = quantized_experts(c.E, c.H, c.I, 0, rng);
    const int64_t si = std::max<int64_t>(c.SI, 128);  // allocated either way; unused without shared experts
    const Fp8Experts shared_gate_up = quantized_experts(1, 2 * si, c.H, 0, rng), shared_down = quantized_experts(1, c.H, si, 0, rng);
    std::vector<int32_t> idx(static_cast<size_t>(c.E));
    std::iota(idx.begin(), idx.end(), 0);
    std::shuffle(idx.begin(), idx.end(), rng);
    idx.resize(static_cast<size_t>(c.K));
    std::vector<float> weight(static_cast<size_t>(c.K));
    std::uniform_real_distribution<float> uw(0.05f, 1.0f);
    for (float& v : weight) v = uw(rng);
    const int64_t U = c.SI + c.K * c.I;
    std::vector<uint16_t> act(static_cast<size_t>(U));
    std::vector<float> out(static_cast<size_t>(c.H));
    std::vector<uint8_t> act_q(static_cast<size_t>(U));
    std::vector<float> act_scale(static_cast<size_t>(U / 128));
    std::vector<uint32_t> arrivals(static_cast<size_t>(U / 128), 0u);
    const bool sh = c.SI > 0;
    kernels::MoeDecodeFfnParams p{
        .x = x.data(), .topk_idx = idx.data(), .topk_weight = weight.data(), .experts_gate_up = gate_up.codes.data(),
        .experts_down = down.codes.data(), .shared_gate_up = sh ? shared_gate_up.codes.data() : nullptr,
        .shared_down = sh ? shared_down.codes.data() : nullptr, .hidden = c.H, .inter = c.I, .shared_inter = c.SI,
        .n_experts = c.E, .top_k = c.K, .act = act.data(), .out = out.data(),
        .experts_gate_up_scale = gate_up.scale.data(), .experts_down_scale = down.scale.data(),
        .shared_gate_up_scale = sh ? shared_gate_up.scale.data() : nullptr,
        .shared_down_scale = sh ? shared_down.scale.data() : nullptr, .act_q = act_q.data(),
        .act_scale = act_scale.data(), .act_arrivals = arrivals.data()};
    kernels::twin::moe_decode_ffn(p);
    auto d_x = to_device(x), d_gu = to_device(gate_up.codes), d_gus = to_device(gate_up.scale);
    auto d_dn = to_device(down.codes), d_dns = to_device(down.scale), d_sgu = to_device(shared_gate_up.codes);
    auto d_sgus = to_device(shared_gate_up.scale), d_sd = to_device(shared_down.codes);
    auto d_sds = to_device(shared_down.scale), d_idx = to_device(idx), d_w = to_device(weight);
    std::vector<std::vector<float>> outs;
    auto d_arrivals = to_device(arrivals);  // zero; each launch must leave it so (the second run relies on it)
    for (int run = 0; run < 2; ++run) {
      auto d_aq = to_device(std::vector<uint8_t>(act_q.size(), 0x7f));
      auto d_as = to_device(std::vector<float>(act_scale.size(), kNaN));
      auto d_act = to_device(std::vector<uint16_t>(act.size(), kBf16Poison));
      auto d_out = to_device(std::vector<float>(out.size(), kNaN));
      kernels::MoeDecodeFfnParams g = p;
      g.x = d_x.get(), g.topk_idx = d_idx.as<int32_t>(), g.topk_weight = d_w.as<float>();
      g.experts_gate_up = d_gu.get(), g.experts_down = d_dn.get();
      g.experts_gate_up_scale = d_gus.as<float>(), g.experts_down_scale = d_dns.as<float>();
      g.shared_gate_up = sh ? d_sgu.get() : nullptr, g.shared_down = sh ? d_sd.get() : nullptr;
      g.shared_gate_up_scale = sh ? d_sgus.as<float>() : nullptr, g.shared_down_scale = sh ? d_sds.as<float>() : nullptr;
      g.act = d_act.get(), g.out = d_out.as<float>();
      g.act_q = d_aq.as<uint8_t>(), g.act_scale = d_as.as<float>(), g.act_arrivals = d_arrivals.as<uint32_t>();
      ASSERT_TRUE(kernels::cuda::moe_decode_ffn_supported(g));
      kernels::cuda::moe_decode_ffn(g, nullptr);
      MLABENCH_CUDA(cudaDeviceSynchronize());
      {  // act_q / act_scale: the quantiser's twin over the GPU's own act, bit for bit; the counters zero again
        const std::vector<uint16_t> gpu_act = to_host<uint16_t>(d_act, act.size());
        std::vector<uint8_t> want_q(act_q.size());
        std::vector<float> want_s(act_scale.size());
        kernels::twin::fp8_quantize_rows({.x = gpu_act.data(), .x_type = DType::BF16, .ld_x = U, .q = want_q.data(),
                                          .ld_q = U, .scale = want_s.data(), .scale_row_stride = U / 128,
                                          .scale_group_stride = 1, .rows = 1, .k = U});
        EXPECT_EQ(to_host<uint8_t>(d_aq, act_q.size()), want_q) << "act codes";
        const std::vector<float> got_s = to_host<float>(d_as, act_scale.size());
        EXPECT_EQ(0, std::memcmp(got_s.data(), want_s.data(), want_s.size() * sizeof(float))) << "act scales";
        EXPECT_EQ(to_host<uint32_t>(d_arrivals, arrivals.size()), arrivals) << "arrival counters not back at zero";
      }
      const int64_t off_by_one = test::expect_bf16_within_an_ulp(to_host<uint16_t>(d_act, act.size()), act, "act column");
      EXPECT_LE(off_by_one, U / 20) << "act columns one BF16 ulp from the twin's";
      outs.push_back(to_host<float>(d_out, out.size()));
      const double diff = test::max_rel_diff(outs.back(), out);
      fmt::print("[ decode ffn fp8 ] {:<9} act off by an ulp {} of {}, out max |d| / max |out| {:.2e}\n", c.name,
                 off_by_one, U, diff);
      EXPECT_LE(diff, 5e-3);
    }
    EXPECT_EQ(outs[0], outs[1]) << "two runs differ";
  }
  kernels::MoeDecodeFfnParams bad{.x = nullptr, .hidden = 2048, .inter = 1400, .n_experts = 4, .top_k = 2,
                                  .experts_gate_up_scale = &kNaN};
  EXPECT_FALSE(kernels::cuda::moe_decode_ffn_supported(bad)) << "FP8 with inter off the 128 grid";
}

// What the launcher refuses, before anything runs: a k off the 16-byte grid, short scale rows, missing scales,
// unaligned operands.
TEST(CudaMoeFp8, GroupedGemmRefusesWhatItCannotRun) {
  MLABENCH_REQUIRE_GPU();
  gpu::DeviceBuffer x(1 << 16), w(1 << 16), y(1 << 16), xs(1 << 12), ws(1 << 12);
  auto d_off = to_device(std::vector<int32_t>{0, 16});
  const kernels::MoeGroupedGemmParams p{
      .y = y.as<float>(), .ld_y = 64, .x = x.get(), .ld_x = 256, .w = w.get(), .expert_stride = 64 * 256,
      .dtype = DType::F8_E4M3, .offsets = d_off.as<int32_t>(), .n_experts = 1, .n = 64, .k = 256, .max_rows = 16,
      .x_scale = xs.as<float>(), .x_scale_ld = 2, .w_scale = ws.as<float>(), .w_scale_ld = 4,
      .w_scale_expert_stride = 4};
  EXPECT_NO_THROW(kernels::cuda::moe_grouped_gemm(p, nullptr));
  MLABENCH_CUDA(cudaDeviceSynchronize());
  auto refused = [&](kernels::MoeGroupedGemmParams q, const char* why) {
    EXPECT_ANY_THROW(kernels::cuda::moe_grouped_gemm(q, nullptr)) << why;
    EXPECT_ANY_THROW(kernels::cuda::moe_grouped_gemm_fp8(q, nullptr)) << why;
  };
  kernels::MoeGroupedGemmParams q = p;
  q.k = 248;
  refused(q, "k off the 16-byte grid");
  q = p;
  q.x_scale_ld = 1;
  refused(q, "one x scale a row for two groups");
  q = p;
  q.w_scale = nullptr;
  refused(q, "no weight scales");
  q = p;
  q.x = static_cast<const char*>(p.x) + 16 * 256 + 8;
  refused(q, "x not 16-byte aligned");
  q = p;
  q.dtype = DType::BF16;
  EXPECT_ANY_THROW(kernels::cuda::moe_grouped_gemm_fp8(q, nullptr)) << "BF16 operands";
  // The QGMMA kernel: where it does not take a shape, moe_grouped_gemm runs the mma.sync kernel instead; asked
  // directly, it refuses.
  q = p;
  q.fp8_exact_sums = false;
  q.rows_bound = 16;
  q.n = 32;  // SWIGLU's gate/up halves need n % 64 == 0 (each in one scale block)
  q.y = nullptr;
  q.epilogue = MoeGemmEpilogue::SWIGLU;
  q.act = y.get();
  q.ld_act = 32;
  EXPECT_FALSE(kernels::cuda::moe_grouped_gemm_hopper_supported(q));
  EXPECT_ANY_THROW(kernels::cuda::moe_grouped_gemm_hopper(q, nullptr));
  EXPECT_NO_THROW(kernels::cuda::moe_grouped_gemm(q, nullptr));
  q.x_scale = nullptr;
  q.n = 64;
  EXPECT_FALSE(kernels::cuda::moe_grouped_gemm_hopper_supported(q)) << "no x scales";
  MLABENCH_CUDA(cudaDeviceSynchronize());
}

}  // namespace
}  // namespace mlabench
