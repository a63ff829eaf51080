"""The one switch for training lengths: ``AEVB_PROFILE=smoke|book|paper``.

``smoke`` serves the tests (seconds), ``book`` the HTML build (each chapter within 3 minutes on
a 2-core CPU), ``paper`` the paper's own scale (Section 5: up to 10^8 training samples, meant
for a GPU). Every training length in the package and the book is read through
:func:`budget`; nothing else hard-codes epochs.
"""

from __future__ import annotations

import difflib
import os

PROFILES: tuple[str, ...] = ("smoke", "book", "paper")
DEFAULT_PROFILE = "book"

# Each entry: a name -> its value in (smoke, book, paper). Lengths in training samples
# (datapoints seen, the x-axis of the paper's Figure 2) unless the name says otherwise.
_BUDGETS: dict[str, tuple[float, float, float]] = {
    # Chapter 5: Algorithm 1 on MNIST and on the continuous data set.
    "aevb_mnist_samples": (2_000, 600_000, 10_000_000),
    "aevb_frey_samples": (1_000, 200_000, 10_000_000),
    # Figure 2: lower bound against samples seen, several Nz.
    "figure2_samples": (1_000, 60_000, 100_000_000),
    # Figure 3: marginal likelihood, small training sets.
    "figure3_samples": (500, 60_000, 10_000_000),
    # Evaluation: datapoints used to estimate a bound on train / test sets.
    "eval_points": (200, 1_000, 10_000),
    # Importance samples for the marginal likelihood estimate.
    "importance_samples": (16, 500, 5_000),
    # Monte Carlo repetitions for variance measurements.
    "variance_repeats": (200, 5_000, 100_000),
    # HMC transitions per chain.
    "hmc_steps": (20, 300, 2_000),
    # Chapters 1-4 (the method).
    # Ch. 1: largest latent dimension of the grid-cost measurement; MCEM E-step cost demo.
    "grid_max_dim": (3, 4, 5),
    "mcem_datapoints": (10, 20, 100),
    "mcem_transitions": (5, 10, 100),
    # Ch. 2: Monte Carlo draws comparing eq. 2 and eq. 3 with the exact bound.
    "bound_check_samples": (2_000, 20_000, 200_000),
    # Ch. 3: draws of the 1-D gradient estimators (closed-form checks) and per explorer state.
    "closed_form_draws": (20_000, 200_000, 1_000_000),
    "explorer_draws": (500, 2_000, 10_000),
    # Ch. 3-4: encoder-gradient variance in the MNIST VAE (datapoints x noise repeats).
    "gradient_variance_points": (10, 50, 100),
    "gradient_variance_repeats": (30, 300, 2_000),
    # Ch. 4: repeats of the minibatch gradient (eq. 8) per (M, L) setting.
    "minibatch_variance_repeats": (20, 150, 1_000),
    # Ch. 6 (Figure 2): hidden units (paper: 500 MNIST, 200 Frey Face; fewer in book so that
    # 18 training runs fit the 2-core budget), evaluation points and evaluations per run.
    "figure2_hidden_mnist": (50, 100, 500),
    "figure2_hidden_continuous": (50, 100, 200),
    "figure2_eval_points": (100, 500, 10_000),
    "figure2_evals": (3, 8, 30),
    # Ch. 7 (Figure 3): checkpoints per curve, MCEM's training length (HMC makes it ~10x
    # dearer per sample), datapoints per split and HMC samples per stage of Appendix D.
    "figure3_points": (2, 4, 8),
    "figure3_mcem_samples": (200, 6_000, 1_000_000),
    "figure3_eval_points": (10, 50, 1_000),
    "figure3_hmc_samples": (5, 30, 1_000),
    # Ch. 9 (posterior inference): test digits, gradient steps of a per-datapoint q.
    "posterior_points": (12, 100, 1_000),
    "posterior_steps": (30, 400, 3_000),
    # Ch. 5: the hand-written Algorithm 1 loop (a demonstration; the models come from the zoo).
    "algorithm1_demo_samples": (2_000, 20_000, 100_000),
    # Ch. 8 (Figures 4, 5, the N_z explorer): MNIST models with N_z = 2, 5, 10 (N_z = 20 is
    # chapter 5's, aevb_mnist_samples); equal to aevb_mnist_samples in smoke and paper.
    "manifold_samples": (2_000, 200_000, 10_000_000),
    # Ch. 10 (marginal inference): test images per task, restoration steps, Gibbs sweeps.
    "marginal_points": (12, 100, 1_000),
    "marginal_steps": (20, 200, 2_000),
    "gibbs_steps": (10, 200, 2_000),
    # Ch. 11 (Appendix F, full VB): training samples for the VB and the MAP model.
    "fullvb_samples": (1_000, 300_000, 3_000_000),
    "fullvb_repeats": (20, 200, 1_000),
}


def current() -> str:
    """The active profile, from the ``AEVB_PROFILE`` environment variable (default ``book``)."""
    name = os.environ.get("AEVB_PROFILE", DEFAULT_PROFILE).strip().lower() or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ValueError(
            f"AEVB_PROFILE={name!r} is not a profile; use one of {', '.join(PROFILES)} "
            "(for example: export AEVB_PROFILE=book)."
        )
    return name


def budget(key: str, profile: str | None = None) -> int:
    """The training length (or sample count) ``key`` under ``profile`` (default: active one).

    >>> budget("eval_points", "smoke")
    200
    """
    profile = current() if profile is None else profile
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; use one of {', '.join(PROFILES)}")
    if key not in _BUDGETS:
        close = difflib.get_close_matches(key, _BUDGETS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"no budget named {key!r}.{hint} Known: {', '.join(sorted(_BUDGETS))}")
    return int(_BUDGETS[key][PROFILES.index(profile)])


def budgets(profile: str | None = None) -> dict[str, int]:
    """Every budget of ``profile`` (default: the active one), as a dict."""
    return {key: budget(key, profile) for key in _BUDGETS}
