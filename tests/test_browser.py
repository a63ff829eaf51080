"""The built HTML book in a real browser (headless Debian Chromium under Playwright).

Every page of the build is opened once from a local HTTP server with every request to another
host aborted, and checked: no outside or failed request, no console error, math typeset by
the MathJax served from the build, every image loaded, every local link (and its #anchor)
resolving, no ipywidgets view left in the page, every explorer control changing the view,
launch and download buttons on every chapter. Search is checked to find each chapter by a
word of its title. A screenshot of each page is kept in ``<html>/_screenshots/``.

Run: ``make test-browser`` (builds the smoke profile into _build/smoke first), or
``AEVB_BOOK_HTML=path/to/html pytest -m browser tests``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import quote, unquote, urljoin, urlsplit

import pytest
import yaml

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
SKIP_DIRS = {"_static", "_sources", "_images", "_screenshots", "_downloads"}
LOAD_TIMEOUT_MS = 30_000


@dataclass
class PageReport:
    """What one page did in the browser."""

    name: str
    outside: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    math_nodes: int = 0
    untypeset: list[str] = field(default_factory=list)
    math_errors: list[str] = field(default_factory=list)
    mathjax_src: str | None = None
    images: list[tuple[str, bool]] = field(default_factory=list)
    hrefs: list[str] = field(default_factory=list)
    widget_views: int = 0
    external_refs: list[str] = field(default_factory=list)
    explorers: list[dict] = field(default_factory=list)
    clipped_output: list[str] = field(default_factory=list)
    clipped_math: list[str] = field(default_factory=list)
    title: str = ""
    screenshot: Path | None = None


def html_pages(book_dir: Path) -> list[str]:
    """Every HTML page of the build, relative to its root (assets and screenshots left out)."""
    pages = []
    for path in sorted(book_dir.rglob("*.html")):
        rel = path.relative_to(book_dir)
        if rel.parts[0] in SKIP_DIRS:
            continue
        pages.append(rel.as_posix())
    return pages


def chapter_pages(book_dir: Path) -> list[str]:
    """The pages built from a notebook (``_sources/<page>.ipynb`` is their download)."""
    return [
        p
        for p in html_pages(book_dir)
        if (book_dir / "_sources" / p).with_suffix(".ipynb").is_file()
        and not (book_dir / "_sources" / p).with_suffix(".md").is_file()
    ]


def _redirect_target(path: Path) -> str | None:
    """The target of a ``<meta http-equiv="Refresh">`` page (the build's index.html)."""
    match = re.search(
        r'http-equiv="refresh"\s+content="\d+;\s*url=([^"]+)"',
        path.read_text(encoding="utf-8", errors="replace"),
        flags=re.IGNORECASE,
    )
    return match.group(1) if match else None


def _screenshot_path(book_dir: Path, page: str) -> Path:
    return book_dir / "_screenshots" / Path(page).with_suffix(".png")


_WAIT_MATHJAX = """async () => {
  const start = Date.now();
  if (!document.querySelector('script[src*="mathjax"]')) return null;
  while (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
    if (Date.now() - start > 20000) return "MathJax did not start within 20 s";
    await new Promise(r => setTimeout(r, 50));
  }
  await MathJax.startup.promise;
  return "ok";
}"""

_INSPECT = """async () => {
  // Elements whose URL the page loads (a <link rel="canonical"> or an <a> is not loaded).
  const LOADED = 'script[src], link[rel~="stylesheet"], link[rel~="preload"], ' +
    'link[rel~="modulepreload"], link[rel~="icon"], img[src], iframe[src], source[src], ' +
    'video[src], audio[src], embed[src], object[data]';
  // TeX that MathJax could not typeset: an merror node, or (MathJax's noundefined package)
  // an undefined macro shown as red text.
  function mathErrors() {
    const bad = [];
    const doc = window.MathJax && MathJax.startup && MathJax.startup.document;
    if (!doc || !doc.math) return bad;
    for (const item of doc.math) {
      let error = false;
      if (item.root) item.root.walkTree(n => {
        if (n.isKind("merror") ||
            (n.isKind("mtext") && n.attributes.get("mathcolor") === "red")) error = true;
      });
      if (error) bad.push(String(item.math).slice(0, 80));
    }
    return bad;
  }
  const imgs = Array.from(document.images);
  imgs.forEach(i => { i.loading = "eager"; });
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => {
    i.addEventListener("load", r); i.addEventListener("error", r); setTimeout(r, 15000);
  })));
  const math = Array.from(document.querySelectorAll(".math"));
  const mj = document.querySelector('script[src*="mathjax"]');
  return {
    title: (document.querySelector("main h1, article h1, h1") || {}).textContent || "",
    images: imgs.map(i => [i.currentSrc || i.src, i.complete && i.naturalWidth > 0]),
    math_nodes: math.length,
    untypeset: math.filter(e => !e.querySelector("mjx-container"))
                   .map(e => e.textContent.slice(0, 80)),
    math_errors: mathErrors(),
    mathjax_src: mj ? mj.src : null,
    hrefs: Array.from(document.querySelectorAll("a[href]")).map(a => a.href),
    // Printed output wider than its box (the end of the line behind a scroll bar).
    clipped_output: Array.from(document.querySelectorAll("div.cell_output pre"))
      .filter(e => e.scrollWidth > e.clientWidth + 1)
      .map(e => e.textContent.slice(0, 80)),
    // Display equations cut off: their start left of the box, or their end beyond it with
    // nothing to scroll (MathJax's tagged equations, centred in a box that hides overflow).
    clipped_math: Array.from(document.querySelectorAll('mjx-container[display="true"]'))
      .filter(c => {
        const m = c.querySelector("mjx-math");
        if (!m) return false;
        const box = c.parentElement.getBoundingClientRect(), r = m.getBoundingClientRect();
        const scrolls = e => e.scrollWidth > e.clientWidth + 1 &&
          ["auto", "scroll"].includes(getComputedStyle(e).overflowX);
        return r.left < box.left - 1 ||
          (r.right > box.right + 1 && !scrolls(c) && !scrolls(c.parentElement));
      })
      .map(c => (c.getAttribute("aria-label") || c.textContent).slice(0, 80)),
    widget_views: document.querySelectorAll(
      'script[type="application/vnd.jupyter.widget-view+json"], .jupyter-widgets').length,
    external_refs: Array.from(document.querySelectorAll(LOADED))
      .map(e => e.src || e.href || e.data)
      .filter(u => !u.startsWith(location.origin) && !u.startsWith("data:")),
  };
}"""


def _exercise_explorers(page) -> list[dict]:
    """Move every control of every explorer (keyboard on sliders, a new option on selects)
    and record whether the view changed."""
    results = []
    for k, ex in enumerate(page.locator(".aevb-explorer").all()):
        view = ex.locator(".aevb-view")
        info = {
            "index": k,
            "title": (ex.locator("strong").first.text_content() or "").strip()
            if ex.locator("strong").count()
            else "",
            "note": ex.locator(".aevb-note").text_content()
            if ex.locator(".aevb-note").count()
            else "",
            "states": int(ex.get_attribute("data-states") or 0),
            "views": view.count(),
            "view_loaded": bool(
                view.count() and view.evaluate("i => i.complete && i.naturalWidth > 0")
            ),
            "controls": [],
        }
        for c in ex.locator(".aevb-control").all():
            label = c.get_attribute("aria-label") or "?"
            before = view.get_attribute("src")
            tag = c.evaluate("e => e.tagName")
            if tag == "SELECT":
                n = c.locator("option").count()
                now = int(c.input_value())
                if n > 1:
                    c.select_option(index=(now + 1) % n)
            else:
                n = int(c.get_attribute("max") or 0) + 1
                now = int(c.input_value())
                if n > 1:
                    c.focus()
                    page.keyboard.press("ArrowRight" if now < n - 1 else "ArrowLeft")
            after = view.get_attribute("src")
            info["controls"].append(
                {
                    "label": label,
                    "kind": tag.lower(),
                    "values": n,
                    "moved": int(c.input_value()) != now,
                    "changed": after != before,
                    "loaded": view.evaluate("i => i.complete && i.naturalWidth > 0"),
                }
            )
        results.append(info)
    return results


@pytest.fixture(scope="session")
def reports(context, book_url: str, book_dir: Path) -> dict[str, PageReport]:
    """Open every page once; record everything the tests below check."""
    rec = context.recorder
    out: dict[str, PageReport] = {}
    page = context.new_page()
    page.set_default_timeout(LOAD_TIMEOUT_MS)
    for name in html_pages(book_dir):
        rec.clear()
        report = PageReport(name=name)
        try:
            redirect = _redirect_target(book_dir / name)
            page.goto(book_url + quote(name), wait_until="load")
            if redirect is not None:  # index.html: a redirect to the landing page
                page.wait_for_url(urljoin(book_url + name, redirect), wait_until="load")
            status = page.evaluate(_WAIT_MATHJAX)
            if status not in (None, "ok"):
                report.console.append(status)
            data = page.evaluate(_INSPECT)
            report.title = data["title"].strip().rstrip("#").strip()
            report.images = [tuple(x) for x in data["images"]]
            report.math_nodes = data["math_nodes"]
            report.untypeset = data["untypeset"]
            report.math_errors = data["math_errors"]
            report.mathjax_src = data["mathjax_src"]
            report.hrefs = data["hrefs"]
            report.widget_views = data["widget_views"]
            report.external_refs = data["external_refs"]
            report.clipped_output = data["clipped_output"]
            report.clipped_math = data["clipped_math"]
            shot = _screenshot_path(book_dir, name)
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
            report.screenshot = shot
            report.explorers = _exercise_explorers(page)
        except Exception as err:  # noqa: BLE001 - one broken page must not hide the others
            report.console.append(f"could not inspect the page: {type(err).__name__}: {err}")
        report.outside = list(rec.outside)
        report.failed += rec.failed
        report.console += rec.console
        out[name] = report
    page.close()
    return out


def _problems(reports: dict[str, PageReport], attr: str) -> dict[str, list]:
    return {name: getattr(r, attr) for name, r in reports.items() if getattr(r, attr)}


def test_every_toc_entry_is_built(book_dir: Path):
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc.get("parts", []) for c in part["chapters"]]
    missing = [f for f in files if not (book_dir / f"{f}.html").is_file()]
    assert not missing, f"toc entries with no page in {book_dir}: {missing}"


