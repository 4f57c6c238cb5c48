// The FP8 quantisers (engine/kernels/cuda/fp8_quantize.cu) against their twins, bit for bit, and Blas::linear_fp8
// (cuBLASLt's block-scaled e4m3 GEMM) against the CPU engine's W8A8 linear, on the GPU machine:
//   - fp8_quantize_rows: k of 16 groups, 11, a short last group (272), a single short group (16); 1 to 300 rows; F32
//     and BF16 inputs; both scale layouts; a zero row, a NaN, an infinity, a group of float32 denormals; codes and
//     scales equal, padding of q and of the scale array untouched;
//   - the conversion itself (cvt.rn.satfinite.e4m3x2.f32 + the NaN rule) through groups whose scale is exactly 1
//     (amax 448) or the smallest denormal (x / s then an integer up to 671): every midpoint between two codes and the
//     floats either side, e4m3 denormals and their ties, signed zeros, tiny values, NaN of either sign, saturation
//     from 449 to 671, and a group holding infinities;
//   - fp8_quantize_blocks: V2-Lite's weight shapes and tails, zero and denormal blocks, scale-grid padding poisoned
//     with NaN and left so;
//   - linear_fp8: V2-Lite's projection shapes at 1, 7, 64 and 300 rows, float32 and BF16 outputs in separate tests
//     (which of them cuBLASLt's Hopper block-scaled kernels support is what a GPU run shows), the weight's scale grid
//     at fp8_weight_scale_ld(k) with its padding poisoned (a kernel reading the unpadded grid gives NaN or wrong
//     rows at k = 1408 and 10944), y's padding columns poisoned, a NaN activation making its row NaN; then the
//     quantiser and the GEMM captured in a CUDA graph.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
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
#include "engine/core/tensor.h"
#include "engine/gpu/blas.h"
#include "engine/kernels/cpu/ops.h"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/twin/twin.h"
#include "tests/kernels/gpu_test_util.h"

namespace mlabench::kernels {
namespace {

using test::to_device;
using test::to_host;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kDenormMin = std::numeric_limits<float>::denorm_min();
constexpr uint8_t kCodePoison = 0xa5;

int64_t groups_of(int64_t k) { return (k + kFp8Block - 1) / kFp8Block; }

// Float32 bit patterns: the scales must be the twin's bits, NaN poison included.
void expect_same_bits(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i)
    if (std::memcmp(&got[i], &want[i], 4) != 0 && ++bad <= 5)
      ADD_FAILURE() << what << ": scale " << i << " kernel " << got[i] << " twin " << want[i];
  ASSERT_EQ(bad, 0) << what;
}

// Codes must be the twin's; `x` (the quotient's input, when known) is printed beside a mismatch.
void expect_same_codes(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want, const std::string& what,
                       const std::vector<float>* x = nullptr) {
  ASSERT_EQ(got.size(), want.size());
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i)
    if (got[i] != want[i] && ++bad <= 8)
      ADD_FAILURE() << what << ": code " << i << " kernel 0x" << std::hex << int{got[i]} << " twin 0x"
                    << int{want[i]} << std::dec << (x ? fmt::format(" (x = {:a})", (*x)[i]) : std::string());
  ASSERT_EQ(bad, 0) << what << ": " << bad << " codes differ";
}

// ---- fp8_quantize_rows ----------------------------------------------------------------------------------------

struct RowsCase {
  int64_t rows, k;
  DType x_type;
  bool groups_major;
};

