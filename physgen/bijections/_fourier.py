"""``FourierScaling``: a translation-invariant linear map, diagonal in momentum space."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._base import Array, Scalar, Shape
from ._base import AbstractBijection
from ._constraints import check_positive, inv_positive, positive
from ._utils import as_shape, check_inputs


def _reflect(a: Array) -> Array:
    """``a(−k)`` on the periodic momentum grid: index ``i ↦ (−i) mod L`` on every axis."""
    axes = tuple(range(a.ndim))
    return jnp.roll(jnp.flip(a, axes), 1, axes)


class FourierScaling(AbstractBijection):
    """``y = F⁻¹[σ(k) · F[x]]`` on a periodic lattice of ``shape``: each momentum mode scaled.

    ``F`` is the discrete Fourier transform over all axes and ``σ(k) > 0`` one learned scale per
    momentum, symmetrised to ``σ(k) = σ(−k)`` so that ``y`` is real. The map is a circulant
    (periodic convolution), so it commutes with every lattice translation and with
    ``x → −x``; ``log|det| = Σ_k log σ(k)``. Pushed through it, ``N(0, I)`` becomes the
    translation-invariant Gaussian with ``⟨|x̃(k)|²⟩ = V σ(k)²`` — e.g. the free-field
    propagator ``σ(k)² = 1/(k̂² + m²)`` — which a stack of local couplings builds only slowly.
    Stored as ``raw_scale`` (softplus convention); a new layer is the identity.
    """

    raw_scale: Array
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True)

    def __init__(self, shape: int | tuple[int, ...], scale: Array | float = 1.0):
        shape = as_shape(shape)
        scale = jnp.broadcast_to(jnp.asarray(scale, jnp.result_type(float)), shape)
        check_positive(scale, "FourierScaling: scale")
        if not isinstance(scale, jax.core.Tracer) and not np.allclose(scale, _reflect(scale)):
            raise ValueError("FourierScaling: scale must satisfy σ(k) = σ(−k) (a real map)")
        self.raw_scale = inv_positive(scale)
        self.shape = shape
        self.cond_shape = None

    @property
    def scale(self) -> Array:
        """``σ(k)``, shape ``shape``, indexed like ``jnp.fft.fftn``'s output."""
        s = positive(self.raw_scale)
        return 0.5 * (s + _reflect(s))

    def _apply(self, x: Array, s: Array) -> Array:
        return jnp.fft.ifftn(s * jnp.fft.fftn(x)).real.astype(x.dtype)

    def transform_and_log_det(
        self, x: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        x = check_inputs(self, x, condition)
        s = self.scale
        return self._apply(x, s), jnp.sum(jnp.log(s))

    def inverse_and_log_det(self, y: Array, condition: Array | None = None) -> tuple[Array, Scalar]:
        y = check_inputs(self, y, condition, "y")
        s = self.scale
        return self._apply(y, 1 / s), -jnp.sum(jnp.log(s))
