"""Non-identifiability across IRL seeds: spread of metrics, agreement, ensembles.

Max-margin IRL recovers a reward only up to its offset and scale (and more:
many rewards separate the same demonstrations), so S runs from different
seeds give S different rewards of the same N texts, ``rewards`` float [S, N].
Before comparing or averaging them, each seed's rewards are z-scored
(mean 0, std 1 over the N texts), which removes the arbitrary offset and
scale; a seed whose rewards are all equal becomes all zeros. Host-side
NumPy / scikit-learn.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from jaxirl.errors import RewardError
from jaxirl.irl.bootstrap import cluster_bootstrap, group_ids, group_sums
from jaxirl.irl.evaluate import RewardMetrics, Threshold, as_finite_rewards, resolve_threshold


class Spread(NamedTuple):
    """Mean and sample standard deviation (ddof = 1; 0 for one seed) over n finite values."""

    mean: float
    std: float
    n: int


def seed_spread(
    metrics_per_seed: Sequence[RewardMetrics | Mapping[str, float]],
) -> dict[str, Spread]:
    """Per-metric mean ± std over seeds.

    Args:
      metrics_per_seed: one :class:`RewardMetrics` (or dict of floats) per seed,
        all with the same keys.

    Returns:
      {metric: Spread(mean, std, n)}; NaN values (an undefined metric in some
      seed) are left out and n counts the rest (all NaN: mean and std NaN).
    """
    if not metrics_per_seed:
        raise RewardError("seed_spread needs the metrics of at least one seed")
    rows = [m.as_dict() if isinstance(m, RewardMetrics) else dict(m) for m in metrics_per_seed]
    keys = list(rows[0])
    for s, row in enumerate(rows):
        if set(row) != set(keys):
            missing = sorted(set(keys) ^ set(row))
            raise RewardError(f"metrics of seed {s} differ from seed 0 in keys {missing}")
    out = {}
    for key in keys:
        vals = np.asarray([row[key] for row in rows], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        if len(vals) == 0:
            out[key] = Spread(float("nan"), float("nan"), 0)
            continue
        if np.ptp(vals) == 0:
            # Exactly 0 (not float noise) when every seed agrees.
            out[key] = Spread(float(vals[0]), 0.0, len(vals))
            continue
        out[key] = Spread(float(np.mean(vals)), float(np.std(vals, ddof=1)), len(vals))
    return out


def standardize(rewards, reference=None) -> np.ndarray:
    """Z-score each seed's rewards: [S, N] → [S, N], (r − mean_n) / std_n (ddof = 0).

    With ``reference`` [S, M] (e.g. the training texts' rewards), the mean and std come
    from it, so held-out texts are scaled without looking at them. A constant row
    carries no ranking and becomes zeros instead of 0/0.
    """
    rewards = as_finite_rewards("seed rewards", rewards, ndim=2)
    stats = rewards if reference is None else as_finite_rewards("reference rewards", reference, 2)
    if len(stats) != len(rewards):
        raise RewardError(f"reference rewards have {len(stats)} seeds, rewards {len(rewards)}")
    centred = rewards - stats.mean(axis=1, keepdims=True)
    std = stats.std(axis=1, keepdims=True)
    return np.where(std > 0, centred / np.where(std > 0, std, 1.0), 0.0)


def pairwise_seed_correlation(rewards) -> np.ndarray:
    """Pearson correlation of every two seeds' rewards, [S, N] → [S, S].

    Scale- and offset-invariant, so no standardisation is needed. Rows and
    columns of a seed with constant rewards are NaN.
    """
    rewards = as_finite_rewards("seed rewards", rewards, ndim=2)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return np.atleast_2d(np.corrcoef(rewards))


def ensemble(rewards, *, standardize_seeds: bool = True,
             reference=None) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble reward and disagreement over seeds.

    Args:
      rewards: [S, N] learned rewards of N texts from S seeds.
      standardize_seeds: z-score each seed first (see :func:`standardize`);
        False averages raw rewards, which only makes sense if the seeds share
        a scale.
      reference: optional [S, M] rewards whose per-seed mean and std standardise
        ``rewards`` (e.g. the training texts'); None uses ``rewards`` themselves.

    Returns:
      (mean [N], std [N]): per-text mean and population std (ddof = 0) over
      seeds, in z units when standardised.
    """
    z = (standardize(rewards, reference) if standardize_seeds
         else as_finite_rewards("seed rewards", rewards, 2))
    return z.mean(axis=0), z.std(axis=0)


@dataclasses.dataclass(frozen=True)
class DisagreementStats:
    """Does seed disagreement flag the ensemble's mistakes?

    Attributes:
      roc_auc: ROC-AUC of the ensemble std as a score for "misclassified"
        (0.5 = uninformative; NaN if there are no errors or no correct texts).
      error_rate: overall misclassification rate of the ensemble mean.
      error_rate_uncertain: error rate among the ⌊N/2⌋ texts with the largest std.
      error_rate_confident: error rate among the ⌊N/2⌋ texts with the smallest std.
      threshold: threshold used on the (z-scored) ensemble mean.
      num_errors: number of misclassified texts.
    """

    roc_auc: float
    error_rate: float
    error_rate_uncertain: float
    error_rate_confident: float
    threshold: float
    num_errors: int

    def as_dict(self) -> dict[str, float]:
        """All fields as plain floats."""
        return {k: float(v) for k, v in dataclasses.asdict(self).items()}


def disagreement_predicts_error(
    rewards,
    true,
    *,
    threshold: Threshold = 0.0,
    true_threshold: float = 0.0,
    reference=None,
) -> DisagreementStats:
    """Whether texts the seeds disagree on are the ones the ensemble gets wrong.

    The ensemble (z-scored mean over seeds, :func:`ensemble`) labels a text
    preferred when its mean is > threshold; an error is a label that differs
    from ``true`` > true_threshold. Because each seed is centred, threshold 0
    means "above the seeds' average reward", not the raw 0 of the reference.

    Args:
      rewards: [S, N] learned rewards of N texts from S seeds.
      true: [N] ground-truth rewards.
      threshold: number, ``"median"`` or ``"match_rate"`` on the ensemble mean.
      true_threshold: ground-truth threshold.
      reference: optional [S, M] rewards that standardise the seeds (see :func:`ensemble`).

    Returns:
      :class:`DisagreementStats`; halves are split by a stable sort of the
      std (for odd N the middle text is in neither half).
    """
    rewards = as_finite_rewards("seed rewards", rewards, ndim=2)
    true = as_finite_rewards("true rewards", true)
    if rewards.shape[1] != len(true):
        raise RewardError(
            f"seed rewards have {rewards.shape[1]} texts but true rewards has {len(true)}"
        )
    mean, std = ensemble(rewards, reference=reference)
    thr = resolve_threshold(mean, threshold, true, true_threshold)
    errors = (mean > thr) != (true > true_threshold)
    n_err = int(errors.sum())
    from sklearn.metrics import roc_auc_score  # deferred: see jaxirl/irl/evaluate.py

    auc = float(roc_auc_score(errors, std)) if 0 < n_err < len(errors) else float("nan")
    order = np.argsort(std, kind="stable")
    half = len(order) // 2
    nan = float("nan")
    return DisagreementStats(
        roc_auc=auc,
        error_rate=float(errors.mean()),
        error_rate_uncertain=float(errors[order[len(order) - half :]].mean()) if half else nan,
        error_rate_confident=float(errors[order[:half]].mean()) if half else nan,
        threshold=thr,
        num_errors=n_err,
    )


def seed_agreement(rewards, true, groups, *, n_resamples: int = 1000, confidence: float = 0.95,
                   seed: int = 0) -> dict:
    """How much the seeds agree with each other, and with the true reward, with intervals.

    Args:
      rewards: [S, N] learned rewards of N held-out texts (S >= 2).
      true: [N] ground-truth rewards.
      groups: [N] prompt of each text; the bootstrap resamples prompts.

    Returns:
      JSON-ready dict: ``seed_vs_seed`` (mean off-diagonal Pearson r between seeds) and
      ``seed_vs_true`` (mean Pearson r of a seed with the true reward), each an
      :class:`~jaxirl.irl.bootstrap.Interval` dict, and ``matrix`` [S + 1, S + 1], the
      Pearson matrix of the seeds and (last row/column) the true reward.
    """
    rewards = as_finite_rewards("seed rewards", rewards, ndim=2)
    true = as_finite_rewards("true rewards", true)
    if rewards.shape[0] < 2 or rewards.shape[1] != len(true):
        raise RewardError(f"seed agreement needs [S >= 2, N] rewards for {len(true)} texts, "
                          f"got {rewards.shape}")
    x = np.concatenate([rewards, true[None]])  # [S + 1, N]
    gid, g = group_ids(groups)
    first = group_sums(x, gid, g)  # [S + 1, G]
    second = group_sums(x[:, None] * x[None], gid, g)  # [S + 1, S + 1, G]
    n = group_sums(np.ones(len(true)), gid, g)
    s = len(rewards)
    off = ~np.eye(s, dtype=bool)

    def stat(c):
        total = c @ n
        mean = (c @ first.T) / total[:, None]  # [B, S + 1]
        cov = np.einsum("bg,ijg->bij", c, second) / total[:, None, None] - \
            mean[:, :, None] * mean[:, None, :]
        sd = np.sqrt(np.maximum(np.einsum("bii->bi", cov), 0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = cov / (sd[:, :, None] * sd[:, None, :])
        return {"seed_vs_seed": corr[:, :s, :s][:, off].mean(-1),
                "seed_vs_true": corr[:, :s, s].mean(-1)}

    intervals = cluster_bootstrap(stat, groups, n_resamples=n_resamples, confidence=confidence,
                                  seed=seed)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        matrix = np.corrcoef(x)
    return {**{k: v.as_dict() for k, v in intervals.items()}, "matrix": matrix.tolist()}
