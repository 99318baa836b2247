"""The one sampler-comparison table: cost, ESS, efficiency and accuracy side by side."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ._autocorrelation import _as_chains, _tau

COLUMNS = (
    ("method", "method"),
    ("num_samples", "samples"),
    ("num_energy_evals", "energy evals"),
    ("wall_time_s", "wall time [s]"),
    ("ess", "ESS"),
    ("pareto_khat", "k̂"),
    ("ess_per_1k_evals", "ESS / 1k evals"),
    ("ess_per_s", "ESS / s"),
    ("estimate", "estimate"),
    ("error", "± error"),
    ("exact", "exact"),
    ("z_score", "z"),
)


def _num(v):
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _ratio(a, b, scale=1.0):
    return None if a is None or b is None or b <= 0 else scale * a / b


def comparison_table(rows: Sequence[Mapping]) -> list[dict]:
    r"""Build the comparison table, one JSON-ready dict per method.

    Each input row is a mapping with ``method`` (str), ``num_energy_evals`` (int, the exact
    target evaluations, e.g. ``MCMCResult.num_energy_evals``) and ``wall_time`` (seconds,
    excluding compilation), plus either

    - ``observable``: values of a scalar observable, ``(num_chains, num_samples)`` or
      ``(num_samples,)``; then ``estimate`` is its mean, ``error`` its Monte Carlo standard
      error and ``ess = N/τ`` with ``τ`` from Geyer's initial monotone sequence
      (:func:`~physgen.diagnostics.mcse`, so ``error² = σ²/ess``), or
    - ``estimate``, ``error``, ``ess`` and ``num_samples`` given directly (e.g. importance
      sampling with Kish's ESS and a self-normalised error), with ``pareto_khat`` (the
      Pareto k̂ of the log-weights) beside the ESS of weighted samples,

    and optionally ``exact`` (the reference value). Output keys: ``method, num_samples,
    num_energy_evals, wall_time_s, ess, pareto_khat, ess_per_1k_evals, ess_per_s, estimate,
    error, exact, z_score`` with ``z = (estimate - exact)/error``; missing values are
    ``None`` (``pareto_khat`` for chains).
    """
    table = []
    for row in rows:
        for k in ("method", "num_energy_evals", "wall_time"):
            if k not in row:
                raise ValueError(f"comparison_table: row {dict(row)!r} lacks {k!r}")
        if "observable" in row:
            a = _as_chains(row["observable"], f"comparison_table[{row['method']}].observable")
            tau, _, var = _tau(a, "geyer", 1.5, 5.0, "comparison_table")
            n = a.size
            estimate, error, ess = float(a.mean()), math.sqrt(var * tau / n), n / tau
        else:
            missing = [k for k in ("estimate", "error", "ess", "num_samples") if k not in row]
            if missing:
                raise ValueError(
                    f"comparison_table: row {row['method']!r} needs 'observable' or all of "
                    f"estimate, error, ess, num_samples (missing {missing})"
                )
            n = int(row["num_samples"])
            estimate, error, ess = _num(row["estimate"]), _num(row["error"]), _num(row["ess"])
        evals = int(row["num_energy_evals"])
        wall = _num(row["wall_time"])
        exact = _num(row.get("exact"))
        z = None
        if exact is not None and estimate is not None and error:
            z = (estimate - exact) / error
        table.append({
            "method": str(row["method"]),
            "num_samples": int(n),
            "num_energy_evals": evals,
            "wall_time_s": wall,
            "ess": _num(ess),
            "pareto_khat": _num(row.get("pareto_khat")),
            "ess_per_1k_evals": _num(_ratio(ess, evals, 1000.0)),
            "ess_per_s": _num(_ratio(ess, wall)),
            "estimate": _num(estimate),
            "error": _num(error),
            "exact": exact,
            "z_score": _num(z),
        })
    return table


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if isinstance(v, (int, np.integer)):
        return f"{v:,}"
    a = abs(v)
    if a != 0 and (a >= 1e5 or a < 1e-3):
        return f"{v:.3e}"
    return f"{v:.4g}"


def render_table(table: Sequence[Mapping], fmt: str = "markdown") -> str:
    """Render :func:`comparison_table` output as a markdown (``fmt="markdown"``) or aligned
    plain-text (``fmt="text"``) table."""
    if fmt not in ("markdown", "text"):
        raise ValueError(f"fmt must be 'markdown' or 'text', got {fmt!r}")
    header = [title for _, title in COLUMNS]
    body = [[_fmt(row.get(key)) for key, _ in COLUMNS] for row in table]
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep] + [line(r) for r in body])
