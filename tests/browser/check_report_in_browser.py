#!/usr/bin/env python3
"""Open an mlabench HTML report in headless Chromium and check what a reader would get.

Checks, all in one page load:
  - no console.error / console.assert, no uncaught exception, no browser log error (CSP violations and failed
    loads show up there);
  - no request leaving the page: every URL requested other than the report's own file:// URL must be data:
    (or about:blank); other file:// URLs count as leaving the page;
  - the DOM matches EXPECT.json: sections present, visible and titled by an <h2>; exact chart counts by kind;
    every chart with a <title>, axis or colour-bar text, a numeric label and a non-zero size; texts shown as
    text (not markup); exact selector counts; a minimum page height.
It always writes a full-page screenshot once the page has loaded, even when checks fail: that is what a human
looks at.

Usage:
  check_report_in_browser.py --html REPORT.html --expect EXPECT.json --screenshot OUT.png
                             [--dom-out DOM.json] [--chromium PATH] [--timeout 60]

Exit codes: 0 every check passed; 1 a check failed (one "FAIL:" line each); 2 usage error, browser error or
timeout; 77 no chromium found (ctest SKIP_RETURN_CODE).

Chromium is driven through the DevTools protocol over --remote-debugging-pipe: the browser reads commands from
its fd 3 and writes replies and events to its fd 4, each message JSON followed by a NUL byte.
"""

import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_ERROR, EXIT_SKIPPED = 0, 1, 2, 77
VIEWPORT_WIDTH, VIEWPORT_HEIGHT = 1280, 900
MAX_SCREENSHOT_HEIGHT = 16000  # a taller page is cut off: the PNG stays a few MB
SETTLE_QUIET_S = 0.3  # after the load event, the page counts as settled once no event arrived for this long
SETTLE_MAX_S = 3.0
EXPECT_KEYS = {"sections", "charts", "texts", "selectors", "min_body_height"}

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",  # CI runs as root, where Chromium refuses to start sandboxed
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers often have a 64 MB /dev/shm, too small for the renderer
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-hang-monitor",
    "--disable-popup-blocking",
    "--disable-renderer-backgrounding",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication,CertificateTransparencyComponentUpdater",
    "--metrics-recording-only",
    "--password-store=basic",
    "--use-mock-keychain",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    f"--window-size={VIEWPORT_WIDTH},{VIEWPORT_HEIGHT}",
    # No name resolves: a report that names a host still shows up as a request, but nothing reaches the
    # network when the checker runs on a developer's machine.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--remote-debugging-pipe",
]

# Runs in an isolated world (same DOM, fresh globals), so a page script that replaced DOM methods cannot fool it.
# It only gathers facts; Python decides what is a failure.
DOM_PROBE_JS = r"""
(args) => {
  const size = (el) => { const r = el.getBoundingClientRect(); return {width: r.width, height: r.height}; };
  const sections = args.sections.map((id) => {
    const el = document.getElementById(id);
    if (!el) return {id, exists: false};
    const h2 = el.querySelector('h2');
    return {id, exists: true, tag: el.tagName.toLowerCase(), ...size(el), h2: h2 ? h2.textContent.trim() : null};
  });
  const charts = Array.from(document.querySelectorAll('svg.chart')).map((svg, index) => {
    const titleEl = Array.from(svg.children).find((c) => c.tagName.toLowerCase() === 'title');
    const title = titleEl ? titleEl.textContent.trim() : '';
    // The chart's own title may also be drawn as a <text>; it is neither an axis nor a colour bar.
    const texts = Array.from(svg.querySelectorAll('text'))
        .map((t) => t.textContent.trim()).filter((t) => t !== '' && t !== title);
    return {index, kind: svg.getAttribute('data-chart'), title, ...size(svg), text_count: texts.length,
            numeric_text_count: texts.filter((t) => /[0-9]/.test(t)).length, texts: texts.slice(0, 40)};
  });
  // Text a reader sees as text: every text node outside script/style (textContent would include their source).
  let shown = '';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.parentElement || !node.parentElement.closest('script,style,noscript,template')) shown += node.data;
  }
  const selectors = args.selectors.map((selector) => {
    try { return {selector, count: document.querySelectorAll(selector).length}; }
    catch (e) { return {selector, error: String(e.message)}; }
  });
  return {
    url: document.URL, title: document.title,
    section_ids_on_page: Array.from(document.querySelectorAll('[id]')).filter((el) => el.querySelector('h2'))
        .map((el) => el.id),
    sections, charts, selectors,
    texts: args.texts.map((text) => ({text, shown: shown.includes(text)})),
    body_height: Math.ceil(document.body.getBoundingClientRect().height),
  };
}
"""


