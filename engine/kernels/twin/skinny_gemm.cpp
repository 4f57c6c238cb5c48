// CPU twin of skinny_gemm (engine/kernels/cuda/skinny_gemm.cu), and the parameter check the launcher shares with
// it. A plain loop: each output is one float32 sum over k ascending of float(x) * float(w) (w read as [n, k], or as
// [k, n] with w_kn), then beta * y added, or written to act in dtype.
// The kernel sums in another order (per-thread partials, then a tree), so the two agree to float32 rounding.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "engine/core/fp8.h"
#include "engine/kernels/twin/checks.h"
#include "engine/kernels/twin/twin.h"

namespace mlabench::kernels {

namespace checks {

void check_skinny_gemm(const SkinnyGemmParams& p) {
  MLABENCH_CHECK(p.dtype == DType::BF16 || p.dtype == DType::F16 || p.dtype == DType::F32,
                 "skinny_gemm: dtype {}. HINT: the operands are BF16, F16 or F32", dtype_name(p.dtype));
  MLABENCH_CHECK(p.m >= 0 && p.m <= kSkinnyMaxRows && p.n > 0 && p.k > 0 && p.batch >= 1,
                 "skinny_gemm: m {}, n {}, k {}, batch {}. HINT: 0 <= m <= {} (larger row counts take a GEMM), n and "
                 "k positive, batch >= 1",
                 p.m, p.n, p.k, p.batch, kSkinnyMaxRows);
  const bool to_act = p.swiglu || p.act != nullptr;
  const int64_t y_cols = p.y2 != nullptr ? p.n_y : p.n;  // a split output's first part
  MLABENCH_CHECK(p.ldx >= p.k && p.ldw >= (p.w_kn ? p.n : p.k) && (to_act ? p.ld_act >= p.n : p.ldy >= y_cols),
                 "skinny_gemm: ldx {}, ldw {} (k {}, n {}, w_kn {}), ldy {}, ld_act {}. HINT: leading dimensions count "
                 "elements: ldx >= k, ldw >= k (>= n for w_kn), and ldy >= n (ld_act when act is written)",
                 p.ldx, p.ldw, p.k, p.n, p.w_kn, p.ldy, p.ld_act);
  MLABENCH_CHECK(!p.w_kn || (!p.swiglu && p.w_index == nullptr),
                 "skinny_gemm: w_kn with {}. HINT: the [k, n] weight form has no SwiGLU epilogue and no w_index",
                 p.swiglu ? "the SwiGLU epilogue" : "a w_index");
  MLABENCH_CHECK(!p.x_f32 || p.dtype == DType::BF16,
                 "skinny_gemm: float32 x with {} weights. HINT: x_f32 rounds x to BF16 for BF16 weights; float32 "
                 "weights take float32 x as dtype F32", dtype_name(p.dtype));
  MLABENCH_CHECK(p.act == nullptr || p.swiglu || (p.dtype != DType::F32 && p.beta == 0.0f),
                 "skinny_gemm: act output with dtype {} and beta {}. HINT: the product goes to act in BF16 or F16 and "
                 "overwrites it (beta 0); float32 products go to y",
                 dtype_name(p.dtype), p.beta);
  MLABENCH_CHECK(p.beta == 0.0f || p.beta == 1.0f, "skinny_gemm: beta {}. HINT: 0 overwrites y, 1 accumulates into it",
                 p.beta);
  MLABENCH_CHECK(p.m == 0 || ((to_act || p.y != nullptr) && p.x && p.w),
                 "skinny_gemm: y, x or w is null. HINT: w_index is the only optional pointer");
  MLABENCH_CHECK(!p.swiglu || (p.dtype != DType::F32 && p.ld_act >= p.n),
                 "skinny_gemm: SwiGLU epilogue with dtype {} and ld_act {} (n {}). HINT: it writes BF16 or F16 "
                 "activations, ld_act >= n",
                 dtype_name(p.dtype), p.ld_act, p.n);
  MLABENCH_CHECK(p.y2 == nullptr || (p.batch == 1 && !p.swiglu && p.act == nullptr && !p.w_kn && p.n_y > 0 &&
                                     p.n_y < p.n && p.ldy >= p.n_y && p.ldy2 >= p.n - p.n_y),
                 "skinny_gemm: split output y2 with batch {}, n_y {} of n {}, ldy {}, ldy2 {}{}{}. HINT: y2 takes weight "
                 "rows [n_y, n) of one float32 product (batch 1, 0 < n_y < n, ldy >= n_y, ldy2 >= n - n_y)",
                 p.batch, p.n_y, p.n, p.ldy, p.ldy2, p.swiglu || p.act ? ", an act output" : "",
                 p.w_kn ? ", w_kn" : "");
  if (p.append.latent != nullptr) {
    MLABENCH_CHECK(p.w_kn, "skinny_gemm: latent_append beside a product without w_kn. HINT: the append rides the [k, "
                   "n] form's launch (MLA's W_UK); other products take it as its own launch");
    check_latent_append(p.append);
  }
  if (p.norm.weight != nullptr) {
    check_input_norm(p.norm, p.x, p.ldx, p.dtype, p.m, p.k, "skinny_gemm");
    MLABENCH_CHECK(p.batch == 1 && !p.w_kn && !p.x_f32,
                   "skinny_gemm: an input norm with batch {}{}{}. HINT: the norm's form takes one problem of [n, k] "
                   "weights (no w_kn or x_f32; the SwiGLU epilogue is fine)",
                   p.batch, p.w_kn ? ", w_kn" : "", p.x_f32 ? ", x_f32" : "");
  }
  const int64_t w_rows = p.w_kn ? p.k : p.swiglu ? 2 * p.n : p.n, w_cols = p.w_kn ? p.n : p.k;
  MLABENCH_CHECK(p.batch == 1 || p.w_index != nullptr || p.stride_w >= w_rows * p.ldw - (p.ldw - w_cols),
                 "skinny_gemm: stride_w {} with batch {} and no w_index. HINT: consecutive problems' weights are "
                 "stride_w elements apart (>= n x ldw), or w_index names each problem's weight block",
                 p.stride_w, p.batch);
}

void check_moe_decode_ffn(const MoeDecodeFfnParams& p) {
  MLABENCH_CHECK(p.hidden > 0 && p.inter > 0 && p.shared_inter >= 0 && p.n_experts > 0 && p.top_k >= 1 &&
                     p.top_k <= kMoeDecodeMaxTopK && p.top_k <= p.n_experts,
                 "moe_decode_ffn: hidden {}, inter {}, shared_inter {}, n_experts {}, top_k {}. HINT: sizes positive "
                 "(shared_inter may be 0), 1 <= top_k <= min(n_experts, {})",
                 p.hidden, p.inter, p.shared_inter, p.n_experts, p.top_k, kMoeDecodeMaxTopK);
  if (p.routes())
    MLABENCH_CHECK(p.route.n_tokens == 1 && p.route.n_experts == p.n_experts && p.route.top_k == p.top_k &&
                       p.n_experts <= kMoeDecodeRouteMaxExperts && p.route.topk_idx && p.route.topk_weight,
                   "moe_decode_ffn: the route form with {} token(s), {} of {} experts (route: top {} of {}){}. HINT: "
                   "route is the one token's router (n_tokens 1, the same n_experts and top_k, at most {} experts) "
                   "and writes its topk_idx / topk_weight",
                   p.route.n_tokens, p.top_k, p.n_experts, p.route.top_k, p.route.n_experts,
                   p.route.topk_idx && p.route.topk_weight ? "" : ", no top-k outputs", kMoeDecodeRouteMaxExperts);
  const bool have_topk = p.routes() || (p.topk_idx && p.topk_weight);
  MLABENCH_CHECK(p.x && have_topk && p.experts_gate_up && p.experts_down && p.act && p.out &&
                     (p.shared_inter == 0 || (p.shared_gate_up && p.shared_down)),
                 "moe_decode_ffn: a null operand (shared_inter {}). HINT: only the shared experts' weights may be "
                 "null, and only without shared experts",
                 p.shared_inter);
  if (p.fp8())
    MLABENCH_CHECK(p.experts_down_scale && (p.shared_inter == 0 || (p.shared_gate_up_scale && p.shared_down_scale)) &&
                       p.hidden % kFp8Block == 0 && p.inter % kFp8Block == 0 && p.shared_inter % kFp8Block == 0,
                   "moe_decode_ffn: FP8 weights with hidden {}, inter {}, shared_inter {} or a missing scale grid. "
                   "HINT: every FP8 matrix needs its 128 x 128 scales, and the sizes must be multiples of 128 (each "
                   "quantisation group inside one matrix); take the FP8 layer's COMPACT path otherwise",
                   p.hidden, p.inter, p.shared_inter);
  if (p.fp8())
    MLABENCH_CHECK(p.act_q && p.act_scale && p.act_arrivals,
                   "moe_decode_ffn: FP8 weights without act_q, act_scale or act_arrivals. HINT: the FP8 kernels "
                   "quantise act into that scratch (codes [U], scales and zeroed counters [U / 128])");
}

}  // namespace checks

namespace twin {

namespace {

// FP8 (p.fp8()): x, then act over the concatenated columns, quantised as fp8_quantize_rows does; each group's e4m3
// products summed in float32 (k ascending) times x_scale * w_scale, the groups added in order; a pair's down groups
// times its routing weight.
void moe_decode_ffn_fp8(const MoeDecodeFfnParams& p) {
  const int64_t H = p.hidden, I = p.inter, SI = p.shared_inter, U = SI + p.top_k * I, G = kFp8Block;
  const int64_t ld_h = fp8_weight_scale_ld(H), ld_i = fp8_weight_scale_ld(I), ld_si = fp8_weight_scale_ld(SI);
  auto quantize = [](const void* v, int64_t k, std::vector<uint8_t>& q, std::vector<float>& s) {
    q.resize(static_cast<size_t>(k));
    s.resize(static_cast<size_t>(k / kFp8Block));
    fp8_quantize_rows({.x = v, .x_type = DType::BF16, .ld_x = k, .q = q.data(), .ld_q = k, .scale = s.data(),
                       .scale_row_stride = k / kFp8Block, .scale_group_stride = 1, .rows = 1, .k = k});
  };
  auto group_dot = [](const uint8_t* a, const uint8_t* b) {
    float s = 0.0f;
    for (int64_t c = 0; c < kFp8Block; ++c) s += e4m3_to_f32(a[c]) * e4m3_to_f32(b[c]);
    return s;
  };
  // Row r of a [rows, k] e4m3 matrix with its scale grid (rows of ld floats): sum over the groups.
  auto row_dot = [&](const uint8_t* xq, const float* xs, const uint8_t* w, const float* ws, int64_t r, int64_t k,
                     int64_t ld) {
    float acc = 0.0f;
    for (int64_t g = 0; g < k / G; ++g) acc += group_dot(xq + g * G, w + r * k + g * G) * (xs[g] * ws[(r / G) * ld + g]);
    return acc;
  };
  std::vector<uint8_t> xq, aq;
  std::vector<float> xs, as;
  quantize(p.x, H, xq, xs);
  auto* act = static_cast<uint16_t*>(p.act);
  const auto* shared_gu = static_cast<const uint8_t*>(p.shared_gate_up);
  const auto* experts_gu = static_cast<const uint8_t*>(p.experts_gate_up);
  // Act columns, then outputs, are independent sums: the threads share them.
#pragma omp parallel for schedule(static) if (U * H >= (int64_t{1} << 20))
  for (int64_t u = 0; u < U; ++u) {
    float g = 0.0f, up = 0.0f;
    if (u < SI) {
      g = row_dot(xq.data(), xs.data(), shared_gu, p.shared_gate_up_scale, u, H, ld_h);
      up = row_dot(xq.data(), xs.data(), shared_gu, p.shared_gate_up_scale, SI + u, H, ld_h);
    } else {
      const int64_t k = (u - SI) / I, j = (u - SI) % I, e = p.topk_idx[k];
      const uint8_t* w = experts_gu + e * 2 * I * H;
      const float* ws = p.experts_gate_up_scale + e * (2 * I / G) * ld_h;
      g = row_dot(xq.data(), xs.data(), w, ws, j, H, ld_h);
      up = row_dot(xq.data(), xs.data(), w, ws, I + j, H, ld_h);
    }
    act[u] = f32_to_bf16(g / (1.0f + std::exp(-g)) * up);  // as twin::silu_mul
  }
  quantize(p.act, U, aq, as);
  std::copy(aq.begin(), aq.end(), p.act_q);
  std::copy(as.begin(), as.end(), p.act_scale);
  const auto* shared_dn = static_cast<const uint8_t*>(p.shared_down);
  const auto* experts_dn = static_cast<const uint8_t*>(p.experts_down);
#pragma omp parallel for schedule(static) if (U * H >= (int64_t{1} << 20))
  for (int64_t j = 0; j < H; ++j) {
    float s = 0.0f;
    for (int64_t gu = 0; gu < U / G; ++gu) {
      const int64_t u = gu * G;
      if (u < SI) {
        s += group_dot(aq.data() + u, shared_dn + j * SI + u) * (as[gu] * p.shared_down_scale[(j / G) * ld_si + u / G]);
        continue;
      }
      const int64_t k = (u - SI) / I, c = (u - SI) % I, e = p.topk_idx[k];
      const float* ws = p.experts_down_scale + e * (H / G) * ld_i;
      s += p.topk_weight[k] *
           (group_dot(aq.data() + u, experts_dn + e * H * I + j * I + c) * (as[gu] * ws[(j / G) * ld_i + c / G]));
    }
    p.out[j] = s;
  }
}

}  // namespace

// Each act column one float32 sum over hidden ascending; each output one float32 sum over the concatenated columns
// ascending of (s(u) * act[u]) * down_u[j].
void moe_decode_ffn(const MoeDecodeFfnParams& p) {
  checks::check_moe_decode_ffn(p);
  if (p.routes()) {  // the route form: the router's top-k first, then the same FFN over its outputs
    router(p.route);
    MoeDecodeFfnParams q = p;
    q.topk_idx = p.route.topk_idx;
    q.topk_weight = p.route.topk_weight;
    q.route = {};
    return moe_decode_ffn(q);
  }
  if (p.fp8()) return moe_decode_ffn_fp8(p);
  const int64_t H = p.hidden, I = p.inter, SI = p.shared_inter, U = SI + p.top_k * I;
  auto bf16 = [](const void* base, int64_t i) { return bf16_to_f32(static_cast<const uint16_t*>(base)[i]); };
  // Column u's gate/up weight block (gate row at row_of, up row at row_of + up_off) and down column.
  struct Col {
    const void* gate_up;
    int64_t row, up_off;
    const void* down;
    int64_t ld_down, col;
    float scale;
  };
  // The expert indices, checked before the parallel loops below (an exception must not leave an OpenMP region).
  for (int64_t k = 0; k < p.top_k; ++k) {
    const int64_t e = p.topk_idx[k];
    MLABENCH_CHECK(e >= 0 && e < p.n_experts, "moe_decode_ffn: expert index {} at {} of {} experts. HINT: topk_idx "
                   "comes from the router", e, k, p.n_experts);
  }
  auto col = [&](int64_t u) {
    if (u < SI) return Col{p.shared_gate_up, u, SI, p.shared_down, SI, u, 1.0f};
    const int64_t k = (u - SI) / I, j = (u - SI) % I, e = p.topk_idx[k];
    const auto* gu = static_cast<const uint16_t*>(p.experts_gate_up) + e * 2 * I * H;
    const auto* dn = static_cast<const uint16_t*>(p.experts_down) + e * H * I;
    return Col{gu, j, I, dn, I, j, p.topk_weight[k]};
  };
  auto* act = static_cast<uint16_t*>(p.act);
  // Act columns, then outputs, are independent sums: the threads share them.
#pragma omp parallel for schedule(static) if (U * H >= (int64_t{1} << 20))
  for (int64_t u = 0; u < U; ++u) {
    const Col c = col(u);
    float g = 0.0f, up = 0.0f;
    for (int64_t h = 0; h < H; ++h) {
      const float xv = bf16(p.x, h);
      g += xv * bf16(c.gate_up, c.row * H + h);
      up += xv * bf16(c.gate_up, (c.row + c.up_off) * H + h);
    }
    act[u] = f32_to_bf16(g / (1.0f + std::exp(-g)) * up);  // as twin::silu_mul
  }
#pragma omp parallel for schedule(static) if (U * H >= (int64_t{1} << 20))
  for (int64_t j = 0; j < H; ++j) {
    float s = 0.0f;
    for (int64_t u = 0; u < U; ++u) {
      const Col c = col(u);
      s += (c.scale * bf16_to_f32(act[u])) * bf16(c.down, j * c.ld_down + c.col);
    }
    p.out[j] = s;
  }
}

namespace {

// Output (i, j) of problem b, its weights wb elements into w: one float32 sum over k ascending, then the epilogue.
// A function of its own (not a lambda shared by an OpenMP region), so the compiler keeps p's fields in registers.
void skinny_output(const SkinnyGemmParams& p, int64_t b, int64_t wb, int64_t i, int64_t j) {
  const size_t es = dtype_size(p.dtype);
  auto value = [&](const void* base, int64_t at) {
    const char* v = static_cast<const char*>(base) + static_cast<size_t>(at) * es;
    if (p.dtype == DType::F32) {
      float f;
      std::memcpy(&f, v, 4);
      return f;
    }
    uint16_t h;
    std::memcpy(&h, v, 2);
    return p.dtype == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
  };
  auto x_value = [&](int64_t at) {  // x_f32: a float32 x rounded to BF16 (as a cast before the product)
    if (!p.x_f32) return value(p.x, at);
    return bf16_to_f32(f32_to_bf16(static_cast<const float*>(p.x)[at]));
  };
  auto dot = [&](int64_t row) {
    float s = 0.0f;
    for (int64_t c = 0; c < p.k; ++c)
      s += x_value(b * p.stride_x + i * p.ldx + c) * value(p.w, p.w_kn ? wb + c * p.ldw + row : wb + row * p.ldw + c);
    return s;
  };
  if (p.swiglu) {
    const float g = dot(j), u = dot(p.n + j);
    const float o = g / (1.0f + std::exp(-g)) * u;  // as twin::silu_mul
    static_cast<uint16_t*>(p.act)[b * p.stride_act + i * p.ld_act + j] =
        p.dtype == DType::BF16 ? f32_to_bf16(o) : f32_to_f16(o);
    return;
  }
  const float s = dot(j);
  if (p.act != nullptr) {  // the product itself in dtype
    static_cast<uint16_t*>(p.act)[b * p.stride_act + i * p.ld_act + j] =
        p.dtype == DType::BF16 ? f32_to_bf16(s) : f32_to_f16(s);
    return;
  }
  float& out = p.y2 != nullptr && j >= p.n_y ? p.y2[i * p.ldy2 + (j - p.n_y)] : p.y[b * p.stride_y + i * p.ldy + j];
  out = p.beta == 0.0f ? s : out + s;
}

}  // namespace

void skinny_gemm(const SkinnyGemmParams& p) {
  checks::check_skinny_gemm(p);
  if (p.norm.weight != nullptr) rms_norm(p.norm);  // x is the norm's out: the kernel's one launch is these two
  if (p.append.latent != nullptr) latent_append(p.append);  // independent of the product (the caller's contract)
  // The problems' weight offsets, checked before the parallel loops (an exception must not leave an OpenMP region).
  std::vector<int64_t> w_offset(static_cast<size_t>(p.batch));
  for (int64_t b = 0; b < p.batch; ++b) {
    const int64_t wb = (p.w_index ? p.w_index[b] : b) * p.stride_w;
    MLABENCH_CHECK(wb >= 0, "skinny_gemm: problem {} has weight offset {}. HINT: w_index entries are >= 0", b, wb);
    w_offset[static_cast<size_t>(b)] = wb;
  }
  // Problems one after another (with beta 1 two of them may add into one y); within one, the outputs (i, j) are
  // distinct (ldy >= n): the threads share them.
  for (int64_t b = 0; b < p.batch; ++b) {
#pragma omp parallel for collapse(2) schedule(static) if (p.m * p.n * p.k >= (int64_t{1} << 20))
    for (int64_t i = 0; i < p.m; ++i)
      for (int64_t j = 0; j < p.n; ++j) skinny_output(p, b, w_offset[static_cast<size_t>(b)], i, j);
  }
}

}  // namespace twin
}  // namespace mlabench::kernels
