"""Progress bars: ``tqdm.auto`` (a widget in a notebook, text in a terminal).

In the static HTML build (``AEVB_WIDGETS=static``) bars are off, so no kernel-only widget
lands in the pages; ``AEVB_PROGRESS=0`` turns them off anywhere.
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm


def progress_enabled() -> bool:
    """Whether bars are shown: off under ``AEVB_WIDGETS=static`` or ``AEVB_PROGRESS=0``."""
    if os.environ.get("AEVB_PROGRESS", "1") == "0":
        return False
    return os.environ.get("AEVB_WIDGETS", "").lower() != "static"


def progress(*args, **kwargs) -> tqdm:
    """A ``tqdm.auto`` bar, disabled when :func:`progress_enabled` is false."""
    kwargs.setdefault("disable", not progress_enabled())
    if not progress_enabled():  # the static build: no widget, whatever the caller passed
        kwargs["disable"] = True
    kwargs.setdefault("leave", False)
    return tqdm(*args, **kwargs)


def training_progress(total: int, desc: str, show: bool = True) -> tqdm:
    """The bar of a training loop: ``total`` training samples, counted as they are seen."""
    return progress(
        total=total, unit="sample", unit_scale=True, desc=desc, disable=None if show else True
    )
