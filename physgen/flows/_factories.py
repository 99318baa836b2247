"""Factories returning ``Transformed(base, bijection)`` normalizing flows on ``R^dim``.

Every factory stacks identical layers with :class:`~physgen.bijections.Scan`, so compile time
does not grow with ``num_layers``, and every new flow is the identity map (zero-initialised
conditioners): at initialisation the flow density equals the base density.
"""

from __future__ import annotations

import jax

from .._base import Key, Shape
from ..bijections import (
    AbstractTransformer,
    AffineTransformer,
    Chain,
    Coupling,
    FlatPartition,
    Invert,
    MaskedAutoregressive,
    MLPConditioner,
    Planar,
    Reverse,
    Scan,
    SplineTransformer,
)
from ..distributions import AbstractDistribution, StandardNormal, Transformed


def _base(dim: int, base: AbstractDistribution | None) -> AbstractDistribution:
    if dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim}")
    base = StandardNormal((dim,)) if base is None else base
    if tuple(base.shape) != (dim,):
        raise ValueError(f"base distribution has shape {base.shape}, expected ({dim},)")
    return base


def _coupling_flow(key, dim, num_layers, transformer: AbstractTransformer, width, depth,
                   cond_shape, base) -> Transformed:
    """``num_layers`` couplings on the first ``dim // 2`` entries, each followed by a
    reversal of the coordinates."""
    if dim < 2 and cond_shape is None:
        raise ValueError("a coupling flow needs dim >= 2 (or a condition)")

    def layer(k):
        partition = FlatPartition((dim,))
        conditioner = MLPConditioner(partition, transformer, key=k, width=width, depth=depth,
                                     cond_shape=cond_shape)
        return Chain([Coupling(partition, transformer, conditioner), Reverse((dim,))])

    return Transformed(_base(dim, base), Scan(layer, jax.random.split(key, num_layers)))


def real_nvp(
    key: Key,
    dim: int,
    *,
    num_layers: int = 8,
    width: int = 64,
    depth: int = 2,
    additive: bool = False,
    cond_shape: Shape | None = None,
    base: AbstractDistribution | None = None,
) -> Transformed:
    """RealNVP (Dinh et al. 2017; ``additive=True``: NICE): ``num_layers`` affine couplings
    on the first ``dim // 2`` entries, each followed by a reversal of the coordinates."""
    return _coupling_flow(key, dim, num_layers, AffineTransformer(additive=additive), width,
                          depth, cond_shape, base)


def neural_spline_flow(
    key: Key,
    dim: int,
    *,
    num_layers: int = 8,
    num_bins: int = 8,
    interval: float = 4.0,
    width: int = 64,
    depth: int = 2,
    cond_shape: Shape | None = None,
    base: AbstractDistribution | None = None,
) -> Transformed:
    """Neural spline flow (Durkan et al. 2019): rational-quadratic spline couplings with
    ``num_bins`` bins on ``[-interval, interval]`` (identity tails), each followed by a
    reversal of the coordinates."""
    return _coupling_flow(key, dim, num_layers, SplineTransformer(num_bins, interval), width,
                          depth, cond_shape, base)


def masked_autoregressive_flow(
    key: Key,
    dim: int,
    *,
    num_layers: int = 5,
    transformer: str = "affine",
    width: int = 64,
    depth: int = 2,
    inverse_autoregressive: bool = False,
    cond_shape: Shape | None = None,
    base: AbstractDistribution | None = None,
) -> Transformed:
    """Masked autoregressive flow (Papamakarios et al. 2017): ``log_prob`` is one parallel
    pass per layer, sampling is sequential. ``inverse_autoregressive=True`` gives IAF
    (Kingma et al. 2016): parallel sampling, sequential ``log_prob`` of external points.
    ``transformer``: ``"affine"`` or ``"spline"`` (8 bins on ``[-4, 4]``)."""
    transformers = {"affine": AffineTransformer, "spline": SplineTransformer}
    if transformer not in transformers:
        raise ValueError(f"transformer must be 'affine' or 'spline', got {transformer!r}")
    tau = transformers[transformer]()

    def layer(k):
        maf = MaskedAutoregressive((dim,), key=k, transformer=tau, width=width, depth=depth,
                                   cond_shape=cond_shape)
        return Chain([Invert(maf) if inverse_autoregressive else maf, Reverse((dim,))])

    return Transformed(_base(dim, base), Scan(layer, jax.random.split(key, num_layers)))


def planar_flow(
    key: Key,
    dim: int,
    *,
    num_layers: int = 16,
    base: AbstractDistribution | None = None,
) -> Transformed:
    """Planar flow (Rezende & Mohamed 2015), ``num_layers`` invertible planar maps."""
    return Transformed(
        _base(dim, base), Scan(lambda k: Planar((dim,), key=k), jax.random.split(key, num_layers))
    )
