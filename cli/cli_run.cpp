// mlabench run: evaluate a model (or a replay file) on tasks; results.json, samples_<task>.jsonl and a summary
// table. docs/harness.md describes the flags and the files.
#include "cli/cli_run.h"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/check.h"
#include "core/digest.h"
#include "core/json_limits.h"
#include "harness/backend.h"
#include "harness/evaluator.h"
#include "harness/invariance.h"
#include "harness/guards.h"
#include "harness/remote_backend.h"
#include "reports/report.h"
#include "git_commit.h"  // generated at build time (cmake/git_commit.cmake)

namespace mlabench::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

struct RunArgs {
  ModelArgs model;
  std::string tasks;
  std::string backend = "engine";
  int64_t limit = -1;
  int num_fewshot = -1;
  std::string output;
  bool resume = false;
  bool apply_chat_template = false;
  std::string system_prompt;
  std::string gen_kwargs;
  bool no_bos = false;
  std::string data_dir;
  std::string mirror;
  bool offline = false;
  int64_t batch_docs = 0;  // 0: 256 on CUDA (large batches keep the GPU busy), 64 on the CPU
  bool no_progress = false;
  std::vector<std::string> set;  // --set TASK.KEY=VALUE
  int sandbox_workers = 0;
  std::string tokenizer;  // replay: whose tokens to count; openai: the served model's tokenizer
  // --backend openai:URL
  std::string model_name;
  std::string api_key_env = "OPENAI_API_KEY";
  int64_t concurrency = 64;
  double request_timeout = 600;
  int64_t max_length = 0;
  bool no_report = false;
  bool strict = false;                  // --strict: run-health warnings are errors
  int64_t check_invariance = 0;         // --check-invariance N: documents re-run one at a time after the run
  uint64_t invariance_seed = 0;
  std::string shard;                    // --shard K/N or env
  int64_t shards = 0;                   // --shards N (with --shard env, or alone)
  std::vector<std::string> merge_from;  // --merge-from (set by mlabench merge): the shards' run folders
};

// A file's SHA-256, remembered in the dataset cache folder by (absolute path, size, mtime): a 30 GB checkpoint
// is read once, not on every run.
std::string cached_sha256(const fs::path& file, const fs::path& cache_dir) {
  const fs::path memo = cache_dir / "file_digests.json";
  json known = json::object();
  if (std::ifstream in(memo); in.good()) known = json::parse(in, nullptr, false);
  if (!known.is_object()) known = json::object();
  const std::string key = fs::absolute(file).string();
  const auto size = static_cast<int64_t>(fs::file_size(file));
  const auto mtime = static_cast<int64_t>(fs::last_write_time(file).time_since_epoch().count());
  if (known.contains(key) && known[key].value("size", int64_t{-1}) == size && known[key].value("mtime", int64_t{-1}) == mtime)
    return known[key]["sha256"].get<std::string>();
  const std::string digest = data::sha256_file_hex(file);
  known[key] = {{"size", size}, {"mtime", mtime}, {"sha256", digest}};
  std::error_code ec;
  fs::create_directories(cache_dir, ec);
  std::ofstream(memo) << known.dump(1) << "\n";  // best effort: a read-only cache only costs a re-hash next time
  return digest;
}

// What identifies the weights: a SHA-256 over the checkpoint's safetensors files (and index), in name order.
json weights_provenance(const EngineOptions& m, const fs::path& cache_dir) {
  if (m.random_weights_seed) return {{"kind", "random"}, {"seed", *m.random_weights_seed}};
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(m.model_dir)) {
    const std::string name = e.path().filename().string();
    if (name.ends_with(".safetensors") || name == "model.safetensors.index.json") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  std::string joined;
  for (const fs::path& f : files) joined += f.filename().string() + "\t" + cached_sha256(f, cache_dir) + "\n";
  return {{"kind", "checkpoint"}, {"files", files.size()}, {"sha256", data::sha256_hex(joined)}};
}

