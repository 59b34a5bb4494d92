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
from jaxirl.report.markdown import bootstrap_p_text


def _save(fig: Figure, path) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _bar_labels(ax, bars, values, fmt: str) -> None:
    for bar, v in zip(bars, values, strict=True):
        if np.isfinite(v):
            # Vertical: three bars a group leave no width for horizontal labels.
            ax.annotate(format(v, fmt), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7, xytext=(0, 2), rotation=90,
                        textcoords="offset points")


def plot_sae_metrics(metrics: Mapping[tuple[int, int], SAEMetrics], path,
                     title: str = "Sparse autoencoders on MLP outputs (held-out tokens)"
                     ) -> pathlib.Path:
    """Grouped bars per layer of FVE, MSE, L0 and dead share, one bar per dictionary size.

    FVE's axis spans the observed values (not 0-1), MSE is on a log axis, and every bar
    carries its value, so a dead share of 0 reads as "0", not as an empty panel. The
    legend sits below the panels.

    Args:
      metrics: (layer, dict_multiple) -> held-out :class:`SAEMetrics`.
      path: the PNG to write.
    """
    if not metrics:
        raise DataError("no SAE metrics to plot")
    layers = sorted({k[0] for k in metrics})
    mults = sorted({k[1] for k in metrics})
    panels = (("fve", "variance explained (FVE)", ".3f"),
              ("mse", "MSE per coordinate (log)", ".2g"),
              ("l0", "active features per token (L0)", ".1f"),
              ("dead_fraction", "dead features (share)", ".2g"))
    fig = Figure(figsize=(4.0 * len(panels), 3.9))
    width = 0.8 / len(mults)
    x = np.arange(len(layers))
    for p, (field, label, fmt) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1)
        every = []
        for m_i, mult in enumerate(mults):
            vals = np.array([getattr(metrics[(la, mult)], field) if (la, mult) in metrics
                             else np.nan for la in layers], float)
            every.append(vals)
            bars = ax.bar(x + (m_i - (len(mults) - 1) / 2) * width, vals, width,
                          label=f"{mult}× d_model", color=f"C{m_i}")
            _bar_labels(ax, bars, vals, fmt)
        every = np.concatenate(every)
        every = every[np.isfinite(every)]
        if field == "fve" and every.size:
            lo = float(every.min())
            ax.set_ylim(max(0.0, lo - 0.25 * (1.0 - lo) - 0.01), 1.0)
        elif field == "mse" and every.size and (every > 0).all():
            ax.set_yscale("log")
            ax.set_ylim(every.min() / 2, every.max() * 3)
        elif field == "dead_fraction":
            ax.set_ylim(0, max(0.05, 1.3 * float(every.max()) if every.size else 0.05))
        else:
            ax.set_ylim(0, 1.2 * float(every.max()) if every.size and every.max() > 0 else 1)
        ax.set_xticks(x, [str(la) for la in layers])
        ax.set_xlabel("layer (block index)")
        ax.set_title(label, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="dictionary size", loc="lower center", ncol=len(mults),
               fontsize=8, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(title)
    fig.subplots_adjust(bottom=0.24, wspace=0.35)
    return _save(fig, path)


def plot_irm_scatter(predicted: np.ndarray, true: np.ndarray, path,
                     title: str = "Implicit reward model (held-out texts)",
                     xlabel: str = "ground-truth reward", ylabel: str = "IRM predicted reward",
                     baseline: np.ndarray | None = None,
                     spearman: Mapping[str, Mapping[str, float]] | None = None) -> pathlib.Path:
    """Predicted vs true rewards, one panel per probe (no overplotting), identity line.

    Args:
      baseline: the raw-activation probe's predictions (a second panel), optional.
      spearman: optional intervals {"sae", "raw", "difference"} (``Interval`` dicts) for
        the titles; without them the panels show the point estimates.
    """
    from jaxirl.interp.probes import regression_metrics

    predicted, true = np.asarray(predicted, float), np.asarray(true, float)
    if predicted.shape != true.shape or predicted.ndim != 1 or predicted.size == 0:
        raise DataError(f"scatter needs two equal [N] arrays, got {predicted.shape}, {true.shape}")
    series = [("SAE-code probe (IRM)", "sae", predicted, "tab:blue")]
    if baseline is not None:
        series.append(("raw-activation probe", "raw", np.asarray(baseline, float), "tab:orange"))
    fig = Figure(figsize=(5.0 * len(series), 4.8))
    lo = float(min(true.min(), *(s[2].min() for s in series)))
    hi = float(max(true.max(), *(s[2].max() for s in series)))
    for i, (name, key, pred, color) in enumerate(series):
        ax = fig.add_subplot(1, len(series), i + 1)
        m = regression_metrics(pred, true)
        ax.scatter(true, pred, s=5, alpha=0.3, color=color, linewidths=0)
        ax.plot([lo, hi], [lo, hi], color="gray", lw=1, ls="--", label="y = x")
        ci = (spearman or {}).get(key)
        rho = (f"Spearman {ci['estimate']:.2f} [{ci['low']:.2f}, {ci['high']:.2f}]" if ci
               else f"Spearman {m.spearman:.2f}")
        ax.set_title(f"{name}\n{rho}, Kendall {m.kendall:.2f}", fontsize=9)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel if i == 0 else "predicted reward")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    gap = (spearman or {}).get("difference")
    if gap:
        title += (f": Spearman gap {gap['estimate']:+.3f} [{gap['low']:+.3f}, {gap['high']:+.3f}]"
                  " (95% CI over prompts)")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


_SET_STYLE = (("toxic_linked", "SAE toxic-linked", "tab:red"),
              ("others", "SAE other", "tab:gray"),
              ("random_toxic_linked", "random toxic-linked", "tab:purple"),
              ("random_others", "random other", "tab:olive"),
              ("clean_linked", "SAE clean-linked", "tab:green"))


