#include "harness/shards.h"

#include <fmt/format.h>

#include <fstream>
#include <iterator>
#include <set>

#include "core/check.h"
#include "core/json_limits.h"

namespace mlabench::harness {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace {

constexpr int64_t kMaxShards = 100000;

int64_t parse_count(const std::string& text, const std::string& what) {
  size_t used = 0;
  int64_t v = -1;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  MLABENCH_CHECK(used == text.size() && !text.empty() && v >= 0 && v <= kMaxShards,
                 "{} = \"{}\" is not a whole number in 0..{}. HINT: shards are numbered from 0", what, text, kMaxShards);
  return v;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  MLABENCH_CHECK(in.good(), "cannot read {}. HINT: check the folder and its permissions", p.string());
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

std::string shard_name(const Shard& s) { return fmt::format("{}/{}", s.index, s.count); }

Shard parse_shard(const std::string& spec, int64_t count_hint, const std::function<const char*(const char*)>& getenv) {
  Shard s;
  if (spec != "env") {
    const size_t slash = spec.find('/');
    MLABENCH_CHECK(slash != std::string::npos, "--shard \"{}\" is not K/N or env. HINT: --shard 0/4 takes the first of "
                   "four parts; --shard env reads SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX or RANK", spec);
    s.index = parse_count(spec.substr(0, slash), "--shard's K");
    s.count = parse_count(spec.substr(slash + 1), "--shard's N");
  } else if (const char* id = getenv("SLURM_ARRAY_TASK_ID")) {
    const char* count = getenv("SLURM_ARRAY_TASK_COUNT");
    MLABENCH_CHECK(count != nullptr || count_hint > 0, "--shard env: SLURM_ARRAY_TASK_ID is set but "
                   "SLURM_ARRAY_TASK_COUNT is not. HINT: pass --shards N");
    const int64_t min = getenv("SLURM_ARRAY_TASK_MIN") ? parse_count(getenv("SLURM_ARRAY_TASK_MIN"), "SLURM_ARRAY_TASK_MIN") : 0;
    const int64_t id_v = parse_count(id, "SLURM_ARRAY_TASK_ID");
    MLABENCH_CHECK(id_v >= min, "SLURM_ARRAY_TASK_ID {} is below SLURM_ARRAY_TASK_MIN {}", id_v, min);
    s.index = id_v - min;
    s.count = count ? parse_count(count, "SLURM_ARRAY_TASK_COUNT") : count_hint;
  } else if (const char* idx = getenv("JOB_COMPLETION_INDEX")) {
    MLABENCH_CHECK(count_hint > 0, "--shard env: JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but the "
                   "shard count is not. HINT: pass --shards N, the Job's completions");
    s.index = parse_count(idx, "JOB_COMPLETION_INDEX");
    s.count = count_hint;
  } else if (const char* rank = getenv("RANK")) {
    const char* world = getenv("WORLD_SIZE");
    MLABENCH_CHECK(world != nullptr || count_hint > 0, "--shard env: RANK is set but WORLD_SIZE is not. HINT: pass "
                   "--shards N");
    s.index = parse_count(rank, "RANK");
    s.count = world ? parse_count(world, "WORLD_SIZE") : count_hint;
  } else {
    MLABENCH_FAIL("--shard env: none of SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX or RANK is set. HINT: run it as "
                  "a Slurm array task, a Kubernetes Indexed Job or under a launcher that sets RANK, or pass --shard K/N");
  }
  MLABENCH_CHECK(s.count >= 1 && s.index < s.count, "shard {} of {}: the index must be below the count. HINT: shards "
                 "are numbered 0..N-1", s.index, s.count);
  MLABENCH_CHECK(count_hint == 0 || count_hint == s.count, "--shards {} disagrees with the {} shards the environment "
                 "or --shard gives. HINT: drop --shards or make them agree", count_hint, s.count);
  return s;
}

void gather_shards(const EvalOptions& o, const json& identity, const std::vector<std::string>& task_names) {
  const auto n = static_cast<int64_t>(o.merge_from.size());
  MLABENCH_CHECK(n >= 1, "merge: no shard folders given. HINT: mlabench merge SHARD_DIR... --output DIR");
  MLABENCH_CHECK(!fs::exists(o.output_dir / "run.json"), "merge: {} already holds a run. HINT: merge into a new "
                 "folder", o.output_dir.string());
  std::vector<bool> seen(static_cast<size_t>(n), false);
  for (const fs::path& dir : o.merge_from) {
    const fs::path run_json = dir / "run.json";
    MLABENCH_CHECK(fs::is_regular_file(run_json), "merge: {} has no run.json. HINT: name the shards' run folders "
                   "(their --output)", dir.string());
    json run;
    try {
      run = parse_json_bounded(read_text(run_json), run_json.string());
    } catch (const nlohmann::json::exception& e) {
      MLABENCH_FAIL("merge: {} is not JSON ({})", run_json.string(), e.what());
    }
    MLABENCH_CHECK(run.is_object() && run.contains("identity") && run["identity"].is_object() &&
                       run["identity"].contains("shard") && run["identity"]["shard"].is_string(),
                   "merge: {} is not the run of a shard (its run.json names no shard). HINT: merge folders made by "
                   "mlabench run --shard K/N", dir.string());
    const Shard s = parse_shard(run["identity"]["shard"].get<std::string>(), 0);
    MLABENCH_CHECK(s.count == n, "merge: {} is shard {} of {}, but {} run folder(s) were given. HINT: name every "
                   "shard of the run once", dir.string(), shard_name(s), s.count, n);
    MLABENCH_CHECK(!seen[static_cast<size_t>(s.index)], "merge: shard {} is given twice (again in {})",
                   shard_name(s), dir.string());
    seen[static_cast<size_t>(s.index)] = true;
    std::vector<std::string> differ;
    json theirs = run["identity"];
    theirs.erase("shard");
    // Compared as unordered JSON: run.json comes back with its keys sorted, the identity in its writers' order.
    for (const auto& [k, v] : identity.items())
      if (!theirs.contains(k) || nlohmann::json(theirs[k]) != nlohmann::json(v)) differ.push_back(k);
    for (const auto& [k, v] : theirs.items())
      if (!identity.contains(k)) differ.push_back(k);
    MLABENCH_CHECK(differ.empty(), "merge: shard {} in {} was run with different {} than the merge asks for. HINT: "
                   "merge shards of one run (same tasks, options and backend)", shard_name(s), dir.string(),
                   fmt::join(differ, ", "));
    MLABENCH_CHECK(fs::is_regular_file(dir / "results.json"), "merge: shard {} in {} has no results.json: it did not "
                   "finish. HINT: mlabench run ... --shard {} --output {} --resume, then merge", shard_name(s),
                   dir.string(), shard_name(s), dir.string());
  }
  for (const std::string& task : task_names) {
    const std::string file = fmt::format("samples_{}.jsonl", task);
    std::string merged;
    std::set<std::pair<std::string, int64_t>> docs;
    for (const fs::path& dir : o.merge_from) {
      const fs::path p = dir / file;
      if (!fs::exists(p)) continue;  // a shard with no document of this task (fewer documents than shards)
      const std::string all = read_text(p);
      size_t at = 0;
      int64_t line = 0;
      while (at < all.size()) {
        size_t nl = all.find('\n', at);
        if (nl == std::string::npos) nl = all.size();
        ++line;
        const std::string_view text = std::string_view(all).substr(at, nl - at);
        json l;
        try {
          l = parse_json_bounded(text, p.string());
        } catch (const nlohmann::json::exception& e) {
          MLABENCH_FAIL("merge: {}:{} is not a samples line ({})", p.string(), line, e.what());
        }
        MLABENCH_CHECK(l.is_object() && l.contains("subtask") && l["subtask"].is_string() && l.contains("doc_id") &&
                           l["doc_id"].is_number_integer(),
                       "merge: {}:{} has no subtask and doc_id", p.string(), line);
        MLABENCH_CHECK(docs.insert({l["subtask"].get<std::string>(), l["doc_id"].get<int64_t>()}).second,
                       "merge: document {} of {} is in two shards (again in {}). HINT: merge shards of one run",
                       l["doc_id"].get<int64_t>(), l["subtask"].get<std::string>(), p.string());
        merged.append(text);
        merged += '\n';
        at = nl + 1;
      }
    }
    write_file_atomically(o.output_dir / file, merged);
  }
}

}  // namespace mlabench::harness
