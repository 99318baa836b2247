"""A multilayer perceptron conditioner on one example (a vector)."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import Array, Key, check_int


def zero_last_layer(mlp: eqx.nn.MLP) -> eqx.nn.MLP:
    """``mlp`` with the weights and bias of its last layer set to zero (output exactly 0)."""
    last = mlp.layers[-1]
    return eqx.tree_at(
        lambda m: (m.layers[-1].weight, m.layers[-1].bias),
        mlp,
        (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)),
    )


class MLP(eqx.Module):
    """``R^in_size -> R^out_size``: ``depth`` hidden layers of ``width`` units.

    ``h_0 = x``, ``h_{l+1} = activation(W_l h_l + b_l)``, output ``W_depth h_depth + b_depth``
    (no final activation). With ``zero_init_last=True`` the last layer's weights and bias
    start at zero, so the output is exactly zero at initialisation (a new flow built on it is
    the identity). Input shape ``(in_size,)``, output shape ``(out_size,)``; batch with vmap.
    """

    mlp: eqx.nn.MLP
    in_size: int = eqx.field(static=True)
    out_size: int = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        out_size: int,
        width: int,
        depth: int,
        *,
        key: Key,
        activation: Callable[[Array], Array] = jax.nn.relu,
        zero_init_last: bool = False,
    ):
        for name, v, lo in (("in_size", in_size, 0), ("out_size", out_size, 1),
                            ("width", width, 1), ("depth", depth, 0)):
            check_int(f"MLP: {name}", v, lo)
        mlp = eqx.nn.MLP(in_size, out_size, width, depth, activation=activation, key=key)
        if zero_init_last:
            mlp = zero_last_layer(mlp)
        self.mlp = mlp
        self.in_size = in_size
        self.out_size = out_size

    def __call__(self, x: Array) -> Array:
        """``x``: ``(in_size,)`` -> ``(out_size,)``."""
        if jnp.shape(x) != (self.in_size,):
            raise ValueError(
                f"MLP input has shape {tuple(jnp.shape(x))}, expected ({self.in_size},) "
                "(batch with jax.vmap)"
            )
        return self.mlp(x)
