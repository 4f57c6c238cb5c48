// skinny_gemm (engine/kernels/cuda/skinny_gemm.cu) against its twin (engine/kernels/twin/skinny_gemm.cpp): every
// row count 1-8, each rows-per-CTA choice (n from 3 to 102,400), k from 8 to 10,944 (one and several chunks a
// thread, tails), padded leading dimensions, beta 0 and 1, a batch with w_index (a MoE layer's token-expert pairs,
// experts repeated and skipped), and outputs outside the product poisoned with NaN that must stay NaN; the float32
// operand form, the BF16 product output and the [k, n] weight form (MLA's router, W_UV and W_UK shapes). Then
// gpu::Blas takes the kernel for few rows and matches cuBLAS's product at many rows.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "engine/core/dtype.h"
#include "engine/gpu/blas.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/twin/twin.h"
#include "tests/kernels/gpu_test_util.h"

namespace mlabench {
namespace {

using kernels::SkinnyGemmParams;
using test::to_device;
using test::to_host;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<uint16_t> random_bf16(size_t n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = f32_to_bf16(d(rng));
  return v;
}

struct Case {
  int64_t m, n, k, pad_x, pad_w, pad_y, batch;
  bool indexed;
  float beta;
  bool index_early = false;  // w_index read before the PDL wait (the kernel's own order changes, not the result)
};

// Runs one case on the twin and the kernel; y starts NaN outside the product (and random inside it for beta 1).
void run_case(const Case& c, std::mt19937& rng) {
  const std::string what = fmt::format("m {} n {} k {} pads {}/{}/{} batch {} indexed {} beta {}", c.m, c.n, c.k,
                                       c.pad_x, c.pad_w, c.pad_y, c.batch, c.indexed, c.beta);
  const int64_t ldx = c.k + c.pad_x, ldw = c.k + c.pad_w, ldy = c.n + c.pad_y;
  const int64_t n_blocks = c.indexed ? 5 : c.batch;  // weight blocks; indexed problems pick among 5
  const int64_t stride_x = c.m * ldx, stride_y = c.m * ldy, stride_w = c.n * ldw;
  const std::vector<uint16_t> x = random_bf16(static_cast<size_t>(c.batch * stride_x), rng, 1.0f);
  const std::vector<uint16_t> w = random_bf16(static_cast<size_t>(n_blocks * stride_w), rng, 0.05f);
  std::vector<int32_t> index(static_cast<size_t>(c.batch));
  for (int64_t b = 0; b < c.batch; ++b) index[static_cast<size_t>(b)] = static_cast<int32_t>((b * 3 + 1) % 5);
  std::vector<float> y(static_cast<size_t>(c.batch * stride_y), kNaN);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = 0; j < c.n; ++j) y[static_cast<size_t>(b * stride_y + i * ldy + j)] = d(rng);
  const auto dx = to_device(x), dw = to_device(w), di = to_device(index);
  auto dy = to_device(y);
  SkinnyGemmParams p{.ldy = ldy, .stride_y = stride_y, .ldx = ldx, .stride_x = stride_x, .ldw = ldw,
                     .stride_w = stride_w, .m = c.m, .n = c.n, .k = c.k, .batch = c.batch, .beta = c.beta,
                     .w_index_early = c.index_early};
  p.y = y.data();
  p.x = x.data();
  p.w = w.data();
  p.w_index = c.indexed ? index.data() : nullptr;
  kernels::twin::skinny_gemm(p);
  p.y = dy.as<float>();
  p.x = dx.get();
  p.w = dw.get();
  p.w_index = c.indexed ? di.as<int32_t>() : nullptr;
  ASSERT_TRUE(kernels::cuda::skinny_gemm_supported(p)) << what;
  kernels::cuda::skinny_gemm(p, nullptr);
  const std::vector<float> got = to_host<float>(dy, y.size());
  // float32 sums of k products in another order: |error| <= k * 2^-23 * sum|x w|, with |x w| ~ 0.05 here.
  const double tol = 4e-7 * static_cast<double>(c.k) * 0.05 + 1e-6;
  int64_t bad = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    if (std::isnan(y[i])) {
      bad += std::isnan(got[i]) ? 0 : 1;  // outside the product: untouched
    } else if (!(std::fabs(static_cast<double>(got[i]) - y[i]) <= tol * std::max(1.0, std::fabs(double{y[i]})))) {
      if (bad++ < 3) ADD_FAILURE() << what << ": y[" << i << "] = " << got[i] << ", twin " << y[i];
    }
  }
  EXPECT_EQ(bad, 0) << what;
}

