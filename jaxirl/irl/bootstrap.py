"""Confidence intervals that resample prompts, not texts.

The held-out demonstrations hold many sampled continuations of each prompt (20 in the
default study), and texts of one prompt are correlated: resampling texts as if they
were independent gives intervals that are too narrow. :func:`cluster_bootstrap`
resamples whole groups (prompts) with replacement and returns percentile intervals.

A resample is represented by group counts: how often each group was drawn (a group
drawn twice counts its texts twice, one not drawn counts 0). Sums over texts then
become sums over groups, so a statistic evaluates a whole batch of resamples with a few
matrix products instead of one Python call per resample; ranks and ROC-AUC go through
:func:`rank_kernel`. Counts of ones give the statistic of the original sample.
Deterministic for a given ``seed``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from jaxirl.errors import RewardError


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate and its percentile bootstrap interval.

    Attributes:
      estimate: the statistic on the original sample.
      low, high: the interval's bounds (NaN when undefined).
      confidence: the interval's level.
      num_groups: groups (prompts) resampled.
    """

    estimate: float
    low: float
    high: float
    confidence: float = 0.95
    num_groups: int = 0

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in dataclasses.asdict(self).items()}


def group_ids(groups: Sequence) -> tuple[np.ndarray, int]:
    """(int [N] group index of each text, number of groups) from any [N] labels."""
    labels = np.asarray(groups)
    if labels.ndim != 1 or labels.size == 0:
        raise RewardError(f"groups must be a non-empty [N] array of labels, got shape {labels.shape}")
    uniq, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(-1), len(uniq)


