"""Comparing reward-recovery methods paired over seeds and demonstration draws.

Every method scores the same held-out (expert, base) pairs of each draw, S runs
(seeds) per method: rewards [S, 2P], experts then bases. :func:`run_metrics`
gives the headline metrics of every run in one vectorised pass (so that a
bootstrap can recompute them thousands of times), and
:func:`paired_differences` compares methods with a bootstrap over held-out
**prompts**: each resample draws the prompts of every draw with replacement,
keeps all their pairs, recomputes every run's metrics, averages over seeds and
draws and takes the difference to the reference method. Prompts, not texts,
are resampled because the 20 pairs of one prompt are correlated.

Metrics (per run): ``accuracy`` and ``f1`` (toxic class) at a threshold fitted
on the training pairs; ``roc_auc``; ``pearson``; ``spearman``; ``starc_a``
(halved, = EPIC); ``starc_b`` (halved, per-pair centring); and per method and
draw ``seed_correlation`` (mean pairwise Pearson of the S runs). They agree
with :func:`jaxirl.irl.evaluate.evaluate_rewards` and
:mod:`jaxirl.irl.distances` (tested).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

METRICS = ("accuracy", "f1", "roc_auc", "pearson", "spearman", "starc_a", "starc_b")
LOWER_IS_BETTER = frozenset({"starc_a", "starc_b"})


def _pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson of every row of x [..., n] with y [n] (or row-wise with y [..., n])."""
    xc = x - x.mean(-1, keepdims=True)
    yc = y - y.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xc * yc).sum(-1) / np.sqrt((xc ** 2).sum(-1) * (yc ** 2).sum(-1))


