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
    draw costs no energy evaluation, so the strata's masses under ``q`` are counted on a pool
    of free draws and the energy budget ``n`` is spent only on the weights ``w = p̃/q`` of
    pool members, ``n_S = n/K`` per stratum (taken in draw order, i.i.d. ``q|S`` given the
    counts). ``Z_S = q_S E_{q|S}[w]``, so a rare state gets as many weighted draws as a common
    one, where plain reweighting needs ``~1/(p_S se²)`` draws
    (:func:`physgen.reweighting.stratified_estimate` turns the draws into estimates).

    The pool is not a cap: it starts at ``pool_size`` draws and grows by ``batch_size``
    draws until every state holds its share ``n_S`` (the rest stratum takes what it holds,
    its remainder going to the states), or until it would exceed ``max_pool_size``. With
    ``M`` draws the error of ``ΔF_{B−A} = −log(Ẑ_B/Ẑ_A)`` is

    ``se² = Σ_{S∈{A,B}} Var_{q|S}(w)/(n_S w̄_S²) + (1/q_A + 1/q_B)/M``

    (the sum from the weights, the last term from the multinomial counts), and since the
    pool holds ``M q_S ≥ n_S`` members of each state, both terms fall as ``1/n``. A pool that
    stops at ``max_pool_size`` gives a short state fewer weighted draws and its error stops
    falling: ``info["short"]`` then names each short stratum and how many members it lacked
    (``{stratum: shortfall}``, empty when none).

    ``sample`` raises :class:`BudgetTooSmall` when a state gets fewer than
    ``min_per_stratum`` weighted draws. Flow evaluations: the pool plus one ``log q`` per
    weighted draw; the pool is drawn in batches of at most ``batch_size``. ``info`` also
    holds ``pool`` (``M``), ``pool_counts`` and ``weighted_counts`` (``n_S``).
    """

    flow: AbstractExactDensity
    states: tuple[Callable[[Array], Array], ...]
    pool_size: int
    max_pool_size: int
    min_per_stratum: int
    batch_size: int

    def __init__(self, flow: AbstractExactDensity, states: Sequence[Callable[[Array], Array]],
                 *, pool_size: int = 1 << 20, max_pool_size: int = 1 << 26,
                 min_per_stratum: int = 32, batch_size: int = 1 << 16):
        states = tuple(states)
        if not states or not all(callable(s) for s in states):
            raise TypeError("states must be a non-empty sequence of indicator functions")
        self.flow = _check_flow(flow, "StratifiedImportanceSampler")
        self.states = states
        self.pool_size = _check_positive("pool_size", pool_size)
        self.max_pool_size = _check_positive("max_pool_size", max_pool_size)
        if self.max_pool_size < self.pool_size:
            raise ValueError(f"max_pool_size ({max_pool_size:,}) must be >= pool_size "
                             f"({pool_size:,})")
        self.min_per_stratum = _check_positive("min_per_stratum", min_per_stratum)
        self.batch_size = _check_positive("batch_size", batch_size)

    def sample(self, key: Key, target: AbstractTarget, num_energy_evals: int) -> WeightedSamples:
        """Pool, stratum counts, and weighted draws for ``num_energy_evals`` evaluations."""
        budget = _check_budget(num_energy_evals)
        _check_shapes(self.flow, target)
        num_strata = len(self.states) + 1
        is_state = np.arange(num_strata) < len(self.states)
        batches = max(1, math.ceil(self.pool_size / self.batch_size))
        first = jax.random.split(key, batches)
        # only the first members of each stratum can be weighted (at most the budget each),
        # so the rest of a large pool is counted and dropped
        kept = [[] for _ in range(num_strata)]
        num_kept = np.zeros(num_strata, dtype=int)
        counts = np.zeros(num_strata, dtype=int)
        drawn, i = 0, 0
        while True:
            size = self.pool_size // batches if i < batches else self.batch_size
            k = first[i] if i < batches else jax.random.fold_in(key, i)
            x, lab = _draw_and_sort(self.flow, self.states, k, size)
            x, lab = np.asarray(x), np.asarray(lab)
            for s in range(num_strata):
                members = np.flatnonzero(lab == s)
                counts[s] += members.size
                room = min(budget - num_kept[s], members.size)
                if room > 0:
                    kept[s].append(x[members[:room]])
                    num_kept[s] += room
            drawn, i = drawn + size, i + 1
            if i < batches:
                continue
            short = _shortfall(counts, is_state, budget)
            if not short.any() or drawn + self.batch_size > self.max_pool_size:
                break
        take = _equal_shares(counts, budget)
        if np.any(take[is_state] < self.min_per_stratum):
            raise BudgetTooSmall(
                f"budget {budget:,} gives {take[is_state].tolist()} weighted samples in the "
                f"states; need {self.min_per_stratum} each (pool counts "
                f"{counts[is_state].tolist()} of {drawn:,}, max_pool_size "
                f"{self.max_pool_size:,})"
            )
        xw = jnp.asarray(np.concatenate(
            [np.concatenate(kept[s])[: take[s]] for s in range(num_strata) if take[s] > 0]))
        strata = np.repeat(np.arange(num_strata), take)
        log_w = _weigh(self.flow, target, xw)
        n = int(take.sum())
        info = {"pool": drawn, "pool_counts": counts.tolist(), "weighted_counts": take.tolist(),
                "max_pool_size": self.max_pool_size,
                "short": {int(s): int(short[s]) for s in np.flatnonzero(short)}}
        return WeightedSamples(xw, log_w, strata, counts, n, drawn + n, info)


def _shortfall(counts: np.ndarray, is_state: np.ndarray, budget: int) -> np.ndarray:
    """Members each state lacks for the share it would get from an unlimited pool (the
    rest stratum keeps the share its count allows)."""
    want = _equal_shares(np.where(is_state, budget, counts), budget)
    return np.where(is_state, np.maximum(want - counts, 0), 0)


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
