"""Where the time of a training step goes: a loop run under ``torch.profiler``, its operators
sorted into kinds of work.

Each operator's *self* time (the time in the operator itself, not in the operators it calls)
is counted under one kind:

``matrix multiplies``
    ``addmm``, ``mm``, ``bmm``, ``baddbmm`` ...: the floor of a step (benchmarks/loops.py times
    them alone).
``random numbers``
    the uniform draws of dynamic binarization, the noise ε of eq. 10, the epoch's permutation.
``optimizer``
    the fused Adagrad kernel, and the optimizer's own Python (``Optimizer.step`` records it).
``other operators``
    every other operator: element-wise passes (tanh, sigmoid, the likelihood, exp), sums,
    copies, indexing, the allocation of tensors.
``Python and data loading``
    the rest of the wall-clock time: the interpreter between operators, and in the
    conventional loop the per-image work of the ``Dataset`` (a PIL image, a transform) and the
    ``DataLoader``'s collation, which are not operators of their own but Python around them.

The profiler adds a few microseconds to each operator, so the milliseconds are those of the
profiled run; the report states them beside the unprofiled speed.
"""

from __future__ import annotations

import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from . import loops as _loops

KINDS: tuple[str, ...] = (
    "matrix multiplies",
    "random numbers",
    "optimizer",
    "other operators",
    "Python and data loading",
)
_MATMUL = {"aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::addbmm"}
_RANDOM = {
    "aten::uniform_",
    "aten::normal_",
    "aten::random_",
    "aten::randperm",
    "aten::bernoulli_",
    "aten::bernoulli",
}


def kind_of(name: str) -> str | None:
    """The kind of work of a profiler event, or None for an event that is not an operator
    (whose self time is then counted as Python)."""
    if name in _MATMUL:
        return "matrix multiplies"
    if name in _RANDOM:
        return "random numbers"
    if name.startswith("Optimizer.step#") or "_fused_adagrad" in name or "_fused_adam" in name:
        return "optimizer"
    if name.startswith("aten::"):
        return "other operators"
    return None


def breakdown(case: _loops.Case, x: torch.Tensor, samples: int, loop: str = "aevb") -> dict:
    """Milliseconds per step of ``loop`` (a name in :data:`loops.LOOPS`) by kind of work, for
    ``samples`` training samples after a warm-up of the same length."""
    run = _loops.LOOPS[loop]
    _, model = run(case, x, samples)  # warm-up: allocations, kernels, data caches
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        run(case, x, samples, model, 1)
        wall_us = (time.perf_counter() - started) * 1e6
    spent: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        kind = kind_of(event.key)
        if kind is not None:
            spent[kind] += event.self_cpu_time_total
    steps = samples / case.batch_size
    spent["Python and data loading"] = max(0.0, wall_us - sum(spent.values()))
    ms = {kind: round(spent[kind] / steps / 1e3, 3) for kind in KINDS}
    return {
        "loop": loop,
        "steps": round(steps, 1),
        "ms_per_step": ms,
        "profiled_ms_per_step": round(wall_us / steps / 1e3, 3),
    }
