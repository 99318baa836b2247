"""Minibatch optimal-transport coupling (Tong et al. 2023) by entropic OT (Sinkhorn)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._base import Array, Key


def sinkhorn_log_plan(
    x0: Array, x1: Array, *, epsilon: float = 0.01, num_iters: int = 200
) -> Array:
    """Log of the entropic OT plan between two equal-weight point clouds, shape ``(n, m)``.

    Minimises ``Σ_ij π_ij C_ij - ε' H(π)`` over plans with uniform marginals ``1/n``, ``1/m``,
    ``C_ij = |x0_i - x1_j|²`` (flattened examples), by ``num_iters`` log-domain Sinkhorn
    iterations (Cuturi 2013). ``ε' = epsilon · mean(C)``, so ``epsilon`` is relative to the
    typical cost; as ``epsilon → 0`` the plan tends to the exact (permutation) assignment.
    No gradient flows through the plan.
    """
    x0 = jax.lax.stop_gradient(jnp.reshape(x0, (x0.shape[0], -1)))
    x1 = jax.lax.stop_gradient(jnp.reshape(x1, (x1.shape[0], -1)))
    if x0.shape[1] != x1.shape[1]:
        raise ValueError(f"x0 and x1 hold examples of different sizes: {x0.shape}, {x1.shape}")
    if not epsilon > 0 or num_iters < 1:
        raise ValueError(f"need epsilon > 0 and num_iters >= 1, got {epsilon}, {num_iters}")
    n, m = x0.shape[0], x1.shape[0]
    cost = jnp.sum((x0[:, None, :] - x1[None, :, :]) ** 2, axis=-1)
    eps = epsilon * jnp.maximum(jnp.mean(cost), jnp.finfo(cost.dtype).tiny)
    k = -cost / eps
    log_a = jnp.full((n,), -jnp.log(n), cost.dtype)
    log_b = jnp.full((m,), -jnp.log(m), cost.dtype)

    def body(_, fg):
        f, g = fg
        f = log_a - jax.nn.logsumexp(k + g[None, :], axis=1)
        g = log_b - jax.nn.logsumexp(k + f[:, None], axis=0)
        return f, g

    f, g = jax.lax.fori_loop(
        0, num_iters, body, (jnp.zeros((n,), cost.dtype), jnp.zeros((m,), cost.dtype))
    )
    return f[:, None] + k + g[None, :]


def ot_coupling(
    key: Key, x0: Array, x1: Array, *, epsilon: float = 0.01, num_iters: int = 200
) -> tuple[Array, Array]:
    """Re-pair a minibatch by optimal transport: ``(x0[i_k], x1[j_k])``, ``k = 1..n``.

    The pairs ``(i_k, j_k)`` are drawn independently from the entropic OT plan of
    :func:`sinkhorn_log_plan` (as Tong et al. 2023 draw from the exact plan), so the pairs are
    (nearly) the optimal assignment for small ``epsilon``. Shapes are kept: ``x0`` is
    ``(n, *shape)``, ``x1`` ``(m, *shape)``; both outputs have ``n`` rows.
    """
    n, m = x0.shape[0], x1.shape[0]
    log_plan = sinkhorn_log_plan(x0, x1, epsilon=epsilon, num_iters=num_iters)
    # inverse-CDF sampling: n uniforms and a search, not n·n·m Gumbel draws
    probs = jnp.exp(log_plan.reshape(-1) - jax.nn.logsumexp(log_plan))
    cdf = jnp.cumsum(probs)
    u = jax.random.uniform(key, (n,), cdf.dtype) * cdf[-1]
    flat = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), n * m - 1)
    return x0[flat // m], x1[flat % m]
