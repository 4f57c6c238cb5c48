// The products that compute their input's RMSNorm in their own launch (SkinnyGemmParams::norm,
// Fp8SkinnyGemmParams::norm; engine/kernels/cuda/norm_rows.cuh) against the chain they replace, rms_norm's kernel
// then the plain product, bit for bit: the product, the norm's out and out2, and residual_out, at the shapes the
// engine runs (V2-Lite's hidden 2,048 with q_proj + kv_a_proj split, DeepSeek-V2's 5,120, Llama-3-8B's 4,096, the
// MoE router's float32 GEMM with its BF16 second copy) and at a width whose rms_norm block is one warp (256) and
// one of 1,024 threads (8,192), with and without delta (a model's first layer has none). Every output starts NaN;
// the residual must stay as it was. Also: rms_norm's residual_out is its in-place sum, bit for bit, and the SwiGLU
// epilogue's norm form (a dense MLP's gate/up).
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "engine/core/dtype.h"
#include "engine/core/fp8.h"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/cuda/skinny_gemm_fp8.h"
#include "tests/kernels/gpu_test_util.h"

namespace mlabench {
namespace {

using kernels::RmsNormParams;
using test::to_device;
using test::to_host;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<float> randn(size_t n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

bool same_bytes(const gpu::DeviceBuffer& a, const gpu::DeviceBuffer& b, size_t bytes) {
  const std::vector<uint8_t> ha = to_host<uint8_t>(a, bytes), hb = to_host<uint8_t>(b, bytes);
  return std::memcmp(ha.data(), hb.data(), bytes) == 0;
}

// The norm's inputs on the device and two sets of outputs (fused, chain), all NaN to start.
struct NormBuffers {
  int64_t m, h;
  DType out_type;
  bool with_out2, with_delta;
  std::vector<float> x0;
  gpu::DeviceBuffer x, x_chain, delta, weight, sum, sum_chain, out, out_chain, out2, out2_chain;

  NormBuffers(int64_t m_, int64_t h_, DType t, bool out2_, bool delta_, std::mt19937& rng)
      : m(m_), h(h_), out_type(t), with_out2(out2_), with_delta(delta_), x0(randn(m * h, rng, 1.0f)),
        x(to_device(x0)), x_chain(to_device(x0)), delta(to_device(randn(m * h, rng, 0.5f))),
        weight(to_device(randn(h, rng, 0.3f))), sum(nan_floats()), sum_chain(nan_floats()), out(nan_floats()),
        out_chain(nan_floats()), out2(nan_floats()), out2_chain(nan_floats()) {}
  gpu::DeviceBuffer nan_floats() const { return to_device(std::vector<float>(static_cast<size_t>(m * h), kNaN)); }

  RmsNormParams params(bool chain) const {
    return {.residual = (chain ? x_chain : x).as<float>(), .ld_residual = h,
            .delta = with_delta ? delta.as<float>() : nullptr, .ld_delta = h,
            .out = (chain ? out_chain : out).get(), .out_type = out_type, .ld_out = h, .weight = weight.as<float>(),
            .n_rows = m, .dim = h, .out2 = with_out2 ? (chain ? out2_chain : out2).get() : nullptr,
            .out2_type = DType::BF16, .ld_out2 = h,
            .residual_out = with_delta ? (chain ? sum_chain : sum).as<float>() : nullptr, .ld_residual_out = h};
  }

  // The norm's outputs of both runs the same bytes, and the residual untouched.
  void expect_same(const std::string& what) const {
    const size_t n = static_cast<size_t>(m * h);
    EXPECT_TRUE(same_bytes(out, out_chain, n * dtype_size(out_type))) << what << ": out";
    if (with_out2) {
      EXPECT_TRUE(same_bytes(out2, out2_chain, n * 2)) << what << ": out2";
    }
    if (with_delta) {
      EXPECT_TRUE(same_bytes(sum, sum_chain, n * 4)) << what << ": residual_out";
      EXPECT_FALSE(std::isnan(to_host<float>(sum, n).back())) << what << ": residual_out not written";
    }
    const std::vector<float> now = to_host<float>(x, n);
    EXPECT_EQ(std::memcmp(now.data(), x0.data(), n * 4), 0) << what << ": the residual was written";
  }
};

// The two products the norm forms take, for expect_fused_is_chain.
bool supported(const kernels::SkinnyGemmParams& p) { return kernels::cuda::skinny_gemm_supported(p); }
bool supported(const kernels::Fp8SkinnyGemmParams& p) { return kernels::cuda::skinny_gemm_fp8_supported(p); }
void launch(const kernels::SkinnyGemmParams& p) { kernels::cuda::skinny_gemm(p, nullptr); }
void launch(const kernels::Fp8SkinnyGemmParams& p) { kernels::cuda::skinny_gemm_fp8(p, nullptr); }

// `fused` (x, its weights and shape set; m rows of n outputs, split at n_y when n_y > 0) run with b's norm, then
// rms_norm and the same product of the chain's out: y and y2 byte for byte, y written, the norm's outputs the same.
template <class P>
void expect_fused_is_chain(P fused, int64_t m, int64_t n, int64_t n_y, const NormBuffers& b, const std::string& what) {
  const int64_t n1 = n_y > 0 ? n_y : n, n2 = n - n1;
  const std::vector<float> poison(static_cast<size_t>(m * n), kNaN);
  auto y = to_device(poison), y2 = to_device(poison), yc = to_device(poison), y2c = to_device(poison);
  fused.y = y.as<float>();
  fused.ldy = n1;
  fused.norm = b.params(false);
  if (n_y > 0) {
    fused.y2 = y2.as<float>();
    fused.ldy2 = n2;
    fused.n_y = n_y;
  }
  ASSERT_TRUE(supported(fused)) << what;
  launch(fused);
  kernels::cuda::rms_norm(b.params(true), nullptr);
  P chain = fused;
  chain.norm = {};
  chain.x = b.out_chain.get();
  chain.y = yc.as<float>();
  chain.y2 = n_y > 0 ? y2c.as<float>() : nullptr;
  launch(chain);
  EXPECT_TRUE(same_bytes(y, yc, static_cast<size_t>(m * n1) * 4)) << what << ": y";
  if (n_y > 0) {
    EXPECT_TRUE(same_bytes(y2, y2c, static_cast<size_t>(m * n2) * 4)) << what << ": y2";
  }
  EXPECT_FALSE(std::isnan(to_host<float>(y, static_cast<size_t>(m * n1)).back())) << what << ": y not written";
  b.expect_same(what);
}

// rms_norm with residual_out writes the in-place run's sum and out, bit for bit, at widths of every block shape.
TEST(CudaNormFusion, RmsNormResidualOutIsTheInPlaceSum) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(4101);
  for (const int64_t h : {256, 2048, 5120, 8192}) {
    NormBuffers b(3, h, DType::BF16, false, true, rng);
    RmsNormParams in_place = b.params(true);
    in_place.residual_out = nullptr;
    kernels::cuda::rms_norm(in_place, nullptr);
    kernels::cuda::rms_norm(b.params(false), nullptr);
    const std::string what = fmt::format("hidden {}", h);
    EXPECT_TRUE(same_bytes(b.sum, b.x_chain, static_cast<size_t>(3 * h) * 4)) << what << ": residual_out";
    EXPECT_TRUE(same_bytes(b.out, b.out_chain, static_cast<size_t>(3 * h) * 2)) << what << ": out";
  }
}

// skinny_gemm's norm form against rms_norm then skinny_gemm: BF16 projections (one with the split output) and the
// float32 router with out2.
TEST(CudaNormFusion, SkinnyNormFormIsRmsNormThenTheProductBitForBit) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(4102);
  struct Case {
    int64_t m, h, n, n_y;  // n_y > 0: split output at n_y
    DType dt;
    bool delta;
  };
  const Case cases[] = {{1, 2048, 3072 + 576, 3072, DType::BF16, true}, {2, 2048, 3072 + 576, 3072, DType::BF16, true},
                        {1, 2048, 3072 + 576, 3072, DType::BF16, false}, {2, 5120, 1536 + 576, 1536, DType::BF16, true},
                        {1, 4096, 6144, 0, DType::BF16, true},   {2, 256, 40, 0, DType::BF16, true},
                        {1, 8192, 100, 0, DType::BF16, true},    {1, 2048, 64, 0, DType::F32, true},
                        {2, 2048, 64, 0, DType::F32, true},      {2, 5120, 160, 0, DType::F32, false}};
  for (const Case& c : cases) {
    const std::string what = fmt::format("m {} hidden {} n {} (split at {}) {} delta {}", c.m, c.h, c.n, c.n_y,
                                         dtype_name(c.dt), c.delta);
    const bool router = c.dt == DType::F32;  // float32 x, its BF16 copy in out2
    NormBuffers b(c.m, c.h, c.dt, router, c.delta, rng);
    const std::vector<float> wf = randn(static_cast<size_t>(c.n * c.h), rng, 0.03f);
    std::vector<uint16_t> w16(wf.size());
    for (size_t i = 0; i < wf.size(); ++i) w16[i] = f32_to_bf16(wf[i]);
    const gpu::DeviceBuffer w = router ? to_device(wf) : to_device(w16);
    expect_fused_is_chain(kernels::SkinnyGemmParams{.x = b.out.get(), .ldx = c.h, .w = w.get(), .ldw = c.h,
                                                    .dtype = c.dt, .m = c.m, .n = c.n, .k = c.h},
                          c.m, c.n, c.n_y, b, what);
  }
}

// The SwiGLU epilogue's norm form (a dense MLP's gate/up after post_attention_layernorm): V2-Lite's dense layer and
// Llama-3-8B's MLP at 1-2 rows, act compared byte for byte with rms_norm then the SwiGLU product.
TEST(CudaNormFusion, SwigluNormFormIsRmsNormThenGateUpBitForBit) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(4104);
  struct Case {
    int64_t m, h, inter;
  };
  for (const Case c : {Case{1, 2048, 10944}, Case{2, 2048, 10944}, Case{1, 4096, 14336}}) {
    const std::string what = fmt::format("swiglu m {} hidden {} inter {}", c.m, c.h, c.inter);
    NormBuffers b(c.m, c.h, DType::BF16, false, true, rng);
    const std::vector<float> wf = randn(static_cast<size_t>(2 * c.inter * c.h), rng, 0.03f);
    std::vector<uint16_t> w16(wf.size());
    for (size_t i = 0; i < wf.size(); ++i) w16[i] = f32_to_bf16(wf[i]);
    const gpu::DeviceBuffer w = to_device(w16);
    const std::vector<uint16_t> poison(static_cast<size_t>(c.m * c.inter), 0x7fc0);
    auto act = to_device(poison), act_chain = to_device(poison);
    kernels::SkinnyGemmParams fused{.x = b.out.get(), .ldx = c.h, .w = w.get(), .ldw = c.h, .m = c.m, .n = c.inter,
                                    .k = c.h, .swiglu = true, .act = act.get(), .ld_act = c.inter,
                                    .norm = b.params(false)};
    ASSERT_TRUE(kernels::cuda::skinny_gemm_supported(fused)) << what;
    kernels::cuda::skinny_gemm(fused, nullptr);
    kernels::cuda::rms_norm(b.params(true), nullptr);
    kernels::SkinnyGemmParams chain = fused;
    chain.norm = {};
    chain.x = b.out_chain.get();
    chain.act = act_chain.get();
    kernels::cuda::skinny_gemm(chain, nullptr);
    EXPECT_TRUE(same_bytes(act, act_chain, poison.size() * 2)) << what << ": act";
    EXPECT_NE(to_host<uint16_t>(act, poison.size()).back(), 0x7fc0) << what << ": act not written";
    b.expect_same(what);
  }
}

