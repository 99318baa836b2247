"""2-D toy data sets with exact densities (in closed form, or by quadrature over their latent
curves)."""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import i0e

from .._base import Array, Key, Scalar, check_event_shape

_LOG_2PI = math.log(2 * math.pi)


def _gauss_ring_log_prob(x, centres, log_weights, sigma):
    """``log Σ_j w_j N(x; c_j, σ² I)`` for ``x`` of shape ``(2,)``, ``centres`` ``(M, 2)``."""
    d2 = jnp.sum((x - centres) ** 2, axis=-1)
    return jax.nn.logsumexp(log_weights - 0.5 * d2 / sigma**2) - 2 * jnp.log(sigma) - _LOG_2PI


class AbstractToyDataset(eqx.Module):
    """A 2-D data distribution with ``sample(key, n) -> (n, 2)`` and exact ``log_prob``.

    ``entropy(key, n)`` returns the differential entropy ``H = -E_p[log p]`` in nats (the
    lowest achievable expected test NLL) with its Monte Carlo standard error (0 if exact).
    """

    @abc.abstractmethod
    def _sample(self, key: Key) -> Array: ...

    @abc.abstractmethod
    def _log_prob(self, x: Array) -> Scalar: ...

    def sample(self, key: Key, n: int) -> Array:
        """``n`` samples, shape ``(n, 2)``."""
        return jax.vmap(self._sample)(jax.random.split(key, n))

    def log_prob(self, x: Array) -> Array:
        """Exact log density of ``x`` of shape ``(*batch, 2)``; returns ``batch``."""
        x = jnp.asarray(x)
        check_event_shape(x, (2,), "x")
        flat = x.reshape(-1, 2)
        return jax.lax.map(self._log_prob, flat, batch_size=4096).reshape(x.shape[:-1])

    def entropy(self, key: Key | None = None, n: int = 200_000) -> tuple[float, float]:
        """``(H, stderr)``: ``-mean log p(x_i)`` over ``n`` fresh samples."""
        key = jax.random.key(0) if key is None else key
        lp = self.log_prob(self.sample(key, n))
        return float(-jnp.mean(lp)), float(jnp.std(lp) / math.sqrt(n))


