"""The marginal likelihood log p_θ(x), estimated by importance sampling with q_φ(z|x).

    log p_θ(x) ≈ log (1/k) Σ_{s=1}^{k} p_θ(x, z_s) / q_φ(z_s|x),   z_s ~ q_φ(z|x)

computed with log-sum-exp. By Jensen's inequality its expectation lies below log p_θ(x) and
above the bound L (k = 1 gives the bound's estimator A); it tightens as k grows (Burda et al.,
2016). The paper's own estimator (Appendix D) lives in :mod:`aevb.hmc`'s companions.
"""

from __future__ import annotations

import math

import torch

from ._checks import check_model_data, check_positive_int


@torch.no_grad()
def log_weights(model, x: torch.Tensor, k: int) -> torch.Tensor:
    """log p_θ(x, z_s) − log q_φ(z_s|x) for k draws z_s ~ q_φ(z|x): shape (k, batch).

    ``x`` is a batch (batch, x_dim), checked as by :func:`aevb.bound.elbo`.
    """
    check_positive_int(k, "k")
    check_model_data(model, x)
    return _log_weights(model, x, k)


def _log_weights(model, x: torch.Tensor, k: int) -> torch.Tensor:
    q = model.encoder(x)
    z = q.sample((k,))
    return model.prior().log_prob(z) + model.decoder(z).log_prob(x) - q.log_prob(z)


@torch.no_grad()
def importance_log_px(
    model, x: torch.Tensor, k: int = 1000, chunk: int = 250, batch_size: int = 500
) -> torch.Tensor:
    """The importance-sampled estimate of log p_θ(x) per datapoint (nats), shape (batch,).

    Samples are drawn ``chunk`` at a time and datapoints ``batch_size`` at a time, so memory
    stays bounded for large k; the chunks are combined exactly by log-sum-exp. All of ``x``
    is checked once, as by :func:`aevb.bound.elbo`.
    """
    check_positive_int(k, "k")
    check_positive_int(chunk, "chunk")
    check_positive_int(batch_size, "batch_size")
    check_model_data(model, x)
    out = []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        parts = []
        remaining = k
        while remaining > 0:
            n = min(chunk, remaining)
            parts.append(torch.logsumexp(_log_weights(model, xb, n), dim=0))
            remaining -= n
        out.append(torch.logsumexp(torch.stack(parts), dim=0) - math.log(k))
    return torch.cat(out)
