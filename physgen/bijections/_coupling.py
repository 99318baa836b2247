r"""Coupling layers: a partition × a transformer × a conditioner.

One example ``x`` splits into a conditioning view ``x_c`` and a transformed view ``x_t``
(:class:`FlatPartition`: entries by split point or mask; :class:`CheckerboardPartition`: a
lattice field, Albergo, Kanwar & Shanahan, PRD 100, 034515 (2019)); a conditioner computes
the parameters ``θ = c(x_c, condition)`` and a transformer (affine, spline, see
``_transformers.py``) maps ``x_t`` entry by entry: ``y_t = τ(x_t; θ)``, ``x_c`` unchanged.
RealNVP/NICE (Dinh et al.) and neural spline couplings (Durkan et al. 2019) are instances.
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._base import Array, ArrayLike, Key, Scalar, Shape
from ..nn import MLP, PeriodicConvNet
from ._base import AbstractBijection
from ._transformers import AbstractTransformer
from ._utils import as_shape, check_inputs


def checkerboard(shape: Shape, parity: int) -> np.ndarray:
    """Bool mask, True on the sites with ``(x₁ + x₂) mod 2 == parity``, shape ``shape``."""
    i, j = np.indices(tuple(shape))
    return (i + j) % 2 == parity


class AbstractPartition(eqx.Module):
    """Splits one example of shape ``shape`` into ``(x_c, x_t) = split(x)``: the view the
    conditioner reads and the entries the transformer maps. ``merge(x_c, y_t)`` is the output,
    with the mapped entries ``y_t`` in place of ``x_t``; ``sum(log_derivatives)`` (one per
    entry of ``x_t``) is the coupling's log-det. ``y_t`` and the log-derivatives may come in
    ``x_t``'s shape or flattened (see :class:`AbstractTransformer`)."""

    shape: eqx.AbstractVar[Shape]

    @abc.abstractmethod
    def split(self, x: Array) -> tuple[Array, Array]:
        """``(x_c, x_t)``."""

    @abc.abstractmethod
    def merge(self, x_c: Array, y_t: Array) -> Array:
        """The example with ``x_c`` kept and ``y_t`` in place of ``x_t``."""

    @abc.abstractmethod
    def sum(self, log_derivatives: Array) -> Scalar:
        """The sum over the transformed entries."""


class FlatPartition(AbstractPartition):
    """The flattened entries of an example of shape ``shape``: ``x_c`` the conditioning ones
    (``mask`` True, or the first ``split``; default ``split = size // 2``), ``x_t`` the
    others, both vectors in their order in ``x``.

    A prefix ``x_c`` is sliced rather than gathered: inside a stacked ``Scan`` the index
    arrays are traced, and gathers (scatter-adds in the backward pass) are markedly slower
    than slices on CPU."""

    cond_idx: Array
    trans_idx: Array
    prefix: int | None = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)

    def __init__(
        self, shape: Shape | int, *, mask: ArrayLike | None = None, split: int | None = None
    ):
        self.shape = as_shape(shape)
        size = math.prod(self.shape)
        if mask is not None and split is not None:
            raise ValueError("give either mask or split, not both")
        if mask is not None:
            m = np.asarray(mask)
            if m.dtype != bool or m.shape != self.shape:
                raise ValueError(
                    f"mask must be a bool array of shape {self.shape} (True = conditioning, "
                    f"left unchanged), got dtype {m.dtype} and shape {m.shape}"
                )
            m = m.reshape(-1)
        else:
            split = size // 2 if split is None else split
            if not isinstance(split, (int, np.integer)) or not 0 <= split < size:
                raise ValueError(f"split must be an int in [0, {size}), got {split!r}")
            m = np.arange(size) < split
        if m.all():
            raise ValueError("the coupling mask leaves no entry to transform")
        cond_idx, trans_idx = np.flatnonzero(m), np.flatnonzero(~m)
        self.cond_idx = jnp.asarray(cond_idx.astype(np.int32))
        self.trans_idx = jnp.asarray(trans_idx.astype(np.int32))
        contiguous = np.array_equal(cond_idx, np.arange(cond_idx.size))
        self.prefix = int(cond_idx.size) if contiguous else None

    def split(self, x: Array) -> tuple[Array, Array]:
        flat = x.reshape(-1)
        if self.prefix is not None:
            return flat[: self.prefix], flat[self.prefix :]
        return flat[self.cond_idx], flat[self.trans_idx]

    def merge(self, x_c: Array, y_t: Array) -> Array:
        if self.prefix is not None:
            return jnp.concatenate([x_c, y_t]).reshape(self.shape)
        flat = jnp.zeros(math.prod(self.shape), y_t.dtype)
        return flat.at[self.cond_idx].set(x_c).at[self.trans_idx].set(y_t).reshape(self.shape)

    def sum(self, log_derivatives: Array) -> Scalar:
        return jnp.sum(log_derivatives)


