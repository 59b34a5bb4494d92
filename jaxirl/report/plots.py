"""The report's figures (matplotlib, Agg backend): each function writes one PNG.

Conventions: quantities in different units never share an axis; intervals are 95%;
colour scales span the observed range; an empty group is left out, not drawn empty.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

TRUE_COLOR, LEARNED_COLOR, BASE_COLOR = "tab:blue", "tab:orange", "tab:gray"
RUN_COLORS = {"true reward": TRUE_COLOR, "learned reward": LEARNED_COLOR}


def _save(fig, path: str | os.PathLike) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def _series(rows: Sequence[Mapping[str, float]], key: str) -> tuple[np.ndarray, np.ndarray]:
    steps = np.array([r["step"] for r in rows if key in r])
    return steps, np.array([r[key] for r in rows if key in r], dtype=float)


def _seed_lines(ax, seeds: Sequence[Sequence[Mapping[str, float]]], key: str, color: str,
                label: str) -> None:
    """A thin line per PPO seed and a thick line for their mean."""
    curves = [_series(rows, key) for rows in seeds]
    curves = [c for c in curves if len(c[0])]
    if not curves:
        return
    for steps, values in curves:
        ax.plot(steps, values, color=color, lw=0.8, alpha=0.35)
    n = min(len(c[0]) for c in curves)
    mean = np.mean([c[1][:n] for c in curves], axis=0)
    seeds_note = f" (mean of {len(curves)} seeds)" if len(curves) > 1 else ""
    ax.plot(curves[0][0][:n], mean, color=color, lw=2, label=label + seeds_note)


def rlhf_curves(runs: Mapping[str, Sequence[Sequence[Mapping[str, float]]]],
                path: str | os.PathLike, kl_target: float | None = None,
                score_units: Mapping[str, str] | None = None) -> str:
    """PPO curves of the true-reward and learned-reward runs (one thin line per seed).

    Each run's own reward gets its own panel (the two rewards have different units);
    toxicity, KL and β are shared quantities and share panels.

    Args:
      runs: "true reward" / "learned reward" -> per PPO seed, the ``metrics.jsonl`` rows.
      kl_target: the adaptive controller's target KL (drawn as a line), if any.
      score_units: run name -> the y label of its reward panel.
    """
    units = {"true reward": "true reward: −P(toxic) + P(toxic) of reference",
             "learned reward": "learned reward (its own units)", **(score_units or {})}
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, name in zip(axes[0, :2], ("true reward", "learned reward"), strict=True):
        _seed_lines(ax, runs.get(name, []), "score", RUN_COLORS[name], f"PPO on the {name}")
        ax.set_title(f"Reward optimised by the {name} run")
        ax.set_ylabel(units[name])
    shared = ((axes[0, 2], "toxicity", "mean P(toxic) of rollouts (ground truth)"),
              (axes[1, 0], "kl", "KL to reference (nats / sequence)"),
              (axes[1, 1], "kl_coef", "KL coefficient β"),
              (axes[1, 2], "kl_controller_input", "Σ exp(d) − 1 − d (nats / sequence)"))
    for ax, key, label in shared:
        for name, seeds in runs.items():
            _seed_lines(ax, seeds, key, RUN_COLORS.get(name, "black"), name)
        ax.set_ylabel(label)
    # The target applies to the controller's input (trlx's k3 estimate), not to the k1 KL.
    if kl_target is not None:
        axes[1, 2].axhline(kl_target, color="black", ls="--", lw=1,
                           label=f"controller target {kl_target:g}")
    axes[1, 2].set_yscale("symlog", linthresh=1.0)  # one token's large ratio can dominate
    axes[1, 2].set_ylim(bottom=0.0)  # exp(d) − 1 − d ≥ 0
    axes[0, 2].set_title("Ground-truth toxicity of the rollouts")
    axes[1, 0].set_title("KL penalty's KL (k1 estimate)")
    axes[1, 1].set_title("Adaptive KL coefficient")
    axes[1, 2].set_title("Controller's KL (k3 estimate)")
    for ax in axes.flat:
        ax.set_xlabel("PPO iteration")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle("RLHF training curves (thin: single PPO seeds)")
    return _save(fig, path)


def toxicity_bars(models: Mapping[str, Mapping[str, Sequence[float]]],
                  path: str | os.PathLike) -> str:
    """Held-out toxicity per model with 95% error bars (±1.96 SE over prompts).

    Args:
      models: model name -> {"mean": [per PPO seed mean P(toxic)], "se": [its standard
        errors], "fraction": [share with P(toxic) > 0.5], "fraction_se": [...]}, and
        optionally "pooled_se" / "pooled_fraction_se": the standard errors over prompts of
        the seeds' mean toxicity / toxic share (the seeds share the prompts, so their errors
        correlate; without them, the seeds are treated as independent).
    """
    names = list(models)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for offset, key, se_key, pooled_key, color, label in (
            (-0.2, "mean", "se", "pooled_se", "tab:red", "mean P(toxic)"),
            (0.2, "fraction", "fraction_se", "pooled_fraction_se", "tab:gray",
             "share with P(toxic) > 0.5")):
        values = [np.asarray(models[n][key], float) for n in names]
        ses = [np.asarray(models[n][se_key], float) for n in names]
        means = np.array([v.mean() for v in values])
        pooled = [models[n].get(pooled_key) for n in names]
        # Without the prompts' own spread, the seeds are treated as independent runs.
        se = np.array([p if p is not None else np.sqrt(np.sum(s**2)) / len(s)
                       for p, s in zip(pooled, ses, strict=True)])
        se = np.where(np.isfinite(se), se, 0.0)  # one prompt: no interval to draw
        ax.bar(x + offset, means, 0.4, color=color, alpha=0.8, label=label)
        ax.errorbar(x + offset, means, yerr=1.96 * se, fmt="none", ecolor="black", capsize=4)
        for xi, v in zip(x, values, strict=True):
            if len(v) > 1:
                ax.scatter(np.full(len(v), xi + offset), v, s=12, color="black", zorder=3)
        for xi, m, e in zip(x, means, se, strict=True):
            ax.text(xi + offset, m + 1.96 * e + 0.01, f"{m:.3f}", ha="center", fontsize=8)
    ax.set_xticks(x, names)
    ax.set_ylabel("toxicity of held-out continuations")
    ax.set_ylim(0, None)
    ax.legend(fontsize=8)
    ax.set_title("Toxicity before and after RLHF (bars: 95% CI over prompts; dots: PPO seeds)")
    return _save(fig, path)


_EPOCH_METRICS = {"roc_auc": ("held-out ROC-AUC", "ROC-AUC (no threshold)", 0.5, "chance (0.5)"),
                  "accuracy": ("held-out accuracy", "accuracy", None, None),
                  "pearson_correlation": ("Pearson r", "Pearson r with the true reward", 0.0,
                                          "no correlation")}


def irl_epochs(per_seed: Sequence[Sequence[Mapping[str, float]]], path: str | os.PathLike,
               majority_accuracy: float | None = None,
               accuracy_title: str = "accuracy",
               metrics: Sequence[str] = ("roc_auc", "accuracy", "pearson_correlation"),
               first_epoch: int = 0) -> str:
    """Held-out IRL metrics per epoch (epoch 0 = untrained), a line per seed and the mean.

    Args:
      per_seed: per seed, one metrics dict per epoch starting at ``first_epoch`` (0 when
        the untrained reward was scored, else 1).
      majority_accuracy: accuracy of always predicting the majority class (a line).
      accuracy_title: title of the accuracy panel (say which threshold it uses).
    """
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.8 * len(metrics), 4.2), squeeze=False)
    for ax, key in zip(axes[0], metrics, strict=True):
        label, title, ref, ref_label = _EPOCH_METRICS.get(key, (key, key, None, None))
        if key == "accuracy":
            title, ref, ref_label = accuracy_title, majority_accuracy, "majority class"
        ax.set_title(title, fontsize=9)
        curves = np.array([[row.get(key, np.nan) for row in seed] for seed in per_seed], float)
        epochs = first_epoch + np.arange(curves.shape[1])
        for i, curve in enumerate(curves):
            ax.plot(epochs, curve, color="tab:blue", alpha=0.4, lw=1, marker="o", ms=3,
                    label="single seeds" if i == 0 else None)
        mean = np.nanmean(curves, 0)
        ax.plot(epochs, mean, color="black", lw=2, label=f"mean of {len(curves)} seeds")
        values = [curves[np.isfinite(curves)]]
        if ref is not None and np.isfinite(ref):
            ax.axhline(ref, color="tab:red", ls="--", lw=1, label=ref_label)
            values.append(np.array([ref]))
        allv = np.concatenate(values)
        if allv.size:
            lo, hi = float(allv.min()), float(allv.max())
            pad = max(0.02, 0.08 * (hi - lo))
            ax.set_ylim(lo - pad, hi + pad)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (0 = untrained)" if first_epoch == 0 else "epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle("IRL: learned reward against the true reward on held-out texts, per epoch")
    return _save(fig, path)


def reward_scatter(learned: np.ndarray, true: np.ndarray, is_expert: np.ndarray,
                   path: str | os.PathLike, threshold: float | None = None,
                   pearson: float | None = None, spearman: float | None = None) -> str:
    """Learned against true reward on held-out texts, one panel per source (no overplot).

    Args:
      threshold: the learned-reward threshold (a horizontal line); the true reward's
        boundary 0 is the vertical line.
    """
    learned, true, is_expert = map(np.asarray, (learned, true, is_expert))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharex=True, sharey=True)
    for ax, mask, name, color in ((axes[0], is_expert, "RLHF (expert) texts", TRUE_COLOR),
                                  (axes[1], ~is_expert, "base-model texts", BASE_COLOR)):
        dense = mask.sum() > 300  # small, transparent markers only where they would pile up
        ax.scatter(true[mask], learned[mask], s=5 if dense else 18, alpha=0.3 if dense else 0.8,
                   color=color, linewidths=0)
        ax.axvline(0, color="black", lw=0.8, ls="--", label="true boundary (log-odds 0)")
        if threshold is not None:
            ax.axhline(threshold, color="tab:red", lw=1, label="learned threshold (fit on train)")
        toxic = true[mask] <= 0
        ax.set_title(f"{name}: {mask.sum()} texts, {toxic.sum()} toxic")
        ax.set_xlabel("true reward (log-odds of not toxic)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("learned reward (ensemble mean, z units)")
    axes[0].legend(fontsize=8, loc="upper left")
    if pearson is None:
        pearson = float(np.corrcoef(learned, true)[0, 1]) if len(true) > 1 else float("nan")
    title = f"Learned vs true reward, all texts: Pearson r = {pearson:.2f}"
    if spearman is not None:
        title += f", Spearman ρ = {spearman:.2f}"
    fig.suptitle(title)
    return _save(fig, path)


def seed_heatmap(corr: np.ndarray, path: str | os.PathLike,
                 labels: Sequence[str] | None = None) -> str:
    """Pearson matrix of the seeds' learned rewards (and the true reward, if a row).

    The colour scale is sequential and spans the observed range, so 0.87 and 0.95
    look different.
    """
    corr = np.asarray(corr)
    n = corr.shape[0]
    labels = list(labels) if labels is not None else [f"seed {i}" for i in range(n)]
    off = corr[~np.eye(n, dtype=bool)]
    off = off[np.isfinite(off)]
    vmin = float(np.floor(off.min() * 20) / 20) if off.size else 0.0
    fig, ax = plt.subplots(figsize=(1.1 * n + 2.5, 0.9 * n + 1.6))
    im = ax.imshow(corr, vmin=vmin, vmax=1.0, cmap="viridis")
    for i in range(n):
        for j in range(n):
            frac = (corr[i, j] - vmin) / max(1.0 - vmin, 1e-9)
            ax.text(j, i, f"{corr[i, j]:.3f}", ha="center", va="center", fontsize=8,
                    color="black" if frac > 0.6 else "white")
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    if labels[-1] == "true reward":  # set the true reward's row and column apart
        ax.axhline(n - 1.5, color="white", lw=2)
        ax.axvline(n - 1.5, color="white", lw=2)
    fig.colorbar(im, ax=ax, label="Pearson r (held-out texts)")
    ax.set_title("Agreement of the seeds' learned rewards\n(with each other and the true reward)",
                 fontsize=10)
    return _save(fig, path)


def ensemble_uncertainty(std: np.ndarray, correct: np.ndarray, path: str | os.PathLike) -> str:
    """Densities of the ensemble's std for texts it classifies right and wrong."""
    std, correct = np.asarray(std), np.asarray(correct, bool)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    bins = np.linspace(0, max(std.max(), 1e-6), 30)
    for mask, label, color in ((correct, "correct", "tab:green"), (~correct, "wrong", "tab:red")):
        if mask.any():
            ax.hist(std[mask], bins=bins, density=True, histtype="stepfilled", alpha=0.35,
                    color=color, label=f"{label} ({mask.sum()} texts)")
            ax.axvline(np.median(std[mask]), color=color, lw=1.2, ls="--",
                       label=f"median, {label}")
    ax.set_xlabel("ensemble std over seeds (z units of the learned reward)")
    ax.set_ylabel("density")
    ax.set_title("Seed disagreement on texts the ensemble gets right vs wrong")
    ax.legend(fontsize=8)
    return _save(fig, path)
