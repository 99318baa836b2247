"""``run_mcmc``: many chains of any sampler, warm-up and sampling in ``lax.scan``."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._base import Array, Key
from ..parallel._mesh import chain_sharding, replicate, shard_batch, to_host
from ..targets._base import AbstractTarget
from ._base import AbstractParticleSampler, AbstractSampler, EvalCounts, _zero_counts


class MCMCResult(eqx.Module):
    """Output of :func:`run_mcmc`.

    - ``samples``: ``(num_chains, num_samples, *event_shape)``; for a particle sampler
      (:class:`TemperedSMC`) the equally weighted final particles of ``num_chains``
      independent runs, for :class:`ParallelTempering` the ``β = 1`` replica.
    - ``log_density``: ``log p = -βE`` of each sample, ``(num_chains, num_samples)``.
    - ``acceptance_rate``: mean Metropolis acceptance probability per chain over the
      sampling phase, ``(num_chains,)`` (SMC: mean over all inner moves of the run).
    - ``num_energy_evals``, ``num_grad_evals``, ``num_flow_evals``: exact totals over all
      chains for the whole run (init, warm-up and sampling). Energy evaluations include
      those made together with a gradient.
    - ``final_state``: the sampler state batched over chains (with adapted parameters); pass
      it as ``run_mcmc(..., initial_state=result.final_state)`` to continue.
    - ``extras``: ``sampler.extras(final_state)``: ``step_size``/``scale`` per chain (kernel
      samplers), ``swap_acceptance`` per adjacent pair (parallel tempering), ``log_Z`` and
      ``num_tempering_steps`` per run (SMC).
    """

    samples: Array
    log_density: Array
    acceptance_rate: Array
    num_energy_evals: int
    num_grad_evals: int
    num_flow_evals: int
    final_state: Any
    extras: dict


def _total(x) -> int:
    return int(np.sum(to_host(x).astype(np.int64)))


def _constrain_chains(tree, mesh):
    """Keep the chain (leading) axis of every output split over ``mesh``."""
    if mesh is None:
        return tree
    sharding = chain_sharding(mesh)
    return jax.tree_util.tree_map(
        lambda a: (
            jax.lax.with_sharding_constraint(a, sharding) if eqx.is_array(a) and a.ndim > 0 else a
        ),
        tree,
    )


@eqx.filter_jit
def _init_chains(sampler, target, keys, positions, mesh=None):
    return _constrain_chains(
        jax.vmap(lambda k, x: sampler.init(k, target, x))(keys, positions), mesh
    )


@eqx.filter_jit
def _run_chains(
    sampler, target, states, warm_keys, sample_keys, num_warmup, num_samples, thinning, mesh=None
):
    def one_chain(state, kw, ks):
        state, warm_counts = sampler.warmup(kw, target, state, num_warmup)

        def inner(carry, k):
            st, counts, acc = carry
            st, info = sampler.step(k, target, st)
            return (st, counts + info.counts, acc + info.acceptance_rate), None

        def outer(carry, k):
            carry, _ = jax.lax.scan(inner, carry, jax.random.split(k, thinning))
            st = carry[0]
            return carry, (st.position, st.log_density)

        acc0 = jnp.zeros((), jnp.result_type(float))
        (state, counts, acc), (xs, lds) = jax.lax.scan(
            outer, (state, _zero_counts(), acc0), jax.random.split(ks, num_samples)
        )
        return state, xs, lds, acc / (num_samples * thinning), warm_counts + counts

    return _constrain_chains(jax.vmap(one_chain)(states, warm_keys, sample_keys), mesh)


@eqx.filter_jit
def _run_smc(sampler, target, keys, num_particles, mesh=None):
    return _constrain_chains(jax.vmap(lambda k: sampler.run(k, target, num_particles))(keys), mesh)


def _check_int(name, value, minimum):
    if not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def run_mcmc(
    key: Key,
    sampler: AbstractSampler,
    target: AbstractTarget,
    *,
    num_chains: int,
    num_samples: int,
    num_warmup: int = 500,
    thinning: int = 1,
    initial_position: Array | None = None,
    initial_state: Any = None,
    mesh: jax.sharding.Mesh | None = None,
) -> MCMCResult:
    """Run ``num_chains`` independent chains of ``sampler`` on ``target``.

    Chains are ``vmap``-ed; warm-up (``sampler.warmup``, with per-chain adaptation) and
    sampling run inside ``lax.scan`` in one compiled function, ``thinning`` transitions per
    recorded sample. ``initial_position`` has shape ``(num_chains, *event_shape)``; default:
    ``sampler.initial_positions`` (``N(0, I)`` draws; flow draws for
    :class:`FlowIndependenceMetropolis`). Or continue from ``initial_state`` (a previous
    ``final_state``; no init cost). For a particle sampler (:class:`TemperedSMC`) each chain
    is one independent run with ``num_samples`` particles (``num_warmup``, ``thinning`` and
    initial positions do not apply).

    With ``mesh`` (:func:`physgen.parallel.make_mesh`) the chains are split over its devices,
    ``num_chains / mesh.size`` whole chains each (``num_chains`` must be divisible by the
    number of devices); the sampler and target are replicated. Chain ``i`` uses the ``i``-th
    of ``jax.random.split(key, num_chains)`` whatever the number of devices, so chains with
    a fixed step are those of one device, sample for sample. With warm-up adaptation they
    are not: XLA compiles the split program with slightly different arithmetic (``a / b`` as
    ``a · (1/b)`` on one device), which the adaptation amplifies into different, equally
    valid chains (in float64 they agree sample for sample over short runs). The result's
    arrays stay sharded.

    Raises ``ValueError`` for a wrongly shaped ``initial_position`` and for chains whose
    initial log density is not finite. Wall time is measured by the caller (call twice to
    exclude compilation; the compiled function is cached).
    """
    _check_int("num_chains", num_chains, 1)
    _check_int("num_samples", num_samples, 1)
    _check_int("num_warmup", num_warmup, 0)
    _check_int("thinning", thinning, 1)
    if not isinstance(sampler, AbstractSampler):
        raise TypeError(f"sampler must be an AbstractSampler, got {type(sampler).__name__}")
    if not isinstance(target, AbstractTarget):
        raise TypeError(f"target must be an AbstractTarget, got {type(target).__name__}")
    event_shape = tuple(target.event_shape)
    if mesh is not None:
        if not isinstance(mesh, jax.sharding.Mesh):
            raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
        if num_chains % mesh.size:
            raise ValueError(
                f"num_chains={num_chains} cannot be split over the {mesh.size} devices of "
                f"the mesh: use a multiple of {mesh.size}"
            )
        sampler, target = replicate((sampler, target), mesh)

    def chains(tree):
        return tree if mesh is None else shard_batch(tree, mesh)

    if isinstance(sampler, AbstractParticleSampler):
        if initial_position is not None or initial_state is not None:
            raise ValueError(
                f"{type(sampler).__name__} starts every run from its own population: give no "
                "initial position or state"
            )
        keys = chains(jax.random.split(key, num_chains))
        x, ld, state, counts, acc = _run_smc(sampler, target, keys, num_samples, mesh)
        return MCMCResult(
            x,
            ld,
            acc,
            _total(counts.energy),
            _total(counts.grad),
            _total(counts.flow),
            state,
            sampler.extras(state),
        )

    k_init, k_warm, k_sample = jax.random.split(key, 3)
    if initial_state is not None:
        if initial_position is not None:
            raise ValueError("give initial_position or initial_state, not both")
        states = initial_state
        got = tuple(jnp.shape(states.position))
        if got != (num_chains,) + event_shape:
            raise ValueError(
                f"initial_state holds positions of shape {got}, expected "
                f"{(num_chains,) + event_shape} = (num_chains, *event_shape)"
            )
        if mesh is not None:
            states = jax.tree_util.tree_map(
                lambda a: shard_batch(a, mesh) if eqx.is_array(a) and a.ndim > 0 else a,
                states,
            )
        init_counts = EvalCounts(0, 0, 0)
    else:
        k_pos, k_st = jax.random.split(k_init)
        if initial_position is None:
            positions = sampler.initial_positions(k_pos, target, num_chains)
        else:
            positions = jnp.asarray(initial_position)
            if not jnp.issubdtype(positions.dtype, jnp.floating):
                positions = positions.astype(jnp.result_type(float))
            if tuple(positions.shape) != (num_chains,) + event_shape:
                raise ValueError(
                    f"initial_position has shape {tuple(positions.shape)}, expected "
                    f"{(num_chains,) + event_shape} = (num_chains, *event_shape)"
                )
        states = _init_chains(
            sampler, target, chains(jax.random.split(k_st, num_chains)), chains(positions), mesh
        )
        e = sampler.init_evals()
        init_counts = EvalCounts(num_chains * e.energy, num_chains * e.grad, num_chains * e.flow)

    ld0 = to_host(states.log_density)
    bad = np.flatnonzero(~np.isfinite(ld0))
    if bad.size:
        raise ValueError(
            f"the initial log density is not finite for chains {bad.tolist()} "
            f"(values {ld0[bad].tolist()}); start the chains inside the target's support"
        )

    states, xs, lds, acc, counts = _run_chains(
        sampler,
        target,
        states,
        chains(jax.random.split(k_warm, num_chains)),
        chains(jax.random.split(k_sample, num_chains)),
        num_warmup,
        num_samples,
        thinning,
        mesh,
    )
    return MCMCResult(
        xs,
        lds,
        acc,
        init_counts.energy + _total(counts.energy),
        init_counts.grad + _total(counts.grad),
        init_counts.flow + _total(counts.flow),
        states,
        sampler.extras(states),
    )
