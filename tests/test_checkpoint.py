"""Nothing a user trained or saved is lost: checkpoints that refuse the wrong model by name,
temporary files, permissions, write failures, divergence, NaN and Ctrl-C during ``fit``."""

import errno
import json
import os
import stat
import struct
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _helpers import ctrl_c_at_chunk, traced_objective

import physgen
from physgen.distributions import DiagNormal
from physgen.flows import masked_autoregressive_flow, neural_spline_flow
from physgen.objectives import MaximumLikelihood, ReverseKL
from physgen.targets import Gaussian
from physgen.training import (
    CheckpointWarning,
    DivergenceWarning,
    TrainingInterrupted,
    best_checkpoint,
    load_history,
    load_state,
)

MAGIC = b"PHYSGEN-CKPT\n"


def _model():
    return DiagNormal(jnp.array([1.0, 2.0]), jnp.array([0.5, 3.0]))


def _rewrite_header(path, edit):
    """Rewrite the JSON header of the checkpoint at ``path`` with ``edit(header)``."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[len(MAGIC): len(MAGIC) + 8])
    start = len(MAGIC) + 8
    header = edit(json.loads(raw[start: start + n]))
    new = json.dumps(header).encode()
    path.write_bytes(MAGIC + struct.pack("<Q", len(new)) + new + raw[start + n:])


# -- the checkpoint knows its model --------------------------------------------------------


def test_a_checkpoint_refuses_another_architecture_by_name(tmp_path):
    # MAF and IAF of the same sizes have leaves of the same shapes and dtypes
    key = jax.random.key(0)
    maf = masked_autoregressive_flow(key, 2, width=8, num_layers=2)
    iaf = masked_autoregressive_flow(key, 2, width=8, num_layers=2, inverse_autoregressive=True)
    physgen.save(tmp_path / "maf.ckpt", maf)
    with pytest.raises(physgen.CheckpointError,
                       match=r"holds a MaskedAutoregressive at \.bijection.* has an Invert"):
        physgen.load(tmp_path / "maf.ckpt", iaf)
    back = physgen.load(tmp_path / "maf.ckpt", maf)
    assert eqx.tree_equal(back, maf)
    # a hyperparameter that leaves no trace in the leaves' shapes: the spline's interval
    nsf = neural_spline_flow(key, 2, num_layers=2, width=8, interval=4.0)
    physgen.save(tmp_path / "nsf.ckpt", nsf)
    with pytest.raises(physgen.CheckpointError, match=r"SplineTransformer.*interval = 4\.0 "
                                                      r"in the file, 3\.0 in the model given"):
        physgen.load(tmp_path / "nsf.ckpt",
                     neural_spline_flow(key, 2, num_layers=2, width=8, interval=3.0))


def test_a_checkpoint_of_another_physgen_version_says_so(tmp_path):
    path = tmp_path / "m.ckpt"
    physgen.save(path, _model())
    _rewrite_header(path, lambda h: {**h, "physgen_version": "0.0.1"})
    with pytest.warns(UserWarning, match=rf"written by physgen 0\.0\.1; this is physgen "
                                         rf"{physgen.__version__}"):
        back = physgen.load(path, _model())
    assert eqx.tree_equal(back, _model())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(physgen.CheckpointError, match=r"written by physgen 0\.0\.1"):
            physgen.load(path, DiagNormal(jnp.zeros(3), jnp.ones(3)))


def test_float64_checkpoint_under_float32_says_how_to_enable_x64_or_cast(tmp_path):
    path = tmp_path / "m64.ckpt"
    with jax.enable_x64(True):
        physgen.save(path, DiagNormal(jnp.array([1.0, 1 / 3]), jnp.array([0.5, 3.0])))
    like = DiagNormal(jnp.zeros(2), jnp.ones(2))
    assert like.loc.dtype == jnp.float32
    with pytest.raises(physgen.CheckpointError,
                       match=r"float64 values but the model given is float32.*jax_enable_x64"
                             r".*cast=True"):
        physgen.load(path, like)
    back = physgen.load(path, like, cast=True)
    assert back.loc.dtype == jnp.float32
    np.testing.assert_array_equal(back.loc, np.array([1.0, 1 / 3], np.float32))
    # and the reverse: a float32 checkpoint into a float64 model
    path32 = tmp_path / "m32.ckpt"
    physgen.save(path32, _model())
    with jax.enable_x64(True):
        like64 = DiagNormal(jnp.zeros(2), jnp.ones(2))
        with pytest.raises(physgen.CheckpointError, match=r"float32 values .* float64.*cast"):
            physgen.load(path32, like64)
        assert physgen.load(path32, like64, cast=True).loc.dtype == jnp.float64


@pytest.mark.parametrize("edit, message", [
    (lambda h: [h], "not an object"),
    (lambda h: {k: v for k, v in h.items() if k != "leaves"}, "'leaves' is missing"),
    (lambda h: {k: v for k, v in h.items() if k != "payload_sha256"}, "'payload_sha256'"),
    (lambda h: {**h, "payload_bytes": "many"}, "'payload_bytes' is not a int"),
    (lambda h: "text", "not an object"),
])
def test_a_bad_header_raises_checkpoint_error(tmp_path, edit, message):
    path = tmp_path / "m.ckpt"
    physgen.save(path, _model(), {"a": 1})
    _rewrite_header(path, edit)
    for read in (lambda: physgen.load(path, _model()), lambda: physgen.load_metadata(path)):
        with pytest.raises(physgen.CheckpointError, match=message):
            read()


# -- files -----------------------------------------------------------------------------------


def test_temporary_files_of_a_killed_save_are_removed_by_the_next(tmp_path):
    path = tmp_path / "m.ckpt"
    # what a save killed between its write and its rename leaves behind
    stale = [tmp_path / ".m.ckpt.k1llqz8a.tmp", tmp_path / ".m.ckpt.abcd_123.tmp"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    other = tmp_path / ".n.ckpt.abcd_123.tmp"  # another checkpoint's: not ours to remove
    other.write_bytes(b"x")
    physgen.save(path, _model())
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "m.ckpt"]


def test_permissions_follow_the_umask_and_the_file_replaced(tmp_path):
    path = tmp_path / "m.ckpt"
    old = os.umask(0o002)
    try:
        physgen.save(path, _model())
        assert stat.S_IMODE(path.stat().st_mode) == 0o664
        os.umask(0o077)
        os.chmod(path, 0o644)
        physgen.save(path, _model())  # replaces a 0644 file: stays 0644
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        physgen.save(tmp_path / "new.ckpt", _model())
        assert stat.S_IMODE((tmp_path / "new.ckpt").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_write_errors_name_the_checkpoint_not_a_temporary_file(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(OSError, match="file/sub/m.ckpt") as err:
        physgen.save(blocker / "sub" / "m.ckpt", _model())
    assert ".tmp" not in str(err.value)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"No space left on device.*m\.ckpt") as err:
        physgen.save(tmp_path / "m.ckpt", _model())
    assert err.value.errno == errno.ENOSPC and ".tmp" not in str(err.value)
    assert not list(tmp_path.glob(".*tmp"))


# -- fit keeps what it trained ---------------------------------------------------------------


_DATA = (jax.random.normal(jax.random.key(1), (1000, 2)) * jnp.array([0.5, 2.0])
         + jnp.array([1.0, -1.0]))


def _ml_fit(model=None, **kw):
    kw = dict(data=_DATA, batch_size=64, steps=40, chunk_size=10, progress=False,
              optimizer=optax.adam(0.05)) | kw
    model = DiagNormal(jnp.zeros(2), jnp.ones(2)) if model is None else model
    return physgen.fit(jax.random.key(0), model, kw.pop("objective", MaximumLikelihood()), **kw)


def test_fit_checks_the_checkpoint_folder_and_metadata_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    traces = []
    with pytest.raises(OSError, match=r"file/run\.ckpt"):
        _ml_fit(objective=traced_objective(traces, data=True), checkpoint=blocker / "run.ckpt")
    with pytest.raises(TypeError, match="metadata must be JSON-serialisable"):
        _ml_fit(objective=traced_objective(traces, data=True), checkpoint=tmp_path / "run.ckpt",
                metadata={"optimizer": optax.adam(1e-3)})
    assert traces == []  # nothing was trained, nothing lost


def test_a_failed_write_during_fit_warns_and_returns_the_model(tmp_path, monkeypatch):
    expected, _, _ = _ml_fit()
    fsync = os.fsync
    ckpt = tmp_path / "run.ckpt"

    def disk_full_after_the_first_checkpoint(fd):
        if ckpt.exists():
            raise OSError(errno.ENOSPC, "No space left on device")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", disk_full_after_the_first_checkpoint)
    with pytest.warns(CheckpointWarning) as record:
        model, history, state = _ml_fit(checkpoint=ckpt)
    messages = [str(w.message) for w in record]
    assert any("No space left on device" in m and "training goes on" in m for m in messages)
    assert any("last checkpoint (step 40) could not be written" in m for m in messages)
    assert eqx.tree_equal(model, expected) and int(state.step) == 40
    monkeypatch.setattr(os, "fsync", fsync)
    assert physgen.load_metadata(ckpt)["step"] == 10  # the last write that succeeded


def test_a_diverging_run_keeps_the_best_and_does_not_overwrite_the_good_checkpoint(tmp_path):
    # 200 good steps, then a learning rate that wrecks the model (finite garbage)
    lr = optax.piecewise_constant_schedule(0.05, {200: 10.0 / 0.05})
    ckpt = tmp_path / "run.ckpt"
    kw = dict(steps=400, chunk_size=50, optimizer=optax.adam(lr), checkpoint=ckpt)
    with pytest.warns(DivergenceWarning, match=r"far above its best .* \(by more than .* = 10 ×"):
        model, history, _ = _ml_fit(**kw)
    assert np.all(np.isfinite(history["loss"])) and float(jnp.abs(model.loc).max()) > 10
    assert physgen.load_metadata(ckpt)["step"] == 200  # never replaced by a diverged model
    best = best_checkpoint(ckpt)
    assert best.name == "run.best.ckpt"
    meta = physgen.load_metadata(best)
    assert meta["best"] and meta["step"] <= 200
    good = physgen.load(best, model)
    np.testing.assert_allclose(good.loc, [1.0, -1.0], atol=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        restored, _, state = _ml_fit(**kw, restore_best=True)
    assert eqx.tree_equal(restored, good) and int(state.step) == meta["step"]


def test_a_nan_after_divergence_does_not_save_the_wrecked_model(tmp_path):
    target = Gaussian(jnp.array([1.0, -1.0]), jnp.diag(jnp.array([0.25, 4.0])))
    lr = optax.piecewise_constant_schedule(0.05, {200: 1e3 / 0.05})
    ckpt = tmp_path / "run.ckpt"
    q = DiagNormal(jnp.zeros(2), jnp.ones(2))
    with pytest.raises(physgen.NonFiniteLossError) as err:
        physgen.fit(jax.random.key(0), q, ReverseKL(target, 64), steps=400, chunk_size=50,
                    optimizer=optax.adam(lr), progress=False, checkpoint=ckpt)
    e = err.value
    assert e.step > 200
    # the step-200 model is kept, in the checkpoint and on the error
    assert physgen.load_metadata(ckpt)["step"] == 200 and e.best_step == 200
    assert f"the best model (step 200) is in {best_checkpoint(ckpt)}" in str(e)
    np.testing.assert_allclose(physgen.load(ckpt, q).loc, [1.0, -1.0], atol=0.3)
    np.testing.assert_allclose(e.best_model.loc, [1.0, -1.0], atol=0.3)


def test_ctrl_c_saves_the_run_with_its_history_and_it_resumes(tmp_path, monkeypatch):
    import physgen.training._loop as loop

    whole, whole_history, _ = _ml_fit()

    monkeypatch.setattr(loop, "tqdm", ctrl_c_at_chunk(3))
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(TrainingInterrupted) as err:
        _ml_fit(checkpoint=ckpt)
    e = err.value
    assert isinstance(e, KeyboardInterrupt) and "\n" not in str(e)
    assert str(e).startswith(f"fit interrupted at step 30 of 40: the model, its training "
                             f"state and the loss history are saved in {ckpt}")
    assert e.__suppress_context__ and e.step == 30 and int(e.state.step) == 30
    np.testing.assert_array_equal(load_history(ckpt)["loss"], whole_history["loss"][:30])
    np.testing.assert_array_equal(e.history["loss"], whole_history["loss"][:30])
    monkeypatch.undo()
    model, state = load_state(ckpt, e.model, MaximumLikelihood(), optax.adam(0.05))
    assert eqx.tree_equal(model, e.model)
    resumed, rest, _ = _ml_fit(model, steps=10, state=state)
    np.testing.assert_allclose(rest["loss"], whole_history["loss"][30:], rtol=1e-6)
    assert eqx.tree_equal(resumed, whole, rtol=1e-6, atol=1e-6)


def test_a_real_ctrl_c_ends_fit_with_its_message_and_a_resumable_checkpoint(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    # the first line makes Ctrl-C raise KeyboardInterrupt as it does in a terminal: a parent
    # that ignores SIGINT (a background job, a test worker) passes SIG_IGN on to the child
    code = """
