// The routed experts of one MoE layer on the GPU (gate/up GEMM, SwiGLU, down GEMM over expert-contiguous rows) by
// each grouped-GEMM strategy the engine has, at V2-Lite and V2 shapes over decode and prefill row counts:
//   hopper        moe_grouped_gemm_hopper: gate/up with SwiGLU in the epilogue (BF16 activations), then down;
//   hopper64      the same at 64-row tiles (the engine's choice where an expert holds <= 32 rows on average);
//   mma           moe_grouped_gemm (mma.sync, counts on the device): gate/up to float32, silu_mul, down;
//   cublas-group  cuBLAS's grouped GEMM after the counts are known on the host (the old prefill path);
//   cublas-loop   one cuBLAS GEMM per expert with rows (cuBLAS's rate on each expert's own shape);
//   fp8           --weights-dtype fp8's path for BF16 models (issue 20): x quantised in 1 x 128 groups, the QGMMA
//                 grouped GEMM (moe_grouped_gemm_hopper on e4m3 weights with 128 x 128 block scales) for gate/up with
//                 SwiGLU, act quantised, FP8 down; its GB/s counts one byte a weight. fp8-64 at 64-row tiles;
//   fp8-mma       the same through the mma.sync FP8 kernel (float32 group sums: --precision f32's).
// Each row: time (median of CUDA-event timings), achieved TFLOP/s of the useful FLOPs (2 x rows x 3 x I x H) and
// its share of the BF16 GEMM rate measured in the same run (cuBLAS 8192^3), achieved GB/s of the unavoidable bytes
// (the weights of every expert with rows, x, the activations written and read, y) and its share of the copy
// bandwidth measured in the same run. Routing: each token picks top_k distinct experts uniformly at random.
//
// Usage: bench_moe_gemm [--quick] [--json FILE]
#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench/gpu_bench_util.h"
#include "engine/core/fp8.h"
#include "engine/gpu/blas.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/kernels.h"

namespace mlabench {
namespace {

namespace k = kernels;
using bench::Ceilings;
using bench::random_buffer;
using bench::time_ms;
using gpu::DeviceBuffer;

struct Model {
  const char* name;
  int64_t H, I;
  int32_t E, K;
};

struct Row {
  std::string variant, shape;
  double ms = 0, tflops = 0, gbs = 0;
};

// Expert row offsets of T tokens each routing to K distinct experts, uniformly.
std::vector<int32_t> random_offsets(int64_t T, int32_t E, int32_t K, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> counts(static_cast<size_t>(E), 0), perm(static_cast<size_t>(E));
  std::iota(perm.begin(), perm.end(), 0);
  for (int64_t t = 0; t < T; ++t) {
    for (int32_t j = 0; j < K; ++j) {  // a partial Fisher-Yates: K distinct experts
      std::uniform_int_distribution<int32_t> pick(j, E - 1);
      std::swap(perm[static_cast<size_t>(j)], perm[static_cast<size_t>(pick(rng))]);
      ++counts[static_cast<size_t>(perm[static_cast<size_t>(j)])];
    }
  }
  std::vector<int32_t> offsets(static_cast<size_t>(E) + 1, 0);
  for (int32_t e = 0; e < E; ++e) offsets[e + 1] = offsets[e] + counts[static_cast<size_t>(e)];
  return offsets;
}

// One layer's operands at T tokens, and the four strategies over them.
struct Layer {
  const Model& m;
  int64_t T, R;
  std::vector<int32_t> offsets;
  DeviceBuffer d_offsets, x, w_gate_up, w_down, gate_up, act, y, ptrs;
  DeviceBuffer q_gate_up, q_down, s_gate_up, s_down, xq, xs, aq, as;  // fp8: weights, scales, quantised rows
  gpu::Blas& blas;

