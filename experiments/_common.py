"""What the experiment scripts share: one argument parser, output (JSON, machine, timing),
the cosine-decay optimiser and the continuous-time models trained forward on data."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import physgen
from physgen import reweighting as rw
from physgen.diffusion import VPSDE, DenoisingScoreMatching, DiffusionModel, diffusion_model
from physgen.flow_matching import FlowMatching
from physgen.flows import cnf
from physgen.objectives import CNFMaximumLikelihood

CONTINUOUS = ("cnf", "flow_matching", "diffusion")


class ScriptParser(argparse.ArgumentParser):
    """An argument parser that checks its values before the script does any work.

    Integer options are counts: each must be >= 1, or >= 0 where its name says warm-up or
    its help says what 0 means (``"(0: no training)"``); ``--seed`` and ``--first-seed`` may
    be any integer. ``--out`` must be a folder that can be created and written to. A bad
    value ends the script at once with a usage message naming the option.
    """

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        for action in self._actions:
            value = getattr(parsed, action.dest, None)
            if action.type is int and value is not None:
                low = _minimum(action)
                for v in value if isinstance(value, list) else [value]:
                    if low is not None and v < low:
                        self.error(f"argument {'/'.join(action.option_strings)}: must be "
                                   f">= {low}, got {v}")
        out = getattr(parsed, "out", None)
        if out is not None:
            problem = _unwritable(Path(out))
            if problem:
                self.error(f"argument --out: cannot write to {out} ({problem})")
        return parsed


def _minimum(action) -> int | None:
    if action.dest in ("seed", "first_seed"):
        return None
    zero = "warmup" in action.dest or re.search(r"\b0:", action.help or "")
    return 0 if zero else 1


def _unwritable(folder: Path) -> str:
    """Why the script could not write in ``folder``, or ``""``: checked without creating it
    (an existing folder by writing a probe file, else its nearest existing parent)."""
    if folder.is_dir():
        try:
            fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            return e.strerror or str(e)
        return ""
    parent = folder
    while not parent.exists():
        if parent.parent == parent:
            return "no existing parent folder"
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{parent} is not writable"
    return ""


def script_parser(doc: str, out: str | None, *, devices: bool = False, seed: bool = True,
                  out_help: str = "output folder") -> argparse.ArgumentParser:
    """The parser every script starts from: its description (the first paragraph of
    ``doc``), ``--out`` (default ``out``), ``--quick``, ``--seed`` (unless ``seed=False``),
    ``--no-progress`` and, with ``devices``, ``--devices``; the script adds its own
    options. Its values are checked when parsed (:class:`ScriptParser`)."""
    p = ScriptParser(description=doc.split("\n\n")[0],
                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=None if out is None else Path(out),
                   help=out_help)
    p.add_argument("--quick", action="store_true", help="tiny run for tests (seconds)")
    if seed:
        p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    if devices:
        add_device_args(p)
    return p


def cosine_adam(lr: float, steps: int, alpha: float = 0.01) -> optax.GradientTransformation:
    """Adam whose rate decays from ``lr`` to ``alpha·lr`` over ``steps`` (cosine)."""
    return optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=alpha))


def continuous_model(kind: str, key, dim: int, *, width: int, depth: int, embed_dim: int = 16,
                     rtol: float = 1e-5, atol: float = 1e-5, eps: float | None = None,
                     weighting: str = "likelihood", ot_coupling: bool = True,
                     ot_epsilon: float = 0.02, ot_iters: int = 50):
    """``(model, objective)`` of a continuous-time model of ``R^dim`` trained on data, each
    with an exact ODE log-likelihood: ``"cnf"`` (maximum likelihood, Hutchinson trace),
    ``"flow_matching"`` (conditional flow matching, minibatch OT) or ``"diffusion"`` (a VP
    diffusion model, denoising score matching with ``weighting``; ``"likelihood"`` draws
    times uniformly in log-SNR)."""
    if kind == "diffusion":
        model = diffusion_model(key, dim, VPSDE(), width=width, depth=depth, eps=eps,
                                rtol=rtol, atol=atol)
        return model, DenoisingScoreMatching(weighting,
                                             importance_sampling=weighting == "likelihood")
    kw = dict(width=width, depth=depth, embed_dim=embed_dim, rtol=rtol, atol=atol)
    if kind == "cnf":
        return cnf(key, dim, trace="hutchinson", **kw), CNFMaximumLikelihood()
    if kind == "flow_matching":
        model = cnf(key, dim, zero_init=False, **kw)
        return model, FlowMatching(ot_coupling=ot_coupling, ot_epsilon=ot_epsilon,
                                   ot_iters=ot_iters)
    raise ValueError(f"kind must be one of {CONTINUOUS}, got {kind!r}")


def trajectories(model, key, n: int, num_times: int = 41) -> np.ndarray:
    """ODE paths of ``n`` base draws from noise to data, ``(num_times, n, *shape)``, of a
    continuous flow (``physgen.flows.cnf``) or a diffusion model (its probability-flow ODE)."""
    flow = model.as_transformed() if isinstance(model, DiffusionModel) else model
    z = flow.base.sample(key, (n,))
    ts = jnp.linspace(flow.bijection.t0, flow.bijection.t1, num_times)
    paths = _paths(flow, z, ts)
    return np.asarray(jnp.swapaxes(paths, 0, 1))


@eqx.filter_jit
def _paths(flow, z, ts):
    return jax.vmap(lambda x: flow.bijection.trajectory(x, ts))(z)


def train(key, model, objective, args, *, steps: int, lr: float, data=None,
          alpha: float = 0.01, **kw):
    """``physgen.fit`` with :func:`cosine_adam` (``lr``, ``alpha``), the script's
    ``--batch-size`` and progress setting; returns ``(model, history)``.

    On Ctrl-C the script writes what it has to ``--out``: ``interrupted.ckpt`` (the model, its
    training state and loss history: resumable) and ``interrupted.json`` (the step, the loss
    history, the configuration); it prints one line and exits with status 130.
    """
    try:
        model, history, _ = physgen.fit(
            key, model, objective, data=data, steps=steps,
            optimizer=cosine_adam(lr, steps, alpha), batch_size=args.batch_size,
            progress=not args.no_progress, **kw,
        )
    except physgen.training.TrainingInterrupted as e:
        folder = Path(args.out)
        ckpt = physgen.save(folder / "interrupted.ckpt", e.model,
                            {"step": e.step, "steps": steps}, state=e.state, history=e.history)
        out = folder / "interrupted.json"
        write_json(out, {"interrupted_at_step": e.step, "steps": steps,
                         "checkpoint": str(ckpt),
                         "config": {k: str(v) if isinstance(v, Path) else v
                                    for k, v in vars(args).items()},
                         "history": e.history})
        print(f"interrupted at step {e.step} of {steps}: the model is saved in {ckpt} "
              f"(resumable with physgen.training.load_state), the loss history in {out}",
              file=sys.stderr)
        raise SystemExit(130) from None
    return model, history


def estimate_dict(est, exact=None, *, bootstrap: bool = False) -> dict:
    """An :class:`~physgen.Estimate` as JSON: ``value`` and ``stderr`` (lists for arrays), with
    the ``exact`` value and the z-score when given, and the (bootstrap) 95% interval as
    ``ci95_bootstrap`` with ``bootstrap=True``."""
    value, stderr = np.asarray(est.value, np.float64), np.asarray(est.stderr, np.float64)
    d = {"value": value.tolist(), "stderr": stderr.tolist()}
    if bootstrap:
        d["ci95_bootstrap"] = [float(est.ci_low), float(est.ci_high)]
    if exact is not None:
        d["exact"] = float(exact)
        d["zscore"] = float((value - exact) / stderr) if stderr > 0 else math.inf
    return d


def weights_dict(log_w, what: str = "importance weights") -> dict:
    """What results.json carries for weighted samples: the Kish ``ess`` and ``ess_fraction``
    of ``log_w`` ``(N,)`` with the Pareto ``pareto_khat`` beside them and the
    ``weight_warnings`` of :func:`physgen.reweighting.weight_diagnostics` (issued as warnings
    too: k̂ above 0.7, ESS below 100 or below a tenth of N)."""
    d = rw.weight_diagnostics(log_w, what=what)
    return {"ess": d.ess, "ess_fraction": d.ess_fraction, "pareto_khat": d.pareto_khat,
            "weight_warnings": list(d.warnings)}


def weights_text(d: dict) -> str:
    """``ESS fraction 0.9971, Pareto k̂ 0.21`` from :func:`weights_dict`, flagged when a
    check failed."""
    flag = f" [{len(d['weight_warnings'])} warning(s): unreliable]" if d["weight_warnings"] else ""
    return f"ESS fraction {d['ess_fraction']:.4f}, Pareto k̂ {d['pareto_khat']:.2f}{flag}"


def num_parameters(model) -> int:
    """The number of trained (inexact array) entries of ``model``."""
    return sum(x.size for x in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array)))


def to_jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.ndarray, jax.Array)):
        return to_jsonable(np.asarray(obj).tolist())
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else str(f)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    return obj


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(to_jsonable(payload), indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def load_reference(stem: Path, settings: dict, seed: int):
    """``(meta, arrays)`` of a reference saved as ``stem``.json/.npz by :func:`save_reference`
    with these ``settings`` and ``seed``; ``None`` when missing or made otherwise."""
    meta_path, data_path = stem.with_suffix(".json"), stem.with_suffix(".npz")
    if meta_path.exists() and data_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta["settings"] == settings and meta["seed"] == seed:
            with np.load(data_path) as f:
                return meta, dict(f)
    return None


def save_reference(stem: Path, meta: dict, **arrays) -> None:
    """Write ``arrays`` to ``stem``.npz and ``meta`` (with its settings and seed) to .json."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(stem.with_suffix(".npz"), **arrays)
    write_json(stem.with_suffix(".json"), meta)


