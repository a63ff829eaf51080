"""Monte Carlo EM with Hybrid Monte Carlo: the paper's second baseline (Figure 3, Appendix E).

EM alternates inferring the latent variables and fitting the parameters to them. When the
posterior p_θ(z|x) is intractable, the E-step can be replaced by a sample from it (Monte
Carlo EM; Wei & Tanner, 1990). Appendix E of the paper does it this way, per datapoint::

    E-step: one HMC transition on p_θ(z|x_i) ∝ p(z) p_θ(x_i|z) — 10 leapfrog steps, the step
            size tuned automatically towards an acceptance rate of about 90% — started from
            the z_i this datapoint had last time (a persistent chain per datapoint);
    M-step: 5 Adagrad updates of θ on (1/M) Σ_i log p_θ(x_i, z_i) with the sample just drawn.

The E-step's z_i is only approximately a draw from p_θ(z|x_i): one transition per visit of a
chain that lags behind θ, which changes between the visits.

There is no recognition model: each datapoint keeps its own chain, so memory grows with N and
the method is not on-line — the paper's reason why it "can't be applied efficiently for the
full MNIST dataset". With no q_φ(z|x) there is no variational bound to report either; the
marginal likelihood is estimated with the paper's Appendix D estimator
(:func:`aevb.marginal_hmc.hmc_log_px`), which needs only p_θ.

The model is a :class:`aevb.models.VAE` whose encoder is never trained (only the decoder and
the N(0, I) prior are used), so MCEM, AEVB and wake-sleep models share one type and one
checkpoint format. HMC comes from :mod:`aevb.hmc` (its leapfrog integrator, through
:func:`aevb.marginal_hmc.hmc_transition`). One step size serves all chains: after every
E-step it moves towards the target by the rule of :func:`aevb.hmc.hmc`'s warm-up, applied to
the minibatch's mean acceptance probability (a per-datapoint step would be tuned only once
per epoch, far too slowly), and each transition jitters it by ±``jitter``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from ._checks import check_positive_int
from ._random import keeps_global_rng, training_seed
from .cache import cached_training
from .checkpoint import load_checkpoint, save_checkpoint
from .device import resolve_device
from .hmc import _check_fraction, _check_step_size, _posterior_log_prob
from .marginal_hmc import _transition, adapt_step
from .models import VAE, ModelSpec, build_model
from .progress import training_progress
from .train import (
    EvalClock,
    NonFiniteBoundError,
    TrainConfig,
    binarize_batch,
    binarize_generator,
    checkpoint_payload,
    make_optimizer,
    training_data,
)
from .wake_sleep import _check_model_and_config

__all__ = ["MCEMHistory", "fit_mcem", "trained_mcem"]


@dataclass
class MCEMHistory:
    """What Monte Carlo EM records against training samples seen: the HMC acceptance rate and
    mean step size of the recent E-steps, and the mean complete-data log-likelihood
    log p_θ(x, z) of the recent minibatches (nats per datapoint; not a bound on log p(x))."""

    samples: list[int] = field(default_factory=list)
    acceptance: list[float] = field(default_factory=list)
    step_size: list[float] = field(default_factory=list)
    log_joint: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain lists, safe for JSON and for ``weights_only`` checkpoints."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MCEMHistory:
        """The inverse of :meth:`to_dict`."""
        return cls(**{k: list(d.get(k, [])) for k in cls.__dataclass_fields__})


@keeps_global_rng
def fit_mcem(
    model: VAE,
    train_x: torch.Tensor,
    config: TrainConfig,
    *,
    n_leapfrog: int = 10,
    updates_per_sample: int = 5,
    target_accept: float = 0.9,
    init_step: float = 0.1,
    jitter: float = 0.5,
    device: str | torch.device | None = None,
    show_progress: bool = True,
) -> MCEMHistory:
    """Train the decoder of ``model`` by Monte Carlo EM with HMC (Appendix E) for
    ``config.samples`` datapoints.

    Per minibatch of M = ``config.batch_size`` datapoints: one HMC transition
    (:func:`~aevb.marginal_hmc.hmc_transition`, ``n_leapfrog`` steps) on each datapoint's
    persistent chain, after which the shared step size moves towards ``target_accept``; then
    ``updates_per_sample`` optimizer steps (Adagrad at ``config.lr`` by default) on
    −(1/M) Σ log p_θ(x_i, z_i). Each datapoint of a minibatch counts as one training sample,
    as for AEVB, and the minibatches are those :func:`aevb.train.fit` draws under the same
    config (``binarize`` and ``seed`` act as there). Chains start at draws from the prior.
    ``config.estimator``, ``L`` and the evaluation settings other than ``n_evals`` are unused.
    Deterministic on CPU for a given seed.

    Everything is checked once, before training: ``train_x`` (N, D) as by
    :func:`aevb.train.fit` (finite, in [0, 1] for a Bernoulli decoder, N >= 1), and the HMC
    settings (``target_accept`` and ``jitter`` in [0, 1), ``init_step`` > 0).
    """
    _check_model_and_config(model, config, "fit_mcem")
    check_positive_int(n_leapfrog, "n_leapfrog")
    check_positive_int(updates_per_sample, "updates_per_sample")
    _check_fraction(target_accept, "target_accept", closed_low=False, example="0.9")
    _check_fraction(jitter, "jitter", closed_low=True, example="0.5")
    _check_step_size(init_step, "init_step")
    dev = resolve_device(device)
    model.to(dev)
    # The data and minibatch sequence of aevb.train.fit (with the indices, for the chains).
    td = training_data(model, train_x, None, config, dev)
    if td.x.shape[0] == 0:
        raise ValueError("train_x holds no datapoints; pass at least one row to train on")
    N, M = td.x.shape[0], config.batch_size
    seed = training_seed(config.seed)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    bin_gen = binarize_generator(dev, seed, gen)
    torch.manual_seed(seed)
    chains = torch.Generator(device="cpu").manual_seed(seed + 11)  # HMC's randomness
    # One persistent chain per datapoint, started from the prior; one shared step size.
    z_state = torch.randn(N, model.z_dim, generator=chains).to(dev)
    step_size = torch.tensor(float(init_step), device=dev)

    params = [p for p in model.decoder.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, config)
    history = MCEMHistory()
    clock = EvalClock(config.samples, M, config.n_evals)
    seen, step, started = 0, 0, time.perf_counter()
    acc_sum = lj_sum = st_sum = 0.0
    count = 0
    bar = training_progress(config.samples, "MCEM", show_progress)
    model.train()
    try:
        while seen < config.samples:
            perm = torch.randperm(N, generator=gen).to(dev)
            for start in range(0, N - M + 1 if N >= M else 1, M):
                idx = perm[start : start + M]
                batch = td.x[idx]
                if td.dynamic:
                    batch = binarize_batch(batch, bin_gen)
                # E-step: one HMC transition on p_θ(z|x) per datapoint, from its last state.
                log_joint = _posterior_log_prob(model, batch)
                steps = step_size.expand(idx.shape[0])
                z, accept_prob, lp = _transition(
                    log_joint, z_state[idx], steps, n_leapfrog, jitter, generator=chains
                )
                z_state[idx] = z
                step_size = adapt_step(step_size, accept_prob.mean(), target_accept)
                # M-step: a few gradient steps on θ with this sample.
                for _ in range(updates_per_sample):
                    loss = -log_joint(z).mean()
                    if config.weight_prior:
                        loss = loss + 0.5 * sum(p.square().sum() for p in params) / N
                    if not torch.isfinite(loss):
                        raise NonFiniteBoundError(
                            f"log p(x, z) became {float(-loss.detach())} at step {step} "
                            f"({seen} samples seen); lower the step size (lr)."
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                seen += batch.shape[0]
                step += 1
                count += 1
                acc_sum += float(accept_prob.mean())
                st_sum += float(step_size)
                lj_sum += float(lp.mean())
                bar.update(batch.shape[0])
                if clock.due(seen):
                    _record(history, seen, acc_sum, st_sum, lj_sum, count, started)
                    acc_sum = st_sum = lj_sum = 0.0
                    count = 0
                    bar.set_postfix(accept=f"{history.acceptance[-1]:.2f}")
                if seen >= config.samples:
                    break
    finally:
        bar.close()
        model.eval()
    if count:
        _record(history, seen, acc_sum, st_sum, lj_sum, count, started)
    return history


def _record(history: MCEMHistory, seen, acc_sum, st_sum, lj_sum, count, started) -> None:
    history.samples.append(int(seen))
    history.acceptance.append(acc_sum / count)
    history.step_size.append(st_sum / count)
    history.log_joint.append(lj_sum / count)
    history.seconds.append(time.perf_counter() - started)


def trained_mcem(
    spec: ModelSpec,
    config: TrainConfig,
    train,
    *,
    n_leapfrog: int = 10,
    updates_per_sample: int = 5,
    jitter: float = 0.5,
    device: str | torch.device | None = None,
    retrain: bool = False,
    verbose: bool = True,
) -> tuple[VAE, MCEMHistory]:
    """The model ``spec`` trained by Monte Carlo EM under ``config`` on ``train`` — from the
    cache if it is there, else trained now and cached (as :func:`aevb.cache.trained_model`).

    Key: ``model_key(spec, config, data, tag="mcem/<n_leapfrog>/<updates>/<jitter>")``;
    the file is written atomically and read with ``weights_only=True``.
    """
    tag = f"mcem/{n_leapfrog}/{updates_per_sample}/{jitter}"

    def train_now(model, train_x, _test_x, partial):
        history = fit_mcem(
            model,
            train_x,
            config,
            n_leapfrog=n_leapfrog,
            updates_per_sample=updates_per_sample,
            jitter=jitter,
            device=device,
        )
        payload = checkpoint_payload(model, history, config)  # type: ignore[arg-type]
        payload["algorithm"] = tag
        save_checkpoint(partial, payload)
        return history

    def load(path, dev):
        payload = load_checkpoint(path)
        model = build_model(ModelSpec(**payload["spec"]))
        model.load_state_dict(payload["state_dict"])
        return model.to(resolve_device(dev)).eval(), MCEMHistory.from_dict(payload["history"])

    return cached_training(
        spec, config, train, None, train_now,
        tag=tag, label="MCEM model", device=device, retrain=retrain, verbose=verbose, load=load,
    )  # fmt: skip
