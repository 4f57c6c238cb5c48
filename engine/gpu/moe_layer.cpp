// gpu::MoeLayer: one DeepSeekMoE layer on the GPU (engine/gpu/moe_layer.h; twin kernels::twin::moe_layer). The
// order of kernels and cuBLAS calls is the one the DeepSeek-V2 forward pass used before the layer was split out
// (router GEMM, router, shared experts into out, permute, gather, the routed experts' GEMMs and SwiGLU, combine),
// so PAIR, PADDED and the host-synchronised COMPACT path give the same bits as before. The graph-safe COMPACT
// path swaps the host-side grouping for moe_grouped_gemm, whose row counts stay on the device; on Hopper both COMPACT
// paths run moe_grouped_gemm_hopper instead (SwiGLU fused into the gate/up GEMM, no host read).
// All scratch lives in one device allocation made by the constructor: a captured graph keeps its pointers.
#include "engine/gpu/moe_layer.h"
#include "engine/gpu/phase_timer.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

#include "engine/core/fp8.h"
#include "engine/gpu/fp8_linear.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/hopper.h"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/twin/moe_checks.h"

namespace mlabench::gpu {

namespace k = mlabench::kernels;

namespace {

// Which grouped GEMM the COMPACT layout runs: MLABENCH_MOE_GEMM=hopper (the default where it runs; the shared
// experts' gate/up too) or mma (the mma.sync kernel in graph-safe steps, cuBLAS GEMMs after a host read of the
// counts in prefill), for benchmarks and tests that compare them.
enum class CompactGemm { HOPPER, MMA };
CompactGemm compact_gemm_choice() {
  static const CompactGemm c = [] {
    return env_choice("MLABENCH_MOE_GEMM", {"hopper", "mma"}) == 1 ? CompactGemm::MMA : CompactGemm::HOPPER;
  }();
  return c;
}

// The Hopper grouped GEMM's rows a tile for the routed experts: 64 where an expert holds at most
// kMoeSmallTileRows rows on average (decode batches: V2-Lite's 64 experts x 6 of 256 tokens hold 24), else 128.
// MLABENCH_MOE_TILE_ROWS=64 or 128 forces one, for benchmarks that compare them.
constexpr int64_t kMoeSmallTileRows = 32;
int32_t routed_tile_rows(int64_t pairs, int32_t n_experts) {
  static const int32_t forced = [] {  // 0: unset
    const int c = env_choice("MLABENCH_MOE_TILE_ROWS", {"64", "128"});
    return c == 0 ? 64 : c == 1 ? 128 : 0;
  }();
  if (forced != 0) return forced;
  return pairs <= kMoeSmallTileRows * n_experts ? 64 : 128;
}

}  // namespace

struct MoeLayer::Impl {
  Blas& blas;
  cudaStream_t stream;
  DType dtype;
  int64_t H, I, SI, T_max;
  int32_t E, K;   // E: the routed experts held here (all of them, or an expert-parallel rank's block)
  int32_t E_router;  // the router's experts (E, or the whole model's under expert parallelism)
  DeviceBuffer scratch;
  float* logits = nullptr;      // [T, E_router]
  int32_t* idx = nullptr;       // [T, K]
  float* w = nullptr;           // [T, K]
  int32_t* counts = nullptr;    // [E]
  int32_t* offsets = nullptr;   // [E + 1]
  int32_t* rank = nullptr;      // [T, K]
  int32_t* permute_chunks = nullptr;  // moe_permute's chunk_scratch
  void* xe = nullptr;           // [rows, H] dt: expert-ordered inputs
  float* ge = nullptr;          // [rows, 2I] (the shared experts' [T, 2 SI] first)
  void* he = nullptr;           // [rows, I] dt (the shared experts' [T, SI] first)
  float* ye = nullptr;          // [rows, H]
  const void** ptrs = nullptr;  // 6 * max(T K, E) GEMM operand pointers (PAIR, host COMPACT)
  std::vector<int32_t> host_offsets;
  bool grouped_ok = true;  // cleared once if cuBLAS has no grouped GEMM for these operand types
  // The shared experts on a second stream (shared_on_side; fp8_forward with FP8 weights): they need only x_c, so
  // they run beside the router, permute and gather. Their own cuBLAS handle (a handle's workspace serves one stream at
  // a time) and their own SwiGLU rows (the routed experts' he is written meanwhile); with FP8 weights their own
  // float32 gate/up rows too (ge_shared) and their own quantiser scratch (fp8_shared). Null where the switch is off or
  // nothing would use it.
  cudaStream_t side = nullptr;
  cudaEvent_t fork = nullptr, join = nullptr;
  std::unique_ptr<Blas> side_blas;
  void* he_shared = nullptr;   // [T, SI] dt
  float* ge_shared = nullptr;  // [T, 2 SI] float32 (FP8 weights only)
  int64_t side_runs = 0;
  // FP8 weights: the routed experts' inputs as e4m3 codes with rows-major 1 x 128 scales, and the shared experts'
  // quantiser + cuBLASLt GEMM.
  bool fp8 = false;
  uint8_t* xq = nullptr;  // [T K, H]
  float* xs = nullptr;    // [T K, ceil(H / 128)]
  uint8_t* hq = nullptr;  // [T K, I]
  float* hs = nullptr;    // [T K, ceil(I / 128)]
  // moe_decode_ffn's FP8 act codes [SI + K I], group scales and arrival counters [(SI + K I) / 128] (zeroed once).
  uint8_t* act_q = nullptr;
  float* act_scale = nullptr;
  uint32_t* act_arrivals = nullptr;
  uint32_t* router_arrivals = nullptr;  // norm_router's counter (zeroed once; every launch leaves it zero)
  std::unique_ptr<Fp8Linear> fp8_shared;

  Impl(Blas& b, cudaStream_t s, DType dt, int64_t hidden, int64_t inter, int64_t shared_inter, int32_t n_experts,
       int32_t top_k, int64_t max_tokens, int32_t local_experts)
      : blas(b),
        stream(s),
        dtype(dt),
        H(hidden),
        I(inter),
        SI(shared_inter),
        T_max(max_tokens),
        E(local_experts > 0 ? local_experts : n_experts),
        K(top_k),
        E_router(n_experts) {}
  ~Impl() {
    side_blas.reset();
    if (fork != nullptr) cudaEventDestroy(fork);
    if (join != nullptr) cudaEventDestroy(join);
    if (side != nullptr) cudaStreamDestroy(side);
  }

