"""The abstract/final rule of the architecture, enforced on every eqx.Module in physgen."""

import abc
import dataclasses
import importlib
import inspect
import pkgutil

import equinox as eqx
import pytest

import physgen


def _all_modules():
    mods = [physgen]
    for info in pkgutil.walk_packages(physgen.__path__, "physgen."):
        mods.append(importlib.import_module(info.name))
    return mods


def _physgen_classes():
    seen = {}
    for mod in _all_modules():
        for _, obj in inspect.getmembers(mod, inspect.isclass):
            if issubclass(obj, eqx.Module) and obj.__module__.startswith("physgen"):
                seen[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return seen


CLASSES = _physgen_classes()
ABSTRACT = {n: c for n, c in CLASSES.items() if c.__name__.startswith("Abstract")}
CONCRETE = {n: c for n, c in CLASSES.items() if not c.__name__.startswith("Abstract")}


def _is_abstract_method(obj):
    return getattr(obj, "__isabstractmethod__", False)


def test_walk_finds_the_core_interfaces():
    names = {c.__name__ for c in CLASSES.values()}
    for required in ["AbstractBijection", "AbstractDistribution", "AbstractTarget",
                     "AbstractObjective", "Transformed", "StandardNormal"]:
        assert required in names


@pytest.mark.parametrize("name", sorted(CONCRETE))
def test_concrete_classes_are_final_and_complete(name):
    cls = CONCRETE[name]
    # final: no physgen class derives from a concrete class
    for other in CLASSES.values():
        if other is not cls:
            assert cls not in other.__mro__[1:], f"{other.__name__} subclasses concrete {name}"
    # complete: no abstract method or AbstractVar left
    assert not getattr(cls, "__abstractmethods__", ()), cls.__abstractmethods__
    field_names = {f.name for f in dataclasses.fields(cls)}
    for base in cls.__mro__:
        for attr, ann in getattr(base, "__annotations__", {}).items():
            if "AbstractVar" in str(ann) or "AbstractClassVar" in str(ann):
                assert attr in field_names or hasattr(cls, attr), f"{name} lacks {attr}"
    # no overriding of a concrete method of an abstract parent
    for base in cls.__mro__[1:]:
        if base.__name__.startswith("Abstract") and base.__module__.startswith("physgen"):
            for attr, member in vars(base).items():
                if attr.startswith("__") or _is_abstract_method(member):
                    continue
                if callable(member) or isinstance(member, property):
                    assert attr not in vars(cls), (
                        f"{name}.{attr} overrides the concrete method of {base.__name__}"
                    )


@pytest.mark.parametrize("name", sorted(ABSTRACT))
def test_abstract_classes_hold_no_fields_and_no_init(name):
    cls = ABSTRACT[name]
    init = vars(cls).get("__init__")
    # dataclass-generated initialisers are compiled from "<string>"; a written one is not.
    written = inspect.isfunction(init) and init.__code__.co_filename != "<string>"
    assert not written, f"abstract {name} defines __init__"
    annotations = getattr(cls, "__annotations__", {})
    own_fields = [
        f.name for f in dataclasses.fields(cls)
        if f.name in annotations and "Abstract" not in str(annotations[f.name])
    ]
    assert not own_fields, f"abstract {name} declares concrete fields {own_fields}"
    assert isinstance(cls, abc.ABCMeta)


@pytest.mark.parametrize("name", sorted(CONCRETE))
def test_no_super_calls(name):
    src = inspect.getsource(CONCRETE[name])
    assert "super()" not in src