  Layer(const Model& model, int64_t tokens, gpu::Blas& b)
      : m(model), T(tokens), R(tokens * model.K), offsets(random_offsets(tokens, model.E, model.K, 7)), blas(b) {
    d_offsets = DeviceBuffer(offsets.size() * 4, "offsets");
    MLABENCH_CUDA(cudaMemcpy(d_offsets.get(), offsets.data(), offsets.size() * 4, cudaMemcpyHostToDevice));
    x = random_buffer(R * m.H, DType::BF16, 1);
    w_gate_up = random_buffer(int64_t{m.E} * 2 * m.I * m.H, DType::BF16, 2);
    w_down = random_buffer(int64_t{m.E} * m.H * m.I, DType::BF16, 3);
    gate_up = DeviceBuffer(static_cast<size_t>(R * 2 * m.I) * 4, "gate_up");
    act = DeviceBuffer(static_cast<size_t>(R * m.I) * 2, "act");
    y = DeviceBuffer(static_cast<size_t>(R * m.H) * 4, "y");
    ptrs = DeviceBuffer(6 * static_cast<size_t>(m.E) * sizeof(void*), "pointer arrays");
  }
  // The BF16 weights quantised as the engine does (the stacked [E * 2I, H] and [E * H, I]: their 128-row blocks are
  // each expert's, since 2I and H are multiples of 128).
  void make_fp8() {
    const auto grid = [](int64_t rows, int64_t cols) { return (rows + 127) / 128 * fp8_weight_scale_ld(cols); };
    q_gate_up = DeviceBuffer(static_cast<size_t>(m.E) * 2 * m.I * m.H, "fp8 gate_up");
    q_down = DeviceBuffer(static_cast<size_t>(m.E) * m.H * m.I, "fp8 down");
    s_gate_up = DeviceBuffer(static_cast<size_t>(grid(int64_t{m.E} * 2 * m.I, m.H)) * 4, "fp8 gate_up scales");
    s_down = DeviceBuffer(static_cast<size_t>(grid(int64_t{m.E} * m.H, m.I)) * 4, "fp8 down scales");
    k::cuda::fp8_quantize_blocks({.w = w_gate_up.get(), .w_type = DType::BF16, .ld_w = m.H, .q = q_gate_up.as<uint8_t>(),
                                  .ld_q = m.H, .scale_inv = s_gate_up.as<float>(), .scale_ld = fp8_weight_scale_ld(m.H),
                                  .n = int64_t{m.E} * 2 * m.I, .k = m.H}, nullptr);
    k::cuda::fp8_quantize_blocks({.w = w_down.get(), .w_type = DType::BF16, .ld_w = m.I, .q = q_down.as<uint8_t>(),
                                  .ld_q = m.I, .scale_inv = s_down.as<float>(), .scale_ld = fp8_weight_scale_ld(m.I),
                                  .n = int64_t{m.E} * m.H, .k = m.I}, nullptr);
    xq = DeviceBuffer(static_cast<size_t>(R * m.H), "fp8 x");
    xs = DeviceBuffer(static_cast<size_t>(R * ((m.H + 127) / 128)) * 4, "fp8 x scales");
    aq = DeviceBuffer(static_cast<size_t>(R * m.I), "fp8 act");
    as = DeviceBuffer(static_cast<size_t>(R * ((m.I + 127) / 128)) * 4, "fp8 act scales");
  }
  // qgmma: moe_grouped_gemm_hopper's FP8 path (the engine's for BF16 models) at tile_rows; else the mma.sync kernel.
  void fp8(bool qgmma, int32_t tile_rows = 0) {
    const int64_t gh = (m.H + 127) / 128, gi = (m.I + 127) / 128;
    k::cuda::fp8_quantize_rows({.x = x.get(), .x_type = DType::BF16, .ld_x = m.H, .q = xq.as<uint8_t>(), .ld_q = m.H,
                                .scale = xs.as<float>(), .scale_row_stride = gh, .scale_group_stride = 1, .rows = R,
                                .k = m.H}, nullptr);
    k::cuda::moe_grouped_gemm({.x = xq.get(), .ld_x = m.H, .w = q_gate_up.get(), .expert_stride = 2 * m.I * m.H,
                               .dtype = DType::F8_E4M3, .offsets = d_offsets.as<int32_t>(), .n_experts = m.E, .n = m.I,
                               .k = m.H, .max_rows = T, .epilogue = k::MoeGemmEpilogue::SWIGLU, .act = act.get(),
                               .ld_act = m.I, .rows_bound = R, .tile_rows = tile_rows, .x_scale = xs.as<float>(),
                               .x_scale_ld = gh, .w_scale = s_gate_up.as<float>(),
                               .w_scale_ld = fp8_weight_scale_ld(m.H),
                               .w_scale_expert_stride = 2 * gi * fp8_weight_scale_ld(m.H),
                               .fp8_exact_sums = !qgmma}, nullptr);
    k::cuda::fp8_quantize_rows({.x = act.get(), .x_type = DType::BF16, .ld_x = m.I, .q = aq.as<uint8_t>(), .ld_q = m.I,
                                .scale = as.as<float>(), .scale_row_stride = gi, .scale_group_stride = 1, .rows = R,
                                .k = m.I}, nullptr);
    k::cuda::moe_grouped_gemm({.y = y.as<float>(), .ld_y = m.H, .x = aq.get(), .ld_x = m.I, .w = q_down.get(),
                               .expert_stride = m.H * m.I, .dtype = DType::F8_E4M3, .offsets = d_offsets.as<int32_t>(),
                               .n_experts = m.E, .n = m.H, .k = m.I, .max_rows = T, .rows_bound = R,
                               .tile_rows = tile_rows, .x_scale = as.as<float>(), .x_scale_ld = gi,
                               .w_scale = s_down.as<float>(), .w_scale_ld = fp8_weight_scale_ld(m.I),
                               .w_scale_expert_stride = (m.H + 127) / 128 * fp8_weight_scale_ld(m.I),
                               .fp8_exact_sums = !qgmma}, nullptr);
  }
  double fp8_bytes() const {  // one byte a weight; x and act read once as BF16, y written in float32
    int used = 0;
    for (int32_t e = 0; e < m.E; ++e) used += offsets[e + 1] > offsets[e];
    return static_cast<double>(used) * 3 * m.I * m.H + static_cast<double>(R) * (m.H * 2 + 2 * m.I * 2 + m.H * 4);
  }
  const char* gu_w(int32_t e) const { return w_gate_up.as<char>() + static_cast<size_t>(e) * 2 * m.I * m.H * 2; }
  const char* dn_w(int32_t e) const { return w_down.as<char>() + static_cast<size_t>(e) * m.H * m.I * 2; }
  const char* x_row(int64_t r) const { return x.as<char>() + static_cast<size_t>(r * m.H) * 2; }
  const char* act_row(int64_t r) const { return act.as<char>() + static_cast<size_t>(r * m.I) * 2; }

