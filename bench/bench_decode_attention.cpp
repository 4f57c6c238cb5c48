// GPU micro-benchmark of the decode attention kernels against the memory roofline measured in the same run.
//
//   bench_decode_attention [--reps N] [--only mla|mla16|mla-fp8|mla-mma|mla-hilo|gqa|gqa-fp8] [--shape BxCTX ...] [--splits N]
//                          [--timeline]
//
// First it times a device-to-device cudaMemcpy of 2 GiB (bandwidth = read + write bytes / time), then every
// (kernel, heads, batch x context) row: mla_decode_attention at 16 heads (V2-Lite) and 128 heads (V2), kv_lora 512
// + rope 64, and gqa_attention's decode path at Llama-3-8B's 32 query / 8 KV heads, head_dim 128. The BF16 caches
// are paged (64-token blocks, shuffled), filled with random values on the device, with split-KV scratch as the
// engine gives it. Calls rotate over copies of the cache until the bytes touched exceed 4x the L2, so a call never
// finds the previous call's cache in L2. Each row is timed two ways, the median of --reps (default 30) each:
// time_us per call of ~32 calls (both kernels when it splits) captured in one CUDA graph and replayed, as the engine
// runs a decode step; eager_us one call between CUDA events, its host launch work included (what the engine's
// eager steps see; before 2026-12-04 the only timing, so older rows in docs/perf-notes.md are eager).
//
// Columns: bytes = cache bytes read once per sequence (every latent slot or K and V slot of the context) plus the
// queries and outputs; GB/s = bytes / time_us; copy% = GB/s over the copy bandwidth above; TFLOP/s counts the
// attention math once (2 * heads * ctx * (qk dims + v dims) per sequence), not the kernels' hi/lo split MMAs.
// 128-head MLA is compute-bound by design (~490 FLOP per cache byte with the split); look at its TFLOP/s.
// mla-fp8 rows: the 16-head kernel over F8_E4M3 slots (--kv-cache-dtype fp8, 656 bytes a token; the values written by
// cache_write from random float32 rows), BF16 operands; bytes count the slots, so GB/s compares with the BF16 rows'
// and time_us is the speed-up.
// gqa-fp8 rows (with --only gqa, or alone with --only gqa-fp8): the decode kernel over F8_E4M3 K and V pools.
// --splits N runs the MLA kernels at N splits instead of the plan's (to fit the plan's cost model, kernel_params.h);
// --timeline prints, after each 16-head MLA row of the Hopper kernel, one more eager call's per-CTA phase stamps
// (MlaDecodeParams::timeline, ns from the earliest CTA's entry): where a short call's fixed cost goes.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "bench/bench_args.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/kernel_params.h"

