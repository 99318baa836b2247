"""Continuous normalizing flow: an ODE solved by diffrax, log-det by the instantaneous change of
variables (Chen et al. 2018; FFJORD, Grathwohl et al. 2019)."""

from __future__ import annotations

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import Array, Key, Scalar, Shape, check_output_shape
from ._base import AbstractBijection
from ._utils import as_shape, check_inputs

_TRACES = ("exact", "hutchinson")
_PROBES = ("rademacher", "gaussian")


def _flat_field(vector_field, t, x_flat, condition, shape):
    return jnp.reshape(vector_field(t, jnp.reshape(x_flat, shape), condition), (-1,))


def _exact_dynamics(t, y, args):
    """``d/dt (x, ℓ) = (v(t, x), tr ∂v/∂x)`` with the trace from the full Jacobian."""
    vector_field, condition, _, shape = args
    x, _ = y

    def f(z):
        out = _flat_field(vector_field, t, z, condition, shape)
        return out, out

    jac, v = jax.jacfwd(f, has_aux=True)(x)
    return v, jnp.trace(jac)


def _hutchinson_dynamics(t, y, args):
    """``d/dt (x, ℓ) = (v(t, x), εᵀ (∂v/∂x) ε)``: one Jacobian-vector product per step."""
    vector_field, condition, probe, shape = args
    x, _ = y
    v, jv = jax.jvp(lambda z: _flat_field(vector_field, t, z, condition, shape), (x,), (probe,))
    return v, jnp.dot(probe, jv)


def _state_dynamics(t, x, args):
    vector_field, condition, _, shape = args
    return _flat_field(vector_field, t, x, condition, shape)


