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


def fmt_pvalue(p: Any) -> str:
    """A p-value: like :func:`fmt` down to 1e-3, then in scientific notation (not 0.000)."""
    return fmt(p) if p is None or not math.isfinite(p) or p >= 1e-3 else f"{p:.1e}"


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


def paper_comparison(ours: Mapping[str, Any], ours_label: str) -> str:
    """Our accuracy/F1 (mean ± std over seeds) beside the paper's headline numbers."""
    rows = [[f"this run: {ours_label}", mean_std(ours, "accuracy"), mean_std(ours, "f1")]]
    for name, numbers in PAPER_HEADLINES.items():
        rows.append([f"paper: {name}", fmt(numbers["accuracy"], 2), fmt(numbers["f1"], 2)])
    return table(["model", "held-out accuracy", "held-out F1"], rows)
