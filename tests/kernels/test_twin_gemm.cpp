// The twin of skinny_gemm (engine/kernels/twin/skinny_gemm.cpp) in CI: against a double-precision loop over the
// same BF16 values, with padded leading dimensions, beta 1, and a batch whose weights are picked by w_index; the
// [k, n] weight form and the BF16 product output; and the parameter check's refusals, which the CUDA launcher shares.
// Also the twin of moe_decode_ffn against the PAIR path's pieces (skinny_gemm's SwiGLU and down twins, the combine).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/kernels/twin/twin.h"
#include "tests/kernels/fp8_test_util.h"

namespace mlabench {
namespace {

using kernels::SkinnyGemmParams;

constexpr float kNaNf = std::numeric_limits<float>::quiet_NaN();

TEST(TwinSkinnyGemm, MatchesADoubleLoopWithIndexedWeightsAndBeta) {
  std::mt19937 rng(77);
  std::normal_distribution<float> d(0.0f, 1.0f);
  const int64_t m = 3, n = 5, k = 24, ldx = 32, ldw = 40, ldy = 7, batch = 4, blocks = 3;
  const int64_t stride_x = m * ldx, stride_w = n * ldw, stride_y = m * ldy;
  std::vector<uint16_t> x(static_cast<size_t>(batch * stride_x)), w(static_cast<size_t>(blocks * stride_w));
  for (auto& v : x) v = f32_to_bf16(d(rng));
  for (auto& v : w) v = f32_to_bf16(d(rng));
  const std::vector<int32_t> index = {2, 0, 2, 1};
  std::vector<float> y(static_cast<size_t>(batch * stride_y));
  for (auto& v : y) v = d(rng);
  const std::vector<float> y0 = y;
  const SkinnyGemmParams p{.y = y.data(), .ldy = ldy, .stride_y = stride_y, .x = x.data(), .ldx = ldx,
                           .stride_x = stride_x, .w = w.data(), .ldw = ldw, .stride_w = stride_w,
                           .w_index = index.data(), .m = m, .n = n, .k = k, .batch = batch, .beta = 1.0f};
  kernels::twin::skinny_gemm(p);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t c = 0; c < k; ++c)
          s += static_cast<double>(bf16_to_f32(x[static_cast<size_t>(b * stride_x + i * ldx + c)])) *
               bf16_to_f32(w[static_cast<size_t>(index[static_cast<size_t>(b)] * stride_w + j * ldw + c)]);
        const size_t o = static_cast<size_t>(b * stride_y + i * ldy + j);
        EXPECT_NEAR(y[o], y0[o] + s, 1e-4 * (1.0 + std::fabs(s))) << b << "," << i << "," << j;
      }
      for (int64_t j = n; j < ldy; ++j) {
        const size_t o = static_cast<size_t>(b * stride_y + i * ldy + j);
        EXPECT_EQ(y[o], y0[o]) << "padding column written at " << b << "," << i << "," << j;
      }
    }
}

// SwiGLU epilogue: silu(gate) * up of the two float32 products (gate rows first, then up rows), rounded to BF16.
TEST(TwinSkinnyGemm, SwigluEpilogueIsSiluOfGateTimesUp) {
  std::mt19937 rng(78);
  std::normal_distribution<float> d(0.0f, 1.0f);
  const int64_t m = 2, n = 3, k = 16;
  std::vector<uint16_t> x(static_cast<size_t>(m * k)), w(static_cast<size_t>(2 * n * k));
  for (auto& v : x) v = f32_to_bf16(d(rng));
  for (auto& v : w) v = f32_to_bf16(d(rng));
  std::vector<uint16_t> act(static_cast<size_t>(m * n));
  std::vector<float> y(static_cast<size_t>(m * 2 * n));
  kernels::twin::skinny_gemm({.x = x.data(), .ldx = k, .w = w.data(), .ldw = k, .m = m, .n = n, .k = k,
                              .swiglu = true, .act = act.data(), .ld_act = n});
  kernels::twin::skinny_gemm({.y = y.data(), .ldy = 2 * n, .x = x.data(), .ldx = k, .w = w.data(), .ldw = k, .m = m,
                              .n = 2 * n, .k = k});
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const float g = y[static_cast<size_t>(i * 2 * n + j)], u = y[static_cast<size_t>(i * 2 * n + n + j)];
      EXPECT_EQ(act[static_cast<size_t>(i * n + j)], f32_to_bf16(g / (1.0f + std::exp(-g)) * u)) << i << "," << j;
    }
}