class CheckerError(Exception):
    """Stops the check without a verdict on the report (exit 2): bad arguments, a browser problem, a timeout."""


class ChromiumNotFound(Exception):
    pass


# ----------------------------------------------------------------------------------------------------------------
# Arguments and expectations


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", required=True, help="the report to open")
    parser.add_argument("--expect", required=True, help="JSON with sections, charts, texts, selectors, ...")
    parser.add_argument("--screenshot", required=True, help="full-page PNG written here")
    parser.add_argument("--dom-out", help="JSON of everything found (sections, charts, console, requests, ...)")
    parser.add_argument("--chromium", help="browser binary (default: $CHROMIUM, /usr/lib/chromium/chromium, "
                        "then chromium / chromium-browser / google-chrome on PATH)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole check (default 60)")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout must be positive, got {args.timeout}")
    return args


def load_expect(path):
    try:
        expect = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckerError(f"cannot read the expectations {path}: {e}. HINT: pass a JSON object, see "
                           "tests/browser/README.md") from e

    def bad(what):
        return CheckerError(f"{path}: {what}. HINT: see the EXPECT.json format in tests/browser/README.md")

    if not isinstance(expect, dict):
        raise bad("the top level must be an object")
    unknown = sorted(set(expect) - EXPECT_KEYS)
    if unknown:
        raise bad(f"unknown keys {unknown}; known: {sorted(EXPECT_KEYS)}")
    for key in ("sections", "texts"):
        if not all(isinstance(s, str) and s for s in expect.setdefault(key, [])):
            raise bad(f'"{key}" must be a list of non-empty strings')
    charts = expect.get("charts")
    if charts is not None and not (isinstance(charts, dict) and all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in charts.values())):
        raise bad('"charts" must map a chart kind to a count >= 0, e.g. {"line": 3, "bar": 4}')
    selectors = expect.setdefault("selectors", [])
    for s in selectors:
        if not (isinstance(s, dict) and set(s) == {"selector", "count"} and isinstance(s["selector"], str)
                and isinstance(s["count"], int) and not isinstance(s["count"], bool) and s["count"] >= 0):
            raise bad(f'each "selectors" entry must be {{"selector": "CSS", "count": N >= 0}}, got {s!r}')
    height = expect.get("min_body_height")
    if height is not None and not (isinstance(height, (int, float)) and not isinstance(height, bool)):
        raise bad('"min_body_height" must be a number of CSS pixels')
    return expect


def find_chromium(explicit):
    """The browser binary. Debian's /usr/bin/chromium is a shell wrapper that adds flags from /etc/chromium.d;
    the real binary behind it is preferred. An explicit path that does not exist is an error, not a skip."""
    wanted = explicit or os.environ.get("CHROMIUM")
    if wanted:
        found = shutil.which(wanted)
        if not found:
            source = "--chromium" if explicit else "$CHROMIUM"
            raise CheckerError(f"{source} names {wanted!r}, which is not an executable. HINT: point it at the "
                               "chromium binary, e.g. /usr/lib/chromium/chromium, or leave it unset")
        return found
    if os.access("/usr/lib/chromium/chromium", os.X_OK):
        return "/usr/lib/chromium/chromium"
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise ChromiumNotFound()


# ----------------------------------------------------------------------------------------------------------------
# Chromium over the DevTools pipe


class Deadline:
    def __init__(self, seconds):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self):
        return self.end - time.monotonic()

    def check(self, waiting_for):
        if self.left() <= 0:
            raise CheckerError(f"timed out after {self.seconds:g} s waiting for {waiting_for}. HINT: a slow "
                               "machine may need a larger --timeout; a page that never finishes loading is a "
                               "report bug")


