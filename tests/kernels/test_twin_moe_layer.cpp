// twin::moe_layer (engine/kernels/twin/moe_layer.cpp) against the CPU reference engine's DeepSeekMoE
// (cpu::moe_ffn, engine/model/cpu_ffn.h) on a small DeepSeek-V2 config with random weights: greedy and
// group-limited routing, softmax and sigmoid scores, norm_topk_prob on and off, with and without shared experts,
// a token count in each row layout (PAIR, PADDED, COMPACT), F32 (float32 rounding apart) and BF16 (the expert
// inputs and hidden rows rounded to BF16 on the twin's side only, so BF16 rounding apart).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/kernels/cpu/moe_router.h"
#include "engine/kernels/cpu/ops.h"
#include "engine/kernels/twin/twin.h"
#include "engine/model/config.h"
#include "engine/model/cpu_ffn.h"
#include "engine/weights/model_weights.h"
#include "tests/test_util.h"

namespace mlabench {
namespace {

using kernels::MoeRowMode;

// The bundled tiny model's shapes (tests/data/models/mlabench-tiny-dsv2/config.json) cut to two layers, one
// dense and one MoE: 16 experts of width 24, top-4, hidden 96.
ModelConfig small_config(DType dt, bool grouped, bool norm, int64_t n_shared) {
  nlohmann::json j = {
      {"architectures", {"DeepseekV2ForCausalLM"}},
      {"model_type", "deepseek_v2"},
      {"vocab_size", 64},
      {"hidden_size", 96},
      {"intermediate_size", 192},
      {"moe_intermediate_size", 24},
      {"num_hidden_layers", 2},
      {"num_attention_heads", 2},
      {"num_key_value_heads", 2},
      {"q_lora_rank", nullptr},
      {"kv_lora_rank", 16},
      {"qk_nope_head_dim", 8},
      {"qk_rope_head_dim", 8},
      {"v_head_dim", 8},
      {"n_routed_experts", 16},
      {"n_shared_experts", n_shared},
      {"num_experts_per_tok", 4},
      {"first_k_dense_replace", 1},
      {"topk_method", grouped ? "group_limited_greedy" : "greedy"},
      {"n_group", grouped ? 4 : 1},
      {"topk_group", grouped ? 2 : 1},
      {"routed_scaling_factor", 2.5},
      {"norm_topk_prob", norm},
      {"max_position_embeddings", 256},
      {"rope_theta", 10000},
      {"rms_norm_eps", 1e-6},
      {"torch_dtype", std::string(dtype_torch_name(dt))},
  };
  return config_from_json(j, "test config");
}

// The layer's weights in MoeLayerParams' stacked layouts: routed experts [E, 2I, H] (gate rows, then up rows)
// and [E, H, I], shared [2 SI, H] and [H, SI], the router widened to float32.
struct PackedMoe {
  std::vector<float> router;
  std::vector<uint8_t> gate_up, down, shared_gate_up, shared_down;
};

void append(std::vector<uint8_t>& out, const TensorView& t) {
  const auto* p = static_cast<const uint8_t*>(t.data);
  out.insert(out.end(), p, p + t.nbytes());
}

PackedMoe pack(const ModelConfig& c, const LayerWeights& L) {
  PackedMoe m;
  m.router.resize(static_cast<size_t>(L.router.numel()));
  convert_to_f32(L.router.dtype, L.router.data, m.router.data(), m.router.size());
  for (const MlpWeights& e : L.experts) {
    EXPECT_EQ(e.gate.dtype, c.dtype);
    append(m.gate_up, e.gate);
    append(m.gate_up, e.up);
    append(m.down, e.down);
  }
  if (L.has_shared) {
    append(m.shared_gate_up, L.shared.gate);
    append(m.shared_gate_up, L.shared.up);
    append(m.shared_down, L.shared.down);
  }
  return m;
}

// Router logits [T, E] in the twin's order (one float32 sum per logit, k ascending).
std::vector<float> twin_order_logits(const ModelConfig& c, const std::vector<float>& router,
                                     const std::vector<float>& x, int64_t T) {
  const int64_t H = c.hidden_size, E = c.n_routed_experts;
  std::vector<float> logits(static_cast<size_t>(T * E));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t e = 0; e < E; ++e) {
      float acc = 0.0f;
      for (int64_t i = 0; i < H; ++i) acc += x[static_cast<size_t>(t * H + i)] * router[static_cast<size_t>(e * H + i)];
      logits[static_cast<size_t>(t * E + e)] = acc;
    }
  return logits;
}

// Router logits in the twin's order, routed with cpu::moe_route.
std::vector<int32_t> twin_order_routing(const ModelConfig& c, const std::vector<float>& router,
                                        const std::vector<float>& x, int64_t T) {
  const std::vector<float> logits = twin_order_logits(c, router, x, T);
  std::vector<int32_t> idx(static_cast<size_t>(T * c.experts_per_token));
  std::vector<float> w(idx.size());
  cpu::moe_route(logits.data(), T, cpu::RouterParams::from_config(c), idx.data(), w.data());
  return idx;
}

// The reference's own routing (its router GEMM, cpu::linear).
std::vector<int32_t> reference_routing(const ModelConfig& c, const LayerWeights& L, const std::vector<float>& x,
                                       int64_t T) {
  const int64_t E = c.n_routed_experts;
  std::vector<float> logits(static_cast<size_t>(T * E));
  cpu::linear(logits.data(), E, x.data(), c.hidden_size, T, L.router);
  std::vector<int32_t> idx(static_cast<size_t>(T * c.experts_per_token));
  std::vector<float> w(idx.size());
  cpu::moe_route(logits.data(), T, cpu::RouterParams::from_config(c), idx.data(), w.data());
  return idx;
}

void run_case(const ModelConfig& c, const LayerWeights& L, const PackedMoe& m, int64_t T, std::mt19937& rng) {
  const int64_t H = c.hidden_size, K = c.experts_per_token;
  const DType dt = c.dtype;
  const size_t es = dtype_size(dt);
  std::normal_distribution<float> nd;
  std::vector<float> x(static_cast<size_t>(T * H));
  for (float& v : x) v = nd(rng);
  std::vector<uint8_t> x_c(x.size() * es);  // the experts' input: x rounded to dt
  for (size_t i = 0; i < x.size(); ++i) {
    const uint16_t h = f32_to_bf16(x[i]);
    if (dt == DType::F32)
      std::memcpy(&x_c[i * 4], &x[i], 4);
    else
      std::memcpy(&x_c[i * 2], &h, 2);
  }
  std::vector<float> ref(x.size()), out(x.size(), std::numeric_limits<float>::quiet_NaN());
  cpu::moe_ffn(c, L, x.data(), T, ref.data());

  kernels::MoeLayerParams p;
  p.x = x.data();
  p.x_c = x_c.data();
  p.out = out.data();
  p.n_tokens = T;
  p.dtype = dt;
  p.hidden = H;
  p.inter = c.moe_intermediate_size;
  p.shared_inter = L.has_shared ? c.n_shared_experts * c.moe_intermediate_size : 0;
  p.n_experts = static_cast<int32_t>(c.n_routed_experts);
  p.top_k = static_cast<int32_t>(K);
  p.method =
      c.topk_method == TopkMethod::GREEDY ? kernels::RouterMethod::GREEDY : kernels::RouterMethod::GROUP_LIMITED_GREEDY;
  p.n_group = static_cast<int32_t>(c.n_group);
  p.topk_group = static_cast<int32_t>(c.topk_group);
  p.norm_topk_prob = c.norm_topk_prob;
  p.routed_scaling_factor = static_cast<float>(c.routed_scaling_factor);
  p.scoring =
      c.scoring_func == ScoringFunc::SIGMOID ? kernels::RouterScoring::SIGMOID : kernels::RouterScoring::SOFTMAX;
  p.router_w = m.router.data();
  p.experts_gate_up = m.gate_up.data();
  p.experts_down = m.down.data();
  p.shared_gate_up = L.has_shared ? m.shared_gate_up.data() : nullptr;
  p.shared_down = L.has_shared ? m.shared_down.data() : nullptr;
  kernels::twin::moe_layer(p);

  // The two router GEMMs sum in different orders; a token whose top-k boundary sits within those roundings may
  // route differently. Such tokens are found exactly (both orders routed) and left out; they must be rare.
  const std::vector<int32_t> a = reference_routing(c, L, x, T), b = twin_order_routing(c, m.router, x, T);
  int64_t skipped = 0;
  // F32: float32 rounding apart (the same products, summed in other orders). BF16: the twin rounds the experts'
  // inputs and hidden rows to BF16 (2^-9 relative each), the reference keeps them in float32.
  const double tol = dt == DType::F32 ? 1e-5 : 1.5e-2;
  for (int64_t t = 0; t < T; ++t) {
    if (!std::equal(a.begin() + t * K, a.begin() + (t + 1) * K, b.begin() + t * K)) {
      ++skipped;
      continue;
    }
    double scale = 0;
    for (int64_t i = 0; i < H; ++i) scale = std::max(scale, double{std::fabs(ref[static_cast<size_t>(t * H + i)])});
    for (int64_t i = 0; i < H; ++i) {
      const size_t o = static_cast<size_t>(t * H + i);
      ASSERT_NEAR(out[o], ref[o], tol * scale) << "token " << t << " col " << i;
    }
  }
  EXPECT_LE(skipped, 1 + T / 50) << "tokens routed differently by the two router GEMM orders";
}

TEST(TwinMoeLayer, MatchesCpuMoeFfn) {
  std::mt19937 rng(2024);
  const int64_t kTokens[] = {3, 24, 130};  // 3 x 4 pairs <= 16 experts; <= kMoePaddedMaxTokens; past it
  const MoeRowMode kExpected[] = {MoeRowMode::PAIR, MoeRowMode::PADDED, MoeRowMode::COMPACT};
  struct Variant {
    bool grouped, norm;
    int64_t n_shared;
  };
  // Every pair of (routing method, norm_topk_prob, shared experts) values appears once (a covering array): half
  // the full product, which keeps the test at a few seconds under the sanitizers.
  const Variant kVariants[] = {{false, false, 2}, {false, true, 0}, {true, false, 0}, {true, true, 2}};
  for (DType dt : {DType::F32, DType::BF16})
    for (const Variant& v : kVariants) {
      ModelConfig c = small_config(dt, v.grouped, v.norm, v.n_shared);
      const ModelWeights weights = random_weights(c, 77);
      const LayerWeights& L = weights.layers[1];
      ASSERT_TRUE(L.is_moe);
      ASSERT_EQ(L.has_shared, v.n_shared > 0);
      const PackedMoe m = pack(c, L);
      for (ScoringFunc scoring : {ScoringFunc::SOFTMAX, ScoringFunc::SIGMOID}) {
        c.scoring_func = scoring;  // config.json parsing is not needed for it: the field drives both sides
        for (size_t i = 0; i < 3; ++i) {
          const int64_t T = kTokens[i];
          ASSERT_EQ(kernels::moe_row_mode(T, c.experts_per_token, c.n_routed_experts), kExpected[i]);
          SCOPED_TRACE(std::string(dtype_name(dt)) + (v.grouped ? " grouped" : " greedy") + (v.norm ? " norm" : "") +
                       " shared=" + std::to_string(v.n_shared) +
                       (scoring == ScoringFunc::SIGMOID ? " sigmoid" : " softmax") + " T=" + std::to_string(T));
          run_case(c, L, m, T, rng);
          if (HasFatalFailure()) return;
        }
      }
    }
}

// Expert parallelism (--tp N --ep N, issue 22): rank r holds a contiguous block of the routed experts whole
// (MoeLayerParams::held_begin / held_experts, its weights only those experts), routes every token over all of them,
// and computes only its experts' share; the shared experts run on one rank here (under --tp they are column slices
// on every rank). The ranks' outputs summed (the all-reduce after the layer) are the whole layer's up to float32
// reordering, in every row layout a rank takes (never PAIR: T = 3 runs PADDED there). A rank's router ids are the
// whole router's, shifted into its block, kExpertElsewhere for another rank's; a token none of whose experts a rank
// holds gets exactly zero from that rank.
TEST(TwinMoeLayer, ExpertParallelRanksSumToTheWholeLayer) {
  std::mt19937 rng(2025);
  ModelConfig c = small_config(DType::F32, true, false, 2);
  const ModelWeights weights = random_weights(c, 78);
  const LayerWeights& L = weights.layers[1];
  const PackedMoe m = pack(c, L);
  const int64_t H = c.hidden_size, I = c.moe_intermediate_size, E = c.n_routed_experts, K = c.experts_per_token;
  const int64_t SI = c.n_shared_experts * I;
  kernels::MoeLayerParams base;
  base.dtype = DType::F32;
  base.hidden = H;
  base.inter = I;
  base.n_experts = static_cast<int32_t>(E);
  base.top_k = static_cast<int32_t>(K);
  base.method = kernels::RouterMethod::GROUP_LIMITED_GREEDY;
  base.n_group = static_cast<int32_t>(c.n_group);
  base.topk_group = static_cast<int32_t>(c.topk_group);
  base.routed_scaling_factor = static_cast<float>(c.routed_scaling_factor);
  base.router_w = m.router.data();
  for (int64_t T : {3, 24, 130}) {
    std::normal_distribution<float> nd;
    std::vector<float> x(static_cast<size_t>(T * H));
    for (float& v : x) v = nd(rng);
    kernels::MoeLayerParams whole = base;
    whole.x = x.data();
    whole.x_c = x.data();
    whole.n_tokens = T;
    whole.shared_inter = SI;
    whole.experts_gate_up = m.gate_up.data();
    whole.experts_down = m.down.data();
    whole.shared_gate_up = m.shared_gate_up.data();
    whole.shared_down = m.shared_down.data();
    std::vector<float> ref(x.size());
    whole.out = ref.data();
    kernels::twin::moe_layer(whole);
    // The whole router's choice (the twin router, every expert held), which each rank's must renumber.
    const std::vector<float> logits = twin_order_logits(c, m.router, x, T);
    std::vector<int32_t> all(static_cast<size_t>(T * K));
    std::vector<float> w_all(all.size());
    kernels::RouterParams rp{.logits = logits.data(), .n_tokens = T, .n_experts = static_cast<int32_t>(E),
                             .top_k = static_cast<int32_t>(K), .method = base.method, .n_group = base.n_group,
                             .topk_group = base.topk_group, .routed_scaling_factor = base.routed_scaling_factor,
                             .topk_idx = all.data(), .topk_weight = w_all.data()};
    kernels::twin::router(rp);
    for (int ranks : {2, 4}) {
      SCOPED_TRACE("T=" + std::to_string(T) + " ranks=" + std::to_string(ranks));
      std::vector<float> sum(x.size(), 0.0f);
      for (int r = 0; r < ranks; ++r) {
        const int64_t b = E * r / ranks, n = E * (r + 1) / ranks - b;
        kernels::MoeLayerParams p = whole;
        p.held_begin = static_cast<int32_t>(b);
        p.held_experts = static_cast<int32_t>(n);
        p.experts_gate_up = m.gate_up.data() + b * 2 * I * H * 4;
        p.experts_down = m.down.data() + b * H * I * 4;
        p.shared_inter = r == 0 ? SI : 0;
        std::vector<float> out(x.size(), std::numeric_limits<float>::quiet_NaN());
        p.out = out.data();
        kernels::twin::moe_layer(p);
        for (int64_t t = 0; t < T; ++t) {
          bool any = false;
          for (int64_t j = 0; j < K; ++j) {
            const int32_t e = all[static_cast<size_t>(t * K + j)];
            any = any || (e >= b && e < b + n);
          }
          if (any || r == 0) continue;
          for (int64_t i = 0; i < H; ++i) ASSERT_EQ(out[static_cast<size_t>(t * H + i)], 0.0f) << "token " << t;
        }
        for (size_t i = 0; i < out.size(); ++i) sum[i] += out[i];
        // The router's ids on this rank: the whole router's, in the block's numbering.
        std::vector<int32_t> local(all.size());
        std::vector<float> w_local(all.size());
        kernels::RouterParams held = rp;
        held.topk_idx = local.data();
        held.topk_weight = w_local.data();
        held.held_begin = static_cast<int32_t>(b);
        held.held_count = static_cast<int32_t>(n);
        kernels::twin::router(held);
        EXPECT_EQ(w_local, w_all) << "every rank weighs the choice alike";
        for (size_t q = 0; q < all.size(); ++q)
          ASSERT_EQ(local[q], all[q] >= b && all[q] < b + n ? all[q] - b : kernels::kExpertElsewhere) << "pair " << q;
      }
      double worst = 0, scale = 0;
      for (size_t i = 0; i < ref.size(); ++i) {
        worst = std::max(worst, double{std::fabs(sum[i] - ref[i])});
        scale = std::max(scale, double{std::fabs(ref[i])});
      }
      EXPECT_LE(worst, 1e-5 * scale) << "the ranks' shares summed against the whole layer";
    }
  }
  // A block outside the router's experts is refused by name.
  kernels::MoeLayerParams bad = base;
  std::vector<float> x(static_cast<size_t>(2 * H), 1.0f), out(x.size());
  bad.x = x.data();
  bad.x_c = x.data();
  bad.out = out.data();
  bad.n_tokens = 2;
  bad.experts_gate_up = m.gate_up.data();
  bad.experts_down = m.down.data();
  bad.held_begin = 12;
  bad.held_experts = 8;
  test::expect_error_with([&] { kernels::twin::moe_layer(bad); }, {"held experts [12, 12 + 8) of 16", "HINT"},
                          "held experts [12, 20) of 16");
}

TEST(TwinMoeLayer, RefusesMissingSharedWeightsAndBadTopK) {
  std::vector<float> x(4 * 8, 1.0f), out(x.size()), router(4 * 8, 0.1f), experts(4 * 2 * 2 * 8, 0.1f);
  kernels::MoeLayerParams p;
  p.x = x.data();
  p.x_c = x.data();
  p.out = out.data();
  p.n_tokens = 4;
  p.dtype = DType::F32;
  p.hidden = 8;
  p.inter = 2;
  p.n_experts = 4;
  p.top_k = 2;
  p.router_w = router.data();
  p.experts_gate_up = experts.data();
  p.experts_down = experts.data();
  EXPECT_NO_THROW(kernels::twin::moe_layer(p));
  EXPECT_FALSE(std::isnan(out[0]));
  p.shared_inter = 2;
  EXPECT_ANY_THROW(kernels::twin::moe_layer(p)) << "shared_inter without shared weights";
  p.shared_inter = 0;
  p.top_k = 5;
  EXPECT_ANY_THROW(kernels::twin::moe_layer(p)) << "top_k 5 of 4 experts";
}

}  // namespace
}  // namespace mlabench