  const char* at(const void* base, int64_t elems) const {
    return static_cast<const char*>(base) + static_cast<size_t>(elems) * dtype_size(dtype);
  }
  void allocate();
  // The (token, expert) pairs of T tokens this layer's experts expect: all T x K, or under expert parallelism the
  // held block's share (the tile choice then sees the rows an expert gets, as the whole layer's would).
  int64_t held_pairs(int64_t T) const { return T * K * E / E_router; }
  k::RouterParams router_params(const k::MoeLayerParams& p) const;
  void route(const k::MoeLayerParams& p, bool topk);
  bool norm_and_route(const k::MoeLayerParams& p, const k::RmsNormParams& norm, bool topk);
  static bool fuse_router();
  static bool fuse_topk();
  k::MoeDecodeFfnParams decode_ffn_params(const k::MoeLayerParams& p, bool route_inside) const;
  bool decode_ffn_runs(const k::MoeLayerParams& p) const;
  bool topk_in_decode_ffn(const k::MoeLayerParams& p) const;
  void shared_experts(const k::MoeLayerParams& p);
  bool shared_on_side(const k::MoeLayerParams& p);
  void fp8_shared_experts(const k::MoeLayerParams& p, Blas& b, float* gate_up, void* act);
  bool decode_ffn(const k::MoeLayerParams& p, bool route_inside);
  void pair_experts(const k::MoeLayerParams& p);
  void padded_experts(const k::MoeLayerParams& p, int32_t capacity);
  k::MoeGroupedGemmParams shared_gate_up_params(const k::MoeLayerParams& p, void* act) const;
  bool shared_gate_up_hopper_runs(const k::MoeLayerParams& p) const;
  bool shared_gate_up_hopper(const k::MoeLayerParams& p);
  bool shared_gate_up_skinny(const k::MoeLayerParams& p);
  bool compact_experts_hopper(const k::MoeLayerParams& p);
  std::pair<k::MoeGroupedGemmParams, k::MoeGroupedGemmParams> hopper_params(const k::MoeLayerParams& p) const;
  bool hopper_runs(const k::MoeLayerParams& p) const;
  // The row layout this layer runs for n_tokens: kernels::moe_row_mode, except that where the Hopper grouped GEMM
  // runs it replaces PADDED (T x K rows computed instead of E x T, SwiGLU fused, only routed experts' weights read).
  k::MoeRowMode row_mode(const k::MoeLayerParams& p) const {
    const k::MoeRowMode m = k::moe_row_mode(p.n_tokens, K, E, E < E_router);
    return m == k::MoeRowMode::PADDED && hopper_runs(p) ? k::MoeRowMode::COMPACT : m;
  }
  // Opt-in (MLABENCH_MOE_BF16_ROWS=1): the Hopper path's routed expert rows in BF16 (the down GEMM's STORE_DT, then
  // the combine reads BF16): half of the float32 rows' bytes, written once and read once a layer (~0.8 GB each at a
  // 16K-token prefill step of V2-Lite), rounded as transformers' BF16 experts round their outputs. Off by default:
  // only the COMPACT path rounds, so a prompt's logits would depend on how it is chunked (PAIR and PADDED rows stay
  // float32): the GPU engine tests measured 0.023 against 0.005 between 64-token chunks and one pass (perf-notes,
  // issue 15 round 24).
  bool expert_rows_bf16() const {
    static const bool on = gpu::env_switch("MLABENCH_MOE_BF16_ROWS", false);
    return on && dtype == DType::BF16;
  }
  void fp8_experts(const k::MoeLayerParams& p, bool join_before_down);
  void fp8_forward(const k::MoeLayerParams& p, bool routed, bool topk_inside);
  void quantize_rows(const void* x, DType x_type, int64_t rows, int64_t cols, uint8_t* q, float* scale) {
    const int64_t groups = (cols + kFp8Block - 1) / kFp8Block;
    k::cuda::fp8_quantize_rows({.x = x, .x_type = x_type, .ld_x = cols, .q = q, .ld_q = cols, .scale = scale,
                                .scale_row_stride = groups, .scale_group_stride = 1, .rows = rows, .k = cols}, stream);
  }
  void compact_experts_graph_safe(const k::MoeLayerParams& p);
  void compact_experts_host(const k::MoeLayerParams& p);
  void silu_rows(const float* gu, void* h, int64_t rows, int64_t inter, cudaStream_t on = nullptr) {
    k::cuda::silu_mul({.out = h, .out_type = dtype, .ld_out = inter, .gate_up = gu, .ld_in = 2 * inter, .inter = inter,
                       .n_rows = rows}, on != nullptr ? on : stream);
  }
};

void MoeLayer::Impl::allocate() {
  const int64_t T = T_max, pairs = T * K;
  // PADDED reserves capacity = n_tokens rows for every expert, up to kMoePaddedMaxTokens tokens.
  const int64_t rows = std::max(pairs, int64_t{E} * std::min(T, k::kMoePaddedMaxTokens));
  const size_t es = dtype_size(dtype);
  size_t total = 0;
  auto reserve = [&](size_t bytes) {
    const size_t at = total;
    total += (bytes + 255) / 256 * 256;  // 256-byte aligned, as cudaMalloc: 16-byte GEMM rows stay aligned
    return at;
  };
  const auto n = [](int64_t v) { return static_cast<size_t>(v); };
  const size_t o_logits = reserve(n(T * E_router) * 4), o_idx = reserve(n(pairs) * 4), o_w = reserve(n(pairs) * 4);
  const size_t o_counts = reserve(n(E) * 4), o_offsets = reserve(n(E + 1) * 4), o_rank = reserve(n(pairs) * 4);
  const size_t o_chunks = reserve(n(k::moe_permute_scratch_ints(pairs, E)) * 4);
  const size_t o_xe = fp8 ? 0 : reserve(n(rows * H) * es);  // FP8: the gather writes codes (xq) instead
  const size_t o_ge = reserve(n(std::max(rows * 2 * I, T * 2 * SI)) * 4);
  const size_t o_he = reserve(n(std::max({rows * I, T * SI, SI + int64_t{K} * I})) * es);  // + moe_decode_ffn's act
  const size_t o_ye = reserve(n(rows * H) * 4);
  const size_t o_ptrs = reserve(6 * n(std::max<int64_t>(pairs, E)) * sizeof(void*));
  // MLABENCH_MOE_SHARED_STREAM (0 or 1; an A/B switch) puts the shared experts on a second stream. BF16 weights: on
  // unless 0, only where the Hopper grouped GEMM can run (the side path's condition). FP8 weights of a BF16 model, at
  // every token count but one (moe_decode_ffn's): on unless 0 (V2-Lite FP8 b16 +4.3%, 32K x 16 +3.3% on an H100;
  // docs/perf-notes.md, issue 20 round 12). Elsewhere no stream and no rows.
  const int side_setting = gpu::env_choice("MLABENCH_MOE_SHARED_STREAM", {"0", "1"});
  const bool side_stream =
      SI > 0 && dtype == DType::BF16 && side_setting != 0 &&
      (fp8 || (compact_gemm_choice() == CompactGemm::HOPPER && k::cuda::hopper::sm90a_available()));
  const size_t o_hs = side_stream ? reserve(n(T * SI) * es) : 0;
  const size_t o_gs = side_stream && fp8 ? reserve(n(T * 2 * SI) * 4) : 0;
  const auto groups = [](int64_t c) { return (c + kFp8Block - 1) / kFp8Block; };
  const size_t o_xq = fp8 ? reserve(n(pairs * H)) : 0, o_xs = fp8 ? reserve(n(pairs * groups(H)) * 4) : 0;
  const size_t o_hq = fp8 ? reserve(n(pairs * I)) : 0, o_hs8 = fp8 ? reserve(n(pairs * groups(I)) * 4) : 0;
  const int64_t U = SI + int64_t{K} * I;
  const size_t o_aq = fp8 ? reserve(n(U)) : 0, o_as = fp8 ? reserve(n(groups(U)) * 4) : 0;
  const size_t o_arr = fp8 ? reserve(n(groups(U)) * 4) : 0;
  const size_t o_router_arr = reserve(4);
  scratch = DeviceBuffer(total, "MoE layer scratch");
  char* base = scratch.as<char>();
  logits = reinterpret_cast<float*>(base + o_logits);
  idx = reinterpret_cast<int32_t*>(base + o_idx);
  w = reinterpret_cast<float*>(base + o_w);
  counts = reinterpret_cast<int32_t*>(base + o_counts);
  offsets = reinterpret_cast<int32_t*>(base + o_offsets);
  rank = reinterpret_cast<int32_t*>(base + o_rank);
  permute_chunks = reinterpret_cast<int32_t*>(base + o_chunks);
  xe = fp8 ? nullptr : base + o_xe;
  ge = reinterpret_cast<float*>(base + o_ge);
  he = base + o_he;
  ye = reinterpret_cast<float*>(base + o_ye);
  ptrs = reinterpret_cast<const void**>(base + o_ptrs);
  host_offsets.resize(static_cast<size_t>(E) + 1);
  router_arrivals = reinterpret_cast<uint32_t*>(base + o_router_arr);
  MLABENCH_CUDA(cudaMemset(router_arrivals, 0, 4));
  fuse_router();
  fuse_topk();
  if (fp8) {
    xq = reinterpret_cast<uint8_t*>(base + o_xq);
    xs = reinterpret_cast<float*>(base + o_xs);
    hq = reinterpret_cast<uint8_t*>(base + o_hq);
    hs = reinterpret_cast<float*>(base + o_hs8);
    act_q = reinterpret_cast<uint8_t*>(base + o_aq);
    act_scale = reinterpret_cast<float*>(base + o_as);
    act_arrivals = reinterpret_cast<uint32_t*>(base + o_arr);
    MLABENCH_CUDA(cudaMemset(act_arrivals, 0, n(groups(U)) * 4));  // every moe_decode_ffn launch leaves them zero
    if (SI > 0) fp8_shared = std::make_unique<Fp8Linear>(T, std::max(H, SI));
  }
  if (side_stream) {
    he_shared = base + o_hs;
    if (fp8) ge_shared = reinterpret_cast<float*>(base + o_gs);
    MLABENCH_CUDA(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));
    MLABENCH_CUDA(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
    MLABENCH_CUDA(cudaEventCreateWithFlags(&join, cudaEventDisableTiming));
    side_blas = std::make_unique<Blas>(side);
  }
}

// MLABENCH_FUSE_ROUTER (read once; allocate reads it at load, so a bad value is refused before any step).
bool MoeLayer::Impl::fuse_router() {
  static const bool on = gpu::env_switch("MLABENCH_FUSE_ROUTER", false);
  return on;
}

// MLABENCH_FUSE_TOPK (read once, at load as above; off by default): one token's top-k inside moe_decode_ffn's
// launches. Measured slower on an H100 (V2-Lite batch 1: BF16 391.5 against 410.9 tok/s, FP8 440.8 against 463.7;
// docs/perf-notes.md, issue 16 round 13): every routed gate/up CTA, ~2,100 of them over several waves, pays the
// warp's top-k on its critical path, where the router launch paid it once.
bool MoeLayer::Impl::fuse_topk() {
  static const bool on = gpu::env_switch("MLABENCH_FUSE_TOPK", false);
  return on;
}

k::RouterParams MoeLayer::Impl::router_params(const k::MoeLayerParams& p) const {
  return {.logits = logits, .n_tokens = p.n_tokens, .n_experts = E_router, .top_k = K, .method = p.method,
          .n_group = p.n_group, .topk_group = p.topk_group, .norm_topk_prob = p.norm_topk_prob,
          .routed_scaling_factor = p.routed_scaling_factor, .topk_idx = idx, .topk_weight = w, .scoring = p.scoring,
          .held_begin = p.held_begin, .held_count = p.held_experts};
}

// Router logits [T, E_router] (float32 GEMM) and, with topk, the top-k (else moe_decode_ffn's launches pick the experts).
void MoeLayer::Impl::route(const k::MoeLayerParams& p, bool topk) {
  const int64_t T = p.n_tokens;
  if (!gpu::timing_skip("router_gemm"))
    blas.linear_f32(logits, E_router, p.x, H, p.router_w, H, T, E_router, H);  // [T, E_router]
  if (topk && !gpu::timing_skip("router_topk")) k::cuda::router(router_params(p), stream);
}

// The post-attention norm that makes p.x (float32) and p.x_c (dtype) from the residual stream, then the router.
// MLABENCH_FUSE_ROUTER=1 (off by default) runs the three as one norm_router launch at decode (up to
// kNormRouterMaxRows tokens): measured slower on an H100 (V2-Lite batch 1: 2.61 against 2.47 ms a step in BF16, 2.38
// against 2.22 in FP8; docs/perf-notes.md, issue 20 round 7), so by default one decode row takes the norm into the
// router GEMM's launch instead (two launches; MLABENCH_FUSE_NORM=0: three; without topk, the top-k left to
// moe_decode_ffn, one launch fewer). True where it routed.
bool MoeLayer::Impl::norm_and_route(const k::MoeLayerParams& p, const k::RmsNormParams& norm, bool topk) {
  const bool fuse = fuse_router();
  const k::NormRouterParams fused{.norm = norm, .router_w = p.router_w, .logits = logits, .router = router_params(p),
                                  .arrivals = router_arrivals};
  // A timing experiment that leaves one of the three launches out measures them unfused.
  const bool skip_one = gpu::timing_skip("post_norm") || gpu::timing_skip("router_gemm") ||
                        gpu::timing_skip("router_topk");
  if (fuse && topk && !skip_one && k::cuda::norm_router_supported(fused)) {
    phases::at(stream, "moe: norm and router");
    k::cuda::norm_router(fused, stream);
    return true;
  }
  // One decode row (up to Blas::norm_fusion_rows()): the router GEMM computes the norm itself (skinny_gemm's norm form), its
  // CTAs writing the residual and the normed rows: one launch fewer than the norm and the GEMM.
  if (!skip_one && Blas::skinny_enabled() && norm.n_rows <= Blas::norm_fusion_rows()) {
    const k::SkinnyGemmParams g{.y = logits, .ldy = E_router, .x = norm.out, .ldx = norm.ld_out, .w = p.router_w,
                                .ldw = H, .dtype = DType::F32, .m = norm.n_rows, .n = E_router, .k = H, .norm = norm};
    if (k::cuda::skinny_gemm_supported(g)) {
      phases::at(stream, "moe: norm and router GEMM");
      k::cuda::skinny_gemm(g, stream);
      if (topk) k::cuda::router(router_params(p), stream);
      return true;
    }
  }
  if (gpu::timing_skip("post_norm")) return false;
  // rms_norm writes a second copy in BF16 or F16; a float32 model's x_c is a cast of x.
  const bool second_copy = norm.out2 == nullptr || norm.out2_type != DType::F32;
  k::RmsNormParams n = norm;
  if (!second_copy) n.out2 = nullptr;
  k::cuda::rms_norm(n, stream);
  if (!second_copy)
    k::cuda::cast({.out = norm.out2, .out_type = DType::F32, .ld_out = norm.ld_out2, .in = static_cast<const float*>(norm.out),
                   .ld_in = norm.ld_out, .n_rows = norm.n_rows, .n_cols = norm.dim},
                  stream);
  return false;
}

// The shared experts' SwiGLU written to out.
void MoeLayer::Impl::shared_experts(const k::MoeLayerParams& p) {
  const int64_t T = p.n_tokens;
  if (SI > 0) {
    if (!shared_gate_up_hopper(p) && !shared_gate_up_skinny(p)) {
      blas.linear(ge, 2 * SI, p.x_c, H, p.shared_gate_up, H, dtype, T, 2 * SI, H);  // [T, 2 SI]
      silu_rows(ge, he, T, SI);                                                     // [T, SI] dt
    }
    blas.linear(p.out, H, he, SI, p.shared_down, SI, dtype, T, H, SI);  // [T, H]
  }
}

// One token in BF16 (a batch-1 decode step): shared and routed experts and the combine in moe_decode_ffn's two
// launches instead of the PAIR path's six (docs/perf-notes.md, issue 16 round 7); with FP8 weights the same two
// launches on e4m3 codes, quantising x and act inside, instead of the FP8 path's ~12. MLABENCH_MOE_DECODE_FFN=0
// keeps the PAIR (FP8: COMPACT) path, for benchmarks that compare the two.
// With route_inside (topk_in_decode_ffn said yes) no router launch ran: the two launches pick the experts from the
// logits themselves (MoeDecodeFfnParams::route; issue 16 round 13: the router's launch cost ~7 us of a ~2.4 ms
// batch-1 step, 26 times).
bool MoeLayer::Impl::decode_ffn(const k::MoeLayerParams& p, bool route_inside) {
  if (!decode_ffn_runs(p)) return false;
  const k::MoeDecodeFfnParams d = decode_ffn_params(p, route_inside);
  const bool supported = k::cuda::moe_decode_ffn_supported(d);
  MLABENCH_CHECK(supported || !route_inside, "MoeLayer: the top-k was left to moe_decode_ffn, which refuses these "
                 "shapes (hidden {}, inter {}, {} experts). HINT: topk_in_decode_ffn must ask the same question",
                 H, I, E);
  if (!supported) return false;
  phases::at(stream, "moe: experts, one token");  // the route form's top-k too
  k::cuda::moe_decode_ffn(d, stream);
  return true;
}

// One token of a BF16 model with the skinny kernels on, and MLABENCH_MOE_DECODE_FFN not 0. Not under expert
// parallelism: its launches index the weights by the token's experts, some of which another rank holds.
bool MoeLayer::Impl::decode_ffn_runs(const k::MoeLayerParams& p) const {
  static const bool enabled = gpu::env_switch("MLABENCH_MOE_DECODE_FFN");
  return enabled && p.n_tokens == 1 && dtype == DType::BF16 && Blas::skinny_enabled() && E == E_router;
}

// Whether this forward leaves the top-k to moe_decode_ffn: it runs, MLABENCH_FUSE_TOPK is on (the A/B switch),
// norm_router is off (it routes in its own launch), no timing experiment skips a router launch, and the kernel takes
// the route form at these shapes.
bool MoeLayer::Impl::topk_in_decode_ffn(const k::MoeLayerParams& p) const {
  if (!decode_ffn_runs(p) || !fuse_topk() || fuse_router() || gpu::timing_skip("router_gemm") ||
      gpu::timing_skip("router_topk") || gpu::timing_skip("post_norm"))
    return false;
  return k::cuda::moe_decode_ffn_supported(decode_ffn_params(p, true));
}

k::MoeDecodeFfnParams MoeLayer::Impl::decode_ffn_params(const k::MoeLayerParams& p, bool route_inside) const {
  k::MoeDecodeFfnParams d{.x = p.x_c, .topk_idx = idx, .topk_weight = w, .experts_gate_up = p.experts_gate_up,
                                .experts_down = p.experts_down, .shared_gate_up = p.shared_gate_up,
                                .shared_down = p.shared_down, .hidden = H, .inter = I, .shared_inter = SI,
                                .n_experts = E, .top_k = K, .act = he, .out = p.out,
                                .experts_gate_up_scale = p.experts_gate_up_scale,
                                .experts_down_scale = p.experts_down_scale,
                                .shared_gate_up_scale = p.shared_gate_up_scale,
                                .shared_down_scale = p.shared_down_scale, .act_q = act_q, .act_scale = act_scale,
                                .act_arrivals = act_arrivals};
  if (route_inside) d.route = router_params(p);
  return d;
}

// A few tokens (decode): the shared experts' gate/up through skinny_gemm's SwiGLU epilogue, he[T, SI] in BF16.
bool MoeLayer::Impl::shared_gate_up_skinny(const k::MoeLayerParams& p) {
  if (p.n_tokens > k::kSkinnyEngineRows || !Blas::skinny_enabled()) return false;
  const k::SkinnyGemmParams g{.x = p.x_c, .ldx = H, .w = p.shared_gate_up, .ldw = H, .dtype = dtype, .m = p.n_tokens,
                              .n = SI, .k = H, .swiglu = true, .act = he, .ld_act = SI};
  if (!k::cuda::skinny_gemm_supported(g)) return false;
  k::cuda::skinny_gemm(g, stream);
  return true;
}

// The shared experts' gate/up as one expert of moe_grouped_gemm_hopper with the SwiGLU epilogue (act[T, SI] in BF16
// straight from the GEMM), for the COMPACT row counts where the routed experts take that kernel too.
k::MoeGroupedGemmParams MoeLayer::Impl::shared_gate_up_params(const k::MoeLayerParams& p, void* act) const {
  const int64_t T = p.n_tokens;
  // act[T, SI] = silu(x_c . gate^T) * (x_c . up^T), shared_gate_up = [2 SI, H].
  return {.x = p.x_c, .ld_x = H, .w = p.shared_gate_up, .expert_stride = 2 * SI * H, .dtype = dtype,
          .offsets = nullptr, .n_experts = 1, .n = SI, .k = H, .max_rows = T,
          .epilogue = k::MoeGemmEpilogue::SWIGLU, .act = act, .ld_act = SI, .rows_bound = T};
}

bool MoeLayer::Impl::shared_gate_up_hopper_runs(const k::MoeLayerParams& p) const {
  return compact_gemm_choice() == CompactGemm::HOPPER && row_mode(p) == k::MoeRowMode::COMPACT &&
         k::cuda::moe_grouped_gemm_hopper_supported(shared_gate_up_params(p, he));
}

bool MoeLayer::Impl::shared_gate_up_hopper(const k::MoeLayerParams& p) {
  if (!shared_gate_up_hopper_runs(p)) return false;
  k::cuda::moe_grouped_gemm_hopper(shared_gate_up_params(p, he), stream);
  return true;
}

// The shared experts on the side stream, forked from the layer's stream after x_c is written; the layer's stream
// joins them before the routed experts (forward). Where the Hopper grouped GEMM runs both the shared gate/up and the
// routed experts (COMPACT rows in BF16: decode batches past 128 tokens, prefill chunks), so the routed path never
// reads he_shared's neighbours. At V2-Lite batch 256 the shared pair (~40 us on an H100) overlaps the router GEMM,
// top-k, permute and gather (~28 us) instead of following them (docs/perf-notes.md, issue 16 round 11).
bool MoeLayer::Impl::shared_on_side(const k::MoeLayerParams& p) {
  if (side == nullptr || !hopper_runs(p) || !shared_gate_up_hopper_runs(p)) return false;
  const int64_t T = p.n_tokens;
  MLABENCH_CUDA(cudaEventRecord(fork, stream));
  MLABENCH_CUDA(cudaStreamWaitEvent(side, fork, 0));
  k::cuda::moe_grouped_gemm_hopper(shared_gate_up_params(p, he_shared), side);
  side_blas->linear(p.out, H, he_shared, SI, p.shared_down, SI, dtype, T, H, SI);  // [T, H]
  MLABENCH_CUDA(cudaEventRecord(join, side));
  ++side_runs;
  return true;
}

// One GEMV per (token, expert) pair: pointer arrays built on the device, then two batched cuBLAS calls.
void MoeLayer::Impl::pair_experts(const k::MoeLayerParams& p) {
  const int64_t P = p.n_tokens * K, es = static_cast<int64_t>(dtype_size(dtype));
  // One problem per (token, expert) pair, its expert's weights named by idx on the device: the weight-streaming
  // kernel (no pointer arrays) where it runs, else cuBLAS's batched GEMM over pointer arrays.
  // Per pair: he[1, I] = silu(xe . gate_e^T) * (xe . up_e^T) (the SwiGLU epilogue, BF16); ye[1, H] = he . down_e^T.
  // idx is old enough to be read before the PDL wait (w_index_early): the router wrote it before the gather (and the
  // shared experts), and the gate/up GEMV runs between it and the down GEMV.
  const k::SkinnyGemmParams gate_up{.x = xe, .ldx = H, .stride_x = H, .w = p.experts_gate_up, .ldw = H,
                                    .stride_w = 2 * I * H, .w_index = idx, .dtype = dtype, .m = 1, .n = I, .k = H,
                                    .batch = P, .swiglu = true, .act = he, .ld_act = I, .stride_act = I,
                                    .w_index_early = true};
  const k::SkinnyGemmParams down{.y = ye, .ldy = H, .stride_y = H, .x = he, .ldx = I, .stride_x = I,
                                 .w = p.experts_down, .ldw = I, .stride_w = H * I, .w_index = idx, .dtype = dtype,
                                 .m = 1, .n = H, .k = I, .batch = P, .w_index_early = true};
  if (Blas::skinny_enabled() && k::cuda::skinny_gemm_supported(gate_up) && k::cuda::skinny_gemm_supported(down)) {
    k::cuda::skinny_gemm(gate_up, stream);
    k::cuda::skinny_gemm(down, stream);
    return;
  }
  k::cuda::moe_pair_pointers({.topk_idx = idx, .n_pairs = P, .weights = static_cast<const char*>(p.experts_gate_up),
                              .expert_stride_bytes = 2 * I * H * es, .x = static_cast<const char*>(xe),
                              .ld_x_bytes = H * es, .y = reinterpret_cast<char*>(ge), .ld_y_bytes = 2 * I * 4,
                              .a = ptrs, .b = ptrs + P, .c = const_cast<void**>(ptrs + 2 * P)}, stream);
  k::cuda::moe_pair_pointers({.topk_idx = idx, .n_pairs = P, .weights = static_cast<const char*>(p.experts_down),
                              .expert_stride_bytes = H * I * es, .x = static_cast<const char*>(he),
                              .ld_x_bytes = I * es, .y = reinterpret_cast<char*>(ye), .ld_y_bytes = H * 4,
                              .a = ptrs + 3 * P, .b = ptrs + 4 * P, .c = const_cast<void**>(ptrs + 5 * P)}, stream);
  // Per pair: ge[1, 2I] = xe[1, H] . gate_up_e[2I, H]^T; ye[1, H] = he[1, I] . down_e[H, I]^T.
  blas.linear_batched(const_cast<void* const*>(ptrs + 2 * P), 2 * I, ptrs + P, H, ptrs, H, dtype, 1, 2 * I, H, P);
  silu_rows(ge, he, P, I);
  blas.linear_batched(const_cast<void* const*>(ptrs + 5 * P), H, ptrs + 4 * P, I, ptrs + 3 * P, I, dtype, 1, H, I, P);
}

// Every expert at `capacity` rows (unused rows computed and never read): two strided batched GEMMs.
void MoeLayer::Impl::padded_experts(const k::MoeLayerParams& p, int32_t capacity) {
  const int64_t C = capacity;
  // Per expert: ge[C, 2I] = xe[C, H] . gate_up_e[2I, H]^T; ye[C, H] = he[C, I] . down_e[H, I]^T.
  blas.linear_strided(ge, 2 * I, C * 2 * I, xe, H, C * H, p.experts_gate_up, H, 2 * I * H, dtype, C, 2 * I, H, E);
  silu_rows(ge, he, E * C, I);
  blas.linear_strided(ye, H, C * H, he, I, C * I, p.experts_down, I, H * I, dtype, C, H, I, E);
}

// Expert-contiguous rows through moe_grouped_gemm_hopper (BF16 on an H100/H200): gate and up in one GEMM whose
// epilogue writes silu(gate) * up in BF16 straight into he, then the down projection; the counts stay on the
// device, so prefill and graph-captured decode take the same path. False (nothing enqueued) where the kernel does
// not run here.
std::pair<k::MoeGroupedGemmParams, k::MoeGroupedGemmParams> MoeLayer::Impl::hopper_params(
    const k::MoeLayerParams& p) const {
  const int64_t T = p.n_tokens;
  // he[rows_e, I] = silu(xe . gate_e^T) * (xe . up_e^T), gate_up_e = [2I, H] (gate rows, then up rows).
  const k::MoeGroupedGemmParams gate_up{.x = xe, .ld_x = H, .w = p.experts_gate_up, .expert_stride = 2 * I * H,
                                        .dtype = dtype, .offsets = offsets, .n_experts = E, .n = I, .k = H,
                                        .max_rows = T, .epilogue = k::MoeGemmEpilogue::SWIGLU, .act = he, .ld_act = I,
                                        .rows_bound = T * K, .tile_rows = routed_tile_rows(held_pairs(T), E)};
  // ye[rows_e, H] = he[rows_e, I] . down_e[H, I]^T: float32, or rounded to BF16 into ye's first half (STORE_DT).
  k::MoeGroupedGemmParams down{.y = ye, .ld_y = H, .x = he, .ld_x = I, .w = p.experts_down, .expert_stride = H * I,
                               .dtype = dtype, .offsets = offsets, .n_experts = E, .n = H, .k = I, .max_rows = T,
                               .rows_bound = T * K, .tile_rows = routed_tile_rows(held_pairs(T), E)};
  if (expert_rows_bf16()) {
    down.y = nullptr;
    down.epilogue = k::MoeGemmEpilogue::STORE_DT;
    down.act = ye;
    down.ld_act = H;
  }
  return {gate_up, down};
}

bool MoeLayer::Impl::hopper_runs(const k::MoeLayerParams& p) const {
  if (compact_gemm_choice() != CompactGemm::HOPPER) return false;
  const auto [gate_up, down] = hopper_params(p);
  return k::cuda::moe_grouped_gemm_hopper_supported(gate_up) && k::cuda::moe_grouped_gemm_hopper_supported(down);
}

bool MoeLayer::Impl::compact_experts_hopper(const k::MoeLayerParams& p) {
  if (!hopper_runs(p)) return false;
  const auto [gate_up, down] = hopper_params(p);
  k::cuda::moe_grouped_gemm_hopper(gate_up, stream);
  k::cuda::moe_grouped_gemm_hopper(down, stream);
  return true;
}

// FP8 weights: expert-contiguous rows (gathered already quantised, in 1 x 128 groups, into xq / xs), gate/up through
// moe_grouped_gemm's FP8 kernels (QGMMA for BF16 models, the mma.sync kernel's float32 group sums for float32 ones;
// BF16 models: SwiGLU in its epilogue, he in BF16 as the BF16 experts write it; float32 models: the float32 products
// and silu_mul, so he is quantised from float32 as the CPU engine does), he quantised, the down projection into ye.
// The counts stay on the device: prefill and graphed decode alike.
void MoeLayer::Impl::fp8_experts(const k::MoeLayerParams& p, bool join_before_down) {
  const int64_t T = p.n_tokens, rows = T * K;
  const auto ld_scale = [](int64_t c) { return (c + kFp8Block - 1) / kFp8Block; };
  const bool fused_swiglu = dtype == DType::BF16, exact = fp8_exact_sums(dtype);
  const int32_t tile_rows = routed_tile_rows(held_pairs(T), E);  // the QGMMA kernel's, as the BF16 Hopper GEMM's
  // he[rows_e, I] = silu(xe . gate_e^T) * (xe . up_e^T), gate_up_e = [2I, H] e4m3 (gate rows, then up rows).
  k::MoeGroupedGemmParams gate_up{.y = ge, .ld_y = 2 * I, .x = xq, .ld_x = H, .w = p.experts_gate_up,
                                  .expert_stride = 2 * I * H, .dtype = DType::F8_E4M3, .offsets = offsets,
                                  .n_experts = E, .n = fused_swiglu ? I : 2 * I, .k = H, .max_rows = T,
                                  .rows_bound = rows, .tile_rows = tile_rows, .x_scale = xs,
                                  .x_scale_ld = ld_scale(H), .w_scale = p.experts_gate_up_scale,
                                  .w_scale_ld = fp8_weight_scale_ld(H),
                                  .w_scale_expert_stride = 2 * ld_scale(I) * fp8_weight_scale_ld(H),
                                  .fp8_exact_sums = exact};
  if (fused_swiglu) {
    gate_up.y = nullptr;
    gate_up.epilogue = k::MoeGemmEpilogue::SWIGLU;
    gate_up.act = he;
    gate_up.ld_act = I;
  }
  k::cuda::moe_grouped_gemm(gate_up, stream);
  if (!fused_swiglu) silu_rows(ge, he, rows, I);
  quantize_rows(he, dtype, rows, I, hq, hs);
  // The shared experts on the side stream wrote out: joined before a plain launch (no programmatic edge crosses it).
  if (join_before_down) MLABENCH_CUDA(cudaStreamWaitEvent(stream, join, 0));
  // ye[rows_e, H] = he[rows_e, I] . down_e[H, I]^T, float32.
  k::cuda::moe_grouped_gemm({.y = ye, .ld_y = H, .x = hq, .ld_x = I, .w = p.experts_down, .expert_stride = H * I,
                             .dtype = DType::F8_E4M3, .offsets = offsets, .n_experts = E, .n = H, .k = I,
                             .max_rows = T, .rows_bound = rows, .tile_rows = tile_rows, .x_scale = hs,
                             .x_scale_ld = ld_scale(I), .w_scale = p.experts_down_scale,
                             .w_scale_ld = fp8_weight_scale_ld(I),
                             .w_scale_expert_stride = ld_scale(H) * fp8_weight_scale_ld(I), .fp8_exact_sums = exact},
                            stream);
}

// The shared experts with FP8 weights on b's stream: out[T, H] = silu(x_c . gate^T) * (x_c . up^T) . down^T, each
// product through Fp8Linear (the skinny kernel at decode batches), gate_up [T, 2 SI] float32, act [T, SI] dt.
void MoeLayer::Impl::fp8_shared_experts(const k::MoeLayerParams& p, Blas& b, float* gate_up, void* act) {
  const int64_t T = p.n_tokens;
  fp8_shared->run(b, gate_up, DType::F32, 2 * SI, p.x_c, dtype, H, static_cast<const uint8_t*>(p.shared_gate_up),
                  p.shared_gate_up_scale, T, 2 * SI, H);  // [T, 2 SI]
  silu_rows(gate_up, act, T, SI, b.stream());
  fp8_shared->run(b, p.out, DType::F32, H, act, dtype, SI, static_cast<const uint8_t*>(p.shared_down),
                  p.shared_down_scale, T, H, SI);  // [T, H]
}

// The whole layer with FP8 weights: router (float32, as always); one token of a BF16 model through moe_decode_ffn's
// FP8 kernels; else shared experts (Fp8Linear), COMPACT rows at every token count through fp8_experts, combine.
// With a side stream (a BF16 model; MLABENCH_MOE_SHARED_STREAM=0 turns it off) the shared experts' five launches
// (two quantisers, two skinny GEMMs, SwiGLU at decode batches) run there, forked after x_c and beside the router,
// permute, gather and the routed gate/up, joined before the routed down GEMM: at V2-Lite batch 16 on an H100 ~16 us
// a layer off the serial chain, +4.3% tok/s (docs/perf-notes.md, issue 20 round 12).
void MoeLayer::Impl::fp8_forward(const k::MoeLayerParams& p, bool routed, bool topk_inside) {
  const int64_t T = p.n_tokens;
  const bool aside = SI > 0 && side != nullptr && !decode_ffn_runs(p);
  if (aside) {
    MLABENCH_CUDA(cudaEventRecord(fork, stream));
    MLABENCH_CUDA(cudaStreamWaitEvent(side, fork, 0));
    fp8_shared_experts(p, *side_blas, ge_shared, he_shared);
    MLABENCH_CUDA(cudaEventRecord(join, side));
    ++side_runs;
  }
  if (!routed) route(p, !topk_inside);
  if (decode_ffn(p, topk_inside)) return;
  if (SI > 0 && !aside) {
    phases::at(stream, "moe: shared experts (FP8)");
    fp8_shared_experts(p, blas, ge, he);
  }
  phases::at(stream, "moe: permute, gather");
  const k::MoeRowMap map{.mode = k::MoeRowMode::COMPACT, .topk_idx = idx, .rank = rank, .offsets = offsets};
  k::cuda::moe_permute({.topk_idx = idx, .n_tokens = T, .top_k = K, .n_experts = E, .counts = counts,
                        .offsets = offsets, .rank = rank, .chunk_scratch = permute_chunks}, stream);
  // The rows gathered into expert order already quantised (codes xq, scales xs rows major): one launch, no BF16 rows.
  k::cuda::moe_gather({.ld_out = H, .x = p.x_c, .ld_x = H, .elem_type = dtype, .hidden = H, .n_tokens = T,
                       .top_k = K, .map = map, .out_q = xq, .out_scale = xs}, stream);
  phases::at(stream, "moe: routed experts (FP8)");
  fp8_experts(p, aside);
  phases::at(stream, "moe: combine");
  k::cuda::moe_combine({.out = p.out, .ld_out = H, .y = ye, .ld_y = H, .topk_weight = w, .hidden = H, .n_tokens = T,
                        .top_k = K, .accumulate = SI > 0, .map = map}, stream);
}

// Expert-contiguous rows through moe_grouped_gemm: the counts stay on the device (CUDA-graph safe). n_tokens
// bounds every expert's rows (a token picks an expert at most once).
void MoeLayer::Impl::compact_experts_graph_safe(const k::MoeLayerParams& p) {
  const int64_t T = p.n_tokens;
  // Expert e's rows: ge[rows_e, 2I] = xe[rows_e, H] . gate_up_e[2I, H]^T.
  k::cuda::moe_grouped_gemm({.y = ge, .ld_y = 2 * I, .x = xe, .ld_x = H, .w = p.experts_gate_up,
                             .expert_stride = 2 * I * H, .dtype = dtype, .offsets = offsets, .n_experts = E, .n = 2 * I,
                             .k = H, .max_rows = T}, stream);
  silu_rows(ge, he, T * K, I);
  // ye[rows_e, H] = he[rows_e, I] . down_e[H, I]^T.
  k::cuda::moe_grouped_gemm({.y = ye, .ld_y = H, .x = he, .ld_x = I, .w = p.experts_down, .expert_stride = H * I,
                             .dtype = dtype, .offsets = offsets, .n_experts = E, .n = H, .k = I, .max_rows = T},
                             stream);
}

// Prefill: the per-expert row counts come back to the host once per layer; then one grouped GEMM per projection
// over the experts that have rows (or, where cuBLAS lacks grouped GEMM for these types, one GEMM per such
// expert, still without further synchronisation).
void MoeLayer::Impl::compact_experts_host(const k::MoeLayerParams& p) {
  const size_t es = dtype_size(dtype);
  MLABENCH_CUDA(
      cudaMemcpyAsync(host_offsets.data(), offsets, static_cast<size_t>(E + 1) * 4, cudaMemcpyDeviceToHost, stream));
  MLABENCH_CUDA(cudaStreamSynchronize(stream));
  std::vector<int> rows;
  std::vector<const void*> h(6 * static_cast<size_t>(E));
  size_t g = 0;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r0 = host_offsets[static_cast<size_t>(e)], n = host_offsets[static_cast<size_t>(e) + 1] - r0;
    if (n == 0) continue;
    rows.push_back(static_cast<int>(n));
    h[g] = at(p.experts_gate_up, e * 2 * I * H);                                     // A, gate_up [2I, H]
    h[E + g] = static_cast<const char*>(xe) + static_cast<size_t>(r0 * H) * es;      // B [n, H]
    h[2 * E + g] = ge + r0 * 2 * I;                                                  // C [n, 2I]
    h[3 * E + g] = at(p.experts_down, e * H * I);                                    // A, down [H, I]
    h[4 * E + g] = static_cast<const char*>(he) + static_cast<size_t>(r0 * I) * es;  // B [n, I]
    h[5 * E + g] = ye + r0 * H;                                                      // C [n, H]
    ++g;
  }
  void* const* yv = const_cast<void* const*>(reinterpret_cast<const void* const*>(ptrs));
  if (grouped_ok)  // the pointer arrays go to the device only for the grouped call
    MLABENCH_CUDA(cudaMemcpyAsync(ptrs, h.data(), h.size() * sizeof(void*), cudaMemcpyHostToDevice, stream));
  const bool grouped =
      grouped_ok && blas.linear_grouped(yv + 2 * E, 2 * I, ptrs + E, H, ptrs, H, dtype, rows, 2 * I, H);
  if (grouped_ok && !grouped)
    std::fprintf(stderr,
                 "note: cuBLAS has no grouped GEMM for %s operands with float32 output; the prefill MoE "
                 "issues one GEMM per expert instead\n",
                 std::string(dtype_name(dtype)).c_str());
  grouped_ok = grouped;
  if (!grouped)
    for (size_t i = 0; i < g; ++i)
      blas.linear(static_cast<float*>(const_cast<void*>(h[2 * E + i])), 2 * I, h[E + i], H, h[i], H, dtype, rows[i],
                  2 * I, H);
  silu_rows(ge, he, p.n_tokens * K, I);
  if (grouped) {
    blas.linear_grouped(yv + 5 * E, H, ptrs + 4 * E, I, ptrs + 3 * E, I, dtype, rows, H, I);
  } else {
    for (size_t i = 0; i < g; ++i)
      blas.linear(static_cast<float*>(const_cast<void*>(h[5 * E + i])), H, h[4 * E + i], I, h[3 * E + i], I, dtype,
                  rows[i], H, I);
  }
}

