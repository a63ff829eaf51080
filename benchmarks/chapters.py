"""How long each chapter takes to execute, and how much memory it needs.

Two sources, both giving one row per notebook:

``run_chapters``
    executes every ``book/*.ipynb`` (in the table of contents' order, then any others) with
    nbclient, each in a fresh subprocess with a fresh kernel, as the book build does: the
    ``book`` profile, static widgets, and one model cache shared by the chapters and empty at
    the start (a cold build). The subprocess reports the wall time and the peak resident
    memory of the kernel and of itself (``getrusage(RUSAGE_CHILDREN)``, which covers the
    kernel once it has exited and been waited for).
``from_build``
    reads the execution times the book build itself stored: jupyter-cache's database in
    ``_build/.jupyter_cache`` (``execution_seconds`` of each cached notebook).

Run one notebook by hand: ``python -m benchmarks.chapters book/05_aevb_algorithm.ipynb``.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _rel(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it, else as given."""
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return str(path)


def notebooks(book: Path | None = None) -> list[Path]:
    """The book's notebooks: those of ``_toc.yml`` in order, then any other ``book/*.ipynb``."""
    book = book or REPO / "book"
    found = sorted(book.glob("*.ipynb"))
    order: list[str] = []
    toc = REPO / "_toc.yml"
    if toc.is_file():
        order = re.findall(r"file:\s*(\S+)", toc.read_text())
    rank = {name: i for i, name in enumerate(order)}

    def key(path: Path):
        return (rank.get(_rel(path.with_suffix("")), len(rank)), path.name)

    return sorted(found, key=key)


def run_one(path: Path, timeout: int = 900) -> dict:
    """Execute one notebook in this process (called in the subprocess); a result row."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    row = {"name": path.stem, "path": _rel(path), "ok": True, "error": None}
    t = time.perf_counter()
    try:
        client.execute()
    except Exception as err:  # noqa: BLE001 - the row records any failure
        row["ok"] = False
        if getattr(err, "ename", None):  # nbclient's CellExecutionError: the cell's error
            source = next((c.source for c in nb.cells if _failed(c)), "")
            row["error"] = f"{err.ename}: {err.evalue}"[:300]
            row["failed_cell"] = source[:300]
        else:
            row["error"] = f"{type(err).__name__}: {str(err).strip()[-300:]}"
    row["seconds"] = round(time.perf_counter() - t, 2)
    kernel = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    row["peak_rss_mb"] = round(max(kernel, me) / 1024, 1)  # ru_maxrss is in KiB on Linux
    row["kernel_peak_rss_mb"] = round(kernel / 1024, 1)
    return row


def _failed(cell) -> bool:
    return any(o.get("output_type") == "error" for o in cell.get("outputs", []))


def run_chapters(
    paths: list[Path] | None = None,
    profile: str = "book",
    timeout: int = 900,
    cache: str | None = None,
    log=print,
) -> dict:
    """Execute every notebook in a subprocess of its own (see the module docstring)."""
    paths = notebooks() if paths is None else paths
    rows = []
    with tempfile.TemporaryDirectory(prefix="aevb-bench-cache-") as fresh:
        env = dict(os.environ)
        env.update(
            AEVB_PROFILE=profile,
            AEVB_WIDGETS="static",
            AEVB_PROGRESS="0",
            AEVB_CACHE=cache or fresh,
            MPLBACKEND="Agg",
        )
        for path in paths:
            log(f"  {path.name} ...")
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.chapters",
                str(path),
                "--timeout",
                str(timeout),
            ]
            t = time.perf_counter()
            proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t
            try:
                row = json.loads(proc.stdout.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                row = {
                    "name": path.stem,
                    "path": _rel(path),
                    "ok": False,
                    "seconds": round(wall, 2),
                    "peak_rss_mb": None,
                    "error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300],
                }
            row["process_seconds"] = round(wall, 2)
            rows.append(row)
            log(f"    {row['seconds']:.1f} s, ok={row['ok']}, peak {row.get('peak_rss_mb')} MB")
    return summarize(rows, mode="nbclient", profile=profile)


_EXECUTED = re.compile(r"([^\s/]+)\.(ipynb|md): Executed notebook in ([0-9.]+) seconds")


def executed_in_log(log: str) -> dict[str, float]:
    """Execution seconds per page from a book build's output (myst-nb prints "PATH: Executed
    notebook in N seconds" for every page it executes, cached or not)."""
    return {m.group(1): float(m.group(3)) for m in _EXECUTED.finditer(log)}


