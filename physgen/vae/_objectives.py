"""ELBO (β-VAE, with KL annealing) and IWAE objectives."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

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
    KL annealing (Bowman et al. 2016): with ``kl_warmup = W > 0``, ``β`` rises linearly from
    ``initial_beta`` at step 0 to ``beta`` at step ``W`` and stays there; the diagnostics
    report the ``β`` of each step. ``beta`` and ``initial_beta`` are array leaves, so new
    values do not recompile ``fit``. Stateless.
    """

    beta: Array
    initial_beta: Array
    kl_warmup: int

    def __init__(self, beta: float | Array = 1.0, *, kl_warmup: int = 0,
                 initial_beta: float | Array = 0.0):
        dtype = jnp.result_type(float)
        beta, initial_beta = jnp.asarray(beta, dtype), jnp.asarray(initial_beta, dtype)
        for name, b in (("beta", beta), ("initial_beta", initial_beta)):
            if b.shape != () or not bool(b >= 0):
                raise ValueError(f"ELBO: {name} must be a non-negative scalar, got {b}")
        if isinstance(kl_warmup, bool) or not isinstance(kl_warmup, int) or kl_warmup < 0:
            raise ValueError(f"ELBO: kl_warmup must be a non-negative int, got {kl_warmup!r}")
        self.beta = beta
        self.initial_beta = initial_beta
        self.kl_warmup = kl_warmup

    def beta_at(self, step) -> Array:
        """``β`` at training step ``step``."""
        if self.kl_warmup == 0:
            return self.beta
        frac = jnp.clip(jnp.asarray(step, self.beta.dtype) / self.kl_warmup, 0.0, 1.0)
        return self.initial_beta + frac * (self.beta - self.initial_beta)

    def init_state(self, model, key: Key) -> None:
        return None

    def loss(self, model, key: Key, batch, state, step) -> tuple[Scalar, dict[str, Scalar], None]:
        _check(model, batch, "ELBO")
        keys = jax.random.split(key, batch.shape[0])
        _, rec, kl = jax.vmap(lambda k, x: model._elbo(k, x, 1.0))(keys, batch)
        rec, kl = jnp.mean(rec), jnp.mean(kl)
        beta = self.beta_at(step)
        return -(rec - beta * kl), {
            "elbo": rec - kl,
            "reconstruction": rec,
            "kl": kl,
            "beta": beta,
        }, state


class IWAE(AbstractDataObjective):
    """``L = −(1/B) Σ_i log (1/K) Σ_k p(x_i, z_k)/q(z_k|x_i)`` (Burda et al. 2016), a
    tighter bound than the ELBO for ``K > 1``; ``K = num_samples``. No constants dropped.
    Stateless."""

    num_samples: int

    def __init__(self, num_samples: int = 8):
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"IWAE: num_samples must be a positive int, got {num_samples!r}")
        self.num_samples = num_samples

    def init_state(self, model, key: Key) -> None:
        return None

    def loss(self, model, key: Key, batch, state, step) -> tuple[Scalar, dict[str, Scalar], None]:
        _check(model, batch, "IWAE")
        keys = jax.random.split(key, batch.shape[0])
        lw = jax.vmap(lambda k, x: model._log_weights(k, x, self.num_samples))(keys, batch)
        bound = jnp.mean(jax.nn.logsumexp(lw, axis=-1) - math.log(self.num_samples))
        return -bound, {"iwae": bound}, state