// Activation rows: row 0 zeros, row 1 a NaN, row 2 a group of float32 denormals, row 3 an infinity, the others
// normal values of a magnitude that varies by row (1e-3 to 1e3).
std::vector<float> activation_rows(int64_t rows, int64_t k, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> mag(-3.0f, 3.0f);
  std::uniform_int_distribution<int64_t> col(0, k - 1);
  std::vector<float> x(static_cast<size_t>(rows * k));
  for (int64_t r = 0; r < rows; ++r) {
    const float scale = std::pow(10.0f, mag(rng));
    for (int64_t c = 0; c < k; ++c) x[static_cast<size_t>(r * k + c)] = r == 0 ? 0.0f : nd(rng) * scale;
  }
  if (rows > 1) x[static_cast<size_t>(k + col(rng))] = kNaN;
  if (rows > 2)
    for (int64_t c = 0; c < std::min<int64_t>(k, kFp8Block); ++c)
      x[static_cast<size_t>(2 * k + c)] = static_cast<float>(static_cast<int>(c * 5) - 300) * kDenormMin;
  if (rows > 3) x[static_cast<size_t>(3 * k + col(rng))] = -kInf;
  return x;
}

void run_rows_case(const RowsCase& c, std::mt19937& rng) {
  const std::string what = fmt::format("rows {} k {} {} {}", c.rows, c.k, dtype_name(c.x_type),
                                       c.groups_major ? "groups major" : "rows major");
  const int64_t groups = groups_of(c.k), ld_x = c.k + 8, ld_q = c.k + 16;
  const std::vector<float> x = activation_rows(c.rows, c.k, rng);
  std::vector<float> xf(static_cast<size_t>(c.rows * ld_x), kNaN);
  std::vector<uint16_t> xh(xf.size(), 0x7fc0);
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t j = 0; j < c.k; ++j) {
      xf[static_cast<size_t>(r * ld_x + j)] = x[static_cast<size_t>(r * c.k + j)];
      xh[static_cast<size_t>(r * ld_x + j)] = f32_to_bf16(x[static_cast<size_t>(r * c.k + j)]);
    }
  const int64_t srs = c.groups_major ? 1 : groups + 3, sgs = c.groups_major ? c.rows + 5 : 1;
  const size_t n_scales = static_cast<size_t>(c.groups_major ? groups * sgs : c.rows * srs);
  std::vector<uint8_t> q(static_cast<size_t>(c.rows * ld_q), kCodePoison);
  std::vector<float> scale(n_scales, kNaN);
  const bool bf16 = c.x_type == DType::BF16;
  const auto dx = bf16 ? to_device(xh) : to_device(xf);
  const auto dq = to_device(q);
  const auto ds = to_device(scale);
  Fp8QuantizeRowsParams p{.x = bf16 ? static_cast<const void*>(xh.data()) : xf.data(), .x_type = c.x_type,
                          .ld_x = ld_x, .q = q.data(), .ld_q = ld_q, .scale = scale.data(), .scale_row_stride = srs,
                          .scale_group_stride = sgs, .rows = c.rows, .k = c.k};
  twin::fp8_quantize_rows(p);
  p.x = dx.get();
  p.q = dq.as<uint8_t>();
  p.scale = ds.as<float>();
  cuda::fp8_quantize_rows(p, nullptr);
  expect_same_codes(to_host<uint8_t>(dq, q.size()), q, what);
  expect_same_bits(to_host<float>(ds, scale.size()), scale, what);
}

TEST(CudaFp8, QuantizeRowsMatchesTwinBitForBit) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(2101);
  for (int64_t k : {2048, 1408, 272, 16})
    for (int64_t rows : {1, 2, 5, 37, 300})
      for (DType t : {DType::F32, DType::BF16})
        for (bool groups_major : {false, true}) run_rows_case({rows, k, t, groups_major}, rng);
}

// ---- the conversion ---------------------------------------------------------------------------------------------

