"""How alike are two reward functions on the same texts? (IRM vs IRL reward, vs ground truth.)

Correlations say whether they order texts alike; agreement says whether they
split the texts into the same toxic / clean sets. Rewards are "higher = better",
so a text counts as toxic when its reward is BELOW the threshold.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.stats
from sklearn.metrics import cohen_kappa_score

from jaxirl.errors import DataError


@dataclasses.dataclass(frozen=True)
class RewardComparison:
    """Agreement of rewards a and b on N texts.

    Attributes:
      pearson, spearman, kendall: correlations of a and b (NaN if either is constant).
      agreement: share of texts both call toxic or both call clean.
      cohen_kappa: chance-corrected agreement.
      toxic_fraction_a / toxic_fraction_b: share each calls toxic.
      threshold_a / threshold_b: the thresholds used.
      n: N.
    """

    pearson: float
    spearman: float
    kendall: float
    agreement: float
    cohen_kappa: float
    toxic_fraction_a: float
    toxic_fraction_b: float
    threshold_a: float
    threshold_b: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def _corr(fn, a, b) -> float:
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(fn(a, b)[0])


def share_threshold(rewards: np.ndarray, num_toxic: int) -> float:
    """The threshold under which exactly ``num_toxic`` of ``rewards`` [N] fall (barring ties).

    The ``num_toxic``-th smallest reward (0-based); above the largest when ``num_toxic``
    is N. For rewards whose offset means nothing: cut them where they call as many
    texts toxic as a reference does.
    """
    order = np.sort(np.asarray(rewards, np.float64))
    if not 0 <= num_toxic <= len(order):
        raise DataError(f"num_toxic must lie in [0, {len(order)}], got {num_toxic}")
    return float(order[num_toxic]) if num_toxic < len(order) else float(order[-1]) + 1.0


def compare_rewards(rewards_a: np.ndarray, rewards_b: np.ndarray,
                    threshold_a: float | None = 0.0,
                    threshold_b: float | None = None) -> RewardComparison:
    """Compares two reward vectors over the same N texts.

    Args:
      rewards_a: float [N], e.g. the IRM's predicted rewards.
      rewards_b: float [N], e.g. the IRL reward or the ground truth.
      threshold_a: a text is toxic under a when ``rewards_a < threshold_a``. Default 0
        suits log-odds-of-clean targets; None means the median of a.
      threshold_b: likewise for b. None (default) picks the quantile of b that calls
        the same share of texts toxic as a does -- right for rewards, such as the IRL
        reward, whose scale and offset mean nothing.
    """
    a = np.asarray(rewards_a, np.float64)
    b = np.asarray(rewards_b, np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise DataError(f"reward vectors must both be [N] with N > 0, got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise DataError("reward vectors contain NaN or inf")
    ta = float(np.median(a)) if threshold_a is None else float(threshold_a)
    toxic_a = a < ta
    tb = share_threshold(b, int(toxic_a.sum())) if threshold_b is None else float(threshold_b)
    toxic_b = b < tb
    kappa = float("nan")
    if len(np.unique(toxic_a)) > 1 or len(np.unique(toxic_b)) > 1:
        kappa = float(cohen_kappa_score(toxic_a, toxic_b))
    return RewardComparison(
        pearson=_corr(scipy.stats.pearsonr, a, b), spearman=_corr(scipy.stats.spearmanr, a, b),
        kendall=_corr(scipy.stats.kendalltau, a, b),
        agreement=float(np.mean(toxic_a == toxic_b)), cohen_kappa=kappa,
        toxic_fraction_a=float(toxic_a.mean()), toxic_fraction_b=float(toxic_b.mean()),
        threshold_a=ta, threshold_b=tb, n=int(a.size))
