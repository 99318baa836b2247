"""Importance samplers over a flow: plain reweighting and stratified sampling over states."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._base import AbstractExactDensity, Array, Key, require_density
from ..targets._base import AbstractTarget
from ._base import AbstractImportanceSampler, BudgetTooSmall, WeightedSamples


def _check_flow(flow, who: str) -> AbstractExactDensity:
    require_density(flow, f"{who} (the weights need q(x))")
    if flow.cond_shape is not None:
        raise ValueError(f"{who} needs an unconditional flow")
    return flow


def _check_shapes(flow, target: AbstractTarget) -> None:
    if tuple(flow.shape) != tuple(target.event_shape):
        raise ValueError(
            f"flow has shape {tuple(flow.shape)} but the target's event_shape is "
            f"{tuple(target.event_shape)}"
        )


def _check_budget(num_energy_evals) -> int:
    if not isinstance(num_energy_evals, (int, np.integer)) or num_energy_evals < 1:
        raise ValueError(f"num_energy_evals must be an integer >= 1, got {num_energy_evals!r}")
    return int(num_energy_evals)


def _check_positive(name: str, value) -> int:
    if int(value) < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


@eqx.filter_jit
def _draw_and_weigh(flow, target, key, n: int):
    x, log_q = flow.sample_and_log_prob(key, (n,))
    x = x.astype(jnp.result_type(float))
    return x, jax.vmap(target.log_density)(x) - log_q


@eqx.filter_jit
def _draw_and_sort(flow, states, key, n: int):
    x = flow.sample(key, (n,)).astype(jnp.result_type(float))
    label = len(states)  # the rest
    for i in reversed(range(len(states))):
        label = jnp.where(states[i](x), i, label)
    return x, label


@eqx.filter_jit
def _weigh(flow, target, x):
    return jax.vmap(target.log_density)(x) - flow.log_prob(x)


class ImportanceSampler(AbstractImportanceSampler):
    r"""Self-normalised importance sampling with a flow ``q``: ``x_i ~ q`` i.i.d.,
    ``log w_i = log p̃(x_i) - log q(x_i)`` (reweighting a Boltzmann generator).

    ``sample(key, target, n)`` draws ``n`` samples in equal batches of at most
    ``batch_size`` (so up to ``batches - 1`` fewer than ``n``, for one compiled shape), one
    energy and one flow evaluation each. Estimators: :mod:`physgen.reweighting`.
    """

    flow: AbstractExactDensity
    batch_size: int

    def __init__(self, flow: AbstractExactDensity, *, batch_size: int = 1 << 16):
        self.flow = _check_flow(flow, "ImportanceSampler")
        self.batch_size = _check_positive("batch_size", batch_size)

    def sample(self, key: Key, target: AbstractTarget, num_energy_evals: int) -> WeightedSamples:
        """Weighted flow draws for a budget of ``num_energy_evals`` energy evaluations."""
        budget = _check_budget(num_energy_evals)
        _check_shapes(self.flow, target)
        count = max(1, math.ceil(budget / self.batch_size))
        size = budget // count
        xs, lws = [], []
        for k in jax.random.split(key, count):
            x, lw = _draw_and_weigh(self.flow, target, k, size)
            xs.append(x)
            lws.append(lw)
        x, log_w = (jnp.concatenate(xs), jnp.concatenate(lws)) if count > 1 else (xs[0], lws[0])
        n = count * size
        return WeightedSamples(x, log_w, None, None, n, n)


class StratifiedImportanceSampler(AbstractImportanceSampler):
    r"""Stratified importance sampling over states with a flow ``q``.

    ``states`` are indicator functions ``x (*batch, *event) -> bool (*batch)`` of disjoint
    states; the strata are these states in order and the rest (index ``len(states)``). A flow
    draw costs no energy evaluation, so the strata's masses under ``q`` are counted on
    ``pool_size`` free draws; the energy budget is spent only on the weights ``w = p̃/q`` of
    equally many pool members per stratum (taken in draw order, i.i.d. ``q|S`` given the
    counts; a stratum with fewer members than its share gives the rest to the others).
    ``Z_S = q_S E_{q|S}[w]``, so a rare state gets as many weighted draws as a common one,
    where plain reweighting needs ``~1/(p_S se²)`` draws
    (:func:`physgen.reweighting.stratified_estimate` turns the draws into estimates).

    ``sample`` raises :class:`BudgetTooSmall` when a state gets fewer than
    ``min_per_stratum`` weighted draws. Flow evaluations: the pool plus one ``log q`` per
    weighted draw; the pool is drawn in batches of at most ``batch_size``.
    """

    flow: AbstractExactDensity
    states: tuple[Callable[[Array], Array], ...]
    pool_size: int
    min_per_stratum: int
    batch_size: int

    def __init__(self, flow: AbstractExactDensity, states: Sequence[Callable[[Array], Array]],
                 *, pool_size: int = 1 << 20, min_per_stratum: int = 32,
                 batch_size: int = 1 << 16):
        states = tuple(states)
        if not states or not all(callable(s) for s in states):
            raise TypeError("states must be a non-empty sequence of indicator functions")
        self.flow = _check_flow(flow, "StratifiedImportanceSampler")
        self.states = states
        self.pool_size = _check_positive("pool_size", pool_size)
        self.min_per_stratum = _check_positive("min_per_stratum", min_per_stratum)
        self.batch_size = _check_positive("batch_size", batch_size)

    def sample(self, key: Key, target: AbstractTarget, num_energy_evals: int) -> WeightedSamples:
        """Pool, stratum counts, and weighted draws for ``num_energy_evals`` evaluations."""
        budget = _check_budget(num_energy_evals)
        _check_shapes(self.flow, target)
        num_strata = len(self.states) + 1
        batches = max(1, math.ceil(self.pool_size / self.batch_size))
        xs, labels = [], []
        for k in jax.random.split(key, batches):
            x, lab = _draw_and_sort(self.flow, self.states, k, self.pool_size // batches)
            xs.append(np.asarray(x))
            labels.append(np.asarray(lab))
        x, lab = np.concatenate(xs), np.concatenate(labels)
        counts = np.bincount(lab, minlength=num_strata)
        take = _equal_shares(counts, budget)
        if np.any(take[:-1] < self.min_per_stratum):
            raise BudgetTooSmall(
                f"budget {budget:,} gives {take[:-1].tolist()} weighted samples in the states; "
                f"need {self.min_per_stratum} each (pool counts {counts[:-1].tolist()} of "
                f"{x.shape[0]:,})"
            )
        idx = np.concatenate([np.flatnonzero(lab == k)[: take[k]] for k in range(num_strata)])
        xw = jnp.asarray(x[idx])
        log_w = _weigh(self.flow, target, xw)
        n = int(take.sum())
        return WeightedSamples(xw, log_w, lab[idx], counts, n, int(x.shape[0]) + n)


def _equal_shares(counts: np.ndarray, budget: int) -> np.ndarray:
    """Split ``budget`` equally over the non-empty strata, capped by their pool counts."""
    take = np.zeros(counts.shape[0], dtype=int)
    left, open_ = budget, [k for k in range(counts.shape[0]) if counts[k] > 0]
    while open_ and left > 0:
        share = max(1, left // len(open_))
        for k in list(open_):
            add = min(share, counts[k] - take[k], left)
            take[k] += add
            left -= add
            if take[k] == counts[k]:
                open_.remove(k)
            if left == 0:
                break
    return take
