// mlabench bench: prefill and decode throughput, TTFT/TPOT percentiles, KV bytes and achieved bandwidth of the
// engine at several shapes (prompt tokens x batch), on random prompts (random weights welcome: --random-weights 0).
// A shape runs a warm-up pass, then a prefill pass (one new token per prompt: prefill throughput and TTFT), a
// decode pass (--gen new tokens: decode throughput, TPOT, TTFT of a generating batch), or both. Every pass draws
// prompts no earlier pass of the invocation used - a serial number in their first tokens - so the prefix cache
// never serves a measured prompt; the serving core's reuse counter proves it per pass (prefix_tokens_reused, 0).
// Decode throughput counts only the steps where every sequence is decoding. Achieved GB/s is the weight and KV
// bytes one decode step must read over the step time, quoted against the device-to-device copy bandwidth
// measured in the same run. Schema 2 of the JSON adds "measures" (what each column is) and per-pass counters.
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <limits>
#include <optional>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <vector>
#include <sstream>

#include "cli/bench_runner.h"
#include "cli/cli_model.h"
#include "cli/cli_run.h"
#include "core/check.h"
#include "engine/core/dtype.h"
#include "engine/model/config.h"
#include "engine/model/model_info.h"

namespace mlabench::cli {

namespace {

using ojson = nlohmann::ordered_json;

constexpr int kBenchSchemaVersion = 2;
// Warm-up passes use short prompts: they exist to initialise kernels, cuBLAS and the decode graphs of the row's
// batch size, not to fill the cache.
constexpr int64_t kWarmupPromptMax = 256, kWarmupGenMax = 4;

// One row of the bench: `batch` prompts of `prompt` tokens, through a prefill pass, a decode pass, or both.
// in_max_sweep: a row of `--batch max`'s sweep (decode pass only), its batch set once the KV cache is known.
struct Shape {
  int64_t prompt = 0, batch = 0;
  bool prefill = true, decode = true;
  bool in_max_sweep = false;
  std::string mode() const { return prefill && decode ? "prefill+decode" : prefill ? "prefill" : "decode"; }
  std::string name() const { return fmt::format("{}x{}:{}", prompt, batch, mode()); }
};

// What each column of the table and each row key of the JSON measures: the table's legend and the JSON's
// "measures" come from here, so the two cannot drift apart.
struct Column {
  const char* key;
  const char* measures;
};
constexpr Column kColumns[] = {
    {"prefill_tokens_per_s",
     "prompt tokens/s of the prefill pass: batch x prompt / its wall time; fresh prompts no earlier pass put in the "
     "prefix cache, one new token each, the whole batch submitted at once"},
    {"prefill_tflop_per_s", "2 x active parameters x prefill_tokens_per_s / 1e12 (weight GEMMs; attention not counted)"},
    {"decode_tokens_per_s",
     "generated tokens/s of the decode pass from the last first token to the last token: every sequence has started "
     "decoding; the tail, where staggered sequences finish and the batch shrinks, is included"},
    {"decode_full_batch_tokens_per_s",
     "generated tokens/s of the decode pass from the last first token to the first sequence's last token: every step "
     "decodes the whole batch (0 when no such step exists)"},
    {"decode_full_batch_steps", "the steps decode_full_batch_tokens_per_s spans"},
    {"generated_tokens_per_s_end_to_end", "batch x gen / wall time of the decode pass, its prefill included"},
    {"ttft_ms",
     "time to first token, ms, p50/p90/p99 over the batch's requests, of the decode pass (the prefill pass in a "
     "prefill-only row): uncached prompts, the whole batch submitted at once, so it includes queueing behind the "
     "batch's other prompts"},
    {"prefill_only_ttft_ms",
     "time to first token, ms, p50/p90/p99, of the prefill pass (one new token each): uncached prompts, includes "
     "queueing behind the batch's other prompts"},
    {"tpot_ms", "time per output token after the first, ms, per request (decode time / (tokens - 1)), p50/p90/p99"},
    {"decode_achieved_gb_per_s",
     "bytes one decode step must read (weights the batch touches, KV at the mean context) / the mean steady step time"},
    {"roofline_share", "decode_achieved_gb_per_s / copy_gb_per_s"},
    {"copy_gb_per_s", "device-to-device copy bandwidth measured at start-up (read + write bytes; 0 on the CPU)"},
    {"kv_bytes_per_token", "KV-cache bytes per token as the engine stores them"},
    {"kv_bytes_at_end", "batch x (prompt + gen) x kv_bytes_per_token"},
    {"decode_step_bytes", "the bytes decode_achieved_gb_per_s counts for one step"},
    {"prefix_tokens_reused",
     "prompt tokens the measured passes took from the prefix cache; 0 means every measured prompt was computed"},
    {"wall_seconds", "wall time of the row's measured passes (warm-up excluded)"},
    {"decode_step_graph",
     "the nodes of the CUDA graph a decode step of this batch replays (its batch bucket: powers of two to 8, then "
     "eight an octave; the widest block table captured): kernels and memset/memcpy nodes of the forward pass; "
     "sampling launches after it"},
    {"profile", "--profile only: device time of each forward-pass phase per step kind, from CUDA events, eager steps"},
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const double at = p / 100.0 * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(at)), hi = static_cast<size_t>(std::ceil(at));
  return v[lo] + (v[hi] - v[lo]) * (at - static_cast<double>(lo));
}

ojson percentiles(const std::vector<double>& v) {
  return {{"p50", percentile(v, 50)}, {"p90", percentile(v, 90)}, {"p99", percentile(v, 99)}};
}

int64_t positive_integer(const std::string& text, const std::string& what) {
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  MLABENCH_CHECK(used == text.size() && !text.empty() && v > 0,
                 "{}: \"{}\" is not a positive integer. HINT: e.g. --batch 1,16,max or --shapes "
                 "32768x1:prefill,8192x64:decode", what, text);
  return v;
}

// --shapes "PROMPTxBATCH[:prefill|decode|both],..."; without it, --batch x --prompt with both passes.
std::vector<Shape> parse_shapes(const BenchArgs& a) {
  std::vector<Shape> shapes;
  std::stringstream ss(a.shapes.empty() ? a.batches : a.shapes);
  for (std::string item; std::getline(ss, item, ',');) {
    if (a.shapes.empty() && item == "max") {  // sized in plan_max_sweep once the engine is open
      MLABENCH_CHECK(std::none_of(shapes.begin(), shapes.end(), [](const Shape& s) { return s.in_max_sweep; }),
                     "--batch {}: max is named twice. HINT: name it once; it stands for the whole sweep up to the "
                     "largest batch the KV cache holds", a.batches);
      shapes.push_back({.prompt = a.prompt, .batch = 1, .prefill = false, .in_max_sweep = true});
      continue;
    }
    if (a.shapes.empty()) {
      shapes.push_back({.prompt = a.prompt, .batch = positive_integer(item, "--batch")});
      continue;
    }
    const size_t x = item.find('x'), colon = item.find(':');
    MLABENCH_CHECK(x != std::string::npos && (colon == std::string::npos || colon > x),
                   "--shapes: \"{}\" is not PROMPTxBATCH[:MODE]. HINT: e.g. --shapes 32768x1:prefill,8192x64:decode",
                   item);
    Shape s{.prompt = positive_integer(item.substr(0, x), "--shapes prompt"),
            .batch = positive_integer(item.substr(x + 1, colon == std::string::npos ? std::string::npos : colon - x - 1),
                                      "--shapes batch")};
    const std::string mode = colon == std::string::npos ? "both" : item.substr(colon + 1);
    MLABENCH_CHECK(mode == "prefill" || mode == "decode" || mode == "both",
                   "--shapes: mode \"{}\" of \"{}\" is not prefill, decode or both. HINT: prefill measures prefill "
                   "throughput and TTFT, decode measures decode throughput, TPOT and TTFT",
                   mode, item);
    s.prefill = mode != "decode";
    s.decode = mode != "prefill";
    shapes.push_back(s);
  }
  MLABENCH_CHECK(!shapes.empty(), "no shapes to run. HINT: --batch 1,16 or --shapes 512x16");
  return shapes;
}

// Prompts that share no KV block with any earlier prompt of this invocation: the first tokens spell a serial
// number (least significant digit first, so consecutive prompts differ at token 0), the rest are uniform random.
// With --block-size >= the digit count no two prompts share even their first block, whatever the random draw.
class PromptSource {
 public:
  PromptSource(uint64_t seed, int64_t vocab) : rng_(seed), tok_(0, static_cast<int32_t>(vocab - 1)), vocab_(vocab) {}

