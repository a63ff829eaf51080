"""The benchmark (benchmarks/, `make bench`) runs in a tiny configuration and writes valid
JSON. Nothing here is timed: the numbers of a tiny run on a shared machine mean nothing."""

import json
import math
import re
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from aevb.models import ModelSpec, build_model

# benchmarks/ is a folder of the repository (`python -m benchmarks`), not an installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import __main__ as bench  # noqa: E402
from benchmarks import chapters, figure2, loops, steps  # noqa: E402


def _strict_json(path):
    def refuse(name):
        raise ValueError(f"{name} in the report: JSON has no NaN or Infinity")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_quick_benchmark_writes_a_valid_report(tmp_path, one_thread):
    out = tmp_path / "report.json"
    assert bench.main(["--quick", "--skip-figure2", "--threads", "1", "--out", str(out)]) == 0
    report = _strict_json(out)
    assert report["schema"] == bench.SCHEMA and report["quick"] is True
    assert len(report["load_at_start"]) == 3 and report["machine"]["cores"] >= 1
    (case,) = report["throughput"]["cases"]
    assert set(case["samples_per_s"]) == {"aevb", "aevb_before", "tight", "conventional"}
    assert all(v > 0 for v in case["samples_per_s"].values())
    assert case["matmul_gflops"] > 0 and 0 < case["fraction_of_matmul"]
    assert case["ratio_vs_conventional"] == pytest.approx(
        case["samples_per_s"]["aevb"] / case["samples_per_s"]["conventional"], rel=1e-6, abs=0.01
    )
    assert report["chapters"]["measured"] is False and "--chapters" in report["chapters"]["reason"]
    assert report["figure2"]["gpu"]["measured"] is False
    assert report["summary"][case["name"]]["fraction_of_matmul"] == case["fraction_of_matmul"]
    for loop in ("aevb", "conventional"):
        split = case["step_breakdown"][loop]
        assert list(split["ms_per_step"]) == list(steps.KINDS)
        assert all(v >= 0 for v in split["ms_per_step"].values())
        # the kinds of work add up to the profiled time of a step
        assert sum(split["ms_per_step"].values()) == pytest.approx(
            split["profiled_ms_per_step"], rel=0.01, abs=0.01
        )
    # --update keeps the sections a later run skips (e.g. chapter times added after a build).
    argv = ["--quick", "--skip-throughput", "--skip-figure2", "--update", "--out", str(out)]
    assert bench.main(argv) == 0
    again = _strict_json(out)
    assert again["throughput"] == report["throughput"] and "--update" in again["command"]


def test_the_conventional_loop_is_the_same_model_and_loss():
    case = loops.Case("tiny", 16, 8, 2, 10)
    x = torch.rand(30, 16)
    loader = loops.conventional_loader(case, x)
    batch, _ = next(iter(loader))
    assert batch.shape == (10, 1, 4, 4) and set(batch.unique().tolist()) <= {0.0, 1.0}
    model = loops.ConventionalVAE(case)
    assert sum(p.numel() for p in model.parameters()) == case.parameters
    assert case.parameters == sum(p.numel() for p in build_model(case.spec).parameters())
    recon, mu, logvar = model(batch)
    assert math.isfinite(float(loops.conventional_loss(recon, batch, mu, logvar).detach()))


@pytest.mark.slow
def test_figure2_projection_runs_on_the_cpu(monkeypatch, one_thread):
    torch.set_num_threads(1)  # tiny tensors: threads only add waiting on a shared machine
    monkeypatch.setattr(
        figure2,
        "figure2_models",
        lambda name: [build_model(ModelSpec(12, z, 6)) for z in (1, 3)],
    )
    monkeypatch.setattr(figure2, "_data", lambda name: (torch.rand(300, 12), "random"))
    out = figure2.measure("cpu", steps=2, warmup=1)
    for name in figure2.FIGURE2_Z:
        row = out["datasets"][name]
        assert row["samples_per_s_per_model_batched"] > 0
        assert set(row["samples_per_s_alone"]) == {"1", "3"}
        # On the CPU the step runs eagerly: no CUDA graph, and the report says why.
        assert set(row["samples_per_s_per_model_batched_by_mode"]) == {"eager"}
        assert row["cuda_graph"] == {"used": False, "error": "not a CUDA device"}
    assert out["projected_hours_batched"] > 0 and out["samples_per_model"] == 10**8
    assert set(out["datasets"]["mnist"]["fixed_seconds"]) == {"alone 1", "alone 3", "batched eager"}


