"""Maximum likelihood on data (the forward KL of a Boltzmann generator)."""

from __future__ import annotations

import jax.numpy as jnp

from .._base import AbstractDataObjective, Key, Scalar, check_event_shape


class MaximumLikelihood(AbstractDataObjective):
    """Negative log-likelihood ``L = -(1/B) Σ_i log q(x_i)`` on a minibatch ``x`` of data.

    Its expectation is ``KL(p‖q) + H(p)``: the data entropy ``H(p)`` is the dropped constant,
    so the minimum of the printed value is ``H(p)`` (nats), not zero. A batch ``(x, c)``
    trains a conditional density: ``L = -(1/B) Σ_i log q(x_i | c_i)``. Trained on samples of a
    Boltzmann distribution (MD, MCMC or exact) this is the forward KL of Noé et al. 2019.
    Stateless.
    """

    def __init__(self):
        pass

    def init_state(self, model, key: Key) -> None:
        return None

    def loss(self, model, key: Key, batch, state, step) -> tuple[Scalar, dict[str, Scalar], None]:
        if batch is None:
            raise ValueError("MaximumLikelihood needs data: pass data=... to fit")
        x, condition = batch if isinstance(batch, (tuple, list)) else (batch, None)
        check_event_shape(x, model.shape, "data batch")
        nll = -jnp.mean(model.log_prob(x, condition))
        return nll, {"nll": nll}, state
