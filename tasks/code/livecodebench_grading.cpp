// LiveCodeBench grading (lcb_runner/evaluation/testing_util.py): each test of a solution runs in its own sandbox
// through a small Python driver that does what testing_util does to the code (the import block, the stdin
// program wrapped into a function, the functional call with JSON arguments, the per-test alarm) and reports on
// fd 4. The expected outputs never enter the sandbox: stdout and returned values are compared here, so a
// program cannot fake a pass. docs/tasks.md "livecodebench" lists where this differs from the original.
#include "tasks/code/livecodebench.h"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <optional>
#include <string_view>

#include <fmt/format.h>

#include "core/check.h"
#include "core/utf8.h"
#include "sandbox/sandbox.h"
#include "tasks/code/plain_value.h"

namespace mlabench::tasks::livecodebench {

namespace {

using ojson = nlohmann::ordered_json;

// testing_util.py's import_string: prepended to every solution (inside make_function for stdin programs).
constexpr const char* kImportBlock =
    "from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\n"
    "from heapq import *\nfrom bisect import *\nfrom copy import *\nfrom math import *\nfrom random import *\n"
    "from statistics import *\nfrom itertools import *\nfrom functools import *\nfrom operator import *\n"
    "from io import *\nfrom sys import *\nfrom json import *\nfrom builtins import *\nfrom typing import *\n"
    "import string\nimport re\nimport datetime\nimport collections\nimport heapq\nimport bisect\nimport copy\n"
    "import math\nimport random\nimport statistics\nimport itertools\nimport functools\nimport operator\n"
    "import io\nimport sys\nimport json\nsys.setrecursionlimit(50000)\n";

// The driver reads request.json and solution.py from its work directory (and deletes them), runs one test and
// writes one JSON status line to fd 4: {"status": "ok" | "compile_error" | "runtime_error" | "timeout", ...},
// with "value" (the returned value as plain JSON) or "unequal" (why it cannot equal any JSON value) for a
// functional call. Values are rebuilt from the builtin types' own slots, so a result whose __eq__ always says
// True (which testing_util would believe) is compared by content here. IMPORT_BLOCK is filled in from
// kImportBlock. ast-based wrapping follows clean_if_name and make_function.
constexpr const char* kDriver = R"PY(import ast, json, os, signal, sys, types

IMPORT_BLOCK = json.loads(IMPORT_BLOCK_JSON)


class TimeoutException(Exception):
    pass


def on_alarm(signum, frame):
    raise TimeoutException()


class Unequal(Exception):
    pass


def as_function(code):
    try:
        tree = ast.parse(code)
        last = tree.body[-1]
        if isinstance(last, ast.If) and ast.unparse(last.test).strip() == "__name__ == '__main__'":
            code = ast.unparse(tree.body[:-1]) + "\n" + ast.unparse(last.body)
    except Exception:
        pass
    try:
        tree = ast.parse(code)
        imports = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
        body = [s for s in tree.body if not isinstance(s, (ast.Import, ast.ImportFrom))]
        function = ast.FunctionDef(name="wrapped_function", body=body, decorator_list=[], lineno=-1,
                                   args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[],
                                                      defaults=[]))
        return IMPORT_BLOCK + "\n" + ast.unparse(imports) + "\n" + ast.unparse(function)
    except Exception:
        return code


def plain(v, depth=0):
    if depth > 100:
        raise Unequal("nested more than 100 deep")
    t = type(v)
    if v is None or t is bool or t is int or t is str:
        return v
    if t is float:
        if v != v or v in (float("inf"), float("-inf")):
            raise Unequal("a float that JSON cannot hold: %r" % v)
        return v
    if isinstance(v, int):
        return int.__index__(v)
    if isinstance(v, float):
        return plain(float.__float__(v), depth)
    if isinstance(v, str):
        return str.__str__(v)
    if isinstance(v, list):
        return [plain(x, depth + 1) for x in list.__iter__(v)]
    if isinstance(v, dict):
        out = {}
        for k, x in dict.items(v):
            if not isinstance(k, str):
                raise Unequal("a dict key of type %s" % type(k).__name__)
            out[str.__str__(k)] = plain(x, depth + 1)
        return out
    for module, name in (("decimal", "Decimal"), ("fractions", "Fraction")):
        if module in sys.modules and isinstance(v, getattr(sys.modules[module], name)):
            import fractions
            exact = fractions.Fraction(v)
            if exact.denominator == 1:
                return int(exact.numerator)
            if fractions.Fraction(float(exact)) == exact:
                return float(exact)
            raise Unequal("a %s that no float equals" % name)
    if isinstance(v, complex) and v.imag == 0:
        return plain(v.real, depth)
    raise Unequal("a value of type %s" % t.__name__)


def main():
    write, dumps = os.write, json.dumps