TEST(CudaSkinnyGemm, MatchesTwin) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(1601);
  const Case cases[] = {
      {1, 3072, 2048, 0, 0, 0, 1, false, 0.0f},     // V2-Lite q_proj, batch 1: 8 rows a CTA
      {1, 576, 2048, 0, 0, 0, 1, false, 0.0f},      // kv_a: 2 rows a CTA
      {1, 3, 8, 0, 0, 0, 1, false, 0.0f},           // one chunk, 1 row a CTA, a tail CTA
      {2, 2048, 2816, 8, 16, 4, 1, false, 0.0f},    // shared down: uneven chunks a thread, padded
      {3, 1000, 1024, 0, 0, 0, 1, false, 1.0f},     // accumulate, m not a power of two
      {5, 2049, 4104, 0, 8, 1, 1, false, 0.0f},     // m 5 (M 8: 4 rows a CTA), n not a multiple of any R
      {8, 4096, 2048, 0, 0, 0, 1, false, 1.0f},     // the largest m
      {7, 130, 10944, 0, 0, 0, 1, false, 0.0f},     // dense down's k: 6 chunks a thread
      {1, 2816, 2048, 0, 0, 0, 6, true, 0.0f},      // MoE pairs: gate_up of 6 (token, expert) pairs
      {1, 2048, 1408, 0, 0, 0, 12, true, 0.0f},     // and down, experts repeated
      {2, 2048, 1408, 0, 0, 0, 12, true, 0.0f, true},  // the same with the index read before the wait
      {4, 64, 256, 8, 0, 0, 3, false, 1.0f},        // strided batch without an index
  };
  for (const Case& c : cases) run_case(c, rng);
  run_case({1, 102400, 2048, 0, 0, 0, 1, false, 0.0f}, rng);  // lm_head, 12,800 CTAs
}

