#include "harness/compare.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include "core/check.h"
#include "core/input_file.h"
#include "core/json_limits.h"
#include "metrics/paired_stats.h"

namespace mlabench::harness {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace {

/// One scored document of a samples file: what pairing checks and what the statistics use.
struct Item {
  std::string context, target;   ///< the prompt text and the reference answer: equal in both runs, or refused
  std::string prediction;        ///< "pred" / "filtered" / "responses" as JSON text ("" when the line has none)
  std::map<std::string, double> metrics;
  std::vector<double> logprobs;  ///< a loglikelihood task's log p of each choice (empty for generation tasks)
};
using ItemKey = std::pair<std::string, int64_t>;  ///< (subtask, doc_id)

struct Run {
  std::string label;
  fs::path dir;
  json results;
};

Run load_run(const std::string& arg) {
  Run run;
  std::string path = arg;
  if (const size_t eq = arg.find('='); eq != std::string::npos && eq > 0 && !fs::exists(arg)) {
    run.label = arg.substr(0, eq);
    path = arg.substr(eq + 1);
  }
  fs::path results = path;
  if (fs::is_directory(results)) results /= "results.json";
  MLABENCH_CHECK(fs::exists(results), "compare: {} has no results.json. HINT: pass the folder `mlabench run --output` "
                 "wrote (or its results.json); a run still going or killed has none until it ends (--resume it)",
                 path);
  refuse_non_regular_file(results, "compare: results.json");
  std::ifstream in(results, std::ios::binary);
  try {
    run.results = parse_ordered_json_bounded(std::string(std::istreambuf_iterator<char>(in), {}), results.string());
  } catch (const nlohmann::json::exception& e) {
    MLABENCH_FAIL("compare: {} is not JSON ({}). HINT: pass the results.json of `mlabench run`", results.string(),
                  e.what());
  }
  for (const char* key : {"results", "versions", "n-shot", "configs", "higher_is_better"})
    MLABENCH_CHECK(run.results.contains(key) && run.results[key].is_object(), "compare: {} has no \"{}\" object, so "
                   "it is not a results.json of `mlabench run`. HINT: pass a run folder", results.string(), key);
  run.dir = results.parent_path();
  if (run.label.empty()) run.label = fs::absolute(run.dir).lexically_normal().filename().string();
  if (run.label.empty()) run.label = run.dir.string();
  return run;
}

std::map<ItemKey, Item> read_items(const Run& run, const std::string& task) {
  const fs::path file = run.dir / fmt::format("samples_{}.jsonl", task);
  MLABENCH_CHECK(fs::exists(file), "compare: run {} has results for task {} but no {}. HINT: compare needs the "
                 "per-document samples files `mlabench run` writes beside results.json; copy the whole run folder",
                 run.label, task, file.string());
  refuse_non_regular_file(file, "compare: samples file");
  std::ifstream in(file, std::ios::binary);
  std::map<ItemKey, Item> items;
  std::string text;
  int64_t number = 0;
  while (std::getline(in, text)) {
    ++number;
    if (text.empty()) continue;
    json line;
    try {
      line = parse_ordered_json_bounded(text, file.string());
      Item item;
      const ItemKey key{line.at("subtask").get<std::string>(), line.at("doc_id").get<int64_t>()};
      item.context = line.value("context", std::string());
      if (line.contains("target")) item.target = line["target"].dump();
      for (const char* field : {"pred", "filtered", "responses"})
        if (line.contains(field)) {
          item.prediction = line[field].dump();
          break;
        }
      for (const auto& [k, v] : line.at("metrics").items()) item.metrics[k] = v.get<double>();
      if (line.contains("logprobs") && line["logprobs"].is_array())
        for (const json& v : line["logprobs"]) item.logprobs.push_back(v.is_number() ? v.get<double>() : std::nan(""));
      MLABENCH_CHECK(items.emplace(key, std::move(item)).second, "compare: {}:{}: document {} of {} appears twice. "
                     "HINT: the samples file was concatenated or edited; re-run the task", file.string(), number,
                     key.second, key.first);
    } catch (const nlohmann::json::exception& e) {
      MLABENCH_FAIL("compare: {}:{}: not a samples line ({}). HINT: the file was edited or cut short; `mlabench run "
                    "--resume` rewrites it", file.string(), number, e.what());
    }
  }
  return items;
}

std::string show(const json& v) { return v.is_null() ? "(absent)" : v.dump(); }

// The first key where two JSON objects differ ("doc_to_text"), or "" when they are equal.
std::string first_difference(const json& a, const json& b) {
  if (!a.is_object() || !b.is_object()) return nlohmann::json(a) == nlohmann::json(b) ? "" : "(whole value)";
  std::set<std::string> keys;
  for (const auto& [k, _] : a.items()) keys.insert(k);
  for (const auto& [k, _] : b.items()) keys.insert(k);
  for (const std::string& k : keys) {
    const json va = a.contains(k) ? a[k] : json(), vb = b.contains(k) ? b[k] : json();
    if (nlohmann::json(va) != nlohmann::json(vb)) return k;  // compared unordered: key order is not a protocol
  }
  return "";
}

[[noreturn]] void refuse(const std::string& task, const std::string& field, const Run& a, const Run& b,
                         const std::string& va, const std::string& vb) {
  MLABENCH_FAIL("compare: task {}: {} differs between the runs ({}: {}; {}: {}), so their items are not the same "
                "questions asked the same way and a paired comparison would measure the prompt, not the system. HINT: "
                "re-run one of them with the other's settings (mlabench run --num-fewshot/--set/--gen-kwargs/"
                "--apply-chat-template/--system-prompt as recorded in its results.json), or leave the task out",
                task, field, a.label, va, b.label, vb);
}

// Refuses runs whose prompts or protocol for `task` differ: results.json's per-task records, the run-level
// settings that change the prompt text, and (for generation tasks) the generation settings.
void check_same_protocol(const std::string& task, const Run& a, const Run& b) {
  const json& ra = a.results;
  const json& rb = b.results;
  auto per_task = [&](const char* section) {
    return std::pair{ra.contains(section) && ra[section].contains(task) ? ra[section][task] : json(),
                     rb.contains(section) && rb[section].contains(task) ? rb[section][task] : json()};
  };
  for (const auto& [section, field] : {std::pair{"n-shot", "num_fewshot"}, std::pair{"versions", "version"},
                                       std::pair{"protocols", "protocol"}}) {
    const auto [va, vb] = per_task(section);
    if (nlohmann::json(va) != nlohmann::json(vb)) refuse(task, field, a, b, show(va), show(vb));
  }
  const auto [ca, cb] = per_task("configs");
  if (const std::string k = first_difference(ca, cb); !k.empty()) {
    const bool whole = k == "(whole value)";
    const json va = whole ? ca : ca.contains(k) ? ca[k] : json(), vb = whole ? cb : cb.contains(k) ? cb[k] : json();
    refuse(task, "the task config's \"" + k + "\" (results.json configs." + task + ")", a, b, show(va), show(vb));
  }
  // Run-level settings that change the prompt text the model sees.
  const json config_a = ra.value("config", json()), config_b = rb.value("config", json());
  for (const char* key : {"apply_chat_template", "system_prompt"}) {
    const json va = config_a.is_object() && config_a.contains(key) ? config_a[key] : json();
    const json vb = config_b.is_object() && config_b.contains(key) ? config_b[key] : json();
    if (nlohmann::json(va) != nlohmann::json(vb)) refuse(task, std::string("config.") + key, a, b, show(va), show(vb));
  }
  if (ca.is_object() && ca.value("output_type", std::string()) == "generate_until") {
    const json ga = ra.value("gen_kwargs", json::object()), gb = rb.value("gen_kwargs", json::object());
    if (nlohmann::json(ga) != nlohmann::json(gb)) refuse(task, "gen_kwargs (--gen-kwargs)", a, b, ga.dump(), gb.dump());
  }
}

// The 60 characters of two strings from where they first differ.
std::pair<std::string, std::string> where_differ(const std::string& x, const std::string& y) {
  size_t at = 0;
  while (at < x.size() && at < y.size() && x[at] == y[at]) ++at;
  return {fmt::format("byte {}: \"{}\"", at, x.substr(at, 60)), fmt::format("\"{}\"", y.substr(at, 60))};
}

/// The items of one task in both runs, paired, and what could not be paired.
struct Pairing {
  std::vector<std::pair<const Item*, const Item*>> pairs;
  std::vector<ItemKey> keys;  ///< pairs[i]'s (subtask, doc_id)
  int64_t only_a = 0, only_b = 0;
};

Pairing pair_items(const std::string& task, const std::map<ItemKey, Item>& ia, const std::map<ItemKey, Item>& ib,
                   const Run& a, const Run& b) {
  Pairing p;
  for (const auto& [key, item] : ia) {
    auto it = ib.find(key);
    if (it == ib.end()) {
      ++p.only_a;
      continue;
    }
    for (const auto& [field, va, vb] : {std::tuple{"prompt (the samples' context)", &item.context, &it->second.context},
                                        std::tuple{"target", &item.target, &it->second.target}})
      if (*va != *vb) {
        const auto [sa, sb] = where_differ(*va, *vb);
        refuse(task, fmt::format("the {} of document {} of {}", field, key.second, key.first), a, b, sa, sb);
      }
    p.pairs.emplace_back(&item, &it->second);
    p.keys.push_back(key);
  }
  for (const auto& [key, _] : ib) p.only_b += ia.contains(key) ? 0 : 1;
  return p;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? std::nan("") : s / static_cast<double>(v.size());
}

json number(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

// The statistics of one metric over a set of paired items; the p-value adjustment and verdict come later.
json metric_row(const std::string& level, const std::string& name, const std::string& metric_key,
                const std::vector<std::pair<const Item*, const Item*>>& pairs, bool higher_is_better,
                const CompareOptions& o) {
  std::vector<double> a, b;
  for (const auto& [x, y] : pairs) {
    auto ix = x->metrics.find(metric_key), iy = y->metrics.find(metric_key);
    if (ix == x->metrics.end() || iy == y->metrics.end()) continue;
    a.push_back(ix->second);
    b.push_back(iy->second);
  }
  const size_t comma = metric_key.find(',');
  json row = {{"level", level}, {"name", name}, {"metric", metric_key.substr(0, comma)},
              {"filter", comma == std::string::npos ? "none" : metric_key.substr(comma + 1)},
              {"n", static_cast<int64_t>(a.size())}, {"higher_is_better", higher_is_better}};
  const bool binary = !a.empty() && metrics::is_binary(a) && metrics::is_binary(b);
  const bool proportion = std::all_of(a.begin(), a.end(), [](double v) { return v >= 0 && v <= 1; }) &&
                          std::all_of(b.begin(), b.end(), [](double v) { return v >= 0 && v <= 1; });
  row["binary"] = binary;
  row["proportion"] = proportion;
  row["mean_a"] = number(mean(a));
  row["mean_b"] = number(mean(b));
  row["difference"] = number(mean(b) - mean(a));
  row["agreement"] = number(metrics::agreement_rate(a, b));
  row["mcnemar_p"] = nullptr;
  if (binary) {
    const metrics::DiscordantCounts c = metrics::count_discordant(a, b);
    row["a_only"] = c.a_only;
    row["b_only"] = c.b_only;
    row["mcnemar_p"] = metrics::mcnemar_exact_p(c.a_only, c.b_only);
  }
  row["ci"] = nullptr;
  if (!a.empty()) {
    const metrics::Interval ci = metrics::paired_bootstrap_interval(a, b, o.resamples, o.seed, o.confidence);
    row["ci"] = {ci.low, ci.high};
  }
  row["mdd"] = number(a.size() >= 2 ? metrics::minimal_detectable_difference(a, b, binary, o.alpha, o.power)
                                    : std::nan(""));
  return row;
}

std::string points(const json& row, double v) {
  return row["proportion"].get<bool>() ? fmt::format("{:.1f} points", 100 * v) : fmt::format("{:.4g}", v);
}

// Binary metrics: significant when the BH-adjusted McNemar p is below alpha; other metrics: when the bootstrap
// interval excludes 0 (the adjustment needs p-values, which the percentile bootstrap does not give).
std::string verdict(const json& row, double alpha) {
  const int64_t n = row["n"];
  if (n == 0) return "no paired items";
  if (row["agreement"] == 1.0) return fmt::format("no difference (identical on all {} items)", n);
  bool significant;
  if (row["binary"].get<bool>()) {
    significant = row["p_bh"].get<double>() < alpha;
  } else {
    significant = row["ci"].is_array() && (row["ci"][0].get<double>() > 0 || row["ci"][1].get<double>() < 0);
  }
  if (significant) {
    const bool b_higher = row["difference"].get<double>() > 0;
    return b_higher == row["higher_is_better"].get<bool>() ? "B better" : "A better";
  }
  if (row["mdd"].is_null()) return "no detectable difference (too few items)";
  return fmt::format("no detectable difference (MDD {})", points(row, row["mdd"].get<double>()));
}

// Benjamini-Hochberg over each family of rows: the task rows of the whole comparison are one family ("across
// tasks"); the group rows and the subtask rows of one task and metric are a family each.
void adjust_and_judge(json& tasks, double alpha) {
  std::map<std::string, std::vector<json*>> families;
  for (json& t : tasks)
    for (json& row : t["rows"]) {
      if (row["mcnemar_p"].is_null()) {
        row["p_bh"] = nullptr;
        continue;
      }
      const std::string level = row["level"];
      const std::string family = level == "task" ? "task|" + row["metric"].get<std::string>() + "," +
                                                       row["filter"].get<std::string>()
                                                 : fmt::format("{}|{}|{},{}", t["task"].get<std::string>(), level,
                                                               row["metric"].get<std::string>(),
                                                               row["filter"].get<std::string>());
      families[family].push_back(&row);
    }
  for (auto& [_, rows] : families) {
    std::vector<double> p;
    for (const json* r : rows) p.push_back((*r)["mcnemar_p"].get<double>());
    const std::vector<double> adjusted = metrics::benjamini_hochberg(p);
    for (size_t i = 0; i < rows.size(); ++i) (*rows[i])["p_bh"] = adjusted[i];
  }
  for (json& t : tasks)
    for (json& row : t["rows"]) row["verdict"] = verdict(row, alpha);
}

// Rows of one task: the task, its groups (results.json group_subtasks), its subtasks, per metric.
json task_rows(const std::string& task, const Run& a, const Pairing& p, const CompareOptions& o) {
  std::vector<std::string> metric_keys;
  for (const auto& [x, y] : p.pairs)
    for (const auto& [k, _] : x->metrics)
      if (y->metrics.contains(k) && std::find(metric_keys.begin(), metric_keys.end(), k) == metric_keys.end())
        metric_keys.push_back(k);
  const json& hib = a.results["higher_is_better"].contains(task) ? a.results["higher_is_better"][task] : json();
  auto higher = [&](const std::string& key) {
    const std::string name = key.substr(0, key.find(','));
    return !(hib.is_object() && hib.contains(name) && hib[name].is_boolean()) || hib[name].get<bool>();
  };
  // The sets of paired items each row covers, in report order.
  std::vector<std::tuple<std::string, std::string, std::vector<std::pair<const Item*, const Item*>>>> sets;
  sets.emplace_back("task", task, p.pairs);
  std::set<std::string> subtasks;
  for (const ItemKey& k : p.keys) subtasks.insert(k.first);
  const json gs = a.results.value("group_subtasks", json::object());
  if (gs.contains(task))
    for (const json& member : gs[task]) {
      const std::string group = member.get<std::string>();
      if (!gs.contains(group)) continue;  // a plain subtask of the task, listed below
      std::set<std::string> in;
      for (const json& s : gs[group]) in.insert(s.get<std::string>());
      std::vector<std::pair<const Item*, const Item*>> members;
      for (size_t i = 0; i < p.pairs.size(); ++i)
        if (in.contains(p.keys[i].first)) members.push_back(p.pairs[i]);
      sets.emplace_back("group", group, std::move(members));
    }
  if (!(subtasks.size() == 1 && *subtasks.begin() == task))
    for (const std::string& s : subtasks) {
      std::vector<std::pair<const Item*, const Item*>> members;
      for (size_t i = 0; i < p.pairs.size(); ++i)
        if (p.keys[i].first == s) members.push_back(p.pairs[i]);
      sets.emplace_back("subtask", s, std::move(members));
    }
  json rows = json::array();
  for (const auto& [level, name, members] : sets)
    for (const std::string& key : metric_keys) rows.push_back(metric_row(level, name, key, members, higher(key), o));
  return rows;
}

// How far apart the runs' log-probabilities of the same choices are (loglikelihood tasks: what changes first when
// only the arithmetic changes, as BF16 against FP8 weights): over the paired items with as many finite values in
// both, the largest and the mean |log p_B - log p_A|, and how often both put the highest log p on the same choice.
// null where no item carries log-probabilities.
json logprob_differences(const Pairing& p) {
  int64_t items = 0, values = 0, same_argmax = 0;
  double max_abs = 0, sum_abs = 0;
  for (const auto& [x, y] : p.pairs) {
    const std::vector<double>& la = x->logprobs;
    const std::vector<double>& lb = y->logprobs;
    if (la.empty() || la.size() != lb.size()) continue;
    if (!std::all_of(la.begin(), la.end(), [](double v) { return std::isfinite(v); }) ||
        !std::all_of(lb.begin(), lb.end(), [](double v) { return std::isfinite(v); }))
      continue;
    ++items;
    const auto best_a = std::max_element(la.begin(), la.end()) - la.begin();
    same_argmax += best_a == std::max_element(lb.begin(), lb.end()) - lb.begin() ? 1 : 0;
    for (size_t i = 0; i < la.size(); ++i) {
      const double d = std::fabs(lb[i] - la[i]);
      max_abs = std::max(max_abs, d);
      sum_abs += d;
      ++values;
    }
  }
  if (items == 0) return nullptr;
  return {{"items", items}, {"values", values}, {"argmax_agreement", static_cast<double>(same_argmax) / items},
          {"max_abs_difference", max_abs}, {"mean_abs_difference", sum_abs / static_cast<double>(values)}};
}

json compare_pair(const Run& a, const Run& b, const CompareOptions& o) {
  std::vector<std::string> common, only_a, only_b;
  for (const auto& [task, _] : a.results["versions"].items())
    (b.results["versions"].contains(task) ? common : only_a).push_back(task);
  for (const auto& [task, _] : b.results["versions"].items())
    if (!a.results["versions"].contains(task)) only_b.push_back(task);
  MLABENCH_CHECK(!common.empty(), "compare: runs {} ({}) and {} ({}) share no task. HINT: compare runs of the same "
                 "--tasks", a.label, fmt::join(only_a, ", "), b.label, fmt::join(only_b, ", "));
  json tasks = json::array();
  for (const std::string& task : common) {
    check_same_protocol(task, a, b);
    const std::map<ItemKey, Item> ia = read_items(a, task), ib = read_items(b, task);
    const Pairing p = pair_items(task, ia, ib, a, b);
    int64_t same_prediction = 0, with_prediction = 0;
    for (const auto& [x, y] : p.pairs)
      if (!x->prediction.empty() && !y->prediction.empty()) {
        ++with_prediction;
        same_prediction += x->prediction == y->prediction ? 1 : 0;
      }
    json t = {{"task", task}, {"paired", static_cast<int64_t>(p.pairs.size())}, {"only_in_a", p.only_a},
              {"only_in_b", p.only_b},
              {"prediction_agreement", with_prediction > 0 ? json(static_cast<double>(same_prediction) /
                                                                  static_cast<double>(with_prediction))
                                                           : json(nullptr)}};
    t["logprobs"] = logprob_differences(p);
    t["rows"] = task_rows(task, a, p, o);
    tasks.push_back(std::move(t));
  }
  adjust_and_judge(tasks, o.alpha);
  return {{"a", a.label}, {"b", b.label}, {"tasks_only_in_a", only_a}, {"tasks_only_in_b", only_b},
          {"tasks", tasks}};
}

}  // namespace

json compare_runs(const std::vector<std::string>& args, const CompareOptions& o) {
  MLABENCH_CHECK(args.size() >= 2, "compare: {} run given. HINT: mlabench compare RUN_A RUN_B [RUN_C ...]: each "
                 "later run is compared with the first", args.size());
  MLABENCH_CHECK(o.resamples >= 1 && o.resamples <= 1000000, "compare: --resamples {} is outside 1..1000000. HINT: "
                 "10000 (the default) gives percentile intervals stable to about 0.1 points", o.resamples);
  MLABENCH_CHECK(o.alpha > 0 && o.alpha < 1, "compare: --alpha {} is not in (0, 1). HINT: 0.05", o.alpha);
  std::vector<Run> runs;
  for (const std::string& arg : args) runs.push_back(load_run(arg));
  json doc = {{"schema_version", 1}, {"tool", "mlabench compare"}, {"generator", o.generator},
              {"options", {{"resamples", o.resamples}, {"seed", o.seed}, {"alpha", o.alpha}, {"power", o.power},
                           {"confidence", o.confidence}}}};
  json runs_json = json::array();
  for (const Run& r : runs)
    runs_json.push_back({{"label", r.label}, {"path", r.dir.string()}, {"config", r.results.value("config", json())},
                         {"backend", r.results.value("backend", json())}});
  doc["runs"] = runs_json;
  json pairs = json::array();
  for (size_t i = 1; i < runs.size(); ++i) pairs.push_back(compare_pair(runs[0], runs[i], o));
  doc["comparisons"] = pairs;
  return doc;
}

namespace {

std::string fmt_value(const json& v, const char* spec = "{:.4f}") {
  return v.is_number() ? fmt::format(fmt::runtime(spec), v.get<double>()) : "n/a";
}

std::string fmt_p(const json& v) {
  if (!v.is_number()) return "-";
  const double p = v.get<double>();
  return p >= 1e-4 ? fmt::format("{:.4f}", p) : fmt::format("{:.1e}", p);
}

}  // namespace

std::string format_compare_table(const json& doc, bool with_subtasks) {
  std::string out;
  for (const json& c : doc["comparisons"]) {
    out += fmt::format("\nA = {}, B = {} (differences are B - A; {} bootstrap resamples, seed {})\n",
                       c["a"].get<std::string>(), c["b"].get<std::string>(),
                       doc["options"]["resamples"].get<int64_t>(), doc["options"]["seed"].get<uint64_t>());
    out += fmt::format("| {:<40} | {:<10} | {:>6} | {:>7} | {:>7} | {:>8} | {:<19} | {:>6} | {:>9} | {:>9} | {:>7} | "
                       "{}\n", "Task", "Metric", "n", "A", "B", "B-A", "95% CI", "Agree", "McNemar p", "BH p", "MDD",
                       "Verdict");
    for (const json& t : c["tasks"]) {
      for (const json& row : t["rows"]) {
        const std::string level = row["level"];
        if (level == "subtask" && !with_subtasks) continue;
        const std::string name = (level == "task" ? "" : " - ") + row["name"].get<std::string>();
        const std::string ci = row["ci"].is_array() ? fmt::format("[{:+.4f}, {:+.4f}]", row["ci"][0].get<double>(),
                                                                  row["ci"][1].get<double>())
                                                    : "n/a";
        out += fmt::format("| {:<40} | {:<10} | {:>6} | {:>7} | {:>7} | {:>8} | {:<19} | {:>6} | {:>9} | {:>9} | "
                           "{:>7} | {}\n", name, row["metric"].get<std::string>(), row["n"].get<int64_t>(),
                           fmt_value(row["mean_a"]), fmt_value(row["mean_b"]), fmt_value(row["difference"], "{:+.4f}"),
                           ci, fmt_value(row["agreement"], "{:.3f}"), fmt_p(row["mcnemar_p"]), fmt_p(row["p_bh"]),
                           fmt_value(row["mdd"]), row["verdict"].get<std::string>());
      }
      if (const json& lp = t["logprobs"]; lp.is_object())
        out += fmt::format("  logprobs: {}: {} items, {} choices: argmax agreement {:.3f}; |log p B - log p A| max "
                           "{:.3g}, mean {:.3g}\n", t["task"].get<std::string>(), lp["items"].get<int64_t>(),
                           lp["values"].get<int64_t>(), lp["argmax_agreement"].get<double>(),
                           lp["max_abs_difference"].get<double>(), lp["mean_abs_difference"].get<double>());
      if (t["only_in_a"].get<int64_t>() > 0 || t["only_in_b"].get<int64_t>() > 0)
        out += fmt::format("  note: {}: {} documents only in A and {} only in B are left out; the rows pair the {} "
                           "documents both runs scored\n", t["task"].get<std::string>(), t["only_in_a"].get<int64_t>(),
                           t["only_in_b"].get<int64_t>(), t["paired"].get<int64_t>());
    }
    for (const auto& [side, who] : {std::pair{"tasks_only_in_a", "A"}, std::pair{"tasks_only_in_b", "B"}})
      if (!c[side].empty())
        out += fmt::format("  note: tasks only in {}: {} (not compared)\n", who,
                           fmt::join(c[side].get<std::vector<std::string>>(), ", "));
  }
  return out;
}

}  // namespace mlabench::harness
