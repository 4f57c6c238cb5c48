// skinny_gemm_fp8 (engine/kernels/cuda/skinny_gemm_fp8.cu) against its twin (engine/kernels/twin/
// skinny_gemm_fp8.cpp) and a double-precision dequantised product, on the GPU machine:
//   - V2-Lite's projection shapes (kv_a 576 x 2048, q 3072 x 2048, the dense down 2048 x 1408 and gate+up 2816 x
//     2048, the shared experts' down 2048 x 10944 with a 64-value last group), a tail shape (200 x 272: a short last
//     group, a half-empty last tile) and lm_head (102,400 x 2048: two tiles a CTA), at every row count 1-8;
//   - operands as the engine makes them: weights through fp8_quantize_blocks' twin with the scale grid at
//     fp8_weight_scale_ld(k) (a padding column always there, NaN: a kernel reading it gives NaN), activations
//     through fp8_quantize_rows' twin, groups major at a stride past m (the gap NaN);
//   - leading dimensions padded with the e4m3 NaN code (x, w) and NaN (y): reading past k gives NaN, and y's
//     padding must stay NaN; a NaN activation makes its row NaN in both;
//   - tolerance 1e-5 of max |y|: the products are exact, only the order of the float32 sums differs;
//   - the sums are deterministic (two launches, same bits), a CUDA graph replays the same product, and the
//     launcher refuses what skinny_gemm_fp8_supported refuses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/check.h"
#include "engine/core/dtype.h"
#include "engine/core/fp8.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/cuda/skinny_gemm_fp8.h"
#include "engine/kernels/twin/twin.h"
#include "tests/kernels/gpu_test_util.h"

namespace mlabench::kernels {
namespace {

using test::to_device;
using test::to_host;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr uint8_t kNaNCode = 0x7f;  // e4m3 NaN: padding a kernel must not read

int64_t groups_of(int64_t k) { return (k + kFp8Block - 1) / kFp8Block; }

// Host operands laid out exactly as the kernel reads them.
struct Operands {
  int64_t m, n, k, ld_x, ld_w, ldy, xs_stride, ws_ld;
  std::vector<uint8_t> xq, w;
  std::vector<float> xs, ws;
};

// Weights N(0, 0.02) with magnitudes that vary by 128-row block and by 128-column group (so every block has its
// own scale: a wrong scale index shows), quantised at ld_w = k + 48; activations N(0, 1) varying by group, row
// `nan_row` (if any) holding a NaN, quantised groups major at stride m + 3.
Operands make_operands(int64_t m, int64_t n, int64_t k, int64_t nan_row, std::mt19937& rng) {
  const int64_t groups = groups_of(k);
  Operands o{m, n, k, (k + 15) / 16 * 16 + 32, k + 48, n + 5, m + 3, fp8_weight_scale_ld(k), {}, {}, {}, {}};
  if (o.ws_ld == groups) o.ws_ld += 4;  // always a padding column
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(n * k)), x(static_cast<size_t>(m * k));
  for (int64_t j = 0; j < n; ++j)
    for (int64_t c = 0; c < k; ++c)
      w[static_cast<size_t>(j * k + c)] =
          nd(rng) * 0.02f * static_cast<float>(1 + (j / kFp8Block) % 5) * static_cast<float>(1 + (c / kFp8Block) % 3);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < k; ++c)
      x[static_cast<size_t>(r * k + c)] = nd(rng) * std::ldexp(1.0f, static_cast<int>((c / kFp8Block + r) % 4) - 1);
  if (nan_row >= 0 && nan_row < m) x[static_cast<size_t>(nan_row * k + k / 2)] = kNaN;
  o.w.assign(static_cast<size_t>(n * o.ld_w), kNaNCode);
  o.ws.assign(static_cast<size_t>(groups_of(n) * o.ws_ld), kNaN);
  twin::fp8_quantize_blocks({.w = w.data(), .w_type = DType::F32, .ld_w = k, .q = o.w.data(), .ld_q = o.ld_w,
                             .scale_inv = o.ws.data(), .scale_ld = o.ws_ld, .n = n, .k = k});
  o.xq.assign(static_cast<size_t>(m * o.ld_x), kNaNCode);
  o.xs.assign(static_cast<size_t>(groups * o.xs_stride), kNaN);
  twin::fp8_quantize_rows({.x = x.data(), .x_type = DType::F32, .ld_x = k, .q = o.xq.data(), .ld_q = o.ld_x,
                           .scale = o.xs.data(), .scale_row_stride = 1, .scale_group_stride = o.xs_stride, .rows = m,
                           .k = k});
  return o;
}

