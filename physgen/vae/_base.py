"""Latent-variable models: a lower bound on log p(x) and an estimate of it, never a density."""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import AbstractDensityBound, Array, Key, Scalar, Shape, check_event_shape

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_kl(mean: Array, log_var: Array) -> Scalar:
    """Closed-form ``KL(N(mean, diag exp(log_var)) ‖ N(0, I))``; ``(d,)``, ``(d,)`` -> scalar.

    ``KL = ½ Σ_j (σ_j² + μ_j² − 1 − log σ_j²)``.
    """
    return 0.5 * jnp.sum(jnp.exp(log_var) + mean**2 - 1.0 - log_var)


def diag_gaussian_log_prob(x: Array, mean: Array, log_var: Array) -> Scalar:
    """``log N(x; mean, diag exp(log_var))`` summed over all entries -> scalar."""
    return -0.5 * jnp.sum((x - mean) ** 2 * jnp.exp(-log_var) + log_var + _LOG_2PI)


def _batched(fn, model, key, x, arg):
    """``fn(model, key_i, x_i, arg)`` over the leading dims of ``x``; one key per example."""
    event_ndim = len(model.shape)
    batch_shape = x.shape[: x.ndim - event_ndim]
    n = math.prod(batch_shape)
    flat = x.reshape((n,) + x.shape[x.ndim - event_ndim :])
    out = jax.vmap(lambda k, xi: fn(model, k, xi, arg))(jax.random.split(key, n), flat)
    return jax.tree_util.tree_map(lambda a: a.reshape(batch_shape + a.shape[1:]), out)


@eqx.filter_jit
def _jit_call(fn, *args):
    """``fn(*args)`` compiled once per ``fn`` and argument structure (not op by op)."""
    return fn(*args)


