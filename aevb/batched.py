"""Several VAEs trained in one step: Figure 2 at the paper's scale on one accelerator.

Figure 2 of the paper trains one model per latent size N_z (3, 5, 10, 20, 200 on MNIST; 2, 5,
10, 20 on Frey Face) for up to 10^8 training samples each. The models share the data, the
minibatches, the architecture (up to N_z) and the optimizer, so :func:`fit_batched` stacks the
K models' weights into tensors with a leading model axis and runs Algorithm 1 for all of them
at once: one gather of the minibatch, one matrix multiply for the first layer of all K
encoders (the input is shared), batched multiplies (``torch.baddbmm``) for the other layers,
one backward pass and one fused optimizer step. A small N_z is padded with zeros up to the
largest; the padding stays exactly zero (its noise is zero, so are its gradients).

Each model sees what :func:`aevb.train.fit` would show it with the same config: the same
minibatches and binary pixels, and the noise ε of its own generator seeded like ``fit`` seeds
torch's global one. On the CPU the result equals K separate ``fit`` runs up to float rounding
(tests/test_batched.py checks it); the histories are recorded by the same evaluation code.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from . import _fused
from ._random import training_seed
from .device import resolve_device
from .models import VAE, GaussianMLPDecoder
from .progress import training_progress
from .train import (
    EvalClock,
    History,
    NonFiniteBoundError,
    TrainConfig,
    make_optimizer,
    minibatches,
    record_bound,
    training_data,
)

_LOG_2PI = math.log(2.0 * math.pi)
# Figure 2's latent sizes (Section 5).
FIGURE2_Z: dict[str, tuple[int, ...]] = {"mnist": (3, 5, 10, 20, 200), "frey-face": (2, 5, 10, 20)}


def check_batchable(models: Sequence[VAE], config: TrainConfig) -> None:
    """Raise a clear error unless ``models`` can be trained together by :func:`fit_batched`."""
    _check_model_list(models, "fit_batched")
    if not isinstance(config, TrainConfig):
        raise TypeError(
            f"config must be an aevb.train.TrainConfig, got {type(config).__name__}; "
            "e.g. TrainConfig(samples=10_000)"
        )
    if config.estimator != "B":
        raise ValueError("fit_batched implements estimator B (eq. 7); use fit() for estimator A")
    _check_stackable(models)


def _check_model_list(models: Sequence[VAE], who: str) -> None:
    if isinstance(models, nn.Module) or not isinstance(models, (list, tuple)):
        raise TypeError(
            f"{who} takes a list of models, got {type(models).__name__}; for one model pass [model]"
        )
    if not models:
        raise ValueError(f"{who} needs at least one model")


def _check_stackable(models: Sequence[VAE]) -> None:
    """The package's own VAEs, all of one architecture up to N_z (or a clear error)."""
    first = models[0]
    for m in models:
        if not _fused.supports(m, "B"):
            raise ValueError(
                "fit_batched trains the package's own VAE (build_model(ModelSpec(...))), "
                "unmodified; train other models one by one with fit()"
            )
        same = (
            m.spec.x_dim == first.spec.x_dim
            and m.spec.hidden == first.spec.hidden
            and m.spec.decoder == first.spec.decoder
            and _decoder_options(m) == _decoder_options(first)
        )
        if not same:
            raise ValueError(
                "models trained together must share x_dim, hidden and the decoder; only z_dim "
                "may differ. Group the models by (x_dim, hidden, decoder) and call fit_batched "
                "once per group"
            )


def _decoder_options(m: VAE) -> tuple:
    dec = m.decoder
    if isinstance(dec, GaussianMLPDecoder):
        return ("gaussian", dec.mean_activation, dec.min_log_var)
    return ("bernoulli",)