namespace {

using mlabench::gpu::DeviceBuffer;
namespace k = mlabench::kernels;

constexpr int32_t kBlock = 64;
int32_t g_force_splits = 0;  // --splits
bool g_timeline = false;     // --timeline

struct Shape {
  int32_t batch, ctx;
};
const Shape kShapes[] = {{1, 8192}, {1, 32768}, {1, 131072}, {16, 32768}, {64, 8192}, {128, 4096}, {256, 2048}};

struct Timer {
  cudaEvent_t start{}, stop{};
  Timer() {
    MLABENCH_CUDA(cudaEventCreate(&start));
    MLABENCH_CUDA(cudaEventCreate(&stop));
  }
  ~Timer() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  // Median milliseconds of reps calls of f(rep, stream 0), each timed alone after 3 warm-up calls: what an eager
  // launch costs, the host's launch work included when the GPU is idle waiting for it.
  template <class F>
  double median_ms(int reps, F&& f) {
    for (int i = 0; i < 3; ++i) f(i, nullptr);
    std::vector<float> ms(static_cast<size_t>(reps));
    for (int i = 0; i < reps; ++i) {
      MLABENCH_CUDA(cudaEventRecord(start));
      f(i + 3, nullptr);
      MLABENCH_CUDA(cudaEventRecord(stop));
      MLABENCH_CUDA(cudaEventSynchronize(stop));
      MLABENCH_CUDA(cudaEventElapsedTime(&ms[static_cast<size_t>(i)], start, stop));
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
  }
  // Median milliseconds per call of `calls` calls f(0..calls-1, stream) captured in one CUDA graph, over reps
  // replays after 2 warm-up replays: how the engine runs them (every decode step is a graph, so no host work sits
  // between two kernels); the one graph launch a replay costs is spread over its calls.
  template <class F>
  double graph_ms(int reps, int calls, F&& f) {
    cudaStream_t st{};
    MLABENCH_CUDA(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    for (int i = 0; i < calls; ++i) f(i, st);  // eager first: one-time opt-ins happen outside the capture
    MLABENCH_CUDA(cudaStreamSynchronize(st));
    cudaGraph_t graph{};
    MLABENCH_CUDA(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < calls; ++i) f(i, st);
    MLABENCH_CUDA(cudaStreamEndCapture(st, &graph));
    cudaGraphExec_t exec{};
    MLABENCH_CUDA(cudaGraphInstantiate(&exec, graph, 0));
    for (int i = 0; i < 2; ++i) MLABENCH_CUDA(cudaGraphLaunch(exec, st));
    std::vector<float> ms(static_cast<size_t>(reps));
    for (int i = 0; i < reps; ++i) {
      MLABENCH_CUDA(cudaEventRecord(start, st));
      MLABENCH_CUDA(cudaGraphLaunch(exec, st));
      MLABENCH_CUDA(cudaEventRecord(stop, st));
      MLABENCH_CUDA(cudaEventSynchronize(stop));
      MLABENCH_CUDA(cudaEventElapsedTime(&ms[static_cast<size_t>(i)], start, stop));
    }
    MLABENCH_CUDA(cudaGraphExecDestroy(exec));
    MLABENCH_CUDA(cudaGraphDestroy(graph));
    MLABENCH_CUDA(cudaStreamDestroy(st));
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2] / calls;
  }
  // Both timings of f: {per call in a graph, one eager call}.
  template <class F>
  std::pair<double, double> both_ms(int reps, int copies, F&& f) {
    // Calls a graph: the copies, repeated until about 32 calls, so the graph launch is a small share of a replay.
    const int calls = copies * std::max(1, (32 + copies - 1) / copies);
    return {graph_ms(reps, calls, f), median_ms(reps, f)};
  }
};

void fill(void* p, mlabench::DType t, int64_t n, uint64_t key) {
  mlabench::kernels::cuda::random_fill({.out = p, .out_type = t, .n = n, .key = key}, nullptr);
}

// A paged pool holding `copies` independent caches of batch x ctx tokens: table c of copy c, blocks shuffled.
struct Pool {
  int32_t max_blocks = 0;
  int64_t n_blocks = 0;
  std::vector<DeviceBuffer> tables;  // one [batch, max_blocks] table per copy
  Pool(const Shape& s, int copies, unsigned seed) {
    max_blocks = (s.ctx + kBlock - 1) / kBlock;
    n_blocks = int64_t{copies} * s.batch * max_blocks;
    std::vector<int32_t> ids(static_cast<size_t>(n_blocks));
    std::iota(ids.begin(), ids.end(), 0);
    std::mt19937 rng(seed);
    std::shuffle(ids.begin(), ids.end(), rng);
    const size_t per = static_cast<size_t>(s.batch) * static_cast<size_t>(max_blocks);
    for (int c = 0; c < copies; ++c) {
      tables.emplace_back(per * 4, "block table");
      MLABENCH_CUDA(cudaMemcpy(tables.back().get(), ids.data() + c * per, per * 4, cudaMemcpyHostToDevice));
    }
  }
};

int copies_for(int64_t bytes, int64_t l2) {
  return static_cast<int>(std::clamp<int64_t>((4 * l2 + bytes - 1) / bytes, 1, 64));
}

struct Row {
  const char* kernel;
  int heads, batch, ctx, splits;
  double us, bytes, flops;
  double eager_us;
};

void print_row(const Row& r, double copy_gbs) {
  const double gbs = r.bytes / (r.us * 1e3);
  std::printf("%-10s %6d %6d %8d %7d %10.1f %9.1f %7.1f%% %9.1f %9.1f\n", r.kernel, r.heads, r.batch, r.ctx, r.splits,
              r.us, gbs, 100.0 * gbs / copy_gbs, r.flops / (r.us * 1e6), r.eager_us);
  std::fflush(stdout);
}

// One more eager call of p with MlaDecodeParams::timeline: per CTA (up to 16), each stamp in ns from the earliest
// CTA's entry (- where the CTA wrote none: a split without keys, or the mma.sync kernel).
void print_timeline(k::MlaDecodeParams p, const int32_t* table) {
  const int64_t ctas = int64_t{(p.n_heads + 15) / 16} * p.n_seqs * k::mla_decode_splits(p);
  DeviceBuffer tl(static_cast<size_t>(ctas * k::kMlaTimelineStamps) * 8, "timeline");
  MLABENCH_CUDA(cudaMemset(tl.get(), 0, static_cast<size_t>(ctas * k::kMlaTimelineStamps) * 8));
  p.paged.block_tables = table;
  p.timeline = tl.as<uint64_t>();
  MLABENCH_CUDA(cudaDeviceSynchronize());
  mlabench::kernels::cuda::mla_decode_attention(p, nullptr);
  MLABENCH_CUDA(cudaDeviceSynchronize());
  std::vector<uint64_t> t(static_cast<size_t>(ctas * k::kMlaTimelineStamps));
  MLABENCH_CUDA(cudaMemcpy(t.data(), tl.get(), t.size() * 8, cudaMemcpyDeviceToHost));
  uint64_t t0 = UINT64_MAX;
  for (int64_t c = 0; c < ctas; ++c) t0 = std::min(t0, t[static_cast<size_t>(c * k::kMlaTimelineStamps)]);
  std::printf("# timeline (ns from the first entry): entry barriers producer-issued q-ready chunk0 scores P pv "
              "tiles-done written\n");
  for (int64_t c = 0; c < std::min<int64_t>(ctas, 16); ++c) {
    std::printf("#   cta %3lld:", static_cast<long long>(c));
    for (int i = 0; i < k::kMlaTimelineStamps; ++i) {
      const uint64_t v = t[static_cast<size_t>(c * k::kMlaTimelineStamps + i)];
      if (v == 0) std::printf(" %7s", "-");
      else std::printf(" %7lld", static_cast<long long>(v - t0));
    }
    std::printf("\n");
  }
  if (ctas <= 16) return;
  // Past 16 CTAs (1 x 128K: 128 of them), each stamp's spread over the CTAs that wrote it: the slowest CTA's
  // "written" is the kernel's end, so max - p50 of it is what the split's imbalance costs.
  const char* qname[5] = {"min", "p10", "p50", "p90", "max"};
  const double frac[5] = {0.0, 0.1, 0.5, 0.9, 1.0};
  for (int q = 0; q < 5; ++q) {
    std::printf("#   %-8s", qname[q]);
    for (int i = 0; i < k::kMlaTimelineStamps; ++i) {
      std::vector<uint64_t> v;
      for (int64_t c = 0; c < ctas; ++c)
        if (const uint64_t x = t[static_cast<size_t>(c * k::kMlaTimelineStamps + i)]; x != 0) v.push_back(x - t0);
      if (v.empty()) {
        std::printf(" %7s", "-");
        continue;
      }
      std::sort(v.begin(), v.end());
      const auto at = static_cast<size_t>(std::lround(frac[q] * static_cast<double>(v.size() - 1)));
      std::printf(" %7llu", static_cast<unsigned long long>(v[at]));
    }
    std::printf("\n");
  }
}

// bf16_operands: the engine's BF16 precision (q and P in BF16, one MMA per product); false: the float32 hi/lo
// split (two MMAs per product), kept as the exact variant and to show what the split costs.
// kernel: AUTO is what the engine runs (the Hopper wgmma kernel on an H100/H200 build), MMA the mma.sync kernel.
// Every slot of an F8_E4M3 pool written by cache_write from random float32 rows (a chunk of slots at a time).
void fill_fp8_slots(void* cache, int64_t n_slots, const k::Fp8SlotLayout& l) {
  const int64_t chunk = std::min<int64_t>(n_slots, 1 << 18);
  DeviceBuffer rows(static_cast<size_t>(chunk * l.width) * 4, "fp8 source rows"), slots(static_cast<size_t>(chunk) * 8, "slots");
  std::vector<int64_t> ids(static_cast<size_t>(chunk));
  for (int64_t first = 0; first < n_slots; first += chunk) {
    const int64_t n = std::min(chunk, n_slots - first);
    std::iota(ids.begin(), ids.end(), first);
    MLABENCH_CUDA(cudaMemcpy(slots.get(), ids.data(), static_cast<size_t>(n) * 8, cudaMemcpyHostToDevice));
    fill(rows.get(), mlabench::DType::F32, n * l.width, 11 + static_cast<uint64_t>(first));
    mlabench::kernels::cuda::cache_write({.cache = cache, .cache_type = mlabench::DType::F8_E4M3, .width = l.width,
                                          .src = rows.as<float>(), .ld_src = l.width, .slots = slots.as<int64_t>(),
                                          .n_rows = n, .fp8_quantised = l.quantised, .fp8_segment = l.segment},
                                         nullptr);
  }
  MLABENCH_CUDA(cudaDeviceSynchronize());
}

Row bench_mla(const Shape& s, int heads, bool bf16_operands, int reps, int64_t l2, Timer& timer,
              k::MlaDecodeKernel kernel = k::MlaDecodeKernel::AUTO, bool fp8 = false) {
  const int32_t lora = 512, rope = 64, width = lora + rope;
  const k::Fp8SlotLayout l8 = k::Fp8SlotLayout::mla(lora, rope);
  const int64_t slot_bytes = fp8 ? l8.bytes() : width * 2;
  const int64_t cache_bytes = int64_t{s.batch} * s.ctx * slot_bytes;
  const int copies = copies_for(cache_bytes, l2);
  Pool pool(s, copies, 1);
  DeviceBuffer cache(static_cast<size_t>(pool.n_blocks * kBlock * slot_bytes), "latent pool");
  if (fp8) fill_fp8_slots(cache.get(), pool.n_blocks * kBlock, l8);
  else fill(cache.get(), mlabench::DType::BF16, pool.n_blocks * kBlock * width, 11);
  const int64_t ld_q = int64_t{heads} * lora;
  DeviceBuffer q_lat(static_cast<size_t>(s.batch * ld_q) * 4, "q_lat"),
      q_pe(static_cast<size_t>(s.batch) * heads * rope * 4, "q_pe");
  fill(q_lat.get(), mlabench::DType::F32, s.batch * ld_q, 12);
  fill(q_pe.get(), mlabench::DType::F32, int64_t{s.batch} * heads * rope, 13);
  DeviceBuffer out(static_cast<size_t>(s.batch * ld_q) * 4, "out");
  std::vector<int32_t> lens(static_cast<size_t>(s.batch), s.ctx);
  DeviceBuffer d_len(lens.size() * 4, "kv_len");
  MLABENCH_CUDA(cudaMemcpy(d_len.get(), lens.data(), lens.size() * 4, cudaMemcpyHostToDevice));

  k::MlaDecodeParams p;
  p.n_seqs = s.batch;
  p.kv_len = d_len.as<int32_t>();
  p.max_kv = s.ctx;
  p.paged = {kBlock, nullptr, pool.max_blocks};
  p.cache = cache.get();
  p.cache_type = fp8 ? mlabench::DType::F8_E4M3 : mlabench::DType::BF16;
  p.q_lat = q_lat.as<float>();
  p.ld_q_lat = ld_q;
  p.q_pe = q_pe.as<float>();
  p.ld_q_pe = int64_t{heads} * rope;
  p.q_pe_head_stride = rope;
  p.out = out.as<float>();
  p.ld_out = ld_q;
  p.n_heads = heads;
  p.kv_lora = lora;
  p.rope = rope;
  p.scale = 1.0f / 13.86f;  // 192^-0.5, as V2's q/k head
  p.bf16_operands = bf16_operands;
  p.kernel = kernel;
  p.force_splits = g_force_splits;
  p.n_slots = pool.n_blocks * kBlock;
  p.scratch_floats = k::mla_decode_scratch_floats(p);
  DeviceBuffer scratch(static_cast<size_t>(std::max<int64_t>(p.scratch_floats, 1)) * 4, "scratch");
  if (p.scratch_floats > 0) p.scratch = scratch.as<float>();
  const auto [ms, eager_ms] = timer.both_ms(reps, copies, [&](int i, cudaStream_t st) {
    k::MlaDecodeParams c = p;
    c.paged.block_tables = pool.tables[static_cast<size_t>(i % copies)].as<int32_t>();
    mlabench::kernels::cuda::mla_decode_attention(c, st);
  });
  if (g_timeline && heads == 16 && bf16_operands && kernel == k::MlaDecodeKernel::AUTO)
    print_timeline(p, pool.tables[static_cast<size_t>(copies > 1 ? 1 : 0)].as<int32_t>());
  const double bytes = static_cast<double>(cache_bytes) + s.batch * static_cast<double>(heads) * (lora * 8 + rope * 4);
  const double flops = 2.0 * s.batch * heads * static_cast<double>(s.ctx) * (width + lora);
  const char* name = !bf16_operands                     ? "mla-hilo"
                     : kernel == k::MlaDecodeKernel::MMA ? "mla-mma"
                     : fp8                               ? "mla-fp8"
                                                         : "mla";
  return {name, heads, s.batch, s.ctx, k::mla_decode_splits(p), ms * 1e3, bytes, flops, eager_ms * 1e3};
}

Row bench_gqa(const Shape& s, int reps, int64_t l2, Timer& timer, bool fp8 = false) {
  const int32_t nh = 32, nkv = 8, hd = 128, width = nkv * hd;
  const k::Fp8SlotLayout l8 = k::Fp8SlotLayout::heads(nkv, hd);
  const int64_t slot_bytes = fp8 ? l8.bytes() : int64_t{width} * 2;
  const int64_t cache_bytes = int64_t{s.batch} * s.ctx * slot_bytes * 2;  // K and V
  const int copies = copies_for(cache_bytes, l2);
  Pool pool(s, copies, 2);
  const int64_t slots = pool.n_blocks * kBlock;
  DeviceBuffer kc(static_cast<size_t>(slots * slot_bytes), "K pool"), vc(static_cast<size_t>(slots * slot_bytes), "V pool");
  if (fp8) {
    fill_fp8_slots(kc.get(), slots, l8);
    fill_fp8_slots(vc.get(), slots, l8);
  } else {
    fill(kc.get(), mlabench::DType::BF16, slots * width, 21);
    fill(vc.get(), mlabench::DType::BF16, slots * width, 22);
  }
  const int64_t ld = int64_t{nh} * hd;
  DeviceBuffer q(static_cast<size_t>(s.batch * ld) * 4, "q"), out(static_cast<size_t>(s.batch * ld) * 4, "out");
  fill(q.get(), mlabench::DType::F32, s.batch * ld, 23);
  std::vector<int32_t> lens(static_cast<size_t>(s.batch), s.ctx), cu(static_cast<size_t>(s.batch) + 1);
  std::iota(cu.begin(), cu.end(), 0);
  DeviceBuffer d_len(lens.size() * 4, "kv_len"), d_cu(cu.size() * 4, "cu_q");
  MLABENCH_CUDA(cudaMemcpy(d_len.get(), lens.data(), lens.size() * 4, cudaMemcpyHostToDevice));
  MLABENCH_CUDA(cudaMemcpy(d_cu.get(), cu.data(), cu.size() * 4, cudaMemcpyHostToDevice));

  k::GqaAttentionParams p;
  p.batch = {s.batch, d_cu.as<int32_t>(), d_len.as<int32_t>(), 1, s.ctx};
  p.paged = {kBlock, nullptr, pool.max_blocks};
  p.k_cache = kc.get();
  p.v_cache = vc.get();
  p.cache_type = fp8 ? mlabench::DType::F8_E4M3 : mlabench::DType::BF16;
  p.q = q.as<float>();
  p.ld_q = ld;
  p.out = out.as<float>();
  p.ld_out = ld;
  p.n_heads = nh;
  p.n_kv_heads = nkv;
  p.head_dim = hd;
  p.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  p.scratch_floats = k::gqa_attention_scratch_floats(p);
  DeviceBuffer scratch(static_cast<size_t>(std::max<int64_t>(p.scratch_floats, 1)) * 4, "scratch");
  if (p.scratch_floats > 0) p.scratch = scratch.as<float>();
  const auto [ms, eager_ms] = timer.both_ms(reps, copies, [&](int i, cudaStream_t st) {
    k::GqaAttentionParams c = p;
    c.paged.block_tables = pool.tables[static_cast<size_t>(i % copies)].as<int32_t>();
    mlabench::kernels::cuda::gqa_attention(c, st);
  });
  const double bytes = static_cast<double>(cache_bytes) + s.batch * static_cast<double>(ld) * 8;
  const double flops = 2.0 * s.batch * nh * static_cast<double>(s.ctx) * (2 * hd);
  return {fp8 ? "gqa-fp8" : "gqa", nh, s.batch, s.ctx, k::gqa_attention_splits(p), ms * 1e3, bytes, flops,
          eager_ms * 1e3};
}

double copy_bandwidth(int reps, Timer& timer) {
  const size_t bytes = size_t{2} << 30;
  DeviceBuffer a(bytes, "copy src"), b(bytes, "copy dst");
  MLABENCH_CUDA(cudaMemset(a.get(), 1, bytes));
  const double ms = timer.median_ms(reps, [&](int, cudaStream_t st) {
    MLABENCH_CUDA(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, st));
  });
  return 2.0 * static_cast<double>(bytes) / (ms * 1e6);  // read + write, GB/s
}

}  // namespace

