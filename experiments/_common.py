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