  double flops() const { return 2.0 * static_cast<double>(R) * 3.0 * static_cast<double>(m.I * m.H); }
  double bytes() const {
    int used = 0;
    for (int32_t e = 0; e < m.E; ++e) used += offsets[e + 1] > offsets[e];
    return static_cast<double>(used) * 3 * m.I * m.H * 2 + static_cast<double>(R) * (m.H * 2 + 2 * m.I * 2 + m.H * 4);
  }

  k::MoeGroupedGemmParams down_params(int32_t tile_rows = 0) const {
    return {.y = y.as<float>(), .ld_y = m.H, .x = act.get(), .ld_x = m.I, .w = w_down.get(),
            .expert_stride = m.H * m.I, .dtype = DType::BF16, .offsets = d_offsets.as<int32_t>(), .n_experts = m.E,
            .n = m.H, .k = m.I, .max_rows = T, .rows_bound = R, .tile_rows = tile_rows};
  }
  void silu() {
    k::cuda::silu_mul({.out = act.get(), .out_type = DType::BF16, .ld_out = m.I, .gate_up = gate_up.as<float>(),
                       .ld_in = 2 * m.I, .inter = m.I, .n_rows = R}, nullptr);
  }
  bool hopper_runs() const {
    k::MoeGroupedGemmParams p = down_params();
    return k::cuda::moe_grouped_gemm_hopper_supported(p);
  }
  void hopper(int32_t tile_rows = 0) {
    k::MoeGroupedGemmParams p{.x = x.get(), .ld_x = m.H, .w = w_gate_up.get(), .expert_stride = 2 * m.I * m.H,
                              .dtype = DType::BF16, .offsets = d_offsets.as<int32_t>(), .n_experts = m.E, .n = m.I,
                              .k = m.H, .max_rows = T, .epilogue = k::MoeGemmEpilogue::SWIGLU, .act = act.get(),
                              .ld_act = m.I, .rows_bound = R, .tile_rows = tile_rows};
    k::cuda::moe_grouped_gemm_hopper(p, nullptr);
    k::cuda::moe_grouped_gemm_hopper(down_params(tile_rows), nullptr);
  }
  void mma() {
    k::cuda::moe_grouped_gemm({.y = gate_up.as<float>(), .ld_y = 2 * m.I, .x = x.get(), .ld_x = m.H,
                               .w = w_gate_up.get(), .expert_stride = 2 * m.I * m.H, .dtype = DType::BF16,
                               .offsets = d_offsets.as<int32_t>(), .n_experts = m.E, .n = 2 * m.I, .k = m.H,
                               .max_rows = T}, nullptr);
    silu();
    k::MoeGroupedGemmParams d = down_params();
    d.rows_bound = 0;
    k::cuda::moe_grouped_gemm(d, nullptr);
  }
  // cuBLAS's grouped GEMM over the experts with rows, pointer arrays copied each call as the engine's old path did;
  // false where this cuBLAS has no grouped BF16 GEMM with a float32 output (cuBLAS 13.0: the engine then ran
  // cublas-loop).
  bool cublas_grouped() {
    std::vector<int> rows;
    std::vector<const void*> h(6 * static_cast<size_t>(m.E));
    const size_t E = static_cast<size_t>(m.E);
    size_t g = 0;
    for (int32_t e = 0; e < m.E; ++e) {
      const int64_t r0 = offsets[e], n = offsets[e + 1] - r0;
      if (n == 0) continue;
      rows.push_back(static_cast<int>(n));
      h[g] = gu_w(e), h[E + g] = x_row(r0), h[2 * E + g] = gate_up.as<float>() + r0 * 2 * m.I;
      h[3 * E + g] = dn_w(e), h[4 * E + g] = act_row(r0), h[5 * E + g] = y.as<float>() + r0 * m.H;
      ++g;
    }
    MLABENCH_CUDA(cudaMemcpyAsync(ptrs.get(), h.data(), h.size() * sizeof(void*), cudaMemcpyHostToDevice, nullptr));
    const auto* p = ptrs.as<const void*>();
    void* const* yv = ptrs.as<void*>();
    if (!blas.linear_grouped(yv + 2 * E, 2 * m.I, p + E, m.H, p, m.H, DType::BF16, rows, 2 * m.I, m.H)) return false;
    silu();
    return blas.linear_grouped(yv + 5 * E, m.H, p + 4 * E, m.I, p + 3 * E, m.I, DType::BF16, rows, m.H, m.I);
  }
  void cublas_loop() {
    for (int32_t e = 0; e < m.E; ++e) {
      const int64_t r0 = offsets[e], n = offsets[e + 1] - r0;
      if (n > 0) blas.linear(gate_up.as<float>() + r0 * 2 * m.I, 2 * m.I, x_row(r0), m.H, gu_w(e), m.H, DType::BF16, n,
                             2 * m.I, m.H);
    }
    silu();
    for (int32_t e = 0; e < m.E; ++e) {
      const int64_t r0 = offsets[e], n = offsets[e + 1] - r0;
      if (n > 0) blas.linear(y.as<float>() + r0 * m.H, m.H, act_row(r0), m.I, dn_w(e), m.I, DType::BF16, n, m.H, m.I);
    }
  }
};

// Largest |difference| between two runs' y, relative to the largest |y| of the second.
double y_difference(Layer& l, const std::function<void()>& a_run, const std::function<void()>& b_run) {
  std::vector<float> a(static_cast<size_t>(l.R * l.m.H)), b(a.size());
  a_run();
  MLABENCH_CUDA(cudaMemcpy(a.data(), l.y.get(), a.size() * 4, cudaMemcpyDeviceToHost));
  b_run();
  MLABENCH_CUDA(cudaMemcpy(b.data(), l.y.get(), b.size() * 4, cudaMemcpyDeviceToHost));
  double worst = 0, scale = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, static_cast<double>(std::fabs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(b[i])));
  }
  return worst / scale;
}

