"""The objective interface: a scalar loss of a model, minimised by :func:`physgen.fit`."""

from __future__ import annotations

import abc

import equinox as eqx

from .._custom_types import Array, Key, Scalar


class AbstractObjective(eqx.Module):
    """A training objective ``L(model)``, estimated by Monte Carlo.

    ``loss(model, key, batch)`` returns ``(loss, aux)`` where ``loss`` is a scalar and ``aux``
    a dict of scalar diagnostics (logged per step by ``fit``). ``batch`` is a minibatch of
    data of shape ``(batch_size, *event_shape)`` for data-based objectives and ``None`` for
    data-free ones (which draw their own samples with ``key``).
    """

    @abc.abstractmethod
    def loss(self, model, key: Key, batch: Array | None) -> tuple[Scalar, dict[str, Scalar]]: ...


class AbstractDataObjective(AbstractObjective):
    """Capability marker: the objective consumes minibatches of data passed to ``fit``."""
