"""experiments/alanine_dipeptide.py --quick: OpenMM builds the molecule and runs the
replica-exchange MD; flows on internal coordinates train by forward KL, reverse KL and FAB
and are reweighted with the JAX force field; results.json carries what the script promises,
and each log Z lies between its two bounds."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _script():
    """experiments/alanine_dipeptide.py as a fresh module (tests may patch its names)."""
    spec = importlib.util.spec_from_file_location("ala", EXPERIMENTS / "alanine_dipeptide.py")
    ala = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ala)
    return ala


@pytest.mark.slow
def test_alanine_dipeptide_quick(quick_run):
    """The paper's quick run, shared with the paper test."""
    tmp_path = quick_run("alanine")
    r = json.loads((tmp_path / "results.json").read_text())
    md = r["md"]
    assert md["samples"] == 400 and 0 <= md["p_phi_positive"] <= 1
    assert md["replica_temperatures"] == [360.0] and 0 < md["exchange_acceptance"][0] <= 1
    assert md["md_steps"] == 2 * (500 + 400 * 20)
    ref = md["reference"]
    assert ref["seed"] == 0 and ref["loaded_from"] is None
    assert ref["command"].startswith("python experiments/alanine_dipeptide.py --quick --seed 0")
    assert ref["p_phi_positive"]["value"] == md["p_phi_positive"]
    for obs in ("reduced_energy", "phi_positive"):
        assert ref["diagnostics"][obs]["tau_int_frames"] >= 1 or md["p_phi_positive"] == 0
    assert (tmp_path / "reference_md_quick.npz").is_file()
    assert set(r["objectives"]) == {"forward_kl", "reverse_kl", "fab"}
    for name, o in r["objectives"].items():
        assert math.isfinite(o["nll_train"]) and math.isfinite(o["nll_test"]), name
        assert 0 < o["ess_fraction"] <= 1 and not math.isnan(float(o["pareto_khat"]))
        assert o["weight_warnings"], name  # 20 training steps: the checks must say so
        # E_q[log w] <= log Z <= E_p[log w] (the gaps are KL(q‖p) and KL(p‖q))
        assert o["mean_log_w_flow"] <= o["log_Z"]["value"] <= o["mean_log_w_md"], name
        p = o["reweighted_p_phi_positive"]
        assert 0 <= p["value"] <= 1 and p["stderr"] >= 0
        f = o["flow_p_phi_positive"]  # a fraction of independent draws: binomial error
        assert f["stderr"] == pytest.approx(
            math.sqrt(f["value"] * (1 - f["value"]) / r["config"]["weighted"]), rel=1e-9)
        t = o["torsions"]
        assert t["delta_F_phi_positive_minus_negative"]["md"]["p_phi_positive"] == \
            md["p_phi_positive"]
        for angle in ("phi", "psi"):
            kl = t["kl"][angle]
            assert set(kl) == {"flow", "reweighted", "md_halves"}
            assert all(math.isfinite(v) and v >= 0 for v in kl.values()), kl
        e = o["energies"]
        assert set(e["e_w2"]) == {"flow", "reweighted", "md_halves"}, name
        assert all(math.isfinite(v) and v >= 0 for v in e["e_w2"].values()), e
        assert e["mean"]["md"] == pytest.approx(md["mean_reduced_energy"], rel=1e-12)
        fe = o["free_energy"]
        for angle in ("phi", "psi"):
            for kind in ("md", "flow", "reweighted"):
                assert len(fe[angle][kind]["F"]) == len(fe[angle][kind]["se"]) == 36
            # F = -log p: the MD's profile normalises, and each error is positive where p > 0
            p_md = [math.exp(-f) for f in fe[angle]["md"]["F"] if f is not None]
            assert sum(p_md) == pytest.approx(1.0, abs=1e-9)
            assert all(s > 0 for s in fe[angle]["md"]["se"] if s is not None)
            within = fe[angle]["reweighted_vs_md"]["fraction_within_2_se"]
            assert 0 <= within <= 1 and fe[angle]["reweighted_vs_md"]["bins_compared"] > 0
        w2 = t["w2_torus"]  # at most the torus' diameter, π√2
        assert w2["samples"] == 200 and all(0 < w2[k] <= math.pi * math.sqrt(2) for k in (
            "flow", "reweighted", "md_halves")), w2
    # each trained flow is saved as its density of z: its NLL of the held-out MD frames
    ala = _script()
    import jax
    import jax.numpy as jnp

    molecule = ala.alanine_dipeptide()
    ic = ala.pb.InternalCoordinates(molecule.zmatrix)
    to_z = ala.to_internal(ic)
    frames = np.load(tmp_path / "reference_md_quick.npz")["positions"]
    z = np.asarray(to_z(jnp.asarray(frames)))
    z_min = np.asarray(to_z(jnp.asarray(molecule.positions[None], jnp.float32)))[0]
    angles, low, high = ala.coordinates(ic, z_min)
    cfg = r["config"]
    like = ala.Transformed(ala.coupling_flow(jax.random.key(0), angles, cfg["layers"],
                                             cfg["bins"], cfg["width"]),
                           ala.standardisation(z, z_min, None, angles, low, high))
    for name, o in r["objectives"].items():
        flow = ala.physgen.load(tmp_path / f"flow_{name}.eqx", like)
        nll = -float(np.mean(np.asarray(flow.log_prob(jnp.asarray(z[len(z) * 4 // 5:])))))
        assert nll == pytest.approx(o["nll_test"], rel=1e-4, abs=1e-3), name
    evals = {n: o["train_energy_evals"] for n, o in r["objectives"].items()}
    assert evals["forward_kl"] == 0 and evals["reverse_kl"] == 20 * 64
    assert evals["fab"] > evals["reverse_kl"]  # AIS: several evaluations per sample
    for ext in ("png", "pdf"):
        for figure in ("ramachandran", "energies", "free_energy"):
            assert (tmp_path / f"{figure}.{ext}").stat().st_size > 1000


def test_the_reference_md_is_saved_and_loaded_only_with_its_settings(tmp_path, monkeypatch):
    """The first call runs the MD and saves it with its seed and command; the second, with the
    same settings, loads it (running MD again would fail here); another seed runs again."""
    ala = _script()
    import jax

    molecule = ala.alanine_dipeptide()
    argv = ["--quick", "--out", str(tmp_path), "--md-samples", "40", "--md-interval", "10",
            "--md-equilibration", "50"]

    def first_x(x):
        return np.asarray(x)[:, 0, 0] - np.mean(np.asarray(x)[:, 0, 0])

    made, meta = ala.reference_md(jax.random.key(1), molecule, first_x, ala.parse_args(argv))
    assert meta["loaded_from"] is None and meta["seed"] == 0
    assert meta["command"].endswith("--md-samples 40 --md-interval 10 --md-equilibration 50 "
                                    "--temperature 300.0 --replica-temperatures 360")
    assert made.positions.shape == (40, 22, 3) and meta["md_steps"] == 2 * (50 + 40 * 10)
    p = meta["p_phi_positive"]
    assert 0 < p["value"] < 1 and p["stderr_geyer"] > 0 and p["stderr_20_blocks"] > 0

    def no_md(*a, **k):
        raise AssertionError("the saved reference should have been loaded")

    monkeypatch.setattr(ala, "langevin_md", no_md)
    loaded, meta2 = ala.reference_md(jax.random.key(1), molecule, first_x, ala.parse_args(argv))
    assert meta2["loaded_from"] == str(tmp_path / "reference_md_quick.npz")
    np.testing.assert_allclose(loaded.positions, made.positions, rtol=1e-6)
    np.testing.assert_array_equal(loaded.reduced_energies, made.reduced_energies)
    assert loaded.replica_temperatures == made.replica_temperatures
    np.testing.assert_array_equal(loaded.exchange_acceptance, made.exchange_acceptance)
    with pytest.raises(AssertionError, match="should have been loaded"):  # other settings
        ala.reference_md(jax.random.key(1), molecule, first_x,
                         ala.parse_args(argv + ["--seed", "3"]))


def test_stereo_copies_are_told_apart_and_weighed(x64):
    """Swapping two hydrogens of one methyl group flips that group's handedness and no other,
    at the same force-field energy; the mirror image flips all four; stereo_analysis finds
    the weight in MD's copy and log Z of that copy alone."""
    ala = _script()
    import jax.numpy as jnp

    molecule = ala.alanine_dipeptide()
    x = np.asarray(molecule.positions, np.float64)
    s0 = ala.stereo_signs(x[None])[0]
    assert set(np.abs(s0)) == {1}
    np.testing.assert_array_equal(ala.stereo_signs(-x[None])[0], -s0)
    force_field = ala.ForceField(molecule.system)
    e0 = float(force_field.energy(jnp.asarray(x)))
    for k, (i, j) in enumerate([(2, 3), (12, 13), (20, 21)], start=1):  # ACE, CB, NME
        y = x.copy()
        y[[i, j]] = y[[j, i]]
        expected = s0.copy()
        expected[k] = -expected[k]
        np.testing.assert_array_equal(ala.stereo_signs(y[None])[0], expected)
        assert float(force_field.energy(jnp.asarray(y))) == pytest.approx(e0, rel=1e-12)

    flipped = s0 * np.array([1, 1, -1, 1])
    signs = np.stack([s0, s0, flipped, flipped])
    r = ala.stereo_analysis(s0, signs, np.log([1.0, 3.0, 2.0, 2.0]))
    assert r["flow_fraction_in_md_copy"] == 0.5
    assert r["reweighted_mass_in_md_copy"]["value"] == pytest.approx(0.5)
    assert r["log_Z_md_copy"]["value"] == pytest.approx(0.0, abs=1e-12)  # log mean(1, 3, 0, 0)
    assert r["ess_in_md_copy"] == pytest.approx(16 / 10)  # (1 + 3)² / (1² + 3²)
    assert sorted(r["flow_fraction_per_copy"].values()) == [0.5, 0.5]


def test_the_flows_coordinates_confine_them_to_one_stereo_copy(x64):
    """The four stereo torsions of ``coordinates`` pick the copy: of the 16 copies of the
    minimum (mirror image, swaps of methyl hydrogens), exactly those centres whose handedness
    differs from the minimum's have their torsion outside its half circle (no preimage under
    the flows' map); and any ``u`` maps into the minimum's CA chirality and torsion signs."""
    ala = _script()
    import jax
    import jax.numpy as jnp

    molecule = ala.alanine_dipeptide()
    ic = ala.pb.InternalCoordinates(molecule.zmatrix)
    to_z = ala.to_internal(ic)
    x = np.asarray(molecule.positions, np.float64)
    z_min = np.asarray(to_z(jnp.asarray(x[None])))[0]
    angles, low, high = ala.coordinates(ic, z_min)
    rows = {int(a): i for i, a in enumerate(ic.atoms)}  # stereo_signs' order of centres:
    stereo = [ic.torsions.start + rows[a] - 3 for a in ala.STEREO_TORSION_ATOMS]
    assert sorted(stereo) == np.flatnonzero(np.isfinite(low)).tolist()
    assert not angles[stereo].any() and angles.sum() == 15
    interval = ala.pb.Interval(low, high)
    s0 = ala.stereo_signs(x[None])[0]
    copies = []
    for mirror in (False, True):
        for swaps in range(8):
            y = -x if mirror else x.copy()
            for bit, (i, j) in enumerate([(2, 3), (12, 13), (20, 21)]):  # ACE, CB, NME
                if swaps >> bit & 1:
                    y[[i, j]] = y[[j, i]]
            copies.append(y)
    copies = np.stack(copies)
    z = np.asarray(to_z(jnp.asarray(copies)))
    outside = np.isnan(np.asarray(jax.vmap(interval.inverse)(jnp.asarray(z))))[:, stereo]
    differs = ala.stereo_signs(copies) != s0  # (CA, ACE CH3, CB, NME CH3), stereo's order
    np.testing.assert_array_equal(outside, differs)
    assert len({tuple(d) for d in differs}) == 16

    rng = np.random.default_rng(0)
    # training frames 1 % about the minimum (bonds stay positive at 3 standard deviations)
    z_train = z_min * (1 + 0.01 * rng.standard_normal((50, len(z_min))))
    std = ala.standardisation(z_train, z_min, None, angles, low, high)
    u = np.where(angles, rng.uniform(-np.pi, np.pi, (200, len(z_min))),
                 3.0 * rng.standard_normal((200, len(z_min))))
    z_u = np.asarray(jax.vmap(std.transform)(jnp.asarray(u)))
    np.testing.assert_array_equal(np.sign(z_u[:, stereo]), np.sign(z_min[stereo])[None]
                                  * np.ones((200, 1)))
    positions = jax.vmap(lambda v: ic.to_positions(ic.transform(v)))(jnp.asarray(z_u))
    assert np.all(ala.stereo_signs(positions)[:, 0] == s0[0])


def test_fab_takes_its_ais_kernel_from_the_command_line():
    """--fab-intermediate, --fab-mcmc-steps and --fab-leapfrog reach FAB's AIS (and its cost);
    the defaults are FAB's own kernel."""
    from physgen.objectives import FAB
    from physgen.targets import Gaussian

    ala = _script()
    target = Gaussian(np.zeros(2), np.eye(2))
    fab = ala.fab_objective(target, ala.parse_args(
        ["--batch-size", "32", "--buffer", "64", "--fab-intermediate", "3",
         "--fab-mcmc-steps", "2", "--fab-leapfrog", "7"]))
    assert (fab.num_intermediate, fab.num_mcmc_steps, fab.buffer_size) == (3, 2, 64)
    assert fab.transition.num_integration_steps == 7
    assert fab.energy_evals_per_ais() == 32 * (4 + 3 * 2 * fab.transition.transition_evals())
    default, own = ala.fab_objective(target, ala.parse_args([])), FAB(target, 256)
    assert default.num_mcmc_steps == own.num_mcmc_steps
    assert (default.transition.step_size, default.transition.num_integration_steps) == (
        own.transition.step_size, own.transition.num_integration_steps)