def test_the_long_run_trains_end_to_end_and_scales_its_time_to_the_paper(
    tmp_path, monkeypatch, one_thread
):
    torch.set_num_threads(1)
    monkeypatch.setattr(
        figure2, "figure2_models", lambda name: [build_model(ModelSpec(12, z, 6)) for z in (1, 3)]
    )
    g = torch.Generator().manual_seed(0)
    protos = torch.rand(3, 12, generator=g).round()  # three binary patterns: learnable
    x = protos[torch.randint(3, (300,), generator=g)]
    monkeypatch.setattr(figure2, "_data", lambda name: (x, "three patterns"))
    out_path = tmp_path / "long.json"
    assert bench.main(["--long-run", "2000", "--out", str(out_path)]) == 0
    report = _strict_json(out_path)
    run = report["long_run"]
    assert run["samples_per_model"] == 2000 and run["device"] in ("cpu", "cuda")
    for row in run["datasets"].values():
        assert row["steps"] == 20 and row["z_dims"] == [1, 3]
        assert row["samples_per_s_per_model"] == pytest.approx(2000 / row["seconds"], rel=0.01)
        first, last = row["train_bound_first_last"]["3"]
        assert last > first  # it trained
    total = sum(row["seconds"] for row in run["datasets"].values())
    assert run["hours_at_paper_scale"] == pytest.approx(total * 1e8 / 2000 / 3600, rel=0.01)
    assert report["summary"] == {"long_run_hours_at_paper_scale": run["hours_at_paper_scale"]}


def test_the_operator_count_separates_kernels_from_views():
    a, b = torch.rand(3, 4), torch.rand(4, 5)
    counter = figure2._OperatorCount()
    with counter:
        torch.mm(a, b).t().sum()  # two that compute (mm, sum), one view (t)
        a.detach().view(12).exp()  # two views, one that computes
    assert (counter.kernels, counter.views) == (3, 3)


def test_the_budget_of_figure2_divides_the_hour_among_steps_and_operators(monkeypatch):
    sizes = {"mnist": (12, (1, 3)), "frey-face": (8, (2, 2))}
    monkeypatch.setattr(
        figure2,
        "figure2_models",
        lambda name: [build_model(ModelSpec(sizes[name][0], z, 6)) for z in sizes[name][1]],
    )
    out = figure2.budget(hours=2.0, samples=10**6)
    steps = 10**6 // figure2.BATCH
    rows = out["datasets"]
    assert out["steps"] == 2 * steps and out["ms_per_step"] == pytest.approx(
        2 * 3600e3 / out["steps"]
    )
    ops = sum(r["steps"] * r["operators_per_step"] for r in rows.values())
    assert out["us_per_operator"] == pytest.approx(2 * 3600e6 / ops, rel=1e-3)
    flop = sum(r["steps"] * r["gflop_per_step"] for r in rows.values())
    assert out["gflop"] == pytest.approx(flop, rel=1e-3)
    assert out["gflop_per_s_needed"] == pytest.approx(flop / 7200, rel=1e-3)
    for name, row in rows.items():
        assert row["steps"] == steps and row["models"] == 2
        # a step computes: the four layers forward and backward, the noise, the optimizer
        assert 20 < row["operators_per_step"] < 400 and row["view_operators_per_step"] > 0
        # D-6-N_z: (D*6+6) + (6*2N_z+2N_z) + (N_z*6+6) + (6*D+D), per model
        D, z_dims = sizes[name]
        own = sum((6 * D + 6) + 14 * z + (6 * z + 6) + 7 * D for z in z_dims)
        assert row["parameters_of_the_models"] == own
        stacked = 2 * ((6 * D + 6) + 20 * max(z_dims) + 6 + 7 * D)  # padded to the largest N_z
        assert row["parameters_stacked"] == stacked
        assert row["gflop_per_step"] == pytest.approx(6 * stacked * figure2.BATCH / 1e9, rel=1e-3)
    # equal N_z: no padding, the stacked parameters are the models' own
    assert rows["frey-face"]["parameters_stacked"] == rows["frey-face"]["parameters_of_the_models"]


