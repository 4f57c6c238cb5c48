// mlabench ablate: one model shape with each attention mechanism (MLA, MHA, GQA, MQA) and FFN kind, random weights,
// the same benchmark for each (cli/bench_runner.h), and the paper's KV-cache tables (harness/ablation.h).
// docs/ablation.md describes the output.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/bench_runner.h"
#include "cli/cli_run.h"
#include "core/check.h"
#include "engine/model/model_info.h"
#include "harness/ablation.h"

namespace mlabench::cli {

namespace {

using ojson = nlohmann::ordered_json;
namespace fs = std::filesystem;

constexpr int kAblationSchemaVersion = 1;
// The configs Table 1 is computed for: the paper's models we ship configs of, and the dense baselines.
const std::vector<std::string> kTable1Models = {"deepseek-v2", "deepseek-v2-lite", "deepseek-67b", "llama-2-7b",
                                                "llama-3-8b"};

struct AblateArgs {
  ModelArgs model;
  std::string attention = "mla,mha,gqa:8,mqa";
  std::string ffn = "moe";
  std::string peers;
  std::string batches = "1,16,64,max";
  int64_t prompt = 512, gen = 128, context = 4096;
  int64_t warmup = 1;
  uint64_t seed = 0;
  std::string out = "ablation";
  std::string configs_dir = MLABENCH_CONFIGS_DIR;
};

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p);
  f << text;
  f.close();
  MLABENCH_CHECK(f.good(), "ablate: writing {} failed. HINT: check that --out's folder is writable", p.string());
}

std::string folder_safe(std::string s) {
  for (char& ch : s)
    if (ch == ':' || ch == '/' || ch == '+') ch = '-';  // file names the device tool and shells take as they are
  return s;
}

double num_at(const ojson& j, std::initializer_list<const char*> path) {
  const ojson* at = &j;
  for (const char* k : path) {
    if (!at->is_object() || !at->contains(k)) return std::nan("");
    at = &(*at)[k];
  }
  return at->is_number() ? at->get<double>() : std::nan("");
}

// The row of a bench document with the largest batch among those that have `key` (prefill or decode numbers).
const ojson* largest_row_with(const ojson& bench, const char* key, bool max_sweep) {
  const ojson* best = nullptr;
  for (const ojson& r : bench["rows"])
    if (r.contains(key) && r.value("in_max_sweep", false) == max_sweep &&
        (!best || r["batch"].get<int64_t>() > (*best)["batch"].get<int64_t>()))
      best = &r;
  return best;
}

