"""LaTeX formatting of the numbers and tables that paper/reproduce.py writes."""

from __future__ import annotations

import math


def num(x, digits: int = 4) -> str:
    """A number for LaTeX: ``digits`` significant digits; ``None``/non-finite as a dash."""
    if x in (None, "nan"):
        return "--"
    if isinstance(x, str):  # JSON writes non-finite floats as strings
        return {"inf": r"\ensuremath{\infty}", "-inf": r"\ensuremath{-\infty}"}.get(x, x)
    x = float(x)
    if not math.isfinite(x):
        return "--" if math.isnan(x) else num(str(x))
    if 10**digits <= abs(x) < 1e7:
        return integer(round(x))
    if x != 0 and (abs(x) >= 1e7 or abs(x) < 1e-3):
        m, e = f"{x:.{digits - 1}e}".split("e")
        return rf"\ensuremath{{{m}\times 10^{{{int(e)}}}}}"
    return f"{x:.{digits}g}"


def integer(x) -> str:
    return "--" if x is None else f"{int(x):,}".replace(",", r"\,")


def pm(value, stderr, digits: int = 2) -> str:
    """``value ± stderr`` rounded to the error's ``digits`` significant digits."""
    if value is None or stderr is None:
        return num(value)
    v, s = float(value), float(stderr)
    if not (math.isfinite(v) and math.isfinite(s)) or s <= 0:
        return num(v)
    dec = max(0, digits - 1 - int(math.floor(math.log10(s))))
    return f"\\ensuremath{{{v:.{dec}f} \\pm {s:.{dec}f}}}"


def tex_escape(s: str) -> str:
    return (str(s).replace("\\", r"\textbackslash{}").replace("&", r"\&").replace("%", r"\%")
            .replace("_", r"\_").replace("#", r"\#").replace("β", r"$\beta$")
            .replace("−", "-").replace("±", r"$\pm$").replace("×", r"$\times$"))


def tabular(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    lines = [rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(header) + r" \\",
             r"\midrule"]
    lines += [" & ".join(r) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _get(d, *path, default=None):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d