// Probes of f32 -> e4m3 at scale 1: for each pair of neighbouring codes the midpoint (a tie), the floats either side
// of it, the quarter points; the codes themselves; e4m3 denormal ties (odd multiples of 2^-10) and values below the
// smallest denormal; zeros, float32 denormals, NaN; all of it mirrored to negative.
std::vector<float> conversion_probes() {
  std::vector<float> v{0.0f, 1e-30f, kDenormMin, 1e-38f, std::ldexp(1.0f, -10), std::ldexp(3.0f, -11),
                       std::ldexp(1.0f, -11), std::nextafter(std::ldexp(1.0f, -10), 1.0f), kNaN};
  for (int c = 0; c < 0x7e; ++c) {
    const float lo = e4m3_to_f32(static_cast<uint8_t>(c)), hi = e4m3_to_f32(static_cast<uint8_t>(c + 1));
    const float mid = lo + (hi - lo) / 2;
    for (float p : {lo, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f), lo + (hi - lo) / 4,
                    hi - (hi - lo) / 4})
      v.push_back(p);
  }
  v.push_back(std::nextafter(448.0f, 0.0f));
  const size_t n = v.size();
  for (size_t i = 0; i < n; ++i) v.push_back(-v[i]);  // -0.0f and -NaN included
  return v;
}

// Rows of 128-value groups whose scale is exactly 1 (each starts with +-448) holding the probes, then groups whose
// scale is the smallest denormal (each starts with +-671 * 2^-149: 671 / 448 rounds to one unit) holding n * 2^-149
// for every integer n in [-671, 671], so x / s = n exactly (449 to 671 saturate; 464 and 480 are ties past 448).
std::vector<float> conversion_rows(int64_t* rows) {
  std::vector<float> values = conversion_probes(), groups;
  auto fill = [&groups](float lead, const std::vector<float>& src) {
    for (size_t i = 0; i < src.size(); i += kFp8Block - 1) {
      groups.push_back(i / (kFp8Block - 1) % 2 ? -lead : lead);
      for (size_t j = i; j < i + kFp8Block - 1; ++j) groups.push_back(j < src.size() ? src[j] : 0.0f);
    }
  };
  fill(448.0f, values);
  std::vector<float> ints;
  for (int n = -671; n <= 671; ++n) ints.push_back(static_cast<float>(n) * kDenormMin);
  fill(671.0f * kDenormMin, ints);
  // The infinities' group: the scale infinite, their quotients NaN (coded with x's sign), the rest signed zeros.
  const std::vector<float> inf_group{1.0f, -kInf, -3.0f, kInf, 0.0f, -0.0f, 7.0f};
  groups.insert(groups.end(), inf_group.begin(), inf_group.end());
  groups.resize((groups.size() + 4 * kFp8Block - 1) / (4 * kFp8Block) * (4 * kFp8Block), 0.0f);
  *rows = static_cast<int64_t>(groups.size()) / (4 * kFp8Block);  // rows of k = 512
  return groups;
}

TEST(CudaFp8, ConversionIsF32ToE4m3WithSaturationAndNaN) {
  MLABENCH_REQUIRE_GPU();
  int64_t rows = 0;
  const std::vector<float> x = conversion_rows(&rows);
  const int64_t k = 4 * kFp8Block;
  std::vector<uint8_t> q(x.size(), kCodePoison);
  std::vector<float> scale(static_cast<size_t>(rows * 4), kNaN);
  const auto dx = to_device(x);
  const auto dq = to_device(q);
  const auto ds = to_device(scale);
  Fp8QuantizeRowsParams p{.x = x.data(), .x_type = DType::F32, .ld_x = k, .q = q.data(), .ld_q = k,
                          .scale = scale.data(), .scale_row_stride = 4, .scale_group_stride = 1, .rows = rows, .k = k};
  twin::fp8_quantize_rows(p);
  // The construction holds: scale 1 groups are f32_to_e4m3 itself, the denormal-scale groups the integers.
  size_t unit = 0, tiny = 0;
  for (size_t g = 0; g < scale.size(); ++g) {
    if (scale[g] != 1.0f && scale[g] != kDenormMin) continue;
    for (size_t j = g * kFp8Block; j < (g + 1) * kFp8Block; ++j) {
      const float v = scale[g] == 1.0f ? x[j] : x[j] / kDenormMin;
      if (!std::isnan(v)) {
        ASSERT_EQ(q[j], f32_to_e4m3(v)) << "group " << g << " x " << x[j];
      }
    }
    ++(scale[g] == 1.0f ? unit : tiny);
  }
  ASSERT_GE(unit, 10u);
  ASSERT_GE(tiny, 10u);
  p.x = dx.get();
  p.q = dq.as<uint8_t>();
  p.scale = ds.as<float>();
  cuda::fp8_quantize_rows(p, nullptr);
  expect_same_codes(to_host<uint8_t>(dq, q.size()), q, "conversion probes", &x);
  expect_same_bits(to_host<float>(ds, scale.size()), scale, "conversion probes");
}

