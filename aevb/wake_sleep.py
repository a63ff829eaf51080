"""The wake-sleep algorithm (Hinton et al., 1995): the baseline of the paper's Figures 2 and 3.

Wake-sleep trains the same pair of networks as AEVB — a recognition model q_φ(z|x) and a
generative model p_θ(z) p_θ(x|z) — but not with one objective. Each minibatch takes two steps:

    wake:   z ~ q_φ(z|x) for the data x;  θ ← θ + η ∇_θ log p_θ(x, z)
    sleep:  z ~ p_θ(z), x ~ p_θ(x|z) (a "dream");  φ ← φ + η ∇_φ log q_φ(z|x)

The wake phase is the M-step of EM with a sample from q in place of the true posterior — in
expectation exactly AEVB's gradient for θ, since ∇_θ L = E_q[∇_θ log p_θ(x, z)]. The sleep phase
fits q to the generative model's own dreams: it minimises KL(p_θ(z|x) || q_φ(z|x)) averaged over
*dreamt* x, not the KL(q || p) of the bound (eq. 1). No step follows the gradient of the
variational lower bound with respect to φ, so nothing guarantees the bound goes up; the paper
(Section 5, Figure 2) compares the two on the bound all the same, evaluated with the same
estimator as AEVB (:func:`aevb.bound.dataset_bound`) on the same evaluation points. The
:class:`~aevb.train.History` returned here has exactly the format of :func:`aevb.train.fit`'s,
so both plot the same way.

Everything else follows Algorithm 1 as :func:`aevb.train.fit` runs it: the same
:class:`~aevb.train.TrainConfig` (M, Adagrad step size, binarization, evaluation schedule,
seed), the same minibatch order, one training "sample" per datapoint of a minibatch.
:func:`trained_wake_sleep` caches trained models the way :func:`aevb.cache.trained_model` does.
"""

from __future__ import annotations

import time

import torch

from ._checks import check_model_data, check_positive_int
from ._random import keeps_global_rng, training_seed
from .cache import cached_training
from .checkpoint import save_checkpoint
from .device import resolve_device
from .models import VAE, ModelSpec, build_model
from .progress import training_progress
from .train import (
    EvalClock,
    History,
    TrainConfig,
    checkpoint_payload,
    make_optimizer,
    minibatches,
    record_bound,
    stop_if_not_finite,
    training_data,
)

SLEEP_INPUTS: tuple[str, ...] = ("sample", "mean")

__all__ = [
    "SLEEP_INPUTS",
    "fit_wake_sleep",
    "seeded_model",
    "sleep_loss",
    "trained_wake_sleep",
    "wake_loss",
]


def wake_loss(model, x: torch.Tensor) -> torch.Tensor:
    """The wake phase's loss: −(1/M) Σ_i log p_θ(x_i, z_i) with z_i ~ q_φ(z|x_i), no gradient
    through z (only θ learns from it). The prior N(0, I) has no parameters, so only the
    decoder term log p_θ(x|z) carries a gradient. ``x`` (M, x_dim) is checked (the model's
    ``check_input`` when it has one)."""
    check_model_data(model, x)
    return _wake_loss(model, x)


def _wake_loss(model, x: torch.Tensor) -> torch.Tensor:
    """:func:`wake_loss` without the check (for the training loop, whose data were checked)."""
    with torch.no_grad():
        z = model.encoder(x).sample()
    return -(model.prior().log_prob(z) + model.decoder(z).log_prob(x)).mean()


def sleep_loss(
    model, n: int, x_from: str = "sample", generator: torch.Generator | None = None
) -> torch.Tensor:
    """The sleep phase's loss: −(1/n) Σ log q_φ(z_i|x_i) over n dreams z_i ~ p(z),
    x_i ~ p_θ(x|z_i) (``x_from="sample"``, as Hinton et al.) or x_i = E[x|z_i] (``"mean"``).
    No gradient reaches θ (only φ learns from it). With ``generator`` the dreams are drawn
    on the CPU from it, so a run repeats exactly on every device. ``model`` is anything with
    ``.prior()``, ``.encoder(x)`` and ``.decoder(z)`` returning distributions."""
    _check_sleep(x_from, "x_from")
    check_positive_int(n, "n")
    return _sleep_loss(model, n, x_from, generator)