// The SwiGLU epilogue: act[m, n] = silu(x . gate_j) * (x . up_j) in BF16 from 2n weight rows, against the twin
// (one BF16 ulp plus what the float32 sums' order moves act by), single problems and MoE pairs; act's padding stays
// NaN.
TEST(CudaSkinnyGemm, SwigluEpilogueMatchesTwin) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(1603);
  struct SCase {
    int64_t m, n, k, pad_act, batch;
    bool indexed;
  };
  const SCase cases[] = {{1, 2816, 2048, 0, 1, false},  // V2-Lite shared experts (2 x 1408), batch 1
                         {1, 1408, 2048, 8, 6, true},   // routed pairs
                         {3, 14336, 4096, 0, 1, false}, // Llama-3-8B MLP, 3 rows
                         {8, 100, 512, 4, 1, false},    // 4 rows a CTA (2 features), a tail
                         {2, 5, 64, 0, 2, false}};
  for (const SCase& c : cases) {
    const std::string what = fmt::format("swiglu m {} n {} k {} pad {} batch {} indexed {}", c.m, c.n, c.k, c.pad_act,
                                         c.batch, c.indexed);
    const int64_t blocks = c.indexed ? 4 : c.batch, ld_act = c.n + c.pad_act, stride_w = 2 * c.n * c.k;
    const std::vector<uint16_t> x = random_bf16(static_cast<size_t>(c.batch * c.m * c.k), rng, 1.0f);
    const std::vector<uint16_t> w = random_bf16(static_cast<size_t>(blocks * stride_w), rng, 0.05f);
    std::vector<int32_t> index(static_cast<size_t>(c.batch));
    for (int64_t b = 0; b < c.batch; ++b) index[static_cast<size_t>(b)] = static_cast<int32_t>((b * 3 + 2) % 4);
    std::vector<uint16_t> act(static_cast<size_t>(c.batch * c.m * ld_act), 0x7fc1);  // BF16 NaN
    const auto dx = to_device(x), dw = to_device(w), di = to_device(index);
    auto da = to_device(act);
    kernels::SkinnyGemmParams p{.ldx = c.k, .stride_x = c.m * c.k, .ldw = c.k, .stride_w = stride_w, .m = c.m,
                                .n = c.n, .k = c.k, .batch = c.batch, .swiglu = true, .ld_act = ld_act,
                                .stride_act = c.m * ld_act};
    p.x = x.data();
    p.w = w.data();
    p.w_index = c.indexed ? index.data() : nullptr;
    p.act = act.data();
    kernels::twin::skinny_gemm(p);
    // gate and up themselves (the twin without the epilogue): the float32 sums' error moves act by up to
    // (|silu(g)| + |u|) x the sum bound, which near act = 0 exceeds a BF16 ulp of act.
    std::vector<float> gu(static_cast<size_t>(c.batch * c.m * 2 * c.n));
    kernels::SkinnyGemmParams q = p;
    q.swiglu = false;
    q.act = nullptr;  // without swiglu a non-null act would take the product itself
    q.y = gu.data();
    q.ldy = 2 * c.n;
    q.stride_y = c.m * 2 * c.n;
    q.n = 2 * c.n;
    kernels::twin::skinny_gemm(q);
    const double sum_err = 4e-7 * static_cast<double>(c.k) * 0.05 + 1e-6;
    p.x = dx.get();
    p.w = dw.get();
    p.w_index = c.indexed ? di.as<int32_t>() : nullptr;
    p.act = da.get();
    kernels::cuda::skinny_gemm(p, nullptr);
    const std::vector<uint16_t> got = to_host<uint16_t>(da, act.size());
    int64_t bad = 0;
    for (size_t i = 0; i < act.size(); ++i) {
      const bool nan_want = act[i] == 0x7fc1, nan_got = std::isnan(bf16_to_f32(got[i]));
      bool ok = nan_want ? nan_got : !nan_got;
      if (ok && !nan_want) {
        const int64_t b = static_cast<int64_t>(i) / (c.m * ld_act), rem = static_cast<int64_t>(i) % (c.m * ld_act);
        const int64_t row = rem / ld_act, j = rem % ld_act;
        const float g = gu[static_cast<size_t>(b * c.m * 2 * c.n + row * 2 * c.n + j)];
        const float u = gu[static_cast<size_t>(b * c.m * 2 * c.n + row * 2 * c.n + c.n + j)];
        const double want = bf16_to_f32(act[i]), have = bf16_to_f32(got[i]);
        const double tol = std::ldexp(std::fabs(want), -7) + (std::fabs(g / (1 + std::exp(-g))) + std::fabs(u)) * sum_err;
        ok = std::fabs(have - want) <= tol;
      }
      if (!ok && bad++ < 3)
        ADD_FAILURE() << what << ": act[" << i << "] = " << bf16_to_f32(got[i]) << ", twin " << bf16_to_f32(act[i]);
    }
    EXPECT_EQ(bad, 0) << what;
  }
}

