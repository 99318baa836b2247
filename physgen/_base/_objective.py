"""The objective interface: a Monte Carlo loss of a model, minimised by :func:`physgen.fit`."""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx

from ._types import Array, Key, Scalar


class AbstractObjective(eqx.Module):
    """A training objective ``L(model)``, estimated by Monte Carlo, minimised by ``fit``.

    - ``init_state(model, key) -> state``: what the objective carries from step to step
      (``None`` for most; FAB's replay buffer and AIS step sizes). ``fit`` calls it once,
      before the first step, and checkpoints the state with the model.
    - ``loss(model, key, batch, state, step) -> (loss, aux, state)``: the scalar loss at
      training step ``step`` (an int32 array counting from 0 over resumed runs), a dict
      ``aux`` of scalar diagnostics (logged per step by ``fit``) and the new state. ``batch``
      is a minibatch of data, ``(batch_size, *event_shape)`` or a pair ``(x, condition)``,
      for an :class:`AbstractDataObjective` and ``None`` otherwise (data-free objectives
      draw their own samples with ``key``).

    ``fit`` differentiates ``loss`` with respect to the model only: the state is carried,
    never trained.
    """

    @abc.abstractmethod
    def init_state(self, model, key: Key) -> Any: ...

    @abc.abstractmethod
    def loss(
        self, model, key: Key, batch: Any, state: Any, step: Array
    ) -> tuple[Scalar, dict[str, Scalar], Any]: ...


class AbstractDataObjective(AbstractObjective):
    """Capability marker: the objective consumes minibatches of the data passed to ``fit``."""
