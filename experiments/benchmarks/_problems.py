"""The targets of the ESS-per-evaluation benchmark, their exact state probabilities and the
samplers compared on them."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from physgen import samplers as smp
from physgen.distributions import DiagNormal
from physgen.targets import DoubleWell, GaussianMixture, ManyWell


def _gmm_target():
    """Three Gaussians (σ = 0.5) at mutual distances ≈ 5: barriers of ~12 kT; weights
    0.5 / 0.3 / 0.2. States: A = the region where component 0 is most responsible, B = the
    same for component 1 (the third mode belongs to neither)."""
    means = np.array([[-2.5, -1.0], [2.5, -1.0], [0.0, 3.0]])
    return GaussianMixture(means, 0.5, weights=np.array([0.5, 0.3, 0.2]))


def _gmm_exact(target, states, half_width=8.0, n=1601):
    """``p_A``, ``p_B`` by a 2-D trapezoid-free Riemann sum on a fine grid (the density is
    normalised and negligible at the edges; error far below 1e-6)."""
    g = np.linspace(-half_width, half_width, n)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    pts = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], -1))
    dens = np.exp(-np.asarray(jax.vmap(target.energy)(pts), dtype=np.float64))
    cell = (g[1] - g[0]) ** 2
    in_a = np.asarray(states[0](pts))
    in_b = np.asarray(states[1](pts))
    total = dens.sum() * cell
    p_a, p_b = dens[in_a].sum() * cell / total, dens[in_b].sum() * cell / total
    return {"p_A": float(p_a), "p_B": float(p_b), "delta_F_B_minus_A": -math.log(p_b / p_a),
            "quadrature_total_mass": float(total)}


def make_samplers(cfg: dict, methods, flow, states, quick: bool,
                  max_pool: int = 1 << 26) -> dict:
    """``{method: (label, sampler)}`` for the chosen methods. ``cfg``: ``step_size`` (start of
    the adapted HMC/NUTS/MALA, fixed in the tempered inner HMC), ``pt_replicas``,
    ``pt_beta_min``, ``smc_reference_scale``; HMC takes 10 leapfrog steps, the tempered
    inner HMC 5, SMC 4 moves per tempering step."""
    s, k, b = cfg["step_size"], cfg["pt_replicas"], cfg["pt_beta_min"]
    inner = smp.HMC(s, 5, adapt=False)
    make = {
        "HMC": lambda: ("HMC (L=10, adapted)", smp.HMC(s, 10)),
        "NUTS": lambda: ("NUTS (adapted)", smp.NUTS(s)),
        "MALA": lambda: ("MALA (adapted)", smp.MALA(s)),
        "PT": lambda: (f"PT (HMC, K={k}, β_min={b:g})",
                       smp.ParallelTempering(inner, smp.geometric_ladder(k, b))),
        "SMC": lambda: ("tempered SMC (HMC, 4 moves)", smp.TemperedSMC(
            inner, num_mcmc_steps=4, reference_scale=cfg["smc_reference_scale"])),
        "BG reweighted": lambda: ("BG reweighted", smp.ImportanceSampler(flow)),
        "BG stratified": lambda: ("BG stratified", smp.StratifiedImportanceSampler(
            flow, states, pool_size=1 << 16 if quick else 1 << 20,
            max_pool_size=min(max_pool, 1 << 20) if quick else max_pool)),
        "BG as IMH proposal": lambda: ("BG as IMH proposal",
                                       smp.FlowIndependenceMetropolis(flow)),
    }
    return {m: make[m]() for m in methods}


def make_problem(name: str):
    """``(target, states, exact, start, sampler settings, flow_base, description)``."""
    if name == "double_well":
        t = DoubleWell(dim=2)
        ref = t.references()
        states = (t.state_indicator_A, t.state_indicator_B)
        exact = {"p_A": ref["p_A"], "p_B": ref["p_B"],
                 "delta_F_B_minus_A": ref["delta_F_B_minus_A"]}
        start = jnp.array([ref["minimum_A_x1"], 0.0])
        settings = dict(step_size=0.1, pt_replicas=6, pt_beta_min=0.1, smc_reference_scale=3.0)
        desc = ("DoubleWell(dim=2), a4,a2,a1,k = 1,6,1,1; A: x1<0, B: x1>0; barrier from A "
                f"{ref['barrier_height_from_A']:.2f} kT")
        return t, states, exact, start, settings, None, desc
    if name == "gmm":
        t = _gmm_target()
        comp = jax.vmap(t.component_index)

        def in_a(x):
            return comp(x.reshape(-1, 2)).reshape(x.shape[:-1]) == 0

        def in_b(x):
            return comp(x.reshape(-1, 2)).reshape(x.shape[:-1]) == 1

        states = (in_a, in_b)
        exact = _gmm_exact(t, states)
        start = jnp.asarray(t.means[0])
        settings = dict(step_size=0.1, pt_replicas=8, pt_beta_min=0.05, smc_reference_scale=4.0)
        base = DiagNormal(jnp.zeros(2), 2.5 * jnp.ones(2))
        desc = ("GaussianMixture: 3 modes, σ=0.5, weights 0.5/0.3/0.2; A: mode 0, B: mode 1 "
                "(most responsible component)")
        return t, states, exact, start, settings, base, desc
    if name == "many_well":
        t = ManyWell(dim=8)
        ref = t.references()

        def in_a(x):
            return x[..., 0] < 0

        def in_b(x):
            return x[..., 0] > 0

        states = (in_a, in_b)
        p_b = ref["p_x_positive"]
        exact = {"p_A": 1.0 - p_b, "p_B": p_b, "delta_F_B_minus_A": -math.log(p_b / (1 - p_b))}
        start = t.mode_centres()[0]  # every pair in its left well
        settings = dict(step_size=0.1, pt_replicas=6, pt_beta_min=0.1, smc_reference_scale=3.0)
        desc = ("ManyWell(dim=8): 16 modes; A: x0<0, B: x0>0 (first pair); chains start in "
                "the all-left mode")
        return t, states, exact, start, settings, None, desc
    raise ValueError(name)