def test_no_request_leaves_the_machine(reports):
    outside = _problems(reports, "outside")
    assert not outside, f"pages tried to reach other hosts (aborted): {outside}"
    external = _problems(reports, "external_refs")
    assert not external, f"pages load scripts, styles or images from other hosts: {external}"


def test_no_failed_requests(reports):
    failed = _problems(reports, "failed")
    assert not failed, f"failed requests: {failed}"


def test_no_console_errors(reports):
    errors = _problems(reports, "console")
    assert not errors, f"console errors: {errors}"


def test_printed_output_wraps_at_the_page_width(reports):
    """book/_static/css/aevb.css: a long printed line wraps instead of hiding its end."""
    clipped = _problems(reports, "clipped_output")
    assert not clipped, f"printed output cut off behind a horizontal scroll bar: {clipped}"


def test_no_display_equation_is_cut_off(reports):
    """book/_static/css/aevb.css: a wide equation scrolls; its start and end stay reachable."""
    clipped = _problems(reports, "clipped_math")
    assert not clipped, f"display equations cut off at the page's edge: {clipped}"


def test_math_is_typeset_by_the_local_mathjax(reports, book_dir: Path):
    with_math = {n: r for n, r in reports.items() if r.math_nodes}
    assert with_math, "no page of the book has math: is the build complete?"
    for name, r in with_math.items():
        assert r.mathjax_src, f"{name} has {r.math_nodes} math elements but loads no MathJax"
        src = urlsplit(r.mathjax_src)
        assert src.hostname in ("127.0.0.1", "localhost"), f"{name}: MathJax from {src.netloc}"
        assert (book_dir / unquote(src.path).lstrip("/")).is_file()
    untypeset = _problems(with_math, "untypeset")
    assert not untypeset, f"math left untypeset (no mjx-container): {untypeset}"
    errors = _problems(with_math, "math_errors")
    assert not errors, f"MathJax errors (e.g. an undefined macro): {errors}"