json tokenizer_provenance(const std::string& model_dir) {
  json j = json::object();
  for (const char* f : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json"}) {
    const fs::path p = fs::path(model_dir) / f;
    if (fs::exists(p)) j[f] = data::sha256_file_hex(p);
  }
  return j;
}

// --backend openai:URL: the remote server, its model, the local tokenizer; config and provenance say which (the
// URL and the key's variable in provenance, never the key).
std::unique_ptr<harness::Backend> open_remote_backend(const RunArgs& a, json& config, json& provenance) {
  harness::RemoteBackendOptions ro{.base_url = a.backend.substr(7),
                                   .model_name = a.model_name,
                                   .api_key_env = a.api_key_env,
                                   .tokenizer_dir = a.tokenizer,
                                   .concurrency = a.concurrency,
                                   .request_timeout_seconds = a.request_timeout,
                                   .max_length = a.max_length,
                                   .apply_chat_template = a.apply_chat_template,
                                   .system_prompt = a.system_prompt,
                                   .add_bos = !a.no_bos,
                                   .log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); }};
  auto remote = std::make_unique<harness::RemoteBackend>(ro);
  const json server = remote->server_info();
  config = {{"backend", "openai"},
            {"model", server["model"]},
            {"tokenizer", a.tokenizer},
            {"max_length", remote->max_context()},
            {"apply_chat_template", a.apply_chat_template},
            {"system_prompt", a.system_prompt},
            {"add_bos", !a.no_bos}};
  provenance["openai"] = server;
  if (!a.tokenizer.empty()) provenance["tokenizer"] = tokenizer_provenance(a.tokenizer);
  return remote;
}

