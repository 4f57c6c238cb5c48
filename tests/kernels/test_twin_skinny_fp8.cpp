// The twin of skinny_gemm_fp8 (engine/kernels/twin/skinny_gemm_fp8.cpp) in CI: against a double-precision loop
// over the dequantised operands (weights by quantize_fp8_blocks, activations by fp8_quantize_rows' twin, groups
// major) at every row count 1-8, short last groups and tiles, padded leading dimensions and scale layouts whose
// padding is NaN (so reading it shows), a NaN activation; against the CPU engine's W8A8 linear; the comparison's
// own power (a reference that takes a neighbouring group's or block's scale must fail it); and the parameter
// check's refusals, which the CUDA launcher shares.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/check.h"
#include "engine/core/dtype.h"
#include "engine/core/fp8.h"
#include "engine/core/tensor.h"
#include "engine/kernels/cpu/ops.h"
#include "engine/kernels/cuda/skinny_gemm_fp8.h"
#include "engine/kernels/twin/twin.h"

namespace mlabench::kernels {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr uint8_t kNaNCode = 0x7f;

int64_t groups_of(int64_t k) { return (k + kFp8Block - 1) / kFp8Block; }

// Operands as the kernel reads them, with the float32 inputs they were quantised from.
struct Operands {
  int64_t m, n, k, ld_x, ld_w, ldy, xs_stride, ws_ld;
  std::vector<float> x, w;  // [m, k], [n, k]
  std::vector<uint8_t> codes;  // w's codes packed [n, k], as the CPU engine holds them
  std::vector<uint8_t> xq, wq;
  std::vector<float> xs, ws;
};

// Magnitudes vary by weight block row and by k group (weights) and by group and row (activations), so each scale
// differs from its neighbours. Leading dimensions are padded off the 16-byte grid (the twin takes any), the
// padding NaN codes; the weight grid has one NaN padding column, x's scales a NaN gap of 2 past m per group.
Operands make_operands(int64_t m, int64_t n, int64_t k, int64_t nan_row, std::mt19937& rng) {
  const int64_t groups = groups_of(k), blocks = groups_of(n);
  Operands o{m, n, k, k + 5, k + 3, n + 2, m + 2, groups + 1, {}, {}, {}, {}, {}, {}, {}};
  std::normal_distribution<float> nd(0.0f, 1.0f);
  o.w.resize(static_cast<size_t>(n * k));
  o.x.resize(static_cast<size_t>(m * k));
  for (int64_t j = 0; j < n; ++j)
    for (int64_t c = 0; c < k; ++c)
      o.w[static_cast<size_t>(j * k + c)] = nd(rng) * 0.02f * static_cast<float>(1 + (j / kFp8Block) % 5) *
                                            static_cast<float>(1 + 3 * ((c / kFp8Block) % 2));
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < k; ++c)
      o.x[static_cast<size_t>(r * k + c)] = nd(rng) * std::ldexp(1.0f, static_cast<int>((c / kFp8Block + r) % 4) - 1);
  if (nan_row >= 0 && nan_row < m) o.x[static_cast<size_t>(nan_row * k + k - 1)] = kNaN;
  // Weights through engine/core/fp8.h (a checkpoint's packed layout), then copied to the padded layouts.
  o.codes.resize(o.w.size());
  std::vector<float> grid(static_cast<size_t>(blocks * groups));
  quantize_fp8_blocks(o.w, n, k, o.codes, grid, "test weight");
  o.wq.assign(static_cast<size_t>(n * o.ld_w), kNaNCode);
  for (int64_t j = 0; j < n; ++j)
    std::copy_n(o.codes.begin() + j * k, k, o.wq.begin() + j * o.ld_w);
  o.ws.assign(static_cast<size_t>(blocks * o.ws_ld), kNaN);
  for (int64_t b = 0; b < blocks; ++b)
    std::copy_n(grid.begin() + b * groups, groups, o.ws.begin() + b * o.ws_ld);
  o.xq.assign(static_cast<size_t>(m * o.ld_x), kNaNCode);
  o.xs.assign(static_cast<size_t>(groups * o.xs_stride), kNaN);
  twin::fp8_quantize_rows({.x = o.x.data(), .x_type = DType::F32, .ld_x = k, .q = o.xq.data(), .ld_q = o.ld_x,
                           .scale = o.xs.data(), .scale_row_stride = 1, .scale_group_stride = o.xs_stride, .rows = m,
                           .k = k});
  return o;
}