import signal; signal.signal(signal.SIGINT, signal.default_int_handler)
import sys
import jax, jax.numpy as jnp, optax
import physgen
from physgen.distributions import DiagNormal
from physgen.objectives import MaximumLikelihood

data = jax.random.normal(jax.random.key(1), (1000, 2))
physgen.fit(jax.random.key(0), DiagNormal(jnp.zeros(2), jnp.ones(2)), MaximumLikelihood(),
            data=data, batch_size=64, steps=10**8, chunk_size=1000, progress=False,
            optimizer=optax.adam(1e-3), checkpoint=sys.argv[1])
"""
    ckpt = tmp_path / "run.ckpt"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, "-c", code, str(ckpt)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("physgen.training._loop.TrainingInterrupted: fit interrupted at "
                           "step "), err[-3000:]
    assert "jax" not in err.lower().replace("physgen", "")  # no JAX internals in the trace
    step = int(last.split("at step ")[1].split()[0])
    assert step > 0 and step % 1000 == 0
    assert physgen.load_metadata(ckpt)["step"] == step
    model, state = load_state(ckpt, DiagNormal(jnp.zeros(2), jnp.ones(2)), MaximumLikelihood(),
                              optax.adam(1e-3))
    assert int(state.step) == step and load_history(ckpt)["loss"].shape == (step,)


def test_a_resumed_run_does_not_replace_a_better_best_of_the_run_it_continues(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    model, _, state = _ml_fit(steps=200, chunk_size=50, checkpoint=ckpt)
    first_best = physgen.load_metadata(best_checkpoint(ckpt))
    assert first_best["step"] <= 200
    # continued with a learning rate that wrecks it: the best stays that of the first part
    with pytest.warns(DivergenceWarning):
        wrecked, _, wrecked_state = _ml_fit(model, steps=100, chunk_size=50, checkpoint=ckpt,
                                            state=state, optimizer=optax.adam(10.0))
    assert float(jnp.abs(wrecked.loc).max()) > 10
    best = physgen.load_metadata(best_checkpoint(ckpt))
    # the model the second part starts from (step 200) may be better; nothing after it is
    assert best["step"] <= 200 and best["smoothed_loss"] <= first_best["smoothed_loss"]
    assert physgen.load_metadata(ckpt)["step"] == 200
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        restored, _, restored_state = _ml_fit(
            model, steps=100, chunk_size=50, checkpoint=ckpt, state=state, restore_best=True,
            optimizer=optax.adam(10.0))
    assert int(restored_state.step) == best["step"]
    assert eqx.tree_equal(restored, physgen.load(best_checkpoint(ckpt), model))
    # continuing the wrecked run: its best is the earlier run's, read back from the file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        again, _, again_state = _ml_fit(wrecked, steps=50, chunk_size=50, checkpoint=ckpt,
                                        state=wrecked_state, restore_best=True,
                                        optimizer=optax.adam(10.0))
    assert int(again_state.step) == best["step"] and eqx.tree_equal(again, restored)
