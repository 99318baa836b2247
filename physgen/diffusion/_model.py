"""A score-based diffusion model as a distribution: exact log-likelihood and sampling through the
probability-flow ODE (a :class:`~physgen.bijections.ContinuousFlow`), plus the variational bound."""

from __future__ import annotations

import math
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import (
    Array,
    ArrayLike,
    Estimate,
    Key,
    Scalar,
    Shape,
    check_event_shape,
    check_output_shape,
    check_single_example,
)
from ..bijections._continuous import ContinuousFlow
from ..bijections._utils import as_shape
from ..distributions._base import AbstractDistribution
from ..distributions._transformed import Transformed
from ..nn._time import FourierTimeEmbedding, VectorFieldMLP
from ._sde import VESDE, VPSDE, AbstractSDE

_PARAMETERISATIONS = ("epsilon", "score")
_TRACES = ("exact", "hutchinson")


class ProbabilityFlowField(eqx.Module):
    r"""The probability-flow ODE of an SDE, ``dx/dt = f(x, t) - ½ g(t)² s(x, t, c)``.

    ``score(t, x, condition) -> s`` is any callable acting on one example (e.g. a
    :class:`DiffusionModel`'s ``score``). With the exact score ``∇ log p_t`` the ODE carries
    ``p_T`` to ``p_0`` (Song et al. 2021), so ``Transformed(prior, ContinuousFlow(field,
    shape, t0=T, t1=eps))`` has an exact log-likelihood. One example; batch with vmap.
    """

    sde: AbstractSDE
    score: Callable

    def __init__(self, sde: AbstractSDE, score: Callable):
        if not isinstance(sde, AbstractSDE):
            raise TypeError(f"sde must be an AbstractSDE, got {type(sde).__name__}")
        if not callable(score):
            raise TypeError(f"score must be callable as score(t, x, condition), got {score!r}")
        self.sde = sde
        self.score = score

    def __call__(self, t: ArrayLike, x: Array, condition: Array | None = None) -> Array:
        """``t`` scalar, ``x`` of shape ``shape`` -> ``dx/dt`` of shape ``shape``."""
        return self.sde.probability_flow_drift(t, x, self.score(t, x, condition))