    def report(status, **fields):
        try:
            sys.stdout.flush()
        except BaseException:
            pass
        data = ("\n" + dumps(dict(status=status, **fields)) + "\n").encode()
        while data:
            data = data[write(4, data):]
        os._exit(0)

    def describe(e):
        return ("%s: %s" % (type(e).__name__, e))[:300]

    with open("request.json") as f:
        request = json.load(f)
    with open("solution.py") as f:
        code = f.read()
    os.unlink("request.json")
    os.unlink("solution.py")
    sys.set_int_max_str_digits(50000)
    timeout = request["timeout"]
    functional = request["fn_name"] is not None
    if functional:
        source = IMPORT_BLOCK + "\n\n" + code
        arguments = [json.loads(line) for line in request["input"].split("\n")]
    else:
        source = as_function(code)
    try:
        compiled = compile(source, "<solution>", "exec")
    except BaseException as e:
        report("compile_error", error=describe(e))
    module = types.ModuleType("tmp_sol", "")
    signal.signal(signal.SIGALRM, on_alarm)

    def timed(call):
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            return call()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    stage = "module"
    try:
        timed(lambda: exec(compiled, module.__dict__))
        if functional:
            target = module
            if "class Solution" in source:
                stage = "Solution()"
                if not hasattr(module, "Solution"):
                    report("compile_error", error="the code has no class Solution")
                target = timed(module.Solution)
            method = getattr(target, request["fn_name"], None)
            if method is None:
                report("compile_error", error="the code defines no %s" % request["fn_name"])
            stage = "call"
            result = timed(lambda: method(*arguments))
            if isinstance(result, tuple):
                result = list(result)
            try:
                value = plain(result)
            except BaseException as e:
                try:
                    shown = repr(result)[:400]
                except BaseException:
                    shown = object.__repr__(result)
                report("ok", unequal=str(e) if isinstance(e, Unequal) else describe(e), shown=shown)
            report("ok", value=value, shown=dumps(value)[:400])
        stage = "call"
        try:
            timed(module.wrapped_function)
        except SystemExit:
            pass
        report("ok")
    except TimeoutException:
        report("timeout", stage=stage)
    except BaseException as e:
        report("runtime_error", stage=stage, error=describe(e))


main()
)PY";

std::string driver_source() {
  std::string text = kDriver;
  const std::string marker = "json.loads(IMPORT_BLOCK_JSON)";
  const size_t at = text.find(marker);
  MLABENCH_ICHECK(at != std::string::npos, "driver template lost its import-block marker");
  // A JSON string literal is a valid Python string literal for this ASCII text.
  text.replace(at, marker.size(), ojson(kImportBlock).dump());
  return text;
}

// Python's str.isspace() code points (str.strip() and str.split() use these).
bool python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Byte length of the whitespace character starting at s[i], 0 if none.
size_t space_at(std::string_view s, size_t i) {
  size_t j = i;
  const char32_t c = unicode::next(s, j);
  return python_space(c) ? j - i : 0;
}