// ---- fp8_quantize_blocks ----------------------------------------------------------------------------------------

void run_blocks_case(int64_t n, int64_t k, DType t, std::mt19937& rng) {
  const std::string what = fmt::format("n {} k {} {}", n, k, dtype_name(t));
  std::normal_distribution<float> nd(0.0f, 0.02f);
  const int64_t ld_w = k + 8, ld_q = k + 32, scale_ld = fp8_weight_scale_ld(k), nb = groups_of(n);
  std::vector<float> wf(static_cast<size_t>(n * ld_w), kNaN);
  std::vector<uint16_t> wh(wf.size(), 0x7fc0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) {
      float v = nd(rng) * ((r / kFp8Block) % 3 == 2 ? 1e-3f : 1.0f);
      if (r < kFp8Block && c >= (groups_of(k) - 1) * kFp8Block) v = 0.0f;  // block (0, last): zeros, scale 1
      if (r >= kFp8Block && r < 2 * kFp8Block && c < kFp8Block)            // block (1, 0): float32 denormals
        v = static_cast<float>((r * 7 + c * 3) % 601 - 300) * kDenormMin;
      wf[static_cast<size_t>(r * ld_w + c)] = v;
      wh[static_cast<size_t>(r * ld_w + c)] = f32_to_bf16(v);
    }
  std::vector<uint8_t> q(static_cast<size_t>(n * ld_q), kCodePoison);
  std::vector<float> scale(static_cast<size_t>(nb * scale_ld), kNaN);
  const bool bf16 = t == DType::BF16;
  const auto dw = bf16 ? to_device(wh) : to_device(wf);
  const auto dq = to_device(q);
  const auto ds = to_device(scale);
  Fp8QuantizeBlocksParams p{.w = bf16 ? static_cast<const void*>(wh.data()) : wf.data(), .w_type = t, .ld_w = ld_w,
                            .q = q.data(), .ld_q = ld_q, .scale_inv = scale.data(), .scale_ld = scale_ld, .n = n,
                            .k = k};
  twin::fp8_quantize_blocks(p);
  p.w = dw.get();
  p.q = dq.as<uint8_t>();
  p.scale_inv = ds.as<float>();
  cuda::fp8_quantize_blocks(p, nullptr);
  expect_same_codes(to_host<uint8_t>(dq, q.size()), q, what);
  expect_same_bits(to_host<float>(ds, scale.size()), scale, what);  // the grid's padding: NaN on both sides
}

TEST(CudaFp8, QuantizeBlocksMatchesTwinBitForBit) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(2102);
  for (int64_t n : {1408, 2816, 200})
    for (int64_t k : {2048, 1408, 272})
      for (DType t : {DType::F32, DType::BF16}) run_blocks_case(n, k, t, rng);
}

// ---- Blas::linear_fp8 ---------------------------------------------------------------------------------------------

// One weight of a V2-Lite projection, quantised by the twin: codes [n, k] and the grid at fp8_weight_scale_ld(k),
// its padding NaN.
struct Fp8Weight {
  int64_t n, k;
  std::vector<uint8_t> codes;
  std::vector<float> scales;
};

