"""Headless Chromium for the UI tests, driven over the Chrome DevTools Protocol (CDP).

Chromium (Debian's `chromium`) is started with `--remote-debugging-pipe`: CDP messages are
NUL-separated JSON on a pair of pipes, so no driver process, no port and no Python package
beyond the standard library is involved. One Chromium per test session; one fresh tab per test.

API for tests (fixtures in conftest.py):

    def test_x(lookout, page):                 # `page`: a new tab; `browser`: the Chromium
        page.goto(f"{lookout.http}/services")  # waits for the load event, then for hydration
        assert "checkout" in page.text("table")
        page.click("a.navlink", text="Logs")   # a real mouse click at the element's centre
        page.wait_for("h1", text="Logs")       # waits until a match (containing text) exists
        page.type("input[name=q]", "error")    # focus, select all, type (input events fire)
        page.press("Enter")
        page.wait_url(lambda u: "q=error" in u)
        page.screenshot("/tmp/x.png")

Navigation and waiting
    page.goto(url, wait="hydrated"|"load"|None, timeout=20) -> HTTP status of the document.
        "hydrated" waits for `<body data-hydrated="1">`, which the app sets from an Effect once
        the wasm has hydrated the page (ui/src/app.rs); a binary built without the wasm never
        sets it, and the error says so.
    page.status                      HTTP status of the last document goto() loaded
    page.url                         current location.href (client-side routing included)
    page.wait_for(selector, text=None, timeout=10, visible=False) -> first match's innerText
    page.wait_gone(selector, timeout=10)
    page.wait_until(js_expr, timeout=10, what=None) -> the truthy value of the JS expression
    page.wait_url(substring_or_predicate, timeout=10) -> url
Reading the page (CSS selectors; `text=` narrows to elements whose innerText contains it)
    page.text(selector="body", text=None) -> innerText of the first match (AssertionError if none)
    page.texts(selector) -> [innerText, ...]      page.count(selector) -> int
    page.exists(selector, text=None) -> bool      page.attr(selector, name) -> str | None
    page.value(selector) -> str (form fields)     page.html() -> the live DOM as HTML
    page.eval(js_expr) -> JSON value (promises are awaited; a JS exception raises JSError)
Acting (mouse and keyboard events go through Chromium's input pipeline, as a user's would)
    page.click(selector, text=None)      scrolls into view, clicks the centre; fails if covered
    page.hover(selector, text=None)
    page.drag(selector, x0, x1, y=0.5)   press at fraction x0 of the element's width, move to x1,
                                         release (chart drag-select)
    page.type(selector, text, clear=True)
    page.press(key)                      "Enter", "Escape", "Tab", "Backspace", "ArrowDown", ...
    page.select(selector, value)         a <select>'s option by value (input+change events fire)
    page.submit(selector)                requestSubmit() of the form (or the field's form)
Browser state
    page.set_headers({"Accept-Language": "zh-CN"})   extra headers on every request of the tab
    page.set_viewport(1400, 900)         (the default size)
    page.screenshot(path, full_page=False) -> path (PNG)
    page.timing() -> {"ttfb_ms", "dom_content_loaded_ms", "load_ms", "hydrated_ms"}: milliseconds
        since navigation start of the last full load (hydrated_ms None if never hydrated)
Console errors
    page.errors        every console.error/console.assert, uncaught exception, unhandled
                       rejection and browser log error (e.g. a failed resource load) so far
    page.allow_errors(regex)   expected errors matching the regex are not held against the test
    page.unexpected_errors()   page.errors minus the allowed ones
    The `page` fixture fails the test at teardown when unexpected_errors() is not empty.

Environment: LOOKOUT_CHROMIUM names the browser binary (default: `chromium` on PATH);
LOOKOUT_BROWSER_LOG=1 copies Chromium's own stderr to ours (otherwise it goes to a log file
in the profile directory, quoted when the browser dies).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

DEFAULT_SIZE = (1400, 900)
POLL_S = 0.05

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    # /dev/shm is small in containers; a full one crashes tabs
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
]

# Records when the hydration marker appears (ms since navigation start) for page.timing().
_HYDRATION_WATCH = """
(() => {
  const mark = () => {
    if (window.__lookoutHydratedAt === undefined && document.body
        && document.body.dataset.hydrated === "1") {
      window.__lookoutHydratedAt = performance.now();
    }
  };
  new MutationObserver(mark).observe(document, {
    attributes: true, subtree: true, attributeFilter: ["data-hydrated"],
  });
  window.addEventListener("unhandledrejection", (e) => {
    console.error("unhandled promise rejection: " + (e.reason && e.reason.stack || e.reason));
  });
})();
"""

# key -> (key, code, windowsVirtualKeyCode, text)
_KEYS = {
    "Enter": ("Enter", "Enter", 13, "\r"),
    "Escape": ("Escape", "Escape", 27, ""),
    "Tab": ("Tab", "Tab", 9, ""),
    "Backspace": ("Backspace", "Backspace", 8, ""),
    "Delete": ("Delete", "Delete", 46, ""),
    "ArrowUp": ("ArrowUp", "ArrowUp", 38, ""),
    "ArrowDown": ("ArrowDown", "ArrowDown", 40, ""),
    "ArrowLeft": ("ArrowLeft", "ArrowLeft", 37, ""),
    "ArrowRight": ("ArrowRight", "ArrowRight", 39, ""),
    "Home": ("Home", "Home", 36, ""),
    "End": ("End", "End", 35, ""),
    "PageDown": ("PageDown", "PageDown", 34, ""),
    "PageUp": ("PageUp", "PageUp", 33, ""),
}


class BrowserError(RuntimeError):
    """Chromium died, or a CDP command failed."""


class JSError(AssertionError):
    """A JavaScript expression evaluated by a test threw."""


def chromium_binary() -> str:
    name = os.environ.get("LOOKOUT_CHROMIUM", "chromium")
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"browser {name!r} not found; install it with `apt-get install -y chromium` "
            "(scripts/test does) or set LOOKOUT_CHROMIUM"
        )
    return path


class Browser:
    """One headless Chromium process and its CDP connection."""

    def __init__(self, size: tuple[int, int] = DEFAULT_SIZE, timeout: float = 30.0):
        self.size = size
        self.timeout = timeout
        self.profile = Path(tempfile.mkdtemp(prefix="lookout-chromium-"))
        self.log_path = self.profile / "chromium.log"
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # guards _pending, _sessions
        self._write_lock = threading.Lock()
        self._pending: dict[int, dict] = {}
        self._results: dict[int, dict] = {}
        self._done = threading.Condition(self._lock)
        self._sessions: dict[str, Page] = {}
        self._closed = False
        self.dead: str | None = None
        args = [
            chromium_binary(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={self.profile / 'profile'}",
            f"--window-size={size[0]},{size[1]}",
            "about:blank",
        ]
        log = None if os.environ.get("LOOKOUT_BROWSER_LOG") else open(self.log_path, "wb")
        # Chromium reads CDP from fd 3 and writes to fd 4: move our pipes there, and keep
        # Chromium's own stdout out of the protocol stream.
        self.proc = subprocess.Popen(
            ["sh", "-c", 'exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2', *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
        if log is not None:
            log.close()
        self._reader = threading.Thread(target=self._read_loop, name="cdp-reader", daemon=True)
        self._reader.start()
        try:
            self.version = self.send("Browser.getVersion")["product"]
        except Exception:
            self.close()
            raise

    # ---- protocol --------------------------------------------------------------------
    def _read_loop(self) -> None:
        buf = b""
        stream = self.proc.stdout
        while True:
            chunk = stream.read1(1 << 16) if hasattr(stream, "read1") else stream.read(1 << 16)
            if not chunk:
                break
            buf += chunk
            while True:
                end = buf.find(b"\0")
                if end < 0:
                    break
                raw, buf = buf[:end], buf[end + 1 :]
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                self._dispatch(msg)
        with self._lock:
            if not self._closed:
                self.dead = f"chromium exited (code {self.proc.poll()})\n{self.log_tail()}"
            else:
                self.dead = "browser closed"
            self._done.notify_all()

    def _dispatch(self, msg: dict) -> None:
        if "id" in msg:
            with self._lock:
                self._results[msg["id"]] = msg
                self._done.notify_all()
            return
        session = msg.get("sessionId")
        page = self._sessions.get(session) if session else None
        if page is not None:
            page._on_event(msg.get("method", ""), msg.get("params", {}))
        elif msg.get("method") == "Target.detachedFromTarget":
            self._sessions.pop(msg.get("params", {}).get("sessionId"), None)

    def send(
        self,
        method: str,
        params: dict | None = None,
        session: str | None = None,
        timeout: float | None = None,
    ) -> dict:
        """One CDP command; returns its result or raises BrowserError with CDP's message."""
        if self.dead:
            raise BrowserError(self.dead)
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        with self._write_lock:
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError) as e:
                raise BrowserError(f"chromium is gone ({e})\n{self.log_tail()}") from None
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._lock:
            while msg_id not in self._results:
                if self.dead:
                    raise BrowserError(self.dead)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f"CDP {method} got no answer in {timeout or self.timeout}s")
                self._done.wait(left)
            reply = self._results.pop(msg_id)
        if "error" in reply:
            err = reply["error"]
            raise BrowserError(f"CDP {method}: {err.get('message')} {err.get('data', '')}".strip())
        return reply.get("result", {})

    # ---- tabs ------------------------------------------------------------------------
    def new_page(self) -> "Page":
        """A fresh tab (own session, viewport `self.size`), with console capture on."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = Page(self, target, session)
        with self._lock:
            self._sessions[session] = page
        page._setup()
        return page

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "--- chromium log ---\n" + "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        with self._lock:
            self._closed = True
        if self.proc.poll() is None:
            try:
                self.send("Browser.close", timeout=5)
            except BrowserError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                # the whole group: the renderer and GPU helpers are Chromium's children
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    """One tab. See the module docstring for the API."""

    def __init__(self, browser: Browser, target_id: str, session: str):
        self.browser = browser
        self.target_id = target_id
        self.session = session
        self.status: int | None = None
        self.errors: list[str] = []
        self.messages: list[str] = []  # every console message, for failure reports
        self._allowed: list[re.Pattern] = []
        self._cond = threading.Condition()
        self._loads = 0
        self._loader: str | None = None
        self._doc_status: dict[str, int] = {}
        self.closed = False

    def _setup(self) -> None:
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.cdp(f"{domain}.enable")
        self.cdp("Page.addScriptToEvaluateOnNewDocument", {"source": _HYDRATION_WATCH})
        self.set_viewport(*self.browser.size)

    def cdp(self, method: str, params: dict | None = None, timeout: float | None = None) -> dict:
        """A raw CDP command in this tab's session."""
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    # ---- events (reader thread) ------------------------------------------------------
    def _on_event(self, method: str, p: dict) -> None:
        if method == "Runtime.consoleAPICalled":
            text = " ".join(_remote_text(a) for a in p.get("args", []))
            line = f"console.{p.get('type')}: {text}{_where(p.get('stackTrace'))}"
            with self._cond:
                self.messages.append(line)
                if p.get("type") in ("error", "assert"):
                    self.errors.append(line)
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            exc = d.get("exception", {})
            desc = exc.get("description") or exc.get("value") or ""
            line = f"uncaught exception: {d.get('text', '')} {desc}".rstrip()
            line += f" at {d.get('url', '')}:{d.get('lineNumber', 0) + 1}"
            with self._cond:
                self.messages.append(line)
                self.errors.append(line)
        elif method == "Log.entryAdded":
            e = p.get("entry", {})
            line = f"browser {e.get('level')}: {e.get('text', '')} {e.get('url', '')}".rstrip()
            with self._cond:
                self.messages.append(line)
                if e.get("level") == "error":
                    self.errors.append(line)
        elif method == "Network.responseReceived" and p.get("type") == "Document":
            with self._cond:
                self._doc_status[p.get("loaderId", "")] = int(p["response"]["status"])
                self._cond.notify_all()
        elif method == "Page.loadEventFired":
            with self._cond:
                self._loads += 1
                self._cond.notify_all()
        elif method == "Inspector.detached" or method == "Inspector.targetCrashed":
            with self._cond:
                self.errors.append(f"tab {method}")
                self._cond.notify_all()

    # ---- errors ----------------------------------------------------------------------
    def allow_errors(self, pattern: str) -> None:
        """Errors matching `pattern` (re.search) are expected and do not fail the test."""
        self._allowed.append(re.compile(pattern))

    def unexpected_errors(self) -> list[str]:
        with self._cond:
            errs = list(self.errors)
        return [e for e in errs if not any(p.search(e) for p in self._allowed)]

    def clear_errors(self) -> None:
        with self._cond:
            self.errors.clear()

    def assert_no_errors(self) -> None:
        errs = self.unexpected_errors()
        assert not errs, "console errors on the page:\n" + "\n".join(errs)

    # ---- navigation ------------------------------------------------------------------
    def goto(self, url: str, wait: str | None = "hydrated", timeout: float = 20.0) -> int | None:
        """Loads `url` in this tab; waits for the load event and then (by default) hydration.
        Returns the document's HTTP status (also kept in `page.status`)."""
        with self._cond:
            loads_before = self._loads
        nav = self.cdp("Page.navigate", {"url": url}, timeout=timeout)
        loader = nav.get("loaderId", "")
        if nav.get("errorText"):
            # e.g. ERR_HTTP_RESPONSE_CODE_FAILURE: an error status with an empty body
            with self._cond:
                self.status = self._doc_status.get(loader)
            raise AssertionError(
                f"navigation to {url} failed: {nav['errorText']} (HTTP status {self.status})"
            )
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._loads == loads_before:
                left = deadline - time.monotonic()
                if left <= 0 or self.browser.dead:
                    raise AssertionError(
                        f"{url}: no load event within {timeout}s"
                        + (f" ({self.browser.dead})" if self.browser.dead else "")
                        + self._errors_note()
                    )
                self._cond.wait(min(left, 0.5))
            self.status = self._doc_status.get(loader)
        if wait == "hydrated":
            self.wait_hydrated(max(deadline - time.monotonic(), 1.0))
        return self.status

    def wait_hydrated(self, timeout: float = 20.0) -> None:
        """Waits for the app's `<body data-hydrated="1">`."""
        try:
            self.wait_until(
                'document.body && document.body.dataset.hydrated === "1"', timeout, "hydration"
            )
        except AssertionError:
            scripts = self.eval(
                "Array.from(document.querySelectorAll('script')).map(s => s.src || 'inline')"
            )
            if not any("lookout_ui" in s or s == "inline" for s in scripts):
                raise AssertionError(
                    f"{self.url} was not hydrated: it loads no UI script, so the binary was "
                    "built without the wasm (run scripts/build-ui, then cargo build --release)"
                ) from None
            raise AssertionError(
                f"{self.url} was not hydrated within {timeout:.0f}s" + self._errors_note()
            ) from None

    @property
    def url(self) -> str:
        return self.eval("location.href")

    def wait_url(self, match: str | Callable[[str], bool], timeout: float = 10.0) -> str:
        pred = (lambda u: match in u) if isinstance(match, str) else match
        deadline = time.monotonic() + timeout
        while True:
            u = self.url
            if pred(u):
                return u
            if time.monotonic() >= deadline:
                raise AssertionError(f"URL still {u!r} after {timeout}s (waited for {match!r})")
            time.sleep(POLL_S)

    # ---- evaluation ------------------------------------------------------------------
    def eval(self, expr: str, timeout: float | None = None) -> Any:
        """Evaluates a JS expression in the page; returns its JSON value (promises awaited)."""
        r = self.cdp(
            "Runtime.evaluate",
            {"expression": expr, "returnByValue": True, "awaitPromise": True},
            timeout=timeout,
        )
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            desc = d.get("exception", {}).get("description") or d.get("text")
            raise JSError(f"{desc}\n  in: {expr[:300]}")
        return r.get("result", {}).get("value")

    def wait_until(self, expr: str, timeout: float = 10.0, what: str | None = None) -> Any:
        """Polls the JS expression until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = self.eval(expr)
                if last:
                    return last
            except JSError as e:
                last = e
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s waiting for {what or expr}; last: {last!r}"
                    + self._errors_note()
                )
            time.sleep(POLL_S)

    def _find_js(self, selector: str, text: str | None, all_: bool = False) -> str:
        """JS expression: the first (or every) match of selector whose innerText has text."""
        base = f"Array.from(document.querySelectorAll({json.dumps(selector)}))"
        if text is not None:
            base += f".filter(e => (e.innerText || e.textContent || '').includes({json.dumps(text)}))"
        return base if all_ else f"({base}[0] || null)"

    def _describe(self, selector: str, text: str | None) -> str:
        return selector + (f" containing {text!r}" if text is not None else "")

    # ---- reading ---------------------------------------------------------------------
    def text(self, selector: str = "body", text: str | None = None) -> str:
        v = self.eval(f"(e => e && e.innerText)({self._find_js(selector, text)})")
        if v is None:
            raise AssertionError(f"no element {self._describe(selector, text)} on {self.url}")
        return v

    def texts(self, selector: str) -> list[str]:
        return self.eval(f"{self._find_js(selector, None, True)}.map(e => e.innerText)")

    def count(self, selector: str, text: str | None = None) -> int:
        return self.eval(f"{self._find_js(selector, text, True)}.length")

    def exists(self, selector: str, text: str | None = None) -> bool:
        return self.count(selector, text) > 0

    def attr(self, selector: str, name: str) -> str | None:
        return self.eval(
            f"(e => e ? e.getAttribute({json.dumps(name)}) : undefined)"
            f"({self._find_js(selector, None)})"
        )

    def value(self, selector: str) -> str:
        v = self.eval(f"(e => e ? e.value : undefined)({self._find_js(selector, None)})")
        if v is None:
            raise AssertionError(f"no form field {selector} on {self.url}")
        return v

    def html(self) -> str:
        return self.eval("document.documentElement.outerHTML")

    def wait_for(
        self, selector: str, text: str | None = None, timeout: float = 10.0, visible: bool = False
    ) -> str:
        """Waits until an element matches (containing `text`); returns its innerText."""
        cond = "e.getClientRects().length > 0" if visible else "true"
        expr = f"(e => e && ({cond}) ? (e.innerText ?? '') + '\\u0000' : null)({self._find_js(selector, text)})"
        v = self.wait_until(expr, timeout, f"element {self._describe(selector, text)}")
        return v[:-1]

    def wait_gone(self, selector: str, timeout: float = 10.0) -> None:
        self.wait_until(
            f"document.querySelector({json.dumps(selector)}) === null", timeout, f"{selector} gone"
        )

    # ---- acting ----------------------------------------------------------------------
    def _box(self, selector: str, text: str | None) -> dict:
        """Scrolls the element into view; its viewport box."""
        r = self.eval(
            f"""(e => {{
                if (!e) return null;
                e.scrollIntoView({{block: "center", inline: "center"}});
                const r = e.getBoundingClientRect();
                return {{x: r.left, y: r.top, w: r.width, h: r.height}};
            }})({self._find_js(selector, text)})"""
        )
        if r is None:
            raise AssertionError(f"no element {self._describe(selector, text)} on {self.url}")
        if r["w"] <= 0 or r["h"] <= 0:
            raise AssertionError(f"element {self._describe(selector, text)} is not visible")
        return r

    def _mouse(self, kind: str, x: float, y: float, buttons: int = 0, button: str = "none") -> None:
        params = {"type": kind, "x": x, "y": y, "button": button, "buttons": buttons}
        if kind in ("mousePressed", "mouseReleased"):
            params["clickCount"] = 1
        self.cdp("Input.dispatchMouseEvent", params)

    def _check_hit(self, selector: str, text: str | None, x: float, y: float) -> None:
        hit = self.eval(
            f"""(() => {{
                const t = {self._find_js(selector, text)};
                const h = document.elementFromPoint({x}, {y});
                if (!t || !h) return "nothing";
                if (t === h || t.contains(h) || h.contains(t)) return "";
                return h.outerHTML.slice(0, 200);
            }})()"""
        )
        if hit:
            raise AssertionError(
                f"cannot click {self._describe(selector, text)}: covered by {hit}"
            )

    def click(self, selector: str, text: str | None = None) -> None:
        b = self._box(selector, text)
        x, y = b["x"] + b["w"] / 2, b["y"] + b["h"] / 2
        self._check_hit(selector, text, x, y)
        self._mouse("mouseMoved", x, y)
        self._mouse("mousePressed", x, y, 1, "left")
        self._mouse("mouseReleased", x, y, 0, "left")

    def hover(self, selector: str, text: str | None = None) -> None:
        b = self._box(selector, text)
        self._mouse("mouseMoved", b["x"] + b["w"] / 2, b["y"] + b["h"] / 2)

    def drag(self, selector: str, x0: float, x1: float, y: float = 0.5, steps: int = 8) -> None:
        """Drags across the element from fraction x0 to x1 of its width, at fraction y."""
        b = self._box(selector, None)
        py = b["y"] + b["h"] * y
        ax, bx = b["x"] + b["w"] * x0, b["x"] + b["w"] * x1
        self._mouse("mouseMoved", ax, py)
        self._mouse("mousePressed", ax, py, 1, "left")
        for i in range(1, steps + 1):
            self._mouse("mouseMoved", ax + (bx - ax) * i / steps, py, 1, "left")
        self._mouse("mouseReleased", bx, py, 0, "left")

    def focus(self, selector: str) -> None:
        ok = self.eval(
            f"(e => {{ if (!e) return false; e.focus(); return true; }})({self._find_js(selector, None)})"
        )
        if not ok:
            raise AssertionError(f"no element {selector} to focus on {self.url}")

    def type(self, selector: str, text: str, clear: bool = True) -> None:
        """Focuses the field and types `text` (replacing its value when `clear`)."""
        self.focus(selector)
        if clear:
            self.eval(
                f"(e => {{ if (e.select) e.select(); }})({self._find_js(selector, None)})"
            )
            if text == "":
                self.press("Backspace")
                return
        else:
            self.eval(
                f"(e => {{ if (e.setSelectionRange) {{ const n = e.value.length; "
                f"e.setSelectionRange(n, n); }} }})({self._find_js(selector, None)})"
            )
        self.cdp("Input.insertText", {"text": text})

    def press(self, key: str) -> None:
        if key not in _KEYS:
            raise ValueError(f"unknown key {key!r}; known: {', '.join(_KEYS)}")
        k, code, vk, text = _KEYS[key]
        down = {"type": "keyDown", "key": k, "code": code, "windowsVirtualKeyCode": vk}
        if text:
            down["text"] = text
        self.cdp("Input.dispatchKeyEvent", down)
        self.cdp(
            "Input.dispatchKeyEvent",
            {"type": "keyUp", "key": k, "code": code, "windowsVirtualKeyCode": vk},
        )

    def select(self, selector: str, value: str) -> None:
        ok = self.eval(
            f"""(e => {{
                if (!e) return "missing";
                if (!Array.from(e.options).some(o => o.value === {json.dumps(value)}))
                    return "options: " + Array.from(e.options).map(o => o.value).join(", ");
                e.value = {json.dumps(value)};
                e.dispatchEvent(new Event("input", {{bubbles: true}}));
                e.dispatchEvent(new Event("change", {{bubbles: true}}));
                return "";
            }})({self._find_js(selector, None)})"""
        )
        if ok:
            raise AssertionError(f"cannot select {value!r} in {selector}: {ok}")

    def submit(self, selector: str) -> None:
        ok = self.eval(
            f"""(e => {{
                if (!e) return false;
                const f = e.tagName === "FORM" ? e : e.form || e.closest("form");
                if (!f) return false;
                f.requestSubmit();
                return true;
            }})({self._find_js(selector, None)})"""
        )
        if not ok:
            raise AssertionError(f"no form at {selector} on {self.url}")

    # ---- browser state ---------------------------------------------------------------
    def set_headers(self, headers: dict[str, str]) -> None:
        self.cdp("Network.setExtraHTTPHeaders", {"headers": headers})

    def set_viewport(self, width: int, height: int) -> None:
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def screenshot(self, path: str | Path, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            w, h = self.eval(
                "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
            )
            params["clip"] = {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}
        data = self.cdp("Page.captureScreenshot", params)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def timing(self) -> dict:
        """Milliseconds since navigation start of the last full page load."""
        return self.eval(
            """(() => {
                const n = performance.getEntriesByType("navigation")[0];
                const h = window.__lookoutHydratedAt;
                return {
                    ttfb_ms: n ? n.responseStart : null,
                    dom_content_loaded_ms: n ? n.domContentLoadedEventEnd : null,
                    load_ms: n ? n.loadEventEnd : null,
                    hydrated_ms: h === undefined ? null : h,
                };
            })()"""
        )

    def _errors_note(self) -> str:
        errs = self.unexpected_errors()
        return ("\nconsole errors:\n" + "\n".join(errs)) if errs else ""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.browser.send("Target.closeTarget", {"targetId": self.target_id}, timeout=5)
        except BrowserError:
            pass
        with self.browser._lock:
            self.browser._sessions.pop(self.session, None)


def _remote_text(obj: dict) -> str:
    if "value" in obj:
        v = obj["value"]
        return v if isinstance(v, str) else json.dumps(v)
    return obj.get("description") or obj.get("unserializableValue") or obj.get("type", "")


def _where(stack: dict | None) -> str:
    frames = (stack or {}).get("callFrames") or []
    if not frames:
        return ""
    f = frames[0]
    return f" ({f.get('url', '')}:{f.get('lineNumber', 0) + 1})"
