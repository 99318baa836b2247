"""Log importance weights, the Kish effective sample size, the Pareto k̂ of the weight tail,
and the checks every estimator runs on its weights."""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp, softmax

from .._base import Array, Scalar, lazy_import

blackjax = lazy_import("blackjax")  # imported on first use: importing it starts JAX

KHAT_THRESHOLD = 0.7  # Vehtari et al. (2024): above it the estimates are unreliable
MIN_ESS = 100  # effective samples below which error bars are unreliable
MIN_ESS_FRACTION = 0.1  # below it the flow is far from the target (see weight_diagnostics)


class ImportanceWeightWarning(UserWarning):
    """Importance weights whose estimates may be wrong by more than their error bars."""


def _check_log_w(log_w, what: str = "log_w", *, min_samples: int = 1) -> Array:
    """``log_w`` as a float array of shape ``(N,)`` with ``N >= min_samples``.

    Concrete (not traced) weights are checked for NaN and ``+inf``, whose count the error
    names; ``-inf`` is a weight of zero and allowed, but not for every sample. Under ``jit``
    the value check is left to the caller (:func:`check_log_weights`), so that a sampler or a
    loss that guards its own non-finite values keeps running.
    """
    log_w = jnp.asarray(log_w)
    if log_w.ndim != 1:
        raise ValueError(f"{what} must have shape (N,), got {log_w.shape}")
    n = log_w.shape[0]
    if n < min_samples:
        if n == 0:
            raise ValueError(f"{what} is empty: no weighted samples to estimate from")
        raise ValueError(f"{what} has {n} sample(s); an estimate with a standard error needs "
                         f"at least {min_samples}")
    if not jnp.issubdtype(log_w.dtype, jnp.floating):
        log_w = log_w.astype(jnp.result_type(float))
    if not isinstance(log_w, jax.core.Tracer):
        check_log_weights(log_w, what)
    return log_w


def check_log_weights(log_w, what: str = "log_w") -> None:
    """Raise ``ValueError`` naming how many of the log-weights ``(N,)`` are NaN or ``+inf``,
    or that all are ``-inf`` (every weight zero). On concrete values; the counts are reduced
    where the weights live, so weights sharded over several hosts are never gathered."""
    a = jnp.asarray(log_w)
    nan, pos_inf, neg_inf = (int(c) for c in _bad_counts(a))
    if nan or pos_inf:
        raise ValueError(
            f"{what} has {nan} NaN and {pos_inf} +inf of {a.size} entries: a non-finite "
            "energy or log q at those samples (every estimate would be NaN or carried by one "
            "sample); find out why, or drop them knowingly (log_w[jnp.isfinite(log_w)])")
    if a.size and neg_inf == a.size:
        raise ValueError(f"{what}: all {a.size} weights are zero (log w = -inf)")


@jax.jit
def _bad_counts(a: Array) -> Array:
    """Counts of NaN, ``+inf`` and ``-inf`` entries of ``a``, shape ``(3,)``."""
    return jnp.stack([jnp.sum(jnp.isnan(a)), jnp.sum(a == jnp.inf), jnp.sum(a == -jnp.inf)])


@eqx.filter_jit
def log_weights(log_p_unnorm: Array, log_q: Array) -> Array:
    """``log w_i = log p̃(x_i) - log q(x_i)``; both of shape ``(N,)`` -> ``(N,)``.

    ``log p̃`` is the target's unnormalised log density (``-β E``), ``log q`` the proposal's
    exact log density at its own samples.
    """
    log_p_unnorm, log_q = jnp.asarray(log_p_unnorm), jnp.asarray(log_q)
    if log_p_unnorm.shape != log_q.shape or log_q.ndim != 1:
        raise ValueError(
            f"log_p_unnorm and log_q must both have shape (N,), got {log_p_unnorm.shape} and "
            f"{log_q.shape}"
        )
    return log_p_unnorm - log_q


def normalised_weights(log_w: Array) -> Array:
    """Self-normalised weights ``w̄_i = w_i / Σ_j w_j`` (stable softmax), ``(N,)`` -> ``(N,)``."""
    return _normalised(_check_log_w(log_w))


def kish_ess(log_w: Array) -> Scalar:
    """Kish effective sample size ``(Σ w)² / Σ w²`` in ``[1, N]``, computed in log space."""
    return _kish(_check_log_w(log_w))


def ess_fraction(log_w: Array) -> Scalar:
    """``kish_ess(log_w) / N`` in ``[1/N, 1]`` (the "reweighting efficiency")."""
    log_w = _check_log_w(log_w)
    return _kish(log_w) / log_w.shape[0]


