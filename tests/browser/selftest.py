#!/usr/bin/env python3
"""Shows that check_report_in_browser.py passes a good page and fails each bad one for the right reason.

Every fixture in tests/data/reports/browser has one defect (or none: ok.html); the checker must exit 1 with
exactly the expected FAIL lines, write the screenshot anyway, and leave no browser process or temporary
directory behind, also when it stops on a timeout.

Usage: selftest.py --checker check_report_in_browser.py --fixtures DIR --out DIR
Exit codes: 0 all cases behaved, 1 a case did not, 77 no chromium here (ctest SKIP_RETURN_CODE).
"""

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXIT_SKIPPED = 77

# (case, page, expectations, extra checker arguments, exit code, number of FAIL lines, substrings of the output)
CASES = [
    ("ok", "ok", "ok", [], 0, 0, ["OK: every check passed", "2 charts (bar 1, line 1)"]),
    ("console_error", "console_error", "console_error", [], 1, 1,
     ["FAIL: console.error at file://", "fixture: boom"]),
    ("uncaught_exception", "uncaught_exception", "uncaught_exception", [], 1, 1,
     ["FAIL: uncaught exception at file://", "fixture: kaboom"]),
    # The failed load is also a browser log error, hence two lines.
    ("outgoing_request", "outgoing_request", "outgoing_request", [], 1, 2,
     ["FAIL: request leaving the page: http://127.0.0.1:9/x.png (Image)"]),
    ("file_request", "file_request", "file_request", [], 1, 1,
     ["FAIL: request leaving the page: file:///etc/hostname (Image)"]),
    ("csp_violation", "csp_violation", "csp_violation", [], 1, 1,
     ["FAIL: browser log error (security)", "Content Security Policy directive 'style-src 'none''"]),
    ("missing_section", "missing_section", "missing_section", [], 1, 1,
     ['FAIL: section #results: missing (no element with id="results")']),
    ("hidden_section", "hidden_section", "hidden_section", [], 1, 1,
     ["FAIL: section #results: not visible (rendered size 0x0)"]),
    ("wrong_chart_count", "wrong_chart_count", "wrong_chart_count", [], 1, 1,
     ["FAIL: charts: expected 2 svg.chart[data-chart=bar], found 1"]),
    ("chart_without_axis", "chart_without_axis", "chart_without_axis", [], 1, 1,
     ['FAIL: chart #1 (line "tokens/s against batch size"): 1 <text> label(s) besides its title']),
    ("chart_defects", "chart_defects", "chart_defects", [], 1, 4,
     ["FAIL: charts: 4 svg.chart in total, expected 3; kinds not in the expectations: ['pie']",
      'FAIL: chart #1 (line ""): no <title>', 'FAIL: chart #2 (bar "accuracy"): no <text> label shows a number',
      'FAIL: chart #3 (heatmap "needle in a haystack"): rendered size 0x0']),
    ("markup_text", "markup_text", "markup_text", [], 1, 1, ['FAIL: text not shown as text: "<b>x</b>"']),
    ("javascript_link", "javascript_link", "javascript_link", [], 1, 1,
     ["FAIL: selector \"a[href^='javascript:' i]\": expected 0 match(es), found 1"]),
    ("too_short", "ok", "ok_too_short", [], 1, 1, ["FAIL: page height:", "expected at least 100000"]),
    # Stops while the browser starts: the browser must still be killed and its profile removed.
    ("timeout", "ok", "ok", ["--timeout", "0.05"], 2, 0, ["ERROR: timed out after 0.05 s"]),
    ("missing_chromium_binary", "ok", "ok", ["--chromium", "/nonexistent/chromium"], 2, 0,
     ["ERROR: --chromium names '/nonexistent/chromium', which is not an executable"]),
]


def png_size(path):
    data = Path(path).read_bytes()[:24]
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def processes_mentioning(text):
    """Pids whose command line contains `text` (the checker's private temp dir names the browser profile)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def run_case(case, args):
    # The checker's TMPDIR, short like the system's (see make_short_temp_dir): whatever is left in it, or any
    # process naming it, was not cleaned up.
    tmp = Path(tempfile.mkdtemp(prefix="mlabench-selftest-"))
    try:
        return check_case(case, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_case(case, args, tmp):
    name, page, expect, extra, want_exit, want_fails, substrings = case
    out = Path(args.out)
    screenshot = out / f"{name}.png"
    screenshot.unlink(missing_ok=True)
    command = [sys.executable, args.checker, "--html", str(Path(args.fixtures) / f"{page}.html"),
               "--expect", str(Path(args.fixtures) / f"{expect}.expect.json"),
               "--screenshot", str(screenshot), "--dom-out", str(out / f"{name}.dom.json"), *extra]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, TMPDIR=str(tmp)))
    seconds = time.monotonic() - started
    output = result.stdout + result.stderr
    if result.returncode == EXIT_SKIPPED:
        return name, None, seconds, output
    problems = []
    if result.returncode != want_exit:
        problems.append(f"exit code {result.returncode}, expected {want_exit}")
    fails = [line for line in output.splitlines() if line.startswith("FAIL:")]
    if len(fails) != want_fails:
        problems.append(f"{len(fails)} FAIL lines, expected {want_fails}")
    problems += [f"output lacks {s!r}" for s in substrings if s not in output]
    if want_exit in (0, 1):
        size = png_size(screenshot) if screenshot.exists() else None
        if size is None or size[0] != 1280 or size[1] < 100:
            problems.append(f"screenshot {screenshot}: {'not a PNG' if screenshot.exists() else 'missing'}"
                            f"{'' if size is None else f' of {size[0]}x{size[1]}, expected 1280 wide'}")
    leftovers = [p.name for p in tmp.iterdir()]
    if leftovers:
        problems.append(f"left behind in its TMPDIR: {leftovers}")
    alive = processes_mentioning(str(tmp))
    if alive:
        problems.append(f"browser processes still running: {alive}")
    return name, problems, seconds, output


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checker", required=True)
    parser.add_argument("--fixtures", required=True)
    parser.add_argument("--out", required=True, help="screenshots and DOM dumps of every case go here")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)

    first = run_case(CASES[0], args)  # tells whether there is a browser at all
    if first[1] is None:
        print(first[3].strip())
        return EXIT_SKIPPED
    # One case at a time: ctest already runs other tests beside this one on a 2-core CI machine.
    results = [first] + [run_case(case, args) for case in CASES[1:]]
    failed = 0
    for name, problems, seconds, output in results:
        if problems is None:
            problems = ["the checker found no chromium here although it did for the first case"]
        if problems:
            failed += 1
            print(f"BAD  {name} ({seconds:.1f} s): " + "; ".join(problems))
            print("     checker output:\n" + "\n".join("       " + line for line in output.strip().splitlines()))
        else:
            print(f"ok   {name} ({seconds:.1f} s)")
    if failed:
        print(f"{failed} of {len(results)} cases misbehaved. HINT: the checker's output is above; screenshots and "
              f"DOM dumps are in {args.out}")
        return 1
    print(f"all {len(results)} cases behaved; screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
