"""Planar flow (Rezende & Mohamed 2015) with an invertibility constraint."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import Array, Key, Scalar, Shape
from ._base import AbstractBijection
from ._constraints import unit_positive
from ._utils import as_shape, check_inputs


class Planar(AbstractBijection):
    """``y = x + û tanh(wᵀx + b)`` on one example (flattened to a vector of ``D`` entries).

    Invertibility: ``û = u + (m(wᵀu) - wᵀu) w / |w|^2`` with
    ``m(a) = unit_positive(a) - 1 = -1 + softplus(a + log(e - 1))``, so ``wᵀû = m(wᵀu) > -1``;
    unlike Rezende & Mohamed's ``-1 + softplus(a)`` it has ``m(0) = 0`` and ``m'(0) = 1 - 1/e``,
    so small ``u`` gives small ``û`` and a new layer is close to the identity.
    ``log|det| = log(1 + wᵀû tanh'(wᵀx + b))``.
    Inverse: ``α = wᵀx`` solves the scalar monotone equation ``α + wᵀû tanh(α + b) = wᵀy``
    (bracketed in ``[wᵀy - |wᵀû|, wᵀy + |wᵀû|]``; safeguarded Newton, to machine precision),
    then ``x = y - û tanh(α + b)``. Gradients of the inverse come from the implicit function
    theorem (one differentiable Newton step at the root). ``w``, ``u`` ~ ``N(0, init_scale^2)``,
    ``b = 0`` at init. Unconditional.
    """

    w: Array
    u: Array
    b: Array
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True)
    newton_steps: int = eqx.field(static=True)

    def __init__(
        self, shape: Shape | int, *, key: Key, init_scale: float = 0.1, newton_steps: int = 60
    ):
        shape = as_shape(shape)
        dim = 1
        for s in shape:
            dim *= s
        if dim < 1:
            raise ValueError(f"Planar needs at least one entry, got shape {shape}")
        kw, ku = jax.random.split(key)
        self.w = init_scale * jax.random.normal(kw, (dim,))
        self.u = init_scale * jax.random.normal(ku, (dim,))
        self.b = jnp.zeros(())
        self.shape = shape
        self.cond_shape = None
        self.newton_steps = newton_steps

    def _u_hat(self):
        wu = self.w @ self.u
        w2 = self.w @ self.w
        safe_w2 = jnp.where(w2 > 0, w2, 1)
        m = unit_positive(wu) - 1
        return self.u + (m - wu) * self.w / safe_w2

    def transform_and_log_det(
        self, x: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        x = check_inputs(self, x, condition)
        u_hat = self._u_hat()
        xf = x.reshape(-1)
        h = jnp.tanh(self.w @ xf + self.b)
        y = xf + u_hat * h
        return y.reshape(self.shape), jnp.log1p((self.w @ u_hat) * (1 - h**2))

    def inverse_and_log_det(
        self, y: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        y = check_inputs(self, y, condition, "y")
        u_hat = self._u_hat()
        yf = y.reshape(-1)
        c = self.w @ u_hat  # > -1
        t = self.w @ yf

        def g(alpha, c, t, b):  # increasing in alpha; root = wᵀx
            return alpha + c * jnp.tanh(alpha + b) - t

        def dg(alpha, c, b):
            return 1 + c * (1 - jnp.tanh(alpha + b) ** 2)

        c0, t0, b0 = jax.lax.stop_gradient((c, t, self.b))

        def step(_, state):
            lo, hi, a = state
            val = g(a, c0, t0, b0)
            lo = jnp.where(val < 0, a, lo)
            hi = jnp.where(val > 0, a, hi)
            newton = a - val / dg(a, c0, b0)
            ok = (newton > lo) & (newton < hi) & jnp.isfinite(newton)
            a = jnp.where(val == 0, a, jnp.where(ok, newton, 0.5 * (lo + hi)))
            return lo, hi, a

        lo0, hi0 = t0 - jnp.abs(c0), t0 + jnp.abs(c0)
        _, _, root = jax.lax.fori_loop(0, self.newton_steps, step, (lo0, hi0, t0))
        root = jax.lax.stop_gradient(root)
        # One Newton step with live parameters: exact first derivatives at the root.
        alpha = root - g(root, c, t, self.b) / jax.lax.stop_gradient(dg(root, c0, b0))
        h = jnp.tanh(alpha + self.b)
        x = yf - u_hat * h
        return x.reshape(self.shape), -jnp.log1p(c * (1 - h**2))