def test_every_image_loads(reports):
    broken = {n: [src[:100] for src, ok in r.images if not ok] for n, r in reports.items()}
    broken = {n: b for n, b in broken.items() if b}
    assert not broken, f"images that did not load (naturalWidth 0): {broken}"


@cache
def _anchors(path: Path) -> frozenset[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return frozenset(re.findall(r'\b(?:id|name)="([^"]+)"', text))


def test_internal_links_resolve(reports, book_url: str, book_dir: Path):
    broken: dict[str, set[str]] = {}
    for name, r in reports.items():
        for href in r.hrefs:
            if not href.startswith(book_url):
                continue
            parts = urlsplit(href)
            rel = unquote(parts.path)[len(urlsplit(book_url).path) :]
            target = book_dir / rel
            if rel == "" or rel.endswith("/"):
                target = target / "index.html"
            if not target.is_file():
                broken.setdefault(name, set()).add(href[len(book_url) :])
            elif parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in _anchors(target):
                    broken.setdefault(name, set()).add(href[len(book_url) :])
    assert not broken, f"local links to missing files or anchors: {broken}"


def test_no_ipywidgets_views_in_the_static_book(reports):
    views = {n: r.widget_views for n, r in reports.items() if r.widget_views}
    assert not views, (
        f"ipywidgets views need a kernel or a CDN widget manager: {views}. Build with "
        "AEVB_WIDGETS=static and display aevb.widgets.explorer, not ipywidgets, in chapters."
    )


def test_every_explorer_responds(reports):
    problems = []
    for name, r in reports.items():
        for ex in r.explorers:
            where = f"{name} explorer #{ex['index']} {ex['title']!r}"
            if ex["views"] != 1 or not ex["view_loaded"]:
                problems.append(f"{where}: view missing or not loaded")
            if "kernel" not in ex["note"]:
                problems.append(f"{where}: no note that a kernel gives the live version")
            if not ex["controls"]:
                problems.append(f"{where}: no control")
            elif ex["states"] != math.prod(c["values"] for c in ex["controls"]):
                problems.append(f"{where}: {ex['states']} views for its controls' combinations")
            for c in ex["controls"]:
                if c["values"] < 2:
                    problems.append(f"{where}: control {c['label']!r} has a single value")
                elif not (c["moved"] and c["changed"] and c["loaded"]):
                    problems.append(f"{where}: moving {c['label']!r} did not change the view ({c})")
    assert not problems, "\n".join(problems)


def test_explorers_are_exercised_somewhere(reports):
    """The book uses explorers (at least one page has one), so the test above is not vacuous
    (chapters that do not exist yet are not counted)."""
    total = sum(len(r.explorers) for r in reports.values())
    chapters = [n for n in reports if re.match(r"book/\d\d_", n)]
    if not chapters:
        pytest.skip("no chapter is built yet")
    assert total > 0, "no .aevb-explorer on any page of the book"


def test_chapters_have_launch_and_download_buttons(reports, book_dir: Path):
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    repo = config["repository"]["url"].rstrip("/")
    org_repo = urlsplit(repo).path.strip("/")
    launch = config["launch_buttons"]
    chapters = chapter_pages(book_dir)
    assert chapters, "no page built from a notebook"
    problems = []
    for name in chapters:
        nb = Path(name).with_suffix(".ipynb").as_posix()
        hrefs = reports[name].hrefs
        expected = {
            "Colab": f"{launch['colab_url'].rstrip('/')}/github/{org_repo}/blob/",
            "Binder": f"{launch['binderhub_url'].rstrip('/')}/v2/gh/{org_repo}/",
        }
        for what, prefix in expected.items():
            if not any(h.startswith(prefix) and nb in h for h in hrefs):
                problems.append(f"{name}: no {what} button for {nb}")
        if any("/./" in h for h in hrefs if h.startswith("https://")):
            problems.append(f"{name}: a launch URL has '/./' in its path")
        if not any(h.endswith(f"_sources/{nb}") for h in hrefs):
            problems.append(f"{name}: no 'download .ipynb' link to _sources/{nb}")
    colab = launch["colab_url"].rstrip("/")
    for name, r in reports.items():
        bad = [h for h in r.hrefs if h.startswith(colab) and not h.endswith(".ipynb")]
        if bad:
            problems.append(f"{name}: Colab can only open notebooks: {bad}")
    assert not problems, "\n".join(problems)


def _search_word(title: str) -> str | None:
    words = [w for w in re.findall(r"[A-Za-z]+", title) if len(w) >= 4]
    return max(words, key=len) if words else None


def test_search_finds_each_chapter(context, book_url: str, book_dir: Path, reports):
    chapters = [p for p in chapter_pages(book_dir) if p.startswith("book/")]
    assert chapters, "no chapter page to search for"
    page = context.new_page()
    page.set_default_timeout(LOAD_TIMEOUT_MS)
    problems = []
    try:
        for name in chapters:
            word = _search_word(reports[name].title)
            if word is None:
                problems.append(
                    f"{name}: no word of 4+ letters in its title {reports[name].title!r}"
                )
                continue
            page.goto(f"{book_url}search.html?q={quote(word)}", wait_until="load")
            page.wait_for_selector("#search-results .search-summary", timeout=20_000)
            page.wait_for_function(
                "() => /found/i.test(document.querySelector('#search-results .search-summary')"
                ".textContent)",
                timeout=20_000,
            )
            links = page.eval_on_selector_all(
                "#search-results ul.search li a", "els => els.map(a => a.href)"
            )
            targets = {
                urlsplit(h).path.split("/", 1)[1] if h.startswith(book_url) else h for h in links
            }
            if name not in targets:
                problems.append(f"search for {word!r} does not list {name}: {sorted(targets)}")
    finally:
        page.close()
    assert not problems, "\n".join(problems)


def test_a_screenshot_of_every_page_is_kept(reports, book_dir: Path):
    missing = [n for n in reports if not _screenshot_path(book_dir, n).is_file()]
    assert not missing, f"no screenshot for {missing}"
    small = [n for n in reports if _screenshot_path(book_dir, n).stat().st_size < 2_000]
    assert not small, f"suspiciously small (blank?) screenshots: {small}"


def test_landing_page_shows_a_figure_drawn_by_the_build(reports):
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    landing = reports[f"{toc['root']}.html"]
    drawn = [src for src, ok in landing.images if ok and "/_images/" in src]
    assert drawn, f"the landing page shows no figure from the build: {landing.images}"
    assert landing.title, "the landing page has no title"


def test_landing_page_has_the_timing_table(book_dir: Path):
    """'How long each chapter takes' is a rendered table (a row per chapter, and the total),
    read from benchmarks/report.json by the page: not pipes in a paragraph."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    html = (book_dir / f"{toc['root']}.html").read_text()
    section = html[html.index('id="how-long-each-chapter-takes"') :]
    section = section[: section.index("</section>")]
    chapters = sorted((REPO / "book").glob("[0-9][0-9]_*.ipynb"))
    assert section.count("<table") == 1
    assert section.count("<tr") == len(chapters) + 2, "header, a row per chapter, the total"
    report = json.loads((REPO / "benchmarks" / "report.json").read_text())
    if report["chapters"]["measured"]:
        seconds = {r["name"]: r["seconds"] for r in report["chapters"]["notebooks"]}
        for nb in chapters:
            assert f"{seconds[nb.stem]:.0f} s" in section, nb.stem
