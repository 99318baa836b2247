"""Helpers of the tests of bad inputs and of interrupted runs."""

import jax.numpy as jnp

from physgen.objectives import AbstractDataObjective, AbstractObjective, MaximumLikelihood


def traced_objective(traces: list, *, data: bool):
    """An objective that appends to ``traces`` whenever it is traced, so a test can check
    that a bad argument was refused before any work: maximum likelihood with ``data``, else
    the reverse KL to a standard normal."""
    base = AbstractDataObjective if data else AbstractObjective

    class Traced(base):
        traces: list

        def __init__(self, traces):
            self.traces = traces

        def init_state(self, model, key):
            return None

        def loss(self, model, key, batch, state, step):
            self.traces.append(1)
            if data:
                return MaximumLikelihood().loss(model, key, batch, state, step)
            x = model.sample(key, (8,))
            return jnp.mean(model.log_prob(x) + 0.5 * jnp.sum(x**2, -1)), {}, state

    return Traced(traces)


def ctrl_c_at_chunk(n: int):
    """A stand-in for ``fit``'s progress bar that raises ``KeyboardInterrupt`` when the
    ``n``-th chunk has finished: a Ctrl-C between two chunks, at a known step."""

    class Bar:
        def __init__(self, *args, **kwargs):
            self.chunks = 0

        def update(self, steps):
            self.chunks += 1
            if self.chunks == n:
                raise KeyboardInterrupt

        def set_postfix(self, **kwargs):
            pass

        def close(self):
            pass

    return Bar
