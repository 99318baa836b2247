"""paper/reproduce.py --quick produces every figure, table and number that main.tex uses."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "paper"))

import _tex  # noqa: E402
import reproduce  # noqa: E402

MAIN = (ROOT / "paper" / "main.tex").read_text()


def _strip_comments(tex: str) -> str:
    return "\n".join(re.sub(r"(?<!\\)%.*", "", line) for line in tex.splitlines())


def test_number_formatting():
    assert _tex.pm(3.38496, 0.00886) == r"\ensuremath{3.3850 \pm 0.0089}"
    assert _tex.pm(11.02051, 0.00008) == r"\ensuremath{11.020510 \pm 0.000080}"
    assert _tex.num(float("inf")) == r"\ensuremath{\infty}"
    assert _tex.num(None) == "--"
    assert _tex.integer(2_047_928) == r"2\,047\,928"
    with pytest.raises(ValueError, match="letters only"):
        reproduce.write_numbers({"bad_name": "1"}, Path("unused"))


def test_quick_reproduction_produces_everything_main_tex_includes(tmp_path, quick_run):
    """The quick runs every experiment's test shares, collected as reproduce.py would."""
    (tmp_path / "build").mkdir()
    for exp in reproduce.EXPERIMENTS:
        (tmp_path / "build" / exp.name).symlink_to(quick_run(exp.name), target_is_directory=True)
    summary = reproduce.main(["--quick", "--skip-run", "--out", str(tmp_path)])
    assert summary["files"] and summary["experiments"] == {}
    tex = _strip_comments(MAIN)

    figures = re.findall(r"\\includegraphics(?:\[[^\]]*\])?\{([^}]+)\}", tex)
    inputs = re.findall(r"\\input\{([^}]+)\}", tex)
    numbers = set(re.findall(r"\\gen\{([A-Za-z]+)\}", tex))
    assert figures and inputs and numbers
    for fig in figures:
        assert any((tmp_path / f"{fig}{ext}").is_file() for ext in (".pdf", ".png")), fig
    for inp in inputs:
        path = tmp_path / (inp if inp.endswith(".tex") else f"{inp}.tex")
        assert path.is_file() and path.stat().st_size > 0, inp
        if inp.startswith("tables/"):
            body = path.read_text()
            assert r"\begin{tabular}" in body and r"\bottomrule" in body, inp
    defined = set(re.findall(r"\\csname gen@([A-Za-z]+)\\endcsname",
                             (tmp_path / "generated" / "numbers.tex").read_text()))
    assert numbers <= defined, sorted(numbers - defined)

    cites = {c.strip() for group in re.findall(r"\\cite[tp]?\{([^}]+)\}", tex)
             for c in group.split(",")}
    bib = (ROOT / "paper" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    assert cites <= keys, sorted(cites - keys)
