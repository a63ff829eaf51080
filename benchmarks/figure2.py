"""Figure 2 at the paper's scale: samples per second per model, and the projected time.

Figure 2 trains, for each N_z, a VAE on MNIST (784-500-N_z, N_z in 3, 5, 10, 20, 200) and on
Frey Face (560-200-N_z, N_z in 2, 5, 10, 20) for 10^8 training samples, at batch 100. This
module measures, on one device:

* each model alone with :func:`aevb.train.fit` (samples per second);
* each data set's models together with :func:`aevb.batched.fit_batched` (samples per second
  per model: every model sees every sample); on a GPU both with the step captured in a CUDA
  graph (the default there, which the projection uses) and without;

and projects the time of the whole figure, 10^8 samples for each of the 9 models.

Each speed is a steady-state one: every configuration is timed over a short and a long run, and
the speed is the extra samples over the extra seconds, so what a run pays once (checking the
data, the two evaluations of the bound, and on a GPU the warm-up steps and the capture of the
CUDA graph) cancels out; it is reported as ``fixed_seconds``. In a projection of 10^6 steps
those costs are paid once, whereas in a timed run of a few hundred fast GPU steps they would be
a good part of the time.

The speed does not depend on the pixel values, so where Frey Face is not available (offline)
random grey levels of its size (1,965 images of 28 x 20) stand in, and the report says so.

:func:`budget` needs no timing: it counts what the figure asks of any device, the batched steps
of 10^6 minibatches per data set, the operators each step dispatches (each at least one kernel
launch on a GPU) and its floating-point operations, and divides the target time among them.
"""

from __future__ import annotations

import time
import warnings

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import aevb
from aevb.batched import FIGURE2_Z, StackedVAE, figure2_models, fit_batched
from aevb.train import TrainConfig, fit

PAPER_SAMPLES = 10**8
BATCH = 100


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _data(name: str) -> tuple[torch.Tensor, str]:
    try:
        ds = aevb.data.load(name, "train", verbose=False)
        return ds.images, ds.source
    except Exception as err:  # noqa: BLE001 - any failure: stand-in data, said so
        x_dim, n = (784, 60000) if name == "mnist" else (560, 1965)
        x = torch.rand(n, x_dim, generator=torch.Generator().manual_seed(0))
        return x, f"random grey levels of the same size ({name} unavailable: {type(err).__name__})"