// The [k, n] weight form (w_kn: y = x . w, MLA's W_UK) and the product written in BF16 (act without swiglu, MLA's
// W_UV), against a double loop; a strided batch of both.
TEST(TwinSkinnyGemm, KnWeightsAndBf16ProductMatchADoubleLoop) {
  std::mt19937 rng(79);
  std::normal_distribution<float> d(0.0f, 1.0f);
  const int64_t m = 2, n = 6, k = 5, ldx = 9, ldw = 8, batch = 3;
  const int64_t stride_x = m * ldx, stride_w = k * ldw;
  std::vector<uint16_t> x(static_cast<size_t>(batch * stride_x)), w(static_cast<size_t>(batch * stride_w));
  for (auto& v : x) v = f32_to_bf16(d(rng));
  for (auto& v : w) v = f32_to_bf16(d(rng));
  for (const bool bf16_out : {false, true}) {
    std::vector<float> y(static_cast<size_t>(batch * m * n), -7.0f);
    std::vector<uint16_t> act(static_cast<size_t>(batch * m * n), 0);
    SkinnyGemmParams p{.x = x.data(), .ldx = ldx, .stride_x = stride_x, .w = w.data(), .ldw = ldw,
                       .stride_w = stride_w, .m = m, .n = n, .k = k, .batch = batch, .w_kn = true};
    if (bf16_out) {
      p.act = act.data(), p.ld_act = n, p.stride_act = m * n;
    } else {
      p.y = y.data(), p.ldy = n, p.stride_y = m * n;
    }
    kernels::twin::skinny_gemm(p);
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (int64_t c = 0; c < k; ++c)
            s += static_cast<double>(bf16_to_f32(x[static_cast<size_t>(b * stride_x + i * ldx + c)])) *
                 bf16_to_f32(w[static_cast<size_t>(b * stride_w + c * ldw + j)]);  // w[c, j]: no transpose
          const size_t o = static_cast<size_t>(b * m * n + i * n + j);
          if (bf16_out) {
            EXPECT_NEAR(bf16_to_f32(act[o]), s, std::ldexp(std::fabs(s), -7) + 1e-5) << b << "," << i << "," << j;
            EXPECT_EQ(y[o], -7.0f) << "y written with act given";
          } else {
            EXPECT_NEAR(y[o], s, 1e-5 * (1.0 + std::fabs(s))) << b << "," << i << "," << j;
          }
        }
  }
  // x_f32: a float32 x gives the product of x rounded to BF16 first.
  std::vector<float> xf(static_cast<size_t>(batch * stride_x));
  std::vector<uint16_t> xr(xf.size());
  for (size_t i = 0; i < xf.size(); ++i) {
    xf[i] = d(rng);
    xr[i] = f32_to_bf16(xf[i]);
  }
  std::vector<float> y_f32(static_cast<size_t>(batch * m * n)), y_rounded(y_f32.size());
  SkinnyGemmParams q{.y = y_f32.data(), .ldy = n, .stride_y = m * n, .x = xf.data(), .ldx = ldx, .stride_x = stride_x,
                     .w = w.data(), .ldw = ldw, .stride_w = stride_w, .m = m, .n = n, .k = k, .batch = batch,
                     .w_kn = true, .x_f32 = true};
  kernels::twin::skinny_gemm(q);
  q.x = xr.data(), q.x_f32 = false, q.y = y_rounded.data();
  kernels::twin::skinny_gemm(q);
  EXPECT_EQ(y_f32, y_rounded);
  std::vector<float> out(64);
  const SkinnyGemmParams bad{.y = out.data(), .ldy = 8, .x = x.data(), .ldx = 8, .w = w.data(), .ldw = 4, .m = 1,
                             .n = 8, .k = 4, .w_kn = true};
  EXPECT_THROW(kernels::twin::skinny_gemm(bad), std::exception);  // [k, n] rows need ldw >= n
}

