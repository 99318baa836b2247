"""``lattice_flow``: checkerboard couplings with periodic convolutional conditioners."""

from __future__ import annotations

import jax

from .._base import Key
from ..bijections import (
    AffineTransformer,
    Chain,
    CheckerboardPartition,
    ConvConditioner,
    Coupling,
    FourierScaling,
    Scan,
    SplineTransformer,
    Z2EquivariantConditioner,
)
from ..distributions import AbstractDistribution, StandardNormal, Transformed


def lattice_flow(
    key: Key,
    L: int | tuple[int, int],
    *,
    num_layers: int = 8,
    hidden_channels: tuple[int, ...] = (8, 8),
    kernel_size: int = 3,
    coupling: str = "affine",
    z2_equivariant: bool = False,
    num_bins: int = 8,
    interval: float = 4.0,
    fourier: bool = False,
    base: AbstractDistribution | None = None,
) -> Transformed:
    """Flow on ``L × L`` periodic lattice fields (Albergo, Kanwar & Shanahan 2019).

    ``num_layers`` (even) checkerboard couplings alternating between the two colours, each
    conditioned by a :class:`~physgen.nn.PeriodicConvNet` (``hidden_channels``,
    ``kernel_size``, circular padding), stacked in pairs with
    :class:`~physgen.bijections.Scan`. ``coupling="affine"`` or ``"spline"`` (``num_bins``
    bins on ``[-interval, interval]``). Base: ``N(0, I)`` on ``(L, L)`` unless given.
    ``fourier=True`` puts a :class:`~physgen.bijections.FourierScaling` (one learned scale per
    momentum) between the base and the couplings: a learned translation-invariant Gaussian
    prior carrying the long-range two-point function, left to the couplings otherwise.

    Symmetries: for even ``L`` the flow commutes with every translation that preserves the
    checkerboard (``s₁ + s₂`` even), with an unchanged log-det, and its density is invariant
    under those when the base is. ``z2_equivariant=True`` (affine only) makes
    ``f(−z) = −f(z)`` with equal log-det, so with a symmetric base ``q(−φ) = q(φ)``.
    Every new flow is the identity (zero-initialised last conv layers).
    """
    shape = (L, L) if isinstance(L, int) else tuple(L)
    if len(shape) != 2 or any(not isinstance(s, int) or s < 2 for s in shape):
        raise ValueError(f"L must be an int >= 2 or a pair of them, got {L!r}")
    if any(s % 2 for s in shape):
        raise ValueError(
            f"lattice_flow needs even lattice sizes (a periodic checkerboard), got {shape}"
        )
    if not isinstance(num_layers, int) or num_layers < 2 or num_layers % 2:
        raise ValueError(
            f"num_layers must be an even int >= 2 (pairs of colours), got {num_layers!r}"
        )
    if coupling not in ("affine", "spline"):
        raise ValueError(f"coupling must be 'affine' or 'spline', got {coupling!r}")
    transformer = AffineTransformer() if coupling == "affine" else SplineTransformer(
        num_bins, interval)
    base = StandardNormal(shape) if base is None else base
    if tuple(base.shape) != shape:
        raise ValueError(f"base distribution has shape {tuple(base.shape)}, expected {shape}")

    def make(parity, k):
        partition = CheckerboardPartition(shape, parity)
        conditioner = ConvConditioner(partition, transformer, key=k,
                                      hidden_channels=hidden_channels, kernel_size=kernel_size)
        if z2_equivariant:
            conditioner = Z2EquivariantConditioner(conditioner, transformer)
        return Coupling(partition, transformer, conditioner)

    def pair(k):
        k0, k1 = jax.random.split(k)
        return Chain([make(0, k0), make(1, k1)])

    couplings = Scan(pair, jax.random.split(key, num_layers // 2))
    return Transformed(base, Chain([FourierScaling(shape), couplings]) if fourier else couplings)
