"""The conditional flow-matching objective (Lipman et al. 2023; Tong et al. 2023)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._base import AbstractDataObjective, Array, Key, Scalar, check_event_shape
from ..flows._continuous import check_continuous_model
from ._coupling import ot_coupling
from ._paths import AbstractProbabilityPath, LinearPath, _check_time


class FlowMatching(AbstractDataObjective):
    """Conditional flow matching, ``L = E_{t, x0, x1} |v(t, x_t) - u_t(x0, x1)|²``.

    The model is ``Transformed(base, ContinuousFlow(v, ...))`` (e.g. :func:`physgen.flows.cnf`)
    running from noise at ``t0 = 0`` to data at ``t1``: only its vector field ``v`` is
    regressed, so the trained model IS the continuous flow, with the exact ``log_prob`` of
    :class:`~physgen.bijections.ContinuousFlow`. Per example: ``x1`` from the data batch,
    ``x0 ~ base``, ``t ~ U[t_min, t1]``, ``x_t = a(t) x1 + b(t) x0`` and
    ``u_t = a'(t) x1 + b'(t) x0`` from ``path`` (default :class:`LinearPath`); ``|·|²`` sums
    over the event, the batch is averaged.

    The gradient equals that of the marginal flow-matching loss ``E|v - u_t(x)|²``, but the
    value does not: it exceeds it by ``E_t E_{x_t} Var[u_t | x_t]`` (independent of ``v``),
    so the minimum of the printed loss is not zero.

    ``ot_coupling=True`` re-pairs each minibatch's noise and data by entropic optimal
    transport before building the paths (OT-CFM, Tong et al. 2023; see
    :func:`physgen.flow_matching.ot_coupling`, with ``ot_epsilon`` relative to the mean cost):
    straighter paths and fewer solver steps.
    """

    path: AbstractProbabilityPath
    ot_coupling: bool
    ot_epsilon: float
    ot_iters: int

    def __init__(
        self,
        path: AbstractProbabilityPath | None = None,
        *,
        ot_coupling: bool = False,
        ot_epsilon: float = 0.01,
        ot_iters: int = 200,
    ):
        path = LinearPath() if path is None else path
        if not isinstance(path, AbstractProbabilityPath):
            raise TypeError(f"path must be an AbstractProbabilityPath, got {type(path)}")
        if not ot_epsilon > 0 or int(ot_iters) < 1:
            raise ValueError(f"need ot_epsilon > 0 and ot_iters >= 1, got {ot_epsilon}, {ot_iters}")
        self.path = path
        self.ot_coupling = bool(ot_coupling)
        self.ot_epsilon = float(ot_epsilon)
        self.ot_iters = int(ot_iters)

    def init_state(self, model, key: Key) -> None:
        return None

    def loss(self, model, key: Key, batch, state, step) -> tuple[Scalar, dict[str, Scalar], None]:
        if batch is None:
            raise ValueError("FlowMatching needs data: pass data=... to fit")
        flow = check_continuous_model(model, "FlowMatching")
        _check_time(self.path, flow.t0, flow.t1)
        check_event_shape(batch, model.shape, "data batch")
        if batch.ndim != len(model.shape) + 1:
            raise ValueError(f"data batch must have shape (B, *{model.shape}), got {batch.shape}")
        n = batch.shape[0]
        k_noise, k_t, k_ot = jax.random.split(key, 3)
        x1 = batch
        x0 = model.base.sample(k_noise, (n,)).astype(x1.dtype)
        if self.ot_coupling:
            x0, x1 = ot_coupling(k_ot, x0, x1, epsilon=self.ot_epsilon, num_iters=self.ot_iters)
        t = jax.random.uniform(k_t, (n,), x1.dtype, minval=self.path.t_min, maxval=flow.t1)
        return (*flow_matching_loss(flow.vector_field, self.path, t, x0, x1), state)


def flow_matching_loss(vector_field, path, t: Array, x0: Array, x1: Array):
    """``(1/n) Σ_i |v(t_i, x_t,i) - u_t,i|²`` for given times ``(n,)`` and pairs
    ``(n, *shape)``; returns ``(loss, {"flow_matching": loss})``."""
    xt, ut = jax.vmap(path.sample_and_velocity)(t, x0, x1)
    v = jax.vmap(lambda ti, xi: vector_field(ti, xi, None))(t, xt)
    per_example = jnp.sum(jnp.reshape((v - ut) ** 2, (t.shape[0], -1)), axis=-1)
    loss = jnp.mean(per_example)
    return loss, {"flow_matching": loss}