TEST(TwinSkinnyGemm, RefusesWhatTheKernelCannotRun) {
  std::vector<uint16_t> buf(256);
  std::vector<float> y(64);
  const SkinnyGemmParams ok{.y = y.data(), .ldy = 8, .x = buf.data(), .ldx = 8, .w = buf.data(), .ldw = 8,
                            .m = 2, .n = 8, .k = 8};
  EXPECT_NO_THROW(kernels::twin::skinny_gemm(ok));
  SkinnyGemmParams p = ok;
  p.m = kernels::kSkinnyMaxRows + 1;  // a GEMM's job
  EXPECT_THROW(kernels::twin::skinny_gemm(p), std::exception);
  p = ok;
  p.beta = 0.5f;
  EXPECT_THROW(kernels::twin::skinny_gemm(p), std::exception);
  p = ok;
  p.ldw = 4;
  EXPECT_THROW(kernels::twin::skinny_gemm(p), std::exception);
  p = ok;
  p.batch = 2;  // no index and no weight stride: both problems would read one block by accident
  EXPECT_THROW(kernels::twin::skinny_gemm(p), std::exception);
  p = ok;
  p.y2 = y.data() + 32;  // a split output's first part must be a proper part of the rows
  p.ldy2 = 8;
  p.n_y = 8;
  EXPECT_THROW(kernels::twin::skinny_gemm(p), std::exception);
  p.n_y = 3;
  p.act = buf.data();  // and the product float32
  p.ld_act = 8;
  EXPECT_THROW(kernels::twin::skinny_gemm(p), std::exception);
}

// A split output (y2 from weight row n_y on): the two parts are what two calls on the two row blocks write, bit for
// bit, and neither part's padding is touched.
TEST(TwinSkinnyGemm, SplitOutputIsTwoProductsOfOneInput) {
  std::mt19937 rng(78);
  std::normal_distribution<float> d(0.0f, 1.0f);
  const int64_t m = 2, n1 = 12, n2 = 5, k = 32, ldy = 15, ldy2 = 9;
  std::vector<uint16_t> x(static_cast<size_t>(m * k)), w(static_cast<size_t>((n1 + n2) * k));
  for (auto& v : x) v = f32_to_bf16(d(rng));
  for (auto& v : w) v = f32_to_bf16(d(rng));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> y(static_cast<size_t>(m * ldy), nan), y2(static_cast<size_t>(m * ldy2), nan);
  kernels::twin::skinny_gemm({.y = y.data(), .ldy = ldy, .x = x.data(), .ldx = k, .w = w.data(), .ldw = k, .m = m,
                              .n = n1 + n2, .k = k, .y2 = y2.data(), .ldy2 = ldy2, .n_y = n1});
  std::vector<float> a(y.size(), nan), b(y2.size(), nan);
  kernels::twin::skinny_gemm({.y = a.data(), .ldy = ldy, .x = x.data(), .ldx = k, .w = w.data(), .ldw = k, .m = m,
                              .n = n1, .k = k});
  kernels::twin::skinny_gemm({.y = b.data(), .ldy = ldy2, .x = x.data(), .ldx = k, .w = w.data() + n1 * k, .ldw = k,
                              .m = m, .n = n2, .k = k});
  auto same = [](float p, float q) { return (std::isnan(p) && std::isnan(q)) || p == q; };
  for (size_t i = 0; i < y.size(); ++i) EXPECT_TRUE(same(y[i], a[i])) << "y[" << i << "] " << y[i] << " vs " << a[i];
  for (size_t i = 0; i < y2.size(); ++i) EXPECT_TRUE(same(y2[i], b[i])) << "y2[" << i << "] " << y2[i] << " vs " << b[i];
  EXPECT_FALSE(std::isnan(y2[static_cast<size_t>(ldy2 + n2 - 1)]));  // the second row's last y2 value was written
  EXPECT_TRUE(std::isnan(y[static_cast<size_t>(n1)]));                // and y's padding was not
}

