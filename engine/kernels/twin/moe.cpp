// CPU twins of the DeepSeekMoE kernels (engine/kernels/cuda/moe.cu): router (softmax or sigmoid scores, greedy
// or group-limited top-k), the stable expert sort of (token, expert) pairs, the row gather into expert order, the
// weighted combine back into token order, and the pointer arrays of the per-pair batched GEMM.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "engine/core/fp8.h"
#include "engine/kernels/twin/checks.h"
#include "engine/kernels/twin/moe_checks.h"
#include "engine/kernels/twin/twin.h"

namespace mlabench::kernels::twin {
namespace {

// The row of the expert-ordered buffers that pair p maps to (kernel_params.h, MoeRowMap).
int64_t map_row(const MoeRowMap& m, int64_t p) {
  if (m.mode == MoeRowMode::PAIR) return p;
  const int32_t e = m.topk_idx[p], r = m.rank[p];
  if (e == kExpertElsewhere && r < 0) return -1;  // another rank's expert: no row here (the GPU's map_row too)
  MLABENCH_CHECK(r >= 0, "moe row map: pair {} has rank {} (expert {}). HINT: run moe_permute on the same topk_idx "
                 "first; a negative rank marks an expert id out of range", p, r, e);
  if (m.mode == MoeRowMode::PADDED) {
    MLABENCH_CHECK(r < m.capacity, "moe row map (PADDED): pair {} is row {} of expert {} but capacity is {}. "
                   "HINT: capacity must be at least the largest per-expert count", p, r, e, m.capacity);
    return static_cast<int64_t>(e) * m.capacity + r;
  }
  return static_cast<int64_t>(m.offsets[e]) + r;
}

void check_map(const MoeRowMap& m) {
  MLABENCH_CHECK(m.mode == MoeRowMode::PAIR || (m.topk_idx && m.rank), "moe row map: topk_idx and rank are "
                 "needed outside PAIR mode. HINT: pass the moe_permute outputs");
  MLABENCH_CHECK(m.mode != MoeRowMode::COMPACT || m.offsets, "moe row map (COMPACT): offsets is null. HINT: pass "
                 "moe_permute's offsets");
  MLABENCH_CHECK(m.mode != MoeRowMode::PADDED || m.capacity > 0, "moe row map (PADDED): capacity {} <= 0. HINT: "
                 "set capacity to the rows reserved per expert", m.capacity);
}

}  // namespace

void router(const RouterParams& p) {
  const int32_t E = p.n_experts, K = p.top_k;
  MLABENCH_CHECK(E > 0 && K > 0 && K <= E, "router: top_k {} with {} experts. HINT: need 1 <= top_k <= n_experts",
                 K, E);
  MLABENCH_CHECK(p.scoring == RouterScoring::SOFTMAX || p.scoring == RouterScoring::SIGMOID,
                 "router: scoring {}. HINT: SOFTMAX or SIGMOID", static_cast<int>(p.scoring));
  MLABENCH_CHECK(p.held_begin >= 0 && p.held_count >= 0 && p.held_begin + p.held_count <= E &&
                     (p.held_count > 0 || p.held_begin == 0),
                 "router: held experts [{}, {} + {}) of {}. HINT: expert parallelism holds a block of the router's "
                 "experts (held_count 0: all of them, held_begin 0)", p.held_begin, p.held_begin, p.held_count, E);
  const bool grouped = p.method == RouterMethod::GROUP_LIMITED_GREEDY;
  MLABENCH_CHECK(!grouped || (p.n_group > 0 && E % p.n_group == 0 && p.topk_group > 0 && p.topk_group <= p.n_group),
                 "router: {} experts, n_group {}, topk_group {}. HINT: n_group must divide n_experts and "
                 "1 <= topk_group <= n_group", E, p.n_group, p.topk_group);
  std::vector<float> s(static_cast<size_t>(E));
  std::vector<float> gscore(static_cast<size_t>(grouped ? p.n_group : 0));
  std::vector<bool> keep(gscore.size()), taken(static_cast<size_t>(E));
  for (int64_t t = 0; t < p.n_tokens; ++t) {
    const float* l = p.logits + t * E;
    if (p.scoring == RouterScoring::SIGMOID) {
      for (int32_t e = 0; e < E; ++e) s[e] = 1.0f / (1.0f + std::exp(-l[e]));
    } else {
      float mx = l[0];
      for (int32_t e = 1; e < E; ++e) mx = l[e] > mx ? l[e] : mx;
      float sum = 0.0f;
      for (int32_t e = 0; e < E; ++e) sum += (s[e] = std::exp(l[e] - mx));
      for (int32_t e = 0; e < E; ++e) s[e] /= sum;
    }

    if (grouped) {
      const int32_t per = E / p.n_group;
      for (int32_t g = 0; g < p.n_group; ++g) {
        float m = s[g * per];
        for (int32_t i = 1; i < per; ++i) m = s[g * per + i] > m ? s[g * per + i] : m;
        gscore[g] = m;
        keep[g] = false;
      }
      for (int32_t k = 0; k < p.topk_group; ++k) {  // best remaining group, ties to the lower group
        int32_t best = -1;
        for (int32_t g = 0; g < p.n_group; ++g)
          if (!keep[g] && (best < 0 || gscore[g] > gscore[best])) best = g;
        keep[best] = true;
      }
      for (int32_t e = 0; e < E; ++e)
        if (!keep[e / per]) s[e] = 0.0f;  // masked experts stay selectable (as zeros), as the reference
    }

    std::fill(taken.begin(), taken.end(), false);
    float wsum = 0.0f;
    int32_t* idx = p.topk_idx + t * K;
    float* w = p.topk_weight + t * K;
    for (int32_t k = 0; k < K; ++k) {  // best remaining expert, ties to the lower index
      int32_t best = -1;
      for (int32_t e = 0; e < E; ++e)
        if (!taken[e] && (best < 0 || s[e] > s[best])) best = e;
      taken[best] = true;
      idx[k] = best;
      w[k] = s[best];
      wsum += s[best];
    }
    for (int32_t k = 0; k < K; ++k) {
      w[k] = (K > 1 && p.norm_topk_prob) ? w[k] / (wsum + 1e-20f) : w[k] * p.routed_scaling_factor;
      // Expert parallelism: local ids of the held experts, kExpertElsewhere for the others (as the GPU's).
      const int32_t local = idx[k] - p.held_begin;
      if (p.held_count > 0) idx[k] = local >= 0 && local < p.held_count ? local : kExpertElsewhere;
    }
  }
}

void norm_router(const NormRouterParams& p) {
  checks::check_norm_router(p);
  rms_norm(p.norm);
  const auto* out = static_cast<const float*>(p.norm.out);
  const int64_t H = p.norm.dim, E = p.router.n_experts;
  for (int64_t t = 0; t < p.norm.n_rows; ++t)
    for (int64_t e = 0; e < E; ++e) {
      float acc = 0.0f;
      for (int64_t h = 0; h < H; ++h) acc += out[t * p.norm.ld_out + h] * p.router_w[e * H + h];
      p.logits[t * E + e] = acc;
    }
  RouterParams r = p.router;
  r.logits = p.logits;
  r.n_tokens = p.norm.n_rows;
  router(r);
}

void moe_permute(const MoePermuteParams& p) {
  MLABENCH_CHECK(p.n_experts > 0 && p.top_k > 0 && p.n_tokens >= 0, "moe_permute: n_experts {}, top_k {}, "
                 "n_tokens {}. HINT: pass the router's shapes", p.n_experts, p.top_k, p.n_tokens);
  const int64_t n_pairs = p.n_tokens * p.top_k;
  std::fill(p.counts, p.counts + p.n_experts, 0);
  for (int64_t q = 0; q < n_pairs; ++q) {
    const int32_t e = p.topk_idx[q];
    MLABENCH_CHECK(e == kExpertElsewhere || (e >= 0 && e < p.n_experts), "moe_permute: pair {} names expert {} of "
                   "{}. HINT: topk_idx must come from the router of this layer (kExpertElsewhere: held by another "
                   "rank)", q, e, p.n_experts);
    if (e == kExpertElsewhere) {  // no row on this rank, as the GPU kernel's pair_expert
      p.rank[q] = -1;
      continue;
    }
    p.rank[q] = p.counts[e]++;  // pairs visited in ascending q: a stable sort
  }
  int32_t acc = 0;
  for (int32_t e = 0; e < p.n_experts; ++e) {
    p.offsets[e] = acc;
    acc += p.counts[e];
  }
  p.offsets[p.n_experts] = acc;
}

void moe_gather(const MoeGatherParams& p) {
  MLABENCH_CHECK(p.elem_type == DType::BF16 || p.elem_type == DType::F16 || p.elem_type == DType::F32,
                 "moe_gather: elem_type {}. HINT: the GEMM dtype is BF16, F16 or F32", dtype_name(p.elem_type));
  MLABENCH_CHECK(p.hidden >= 0 && p.ld_x >= p.hidden && p.ld_out >= p.hidden, "moe_gather: hidden {}, ld_x {}, "
                 "ld_out {}. HINT: leading dimensions count elements and are >= hidden", p.hidden, p.ld_x, p.ld_out);
  check_map(p.map);
  checks::check_moe_gather_fp8(p, "moe_gather");
  const size_t es = dtype_size(p.elem_type);
  const auto* x = static_cast<const char*>(p.x);
  auto* out = static_cast<char*>(p.out);
  const int64_t groups = (p.hidden + kFp8Block - 1) / kFp8Block;
  for (int64_t q = 0; q < p.n_tokens * p.top_k; ++q) {
    const int64_t row = map_row(p.map, q);
    if (row < 0) continue;  // an expert held elsewhere
    const char* src = x + (q / p.top_k) * p.ld_x * es;
    if (p.out_q == nullptr) {
      std::memcpy(out + row * p.ld_out * es, src, static_cast<size_t>(p.hidden) * es);
      continue;
    }
    // The FP8 form: the row through the quantiser's twin, as a gather and then fp8_quantize_rows would leave it.
    fp8_quantize_rows({.x = src, .x_type = p.elem_type, .ld_x = p.hidden, .q = p.out_q + row * p.ld_out,
                       .ld_q = p.hidden, .scale = p.out_scale + row * groups, .scale_row_stride = groups,
                       .scale_group_stride = 1, .rows = 1, .k = p.hidden});
  }
}

void moe_combine(const MoeCombineParams& p) {
  MLABENCH_CHECK(p.hidden >= 0 && p.ld_y >= p.hidden && p.ld_out >= p.hidden, "moe_combine: hidden {}, ld_y {}, "
                 "ld_out {}. HINT: leading dimensions count elements and are >= hidden", p.hidden, p.ld_y, p.ld_out);
  check_map(p.map);
  MLABENCH_CHECK((p.y == nullptr) != (p.y_bf16 == nullptr) || p.n_tokens == 0,
                 "moe_combine: y and y_bf16 are both {}. HINT: pass the expert rows once, float32 or BF16",
                 p.y ? "set" : "null");
  // Every pair's row, mapped (and checked) before the parallel loop: an exception must not leave an OpenMP region.
  const int64_t n_pairs = std::max<int64_t>(0, p.n_tokens * p.top_k);
  std::vector<int64_t> rows(static_cast<size_t>(n_pairs));
  for (int64_t q = 0; q < n_pairs; ++q) {
    const int64_t row = map_row(p.map, q);
    rows[static_cast<size_t>(q)] = row < 0 ? -1 : row * p.ld_y;  // -1: an expert held elsewhere, skipped
  }
  // Tokens are independent: the threads share them, each output one sum over j ascending.
#pragma omp parallel for schedule(static) if (n_pairs * p.hidden >= (int64_t{1} << 20))
  for (int64_t t = 0; t < p.n_tokens; ++t) {
    const int64_t* r = rows.data() + t * p.top_k;
    const float* w = p.topk_weight + t * p.top_k;
    float* o = p.out + t * p.ld_out;
    for (int64_t i = 0; i < p.hidden; ++i) {
      float acc = 0.0f;
      for (int32_t j = 0; j < p.top_k; ++j) {
        if (r[j] < 0) continue;
        const int64_t at = r[j] + i;
        acc += w[j] * (p.y ? p.y[at] : bf16_to_f32(p.y_bf16[at]));
      }
      o[i] = p.accumulate ? o[i] + acc : acc;
    }
  }
}

void moe_pair_pointers(const MoePairPointersParams& p) {
  for (int64_t q = 0; q < p.n_pairs; ++q) {
    p.a[q] = p.weights + p.topk_idx[q] * p.expert_stride_bytes;
    p.b[q] = p.x + q * p.ld_x_bytes;
    p.c[q] = p.y + q * p.ld_y_bytes;
  }
}

}  // namespace mlabench::kernels::twin