void run_command(const RunArgs& a, const std::vector<std::string>& argv) {
  const EngineOptions& eng = a.model.engine;
  MLABENCH_CHECK(!a.tasks.empty(), "no tasks given. HINT: --tasks mmlu,gsm8k_cot (names, globs like mmlu_*, or the "
                 "suite deepseek-v2-paper)");
  harness::EngineBackendOptions eo{.apply_chat_template = a.apply_chat_template,
                                   .system_prompt = a.system_prompt,
                                   .add_bos = !a.no_bos};
  std::unique_ptr<harness::Backend> backend;
  json config = {{"backend", a.backend}};
  json provenance = {{"mlabench_version", MLABENCH_VERSION},
                     {"commit", mlabench_commit()},
                     {"date", utc_now("%Y-%m-%dT%H:%M:%SZ")},
                     {"command_line", argv},
                     {"environment", json(engine_environment(a.api_key_env))}};
  if (a.backend.starts_with("replay:")) {
    // With --model, contexts are also tokenized by the model's tokenizer (token counts in the samples).
    std::unique_ptr<Tokenizer> tok;
    if (!a.tokenizer.empty()) {
      MLABENCH_CHECK(Tokenizer::exists(a.tokenizer), "--tokenizer {}: no tokenizer.json or tokenizer.model there. "
                     "HINT: pass the model's folder", a.tokenizer);
      tok = Tokenizer::load(a.tokenizer).value();
      provenance["tokenizer"] = tokenizer_provenance(a.tokenizer);
    } else if (eng.model_dir != MLABENCH_DEFAULT_MODEL && Tokenizer::exists(eng.model_dir)) {
      tok = Tokenizer::load(eng.model_dir).value();
    }
    backend = harness::make_replay_backend(a.backend.substr(7), std::move(tok));
    provenance["replay_sha256"] = data::sha256_file_hex(a.backend.substr(7));
  } else if (a.backend.starts_with("openai:")) {
    backend = open_remote_backend(a, config, provenance);
  } else {
    MLABENCH_CHECK(a.backend == "engine", "--backend \"{}\" is not engine, replay:FILE.jsonl or openai:URL. HINT: "
                   "e.g. --backend openai:http://127.0.0.1:8000/v1", a.backend);
    std::unique_ptr<Engine> engine = open_engine(eng);
    const ModelSummary& s = engine->summary();
    // The CPU engine always computes in float32, whatever --precision says.
    config.update({{"model", eng.model_dir},
                   {"architecture", s.architecture},
                   {"device", to_string(eng.device)},
                   {"precision", to_string(eng.device == Device::CUDA ? eng.precision : Precision::FLOAT32)},
                   {"mla_attention", to_string(eng.mla_attention)},
                   {"apply_chat_template", a.apply_chat_template},
                   {"system_prompt", a.system_prompt},
                   {"add_bos", !a.no_bos},
                   {"max_batch", eng.max_batch}});
    // Only a split run records its split (a run without one keeps the config it always had, for --resume).
    if (eng.tp > 1 || eng.ep > 1 || eng.dp_attention)
      config.update({{"tp", eng.tp}, {"ep", eng.ep}, {"dp_attention", eng.dp_attention}});
    // Likewise FP8 weights: never silent, and a --resume of an FP8 run refuses to continue with the stored weights.
    if (eng.weights_dtype != WeightsDtype::AUTO) config["weights_dtype"] = to_string(eng.weights_dtype);
    if (eng.kv_cache_dtype != KvCacheDtype::AUTO) config["kv_cache_dtype"] = to_string(eng.kv_cache_dtype);
    data::FetchOptions where;
    if (!a.data_dir.empty()) where.cache_dir = a.data_dir;
    provenance["weights"] = weights_provenance(eng, data::resolve_cache_dir(where));
    // The stored dtype(s) as `mlabench info` reads them, and the arithmetic the engine used on them.
    const json info = json::parse(s.json);
    provenance["weights"]["config_dtype"] = info.value("dtype", json(nullptr));
    provenance["weights"]["held_as"] = to_string(eng.weights_dtype);  // auto: as stored; fp8: e4m3 blocks
    if (info.contains("checkpoint") && info["checkpoint"].is_object())
      provenance["weights"]["stored_dtypes"] = info["checkpoint"]["dtypes"];
    provenance["tokenizer"] = tokenizer_provenance(eng.model_dir);
    if (!engine->device_json().empty()) provenance["device_info"] = json::parse(engine->device_json());
    if (eng.device == Device::CUDA) provenance["device_index"] = eng.device_index;  // --device cuda:N
    backend = harness::make_engine_backend(std::move(engine), eo, config);
  }

  harness::EvalOptions o;
  o.tasks = a.tasks;
  if (a.num_fewshot >= 0) o.num_fewshot = a.num_fewshot;
  if (a.limit >= 0) o.limit = a.limit;
  o.output_dir = a.output.empty() ? fs::path("results") / utc_now("run-%Y%m%d-%H%M%S") : fs::path(a.output);
  o.resume = a.resume;
  if (!a.data_dir.empty()) o.fetch.cache_dir = a.data_dir;
  o.fetch.mirror = a.mirror;
  o.fetch.allow_network = !a.offline;
  o.fetch.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  o.gen = harness::parse_gen_kwargs(a.gen_kwargs);
  for (const std::string& item : a.set) harness::add_task_override(o.task_overrides, item);
  o.sandbox_workers = a.sandbox_workers;
  // A remote server batches across all requests in flight: 256 documents per batch keep --concurrency busy.
  o.batch_docs = a.batch_docs > 0                                              ? a.batch_docs
                 : eng.device == Device::CUDA || backend->kind() == "openai" ? 256
                                                                             : 64;
  o.progress = !a.no_progress;
  o.config = config;
  o.provenance = provenance;
  if (!a.shard.empty() || a.shards > 0) o.shard = harness::parse_shard(a.shard.empty() ? "env" : a.shard, a.shards);
  for (const std::string& d : a.merge_from) o.merge_from.emplace_back(d);
  o.command_line = argv;
  o.check_invariance = a.check_invariance;
  o.invariance_seed = a.invariance_seed;
  // Every seed the run depends on: generation (per document: seed * 1000003 + doc_id) and few-shot sampling
  // (in each task's resolved config, results.json "configs").
  o.provenance["seeds"] = {{"generation_default", tasks::GenerationKwargs{}.seed},
                           {"generation_override", o.gen.seed ? json(*o.gen.seed) : json(nullptr)}};
  const harness::EvalOutcome out = harness::evaluate(*backend, o);
  std::printf("%s", harness::format_results_table(out.results).c_str());
  std::printf("%s", harness::format_cost_table(out.results).c_str());
  std::printf("%s", harness::format_health_warnings(out.results).c_str());
  if (out.results.contains("invariance"))
    std::printf("%s\n", harness::invariance_summary(out.results["invariance"]).c_str());
  if (!out.errors.empty()) {  // refused tasks: the others' results are written; the run still fails
    std::printf("results: %s (%zu task(s) refused)\n", out.results_path.c_str(), out.errors.size());
    MLABENCH_FAIL("{}", fmt::join(out.errors, "\n"));
  }
  std::printf("results: %s (%lld documents scored, %lld resumed)\n", out.results_path.c_str(),
              static_cast<long long>(out.docs_scored), static_cast<long long>(out.docs_resumed));
  if (!a.no_report) {
    const fs::path report = out.results_path.parent_path() / "report.html";
    reports::write_report({out.results_path.parent_path().string()}, report, reports::ReportFormat::HTML, {},
                          {.paper_model = "", .generator = report_generator(), .sample_chars = 2000});
    std::printf("report: %s\n", report.c_str());
  }
  // After the results and the report are written, so that a failed strict run can still be read.
  MLABENCH_CHECK(!a.strict || out.warnings.empty(), "--strict: {} run-health warning(s):\n{}\nHINT: the scores of "
                 "this run are suspect (docs/harness.md \"Run health\"); fix the cause, or run without --strict to "
                 "accept them as warnings",
                 out.warnings.size(), fmt::join(out.warnings, "\n"));
}

}  // namespace