def from_build(build: Path | None = None, log: str | None = None) -> dict | None:
    """Per-notebook execution times stored by the book build's jupyter-cache (or None).

    A notebook that failed is not cached: it is listed with ``ok`` false. When a notebook was
    cached several times (edited between builds), its latest execution counts. The pages run
    at every build (``execution_mode: force``) are never cached: with the build's output
    ``log`` their times come from it, and so do those of executed Markdown pages (the landing
    page).
    """
    cache_dir = (build or REPO / "_build") / ".jupyter_cache"
    if not (cache_dir / "global.db").is_file():
        return None
    from jupyter_cache import get_cache

    logged = executed_in_log(log) if log else {}
    latest = {}
    for rec in get_cache(str(cache_dir)).list_cache_records():
        name = Path(rec.uri).stem
        if name not in latest or rec.created > latest[name].created:
            latest[name] = rec
    rows = []
    for path in notebooks():
        rec = latest.pop(path.stem, None)
        seconds = (rec.data or {}).get("execution_seconds") if rec is not None else None
        row = {
            "name": path.stem,
            "path": _rel(path),
            "ok": rec is not None,
            "seconds": None if seconds is None else round(float(seconds), 2),
            "peak_rss_mb": None,
            "error": None if rec is not None else "not in the build's cache (failed or not run)",
        }
        if rec is None and _forced(path):  # executed at every build, never cached
            row.update(ok=True, error=None, note="execution_mode force: not in the cache")
        if rec is None and path.stem in logged:
            row.update(ok=True, error=None, seconds=logged[path.stem], note="from the build log")
        rows.append(row)
    known = {r["name"] for r in rows} | set(latest)
    for name, seconds in logged.items():  # executed Markdown pages (the landing page)
        if name not in known:
            rows.append(
                {
                    "name": name,
                    "path": _rel(REPO / "book" / f"{name}.md"),
                    "ok": True,
                    "seconds": seconds,
                    "peak_rss_mb": None,
                    "error": None,
                    "note": "from the build log",
                }
            )
    for name, rec in sorted(latest.items()):  # cached, but no longer in book/
        seconds = (rec.data or {}).get("execution_seconds")
        rows.append(
            {
                "name": name,
                "path": _rel(Path(rec.uri)),
                "ok": True,
                "seconds": None if seconds is None else round(float(seconds), 2),
                "peak_rss_mb": None,
                "error": None,
            }
        )
    result = summarize(rows, mode="jupyter-cache", profile=os.environ.get("AEVB_PROFILE", "book"))
    result["build"] = str(build or REPO / "_build")
    return result


def parse_gnu_time(text: str) -> dict:
    """Wall time, CPU time and peak memory from the output of GNU ``/usr/bin/time -v``.

    ``max_rss_mb`` is the largest resident set of any single process of the command (for a
    book build: the kernel executing a chapter, or the Sphinx process).
    """

    def field(label: str) -> str:
        match = re.search(rf"^\s*{re.escape(label)}: (.+)$", text, re.M)
        if match is None:
            raise ValueError(f"no '{label}' line: is this the output of /usr/bin/time -v?")
        return match.group(1).strip()

    clock = [float(v) for v in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")]
    wall = sum(v * 60**i for i, v in enumerate(reversed(clock)))
    return {
        "command": field("Command being timed").strip('"'),
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(
            float(field("User time (seconds)")) + float(field("System time (seconds)")), 1
        ),
        "max_rss_mb": round(int(field("Maximum resident set size (kbytes)")) / 1024, 1),
        "exit_status": int(field("Exit status")),
    }


def _forced(path: Path) -> bool:
    """Whether the notebook asks myst-nb to execute it at every build (not cached)."""
    import nbformat

    meta = nbformat.read(str(path), as_version=4).metadata.get("mystnb", {})
    return meta.get("execution_mode") == "force"


def summarize(rows: list[dict], mode: str, profile: str) -> dict:
    """Totals and the targets of issue 7 beside the rows."""
    times = [r["seconds"] for r in rows if r.get("seconds") is not None]
    peaks = [r["peak_rss_mb"] for r in rows if r.get("peak_rss_mb") is not None]
    return {
        "measured": bool(rows),
        "mode": mode,
        "profile": profile,
        "notebooks": rows,
        "count": len(rows),
        "all_ok": all(r["ok"] for r in rows),
        "total_seconds": round(sum(times), 2) if times else None,
        "max_seconds": max(times) if times else None,
        "peak_rss_mb": max(peaks) if peaks else None,
        "targets": {"total_seconds": 15 * 60, "chapter_seconds": 3 * 60, "peak_rss_mb": 4096},
    }


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="execute one notebook; print a JSON row")
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--timeout", type=int, default=900)
    args = parser.parse_args(argv)
    print(json.dumps(run_one(args.notebook.resolve(), timeout=args.timeout)))


if __name__ == "__main__":
    main()
