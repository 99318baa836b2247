"""Equivariant flow matching (Klein, Krämer & Noé 2023): the optimal-transport coupling of
noise and data extended over the symmetry group of identical particles (permutations, then
rotations), and the conditional flow-matching objective that uses it."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from .._base import AbstractDataObjective, Array, Key, Scalar, check_event_shape
from .._base._alignment import align_onto, aligned_cost_matrix
from ..distributions import MeanFreeNormal, remove_mean
from ..flows._continuous import check_continuous_model
from ._objective import flow_matching_loss
from ._paths import AbstractProbabilityPath, LinearPath, _check_time


def _sq_cost(x0, x1) -> np.ndarray:
    return np.sum((x0 - x1) ** 2, axis=(-2, -1))


def _radial_cost(x0, x1) -> np.ndarray:
    """``(B, M)`` lower bound of the aligned cost: ``Σ_a (r0_(a) - r1_(a))²`` of the sorted
    distances to the centre (``|x0_a - g x1_π(a)| >= ||x0_a| - |x1_π(a)||``, and sorting
    pairs scalars optimally), invariant under permutations and rotations of either."""
    r0 = np.sort(np.linalg.norm(x0, axis=-1), axis=-1)
    r1 = np.sort(np.linalg.norm(x1, axis=-1), axis=-1)
    return np.sum((r0[:, None, :] - r1[None, :, :]) ** 2, axis=-1)


def _coupling_host(x0, x1, batch_ot: bool, permutations: bool, rotations: bool,
                   batch_cost: str):
    dtype = x1.dtype
    x0 = np.asarray(x0, np.float64)
    x1 = np.asarray(x1, np.float64)
    x0 = x0 - x0.mean(axis=-2, keepdims=True)
    x1 = x1 - x1.mean(axis=-2, keepdims=True)
    group = dict(permutations=permutations, rotations=rotations)
    if not batch_ot:
        return x0.astype(dtype), align_onto(x0, x1, **group).astype(dtype)
    if batch_cost == "aligned":
        _, match = linear_sum_assignment(aligned_cost_matrix(x0, x1, **group))
        return x0.astype(dtype), align_onto(x0, x1[match], **group).astype(dtype)
    _, match = linear_sum_assignment(_radial_cost(x0, x1))
    paired = align_onto(x0, x1[match], **group)
    # the surrogate's pairing is kept only where it lowers the aligned total of the plain one
    plain = align_onto(x0, x1, **group)
    if _sq_cost(x0, plain).sum() < _sq_cost(x0, paired).sum():
        paired = plain
    return x0.astype(dtype), paired.astype(dtype)


def _check_pair(x0, x1, who):
    x0, x1 = jnp.asarray(x0), jnp.asarray(x1)
    if x0.ndim != 3 or x0.shape != x1.shape:
        raise ValueError(
            f"{who} needs two batches of configurations of one shape (B, n_particles, n_dims), "
            f"got {x0.shape} and {x1.shape}"
        )
    dtype = jnp.result_type(x0.dtype, x1.dtype, float)
    return jax.lax.stop_gradient(x0.astype(dtype)), jax.lax.stop_gradient(x1.astype(dtype))


_BATCH_COSTS = ("aligned", "radial")


def _check_batch_cost(batch_cost) -> str:
    if batch_cost not in _BATCH_COSTS:
        raise ValueError(f"batch_cost must be one of {_BATCH_COSTS}, got {batch_cost!r}")
    return batch_cost


def equivariant_ot_coupling(
    x0: Array, x1: Array, *, batch_ot: bool = True, permutations: bool = True,
    rotations: bool = True, batch_cost: str = "aligned",
) -> tuple[Array, Array]:
    r"""Pair noise ``x0`` and data ``x1``, both ``(B, n, d)``, by optimal transport over the
    symmetry group of identical particles (equivariant OT, Klein, Krämer & Noé 2023).

    Both are first centred (zero centre of mass). The group-aligned cost of a pair is
    ``c(x0, x1) = |x0 - g(x1)|²`` with ``g`` the optimal permutation of ``x1``'s particles
    (``scipy.optimize.linear_sum_assignment`` on ``|x0_a - x1_b|²``) followed by the
    optimal proper rotation of the permuted ``x1`` (Kabsch). With ``batch_ot`` the batch
    is then re-paired by the exact assignment ``σ`` minimising ``Σ_i c(x0_i, x1_σ(i))``;
    without, ``x1_i`` stays with ``x0_i``. Returns ``(x0 - x̄0, g_i(x1_σ(i)))``: each data
    point is replaced by a member of its own orbit (same energy, same density).

    Each step can only lower the cost (the identity is among the candidates), so the total
    ``Σ_i |x0_i - x1'_i|²`` never exceeds that of the plain pairing. (Permutation then
    rotation is a coordinate-wise minimisation, not the joint optimum over both.)

    ``batch_cost="radial"`` re-pairs the batch by a cheap lower bound of ``c`` instead, the
    squared distance of the sorted distances to the centre (invariant under the group),
    then aligns only the chosen pairs; the pairing is kept where its aligned total is below
    that of the plain pairing, so the guarantee above holds for it too.

    Cost, on the host through ``jax.pure_callback``: with ``batch_ot`` and the aligned cost,
    ``B²`` assignments of size ``n`` (``O(B² n³)``) and ``B²`` SVDs of ``d×d`` matrices,
    then one ``B×B`` assignment; for ``n = 13`` an ``n``-assignment takes about 5 µs, so
    ``B = 256`` costs about half a second per call. With the radial cost, or without
    ``batch_ot``, ``O(B)`` alignments. No gradient flows through it.
    """
    x0, x1 = _check_pair(x0, x1, "equivariant_ot_coupling")
    batch_cost = _check_batch_cost(batch_cost)
    spec = jax.ShapeDtypeStruct(x1.shape, x1.dtype)

    def host(a, b):
        return _coupling_host(a, b, bool(batch_ot), bool(permutations), bool(rotations),
                              batch_cost)

    return jax.pure_callback(host, (spec, spec), x0, x1, vmap_method="sequential")


def align_particles(x0: Array, x1: Array, *, permutations: bool = True,
                    rotations: bool = True) -> Array:
    """``x1`` ``(B, n, d)`` centred and moved, pair by pair, to its best match with ``x0``:
    the optimal permutation, then the optimal proper rotation (the alignment of
    :func:`equivariant_ot_coupling` without re-pairing the batch). Host computation through
    ``jax.pure_callback`` (``B`` assignments and ``B`` SVDs)."""
    return equivariant_ot_coupling(x0, x1, batch_ot=False, permutations=permutations,
                                   rotations=rotations)[1]


class EquivariantFlowMatching(AbstractDataObjective):
    r"""Conditional flow matching with the equivariant OT coupling (Klein et al. 2023):
    ``L = E |v(t, x_t) - u_t(x0, x1')|²`` with ``x0 ~ MeanFreeNormal``, ``x1`` a data batch
    centred to zero centre of mass, ``(x0, x1')`` from :func:`equivariant_ot_coupling`, and
    ``x_t``, ``u_t`` from ``path`` (default :class:`LinearPath`), ``t ~ U[t_min, t1]``.

    The coupling replaces each data point by another member of its orbit, so for a target
    invariant under the group the data distribution is unchanged, while the paths become
    shorter and straighter. The model is ``equivariant_cnf`` (a ``Transformed`` of a
    :class:`~physgen.distributions.MeanFreeNormal` by a ``ContinuousFlow``). As for
    :class:`FlowMatching` the printed loss exceeds the marginal one by a constant; ``aux``
    also holds ``transport_cost``, the mean ``|x1' - x0|²`` of the coupled pairs.
    ``batch_ot=False`` aligns each random pair without re-pairing (``B`` assignments per
    step instead of ``B²``); ``batch_cost="radial"`` re-pairs by the cheap invariant bound
    of :func:`equivariant_ot_coupling` (``O(B)`` alignments, for larger ``n`` and ``B``).
    """

    path: AbstractProbabilityPath
    batch_ot: bool = eqx.field(static=True)
    permutations: bool = eqx.field(static=True)
    rotations: bool = eqx.field(static=True)
    batch_cost: str = eqx.field(static=True)

    def __init__(self, path: AbstractProbabilityPath | None = None, *, batch_ot: bool = True,
                 permutations: bool = True, rotations: bool = True,
                 batch_cost: str = "aligned"):
        path = LinearPath() if path is None else path
        if not isinstance(path, AbstractProbabilityPath):
            raise TypeError(f"path must be an AbstractProbabilityPath, got {type(path)}")
        self.path = path
        self.batch_ot = bool(batch_ot)
        self.permutations = bool(permutations)
        self.rotations = bool(rotations)
        self.batch_cost = _check_batch_cost(batch_cost)

    def init_state(self, model, key: Key) -> None:
        return None

    def loss(self, model, key: Key, batch, state, step) -> tuple[Scalar, dict[str, Scalar], None]:
        if batch is None:
            raise ValueError("EquivariantFlowMatching needs data: pass data=... to fit")
        flow = check_continuous_model(model, "EquivariantFlowMatching")
        if not isinstance(model.base, MeanFreeNormal):
            raise TypeError(
                "EquivariantFlowMatching needs a MeanFreeNormal base (e.g. "
                f"physgen.flows.equivariant_cnf), got {type(model.base).__name__}"
            )
        _check_time(self.path, flow.t0, flow.t1)
        check_event_shape(batch, model.shape, "data batch")
        if batch.ndim != 3:
            raise ValueError(f"data batch must have shape (B, *{model.shape}), got {batch.shape}")
        n = batch.shape[0]
        k_noise, k_t = jax.random.split(key)
        x1 = remove_mean(batch)
        x0 = model.base.sample(k_noise, (n,)).astype(x1.dtype)
        x0, x1 = equivariant_ot_coupling(x0, x1, batch_ot=self.batch_ot,
                                         permutations=self.permutations,
                                         rotations=self.rotations,
                                         batch_cost=self.batch_cost)
        t = jax.random.uniform(k_t, (n,), x1.dtype, minval=self.path.t_min, maxval=flow.t1)
        loss, aux = flow_matching_loss(flow.vector_field, self.path, t, x0, x1)
        aux = dict(aux, transport_cost=jnp.mean(jnp.sum((x1 - x0) ** 2, axis=(1, 2))))
        return loss, aux, state