// The twin's y [m, ldy], its padding left NaN.
std::vector<float> twin_product(const Operands& o) {
  std::vector<float> y(static_cast<size_t>(o.m * o.ldy), kNaN);
  twin::skinny_gemm_fp8({.y = y.data(), .ldy = o.ldy, .xq = o.xq.data(), .ld_x = o.ld_x, .x_scale = o.xs.data(),
                         .x_scale_group_stride = o.xs_stride, .w = o.wq.data(), .ld_w = o.ld_w, .w_scale = o.ws.data(),
                         .w_scale_ld = o.ws_ld, .m = o.m, .n = o.n, .k = o.k});
  return y;
}

// Deliberately wrong references: each makes one of the scale-index mistakes a kernel could make.
enum class Mutation { NONE, W_SCALE_NEXT_GROUP, X_SCALE_NEXT_GROUP, W_SCALE_NEXT_BLOCK };

// sum over k of (e4m3(x) x_scale) (e4m3(w) w_scale) in double, [m, ldy] (padding NaN), with `mut` applied.
std::vector<double> double_product(const Operands& o, Mutation mut) {
  const int64_t groups = groups_of(o.k), blocks = groups_of(o.n);
  std::vector<double> y(static_cast<size_t>(o.m * o.ldy), std::nan(""));
  for (int64_t r = 0; r < o.m; ++r)
    for (int64_t j = 0; j < o.n; ++j) {
      double acc = 0;
      for (int64_t c = 0; c < o.k; ++c) {
        const int64_t g = c / kFp8Block;
        const int64_t gw = mut == Mutation::W_SCALE_NEXT_GROUP ? (g + 1) % groups : g;
        const int64_t gx = mut == Mutation::X_SCALE_NEXT_GROUP ? (g + 1) % groups : g;
        const int64_t bw = (j / kFp8Block + (mut == Mutation::W_SCALE_NEXT_BLOCK ? 1 : 0)) % blocks;
        acc += static_cast<double>(e4m3_to_f32(o.xq[static_cast<size_t>(r * o.ld_x + c)])) *
               o.xs[static_cast<size_t>(gx * o.xs_stride + r)] *
               static_cast<double>(e4m3_to_f32(o.wq[static_cast<size_t>(j * o.ld_w + c)])) *
               o.ws[static_cast<size_t>(bw * o.ws_ld + gw)];
      }
      y[static_cast<size_t>(r * o.ldy + j)] = acc;
    }
  return y;
}

// Max |got - want| / max |want| over [m, ldy]; NaN must meet NaN (y's padding included): a mismatch returns
// infinity, so it fails any tolerance.
double rel_error(const std::vector<float>& got, const std::vector<double>& want) {
  double ymax = 0, worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(got[i]) || std::isnan(want[i])) {
      if (std::isnan(got[i]) != std::isnan(want[i])) return std::numeric_limits<double>::infinity();
      continue;
    }
    ymax = std::max(ymax, std::fabs(want[i]));
    worst = std::max(worst, std::fabs(got[i] - want[i]));
  }
  return ymax > 0 ? worst / ymax : worst;
}

constexpr double kTolerance = 1e-5;  // of max |y|: the tests of the kernel ask the same of kernel vs twin

TEST(TwinSkinnyFp8, MatchesADoubleDequantisedLoop) {
  std::mt19937 rng(2011);
  struct Shape {
    int64_t n, k;
  };
  // A short last group (272, 400, 1408), a single short group (16), a weight-row tail (130, 200), two block rows.
  for (const Shape& s : {Shape{200, 272}, Shape{130, 1408}, Shape{64, 2048}, Shape{5, 16}, Shape{300, 400}})
    for (int64_t m = 1; m <= kernels::kSkinnyFp8MaxRows; ++m) {
      const std::string what = fmt::format("m {} n {} k {}", m, s.n, s.k);
      const int64_t nan_row = s.k == 400 && m >= 3 ? 2 : -1;
      const Operands o = make_operands(m, s.n, s.k, nan_row, rng);
      const std::vector<float> got = twin_product(o);
      EXPECT_LE(rel_error(got, double_product(o, Mutation::NONE)), kTolerance) << what;
      for (int64_t j = 0; nan_row >= 0 && j < s.n; ++j) {
        ASSERT_TRUE(std::isnan(got[static_cast<size_t>(nan_row * o.ldy + j)])) << what << ": column " << j;
      }
    }
}

