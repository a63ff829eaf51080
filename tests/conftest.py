"""Fixtures shared by the tests: one torch thread for every test, and for the browser tests
(tests/test_browser.py) the built book, a local HTTP server over it, and Debian's headless
Chromium driven by Playwright.

The built book is ``$AEVB_BOOK_HTML`` (default ``_build/html``; ``make test-browser`` builds
the smoke profile into ``_build/smoke`` and points here). Chromium is ``/usr/bin/chromium``
(``$AEVB_CHROMIUM`` to use another); Playwright's own browser download is never used.
Under ``CI=true`` a missing book, Chromium or Playwright fails the tests; elsewhere they skip
with the reason and the command that fixes it.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
LOCAL_HOSTS = ("127.0.0.1", "localhost")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The tests' models are tiny: a second intra-op thread only adds waiting (and spins
    against the other process on a busy 2-core machine). Restored after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def in_ci() -> bool:
    """True under CI (``CI=true``): a missing prerequisite is then a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Fail under CI, skip elsewhere."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: browser tests must run)", pytrace=False)
    pytest.skip(reason)


def book_html_dir() -> Path:
    """The built HTML book: ``$AEVB_BOOK_HTML`` or ``_build/html`` (relative to the repo)."""
    path = Path(os.environ.get("AEVB_BOOK_HTML", "_build/html"))
    return path if path.is_absolute() else REPO / path


def chromium_path() -> str | None:
    """Debian's Chromium (``/usr/bin/chromium``) or ``$AEVB_CHROMIUM``; None if absent."""
    path = os.environ.get("AEVB_CHROMIUM", "/usr/bin/chromium")
    found = shutil.which(path)
    return found if found and os.access(found, os.X_OK) else None


@pytest.fixture(scope="session")
def book_dir() -> Path:
    """The built book's HTML folder (skips, or fails under CI, when it is not built)."""
    path = book_html_dir()
    if not (path / "index.html").is_file():
        missing(
            f"no built book at {path} (set AEVB_BOOK_HTML, or run `make test-browser`, which "
            "builds the smoke profile into _build/smoke)"
        )
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="session")
def book_url(book_dir: Path):
    """``http://127.0.0.1:<port>/``: the built book served by a local http.server."""
    handler = functools.partial(_QuietHandler, directory=str(book_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium under Playwright (never ``playwright install``)."""
    exe = chromium_path()
    if exe is None:
        missing(
            f"Chromium not found at {os.environ.get('AEVB_CHROMIUM', '/usr/bin/chromium')} "
            "(apt-get install chromium, or set AEVB_CHROMIUM to a Chromium binary)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright for Python is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


class Recorder:
    """What a browser context did: outside requests (aborted), failed requests, console
    errors and uncaught page errors, each as a line of text."""

    def __init__(self) -> None:
        self.outside: list[str] = []
        self.failed: list[str] = []
        self.console: list[str] = []

    def clear(self) -> None:
        self.outside.clear()
        self.failed.clear()
        self.console.clear()


def _is_local(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return parts.scheme in ("http", "https") and parts.hostname in LOCAL_HOSTS


@pytest.fixture(scope="session")
def context(browser):
    """A browser context in which every request to a host other than 127.0.0.1/localhost is
    aborted and recorded (``context.recorder``), as are failed requests and console errors."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    rec = Recorder()

    def route(route):
        url = route.request.url
        if _is_local(url):
            route.continue_()
        else:
            rec.outside.append(url)
            route.abort("blockedbyclient")

    ctx.route("**/*", route)

    def on_page(page):
        page.on(
            "console",
            lambda msg: (
                rec.console.append(f"console.{msg.type}: {msg.text}")
                if msg.type == "error"
                else None
            ),
        )
        page.on("pageerror", lambda err: rec.console.append(f"uncaught: {err}"))
        page.on(
            "requestfailed",
            lambda req: (
                rec.failed.append(f"{req.url} ({req.failure})") if _is_local(req.url) else None
            ),
        )
        page.on(
            "response",
            lambda resp: (
                rec.failed.append(f"{resp.url} (HTTP {resp.status})")
                if resp.status >= 400
                else None
            ),
        )

    ctx.on("page", on_page)
    ctx.recorder = rec
    try:
        yield ctx
    finally:
        ctx.close()
