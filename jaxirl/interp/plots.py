"""PNG figures for the interpretability stage (matplotlib's Agg canvas, no display needed).

Figures are built with ``matplotlib.figure.Figure`` rather than ``pyplot`` so that
no global backend or figure state is touched; each function writes one PNG and
returns its path.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxirl.errors import DataError
from jaxirl.interp.firing import FiringRateTest
from jaxirl.interp.sae import SAEMetrics


def _save(fig: Figure, path) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_sae_metrics(metrics: Mapping[tuple[int, int], SAEMetrics], path,
                     title: str = "Sparse autoencoders on MLP outputs") -> pathlib.Path:
    """Grouped bars per layer of FVE, L0 and dead share, one bar per dictionary multiple.

    Args:
      metrics: (layer, dict_multiple) -> held-out :class:`SAEMetrics`.
      path: the PNG to write.
    """
    if not metrics:
        raise DataError("no SAE metrics to plot")
    layers = sorted({k[0] for k in metrics})
    mults = sorted({k[1] for k in metrics})
    panels = (("fve", "variance explained (held-out)", (0, 1)),
              ("l0", "active features per token (L0)", None),
              ("dead_fraction", "dead features (share)", (0, 1)))
    fig = Figure(figsize=(4.2 * len(panels), 3.6))
    width = 0.8 / len(mults)
    x = np.arange(len(layers))
    for p, (field, label, ylim) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1)
        for m_i, mult in enumerate(mults):
            vals = [getattr(metrics[(la, mult)], field) if (la, mult) in metrics else np.nan
                    for la in layers]
            ax.bar(x + (m_i - (len(mults) - 1) / 2) * width, vals, width, label=f"{mult}x d_model")
        ax.set_xticks(x, [str(la) for la in layers])
        ax.set_xlabel("layer (block index)")
        ax.set_ylabel(label)
        if ylim:
            ax.set_ylim(*ylim)
        ax.grid(axis="y", alpha=0.3)
        if p == 0:
            ax.legend(title="dictionary size", fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def plot_irm_scatter(predicted: np.ndarray, true: np.ndarray, path,
                     title: str = "Implicit reward model (held-out texts)",
                     xlabel: str = "ground-truth reward", ylabel: str = "IRM predicted reward",
                     baseline: np.ndarray | None = None) -> pathlib.Path:
    """Scatter of predicted vs true rewards with the identity line and Kendall/Spearman.

    ``baseline`` (e.g. the raw-activation probe's predictions) is overlaid if given.
    """
    from jaxirl.interp.probes import regression_metrics

    predicted, true = np.asarray(predicted, float), np.asarray(true, float)
    if predicted.shape != true.shape or predicted.ndim != 1 or predicted.size == 0:
        raise DataError(f"scatter needs two equal [N] arrays, got {predicted.shape}, {true.shape}")
    fig = Figure(figsize=(5.0, 4.6))
    ax = fig.add_subplot(1, 1, 1)
    series = [("SAE-code probe", predicted, "tab:blue")]
    if baseline is not None:
        series.append(("raw-activation probe", np.asarray(baseline, float), "tab:orange"))
    for name, pred, color in series:
        m = regression_metrics(pred, true)
        ax.scatter(true, pred, s=10, alpha=0.5, color=color,
                   label=f"{name}: Kendall {m.kendall:.2f}, Spearman {m.spearman:.2f}")
    lo = float(min(true.min(), *(s[1].min() for s in series)))
    hi = float(max(true.max(), *(s[1].max() for s in series)))
    ax.plot([lo, hi], [lo, hi], color="gray", lw=1, ls="--", label="y = x")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def plot_firing_rates(test: FiringRateTest, path,
                      title: str = "Firing rates of feedback-linked features") -> pathlib.Path:
    """Bars of mean firing rate on toxic vs clean texts, per feature set, with counts and p."""
    groups = (("toxic-linked", test.toxic_linked), ("clean-linked", test.clean_linked),
              ("other features", test.others))
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(groups))
    w = 0.38
    tox = [g.rate_on_toxic for _, g in groups]
    clean = [g.rate_on_clean for _, g in groups]
    ax.bar(x - w / 2, tox, w, color="tab:red",
           label=f"toxic texts (n={test.num_toxic_texts})")
    ax.bar(x + w / 2, clean, w, color="tab:green",
           label=f"clean texts (n={test.num_clean_texts})")
    labels = []
    for name, g in groups:
        p = "n/a" if not np.isfinite(g.p_value) else f"{g.p_value:.2g}"
        labels.append(f"{name}\n{g.num_features} features, p={p}")
    ax.set_xticks(x, labels, fontsize=8)
    fires = ("code > 0" if test.relative_threshold <= 0
             else f"code > {test.relative_threshold:g} x feature max")
    ax.set_ylabel(f"mean firing rate\n(share of {test.unit}s with {fires})")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