class StackedVAE(nn.Module):
    """K VAEs of one architecture (N_z may differ) as stacked weights, zero-padded in N_z."""

    def __init__(self, models: Sequence[VAE]) -> None:
        super().__init__()
        _check_model_list(models, "StackedVAE")
        _check_stackable(models)
        self.z_dims = [m.spec.z_dim for m in models]
        K, Z = len(models), max(self.z_dims)
        first = models[0]
        H, D = first.spec.hidden, first.spec.x_dim
        self.K, self.Z, self.H, self.D = K, Z, H, D
        self.gaussian = isinstance(first.decoder, GaussianMLPDecoder)
        self.options = _decoder_options(first)
        out = 2 * D if self.gaussian else D
        dev = first.encoder.hidden.weight.device
        zeros = lambda *s: nn.Parameter(torch.zeros(*s, device=dev))  # noqa: E731
        self.W1, self.b1 = zeros(K * H, D), zeros(K * H)  # the shared input: one matmul
        self.W2, self.b2 = zeros(K, 2 * Z, H), zeros(K, 1, 2 * Z)
        self.W3, self.b3 = zeros(K, H, Z), zeros(K, 1, H)
        self.W4, self.b4 = zeros(K, out, H), zeros(K, 1, out)
        self.load_from(models)

    @torch.no_grad()
    def load_from(self, models: Sequence[VAE]) -> None:
        """Copy the K models' weights into the stack (the padding set to zero)."""
        H, Z = self.H, self.Z
        for k, m in enumerate(models):
            z = m.spec.z_dim
            enc, dec = m.encoder, m.decoder
            self.W1[k * H : (k + 1) * H] = enc.hidden.weight
            self.b1[k * H : (k + 1) * H] = enc.hidden.bias
            self.W2[k].zero_(), self.b2[k].zero_(), self.W3[k].zero_()
            self.W2[k, :z], self.W2[k, Z : Z + z] = enc.out.weight[:z], enc.out.weight[z:]
            self.b2[k, 0, :z], self.b2[k, 0, Z : Z + z] = enc.out.bias[:z], enc.out.bias[z:]
            self.W3[k, :, :z], self.b3[k, 0] = dec.hidden.weight, dec.hidden.bias
            self.W4[k], self.b4[k, 0] = dec.out.weight, dec.out.bias

    @torch.no_grad()
    def store_into(self, models: Sequence[VAE]) -> None:
        """Copy the stack's weights back into the K models."""
        H, Z = self.H, self.Z
        for k, m in enumerate(models):
            z = m.spec.z_dim
            enc, dec = m.encoder, m.decoder
            enc.hidden.weight.copy_(self.W1[k * H : (k + 1) * H])
            enc.hidden.bias.copy_(self.b1[k * H : (k + 1) * H])
            enc.out.weight.copy_(torch.cat([self.W2[k, :z], self.W2[k, Z : Z + z]]))
            enc.out.bias.copy_(torch.cat([self.b2[k, 0, :z], self.b2[k, 0, Z : Z + z]]))
            dec.hidden.weight.copy_(self.W3[k, :, :z])
            dec.hidden.bias.copy_(self.b3[k, 0])
            dec.out.weight.copy_(self.W4[k])
            dec.out.bias.copy_(self.b4[k, 0])

    def bounds(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Estimator B (eq. 7), the minibatch mean for each model: shape (K,).

        ``x`` (M, D) is shared; ``eps`` (K, L, M, Z) is each model's noise, zero in the
        padding (so z, μ and log σ² stay zero there and so do their gradients).
        """
        K, Z, H = self.K, self.Z, self.H
        L, M = eps.shape[1], x.shape[0]
        h1 = torch.tanh(torch.addmm(self.b1, x, self.W1.t())).view(M, K, H).transpose(0, 1)
        enc = torch.baddbmm(self.b2, h1, self.W2.transpose(1, 2))  # (K, M, 2Z)
        mu, log_var = enc[..., :Z], enc[..., Z:]
        z = mu.unsqueeze(1) + eps * torch.exp(0.5 * log_var).unsqueeze(1)  # (K, L, M, Z)
        z = z.reshape(K, L * M, Z)
        h3 = torch.tanh(torch.baddbmm(self.b3, z, self.W3.transpose(1, 2)))
        out = torch.baddbmm(self.b4, h3, self.W4.transpose(1, 2))  # (K, LM, D or 2D)
        target = x.repeat(L, 1).expand(K, L * M, self.D)
        if self.gaussian:
            _, activation, floor = self.options
            m, lv = out[..., : self.D], out[..., self.D :]
            m = torch.sigmoid(m) if activation == "sigmoid" else m
            lv = lv if floor is None else lv.clamp(min=floor)
            log_px = -0.5 * (_LOG_2PI + lv + (target - m).square() * torch.exp(-lv))
        else:
            log_px = -nn.functional.binary_cross_entropy_with_logits(out, target, reduction="none")
        rec = log_px.sum(-1).view(K, L, M).mean(1)  # (K, M)
        kl = -0.5 * torch.sum(1.0 + log_var - mu.square() - log_var.exp(), dim=-1)
        return (rec - kl).mean(-1)


class BatchedStep:
    """One step of Algorithm 1 for a :class:`StackedVAE`, on buffers that never move.

    The minibatch is copied into ``x`` and each model's noise into ``eps``; the step computes the
    K bounds (eq. 7), adds them to ``pending`` (for the finiteness check), back-propagates and
    updates the weights. Because every tensor the step reads or writes stays where it is, the
    whole step can be captured in a CUDA graph and replayed: one launch per step instead of a
    hundred, and no Python between the kernels. With ``cuda_graph`` the first ``warmup`` steps
    run eagerly on a side stream (they allocate the optimizer state and the gradients, as
    capture requires), the next one is captured, and every later step replays it. If capture
    fails, the step is run eagerly and training goes on without the graph; ``graph_error``
    says why.
    """

    def __init__(
        self,
        stack: StackedVAE,
        optimizer: torch.optim.Optimizer,
        config: TrainConfig,
        n_train: int,
        batch_size: int,
        *,
        cuda_graph: bool = False,
        warmup: int = 3,
    ) -> None:
        dev = stack.W1.device
        self.stack, self.optimizer, self.config, self.n_train = stack, optimizer, config, n_train
        self.params = list(stack.parameters())
        self.x = torch.zeros(batch_size, stack.D, device=dev)
        self.eps = torch.zeros(stack.K, config.L, batch_size, stack.Z, device=dev)
        self.pending = torch.zeros(stack.K, device=dev)
        self.warmup = warmup
        self.steps_run = 0
        self.graph = _graph_factory(dev) if cuda_graph else None
        self.captured = False
        self.graph_error: str | None = None
        self._side = torch.cuda.Stream(dev) if cuda_graph and dev.type == "cuda" else None

    def _compute(self) -> None:
        bounds = self.stack.bounds(self.x, self.eps)
        loss = -bounds.sum()
        if self.config.weight_prior:
            loss = loss + 0.5 * sum(p.square().sum() for p in self.params) / self.n_train
        self.pending.add_(bounds.detach())
        loss.backward()
        self.optimizer.step()

    def _eager(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self._side is None:
            self._compute()
            return
        # Before capture, the warm-up steps run on a side stream (as CUDA graphs require).
        current = torch.cuda.current_stream(self._side.device)
        self._side.wait_stream(current)
        with torch.cuda.stream(self._side), warnings.catch_warnings():
            # A capturable Adam warns when it steps uncaptured; these steps are meant to be.
            warnings.filterwarnings("ignore", message=".*capturable=True.*without")
            self._compute()
        current.wait_stream(self._side)

    def __call__(self, batch: torch.Tensor, generators, z_dims) -> None:
        """Run one step on ``batch`` (M, D), each model's noise drawn from its generator."""
        self.x.copy_(batch)
        L, M = self.config.L, batch.shape[0]
        for k, (z, g) in enumerate(zip(z_dims, generators, strict=True)):
            self.eps[k, :, :, :z] = torch.randn((L, M, z), generator=g, device=self.x.device)
        self.steps_run += 1
        if self.captured:
            self.graph.replay()
            return
        if self.graph is not None and self.steps_run > self.warmup:
            try:
                self.optimizer.zero_grad(set_to_none=True)
                self.graph.capture(self._compute)  # records the step; runs nothing yet
            except Exception as err:  # noqa: BLE001 - any failure: train on without the graph
                self.graph, self.graph_error = None, f"{type(err).__name__}: {err}"
                warnings.warn(
                    f"fit_batched: CUDA graph capture failed ({self.graph_error}); training "
                    "goes on without the graph (pass cuda_graph=False to skip the attempt)",
                    RuntimeWarning,
                    stacklevel=3,
                )
            else:
                self.captured = True
                self.graph.replay()
                return
        self._eager()


class _CudaGraph:
    """A captured step: :class:`torch.cuda.CUDAGraph` behind ``capture(fn)`` and ``replay()``."""

    def __init__(self, device: torch.device) -> None:
        if device.type != "cuda":
            raise ValueError(
                f"cuda_graph=True needs a CUDA device, not {device}; pass cuda_graph=False "
                "(the default off CUDA)"
            )
        self.graph = torch.cuda.CUDAGraph()

    def capture(self, fn) -> None:
        with torch.cuda.graph(self.graph):
            fn()

    def replay(self) -> None:
        self.graph.replay()


_graph_factory = _CudaGraph  # the tests put a CPU stand-in here


def fit_batched(
    models: Sequence[VAE],
    train_x: torch.Tensor,
    config: TrainConfig,
    test_x: torch.Tensor | None = None,
    *,
    device: str | torch.device | None = None,
    check_every: int | None = None,
    cuda_graph: bool | None = None,
    show_progress: bool = True,
) -> list[History]:
    """Train the K ``models`` (same architecture, any N_z) together by Algorithm 1.

    Equivalent to ``[fit(m, train_x, config, test_x) for m in models]`` (the same minibatches,
    noise and evaluations; equal up to float rounding on the CPU), in one step per minibatch.
    The models are trained in place and each gets its :class:`History`.

    ``check_every`` steps (default 1 on the CPU, 50 on an accelerator, where each check waits
    for the device) the bounds are checked; a NaN or infinite bound raises
    :class:`NonFiniteBoundError` naming the models, which get back the last parameters whose
    bounds were all finite. ``cuda_graph`` (default: on a CUDA device) captures the step in a
    CUDA graph and replays it (see :class:`BatchedStep`).
    """
    check_batchable(models, config)
    dev = resolve_device(device)
    for m in models:
        m.to(dev)
    data = training_data(models[0], train_x, test_x, config, dev)
    N = data.x.shape[0]
    if N == 0:
        raise ValueError("train_x holds no datapoints; pass at least one row to train on")
    stack = StackedVAE(models).to(dev)
    params = list(stack.parameters())
    every = check_every or (1 if dev.type == "cpu" else 50)
    use_graph = dev.type == "cuda" if cuda_graph is None else bool(cuda_graph)
    # A step captured in a CUDA graph needs an optimizer that can be captured (Adam: capturable).
    optimizer = make_optimizer(params, config, capturable=use_graph and dev.type == "cuda")
    # Each model's noise: its own generator, seeded as fit() seeds torch's global one.
    gens = [torch.Generator(device=dev).manual_seed(training_seed(config.seed)) for _ in models]
    histories = [History() for _ in models]
    clock = EvalClock(config.samples, config.batch_size, config.n_evals)
    # The last parameters whose bounds were all finite, and those waiting for their check.
    snapshots = [[p.detach().clone() for p in params] for _ in range(2)]
    seen, step, started = 0, 0, time.perf_counter()
    run: BatchedStep | None = None
    bar = training_progress(config.samples, f"AEVB x{stack.K}", show_progress)
    try:
        for batch in minibatches(data, config, dev):
            M = batch.shape[0]
            if run is None:  # every minibatch has this size (minibatches() drops a remainder)
                run = BatchedStep(stack, optimizer, config, N, M, cuda_graph=use_graph)
            run(batch, gens, stack.z_dims)
            seen += M
            step += 1
            bar.update(M)
            due = clock.due(seen)
            if step % every == 0 or due:
                _check(run.pending, step, seen, params, snapshots)
            if due:
                _evaluate(stack, models, histories, seen, data, config, started)
            if seen >= config.samples:
                break
        if run is not None:
            _check(run.pending, step, seen, params, snapshots)
    except NonFiniteBoundError:
        stack.store_into(models)
        raise
    finally:
        bar.close()
    stack.store_into(models)
    for m in models:
        m.eval()
    if not histories[0].samples or histories[0].samples[-1] != seen:
        _evaluate(stack, models, histories, seen, data, config, started)
    return histories


def _check(pending, step, seen, params, snapshots) -> None:
    """Raise if a bound since the last check was not finite, giving the models back the last
    parameters whose bounds were all finite; else those checked now become the good ones.

    ``snapshots`` is [good, candidate]: the candidate holds the parameters of the last check, and
    the bounds in ``pending`` were computed from them onwards, so if all are finite the
    candidate is good, and the current parameters become the next candidate (one copy: the two
    swap places).
    """
    good = snapshots[0]
    bad = [int(k) for k in torch.nonzero(~torch.isfinite(pending)).flatten()]
    with torch.no_grad():
        if bad:
            torch._foreach_copy_(params, good)
            raise NonFiniteBoundError(
                f"the bound of model(s) {bad} became non-finite by step {step} ({seen} samples "
                "seen); the models keep the last parameters whose bounds were all finite. Lower "
                "the step size (lr) or floor the decoder variance."
            )
        snapshots.reverse()  # the candidate is good; the old good buffers take the next one
        torch._foreach_copy_(snapshots[1], params)
        pending.zero_()


def _evaluate(stack, models, histories, seen, data, config, started) -> None:
    stack.store_into(models)
    for m, h in zip(models, histories, strict=True):
        record_bound(m, h, seen, data.eval_train, data.eval_test, config, started)
        m.train()


def figure2_models(dataset: str = "mnist", z_dims: Sequence[int] | None = None) -> list[VAE]:
    """Fresh models of Figure 2 for ``dataset`` ("mnist": 784-500-N_z, Bernoulli decoder;
    "frey-face": 560-200-N_z, Gaussian decoder), one per N_z."""
    from .models import ModelSpec, build_model

    if dataset not in FIGURE2_Z:
        raise ValueError(f"dataset={dataset!r}; use one of {', '.join(FIGURE2_Z)}")
    if z_dims is not None and not isinstance(z_dims, (list, tuple, range)):
        raise TypeError(
            f"z_dims must be a sequence of latent sizes, e.g. (3, 5), got {type(z_dims).__name__}"
        )
    z_dims = FIGURE2_Z[dataset] if z_dims is None else tuple(z_dims)
    if dataset == "mnist":
        return [build_model(ModelSpec(784, z, 500, "bernoulli")) for z in z_dims]
    return [build_model(ModelSpec(560, z, 200, "gaussian")) for z in z_dims]


__all__ = [
    "FIGURE2_Z",
    "BatchedStep",
    "StackedVAE",
    "check_batchable",
    "figure2_models",
    "fit_batched",
]