Fp8SkinnyGemmParams params_of(const Operands& o) {
  return {.ldy = o.ldy, .ld_x = o.ld_x, .x_scale_group_stride = o.xs_stride, .ld_w = o.ld_w, .w_scale_ld = o.ws_ld,
          .m = o.m, .n = o.n, .k = o.k};
}

// Device copies of the operands and a NaN-filled y [m, ldy].
struct DeviceOperands {
  gpu::DeviceBuffer xq, xs, w, ws, y;
  Fp8SkinnyGemmParams p;
};

DeviceOperands upload(const Operands& o) {
  DeviceOperands d{to_device(o.xq), to_device(o.xs), to_device(o.w), to_device(o.ws),
                   to_device(std::vector<float>(static_cast<size_t>(o.m * o.ldy), kNaN)), params_of(o)};
  d.p.y = d.y.as<float>();
  d.p.xq = d.xq.as<uint8_t>();
  d.p.x_scale = d.xs.as<float>();
  d.p.w = d.w.as<uint8_t>();
  d.p.w_scale = d.ws.as<float>();
  return d;
}

// y [m, ldy] by the twin, y's padding left NaN.
std::vector<float> twin_product(const Operands& o) {
  std::vector<float> y(static_cast<size_t>(o.m * o.ldy), kNaN);
  Fp8SkinnyGemmParams p = params_of(o);
  p.y = y.data();
  p.xq = o.xq.data();
  p.x_scale = o.xs.data();
  p.w = o.w.data();
  p.w_scale = o.ws.data();
  twin::skinny_gemm_fp8(p);
  return y;
}

// The dequantised product in double: sum over k of (e4m3(x) x_scale) (e4m3(w) w_scale), [m, ldy] (padding NaN).
// Outputs are independent sums: the threads share them.
std::vector<double> double_product(const Operands& o) {
  float dec[256];  // e4m3_to_f32 of every code
  for (int c = 0; c < 256; ++c) dec[c] = e4m3_to_f32(static_cast<uint8_t>(c));
  std::vector<double> y(static_cast<size_t>(o.m * o.ldy), std::nan(""));
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t r = 0; r < o.m; ++r)
    for (int64_t j = 0; j < o.n; ++j) {
      double acc = 0;
      for (int64_t c = 0; c < o.k; ++c) {
        const int64_t g = c / kFp8Block;
        acc += static_cast<double>(dec[o.xq[static_cast<size_t>(r * o.ld_x + c)]]) *
               o.xs[static_cast<size_t>(g * o.xs_stride + r)] *
               static_cast<double>(dec[o.w[static_cast<size_t>(j * o.ld_w + c)]]) *
               o.ws[static_cast<size_t>((j / kFp8Block) * o.ws_ld + g)];
      }
      y[static_cast<size_t>(r * o.ldy + j)] = acc;
    }
  return y;
}