namespace mlabench::kernels::checks {

void check_moe_gather_fp8(const MoeGatherParams& p, const char* who) {
  if (p.out_q == nullptr) return;
  MLABENCH_CHECK(p.out == nullptr && p.out_scale != nullptr &&
                     (p.elem_type == DType::BF16 || p.elem_type == DType::F32),
                 "{}: the FP8 form with out {}, out_scale {}, elem_type {}. HINT: codes go to out_q and scales to "
                 "out_scale (out null), from BF16 or F32 rows", who, p.out ? "set" : "null",
                 p.out_scale ? "set" : "null", dtype_name(p.elem_type));
}

void check_norm_router(const NormRouterParams& p) {
  check_rms_norm(p.norm);
  MLABENCH_CHECK(p.norm.n_rows >= 1 && p.norm.out_type == DType::F32 && p.norm.ld_out >= p.norm.dim && p.router_w &&
                     p.logits && p.router.n_experts > 0,
                 "norm_router: {} rows, out {} (ld {}), router_w {}, logits {}, {} experts. HINT: out is the "
                 "router's float32 input [rows, hidden]; router_w [n_experts, hidden] and the logits scratch "
                 "[rows, n_experts] are float32 and set",
                 p.norm.n_rows, dtype_name(p.norm.out_type), p.norm.ld_out, p.router_w ? "set" : "null",
                 p.logits ? "set" : "null", p.router.n_experts);
}

}  // namespace mlabench::kernels::checks
