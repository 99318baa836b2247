"""Several devices give the one-device results: training, HMC chains and reweighting.

The sharded runs happen in a subprocess with 4 forced host devices (``XLA_FLAGS`` is set
before jax is imported there; this process keeps its one device). The subprocess is this file
run as a script; it writes its results to an ``.npz`` that the tests compare with the same
computations done here on one device.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# minutes: first in the queue (conftest)
pytestmark = pytest.mark.slow

NUM_DEVICES = 4
STEPS = 50
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _params(model):
    import equinox as eqx
    import jax

    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    return np.concatenate([np.ravel(np.asarray(x)) for x in leaves])


def _compute(mesh, x64: bool, flow) -> dict:
    """Everything the tests compare, with ``mesh`` (sharded) or without (one device)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", x64)
    import physgen
    from physgen.objectives import MaximumLikelihood, ReverseKL
    from physgen.reweighting import kish_ess, log_Z
    from physgen.samplers import HMC, run_mcmc
    from physgen.targets import DoubleWell

    p = "64" if x64 else "32"
    out = {}
    target = DoubleWell()
    dtype = jnp.float64 if x64 else jnp.float32
    flow = jax.tree_util.tree_map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, flow)
    fit_kw = dict(steps=STEPS, chunk_size=STEPS, progress=False, mesh=mesh)
    # data-free: the objective's own samples are split over the devices
    model, hist, _ = physgen.fit(jax.random.key(1), flow, ReverseKL(target, 64), **fit_kw)
    out[f"rkl_params_{p}"] = _params(model)
    out[f"rkl_loss_{p}"] = hist["loss"]
    if not x64:  # data-parallel: the minibatch is split over the devices
        data = 1.0 + 0.5 * jax.random.normal(jax.random.key(2), (512, 2))
        ml_model, _, _ = physgen.fit(
            jax.random.key(3), flow, MaximumLikelihood(), data=data, batch_size=64, **fit_kw
        )
        out[f"ml_params_{p}"] = _params(ml_model)

    # float32: fixed step size (bit for bit); float64: per-chain step-size adaptation.
    name, sampler = ("adapted", HMC(0.1, 5)) if x64 else ("fixed", HMC(0.1, 5, adapt=False))
    res = run_mcmc(
        jax.random.key(4), sampler, target, num_chains=8, num_samples=100, num_warmup=50, mesh=mesh
    )
    out[f"hmc_{name}_samples_{p}"] = np.asarray(res.samples)
    out[f"hmc_{name}_acceptance_{p}"] = np.asarray(res.acceptance_rate)
    out[f"hmc_{name}_evals_{p}"] = np.asarray(res.num_energy_evals)
    out[f"hmc_{name}_devices_{p}"] = np.asarray(len(res.samples.sharding.device_set))

    if not x64:  # fixed kernels chain for chain, bit for bit; adapted ones statistically
        from physgen.samplers import MALA, ParallelTempering, geometric_ladder

        pt = ParallelTempering(HMC(0.1, 3, adapt=False), geometric_ladder(3, 0.2))
        for tag, smp in (("pt", pt), ("mala", MALA(0.1, adapt=False)), ("adapted", HMC(0.1, 5))):
            r = run_mcmc(jax.random.key(7), smp, target, num_chains=8, num_samples=50,
                         num_warmup=50, mesh=mesh)
            out[f"f32_{tag}_samples"] = np.asarray(r.samples)
            out[f"f32_{tag}_acceptance"] = np.asarray(r.acceptance_rate)
            out[f"f32_{tag}_step_size"] = np.asarray(r.extras.get("step_size", np.zeros(8)))

    if x64:  # NUTS (adapted) and parallel tempering, chain for chain
        from physgen.samplers import NUTS, ParallelTempering, geometric_ladder

        pt = ParallelTempering(HMC(0.1, 3, adapt=False), geometric_ladder(3, 0.2))
        for tag, smp in (("nuts", NUTS(0.1)), ("pt", pt)):
            r = run_mcmc(jax.random.key(6), smp, target, num_chains=8, num_samples=30,
                         num_warmup=20, mesh=mesh)
            out[f"{tag}_samples_{p}"] = np.asarray(r.samples)
            out[f"{tag}_evals_{p}"] = np.asarray(r.num_energy_evals)

    bg = physgen.BoltzmannGenerator(model, target)
    x, log_w = bg.sample_and_log_weights(jax.random.key(5), 1024, mesh=mesh)
    out[f"bg_log_w_{p}"] = np.asarray(log_w)
    out[f"bg_devices_{p}"] = np.asarray(len(log_w.sharding.device_set))
    out[f"bg_rows_per_device_{p}"] = np.asarray(log_w.addressable_shards[0].data.shape[0])
    est = log_Z(log_w)
    positive = (x[:, 0] > 0).astype(log_w.dtype)
    w = jax.nn.softmax(log_w)
    out[f"bg_estimates_{p}"] = np.array(
        [float(est.value), float(est.stderr), float(kish_ess(log_w)), float(jnp.sum(w * positive))]
    )
    return out