class CheckerboardPartition(AbstractPartition):
    """A periodic lattice field ``φ`` of shape ``(L₁, L₂)``: ``x_c = m ⊙ φ`` with ``m`` the
    sites of one checkerboard colour, ``(x₁ + x₂) mod 2 = parity`` (left unchanged), and
    ``x_t = φ``: the transformer maps every site and the merge keeps the other colour.

    The checkerboard is invariant under the translations ``s`` with ``s₁ + s₂`` even, so with a
    translation-equivariant conditioner (a periodic conv net) and even ``L₁, L₂`` the coupling
    commutes with them: ``f(roll(φ, s)) = roll(f(φ), s)`` with the same log-det."""

    parity: int = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)

    def __init__(self, shape: Shape, parity: int):
        shape = as_shape(shape)
        if len(shape) != 2 or min(shape) < 2:
            raise ValueError(f"a checkerboard acts on a 2-D field (L1, L2), L >= 2; got {shape}")
        if parity not in (0, 1):
            raise ValueError(f"parity must be 0 or 1, got {parity!r}")
        self.shape = shape
        self.parity = int(parity)

    def split(self, x: Array) -> tuple[Array, Array]:
        return jnp.asarray(checkerboard(self.shape, self.parity), x.dtype) * x, x

    # The masks take the layout the transformer computed in (flat or the field's), the kept
    # colour comes from x_c rather than x, and the log-det masks by a product: XLA rounds
    # fused elementwise functions and orders cotangent sums by expression and loop shape,
    # and these forms keep the numbers of affine lattice flows trained before, bit for bit.
    def merge(self, x_c: Array, y_t: Array) -> Array:
        active = checkerboard(self.shape, 1 - self.parity).reshape(y_t.shape)
        return jnp.where(active, y_t, x_c.reshape(y_t.shape)).reshape(self.shape)

    def sum(self, log_derivatives: Array) -> Scalar:
        active = checkerboard(self.shape, 1 - self.parity).reshape(log_derivatives.shape)
        return jnp.sum(jnp.asarray(active, log_derivatives.dtype) * log_derivatives)


def _views(partition: AbstractPartition):
    """Shapes of ``(x_c, x_t)``, without computing them."""
    return jax.eval_shape(partition.split, jax.ShapeDtypeStruct(partition.shape, jnp.float32))


def _check_output(fn, args, expected, what):
    out = eqx.filter_eval_shape(fn, *args)
    if getattr(out, "shape", None) != expected:
        raise ValueError(
            f"{what} maps {args[0].shape} to {getattr(out, 'shape', out)}, expected {expected}"
        )


class AbstractConditioner(eqx.Module):
    """``θ = c(x_c, condition)``: the transformer's parameters, shape
    ``(num_params,) + x_t.shape``, from the conditioning view (and ``condition``, of shape
    ``cond_shape``, if that is not ``None``)."""

    cond_shape: eqx.AbstractVar[Shape | None]

    @abc.abstractmethod
    def __call__(self, x_c: Array, condition: Array | None = None) -> Array:
        """The parameters ``θ``."""