Fp8Weight make_weight(int64_t n, int64_t k, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (auto& v : w) v = nd(rng);
  Fp8Weight fw{n, k, std::vector<uint8_t>(w.size()),
               std::vector<float>(static_cast<size_t>(groups_of(n) * fp8_weight_scale_ld(k)), kNaN)};
  twin::fp8_quantize_blocks({.w = w.data(), .w_type = DType::F32, .ld_w = k, .q = fw.codes.data(), .ld_q = k,
                             .scale_inv = fw.scales.data(), .scale_ld = fp8_weight_scale_ld(k), .n = n, .k = k});
  return fw;
}

// Runs fp8_quantize_rows (groups major) and linear_fp8 on float32 x [m, k] into y [m, n] at ldy = n + 8 (the
// padding NaN), returns y as float32 (BF16 widened) with the padding checked and dropped.
std::vector<float> gpu_linear(gpu::Blas& blas, DType y_type, const std::vector<float>& x, const Fp8Weight& w,
                              int64_t m, const std::string& what) {
  const int64_t n = w.n, k = w.k, ldq = (k + 15) / 16 * 16, ldy = n + 8;
  const auto dx = to_device(x), dw = to_device(w.codes), dws = to_device(w.scales);
  gpu::DeviceBuffer dq(static_cast<size_t>(m * ldq), "xq"), dxs(static_cast<size_t>(groups_of(k) * m) * 4, "xs");
  const bool bf16 = y_type == DType::BF16;
  const auto dy = bf16 ? to_device(std::vector<uint16_t>(static_cast<size_t>(m * ldy), 0x7fc0))
                       : to_device(std::vector<float>(static_cast<size_t>(m * ldy), kNaN));
  cuda::fp8_quantize_rows({.x = dx.get(), .x_type = DType::F32, .ld_x = k, .q = dq.as<uint8_t>(), .ld_q = ldq,
                           .scale = dxs.as<float>(), .scale_row_stride = 1, .scale_group_stride = m, .rows = m,
                           .k = k},
                          blas.stream());
  blas.linear_fp8(dy.get(), y_type, ldy, dq.as<uint8_t>(), ldq, dxs.as<float>(), dw.as<uint8_t>(), k,
                  dws.as<float>(), m, n, k);
  std::vector<float> y(static_cast<size_t>(m * n));
  const std::vector<float> yf = bf16 ? std::vector<float>() : to_host<float>(dy, static_cast<size_t>(m * ldy));
  const std::vector<uint16_t> yh = bf16 ? to_host<uint16_t>(dy, static_cast<size_t>(m * ldy)) : std::vector<uint16_t>();
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = 0; j < ldy; ++j) {
      const size_t i = static_cast<size_t>(r * ldy + j);
      const float v = bf16 ? bf16_to_f32(yh[i]) : yf[i];
      if (j < n)
        y[static_cast<size_t>(r * n + j)] = v;
      else
        EXPECT_TRUE(std::isnan(v)) << what << ": y's padding [" << r << ", " << j << "] was written";
    }
  return y;
}

// The CPU engine's W8A8 linear on the same codes and scales (scale_inv at fp8_weight_scale_ld(k)).
std::vector<float> cpu_linear(const std::vector<float>& x, const Fp8Weight& w, int64_t m) {
  TensorView tw{.dtype = DType::F8_E4M3, .shape = {w.n, w.k}, .data = w.codes.data()};
  tw.scale_inv = w.scales.data();
  tw.scale_ld = fp8_weight_scale_ld(w.k);
  std::vector<float> y(static_cast<size_t>(m * w.n));
  cpu::linear(y.data(), w.n, x.data(), w.k, m, tw);
  return y;
}

