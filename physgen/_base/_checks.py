"""Input validation shared by all modules: errors name the problem, expected and received."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._types import Shape


def check_event_shape(x, shape: Shape, what: str = "input") -> None:
    """Raise ``ValueError`` at trace time unless ``x.shape`` ends with ``shape``."""
    xs = tuple(jnp.shape(x))
    n = len(shape)
    if len(xs) < n or xs[len(xs) - n :] != tuple(shape):
        raise ValueError(
            f"{what} has shape {xs}, but its trailing (event) dimensions must be {tuple(shape)}"
        )


def check_single_example(x, shape: Shape, what: str = "input") -> None:
    """Raise ``ValueError`` unless ``x.shape == shape`` exactly (single-example functions)."""
    if tuple(jnp.shape(x)) != tuple(shape):
        raise ValueError(
            f"{what} has shape {tuple(jnp.shape(x))}, expected a single example of shape "
            f"{tuple(shape)} (batch with jax.vmap)"
        )


def check_finite_tree(tree, what: str = "model") -> None:
    """Raise ``ValueError`` naming the first leaf of ``tree`` holding NaN or inf.

    Runs on concrete values (outside ``jit``): used before training, when saving and loading.
    """
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    for path, leaf in leaves:
        if isinstance(leaf, jax.core.Tracer):
            continue
        if isinstance(leaf, (jax.Array, np.ndarray)) and jnp.issubdtype(
            leaf.dtype, jnp.inexact
        ):
            arr = np.asarray(leaf)
            bad = ~np.isfinite(arr)
            if bad.any():
                name = jax.tree_util.keystr(path)
                raise ValueError(
                    f"{what} has non-finite parameters: {int(bad.sum())} of {arr.size} "
                    f"entries of {what}{name} are NaN or inf"
                )


def check_int(name: str, value, minimum: int) -> int:
    """``value`` as an int, or ``ValueError`` unless it is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_output_shape(fn, args: tuple, expected, what: str) -> None:
    """Raise ``ValueError`` unless ``fn(*args)`` (evaluated abstractly; ``args`` may be
    ``jax.ShapeDtypeStruct``) returns an array of shape ``expected``; ``what`` names ``fn``
    and how it is called, e.g. ``"vector_field v(t, x, condition)"``."""
    shapes = tuple(None if a is None else tuple(jnp.shape(a)) for a in args)
    try:
        out = eqx.filter_eval_shape(fn, *args)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{what} cannot be called with inputs of shapes {shapes}: {e}") from e
    if getattr(out, "shape", None) != tuple(expected):
        raise ValueError(
            f"{what} maps inputs of shapes {shapes} to {getattr(out, 'shape', out)}; it must "
            f"return shape {tuple(expected)}"
        )
