// The GPU engine end to end (GPU machine; SKIPPED elsewhere): logits against transformers' float64 fixtures and
// greedy tokens against the CPU engine in both precisions (float32: the bounds; native BF16: the BF16
// noise band), and the scheduler's promises: chunked prefill merges exactly,
// continuous batching and pre-emption change no result, prefix sharing reuses blocks without changing scores,
// device-generated random weights equal the host generator's.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <functional>
#include <future>
#include <thread>
#include <cstdio>
#include <random>

#include "engine/gpu/gpu_runner.h"
#include "engine/gpu/phase_timer.h"
#include "engine/serving/limits.h"
#include "engine/serving/serving_engine.h"
#include "tests/engine/architecture_configs.h"
#include "tests/engine/generated_weights.h"
#include "tests/kernels/gpu_test_util.h"
#include "tests/test_util.h"

namespace mlabench {
namespace {

std::unique_ptr<Engine> open(const std::string& dir, Device d, std::optional<uint64_t> seed = std::nullopt,
                             int64_t max_step_tokens = 4096, int64_t max_batch = 64,
                             Precision precision = Precision::NATIVE) {
  EngineOptions o{.model_dir = dir, .random_weights_seed = seed, .device = d};
  o.precision = precision;
  o.max_step_tokens = max_step_tokens;
  o.max_batch = max_batch;
  o.kv_cache_gib = 2;
  auto e = Engine::open(o);
  EXPECT_TRUE(static_cast<bool>(e)) << dir << ": " << (e ? "" : e.error().what());
  return e ? std::move(*e) : nullptr;
}

template <class T>
int32_t top1(const T* row, int64_t n) {
  return static_cast<int32_t>(std::max_element(row, row + n) - row);
}

// Gap between the two largest logits of a row.
double top2_gap(const float* row, int64_t n) {
  std::vector<float> v(row, row + n);
  std::partial_sort(v.begin(), v.begin() + 2, v.end(), std::greater<float>());
  return static_cast<double>(v[0]) - v[1];
}

// Greedy tokens of one request run in two batch compositions. BF16 GEMMs round differently for different batch
// shapes (cuBLAS picks kernels by shape; MoE rows take different paths), so the two runs may part at a near-tie
// of the logits, never elsewhere: `a` and `b` must agree until their first difference, where the top-2 gap of
// `logits_at` (the next-token logits after prompt + the common prefix) is under 1e-1 of the row's max |logit|:
// twice the BF16 noise floor of these tiny random models (the CPU engine with its GEMM inputs rounded to BF16 is
// 2.6e-2 to 5.3e-2 off transformers' float64 logits on the MLA fixtures), since each run may sit that far off on
// either side of the tie (a pre-empted sequence is recomputed through the decompressed path where the other run
// decoded through the absorbed one). A wrong key or block moves logits by the order of max |logit| itself.
void expect_same_or_near_tie(const std::vector<int32_t>& a, const std::vector<int32_t>& b,
                             const std::function<std::vector<float>(size_t)>& logits_at, const std::string& what) {
  size_t same = 0;
  while (same < a.size() && same < b.size() && a[same] == b[same]) ++same;
  if (same == a.size() && same == b.size()) return;
  ASSERT_LT(same, std::min(a.size(), b.size())) << what << ": one run stopped early";
  const std::vector<float> row = logits_at(same);
  double max_abs = 0;
  for (float v : row) max_abs = std::max(max_abs, static_cast<double>(std::fabs(v)));
  const double gap = top2_gap(row.data(), static_cast<int64_t>(row.size()));
  EXPECT_LT(gap, 1e-1 * max_abs) << what << ": runs differ at new token " << same << " where the top-2 gap is "
                                 << gap << " of max |logit| " << max_abs << " (not a near-tie)";
  std::printf("[ batch-variance ] %s: identical for %zu tokens, then a near-tie (gap %.2e, max|logit| %.2f)\n",
              what.c_str(), same, gap, max_abs);
}

// The serving core over the GPU runner, with the weights given (the internal API the Engine wraps). `logit_rows`
// raises the logit rows one step may return (at least 512: the evaluator never asks for more).
std::unique_ptr<serving::ServingEngine> gpu_serving(const ModelConfig& c, const ModelWeights& w, EngineOptions o,
                                                    int64_t logit_rows = 0) {
  o.device = Device::CUDA;
  serving::ServingLimits limits = serving::serving_limits(o, c);
  limits.max_logit_rows = std::max(limits.max_logit_rows, logit_rows);
  return std::make_unique<serving::ServingEngine>(make_gpu_runner(c, &w, 0, o, limits), limits);
}

class GpuFixture : public ::testing::TestWithParam<std::string> {};

struct Parity {
  double relative = 0, top1 = 0;  // max |err| / max|logit|; share of positions with the reference's top-1
  int64_t positions = 0;
};

Parity logits_parity(const std::string& dir, Precision precision) {
  const test::Reference ref = test::load_reference(dir);
  auto e = open(dir, Device::CUDA, std::nullopt, 4096, 64, precision);
  if (!e) return {1e9, 0, 0};
  const Logits l = e->logits(ref.tokens).value();
  EXPECT_EQ(l.data.size(), ref.logits.data.size());
  if (l.data.size() != ref.logits.data.size()) return {1e9, 0, 0};
  const double err = test::max_abs_diff(l.data.data(), ref.logits.data.data(), l.data.size());
  int64_t agree = 0;
  for (int64_t t = 0; t < l.n_tokens; ++t) {
    const auto* r = ref.logits.data.data() + t * l.vocab_size;
    agree += top1(l.row(t), l.vocab_size) == top1(r, l.vocab_size) ? 1 : 0;
  }
  const Parity p{err / ref.max_abs, static_cast<double>(agree) / static_cast<double>(l.n_tokens), l.n_tokens};
  std::printf("[ gpu parity ] %-28s %-6s max|err| %.3e  relative %.2e  top-1 agreement %.1f%% (%lld positions)\n",
              std::filesystem::path(dir).filename().c_str(), precision == Precision::FLOAT32 ? "f32" : "native", err,
              p.relative, 100.0 * p.top1, static_cast<long long>(p.positions));
  return p;
}

// The criteria: max |err| <= 2e-2 * max|logit| and top-1 agreement on >= 99% of positions, every fixture,
// met by the float32 precision (float32 weights, GEMMs, KV cache and attention). Regression guard well inside
// them: it measures <= 2e-6 relative on every fixture (the CPU engine: <= 4e-6), so 1e-4 still catches a
// kernel that rounds something to BF16 (that alone costs 5e-3 to 1e-1 on these fixtures, see below).
TEST_P(GpuFixture, Float32LogitsMatchTransformersFloat64) {
  MLABENCH_REQUIRE_GPU();
  const Parity p = logits_parity(GetParam(), Precision::FLOAT32);
  EXPECT_LE(p.relative, 2e-2) << GetParam();
  EXPECT_GE(p.top1, 0.99) << GetParam();
  EXPECT_LE(p.relative, 1e-4) << GetParam() << ": float32 precision regressed";
}

// The native precision (BF16 GEMM operands, BF16 KV cache) is as far from float64 as BF16 rounding puts any
// engine on these tiny random models, where a rounding that flips one routed expert moves the logits by 1e-1:
// the CPU engine with its KV cache rounded to BF16 is 4.7e-3..1.0e-1 off, with its GEMM inputs rounded
// 2.5e-3..5.3e-2; transformers itself in the stored dtype is 2.1e-2..4.1e-1 off (tools/gpu/
// reference_precision_error.py). The bound here catches real mistakes (a wrong RoPE, scale or routing is off
// by order 1 with top-1 near chance) without failing on BF16 noise: 1e-1 relative, top-1 >= 95%.
TEST_P(GpuFixture, NativeLogitsWithinBf16NoiseOfTransformersFloat64) {
  MLABENCH_REQUIRE_GPU();
  const Parity p = logits_parity(GetParam(), Precision::NATIVE);
  EXPECT_LE(p.relative, 1e-1) << GetParam();
  EXPECT_GE(p.top1, 0.95) << GetParam();
}

// >= 32 greedy tokens identical to the CPU engine, except at a near-tie after which the two continuations
// legitimately differ: the top-2 gap < 1e-3 in the float32 precision; in native BF16, within the BF16
// band of expect_same_or_near_tie (5e-2 of max|logit|).
void greedy_vs_cpu(const std::string& dir, Precision precision) {
  const test::Reference ref = test::load_reference(dir);
  auto gpu = open(dir, Device::CUDA, std::nullopt, 4096, 64, precision);
  auto cpu = open(dir, Device::CPU);
  ASSERT_TRUE(gpu && cpu);
  const std::vector<int32_t> prompt(ref.tokens.begin(), ref.tokens.begin() + std::min<size_t>(8, ref.tokens.size()));
  const GenerateOptions g{.max_new_tokens = 40};
  const GenerateResult a = gpu->generate(prompt, g).value();
  const GenerateResult b = cpu->generate(prompt, g).value();
  ASSERT_EQ(b.tokens.size(), 40u);
  const char* name = precision == Precision::FLOAT32 ? "f32" : "native";
  size_t same = 0;
  while (same < a.tokens.size() && same < b.tokens.size() && a.tokens[same] == b.tokens[same]) ++same;
  if (same == b.tokens.size()) {
    std::printf("[ gpu greedy ] %-28s %-6s 40/40 identical\n", std::filesystem::path(dir).filename().c_str(), name);
    return;
  }
  std::vector<int32_t> ctx = prompt;
  ctx.insert(ctx.end(), b.tokens.begin(), b.tokens.begin() + static_cast<std::ptrdiff_t>(same));
  const Logits l = cpu->logits(ctx).value();
  const float* row = l.row(l.n_tokens - 1);
  double max_abs = 0;
  for (int64_t v = 0; v < l.vocab_size; ++v) max_abs = std::max(max_abs, static_cast<double>(std::fabs(row[v])));
  const double gap = top2_gap(row, l.vocab_size);
  const double bound = precision == Precision::FLOAT32 ? 1e-3 : 5e-2 * max_abs;
  EXPECT_LT(gap, bound) << dir << " (" << name << "): GPU and CPU differ at new token " << same
                        << " where the CPU's top-2 gap is " << gap << " (not a near-tie)";
  std::printf("[ gpu greedy ] %-28s %-6s %zu/40 identical, then a near-tie (top-2 gap %.2e)\n",
              std::filesystem::path(dir).filename().c_str(), name, same, gap);
}

TEST_P(GpuFixture, Float32GreedyTokensMatchCpuEngine) {
  MLABENCH_REQUIRE_GPU();
  greedy_vs_cpu(GetParam(), Precision::FLOAT32);
}

TEST_P(GpuFixture, NativeGreedyTokensMatchCpuEngineUpToBf16NearTies) {
  MLABENCH_REQUIRE_GPU();
  greedy_vs_cpu(GetParam(), Precision::NATIVE);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GpuFixture, ::testing::ValuesIn(test::all_fixture_dirs()),
                         [](const auto& info) {
                           std::string n = std::filesystem::path(info.param).filename().string();
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> d(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& t : v) t = d(rng);
  return v;
}

// A GSM8K-length prompt prefilled in chunks of 64 gives the logits of one unchunked pass (to float rounding:
// the chunks see the earlier part through the BF16 cache, as a single pass does).
TEST(GpuEngine, ChunkedPrefillMatchesUnchunked) {
  MLABENCH_REQUIRE_GPU();
  const std::string dir = test::default_model_dir();
  auto whole = open(dir, Device::CUDA, std::nullopt, 4096, 8);
  auto chunked = open(dir, Device::CUDA, std::nullopt, 64, 8);
  ASSERT_TRUE(whole && chunked);
  const std::vector<int32_t> prompt = random_ids(900, whole->summary().vocab_size, 1);
  const Logits a = whole->logits(prompt).value();
  const Logits b = chunked->logits(prompt).value();
  double max_abs = 0;
  for (float v : a.data) max_abs = std::max(max_abs, static_cast<double>(std::fabs(v)));
  EXPECT_LE(test::max_abs_diff(a.data.data(), b.data.data(), a.data.size()), 1e-3 * max_abs);
  const GenerateOptions g{.max_new_tokens = 24};
  EXPECT_EQ(whole->generate(prompt, g).value().tokens, chunked->generate(prompt, g).value().tokens);
}

// A live session (what `mlabench serve` runs) on the GPU: requests submitted from two threads join the running batch
// and run on the session's own thread (where the runner selects its device), and each gives the tokens
// Engine::generate gives alone (float32, so no BF16 near-tie can flip a greedy token between batch shapes).
TEST(GpuEngine, LiveSessionFromOtherThreadsMatchesGenerate) {
  MLABENCH_REQUIRE_GPU();
  auto e = open(test::default_model_dir(), Device::CUDA, std::nullopt, 4096, 8, Precision::FLOAT32);
  ASSERT_TRUE(e);
  constexpr int kRequests = 6;
  std::vector<std::vector<int32_t>> prompts, want;
  for (int i = 0; i < kRequests; ++i) {
    prompts.push_back(random_ids(20 + 37 * i, e->summary().vocab_size, 100 + static_cast<unsigned>(i)));
    want.push_back(e->generate(prompts.back(), {.max_new_tokens = 16}).value().tokens);
  }
  auto session = e->start_live();
  ASSERT_TRUE(static_cast<bool>(session)) << session.error().what();
  std::vector<std::promise<Result<LiveResult>>> done(kRequests);
  auto submit = [&](int first) {
    for (int i = first; i < kRequests; i += 2) {
      LiveRequest r{.prompt = prompts[static_cast<size_t>(i)]};
      r.options.sampling.max_new_tokens = 16;
      r.options.ignore_eos = true;
      auto* slot = &done[static_cast<size_t>(i)];
      const auto id = (*session)->submit(std::move(r), {.on_done = [slot](Result<LiveResult> res) {
                                                           slot->set_value(std::move(res));
                                                         }});
      EXPECT_TRUE(static_cast<bool>(id)) << (id ? "" : id.error().what());
    }
  };
  std::thread a(submit, 0), b(submit, 1);
  a.join();
  b.join();
  for (int i = 0; i < kRequests; ++i) {
    auto f = done[static_cast<size_t>(i)].get_future();
    ASSERT_EQ(f.wait_for(std::chrono::seconds(120)), std::future_status::ready) << "request " << i;
    Result<LiveResult> got = f.get();
    ASSERT_TRUE(static_cast<bool>(got)) << got.error().what();
    EXPECT_EQ(got->generation.tokens, want[static_cast<size_t>(i)]) << "request " << i;
  }
}

// The phase timer (MLABENCH_GPU_PHASES=1, here switched on in code): a prefill on the bundled model (MLA, MoE
// layers and a dense one) times each phase of the forward pass, every one with a positive time, once a layer.
TEST(GpuEngine, PhaseTimerTimesEveryPhaseOfAPrefill) {
  MLABENCH_REQUIRE_GPU();
  auto e = open(test::default_model_dir(), Device::CUDA, std::nullopt, 4096, 8);
  ASSERT_TRUE(e);
  const int64_t layers = e->summary().n_layers;
  gpu::phases::set_enabled(true);
  const bool ok = e->logits(random_ids(300, e->summary().vocab_size, 3)).ok();
  gpu::phases::set_enabled(false);
  ASSERT_TRUE(ok);
  const std::vector<gpu::phases::PhaseTotal> got = gpu::phases::totals();
  for (const char* name : {"embedding", "attention: norm, q, kv_a, rope", "attention: prefill keys (kv_b)",
                           "attention: prefill flash", "attention: o_proj", "moe: norm, router, shared",
                           "moe: routed experts", "moe: combine", "final norm, lm_head"}) {
    const auto it = std::find_if(got.begin(), got.end(), [&](const auto& t) { return t.name == name; });
    ASSERT_NE(it, got.end()) << name << " missing from\n" << gpu::phases::report();
    EXPECT_GT(it->ms, 0.0) << name;
    EXPECT_GE(it->calls, std::string(name).rfind("attention", 0) == 0 ? layers : 1) << name;
  }
}

// bench --profile's engine side: while profiling, every step runs eagerly (no graph replay) and its phases are
// summed by step kind; a take returns them and starts a new count; off, there is nothing to take.
TEST(GpuEngine, ProfilingTimesPrefillAndDecodeStepsApart) {
  MLABENCH_REQUIRE_GPU();
  auto e = open(test::default_model_dir(), Device::CUDA, std::nullopt, 4096, 8);
  ASSERT_TRUE(e);
  const auto replays = [&] { return nlohmann::json::parse(e->device_json())["graphs"]["replays"].get<int64_t>(); };
  ASSERT_TRUE(e->set_profiling(true));
  const int64_t before = replays();
  const auto gen = e->generate(random_ids(40, e->summary().vocab_size, 5), {.max_new_tokens = 8});
  ASSERT_TRUE(gen.ok());
  const auto n_new = static_cast<int64_t>(gen.value().tokens.size());
  ASSERT_GE(n_new, 2);
  EXPECT_EQ(replays(), before) << "profiled decode steps run eagerly";
  const auto j = nlohmann::json::parse(e->take_profile_json());
  const auto has = [](const nlohmann::json& kind, const char* name) {
    for (const auto& ph : kind["phases"])
      if (ph["phase"] == name) return ph["ms"].get<double>() > 0;
    return false;
  };
  EXPECT_EQ(j["prefill_steps"]["steps"], 1) << j.dump(1);
  EXPECT_EQ(j["prefill_steps"]["rows"], 40);
  EXPECT_TRUE(has(j["prefill_steps"], "attention: prefill flash")) << j.dump(1);
  EXPECT_EQ(j["decode_steps"]["steps"], n_new - 1) << "the first new token comes from the prefill step";
  for (const char* name : {"attention: decode (absorbed)", "sampling, scoring"})
    EXPECT_TRUE(has(j["decode_steps"], name)) << name << "\n" << j.dump(1);
  // One sequence: the MoE layers' one-token path (moe_decode_ffn), or the PAIR path under MLABENCH_MOE_DECODE_FFN=0.
  EXPECT_TRUE(has(j["decode_steps"], "moe: experts, one token") || has(j["decode_steps"], "moe: routed experts"))
      << j.dump(1);
  EXPECT_EQ(nlohmann::json::parse(e->take_profile_json())["decode_steps"]["steps"], 0) << "a take starts a new count";
  ASSERT_TRUE(e->set_profiling(false));
  EXPECT_EQ(e->take_profile_json(), "");
  gpu::phases::set_enabled(false);
}

// Twenty requests of different lengths through a batch of at most 4: each result equals the request run alone.
TEST(GpuEngine, ContinuousBatchingChangesNoResult) {
  MLABENCH_REQUIRE_GPU();
  auto e = open(test::default_model_dir(), Device::CUDA, std::nullopt, 256, 4);
  ASSERT_TRUE(e);
  std::vector<GenerateRequest> reqs;
  for (int i = 0; i < 20; ++i)
    reqs.push_back({random_ids(3 + 37 * i % 200, e->summary().vocab_size, 100 + i),
                    {.max_new_tokens = 5 + (i * 7) % 30}});
  const std::vector<GenerateResult> batched = e->generate_batch(reqs).value();
  ASSERT_EQ(batched.size(), reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    const GenerateResult alone = e->generate(reqs[i].prompt, reqs[i].options).value();
    EXPECT_EQ(batched[i].tokens.size(), static_cast<size_t>(reqs[i].options.max_new_tokens));
    expect_same_or_near_tie(batched[i].tokens, alone.tokens, [&](size_t n) {
      std::vector<int32_t> ctx = reqs[i].prompt;
      ctx.insert(ctx.end(), alone.tokens.begin(), alone.tokens.begin() + static_cast<std::ptrdiff_t>(n));
      const Logits l = e->logits(ctx).value();
      return std::vector<float>(l.row(l.n_tokens - 1), l.row(l.n_tokens - 1) + l.vocab_size);
    }, "request " + std::to_string(i));
  }
}

// Decode steps replayed from CUDA graphs give the tokens of kernel-by-kernel launches (graphed steps are padded
// to a power of two, so GEMM shapes, and with them BF16 rounding, may differ: near-ties may flip).
TEST(GpuEngine, CudaGraphsChangeNoResult) {
  MLABENCH_REQUIRE_GPU();
  std::vector<std::unique_ptr<Engine>> engines;
  for (bool graphs : {true, false}) {
    EngineOptions o{.model_dir = test::default_model_dir(), .device = Device::CUDA};
    o.kv_cache_gib = 1;
    o.cuda_graphs = graphs;
    engines.push_back(std::move(Engine::open(o).value()));
  }
  std::vector<GenerateRequest> reqs;
  for (int i = 0; i < 11; ++i)
    reqs.push_back({random_ids(20 + 9 * i, engines[0]->summary().vocab_size, 300 + i), {.max_new_tokens = 40}});
  const auto a = engines[0]->generate_batch(reqs).value();
  const auto b = engines[1]->generate_batch(reqs).value();
  for (size_t i = 0; i < reqs.size(); ++i)
    expect_same_or_near_tie(a[i].tokens, b[i].tokens, [&](size_t n) {
      std::vector<int32_t> ctx = reqs[i].prompt;
      ctx.insert(ctx.end(), b[i].tokens.begin(), b[i].tokens.begin() + static_cast<std::ptrdiff_t>(n));
      const Logits l = engines[1]->logits(ctx).value();
      return std::vector<float>(l.row(l.n_tokens - 1), l.row(l.n_tokens - 1) + l.vocab_size);
    }, "graphs, request " + std::to_string(i));
  EXPECT_NE(engines[0]->device_json().find("\"cuda_graphs\":true"), std::string::npos);
}

// A cache of a few blocks forces pre-emption; results equal those of a roomy cache.
TEST(GpuEngine, PreemptionUnderATinyCacheChangesNoResult) {
  MLABENCH_REQUIRE_GPU();
  const ModelConfig c = load_config(test::default_model_dir());
  const ModelWeights w = load_weights(c, test::default_model_dir());
  auto roomy = gpu_serving(c, w, {.kv_cache_gib = 0.5, .max_batch = 16, .max_step_tokens = 512, .max_context = 1024,
                                  .block_size = 16});
  // Blocks of 16 tokens; 40 blocks hold about three of these sequences at once.
  const uint64_t per_token = static_cast<uint64_t>(c.n_layers * (c.kv_lora_rank + c.qk_rope_head_dim) * 2);
  auto tight = gpu_serving(c, w, {.kv_cache_gib = 40.0 * 16 * per_token / 1073741824.0, .max_batch = 16,
                                  .max_step_tokens = 512, .max_context = 1024, .block_size = 16});
  std::vector<serving::Request> reqs;
  for (int i = 0; i < 12; ++i)
    reqs.push_back({.tokens = random_ids(100 + 13 * i, c.vocab_size, 7 + i), .gen = {.max_new_tokens = 60}});
  const auto a = roomy->run(reqs);
  const auto b = tight->run(reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(b[i].tokens.size(), 60u) << "request " << i;
    expect_same_or_near_tie(a[i].tokens, b[i].tokens, [&](size_t n) {
      serving::Request r{.tokens = reqs[i].tokens, .all_logits = true};
      r.tokens.insert(r.tokens.end(), a[i].tokens.begin(), a[i].tokens.begin() + static_cast<std::ptrdiff_t>(n));
      const std::vector<float> all = roomy->run({r}).at(0).logits;
      return std::vector<float>(all.end() - c.vocab_size, all.end());
    }, "request " + std::to_string(i));
  }
  EXPECT_GT(tight->stats().preemptions, 0) << "the tight cache should have pre-empted";
  EXPECT_EQ(roomy->stats().preemptions, 0);
}

// Four continuations of one long context (MMLU's shape): the context's blocks are computed once and reused, and
// the scores equal those computed without sharing.
TEST(GpuEngine, PrefixSharingReusesTheContextAndKeepsScores) {
  MLABENCH_REQUIRE_GPU();
  const ModelConfig c = load_config(test::default_model_dir());
  const ModelWeights w = load_weights(c, test::default_model_dir());
  auto shared = gpu_serving(c, w, {.kv_cache_gib = 0.5, .max_context = 1024});
  auto plain = gpu_serving(c, w, {.kv_cache_gib = 0.5, .max_context = 1024, .prefix_sharing = false});
  const std::vector<int32_t> ctx = random_ids(600, c.vocab_size, 3);
  std::vector<serving::Request> reqs;
  for (int32_t choice = 0; choice < 4; ++choice) {
    serving::Request r{.tokens = ctx, .score_from = static_cast<int64_t>(ctx.size())};
    r.tokens.push_back(10 + choice);
    reqs.push_back(r);
  }
  const auto a = shared->run(reqs);
  const auto b = plain->run(reqs);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_NEAR(a[i].logprob, b[i].logprob, 1e-3) << "choice " << i;
  const int64_t bs = shared->limits().block_size;  // auto: 64 for this MLA model on CUDA
  EXPECT_EQ(bs, c.is_mla() ? 64 : 16);
  EXPECT_GE(shared->stats().prefix_tokens_reused, 3 * (600 / bs) * bs)
      << "three of the four should reuse the context's full blocks";
  EXPECT_EQ(plain->stats().prefix_tokens_reused, 0);
  // A later request with the same context hits the blocks left in the cache.
  const auto again = shared->run({reqs[0]});
  EXPECT_NEAR(again[0].logprob, a[0].logprob, 1e-3);
}

// Scores through the batched path equal the CPU engine's (loglikelihood as the evaluator asks for it).
TEST(GpuEngine, ScoreBatchMatchesCpu) {
  MLABENCH_REQUIRE_GPU();
  auto gpu = open(test::default_model_dir(), Device::CUDA);
  auto cpu = open(test::default_model_dir(), Device::CPU);
  ASSERT_TRUE(gpu && cpu);
  std::vector<ScoreRequest> reqs;
  for (int i = 0; i < 6; ++i)
    reqs.push_back({random_ids(40 + i, gpu->summary().vocab_size, 50 + i),
                    random_ids(1 + i % 3, gpu->summary().vocab_size, 90 + i)});
  const auto a = gpu->score_batch(reqs).value();
  const auto b = cpu->score_batch(reqs).value();
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_NEAR(a[i].logprob, b[i].logprob, 2e-2 * std::max(1.0, std::fabs(b[i].logprob))) << "request " << i;
    EXPECT_EQ(a[i].n_tokens, b[i].n_tokens);
  }
}

// The float32 precision through the scheduler's other paths: chunked prefill, batched scores and device-generated
// random weights (generated in the stored dtype, then widened) all land within float32 rounding of the CPU engine.
TEST(GpuEngine, Float32PrecisionMatchesCpuOnEveryPath) {
  MLABENCH_REQUIRE_GPU();
  const std::string dir = test::default_model_dir();
  auto cpu = open(dir, Device::CPU);
  auto whole = open(dir, Device::CUDA, std::nullopt, 4096, 8, Precision::FLOAT32);
  auto chunked = open(dir, Device::CUDA, std::nullopt, 64, 8, Precision::FLOAT32);
  ASSERT_TRUE(cpu && whole && chunked);
  const std::vector<int32_t> prompt = random_ids(700, cpu->summary().vocab_size, 21);
  const Logits want = cpu->logits(prompt).value();
  double max_abs = 0;
  for (float v : want.data) max_abs = std::max(max_abs, static_cast<double>(std::fabs(v)));
  for (Engine* e : {whole.get(), chunked.get()}) {
    const Logits got = e->logits(prompt).value();
    EXPECT_LE(test::max_abs_diff(got.data.data(), want.data.data(), want.data.size()), 1e-4 * max_abs)
        << (e == whole.get() ? "unchunked" : "chunks of 64");
  }
  std::vector<ScoreRequest> reqs;
  for (int i = 0; i < 6; ++i)
    reqs.push_back({random_ids(40 + i, cpu->summary().vocab_size, 50 + i),
                    random_ids(1 + i % 3, cpu->summary().vocab_size, 90 + i)});
  const auto a = chunked->score_batch(reqs).value();
  const auto b = cpu->score_batch(reqs).value();
  for (size_t i = 0; i < reqs.size(); ++i)
    EXPECT_NEAR(a[i].logprob, b[i].logprob, 1e-4 * std::max(1.0, std::fabs(b[i].logprob))) << "request " << i;

  auto gpu_rand = open(dir, Device::CUDA, 11, 4096, 64, Precision::FLOAT32);
  auto cpu_rand = open(dir, Device::CPU, 11);
  ASSERT_TRUE(gpu_rand && cpu_rand);
  const std::vector<int32_t> ids = random_ids(17, cpu->summary().vocab_size, 5);
  const Logits ra = gpu_rand->logits(ids).value(), rb = cpu_rand->logits(ids).value();
  double rmax = 0;
  for (float v : rb.data) rmax = std::max(rmax, static_cast<double>(std::fabs(v)));
  EXPECT_LE(test::max_abs_diff(ra.data.data(), rb.data.data(), ra.data.size()), 1e-4 * rmax);
}

// The float32 precision's memory: a BF16 checkpoint's weights take twice the bytes, and so does each cached
// token (an F32 latent); the budget buys half the tokens.
TEST(GpuEngine, Float32PrecisionAccountsItsMemory) {
  MLABENCH_REQUIRE_GPU();
  const ModelConfig c = load_config(test::default_model_dir());
  const ModelWeights w = load_weights(c, test::default_model_dir());
  ASSERT_EQ(w.embed.dtype, DType::BF16);
  auto native = gpu_serving(c, w, {.kv_cache_gib = 0.25, .max_context = 1024});
  auto f32 = gpu_serving(c, w, {.kv_cache_gib = 0.25, .max_context = 1024, .precision = Precision::FLOAT32});
  const uint64_t bf16_per_token = static_cast<uint64_t>(c.n_layers * (c.kv_lora_rank + c.qk_rope_head_dim) * 2);
  auto tokens = [&](const serving::ServingEngine& e) {
    return static_cast<uint64_t>(e.runner().n_blocks() * e.limits().block_size);
  };
  EXPECT_EQ(native->runner().kv_cache_bytes() / tokens(*native), bf16_per_token);
  EXPECT_EQ(f32->runner().kv_cache_bytes() / tokens(*f32), 2 * bf16_per_token);
  EXPECT_NEAR(static_cast<double>(tokens(*f32)) / static_cast<double>(tokens(*native)), 0.5, 0.01);
  // Norms and the float32 router are F32 in both, so the ratio is just under 2.
  const double ratio =
      static_cast<double>(f32->runner().weight_bytes()) / static_cast<double>(native->runner().weight_bytes());
  EXPECT_GT(ratio, 1.9);
  EXPECT_LE(ratio, 2.0);
  EXPECT_NE(f32->runner().describe_json().find("\"kv_cache_dtype\":\"F32\""), std::string::npos)
      << f32->runner().describe_json();
}

// --random-weights on the device: the same values as the host generator, so GPU and CPU logits agree.
TEST(GpuEngine, DeviceRandomWeightsEqualHostRandomWeights) {
  MLABENCH_REQUIRE_GPU();
  const std::string dir = test::default_model_dir();
  auto gpu = open(dir, Device::CUDA, 11);
  auto cpu = open(dir, Device::CPU, 11);
  ASSERT_TRUE(gpu && cpu);
  const std::vector<int32_t> ids = random_ids(17, gpu->summary().vocab_size, 5);
  const Logits a = gpu->logits(ids).value();
  const Logits b = cpu->logits(ids).value();
  double max_abs = 0;
  for (float v : b.data) max_abs = std::max(max_abs, static_cast<double>(std::fabs(v)));
  EXPECT_LE(test::max_abs_diff(a.data.data(), b.data.data(), a.data.size()), 2e-2 * max_abs);
}

// Bad requests are refused with a message, never a crash.
TEST(GpuEngine, RefusesRequestsBeyondItsContext) {
  MLABENCH_REQUIRE_GPU();
  auto e = open(test::default_model_dir(), Device::CUDA);
  ASSERT_TRUE(e);
  const std::vector<int32_t> long_prompt(5000, 1);
  auto r = e->generate(long_prompt, {.max_new_tokens = 1});
  ASSERT_FALSE(static_cast<bool>(r));
  EXPECT_NE(std::string(r.error().what()).find("positions"), std::string::npos) << r.error().what();
}

// The same seed draws the same tokens on --device cpu and --device cuda: both sample with one definition (the
// sampling kernel and its CPU twin, exact integer masses), so with the float32 precision's logits (equal to
// float32 rounding) the draws agree token for token, with temperature and top-p.
TEST(GpuEngine, SeededSamplingDrawsTheCpuEnginesTokens) {
  MLABENCH_REQUIRE_GPU();
  const std::string dir = test::default_model_dir();
  auto gpu = open(dir, Device::CUDA, std::nullopt, 4096, 64, Precision::FLOAT32);
  auto cpu = open(dir, Device::CPU);
  ASSERT_TRUE(gpu && cpu);
  int64_t compared = 0;
  for (uint64_t seed : {1u, 2u, 3u, 42u}) {
    for (float top_p : {1.0f, 0.9f, 0.5f}) {
      const GenerateOptions o{.max_new_tokens = 24, .temperature = 0.8f, .top_p = top_p, .seed = seed};
      const std::vector<int32_t> prompt = random_ids(12, cpu->summary().vocab_size, seed);
      const GenerateResult a = gpu->generate(prompt, o).value(), b = cpu->generate(prompt, o).value();
      EXPECT_EQ(a.tokens, b.tokens) << "seed " << seed << " top_p " << top_p;
      compared += static_cast<int64_t>(b.tokens.size());
    }
  }
  std::printf("[ gpu sampling ] %lld sampled tokens identical on cpu and cuda (f32)\n", static_cast<long long>(compared));
}

// Decode batches above 128 sequences run from CUDA graphs (the MoE layer keeps expert counts on the device): 300
// requests decode together in the 512 bucket, and give the tokens of kernel-by-kernel launches.
TEST(GpuEngine, CudaGraphsCoverDecodeBatchesAbove256) {
  MLABENCH_REQUIRE_GPU();
  const ModelConfig c = load_config(test::default_model_dir());
  const ModelWeights w = load_weights(c, test::default_model_dir());
  auto graphed = gpu_serving(c, w, {.kv_cache_gib = 2, .max_batch = 512, .max_context = 256});
  auto eager = gpu_serving(c, w, {.kv_cache_gib = 2, .max_batch = 512, .max_context = 256, .cuda_graphs = false});
  std::vector<serving::Request> reqs;
  for (int i = 0; i < 300; ++i)
    reqs.push_back({.tokens = random_ids(8 + i % 17, c.vocab_size, 900 + i), .gen = {.max_new_tokens = 12}});
  const auto a = graphed->run(reqs), b = eager->run(reqs);
  const nlohmann::json info = nlohmann::json::parse(graphed->runner().describe_json());
  EXPECT_GE(info["graphs"]["largest_batch"].get<int64_t>(), 256) << info.dump();
  EXPECT_GT(info["graphs"]["replays"].get<int64_t>(), 5) << info.dump();
  EXPECT_EQ(nlohmann::json::parse(eager->runner().describe_json())["graphs"]["replays"], 0);
  // Every captured graph says what it launches: at least one kernel a layer (the forward pass is in it).
  ASSERT_FALSE(info["graphs"]["captured"].empty()) << info.dump();
  // 300 sequences decode as serving::decode_graph_bucket(300) = 320 rows (20 padding), not 512: every captured
  // bucket is one of that function's buckets.
  bool saw_320 = false;
  for (const auto& g : info["graphs"]["captured"]) {
    EXPECT_GE(g["kernels"].get<int64_t>(), c.n_layers) << g.dump();
    const int64_t bucket = g["batch_bucket"].get<int64_t>();
    EXPECT_EQ(serving::decode_graph_bucket(bucket), bucket) << g.dump();
    EXPECT_NE(bucket, 512) << g.dump();
    saw_320 = saw_320 || bucket == 320;
  }
  EXPECT_TRUE(saw_320) << info.dump();
  EXPECT_TRUE(nlohmann::json::parse(eager->runner().describe_json())["graphs"]["captured"].empty());
  for (size_t i = 0; i < reqs.size(); ++i)
    expect_same_or_near_tie(a[i].tokens, b[i].tokens, [&](size_t n) {
      serving::Request r{.tokens = reqs[i].tokens, .all_logits = true};
      r.tokens.insert(r.tokens.end(), b[i].tokens.begin(), b[i].tokens.begin() + static_cast<std::ptrdiff_t>(n));
      const std::vector<float> all = eager->run({r}).at(0).logits;
      return std::vector<float>(all.end() - c.vocab_size, all.end());
    }, "request " + std::to_string(i));
}

// Every attention x FFN composition (tests/engine/architecture_configs.h: MLA with and without q_lora, MHA, GQA,
// MQA, each dense and MoE, both architectures under both attention kinds) runs on the GPU with device-generated
// random weights and matches the CPU engine on the same weights: float32 logits within float32 rounding and the
// same greedy tokens; native BF16 logits within the BF16 band.
TEST(GpuEngine, EveryArchitectureCombinationMatchesTheCpu) {
  MLABENCH_REQUIRE_GPU();
  for (const auto& [name, config] : test::architecture_combinations()) {
    test::TempDir dir;
    std::ofstream(dir.file("config.json")) << config.dump(2);
    auto cpu = open(dir.path(), Device::CPU, 5);
    auto f32 = open(dir.path(), Device::CUDA, 5, 4096, 64, Precision::FLOAT32);
    auto native = open(dir.path(), Device::CUDA, 5, 4096, 64, Precision::NATIVE);
    ASSERT_TRUE(cpu && f32 && native) << name;
    const std::vector<int32_t> ids = random_ids(40, cpu->summary().vocab_size, 17);
    const Logits want = cpu->logits(ids).value();
    double max_abs = 0;
    for (float v : want.data) max_abs = std::max(max_abs, static_cast<double>(std::fabs(v)));
    const Logits a = f32->logits(ids).value(), b = native->logits(ids).value();
    const double ea = test::max_abs_diff(a.data.data(), want.data.data(), want.data.size()) / max_abs;
    const double eb = test::max_abs_diff(b.data.data(), want.data.data(), want.data.size()) / max_abs;
    EXPECT_LE(ea, 1e-4) << name << ": float32 logits";
    EXPECT_LE(eb, 1e-1) << name << ": native logits";
    const std::vector<int32_t> prompt(ids.begin(), ids.begin() + 6);
    const GenerateOptions g{.max_new_tokens = 16};
    EXPECT_EQ(f32->generate(prompt, g).value().tokens, cpu->generate(prompt, g).value().tokens) << name;
    std::printf("[ gpu kinds ] %-16s %-18s f32 %.2e  native %.2e of max|logit| %.3f\n", name.c_str(),
                cpu->summary().attention.c_str(), ea, eb, max_abs);
  }
}

// ---- The long fixture: DeepSeek-V2's real MLA shapes over 8,317 tokens (tools/make_long_fixture.py) -------------

// The fixture's checkpoint, regenerated (tests/engine/generated_weights.h) and opened; nullopt with `why` while
// the GPU machine has not made its reference.
struct LongFixtureRun {
  test::LongReference lr;
  test::TempDir dir;
  ModelConfig c;
  ModelWeights w;
};

std::unique_ptr<LongFixtureRun> open_long_fixture(std::string* why) {
  std::optional<test::LongReference> lr = test::load_long_reference(test::long_fixture_dir(), why);
  if (!lr) return nullptr;
  auto r = std::make_unique<LongFixtureRun>();
  r->lr = std::move(*lr);
  const std::string sha = test::write_generated_checkpoint(test::long_fixture_dir(), r->dir.path());
  EXPECT_EQ(sha, test::read_generated_weights_spec(test::long_fixture_dir()).sha256) << "regenerated checkpoint";
  r->c = load_config(r->dir.path());
  r->w = load_weights(r->c, r->dir.path());
  return r;
}

// Every position's logits through the serving core over the GPU runner, in chunks of at most `step_tokens`. The
// logit-row budget of a step (512 by default: the evaluator never asks for more) is raised to the prompt, so
// that step_tokens alone sets the chunks: the whole prompt in one prefill, or chunks that each attend to the
// latent cache of the ones before.
std::vector<float> long_fixture_logits(const LongFixtureRun& r, int64_t step_tokens, Precision precision) {
  const auto n = static_cast<int64_t>(r.lr.ref.tokens.size());
  auto e = gpu_serving(r.c, r.w,
                       {.kv_cache_gib = 1, .max_batch = 8, .max_step_tokens = step_tokens, .max_context = n,
                        .precision = precision},
                       static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(n))));
  std::vector<float> out = e->run({serving::Request{.tokens = r.lr.ref.tokens, .all_logits = true}}).at(0).logits;
  EXPECT_EQ(e->stats().steps, (n + step_tokens - 1) / step_tokens) << "prefill steps of " << step_tokens << " tokens";
  return out;
}

