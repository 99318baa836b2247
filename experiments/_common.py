"""Small helpers shared by the experiment scripts (output folders, JSON, timing)."""

from __future__ import annotations

import json
import math
import platform
import time
from contextlib import contextmanager
from pathlib import Path

import jax
import numpy as np


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
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:
        pass  # JAX already started: use the devices it has
    from physgen.parallel import make_mesh

    if n > jax.device_count():
        raise SystemExit(
            f"--devices {n}: only {jax.device_count()} {jax.devices()[0].platform} device(s) "
            "available"
        )
    return make_mesh(n)