// Max |got - want| over max |want| on [m, ldy] outputs; NaN must meet NaN (padding included), else a failure.
template <class T>
double rel_error(const std::vector<float>& got, const std::vector<T>& want, const std::string& what) {
  EXPECT_EQ(got.size(), want.size()) << what;
  double ymax = 0, worst = 0;
  int bad = 0;
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
    const double a = got[i], b = static_cast<double>(want[i]);
    if (std::isnan(a) || std::isnan(b)) {
      if (std::isnan(a) != std::isnan(b) && ++bad <= 5)
        ADD_FAILURE() << what << ": y[" << i << "] = " << a << ", expected " << b;
      continue;
    }
    ymax = std::max(ymax, std::fabs(b));
    worst = std::max(worst, std::fabs(a - b));
  }
  EXPECT_EQ(bad, 0) << what << ": NaN where the other has a number (or y's padding written)";
  return ymax > 0 ? worst / ymax : worst;
}

void run_case(int64_t m, int64_t n, int64_t k, int64_t nan_row, bool with_double, std::mt19937& rng) {
  const std::string what = fmt::format("skinny_gemm_fp8 m {} n {} k {}{}", m, n, k, nan_row >= 0 ? " NaN row" : "");
  const Operands o = make_operands(m, n, k, nan_row, rng);
  DeviceOperands d = upload(o);
  ASSERT_TRUE(cuda::skinny_gemm_fp8_supported(d.p)) << what;
  cuda::skinny_gemm_fp8(d.p, nullptr);
  const std::vector<float> got = to_host<float>(d.y, static_cast<size_t>(m * o.ldy));
  const std::vector<float> want = twin_product(o);
  const double err = rel_error(got, want, what + " vs twin");
  EXPECT_LE(err, 1e-5) << what << " vs twin";
  if (with_double) {
    const std::vector<double> ref = double_product(o);
    EXPECT_LE(rel_error(got, ref, what + " vs double"), 1e-5) << what << " vs double";
    EXPECT_LE(rel_error(want, ref, what + " twin vs double"), 1e-5) << what << " twin vs double";
  }
  for (int64_t j = 0; nan_row >= 0 && nan_row < m && j < n; ++j) {
    ASSERT_TRUE(std::isnan(got[static_cast<size_t>(nan_row * o.ldy + j)])) << what << ": y[" << nan_row << ", " << j
                                                                            << "] not NaN";
  }
  if (m == 1 || m == 8 || m == 16) std::printf("%s: max |kernel - twin| / max |y| = %.3g\n", what.c_str(), err);
}

TEST(CudaSkinnyFp8, MatchesTwinAndDoubleProductAtEveryRowCount) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(2001);
  struct Shape {
    int64_t n, k;
  };
  const Shape shapes[] = {{576, 2048}, {3072, 2048}, {2048, 1408}, {2816, 2048}, {2048, 10944}, {200, 272}};
  // 1-8 rows: one x tile; 9, 12, 15, 16: two (rows past m in the second tile zero, a NaN row in either).
  for (const Shape& s : shapes)
    for (int64_t m : {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16})
      run_case(m, s.n, s.k, s.n == 2048 && s.k == 1408 ? (m > 8 ? 10 : 3) : -1, m % 4 == 1, rng);
}

TEST(CudaSkinnyFp8, MatchesTwinAtLmHeadSize) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(2002);
  for (int64_t m : {1, 3, 8, 16}) run_case(m, 102400, 2048, -1, false, rng);
}