std::string utc_now(const char* fmt_str) {
  const std::time_t now = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, fmt_str, std::gmtime(&now));
  return buf;
}

std::string mlabench_commit() {
  if (const char* c = std::getenv("MLABENCH_COMMIT")) return c;
  return MLABENCH_GIT_COMMIT;
}

void add_run_command(CLI::App& app, int* exit_code, std::vector<std::string> command_line) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* cmd = app.add_subcommand("run", "evaluate a model on tasks (results.json, samples_<task>.jsonl)");
  add_model_args(cmd, a->model, true);
  cmd->add_option("--tasks", a->tasks, "tasks, comma-separated: names, globs (mmlu_*), suites (deepseek-v2-paper)")
      ->required();
  cmd->add_option("--backend", a->backend,
                  "engine (the embedded engine: --model, --device), replay:FILE.jsonl, or openai:URL (an "
                  "OpenAI-compatible server's /v1 base: vLLM, SGLang, mlabench serve)")
      ->capture_default_str();
  cmd->add_option("--limit", a->limit, "at most N documents per subtask (the first ones)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--num-fewshot", a->num_fewshot, "shots per prompt (default: each task's)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--output", a->output, "run folder (default results/run-<UTC time>)");
  cmd->add_flag("--resume", a->resume, "continue the run in --output: recorded documents are not recomputed");
  cmd->add_flag("--apply-chat-template", a->apply_chat_template, "wrap each prompt as a user turn of the chat template");
  cmd->add_option("--system-prompt", a->system_prompt, "a system turn (with the chat template) or a prefix + blank line");
  cmd->add_option("--gen-kwargs", a->gen_kwargs,
                  "generation overrides: temperature=,top_p=,max_gen_toks=,seed=,repeats=,until=a|b");
  cmd->add_flag("--no-bos", a->no_bos, "encode prompts without the tokenizer's BOS (lm-evaluation-harness's HF default)");
  cmd->add_option("--data-dir", a->data_dir, "dataset cache (default $MLABENCH_DATA_DIR or ~/.cache/mlabench/datasets)");
  cmd->add_option("--mirror", a->mirror,
                  "dataset mirror: a folder laid out like ../shared/datasets, or a URL prefix (default "
                  "$MLABENCH_DATA_MIRROR)");
  cmd->add_flag("--offline", a->offline, "never download: only the cache and the mirror");
  cmd->add_option("--batch-docs", a->batch_docs,
                  "documents per backend call and per durable samples write (default 256 on cuda, 64 on cpu)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--no-progress", a->no_progress, "no progress bar or lines");
  cmd->add_option("--set", a->set,
                  "override a task's spec: TASK.KEY[.KEY...]=JSON, e.g. niah.generator.context_lengths=[1000,4000] "
                  "(repeatable)");
  cmd->add_option("--sandbox-workers", a->sandbox_workers,
                  "programs graded at once, 0..1024 (default 0: one per core)")
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--tokenizer", a->tokenizer,
                  "replay backend: the model folder whose tokenizer measures prompts; openai backend: the served "
                  "model's folder (tokenizer.json), needed for loglikelihood tasks and token lengths");
  cmd->add_option("--model-name", a->model_name, "openai backend: the server's model id (default: the first of GET "
                  "/v1/models)");
  cmd->add_option("--api-key-env", a->api_key_env, "openai backend: the environment variable holding the API key "
                  "(sent as a Bearer token, never recorded)")
      ->capture_default_str();
  cmd->add_option("--concurrency", a->concurrency, "openai backend: requests in flight at most")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}))
      ->capture_default_str();
  cmd->add_option("--request-timeout", a->request_timeout, "openai backend: seconds one request may take")
      ->check(CLI::Range(0.001, 86400.0))
      ->capture_default_str();
  cmd->add_option("--max-length", a->max_length, "openai backend: the model's window in tokens, for truncating "
                  "contexts from the left (default: the server's max_model_len from /v1/models)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--no-report", a->no_report, "do not write report.html next to results.json");
  cmd->add_flag("--strict", a->strict, "exit with an error when a run-health guard trips (one-letter answers, "
                "chance accuracy, truncation, empty or max-tokens generations, missing log-probabilities)");
  cmd->add_option("--check-invariance", a->check_invariance,
                  "after the run, send N random documents again one at a time and compare them with the batched "
                  "answers (max |d log-prob|, argmax flips, diverged generations; results.json \"invariance\")")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  cmd->add_option("--invariance-seed", a->invariance_seed, "seed of --check-invariance's draw")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--shard", a->shard,
                  "run part K of N (K/N, K = 0..N-1): every subtask's documents K, K+N, ...; or env: from "
                  "SLURM_ARRAY_TASK_ID/_COUNT, JOB_COMPLETION_INDEX (with --shards) or RANK/WORLD_SIZE; then "
                  "mlabench merge");
  cmd->add_option("--shards", a->shards, "the shard count N, for --shard env (implies it when alone)")
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--merge-from", a->merge_from, "(mlabench merge) the shards' run folders")->group("");
  cmd->callback([a, exit_code, command_line]() { run(exit_code, [&] { run_command(*a, command_line); }); });
}

