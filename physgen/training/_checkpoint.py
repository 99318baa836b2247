"""Checkpoints: a JSON header plus ``eqx.tree_serialise_leaves``; atomic writes, no pickle.

File layout::

    b"PHYSGEN-CKPT\\n"            magic line
    <8-byte little-endian length of the header>
    <header: UTF-8 JSON>          format version, user metadata, leaf shapes/dtypes,
                                  payload length and SHA-256
    <payload>                     eqx.tree_serialise_leaves bytes (numpy .npy, no pickle)

The payload holds the model's leaves, then (for checkpoints written by ``fit``) those of the
training state. The structure of the model is not stored (Equinox modules hold code);
``load`` needs a model ``like`` of the same structure, which the user rebuilds from the
hyperparameters stored in ``metadata`` (see :func:`load_metadata`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import equinox as eqx
import jax

from .._base import check_finite_tree
from .._version import __version__

MAGIC = b"PHYSGEN-CKPT\n"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, truncated, or does not match the model given to ``load``."""


def _leaf_specs(tree) -> list[dict[str, Any]]:
    specs = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if eqx.is_array(leaf) or isinstance(leaf, jax.ShapeDtypeStruct):
            specs.append(
                {
                    "path": jax.tree_util.keystr(path),
                    "shape": list(leaf.shape),
                    "dtype": str(leaf.dtype),
                }
            )
    return specs


def save(path: str | os.PathLike, model, metadata: dict[str, Any] | None = None, *,
         state=None) -> Path:
    """Write ``model``'s arrays and JSON-able ``metadata`` to ``path`` atomically.

    ``state`` (a :class:`~physgen.training.TrainState`, as :func:`physgen.fit` saves) is
    written after the model, so that :func:`load` reads the model alone and
    :func:`~physgen.training.load_state` both. The file is written to a temporary file in
    the same directory, flushed, fsynced and renamed over ``path``, so an interrupted save
    never destroys an earlier checkpoint. Refuses a model holding NaN or inf.
    """
    path = Path(path)
    check_finite_tree(model, "model to save")
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, model)
    if state is not None:
        eqx.tree_serialise_leaves(buf, state)
    payload = buf.getvalue()
    header = {
        "format_version": FORMAT_VERSION,
        "physgen_version": __version__,
        "metadata": metadata or {},
        "leaves": _leaf_specs(model),
        "state_leaves": None if state is None else _leaf_specs(state),
        "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }
    try:
        header_bytes = json.dumps(header, sort_keys=True).encode()
    except TypeError as e:
        raise TypeError(f"checkpoint metadata must be JSON-serialisable: {e}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC)
            f.write(struct.pack("<Q", len(header_bytes)))
            f.write(header_bytes)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _read(path: Path) -> tuple[dict[str, Any], bytes]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint at {path}") from None
    if not raw.startswith(MAGIC):
        raise CheckpointError(f"{path} is not a physgen checkpoint (bad magic bytes)")
    off = len(MAGIC)
    if len(raw) < off + 8:
        raise CheckpointError(f"{path} is truncated: the header length is missing")
    (n,) = struct.unpack("<Q", raw[off : off + 8])
    off += 8
    if len(raw) < off + n:
        raise CheckpointError(f"{path} is truncated: header of {n} bytes is incomplete")
    try:
        header = json.loads(raw[off : off + n].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} has a corrupt header: {e}") from None
    payload = raw[off + n :]
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {header.get('format_version')}, this physgen "
            f"reads format {FORMAT_VERSION}"
        )
    if len(payload) != header["payload_bytes"]:
        raise CheckpointError(
            f"{path} is truncated: payload has {len(payload)} of {header['payload_bytes']} bytes"
        )
    if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
        raise CheckpointError(f"{path} is corrupt: payload checksum mismatch")
    return header, payload


def load_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``metadata`` dict stored by :func:`save` (after verifying the file)."""
    header, _ = _read(Path(path))
    return header["metadata"]


def _check_leaves(path, saved, expected, what):
    if len(saved) != len(expected):
        raise CheckpointError(
            f"{path} holds {len(saved)} arrays of {what} but the {what} given has "
            f"{len(expected)}: rebuild it with the hyperparameters in load_metadata(path)"
        )
    for s, e in zip(saved, expected, strict=True):
        if s["shape"] != e["shape"] or s["dtype"] != e["dtype"]:
            raise CheckpointError(
                f"{path}: leaf {e['path']} of the {what} has shape {tuple(s['shape'])} "
                f"{s['dtype']} in the file but {tuple(e['shape'])} {e['dtype']} in the "
                f"{what} given"
            )


def load(path: str | os.PathLike, like, *, state_like=None):
    """Load the model saved at ``path`` into a model with the structure of ``like``.

    With ``state_like`` (a training state of the structure saved, e.g. built by
    :func:`~physgen.training.load_state`) returns ``(model, state)``.

    Raises :class:`CheckpointError` if the file is truncated or corrupt, if its leaves'
    shapes and dtypes differ from ``like``'s (naming the first mismatching leaf), or if a
    state is asked of a file that holds none.
    """
    path = Path(path)
    header, payload = _read(path)
    _check_leaves(path, header["leaves"], _leaf_specs(like), "model")
    f = io.BytesIO(payload)
    model = eqx.tree_deserialise_leaves(f, like)
    check_finite_tree(model, "loaded model")
    if state_like is None:
        return model
    if header.get("state_leaves") is None:
        raise CheckpointError(f"{path} holds a model but no training state (saved outside fit)")
    _check_leaves(path, header["state_leaves"], _leaf_specs(state_like), "training state")
    return model, eqx.tree_deserialise_leaves(f, state_like)


__all__ = ["CheckpointError", "load", "load_metadata", "save"]