// Two launches give the same bits (warps' sums added in a fixed order), and so does a replayed CUDA graph.
TEST(CudaSkinnyFp8, DeterministicAndGraphCapturable) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(2003);
  const Operands o = make_operands(5, 3072, 2048, -1, rng);
  DeviceOperands d = upload(o);
  const size_t n_y = static_cast<size_t>(o.m * o.ldy);
  cuda::skinny_gemm_fp8(d.p, nullptr);
  const std::vector<float> first = to_host<float>(d.y, n_y);
  cuda::skinny_gemm_fp8(d.p, nullptr);
  const std::vector<float> second = to_host<float>(d.y, n_y);
  EXPECT_EQ(0, std::memcmp(first.data(), second.data(), n_y * sizeof(float)));

  gpu::DeviceBuffer graphed(n_y * sizeof(float), "y graphed");
  MLABENCH_CUDA(cudaMemset(graphed.get(), 0xff, n_y * sizeof(float)));  // NaN bits: padding that stays
  Fp8SkinnyGemmParams q = d.p;
  q.y = graphed.as<float>();
  cudaStream_t stream;
  MLABENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  test::run_captured(stream, [&](cudaStream_t) { cuda::skinny_gemm_fp8(q, stream); });
  MLABENCH_CUDA(cudaStreamDestroy(stream));
  const std::vector<float> replayed = to_host<float>(graphed, n_y);
  for (size_t i = 0; i < n_y; ++i)
    if (!std::isnan(first[i])) {
      ASSERT_EQ(0, std::memcmp(&first[i], &replayed[i], 4)) << "y[" << i << "]";
    }
}

// The fused form (Fp8SkinnyGemmParams::x: the kernel quantises x itself) against fp8_quantize_rows' launch then the
// product, on the GPU: the same y bit for bit (NaN padding and a NaN row included), for F32 and BF16 rows at a
// padded ld_x whose padding is NaN, at V2-Lite's shapes up to 16 rows (two x tiles), the shared experts' down
// projection (k = 2,816) at 16 rows, and the dense layer's k = 10,944 up to the 4 rows whose codes fit the kernel's
// shared memory (5 do not: skinny_gemm_fp8_supported says no).
TEST(CudaSkinnyFp8, FusedFormIsQuantiseThenProductBitForBit) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(2005);
  struct Case {
    int64_t n, k, max_m;
  };
  int compared = 0;
  for (const Case& c : {Case{576, 2048, 16}, Case{3072, 2048, 16}, Case{2048, 2816, 16}, Case{2048, 10944, 4},
                        Case{200, 272, 16}})
    for (int64_t m = 1; m <= c.max_m; ++m)
      for (DType xt : {DType::F32, DType::BF16}) {
        const std::string what = fmt::format("fused m {} n {} k {} {}", m, c.n, c.k, dtype_name(xt));
        const Operands o = make_operands(m, c.n, c.k, -1, rng);
        const int64_t ld = c.k + 24, groups = groups_of(c.k);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        std::vector<float> xf(static_cast<size_t>(m * ld), kNaN);
        for (int64_t r = 0; r < m; ++r)
          for (int64_t col = 0; col < c.k; ++col)
            xf[static_cast<size_t>(r * ld + col)] = nd(rng) * std::ldexp(1.0f, static_cast<int>((col / 128 + r) % 5) - 2);
        if (m >= 3) xf[static_cast<size_t>(2 * ld + c.k / 3)] = kNaN;
        if (m >= 11) xf[static_cast<size_t>(10 * ld + c.k / 2)] = kNaN;  // a NaN row in the second x tile
        std::vector<uint16_t> xb(xf.size());
        for (size_t i = 0; i < xf.size(); ++i) xb[i] = f32_to_bf16(xf[i]);
        const gpu::DeviceBuffer d_x = xt == DType::F32 ? to_device(xf) : to_device(xb);
        DeviceOperands d = upload(o);
        // Two launches: the codes at ld_q = k, the scales groups major at stride m.
        gpu::DeviceBuffer q(static_cast<size_t>(m * c.k), "codes"), sc(static_cast<size_t>(groups * m) * 4, "scales");
        cuda::fp8_quantize_rows({.x = d_x.get(), .x_type = xt, .ld_x = ld, .q = q.as<uint8_t>(), .ld_q = c.k,
                                 .scale = sc.as<float>(), .scale_row_stride = 1, .scale_group_stride = m, .rows = m,
                                 .k = c.k},
                                nullptr);
        Fp8SkinnyGemmParams two = d.p;
        two.xq = q.as<uint8_t>();
        two.ld_x = c.k;
        two.x_scale = sc.as<float>();
        two.x_scale_group_stride = m;
        cuda::skinny_gemm_fp8(two, nullptr);
        const size_t n_y = static_cast<size_t>(m * o.ldy);
        const std::vector<float> want = to_host<float>(d.y, n_y);
        // One launch.
        const gpu::DeviceBuffer y2 = to_device(std::vector<float>(n_y, kNaN));
        Fp8SkinnyGemmParams fused = d.p;
        fused.y = y2.as<float>();
        fused.xq = nullptr;
        fused.x_scale = nullptr;
        fused.x = d_x.get();
        fused.x_type = xt;
        fused.ld_x = ld;
        ASSERT_TRUE(cuda::skinny_gemm_fp8_supported(fused)) << what;
        cuda::skinny_gemm_fp8(fused, nullptr);
        const std::vector<float> got = to_host<float>(y2, n_y);
        EXPECT_EQ(0, std::memcmp(got.data(), want.data(), n_y * sizeof(float))) << what << ": not bit for bit";
        if (m >= 3) {
          EXPECT_TRUE(std::isnan(got[static_cast<size_t>(2 * o.ldy)])) << what << ": the NaN row";
        }
        if (m >= 11) {
          EXPECT_TRUE(std::isnan(got[static_cast<size_t>(10 * o.ldy)])) << what << ": the second tile's NaN row";
          EXPECT_FALSE(std::isnan(got[static_cast<size_t>(9 * o.ldy)])) << what << ": row 9";
        }
        EXPECT_FALSE(std::isnan(got[0])) << what;
        ++compared;
        if (c.k == 10944 && m == c.max_m) {
          fused.m = m + 1;  // 5 rows of 10,944 codes: past the kernel's 48 KB
          EXPECT_FALSE(cuda::skinny_gemm_fp8_supported(fused)) << what;
        }
      }
  EXPECT_EQ(compared, 2 * (16 + 16 + 16 + 4 + 16));
  std::printf("[ skinny fp8 fused ] %d products equal to quantise-then-product bit for bit\n", compared);
}

