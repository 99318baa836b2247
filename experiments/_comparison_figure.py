"""The sampler comparison figure the scripts share: ESS per 1000 energy evaluations per method
and, where searched, the evaluations to reach a standard error."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def comparison_figure(stem: Path, tables: dict, reach: dict | None = None,
                      title: str = "") -> None:
    """The sampler comparison figure, PNG and PDF at ``stem``.

    ``tables``: ``{target: [rows of seed 1, rows of seed 2, ...]}``, rows as
    :func:`physgen.samplers.compare_samplers` returns them. One panel per target: ESS per
    1000 energy evaluations of each method on a log axis, every seed a dot, the median a
    bar, the median including the flow's training an open diamond; a method whose ESS is
    undefined in every seed (it never reached state B) is written as such, not drawn. ``!``:
    a seed's ``ΔF`` is off by more than 3 standard errors or has none. ``reach``:
    ``{target: [summaries]}`` (``method``, ``totals``: evaluations to reach per seed, ``None``
    where not reached, ``cap``) adds one panel per target: every seed a dot, the cap a
    triangle for a seed that did not reach, the median a bar.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reach = reach or {}
    panels = [("ess", t, seeds) for t, seeds in tables.items()]
    panels += [("reach", t, rows) for t, rows in reach.items() if rows]
    n_methods = max(len(_methods(p[2], p[0])) for p in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 1.2 + 0.42 * n_methods),
                             layout="constrained", squeeze=False)
    for ax, (kind, target, data) in zip(axes[0], panels, strict=True):
        (_ess_panel if kind == "ess" else _reach_panel)(ax, target, data)
    if title:
        fig.suptitle(title, fontsize=10)
    for ext in ("png", "pdf"):
        fig.savefig(f"{stem}.{ext}", dpi=130, bbox_inches="tight")
    plt.close(fig)


def _methods(data, kind: str) -> list[str]:
    if kind == "reach":
        return [r["method"] for r in data]
    names = []
    for rows in data:
        names += [r["method"] for r in rows if r["method"] not in names]
    return names


def _spread(n: int) -> np.ndarray:
    """Vertical offsets that keep seeds with equal values apart (seed order, top down)."""
    return np.linspace(-0.2, 0.2, n) if n > 1 else np.zeros(1)


def _log_limits(ax, values) -> None:
    values = [v for v in values if v and v > 0 and math.isfinite(v)]
    if values:
        ax.set_xlim(10 ** math.floor(math.log10(min(values)) - 0.3),
                    10 ** math.ceil(math.log10(max(values)) + 0.3))


def _ess_panel(ax, target: str, seeds: list) -> None:
    methods = _methods(seeds, "ess")
    shown = []
    for y, m in enumerate(methods):
        rows = [r for rows in seeds for r in rows if r["method"] == m]
        vals = [r.get("ess_per_1k_evals") for r in rows]
        vals = [v for v in vals if v]
        if not vals:
            ax.text(0.02, y, "B never reached (ESS undefined)", transform=ax.get_yaxis_transform(),
                    va="center", fontsize=8, color="0.35")
            continue
        shown += vals
        ax.barh(y, float(np.median(vals)), height=0.6, color="C0", alpha=0.35)
        ax.plot(vals, y + _spread(len(vals)), "o", color="C0", ms=3.5)
        tot = [r.get("ess_per_1k_total_evals") for r in rows if r.get("ess_per_1k_total_evals")]
        if any(r.get("train_energy_evals") for r in rows) and tot:
            ax.plot([float(np.median(tot))], [y], "D", mfc="none", color="k", ms=5)
            shown += tot
        bad = sum(1 for r in rows if (r.get("delta_F") or {}).get("z_score") is None
                  or abs(r["delta_F"]["z_score"]) > 3)
        missed = len(rows) - len(vals)
        note = ("!" * bool(bad)) + (f" B not reached in {missed}/{len(rows)}" if missed else "")
        if note:
            ax.text(max(vals) * 1.3, y, note, va="center", fontsize=8, color="crimson")
    ax.set_xscale("log")
    _log_limits(ax, shown)
    ax.set_yticks(range(len(methods)), methods, fontsize=8)
    ax.set_ylim(len(methods) - 0.5, -0.5)
    ax.set_xlabel("ESS per 1000 energy evaluations (sampling)", fontsize=9)
    ax.set_title(f"{target}: same sampling budget; dots: seeds, bar: median,\n"
                 "◇: incl. training, !: ΔF off by > 3 se or without error", fontsize=9)


def _reach_panel(ax, target: str, rows: list) -> None:
    shown, names = [], []
    for y, r in enumerate(rows):
        got = [t for t in r["totals"] if t is not None]
        missed = len(r["totals"]) - len(got)
        shown += got + ([r["cap"]] if missed else [])
        offsets = y + _spread(len(r["totals"]))
        if got:
            ax.plot(got, [o for o, t in zip(offsets, r["totals"], strict=True) if t is not None],
                    "o", color="C1", ms=3.5)
        if missed:
            ax.plot([r["cap"]] * missed,
                    [o for o, t in zip(offsets, r["totals"], strict=True) if t is None], ">",
                    color="crimson", ms=5)
        if missed * 2 < len(r["totals"]):
            med = float(np.median([t if t is not None else math.inf for t in r["totals"]]))
            ax.barh(y, med, height=0.6, color="C1", alpha=0.35)
        label = (f"not reached within {r['cap']:,}" if not got else
                 f"{missed}/{len(r['totals'])} not reached within {r['cap']:,}" if missed
                 else "")
        names.append(r["method"] + (f"\n({label})" if label else ""))
    ax.set_xscale("log")
    _log_limits(ax, shown)
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    se = rows[0].get("se_target", 0.05)
    ax.set_xlabel(f"energy evaluations to reach se(ΔF) ≤ {se:g} kT (incl. training)",
                  fontsize=9)
    ax.set_title(f"{target}: dots: seeds, bar: median,\n▸: the cap, for a seed that did not reach",
                 fontsize=9)