def run_metrics(rewards: np.ndarray, true: np.ndarray, thresholds: np.ndarray
                ) -> dict[str, np.ndarray]:
    """Metrics of every run: rewards [..., 2P] (experts then bases), true [2P], thresholds [...].

    Returns {metric: [...]} for :data:`METRICS`; labels "preferred" are true > 0.
    A collapsed run (one constant reward) carries no information: Pearson and
    Spearman 0 and STARC ½, as :func:`jaxirl.irl.distances.starc_distance` scores it
    (s(R) = 0), never NaN, so that seed means do not drop it and flatter the method.
    """
    rewards = np.asarray(rewards, np.float64)
    true = np.asarray(true, np.float64)
    p = true.shape[-1] // 2
    pos = true > 0
    n_pos, n_neg = pos.sum(), (~pos).sum()
    pred = rewards > np.asarray(thresholds)[..., None]
    tp = np.sum(~pred & ~pos, -1)  # toxic class: predicted and truly dispreferred
    fp = np.sum(~pred & pos, -1)
    fn = np.sum(pred & ~pos, -1)
    import scipy.stats  # deferred: the study's config imports this module at start-up

    ranks = scipy.stats.rankdata(rewards, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (ranks[..., pos].sum(-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    rho = _pearson(rewards, true)
    margins, true_margins = rewards[..., :p] - rewards[..., p:], true[:p] - true[p:]
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (margins @ true_margins) / (np.linalg.norm(margins, axis=-1)
                                          * np.linalg.norm(true_margins))
    flat = np.ptp(rewards, axis=-1) == 0
    return {"accuracy": np.mean(pred == pos, -1), "f1": f1, "roc_auc": auc,
            "pearson": np.where(flat, 0.0, rho),
            "spearman": np.where(flat, 0.0, _pearson(ranks, scipy.stats.rankdata(true))),
            "starc_a": np.where(flat, 0.5, np.sqrt(np.clip((1 - rho) / 2, 0, None))),
            "starc_b": np.where(flat, 0.5, np.sqrt(np.clip((1 - cos) / 2, 0, None)))}


def seed_correlation(rewards: np.ndarray) -> float:
    """Mean pairwise Pearson correlation of S runs' rewards [S, n] (NaN for S < 2).

    A collapsed (constant) run correlates 0 with the others, as in :func:`run_metrics`.
    """
    if len(rewards) < 2:
        return float("nan")
    from jaxirl.irl.ensemble import pairwise_seed_correlation  # deferred, as scipy below

    # Finite rewards: a NaN entry is a pair with a constant run.
    corr = np.nan_to_num(pairwise_seed_correlation(rewards), nan=0.0)
    return float(corr[~np.eye(len(corr), dtype=bool)].mean())


def _resampled_texts(pair_prompts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Text indices (experts then bases) of the pairs of prompts drawn with replacement."""
    prompts, inverse = np.unique(pair_prompts, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(prompts))]
    pairs = np.concatenate([members[g] for g in rng.integers(len(prompts), size=len(prompts))])
    return np.concatenate([pairs, pairs + len(pair_prompts)])


def _summary(draws: Sequence[Mapping], methods: Sequence[str], index=None
             ) -> dict[str, np.ndarray]:
    """{metric: [M]} averaged over seeds then draws (``index``: per-draw text subsets)."""
    per_draw = []
    for d, draw in enumerate(draws):
        idx = None if index is None else index[d]
        stats = {m: [] for m in (*METRICS, "seed_correlation")}
        for name in methods:
            r, true = draw["rewards"][name], draw["true"]
            if idx is not None:
                r, true = r[:, idx], true[idx]
            out = run_metrics(r, true, draw["thresholds"][name])
            for k in METRICS:
                stats[k].append(np.nanmean(out[k]))
            stats["seed_correlation"].append(seed_correlation(r))
        per_draw.append({k: np.asarray(v) for k, v in stats.items()})
    return {k: np.mean([pd[k] for pd in per_draw], axis=0) for k in per_draw[0]}


def paired_differences(draws: Sequence[Mapping], methods: Sequence[str],
                       references: Sequence[str], n_resamples: int = 1000,
                       confidence: float = 0.95, seed: int = 0
                       ) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """Seed- and draw-averaged metric differences (method − reference) with bootstrap intervals.

    Args:
      draws: one mapping per demonstration draw: ``rewards`` {method: [S, 2P]},
        ``thresholds`` {method: [S]} (fitted on training pairs), ``true`` [2P]
        and ``pair_prompts`` [P] (the prompt of each held-out pair).
      methods: methods to compare (the references among them).
      references: the methods every other one is compared with.
      n_resamples, confidence, seed: the prompt bootstrap (deterministic); all
        references share the resamples.

    Returns:
      {reference: {method: {metric: {"diff", "low", "high"}}}}, metric over
      :data:`METRICS` and ``seed_correlation``.
    """
    methods = list(methods)
    point = _summary(draws, methods)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_resamples):
        index = [_resampled_texts(np.asarray(d["pair_prompts"]), rng) for d in draws]
        samples.append(_summary(draws, methods, index))
    alpha = (1 - confidence) / 2
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for reference in references:
        ref = methods.index(reference)
        out[reference] = {}
        for i, name in enumerate(methods):
            out[reference][name] = {}
            for k in point:
                vals = np.array([s[k][i] - s[k][ref] for s in samples])
                vals = vals[np.isfinite(vals)]
                low, high = (np.quantile(vals, [alpha, 1 - alpha]) if len(vals)
                             else (np.nan, np.nan))
                out[reference][name][k] = {"diff": float(point[k][i] - point[k][ref]),
                                           "low": float(low), "high": float(high)}
    return out


def draw_summary(draw: Mapping, methods: Sequence[str]) -> dict[str, dict[str, float]]:
    """{method: {metric: seed mean}} of one draw, with ``seed_correlation``."""
    out = {}
    for name in methods:
        metrics = run_metrics(draw["rewards"][name], draw["true"], draw["thresholds"][name])
        out[name] = {k: float(np.nanmean(v)) for k, v in metrics.items()}
        out[name]["seed_correlation"] = seed_correlation(draw["rewards"][name])
    return out


__all__ = ["LOWER_IS_BETTER", "METRICS", "draw_summary", "paired_differences", "run_metrics",
           "seed_correlation"]