// mlabench merge: the run command the first shard recorded (run.json "command_line") again, without its shard,
// output and resume flags, into --output with --merge-from: the evaluator checks the shards are one whole run,
// gathers their samples and aggregates them; nothing is scored (the backend is opened to rebuild the documents).
static std::vector<std::string> merge_command_line(const std::vector<std::string>& shard_dirs, const std::string& output,
                                            bool no_report) {
  MLABENCH_CHECK(!shard_dirs.empty(), "merge: no shard folders given. HINT: mlabench merge DIR... --output DIR");
  const fs::path run_json = fs::path(shard_dirs.front()) / "run.json";
  MLABENCH_CHECK(fs::is_regular_file(run_json), "merge: {} has no run.json. HINT: name the shards' run folders",
                 shard_dirs.front());
  std::ifstream in(run_json, std::ios::binary);
  json run;
  try {  // bounded like every JSON mlabench reads (depth, numbers); gather_shards checks the rest of each run.json
    run = parse_json_bounded(std::string(std::istreambuf_iterator<char>(in), {}), run_json.string());
  } catch (const nlohmann::json::exception& e) {
    MLABENCH_FAIL("merge: {} is not JSON ({}). HINT: name the shards' run folders", run_json.string(), e.what());
  }
  MLABENCH_CHECK(run.is_object() && run.contains("command_line") && run["command_line"].is_array() &&
                     run["command_line"].size() >= 2,
                 "merge: {} records no command line. HINT: shards written by an older mlabench cannot be merged; "
                 "run them again", run_json.string());
  std::vector<std::string> args;
  for (const json& v : run["command_line"]) {
    MLABENCH_CHECK(v.is_string(), "merge: {}: command_line holds a non-string", run_json.string());
    args.push_back(v.get<std::string>());
  }
  MLABENCH_CHECK(args[1] == "run", "merge: {} was not written by mlabench run", run_json.string());
  std::vector<std::string> out = {args[0], "run"};
  for (size_t i = 2; i < args.size(); ++i) {
    const std::string& s = args[i];
    if (s == "--shard" || s == "--shards" || s == "--output") {
      ++i;  // and its value
      continue;
    }
    if (s.starts_with("--shard=") || s.starts_with("--shards=") || s.starts_with("--output=") || s == "--resume" ||
        s == "--no-report" || s.starts_with("--merge-from"))
      continue;
    out.push_back(s);
  }
  out.insert(out.end(), {"--output", output});
  if (no_report) out.push_back("--no-report");
  out.push_back("--merge-from");
  out.insert(out.end(), shard_dirs.begin(), shard_dirs.end());
  return out;
}