// The block-scaled product is what the CPU engine's W8A8 linear computes from the float32 activations (it
// fake-quantises them in the same 1 x 128 groups), so the GPU's decode GEMM and the CPU engine agree.
TEST(TwinSkinnyFp8, IsTheCpuEngineW8A8Linear) {
  std::mt19937 rng(2012);
  for (int64_t m : {1, 4, 8}) {
    const Operands o = make_operands(m, 300, 1408, -1, rng);
    const std::vector<float> got = twin_product(o);
    TensorView tw{.dtype = DType::F8_E4M3, .shape = {o.n, o.k}, .data = o.codes.data()};
    tw.scale_inv = o.ws.data();
    tw.scale_ld = o.ws_ld;
    std::vector<float> want(static_cast<size_t>(m * o.ldy), kNaN);
    cpu::linear(want.data(), o.ldy, o.x.data(), o.k, m, tw);
    EXPECT_LE(rel_error(got, std::vector<double>(want.begin(), want.end())), kTolerance) << "m " << m;
  }
}

// A reference that reads a neighbouring group's or block's scale differs from the right product by far more than
// the tolerance: the comparison above would catch a kernel that made those mistakes.
TEST(TwinSkinnyFp8, ComparisonCatchesAWrongScaleGroup) {
  std::mt19937 rng(2013);
  for (int64_t m : {1, 8}) {
    const Operands o = make_operands(m, 300, 400, -1, rng);
    const std::vector<float> got = twin_product(o);
    ASSERT_LE(rel_error(got, double_product(o, Mutation::NONE)), kTolerance);
    for (Mutation mut : {Mutation::W_SCALE_NEXT_GROUP, Mutation::X_SCALE_NEXT_GROUP, Mutation::W_SCALE_NEXT_BLOCK})
      EXPECT_GT(rel_error(got, double_product(o, mut)), 1e3 * kTolerance) << "mutation " << static_cast<int>(mut);
  }
}

// The fused form (x unquantised, F32 or BF16 at a padded ld_x, a NaN in one row) is the two-step form bit for bit:
// fp8_quantize_rows' codes and scales, then the product.
TEST(TwinSkinnyFp8, FusedFormIsQuantiseThenProduct) {
  std::mt19937 rng(2015);
  for (int64_t m : {1, 3, 8})
    for (DType xt : {DType::F32, DType::BF16}) {
      Operands o = make_operands(m, 200, 400, m >= 3 ? 1 : -1, rng);
      const int64_t ld = o.k + 7;
      std::vector<float> xf(static_cast<size_t>(m * ld), kNaN);  // padding NaN: a read past k shows
      std::vector<uint16_t> xb(xf.size(), 0x7fc0);
      for (int64_t r = 0; r < m; ++r)
        for (int64_t c = 0; c < o.k; ++c) {
          xf[static_cast<size_t>(r * ld + c)] = o.x[static_cast<size_t>(r * o.k + c)];
          xb[static_cast<size_t>(r * ld + c)] = f32_to_bf16(o.x[static_cast<size_t>(r * o.k + c)]);
        }
      const void* x = xt == DType::F32 ? static_cast<const void*>(xf.data()) : xb.data();
      // The two-step reference quantises the same values (BF16: the rounded ones).
      twin::fp8_quantize_rows({.x = x, .x_type = xt, .ld_x = ld, .q = o.xq.data(), .ld_q = o.ld_x,
                               .scale = o.xs.data(), .scale_row_stride = 1, .scale_group_stride = o.xs_stride,
                               .rows = m, .k = o.k});
      const std::vector<float> want = twin_product(o);
      std::vector<float> got(want.size(), kNaN);
      twin::skinny_gemm_fp8({.y = got.data(), .ldy = o.ldy, .ld_x = ld, .x = x, .x_type = xt, .w = o.wq.data(),
                             .ld_w = o.ld_w, .w_scale = o.ws.data(), .w_scale_ld = o.ws_ld, .m = m, .n = o.n,
                             .k = o.k});
      ASSERT_EQ(got.size(), want.size());
      EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
          << "m " << m << " " << dtype_name(xt) << ": the fused form differs from quantise-then-product";
    }
}

