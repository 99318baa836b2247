"""ELBO (β-VAE) and IWAE objectives, and KL annealing."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from .._base import AbstractDataObjective, Array, Key, Scalar, check_event_shape
from ._base import AbstractLatentVariableModel


def _check(model, batch, name):
    if not isinstance(model, AbstractLatentVariableModel):
        raise TypeError(
            f"{name} trains an AbstractLatentVariableModel (e.g. a VAE), got {type(model).__name__}"
        )
    if batch is None:
        raise ValueError(f"{name} needs data: pass data=... to fit")
    check_event_shape(batch, model.shape, "data batch")


class ELBO(AbstractDataObjective):
    """``L = −(1/B) Σ_i [E_q[log p(x_i|z)] − β KL(q(z|x_i) ‖ N(0, I))]`` (β-VAE, Higgins et
    al. 2017; ``β = 1``: the negative ELBO, an upper bound on the NLL in nats).

    One reparameterised sample per example, closed-form Gaussian KL; no constants dropped.
    ``beta`` is a float or an array leaf (so changing it does not recompile ``fit``).
    """

    beta: Array

    def __init__(self, beta: float | Array = 1.0):
        beta = jnp.asarray(beta, dtype=jnp.result_type(float))
        if beta.shape != () or not bool(beta >= 0):
            raise ValueError(f"ELBO: beta must be a non-negative scalar, got {beta}")
        self.beta = beta

    def loss(self, model, key: Key, batch: Array) -> tuple[Scalar, dict[str, Scalar]]:
        _check(model, batch, "ELBO")
        keys = jax.random.split(key, batch.shape[0])
        _, rec, kl = jax.vmap(lambda k, x: model._elbo(k, x, 1.0))(keys, batch)
        rec, kl = jnp.mean(rec), jnp.mean(kl)
        return -(rec - self.beta * kl), {
            "elbo": rec - kl,
            "reconstruction": rec,
            "kl": kl,
            "beta": self.beta,
        }


class IWAE(AbstractDataObjective):
    """``L = −(1/B) Σ_i log (1/K) Σ_k p(x_i, z_k)/q(z_k|x_i)`` (Burda et al. 2016), a
    tighter bound than the ELBO for ``K > 1``; ``K = num_samples``. No constants dropped."""

    num_samples: int

    def __init__(self, num_samples: int = 8):
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"IWAE: num_samples must be a positive int, got {num_samples!r}")
        self.num_samples = num_samples

    def loss(self, model, key: Key, batch: Array) -> tuple[Scalar, dict[str, Scalar]]:
        _check(model, batch, "IWAE")
        keys = jax.random.split(key, batch.shape[0])
        lw = jax.vmap(lambda k, x: model._log_weights(k, x, self.num_samples))(keys, batch)
        bound = jnp.mean(jax.nn.logsumexp(lw, axis=-1) - math.log(self.num_samples))
        return -bound, {"iwae": bound}


def kl_annealing_schedule(
    warmup_steps: int, final_beta: float = 1.0, initial_beta: float = 0.0
) -> optax.Schedule:
    """``β(t)`` rising linearly from ``initial_beta`` to ``final_beta`` over ``warmup_steps``
    and constant afterwards (Bowman et al. 2016): an ``optax.linear_schedule``."""
    if warmup_steps < 1:
        raise ValueError(f"warmup_steps must be positive, got {warmup_steps}")
    return optax.linear_schedule(initial_beta, final_beta, warmup_steps)


def fit_annealed(
    key: Key,
    model,
    objective: ELBO,
    schedule: optax.Schedule,
    *,
    steps: int,
    num_stages: int = 10,
    **fit_kwargs,
):
    """``physgen.fit`` with the ELBO's ``β`` following ``schedule(step)``, piecewise constant
    over ``num_stages`` equal stages (``β`` of a stage: the schedule at its first step).

    ``fit`` does not pass the step to objectives, so each stage is one ``fit`` call (same
    compiled chunk; the optimiser state restarts at each stage). Returns ``(model, history)``
    with the histories concatenated.
    """
    from ..training import fit

    if not isinstance(objective, ELBO):
        raise TypeError(f"fit_annealed anneals an ELBO objective, got {type(objective).__name__}")
    num_stages = max(1, min(int(num_stages), int(steps)))
    bounds = [round(i * steps / num_stages) for i in range(num_stages + 1)]
    histories = []
    for i in range(num_stages):
        n = bounds[i + 1] - bounds[i]
        beta = jnp.asarray(schedule(bounds[i]), objective.beta.dtype)
        obj = ELBO(beta)
        model, hist = fit(jax.random.fold_in(key, i), model, obj, steps=n, **fit_kwargs)
        histories.append(hist)
    history = {k: jnp.concatenate([h[k] for h in histories]) for k in histories[0]}
    return model, {k: jax.device_get(v) for k, v in history.items()}
