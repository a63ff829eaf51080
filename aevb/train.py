"""Algorithm 1 of the paper: minibatch AEVB.

::

    θ, φ ← initialise
    repeat
        X^M ← random minibatch of M datapoints
        ε ← L draws from p(ε) per datapoint
        g ← ∇_{θ,φ} L̃^M(θ, φ; X^M, ε)      (eq. 8, estimator A or B)
        θ, φ ← update with g (Adagrad)
    until convergence

The data live in memory as one tensor on the training device and minibatches are slices of a
permutation, not items gathered one by one. The history records the bound on the training and
the test set against the number of training samples seen (the x-axis of Figure 2).

For the paper's own model with estimator B (the default), a step computes the bound and its
gradient by hand (:mod:`aevb._fused`: the same numbers, without building distribution objects
and an autograd graph per minibatch), and the optimizer is PyTorch's fused Adagrad/Adam.
Dynamic binarization draws each minibatch's binary pixels when the minibatch is taken.

The pieces of the loop that the other training algorithms share (wake-sleep, Monte Carlo EM,
the batched trainer) are public here: :func:`training_data`, :func:`minibatches`,
:func:`binarize_batch`, :class:`EvalClock`, :func:`record_bound`, :func:`stop_if_not_finite`
(they copy the parameters at every step; ``fit`` keeps them with :class:`Rollback`).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.optim.optimizer as _optim_module

from . import _fused
from . import data as _data
from ._random import keeps_global_rng, training_seed
from .bound import ESTIMATORS, _elbo, dataset_bound
from .checkpoint import load_checkpoint, save_checkpoint
from .device import resolve_device
from .models import VAE, ModelSpec, build_model
from .progress import training_progress

OPTIMIZERS: tuple[str, ...] = ("adagrad", "adam")
BINARIZATIONS: tuple[str | None, ...] = ("dynamic", "static", None)


class NonFiniteBoundError(RuntimeError):
    """The bound became NaN or infinite; the model holds the last good parameters."""


@dataclass(frozen=True)
class TrainConfig:
    """How to run Algorithm 1. ``samples`` is the training length in datapoints seen.

    Defaults follow Section 5: M = 100, L = 1, Adagrad with global step size 0.02 (chosen by
    the paper from {0.01, 0.02, 0.1}); estimator B; no prior on θ (``weight_prior=True`` adds
    the N(0, I) prior, i.e. MAP estimation, as weight decay).
    """

    samples: int
    batch_size: int = 100
    L: int = 1
    estimator: str = "B"
    optimizer: str = "adagrad"
    lr: float = 0.02
    weight_prior: bool = False
    binarize: str | None = "dynamic"
    eval_points: int = 1000
    n_evals: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if self.samples < 1 or self.batch_size < 1 or self.L < 1:
            raise ValueError("samples, batch_size and L must all be >= 1")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator={self.estimator!r}; use 'A' (eq. 6) or 'B' (eq. 7)")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r}; use 'adagrad' or 'adam'")
        if self.binarize not in BINARIZATIONS:
            raise ValueError(f"binarize={self.binarize!r}; use 'dynamic', 'static' or None")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr={self.lr!r}; use a positive step size such as 0.02")

    def to_dict(self) -> dict:
        """A JSON- and ``weights_only``-friendly dict."""
        return asdict(self)


@dataclass
class History:
    """The bound (nats per datapoint) on train and test against training samples seen."""

    samples: list[int] = field(default_factory=list)
    train_bound: list[float] = field(default_factory=list)
    test_bound: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain lists, safe for JSON and for ``weights_only`` checkpoints."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> History:
        """The inverse of :meth:`to_dict`."""
        return cls(
            **{k: list(d.get(k, [])) for k in ("samples", "train_bound", "test_bound", "seconds")}
        )


def eval_schedule(total: int, batch_size: int, n: int) -> list[int]:
    """About ``n`` log-spaced sample counts in [batch_size, total] (Figure 2's log axis)."""
    total = max(total, batch_size)
    points = torch.logspace(
        math.log10(batch_size), math.log10(total), max(n, 2), dtype=torch.float64
    )
    steps = sorted({max(1, round(float(p) / batch_size)) for p in points})
    return [s * batch_size for s in steps]


def stop_if_not_finite(
    loss: torch.Tensor,
    params: list[torch.Tensor],
    good: list[torch.Tensor],
    what: str,
    step: int,
    seen: int,
    sign: float = 1.0,
) -> None:
    """If ``loss`` is NaN or infinite, put the last good parameters back into ``params`` and
    raise :class:`NonFiniteBoundError` naming the step (``sign * loss`` is what is reported:
    -1 reports a bound from its negative)."""
    if torch.isfinite(loss):
        return
    with torch.no_grad():
        torch._foreach_copy_(params, good)
    raise _non_finite(what, sign * float(loss.detach()), step, seen)


def _non_finite(what: str, value: float, step: int, seen: int) -> NonFiniteBoundError:
    return NonFiniteBoundError(
        f"the {what} became {value} at step {step} ({seen} samples seen); "
        "the model keeps the parameters of the last finite step. Lower the step size (lr) or "
        "floor the decoder variance."
    )


class Rollback:
    """The parameters of the last step whose bound was finite, kept without copying them at
    every step.

    Every ``every`` steps (sooner when the kept minibatches pass ``max_bytes``, and at the first
    step after :meth:`refresh`), the parameters are copied once their bound has passed the
    check, with the optimizer's state and the random state the step's noise was drawn from;
    the minibatches since are kept. When step t's bound is NaN or infinite,
    :meth:`restore` puts that copy back and replays the kept steps but the last: training is
    deterministic on the CPU, so the parameters are those of step t - 1 bit for bit (tested), as
    a copy made at every step would have kept them (what :func:`aevb.train.fit` did until it
    cost 4% of a step of the paper's MNIST model on a 2-core CPU). On a GPU the replay is as
    deterministic as the device's kernels.
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        every: int = 64,
        max_bytes: int = 64 * 2**20,
    ) -> None:
        self.params, self.optimizer, self.device = params, optimizer, device
        self.every, self.max_bytes = every, max_bytes
        self.saved = [p.detach().clone() for p in params]  # step 0's, until one is checked
        self.saved_state = self._state_copy()
        self.saved_rng: tuple | None = None
        self.batches: list[torch.Tensor] = []
        self.kept_bytes = 0
        self._rng: tuple | None = None
        self._due = True

    def refresh(self) -> None:
        """Copy again at the next step (after anything that may draw random numbers)."""
        self._due = True

    def before_step(self) -> None:
        """Call before a step's noise is drawn: note the random state if a copy is due."""
        if self._due or len(self.batches) >= self.every or self.kept_bytes >= self.max_bytes:
            self._due = True
            self._rng = self._rng_state()

    def after_check(self, batch: torch.Tensor) -> None:
        """Call once the step's bound has passed the check, before the update."""
        if self._due:
            with torch.no_grad():
                torch._foreach_copy_(self.saved, self.params)
            self.saved_state = self._state_copy()
            self.saved_rng, self.batches, self.kept_bytes = self._rng, [], 0
            self._due = False
        self.batches.append(batch)
        self.kept_bytes += batch.numel() * batch.element_size()

    def restore(self, replay: Callable[[torch.Tensor], None]) -> None:
        """Put back the parameters of the step before the failing one: the copy, then
        ``replay(batch)`` (one training step) for each kept minibatch but the last."""
        with torch.no_grad():
            torch._foreach_copy_(self.params, self.saved)
            self._put_state_back()
        if self.saved_rng is None:  # no step passed the check: the first parameters
            return
        self._set_rng_state(self.saved_rng)
        for batch in self.batches[:-1]:
            replay(batch)

    def _state_copy(self) -> list[dict]:
        state = self.optimizer.state
        return [
            {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in state[p].items()}
            if p in state
            else {}
            for p in self.params
        ]

    def _put_state_back(self) -> None:
        """The optimizer's state as copied; tensors in place, as a fused step holds them."""
        state = self.optimizer.state
        for p, saved in zip(self.params, self.saved_state, strict=True):
            if not saved:  # made after the copy (Adam makes its state at its first step)
                state.pop(p, None)
                continue
            live = state[p]
            for k in set(live) - set(saved):
                del live[k]
            for k, v in saved.items():
                now = live.get(k)
                if torch.is_tensor(v) and torch.is_tensor(now) and now.shape == v.shape:
                    now.copy_(v)
                else:
                    live[k] = v.clone() if torch.is_tensor(v) else v

    def _rng_state(self) -> tuple:
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return torch.get_rng_state(), cuda

    def _set_rng_state(self, state: tuple) -> None:
        cpu, cuda = state
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, self.device)


