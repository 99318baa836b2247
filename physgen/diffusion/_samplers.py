"""Samplers for diffusion models: ancestral DDPM and the reverse-time SDE (diffrax).

The probability-flow ODE sampler is :meth:`DiffusionModel.sample` (a ContinuousFlow solve).
"""

from __future__ import annotations

import math

import diffrax
import jax
import jax.numpy as jnp
import lineax as lx

from .._base import Array, Key, Shape
from ._ddpm import DDPMSchedule
from ._model import DiffusionModel
from ._sde import AbstractSDE

_VARIANCES = ("beta", "posterior")


def ddpm_sample(
    key: Key,
    model,
    schedule: DDPMSchedule,
    sample_shape: Shape = (),
    condition: Array | None = None,
    *,
    variance: str = "beta",
) -> Array:
    r"""Ancestral sampling of Ho et al. 2020 (Algorithm 2), ``(*sample_shape, *shape)``.

    ``x_N ~ N(0, I)``; for ``n = N, ..., 1``:
    ``x_{n-1} = (x_n - β_n/√(1-ᾱ_n) ε̂(x_n, t_n)) / √α_n + σ_n z`` with ``z ~ N(0, I)``
    (``z = 0`` at ``n = 1``) and ``σ_n² = β_n`` (``variance="beta"``) or the posterior
    variance ``β̃_n`` (``"posterior"``). ``ε̂`` is ``model.guided_noise_prediction`` at
    ``t_n = n/N`` (classifier-free guided when the model has ``guidance != 0``). One
    ``lax.scan`` over the ``N`` steps per sample; samples are vmapped.
    """
    if not isinstance(schedule, DDPMSchedule):
        raise TypeError(f"schedule must be a DDPMSchedule, got {type(schedule).__name__}")
    if variance not in _VARIANCES:
        raise ValueError(f"variance must be one of {_VARIANCES}, got {variance!r}")
    if not isinstance(model, DiffusionModel):
        raise TypeError(f"model must be a DiffusionModel, got {type(model).__name__}")
    shape = model.shape
    dtype = jnp.result_type(float)
    betas = schedule.beta.astype(dtype)
    alphas = schedule.alphas.astype(dtype)
    abar = schedule.alphas_cumprod.astype(dtype)
    sig = jnp.sqrt(betas if variance == "beta" else schedule.posterior_variance.astype(dtype))
    steps = jnp.arange(schedule.num_steps, 0, -1)

    def single(k, cond):
        k0, kz = jax.random.split(k)
        x = jax.random.normal(k0, shape, dtype)
        noise = jax.random.normal(kz, (schedule.num_steps,) + tuple(shape), dtype)

        def body(x, inp):
            n, z = inp
            i = n - 1
            e = model.guided_noise_prediction(schedule.time(n).astype(dtype), x, cond)
            mean = (x - betas[i] / jnp.sqrt(1.0 - abar[i]) * e) / jnp.sqrt(alphas[i])
            return mean + jnp.where(n > 1, sig[i], 0.0) * z, None

        x, _ = jax.lax.scan(body, x, (steps, noise))
        return x

    return model._batched(single, key, sample_shape, condition, None)


def _levy_area(solver):
    minimal = getattr(solver, "minimal_levy_area", None)
    for area in (
        diffrax.BrownianIncrement,
        diffrax.SpaceTimeLevyArea,
        diffrax.SpaceTimeTimeLevyArea,
    ):
        if minimal is None or issubclass(area, minimal):
            return area
    raise ValueError(f"no Brownian Lévy area fits the solver {type(solver).__name__}")


def _solve_sde(key, drift, diffusion, x0, t0, t1, num_steps, solver):
    """Fixed-step diffrax solve of ``dy = drift(t, y) dt + diffusion(t) dW`` for a flat
    ``y``, with a ``VirtualBrownianTree`` (tolerance a tenth of the step)."""
    dt = (t1 - t0) / num_steps
    bm = diffrax.VirtualBrownianTree(
        t0, t1, tol=dt / 10, shape=x0.shape, key=key, levy_area=_levy_area(solver)
    )
    terms = diffrax.MultiTerm(
        diffrax.ODETerm(lambda t, y, args: drift(t, y)),
        diffrax.ControlTerm(
            lambda t, y, args: lx.DiagonalLinearOperator(jnp.full_like(y, diffusion(t))), bm
        ),
    )
    sol = diffrax.diffeqsolve(
        terms,
        solver,
        t0,
        t1,
        dt,
        x0,
        stepsize_controller=diffrax.ConstantStepSize(),
        max_steps=num_steps + 1,
    )
    return sol.ys[-1]


