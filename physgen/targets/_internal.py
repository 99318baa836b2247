"""A molecular target seen in internal coordinates."""

from __future__ import annotations

import equinox as eqx

from .._base import Array, Scalar, Shape, check_single_example
from ..bijections import InternalCoordinates
from ._base import AbstractTarget


class InternalCoordinateTarget(AbstractTarget):
    r"""The Boltzmann density of a molecular ``target`` (positions ``(N, 3)``) as a density
    of the internal coordinates ``z`` ``(3N - 6,)`` of ``ic``:

    .. math::
        \log p(z) = -β U(x(z)) + \sum_{i≥1} 2 \log b_i + \sum_{i≥2} \log \sin θ_i,

    the second and third terms the Jacobian of ``z`` -> positions modulo rigid motions
    (``ic``'s log-det plus its frame factor; see
    :class:`~physgen.bijections.InternalCoordinates`). So ``energy(z) = U(x(z)) - (that
    log-Jacobian) / β`` and ``∫ exp(-β E(z)) dz = ∫ exp(-β U(x)) dx / (8π² V)``: flows on
    internal coordinates train against it directly (reverse KL, FAB) and their importance
    weights are ``-β E(z) - log q(z)``. ``beta`` is the target's.
    """

    target: AbstractTarget
    ic: InternalCoordinates
    beta: float = eqx.field(static=True)
    event_shape: Shape = eqx.field(static=True)

    def __init__(self, target: AbstractTarget, ic: InternalCoordinates):
        if tuple(target.event_shape) != (ic.n_atoms, 3):
            raise ValueError(f"the target acts on positions {tuple(target.event_shape)} but the "
                             f"Z-matrix has {ic.n_atoms} atoms: expected ({ic.n_atoms}, 3)")
        self.target = target
        self.ic = ic
        self.beta = float(target.beta)
        self.event_shape = tuple(ic.shape)

    def positions(self, z: Array) -> Array:
        """Positions ``(N, 3)`` (canonical frame) of internal coordinates ``z``."""
        return self.ic.to_positions(self.ic.transform(z))

    def energy(self, z: Array) -> Scalar:
        """``U(x(z)) - log|J(z)|/β`` for one ``z`` of shape ``(3N - 6,)``."""
        check_single_example(z, self.event_shape, "InternalCoordinateTarget.energy: z")
        r, log_det = self.ic.transform_and_log_det(z)
        log_jacobian = log_det + self.ic.log_frame_jacobian(r)
        return self.target.energy(self.ic.to_positions(r)) - log_jacobian / self.beta