class EvalClock:
    """When a training loop evaluates the bound: at the points of :func:`eval_schedule`.

    ``due(seen)`` is true once per point passed (several points passed in one step count as
    one evaluation).
    """

    def __init__(self, total: int, batch_size: int, n: int) -> None:
        self.points = eval_schedule(total, batch_size, n)
        self._next = 0

    def due(self, seen: int) -> bool:
        """Whether ``seen`` samples have passed an evaluation point not taken yet."""
        passed = self._next
        while self._next < len(self.points) and seen >= self.points[self._next]:
            self._next += 1
        return self._next > passed


def _prepare(x: torch.Tensor, model: VAE, device: torch.device) -> torch.Tensor:
    model.check_input(x)
    return x.to(device=device, dtype=torch.float32)


def make_optimizer(
    params, config: TrainConfig, *, capturable: bool = False
) -> torch.optim.Optimizer:
    """Adagrad (the paper's) or Adam, at ``config.lr``.

    PyTorch's fused (one-kernel) implementation is used when every parameter is a float32
    tensor on a device whose torch has that kernel (the CPU; CUDA in recent releases): the same
    update, several times faster than the per-tensor loop on the paper's model.

    ``capturable`` (CUDA only) is for a step captured in a CUDA graph: Adam then keeps its step
    count on the device, and refuses to be captured without it. Adagrad takes no such option:
    its fused kernel keeps the count on the device anyway.
    """
    params = list(params)
    kind = torch.optim.Adagrad if config.optimizer == "adagrad" else torch.optim.Adam
    devices = {p.device for p in params}
    if capturable and any(d.type != "cuda" for d in devices):
        where = ", ".join(sorted(map(str, devices)))
        raise ValueError(
            f"capturable=True is for parameters on a CUDA device, not on {where}; pass "
            "capturable=False"
        )
    fused = (
        len(devices) == 1
        and all(p.dtype == torch.float32 for p in params)
        and fused_step_available(kind, next(iter(devices)))
    )
    options: dict = {"fused": True} if fused else {}
    if capturable and kind is torch.optim.Adam:
        options["capturable"] = True
    return kind(params, lr=config.lr, **options)


