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


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drop JAX's compiled executables after each test module. Every executable holds memory
    maps of its own; one process that compiles the whole suite reaches the kernel's limit
    (vm.max_map_count, 65,530 by default) and XLA's compiler then crashes."""
    yield
    jax.clear_caches()