// Max |got - want| over max |want| (NaN must meet NaN); BF16 outputs are first allowed their own rounding.
double compare(const std::vector<float>& got, const std::vector<float>& want, DType y_type, const std::string& what) {
  double ymax = 0, worst = 0;
  for (float v : want)
    if (!std::isnan(v)) ymax = std::max(ymax, static_cast<double>(std::fabs(v)));
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(want[i]) || std::isnan(got[i])) {
      if (std::isnan(want[i]) != std::isnan(got[i]) && ++bad <= 5)
        ADD_FAILURE() << what << ": element " << i << " GPU " << got[i] << " CPU " << want[i];
      continue;
    }
    double d = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (y_type == DType::BF16) d = std::max(0.0, d - std::fabs(want[i]) * std::ldexp(1.0, -8));
    worst = std::max(worst, d);
  }
  EXPECT_EQ(bad, 0) << what;
  return ymax > 0 ? worst / ymax : worst;
}

// V2-Lite's projections: q / o (2048 x 2048), the dense MLP's gate+up stack (2 x 1408 = 2816 x 2048), its down
// (2048 x 1408), kv_a (576 x 2048), the shared experts' (3072 and 2048 x 10944 as the dense layer's intermediate).
void run_linear_fp8_shapes(DType y_type) {
  struct Shape {
    int64_t n, k;
  };
  const Shape shapes[] = {{2048, 2048}, {3072, 2048}, {576, 2048}, {2048, 1408}, {2816, 2048}, {2048, 10944}};
  std::mt19937 rng(2103);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  gpu::Blas blas(nullptr);
  for (const Shape& s : shapes) {
    const Fp8Weight w = make_weight(s.n, s.k, rng);
    for (int64_t m : {1, 7, 64, 300}) {
      const std::string what = fmt::format("linear_fp8 {} m {} n {} k {}", dtype_name(y_type), m, s.n, s.k);
      std::vector<float> x(static_cast<size_t>(m * s.k));
      for (auto& v : x) v = nd(rng);
      if (m == 7) x[static_cast<size_t>(3 * s.k + 100)] = kNaN;  // row 3 all NaN, on both sides
      const std::vector<float> want = cpu_linear(x, w, m);
      const std::vector<float> got = gpu_linear(blas, y_type, x, w, m, what);
      const double err = compare(got, want, y_type, what);
      std::printf("%s: max |GPU - CPU| / max |y| = %.3g\n", what.c_str(), err);
      EXPECT_LE(err, 1e-4) << what;
    }
  }
}

// Blas::linear_fp8 (cuBLASLt's block-scaled GEMM) is not the engine's FP8 path: on an H100 with CUDA 13.0 it found no
// algorithm at m = 1 (docs/perf-notes.md, issue 20 round 1). Its tests run where MLABENCH_FP8_GEMM=cublaslt asks for
// it, the investigation's switch; they say so when skipped.
#define MLABENCH_REQUIRE_CUBLASLT_FP8()                                                                     \
  do {                                                                                                     \
    const char* e = std::getenv("MLABENCH_FP8_GEMM");                                                     \
    if (e == nullptr || std::string(e) != "cublaslt")                                                     \
      GTEST_SKIP() << "SKIPPED: cuBLASLt's FP8 GEMM is off the engine's path; MLABENCH_FP8_GEMM=cublaslt runs it"; \
  } while (0)

TEST(CudaFp8, LinearFp8F32OutputMatchesCpuW8A8Linear) {
  MLABENCH_REQUIRE_GPU();
  MLABENCH_REQUIRE_CUBLASLT_FP8();
  run_linear_fp8_shapes(DType::F32);
}

TEST(CudaFp8, LinearFp8Bf16OutputMatchesCpuW8A8Linear) {
  MLABENCH_REQUIRE_GPU();
  MLABENCH_REQUIRE_CUBLASLT_FP8();
  run_linear_fp8_shapes(DType::BF16);
}