@functools.cache
def fused_step_available(kind: type, device: torch.device) -> bool:
    """Whether ``kind(..., fused=True)`` steps on ``device`` with this torch (tried once on a
    one-element parameter: the fused kernels came to each device in a different release)."""
    if device.type not in ("cpu", "cuda"):
        return False
    p = torch.zeros(1, device=device, requires_grad=True)
    p.grad = torch.ones(1, device=device)
    try:
        kind([p], lr=0.1, fused=True).step()
    except (RuntimeError, NotImplementedError, ValueError):
        return False
    return True


def optimizer_step(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
    """A function that does ``optimizer.step()``, for a loop that steps many times.

    For a fused Adagrad (what :func:`make_optimizer` builds on the CPU) with one parameter
    group, no step hooks and every parameter's state in place, it calls the fused kernel that
    ``Adagrad.step`` ends in, ``torch._fused_adagrad_``, with the optimizer's own state tensors
    and its group's settings read at each call: the same update, bit for bit, without the
    Python that ``Adagrad.step`` spends gathering and grouping its lists on every call. The
    parameters' step counts are put in one tensor (the optimizer's state holds a view of it
    per parameter, each its own element, as before), so that one addition counts a step where
    ``Adagrad.step`` makes one per parameter: 0.18 ms instead of 0.22 ms per step for the
    paper's MNIST model on the book's 2-core machine. Every other optimizer gets its own
    ``step``. The gradients are the parameters' ``.grad`` at each call (a loop may replace
    them); a parameter without one sends the call to ``optimizer.step``, which skips it. The
    state tensors are those the optimizer holds when this is called: make the function after
    any ``optimizer.load_state_dict``, which replaces them.
    """
    if not _plain_fused_adagrad(optimizer):
        return optimizer.step
    group = optimizer.param_groups[0]
    params = list(group["params"])
    state = optimizer.state
    sums = [state[p]["sum"] for p in params]
    counts = torch.stack([state[p]["step"] for p in params])  # one tensor of the step counts
    steps = list(counts.unbind())
    for p, count in zip(params, steps, strict=True):
        state[p]["step"] = count
    one = torch.ones((), dtype=counts.dtype)  # a 0-dim tensor: no conversion at each call

    def step() -> None:
        grads = [p.grad for p in params]
        if any(g is None for g in grads):  # a parameter without a gradient: Adagrad skips it
            optimizer.step()
            return
        with torch.no_grad():
            counts.add_(one)  # what torch._foreach_add_(state_steps, 1) does in Adagrad.step
            torch._fused_adagrad_(
                params,
                grads,
                sums,
                steps,
                lr=group["lr"],
                lr_decay=group["lr_decay"],
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=group["maximize"],
            )

    return step


def _plain_fused_adagrad(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` is an exact, fused, single-group Adagrad whose state is already
    made (Adagrad makes it on construction) and which no hook or subclass changes."""
    if type(optimizer) is not torch.optim.Adagrad or len(optimizer.param_groups) != 1:
        return False
    group = optimizer.param_groups[0]
    if not group.get("fused") or group.get("differentiable"):
        return False
    hooks = (
        optimizer._optimizer_step_pre_hooks,
        optimizer._optimizer_step_post_hooks,
        _optim_module._global_optimizer_pre_hooks,
        _optim_module._global_optimizer_post_hooks,
    )
    if any(hooks):
        return False
    if any(getattr(optimizer, a, None) is not None for a in ("grad_scale", "found_inf")):
        return False
    state = optimizer.state
    params = group["params"]
    if torch.is_tensor(group["lr"]) or not all(
        "sum" in state[p] and "step" in state[p] and not torch.is_complex(p) for p in params
    ):
        return False
    # one device and dtype for the parameters, one for the step counts (0-dim): what the fused
    # kernel takes in one call without Adagrad.step's grouping
    steps = [state[p]["step"] for p in params]
    return (
        len({(p.device, p.dtype) for p in params}) == 1
        and len({(s.device, s.dtype) for s in steps}) == 1
        and all(s.dim() == 0 for s in steps)
    )


@dataclass
class TrainingData:
    """The training tensor, the fixed evaluation subsets, and how minibatches are drawn."""

    x: torch.Tensor
    eval_train: torch.Tensor
    eval_test: torch.Tensor | None
    dynamic: bool


def training_data(model, train_x, test_x, config: TrainConfig, dev) -> TrainingData:
    """Check and move the data; binarize statically if asked; pick the evaluation subsets."""
    x = _prepare(train_x, model, dev)
    xt = _prepare(test_x, model, dev) if test_x is not None else None
    binary = model.spec.decoder == "bernoulli" and config.binarize is not None
    if binary and config.binarize == "static":
        x = _data.binarize_static(x, seed=config.seed)
        xt = _data.binarize_static(xt, seed=config.seed + 1) if xt is not None else None
    # A fixed evaluation subset (binarized once when the decoder is Bernoulli).
    eval_train = x[: config.eval_points]
    eval_test = xt[: config.eval_points] if xt is not None else None
    dynamic = binary and config.binarize == "dynamic"
    if dynamic:
        eval_train = _data.binarize_static(eval_train, seed=config.seed + 2)
        if eval_test is not None:
            eval_test = _data.binarize_static(eval_test, seed=config.seed + 3)
    return TrainingData(x, eval_train, eval_test, dynamic)


def minibatches(data: TrainingData, config: TrainConfig, dev: torch.device):
    """Minibatches of Algorithm 1, endlessly: slices of a fresh permutation each epoch (all
    full batches; the whole set when it is smaller than one), binarized when dynamic.

    Deterministic for ``config.seed``: the permutations (and, on the CPU, the binary pixels)
    come from one CPU generator seeded with it.
    """
    seed = training_seed(config.seed)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    bin_gen = binarize_generator(dev, seed, gen)
    x, N, M = data.x, data.x.shape[0], config.batch_size
    while True:
        perm = torch.randperm(N, generator=gen).to(dev)
        for start in range(0, N - M + 1 if N >= M else 1, M):
            batch = torch.index_select(x, 0, perm[start : start + M])  # = x[perm[...]], faster
            yield binarize_batch(batch, bin_gen) if data.dynamic else batch


# 0-dim tensors, which the element-wise kernels take without converting a Python number
_HALF_PAST_2_15, _2_TO_MINUS_16 = torch.tensor(32768.5), torch.tensor(2.0**-16)


def binarize_batch(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A fresh Bernoulli draw of a minibatch's grey levels: 1[u < x], u uniform on the 2^16
    midpoints (k + ½) / 2^16, k = 0 … 2^16 − 1.

    So P(pixel = 1) is x rounded to a multiple of 2^-16 (within 7.7e-6 of x; exactly 0 at x = 0
    and 1 at x = 1). The 16 random bits of a pixel are a quarter of one 64-bit draw, and u is
    exact in float32. On the CPU this costs a third of ``torch.rand``'s uniform draw (0.08
    against 0.29 ms for a 100 x 784 minibatch, measured on the book's 2-core machine).
    """
    n = batch.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=generator.device)
    words.random_(-(2**63), None, generator=generator)  # all 64 bits uniform
    bits = words.view(torch.int16)[:n].view(batch.shape)  # k − 2^15, uniform on the int16s
    u = torch.add(bits, _HALF_PAST_2_15).mul_(_2_TO_MINUS_16)  # (k + ½) / 2^16, exact in float32
    return u.to(batch.device).lt_(batch)


def binarize_generator(device: torch.device, seed: int, cpu: torch.Generator) -> torch.Generator:
    """The generator of dynamic binarization: ``cpu`` on the CPU, else one on ``device``."""
    if device.type == "cpu":
        return cpu
    try:
        return torch.Generator(device=device).manual_seed(seed + 5)
    except RuntimeError:  # a device without its own generators: draw on the CPU
        return cpu


@keeps_global_rng
def fit(
    model: VAE,
    train_x: torch.Tensor,
    config: TrainConfig,
    test_x: torch.Tensor | None = None,
    *,
    device: str | torch.device | None = None,
    checkpoint: str | None = None,
    history: History | None = None,
    show_progress: bool = True,
) -> History:
    """Train ``model`` on ``train_x`` (N, D) by Algorithm 1 for ``config.samples`` datapoints.

    The bound is evaluated (estimator B, L = 1, fixed noise) on up to ``config.eval_points``
    training and test datapoints at log-spaced points of training. With ``checkpoint`` the
    model, optimizer and history are saved atomically at every evaluation. Deterministic on
    CPU for a given ``config.seed`` (moved by ``AEVB_DRAW_SALT`` when it is set:
    :func:`aevb._random.training_seed`). If the bound turns NaN or infinite, training stops with
    :class:`NonFiniteBoundError` naming the step, and ``model`` keeps the last good parameters
    (those of the step before, bit for bit: :class:`Rollback`).
    """
    dev = resolve_device(device)
    model.to(dev)
    data = training_data(model, train_x, test_x, config, dev)
    N = data.x.shape[0]
    torch.manual_seed(training_seed(config.seed))
    eval_train, eval_test = data.eval_train, data.eval_test

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, config)
    # The paper's model with estimator B: bound and gradient by hand (same values as elbo).
    fused = (
        _fused.FusedELBO(model, config.L)
        if _fused.supports(model, config.estimator) and len(params) == 8
        else None
    )
    step_optimizer = optimizer_step(optimizer)

    def compute(batch: torch.Tensor) -> torch.Tensor | None:
        """The step's loss (−bound, plus the weight prior if asked); None when the fused step
        certifies that it is finite without computing it (see FusedELBO.step)."""
        if fused is not None:  # the gradient is in p.grad already
            bound = fused.step(batch, exact=config.weight_prior)
        else:  # elbo without its input check: training_data checked all of x once
            bound = _elbo(model, batch, config.L, config.estimator).mean()
        if bound is None:
            return None
        loss = -bound
        if config.weight_prior:
            loss = loss + 0.5 * sum(p.square().sum() for p in params) / N
        return loss

    def update(loss: torch.Tensor | None) -> None:
        if fused is not None:
            if config.weight_prior:  # the N(0, I) prior on the weights: d/dp of ½ Σ p² / N
                with torch.no_grad():
                    torch._foreach_add_([p.grad for p in params], params, alpha=1.0 / N)
        else:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        step_optimizer()

    rollback = Rollback(params, optimizer, dev)
    history = history or History()
    clock = EvalClock(config.samples, config.batch_size, config.n_evals)
    seen, step, started = 0, 0, time.perf_counter()
    bar = training_progress(config.samples, "AEVB", show_progress)
    model.train()
    try:
        for batch in minibatches(data, config, dev):  # one step of Algorithm 1 each
            rollback.before_step()
            loss = compute(batch)
            if loss is not None and not torch.isfinite(loss):
                rollback.restore(lambda b: update(compute(b)))
                raise _non_finite("bound", -float(loss.detach()), step, seen)
            rollback.after_check(batch)
            update(loss)
            seen += batch.shape[0]
            step += 1
            bar.update(batch.shape[0])
            if clock.due(seen):
                record_bound(model, history, seen, eval_train, eval_test, config, started)
                rollback.refresh()
                bar.set_postfix(train=f"{history.train_bound[-1]:.1f}")
                if checkpoint:
                    save_checkpoint(
                        checkpoint, checkpoint_payload(model, history, config, optimizer)
                    )
            if seen >= config.samples:
                break
    finally:
        bar.close()
        model.eval()
    if not history.samples or history.samples[-1] != seen:
        record_bound(model, history, seen, eval_train, eval_test, config, started)
        if checkpoint:
            save_checkpoint(checkpoint, checkpoint_payload(model, history, config, optimizer))
    return history


def record_bound(model, history, seen, eval_train, eval_test, config, started) -> None:
    """Append to ``history`` the bound on the fixed evaluation subsets after ``seen`` samples
    (estimator B, noise from ``config.seed + 10``, so every evaluation uses the same draws)."""
    gen = torch.Generator().manual_seed(config.seed + 10)
    model.eval()
    history.samples.append(int(seen))
    history.train_bound.append(dataset_bound(model, eval_train, generator=gen))
    test = dataset_bound(model, eval_test, generator=gen) if eval_test is not None else float("nan")
    history.test_bound.append(test)
    history.seconds.append(time.perf_counter() - started)
    if not math.isfinite(history.train_bound[-1]):
        raise NonFiniteBoundError(
            f"the evaluated bound is {history.train_bound[-1]} after {seen} samples"
        )
    model.train()


def checkpoint_payload(model: VAE, history: History, config: TrainConfig, optimizer=None) -> dict:
    """What a checkpoint holds: spec, weights (on CPU), config, history, optimizer state."""
    payload = {
        "spec": model.spec.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": config.to_dict(),
        "history": history.to_dict(),
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    return payload


def load_model(
    path: str, device: str | torch.device | None = "cpu"
) -> tuple[VAE, History, TrainConfig]:
    """Rebuild a trained model, its history and its config from a checkpoint."""
    payload = load_checkpoint(path)
    model = build_model(ModelSpec(**payload["spec"]))
    model.load_state_dict(payload["state_dict"])
    model.to(resolve_device(device)).eval()
    return model, History.from_dict(payload["history"]), TrainConfig(**payload["config"])