// The forms added for a decode layer's remaining cuBLAS calls: float32 operands (the router), the product in BF16
// instead of float32 y (W_UV into o_proj's input), and [k, n] weights (W_UK applied to the query), against the twin;
// outputs outside the product poisoned with NaN. BF16 outputs: one BF16 ulp plus the float32 sums' order.
TEST(CudaSkinnyGemm, RouterWuvWukFormsMatchTwin) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(1604);
  struct FCase {
    const char* what;
    DType dtype;
    bool w_kn, bf16_out;
    int64_t m, n, k, batch, ldx, stride_x, ldw, stride_w, ld_out, stride_out;
    bool x_f32 = false;  // float32 x rounded to BF16 as read (MLA's q and attention output)
  };
  const FCase cases[] = {
      {"router f32", DType::F32, false, false, 1, 64, 2048, 1, 2048, 0, 2048, 0, 64, 0},
      {"f32 padded, 2 rows", DType::F32, false, false, 2, 100, 36, 1, 40, 0, 44, 0, 104, 0},
      {"W_UV bf16 out", DType::BF16, false, true, 1, 128, 512, 16, 8192, 512, 512, 256 * 512, 2048, 128},
      {"W_UV bf16 out, 2 rows", DType::BF16, false, true, 2, 128, 512, 16, 8192, 512, 512, 256 * 512, 2048, 128},
      {"W_UK kn", DType::BF16, true, false, 1, 512, 128, 16, 3072, 192, 512, 256 * 512, 8192, 512},
      {"W_UK kn, 2 rows", DType::BF16, true, false, 2, 512, 128, 16, 3072, 192, 512, 256 * 512, 8192, 512},
      {"kn tails", DType::BF16, true, false, 2, 136, 70, 3, 75, 75 * 2, 144, 70 * 144, 140, 140 * 2},
      {"kn bf16 out, long k", DType::BF16, true, true, 1, 264, 1000, 2, 1000, 1000, 264, 1000 * 264, 264, 264},
      {"W_UK kn, f32 x", DType::BF16, true, false, 1, 512, 128, 16, 3072, 192, 512, 256 * 512, 8192, 512, true},
      {"W_UV bf16 out, f32 x", DType::BF16, false, true, 2, 128, 512, 16, 8192, 512, 512, 256 * 512, 2048, 128, true},
      {"f32 x, float out, tails", DType::BF16, false, false, 2, 37, 24, 3, 28, 56, 32, 37 * 32, 40, 80, true},
  };
  for (const FCase& c : cases) {
    const std::string what = fmt::format("{}: m {} n {} k {} batch {}", c.what, c.m, c.n, c.k, c.batch);
    const size_t es = dtype_size(c.dtype);
    const int64_t x_elems = (c.batch - 1) * c.stride_x + (c.m - 1) * c.ldx + c.k;
    const int64_t w_elems = (c.batch - 1) * c.stride_w + (c.w_kn ? c.k : c.n) * c.ldw;
    const int64_t y_elems = (c.batch - 1) * c.stride_out + (c.m - 1) * c.ld_out + c.n;
    std::normal_distribution<float> d(0.0f, 1.0f);
    auto bytes_of = [&](int64_t n, float scale, bool f32) {
      std::vector<unsigned char> v(static_cast<size_t>(n) * (f32 ? 4 : es));
      for (int64_t i = 0; i < n; ++i) {
        const float f = d(rng) * scale;
        if (f32) {
          std::memcpy(v.data() + i * 4, &f, 4);
        } else {
          const uint16_t h = f32_to_bf16(f);
          std::memcpy(v.data() + i * 2, &h, 2);
        }
      }
      return v;
    };
    const std::vector<unsigned char> x = bytes_of(x_elems, 1.0f, c.x_f32 || c.dtype == DType::F32),
                                     w = bytes_of(w_elems, 0.05f, c.dtype == DType::F32);
    std::vector<float> y(static_cast<size_t>(y_elems), kNaN);
    std::vector<uint16_t> act(static_cast<size_t>(y_elems), 0x7fc1);  // BF16 NaN
    SkinnyGemmParams p{.x = x.data(), .w = w.data(), .dtype = c.dtype, .m = c.m, .n = c.n, .k = c.k,
                       .batch = c.batch, .w_kn = c.w_kn, .x_f32 = c.x_f32};
    p.ldx = c.ldx, p.stride_x = c.stride_x, p.ldw = c.ldw, p.stride_w = c.stride_w;
    if (c.bf16_out) {
      p.act = act.data(), p.ld_act = c.ld_out, p.stride_act = c.stride_out;
    } else {
      p.y = y.data(), p.ldy = c.ld_out, p.stride_y = c.stride_out;
    }
    kernels::twin::skinny_gemm(p);
    const auto dx = to_device(x), dw = to_device(w);
    auto dy = to_device(std::vector<float>(static_cast<size_t>(y_elems), kNaN));
    auto da = to_device(std::vector<uint16_t>(static_cast<size_t>(y_elems), 0x7fc1));
    p.x = dx.get(), p.w = dw.get();
    if (c.bf16_out) p.act = da.get(); else p.y = dy.as<float>();
    ASSERT_TRUE(kernels::cuda::skinny_gemm_supported(p)) << what;
    kernels::cuda::skinny_gemm(p, nullptr);
    const double sum_err = 4e-7 * static_cast<double>(c.k) * 0.05 + 1e-6;
    int64_t bad = 0, checked = 0;
    if (c.bf16_out) {
      const std::vector<uint16_t> got = to_host<uint16_t>(da, act.size());
      for (size_t i = 0; i < act.size(); ++i) {
        const bool nan_want = act[i] == 0x7fc1, nan_got = std::isnan(bf16_to_f32(got[i]));
        const double want = bf16_to_f32(act[i]), have = bf16_to_f32(got[i]);
        const bool ok = nan_want ? nan_got : !nan_got && std::fabs(have - want) <= std::ldexp(std::fabs(want), -7) + sum_err;
        checked += nan_want ? 0 : 1;
        if (!ok && bad++ < 3) ADD_FAILURE() << what << ": act[" << i << "] = " << have << ", twin " << want;
      }
    } else {
      const std::vector<float> got = to_host<float>(dy, y.size());
      for (size_t i = 0; i < y.size(); ++i) {
        const bool ok = std::isnan(y[i]) ? std::isnan(got[i])
                                         : std::fabs(static_cast<double>(got[i]) - y[i]) <=
                                               sum_err * std::max(1.0, std::fabs(double{y[i]}));
        checked += std::isnan(y[i]) ? 0 : 1;
        if (!ok && bad++ < 3) ADD_FAILURE() << what << ": y[" << i << "] = " << got[i] << ", twin " << y[i];
      }
    }
    EXPECT_EQ(bad, 0) << what;
    EXPECT_EQ(checked, c.batch * c.m * c.n) << what << ": every output of the product written by the twin";
  }
}

