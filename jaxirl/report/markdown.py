"""Markdown building blocks for ``report.md``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# The paper's headline IRL numbers (Joselowitz et al., Table 1, best loss per model).
PAPER_HEADLINES = {
    "Pythia-70M": {"accuracy": 0.80, "f1": 0.78},
    "Pythia-410M": {"accuracy": 0.78, "f1": 0.72},
}


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table: fixed digits, 'n/a' for None or NaN; a string is kept as is
    (already formatted, e.g. by :func:`fmt_pvalue`)."""
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "n/a" if math.isnan(f) else f"{f:.{digits}f}"


def fmt_sig(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` significant digits (scientific below 1e-3): an MSE of
    2.1e-05 never prints as 0.000."""
    if value is None or isinstance(value, str):
        return fmt(value)
    f = float(value)
    if not math.isfinite(f):
        return fmt(f)
    if f == 0 or 1e-3 <= abs(f) < 1e4:
        return f"{f:.{digits}g}" if f else "0"
    return f"{f:.{digits - 1}e}"


def fmt_ci(interval: Mapping[str, Any] | None, digits: int = 3, scale: float = 1.0,
           suffix: str = "") -> str:
    """'estimate [low, high]' of an interval dict (``jaxirl.irl.bootstrap.Interval``);
    ``scale`` = 100 with suffix '%' gives percentages."""
    if not interval:
        return "n/a"
    est, lo, hi = (float(interval[k]) * scale for k in ("estimate", "low", "high"))
    if not math.isfinite(est):
        return "n/a"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{fmt(est, digits)}{suffix}"
    return f"{fmt(est, digits)}{suffix} [{fmt(lo, digits)}{suffix}, {fmt(hi, digits)}{suffix}]"


def fmt_pvalue(p: Any) -> str:
    """A p-value: like :func:`fmt` down to 1e-3, then in scientific notation (not 0.000)."""
    return fmt(p) if p is None or not math.isfinite(p) or p >= 1e-3 else f"{p:.1e}"


def bootstrap_p_text(p: float | None, p_floor: float | None = None) -> str:
    """A bootstrap p-value: "≤ floor" at the resolution limit of its resamples.

    ``p_floor`` is the smallest p the resamples can give (1/(B + 1), two-sided
    2/(B + 1)); None or NaN: 1/1001, the one-sided floor of results written before
    the floor was kept.
    """
    if p is None or not math.isfinite(p):
        return "n/a"
    if p_floor is None or not math.isfinite(p_floor):
        p_floor = 1 / 1001
    return f"≤ {p_floor:.2g}" if p <= p_floor * (1 + 1e-9) else fmt_pvalue(p)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def mean_std(spread: Mapping[str, Any] | None, key: str) -> str:
    """'m ± s' from a seed-spread entry {'mean':..., 'std':...}."""
    if not spread or key not in spread:
        return "n/a"
    entry = spread[key]
    return f"{fmt(entry['mean'])} ± {fmt(entry['std'])}"


def image(title: str, filename: str) -> str:
    return f"![{title}]({filename})"


def paper_comparison(rows: Sequence[tuple[str, str, str]]) -> str:
    """Rows (label, accuracy, F1) of this run beside the paper's headline numbers, which
    threshold the learned reward at 0."""
    out = [list(r) for r in rows]
    for name, numbers in PAPER_HEADLINES.items():
        out.append([f"paper: {name}, threshold 0", fmt(numbers["accuracy"], 2),
                    fmt(numbers["f1"], 2)])
    return table(["model and threshold", "held-out accuracy", "held-out F1 (toxic class)"], out)
