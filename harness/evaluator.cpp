#include "harness/evaluator.h"

#include <fcntl.h>
#include <sys/file.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>

#include "engine/core/check.h"
#include "engine/core/json_limits.h"
#include "harness/shards.h"
#include "metrics/metrics.h"
#include "metrics/registry.h"
#include "tasks/code/scorer.h"
#include "tasks/niah/niah.h"

namespace mlabench::harness {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

GenerationOverrides parse_gen_kwargs(const std::string& text) {
  GenerationOverrides g;
  if (text.empty()) return g;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t eq = item.find('=');
    MLABENCH_CHECK(eq != std::string::npos && eq > 0, "--gen-kwargs: \"{}\" is not key=value. HINT: e.g. "
                   "temperature=0.7,top_p=0.95,max_gen_toks=512,seed=1,until=Q:|\\n\\n",
                   item);
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    try {
      size_t used = 0;
      if (key == "temperature") {
        g.temperature = std::stod(value, &used);
      } else if (key == "top_p") {
        g.top_p = std::stod(value, &used);
      } else if (key == "max_gen_toks") {
        g.max_gen_toks = std::stoll(value, &used);
      } else if (key == "seed") {
        MLABENCH_CHECK(value.find('-') == std::string::npos, "--gen-kwargs: seed={} is negative; accepted range 0 .. "
                       "2^63 - 1", value);  // stoull would wrap -1 to 2^64 - 1
        g.seed = std::stoull(value, &used);
      } else if (key == "repeats") {
        g.repeats = std::stoll(value, &used);
      } else if (key == "until") {
        std::vector<std::string> until;
        std::string cur;
        for (size_t i = 0; i < value.size(); ++i) {
          if (value[i] == '|') {
            until.push_back(cur);
            cur.clear();
          } else if (value[i] == '\\' && i + 1 < value.size() && (value[i + 1] == 'n' || value[i + 1] == 't')) {
            cur += value[++i] == 'n' ? '\n' : '\t';
          } else {
            cur += value[i];
          }
        }
        until.push_back(cur);
        g.until = until;
        used = value.size();
      } else {
        MLABENCH_FAIL("--gen-kwargs: unknown key \"{}\". HINT: temperature, top_p, max_gen_toks, seed, repeats or "
                      "until", key);
      }
      MLABENCH_CHECK(used == value.size(), "--gen-kwargs: {}=\"{}\" is not a number", key, value);
    } catch (const std::logic_error&) {
      MLABENCH_FAIL("--gen-kwargs: {}=\"{}\" is not a number", key, value);
    }
  }
  // Ranges: a value outside one samples nothing sensible (temperature inf: uniform noise) or exhausts memory before
  // the first document (repeats 10^12 requests per document).
  MLABENCH_CHECK(!g.temperature || (std::isfinite(*g.temperature) && *g.temperature >= 0 && *g.temperature <= 100),
                 "--gen-kwargs: temperature={}; accepted range 0 .. 100 (0: greedy)", g.temperature.value_or(0));
  MLABENCH_CHECK(!g.top_p || (*g.top_p > 0 && *g.top_p <= 1), "--gen-kwargs: top_p={}; accepted range: greater "
                 "than 0, at most 1", g.top_p.value_or(0));
  MLABENCH_CHECK(!g.max_gen_toks || (*g.max_gen_toks > 0 && *g.max_gen_toks <= (int64_t{1} << 20)),
                 "--gen-kwargs: max_gen_toks={}; accepted range 1 .. 1048576", g.max_gen_toks.value_or(0));
  MLABENCH_CHECK(!g.seed || *g.seed <= static_cast<uint64_t>(INT64_MAX), "--gen-kwargs: seed={}; accepted range "
                 "0 .. 2^63 - 1", g.seed.value_or(0));
  MLABENCH_CHECK(!g.repeats || (*g.repeats > 0 && *g.repeats <= 10000), "--gen-kwargs: repeats={}; accepted range "
                 "1 .. 10000 (pass@k needs k <= repeats)", g.repeats.value_or(0));
  return g;
}

void write_file_atomically(const fs::path& path, const std::string& text) {
  // Temp, fsync, rename, fsync the folder: a kill or a full disk leaves the old file or the new one, never a cut one.
  const fs::path tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  MLABENCH_CHECK(fd >= 0, "cannot create {} ({}). HINT: check that the output folder exists and is writable",
                 tmp.string(), std::strerror(errno));
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  bool ok = done == text.size();
  int write_errno = errno;
  if (ok && ::fsync(fd) != 0) {
    ok = false;
    write_errno = errno;
  }
  ::close(fd);
  if (!ok) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    MLABENCH_FAIL("writing {} failed after {} of {} bytes ({}); {} is as it was. HINT: free disk space, then run "
                  "again (with --resume for a run folder)",
                  tmp.string(), done, text.size(), std::strerror(write_errno), path.string());
  }
  fs::rename(tmp, path);
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);  // the rename itself made durable; a folder that cannot be opened only loses that
    ::close(dfd);
  }
}