def machine() -> dict:
    dev = jax.devices()[0]
    return {
        "platform": dev.platform,
        "device": getattr(dev, "device_kind", str(dev)),
        "num_devices": jax.device_count(),
        "cpu": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "x64": bool(jax.config.jax_enable_x64),
    }


@contextmanager
def timer(store: dict, name: str):
    t0 = time.perf_counter()
    yield
    store[name] = time.perf_counter() - t0


def add_device_args(parser) -> None:
    """Add ``--devices N``: split batches and chains over N devices (a ``jax.sharding`` mesh).

    Call :func:`mesh_from_args` right after parsing, before any JAX computation: on CPU it
    then creates N host devices itself.
    """
    parser.add_argument(
        "--devices",
        type=int,
        default=None,
        metavar="N",
        help="run data-parallel over N devices (a jax.sharding mesh; on CPU, N host "
        "devices are created); default: one device, no mesh",
    )


def mesh_from_args(args):
    """The mesh asked for by ``--devices`` (``None`` without it): pass it as ``mesh=`` to
    ``physgen.fit``, ``run_mcmc`` and ``BoltzmannGenerator.sample_and_log_weights``.

    Before JAX has run anything, asking for more devices than the CPU backend has creates
    them (``jax_num_cpu_devices``); on an accelerator the mesh uses the real devices.
    """
    n = getattr(args, "devices", None)
    if n is None:
        return None
    if n < 1:
        raise SystemExit(f"--devices must be >= 1, got {n}")
    started = False
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:
        started = True  # JAX already started: use the devices it has
    if n > jax.device_count():
        hint = (f"; JAX was started before --devices could create {n} CPU devices: run with "
                f"JAX_NUM_CPU_DEVICES={n} set" if started else "")
        raise SystemExit(
            f"--devices {n}: only {jax.device_count()} {jax.devices()[0].platform} device(s) "
            f"available{hint}"
        )
    return physgen.parallel.make_mesh(n)
