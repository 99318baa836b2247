"""Maximum likelihood for a continuous normalizing flow with a stochastic trace (FFJORD)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._base import AbstractDataObjective, Key, Scalar, check_event_shape
from ..flows._continuous import check_continuous_model


class CNFMaximumLikelihood(AbstractDataObjective):
    """Negative log-likelihood of a continuous flow, ``L = -(1/B) Σ_i log q̂(x_i)``.

    ``log q̂(x) = log p_base(z) + ℓ̂`` with ``(z, ℓ̂) = inverse_and_log_det_estimate(x, k_i)``:
    the data are carried from ``t1`` back to ``t0`` and the log-det is integrated with the
    flow's ``trace`` setting (``"hutchinson"``: one probe per example and step, an unbiased
    estimate of the exact log-likelihood and of its gradient, one Jacobian-vector product per
    function evaluation; ``"exact"``: the exact value). As for
    :class:`~physgen.objectives.MaximumLikelihood`, the minimum of the expected loss is the
    data entropy ``H(p)`` (nats), the dropped constant. The model is
    ``Transformed(base, ContinuousFlow)``, e.g. from :func:`physgen.flows.cnf`.
    """

    def __init__(self):
        pass

    def init_state(self, model, key: Key) -> None:
        return None

    def loss(self, model, key: Key, batch, state, step) -> tuple[Scalar, dict[str, Scalar], None]:
        if batch is None:
            raise ValueError("CNFMaximumLikelihood needs data: pass data=... to fit")
        flow = check_continuous_model(model, "CNFMaximumLikelihood")
        check_event_shape(batch, model.shape, "data batch")
        if batch.ndim != len(model.shape) + 1:
            raise ValueError(f"data batch must have shape (B, *{model.shape}), got {batch.shape}")
        keys = jax.random.split(key, batch.shape[0])
        z, ld = jax.vmap(flow.inverse_and_log_det_estimate)(batch, keys)
        nll = -jnp.mean(model.base.log_prob(z) + ld)
        return nll, {"nll": nll}, state