class MLPConditioner(AbstractConditioner):
    """``θ = net([vec(x_c), vec(condition)])``, the flat output read into
    ``(num_params,) + x_t.shape`` in the transformer's ``flat_by_entry`` order.

    ``net`` defaults to a :class:`~physgen.nn.MLP` (``width``, ``depth``) with a
    zero-initialised last layer, so a new coupling is the identity; any callable module
    ``(n_in,) -> (num_params · n_t,)`` may be given instead, ``n_in = n_c + n_angles +
    prod(cond_shape)``.

    ``circular``: a bool mask of shape ``partition.shape`` marking the entries that are
    angles (e.g. torsions); those the conditioner reads enter the net as ``(cos, sin)``
    (appended after the other entries), so ``θ`` is ``2π``-periodic in them. With a
    :class:`CircularSplineTransformer` on the transformed angles the coupling is then
    periodic in every angle it reads or maps."""

    net: eqx.Module
    num_params: int = eqx.field(static=True)
    by_entry: bool = eqx.field(static=True)
    trans_shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)
    angles: tuple[int, ...] = eqx.field(static=True)
    others: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        partition: AbstractPartition,
        transformer: AbstractTransformer,
        *,
        key: Key | None = None,
        width: int = 32,
        depth: int = 2,
        cond_shape: Shape | None = None,
        net: eqx.Module | None = None,
        circular: ArrayLike | None = None,
    ):
        x_c, x_t = _views(partition)
        self.cond_shape = None if cond_shape is None else as_shape(cond_shape, "cond_shape")
        if circular is None:
            angles = np.zeros(x_c.size, dtype=bool)
        else:
            mask = np.asarray(circular)
            if mask.dtype != bool or mask.shape != tuple(partition.shape):
                raise ValueError(f"circular must be a bool mask of shape {partition.shape}, "
                                 f"got dtype {mask.dtype} and shape {mask.shape}")
            # the entries of x_c that are angles: split the mask as the partition splits x
            with jax.ensure_compile_time_eval():
                angles = np.asarray(partition.split(jnp.asarray(mask, jnp.float32))[0])
            angles = angles.reshape(-1) > 0.5
        self.angles = tuple(int(i) for i in np.flatnonzero(angles))
        self.others = tuple(int(i) for i in np.flatnonzero(~angles))
        n_in = x_c.size + len(self.angles) + (
            0 if cond_shape is None else math.prod(self.cond_shape))
        n_out = transformer.num_params * x_t.size
        if net is None:
            if n_in == 0:
                raise ValueError(
                    "the coupling has nothing to condition on (no unchanged entries and no "
                    "cond_shape); use an elementwise bijection instead"
                )
            net = MLP(n_in, n_out, width, depth, key=key, zero_init_last=True)
        elif not callable(net):
            raise TypeError(f"net must be callable, got {type(net).__name__}")
        else:
            _check_output(net, (jax.ShapeDtypeStruct((n_in,), jnp.float32),), (n_out,), "net")
        self.net = net
        self.num_params = transformer.num_params
        self.by_entry = transformer.flat_by_entry
        self.trans_shape = tuple(x_t.shape)

    def __call__(self, x_c: Array, condition: Array | None = None) -> Array:
        inp = x_c.reshape(-1)
        if self.angles:
            a = inp[np.array(self.angles)]
            inp = jnp.concatenate([inp[np.array(self.others, dtype=int)], jnp.cos(a),
                                   jnp.sin(a)])
        if self.cond_shape is not None:
            inp = jnp.concatenate([inp, jnp.reshape(condition, -1).astype(inp.dtype)])
        out = self.net(inp)
        out = out.reshape(-1, self.num_params).T if self.by_entry else out
        return out.reshape((self.num_params,) + self.trans_shape)


class ConvConditioner(AbstractConditioner):
    """``θ = net(x_c)`` for a 2-D field view ``x_c`` (one input channel, one output channel
    per parameter), e.g. the masked field of a :class:`CheckerboardPartition`.

    ``net`` defaults to a :class:`~physgen.nn.PeriodicConvNet` (``hidden_channels``,
    ``kernel_size``, circular padding, so it commutes with lattice translations) with a
    zero-initialised last layer. Unconditional."""

    net: PeriodicConvNet
    cond_shape: None = eqx.field(static=True)

    def __init__(
        self,
        partition: AbstractPartition,
        transformer: AbstractTransformer,
        *,
        key: Key | None = None,
        hidden_channels: tuple[int, ...] = (8, 8),
        kernel_size: int = 3,
        net: PeriodicConvNet | None = None,
    ):
        x_c, x_t = _views(partition)
        if len(x_c.shape) != 2 or x_t.shape != x_c.shape:
            raise ValueError(
                "a conv conditioner needs a partition with 2-D field views (e.g. "
                f"CheckerboardPartition); got x_c {x_c.shape}, x_t {x_t.shape}"
            )
        if net is None:
            net = PeriodicConvNet(1, transformer.num_params, hidden_channels, kernel_size,
                                  key=key, zero_init_last=True)
        self.net = net
        self.cond_shape = None

    def __call__(self, x_c: Array, condition: Array | None = None) -> Array:
        return self.net(x_c[None])