// The input norm's form (SkinnyGemmParams::norm): the norm's outputs (residual_out, out = x, out2) and the product
// are those of rms_norm followed by the plain product, bit for bit, for BF16 x (a decode layer's first projections)
// and float32 x with a BF16 second copy (the MoE router); the residual is only read. The check refuses a norm whose
// out is not x, one that adds delta in place, and a batch.
TEST(TwinSkinnyGemm, NormFormIsRmsNormThenTheProduct) {
  std::mt19937 rng(79);
  std::normal_distribution<float> d(0.0f, 1.0f);
  const int64_t m = 2, n = 9, k = 48;
  std::vector<float> x0(static_cast<size_t>(m * k)), delta(x0.size()), weight(static_cast<size_t>(k));
  for (auto* v : {&x0, &delta, &weight})
    for (auto& e : *v) e = d(rng);
  for (const DType dt : {DType::BF16, DType::F32}) {
    const size_t es = dtype_size(dt);
    std::vector<uint16_t> w16(static_cast<size_t>(n * k));
    std::vector<float> w32(w16.size());
    for (size_t i = 0; i < w16.size(); ++i) w32[i] = bf16_to_f32(w16[i] = f32_to_bf16(0.1f * d(rng)));
    const void* w = dt == DType::BF16 ? static_cast<const void*>(w16.data()) : w32.data();
    // Fused: every output starts as NaN so a missed write shows.
    std::vector<float> x = x0, sum(x0.size(), kNaNf), y(static_cast<size_t>(m * n), kNaNf);
    std::vector<char> out(static_cast<size_t>(m * k) * es, 0x7f);
    std::vector<uint16_t> out2(static_cast<size_t>(m * k), 0xFFFF);
    const kernels::RmsNormParams norm{.residual = x.data(), .ld_residual = k, .delta = delta.data(), .ld_delta = k,
                                      .out = out.data(), .out_type = dt, .ld_out = k, .weight = weight.data(),
                                      .n_rows = m, .dim = k, .out2 = dt == DType::F32 ? out2.data() : nullptr,
                                      .ld_out2 = k,
                                      .residual_out = sum.data(), .ld_residual_out = k};
    const SkinnyGemmParams fused{.y = y.data(), .ldy = n, .x = out.data(), .ldx = k, .w = w, .ldw = k, .dtype = dt,
                                 .m = m, .n = n, .k = k, .norm = norm};
    kernels::twin::skinny_gemm(fused);
    // Unfused: the same norm, then the product reading its out.
    std::vector<float> ux = x0, usum(x0.size(), kNaNf), uy(y.size(), kNaNf);
    std::vector<char> uout(out.size(), 0x7f);
    std::vector<uint16_t> uout2(out2.size(), 0xFFFF);
    kernels::RmsNormParams un = norm;
    un.residual = ux.data();
    un.residual_out = usum.data();
    un.out = uout.data();
    un.out2 = dt == DType::F32 ? uout2.data() : nullptr;
    kernels::twin::rms_norm(un);
    kernels::twin::skinny_gemm({.y = uy.data(), .ldy = n, .x = uout.data(), .ldx = k, .w = w, .ldw = k, .dtype = dt,
                                .m = m, .n = n, .k = k});
    const std::string what(dtype_name(dt));
    EXPECT_EQ(std::memcmp(y.data(), uy.data(), y.size() * 4), 0) << what << ": the product";
    EXPECT_EQ(std::memcmp(out.data(), uout.data(), out.size()), 0) << what << ": the norm's out";
    EXPECT_EQ(std::memcmp(out2.data(), uout2.data(), out2.size() * 2), 0) << what << ": the norm's out2";
    EXPECT_EQ(std::memcmp(sum.data(), usum.data(), sum.size() * 4), 0) << what << ": residual_out";
    EXPECT_EQ(std::memcmp(x.data(), x0.data(), x.size() * 4), 0) << what << ": the residual was written";
    EXPECT_FALSE(std::isnan(y.back()) || std::isnan(sum.back())) << what;
    SkinnyGemmParams bad = fused;
    bad.x = uout.data();  // not the norm's out
    EXPECT_THROW(kernels::twin::skinny_gemm(bad), std::exception) << what;
    bad = fused;
    bad.norm.residual_out = nullptr;  // delta added in place while every CTA reads the row
    EXPECT_THROW(kernels::twin::skinny_gemm(bad), std::exception) << what;
    bad = fused;
    bad.batch = 2;
    bad.stride_w = n * k;
    EXPECT_THROW(kernels::twin::skinny_gemm(bad), std::exception) << what;
  }
}

}  // namespace
}  // namespace mlabench