class AbstractLatentVariableModel(AbstractDensityBound):
    """``p(x) = ∫ p(x | z) p(z) dz`` with an amortised posterior ``q(z | x)``.

    There is no exact ``log_prob``: the marginal is an intractable integral. What exists is

    - ``elbo(key, x, beta)``: ``E_q[log p(x|z)] − β KL(q(z|x) ‖ p(z))``, a lower bound on
      ``log p(x)`` for ``β = 1`` (closed-form Gaussian KL, one reparameterised sample);
    - ``iwae(key, x, num_samples)``: ``log (1/K) Σ_k p(x, z_k) / q(z_k | x)``, ``z_k ~ q``,
      whose expectation increases with ``K`` towards ``log p(x)`` (Burda et al. 2016);
    - ``log_prob_bound``: the IWAE bound (``num_samples=1``: the ELBO estimator);
    - ``log_prob_estimate(key, x, num_samples)``: the importance-sampled estimate of
      ``log p(x)`` with its standard error (delta method over the ``K`` weights). It is
      consistent as ``K → ∞`` but biased low for every finite ``K``.

    Concrete classes implement the single-example methods ``encode(x) -> (mean, log_var)``
    (of ``q(z|x)``, shapes ``latent_shape``), ``log_likelihood(x, z)`` (``log p(x|z)``) and
    ``decode_sample(key, z)`` (a draw of ``x ~ p(x|z)``). The public methods broadcast over
    the leading dimensions of ``x``: ``x`` of shape ``(*batch, *shape)`` -> ``(*batch,)``.
    The prior is ``p(z) = N(0, I)``.
    """

    shape: eqx.AbstractVar[Shape]
    latent_shape: eqx.AbstractVar[Shape]

    @abc.abstractmethod
    def encode(self, x: Array) -> tuple[Array, Array]: ...

    @abc.abstractmethod
    def log_likelihood(self, x: Array, z: Array) -> Scalar: ...

    @abc.abstractmethod
    def decode_mean(self, z: Array) -> Array: ...

    @abc.abstractmethod
    def decode_sample(self, key: Key, z: Array) -> Array: ...

    # -- single example ------------------------------------------------------------------
    def _log_weights(self, key: Key, x: Array, num_samples: int) -> Array:
        """``log p(x, z_k) − log q(z_k | x)`` for ``K`` draws ``z_k ~ q(·|x)``, shape ``(K,)``."""
        mean, log_var = self.encode(x)
        eps = jax.random.normal(key, (num_samples,) + tuple(self.latent_shape), mean.dtype)
        z = mean + jnp.exp(0.5 * log_var) * eps

        def one(zk, ek):
            log_q = -0.5 * jnp.sum(ek**2 + log_var + _LOG_2PI)
            log_prior = -0.5 * jnp.sum(zk**2 + _LOG_2PI)
            return self.log_likelihood(x, zk) + log_prior - log_q

        return jax.vmap(one)(z, eps)

    def _elbo(self, key: Key, x: Array, beta) -> tuple[Scalar, Scalar, Scalar]:
        mean, log_var = self.encode(x)
        eps = jax.random.normal(key, tuple(self.latent_shape), mean.dtype)
        z = mean + jnp.exp(0.5 * log_var) * eps
        rec = self.log_likelihood(x, z)
        kl = gaussian_kl(mean, log_var)
        return rec - beta * kl, rec, kl

    # -- public, broadcasting ------------------------------------------------------------
    def _check_x(self, x):
        x = jnp.asarray(x)
        check_event_shape(x, self.shape, "x")
        return x

    def _check_k(self, num_samples):
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")

    def elbo(self, key: Key, x: Array, beta: float | Array = 1.0) -> Array:
        """One-sample estimate of ``E_q[log p(x|z)] − β KL(q(z|x) ‖ p(z))``; ``(*batch,)``.

        Unbiased for the ELBO; for ``β = 1`` a lower bound on ``log p(x)`` in expectation.
        """
        x = self._check_x(x)
        return _jit_call(_batched, _elbo_one, self, key, x, beta)

    def elbo_terms(self, key: Key, x: Array) -> tuple[Array, Array]:
        """``(reconstruction log p(x|z), closed-form KL)``, each ``(*batch,)``."""
        x = self._check_x(x)
        return _jit_call(_batched, _elbo_terms_one, self, key, x, None)

    def iwae(self, key: Key, x: Array, num_samples: int) -> Array:
        """``log (1/K) Σ_k w_k``, ``w_k = p(x, z_k)/q(z_k|x)``, ``K = num_samples``; ``(*batch,)``.

        ``E[iwae_K] ≤ E[iwae_{K'}] ≤ log p(x)`` for ``K ≤ K'``; ``K = 1`` is the ELBO with a
        Monte Carlo (instead of closed-form) KL.
        """
        x = self._check_x(x)
        self._check_k(num_samples)
        return _jit_call(_batched, _iwae_one, self, key, x, num_samples)

    def log_prob_bound(self, key: Key, x: Array, num_samples: int = 1) -> Array:
        """A stochastic lower bound on ``log p(x)`` (the IWAE bound with ``num_samples``);
        ``(*batch,)``. Its expectation is ``≤ log p(x)``: this is not a density."""
        return self.iwae(key, x, num_samples)

    def log_prob_estimate(self, key: Key, x: Array, num_samples: int = 1000) -> tuple[Array, Array]:
        """Importance-sampled ``log p̂(x) = log mean_k w_k`` and its standard error; each
        ``(*batch,)``. The error is the delta method ``std(w) / (√K · mean(w))`` from the
        ``K`` weights (unreliable when the weights are heavy-tailed: compare with larger K).
        """
        x = self._check_x(x)
        self._check_k(num_samples)
        if num_samples < 2:
            raise ValueError("log_prob_estimate needs num_samples >= 2 for a standard error")
        return _jit_call(_batched, _estimate_one, self, key, x, num_samples)

    def sample(self, key: Key, sample_shape: Shape = ()) -> Array:
        """``z ~ N(0, I)``, ``x ~ p(x | z)``; shape ``(*sample_shape, *shape)``."""
        return _jit_call(_sample, self, key, tuple(sample_shape), False)

    def sample_mean(self, key: Key, sample_shape: Shape = ()) -> Array:
        """Decoder means ``E[x | z]`` at prior draws ``z``, ``(*sample_shape, *shape)``."""
        return _jit_call(_sample, self, key, tuple(sample_shape), True)

    def reconstruct(self, x: Array) -> Array:
        """Decoder mean at the posterior mean, ``E[x | z = μ(x)]``; ``(*batch, *shape)``."""
        x = self._check_x(x)
        return _jit_call(_reconstruct, self, x)


def _elbo_one(model, key, x, beta):
    return model._elbo(key, x, beta)[0]


def _elbo_terms_one(model, key, x, _):
    return model._elbo(key, x, 1.0)[1:]


def _iwae_one(model, key, x, num_samples):
    lw = model._log_weights(key, x, num_samples)
    return jax.nn.logsumexp(lw) - math.log(num_samples)


def _estimate_one(model, key, x, num_samples):
    lw = model._log_weights(key, x, num_samples)
    m = jnp.max(lw)
    w = jnp.exp(lw - m)
    mean_w = jnp.mean(w)
    return m + jnp.log(mean_w), jnp.std(w, ddof=1) / (math.sqrt(num_samples) * mean_w)


def _sample(model, key, sample_shape, mean_only):
    n = math.prod(sample_shape)
    dtype = jnp.result_type(float)

    def one(k):
        kz, kx = jax.random.split(k)
        z = jax.random.normal(kz, tuple(model.latent_shape), dtype)
        return model.decode_mean(z) if mean_only else model.decode_sample(kx, z)

    out = jax.vmap(one)(jax.random.split(key, n))
    return out.reshape(sample_shape + out.shape[1:])


def _reconstruct(model, x):
    flat = x.reshape((-1,) + tuple(model.shape))
    out = jax.vmap(lambda xi: model.decode_mean(model.encode(xi)[0]))(flat)
    return out.reshape(x.shape)
