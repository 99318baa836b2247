"""A Gaussian target with everything in closed form."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._base import Array, ArrayLike, Key, Scalar, Shape, check_single_example
from ._base import AbstractExactTarget


class Gaussian(AbstractExactTarget):
    r"""``E(x) = ½ (x - μ)ᵀ P (x - μ)`` with precision ``P = Σ⁻¹``; ``event_shape = (d,)``.

    At inverse temperature ``β`` the density is ``N(μ, Σ/β)`` and
    ``log Z = (d/2) log(2π/β) + ½ log det Σ`` (no quadrature). Give exactly one of ``cov`` or
    ``precision`` (symmetric positive definite, shape ``(d, d)``); ``mean`` has shape ``(d,)``.
    The factorisations are done once in float64 numpy at construction (inputs must be concrete).
    """

    event_shape: Shape = eqx.field(static=True)
    mean: Array
    precision: Array
    cov_cholesky: Array
    log_det_cov: float
    beta: float

    def __init__(self, mean: ArrayLike, cov: ArrayLike | None = None,
                 precision: ArrayLike | None = None, beta: float = 1.0):
        mean_np = np.asarray(mean, dtype=np.float64)
        if mean_np.ndim != 1:
            raise ValueError(f"Gaussian: mean must have shape (d,), got {mean_np.shape}")
        d = mean_np.shape[0]
        if (cov is None) == (precision is None):
            raise ValueError("Gaussian: give exactly one of cov= or precision=")
        mat = np.asarray(cov if cov is not None else precision, dtype=np.float64)
        if mat.shape != (d, d):
            which = "cov" if cov is not None else "precision"
            raise ValueError(f"Gaussian: {which} must have shape {(d, d)}, got {mat.shape}")
        if not np.allclose(mat, mat.T, rtol=1e-10, atol=1e-12):
            raise ValueError("Gaussian: the covariance/precision matrix must be symmetric")
        try:
            chol = np.linalg.cholesky(mat)
        except np.linalg.LinAlgError as err:
            raise ValueError("Gaussian: the covariance/precision is not positive definite") from err
        if cov is not None:
            cov_np, prec_np = mat, np.linalg.inv(mat)
            log_det_cov = 2.0 * float(np.sum(np.log(np.diag(chol))))
        else:
            prec_np, cov_np = mat, np.linalg.inv(mat)
            log_det_cov = -2.0 * float(np.sum(np.log(np.diag(chol))))
        prec_np = 0.5 * (prec_np + prec_np.T)
        self.event_shape = (d,)
        self.mean = jnp.asarray(mean_np)
        self.precision = jnp.asarray(prec_np)
        self.cov_cholesky = jnp.asarray(np.linalg.cholesky(0.5 * (cov_np + cov_np.T)))
        self.log_det_cov = log_det_cov
        self.beta = float(beta)

    def __check_init__(self):
        if not self.beta > 0:
            raise ValueError(f"Gaussian needs beta > 0, got beta={self.beta}")

    def energy(self, x: Array) -> Scalar:
        """``½ (x - μ)ᵀ P (x - μ)`` for one ``x`` of shape ``(d,)`` -> scalar."""
        check_single_example(x, self.event_shape, "Gaussian.energy: x")
        r = x - self.mean
        return 0.5 * r @ (self.precision @ r)

    def covariance(self) -> Array:
        """Covariance of the target at inverse temperature ``β``: ``Σ/β``, shape ``(d, d)``."""
        return self.cov_cholesky @ self.cov_cholesky.T / self.beta

    def log_Z(self) -> float:
        """``(d/2) log(2π/β) + ½ log det Σ``."""
        d = self.event_shape[0]
        return 0.5 * d * math.log(2.0 * math.pi / self.beta) + 0.5 * self.log_det_cov

    def references(self) -> dict[str, float]:
        """``log_Z`` and ``mean_energy = E[E(x)] = d/(2β)``; moments: ``mean``,
        :meth:`covariance`."""
        return dict(log_Z=self.log_Z(), mean_energy=0.5 * self.event_shape[0] / self.beta)

    def sample_exact(self, key: Key, n: int) -> Array:
        """``n`` exact samples ``μ + L z / sqrt(β)``, shape ``(n, d)``."""
        z = jax.random.normal(key, (n,) + self.event_shape, self.mean.dtype)
        return self.mean + (z @ self.cov_cholesky.T) / math.sqrt(self.beta)
