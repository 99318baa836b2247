r"""Scalar φ⁴ theory on a periodic L×L lattice, and the free field (λ = 0) in closed form.

Action (Albergo, Kanwar & Shanahan, PRD 100, 034515 (2019), with no factors of ½)::

    S(φ) = Σ_x [ Σ_μ φ(x)(2φ(x) − φ(x+μ̂) − φ(x−μ̂)) + m² φ(x)² + λ φ(x)⁴ ]
         = Σ_x [ −2 Σ_μ φ(x)φ(x+μ̂) + (4 + m²) φ(x)² + λ φ(x)⁴ ]        (d = 2)

(each link counted twice in the first form). The density is ``exp(−S)``; ``energy = S``.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._base import Array, Key, Scalar, Shape, check_single_example
from ._base import AbstractExactTarget, AbstractTarget

#: Albergo et al. 2019 (Table I): m² = −4, λ tuned to a correlation length of about L/4.
ALBERGO_ENSEMBLES: dict[str, dict[str, float]] = {
    "E1": {"L": 6, "m2": -4.0, "lam": 6.975},
    "E2": {"L": 8, "m2": -4.0, "lam": 6.008},
    "E3": {"L": 10, "m2": -4.0, "lam": 5.550},
    "E4": {"L": 12, "m2": -4.0, "lam": 5.276},
    "E5": {"L": 14, "m2": -4.0, "lam": 5.113},
}


def _check_L(L) -> int:
    if not isinstance(L, (int, np.integer)) or isinstance(L, bool) or L < 2:
        raise ValueError(f"the lattice size L must be an int >= 2, got {L!r}")
    return int(L)


def _kinetic(phi: Array) -> Scalar:
    """``Σ_x Σ_μ φ(x)(2φ(x) − φ(x+μ̂) − φ(x−μ̂))`` on a periodic lattice of any dimension."""
    out = jnp.zeros((), phi.dtype)
    for mu in range(phi.ndim):
        out = out + jnp.sum(
            phi * (2 * phi - jnp.roll(phi, -1, axis=mu) - jnp.roll(phi, 1, axis=mu))
        )
    return out


def lattice_momenta_squared(L: int) -> np.ndarray:
    """``p̂² = 4 Σ_μ sin²(p_μ/2)``, ``p_μ = 2π n_μ / L``: eigenvalues of ``−Δ``, shape (L, L)."""
    s = 4.0 * np.sin(np.pi * np.arange(L) / L) ** 2
    return s[:, None] + s[None, :]


class Phi4(AbstractTarget):
    r"""Lattice φ⁴ theory, ``p(φ) ∝ exp(−β S(φ))``, on an ``L × L`` periodic lattice.

    ``S(φ) = Σ_x [Σ_μ φ(x)(2φ(x) − φ(x+μ̂) − φ(x−μ̂)) + m² φ(x)² + λ φ(x)⁴]`` (Albergo et al.
    2019; no factors of ½). ``event_shape = (L, L)``. The action is invariant under lattice
    translations and ``φ → −φ``. ``m² < 0`` needs ``λ > 0`` (the density must be
    normalisable); ``λ = 0`` with ``m² > 0`` is :class:`FreeField`.

    Hopping form, :meth:`from_hopping`: with ``φ = √κ φ'``,
    ``S = Σ_x [−2κ Σ_μ φ'(x)φ'(x+μ̂) + φ'(x)² + λ̃(φ'(x)² − 1)²] − λ̃ V``, i.e.
    ``m² = (1 − 2λ̃)/κ − 4`` and ``λ = λ̃/κ²`` (the constant ``λ̃V`` and the Jacobian of the
    rescaling do not change the density of ``φ``).
    """

    L: int = eqx.field(static=True)
    m2: float
    lam: float
    beta: float
    event_shape: Shape = eqx.field(static=True)

    def __init__(self, L: int, m2: float, lam: float, beta: float = 1.0):
        self.L = _check_L(L)
        self.m2 = float(m2)
        self.lam = float(lam)
        self.beta = float(beta)
        self.event_shape = (self.L, self.L)

    def __check_init__(self):
        if not self.beta > 0:
            raise ValueError(f"Phi4 needs beta > 0, got {self.beta}")
        if not self.lam >= 0:
            raise ValueError(f"Phi4 needs lam >= 0, got {self.lam}")
        if self.lam == 0 and not self.m2 > 0:
            raise ValueError(
                f"Phi4 with lam = 0 needs m2 > 0 to be normalisable, got m2 = {self.m2}"
            )

    @staticmethod
    def from_hopping(L: int, kappa: float, lam_tilde: float, beta: float = 1.0) -> Phi4:
        """The theory ``S = Σ[−2κ Σ_μ φ'φ'(x+μ̂) + φ'² + λ̃(φ'² − 1)²]`` in the variable
        ``φ = √κ φ'``: ``Phi4(L, m2=(1 − 2λ̃)/κ − 4, lam=λ̃/κ²)``."""
        if not kappa > 0:
            raise ValueError(f"the hopping parameter kappa must be > 0, got {kappa}")
        return Phi4(L, (1.0 - 2.0 * lam_tilde) / kappa - 4.0, lam_tilde / kappa**2, beta)

    def hopping_parameters(self) -> tuple[float, float]:
        """``(κ, λ̃)`` with ``λ̃ = λκ²`` and ``(4 + m²)κ = 1 − 2λ̃``, for ``λ > 0``.

        Solves ``2λκ² + (4 + m²)κ − 1 = 0`` for its positive root.
        """
        a, b = 2.0 * self.lam, 4.0 + self.m2
        if a == 0:
            kappa = 1.0 / b
        else:
            kappa = (-b + math.sqrt(b * b + 4 * a)) / (2 * a)
        return kappa, self.lam * kappa**2

    def energy(self, x: Array) -> Scalar:
        """``S(φ)`` of one configuration ``φ`` of shape ``(L, L)`` -> scalar."""
        check_single_example(x, self.event_shape, "Phi4.energy: phi")
        phi2 = x * x
        return _kinetic(x) + jnp.sum(self.m2 * phi2 + self.lam * phi2 * phi2)