// skinny_gemm_fp8's fused form with the norm against rms_norm then the fused form on its BF16 out (one row, the
// engine's FP8 first projections: V2-Lite's split q_proj + kv_a_proj, a DeepSeek-V2 q_a_proj + kv_a_proj shape).
TEST(CudaNormFusion, Fp8NormFormIsRmsNormThenTheFusedFormBitForBit) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(4103);
  struct Case {
    int64_t h, n, n_y;
    bool delta;
  };
  for (const Case c : {Case{2048, 3072 + 576, 3072, true}, Case{2048, 3072 + 576, 3072, false},
                       Case{5120, 1536 + 576, 1536, true}, Case{4096, 1024, 0, true}}) {
    const std::string what = fmt::format("hidden {} n {} (split at {}) delta {}", c.h, c.n, c.n_y, c.delta);
    NormBuffers b(1, c.h, DType::BF16, false, c.delta, rng);
    std::vector<uint8_t> codes(static_cast<size_t>(c.n * c.h));
    for (auto& v : codes) v = static_cast<uint8_t>((rng() % 0x7f) | ((rng() & 1u) << 7));  // no NaN code
    const int64_t ws_ld = fp8_weight_scale_ld(c.h), blocks = (c.n + kFp8Block - 1) / kFp8Block;
    std::vector<float> scales(static_cast<size_t>(blocks * ws_ld));
    for (auto& s : scales) s = std::ldexp(1.0f, -9 - static_cast<int>(rng() % 4));
    const gpu::DeviceBuffer w = to_device(codes), ws = to_device(scales);
    expect_fused_is_chain(kernels::Fp8SkinnyGemmParams{.ld_x = c.h, .x = b.out.get(), .x_type = DType::BF16,
                                                       .w = w.as<uint8_t>(), .ld_w = c.h, .w_scale = ws.as<float>(),
                                                       .w_scale_ld = ws_ld, .m = 1, .n = c.n, .k = c.h},
                          1, c.n, c.n_y, b, what);
  }
}

}  // namespace
}  // namespace mlabench