def _check_sleep(x_from: str, name: str) -> None:
    if x_from not in SLEEP_INPUTS:
        raise ValueError(f"{name}={x_from!r}; use 'sample' (dreamt x) or 'mean' (decoder means)")


def _sleep_loss(model, n: int, x_from: str, generator: torch.Generator | None) -> torch.Tensor:
    """:func:`sleep_loss` without the checks (for the training loop)."""
    with torch.no_grad():
        prior = model.prior()
        dev = prior.mean.device
        z = torch.randn(n, *prior.event_shape, generator=generator).to(dev)
        px = model.decoder(z)
        if x_from == "mean":
            x = px.mean
        elif generator is None:
            x = px.sample()
        else:
            x = _sample_with(px, generator).to(dev)
    return -model.encoder(x).log_prob(z).mean()


def _sample_with(px: torch.distributions.Distribution, generator: torch.Generator):
    """A draw from a decoder's (Independent) Bernoulli or Normal made with ``generator`` on
    the CPU."""
    base = px.base_dist if isinstance(px, torch.distributions.Independent) else px
    if isinstance(base, torch.distributions.Bernoulli):  # 1[u < p], u ~ U[0, 1)
        probs = base.probs.detach().cpu()
        return torch.rand(probs.shape, generator=generator).lt_(probs).to(probs.dtype)
    if isinstance(base, torch.distributions.Normal):
        loc, scale = base.loc.detach().cpu(), base.scale.detach().cpu()
        return loc + scale * torch.randn(loc.shape, generator=generator)
    raise TypeError(
        f"cannot draw dreams from {type(base).__name__} with a generator; pass generator=None"
    )


@keeps_global_rng
def fit_wake_sleep(
    model: VAE,
    train_x: torch.Tensor,
    config: TrainConfig,
    test_x: torch.Tensor | None = None,
    *,
    sleep: str = "sample",
    device: str | torch.device | None = None,
    history: History | None = None,
    show_progress: bool = True,
) -> History:
    """Train ``model`` on ``train_x`` (N, D) by wake-sleep for ``config.samples`` datapoints.

    Per minibatch of M datapoints: one wake step (Adagrad on θ, :func:`wake_loss`), then one
    sleep step on M dreams (Adagrad on φ, :func:`sleep_loss`; ``sleep`` picks sampled or mean
    dreams). ``config.estimator`` and ``config.L`` are not used (wake-sleep has no bound
    estimator); ``config.weight_prior`` adds the N(0, I) weight prior to both phases. The
    bound is recorded with AEVB's own evaluation (estimator B, L = 1, fixed noise) at the same
    log-spaced points, so the returned :class:`~aevb.train.History` compares directly with
    :func:`aevb.train.fit`'s. Deterministic on CPU for a given ``config.seed``.

    ``train_x`` and ``test_x`` are checked once, before training, as by :func:`aevb.train.fit`
    (finite, (N, D), in [0, 1] for a Bernoulli decoder; N >= 1).
    """
    _check_sleep(sleep, "sleep")
    _check_model_and_config(model, config, "fit_wake_sleep")
    dev = resolve_device(device)
    model.to(dev)
    # The same data, evaluation subsets and minibatch sequence as aevb.train.fit.
    data = training_data(model, train_x, test_x, config, dev)
    if data.x.shape[0] == 0:
        raise ValueError("train_x holds no datapoints; pass at least one row to train on")
    N, M = data.x.shape[0], config.batch_size
    seed = training_seed(config.seed)
    torch.manual_seed(seed)
    dreams = torch.Generator(device="cpu").manual_seed(seed + 7)

    enc = [p for p in model.encoder.parameters() if p.requires_grad]
    dec = [p for p in model.decoder.parameters() if p.requires_grad]
    params = enc + dec
    optimizer = make_optimizer(params, config)
    good = [p.detach().clone() for p in params]
    history = history or History()
    clock = EvalClock(config.samples, M, config.n_evals)
    seen, step, started = 0, 0, time.perf_counter()
    bar = training_progress(config.samples, "wake-sleep", show_progress)

    def prior_penalty(group: list[torch.Tensor]) -> torch.Tensor | float:
        if not config.weight_prior:
            return 0.0
        return 0.5 * sum(p.square().sum() for p in group) / N

    model.train()
    try:
        for batch in minibatches(data, config, dev):
            with torch.no_grad():
                torch._foreach_copy_(good, params)
            # Wake: θ learns to generate the data from the recognised z.
            loss_w = _wake_loss(model, batch) + prior_penalty(dec)
            stop_if_not_finite(loss_w, params, good, "wake loss", step, seen)
            optimizer.zero_grad(set_to_none=True)
            loss_w.backward()
            optimizer.step()
            # Sleep: φ learns to recognise z from the model's own dreams.
            loss_s = _sleep_loss(model, batch.shape[0], sleep, dreams)
            loss_s = loss_s + prior_penalty(enc)
            stop_if_not_finite(loss_s, params, good, "sleep loss", step, seen)
            optimizer.zero_grad(set_to_none=True)
            loss_s.backward()
            optimizer.step()
            seen += batch.shape[0]
            step += 1
            bar.update(batch.shape[0])
            if clock.due(seen):
                record_bound(model, history, seen, data.eval_train, data.eval_test, config, started)
                bar.set_postfix(train=f"{history.train_bound[-1]:.1f}")
            if seen >= config.samples:
                break
    finally:
        bar.close()
        model.eval()
    if not history.samples or history.samples[-1] != seen:
        record_bound(model, history, seen, data.eval_train, data.eval_test, config, started)
    model.eval()
    return history