def _timed(fn, device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def config(steps: int) -> TrainConfig:
    """The training config of a timed run: ``steps`` minibatches of ``BATCH``, two evaluations."""
    return TrainConfig(samples=steps * BATCH, batch_size=BATCH, n_evals=2, eval_points=100)


def steady_rate(run, steps: int, device: torch.device) -> tuple[float, float]:
    """Samples per second of ``run(n)`` (which trains ``n`` minibatches of ``BATCH``) in the
    steady state, and the seconds it pays once per call.

    ``run`` is timed for ``steps // 4`` and for ``steps`` minibatches: the speed is the extra
    samples over the extra seconds, the one-off cost what the short run took beyond its steps.
    Should noise make the long run no slower than the short one, the long run's plain speed is
    returned (and no one-off cost).
    """
    short, long = max(1, steps // 4), max(2, steps)
    t_short = _timed(lambda: run(short), device)
    t_long = _timed(lambda: run(long), device)
    if t_long <= t_short:
        return long * BATCH / t_long, 0.0
    per_step = (t_long - t_short) / (long - short)
    return BATCH / per_step, max(0.0, t_short - short * per_step)


def measure(device: str | torch.device = "cpu", steps: int = 200, warmup: int = 20) -> dict:
    """Samples per second of Figure 2's models on ``device``, alone and batched, and the
    projected time of the figure at 10^8 samples per model."""
    dev = torch.device(device)
    out: dict = {
        "device": str(dev),
        "steps": steps,
        "short_steps": max(1, steps // 4),
        "batch_size": BATCH,
        "datasets": {},
    }
    if dev.type == "cuda":
        out["device_name"] = torch.cuda.get_device_name(dev)
    total_batched = total_alone = 0.0
    for name, z_dims in FIGURE2_Z.items():
        x, source = _data(name)
        x = x.to(dev)

        alone, fixed = {}, {}
        for model in figure2_models(name):
            fit(model, x, config(warmup), device=dev, show_progress=False)
            rate, once = steady_rate(
                lambda n, m=model, x=x: fit(m, x, config(n), device=dev, show_progress=False),
                steps,
                dev,
            )
            alone[str(model.spec.z_dim)] = rate
            fixed[f"alone {model.spec.z_dim}"] = round(once, 4)
        modes = {"graph": True, "eager": False} if dev.type == "cuda" else {"eager": False}
        speeds, graph_error = {}, None
        for mode, graph in modes.items():
            models = figure2_models(name)
            fit_batched(
                models, x, config(warmup), device=dev, cuda_graph=graph, show_progress=False
            )
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                rate, once = steady_rate(
                    lambda n, ms=models, x=x, g=graph: fit_batched(
                        ms, x, config(n), device=dev, cuda_graph=g, show_progress=False
                    ),
                    steps,
                    dev,
                )
            failed = [str(w.message) for w in caught if "capture failed" in str(w.message)]
            if graph and failed:
                graph_error = failed[0]
            speeds[mode] = rate  # per model: each model sees every sample
            fixed[f"batched {mode}"] = round(once, 4)
        batched = speeds.get("graph", speeds["eager"])
        projected_batched = PAPER_SAMPLES / batched
        projected_alone = sum(PAPER_SAMPLES / s for s in alone.values())
        total_batched += projected_batched
        total_alone += projected_alone
        out["datasets"][name] = {
            "data": source,
            "z_dims": list(z_dims),
            "samples_per_s_alone": {k: round(v, 1) for k, v in alone.items()},
            "samples_per_s_per_model_batched": round(batched, 1),
            "samples_per_s_per_model_batched_by_mode": {k: round(v, 1) for k, v in speeds.items()},
            "cuda_graph": (
                {"used": graph_error is None, "error": graph_error}
                if "graph" in speeds
                else {"used": False, "error": "not a CUDA device"}
            ),
            "fixed_seconds": fixed,
            "projected_hours_alone": round(projected_alone / 3600, 3),
            "projected_hours_batched": round(projected_batched / 3600, 3),
        }
    out["projected_hours_batched"] = round(total_batched / 3600, 3)
    out["projected_hours_alone"] = round(total_alone / 3600, 3)
    out["samples_per_model"] = PAPER_SAMPLES
    return out


class _OperatorCount(TorchDispatchMode):
    """Counts the ATen operators dispatched while active: those that compute (each at least one
    kernel launch on a GPU) and the views (metadata only, no kernel)."""

    def __init__(self) -> None:
        super().__init__()
        self.kernels = self.views = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "aten":  # not the profiler's markers (record_function)
            if func.is_view:
                self.views += 1
            else:
                self.kernels += 1
        return func(*args, **(kwargs or {}))


def operators_per_step(models, x: torch.Tensor, check_every: int = 50) -> tuple[float, float]:
    """The ATen operators one step of :func:`fit_batched` dispatches on the CPU, as
    ``(computing, views)``: counted over a run of 4 and of 12 minibatches of ``BATCH`` (one
    epoch of ``x``, eager), the difference over 8 steps, so that what a run does once (the
    data check, the evaluations, the stacking) drops out. ``check_every`` is the GPU's default:
    a finiteness check (and its snapshot) every 50 steps. The models are trained in place."""
    if x.shape[0] < 12 * BATCH:
        raise ValueError(f"x has {x.shape[0]} rows; counting needs 12 minibatches of {BATCH}")

    def run(steps: int) -> None:
        fit_batched(
            models,
            x,
            config(steps),
            device="cpu",
            check_every=check_every,
            cuda_graph=False,
            show_progress=False,
        )

    run(1)  # a warm-up, uncounted: one-off probes and caches
    counts = []
    for steps in (4, 12):
        counter = _OperatorCount()
        with counter:
            run(steps)
        counts.append((counter.kernels, counter.views))
    (k4, v4), (k12, v12) = counts
    return (k12 - k4) / 8, (v12 - v4) / 8


def _sig(value: float, digits: int = 6) -> float:
    """``value`` to ``digits`` significant digits (the report's precision)."""
    return float(f"{value:.{digits}g}")


def budget(hours: float = 1.0, samples: int = PAPER_SAMPLES) -> dict:
    """What Figure 2 at ``samples`` per model within ``hours`` asks of a device, by counting.

    Each data set's models train together, one batched step per minibatch of ``BATCH``: the
    figure is ``samples / BATCH`` steps per data set. Per step: the operators it dispatches
    (:func:`operators_per_step`) and its arithmetic, 6 x parameters x ``BATCH`` for the stacked
    parameters (the models padded to the largest N_z, as the step computes them) and for the
    models' own. The time is then shared out: milliseconds per step, microseconds per
    operator, and the GFLOP/s the arithmetic needs.
    """
    seconds = hours * 3600.0
    steps_per_set = samples // BATCH
    sets, total_steps, total_ops, total_flop = {}, 0, 0.0, 0.0
    for name in FIGURE2_Z:
        models = figure2_models(name)
        x = torch.rand(12 * BATCH, models[0].spec.x_dim, generator=torch.Generator().manual_seed(0))
        kernels, views = operators_per_step(models, x)
        stacked = sum(p.numel() for p in StackedVAE(models).parameters())
        own = sum(p.numel() for m in models for p in m.parameters())
        flop = 6.0 * stacked * BATCH
        sets[name] = {
            "models": len(models),
            "steps": steps_per_set,
            "operators_per_step": kernels,
            "view_operators_per_step": views,
            "parameters_stacked": stacked,
            "parameters_of_the_models": own,
            "gflop_per_step": _sig(flop / 1e9),
            "useful_gflop_per_step": _sig(6.0 * own * BATCH / 1e9),
        }
        total_steps += steps_per_set
        total_ops += steps_per_set * kernels
        total_flop += steps_per_set * flop
    return {
        "hours": hours,
        "samples_per_model": samples,
        "batch_size": BATCH,
        "steps": total_steps,
        "ms_per_step": _sig(seconds / total_steps * 1e3),
        "us_per_operator": _sig(seconds / total_ops * 1e6),
        "gflop": _sig(total_flop / 1e9),
        "gflop_per_s_needed": _sig(total_flop / seconds / 1e9),
        "datasets": sets,
    }


def long_run(samples: int, device: str | torch.device = "cuda", n_evals: int = 5) -> dict:
    """Train each data set's Figure 2 models together for ``samples`` per model, end to end
    (checks, evaluations, warm-up and capture included), and scale the wall-clock time to the
    paper's 10^8 samples, to hold against :func:`measure`'s steady-state projection.

    This checks the projection on a run long enough to be a real fraction of the paper's: at
    ``samples = 10**7`` it is a tenth of Figure 2 at the paper's scale.
    """
    dev = torch.device(device)
    out: dict = {"device": str(dev), "samples_per_model": int(samples), "datasets": {}}
    if dev.type == "cuda":
        out["device_name"] = torch.cuda.get_device_name(dev)
    cfg = TrainConfig(samples=int(samples), batch_size=BATCH, n_evals=n_evals, eval_points=1000)
    for name in FIGURE2_Z:
        out["datasets"][name] = _long_run_one(name, cfg, dev)
    total = sum(row["seconds"] for row in out["datasets"].values())
    out["seconds"] = round(total, 4)
    out["hours_at_paper_scale"] = round(total * PAPER_SAMPLES / samples / 3600, 3)
    return out


def _long_run_one(name: str, cfg: TrainConfig, dev: torch.device) -> dict:
    x, source = _data(name)
    x = x.to(dev)
    models, histories = figure2_models(name), []
    seconds = _timed(
        lambda: histories.extend(fit_batched(models, x, cfg, device=dev, show_progress=False)),
        dev,
    )
    return {
        "data": source,
        "z_dims": [m.spec.z_dim for m in models],
        "seconds": round(seconds, 4),
        "samples_per_s_per_model": round(cfg.samples / seconds, 1),
        "steps": cfg.samples // BATCH,
        "train_bound_first_last": {
            str(m.spec.z_dim): [round(h.train_bound[0], 2), round(h.train_bound[-1], 2)]
            for m, h in zip(models, histories, strict=True)
        },
    }
