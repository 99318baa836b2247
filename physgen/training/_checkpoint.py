"""Checkpoints: a JSON header plus ``eqx.tree_serialise_leaves``; atomic writes, no pickle.

File layout::

    b"PHYSGEN-CKPT\\n"            magic line
    <8-byte little-endian length of the header>
    <header: UTF-8 JSON object>   format version, physgen version, user metadata, the model's
                                  class and structure, leaf shapes/dtypes, the lengths of the
                                  payload's sections, payload length and SHA-256
    <payload>                     the model's leaves (eqx.tree_serialise_leaves: numpy .npy,
                                  no pickle), then those of the training state (checkpoints
                                  written by ``fit``), then the loss history (.npy arrays)

The model's code is not stored (Equinox modules hold code); ``load`` needs a model ``like`` of
the same structure, which the user rebuilds from the hyperparameters stored in ``metadata``
(see :func:`load_metadata`). The header records the class of every module in the model, its
position in the tree and its static (hyperparameter) fields, so that a model of another
architecture with leaves of the same shapes is refused by name rather than loaded.

Format 1 (physgen 0.1 before the structure was recorded) is still read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import io
import json
import os
import re
import stat
import struct
import tempfile
import warnings
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._base import check_finite_tree
from .._version import __version__

MAGIC = b"PHYSGEN-CKPT\n"
FORMAT_VERSION = 2
_READABLE_FORMATS = (1, 2)
_REQUIRED = {"format_version": int, "metadata": dict, "leaves": list, "payload_bytes": int,
             "payload_sha256": str}


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, truncated, or does not match the model given to ``load``."""


# -- what the header records --------------------------------------------------------------


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


_SKIP = object()


def _static_value(v):
    """A static field as JSON (numbers, strings, tuples of them; a function by its name), or
    ``_SKIP`` for values that have no stable description."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    if isinstance(v, (tuple, list)):
        items = [_static_value(x) for x in v]
        return _SKIP if any(x is _SKIP for x in items) else items
    if callable(v) and not isinstance(v, eqx.Module) and hasattr(v, "__name__"):
        return f"<function {getattr(v, '__qualname__', v.__name__)}>"
    return _SKIP


def _structure(tree) -> list[dict[str, Any]]:
    """Every Equinox module in ``tree``, outermost first: its position (as in the leaves'
    paths), its class, and its static fields (hyperparameters such as shapes or bin counts)."""
    out: list[dict[str, Any]] = []

    def walk(node, where):
        if isinstance(node, eqx.Module):
            cls = type(node)
            entry = {"path": where, "class": cls.__qualname__, "module": cls.__module__,
                     "static": {}}
            out.append(entry)
            for f in dataclasses.fields(node):
                if not hasattr(node, f.name):
                    continue
                v = getattr(node, f.name)
                if f.metadata.get("static", False) and not isinstance(v, eqx.Module):
                    j = _static_value(v)
                    if j is not _SKIP:
                        entry["static"][f.name] = j
                else:
                    walk(v, f"{where}.{f.name}")
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")
        elif isinstance(node, dict):
            for k in sorted(node, key=str):
                walk(node[k], f"{where}[{k!r}]")

    walk(tree, "")
    # tuples become lists, as they come back from the file
    return json.loads(json.dumps(out))


def _describe(where: str) -> str:
    return "the model itself" if where == "" else where


def _a(name: str) -> str:
    return f"{'an' if name[:1] in 'AEIOU' else 'a'} {name}"


def _check_structure(path: Path, saved: list[dict], expected: list[dict], version_note: str):
    by_path = {e["path"]: e for e in expected}
    for s in saved:
        e = by_path.get(s["path"])
        if e is None:
            raise CheckpointError(
                f"{path} holds {_a(s['class'])} at {_describe(s['path'])}, which the model given "
                f"does not have: it is another architecture; rebuild it with the "
                f"hyperparameters in load_metadata(path){version_note}"
            )
        if e["class"] != s["class"]:
            raise CheckpointError(
                f"{path} holds {_a(s['class'])} at {_describe(s['path'])} but the model given "
                f"has {_a(e['class'])} there: the checkpoint is of another model{version_note}"
            )
        if e["static"] != s["static"]:
            diff = [k for k in sorted(set(s["static"]) | set(e["static"]))
                    if s["static"].get(k) != e["static"].get(k)]
            details = "; ".join(f"{k} = {s['static'].get(k)!r} in the file, "
                                f"{e['static'].get(k)!r} in the model given" for k in diff)
            raise CheckpointError(
                f"{path}: the {s['class']} at {_describe(s['path'])} was saved with other "
                f"hyperparameters ({details}){version_note}"
            )
    saved_paths = {s["path"] for s in saved}
    for e in expected:
        if e["path"] not in saved_paths:
            raise CheckpointError(
                f"the model given has {_a(e['class'])} at {_describe(e['path'])} that {path} "
                f"does not hold: it is another architecture{version_note}"
            )


# -- writing ------------------------------------------------------------------------------


def best_checkpoint(path: str | os.PathLike) -> Path:
    """Where :func:`physgen.fit` keeps the best model beside the latest one at ``path``:
    ``flow.ckpt`` -> ``flow.best.ckpt`` (``run`` -> ``run.best``)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.best{path.suffix}" if path.suffix else f"{path.name}.best")


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no other way to read it: set and restore at once
    os.umask(mask)
    return mask


