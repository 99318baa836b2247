"""Input checks shared by the concrete bijections (run at trace time)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .._base import check_single_example


def check_inputs(bijection, x, condition, what: str = "x"):
    """Check ``x`` is one example of ``bijection.shape`` and ``condition`` fits ``cond_shape``.

    Unconditional bijections (``cond_shape is None``) ignore ``condition``, so that a
    ``Chain`` can pass one condition to all its layers. Returns ``x`` as an array.
    """
    x = jnp.asarray(x)
    check_single_example(x, bijection.shape, what)
    if bijection.cond_shape is not None:
        if condition is None:
            raise ValueError(
                f"{type(bijection).__name__} is conditional and needs a condition of shape "
                f"{tuple(bijection.cond_shape)}, got None"
            )
        check_single_example(condition, bijection.cond_shape, "condition")
    return x


def as_shape(shape, what: str = "shape") -> tuple[int, ...]:
    """Normalise an int or a sequence of ints into a shape tuple.

    Raises ``TypeError`` for anything that is not an int or a sequence of ints, and
    ``ValueError`` for negative sizes.
    """
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (tuple, list)):
        raise TypeError(f"{what} must be an int or a tuple of ints, got {shape!r}")
    if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in shape):
        raise TypeError(f"{what} must be an int or a tuple of ints, got {shape!r}")
    out = tuple(int(s) for s in shape)
    if any(s < 0 for s in out):
        raise ValueError(f"{what} must hold non-negative sizes, got {out}")
    return out