RunFolderLock::RunFolderLock(const fs::path& dir) {
  const fs::path file = dir / ".lock";
  fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  MLABENCH_CHECK(fd_ >= 0, "cannot open {} ({}). HINT: the output folder must be writable", file.string(),
                 std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    const std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "unknown";
    ::close(fd_);
    fd_ = -1;
    MLABENCH_FAIL("another mlabench run (PID {}) is writing to {}. HINT: wait for it to finish, or choose another "
                  "--output folder; two writers would grade documents twice and duplicate sample lines",
                  holder, dir.string());
  }
  const std::string pid = std::to_string(::getpid());
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
    std::fprintf(stderr, "warning: could not record this run's PID in %s\n", file.c_str());
}

RunFolderLock::~RunFolderLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the descriptor releases the lock (also when the process dies)
}

namespace {

std::string metric_key(const std::string& metric, const std::string& filter) { return metric + "," + filter; }

std::string slug(const std::string& s) {
  std::string out;
  for (char c : s) out += c == ' ' || c == '-' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A samples file: read back on --resume (a line cut by a kill is dropped and truncated away), appended to
// after every batch and made durable with fsync before the next batch starts.
class SamplesFile {
 public:
  SamplesFile(fs::path path, bool resume) : path_(std::move(path)) {
    if (resume && fs::exists(path_)) load();
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    MLABENCH_CHECK(fd_ >= 0, "cannot open {} for writing. HINT: check that the output folder is writable",
                   path_.string());
  }
  ~SamplesFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  SamplesFile(const SamplesFile&) = delete;
  SamplesFile& operator=(const SamplesFile&) = delete;

  const std::vector<json>& loaded() const { return loaded_; }

  void append(const std::vector<json>& lines) {
    std::string buf;
    for (const json& j : lines) {
      buf += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      buf += '\n';
    }
    size_t done = 0;
    while (done < buf.size()) {
      const ssize_t n = ::write(fd_, buf.data() + done, buf.size() - done);
      MLABENCH_CHECK(n > 0, "writing {} failed. HINT: the disk may be full", path_.string());
      done += static_cast<size_t>(n);
    }
    MLABENCH_CHECK(::fsync(fd_) == 0, "fsync of {} failed. HINT: the disk may be full", path_.string());
  }

 private:
  void load() {
    std::ifstream in(path_, std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t end = all.rfind('\n');
    const size_t keep = end == std::string::npos ? 0 : end + 1;
    if (keep < all.size()) fs::resize_file(path_, keep);  // the line a kill cut short
    size_t at = 0;
    int64_t line = 0;
    while (at < keep) {
      const size_t nl = all.find('\n', at);
      ++line;
      try {
        loaded_.push_back(parse_json_bounded(std::string_view(all).substr(at, nl - at), path_.string()));
      } catch (const nlohmann::json::exception& e) {
        MLABENCH_FAIL("{}:{}: not a samples line ({}). HINT: the file was edited or belongs to another tool; move "
                      "it away to recompute those documents",
                      path_.string(), line, e.what());
      }
      at = nl + 1;
    }
  }

  fs::path path_;
  int fd_ = -1;
  std::vector<json> loaded_;
};

class Progress {
 public:
  Progress(bool enabled, int64_t total) : enabled_(enabled), total_(total), tty_(::isatty(2) != 0) {}
  void advance(const std::string& task, int64_t docs) {
    done_ += docs;
    if (!enabled_) return;
    const double t = seconds();
    if (!tty_ && t - last_ < 10.0 && done_ < total_) return;
    last_ = t;
    const double rate = t > 0 ? static_cast<double>(done_ - start_done_) / t : 0.0;
    const double eta = rate > 0 ? static_cast<double>(total_ - done_) / rate : 0.0;
    const double share = total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
    if (tty_) {
      const int width = 30, filled = static_cast<int>(share * width);
      std::fprintf(stderr, "\r%-24s [%s%s] %lld/%lld docs %5.1f%% %7.1f docs/s ETA %s   ", task.c_str(),
                   std::string(static_cast<size_t>(filled), '#').c_str(),
                   std::string(static_cast<size_t>(width - filled), '.').c_str(), static_cast<long long>(done_),
                   static_cast<long long>(total_), 100.0 * share, rate, duration(eta).c_str());
      if (done_ >= total_) std::fprintf(stderr, "\n");
    } else {
      std::fprintf(stderr, "progress: %s %lld/%lld docs (%.1f%%), %.1f docs/s, ETA %s\n", task.c_str(),
                   static_cast<long long>(done_), static_cast<long long>(total_), 100.0 * share, rate,
                   duration(eta).c_str());
    }
    std::fflush(stderr);
  }
  void skip(int64_t docs) {
    done_ += docs;
    start_done_ += docs;
  }

 private:
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }
  static std::string duration(double s) {
    const auto x = static_cast<int64_t>(s);
    return x >= 3600 ? fmt::format("{}h{:02}m", x / 3600, x / 60 % 60) : fmt::format("{}m{:02}s", x / 60, x % 60);
  }
  bool enabled_;
  int64_t total_, done_ = 0, start_done_ = 0;
  bool tty_;
  double last_ = -1e9;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

tasks::GenerationKwargs with_overrides(tasks::GenerationKwargs g, const GenerationOverrides& o) {
  if (o.temperature) g.temperature = *o.temperature;
  if (o.top_p) g.top_p = *o.top_p;
  if (o.max_gen_toks) g.max_gen_toks = *o.max_gen_toks;
  if (o.seed) g.seed = *o.seed;
  if (o.repeats) g.repeats = *o.repeats;
  if (o.until) g.until = *o.until;
  return g;
}

json gen_overrides_json(const GenerationOverrides& o) {
  json j = json::object();
  if (o.temperature) j["temperature"] = *o.temperature;
  if (o.top_p) j["top_p"] = *o.top_p;
  if (o.max_gen_toks) j["max_gen_toks"] = *o.max_gen_toks;
  if (o.seed) j["seed"] = *o.seed;
  if (o.repeats) j["repeats"] = *o.repeats;
  if (o.until) j["until"] = *o.until;
  return j;
}

// Every metric of `task` on one document through the registry (metrics/registry.h): values keyed "name,filter".
// `implied` is the metric of an output type that names none in its spec (loglikelihood_rolling).
void score_item(const tasks::Task& task, const metrics::Item& item, const std::string& filter, json& out,
                const char* implied = nullptr) {
  const metrics::ItemInput input = metrics::item_input_of(task.output_type, !task.scorer.empty());
  metrics::ItemScores scores;
  auto one = [&](const metrics::MetricDef& def, const tasks::MetricSpec& spec) {
    MLABENCH_CHECK(def.input == input, "task {}: metric \"{}\" does not apply to this task's output ({}). HINT: "
                   "multiple choice takes acc or acc_norm; generate_until takes exact_match, needle_recall or "
                   "needle_score, and pass_at_k with a code scorer (metrics/registry.cpp)",
                   task.name, def.name, task.output_type == tasks::OutputType::MULTIPLE_CHOICE ? "multiple choice"
                                                                                             : "generated answers");
    scores.clear();
    def.score(item, spec, scores);
    for (const auto& [name, value] : scores) out[metric_key(name, filter)] = value;
  };
  if (implied != nullptr) one(*metrics::find_metric(implied), tasks::MetricSpec{.name = implied});
  for (const tasks::MetricSpec& spec : task.metrics) one(metrics::metric(spec.name, task.name), spec);
}

// Scores one batch of documents of one subtask and returns their samples lines.
std::vector<json> score_documents(Backend& backend, const tasks::Task& task, const tasks::Subtask& sub,
                                  std::span<const tasks::TaskDoc* const> docs, const GenerationOverrides& overrides,
                                  sandbox::Pool* pool, const fs::path& run_dir) {
  std::vector<json> lines;
  auto base = [&](const tasks::TaskDoc& d) {
    return json{{"subtask", sub.name}, {"doc_id", d.doc_id}, {"doc", d.doc}, {"context", d.context}};
  };
  switch (task.output_type) {
    case tasks::OutputType::MULTIPLE_CHOICE: {
      std::vector<ChoiceRequest> rq;
      for (const tasks::TaskDoc* d : docs) rq.push_back({sub.name, d->doc_id, d->context, d->choices});
      const std::vector<ChoiceResult> res = backend.loglikelihood(rq);
      for (size_t i = 0; i < docs.size(); ++i) {
        const tasks::TaskDoc& d = *docs[i];
        json m = json::object();
        const metrics::Item item{.logprobs = res[i].logprobs, .choices = d.choices, .gold = d.gold};
        score_item(task, item, "none", m);
        json line = base(d);
        line["choices"] = d.choices;
        line["gold"] = d.gold;
        line["target"] = d.choices.at(static_cast<size_t>(d.gold));
        line["logprobs"] = res[i].logprobs;
        line["is_greedy"] = res[i].is_greedy;
        line["pred"] = metrics::argmax_first(res[i].logprobs);
        if (res[i].context_tokens > 0) line["context_tokens"] = res[i].context_tokens;
        if (res[i].truncated_tokens > 0) line["truncated_tokens"] = res[i].truncated_tokens;
        line["metrics"] = m;
        lines.push_back(std::move(line));
      }
      break;
    }
    case tasks::OutputType::GENERATE_UNTIL: {
      const tasks::GenerationKwargs g = with_overrides(task.generation, overrides);
      const auto repeats = static_cast<size_t>(g.repeats);
      std::vector<GenerationRequest> rq;
      for (const tasks::TaskDoc* d : docs)
        for (size_t k = 0; k < repeats; ++k)
          rq.push_back({.subtask = sub.name, .doc_id = d->doc_id, .context = d->context, .gen = g,
                        .sample = static_cast<int64_t>(k), .system_prompt = d->system_prompt});
      const std::vector<GenerationResult> res = backend.generate(rq);
      // Code tasks: every completion of the batch graded at once, so the sandbox pool runs them in parallel.
      std::vector<tasks::CodeVerdict> verdicts;
      if (!task.scorer.empty()) {
        std::vector<tasks::CodeSample> code;
        for (size_t i = 0; i < rq.size(); ++i)
          code.push_back({.doc = docs[i / repeats], .sample = rq[i].sample,
                          .completion = metrics::apply_filter(task.filters.front(), res[i].text)});
        MLABENCH_CHECK(pool != nullptr, "task {} runs code but the evaluator has no sandbox pool", task.name);
        verdicts = tasks::code_scorer_hook(task.scorer, task.name)(
            code, {.options = task.scorer_options, .pool = pool, .spec_file = task.name, .cache_dir = run_dir});
        MLABENCH_ICHECK(verdicts.size() == code.size(), "scorer {} returned {} verdicts for {} completions",
                        task.scorer, verdicts.size(), code.size());
      }
      for (size_t i = 0; i < docs.size(); ++i) {
        const tasks::TaskDoc& d = *docs[i];
        const std::span<const GenerationResult> mine(res.data() + i * repeats, repeats);
        json filtered = json::object(), m = json::object();
        for (const tasks::FilterPipeline& f : task.filters) {
          const std::string answer = metrics::apply_filter(f, mine[0].text);
          filtered[f.name] = answer;
          metrics::Item item{.answer = answer, .target = d.target};
          if (!task.scorer.empty()) {
            item.samples = g.repeats;
            for (size_t k = 0; k < repeats; ++k) item.passed += verdicts[i * repeats + k].passed ? 1 : 0;
            if (verdicts[i * repeats].check_passed) {
              item.check_passed = 0;
              for (size_t k = 0; k < repeats; ++k) {
                *item.check_passed += verdicts[i * repeats + k].check_passed.value_or(false) ? 1 : 0;
                item.suspected_tampering += verdicts[i * repeats + k].suspected_tampering ? 1 : 0;
              }
            }
          }
          score_item(task, item, f.name, m);
        }
        json line = base(d);
        line["target"] = d.target;
        if (repeats == 1 && task.scorer.empty()) {
          line["response"] = mine[0].text;
          line["filtered"] = filtered;
        } else {
          json texts = json::array();
          for (const GenerationResult& r : mine) texts.push_back(r.text);
          line["responses"] = texts;
        }
        if (!task.scorer.empty()) {
          json v = json::array();
          for (size_t k = 0; k < repeats; ++k) {
            const tasks::CodeVerdict& verdict = verdicts[i * repeats + k];
            json one = {{"passed", verdict.passed}, {"result", verdict.result}};
            if (verdict.check_passed) {
              one["check_passed"] = *verdict.check_passed;
              one["check_result"] = verdict.check_result;
              one["suspected_tampering"] = verdict.suspected_tampering;
            }
            if (!verdict.details.empty()) one["details"] = verdict.details;
            v.push_back(std::move(one));
          }
          line["verdicts"] = std::move(v);
        }
        int64_t context_tokens = 0, generated = 0, truncated = 0;
        for (const GenerationResult& r : mine) {
          context_tokens = std::max(context_tokens, r.context_tokens);
          generated += r.generated_tokens;
          truncated = std::max(truncated, r.truncated_tokens);
        }
        if (context_tokens > 0) line["context_tokens"] = context_tokens;
        if (generated > 0) line["generated_tokens"] = generated;
        if (truncated > 0) line["truncated_tokens"] = truncated;
        line["metrics"] = m;
        lines.push_back(std::move(line));
      }
      break;
    }
    case tasks::OutputType::LOGLIKELIHOOD_ROLLING: {
      std::vector<RollingRequest> rq;
      for (const tasks::TaskDoc* d : docs) rq.push_back({sub.name, d->doc_id, d->context});
      const std::vector<double> res = backend.loglikelihood_rolling(rq);
      for (size_t i = 0; i < docs.size(); ++i) {
        json line = base(*docs[i]);
        line["loglikelihood"] = res[i];
        json m = json::object();
        score_item(task, {.loglikelihood = res[i]}, "none", m, "loglikelihood");
        line["metrics"] = m;
        lines.push_back(std::move(line));
      }
      break;
    }
  }
  return lines;
}

json estimate_json(const std::map<std::string, metrics::Estimate>& est, const std::string& alias) {
  json j = {{"alias", alias}};
  for (const auto& [key, e] : est) {
    j[key] = e.value;
    j[stderr_key(key)] = e.stderr_;
  }
  return j;
}

// Per-subtask, per-category and per-task aggregation of one task's samples lines.
void aggregate(const tasks::Task& task, const std::map<std::string, std::vector<const json*>>& by_subtask,
               json& results, json& groups, json& group_subtasks, json& n_samples) {
  std::map<std::string, std::map<std::string, metrics::Estimate>> sub_est;  // subtask -> metric -> estimate
  std::vector<std::string> keys;
  for (const tasks::Subtask& sub : task.subtasks) {
    std::map<std::string, std::vector<double>> values;
    auto it = by_subtask.find(sub.name);
    const std::vector<const json*> empty;
    const std::vector<const json*>& lines = it == by_subtask.end() ? empty : it->second;
    for (const json* line : lines)
      for (const auto& [k, v] : (*line)["metrics"].items()) values[k].push_back(v.get<double>());
    for (auto& [k, v] : values) {
      sub_est[sub.name][k] = metrics::mean_with_stderr(v);
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
    }
    n_samples[sub.name] = {{"original", sub.n_docs_total}, {"effective", static_cast<int64_t>(lines.size())}};
  }
  const bool leaf = task.subtasks.size() == 1 && task.subtasks[0].name == task.name;
  for (const tasks::Subtask& sub : task.subtasks) results[sub.name] = estimate_json(sub_est[sub.name], sub.display);
  if (leaf) return;

  auto combine = [&](const std::vector<const tasks::Subtask*>& members, bool macro) {
    std::map<std::string, metrics::Estimate> out;
    for (const std::string& k : keys) {
      std::vector<metrics::Estimate> parts;
      for (const tasks::Subtask* s : members)
        if (sub_est[s->name].contains(k)) parts.push_back(sub_est[s->name][k]);
      out[k] = metrics::aggregate_micro(parts);
      if (macro) {
        const size_t comma = k.find(',');
        out[k.substr(0, comma) + "_macro" + k.substr(comma)] = metrics::aggregate_macro(parts);
      }
    }
    return out;
  };
  std::vector<const tasks::Subtask*> all;
  std::map<std::string, std::vector<const tasks::Subtask*>> by_category;
  for (const tasks::Subtask& sub : task.subtasks) {
    all.push_back(&sub);
    if (!sub.category.empty()) by_category[sub.category].push_back(&sub);
  }
  json members = json::array();
  for (const auto& [category, subs] : by_category) {
    const std::string name = task.name + "_" + slug(category);
    groups[name] = estimate_json(combine(subs, task.group_macro), category);
    json names = json::array();
    for (const tasks::Subtask* s : subs) names.push_back(s->name);
    group_subtasks[name] = names;
    members.push_back(name);
  }
  if (by_category.empty())
    for (const tasks::Subtask* s : all) members.push_back(s->name);
  groups[task.name] = estimate_json(combine(all, task.group_macro), task.name);
  group_subtasks[task.name] = members;
}

// Per-value means of every metric over the documents whose `doc` field has that value (LiveCodeBench by
// difficulty and platform, NIAH by context length and depth): {field: {value: {metric: mean, metric_stderr}}}.
json breakdown(const tasks::Task& task, const std::map<std::string, std::vector<const json*>>& by_subtask) {
  json out = json::object();
  for (const std::string& field : task.breakdowns) {
    std::map<std::string, std::map<std::string, std::vector<double>>> values;  // value -> metric -> per doc
    std::vector<std::string> order;  // values in first-seen document order
    for (const auto& [_, lines] : by_subtask)
      for (const json* line : lines) {
        const json& doc = (*line)["doc"];
        MLABENCH_CHECK(doc.contains(field), "task {}: breakdown field '{}' is not in document {}'s fields. HINT: "
                       "fix the spec's \"breakdowns\"", task.name, field, (*line)["doc_id"].dump());
        const std::string value = doc[field].is_string() ? doc[field].get<std::string>() : doc[field].dump();
        if (!values.contains(value)) order.push_back(value);
        for (const auto& [k, v] : (*line)["metrics"].items()) values[value][k].push_back(v.get<double>());
      }
    json per_value = json::object();
    for (const std::string& value : order) {
      std::map<std::string, metrics::Estimate> est;
      int64_t n = 0;
      for (const auto& [k, v] : values[value]) {
        est[k] = metrics::mean_with_stderr(v);
        n = static_cast<int64_t>(v.size());
      }
      json j = estimate_json(est, value);
      j["n"] = n;
      per_value[value] = std::move(j);
    }
    out[field] = std::move(per_value);
  }
  return out;
}

// Counts over the verdicts of a scorer that grades twice (HumanEval): how often each verdict passed and where they
// disagree, with the first samples flagged suspected_tampering named; null for any other task.
json code_grading(const std::map<std::string, std::vector<const json*>>& by_subtask) {
  constexpr size_t kNamed = 100;
  int64_t samples = 0, passed = 0, check_passed = 0, tampering = 0, check_only_failed = 0;
  json flagged = json::array();
  for (const auto& [subtask, lines] : by_subtask)
    for (const json* line : lines) {
      if (!line->contains("verdicts")) continue;
      int64_t k = 0;
      for (const json& v : (*line)["verdicts"]) {
        if (!v.contains("check_passed")) return json();
        ++samples;
        const bool outputs = v.value("passed", false), check = v.value("check_passed", false);
        passed += outputs ? 1 : 0;
        check_passed += check ? 1 : 0;
        check_only_failed += outputs && !check ? 1 : 0;
        if (v.value("suspected_tampering", false)) {
          ++tampering;
          if (flagged.size() < kNamed)
            flagged.push_back({{"subtask", subtask}, {"doc_id", (*line)["doc_id"]}, {"sample", k}});
        }
        ++k;
      }
    }
  if (samples == 0) return json();
  return {{"samples", samples}, {"passed", passed}, {"check_passed", check_passed},
          {"suspected_tampering", tampering}, {"outputs_passed_check_failed", check_only_failed},
          {"suspected_tampering_samples", flagged}};
}

json identity_of(const EvalOptions& o, const std::vector<std::string>& names, const Backend& backend) {
  json overrides = json::object();
  for (const auto& [task, patch] : o.task_overrides) overrides[task] = patch;
  json id = {{"tasks", names},
             {"task_overrides", overrides},
             {"limit", o.limit ? json(*o.limit) : json(nullptr)},
             {"num_fewshot", o.num_fewshot ? json(*o.num_fewshot) : json(nullptr)},
             {"gen_kwargs", gen_overrides_json(o.gen)},
             {"backend", backend.describe()},
             {"config", o.config}};
  if (o.shard.count > 1) id["shard"] = shard_name(o.shard);  // an unsharded run's identity is unchanged
  return id;
}

}  // namespace

std::vector<tasks::Task> load_run_tasks(Backend& backend, const EvalOptions& o) {
  std::vector<tasks::Task> loaded;
  for (const std::string& name : tasks::resolve_task_names(o.tasks, o.specs_dir)) {
    const fs::path dir = data::ensure_dataset(tasks::task_dataset(name, o.specs_dir), o.fetch);
    const auto patch = o.task_overrides.find(name);
    loaded.push_back(tasks::load_task(
        name, {.dataset_dir = dir,
               .num_fewshot = o.num_fewshot,
               .limit = o.limit,
               .specs_dir = o.specs_dir,
               .overrides = patch == o.task_overrides.end() ? json::object() : patch->second,
               .tokenizer = backend.tokenizer(),
               .encode_prompt = [&backend](const std::string& context, const std::string& system) {
                 return backend.encode_prompt(context, system);
               },
               .max_context = backend.max_context(),
               .max_gen_toks = o.gen.max_gen_toks}));
    const tasks::Task& t = loaded.back();
    if (!t.scorer.empty())  // the scorer's options, checked now rather than after the generations (scorer.h)
      tasks::code_scorer_hook(t.scorer, t.name)({}, {.options = t.scorer_options, .pool = nullptr, .spec_file = t.name});
  }
  return loaded;
}

EvalOutcome evaluate(Backend& backend, const EvalOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<std::string> names = tasks::resolve_task_names(o.tasks, o.specs_dir);
  MLABENCH_CHECK(!o.output_dir.empty(), "no output folder given. HINT: pass --output DIR");
  for (const auto& [task, _] : o.task_overrides)
    MLABENCH_CHECK(std::find(names.begin(), names.end(), task) != names.end(), "--set names task {}, which this run "
                   "does not evaluate (it runs: {}). HINT: --set TASK.KEY=VALUE with TASK among --tasks", task,
                   fmt::join(names, ", "));
  MLABENCH_CHECK(!fs::exists(o.output_dir) || fs::is_directory(o.output_dir),
                 "--output {} exists and is not a folder. HINT: choose a folder path for the run", o.output_dir.string());
  std::error_code made;
  fs::create_directories(o.output_dir, made);
  MLABENCH_CHECK(!made, "cannot create the run folder {}: {}. HINT: check that its parent is writable",
                 o.output_dir.string(), made.message());
  const RunFolderLock lock(o.output_dir);  // one writer per run folder, held until the results are written

  // The run's identity: --resume continues only the same run.
  const json identity = identity_of(o, names, backend);
  const fs::path run_json = o.output_dir / "run.json";
  const bool merging = !o.merge_from.empty();
  MLABENCH_CHECK(!merging || o.shard.count == 1, "merge: the merged run is the whole run. HINT: drop --shard");
  if (merging) gather_shards(o, identity, names);  // the shards' samples into output_dir; run.json below
  const bool resume = o.resume || merging;
  if (fs::exists(run_json)) {
    MLABENCH_CHECK(o.resume, "{} already holds a run. HINT: pass --resume to continue it, or choose another "
                   "--output folder",
                   o.output_dir.string());
    std::ifstream in(run_json);
    json old;
    try {
      old = parse_json_bounded(std::string(std::istreambuf_iterator<char>(in), {}), run_json.string());
    } catch (const nlohmann::json::exception& e) {
      MLABENCH_FAIL("{} is not JSON ({}). HINT: remove the folder to start afresh", run_json.string(), e.what());
    }
    std::vector<std::string> differ;
    // Compared as unordered JSON: run.json is read back with its keys sorted, while the identity keeps the order
    // its writers chose.
    for (const auto& [k, v] : identity.items())
      if (!old.contains("identity") || !old["identity"].contains(k) ||
          nlohmann::json(old["identity"][k]) != nlohmann::json(v))
        differ.push_back(k);
    MLABENCH_CHECK(differ.empty(), "--resume: the run in {} was started with different {}. HINT: resume with the "
                   "same options, or choose another --output folder",
                   o.output_dir.string(), fmt::join(differ, ", "));
  } else {
    json run = {{"tool", "mlabench run"}, {"identity", identity}};
    if (!o.command_line.empty()) run["command_line"] = o.command_line;  // what mlabench merge runs again
    write_file_atomically(run_json, run.dump(2) + "\n");
  }

  // Tasks and their data.
  const std::vector<tasks::Task> loaded = load_run_tasks(backend, o);
  int64_t total_docs = 0;
  for (const tasks::Task& task : loaded)
    for (const tasks::Subtask& s : task.subtasks) total_docs += static_cast<int64_t>(shard_docs(s.docs, o.shard).size());

  // Model-written code runs in sandboxes, as many at once as there are workers.
  std::unique_ptr<sandbox::Pool> pool;
  for (const tasks::Task& task : loaded)
    if (!task.scorer.empty() && !pool) pool = std::make_unique<sandbox::Pool>(o.sandbox_workers);

  EvalOutcome outcome;
  Progress progress(o.progress, total_docs);
  json results = json::object(), groups = json::object(), group_subtasks = json::object(), n_samples = json::object();
  json configs = json::object(), versions = json::object(), protocols = json::object(), n_shot = json::object();
  json higher = json::object(), breakdowns = json::object(), code_gradings = json::object(), errors = json::object();
  for (const tasks::Task& task : loaded) {
    SamplesFile samples(o.output_dir / fmt::format("samples_{}.jsonl", task.name), resume);
    std::vector<json> lines = samples.loaded();
    std::set<std::pair<std::string, int64_t>> done;
    for (const json& l : lines) done.insert({l.at("subtask").get<std::string>(), l.at("doc_id").get<int64_t>()});
    outcome.docs_resumed += static_cast<int64_t>(lines.size());
    progress.skip(static_cast<int64_t>(done.size()));

    try {
      for (const tasks::Subtask& sub : task.subtasks) {
        std::vector<const tasks::TaskDoc*> pending;  // this shard's documents not in the samples file yet
        for (const tasks::TaskDoc* d : shard_docs(sub.docs, o.shard))
          if (!done.contains({sub.name, d->doc_id})) pending.push_back(d);
        MLABENCH_CHECK(!merging || pending.empty(), "merge: document {} of {} is in no shard's samples. HINT: the "
                       "shards were run on other data or with other options; merge shards of one run",
                       pending.empty() ? 0 : pending[0]->doc_id, sub.name);
        for (size_t at = 0; at < pending.size(); at += static_cast<size_t>(o.batch_docs)) {
          const size_t n = std::min(pending.size() - at, static_cast<size_t>(o.batch_docs));
          std::vector<json> batch =
              score_documents(backend, task, sub, std::span(pending).subspan(at, n), o.gen, pool.get(), o.output_dir);
          samples.append(batch);
          for (json& l : batch) lines.push_back(std::move(l));
          outcome.docs_scored += static_cast<int64_t>(n);
          progress.advance(task.name, static_cast<int64_t>(n));
        }
      }
    } catch (const BackendRefusal& e) {
      // The backend cannot answer this task's kind of request at all: the task gets an error, not a score; the
      // other tasks still run, and the run ends with the error (cli_run.cpp).
      errors[task.name] = e.what();
      outcome.errors.push_back(fmt::format("task {}: {}", task.name, e.what()));
      std::fprintf(stderr, "error: task %s refused: %s\n", task.name.c_str(), e.what());
      continue;
    }

    // Aggregate from the samples lines in document order, whichever invocation scored them.
    std::map<std::string, std::vector<const json*>> by_subtask;
    std::map<std::pair<std::string, int64_t>, const json*> index;
    for (const json& l : lines) index[{l["subtask"].get<std::string>(), l["doc_id"].get<int64_t>()}] = &l;
    for (const tasks::Subtask& sub : task.subtasks)
      for (const tasks::TaskDoc* d : shard_docs(sub.docs, o.shard)) {
        auto it = index.find({sub.name, d->doc_id});
        MLABENCH_ICHECK(it != index.end(), "document {} of {} was neither resumed nor scored", d->doc_id, sub.name);
        by_subtask[sub.name].push_back(it->second);
      }
    aggregate(task, by_subtask, results, groups, group_subtasks, n_samples);
    if (!task.breakdowns.empty()) breakdowns[task.name] = breakdown(task, by_subtask);
    configs[task.name] = task.config;
    versions[task.name] = task.version;
    protocols[task.name] = task.protocol;
    n_shot[task.name] = task.num_fewshot;
    const json grading = code_grading(by_subtask);
    json hib = json::object();
    for (const tasks::MetricSpec& m : task.metrics)
      for (const std::string& name : metrics::metric(m.name, task.name).reported(m, !grading.is_null()))
        hib[name] = metrics::reported_higher_is_better(name);
    if (!grading.is_null()) code_gradings[task.name] = grading;
    higher[task.name] = hib;
  }

  json provenance = o.provenance;
  provenance["total_evaluation_time_seconds_this_invocation"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  provenance["docs_scored_this_invocation"] = outcome.docs_scored;
  provenance["docs_resumed"] = outcome.docs_resumed;
  if (const json st = backend.engine_stats(); !st.is_null()) provenance["engine_this_invocation"] = st;
  if (merging) {
    json from = json::array();
    for (const fs::path& d : o.merge_from) from.push_back(d.string());
    provenance["merged_from"] = from;
  }
  outcome.results = {{"results", results},         {"groups", groups},     {"group_subtasks", group_subtasks},
                     {"configs", configs},         {"versions", versions}, {"protocols", protocols},
                     {"n-shot", n_shot},           {"higher_is_better", higher},
                     {"n-samples", n_samples},     {"breakdowns", breakdowns},
                     {"config", o.config},         {"backend", backend.describe()},
                     {"gen_kwargs", gen_overrides_json(o.gen)},            {"provenance", provenance}};
  if (!code_gradings.empty()) outcome.results["code_grading"] = code_gradings;
  if (!errors.empty()) outcome.results["errors"] = errors;  // tasks the backend refused (BackendRefusal)
  if (o.shard.count > 1)  // metrics over this shard's documents only; mlabench merge gives the whole run's
    outcome.results["shard"] = {{"index", o.shard.index}, {"count", o.shard.count}};
  outcome.results_path = o.output_dir / "results.json";
  write_file_atomically(outcome.results_path, outcome.results.dump(2) + "\n");
  return outcome;
}

std::string format_results_table(const json& r) {
  // Metric is 20 wide: the longest metric name is suspected_tampering (19).
  std::string out = fmt::format("| {:<40} | {:>7} | {:<22} | {:<16} | {:>6} | {:<20} | {:>8} | {:>8} |\n", "Tasks",
                                "Version", "Protocol", "Filter", "n-shot", "Metric", "Value", "Stderr");
  out += fmt::format("|{:-<42}|{:->9}|{:-<24}|{:-<18}|{:->8}|{:-<22}|{:->10}|{:->10}|\n", "", "", "", "", "", "", "",
                     "");
  auto rows = [&](const json& section, const std::string& name, const std::string& task) {
    for (const auto& [key, v] : section.items()) {
      if (key == "alias" || key.find("_stderr,") != std::string::npos) continue;
      const size_t comma = key.find(',');
      const json& se = section.contains(stderr_key(key)) ? section[stderr_key(key)] : json(nullptr);
      out += fmt::format("| {:<40} | {:>7} | {:<22} | {:<16} | {:>6} | {:<20} | {:>8.4f} | {:>8} |\n", name,
                         r["versions"].contains(task) ? r["versions"][task].dump() : "",
                         r["protocols"].contains(task) ? r["protocols"][task].get<std::string>() : "",
                         key.substr(comma + 1),
                         r["n-shot"].contains(task) ? r["n-shot"][task].dump() : "", key.substr(0, comma),
                         v.is_number() ? v.get<double>() : std::nan(""),
                         se.is_number() ? fmt::format("{:.4f}", se.get<double>()) : "n/a");
    }
  };
  for (const auto& [task, _] : r["versions"].items()) {
    if (r["groups"].contains(task)) {
      rows(r["groups"][task], task, task);
      for (const auto& member : r["group_subtasks"][task])
        if (r["groups"].contains(member.get<std::string>()))
          rows(r["groups"][member.get<std::string>()], " - " + member.get<std::string>(), task);
    } else if (r["results"].contains(task)) {
      rows(r["results"][task], task, task);
    }
  }
  return out;
}

}  // namespace mlabench::harness
