"""Denoising score matching (continuous time) and the DDPM noise-prediction loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._base import AbstractDataObjective, Key, Scalar, check_event_shape
from ._ddpm import DDPMSchedule
from ._model import DiffusionModel

_WEIGHTINGS = ("sigma2", "likelihood", "none")


def _check_dropout(p):
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"condition_dropout must lie in [0, 1], got {p}")
    return p


def _split_batch(model, batch, name):
    """``batch`` -> ``(x (B, *shape), condition (B, *cond_shape) or None)``."""
    if not isinstance(model, DiffusionModel):
        raise TypeError(f"{name} trains a DiffusionModel, got {type(model).__name__}")
    if batch is None:
        raise ValueError(f"{name} needs data: pass data=... to fit")
    if isinstance(batch, (tuple, list)):
        if len(batch) != 2:
            raise ValueError(f"{name}: a conditional batch is a pair (x, condition)")
        x, cond = (jnp.asarray(b) for b in batch)
    else:
        x, cond = jnp.asarray(batch), None
    check_event_shape(x, model.shape, "data batch")
    if x.ndim != len(model.shape) + 1:
        raise ValueError(f"data batch must have shape (B, *{model.shape}), got {x.shape}")
    if model.cond_shape is None:
        if cond is not None:
            raise ValueError(f"{name}: the model is unconditional but the batch has conditions")
    else:
        if cond is None:
            raise ValueError(
                f"{name}: the model is conditional; a batch is a pair (x, condition) with "
                f"condition of shape (B, *{model.cond_shape})"
            )
        if cond.shape != x.shape[:1] + tuple(model.cond_shape):
            raise ValueError(
                f"condition batch has shape {cond.shape}, expected "
                f"{x.shape[:1] + tuple(model.cond_shape)}"
            )
    return x, cond


def _map_examples(fn, key, x, cond):
    keys = jax.random.split(key, x.shape[0])
    if cond is None:
        return jax.vmap(lambda k, xi: fn(k, xi, None))(keys, x)
    return jax.vmap(fn)(keys, x, cond)


def _drop(model, key, p):
    if model.cond_shape is None or p == 0.0:
        return False
    return jax.random.bernoulli(key, p)


class DenoisingScoreMatching(AbstractDataObjective):
    r"""Denoising score matching (Vincent 2011; Song et al. 2021) for a :class:`DiffusionModel`.

    ``L = E_{t ~ U(eps, T)} E_{x_0, z} [λ(t) |s_θ(x_t, t) - ∇ log p_{0t}(x_t|x_0)|²]`` with
    ``x_t = α x_0 + σ z`` and ``∇ log p_{0t} = -z/σ``, i.e. ``λ(t)/σ(t)² |ε̂_θ(x_t, t) - z|²``
    (summed over the entries of one example, averaged over the batch). The weighting is
    named by ``weighting``:

    - ``"sigma2"``: ``λ = σ(t)²``, the noise-prediction loss ``|ε̂ - z|²`` (Ho et al. 2020).
    - ``"likelihood"``: ``λ = g(t)²`` (Song et al. 2021b): then ``½ (T - eps) L`` is
      ``-ELBO`` up to a θ-independent constant. With ``importance_sampling=True`` the time is
      drawn uniformly in the log-SNR ``λ(t)`` and reweighted (same expectation, much lower
      variance near ``t = eps``): since ``g²/σ² = -dλ/dt`` the estimator is
      ``(λ(eps) - λ(T))/(T - eps) · |ε̂ - z|²``.
    - ``"none"``: ``λ = 1``.

    The minimum over ``s_θ`` is at the true score ``∇ log p_t`` and is NOT zero: the dropped
    constant is ``E_t λ(t) E|∇ log p_{0t} - ∇ log p_t|²`` (for ``"sigma2"`` and data
    ``N(0, s² I_d)``: ``E_t[d α² s² / (α² s² + σ²)]``).

    Conditional models: the batch is a pair ``(x, condition)`` and each example's condition is
    replaced by the null condition with probability ``condition_dropout`` (classifier-free
    guidance training).
    """

    weighting: str
    importance_sampling: bool
    condition_dropout: float

    def __init__(
        self,
        weighting: str = "sigma2",
        *,
        importance_sampling: bool = False,
        condition_dropout: float = 0.0,
    ):
        if weighting not in _WEIGHTINGS:
            raise ValueError(f"weighting must be one of {_WEIGHTINGS}, got {weighting!r}")
        if importance_sampling and weighting != "likelihood":
            raise ValueError("importance_sampling is for weighting='likelihood'")
        self.weighting = weighting
        self.importance_sampling = bool(importance_sampling)
        self.condition_dropout = _check_dropout(condition_dropout)

    def _single(self, model, key, x0, cond):
        sde, eps, T = model.sde, model.eps, model.sde.T
        dtype = x0.dtype
        k_t, k_z, k_d = jax.random.split(key, 3)
        if self.importance_sampling:
            lam_lo, lam_hi = sde.log_snr(T), sde.log_snr(eps)
            lam = jax.random.uniform(k_t, (), dtype, lam_lo, lam_hi)
            t = jnp.clip(sde.log_snr_inverse(lam), eps, T)
            weight = (lam_hi - lam_lo) / (T - eps)
        else:
            t = jax.random.uniform(k_t, (), dtype, eps, T)
            sigma = sde.marginal_std(t)
            if self.weighting == "sigma2":
                weight = jnp.ones((), dtype)
            elif self.weighting == "likelihood":
                weight = sde.diffusion(t) ** 2 / sigma**2
            else:
                weight = 1.0 / sigma**2
        xt, z = sde.perturb(k_z, t, x0)
        drop = _drop(model, k_d, self.condition_dropout)
        eps_hat = model.noise_prediction(t, xt, cond, drop=drop)
        return weight * jnp.sum((eps_hat - z) ** 2)

    def init_state(self, model, key: Key) -> None:
        return None

    def loss(self, model, key: Key, batch, state, step) -> tuple[Scalar, dict[str, Scalar], None]:
        x, cond = _split_batch(model, batch, "DenoisingScoreMatching")
        per = _map_examples(lambda k, xi, ci: self._single(model, k, xi, ci), key, x, cond)
        loss = jnp.mean(per)
        return loss, {"dsm": loss}, state


class DDPMLoss(AbstractDataObjective):
    r"""Ho et al. 2020's simplified loss ``L = E_{n ~ U{1..N}} E |ε̂_θ(x_n, t_n) - z|²``.

    ``x_n = √ᾱ_n x_0 + √(1 - ᾱ_n) z`` on the discrete ``schedule``; the network sees the time
    ``t_n = n/N``. Needs ``parameterisation="epsilon"``. Its minimum is not zero (the dropped
    constant is ``E_n (1 - ᾱ_n) E|∇ log q(x_n|x_0) - ∇ log q_n(x_n)|²``). Conditional batches
    and ``condition_dropout`` as in :class:`DenoisingScoreMatching`.
    """

    schedule: DDPMSchedule
    condition_dropout: float

    def __init__(self, schedule: DDPMSchedule, *, condition_dropout: float = 0.0):
        if not isinstance(schedule, DDPMSchedule):
            raise TypeError(f"schedule must be a DDPMSchedule, got {type(schedule).__name__}")
        self.schedule = schedule
        self.condition_dropout = _check_dropout(condition_dropout)

    def _single(self, model, key, x0, cond):
        k_n, k_z, k_d = jax.random.split(key, 3)
        n = jax.random.randint(k_n, (), 1, self.schedule.num_steps + 1)
        abar = self.schedule.alphas_cumprod.astype(x0.dtype)[n - 1]
        z = jax.random.normal(k_z, x0.shape, x0.dtype)
        xn = jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * z
        t = self.schedule.time(n).astype(x0.dtype)
        drop = _drop(model, k_d, self.condition_dropout)
        eps_hat = model.noise_prediction(t, xn, cond, drop=drop)
        return jnp.sum((eps_hat - z) ** 2)

    def init_state(self, model, key: Key) -> None:
        return None

    def loss(self, model, key: Key, batch, state, step) -> tuple[Scalar, dict[str, Scalar], None]:
        x, cond = _split_batch(model, batch, "DDPMLoss")
        if model.parameterisation != "epsilon":
            raise ValueError("DDPMLoss needs a noise-prediction model (parameterisation='epsilon')")
        per = _map_examples(lambda k, xi, ci: self._single(model, k, xi, ci), key, x, cond)
        loss = jnp.mean(per)
        return loss, {"ddpm": loss}, state
