"""Several devices through ``jax.sharding``: meshes, shardings for a batch axis (data
parallelism) and a chain axis, placement helpers and the multi-host entry point.

``fit(..., mesh=mesh)`` trains data-parallel, ``run_mcmc(..., mesh=mesh)`` splits the chains
and ``BoltzmannGenerator.sample_and_log_weights(..., mesh=mesh)`` the samples; training and
reweighting give the one-device result (to floating-point reduction order), fixed-step chains
the one-device chains sample for sample. Chains with warm-up adaptation do not: XLA compiles
the split program with slightly different arithmetic, which the adaptation amplifies into
different (equally valid) chains.
"""

from ._mesh import (
    batch_sharding as batch_sharding,
    chain_sharding as chain_sharding,
    constrain_batch as constrain_batch,
    initialize_distributed as initialize_distributed,
    make_mesh as make_mesh,
    replicate as replicate,
    replicated_sharding as replicated_sharding,
    shard_batch as shard_batch,
    to_host as to_host,
)
