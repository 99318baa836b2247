"""Dependencies run one way: read the imports of every module of physgen and every script.

An import counts where it is written (a module's own imports) and through every package
``__init__`` it reaches (re-exports): importing ``physgen.flows`` imports what
``physgen/flows/__init__.py`` imports. The rules:

- the generative core never imports targets, samplers, objectives, training or boltzmann;
- the estimators never import training, objectives or a model family;
- physgen never imports experiments or paper;
- scripts in experiments/ and paper/ import public names only (no ``physgen.x._y``);
- no physgen import inside a function (a cycle dodged is a concept in the wrong package).
"""

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "physgen"

CORE = ("bijections", "distributions", "nn", "flows", "flow_matching", "diffusion", "vae",
        "gan", "autoregressive")
ESTIMATORS = ("reweighting", "diagnostics", "observables", "metrics")
RULES = {
    **{p: ("targets", "samplers", "objectives", "training", "boltzmann") for p in CORE},
    **{p: ("training", "objectives", "gan", "vae", "diffusion", "flow_matching")
       for p in ESTIMATORS},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(module imported, line, inside a function)`` for every import of ``path``."""
    tree = ast.parse(path.read_text())
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    functions = [f for f in ast.walk(tree)
                 if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(n) for f in functions for n in ast.walk(f) if n is not f}
    out = []
    for node in ast.walk(tree):
        inner = id(node) in nested
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, inner) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            # "from pkg import sub" may import the sub-module pkg.sub
            out += [(f"{mod}.{a.name}", node.lineno, inner) for a in node.names]
            out.append((mod, node.lineno, inner))
    return out


def _file_of(module: str) -> Path | None:
    path = ROOT.joinpath(*module.split("."))
    if path.is_dir() and (path / "__init__.py").exists():
        return path / "__init__.py"
    if path.with_suffix(".py").exists():
        return path.with_suffix(".py")
    return None


@cache
def _reached(module: str) -> frozenset[str]:
    """The physgen modules that importing ``module`` runs: its own imports, those of every
    package ``__init__`` on the way, recursively."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        if m in seen or not m.startswith("physgen"):
            continue
        seen.add(m)
        parts = m.split(".")
        todo += [".".join(parts[:i]) for i in range(2, len(parts))]  # parent packages
        f = _file_of(m)
        if f is not None:
            todo += [i for i, _, _ in _imports(f) if i.startswith("physgen")]
    return frozenset(x for x in seen if _file_of(x) is not None)


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "physgen" else None


MODULES = sorted(PKG.rglob("*.py"))
SCRIPTS = sorted([*(ROOT / "experiments").rglob("*.py"), *(ROOT / "paper").rglob("*.py")])


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_physgen_modules_import_one_way(path):
    own = _package(_module_name(path))
    forbidden = RULES.get(own, ())
    problems = []
    for imported, line, inside in _imports(path):
        top = imported.split(".")[0]
        if top in ("experiments", "paper"):
            problems.append(f"line {line}: imports {imported}")
        if not imported.startswith("physgen"):
            continue
        if inside:
            problems.append(f"line {line}: imports {imported} inside a function")
        for reached in _reached(imported):
            pkg = _package(reached)
            if pkg in forbidden and pkg != own:
                problems.append(f"line {line}: {imported} brings in physgen.{pkg} ({reached})")
                break
    assert not problems, f"{path.relative_to(ROOT)} ({own}):\n" + "\n".join(problems)


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_scripts_import_public_names_only(path):
    private = [
        f"line {line}: {m}" for m, line, _ in _imports(path)
        if m.startswith("physgen") and any(p.startswith("_") for p in m.split(".")[1:])
    ]
    assert not private, f"{path.relative_to(ROOT)} imports private modules:\n" + "\n".join(private)


def test_the_rules_can_fail():
    """The reader sees re-exports: the top-level package reaches training, and a core module
    importing it would be caught."""
    assert "physgen.training._fit" in _reached("physgen")
    assert any(_package(m) == "targets" for m in _reached("physgen.boltzmann"))
    assert not any(_package(m) in RULES["flows"] for m in _reached("physgen.flows"))