def bootstrap_draws(statistic: Callable[[np.ndarray], Mapping[str, np.ndarray]],
                    num_groups: int, *, n_resamples: int = 1000, seed: int = 0,
                    batch: int = 250) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(estimates, draws [n_resamples] per statistic) of a statistic of group counts.

    ``statistic(counts [B, G]) -> {name: [B]}``; see :func:`cluster_bootstrap`.
    """
    estimate = {k: float(np.asarray(v).reshape(-1)[0])
                for k, v in statistic(np.ones((1, num_groups))).items()}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {name: [] for name in estimate}
    for start in range(0, n_resamples, batch):
        b = min(batch, n_resamples - start)
        picks = rng.integers(0, num_groups, (b, num_groups))
        counts = np.zeros((b, num_groups))
        np.add.at(counts, (np.arange(b)[:, None], picks), 1.0)
        values = statistic(counts)
        for name in estimate:
            draws[name].append(np.asarray(values[name], np.float64).reshape(b))
    return estimate, {k: np.concatenate(v) for k, v in draws.items()}


def percentile_interval(estimate: float, draws: np.ndarray, confidence: float = 0.95,
                        num_groups: int = 0) -> Interval:
    """The percentile interval of bootstrap ``draws`` (NaN draws left out)."""
    tail = 100 * (1 - confidence) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all-NaN draws: NaN bounds
        low, high = np.nanpercentile(draws, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high), confidence, num_groups)


def cluster_bootstrap(statistic: Callable[[np.ndarray], Mapping[str, np.ndarray]],
                      groups: Sequence, *, n_resamples: int = 1000, confidence: float = 0.95,
                      seed: int = 0, batch: int = 250) -> dict[str, Interval]:
    """Percentile intervals of every statistic, resampling groups with replacement.

    Args:
      statistic: ``counts [B, G] -> {name: [B] values}``: the statistics of B resamples,
        each given by how often every group was drawn (group g is the g-th of
        :func:`group_ids`; a text's weight is its group's count). Counts of ones give
        the original sample.
      groups: [N] group label of each text (e.g. its prompt).
      n_resamples: bootstrap resamples.
      confidence: interval level.
      seed: seeds the resampling (``numpy.random.default_rng``).
      batch: resamples per call of ``statistic``.

    Returns:
      {name: :class:`Interval`}; resamples where a statistic is NaN (e.g. one class
      only) are left out of its interval.
    """
    _, num_groups = group_ids(groups)
    estimate, draws = bootstrap_draws(statistic, num_groups, n_resamples=n_resamples, seed=seed,
                                      batch=batch)
    return {k: percentile_interval(v, draws[k], confidence, num_groups)
            for k, v in estimate.items()}


def group_sums(values: np.ndarray, gid: np.ndarray, num_groups: int) -> np.ndarray:
    """[..., G] sums of ``values`` [..., N] over the texts of each group."""
    import scipy.sparse

    values = np.asarray(values, np.float64)
    n = values.shape[-1]
    member = scipy.sparse.csr_matrix((np.ones(n), (np.arange(n), gid)), shape=(n, num_groups))
    flat = values.reshape(-1, n)
    return np.asarray((member.T @ flat.T).T).reshape(values.shape[:-1] + (num_groups,))


def rank_kernel(x: np.ndarray, gid: np.ndarray, num_groups: int,
                mask: np.ndarray | None = None) -> np.ndarray:
    """[N, G]: K[i, h] = #{j in group h: x_j < x_i} + ½ #{j in group h: x_j = x_i}.

    Only texts j with ``mask[j]`` count. Under group counts c [B, G], ``c @ K.T + ½``
    are the average ranks (1-based, as ``scipy.stats.rankdata``) of the texts in the
    resampled multiset, and sums of K over positives against negatives give ROC-AUC.
    """
    x = np.asarray(x, np.float64)
    keep = np.ones(len(x), bool) if mask is None else np.asarray(mask, bool)
    out = np.zeros((len(x), num_groups))
    for h in range(num_groups):
        members = np.sort(x[(gid == h) & keep])
        less = np.searchsorted(members, x, "left")
        out[:, h] = less + 0.5 * (np.searchsorted(members, x, "right") - less)
    return out


def weighted_pearson(weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[B] Pearson correlations of x and y ([N] or [B, N]) under ``weights`` [B, N]
    (NaN where either is constant)."""
    w = weights / np.sum(weights, axis=-1, keepdims=True)
    xc = x - np.sum(w * x, axis=-1, keepdims=True)
    yc = y - np.sum(w * y, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(w * xc * yc, -1) / np.sqrt(np.sum(w * xc * xc, -1) * np.sum(w * yc * yc, -1))


def moments_pearson(sums: np.ndarray) -> np.ndarray:
    """Pearson correlations from weighted sums [..., 6] = (n, Σx, Σy, Σxx, Σyy, Σxy)."""
    n, sx, sy, sxx, syy, sxy = np.moveaxis(sums, -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxy / n - sx * sy / n**2
        vx, vy = sxx / n - (sx / n) ** 2, syy / n - (sy / n) ** 2
        return np.where((vx > 1e-12 * (sxx / n)) & (vy > 1e-12 * (syy / n)),
                        cov / np.sqrt(np.abs(vx * vy)), np.nan)


def spearman_intervals(scores: Mapping[str, np.ndarray], truth: np.ndarray, groups: Sequence,
                       *, n_resamples: int = 1000, confidence: float = 0.95,
                       seed: int = 0) -> dict[str, Interval]:
    """Spearman ρ of each score [N] with ``truth`` [N], resampling groups; with two scores
    a and b, also their difference ρ_a − ρ_b (key ``"difference"``)."""
    gid, g = group_ids(groups)
    k_truth = rank_kernel(truth, gid, g)
    kernels = {name: rank_kernel(x, gid, g) for name, x in scores.items()}

    def stat(c):
        w, ranks_truth = c[:, gid], c @ k_truth.T
        out = {name: weighted_pearson(w, c @ k.T, ranks_truth) for name, k in kernels.items()}
        if len(out) == 2:
            a, b = out.values()
            out["difference"] = a - b
        return out

    return cluster_bootstrap(stat, groups, n_resamples=n_resamples, confidence=confidence,
                             seed=seed)


def weighted_quantile(sorted_values: np.ndarray, sorted_weights: np.ndarray,
                      q: np.ndarray) -> np.ndarray:
    """[B] ``np.quantile`` (linear interpolation) of B weighted multisets.

    Args:
      sorted_values: [N] values in ascending order.
      sorted_weights: [B, N] integer multiplicities of each value per multiset.
      q: [B] quantile levels.
    """
    cum = np.cumsum(sorted_weights, axis=1)
    h = (cum[:, -1] - 1.0) * q
    lo, frac = np.floor(h), h - np.floor(h)
    last = len(sorted_values) - 1
    i_lo = np.minimum((cum <= lo[:, None]).sum(1), last)
    i_hi = np.minimum((cum <= lo[:, None] + 1).sum(1), last)
    return sorted_values[i_lo] + frac * (sorted_values[i_hi] - sorted_values[i_lo])


__all__ = ["Interval", "bootstrap_draws", "cluster_bootstrap", "percentile_interval", "group_ids", "group_sums", "moments_pearson",
           "rank_kernel", "spearman_intervals", "weighted_pearson", "weighted_quantile"]
