"""A target with its high energies softened, for training only."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from .._base import Array, Scalar, Shape
from ._base import AbstractTarget


class LinLogCut(AbstractTarget):
    r"""``target`` with energies above ``high`` grown logarithmically and those above
    ``maximum`` (and NaN) cut (the "linlogcut" of Noé et al. 2019's Boltzmann generators):

    .. math::
        E'(x) = \begin{cases} E & E < h \\ h + \log(1 + E - h) & h ≤ E < m \\
        h + \log(1 + m - h) & E ≥ m \text{ or NaN}, \end{cases}

    with ``h = high`` and ``m = maximum`` (units of kT at β = 1, as ``energy``). A flow that
    starts far from the target samples clashing configurations whose energies (1e10 kT for
    overlapping Lennard-Jones atoms) and gradients swamp reverse-KL training; ``E'`` keeps
    the loss and its gradient bounded and equals ``E`` wherever ``E < high``.

    It is a different density: train against it, but reweight against ``target`` (the
    weights, ESS and ``log Z`` belong to the original).
    """

    target: AbstractTarget
    high: float = eqx.field(static=True)
    maximum: float = eqx.field(static=True)
    beta: float = eqx.field(static=True)
    event_shape: Shape = eqx.field(static=True)

    def __init__(self, target: AbstractTarget, high: float, maximum: float):
        if not float(maximum) > float(high):
            raise ValueError(f"LinLogCut needs maximum > high, got high = {high}, maximum = "
                             f"{maximum}")
        self.target = target
        self.high = float(high)
        self.maximum = float(maximum)
        self.beta = float(target.beta)
        self.event_shape = tuple(target.event_shape)

    def energy(self, x: Array) -> Scalar:
        e = self.target.energy(x)
        h = jnp.asarray(self.high, e.dtype)
        cut = jnp.where(jnp.isnan(e), self.maximum, jnp.minimum(e, self.maximum))
        # log1p of a non-negative argument on both branches: no NaN gradient where unused
        soft = h + jnp.log1p(jnp.maximum(cut - h, 0.0))
        return jnp.where(cut < h, cut, soft)