// The split output (MLA's q_proj and kv_a_proj in one product): columns [0, n_y) land in y and [n_y, n) in y2, each
// the unsplit product's column bit for bit, at row strides of their own; the padding past each part stays NaN.
TEST(TwinSkinnyFp8, SplitOutputIsTheProductsColumnsInTwoMatrices) {
  std::mt19937 rng(2016);
  for (int64_t m : {1, 5, 16}) {
    const Operands o = make_operands(m, 330, 272, m >= 5 ? 2 : -1, rng);
    const std::vector<float> whole = twin_product(o);
    const int64_t n_y = 256, n2 = o.n - n_y, ld1 = n_y + 3, ld2 = n2 + 1;
    std::vector<float> y(static_cast<size_t>(m * ld1), kNaN), y2(static_cast<size_t>(m * ld2), kNaN);
    twin::skinny_gemm_fp8({.y = y.data(), .ldy = ld1, .xq = o.xq.data(), .ld_x = o.ld_x, .x_scale = o.xs.data(),
                           .x_scale_group_stride = o.xs_stride, .w = o.wq.data(), .ld_w = o.ld_w,
                           .w_scale = o.ws.data(), .w_scale_ld = o.ws_ld, .m = m, .n = o.n, .k = o.k,
                           .y2 = y2.data(), .ldy2 = ld2, .n_y = n_y});
    for (int64_t r = 0; r < m; ++r)
      for (int64_t j = 0; j < o.n; ++j) {
        const float want = whole[static_cast<size_t>(r * o.ldy + j)];
        const float got = j < n_y ? y[static_cast<size_t>(r * ld1 + j)] : y2[static_cast<size_t>(r * ld2 + j - n_y)];
        ASSERT_EQ(0, std::memcmp(&got, &want, sizeof(float))) << "m " << m << " row " << r << " column " << j;
      }
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t j = n_y; j < ld1; ++j) EXPECT_TRUE(std::isnan(y[static_cast<size_t>(r * ld1 + j)])) << j;
      for (int64_t j = n2; j < ld2; ++j) EXPECT_TRUE(std::isnan(y2[static_cast<size_t>(r * ld2 + j)])) << j;
    }
  }
}

// The fused form with the input norm (Fp8SkinnyGemmParams::norm): rms_norm's outputs and the fused form's product of
// its out, bit for bit; the residual only read; a norm that is not x, or adds delta in place, refused.
TEST(TwinSkinnyFp8, NormFormIsRmsNormThenTheFusedForm) {
  std::mt19937 rng(2017);
  const int64_t m = 1, k = 384;
  Operands o = make_operands(m, 200, k, -1, rng);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x0(static_cast<size_t>(m * k)), delta(x0.size()), weight(static_cast<size_t>(k));
  for (auto* v : {&x0, &delta, &weight})
    for (auto& e : *v) e = nd(rng);
  std::vector<float> x = x0, sum(x0.size(), kNaN), y(static_cast<size_t>(m * o.ldy), kNaN);
  std::vector<uint16_t> out(x0.size(), 0x7fc0);
  const kernels::RmsNormParams norm{.residual = x.data(), .ld_residual = k, .delta = delta.data(), .ld_delta = k,
                                    .out = out.data(), .out_type = DType::BF16, .ld_out = k, .weight = weight.data(),
                                    .n_rows = m, .dim = k, .residual_out = sum.data(), .ld_residual_out = k};
  const kernels::Fp8SkinnyGemmParams fused{.y = y.data(), .ldy = o.ldy, .ld_x = k, .x = out.data(),
                                           .x_type = DType::BF16, .w = o.wq.data(), .ld_w = o.ld_w,
                                           .w_scale = o.ws.data(), .w_scale_ld = o.ws_ld, .m = m, .n = o.n, .k = k,
                                           .norm = norm};
  twin::skinny_gemm_fp8(fused);
  std::vector<float> ux = x0, usum(sum.size(), kNaN), uy(y.size(), kNaN);
  std::vector<uint16_t> uout(out.size(), 0x7fc0);
  kernels::RmsNormParams un = norm;
  un.residual = ux.data();
  un.residual_out = usum.data();
  un.out = uout.data();
  twin::rms_norm(un);
  kernels::Fp8SkinnyGemmParams plain = fused;
  plain.norm = {};
  plain.x = uout.data();
  plain.y = uy.data();
  twin::skinny_gemm_fp8(plain);
  EXPECT_EQ(0, std::memcmp(y.data(), uy.data(), y.size() * 4)) << "the product";
  EXPECT_EQ(0, std::memcmp(out.data(), uout.data(), out.size() * 2)) << "the norm's out";
  EXPECT_EQ(0, std::memcmp(sum.data(), usum.data(), sum.size() * 4)) << "residual_out";
  EXPECT_EQ(0, std::memcmp(x.data(), x0.data(), x.size() * 4)) << "the residual was written";
  EXPECT_FALSE(std::isnan(y[static_cast<size_t>(o.n - 1)]));
  kernels::Fp8SkinnyGemmParams bad = fused;
  bad.x = uout.data();
  EXPECT_THROW(twin::skinny_gemm_fp8(bad), std::exception) << "x is not the norm's out";
  bad = fused;
  bad.norm.residual_out = nullptr;
  EXPECT_THROW(twin::skinny_gemm_fp8(bad), std::exception) << "delta added in place";
}