MoeLayer::MoeLayer(Blas& blas, cudaStream_t stream, DType dtype, int64_t hidden, int64_t inter, int64_t shared_inter,
                   int32_t n_experts, int32_t top_k, int64_t max_tokens, bool fp8, int32_t local_experts)
    : impl_(nullptr) {
  MLABENCH_CHECK(blas.stream() == stream,
                 "MoeLayer: the Blas handle runs on another stream than the layer. HINT: "
                 "pass the stream the Blas was made with, so the GEMMs and kernels stay ordered");
  MLABENCH_CHECK(dtype == DType::BF16 || dtype == DType::F16 || dtype == DType::F32,
                 "MoeLayer: dtype {}. HINT: the GEMM operands are BF16, F16 or F32", dtype_name(dtype));
  MLABENCH_CHECK(max_tokens > 0 && hidden > 0 && inter > 0 && shared_inter >= 0 && n_experts > 0 && top_k > 0 &&
                     top_k <= n_experts,
                 "MoeLayer: max_tokens {}, hidden {}, inter {}, shared_inter {}, n_experts {}, top_k {}. HINT: sizes "
                 "must be positive (shared_inter may be 0) and top_k <= n_experts",
                 max_tokens, hidden, inter, shared_inter, n_experts, top_k);
  MLABENCH_CHECK(!fp8 || (dtype != DType::F16 && inter % kFp8Block == 0 && shared_inter % kFp8Block == 0),
                 "MoeLayer: FP8 experts of {} with inter {}, shared_inter {}. HINT: FP8 experts need BF16 or F32 "
                 "activations and widths on the 128-row scale grid", dtype_name(dtype), inter, shared_inter);
  MLABENCH_CHECK(local_experts >= 0 && local_experts <= n_experts,
                 "MoeLayer: {} experts held of the router's {}. HINT: expert parallelism holds a block of them (0: "
                 "all)", local_experts, n_experts);
  impl_ = new Impl(blas, stream, dtype, hidden, inter, shared_inter, n_experts, top_k, max_tokens, local_experts);
  impl_->fp8 = fp8;
  try {
    impl_->allocate();
  } catch (...) {
    delete impl_;
    throw;
  }
}

