"""Shared test fixtures: float64, one run of each experiment's --quick for the whole session
(all workers), a persistent compilation cache, fast compilation and a memory-map guard.

The compilation cache: XLA executables are written to one temporary folder for the session
and read back by every worker and every experiment subprocess, so a function compiled once is
not compiled again elsewhere (JAX's persistent cache; a new folder per session, removed at
the end).

Fast compilation: compiling is most of the suite's time (small models, short runs), so the
suite compiles with LLVM's backend optimisation level 0 and with XLA:CPU's elemental emitters
instead of its fusion emitters (``XLA_FLAGS``, set here before JAX starts its CPU client and
inherited by every worker and subprocess; a flag the caller set is kept, one this jaxlib does
not know is left out). XLA's own graph optimisations stay on and the arithmetic is the same
IEEE arithmetic: results differ from JAX's default compilation in the last bits only, as
between two CPUs; every reference comparison holds under both. On three test modules the two
flags cut 123 s to 84 s.
"""

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_FAST_COMPILATION = {"xla_backend_optimization_level": "0", "xla_cpu_use_fusion_emitters": "false"}


def _accepted(flags: str) -> bool:
    """Whether this jaxlib's XLA takes ``flags``: it aborts on a flag it does not know, and
    a later jaxlib may retire one of these."""
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    probe = [sys.executable, "-c", "import jax; jax.devices()"]
    return subprocess.run(probe, env=env, capture_output=True).returncode == 0


def _fast_compilation_flags(flags: str) -> str:
    """``flags`` with those of ``_FAST_COMPILATION`` it lacks (a caller's choice is kept)
    and this jaxlib accepts; the workers inherit the result and probe nothing."""
    missing = [f"--{f}={v}" for f, v in _FAST_COMPILATION.items() if f not in flags]
    if not missing:
        return flags
    every = " ".join([flags, *missing]).strip()
    if _accepted(every):
        return every
    for flag in missing:
        if _accepted(f"{flags} {flag}".strip()):
            flags = f"{flags} {flag}".strip()
    return flags


os.environ["XLA_FLAGS"] = _fast_compilation_flags(os.environ.get("XLA_FLAGS", ""))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"


def _use_compilation_cache(path: str) -> None:
    os.environ[_CACHE_ENV] = path
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def pytest_configure(config):
    # the controller makes the folder before it starts the workers, which inherit it
    if _CACHE_ENV not in os.environ:
        config._physgen_cache = tempfile.mkdtemp(prefix="physgen-jax-cache-")
    _use_compilation_cache(os.environ.get(_CACHE_ENV, getattr(config, "_physgen_cache", "")))


def pytest_unconfigure(config):
    made = getattr(config, "_physgen_cache", None)
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)
        os.environ.pop(_CACHE_ENV, None)


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _reproduce():
    """``paper/reproduce.py``, whose runner the quick runs use (its log kept, a failure
    raised with the log's end)."""
    sys.path.insert(0, str(ROOT / "paper"))
    import reproduce

    return reproduce


def _run_quick(experiment, build: Path) -> dict:
    """``experiment`` run with its quick arguments into ``build/NAME`` (a subprocess)."""
    return _reproduce().run_experiment(experiment, build, quick=True)


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory, request):
    """``quick_run(name) -> folder``: the outputs of ``paper/reproduce.py``'s experiment
    ``name`` run with its ``--quick`` arguments, once per session: the first test (of any
    worker) that asks runs it in a subprocess; the others wait for it and read its folder.
    The paper test collects the same folders, so no quick experiment runs twice.

    These runs smoke-test the experiments' pipelines on tiny problems; they compile as the
    whole suite does (fast compilation, above)."""
    base = tmp_path_factory.getbasetemp()
    worker = hasattr(request.config, "workerinput")  # an xdist worker (also without xdist)
    shared = (base.parent if worker else base) / "quick-runs"
    shared.mkdir(exist_ok=True)
    experiments = {e.name: e for e in _reproduce().EXPERIMENTS}

    def run(name: str) -> Path:
        out = shared / name
        with _locked(shared / f"{name}.lock"):
            status = out / "status.json"
            if not status.exists():
                out.mkdir(exist_ok=True)
                info = _run_quick(experiments[name], shared)
                status.write_text(json.dumps(info))
        return out

    return run


@pytest.fixture
def run_script(tmp_path):
    """``run_script(script, *args) -> folder``: ``script`` (relative to the repository) run
    with ``args`` in a subprocess, its outputs in the returned folder under ``tmp_path``. For
    a test's own smoke run of an experiment with other arguments than its shared quick
    run."""
    def run(script: str, *args: str) -> Path:
        name = Path(script).stem
        _run_quick(_reproduce().Experiment(name, script, tuple(args)), tmp_path)
        return tmp_path / name

    return run


@pytest.fixture(scope="session")
def shared_arrays(tmp_path_factory, request):
    """``shared_arrays(name, compute) -> {key: array}``: ``compute()`` (a dict of arrays) run
    once per session, whichever worker asks first; the others wait for it and load its
    ``.npz``. For a module's expensive fixture, which xdist would otherwise build again on
    every worker that runs one of the module's tests."""
    base = tmp_path_factory.getbasetemp()
    worker = hasattr(request.config, "workerinput")
    shared = (base.parent if worker else base) / "shared-arrays"
    shared.mkdir(exist_ok=True)

    def get(name: str, compute) -> dict:
        path = shared / f"{name}.npz"
        with _locked(shared / f"{name}.lock"):
            if not path.exists():
                np.savez(path, **compute())
        with np.load(path) as f:
            return dict(f)

    return get


@pytest.fixture
def x64():
    """Run a test in float64 and restore the previous setting afterwards."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


def pytest_collection_modifyitems(config, items):
    """The tests marked ``slow`` (half a minute or more each) first, then the paper test,
    then the rest.

    With ``-n 2`` xdist gives each worker a first chunk of consecutive tests, so one worker
    starts with every long test (most share the experiments' quick runs: made once, never
    waited for) while the other works through the short ones. The paper test, after them,
    finds those runs made and only adds what no other test uses."""
    def rank(item):
        if item.path.name == "test_paper.py" and "quick_reproduction" in item.name:
            return 1
        return 0 if item.get_closest_marker("slow") is not None else 2

    items.sort(key=rank)


def _num_memory_maps() -> int:
    try:
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux: no such limit to watch
        return 0


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drop JAX's compiled executables after a test module once this process holds many
    memory maps. Every executable holds maps of its own; one process that compiles the whole
    suite reaches the kernel's limit (vm.max_map_count, 65,530 by default) and XLA's compiler
    then crashes. Clearing only past 45,000 (a module adds at most about 9,000) spares most
    of the clearing, which takes seconds, and the recompilation after it."""
    yield
    if _num_memory_maps() > 45_000:
        jax.clear_caches()