def _every_objective(mesh) -> dict:
    """A few float32 steps of each stateful or data objective, on ``mesh`` or on one device:
    FAB with its buffer, the GAN loss, the annealed ELBO, flow matching, denoising score
    matching and MixedKL (their parameters, and FAB's buffer)."""
    import jax
    import optax

    import physgen
    from physgen.diffusion import DenoisingScoreMatching, diffusion_model
    from physgen.flow_matching import FlowMatching
    from physgen.flows import cnf, real_nvp
    from physgen.gan import GAN, NonSaturatingLoss
    from physgen.objectives import FAB, MixedKL
    from physgen.targets import DoubleWell
    from physgen.vae import ELBO, gaussian_vae

    target = DoubleWell()
    data = 1.0 + 0.5 * jax.random.normal(jax.random.key(2), (256, 2))
    flow = real_nvp(jax.random.key(0), 2, num_layers=2, width=16)
    cases = {
        "fab": (flow, FAB(target, 16, num_intermediate=1, buffer_size=64, updates_per_ais=2),
                None),
        "gan": (GAN(2, 2, key=jax.random.key(1), width=8, depth=1), NonSaturatingLoss(), data),
        "elbo": (gaussian_vae(jax.random.key(1), 2, 2, width=8, depth=1), ELBO(kl_warmup=2),
                 data),
        "fm": (cnf(jax.random.key(1), 2, width=8, depth=1, zero_init=False), FlowMatching(),
               data),
        "dsm": (diffusion_model(jax.random.key(1), 2, width=8, depth=1),
                DenoisingScoreMatching(), data),
        "mixed": (flow, MixedKL(target, 16), data),
    }
    out = {}
    for name, (model, objective, d) in cases.items():
        trained, hist, state = physgen.fit(
            jax.random.key(3), model, objective, data=d, steps=4, chunk_size=4, batch_size=16,
            optimizer=optax.adam(1e-2), progress=False, mesh=mesh,
        )
        out[f"obj_{name}_params"] = _params(trained)
        out[f"obj_{name}_loss"] = hist["loss"]
        if name == "fab":
            out["obj_fab_buffer"] = np.asarray(state.objective_state.buffer.log_w)
    return out


def _both_precisions(mesh) -> dict:
    import jax

    from physgen.flows import real_nvp

    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    try:
        flow = real_nvp(jax.random.key(0), 2, num_layers=2, width=16)  # float32
        out = _compute(mesh, False, flow)
        out.update(_every_objective(mesh))
        out.update(_compute(mesh, True, flow))
    finally:
        jax.config.update("jax_enable_x64", previous)
    return out


def _worker(path):
    from physgen.parallel import make_mesh

    mesh = make_mesh(NUM_DEVICES)
    out = _both_precisions(mesh)
    try:
        import jax

        from physgen.samplers import HMC, run_mcmc
        from physgen.targets import DoubleWell

        run_mcmc(
            jax.random.key(0),
            HMC(0.1, 2),
            DoubleWell(),
            num_chains=6,
            num_samples=2,
            num_warmup=0,
            mesh=mesh,
        )
        out["indivisible_error"] = np.asarray("")
    except ValueError as e:
        out["indivisible_error"] = np.asarray(str(e))
    out["num_devices"] = np.asarray(len(mesh.devices.flat))
    np.savez(path, **out)