namespace mlabench {
namespace {

// moe_decode_ffn's twin is the PAIR path at one token: its act columns are the SwiGLU twin's values bit for bit
// (the same ascending float32 sums), and out is the shared down product plus the routing-weighted routed ones
// (float32 rounding apart: one sum over the concatenated columns instead of one per expert and a combine).
TEST(TwinMoeDecodeFfn, IsThePairPathAtOneToken) {
  std::mt19937 rng(91);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (const int64_t SI : {int64_t{48}, int64_t{0}}) {
    SCOPED_TRACE("shared_inter " + std::to_string(SI));
    const int64_t H = 40, I = 24, E = 7;
    const int32_t K = 3;
    auto bf16s = [&](int64_t n) {
      std::vector<uint16_t> v(static_cast<size_t>(n));
      for (auto& e : v) e = f32_to_bf16(d(rng));
      return v;
    };
    const std::vector<uint16_t> x = bf16s(H), gate_up = bf16s(E * 2 * I * H), down = bf16s(E * H * I),
                                shared_gate_up = bf16s(2 * SI * H), shared_down = bf16s(H * SI);
    const std::vector<int32_t> idx = {5, 0, 3};
    const std::vector<float> weight = {0.5f, 0.25f, 1.5f};
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<uint16_t> act(static_cast<size_t>(SI + K * I), f32_to_bf16(nan));
    std::vector<float> out(static_cast<size_t>(H), nan);
    kernels::twin::moe_decode_ffn({.x = x.data(), .topk_idx = idx.data(), .topk_weight = weight.data(),
                                   .experts_gate_up = gate_up.data(), .experts_down = down.data(),
                                   .shared_gate_up = SI > 0 ? shared_gate_up.data() : nullptr,
                                   .shared_down = SI > 0 ? shared_down.data() : nullptr, .hidden = H, .inter = I,
                                   .shared_inter = SI, .n_experts = E, .top_k = K, .act = act.data(),
                                   .out = out.data()});
    // The PAIR path's pieces: the shared SwiGLU and down, each pair's SwiGLU and down, the combine in pair order.
    std::vector<uint16_t> want_act(act.size());
    std::vector<float> shared_y(static_cast<size_t>(H), 0.0f), pair_y(static_cast<size_t>(K * H));
    if (SI > 0) {
      kernels::twin::skinny_gemm({.x = x.data(), .ldx = H, .w = shared_gate_up.data(), .ldw = H, .m = 1, .n = SI,
                                  .k = H, .swiglu = true, .act = want_act.data(), .ld_act = SI});
      kernels::twin::skinny_gemm({.y = shared_y.data(), .ldy = H, .x = want_act.data(), .ldx = SI,
                                  .w = shared_down.data(), .ldw = SI, .m = 1, .n = H, .k = SI});
    }
    uint16_t* pair_act = want_act.data() + SI;
    kernels::twin::skinny_gemm({.x = x.data(), .ldx = H, .stride_x = 0, .w = gate_up.data(), .ldw = H,
                                .stride_w = 2 * I * H, .w_index = idx.data(), .m = 1, .n = I, .k = H, .batch = K,
                                .swiglu = true, .act = pair_act, .ld_act = I, .stride_act = I});
    kernels::twin::skinny_gemm({.y = pair_y.data(), .ldy = H, .stride_y = H, .x = pair_act, .ldx = I, .stride_x = I,
                                .w = down.data(), .ldw = I, .stride_w = H * I, .w_index = idx.data(), .m = 1, .n = H,
                                .k = I, .batch = K});
    EXPECT_EQ(act, want_act);
    double scale = 0, worst = 0;
    for (int64_t j = 0; j < H; ++j) {
      double want = shared_y[static_cast<size_t>(j)];
      for (int32_t k = 0; k < K; ++k) want += double{weight[static_cast<size_t>(k)]} * pair_y[static_cast<size_t>(k * H + j)];
      scale = std::max(scale, std::fabs(want));
      worst = std::max(worst, std::fabs(out[static_cast<size_t>(j)] - want));
    }
    EXPECT_GT(scale, 1.0);
    EXPECT_LE(worst, 1e-5 * scale);
  }
}

// With FP8 weights the twin is the FP8 layer's arithmetic at one token: x quantised once, each matrix's product
// through the FP8 grouped GEMM's twin (one expert, the SWIGLU epilogue for gate/up), the act columns quantised per
// 128-value group (a pair's columns alone give the same codes: no group straddles two matrices), the down products
// combined with the routing weights. act bit for bit; out to float32 rounding (one sum instead of a combine).
TEST(TwinMoeDecodeFfn, Fp8IsTheFp8LayerArithmeticAtOneToken) {
  std::mt19937 rng(93);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (const int64_t SI : {int64_t{256}, int64_t{0}}) {
    SCOPED_TRACE("shared_inter " + std::to_string(SI));
    const int64_t H = 384, I = 128, U = SI + 3 * I;
    const int32_t E = 5, K = 3;
    std::vector<uint16_t> x(static_cast<size_t>(H));
    for (auto& v : x) v = f32_to_bf16(d(rng));
    const test::Fp8Experts gate_up = test::quantized_experts(E, 2 * I, H, 0, rng);
    const test::Fp8Experts down = test::quantized_experts(E, H, I, 0, rng);
    const test::Fp8Experts shared_gate_up = test::quantized_experts(1, 2 * std::max<int64_t>(SI, 128), H, 0, rng);
    const test::Fp8Experts shared_down = test::quantized_experts(1, H, std::max<int64_t>(SI, 128), 0, rng);
    const std::vector<int32_t> idx = {4, 0, 2};
    const std::vector<float> weight = {0.5f, 0.25f, 1.5f};
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<uint16_t> act(static_cast<size_t>(U), f32_to_bf16(nan));
    std::vector<float> out(static_cast<size_t>(H), nan);
    std::vector<uint8_t> got_aq(static_cast<size_t>(U), 0x7f);
    std::vector<float> got_as(static_cast<size_t>(U / 128), nan);
    std::vector<uint32_t> arrivals(static_cast<size_t>(U / 128), 0);
    kernels::MoeDecodeFfnParams p{
        .x = x.data(), .topk_idx = idx.data(), .topk_weight = weight.data(), .experts_gate_up = gate_up.codes.data(),
        .experts_down = down.codes.data(), .shared_gate_up = SI > 0 ? shared_gate_up.codes.data() : nullptr,
        .shared_down = SI > 0 ? shared_down.codes.data() : nullptr, .hidden = H, .inter = I, .shared_inter = SI,
        .n_experts = E, .top_k = K, .act = act.data(), .out = out.data(),
        .experts_gate_up_scale = gate_up.scale.data(), .experts_down_scale = down.scale.data(),
        .shared_gate_up_scale = SI > 0 ? shared_gate_up.scale.data() : nullptr,
        .shared_down_scale = SI > 0 ? shared_down.scale.data() : nullptr, .act_q = got_aq.data(),
        .act_scale = got_as.data(), .act_arrivals = arrivals.data()};
    kernels::twin::moe_decode_ffn(p);

    // The layer's pieces. x's codes and scales, then each matrix as a one-expert FP8 grouped GEMM.
    std::vector<uint8_t> xq(static_cast<size_t>(H)), aq(static_cast<size_t>(U));
    std::vector<float> xs(static_cast<size_t>(H / 128)), as(static_cast<size_t>(U / 128));
    kernels::twin::fp8_quantize_rows({.x = x.data(), .x_type = DType::BF16, .ld_x = H, .q = xq.data(), .ld_q = H,
                                      .scale = xs.data(), .scale_row_stride = H / 128, .scale_group_stride = 1,
                                      .rows = 1, .k = H});
    auto gemm = [](const uint8_t* xq_, const float* xs_, int64_t k, const uint8_t* w, const float* ws, int64_t n,
                   kernels::MoeGemmEpilogue epi, void* dst) {
      const bool to_act = epi != kernels::MoeGemmEpilogue::STORE;
      kernels::twin::moe_grouped_gemm({.y = to_act ? nullptr : static_cast<float*>(dst), .ld_y = n, .x = xq_,
                                       .ld_x = k, .w = w, .expert_stride = (to_act ? 2 : 1) * n * k,
                                       .dtype = DType::F8_E4M3, .n_experts = 1, .n = n, .k = k, .max_rows = 1,
                                       .epilogue = epi, .act = to_act ? dst : nullptr, .ld_act = n, .x_scale = xs_,
                                       .x_scale_ld = k / 128, .w_scale = ws, .w_scale_ld = fp8_weight_scale_ld(k)});
    };
    std::vector<uint16_t> want_act(act.size());
    if (SI > 0)
      gemm(xq.data(), xs.data(), H, shared_gate_up.codes.data(), shared_gate_up.scale.data(), SI,
           kernels::MoeGemmEpilogue::SWIGLU, want_act.data());
    for (int32_t k = 0; k < K; ++k)
      gemm(xq.data(), xs.data(), H, gate_up.codes.data() + idx[k] * gate_up.stride,
           gate_up.scale.data() + idx[k] * gate_up.scale_stride, I, kernels::MoeGemmEpilogue::SWIGLU,
           want_act.data() + SI + k * I);
    EXPECT_EQ(act, want_act);
    // The layer quantises the shared act row and each pair's row alone: the same codes as one row of U columns.
    std::vector<float> shared_y(static_cast<size_t>(H), 0.0f), pair_y(static_cast<size_t>(H));
    std::vector<double> want(static_cast<size_t>(H), 0.0);
    auto quantize_part = [&](int64_t u0, int64_t n) {
      kernels::twin::fp8_quantize_rows({.x = want_act.data() + u0, .x_type = DType::BF16, .ld_x = n,
                                        .q = aq.data() + u0, .ld_q = n, .scale = as.data() + u0 / 128,
                                        .scale_row_stride = n / 128, .scale_group_stride = 1, .rows = 1, .k = n});
    };
    if (SI > 0) {
      quantize_part(0, SI);
      gemm(aq.data(), as.data(), SI, shared_down.codes.data(), shared_down.scale.data(), H,
           kernels::MoeGemmEpilogue::STORE, shared_y.data());
      for (int64_t j = 0; j < H; ++j) want[static_cast<size_t>(j)] = shared_y[static_cast<size_t>(j)];
    }
    for (int32_t k = 0; k < K; ++k) {
      quantize_part(SI + k * I, I);
      gemm(aq.data() + SI + k * I, as.data() + (SI + k * I) / 128, I, down.codes.data() + idx[k] * down.stride,
           down.scale.data() + idx[k] * down.scale_stride, H, kernels::MoeGemmEpilogue::STORE, pair_y.data());
      for (int64_t j = 0; j < H; ++j) want[static_cast<size_t>(j)] += double{weight[k]} * pair_y[static_cast<size_t>(j)];
    }
    // The act codes and scales the twin hands back (act_q, act_scale: what the GPU's down kernel reads) are those.
    EXPECT_EQ(got_aq, aq);
    EXPECT_EQ(0, std::memcmp(got_as.data(), as.data(), as.size() * sizeof(float)));
    p.act_arrivals = nullptr;
    EXPECT_ANY_THROW(kernels::twin::moe_decode_ffn(p)) << "FP8 without the act scratch";
    double scale = 0, worst = 0;
    for (int64_t j = 0; j < H; ++j) {
      scale = std::max(scale, std::fabs(want[static_cast<size_t>(j)]));
      worst = std::max(worst, std::fabs(out[static_cast<size_t>(j)] - want[static_cast<size_t>(j)]));
    }
    EXPECT_GT(scale, 1e-2);
    EXPECT_LE(worst, 1e-5 * scale);
  }
}

TEST(TwinMoeDecodeFfn, RefusesTopKPastItsLimitAndMissingSharedWeights) {
  std::vector<uint16_t> w(2 * 8 * 8, 0), act(2 * 8, 0);
  std::vector<int32_t> idx(20, 0);
  std::vector<float> weight(20, 1.0f), out(8);
  kernels::MoeDecodeFfnParams p{.x = w.data(), .topk_idx = idx.data(), .topk_weight = weight.data(),
                                .experts_gate_up = w.data(), .experts_down = w.data(), .hidden = 8, .inter = 8,
                                .n_experts = 32, .top_k = 2, .act = act.data(), .out = out.data()};
  EXPECT_NO_THROW(kernels::twin::moe_decode_ffn(p));
  p.top_k = kernels::kMoeDecodeMaxTopK + 1;
  EXPECT_ANY_THROW(kernels::twin::moe_decode_ffn(p)) << "top_k past kMoeDecodeMaxTopK";
  p.top_k = 2;
  p.shared_inter = 8;
  EXPECT_ANY_THROW(kernels::twin::moe_decode_ffn(p)) << "shared_inter without shared weights";
  p.shared_inter = 0;
  p.experts_gate_up_scale = weight.data();  // FP8: the down scales missing, and sizes off the 128 grid
  EXPECT_ANY_THROW(kernels::twin::moe_decode_ffn(p)) << "FP8 without every scale grid";
}

// The route form (MoeDecodeFfnParams::route: the router's top-k inside the launches) is the router, then the plain
// form over the experts it picked: the same experts, weights, act and out, topk_idx / topk_weight written; a router
// of another top_k or expert count, or of two tokens, or past kMoeDecodeRouteMaxExperts is refused.
TEST(TwinMoeDecodeFfn, RouteFormIsTheRouterThenThePlainForm) {
  const int64_t H = 16, I = 8, SI = 8;
  const int32_t E = 12, K = 3;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  auto bf16s = [&](int64_t n) {
    std::vector<uint16_t> v(static_cast<size_t>(n));
    for (auto& e : v) e = f32_to_bf16(u(rng));
    return v;
  };
  const std::vector<uint16_t> x = bf16s(H), gu = bf16s(E * 2 * I * H), dn = bf16s(E * H * I), sgu = bf16s(2 * SI * H),
                              sd = bf16s(H * SI);
  std::vector<float> logits(static_cast<size_t>(E));
  for (auto& l : logits) l = u(rng);
  kernels::RouterParams r{.logits = logits.data(), .n_tokens = 1, .n_experts = E, .top_k = K,
                          .method = kernels::RouterMethod::GROUP_LIMITED_GREEDY, .n_group = 4, .topk_group = 2,
                          .routed_scaling_factor = 2.0f};
  std::vector<int32_t> idx(K, -1), idx2(K, -1);
  std::vector<float> weight(K, 0.0f), weight2(K, 0.0f), out(H), out2(H);
  std::vector<uint16_t> act(SI + K * I), act2(act.size());
  r.topk_idx = idx.data(), r.topk_weight = weight.data();
  kernels::twin::router(r);
  kernels::MoeDecodeFfnParams p{.x = x.data(), .topk_idx = idx.data(), .topk_weight = weight.data(),
                                .experts_gate_up = gu.data(), .experts_down = dn.data(), .shared_gate_up = sgu.data(),
                                .shared_down = sd.data(), .hidden = H, .inter = I, .shared_inter = SI, .n_experts = E,
                                .top_k = K, .act = act.data(), .out = out.data()};
  kernels::twin::moe_decode_ffn(p);
  kernels::MoeDecodeFfnParams q = p;
  q.topk_idx = nullptr, q.topk_weight = nullptr, q.act = act2.data(), q.out = out2.data();
  q.route = r;
  q.route.topk_idx = idx2.data(), q.route.topk_weight = weight2.data();
  kernels::twin::moe_decode_ffn(q);
  EXPECT_EQ(idx2, idx);
  EXPECT_EQ(weight2, weight);
  EXPECT_EQ(act2, act);
  EXPECT_EQ(out2, out);
  EXPECT_NE(idx[0], -1);
  for (auto bad : {&kernels::RouterParams::top_k, &kernels::RouterParams::n_experts}) {
    kernels::MoeDecodeFfnParams b = q;
    b.route.*bad -= 1;
    EXPECT_ANY_THROW(kernels::twin::moe_decode_ffn(b)) << "a router of another shape";
  }
  kernels::MoeDecodeFfnParams b = q;
  b.route.n_tokens = 2;
  EXPECT_ANY_THROW(kernels::twin::moe_decode_ffn(b)) << "two tokens";
  b = q;
  b.route.topk_idx = nullptr;
  EXPECT_ANY_THROW(kernels::twin::moe_decode_ffn(b)) << "no top-k outputs";
  b = q;
  b.n_experts = b.route.n_experts = kernels::kMoeDecodeRouteMaxExperts + 1;
  EXPECT_ANY_THROW(kernels::twin::moe_decode_ffn(b)) << "more experts than the route form holds";
}

}  // namespace
}  // namespace mlabench
