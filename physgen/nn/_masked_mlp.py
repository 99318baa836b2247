"""MADE: a masked MLP whose outputs depend only on inputs of strictly lower degree."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._base import Array, ArrayLike, Key


def _hidden_degrees(width: int, lo: int, hi: int) -> np.ndarray:
    """Degrees cycling through ``lo..hi`` (inclusive); all ``lo`` if the range is empty."""
    if hi < lo:
        return np.full(width, lo, dtype=np.int32)
    return (lo + np.arange(width) % (hi - lo + 1)).astype(np.int32)


class MaskedMLP(eqx.Module):
    """Masked autoencoder for distribution estimation (Germain et al. 2015), one example.

    Every input ``j`` has a degree ``in_degrees[j]`` and every output ``i`` a degree
    ``out_degrees[i]``; output ``i`` depends only on inputs with
    ``in_degrees[j] < out_degrees[i]``. Hidden unit ``h`` of degree ``m(h)`` sees inputs with
    ``in_degree <= m(h)`` (and hidden units of lower or equal degree); outputs see hidden units
    with ``m(h) < out_degree``. Hidden degrees cycle through
    ``min(in_degrees) .. max(out_degrees) - 1``.

    For an autoregressive conditioner on ``D`` features give feature ``j`` degree ``j + 1``,
    context (condition) inputs degree 0, and the parameters of feature ``i`` degree ``i + 1``.
    The masks are boolean arrays (never trained); weights are masked at call time.
    Input ``(len(in_degrees),)``, output ``(len(out_degrees),)``.
    """

    layers: tuple[eqx.nn.Linear, ...]
    masks: tuple[Array, ...]
    in_degrees: Array
    out_degrees: Array
    activation: Callable[[Array], Array]

    def __init__(
        self,
        in_degrees: ArrayLike,
        out_degrees: ArrayLike,
        width: int,
        depth: int,
        *,
        key: Key,
        activation: Callable[[Array], Array] = jax.nn.relu,
        zero_init_last: bool = False,
    ):
        in_deg = np.asarray(in_degrees)
        out_deg = np.asarray(out_degrees)
        for name, d in (("in_degrees", in_deg), ("out_degrees", out_deg)):
            if d.ndim != 1 or d.size == 0 or not np.issubdtype(d.dtype, np.integer):
                raise ValueError(
                    f"MaskedMLP: {name} must be a non-empty 1-D int array, got shape "
                    f"{d.shape} and dtype {d.dtype}"
                )
        if not isinstance(width, int) or width < 1 or not isinstance(depth, int) or depth < 0:
            raise ValueError(f"MaskedMLP: need width >= 1 and depth >= 0, got {width}, {depth}")
        degrees = [in_deg]
        for _ in range(depth):
            degrees.append(_hidden_degrees(width, int(in_deg.min()), int(out_deg.max()) - 1))
        masks = []
        for d_in, d_out in zip(degrees[:-1], degrees[1:], strict=True):
            masks.append(d_out[:, None] >= d_in[None, :])
        masks.append(out_deg[:, None] > degrees[-1][None, :])
        keys = jax.random.split(key, depth + 1)
        layers = []
        for k, m in zip(keys, masks, strict=True):
            layers.append(eqx.nn.Linear(m.shape[1], m.shape[0], key=k))
        if zero_init_last:
            last = layers[-1]
            layers[-1] = eqx.tree_at(
                lambda lin: (lin.weight, lin.bias),
                last,
                (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)),
            )
        self.layers = tuple(layers)
        self.masks = tuple(jnp.asarray(m) for m in masks)
        self.in_degrees = jnp.asarray(in_deg)
        self.out_degrees = jnp.asarray(out_deg)
        self.activation = activation

    def __call__(self, x: Array) -> Array:
        """``x``: ``(len(in_degrees),)`` -> ``(len(out_degrees),)``."""
        n_in = self.masks[0].shape[1]
        if jnp.shape(x) != (n_in,):
            raise ValueError(
                f"MaskedMLP input has shape {tuple(jnp.shape(x))}, expected ({n_in},) "
                "(batch with jax.vmap)"
            )
        n = len(self.layers)
        for i, (layer, mask) in enumerate(zip(self.layers, self.masks, strict=True)):
            x = jnp.where(mask, layer.weight, 0) @ x + layer.bias
            if i < n - 1:
                x = self.activation(x)
        return x
