"""Float64 numpy quadrature for the exact references (host side, never inside ``jit``).

Composite Gauss–Legendre: the interval is cut into panels and each panel gets an ``order``-point
Gauss–Legendre rule. For the smooth, super-exponentially decaying integrands used here
(``exp(-beta E)`` with quartic or Gaussian-growth energies) this converges exponentially; with
the defaults the relative error of ``log Z`` is below ``1e-13`` (checked against
``scipy.integrate.quad`` in the tests).
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=8)
def _gauss_legendre(order: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(order)


def composite_gauss_legendre(
    breakpoints: np.ndarray, order: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of a composite rule on panels ``[b_j, b_{j+1}]``.

    ``breakpoints`` (sorted, shape ``(P+1,)``) -> ``(nodes, weights)`` each of shape ``(P*order,)``.
    """
    b = np.asarray(breakpoints, dtype=np.float64)
    t, w = _gauss_legendre(order)
    half = 0.5 * (b[1:] - b[:-1])[:, None]
    mid = 0.5 * (b[1:] + b[:-1])[:, None]
    return (mid + half * t[None, :]).ravel(), (half * w[None, :]).ravel()


def logsumexp_np(a: np.ndarray, b: np.ndarray | None = None, axis=None) -> np.ndarray:
    """``log Σ b exp(a)`` in float64 (``b >= 0``), stable for large ``|a|``."""
    a = np.asarray(a, dtype=np.float64)
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    s = np.exp(a - m) if b is None else b * np.exp(a - m)
    out = np.log(np.sum(s, axis=axis, keepdims=True)) + m
    return np.squeeze(out, axis=axis) if axis is not None else out.reshape(())


def quartic_energy(x, a4: float, a2: float, a1: float):
    """``E(x) = a4 x^4 - a2 x^2 + a1 x`` (numpy or jax arrays)."""
    x2 = x * x
    return a4 * x2 * x2 - a2 * x2 + a1 * x


def quartic_stationary_points(a4: float, a2: float, a1: float) -> np.ndarray:
    """Sorted real roots of ``E'(x) = 4 a4 x^3 - 2 a2 x + a1`` (1 or 3 of them)."""
    roots = np.roots([4.0 * a4, 0.0, -2.0 * a2, a1])
    real = np.sort(roots[np.abs(roots.imag) < 1e-9].real)
    # polish with Newton in float64
    for _ in range(5):
        real = real - (4 * a4 * real**3 - 2 * a2 * real + a1) / (12 * a4 * real**2 - 2 * a2)
    return real


@functools.lru_cache(maxsize=64)
def quartic_tables(a4: float, a2: float, a1: float, beta: float, n_panels: int = 400,
                   order: int = 20) -> dict:
    """Float64 quadrature of ``p(x) ∝ exp(-beta (a4 x^4 - a2 x^2 + a1 x))`` on the real line.

    The interval ``[-L, L]`` is chosen so that ``beta (E - E_min) > 800`` outside it (the
    neglected mass is below ``e^-800``); ``0`` is a panel boundary so that ``P(x < 0)`` is exact.
    Returns a dict with ``log_Z``, ``p_neg``, ``mean``, ``var`` and, for inverse-CDF sampling,
    ``edges`` (panel boundaries) and ``cdf`` (the exact CDF at ``edges``).
    """
    if not (a4 > 0 and beta > 0):
        raise ValueError(f"need a4 > 0 and beta > 0 for a normalisable density, got {a4=}, {beta=}")
    stat = quartic_stationary_points(a4, a2, a1)
    e_min = float(np.min(quartic_energy(stat, a4, a2, a1)))
    lim = max(1.0, float(np.max(np.abs(stat))) + 1.0)
    while beta * (quartic_energy(np.array([-lim, lim]), a4, a2, a1).min() - e_min) < 800.0:
        lim *= 1.25
    half = n_panels // 2
    edges = np.concatenate([np.linspace(-lim, 0.0, half + 1), np.linspace(0.0, lim, half + 1)[1:]])
    x, w = composite_gauss_legendre(edges, order)
    logf = -beta * (quartic_energy(x, a4, a2, a1) - e_min)
    m = np.exp(logf) * w
    z = m.sum()
    log_z = float(np.log(z) - beta * e_min)
    mean = float((m * x).sum() / z)
    var = float((m * (x - mean) ** 2).sum() / z)
    panel_mass = m.reshape(-1, order).sum(axis=1) / z
    cdf = np.concatenate([[0.0], np.cumsum(panel_mass)])
    cdf[-1] = 1.0
    p_neg = float(panel_mass[:half].sum())
    return dict(log_Z=log_z, p_neg=p_neg, mean=mean, var=var, edges=edges, cdf=cdf,
                e_min=e_min, stationary=stat)