// The split output (the engine's q_proj + kv_a_proj in one launch, V2-Lite: 3,072 + 576 rows of 2,048): columns
// [0, n_y) in y and [n_y, n) in y2 equal the unsplit launch's columns bit for bit, in the codes form and the fused
// form, at 1, 2, 9 and 16 rows; the padding of both outputs stays NaN.
TEST(CudaSkinnyFp8, SplitOutputIsTheUnsplitProductBitForBit) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(2006);
  const int64_t n = 3072 + 576, k = 2048, n_y = 3072, n2 = n - n_y;
  int compared = 0;
  for (int64_t m : {1, 2, 9, 16})
    for (bool fused : {false, true}) {
      const std::string what = fmt::format("split m {} {}", m, fused ? "fused" : "codes");
      const Operands o = make_operands(m, n, k, m >= 2 ? 1 : -1, rng);
      DeviceOperands d = upload(o);
      std::normal_distribution<float> nd(0.0f, 1.0f);
      std::vector<uint16_t> xb(static_cast<size_t>(m * k));
      for (auto& v : xb) v = f32_to_bf16(nd(rng));
      const gpu::DeviceBuffer d_x = to_device(xb);
      Fp8SkinnyGemmParams whole = d.p;
      if (fused) {
        whole.xq = nullptr;
        whole.x_scale = nullptr;
        whole.x = d_x.get();
        whole.x_type = DType::BF16;
        whole.ld_x = k;
      }
      cuda::skinny_gemm_fp8(whole, nullptr);
      const std::vector<float> want = to_host<float>(d.y, static_cast<size_t>(m * o.ldy));
      const int64_t ld1 = n_y + 8, ld2 = n2 + 4;
      const gpu::DeviceBuffer y1 = to_device(std::vector<float>(static_cast<size_t>(m * ld1), kNaN));
      const gpu::DeviceBuffer y2 = to_device(std::vector<float>(static_cast<size_t>(m * ld2), kNaN));
      Fp8SkinnyGemmParams split = whole;
      split.y = y1.as<float>();
      split.ldy = ld1;
      split.y2 = y2.as<float>();
      split.ldy2 = ld2;
      split.n_y = n_y;
      ASSERT_TRUE(cuda::skinny_gemm_fp8_supported(split)) << what;
      cuda::skinny_gemm_fp8(split, nullptr);
      const std::vector<float> got1 = to_host<float>(y1, static_cast<size_t>(m * ld1));
      const std::vector<float> got2 = to_host<float>(y2, static_cast<size_t>(m * ld2));
      for (int64_t r = 0; r < m; ++r) {
        ASSERT_EQ(0, std::memcmp(&got1[static_cast<size_t>(r * ld1)], &want[static_cast<size_t>(r * o.ldy)],
                                 static_cast<size_t>(n_y) * 4))
            << what << ": y, row " << r;
        ASSERT_EQ(0, std::memcmp(&got2[static_cast<size_t>(r * ld2)], &want[static_cast<size_t>(r * o.ldy + n_y)],
                                 static_cast<size_t>(n2) * 4))
            << what << ": y2, row " << r;
        for (int64_t j = n_y; j < ld1; ++j) EXPECT_TRUE(std::isnan(got1[static_cast<size_t>(r * ld1 + j)])) << what;
        for (int64_t j = n2; j < ld2; ++j) EXPECT_TRUE(std::isnan(got2[static_cast<size_t>(r * ld2 + j)])) << what;
      }
      EXPECT_FALSE(std::isnan(got2[0])) << what;
      ++compared;
    }
  EXPECT_EQ(compared, 8);
  std::printf("[ skinny fp8 split ] %d split products equal to the unsplit product bit for bit\n", compared);
}