def _sharded_and_single(folder: Path) -> dict:
    path = folder / "sharded.npz"
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={NUM_DEVICES}"
    ).strip()
    env.pop("JAX_ENABLE_X64", None)
    proc = subprocess.Popen(
        [sys.executable, __file__, str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    import jax

    assert jax.device_count() == 1  # the default test process keeps one device
    single = _both_precisions(None)
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log
    with np.load(path) as f:
        sharded = dict(f)
    return {**{f"sharded/{k}": v for k, v in sharded.items()},
            **{f"single/{k}": v for k, v in single.items()}}


@pytest.fixture(scope="module")
def results(tmp_path_factory, shared_arrays):
    """``(sharded, single)``: the 4-device results (subprocess) and the one-device ones,
    computed once per session (``shared_arrays``)."""
    folder = tmp_path_factory.mktemp("parallel")
    both = shared_arrays("parallel", lambda: _sharded_and_single(folder))
    return ({k.split("/", 1)[1]: v for k, v in both.items() if k.startswith("sharded/")},
            {k.split("/", 1)[1]: v for k, v in both.items() if k.startswith("single/")})


def test_the_subprocess_really_used_four_devices(results):
    sharded, single = results
    assert int(sharded["num_devices"]) == NUM_DEVICES
    assert int(sharded["hmc_fixed_devices_32"]) == NUM_DEVICES
    assert int(sharded["hmc_adapted_devices_64"]) == NUM_DEVICES
    assert int(single["hmc_fixed_devices_32"]) == 1
    for p in ("32", "64"):
        assert int(sharded[f"bg_devices_{p}"]) == NUM_DEVICES
        assert int(sharded[f"bg_rows_per_device_{p}"]) == 1024 // NUM_DEVICES
    assert "num_chains=6" in str(sharded["indivisible_error"])


@pytest.mark.parametrize("name", ["fab", "gan", "elbo", "fm", "dsm", "mixed"])
def test_every_objective_trains_on_a_mesh(results, name):
    sharded, single = results
    a, b = sharded[f"obj_{name}_params"], single[f"obj_{name}_params"]
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(sharded[f"obj_{name}_loss"], single[f"obj_{name}_loss"],
                               rtol=1e-4, atol=1e-4)
    if name == "fab":
        np.testing.assert_allclose(sharded["obj_fab_buffer"], single["obj_fab_buffer"],
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("p, atol", [("32", 1e-5), ("64", 1e-12)])
def test_training_gives_the_same_parameters(results, p, atol):
    sharded, single = results
    for name in ("rkl", "ml") if p == "32" else ("rkl",):
        a, b = sharded[f"{name}_params_{p}"], single[f"{name}_params_{p}"]
        assert a.dtype == (np.float64 if p == "64" else np.float32)
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=atol, err_msg=name)
    # the parameters moved: equality is not that of two untrained models
    assert np.max(np.abs(np.diff(single[f"rkl_loss_{p}"]))) > 0
    np.testing.assert_allclose(
        sharded[f"rkl_loss_{p}"], single[f"rkl_loss_{p}"], rtol=10 * atol, atol=10 * atol
    )


def test_fixed_step_hmc_chains_are_identical_sample_for_sample(results):
    sharded, single = results
    a, b = sharded["hmc_fixed_samples_32"], single["hmc_fixed_samples_32"]
    assert a.shape == (8, 100, 2)
    assert np.std(a[:, :, 0]) > 0.1  # the chains move
    np.testing.assert_array_equal(a, b)
    # the acceptance rate is a mean over the samples: equal up to the order of its sum
    np.testing.assert_allclose(
        sharded["hmc_fixed_acceptance_32"], single["hmc_fixed_acceptance_32"], rtol=5e-7
    )
    assert int(sharded["hmc_fixed_evals_32"]) == int(single["hmc_fixed_evals_32"])


def test_adapted_hmc_chains_equal_sample_for_sample_in_float64(results):
    # step-size adaptation compiles to arithmetic whose last bit depends on the vector width
    # (chains per device); in float64 the trajectories stay equal far below any MC error.
    sharded, single = results
    a, b = sharded["hmc_adapted_samples_64"], single["hmc_adapted_samples_64"]
    assert a.shape == (8, 100, 2)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        sharded["hmc_adapted_acceptance_64"], single["hmc_adapted_acceptance_64"], atol=1e-6
    )


@pytest.mark.parametrize("tag", ["nuts", "pt"])
def test_nuts_and_tempering_chains_equal_one_device(results, tag):
    sharded, single = results
    a, b = sharded[f"{tag}_samples_64"], single[f"{tag}_samples_64"]
    assert a.shape == (8, 30, 2) and np.std(a[:, :, 0]) > 0.1
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert int(sharded[f"{tag}_evals_64"]) == int(single[f"{tag}_evals_64"])


@pytest.mark.parametrize("tag", ["pt", "mala"])
def test_fixed_kernels_are_identical_chain_for_chain_in_float32(results, tag):
    sharded, single = results
    a, b = sharded[f"f32_{tag}_samples"], single[f"f32_{tag}_samples"]
    assert a.dtype == np.float32 and np.std(a[:, :, 0]) > 0.1
    np.testing.assert_array_equal(a, b)


def test_adapted_float32_chains_are_other_but_equally_valid_chains(results):
    # the README's promise: after an adaptive warm-up on several devices the chains differ
    # from one device's (XLA's arithmetic differs in the last bit, and the adaptation
    # amplifies it) but adapt alike: step sizes and acceptance rates agree statistically.
    sharded, single = results
    for key, tol in (("f32_adapted_acceptance", 0.1), ("f32_adapted_step_size", 0.5)):
        a, b = sharded[key], single[key]
        assert np.all(np.isfinite(a)) and a.shape == b.shape == (8,)
        assert abs(np.mean(a) - np.mean(b)) < tol * np.mean(b), key
    assert np.mean(single["f32_adapted_acceptance"]) > 0.5


def test_the_readme_promises_what_the_tests_show():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Several devices and several hosts")[1].split("\n## ")[0]
    text = " ".join(section.split())
    assert "equal the one-device results up to the order of floating-point sums" in text
    assert "with a fixed step" in text and "sample for sample" in text
    assert "Chains with warm-up adaptation (HMC, NUTS and MALA by default) are not" in text
    # --devices needs no XLA_FLAGS any more
    assert "python experiments/double_well.py --devices 4" in text
    assert "xla_force_host_platform_device_count" not in text


def test_devices_flag_creates_cpu_devices_after_physgen_is_imported(tmp_path):
    code = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(EXPERIMENTS)!r})