// One variant's (or peer's) line of the ablation: what it is, what it caches, and what the benchmark measured.
ojson variant_row(const std::string& label, const std::string& kind, const ModelConfig& c, const ojson& bench,
                  int64_t context) {
  const ParamCounts p = count_params(c);
  const int64_t elements = ablation::kv_elements_per_token(c);
  const double allocated = num_at(bench, {"kv_cache", "bytes_per_token"});
  const auto tokens = static_cast<int64_t>(num_at(bench, {"kv_cache", "tokens"}));
  const auto block = static_cast<int64_t>(num_at(bench, {"kv_cache", "block_size"}));
  const int64_t per_seq = (context + block - 1) / block * block;
  ojson row = {{"label", label}, {"kind", kind}, {"attention", bench.value("attention", "")},
               {"ffn", c.n_routed_experts > 0 ? "moe" : "dense"}, {"n_heads", c.n_heads}, {"n_kv_heads", c.n_kv_heads},
               {"layers", c.n_layers}, {"hidden_size", c.hidden_size},
               {"params_total", p.total}, {"params_active_per_token", p.active_per_token},
               {"kv_elements_per_token", elements}, {"kv_bytes_per_token_bf16", 2 * elements},
               {"kv_bytes_per_token_allocated", allocated},
               {"kv_bytes_per_element_allocated", elements > 0 ? allocated / static_cast<double>(elements) : 0.0},
               {"kv_cache_tokens", tokens}, {"context", context},
               {"concurrent_sequences_at_context", per_seq > 0 ? tokens / per_seq : 0},
               {"weight_bytes", bench.value("weight_bytes", uint64_t{0})},
               {"copy_gb_per_s", bench.value("copy_gb_per_s", 0.0)},
               {"gpu", bench.contains("device_info") && bench["device_info"].is_object()
                           ? bench["device_info"].value("gpu", std::string("cpu")) : std::string("cpu")}};
  if (bench.contains("max_generation_throughput")) {
    const ojson& m = bench["max_generation_throughput"];
    row["max_generation_tokens_per_s"] = m["generated_tokens_per_s"];
    row["max_generation_at_batch"] = m["at_batch"];
    row["largest_batch"] = m["largest_batch"];
  }
  if (const ojson* r = largest_row_with(bench, "prefill_tokens_per_s", false)) {
    row["prefill_tokens_per_s"] = (*r)["prefill_tokens_per_s"];
    row["prefill_at_batch"] = (*r)["batch"];
  }
  ojson latency = ojson::array(), sweep = ojson::array();
  for (const ojson& r : bench["rows"]) {
    if (r.contains("ttft_ms") || r.contains("tpot_ms"))
      latency.push_back({{"batch", r["batch"]}, {"ttft_ms", r.value("ttft_ms", ojson())},
                         {"tpot_ms", r.value("tpot_ms", ojson())}});
    if (!r.contains("decode_tokens_per_s")) continue;
    const double tps = r["decode_tokens_per_s"].get<double>();
    sweep.push_back({{"batch", r["batch"]}, {"tokens_per_s", tps},
                     {"tokens_per_s_per_sequence", tps / r["batch"].get<double>()},
                     {"roofline_share", r.value("roofline_share", 0.0)}});
  }
  row["latency"] = latency;
  row["decode_sweep"] = sweep;
  return row;
}

// Ratios of every row against the first (the base mechanism): KV bytes and maximum generation throughput.
void add_ratios(ojson& rows) {
  if (rows.empty()) return;
  const ojson& base = rows[0];
  for (ojson& r : rows) {
    r["kv_bytes_vs_first"] = r["kv_elements_per_token"].get<double>() / base["kv_elements_per_token"].get<double>();
    const double a = num_at(r, {"max_generation_tokens_per_s"}), b = num_at(base, {"max_generation_tokens_per_s"});
    if (!std::isnan(a) && !std::isnan(b) && a > 0) r["first_max_throughput_over_this"] = b / a;
  }
}

std::string fmt_num(double v, int digits) { return std::isnan(v) ? "-" : fmt::format("{:.{}f}", v, digits); }

void print_table(const ojson& rows) {
  std::printf("\n# ablation: KV per token (analytic elements; bytes as allocated), cache capacity, throughput\n");
  std::printf("%-18s %-5s %9s %9s %11s %11s %9s %12s %12s %10s %12s %10s\n", "variant", "attn", "params B",
              "active B", "KV el/tok", "KV B/tok", "seqs@ctx", "max gen t/s", "at batch", "prefill/s", "TPOT b1 ms",
              "vs first");
  for (const ojson& r : rows) {
    double tpot1 = std::nan("");
    for (const ojson& l : r["latency"])
      if (l["batch"].get<int64_t>() == 1 && l["tpot_ms"].is_object()) tpot1 = l["tpot_ms"]["p50"].get<double>();
    std::printf("%-18s %-5s %9.2f %9.2f %11lld %11.0f %9lld %12s %12s %10s %12s %10s\n",
                r["label"].get<std::string>().c_str(), r["attention"].get<std::string>().c_str(),
                r["params_total"].get<double>() / 1e9, r["params_active_per_token"].get<double>() / 1e9,
                static_cast<long long>(r["kv_elements_per_token"].get<int64_t>()),
                r["kv_bytes_per_token_allocated"].get<double>(),
                static_cast<long long>(r["concurrent_sequences_at_context"].get<int64_t>()),
                fmt_num(num_at(r, {"max_generation_tokens_per_s"}), 1).c_str(),
                fmt_num(num_at(r, {"max_generation_at_batch"}), 0).c_str(),
                fmt_num(num_at(r, {"prefill_tokens_per_s"}), 0).c_str(), fmt_num(tpot1, 2).c_str(),
                fmt_num(num_at(r, {"first_max_throughput_over_this"}), 2).c_str());
  }
  std::printf("# vs first: the first row's maximum generation throughput over this row's (the paper's Figure 1(b) "
              "ratio when the first is MLA)\n");
}