TEST(TwinSkinnyFp8, CheckRefusesBadParameters) {
  std::mt19937 rng(2014);
  const Operands o = make_operands(3, 200, 272, -1, rng);
  std::vector<float> y(static_cast<size_t>(o.m * o.ldy), kNaN);
  const Fp8SkinnyGemmParams ok{.y = y.data(), .ldy = o.ldy, .xq = o.xq.data(), .ld_x = o.ld_x,
                               .x_scale = o.xs.data(), .x_scale_group_stride = o.xs_stride, .w = o.wq.data(),
                               .ld_w = o.ld_w, .w_scale = o.ws.data(), .w_scale_ld = o.ws_ld, .m = o.m, .n = o.n,
                               .k = o.k};
  EXPECT_NO_THROW(twin::skinny_gemm_fp8(ok));
  auto refused = [&](auto&& edit, const char* why) {
    Fp8SkinnyGemmParams p = ok;
    edit(p);
    EXPECT_THROW(twin::skinny_gemm_fp8(p), Error) << why;
  };
  refused([](Fp8SkinnyGemmParams& p) { p.m = 17; }, "m 17");
  refused([](Fp8SkinnyGemmParams& p) { p.k = 264; }, "k off the 16 grid");
  refused([](Fp8SkinnyGemmParams& p) { p.ld_x = p.k - 16; }, "ld_x < k");
  refused([](Fp8SkinnyGemmParams& p) { p.ldy = p.n - 1; }, "ldy < n");
  refused([](Fp8SkinnyGemmParams& p) { p.x_scale_group_stride = p.m - 1; }, "x scales overlap");
  refused([](Fp8SkinnyGemmParams& p) { p.w_scale_ld = groups_of(p.k) - 1; }, "w_scale_ld short");
  refused([](Fp8SkinnyGemmParams& p) { p.w_scale = nullptr; }, "no w_scale");
  // The split output: n_y outside (0, n), y2's rows short of n - n_y columns.
  std::vector<float> y2(static_cast<size_t>(o.m * o.n), kNaN);
  refused([&](Fp8SkinnyGemmParams& p) { p.y2 = y2.data(); p.ldy2 = p.n; p.n_y = p.n; }, "n_y = n");
  refused([&](Fp8SkinnyGemmParams& p) { p.y2 = y2.data(); p.ldy2 = p.n; p.n_y = 0; }, "n_y = 0");
  refused([&](Fp8SkinnyGemmParams& p) { p.y2 = y2.data(); p.ldy2 = 10; p.n_y = 128; }, "ldy2 < n - n_y");
  refused([&](Fp8SkinnyGemmParams& p) { p.y2 = y2.data(); p.ldy2 = p.n; p.n_y = 128; p.ldy = 100; }, "ldy < n_y");
  // The fused form: x with the codes still set, or x of a type the quantiser does not read.
  refused([&](Fp8SkinnyGemmParams& p) { p.x = o.x.data(); }, "x beside xq and x_scale");
  refused([&](Fp8SkinnyGemmParams& p) { p.x = o.x.data(); p.xq = nullptr; p.x_scale = nullptr; p.x_type = DType::I32; },
          "x of type I32");
  {
    Fp8SkinnyGemmParams fused = ok;
    fused.x = o.x.data();
    fused.xq = nullptr;
    fused.x_scale = nullptr;
    fused.ld_x = o.k;
    EXPECT_NO_THROW(twin::skinny_gemm_fp8(fused));
  }
  // m 0: nothing to do, nothing written.
  std::vector<float> untouched(y.size(), kNaN);
  Fp8SkinnyGemmParams none = ok;
  none.m = 0;
  none.y = untouched.data();
  EXPECT_NO_THROW(twin::skinny_gemm_fp8(none));
  EXPECT_TRUE(std::all_of(untouched.begin(), untouched.end(), [](float v) { return std::isnan(v); }));
}

}  // namespace
}  // namespace mlabench::kernels