// Byte length of the whitespace character ending at s[end-1], 0 if none.
size_t space_before(std::string_view s, size_t end) {
  size_t start = end - 1;
  while (start > 0 && end - start < 4 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  return space_at(s, start) == end - start ? end - start : 0;
}

std::string_view python_strip(std::string_view s) {
  size_t begin = 0, end = s.size();
  for (size_t n; begin < end && (n = space_at(s, begin)) > 0;) begin += n;
  for (size_t n; end > begin && (n = space_before(s, end)) > 0;) end -= n;
  return s.substr(begin, end - begin);
}

std::vector<std::string_view> python_split_whitespace(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    for (size_t n; i < s.size() && (n = space_at(s, i)) > 0;) i += n;
    const size_t start = i;
    while (i < s.size() && space_at(s, i) == 0) {
      size_t j = i;
      unicode::next(s, j);
      i = j;
    }
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

// get_stripped_lines: the whole text stripped, split at '\n', each line stripped.
std::vector<std::string_view> stripped_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  const std::string_view s = python_strip(text);
  size_t start = 0;
  while (true) {
    const size_t end = s.find('\n', start);
    lines.push_back(python_strip(s.substr(start, end == std::string_view::npos ? end : end - start)));
    if (end == std::string_view::npos) return lines;
    start = end + 1;
  }
}

// A value of Python's decimal.Decimal(token), enough to decide ==: NaNs equal nothing (a signalling NaN makes
// testing_util's comparison raise, which fails the test just the same).
struct Decimal {
  enum class Kind { FINITE, INFINITE, NAN_ } kind = Kind::FINITE;
  bool negative = false;
  std::string digits;    // significant digits without leading or trailing zeros; "" for zero
  int64_t exponent = 0;  // value = digits * 10^exponent
};

std::optional<Decimal> parse_decimal(std::string_view token) {
  std::string s;  // Decimal() ignores underscores anywhere
  for (const char c : token) {
    if (c != '_') s.push_back(c);
  }
  Decimal d;
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) d.negative = s[i++] == '-';
  std::string rest = s.substr(i);
  for (char& c : rest) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  const auto all_digits = [](std::string_view v) {
    return std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (rest == "inf" || rest == "infinity") {
    d.kind = Decimal::Kind::INFINITE;
    return d;
  }
  if ((rest.starts_with("nan") && all_digits(std::string_view(rest).substr(3))) ||
      (rest.starts_with("snan") && all_digits(std::string_view(rest).substr(4)))) {
    d.kind = Decimal::Kind::NAN_;
    return d;
  }
  std::string coefficient;
  int64_t fraction_digits = 0;
  size_t j = 0;
  while (j < rest.size() && rest[j] >= '0' && rest[j] <= '9') coefficient.push_back(rest[j++]);
  if (j < rest.size() && rest[j] == '.') {
    ++j;
    while (j < rest.size() && rest[j] >= '0' && rest[j] <= '9') coefficient.push_back(rest[j++]), ++fraction_digits;
  }
  if (coefficient.empty()) return std::nullopt;
  int64_t exponent = 0;
  if (j < rest.size() && rest[j] == 'e') {
    ++j;
    bool negative_exponent = false;
    if (j < rest.size() && (rest[j] == '+' || rest[j] == '-')) negative_exponent = rest[j++] == '-';
    if (j == rest.size()) return std::nullopt;
    for (; j < rest.size() && rest[j] >= '0' && rest[j] <= '9'; ++j) {
      // Beyond 18 digits (libmpdec's exponent range) Decimal() raises; no program output gets near it.
      if (exponent >= 100'000'000'000'000'000LL) return std::nullopt;
      exponent = exponent * 10 + (rest[j] - '0');
    }
    if (negative_exponent) exponent = -exponent;
  }
  if (j != rest.size()) return std::nullopt;
  const size_t first = coefficient.find_first_not_of('0');
  if (first == std::string::npos) return d;  // zero, whatever its sign and exponent
  const size_t last = coefficient.find_last_not_of('0');
  d.digits = coefficient.substr(first, last + 1 - first);
  d.exponent = exponent - fraction_digits + static_cast<int64_t>(coefficient.size() - 1 - last);
  return d;
}

bool decimal_equal(const Decimal& a, const Decimal& b) {
  if (a.kind == Decimal::Kind::NAN_ || b.kind == Decimal::Kind::NAN_ || a.kind != b.kind) return false;
  if (a.kind == Decimal::Kind::INFINITE) return a.negative == b.negative;
  if (a.digits.empty() || b.digits.empty()) return a.digits.empty() && b.digits.empty();
  return a.negative == b.negative && a.digits == b.digits && a.exponent == b.exponent;
}

// A JSON value with Python's json.loads types: ints keep every digit (nlohmann would round big ones to double).
struct PyValue {
  enum class Kind { NONE, BOOL, INT, FLOAT, STR, LIST, DICT } kind = Kind::NONE;
  std::string text{};   // INT: decimal digits with '-' if negative; STR: the string
  double number = 0.0;  // FLOAT; BOOL: 0 or 1
  std::vector<PyValue> items{};
  std::vector<std::pair<std::string, PyValue>> entries{};
};

class PyValueBuilder : public nlohmann::json_sax<ojson> {
 public:
  PyValue root;

  bool null() override { return add(PyValue{}); }
  bool boolean(bool v) override { return add(PyValue{.kind = PyValue::Kind::BOOL, .number = v ? 1.0 : 0.0}); }
  bool number_integer(number_integer_t v) override { return add(integer(std::to_string(v))); }
  bool number_unsigned(number_unsigned_t v) override { return add(integer(std::to_string(v))); }
  bool number_float(number_float_t v, const string_t& raw) override {
    // nlohmann falls back to double for integers beyond 64 bits; json.loads keeps them ints.
    if (raw.find_first_of(".eE") == std::string::npos) return add(integer(raw));
    return add(PyValue{.kind = PyValue::Kind::FLOAT, .number = v});
  }
  bool string(string_t& v) override { return add(PyValue{.kind = PyValue::Kind::STR, .text = v}); }
  bool binary(binary_t&) override { return false; }
  bool start_object(std::size_t) override { return open(PyValue::Kind::DICT); }
  bool key(string_t& k) override {
    key_ = k;
    return true;
  }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(PyValue::Kind::LIST); }
  bool end_array() override { return close(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

 private:
  static PyValue integer(std::string digits) {
    if (digits == "-0") digits = "0";
    return PyValue{.kind = PyValue::Kind::INT, .text = std::move(digits)};
  }
  PyValue* put(PyValue v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    PyValue& parent = *stack_.back();
    if (parent.kind == PyValue::Kind::LIST) {
      parent.items.push_back(std::move(v));
      return &parent.items.back();
    }
    for (auto& [k, existing] : parent.entries) {
      if (k == key_) {  // json.loads keeps the last of duplicate keys
        existing = std::move(v);
        return &existing;
      }
    }
    parent.entries.emplace_back(key_, std::move(v));
    return &parent.entries.back().second;
  }
  bool add(PyValue v) {
    put(std::move(v));
    return true;
  }
  bool open(PyValue::Kind kind) {
    stack_.push_back(put(PyValue{.kind = kind}));
    return true;
  }
  bool close() {
    stack_.pop_back();
    return true;
  }
  std::vector<PyValue*> stack_;
  std::string key_;
};

std::optional<PyValue> parse_py_json(const std::string& text) {
  PyValueBuilder builder;
  if (!ojson::sax_parse(text, &builder)) return std::nullopt;
  return std::move(builder.root);
}

// Python's ==, for values json.loads can produce (bool is an int; ints and floats compare exactly).
bool python_equal(const PyValue& a, const PyValue& b) {
  using K = PyValue::Kind;
  const auto numeric = [](const PyValue& v) { return v.kind == K::BOOL || v.kind == K::INT || v.kind == K::FLOAT; };
  if (numeric(a) && numeric(b)) {
    const auto as_int = [](const PyValue& v) -> std::optional<std::string> {
      if (v.kind == K::BOOL) return v.number != 0.0 ? "1" : "0";
      if (v.kind == K::INT) return v.text;
      return plain::float_as_integer(v.number);
    };
    if (a.kind == K::FLOAT && b.kind == K::FLOAT) return a.number == b.number;
    const auto x = as_int(a), y = as_int(b);
    return x && y && *x == *y;
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case K::NONE:
      return true;
    case K::STR:
      return a.text == b.text;
    case K::LIST:
      if (a.items.size() != b.items.size()) return false;
      for (size_t i = 0; i < a.items.size(); ++i) {
        if (!python_equal(a.items[i], b.items[i])) return false;
      }
      return true;
    case K::DICT:
      if (a.entries.size() != b.entries.size()) return false;
      for (const auto& entry : a.entries) {  // not a structured binding: clang 14 (the fuzz build) cannot capture one
        const auto it =
            std::find_if(b.entries.begin(), b.entries.end(), [&](const auto& e) { return e.first == entry.first; });
        if (it == b.entries.end() || !python_equal(entry.second, it->second)) return false;
      }
      return true;
    default:
      return false;
  }
}

// testing_util's truncatefn (300 there; 200 here), cut at UTF-8 boundaries and made valid for the samples file.
std::string truncated(std::string_view s, size_t limit = 200) {
  if (s.size() <= limit) return unicode::sanitize(s);
  size_t head = limit / 2, tail = s.size() - limit / 2;
  while (head > 0 && (static_cast<unsigned char>(s[head]) & 0xC0) == 0x80) --head;
  while (tail < s.size() && (static_cast<unsigned char>(s[tail]) & 0xC0) == 0x80) ++tail;
  return unicode::sanitize(s.substr(0, head)) + "...(truncated) ..." + unicode::sanitize(s.substr(tail));
}

struct Options {
  double timeout_s = 6.0;
  std::string prompt_style;  // "" = the one each document was rendered with
};

Options parse_options(const CodeScorerContext& context) {
  Options o;
  for (const auto& [key, value] : context.options.items()) {
    if (key == "hook") continue;
    if (key == "timeout_s") {
      MLABENCH_CHECK(value.is_number() && value.get<double>() > 0 && value.get<double>() <= 3600,
                     "{}: scorer.timeout_s = {} must be seconds in (0, 3600]. HINT: LiveCodeBench's default is 6",
                     context.spec_file.string(), value.dump());
      o.timeout_s = value.get<double>();
    } else if (key == "prompt_style") {
      MLABENCH_CHECK(value == "chat" || value == "base",
                     "{}: scorer.prompt_style = {}. HINT: \"chat\" (code from the "
                     "last fenced block) or \"base\" (the whole output)",
                     context.spec_file.string(), value.dump());
      o.prompt_style = value.get<std::string>();
    } else {
      MLABENCH_FAIL("{}: unknown scorer option '{}'. HINT: the livecodebench scorer takes timeout_s and prompt_style",
                    context.spec_file.string(), key);
    }
  }
  return o;
}

struct TestRun {
  bool passed = false;
  std::string result;  // a verdict word when it failed
  ojson details = ojson::object();
};

TestRun run_test(const std::string& code, const ojson& test, const ojson& fn_name, double timeout_s) {
  const std::string input = test.at("input").get<std::string>();
  const std::string expected = test.at("output").get<std::string>();
  sandbox::Request rq;
  rq.argv = {sandbox::find_python(), "-I", "-B", "driver.py"};
  const ojson request = {{"timeout", timeout_s}, {"fn_name", fn_name}, {"input", fn_name.is_null() ? "" : input}};
  rq.files = {{"driver.py", driver_source()}, {"request.json", request.dump()}, {"solution.py", code}};
  if (fn_name.is_null()) rq.stdin_data = input;
  rq.capture_report = true;
  // The driver's alarm ends a slow module body and a slow call after timeout_s each, as testing_util's do; the
  // sandbox's limits only catch what ignores the alarm, after both and a second for the interpreter.
  rq.limits.wall_seconds = 2 * timeout_s + 1;
  rq.limits.cpu_seconds = 2 * timeout_s + 1;
  rq.limits.output_bytes = std::max<int64_t>(rq.limits.output_bytes, 2 * static_cast<int64_t>(expected.size()));
  const sandbox::Result r = sandbox::run(rq);
  MLABENCH_CHECK(r.status != sandbox::Status::SETUP_ERROR,
                 "livecodebench: the sandbox could not start ({}). HINT: "
                 "see README \"Sandbox\" for what the kernel must allow",
                 r.error);

  TestRun t;
  t.details = {{"input", truncated(input)},
               {"expected", truncated(expected)},
               {"status", sandbox::status_name(r.status)},
               {"seconds", r.wall_seconds}};
  if (!r.stderr_data.empty()) t.details["stderr_tail"] = truncated(r.stderr_data, 600);
  // The driver's status is the report's last line (whatever the program wrote to fd 4 comes before it).
  std::string_view lines = r.report;
  while (!lines.empty() && lines.back() == '\n') lines.remove_suffix(1);
  const std::optional<PyValue> report = parse_py_json(std::string(lines.substr(lines.rfind('\n') + 1)));
  const auto field = [&](const char* name) -> const PyValue* {
    if (!report || report->kind != PyValue::Kind::DICT) return nullptr;
    for (const auto& [k, v] : report->entries) {
      if (k == name) return &v;
    }
    return nullptr;
  };
  const auto text = [&](const char* name) {
    const PyValue* v = field(name);
    return v && v->kind == PyValue::Kind::STR ? v->text : std::string();
  };
  const std::string status = text("status");
  if (!text("error").empty()) t.details["error"] = truncated(text("error"), 300);
  if (!text("stage").empty()) t.details["stage"] = text("stage");

  if (r.status == sandbox::Status::TIMEOUT || (r.status == sandbox::Status::SIGNALED && r.signal == SIGXCPU) ||
      (r.status == sandbox::Status::EXITED && status == "timeout")) {
    t.result = "timeout";
  } else if (r.status == sandbox::Status::OUTPUT_LIMIT) {
    t.result = "wrong answer";
    t.details["error"] = fmt::format("wrote more than {} bytes", rq.limits.output_bytes);
  } else if (r.status != sandbox::Status::EXITED || r.exit_code != 0 || status.empty() || status == "runtime_error") {
    // Killed by a signal, or gone without the driver's last word (os._exit, a crash of the interpreter).
    t.result = "runtime error";
    if (r.status == sandbox::Status::SIGNALED) t.details["signal"] = r.signal;
    if (r.status == sandbox::Status::EXITED && status.empty()) t.details["exit_code"] = r.exit_code;
  } else if (status == "compile_error") {
    t.result = "compile error";
  } else if (fn_name.is_null()) {
    t.details["output"] = truncated(r.stdout_data);
    t.passed = stdin_output_matches(r.stdout_data, expected);
  } else if (const PyValue* value = field("value")) {
    t.details["output"] = truncated(text("shown"));
    const std::optional<PyValue> want = parse_py_json(expected);
    t.passed = want && python_equal(*value, *want);
  } else {
    t.details["output"] = truncated(text("shown"));
    t.details["error"] = "unequal to any JSON value: " + truncated(text("unequal"));
  }
  if (!t.passed && t.result.empty()) t.result = "wrong answer";
  return t;
}

CodeVerdict grade(const CodeSample& sample, const Options& o) {
  const ojson& payload = sample.doc->payload;
  const std::string style = !o.prompt_style.empty()            ? o.prompt_style
                            : payload.contains("prompt_style") ? payload["prompt_style"].get<std::string>()
                                                               : "chat";
  // extract_code: GenericBase uses the whole output, stripped; the chat styles the last fenced block.
  const std::string code =
      style == "base" ? std::string(python_strip(sample.completion)) : extract_code(sample.completion);
  const ojson& tests = payload.at("tests");
  CodeVerdict v;
  v.details = {{"tests", tests.size()}, {"code", unicode::sanitize(code)}};
  if (python_strip(code).empty()) {
    v.result = "compile error";
    v.details["error"] = style == "base" ? "empty output" : "no code: an empty block, or fewer than two ``` lines";
    return v;
  }
  for (size_t i = 0; i < tests.size(); ++i) {
    TestRun t = run_test(code, tests[i], payload.at("fn_name"), o.timeout_s);
    if (t.passed) continue;
    v.result = t.result;
    v.details["failed_test"] = i;
    for (auto& [key, value] : t.details.items()) v.details[key] = value;
    return v;
  }
  v.passed = true;
  v.result = "passed";
  return v;
}

}  // namespace

std::string extract_code(const std::string& model_output) {
  std::vector<std::string_view> lines;
  const std::string_view s = model_output;
  for (size_t start = 0;;) {
    const size_t end = s.find('\n', start);
    lines.push_back(s.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  std::vector<size_t> fences;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].find("```") != std::string_view::npos) fences.push_back(i);
  }
  if (fences.size() < 2) return "";
  std::string code;
  for (size_t i = fences[fences.size() - 2] + 1; i < fences.back(); ++i) {
    if (i > fences[fences.size() - 2] + 1) code += '\n';
    code += lines[i];
  }
  return code;
}

bool stdin_output_matches(const std::string& produced, const std::string& expected) {
  const std::vector<std::string_view> got = stripped_lines(produced), want = stripped_lines(expected);
  if (got.size() != want.size()) return false;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] == want[i]) continue;
    const std::vector<std::string_view> a = python_split_whitespace(got[i]), b = python_split_whitespace(want[i]);
    std::vector<Decimal> x, y;
    for (const std::string_view token : a) {
      const std::optional<Decimal> d = parse_decimal(token);
      if (!d) return false;
      x.push_back(*d);
    }
    for (const std::string_view token : b) {
      const std::optional<Decimal> d = parse_decimal(token);
      if (!d) return false;
      y.push_back(*d);
    }
    if (x.size() != y.size()) return false;
    for (size_t k = 0; k < x.size(); ++k) {
      if (!decimal_equal(x[k], y[k])) return false;
    }
  }
  return true;
}

std::vector<CodeVerdict> score(std::span<const CodeSample> samples, const CodeScorerContext& context) {
  const Options options = parse_options(context);
  std::vector<CodeVerdict> out(samples.size());
  const auto job = [&](size_t i) { out[i] = grade(samples[i], options); };
  if (context.pool) {
    context.pool->parallel_for(samples.size(), job);
  } else {
    for (size_t i = 0; i < samples.size(); ++i) job(i);
  }
  return out;
}

}  // namespace mlabench::tasks::livecodebench
