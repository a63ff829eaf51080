"""``python -m benchmarks --out PATH``: measure, and write the JSON report the book plots.

Sections (each in the report, measured or said not to be):

throughput
    samples per second of ``aevb.train.fit`` beside the first version of its loop, a tight
    autograd loop and the conventional DataLoader loop (benchmarks/loops.py), for the
    784-400-20 model at batch 128 and the paper's 784-500-20 at batch 100. The loops are
    interleaved round by round (the machine is shared: its load drifts), and each round also
    times the matrix multiplies of a step just before and just after the runs of ``fit`` and of
    the tight loop, so that "fraction of the matmul speed" compares numbers taken under the same
    load (the mean of the two is each run's yardstick). Medians over the rounds are reported:
    samples per wall-clock second (the headline) and per CPU second of the process (less
    sensitive to the load with one thread; with several, waiting threads count too). Then one
    more run of ``fit`` and of the conventional loop under ``torch.profiler`` splits a step's
    time into kinds of work (benchmarks/steps.py).
figure2
    Figure 2's nine models alone and batched, and the projected time of the figure at the
    paper's 10^8 samples per model: on the CPU (a short run, for scale) and on a GPU when one
    is present (else the report says that the GPU numbers were not measured); and, counted
    rather than timed, the budget one hour leaves per step and per operator.
chapters
    with ``--chapters``: every book/*.ipynb executed cold in the book profile, its time and
    peak memory; with ``--from-build``: the times the last book build stored.
throughput_runs
    every throughput measurement ever written to this report, not only the latest: each run's
    rounds (ratio to the conventional loop, fraction of the matmul speed, matmul speed), its
    date and the commit it measured. A new run appends to the list it finds in ``--out``; the
    summary pools the rounds of all of them (the machine's speed drifts between runs as
    between rounds, so one run of five rounds can land well above or below the others).

``--quick`` is a tiny configuration that only checks that everything runs (the tests use it).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from aevb.cache import TRAINING_REVISION

from . import chapters as _chapters
from . import figure2 as _figure2
from . import loops as _loops
from . import steps as _steps

SCHEMA = 1
TARGETS = {
    "ratio_vs_conventional": 4.0,
    "fraction_of_matmul": 0.6,
    "book_total_seconds": 15 * 60,
    "chapter_seconds": 3 * 60,
    "test_seconds": 20 * 60,
    "peak_rss_mb": 4096,
    "figure2_gpu_hours": 1.0,
}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict:
    return {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def throughput(cases, samples: int, rounds: int, loops=None) -> dict:
    """Interleaved rounds of every loop and the matmul measurement (see the docstring)."""
    loops = loops or list(_loops.LOOPS)
    x, source = _loops.training_images()
    result = {"data": source, "samples_per_run": samples, "rounds": rounds, "cases": []}
    for case in cases:
        _log(f"throughput: {case.name}")
        if x.shape[1] != case.x_dim:  # the --quick case: random grey levels of its size
            x = torch.rand(400, case.x_dim, generator=torch.Generator().manual_seed(0))
            result["data"] = f"uniform random grey levels, {case.x_dim} pixels (--quick)"
        models = {name: None for name in loops}
        runs: dict[str, list[float]] = {name: [] for name in loops}
        cpu_runs: dict[str, list[float]] = {name: [] for name in loops}
        matmul: list[float] = []
        # The matmul speed just before and just after each run of fit and of the tight loop
        # (their mean is the run's yardstick: this machine's speed drifts within seconds).
        around: dict[str, list[float]] = {n: [] for n in ("aevb", "tight") if n in loops}
        warm = max(case.batch_size, samples // 10)
        for name in loops:  # warm-up: allocations, kernels, data caches
            _, models[name] = _loops.LOOPS[name](case, x, warm)
        for r in range(rounds):
            order = loops[r % len(loops) :] + loops[: r % len(loops)]
            for name in order:
                before = _loops.matmul_gflops(case) if name in around else 0.0
                cpu = time.process_time()
                seconds, models[name] = _loops.LOOPS[name](case, x, samples, models[name], r)
                runs[name].append(samples / seconds)
                cpu_runs[name].append(samples / max(time.process_time() - cpu, 1e-9))
                if name in around:
                    around[name].append((before + _loops.matmul_gflops(case)) / 2)
            matmul.append(around["aevb"][-1] if "aevb" in around else _loops.matmul_gflops(case))
            _log(
                f"  round {r + 1}/{rounds}: "
                + ", ".join(f"{n} {runs[n][-1]:,.0f}/s" for n in loops)
                + f", matmul {matmul[-1]:.1f} GFLOP/s, load {_load()}"
            )
        row = {
            "name": case.name,
            "x_dim": case.x_dim,
            "hidden": case.hidden,
            "z_dim": case.z_dim,
            "batch_size": case.batch_size,
            "parameters": case.parameters,
            "samples_per_s": {n: round(statistics.median(v), 1) for n, v in runs.items()},
            "samples_per_s_runs": {n: [round(s, 1) for s in v] for n, v in runs.items()},
            "samples_per_cpu_s": {n: round(statistics.median(v), 1) for n, v in cpu_runs.items()},
            "samples_per_cpu_s_runs": {n: [round(s, 1) for s in v] for n, v in cpu_runs.items()},
            "matmul_gflops": round(statistics.median(matmul), 2),
            "matmul_gflops_runs": [round(g, 2) for g in matmul],
        }
        if "aevb" in runs:
            train = [_loops.train_gflops(case, s) for s in runs["aevb"]]
            fractions = [t / m for t, m in zip(train, matmul, strict=True)]
            row["train_gflops"] = round(statistics.median(train), 2)
            row["fraction_of_matmul"] = round(statistics.median(fractions), 3)
            row["fraction_of_matmul_runs"] = [round(f, 3) for f in fractions]
            for other in ("conventional", "aevb_before", "tight"):
                if other in runs:
                    ratios = [a / b for a, b in zip(runs["aevb"], runs[other], strict=True)]
                    row[f"ratio_vs_{other}"] = round(statistics.median(ratios), 2)
                    row[f"ratio_vs_{other}_runs"] = [round(v, 2) for v in ratios]
                    cpu = [a / b for a, b in zip(cpu_runs["aevb"], cpu_runs[other], strict=True)]
                    row[f"cpu_ratio_vs_{other}"] = round(statistics.median(cpu), 2)
            if "tight" in runs:
                tight = [
                    _loops.train_gflops(case, s) / m
                    for s, m in zip(runs["tight"], around["tight"], strict=True)
                ]
                row["matmul_gflops_runs_tight"] = [round(g, 2) for g in around["tight"]]
                row["tight_fraction_of_matmul"] = round(statistics.median(tight), 3)
        _log("  where a step's time goes (torch.profiler)")
        row["step_breakdown"] = {
            name: _steps.breakdown(case, x, samples, name)
            for name in ("aevb", "conventional")
            if name in loops
        }
        result["cases"].append(row)
    return result


def figure2_section(quick: bool, skip_gpu: bool) -> dict:
    steps, warmup = (2, 1) if quick else (100, 5)
    section: dict = {}
    _log("figure2: CPU (a short run, for scale)")
    try:
        load = _load()
        section["cpu"] = _figure2.measure("cpu", steps=steps, warmup=warmup)
        section["cpu"].update(measured=True, load_at_start=load, load_at_end=_load())
    except Exception as err:  # noqa: BLE001 - the report says what failed
        section["cpu"] = {"measured": False, "reason": f"{type(err).__name__}: {err}"}
    _log("figure2: what one hour asks of a device (counted, not timed)")
    try:
        section["budget"] = _figure2.budget(TARGETS["figure2_gpu_hours"])
    except Exception as err:  # noqa: BLE001
        section["budget"] = {"measured": False, "reason": f"{type(err).__name__}: {err}"}
    if skip_gpu:
        section["gpu"] = {"measured": False, "reason": "skipped (--no-gpu)"}
    elif not torch.cuda.is_available():
        section["gpu"] = {
            "measured": False,
            "reason": "no GPU on this machine: the GPU numbers were not measured "
            "(run `make bench` on a machine with CUDA to fill them in)",
        }
    else:
        _log("figure2: GPU")
        try:
            section["gpu"] = _figure2.measure("cuda", steps=20 if quick else 2000, warmup=50)
            section["gpu"]["measured"] = True
        except Exception as err:  # noqa: BLE001
            section["gpu"] = {"measured": False, "reason": f"{type(err).__name__}: {err}"}
    return section


def _header(argv: list[str] | None) -> dict:
    """What every report starts with: its schema, when, by which command, on which machine."""
    return {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks", *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine(),
    }


def build_report(args, argv: list[str] | None = None) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    report: dict = {
        **_header(argv),
        "quick": args.quick,
        "load_at_start": _load(),
        "targets": TARGETS,
    }
    if args.quick:
        cases = [_loops.Case("tiny 16-8-2, batch 10", 16, 8, 2, 10)]
        samples, rounds = 40, 1
    else:
        cases, samples, rounds = list(_loops.CASES), args.samples, args.rounds
    if args.skip_throughput:
        report["throughput"] = {"measured": False, "reason": "skipped (--skip-throughput)"}
    else:
        load = _load()
        report["throughput"] = throughput(cases, samples, rounds)
        report["throughput"].update(measured=True, load_at_start=load, load_at_end=_load())
        report["throughput"]["torch_threads"] = torch.get_num_threads()
    if args.skip_figure2:
        skipped = {"measured": False, "reason": "skipped (--skip-figure2)"}
        report["figure2"] = {"cpu": skipped, "gpu": skipped}
    else:
        report["figure2"] = figure2_section(args.quick, args.no_gpu)
    if args.chapters:
        _log("chapters: executing book/*.ipynb (cold, book profile)")
        paths = [Path(p).resolve() for p in args.notebooks] if args.notebooks else None
        load = _load()
        # On a machine with CUDA the chapters run on the GPU: a section of their own.
        key = "chapters_gpu" if torch.cuda.is_available() else "chapters"
        report[key] = _chapters.run_chapters(paths, profile=args.profile)
        report[key].update(load_at_start=load, load_at_end=_load())
        if key == "chapters_gpu":
            report["chapters"] = {"measured": False, "reason": "skipped (ran on the GPU)"}
    elif args.from_build:
        log = Path(args.build_log).read_text() if args.build_log else None
        found = _chapters.from_build(Path(args.from_build), log)
        report["chapters"] = found or {
            "measured": False,
            "reason": f"no jupyter-cache database under {args.from_build}",
        }
        if found and args.build_time:
            found["build"] = _chapters.parse_gnu_time(Path(args.build_time).read_text())
            found["peak_rss_mb"] = found["build"]["max_rss_mb"]  # the largest process's
    else:
        report["chapters"] = {
            "measured": False,
            "reason": "not run (pass --chapters to execute the notebooks, or --from-build _build "
            "to read the times of the last book build)",
        }
    report["load_at_end"] = _load()
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["summary"] = summary(report)
    return report


def _skipped(section: dict) -> bool:
    """Whether a section was skipped in this run (as opposed to measured, or unavailable)."""
    parts = [section["cpu"], section["gpu"]] if "cpu" in section else [section]
    return all(not p.get("measured") and "skipped" in p.get("reason", "") for p in parts)


def merge(old: dict, new: dict) -> dict:
    """``new`` with the sections it skipped taken from ``old`` (``--update``), and ``old``'s GPU
    measurement of Figure 2 where ``new`` has none (a CPU machine cannot measure it)."""
    merged = dict(new)
    for key in ("throughput", "figure2"):
        if _skipped(new[key]) and key in old:
            merged[key] = old[key]
    # A run on a machine without a GPU measures Figure 2 on the CPU only: the GPU numbers merged
    # from a device run (--merge-gpu) stay, with the machine they were measured on.
    old_gpu = old.get("figure2", {}).get("gpu", {})
    if old_gpu.get("measured") and not merged["figure2"].get("gpu", {}).get("measured"):
        merged["figure2"] = {**merged["figure2"], "gpu": old_gpu}
        if "gpu_machine" in old:
            merged["gpu_machine"] = old["gpu_machine"]
    for key in ("chapters", "chapters_gpu"):
        if not new.get(key, {}).get("measured") and old.get(key, {}).get("measured"):
            merged[key] = old[key]
    merged["command"] = f"{old.get('command')} ; then {new['command']}"
    merged["summary"] = summary(merged)
    return merged


def merge_gpu(report: dict, gpu_report: dict, source: str) -> dict:
    """``report`` with the GPU sections of ``gpu_report`` (a run of scripts/device-check.sh on a
    machine with CUDA): Figure 2 on the GPU, the chapters on the GPU, and that machine."""
    gpu = gpu_report.get("figure2", {}).get("gpu", {})
    if not gpu.get("measured"):
        raise SystemExit(
            f"{source} has no GPU measurement (figure2.gpu: {gpu.get('reason', 'missing')}); "
            "run scripts/device-check.sh on a machine with CUDA and merge its report.json"
        )
    merged = dict(report)
    merged["figure2"] = {**report.get("figure2", {}), "gpu": gpu}
    if gpu_report.get("chapters_gpu", {}).get("measured"):
        merged["chapters_gpu"] = gpu_report["chapters_gpu"]
    merged["gpu_machine"] = gpu_report["machine"]
    merged["command"] = f"{report.get('command')} ; then GPU sections of {gpu_report['command']}"
    merged["summary"] = summary(merged)
    return merged


RUN_KEYS = ("ratio_vs_conventional_runs", "fraction_of_matmul_runs", "matmul_gflops_runs")


def _commit() -> str | None:
    """The commit this checkout is at (short hash; ``+`` when tracked files other than the
    report itself differ from it: a run after another has written the report measures the same
    code), or None outside a git checkout."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return None
        dirty = git(
            "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/report.json"
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+" if dirty else "")


def throughput_run(report: dict, commit: str | None) -> dict:
    """The entry of ``throughput_runs`` for the throughput section ``report`` measured."""
    tp = report["throughput"]
    return {
        "created": report["created"],
        "commit": commit,
        "training_revision": TRAINING_REVISION,
        "loop_version": _loops.LOOP_VERSION,
        "cpu": report["machine"].get("cpu"),
        "torch": report["machine"].get("torch"),
        "threads": tp.get("torch_threads"),
        "samples_per_run": tp["samples_per_run"],
        "cases": {row["name"]: {k: row[k] for k in RUN_KEYS} for row in tp["cases"]},
    }


def keep_runs(old: dict, report: dict, measured_now: bool, commit: str | None) -> dict:
    """``report`` with the runs ``old`` kept, and this run's throughput appended when it measured
    one (a ``--quick`` run is a check of the code, not a measurement: it is not kept)."""
    runs = list(old.get("throughput_runs", []))
    if measured_now and report["throughput"].get("measured") and not report.get("quick"):
        runs.append(throughput_run(report, commit))
    out = dict(report)
    if runs:
        out["throughput_runs"] = runs
    out["summary"] = summary(out)
    return out


def run_revision(run: dict) -> int:
    """The training revision (:data:`aevb.cache.TRAINING_REVISION`) of the code a kept run
    measured; runs written before the report recorded it measured revision 2."""
    return int(run.get("training_revision", 2))


def run_version(run: dict) -> int:
    """The version of ``fit``'s loop (:data:`benchmarks.loops.LOOP_VERSION`) a kept run
    measured; runs written before the report recorded it measured the loop of their training
    revision (versions 2 and 3 are revisions 2 and 3)."""
    return int(run.get("loop_version", run_revision(run)))


def pooled(
    runs: list[dict],
    target: float = TARGETS["ratio_vs_conventional"],
    version: int | None = None,
) -> dict:
    """Per model, every round of every run kept of ``fit``'s loop at ``version`` (every run
    when None): how many runs and rounds, the median of the rounds' ratios to the
    conventional loop, and how many rounds reach ``target``."""
    if version is not None:
        runs = [run for run in runs if run_version(run) == version]
    rounds: dict[str, list[float]] = {}
    for run in runs:
        for name, case in run["cases"].items():
            rounds.setdefault(name, []).extend(case["ratio_vs_conventional_runs"])
    return {
        name: {
            "runs": sum(name in run["cases"] for run in runs),
            "rounds": len(ratios),
            "median_ratio_vs_conventional": round(statistics.median(ratios), 2),
            "rounds_at_target": sum(r >= target for r in ratios),
        }
        for name, ratios in rounds.items()
    }


def summary(report: dict) -> dict:
    """The headline numbers, each beside its target."""
    out: dict = {}
    tp = report.get("throughput", {})
    for row in tp.get("cases", []):
        out[row["name"]] = {
            "ratio_vs_conventional": row.get("ratio_vs_conventional"),
            "ratio_vs_aevb_before": row.get("ratio_vs_aevb_before"),
            "fraction_of_matmul": row.get("fraction_of_matmul"),
            "aevb_samples_per_s": row["samples_per_s"].get("aevb"),
        }
    ch = report.get("chapters", {})
    if ch.get("measured"):
        out["book"] = {
            "total_seconds": ch["total_seconds"],
            "max_chapter_seconds": ch["max_seconds"],
            "peak_rss_mb": ch["peak_rss_mb"],
            "all_ok": ch["all_ok"],
        }
        if "build" in ch:
            out["book"]["build_wall_seconds"] = ch["build"]["wall_seconds"]
            out["book"]["build_max_rss_mb"] = ch["build"]["max_rss_mb"]
    gpu = report.get("figure2", {}).get("gpu", {})
    out["figure2_gpu_hours"] = gpu.get("projected_hours_batched") if gpu.get("measured") else None
    if report.get("throughput_runs"):
        # The verdict pools the runs of the loop measured now; earlier loops' runs stay in the
        # report (and in the book's chart) as its history.
        out["every_cpu_run"] = pooled(report["throughput_runs"], version=_loops.LOOP_VERSION)
        out["every_cpu_run_version"] = _loops.LOOP_VERSION
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", default="benchmarks/report.json", help="the JSON report to write")
    parser.add_argument("--quick", action="store_true", help="a tiny run that checks the code")
    parser.add_argument("--samples", type=int, default=12_800, help="samples per timed run")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per model")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-figure2", action="store_true")
    parser.add_argument("--no-gpu", action="store_true", help="skip the GPU measurement")
    parser.add_argument("--chapters", action="store_true", help="execute and time book/*.ipynb")
    parser.add_argument("--notebooks", nargs="*", help="with --chapters: only these notebooks")
    parser.add_argument("--profile", default="book", help="AEVB_PROFILE for --chapters")
    parser.add_argument("--from-build", metavar="BUILD", help="read chapter times from BUILD")
    parser.add_argument(
        "--build-time",
        metavar="FILE",
        help="with --from-build: the output of `/usr/bin/time -v` around that build "
        "(its wall time and peak memory go into the report)",
    )
    parser.add_argument(
        "--build-log",
        metavar="FILE",
        help="with --from-build: that build's output (the times of the pages it executes at "
        "every build, which its cache does not keep)",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="keep the sections of the existing --out this run skips",
    )
    parser.add_argument(
        "--merge-gpu",
        metavar="FILE",
        help="measure nothing: put the GPU sections of FILE (the report.json of "
        "scripts/device-check.sh) into --out",
    )
    parser.add_argument(
        "--long-run",
        metavar="SAMPLES",
        type=float,
        help="measure only this: train Figure 2's models, batched, for SAMPLES per model (e.g. "
        "1e7, a tenth of the paper's) on the GPU (the CPU if there is none), end to end, and "
        "write the wall-clock time beside the projection to --out",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.long_run:
        report = {
            **_header(argv),
            "long_run": _figure2.long_run(
                int(args.long_run), "cuda" if torch.cuda.is_available() else "cpu"
            ),
        }
        report["summary"] = {
            "long_run_hours_at_paper_scale": report["long_run"]["hours_at_paper_scale"]
        }
    elif args.merge_gpu:
        report = merge_gpu(
            json.loads(out.read_text()),
            json.loads(Path(args.merge_gpu).read_text()),
            args.merge_gpu,
        )
    else:
        report = build_report(args, argv)
        old = json.loads(out.read_text()) if out.is_file() else {}
        if args.update and old:
            report = merge(old, report)
        measured = not (args.quick or args.skip_throughput)
        report = keep_runs(old, report, measured, _commit() if measured else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, out)
    _log(f"wrote {out}")
    _log(json.dumps(report["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