  std::vector<int32_t> next(int64_t n) {
    std::vector<int32_t> p(static_cast<size_t>(n));
    uint64_t serial = serial_++;
    size_t i = 0;
    do {
      if (i < p.size()) p[i++] = static_cast<int32_t>(serial % static_cast<uint64_t>(vocab_));
      serial /= static_cast<uint64_t>(vocab_);
    } while (serial > 0);
    for (; i < p.size(); ++i) p[i] = tok_(rng_);
    return p;
  }

 private:
  std::mt19937_64 rng_;
  std::uniform_int_distribution<int32_t> tok_;
  int64_t vocab_;
  uint64_t serial_ = 0;
};

// One pass: `batch` fresh prompts submitted at once, its results, wall time and what the serving core did for it.
struct Pass {
  std::vector<GenerateResult> results;
  double wall_s = 0;
  EngineStats delta;
};

Pass run_pass(Engine& engine, PromptSource& prompts, int64_t batch, int64_t prompt, int64_t gen) {
  std::vector<GenerateRequest> reqs(static_cast<size_t>(batch));
  for (auto& r : reqs) {
    r.prompt = prompts.next(prompt);
    r.options.max_new_tokens = gen;
  }
  const EngineStats before = engine.stats();
  const auto t0 = std::chrono::steady_clock::now();
  Pass p;
  p.results = engine.generate_batch(reqs).value();
  p.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const EngineStats after = engine.stats();
  p.delta = {.steps = after.steps - before.steps, .prefill_tokens = after.prefill_tokens - before.prefill_tokens,
             .decode_tokens = after.decode_tokens - before.decode_tokens,
             .prefix_tokens_reused = after.prefix_tokens_reused - before.prefix_tokens_reused,
             .preemptions = after.preemptions - before.preemptions, .max_running = after.max_running};
  return p;
}

ojson pass_json(const Pass& p) {
  return {{"wall_seconds", p.wall_s},
          {"steps", p.delta.steps},
          {"prefill_tokens_computed", p.delta.prefill_tokens},
          {"decode_tokens", p.delta.decode_tokens},
          {"prefix_tokens_reused", p.delta.prefix_tokens_reused},
          {"preemptions", p.delta.preemptions}};
}

std::vector<double> ttft_ms(const Pass& p) {
  std::vector<double> v;
  for (const GenerateResult& r : p.results) v.push_back(r.prefill_seconds * 1e3);
  return v;
}

// The model-dependent arithmetic of a row: bytes a decode step reads, active parameters.
struct Roofline {
  const ModelConfig& c;
  const Engine& engine;
  double kv_per_token = 0, copy_gbps = 0;

