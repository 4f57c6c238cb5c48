// Prefill attention kernels on the GPU over a shape sweep: MLA (decompressed, 192 / 128 head dims) and Llama
// GQA (32 / 8 heads, head_dim 128), BF16 flash kernel and, where it fits, the float32-operand tensor-core path it
// replaces for BF16 precision. Each row: time (median of CUDA-event timings), achieved TFLOP/s (causal FLOPs
// only: 2 x visible keys x (dqk + dv) per row and head) and its share of the BF16 GEMM rate measured in the same
// run (cuBLAS 8192^3), achieved GB/s of the unavoidable bytes (q, k, v, out once) and its share of the copy
// bandwidth measured in the same run. The peer (torch sdpa) runs in tools/gpu/bench_sdpa.py, same shapes, same
// call (tools/gpu/check.sh, stage kernels).
//
// Usage: bench_prefill_attention [--quick] [--only SHAPE] [--json FILE]
//   --only SHAPE: only the rows whose shape names contain SHAPE (e.g. for a profiler: "1 x 32768 causal, 16 heads").
#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "bench/gpu_bench_util.h"
#include "engine/gpu/blas.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/flash_prefill.h"
#include "engine/kernels/cuda/kernels.h"

namespace mlabench {
namespace {

namespace k = kernels;
using bench::Ceilings;
using bench::measure_ceilings;
using bench::random_buffer;
using bench::time_ms;
using gpu::DeviceBuffer;

struct Row {
  std::string kernel, shape;
  double ms = 0, tflops = 0, gbs = 0;
};

// Sequences of (q_len, kv_len): rows sit at the end of their cache (a whole prompt when q_len == kv_len).
struct Batch {
  std::vector<int32_t> cu_q{0}, kv_len, cu_kv{0};
  int32_t max_q = 0, max_kv = 0;
  double visible = 0;  // sum over rows of keys each sees
  void add(int32_t q, int32_t kv, int n = 1) {
    for (int i = 0; i < n; ++i) {
      cu_q.push_back(cu_q.back() + q);
      kv_len.push_back(kv);
      cu_kv.push_back(cu_kv.back() + kv);
      max_q = std::max(max_q, q);
      max_kv = std::max(max_kv, kv);
      visible += static_cast<double>(q) * (kv - q) + 0.5 * static_cast<double>(q) * (q + 1);
    }
  }
  int32_t n() const { return static_cast<int32_t>(kv_len.size()); }
  int64_t rows() const { return cu_q.back(); }
  int64_t keys() const { return cu_kv.back(); }
};

struct DeviceBatch {
  DeviceBuffer cu_q, kv_len, cu_kv;
  explicit DeviceBatch(const Batch& b)
      : cu_q(b.cu_q.size() * 4, "cu_q"), kv_len(b.kv_len.size() * 4, "kv_len"), cu_kv(b.cu_kv.size() * 4, "cu_kv") {
    MLABENCH_CUDA(cudaMemcpy(cu_q.get(), b.cu_q.data(), b.cu_q.size() * 4, cudaMemcpyHostToDevice));
    MLABENCH_CUDA(cudaMemcpy(kv_len.get(), b.kv_len.data(), b.kv_len.size() * 4, cudaMemcpyHostToDevice));
    MLABENCH_CUDA(cudaMemcpy(cu_kv.get(), b.cu_kv.data(), b.cu_kv.size() * 4, cudaMemcpyHostToDevice));
  }
};

int reps_for(double flops) { return flops > 5e13 ? 3 : flops > 5e12 ? 5 : 20; }

// MLA prefill at V2 shapes: BF16 operands, and float32 operands (the hi/lo tensor-core path) when asked.
Row bench_mla(int32_t heads, const Batch& b, const std::string& shape, bool f32_operands) {
  const int32_t nope = 128, rope = 64, v = 128, qk = nope + rope;
  const DType t = f32_operands ? DType::F32 : DType::BF16;
  const int64_t ld_q = int64_t{heads} * qk, ld_kv = int64_t{heads} * (nope + v), ld_kpe = 576;
  DeviceBuffer q = random_buffer(b.rows() * ld_q, t, 11), kv = random_buffer(b.keys() * ld_kv, t, 12);
  DeviceBuffer lat = random_buffer(b.keys() * ld_kpe, t, 13);
  DeviceBuffer out(static_cast<size_t>(b.rows() * heads * v) * 4, "out");
  DeviceBatch d(b);
  k::MlaPrefillParams p{.batch = {b.n(), d.cu_q.as<int32_t>(), d.kv_len.as<int32_t>(), b.max_q, b.max_kv},
                        .cu_kv = d.cu_kv.as<int32_t>(), .ld_q = ld_q, .ld_kv = ld_kv, .ld_kpe = ld_kpe,
                        .out = out.as<float>(), .ld_out = int64_t{heads} * v, .n_heads = heads, .nope = nope,
                        .rope = rope, .v = v, .scale = 0.0625f};
  if (f32_operands) {
    p.q = q.as<float>();
    p.kv = kv.as<float>();
    p.k_pe = lat.as<float>() + 512;
  } else {
    p.q_bf16 = q.as<uint16_t>();
    p.kv_bf16 = kv.as<uint16_t>();
    p.k_pe_bf16 = lat.as<uint16_t>() + 512;
    p.n_keys = b.keys();
  }
  const double flops = 2.0 * b.visible * heads * (qk + v);
  Row r{f32_operands ? "mla_prefill f32-operands (hi/lo)" : "mla_prefill bf16 flash", shape};
  r.ms = time_ms([&] { k::cuda::mla_prefill_attention(p, nullptr); }, reps_for(flops));
  const double bytes = static_cast<double>(b.rows()) * heads * (qk * dtype_size(t) + v * 4) +
                       static_cast<double>(b.keys()) * (heads * (nope + v) + rope) * dtype_size(t);
  r.tflops = flops / (r.ms * 1e9);
  r.gbs = bytes / (r.ms * 1e6);
  return r;
}

// Llama-3-8B GQA prefill over a paged BF16 pool (blocks in order), BF16 queries. Blocks of 64 (the engine's on
// CUDA): the Hopper kernel copies its tiles by TMA; of 16: by cp.async.
Row bench_gqa(const Batch& b, const std::string& shape, int32_t bs) {
  const int32_t heads = 32, kv_heads = 8, hd = 128;
  const int64_t w = int64_t{kv_heads} * hd, ld_q = int64_t{heads} * hd;
  int32_t max_blocks = (b.max_kv + bs - 1) / bs;
  std::vector<int32_t> table(static_cast<size_t>(b.n()) * max_blocks);
  int32_t next = 0;
  for (int32_t s = 0; s < b.n(); ++s)
    for (int32_t i = 0; i < max_blocks; ++i)
      table[static_cast<size_t>(s) * max_blocks + i] = i < (b.kv_len[s] + bs - 1) / bs ? next++ : 0;
  DeviceBuffer kc = random_buffer(int64_t{std::max(next, 1)} * bs * w, DType::BF16, 21);
  DeviceBuffer vc = random_buffer(int64_t{std::max(next, 1)} * bs * w, DType::BF16, 22);
  DeviceBuffer q = random_buffer(b.rows() * ld_q, DType::BF16, 23);
  DeviceBuffer out(static_cast<size_t>(b.rows() * ld_q) * 4, "out"), d_table(table.size() * 4, "table");
  MLABENCH_CUDA(cudaMemcpy(d_table.get(), table.data(), table.size() * 4, cudaMemcpyHostToDevice));
  DeviceBatch d(b);
  k::GqaAttentionParams p{.batch = {b.n(), d.cu_q.as<int32_t>(), d.kv_len.as<int32_t>(), b.max_q, b.max_kv},
                          .paged = {.block_size = bs, .block_tables = d_table.as<int32_t>(), .max_blocks = max_blocks},
                          .k_cache = kc.get(), .v_cache = vc.get(), .n_slots = int64_t{std::max(next, 1)} * bs,
                          .cache_type = DType::BF16,
                          .q = reinterpret_cast<const float*>(q.get()), .ld_q = ld_q, .out = out.as<float>(),
                          .ld_out = ld_q, .n_heads = heads, .n_kv_heads = kv_heads, .head_dim = hd,
                          .scale = 0.088f, .q_bf16 = q.as<uint16_t>()};
  const double flops = 2.0 * b.visible * heads * (2 * hd);
  Row r{fmt::format("gqa_prefill flash 32/8, block {}", bs), shape};
  r.ms = time_ms([&] { k::cuda::gqa_attention(p, nullptr); }, reps_for(flops));
  const double bytes = static_cast<double>(b.rows()) * heads * hd * (2 + 4) + static_cast<double>(b.keys()) * w * 4;
  r.tflops = flops / (r.ms * 1e9);
  r.gbs = bytes / (r.ms * 1e6);
  return r;
}

}  // namespace
}  // namespace mlabench

