#!/usr/bin/env python3
"""Proves that an #include pointing upward fails the build (cmake/layering.cmake, README.md "Layout").

For one library it takes the compile command the build really runs for one of the library's own .cpp files
(compile_commands.json), swaps that file for a probe, and checks with real compiles that
  - a probe including a header of the library itself and of every library below it that it links compiles, and
  - a probe including a header of any library above it fails because the header is not found.
The first is the control: without it a broken command would pass the second. Exit 0 when both hold, 1 otherwise.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys

# The libraries in dependency order: (target, folder, headers that stand for it, the libraries it links directly),
# as CMakeLists.txt links them. A link to a higher library added there makes its headers resolve and fails the
# upward probes; a link dropped there fails the control probe.
LAYERS = [
    ("mlabench_core", "core", ["core/check.h", "mlabench/result.h"], []),
    ("mlabench_engine", "engine", ["engine/model/config.h", "mlabench/engine.h"], ["mlabench_core"]),
    ("mlabench_metrics", "metrics", ["metrics/registry.h"], ["mlabench_core"]),
    ("mlabench_sandbox", "sandbox", ["sandbox/sandbox.h"], ["mlabench_core"]),
    ("mlabench_tasks", "tasks", ["tasks/task.h"], ["mlabench_engine", "mlabench_metrics", "mlabench_sandbox"]),
    ("mlabench_harness", "harness", ["harness/evaluator.h"], ["mlabench_tasks"]),
    ("mlabench_reports", "reports", ["reports/report.h"], ["mlabench_harness"]),
    ("mlabench", "cli", ["cli/cli_run.h"], ["mlabench_reports"]),
]
BY_FOLDER = {folder: (target, headers, deps) for target, folder, headers, deps in LAYERS}
BY_TARGET = {target: (folder, headers, deps) for target, folder, headers, deps in LAYERS}
# Flags that name the object file or write a depfile next to it: dropped, so a probe writes nothing into the build.
DROP_WITH_ARG = {"-o", "-MF", "-MT", "-MQ"}
DROP = {"-c", "-MD", "-MMD"}


def closure(target):
    """The target and every library it links, directly or not, in layer order."""
    seen, stack = set(), [target]  # depth-first over the link lists
    while stack:
        t = stack.pop()
        if t not in seen:
            seen.add(t)
            stack.extend(BY_TARGET[t][2])
    return [t for t, *_ in LAYERS if t in seen]


def library_command(entries, target):
    """A real compile command of one of `target`'s C++ files: (directory, argv without source and outputs)."""
    marker = f"CMakeFiles/{target}.dir/"
    for e in entries:
        if e["file"].endswith(".cpp") and marker in e.get("output", e.get("command", "")):
            argv = e["arguments"] if "arguments" in e else shlex.split(e["command"])
            src = e["file"]
            kept, skip = [], False
            for a in argv:
                if skip:
                    skip = False
                elif a in DROP_WITH_ARG:
                    skip = True
                elif a in DROP or os.path.normpath(os.path.join(e["directory"], a)) == os.path.normpath(src):
                    continue
                else:
                    kept.append(a)
            return e["directory"], kept
    sys.exit(f"check_layering: no C++ compile command of {target} in compile_commands.json")


def compile_probe(directory, argv, probe_dir, name, headers):
    path = os.path.join(probe_dir, name + ".cpp")
    with open(path, "w") as f:
        f.write("".join(f'#include "{h}"\n' for h in headers))
    r = subprocess.run(argv + ["-fsyntax-only", path], cwd=directory, capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compile-commands", required=True)
    ap.add_argument("--folder", required=True, choices=sorted(BY_FOLDER))
    ap.add_argument("--work", required=True, help="an empty folder for the probes (outside the source tree)")
    args = ap.parse_args()
    with open(args.compile_commands) as f:
        entries = json.load(f)
    target = BY_FOLDER[args.folder][0]
    directory, argv = library_command(entries, target)
    os.makedirs(args.work, exist_ok=True)

    allowed = [h for t in closure(target) for h in BY_TARGET[t][1]]
    rc, out = compile_probe(directory, argv, args.work, "allowed", allowed)
    ok = rc == 0
    print(f"{target}: own and linked headers {', '.join(allowed)}: {'compile' if ok else 'FAIL to compile'}")
    if not ok:
        print(out)

    above = LAYERS[[t for t, *_ in LAYERS].index(target) + 1:]
    for upper, _, headers, _ in above:
        for h in headers:
            rc, out = compile_probe(directory, argv, args.work, "upward_" + h.replace("/", "_"), [h])
            not_found = rc != 0 and h in out and ("No such file" in out or "file not found" in out)
            print(f"{target}: #include \"{h}\" ({upper}): {'not found, as it must be' if not_found else 'RESOLVED'}")
            if not not_found:
                ok = False
                print(out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