def pareto_khat(log_w: Array) -> Scalar:
    r"""Pareto ``k̂`` of the importance weights (PSIS; Vehtari, Simpson, Gelman, Yao & Gabry
    2024), ``blackjax.diagnostics.psis_weights``.

    A generalised Pareto distribution is fitted to the ``M = min(N/5, 3√N)`` largest weights;
    its shape ``k`` says how many moments the weights have (``1/k``): ``k̂ < 0.5`` finite
    variance, the error bars hold; ``0.5-0.7`` slow convergence; ``> 0.7`` the estimates and
    their error bars are unreliable. ``(N,)`` -> scalar; ``nan`` for ``N < 25`` (a tail of
    fewer than 5 weights cannot be fitted); ``inf`` where the fit fails because the tail's
    weights underflow next to the largest (one weight carries the sum).
    """
    return _khat(_check_log_w(log_w))


@eqx.filter_jit
def _normalised(log_w):
    return softmax(log_w)


@eqx.filter_jit
def _kish(log_w):
    return jnp.exp(2.0 * logsumexp(log_w) - logsumexp(2.0 * log_w))


@eqx.filter_jit
def _khat(log_w):
    if log_w.shape[0] // 5 < 5:
        return jnp.full((), jnp.nan, log_w.dtype)
    _, k = blackjax.diagnostics.psis_weights(log_w)
    # the fit fails (nan) when the tail's weights underflow next to the largest one: a tail
    # so heavy that one weight carries the sum, reported as k̂ = inf
    return jnp.where(jnp.isnan(k), jnp.inf, k).astype(log_w.dtype)


class WeightDiagnostics(NamedTuple):
    """What the weights say about the estimates made from them (host floats).

    ``ess`` (Kish) and ``ess_fraction = ess/N``; ``pareto_khat`` (``nan`` for ``N < 25``);
    the thresholds applied; ``warnings``: one sentence per failed check (empty when the
    weights pass).
    """

    num_samples: int
    ess: float
    ess_fraction: float
    pareto_khat: float
    khat_threshold: float
    min_ess: float
    min_ess_fraction: float
    warnings: tuple[str, ...]

    @property
    def reliable(self) -> bool:
        """No check failed."""
        return not self.warnings

    def as_dict(self) -> dict:
        """JSON-ready: every field, ``warnings`` as a list."""
        d = self._asdict()
        d["warnings"] = list(self.warnings)
        return d


def weight_diagnostics(log_w: Array, *, khat_threshold: float = KHAT_THRESHOLD,
                       min_ess: float = MIN_ESS, min_ess_fraction: float = MIN_ESS_FRACTION,
                       warn: bool = True, what: str = "importance weights") -> WeightDiagnostics:
    r"""Kish ESS and Pareto ``k̂`` of ``log_w`` ``(N,)``, with an
    :class:`ImportanceWeightWarning` (``warn=True``) for each check that fails:

    - ``k̂ > khat_threshold`` (0.7, Vehtari et al. 2024): the weights' tail is so heavy that
      the estimates and their standard errors are unreliable;
    - ``ESS < min_ess`` (100): too few effective samples for a normal error bar;
    - ``ESS/N < min_ess_fraction`` (0.1): the proposal is far from the target. The ESS is
      then itself estimated from the few weights that happened to be drawn and is typically
      too high: a lattice flow trained too briefly shows ``ESS/N`` of 0.01-0.17 with ``k̂``
      0.5-0.9 and estimates 5-10 standard errors off. A fraction this low asks for more
      training or a check against independent draws of the target
      (:func:`unsampled_mass`).

    The thresholds are named in the warning. Host-side; ``what`` names the weights.
    """
    log_w = _check_log_w(log_w, "weight_diagnostics: log_w")
    n = int(log_w.shape[0])
    ess = float(_kish(log_w))
    khat = float(_khat(log_w))
    notes = []
    if math.isnan(khat):
        notes.append(f"{what}: Pareto k-hat needs N >= 25 weights, got {n}")
    elif khat > khat_threshold:
        notes.append(f"{what}: Pareto k-hat = {khat:.2f} > {khat_threshold:g}: the weights' "
                     "tail is too heavy, estimates and their error bars are unreliable")
    if ess < min_ess:
        notes.append(f"{what}: ESS = {ess:.1f} < {min_ess:g} effective samples: too few for "
                     "a normal error bar")
    if ess / n < min_ess_fraction:
        notes.append(f"{what}: ESS/N = {ess / n:.3f} < {min_ess_fraction:g}: the proposal is "
                     "far from the target and the ESS and error bars from its samples are "
                     "themselves unreliable (train longer, or compare with independent draws "
                     "of the target)")
    if warn:
        for note in notes:
            warnings.warn(note, ImportanceWeightWarning, stacklevel=2)
    return WeightDiagnostics(n, ess, ess / n, khat, float(khat_threshold), float(min_ess),
                             float(min_ess_fraction), tuple(notes))
