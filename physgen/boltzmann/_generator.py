"""A Boltzmann generator: a flow paired with the target it is meant to sample."""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import reweighting as rw
from .._base import AbstractExactDensity, Array, Estimate, Key, require_density
from ..bijections import RationalQuadraticSpline, SplineTransformer
from ..parallel._mesh import batch_sharding, check_mesh
from ..samplers import HMC, run_mcmc
from ..targets._base import AbstractTarget


class ReweightingSummary(NamedTuple):
    """What :meth:`BoltzmannGenerator.summary` found (host values).

    ``log_Z``: importance-sampling estimate; ``weights``: Kish ESS and Pareto k̂
    (:class:`~physgen.reweighting.WeightDiagnostics`); ``unsampled_mass``: the target mass
    beyond every sampled weight, from independent target draws (``None`` without them);
    ``spline_intervals``: the half-widths ``B`` of the model's splines (identity outside
    ``[-B, B]``) and ``outside_interval``: the fraction of target draws with a coordinate
    outside ``[-min B, min B]`` (``None`` without splines or draws); ``warnings``: every
    failed check, one sentence each.
    """

    num_samples: int
    log_Z: Estimate
    weights: rw.WeightDiagnostics
    unsampled_mass: Estimate | None
    num_reference_draws: int
    spline_intervals: tuple[float, ...]
    outside_interval: float | None
    warnings: tuple[str, ...]

    def as_dict(self) -> dict:
        """JSON-ready: estimates as ``{value, stderr}``, every warning as a sentence."""
        def est(e):
            return None if e is None else {"value": float(e.value), "stderr": float(e.stderr)}

        return {"num_samples": self.num_samples, "log_Z": est(self.log_Z),
                **{k: v for k, v in self.weights.as_dict().items() if k != "warnings"},
                "unsampled_mass": est(self.unsampled_mass),
                "num_reference_draws": self.num_reference_draws,
                "spline_intervals": list(self.spline_intervals),
                "reference_fraction_outside_spline_interval": self.outside_interval,
                "warnings": list(self.warnings)}


def spline_intervals(model) -> tuple[float, ...]:
    """The distinct half-widths ``B`` of the rational-quadratic splines in ``model``, sorted."""
    def is_spline(m):
        return isinstance(m, (SplineTransformer, RationalQuadraticSpline))

    leaves = jax.tree_util.tree_leaves(model, is_leaf=is_spline)
    return tuple(sorted({float(m.interval) for m in leaves if is_spline(m)}))


