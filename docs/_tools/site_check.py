"""Open the built site in headless Chromium: fail on console errors, broken images or local links.

Usage (what ``nox -s browser`` runs after building the site)::

    python docs/_tools/site_check.py --html docs/_build/html --screenshots docs/_build/screenshots

1. Every local link and resource of every built page (``href``/``src``, with ``#anchor``) must point
   at a file that exists and, for an anchor, at an element with that id.
2. A local HTTP server on 127.0.0.1 serves the site; Chromium (Debian's ``chromium``) loads the home
   page and guide pages through the Chrome DevTools protocol (``websocket-client``); any console
   error, uncaught exception, failed request or image that did not load is a failure.
3. At 1280 px (a laptop), no code block may be wider than its box: a block whose lines run out of
   sight behind a horizontal scrollbar is a failure, named by its first line.
4. A full-page PNG of each loaded page goes to ``--screenshots``.

Without page arguments every page of the guide is loaded (not Sphinx's index and search pages).

Exit status 0 when everything passed, 1 otherwise (the problems are listed on stderr).
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

#: Sphinx's own pages, which hold no guide content
_GENERATED = {"genindex.html", "search.html", "py-modindex.html"}
#: JavaScript: the code blocks of the page whose content is wider than their box, as their first lines
_OVERFLOWING_CODE = """
Array.from(document.querySelectorAll("div.highlight pre, pre.literal-block"))
  .filter(pre => pre.scrollWidth > pre.clientWidth + 1)
  .map(pre => `${pre.scrollWidth}px in ${pre.clientWidth}px: ${pre.textContent.split("\\n")[0].slice(0, 80)}`)
"""


def guide_pages(root: Path) -> list[str]:
    """Every built page of the guide, index first."""
    pages = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*.html")
        if p.name not in _GENERATED and not any(part.startswith("_") for part in p.relative_to(root).parts)
    )
    return sorted(pages, key=lambda p: p != "index.html")


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
]


# -- local links ----------------------------------------------------------------------------------


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id", "name"):
                self.ids.add(value)
            if (tag, name) in {
                ("a", "href"),
                ("link", "href"),
                ("script", "src"),
                ("img", "src"),
                ("source", "src"),
            }:
                self.refs.append(value)


def _parse(path: Path) -> _Refs:
    parser = _Refs()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def broken_local_links(root: Path) -> list[str]:
    problems: list[str] = []
    parsed: dict[Path, _Refs] = {}

    def refs_of(p: Path) -> _Refs:
        if p not in parsed:
            parsed[p] = _parse(p)
        return parsed[p]

    for page in sorted(root.rglob("*.html")):
        for ref in refs_of(page).refs:
            url = urllib.parse.urlsplit(ref)
            if url.scheme or url.netloc or ref.startswith(("mailto:", "data:", "javascript:")):
                continue
            target = page if not url.path else (page.parent / urllib.parse.unquote(url.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            where = f"{page.relative_to(root)}: {ref}"
            if not target.exists():
                problems.append(f"{where}: no such file")
                continue
            if url.fragment and target.suffix == ".html" and url.fragment not in refs_of(target).ids:
                problems.append(f"{where}: no element with id {url.fragment!r}")
    return problems


# -- Chromium over the DevTools protocol ----------------------------------------------------------


class DevTools:
    def __init__(self, ws_url: str) -> None:
        import websocket  # websocket-client

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params: object) -> dict:
        self.next_id += 1
        call_id = self.next_id
        self.ws.settimeout(60)  # wait_for and drain shorten it; a tall page's screenshot takes seconds
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("method") == event for e in self.events):
                return
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(event)

    def drain(self, seconds: float) -> None:
        self.ws.settimeout(seconds)
        try:
            while True:
                self.events.append(json.loads(self.ws.recv()))
        except Exception:
            pass


def _console_problems(events: list[dict]) -> list[str]:
    problems = []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            problems.append(
                f"uncaught exception: {details.get('exception', {}).get('description') or details.get('text')}"
            )
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            problems.append(f"console.{params['type']}: {text}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            problems.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            problems.append(f"request failed: {params.get('errorText')} ({params.get('type')})")
    return problems


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def check_pages(root: Path, out: Path, pages: list[str], chromium: str) -> list[str]:
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    proc = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    problems: list[str] = []
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("Chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = [t for t in json.load(resp) if t.get("type") == "page"]
        tools = DevTools(targets[0]["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            tools.call(f"{domain}.enable")
        tools.call(
            "Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False
        )
        out.mkdir(parents=True, exist_ok=True)
        for page in pages:
            tools.events.clear()
            tools.call("Page.navigate", url=base + page)
            tools.wait_for("Page.loadEventFired")
            tools.drain(1.0)
            page_problems = _console_problems(tools.events)
            broken = tools.call(
                "Runtime.evaluate",
                returnByValue=True,
                expression=(
                    "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
                ),
            )["result"].get("value", [])
            page_problems += [f"image did not load: {src}" for src in broken]
            overflowing = tools.call("Runtime.evaluate", returnByValue=True, expression=_OVERFLOWING_CODE)
            page_problems += [
                f"code block cut off at 1280 px ({block})" for block in overflowing["result"].get("value", [])
            ]
            metrics = tools.call("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            shot = tools.call(
                "Page.captureScreenshot",
                format="png",
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": 1280, "height": min(size["height"], 8000), "scale": 1},
            )
            name = page.replace("/", "-").removesuffix(".html") + ".png"
            (out / name).write_bytes(base64.b64decode(shot["data"]))
            problems += [f"{page}: {p}" for p in page_problems]
            print(f"loaded {page}: {len(page_problems)} problem(s), screenshot {out / name}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    return problems


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, default=Path("docs/_build/html"))
    parser.add_argument("--screenshots", type=Path, default=Path("docs/_build/screenshots"))
    parser.add_argument("pages", nargs="*", help="pages to load (default: every page of the guide)")
    args = parser.parse_args()
    if not (args.html / "index.html").is_file():
        print(f"error: no built site in {args.html}; build it first", file=sys.stderr)
        return 1
    problems = [f"link: {p}" for p in broken_local_links(args.html)]
    print(f"checked local links of {sum(1 for _ in args.html.rglob('*.html'))} pages: {len(problems)} broken")
    chromium = os.environ.get("CHROMIUM") or find_chromium()
    if chromium is None:
        print("error: Chromium is not installed (Debian: apt-get install chromium)", file=sys.stderr)
        return 1
    pages = args.pages or guide_pages(args.html)
    problems += check_pages(args.html.resolve(), args.screenshots, pages, chromium)
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
