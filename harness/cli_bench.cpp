// mlabench bench: prefill and decode throughput, TTFT/TPOT percentiles, KV bytes and achieved bandwidth of the
// engine at several batch sizes, on random prompts (random weights welcome: --random-weights 0). Each batch
// runs twice through the continuous-batching engine: prompts with one new token (prefill throughput and TTFT),
// then prompts with --gen new tokens (decode throughput and TPOT, counted only over the steps where every
// sequence is decoding). Achieved GB/s is the weight and KV bytes one decode step must read divided by the step
// time, quoted against the device-to-device copy bandwidth measured in the same run.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "engine/core/dtype.h"
#include "engine/model/config.h"
#include "engine/model/model_info.h"
#include "harness/cli_model.h"
#include "harness/cli_run.h"

namespace mlabench::cli {

namespace {

struct BenchArgs {
  ModelArgs model;
  std::string batches = "1,16,64,256";
  int64_t prompt = 512, gen = 128;
  std::string out;
  uint64_t seed = 0;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const double at = p / 100.0 * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(at)), hi = static_cast<size_t>(std::ceil(at));
  return v[lo] + (v[hi] - v[lo]) * (at - static_cast<double>(lo));
}

void bench_command(const BenchArgs& a) {
  std::vector<int64_t> batches;
  std::stringstream ss(a.batches);
  for (std::string item; std::getline(ss, item, ',');) {
    try {
      batches.push_back(std::stoll(item));
    } catch (const std::exception&) {
      throw Error(fmt::format("--batch must be comma-separated positive integers; \"{}\" is not one", item));
    }
    if (batches.back() <= 0) throw Error(fmt::format("--batch sizes must be positive, got {}", batches.back()));
  }
  // The engine serves the largest batch at once and, unless told otherwise, only as long a context as a request needs.
  EngineOptions eo = a.model.engine;
  eo.max_batch = std::max(eo.max_batch, *std::max_element(batches.begin(), batches.end()));
  if (eo.max_context == 0) eo.max_context = a.prompt + a.gen + 1;
  const ModelConfig c = load_config(eo.model_dir);
  auto engine = open_engine(eo);
  const ModelSummary& sum = engine->summary();
  const double copy_gbps = engine->measure_copy_bandwidth_gbps();

  // Bytes one decode step reads: the dense weights, the routed experts the batch touches (expected number of
  // distinct experts under uniform routing), and every sequence's KV cache.
  const auto es = static_cast<double>(engine->active_weight_bytes()) /
                  std::max<double>(1.0, static_cast<double>(sum.params_active_per_token));
  const double expert_bytes = static_cast<double>(count_params(c).per_routed_expert) * es;
  const auto n_moe = static_cast<double>(c.n_moe_layers());
  // Cache bytes per token as the CUDA engine allocated them (BF16, or F32 under --precision f32); the BF16 figure
  // of the model summary when the engine describes no device (the CPU engine: device_json() is empty).
  const std::string dev = engine->device_json();
  const auto kv_per_token = dev.empty() ? static_cast<double>(sum.kv_bytes_per_token_bf16)
                                        : nlohmann::json::parse(dev)["kv_cache"]["bytes_per_token"].get<double>();
  auto step_bytes = [&](int64_t B, double ctx) {
    double w = static_cast<double>(engine->active_weight_bytes());
    if (c.n_routed_experts > 0) {
      const double E = static_cast<double>(c.n_routed_experts), k = static_cast<double>(c.experts_per_token);
      const double touched = E * (1.0 - std::pow(1.0 - k / E, static_cast<double>(B)));
      w += n_moe * (touched - k) * expert_bytes;
    }
    return w + static_cast<double>(B) * ctx * kv_per_token;
  };

  std::mt19937_64 rng(a.seed);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(c.vocab_size - 1));
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  std::printf("%6s %8s %6s %12s %12s %10s %10s %10s %10s %12s %10s\n", "batch", "prompt", "gen", "prefill t/s",
              "decode t/s", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "decode GB/s", "roofline");
  for (int64_t B : batches) {
    std::vector<GenerateRequest> reqs(static_cast<size_t>(B));
    for (auto& r : reqs) {
      r.prompt.resize(static_cast<size_t>(a.prompt));
      for (auto& t : r.prompt) t = tok(rng);
      r.options.max_new_tokens = 1;
    }
    // Prefill: one new token each.
    auto t0 = std::chrono::steady_clock::now();
    std::vector<GenerateResult> pre = engine->generate_batch(reqs).value();
    const double prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // Decode: the full generation.
    for (auto& r : reqs) r.options.max_new_tokens = a.gen;
    t0 = std::chrono::steady_clock::now();
    std::vector<GenerateResult> full = engine->generate_batch(reqs).value();
    const double total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    std::vector<double> ttft, tpot;
    double all_decoding = 0.0, end = 0.0;
    for (const GenerateResult& r : full) {
      ttft.push_back(r.prefill_seconds * 1e3);
      if (r.tokens.size() > 1) tpot.push_back(r.decode_seconds / static_cast<double>(r.tokens.size() - 1) * 1e3);
      all_decoding = std::max(all_decoding, r.prefill_seconds);
      if (!r.token_seconds.empty()) end = std::max(end, r.token_seconds.back());
    }
    int64_t steady_tokens = 0;
    for (const GenerateResult& r : full)
      for (double t : r.token_seconds) steady_tokens += t > all_decoding ? 1 : 0;
    const double decode_tps = end > all_decoding ? static_cast<double>(steady_tokens) / (end - all_decoding) : 0.0;
    const double step_s = decode_tps > 0 ? static_cast<double>(B) / decode_tps : 0.0;
    const double avg_ctx = static_cast<double>(a.prompt) + static_cast<double>(a.gen) / 2.0;
    const double gbps = step_s > 0 ? step_bytes(B, avg_ctx) / step_s / 1e9 : 0.0;
    const double prefill_tps = static_cast<double>(B * a.prompt) / prefill_s;
    nlohmann::ordered_json row = {
        {"batch", B},
        {"prompt_tokens", a.prompt},
        {"gen_tokens", a.gen},
        {"prefill_tokens_per_s", prefill_tps},
        {"prefill_tflop_per_s", 2.0 * static_cast<double>(sum.params_active_per_token) * prefill_tps / 1e12},
        {"decode_tokens_per_s", decode_tps},
        {"generated_tokens_per_s_end_to_end", static_cast<double>(B * a.gen) / total_s},
        {"ttft_ms", {{"p50", percentile(ttft, 50)}, {"p90", percentile(ttft, 90)}, {"p99", percentile(ttft, 99)}}},
        {"tpot_ms", {{"p50", percentile(tpot, 50)}, {"p90", percentile(tpot, 90)}, {"p99", percentile(tpot, 99)}}},
        {"prefill_only_ttft_ms_p50",
         percentile([&] {
           std::vector<double> v;
           for (const auto& r : pre) v.push_back(r.prefill_seconds * 1e3);
           return v;
         }(), 50)},
        {"kv_bytes_per_token", kv_per_token},
        {"kv_bytes_at_end", static_cast<double>(B * (a.prompt + a.gen)) * kv_per_token},
        {"decode_step_bytes", step_bytes(B, avg_ctx)},
        {"decode_achieved_gb_per_s", gbps},
        {"copy_gb_per_s", copy_gbps},
        {"roofline_share", copy_gbps > 0 ? gbps / copy_gbps : 0.0},
        {"wall_seconds", prefill_s + total_s}};
    std::printf("%6lld %8lld %6lld %12.0f %12.1f %10.1f %10.1f %10.2f %10.2f %12.0f %9.1f%%\n",
                static_cast<long long>(B), static_cast<long long>(a.prompt), static_cast<long long>(a.gen),
                prefill_tps, decode_tps, percentile(ttft, 50), percentile(ttft, 99), percentile(tpot, 50),
                percentile(tpot, 99), gbps, copy_gbps > 0 ? 100.0 * gbps / copy_gbps : 0.0);
    std::fflush(stdout);
    rows.push_back(row);
  }
  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  nlohmann::ordered_json doc = {
      {"tool", "mlabench bench"},
      {"date", date},
      {"commit", mlabench_commit()},
      {"build", MLABENCH_BUILD_TYPE},
      {"model", eo.model_dir},
      {"architecture", sum.architecture},
      {"attention", sum.attention},
      {"weights", eo.random_weights_seed ? fmt::format("random (seed {})", *eo.random_weights_seed) : "checkpoint"},
      {"device", to_string(eo.device)},
      {"device_info", engine->device_json().empty() ? nlohmann::ordered_json()
                                                     : nlohmann::ordered_json::parse(engine->device_json())},
      {"params", {{"batches", batches},
                  {"prompt", a.prompt},
                  {"gen", a.gen},
                  {"seed", a.seed},
                  {"max_step_tokens", eo.max_step_tokens},
                  {"block_size", eo.block_size},
                  {"kv_cache_gib", eo.kv_cache_gib},
                  {"prefix_sharing", eo.prefix_sharing},
                  {"cuda_graphs", eo.cuda_graphs},
                  {"precision", to_string(eo.precision)}}},
      {"active_weight_bytes_per_token", engine->active_weight_bytes()},
      {"weight_bytes", engine->weight_bytes()},
      {"copy_gb_per_s", copy_gbps},
      {"rows", rows}};
  if (!a.out.empty()) {
    std::ofstream out(a.out);
    out << doc.dump(2) << '\n';
    if (!out.good()) throw Error(fmt::format("writing {} failed", a.out));
  }
  std::printf("%s\n", doc.dump().c_str());
}

}  // namespace

void add_bench_command(CLI::App& app, int* exit_code) {
  static BenchArgs b;
  auto* cmd = app.add_subcommand("bench", "throughput and latency at several batch sizes on random prompts (JSON)");
  add_model_args(cmd, b.model, true);
  cmd->add_option("--batch", b.batches, "comma-separated batch sizes")->capture_default_str();
  cmd->add_option("--prompt", b.prompt, "prompt tokens per request")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--gen", b.gen, "new tokens per request")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--seed", b.seed, "seed of the random prompts")->capture_default_str();
  cmd->add_option("--out", b.out, "write the JSON document here too");
  cmd->callback([=] { run(exit_code, [&] { bench_command(b); }); });
}

}  // namespace mlabench::cli