// hopper vs mma: the same GEMMs (SwiGLU rounded to BF16 either way), so they agree to float32 summation order plus a
// BF16 ulp of act.
double hopper_vs_mma(Layer& l, int32_t tile_rows) {
  return y_difference(l, [&] { l.hopper(tile_rows); }, [&] { l.mma(); });
}

// QGMMA vs the mma.sync FP8 kernel: the same e4m3 products; QGMMA's ~14-bit group sums, then a BF16 act quantised
// to e4m3 again (a rounding can cross an e4m3 step), so up to ~1e-2.
double fp8_vs_mma(Layer& l, int32_t tile_rows) {
  return y_difference(l, [&] { l.fp8(true, tile_rows); }, [&] { l.fp8(false); });
}

}  // namespace
}  // namespace mlabench

int main(int argc, char** argv) {
  using namespace mlabench;
  bool quick = false;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) json_path = argv[++i];
  }
  try {
    cudaDeviceProp prop{};
    MLABENCH_CUDA(cudaGetDeviceProperties(&prop, 0));
    const Ceilings c = bench::measure_ceilings();
    fmt::print("device {} ({} SMs) | copy bandwidth {:.0f} GB/s | cuBLAS BF16 GEMM 8192^3 {:.0f} TFLOP/s\n", prop.name,
               prop.multiProcessorCount, c.copy_gbs, c.gemm_tflops);
    const Model lite{"V2-Lite", 2048, 1408, 64, 6}, v2{"V2", 5120, 1536, 160, 6};
    struct Case {
      const Model* m;
      int64_t T;
    };
    // 16 tokens: a decode step at batch 16 (96 rows over ~50 experts, 1-3 rows an expert: weight streaming).
    std::vector<Case> cases = {{&lite, 16},   {&lite, 128},   {&lite, 256}, {&lite, 512},
                               {&lite, 4096}, {&lite, 16384}, {&v2, 4096}};
    if (quick) cases = {{&lite, 16}, {&lite, 256}, {&lite, 16384}};
    gpu::Blas blas(nullptr);
    std::vector<Row> rows;
    for (const Case& cs : cases) {
      Layer l(*cs.m, cs.T, blas);
      const std::string shape = fmt::format("{} {} tokens ({} rows)", cs.m->name, cs.T, l.R);
      const int reps = cs.T >= 4096 ? 10 : 30;
      auto add = [&](const char* variant, const std::function<void()>& fn, double bytes = 0) {
        Row r{variant, shape};
        r.ms = time_ms(fn, reps);
        r.tflops = l.flops() / (r.ms * 1e9);
        r.gbs = (bytes > 0 ? bytes : l.bytes()) / (r.ms * 1e6);
        rows.push_back(r);
      };
      if (l.hopper_runs()) {
        add("hopper", [&] { l.hopper(); });
        fmt::print("# {}: hopper vs mma, max |dy| / max |y| = {:.2e}\n", shape, hopper_vs_mma(l, 0));
        if (cs.T <= 512) {
          add("hopper64", [&] { l.hopper(64); });
          fmt::print("# {}: hopper64 vs mma, max |dy| / max |y| = {:.2e}\n", shape, hopper_vs_mma(l, 64));
        }
      }
      add("mma", [&] { l.mma(); });
      if (l.cublas_grouped())
        add("cublas-group", [&] { l.cublas_grouped(); });
      else
        fmt::print("# {}: cublas-group left out: this cuBLAS has no grouped BF16 GEMM with float32 output\n", shape);
      add("cublas-loop", [&] { l.cublas_loop(); });
      if (l.m.I % 128 == 0) {
        l.make_fp8();
        add("fp8-mma", [&] { l.fp8(false); }, l.fp8_bytes());
        if (l.hopper_runs()) {
          add("fp8", [&] { l.fp8(true); }, l.fp8_bytes());
          fmt::print("# {}: fp8 (QGMMA) vs fp8-mma, max |dy| / max |y| = {:.2e}\n", shape, fp8_vs_mma(l, 0));
          if (cs.T <= 512) {
            add("fp8-64", [&] { l.fp8(true, 64); }, l.fp8_bytes());
            fmt::print("# {}: fp8-64 vs fp8-mma, max |dy| / max |y| = {:.2e}\n", shape, fp8_vs_mma(l, 64));
          }
        }
      }
    }
    fmt::print("{:<14} {:<34} {:>9} {:>9} {:>8} {:>9} {:>7}\n", "variant", "shape", "ms", "TFLOP/s", "of GEMM", "GB/s",
               "of copy");
    std::string json = fmt::format("{{\"device\": \"{}\", \"copy_gbs\": {:.1f}, \"gemm_tflops\": {:.1f}, \"rows\": [",
                                   prop.name, c.copy_gbs, c.gemm_tflops);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      fmt::print("{:<14} {:<34} {:>9.3f} {:>9.1f} {:>7.1f}% {:>9.0f} {:>6.1f}%\n", r.variant, r.shape, r.ms, r.tflops,
                 100.0 * r.tflops / c.gemm_tflops, r.gbs, 100.0 * r.gbs / c.copy_gbs);
      json += fmt::format("{}{{\"variant\": \"{}\", \"shape\": \"{}\", \"ms\": {:.4f}, \"tflops\": {:.2f}, \"gbs\": {:.1f}}}",
                          i ? ", " : "", r.variant, r.shape, r.ms, r.tflops, r.gbs);
    }
    json += "]}\n";
    if (!json_path.empty()) std::ofstream(json_path) << json;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_moe_gemm: %s\n", e.what());
    return 1;
  }
  return 0;
}