class DiffusionModel(AbstractDistribution):
    r"""A score-based diffusion model ``(sde, network)`` on ``R^shape``.

    The network predicts, for ONE example, either the noise ``ε̂(x_t, t)``
    (``parameterisation="epsilon"``; score ``s = -ε̂/σ(t)``) or the score itself
    (``"score"``; ``ε̂ = -σ(t) s``). It is called as ``network(t, x_flat, c)`` with ``x_flat``
    of shape ``(prod(shape),)`` and returns that shape. Unconditional models pass ``c=None``;
    conditional ones pass ``c = [condition.ravel(), 1]`` (``prod(cond_shape) + 1`` entries),
    and the NULL condition ``c = 0`` for the unconditional score of classifier-free
    guidance (Ho & Salimans 2021): the guided score is
    ``s_w(x|c) = (1 + w) s(x|c) - w s(x|∅)`` with ``w = guidance``.

    As a distribution it is the probability-flow ODE from the prior ``π`` at ``T`` down to
    ``t = eps``: ``sample`` solves it, and ``log_prob`` is EXACT (to the solver tolerance) by
    the instantaneous change of variables with the exact Jacobian trace, through
    :class:`~physgen.bijections.ContinuousFlow` (``solver``, default ``diffrax.Tsit5()``,
    ``rtol``, ``atol``). It is the
    density of ``x(eps)`` of the ODE, i.e. it models the data blurred by the kernel at
    ``eps``. :meth:`variational_bound` is the continuous-time ELBO of the reverse SDE — a
    lower bound, not a likelihood. Use :func:`diffusion_model` to build one with a
    :class:`~physgen.nn.VectorFieldMLP`.
    """

    sde: AbstractSDE
    network: eqx.Module
    solver: diffrax.AbstractSolver
    shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)
    parameterisation: str = eqx.field(static=True)
    eps: float = eqx.field(static=True)
    guidance: float
    rtol: float
    atol: float
    max_steps: int = eqx.field(static=True)

    def __init__(
        self,
        sde: AbstractSDE,
        network: eqx.Module,
        shape: Shape | int,
        *,
        cond_shape: Shape | int | None = None,
        parameterisation: str = "epsilon",
        eps: float = 1e-3,
        guidance: float = 0.0,
        solver: diffrax.AbstractSolver | None = None,
        rtol: float = 1e-5,
        atol: float = 1e-5,
        max_steps: int = 4096,
    ):
        if not isinstance(sde, AbstractSDE):
            raise TypeError(f"sde must be an AbstractSDE, got {type(sde).__name__}")
        if parameterisation not in _PARAMETERISATIONS:
            raise ValueError(
                f"parameterisation must be one of {_PARAMETERISATIONS}, got {parameterisation!r}"
            )
        eps = float(eps)
        if not 0 < eps < sde.T:
            raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps}")
        if not math.isfinite(guidance):
            raise ValueError(f"guidance must be finite, got {guidance}")
        shape = as_shape(shape)
        cond_shape = None if cond_shape is None else as_shape(cond_shape, "cond_shape")
        if cond_shape is None and guidance != 0:
            raise ValueError("classifier-free guidance needs a conditional model (cond_shape)")
        self.sde = sde
        self.network = network
        self.solver = diffrax.Tsit5() if solver is None else solver
        self.shape, self.cond_shape = shape, cond_shape
        self.parameterisation = parameterisation
        self.eps, self.guidance = eps, float(guidance)
        self.rtol, self.atol, self.max_steps = float(rtol), float(atol), int(max_steps)
        size = math.prod(shape)
        c_spec = None
        if cond_shape is not None:
            c_spec = jax.ShapeDtypeStruct((math.prod(cond_shape) + 1,), jnp.result_type(float))
        x_spec = jax.ShapeDtypeStruct((size,), jnp.result_type(float))
        check_output_shape(network, (jnp.zeros(()), x_spec, c_spec), (size,),
                           "network(t, x, c)")

    # -- networks -------------------------------------------------------------------------
    def _network_condition(self, condition, drop):
        if self.cond_shape is None:
            return None
        if condition is None:
            raise ValueError(f"this model needs a condition of shape {self.cond_shape}")
        check_single_example(condition, self.cond_shape, "condition")
        dtype = jnp.result_type(float)
        c = jnp.concatenate([jnp.reshape(condition, (-1,)).astype(dtype), jnp.ones((1,), dtype)])
        return jnp.where(drop, jnp.zeros_like(c), c)

    def _check_x(self, x):
        x = jnp.asarray(x)
        check_single_example(x, self.shape, "x")
        return x

    def noise_prediction(
        self, t: ArrayLike, x: Array, condition: Array | None = None, *, drop: ArrayLike = False
    ) -> Array:
        """Unguided ``ε̂(x, t | c)`` for one ``x`` of shape ``shape``; ``drop=True`` (may be a
        traced bool) uses the null condition. Shape ``shape``."""
        x = self._check_x(x)
        c = self._network_condition(condition, drop)
        t = jnp.asarray(t, dtype=x.dtype)
        out = jnp.reshape(self.network(t, jnp.reshape(x, (-1,)), c), self.shape)
        if self.parameterisation == "epsilon":
            return out
        return -self.sde.marginal_std(t) * out

    def guided_noise_prediction(
        self, t: ArrayLike, x: Array, condition: Array | None = None
    ) -> Array:
        """``ε̂_w = (1 + w) ε̂(x|c) - w ε̂(x|∅)`` (``= ε̂(x|c)`` when ``w = 0``)."""
        eps_c = self.noise_prediction(t, x, condition)
        if self.cond_shape is None or self.guidance == 0:
            return eps_c
        eps_u = self.noise_prediction(t, x, condition, drop=True)
        return (1.0 + self.guidance) * eps_c - self.guidance * eps_u

    def score(self, t: ArrayLike, x: Array, condition: Array | None = None) -> Array:
        """The (guided) score ``s(x, t | c) ≈ ∇ log p_t(x | c)``; shape ``shape``."""
        x = self._check_x(x)
        if self.parameterisation == "score" and (self.cond_shape is None or self.guidance == 0):
            c = self._network_condition(condition, False)
            t = jnp.asarray(t, dtype=x.dtype)
            return jnp.reshape(self.network(t, jnp.reshape(x, (-1,)), c), self.shape)
        return -self.guided_noise_prediction(t, x, condition) / self.sde.marginal_std(t)

    def with_guidance(self, guidance: float) -> DiffusionModel:
        """The same model with guidance weight ``w = guidance`` (0: plain conditional)."""
        if self.cond_shape is None:
            raise ValueError("classifier-free guidance needs a conditional model (cond_shape)")
        if not math.isfinite(guidance):
            raise ValueError(f"guidance must be finite, got {guidance}")
        return eqx.tree_at(lambda m: m.guidance, self, float(guidance))

    # -- the probability-flow ODE as a flow -----------------------------------------------
    def flow(self) -> ContinuousFlow:
        """The probability-flow ODE map from ``t = T`` (prior) to ``t = eps`` (data)."""
        return ContinuousFlow(
            ProbabilityFlowField(self.sde, self.score),
            self.shape,
            t0=self.sde.T,
            t1=self.eps,
            solver=self.solver,
            rtol=self.rtol,
            atol=self.atol,
            max_steps=self.max_steps,
            cond_shape=self.cond_shape,
        )

    def as_transformed(self) -> Transformed:
        """``Transformed(prior, flow())``: the same distribution as a plain flow."""
        return Transformed(self.sde.prior(self.shape), self.flow())

    def _log_prob(self, x: Array, condition: Array | None = None) -> Scalar:
        return self.as_transformed()._log_prob(x, condition)

    def _sample(self, key: Key, condition: Array | None = None) -> Array:
        return self.as_transformed()._sample(key, condition)

    def _sample_and_log_prob(self, key: Key, condition: Array | None = None):
        return self.as_transformed()._sample_and_log_prob(key, condition)

    def trajectory(self, x_T: Array, ts: Array, condition: Array | None = None) -> Array:
        """The ODE path from ``x(T) = x_T`` (one example) at times ``ts`` (decreasing from
        ``T`` to ``eps``); shape ``(len(ts), *shape)``."""
        return self.flow().trajectory(x_T, ts, condition)

    # -- the variational bound ------------------------------------------------------------
    def _bound_draw(self, key, x, condition, trace, importance_sampling):
        sde, eps, T = self.sde, self.eps, self.sde.T
        dtype = x.dtype
        k_t, k_z, k_p = jax.random.split(key, 3)
        if importance_sampling:
            lam_lo, lam_hi = sde.log_snr(T), sde.log_snr(eps)
            lam = jax.random.uniform(k_t, (), dtype, lam_lo, lam_hi)
            t = jnp.clip(sde.log_snr_inverse(lam), eps, T)
            # density p(t) = (g²/σ²)(t) / (λ(eps) - λ(T)): the estimate of ∫ h dt is h / p(t)
            inv_density = (lam_hi - lam_lo) * sde.marginal_std(t) ** 2 / sde.diffusion(t) ** 2
        else:
            t = jax.random.uniform(k_t, (), dtype, eps, T)
            inv_density = T - eps
        a, v = sde.transition(eps, t)
        xt = a * x + jnp.sqrt(v) * jax.random.normal(k_z, x.shape, dtype)
        flat = jnp.reshape(xt, (-1,))

        def s_flat(z):
            return jnp.reshape(self.score(t, jnp.reshape(z, self.shape), condition), (-1,))

        if trace == "exact":
            jac, s = jax.jacfwd(lambda z: (s_flat(z), s_flat(z)), has_aux=True)(flat)
            div = jnp.trace(jac)
        else:
            probe = jax.random.rademacher(k_p, flat.shape, dtype=dtype)
            s, jv = jax.jvp(s_flat, (flat,), (probe,))
            div = jnp.dot(probe, jv)
        d = flat.shape[0]
        g2 = sde.diffusion(t) ** 2
        integrand = g2 * (2.0 * div + jnp.sum(s**2)) - 2.0 * d * sde.drift_coefficient(t)
        # E_{x_T | x_eps}[log π(x_T)] in closed form (Gaussian kernel, Gaussian prior)
        a_T, v_T = sde.transition(eps, T)
        s2 = sde.prior_std() ** 2
        prior = -0.5 * d * jnp.log(2 * jnp.pi * s2) - 0.5 * (a_T**2 * jnp.sum(x**2) + d * v_T) / s2
        return prior - 0.5 * inv_density * integrand

    def variational_bound(
        self,
        key: Key,
        x: Array,
        condition: Array | None = None,
        *,
        num_samples: int = 16,
        trace: str = "exact",
        importance_sampling: bool = False,
    ) -> Estimate:
        r"""Monte Carlo estimate of the continuous-time ELBO ``≤ log p^SDE(x)`` — a BOUND.

        Song et al. 2021 (maximum-likelihood training, Thm. 1, in its divergence form), from
        ``x(eps) = x`` and with ``t ~ U(eps, T)``:

        ``log p(x) ≥ E[log π(x_T)] - ½ ∫_eps^T E[g² (2 ∇·s + |s|²) - 2 ∇·f](x_t, t) dt``,

        expectations over ``x_t | x_eps = x`` (the forward kernel); ``E[log π(x_T)]`` is in
        closed form. It bounds the likelihood of the reverse SDE, which equals the ODE's
        (:meth:`log_prob`) when ``s`` is the exact score and ``π = p_T``; it is then tight.
        ``trace``: divergence by ``jax.jacfwd`` (``"exact"``) or one Rademacher probe.
        ``x`` of shape ``(*batch, *shape)`` -> :class:`~physgen.reweighting.Estimate` with
        ``value`` and ``stderr`` (over the ``num_samples`` draws) of shape ``batch``.
        """
        if trace not in _TRACES:
            raise ValueError(f"trace must be one of {_TRACES}, got {trace!r}")
        if not isinstance(num_samples, int) or num_samples < 2:
            raise ValueError(f"num_samples must be an int >= 2 (for the error), got {num_samples}")
        x = jnp.asarray(x, dtype=jnp.result_type(x, float))
        check_event_shape(x, self.shape, "x")
        self._check_condition(condition)
        batch = x.shape[: x.ndim - len(self.shape)]
        flat = x.reshape((-1,) + self.shape)
        n = flat.shape[0]
        if condition is None or condition.ndim == len(self.cond_shape):
            cond = (
                None if condition is None else jnp.broadcast_to(condition, (n,) + self.cond_shape)
            )
        else:
            cond = jnp.broadcast_to(condition, batch + self.cond_shape).reshape(
                (n,) + self.cond_shape
            )
        keys = jax.random.split(key, (n, num_samples))

        def per_point(ks, xi, ci):
            return jax.vmap(lambda k: self._bound_draw(k, xi, ci, trace, importance_sampling))(ks)

        draws = jax.vmap(per_point, in_axes=(0, 0, None if cond is None else 0))(keys, flat, cond)
        value = jnp.mean(draws, axis=-1)
        se = jnp.std(draws, axis=-1, ddof=1) / math.sqrt(num_samples)
        return Estimate(value.reshape(batch), se.reshape(batch))


