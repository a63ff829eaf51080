"""The command line: reproduce the paper's figures from a terminal.

    python -m aevb reproduce figure4 --profile smoke --device cpu --out results/
    aevb reproduce all --profile book --out results/
    aevb list

``reproduce`` writes each figure (PNG) and its data (CSV or JSON) into ``--out``. Training
lengths come from ``--profile`` (smoke: seconds; book: the HTML book's; paper: the paper's
scale, meant for a GPU); trained models are cached (``AEVB_CACHE``, or ``--cache``), so a
second run, or a figure needing a model another already trained, loads it at once. Long
training shows a progress bar.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (``aevb --help``)."""
    from . import profile
    from .experiments import FIGURES

    parser = argparse.ArgumentParser(
        prog="aevb",
        description="Auto-Encoding Variational Bayes (Kingma & Welling, 2014): reproduce the "
        "paper's figures.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rep = sub.add_parser(
        "reproduce",
        help="reproduce a figure of the paper (PNG and data files)",
        description="Train (or load from the cache) what a figure needs and write the figure "
        "(PNG) and its data (CSV/JSON) into --out.",
        epilog="figures: "
        + "; ".join(f"{k}: {v}" for k, v in FIGURES.items())
        + "; all: every one of them",
    )
    rep.add_argument("figure", metavar="FIGURE", help=f"one of {', '.join(FIGURES)}, or all")
    rep.add_argument(
        "--profile",
        default=os.environ.get("AEVB_PROFILE") or profile.DEFAULT_PROFILE,
        help=f"training lengths: {', '.join(profile.PROFILES)} (default: $AEVB_PROFILE or "
        f"{profile.DEFAULT_PROFILE})",
    )
    rep.add_argument(
        "--device",
        default="auto",
        help="where to train: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps",
    )
    rep.add_argument(
        "--out",
        type=Path,
        default=Path("aevb-figures"),
        help="output folder (default: %(default)s)",
    )
    rep.add_argument(
        "--cache", type=Path, default=None, help="folder of cached models (default: $AEVB_CACHE)"
    )
    sub.add_parser("list", help="list the figures that can be reproduced")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m aevb`` and of the ``aevb`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from .experiments import FIGURES

    if args.command == "list":
        width = max(map(len, FIGURES))
        for name, what in FIGURES.items():
            print(f"{name:<{width}}  {what}")
        return 0

    from . import profile
    from .device import resolve_device

    names = list(FIGURES) if args.figure == "all" else [args.figure]
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        parser.error(f"unknown figure {unknown[0]!r}; valid figures: {', '.join(FIGURES)} (or all)")
    if args.profile not in profile.PROFILES:
        parser.error(
            f"unknown profile {args.profile!r}; valid profiles: {', '.join(profile.PROFILES)}"
        )
    try:
        device = resolve_device(args.device)
    except ValueError as err:
        parser.error(str(err))
    # The budgets are read when the experiments run: set the profile (and cache) first.
    os.environ["AEVB_PROFILE"] = args.profile
    if args.cache is not None:
        os.environ["AEVB_CACHE"] = str(args.cache)
    os.environ.setdefault("MPLBACKEND", "Agg")

    from . import experiments

    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        print(f"aevb: reproducing {name} (profile {args.profile}, device {device}) into {args.out}")
        started = time.perf_counter()
        before = _snapshot(args.out)
        try:
            summary = experiments.run(name, args.out, str(device))
        except ImportError as err:
            print(f"aevb: error: {err}", file=sys.stderr)
            return 1
        written = sorted(p for p, m in _snapshot(args.out).items() if before.get(p) != m)
        for path in written:
            print(f"  wrote {path}")
        print(f"  {name} done in {time.perf_counter() - started:.1f} s")
        if summary:
            print("  summary: " + json.dumps(summary, default=str)[:2000])
    return 0


def _snapshot(folder: Path) -> dict[Path, float]:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


if __name__ == "__main__":
    sys.exit(main())