int main(int argc, char** argv) {
  using namespace mlabench;
  bool quick = false;
  std::string json_path, only;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
    if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) json_path = argv[++i];
  }
  try {
    cudaDeviceProp prop{};
    MLABENCH_CUDA(cudaGetDeviceProperties(&prop, 0));
    const Ceilings c = measure_ceilings();
    const char* flash = k::cuda::flash::kernel_name();
    fmt::print("device {} ({} SMs) | copy bandwidth {:.0f} GB/s | cuBLAS BF16 GEMM 8192^3 {:.0f} TFLOP/s | flash "
               "kernel {} (MLABENCH_FLASH)\n",
               prop.name, prop.multiProcessorCount, c.copy_gbs, c.gemm_tflops, flash);
    std::vector<Row> rows;
    auto keep = [&](const std::string& shape) { return shape.find(only) != std::string::npos; };
    auto whole = [](int32_t n, int count = 1) {
      Batch b;
      b.add(n, n, count);
      return b;
    };
    const std::vector<int32_t> lengths = quick ? std::vector<int32_t>{1024, 8192, 32768}
                                               : std::vector<int32_t>{1024, 4096, 16384, 32768, 65536, 131072};
    for (int32_t n : lengths) {
      const std::string shape = fmt::format("1 x {} causal", n);
      if (keep(shape + ", 16 heads")) rows.push_back(bench_mla(16, whole(n), shape + ", 16 heads", false));
      if (n <= 16384 && keep(shape + ", 16 heads")) rows.push_back(bench_mla(16, whole(n), shape + ", 16 heads", true));
      if (n <= 32768 && keep(shape + ", 128 heads"))
        rows.push_back(bench_mla(128, whole(n), shape + ", 128 heads", false));
      for (int32_t bs : {64, 16})
        if (keep(shape)) rows.push_back(bench_gqa(whole(n), shape, bs));
    }
    // Chunked prefill: one 4,096-token chunk at the end of a long prompt (what the engine runs past max_step_tokens).
    for (int32_t n : {32768, 131072}) {
      Batch b;
      b.add(4096, n);
      const std::string shape = fmt::format("chunk 4096 of {}, 16 heads", n);
      if (keep(shape)) rows.push_back(bench_mla(16, b, shape, false));
    }
    // Batches of short prompts.
    for (auto [count, n] : {std::pair{64, 512}, {16, 2048}, {256, 128}}) {
      const std::string shape = fmt::format("{} x {} causal", count, n);
      if (keep(shape + ", 16 heads")) rows.push_back(bench_mla(16, whole(n, count), shape + ", 16 heads", false));
      if (keep(shape)) rows.push_back(bench_gqa(whole(n, count), shape, 64));
    }
    fmt::print("{:<36} {:<34} {:>10} {:>9} {:>8} {:>9} {:>7}\n", "kernel", "shape", "ms", "TFLOP/s", "of GEMM",
               "GB/s", "of copy");
    std::string json = fmt::format(
        "{{\"device\": \"{}\", \"copy_gbs\": {:.1f}, \"gemm_tflops\": {:.1f}, \"flash_kernel\": \"{}\", \"rows\": [",
        prop.name, c.copy_gbs, c.gemm_tflops, flash);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      fmt::print("{:<36} {:<34} {:>10.3f} {:>9.1f} {:>7.1f}% {:>9.0f} {:>6.1f}%\n", r.kernel, r.shape, r.ms, r.tflops,
                 100.0 * r.tflops / c.gemm_tflops, r.gbs, 100.0 * r.gbs / c.copy_gbs);
      json += fmt::format("{}{{\"kernel\": \"{}\", \"shape\": \"{}\", \"ms\": {:.4f}, \"tflops\": {:.2f}, \"gbs\": {:.1f}}}",
                          i ? ", " : "", r.kernel, r.shape, r.ms, r.tflops, r.gbs);
    }
    json += "]}\n";
    if (!json_path.empty()) std::ofstream(json_path) << json;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_prefill_attention: %s\n", e.what());
    return 1;
  }
  return 0;
}
