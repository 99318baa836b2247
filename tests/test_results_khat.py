"""Every experiment's results.json carries the Pareto k̂ of the log-weights next to each ESS
(checked on the --quick outputs of paper/reproduce.py's experiments, run once per session).

An ESS is a key ``ess``, ``ess_fraction`` or ``ess_fraction_mean``; rates derived from it
(``ess_per_1k_evals``) sit in the same row. Not covered: phi4's training curve
(``final_ess_fraction_mean_last_100``, ``ess_fraction_vs_step``), the batch ESS that the
reverse-KL objective records while training, which keeps no weights to fit k̂ to.
"""

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "paper"))
import reproduce  # noqa: E402

ESS = re.compile(r"^ess(_fraction)?(_mean)?$")


def _ess_without_khat(node, path=()):
    """Paths of the dicts under ``node`` holding an ESS but no ``pareto_khat*`` key."""
    out = []
    if isinstance(node, dict):
        keys = [k for k in node if ESS.match(k)]
        if keys and not any(k.startswith("pareto_khat") for k in node):
            out.append("/".join(map(str, path)) + f": {keys}")
        for k, v in node.items():
            out += _ess_without_khat(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _ess_without_khat(v, path + (i,))
    return out


def _has_khat(node):
    if isinstance(node, dict):
        return any(k.startswith("pareto_khat") for k in node) or any(
            _has_khat(v) for v in node.values())
    return isinstance(node, list) and any(_has_khat(v) for v in node)


WEIGHTED = ("double_well", "phi4", "manywell", "ess_per_evaluation", "particles")


@pytest.mark.slow  # reads every quick run: with the tests that make them (conftest)
@pytest.mark.parametrize("name", [e.name for e in reproduce.EXPERIMENTS])
def test_every_ess_has_its_khat(name, quick_run):
    """Every experiment of the paper: no ESS without its k̂; those that reweight have one."""
    r = json.loads((quick_run(name) / "results.json").read_text())
    assert _has_khat(r) or name not in WEIGHTED, f"{name}: no k̂ at all"
    assert not _ess_without_khat(r), _ess_without_khat(r)


def test_the_walk_finds_a_missing_khat():
    assert _ess_without_khat({"a": [{"ess_fraction": 0.5}]}) == ["a/0: ['ess_fraction']"]
    assert not _ess_without_khat({"ess": 3, "pareto_khat": None})
