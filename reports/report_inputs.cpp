#include "reports/report_inputs.h"

#include "reports/compare_section.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <set>

#include "core/check.h"
#include "core/input_file.h"
#include "core/json_limits.h"
#include "harness/evaluator.h"
#include "metrics/registry.h"

namespace mlabench::reports {

namespace fs = std::filesystem;

namespace {

json read_json_file(const fs::path& path, const std::string& what) {
  refuse_non_regular_file(path, what);
  std::ifstream in(path, std::ios::binary);
  MLABENCH_CHECK(in.good(), "{}: cannot open {}. HINT: check the path", what, path.string());
  try {
    return parse_json_bounded(std::string(std::istreambuf_iterator<char>(in), {}), path.string());
  } catch (const nlohmann::json::exception& e) {
    MLABENCH_FAIL("{}: {} is not JSON ({}). HINT: pass a results.json of `mlabench run` or the JSON of "
                  "`mlabench bench --out`", what, path.string(), e.what());
  }
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The model folder's name: "/models/DeepSeek-V2-Lite/" -> "deepseek-v2-lite".
std::string folder_name(const std::string& path) {
  fs::path p(path);
  if (p.filename().empty()) p = p.parent_path();
  return lower(p.filename().string());
}

std::string default_run_label(const json& results) {
  const json& config = results.value("config", json::object());
  if (config.contains("model") && config["model"].is_string()) return folder_name(config["model"].get<std::string>());
  const std::string backend = config.value("backend", std::string("engine"));
  if (backend.starts_with("replay:")) return "replay:" + fs::path(backend.substr(7)).stem().string();
  return "model";
}

// The first `keep` lines of a samples file, and how many lines it has. A 40 MB NIAH file is read line by line;
// only the kept lines are parsed.
std::pair<std::vector<json>, int64_t> read_samples(const fs::path& file, int keep) {
  std::vector<json> lines;
  refuse_non_regular_file(file, "samples file");
  std::ifstream in(file, std::ios::binary);
  if (!in.good()) return {lines, -1};
  int64_t count = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    ++count;
    if (static_cast<int>(lines.size()) < keep) {
      try {
        lines.push_back(parse_json_bounded(line, file.string()));
      } catch (const nlohmann::json::exception& e) {
        MLABENCH_FAIL("{}:{}: not a samples line ({}). HINT: the file was edited or cut short; re-run with "
                      "--resume to rewrite it", file.string(), count, e.what());
      }
    }
  }
  return {lines, count};
}

// Checks what identifies a results.json and gives every optional section a value, so the writers can index the
// document without guarding each key (an older or hand-made file may lack breakdowns, protocols, ...).
void check_results_document(json& r, const fs::path& path) {
  for (const char* key : {"results", "versions", "n-samples", "config", "provenance"})
    MLABENCH_CHECK(r.contains(key) && r[key].is_object(), "{}: no \"{}\" object, so it is not a results.json of "
                   "`mlabench run`. HINT: pass the run folder or its results.json", path.string(), key);
  for (const char* key : {"groups", "group_subtasks", "protocols", "n-shot", "breakdowns", "backend", "gen_kwargs"})
    if (!r.contains(key) || !r[key].is_object()) r[key] = json::object();
}

void check_bench_document(const json& b, const fs::path& path) {
  MLABENCH_CHECK(b.contains("rows") && b["rows"].is_array(), "{}: a bench JSON without \"rows\". HINT: pass the "
                 "file `mlabench bench --out` wrote", path.string());
  for (const json& row : b["rows"])
    MLABENCH_CHECK(row.is_object() && row.contains("batch") && row["batch"].is_number(), "{}: a bench row without "
                   "a numeric \"batch\". HINT: the file was edited or comes from another tool", path.string());
}

}  // namespace

PaperNumbers load_paper_numbers(const fs::path& file) {
  const json doc = read_json_file(file, "paper numbers");
  PaperNumbers p;
  try {
    p.source = doc.at("source");
    p.tables = doc.at("tables");
    p.figure4 = doc.value("figure4", json::object());
    if (!p.figure4.empty()) {
      const auto rows = p.figure4.at("values").get<std::vector<std::vector<double>>>();
      const auto xs = p.figure4.at("x_labels").get<std::vector<std::string>>();
      MLABENCH_CHECK(rows.size() == p.figure4.at("y_labels").size() &&
                         std::all_of(rows.begin(), rows.end(), [&](const auto& r) { return r.size() == xs.size(); }),
                     "{}: figure4 \"values\" is not y_labels x x_labels. HINT: one row per depth, one value per "
                     "length", file.string());
    }
    for (const json& b : doc.at("benchmarks"))
      p.benchmarks.push_back({b.at("name").get<std::string>(), b.at("metric").get<std::string>(),
                              b.at("shots").get<int>(), b.at("task").get<std::string>(),
                              b.at("value_key").get<std::string>(), b.value("note", std::string())});
    for (const json& m : doc.at("models"))
      p.models.push_back({m.at("name").get<std::string>(), m.at("kind").get<std::string>(),
                          m.at("attention").get<std::string>(), m.at("match").get<std::vector<std::string>>()});
    for (const json& n : doc.at("numbers")) {
      PaperNumber x{n.at("benchmark").get<std::string>(), n.at("model").get<std::string>(),
                    n.at("value").get<double>(), n.at("table").get<std::string>(), n.at("page").get<int>()};
      MLABENCH_CHECK(p.tables.contains(x.table), "{}: {} of {} cites {}, which \"tables\" does not list. HINT: add "
                     "it with its page and caption", file.string(), x.benchmark, x.model, x.table);
      MLABENCH_CHECK(std::any_of(p.models.begin(), p.models.end(), [&](const PaperModel& m) { return m.name == x.model; }),
                     "{}: a number for model \"{}\", which \"models\" does not list. HINT: add the model",
                     file.string(), x.model);
      p.numbers.push_back(std::move(x));
    }
  } catch (const nlohmann::json::exception& e) {
    MLABENCH_FAIL("{}: {}. HINT: keep the schema of reports/paper/deepseek_v2.json (source, tables, benchmarks, "
                  "models, numbers)", file.string(), e.what());
  }
  return p;
}

const PaperModel* match_paper_model(const PaperNumbers& paper, const RunInput& run, const std::string& name) {
  if (!name.empty()) {
    for (const PaperModel& m : paper.models)
      if (m.name == name) return &m;
    std::string known;
    for (const PaperModel& m : paper.models) known += (known.empty() ? "" : ", ") + m.name;
    MLABENCH_FAIL("--paper-model \"{}\" is not a model of the paper's tables. HINT: one of: {}", name, known);
  }
  const json& config = run.results.value("config", json::object());
  if (!config.contains("model") || !config["model"].is_string()) return nullptr;
  const std::string folder = folder_name(config["model"].get<std::string>());
  for (const PaperModel& m : paper.models)
    for (const std::string& pattern : m.match)
      if (folder == pattern) return &m;
  return nullptr;
}

const PaperNumber* find_paper_number(const PaperNumbers& paper, const std::string& benchmark,
                                     const std::string& model) {
  for (const PaperNumber& n : paper.numbers)
    if (n.benchmark == benchmark && n.model == model) return &n;
  return nullptr;
}

namespace {

// An ablation.json: rows with the keys the section reads, and the paper's tables.
void check_ablation_document(const json& a, const fs::path& path) {
  MLABENCH_CHECK(a.contains("rows") && a["rows"].is_array() && a.contains("paper_kv") && a.contains("figure1b"),
                 "{}: an ablation JSON without \"rows\", \"paper_kv\" or \"figure1b\". HINT: pass the ablation.json "
                 "`mlabench ablate --out DIR` wrote", path.string());
  for (const json& r : a["rows"])
    MLABENCH_CHECK(r.is_object() && r.contains("label") && r["label"].is_string() &&
                       r.contains("kv_elements_per_token") && r["kv_elements_per_token"].is_number() &&
                       r.contains("decode_sweep") && r["decode_sweep"].is_array(),
                   "{}: an ablation row without a string \"label\", a numeric \"kv_elements_per_token\" or a "
                   "\"decode_sweep\" array. HINT: the file was edited or comes from another tool", path.string());
}

}  // namespace

ReportInputs load_report_inputs(const std::vector<std::string>& inputs, const LoadOptions& o) {
  MLABENCH_CHECK(!inputs.empty(), "no inputs. HINT: mlabench report RUN_FOLDER|results.json|bench.json ... "
                 "--out report.html");
  ReportInputs in;
  const fs::path paper_file = o.paper_file.empty() ? fs::path(MLABENCH_PAPER_NUMBERS_DIR) / "deepseek_v2.json"
                                                   : o.paper_file;
  in.paper = load_paper_numbers(paper_file);

  struct Pending {
    std::string label;  // empty: the default
    fs::path path;
    json doc;
    bool bench;
  };
  std::vector<Pending> pending;
  for (const std::string& arg : inputs) {
    Pending p;
    std::string path = arg;
    const size_t eq = arg.find('=');
    if (eq != std::string::npos && eq > 0 && !fs::exists(arg)) {
      p.label = arg.substr(0, eq);
      path = arg.substr(eq + 1);
    }
    p.path = path;
    if (fs::is_directory(p.path)) p.path /= "results.json";
    MLABENCH_CHECK(fs::is_regular_file(p.path), "report input \"{}\": {} is {}, not a results file. HINT: pass a run "
                   "folder (with results.json), a results.json or a bench JSON, optionally as LABEL=PATH", arg,
                   p.path.string(), describe_file_kind(p.path));
    p.doc = read_json_file(p.path, "report input");
    MLABENCH_CHECK(p.doc.is_object(), "report input {}: not a JSON object. HINT: pass a results.json or a bench "
                   "JSON", p.path.string());
    if (p.doc.value("tool", std::string()) == "mlabench ablate") {  // no label: it is its own section
      check_ablation_document(p.doc, p.path);
      in.ablations.push_back({p.path, std::move(p.doc)});
      continue;
    }
    p.bench = p.doc.value("tool", std::string()) == "mlabench bench";
    if (p.bench)
      check_bench_document(p.doc, p.path);
    else
      check_results_document(p.doc, p.path);
    pending.push_back(std::move(p));
  }

  // Default labels, unique among inputs of one kind: a run and a bench may share one (one model, one column).
  for (const bool bench : {false, true}) {
    std::map<std::string, int> seen;
    for (Pending& p : pending) {
      if (p.bench != bench) continue;
      if (p.label.empty()) {
        std::string base = bench ? folder_name(p.doc.value("model", std::string("model"))) : default_run_label(p.doc);
        const json& config = bench ? p.doc.value("params", json::object()) : p.doc.value("config", json::object());
        if (seen.contains(base) && config.contains("precision") && config["precision"].is_string())
          base += " " + config["precision"].get<std::string>();
        p.label = base;
      }
      const int k = ++seen[p.label];
      if (k > 1) p.label += fmt::format(" #{}", k);
    }
  }

  for (Pending& p : pending) {
    if (std::find(in.labels.begin(), in.labels.end(), p.label) == in.labels.end()) in.labels.push_back(p.label);
    if (p.bench) {
      in.benches.push_back({p.label, p.path, std::move(p.doc)});
      continue;
    }
    RunInput run{p.label, p.path, std::move(p.doc), {}, {}};
    for (const std::string& task : run_tasks(run.results)) {
      auto [lines, total] = read_samples(p.path.parent_path() / fmt::format("samples_{}.jsonl", task),
                                         o.samples_per_task);
      run.samples[task] = std::move(lines);
      run.samples_total[task] = total;
    }
    in.runs.push_back(std::move(run));
  }
  for (const fs::path& f : o.compare_files) in.comparisons.push_back(load_compare_document(f));
  return in;
}

std::vector<MetricValue> estimate_metrics(const json& estimate, const std::string& name, int64_t n) {
  std::vector<MetricValue> out;
  if (!estimate.is_object()) return out;
  for (const auto& [key, v] : estimate.items()) {
    const size_t comma = key.find(',');
    if (comma == std::string::npos || key.find("_stderr,") != std::string::npos || !v.is_number()) continue;
    MetricValue m{name, key.substr(0, comma), key.substr(comma + 1), v.get<double>(), std::nullopt, n};
    const std::string se = harness::stderr_key(key);
    if (estimate.contains(se) && estimate[se].is_number()) m.stderr_ = estimate[se].get<double>();
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<MetricValue> section_metrics(const json& results, const std::string& name) {
  for (const char* where : {"groups", "results"})
    if (results.contains(where) && results[where].contains(name))
      return estimate_metrics(results[where][name], name, documents_under(results, name));
  return {};
}

std::vector<BreakdownValue> breakdown_values(const json& results, const std::string& task) {
  std::vector<BreakdownValue> out;
  if (!results.contains("breakdowns") || !results["breakdowns"].contains(task)) return out;
  for (const auto& [field, values] : results["breakdowns"][task].items())
    for (const auto& [value, est] : values.items())
      out.push_back({field, value, estimate_metrics(est, value, est.is_object() ? est.value("n", int64_t{0}) : 0)});
  return out;
}

double bench_number(const json& row, const char* key, const char* percentile) {
  if (!row.is_object() || !row.contains(key)) return std::nan("");
  const json& v = percentile ? (row[key].is_object() && row[key].contains(percentile) ? row[key][percentile] : json())
                             : row[key];
  return v.is_number() ? v.get<double>() : std::nan("");
}

int bench_schema(const json& bench) {
  return bench.contains("schema_version") && bench["schema_version"].is_number_integer()
             ? bench["schema_version"].get<int>()
             : 1;
}

bool bench_prompts_vary(const ReportInputs& in) {
  std::set<double> prompts;
  for (const BenchInput& b : in.benches)
    for (const json& row : b.bench["rows"]) prompts.insert(bench_number(row, "prompt_tokens"));
  return prompts.size() > 1;
}

std::string bench_row_name(const json& row, bool with_prompt) {
  const auto whole = [&](const char* key) {
    const double v = bench_number(row, key);
    return std::isfinite(v) ? fmt::format("{:.0f}", v) : std::string("n/a");
  };
  return with_prompt ? fmt::format("batch {}, prompt {}", whole("batch"), whole("prompt_tokens"))
                     : "batch " + whole("batch");
}

std::vector<std::string> run_tasks(const json& results) {
  std::vector<std::string> out;
  if (!results.contains("versions")) return out;
  for (const auto& [task, _] : results["versions"].items()) out.push_back(task);
  return out;
}

int64_t documents_under(const json& results, const std::string& name) {
  const json& samples = results.value("n-samples", json::object());
  if (samples.contains(name)) return samples[name].value("effective", int64_t{0});
  const json& members = results.value("group_subtasks", json::object());
  if (!members.contains(name)) return 0;
  int64_t n = 0;
  for (const json& m : members[name])
    if (m.is_string() && m.get<std::string>() != name) n += documents_under(results, m.get<std::string>());
  return n;
}

std::pair<double, double> interval95(const MetricValue& m) {
  if (!m.stderr_) return {std::nan(""), std::nan("")};
  double lo = m.value - 1.96 * *m.stderr_, hi = m.value + 1.96 * *m.stderr_;
  // Proportions (accuracies, exact match, pass@k, needle recall) live in [0, 1]; the 1-10 needle score and
  // loglikelihoods do not (the registry's `proportion`).
  if (metrics::reported_is_proportion(m.metric)) lo = std::max(lo, 0.0), hi = std::min(hi, 1.0);
  return {lo, hi};
}

std::optional<MetricValue> headline_metric(const ReportInputs& in, const RunInput& run, const std::string& task) {
  const std::vector<MetricValue> all = section_metrics(run.results, task);
  if (all.empty()) return std::nullopt;
  for (const PaperBenchmark& b : in.paper.benchmarks)
    if (b.task == task)
      for (const MetricValue& m : all)
        if (m.metric + "," + m.filter == b.value_key) return m;
  return all.front();
}

std::vector<PaperComparison> paper_comparisons(const ReportInputs& in, const std::string& paper_model) {
  std::vector<PaperComparison> out;
  for (const RunInput& run : in.runs) {
    const PaperModel* model = match_paper_model(in.paper, run, paper_model);
    const std::vector<std::string> tasks = run_tasks(run.results);
    for (const PaperBenchmark& b : in.paper.benchmarks) {
      if (std::find(tasks.begin(), tasks.end(), b.task) == tasks.end()) continue;
      for (const MetricValue& m : section_metrics(run.results, b.task)) {
        if (m.metric + "," + m.filter != b.value_key) continue;
        out.push_back({run.label, &b, m, model, model ? find_paper_number(in.paper, b.name, model->name) : nullptr});
      }
    }
  }
  return out;
}

const BenchInput* bench_for(const ReportInputs& in, const std::string& label) {
  for (const BenchInput& b : in.benches)
    if (b.label == label) return &b;
  return nullptr;
}

const RunInput* run_for(const ReportInputs& in, const std::string& label) {
  for (const RunInput& r : in.runs)
    if (r.label == label) return &r;
  return nullptr;
}

double kv_bytes_per_token(const ReportInputs& in, const std::string& label) {
  if (const BenchInput* b = bench_for(in, label))
    for (const json& row : b->bench["rows"])
      if (const double v = bench_number(row, "kv_bytes_per_token"); std::isfinite(v)) return v;
  if (const RunInput* r = run_for(in, label)) {
    const json& p = r->results["provenance"];
    if (p.contains("device_info") && p["device_info"].contains("kv_cache") &&
        p["device_info"]["kv_cache"].contains("bytes_per_token"))
      return p["device_info"]["kv_cache"]["bytes_per_token"].get<double>();
  }
  return std::nan("");
}

}  // namespace mlabench::reports