void add_merge_command(CLI::App& app, int* exit_code) {
  auto dirs = std::make_shared<std::vector<std::string>>();
  auto output = std::make_shared<std::string>();
  auto no_report = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("merge", "merge the run folders of a sharded run (--shard K/N) into one run");
  cmd->add_option("dirs", *dirs, "the N shards' run folders")->required();
  cmd->add_option("--output", *output, "the merged run folder (new)")->required();
  cmd->add_flag("--no-report", *no_report, "do not write report.html next to results.json");
  cmd->callback([dirs, output, no_report, exit_code]() {
    std::vector<std::string> argv;
    run(exit_code, [&] { argv = merge_command_line(*dirs, *output, *no_report); });
    if (*exit_code != 0) return;
    CLI::App sub{"mlabench"};
    int code = 0;
    add_run_command(sub, &code, argv);
    std::vector<std::string> rest(argv.rbegin(), argv.rend() - 1);  // CLI11 takes them reversed, no program name
    run(exit_code, [&] {
      try {
        sub.parse(rest);
      } catch (const CLI::ParseError& e) {
        MLABENCH_FAIL("merge: the command line recorded in {}/run.json does not parse as mlabench run ({}). HINT: "
                      "the shards were written by another mlabench version, or the file was edited",
                      dirs->front(), e.what());
      }
    });
    if (*exit_code == 0) *exit_code = code;    // the merged run's own (it printed its error)
  });
}

void add_tasks_command(CLI::App& app, int* exit_code) {
  CLI::App* cmd = app.add_subcommand("tasks", "list the tasks, groups and suites --tasks accepts");
  cmd->callback([exit_code]() {
    run(exit_code, [] {
      for (const std::string& name : tasks::list_tasks()) std::printf("%s\n", name.c_str());
      for (const std::string& suite : tasks::list_suites())
        std::printf("%s (suite: %s)\n", suite.c_str(),
                    fmt::format("{}", fmt::join(tasks::resolve_task_names(suite), ",")).c_str());
    });
  });
}

}  // namespace mlabench::cli