class BoltzmannGenerator(eqx.Module):
    """A model ``q`` (any distribution with exact ``log_prob``, e.g. a flow) for the Boltzmann
    distribution ``p(x) = exp(-βE(x)) / Z`` of ``target`` (Noé et al. 2019).

    ``sample_and_log_weights(key, n)`` returns ``x ~ q`` of shape ``(n, *event_shape)`` and the
    log importance weights ``log w = -βE(x) - log q(x)``, shape ``(n,)``, which make any
    estimate exact in the limit (see :mod:`physgen.reweighting`); :meth:`summary` says how
    far to trust them. The shapes of ``model`` and ``target`` are checked at construction.
    With ``mesh=`` the samples are drawn, pushed through the flow and weighted on all the
    mesh's devices, split along the sample axis; the values are those of one device.
    """

    model: AbstractExactDensity
    target: AbstractTarget

    def __init__(self, model: AbstractExactDensity, target: AbstractTarget):
        self.model = require_density(model, "BoltzmannGenerator (importance weights p/q)")
        self.target = target

    def __check_init__(self):
        if tuple(self.model.shape) != tuple(self.target.event_shape):
            raise ValueError(
                f"the model samples shape {tuple(self.model.shape)} but the target "
                f"{type(self.target).__name__} has event_shape {tuple(self.target.event_shape)}"
            )

    def sample_and_log_weights(
        self, key: Key, num_samples: int, *, batch_size: int | None = None,
        mesh: jax.sharding.Mesh | None = None,
    ) -> tuple[Array, Array]:
        """``x ~ q``, ``(num_samples, *event_shape)``, and ``log w = -βE(x) - log q(x)``,
        ``(num_samples,)``; ``batch_size`` samples at a time (same values, memory for one
        batch), split over ``mesh`` (``num_samples`` divisible by its size)."""
        if mesh is None:
            return _sample_and_log_weights(self, key, num_samples, batch_size, None)
        check_mesh(mesh, num_samples, "num_samples")
        return _sharded_sample_and_log_weights(self, key, num_samples, batch_size, mesh)

    def reference_log_weights(self, x: Array) -> Array:
        """``log w = -βE(x) - log q(x)`` at given configurations ``(*batch, *event_shape)``
        (e.g. draws of the target) -> ``(*batch)``."""
        return _log_weights_at(self, jnp.asarray(x))

    def summary(
        self, key: Key, num_samples: int, *, reference: Array | str | None = "mcmc",
        num_chains: int = 16, num_reference_samples: int = 256, num_warmup: int = 200,
        batch_size: int | None = None, mesh: jax.sharding.Mesh | None = None,
        khat_threshold: float = rw.KHAT_THRESHOLD, min_ess: float = rw.MIN_ESS,
        min_ess_fraction: float = rw.MIN_ESS_FRACTION, warn: bool = True,
    ) -> ReweightingSummary:
        r"""``log Z``, Kish ESS and Pareto k̂ of ``num_samples`` weighted samples, and whether
        the target has mass where the model has none.

        The weights are checked by :func:`~physgen.reweighting.weight_diagnostics`. The
        model's own samples cannot show mass it never puts there (a spline is the identity
        outside ``[-B, B]``, so a flow of splines has almost none beyond), so ``reference``
        draws of the target by another route are weighted too: ``"mcmc"`` (default) runs
        ``num_chains`` HMC chains (10 leapfrog steps, adapted in ``num_warmup`` steps) from
        model samples for ``num_reference_samples`` draws each, so they walk out of the
        model's support where the target continues; an array of target draws
        ``(M, *event_shape)`` (data, exact samples) or ``(chains, S, *event_shape)`` is used
        as given; ``None`` skips the check. The check warns when the target mass beyond every
        sampled weight (:func:`~physgen.reweighting.unsampled_mass`) exceeds ``1/√ESS``,
        the relative error the estimates claim, and names the spline interval the draws
        fall outside. Each failed check is an
        :class:`~physgen.reweighting.ImportanceWeightWarning` (``warn=True``) and a
        sentence in ``warnings``. The reference costs ``num_chains·(num_warmup +
        num_reference_samples)·10`` energy and gradient evaluations.
        """
        k_sample, k_ref = jax.random.split(key)
        if mesh is None:
            x, log_w = _jit_sample_and_log_weights(self, k_sample, num_samples, batch_size,
                                                   None)
        else:
            x, log_w = self.sample_and_log_weights(k_sample, num_samples,
                                                   batch_size=batch_size, mesh=mesh)
        weights = rw.weight_diagnostics(log_w, khat_threshold=khat_threshold,
                                        min_ess=min_ess, min_ess_fraction=min_ess_fraction,
                                        warn=False, what="BoltzmannGenerator weights")
        notes = list(weights.warnings)
        log_z = rw.log_Z(log_w)
        log_z = Estimate(float(log_z.value), float(log_z.stderr))
        intervals = spline_intervals(self.model)
        x_ref = self._reference(k_ref, reference, x, num_chains, num_reference_samples,
                                num_warmup, mesh)
        missed, outside, m = None, None, 0
        if x_ref is not None:
            event = tuple(self.target.event_shape)
            lead = x_ref.shape[: x_ref.ndim - len(event)]
            m = math.prod(lead)
            lw_ref = np.asarray(self.reference_log_weights(x_ref), np.float64).reshape(lead)
            missed = rw.unsampled_mass(log_w, lw_ref)
            missed = Estimate(float(missed.value), float(missed.stderr))
            flat = np.abs(np.asarray(x_ref, np.float64).reshape(m, -1))
            if intervals:
                outside = float(np.mean(np.any(flat > intervals[0], axis=1)))
            limit = 1.0 / math.sqrt(weights.ess)
            if float(missed.value) > limit:
                where = ""
                if intervals and outside:
                    b = intervals[0]
                    where = (f"; {outside:.2%} of them have a coordinate outside [-{b:g}, {b:g}]"
                             f", where the model's splines (interval={b:g}) are the identity and "
                             "it has almost no mass: widen the interval or standardise the "
                             "coordinates to the target's scale")
                notes.append(
                    f"BoltzmannGenerator: {float(missed.value):.2%} ± "
                    f"{float(missed.stderr):.2%} of {m} target draws lie beyond every sampled "
                    f"weight (more than 1/sqrt(ESS) = {limit:.2%}): the model misses target mass"
                    f" and the estimates can be off by more than their error bars{where}")
        if warn:
            for note in notes:
                warnings.warn(note, rw.ImportanceWeightWarning, stacklevel=3)
        return ReweightingSummary(int(num_samples), log_z, weights, missed, m, intervals,
                                  outside, tuple(notes))

    def _reference(self, key, reference, x, num_chains, num_samples, num_warmup, mesh):
        if reference is None:
            return None
        if isinstance(reference, str):
            if reference != "mcmc":
                raise ValueError(f"reference must be 'mcmc', an array of target draws or None, "
                                 f"got {reference!r}")
            if num_chains > x.shape[0]:
                raise ValueError(f"summary: num_chains={num_chains} starts need as many model "
                                 f"samples, got num_samples={x.shape[0]}")
            res = run_mcmc(key, HMC(0.1, 10), self.target, num_chains=num_chains,
                           num_samples=num_samples, num_warmup=num_warmup,
                           initial_position=x[:num_chains], mesh=mesh)
            return res.samples
        ref = jnp.asarray(reference)
        event = tuple(self.target.event_shape)
        if ref.ndim not in (len(event) + 1, len(event) + 2) or ref.shape[ref.ndim - len(event):] \
                != event:
            raise ValueError(f"reference must have shape (M, *{event}) or (chains, S, *{event}),"
                             f" got {ref.shape}")
        return ref


