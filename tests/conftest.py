import jax
import pytest


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
    """Run the tests marked ``slow`` (minutes each) first, so that with ``-n 2`` one worker
    carries them while the other works through the short ones."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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
    then crashes. Clearing only past half of that spares the recompilation otherwise."""
    yield
    if _num_memory_maps() > 30_000:
        jax.clear_caches()
