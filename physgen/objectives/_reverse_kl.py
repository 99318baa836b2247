"""Data-free reverse KL against a Boltzmann target, and its mix with forward KL."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import AbstractDataObjective, AbstractObjective, Key
from ..boltzmann._generator import BoltzmannGenerator
from ..parallel._mesh import constrain_batch
from ..targets._base import AbstractTarget
from ._likelihood import MaximumLikelihood


def reverse_kl_terms(model, target: AbstractTarget, key: Key, num_samples: int,
                     path_gradient: bool = False):
    """Reparameterised samples ``x ~ q`` and ``log w = -βE(x) - log q(x)``; shapes ``(n,)``.

    With ``path_gradient`` the density is evaluated with stopped parameters, ``log q_{sg(θ)}(x)``
    at ``x = f_θ(z)``: the same value, but the score term ``∇_θ log q_θ`` (zero in expectation)
    is dropped from the gradient, whose variance then vanishes at ``q = p`` (Roeder et al.
    2017; Vaitl et al. 2022 for Boltzmann generators). Costs one inverse pass.

    Under ``fit(..., mesh=...)`` the samples are split over the mesh's devices (same values).
    """
    BoltzmannGenerator(model, target)  # refuses mismatched shapes at trace time
    if path_gradient:
        params, static = eqx.partition(model, eqx.is_inexact_array)
        frozen = eqx.combine(jax.lax.stop_gradient(params), static)
        x = constrain_batch(model.sample(key, (num_samples,)))
        log_q = frozen.log_prob(x)
    else:
        x, log_q = constrain_batch(model.sample_and_log_prob(key, (num_samples,)))
    energy = jax.vmap(target.energy)(x)
    log_w = -target.beta * energy - log_q
    return x, log_q, energy, log_w


def _diagnostics(energy, log_w, loss):
    finite = jnp.isfinite(energy)
    lw = jnp.where(jnp.isfinite(log_w), log_w, -jnp.inf)
    ess = jnp.exp(2 * jax.nn.logsumexp(lw) - jax.nn.logsumexp(2 * lw)) / log_w.shape[0]
    return {
        "reverse_kl": loss,
        "log_Z_lower_bound": -loss,
        "mean_energy": jnp.mean(energy),
        "max_energy": jnp.max(energy),
        "num_nonfinite_energy": jnp.sum(~finite).astype(energy.dtype),
        "log_weight_std": jnp.std(log_w),
        "ess_fraction": ess,
    }


class ReverseKL(AbstractObjective):
    """Data-free reverse KL, ``L = E_{x~q}[log q(x) + β E(x)]`` (reparameterised).

    ``L = KL(q‖p) - log Z ≥ -log Z``: nothing is dropped, so ``-L`` is a lower bound on
    ``log Z`` (the ELBO), printed as ``log_Z_lower_bound``. ``num_samples`` draws per step.

    ``forward_weight = λ > 0`` adds, on the SAME samples (no extra energy evaluations), the
    gradient of the forward KL estimated by self-normalised importance sampling,
    ``∇ KL(p‖q) ≈ -Σ_i w̄_i ∇ log q(x_i)`` with ``w̄ = softmax(log w)`` held fixed. The
    reverse KL alone is mode-seeking and adjusts the mass of a minor mode only slowly; the
    forward term is mass-covering and fixes relative mode weights. It enters the gradient
    only: the loss VALUE stays the reverse KL above (reported as ``forward_kl`` in the
    diagnostics is the estimate ``Σ w̄ log w - log Ẑ`` of ``KL(p‖q)``).

    ``path_gradient=True`` uses the path (sticking-the-landing) gradient estimator: same
    loss value, lower gradient variance near the optimum, one extra inverse pass.

    The default ``forward_weight = 0`` is the plain reverse KL. The double-well experiment
    and the ESS benchmark use ``1``: there the flow must put the right mass (3.3 %) in a
    minor well that reverse KL alone reaches only slowly. The many-well benchmark keeps 0
    (it compares plain reverse KL with FAB), and the φ⁴ experiment uses the path gradient
    instead (the forward term's self-normalised weights degrade with the lattice volume).
    Stateless.
    """

    target: AbstractTarget
    num_samples: int
    forward_weight: float
    path_gradient: bool

    def __init__(self, target: AbstractTarget, num_samples: int = 256, *,
                 forward_weight: float = 0.0, path_gradient: bool = False):
        if num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        if not forward_weight >= 0:
            raise ValueError(f"forward_weight must be >= 0, got {forward_weight}")
        self.target = target
        self.num_samples = int(num_samples)
        self.forward_weight = float(forward_weight)
        self.path_gradient = bool(path_gradient)

    def init_state(self, model, key: Key) -> None:
        return None

    def loss(self, model, key: Key, batch, state, step):
        if batch is not None:
            raise ValueError("ReverseKL is data-free; do not pass data")
        x, _, energy, log_w = reverse_kl_terms(
            model, self.target, key, self.num_samples, self.path_gradient
        )
        loss = -jnp.mean(log_w)
        aux = _diagnostics(energy, log_w, loss)
        if self.forward_weight > 0:
            lw = jax.lax.stop_gradient(log_w)
            wbar = jax.nn.softmax(lw)
            surrogate = -jnp.sum(wbar * model.log_prob(jax.lax.stop_gradient(x)))
            loss = loss + self.forward_weight * (surrogate - jax.lax.stop_gradient(surrogate))
            log_z_hat = jax.nn.logsumexp(lw) - jnp.log(lw.shape[0])
            aux["forward_kl"] = jnp.sum(wbar * lw) - log_z_hat
        return loss, aux, state


class MixedKL(AbstractDataObjective):
    """Noé et al. 2019's weighted sum ``L = w_ML · L_ML + w_KL · L_KL``.

    ``L_ML = -(1/B) Σ log q(x_i)`` on a data minibatch (forward KL up to the data entropy) and
    ``L_KL = E_q[log q + βE]`` (reverse KL, ``≥ -log Z``).
    """

    target: AbstractTarget
    num_samples: int
    weight_ml: float
    weight_kl: float

    def __init__(
        self,
        target: AbstractTarget,
        num_samples: int = 256,
        weight_ml: float = 1.0,
        weight_kl: float = 1.0,
    ):
        if weight_ml < 0 or weight_kl < 0:
            raise ValueError("MixedKL weights must be non-negative")
        self.target = target
        self.num_samples = int(num_samples)
        self.weight_ml = float(weight_ml)
        self.weight_kl = float(weight_kl)

    def init_state(self, model, key: Key) -> None:
        return None

    def loss(self, model, key: Key, batch, state, step):
        if batch is None:
            raise ValueError("MixedKL needs data: pass data=... to fit")
        kl, aux, _ = ReverseKL(self.target, self.num_samples).loss(model, key, None, None, step)
        nll, aux_ml, _ = MaximumLikelihood().loss(model, key, batch, None, step)
        return self.weight_ml * nll + self.weight_kl * kl, {**aux, **aux_ml}, state
