"""Training functions seed torch's global generator with their own seed; this keeps that from
leaking out. A chapter's random draws after a training call are then the same whether the model
was trained just now or loaded from the cache.

:func:`seeded` runs a block under a seed of its own and gives every global generator (the
CPU's, and each CUDA device's) back as it was: ``torch.manual_seed`` seeds the CUDA generators
too, so forking the CPU's alone would leave them re-seeded afterwards (on a GPU, every
evaluation of the bound inside ``fit`` would then have reset the training noise)."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)


def keeps_global_rng(fn: F) -> F:
    """Decorate ``fn`` so that torch's global random state (CPU, and CUDA when present) is
    the same after a call as before it."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.random.fork_rng(devices=_cuda_devices()):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's global generators seeded by ``seed`` (``torch.manual_seed``),
    and restore all of them, CPU and CUDA, afterwards."""
    with torch.random.fork_rng(devices=_cuda_devices()):
        torch.manual_seed(seed)
        yield


def seeded_by(
    generator: torch.Generator | None, high: int
) -> contextlib.AbstractContextManager[None]:
    """:func:`seeded` with a seed drawn below ``high`` from ``generator``; with no generator,
    a block that leaves the global generators to run on as they are."""
    if generator is None:
        return contextlib.nullcontext()
    return seeded(int(torch.randint(high, (1,), generator=generator)))


#: The environment variable of :func:`draw_salt`.
SALT_VARIABLE = "AEVB_DRAW_SALT"
_SALT_STRIDE = 1_000_003  # a salted seed never lands on another model's unsalted seed + k


def draw_salt() -> int:
    """The draw salt, ``AEVB_DRAW_SALT`` (a whole number >= 0; unset or 0: the book as published).

    A salt moves every *training* seed (:func:`training_seed`): the initial weights of cached
    models, the minibatch order, the binary pixels of dynamic binarization, the noise ε of
    eq. 10, wake-sleep's dreams and MCEM's chains. The evaluations keep their own draws. The
    book built under another salt is the same book trained on other random draws: a claim that
    fails there held for one draw only. Cache keys carry a non-zero salt, so the cached models
    of different salts never mix.
    """
    raw = os.environ.get(SALT_VARIABLE, "").strip()
    if not raw:
        return 0
    if not raw.isdigit():
        raise ValueError(
            f"{SALT_VARIABLE}={raw!r}; use a whole number >= 0 (unset it, or 0, for the book as "
            "published; 1, 2, ... train every model on other random draws)"
        )
    return int(raw)


def with_salt(fields: dict) -> dict:
    """``fields`` of a cache key, with the draw salt added when there is one (the book as
    published keeps its keys; a salted build has keys of its own)."""
    salt = draw_salt()
    return {**fields, "salt": salt} if salt else fields


def training_seed(seed: int) -> int:
    """``seed`` moved by the draw salt (:func:`draw_salt`): ``seed`` itself when there is none."""
    return int(seed) + _SALT_STRIDE * draw_salt()
