"""Training functions seed torch's global generator with their own seed; this keeps that from
leaking out. A chapter's random draws after a training call are then the same whether the model
was trained just now or loaded from the cache."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)


def keeps_global_rng(fn: F) -> F:
    """Decorate ``fn`` so that torch's global random state (CPU, and CUDA when present) is
    the same after a call as before it."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=cuda):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