def _check_model_and_config(model, config, fn: str) -> None:
    """The model is the package's VAE and the config a TrainConfig, or a clear TypeError."""
    if not isinstance(model, VAE):
        raise TypeError(
            f"{fn} trains an aevb.models.VAE, got {type(model).__name__}; build one with "
            "build_model(ModelSpec(x_dim, z_dim, ...))"
        )
    if not isinstance(config, TrainConfig):
        raise TypeError(
            f"config must be an aevb.train.TrainConfig, got {type(config).__name__}; "
            "e.g. TrainConfig(samples=10_000)"
        )


def seeded_model(spec: ModelSpec, seed: int) -> VAE:
    """A freshly initialised model whose initial weights depend on ``seed`` only (not on the
    global random state): :func:`aevb.models.build_model` with a seed (moved by the draw salt,
    :func:`aevb._random.training_seed`)."""
    return build_model(spec, seed=training_seed(seed))


def trained_wake_sleep(
    spec: ModelSpec,
    config: TrainConfig,
    train,
    test=None,
    *,
    sleep: str = "sample",
    device: str | torch.device | None = None,
    retrain: bool = False,
    verbose: bool = True,
) -> tuple[VAE, History]:
    """The model ``spec`` trained by wake-sleep under ``config`` on ``train`` — from the cache
    if it is there, else trained now and cached (the counterpart of
    :func:`aevb.cache.trained_model`).

    The file is ``$AEVB_CACHE/models/<key>.pt`` with ``key = model_key(spec, config, data,
    tag="wake-sleep/<sleep>")``, written atomically and read with ``weights_only=True``; a file
    that cannot be read is moved aside (``.corrupt``) and the model trained again. ``train``
    and ``test`` are :class:`aevb.data.DataSet` objects or tensors.
    """
    _check_sleep(sleep, "sleep")
    algorithm = f"wake-sleep/{sleep}"

    def train_now(model, train_x, test_x, partial):
        history = fit_wake_sleep(model, train_x, config, test_x, sleep=sleep, device=device)
        payload = checkpoint_payload(model, history, config)
        payload["algorithm"] = algorithm
        save_checkpoint(partial, payload)
        return history

    return cached_training(
        spec, config, train, test, train_now,
        tag=algorithm, label="wake-sleep model", device=device, retrain=retrain, verbose=verbose,
    )  # fmt: skip