// Figure 1(b) on what this run measured: the first variant (MLA) against every other row, beside the paper's pair.
ojson figure1b(const ojson& rows, const ojson& paper) {
  ojson ours = ojson::array();
  for (size_t i = 1; i < rows.size(); ++i)
    ours.push_back({{"pair", rows[0]["label"].get<std::string>() + " vs " + rows[i]["label"].get<std::string>()},
                    {"kv_reduction", 1.0 - 1.0 / rows[i]["kv_bytes_vs_first"].get<double>()},
                    {"max_throughput_ratio", rows[i].value("first_max_throughput_over_this", ojson())}});
  ojson f = {{"ours", ours},
             {"paper", {{"pair", "DeepSeek-V2 vs DeepSeek 67B"}, {"kv_reduction", 0.933},
                        {"max_throughput_ratio", 5.76},
                        {"hardware", "8 x H800, FP8 weights, KV cache ~6 bits per element"},
                        {"source", "arXiv 2405.04434, Figure 1(b) and section 3.2.3"}}}};
  if (paper.contains("figure1b_kv")) f["kv_from_configs"] = paper["figure1b_kv"];
  return f;
}

// The whole document; written after every row, so a run stopped part-way (a time limit, a variant that does not fit)
// keeps the rows it finished ("complete": false until the last).
ojson ablation_doc(const AblateArgs& a, ojson rows, const ojson& paper, bool complete) {
  add_ratios(rows);
  const std::string date = utc_now("%Y-%m-%dT%H:%M:%SZ");
  ojson doc = {{"tool", "mlabench ablate"},
               {"schema_version", kAblationSchemaVersion},
               {"complete", complete},
               {"date", date},
               {"commit", mlabench_commit()},
               {"build", MLABENCH_BUILD_TYPE},
               {"base_model", a.model.engine.model_dir},
               {"device", to_string(a.model.engine.device)},
               {"precision", to_string(a.model.engine.precision)},
               {"params", {{"attention", a.attention}, {"ffn", a.ffn}, {"peers", a.peers}, {"batch", a.batches},
                           {"prompt", a.prompt}, {"gen", a.gen}, {"context", a.context}, {"warmup", a.warmup},
                           {"seed", a.seed}, {"kv_cache_gib", a.model.engine.kv_cache_gib}}},
               {"rows", rows}};
  doc["gpu"] = rows.empty() ? std::string() : rows[0].value("gpu", std::string());
  doc["figure1b"] = figure1b(doc["rows"], paper);
  doc["paper_kv"] = paper;
  return doc;
}

