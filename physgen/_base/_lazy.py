"""Third-party modules imported on first use.

BlackJAX runs a JAX computation when it is imported, which starts JAX's backend; after that
the number of CPU devices (``jax_num_cpu_devices``) can no longer be set. physgen therefore
imports it lazily, so that ``import physgen`` leaves JAX unstarted and a script can still
configure its devices after importing physgen.
"""

from __future__ import annotations

import importlib.util
import sys
import types


def lazy_import(name: str) -> types.ModuleType:
    """The module ``name``, executed only when one of its attributes is first used
    (:class:`importlib.util.LazyLoader`); the module itself if it is already imported."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
