"""The report's figures (matplotlib, Agg backend): each function writes one PNG."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

_RUN_COLORS = {"ground-truth reward": "tab:blue", "learned reward": "tab:orange"}


def _save(fig, path: str | os.PathLike) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def rlhf_curves(runs: Mapping[str, Sequence[Mapping[str, float]]], path: str | os.PathLike) -> str:
    """Reward, toxicity, KL and β against PPO iteration, one line per run.

    Args:
      runs: run name -> metrics rows (``metrics.jsonl`` of a PPO run).
    """
    panels = [("score", "reward (sequence score)"), ("toxicity", "mean P(toxic) of samples"),
              ("kl", "KL to reference (nats / sequence)"), ("kl_coef", "KL coefficient β")]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (key, label) in zip(axes.flat, panels, strict=True):
        for name, rows in runs.items():
            steps = [r["step"] for r in rows if key in r]
            values = [r[key] for r in rows if key in r]
            if steps:
                ax.plot(steps, values, label=name, color=_RUN_COLORS.get(name), lw=1.6)
        ax.set_xlabel("PPO iteration")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes.flat[0].legend()
    fig.suptitle("RLHF training curves")
    return _save(fig, path)


def toxicity_bars(models: Mapping[str, tuple[float, float]], path: str | os.PathLike) -> str:
    """Held-out toxicity per model: mean P(toxic) and share with P(toxic) > 0.5."""
    names = list(models)
    mean = [models[n][0] for n in names]
    frac = [models[n][1] for n in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(x - 0.2, mean, 0.4, label="mean P(toxic)", color="tab:red")
    ax.bar(x + 0.2, frac, 0.4, label="share with P(toxic) > 0.5", color="tab:gray")
    for xi, (m, f) in enumerate(zip(mean, frac, strict=True)):
        ax.text(xi - 0.2, m + 0.01, f"{m:.2f}", ha="center", fontsize=9)
        ax.text(xi + 0.2, f + 0.01, f"{f:.2f}", ha="center", fontsize=9)
    ax.set_xticks(x, names)
    ax.set_ylabel("toxicity of held-out continuations")
    ax.set_ylim(0, max(1e-3, *mean, *frac) * 1.25)
    ax.legend()
    ax.set_title("Toxicity before and after RLHF")
    return _save(fig, path)


def irl_epochs(per_seed: Sequence[Sequence[Mapping[str, float]]], path: str | os.PathLike,
               metrics: Sequence[str] = ("accuracy", "f1")) -> str:
    """Held-out IRL metrics per epoch: a thin line per seed, the mean ± std band."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    for ax, key in zip(axes[0], metrics, strict=True):
        curves = np.array([[row[key] for row in seed] for seed in per_seed], dtype=float)
        epochs = np.arange(1, curves.shape[1] + 1)
        for i, curve in enumerate(curves):
            ax.plot(epochs, curve, color="tab:blue", alpha=0.35, lw=1,
                    label="single seeds" if i == 0 else None)
        mean, std = np.nanmean(curves, 0), np.nanstd(curves, 0)
        ax.plot(epochs, mean, color="black", lw=2, label=f"mean of {len(curves)} seeds")
        ax.fill_between(epochs, mean - std, mean + std, color="gray", alpha=0.3, label="± 1 std")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"held-out {key}")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle("IRL: learned reward against the true reward, per epoch")
    return _save(fig, path)


def reward_scatter(learned: np.ndarray, true: np.ndarray, is_expert: np.ndarray,
                   path: str | os.PathLike) -> str:
    """Learned against true reward on held-out texts, expert and base texts coloured."""
    learned, true, is_expert = map(np.asarray, (learned, true, is_expert))
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(true[is_expert], learned[is_expert], s=14, alpha=0.7, label="RLHF (expert) texts")
    ax.scatter(true[~is_expert], learned[~is_expert], s=14, alpha=0.7, label="base-model texts")
    ax.axvline(0, color="gray", lw=0.8, ls="--")
    ax.set_xlabel("true reward (log-odds of not toxic)")
    ax.set_ylabel("learned reward (ensemble mean, z-scored)")
    r = np.corrcoef(learned, true)[0, 1] if len(true) > 1 else float("nan")
    ax.set_title(f"Learned vs true reward (Pearson r = {r:.2f})")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def seed_heatmap(corr: np.ndarray, path: str | os.PathLike) -> str:
    """Pairwise Pearson correlation of the seeds' learned rewards on the same texts."""
    corr = np.asarray(corr)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    im = ax.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
    n = corr.shape[0]
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if abs(corr[i, j]) > 0.6 else "black")
    ax.set_xticks(range(n), [f"seed {i}" for i in range(n)], rotation=45)
    ax.set_yticks(range(n), [f"seed {i}" for i in range(n)])
    fig.colorbar(im, ax=ax, label="Pearson r")
    ax.set_title("Non-identifiability: seed-by-seed correlation")
    return _save(fig, path)


def ensemble_uncertainty(std: np.ndarray, correct: np.ndarray, path: str | os.PathLike) -> str:
    """Distribution of the ensemble's std for texts it classifies right and wrong."""
    std, correct = np.asarray(std), np.asarray(correct, bool)
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0, max(std.max(), 1e-6), 20)
    ax.hist(std[correct], bins=bins, alpha=0.6, label=f"correct ({correct.sum()})")
    ax.hist(std[~correct], bins=bins, alpha=0.6, label=f"wrong ({(~correct).sum()})")
    ax.set_xlabel("ensemble std of the z-scored learned reward")
    ax.set_ylabel("held-out texts")
    ax.set_title("Ensemble uncertainty vs errors")
    ax.legend()
    return _save(fig, path)