def _file_mode(path: Path) -> int:
    """The mode of the file replaced, or what ``open`` would give a new one (0666 - umask)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _named(e: OSError, path: Path) -> OSError:
    """The same error (same errno, same subclass) naming the user's path, not a temp file."""
    if e.filename == str(path):
        return e
    return OSError(e.errno, f"{e.strerror or e} (writing the checkpoint)", str(path))


def _make_folder(path: Path) -> None:
    """Create the folder of ``path``; a file in its way is named, not "File exists"."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        blocker = next((p for p in path.parents if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{blocker} is a file, not a folder "
                                     "(writing the checkpoint)", str(path)) from None
        raise _named(e, path) from None


def _stale_temporaries(path: Path) -> list[Path]:
    """Temporary files of earlier saves to ``path`` that were killed before their rename."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
    try:
        return [p for p in path.parent.iterdir() if pattern.fullmatch(p.name)]
    except OSError:
        return []


def _write_atomic(path: Path, parts: list[bytes]) -> None:
    try:
        _make_folder(path)
        for p in _stale_temporaries(path):
            with contextlib.suppress(OSError):
                p.unlink()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _named(e, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _file_mode(path))
            for part in parts:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _named(e, path) from None
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def check_writable(path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
    """Raise now, before any work, if a checkpoint could not be written to ``path``: its
    folder cannot be created or written to (``OSError`` naming ``path``), ``path`` is a
    folder, or ``metadata`` is not JSON-serialisable (``TypeError``)."""
    path = Path(path)
    _metadata_json(metadata)
    if path.is_dir():
        raise IsADirectoryError(21, "the checkpoint path is a folder", str(path))
    try:
        _make_folder(path)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise _named(e, path) from None
    return path


def _metadata_json(metadata) -> dict:
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise TypeError(f"checkpoint metadata must be a dict, got {type(metadata).__name__}")
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as e:
        raise TypeError(f"checkpoint metadata must be JSON-serialisable: {e}") from None
    return metadata


def save(path: str | os.PathLike, model, metadata: dict[str, Any] | None = None, *,
         state=None, history: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s arrays and JSON-able ``metadata`` to ``path`` atomically.

    ``state`` (a :class:`~physgen.training.TrainState`, as :func:`physgen.fit` saves) is
    written after the model, so that :func:`load` reads the model alone and
    :func:`~physgen.training.load_state` both; ``history`` (a dict of 1-D arrays, the loss
    history ``fit`` returns) after it, read by :func:`load_history`.

    The file is written to a temporary file in the same folder, flushed, fsynced and renamed
    over ``path``, so an interrupted save never destroys an earlier checkpoint; temporary
    files left by a save that was killed are removed by the next save to ``path``. The file
    gets the permissions of the file it replaces, or those the umask gives a new file.
    Refuses a model holding NaN or inf. Errors name ``path``.
    """
    path = Path(path)
    check_finite_tree(model, "model to save")
    metadata = _metadata_json(metadata)
    sections = {}
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, model)
    sections["model"] = buf.tell()
    if state is not None:
        eqx.tree_serialise_leaves(buf, state)
    sections["state"] = buf.tell() - sections["model"]
    history = {} if history is None else {str(k): np.asarray(v) for k, v in history.items()}
    for v in history.values():
        np.save(buf, v, allow_pickle=False)
    sections["history"] = buf.tell() - sections["model"] - sections["state"]
    payload = buf.getvalue()
    header = {
        "format_version": FORMAT_VERSION,
        "physgen_version": __version__,
        "metadata": metadata,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "structure": _structure(model),
        "leaves": _leaf_specs(model),
        "state_leaves": None if state is None else _leaf_specs(state),
        "history": list(history),
        "sections": sections,
        "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }
    header_bytes = json.dumps(header, sort_keys=True).encode()
    _write_atomic(path, [MAGIC, struct.pack("<Q", len(header_bytes)), header_bytes, payload])
    return path


# -- reading ------------------------------------------------------------------------------


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
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} has a corrupt header: a JSON {type(header).__name__}, "
                              "not an object")
    if header.get("format_version") not in _READABLE_FORMATS:
        raise CheckpointError(
            f"{path} has checkpoint format {header.get('format_version')!r}, this physgen "
            f"(version {__version__}) reads formats {', '.join(map(str, _READABLE_FORMATS))}"
        )
    for key, kind in _REQUIRED.items():
        if key not in header:
            raise CheckpointError(f"{path} has a corrupt header: the entry {key!r} is missing")
        if not isinstance(header[key], kind) or isinstance(header[key], bool):
            raise CheckpointError(f"{path} has a corrupt header: {key!r} is not a "
                                  f"{kind.__name__}")
    payload = raw[off + n :]
    if len(payload) != header["payload_bytes"]:
        raise CheckpointError(
            f"{path} is truncated: payload has {len(payload)} of {header['payload_bytes']} bytes"
        )
    if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
        raise CheckpointError(f"{path} is corrupt: payload checksum mismatch")
    return header, payload


def _version_note(path: Path, header: dict) -> str:
    written = header.get("physgen_version")
    if written == __version__:
        return ""
    return f" (the file was written by physgen {written}; this is physgen {__version__})"


def load_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``metadata`` dict stored by :func:`save` (after verifying the file)."""
    header, _ = _read(Path(path))
    return header["metadata"]


def load_history(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The loss history stored with a checkpoint written by :func:`physgen.fit` when its run
    ended, failed or was interrupted (the steps of that call, up to the step saved); empty
    for a checkpoint saved without (during a run, or by :func:`save`)."""
    path = Path(path)
    header, payload = _read(path)
    keys, sections = header.get("history") or [], header.get("sections") or {}
    if not keys:
        return {}
    try:
        f = io.BytesIO(payload[sections["model"] + sections["state"] :])
        return {k: np.load(f, allow_pickle=False) for k in keys}
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has a corrupt loss history: {e}") from None


_FLOATS = ("float16", "bfloat16", "float32", "float64")


def _dtype_advice(saved: str, given: str) -> str:
    if saved == "float64" and given == "float32":
        return ("the file holds float64 values but the model given is float32 (JAX's "
                "default): enable float64 before building the model, "
                "jax.config.update('jax_enable_x64', True), or pass cast=True to load(...) "
                "to round them to float32")
    if saved in _FLOATS and given in _FLOATS:
        return (f"the file holds {saved} values but the model given is {given}: build the "
                f"model in {saved} (for float32: without jax_enable_x64), or pass cast=True "
                f"to load(...) to convert them")
    return f"the file holds {saved} values but the model given has {given}"


def _check_leaves(path, saved, expected, what, cast, version_note=""):
    if len(saved) != len(expected):
        raise CheckpointError(
            f"{path} holds {len(saved)} arrays of {what} but the {what} given has "
            f"{len(expected)}: rebuild it with the hyperparameters in load_metadata(path)"
            f"{version_note}"
        )
    for s, e in zip(saved, expected, strict=True):
        if s["shape"] != e["shape"]:
            raise CheckpointError(
                f"{path}: leaf {e['path']} of the {what} has shape {tuple(s['shape'])} "
                f"{s['dtype']} in the file but {tuple(e['shape'])} {e['dtype']} in the "
                f"{what} given{version_note}"
            )
        if s["dtype"] != e["dtype"]:
            if cast and s["dtype"] in _FLOATS and e["dtype"] in _FLOATS:
                continue
            raise CheckpointError(
                f"{path}: leaf {e['path']} of the {what}: {_dtype_advice(s['dtype'], e['dtype'])}"
            )


def _filter_spec(cast: bool):
    if not cast:
        return eqx.default_deserialise_filter_spec

    def spec(f, x):
        if isinstance(x, (jax.Array, jax.ShapeDtypeStruct)) and jnp.issubdtype(
            x.dtype, jnp.inexact
        ):
            return jnp.asarray(np.load(f, allow_pickle=False).astype(x.dtype))
        return eqx.default_deserialise_filter_spec(f, x)

    return spec


def load(path: str | os.PathLike, like, *, state_like=None, cast: bool = False):
    """Load the model saved at ``path`` into a model with the structure of ``like``.

    With ``state_like`` (a training state of the structure saved, e.g. built by
    :func:`~physgen.training.load_state`) returns ``(model, state)``. ``cast=True`` converts
    floating-point values saved in another precision (a float64 checkpoint into a float32
    model, or the reverse) to the dtypes of ``like``.

    Warns when the file was written by another version of physgen. Raises
    :class:`CheckpointError` if the header is corrupt, the file truncated or corrupt, if the
    model given is of another class or architecture than the one saved (naming the first
    module that differs, or the hyperparameter), if its leaves' shapes or dtypes differ
    (naming the first mismatching leaf; for float64/float32, how to enable float64 or
    cast), or if a state is asked of a file that holds none.
    """
    path = Path(path)
    header, payload = _read(path)
    note = _version_note(path, header)
    if note:
        warnings.warn(f"{path} was written by physgen {header.get('physgen_version')}; this is "
                      f"physgen {__version__}: check the model before relying on it",
                      stacklevel=2)
    if "structure" in header:
        _check_structure(path, header["structure"], _structure(like), note)
    _check_leaves(path, header["leaves"], _leaf_specs(like), "model", cast, note)
    f = io.BytesIO(payload)
    model = eqx.tree_deserialise_leaves(f, like, filter_spec=_filter_spec(cast))
    check_finite_tree(model, "loaded model")
    if state_like is None:
        return model
    if header.get("state_leaves") is None:
        raise CheckpointError(f"{path} holds a model but no training state (saved outside fit)")
    _check_leaves(path, header["state_leaves"], _leaf_specs(state_like), "training state",
                  cast, note)
    return model, eqx.tree_deserialise_leaves(f, state_like, filter_spec=_filter_spec(cast))


__all__ = ["CheckpointError", "best_checkpoint", "load", "load_history", "load_metadata",
           "save"]