def _check_steps(num_steps):
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")


def reverse_sde_sample(
    key: Key,
    model: DiffusionModel,
    sample_shape: Shape = (),
    condition: Array | None = None,
    *,
    num_steps: int = 1000,
    solver: diffrax.AbstractSolver | None = None,
) -> Array:
    r"""Sample by solving the reverse-time SDE (Anderson 1982; Song et al. 2021) with diffrax.

    ``dx = [f(x, t) - g(t)² s(x, t)] dt + g(t) dw̄`` from ``x_T ~ π`` down to ``t = eps``,
    written forward in ``τ = T - t``: ``dy = [g² s - f](y, T - τ) dτ + g(T - τ) dW_τ``.
    ``num_steps`` fixed steps of ``solver`` (default ``diffrax.Euler()``, i.e.
    Euler–Maruyama; ``diffrax.Heun()``, ``diffrax.ShARK()`` or ``diffrax.SEA()`` for additive
    noise also work) with the Brownian motion of a ``diffrax.VirtualBrownianTree``.
    ``s`` is ``model.score`` (guided, if the model has ``guidance != 0``). Returns
    ``(*sample_shape, *shape)``.
    """
    _check_steps(num_steps)
    if not isinstance(model, DiffusionModel):
        raise TypeError(f"model must be a DiffusionModel, got {type(model).__name__}")
    solver = diffrax.Euler() if solver is None else solver
    sde, shape, T, eps = model.sde, model.shape, model.sde.T, model.eps
    dtype = jnp.result_type(float)
    prior_std = sde.prior_std()

    def single(k, cond):
        k0, kb = jax.random.split(k)
        x_T = prior_std * jax.random.normal(k0, (math.prod(shape),), dtype)

        def drift(tau, y):
            t = T - tau
            x = jnp.reshape(y, shape)
            return -jnp.reshape(sde.reverse_drift(t, x, model.score(t, x, cond)), (-1,))

        y = _solve_sde(
            kb, drift, lambda tau: sde.diffusion(T - tau), x_T, 0.0, T - eps, num_steps, solver
        )
        return jnp.reshape(y, shape)

    return model._batched(single, key, sample_shape, condition, None)


def simulate_forward(
    key: Key,
    sde: AbstractSDE,
    x0: Array,
    t: float,
    *,
    num_steps: int = 1000,
    solver: diffrax.AbstractSolver | None = None,
) -> Array:
    """Solve the forward SDE ``dx = f(x, t) dt + g(t) dw`` from ``x(0) = x0`` (one example)
    to time ``t`` with diffrax (default Euler–Maruyama, ``num_steps`` fixed steps, a
    ``VirtualBrownianTree``); returns ``x(t)`` of the shape of ``x0``. Its law is
    ``N(α(t) x0, σ(t)² I)`` up to the discretisation error: a check of ``sde.marginal``."""
    _check_steps(num_steps)
    if not isinstance(sde, AbstractSDE):
        raise TypeError(f"sde must be an AbstractSDE, got {type(sde).__name__}")
    solver = diffrax.Euler() if solver is None else solver
    t = float(t)
    if not 0 < t <= sde.T:
        raise ValueError(f"t must lie in (0, T={sde.T}], got {t}")
    x0 = jnp.asarray(x0, dtype=jnp.result_type(x0, float))
    shape = x0.shape

    def drift(s, y):
        return jnp.reshape(sde.drift(s, jnp.reshape(y, shape)), (-1,))

    y = _solve_sde(key, drift, sde.diffusion, jnp.reshape(x0, (-1,)), 0.0, t, num_steps, solver)
    return jnp.reshape(y, shape)
