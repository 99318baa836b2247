"""Diffusion-model plumbing shared by the experiments: train, exact log-likelihood, samples.

A VP-SDE diffusion model with a ``VectorFieldMLP`` noise-prediction network, trained by
denoising score matching through ``physgen.fit``; its log-likelihood is EXACT (the
probability-flow ODE with the exact Jacobian trace, solved by diffrax), so it can be reported as
a test NLL and used for importance weights like any flow.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import physgen
from physgen.diffusion import (
    VESDE,
    VPSDE,
    DenoisingScoreMatching,
    DiffusionModel,
    diffusion_model,
)

SDES = {"vp": VPSDE, "ve": VESDE}


def train_diffusion(
    key,
    data,
    *,
    steps: int,
    batch_size: int = 512,
    quick: bool = False,
    lr: float = 2e-3,
    width: int = 128,
    depth: int = 4,
    sde: str = "vp",
    weighting: str = "likelihood",
    eps: float | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    progress: bool = True,
    return_history: bool = False,
):
    """Train a diffusion model on ``data`` of shape ``(N, dim)``; returns the model.

    Denoising score matching with ``weighting`` (``"likelihood"``: λ = g², with times drawn
    uniformly in log-SNR, the choice that targets the likelihood; ``"sigma2"``: the plain
    noise-prediction loss), Adam with a cosine-decayed learning rate. ``quick`` shrinks the
    network and the step count (for tests). ``rtol``/``atol`` are the probability-flow ODE
    tolerances used later by ``log_prob`` and ``sample``. With ``return_history`` returns
    ``(model, history)``.
    """
    data = jnp.asarray(data)
    if data.ndim != 2:
        raise ValueError(f"data must have shape (N, dim), got {data.shape}")
    if quick:
        steps, width, depth = min(steps, 200), min(width, 32), min(depth, 2)
    k_init, k_fit = jax.random.split(key)
    model = diffusion_model(
        k_init, data.shape[1], SDES[sde](), width=width, depth=depth, eps=eps, rtol=rtol, atol=atol
    )
    objective = DenoisingScoreMatching(weighting, importance_sampling=weighting == "likelihood")
    optimizer = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.01))
    model, history, _ = physgen.fit(
        k_fit,
        model,
        objective,
        steps=steps,
        optimizer=optimizer,
        data=data,
        batch_size=batch_size,
        progress=progress,
    )
    return (model, history) if return_history else model


@eqx.filter_jit
def _log_prob_chunks(model, x):
    return jax.lax.map(model.log_prob, x)


@eqx.filter_jit
def _sample_chunks(model, keys, chunk):
    return jax.lax.map(lambda k: model.sample_and_log_prob(k, (chunk,)), keys)


def diffusion_log_prob(model: DiffusionModel, x, *, chunk: int = 1024) -> np.ndarray:
    """Exact ``log q(x)`` (probability-flow ODE) of ``x`` of shape ``(N, dim)`` -> ``(N,)``.

    Evaluated in chunks of ``chunk`` points (vmapped ODE solves); the last chunk is padded."""
    x = np.asarray(x)
    n = x.shape[0]
    m = -(-n // chunk)
    pad = np.concatenate([x, np.repeat(x[:1], m * chunk - n, 0)]) if m * chunk > n else x
    out = _log_prob_chunks(model, jnp.asarray(pad).reshape((m, chunk) + x.shape[1:]))
    return np.asarray(out).reshape(-1)[:n]


def diffusion_sample_and_log_prob(
    model: DiffusionModel, key, n: int, *, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples ``(n, dim)`` from the probability-flow ODE and their exact log densities
    ``(n,)`` (one solve gives both; for importance weights ``w = p̃/q``)."""
    m = -(-n // chunk)
    x, lq = _sample_chunks(model, jax.random.split(key, m), chunk)
    x = np.asarray(x).reshape((m * chunk,) + tuple(model.shape))[:n]
    return x, np.asarray(lq).reshape(-1)[:n]


def diffusion_sample(model: DiffusionModel, key, n: int, *, chunk: int = 1024) -> np.ndarray:
    """``n`` samples ``(n, dim)`` from the probability-flow ODE."""
    return diffusion_sample_and_log_prob(model, key, n, chunk=chunk)[0]


def diffusion_trajectories(model: DiffusionModel, key, n: int, num_times: int = 40):
    """Probability-flow paths of ``n`` prior draws from ``T`` to ``eps``: ``(ts, paths)`` with
    ``ts`` ``(num_times,)`` and ``paths`` ``(num_times, n, dim)`` (noise to data)."""
    ts = jnp.linspace(model.sde.T, model.eps, num_times)
    x_T = model.sde.prior(model.shape).sample(key, (n,))
    paths = _trajectories(model, x_T, ts)
    return np.asarray(ts), np.swapaxes(np.asarray(paths), 0, 1)


@eqx.filter_jit
def _trajectories(model, x_T, ts):
    return jax.vmap(model.trajectory, in_axes=(0, None))(x_T, ts)