  // The dense weights, the routed experts the batch touches (expected number of distinct experts under uniform
  // routing), and every sequence's KV cache.
  double step_bytes(int64_t B, double ctx) const {
    const double active = static_cast<double>(engine.active_weight_bytes());
    double w = active;
    if (c.n_routed_experts > 0) {
      const double es = active / std::max<double>(1.0, static_cast<double>(engine.summary().params_active_per_token));
      const double expert_bytes = static_cast<double>(count_params(c).per_routed_expert) * es;
      const double E = static_cast<double>(c.n_routed_experts), k = static_cast<double>(c.experts_per_token);
      const double touched = E * (1.0 - std::pow(1.0 - k / E, static_cast<double>(B)));
      w += static_cast<double>(c.n_moe_layers()) * (touched - k) * expert_bytes;
    }
    return w + static_cast<double>(B) * ctx * kv_per_token;
  }
};

// The decode pass's numbers: steady decode throughput, TPOT, TTFT, achieved bandwidth.
void add_decode_metrics(ojson& row, const Pass& d, const Shape& s, int64_t gen, const Roofline& rf) {
  std::vector<double> tpot;
  // Two windows, both from the last first token: to the last token (the tail where sequences finish included), and
  // to the first sequence's last token (every step decodes the whole batch; tokens of a step share its time).
  double all_decoding = 0.0, end = 0.0, first_finish = std::numeric_limits<double>::infinity();
  for (const GenerateResult& r : d.results) {
    if (r.tokens.size() > 1) tpot.push_back(r.decode_seconds / static_cast<double>(r.tokens.size() - 1) * 1e3);
    all_decoding = std::max(all_decoding, r.prefill_seconds);
    if (!r.token_seconds.empty()) {
      end = std::max(end, r.token_seconds.back());
      first_finish = std::min(first_finish, r.token_seconds.back());
    }
  }
  int64_t steady_tokens = 0, full_tokens = 0;
  for (const GenerateResult& r : d.results)
    for (double t : r.token_seconds) {
      steady_tokens += t > all_decoding ? 1 : 0;
      full_tokens += t > all_decoding && t <= first_finish ? 1 : 0;
    }
  const double decode_tps = end > all_decoding ? static_cast<double>(steady_tokens) / (end - all_decoding) : 0.0;
  const bool full = first_finish > all_decoding && full_tokens > 0;
  row["decode_full_batch_tokens_per_s"] = full ? static_cast<double>(full_tokens) / (first_finish - all_decoding) : 0.0;
  row["decode_full_batch_steps"] = full_tokens / std::max<int64_t>(s.batch, 1);
  const double step_s = decode_tps > 0 ? static_cast<double>(s.batch) / decode_tps : 0.0;
  const double avg_ctx = static_cast<double>(s.prompt) + static_cast<double>(gen) / 2.0;
  const double bytes = rf.step_bytes(s.batch, avg_ctx);
  const double gbps = step_s > 0 ? bytes / step_s / 1e9 : 0.0;
  row["decode_tokens_per_s"] = decode_tps;
  row["generated_tokens_per_s_end_to_end"] = static_cast<double>(s.batch * gen) / d.wall_s;
  row["ttft_ms"] = percentiles(ttft_ms(d));
  row["tpot_ms"] = percentiles(tpot);
  row["decode_step_bytes"] = bytes;
  row["decode_achieved_gb_per_s"] = gbps;
  row["roofline_share"] = rf.copy_gbps > 0 ? gbps / rf.copy_gbps : 0.0;
}

// What one decode step of this batch launches, read from the CUDA graph the runner captured for its batch bucket:
// the smallest captured bucket that holds the batch (the runner's rule, serving::decode_graph_bucket, or powers of
// two under MLABENCH_FINE_GRAPH_BUCKETS=0), the widest block table captured; no key when the engine captured none
// (CPU, --no-cuda-graphs, --profile).
void add_decode_graph(ojson& row, const std::string& device_json, int64_t batch) {
  if (device_json.empty()) return;
  const ojson dev = ojson::parse(device_json);
  if (!dev.contains("graphs") || !dev["graphs"].contains("captured")) return;
  ojson best;
  for (const ojson& g : dev["graphs"]["captured"]) {
    const int64_t b = g["batch_bucket"].get<int64_t>();
    if (b < batch) continue;
    const int64_t best_b = best.is_null() ? 0 : best["batch_bucket"].get<int64_t>();
    if (best.is_null() || b < best_b ||
        (b == best_b && g["block_table_width"].get<int64_t>() > best["block_table_width"].get<int64_t>()))
      best = g;
  }
  if (!best.is_null()) row["decode_step_graph"] = best;
}

// Warm-up, then the measured passes of one shape; the row of the JSON.
ojson run_shape(Engine& engine, PromptSource& prompts, const Shape& s, const BenchArgs& a, const Roofline& rf,
                int64_t max_step_tokens) {
  ojson passes = ojson::object();
  for (int64_t w = 0; w < a.warmup; ++w) {
    passes["warmup"] = pass_json(run_pass(engine, prompts, s.batch, std::min(s.prompt, kWarmupPromptMax),
                                          std::min(a.gen, kWarmupGenMax)));
    // Then one prompt of the shape's length (a step's worth at most): the measured steps' shapes (GEMM row counts,
    // attention over longer keys) then run once before the clock starts, so lazily loaded kernels and cuBLAS's first
    // call at a new shape are not timed (a 512-token prompt read 60 ms uncached without it, 14 ms with).
    if (s.prompt > kWarmupPromptMax)
      passes["warmup_full_prompt"] =
          pass_json(run_pass(engine, prompts, 1, std::min(s.prompt, std::max(max_step_tokens, kWarmupPromptMax)), 1));
  }
  ojson row = {{"batch", s.batch}, {"prompt_tokens", s.prompt}, {"gen_tokens", s.decode ? a.gen : 1},
               {"mode", s.mode()}};
  // --profile: the phase times of the pass just run (the CPU engine has none: "").
  auto take_profile = [&](const char* pass) {
    const std::string pj = a.profile ? engine.take_profile_json() : std::string();
    if (!pj.empty() && pass != nullptr) row["profile"][pass] = ojson::parse(pj);
  };
  take_profile(nullptr);  // the warm-up's phases are not the row's
  double wall = 0;
  int64_t reused = 0;
  const double tflop_per_token = 2.0 * static_cast<double>(engine.summary().params_active_per_token) / 1e12;
  if (s.prefill) {
    const Pass p = run_pass(engine, prompts, s.batch, s.prompt, 1);
    const double tps = static_cast<double>(s.batch * s.prompt) / p.wall_s;
    row["prefill_tokens_per_s"] = tps;
    row["prefill_tflop_per_s"] = tflop_per_token * tps;
    row["ttft_ms"] = percentiles(ttft_ms(p));
    row["prefill_only_ttft_ms"] = percentiles(ttft_ms(p));
    row["prefill_only_ttft_ms_p50"] = percentile(ttft_ms(p), 50);  // schema 1's key
    passes["prefill"] = pass_json(p);
    take_profile("prefill_pass");
    wall += p.wall_s;
    reused += p.delta.prefix_tokens_reused;
  }
  if (s.decode) {
    const Pass d = run_pass(engine, prompts, s.batch, s.prompt, a.gen);
    add_decode_metrics(row, d, s, a.gen, rf);
    add_decode_graph(row, engine.device_json(), s.batch);
    passes["decode"] = pass_json(d);
    take_profile("decode_pass");
    wall += d.wall_s;
    reused += d.delta.prefix_tokens_reused;
  }
  row["kv_bytes_per_token"] = rf.kv_per_token;
  row["kv_bytes_at_end"] = static_cast<double>(s.batch * (s.prompt + (s.decode ? a.gen : 1))) * rf.kv_per_token;
  row["copy_gb_per_s"] = rf.copy_gbps;
  row["prefix_tokens_reused"] = reused;
  row["wall_seconds"] = wall;
  row["passes"] = passes;
  if (reused > 0)
    std::fprintf(stderr, "warning: bench %s: the measured passes took %lld prompt tokens from the prefix cache, so "
                 "TTFT and prefill numbers are too good. HINT: a --block-size below the 2-3 tokens of a prompt's serial "
                 "number lets prompts share their first block; use the default (0: auto)\n", s.name().c_str(), static_cast<long long>(reused));
  return row;
}

// The window the shapes need: the bench sizes it unless --max-context says otherwise, and then checks it.
void fit_context(EngineOptions& eo, const ModelConfig& c, const std::vector<Shape>& shapes, int64_t gen) {
  // Bounds before any sum: CLI11 clamps an overlong number to INT64_MAX, and prompt + gen would wrap negative.
  constexpr int64_t kMaxPositions = int64_t{1} << 22;
  for (const Shape& s : shapes)
    MLABENCH_CHECK(s.prompt <= kMaxPositions && gen <= kMaxPositions,
                   "bench shape {}: prompt {} or --gen {} is past {} positions. HINT: no model here has a window "
                   "that long; use shorter prompts or --gen",
                   s.name(), s.prompt, gen, kMaxPositions);
  const auto longest = std::max_element(shapes.begin(), shapes.end(), [&](const Shape& x, const Shape& y) {
    return x.prompt + (x.decode ? gen : 1) < y.prompt + (y.decode ? gen : 1);
  });
  const int64_t need = longest->prompt + (longest->decode ? gen : 1);
  MLABENCH_CHECK(need <= c.max_position_embeddings,
                 "bench shape {} needs {} positions (prompt + new tokens) but {} has max_position_embeddings {}. HINT: "
                 "use shorter prompts or --gen",
                 longest->name(), need, eo.model_dir, c.max_position_embeddings);
  MLABENCH_CHECK(eo.max_context == 0 || eo.max_context >= need,
                 "bench shape {} needs {} positions (prompt + new tokens) but --max-context is {}. HINT: leave "
                 "--max-context out (the bench then sizes the window to its longest shape) or raise it to {}",
                 longest->name(), need, eo.max_context, need);
  if (eo.max_context == 0) eo.max_context = need;
}

// A cache too small for a shape's whole batch pre-empts sequences; the numbers then include recomputation.
void warn_if_cache_short(const std::string& dev, const std::vector<Shape>& shapes, int64_t gen) {
  if (dev.empty()) return;  // the CPU cache grows as it fills
  const auto tokens = nlohmann::json::parse(dev)["kv_cache"].value("tokens", int64_t{0});
  for (const Shape& s : shapes) {
    const int64_t need = s.batch * (s.prompt + (s.decode ? gen : 1));
    if (tokens > 0 && need > tokens)
      std::fprintf(stderr, "warning: bench %s needs %lld KV-cache tokens at once but the cache holds %lld: the "
                   "scheduler will pre-empt and recompute (see \"preemptions\" per pass). HINT: raise --kv-cache-gib "
                   "or use a smaller batch\n", s.name().c_str(), static_cast<long long>(need),
                   static_cast<long long>(tokens));
  }
}

std::string cell(const ojson& row, const char* key, const char* pct, int width, int digits) {
  const ojson* v = row.contains(key) ? &row[key] : nullptr;
  if (v && pct) v = v->contains(pct) ? &(*v)[pct] : nullptr;
  if (!v || !v->is_number()) return fmt::format("{:>{}}", "-", width);
  return fmt::format("{:>{}.{}f}", v->get<double>(), width, digits);
}

void print_legend() {
  std::printf("# bench columns (JSON \"measures\" says the same):\n"
              "#   prefill t/s  prompt tokens/s of the prefill pass (fresh uncached prompts, 1 new token each)\n"
              "#   decode t/s   generated tokens/s over the decode pass's steps where every sequence decodes\n"
              "#   TTFT ms      time to first token, p50/p99 over the batch: uncached prompt, the batch submitted at "
              "once (includes queueing); decode pass, else prefill pass\n"
              "#   TPOT ms      time per output token after the first, p50/p99 over the batch (decode pass)\n"
              "#   decode GB/s  bytes a decode step must read / steady step time; roofline = share of copy GB/s\n"
              "#   reused       prompt tokens the measured passes took from the prefix cache (0 = all computed)\n");
  std::printf("%6s %8s %6s %12s %12s %12s %12s %10s %10s %12s %9s %7s  %s\n", "batch", "prompt", "gen",
              "prefill t/s", "decode t/s", "TTFT p50 ms", "TTFT p99 ms", "TPOT p50", "TPOT p99", "decode GB/s",
              "roofline", "reused", "mode");
}

// --profile: where a row's steps spent their device time, phase by phase (ms per step, us per row and share), for
// the prefill pass's steps and the decode pass's decode-only steps. Per row, because those steps' row counts differ
// between runs (sequences that took tokens in mixed steps finish first), so two configurations compare per row.
void print_profile(const ojson& row) {
  if (!row.contains("profile")) return;
  auto table = [](const char* what, const ojson& kind) {
    const auto steps = kind.value("steps", int64_t{0});
    const auto rows = kind.value("rows", int64_t{0});
    if (steps == 0) return;
    double sum = 0;
    for (const auto& ph : kind["phases"]) sum += ph["ms"].get<double>();
    std::printf("    %s: %lld steps, %lld rows, %.3f ms a step, %.2f us a row\n", what, static_cast<long long>(steps),
                static_cast<long long>(rows), sum / static_cast<double>(steps),
                rows > 0 ? 1e3 * sum / static_cast<double>(rows) : 0.0);
    for (const auto& ph : kind["phases"]) {
      const double ms = ph["ms"].get<double>();
      std::printf("      %-34s %9.3f ms a step %8.3f us a row %6.1f%%\n", ph["phase"].get<std::string>().c_str(),
                  ms / static_cast<double>(steps), rows > 0 ? 1e3 * ms / static_cast<double>(rows) : 0.0,
                  sum > 0 ? 100.0 * ms / sum : 0.0);
    }
  };
  const ojson& p = row["profile"];
  if (p.contains("prefill_pass")) table("prefill pass, steps with prompt rows", p["prefill_pass"]["prefill_steps"]);
  if (p.contains("decode_pass")) table("decode pass, decode-only steps", p["decode_pass"]["decode_steps"]);
  std::printf("    (phases are timed on the main stream: the MoE layer's second stream, its shared experts, runs beside "
              "the router, permute and gather (FP8: the routed gate/up too), slowing them, and the main stream's wait "
              "for it is counted in \"moe: routed experts\")\n");
}

void print_decode_graph(const ojson& row) {
  if (!row.contains("decode_step_graph")) return;
  const ojson& g = row["decode_step_graph"];
  std::printf("    decode step: %lld kernels and %lld memset/memcpy nodes in the CUDA graph of batch bucket %lld "
              "(sampling launches after it)\n",
              static_cast<long long>(g["kernels"].get<int64_t>()), static_cast<long long>(g["memset_memcpy"].get<int64_t>()),
              static_cast<long long>(g["batch_bucket"].get<int64_t>()));
}

void print_row(const ojson& row) {
  const std::string share =
      row.contains("roofline_share") ? fmt::format("{:8.1f}%", 100.0 * row["roofline_share"].get<double>()) : "        -";
  std::printf("%6lld %8lld %6lld %s %s %s %s %s %s %s %s %7lld  %s\n", static_cast<long long>(row["batch"].get<int64_t>()),
              static_cast<long long>(row["prompt_tokens"].get<int64_t>()),
              static_cast<long long>(row["gen_tokens"].get<int64_t>()),
              cell(row, "prefill_tokens_per_s", nullptr, 12, 0).c_str(),
              cell(row, "decode_tokens_per_s", nullptr, 12, 1).c_str(), cell(row, "ttft_ms", "p50", 12, 1).c_str(),
              cell(row, "ttft_ms", "p99", 12, 1).c_str(), cell(row, "tpot_ms", "p50", 10, 2).c_str(),
              cell(row, "tpot_ms", "p99", 10, 2).c_str(), cell(row, "decode_achieved_gb_per_s", nullptr, 12, 0).c_str(),
              share.c_str(), static_cast<long long>(row["prefix_tokens_reused"].get<int64_t>()),
              row["mode"].get<std::string>().c_str());
  std::fflush(stdout);
}

// block_size, step_tokens: the engine's (what --block-size 0 and --max-step-tokens 0, auto, chose).
ojson params_json(const BenchArgs& a, const EngineOptions& eo, const std::vector<Shape>& shapes, int64_t block_size,
                  int64_t step_tokens) {
  std::set<int64_t> batches, prompts;
  std::vector<std::string> names;
  for (const Shape& s : shapes) batches.insert(s.batch), prompts.insert(s.prompt), names.push_back(s.name());
  return {{"batches", std::vector<int64_t>(batches.begin(), batches.end())},
          {"prompt", prompts.size() == 1 ? ojson(*prompts.begin()) : ojson(std::vector<int64_t>(prompts.begin(),
                                                                                                 prompts.end()))},
          {"gen", a.gen},
          {"shapes", names},
          {"warmup", a.warmup},
          {"profile", a.profile},
          {"seed", a.seed},
          {"max_context", eo.max_context},
          {"max_step_tokens", step_tokens},
          {"block_size", block_size},
          {"kv_cache_gib", eo.kv_cache_gib},
          {"prefix_sharing", eo.prefix_sharing},
          {"cuda_graphs", eo.cuda_graphs},
          {"batch_invariant_attention", eo.batch_invariant_attention},
          {"precision", to_string(eo.precision)},
          {"weights_dtype", to_string(eo.weights_dtype)},
          {"kv_cache_dtype", to_string(eo.kv_cache_dtype)},
          {"tp", eo.tp},
          {"ep", eo.ep},
          {"dp_attention", eo.dp_attention}};
}

// `--batch max`: the largest batch whose sequences (prompt + gen tokens, in whole blocks) all fit the KV cache at
// once (the paper's "maximum generation throughput" is measured there), and the sweep that leads up to it.
struct MaxBatchPlan {
  int64_t kv_cache_tokens = 0, tokens_per_sequence = 0, max_batch = 0, partitions = 1;
  std::vector<int64_t> sweep;  // max_batch / 8, / 4, / 2 and max_batch, distinct, ascending
};

MaxBatchPlan plan_max_batch(const Engine& engine, const BenchArgs& a) {
  MaxBatchPlan p;
  p.kv_cache_tokens = engine.kv_cache_tokens();
  const int64_t bs = engine.kv_block_size();
  p.tokens_per_sequence = (a.prompt + a.gen + bs - 1) / bs * bs;
  // Under --dp-attention each rank's cache holds its own sequences whole: the batch is counted a rank.
  p.partitions = engine.kv_cache_partitions();
  p.max_batch = p.partitions * (p.kv_cache_tokens / p.partitions / p.tokens_per_sequence);
  MLABENCH_CHECK(p.max_batch >= 1,
                 "--batch max: the KV cache holds {} tokens, less than one sequence of {} (--prompt {} + --gen {} in "
                 "blocks of {}). HINT: raise --kv-cache-gib or shorten --prompt / --gen",
                 p.kv_cache_tokens, p.tokens_per_sequence, a.prompt, a.gen, bs);
  for (int64_t d : {8, 4, 2, 1})
    if (p.max_batch / d >= 1 && (p.sweep.empty() || p.sweep.back() != p.max_batch / d)) p.sweep.push_back(p.max_batch / d);
  return p;
}

// The sweep's rows in place of the `max` placeholder; the summary the JSON and the table end with.
void expand_max_sweep(std::vector<Shape>& shapes, const MaxBatchPlan& plan) {
  const auto at = std::find_if(shapes.begin(), shapes.end(), [](const Shape& s) { return s.in_max_sweep; });
  if (at == shapes.end()) return;
  const Shape proto = *at;
  std::vector<Shape> rows;
  for (int64_t b : plan.sweep) {
    Shape s = proto;
    s.batch = b;
    rows.push_back(s);
  }
  const auto pos = shapes.erase(at);
  shapes.insert(pos, rows.begin(), rows.end());
}

ojson max_throughput_json(const MaxBatchPlan& plan, const ojson& rows) {
  ojson sweep = ojson::array();
  int64_t best_batch = 0;
  double best = -1;
  for (const auto& r : rows) {
    if (!r.value("in_max_sweep", false) || !r.contains("decode_tokens_per_s")) continue;
    const double tps = r["decode_tokens_per_s"].get<double>();
    sweep.push_back({{"batch", r["batch"]}, {"decode_tokens_per_s", tps}, {"preemptions", r["passes"]["decode"]["preemptions"]}});
    if (tps > best) best = tps, best_batch = r["batch"].get<int64_t>();
  }
  return {{"generated_tokens_per_s", best},
          {"at_batch", best_batch},
          {"largest_batch", plan.max_batch},
          {"kv_cache_tokens", plan.kv_cache_tokens},
          {"tokens_per_sequence", plan.tokens_per_sequence},
          {"sweep", sweep},
          {"measures", "the peak of decode_tokens_per_s over the sweep (the paper's maximum generation throughput): "
                       "largest_batch = kv_cache_tokens / tokens_per_sequence (prompt + gen in whole KV blocks; under "
                       "--dp-attention counted in each rank's cache, kv_cache_partitions of them), the sweep its "
                       "eighth, quarter, half and itself, each a decode pass of fresh prompts"},
          {"kv_cache_partitions", plan.partitions}};
}

}  // namespace