MoeLayer::~MoeLayer() { delete impl_; }

uint64_t MoeLayer::scratch_bytes() const { return impl_->scratch.bytes(); }

int64_t MoeLayer::shared_side_runs() const { return impl_->side_runs; }

void MoeLayer::forward(const k::MoeLayerParams& p, const k::RmsNormParams* norm) {
  Impl& m = *impl_;
  k::checks::check_moe_layer(p);
  MLABENCH_CHECK(p.dtype == m.dtype && p.hidden == m.H && p.inter == m.I && p.shared_inter == m.SI &&
                     p.n_experts == m.E_router && p.local_experts() == m.E && p.top_k == m.K &&
                     p.n_tokens <= m.T_max,
                 "MoeLayer::forward: dtype {}, hidden {}, inter {}, shared_inter {}, n_experts {} ({} held), top_k {}, "
                 "n_tokens {}; the layer was built for {}, {}, {}, {}, {} ({} held), {}, up to {} tokens. HINT: build "
                 "one MoeLayer per expert shape with the step's token budget",
                 dtype_name(p.dtype), p.hidden, p.inter, p.shared_inter, p.n_experts, p.local_experts(), p.top_k,
                 p.n_tokens, dtype_name(m.dtype), m.H, m.I, m.SI, m.E_router, m.E, m.K, m.T_max);
  const int64_t T = p.n_tokens;
  if (T == 0) return;
  MLABENCH_CHECK(m.fp8 == (p.experts_gate_up_scale != nullptr) && m.fp8 == (p.experts_down_scale != nullptr) &&
                     (m.SI == 0 || (m.fp8 == (p.shared_gate_up_scale != nullptr) &&
                                    m.fp8 == (p.shared_down_scale != nullptr))),
                 "MoeLayer::forward: the layer was built for {} weights but the scale grids say otherwise. HINT: pass "
                 "every FP8 weight's scale grid, or none", m.fp8 ? "FP8" : "unquantised");
  const bool topk_inside = m.topk_in_decode_ffn(p);  // one token: moe_decode_ffn picks the experts itself
  const bool routed = norm != nullptr && m.norm_and_route(p, *norm, !topk_inside);  // x, x_c written from here on
  if (m.fp8) {
    m.fp8_forward(p, routed, topk_inside);
    return;
  }
  const bool shared_aside = m.shared_on_side(p);  // never at one token, where decode_ffn runs
  if (!routed) m.route(p, !topk_inside);
  if (m.decode_ffn(p, topk_inside)) return;
  if (!shared_aside) m.shared_experts(p);
  phases::at(m.stream, "moe: permute, gather");
  k::MoeRowMap map{.mode = m.row_mode(p), .topk_idx = m.idx, .rank = m.rank, .offsets = m.offsets};
  // PAIR rows are the pairs themselves (map_row(q) = q): no counts, offsets or ranks to compute.
  if (map.mode != k::MoeRowMode::PAIR)
    k::cuda::moe_permute({.topk_idx = m.idx, .n_tokens = T, .top_k = m.K, .n_experts = m.E, .counts = m.counts,
                          .offsets = m.offsets, .rank = m.rank, .chunk_scratch = m.permute_chunks}, m.stream);
  if (map.mode == k::MoeRowMode::PADDED) map.capacity = static_cast<int32_t>(T);
  k::cuda::moe_gather({.out = m.xe, .ld_out = m.H, .x = p.x_c, .ld_x = m.H, .elem_type = m.dtype, .hidden = m.H,
                       .n_tokens = T, .top_k = m.K, .map = map}, m.stream);
  phases::at(m.stream, "moe: routed experts");
  if (shared_aside) MLABENCH_CUDA(cudaStreamWaitEvent(m.stream, m.join, 0));  // out holds the shared experts' sum
  bool rows_bf16 = false;
  if (map.mode == k::MoeRowMode::PAIR)
    m.pair_experts(p);
  else if (map.mode == k::MoeRowMode::PADDED)
    m.padded_experts(p, map.capacity);
  else if (m.compact_experts_hopper(p))  // both COMPACT cases take it where it runs
    rows_bf16 = m.expert_rows_bf16();
  else
    p.graph_safe ? m.compact_experts_graph_safe(p) : m.compact_experts_host(p);
  phases::at(m.stream, "moe: combine");
  k::MoeCombineParams combine{.out = p.out, .ld_out = m.H, .y = m.ye, .ld_y = m.H, .topk_weight = m.w,
                              .hidden = m.H, .n_tokens = T, .top_k = m.K, .accumulate = m.SI > 0, .map = map};
  if (rows_bf16) {
    combine.y = nullptr;
    combine.y_bf16 = reinterpret_cast<const uint16_t*>(m.ye);
  }
  k::cuda::moe_combine(combine, m.stream);
}

}  // namespace mlabench::gpu
