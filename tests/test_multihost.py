"""Several hosts, really: two processes on 127.0.0.1 join one run through
``physgen.parallel.initialize_distributed`` (a coordinator on a free local port, Gloo CPU
collectives, two CPU devices each) and train, checkpoint and reweight over the four devices;
the results equal those of one process on one device.

The two processes are this file run as a script; process 0 writes an ``.npz`` that the test
compares with the same computation done here without a mesh.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = 20


def _compute(mesh, checkpoint=None) -> dict:
    import equinox as eqx
    import jax

    import physgen
    from physgen.flows import real_nvp
    from physgen.objectives import MaximumLikelihood, ReverseKL
    from physgen.parallel import to_host
    from physgen.reweighting import log_Z
    from physgen.targets import DoubleWell

    def params(model):
        leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
        return np.concatenate([np.ravel(to_host(x)) for x in leaves])

    target = DoubleWell()
    flow = real_nvp(jax.random.key(0), 2, num_layers=2, width=8)
    kw = dict(steps=STEPS, chunk_size=10, progress=False, mesh=mesh)
    model, hist, _ = physgen.fit(jax.random.key(1), flow, ReverseKL(target, 64),
                                 checkpoint=checkpoint, **kw)
    data = 1.0 + 0.5 * jax.random.normal(jax.random.key(2), (256, 2))
    ml, _, _ = physgen.fit(jax.random.key(3), flow, MaximumLikelihood(), data=data,
                           batch_size=32, **kw)
    bg = physgen.BoltzmannGenerator(model, target)
    x, log_w = bg.sample_and_log_weights(jax.random.key(4), 512, mesh=mesh)
    est = log_Z(log_w)
    return {"rkl_params": params(model), "rkl_loss": hist["loss"], "ml_params": params(ml),
            "log_w": to_host(log_w), "x": to_host(x),
            "log_Z": np.array([float(est.value), float(est.stderr)])}


def _worker(port: int, process_id: int, out: str) -> None:
    # as a user's script: physgen imported first, then the devices and the run configured
    import jax

    import physgen

    jax.config.update("jax_num_cpu_devices", 2)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    info = physgen.parallel.initialize_distributed(f"127.0.0.1:{port}", 2, process_id)
    mesh = physgen.parallel.make_mesh()
    result = _compute(mesh, checkpoint=Path(out).with_suffix(".ckpt"))
    result["info"] = np.array([info["process_index"], info["process_count"],
                               info["local_device_count"], info["device_count"], mesh.size])
    if process_id == 0:
        np.savez(out, **result)
    jax.distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_and_reweight_like_one(tmp_path):
    out = tmp_path / "multihost.npz"
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    for k in ("XLA_FLAGS", "JAX_ENABLE_X64", "JAX_NUM_CPU_DEVICES"):
        env.pop(k, None)
    procs = [subprocess.Popen([sys.executable, __file__, str(port), str(i), str(out)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for i in range(2)]
    import jax

    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    try:
        single = _compute(None)
    finally:
        jax.config.update("jax_enable_x64", previous)
    logs = []
    for p in procs:
        try:
            log, _ = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        logs.append(log)
    assert all(p.returncode == 0 for p in procs), "\n\n".join(logs)[-6000:]
    with np.load(out) as f:
        multi = dict(f)
    # process 0 of 2, two local devices, four in all, and the mesh spans them
    np.testing.assert_array_equal(multi["info"], [0, 2, 2, 4, 4])
    np.testing.assert_allclose(multi["rkl_params"], single["rkl_params"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(multi["rkl_loss"], single["rkl_loss"], rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(np.diff(single["rkl_loss"]))) > 0  # it trained
    np.testing.assert_allclose(multi["ml_params"], single["ml_params"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(multi["x"], single["x"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(multi["log_w"], single["log_w"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(multi["log_Z"], single["log_Z"], rtol=1e-5)
    # process 0 wrote the checkpoint of the replicated model, and it loads
    import equinox as eqx

    import physgen
    from physgen.flows import real_nvp

    ckpt = out.with_suffix(".ckpt")
    like = real_nvp(jax.random.key(0), 2, num_layers=2, width=8)
    assert physgen.load_metadata(ckpt)["step"] == STEPS
    loaded, state = physgen.training.load_state(
        ckpt, like, physgen.objectives.ReverseKL(physgen.targets.DoubleWell(), 64))
    assert int(state.step) == STEPS
    leaves = jax.tree_util.tree_leaves(eqx.filter(loaded, eqx.is_inexact_array))
    np.testing.assert_array_equal(np.concatenate([np.ravel(x) for x in leaves]),
                                  multi["rkl_params"])


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
