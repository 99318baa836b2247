"""What the sampler comparison reports about its own errors: Geyer's MCSE for chains, the
Pareto k̂ beside the ESS of weighted draws, and notes for chains that are too short, have
not converged (R̂) or whose weights fail their checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physgen.diagnostics import ShortChainWarning, mcse
from physgen.samplers import BudgetRun, estimate_run
from physgen.samplers._compare import _note

IN_A = lambda x: x[..., 0] < 0
IN_B = lambda x: x[..., 0] > 0


def test_chain_estimates_use_geyer_and_flag_unconverged_chains():
    """Four chains stuck on different sides (each constant within a half): R̂ is far above
    1.01, the chains are far shorter than 50 τ, and both notes say so."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 400, 1)) * 0.1 + np.array([-1.0, -1.0, 1.0, 1.0])[:, None, None]
    run = BudgetRun(jnp.asarray(x), num_energy_evals=1600)
    with pytest.warns(ShortChainWarning, match="shorter than 50 tau"):
        est = estimate_run(run, lambda s: s[..., 0], (IN_A, IN_B))
        assert est["error"] == pytest.approx(mcse(x[..., 0]))
    assert est["rhat"] > 1.5
    note = _note(est, run, short_chains=True)
    assert "R̂" in note and "> 1.01" in note and "50 τ" in note
    assert "pareto_khat" not in est


def test_weighted_draws_report_khat_and_failed_weight_checks():
    x = jax.random.normal(jax.random.key(0), (5000, 1))
    u = jax.random.uniform(jax.random.key(1), (5000,), minval=1e-12)
    good = estimate_run(BudgetRun(x, 5000, log_w=jnp.zeros(5000)), lambda s: s[..., 0],
                        (IN_A, IN_B))
    assert good["pareto_khat"] == 0.0 and good["weight_warnings"] == ()
    assert _note(good, BudgetRun(x, 5000, log_w=jnp.zeros(5000))) == ""
    heavy = BudgetRun(x, 5000, log_w=-0.9 * jnp.log(u))
    est = estimate_run(heavy, lambda s: s[..., 0], (IN_A, IN_B))
    assert est["pareto_khat"] > 0.7 and est["ess"] == pytest.approx(est["ess_fraction"] * 5000)
    assert "k̂" in _note(est, heavy) and "> 0.7" in _note(est, heavy)