// The quantiser and the GEMM in a CUDA graph (the algorithm chosen by an eager call first, as the engine's first
// decode step does), replayed: the same product as the eager call, bit for bit.
TEST(CudaFp8, LinearFp8CapturesIntoACudaGraph) {
  MLABENCH_REQUIRE_GPU();
  MLABENCH_REQUIRE_CUBLASLT_FP8();
  std::mt19937 rng(2104);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t m = 5, n = 576, k = 2048;
  const Fp8Weight w = make_weight(n, k, rng);
  std::vector<float> x(static_cast<size_t>(m * k));
  for (auto& v : x) v = nd(rng);
  const auto dx = to_device(x), dw = to_device(w.codes), dws = to_device(w.scales);
  gpu::DeviceBuffer dq(static_cast<size_t>(m * k), "xq"), dxs(static_cast<size_t>(groups_of(k) * m) * 4, "xs");
  gpu::DeviceBuffer eager(static_cast<size_t>(m * n) * 2, "y eager"), graphed(eager.bytes(), "y graphed");
  cudaStream_t stream;
  MLABENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  gpu::Blas blas(stream);
  auto step = [&](void* y) {
    cuda::fp8_quantize_rows({.x = dx.get(), .x_type = DType::F32, .ld_x = k, .q = dq.as<uint8_t>(), .ld_q = k,
                             .scale = dxs.as<float>(), .scale_row_stride = 1, .scale_group_stride = m, .rows = m,
                             .k = k},
                            stream);
    blas.linear_fp8(y, DType::BF16, n, dq.as<uint8_t>(), k, dxs.as<float>(), dw.as<uint8_t>(), k, dws.as<float>(), m,
                    n, k);
  };
  step(eager.get());
  MLABENCH_CUDA(cudaStreamSynchronize(stream));
  test::run_captured(stream, [&](cudaStream_t) { step(graphed.get()); });
  MLABENCH_CUDA(cudaStreamDestroy(stream));
  const auto a = to_host<uint16_t>(eager, static_cast<size_t>(m * n)), b = to_host<uint16_t>(graphed, a.size());
  EXPECT_EQ(a, b);
  EXPECT_TRUE(std::any_of(a.begin(), a.end(), [](uint16_t h) { return (h & 0x7fff) != 0; })) << "an all-zero y";
}

TEST(CudaFp8, LaunchersAndLinearFp8RefuseBadParameters) {
  MLABENCH_REQUIRE_GPU();
  gpu::DeviceBuffer buf(1 << 20, "scratch");
  Fp8QuantizeRowsParams r{.x = buf.get(), .x_type = DType::F16, .ld_x = 256, .q = buf.as<uint8_t>(), .ld_q = 256,
                          .scale = buf.as<float>(), .scale_row_stride = 1, .scale_group_stride = 4, .rows = 4,
                          .k = 256};
  EXPECT_THROW(cuda::fp8_quantize_rows(r, nullptr), Error);
  r.x_type = DType::F32;
  r.scale_group_stride = 3;  // groups major needs >= rows
  EXPECT_THROW(cuda::fp8_quantize_rows(r, nullptr), Error);
  Fp8QuantizeBlocksParams b{.w = buf.get(), .w_type = DType::BF16, .ld_w = 300, .q = buf.as<uint8_t>(), .ld_q = 300,
                            .scale_inv = buf.as<float>(), .scale_ld = 2, .n = 8, .k = 300};
  EXPECT_THROW(cuda::fp8_quantize_blocks(b, nullptr), Error);
  gpu::Blas blas(nullptr);
  const auto* q = buf.as<uint8_t>();
  const auto* s = buf.as<float>();
  EXPECT_THROW(blas.linear_fp8(buf.get(), DType::F16, 64, q, 64, s, q, 64, s, 4, 64, 64), Error);
  EXPECT_THROW(blas.linear_fp8(buf.get(), DType::F32, 64, q, 72, s, q, 72, s, 4, 64, 72), Error) << "k = 72";
  MLABENCH_CUDA(cudaDeviceSynchronize());
}

}  // namespace
}  // namespace mlabench::kernels