def make_short_temp_dir():
    """A private directory short enough for the "org.chromium.Chromium.<random>/SingletonSocket" that Chromium
    creates inside it: a unix socket path longer than 107 bytes makes Chromium abort at start."""
    path = tempfile.mkdtemp(prefix="mlabench-chromium-")
    if len(path.encode()) > 56:
        os.rmdir(path)
        path = tempfile.mkdtemp(prefix="mlabench-chromium-", dir="/tmp")
    return path


class Browser:
    """One Chromium process with its own temporary profile. close() kills its whole process group."""

    def __init__(self, binary, deadline):
        self.deadline = deadline
        self.temp_dir = make_short_temp_dir()
        self.log_path = os.path.join(self.temp_dir, "chromium.log")
        self.on_event = lambda message: None
        self.last_event_time = time.monotonic()
        self._next_id = 0
        self._replies = {}
        self._buffer = bytearray()
        self._scanned = 0
        # The browser's ends must become its fds 3 and 4. They are first moved to free fds >= 10 so that the
        # dup2 calls in the child cannot overwrite one another.
        cmd_read, self._cmd_write = os.pipe()
        self._reply_read, reply_write = os.pipe()
        child_cmd = fcntl.fcntl(cmd_read, fcntl.F_DUPFD_CLOEXEC, 10)
        child_reply = fcntl.fcntl(reply_write, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(cmd_read)
        os.close(reply_write)

        def map_pipe_fds():  # in the child, before exec
            os.dup2(child_cmd, 3)
            os.dup2(child_reply, 4)

        # Chromium's singleton socket directory (and its shared memory, with --disable-dev-shm-usage) goes to
        # TMPDIR and survives a SIGKILL: keep them in the directory that close() removes.
        env = dict(os.environ, TMPDIR=self.temp_dir, XDG_CONFIG_HOME=self.temp_dir, XDG_CACHE_HOME=self.temp_dir)
        argv = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={os.path.join(self.temp_dir, 'profile')}",
                "about:blank"]
        try:
            with open(self.log_path, "wb") as log:
                # close_fds=False because pass_fds cannot renumber fds; Python's own fds are close-on-exec.
                self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                                close_fds=False, preexec_fn=map_pipe_fds, start_new_session=True)
        except OSError as e:
            self._close_fds()
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            raise CheckerError(f"cannot start {binary}: {e}. HINT: check that it runs: {binary} --version") from e
        finally:
            os.close(child_cmd)
            os.close(child_reply)

    def _close_fds(self):
        for fd in (self._cmd_write, self._reply_read):
            try:
                os.close(fd)
            except OSError:
                pass

    def log_tail(self, lines=15):
        try:
            text = Path(self.log_path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def close(self):
        try:
            # The renderer, GPU and network processes share the group, also when the browser itself has died.
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self._close_fds()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _died(self, while_doing):
        try:
            code = self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = "none yet"
        tail = self.log_tail()
        return CheckerError(f"chromium closed the DevTools pipe while {while_doing} (exit code {code}). "
                            f"HINT: run it by hand to see why; its last log lines:\n{tail}")

    def _pump(self, timeout, while_doing):
        """Reads whatever arrives within `timeout` seconds and dispatches it."""
        ready, _, _ = select.select([self._reply_read], [], [], max(0.0, timeout))
        if not ready:
            return
        chunk = os.read(self._reply_read, 1 << 20)
        if not chunk:
            raise self._died(while_doing)
        self._buffer += chunk
        while True:
            end = self._buffer.find(b"\0", self._scanned)
            if end < 0:
                self._scanned = len(self._buffer)
                return
            message = json.loads(self._buffer[:end])
            del self._buffer[:end + 1]
            self._scanned = 0
            if "id" in message:
                self._replies[message["id"]] = message
            else:
                self.last_event_time = time.monotonic()
                self.on_event(message)

    def call(self, method, params=None, session_id=None):
        self._next_id += 1
        message_id = self._next_id
        message = {"id": message_id, "method": method, "params": params or {}}
        if session_id:
            message["sessionId"] = session_id
        data = json.dumps(message).encode() + b"\0"
        try:
            while data:
                data = data[os.write(self._cmd_write, data):]
        except BrokenPipeError as e:
            raise self._died(f"sending {method}") from e
        while message_id not in self._replies:
            self.deadline.check(f"chromium to answer {method}")
            self._pump(self.deadline.left(), f"waiting for the answer to {method}")
        reply = self._replies.pop(message_id)
        if "error" in reply:
            raise CheckerError(f"chromium answered {method} with an error: {reply['error']}. HINT: this chromium "
                               "may be too old for the DevTools calls used here; try a newer one")
        return reply["result"]

    def wait_until(self, condition, waiting_for):
        while not condition():
            self.deadline.check(waiting_for)
            self._pump(min(0.1, self.deadline.left()), f"waiting for {waiting_for}")

    def settle(self, quiet_s, max_s):
        """Lets late events in: returns once nothing arrived for quiet_s seconds, or after max_s."""
        give_up = time.monotonic() + min(max_s, max(0.0, self.deadline.left()))
        while True:
            now = time.monotonic()
            quiet_until = self.last_event_time + quiet_s
            if now >= quiet_until or now >= give_up:
                return
            self._pump(min(quiet_until, give_up) - now, "letting the page settle")


# ----------------------------------------------------------------------------------------------------------------
# One page load and what was seen during it


def describe_location(url, line):
    if not url:
        return ""
    return f" at {url}:{line + 1}" if line is not None else f" at {url}"


def remote_object_text(obj):
    if "value" in obj:
        return obj["value"] if isinstance(obj["value"], str) else json.dumps(obj["value"])
    return obj.get("unserializableValue") or obj.get("description") or obj.get("type", "?")


class PageRecorder:
    """Everything the page did while loading: requests, console messages, exceptions, log entries."""

    def __init__(self):
        self.session_id = None
        self.loaded = False
        self.requests = []
        self.console = []
        self.exceptions = []
        self.log = []
        self.crashed = False

    def on_event(self, message):
        if message.get("sessionId") != self.session_id:
            return
        method, params = message["method"], message.get("params", {})
        if method == "Page.loadEventFired":
            self.loaded = True
        elif method == "Network.requestWillBeSent":
            self.requests.append({"url": params["request"]["url"], "type": params.get("type", "")})
        elif method == "Runtime.consoleAPICalled":
            frames = (params.get("stackTrace") or {}).get("callFrames") or [{}]
            self.console.append({"type": params["type"],
                                 "text": " ".join(remote_object_text(a) for a in params.get("args", [])),
                                 "url": frames[0].get("url", ""), "line": frames[0].get("lineNumber")})
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            exception = details.get("exception") or {}
            text = exception.get("description") or details.get("text", "")
            self.exceptions.append({"text": text.splitlines()[0] if text else "",
                                    "url": details.get("url", ""), "line": details.get("lineNumber")})
        elif method == "Log.entryAdded":
            entry = params["entry"]
            self.log.append({"level": entry["level"], "source": entry.get("source", ""), "text": entry["text"],
                             "url": entry.get("url", ""), "line": entry.get("lineNumber")})
        elif method in ("Inspector.targetCrashed", "Inspector.detached"):
            self.crashed = True


def load_page(browser, url, recorder):
    target = browser.call("Target.createTarget", {"url": "about:blank"})
    attached = browser.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
    recorder.session_id = attached["sessionId"]
    browser.on_event = recorder.on_event
    session = recorder.session_id
    for domain in ("Network", "Runtime", "Log", "Page"):
        browser.call(f"{domain}.enable", session_id=session)
    browser.call("Emulation.setDeviceMetricsOverride", {"width": VIEWPORT_WIDTH, "height": VIEWPORT_HEIGHT,
                                                        "deviceScaleFactor": 1, "mobile": False}, session)
    navigation = browser.call("Page.navigate", {"url": url}, session)
    if navigation.get("errorText"):
        raise CheckerError(f"chromium could not open {url}: {navigation['errorText']}. HINT: check that the "
                           "file exists and is readable")
    browser.wait_until(lambda: recorder.loaded or recorder.crashed, f"the load event of {url}")
    if recorder.crashed:
        raise CheckerError(f"the page {url} crashed while loading. HINT: open it in a browser by hand")
    browser.settle(SETTLE_QUIET_S, SETTLE_MAX_S)
    return session


def take_screenshot(browser, session, out_path):
    metrics = browser.call("Page.getLayoutMetrics", session_id=session)
    content = metrics.get("cssContentSize") or metrics["contentSize"]
    width = max(1, int(round(content["width"])))
    height = max(1, min(MAX_SCREENSHOT_HEIGHT, int(round(content["height"]))))
    shot = browser.call("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}}, session)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(base64.b64decode(shot["data"]))
    return {"path": str(out_path), "width": width, "height": height,
            "page_height": content["height"], "cut_off": content["height"] > MAX_SCREENSHOT_HEIGHT}


def probe_dom(browser, session, expect):
    frame_id = browser.call("Page.getFrameTree", session_id=session)["frameTree"]["frame"]["id"]
    world = browser.call("Page.createIsolatedWorld", {"frameId": frame_id, "worldName": "mlabench-checker"},
                         session)
    probe_args = {"sections": expect["sections"], "texts": expect["texts"],
                  "selectors": [s["selector"] for s in expect["selectors"]]}
    result = browser.call("Runtime.evaluate", {
        "expression": f"({DOM_PROBE_JS})({json.dumps(probe_args)})", "contextId": world["executionContextId"],
        "returnByValue": True}, session)
    if "exceptionDetails" in result:
        raise CheckerError(f"the DOM probe threw: {result['exceptionDetails'].get('text')} "
                           f"{result['result'].get('description', '')}. HINT: this is a checker bug")
    return result["result"]["value"]


# ----------------------------------------------------------------------------------------------------------------
# Verdict


def event_failures(recorder, report_url):
    failures = []
    for message in recorder.console:
        if message["type"] in ("error", "assert"):
            failures.append(f"console.{message['type']}{describe_location(message['url'], message['line'])}: "
                            f"{message['text']}")
    for exception in recorder.exceptions:
        failures.append(f"uncaught exception{describe_location(exception['url'], exception['line'])}: "
                        f"{exception['text']}")
    for entry in recorder.log:
        if entry["level"] == "error":
            failures.append(f"browser log error ({entry['source']}){describe_location(entry['url'], entry['line'])}"
                            f": {entry['text']}")
    for request in recorder.requests:
        url = request["url"]
        if url != report_url and not url.startswith("data:") and url != "about:blank":
            failures.append(f"request leaving the page: {url} ({request['type'] or 'unknown type'}); only the "
                            "report itself and data: URLs may be loaded")
    return failures


def chart_name(chart):
    return f"chart #{chart['index'] + 1} ({chart['kind'] or 'no data-chart'} \"{chart['title'][:60]}\")"


def dom_failures(dom, expect):
    failures = []
    for section in dom["sections"]:
        where = f"section #{section['id']}"
        if not section["exists"]:
            failures.append(f"{where}: missing (no element with id=\"{section['id']}\"); sections with an <h2> on "
                            f"the page: {dom['section_ids_on_page']}")
            continue
        if section["width"] <= 0 or section["height"] <= 0:
            failures.append(f"{where}: not visible (rendered size {section['width']:g}x{section['height']:g})")
        if section["h2"] is None:
            failures.append(f"{where}: has no <h2> heading")
        elif not section["h2"]:
            failures.append(f"{where}: its <h2> is empty")

    charts = dom["charts"]
    expected_counts = expect.get("charts")
    if expected_counts is not None:
        for kind, expected in sorted(expected_counts.items()):
            found = sum(1 for c in charts if c["kind"] == kind)
            if found != expected:
                failures.append(f"charts: expected {expected} svg.chart[data-chart={kind}], found {found}")
        unexpected = sorted({str(c["kind"]) for c in charts if c["kind"] not in expected_counts})
        if unexpected:
            failures.append(f"charts: {len(charts)} svg.chart in total, expected {sum(expected_counts.values())}; "
                            f"kinds not in the expectations: {unexpected}")
    for chart in charts:
        name = chart_name(chart)
        if not chart["title"]:
            failures.append(f"{name}: no <title> (or an empty one)")
        if chart["text_count"] < 2:
            failures.append(f"{name}: {chart['text_count']} <text> label(s) besides its title; expected an axis "
                            "or colour bar with at least 2")
        if chart["numeric_text_count"] == 0 and chart["text_count"] >= 2:
            failures.append(f"{name}: no <text> label shows a number (axis ticks or colour-bar values)")
        if chart["width"] <= 0 or chart["height"] <= 0:
            failures.append(f"{name}: rendered size {chart['width']:g}x{chart['height']:g}")

    for text in dom["texts"]:
        if not text["shown"]:
            failures.append(f"text not shown as text: {json.dumps(text['text'])} does not appear in the page's "
                            "text (outside script/style); markup or a missing escape?")
    for found, wanted in zip(dom["selectors"], expect["selectors"]):
        if "error" in found:
            failures.append(f"selector {json.dumps(found['selector'])}: not valid CSS ({found['error']})")
        elif found["count"] != wanted["count"]:
            failures.append(f"selector {json.dumps(found['selector'])}: expected {wanted['count']} match(es), "
                            f"found {found['count']}")
    min_height = expect.get("min_body_height")
    if min_height is not None and dom["body_height"] < min_height:
        failures.append(f"page height: {dom['body_height']} px, expected at least {min_height:g}")
    return failures


def chart_counts(dom):
    counts = {}
    for chart in dom["charts"]:
        counts[str(chart["kind"])] = counts.get(str(chart["kind"]), 0) + 1
    return counts


def check(args, expect, chromium):
    html = Path(args.html).resolve()
    if not html.is_file():
        raise CheckerError(f"--html {args.html}: no such file. HINT: make the report first (mlabench report)")
    report_url = html.as_uri()
    deadline = Deadline(args.timeout)
    browser = Browser(chromium, deadline)
    try:
        recorder = PageRecorder()
        version = browser.call("Browser.getVersion")["product"]
        session = load_page(browser, report_url, recorder)
        screenshot = take_screenshot(browser, session, args.screenshot)
        dom = probe_dom(browser, session, expect)
        browser.settle(SETTLE_QUIET_S, SETTLE_MAX_S)  # the full-page capture may have loaded lazy content
    finally:
        browser.close()
    failures = event_failures(recorder, report_url) + dom_failures(dom, expect)
    if args.dom_out:
        found = {"report_url": report_url, "browser": version, "screenshot": screenshot,
                 "chart_counts": chart_counts(dom), "chart_total": len(dom["charts"]), "dom": dom,
                 "requests": recorder.requests, "console": recorder.console, "exceptions": recorder.exceptions,
                 "log": recorder.log, "failures": failures}
        Path(args.dom_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.dom_out).write_text(json.dumps(found, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return failures, dom, recorder, screenshot, version


def main(argv):
    args = parse_args(argv)
    # ctest and CI stop a test with SIGTERM: turn it into an exception so the browser is still killed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(EXIT_ERROR))
    try:
        expect = load_expect(args.expect)
        chromium = find_chromium(args.chromium)
        failures, dom, recorder, screenshot, version = check(args, expect, chromium)
    except ChromiumNotFound:
        print("SKIPPED: chromium not found. HINT: apt-get install chromium, or pass --chromium PATH")
        return EXIT_SKIPPED
    except CheckerError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return EXIT_ERROR
    counts = ", ".join(f"{kind} {n}" for kind, n in sorted(chart_counts(dom).items())) or "none"
    cut = f", cut off: the page is {screenshot['page_height']:.0f} px tall" if screenshot["cut_off"] else ""
    print(f"{args.html}: {len(dom['sections'])} sections checked, {len(dom['charts'])} charts ({counts}), "
          f"{len(recorder.requests)} requests, {len(recorder.console)} console messages; {version}; screenshot "
          f"{screenshot['path']} ({screenshot['width']}x{screenshot['height']}{cut})")
    if failures:
        for failure in failures:
            print(f"FAIL: {failure}")
        print(f"{len(failures)} check(s) failed. HINT: look at the screenshot"
              f"{' and ' + args.dom_out if args.dom_out else ' (and pass --dom-out for what was found)'}")
        return EXIT_FAILED
    print("OK: every check passed")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
