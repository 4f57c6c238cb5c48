// CPU twin of gpu::MoeLayer (engine/gpu/moe_layer.h): one DeepSeekMoE layer on host memory, step by step as the
// GPU runs it and through the same twins (router, moe_permute, moe_gather, silu_mul, moe_combine), in the row
// layout moe_row_mode picks, so the row maps a GPU step uses are the ones exercised here. Every GEMM is a
// moe_grouped_gemm twin (one expert for the plain ones): float32 sums of the dtype operands converted to float.
// Expert inputs and the SwiGLU hidden rows are rounded to dtype as on the GPU. Under expert parallelism
// (held_experts) only the held block's pairs get rows, and never in PAIR layout, as on a GPU rank.
#include <cstdint>
#include <vector>

#include "core/check.h"
#include "engine/kernels/twin/moe_checks.h"
#include "engine/kernels/twin/twin.h"

namespace mlabench::kernels {

namespace checks {

void check_moe_layer(const MoeLayerParams& p) {
  MLABENCH_CHECK(p.dtype == DType::BF16 || p.dtype == DType::F16 || p.dtype == DType::F32,
                 "moe_layer: dtype {}. HINT: the GEMM operands are BF16, F16 or F32", dtype_name(p.dtype));
  MLABENCH_CHECK(p.n_tokens >= 0 && p.hidden > 0 && p.inter > 0 && p.shared_inter >= 0 && p.n_experts > 0 &&
                     p.top_k > 0 && p.top_k <= p.n_experts,
                 "moe_layer: n_tokens {}, hidden {}, inter {}, shared_inter {}, n_experts {}, top_k {}. HINT: "
                 "hidden, inter and n_experts must be positive, shared_inter >= 0 and 1 <= top_k <= n_experts",
                 p.n_tokens, p.hidden, p.inter, p.shared_inter, p.n_experts, p.top_k);
  MLABENCH_CHECK(p.n_tokens * p.top_k <= INT32_MAX,
                 "moe_layer: {} tokens x top_k {} pairs. HINT: row offsets are "
                 "int32; run fewer tokens per step",
                 p.n_tokens, p.top_k);
  MLABENCH_CHECK(p.n_tokens == 0 || (p.x && p.x_c && p.out && p.router_w && p.experts_gate_up && p.experts_down),
                 "moe_layer: x, x_c, out, router_w, experts_gate_up or experts_down is null. HINT: fill every "
                 "MoeLayerParams buffer");
  MLABENCH_CHECK(p.held_begin >= 0 && p.held_experts >= 0 && p.held_begin + p.held_experts <= p.n_experts &&
                     (p.held_experts > 0 || p.held_begin == 0),
                 "moe_layer: held experts [{}, {} + {}) of {}. HINT: under expert parallelism a rank holds a block of "
                 "the router's experts (held_experts 0: all of them, held_begin 0)",
                 p.held_begin, p.held_begin, p.held_experts, p.n_experts);
  MLABENCH_CHECK(p.n_tokens == 0 || p.shared_inter == 0 || (p.shared_gate_up && p.shared_down),
                 "moe_layer: shared_inter {} but shared_gate_up or shared_down is null. HINT: set shared_inter = 0 "
                 "for a model without shared experts",
                 p.shared_inter);
}

}  // namespace checks

namespace twin {

namespace {

// y[rows, n] = x[rows, k] . w[n, k]^T: the grouped GEMM twin with one expert.
void linear(float* y, int64_t ld_y, const void* x, int64_t ld_x, const void* w, DType dt, int64_t rows, int64_t n,
            int64_t k) {
  const int32_t offsets[2] = {0, static_cast<int32_t>(rows)};
  moe_grouped_gemm({.y = y, .ld_y = ld_y, .x = x, .ld_x = ld_x, .w = w, .expert_stride = n * k, .dtype = dt,
                    .offsets = offsets, .n_experts = 1, .n = n, .k = k, .max_rows = rows});
}

const char* at(const void* base, int64_t elems, DType dt) {
  return static_cast<const char*>(base) + static_cast<size_t>(elems) * dtype_size(dt);
}

// The routed experts' two GEMMs and SwiGLU on the expert-ordered rows xe -> ye, in map.mode's layout.
void routed_experts(const MoeLayerParams& p, const MoeRowMap& map, const std::vector<int32_t>& idx,
                    const std::vector<int32_t>& counts, const void* xe, std::vector<float>& ge, void* he,
                    std::vector<float>& ye, int64_t rows) {
  const int64_t T = p.n_tokens, H = p.hidden, I = p.inter, E = p.local_experts();  // the experts held here
  const DType dt = p.dtype;
  const int64_t gu_stride = 2 * I * H, dn_stride = H * I;  // elements per expert
  auto gate_up = [&](int64_t r0, int64_t n, int64_t e) {   // ge rows [r0, r0 + n) <- expert e's [2I, H]
    linear(ge.data() + r0 * 2 * I, 2 * I, at(xe, r0 * H, dt), H, at(p.experts_gate_up, e * gu_stride, dt), dt, n, 2 * I,
           H);
  };
  auto down = [&](int64_t r0, int64_t n, int64_t e) {  // ye rows [r0, r0 + n) <- expert e's [H, I]
    linear(ye.data() + r0 * H, H, at(he, r0 * I, dt), I, at(p.experts_down, e * dn_stride, dt), dt, n, H, I);
  };
  auto silu = [&]() {
    silu_mul(
        {.out = he, .out_type = dt, .ld_out = I, .gate_up = ge.data(), .ld_in = 2 * I, .inter = I, .n_rows = rows});
  };
  if (map.mode == MoeRowMode::PAIR) {  // row q is pair q
    for (int64_t q = 0; q < T * p.top_k; ++q) gate_up(q, 1, idx[static_cast<size_t>(q)]);
    silu();
    for (int64_t q = 0; q < T * p.top_k; ++q) down(q, 1, idx[static_cast<size_t>(q)]);
  } else if (map.mode == MoeRowMode::PADDED) {  // expert e's rows start at e * capacity
    for (int64_t e = 0; e < E; ++e) gate_up(e * map.capacity, counts[static_cast<size_t>(e)], e);
    silu();
    for (int64_t e = 0; e < E; ++e) down(e * map.capacity, counts[static_cast<size_t>(e)], e);
  } else {  // COMPACT: the grouped GEMM over moe_permute's offsets, at most n_tokens rows per expert
    moe_grouped_gemm({.y = ge.data(), .ld_y = 2 * I, .x = xe, .ld_x = H, .w = p.experts_gate_up,
                      .expert_stride = gu_stride, .dtype = dt, .offsets = map.offsets,
                      .n_experts = static_cast<int32_t>(E), .n = 2 * I, .k = H, .max_rows = T});
    silu();
    moe_grouped_gemm({.y = ye.data(), .ld_y = H, .x = he, .ld_x = I, .w = p.experts_down, .expert_stride = dn_stride,
                      .dtype = dt, .offsets = map.offsets, .n_experts = static_cast<int32_t>(E), .n = H, .k = I,
                      .max_rows = T});
  }
}

}  // namespace

void moe_layer(const MoeLayerParams& p) {
  checks::check_moe_layer(p);
  const int64_t T = p.n_tokens, H = p.hidden, I = p.inter, SI = p.shared_inter, E = p.n_experts, K = p.top_k;
  const int32_t EL = p.local_experts();  // the routed experts held here (expert parallelism: a block of E)
  if (T == 0) return;
  const DType dt = p.dtype;
  const size_t es = dtype_size(dt);

  std::vector<float> logits(static_cast<size_t>(T * E));  // [T, E] float32
  linear(logits.data(), E, p.x, H, p.router_w, DType::F32, T, E, H);
  std::vector<int32_t> idx(static_cast<size_t>(T * K));
  std::vector<float> w(idx.size());
  router({.logits = logits.data(), .n_tokens = T, .n_experts = p.n_experts, .top_k = p.top_k, .method = p.method,
          .n_group = p.n_group, .topk_group = p.topk_group, .norm_topk_prob = p.norm_topk_prob,
          .routed_scaling_factor = p.routed_scaling_factor, .topk_idx = idx.data(), .topk_weight = w.data(),
          .scoring = p.scoring, .held_begin = p.held_begin, .held_count = p.held_experts});

  if (SI > 0) {  // shared experts first, straight into out: down(silu(gate(x)) * up(x))
    std::vector<float> gu(static_cast<size_t>(T * 2 * SI));  // [T, 2 SI]
    std::vector<char> h(static_cast<size_t>(T * SI) * es);   // [T, SI] dt
    linear(gu.data(), 2 * SI, p.x_c, H, p.shared_gate_up, dt, T, 2 * SI, H);
    silu_mul({.out = h.data(), .out_type = dt, .ld_out = SI, .gate_up = gu.data(), .ld_in = 2 * SI, .inter = SI,
              .n_rows = T});
    linear(p.out, H, h.data(), SI, p.shared_down, dt, T, H, SI);  // [T, H]
  }

  std::vector<int32_t> counts(static_cast<size_t>(EL)), offsets(static_cast<size_t>(EL) + 1), rank(idx.size());
  moe_permute({.topk_idx = idx.data(), .n_tokens = T, .top_k = p.top_k, .n_experts = EL, .counts = counts.data(),
               .offsets = offsets.data(), .rank = rank.data()});
  MoeRowMap map{.mode = moe_row_mode(T, K, EL, EL < E), .topk_idx = idx.data(), .rank = rank.data(),
                .offsets = offsets.data()};
  if (map.mode == MoeRowMode::PADDED) map.capacity = static_cast<int32_t>(T);
  const int64_t rows = map.mode == MoeRowMode::PADDED ? EL * T : T * K;  // expert-ordered rows

  std::vector<char> xe(static_cast<size_t>(rows * H) * es), he(static_cast<size_t>(rows * I) * es);
  std::vector<float> ge(static_cast<size_t>(rows * 2 * I)), ye(static_cast<size_t>(rows * H));
  moe_gather({.out = xe.data(), .ld_out = H, .x = p.x_c, .ld_x = H, .elem_type = dt, .hidden = H, .n_tokens = T,
              .top_k = p.top_k, .map = map});
  routed_experts(p, map, idx, counts, xe.data(), ge, he.data(), ye, rows);
  moe_combine({.out = p.out, .ld_out = H, .y = ye.data(), .ld_y = H, .topk_weight = w.data(), .hidden = H,
               .n_tokens = T, .top_k = p.top_k, .accumulate = SI > 0, .map = map});
}

}  // namespace twin

}  // namespace mlabench::kernels