void ablate_command(const AblateArgs& a) {
  const auto attentions = ablation::parse_attention_variants(a.attention);
  const auto ffns = ablation::parse_ffn_variants(a.ffn);
  MLABENCH_CHECK(a.context > 0, "--context must be positive, got {}", a.context);
  const fs::path out(a.out);
  std::error_code ec;
  fs::create_directories(out / "variants", ec);
  MLABENCH_CHECK(!ec, "ablate --out {}: cannot create {} ({}). HINT: choose a folder you can write", a.out,
                 (out / "variants").string(), ec.message());
  const std::string base_dir = a.model.engine.model_dir;
  std::ifstream base_file(fs::path(base_dir) / "config.json");
  MLABENCH_CHECK(base_file.good(), "ablate --model {}: no config.json there. HINT: pass a model folder or one of "
                 "configs/ (e.g. configs/deepseek-v2-lite)", base_dir);
  const nlohmann::json base = nlohmann::json::parse(base_file);
  const ojson paper = ablation::paper_kv_tables(a.configs_dir, kTable1Models);

  // Every variant's config first: a shape a mechanism cannot take is refused before any benchmark runs.
  struct Job {
    std::string label, kind, model_dir;
  };
  std::vector<Job> jobs;
  for (FfnKind ffn : ffns) {
    for (const auto& att : attentions) {
      const std::string label = ablation::variant_label(att, ffn);
      const fs::path dir = out / "variants" / folder_safe(label);
      fs::create_directories(dir);  // below --out/variants, which was just created
      write_text(dir / "config.json", ablation::variant_config(base, att, ffn, base_dir + "/config.json").dump(2) + "\n");
      jobs.push_back({label, "variant", dir.string()});
    }
  }
  std::stringstream ps(a.peers);
  for (std::string peer; std::getline(ps, peer, ',');) {
    if (peer.empty()) continue;
    load_config(peer);  // a peer that cannot load fails now, not after the variants' benchmarks
    jobs.push_back({fs::path(peer).filename().string(), "peer", peer});
  }

  auto bench_args = [&](const std::string& model_dir) {
    BenchArgs b;
    b.model = a.model;
    b.batches = a.batches, b.prompt = a.prompt, b.gen = a.gen, b.warmup = a.warmup, b.seed = a.seed;
    b.model.engine.model_dir = model_dir;
    if (!b.model.engine.random_weights_seed) b.model.engine.random_weights_seed = a.seed;
    return b;
  };
  ojson rows = ojson::array();
  for (size_t i = 0; i < jobs.size(); ++i) {
    const Job& j = jobs[i];
    std::printf("\n# ablate %zu/%zu: %s %s (%s)\n", i + 1, jobs.size(), j.kind.c_str(), j.label.c_str(),
                j.model_dir.c_str());
    const ojson bench = run_bench(bench_args(j.model_dir));
    write_text(out / ("bench_" + folder_safe(j.label) + ".json"), bench.dump(2) + "\n");
    rows.push_back(variant_row(j.label, j.kind, load_config(j.model_dir), bench, a.context));
    write_text(out / "ablation.json", ablation_doc(a, rows, paper, i + 1 == jobs.size()).dump(2) + "\n");
  }
  const ojson doc = ablation_doc(a, rows, paper, true);
  print_table(doc["rows"]);
  std::printf("ablation: %s\n", (out / "ablation.json").c_str());
}

}  // namespace

void add_ablate_command(CLI::App& app, int* exit_code) {
  static AblateArgs b;
  auto* cmd = app.add_subcommand("ablate", "one model shape with MLA, MHA, GQA and MQA (and MoE or dense FFN), random "
                                           "weights: parameters, KV bytes, capacity, throughput (JSON, docs/ablation.md)");
  add_model_args(cmd, b.model, true);
  cmd->add_option("--attention", b.attention, "mechanisms: mla, mha, gqa:N (N key/value heads), mqa")
      ->capture_default_str();
  cmd->add_option("--ffn", b.ffn, "FFN kinds: moe (the base's DeepSeekMoE), dense (intermediate_size in every layer)")
      ->capture_default_str();
  cmd->add_option("--peers", b.peers, "other model folders benchmarked as they are (e.g. configs/llama-2-7b)");
  cmd->add_option("--batch", b.batches, "the bench's batch sweep (max: up to the largest batch the cache holds)")
      ->capture_default_str();
  cmd->add_option("--prompt", b.prompt, "prompt tokens per request")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--gen", b.gen, "new tokens per request")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--context", b.context, "the context length the concurrent-sequences column is computed at")
      ->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--warmup", b.warmup, "warm-up passes per bench shape")->capture_default_str();
  cmd->add_option("--seed", b.seed, "seed of the random weights (unless --random-weights) and prompts")
      ->capture_default_str();
  cmd->add_option("--out", b.out, "folder for ablation.json, each variant's config.json and bench JSON")
      ->capture_default_str();
  cmd->add_option("--configs", b.configs_dir, "the configs Table 1 is computed from")->capture_default_str();
  cmd->callback([=] { run(exit_code, [&] { ablate_command(b); }); });
}

}  // namespace mlabench::cli