ojson run_bench(const BenchArgs& a) {
  const std::vector<Shape> shapes = parse_shapes(a);
  MLABENCH_CHECK(a.warmup >= 0, "--warmup must be >= 0, got {}", a.warmup);
  // The engine serves the largest batch at once and, unless told otherwise, only as long a context as a shape needs.
  std::vector<Shape> rows_to_run = shapes;
  EngineOptions eo = a.model.engine;
  for (const Shape& s : shapes) eo.max_batch = std::max(eo.max_batch, s.batch);
  const ModelConfig c = load_config(eo.model_dir);
  fit_context(eo, c, shapes, a.gen);
  if (const char* skip = std::getenv("MLABENCH_TIMING_SKIP"); skip && *skip) {
    MLABENCH_CHECK(eo.device == Device::CUDA, "MLABENCH_TIMING_SKIP={}: the {} engine leaves nothing out. HINT: it is "
                   "a timing experiment of the cuda engine's steps; unset it or pass --device cuda",
                   skip, to_string(eo.device));
    std::printf("# TIMING EXPERIMENT: MLABENCH_TIMING_SKIP=%s leaves those launches out of every step: the times are "
                "what the step costs without them, every output is wrong\n", skip);
  }
  // Load time (issue 22: DeepSeek-V2 on several GPUs): config, weights read or generated (each rank's slices on its
  // GPU), KV cache allocated; the first open, before any --batch max reopen.
  const auto t_open = std::chrono::steady_clock::now();
  auto engine = open_engine(eo, /*timing_experiment=*/true);
  const double load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_open).count();
  const double wb = static_cast<double>(engine->weight_bytes());
  std::printf("# engine opened in %.2f s (%.*f %s of weights, %s)\n", load_seconds, wb < 1e9 ? 1 : 2,
              wb < 1e9 ? wb / 1e6 : wb / 1e9, wb < 1e9 ? "MB" : "GB",
              eo.random_weights_seed ? "random, generated where they run" : "checkpoint");
  std::optional<MaxBatchPlan> max_plan;
  if (std::any_of(shapes.begin(), shapes.end(), [](const Shape& s) { return s.in_max_sweep; })) {
    max_plan = plan_max_batch(*engine, a);
    if (max_plan->max_batch > eo.max_batch) {  // reopen for that batch; its buffers may take some cache back
      eo.max_batch = max_plan->max_batch;
      engine.reset();
      engine = open_engine(eo, /*timing_experiment=*/true);
      max_plan = plan_max_batch(*engine, a);
    }
    expand_max_sweep(rows_to_run, *max_plan);
    std::printf("# --batch max: the KV cache holds %lld tokens, %lld per sequence (prompt %lld + gen %lld in blocks of "
                "%lld): largest batch %lld\n", static_cast<long long>(max_plan->kv_cache_tokens),
                static_cast<long long>(max_plan->tokens_per_sequence), static_cast<long long>(a.prompt),
                static_cast<long long>(a.gen), static_cast<long long>(engine->kv_block_size()),
                static_cast<long long>(max_plan->max_batch));
  }
  const ModelSummary& sum = engine->summary();
  // Cache bytes per token as the CUDA engine allocated them (BF16, or F32 under --precision f32); the BF16 figure
  // of the model summary when the engine describes no device (the CPU engine: device_json() is empty).
  const std::string dev = engine->device_json();
  const int64_t model_kv_bytes = eo.kv_cache_dtype == KvCacheDtype::FP8 ? sum.kv_bytes_per_token_fp8_scaled
                                                                        : sum.kv_bytes_per_token_bf16;
  Roofline rf{.c = c, .engine = *engine,
              .kv_per_token = dev.empty() ? static_cast<double>(model_kv_bytes)
                                          : nlohmann::json::parse(dev)["kv_cache"]["bytes_per_token"].get<double>(),
              .copy_gbps = engine->measure_copy_bandwidth_gbps()};
  warn_if_cache_short(dev, rows_to_run, a.gen);
  if (a.profile && !engine->set_profiling(true))
    std::fprintf(stderr, "warning: bench --profile: the %s engine has no phase timer; the rows carry no profile. "
                         "HINT: profile with --device cuda\n", to_string(eo.device).c_str());

  PromptSource prompts(a.seed, c.vocab_size);
  ojson rows = ojson::array();
  print_legend();
  for (const Shape& s : rows_to_run) {
    rows.push_back(run_shape(*engine, prompts, s, a, rf, engine->max_step_tokens()));
    if (s.in_max_sweep) rows.back()["in_max_sweep"] = true;
    print_row(rows.back());
    print_decode_graph(rows.back());
    print_profile(rows.back());
  }
  ojson measures = ojson::object();
  for (const Column& col : kColumns) measures[col.key] = col.measures;
  const std::string date = utc_now("%Y-%m-%dT%H:%M:%SZ");
  ojson doc = {{"tool", "mlabench bench"},
               {"schema_version", kBenchSchemaVersion},
               {"date", date},
               {"commit", mlabench_commit()},
               {"build", MLABENCH_BUILD_TYPE},
               {"model", eo.model_dir},
               {"architecture", sum.architecture},
               {"attention", sum.attention},
               {"weights", eo.random_weights_seed ? fmt::format("random (seed {})", *eo.random_weights_seed) : "checkpoint"},
               {"device", to_string(eo.device)},
               {"device_info", dev.empty() ? ojson() : ojson::parse(engine->device_json())},
               {"params", params_json(a, eo, rows_to_run, engine->kv_block_size(), engine->max_step_tokens())},
               {"environment", engine_environment()},
               {"active_weight_bytes_per_token", engine->active_weight_bytes()},
               {"weight_bytes", engine->weight_bytes()},
               {"load_seconds", load_seconds},
               {"copy_gb_per_s", rf.copy_gbps},
               {"measures", measures},
               {"rows", rows}};
  if (max_plan) {
    doc["max_generation_throughput"] = max_throughput_json(*max_plan, rows);
    const ojson& m = doc["max_generation_throughput"];
    std::printf("# maximum generation throughput: %.1f generated tok/s at batch %lld (largest batch the cache holds: "
                "%lld)\n", m["generated_tokens_per_s"].get<double>(), static_cast<long long>(m["at_batch"].get<int64_t>()),
                static_cast<long long>(max_plan->max_batch));
  }
  doc["kv_cache"] = {{"bytes_per_token", engine->kv_bytes_per_token()},
                     {"tokens", engine->kv_cache_tokens()},
                     {"block_size", engine->kv_block_size()},
                     {"elements_per_token", sum.kv_elements_per_token},
                     {"dtype", to_string(eo.kv_cache_dtype)}};
  // The FP8 cache's bytes as a GPU holds them (codes, scales, MLA's RoPE part in BF16), beside the paper's one byte an
  // element: the CPU engine keeps the rounded values in float32, so bytes_per_token above is its own.
  if (eo.kv_cache_dtype == KvCacheDtype::FP8)
    doc["kv_cache"].update({{"fp8_bytes_per_token", sum.kv_bytes_per_token_fp8_scaled},
                            {"fp8_bytes_per_token_one_byte_an_element", sum.kv_bytes_per_token_fp8}});
  return doc;
}

