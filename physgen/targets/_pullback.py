"""A target seen through a change of variables."""

from __future__ import annotations

import equinox as eqx

from .._base import Array, Scalar, Shape, check_single_example
from ..bijections import AbstractBijection
from ._base import AbstractTarget


class Pullback(AbstractTarget):
    r"""The density of ``u`` when ``x = f(u)`` has the density of ``target``
    (``f = bijection``, unconditional, from ``bijection.shape`` to ``target.event_shape``):

    .. math::
        \log p_u(u) = \log p̃(f(u)) + \log|\det ∂f/∂u|,
        \qquad E_u(u) = E(f(u)) - \log|\det ∂f/∂u| / β.

    The normaliser is the target's, ``∫ exp(-β E_u) du = ∫ exp(-β E) dx``, so a model of
    ``u`` trained against it (reverse KL, FAB) has the target's ``log Z`` and importance
    weights ``log p_u(u) - log q(u)``, equal to those of ``f(u)`` under the model pushed
    forward. The use: run samplers and flows in well-scaled coordinates, e.g. ``f`` an
    :class:`~physgen.bijections.Affine` ``loc + scale · u`` whose ``scale`` spans orders of
    magnitude (bond lengths and torsions), where one HMC step size would not fit all.
    ``beta`` is the target's.
    """

    target: AbstractTarget
    bijection: AbstractBijection
    beta: float = eqx.field(static=True)
    event_shape: Shape = eqx.field(static=True)

    def __init__(self, target: AbstractTarget, bijection: AbstractBijection):
        if not isinstance(bijection, AbstractBijection):
            raise TypeError(f"Pullback needs a bijection, got {type(bijection).__name__}")
        if bijection.cond_shape is not None:
            raise ValueError("Pullback needs an unconditional bijection (cond_shape None), got "
                             f"cond_shape {bijection.cond_shape}")
        if tuple(bijection.shape) != tuple(target.event_shape):
            raise ValueError(f"the bijection maps shape {tuple(bijection.shape)} but the target "
                             f"acts on {tuple(target.event_shape)}")
        self.target = target
        self.bijection = bijection
        self.beta = float(target.beta)
        self.event_shape = tuple(bijection.shape)

    def energy(self, u: Array) -> Scalar:
        """``E(f(u)) - log|det ∂f/∂u|/β`` for one ``u`` of shape ``event_shape``."""
        check_single_example(u, self.event_shape, "Pullback.energy: u")
        x, log_det = self.bijection.transform_and_log_det(u)
        return self.target.energy(x) - log_det / self.beta