class ContinuousFlow(AbstractBijection):
    """The time-``t0 → t1`` flow map of ``dx/dt = v(t, x, condition)``, on ONE example.

    ``transform_and_log_det(x)`` solves the ODE from ``x(t0) = x`` to ``t1`` together with the
    instantaneous change of variables ``dℓ/dt = tr ∂v/∂x(t, x(t))``, ``ℓ(t0) = 0``, and returns
    ``(x(t1), ℓ(t1))`` with ``ℓ(t1) = log|det ∂x(t1)/∂x(t0)| = ∫_{t0}^{t1} tr ∂v/∂x dt``
    (``t1 < t0`` integrates backward in time, and the integral carries the sign).
    ``inverse_and_log_det`` solves from ``t1`` back to ``t0``. Both use the exact trace
    (``jax.jacfwd``: ``n`` Jacobian-vector products per evaluation on ``n = prod(shape)``
    entries), so ``Transformed(StandardNormal(shape), ContinuousFlow(...)).log_prob`` is exact
    up to the solver tolerance.

    ``transform_and_log_det_estimate(x, key)`` / ``inverse_and_log_det_estimate(y, key)``
    return the same ``x(t1)`` and, for ``trace="hutchinson"``, Hutchinson's unbiased estimate
    ``∫ εᵀ (∂v/∂x) ε dt`` with one probe ``ε`` (``probe="rademacher"`` or ``"gaussian"``,
    ``E[εεᵀ] = I``) drawn from ``key`` and held for the whole solve (FFJORD): one
    Jacobian-vector product per evaluation, for training. With ``trace="exact"`` they ignore
    ``key`` and return the exact value.

    ``vector_field(t, x, condition) -> dx/dt`` is any callable Module acting on one example
    (``x`` and the output have shape ``shape``; ``condition`` has shape ``cond_shape`` or is
    ``None``). Solves go through ``diffrax.diffeqsolve``: ``solver`` (default ``Tsit5()``) with
    a ``PIDController(rtol, atol)`` when ``dt0`` is ``None``, or fixed steps of size ``dt0``
    (``ConstantStepSize``, e.g. ``solver=diffrax.Euler()``), or any ``stepsize_controller``;
    ``adjoint`` sets how gradients are computed (default ``RecursiveCheckpointAdjoint()``:
    discretise then differentiate; ``BacksolveAdjoint``: the continuous adjoint, O(1) memory,
    gradients exact only up to the solver tolerance). A solve
    that fails (e.g. ``max_steps`` reached) raises an error when ``throw=True`` (default);
    with ``throw=False`` it returns NaN, which :func:`physgen.fit` reports.
    """

    vector_field: eqx.Module
    solver: diffrax.AbstractSolver
    stepsize_controller: diffrax.AbstractStepSizeController
    adjoint: diffrax.AbstractAdjoint
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)
    dt0: float | None = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    trace: str = eqx.field(static=True)
    probe: str = eqx.field(static=True)
    throw: bool = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)

    def __init__(
        self,
        vector_field: eqx.Module,
        shape: Shape | int,
        *,
        t0: float = 0.0,
        t1: float = 1.0,
        solver: diffrax.AbstractSolver | None = None,
        rtol: float = 1e-5,
        atol: float = 1e-5,
        dt0: float | None = None,
        stepsize_controller: diffrax.AbstractStepSizeController | None = None,
        max_steps: int = 4096,
        trace: str = "exact",
        probe: str = "rademacher",
        adjoint: diffrax.AbstractAdjoint | None = None,
        cond_shape: Shape | int | None = None,
        throw: bool = True,
    ):
        shape = as_shape(shape)
        cond_shape = None if cond_shape is None else as_shape(cond_shape, "cond_shape")
        if not callable(vector_field):
            raise TypeError(
                f"vector_field must be a callable v(t, x, condition), got "
                f"{type(vector_field).__name__}"
            )
        if trace not in _TRACES:
            raise ValueError(f"trace must be one of {_TRACES}, got {trace!r}")
        if probe not in _PROBES:
            raise ValueError(f"probe must be one of {_PROBES}, got {probe!r}")
        t0, t1 = float(t0), float(t1)
        if not (math.isfinite(t0) and math.isfinite(t1)) or t0 == t1:
            raise ValueError(f"need finite t0 != t1, got t0={t0}, t1={t1}")
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
        solver = diffrax.Tsit5() if solver is None else solver
        adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
        if not isinstance(solver, diffrax.AbstractSolver):
            raise TypeError(f"solver must be a diffrax solver, got {type(solver).__name__}")
        if not isinstance(adjoint, diffrax.AbstractAdjoint):
            raise TypeError(f"adjoint must be a diffrax adjoint, got {type(adjoint).__name__}")
        if dt0 is not None:
            if not (math.isfinite(dt0) and dt0 != 0):
                raise ValueError(f"dt0 must be a finite non-zero step, got {dt0}")
            dt0 = math.copysign(abs(float(dt0)), t1 - t0)
        if stepsize_controller is None:
            if dt0 is None:
                if not (rtol > 0 and atol > 0):
                    raise ValueError(f"rtol and atol must be positive, got {rtol}, {atol}")
                stepsize_controller = diffrax.PIDController(rtol=rtol, atol=atol)
            else:
                stepsize_controller = diffrax.ConstantStepSize()
        elif isinstance(stepsize_controller, diffrax.ConstantStepSize) and dt0 is None:
            raise ValueError("a constant step size needs dt0")
        # The field must map one example of `shape` to `shape`: checked now, not mid-solve.
        x_spec = jax.ShapeDtypeStruct(shape, jnp.result_type(float))
        c_spec = None if cond_shape is None else jax.ShapeDtypeStruct(cond_shape, x_spec.dtype)
        check_output_shape(vector_field, (jnp.zeros(()), x_spec, c_spec), shape,
                           "vector_field v(t, x, condition)")
        self.vector_field = vector_field
        self.solver = solver
        self.stepsize_controller = stepsize_controller
        self.adjoint = adjoint
        self.t0, self.t1, self.dt0 = t0, t1, dt0
        self.max_steps = max_steps
        self.trace, self.probe = trace, probe
        self.throw = bool(throw)
        self.shape, self.cond_shape = shape, cond_shape

    # -- solves ---------------------------------------------------------------------------
    def _dt0(self, t_start, t_end):
        return None if self.dt0 is None else math.copysign(abs(self.dt0), t_end - t_start)

    def _solve(self, x, condition, t_start, t_end, trace, key):
        """``(x(t_end), ∫_{t_start}^{t_end} tr ∂v/∂x dt)`` from ``x(t_start) = x``."""
        flat = jnp.reshape(x, (-1,))
        dtype = jnp.result_type(flat.dtype, float)
        flat = flat.astype(dtype)
        if trace == "exact":
            dynamics, probe = _exact_dynamics, None
        else:
            if self.probe == "rademacher":
                probe = jax.random.rademacher(key, flat.shape, dtype=dtype)
            else:
                probe = jax.random.normal(key, flat.shape, dtype=dtype)
            dynamics = _hutchinson_dynamics
        args = (self.vector_field, condition, probe, self.shape)
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(dynamics),
            self.solver,
            t_start,
            t_end,
            self._dt0(t_start, t_end),
            (flat, jnp.zeros((), dtype)),
            args=args,
            stepsize_controller=self.stepsize_controller,
            adjoint=self.adjoint,
            max_steps=self.max_steps,
            throw=self.throw,
        )
        y, ld = sol.ys[0][-1], sol.ys[1][-1]
        if not self.throw:
            ok = sol.result == diffrax.RESULTS.successful
            y, ld = jnp.where(ok, y, jnp.nan), jnp.where(ok, ld, jnp.nan)
        return jnp.reshape(y, self.shape), ld

    def _key(self, key):
        if self.trace == "hutchinson":
            if key is None:
                raise ValueError("the Hutchinson trace estimate needs a PRNG key")
            return key
        return None

    def transform_and_log_det(
        self, x: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        """``x(t0) = x`` -> ``(x(t1), ∫_{t0}^{t1} tr ∂v/∂x dt)``, exact trace."""
        x = check_inputs(self, x, condition)
        return self._solve(x, condition, self.t0, self.t1, "exact", None)

    def inverse_and_log_det(self, y: Array, condition: Array | None = None) -> tuple[Array, Scalar]:
        """``x(t1) = y`` -> ``(x(t0), ∫_{t1}^{t0} tr ∂v/∂x dt)``, exact trace."""
        y = check_inputs(self, y, condition, "y")
        return self._solve(y, condition, self.t1, self.t0, "exact", None)

    def transform_and_log_det_estimate(
        self, x: Array, key: Key | None = None, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        """As :meth:`transform_and_log_det`, with the trace set by ``trace`` (Hutchinson: an
        unbiased estimate of the log-det from one probe drawn from ``key``)."""
        x = check_inputs(self, x, condition)
        return self._solve(x, condition, self.t0, self.t1, self.trace, self._key(key))

    def inverse_and_log_det_estimate(
        self, y: Array, key: Key | None = None, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        """As :meth:`inverse_and_log_det`, with the trace set by ``trace``."""
        y = check_inputs(self, y, condition, "y")
        return self._solve(y, condition, self.t1, self.t0, self.trace, self._key(key))

    def trajectory(self, x: Array, ts: Array, condition: Array | None = None) -> Array:
        """The path ``x(t)`` from ``x(t0) = x`` at the times ``ts`` (monotone from ``t0``
        towards ``t1``), shape ``(len(ts), *shape)``; no log-det is integrated."""
        x = check_inputs(self, x, condition)
        ts = jnp.asarray(ts)
        if ts.ndim != 1 or ts.shape[0] < 1:
            raise ValueError(f"ts must be a non-empty 1-D array of times, got shape {ts.shape}")
        flat = jnp.reshape(x, (-1,))
        flat = flat.astype(jnp.result_type(flat.dtype, float))
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(_state_dynamics),
            self.solver,
            self.t0,
            self.t1,
            self._dt0(self.t0, self.t1),
            flat,
            args=(self.vector_field, condition, None, self.shape),
            saveat=diffrax.SaveAt(ts=ts.astype(flat.dtype)),
            stepsize_controller=self.stepsize_controller,
            adjoint=self.adjoint,
            max_steps=self.max_steps,
            throw=self.throw,
        )
        return jnp.reshape(sol.ys, (ts.shape[0],) + self.shape)