// W_UK's [k, n] launch with latent_append beside it (SkinnyGemmParams::append: a decode step's two launches as one)
// against latent_append then the plain product, two launches: q_lat, the latent rows, q (its rope columns rotated)
// and the whole cache pool (NaN-poisoned slots elsewhere) byte for byte. V2-Lite's 16 heads and V2's 128 (a grid of
// 129 rows), one and two decode rows, BF16 and FP8 (FlashMLA's 656-byte slots) pools; refused on other forms.
TEST(CudaSkinnyGemm, WukWithLatentAppendIsTheAppendThenTheProductBitForBit) {
  MLABENCH_REQUIRE_GPU();
  struct AppendCase {
    int64_t m, nh;
    DType cache_type;
  };
  const int64_t nope = 128, rd = 64, v = 128, qk = nope + rd, kvl = 512, cw = kvl + rd, n_pos = 64, n_slots = 40;
  std::mt19937 rng(1313);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto randn = [&](int64_t n, float scale) {
    std::vector<float> out(static_cast<size_t>(n));
    for (float& f : out) f = nd(rng) * scale;
    return out;
  };
  std::vector<float> cos(static_cast<size_t>(n_pos * rd / 2)), sin(cos.size());
  for (int64_t p = 0; p < n_pos; ++p)
    for (int64_t i = 0; i < rd / 2; ++i) {
      const double a = static_cast<double>(p) * std::pow(10000.0, -2.0 * static_cast<double>(i) / static_cast<double>(rd));
      cos[static_cast<size_t>(p * rd / 2 + i)] = static_cast<float>(std::cos(a));
      sin[static_cast<size_t>(p * rd / 2 + i)] = static_cast<float>(std::sin(a));
    }
  const auto d_cos = to_device(cos), d_sin = to_device(sin);
  for (const AppendCase& c : {AppendCase{1, 16, DType::BF16}, AppendCase{2, 16, DType::BF16},
                              AppendCase{1, 16, DType::F8_E4M3}, AppendCase{2, 128, DType::BF16}}) {
    SCOPED_TRACE(fmt::format("rows {} heads {} cache {}", c.m, c.nh, dtype_name(c.cache_type)));
    const std::vector<float> q = randn(c.m * c.nh * qk, 1.0f), ckv = randn(c.m * cw, 2.0f), norm_w = randn(kvl, 1.0f);
    const std::vector<uint16_t> kv_b = random_bf16(static_cast<size_t>(c.nh * (nope + v) * kvl), rng, 0.05f);
    const std::vector<int32_t> positions = {17, 63};
    const std::vector<int64_t> slots = {23, 5};
    const int64_t slot_bytes = c.cache_type == DType::F8_E4M3 ? kernels::Fp8SlotLayout::mla(kvl, rd).bytes()
                                                              : cw * static_cast<int64_t>(dtype_size(c.cache_type));
    const auto d_w = to_device(kv_b), d_nw = to_device(norm_w), d_pos = to_device(positions), d_slots = to_device(slots);
    struct Out {
      std::vector<float> q_lat, latent, q;
      std::vector<uint8_t> cache;
    };
    auto run = [&](bool fused) {
      auto d_q = to_device(q), d_ckv = to_device(ckv);
      auto d_q_lat = to_device(std::vector<float>(static_cast<size_t>(c.m * c.nh * kvl), kNaN));
      auto d_cache = to_device(std::vector<uint8_t>(static_cast<size_t>(n_slots * slot_bytes), 0xff));
      const kernels::LatentAppendParams ap{
          .latent = d_ckv.as<float>(), .ld = cw, .kv_lora = kvl, .rope_dim = rd, .norm_weight = d_nw.as<float>(),
          .eps = 1e-6f, .q = d_q.as<float>(), .ld_q = c.nh * qk, .n_heads = c.nh, .q_head_stride = qk,
          .q_rope_offset = nope, .interleaved = true, .cos = d_cos.as<float>(), .sin = d_sin.as<float>(),
          .positions = d_pos.as<int32_t>(), .cache = d_cache.get(), .cache_type = c.cache_type,
          .slots = d_slots.as<int64_t>(), .n_rows = c.m};
      SkinnyGemmParams uk{.y = d_q_lat.as<float>(), .ldy = c.nh * kvl, .stride_y = kvl, .x = d_q.get(), .ldx = c.nh * qk,
                          .stride_x = qk, .w = d_w.get(), .ldw = kvl, .stride_w = (nope + v) * kvl,
                          .dtype = DType::BF16, .m = c.m, .n = kvl, .k = nope, .batch = c.nh, .w_kn = true,
                          .x_f32 = true};
      if (fused) {
        uk.append = ap;
      } else {
        kernels::cuda::latent_append(ap, nullptr);
      }
      EXPECT_TRUE(kernels::cuda::skinny_gemm_supported(uk));
      kernels::cuda::skinny_gemm(uk, nullptr);
      MLABENCH_CUDA(cudaDeviceSynchronize());
      return Out{to_host<float>(d_q_lat, static_cast<size_t>(c.m * c.nh * kvl)), to_host<float>(d_ckv, ckv.size()),
                 to_host<float>(d_q, q.size()), to_host<uint8_t>(d_cache, static_cast<size_t>(n_slots * slot_bytes))};
    };
    const Out apart = run(false), fused = run(true);
    auto same = [](const auto& a, const auto& b) {
      return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])) == 0;
    };
    EXPECT_TRUE(same(fused.q_lat, apart.q_lat)) << "q_lat";
    EXPECT_TRUE(same(fused.latent, apart.latent)) << "latent rows";
    EXPECT_TRUE(same(fused.q, apart.q)) << "q";
    EXPECT_TRUE(same(fused.cache, apart.cache)) << "cache pool";
    EXPECT_FALSE(same(fused.q, q)) << "q's rope columns rotated";
    EXPECT_FALSE(std::isnan(fused.q_lat[0]));
  }
  // The append rides the [k, n] form only.
  const std::vector<float> dummy(16, 0.0f);
  SkinnyGemmParams plain{.y = nullptr, .ldy = 64, .x = dummy.data(), .ldx = 64, .w = dummy.data(), .ldw = 64,
                         .dtype = DType::BF16, .m = 1, .n = 64, .k = 64};
  plain.append.latent = const_cast<float*>(dummy.data());
  EXPECT_FALSE(kernels::cuda::skinny_gemm_supported(plain));
}