class Z2EquivariantConditioner(AbstractConditioner):
    r"""``θ_p(x_c) = ½[c_p(x_c) + σ_p c_p(−x_c)]`` with ``σ = transformer.parities``, so
    ``θ(−x_c) = σ ⊙ θ(x_c)`` and the coupling is Z2-equivariant: ``f(−x) = −f(x)`` with an
    equal log-det (the condition, if any, is not negated). Refuses transformers without
    parities."""

    conditioner: AbstractConditioner
    parities: tuple[int, ...] = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)

    def __init__(self, conditioner: AbstractConditioner, transformer: AbstractTransformer):
        if transformer.parities is None:
            raise ValueError(
                f"{type(transformer).__name__} has no Z2-equivariant parameterisation"
            )
        self.conditioner = conditioner
        self.parities = tuple(transformer.parities)
        self.cond_shape = conditioner.cond_shape

    def __call__(self, x_c: Array, condition: Array | None = None) -> Array:
        both = jax.vmap(self.conditioner, in_axes=(0, None))(jnp.stack([x_c, -x_c]), condition)
        return jnp.stack([0.5 * (both[0, p] - both[1, p]) if s < 0 else
                          0.5 * (both[0, p] + both[1, p]) for p, s in enumerate(self.parities)])


class Coupling(AbstractBijection):
    r"""Coupling layer on one example of shape ``partition.shape``:

    ``(x_c, x_t) = partition.split(x)``, ``θ = conditioner(x_c, condition)``,
    ``y = partition.merge(x_c, τ(x_t; θ))`` with ``τ = transformer`` and
    ``log|det ∂y/∂x| = partition.sum(log τ'(x_t; θ))``. The inverse uses the same ``θ``
    (``x_c`` is unchanged). ``cond_shape`` is the conditioner's.
    """

    # conditioner first: the order of the leaves is the format of saved models
    conditioner: AbstractConditioner
    partition: AbstractPartition
    transformer: AbstractTransformer
    shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)

    def __init__(
        self,
        partition: AbstractPartition,
        transformer: AbstractTransformer,
        conditioner: AbstractConditioner,
    ):
        for name, value, cls in (("partition", partition, AbstractPartition),
                                 ("transformer", transformer, AbstractTransformer),
                                 ("conditioner", conditioner, AbstractConditioner)):
            if not isinstance(value, cls):
                raise TypeError(f"{name} must be an {cls.__name__}, got {type(value).__name__}")
        x_c, x_t = _views(partition)
        cond = conditioner.cond_shape
        cond = None if cond is None else jax.ShapeDtypeStruct(cond, jnp.float32)
        _check_output(conditioner, (x_c, cond), (transformer.num_params,) + x_t.shape,
                      "conditioner")
        self.conditioner = conditioner
        self.partition = partition
        self.transformer = transformer
        self.shape = tuple(partition.shape)
        self.cond_shape = conditioner.cond_shape

    def _apply(self, x, condition, inverse: bool):
        x_c, x_t = self.partition.split(x)
        params = self.conditioner(x_c, condition)
        tau = self.transformer.inverse if inverse else self.transformer.forward
        y_t, log_derivatives = tau(x_t, params)
        return self.partition.merge(x_c, y_t), self.partition.sum(log_derivatives)

    def transform_and_log_det(
        self, x: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        return self._apply(check_inputs(self, x, condition), condition, inverse=False)

    def inverse_and_log_det(
        self, y: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        return self._apply(check_inputs(self, y, condition, "y"), condition, inverse=True)
