r"""Observables of a scalar field on a periodic ``L₁ × L₂`` lattice, with statistical errors.

Per configuration (``jnp``, any leading batch dimensions, jittable):

- magnetisation ``M = (1/V) Σ_x φ(x)`` (the lattice average; ``V = L₁L₂``);
- the per-configuration two-point function ``C(x) = (1/V) Σ_y φ(y)φ(y+x)`` (by FFT).

Ensemble estimates (host, float64 numpy) take ``phi`` of shape ``(num_samples, L₁, L₂)``
or ``(num_chains, num_samples, L₁, L₂)`` from MCMC, or independent samples of shape
``(N, L₁, L₂)`` with log importance weights ``log_w`` of shape ``(N,)`` (self-normalised
reweighting, e.g. flow samples with ``log_w = −S − log q``), and return an
:class:`~physgen.reweighting.Estimate`:

- ``χ₂ = Σ_x G_c(x) = V(⟨M²⟩ − ⟨M⟩²)`` (:func:`susceptibility`),
- ``G_c(x) = ⟨C(x)⟩ − ⟨M⟩²`` (:func:`two_point_function`), its zero-momentum projection
  ``G(t) = Σ_{x₂} G_c(t, x₂)`` along axis 0 (:func:`zero_momentum_correlator`),
- ``m_eff(t) = arccosh[(G(t−1) + G(t+1)) / (2G(t))]`` (:func:`effective_mass`), the pole mass
  ``m_p`` averaged over a window and ``ξ = 1/m_p`` (:func:`pole_mass`),
- the Binder cumulant ``U₄ = 1 − ⟨M⁴⟩/(3⟨M²⟩²)`` (:func:`binder_cumulant`).

Errors: means of single observables (:func:`ensemble_mean`) use the Monte Carlo error of
:func:`physgen.diagnostics.mcse` (Geyer's initial monotone sequence: autocorrelation-aware,
right also for the oscillating chains of HMC) or the delta-method error of
:func:`physgen.reweighting.expectation`; functions of several means use a blocked jackknife
(:func:`jackknife`): blocks of consecutive samples within each chain, which must be long
compared with the integrated autocorrelation time. Weighted samples are checked by
:func:`physgen.reweighting.weight_diagnostics`, which warns (an
:class:`~physgen.reweighting.ImportanceWeightWarning` naming the threshold) when the Pareto
k̂ of the weights exceeds 0.7 or the ESS falls below 100 or a tenth of the samples: a lattice
flow trained too briefly gives estimates several standard errors off.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from .._base import Array
from ..diagnostics import mean_and_mcse
from ..reweighting import Estimate, expectation, weight_diagnostics

_WEIGHTS = "lattice observables: log_w"


def magnetization(phi: Array) -> Array:
    """``M = (1/V) Σ_x φ(x)``: ``(..., L₁, L₂) -> (...)``."""
    phi = jnp.asarray(phi)
    if phi.ndim < 2:
        raise ValueError(f"phi must have shape (..., L1, L2), got {phi.shape}")
    return jnp.mean(phi, axis=(-2, -1))


def two_point_per_config(phi: Array) -> Array:
    """``C(x) = (1/V) Σ_y φ(y) φ(y + x)`` (periodic, FFT): ``(..., L₁, L₂) -> (..., L₁, L₂)``."""
    phi = jnp.asarray(phi)
    if phi.ndim < 2:
        raise ValueError(f"phi must have shape (..., L1, L2), got {phi.shape}")
    f = jnp.fft.fft2(phi)
    v = phi.shape[-1] * phi.shape[-2]
    return jnp.real(jnp.fft.ifft2(jnp.conj(f) * f)).astype(phi.dtype) / v


def _samples(phi, log_w):
    """``phi`` as float64 ``(R, S, L₁, L₂)`` and ``log_w`` as ``(S,)`` or None."""
    a = np.asarray(phi, dtype=np.float64)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ValueError(
            f"phi must have shape (num_samples, L1, L2) or (num_chains, num_samples, L1, L2), "
            f"got {a.shape}"
        )
    if log_w is not None:
        lw = np.asarray(log_w, dtype=np.float64)
        if a.shape[0] != 1 or lw.shape != (a.shape[1],):
            raise ValueError(
                f"log_w must have shape (N,) matching phi of shape (N, L1, L2); got log_w "
                f"{lw.shape} and phi {np.shape(phi)}"
            )
        return a, lw
    return a, None


def jackknife(
    fn: Callable[[np.ndarray], np.ndarray], values, *, log_w=None, num_blocks: int = 20
) -> Estimate:
    r"""Blocked jackknife estimate of ``fn(⟨values⟩)`` with its standard error.

    ``values``: per-sample quantities ``(num_samples, *k)`` or ``(num_chains, num_samples,
    *k)``; ``fn`` maps their mean (shape ``k``) to the estimate. Each chain is cut into
    ``num_blocks`` blocks of consecutive samples (a remainder is dropped); leaving block
    ``b`` out gives ``θ_b``, and ``se² = (B−1)/B Σ_b (θ_b − θ̄)²`` over all ``B`` blocks.
    With ``log_w`` (independent samples, ``values`` of shape ``(N, *k)``) the means are
    self-normalised weighted means. The value is ``fn`` of the full (weighted) mean.
    """
    v = np.asarray(values, dtype=np.float64)
    if log_w is not None:
        lw = np.asarray(log_w, dtype=np.float64)
        if lw.ndim != 1 or v.shape[:1] != lw.shape:
            raise ValueError(f"log_w must have shape ({v.shape[0]},), got {lw.shape}")
        weight_diagnostics(lw, what=_WEIGHTS)
        v = v[None]
        w = np.exp(lw - np.max(lw))[None]
    else:
        if v.ndim == 1:
            v = v[None]
        w = np.ones(v.shape[:2])
    r, s = v.shape[:2]
    if not isinstance(num_blocks, (int, np.integer)) or num_blocks < 2 or s < num_blocks:
        raise ValueError(f"num_blocks must be an int in [2, num_samples = {s}], got {num_blocks!r}")
    n = (s // num_blocks) * num_blocks
    k = v.shape[2:]
    vb = v[:, :n].reshape((r * num_blocks, n // num_blocks) + k)
    wb = w[:, :n].reshape(r * num_blocks, n // num_blocks)
    wv = np.einsum("bi,bi...->b...", wb, vb)  # block sums of w·v
    ws = wb.sum(1)
    tot_wv, tot_w = wv.sum(0), ws.sum()
    full = np.asarray(fn(np.einsum("ri,ri...->...", w, v) / w.sum()))
    loo = np.stack([np.asarray(fn((tot_wv - wv[b]) / (tot_w - ws[b]))) for b in range(wv.shape[0])])
    nb = loo.shape[0]
    with np.errstate(invalid="ignore"):
        se = np.sqrt((nb - 1) / nb * np.sum((loo - loo.mean(0)) ** 2, axis=0))
    return Estimate(full, se)


def ensemble_mean(values, *, log_w=None) -> Estimate:
    """``⟨f⟩`` of a scalar per-sample observable with its error.

    ``values``: ``(num_samples,)`` or ``(num_chains, num_samples)`` from MCMC (Geyer's MC
    error, :func:`physgen.diagnostics.mean_and_mcse`), or ``(N,)`` with ``log_w`` ``(N,)``
    (self-normalised importance sampling, :func:`physgen.reweighting.expectation`; the
    weights are checked and warned about as in the module docstring).
    """
    if log_w is not None:
        weight_diagnostics(log_w, what=_WEIGHTS)
        est = expectation(jnp.asarray(log_w), jnp.asarray(values))
        return Estimate(np.asarray(est.value, np.float64), np.asarray(est.stderr, np.float64))
    m, se = mean_and_mcse(values)
    return Estimate(m, se)


def _moments(phi, log_w):
    a, lw = _samples(phi, log_w)
    m = a.mean(axis=(-2, -1))
    vals = np.stack([m, m**2, m**4], axis=-1)
    return (vals[0] if lw is not None else vals), lw, a.shape[-2] * a.shape[-1]


def susceptibility(phi, *, log_w=None, connected: bool = True, num_blocks: int = 20) -> Estimate:
    """``χ₂ = Σ_x G_c(x) = V(⟨M²⟩ − ⟨M⟩²)`` (``connected=False``: ``V⟨M²⟩``), jackknifed."""
    vals, lw, v = _moments(phi, log_w)
    c = 1.0 if connected else 0.0
    return jackknife(lambda mu: v * (mu[1] - c * mu[0] ** 2), vals, log_w=lw, num_blocks=num_blocks)


def binder_cumulant(phi, *, log_w=None, num_blocks: int = 20) -> Estimate:
    """``U₄ = 1 − ⟨M⁴⟩ / (3⟨M²⟩²)`` (2/3 deep in an ordered phase, 0 for a Gaussian)."""
    vals, lw, _ = _moments(phi, log_w)
    return jackknife(
        lambda mu: 1.0 - mu[2] / (3.0 * mu[1] ** 2), vals, log_w=lw, num_blocks=num_blocks
    )


def _two_point_values(phi, log_w):
    a, lw = _samples(phi, log_w)
    c = np.asarray(two_point_per_config(a))
    m = a.mean(axis=(-2, -1))
    l1, l2 = a.shape[-2:]
    vals = np.concatenate([c.reshape(c.shape[:2] + (l1 * l2,)), m[..., None]], axis=-1)
    return (vals[0] if lw is not None else vals), lw, (l1, l2)


def _gc(mu, shape):
    return (mu[:-1] - mu[-1] ** 2).reshape(shape)


def two_point_function(phi, *, log_w=None, num_blocks: int = 20) -> Estimate:
    """Connected ``G_c(x) = ⟨(1/V)Σ_y φ(y)φ(y+x)⟩ − ⟨M⟩²``, shape ``(L₁, L₂)``, jackknifed."""
    vals, lw, shape = _two_point_values(phi, log_w)
    return jackknife(lambda mu: _gc(mu, shape), vals, log_w=lw, num_blocks=num_blocks)


def _gt(mu, shape):
    return _gc(mu, shape).sum(axis=1)


def zero_momentum_correlator(phi, *, log_w=None, num_blocks: int = 20) -> Estimate:
    """``G(t) = Σ_{x₂} G_c(t, x₂)`` (time along axis 0), shape ``(L₁,)``, jackknifed."""
    vals, lw, shape = _two_point_values(phi, log_w)
    return jackknife(lambda mu: _gt(mu, shape), vals, log_w=lw, num_blocks=num_blocks)


def _meff(g):
    arg = (np.roll(g, 1) + np.roll(g, -1)) / (2.0 * g)
    with np.errstate(invalid="ignore"):
        return np.where(arg >= 1.0, np.arccosh(np.maximum(arg, 1.0)), np.nan)


def effective_mass(phi, *, log_w=None, num_blocks: int = 20) -> Estimate:
    """``m_eff(t) = arccosh[(G(t−1) + G(t+1)) / (2G(t))]`` (periodic in t), shape ``(L₁,)``.

    NaN where the argument is below 1 (noise, or t near L/2 on a small lattice).
    """
    vals, lw, shape = _two_point_values(phi, log_w)
    return jackknife(lambda mu: _meff(_gt(mu, shape)), vals, log_w=lw, num_blocks=num_blocks)


def pole_mass(
    phi, *, log_w=None, t_range: tuple[int, int] | None = None, num_blocks: int = 20
) -> tuple[Estimate, Estimate]:
    """Pole mass ``m_p`` = mean of ``m_eff(t)`` over ``t ∈ [t₀, t₁)`` and ``ξ = 1/m_p``.

    Default window ``[1, L₁//2)``; returns ``(m_p, ξ)``, both jackknifed.
    """
    vals, lw, shape = _two_point_values(phi, log_w)
    t0, t1 = (1, max(2, shape[0] // 2)) if t_range is None else t_range
    if not 0 <= t0 < t1 <= shape[0]:
        raise ValueError(f"t_range must satisfy 0 <= t0 < t1 <= {shape[0]}, got {(t0, t1)}")

    def mp(mu):
        return np.mean(_meff(_gt(mu, shape))[t0:t1])

    m = jackknife(mp, vals, log_w=lw, num_blocks=num_blocks)
    xi = jackknife(lambda mu: 1.0 / mp(mu), vals, log_w=lw, num_blocks=num_blocks)
    return m, xi


def lattice_summary(phi, action, *, log_w=None, num_blocks: int = 20) -> dict[str, Estimate]:
    """The standard observables of a lattice ensemble, each an :class:`Estimate`.

    ``phi``: MCMC chains ``(num_chains, num_samples, L₁, L₂)`` (or one chain) or weighted
    samples ``(N, L₁, L₂)`` with ``log_w`` ``(N,)``; ``action``: ``S`` per configuration, of
    the leading shape of ``phi``. Returns ``abs_M`` ``⟨|M|⟩``, ``M`` ``⟨M⟩``, ``action``
    ``⟨S⟩``, ``chi2``, ``binder``, ``G_t`` (``(L₁,)``), ``pole_mass`` and
    ``correlation_length``.
    """
    m = np.asarray(magnetization(phi), np.float64)
    out = {
        "abs_M": ensemble_mean(np.abs(m), log_w=log_w),
        "M": ensemble_mean(m, log_w=log_w),
        "action": ensemble_mean(np.asarray(action, np.float64), log_w=log_w),
        "chi2": susceptibility(phi, log_w=log_w, num_blocks=num_blocks),
        "binder": binder_cumulant(phi, log_w=log_w, num_blocks=num_blocks),
        "G_t": zero_momentum_correlator(phi, log_w=log_w, num_blocks=num_blocks),
    }
    out["pole_mass"], out["correlation_length"] = pole_mass(phi, log_w=log_w,
                                                            num_blocks=num_blocks)
    return out