namespace {
int run(int argc, char** argv) {
  int reps = 30;
  std::string only;
  std::vector<Shape> chosen;  // --shape, repeatable: these shapes instead of the sweep
  for (int i = 1; i < argc; ++i) {
    Shape one{0, 0};
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) {
      if (!mlabench::bench::parse_count("--reps", argv[++i], 20, 100000, &reps)) return 2;
    } else if (!std::strcmp(argv[i], "--only") && i + 1 < argc) {
      only = argv[++i];
      static constexpr const char* kOnly[] = {"mla", "mla16", "mla-fp8", "mla-mma", "mla-hilo", "gqa", "gqa-fp8"};
      if (std::none_of(std::begin(kOnly), std::end(kOnly), [&](const char* o) { return only == o; })) {
        std::fprintf(stderr, "--only %s: not one of mla, mla16, mla-fp8, mla-mma, mla-hilo, gqa, gqa-fp8\n", only.c_str());
        return 2;
      }
    } else if (!std::strcmp(argv[i], "--shape") && i + 1 < argc) {
      // batch x context shapes instead of the sweep (e.g. for a profiler), one copy measurement for all; each a
      // whole number in [1, 2^24] (strtol: an overflowing one is refused, not wrapped)
      const char* text = argv[++i];
      char* end = nullptr;
      const long batch = std::strtol(text, &end, 10);
      const bool batch_ok = end != text && *end == 'x' && batch >= 1 && batch <= (1L << 24);
      const char* ctx_text = batch_ok ? end + 1 : text;
      const long ctx = batch_ok ? std::strtol(ctx_text, &end, 10) : 0;
      if (!batch_ok || end == ctx_text || *end != '\0' || ctx < 1 || ctx > (1L << 24)) {
        std::fprintf(stderr, "--shape %s: BATCHxCTX, each a whole number from 1 to %ld\n", text, 1L << 24);
        return 2;
      }
      one.batch = static_cast<int>(batch);
      one.ctx = static_cast<int>(ctx);
      chosen.push_back(one);
    } else if (!std::strcmp(argv[i], "--splits") && i + 1 < argc) {
      char* end = nullptr;
      const long v = std::strtol(argv[++i], &end, 10);
      if (end == argv[i] || *end != '\0' || v < 1 || v > k::kAttnMaxSplits) {
        std::fprintf(stderr, "--splits %s: a whole number from 1 to %lld (the combine's limit)\n", argv[i],
                     static_cast<long long>(k::kAttnMaxSplits));
        return 2;
      }
      g_force_splits = static_cast<int32_t>(v);
    } else if (!std::strcmp(argv[i], "--timeline")) {
      g_timeline = true;
    } else {
      std::fprintf(stderr, "usage: %s [--reps N (>= 20)] [--only mla|mla16|mla-fp8|mla-mma|mla-hilo|gqa|gqa-fp8] [--shape BATCHxCTX ...] [--splits N] [--timeline]\n", argv[0]);
      return 2;
    }
  }
  std::string why;
  if (!mlabench::gpu::cuda_device_available(&why)) {
    std::fprintf(stderr, "no usable CUDA device: %s\n", why.c_str());
    return 1;
  }
  cudaDeviceProp prop{};
  MLABENCH_CUDA(cudaGetDeviceProperties(&prop, 0));
  int driver = 0, runtime = 0, clock_khz = 0, mem_clock_khz = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0);
  cudaDeviceGetAttribute(&mem_clock_khz, cudaDevAttrMemoryClockRate, 0);
  const char* commit = std::getenv("MLABENCH_COMMIT");
  std::printf("# %s, %d SMs, SM clock %.2f GHz, L2 %.0f MB, memory %.0f GB; driver %d, runtime %d; commit %s\n",
              prop.name, prop.multiProcessorCount, clock_khz / 1e6, prop.l2CacheSize / 1e6, prop.totalGlobalMem / 1e9,
              driver, runtime, commit ? commit : "(set MLABENCH_COMMIT)");
  Timer timer;
  const double copy_gbs = copy_bandwidth(reps, timer);
  std::printf("# copy bandwidth (cudaMemcpy D2D 2 GiB, read + write): %.1f GB/s; median of %d calls per row\n",
              copy_gbs, reps);
  std::printf("%-10s %6s %6s %8s %7s %10s %9s %8s %9s %9s\n", "kernel", "heads", "batch", "ctx", "splits", "time_us",
              "GB/s", "copy%", "TFLOP/s", "eager_us");
  const int64_t l2 = prop.l2CacheSize;
  std::vector<Shape> shapes(std::begin(kShapes), std::end(kShapes));
  if (!chosen.empty()) shapes = chosen;
  if (only.empty() || only == "mla" || only == "mla16")  // mla16: the 16-head Hopper rows alone
    for (int heads : only == "mla16" ? std::vector<int>{16} : std::vector<int>{16, 128})
      for (const Shape& s : shapes) print_row(bench_mla(s, heads, true, reps, l2, timer), copy_gbs);
  if (only.empty() || only == "mla" || only == "mla16" || only == "mla-fp8")
    for (const Shape& s : shapes)
      print_row(bench_mla(s, 16, true, reps, l2, timer, k::MlaDecodeKernel::AUTO, true), copy_gbs);
  if (only.empty() || only == "mla" || only == "mla-mma")
    for (const Shape& s : shapes)
      print_row(bench_mla(s, 16, true, reps, l2, timer, k::MlaDecodeKernel::MMA), copy_gbs);
  if (only.empty() || only == "mla" || only == "mla-hilo")
    for (const Shape& s : shapes) print_row(bench_mla(s, 16, false, reps, l2, timer), copy_gbs);
  if (only.empty() || only == "gqa" || only == "gqa-fp8")
    for (bool fp8 : {false, true})
      for (const Shape& s : shapes)
        if (only != "gqa-fp8" || fp8) print_row(bench_gqa(s, reps, l2, timer, fp8), copy_gbs);
  MLABENCH_CUDA(cudaDeviceSynchronize());
  return 0;
}
}  // namespace

// An error (a refused MLABENCH_* setting, a CUDA failure) is a message and exit 1, not an uncaught exception's abort.
int main(int argc, char** argv) { return mlabench::bench::main_guarded("bench_decode_attention", run, argc, argv); }
