"""Meshes and shardings over devices: data-parallel training and sharded chains.

Everything goes through ``jax.sharding``: arrays are placed with a
:class:`~jax.sharding.NamedSharding`, compiled code is ``jax.jit`` with sharding
constraints, and XLA inserts the collectives (the all-reduce of gradients, for instance).
Under ``jit`` a random draw is a function of the key and the GLOBAL shape only, so a
sharded computation draws the same numbers as the one-device computation: with
``jax_threefry_partitionable`` (the default) each device generates just its own rows, the
counter of row ``i`` being its global position ``i``.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

__all__ = [
    "batch_sharding",
    "chain_sharding",
    "constrain_batch",
    "initialize_distributed",
    "make_mesh",
    "replicate",
    "replicated_sharding",
    "shard_batch",
    "to_host",
]


def make_mesh(num_devices: int | None = None, axis_name: str = "batch", *, devices=None) -> Mesh:
    """A 1-D mesh of ``num_devices`` devices (default: all of ``jax.devices()``).

    The single axis is called ``axis_name`` and is of type ``Auto``: XLA propagates the
    shardings placed by :func:`shard_batch` / :func:`replicate` through the computation.
    On several hosts (after :func:`initialize_distributed`) ``jax.devices()`` lists the
    devices of all hosts, and the mesh spans them all.
    """
    available = list(jax.devices() if devices is None else devices)
    n = len(available) if num_devices is None else num_devices
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= len(available):
        raise ValueError(
            f"num_devices must be an integer between 1 and the {len(available)} available "
            f"device(s), got {num_devices!r} (on CPU, more devices can be forced with "
            f"XLA_FLAGS=--xla_force_host_platform_device_count=N set before jax is imported)"
        )
    return jax.make_mesh(
        (int(n),), (axis_name,), axis_types=(AxisType.Auto,), devices=available[: int(n)]
    )


def check_mesh(mesh, count: int | None = None, what: str = "the batch") -> None:
    """Raise unless ``mesh`` is a :class:`jax.sharding.Mesh` whose devices divide ``count``
    (the size of ``what``, the axis to be split), before any work is done."""
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    if count is not None and count % mesh.size:
        raise ValueError(
            f"{what}={count} cannot be split over the {mesh.size} devices of the mesh: use a "
            f"multiple of {mesh.size}"
        )


def _leading_spec(axis_names) -> PartitionSpec:
    names = tuple(axis_names)
    return PartitionSpec(names[0] if len(names) == 1 else names)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over all the devices of ``mesh``; other axes whole."""
    return NamedSharding(mesh, _leading_spec(mesh.axis_names))


def chain_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (chain) axis split over all the devices of ``mesh``: each device runs
    ``num_chains / mesh.size`` whole chains. The same placement as :func:`batch_sharding`."""
    return batch_sharding(mesh)


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of ``mesh`` (model parameters, optimiser state)."""
    return NamedSharding(mesh, PartitionSpec())


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray))


def _place(x, sharding: NamedSharding):
    if sharding.is_fully_addressable:
        return jax.device_put(x, sharding)
    # several hosts: every process holds the same host value and contributes its shards.
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = _place(jax.random.key_data(x), _key_data_sharding(sharding))
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def _key_data_sharding(sharding: NamedSharding) -> NamedSharding:
    return NamedSharding(sharding.mesh, PartitionSpec(*sharding.spec))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every array leaf of ``tree`` (a model, an optimiser state, data) replicated on
    ``mesh``; other leaves are returned unchanged."""
    sharding = replicated_sharding(mesh)
    return jax.tree_util.tree_map(lambda x: _place(x, sharding) if _is_array(x) else x, tree)


def shard_batch(tree: Any, mesh: Mesh) -> Any:
    """Place every array leaf of ``tree`` with its leading axis split over ``mesh``.

    Every leaf must have a leading axis divisible by ``mesh.size`` (``ValueError``
    otherwise): the shards are equal, and the values are those of the unsharded array.
    """
    sharding = batch_sharding(mesh)

    def place(x):
        if not _is_array(x):
            return x
        if x.ndim == 0 or x.shape[0] % mesh.size:
            raise ValueError(
                f"cannot split an array of shape {tuple(x.shape)} over {mesh.size} devices: "
                f"its leading axis must be divisible by {mesh.size}"
            )
        return _place(x, sharding)

    return jax.tree_util.tree_map(place, tree)


def constrain_batch(tree: Any) -> Any:
    """Inside ``jit``: ask XLA to split the leading axis of every array of ``tree`` over
    the mesh set by ``jax.set_mesh`` (``fit(..., mesh=...)`` sets it while training).

    The identity without such a mesh, with a one-device mesh, and for arrays whose leading
    axis is not divisible by the number of devices (those stay replicated). Values never
    change, only where they are computed; objectives call it on the samples they draw.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
        return tree
    spec = _leading_spec(mesh.axis_names)

    def constrain(x):
        if not _is_array(x) and not isinstance(x, jax.core.Tracer):
            return x
        if x.ndim == 0 or x.shape[0] % mesh.size:
            return x
        return jax.lax.with_sharding_constraint(x, spec)

    return jax.tree_util.tree_map(constrain, tree)


def to_host(x) -> np.ndarray:
    """A numpy copy of a (possibly sharded) array; on several hosts the shards of all
    processes are gathered first."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids=None,
    **kwargs,
) -> dict[str, int]:
    """Join a multi-host run: a thin wrapper of ``jax.distributed.initialize``.

    Call it once per process, before any other JAX call. ``coordinator_address``
    (``"host:port"`` of process 0), ``num_processes`` and ``process_id`` may be omitted
    where JAX detects the cluster (SLURM, Open MPI, TPU pods); other keyword arguments are
    passed on. Afterwards ``jax.devices()`` lists the devices of every host, so
    :func:`make_mesh` spans them all and ``fit(..., mesh=...)`` / ``run_mcmc(...,
    mesh=...)`` run unchanged: every process runs the same script with the same key.

    Returns ``{"process_index", "process_count", "local_device_count", "device_count"}``.
    """
    jax.distributed.initialize(
        coordinator_address, num_processes, process_id, local_device_ids=local_device_ids, **kwargs
    )
    return {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "local_device_count": jax.local_device_count(),
        "device_count": jax.device_count(),
    }
