"""Every bad input is named before work starts: fit's arguments, sample shapes, complex
inputs, requests too big for memory, and the experiment scripts' options (and their Ctrl-C)."""

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _helpers import ctrl_c_at_chunk, traced_objective

import physgen
from physgen.distributions import DiagNormal
from physgen.objectives import MaximumLikelihood

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"


_Q = DiagNormal(jnp.zeros(2), jnp.ones(2))
_X = jnp.ones((10, 2))


@pytest.mark.parametrize("data_objective, kw, message", [
    (False, dict(batch_size=0), r"batch_size must be an integer >= 1, got 0"),
    (True, dict(batch_size=-4), r"batch_size must be an integer >= 1, got -4"),
    (True, dict(batch_size=2.5), r"batch_size must be an integer >= 1, got 2\.5"),
    (True, dict(data=jnp.ones((0, 2))), r"data is empty: shape \(0, 2\)"),
    (True, dict(data=_X * (1 + 1j)), r"data is complex \(complex64\)"),
    (False, dict(chunk_size=0), r"chunk_size must be an integer >= 1, got 0"),
    (False, dict(steps=2.5), r"steps must be an integer >= 1, got 2\.5"),
    (False, dict(steps=0), r"steps must be an integer >= 1, got 0"),
    (False, dict(steps="10"), r"steps must be an integer >= 1, got '10'"),
    (False, dict(divergence=0.0), r"divergence must be a positive number or None"),
])
def test_fit_names_a_bad_argument_before_any_work(data_objective, kw, message):
    traces = []
    args = dict(steps=5, progress=False)
    objective = traced_objective(traces, data=data_objective)
    if data_objective:
        args["data"] = _X
    with pytest.raises((ValueError, TypeError), match=message):
        physgen.fit(jax.random.key(0), _Q, objective, **{**args, **kw})
    assert traces == []


def test_sample_refuses_negative_shapes_and_bad_batch_sizes():
    key = jax.random.key(0)
    for shape in [(-1,), (2, -3)]:
        with pytest.raises(ValueError, match=r"sample_shape must hold non-negative ints"):
            _Q.sample(key, shape)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be a positive int or None"):
            _Q.sample(key, (4,), batch_size=bad)
        with pytest.raises(ValueError, match="batch_size must be a positive int or None"):
            _Q.log_prob(jnp.zeros((4, 2)), batch_size=bad)
    assert _Q.sample(key, (0,)).shape == (0, 2)


def test_log_prob_refuses_complex_inputs():
    x = jnp.ones((3, 2)) * (1 + 1j)
    with pytest.raises(ValueError, match=r"x is complex \(complex64\)"):
        _Q.log_prob(x)
    flow = physgen.flows.real_nvp(jax.random.key(0), 2, num_layers=1, width=4,
                                  cond_shape=(1,))
    with pytest.raises(ValueError, match=r"condition is complex"):
        flow.log_prob(jnp.ones((3, 2)), jnp.ones((3, 1)) * 1j)
    np.testing.assert_allclose(_Q.log_prob(jnp.ones((3, 2))), _Q.log_prob(jnp.real(x)))


def test_a_request_too_big_for_memory_names_batch_size_and_streams_with_it():
    # a subprocess whose heap is limited to 3 GiB: 2²³ samples of a width-64 flow need 4 GiB
    # for one hidden layer at once, and a few MiB per batch of 2¹⁶
    code = textwrap.dedent("""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_DATA, (3 * 2**30, 3 * 2**30))
        import jax
        from physgen.flows import real_nvp
        flow = real_nvp(jax.random.key(0), 2, num_layers=1, width=64)
        try:
            flow.sample(jax.random.key(1), (2**23,))
        except MemoryError as e:
            print("MemoryError:", e)
        x = flow.sample(jax.random.key(1), (2**23,), batch_size=2**16)
        print("streamed", x.shape)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("MemoryError: evaluating 8388608 examples at once needs more memory than the "
            "device has") in proc.stdout
    assert "pass batch_size=, e.g. batch_size=65536" in proc.stdout
    assert "streamed (8388608, 2)" in proc.stdout


# -- the experiment scripts ------------------------------------------------------------------


def _script(name):
    sys.path.insert(0, str(EXPERIMENTS))
    spec = importlib.util.spec_from_file_location(f"_inputs_{name}", EXPERIMENTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], r"argument --steps: must be >= 1, got 0"),
    (["--steps", "-5"], r"argument --steps: must be >= 1, got -5"),
    (["--hmc-chains", "0"], r"argument --hmc-chains: must be >= 1, got 0"),
    (["--num-samples", "-1"], r"argument --num-samples: must be >= 1, got -1"),
    (["--devices", "0"], r"argument --devices: must be >= 1, got 0"),
])
def test_a_script_refuses_bad_counts_while_parsing(tmp_path, capsys, argv, message):
    dw = _script("double_well")
    with pytest.raises(SystemExit) as e:
        dw.parse_args([*argv, "--out", str(tmp_path)])
    assert e.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_a_script_refuses_an_unwritable_out_folder_while_parsing(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    dw = _script("double_well")
    with pytest.raises(SystemExit) as e:
        dw.parse_args(["--out", str(blocker / "results")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --out: cannot write to {blocker / 'results'}" in err
    assert "is a file, not a folder" in err
    assert not (blocker.parent / "results").exists()


def test_counts_that_may_be_zero_and_seeds_pass(tmp_path):
    phi4 = _script("phi4")
    args = phi4.parse_args(["--steps", "0", "--hmc-warmup", "0", "--seed", "-3",
                            "--out", str(tmp_path)])
    assert (args.steps, args.hmc_warmup, args.seed) == (0, 0, -3)


def test_ctrl_c_in_a_script_writes_what_it_has(tmp_path, capsys, monkeypatch):
    import physgen.training._loop as loop

    sys.path.insert(0, str(EXPERIMENTS))
    import _common

    monkeypatch.setattr(loop, "tqdm", ctrl_c_at_chunk(2))
    args = argparse.Namespace(batch_size=16, no_progress=False, out=tmp_path, steps=300)
    data = jax.random.normal(jax.random.key(0), (100, 2))
    with pytest.raises(SystemExit) as e:
        _common.train(jax.random.key(1), _Q, MaximumLikelihood(), args, steps=300, lr=1e-2,
                      data=data)
    assert e.value.code == 130
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("interrupted at step 200 of 300")
    info = json.loads((tmp_path / "interrupted.json").read_text())
    assert info["interrupted_at_step"] == 200 and len(info["history"]["loss"]) == 200
    monkeypatch.undo()
    model, state = physgen.training.load_state(tmp_path / "interrupted.ckpt", _Q,
                                               MaximumLikelihood(),
                                               _common.cosine_adam(1e-2, 300))
    assert int(state.step) == 200
    np.testing.assert_array_equal(physgen.training.load_history(tmp_path / "interrupted.ckpt")
                                  ["loss"], info["history"]["loss"])
    # the run continues where it stopped
    more, hist, state = physgen.fit(jax.random.key(1), model, MaximumLikelihood(), data=data,
                                    steps=100, batch_size=16, state=state, progress=False,
                                    optimizer=_common.cosine_adam(1e-2, 300))
    assert int(state.step) == 300 and hist["loss"].shape == (100,)