struct LongParity {
  double relative = 0, max_ref = 0;
  std::vector<int64_t> top1_misses;  // rows (indices into the stored positions) whose top-1 differs
  int64_t rows = 0;
};

// The engine's logits [n_tokens, vocab] at the stored positions against the reference rows.
LongParity long_parity(const test::LongReference& lr, const std::vector<float>& all, int64_t vocab) {
  LongParity p;
  p.rows = static_cast<int64_t>(lr.positions.size());
  double err = 0;
  for (int64_t i = 0; i < p.rows; ++i) {
    const float* got = all.data() + lr.positions[static_cast<size_t>(i)] * vocab;
    const double* want = lr.ref.logits.data.data() + i * vocab;
    err = std::max(err, test::max_abs_diff(got, want, static_cast<size_t>(vocab)));
    if (top1(got, vocab) != top1(want, vocab)) p.top1_misses.push_back(i);
  }
  p.max_ref = lr.ref.max_abs;
  p.relative = err / p.max_ref;
  return p;
}

void print_long_parity(const LongParity& p, const char* precision, int64_t step_tokens) {
  std::printf("[ gpu parity ] %-28s %-6s relative %.2e  top-1 agreement %.1f%% (%lld positions, steps of %lld)\n",
              "dsv2-mla-8k-yarn", precision, p.relative,
              100.0 * static_cast<double>(p.rows - static_cast<int64_t>(p.top1_misses.size())) /
                  static_cast<double>(p.rows),
              static_cast<long long>(p.rows), static_cast<long long>(step_tokens));
}