TEST(CudaSkinnyGemm, SaysWhereItDoesNotRun) {
  MLABENCH_REQUIRE_GPU();
  const auto buf = to_device(std::vector<uint16_t>(4096));
  const SkinnyGemmParams ok{.y = reinterpret_cast<float*>(buf.get()), .ldy = 16, .x = buf.get(), .ldx = 16,
                            .w = buf.get(), .ldw = 16, .m = 1, .n = 16, .k = 16};
  EXPECT_TRUE(kernels::cuda::skinny_gemm_supported(ok));
  SkinnyGemmParams p = ok;
  p.dtype = DType::F16;
  EXPECT_FALSE(kernels::cuda::skinny_gemm_supported(p));
  p = ok;
  p.k = p.ldx = p.ldw = 12;  // not whole 16-byte chunks
  EXPECT_FALSE(kernels::cuda::skinny_gemm_supported(p));
  EXPECT_THROW(kernels::cuda::skinny_gemm(p, nullptr), std::exception);
  p = ok;
  p.x = static_cast<const char*>(buf.get()) + 2;
  EXPECT_FALSE(kernels::cuda::skinny_gemm_supported(p));
  p = ok;
  p.m = kernels::kSkinnyMaxRows + 1;
  EXPECT_THROW(kernels::cuda::skinny_gemm(p, nullptr), std::exception);
  p = ok;
  p.w_kn = true;
  EXPECT_TRUE(kernels::cuda::skinny_gemm_supported(p));
  p.m = kernels::kSkinnyKnMaxRows + 1;  // the [k, n] form reduces in shared memory: two rows at most
  EXPECT_FALSE(kernels::cuda::skinny_gemm_supported(p));
  p = ok;
  p.w_kn = true;
  p.n = 12;  // [k, n] rows in whole 16-byte chunks
  EXPECT_FALSE(kernels::cuda::skinny_gemm_supported(p));
  p = ok;
  p.dtype = DType::F32;
  p.act = buf.get();  // float32 products go to y, never to act
  p.ld_act = 16;
  EXPECT_FALSE(kernels::cuda::skinny_gemm_supported(p));
  EXPECT_THROW(kernels::cuda::skinny_gemm(p, nullptr), std::exception);
}