def _feature_sets(test: FiringRateTest, labels) -> dict[str, np.ndarray]:
    """Set name -> mask over [SAE features, random directions] (empty sets left out)."""
    num_sae, rand = len(test.rate_on_toxic), labels.random
    r = 0 if rand is None else len(rand.layer)
    others = ~(labels.toxic_linked | labels.clean_linked) & (labels.num_contexts > 0)
    masks = {"toxic_linked": labels.toxic_linked, "clean_linked": labels.clean_linked,
             "others": others}
    masks = {k: np.concatenate([v, np.zeros(r, bool)]) for k, v in masks.items()}
    if rand is not None:
        pad = np.zeros(num_sae, bool)
        masks["random_toxic_linked"] = np.concatenate([pad, rand.toxic_linked])
        masks["random_others"] = np.concatenate([pad, ~rand.toxic_linked & (rand.num_contexts > 0)])
    return {k: v for k, v in masks.items() if v.any()}


def plot_firing_rates(test: FiringRateTest, path, labels=None,
                      title: str = "Firing rates of feedback-linked features (held-out texts)"
                      ) -> pathlib.Path:
    """Per-feature selectivity (t − c)/(t + c) by feature set, and rates on toxic vs clean.

    Left: one dot per feature (jittered) and the set's mean with its 95% interval over
    prompts; sets with no features are left out. Right: each feature's rate on toxic
    against clean texts (log axes), with y = x. Needs ``labels`` (the
    :class:`~jaxirl.interp.features.FeatureLabels` of the test) for the per-feature sets;
    without them only the set means are drawn.
    """
    rt = np.concatenate([test.rate_on_toxic, test.random_rate_on_toxic
                         if test.random_rate_on_toxic is not None else np.zeros(0)])
    rc = np.concatenate([test.rate_on_clean, test.random_rate_on_clean
                         if test.random_rate_on_clean is not None else np.zeros(0)])
    with np.errstate(invalid="ignore", divide="ignore"):
        sel = np.where(rt + rc > 0, (rt - rc) / (rt + rc), np.nan)
    groups = {name: getattr(test, name) for name, _, _ in _SET_STYLE
              if getattr(test, name, None) is not None and getattr(test, name).num_features}
    masks = _feature_sets(test, labels) if labels is not None else {}
    fig = Figure(figsize=(12.5, 4.8))
    ax = fig.add_subplot(1, 2, 1)
    rng = np.random.default_rng(0)
    ticks = []
    for i, (name, label, color) in enumerate(s for s in _SET_STYLE if s[0] in groups):
        g = groups[name]
        if name in masks:
            vals = sel[masks[name]]
            vals = vals[np.isfinite(vals)]
            if len(vals) > 400:  # a readable cloud: a fixed random subset of a large set
                vals = rng.choice(vals, 400, replace=False)
            small = len(vals) < 50
            ax.scatter(i + rng.uniform(-0.25, 0.25, len(vals)), vals, s=14 if small else 4,
                       alpha=0.8 if small else 0.35, color=color, linewidths=0)
        ci = g.selectivity
        if ci and np.isfinite(ci["estimate"]):
            # An end a rounding error past the estimate (few bootstrap groups) is a
            # zero-length arm, not a negative one (which matplotlib refuses).
            arms = np.maximum([[ci["estimate"] - ci["low"]], [ci["high"] - ci["estimate"]]], 0.0)
            ax.errorbar([i], [ci["estimate"]], yerr=arms, fmt="D", color="black", ms=6,
                        capsize=5, zorder=4)
        p = bootstrap_p_text(g.p_value, g.p_floor)
        p = f": {p}" if p == "n/a" else p if p.startswith("≤") else f"= {p}"
        ticks.append(f"{label}\n{g.num_features} features\nbootstrap p {p}")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(ticks)), ticks, fontsize=7)
    ax.set_ylabel("selectivity (t − c) / (t + c)\n(+1: fires only on toxic texts)")
    ax.set_ylim(-1.05, 1.05)
    ax.set_title("Per feature (dots; at most 400 per set) and set mean with 95% CI (diamonds)",
                 fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax2 = fig.add_subplot(1, 2, 2)
    positive = np.concatenate([rt[rt > 0], rc[rc > 0]])
    floor = max(1e-5, float(positive.min()) / 2) if positive.size else 1e-4
    top = min(1.0, 2 * float(positive.max())) if positive.size else 1.0
    # Large sets first, so that small ones stay visible on top.
    for name, label, color in sorted((s for s in _SET_STYLE if s[0] in masks),
                                     key=lambda s: -masks[s[0]].sum()):
        if name in masks:
            small = masks[name].sum() < 50
            ax2.scatter(np.maximum(rc[masks[name]], floor), np.maximum(rt[masks[name]], floor),
                        s=16 if small else 5, alpha=0.8 if small else 0.35, color=color,
                        label=label, linewidths=0, zorder=3 if small else 2)
    ax2.plot([floor, top], [floor, top], color="black", lw=0.8, ls="--", label="y = x")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    fires = ("code > 0" if test.relative_threshold <= 0
             else f"code > {test.relative_threshold:g} × feature max")
    ax2.set_xlabel(f"rate on clean texts (n={test.num_clean_texts}; {test.unit}s with {fires})")
    ax2.set_ylabel(f"rate on toxic texts (n={test.num_toxic_texts})")
    ax2.set_title(f"Firing rate per feature (rates of 0 drawn at {floor:.1g})", fontsize=9)
    ax2.grid(alpha=0.3)
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=7, loc="upper left")
    fig.suptitle(title)
    return _save(fig, path)
