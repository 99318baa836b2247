"""An E(n)-equivariant continuous normalizing flow for particle systems."""

from __future__ import annotations

from .._base import Key, check_int
from ..bijections import ContinuousFlow
from ..distributions import MeanFreeNormal, Transformed
from ..nn import EGNNVectorField


def equivariant_cnf(
    key: Key,
    n_particles: int,
    n_dims: int,
    *,
    hidden: int = 64,
    num_layers: int = 4,
    embed_dim: int = 16,
    scale: float = 1.0,
    zero_init: bool = False,
    trace: str = "exact",
    **flow_kwargs,
) -> Transformed:
    r"""A CNF on configurations ``(n_particles, n_dims)`` of identical particles (E-NF,
    Garcia Satorras et al. 2021; equivariant flow matching, Klein et al. 2023).

    ``Transformed(MeanFreeNormal((n, d), scale), ContinuousFlow(EGNNVectorField(...)))``:
    ``x(0) ~ N(0, scale² I)`` on the zero-centre-of-mass subspace, ``dx/dt = v(t, x)`` with
    ``v`` an :class:`~physgen.nn.EGNNVectorField` (``num_layers`` layers of width
    ``hidden``). The density is E(n)- and permutation invariant and lives on the
    ``(n-1)·d``-dimensional subspace: ``log q(x) = log p_base(z) - ∫ tr ∂v/∂x dt`` with the
    exact trace (``jax.jacfwd``, ``n·d`` Jacobian-vector products per field evaluation),
    which equals the trace on the subspace because ``v`` is translation invariant and mean
    free. ``log_prob(x)`` of an ``x`` off the subspace is that of ``x - x̄``.

    ``trace`` sets only the ``*_estimate`` methods (``"hutchinson"`` for likelihood
    training); ``log_prob`` and ``sample_and_log_prob``, and so every importance weight,
    always use the exact trace. Other keyword arguments (``t0``, ``t1``, ``solver``,
    ``rtol``, ``atol``, ``dt0``, ``max_steps``, ``adjoint``) go to
    :class:`~physgen.bijections.ContinuousFlow`; train with
    :class:`~physgen.flow_matching.EquivariantFlowMatching`.
    """
    check_int("equivariant_cnf: n_particles", n_particles, 2)
    check_int("equivariant_cnf: n_dims", n_dims, 1)
    shape = (n_particles, n_dims)
    field = EGNNVectorField(key, n_particles, n_dims, hidden=hidden, num_layers=num_layers,
                            embed_dim=embed_dim, zero_init=zero_init)
    flow = ContinuousFlow(field, shape, trace=trace, **flow_kwargs)
    return Transformed(MeanFreeNormal(shape, scale), flow)