// The split output (MLA's q_proj and kv_a_proj as one weight stream): each part equals, bit for bit, the kernel run
// on its own rows alone, and the twin to float32 rounding; padding and the rows past m keep their NaN.
TEST(CudaSkinnyGemm, SplitOutputEqualsTheTwoProductsBitForBit) {
  MLABENCH_REQUIRE_GPU();
  std::mt19937 rng(1603);
  struct Split {
    int64_t m, n1, n2, k, pad;
  };
  // V2-Lite q_proj + kv_a, DeepSeek-V2 q_a_proj + kv_a, a small uneven pair with padded outputs.
  for (const Split c : {Split{1, 3072, 576, 2048, 0}, Split{2, 1536, 576, 5120, 0}, Split{2, 40, 9, 64, 3}}) {
    const std::string what = fmt::format("split m {} n {} + {} k {} pad {}", c.m, c.n1, c.n2, c.k, c.pad);
    const int64_t ldy = c.n1 + c.pad, ldy2 = c.n2 + c.pad, rows = c.m + 1;  // one NaN row past m
    const std::vector<uint16_t> x = random_bf16(static_cast<size_t>(c.m * c.k), rng, 1.0f);
    const std::vector<uint16_t> w = random_bf16(static_cast<size_t>((c.n1 + c.n2) * c.k), rng, 0.05f);
    const std::vector<float> poison1(static_cast<size_t>(rows * ldy), kNaN), poison2(static_cast<size_t>(rows * ldy2), kNaN);
    const auto dx = to_device(x), dw = to_device(w);
    auto y = to_device(poison1), y2 = to_device(poison2), a = to_device(poison1), b = to_device(poison2);
    SkinnyGemmParams split{.y = y.as<float>(), .ldy = ldy, .x = dx.get(), .ldx = c.k, .w = dw.get(), .ldw = c.k,
                           .m = c.m, .n = c.n1 + c.n2, .k = c.k, .y2 = y2.as<float>(), .ldy2 = ldy2, .n_y = c.n1};
    ASSERT_TRUE(kernels::cuda::skinny_gemm_supported(split)) << what;
    kernels::cuda::skinny_gemm(split, nullptr);
    kernels::cuda::skinny_gemm({.y = a.as<float>(), .ldy = ldy, .x = dx.get(), .ldx = c.k, .w = dw.get(), .ldw = c.k,
                                .m = c.m, .n = c.n1, .k = c.k},
                               nullptr);
    kernels::cuda::skinny_gemm({.y = b.as<float>(), .ldy = ldy2, .x = dx.get(), .ldx = c.k,
                                .w = static_cast<const uint16_t*>(dw.get()) + c.n1 * c.k, .ldw = c.k, .m = c.m,
                                .n = c.n2, .k = c.k},
                               nullptr);
    const std::vector<float> gy = to_host<float>(y, poison1.size()), gy2 = to_host<float>(y2, poison2.size());
    const std::vector<float> ga = to_host<float>(a, poison1.size()), gb = to_host<float>(b, poison2.size());
    EXPECT_EQ(std::memcmp(gy.data(), ga.data(), gy.size() * 4), 0) << what << ": y differs from the first rows alone";
    EXPECT_EQ(std::memcmp(gy2.data(), gb.data(), gy2.size() * 4), 0) << what << ": y2 differs from the second rows alone";
    // The twin on the host, to float32 rounding.
    std::vector<float> ty(poison1), ty2(poison2);
    SkinnyGemmParams t = split;
    t.y = ty.data(), t.y2 = ty2.data(), t.x = x.data(), t.w = w.data();
    kernels::twin::skinny_gemm(t);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < c.n1 + c.n2; ++j) {
        const bool first = j < c.n1;
        const int64_t at = first ? i * ldy + j : i * ldy2 + (j - c.n1);
        const float g = (first ? gy : gy2)[static_cast<size_t>(at)], r = (first ? ty : ty2)[static_cast<size_t>(at)];
        if (i >= c.m) {
          EXPECT_TRUE(std::isnan(g)) << what << ": row " << i << " past m written";
        } else {
          EXPECT_NEAR(g, r, 4e-7 * static_cast<double>(c.k) * 0.05 + 1e-6) << what << " (" << i << ", " << j << ")";
        }
      }
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = c.n1; j < ldy; ++j) EXPECT_TRUE(std::isnan(gy[static_cast<size_t>(i * ldy + j)])) << what;
  }
}

