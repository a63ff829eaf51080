"""The paper's figures as scripts: ``python -m aevb reproduce FIGURE --out DIR``.

Each module ``aevb.experiments.figureN`` has one entry point::

    run(out: Path, device) -> dict

which trains (or loads from the cache, :mod:`aevb.cache`) what the figure needs, writes the
figure as PNG and its data as CSV or JSON into the folder ``out``, and returns a summary
(the files written and the headline numbers). Training lengths come from the active profile
(``AEVB_PROFILE``, set by the command line's ``--profile``).

- ``figure2``: the lower bound against training samples for several N_z (Figure 2).
- ``figure3``: the marginal likelihood against training samples, AEVB, wake-sleep and Monte
  Carlo EM (Figure 3).
- ``figure4``: learned two-dimensional manifolds, MNIST and the continuous data set (Figure 4).
- ``figure5``: random samples for N_z = 2, 5, 10, 20 (Figure 5).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

#: Figure name -> what it shows (the command line lists these).
FIGURES: dict[str, str] = {
    "figure2": "lower bound vs. training samples for several N_z (Figure 2)",
    "figure3": "marginal likelihood vs. training samples: AEVB, wake-sleep, MCEM (Figure 3)",
    "figure4": "learned 2-D manifolds, MNIST and the continuous data set (Figure 4)",
    "figure5": "random samples for N_z = 2, 5, 10, 20 (Figure 5)",
}


class UnknownFigureError(ValueError):
    """A figure name that is not in :data:`FIGURES`; the message lists the valid names."""


def check_figure(name: str) -> str:
    """``name`` if it is a known figure, else :class:`UnknownFigureError` listing them."""
    if name not in FIGURES:
        raise UnknownFigureError(
            f"unknown figure {name!r}; valid figures: {', '.join(FIGURES)} (or 'all')"
        )
    return name


def load(name: str) -> ModuleType:
    """The module ``aevb.experiments.<name>`` (a clear ImportError if it is not installed)."""
    check_figure(name)
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
        raise ImportError(
            f"aevb.experiments.{name} is not part of this installation of aevb; "
            "update aevb (pip install -U aevb) to reproduce this figure"
        ) from err


def run(name: str, out: str | Path, device=None) -> dict:
    """Reproduce figure ``name`` into the folder ``out`` (created if missing)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return load(name).run(out, device)