TEST(CudaSkinnyFp8, RefusesWhatItDoesNotSupport) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(2004);
  const Operands o = make_operands(2, 256, 256, -1, rng);
  DeviceOperands d = upload(o);
  EXPECT_TRUE(cuda::skinny_gemm_fp8_supported(d.p));
  auto refused = [&](Fp8SkinnyGemmParams p, const char* why) {
    EXPECT_FALSE(cuda::skinny_gemm_fp8_supported(p)) << why;
    EXPECT_THROW(cuda::skinny_gemm_fp8(p, nullptr), Error) << why;
  };
  Fp8SkinnyGemmParams p = d.p;
  p.m = 17;
  refused(p, "m 17");
  p = d.p;
  p.k = 200;
  refused(p, "k 200 (not a multiple of 16)");
  p = d.p;
  p.ld_w = o.k + 8;
  refused(p, "ld_w off the 16-byte grid");
  p = d.p;
  p.xq = d.p.xq + 1;
  refused(p, "xq misaligned");
  p = d.p;
  p.x_scale_group_stride = 1;  // below m with two groups: an error, not merely unsupported
  EXPECT_THROW(cuda::skinny_gemm_fp8(p, nullptr), Error);
  p = d.p;
  p.w_scale_ld = 1;
  EXPECT_THROW(cuda::skinny_gemm_fp8(p, nullptr), Error);
  p = d.p;
  p.m = 0;  // nothing to do: no launch, y untouched
  cuda::skinny_gemm_fp8(p, nullptr);
  const std::vector<float> y = to_host<float>(d.y, static_cast<size_t>(o.m * o.ldy));
  EXPECT_TRUE(std::all_of(y.begin(), y.end(), [](float v) { return std::isnan(v); }));
  MLABENCH_CUDA(cudaDeviceSynchronize());
}

}  // namespace
}  // namespace mlabench::kernels