@eqx.filter_jit
def _log_weights_at(bg: BoltzmannGenerator, x):
    event = tuple(bg.target.event_shape)
    lead = x.shape[: x.ndim - len(event)]
    flat = x.reshape((-1,) + event)
    log_w = jax.vmap(bg.target.log_density)(flat) - bg.model.log_prob(flat)
    return log_w.reshape(lead)


def _sample_and_log_weights(bg: BoltzmannGenerator, key, num_samples, batch_size, sharding):
    x, log_q = bg.model.sample_and_log_prob(key, (num_samples,), batch_size=batch_size)
    if sharding is not None:
        x = jax.lax.with_sharding_constraint(x, sharding)
        log_q = jax.lax.with_sharding_constraint(log_q, sharding)
    if batch_size is None:
        log_p = jax.vmap(bg.target.log_density)(x)
    else:
        log_p = jax.lax.map(bg.target.log_density, x, batch_size=batch_size)
    log_w = log_p - log_q
    if sharding is not None:
        log_w = jax.lax.with_sharding_constraint(log_w, sharding)
    return x, log_w


_jit_sample_and_log_weights = eqx.filter_jit(_sample_and_log_weights)


@eqx.filter_jit
def _sharded_sample_and_log_weights(bg, key, num_samples, batch_size, mesh):
    return _sample_and_log_weights(bg, key, num_samples, batch_size, batch_sharding(mesh))