// The bound at the real MLA shapes: float32 precision within 1e-5 of max |logit| of transformers' float64
// at every stored position of 8,317 tokens (7,293 past YaRN's original 1,024), in one prefill and in chunks of
// 2,048 over the cached latent prefix.
TEST(GpuEngine, LongFixtureFloat32MatchesTransformersFloat64OverAllTokens) {
  MLABENCH_REQUIRE_GPU();
  std::string why;
  const auto r = open_long_fixture(&why);
  if (!r) GTEST_SKIP() << why;
  for (int64_t step : {static_cast<int64_t>(r->lr.ref.tokens.size()), int64_t{2048}}) {
    const LongParity p = long_parity(r->lr, long_fixture_logits(*r, step, Precision::FLOAT32), r->c.vocab_size);
    EXPECT_LE(p.relative, 1e-5) << "steps of " << step << " tokens";
    print_long_parity(p, "f32", step);
  }
}

// The native precision (BF16) within transformers' own BF16 error on the same checkpoint and tokens (recorded by
// tools/make_long_fixture.py in the same run as the float64 reference). A top-1 the engine misses must be a
// near-tie of the reference: a top-2 gap under twice transformers' BF16 error (each side of the tie may sit that
// far off, as in expect_same_or_near_tie).
TEST(GpuEngine, LongFixtureNativeWithinTransformersOwnBf16Error) {
  MLABENCH_REQUIRE_GPU();
  std::string why;
  const auto r = open_long_fixture(&why);
  if (!r) GTEST_SKIP() << why;
  const int64_t vocab = r->c.vocab_size;
  for (int64_t step : {static_cast<int64_t>(r->lr.ref.tokens.size()), int64_t{2048}}) {
    const LongParity p = long_parity(r->lr, long_fixture_logits(*r, step, Precision::NATIVE), vocab);
    EXPECT_LE(p.relative, r->lr.bf16_relative) << "steps of " << step << " tokens; transformers BF16: "
                                               << r->lr.bf16_relative;
    for (int64_t i : p.top1_misses) {
      const std::vector<float> row(r->lr.ref.logits.data.begin() + i * vocab,
                                   r->lr.ref.logits.data.begin() + (i + 1) * vocab);
      EXPECT_LT(top2_gap(row.data(), vocab), 2 * r->lr.bf16_relative * p.max_ref)
          << "position " << r->lr.positions[static_cast<size_t>(i)] << ": top-1 differs away from a near-tie";
    }
    print_long_parity(p, "native", step);
    std::printf("[ gpu parity ] %-28s %-6s relative %.2e  top-1 agreement %.1f%% (transformers BF16, same positions)\n",
                "dsv2-mla-8k-yarn", "hf-bf16", r->lr.bf16_relative, 100.0 * r->lr.bf16_top1);
  }
}

}  // namespace
}  // namespace mlabench