import importlib.util
spec = importlib.util.spec_from_file_location("dw", {str(EXPERIMENTS / "double_well.py")!r})
dw = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dw)   # imports physgen, samplers and diagnostics (BlackJAX)
from _common import mesh_from_args
import jax
mesh = mesh_from_args(dw.parse_args(["--devices", "3", "--out", {str(tmp_path)!r}]))
print("mesh", mesh.size, jax.device_count(), jax.devices()[0].platform)
"""
    env = {k: v for k, v in os.environ.items()
           if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env.update(PYTHONPATH=str(EXPERIMENTS.parent), JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mesh 3 3 cpu" in proc.stdout


@pytest.mark.parametrize("p, rtol", [("32", 1e-5), ("64", 1e-12)])
def test_reweighting_estimates_are_equal(results, p, rtol):
    sharded, single = results
    a, b = sharded[f"bg_log_w_{p}"], single[f"bg_log_w_{p}"]
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.max(np.abs(b)))
    # log Z, its standard error, Kish ESS, P(x_0 > 0)
    np.testing.assert_allclose(
        sharded[f"bg_estimates_{p}"], single[f"bg_estimates_{p}"], rtol=10 * rtol
    )


def test_errors_name_the_problem():
    from physgen.parallel import make_mesh, shard_batch

    with pytest.raises(ValueError, match="between 1 and"):
        make_mesh(10_000)
    mesh = make_mesh(1)
    assert shard_batch(np.ones((3, 2)), mesh).shape == (3, 2)
    with pytest.raises(ValueError, match="leading axis"):
        shard_batch(np.ones(()), mesh)


if __name__ == "__main__":
    _worker(sys.argv[1])
