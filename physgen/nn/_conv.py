"""A periodic (circular-padding) convolutional net on one lattice field."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from .._custom_types import Array, Key


class PeriodicConvNet(eqx.Module):
    """``(in_channels, L₁, L₂) -> (out_channels, L₁, L₂)``: a stack of periodic 2-D convolutions.

    ``h_0 = x``, ``h_{l+1} = activation(conv_l(h_l))`` with ``hidden_channels[l]`` channels,
    output ``conv_last(h)`` (no final activation). Every convolution has a square
    ``kernel_size`` (odd) and circular padding, so the net commutes with every lattice
    translation: ``net(roll(x, s)) = roll(net(x), s)`` for any lattice size. With
    ``zero_init_last=True`` the last layer starts at zero (output exactly zero).
    ``use_bias=False`` with an odd ``activation`` (``tanh``) makes the net an odd function.
    Acts on one example; batch with ``jax.vmap``.
    """

    layers: tuple[eqx.nn.Conv2d, ...]
    activation: Callable[[Array], Array]
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: Sequence[int],
        kernel_size: int = 3,
        *,
        key: Key,
        activation: Callable[[Array], Array] = jax.nn.leaky_relu,
        use_bias: bool = True,
        zero_init_last: bool = False,
    ):
        hidden = tuple(hidden_channels)
        for name, v in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("kernel_size", kernel_size),
        ) + tuple((f"hidden_channels[{i}]", h) for i, h in enumerate(hidden)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"PeriodicConvNet: {name} must be an int >= 1, got {v!r}")
        if kernel_size % 2 != 1:
            raise ValueError(
                f"PeriodicConvNet: kernel_size must be odd (centred stencil), got {kernel_size}"
            )
        sizes = (in_channels,) + hidden + (out_channels,)
        keys = jax.random.split(key, len(sizes) - 1)
        layers = [
            eqx.nn.Conv2d(
                cin,
                cout,
                kernel_size,
                padding=kernel_size // 2,
                padding_mode="CIRCULAR",
                use_bias=use_bias,
                key=k,
            )
            for cin, cout, k in zip(sizes[:-1], sizes[1:], keys, strict=True)
        ]
        if zero_init_last:
            last = layers[-1]
            layers[-1] = eqx.tree_at(lambda c: c.weight, last, jnp.zeros_like(last.weight))
            if use_bias:
                layers[-1] = eqx.tree_at(lambda c: c.bias, layers[-1], jnp.zeros_like(last.bias))
        self.layers = tuple(layers)
        self.activation = activation
        self.in_channels = in_channels
        self.out_channels = out_channels

    def __call__(self, x: Array) -> Array:
        """``x``: ``(in_channels, L₁, L₂)`` -> ``(out_channels, L₁, L₂)``."""
        if jnp.ndim(x) != 3 or jnp.shape(x)[0] != self.in_channels:
            raise ValueError(
                f"PeriodicConvNet input has shape {tuple(jnp.shape(x))}, expected "
                f"({self.in_channels}, L1, L2) (batch with jax.vmap)"
            )
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)