// Blas::linear sends up to kSkinnyEngineRows rows to skinny_gemm and more to cuBLAS; both give the same product to float32 rounding.
TEST(CudaSkinnyGemm, BlasLinearAgreesAcrossTheRowThreshold) {
  MLABENCH_REQUIRE_GPU();
  if (!gpu::Blas::skinny_enabled()) GTEST_SKIP() << "MLABENCH_SKINNY_GEMM=0: linear() is cuBLAS at every row count";
  std::mt19937 rng(1602);
  const int64_t n = 1536, k = 2048, rows = 16;
  const std::vector<uint16_t> x = random_bf16(static_cast<size_t>(rows * k), rng, 1.0f);
  const std::vector<uint16_t> w = random_bf16(static_cast<size_t>(n * k), rng, 0.05f);
  const auto dx = to_device(x), dw = to_device(w);
  gpu::DeviceBuffer all(static_cast<size_t>(rows * n) * 4, "y"), few(static_cast<size_t>(8 * n) * 4, "y8");
  gpu::Blas blas(nullptr);
  blas.linear(all.as<float>(), n, dx.get(), k, dw.get(), k, DType::BF16, rows, n, k);  // cuBLAS
  const int64_t few_rows = kernels::kSkinnyEngineRows;
  blas.linear(few.as<float>(), n, dx.get(), k, dw.get(), k, DType::BF16, few_rows, n, k);  // skinny_gemm
  const std::vector<float> a = to_host<float>(all, static_cast<size_t>(few_rows * n)), b = to_host<float>(few, a.size());
  EXPECT_LT(test::max_rel_diff(b, a), 2e-5);
}

}  // namespace
}  // namespace mlabench