def test_counting_operators_needs_twelve_minibatches():
    with pytest.raises(ValueError, match="12 minibatches"):
        figure2.operators_per_step([build_model(ModelSpec(12, 2, 6))], torch.rand(50, 12))


def test_steady_rate_removes_what_a_run_pays_once(monkeypatch):
    """A run that costs 0.5 s once plus 0.01 s a step: 100 samples / 0.01 s, and 0.5 s once."""
    clock = {"now": 0.0}
    monkeypatch.setattr(figure2.time, "perf_counter", lambda: clock["now"])

    def run(steps):
        clock["now"] += 0.5 + 0.01 * steps

    rate, once = figure2.steady_rate(run, 40, torch.device("cpu"))
    assert rate == pytest.approx(figure2.BATCH / 0.01) and once == pytest.approx(0.5)

    def noisy(steps):  # the long run no slower than the short one: its plain speed
        clock["now"] += 1.0

    rate, once = figure2.steady_rate(noisy, 40, torch.device("cpu"))
    assert rate == pytest.approx(40 * figure2.BATCH / 1.0) and once == 0.0


@pytest.mark.slow
def test_chapter_timing_executes_a_notebook_and_reads_its_memory(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os\nprint(os.environ['AEVB_PROFILE'])")]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    good, bad = tmp_path / "good.ipynb", tmp_path / "bad.ipynb"
    nbformat.write(nb, good)
    nb.cells = [nbformat.v4.new_code_cell("assert False, 'a claim failed'")]
    nbformat.write(nb, bad)
    result = chapters.run_chapters([good, bad], profile="smoke", timeout=120, log=lambda m: None)
    ok, failed = result["notebooks"]
    assert ok["ok"] and ok["seconds"] > 0 and ok["peak_rss_mb"] > 10
    assert not failed["ok"] and "a claim failed" in failed["error"]
    assert result["count"] == 2 and result["all_ok"] is False
    assert result["total_seconds"] == pytest.approx(ok["seconds"] + failed["seconds"], abs=0.02)


def test_chapter_list_follows_the_table_of_contents_and_missing_builds_are_none(tmp_path):
    names = [p.stem for p in chapters.notebooks()]
    toc_order = [n for n in ("01_problem", "05_aevb_algorithm", "performance") if n in names]
    assert toc_order == sorted(toc_order, key=names.index)
    assert chapters.from_build(tmp_path) is None


def test_chapter_times_are_read_from_the_build_cache(tmp_path):
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("1", execution_count=1)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    first = chapters.notebooks()[0]
    cache = get_cache(str(tmp_path / ".jupyter_cache"))
    bundle = CacheBundleIn(nb, str(first), data={"execution_seconds": 12.5})
    cache.cache_notebook_bundle(bundle, check_validity=False)
    result = chapters.from_build(tmp_path)
    rows = {r["name"]: r for r in result["notebooks"]}
    assert rows[first.stem]["ok"] and rows[first.stem]["seconds"] == 12.5
    others = [r for r in result["notebooks"] if r["name"] != first.stem]
    forced = [r for r in others if r.get("note")]  # the pages executed at every build
    assert [r["name"] for r in forced] == ["performance"]
    assert all(r["ok"] and r["seconds"] is None for r in forced)
    missing = [r for r in others if not r.get("note")]
    assert all(not r["ok"] and "not in the build's cache" in r["error"] for r in missing)
    assert result["total_seconds"] == 12.5 and result["mode"] == "jupyter-cache"
    # With the build's output, the pages executed at every build get their times from it.
    log = (
        "/x/book/intro.md: Executing notebook using local CWD [mystnb]\n"
        "/x/book/intro.md: Executed notebook in 8.55 seconds [mystnb]\n"
        f"/x/book/{first.name}: Executed notebook in 99.0 seconds [mystnb]\n"
        "/x/book/performance.ipynb: Executed notebook in 6.29 seconds [mystnb]\n"
    )
    assert chapters.executed_in_log(log) == {"intro": 8.55, first.stem: 99.0, "performance": 6.29}
    rows = {r["name"]: r for r in chapters.from_build(tmp_path, log)["notebooks"]}
    assert rows[first.stem]["seconds"] == 12.5  # the cache's record wins where there is one
    assert rows["performance"]["seconds"] == 6.29 and rows["performance"]["ok"]
    assert rows["intro"] == {
        "name": "intro",
        "path": "book/intro.md",
        "ok": True,
        "seconds": 8.55,
        "peak_rss_mb": None,
        "error": None,
        "note": "from the build log",
    }


_GNU_TIME = """\
\tCommand being timed: "make book"
\tUser time (seconds): 700.25
\tSystem time (seconds): 20.75
\tPercent of CPU this job got: 98%
\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02:03.5
\tMaximum resident set size (kbytes): 1536000
\tExit status: 0
"""


def test_gnu_time_output_is_parsed_and_a_wrong_file_named():
    from benchmarks.chapters import parse_gnu_time

    got = parse_gnu_time(_GNU_TIME)
    assert got == {
        "command": "make book",
        "wall_seconds": 3723.5,
        "cpu_seconds": 721.0,
        "max_rss_mb": 1500.0,
        "exit_status": 0,
    }
    assert parse_gnu_time(_GNU_TIME.replace("1:02:03.5", "12:03.25"))["wall_seconds"] == 723.2
    with pytest.raises(ValueError, match="/usr/bin/time -v"):
        parse_gnu_time("real 0m1.0s")


def test_profiler_events_are_sorted_into_kinds_of_work():
    assert steps.kind_of("aten::addmm") == steps.kind_of("aten::baddbmm") == "matrix multiplies"
    assert steps.kind_of("aten::uniform_") == steps.kind_of("aten::normal_") == "random numbers"
    assert steps.kind_of("Optimizer.step#Adagrad.step") == "optimizer"
    assert steps.kind_of("aten::_fused_adagrad_") == "optimizer"
    assert steps.kind_of("aten::tanh_") == "other operators"
    assert steps.kind_of("enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__") is None


def test_the_step_breakdown_finds_the_matrix_multiplies_of_fit(one_thread):
    """On a model whose step is dominated by its products, they are the largest part."""
    case = loops.Case("wide 256-1024-8, batch 64", 256, 1024, 8, 64)
    x = torch.rand(640, 256, generator=torch.Generator().manual_seed(0))
    split = steps.breakdown(case, x, 1280, "aevb")
    ms = split["ms_per_step"]
    assert split["steps"] == 20
    assert ms["matrix multiplies"] > 0 and ms["random numbers"] > 0 and ms["optimizer"] > 0
    assert ms["matrix multiplies"] == max(ms.values())


def test_gpu_sections_of_a_device_run_merge_into_the_report(tmp_path, one_thread):
    """scripts/device-check.sh writes a report on the GPU machine; --merge-gpu takes its GPU
    sections into the committed report and keeps everything else."""
    out = tmp_path / "report.json"
    assert bench.main(["--quick", "--skip-figure2", "--threads", "1", "--out", str(out)]) == 0
    before = _strict_json(out)
    device = tmp_path / "device.json"
    # What a device run looks like (its numbers are made up: only their path is checked).
    gpu = {"measured": True, "device": "cuda", "projected_hours_batched": 0.5, "datasets": {}}
    device.write_text(
        json.dumps(
            {
                "command": "python -m benchmarks --skip-throughput",
                "machine": {"gpu": "a GPU", "cuda": True},
                "figure2": {"cpu": {"measured": False, "reason": "x"}, "gpu": gpu},
            }
        )
    )
    assert bench.main(["--merge-gpu", str(device), "--out", str(out)]) == 0
    after = _strict_json(out)
    assert after["figure2"]["gpu"] == gpu and after["summary"]["figure2_gpu_hours"] == 0.5
    assert after["gpu_machine"]["gpu"] == "a GPU"
    assert after["throughput"] == before["throughput"]
    assert after["figure2"]["cpu"] == before["figure2"]["cpu"]
    # `make bench` (--update) on a machine without a GPU measures Figure 2 on the CPU only:
    # the merged GPU numbers and their machine stay.
    cpu_only = {
        "command": "python -m benchmarks --update",
        "throughput": {"measured": False, "reason": "skipped (--skip-throughput)"},
        "figure2": {"cpu": {"measured": True}, "gpu": {"measured": False, "reason": "no CUDA"}},
    }
    updated = bench.merge(after, cpu_only)
    assert updated["figure2"] == {"cpu": {"measured": True}, "gpu": gpu}
    assert (
        updated["gpu_machine"]["gpu"] == "a GPU" and updated["summary"]["figure2_gpu_hours"] == 0.5
    )
    # A report without GPU numbers is refused, and the message says how to get one.
    device.write_text(json.dumps(before))
    with pytest.raises(SystemExit, match="device-check.sh"):
        bench.main(["--merge-gpu", str(device), "--out", str(out)])


def _measured_report(created: str, ratios: list[float], *, quick: bool = False) -> dict:
    """A report's throughput section as the benchmark writes it (numbers made up)."""
    n = len(ratios)
    row = {
        "name": "784-500-20, batch 100",
        "samples_per_s": {"aevb": 1.0},
        "ratio_vs_conventional_runs": ratios,
        "fraction_of_matmul_runs": [0.5] * n,
        "matmul_gflops_runs": [100.0] * n,
    }
    return {
        "created": created,
        "quick": quick,
        "machine": {"cpu": "a CPU", "torch": "2.13.0+cpu"},
        "throughput": {
            "measured": True,
            "torch_threads": 2,
            "samples_per_run": 100,
            "cases": [row],
        },
    }


def test_every_measured_throughput_run_is_kept_in_order_and_pooled():
    first = bench.keep_runs({}, _measured_report("t1", [3.0, 4.0, 5.0]), True, "abc1234")
    (run,) = first["throughput_runs"]
    assert run["created"] == "t1" and run["commit"] == "abc1234" and run["threads"] == 2
    assert run["cases"]["784-500-20, batch 100"]["ratio_vs_conventional_runs"] == [3.0, 4.0, 5.0]
    second = bench.keep_runs(first, _measured_report("t2", [3.5]), True, "def5678+")
    assert [r["commit"] for r in second["throughput_runs"]] == ["abc1234", "def5678+"]
    # Pooled over every round of every run: the median of 3, 3.5, 4, 5 and the rounds at 4x.
    pool = second["summary"]["every_cpu_run"]["784-500-20, batch 100"]
    assert pool == {
        "runs": 2,
        "rounds": 4,
        "median_ratio_vs_conventional": 3.75,
        "rounds_at_target": 2,
    }
    # A --quick run checks the code and a run that skipped the throughput measured none:
    # neither is kept, and neither drops the runs already kept.
    quick = bench.keep_runs(second, _measured_report("t3", [9.0], quick=True), True, "x")
    skipped = bench.keep_runs(second, _measured_report("t4", [9.0]), False, None)
    for report in (quick, skipped):
        assert report["throughput_runs"] == second["throughput_runs"]


def test_the_verdict_pools_only_the_runs_of_the_loop_measured_now():
    """Runs of earlier loops (written before runs carried a version: the version of their
    training revision, 2 before runs carried that too) stay in the report, but a faster or
    slower step is not pooled with them."""
    new = bench.keep_runs({}, _measured_report("t2", [4.5, 4.1]), True, "def5678")
    assert new["throughput_runs"][0]["training_revision"] == bench.TRAINING_REVISION
    assert new["throughput_runs"][0]["loop_version"] == bench._loops.LOOP_VERSION
    old_run = {**new["throughput_runs"][0], "created": "t1", "commit": "abc1234"}
    del old_run["training_revision"], old_run["loop_version"]
    old_run["cases"] = {
        name: {**case, "ratio_vs_conventional_runs": [3.0, 3.1, 3.2]}
        for name, case in old_run["cases"].items()
    }
    revision_3 = {**old_run, "created": "t1.5", "commit": "bcd2345", "training_revision": 3}
    both = bench.keep_runs(
        {"throughput_runs": [old_run, revision_3]}, _measured_report("t3", [4.3]), True, "x"
    )
    assert [r["commit"] for r in both["throughput_runs"]] == ["abc1234", "bcd2345", "x"]
    assert bench.run_revision(both["throughput_runs"][0]) == 2
    assert [bench.run_version(r) for r in both["throughput_runs"]] == [
        2,
        3,
        bench._loops.LOOP_VERSION,
    ]
    pool = both["summary"]["every_cpu_run"]["784-500-20, batch 100"]
    assert both["summary"]["every_cpu_run_version"] == bench._loops.LOOP_VERSION
    assert bench._loops.LOOP_VERSION > 3
    assert pool["runs"] == 1 and pool["rounds"] == 1 and pool["rounds_at_target"] == 1
    everything = bench.pooled(both["throughput_runs"])["784-500-20, batch 100"]
    assert everything["runs"] == 3 and everything["rounds"] == 7


def test_a_run_that_measures_no_throughput_keeps_the_runs_of_the_report(tmp_path, one_thread):
    out = tmp_path / "report.json"
    assert bench.main(["--quick", "--skip-figure2", "--threads", "1", "--out", str(out)]) == 0
    report = _strict_json(out)
    assert "throughput_runs" not in report  # a --quick run is not kept
    kept = bench.keep_runs({}, _measured_report("t1", [3.0]), True, "abc1234")["throughput_runs"]
    out.write_text(json.dumps({**report, "throughput_runs": kept}))
    argv = ["--quick", "--skip-throughput", "--skip-figure2", "--out", str(out)]
    assert bench.main(argv) == 0  # without --update too: the runs are never dropped
    again = _strict_json(out)
    assert again["throughput_runs"] == kept
    assert again["summary"]["every_cpu_run"]["784-500-20, batch 100"]["rounds"] == 1


def test_the_commit_of_a_run_is_read_from_git_or_none(monkeypatch):
    commit = bench._commit()
    assert commit is None or commit.rstrip("+").isalnum()

    def no_git(*args, **kwargs):
        raise OSError("git: not found")

    monkeypatch.setattr(bench.subprocess, "run", no_git)
    assert bench._commit() is None


def test_the_readme_states_the_pooled_ratios_of_the_committed_report():
    """The README's throughput sentence is the committed report's verdict, not a copy that
    drifts from it."""
    root = Path(__file__).resolve().parents[1]
    summary = json.loads((root / "benchmarks" / "report.json").read_text())["summary"]
    readme = " ".join((root / "README.md").read_text(encoding="utf-8").split())
    said = re.search(
        r"Pooled over loop version (\d+)'s (\w+) runs, `fit` is ([\d.]+)x .*? \((\d+) of (\d+) "
        r"rounds at 4x or more\) and ([\d.]+)x .*? \((\d+) of (\d+)\)",
        readme,
    )
    assert said, "the README's sentence on the pooled runs is missing or reworded"
    version, runs, r1, a1, n1, r2, a2, n2 = said.groups()
    assert int(version) == summary["every_cpu_run_version"]
    pooled = summary["every_cpu_run"]
    small = next(v for k, v in pooled.items() if k.startswith("784-400-20"))
    paper = next(v for k, v in pooled.items() if k.startswith("784-500-20"))
    words = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
    assert runs == words.get(small["runs"], str(small["runs"]))
    assert (float(r1), int(a1), int(n1)) == (
        small["median_ratio_vs_conventional"],
        small["rounds_at_target"],
        small["rounds"],
    )
    assert (float(r2), int(a2), int(n2)) == (
        paper["median_ratio_vs_conventional"],
        paper["rounds_at_target"],
        paper["rounds"],
    )