class TwoMoons(AbstractToyDataset):
    """Two interleaved half circles (scikit-learn's ``make_moons``), Gaussian noise ``noise``,
    centred and multiplied by ``scale``: upper arc ``(cos t, sin t)``, lower arc
    ``(1 - cos t, 0.5 - sin t)``, ``t ~ U[0, π]``."""

    noise: float
    scale: float
    num_nodes: int

    def __init__(self, noise: float = 0.1, scale: float = 2.0, num_nodes: int = 1024):
        self.noise, self.scale, self.num_nodes = float(noise), float(scale), int(num_nodes)

    def _curve(self, t, upper):
        c = jnp.where(
            upper,
            jnp.stack([jnp.cos(t), jnp.sin(t)], -1),
            jnp.stack([1 - jnp.cos(t), 0.5 - jnp.sin(t)], -1),
        )
        return self.scale * (c - jnp.array([0.5, 0.25]))

    def _sample(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        t = jax.random.uniform(k1, (), minval=0.0, maxval=math.pi)
        upper = jax.random.bernoulli(k2)
        return self._curve(t, upper) + self.scale * self.noise * jax.random.normal(k3, (2,))

    def _log_prob(self, x):
        # Midpoint rule in t: node spacing scale·π/num_nodes ≪ scale·noise.
        t = (jnp.arange(self.num_nodes) + 0.5) * math.pi / self.num_nodes
        centres = jnp.concatenate([self._curve(t, True), self._curve(t, False)])
        lw = jnp.full(2 * self.num_nodes, -math.log(2 * self.num_nodes))
        return _gauss_ring_log_prob(x, centres, lw, self.scale * self.noise)


class EightGaussians(AbstractToyDataset):
    """Eight Gaussians of std ``std`` centred on a circle of radius ``radius``, all divided by
    ``divisor`` (FFJORD's ``8gaussians``: radius 4, std 0.5, divisor 1.414)."""

    radius: float
    std: float
    divisor: float

    def __init__(self, radius: float = 4.0, std: float = 0.5, divisor: float = 1.414):
        self.radius, self.std, self.divisor = float(radius), float(std), float(divisor)

    def _centres(self):
        a = jnp.arange(8) * (2 * math.pi / 8)
        return self.radius * jnp.stack([jnp.cos(a), jnp.sin(a)], -1) / self.divisor

    def _sample(self, key):
        k1, k2 = jax.random.split(key)
        c = self._centres()[jax.random.randint(k1, (), 0, 8)]
        return c + self.std / self.divisor * jax.random.normal(k2, (2,))

    def _log_prob(self, x):
        return _gauss_ring_log_prob(
            x, self._centres(), jnp.full(8, -math.log(8)), self.std / self.divisor
        )


class Rings(AbstractToyDataset):
    """Four concentric circles of radii ``radii`` with equal weight, Gaussian noise ``noise``
    (FFJORD's ``rings``: radii 3, 2.25, 1.5, 0.75, noise 0.08).

    The density in closed form: averaging ``N(x; r(cos θ, sin θ), σ²I)`` over θ gives
    ``p(x) = (1/K) Σ_r exp(-(ρ² + r²)/2σ²) I₀(ρr/σ²) / (2πσ²)``, ``ρ = |x|``."""

    radii: tuple[float, ...]
    noise: float

    def __init__(self, radii=(3.0, 2.25, 1.5, 0.75), noise: float = 0.08):
        self.radii, self.noise = tuple(map(float, radii)), float(noise)

    def _sample(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        r = jnp.asarray(self.radii)[jax.random.randint(k1, (), 0, len(self.radii))]
        a = jax.random.uniform(k2, (), minval=0.0, maxval=2 * math.pi)
        return r * jnp.stack([jnp.cos(a), jnp.sin(a)]) + self.noise * jax.random.normal(k3, (2,))

    def _log_prob(self, x):
        s2 = self.noise**2
        d2 = jnp.sum(x**2)
        # |x| with a finite gradient at the origin (where log p is flat)
        rho = jnp.where(d2 > 0, jnp.sqrt(jnp.where(d2 > 0, d2, 1.0)), 0.0)
        r = jnp.asarray(self.radii, x.dtype)
        # log I₀(z) = log i0e(z) + z, stable for large z = ρr/σ²
        terms = -0.5 * (rho - r) ** 2 / s2 + jnp.log(i0e(rho * r / s2))
        return (jax.nn.logsumexp(terms) - math.log(len(self.radii)) - math.log(s2)
                - math.log(2 * math.pi))


class Checkerboard(AbstractToyDataset):
    """Uniform on the 8 dark squares of side 2 of a checkerboard on ``[-4, 4]²``;
    ``log p = -log 32`` on its support, so ``entropy`` returns ``log 32`` with zero error."""

    def __init__(self):
        pass

    def _sample(self, key):
        k1, k2 = jax.random.split(key)
        u = jax.random.uniform(k1, (2,), minval=0.0, maxval=2.0)
        cell = jax.random.randint(k2, (), 0, 8)
        row, col = cell // 2, cell % 2
        # dark squares: (col_index + row) even, four rows of two.
        ix = 2 * col + (row % 2)
        return jnp.stack([ix * 2.0 - 4.0 + u[0], row * 2.0 - 4.0 + u[1]])

    def _log_prob(self, x):
        ix = jnp.floor((x[0] + 4.0) / 2.0)
        iy = jnp.floor((x[1] + 4.0) / 2.0)
        inside = (ix >= 0) & (ix < 4) & (iy >= 0) & (iy < 4) & ((ix + iy) % 2 == 0)
        return jnp.where(inside, -math.log(32.0), -jnp.inf)


DATASETS = {
    "moons": TwoMoons,
    "8gaussians": EightGaussians,
    "rings": Rings,
    "checkerboard": Checkerboard,
}


def get_dataset(name: str) -> AbstractToyDataset:
    """A toy data set by name: one of ``moons``, ``8gaussians``, ``rings``, ``checkerboard``."""
    try:
        return DATASETS[name]()
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}") from None