def diffusion_model(
    key: Key,
    shape: Shape | int,
    sde: AbstractSDE | None = None,
    *,
    width: int = 128,
    depth: int = 3,
    embed_dim: int = 32,
    cond_shape: Shape | int | None = None,
    parameterisation: str = "epsilon",
    eps: float | None = None,
    activation: Callable[[Array], Array] = jax.nn.silu,
    **kwargs,
) -> DiffusionModel:
    """A :class:`DiffusionModel` with a :class:`~physgen.nn.VectorFieldMLP` network.

    ``sde`` defaults to ``VPSDE()``; ``eps`` to ``1e-3`` (VP) or ``1e-5`` (VE).
    The time embedding uses frequencies ``1..100`` (``t ∈ [0, 1]``). Other keyword
    arguments (``solver``, ``rtol``, ``atol``, ``guidance``, ...) go to :class:`DiffusionModel`.
    """
    sde = VPSDE() if sde is None else sde
    if eps is None:
        eps = 1e-5 if isinstance(sde, VESDE) else 1e-3
    shape = as_shape(shape)
    cond_shape = None if cond_shape is None else as_shape(cond_shape, "cond_shape")
    cond_dim = None if cond_shape is None else math.prod(cond_shape) + 1
    net = VectorFieldMLP(
        key,
        math.prod(shape),
        width=width,
        depth=depth,
        cond_dim=cond_dim,
        activation=activation,
        embedding=FourierTimeEmbedding(embed_dim, min_frequency=1.0, max_frequency=100.0),
    )
    return DiffusionModel(
        sde, net, shape, cond_shape=cond_shape, parameterisation=parameterisation, eps=eps, **kwargs
    )