namespace {

void bench_command(const BenchArgs& a) {
  // Opened before the engine starts: a long-context run must not end with nowhere to write what it measured.
  std::ofstream out_file;
  if (!a.out.empty()) {
    out_file.open(a.out);
    MLABENCH_CHECK(out_file.good(), "bench --out {}: cannot open it for writing. HINT: check that its folder exists "
                   "and is writable", a.out);
  }
  const ojson doc = run_bench(a);
  if (!a.out.empty()) {
    out_file << doc.dump(2) << '\n';
    out_file.flush();
    MLABENCH_CHECK(out_file.good(), "writing {} failed. HINT: check that its folder exists and is writable", a.out);
  }
  std::printf("%s\n", doc.dump().c_str());
}

}  // namespace

void add_bench_command(CLI::App& app, int* exit_code) {
  static BenchArgs b;
  auto* cmd = app.add_subcommand("bench", "throughput and latency at several shapes on fresh random prompts (JSON)");
  add_model_args(cmd, b.model, true);
  cmd->add_option("--batch", b.batches,
                  "comma-separated batch sizes, each at --prompt tokens, both passes; max: the largest batch the KV "
                  "cache holds for --prompt + --gen and a sweep up to it (decode passes), its peak generated tok/s")
      ->capture_default_str();
  cmd->add_option("--prompt", b.prompt, "prompt tokens per request")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--gen", b.gen, "new tokens per request of a decode pass")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--shapes", b.shapes,
                  "instead of --batch/--prompt: PROMPTxBATCH[:prefill|decode|both],... e.g. "
                  "32768x1:prefill,8192x64:decode (docs/harness.md, \"mlabench bench\")");
  cmd->add_option("--warmup", b.warmup, "warm-up passes per shape (short fresh prompts, the shape's batch)")
      ->capture_default_str();
  cmd->add_option("--seed", b.seed, "seed of the random prompts")->capture_default_str();
  cmd->add_option("--out", b.out, "write the JSON document here too");
  cmd->add_flag("--profile", b.profile,
                "per-phase device time of each row's steps (attention, MoE, dense, norms, sampling) from CUDA events; "
                "decode steps then run without CUDA graphs, so keep throughput numbers from a run without it");
  cmd->callback([=] { run(exit_code, [&] { bench_command(b); }); });
}

}  // namespace mlabench::cli
