"""A periodic (circular-padding) convolutional net on one lattice field."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import Array, Key


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
            x = self.activation(periodic_conv(layer, x))
        return periodic_conv(self.layers[-1], x)


def periodic_conv(conv: eqx.nn.Conv2d, x: Array) -> Array:
    """``conv(x)`` for a circular-padded, stride-1 ``eqx.nn.Conv2d`` with an odd square kernel,
    evaluated as one matrix product over the ``k²`` periodic shifts of ``x``:
    ``y[o, a, b] = Σ_{c,i,j} W[o, c, i, j] x[c, a + i - r, b + j - r] + bias[o]`` (``r = k // 2``,
    indices mod ``L``). ``x``: ``(C_in, L₁, L₂)`` -> ``(C_out, L₁, L₂)``.

    Why not ``conv(x)``: flows apply their stacked layers inside ``lax.scan``, and there, on
    CPU, XLA's convolutions and their gradients run several times slower than as this matrix
    product (a single net outside a scan is another matter); see
    ``experiments/benchmarks/lattice_conv.py`` and its numbers in the benchmarks' README."""
    w = conv.weight
    k = w.shape[-1]
    r = k // 2
    patches = jnp.stack(
        [jnp.roll(x, (r - i, r - j), axis=(1, 2)) for i in range(k) for j in range(k)], axis=1
    )  # (C_in, k², L₁, L₂), ordered as W's (c, i, j)
    y = jnp.einsum("op,pab->oab", w.reshape(w.shape[0], -1), patches.reshape(-1, *x.shape[1:]))
    return y if conv.bias is None else y + conv.bias