class FreeField(AbstractExactTarget):
    r"""Free scalar field, :class:`Phi4` with ``λ = 0`` and ``m² > 0``: an exact Gaussian.

    ``S(φ) = Σ_x φ(x)((−Δ + m²)φ)(x) = ½ φᵀKφ`` with ``K = 2(−Δ + m²)`` (the action has no
    ``½``), whose eigenvalues are ``k(p) = 2(p̂² + m²)``, ``p̂² = 4 Σ_μ sin²(p_μ/2)``. At
    inverse temperature ``β`` the density is ``N(0, (βK)⁻¹)`` and

    - ``log Z = (V/2) log(2π/β) − ½ Σ_p log k(p)``, ``V = L²``;
    - ``⟨φ(0)φ(x)⟩ = (1/(βV)) Σ_p e^{ip·x} / k(p)`` (:meth:`propagator`, by FFT);
    - ``χ₂ = Σ_x ⟨φ(0)φ(x)⟩ = 1/(β k(0)) = 1/(2βm²)``.

    ``sample_exact`` draws ``φ = F⁻¹[F[ξ] / √(βk)]`` with ``ξ ~ N(0, I)`` (FFT).
    """

    L: int = eqx.field(static=True)
    m2: float
    beta: float
    event_shape: Shape = eqx.field(static=True)

    def __init__(self, L: int, m2: float, beta: float = 1.0):
        self.L = _check_L(L)
        self.m2 = float(m2)
        self.beta = float(beta)
        self.event_shape = (self.L, self.L)

    def __check_init__(self):
        if not self.m2 > 0:
            raise ValueError(f"FreeField needs m2 > 0 (a normalisable Gaussian), got {self.m2}")
        if not self.beta > 0:
            raise ValueError(f"FreeField needs beta > 0, got {self.beta}")

    def energy(self, x: Array) -> Scalar:
        """``S(φ) = Σ_x [φ(−Δφ) + m²φ²]`` of one ``(L, L)`` configuration -> scalar."""
        check_single_example(x, self.event_shape, "FreeField.energy: phi")
        return _kinetic(x) + self.m2 * jnp.sum(x * x)

    def eigenvalues(self) -> np.ndarray:
        """``k(p) = 2(p̂² + m²)``, eigenvalues of ``K`` (``S = ½ φᵀKφ``), shape ``(L, L)``."""
        return 2.0 * (lattice_momenta_squared(self.L) + self.m2)

    def log_Z(self) -> float:
        """``(V/2) log(2π/β) − ½ Σ_p log k(p)``."""
        k = self.eigenvalues()
        return 0.5 * k.size * math.log(2 * math.pi / self.beta) - 0.5 * float(np.sum(np.log(k)))

    def propagator(self) -> np.ndarray:
        """``G(x) = ⟨φ(0)φ(x)⟩ = (1/(βV)) Σ_p e^{ip·x}/k(p)``, float64, shape ``(L, L)``."""
        return np.real(np.fft.ifft2(1.0 / (self.beta * self.eigenvalues())))

    def references(self) -> dict[str, float]:
        """``log_Z``, ``chi2 = 1/(2βm²)``, ``phi2 = ⟨φ(x)²⟩ = G(0)`` and
        ``mean_energy = V/(2β)``."""
        return {
            "log_Z": self.log_Z(),
            "chi2": 1.0 / (2.0 * self.beta * self.m2),
            "phi2": float(self.propagator()[0, 0]),
            "mean_energy": 0.5 * self.L**2 / self.beta,
        }

    def sample_exact(self, key: Key, n: int) -> Array:
        """``n`` exact samples, shape ``(n, L, L)``: ``F⁻¹[F[ξ]/√(βk)]``, ``ξ ~ N(0, I)``."""
        dtype = jnp.result_type(float)
        xi = jax.random.normal(key, (n,) + self.event_shape, dtype)
        scale = jnp.asarray(1.0 / np.sqrt(self.beta * self.eigenvalues()), dtype)
        return jnp.real(jnp.fft.ifft2(jnp.fft.fft2(xi) * scale)).astype(dtype)
